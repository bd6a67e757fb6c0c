package pool_test

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
		assert.Contains(t, log, "leak_test.go")
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
