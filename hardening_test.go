package pool_test

// One test for each defect that issue 8 found on b87d442 by using the pool
// as a hostile caller would, defects 1 to 7 here and 8 to 10 in
// hardening_close_test.go. Each failed there and passes now.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// Defect 1: a handle kept after its own Release must not reach the next
// loan of the same connection.
// fillIdle dials n connections into p's idle stack: it acquires n at once,
// then releases them.
func fillIdle(t *testing.T, p *pool.Pool[*fakeConn], n int) {
	t.Helper()
	held := make([]*pool.PooledConn[*fakeConn], 0, n)
	for range n {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		held = append(held, pc)
	}
	for _, pc := range held {
		pc.Release()
	}
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

// Defect 1, through the registry: a stale Release returns ErrNotHeld and
// leaves the current holder's loan alone.
func TestRegistryStaleReleaseIsErrNotHeld(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = reg.Close() })
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db", src.factory(), testConfig(1)))
	stale, err := reg.Get(bg, "db")
	require.NoError(t, err)
	require.NoError(t, reg.Release("db", stale))
	current, err := reg.Get(bg, "db")
	require.NoError(t, err)
	assert.ErrorIs(t, reg.Release("db", stale), pool.ErrNotHeld)
	assert.Equal(t, 1, reg.Stats()["db"].InUse, "stale release ended the current loan")
	require.NoError(t, reg.Release("db", current))
	assert.ErrorIs(t, reg.Release("db", current), pool.ErrNotHeld)
}

// Defect 2: a waiter handed a connection that fails its acquire-time check
// keeps its place at the head of the queue.
func TestWaiterKeepsItsPlaceWhenItsConnectionFailsTheCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var broken atomic.Pointer[fakeConn]
		src.onPing = func(_ context.Context, c *fakeConn) error {
			if c == broken.Load() {
				return errors.New("broken")
			}
			return nil
		}
		cfg := testConfig(1)
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		time.Sleep(2 * time.Second) // so that its next acquire pings it
		order := make(chan string, 2)
		for _, name := range []string{"first", "second"} {
			go func() {
				pc, err := p.Acquire(bg)
				if err != nil {
					order <- "error: " + err.Error()
					return
				}
				order <- name
				pc.Release()
			}()
			synctest.Wait() // queued in this order
		}
		broken.Store(held.Conn())
		held.Release() // goes to "first", fails its ping, is replaced
		assert.Equal(t, "first", <-order)
		assert.Equal(t, "second", <-order)
	})
}

// Defect 3: a caller whose ctx ends during a health check gets the ctx's
// error; the other idle connections are neither pinged nor closed.
func TestCanceledPingClosesAtMostOneConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var pinging atomic.Bool
		src.onPing = func(ctx context.Context, _ *fakeConn) error {
			if !pinging.Load() {
				return nil
			}
			<-ctx.Done() // a black-holed server
			return ctx.Err()
		}
		cfg := testConfig(10)
		cfg.PingAfterIdle = time.Second
		p := newTestPool(t, src, cfg)
		fillIdle(t, p, 10)
		time.Sleep(2 * time.Second) // idle past PingAfterIdle
		pinging.Store(true)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		pingsBefore := src.pings.Load()
		_, err := p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		s := p.Stats()
		assert.LessOrEqual(t, s.ClosedBroken, int64(1), "healthy connections closed because the caller's ctx ended")
		assert.GreaterOrEqual(t, s.Idle, 9)
		assert.EqualValues(t, 1, src.pings.Load()-pingsBefore, "pinged with a done ctx")
	})
}

// Defect 4: AcquireTimeout bounds the whole Acquire, health checks
// included, not just the wait in the queue.
func TestAcquireTimeoutBoundsHealthChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var pinging atomic.Bool
		src.onPing = func(ctx context.Context, _ *fakeConn) error {
			if !pinging.Load() {
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		}
		cfg := testConfig(5)
		cfg.PingAfterIdle = time.Second
		cfg.PingTimeout = 5 * time.Second
		cfg.AcquireTimeout = 100 * time.Millisecond
		p := newTestPool(t, src, cfg)
		fillIdle(t, p, 5)
		time.Sleep(2 * time.Second) // idle past PingAfterIdle
		pinging.Store(true)
		start := time.Now()
		_, err := p.Acquire(bg)
		assert.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "Acquire ran past AcquireTimeout")
	})
}

// Defect 5: fresh connections that always fail their acquire check do not
// make Acquire redial in a hot loop, and the error says why.
func TestFreshConnectionsFailingTheCheckAreNotRedialledHot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onValid = func(*fakeConn) bool { return false }
		src.onDial = func(context.Context) error {
			if src.dials.Load() > 50 { // stops b87d442's loop, which takes no time
				return errors.New("dial budget spent")
			}
			return nil
		}
		cfg := testConfig(1)
		cfg.AcquireTimeout = 100 * time.Millisecond
		p := newTestPool(t, src, cfg)
		_, err := p.Acquire(bg)
		require.Error(t, err)
		assert.LessOrEqual(t, src.dials.Load(), int64(5), "redialled in a hot loop")
		assert.Contains(t, err.Error(), "IsValid", "the error does not say why: %v", err)
	})
}

// Defect 6: WaitReady returns when a dial fails and the other succeeds, and
// the pool goes on dialling until it holds MinSize, even with no reaper.
func TestWaitReadyReturnsAndThePoolRedialsToMinSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var n atomic.Int64
		src.onDial = func(context.Context) error {
			if n.Add(1) == 1 {
				return errors.New("first dial refused")
			}
			return nil
		}
		cfg := testConfig(2)
		cfg.MinSize = 2
		p := newTestPool(t, src, cfg)
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		start := time.Now()
		err := p.WaitReady(ctx)
		assert.Less(t, time.Since(start), time.Second, "WaitReady hung")
		if err != nil {
			assert.ErrorIs(t, err, pool.ErrDial)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, 2, p.Stats().Idle, "the pool did not dial again to reach MinSize")
		require.NoError(t, p.WaitReady(ctx))
	})
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

// Defect 7: a panicking Close in Pool.Close does not stop the other idle
// connections from being closed; it becomes an error.
func TestPanickingCloseDoesNotStopPoolClose(t *testing.T) {
	src := newFakeSource(t)
	src.onClose = func(c *fakeConn) error {
		if c.id == 1 {
			panic("close exploded")
		}
		return nil
	}
	p, err := pool.New(src.factory(), testConfig(3))
	require.NoError(t, err)
	var held []*pool.PooledConn[*fakeConn]
	for range 3 {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		held = append(held, pc)
	}
	for _, pc := range held {
		pc.Release()
	}
	var closeErr error
	require.NotPanics(t, func() { closeErr = p.Close() })
	require.Error(t, closeErr)
	assert.Contains(t, closeErr.Error(), "close exploded")
	assert.EqualValues(t, 2, src.closes.Load(), "connections after the panicking one were not closed")
	assert.Equal(t, 0, p.Stats().Total)
}

// Defect 7: a panicking Factory runs in a pool goroutine; it becomes a dial
// error for the waiter instead of killing the process.
func TestPanickingFactoryIsADialError(t *testing.T) {
	var calls atomic.Int64
	p, err := pool.New(func(context.Context) (*fakeConn, error) {
		calls.Add(1)
		panic("factory exploded")
	}, testConfig(1))
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Acquire(bg)
	require.ErrorIs(t, err, pool.ErrDial)
	assert.Contains(t, err.Error(), "factory exploded")
	assert.Equal(t, 0, p.Stats().Total)
}

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
