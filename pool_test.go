package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAcquireReleaseReusesConnection(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	first := pc.Conn()
	pc.Release()
	pc, err = p.Acquire(bg)
	require.NoError(t, err)
	assert.Same(t, first, pc.Conn(), "released connection not reused")
	pc.Release()
	assert.EqualValues(t, 1, src.dials.Load())
}

func TestIdleConnectionsAreReusedNewestFirst(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(3))
	a, _ := p.Acquire(bg)
	b, _ := p.Acquire(bg)
	c, _ := p.Acquire(bg)
	newest := b.Conn()
	a.Release()
	c.Release()
	b.Release() // b is the newest idle
	got, err := p.Acquire(bg)
	require.NoError(t, err)
	assert.Same(t, newest, got.Conn())
	got.Release()
}

func TestReleaseDiscardsInvalidConnection(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, _ := p.Acquire(bg)
	c := pc.Conn()
	c.invalid.Store(true)
	pc.Release()
	assert.EqualValues(t, 1, c.closed.Load())
	s := p.Stats()
	assert.Equal(t, 0, s.Total)
	assert.EqualValues(t, 1, s.ClosedBroken)
}

func TestResetRunsOnReleaseAndFailureDiscards(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	pc, _ := p.Acquire(bg)
	c := pc.Conn()
	c.dirty.Store(true)
	pc.Release()
	assert.False(t, c.dirty.Load(), "Reset not called on release")

	src.onReset = func(context.Context, *fakeConn) error { return errors.New("reset failed") }
	pc, _ = p.Acquire(bg)
	require.Same(t, c, pc.Conn())
	pc.Release()
	assert.EqualValues(t, 1, c.closed.Load(), "connection kept after a failed Reset")
	assert.EqualValues(t, 1, p.Stats().ClosedBroken)
}

func TestStaleHandleCannotTouchALaterLoan(t *testing.T) {
	p := newTestPool(t, newFakeSource(t), testConfig(1))
	stale, err := p.Acquire(bg)
	require.NoError(t, err)
	stale.Release()
	current, err := p.Acquire(bg) // the same connection, lent again
	require.NoError(t, err)

	assert.Panics(t, stale.Release, "stale Release released the current holder's loan")
	assert.Panics(t, stale.Discard, "stale Discard closed the current holder's connection")
	assert.Panics(t, func() { stale.Conn() }, "stale Conn reached the current holder's connection")

	s := p.Stats()
	assert.Equal(t, 1, s.InUse, "the current loan was ended by a stale handle")
	assert.Equal(t, 0, s.Idle)
	assert.EqualValues(t, 0, s.ClosedBroken)
	c := current.Conn() // the current holder is untouched
	c.use(t)
	c.done()
	assert.NotPanics(t, current.Release)
	assert.Equal(t, 1, p.Stats().Idle)
	require.NoError(t, p.CheckAccounting())
}

// Defect 1, under load: 8 goroutines each Get, Release, Release again. On
// b87d442 an innocent holder's own Release panicked within a few thousand
// operations.
func TestStaleDoubleReleaseUnderLoadNeverHurtsAnotherHolder(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	var stalePanics, innocentPanics atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				pc, err := p.Acquire(bg)
				if err != nil {
					t.Error(err)
					return
				}
				c := pc.Conn()
				c.use(t)
				c.done()
				func() {
					defer func() {
						if recover() != nil {
							innocentPanics.Add(1)
						}
					}()
					pc.Release()
				}()
				func() {
					defer func() {
						if recover() != nil {
							stalePanics.Add(1)
						}
					}()
					pc.Release()
				}()
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 0, innocentPanics.Load(), "a holder's own first Release panicked")
	assert.EqualValues(t, 8*500, stalePanics.Load(), "a second Release did not panic")
	s := p.Stats()
	assert.Equal(t, 0, s.InUse)
	assert.EqualValues(t, 8*500, s.AcquireCount)
	require.NoError(t, p.CheckAccounting())
}

// Defect 7: a panic in Ping, IsValid or Reset is re-raised to the caller
// with the pool's books put right; the slot is not leaked.
func TestPanickingConnectorLeaksNoSlot(t *testing.T) {
	for _, where := range []string{"Ping", "IsValid", "Reset"} {
		t.Run(where, func(t *testing.T) {
			src := newFakeSource(t)
			var armed atomic.Bool
			boom := func() {
				if armed.Load() {
					panic(where + " exploded")
				}
			}
			src.onPing = func(context.Context, *fakeConn) error { boom(); return nil }
			src.onValid = func(*fakeConn) bool { boom(); return true }
			src.onReset = func(context.Context, *fakeConn) error { boom(); return nil }
			cfg := testConfig(1)
			cfg.PingAfterIdle = time.Nanosecond // ping on every acquire
			p := newTestPool(t, src, cfg)
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			pc.Release()
			armed.Store(true)
			assert.PanicsWithValue(t, where+" exploded", func() {
				pc, err := p.Acquire(bg)
				if err == nil {
					pc.Release()
				}
			})
			armed.Store(false)
			s := p.Stats()
			assert.Equal(t, 0, s.InUse, "slot leaked by the panic")
			assert.Equal(t, 0, s.Total)
			require.NoError(t, p.CheckAccounting())
			ctx, cancel := context.WithTimeout(bg, 5*time.Second)
			defer cancel()
			pc, err = p.Acquire(ctx)
			require.NoError(t, err, "pool unusable after the panic")
			pc.Release()
		})
	}
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
		// The watchdog's Close, which unblocked the Reset, may still be
		// finishing on its own goroutine.
		synctest.Wait()
		src.checkAllClosedOnce(t)
	})
}

// The Python pool counted connections in use by scanning every connection.
// Here Stats reads counters: it allocates nothing, calls no connector, and
// costs the same with 1,000 connections in use as with none (see
// BenchmarkStats).
func TestInUseIsACounterNotAScan(t *testing.T) {
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

// With allocates nothing, and Acquire plus Release allocates nothing in
// the long run (a slab of handles per 128 loans).
func TestHotPathsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p, err := pool.New(func(context.Context) (plainConn, error) { return plainConn{}, nil }, pool.DefaultConfig())
	require.NoError(t, err)
	defer p.Close()
	fn := func(plainConn) error { return nil }
	require.NoError(t, p.With(bg, fn))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = p.With(bg, fn) }), "With allocates")
	allocs := testing.AllocsPerRun(1280, func() {
		pc, err := p.Acquire(bg)
		if err == nil {
			pc.Release()
		}
	})
	assert.Zero(t, allocs, "Acquire+Release allocates more than one slab per 128 loans")

	// With every hook set, calling them allocates nothing either.
	var events atomic.Int64
	cfg := pool.DefaultConfig()
	cfg.Hooks = pool.Hooks{
		Acquire: func(time.Duration, error) { events.Add(1) },
		Release: func(time.Duration) { events.Add(1) },
		Dial:    func(time.Duration, error) { events.Add(1) },
		Close:   func(pool.CloseReason) { events.Add(1) },
	}
	hooked, err := pool.New(func(context.Context) (plainConn, error) { return plainConn{}, nil }, cfg)
	require.NoError(t, err)
	defer hooked.Close()
	require.NoError(t, hooked.With(bg, fn))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = hooked.With(bg, fn) }), "With allocates with hooks set")
	allocs = testing.AllocsPerRun(1280, func() {
		pc, err := hooked.Acquire(bg)
		if err == nil {
			pc.Release()
		}
	})
	assert.Zero(t, allocs, "Acquire+Release allocates with hooks set")
	assert.Greater(t, events.Load(), int64(2*(1000+1280)), "the hooks ran")
}

// A connector that says it needs no reset is not Reset, so no timer is
// started for it; one that needs it is; a panicking NeedsReset is
// re-raised with the slot given back.
func TestNeedsResetSkipsReset(t *testing.T) {
	src := newFakeSource(t)
	var needs atomic.Bool
	src.onNeedsReset = func(*fakeConn) bool { return needs.Load() }
	p := newTestPool(t, src, testConfig(1))
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	pc.Release()
	assert.Zero(t, src.resets.Load(), "Reset ran although NeedsReset said no")
	needs.Store(true)
	require.NoError(t, p.With(bg, func(*fakeConn) error { return nil }))
	assert.EqualValues(t, 1, src.resets.Load())

	src.onNeedsReset = func(*fakeConn) bool { panic("needs exploded") }
	pc, err = p.Acquire(bg)
	require.NoError(t, err)
	assert.PanicsWithValue(t, "needs exploded", pc.Release)
	s := p.Stats()
	assert.Equal(t, 0, s.InUse)
	assert.Equal(t, 0, s.Total)
	require.NoError(t, p.CheckAccounting())
}

func TestStatsCountEveryEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		a, _ := p.Acquire(bg)
		b, _ := p.Acquire(bg)
		s := p.Stats()
		// Both waited, for no time, on their dial.
		assert.Equal(t, pool.Stats{Total: 2, InUse: 2, MinSize: 0, MaxSize: 2, Ceiling: 2, AcquireCount: 2, WaitCount: 2, Created: 2}, s)

		_, err := p.Acquire(bg) // times out after 1s
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		a.Release()
		b.Discard()
		s = p.Stats()
		assert.Equal(t, 1, s.Total)
		assert.Equal(t, 1, s.Idle)
		assert.Equal(t, 0, s.InUse)
		assert.EqualValues(t, 3, s.WaitCount)
		assert.Equal(t, time.Second, s.WaitDuration)
		assert.EqualValues(t, 1, s.TimedOutAcquires)
		assert.EqualValues(t, 1, s.ClosedBroken)
		assert.EqualValues(t, 2, s.AcquireCount)
	})
}

func TestWithReleasesOnSuccessAndOrdinaryError(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1))
	var first *fakeConn
	require.NoError(t, p.With(bg, func(c *fakeConn) error { first = c; return nil }))
	appErr := errors.New("no rows")
	err := p.With(bg, func(c *fakeConn) error {
		assert.Same(t, first, c)
		return appErr
	})
	assert.Same(t, appErr, err, "With must return fn's error unchanged")
	assert.Equal(t, 1, p.Stats().Idle)
	assert.EqualValues(t, 0, first.closed.Load())
}

func TestWithDiscardsOnErrBadConn(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1))
	var c1 *fakeConn
	err := p.With(bg, func(c *fakeConn) error {
		c1 = c
		return fmt.Errorf("query: %w", pool.ErrBadConn)
	})
	assert.ErrorIs(t, err, pool.ErrBadConn)
	assert.EqualValues(t, 1, c1.closed.Load())
	require.NoError(t, p.With(bg, func(c *fakeConn) error {
		assert.NotSame(t, c1, c)
		return nil
	}))
}

func TestWithDiscardsAndRepanicsOnPanic(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(1))
	var c1 *fakeConn
	assert.PanicsWithValue(t, "boom", func() {
		_ = p.With(bg, func(c *fakeConn) error { c1 = c; panic("boom") })
	})
	assert.EqualValues(t, 1, c1.closed.Load())
	s := p.Stats()
	assert.Equal(t, 0, s.InUse)
	assert.Equal(t, 0, s.Total)
}

func TestMisuseOfAHandlePanics(t *testing.T) {
	p := newTestPool(t, newFakeSource(t), testConfig(1))
	pc, _ := p.Acquire(bg)
	pc.Release()
	assert.PanicsWithValue(t, "pool: Release called on a loan that has ended (released twice?)", pc.Release)
	assert.Panics(t, pc.Discard)
	assert.Panics(t, func() { pc.Conn() })
	assert.NoError(t, p.CheckAccounting())
	assert.Equal(t, 1, p.Stats().Idle, "double release must not put the connection back twice")
}

func TestTryAcquireNeverWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		p := newTestPool(t, src, testConfig(1))
		_, err := p.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		synctest.Wait() // the background dial it started
		pc, err := p.TryAcquire(bg)
		require.NoError(t, err)
		_, err = p.TryAcquire(bg)
		assert.ErrorIs(t, err, pool.ErrPoolExhausted)
		pc.Release()
		assert.EqualValues(t, 1, src.dials.Load())
	})
}

// Stats.AcquireCount counts a loan when it starts, so it never goes back.
// Before, it counted a connection when it was taken for its check and
// took it back when the check failed: read during the check it went 1, 2,
// then 1 (pool_acquires_total dipped, which Prometheus reads as a reset).
func TestAcquireCountNeverGoesBack(t *testing.T) {
	src := newFakeSource(t)
	p := newTestPool(t, src, testConfig(2))
	var seen []int64
	src.onValid = func(c *fakeConn) bool {
		seen = append(seen, p.Stats().AcquireCount) // IsValid runs outside the lock
		return !c.invalid.Load()
	}
	src.onClose = func(*fakeConn) error {
		seen = append(seen, p.Stats().AcquireCount) // so does Close
		return nil
	}
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	c := pc.Conn()
	pc.Release()
	c.invalid.Store(true) // fails its next check, on acquire
	pc, err = p.Acquire(bg)
	require.NoError(t, err)
	pc.Release()
	seen = append(seen, p.Stats().AcquireCount)
	assert.IsNonDecreasing(t, seen)
	// The checks of loan 1 (acquire, release), the failed check and the
	// close of the first connection, the checks of loan 2, then the end.
	assert.Equal(t, []int64{0, 1, 1, 1, 1, 2, 2}, seen)
}

// TryAcquire's Ping is bounded by its ctx and PingTimeout, not by
// AcquireTimeout, which does not apply to a call that never waits.
func TestTryAcquireIsNotBoundedByAcquireTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.AcquireTimeout = 10 * time.Millisecond
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		time.Sleep(time.Second)
		src.onPing = func(ctx context.Context, _ *fakeConn) error {
			select {
			case <-time.After(20 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pc, err = p.TryAcquire(bg)
		require.NoError(t, err)
		pc.Release()
		assert.EqualValues(t, 1, src.pings.Load())
	})
}
