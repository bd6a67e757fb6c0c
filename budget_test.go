package pool_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestBudget(t testing.TB, limit int) *pool.Budget {
	t.Helper()
	b, err := pool.NewBudget(limit)
	require.NoError(t, err)
	return b
}

// budgetConfig is testConfig on budget b.
func budgetConfig(b *pool.Budget, name string, maxSize int) pool.Config {
	cfg := testConfig(maxSize)
	cfg.Budget = b
	cfg.Name = name
	return cfg
}

// budgetPools makes a budget of limit and, on it, a pool of maxSize for
// each name, all dialling from one fake source.
func budgetPools(t *testing.T, limit, maxSize int, names ...string) (*fakeSource, []*pool.Pool[*fakeConn]) {
	t.Helper()
	b := newTestBudget(t, limit)
	src := newFakeSource(t)
	ps := make([]*pool.Pool[*fakeConn], len(names))
	for i, name := range names {
		ps[i] = newTestPool(t, src, budgetConfig(b, name, maxSize))
	}
	return src, ps
}

// poolOpen returns each named pool's open connections as the budget sees
// them.
func poolOpen(b *pool.Budget) map[string]int {
	open := map[string]int{}
	for _, ps := range b.Stats().Pools {
		open[ps.Name] = ps.Open
	}
	return open
}

func TestNewBudgetRejectsALimitBelowOne(t *testing.T) {
	for _, n := range []int{0, -1} {
		_, err := pool.NewBudget(n)
		assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	}
}

func TestBudgetRejectsMinSizesAboveItsLimit(t *testing.T) {
	b := newTestBudget(t, 3)
	b.SetName("main-pg")
	src := newFakeSource(t)
	cfg := budgetConfig(b, "a", 5)
	cfg.MinSize = 2
	a := newTestPool(t, src, cfg)

	cfg = budgetConfig(b, "b", 5)
	cfg.MinSize = 2
	_, err := pool.New(src.factory(), cfg)
	require.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), `budget "main-pg" (limit 3)`)
	assert.Contains(t, err.Error(), "sum to 4")

	err = a.SetMinSize(4)
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	err = b.SetLimit(1)
	require.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "sum to 2")
	assert.Equal(t, 3, b.Stats().Limit, "a refused SetLimit changed the limit")

	// A closed pool's reservation ends at once: another may take it.
	require.NoError(t, a.Close())
	cfg = budgetConfig(b, "c", 5)
	cfg.MinSize = 3
	newTestPool(t, src, cfg)
}

func TestWeightMustNotBeNegative(t *testing.T) {
	cfg := testConfig(1)
	cfg.Weight = -1
	assert.ErrorIs(t, cfg.Validate(), pool.ErrInvalidConfig)
}

// Work conserving: a pool alone in wanting connections may use every slot
// the others neither hold nor reserve.
func TestOneBusyPoolUsesTheWholeBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 6)
		src := newFakeSource(t)
		newTestPool(t, src, budgetConfig(b, "quiet", 10))
		cfg := budgetConfig(b, "reserved", 10)
		cfg.MinSize = 2
		reserved := newTestPool(t, src, cfg)
		require.NoError(t, reserved.WaitReady(bg))
		busy := newTestPool(t, src, budgetConfig(b, "busy", 10))

		var held []*pool.PooledConn[*fakeConn]
		for range 4 {
			pc, err := busy.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		_, err := busy.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		synctest.Wait()
		assert.Equal(t, 4, busy.Stats().Total, "the busy pool dialled into the reserved slots")
		assert.Equal(t, 6, b.Stats().Open)
		assert.EqualValues(t, 6, src.maxAlive.Load())
		for _, pc := range held {
			pc.Release()
		}
	})
}

// The budget holds: a waiter waits for a slot rather than dial past it,
// and gets the first one freed.
func TestBudgetIsNeverExceededAndAFreedSlotServesAWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 2)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 5))
		c := newTestPool(t, src, budgetConfig(b, "c", 5))
		pa, err := a.Acquire(bg)
		require.NoError(t, err)
		pc, err := c.Acquire(bg)
		require.NoError(t, err)

		got := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := c.Acquire(bg)
			assert.NoError(t, err)
			got <- pc
		}()
		synctest.Wait()
		assert.Len(t, got, 0)
		assert.EqualValues(t, 2, src.maxAlive.Load())
		pa.Discard() // a's slot frees: c's waiter dials with it
		second := <-got
		assert.EqualValues(t, 2, src.maxAlive.Load())
		assert.Equal(t, map[string]int{"a": 0, "c": 2}, poolOpen(b))
		pc.Release()
		second.Release()
	})
}

// A cold pool's idle connections go, least recently used first, as soon
// as another pool waits on a full budget.
func TestIdleOfAColdPoolIsReclaimedAtOnceLeastRecentlyUsedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 2)
		src := newFakeSource(t)
		cold := newTestPool(t, src, budgetConfig(b, "cold", 5))
		first, err := cold.Acquire(bg)
		require.NoError(t, err)
		second, err := cold.Acquire(bg)
		require.NoError(t, err)
		oldest := first.Conn()
		first.Release()
		time.Sleep(time.Second) // fake time: the first goes idle a second earlier
		second.Release()

		hot := newTestPool(t, src, budgetConfig(b, "hot", 5))
		start := time.Now()
		pc, err := hot.Acquire(bg)
		require.NoError(t, err)
		assert.Zero(t, time.Since(start), "the hot pool waited for an idle timeout")
		assert.EqualValues(t, 1, oldest.closed.Load(), "not the least recently used idle connection was closed")
		assert.EqualValues(t, 2, src.maxAlive.Load())
		assert.EqualValues(t, 1, cold.Stats().ClosedBudget)
		assert.EqualValues(t, 1, b.Stats().ReclaimedIdle)
		pc.Release()
	})
}

// A pool's MinSize is its own: idle connections up to it are never
// reclaimed, and another pool waits instead.
func TestReservedMinSizeIsNeverReclaimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 3)
		src := newFakeSource(t)
		cfg := budgetConfig(b, "reserved", 5)
		cfg.MinSize = 2
		reserved := newTestPool(t, src, cfg)
		require.NoError(t, reserved.WaitReady(bg))
		other := newTestPool(t, src, budgetConfig(b, "other", 5))
		held, err := other.Acquire(bg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		_, err = other.Acquire(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 2, reserved.Stats().Idle)
		assert.Zero(t, reserved.Stats().ClosedBudget)
		held.Release()
	})
}

// A pool that joins a full budget with a MinSize gets its reserved
// connections as loans end elsewhere, and its first waiter within one
// loan of the busiest pool.
func TestAPoolJoiningAFullBudgetGetsItsMinimumWithinOneLoan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 4)
		src := newFakeSource(t)
		busy := newTestPool(t, src, budgetConfig(b, "busy", 10))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 { // a backlog: every loan lasts 100 ms
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					err := busy.With(bg, func(*fakeConn) error { time.Sleep(100 * time.Millisecond); return nil })
					if err != nil {
						return
					}
				}
			})
		}
		time.Sleep(time.Second)
		require.Equal(t, 4, b.Stats().Open)

		cfg := budgetConfig(b, "new", 5)
		cfg.MinSize = 2
		late := newTestPool(t, src, cfg)
		start := time.Now()
		pc, err := late.Acquire(bg)
		require.NoError(t, err)
		assert.LessOrEqual(t, time.Since(start), 100*time.Millisecond)
		require.NoError(t, late.WaitReady(bg))
		assert.LessOrEqual(t, time.Since(start), 100*time.Millisecond)
		assert.LessOrEqual(t, src.maxAlive.Load(), int64(4))
		pc.Release()
		close(stop)
		wg.Wait()
	})
}

// backlog keeps n goroutines each acquiring from p and holding for hold,
// until stop closes. It returns a counter of loans served.
func backlog(p *pool.Pool[*fakeConn], n int, hold time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) *atomic.Int64 {
	served := new(atomic.Int64)
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := p.With(bg, func(*fakeConn) error { time.Sleep(hold); return nil })
				if err != nil {
					return
				}
				served.Add(1)
			}
		})
	}
	return served
}

// Weighted fairness: pools that all wait share a full budget in the ratio
// of their weights, and slots move to a pool that starts waiting.
func TestBacklogedPoolsShareTheBudgetByWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 8)
		src := newFakeSource(t)
		heavy := newTestPool(t, src, budgetConfig(b, "heavy", 10))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		heavyServed := backlog(heavy, 12, 10*time.Millisecond, stop, &wg)
		time.Sleep(time.Second)
		assert.Equal(t, map[string]int{"heavy": 8}, poolOpen(b), "one pool alone may use the whole budget")

		cfg := budgetConfig(b, "light", 10)
		cfg.Weight = 3
		light := newTestPool(t, src, cfg)
		lightServed := backlog(light, 12, 10*time.Millisecond, stop, &wg)
		time.Sleep(time.Second)
		// weights 1 and 3 of 8: 2 and 6.
		assert.Equal(t, map[string]int{"heavy": 2, "light": 6}, poolOpen(b))
		h0, l0 := heavyServed.Load(), lightServed.Load()
		time.Sleep(time.Second)
		h, l := heavyServed.Load()-h0, lightServed.Load()-l0
		assert.InDelta(t, 3.0, float64(l)/float64(h), 0.2, "served in a second: heavy %d, light %d", h, l)
		assert.LessOrEqual(t, src.maxAlive.Load(), int64(8))
		assert.Positive(t, b.Stats().Yielded)
		close(stop)
		wg.Wait()
	})
}

// A slot moves only when the giver would still hold at least as many
// connections per unit of weight as the taker: on a budget of 4, a pool
// of weight 2 takes slots from one of weight 1 until they hold 2 each,
// and there the split stays, since a third slot would leave the giver
// (1 per unit) below the taker (1.5). A rule of "fewest per unit of weight
// gets the slot" would move it to 3/1 and back.
func TestASlotMovesOnlyWhileTheGiverStaysAheadPerUnitOfWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 4)
		src := newFakeSource(t)
		one := newTestPool(t, src, budgetConfig(b, "one", 10))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		backlog(one, 8, 10*time.Millisecond, stop, &wg)
		time.Sleep(time.Second)
		require.Equal(t, map[string]int{"one": 4}, poolOpen(b))

		cfg := budgetConfig(b, "two", 10)
		cfg.Weight = 2
		two := newTestPool(t, src, cfg)
		backlog(two, 8, 10*time.Millisecond, stop, &wg)
		time.Sleep(time.Second)
		assert.Equal(t, map[string]int{"one": 2, "two": 2}, poolOpen(b))
		yielded := b.Stats().Yielded
		for range 30 {
			time.Sleep(100 * time.Millisecond)
			require.Equal(t, map[string]int{"one": 2, "two": 2}, poolOpen(b))
		}
		assert.Equal(t, yielded, b.Stats().Yielded, "slots moved while the split was as even as weights of 2:1 allow on 4")
		close(stop)
		wg.Wait()
	})
}

// No pool with waiters sits at zero while another holds the whole budget,
// however small the budget: they take turns, the slot moving after a
// second of use (the rotation period), so over ten seconds they are
// served alike.
func TestNoWaitingPoolStarvesOnABudgetOfOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 5))
		c := newTestPool(t, src, budgetConfig(b, "c", 5))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		aServed := backlog(a, 4, 10*time.Millisecond, stop, &wg)
		time.Sleep(100 * time.Millisecond)
		cServed := backlog(c, 4, 10*time.Millisecond, stop, &wg)
		time.Sleep(10 * time.Second)
		assert.Positive(t, cServed.Load())
		assert.InDelta(t, aServed.Load(), cServed.Load(), float64(aServed.Load())/5+2)
		assert.EqualValues(t, 1, src.maxAlive.Load())
		close(stop)
		wg.Wait()
	})
}

func TestSetLimitBelowWhatIsOpenClosesIdleAtOnceAndLoansOnRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 6)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 10))
		fillIdle(t, a, 2)
		var held []*pool.PooledConn[*fakeConn]
		for range 6 {
			pc, err := a.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		require.Equal(t, 6, b.Stats().Open)
		for _, pc := range held[:2] {
			pc.Release()
		}
		require.Equal(t, 2, a.Stats().Idle)

		require.NoError(t, b.SetLimit(3))
		synctest.Wait()
		assert.Equal(t, 0, a.Stats().Idle, "idle connections kept above the new limit")
		assert.Equal(t, 4, b.Stats().Open)
		_, err := a.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		synctest.Wait()
		assert.Equal(t, 4, b.Stats().Open, "a dial started above the limit")

		held[2].Release() // closed: 3 open
		synctest.Wait()
		assert.Equal(t, 3, b.Stats().Open)
		held[3].Release() // within the limit now: reused
		assert.Equal(t, 1, a.Stats().Idle)
		assert.EqualValues(t, 3, a.Stats().ClosedBudget)

		require.NoError(t, b.SetLimit(5)) // raising it lets waiters dial
		var more []*pool.PooledConn[*fakeConn]
		for range 3 {
			pc, err := a.Acquire(bg)
			require.NoError(t, err)
			more = append(more, pc)
		}
		assert.Equal(t, 5, b.Stats().Open)
		for _, pc := range append(more, held[4:]...) {
			pc.Release()
		}
	})
}

// The budget's books follow pools that are closed, resized and made
// again under load: it never holds more than its limit, no caller is
// lost, and once everything is closed it holds nothing.
func TestBudgetUnderLoadWithPoolsClosedResizedAndRecreated(t *testing.T) {
	budgetUnderLoad(t, false)
}

// The same, with the pools in one Share group, so that connections move
// between them: no loan ever sees a connection bound to another pool.
func TestSharedBudgetUnderLoadWithPoolsClosedResizedAndRecreated(t *testing.T) {
	budgetUnderLoad(t, true)
}

func budgetUnderLoad(t *testing.T, share bool) {
	const limit = 6
	b := newTestBudget(t, limit)
	src := newFakeSource(t)
	var alive, maxAlive atomic.Int64
	src.onDial = func(context.Context) error {
		n := alive.Add(1)
		for m := maxAlive.Load(); n > m && !maxAlive.CompareAndSwap(m, n); m = maxAlive.Load() {
		}
		return nil
	}
	src.onClose = func(*fakeConn) error { alive.Add(-1); return nil }

	const slots = 4
	var mu sync.RWMutex
	pools := make([]*pool.Pool[*fakeConn], slots)
	newPool := func(i int) *pool.Pool[*fakeConn] {
		name := string(rune('a' + i))
		cfg := budgetConfig(b, name, 1+rand.IntN(4))
		cfg.MinSize = rand.IntN(2)
		cfg.Weight = 1 + rand.IntN(3)
		f := src.factory()
		if share {
			cfg.Share, f = bindTo(name), sharedFactory(src, name)
		}
		p, err := pool.New(f, cfg)
		require.NoError(t, err)
		return p
	}
	for i := range pools {
		pools[i] = newPool(i)
	}
	iters := 3000
	if testing.Short() {
		iters = 1200 // fewer, and pools moved no connection in some runs
	}
	var wg sync.WaitGroup
	var served atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := range iters / 16 {
				mu.RLock()
				p := pools[(g+i)%slots]
				mu.RUnlock()
				name := p.Config().Name
				ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
				err := p.With(ctx, func(c *fakeConn) error {
					c.use(t)
					defer c.done()
					if share && *c.bound.Load() != name {
						t.Errorf("pool %s lent %v, bound to %s", name, c, *c.bound.Load())
					}
					return nil
				})
				cancel()
				switch {
				case err == nil:
					served.Add(1)
				case errors.Is(err, pool.ErrPoolClosed), errors.Is(err, context.DeadlineExceeded):
				default:
					t.Errorf("With: %v", err)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range iters / 20 {
			j := i % slots
			mu.Lock()
			old := pools[j]
			switch i % 3 {
			case 0:
				_ = old.Close()
				pools[j] = newPool(j)
			case 1:
				_ = old.SetMaxSize(1 + rand.IntN(5))
			case 2:
				_ = old.SetMinSize(0)
			}
			mu.Unlock()
		}
	})
	wg.Wait()
	for _, p := range pools {
		require.NoError(t, p.CheckAccounting())
		require.NoError(t, p.Close())
	}
	assert.LessOrEqual(t, maxAlive.Load(), int64(limit))
	assert.Positive(t, served.Load())
	s := b.Stats()
	assert.Zero(t, s.Open)
	assert.Empty(t, s.Pools, "closed pools still on the budget")
	if share {
		assert.Positive(t, s.Shared, "no connection moved between the pools")
		t.Logf("%d dials, %d moves", src.dials.Load(), s.Shared)
	} else {
		assert.Zero(t, s.Shared)
	}
	src.checkAllClosedOnce(t)
}

// The pools of a budget dial at most four connections at once between
// them, whatever their own MaxConcurrentDials: a slot that moves is a new
// connection, and a storm of them starves the server.
func TestBudgetDialsAtMostFourAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 40)
		var inFlight, most atomic.Int64
		var pools []*pool.Pool[*fakeConn]
		for i := range 4 {
			src := newFakeSource(t)
			src.onDial = func(context.Context) error {
				n := inFlight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(100 * time.Millisecond)
				inFlight.Add(-1)
				return nil
			}
			cfg := budgetConfig(b, string(rune('a'+i)), 10)
			cfg.MaxConcurrentDials = 0 // up to MaxSize each
			pools = append(pools, newTestPool(t, src, cfg))
		}
		var wg sync.WaitGroup
		for _, p := range pools {
			for range 10 {
				wg.Go(func() {
					pc, err := p.Acquire(bg)
					if assert.NoError(t, err) {
						time.Sleep(time.Second)
						pc.Release()
					}
				})
			}
		}
		wg.Wait()
		assert.EqualValues(t, 4, most.Load(), "dials in flight at once on the budget")
		assert.Equal(t, 40, b.Stats().Open)
		assert.Zero(t, b.Stats().Dialing)
	})
}

// An idle connection of a pool no further ahead than the waiting one is
// reclaimed once it has been idle 100 ms (reclaimAfter), not before, and
// without another event to prompt it: a timer does.
func TestIdleConnectionIsReclaimedOnceIdleLongEnough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 2)
		src := newFakeSource(t)
		a := newTestPool(t, src, budgetConfig(b, "a", 5))
		busy := newTestPool(t, src, budgetConfig(b, "busy", 5))
		c := newTestPool(t, src, budgetConfig(b, "c", 5))
		pc, err := a.Acquire(bg)
		require.NoError(t, err)
		pc.Release() // a: one idle connection
		held, err := busy.Acquire(bg)
		require.NoError(t, err)
		defer held.Release()

		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		got, err := c.Acquire(bg) // a holds one, c none: not two ahead
		require.NoError(t, err)
		waited := time.Since(start)
		got.Release()
		assert.Equal(t, 70*time.Millisecond, waited, "reclaimed when idle 100 ms, measured from a's release")
		assert.EqualValues(t, 1, a.Stats().ClosedBudget)
		assert.EqualValues(t, 1, b.Stats().ReclaimedIdle)
	})
}
