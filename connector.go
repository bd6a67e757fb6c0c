package pool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// This file holds the connector's interfaces and every call the pool makes
// to a connector: each restores the pool's books with defer if the call
// panics.

// Connector is a connection a Pool can manage.
type Connector interface {
	// Ping checks that the connection is alive. It may do I/O and must
	// honour ctx.
	Ping(ctx context.Context) error
	// Close closes the connection. The pool calls it exactly once.
	Close() error
}

// Resetter is implemented by connectors that carry session state. The pool
// calls Reset on release, before the connection can be lent again; an error
// closes the connection instead. Reset must honour ctx, as Ping does: when
// Config.ResetTimeout passes, the pool closes the connection under it.
type Resetter interface {
	Reset(ctx context.Context) error
}

// ResetChecker is implemented by Resetters that can tell, without I/O,
// whether a connection needs a Reset at all. On release the pool calls
// NeedsReset first and skips Reset, and the timer that bounds it, when it
// reports false.
type ResetChecker interface {
	NeedsReset() bool
}

// Validator is implemented by connectors that can tell cheaply, without
// I/O, that they are broken. The pool calls IsValid on acquire and on
// release; false closes the connection.
type Validator interface {
	IsValid() bool
}

// Factory dials a new connection. The ctx it receives belongs to the pool,
// not to the caller whose Acquire caused the dial: it ends at DialTimeout or
// when the pool is closed, and the Factory must return soon after it ends.
// A Factory that returns a nil connection with a nil error, or panics,
// counts as a failed dial.
type Factory[C Connector] func(ctx context.Context) (C, error)

// Adapt turns a Factory of one connection type, T, into a Factory for
// pools and registries of another, C, that a T can be held as: most often
// a PooledRegistry[Connector] that holds sources of several kinds. It
// fails, naming both types, if T does not implement C (Go's type
// parameters cannot say so at compile time), or if f is nil.
func Adapt[C, T Connector](f Factory[T]) (Factory[C], error) {
	from, to := reflect.TypeFor[T](), reflect.TypeFor[C]()
	switch {
	case f == nil:
		return nil, errors.New("pool: Adapt: nil Factory")
	case !from.AssignableTo(to):
		return nil, fmt.Errorf("pool: Adapt: a %v cannot be held as a %v", from, to)
	}
	return func(ctx context.Context) (C, error) {
		t, err := f(ctx)
		c, _ := any(t).(C) // a nil T (interface) gives a nil C: a failed dial, as for f itself
		return c, err
	}, nil
}

// ping runs the acquire-time Ping, bounded by PingTimeout and by the
// Acquire's own timeout (pool clock, 0 if none), whichever ends first.
func (p *Pool[C]) ping(ctx context.Context, e *entry[C], timeoutAt, now int64) error {
	limit := timeoutAt
	if pt := addSat(now, p.cfg.PingTimeout); p.cfg.PingTimeout > 0 && (limit == 0 || pt < limit) {
		limit = pt
	}
	if limit != 0 && limit != maxReading {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.clock.time(limit))
		defer cancel()
	}
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "Ping")
		}
	}()
	err := e.conn.Ping(ctx)
	returned = true
	return err
}

// needsReset reports whether a released connection, which has a
// Resetter, must be Reset: no ResetChecker says otherwise. A panic in
// NeedsReset closes the connection and goes on.
func (p *Pool[C]) needsReset(e *entry[C]) bool {
	if e.resetChecker == nil {
		return true
	}
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "NeedsReset")
		}
	}()
	needed := e.resetChecker.NeedsReset()
	returned = true
	return needed
}

// isValid calls IsValid; if it panics, the connection is closed and the
// panic goes on.
func (p *Pool[C]) isValid(e *entry[C]) bool {
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "IsValid")
		}
	}()
	ok := e.validator.IsValid()
	returned = true
	return ok
}

// reset runs Reset bounded by ResetTimeout. If Reset has not returned
// when ResetTimeout passes, the connection is closed under it, which wakes
// a Reset blocked on the connection's socket.
func (p *Pool[C]) reset(e *entry[C]) error {
	ctx := context.Background()
	if p.cfg.ResetTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.ResetTimeout)
		defer cancel()
		stop := context.AfterFunc(ctx, func() { p.forceClose(e, errResetTimeout) })
		defer stop() // runs before cancel, so cancel fires nothing
	}
	returned := false
	defer func() {
		if !returned {
			p.closeAfterPanic(e, "Reset")
		}
	}()
	err := e.resetter.Reset(ctx)
	returned = true
	if err == nil && e.closed.Load() { // the watchdog won the race
		err = errResetTimeout
	}
	return err
}

// closeAfterPanic closes a connection whose connector call panicked on the
// caller's goroutine, from the state the call ran in (checking, lent or
// resetting). It runs in a deferred call while the panic goes on, so an
// error of Close's (or its panic) is logged and dropped.
func (p *Pool[C]) closeAfterPanic(e *entry[C], op string) {
	p.stats.panicsRecovered.Add(1)
	p.logf(levelError, "connector panicked; connection closed, panic re-raised", "op", op)
	p.untrackLeak(e)
	_ = p.retire(e, CloseBroken)
}

// closeConn calls the connector's Close the first time it is called for
// e, and does nothing after that. A panic in Close is recovered, logged
// and returned as a *PanicError.
func (p *Pool[C]) closeConn(e *entry[C]) (err error) {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			pe := newPanicError("Close", v)
			p.logPanic(pe)
			err = pe
		}
	}()
	return e.conn.Close()
}

// forceClose closes a connection that is still in someone's hands, to
// wake a connector call that ignores its ctx.
func (p *Pool[C]) forceClose(e *entry[C], why error) {
	p.logf(levelWarn, "connection closed by force", "reason", why.Error())
	_ = p.closeConn(e)
}

// reraise re-raises, on the caller's goroutine, a panic of Close's that
// closeConn recovered, once the books are right.
func reraise(err error) {
	if pe, ok := err.(*PanicError); ok {
		panic(pe.Value)
	}
}
