package pool_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMinSizeWarmsUpInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		release := make(chan struct{})
		src.onDial = func(context.Context) error { <-release; return nil }
		cfg := testConfig(5)
		cfg.MinSize = 3
		p := newTestPool(t, src, cfg) // must not block on the dials
		synctest.Wait()
		assert.Equal(t, 3, p.Stats().Dialing)
		ready := make(chan error)
		go func() { ready <- p.WaitReady(bg) }()
		synctest.Wait()
		requireNotDone(t, ready, "WaitReady returned before the pool was warm")
		close(release)
		require.NoError(t, <-ready)
		s := p.Stats()
		assert.Equal(t, 3, s.Idle)
		assert.Equal(t, 3, s.Total)
	})
}

func TestWaitReadyReturnsDialError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		boom := errors.New("connection refused")
		src.failDials(boom)
		cfg := testConfig(5)
		cfg.MinSize = 2
		p := newTestPool(t, src, cfg)
		err := p.WaitReady(bg)
		assert.ErrorIs(t, err, boom)
		assert.ErrorIs(t, err, pool.ErrDial)
		src.failDials(nil)
		assert.NoError(t, p.WaitReady(bg), "WaitReady should redial once the source is back")
		assert.Equal(t, 2, p.Stats().Idle)
	})
}

// Defect 5: fresh connections that always fail their acquire check do not
// make Acquire redial in a hot loop, and the error says why.
func TestFreshConnectionsFailingTheCheckAreNotRedialledHot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onValid = func(*fakeConn) bool { return false }
		src.onDial = func(context.Context) error {
			if src.dials.Load() > 50 { // stops b87d442's loop, which takes no time
				return errors.New("dial budget spent")
			}
			return nil
		}
		cfg := testConfig(1)
		cfg.AcquireTimeout = 100 * time.Millisecond
		p := newTestPool(t, src, cfg)
		_, err := p.Acquire(bg)
		require.Error(t, err)
		assert.LessOrEqual(t, src.dials.Load(), int64(5), "redialled in a hot loop")
		assert.Contains(t, err.Error(), "IsValid", "the error does not say why: %v", err)
	})
}

// Defect 6: WaitReady returns when a dial fails and the other succeeds, and
// the pool goes on dialling until it holds MinSize, even with no reaper.
func TestWaitReadyReturnsAndThePoolRedialsToMinSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var n atomic.Int64
		src.onDial = func(context.Context) error {
			if n.Add(1) == 1 {
				return errors.New("first dial refused")
			}
			return nil
		}
		cfg := testConfig(2)
		cfg.MinSize = 2
		p := newTestPool(t, src, cfg)
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		start := time.Now()
		err := p.WaitReady(ctx)
		assert.Less(t, time.Since(start), time.Second, "WaitReady hung")
		if err != nil {
			assert.ErrorIs(t, err, pool.ErrDial)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, 2, p.Stats().Idle, "the pool did not dial again to reach MinSize")
		require.NoError(t, p.WaitReady(ctx))
	})
}

// Defect 7: a panicking Factory runs in a pool goroutine; it becomes a dial
// error for the waiter instead of killing the process.
func TestPanickingFactoryIsADialError(t *testing.T) {
	var calls atomic.Int64
	p, err := pool.New(func(context.Context) (*fakeConn, error) {
		calls.Add(1)
		panic("factory exploded")
	}, testConfig(1))
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Acquire(bg)
	require.ErrorIs(t, err, pool.ErrDial)
	assert.Contains(t, err.Error(), "factory exploded")
	assert.Equal(t, 0, p.Stats().Total)
}

// Defect 10: a Factory that returns a nil connection and no error is a
// dial error, not a crash at Close.
func TestFactoryReturningNilConnectionIsADialError(t *testing.T) {
	p, err := pool.New(func(context.Context) (*fakeConn, error) { return nil, nil }, testConfig(1))
	require.NoError(t, err)
	_, err = p.Acquire(bg)
	require.ErrorIs(t, err, pool.ErrDial)
	assert.Contains(t, err.Error(), "nil")
	assert.NotPanics(t, func() { _ = p.Close() })
}

// Defect 10: the last dial error is wrapped, not flattened, in a timeout.
func TestTimeoutWrapsTheLastDialError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		refused := errors.New("connection refused")
		var hang atomic.Bool
		src.onDial = func(ctx context.Context) error {
			if hang.Load() {
				<-ctx.Done()
				return ctx.Err()
			}
			return refused
		}
		cfg := testConfig(1)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, refused)
		time.Sleep(time.Minute) // past any backoff
		hang.Store(true)        // the next dial outlasts AcquireTimeout
		_, err = p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.ErrorIs(t, err, refused, "last dial error flattened: %v", err)
	})
}

// Likewise a dial that hangs does not stop other callers.
func TestDialRunsOutsideTheLock(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	x, err := p.Acquire(bg)
	require.NoError(t, err)
	xc := x.Conn()
	dialing := make(chan struct{})
	unblock := make(chan struct{})
	src.onDial = func(context.Context) error { close(dialing); <-unblock; return nil }
	got := make(chan *pool.PooledConn[*fakeConn])
	go func() {
		pc, err := p.Acquire(bg) // dials the second connection, which hangs
		assert.NoError(t, err)
		got <- pc
	}()
	<-dialing
	waitOrFail(t, "Stats, TryAcquire and Release during a dial", func() {
		assert.Equal(t, 1, p.Stats().Dialing)
		_, err := p.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		x.Release() // handed to the waiter, which need not wait for its dial
	})
	pc := <-got
	assert.Same(t, xc, pc.Conn())
	close(unblock)
	pc.Release()
	assert.NoError(t, p.CheckAccounting())
	require.NoError(t, p.Close()) // waits for the dial
	assert.EqualValues(t, 2, src.dials.Load())
	src.checkAllClosedOnce(t)
}

// While the source is down, callers fail fast with the last dial error,
// dials back off exponentially (one probe at a time), and the first
// successful dial ends it. In the outage's first 100 ms, a caller
// waits for the next probe instead, and gets its answer.
func TestSourceDownFailsFastAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var dialTimes []time.Duration
		start := time.Now()
		var mu sync.Mutex
		src.onDial = func(context.Context) error {
			mu.Lock()
			dialTimes = append(dialTimes, time.Since(start))
			mu.Unlock()
			return nil
		}
		refused := errors.New("connection refused")
		src.failDials(refused)
		cfg := testConfig(4)
		cfg.DialBackoff = 100 * time.Millisecond
		cfg.DialBackoffMax = 800 * time.Millisecond
		p := newTestPool(t, src, cfg)

		_, err := p.Acquire(bg) // the dial made for it fails
		require.ErrorIs(t, err, refused)
		require.ErrorIs(t, err, pool.ErrDial)
		s := p.Stats()
		assert.True(t, s.Down)
		assert.Equal(t, 1, s.DialFailuresInARow)

		// Just after, a caller waits for the next probe (at most 20 ms
		// away), one probe only, and fails with its error.
		before := src.dials.Load()
		t0 := time.Now()
		_, err = p.Acquire(bg)
		require.ErrorIs(t, err, refused)
		assert.Positive(t, time.Since(t0), "the caller did not wait for the probe")
		assert.LessOrEqual(t, time.Since(t0), 20*time.Millisecond)
		assert.Equal(t, before+1, src.dials.Load(), "the caller waited for more than one probe")
		assert.Zero(t, p.Stats().FailedFast)

		// Two seconds into the outage, the probe that a caller's wait
		// starts fails, and then 32 callers fail at once, and nothing
		// dials.
		time.Sleep(2 * time.Second)
		_, err = p.Acquire(bg)
		require.ErrorIs(t, err, refused)
		before = src.dials.Load()
		for range 32 {
			t0 := time.Now()
			_, err := p.Acquire(bg)
			require.ErrorIs(t, err, refused)
			assert.Zero(t, time.Since(t0), "a caller waited while the source was down")
		}
		assert.Equal(t, before, src.dials.Load(), "dialled during the backoff")
		assert.EqualValues(t, 32, p.Stats().FailedFast)

		// Keep asking, once per 10 ms, for 10 s: the probes back off to
		// DialBackoffMax, so few dials are made.
		for range 1000 {
			_, _ = p.Acquire(bg)
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		n := len(dialTimes)
		for i := 1; i < n; i++ {
			gap := dialTimes[i] - dialTimes[i-1]
			assert.GreaterOrEqual(t, gap, 10*time.Millisecond, "dial %d came %v after the one before", i, gap)
			if i >= 10 { // past the quick retries and the first doublings
				assert.GreaterOrEqual(t, gap, 200*time.Millisecond, "dial %d came %v after the one before", i, gap)
			}
		}
		mu.Unlock()
		assert.LessOrEqual(t, n, 32, "%d dials in 12 s: no backoff", n) // 10 s over pauses of at least 400 ms, and the first few

		// The source comes back: the next probe succeeds and ends it.
		src.failDials(nil)
		time.Sleep(time.Second) // past the longest backoff
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		s = p.Stats()
		assert.False(t, s.Down)
		assert.Zero(t, s.DialFailuresInARow)
	})
}

// A burst of callers never starts more than MaxConcurrentDials dials at
// once, and while the source is down only one probe is in flight.
func TestConcurrentDialsAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var inFlight, peak atomic.Int64
		var fail atomic.Bool
		src.onDial = func(context.Context) error {
			n := inFlight.Add(1)
			for {
				m := peak.Load()
				if n <= m || peak.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			inFlight.Add(-1)
			if fail.Load() {
				return errors.New("refused")
			}
			return nil
		}
		cfg := testConfig(20)
		cfg.MaxConcurrentDials = 3
		cfg.DialBackoff = 10 * time.Millisecond
		p := newTestPool(t, src, cfg)
		var wg sync.WaitGroup
		held := make(chan *pool.PooledConn[*fakeConn], 20)
		for range 20 {
			wg.Go(func() {
				pc, err := p.Acquire(bg)
				if assert.NoError(t, err) {
					held <- pc
				}
			})
		}
		wg.Wait()
		close(held)
		for pc := range held {
			pc.Release()
		}
		assert.EqualValues(t, 3, peak.Load(), "dials in flight at once")
		assert.EqualValues(t, 20, p.Stats().Total)

		// Down: a burst sees one probe at a time.
		require.NoError(t, p.Close())
		p = newTestPool(t, src, cfg)
		fail.Store(true)
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrDial)
		require.True(t, p.Stats().Down)
		peak.Store(0)
		for range 20 {
			wg.Go(func() {
				for range 10 {
					_, _ = p.Acquire(bg)
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		assert.EqualValues(t, 1, peak.Load(), "more than one probe at once while down")
		assert.True(t, p.Stats().Down)
		fail.Store(false)
	})
}

func TestDialErrorReachesTheWaitingCaller(t *testing.T) {
	src := newFakeSource(t)
	refused := errors.New("connection refused")
	src.failDials(refused)
	p := newTestPool(t, src, testConfig(2))
	_, err := p.Acquire(bg)
	assert.ErrorIs(t, err, refused)
	assert.ErrorIs(t, err, pool.ErrDial)
	assert.NotErrorIs(t, err, pool.ErrAcquireTimeout)
	s := p.Stats()
	assert.EqualValues(t, 1, s.DialErrors)
	assert.Equal(t, 0, s.Total)
	assert.Equal(t, 0, s.Waiting)
}

func TestDialOutlivesTheCallerThatStartedIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onDial = func(ctx context.Context) error {
			time.Sleep(5 * time.Second) // a slow TLS handshake, in fake time
			return ctx.Err()
		}
		p := newTestPool(t, src, testConfig(1))
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		_, err := p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		time.Sleep(4 * time.Second) // the dial goes on and lands in the idle stack
		synctest.Wait()
		s := p.Stats()
		assert.Equal(t, 1, s.Idle, "dial cancelled with its caller")
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		assert.EqualValues(t, 1, src.dials.Load())
	})
}

func TestConcurrentDialsNeverExceedMaxSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onDial = func(context.Context) error { time.Sleep(time.Second); return nil }
		p := newTestPool(t, src, testConfig(3))
		done := make(chan struct{})
		for range 50 {
			go func() {
				defer func() { done <- struct{}{} }()
				pc, err := p.Acquire(bg)
				if assert.NoError(t, err) {
					time.Sleep(10 * time.Millisecond)
					pc.Release()
				}
			}()
		}
		synctest.Wait()
		assert.Equal(t, 3, p.Stats().Dialing)
		for range 50 {
			<-done
		}
		assert.EqualValues(t, 3, src.dials.Load())
		assert.EqualValues(t, 3, src.maxAlive.Load())
	})
}

// After a connection is discarded, a caller that was waiting gets a
// replacement dialled for it rather than waiting out its timeout.
func TestDiscardDialsReplacementForWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		held, _ := p.Acquire(bg)
		got := make(chan error)
		go func() {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			got <- err
		}()
		synctest.Wait()
		start := time.Now()
		held.Discard()
		require.NoError(t, <-got)
		assert.Zero(t, time.Since(start))
		assert.EqualValues(t, 2, src.dials.Load())
	})
}

// A new connection that fails its first Ping counts against the source as
// a failed dial, as one that fails IsValid does: backoff and fail-fast
// apply. Before, a failed Ping closed it and the pool redialled at once,
// over and over (51 dials for one Acquire in fake time), until the
// AcquireTimeout.
func TestNewConnectionFailingItsPingCountsAsAFailedDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onPing = func(_ context.Context, c *fakeConn) error {
			if !c.used.Load() {
				return errors.New("auth token expired")
			}
			return nil
		}
		cfg := testConfig(2)
		cfg.MinSize = 1
		cfg.PingAfterIdle = time.Millisecond
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		require.NoError(t, p.WaitReady(bg))
		time.Sleep(100 * time.Millisecond) // the warm connection is due for a Ping, within newConnWindow

		start := time.Now()
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrDial)
		assert.ErrorContains(t, err, "auth token expired")
		assert.Zero(t, time.Since(start), "failed fast, without waiting")
		assert.EqualValues(t, 1, src.dials.Load(), "redialled without backoff")
		s := p.Stats()
		assert.True(t, s.Down)
		assert.Equal(t, 1, s.DialFailuresInARow)
		assert.EqualValues(t, 1, s.DialErrors)
		assert.EqualValues(t, 1, s.FailedFast)

		// A connection that has been lent is not new: its failed Ping is
		// the connection's fault, not the source's.
		src.onPing = nil
		time.Sleep(time.Second) // backoff over; the reaper-less pool redials on demand
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Conn().use(t)
		pc.Conn().done()
		pc.Release()
		src.onPing = func(context.Context, *fakeConn) error { return errors.New("broken pipe") }
		time.Sleep(time.Second)
		dialErrors := p.Stats().DialErrors
		pc, err = p.Acquire(bg)
		require.NoError(t, err, "a replacement is dialled for the caller")
		pc.Release()
		assert.Equal(t, dialErrors, p.Stats().DialErrors)
		assert.False(t, p.Stats().Down)

		// Nor is a warm connection that has sat idle a second or more
		// since its dial: the server may have ended it since (a restart,
		// an idle killer). It is replaced, and the caller served.
		src2 := newFakeSource(t)
		src2.onPing = func(_ context.Context, c *fakeConn) error {
			if !c.used.Load() {
				return errors.New("terminating connection due to administrator command")
			}
			return nil
		}
		p2 := newTestPool(t, src2, cfg)
		require.NoError(t, p2.WaitReady(bg))
		time.Sleep(2 * time.Second)
		pc, err = p2.Acquire(bg)
		require.NoError(t, err, "a warm connection ended by the server failed its caller")
		pc.Release()
		s = p2.Stats()
		assert.False(t, s.Down)
		assert.Zero(t, s.DialErrors)
		assert.EqualValues(t, 1, s.ClosedBroken)
	})
}

// DialFailuresInARow counts failed dials whether or not backoff is on;
// with DialBackoff zero the source is never marked Down.
func TestDialFailuresAreCountedWithBackoffOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.DialBackoff = 0
		cfg.AcquireTimeout = 0
		p := newTestPool(t, src, cfg)
		src.failDials(errors.New("connection refused"))
		for range 3 {
			_, err := p.Acquire(bg)
			require.ErrorIs(t, err, pool.ErrDial)
		}
		s := p.Stats()
		assert.Equal(t, 3, s.DialFailuresInARow)
		assert.False(t, s.Down)
		src.failDials(nil)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		assert.Zero(t, p.Stats().DialFailuresInARow)
	})
}
