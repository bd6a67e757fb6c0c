package pool_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Defect 7: a panicking Close in Pool.Close does not stop the other idle
// connections from being closed; it becomes an error.
func TestPanickingCloseDoesNotStopPoolClose(t *testing.T) {
	src := newFakeSource(t)
	src.onClose = func(c *fakeConn) error {
		if c.id == 1 {
			panic("close exploded")
		}
		return nil
	}
	p, err := pool.New(src.factory(), testConfig(3))
	require.NoError(t, err)
	var held []*pool.PooledConn[*fakeConn]
	for range 3 {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		held = append(held, pc)
	}
	for _, pc := range held {
		pc.Release()
	}
	var closeErr error
	require.NotPanics(t, func() { closeErr = p.Close() })
	require.Error(t, closeErr)
	assert.Contains(t, closeErr.Error(), "close exploded")
	assert.EqualValues(t, 2, src.closes.Load(), "connections after the panicking one were not closed")
	assert.Equal(t, 0, p.Stats().Total)
}

// Defect 8: Shutdown returns when its ctx ends, even when closing the idle
// connections is slow.
func TestShutdownHonoursItsContextWhenClosesAreSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onClose = func(*fakeConn) error { time.Sleep(5 * time.Second); return nil }
		p, err := pool.New(src.factory(), testConfig(10))
		require.NoError(t, err)
		fillIdle(t, p, 10)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		err = p.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start), "Shutdown ignored its ctx")
		time.Sleep(time.Minute) // the closes finish in the background
		synctest.Wait()
		src.checkAllClosedOnce(t)
	})
}

// Defect 8: a Factory that ignores its ctx does not hang Shutdown.
func TestShutdownHonoursItsContextWhenADialHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		release := make(chan struct{})
		src.onDial = func(context.Context) error { <-release; return nil }
		p, err := pool.New(src.factory(), testConfig(1))
		require.NoError(t, err)
		_, _ = p.TryAcquire(bg) // starts a dial that ignores its ctx
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		err = p.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start))
		close(release)
		synctest.Wait()
		src.checkAllClosedOnce(t)
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
