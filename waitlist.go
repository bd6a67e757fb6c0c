package pool

import (
	"context"
	"fmt"
	"math"
	"time"
)

// result is what a waiter receives: a connection, in state lent or (if
// check is set) checking, or the error that ends its wait.
type result[C Connector] struct {
	e     *entry[C]
	err   error
	check bool
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

// pushFront queues w ahead of everyone: a waiter whose connection failed
// its check goes back to the place it had.
func (l *waitList[C]) pushFront(w *waiter[C]) {
	w.prev, w.next, w.queued = nil, l.head, true
	if l.head == nil {
		l.tail = w
	} else {
		l.head.prev = w
	}
	l.head = w
	l.len++
}

func (l *waitList[C]) popFront() *waiter[C] {
	w := l.head
	if w != nil {
		l.remove(w)
	}
	return w
}

func (l *waitList[C]) popBack() *waiter[C] {
	w := l.tail
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

// timeoutTimer is the pool's one timer for AcquireTimeout. Waiters carry
// no timer of their own: it is armed for the earliest deadline, and since
// waiters queue in order, most enqueues find it armed early enough and
// touch no timer. Protected by the pool's mu.
type timeoutTimer struct {
	timer   *time.Timer // created on first use
	armed   bool
	armedAt int64 // when it fires (pool clock), valid while armed
}

// armTimeoutLocked makes sure the timeout timer fires no later than at;
// now is a real reading. p.mu must be held.
func (p *Pool[C]) armTimeoutLocked(at, now int64) {
	t := &p.timeout
	if t.armed && t.armedAt <= at {
		return
	}
	d := time.Duration(at - now)
	if t.timer == nil {
		t.timer = time.AfterFunc(d, p.expireWaiters)
	} else {
		t.timer.Reset(d)
	}
	t.armed, t.armedAt = true, at
}

// expireWaiters is the timeout timer's callback: it fails every waiter
// whose AcquireTimeout has passed and re-arms for the earliest remaining
// deadline.
func (p *Pool[C]) expireWaiters() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout.armed = false
	if p.closed.Load() {
		return
	}
	now := p.clock.now()
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
		p.armTimeoutLocked(next, now)
	}
}

// wait blocks until w is served or ctx ends. w has been queued by the
// caller, and is no longer queued nor has anything in its channel when
// wait returns: the caller may queue it again or recycle it.
func (p *Pool[C]) wait(ctx context.Context, w *waiter[C], a *acquisition[C]) (result[C], error) {
	done := ctx.Done()
	if done == nil { // a ctx that never ends: a plain receive is cheaper than select
		return p.served(<-w.ch, a)
	}
	var err error
	select {
	case r := <-w.ch:
		return p.served(r, a)
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
		p.mu.Unlock()
		return result[C]{}, err
	}
	p.mu.Unlock()
	// Served at the same instant we gave up: the result is already in the
	// buffer. Pretend we were never served and put the connection back.
	r := <-w.ch
	if r.e != nil {
		p.putBack(r.e)
	}
	return result[C]{}, err
}

// served turns what a waiter received into Acquire's result.
func (p *Pool[C]) served(r result[C], a *acquisition[C]) (result[C], error) {
	switch r.err {
	case nil:
		return r, nil
	case errTimedOut:
		return r, p.timedOut(a)
	}
	return r, r.err
}

// timedOut counts an Acquire ended by AcquireTimeout and returns its
// error, which names the last failure the call or the pool saw.
func (p *Pool[C]) timedOut(a *acquisition[C]) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.timedOutLocked(a)
}

// timedOutLocked is timedOut with p.mu held.
func (p *Pool[C]) timedOutLocked(a *acquisition[C]) error {
	p.stats.timedOut.Add(1)
	inUse, cause := p.inUseLocked(), p.dialing.lastErr
	if a.lastErr != nil {
		cause = a.lastErr
	}
	msg := fmt.Sprintf("acquire timed out after %v (%d of %d in use", p.cfg.AcquireTimeout, inUse, p.maxSize)
	if cause != nil {
		msg += "; last error: " + detail(cause)
	}
	return newError(msg+")", ErrAcquireTimeout, cause)
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
