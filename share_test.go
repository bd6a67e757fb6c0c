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

// bindTo is a Share of group "g" whose Bind records the pool a fakeConn
// is bound to, and fails the test if a conn arrives still bound to the
// pool it is bound for (a move between pools of one name is no move).
func bindTo(name string) pool.Share {
	return pool.Share{Group: "g", Bind: func(_ context.Context, c pool.Connector) error {
		fc := c.(*fakeConn)
		fc.dirty.Store(false) // what a real Bind's reset does
		fc.bound.Store(&name)
		return nil
	}}
}

// sharedFactory dials with src and binds each new conn to name, as a
// pool's own factory does for its source.
func sharedFactory(src *fakeSource, name string) pool.Factory[*fakeConn] {
	return func(ctx context.Context) (*fakeConn, error) {
		c, err := src.dial(ctx)
		if err == nil {
			c.bound.Store(&name)
		}
		return c, err
	}
}

// sharedPool is a pool named name on budget b, in Share group "g".
func sharedPool(t *testing.T, src *fakeSource, b *pool.Budget, name string, maxSize int) *pool.Pool[*fakeConn] {
	cfg := budgetConfig(b, name, maxSize)
	cfg.Share = bindTo(name)
	p, err := pool.New(sharedFactory(src, name), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// On a full budget, a connection released by one pool of a Share group
// goes, bound anew, to the other pool's waiter: no close, no dial. The
// handle the first pool lent it under is dead.
func TestSharedPoolsMoveAReleasedConnectionInsteadOfDialling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		a := sharedPool(t, src, b, "a", 2)
		c := sharedPool(t, src, b, "c", 2)
		pa, err := a.Acquire(bg)
		require.NoError(t, err)
		conn := pa.Conn()
		conn.dirty.Store(true) // a's borrower left session state

		got := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := c.Acquire(bg)
			assert.NoError(t, err)
			got <- pc
		}()
		synctest.Wait()
		require.Len(t, got, 0, "c was served while a held the budget's one slot")
		pa.Release()
		pc := <-got
		assert.Same(t, conn, pc.Conn(), "c did not get a's connection")
		assert.Equal(t, "c", *pc.Conn().bound.Load(), "the connection was not bound to c")
		assert.False(t, pc.Conn().dirty.Load(), "a's session state reached c")
		assert.EqualValues(t, 1, src.dials.Load(), "a dial was made")
		assert.Zero(t, src.closes.Load(), "a connection was closed")

		// a's stale handle reaches nothing of c's loan.
		assert.Panics(t, pa.Release)
		assert.Panics(t, func() { pa.Conn() })
		assert.Same(t, conn, pc.Conn())

		sa, sc, sb := a.Stats(), c.Stats(), b.Stats()
		assert.EqualValues(t, 1, sa.MovedOut)
		assert.EqualValues(t, 1, sc.MovedIn)
		assert.Zero(t, sc.Created)
		assert.Zero(t, sa.ClosedBudget)
		assert.EqualValues(t, 1, sb.Shared)
		assert.Equal(t, map[string]int{"a": 0, "c": 1}, poolOpen(b))
		assert.Equal(t, 0, sa.Total)
		require.NoError(t, a.CheckAccounting())
		require.NoError(t, c.CheckAccounting())

		// And back: a waits, c releases.
		go func() {
			pa, err := a.Acquire(bg)
			assert.NoError(t, err)
			got <- pa
		}()
		synctest.Wait()
		pc.Release()
		pa = <-got
		assert.Same(t, conn, pa.Conn())
		assert.Equal(t, "a", *pa.Conn().bound.Load())
		pa.Release()
		assert.EqualValues(t, 1, src.dials.Load())
		assert.EqualValues(t, 2, b.Stats().Shared)
	})
}

// An idle connection of a pool of the group moves at once to another
// pool that waits on a full budget, instead of being closed for it.
func TestSharedPoolsMoveAnIdleConnectionToAWaitingPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 2)
		src := newFakeSource(t)
		a := sharedPool(t, src, b, "a", 2)
		c := sharedPool(t, src, b, "c", 2)
		fillIdle(t, a, 2)
		pc, err := c.Acquire(bg)
		require.NoError(t, err)
		assert.Equal(t, "c", *pc.Conn().bound.Load())
		assert.EqualValues(t, 2, src.dials.Load(), "c dialled instead of taking a's idle connection")
		assert.Zero(t, src.closes.Load())
		assert.Equal(t, map[string]int{"a": 1, "c": 1}, poolOpen(b))
		assert.EqualValues(t, 1, a.Stats().MovedOut)
		assert.Zero(t, a.Stats().ClosedBudget)
		pc.Release()
		require.NoError(t, a.CheckAccounting())
		require.NoError(t, c.CheckAccounting())
	})
}

// With room on the budget, a pool of the group that has no idle
// connection of its own takes another pool's idle one, re-bound, before it
// dials, once that one has been idle 100 ms: the budget does not hold a
// group's connection idle while one more is opened. A connection idle for
// less stays (its pool is between two requests), and a pool at its
// MinSize keeps what it has.
func TestAPoolTakesAnIdleConnectionOfItsGroupBeforeDialling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 4)
		src := newFakeSource(t)
		a := sharedPool(t, src, b, "a", 2)
		c := sharedPool(t, src, b, "c", 2)
		fillIdle(t, a, 2)
		require.Equal(t, 2, a.Stats().Idle)
		time.Sleep(50 * time.Millisecond)
		early, err := c.Acquire(bg)
		require.NoError(t, err)
		assert.EqualValues(t, 3, src.dials.Load(), "c took a connection a used 50 ms ago")
		early.Release()
		time.Sleep(50 * time.Millisecond) // a's oldest idle for 100 ms

		pc, err := c.Acquire(bg)
		require.NoError(t, err)
		// c's own idle connection first, then a's.
		pc2, err := c.Acquire(bg)
		require.NoError(t, err)
		assert.EqualValues(t, 3, src.dials.Load(), "c dialled while a held a connection idle 100 ms")
		assert.Equal(t, "c", *pc2.Conn().bound.Load(), "the connection was not bound to c")
		assert.Equal(t, map[string]int{"a": 1, "c": 2}, poolOpen(b))
		sa, sc := a.Stats(), c.Stats()
		assert.EqualValues(t, 1, sa.MovedOut)
		assert.EqualValues(t, 1, sc.MovedIn)
		assert.EqualValues(t, 1, sc.Created, "c dialled more than the one connection")
		assert.EqualValues(t, 1, b.Stats().Shared)
		assert.Zero(t, src.closes.Load())
		pc.Release()
		pc2.Release()
		require.NoError(t, a.CheckAccounting())
		require.NoError(t, c.CheckAccounting())

		// A pool at its MinSize gives nothing: the other dials.
		b2 := newTestBudget(t, 4)
		cfg := budgetConfig(b2, "m", 2)
		cfg.Share, cfg.MinSize = bindTo("m"), 1
		m, err := pool.New(sharedFactory(src, "m"), cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = m.Close() })
		require.NoError(t, m.WaitReady(bg))
		require.Equal(t, 1, m.Stats().Idle)
		n := sharedPool(t, src, b2, "n", 2)
		dials := src.dials.Load()
		pn, err := n.Acquire(bg)
		require.NoError(t, err)
		assert.Equal(t, dials+1, src.dials.Load(), "n took m's reserved connection instead of dialling")
		assert.Equal(t, 1, m.Stats().Idle)
		assert.Zero(t, m.Stats().MovedOut)
		pn.Release()
		require.NoError(t, m.CheckAccounting())
	})
}

// A Bind that fails or panics closes the moved connection, and the pool
// dials a new one with the slot: its waiter is served all the same.
func TestFailedBindClosesTheConnectionAndDials(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newTestBudget(t, 1)
				src := newFakeSource(t)
				a := sharedPool(t, src, b, "a", 1)
				cfg := budgetConfig(b, "c", 1)
				var binds atomic.Int32
				cfg.Share = pool.Share{Group: "g", Bind: func(context.Context, pool.Connector) error {
					binds.Add(1)
					if how == "panic" {
						panic("bind")
					}
					return errors.New("bind failed")
				}}
				c, err := pool.New(sharedFactory(src, "c"), cfg)
				require.NoError(t, err)
				defer c.Close()

				pa, err := a.Acquire(bg)
				require.NoError(t, err)
				first := pa.Conn()
				got := make(chan *pool.PooledConn[*fakeConn], 1)
				go func() {
					pc, err := c.Acquire(bg)
					assert.NoError(t, err)
					got <- pc
				}()
				synctest.Wait()
				pa.Release()
				pc := <-got
				assert.NotSame(t, first, pc.Conn(), "a connection that failed Bind was lent")
				assert.EqualValues(t, 1, first.closed.Load(), "the connection that failed Bind was not closed")
				assert.EqualValues(t, 1, binds.Load())
				assert.EqualValues(t, 2, src.dials.Load())
				s := c.Stats()
				assert.EqualValues(t, 1, s.BindErrors)
				assert.EqualValues(t, 1, s.Created)
				assert.Zero(t, s.MovedIn)
				assert.False(t, s.Down, "a failed Bind marked the source down")
				if how == "panic" {
					assert.EqualValues(t, 1, s.PanicsRecovered)
				}
				pc.Release()
				require.NoError(t, c.CheckAccounting())
				assert.LessOrEqual(t, src.maxAlive.Load(), int64(1))
			})
		})
	}
}

// Pools of one Group but of different connection types never exchange
// connections: the slot moves as it would without sharing, by a close
// and a dial.
func TestShareGroupsAreOfOneConnectionType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		src := newFakeSource(t)
		a := sharedPool(t, src, b, "a", 1)
		f, err := pool.Adapt[pool.Connector](src.factory())
		require.NoError(t, err)
		cfg := budgetConfig(b, "c", 1)
		cfg.Share = pool.Share{Group: "g", Bind: func(context.Context, pool.Connector) error {
			t.Error("a connection of another type was bound")
			return nil
		}}
		c, err := pool.New(f, cfg)
		require.NoError(t, err)
		defer c.Close()

		pa, err := a.Acquire(bg)
		require.NoError(t, err)
		first := pa.Conn()
		got := make(chan error, 1)
		go func() { got <- c.With(bg, func(pool.Connector) error { return nil }) }()
		synctest.Wait()
		pa.Release()
		require.NoError(t, <-got)
		assert.EqualValues(t, 1, first.closed.Load())
		assert.EqualValues(t, 2, src.dials.Load())
		assert.Zero(t, b.Stats().Shared)
	})
}

func TestShareConfigIsChecked(t *testing.T) {
	b := newTestBudget(t, 2)
	bind := func(context.Context, pool.Connector) error { return nil }
	for _, tc := range []struct {
		name  string
		edit  func(*pool.Config)
		field string
	}{
		{"no Bind", func(c *pool.Config) { c.Share = pool.Share{Group: "g"} }, "Share"},
		{"no Budget", func(c *pool.Config) { c.Budget, c.Share = nil, pool.Share{Group: "g", Bind: bind} }, "Share"},
		{"no Group", func(c *pool.Config) { c.Share = pool.Share{Bind: bind} }, "Share"},
		{"Weight too large", func(c *pool.Config) { c.Weight = pool.MaxWeight + 1 }, "Weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := budgetConfig(b, "a", 1)
			tc.edit(&cfg)
			_, err := pool.New(newFakeSource(t).factory(), cfg)
			require.ErrorIs(t, err, pool.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
}
