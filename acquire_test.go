package pool_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

// Defect 2: a waiter handed a connection that fails its acquire-time check
// keeps its place at the head of the queue.
func TestWaiterKeepsItsPlaceWhenItsConnectionFailsTheCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var broken atomic.Pointer[fakeConn]
		src.onPing = func(_ context.Context, c *fakeConn) error {
			if c == broken.Load() {
				return errors.New("broken")
			}
			return nil
		}
		cfg := testConfig(1)
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		time.Sleep(2 * time.Second) // so that its next acquire pings it
		order := make(chan string, 2)
		for _, name := range []string{"first", "second"} {
			go func() {
				pc, err := p.Acquire(bg)
				if err != nil {
					order <- "error: " + err.Error()
					return
				}
				order <- name
				pc.Release()
			}()
			synctest.Wait() // queued in this order
		}
		broken.Store(held.Conn())
		held.Release() // goes to "first", fails its ping, is replaced
		assert.Equal(t, "first", <-order)
		assert.Equal(t, "second", <-order)
	})
}

// Defect 3: a caller whose ctx ends during a health check gets the ctx's
// error; the other idle connections are neither pinged nor closed.
func TestCanceledPingClosesAtMostOneConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var pinging atomic.Bool
		src.onPing = func(ctx context.Context, _ *fakeConn) error {
			if !pinging.Load() {
				return nil
			}
			<-ctx.Done() // a black-holed server
			return ctx.Err()
		}
		cfg := testConfig(10)
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		fillIdle(t, p, 10)
		time.Sleep(2 * time.Second) // idle past PingAfterIdle
		pinging.Store(true)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		pingsBefore := src.pings.Load()
		_, err := p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		s := p.Stats()
		assert.LessOrEqual(t, s.ClosedBroken, int64(1), "healthy connections closed because the caller's ctx ended")
		assert.GreaterOrEqual(t, s.Idle, 9)
		assert.EqualValues(t, 1, src.pings.Load()-pingsBefore, "pinged with a done ctx")
	})
}

// Defect 4: AcquireTimeout bounds the whole Acquire, health checks
// included, not just the wait in the queue.
func TestAcquireTimeoutBoundsHealthChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var pinging atomic.Bool
		src.onPing = func(ctx context.Context, _ *fakeConn) error {
			if !pinging.Load() {
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		}
		cfg := testConfig(5)
		cfg.PingAfterIdle = time.Second
		cfg.PingTimeout = 5 * time.Second
		cfg.AcquireTimeout = 100 * time.Millisecond
		p := newTestPool(t, src, cfg)
		fillIdle(t, p, 5)
		time.Sleep(2 * time.Second) // idle past PingAfterIdle
		pinging.Store(true)
		start := time.Now()
		_, err := p.Acquire(bg)
		assert.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "Acquire ran past AcquireTimeout")
	})
}

// The Python pool waited for a free connection while holding its lock, so
// a release could not get in until the waiter timed out. Here the waiter is
// served the instant the holder releases.
func TestReleaseReachesWaiterAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.AcquireTimeout = 30 * time.Second
		p := newTestPool(t, newFakeSource(t), cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		got := make(chan error)
		go func() {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			got <- err
		}()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Waiting)
		time.Sleep(time.Second)
		start := time.Now()
		held.Release()
		require.NoError(t, <-got)
		assert.Zero(t, time.Since(start), "waiter was not served at the release")
		s := p.Stats()
		assert.EqualValues(t, 0, s.TimedOutAcquires)
		assert.Equal(t, time.Second, s.WaitDuration)
	})
}

// The Python pool ran health checks under its lock. Here a Ping, a Reset
// and a dial that hang do not stop other callers from using the pool.
func TestHealthChecksRunOutsideTheLock(t *testing.T) {
	src := newFakeSource(t)
	inCheck := make(chan struct{}, 1)
	unblock := make(chan struct{})
	var blocking atomic.Pointer[fakeConn]
	src.onPing = func(_ context.Context, c *fakeConn) error {
		if c == blocking.Load() {
			inCheck <- struct{}{}
			<-unblock
		}
		return nil
	}
	src.onReset = src.onPing
	cfg := testConfig(3)
	cfg.PingAfterIdle = time.Nanosecond // ping on (nearly) every acquire from idle
	p := newTestPool(t, src, cfg)
	a, _ := p.Acquire(bg)
	b, _ := p.Acquire(bg)
	blocking.Store(a.Conn())
	released := make(chan struct{})
	go func() { a.Release(); close(released) }() // a's Reset blocks inside Release
	<-inCheck

	useOthers := func() {
		_ = p.Stats()
		bc := b.Conn()
		b.Release()
		pc, err := p.Acquire(bg) // takes b back (ping does not block for b)
		if assert.NoError(t, err) {
			assert.Same(t, bc, pc.Conn())
			b = pc
		}
	}
	waitOrFail(t, "Stats, Release and Acquire during a Reset", useOthers)
	unblock <- struct{}{}
	<-released

	// a is idle again; its ping on acquire blocks next.
	got := make(chan *pool.PooledConn[*fakeConn])
	go func() {
		pc, err := p.Acquire(bg)
		assert.NoError(t, err)
		got <- pc
	}()
	<-inCheck
	waitOrFail(t, "Stats, Release and Acquire during a Ping", useOthers)
	unblock <- struct{}{}
	blocking.Store(nil)
	c := <-got

	c.Release()
	b.Release()
	assert.NoError(t, p.CheckAccounting())
}
