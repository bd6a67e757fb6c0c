package pool_test

// The regression tests for defects 8 to 10 of issue 8 (shutdown, the
// Manager, and the smaller ones); defects 1 to 7 are in hardening_test.go.
// Each failed on b87d442 and passes now.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// Defect 8: Shutdown returns when its ctx ends, even when closing the idle
// connections is slow.
func TestShutdownHonoursItsContextWhenClosesAreSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onClose = func(*fakeConn) error { time.Sleep(5 * time.Second); return nil }
		p, err := pool.New(src.factory(), testConfig(10))
		require.NoError(t, err)
		fillIdle(t, p, 10)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		err = p.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start), "Shutdown ignored its ctx")
		time.Sleep(time.Minute) // the closes finish in the background
		synctest.Wait()
		src.checkAllClosedOnce(t)
	})
}

// Defect 8: a Factory that ignores its ctx does not hang Shutdown.
func TestShutdownHonoursItsContextWhenADialHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		release := make(chan struct{})
		src.onDial = func(context.Context) error { <-release; return nil }
		p, err := pool.New(src.factory(), testConfig(1))
		require.NoError(t, err)
		_, _ = p.TryAcquire(bg) // starts a dial that ignores its ctx
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		err = p.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start))
		close(release)
		synctest.Wait()
		src.checkAllClosedOnce(t)
	})
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

// Defect 10: a Factory that returns a nil connection and no error is a
// dial error, not a crash at Close.
func TestFactoryReturningNilConnectionIsADialError(t *testing.T) {
	p, err := pool.New(func(context.Context) (*fakeConn, error) { return nil, nil }, testConfig(1))
	require.NoError(t, err)
	_, err = p.Acquire(bg)
	require.ErrorIs(t, err, pool.ErrDial)
	assert.Contains(t, err.Error(), "nil")
	assert.NotPanics(t, func() { _ = p.Close() })
}

// Defect 10: a Reset that ignores its ctx cannot block Release past
// ResetTimeout: the connection is closed, which unblocks the Reset.
func TestResetIgnoringItsContextIsCutOffAtResetTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onReset = func(_ context.Context, c *fakeConn) error {
			<-c.closedSig // blocks on its socket until the socket is closed
			return errClosedConn
		}
		cfg := testConfig(1)
		cfg.ResetTimeout = time.Second
		p := newTestPool(t, src, cfg)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		start := time.Now()
		pc.Release()
		assert.Equal(t, time.Second, time.Since(start))
		s := p.Stats()
		assert.Equal(t, 0, s.Total)
		assert.EqualValues(t, 1, s.ClosedBroken)
		require.NoError(t, p.Close())
		src.checkAllClosedOnce(t)
	})
}

// Defect 10: the last dial error is wrapped, not flattened, in a timeout.
func TestTimeoutWrapsTheLastDialError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		refused := errors.New("connection refused")
		var hang atomic.Bool
		src.onDial = func(ctx context.Context) error {
			if hang.Load() {
				<-ctx.Done()
				return ctx.Err()
			}
			return refused
		}
		cfg := testConfig(1)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, refused)
		time.Sleep(time.Minute) // past any backoff
		hang.Store(true)        // the next dial outlasts AcquireTimeout
		_, err = p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.ErrorIs(t, err, refused, "last dial error flattened: %v", err)
	})
}

// Defect 10: an error that crosses the registry says "pool:" once.
func TestRegistryErrorsSayPoolOnce(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db1", src.factory(), testConfig(1)))
	require.NoError(t, reg.Close())
	err := reg.With(bg, "db1", func(*fakeConn) error { return nil })
	require.ErrorIs(t, err, pool.ErrPoolClosed)
	assert.Equal(t, 1, strings.Count(err.Error(), "pool:"), "%q", err)
	assert.Contains(t, err.Error(), `"db1"`)
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
