// This file holds the acquire-time checks of an idle connection, run
// outside the lock, and what follows a failed one: the connection closed,
// its caller queued again at the head, a new connection's failure counted
// against the source.

package pool

import (
	"context"
	"time"
)

// check runs the acquire-time checks on e, in state checking (or lent,
// when it was taken from a slot of the lock-free path), outside the lock,
// reading the real clock: MaxLifetime, IsValid, and a Ping if e has been
// idle PingAfterIdle or longer. It ends in one of three outcomes:
//   - lent: e passed (→ lent);
//   - retry: e failed and was closed (→ closing); if w is not
//     nil, w is queued again at the head, under the same lock;
//   - fail: the call ends with the error: ctx ended (e is given back
//     untouched if no Ping had started, closed if one had), or the
//     AcquireTimeout passed.
func (p *Pool[C]) check(ctx context.Context, e *entry[C], a *acquisition[C], w *waiter[C]) (outcome, error) {
	now := p.clock.now()
	if a.timeoutAt != 0 && now >= a.timeoutAt { // a retry with no time left
		p.putBack(e)
		return outcomeFail, p.timedOut(a)
	}
	switch {
	case now >= e.expiresAt:
		reraise(p.checkFailed(e, CloseLifetime, nil, w))
		return outcomeRetry, nil
	case e.validator != nil && !p.isValid(e):
		a.lastErr = errInvalid
		reraise(p.checkFailed(e, CloseBroken, a.failedNew(p, e, errInvalid), w))
		return outcomeRetry, nil
	case p.cfg.PingAfterIdle > 0 && time.Duration(now-e.idleSince) >= p.cfg.PingAfterIdle:
		if err := ctx.Err(); err != nil { // never check with a done ctx
			p.putBack(e)
			p.stats.canceled.Add(1)
			return outcomeFail, err
		}
		if !a.started {
			a.begin(ctx, p, now)
		}
		err := p.ping(ctx, e, a.timeoutAt, now)
		if err == nil {
			break
		}
		// The check was cut short or failed: either way this connection's
		// state is unknown, so it is closed, and only this one.
		a.lastErr = newError("health check: Ping failed: "+err.Error(), err)
		final := ctx.Err()
		if final != nil {
			p.stats.canceled.Add(1)
		} else if a.timeoutAt != 0 && p.clock.now() >= a.timeoutAt {
			final = p.timedOut(a)
		}
		if final != nil {
			reraise(p.checkFailed(e, CloseBroken, nil, nil))
			return outcomeFail, final
		}
		// Only a Ping that failed on its own counts against the source.
		reraise(p.checkFailed(e, CloseBroken, a.failedNew(p, e, a.lastErr), w))
		return outcomeRetry, nil
	}
	p.mu.Lock()
	if e.gen != p.genFast.Load() { // a Reset ran during the check
		p.unlock()
		reraise(p.checkFailed(e, CloseReset, nil, w))
		return outcomeRetry, nil
	}
	p.checkPassedLocked(e)
	p.unlock()
	return outcomeLent, nil
}

// newConnWindow is how long after its dial a connection that fails its
// first check counts as a failed dial: a server that accepts connections
// and breaks them at once is not redialled in a hot loop. A connection
// idle longer than that since its dial (one of MinSize, warm) that fails
// may have been ended by the server since; it is replaced like any other.
const newConnWindow = time.Second

// failedNew returns the dial error that a new connection's failed check
// stands for, or nil if the connection had been lent before, or sat idle
// for newConnWindow or longer since its dial.
func (p *Pool[C]) failedNew(e *entry[C], cause error) error {
	if !e.fresh || e.moved || time.Duration(p.clock.now()-e.idleSince) >= newConnWindow {
		return nil
	}
	return dialError(newError("new connection failed its check: "+detail(cause), cause))
}

// failedNew is p.failedNew, and marks the call's probe as failed when e
// was new.
func (a *acquisition[C]) failedNew(p *Pool[C], e *entry[C], cause error) error {
	err := p.failedNew(e, cause)
	if err != nil {
		a.probeFailed = true
	}
	return err
}

// checkFailed closes a connection that failed its check (checking →
// closing). If failedNew is not nil, the connection was new and its
// failure counts against the source as a failed dial. If w is not nil, it
// goes back to the head of the queue under the lock that frees the slot.
// It returns Close's error.
func (p *Pool[C]) checkFailed(e *entry[C], reason CloseReason, failedNew error, w *waiter[C]) error {
	p.mu.Lock()
	p.closeLocked(e)
	var ev event
	if failedNew != nil {
		p.stats.dialErrors.Add(1)
		ev = p.sourceFailedLocked(failedNew, p.clock.now())
	}
	if w != nil {
		p.requeueLocked(w)
	}
	if failedNew != nil {
		p.failUncoveredLocked(true) // w included: it waited for this probe
	}
	p.unlock()
	p.emit(ev)
	return p.finishClose(e, reason)
}

// putBack returns a connection taken for a caller who will not use it
// (checking or lent → idle or a waiter), keeping its idle time.
func (p *Pool[C]) putBack(e *entry[C]) {
	now := p.clock.coarse()
	p.mu.Lock()
	h := p.putLocked(e, e.idleSince, now)
	p.unlock()
	_ = h.do(p) // Close runs only on a closed pool, and logs a panic
}

// requeueLocked puts back at the head of its class a waiter whose
// connection failed its check (refusing a newcomer if MaxWaiters would be
// passed), or serves it (once p.mu is unlocked): with
// an idle connection, or with ErrPoolClosed. p.mu must be held.
func (p *Pool[C]) requeueLocked(w *waiter[C]) {
	if p.closed.Load() {
		p.wakes.serve(w, result[C]{err: ErrPoolClosed})
		return
	}
	if e := p.idle.takeNewest(); e != nil { // idle means nobody waits
		h := p.handLocked(e, w, p.clock.coarse())
		p.wakes.serve(w, result[C]{e: h.e, check: h.check})
		return
	}
	p.waiters.pushFront(w)
	// While w checked its connection it was not counted against
	// MaxWaiters, and a newcomer may have taken its place: the newest
	// waiter of the lowest class, the first to fail when not every waiter
	// can wait, is refused.
	for max := p.cfg.MaxWaiters; max > 0 && p.waiters.len > max; {
		p.wakes.serve(p.waiters.popBack(), result[C]{err: p.tooManyWaitersLocked()})
	}
	// While w checked its connection, with nobody else waiting, releases
	// may have parked theirs: w, at the head, gets the first.
	p.unparkForWaitersLocked(p.clock.coarse())
	if w.timeoutAt != 0 {
		p.armTimeoutLocked(w.timeoutAt, p.clock.now())
	}
}
