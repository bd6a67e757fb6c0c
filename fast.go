package pool

import "context"

// This file is the lock-free path: a release that finds nobody waiting
// parks its connection in one of the idle set's slots with one
// compare-and-swap, and an Acquire takes a parked connection with one
// swap, neither taking p.mu. With idle connections available, many cores
// then share no lock and no counter: each slot has its own cache line,
// and loans are counted in the slot of the goroutine that starts them.
// Every pool takes this path, on a Budget or with Adaptive too: what reads
// idle connections under the lock (the reaper, SetMaxSize, Adaptive, the
// budget's reclaim, Close) first moves the parked ones back
// (unparkLocked), so it owns what it reads.
//
// The one race that matters: a caller who is about to wait, against a
// release that parks. The caller queues, which raises the wait list's
// gate, and then moves every parked connection back (to the waiters in
// turn); the release stores its connection in a slot and then reads the
// gate, and if it is up takes its connection back (a compare-and-swap
// that fails if someone took it already) and goes the locked way, which
// hands it to the longest waiter. Go's atomics are sequentially
// consistent, so of the two, whichever comes second sees the other's
// write: no connection stays parked while a caller waits. The same holds
// for Close (p.closed), for a SetMaxSize that puts the pool above its size
// (p.aboveMaxFast), and for a budget that another pool waits on or that
// is over its limit (Budget.wanting, Budget.over): there the release must
// decide under the lock whether its connection yields its slot, and the
// budget's reclaim unparks before it looks for an idle connection.
// Callers who arrive while others wait take the locked way too, so the
// hand-off stays FIFO.

// fastOff reports whether a release must take the locked way: someone
// waits or is about to (the wait list's gate), the pool is closed or above
// its MaxSize, or its budget may want the connection's slot.
func (p *Pool[C]) fastOff() bool {
	return p.waiters.gate.Load() != 0 || p.closed.Load() || p.aboveMaxFast.Load() ||
		(p.bm != nil && p.cfg.Budget.contended())
}

// park: lent → parked, without the lock, for e, whose loan has ended and
// which passed its release-time checks, stamped idle since now. It
// reports false when e must take the locked way instead (see fastOff), or
// when every slot is full. The caller owns e and, if park succeeds, owns
// it no longer.
func (p *Pool[C]) park(e *entry[C]) bool {
	if p.fastOff() || e.gen != p.genFast.Load() {
		return false // a connection of before a Reset: the locked way closes it
	}
	e.idleSince = p.clock.coarse()
	slot := p.idle.park(e)
	if slot == nil {
		return false
	}
	// Parked: now see whether a waiter, Close, SetMaxSize, the budget or
	// a Reset came in meanwhile (they raise their flag, then unpark).
	if (p.fastOff() || e.gen != p.genFast.Load()) && p.idle.takeBack(slot, e) {
		return false // ours again: the locked way hands it on
	}
	return true
}

// takeParked: parked → lent, without the lock: it takes a parked
// connection, with its slot, or returns nil when none is parked or callers
// wait (they come first).
func (p *Pool[C]) takeParked() (*entry[C], *fastSlot[C]) {
	if p.waiters.gate.Load() != 0 || p.closed.Load() {
		return nil, nil
	}
	return p.idle.takeParked()
}

// lendParked lends a parked connection, if one is, with the slot it was
// taken from and the outcomes of the acquire loop: lent (checked as check
// would, with IsValid alone still without the lock), retry when it failed
// its check and was closed, fail when a check ended the call; none when
// nothing was parked.
func (p *Pool[C]) lendParked(ctx context.Context, a *acquisition[C]) (*entry[C], *fastSlot[C], outcome, error) {
	e, slot := p.takeParked()
	if e == nil {
		return nil, nil, outcomeNone, nil
	}
	if e.gen != p.genFast.Load() { // parked as a Reset began
		reraise(p.retire(e, CloseReset))
		return nil, nil, outcomeRetry, nil
	}
	now := p.clock.coarse()
	switch {
	case !p.checkDue(e, now):
	case p.onlyIsValidDue(e, now):
		if !p.isValid(e) {
			a.lastErr = errInvalid
			reraise(p.retire(e, CloseBroken))
			return nil, nil, outcomeRetry, nil
		}
	default:
		out, err := p.check(ctx, e, a, nil)
		return e, slot, out, err
	}
	return e, slot, outcomeLent, nil
}

// unparkForWaitersLocked moves the parked connections back for the
// waiters, just after a waiter was queued: if it is the only one, it has
// just raised the gate, and the parked connections go to it (and to the
// idle stack if there are more). It does nothing above MaxSize, where no
// connection stays parked (the releases that park then take theirs back),
// so that it never has a connection to close. p.mu must be held.
func (p *Pool[C]) unparkForWaitersLocked(now int64) {
	if p.aboveMax || p.waiters.len != 1 {
		// With others queued before, the gate was already up: nothing
		// has parked since the first of them emptied the slots.
		return
	}
	for _, h := range p.unparkLocked(now) {
		if h.reason != CloseBudget && h.reason != CloseReset { // a Reset: one parked as it began
			panic("pool: internal: a parked connection to close while callers wait")
		}
		p.wakes.close(h)
	}
}
