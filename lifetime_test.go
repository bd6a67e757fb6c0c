package pool_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReaperClosesIdleConnectionsAboveMinSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(5)
		cfg.MinSize = 1
		cfg.MaxIdleTime = 5 * time.Minute
		cfg.MaxLifetime = 0
		cfg.ReapInterval = time.Minute
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 4 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Release()
		}
		time.Sleep(4 * time.Minute) // fake time: not yet idle long enough
		synctest.Wait()
		assert.Equal(t, 4, p.Stats().Idle)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		s := p.Stats()
		assert.Equal(t, 1, s.Idle, "reaper must keep MinSize")
		assert.Equal(t, 1, s.Total)
		assert.EqualValues(t, 3, s.ClosedIdle)
		assert.EqualValues(t, 3, src.closes.Load())
	})
}

func TestReaperClosesExpiredConnectionsAndRefills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(5)
		cfg.MinSize = 2
		cfg.MaxIdleTime = 0
		cfg.MaxLifetime = time.Hour
		cfg.ReapInterval = time.Minute
		p := newTestPool(t, src, cfg)
		require.NoError(t, p.WaitReady(bg))
		first := src.all()
		time.Sleep(61 * time.Minute)
		synctest.Wait()
		for _, c := range first {
			assert.EqualValues(t, 1, c.closed.Load(), "%v outlived MaxLifetime", c)
		}
		s := p.Stats()
		assert.EqualValues(t, 2, s.ClosedLifetime)
		assert.Equal(t, 2, s.Idle, "reaper must refill to MinSize")
		assert.EqualValues(t, 4, src.dials.Load())
	})
}

func TestLifetimeJitterSpreadsExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(50)
		cfg.MaxLifetime = time.Hour
		cfg.MaxIdleTime = 0
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 50 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Release()
		}
		// Expiry falls in (54m, 60m]: after 57 minutes some but not all
		// have expired.
		_, early := p.ReapStep(time.Now().Add(57 * time.Minute))
		assert.Greater(t, early, 0, "no jitter: nothing expired early")
		assert.Less(t, early, 50, "jitter larger than a tenth of MaxLifetime")
		_, rest := p.ReapStep(time.Now().Add(time.Hour))
		assert.Equal(t, 50, early+rest)
	})
}

// The Python reaper closed connections but left them in the idle queue, so
// they were lent out dead. Here nothing the reaper closed is ever lent.
func TestReapedConnectionsAreNeverLent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(4)
		cfg.MaxIdleTime = time.Minute
		cfg.ReapInterval = time.Minute
		cfg.PingAfterIdle = 0 // no ping to hide the bug
		p := newTestPool(t, src, cfg)
		var held []*pool.PooledConn[*fakeConn]
		for range 4 {
			pc, _ := p.Acquire(bg)
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Release()
		}
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		s := p.Stats()
		require.EqualValues(t, 4, s.ClosedIdle)
		assert.Equal(t, 0, s.Idle, "closed connections left on the idle stack")
		assert.Equal(t, 0, s.Total)
		for range 4 {
			pc, err := p.Acquire(bg)
			require.NoError(t, err)
			c := pc.Conn()
			c.use(t) // fails if c was closed
			c.done()
			held = append(held, pc)
		}
		for _, pc := range held[4:] {
			pc.Release()
		}
	})
}

func TestExpiredConnectionIsNeverLent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.MaxLifetime = time.Hour
		p := newTestPool(t, src, cfg) // no reaper: Acquire must notice
		pc, _ := p.Acquire(bg)
		old := pc.Conn()
		time.Sleep(2 * time.Hour) // expires while in use: the loan is not cut short
		assert.EqualValues(t, 0, old.closed.Load())
		pc.Release()
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, old, pc.Conn(), "expired connection lent")
		assert.EqualValues(t, 1, old.closed.Load())
		other := pc.Conn()
		pc.Release()
		time.Sleep(2 * time.Hour) // expires while idle
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, other, pc.Conn(), "expired connection lent")
		assert.EqualValues(t, 1, other.closed.Load())
		pc.Release()
		s := p.Stats()
		assert.EqualValues(t, 2, s.ClosedLifetime)
		assert.EqualValues(t, 3, s.AcquireCount, "a connection closed at checkout is not an acquire")
	})
}

// Acquire's clock may lag the real one by up to a refresh tick; it must
// still never lend a connection whose MaxLifetime has passed on the real
// clock. Acquires of a second connection keep the clock refreshing, once a
// millisecond, up to just before the first one expires; it is then
// acquired just after, before the next refresh.
func TestExpiredConnectionIsNeverLentWhileTheClockLags(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(2)
		cfg.MaxLifetime = time.Hour
		p := newTestPool(t, src, cfg)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		old, expires := pc.Conn(), pc.ExpiresAt()
		pc.Release()

		// The clock stops when nobody reads it. Restart it 3.5 ms before
		// expiry, holding old; it then refreshes at -2.5, -1.5 and -0.5
		// ms, each time read in between through the other connection.
		time.Sleep(time.Until(expires) - 3500*time.Microsecond)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		require.Same(t, old, held.Conn(), "not expired yet")
		for range 3 {
			time.Sleep(500 * time.Microsecond)
			other, err := p.Acquire(bg)
			require.NoError(t, err)
			require.NotSame(t, old, other.Conn())
			other.Release()
			time.Sleep(500 * time.Microsecond)
		}
		held.Release()                     // on top of the idle stack: the next Acquire checks it first
		time.Sleep(800 * time.Microsecond) // 0.3 ms past expiry; the last refresh was at -0.5 ms
		require.True(t, time.Now().After(expires))

		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, old, pc.Conn(), "a connection past its MaxLifetime was lent")
		assert.EqualValues(t, 1, old.closed.Load())
		assert.EqualValues(t, 1, p.Stats().ClosedLifetime)
		pc.Release()
	})
}

// The reaper closes a connection only once it has been idle MaxIdleTime,
// counted from its release. Before, the idle start was stamped as the
// later of the loan's start and the reaper's last run, up to one
// ReapInterval before the real release: with the defaults a connection
// held from 0:30 to 1:29 was closed at 6:00, after 4m31s idle.
func TestReaperNeverClosesBeforeMaxIdleTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := pool.DefaultConfig() // ReapInterval 1m, MaxIdleTime 5m
		cfg.MinSize = 0
		closedAt := make(chan time.Time, 4)
		cfg.Hooks.Close = func(r pool.CloseReason) {
			if r == pool.CloseIdle {
				closedAt <- time.Now()
			}
		}
		p := newTestPool(t, src, cfg)
		time.Sleep(30 * time.Second)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		time.Sleep(59 * time.Second)
		pc.Release()
		released := time.Now()
		time.Sleep(10 * time.Minute)
		require.Len(t, closedAt, 1)
		idle := (<-closedAt).Sub(released)
		assert.GreaterOrEqual(t, idle, cfg.MaxIdleTime)
		assert.Less(t, idle, cfg.MaxIdleTime+cfg.ReapInterval, "closed by the first reaper run after MaxIdleTime")
	})
}

// A coarse clock gone stale, as when its refresh goroutine cannot run
// (GOMAXPROCS=1 and a goroutine computing for 7 ms without a pause), never
// lends a connection past MaxLifetime: near the boundary the real clock
// decides. Before, connections were lent 0.5 to 3 ms past MaxLifetime.
func TestStaleClockNeverLendsAnExpiredConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(1)
		cfg.MaxLifetime = time.Second
		// A connector with no IsValid: nothing but the clock decides
		// whether it is checked before it is lent.
		p, err := pool.New(func(context.Context) (*bareConn, error) { return &bareConn{}, nil }, cfg)
		require.NoError(t, err)
		defer p.Close()
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		c := pc.Conn()
		expires := pc.ExpiresAt()
		pc.Release()
		// 7 ms before expiry the clock stops; 7.5 ms later, 0.5 ms past
		// expiry, it still reads 7 ms before.
		time.Sleep(time.Until(expires) - 7*time.Millisecond)
		p.FreezeCoarseClock()
		time.Sleep(7500 * time.Microsecond)
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		assert.NotSame(t, c, pc.Conn(), "lent %v past MaxLifetime", time.Since(expires))
		assert.True(t, c.closed.Load())
		assert.EqualValues(t, 1, p.Stats().ClosedLifetime)
		pc.Release()
	})
}

// bareConn is a connector with neither IsValid nor Reset, whose identity
// a test can compare.
type bareConn struct{ closed atomic.Bool }

func (*bareConn) Ping(context.Context) error { return nil }
func (c *bareConn) Close() error             { c.closed.Store(true); return nil }

// The same stale clock does not end an AcquireTimeout early: a caller
// about to wait reads the real clock. Before, a 5 ms AcquireTimeout ended
// about 4.9 ms early.
func TestStaleClockDoesNotShortenAcquireTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		cfg := testConfig(1)
		cfg.AcquireTimeout = 5 * time.Millisecond
		p := newTestPool(t, src, cfg)
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		p.FreezeCoarseClock()
		time.Sleep(7 * time.Millisecond) // the clock is now 7 ms stale
		start := time.Now()
		_, err = p.Acquire(bg)
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.Equal(t, cfg.AcquireTimeout, time.Since(start))
		held.Release()
	})
}
