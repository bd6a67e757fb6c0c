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

// fakeServer stands for a server with a connection limit, shared by the
// fake sources that dial it: a dial takes one of its slots or is refused
// with an error that matches pool.ErrCapacity (as SQLSTATE 53300 does
// through the postgres connector); Close gives the slot back.
type fakeServer struct {
	limit    atomic.Int64
	used     atomic.Int64
	maxUsed  atomic.Int64
	refusals atomic.Int64
	dialAt   func() // optional: runs on every dial, refused or not
}

var errTooManyClients = fmt.Errorf("FATAL: sorry, too many clients already (SQLSTATE 53300): %w", pool.ErrCapacity)

func newFakeServer(limit int) *fakeServer {
	s := &fakeServer{}
	s.limit.Store(int64(limit))
	return s
}

// serve makes src's dials take a slot of s, and its closes give it back.
func (s *fakeServer) serve(src *fakeSource) {
	src.onDial = func(context.Context) error {
		if s.dialAt != nil {
			s.dialAt()
		}
		for {
			n := s.used.Load()
			if n >= s.limit.Load() {
				s.refusals.Add(1)
				return errTooManyClients
			}
			if s.used.CompareAndSwap(n, n+1) {
				for m := s.maxUsed.Load(); n+1 > m && !s.maxUsed.CompareAndSwap(m, n+1); m = s.maxUsed.Load() {
				}
				return nil
			}
		}
	}
	src.onClose = func(*fakeConn) error {
		s.used.Add(-1)
		return nil
	}
}

// load runs workers goroutines that acquire, hold for hold and release,
// until stop is closed; it returns the loans served and every error.
func load(p *pool.Pool[*fakeConn], workers int, hold time.Duration, stop <-chan struct{}) (served *atomic.Int64, errs func() []error) {
	served = new(atomic.Int64)
	var mu sync.Mutex
	var all []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := p.With(bg, func(*fakeConn) error {
					time.Sleep(hold)
					return nil
				})
				if err != nil {
					mu.Lock()
					all = append(all, err)
					mu.Unlock()
					continue
				}
				served.Add(1)
			}
		})
	}
	return served, func() []error {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return all
	}
}

// The measurement the fleet work started from: a server that takes 3
// connections, a pool of 8, 16 callers. Refusals must not fail callers or
// mark the source down; the pool settles at what the server takes, with
// few refused dials.
func TestRefusedDialsDoNotFailCallersWhileConnectionsAreOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(3)
		src := newFakeSource(t)
		srv.serve(src)
		cfg := testConfig(8)
		cfg.AcquireTimeout = 2 * time.Second
		p := newTestPool(t, src, cfg)

		stop := make(chan struct{})
		served, errs := load(p, 16, 10*time.Millisecond, stop)
		var downSeen bool
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			downSeen = downSeen || p.Stats().Down
		}
		close(stop)
		assert.Empty(t, errs(), "callers failed while the pool held working connections")
		assert.False(t, downSeen, "a refusal marked the source down")
		s := p.Stats()
		assert.Equal(t, 3, s.Ceiling, "the ceiling is not what the server takes")
		assert.LessOrEqual(t, srv.maxUsed.Load(), int64(3))
		// 5 s at 3 connections held 10 ms each: about 1,500 loans.
		assert.Greater(t, served.Load(), int64(1400))
		// Probes come at most one per pause (50 ms doubling to 500 ms,
		// jittered down to half): about 14 in 5 s, never hundreds.
		assert.Positive(t, s.Refused)
		assert.LessOrEqual(t, s.Refused, int64(30), "refused %d dials in 5 s: a connect storm", s.Refused)
		assert.Equal(t, s.Refused, srv.refusals.Load())
		assert.Zero(t, s.FailedFast)
		require.NoError(t, p.CheckAccounting())
	})
}

// While callers wait, the ceiling grows back one probe at a time as the
// server takes more, and ends once it reaches MaxSize.
func TestCeilingGrowsBackOneProbeAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(2)
		src := newFakeSource(t)
		var dialTimes []time.Duration
		start := time.Now()
		var mu sync.Mutex
		srv.dialAt = func() {
			mu.Lock()
			dialTimes = append(dialTimes, time.Since(start))
			mu.Unlock()
		}
		srv.serve(src)
		cfg := testConfig(6)
		cfg.DialBackoff = 100 * time.Millisecond
		cfg.DialBackoffMax = 400 * time.Millisecond
		p := newTestPool(t, src, cfg)

		stop := make(chan struct{})
		_, errs := load(p, 12, 20*time.Millisecond, stop)
		time.Sleep(2 * time.Second)
		assert.Equal(t, 2, p.Stats().Ceiling)

		srv.limit.Store(6) // the server makes room
		ceilings := []int{2}
		for range 40 {
			time.Sleep(50 * time.Millisecond)
			if c := p.Stats().Ceiling; len(ceilings) == 0 || c != ceilings[len(ceilings)-1] {
				ceilings = append(ceilings, c)
			}
		}
		close(stop)
		require.Empty(t, errs())
		assert.Equal(t, []int{2, 3, 4, 5, 6}, ceilings, "the ceiling must grow by one per probe")
		s := p.Stats()
		assert.Equal(t, 6, s.Ceiling)
		assert.Equal(t, 6, s.Total)

		mu.Lock()
		defer mu.Unlock()
		// After the first burst, dials come one per pause (at least half
		// of DialBackoff, with jitter).
		var burst int
		for burst = 1; burst < len(dialTimes) && dialTimes[burst] == dialTimes[0]; burst++ {
		}
		for i := burst + 1; i < len(dialTimes); i++ {
			gap := dialTimes[i] - dialTimes[i-1]
			assert.GreaterOrEqual(t, gap, 50*time.Millisecond, "dial %d came %v after the one before", i, gap)
		}
	})
}

// A server full of other clients' connections, with nothing of the pool's
// open: the caller waits (within AcquireTimeout) for a probe instead of
// failing, and is served once the server frees a slot. A caller whose
// AcquireTimeout passes first gets an error that names the refusal.
func TestRefusalWithNothingOpenWaitsForAProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(0)
		src := newFakeSource(t)
		srv.serve(src)
		cfg := testConfig(4)
		cfg.AcquireTimeout = 300 * time.Millisecond
		cfg.DialBackoff = 40 * time.Millisecond
		cfg.DialBackoffMax = 160 * time.Millisecond
		p := newTestPool(t, src, cfg)

		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.ErrorIs(t, err, pool.ErrCapacity, "the timeout does not say the server refused")
		assert.Contains(t, err.Error(), "too many clients")
		s := p.Stats()
		assert.False(t, s.Down)
		assert.Zero(t, s.FailedFast)
		assert.LessOrEqual(t, s.Refused, int64(8), "probes came faster than one per pause")

		done := make(chan error, 1)
		start := time.Now()
		go func() {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		requireNotDone(t, done, "served while the server was full")
		srv.limit.Store(1)
		require.NoError(t, <-done)
		assert.LessOrEqual(t, time.Since(start), 50*time.Millisecond+cfg.DialBackoffMax, "served later than the next probe")
	})
}

// Any failed dial, not only a refusal, leaves the callers waiting while a
// lent connection will come back: fail-fast is for a pool with nothing
// in use.
func TestFailedDialWaitsForALentConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.DialBackoff = 100 * time.Millisecond
		p := newTestPool(t, src, cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)

		down := errors.New("connection refused")
		src.failDials(down)
		var wg sync.WaitGroup
		results := make([]error, 4)
		for i := range results {
			wg.Go(func() {
				pc, err := p.Acquire(bg)
				if err == nil {
					time.Sleep(time.Millisecond)
					pc.Release()
				}
				results[i] = err
			})
		}
		synctest.Wait()
		assert.True(t, p.Stats().Down)
		assert.Equal(t, 4, p.Stats().Waiting, "a caller failed although a lent connection will come back")
		held.Release()
		wg.Wait()
		for i, err := range results {
			assert.NoError(t, err, "caller %d", i)
		}

		// With nothing in use, a caller waits for the probe that is due
		// and gets its error; two seconds into the outage, callers fail
		// fast again.
		p2 := newTestPool(t, src, cfg)
		_, err = p2.Acquire(bg)
		require.ErrorIs(t, err, down)
		before := src.dials.Load()
		_, err = p2.Acquire(bg)
		require.ErrorIs(t, err, down)
		assert.Equal(t, before+1, src.dials.Load(), "the caller did not wait for the probe")
		assert.Zero(t, p2.Stats().FailedFast)
		time.Sleep(2 * time.Second)
		_, err = p2.Acquire(bg) // its wait starts the next probe
		require.ErrorIs(t, err, down)
		_, err = p2.Acquire(bg)
		require.ErrorIs(t, err, down)
		assert.EqualValues(t, 1, p2.Stats().FailedFast)
	})
}

// The last lent connection of a down source is found broken: the waiters
// left with nothing coming fail with the next probe's error (due within
// 20 ms of the first failure), not at their timeout.
func TestWaitersFailWhenTheLastLentConnectionBreaks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.DialBackoff = time.Second
		cfg.DialBackoffMax = time.Second
		cfg.AcquireTimeout = time.Minute
		p := newTestPool(t, src, cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		down := errors.New("connection refused")
		src.failDials(down)
		done := make(chan error, 1)
		go func() {
			_, err := p.Acquire(bg)
			done <- err
		}()
		synctest.Wait()
		requireNotDone(t, done, "failed while a connection was lent")
		start := time.Now()
		held.Discard()
		err = <-done
		require.ErrorIs(t, err, down)
		assert.LessOrEqual(t, time.Since(start), 20*time.Millisecond)
	})
}

// Refusals on a budget lower the budget's ceiling, shared by its pools:
// the pools together stay at what the server takes, none of their callers
// fails, and the probes for the whole budget stay few.
func TestBudgetCeilingFollowsTheServersRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(4)
		b := newTestBudget(t, 12)
		var stops []chan struct{}
		var allErrs []func() []error
		var pools []*pool.Pool[*fakeConn]
		for i := range 3 {
			src := newFakeSource(t)
			srv.serve(src)
			cfg := budgetConfig(b, fmt.Sprint("tenant", i), 8)
			cfg.AcquireTimeout = 5 * time.Second
			p := newTestPool(t, src, cfg)
			pools = append(pools, p)
			stop := make(chan struct{})
			stops = append(stops, stop)
			_, errs := load(p, 6, 10*time.Millisecond, stop)
			allErrs = append(allErrs, errs)
		}
		time.Sleep(5 * time.Second)
		bs := b.Stats()
		for _, stop := range stops {
			close(stop)
		}
		for i, errs := range allErrs {
			assert.Empty(t, errs(), "tenant%d", i)
		}
		assert.Equal(t, 4, bs.Ceiling)
		assert.Equal(t, 12, bs.Limit)
		assert.LessOrEqual(t, srv.maxUsed.Load(), int64(4))
		assert.Positive(t, bs.Refused)
		assert.LessOrEqual(t, bs.Refused, int64(30), "%d refusals in 5 s for the budget", bs.Refused)
		for i, p := range pools {
			assert.Equal(t, 8, p.Stats().Ceiling, "tenant%d: a pool on a budget has the budget's ceiling", i)
			assert.Positive(t, p.Stats().AcquireCount, "tenant%d starved", i)
			require.NoError(t, p.CheckAccounting())
		}
	})
}

// A Factory that refuses for capacity and panics by turns: no caller
// hangs, the panics reach callers as errors only when nothing is in use,
// and every connection is accounted for.
func TestCapacityRefusalsMixedWithPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(2)
		src := newFakeSource(t)
		srv.serve(src)
		refuse := src.onDial
		var n atomic.Int64
		src.onDial = func(ctx context.Context) error {
			if n.Add(1)%3 == 0 {
				panic("driver bug")
			}
			return refuse(ctx)
		}
		cfg := testConfig(5)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		stop := make(chan struct{})
		served, errs := load(p, 8, 5*time.Millisecond, stop)
		time.Sleep(3 * time.Second)
		close(stop)
		for _, err := range errs() {
			var pe *pool.PanicError
			if !errors.As(err, &pe) && !errors.Is(err, pool.ErrAcquireTimeout) {
				t.Errorf("unexpected error: %v", err)
			}
		}
		assert.Positive(t, served.Load())
		assert.LessOrEqual(t, srv.maxUsed.Load(), int64(2))
		require.NoError(t, p.CheckAccounting())
		require.NoError(t, p.Close())
		src.checkAllClosedOnce(t)
		assert.Zero(t, srv.used.Load())
	})
}

// Two replicas, each with a budget that believes it owns the server's
// four connections and three callers that want three, replace their
// connections as they expire. A dial
// below the ceiling that succeeds (a replacement) says nothing of room
// above it, so it does not bring the next probe forward: each replica's
// probes stay at about one per pause at its cap, and both are served.
func TestReplicasContendingForAServerProbeSlowly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(4)
		var stops []chan struct{}
		var allErrs []func() []error
		var budgets []*pool.Budget
		var served []*atomic.Int64
		for i := range 2 {
			b := newTestBudget(t, 4)
			budgets = append(budgets, b)
			src := newFakeSource(t)
			srv.serve(src)
			cfg := budgetConfig(b, fmt.Sprint("replica", i), 4)
			cfg.MaxLifetime = 200 * time.Millisecond
			cfg.AcquireTimeout = 5 * time.Second
			p := newTestPool(t, src, cfg)
			stop := make(chan struct{})
			stops = append(stops, stop)
			n, errs := load(p, 3, 10*time.Millisecond, stop)
			served = append(served, n)
			allErrs = append(allErrs, errs)
		}
		const run = 10 * time.Second
		time.Sleep(run)
		for _, stop := range stops {
			close(stop)
		}
		for i, errs := range allErrs {
			assert.Empty(t, errs(), "replica%d", i)
			assert.Positive(t, served[i].Load(), "replica%d starved", i)
		}
		assert.LessOrEqual(t, srv.maxUsed.Load(), int64(4))
		for i, b := range budgets {
			// At most one probe per 250 ms (the cap's shortest, with
			// jitter) is 40 in 10 s; refusals of replacements come on top.
			r := b.Stats().Refused
			t.Logf("replica%d: %d refused dials in %v", i, r, run)
			assert.LessOrEqual(t, r, int64(60), "replica%d: %d refused dials in %v", i, r, run)
		}
	})
}

// A replica that gives back idle connections while the server is full
// takes them again only by probing: its ceiling follows what it closes
// down, so that at its next burst it does not dial at once every slot it
// gave up (which another replica, short of its share, may have taken or
// be probing for).
func TestAReplicaThatGivesBackIdleSlotsRetakesThemOnlyByProbing(t *testing.T) {
	for _, onBudget := range []bool{true, false} {
		name := "budget"
		if !onBudget {
			name = "pool"
		}
		t.Run(name, func(t *testing.T) { givesBackIdleSlots(t, onBudget) })
	}
}

// givesBackIdleSlots runs the test above on a pool on a budget of 8 (the
// budget's ceiling), or on a pool of 8 alone (its own).
func givesBackIdleSlots(t *testing.T, onBudget bool) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(4)
		src := newFakeSource(t)
		srv.serve(src)
		var dials atomic.Int64
		srv.dialAt = func() { dials.Add(1) }
		cfg := testConfig(8) // it believes it may open 8
		ceiling := func() int { return 0 }
		if onBudget {
			budget := newTestBudget(t, 8)
			cfg = budgetConfig(budget, "a", 8)
			ceiling = func() int { return budget.Stats().Ceiling }
		}
		cfg.MaxIdleTime, cfg.ReapInterval = 50*time.Millisecond, 10*time.Millisecond
		cfg.DialBackoff, cfg.DialBackoffMax = 0, 0 // the capacity pauses, as on a budget
		p := newTestPool(t, src, cfg)
		if !onBudget {
			ceiling = func() int { return p.Stats().Ceiling }
		}

		// Busy, it takes what the server has and is refused above it.
		stop := make(chan struct{})
		_, errs := load(p, 6, 10*time.Millisecond, stop)
		time.Sleep(time.Second)
		require.Equal(t, 4, p.Stats().Total)
		require.Equal(t, 4, ceiling())
		close(stop)
		require.Empty(t, errs())

		// Idle, it closes them, and the ceiling goes down with them.
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, 0, p.Stats().Total)
		assert.Equal(t, 0, ceiling(), "the ceiling stayed above what the pool gave back")

		// Its next burst dials one probe at a time, not four at once.
		before := dials.Load()
		stop = make(chan struct{})
		_, errs = load(p, 6, 10*time.Millisecond, stop)
		synctest.Wait()
		assert.LessOrEqual(t, dials.Load()-before, int64(1), "dials at the burst's first instant")
		time.Sleep(2 * time.Second)
		assert.Equal(t, 4, p.Stats().Total, "the probes took back what the server has")
		close(stop)
		require.Empty(t, errs())
		assert.LessOrEqual(t, srv.maxUsed.Load(), int64(4))
		require.NoError(t, p.CheckAccounting())
	})
}
