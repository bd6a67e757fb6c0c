package pool_test

import (
	"context"
	"errors"
	"sync"
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
