package pool_test

// Dial backoff and fail-fast, leak detection, logging and allocation.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// While the source is down, callers fail fast with the last dial error,
// dials back off exponentially (one probe at a time), and the first
// successful dial ends it.
func TestSourceDownFailsFastAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var dialTimes []time.Duration
		start := time.Now()
		var mu sync.Mutex
		src.onDial = func(context.Context) error {
			mu.Lock()
			dialTimes = append(dialTimes, time.Since(start))
			mu.Unlock()
			return nil
		}
		refused := errors.New("connection refused")
		src.failDials(refused)
		cfg := testConfig(4)
		cfg.DialBackoff = 100 * time.Millisecond
		cfg.DialBackoffMax = 800 * time.Millisecond
		p := newTestPool(t, src, cfg)

		_, err := p.Acquire(bg) // the dial made for it fails
		require.ErrorIs(t, err, refused)
		require.ErrorIs(t, err, pool.ErrDial)
		s := p.Stats()
		assert.True(t, s.Down)
		assert.Equal(t, 1, s.DialFailuresInARow)

		// Inside the backoff, 32 callers fail at once, and nothing dials.
		before := src.dials.Load()
		for range 32 {
			t0 := time.Now()
			_, err := p.Acquire(bg)
			require.ErrorIs(t, err, refused)
			assert.Zero(t, time.Since(t0), "a caller waited while the source was down")
		}
		assert.Equal(t, before, src.dials.Load(), "dialled during the backoff")
		assert.EqualValues(t, 32, p.Stats().FailedFast)

		// Keep asking, once per 10 ms, for 10 s: the probes back off to
		// DialBackoffMax, so few dials are made.
		for range 1000 {
			_, _ = p.Acquire(bg)
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		n := len(dialTimes)
		for i := 2; i < n; i++ {
			gap := dialTimes[i] - dialTimes[i-1]
			assert.GreaterOrEqual(t, gap, 50*time.Millisecond, "dial %d came %v after the one before", i, gap)
		}
		mu.Unlock()
		assert.LessOrEqual(t, n, 27, "%d dials in 10 s: no backoff", n) // 10 s over pauses of at least 400 ms, and the first few

		// The source comes back: the next probe succeeds and ends it.
		src.failDials(nil)
		time.Sleep(time.Second) // past the longest backoff
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		s = p.Stats()
		assert.False(t, s.Down)
		assert.Zero(t, s.DialFailuresInARow)
	})
}

// A burst of callers never starts more than MaxConcurrentDials dials at
// once, and while the source is down only one probe is in flight.
func TestConcurrentDialsAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		var inFlight, peak atomic.Int64
		var fail atomic.Bool
		src.onDial = func(context.Context) error {
			n := inFlight.Add(1)
			for {
				m := peak.Load()
				if n <= m || peak.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			inFlight.Add(-1)
			if fail.Load() {
				return errors.New("refused")
			}
			return nil
		}
		cfg := testConfig(20)
		cfg.MaxConcurrentDials = 3
		cfg.DialBackoff = 10 * time.Millisecond
		p := newTestPool(t, src, cfg)
		var wg sync.WaitGroup
		held := make(chan *pool.PooledConn[*fakeConn], 20)
		for range 20 {
			wg.Go(func() {
				pc, err := p.Acquire(bg)
				if assert.NoError(t, err) {
					held <- pc
				}
			})
		}
		wg.Wait()
		close(held)
		for pc := range held {
			pc.Release()
		}
		assert.EqualValues(t, 3, peak.Load(), "dials in flight at once")
		assert.EqualValues(t, 20, p.Stats().Total)

		// Down: a burst sees one probe at a time.
		require.NoError(t, p.Close())
		p = newTestPool(t, src, cfg)
		fail.Store(true)
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrDial)
		require.True(t, p.Stats().Down)
		peak.Store(0)
		for range 20 {
			wg.Go(func() {
				for range 10 {
					_, _ = p.Acquire(bg)
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		assert.EqualValues(t, 1, peak.Load(), "more than one probe at once while down")
		assert.True(t, p.Stats().Down)
		fail.Store(false)
	})
}

// logRecorder is an slog handler that keeps every record's text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	seen  chan string // every message, if set
	onLog func()      // runs in Handle, if set
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b bytes.Buffer
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	if r.seen != nil {
		r.seen <- rec.Message
	}
	if r.onLog != nil {
		r.onLog()
	}
	return nil
}

func (r *logRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// A loan held past LeakThreshold is reported once, with the stack of the
// code that acquired it, and counted; one returned in time is not.
func TestLeakThresholdReportsLongLoansWithTheirStack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &logRecorder{}
		cfg := testConfig(2)
		cfg.LeakThreshold = time.Second
		cfg.Logger = slog.New(rec)
		p := newTestPool(t, newFakeSource(t), cfg)
		quick, err := p.Acquire(bg)
		require.NoError(t, err)
		quick.Release()
		slow, err := p.Acquire(bg)
		require.NoError(t, err)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.EqualValues(t, 1, p.Stats().LeakedLoans)
		log := rec.text()
		assert.Equal(t, 1, strings.Count(log, "held longer than LeakThreshold"), log)
		assert.Contains(t, log, "TestLeakThresholdReportsLongLoansWithTheirStack", "no acquire stack: %s", log)
		assert.Contains(t, log, "resilience_test.go")
		slow.Release()
		require.NoError(t, p.With(bg, func(*fakeConn) error { return nil }))
		time.Sleep(5 * time.Second)
		assert.EqualValues(t, 1, p.Stats().LeakedLoans, "a loan returned in time was reported")
	})
}

// acquireAndDrop takes a loan and drops its handle without Release.
//
//go:noinline
func acquireAndDrop(t *testing.T, p *pool.Pool[*fakeConn]) {
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	_ = pc
}

// A handle dropped without Release is found once the garbage collector
// frees it: its connection is closed, its slot reclaimed, and the drop
// reported with the acquire stack. HikariCP can only warn.
func TestDroppedHandleIsReclaimed(t *testing.T) {
	src := newFakeSource(t)
	rec := &logRecorder{seen: make(chan string, 16)}
	cfg := testConfig(1)
	cfg.LeakThreshold = time.Hour
	cfg.Logger = slog.New(rec)
	p := newTestPool(t, src, cfg)
	acquireAndDrop(t, p)
	require.Equal(t, 1, p.Stats().InUse)
	timeout := time.After(30 * time.Second)
	for reclaimed := false; !reclaimed; {
		runtime.GC()
		select {
		case msg := <-rec.seen:
			reclaimed = strings.Contains(msg, "dropped without Release")
		case <-timeout:
			t.Fatal("dropped handle never reclaimed")
		case <-time.After(10 * time.Millisecond): // poll the GC, not a goroutine
		}
	}
	s := p.Stats()
	assert.EqualValues(t, 1, s.AbandonedLoans)
	assert.Equal(t, 0, s.InUse)
	assert.Contains(t, rec.text(), "acquireAndDrop")
	// The slot is free again: MaxSize 1 lends once more.
	ctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	pc, err := p.Acquire(ctx)
	require.NoError(t, err)
	pc.Release()
	assert.EqualValues(t, 1, src.closes.Load(), "the abandoned connection was not closed")
}

// The logger hears of a source going down and coming back, of panics
// recovered from connectors and of connections closed by force, and is
// silent when unset.
func TestLoggerReportsTheEventsThatMatter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &logRecorder{}
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.Logger = slog.New(rec)
		cfg.ResetTimeout = time.Second
		p := newTestPool(t, src, cfg)
		src.failDials(errors.New("connection refused"))
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrDial)
		src.failDials(nil)
		time.Sleep(time.Second)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		src.onReset = func(_ context.Context, c *fakeConn) error { <-c.closedSig; return errClosedConn }
		pc.Release() // Reset hangs: closed by force at ResetTimeout
		src.onReset = nil
		src.onClose = func(*fakeConn) error { panic("close exploded") }
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.PanicsWithValue(t, "close exploded", pc.Discard)
		log := rec.text()
		for _, want := range []string{
			"WARN pool: source down", "connection refused",
			"INFO pool: source recovered",
			"WARN pool: connection closed by force", "ResetTimeout",
			"ERROR pool: connector panicked", "close exploded",
		} {
			assert.Contains(t, log, want)
		}
	})
}

// plainConn is a connector with neither Reset nor IsValid.
type plainConn struct{}

func (plainConn) Ping(context.Context) error { return nil }
func (plainConn) Close() error               { return nil }

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

// The Logger is user code, so it never runs under the pool lock: a
// handler that calls back into the pool (here Stats, which takes the
// lock) would otherwise deadlock on a source going down and coming back.
func TestLoggerRunsOutsideThePoolLock(t *testing.T) {
	src := newFakeSource(t)
	rec := &logRecorder{}
	cfg := testConfig(1)
	cfg.DialBackoff = time.Millisecond
	cfg.DialBackoffMax = time.Millisecond
	cfg.Logger = slog.New(rec)
	p := newTestPool(t, src, cfg)
	rec.onLog = func() { _ = p.Stats() }
	// Each phase runs in real time, bounded by waitOrFail; the loops only
	// wait out the 1 ms backoff.
	src.failDials(errors.New("connection refused"))
	waitOrFail(t, "an Acquire whose dial failed", func() {
		_, err := p.Acquire(bg)
		assert.ErrorIs(t, err, pool.ErrDial)
	})
	src.failDials(nil)
	src.onValid = func(*fakeConn) bool { return false } // new connections fail their check
	waitOrFail(t, "an Acquire whose new connection failed its check", func() {
		for {
			_, err := p.Acquire(bg)
			if err != nil && strings.Contains(err.Error(), "IsValid") {
				return
			}
		}
	})
	src.onValid = nil
	waitOrFail(t, "an Acquire whose dial recovered the source", func() {
		for {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
				return
			}
		}
	})
	log := rec.text()
	assert.Contains(t, log, "source down")
	assert.Contains(t, log, "source recovered")
}
