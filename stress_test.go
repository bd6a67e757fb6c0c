package pool_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// stressTally is what the stress test's clients saw, to check against the
// pool's own Stats.
type stressTally struct {
	acquired, canceled, timedOut, dialFailed, exhausted, closed atomic.Int64
}

func (s *stressTally) count(t *testing.T, err error) bool {
	switch {
	case err == nil:
		s.acquired.Add(1)
		return true
	case errors.Is(err, pool.ErrAcquireTimeout):
		s.timedOut.Add(1)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		s.canceled.Add(1)
	case errors.Is(err, pool.ErrDial):
		s.dialFailed.Add(1)
	case errors.Is(err, pool.ErrPoolExhausted):
		s.exhausted.Add(1)
	case errors.Is(err, pool.ErrPoolClosed):
		s.closed.Add(1)
	default:
		t.Errorf("unexpected error: %v", err)
	}
	return false
}

// TestStress runs many goroutines doing every operation at random, with
// slow and failing dials, failing pings, the reaper, cancels and timeouts,
// all in fake time, and then checks the invariants: never more than
// MaxSize alive, never two holders, every connection closed exactly once,
// Stats agreeing with what the clients saw, and (by synctest) no goroutine
// left behind after Close.
func TestStress(t *testing.T) {
	workers, ops, rounds := 32, 2000, 10
	if testing.Short() {
		workers, ops, rounds = 8, 200, 2
	}
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onDial = func(ctx context.Context) error {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			if rand.IntN(10) == 0 {
				return errors.New("connection refused")
			}
			return ctx.Err()
		}
		src.onPing = func(context.Context, *fakeConn) error {
			if rand.IntN(50) == 0 {
				return errors.New("broken pipe")
			}
			return nil
		}
		cfg := pool.Config{
			MinSize:        2,
			MaxSize:        6,
			MaxIdleTime:    2 * time.Millisecond,
			MaxLifetime:    10 * time.Millisecond,
			AcquireTimeout: 3 * time.Millisecond,
			ReapInterval:   time.Millisecond,
			DialTimeout:    time.Second,
			PingAfterIdle:  500 * time.Microsecond,
			PingTimeout:    time.Second,
			ResetTimeout:   time.Second,
		}
		p, err := pool.New(src.factory(), cfg)
		require.NoError(t, err)

		var tally stressTally
		hold := func(pc *pool.PooledConn[*fakeConn]) {
			c := pc.Conn()
			c.use(t)
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			if rand.IntN(50) == 0 {
				c.invalid.Store(true) // caught by the check on release
			}
			c.done()
		}
		for range rounds {
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range ops / rounds {
						switch op := rand.IntN(100); {
						case op < 40:
							pc, err := p.Acquire(bg)
							if tally.count(t, err) {
								hold(pc)
								if rand.IntN(50) == 0 {
									pc.Discard()
								} else {
									pc.Release()
								}
							}
						case op < 55:
							ctx, cancel := context.WithTimeout(bg, time.Duration(rand.IntN(2000))*time.Microsecond)
							pc, err := p.Acquire(ctx)
							cancel()
							if tally.count(t, err) {
								hold(pc)
								pc.Release()
							}
						case op < 65:
							ctx, cancel := context.WithCancel(bg)
							stop := time.AfterFunc(time.Duration(rand.IntN(1000))*time.Microsecond, cancel)
							pc, err := p.Acquire(ctx)
							stop.Stop()
							cancel()
							if tally.count(t, err) {
								hold(pc)
								pc.Release()
							}
						case op < 75:
							pc, err := p.TryAcquire(bg)
							if tally.count(t, err) {
								hold(pc)
								pc.Release()
							}
						case op < 98:
							err := p.With(bg, func(c *fakeConn) error {
								c.use(t)
								defer c.done()
								if rand.IntN(20) == 0 {
									return pool.ErrBadConn
								}
								return nil
							})
							if err == nil || errors.Is(err, pool.ErrBadConn) {
								tally.acquired.Add(1)
							} else {
								tally.count(t, err)
							}
						default:
							var err error
							func() {
								defer func() { _ = recover() }()
								err = p.With(bg, func(c *fakeConn) error {
									tally.acquired.Add(1)
									panic("handler bug")
								})
							}()
							if err != nil {
								tally.count(t, err)
							}
							if err := p.CheckAccounting(); err != nil {
								t.Error(err)
							}
						}
					}
				})
			}
			// A hog takes every connection it can for longer than
			// AcquireTimeout, so that waiters time out.
			var hogged []*pool.PooledConn[*fakeConn]
			for range 4 * cfg.MaxSize {
				if pc, err := p.Acquire(bg); tally.count(t, err) {
					pc.Conn().use(t)
					hogged = append(hogged, pc)
				}
				if len(hogged) == cfg.MaxSize {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			for _, pc := range hogged {
				pc.Conn().done()
				pc.Release()
			}
			wg.Wait()
			require.NoError(t, p.CheckAccounting())
			// A lull: the reaper closes idle connections above MinSize.
			time.Sleep(20 * time.Millisecond)
		}
		// Warm up to MinSize (dials fail one time in ten: retry), so that
		// Close has idle connections to close.
		for p.WaitReady(bg) != nil {
		}
		require.NoError(t, p.Close())

		s := p.Stats()
		src.checkAllClosedOnce(t)
		assert.LessOrEqual(t, src.maxAlive.Load(), int64(cfg.MaxSize), "more than MaxSize alive at once")
		assert.Equal(t, 0, s.Total)
		assert.Equal(t, tally.acquired.Load(), s.AcquireCount)
		assert.Equal(t, tally.timedOut.Load(), s.TimedOutAcquires)
		assert.Equal(t, tally.canceled.Load(), s.CanceledAcquires)
		assert.Equal(t, int64(len(src.all())), s.Created)
		assert.Equal(t, s.Created, s.ClosedIdle+s.ClosedLifetime+s.ClosedBroken+s.ClosedPool,
			"every connection created must be closed for one counted reason")
		assert.Equal(t, src.dials.Load(), s.Created+s.DialErrors)
		assert.LessOrEqual(t, tally.dialFailed.Load(), s.DialErrors)
		if !testing.Short() { // every path was taken
			assert.Positive(t, s.ClosedIdle, "no idle connection reaped")
			assert.Positive(t, s.ClosedLifetime, "no connection expired")
			assert.Positive(t, s.ClosedBroken, "no connection broke")
			assert.Positive(t, s.ClosedPool, "Close closed nothing")
			assert.Positive(t, tally.timedOut.Load(), "no acquire timed out")
			assert.Positive(t, tally.canceled.Load(), "no acquire was canceled")
			assert.Positive(t, tally.dialFailed.Load(), "no dial error reached a caller")
		}
		t.Logf("%d workers x %d ops: %d acquired, %d timed out, %d canceled, %d dial errors seen, %d exhausted; pool: %d created, %d dial errors, closed idle/lifetime/broken/pool %d/%d/%d/%d",
			workers, ops, tally.acquired.Load(), tally.timedOut.Load(), tally.canceled.Load(), tally.dialFailed.Load(), tally.exhausted.Load(),
			s.Created, s.DialErrors, s.ClosedIdle, s.ClosedLifetime, s.ClosedBroken, s.ClosedPool)
	})
}
