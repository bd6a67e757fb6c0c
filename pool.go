// This file holds the path every loan takes: acquire, the checks, the
// hand-off and release. The connector calls are in connector.go, the wait
// list and its timer in waitlist.go, dialling and backoff in dial.go, the
// coarse clock in clock.go, the reaper in reaper.go, closing in close.go,
// Stats in stats.go, leak detection in leak.go and the errors in errors.go.

package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pool lends connections to one data source. It is safe for concurrent use.
type Pool[C Connector] struct {
	factory Factory[C]

	// epoch anchors the pool's clock: times are kept as monotonic
	// nanoseconds since epoch (see nanos), which costs one clock read
	// where time.Now costs two.
	epoch time.Time

	// clock is the coarse clock of the acquire fast path.
	clock coarseClock

	// dialCtx is the parent of every dial's context; Close cancels it.
	dialCtx     context.Context
	cancelDials context.CancelFunc

	// testHookGaveUp, if set, runs when a waiter has given up and before it
	// takes the lock to leave the queue. Tests use it to serve the waiter
	// in that window.
	testHookGaveUp func()

	// waiterCache recycles waiters with their channel, so that waiting
	// allocates nothing.
	waiterCache sync.Pool

	// bg counts dial goroutines and a running reaper step. Add is called
	// only with mu held and closed false, so that Close's Wait (after it
	// sets closed) sees every Add.
	bg        sync.WaitGroup
	reapTimer *time.Timer // nil when ReapInterval is zero
	drained   chan struct{}

	// mu protects the fields below. It is never held across a dial, Ping,
	// Reset, Close or any other user code: work of that kind is collected
	// under mu and done after unlocking. Functions that need mu held end in
	// Locked.
	mu sync.Mutex
	// closed is set once, by Close, under mu. Holders of mu read it; it is
	// atomic so that the Manager's lock-free lookup can read it too.
	closed atomic.Bool
	// idle is a stack: the most recently released connection is on top
	// (the end), so reuse is newest first and the reaper scans the oldest
	// from the bottom. When idle is not empty, waiters is empty.
	idle    []*entry[C]
	waiters waitList[C]
	// numOpen == len(idle) + numInUse + numDialing + numClosing, and never
	// exceeds cfg.MaxSize. numInUse counts connections taken from the idle
	// stack or handed to a waiter, from then until they are given back or
	// closed: while checked, and while lent.
	numOpen  int
	numInUse int
	// checkouts counts connections taken from the idle stack or handed to
	// a waiter. Stats derives AcquireCount from it and stats.notLent, so
	// that the hot path counts under the lock it already holds.
	checkouts int64
	// lastReap is when the reaper last ran (pool clock); release uses it to
	// stamp idleSince without reading the clock.
	lastReap int64
	// The fields above are the ones every Acquire and Release touch; they
	// sit together, next to mu, so a critical section touches few cache
	// lines.
	numDialing int
	numClosing int
	ready      []*readyWaiter // WaitReady callers
	timeout    timeoutTimer
	dialing    dialState

	// The counters are atomics, kept off the cache line of mu: counting
	// an event must not slow the lock down.
	_     [64]byte
	stats counters

	// cfg is read-only after New. It sits last, a cache line away from the
	// counters, so that what the hot path reads of it (Hooks,
	// LeakThreshold, the check intervals) shares no line with a field
	// another core writes. Placed first, once Hooks had grown it, the
	// parallel benchmark ran about 30 % slower (bench/NOTES.md).
	_   [64]byte
	cfg Config
}

// New validates cfg and returns a pool that dials with factory. It does not
// block: MinSize connections are dialled in the background (see WaitReady).
func New[C Connector](factory Factory[C], cfg Config) (*Pool[C], error) {
	if factory == nil {
		return nil, newError("invalid config: factory is nil", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool[C]{
		factory: factory,
		cfg:     cfg,
		epoch:   time.Now(),
		drained: make(chan struct{}),
	}
	p.dialCtx, p.cancelDials = context.WithCancel(context.Background())
	p.waiterCache.New = func() any { return &waiter[C]{ch: make(chan result[C], 1)} }
	p.mu.Lock()
	p.refillLocked(0)
	if cfg.ReapInterval > 0 {
		p.reapTimer = time.AfterFunc(cfg.ReapInterval, p.reap)
	}
	p.mu.Unlock()
	return p, nil
}

// nanos is the pool's clock: monotonic nanoseconds since p.epoch. Under
// testing/synctest it follows the bubble's fake time.
func (p *Pool[C]) nanos() int64 { return int64(time.Since(p.epoch)) }

// Config returns the configuration the pool was created with.
func (p *Pool[C]) Config() Config { return p.cfg }

// Acquire lends a connection, waiting if none is free.
//
// An idle connection is taken newest first and checked (MaxLifetime,
// IsValid, and a Ping bounded by PingTimeout when it has been idle
// PingAfterIdle or longer); one that fails is closed and the next is tried.
// When none is idle and the pool is below MaxSize, a dial is started;
// callers then wait in FIFO order for the first connection released or
// dialled. A caller whose connection fails its check keeps its place at
// the head of the queue.
//
// Context contract. If ctx is already done, Acquire returns ctx.Err()
// without taking a connection, and no check ever runs with a done ctx. If
// ctx ends during a check, the connection being checked is closed (its
// state is unknown) and Acquire returns ctx.Err(); if it ends while
// waiting, Acquire returns ctx.Err(). Config.AcquireTimeout, unless ctx's
// deadline is earlier, bounds the whole call, checks included; when it
// passes Acquire returns an error matching ErrAcquireTimeout that names
// the last failure it saw. Either way the caller is never left holding a
// connection, and one handed to it at that instant goes back to the pool.
//
// A dial is not tied to the caller that started it: if that caller gives
// up, the connection serves the next waiter or becomes idle. If the dial
// made for the longest waiter fails, that waiter gets an error matching
// ErrDial and the Factory's error; while the source is down, callers for
// whom no connection is coming fail fast the same way (see
// Config.DialBackoff). On a closed pool Acquire returns ErrPoolClosed.
func (p *Pool[C]) Acquire(ctx context.Context) (*PooledConn[C], error) {
	start := p.acquireStart()
	e, err := p.acquire(ctx)
	p.acquireDone(start, err)
	if err != nil {
		return nil, err
	}
	return p.lend(e), nil
}

// With acquires a connection as Acquire does, calls fn with it and ends
// the loan: if fn returns an error matching ErrBadConn the connection is
// closed, otherwise it is released for reuse. If fn panics, the connection
// is closed and the panic goes on. With returns the acquire error, or fn's
// error unchanged. It allocates nothing.
func (p *Pool[C]) With(ctx context.Context, fn func(C) error) error {
	start := p.acquireStart()
	e, err := p.acquire(ctx)
	p.acquireDone(start, err)
	if err != nil {
		return err
	}
	return p.runWith(e, p.startLoan(e), fn)
}

// TryAcquire lends an idle connection without ever waiting. When none is
// idle it returns ErrPoolExhausted, and if the pool is below MaxSize it
// starts a dial in the background (unless the source is down and backing
// off) so that a later call may succeed. ctx bounds only the health-check
// Ping, and AcquireTimeout does not apply. On a closed pool it returns
// ErrPoolClosed.
func (p *Pool[C]) TryAcquire(ctx context.Context) (pc *PooledConn[C], err error) {
	if p.cfg.Hooks.Acquire != nil {
		start := p.nanos()
		defer func() { p.acquireDone(start, err) }()
	}
	if err := ctx.Err(); err != nil {
		p.stats.canceled.Add(1)
		return nil, err
	}
	a := acquisition[C]{waitStart: -1} // start 0: AcquireTimeout never applies
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		e := p.popIdleLocked()
		if e == nil {
			if p.numDialing <= p.waiters.len {
				p.startDialsLocked(1, p.coarseNanos())
			}
			p.mu.Unlock()
			return nil, ErrPoolExhausted
		}
		p.mu.Unlock()
		switch err := p.checkOut(ctx, e, &a, p.coarseNanos()); err {
		case nil:
			return p.lend(e), nil
		case errCheckFailed:
		default:
			return nil, err
		}
	}
}

func (p *Pool[C]) acquire(ctx context.Context) (*entry[C], error) {
	if err := ctx.Err(); err != nil {
		p.stats.canceled.Add(1)
		return nil, err
	}
	a := acquisition[C]{start: -1, waitStart: -1}
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			p.recordWait(&a, p.nanos())
			return nil, ErrPoolClosed
		}
		if e := p.popIdleLocked(); e != nil {
			p.mu.Unlock()
			now := p.coarseNanos()
			if a.waitStart >= 0 {
				now = p.nanos() // wait stats are measured on the real clock
			}
			switch err := p.checkOut(ctx, e, &a, now); err {
			case nil:
				p.recordWait(&a, e.acquiredAt)
				return e, nil
			case errCheckFailed:
				continue
			default:
				p.recordWait(&a, p.nanos())
				return nil, err
			}
		}
		// No real clock read under the lock: the coarse clock is enough to
		// start the AcquireTimeout (it may fire up to clockSlack early) and
		// to compare with retryAt.
		now := p.coarseNanos()
		if a.start < 0 {
			a.begin(ctx, p, now)
		}
		if a.timeoutAt != 0 && now >= a.timeoutAt {
			p.mu.Unlock()
			p.recordWait(&a, p.nanos())
			return nil, p.timedOut(&a)
		}
		if err := p.failFastLocked(now); err != nil {
			p.mu.Unlock()
			p.stats.failedFast.Add(1)
			p.recordWait(&a, p.nanos())
			return nil, err
		}
		w := p.waiterCache.Get().(*waiter[C])
		w.timeoutAt = a.timeoutAt
		p.waiters.pushBack(w)
		if a.timeoutAt != 0 {
			p.armTimeoutLocked(a.timeoutAt)
		}
		p.dialForWaitersLocked(now)
		p.mu.Unlock()
		if a.waitStart < 0 {
			a.waitStart = p.nanos() // wait statistics use the real clock
		}
		if e, err := p.waitAndCheck(ctx, w, &a); e != nil || err != nil {
			return e, err
		}
	}
}

// waitAndCheck waits on w, queued by the caller, and checks the connection
// it is handed. A connection that fails its check is replaced and the
// caller keeps its place at the head of the queue: its waiter goes back to
// the front under the same lock that frees the failed connection's slot,
// so the replacement cannot be handed to anyone behind it. It returns the
// connection, or the error that ends the Acquire, or neither when the
// caller should start over (it is no longer queued).
func (p *Pool[C]) waitAndCheck(ctx context.Context, w *waiter[C], a *acquisition[C]) (*entry[C], error) {
	defer p.waiterCache.Put(w)
	for {
		e, err := p.wait(ctx, w, a)
		if err != nil {
			p.recordWait(a, p.nanos())
			return nil, err
		}
		a.requeue = w
		err = p.checkOut(ctx, e, a, p.nanos())
		requeued := a.requeue == nil
		a.requeue = nil
		switch {
		case err == nil:
			p.recordWait(a, e.acquiredAt)
			return e, nil
		case err != errCheckFailed:
			p.recordWait(a, p.nanos())
			return nil, err
		case !requeued: // failed without freeing a slot: start over
			return nil, nil
		}
	}
}

// popIdleLocked takes the newest idle connection and counts it in use, or
// returns nil. p.mu must be held.
func (p *Pool[C]) popIdleLocked() *entry[C] {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	e := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.numInUse++
	p.checkouts++
	return e
}

// checkOut runs the acquire-time checks on a connection just taken for
// this caller, outside the lock, and stamps the loan's start. now is the
// pool clock: the coarse clock for a connection taken from the idle stack,
// the real one after a wait. It returns nil if the connection may be lent,
// errCheckFailed if it was closed, or the error that ends the Acquire (ctx
// ended, AcquireTimeout passed).
//
// The fast path of an Acquire-Release cycle reads no real clock: release
// stamps idleSince from acquiredAt and the reaper's last run, and the
// coarse clock lags by at most clockSlack, so idle time is over-estimated
// by up to the hold time. The PingAfterIdle test adds clockSlack: it errs
// towards an extra Ping, never towards a missed one.
func (p *Pool[C]) checkOut(ctx context.Context, e *entry[C], a *acquisition[C], now int64) error {
	e.acquiredAt = now
	if a.timeoutAt != 0 && now >= a.timeoutAt { // a retry with no time left
		p.giveBack(e)
		return p.timedOut(a)
	}
	var cause error
	reason := CloseBroken
	switch {
	case now+int64(clockSlack) >= e.expiresAt: // the coarse clock may lag: err early
		reason = CloseLifetime
	case e.validator != nil && !p.isValid(e, atCheckout):
		cause = errInvalid
	case p.cfg.PingAfterIdle > 0 && time.Duration(now+int64(clockSlack)-e.idleSince) >= p.cfg.PingAfterIdle:
		if err := ctx.Err(); err != nil { // never check with a done ctx
			p.giveBack(e)
			p.stats.canceled.Add(1)
			return err
		}
		now = p.nanos() // a Ping is I/O: the real clock is cheap beside it
		if a.start < 0 {
			a.begin(ctx, p, now)
		}
		err := p.ping(ctx, e, a.timeoutAt, now)
		if err == nil {
			return nil
		}
		// The check was cut short or failed: either way this connection's
		// state is unknown, so it is closed, and only this one.
		a.lastErr = newError("health check: Ping failed: "+err.Error(), err)
		final := ctx.Err()
		if final != nil {
			p.stats.canceled.Add(1)
		} else if a.timeoutAt != 0 && p.nanos() >= a.timeoutAt {
			final = p.timedOut(a)
		}
		if final != nil {
			reraise(p.closeChecked(e, CloseBroken, nil, nil))
			return final
		}
		reraise(p.closeChecked(e, CloseBroken, nil, a))
		return errCheckFailed
	default:
		return nil
	}
	if cause != nil {
		a.lastErr = cause
	}
	var failedNew error // a new connection that fails counts against the source
	if e.fresh && cause != nil {
		failedNew = newError("new connection failed its check: "+detail(cause), cause)
	}
	reraise(p.closeChecked(e, reason, failedNew, a))
	return errCheckFailed
}

// release runs the release-time checks outside the lock, then hands the
// connection to the longest waiter or puts it on the idle stack. The loan
// has ended. It reads no clock (see checkOut); MaxLifetime is enforced on
// acquire and by the reaper.
func (p *Pool[C]) release(e *entry[C]) {
	p.untrackLeak(e)
	// Reset first, so that a connector that is invalid only because of
	// state the borrower left (an open transaction, say) can clear it.
	if (p.needsReset(e) && p.reset(e) != nil) || (e.validator != nil && !p.isValid(e, atRelease)) {
		reraise(p.closeLent(e, CloseBroken))
		return
	}
	reraise(p.returnReleased(e))
}

// discard closes a connection whose loan has ended.
func (p *Pool[C]) discard(e *entry[C]) {
	p.untrackLeak(e)
	reraise(p.closeLent(e, CloseBroken))
}

// returnReleased gives back a connection whose loan has ended, stamped
// idle since its loan began or the reaper last ran, whichever is later
// (see checkOut).
func (p *Pool[C]) returnReleased(e *entry[C]) error {
	p.mu.Lock()
	return p.returnLocked(e, max(e.acquiredAt, p.lastReap))
}

// giveBack returns a connection that was checked out but never lent,
// keeping its idle time.
func (p *Pool[C]) giveBack(e *entry[C]) {
	p.stats.notLent.Add(1)
	p.mu.Lock()
	_ = p.returnLocked(e, e.idleSince) // Close runs only on a closed pool, and logs a panic
}

// returnLocked uncounts a connection in use and hands it to the longest
// waiter or the idle stack, stamped idle since idleSince, or closes it if
// the pool is closed (then it returns Close's error). p.mu must be held;
// returnLocked unlocks it.
func (p *Pool[C]) returnLocked(e *entry[C], idleSince int64) error {
	p.numInUse--
	if p.closed.Load() {
		p.numClosing++
		p.mu.Unlock()
		return p.finishClose(e, ClosePoolClosed)
	}
	w := p.putLocked(e, idleSince)
	p.mu.Unlock()
	handOff(w, e)
	return nil
}

// putLocked gives a connection that is not counted anywhere to the
// longest waiter, or pushes it on the idle stack, stamped idle since
// idleSince. It returns the waiter, dequeued and counted as served, for
// the caller to hand the connection to with handOff once it has unlocked:
// waking a goroutine is not done under the lock. p.mu must be held and the
// pool open.
func (p *Pool[C]) putLocked(e *entry[C], idleSince int64) *waiter[C] {
	e.idleSince = idleSince
	if w := p.waiters.popFront(); w != nil {
		p.numInUse++
		p.checkouts++
		return w
	}
	p.idle = append(p.idle, e)
	return nil
}
