package pool

import (
	"math/bits"
	"runtime"
	"slices"
	"sync/atomic"
	"unsafe"
)

// idleSet is where connections rest between loans, and the only code that
// adds or removes one: the idle stack, protected by the pool's mu, and the
// parking slots of the lock-free path (fast.go), each on a cache line of
// its own. A connection on the stack is idle; one in a slot is parked.
//
// The verbs:
//   - park and takeParked, without the lock: a release that finds nobody
//     waiting parks its connection in a free slot, an Acquire takes one;
//   - push, takeNewest, takeOldest, unpark and drain, with the lock held:
//     a connection put back under the lock goes on top of the stack; an
//     Acquire takes the newest; the reaper, SetMaxSize, Adaptive and the
//     budget take the oldest; a caller about to wait takes the parked
//     ones; Close takes everything.
//
// What is taken under the lock is taken from the parked connections too:
// those move to the stack first (unpark), so that nothing reads an idle
// connection without owning it.
type idleSet[C Connector] struct {
	// stack holds the idle connections, the most recently released on
	// top (the end): reuse is newest first, and the oldest are at the
	// bottom. Protected by the pool's mu. When it is not empty, nobody
	// waits.
	stack []*entry[C]
	// parking holds the slots, made with the set and never replaced.
	parking *slotArray[C]
}

// slotArray is the parking slots of an idle set: a power of two of them.
type slotArray[C Connector] struct {
	mask  uint32
	slots []fastSlot[C]
}

// fastSlot holds one parked connection, or nil, and the counters of the
// goroutines whose home it is (countLoan, countWait, countHold), on a
// cache line of its own: counting an event writes no line that every
// core shares.
type fastSlot[C Connector] struct {
	e     atomic.Pointer[entry[C]]
	loans atomic.Int64
	// waits counts the calls that waited, and waitNanos sums their waits.
	waits, waitNanos atomic.Int64
	// holds counts the loans timed, with Adaptive or ShedHopeless, and
	// holdNanos sums their lengths.
	holds, holdNanos atomic.Int64
	_                [64 - 48]byte
}

// maxFastSlots bounds the slots: twice the Ps, at most MaxSize (rounded
// up), at most this.
const maxFastSlots = 64

// init makes the slots for a pool of at most maxSize connections.
func (s *idleSet[C]) init(maxSize int) {
	n := min(max(2*runtime.GOMAXPROCS(0), 2), maxSize, maxFastSlots)
	n = 1 << bits.Len(uint(n-1)) // a power of two, at least n
	s.parking = &slotArray[C]{mask: uint32(n - 1), slots: make([]fastSlot[C], n)}
}

// park puts e, owned by the caller and stamped with its idle time, in a
// free slot, and returns the slot; the caller owns e no longer. It
// returns nil when every slot is full.
func (s *idleSet[C]) park(e *entry[C]) *fastSlot[C] {
	start := home()
	f := s.parking
	for i := range uint32(len(f.slots)) {
		slot := &f.slots[(start+i)&f.mask]
		if slot.e.Load() == nil && slot.e.CompareAndSwap(nil, e) {
			return slot
		}
	}
	return nil
}

// takeBack takes e back out of slot, where park put it, unless someone
// has taken it already; it reports whether it did (the gate race: see
// fast.go).
func (s *idleSet[C]) takeBack(slot *fastSlot[C], e *entry[C]) bool {
	return slot.e.CompareAndSwap(e, nil)
}

// takeParked takes a parked connection, which the caller then owns, with
// the slot it was in, or returns nil if none is parked.
func (s *idleSet[C]) takeParked() (*entry[C], *fastSlot[C]) {
	start := home()
	f := s.parking
	for i := range uint32(len(f.slots)) {
		slot := &f.slots[(start+i)&f.mask]
		if slot.e.Load() == nil {
			continue
		}
		if e := slot.e.Swap(nil); e != nil {
			return e, slot
		}
	}
	return nil, nil
}

// countLoan counts a loan started, in the slot of the calling goroutine
// (a loan of a parked connection is counted in the slot it came from):
// Stats.AcquireCount is the sum over the slots (loans).
func (s *idleSet[C]) countLoan() {
	s.parking.slots[home()&s.parking.mask].loans.Add(1)
}

// countWait counts a wait of d nanoseconds, in the slot of the calling
// goroutine.
func (s *idleSet[C]) countWait(d int64) {
	slot := &s.parking.slots[home()&s.parking.mask]
	slot.waits.Add(1)
	slot.waitNanos.Add(d)
}

// waits sums the waits and the nanoseconds counted by countWait.
func (s *idleSet[C]) waits() (n, nanos int64) {
	for i := range s.parking.slots {
		n += s.parking.slots[i].waits.Load()
		nanos += s.parking.slots[i].waitNanos.Load()
	}
	return n, nanos
}

// countHold counts a timed loan of d nanoseconds, in the slot of the
// calling goroutine.
func (s *idleSet[C]) countHold(d int64) {
	slot := &s.parking.slots[home()&s.parking.mask]
	slot.holds.Add(1)
	slot.holdNanos.Add(d)
}

// loans sums the loans counted by countLoan.
func (s *idleSet[C]) loans() int64 {
	var n int64
	for i := range s.parking.slots {
		n += s.parking.slots[i].loans.Load()
	}
	return n
}

// holds sums the loans and the nanoseconds counted by countHold.
func (s *idleSet[C]) holds() (n, nanos int64) {
	for i := range s.parking.slots {
		n += s.parking.slots[i].holds.Load()
		nanos += s.parking.slots[i].holdNanos.Load()
	}
	return n, nanos
}

// census counts the connections parked now, and sums the loans counted
// by countLoan, in one pass over the slots. Each parked connection is
// counted once: one that moves from one slot to another while they are
// read (through a loan) may be seen in both, and is counted in one.
func (s *idleSet[C]) census() (parked int, loans int64) {
	f := s.parking
	for i := range f.slots {
		loans += f.slots[i].loans.Load()
		e := f.slots[i].e.Load()
		if e == nil {
			continue
		}
		parked++
		for j := range i {
			if f.slots[j].e.Load() == e {
				parked--
				break
			}
		}
	}
	return parked, loans
}

// eachParked calls fn with each connection in a slot now, reading each
// slot once and leaving it there (a connection that moves as they are
// read may be seen twice).
func (s *idleSet[C]) eachParked(fn func(e *entry[C])) {
	for i := range s.parking.slots {
		if e := s.parking.slots[i].e.Load(); e != nil {
			fn(e)
		}
	}
}

// push puts e on top of the stack. The pool's mu must be held.
func (s *idleSet[C]) push(e *entry[C]) { s.stack = append(s.stack, e) }

// takeNewest takes the connection on top of the stack, or returns nil.
// The pool's mu must be held.
func (s *idleSet[C]) takeNewest() *entry[C] {
	n := len(s.stack)
	if n == 0 {
		return nil
	}
	e := s.stack[n-1]
	s.stack[n-1] = nil
	s.stack = s.stack[:n-1]
	return e
}

// unpark takes every parked connection out of its slot and calls put
// with it, for the caller to put it back under the lock. The pool's mu
// must be held.
func (s *idleSet[C]) unpark(put func(e *entry[C])) {
	f := s.parking
	for i := range f.slots {
		// A load first: a swap would take the slot's cache line from
		// whichever core has it even when the slot is empty.
		if f.slots[i].e.Load() == nil {
			continue
		}
		if e := f.slots[i].e.Swap(nil); e != nil {
			put(e)
		}
	}
}

// takeOldest removes from the bottom of the stack (the oldest, roughly:
// unparked connections go on top unsorted), up to n
// connections, stopping at the first for which ok (if not nil) returns
// false, and returns them. The caller has unparked first. The pool's mu
// must be held.
func (s *idleSet[C]) takeOldest(n int, ok func(e *entry[C]) bool) []*entry[C] {
	k := 0
	for k < min(n, len(s.stack)) && (ok == nil || ok(s.stack[k])) {
		k++
	}
	if k == 0 {
		return nil
	}
	out := slices.Clone(s.stack[:k])
	rest := copy(s.stack, s.stack[k:])
	clear(s.stack[rest:])
	s.stack = s.stack[:rest]
	return out
}

// takeWhere removes every connection on the stack for which take returns
// true, whatever its place, and returns them from the bottom up. The caller has
// unparked first. The pool's mu must be held.
func (s *idleSet[C]) takeWhere(take func(e *entry[C]) bool) []*entry[C] {
	var out []*entry[C]
	kept := s.stack[:0]
	for _, e := range s.stack {
		if take(e) {
			out = append(out, e)
		} else {
			kept = append(kept, e)
		}
	}
	clear(s.stack[len(kept):])
	s.stack = kept
	return out
}

// drain removes every connection of the stack and returns them. The
// caller has unparked first. The pool's mu must be held.
func (s *idleSet[C]) drain() []*entry[C] {
	out := s.stack
	s.stack = nil
	return out
}

// oldest returns the connection at the bottom of the stack, still on it,
// or nil. The caller has unparked first. The pool's mu must be held.
func (s *idleSet[C]) oldest() *entry[C] {
	if len(s.stack) == 0 {
		return nil
	}
	return s.stack[0]
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
