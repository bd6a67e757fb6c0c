package pool_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

var bg = context.Background()

func TestDefaultConfig(t *testing.T) {
	cfg := pool.DefaultConfig()
	assert.Equal(t, 10, cfg.MaxSize)
	assert.Equal(t, 1, cfg.MinSize)
	assert.Equal(t, 5*time.Minute, cfg.MaxIdleTime)
	assert.Equal(t, 30*time.Second, cfg.AcquireTimeout)
	assert.Equal(t, time.Hour, cfg.MaxLifetime)
	assert.Equal(t, 60*time.Second, cfg.ReapInterval)
	assert.NoError(t, cfg.Validate())
}

func TestConfigValidateNamesBadField(t *testing.T) {
	tests := []struct {
		field string
		edit  func(*pool.Config)
	}{
		{"MaxSize", func(c *pool.Config) { c.MaxSize = 0 }},
		{"MinSize", func(c *pool.Config) { c.MinSize = -1 }},
		{"MinSize", func(c *pool.Config) { c.MinSize = 11 }},
		{"MaxIdleTime", func(c *pool.Config) { c.MaxIdleTime = -time.Second }},
		{"MaxLifetime", func(c *pool.Config) { c.MaxLifetime = -time.Second }},
		{"AcquireTimeout", func(c *pool.Config) { c.AcquireTimeout = -1 }},
		{"ReapInterval", func(c *pool.Config) { c.ReapInterval = -1 }},
		{"DialTimeout", func(c *pool.Config) { c.DialTimeout = -1 }},
		{"PingTimeout", func(c *pool.Config) { c.PingTimeout = -1 }},
		{"ResetTimeout", func(c *pool.Config) { c.ResetTimeout = -1 }},
	}
	for _, tt := range tests {
		cfg := pool.DefaultConfig()
		tt.edit(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, pool.ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", tt.field, err)
			continue
		}
		assert.Contains(t, err.Error(), tt.field)
		_, err = pool.New(newFakeSource(t).factory(), cfg)
		assert.ErrorIs(t, err, pool.ErrInvalidConfig, "New with bad %s", tt.field)
	}
	_, err := pool.New[*fakeConn](nil, pool.DefaultConfig())
	assert.ErrorIs(t, err, pool.ErrInvalidConfig, "New with nil factory")
	assert.ErrorIs(t, pool.Config{}.Validate(), pool.ErrInvalidConfig, "zero Config")
}

func TestAcquireReleaseReusesConnection(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	first := pc.Conn()
	pc.Release()
	pc, err = p.Acquire(bg)
	require.NoError(t, err)
	assert.Same(t, first, pc.Conn(), "released connection not reused")
	pc.Release()
	assert.EqualValues(t, 1, src.dials.Load())
}

func TestIdleConnectionsAreReusedNewestFirst(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(3))
	a, _ := p.Acquire(bg)
	b, _ := p.Acquire(bg)
	c, _ := p.Acquire(bg)
	newest := b.Conn()
	a.Release()
	c.Release()
	b.Release() // b is the newest idle
	got, err := p.Acquire(bg)
	require.NoError(t, err)
	assert.Same(t, newest, got.Conn())
	got.Release()
}

func TestAcquireAtMaxSizeWaitsAndServesInFIFOOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)

		const n = 5
		order := make(chan int, n)
		for i := range n {
			go func() {
				pc, err := p.Acquire(bg)
				if !assert.NoError(t, err) {
					return
				}
				order <- i
				pc.Release()
			}()
			synctest.Wait() // waiter i is queued before waiter i+1
		}
		assert.Equal(t, n, p.Stats().Waiting)
		held.Release()
		for want := range n {
			assert.Equal(t, want, <-order)
		}
		assert.EqualValues(t, 1, src.dials.Load(), "pool grew past MaxSize 1")
		// The first Acquire waited for its dial, the n others for a release.
		assert.EqualValues(t, n+1, p.Stats().WaitCount)
	})
}

func TestAcquireTimeoutReturnsErrAcquireTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.AcquireTimeout = 2 * time.Second
		p := newTestPool(t, newFakeSource(t), cfg)
		held, _ := p.Acquire(bg)
		start := time.Now()
		_, err := p.Acquire(bg)
		assert.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 2*time.Second, time.Since(start))
		s := p.Stats()
		assert.EqualValues(t, 1, s.TimedOutAcquires)
		assert.Equal(t, 0, s.Waiting, "timed-out waiter left in queue")
		held.Release()
		assert.Equal(t, 1, p.Stats().Idle, "connection lost after a timeout")
	})
}

func TestAcquireCallerDeadlineReturnsContextError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.AcquireTimeout = time.Minute
		p := newTestPool(t, newFakeSource(t), cfg)
		held, _ := p.Acquire(bg)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		_, err := p.Acquire(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.Equal(t, time.Second, time.Since(start))
		assert.EqualValues(t, 1, p.Stats().CanceledAcquires)
		held.Release()
	})
}

func TestAcquireCanceledContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		ctx, cancel := context.WithCancel(bg)
		cancel()
		_, err := p.Acquire(ctx)
		assert.ErrorIs(t, err, context.Canceled)
		assert.EqualValues(t, 0, src.dials.Load(), "a done ctx still dialled")

		held, _ := p.Acquire(bg)
		ctx, cancel = context.WithCancel(bg)
		errc := make(chan error)
		go func() {
			_, err := p.Acquire(ctx)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		assert.ErrorIs(t, <-errc, context.Canceled)
		assert.Equal(t, 0, p.Stats().Waiting)
		held.Release()
		assert.Equal(t, 1, p.Stats().Idle)
	})
}

// A connection handed to a waiter at the instant it gives up must go back
// to the pool, not be lost: the hook holds the waiter between its ctx
// ending and leaving the queue while the holder releases into it. (An
// AcquireTimeout cannot race like this: the pool's timer fails the waiter
// under the lock that a release takes to serve it.)
func TestConnectionHandedToWaiterThatGaveUpGoesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		inWindow := make(chan struct{})
		gate := make(chan struct{})
		p.SetGaveUpHook(func() { inWindow <- struct{}{}; <-gate })

		held, err := p.Acquire(bg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(bg)
		got := make(chan error)
		go func() {
			_, err := p.Acquire(ctx)
			got <- err
		}()
		synctest.Wait() // queued
		cancel()
		<-inWindow
		held.Release() // hands the connection to the waiter that gave up
		close(gate)
		assert.ErrorIs(t, <-got, context.Canceled)
		s := p.Stats()
		assert.Equal(t, 1, s.Idle, "connection lost in the hand-off race")
		assert.Equal(t, 0, s.InUse)
		assert.Equal(t, 0, s.Waiting)
		assert.EqualValues(t, 1, s.AcquireCount, "the hand-off that was given back is not an acquire")
		require.NoError(t, p.CheckAccounting())
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		assert.EqualValues(t, 1, src.dials.Load())
	})
}

// Waiters share one timer: each times out at its own deadline, in order,
// and a waiter served in time is not failed by it.
func TestAcquireTimeoutsShareOneTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.AcquireTimeout = 3 * time.Second
		p := newTestPool(t, newFakeSource(t), cfg)
		held, _ := p.Acquire(bg)
		start := time.Now()
		type outcome struct {
			i     int
			err   error
			after time.Duration
		}
		done := make(chan outcome, 3)
		for i := range 3 {
			go func() {
				pc, err := p.Acquire(bg)
				if err == nil {
					pc.Release()
				}
				done <- outcome{i, err, time.Since(start)}
			}()
			time.Sleep(time.Second) // waiter i queues at i seconds
		}
		// At 3s waiter 0 times out; release then serves waiter 1.
		o := <-done
		assert.Equal(t, 0, o.i)
		assert.ErrorIs(t, o.err, pool.ErrAcquireTimeout)
		assert.Equal(t, 3*time.Second, o.after)
		held.Release()
		o = <-done
		assert.Equal(t, 1, o.i)
		assert.NoError(t, o.err)
		o = <-done
		assert.Equal(t, 2, o.i)
		assert.NoError(t, o.err)
		assert.EqualValues(t, 1, p.Stats().TimedOutAcquires)
	})
}

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

func TestReaperClosesIdleConnectionsAboveMinSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(5)
		cfg.MinSize = 1
		cfg.MaxIdleTime = 5 * time.Minute
		cfg.MaxLifetime = 0
		cfg.ReapInterval = time.Minute
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 4 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Release()
		}
		time.Sleep(4 * time.Minute) // fake time: not yet idle long enough
		synctest.Wait()
		assert.Equal(t, 4, p.Stats().Idle)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		s := p.Stats()
		assert.Equal(t, 1, s.Idle, "reaper must keep MinSize")
		assert.Equal(t, 1, s.Total)
		assert.EqualValues(t, 3, s.ClosedIdle)
		assert.EqualValues(t, 3, src.closes.Load())
	})
}

func TestReaperClosesExpiredConnectionsAndRefills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(5)
		cfg.MinSize = 2
		cfg.MaxIdleTime = 0
		cfg.MaxLifetime = time.Hour
		cfg.ReapInterval = time.Minute
		p := newTestPool(t, src, cfg)
		require.NoError(t, p.WaitReady(bg))
		first := src.all()
		time.Sleep(61 * time.Minute)
		synctest.Wait()
		for _, c := range first {
			assert.EqualValues(t, 1, c.closed.Load(), "%v outlived MaxLifetime", c)
		}
		s := p.Stats()
		assert.EqualValues(t, 2, s.ClosedLifetime)
		assert.Equal(t, 2, s.Idle, "reaper must refill to MinSize")
		assert.EqualValues(t, 4, src.dials.Load())
	})
}

func TestLifetimeJitterSpreadsExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(50)
		cfg.MaxLifetime = time.Hour
		cfg.MaxIdleTime = 0
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 50 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Release()
		}
		// Expiry falls in (54m, 60m]: after 57 minutes some but not all
		// have expired.
		_, early := p.ReapStep(time.Now().Add(57 * time.Minute))
		assert.Greater(t, early, 0, "no jitter: nothing expired early")
		assert.Less(t, early, 50, "jitter larger than a tenth of MaxLifetime")
		_, rest := p.ReapStep(time.Now().Add(time.Hour))
		assert.Equal(t, 50, early+rest)
	})
}

// Idle time is stamped without a clock read on release, so it may be
// over-estimated by the previous loan, never under-estimated: a connection
// held for longer than PingAfterIdle is pinged on its next acquire.
// Idle time runs from the release, not from the start of the loan: a
// connection held longer than PingAfterIdle and reacquired at once is not
// pinged; one left idle PingAfterIdle after its release is.
func TestIdleTimeStartsAtRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		time.Sleep(2 * time.Second)
		pc.Release()
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		assert.EqualValues(t, 0, src.pings.Load(), "pinged after a long loan, with no idle time")
		time.Sleep(time.Second)
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		assert.EqualValues(t, 1, src.pings.Load(), "not pinged after PingAfterIdle idle")
	})
}

func TestReleaseDiscardsInvalidConnection(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, _ := p.Acquire(bg)
	c := pc.Conn()
	c.invalid.Store(true)
	pc.Release()
	assert.EqualValues(t, 1, c.closed.Load())
	s := p.Stats()
	assert.Equal(t, 0, s.Total)
	assert.EqualValues(t, 1, s.ClosedBroken)
}

func TestAcquireSkipsInvalidIdleConnection(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, _ := p.Acquire(bg)
	c := pc.Conn()
	pc.Release()
	c.invalid.Store(true) // broke while idle
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	assert.NotSame(t, c, pc.Conn())
	assert.EqualValues(t, 1, c.closed.Load())
	pc.Release()
}

func TestResetRunsOnReleaseAndFailureDiscards(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, _ := p.Acquire(bg)
	c := pc.Conn()
	c.dirty.Store(true)
	pc.Release()
	assert.False(t, c.dirty.Load(), "Reset not called on release")

	src.onReset = func(context.Context, *fakeConn) error { return errors.New("reset failed") }
	pc, _ = p.Acquire(bg)
	require.Same(t, c, pc.Conn())
	pc.Release()
	assert.EqualValues(t, 1, c.closed.Load(), "connection kept after a failed Reset")
	assert.EqualValues(t, 1, p.Stats().ClosedBroken)
}

func TestPingAfterIdleThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		pc, _ := p.Acquire(bg)
		pc.Release()
		pc, _ = p.Acquire(bg) // idle for no time: no ping
		pc.Release()
		assert.EqualValues(t, 0, src.pings.Load())

		time.Sleep(2 * time.Second)
		pc, _ = p.Acquire(bg)
		assert.EqualValues(t, 1, src.pings.Load(), "idle connection not pinged")
		c := pc.Conn()
		pc.Release()

		src.onPing = func(_ context.Context, conn *fakeConn) error {
			if conn == c {
				return errors.New("server gone")
			}
			return nil
		}
		time.Sleep(2 * time.Second)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, c, pc.Conn(), "connection that failed its ping was lent")
		assert.EqualValues(t, 1, c.closed.Load())
		assert.EqualValues(t, 1, p.Stats().ClosedBroken)
		pc.Release()
	})
}
