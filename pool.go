// Package pool pools connections to data sources: a generic Pool for one
// source, a Manager that owns one lazily created Pool per source ID, and a
// PooledRegistry that handlers call by ID.
//
// The pool lock is never held across I/O or user code: dialling, pinging,
// resetting and closing connections all happen outside it. A released
// connection is handed straight to the longest-waiting caller, and idle
// connections are reused newest first.
package pool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
// closes the connection instead.
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
type Factory[C Connector] func(ctx context.Context) (C, error)

var (
	// ErrPoolClosed is returned when acquiring from, or waiting on, a pool
	// that has been closed.
	ErrPoolClosed = errors.New("pool: pool is closed")

	// ErrAcquireTimeout is returned by Acquire when Config.AcquireTimeout
	// passes before a connection is free. The caller's own deadline and
	// cancellation return the context's error instead.
	ErrAcquireTimeout = errors.New("pool: acquire timed out")

	// ErrPoolExhausted is returned by TryAcquire when no idle connection is
	// ready.
	ErrPoolExhausted = errors.New("pool: no idle connection")

	// ErrBadConn is returned, or wrapped, by a With callback to say that the
	// connection is broken: With then closes it instead of reusing it.
	ErrBadConn = errors.New("pool: bad connection")

	// ErrDial is wrapped, together with the Factory's own error, in the
	// error that Acquire returns when the dial made for it fails.
	ErrDial = errors.New("pool: dial failed")
)

type closeReason int

const (
	reasonIdle closeReason = iota
	reasonLifetime
	reasonBroken
	reasonPoolClosed
)

// Pool lends connections to one data source. It is safe for concurrent use.
type Pool[C Connector] struct {
	factory Factory[C]
	cfg     Config

	// epoch anchors the pool's clock: times are kept as monotonic
	// nanoseconds since epoch (see nanos), which costs one clock read
	// where time.Now costs two.
	epoch time.Time

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

	waitCount      atomic.Int64
	waitNanos      atomic.Int64
	canceled       atomic.Int64
	timedOut       atomic.Int64
	created        atomic.Int64
	dialErrors     atomic.Int64
	closedIdle     atomic.Int64
	closedLifetime atomic.Int64
	closedBroken   atomic.Int64
	closedPool     atomic.Int64

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
	idle    []*PooledConn[C]
	waiters waitList[C]
	// numOpen == len(idle) + numInUse + numDialing + numClosing, and never
	// exceeds cfg.MaxSize.
	numOpen     int
	numInUse    int
	numDialing  int
	numClosing  int
	lastDialErr error
	ready       []chan error // WaitReady callers
	// acquireCount counts connections lent and kept by their caller (a
	// connection that fails its acquire-time check is uncounted).
	acquireCount int64
	// lastReap is when the reaper last ran (pool clock); release uses it to
	// stamp idleSince without reading the clock.
	lastReap int64
	// timeoutTimer fails waiters whose AcquireTimeout has passed (see
	// armTimeoutLocked); created on first use. timeoutArmedAt is when it is
	// due, valid while timeoutArmed.
	timeoutTimer   *time.Timer
	timeoutArmed   bool
	timeoutArmedAt int64
}

// New validates cfg and returns a pool that dials with factory. It does not
// block: MinSize connections are dialled in the background (see WaitReady).
func New[C Connector](factory Factory[C], cfg Config) (*Pool[C], error) {
	if factory == nil {
		return nil, fmt.Errorf("%w: factory is nil", ErrInvalidConfig)
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
	p.replenishLocked(true)
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
// An idle connection is taken newest first and checked (IsValid, MaxLifetime,
// and a Ping bounded by PingTimeout when it has been idle PingAfterIdle or
// longer); one that fails is closed and the next is tried. When none is
// idle and the pool is below MaxSize, a dial is started; callers then wait
// in FIFO order for the first connection released or dialled.
//
// If ctx is already done, Acquire returns ctx.Err() without taking a
// connection. If ctx ends while waiting, Acquire returns ctx.Err(); if
// Config.AcquireTimeout passes first, it returns an error matching
// ErrAcquireTimeout. Either way the caller is never left holding a
// connection, and a connection handed to it at that instant goes back to
// the pool. A dial started for a caller who gives up is not cancelled: the
// connection serves the next waiter or becomes idle. If the dial made for
// the longest waiter fails, that waiter gets an error wrapping both ErrDial
// and the Factory's error. On a closed pool Acquire returns ErrPoolClosed.
func (p *Pool[C]) Acquire(ctx context.Context) (*PooledConn[C], error) {
	if err := ctx.Err(); err != nil {
		p.canceled.Add(1)
		return nil, err
	}
	// The caller's deadline on the pool's clock, read outside the lock and
	// without a clock read; AcquireTimeout applies only if it ends sooner.
	ctxDeadline := int64(math.MaxInt64)
	if dl, ok := ctx.Deadline(); ok {
		ctxDeadline = int64(dl.Sub(p.epoch))
	}
	waitStart := int64(-1) // -1 until the caller first has to wait
	var timeoutAt int64    // zero when no AcquireTimeout applies
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			if waitStart >= 0 {
				p.recordWait(waitStart, p.nanos())
			}
			return nil, ErrPoolClosed
		}
		if pc := p.popIdleLocked(); pc != nil {
			p.mu.Unlock()
			if p.checkOut(ctx, pc) {
				p.recordWait(waitStart, pc.acquiredAt)
				return pc, nil
			}
			continue
		}
		if waitStart < 0 {
			waitStart = p.nanos()
			if t := waitStart + int64(p.cfg.AcquireTimeout); p.cfg.AcquireTimeout > 0 && t < ctxDeadline {
				timeoutAt = t
			}
		}
		w := p.waiterCache.Get().(*waiter[C])
		w.timeoutAt = timeoutAt
		p.waiters.pushBack(w)
		if timeoutAt != 0 {
			p.armTimeoutLocked(timeoutAt)
		}
		p.replenishLocked(false)
		p.mu.Unlock()

		pc, err := p.wait(ctx, w)
		if err != nil {
			p.recordWait(waitStart, p.nanos())
			return nil, err
		}
		if p.checkOut(ctx, pc) {
			p.recordWait(waitStart, pc.acquiredAt)
			return pc, nil
		}
	}
}

// TryAcquire lends an idle connection without ever waiting. When none is
// idle it returns ErrPoolExhausted, and if the pool is below MaxSize it
// starts a dial in the background so that a later call may succeed. ctx
// bounds only the health-check Ping. On a closed pool it returns
// ErrPoolClosed.
func (p *Pool[C]) TryAcquire(ctx context.Context) (*PooledConn[C], error) {
	if err := ctx.Err(); err != nil {
		p.canceled.Add(1)
		return nil, err
	}
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		pc := p.popIdleLocked()
		if pc == nil {
			if p.numOpen < p.cfg.MaxSize && p.numDialing <= p.waiters.len {
				p.startDialLocked()
			}
			p.mu.Unlock()
			return nil, ErrPoolExhausted
		}
		p.mu.Unlock()
		if p.checkOut(ctx, pc) {
			return pc, nil
		}
	}
}

// With acquires a connection, calls fn with it and ends the loan: if fn
// returns an error matching ErrBadConn the connection is closed, otherwise
// it is released for reuse. If fn panics, the connection is closed and the
// panic goes on. With returns the acquire error, or fn's error unchanged.
func (p *Pool[C]) With(ctx context.Context, fn func(C) error) error {
	pc, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	return runWith(pc, fn)
}

func runWith[C Connector](pc *PooledConn[C], fn func(C) error) (err error) {
	returned := false
	defer func() {
		if !returned { // fn panicked
			pc.Discard()
		}
	}()
	err = fn(pc.conn)
	returned = true
	if errors.Is(err, ErrBadConn) {
		pc.Discard()
	} else {
		pc.Release()
	}
	return err
}

// popIdleLocked takes the newest idle connection and marks it lent, or
// returns nil. p.mu must be held.
func (p *Pool[C]) popIdleLocked() *PooledConn[C] {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	pc := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.numInUse++
	p.acquireCount++
	pc.held.Store(true)
	return pc
}

// checkOut runs the acquire-time health checks on a connection just lent to
// this caller, outside the lock, and stamps the loan's start. On failure it
// closes the connection and returns false.
//
// This is the one clock read of an Acquire-Release cycle: release stamps
// idleSince from acquiredAt and the reaper's last run instead of reading
// the clock, so idle time is over-estimated by at most the hold time. That
// errs towards an extra Ping after a long hold, never towards a missed one.
func (p *Pool[C]) checkOut(ctx context.Context, pc *PooledConn[C]) bool {
	now := p.nanos()
	pc.acquiredAt = now
	reason := reasonBroken
	ok := true
	switch {
	case p.expired(pc, now):
		ok, reason = false, reasonLifetime
	case pc.validator != nil && !pc.validator.IsValid():
		ok = false
	case p.cfg.PingAfterIdle >= 0 && time.Duration(now-pc.idleSince) >= p.cfg.PingAfterIdle:
		ok = p.ping(ctx, pc) == nil
	}
	if ok {
		return true
	}
	pc.held.Store(false)
	p.closeLent(pc, reason, true)
	return false
}

func (p *Pool[C]) ping(ctx context.Context, pc *PooledConn[C]) error {
	if p.cfg.PingTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.PingTimeout)
		defer cancel()
	}
	return pc.conn.Ping(ctx)
}

func (p *Pool[C]) expired(pc *PooledConn[C], now int64) bool {
	return now >= pc.expiresAt
}

// release runs the release-time checks outside the lock, then hands the
// connection to the longest waiter or puts it on the idle stack. It reads
// no clock (see checkOut); MaxLifetime is enforced on acquire and by the
// reaper.
func (p *Pool[C]) release(pc *PooledConn[C]) {
	// Reset first, so that a connector that is invalid only because of
	// state the borrower left (an open transaction, say) can clear it.
	if (pc.resetter != nil && p.reset(pc) != nil) || (pc.validator != nil && !pc.validator.IsValid()) {
		p.closeLent(pc, reasonBroken, false)
		return
	}
	p.returnLent(pc, -1, false)
}

// closeLent takes a connection that was lent (and is no longer held) out of
// service and closes it outside the lock. uncount also takes back its
// acquire, for a loan that never reached the caller.
func (p *Pool[C]) closeLent(pc *PooledConn[C], reason closeReason, uncount bool) {
	p.mu.Lock()
	p.numInUse--
	if uncount {
		p.acquireCount--
	}
	p.numClosing++
	p.mu.Unlock()
	p.finishClose(pc, reason)
}

// returnLent gives back a connection that was lent (and is no longer held):
// to the longest waiter or the idle stack, stamped idle since idleSince
// (or, when idleSince is negative, since its loan began or the reaper last
// ran, whichever is later: see checkOut), or closed if the pool is closed.
// uncount also takes back its acquire, for a loan that never reached the
// caller.
func (p *Pool[C]) returnLent(pc *PooledConn[C], idleSince int64, uncount bool) {
	p.mu.Lock()
	p.numInUse--
	if uncount {
		p.acquireCount--
	}
	if p.closed.Load() {
		p.numClosing++
		p.mu.Unlock()
		p.finishClose(pc, reasonPoolClosed)
		return
	}
	if idleSince < 0 {
		idleSince = max(pc.acquiredAt, p.lastReap)
	}
	p.putLocked(pc, idleSince)
	p.mu.Unlock()
}

func (p *Pool[C]) reset(pc *PooledConn[C]) error {
	ctx := context.Background()
	if p.cfg.ResetTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.ResetTimeout)
		defer cancel()
	}
	return pc.resetter.Reset(ctx)
}

// putLocked hands a connection that is not counted anywhere to the
// longest waiter, or pushes it on the idle stack, stamped idle since
// idleSince. p.mu must be held and the pool open.
func (p *Pool[C]) putLocked(pc *PooledConn[C], idleSince int64) {
	pc.idleSince = idleSince
	if w := p.waiters.popFront(); w != nil {
		p.numInUse++
		p.acquireCount++
		pc.held.Store(true)
		w.ch <- result[C]{pc: pc} // buffered, and w has exactly one sender
		return
	}
	p.idle = append(p.idle, pc)
}

// finishClose closes a connection already counted in numClosing, outside
// the lock, then uncounts it and dials replacements if needed.
func (p *Pool[C]) finishClose(pc *PooledConn[C], reason closeReason) error {
	err := pc.conn.Close()
	switch reason {
	case reasonIdle:
		p.closedIdle.Add(1)
	case reasonLifetime:
		p.closedLifetime.Add(1)
	case reasonBroken:
		p.closedBroken.Add(1)
	case reasonPoolClosed:
		p.closedPool.Add(1)
	}
	p.mu.Lock()
	p.numClosing--
	p.numOpen--
	p.replenishLocked(true)
	p.signalDrainedLocked()
	p.mu.Unlock()
	return err
}

// errTimedOut is what the timeout timer sends a waiter whose
// AcquireTimeout has passed; wait turns it into the error the caller sees.
var errTimedOut = errors.New("pool: internal: wait timed out")

// armTimeoutLocked makes sure the pool's one timeout timer fires no later
// than at (pool clock). Waiters carry no timer of their own: the timer is
// armed for the earliest deadline, and since waiters queue in order, most
// enqueues find it armed early enough and touch no timer. p.mu must be held.
func (p *Pool[C]) armTimeoutLocked(at int64) {
	if p.timeoutArmed && p.timeoutArmedAt <= at {
		return
	}
	d := time.Duration(at - p.nanos())
	if p.timeoutTimer == nil {
		p.timeoutTimer = time.AfterFunc(d, p.expireWaiters)
	} else {
		p.timeoutTimer.Reset(d)
	}
	p.timeoutArmed, p.timeoutArmedAt = true, at
}

// expireWaiters is the timeout timer's callback: it fails every waiter
// whose AcquireTimeout has passed and re-arms for the earliest remaining
// deadline.
func (p *Pool[C]) expireWaiters() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeoutArmed = false
	if p.closed.Load() {
		return
	}
	now := p.nanos()
	next := int64(math.MaxInt64)
	for w := p.waiters.head; w != nil; {
		following := w.next
		switch {
		case w.timeoutAt == 0:
		case w.timeoutAt <= now:
			p.waiters.remove(w)
			w.ch <- result[C]{err: errTimedOut}
		default:
			next = min(next, w.timeoutAt)
		}
		w = following
	}
	if next != math.MaxInt64 {
		p.armTimeoutLocked(next)
	}
}

// wait blocks until w is served or ctx ends. w has been queued by the
// caller and is recycled here.
func (p *Pool[C]) wait(ctx context.Context, w *waiter[C]) (*PooledConn[C], error) {
	var err error
	select {
	case r := <-w.ch:
		p.waiterCache.Put(w)
		if r.err == errTimedOut {
			p.timedOut.Add(1)
			return nil, p.timeoutError()
		}
		return r.pc, r.err
	case <-ctx.Done():
		err = ctx.Err()
		p.canceled.Add(1)
	}
	if p.testHookGaveUp != nil {
		p.testHookGaveUp()
	}
	p.mu.Lock()
	if w.queued {
		p.waiters.remove(w)
		p.mu.Unlock()
		p.waiterCache.Put(w)
		return nil, err
	}
	p.mu.Unlock()
	// Served at the same instant we gave up: the result is already in the
	// buffer. Pretend we were never served and put the connection back.
	r := <-w.ch
	p.waiterCache.Put(w)
	if r.pc != nil {
		r.pc.held.Store(false)
		p.returnLent(r.pc, r.pc.idleSince, true)
	}
	return nil, err
}

func (p *Pool[C]) timeoutError() error {
	p.mu.Lock()
	inUse, lastErr := p.numInUse, p.lastDialErr
	p.mu.Unlock()
	if lastErr != nil {
		return fmt.Errorf("%w after %v (%d of %d in use; last dial error: %v)",
			ErrAcquireTimeout, p.cfg.AcquireTimeout, inUse, p.cfg.MaxSize, lastErr)
	}
	return fmt.Errorf("%w after %v (%d of %d in use)", ErrAcquireTimeout, p.cfg.AcquireTimeout, inUse, p.cfg.MaxSize)
}

// recordWait counts a wait from start to end (pool clock), if the caller
// waited at all (start >= 0).
func (p *Pool[C]) recordWait(start, end int64) {
	if start < 0 {
		return
	}
	p.waitCount.Add(1)
	p.waitNanos.Add(end - start)
}

// replenishLocked starts the dials needed so that every waiter has a
// connection coming, and, if refill is set, so that the pool holds at
// least MinSize, never exceeding MaxSize. It is not called with refill set
// after a failed dial, so a dead server is not redialled in a loop. p.mu
// must be held.
func (p *Pool[C]) replenishLocked(refill bool) {
	if p.closed.Load() {
		return
	}
	want := p.waiters.len - p.numDialing
	if refill {
		want = max(want, p.cfg.MinSize-p.numOpen)
	}
	want = min(want, p.cfg.MaxSize-p.numOpen)
	for range want {
		p.startDialLocked()
	}
}

// startDialLocked counts a new connection as dialling and dials it in the
// background. p.mu must be held and the pool open.
func (p *Pool[C]) startDialLocked() {
	p.numOpen++
	p.numDialing++
	p.bg.Add(1)
	go p.dial()
}

func (p *Pool[C]) dial() {
	defer p.bg.Done()
	ctx := p.dialCtx
	if p.cfg.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.DialTimeout)
		defer cancel()
	}
	conn, err := p.factory(ctx)
	if err != nil {
		p.dialErrors.Add(1)
		err = fmt.Errorf("%w: %w", ErrDial, err)
		p.mu.Lock()
		p.numDialing--
		p.numOpen--
		p.lastDialErr = err
		if w := p.waiters.popFront(); w != nil {
			w.ch <- result[C]{err: err}
		}
		p.replenishLocked(false)
		p.notifyReadyLocked()
		p.signalDrainedLocked()
		p.mu.Unlock()
		return
	}
	p.created.Add(1)
	now := p.nanos()
	pc := &PooledConn[C]{pool: p, conn: conn, createdAt: p.epoch.Add(time.Duration(now)), expiresAt: math.MaxInt64}
	if lt := p.cfg.MaxLifetime; lt > 0 {
		pc.expiresAt = now + int64(lt-rand.N(lt/10+1))
	}
	pc.validator, _ = any(conn).(Validator)
	pc.resetter, _ = any(conn).(Resetter)
	p.mu.Lock()
	p.numDialing--
	if p.closed.Load() {
		p.numClosing++
		p.mu.Unlock()
		p.finishClose(pc, reasonPoolClosed)
		return
	}
	p.lastDialErr = nil
	p.putLocked(pc, now)
	p.notifyReadyLocked()
	p.mu.Unlock()
}

// WaitReady blocks until the pool holds MinSize connections. It returns
// nil once it does; the dial error if every dial in flight has failed
// first; ctx's error, with the last dial error if any, if ctx ends first;
// ErrPoolClosed if the pool is closed. A pool that has fallen below MinSize
// with no dial in flight starts the dials again.
func (p *Pool[C]) WaitReady(ctx context.Context) error {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	if p.liveLocked() >= p.cfg.MinSize {
		p.mu.Unlock()
		return nil
	}
	p.replenishLocked(true)
	ch := make(chan error, 1)
	p.ready = append(p.ready, ch)
	p.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, c := range p.ready {
			if c == ch {
				p.ready = append(p.ready[:i], p.ready[i+1:]...)
				break
			}
		}
		if p.lastDialErr != nil {
			return fmt.Errorf("pool: not ready: %w (last dial error: %v)", ctx.Err(), p.lastDialErr)
		}
		return ctx.Err()
	}
}

// liveLocked counts dialled connections not being closed. p.mu must be held.
func (p *Pool[C]) liveLocked() int {
	return p.numOpen - p.numDialing - p.numClosing
}

// notifyReadyLocked answers WaitReady callers once MinSize connections are
// live, or once every dial in flight has failed. p.mu must be held.
func (p *Pool[C]) notifyReadyLocked() {
	if len(p.ready) == 0 {
		return
	}
	var err error
	switch {
	case p.closed.Load():
		err = ErrPoolClosed
	case p.liveLocked() >= p.cfg.MinSize:
	case p.numDialing == 0 && p.lastDialErr != nil:
		err = p.lastDialErr
	default:
		return
	}
	for _, ch := range p.ready {
		ch <- err
	}
	p.ready = nil
}

func (p *Pool[C]) signalDrainedLocked() {
	if p.closed.Load() && p.numOpen == 0 {
		select {
		case <-p.drained:
		default:
			close(p.drained)
		}
	}
}

// Close closes the pool: waiting and later Acquires get ErrPoolClosed,
// idle connections are closed now, dials in flight are cancelled, and
// connections in use are closed when they are released. Close returns once
// every dial and any running reaper step have finished (a timer that fires
// later sees the pool closed and returns at once), with the errors of the
// idle connections' Close joined. Closing a closed pool returns nil.
func (p *Pool[C]) Close() error {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return nil
	}
	p.closed.Store(true)
	idle := p.idle
	p.idle = nil
	p.numClosing += len(idle)
	for w := p.waiters.popFront(); w != nil; w = p.waiters.popFront() {
		w.ch <- result[C]{err: ErrPoolClosed}
	}
	p.notifyReadyLocked()
	p.signalDrainedLocked()
	p.mu.Unlock()

	p.cancelDials()
	if p.reapTimer != nil {
		p.reapTimer.Stop()
	}
	p.mu.Lock()
	if p.timeoutTimer != nil {
		p.timeoutTimer.Stop()
	}
	p.mu.Unlock()
	p.bg.Wait()
	var errs []error
	for _, pc := range idle {
		if err := p.finishClose(pc, reasonPoolClosed); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Shutdown closes the pool like Close, then waits until every connection
// in use has been released and closed, or until ctx ends, in which case it
// returns ctx's error. Connections still in use then are closed when they
// are released.
func (p *Pool[C]) Shutdown(ctx context.Context) error {
	err := p.Close()
	select {
	case <-p.drained:
		return err
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
}

// reap is the reaper's timer callback: one reapLocked step, the closes it
// asks for done outside the lock, and the next run scheduled.
func (p *Pool[C]) reap() {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return
	}
	p.bg.Add(1)
	defer p.bg.Done()
	p.lastReap = p.nanos()
	closing := p.reapLocked(p.lastReap)
	p.mu.Unlock()
	for _, c := range closing {
		_ = p.finishClose(c.pc, c.reason)
	}
	p.mu.Lock()
	if !p.closed.Load() {
		p.replenishLocked(true)
		p.reapTimer.Reset(p.cfg.ReapInterval)
	}
	p.mu.Unlock()
}

type reaped[C Connector] struct {
	pc     *PooledConn[C]
	reason closeReason
}

// reapLocked is one step of the reaper, at time now: it takes off the idle
// stack every connection past its lifetime, and those idle for MaxIdleTime
// or longer while the pool stays at MinSize or above, counts them as
// closing and returns them for the caller to close outside the lock. p.mu
// must be held.
func (p *Pool[C]) reapLocked(now int64) []reaped[C] {
	var closing []reaped[C]
	open := p.numOpen - p.numClosing
	kept := p.idle[:0]
	for _, pc := range p.idle { // oldest first
		switch {
		case p.expired(pc, now):
			closing = append(closing, reaped[C]{pc, reasonLifetime})
			open--
		case p.cfg.MaxIdleTime > 0 && time.Duration(now-pc.idleSince) >= p.cfg.MaxIdleTime && open > p.cfg.MinSize:
			closing = append(closing, reaped[C]{pc, reasonIdle})
			open--
		default:
			kept = append(kept, pc)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.numClosing += len(closing)
	return closing
}

// Stats is a snapshot of a pool's state and counters.
type Stats struct {
	Total   int // connections open: Idle + InUse + Dialing + Closing
	Idle    int // connections on the idle stack
	InUse   int // connections lent to callers
	Dialing int // dials in flight
	Closing int // connections taken out of service and being closed
	Waiting int // Acquire calls waiting for a connection
	MinSize int // Config.MinSize
	MaxSize int // Config.MaxSize

	AcquireCount     int64         // successful Acquire and TryAcquire calls
	WaitCount        int64         // Acquire calls that had to wait
	WaitDuration     time.Duration // total time spent waiting by those calls
	CanceledAcquires int64         // Acquire calls ended by the caller's context
	TimedOutAcquires int64         // Acquire calls ended by AcquireTimeout

	Created        int64 // connections dialled successfully
	DialErrors     int64 // dials that failed
	ClosedIdle     int64 // closed after MaxIdleTime
	ClosedLifetime int64 // closed after MaxLifetime
	ClosedBroken   int64 // closed by a failed check, ErrBadConn, a panic or Discard
	ClosedPool     int64 // closed because the pool was closed
}

// Stats returns a snapshot of the pool. The gauges are read together under
// the lock; the counters are read just after.
func (p *Pool[C]) Stats() Stats {
	p.mu.Lock()
	s := Stats{
		Total:   p.numOpen,
		Idle:    len(p.idle),
		InUse:   p.numInUse,
		Dialing: p.numDialing,
		Closing: p.numClosing,
		Waiting: p.waiters.len,
		MinSize: p.cfg.MinSize,
		MaxSize: p.cfg.MaxSize,

		AcquireCount: p.acquireCount,
	}
	p.mu.Unlock()
	s.WaitCount = p.waitCount.Load()
	s.WaitDuration = time.Duration(p.waitNanos.Load())
	s.CanceledAcquires = p.canceled.Load()
	s.TimedOutAcquires = p.timedOut.Load()
	s.Created = p.created.Load()
	s.DialErrors = p.dialErrors.Load()
	s.ClosedIdle = p.closedIdle.Load()
	s.ClosedLifetime = p.closedLifetime.Load()
	s.ClosedBroken = p.closedBroken.Load()
	s.ClosedPool = p.closedPool.Load()
	return s
}

// result is what a waiter receives: a connection, or the error that ends
// its wait.
type result[C Connector] struct {
	pc  *PooledConn[C]
	err error
}

// waiter is one Acquire waiting in the FIFO queue. ch has a buffer of one
// and exactly one send per queueing, made by whoever dequeues the waiter
// under the pool lock.
type waiter[C Connector] struct {
	ch         chan result[C]
	timeoutAt  int64 // when AcquireTimeout fails it (pool clock); 0: never
	prev, next *waiter[C]
	queued     bool
}

// waitList is an intrusive FIFO of waiters with O(1) removal. It is
// protected by the pool's mu.
type waitList[C Connector] struct {
	head, tail *waiter[C]
	len        int
}

func (l *waitList[C]) pushBack(w *waiter[C]) {
	w.prev, w.next, w.queued = l.tail, nil, true
	if l.tail == nil {
		l.head = w
	} else {
		l.tail.next = w
	}
	l.tail = w
	l.len++
}

func (l *waitList[C]) popFront() *waiter[C] {
	w := l.head
	if w != nil {
		l.remove(w)
	}
	return w
}

func (l *waitList[C]) remove(w *waiter[C]) {
	if !w.queued {
		panic("pool: removing a waiter that is not queued")
	}
	if w.prev == nil {
		l.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		l.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	l.len--
}
