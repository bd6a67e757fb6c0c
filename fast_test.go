package pool_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// parkingSource is a fake source whose releases need no Reset, so that
// they take the lock-free path.
func parkingSource(t testing.TB) *fakeSource {
	src := newFakeSource(t)
	src.onNeedsReset = func(*fakeConn) bool { return false }
	return src
}

// A release with nobody waiting parks its connection, and an Acquire takes
// it back, both without the pool's lock: they complete while a test holds
// it. Stats count parked connections as idle, and their loans.
func TestParkingNeedsNoLock(t *testing.T) {
	src := parkingSource(t)
	p := newTestPool(t, src, testConfig(4))
	held := acquireN(t, p, 3)
	for _, pc := range held {
		pc.Release()
	}
	assert.Equal(t, 3, p.Parked())
	st := p.Stats()
	assert.Equal(t, 3, st.Idle)
	assert.Equal(t, 0, st.InUse)
	assert.Equal(t, 3, st.Total)

	loansWhileLocked(t, p, 100)
	st = p.Stats()
	assert.EqualValues(t, 3, src.dials.Load(), "a parked connection was not reused")
	assert.EqualValues(t, 103, st.AcquireCount)
	assert.Equal(t, 3, st.Idle)
	require.NoError(t, p.CheckAccounting())
}

// loansWhileLocked runs n loans of p while the test holds p's lock: they
// can complete only on the lock-free path.
func loansWhileLocked(t *testing.T, p *pool.Pool[*fakeConn], n int) {
	t.Helper()
	done := make(chan error, 1)
	p.WhileLocked(func() {
		go func() {
			for range n {
				pc, err := p.Acquire(bg)
				if err != nil {
					done <- err
					return
				}
				pc.Release()
			}
			done <- nil
		}()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Acquire and Release of a parked connection waited for the pool's lock")
		}
	})
}

// No connection stays parked while a caller waits: 16 goroutines share
// one connection for 20,000 loans, at GOMAXPROCS 2 and 16, each Acquire
// bounded by 10 s. A connection parked at the moment a caller queues, and
// left there, would strand it until the bound.
func TestNoConnectionStaysParkedWhileACallerWaits(t *testing.T) {
	for _, procs := range []int{2, 16} {
		t.Run(map[int]string{2: "GOMAXPROCS=2", 16: "GOMAXPROCS=16"}[procs], func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			src := parkingSource(t)
			cfg := testConfig(1)
			cfg.AcquireTimeout = 10 * time.Second
			p := newTestPool(t, src, cfg)
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for range 16 {
				wg.Go(func() {
					for range 20000 / 16 {
						pc, err := p.Acquire(bg)
						if err != nil {
							errs <- err
							return
						}
						pc.Conn().use(t)
						pc.Conn().done()
						pc.Release()
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("a caller was stranded: %v", err)
			}
			st := p.Stats()
			assert.EqualValues(t, 20000/16*16, st.AcquireCount)
			assert.EqualValues(t, 1, src.dials.Load())
			require.NoError(t, p.CheckAccounting())
		})
	}
}

// A waiter gets the connection released while it waits; it is not parked
// for a newcomer to take, and the newcomer queues behind.
func TestAReleaseWithAWaiterHandsOffInsteadOfParking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := parkingSource(t)
		p := newTestPool(t, src, testConfig(1))
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		got := make(chan *pool.PooledConn[*fakeConn], 2)
		go func() {
			w, err := p.Acquire(bg)
			if err == nil {
				got <- w
			}
		}()
		synctest.Wait() // the waiter is queued
		pc.Release()
		synctest.Wait()
		assert.Equal(t, 0, p.Parked())
		var w *pool.PooledConn[*fakeConn]
		select {
		case w = <-got:
		default:
			t.Fatal("the waiter was not served by the release")
		}
		_, err = p.TryAcquire(bg)
		require.ErrorIs(t, err, pool.ErrPoolExhausted)
		w.Release()
		assert.Equal(t, 1, p.Parked(), "with nobody waiting, the release parks")
	})
}

// Close closes parked connections, each once; Shutdown does not wait for
// them as if they were lent.
func TestCloseClosesParkedConnections(t *testing.T) {
	for _, shutdown := range []bool{false, true} {
		src := parkingSource(t)
		p, err := pool.New(src.factory(), testConfig(4))
		require.NoError(t, err)
		held := acquireN(t, p, 3)
		for _, pc := range held {
			pc.Release()
		}
		require.Equal(t, 3, p.Parked())
		if shutdown {
			ctx, cancel := context.WithTimeout(bg, 10*time.Second)
			require.NoError(t, p.Shutdown(ctx))
			cancel()
		} else {
			require.NoError(t, p.Close())
		}
		assert.Equal(t, 0, p.Parked())
		st := p.Stats()
		assert.Equal(t, 0, st.Total)
		assert.EqualValues(t, 3, st.ClosedPool)
		assert.EqualValues(t, 3, src.closes.Load())
		assert.Zero(t, src.reClosed.Load())
		_, err = p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrPoolClosed)
	}
}

// SetMaxSize below the parked connections closes those above it, and
// nothing parks above the new size.
func TestSetMaxSizeClosesParkedConnectionsAboveIt(t *testing.T) {
	src := parkingSource(t)
	p := newTestPool(t, src, testConfig(4))
	held := acquireN(t, p, 4)
	held[0].Release()
	held[1].Release()
	require.Equal(t, 2, p.Parked())
	require.NoError(t, p.SetMaxSize(1))
	assert.Equal(t, 0, p.Parked())
	held[2].Release() // above MaxSize: closed, not parked
	assert.Equal(t, 0, p.Parked())
	held[3].Release() // the pool is within MaxSize again: parked
	assert.Equal(t, 1, p.Parked())
	st := p.Stats()
	assert.Equal(t, 1, st.Total)
	assert.EqualValues(t, 3, st.ClosedResized)
	require.NoError(t, p.CheckAccounting())
}

// The reaper sees parked connections: one idle past MaxIdleTime is closed,
// and one past MaxLifetime is never lent from its slot.
func TestReaperAndLifetimeReachParkedConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := parkingSource(t)
		cfg := testConfig(2)
		cfg.MaxIdleTime = time.Second
		cfg.ReapInterval = 100 * time.Millisecond
		p := newTestPool(t, src, cfg)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		require.Equal(t, 1, p.Parked())
		time.Sleep(2 * time.Second)
		synctest.Wait()
		st := p.Stats()
		assert.EqualValues(t, 1, st.ClosedIdle)
		assert.Equal(t, 0, st.Total)

		cfg = testConfig(2)
		cfg.MaxLifetime = time.Second
		p = newTestPool(t, src, cfg)
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		first := pc.Conn()
		pc.Release()
		require.Equal(t, 1, p.Parked())
		time.Sleep(2 * time.Second)
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, first, pc.Conn(), "a connection past MaxLifetime was lent from its slot")
		pc.Release()
		assert.EqualValues(t, 1, p.Stats().ClosedLifetime)
	})
}

// Every pool takes the lock-free path: a plain one, one on a Budget (with
// a neighbour on it) and an Adaptive one each park their released
// connections and lend them while a test holds the pool's lock, and their
// books stay exact.
func TestEveryKindOfPoolParks(t *testing.T) {
	kinds := map[string]func(*pool.Config){
		"plain": func(*pool.Config) {},
		"budget": func(cfg *pool.Config) {
			b := newTestBudget(t, 8)
			cfg.Budget, cfg.Name = b, "main"
			ncfg := budgetConfig(b, "neighbour", 4)
			newTestPool(t, newFakeSource(t), ncfg)
		},
		"adaptive": func(cfg *pool.Config) { cfg.Adaptive = true },
	}
	for name, set := range kinds {
		t.Run(name, func(t *testing.T) {
			src := parkingSource(t)
			cfg := testConfig(4)
			set(&cfg)
			p := newTestPool(t, src, cfg)
			fillIdle(t, p, 3)
			require.Equal(t, 3, p.Parked(), "released connections were not parked")
			loansWhileLocked(t, p, 100)
			st := p.Stats()
			assert.EqualValues(t, 103, st.AcquireCount)
			assert.Equal(t, 3, st.Idle)
			assert.Equal(t, 0, st.InUse)
			assert.EqualValues(t, 3, src.dials.Load())
			require.NoError(t, p.CheckAccounting())
		})
	}
}

// A parked connection is an idle connection to the budget: when another
// pool waits on a full budget, it is reclaimed once idle 100 ms, as one on
// the idle stack would be.
func TestParkedConnectionIsReclaimedForAnotherPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 2)
		a := newTestPool(t, parkingSource(t), budgetConfig(b, "a", 5))
		busy := newTestPool(t, newFakeSource(t), budgetConfig(b, "busy", 5))
		c := newTestPool(t, newFakeSource(t), budgetConfig(b, "c", 5))
		fillIdle(t, a, 1)
		require.Equal(t, 1, a.Parked())
		held, err := busy.Acquire(bg)
		require.NoError(t, err)
		defer held.Release()

		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		got, err := c.Acquire(bg)
		require.NoError(t, err)
		waited := time.Since(start)
		got.Release()
		assert.Equal(t, 70*time.Millisecond, waited, "reclaimed when idle 100 ms, measured from a's release")
		assert.EqualValues(t, 1, a.Stats().ClosedBudget)
		assert.Equal(t, 0, a.Parked())
		require.NoError(t, a.CheckAccounting())
	})
}

// While another pool waits on a full budget, a release does not park: it
// goes through the lock, which closes the connection so that its slot goes
// to the waiting pool at that instant (the waiting pool holds none, and
// the releasing one has had the slot a second).
func TestBudgetReleaseYieldsInsteadOfParkingWhileAnotherPoolWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBudget(t, 1)
		a := newTestPool(t, parkingSource(t), budgetConfig(b, "a", 5))
		c := newTestPool(t, newFakeSource(t), budgetConfig(b, "c", 5))
		fillIdle(t, a, 1) // a's connection is no longer new: it may yield
		pc, err := a.Acquire(bg)
		require.NoError(t, err)
		served := make(chan time.Time, 1)
		go func() {
			got, err := c.Acquire(bg)
			if err == nil {
				served <- time.Now()
				got.Release()
			}
		}()
		synctest.Wait()
		time.Sleep(2 * time.Second)
		released := time.Now()
		pc.Release()
		select {
		case at := <-served:
			assert.Equal(t, released, at, "the waiting pool was not served by the release")
		case <-time.After(time.Minute):
			t.Fatal("the waiting pool was never served")
		}
		assert.EqualValues(t, 1, a.Stats().ClosedBudget, "the release did not yield its slot")
		assert.Equal(t, 0, a.Parked())
	})
}

// FuzzPoolParked is FuzzPool with the pool off the Budget and releases
// that need no Reset (op 15 with op/30 odd toggles that), so that loans
// end on the lock-free path (fast.go): connections are parked and taken
// from the slots between the model's checks, which see them through
// Stats and the books. The neighbour keeps the Budget to itself.
func FuzzPoolParked(f *testing.F) {
	f.Add([]byte{0, 0, 2, 4, 1, 3, 5, 6, 7, 8, 0, 9, 0, 12, 2})
	f.Add([]byte{0, 0, 0, 0, 7, 2, 2, 4, 4, 10, 11, 0, 13})
	f.Add([]byte{0, 2, 0, 2, 5, 5, 5, 0, 0, 0, 24, 2, 2, 2, 54, 0, 0, 0, 0, 11, 20, 0, 2})
	f.Add([]byte{0, 0, 0, 2, 2, 2, 9, 9, 9, 29, 59, 89, 5, 6, 16, 5, 5, 45, 5, 0, 21})
	f.Add([]byte{0, 1, 0, 1, 0, 1, 0, 1, 22, 2, 2, 2, 2, 4, 4})
	f.Add([]byte{0, 0, 0, 24, 2, 0, 54, 2, 2, 25, 85, 0, 24, 9, 2, 11, 114, 0, 1, 21})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		synctest.Test(t, func(t *testing.T) { runFuzzOps(t, ops, false, true) })
	})
}

// FuzzPoolParkedOnBudget is FuzzPool with releases that start without
// Reset: the pool on the Budget parks its connections and takes them from
// the slots, while the budget moves slots between it and its neighbour
// and reclaims its idle (parked) connections; the budget's books must
// still match the pools' after every step.
func FuzzPoolParkedOnBudget(f *testing.F) {
	f.Add([]byte{0, 0, 2, 4, 1, 3, 5, 6, 7, 8, 0, 9, 0, 12, 2})
	f.Add([]byte{0, 0, 0, 0, 7, 2, 2, 4, 4, 10, 11, 0, 13})
	f.Add([]byte{26, 26, 0, 0, 26, 28, 0, 27, 2, 58, 29, 0, 59, 27, 26, 2, 88, 0, 0, 11, 27, 27, 2})
	f.Add([]byte{0, 0, 40, 0, 0, 0, 11, 2, 0, 26, 26, 9, 11, 40, 0, 2, 0, 2})
	f.Add([]byte{0, 2, 0, 2, 5, 5, 5, 0, 0, 0, 24, 2, 2, 2, 54, 0, 0, 0, 0, 11, 20, 0, 2})
	f.Add([]byte{0, 0, 0, 24, 2, 0, 54, 2, 2, 25, 85, 0, 24, 9, 2, 11, 114, 0, 1, 21})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		synctest.Test(t, func(t *testing.T) { runFuzzOps(t, ops, true, true) })
	})
}
