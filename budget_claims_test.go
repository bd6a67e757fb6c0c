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
		_, ps := budgetPools(t, 1, 1, "a", "c")
		a, c := ps[0], ps[1]
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
		_, ps := budgetPools(t, 1, 1, "a", "c")
		a, c := ps[0], ps[1]
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

// A connection released while another pool waits on a full budget, and
// kept (it has served its slot too briefly to yield), is reclaimed for
// that pool once idle 100 ms: nobody else would settle the budget, and
// the waiter would time out beside an idle slot.
func TestIdleKeptAtReleaseIsReclaimedForAWaitingPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ps := budgetPools(t, 1, 1, "a", "c")
		a, c := ps[0], ps[1]
		pa, err := a.Acquire(bg)
		require.NoError(t, err)
		got := make(chan error, 1)
		go func() { got <- c.With(bg, func(*fakeConn) error { return nil }) }()
		synctest.Wait()
		start := time.Now()
		pa.Release()
		require.NoError(t, <-got)
		waited := time.Since(start)
		assert.GreaterOrEqual(t, waited, 100*time.Millisecond, "reclaimed before it had been idle long enough")
		assert.Less(t, waited, time.Second)
		assert.EqualValues(t, 1, a.Stats().ClosedBudget)
	})
}

// A freed slot goes to the pool whose caller waits in the highest class:
// an interactive caller of one pool goes before a normal caller of
// another who came first.
func TestAHigherClassInAnotherPoolGetsTheFreedSlotFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ps := budgetPools(t, 1, 1, "a", "n", "i")
		a, n, i := ps[0], ps[1], ps[2]
		pa, err := a.Acquire(bg)
		require.NoError(t, err)
		order := make(chan string, 2)
		hold := func(name string) func(*fakeConn) error {
			return func(*fakeConn) error {
				order <- name
				time.Sleep(10 * time.Millisecond) // the loan, on the fake clock
				return nil
			}
		}
		var wg sync.WaitGroup
		wg.Go(func() { assert.NoError(t, n.With(bg, hold("normal"))) })
		synctest.Wait()
		wg.Go(func() {
			assert.NoError(t, i.With(pool.WithPriority(bg, pool.PriorityInteractive), hold("interactive")))
		})
		synctest.Wait()
		released := time.Now()
		pa.Release()
		assert.Equal(t, "interactive", <-order, "the normal caller, first in time, went first")
		assert.Zero(t, time.Since(released), "the interactive caller waited for the idle reclaim instead of taking the released slot")
		assert.Equal(t, "normal", <-order)
		wg.Wait()
	})
}

// The floor of the priority classes holds across the pools of a budget:
// while two pools of interactive callers trade the budget's one slot, a
// normal caller of a third pool is served within ten hand-offs.
func TestALowerClassIsNotStarvedAcrossPools(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		i1 := sharedPool(t, src, b, "i1", 1)
		i2 := sharedPool(t, src, b, "i2", 1)
		n := sharedPool(t, src, b, "n", 1)
		ictx := pool.WithPriority(bg, pool.PriorityInteractive)
		var interactive atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, p := range []*pool.Pool[*fakeConn]{i1, i2, i1, i2} {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					_ = p.With(ictx, func(*fakeConn) error {
						interactive.Add(1)
						time.Sleep(10 * time.Millisecond)
						return nil
					})
				}
			})
		}
		defer func() {
			close(stop)
			wg.Wait()
		}()
		time.Sleep(100 * time.Millisecond) // the interactive pools trade the slot
		before := interactive.Load()
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		require.NoError(t, n.With(ctx, func(*fakeConn) error { return nil }), "the normal caller starved")
		passed := interactive.Load() - before
		assert.LessOrEqual(t, passed, int64(11), "the normal caller waited through %d interactive loans", passed)
		assert.Positive(t, b.Stats().Shared)
	})
}

// A pool that keeps connections idle while another pool waits on a full
// budget gives them up once idle 100 ms, even when the waiting pool holds
// as many already: the idle ones serve nobody.
func TestAColdPoolsIdleConnectionsGoToAHotPoolThatHoldsAsMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ps := budgetPools(t, 4, 4, "cold", "hot")
		cold, hot := ps[0], ps[1]
		fillIdle(t, cold, 2)
		held := acquireN(t, hot, 2)
		start := time.Now()
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		pc, err := hot.Acquire(ctx)
		require.NoError(t, err, "the hot pool's caller timed out beside the cold pool's idle connections")
		assert.Less(t, time.Since(start), time.Second)
		assert.EqualValues(t, 1, cold.Stats().ClosedBudget)
		pc.Release()
		for _, h := range held {
			h.Release()
		}
	})
}

// A pool whose own caller waits in the same class as another pool's keeps
// its released connection for it (the slot moves by the shares, not by
// class): the class of a pool's own waiters is weighed at every release,
// even when the pool wants no slot of the budget.
func TestAPoolsOwnWaiterOfTheSameClassKeepsItsConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, ps := budgetPools(t, 1, 1, "m", "o")
		m, o := ps[0], ps[1]
		held, err := m.Acquire(bg)
		require.NoError(t, err)
		ictx := pool.WithPriority(bg, pool.PriorityInteractive)
		order := make(chan string, 2)
		var wg sync.WaitGroup
		for _, w := range []struct {
			name string
			p    *pool.Pool[*fakeConn]
		}{{"m", m}, {"o", o}} {
			wg.Go(func() {
				assert.NoError(t, w.p.With(ictx, func(*fakeConn) error {
					order <- w.name
					return nil
				}))
			})
			synctest.Wait()
		}
		held.Release()
		assert.Equal(t, "m", <-order, "the other pool's caller took the connection from the pool's own, earlier, caller of the same class")
		assert.Equal(t, "o", <-order)
		wg.Wait()
		assert.EqualValues(t, 1, src.dials.Load()-src.closes.Load())
	})
}
