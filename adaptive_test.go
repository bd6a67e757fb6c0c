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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runFor runs workers goroutines for d, each looping: acquire, hold for
// hold, release, then pause for think. It returns the loans served and
// fails the test on any error.
func runFor(t *testing.T, p *pool.Pool[*fakeConn], workers int, d, hold, think time.Duration) int64 {
	t.Helper()
	var served atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(end) {
				err := p.With(bg, func(*fakeConn) error {
					time.Sleep(hold)
					return nil
				})
				if err != nil {
					t.Errorf("With: %v", err)
					return
				}
				served.Add(1)
				time.Sleep(think)
			}
		})
	}
	wg.Wait()
	return served.Load()
}

// After a burst, a quiet Adaptive pool closes what its demand no longer
// needs within seconds, although MaxIdleTime is ten minutes; a pool
// without Adaptive keeps every connection.
func TestAdaptiveHandsBackWhatDemandNoLongerNeeds(t *testing.T) {
	for _, adaptive := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			src := newFakeSource(t)
			cfg := testConfig(20)
			cfg.MinSize = 2
			cfg.MaxIdleTime = 10 * time.Minute
			cfg.ReapInterval = time.Second
			cfg.Adaptive = adaptive
			p := newTestPool(t, src, cfg)

			runFor(t, p, 20, 2*time.Second, 50*time.Millisecond, 0)
			assert.Equal(t, 20, p.Stats().Total)
			// Quiet: one caller, a 10 ms loan every 100 ms (0.1 connections).
			runFor(t, p, 1, 5*time.Second, 10*time.Millisecond, 90*time.Millisecond)
			s := p.Stats()
			if !adaptive {
				assert.Equal(t, 20, s.Total, "connections closed without Adaptive")
				assert.Zero(t, s.Target)
				assert.Zero(t, s.MeanHold)
				return
			}
			assert.LessOrEqual(t, s.Total, 3, "a quiet Adaptive pool kept %d connections", s.Total)
			assert.GreaterOrEqual(t, s.Total, cfg.MinSize)
			assert.GreaterOrEqual(t, s.ClosedIdle, int64(17))
			assert.LessOrEqual(t, s.Target, 3)
			// The mean follows the 10 ms loans, with the burst's 50 ms
			// fading out of its last seconds.
			assert.GreaterOrEqual(t, s.MeanHold, 10*time.Millisecond)
			assert.Less(t, s.MeanHold, 20*time.Millisecond)
			require.NoError(t, p.CheckAccounting())
		})
	}
}

// Under steady demand, an Adaptive pool keeps what the demand needs plus
// its headroom: it neither closes connections that are needed a moment
// later (which would redial them in a loop) nor waits for them.
func TestAdaptiveKeepsWhatSteadyDemandNeeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(20)
		cfg.MinSize = 0
		cfg.Adaptive = true
		p := newTestPool(t, src, cfg)
		// 8 callers, each busy 10 ms of every 20: 4 connections' worth.
		runFor(t, p, 8, 10*time.Second, 10*time.Millisecond, 10*time.Millisecond)
		s := p.Stats()
		assert.InDelta(t, 6, s.Target, 1, "4 connections of demand, plus a quarter and one")
		assert.LessOrEqual(t, s.Created, int64(16), "dialled %d connections for a steady load of 4: closing what is needed", s.Created)
		assert.GreaterOrEqual(t, s.Total, 4)
	})
}

// An Adaptive pool closes nothing while callers wait, and never goes below
// MinSize.
func TestAdaptiveNeverShrinksUnderWaitersOrBelowMinSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(4)
		cfg.MinSize = 3
		cfg.Adaptive = true
		p := newTestPool(t, src, cfg)
		// Twice as many callers as connections, each holding 100 ms.
		runFor(t, p, 8, 3*time.Second, 100*time.Millisecond, 0)
		s := p.Stats()
		assert.EqualValues(t, 4, s.Created, "closed and redialled while callers waited")
		assert.Zero(t, s.ClosedIdle)
		time.Sleep(10 * time.Second) // idle, far past the grace
		s = p.Stats()
		assert.Equal(t, 3, s.Total, "Adaptive went below MinSize or kept more")
	})
}

// With ShedHopeless, a caller whose deadline will pass before its turn
// fails at once with an error that wraps context.DeadlineExceeded; one
// with time enough queues and is served.
func TestShedHopelessFailsAtOnceAndServesTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.ShedHopeless = true
		cfg.AcquireTimeout = time.Minute
		p := newTestPool(t, src, cfg)
		runFor(t, p, 2, time.Second, 100*time.Millisecond, 0) // mean hold: 100 ms
		assert.InDelta(t, 100*time.Millisecond, p.Stats().MeanHold, float64(5*time.Millisecond))

		a, err := p.Acquire(bg)
		require.NoError(t, err)
		b, err := p.Acquire(bg)
		require.NoError(t, err)
		// Four wait: their turns come at about 50, 100, 150 and 200 ms.
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				require.NoError(t, p.With(bg, func(*fakeConn) error { time.Sleep(100 * time.Millisecond); return nil }))
			})
		}
		synctest.Wait()

		ctx, cancel := context.WithTimeout(bg, 150*time.Millisecond) // turn at about 250 ms
		defer cancel()
		start := time.Now()
		_, err = p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Zero(t, time.Since(start), "a hopeless caller waited")
		assert.Contains(t, err.Error(), "ShedHopeless")
		assert.EqualValues(t, 1, p.Stats().Shed)

		// AcquireTimeout is a deadline too.
		ctx2, cancel2 := context.WithTimeout(bg, time.Second) // time enough
		defer cancel2()
		done := make(chan error, 1)
		go func() {
			pc, err := p.Acquire(ctx2)
			if err == nil {
				pc.Release()
			}
			done <- err
		}()
		synctest.Wait()
		requireNotDone(t, done, "a caller with time enough was not queued")
		a.Release()
		b.Release()
		wg.Wait()
		require.NoError(t, <-done)
		assert.EqualValues(t, 1, p.Stats().Shed)
	})
}

// stormGoodput runs 64 callers, each request with a 50 ms deadline, for
// 5 s against a pool of 4 whose loans take 10 ms of work: a request that
// gets its connection with less than 10 ms left runs out of time in its
// query, a wasted loan. It returns the requests that succeeded.
func stormGoodput(t *testing.T, shed bool) (good int64, s pool.Stats) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(4)
		cfg.ShedHopeless = shed
		p := newTestPool(t, src, cfg)
		var ok atomic.Int64
		var wg sync.WaitGroup
		end := time.Now().Add(5 * time.Second)
		for range 64 {
			wg.Go(func() {
				for time.Now().Before(end) {
					ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
					err := p.With(ctx, func(*fakeConn) error {
						dl, _ := ctx.Deadline()
						if left := time.Until(dl); left < 10*time.Millisecond {
							time.Sleep(left) // the query runs out of time
							return context.DeadlineExceeded
						}
						time.Sleep(10 * time.Millisecond)
						return nil
					})
					cancel()
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, context.DeadlineExceeded):
						time.Sleep(time.Millisecond) // the client's pause before it retries
					default:
						t.Errorf("With: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		good, s = ok.Load(), p.Stats()
	})
	return good, s
}

// In a timeout storm, ShedHopeless keeps goodput at 90 % of capacity or
// more: the pool's connections serve callers who have time to finish.
func TestShedHopelessKeepsGoodputInATimeoutStorm(t *testing.T) {
	const capacity = 4 * 5000 / 10 // 4 connections, 5 s, 10 ms a request
	with, ws := stormGoodput(t, true)
	without, _ := stormGoodput(t, false)
	t.Logf("goodput of %d: %d with ShedHopeless (%d shed), %d without", capacity, with, ws.Shed, without)
	assert.GreaterOrEqual(t, with, int64(capacity*9/10), "goodput below 90 %% of capacity")
	assert.Positive(t, ws.Shed)
	assert.Greater(t, with, without, "shedding did not help")
}
