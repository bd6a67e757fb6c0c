package pool

import (
	"context"
	"reflect"
	"time"
)

// dialState is the pool's view of its source's health. Protected by the
// pool's mu.
type dialState struct {
	// failures counts dials that failed in a row (a new connection that
	// failed its first check included); 0 once a dial succeeds.
	failures int
	// retryAt is when the pool may dial again after failures (pool clock).
	retryAt int64
	// downAt is when the first of those failures came (pool clock): for
	// quickPhase after it, probes come every firstRetry and callers wait
	// for the next one.
	downAt int64
	// quick counts the failures in a row that came in the quick phase;
	// the backoff doubles from the failures after them.
	quick int
	// notReady is set while the last failure matched ErrNotReady: the
	// server answered, and is changing (a failover, a restart).
	notReady bool
	// probeAt is when the last dial began while the source was down (pool
	// clock): the probe in flight, or the one that has just failed.
	probeAt int64
	// lastErr is the last failed dial's error, matching ErrDial; nil once
	// a dial has succeeded.
	lastErr error
	// retry refills the pool when retryAt comes, for MinSize and for
	// waiters, or when a probe above the capacity ceiling is due.
	retry alarm
	// ceiling caps the connections open while the server refuses dials
	// for capacity, on a pool without a budget (capacity.go).
	ceiling ceilingState
}

// downLocked reports whether the source is down: the last dial failed and
// backoff is on. p.mu must be held.
func (p *Pool[C]) downLocked() bool { return p.dialing.failures > 0 && p.cfg.DialBackoff > 0 }

// dialForWaitersLocked starts the dials needed so that every waiter has a
// connection coming. p.mu must be held.
func (p *Pool[C]) dialForWaitersLocked() {
	p.startDialsLocked(p.waiters.len - p.n[stateDialling])
}

// refillLocked starts the dials needed for every waiter and to keep
// MinSize connections. p.mu must be held.
func (p *Pool[C]) refillLocked() {
	p.startDialsLocked(p.shortfallLocked())
}

// shortfallLocked is the number of dials the pool wants now: one for
// every waiter no dial in flight is for, or as many as it lacks to reach
// MinSize, whichever is more, never past MaxSize. p.mu must be held.
func (p *Pool[C]) shortfallLocked() int {
	open := p.n.open()
	return min(max(p.waiters.len-p.n[stateDialling], p.minSize-open), p.maxSize-open)
}

// startDialsLocked starts up to want dials, never past MaxSize or
// MaxConcurrentDials. While the source is down it starts none before
// retryAt (and arms the retry timer for then), and then one at a time.
// p.mu must be held.
func (p *Pool[C]) startDialsLocked(want int) {
	if want <= 0 || p.closed.Load() || p.n.open() >= p.maxSize {
		return // at MaxSize, as callers who wait mostly find it
	}
	limit := p.dialLimitLocked()
	if p.downLocked() {
		if now := p.clock.now(); now < p.dialing.retryAt {
			p.armRetryLocked(now, p.dialing.retryAt)
			return
		}
		limit = 1
	}
	room := p.capLocked() - p.n.open()
	if room <= 0 && p.dialing.ceiling.set && p.n.open() < p.maxSize && p.probeLocked(p.clock.now()) {
		room = 1 // a probe above the capacity ceiling
	}
	want = min(want, room, limit-p.n[stateDialling])
	for range want {
		if !p.takeSlotLocked() {
			return // the budget is full: it grants a slot when one frees
		}
		p.dialStartLocked()
		go p.dial()
	}
}

// dialLimitLocked is the most dials the pool runs at once:
// MaxConcurrentDials, or MaxSize when that is zero. p.mu must be held.
func (p *Pool[C]) dialLimitLocked() int {
	if n := p.cfg.MaxConcurrentDials; n > 0 {
		return n
	}
	return p.maxSize
}

// armRetryLocked makes the retry timer refill the pool at at: when the
// backoff of a down source ends, or the next probe above the capacity
// ceiling is due. p.mu must be held.
func (p *Pool[C]) armRetryLocked(now, at int64) {
	p.dialing.retry.set(at, now)
}

func (p *Pool[C]) retryDials() {
	p.mu.Lock()
	defer p.unlock()
	p.dialing.retry.fired()
	p.refillLocked()
}

func (p *Pool[C]) dial() {
	defer p.bg.Done()
	ctx, cancel := p.dialContext()
	defer cancel()
	p.dialOrTakeFromGroup(ctx, p.genFast.Load()) // share.go
}

// dialContext is the context of one dial: the pool's, bounded by
// DialTimeout.
func (p *Pool[C]) dialContext() (context.Context, context.CancelFunc) {
	if p.cfg.DialTimeout > 0 {
		return context.WithTimeout(p.dialCtx, p.cfg.DialTimeout)
	}
	return p.dialCtx, func() {}
}

// dialled takes the result of a dial in flight at now: a new connection,
// or one moved from another pool of the Share group and bound (createdAt
// is then its dial's time), or err. gen is the pool's generation when the
// dial began: a connection of an earlier one is closed (see Reset).
func (p *Pool[C]) dialled(conn C, err error, createdAt time.Time, now int64, gen uint64) {
	if err != nil {
		p.dialFailed(dialError(err), now)
		return
	}
	if createdAt.IsZero() {
		p.stats.created.Add(1)
	} else {
		p.stats.movedIn.Add(1)
	}
	e := p.newEntry(conn, createdAt, now, gen)
	p.mu.Lock()
	var ev event
	if !p.closed.Load() {
		ev = p.sourceUpLocked()
	}
	p.dialSucceededLocked()
	h := p.dialledLocked(e, now)
	p.refillLocked() // dials held back by MaxConcurrentDials or backoff
	p.notifyReadyLocked()
	p.unlock()
	_ = h.do(p)      // on a closed pool, Close logs a panic
	p.settleBudget() // budget slots held back while this dial was in flight
	p.emit(ev)
}

// dialFailed uncounts a failed dial. It hands its error to the longest
// waiter only if nothing the waiter could wait for is coming: a dial
// refused for capacity lowers the ceiling and the waiters wait (for a
// connection to come back, or a probe); after any other failure they wait
// while connections are in use, since those come back to them in turn.
func (p *Pool[C]) dialFailed(err error, now int64) {
	p.stats.dialErrors.Add(1)
	refused := isCapacity(err)
	p.mu.Lock()
	p.dialFailedLocked()
	var ev event
	if refused {
		ev = p.refusedLocked(err, now)
	} else {
		ev = p.sourceFailedLocked(err, now)
	}
	wait := refused || p.n.inUse() > 0
	if !wait && !p.probeAnswersLocked(now) { // else failUncoveredLocked answers
		if w := p.nextWaiterLocked(now); w != nil {
			p.wakes.serve(w, result[C]{err: err})
		}
	}
	switch {
	case p.cfg.DialBackoff > 0 || refused:
		p.refillLocked() // gated by retryAt, or by the ceiling's probes
	case !wait:
		p.dialForWaitersLocked() // never refill MinSize in a loop
	}
	p.failUncoveredLocked(true)
	p.notifyReadyLocked()
	p.signalDrainedLocked()
	p.unlock()
	p.settleBudget()
	p.emit(ev)
}

// callFactory runs the Factory. A panic becomes a *PanicError, and a nil
// connection with no error becomes an error; a connection returned with
// an error is closed.
func (p *Pool[C]) callFactory(ctx context.Context) (conn C, err error) {
	if p.cfg.Hooks.Dial != nil {
		start := p.clock.now()
		// Deferred first, so it runs last: it sees the error a panic
		// became.
		defer func() { p.reportDial(start, err) }()
	}
	defer func() {
		if v := recover(); v != nil {
			pe := newPanicError("Factory", v)
			p.logPanic(pe)
			err = pe
		}
	}()
	conn, err = (*p.factory.Load())(ctx)
	switch {
	case err != nil && !isNil(conn):
		_ = conn.Close()
	case err == nil && isNil(conn):
		err = errNilConn
	}
	return conn, err
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// readyWaiter is one WaitReady call.
type readyWaiter struct {
	ch     chan error // buffer of one
	failed error      // a dial that failed while it waited
}

// WaitReady blocks until the pool holds MinSize connections. It returns
// nil once it does; the dial error (matching ErrDial) once a dial has
// failed during the wait and no dial is in flight; ctx's error, wrapping
// the last dial error if any, if ctx ends first; ErrPoolClosed if the pool
// is closed. Whatever it returns, a pool below MinSize keeps dialling in
// the background, backing off while dials fail.
func (p *Pool[C]) WaitReady(ctx context.Context) error {
	p.mu.Lock()
	if p.closed.Load() {
		p.unlock()
		return ErrPoolClosed
	}
	if p.liveLocked() >= p.minSize {
		p.unlock()
		return nil
	}
	p.refillLocked()
	r := &readyWaiter{ch: make(chan error, 1)}
	p.ready = append(p.ready, r)
	p.unlock()
	p.settleBudget() // a MinSize the budget refused: reclaim for it
	select {
	case err := <-r.ch:
		return err
	case <-ctx.Done():
		p.mu.Lock()
		defer p.unlock()
		for i, c := range p.ready {
			if c == r {
				p.ready = append(p.ready[:i], p.ready[i+1:]...)
				break
			}
		}
		if p.dialing.lastErr != nil {
			return newError("not ready: "+ctx.Err().Error()+" (last dial error: "+detail(p.dialing.lastErr)+")",
				ctx.Err(), p.dialing.lastErr)
		}
		return ctx.Err()
	}
}

// liveLocked counts dialled connections not being closed. p.mu must be held.
func (p *Pool[C]) liveLocked() int {
	return len(p.conns) - p.n[stateClosing]
}

// notifyReadyLocked answers the WaitReady callers that can be answered.
// p.mu must be held.
func (p *Pool[C]) notifyReadyLocked() {
	if len(p.ready) == 0 {
		return
	}
	kept := p.ready[:0]
	for _, r := range p.ready {
		switch {
		case p.closed.Load():
			p.wakes.answerReady(r, ErrPoolClosed)
		case p.liveLocked() >= p.minSize:
			p.wakes.answerReady(r, nil)
		case p.n[stateDialling] == 0 && r.failed != nil:
			p.wakes.answerReady(r, r.failed)
		default:
			kept = append(kept, r)
		}
	}
	clear(p.ready[len(kept):])
	p.ready = kept
}
