package pool

import (
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
	loan uint64 // e.lent holds this number while the loan lasts
}

// entry is one connection and its bookkeeping. At any moment it has one
// owner: the idle stack (under the pool lock), a waiter's channel, or the
// goroutine that took it from either, which is the only one to touch the
// fields marked "owner".
type entry[C Connector] struct {
	pool *Pool[C]
	conn C

	// Optional interfaces, resolved once when the connection is dialled so
	// that release does no type assertion.
	validator Validator
	resetter  Resetter

	createdAt time.Time
	// expiresAt is when MaxLifetime ends, on the pool's clock (Pool.nanos);
	// math.MaxInt64 when there is no MaxLifetime.
	expiresAt int64

	// idleSince is when the connection last went back to the pool (or was
	// dialled), on the pool's clock, possibly earlier but never later (see
	// Pool.checkOut). Owner.
	idleSince int64
	// acquiredAt is when the current or last loan began. Owner.
	acquiredAt int64
	// fresh is true until the connection's first loan: a new connection
	// that fails its check counts against the source like a failed dial.
	// Owner.
	fresh bool

	// lent is the number of the loan in progress, 0 when none. The handle
	// whose loan it is ends it by swapping it to 0, so that a stale handle
	// can never end a later loan.
	lent atomic.Uint64
	// loans counts the loans so far. Owner.
	loans uint64
	// handles is the slab the next handles are cut from. Owner.
	handles []PooledConn[C]
	// leak tracks the loan in progress when Config.LeakThreshold is set.
	// Owner.
	leak *leakTracker

	// closed is set by the first close, so that Close runs exactly once
	// even when a Reset watchdog and the pool race to close.
	closed atomic.Bool
}

// handleSlab is how many handles are allocated at once per connection.
const handleSlab = 128

// Conn returns the underlying connection. It panics if this loan has
// ended.
func (pc *PooledConn[C]) Conn() C {
	if pc.e.lent.Load() != pc.loan {
		panic("pool: Conn called on a loan that has ended (used after Release or Discard)")
	}
	return pc.e.conn
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
	if !pc.e.lent.CompareAndSwap(pc.loan, 0) {
		panic("pool: Release called on a loan that has ended (released twice?)")
	}
	pc.e.pool.release(pc.e)
}

// Discard ends the loan and closes the connection instead of returning it
// for reuse, for a holder that knows it is broken. A replacement is
// dialled if callers are waiting or the pool is below MinSize. Discard
// panics if this loan has already ended.
func (pc *PooledConn[C]) Discard() {
	if !pc.e.lent.CompareAndSwap(pc.loan, 0) {
		panic("pool: Discard called on a loan that has ended (released twice?)")
	}
	pc.e.pool.discard(pc.e)
}
