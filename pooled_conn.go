package pool

import (
	"errors"
	"sync/atomic"
	"time"
)

// PooledConn is one loan of a connection by a Pool. Its holder ends the
// loan exactly once, with Release (the connection goes back for reuse) or
// Discard (the connection is closed).
//
// Each loan has its own handle, never reused: once the loan has ended,
// Release, Discard and Conn panic on that handle, even after the same
// connection has been lent to someone else, whose loan they never touch.
// Handles are cut from a slab kept with each connection, so Acquire
// allocates nothing in the long run.
type PooledConn[C Connector] struct {
	e    *entry[C]
	loan uint64 // this loan's number (see entry.ended)
}

// entry is one connection and its bookkeeping. At any moment it has one
// owner: the idle stack (under the pool lock), a waiter's channel, or the
// goroutine that took it from either, which is the only one to touch the
// fields marked "owner". Its state and index change only under the pool
// lock, by the edges of states.go.
type entry[C Connector] struct {
	// The fields a loan writes come first, on one cache line.

	// ended is the number of the last loan that has ended (loans are
	// numbered 1, 2, ... per connection, one at a time). Loan n is in
	// progress while ended is n-1; its handle ends it by swapping ended
	// from n-1 to n, which a stale handle, whose number is lower, can
	// never do. Starting a loan writes nothing here.
	ended atomic.Uint64
	// lent names the last loan to start: the low 24 bits of its number,
	// and above them when it began (the pool's coarse clock, in ms). It
	// is in progress while ended is one below it (loanInProgress): what
	// Holders reads, without the lock, to age the loans. The end of a
	// loan writes nothing here. Written by the loan's owner.
	lent atomic.Uint64
	// idleSince is when the connection last went back to the pool (or was
	// dialled), on the pool's clock: a coarse reading, so up to a tick or
	// two early. Owner.
	idleSince int64
	// index is the connection's place in Pool.conns. Written with mu held.
	index int
	// loanStart is when the current loan began, on the real clock, set
	// only for the Release hook. Owner.
	loanStart int64
	// slab holds the handles of loans slabBase to slabBase+127, written
	// when it is allocated and never again. Owner.
	slab     *[handlesPerSlab]PooledConn[C]
	slabBase uint64
	// leak tracks the loan in progress when Config.LeakThreshold is set.
	// Written by the owner, read by Holders.
	leak atomic.Pointer[leakTracker]
	// fresh is true until the connection's first loan: a new connection
	// that fails its check counts against the source like a failed dial.
	// Owner.
	fresh bool
	// moved is true for a connection another pool of the Share group gave
	// up: its failed check never counts as a failed dial. Set at creation.
	moved bool
	// state is where the connection is in its life (states.go). Written
	// only with the pool's mu held, by the edges of the state machine.
	state connState
	// closed is set by the first close, so that Close runs exactly once
	// even when a Reset watchdog and the pool race to close.
	closed atomic.Bool

	// Set when the connection is dialled, then only read.
	pool *Pool[C]
	conn C
	// Optional interfaces, resolved once so that release does no type
	// assertion.
	validator    Validator
	resetter     Resetter
	resetChecker ResetChecker
	createdAt    time.Time
	// expiresAt is when MaxLifetime ends, on the pool's clock;
	// math.MaxInt64 when there is no MaxLifetime.
	expiresAt int64
	// gen is the pool's generation when its dial began: a connection of
	// a generation before the pool's is closed, never lent again (Reset).
	gen uint64

	// An entry fills whole cache lines (192 bytes with a pointer-sized C),
	// so that two connections in use on two cores share none.
	_ [16]byte
}

// How entry.lent packs a loan: its number's low bits, its start above.
const (
	lentLoanBits = 24
	lentLoanMask = 1<<lentLoanBits - 1
)

// loanInProgress returns when the loan in progress on e began (the pool's
// coarse clock, to the millisecond), and false if none is.
func (e *entry[C]) loanInProgress() (int64, bool) {
	v := e.lent.Load()
	if v&lentLoanMask != (e.ended.Load()+1)&lentLoanMask {
		return 0, false // ended, or none began (v is 0)
	}
	return int64(v>>lentLoanBits) * int64(time.Millisecond), true
}

// endLoan ends loan n if it is in progress, and reports whether it did.
func (e *entry[C]) endLoan(n uint64) bool { return e.ended.CompareAndSwap(n-1, n) }

// inLoan reports whether loan n is in progress.
func (e *entry[C]) inLoan(n uint64) bool { return e.ended.Load() == n-1 }

// handlesPerSlab is how many handles are allocated at once per
// connection.
const handlesPerSlab = 128

// handleFor returns loan n's handle. Handles come from a slab made for
// 128 loans at once and never written after: lending writes no memory
// that another core may hold, and a handle is never reused. Only the owner
// calls it, with loan numbers that only grow.
func (e *entry[C]) handleFor(n uint64) *PooledConn[C] {
	i := n - e.slabBase
	if e.slab == nil || i >= handlesPerSlab {
		s := new([handlesPerSlab]PooledConn[C])
		for k := range s {
			s[k] = PooledConn[C]{e: e, loan: n + uint64(k)}
		}
		e.slab, e.slabBase, i = s, n, 0
	}
	return &e.slab[i]
}

// Conn returns the underlying connection. It panics if this loan has
// ended.
func (pc *PooledConn[C]) Conn() C {
	if !pc.e.inLoan(pc.loan) {
		panic("pool: Conn called on a loan that has ended (used after Release or Discard)")
	}
	return pc.e.conn
}

// pool returns the pool that lent the loan, nil for a zero handle.
func (pc *PooledConn[C]) pool() *Pool[C] {
	if pc.e == nil {
		return nil
	}
	return pc.e.pool
}

// CreatedAt returns when the connection was dialled.
func (pc *PooledConn[C]) CreatedAt() time.Time { return pc.e.createdAt }

// Release ends the loan and returns the connection to its pool. If the
// connector implements Resetter, Reset runs first; then, if it implements
// Validator, IsValid. If Reset fails or outlasts ResetTimeout, IsValid
// reports false, or the pool is closed, the connection is closed instead.
// Otherwise it is handed straight to the longest-waiting Acquire, or put
// on the idle stack. Release panics if this loan has already ended. A
// panic in Reset, IsValid or Close is re-raised once the pool's books are
// right again.
func (pc *PooledConn[C]) Release() {
	if !pc.end(endRelease) {
		panic("pool: Release called on a loan that has ended (released twice?)")
	}
}

// Discard ends the loan and closes the connection instead of returning it
// for reuse, for a holder that knows it is broken. A replacement is
// dialled if callers are waiting or the pool is below MinSize. Discard
// panics if this loan has already ended.
func (pc *PooledConn[C]) Discard() {
	if !pc.end(endDiscard) {
		panic("pool: Discard called on a loan that has ended (released twice?)")
	}
}

// loanEnd is how a holder ends a loan.
type loanEnd uint8

const (
	endRelease loanEnd = iota // the connection goes back for reuse
	endDiscard                // the connection is closed
)

// end ends the loan, if it is in progress, as how says, and reports
// whether the loan was in progress. Release, Discard and the registry's
// Release end loans through it.
func (pc *PooledConn[C]) end(how loanEnd) bool {
	e := pc.e
	if e == nil || !e.endLoan(pc.loan) {
		return false
	}
	p := e.pool
	p.loanEnded(e)
	if how == endDiscard {
		p.discard(e)
	} else {
		p.release(e)
	}
	return true
}

// startLoan begins a loan of a connection that passed its checks and
// returns the loan's number.
func (p *Pool[C]) startLoan(e *entry[C]) uint64 {
	e.fresh = false
	loan := e.ended.Load() + 1 // the owner's own last write: no other writer now
	p.loanStarted(e)
	if p.cfg.LeakThreshold > 0 {
		p.trackLeak(e, loan)
	}
	e.lent.Store(uint64(p.clock.coarse()/int64(time.Millisecond))<<lentLoanBits | loan&lentLoanMask)
	return loan
}

// lend begins a loan and returns its handle, cut from the connection's
// slab (or, with leak detection on, allocated on its own so that the
// garbage collector can tell when it is dropped).
func (p *Pool[C]) lend(e *entry[C]) *PooledConn[C] {
	loan := p.startLoan(e)
	if e.leak.Load() != nil {
		return p.trackedHandle(e, loan)
	}
	return e.handleFor(loan)
}

// loanStarted stamps the start of a loan, for the Release hook and the
// demand measure. The caller owns e.
func (p *Pool[C]) loanStarted(e *entry[C]) {
	if p.timeLoans {
		e.loanStart = p.clock.now()
	}
}

// loanEnded reports the end of a loan to the Release hook and the demand
// measure. The caller has just ended the loan and still owns e. It is
// small enough to inline, so that when loans are not timed the hot path
// pays only the check.
func (p *Pool[C]) loanEnded(e *entry[C]) {
	if p.timeLoans {
		p.reportLoan(e)
	}
}

func (p *Pool[C]) reportLoan(e *entry[C]) {
	d := p.clock.now() - e.loanStart
	if p.cfg.measuresDemand() {
		p.idle.countHold(d)
	}
	if p.cfg.Hooks.Release != nil {
		defer p.recoverHook("Hooks.Release")
		p.cfg.Hooks.Release(time.Duration(d))
	}
}

// runWith calls fn with a connection lent as loan, and ends the loan as
// With documents.
func (p *Pool[C]) runWith(e *entry[C], loan uint64, fn func(C) error) error {
	returned := false
	defer func() {
		if !returned && e.endLoan(loan) { // fn panicked
			p.loanEnded(e)
			p.untrackLeak(e)
			_ = p.retire(e, CloseBroken) // fn's panic goes on, not Close's
		}
	}()
	err := fn(e.conn)
	returned = true
	if e.endLoan(loan) {
		p.loanEnded(e)
		if errors.Is(err, ErrBadConn) {
			p.discard(e)
		} else {
			p.release(e)
		}
	}
	return err
}

// release runs the release-time checks of a connection whose loan has
// ended, outside the lock, then puts it back (lent → idle or a waiter), or
// closes it. Reset runs first, so that a connector that is invalid only
// because of state the borrower left (an open transaction, say) can clear
// it. A connection that needs neither Reset nor IsValid goes back under
// one lock, or none when it can be parked (fast.go); one that needs Reset
// is counted resetting while Reset and IsValid run, one that needs only
// IsValid stays counted lent.
func (p *Pool[C]) release(e *entry[C]) {
	if p.cfg.LeakThreshold > 0 {
		p.untrackLeak(e)
	}
	reset := e.resetter != nil && p.needsReset(e)
	switch {
	case reset:
		p.mu.Lock()
		p.resetLocked(e)
		p.unlock()
		if p.reset(e) != nil || (e.validator != nil && !p.isValid(e)) {
			reraise(p.retire(e, CloseBroken))
			return
		}
	case e.validator != nil && !p.isValid(e): // counted lent while it runs
		reraise(p.retire(e, CloseBroken))
		return
	}
	if !reset && p.park(e) { // a reset one is counted resetting: the lock moves it
		return
	}
	now := p.clock.coarse()
	p.mu.Lock()
	h := p.putLocked(e, now, now)
	p.unlock()
	p.settleBudget() // a connection kept idle while another pool waits
	reraise(h.do(p))
}

// discard closes a connection whose loan has ended.
func (p *Pool[C]) discard(e *entry[C]) {
	p.untrackLeak(e)
	reraise(p.retire(e, CloseBroken))
}

// retire takes a connection in the caller's hands (checking, lent or
// resetting) out of service and closes it outside the lock. It returns
// Close's error.
func (p *Pool[C]) retire(e *entry[C], reason CloseReason) error {
	p.mu.Lock()
	p.closeLocked(e)
	p.unlock()
	return p.finishClose(e, reason)
}
