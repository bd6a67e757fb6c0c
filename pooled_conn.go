package pool

import (
	"sync/atomic"
	"time"
)

// PooledConn is a connection lent by a Pool. Its holder must end the loan
// exactly once, with Release (the connection goes back for reuse) or
// Discard (the connection is closed).
//
// A PooledConn is one per connection and is reused for the next loan of the
// same connection, so Acquire allocates nothing. Release, Discard and Conn
// panic when the handle is not held (a second Release, or use after
// Release). A holder that keeps the pointer after its own Release and calls
// it again once the connection has been lent to someone else is not
// detected; treat the handle as dead after Release.
type PooledConn[C Connector] struct {
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
	// Pool.checkOut). Written under pool.mu, read under it or by the single
	// holder.
	idleSince int64
	// acquiredAt is when the current or last loan began, on the pool's
	// clock. Written and read by the holder.
	acquiredAt int64

	// held is true from the moment the connection is lent until its holder
	// calls Release or Discard.
	held atomic.Bool
}

// Conn returns the underlying connection. It panics if the handle has been
// released or discarded.
func (pc *PooledConn[C]) Conn() C {
	if !pc.held.Load() {
		panic("pool: Conn called on a connection that is no longer held (used after Release or Discard)")
	}
	return pc.conn
}

// CreatedAt returns when the connection was dialled.
func (pc *PooledConn[C]) CreatedAt() time.Time { return pc.createdAt }

// Release returns the connection to its pool. If the connector implements
// Resetter, Reset runs first; then, if it implements Validator, IsValid. If
// Reset fails, IsValid reports false, or the pool is closed, the connection
// is closed instead. Otherwise it is handed straight to the longest-waiting
// Acquire, or put on the idle stack. Release panics if the handle is not
// held.
func (pc *PooledConn[C]) Release() {
	if !pc.held.CompareAndSwap(true, false) {
		panic("pool: Release called on a connection that is not held (released twice?)")
	}
	pc.pool.release(pc)
}

// Discard closes the connection instead of returning it for reuse, for a
// holder that knows it is broken. A replacement is dialled if callers are
// waiting or the pool is below MinSize. Discard panics if the handle is not
// held.
func (pc *PooledConn[C]) Discard() {
	if !pc.held.CompareAndSwap(true, false) {
		panic("pool: Discard called on a connection that is not held (released twice?)")
	}
	pc.pool.closeLent(pc, reasonBroken, false)
}
