package pool

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
)

// The sentinel errors of the package, for errors.Is. Each message starts
// with "pool: ", and an error that wraps one says "pool: " only once.
var (
	// ErrPoolClosed is returned when acquiring from, or waiting on, a pool
	// (or a Manager or registry) that has been closed.
	ErrPoolClosed = errors.New("pool: pool is closed")

	// ErrAcquireTimeout is returned by Acquire when Config.AcquireTimeout
	// passes before a connection is ready. The caller's own deadline and
	// cancellation return the context's error instead.
	ErrAcquireTimeout = errors.New("pool: acquire timed out")

	// ErrPoolExhausted is returned by TryAcquire when no idle connection is
	// ready.
	ErrPoolExhausted = errors.New("pool: no idle connection")

	// ErrTooManyWaiters is returned by Acquire and With, at once, when
	// Config.MaxWaiters callers are already waiting.
	ErrTooManyWaiters = errors.New("pool: too many waiters")

	// ErrBadConn is returned, or wrapped, by a With callback to say that the
	// connection is broken: With then closes it instead of reusing it.
	ErrBadConn = errors.New("pool: bad connection")

	// ErrDial is wrapped, together with the cause, in the error returned
	// when the dial made for a caller fails, and when a caller is failed
	// fast because the source is down (see Config.DialBackoff).
	ErrDial = errors.New("pool: dial failed")

	// ErrCapacity is what a Factory's error matches (errors.Is) when the
	// server refused the connection because it is at its connection limit:
	// PostgreSQL's too_many_connections (SQLSTATE 53300) or
	// configuration_limit_exceeded (53400), Blob storage's 503 ServerBusy
	// or a 429. The pool takes it as a signal of capacity, not of failure:
	// the source is not marked down, callers wait for a connection instead
	// of failing, and the pool opens no more than the server accepted,
	// probing for more one dial at a time (see Stats.Ceiling).
	ErrCapacity = errors.New("pool: server at connection capacity")

	// ErrNotReady is what a Factory's error matches (errors.Is) when the
	// server answered but cannot serve the source yet, as in a failover
	// or a restart: it is starting up or shutting down (PostgreSQL's
	// SQLSTATE 57P03), or it is a standby where a primary is asked for
	// (target_session_attrs=read-write). It is a failure, and the source
	// is down, but for up to 10 s after it went down the pool probes it
	// every 20 ms instead of backing off, and a caller whose deadline
	// leaves room waits for the next probe instead of failing at once.
	ErrNotReady = errors.New("pool: server not ready")

	// ErrInvalidConfig is returned by Config.Validate, New, the Manager and
	// Register when an argument is out of range; the message names it.
	ErrInvalidConfig = errors.New("pool: invalid config")

	// ErrUnknownSource is returned when an ID names no registered source, or
	// no pool in a Manager.
	ErrUnknownSource = errors.New("pool: unknown source")

	// ErrDuplicateSource is returned by Register when the ID is taken.
	ErrDuplicateSource = errors.New("pool: duplicate source")

	// ErrNotHeld is returned by PooledRegistry.Release for a handle whose
	// loan has already ended (released, discarded or reclaimed).
	ErrNotHeld = errors.New("pool: connection is not held")

	// ErrForeignConn is returned by PooledRegistry.Release for a connection
	// that does not belong to the pool of the ID given; the connection is
	// still released to its own pool.
	ErrForeignConn = errors.New("pool: connection belongs to another source")
)

// Errors the pool uses inside, or as the cause it wraps in one of the
// errors above; errors that wrap them are built with newError, which
// keeps "pool: " once.
var (
	// errTimedOut is what the timeout timer sends a waiter whose
	// AcquireTimeout has passed; wait turns it into the caller's error.
	errTimedOut = errors.New("pool: internal: wait timed out")
	// errGaveUp is what a hand-off sends a waiter whose ctx has ended, in
	// place of a connection; wait turns it into ctx's error.
	errGaveUp = errors.New("pool: internal: waiter gave up")
	// errShed is what a hand-off sends a waiter left with less time than
	// a mean hold, under ShedHopeless; wait turns it into the caller's
	// error.
	errShed = errors.New("pool: internal: waiter shed")
	// errInvalid is why a connection whose IsValid said false was closed.
	errInvalid = errors.New("pool: the connection's IsValid reported false")
	// errResetTimeout is why a connection whose Reset outlasted
	// ResetTimeout was closed.
	errResetTimeout = errors.New("pool: Reset outlasted ResetTimeout")
	// errNilConn is the dial error of a Factory that returned neither a
	// connection nor an error.
	errNilConn = errors.New("pool: the Factory returned a nil connection and no error")
)

// PanicError is the error a panic becomes when it happens in a pool
// goroutine (a Factory, a PoolFactory, a Close run by the reaper or by
// Pool.Close), where re-raising it would kill the process. It matches the
// errors around it with errors.As.
type PanicError struct {
	Op    string // the connector call that panicked: "Factory", "Close", ...
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("pool: %s panicked: %v", e.Op, e.Value)
}

func newPanicError(op string, v any) *PanicError {
	return &PanicError{Op: op, Value: v, Stack: debug.Stack()}
}

// poolError is an error whose text says "pool:" once and that matches
// every error it wraps.
type poolError struct {
	msg     string
	wrapped []error
}

func (e *poolError) Error() string   { return e.msg }
func (e *poolError) Unwrap() []error { return e.wrapped }

// newError returns an error with text "pool: " + msg that wraps errs
// (nil entries are dropped).
func newError(msg string, errs ...error) error {
	wrapped := make([]error, 0, len(errs))
	for _, err := range errs {
		if err != nil {
			wrapped = append(wrapped, err)
		}
	}
	return &poolError{msg: "pool: " + msg, wrapped: wrapped}
}

// detail is err's text without its leading "pool: ", for quoting one of
// our errors inside another.
func detail(err error) string { return strings.TrimPrefix(err.Error(), "pool: ") }

// sourceError names the source ID in err, which it wraps. It is the one
// way errors cross the Manager and the registry.
func sourceError(id string, err error) error {
	return newError(fmt.Sprintf("source %q: %s", id, detail(err)), err)
}

// dialError wraps a Factory's error (or a new connection's failed check)
// so that it matches ErrDial and the cause.
func dialError(cause error) error {
	return newError("dial failed: "+detail(cause), ErrDial, cause)
}
