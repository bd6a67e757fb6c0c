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

// A server back 50 ms after it went down (a failover, a restart) is used
// within 20 ms, and no caller who asked after it came back fails:
// each waits for the probe that is due instead of failing with the error
// of a dial made before.
func TestNoCallerFailsOnceTheSourceIsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		down := errors.New("the database system is shutting down")
		src.failDials(down)
		cfg := testConfig(4)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		start := time.Now()
		var back atomic.Int64 // when the source came back, since start; 0 before
		time.AfterFunc(50*time.Millisecond, func() {
			back.Store(int64(time.Since(start)))
			src.failDials(nil)
		})
		var failedAfter, failedBefore, served atomic.Int64
		var firstServed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for time.Since(start) < 200*time.Millisecond {
					asked := time.Since(start)
					cameBack := back.Load() != 0
					pc, err := p.Acquire(bg)
					switch {
					case err == nil:
						served.Add(1)
						firstServed.CompareAndSwap(0, int64(time.Since(start)))
						time.Sleep(time.Millisecond)
						pc.Release()
					case cameBack:
						if failedAfter.Add(1) == 1 {
							t.Errorf("a caller who asked at %v, after the source came back, failed: %v", asked, err)
						}
						time.Sleep(time.Millisecond)
					default:
						require.ErrorIs(t, err, down)
						failedBefore.Add(1)
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		assert.Zero(t, failedAfter.Load())
		assert.Positive(t, failedBefore.Load(), "no caller failed while the source was down")
		assert.Positive(t, served.Load())
		used := time.Duration(firstServed.Load()) - time.Duration(back.Load())
		assert.LessOrEqual(t, used, 20*time.Millisecond, "the source was back for %v before a caller was served", used)
		t.Logf("first served %v after the source came back; %d failed while down, %d served", used, failedBefore.Load(), served.Load())
	})
}

// A source whose dials fail with ErrNotReady (a standby where a primary is
// asked for, a server starting up) is in a failover: it is probed every
// 20 ms (jittered) for up to 10 s, and callers wait for the next probe,
// so that none who asks once it is back fails, and the first is served
// within a probe's pause. Past 10 s it backs off as any down source.
func TestNotReadySourceIsProbedThroughAFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		standby := fmt.Errorf("read only connection: %w", pool.ErrNotReady)
		src.failDials(standby)
		cfg := testConfig(4)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		start := time.Now()
		var back atomic.Int64
		time.AfterFunc(time.Second, func() {
			back.Store(int64(time.Since(start)))
			src.failDials(nil)
		})
		var failedAfter, failedBefore, firstServed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for time.Since(start) < 1200*time.Millisecond {
					cameBack := back.Load() != 0
					pc, err := p.Acquire(bg)
					switch {
					case err == nil:
						firstServed.CompareAndSwap(0, int64(time.Since(start)))
						time.Sleep(time.Millisecond)
						pc.Release()
					case cameBack:
						if failedAfter.Add(1) == 1 {
							t.Errorf("a caller who asked after the source came back failed: %v", err)
						}
						time.Sleep(time.Millisecond)
					default:
						require.ErrorIs(t, err, pool.ErrNotReady)
						failedBefore.Add(1)
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		assert.Zero(t, failedAfter.Load())
		assert.Positive(t, failedBefore.Load())
		used := time.Duration(firstServed.Load() - back.Load())
		assert.LessOrEqual(t, used, 20*time.Millisecond, "the source was back for %v before a caller was served", used)
		// A probe every 10 to 20 ms for the second it was down.
		dials := src.dials.Load()
		assert.GreaterOrEqual(t, dials, int64(45), "too few probes while not ready")
		assert.LessOrEqual(t, dials, int64(110), "more than one probe at a time")
		t.Logf("first served %v after the source came back; %d dials in 1 s not ready; %d callers failed before", used, dials, failedBefore.Load())

		// Not ready for longer than 10 s: the pool backs off, and callers
		// fail fast.
		src.failDials(standby)
		q := newTestPool(t, src, cfg)
		downAt := time.Now()
		var at11 int64
		for time.Since(downAt) < 13*time.Second {
			_, _ = q.Acquire(bg)
			time.Sleep(10 * time.Millisecond)
			if at11 == 0 && time.Since(downAt) >= 11*time.Second {
				at11 = src.dials.Load()
			}
		}
		_, err := q.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrNotReady)
		n := src.dials.Load() - at11
		assert.LessOrEqual(t, n, int64(10), "the quick probes went on past 10 s")
		assert.Positive(t, q.Stats().FailedFast, "no caller failed fast past the quick phase")
		t.Logf("%d dials from 11 s to 13 s not ready", n)
	})
}

// A failed probe answers only the callers who asked before it began: one
// who asked while it was in flight waits for the next probe, whose answer
// is newer than its question, and is served when the source is back.
func TestAFailedProbeAnswersOnlyThoseWhoAskedBeforeItBegan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		standby := fmt.Errorf("read only connection: %w", pool.ErrNotReady)
		src.failDials(standby)
		gate := make(chan struct{})
		var hold atomic.Bool
		src.onDial = func(context.Context) error {
			if hold.Load() {
				<-gate // the probe in flight
			}
			return nil
		}
		cfg := testConfig(2)
		cfg.AcquireTimeout = time.Second
		p := newTestPool(t, src, cfg)
		_, err := p.Acquire(bg) // the first failed dial: the source is down
		require.ErrorIs(t, err, pool.ErrNotReady)

		acquire := func(out chan<- error) {
			pc, err := p.Acquire(bg)
			if err == nil {
				pc.Release()
			}
			out <- err
		}
		hold.Store(true)
		early, late := make(chan error, 1), make(chan error, 1)
		go acquire(early) // waits for the probe due within 20 ms
		time.Sleep(25 * time.Millisecond)
		synctest.Wait()
		require.EqualValues(t, 2, src.dials.Load(), "the probe did not start")
		go acquire(late) // asks while that probe is in flight
		synctest.Wait()
		hold.Store(false)
		close(gate) // the probe fails
		synctest.Wait()
		require.ErrorIs(t, <-early, pool.ErrNotReady, "the caller who asked before the probe")
		select {
		case err := <-late:
			t.Fatalf("the caller who asked while the probe was in flight got its answer: %v", err)
		default:
		}
		src.failDials(nil)
		assert.NoError(t, <-late, "the caller who asked during the failed probe was not served by the next one")
	})
}
