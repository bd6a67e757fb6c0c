package pool_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two acquire sites of their own, so that the summary can tell them apart.
func holdFromReports(t *testing.T, p *pool.Pool[*fakeConn]) *pool.PooledConn[*fakeConn] {
	t.Helper()
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	return pc
}

func holdFromExport(t *testing.T, p *pool.Pool[*fakeConn]) *pool.PooledConn[*fakeConn] {
	t.Helper()
	pc, err := p.Acquire(bg)
	require.NoError(t, err)
	return pc
}

// A timed-out Acquire on a full pool says who holds its connections: how
// many are in use, the longest loans, and with LeakThreshold the sites
// that acquired them, most loans first, with their counts.
func TestExhaustedAcquireNamesTheHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(3)
		cfg.AcquireTimeout = 100 * time.Millisecond
		cfg.LeakThreshold = time.Hour
		p := newTestPool(t, src, cfg)

		a := holdFromReports(t, p)
		time.Sleep(time.Second)
		b := holdFromExport(t, p)
		time.Sleep(time.Second)
		c := holdFromReports(t, p)
		time.Sleep(time.Second)

		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		var ex *pool.ExhaustedError
		require.ErrorAs(t, err, &ex)
		h := ex.Holders
		assert.Equal(t, 3, h.InUse)
		assert.Equal(t, 3, h.MaxSize)
		assert.Equal(t, 3, h.Loans)
		require.Len(t, h.Longest, 3)
		// The ages come from the pool's coarse clock: within a few ticks.
		for i, want := range []time.Duration{3100 * time.Millisecond, 2100 * time.Millisecond, 1100 * time.Millisecond} {
			assert.InDelta(t, float64(want), float64(h.Longest[i]), float64(5*time.Millisecond), "loan %d", i)
		}
		require.Len(t, h.Sites, 2)
		assert.Contains(t, h.Sites[0].Site, "holdFromReports")
		assert.Contains(t, h.Sites[0].Site, "holders_test.go:")
		assert.Equal(t, 2, h.Sites[0].Loans)
		assert.InDelta(t, float64(3100*time.Millisecond), float64(h.Sites[0].Longest), float64(5*time.Millisecond))
		assert.Contains(t, h.Sites[1].Site, "holdFromExport")
		assert.Equal(t, 1, h.Sites[1].Loans)
		for _, want := range []string{"acquire timed out", "3 of 3 in use", "longest loans 3.1s, 2.1s, 1.1s", "holdFromReports", "(2 loans, longest 3.1s)", "holdFromExport"} {
			assert.Contains(t, err.Error(), want)
		}
		assert.Equal(t, 1, strings.Count(err.Error(), "pool: "), "one prefix: %v", err)

		// The same summary, from the pool, for a debug endpoint; a loan
		// that ended is gone from it at once.
		a.Release()
		h = p.Holders()
		assert.Equal(t, 2, h.Loans)
		require.Len(t, h.Sites, 2)
		assert.Equal(t, 1, h.Sites[0].Loans)
		assert.Equal(t, 1, h.Sites[1].Loans)
		b.Release()
		c.Discard()
		h = p.Holders()
		assert.Zero(t, h.InUse)
		assert.Zero(t, h.Loans)
		assert.Empty(t, h.Longest)
		assert.Empty(t, h.Sites)
	})
}

// Without LeakThreshold the summary still counts and ages the loans, and
// names no site; an idle pool's timeout (nothing in use) carries none.
func TestHoldersWithoutLeakThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.AcquireTimeout = 50 * time.Millisecond
		p := newTestPool(t, src, cfg)
		held := acquireN(t, p, 2)
		time.Sleep(500 * time.Millisecond)
		_, err := p.Acquire(bg)
		var ex *pool.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, 2, ex.Holders.Loans)
		require.Len(t, ex.Holders.Longest, 2)
		assert.InDelta(t, float64(550*time.Millisecond), float64(ex.Holders.Longest[0]), float64(5*time.Millisecond))
		assert.Nil(t, ex.Holders.Sites)
		assert.NotContains(t, err.Error(), "acquired at")
		for _, pc := range held {
			pc.Release()
		}

		// A source that hangs: the timeout has no loan to name.
		src.onDial = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		q := newTestPool(t, src, cfg)
		_, err = q.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.False(t, errors.As(err, &ex), "an ExhaustedError with nothing in use: %v", err)
	})
}

// A refusal by MaxWaiters and a shed carry the summary too.
func TestRefusedAcquiresNameTheHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.MaxWaiters = 1
		cfg.LeakThreshold = time.Hour
		p := newTestPool(t, src, cfg)
		pc := holdFromExport(t, p)
		ctx, cancel := context.WithCancel(bg)
		waiting := make(chan error, 1)
		go func() {
			w, err := p.Acquire(ctx)
			if err == nil {
				w.Release()
			}
			waiting <- err
		}()
		synctest.Wait()
		_, err := p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrTooManyWaiters)
		var ex *pool.ExhaustedError
		require.ErrorAs(t, err, &ex)
		assert.Equal(t, 1, ex.Holders.Loans)
		require.Len(t, ex.Holders.Sites, 1)
		assert.Contains(t, ex.Holders.Sites[0].Site, "holdFromExport")
		assert.Contains(t, err.Error(), "holdFromExport")
		cancel()
		require.ErrorIs(t, <-waiting, context.Canceled)
		pc.Release()
	})
}

// Stale handles and parked connections never count as loans: a handle
// released twice, a connection parked by a lock-free release, a loan
// ended by With's panic.
func TestHoldersCountOnlyLoansInProgress(t *testing.T) {
	src := newFakeSource(t)
	cfg := testConfig(4)
	cfg.LeakThreshold = time.Hour
	p := newTestPool(t, src, cfg)
	for range 3 {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		assert.Equal(t, 1, p.Holders().Loans)
		pc.Release()
		assert.Panics(t, func() { pc.Release() })
		assert.Zero(t, p.Holders().Loans)
	}
	assert.Panics(t, func() {
		_ = p.With(bg, func(*fakeConn) error {
			assert.Equal(t, 1, p.Holders().Loans)
			panic("fn")
		})
	})
	h := p.Holders()
	assert.Zero(t, h.Loans)
	assert.Zero(t, h.InUse)
	require.NoError(t, p.With(bg, func(*fakeConn) error {
		h = p.Holders()
		return nil
	}))
	assert.Equal(t, 1, h.Loans)
	require.Len(t, h.Sites, 1)
	assert.Contains(t, h.Sites[0].Site, "TestHoldersCountOnlyLoansInProgress")
}
