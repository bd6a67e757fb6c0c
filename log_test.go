package pool_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

// Every log line of a pool made by a Manager or registry names its source
// (source=<id>), so that with two sources on one server an operator can
// tell which one went down; a pool made with New is named by Config.Name.
// Before, "source down", "source recovered", leak and panic lines named
// none.
func TestLogLinesNameTheSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &logRecorder{}
		cfg := testConfig(1)
		cfg.Logger = slog.New(rec)
		cfg.LeakThreshold = time.Minute
		cfg.Name = "ignored: a registry names its pools"
		reg := pool.NewRegistry[*fakeConn]()
		defer reg.Close()
		a, b := newFakeSource(t), newFakeSource(t)
		require.NoError(t, reg.Register(bg, "tenant-a", a.factory(), cfg))
		require.NoError(t, reg.Register(bg, "tenant-b", b.factory(), cfg))

		a.failDials(errors.New("connection refused"))
		err := reg.With(bg, "tenant-a", func(*fakeConn) error { return nil })
		require.ErrorIs(t, err, pool.ErrDial)
		time.Sleep(time.Second)
		a.failDials(nil)
		require.NoError(t, reg.With(bg, "tenant-a", func(*fakeConn) error { return nil }))

		pc, err := reg.Get(bg, "tenant-b")
		require.NoError(t, err)
		time.Sleep(2 * time.Minute) // past LeakThreshold
		require.NoError(t, reg.Release("tenant-b", pc))
		b.onValid = func(*fakeConn) bool { panic("IsValid exploded") }
		assert.Panics(t, func() { _ = reg.With(bg, "tenant-b", func(*fakeConn) error { return nil }) })

		lines := rec.records()
		for _, want := range []struct{ msg, source string }{
			{"pool: source down", "tenant-a"},
			{"pool: source recovered", "tenant-a"},
			{"pool: connection held longer than LeakThreshold", "tenant-b"},
			{"pool: connector panicked", "tenant-b"},
		} {
			found := false
			for _, l := range lines {
				if strings.Contains(l, want.msg) {
					found = true
					assert.Contains(t, l, " source="+want.source, "line %q", l)
				}
			}
			assert.True(t, found, "no %q line in:\n%s", want.msg, rec.text())
		}

		// A pool made with New is named by Config.Name.
		cfg.Name = "reports"
		src := newFakeSource(t)
		src.failDials(errors.New("connection refused"))
		p := newTestPool(t, src, cfg)
		_, err = p.Acquire(bg)
		require.Error(t, err)
		synctest.Wait() // the dial goroutine logs after it has answered the caller
		assert.Contains(t, rec.text(), "source down: dial failed; failing fast and backing off error=pool: dial failed: connection refused source=reports")
	})
}
