// Package pool pools connections to data sources: a generic Pool for one
// source, a Manager that owns one lazily created Pool per source ID, and a
// PooledRegistry that handlers call by ID.
//
// The pool lock is never held across I/O or user code: dialling, pinging,
// resetting and closing connections all happen outside it. A released
// connection is handed straight to the longest-waiting caller, and idle
// connections are reused newest first.
//
// This file holds the path every loan takes: acquire, the checks, the
// hand-off and release. The wait list and its timer are in waitlist.go,
// dialling and backoff in dial.go, the reaper in reaper.go, Close and
// Shutdown in close.go, Stats in stats.go, leak detection in leak.go and
// the errors in errors.go.
package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Connector is a connection a Pool can manage.
type Connector interface {
	// Ping checks that the connection is alive. It may do I/O and must
	// honour ctx.
	Ping(ctx context.Context) error
	// Close closes the connection. The pool calls it exactly once.
	Close() error
}

// Resetter is implemented by connectors that carry session state. The pool
// calls Reset on release, before the connection can be lent again; an error
// closes the connection instead. Reset must honour ctx, as Ping does: when
// Config.ResetTimeout passes, the pool closes the connection under it.
type Resetter interface {
	Reset(ctx context.Context) error
}

// Validator is implemented by connectors that can tell cheaply, without
// I/O, that they are broken. The pool calls IsValid on acquire and on
// release; false closes the connection.
type Validator interface {
	IsValid() bool
}

// Factory dials a new connection. The ctx it receives belongs to the pool,
// not to the caller whose Acquire caused the dial: it ends at DialTimeout or
// when the pool is closed, and the Factory must return soon after it ends.
// A Factory that returns a nil connection with a nil error, or panics,
// counts as a failed dial.
type Factory[C Connector] func(ctx context.Context) (C, error)

type closeReason int

const (
	reasonIdle closeReason = iota
	reasonLifetime
	reasonBroken
	reasonPoolClosed
	reasonAbandoned
)

// Pool lends connections to one data source. It is safe for concurrent use.
type Pool[C Connector] struct {
	factory Factory[C]
	cfg     Config

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
	e, err := p.acquire(ctx)
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
	e, err := p.acquire(ctx)
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
func (p *Pool[C]) TryAcquire(ctx context.Context) (*PooledConn[C], error) {
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
				p.startDialsLocked(1, p.nanos())
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

// acquisition is the state of one Acquire call, kept on its stack.
type acquisition[C Connector] struct {
	// start is the call's first clock read, -1 before it; timeoutAt is
	// when AcquireTimeout ends the call, 0 if it does not apply (the
	// caller's deadline is earlier, or there is no AcquireTimeout).
	start, timeoutAt int64
	// waitStart is when the call first queued, -1 if it has not.
	waitStart int64
	// lastErr is why the last connection it checked was closed.
	lastErr error
	// requeue, if set, is a waiter to queue at the front, under the lock
	// that frees the slot of a connection that failed its check; the
	// queueing sets it to nil.
	requeue *waiter[C]
}

// begin starts the clock of a call that has to wait or check: the
// AcquireTimeout applies unless ctx's deadline (read here, off the fast
// path) is earlier.
func (a *acquisition[C]) begin(ctx context.Context, p *Pool[C], now int64) {
	a.start = now
	timeout := p.cfg.AcquireTimeout
	if timeout <= 0 {
		return
	}
	t := now + int64(timeout)
	if dl, ok := ctx.Deadline(); ok && int64(dl.Sub(p.epoch)) <= t {
		return
	}
	a.timeoutAt = t
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
		now := p.nanos()
		if a.start < 0 {
			a.begin(ctx, p, now)
		}
		if a.timeoutAt != 0 && now >= a.timeoutAt {
			p.mu.Unlock()
			p.recordWait(&a, now)
			return nil, p.timedOut(&a)
		}
		if err := p.failFastLocked(now); err != nil {
			p.mu.Unlock()
			p.stats.failedFast.Add(1)
			p.recordWait(&a, now)
			return nil, err
		}
		if a.waitStart < 0 {
			a.waitStart = now
		}
		w := p.waiterCache.Get().(*waiter[C])
		w.timeoutAt = a.timeoutAt
		p.waiters.pushBack(w)
		if a.timeoutAt != 0 {
			p.armTimeoutLocked(a.timeoutAt)
		}
		p.dialForWaitersLocked(now)
		p.mu.Unlock()
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

// errCheckFailed is what checkOut returns when it closed the connection
// and the caller should try another.
var errCheckFailed = errors.New("pool: internal: check failed")

// errInvalid is why a connection whose IsValid said false was closed.
var errInvalid = errors.New("pool: the connection's IsValid reported false")

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
	if a.timeoutAt != 0 { // a retry within a timed call: is there time left?
		if now = p.nanos(); now >= a.timeoutAt {
			p.giveBack(e)
			return p.timedOut(a)
		}
	}
	var cause error
	reason := reasonBroken
	switch {
	case now >= e.expiresAt:
		reason = reasonLifetime
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
			reraise(p.closeChecked(e, reasonBroken, nil, nil))
			return final
		}
		reraise(p.closeChecked(e, reasonBroken, nil, a))
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

// ping runs the acquire-time Ping, bounded by PingTimeout and by the
// Acquire's own timeout (pool clock, 0 if none), whichever ends first.
func (p *Pool[C]) ping(ctx context.Context, e *entry[C], timeoutAt, now int64) error {
	limit := timeoutAt
	if pt := now + int64(p.cfg.PingTimeout); p.cfg.PingTimeout > 0 && (limit == 0 || pt < limit) {
		limit = pt
	}
	if limit != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.epoch.Add(time.Duration(limit)))
		defer cancel()
	}
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "Ping", atCheckout)
		}
	}()
	err := e.conn.Ping(ctx)
	returned = true
	return err
}

// isValid calls IsValid; if it panics, the connection is closed and the
// panic goes on.
func (p *Pool[C]) isValid(e *entry[C], at stage) bool {
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "IsValid", at)
		}
	}()
	ok := e.validator.IsValid()
	returned = true
	return ok
}

// startLoan begins a loan of a connection that passed its checks and
// returns the loan's number.
func (p *Pool[C]) startLoan(e *entry[C]) uint64 {
	e.fresh = false
	loan := e.ended.Load() + 1 // the owner's own last write: no other writer now
	if p.cfg.LeakThreshold > 0 {
		p.trackLeak(e, loan)
	}
	return loan
}

// lend begins a loan and returns its handle, cut from the connection's
// slab (or, with leak detection on, allocated on its own so that the
// garbage collector can tell when it is dropped).
func (p *Pool[C]) lend(e *entry[C]) *PooledConn[C] {
	loan := p.startLoan(e)
	if e.leak != nil {
		return p.trackedHandle(e, loan)
	}
	return e.handleFor(loan)
}

func (p *Pool[C]) runWith(e *entry[C], loan uint64, fn func(C) error) error {
	returned := false
	defer func() {
		if !returned && e.endLoan(loan) { // fn panicked
			p.untrackLeak(e)
			_ = p.closeLent(e, reasonBroken) // fn's panic goes on, not Close's
		}
	}()
	err := fn(e.conn)
	returned = true
	if e.endLoan(loan) {
		if errors.Is(err, ErrBadConn) {
			p.discard(e)
		} else {
			p.release(e)
		}
	}
	return err
}

// release runs the release-time checks outside the lock, then hands the
// connection to the longest waiter or puts it on the idle stack. The loan
// has ended. It reads no clock (see checkOut); MaxLifetime is enforced on
// acquire and by the reaper.
func (p *Pool[C]) release(e *entry[C]) {
	p.untrackLeak(e)
	// Reset first, so that a connector that is invalid only because of
	// state the borrower left (an open transaction, say) can clear it.
	if (e.resetter != nil && p.reset(e) != nil) || (e.validator != nil && !p.isValid(e, atRelease)) {
		reraise(p.closeLent(e, reasonBroken))
		return
	}
	reraise(p.returnReleased(e))
}

// discard closes a connection whose loan has ended.
func (p *Pool[C]) discard(e *entry[C]) {
	p.untrackLeak(e)
	reraise(p.closeLent(e, reasonBroken))
}

// errResetTimeout is why a connection whose Reset outlasted ResetTimeout
// was closed.
var errResetTimeout = errors.New("pool: Reset outlasted ResetTimeout")

// reset runs Reset bounded by ResetTimeout. If Reset has not returned
// when ResetTimeout passes, the connection is closed under it, which wakes
// a Reset blocked on the connection's socket.
func (p *Pool[C]) reset(e *entry[C]) error {
	ctx := context.Background()
	if p.cfg.ResetTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.ResetTimeout)
		defer cancel()
		stop := context.AfterFunc(ctx, func() { p.forceClose(e, errResetTimeout) })
		defer stop() // runs before cancel, so cancel fires nothing
	}
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "Reset", atRelease)
		}
	}()
	err := e.resetter.Reset(ctx)
	returned = true
	if err == nil && e.closed.Load() { // the watchdog won the race
		err = errResetTimeout
	}
	return err
}

// closeLent takes a connection that was lent or checked out (and whose
// loan, if any, has ended) out of service and closes it outside the lock.
// It returns Close's error.
func (p *Pool[C]) closeLent(e *entry[C], reason closeReason) error {
	p.mu.Lock()
	p.numInUse--
	p.numClosing++
	p.mu.Unlock()
	return p.finishClose(e, reason)
}

// closeChecked is closeLent for a connection that failed its check. If
// failedNew is not nil, the connection was new and its failure counts
// against the source as a failed dial. If a has a waiter to requeue, it
// goes back to the head of the queue under the lock that frees the slot.
func (p *Pool[C]) closeChecked(e *entry[C], reason closeReason, failedNew error, a *acquisition[C]) error {
	p.stats.notLent.Add(1)
	p.mu.Lock()
	p.numInUse--
	p.numClosing++
	if failedNew != nil {
		p.stats.dialErrors.Add(1)
		p.dialFailedLocked(dialError(failedNew), p.nanos())
	}
	if a != nil && a.requeue != nil {
		p.requeueLocked(a.requeue)
		a.requeue = nil
	}
	p.mu.Unlock()
	return p.finishClose(e, reason)
}

// requeueLocked puts back at the head of the queue a waiter whose
// connection failed its check, or serves it at once: with an idle
// connection, or with ErrPoolClosed. p.mu must be held.
func (p *Pool[C]) requeueLocked(w *waiter[C]) {
	if p.closed.Load() {
		w.ch <- result[C]{err: ErrPoolClosed}
		return
	}
	if e := p.popIdleLocked(); e != nil { // keeps the invariant: idle means nobody waits
		w.ch <- result[C]{e: e}
		return
	}
	p.waiters.pushFront(w)
	if w.timeoutAt != 0 {
		p.armTimeoutLocked(w.timeoutAt)
	}
}

// stage says where a connector call ran: on a connection checked out for
// a caller but not yet lent, or on one whose loan has ended.
type stage int

const (
	atCheckout stage = iota
	atRelease
)

// closeAfterPanic closes a connection whose connector call panicked on the
// caller's goroutine. It runs in a deferred call while the panic goes on,
// so an error of Close's (or its panic) is logged and dropped.
func (p *Pool[C]) closeAfterPanic(e *entry[C], op string, at stage) {
	p.stats.panicsRecovered.Add(1)
	p.logf(levelError, "connector panicked; connection closed, panic re-raised", "op", op)
	p.untrackLeak(e)
	if at == atCheckout {
		_ = p.closeChecked(e, reasonBroken, nil, nil)
	} else {
		_ = p.closeLent(e, reasonBroken)
	}
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
		return p.finishClose(e, reasonPoolClosed)
	}
	p.putLocked(e, idleSince)
	p.mu.Unlock()
	return nil
}

// putLocked hands a connection that is not counted anywhere to the
// longest waiter, or pushes it on the idle stack, stamped idle since
// idleSince. p.mu must be held and the pool open.
func (p *Pool[C]) putLocked(e *entry[C], idleSince int64) {
	e.idleSince = idleSince
	if w := p.waiters.popFront(); w != nil {
		p.numInUse++
		p.checkouts++
		w.ch <- result[C]{e: e} // buffered, and w has exactly one sender
		return
	}
	p.idle = append(p.idle, e)
}

// finishClose closes a connection already counted in numClosing, outside
// the lock, then uncounts it and dials replacements if needed. A panic in
// Close becomes the returned *PanicError.
func (p *Pool[C]) finishClose(e *entry[C], reason closeReason) error {
	err := p.closeConn(e)
	p.stats.countClose(reason)
	p.mu.Lock()
	p.numClosing--
	p.numOpen--
	if !p.closed.Load() {
		now := p.nanos()
		p.refillLocked(now)
		p.failUncoveredLocked()
	}
	p.notifyReadyLocked()
	p.signalDrainedLocked()
	p.mu.Unlock()
	return err
}

// closeConn calls the connector's Close the first time it is called for
// e, and does nothing after that. A panic in Close is recovered, logged
// and returned as a *PanicError.
func (p *Pool[C]) closeConn(e *entry[C]) (err error) {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			pe := newPanicError("Close", v)
			p.logPanic(pe)
			err = pe
		}
	}()
	return e.conn.Close()
}

// forceClose closes a connection that is still in someone's hands, to
// wake a connector call that ignores its ctx.
func (p *Pool[C]) forceClose(e *entry[C], why error) {
	p.logf(levelWarn, "connection closed by force", "reason", why.Error())
	_ = p.closeConn(e)
}

// reraise re-raises, on the caller's goroutine, a panic of Close's that
// closeConn recovered, once the books are right.
func reraise(err error) {
	if pe, ok := err.(*PanicError); ok {
		panic(pe.Value)
	}
}

// recordWait counts a wait that ended at end (pool clock), if the call
// waited at all.
func (p *Pool[C]) recordWait(a *acquisition[C], end int64) {
	if a.waitStart < 0 {
		return
	}
	p.stats.waitCount.Add(1)
	p.stats.waitNanos.Add(end - a.waitStart)
}
