package pool_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Raising the limit lets waiting pools dial at once: three callers of
// three pools waiting on a budget of one are all served when it goes to 4.
func TestRaisingTheLimitServesTheWaitersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 4))
		held, err := a.Acquire(bg)
		require.NoError(t, err)
		var wg sync.WaitGroup
		var served atomic.Int32
		for _, name := range []string{"a", "c", "d"} {
			p := a
			if name != "a" {
				p = newTestPool(t, src, budgetConfig(b, name, 4))
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(bg, 5*time.Second)
				defer cancel()
				pc, err := p.Acquire(ctx)
				if assert.NoError(t, err, "pool %s", name) {
					served.Add(1)
					<-ctx.Done() // hold it: each caller needs a slot of its own
					pc.Release()
				}
			})
		}
		synctest.Wait()
		require.Zero(t, served.Load())
		start := time.Now()
		require.NoError(t, b.SetLimit(4))
		synctest.Wait()
		assert.EqualValues(t, 3, served.Load(), "waiters left waiting after the limit rose")
		assert.Zero(t, time.Since(start))
		wg.Wait()
		held.Release()
	})
}

// A pool's reserved MinSize arrives when the other pools hold the whole
// budget idle: New, SetMinSize and WaitReady reclaim for it.
func TestReservedMinSizeArrivesWhenOthersHoldTheBudgetIdle(t *testing.T) {
	for _, how := range []string{"New", "SetMinSize"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newTestBudget(t, 2)
				src := newFakeSource(t)
				hog := newTestPool(t, src, budgetConfig(b, "hog", 2))
				fillIdle(t, hog, 2)
				cfg := budgetConfig(b, "late", 2)
				if how == "New" {
					cfg.MinSize = 1
				}
				late := newTestPool(t, src, cfg)
				if how == "SetMinSize" {
					require.NoError(t, late.SetMinSize(1))
				}
				ctx, cancel := context.WithTimeout(bg, 5*time.Second)
				defer cancel()
				require.NoError(t, late.WaitReady(ctx), "the reserved connection never came")
				assert.Equal(t, 1, late.Stats().Total)
				assert.Equal(t, 1, hog.Stats().Total)
			})
		})
	}
}

// Slots the budget grants are dialled within the pool's own
// MaxConcurrentDials.
func TestGrantedSlotsRespectMaxConcurrentDials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		var inFlight, most atomic.Int32
		release := make(chan struct{})
		src.onDial = func(ctx context.Context) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		a := newTestPool(t, src, budgetConfig(b, "a", 4))
		close(release) // a's one dial goes through
		held, err := a.Acquire(bg)
		require.NoError(t, err)
		release = make(chan struct{})
		cfg := budgetConfig(b, "c", 4)
		cfg.MaxConcurrentDials = 1
		c := newTestPool(t, src, cfg)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(bg, 5*time.Second)
				defer cancel()
				if pc, err := c.Acquire(ctx); err == nil {
					pc.Release()
				}
			})
		}
		synctest.Wait()
		require.NoError(t, b.SetLimit(5))
		synctest.Wait()
		assert.LessOrEqual(t, most.Load(), int32(1), "dials in flight past MaxConcurrentDials")
		close(release)
		wg.Wait()
		held.Release()
	})
}

// TryAcquire on a full budget takes nothing from another pool: no idle
// connection of another pool is closed for a caller who will not wait.
func TestTryAcquireOnAFullBudgetClosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 1))
		c := newTestPool(t, src, budgetConfig(b, "c", 1))
		fillIdle(t, a, 1)
		_, err := c.TryAcquire(bg)
		require.ErrorIs(t, err, pool.ErrPoolExhausted)
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Zero(t, a.Stats().ClosedBudget, "a's idle connection was closed for nobody")
		assert.Equal(t, 1, a.Stats().Idle)
	})
}

// A pool whose only caller gave up drops its claim: another pool's idle
// connection is not closed for it afterwards.
func TestAPoolWhoseCallerGaveUpClaimsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 1))
		c := newTestPool(t, src, budgetConfig(b, "c", 1))
		pa, err := a.Acquire(bg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(bg, 10*time.Millisecond)
		defer cancel()
		_, err = c.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		pa.Release() // at release, and by the wake timer later: nobody to yield to
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Zero(t, a.Stats().ClosedBudget, "a's connection was closed for a caller who had gone")
		assert.Equal(t, 1, a.Stats().Idle)
	})
}
