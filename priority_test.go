package pool_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// queueInOrder starts one acquire per priority in prios, each queued
// before the next, on a pool whose only connection is held. Each caller
// calls served while it holds the connection, which records its label.
// It returns the labels in the order they were served once every caller
// is done.
func queueInOrder(t *testing.T, p *pool.Pool[*fakeConn], prios []pool.Priority, acquire func(ctx context.Context, served func()) error) func() []string {
	var mu sync.Mutex
	var served []string
	var wg sync.WaitGroup
	for i, pr := range prios {
		label := pr.String() + "#" + string(rune('a'+i))
		wg.Go(func() {
			err := acquire(pool.WithPriority(bg, pr), func() {
				mu.Lock()
				served = append(served, label)
				mu.Unlock()
			})
			assert.NoError(t, err, label)
		})
		synctest.Wait()
	}
	require.Equal(t, len(prios), p.Stats().Waiting)
	return func() []string {
		wg.Wait()
		return served
	}
}

func TestHigherPriorityIsServedFirstAndFIFOWithinAClass(t *testing.T) {
	prios := []pool.Priority{pool.PriorityBatch, pool.PriorityNormal, pool.PriorityInteractive,
		pool.PriorityNormal, pool.PriorityBatch, pool.PriorityInteractive}
	want := []string{"interactive#c", "interactive#f", "normal#b", "normal#d", "batch#a", "batch#e"}
	ways := map[string]func(p *pool.Pool[*fakeConn]) func(context.Context, func()) error{
		"Acquire": func(p *pool.Pool[*fakeConn]) func(context.Context, func()) error {
			return func(ctx context.Context, served func()) error {
				return acquireAndRelease(p, ctx, served)
			}
		},
		"With": func(p *pool.Pool[*fakeConn]) func(context.Context, func()) error {
			return func(ctx context.Context, served func()) error {
				return p.With(ctx, func(*fakeConn) error { served(); return nil })
			}
		},
	}
	for name, way := range ways {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newTestPool(t, newFakeSource(t), testConfig(1))
				held, err := p.Acquire(bg)
				require.NoError(t, err)
				done := queueInOrder(t, p, prios, way(p))
				held.Release()
				assert.Equal(t, want, done())
				require.NoError(t, p.CheckAccounting())
			})
		})
	}
}

func TestPriorityWorksThroughTheRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		reg := pool.NewRegistry[*fakeConn]()
		t.Cleanup(func() { _ = reg.Close() })
		require.NoError(t, reg.Register(bg, "db", src.factory(), testConfig(1)))
		p, err := reg.Pool(bg, "db")
		require.NoError(t, err)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		done := queueInOrder(t, p, []pool.Priority{pool.PriorityBatch, pool.PriorityInteractive},
			func(ctx context.Context, served func()) error {
				return reg.With(ctx, "db", func(*fakeConn) error { served(); return nil })
			})
		held.Release()
		assert.Equal(t, []string{"interactive#b", "batch#a"}, done())
	})
}

// The floor: a lower class that waits is passed over at most nine times
// in a row.
func TestLowerPriorityGetsOneHandOffInTen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, newFakeSource(t), testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		var prios []pool.Priority
		for range 3 {
			prios = append(prios, pool.PriorityBatch)
		}
		for range 25 {
			prios = append(prios, pool.PriorityInteractive)
		}
		done := queueInOrder(t, p, prios, func(ctx context.Context, served func()) error {
			return acquireAndRelease(p, ctx, served)
		})
		held.Release()
		got := done()
		var batchAt []int
		for i, label := range got {
			if label[:5] == "batch" {
				batchAt = append(batchAt, i)
			}
		}
		// Nine interactive, one batch, nine, one batch, nine, one batch,
		// then the last seven interactive.
		assert.Equal(t, []int{9, 19, 27}, batchAt, "service order %v", got)
	})
}

func TestEveryWaitingClassGetsItsFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, newFakeSource(t), testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		prios := []pool.Priority{pool.PriorityBatch, pool.PriorityNormal}
		for range 30 {
			prios = append(prios, pool.PriorityInteractive)
		}
		done := queueInOrder(t, p, prios, func(ctx context.Context, served func()) error {
			return acquireAndRelease(p, ctx, served)
		})
		held.Release()
		got := done()
		pos := map[string]int{}
		for i, label := range got {
			pos[label] = i
		}
		// After nine interactive hand-offs both lower classes are owed a
		// turn; they get the tenth and the eleventh, the higher class
		// first on a tie.
		assert.Equal(t, 9, pos["normal#b"], "service order %v", got)
		assert.Equal(t, 10, pos["batch#a"], "service order %v", got)
	})
}

// A waiter whose ctx has ended but whose goroutine has not yet left the
// queue is skipped at the hand-off: the connection goes straight to the
// next waiter, who does not wait for the first to wake up.
func TestHandOffSkipsAWaiterWhoseCtxHasEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, newFakeSource(t), testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)

		stuck := make(chan struct{})
		p.SetGaveUpHook(func() { <-stuck }) // the first waiter wakes, then stalls
		ctx, cancel := context.WithCancel(bg)
		firstErr := make(chan error, 1)
		go func() {
			_, err := p.Acquire(ctx)
			firstErr <- err
		}()
		synctest.Wait()
		second := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := p.Acquire(bg)
			assert.NoError(t, err)
			second <- pc
		}()
		synctest.Wait()
		cancel()
		synctest.Wait() // the first waiter is stalled in the hook, still queued

		held.Release()
		synctest.Wait()
		select {
		case pc := <-second:
			pc.Release()
			close(stuck)
		default:
			t.Error("the connection went to the waiter whose ctx had ended")
			close(stuck)
			(<-second).Release()
		}
		assert.ErrorIs(t, <-firstErr, context.Canceled)
		s := p.Stats()
		assert.EqualValues(t, 1, s.CanceledAcquires)
		assert.EqualValues(t, 2, s.AcquireCount)
		assert.Equal(t, 1, s.Idle)
		require.NoError(t, p.CheckAccounting())
	})
}

// A waiter skipped at a hand-off while its goroutine is parked (it has
// not even seen its ctx end yet) still returns ctx's error, once.
func TestSkippedWaiterReturnsItsContextError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, newFakeSource(t), testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancelCause(bg)
		errc := make(chan error, 1)
		go func() {
			_, err := p.Acquire(ctx)
			errc <- err
		}()
		synctest.Wait()
		// Cancel and release with no scheduling point between: the
		// hand-off finds the ctx ended before the waiter has run.
		cancel(nil)
		held.Release()
		assert.ErrorIs(t, <-errc, context.Canceled)
		s := p.Stats()
		assert.EqualValues(t, 1, s.CanceledAcquires)
		assert.Equal(t, 0, s.Waiting)
		assert.Equal(t, 1, s.Idle, "the connection was not put back")
		require.NoError(t, p.CheckAccounting())
	})
}

// acquireAndRelease acquires from p, calls served while it holds the
// connection, and releases it.
func acquireAndRelease(p *pool.Pool[*fakeConn], ctx context.Context, served func()) error {
	pc, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	served()
	pc.Release()
	return nil
}

// serviceOrder records the order in which callers held the connection.
type serviceOrder struct {
	t     *testing.T
	p     *pool.Pool[*fakeConn]
	wg    sync.WaitGroup
	mu    sync.Mutex
	order []string
}

// queue starts a caller of class pr on ctx and waits until it is queued
// (or served). While it holds the connection it records label, then calls
// then, if not nil.
func (s *serviceOrder) queue(ctx context.Context, pr pool.Priority, label string, then func()) {
	s.wg.Go(func() {
		err := acquireAndRelease(s.p, pool.WithPriority(ctx, pr), func() {
			s.mu.Lock()
			s.order = append(s.order, label)
			s.mu.Unlock()
			if then != nil {
				then()
			}
		})
		if ctx.Err() == nil {
			assert.NoError(s.t, err, label)
		}
	})
	synctest.Wait()
}

func (s *serviceOrder) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// The floor counts only the hand-offs a class was passed over since it
// was last served: a normal caller served while only its class waited
// starts the count again, so a normal caller behind it does not jump the
// interactive callers that arrive next.
func TestTheFloorCountsOnlyPassesSinceTheClassWasLastServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, newFakeSource(t), testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		s := &serviceOrder{t: t, p: p}
		s.queue(bg, pool.PriorityNormal, "n1", func() {
			for range 3 { // queued while n1 holds the connection
				s.queue(bg, pool.PriorityInteractive, "late", nil)
			}
		})
		s.queue(bg, pool.PriorityNormal, "n2", nil)
		for range 8 {
			s.queue(bg, pool.PriorityInteractive, "i", nil)
		}
		held.Release()
		s.wg.Wait()
		want := []string{"i", "i", "i", "i", "i", "i", "i", "i", "n1", "late", "late", "late", "n2"}
		assert.Equal(t, want, s.got())
		require.NoError(t, p.CheckAccounting())
	})
}

// A waiter skipped at a hand-off because its caller gave up uses none of
// its class's turns: the next waiter of the class takes the turn it was
// owed, after nine interactive hand-offs, not after eighteen.
func TestASkippedWaiterDoesNotUseUpItsClasssTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, newFakeSource(t), testConfig(1))
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		stuck := make(chan struct{})
		p.SetGaveUpHook(func() { <-stuck }) // the caller who gives up stays queued
		s := &serviceOrder{t: t, p: p}
		ctx, cancel := context.WithCancel(bg)
		s.queue(ctx, pool.PriorityNormal, "gone", nil)
		s.queue(bg, pool.PriorityNormal, "normal", nil)
		for range 20 {
			s.queue(bg, pool.PriorityInteractive, "i", nil)
		}
		cancel()
		synctest.Wait()
		held.Release()
		synctest.Wait()
		close(stuck)
		s.wg.Wait()
		got := s.got()
		require.Len(t, got, 21, "order %v", got)
		assert.Equal(t, 9, slices.Index(got, "normal"), "order %v", got)
		assert.NotContains(t, got, "gone")
		require.NoError(t, p.CheckAccounting())
	})
}
