package pool

import "time"

// Hooks receive a pool's events as they happen, for metrics: the otel and
// prometheus modules of this repository fill them in. Any field may be nil.
//
// The pool calls each hook on the goroutine where the event happens, never
// while holding its lock, so a hook may call Stats; it must be quick, must
// not block, and must not acquire from the same pool. A hook that panics
// is recovered: the panic is counted in Stats.PanicsRecovered and logged,
// and the event goes on as if the hook had returned. The pool allocates
// nothing to call a hook, and reads the clock for one only when it is set:
// with every hook nil, an event costs one nil check.
type Hooks struct {
	// Acquire is called when Acquire, With or TryAcquire returns, with how
	// long the call took (health checks, dials waited for and time in the
	// queue included) and its error: nil when a connection was lent.
	Acquire func(wait time.Duration, err error)
	// Release is called when a loan ends (Release, Discard, the return of
	// With's fn, or a dropped handle reclaimed), with how long it lasted,
	// before the connection's release-time checks run.
	Release func(use time.Duration)
	// Dial is called after each call of the Factory, with how long it took
	// and its error (nil for a new connection).
	Dial func(took time.Duration, err error)
	// Close is called after each connection is closed, with why.
	Close func(reason CloseReason)
}

// CloseReason is why the pool closed a connection.
type CloseReason int

// The reasons for closing a connection, each counted in Stats.
const (
	CloseIdle       CloseReason = iota // idle past MaxIdleTime (Stats.ClosedIdle)
	CloseLifetime                      // past MaxLifetime (Stats.ClosedLifetime)
	CloseBroken                        // failed a check or Reset, or was discarded (Stats.ClosedBroken)
	ClosePoolClosed                    // the pool was closed (Stats.ClosedPool)
	CloseAbandoned                     // its handle was dropped without Release (Stats.AbandonedLoans)
	CloseResized                       // above a MaxSize lowered by SetMaxSize (Stats.ClosedResized)
	CloseBudget                        // its slot went to another pool on the Budget (Stats.ClosedBudget)
	CloseReset                         // dialled before Pool.Reset (Stats.ClosedReset)
)

// String returns the reason as a short lower-case word, such as "idle",
// fit for a metric label.
func (r CloseReason) String() string {
	switch r {
	case CloseIdle:
		return "idle"
	case CloseLifetime:
		return "lifetime"
	case CloseBroken:
		return "broken"
	case ClosePoolClosed:
		return "pool_closed"
	case CloseAbandoned:
		return "abandoned"
	case CloseResized:
		return "resized"
	case CloseBudget:
		return "budget"
	case CloseReset:
		return "reset"
	}
	return "unknown"
}

func (p *Pool[C]) reportAcquire(start int64, err error) {
	defer p.recoverHook("Hooks.Acquire")
	p.cfg.Hooks.Acquire(time.Duration(p.clock.now()-start), err)
}

// reportDial reports a call of the Factory that began at start.
func (p *Pool[C]) reportDial(start int64, err error) {
	defer p.recoverHook("Hooks.Dial")
	p.cfg.Hooks.Dial(time.Duration(p.clock.now()-start), err)
}

// reportClose reports a closed connection.
func (p *Pool[C]) reportClose(reason CloseReason) {
	if p.cfg.Hooks.Close == nil {
		return
	}
	defer p.recoverHook("Hooks.Close")
	p.cfg.Hooks.Close(reason)
}

// recoverHook, deferred around a hook call, turns the hook's panic into a
// logged and counted *PanicError, so that a faulty metrics hook cannot
// leave the pool's books wrong or a connection unreturned.
func (p *Pool[C]) recoverHook(op string) {
	if v := recover(); v != nil {
		p.logPanic(newPanicError(op, v))
	}
}
