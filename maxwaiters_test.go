package pool_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With MaxWaiters set, a caller who would be one waiter too many fails at
// once with ErrTooManyWaiters, through the registry too; those already
// waiting are served as before.
func TestMaxWaitersRefusesTheNextCallerAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.MaxWaiters = 2
		reg := newTestRegistry(t)
		require.NoError(t, reg.Register(bg, "db", src.factory(), cfg))
		held, err := reg.Get(bg, "db")
		require.NoError(t, err)
		served := make(chan error, 2)
		for range 2 {
			go func() { served <- reg.With(bg, "db", func(*fakeConn) error { return nil }) }()
		}
		synctest.Wait()
		start := time.Now()
		err = reg.With(bg, "db", func(*fakeConn) error { return nil })
		require.ErrorIs(t, err, pool.ErrTooManyWaiters)
		assert.ErrorContains(t, err, `source "db"`)
		assert.Zero(t, time.Since(start), "refused without waiting")
		require.NoError(t, reg.Release("db", held))
		require.NoError(t, <-served)
		require.NoError(t, <-served)
		s := reg.Stats()["db"]
		assert.EqualValues(t, 1, s.TooManyWaiters)
		assert.EqualValues(t, 3, s.WaitCount, "the first Get, for the dial, and the two waiters")

		cfg.MaxWaiters = -1
		assert.ErrorIs(t, cfg.Validate(), pool.ErrInvalidConfig)
	})
}

// A waiter whose connection fails its check goes back to the head of the
// queue; a caller let in meanwhile (the checking waiter did not count)
// would make one waiter too many, and is refused with ErrTooManyWaiters.
func TestAWaiterRequeuedAfterAFailedCheckKeepsMaxWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var failIn atomic.Int32 // the failNth IsValid call from now fails
		inCheck, fail := make(chan struct{}), make(chan struct{})
		src.onValid = func(*fakeConn) bool {
			if failIn.Add(-1) != 0 {
				return true
			}
			close(inCheck)
			<-fail
			return false
		}
		cfg := testConfig(1)
		cfg.MaxWaiters = 1
		p := newTestPool(t, src, cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		failIn.Store(2) // the release's check passes, the waiter's fails
		failed := held.Conn()

		first := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := p.Acquire(bg)
			assert.NoError(t, err)
			first <- pc
		}()
		synctest.Wait()
		held.Release() // to the first waiter, whose check blocks
		<-inCheck
		synctest.Wait()
		require.Equal(t, 0, p.Stats().Waiting)
		second := make(chan error, 1)
		go func() {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			second <- err
		}()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Waiting, "the newcomer was let in")

		close(fail) // the first waiter goes back to the head
		synctest.Wait()
		assert.ErrorIs(t, <-second, pool.ErrTooManyWaiters)
		pc := <-first
		assert.NotSame(t, failed, pc.Conn(), "a new connection replaced the one that failed")
		pc.Release()
		s := p.Stats()
		assert.EqualValues(t, 1, s.TooManyWaiters)
		assert.Equal(t, 0, s.Waiting)
		require.NoError(t, p.CheckAccounting())
	})
}
