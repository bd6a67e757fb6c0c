package pool_test

// One test for each bug of the Python pool this package replaces.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// The Python pool waited for a free connection while holding its lock, so
// a release could not get in until the waiter timed out. Here the waiter is
// served the instant the holder releases.
func TestRegressionReleaseReachesWaiterAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.AcquireTimeout = 30 * time.Second
		p := newTestPool(t, newFakeSource(t), cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		got := make(chan error)
		go func() {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			got <- err
		}()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Waiting)
		time.Sleep(time.Second)
		start := time.Now()
		held.Release()
		require.NoError(t, <-got)
		assert.Zero(t, time.Since(start), "waiter was not served at the release")
		s := p.Stats()
		assert.EqualValues(t, 0, s.TimedOutAcquires)
		assert.Equal(t, time.Second, s.WaitDuration)
	})
}

// The Python reaper closed connections but left them in the idle queue, so
// they were lent out dead. Here nothing the reaper closed is ever lent.
func TestRegressionReapedConnectionsAreNeverLent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(4)
		cfg.MaxIdleTime = time.Minute
		cfg.ReapInterval = time.Minute
		cfg.PingAfterIdle = 0 // no ping to hide the bug
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 4 {
			pc, _ := p.Acquire(bg)
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Release()
		}
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		s := p.Stats()
		require.EqualValues(t, 4, s.ClosedIdle)
		assert.Equal(t, 0, s.Idle, "closed connections left on the idle stack")
		assert.Equal(t, 0, s.Total)
		for range 4 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			c := pc.Conn()
			c.use(t) // fails if c was closed
			c.done()
			held = append(held, pc)
		}
		for _, pc := range held[4:] {
			pc.Release()
		}
	})
}

// waitOrFail fails the test if fn does not finish within a generous real
// time: with the bug, fn would block on the pool lock forever.
func waitOrFail(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked while another goroutine was inside a health check: the pool lock is held across I/O", what)
	}
}

// The Python pool ran health checks under its lock. Here a Ping, a Reset
// and a dial that hang do not stop other callers from using the pool.
func TestRegressionHealthChecksRunOutsideTheLock(t *testing.T) {
	src := newFakeSource(t)
	inCheck := make(chan struct{}, 1)
	unblock := make(chan struct{})
	var blocking atomic.Pointer[fakeConn]
	src.onPing = func(_ context.Context, c *fakeConn) error {
		if c == blocking.Load() {
			inCheck <- struct{}{}
			<-unblock
		}
		return nil
	}
	src.onReset = src.onPing
	cfg := testConfig(3)
	cfg.PingAfterIdle = time.Nanosecond // ping on (nearly) every acquire from idle
	p := newTestPool(t, src, cfg)
	a, _ := p.Acquire(bg)
	b, _ := p.Acquire(bg)
	blocking.Store(a.Conn())
	released := make(chan struct{})
	go func() { a.Release(); close(released) }() // a's Reset blocks inside Release
	<-inCheck

	useOthers := func() {
		_ = p.Stats()
		bc := b.Conn()
		b.Release()
		pc, err := p.Acquire(bg) // takes b back (ping does not block for b)
		if assert.NoError(t, err) {
			assert.Same(t, bc, pc.Conn())
			b = pc
		}
	}
	waitOrFail(t, "Stats, Release and Acquire during a Reset", useOthers)
	unblock <- struct{}{}
	<-released

	// a is idle again; its ping on acquire blocks next.
	got := make(chan *pool.PooledConn[*fakeConn])
	go func() {
		pc, err := p.Acquire(bg)
		assert.NoError(t, err)
		got <- pc
	}()
	<-inCheck
	waitOrFail(t, "Stats, Release and Acquire during a Ping", useOthers)
	unblock <- struct{}{}
	blocking.Store(nil)
	c := <-got

	c.Release()
	b.Release()
	assert.NoError(t, p.CheckAccounting())
}

// Likewise a dial that hangs does not stop other callers.
func TestRegressionDialRunsOutsideTheLock(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	x, err := p.Acquire(bg)
	require.NoError(t, err)
	xc := x.Conn()
	dialing := make(chan struct{})
	unblock := make(chan struct{})
	src.onDial = func(context.Context) error { close(dialing); <-unblock; return nil }
	got := make(chan *pool.PooledConn[*fakeConn])
	go func() {
		pc, err := p.Acquire(bg) // dials the second connection, which hangs
		assert.NoError(t, err)
		got <- pc
	}()
	<-dialing
	waitOrFail(t, "Stats, TryAcquire and Release during a dial", func() {
		assert.Equal(t, 1, p.Stats().Dialing)
		_, err := p.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		x.Release() // handed to the waiter, which need not wait for its dial
	})
	pc := <-got
	assert.Same(t, xc, pc.Conn())
	close(unblock)
	pc.Release()
	assert.NoError(t, p.CheckAccounting())
	require.NoError(t, p.Close()) // waits for the dial
	assert.EqualValues(t, 2, src.dials.Load())
	src.checkAllClosedOnce(t)
}

// The Python pool counted connections in use by scanning every connection.
// Here Stats reads counters: it allocates nothing, calls no connector, and
// costs the same with 1,000 connections in use as with none (see
// BenchmarkStats).
func TestRegressionInUseIsACounterNotAScan(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1000))
	var held []*pool.PooledConn[*fakeConn]
	for i := range 1000 {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		held = append(held, pc)
		if i%100 == 0 {
			require.Equal(t, i+1, p.Stats().InUse)
		}
	}
	checks := src.checks.Load()
	allocs := testing.AllocsPerRun(100, func() { _ = p.Stats() })
	assert.Zero(t, allocs, "Stats allocates")
	assert.Equal(t, checks, src.checks.Load(), "Stats called into connectors")
	s := p.Stats()
	assert.Equal(t, 1000, s.InUse)
	for i, pc := range held {
		pc.Release()
		if i%100 == 0 {
			require.Equal(t, 999-i, p.Stats().InUse)
		}
	}
	assert.Equal(t, 0, p.Stats().InUse)
}

// The Python registry only logged when asked to release a connector it
// did not know. Here the caller gets an error, and the connection is not
// lost.
func TestRegressionReleasingUnknownConnectionIsAnError(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = reg.Close() })
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "a", src.factory(), testConfig(2)))
	require.NoError(t, reg.Register(bg, "b", newFakeSource(t).factory(), testConfig(2)))
	pb, err := reg.Get(bg, "b")
	require.NoError(t, err)
	pc, err := reg.Get(bg, "a")
	require.NoError(t, err)

	err = reg.Release("nope", pc)
	assert.ErrorIs(t, err, pool.ErrUnknownSource)
	assert.Contains(t, err.Error(), `"nope"`)
	pa, _ := reg.Pool(bg, "a")
	assert.Equal(t, 1, pa.Stats().Idle, "connection lost after release with an unknown ID")

	err = reg.Release("a", pc)
	assert.ErrorIs(t, err, pool.ErrNotHeld, "second release")

	err = reg.Release("a", pb)
	assert.ErrorIs(t, err, pool.ErrForeignConn)
	pbPool, _ := reg.Pool(bg, "b")
	assert.Equal(t, 1, pbPool.Stats().Idle, "foreign connection must go back to its own pool")
	assert.True(t, errors.Is(reg.Release("a", nil), pool.ErrNotHeld))
}
