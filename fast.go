package pool

import (
	"context"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// This file is the lock-free path: a release that finds nobody waiting
// parks its connection in one of a few padded slots with one
// compare-and-swap, and an Acquire takes a parked connection with one
// swap, neither taking p.mu. With idle connections available, many cores
// then share no lock and no counter: each slot has its own cache line and
// its own count of the loans it started.
//
// A parked connection is counted in state lent (p.n), and stays so: the
// books change only under p.mu, and parking changes nothing in them. What
// reads the books for idle connections first moves the parked ones back
// under the lock (unparkLocked): the reaper, Close, SetMaxSize, a caller
// about to wait, and the test helpers. Stats counts the parked ones as
// idle by looking at the slots.
//
// The one race that matters: a caller who is about to wait, against a
// release that parks. The caller queues, which raises the wait list's
// gate, and then moves every parked connection back (to the waiters in
// turn); the release stores its connection in a slot and then reads the
// gate, and if it is up takes its connection back (a compare-and-swap
// that fails if someone took it already) and goes the locked way, which
// hands it to the longest waiter. Go's atomics are
// sequentially consistent, so of the two, whichever comes second sees the
// other's write: no connection stays parked while a caller waits. The same
// holds for Close (p.closed) and for a SetMaxSize that puts the pool above
// its size (p.aboveMaxFast). Callers who arrive while others wait take
// the locked way too, so the hand-off stays FIFO.
//
// Pools on a Budget or with Adaptive never park: their idle connections
// move between pools or are closed by decisions taken under the lock.

// fastSlot holds one parked connection, or nil, on a cache line of its
// own.
type fastSlot[C Connector] struct {
	e     atomic.Pointer[entry[C]]
	lends atomic.Int64 // loans started with a connection taken from here
	_     [64 - 16]byte
}

// fastSlots are the slots of a pool: a power of two of them.
type fastSlots[C Connector] struct {
	mask  uint32
	slots []fastSlot[C]
}

// maxFastSlots bounds the slots: twice the Ps, at most MaxSize (rounded
// up), at most this.
const maxFastSlots = 64

// slotsFor returns the slots of p, made at the first park.
func (p *Pool[C]) slotsFor() *fastSlots[C] {
	if f := p.fast.Load(); f != nil {
		return f
	}
	n := min(max(2*runtime.GOMAXPROCS(0), 2), p.cfg.MaxSize, maxFastSlots)
	n = 1 << bits.Len(uint(n-1)) // a power of two, at least n
	f := &fastSlots[C]{mask: uint32(n - 1), slots: make([]fastSlot[C], n)}
	if p.fast.CompareAndSwap(nil, f) {
		return f
	}
	return p.fast.Load()
}

// fastOff reports whether a release must take the locked way: someone
// waits or is about to (the wait list's gate), the pool is closed, or it is above its MaxSize.
func (p *Pool[C]) fastOff() bool {
	return p.waiters.gate.Load() != 0 || p.closed.Load() || p.aboveMaxFast.Load()
}

// park puts e, whose loan has ended and which passed its release-time
// checks, in a free slot, stamped idle since now; it reports false when e
// must take the locked way instead (see fastOff), or when every slot is
// full. The caller owns e and, if park succeeds, owns it no longer.
func (p *Pool[C]) park(e *entry[C]) bool {
	if p.noFast || p.fastOff() {
		return false
	}
	f := p.slotsFor()
	e.idleSince = p.clock.coarse()
	start := home()
	for i := range uint32(len(f.slots)) {
		s := &f.slots[(start+i)&f.mask]
		if s.e.Load() != nil || !s.e.CompareAndSwap(nil, e) {
			continue
		}
		// Parked: now see whether a waiter, Close or SetMaxSize came in
		// meanwhile (they raise their flag, then unpark).
		if p.fastOff() && s.e.CompareAndSwap(e, nil) {
			return false // ours again: the locked way hands it on
		}
		return true
	}
	return false
}

// takeParked takes a parked connection, in state lent, with the slot it
// came from; nil when none is parked or callers wait (they come first).
func (p *Pool[C]) takeParked() (*entry[C], *fastSlot[C]) {
	f := p.fast.Load()
	if f == nil || p.waiters.gate.Load() != 0 || p.closed.Load() {
		return nil, nil
	}
	start := home()
	for i := range uint32(len(f.slots)) {
		s := &f.slots[(start+i)&f.mask]
		if s.e.Load() == nil {
			continue
		}
		if e := s.e.Swap(nil); e != nil {
			return e, s
		}
	}
	return nil, nil
}

// home returns where the calling goroutine starts its search of the
// slots: a hash of its stack's address. Each goroutine has a stack of its
// own, so one that releases and acquires again comes back to the slot it
// parked in, on a cache line no other core has written since, as
// sync.Pool's per-P caches do, without asking the runtime which P runs
// it; goroutines hash apart. (A stack that grows moves, and its goroutine
// then starts elsewhere: a hint, not an owner.)
func home() uint32 {
	var x byte
	a := uint64(uintptr(unsafe.Pointer(&x))) >> 10
	return uint32((a * 0x9E3779B97F4A7C15) >> 32)
}

// lendParked lends a parked connection, if one is, with the outcomes of
// the acquire loop: lent (checked as check would, with IsValid alone
// still without the lock), retry when it failed its check and was
// closed, fail when a check ended the call; none when nothing was parked.
func (p *Pool[C]) lendParked(ctx context.Context, a *acquisition[C]) (*entry[C], outcome, error) {
	e, s := p.takeParked()
	if e == nil {
		return nil, outcomeNone, nil
	}
	now := p.clock.coarse()
	switch {
	case !p.checkDue(e, now):
	case p.onlyIsValidDue(e, now):
		if !p.isValid(e) {
			a.lastErr = errInvalid
			reraise(p.retire(e, CloseBroken))
			return nil, outcomeRetry, nil
		}
	default:
		out, err := p.check(ctx, e, a, nil)
		return e, out, err
	}
	s.lends.Add(1)
	return e, outcomeLent, nil
}

// unparkLocked moves every parked connection back under the lock, as a
// release would (putLocked): to the longest waiter, served here (the send
// does not block; see waiter), else to the idle stack, or to closing on a
// closed pool or one above MaxSize. It returns those closings, for the
// caller to carry out after unlocking. p.mu must be held.
func (p *Pool[C]) unparkLocked(now int64) []handoff[C] {
	f := p.fast.Load()
	if f == nil {
		return nil
	}
	var closing []handoff[C]
	for i := range f.slots {
		// A load first: a swap would take the slot's cache line from
		// whichever core has it even when the slot is empty, at every
		// caller that queues.
		if f.slots[i].e.Load() == nil {
			continue
		}
		e := f.slots[i].e.Swap(nil)
		if e == nil {
			continue
		}
		switch h := p.putLocked(e, e.idleSince, now); {
		case h.w != nil:
			h.w.ch <- result[C]{e: h.e, check: h.check}
		case h.e != nil:
			closing = append(closing, h)
		}
	}
	return closing
}

// unparkForWaitersLocked moves the parked connections back for the
// waiters, just after a waiter was queued: if it is the only one, it has
// just raised the gate, and the parked connections go to it (and to the
// idle stack if there are more). It does nothing
// above MaxSize, where no connection stays parked (the releases that park
// then take theirs back), so that it never has a connection to close.
// p.mu must be held.
func (p *Pool[C]) unparkForWaitersLocked(now int64) {
	if p.noFast || p.aboveMax || p.waiters.len != 1 {
		// With others queued before, the gate was already up: nothing
		// has parked since the first of them emptied the slots.
		return
	}
	if len(p.unparkLocked(now)) > 0 {
		panic("pool: internal: a parked connection to close while callers wait")
	}
}

// parked counts the connections parked now, and the loans started from
// the slots, for Stats.
func (p *Pool[C]) parked() (n int, lends int64) {
	f := p.fast.Load()
	if f == nil {
		return 0, 0
	}
	for i := range f.slots {
		if f.slots[i].e.Load() != nil {
			n++
		}
		lends += f.slots[i].lends.Load()
	}
	return n, lends
}
