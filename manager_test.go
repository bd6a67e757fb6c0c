package pool_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Defect 7: a panicking PoolFactory becomes the creation's error.
func TestPanickingPoolFactoryIsACreationError(t *testing.T) {
	m, err := pool.NewManager(func(context.Context, string) (pool.Factory[*fakeConn], pool.Config, error) {
		panic("pool factory exploded")
	})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Pool(bg, "db")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pool factory exploded")
}

// Defect 8: Manager.Shutdown closes every pool before it waits for any, so
// no pool keeps lending while others drain.
func TestManagerShutdownClosesEveryPoolBeforeWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet(t)
		m, err := pool.NewManager(f.poolFactory)
		require.NoError(t, err)
		const n = 40
		var held []*pool.PooledConn[*fakeConn]
		var pools []*pool.Pool[*fakeConn]
		for i := range n {
			p, err := m.Pool(bg, "db"+string(rune('A'+i)))
			require.NoError(t, err)
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
			pools = append(pools, p)
		}
		done := make(chan error)
		go func() { done <- m.Shutdown(bg) }()
		synctest.Wait()
		for i, p := range pools {
			pc, err := p.TryAcquire(bg)
			if !assert.ErrorIs(t, err, pool.ErrPoolClosed, "pool %d still lends during Shutdown", i) && err == nil {
				pc.Release()
			}
		}
		requireNotDone(t, done, "Shutdown returned with connections in use")
		for _, pc := range held {
			pc.Release()
		}
		require.NoError(t, <-done)
	})
}

// Defect 9: Pool(id) right after ClosePool(id), while the cancelled
// creation is still finishing, builds a new pool.
func TestManagerPoolAfterClosePoolDuringCreation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet(t)
		f.gate = make(chan struct{})
		m, err := pool.NewManager(f.poolFactory)
		require.NoError(t, err)
		defer m.Close()
		go func() { _, _ = m.Pool(bg, "db") }()
		synctest.Wait() // the creation waits on the gate
		require.NoError(t, m.ClosePool("db"))
		got := make(chan error, 1)
		go func() {
			p, err := m.Pool(bg, "db")
			if err == nil {
				var pc *pool.PooledConn[*fakeConn]
				if pc, err = p.Acquire(bg); err == nil {
					pc.Release()
				}
			}
			got <- err
		}()
		synctest.Wait()
		close(f.gate)
		require.NoError(t, <-got, "an open Manager refused a pool after ClosePool")
	})
}

// Manager.Shutdown waits for creations in flight only until its ctx ends:
// a PoolFactory that ignores its ctx cannot hold it.
func TestManagerShutdownHonoursItsContextWhenACreationHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet(t)
		f.gate = make(chan struct{}) // the PoolFactory waits on it, ignoring its ctx
		m, err := pool.NewManager(f.poolFactory)
		require.NoError(t, err)
		go func() { _, _ = m.Pool(bg, "db") }()
		synctest.Wait() // the creation is in flight
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		err = m.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start), "Shutdown waited past its ctx")
		close(f.gate) // the creation finishes; its pool is closed, not published
		synctest.Wait()
		_, ok := m.Lookup("db")
		assert.False(t, ok)
	})
}

// fakeFleet hands out one fakeSource per ID and counts PoolFactory calls.
type fakeFleet struct {
	t       testing.TB
	calls   atomic.Int64
	fail    atomic.Bool
	gate    chan struct{} // if set, the PoolFactory waits on it
	entered chan struct{} // if set, the PoolFactory signals it first
	mu      sync.Mutex
	sources map[string]*fakeSource
	sizes   map[string]int
}

func newFakeFleet(t testing.TB) *fakeFleet {
	return &fakeFleet{t: t, sources: map[string]*fakeSource{}, sizes: map[string]int{}}
}

func (f *fakeFleet) poolFactory(ctx context.Context, id string) (pool.Factory[*fakeConn], pool.Config, error) {
	f.calls.Add(1)
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		return nil, pool.Config{}, errors.New("no such database")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	src := f.sources[id]
	if src == nil {
		src = newFakeSource(f.t)
		f.sources[id] = src
	}
	size := f.sizes[id]
	if size == 0 {
		size = 2
	}
	return src.factory(), testConfig(size), nil
}

func newTestManager(t testing.TB, f *fakeFleet) *pool.Manager[*fakeConn] {
	t.Helper()
	m, err := pool.NewManager(f.poolFactory)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestManagerCreatesEachPoolOnceUnderConcurrency(t *testing.T) {
	f := newFakeFleet(t)
	f.gate = make(chan struct{})
	m := newTestManager(t, f)
	const n = 64
	got := make(chan *pool.Pool[*fakeConn], n)
	for range n {
		go func() {
			p, err := m.Pool(bg, "db1")
			assert.NoError(t, err)
			got <- p
		}()
	}
	close(f.gate)
	first := <-got
	for range n - 1 {
		assert.Same(t, first, <-got)
	}
	assert.EqualValues(t, 1, f.calls.Load())
	p, ok := m.Lookup("db1")
	assert.True(t, ok)
	assert.Same(t, first, p)
}

func TestManagerDoesNotCacheFailedCreation(t *testing.T) {
	f := newFakeFleet(t)
	m := newTestManager(t, f)
	f.fail.Store(true)
	_, err := m.Pool(bg, "db1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"db1"`)
	assert.Contains(t, err.Error(), "no such database")
	_, ok := m.Lookup("db1")
	assert.False(t, ok)
	f.fail.Store(false)
	p, err := m.Pool(bg, "db1")
	require.NoError(t, err)
	assert.NotNil(t, p)
	assert.EqualValues(t, 2, f.calls.Load())
}

func TestManagerInvalidConfigNamesIDAndField(t *testing.T) {
	m, err := pool.NewManager(func(context.Context, string) (pool.Factory[*fakeConn], pool.Config, error) {
		return newFakeSource(t).factory(), pool.Config{}, nil
	})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Pool(bg, "db1")
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), `"db1"`)
	assert.Contains(t, err.Error(), "MaxSize")
	_, err = pool.NewManager[*fakeConn](nil)
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
}

func TestManagerGivesEachIDItsOwnConfig(t *testing.T) {
	f := newFakeFleet(t)
	f.sizes["big"] = 7
	f.sizes["small"] = 1
	m := newTestManager(t, f)
	big, _ := m.Pool(bg, "big")
	small, _ := m.Pool(bg, "small")
	assert.Equal(t, 7, big.Config().MaxSize)
	assert.Equal(t, 1, small.Config().MaxSize)
	assert.NotSame(t, big, small)
}

func TestManagerCallerContextDoesNotCancelCreation(t *testing.T) {
	f := newFakeFleet(t)
	f.gate = make(chan struct{})
	m := newTestManager(t, f)
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error)
	go func() {
		_, err := m.Pool(ctx, "db1")
		errc <- err
	}()
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	close(f.gate)
	p, err := m.Pool(bg, "db1") // joins the creation still in flight
	require.NoError(t, err)
	assert.NotNil(t, p)
	assert.EqualValues(t, 1, f.calls.Load())
}

func TestManagerListsStatsAndClosesPools(t *testing.T) {
	f := newFakeFleet(t)
	m := newTestManager(t, f)
	for _, id := range []string{"b", "a", "c"} {
		p, err := m.Pool(bg, id)
		require.NoError(t, err)
		require.NoError(t, p.With(bg, func(*fakeConn) error { return nil }))
	}
	assert.Equal(t, []string{"a", "b", "c"}, m.IDs())
	stats := m.Stats()
	require.Len(t, stats, 3)
	assert.Equal(t, 1, stats["a"].Idle)
	assert.EqualValues(t, 1, stats["b"].AcquireCount)

	pa, _ := m.Lookup("a")
	require.NoError(t, m.ClosePool("a"))
	_, err := pa.Acquire(bg)
	assert.ErrorIs(t, err, pool.ErrPoolClosed)
	assert.Equal(t, []string{"b", "c"}, m.IDs())
	assert.ErrorIs(t, m.ClosePool("a"), pool.ErrUnknownSource)
	f.sources["a"].checkAllClosedOnce(t)

	// Asking again creates a fresh pool.
	pa2, err := m.Pool(bg, "a")
	require.NoError(t, err)
	assert.NotSame(t, pa, pa2)

	require.NoError(t, m.Close())
	for id, src := range f.sources {
		t.Run(id, func(t *testing.T) { src.checkAllClosedOnce(t) })
	}
	_, err = m.Pool(bg, "b")
	assert.ErrorIs(t, err, pool.ErrPoolClosed)
	assert.Empty(t, m.IDs())
	assert.NoError(t, m.Close(), "second Close")
}

func TestManagerClosePoolDuringCreationClosesTheNewPool(t *testing.T) {
	f := newFakeFleet(t)
	f.gate = make(chan struct{})
	f.entered = make(chan struct{})
	m := newTestManager(t, f)
	errc := make(chan error)
	go func() {
		_, err := m.Pool(bg, "db1")
		errc <- err
	}()
	<-f.entered // the creation is in flight, blocked on gate
	require.NoError(t, m.ClosePool("db1"))
	close(f.gate)
	assert.ErrorIs(t, <-errc, pool.ErrPoolClosed)
	_, ok := m.Lookup("db1")
	assert.False(t, ok, "pool created after ClosePool was published")
}

func TestManagerShutdownWaitsForConnectionsInUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet(t)
		m := newTestManager(t, f)
		p, _ := m.Pool(bg, "db1")
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		done := make(chan error)
		go func() { done <- m.Shutdown(bg) }()
		synctest.Wait()
		requireNotDone(t, done, "Shutdown returned while a connection was in use")
		held.Release()
		require.NoError(t, <-done)
		f.sources["db1"].checkAllClosedOnce(t)
	})
}

func TestManagerReplacesAPoolClosedDirectly(t *testing.T) {
	f := newFakeFleet(t)
	m := newTestManager(t, f)
	p1, err := m.Pool(bg, "db1")
	require.NoError(t, err)
	require.NoError(t, p1.Close()) // not through ClosePool
	p2, err := m.Pool(bg, "db1")
	require.NoError(t, err)
	assert.NotSame(t, p1, p2)
	require.NoError(t, p2.With(bg, func(*fakeConn) error { return nil }))
	got, ok := m.Lookup("db1")
	assert.True(t, ok)
	assert.Same(t, p2, got)
	assert.EqualValues(t, 2, f.calls.Load())
}
