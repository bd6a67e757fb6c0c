package pool_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// Raising MaxSize serves a waiter at once, with a new dial, without any
// release.
func TestSetMaxSizeGrowingServesWaitersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		got := make(chan error, 1)
		go func() {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			got <- err
		}()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Waiting)
		require.NoError(t, p.SetMaxSize(2))
		require.NoError(t, <-got)
		assert.EqualValues(t, 2, src.dials.Load())
		assert.Equal(t, 2, p.Stats().MaxSize)
		assert.Equal(t, 2, p.Config().MaxSize)
		held.Release()
		require.NoError(t, p.CheckAccounting())
	})
}

// Lowering MaxSize closes idle connections above it at once, oldest
// first, and lent ones when they come back; no loan is cut short.
func TestSetMaxSizeShrinkingClosesIdleNowAndLentOnReturn(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(4))
	var pcs []*pool.PooledConn[*fakeConn]
	for range 4 {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pcs = append(pcs, pc)
	}
	oldest, newest := pcs[0].Conn(), pcs[1].Conn()
	pcs[0].Release() // idle, released first: the oldest
	pcs[1].Release()
	require.NoError(t, p.SetMaxSize(1))
	assert.EqualValues(t, 1, oldest.closed.Load(), "the oldest idle connection first")
	assert.EqualValues(t, 1, newest.closed.Load())
	s := p.Stats()
	assert.Equal(t, 2, s.Total)
	assert.Equal(t, 2, s.InUse)
	assert.EqualValues(t, 2, s.ClosedResized)
	require.NoError(t, p.CheckAccounting())

	c2, c3 := pcs[2].Conn(), pcs[3].Conn() // loans still in progress
	assert.Zero(t, c2.closed.Load())
	pcs[2].Release() // above MaxSize: closed
	assert.EqualValues(t, 1, c2.closed.Load())
	pcs[3].Release() // within it: kept
	assert.Zero(t, c3.closed.Load())
	s = p.Stats()
	assert.Equal(t, 1, s.Total)
	assert.Equal(t, 1, s.Idle)
	assert.EqualValues(t, 3, s.ClosedResized)
	require.NoError(t, p.CheckAccounting())
}

// Callers waiting while MaxSize shrinks are not lost: each is served as
// the loans above the new size come back.
func TestSetMaxSizeShrinkingLosesNoWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(3)
		cfg.AcquireTimeout = 0
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 3 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		const waiters = 4
		served := make(chan *pool.PooledConn[*fakeConn], waiters)
		for range waiters {
			go func() {
				pc, err := p.Acquire(bg)
				if err != nil {
					t.Error(err)
					return
				}
				served <- pc
			}()
		}
		synctest.Wait()
		require.NoError(t, p.SetMaxSize(1))
		for _, pc := range held {
			pc.Release()
		}
		for range waiters {
			pc := <-served
			assert.LessOrEqual(t, p.Stats().Total, 1)
			pc.Release()
		}
		s := p.Stats()
		assert.Equal(t, 1, s.Total)
		assert.Zero(t, s.Waiting)
		require.NoError(t, p.CheckAccounting())
	})
}

// Raising MinSize dials the missing connections in the background.
func TestSetMinSizeDialsInTheBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(4))
		require.NoError(t, p.SetMinSize(3))
		require.NoError(t, p.WaitReady(bg))
		s := p.Stats()
		assert.Equal(t, 3, s.Idle)
		assert.Equal(t, 3, s.MinSize)
		assert.Equal(t, 3, p.Config().MinSize)
	})
}

// Bad sizes are refused with an error naming the field, and a closed pool
// cannot be resized.
func TestSetSizeRefusesBadValues(t *testing.T) {
	cfg := testConfig(4)
	cfg.MinSize = 2
	p := newTestPool(t, newFakeSource(t), cfg)
	for _, err := range []error{p.SetMaxSize(0), p.SetMaxSize(1), p.SetMinSize(-1), p.SetMinSize(5)} {
		assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	}
	assert.ErrorContains(t, p.SetMaxSize(1), "MaxSize is 1, below MinSize 2")
	assert.ErrorContains(t, p.SetMinSize(5), "MinSize is 5, above MaxSize 4")
	s := p.Stats()
	assert.Equal(t, 4, s.MaxSize)
	assert.Equal(t, 2, s.MinSize)
	require.NoError(t, p.Close())
	assert.ErrorIs(t, p.SetMaxSize(8), pool.ErrPoolClosed)
	assert.ErrorIs(t, p.SetMinSize(1), pool.ErrPoolClosed)
}

// Under load from many goroutines, with MaxSize changed at random, the
// books stay right, no loan is cut short or handed twice, no waiter is
// lost, and once the load ends the pool is within its last MaxSize.
func TestResizeUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(4)
		cfg.AcquireTimeout = 0
		p := newTestPool(t, src, cfg)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 200 {
					pc, err := p.Acquire(bg)
					if err != nil {
						t.Error(err)
						return
					}
					c := pc.Conn()
					c.use(t)
					time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
					c.done()
					pc.Release()
				}
			})
		}
		last := 0
		for range 100 {
			time.Sleep(time.Millisecond)
			last = 1 + rand.IntN(6)
			err := p.SetMaxSize(last)
			require.NoError(t, err)
			require.NoError(t, p.CheckAccounting())
		}
		wg.Wait()
		s := p.Stats()
		assert.LessOrEqual(t, s.Total, last)
		assert.Zero(t, s.Waiting)
		assert.EqualValues(t, 16*200, s.AcquireCount)
		assert.Positive(t, s.ClosedResized)
		require.NoError(t, p.CheckAccounting())
		require.NoError(t, p.Close())
		synctest.Wait()
		src.checkAllClosedOnce(t)
	})
}

// Shutdown while MaxSize changes under load: every loan finishes, the
// resizer and the workers stop with ErrPoolClosed, and every connection is
// closed exactly once.
func TestShutdownWhileResizingUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(4)
		cfg.AcquireTimeout = 0
		p := newTestPool(t, src, cfg)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					err := p.With(bg, func(c *fakeConn) error {
						c.use(t)
						time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
						c.done()
						return nil
					})
					if errors.Is(err, pool.ErrPoolClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Go(func() {
			for {
				time.Sleep(100 * time.Microsecond)
				if err := p.SetMaxSize(1 + rand.IntN(5)); err != nil {
					assert.ErrorIs(t, err, pool.ErrPoolClosed)
					return
				}
			}
		})
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, p.Shutdown(bg))
		wg.Wait()
		assert.Zero(t, p.Stats().Total)
		src.checkAllClosedOnce(t)
	})
}
