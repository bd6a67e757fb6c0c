package pool_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

func TestStatsCountEveryEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		a, _ := p.Acquire(bg)
		b, _ := p.Acquire(bg)
		s := p.Stats()
		// Both waited, for no time, on their dial.
		assert.Equal(t, pool.Stats{Total: 2, InUse: 2, MinSize: 0, MaxSize: 2, AcquireCount: 2, WaitCount: 2, Created: 2}, s)

		_, err := p.Acquire(bg) // times out after 1s
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		a.Release()
		b.Discard()
		s = p.Stats()
		assert.Equal(t, 1, s.Total)
		assert.Equal(t, 1, s.Idle)
		assert.Equal(t, 0, s.InUse)
		assert.EqualValues(t, 3, s.WaitCount)
		assert.Equal(t, time.Second, s.WaitDuration)
		assert.EqualValues(t, 1, s.TimedOutAcquires)
		assert.EqualValues(t, 1, s.ClosedBroken)
		assert.EqualValues(t, 2, s.AcquireCount)
	})
}

func TestCloseClosesIdleAndClosesInUseOnRelease(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	held, _ := p.Acquire(bg)
	idle, _ := p.Acquire(bg)
	idle.Release()

	require.NoError(t, p.Close())
	assert.EqualValues(t, 1, src.closes.Load(), "idle connection not closed by Close")
	_, err := p.Acquire(bg)
	assert.ErrorIs(t, err, pool.ErrPoolClosed)
	_, err = p.TryAcquire(bg)
	assert.ErrorIs(t, err, pool.ErrPoolClosed)

	held.Release()
	assert.EqualValues(t, 2, src.closes.Load(), "in-use connection not closed on release after Close")
	assert.NoError(t, p.Close(), "second Close")
	s := p.Stats()
	assert.EqualValues(t, 2, s.ClosedPool)
	assert.Equal(t, 0, s.Total)
	src.checkAllClosedOnce(t)
}

func TestCloseFailsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		held, _ := p.Acquire(bg)
		waitErr := make(chan error)
		for range 3 {
			go func() {
				_, err := p.Acquire(bg)
				waitErr <- err
			}()
		}
		synctest.Wait()
		require.Equal(t, 3, p.Stats().Waiting)
		require.NoError(t, p.Close())
		for range 3 {
			assert.ErrorIs(t, <-waitErr, pool.ErrPoolClosed)
		}
		held.Release()
		src.checkAllClosedOnce(t)
	})
}

func TestCloseCancelsDialInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onDial = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		cfg := testConfig(1)
		cfg.DialTimeout = 0
		p := newTestPool(t, src, cfg)
		errc := make(chan error)
		go func() {
			_, err := p.Acquire(bg)
			errc <- err
		}()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Dialing)
		require.NoError(t, p.Close()) // returns only once the dial goroutine is gone
		assert.ErrorIs(t, <-errc, pool.ErrPoolClosed)
		assert.Equal(t, 0, p.Stats().Total)
	})
}

func TestShutdownWaitsForConnectionsInUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(2))
		held, _ := p.Acquire(bg)
		done := make(chan error)
		go func() { done <- p.Shutdown(bg) }()
		synctest.Wait()
		requireNotDone(t, done, "Shutdown returned while a connection was in use")
		held.Release()
		require.NoError(t, <-done)
		src.checkAllClosedOnce(t)

		p2 := newTestPool(t, src, testConfig(1))
		held, _ = p2.Acquire(bg)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		assert.ErrorIs(t, p2.Shutdown(ctx), context.DeadlineExceeded)
		held.Release()
		src.checkAllClosedOnce(t)
	})
}

func TestWithReleasesOnSuccessAndOrdinaryError(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1))
	var first *fakeConn
	require.NoError(t, p.With(bg, func(c *fakeConn) error { first = c; return nil }))
	appErr := errors.New("no rows")
	err := p.With(bg, func(c *fakeConn) error {
		assert.Same(t, first, c)
		return appErr
	})
	assert.Same(t, appErr, err, "With must return fn's error unchanged")
	assert.Equal(t, 1, p.Stats().Idle)
	assert.EqualValues(t, 0, first.closed.Load())
}

func TestWithDiscardsOnErrBadConn(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1))
	var c1 *fakeConn
	err := p.With(bg, func(c *fakeConn) error {
		c1 = c
		return fmt.Errorf("query: %w", pool.ErrBadConn)
	})
	assert.ErrorIs(t, err, pool.ErrBadConn)
	assert.EqualValues(t, 1, c1.closed.Load())
	require.NoError(t, p.With(bg, func(c *fakeConn) error {
		assert.NotSame(t, c1, c)
		return nil
	}))
}

func TestWithDiscardsAndRepanicsOnPanic(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1))
	var c1 *fakeConn
	assert.PanicsWithValue(t, "boom", func() {
		_ = p.With(bg, func(c *fakeConn) error { c1 = c; panic("boom") })
	})
	assert.EqualValues(t, 1, c1.closed.Load())
	s := p.Stats()
	assert.Equal(t, 0, s.InUse)
	assert.Equal(t, 0, s.Total)
}

func TestMisuseOfAHandlePanics(t *testing.T) {
	p := newTestPool(t, newFakeSource(t), testConfig(1))
	pc, _ := p.Acquire(bg)
	pc.Release()
	assert.PanicsWithValue(t, "pool: Release called on a loan that has ended (released twice?)", pc.Release)
	assert.Panics(t, pc.Discard)
	assert.Panics(t, func() { pc.Conn() })
	assert.NoError(t, p.CheckAccounting())
	assert.Equal(t, 1, p.Stats().Idle, "double release must not put the connection back twice")
}

func TestTryAcquireNeverWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		_, err := p.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		synctest.Wait() // the background dial it started
		pc, err := p.TryAcquire(bg)
		require.NoError(t, err)
		_, err = p.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		pc.Release()
		assert.EqualValues(t, 1, src.dials.Load())
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

func TestExpiredConnectionIsNeverLent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.MaxLifetime = time.Hour
		p := newTestPool(t, src, cfg) // no reaper: Acquire must notice
		pc, _ := p.Acquire(bg)
		old := pc.Conn()
		time.Sleep(2 * time.Hour) // expires while in use: the loan is not cut short
		assert.EqualValues(t, 0, old.closed.Load())
		pc.Release()
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, old, pc.Conn(), "expired connection lent")
		assert.EqualValues(t, 1, old.closed.Load())
		other := pc.Conn()
		pc.Release()
		time.Sleep(2 * time.Hour) // expires while idle
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, other, pc.Conn(), "expired connection lent")
		assert.EqualValues(t, 1, other.closed.Load())
		pc.Release()
		s := p.Stats()
		assert.EqualValues(t, 2, s.ClosedLifetime)
		assert.EqualValues(t, 3, s.AcquireCount, "a connection closed at checkout is not an acquire")
	})
}

// Acquire's clock may lag the real one by up to a refresh tick; it must
// still never lend a connection whose MaxLifetime has passed on the real
// clock. Acquires of a second connection keep the clock refreshing, once a
// millisecond, up to just before the first one expires; it is then
// acquired just after, before the next refresh.
func TestExpiredConnectionIsNeverLentWhileTheClockLags(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.MaxLifetime = time.Hour
		p := newTestPool(t, src, cfg)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		old, expires := pc.Conn(), pc.ExpiresAt()
		pc.Release()

		// The clock stops when nobody reads it. Restart it 3.5 ms before
		// expiry, holding old; it then refreshes at -2.5, -1.5 and -0.5
		// ms, each time read in between through the other connection.
		time.Sleep(time.Until(expires) - 3500*time.Microsecond)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		require.Same(t, old, held.Conn(), "not expired yet")
		for range 3 {
			time.Sleep(500 * time.Microsecond)
			other, err := p.Acquire(bg)
			require.NoError(t, err)
			require.NotSame(t, old, other.Conn())
			other.Release()
			time.Sleep(500 * time.Microsecond)
		}
		held.Release()                     // on top of the idle stack: the next Acquire checks it first
		time.Sleep(800 * time.Microsecond) // 0.3 ms past expiry; the last refresh was at -0.5 ms
		require.True(t, time.Now().After(expires))

		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, old, pc.Conn(), "a connection past its MaxLifetime was lent")
		assert.EqualValues(t, 1, old.closed.Load())
		assert.EqualValues(t, 1, p.Stats().ClosedLifetime)
		pc.Release()
	})
}
