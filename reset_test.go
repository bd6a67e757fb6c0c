package pool_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Reset closes the idle connections at once and a lent one when it is
// released, cuts no loan short, and every later loan gets a connection
// dialled after it.
func TestResetClosesIdleAtOnceAndLoansOnRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(4))
		fillIdle(t, p, 3)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		old := map[*fakeConn]bool{}
		for _, c := range src.all() {
			old[c] = true
		}
		require.Len(t, old, 3)

		p.Reset()
		synctest.Wait()
		assert.EqualValues(t, 2, src.closes.Load(), "the idle connections were not closed at once")
		assert.False(t, held.Conn().closed.Load() > 0, "a loan was cut short")
		require.NoError(t, held.Conn().Ping(bg))
		held.Release()
		synctest.Wait()
		assert.EqualValues(t, 3, src.closes.Load(), "the lent connection was reused after Reset")

		for range 3 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			assert.False(t, old[pc.Conn()], "a connection dialled before Reset was lent after it")
			pc.Release()
		}
		st := p.Stats()
		assert.EqualValues(t, 3, st.ClosedReset)
		assert.EqualValues(t, 1, st.Resets)
		assert.Zero(t, st.ClosedBroken)
		require.NoError(t, p.CheckAccounting())
	})
}

// A caller waiting when Reset runs is served by a new connection, and a
// dial in flight when it runs is closed when it arrives, not lent.
func TestResetLosesNoWaiterAndDropsADialInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		gate := make(chan struct{})
		var first sync.Once
		src.onDial = func(ctx context.Context) error {
			block := false
			first.Do(func() { block = true })
			if block {
				<-gate // the first dial is in flight across the Reset
			}
			return nil
		}
		p := newTestPool(t, src, testConfig(1))
		got := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := p.Acquire(bg)
			assert.NoError(t, err)
			got <- pc
		}()
		synctest.Wait()
		require.Len(t, got, 0)
		p.Reset()
		close(gate)
		pc := <-got
		conns := src.all()
		require.Len(t, conns, 2, "the waiter was not served by a dial after Reset")
		assert.Same(t, conns[1], pc.Conn(), "the dial in flight at Reset was lent")
		assert.EqualValues(t, 1, conns[0].closed.Load())
		pc.Release()
		assert.EqualValues(t, 1, p.Stats().ClosedReset)
		require.NoError(t, p.CheckAccounting())
	})
}

// Reset on a closed pool does nothing; through a registry it reaches the
// source's pool, and an unknown ID is an error.
func TestRegistryResetsASource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		reg := pool.NewRegistry[*fakeConn]()
		defer reg.Close()
		require.NoError(t, reg.Register(bg, "db", src.factory(), testConfig(2)))
		require.NoError(t, reg.Reset("db"), "a source whose pool is not made yet")
		require.NoError(t, reg.With(bg, "db", func(*fakeConn) error { return nil }))
		require.NoError(t, reg.Reset("db"))
		synctest.Wait()
		assert.EqualValues(t, 1, src.closes.Load())
		assert.EqualValues(t, 1, reg.Stats()["db"].ClosedReset)
		err := reg.Reset("nope")
		assert.True(t, errors.Is(err, pool.ErrUnknownSource), "%v", err)

		p, err := reg.Pool(bg, "db")
		require.NoError(t, err)
		require.NoError(t, p.Close())
		p.Reset()
		assert.EqualValues(t, 1, p.Stats().Resets, "Reset on a closed pool counted")
	})
}

// Reset under load, with connections parking and unparking without the
// lock: no connection whose dial began before a Reset is lent by a loan
// that begins after it, and the books stay exact.
func TestResetUnderLoad(t *testing.T) {
	src := newFakeSource(t)
	src.onNeedsReset = func(*fakeConn) bool { return false } // releases park
	var (
		resets sync.RWMutex
		n      int      // Resets done; written with resets held
		gen    sync.Map // *fakeConn → n when its dial began (or later)
	)
	dial := func(ctx context.Context) (*fakeConn, error) {
		resets.RLock()
		g := n
		resets.RUnlock()
		c, err := src.dial(ctx)
		if err == nil {
			gen.Store(c, g)
		}
		return c, err
	}
	p, err := pool.New(dial, testConfig(4))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	stop := make(chan struct{})
	loaned := make(chan struct{}, 1) // a loan ended since the last Reset
	var wg sync.WaitGroup
	// Fewer callers than connections: loans park and are taken without
	// the lock (with more, callers would wait and every loan take the lock).
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resets.RLock()
				before := n // Resets that ended before this loan begins
				resets.RUnlock()
				err := p.With(bg, func(c *fakeConn) error {
					if g, _ := gen.Load(c); g.(int) < before {
						t.Errorf("conn %d, dialled before Reset %d, lent after Reset %d", c.id, g.(int)+1, before)
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case loaned <- struct{}{}:
				default:
				}
			}
		})
	}
	for range 200 {
		<-loaned // Resets among loans, not before the first
		resets.Lock()
		n++
		p.Reset()
		resets.Unlock()
	}
	close(stop)
	wg.Wait()
	require.NoError(t, p.CheckAccounting())
	assert.EqualValues(t, 200, p.Stats().Resets)
	assert.Positive(t, p.Stats().ClosedReset)
}

// A connection whose acquire-time Ping is running when Reset runs is not
// lent when the Ping succeeds: it is closed, and the caller gets a
// connection dialled after the Reset.
func TestResetDuringACheckLendsANewConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		gate := make(chan struct{})
		var once sync.Once
		src.onPing = func(ctx context.Context, c *fakeConn) error {
			block := false
			once.Do(func() { block = true })
			if block {
				<-gate
			}
			return nil
		}
		cfg := testConfig(1)
		cfg.PingAfterIdle = time.Nanosecond // every acquire of an idle connection pings
		p := newTestPool(t, src, cfg)
		fillIdle(t, p, 1)
		time.Sleep(time.Millisecond) // idle long enough to be pinged
		old := src.all()[0]
		got := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := p.Acquire(bg)
			assert.NoError(t, err)
			got <- pc
		}()
		synctest.Wait() // the Ping is running
		require.Len(t, got, 0, "the acquire did not wait for its Ping")
		p.Reset()
		close(gate)
		pc := <-got
		assert.NotSame(t, old, pc.Conn(), "the connection checked across the Reset was lent")
		assert.EqualValues(t, 1, old.closed.Load())
		assert.EqualValues(t, 1, p.Stats().ClosedReset)
		pc.Release()
		require.NoError(t, p.CheckAccounting())
	})
}

// Replace gives a registered source a new factory live: a loan in flight
// finishes on its old connection, which closes on release; idle old
// connections close at once; a caller waiting on a full pool is served by
// the new factory; a dial of the old one in flight is never lent.
func TestReplaceSwapsASourcesFactoryLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldSrc, newSrc := newFakeSource(t), newFakeSource(t)
		gate := make(chan struct{})
		var slow atomic.Bool
		oldSrc.onDial = func(ctx context.Context) error {
			if slow.Load() {
				<-gate // a dial of the old factory in flight across the Replace
			}
			return nil
		}
		reg := pool.NewRegistry[*fakeConn]()
		t.Cleanup(func() { _ = reg.Close() })
		cfg := testConfig(3)
		require.NoError(t, reg.Register(bg, "db", oldSrc.factory(), cfg))
		p, err := reg.Pool(bg, "db")
		require.NoError(t, err)
		fillIdle(t, p, 1)
		held, err := reg.Get(bg, "db")
		require.NoError(t, err)
		second, err := reg.Get(bg, "db") // dials: the idle one is taken
		require.NoError(t, err)
		// The pool is at 2 of 3 lent; a third caller's dial hangs.
		slow.Store(true)
		dialling := make(chan *pool.PooledConn[*fakeConn], 1)
		go func() {
			pc, err := reg.Get(bg, "db")
			if assert.NoError(t, err) {
				dialling <- pc
			}
		}()
		synctest.Wait()
		require.NoError(t, reg.Replace("db", newSrc.factory()))
		close(gate)
		pc := <-dialling
		assert.Same(t, newSrc.all()[0], pc.Conn(), "the dial in flight at Replace was lent, or the waiter was not served by the new factory")
		synctest.Wait()
		assert.EqualValues(t, 1, oldSrc.closes.Load(), "the old factory's dial in flight was not closed on arrival")

		// The loans in flight go on, on their old connections, which close
		// when released.
		held.Conn().use(t)
		held.Conn().done()
		held.Release()
		second.Release()
		assert.EqualValues(t, 3, oldSrc.closes.Load(), "an old connection was kept after Replace")
		pc.Release()
		for range 3 {
			c, err := reg.Get(bg, "db")
			require.NoError(t, err)
			assert.Same(t, newSrc, c.Conn().src)
			defer c.Release()
		}
		st := reg.Stats()["db"]
		assert.EqualValues(t, 3, st.ClosedReset)
		assert.EqualValues(t, 1, st.Resets)
	})
}

// Replace before the source's pool is made: the pool dials with the new
// factory from its first connection. Bad input is refused, and the
// source keeps its factory.
func TestReplaceRefusesBadInputAndReachesAPoolNotMadeYet(t *testing.T) {
	oldSrc, newSrc := newFakeSource(t), newFakeSource(t)
	reg := pool.NewRegistry[*fakeConn]()
	require.NoError(t, reg.Register(bg, "db", oldSrc.factory(), testConfig(2)))
	require.NoError(t, reg.Replace("db", newSrc.factory()))
	require.NoError(t, reg.With(bg, "db", func(c *fakeConn) error {
		assert.Same(t, newSrc, c.src)
		return nil
	}))
	assert.Zero(t, oldSrc.dials.Load())

	err := reg.Replace("db", nil)
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.ErrorContains(t, err, `source "db"`)
	assert.ErrorIs(t, reg.Replace("nope", newSrc.factory()), pool.ErrUnknownSource)

	b, err := pool.NewBudget(4)
	require.NoError(t, err)
	shared := testConfig(2)
	shared.Budget = b
	shared.Share = pool.Share{Group: "g", Bind: func(context.Context, pool.Connector) error { return nil }}
	require.NoError(t, reg.Register(bg, "shared", oldSrc.factory(), shared))
	err = reg.Replace("shared", newSrc.factory())
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.ErrorContains(t, err, "Share")
	p, err := reg.Pool(bg, "shared")
	require.NoError(t, err)
	assert.ErrorIs(t, p.SetFactory(newSrc.factory()), pool.ErrInvalidConfig)

	require.NoError(t, reg.Close())
	assert.ErrorIs(t, reg.Replace("db", newSrc.factory()), pool.ErrPoolClosed)
	q := newTestPool(t, oldSrc, testConfig(1))
	require.NoError(t, q.Close())
	assert.ErrorIs(t, q.SetFactory(newSrc.factory()), pool.ErrPoolClosed)
}

// Replace under load, many times: no loan that starts after a Replace
// returns gets a connection of an earlier factory, no caller fails, and
// every connection is closed exactly once.
func TestReplaceUnderLoad(t *testing.T) {
	const factories = 40
	srcs := make([]*fakeSource, factories)
	index := map[*fakeSource]int64{}
	for i := range srcs {
		srcs[i] = newFakeSource(t)
		index[srcs[i]] = int64(i)
	}
	reg := pool.NewRegistry[*fakeConn]()
	cfg := testConfig(4)
	require.NoError(t, reg.Register(bg, "db", srcs[0].factory(), cfg))
	var current atomic.Int64 // the last factory whose Replace returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var loans, stale atomic.Int64
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := current.Load()
				err := reg.With(bg, "db", func(c *fakeConn) error {
					c.use(t)
					defer c.done()
					if index[c.src] < floor {
						stale.Add(1)
					}
					return nil
				})
				if !assert.NoError(t, err) {
					return
				}
				loans.Add(1)
			}
		})
	}
	for i := 1; i < factories; i++ {
		require.NoError(t, reg.Replace("db", srcs[i].factory()))
		current.Store(int64(i))
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	require.NoError(t, reg.Close())
	assert.Zero(t, stale.Load(), "loans got connections of a factory replaced before they began")
	assert.Positive(t, loans.Load())
	for _, s := range srcs {
		s.checkAllClosedOnce(t)
	}
	t.Logf("%d loans across %d factories", loans.Load(), factories)
}

// Replace racing the registry's Close under load: every call returns nil
// or ErrPoolClosed, no loan fails but with ErrPoolClosed, and every
// connection of every factory is closed exactly once.
func TestReplaceRacingCloseUnderLoad(t *testing.T) {
	srcs := []*fakeSource{newFakeSource(t), newFakeSource(t)}
	reached := make(chan struct{}) // the second factory has dialled: a Replace reached the pool
	var once sync.Once
	srcs[1].onDial = func(context.Context) error {
		once.Do(func() { close(reached) })
		return nil
	}
	reg := pool.NewRegistry[*fakeConn]()
	require.NoError(t, reg.Register(bg, "db", srcs[0].factory(), testConfig(4)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				err := reg.With(bg, "db", func(c *fakeConn) error {
					c.use(t)
					c.done()
					return nil
				})
				if errors.Is(err, pool.ErrPoolClosed) {
					return
				}
				if !assert.NoError(t, err) {
					return
				}
			}
		})
	}
	replaced := make(chan int)
	go func() {
		n := 0
		for i := 0; ; i++ {
			err := reg.Replace("db", srcs[i%2].factory())
			if errors.Is(err, pool.ErrPoolClosed) {
				replaced <- n
				return
			}
			if !assert.NoError(t, err) {
				replaced <- n
				return
			}
			n++
		}
	}()
	<-reached
	require.NoError(t, reg.Close())
	n := <-replaced
	wg.Wait()
	assert.Positive(t, n)
	for _, s := range srcs {
		s.checkAllClosedOnce(t)
	}
}
