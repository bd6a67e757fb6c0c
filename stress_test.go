package pool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
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
	panics, staleCaught                                         atomic.Int64
	sawParked                                                   atomic.Int64 // releases followed by a parked connection
}

// survive runs f and reports whether it panicked with one of the
// connector panics the stress test injects; any other panic fails the
// test.
func (s *stressTally) survive(t *testing.T, f func()) {
	defer func() {
		switch v := recover(); v {
		case nil:
		case errPanicPing, errPanicReset, errPanicValid:
			s.panics.Add(1)
		default:
			t.Errorf("unexpected panic: %v", v)
		}
	}()
	f()
}

// The panics the stress test's connector throws.
var (
	errPanicPing  = errors.New("ping exploded")
	errPanicReset = errors.New("reset exploded")
	errPanicValid = errors.New("IsValid exploded")
	errHandlerBug = errors.New("handler bug")
)

// releaseTwice releases pc, then tries it again as a stale handle would:
// the second Release and a Conn must panic, touching no later loan.
func (s *stressTally) releaseTwice(t *testing.T, pc *pool.PooledConn[*fakeConn]) {
	s.survive(t, pc.Release)
	for _, stale := range []func(){pc.Release, pc.Discard, func() { pc.Conn() }} {
		func() {
			defer func() {
				if recover() != nil {
					s.staleCaught.Add(1)
				}
			}()
			stale()
			t.Error("a stale handle did not panic")
		}()
	}
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
//
// It runs at GOMAXPROCS 2 and 16: with more Ps than cores the runtime
// preempts goroutines in the middle of the lock-free path's steps, which
// two Ps on two cores seldom do.
func TestStress(t *testing.T) {
	for _, procs := range []int{2, 16} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			stress(t)
		})
	}
}

func stress(t *testing.T) {
	workers, ops, rounds := 32, 2000, 10
	if testing.Short() {
		workers, ops, rounds = 8, 200, 2
	}
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource(t)
		src.onDial = func(ctx context.Context) error {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			if rand.IntN(25) == 0 {
				return errors.New("connection refused")
			}
			return ctx.Err()
		}
		src.onPing = func(_ context.Context, c *fakeConn) error {
			if !c.used.Load() {
				// A new connection that fails counts as a failed dial;
				// that is tested on its own, and would blur the books
				// (dials = Created + DialErrors) checked here.
				return nil
			}
			switch rand.IntN(300) {
			case 0, 1, 2, 3, 4, 5:
				return errors.New("broken pipe")
			case 6:
				panic(errPanicPing)
			}
			return nil
		}
		// Half the releases need no Reset: they park on the lock-free
		// path (fast.go) when nobody waits.
		src.onNeedsReset = func(*fakeConn) bool { return rand.IntN(2) == 0 }
		src.onReset = func(context.Context, *fakeConn) error {
			if rand.IntN(300) == 0 {
				panic(errPanicReset)
			}
			return nil
		}
		src.onValid = func(*fakeConn) bool {
			if rand.IntN(1000) == 0 {
				panic(errPanicValid)
			}
			return true
		}
		src.onClose = func(*fakeConn) error {
			if rand.IntN(20) == 0 {
				time.Sleep(5 * time.Millisecond) // a close that hangs a while
			}
			return nil
		}
		cfg := pool.Config{
			MinSize:        2,
			MaxSize:        6,
			MaxIdleTime:    2 * time.Millisecond,
			MaxLifetime:    70 * time.Millisecond,
			AcquireTimeout: 3 * time.Millisecond,
			ReapInterval:   time.Millisecond,
			DialTimeout:    time.Second,
			PingAfterIdle:  500 * time.Microsecond,
			PingTimeout:    time.Second,
			ResetTimeout:   time.Second,

			DialBackoff:        200 * time.Microsecond,
			DialBackoffMax:     time.Millisecond,
			MaxConcurrentDials: 2,
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
		for round := range rounds {
			// Every other round, fewer workers than MaxSize: callers seldom
			// wait, and loans start and end on the lock-free path, between
			// rounds where nearly every release has a waiter to serve.
			n := workers
			if round%2 == 1 {
				n = cfg.MaxSize - 2
			}
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					for range ops / rounds {
						// Think time: a caller failed fast would otherwise
						// spin with no fake time passing.
						time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
						switch op := rand.IntN(100); {
						case op < 40:
							tally.survive(t, func() {
								pc, err := p.Acquire(bg)
								if tally.count(t, err) {
									hold(pc)
									switch rand.IntN(50) {
									case 0:
										pc.Discard()
									case 1, 2:
										tally.releaseTwice(t, pc)
									default:
										pc.Release()
										if p.Parked() > 0 {
											tally.sawParked.Add(1)
										}
									}
								}
							})
						case op < 55:
							ctx, cancel := context.WithTimeout(bg, time.Duration(rand.IntN(2000))*time.Microsecond)
							tally.survive(t, func() {
								pc, err := p.Acquire(ctx)
								if tally.count(t, err) {
									hold(pc)
									pc.Release()
								}
							})
							cancel()
						case op < 65:
							ctx, cancel := context.WithCancel(bg)
							stop := time.AfterFunc(time.Duration(rand.IntN(1000))*time.Microsecond, cancel)
							tally.survive(t, func() {
								pc, err := p.Acquire(ctx)
								if tally.count(t, err) {
									hold(pc)
									pc.Release()
								}
							})
							stop.Stop()
							cancel()
						case op < 75:
							tally.survive(t, func() {
								pc, err := p.TryAcquire(bg)
								if tally.count(t, err) {
									hold(pc)
									pc.Release()
								}
							})
						case op < 98:
							ran := false
							var err error
							tally.survive(t, func() {
								err = p.With(bg, func(c *fakeConn) error {
									ran = true
									tally.acquired.Add(1)
									c.use(t)
									defer c.done()
									if rand.IntN(20) == 0 {
										return pool.ErrBadConn
									}
									return nil
								})
							})
							if !ran && err != nil {
								tally.count(t, err)
							}
						default:
							var err error
							tally.survive(t, func() {
								defer func() {
									if v := recover(); v != nil && v != errHandlerBug {
										panic(v) // a connector's: survive counts it
									}
								}()
								err = p.With(bg, func(c *fakeConn) error {
									tally.acquired.Add(1)
									c.used.Store(true)
									panic(errHandlerBug)
								})
							})
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
				tally.survive(t, func() {
					if pc, err := p.Acquire(bg); tally.count(t, err) {
						pc.Conn().use(t)
						hogged = append(hogged, pc)
					}
				})
				if len(hogged) == cfg.MaxSize {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			for _, pc := range hogged {
				pc.Conn().done()
				tally.survive(t, pc.Release)
			}
			wg.Wait()
			require.NoError(t, p.CheckAccounting())
			// A lull: the reaper closes connections above MinSize idle
			// MaxIdleTime, plus the 50 ms it allows for the coarse clock.
			time.Sleep(80 * time.Millisecond)
		}
		// Shutdown under load: workers keep acquiring while the pool
		// closes; the loans in flight finish, nothing new is lent.
		for p.WaitReady(bg) != nil { // idle connections for Close to close
		}
		var wg sync.WaitGroup
		started := make(chan struct{})
		for i := range workers {
			wg.Go(func() {
				if i == 0 {
					close(started)
				}
				for {
					var err error
					tally.survive(t, func() {
						err = p.With(bg, func(c *fakeConn) error {
							tally.acquired.Add(1)
							c.use(t)
							time.Sleep(100 * time.Microsecond)
							c.done()
							return nil
						})
					})
					if errors.Is(err, pool.ErrPoolClosed) {
						tally.closed.Add(1)
						return
					}
					if err != nil {
						tally.count(t, err)
					}
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
				}
			})
		}
		<-started
		// One loan held across the Shutdown: it is closed when released.
		var last *pool.PooledConn[*fakeConn]
		for last == nil {
			tally.survive(t, func() {
				if pc, err := p.Acquire(bg); tally.count(t, err) {
					last = pc
				}
			})
			if last == nil {
				// Failed fast while the source was down: let fake time
				// reach the end of the backoff.
				time.Sleep(100 * time.Microsecond)
			}
		}
		time.Sleep(time.Millisecond)
		ctx, cancel := context.WithTimeout(bg, time.Second)
		shut := make(chan error)
		go func() { shut <- p.Shutdown(ctx) }()
		time.Sleep(time.Millisecond)
		closedBefore := p.Stats().ClosedPool + p.Stats().ClosedBroken
		tally.survive(t, last.Release)
		assert.Greater(t, p.Stats().ClosedPool+p.Stats().ClosedBroken, closedBefore, "a loan released after Shutdown began was not closed")
		require.NoError(t, <-shut)
		cancel()
		wg.Wait()

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
		assert.Equal(t, tally.panics.Load(), s.PanicsRecovered, "panics re-raised to callers: %d seen, %d counted", tally.panics.Load(), s.PanicsRecovered)
		assert.Zero(t, s.AbandonedLoans)
		if !testing.Short() { // every path was taken
			assert.Positive(t, s.ClosedIdle, "no idle connection reaped")
			assert.Positive(t, s.ClosedLifetime, "no connection expired")
			assert.Positive(t, s.ClosedBroken, "no connection broke")
			assert.Positive(t, tally.timedOut.Load(), "no acquire timed out")
			assert.Positive(t, tally.canceled.Load(), "no acquire was canceled")
			assert.Positive(t, tally.dialFailed.Load(), "no dial error reached a caller")
			assert.Positive(t, s.FailedFast, "no caller was failed fast")
			assert.Positive(t, tally.panics.Load(), "no connector panicked")
			assert.Positive(t, tally.staleCaught.Load(), "no stale handle was tried")
			assert.Positive(t, tally.closed.Load(), "Shutdown stopped no worker")
			assert.Positive(t, tally.sawParked.Load(), "no release was seen parking its connection")
		}
		t.Logf("%d workers (%d every other round) x %d ops: %d acquired, %d timed out, %d canceled, %d dial errors seen (%d failed fast), %d exhausted, %d panics, %d stale uses caught, %d releases seen parking; pool: %d created, %d dial errors, closed idle/lifetime/broken/pool %d/%d/%d/%d",
			workers, cfg.MaxSize-2, ops, tally.acquired.Load(), tally.timedOut.Load(), tally.canceled.Load(), tally.dialFailed.Load(), s.FailedFast, tally.exhausted.Load(),
			tally.panics.Load(), tally.staleCaught.Load(), tally.sawParked.Load(),
			s.Created, s.DialErrors, s.ClosedIdle, s.ClosedLifetime, s.ClosedBroken, s.ClosedPool)
	})
}
