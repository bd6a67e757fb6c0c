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
)

// fuzzFaults are the connector's misbehaviours that the fuzz input
// switches on and off.
type fuzzFaults struct {
	dialFail, dialRefuse, dialPanic, pingFail, pingPanic, resetPanic, validPanic, closeSlow, closePanic, noReset atomic.Bool
}

// fuzzModel is what the pool should report, kept by the driver.
type fuzzModel struct {
	held     []*pool.PooledConn[*fakeConn]
	released []*pool.PooledConn[*fakeConn] // stale handles, to misuse
	acquired int64                         // loans that reached the caller
	panics   int64                         // connector panics re-raised to the caller
	last     pool.Stats                    // the previous step's, for the counters
}

// FuzzPool drives a pool with a random sequence of operations decoded from
// the input: Acquire, TryAcquire, With (returning nil, ErrBadConn or
// panicking), Release, Discard, stale Release/Discard/Conn, cancelled and
// timed-out acquires, connectors that fail, hang and panic, reaper steps,
// and finally Close or Shutdown. After every step it checks the pool
// against a model: never more than MaxSize connections alive, each
// state's count equal to the states of the connections open (and lent to
// the loans the model holds, none checking or resetting), Stats equal to
// the model, every counter grown or kept, every stale handle refused;
// MaxSize and MinSize are also changed on the way (never above the
// model's bound). The pool shares a Budget with a neighbour pool, which
// the input also drives (loans taken and ended, the limit changed): the
// two never hold more than the limit alive, but what was already open
// when SetLimit lowered it, and the budget's books match the pools'. Some
// acquires carry a priority. At the end every connection must have been
// closed exactly once and (by synctest) no goroutine may be left.
func FuzzPool(f *testing.F) {
	f.Add([]byte{0, 0, 2, 4, 1, 3, 5, 6, 7, 8, 0, 9, 0, 12, 2})
	f.Add([]byte{0, 0, 0, 0, 7, 2, 2, 4, 4, 10, 11, 0, 13})
	f.Add([]byte{8, 0, 0, 11, 11, 8, 0, 9, 10, 0, 2, 14, 0, 2, 15})
	f.Add([]byte{5, 5, 16, 5, 17, 5, 18, 0, 2, 19, 3, 11, 20, 0, 0, 21})
	f.Add([]byte{0, 1, 0, 1, 0, 1, 0, 1, 22, 2, 2, 2, 2, 4, 4})
	f.Add([]byte{14, 0, 15, 2, 16, 0, 2, 17, 0, 2, 18, 0, 3, 19, 11, 11, 20, 0, 23})
	f.Add([]byte{0, 0, 0, 24, 2, 0, 54, 2, 2, 25, 85, 0, 24, 9, 2, 11, 114, 0, 1, 21})
	f.Add([]byte{26, 26, 0, 0, 26, 28, 0, 27, 2, 58, 29, 0, 59, 27, 26, 2, 88, 0, 0, 11, 27, 27, 2})
	f.Add([]byte{0, 0, 40, 0, 0, 0, 11, 2, 0, 26, 26, 9, 11, 40, 0, 2, 0, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		synctest.Test(t, func(t *testing.T) { runFuzzOps(t, ops, true, false) })
	})
}

var errFuzzPanic = errors.New("fuzz: connector panicked")

func runFuzzOps(t *testing.T, ops []byte, budgeted, parking bool) {
	const maxSize = 3
	var faults fuzzFaults
	var (
		mu         sync.Mutex
		closeCalls = map[*fakeConn]int{}
		alive      int
		maxAlive   int
		// neighbourAlive counts the neighbour pool's connections alive,
		// stepMax the most alive in both pools at once in one step.
		neighbourAlive, stepMax int
		// dialling counts the main pool's dials in flight.
		dialling int
	)
	// onBudget is what of the main pool's n connections the budget
	// counts: all of them, or none when the pool is off it.
	onBudget := func(n int) int {
		if budgeted {
			return n
		}
		return 0
	}
	src := newFakeSource(t)
	src.onDial = func(ctx context.Context) error {
		// A dial holds its budget slot from the start: the model counts
		// it in flight until it has succeeded or failed.
		mu.Lock()
		dialling++
		mu.Unlock()
		defer func() { mu.Lock(); dialling--; mu.Unlock() }()
		time.Sleep(time.Millisecond)
		if faults.dialPanic.Load() {
			panic(errFuzzPanic)
		}
		if faults.dialFail.Load() {
			return errors.New("connection refused")
		}
		if faults.dialRefuse.Load() {
			return errTooManyClients
		}
		mu.Lock()
		alive++
		maxAlive = max(maxAlive, alive)
		stepMax = max(stepMax, onBudget(alive)+neighbourAlive)
		mu.Unlock()
		return nil
	}
	src.onPing = func(ctx context.Context, _ *fakeConn) error {
		if faults.pingPanic.Load() {
			panic(errFuzzPanic)
		}
		if faults.pingFail.Load() {
			return errors.New("broken pipe")
		}
		return nil
	}
	// With parking, releases start without Reset, so that they park.
	faults.noReset.Store(parking)
	src.onNeedsReset = func(*fakeConn) bool { return !faults.noReset.Load() }
	src.onReset = func(context.Context, *fakeConn) error {
		if faults.resetPanic.Load() {
			panic(errFuzzPanic)
		}
		return nil
	}
	src.onValid = func(*fakeConn) bool {
		if faults.validPanic.Load() {
			panic(errFuzzPanic)
		}
		return true
	}
	src.onClose = func(c *fakeConn) error {
		mu.Lock()
		closeCalls[c]++
		alive--
		mu.Unlock()
		if faults.closeSlow.Load() {
			time.Sleep(time.Second) // longer than any timeout here
		}
		if faults.closePanic.Load() {
			panic(errFuzzPanic)
		}
		return nil
	}
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 1, maxSize
	cfg.AcquireTimeout = 50 * time.Millisecond
	cfg.PingAfterIdle = 10 * time.Millisecond
	cfg.MaxIdleTime = 100 * time.Millisecond
	cfg.MaxLifetime = time.Second
	cfg.ReapInterval = 20 * time.Millisecond
	cfg.ResetTimeout = 100 * time.Millisecond
	cfg.DialBackoff = 5 * time.Millisecond
	cfg.DialBackoffMax = 40 * time.Millisecond
	budget, err := pool.NewBudget(4)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "main"
	if budgeted {
		cfg.Budget = budget
	}
	p, err := pool.New(src.factory(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The neighbour shares the budget; its connections are counted in
	// neighbourAlive.
	limit := 4
	limitBound := limit
	nsrc := newFakeSource(t)
	nsrc.onDial = func(context.Context) error {
		mu.Lock()
		neighbourAlive++
		stepMax = max(stepMax, onBudget(alive)+neighbourAlive)
		mu.Unlock()
		return nil
	}
	nsrc.onClose = func(*fakeConn) error { mu.Lock(); neighbourAlive--; mu.Unlock(); return nil }
	ncfg := testConfig(maxSize)
	ncfg.Budget, ncfg.Name = budget, "neighbour"
	neighbour, err := pool.New(nsrc.factory(), ncfg)
	if err != nil {
		t.Fatal(err)
	}
	var neighbourHeld []*pool.PooledConn[*fakeConn]
	var m fuzzModel

	// try runs a call that may re-raise a connector's panic.
	try := func(f func()) {
		defer func() {
			switch v := recover(); v {
			case nil:
			case errFuzzPanic:
				m.panics++
			default:
				panic(v)
			}
		}()
		f()
	}
	acquired := func(pc *pool.PooledConn[*fakeConn], err error) {
		if err == nil {
			m.acquired++
			m.held = append(m.held, pc)
			return
		}
		if errors.Is(err, pool.ErrCapacity) && !errors.Is(err, pool.ErrAcquireTimeout) {
			t.Fatalf("a refusal for capacity failed a caller: %v", err)
		}
		if !errors.Is(err, pool.ErrAcquireTimeout) && !errors.Is(err, pool.ErrDial) &&
			!errors.Is(err, pool.ErrPoolExhausted) && !errors.Is(err, context.Canceled) &&
			!errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unexpected acquire error: %v", err)
		}
	}
	end := func(discard bool) {
		if len(m.held) == 0 {
			return
		}
		pc := m.held[0]
		m.held = m.held[1:]
		m.released = append(m.released, pc)
		if discard {
			try(pc.Discard)
		} else {
			try(pc.Release)
		}
	}
	closed := false
	for step, op := range ops {
		mu.Lock()
		stepMax = alive + neighbourAlive
		if !budgeted {
			stepMax = neighbourAlive
		}
		mu.Unlock()
		switch op % 30 {
		case 0:
			try(func() { acquired(p.Acquire(bg)) })
		case 1:
			try(func() { acquired(p.TryAcquire(bg)) })
		case 2:
			end(false)
		case 3:
			end(true)
		case 4: // a stale handle: every use must panic and change nothing
			if len(m.released) > 0 {
				pc := m.released[len(m.released)-1]
				for _, misuse := range []func(){pc.Release, pc.Discard, func() { pc.Conn() }} {
					func() {
						defer func() {
							if recover() == nil {
								t.Fatal("stale handle accepted")
							}
						}()
						misuse()
					}()
				}
			}
		case 5, 6, 7: // With: fn returns nil, ErrBadConn, or panics
			try(func() {
				defer func() {
					if v := recover(); v != nil && v != errHandlerBug {
						panic(v)
					}
				}()
				err := p.With(bg, func(c *fakeConn) error {
					m.acquired++
					switch op % 26 {
					case 6:
						return pool.ErrBadConn
					case 7:
						panic(errHandlerBug)
					}
					return nil
				})
				if err != nil && !errors.Is(err, pool.ErrBadConn) {
					acquired(nil, err)
				}
			})
		case 8: // a caller whose ctx is already done
			ctx, cancel := context.WithCancel(bg)
			cancel()
			try(func() { acquired(p.Acquire(ctx)) })
		case 9: // a caller whose deadline ends while it waits or checks
			ctx, cancel := context.WithTimeout(bg, 3*time.Millisecond)
			try(func() { acquired(p.Acquire(ctx)) })
			cancel()
		case 10: // the source goes down, or (op/30 odd) refuses for capacity
			if op/30%2 == 1 {
				faults.dialRefuse.Store(!faults.dialRefuse.Load())
			} else {
				faults.dialFail.Store(!faults.dialFail.Load())
			}
		case 11:
			time.Sleep(25 * time.Millisecond) // the reaper runs; backoff ends
		case 12:
			faults.pingFail.Store(!faults.pingFail.Load())
		case 13: // the connections are dropped while loans are out
			p.Reset()
		case 14:
			faults.pingPanic.Store(!faults.pingPanic.Load())
		case 15:
			if op/30%2 == 1 {
				faults.noReset.Store(!faults.noReset.Load())
			} else {
				faults.resetPanic.Store(!faults.resetPanic.Load())
			}
		case 16:
			faults.validPanic.Store(!faults.validPanic.Load())
		case 17:
			faults.closeSlow.Store(!faults.closeSlow.Load())
		case 18:
			faults.closePanic.Store(!faults.closePanic.Load())
		case 19:
			faults.dialPanic.Store(!faults.dialPanic.Load())
		case 20:
			time.Sleep(200 * time.Millisecond) // idle connections expire
		case 24: // resize while loans are out, within the model's bound
			if err := p.SetMaxSize(1 + int(op/30)%maxSize); err != nil {
				t.Fatalf("SetMaxSize: %v", err)
			}
		case 25:
			if err := p.SetMinSize(int(op/30) % 2); err != nil && !errors.Is(err, pool.ErrInvalidConfig) {
				t.Fatalf("SetMinSize: %v", err)
			}
		case 26: // the neighbour takes a loan, waiting a little at most
			ctx, cancel := context.WithTimeout(bg, 5*time.Millisecond)
			if pc, err := neighbour.Acquire(ctx); err == nil {
				neighbourHeld = append(neighbourHeld, pc)
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("neighbour Acquire: %v", err)
			}
			cancel()
		case 27:
			if len(neighbourHeld) > 0 {
				neighbourHeld[0].Release()
				neighbourHeld = neighbourHeld[1:]
			}
		case 28: // the limit changes, below what is open too
			n := 2 + int(op/30)%4
			open := budget.Stats().Open
			if err := budget.SetLimit(n); err != nil {
				t.Fatalf("SetLimit(%d): %v", n, err)
			}
			limit, limitBound = n, max(n, open)
		case 29: // an acquire with a priority
			prio := pool.Priority(int(op/30)%3 - 1)
			ctx, cancel := context.WithTimeout(pool.WithPriority(bg, prio), 5*time.Millisecond)
			try(func() { acquired(p.Acquire(ctx)) })
			cancel()
		case 21, 22, 23:
			if op%26 == 13 || op%26 == 21 {
				_ = p.Close()
			} else {
				ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
				_ = p.Shutdown(ctx)
				cancel()
			}
			closed = true
		}
		synctest.Wait()
		checkFuzzModel(t, p, &m, maxSize)
		mu.Lock()
		if maxAlive > maxSize {
			t.Fatalf("%d connections alive at once, MaxSize %d", maxAlive, maxSize)
		}
		if stepMax > limitBound {
			t.Fatalf("step %d (op %d): %d connections alive at once on a budget of %d (bound %d); budget %+v", step, op%30, stepMax, limit, limitBound, budget.Stats())
		}
		total := alive + dialling + neighbourAlive
		if !budgeted {
			total = neighbourAlive
		}
		mu.Unlock()
		if total <= limit {
			limitBound = limit
		}
		if budgeted {
			checkBudgetBooks(t, budget, p, neighbour)
		} else {
			checkBudgetBooks(t, budget, neighbour)
		}
		if closed {
			break
		}
	}
	// End every loan and close the pool; every connection must then be
	// closed exactly once.
	for len(m.held) > 0 {
		end(false)
	}
	faults.closeSlow.Store(false)
	_ = p.Close()
	for _, pc := range neighbourHeld {
		pc.Release()
	}
	_ = neighbour.Close()
	time.Sleep(2 * time.Second) // closes that were hanging finish
	synctest.Wait()
	s := p.Stats()
	if s.Total != 0 {
		t.Fatalf("%d connections open after Close: %+v", s.Total, s)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range src.all() {
		if n := closeCalls[c]; n != 1 {
			t.Fatalf("%v: Close called %d times, want 1", c, n)
		}
	}
	if s.AcquireCount != m.acquired {
		t.Fatalf("AcquireCount %d, model %d", s.AcquireCount, m.acquired)
	}
}

// checkBudgetBooks fails the test unless the budget counts, for each
// pool, the connections the pool has open; between steps no slot is in
// transit.
func checkBudgetBooks(t *testing.T, b *pool.Budget, pools ...*pool.Pool[*fakeConn]) {
	t.Helper()
	s := b.Stats()
	open := map[string]int{}
	for _, ps := range s.Pools {
		open[ps.Name] = ps.Open
	}
	sum, dialing := 0, 0
	for _, p := range pools {
		ps := p.Stats()
		name, total := p.Config().Name, ps.Total
		sum += total
		dialing += ps.Dialing
		if open[name] != total {
			t.Fatalf("budget counts %d open for pool %s, which has %d", open[name], name, total)
		}
	}
	if s.Open != sum {
		t.Fatalf("budget counts %d open, its pools %d: %+v", s.Open, sum, s)
	}
	if s.Dialing != dialing {
		t.Fatalf("budget counts %d dials in flight, its pools %d: %+v", s.Dialing, dialing, s)
	}
}

func checkFuzzModel(t *testing.T, p *pool.Pool[*fakeConn], m *fuzzModel, maxSize int) {
	t.Helper()
	if err := p.CheckAccounting(); err != nil {
		t.Fatal(err)
	}
	s := p.Stats()
	switch {
	case s.Total > maxSize:
		t.Fatalf("Total %d > MaxSize %d", s.Total, maxSize)
	case s.InUse != len(m.held):
		t.Fatalf("InUse %d, model holds %d", s.InUse, len(m.held))
	case s.AcquireCount != m.acquired:
		t.Fatalf("AcquireCount %d, model %d", s.AcquireCount, m.acquired)
	case s.Waiting != 0:
		t.Fatalf("%d waiting with no caller left", s.Waiting)
	case s.PanicsRecovered < m.panics:
		t.Fatalf("PanicsRecovered %d < %d re-raised", s.PanicsRecovered, m.panics)
	}
	// Between steps no caller is in the middle of a check or a release:
	// every connection in callers' hands is one the model holds.
	states := p.States()
	if states["lent"] != len(m.held) || states["checking"] != 0 || states["resetting"] != 0 {
		t.Fatalf("states %v, model holds %d", states, len(m.held))
	}
	if states["idle"]+states["parked"] != s.Idle || states["dialling"] != s.Dialing || states["closing"] != s.Closing {
		t.Fatalf("states %v disagree with %+v", states, s)
	}
	// Every counter only grows.
	for _, c := range []struct {
		name    string
		was, is int64
	}{
		{"AcquireCount", m.last.AcquireCount, s.AcquireCount},
		{"WaitCount", m.last.WaitCount, s.WaitCount},
		{"WaitDuration", int64(m.last.WaitDuration), int64(s.WaitDuration)},
		{"CanceledAcquires", m.last.CanceledAcquires, s.CanceledAcquires},
		{"TimedOutAcquires", m.last.TimedOutAcquires, s.TimedOutAcquires},
		{"FailedFast", m.last.FailedFast, s.FailedFast},
		{"Created", m.last.Created, s.Created},
		{"DialErrors", m.last.DialErrors, s.DialErrors},
		{"ClosedIdle", m.last.ClosedIdle, s.ClosedIdle},
		{"ClosedLifetime", m.last.ClosedLifetime, s.ClosedLifetime},
		{"ClosedBroken", m.last.ClosedBroken, s.ClosedBroken},
		{"ClosedPool", m.last.ClosedPool, s.ClosedPool},
		{"LeakedLoans", m.last.LeakedLoans, s.LeakedLoans},
		{"AbandonedLoans", m.last.AbandonedLoans, s.AbandonedLoans},
		{"PanicsRecovered", m.last.PanicsRecovered, s.PanicsRecovered},
	} {
		if c.is < c.was {
			t.Fatalf("%s went back from %d to %d", c.name, c.was, c.is)
		}
	}
	m.last = s
	for _, pc := range m.held {
		pc.Conn() // panics if the model's loan was ended behind its back
	}
}
