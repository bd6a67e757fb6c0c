package pool

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
)

// result is what a waiter receives: a connection, in state lent or (if
// check is set) checking, or the error that ends its wait.
type result[C Connector] struct {
	e     *entry[C]
	err   error
	check bool
}

// waiter is one Acquire waiting in the queue of its priority class. ch has
// a buffer of one and exactly one send per queueing, made by whoever
// dequeues the waiter under the pool lock.
type waiter[C Connector] struct {
	ch        chan result[C]
	timeoutAt int64 // when AcquireTimeout fails it (pool clock); 0: never
	// ctx is the caller's: a hand-off checks it, so that no connection
	// goes to a caller who has already given up. (Storing it costs two
	// words; calling ctx.Done() under the lock could allocate.)
	ctx        context.Context
	prev, next *waiter[C]
	// deadline is the earlier of timeoutAt and ctx's deadline (pool
	// clock), 0 if none; read once at enqueue, under ShedHopeless only.
	deadline int64
	// queuedAt is when the caller queued (pool clock): a failed probe
	// that began before it does not answer it (sparedLocked).
	queuedAt int64
	class    uint8
	queued   bool
}

// gaveUp returns, if w's caller can no longer take a connection, what to
// answer it: errTimedOut if its AcquireTimeout has passed by now, a coarse
// reading (never ahead of the real clock, so never early), errGaveUp if
// its ctx has ended; nil otherwise. The standard library's contexts
// answer Err with an atomic load.
func (w *waiter[C]) gaveUp(now int64) error {
	if w.timeoutAt != 0 && now >= w.timeoutAt {
		return errTimedOut
	}
	if w.ctx.Err() != nil {
		return errGaveUp
	}
	return nil
}

// fifo is an intrusive FIFO of waiters with O(1) removal.
type fifo[C Connector] struct {
	head, tail *waiter[C]
	len        int
}

// waitList holds the waiters, one FIFO per priority class (priority.go).
// It is protected by the pool's mu.
type waitList[C Connector] struct {
	len int // waiters in every class
	// gate is 1 while len is not zero, for the lock-free path, which reads
	// it without the lock: while it is up, no release parks and no Acquire
	// takes a parked connection (fast.go). It is written only when the
	// list becomes empty or stops being so, under the pool's mu, on its
	// cache line.
	gate atomic.Int32
	q    [numClasses]fifo[C]
	// passed counts, per class, the hand-offs made to other classes while
	// the class waited, since it was last served or began to wait.
	passed [numClasses]int
}

// pushBack queues w at the end of its class.
func (l *waitList[C]) pushBack(w *waiter[C]) {
	q := &l.q[w.class]
	if q.len == 0 {
		l.passed[w.class] = 0
	}
	w.prev, w.next, w.queued = q.tail, nil, true
	if q.tail == nil {
		q.head = w
	} else {
		q.tail.next = w
	}
	q.tail = w
	q.len++
	l.len++
	if l.len == 1 {
		l.gate.Store(1)
	}
}

// pushFront queues w ahead of everyone in its class: a waiter whose
// connection failed its check goes back to the place it had.
func (l *waitList[C]) pushFront(w *waiter[C]) {
	q := &l.q[w.class]
	if q.len == 0 {
		l.passed[w.class] = 0
	}
	w.prev, w.next, w.queued = nil, q.head, true
	if q.head == nil {
		q.tail = w
	} else {
		q.head.prev = w
	}
	q.head = w
	q.len++
	l.len++
	if l.len == 1 {
		l.gate.Store(1)
	}
}

// top returns the highest class that waits, numClasses if none.
func (l *waitList[C]) top() uint8 {
	for i := range numClasses {
		if l.q[i].len > 0 {
			return uint8(i)
		}
	}
	return numClasses
}

// popFront dequeues the waiter whose turn it is and counts the turn.
func (l *waitList[C]) popFront() *waiter[C] {
	c := l.next()
	if c < 0 {
		return nil
	}
	w := l.q[c].head
	l.remove(w)
	l.served(c)
	return w
}

// next returns the class whose turn it is, -1 if nobody waits, without
// counting the turn: the class passed over longest if it has been passed
// over floorEvery-1 times or more, else the highest class that waits.
// With one class waiting, as when no caller sets a priority, that is the
// class of the longest waiter.
func (l *waitList[C]) next() int {
	switch {
	case l.len == 0:
		return -1
	case l.q[classNormal].len == l.len: // only the default class waits
		return classNormal
	}
	c, owed := -1, -1
	for i := range numClasses {
		if l.q[i].len == 0 {
			continue
		}
		if c < 0 {
			c = i
		}
		if l.passed[i] >= floorEvery-1 && (owed < 0 || l.passed[i] > l.passed[owed]) {
			owed = i
		}
	}
	if owed >= 0 {
		return owed
	}
	return c
}

// served counts a hand-off to class c: every other class that waits was
// passed over once more, and c's count starts again. Only a waiter that
// takes the connection counts; one skipped because its caller gave up
// uses no turn.
func (l *waitList[C]) served(c int) {
	l.passed[c] = 0
	if l.q[c].len == l.len { // no other class waits
		return
	}
	for i := range numClasses {
		if i != c && l.q[i].len > 0 {
			l.passed[i]++
		}
	}
}

// popBack dequeues the newest waiter of the lowest class that waits: the
// first to fail when not every waiter can be served.
func (l *waitList[C]) popBack() *waiter[C] {
	for i := numClasses - 1; i >= 0; i-- {
		if w := l.q[i].tail; w != nil {
			l.remove(w)
			return w
		}
	}
	return nil
}

// each calls fn for every waiter, highest class first, FIFO within a
// class; fn may remove the waiter it is given.
func (l *waitList[C]) each(fn func(*waiter[C])) {
	for i := range numClasses {
		for w := l.q[i].head; w != nil; {
			next := w.next
			fn(w)
			w = next
		}
	}
}

func (l *waitList[C]) remove(w *waiter[C]) {
	if !w.queued {
		panic("pool: internal: removing a waiter that is not queued")
	}
	q := &l.q[w.class]
	if w.prev == nil {
		q.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		q.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	q.len--
	l.len--
	if l.len == 0 {
		l.gate.Store(0)
	}
}

// nextWaiterLocked dequeues the waiter to hand a connection to, skipping
// (and answering) any whose caller has given up: a connection never goes
// to a caller who can no longer take it. now is a coarse reading or
// better. p.mu must be held.
func (p *Pool[C]) nextWaiterLocked(now int64) *waiter[C] {
	for {
		c := p.waiters.next()
		if c < 0 {
			return nil
		}
		w := p.waiters.q[c].head
		p.waiters.remove(w)
		err := w.gaveUp(now)
		if err == nil && p.cfg.ShedHopeless {
			err = p.tooLateLocked(w, now)
		}
		if err == nil {
			p.waiters.served(c)
			return w
		}
		// Its goroutine is waking, or about to, on its own; this answer,
		// which wait turns into the caller's error, is what it will find.
		p.wakes.serve(w, result[C]{err: err})
	}
}

// armTimeoutLocked makes the pool's one AcquireTimeout timer fire no
// later than at; now is a real reading. Waiters carry no timer of their
// own: since they queue in order, most enqueues find it armed early
// enough and touch no timer. p.mu must be held.
func (p *Pool[C]) armTimeoutLocked(at, now int64) {
	p.timeout.set(at, now)
}

// expireWaiters is the timeout timer's callback: it fails every waiter
// whose AcquireTimeout has passed and re-arms for the earliest remaining
// deadline.
func (p *Pool[C]) expireWaiters() {
	p.mu.Lock()
	defer p.unlock()
	p.timeout.fired()
	if p.closed.Load() {
		return
	}
	now := p.clock.now()
	next := int64(math.MaxInt64)
	p.waiters.each(func(w *waiter[C]) {
		switch {
		case w.timeoutAt == 0:
		case w.timeoutAt <= now:
			p.waiters.remove(w)
			p.wakes.serve(w, result[C]{err: errTimedOut})
			p.waiterLeftLocked()
		default:
			next = min(next, w.timeoutAt)
		}
	})
	if next != math.MaxInt64 {
		p.armTimeoutLocked(next, now)
	}
}

// wait blocks until w is served or ctx ends. w has been queued by the
// caller, and is no longer queued nor has anything in its channel when
// wait returns: the caller may queue it again or recycle it.
func (p *Pool[C]) wait(ctx context.Context, w *waiter[C], a *acquisition[C]) (result[C], error) {
	done := ctx.Done()
	if done == nil { // a ctx that never ends: a plain receive is cheaper than select
		return p.served(ctx, <-w.ch, a)
	}
	var err error
	select {
	case r := <-w.ch:
		return p.served(ctx, r, a)
	case <-done:
		err = ctx.Err()
		p.stats.canceled.Add(1)
	}
	if p.testHookGaveUp != nil {
		p.testHookGaveUp()
	}
	p.mu.Lock()
	if w.queued {
		p.waiters.remove(w)
		p.waiterLeftLocked()
		p.unlock()
		return result[C]{}, err
	}
	p.unlock()
	// Served at the same instant we gave up: the result is already in the
	// buffer. Pretend we were never served and put the connection back.
	r := <-w.ch
	if r.e != nil {
		p.putBack(r.e)
	}
	return result[C]{}, err
}

// served turns what a waiter received into Acquire's result.
func (p *Pool[C]) served(ctx context.Context, r result[C], a *acquisition[C]) (result[C], error) {
	switch r.err {
	case nil:
		return r, nil
	case errTimedOut:
		return r, p.timedOut(a)
	case errGaveUp: // skipped at a hand-off: ctx had ended
		p.stats.canceled.Add(1)
		return r, ctx.Err()
	case errShed: // skipped at a hand-off: too little time left
		p.stats.shed.Add(1)
		h := p.Holders()
		return r, newError("shed: less time left before the deadline than a mean hold (ShedHopeless)"+h.suffix(), context.DeadlineExceeded, h.err())
	}
	return r, r.err
}

// timedOut counts an Acquire ended by AcquireTimeout and returns its
// error, which names the last failure the call or the pool saw.
func (p *Pool[C]) timedOut(a *acquisition[C]) error {
	p.mu.Lock()
	defer p.unlock()
	return p.timedOutLocked(a)
}

// timedOutLocked is timedOut with p.mu held.
func (p *Pool[C]) timedOutLocked(a *acquisition[C]) error {
	p.stats.timedOut.Add(1)
	cause := p.dialing.lastErr
	if a.lastErr != nil {
		cause = a.lastErr
	}
	h := p.holdersLocked()
	msg := fmt.Sprintf("acquire timed out after %v (%s", p.cfg.AcquireTimeout, h)
	if cause != nil {
		msg += "; last error: " + detail(cause)
	}
	return newError(msg+")", ErrAcquireTimeout, cause, h.err())
}

// acquisition is the state of one Acquire call, kept on its stack.
type acquisition[C Connector] struct {
	// started is set once the call has read the real clock, when it first
	// has to wait or Ping; timeoutAt is then when AcquireTimeout ends the
	// call, 0 if it does not apply (the caller's deadline is earlier, or
	// there is no AcquireTimeout).
	started   bool
	timeoutAt int64
	// waitStart is when the call queued.
	waitStart int64
	// lastErr is why the last connection it checked was closed.
	lastErr error
	// probeFailed is set once a new connection dialled while the source
	// was down failed its check for this call: the call waited for its
	// probe, and does not wait for another (failFastLocked).
	probeFailed bool
}

// begin starts the clock of a call that has to wait or Ping, at now, a
// real reading: the AcquireTimeout applies unless ctx's deadline (read
// here, off the fast path) is earlier. A timeout too long to represent
// never passes.
func (a *acquisition[C]) begin(ctx context.Context, p *Pool[C], now int64) {
	a.started = true
	timeout := p.cfg.AcquireTimeout
	if timeout <= 0 {
		return
	}
	t := addSat(now, timeout)
	if t == maxReading {
		return
	}
	if dl, ok := ctx.Deadline(); ok && int64(dl.Sub(p.clock.epoch)) <= t {
		return
	}
	a.timeoutAt = t
}
