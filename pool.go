// This file holds the Pool, its constructor and the one acquire loop that
// Acquire, With, TryAcquire and the registry's With share. A connection's
// states and the edges between them are in states.go; the acquire-time
// checks in check.go; the lock-free path in fast.go; the release path
// and the loan's handle in pooled_conn.go; the connector calls in
// connector.go, the wait list and its timer in waitlist.go, dialling and
// backoff in dial.go, the coarse clock in clock.go, the reaper in
// reaper.go, closing in close.go, Stats in stats.go, hooks in hooks.go,
// leak detection in leak.go, logging in log.go and the errors in
// errors.go.

package pool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Pool lends connections to one data source. It is safe for concurrent use.
type Pool[C Connector] struct {
	// factory is what dials: New's, or SetFactory's last. A dial loads
	// it after it reads genFast, so that a connection of an old factory
	// is always of an old generation.
	factory atomic.Pointer[Factory[C]]

	// clock is the pool's clock (see clock.go): real and coarse readings,
	// in nanoseconds since the pool was made.
	clock clock

	// dialCtx is the parent of every dial's context; Close cancels it.
	dialCtx     context.Context
	cancelDials context.CancelFunc

	// log is Config.Logger with the pool's name attached; nil logs
	// nothing.
	log *slog.Logger
	// manager is the Manager that made the pool, nil for New.
	manager *Manager[C]

	// waiterCache recycles waiters with their channel, so that waiting
	// allocates nothing.
	waiterCache sync.Pool

	// bg counts dial goroutines and a running reaper step. Add is called
	// only with mu held and closed false, so that Close's Wait (after it
	// sets closed) sees every Add.
	bg sync.WaitGroup

	// mu protects the fields below and every entry's state. It is never
	// held across a dial, Ping, Reset, Close or any other user code: work
	// of that kind is collected under mu and done after unlocking.
	// Functions that need mu held end in Locked, and leave it held.
	mu sync.Mutex
	// closed is set once, by Close, under mu. Holders of mu read it; it is
	// atomic so that the Manager's lock-free lookup can read it too.
	closed atomic.Bool
	// aboveMaxFast mirrors aboveMax, for the lock-free path (fast.go).
	aboveMaxFast atomic.Bool
	// idle is where connections rest (idle.go): its stack under mu, its
	// slots without it. When the stack is not empty, waiters is empty.
	idle idleSet[C]
	// n counts connections by state as the lock sees them (states.go):
	// n[stateIdle] == len(idle.stack), a parked connection counted lent; the
	// open connections, every state together, never exceed maxSize but
	// after SetMaxSize lowered it.
	n books
	// aboveMax is set while the pool holds more than maxSize, since
	// SetMaxSize lowered it below the connections open, until enough of
	// them are closed (goneLocked clears it). Only then does a release
	// have to count the connections open.
	aboveMax bool
	// bm is the pool's account with cfg.Budget, nil without one. Set in
	// New, then only read.
	bm *member
	// waiters starts with its length, which every release reads; its
	// queues follow.
	waiters waitList[C]
	// wakes are the deliveries to waiters queued under mu, sent by
	// unlock once mu is free (wake.go).
	wakes wakeList[C]
	// The fields from mu to waiters.len are the ones every Acquire and
	// Release touch; they sit together, on two cache lines, so a critical
	// section touches few (TestEntryFillsWholeCacheLines checks it).

	// maxSize and minSize are cfg's, or as SetMaxSize and SetMinSize last
	// set them. After a SetMaxSize below the connections open, the pool
	// stays above maxSize until its loans come back (see resize.go).
	maxSize, minSize int

	// conns holds every connection dialled and not yet closed, each at
	// its entry.index: what CheckAccounting counts states from.
	conns   []*entry[C]
	sites   siteCache      // Holders' acquire sites
	ready   []*readyWaiter // WaitReady callers
	timeout alarm          // the AcquireTimeout timer (armTimeoutLocked)
	dialing dialState
	demand  demandState

	reapTimer *time.Timer // nil when ReapInterval is zero
	drained   chan struct{}

	// testHookGaveUp, if set, runs when a waiter has given up and before it
	// takes the lock to leave the queue. Tests use it to serve the waiter
	// in that window.
	testHookGaveUp func()

	// The counters are atomics, kept off the cache line of mu: counting
	// an event must not slow the lock down.
	_     [64]byte
	stats counters

	// cfg is read-only after New. It sits last, a cache line away from the
	// counters, so that what the hot path reads of it (Hooks,
	// LeakThreshold, the check intervals) shares no line with a field
	// another core writes. Placed first, once Hooks had grown it, the
	// parallel benchmark ran about 30 % slower (bench/NOTES.md).
	_ [64]byte
	// timeLoans is set when loans are timed: for the Release hook, or to
	// measure demand. Set in New, then only read.
	timeLoans bool
	// genFast is the pool's generation, raised by Reset (with mu held,
	// rarely); read without the lock by dials as they begin and by park,
	// beside the other fields the hot path only reads.
	genFast atomic.Uint64
	cfg     Config
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
		cfg:     cfg,
		clock:   newClock(),
		drained: make(chan struct{}),
		maxSize: cfg.MaxSize,
		minSize: cfg.MinSize,
	}
	p.factory.Store(&factory)
	if cfg.Logger != nil {
		p.log = cfg.Logger
		if cfg.Name != "" {
			p.log = cfg.Logger.With("source", cfg.Name)
		}
	}
	if b := cfg.Budget; b != nil {
		var err error
		if p.bm, err = b.join(p, cfg.Name, cfg.MinSize, max(cfg.Weight, 1), cfg.Share.Group, shareKind[C](), cfg.reserved); err != nil {
			return nil, err
		}
	}
	p.dialCtx, p.cancelDials = context.WithCancel(context.Background())
	p.waiterCache.New = func() any { return &waiter[C]{ch: make(chan result[C], 1)} }
	p.idle.init(cfg.MaxSize)
	p.timeout.fn = p.expireWaiters
	p.dialing.retry.fn = p.retryDials
	p.mu.Lock()
	p.refillLocked()
	if cfg.ReapInterval > 0 {
		p.reapTimer = time.AfterFunc(cfg.ReapInterval, p.reap)
	}
	p.timeLoans = cfg.Hooks.Release != nil || cfg.measuresDemand()
	if cfg.measuresDemand() {
		p.startDemandLocked()
	}
	p.unlock()
	p.settleBudget() // a MinSize the budget refused: reclaim for it
	return p, nil
}

// Config returns the configuration the pool was created with, with
// MinSize and MaxSize as SetMinSize and SetMaxSize last set them. A pool
// made with it reserves its own MinSize on the Budget: the registered
// source's reservation stays with the source.
func (p *Pool[C]) Config() Config {
	cfg := p.cfg
	cfg.reserved = nil
	p.mu.Lock()
	cfg.MinSize, cfg.MaxSize = p.minSize, p.maxSize
	p.unlock()
	return cfg
}

// Acquire lends a connection, waiting if none is free.
//
// An idle connection is taken newest first. It is checked before it is
// lent when it has an IsValid, when it is near MaxLifetime, or when it
// has been idle PingAfterIdle or longer (then it is pinged, bounded by
// PingTimeout); one that fails is closed and the next is tried. When none
// is idle and the pool is below MaxSize, a dial is started; callers then
// wait in FIFO order for the first connection released or dialled. A
// caller whose connection fails its check keeps its place at the head of
// the queue.
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
	e, err := p.get(ctx, waitForOne)
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
	fnErr, acquireErr := p.with(ctx, fn)
	if acquireErr != nil {
		return acquireErr
	}
	return fnErr
}

// TryAcquire lends an idle connection without ever waiting. When none is
// idle it returns ErrPoolExhausted, and if the pool is below MaxSize it
// starts a dial in the background (unless the source is down and backing
// off) so that a later call may succeed. ctx bounds only the health-check
// Ping, and AcquireTimeout does not apply. On a closed pool it returns
// ErrPoolClosed.
func (p *Pool[C]) TryAcquire(ctx context.Context) (*PooledConn[C], error) {
	e, err := p.get(ctx, noWait)
	if err != nil {
		return nil, err
	}
	return p.lend(e), nil
}

// with is With for the pool and for the registry, which wraps only the
// acquire error.
func (p *Pool[C]) with(ctx context.Context, fn func(C) error) (fnErr, acquireErr error) {
	e, err := p.get(ctx, waitForOne)
	if err != nil {
		return nil, err
	}
	return p.runWith(e, p.startLoan(e), fn), nil
}

// acquireMode says whether an acquire may wait.
type acquireMode uint8

const (
	waitForOne acquireMode = iota // Acquire, With
	noWait                        // TryAcquire
)

// outcome is how one step of the acquire loop ended.
type outcome uint8

const (
	outcomeLent  outcome = iota // the caller has the connection, in state lent
	outcomeRetry                // the connection was closed: try again
	outcomeFail                 // the call ends with an error
	outcomeNone                 // nothing was parked (lendParked): go the locked way
)

// get is the one entry point of every acquire: the loop, timed for the
// Acquire hook. It returns a connection in state lent, and counts the
// loan in Stats.AcquireCount: in the slot it was taken from, if it was
// parked, else in the caller's (idleSet.countLoan).
func (p *Pool[C]) get(ctx context.Context, mode acquireMode) (*entry[C], error) {
	var start int64
	if p.cfg.Hooks.Acquire != nil {
		start = p.clock.now()
	}
	e, slot, err := p.acquire(ctx, mode)
	switch {
	case err != nil:
	case slot != nil:
		slot.loans.Add(1)
	default:
		p.idle.countLoan()
	}
	if p.cfg.Hooks.Acquire != nil {
		p.reportAcquire(start, err)
	}
	return e, err
}

func (p *Pool[C]) acquire(ctx context.Context, mode acquireMode) (*entry[C], *fastSlot[C], error) {
	if err := ctx.Err(); err != nil {
		p.stats.canceled.Add(1)
		return nil, nil, err
	}
	// TryAcquire's clock never starts: AcquireTimeout does not apply.
	a := acquisition[C]{started: mode == noWait}
	for {
		switch e, slot, out, err := p.lendParked(ctx, &a); out { // fast.go
		case outcomeLent:
			return e, slot, nil
		case outcomeFail:
			return nil, nil, err
		case outcomeRetry:
			continue // the connection was closed
		}
		// While callers wait, this one most likely will too: what queueing
		// costs that needs no lock (the real clock, a waiter, the caller's
		// class) is done before taking it.
		var w *waiter[C]
		now := p.clock.coarse()
		if mode == waitForOne && p.waiters.gate.Load() != 0 {
			now = p.clock.now()
			w = p.newWaiter(ctx, &a, now)
		}
		p.mu.Lock()
		if p.closed.Load() {
			p.unlock()
			p.recycle(w)
			return nil, nil, ErrPoolClosed
		}
		if e, state := p.takeIdleLocked(now); e != nil {
			p.unlock()
			p.recycle(w)
			if state == stateLent {
				return e, nil, nil
			}
			switch out, err := p.check(ctx, e, &a, nil); out {
			case outcomeLent:
				return e, nil, nil
			case outcomeFail:
				return nil, nil, err
			}
			continue // outcomeRetry: the connection was closed
		}
		if mode == noWait {
			if p.n[stateDialling] <= p.waiters.len && p.roomForTryLocked() {
				p.startDialsLocked(1)
			}
			p.unlock()
			return nil, nil, ErrPoolExhausted
		}
		if w == nil {
			now = p.clock.now() // a coarse reading would start AcquireTimeout early
			w = p.newWaiter(ctx, &a, now)
		}
		err := p.enqueueLocked(w, &a, now)
		p.unlock()
		if err != nil {
			p.recycle(w)
			return nil, nil, err
		}
		p.settleBudget() // a dial the budget refused: reclaim a slot
		e, err := p.waitTurn(ctx, w, &a)
		p.recordWait(a.waitStart)
		return e, nil, err
	}
}

// newWaiter returns a waiter for the caller, not yet queued, and starts
// the call's clock at now, a real reading, if it has not started. It
// reads the caller's class and deadline here, outside the lock.
func (p *Pool[C]) newWaiter(ctx context.Context, a *acquisition[C], now int64) *waiter[C] {
	if !a.started {
		a.begin(ctx, p, now)
	}
	w := p.waiterCache.Get().(*waiter[C])
	w.timeoutAt = a.timeoutAt
	w.ctx = ctx
	w.class = uint8(PriorityFrom(ctx).class())
	w.deadline = 0
	if p.cfg.ShedHopeless {
		w.deadline = p.deadlineOf(ctx, a.timeoutAt)
	}
	return w
}

// enqueueLocked queues w, the caller's, made by newWaiter at now (a real
// reading), or returns the error that ends its call at once: its
// AcquireTimeout has passed, the source is down and no connection is
// coming for it, it would wait past its deadline (ShedHopeless), or
// MaxWaiters callers already wait. p.mu must be held.
func (p *Pool[C]) enqueueLocked(w *waiter[C], a *acquisition[C], now int64) error {
	if a.timeoutAt != 0 && now >= a.timeoutAt {
		return p.timedOutLocked(a)
	}
	if err := p.failFastLocked(now, w, a); err != nil {
		p.stats.failedFast.Add(1)
		return err
	}
	if p.cfg.ShedHopeless {
		if err := p.shedLocked(int(w.class), w.deadline, now); err != nil {
			return err
		}
	}
	if max := p.cfg.MaxWaiters; max > 0 && p.waiters.len >= max {
		return p.tooManyWaitersLocked()
	}
	w.queuedAt = now
	p.waiters.pushBack(w)
	p.unparkForWaitersLocked(now)
	a.waitStart = now
	if a.timeoutAt != 0 {
		p.armTimeoutLocked(a.timeoutAt, now)
	}
	p.dialForWaitersLocked()
	return nil
}

// tooManyWaitersLocked counts a caller refused because MaxWaiters callers
// wait, and returns its error. p.mu must be held.
func (p *Pool[C]) tooManyWaitersLocked() error {
	p.stats.tooManyWaiters.Add(1)
	h := p.holdersLocked()
	return newError(fmt.Sprintf("too many waiters: %d callers already wait (MaxWaiters)%s", p.cfg.MaxWaiters, h.suffix()), ErrTooManyWaiters, h.err())
}

// waitTurn waits on w, queued by the caller, and checks the connection it
// is handed if a check is due. A connection that fails its check is
// replaced and the caller keeps its place at the head of the queue: check
// puts w back at the front under the same lock that frees the failed
// connection's slot, so the replacement cannot be handed to anyone behind
// it. It returns a connection in state lent, or the error that ends the
// call.
func (p *Pool[C]) waitTurn(ctx context.Context, w *waiter[C], a *acquisition[C]) (*entry[C], error) {
	defer p.recycle(w)
	for {
		r, err := p.wait(ctx, w, a)
		if err != nil {
			return nil, err
		}
		if !r.check {
			return r.e, nil
		}
		switch out, err := p.check(ctx, r.e, a, w); out {
		case outcomeLent:
			return r.e, nil
		case outcomeFail:
			return nil, err
		}
	}
}

// recycle puts w, no longer queued (or never), back in the cache,
// holding on to nothing of its caller. A nil w is left alone.
func (p *Pool[C]) recycle(w *waiter[C]) {
	if w == nil {
		return
	}
	w.ctx = nil
	p.waiterCache.Put(w)
}
