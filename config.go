package pool

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Config tunes one Pool. Start from DefaultConfig and change what you need:
// a zero Config is invalid (MaxSize 0), so a forgotten field never silently
// means "unlimited".
//
// A duration of zero switches its feature off, as documented on each
// field, with one exception: DialBackoffMax is a cap, and zero means the
// cap of one minute (no cap at all would leave a source that stays down
// unprobed for ever). Negative durations are invalid. Durations too long
// to represent from now on, up to math.MaxInt64, mean "never".
type Config struct {
	// Name names the pool in its log lines (the attribute source=Name)
	// and, for the metrics modules, in its metrics. A Manager or registry
	// names each pool it makes after its source ID, whatever the
	// PoolFactory's Config says. Default empty: log lines carry no name.
	Name string

	// MinSize is the number of connections the pool keeps open even when
	// idle. New dials them in the background, and the reaper refills to
	// MinSize. Default 1. Zero keeps no warm connections. Negative is
	// invalid, and so is a MinSize above MaxSize.
	MinSize int

	// MaxSize bounds the connections open at once: idle, in use and being
	// dialled together. Default 10. Must be at least 1.
	MaxSize int

	// MaxIdleTime closes a connection that has sat idle this long, as long
	// as the pool stays at MinSize or above: the reaper closes it on its
	// first run after that (with 50 ms of slack for the coarse clock), and
	// never before. Default 5 minutes. Zero keeps idle connections forever.
	MaxIdleTime time.Duration

	// MaxLifetime closes a connection this long after it was dialled (less
	// a random jitter of up to a tenth, so a fleet does not reconnect at
	// once). An expired connection is never lent: the reaper closes it when
	// idle, and Acquire closes it instead of lending it. A loan in progress
	// is not cut short. Default 1 hour. Zero means connections never expire
	// by age.
	MaxLifetime time.Duration

	// AcquireTimeout bounds a whole Acquire (its health checks, the dials
	// it waits for, and its wait in the queue) when the caller's context
	// has no earlier deadline. Default 30 seconds. Zero means only the
	// caller's context bounds the call.
	AcquireTimeout time.Duration

	// ReapInterval is how often the background reaper closes idle and
	// expired connections and refills to MinSize. Default 60 seconds. Zero
	// runs no reaper: idle and expired connections are then closed only
	// when an acquire finds them, and MinSize is dialled only by New.
	ReapInterval time.Duration

	// DialTimeout bounds each call of the Factory. Default 10 seconds. Zero
	// means a dial is bounded only by Close.
	DialTimeout time.Duration

	// PingAfterIdle makes Acquire Ping a connection that has been idle at
	// least this long, since its last release, before handing it out. The
	// release is timed by the coarse clock, so idle time may be
	// over-estimated by a millisecond or two, never under-estimated.
	// Default 1 second. Zero never pings, like every other zero duration
	// here; to ping on (nearly) every acquire, use a tiny duration such as
	// time.Nanosecond.
	PingAfterIdle time.Duration

	// PingTimeout bounds each Ping made by Acquire. Default 5 seconds. Zero
	// means the Ping is bounded only by the caller's context.
	PingTimeout time.Duration

	// ResetTimeout bounds each Reset made on release, for connectors that
	// implement Resetter. Reset must honour its ctx; if it has not returned
	// when ResetTimeout passes, the pool closes the connection (as closing a
	// socket wakes a blocked read) and does not reuse it. Default 5 seconds.
	// Zero means no bound.
	ResetTimeout time.Duration

	// DialBackoff is the pause between dials while the source is down,
	// doubled after each further failure up to DialBackoffMax, with
	// jitter (each pause is between half and all of its nominal length).
	// For the first 100 ms after a source goes down, the pauses are 20 ms
	// (jittered) when DialBackoff is longer, so that a server back at
	// once (a restart, a failover) is found within about 20 ms, and an
	// Acquire whose deadline (ctx's or AcquireTimeout) comes after the
	// next probe waits for that probe and gets its connection or its
	// error. While the dials fail with ErrNotReady (a failover, a
	// restart), those first 100 ms last up to 10 s. A new connection that
	// fails its first check counts as a failed dial. While the source is down (the last dial failed), one
	// dial at a time probes it, the first success ends this at once, and
	// after those first 100 ms an Acquire for which no connection is
	// coming fails fast with the last dial error, matching ErrDial,
	// instead of waiting out AcquireTimeout. Default 50 ms. Zero switches
	// backoff and fail-fast off: failed dials are retried at once, for as
	// long as callers wait.
	DialBackoff time.Duration

	// DialBackoffMax caps the pause between dials while the source is
	// down. Default 500 ms. Zero means a cap of one minute: the one zero
	// duration here that does not switch a feature off. It must not be
	// below DialBackoff.
	DialBackoffMax time.Duration

	// MaxConcurrentDials bounds the dials in flight at once, so that a
	// burst of callers does not open a storm of connections to a slow
	// server. Default 4. Zero means up to MaxSize. Negative is invalid.
	MaxConcurrentDials int

	// MaxWaiters bounds the callers waiting for a connection: one that
	// would be waiter number MaxWaiters+1 fails at once with an error
	// matching ErrTooManyWaiters, instead of queueing behind a backlog it
	// cannot get through. Default zero: no bound. Negative is invalid.
	MaxWaiters int

	// Budget, if set, is shared with other pools: together they never
	// hold more than its limit open, and this pool's MinSize is reserved
	// on it (see Budget). Nil (the default): the pool is bounded by
	// MaxSize alone.
	Budget *Budget

	// Weight is the pool's share of its Budget when pools compete for
	// it: a pool of weight 2 is entitled to twice the connections of one
	// of weight 1. Default zero: weight 1. Negative is invalid; without a
	// Budget it has no effect.
	Weight int

	// Share lets this pool exchange connections with the other pools on
	// its Budget that name the same Share.Group, instead of closing one
	// and dialling another when a slot moves between them (see Share).
	// The zero Share (the default): the pool's connections are its own.
	Share Share

	// Adaptive keeps open, between MinSize and MaxSize, what the pool's
	// demand needs: the arrival rate of the last seconds times the mean
	// loan length, plus a quarter and one for headroom. Idle connections
	// above that are closed once idle for a second, so that a quiet pool
	// hands its share of the server (or of its Budget) back within
	// seconds, not MaxIdleTime. Loans are then timed, which costs two
	// clock readings per loan. Default false.
	Adaptive bool

	// ShedHopeless fails at once, instead of queueing it to time out, a
	// caller whose deadline (its ctx's, or AcquireTimeout) will pass
	// before its predicted turn: the waiters ahead of it, times the mean
	// loan length, over the connections in use. The error wraps
	// context.DeadlineExceeded (Stats.Shed counts them). It applies only
	// while the pool cannot dial for the caller. Loans are then timed, as
	// for Adaptive. Default false.
	ShedHopeless bool

	// LeakThreshold reports a loan held longer than this: once, with the
	// stack of the code that acquired it, through Logger and in
	// Stats.LeakedLoans. With it set, a handle dropped without Release is
	// also found when the garbage collector frees it: its connection is
	// closed, its slot reclaimed, and it is reported with its acquire
	// stack (Stats.AbandonedLoans). Acquire then costs a stack capture,
	// a timer and a handle allocation. Default zero: off.
	LeakThreshold time.Duration

	// Logger receives the pool's events: failed dials and recovery, fail
	// fast switched on and off, leaks, panics recovered from connectors,
	// and connections closed by force, each with the attribute
	// source=Name when Name is set. Nil (the default) logs nothing. The
	// pool never logs a connection string or a password, but it does log
	// the text of errors that the Factory and the connector return.
	Logger *slog.Logger

	// Hooks receive the pool's events (acquire waits, loan times, dials,
	// closes) for metrics. Unset (the default), they cost nothing.
	Hooks Hooks

	// reserved is the MinSize that PooledRegistry.Register reserved on
	// Budget for the source this Config was registered with.
	reserved *reservation
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		MinSize:        1,
		MaxSize:        10,
		MaxIdleTime:    5 * time.Minute,
		MaxLifetime:    time.Hour,
		AcquireTimeout: 30 * time.Second,
		ReapInterval:   60 * time.Second,
		DialTimeout:    10 * time.Second,
		PingAfterIdle:  time.Second,
		PingTimeout:    5 * time.Second,
		ResetTimeout:   5 * time.Second,

		DialBackoff:        50 * time.Millisecond,
		DialBackoffMax:     500 * time.Millisecond,
		MaxConcurrentDials: 4,
	}
}

// Validate reports the first field that is out of range, as an error that
// matches ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	bad := invalidField
	switch {
	case c.MaxSize < 1:
		return bad("MaxSize", "is %d; it must be at least 1 (start from DefaultConfig())", c.MaxSize)
	case c.MinSize < 0:
		return bad("MinSize", "is %d; it must not be negative", c.MinSize)
	case c.MinSize > c.MaxSize:
		return bad("MinSize", "is %d, above MaxSize %d", c.MinSize, c.MaxSize)
	case c.MaxConcurrentDials < 0:
		return bad("MaxConcurrentDials", "is %d; it must not be negative", c.MaxConcurrentDials)
	case c.MaxWaiters < 0:
		return bad("MaxWaiters", "is %d; it must not be negative", c.MaxWaiters)
	case c.Weight < 0:
		return bad("Weight", "is %d; it must not be negative", c.Weight)
	case c.Weight > MaxWeight:
		return bad("Weight", "is %d; it must not be above %d", c.Weight, MaxWeight)
	case c.Share.Group != "" && c.Share.Bind == nil:
		return bad("Share", "names group %q but has no Bind", c.Share.Group)
	case c.Share.Group != "" && c.Budget == nil:
		return bad("Share", "names group %q but the pool has no Budget to share it on", c.Share.Group)
	case c.Share.Group == "" && c.Share.Bind != nil:
		return bad("Share", "has a Bind but no Group")
	case c.DialBackoffMax > 0 && c.DialBackoffMax < c.DialBackoff:
		return bad("DialBackoffMax", "is %v, below DialBackoff %v", c.DialBackoffMax, c.DialBackoff)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"MaxIdleTime", c.MaxIdleTime},
		{"MaxLifetime", c.MaxLifetime},
		{"AcquireTimeout", c.AcquireTimeout},
		{"ReapInterval", c.ReapInterval},
		{"DialTimeout", c.DialTimeout},
		{"PingAfterIdle", c.PingAfterIdle},
		{"PingTimeout", c.PingTimeout},
		{"ResetTimeout", c.ResetTimeout},
		{"DialBackoff", c.DialBackoff},
		{"DialBackoffMax", c.DialBackoffMax},
		{"LeakThreshold", c.LeakThreshold},
	}
	for _, f := range durations {
		if f.d < 0 {
			return bad(f.name, "is %v; it must not be negative", f.d)
		}
	}
	return nil
}

// invalidField returns an error matching ErrInvalidConfig that names the
// field and says what is wrong with its value.
func invalidField(field string, format string, args ...any) error {
	return newError("invalid config: "+field+" "+fmt.Sprintf(format, args...), ErrInvalidConfig)
}

// MaxWeight is the largest Config.Weight: weights are multiplied by
// connection counts when pools are compared, and this bound keeps the
// products far from overflow.
const MaxWeight = 1 << 20

// Share describes how a pool's connections can serve the other pools of
// its Budget. Connections of pools that name one Group are interchangeable
// up to Bind: they reach one server as one login, and differ only in
// session settings, such as tenants that share a PostgreSQL database and
// role and each have a search_path of their own. When the budget moves a
// slot from one such pool to another, it moves the connection with it
// (released, or idle) and Bind re-binds it, instead of closing it and
// dialling a new one; and a pool with no idle connection of its own takes
// an idle one of another pool of the group (one above its MinSize, idle
// for 100 ms or more), re-bound, before it dials.
type Share struct {
	// Group names the connections that are interchangeable. Pools on one
	// Budget with the same Group, and the same connection type, exchange
	// connections. Empty (the default): none.
	Group string
	// Bind makes c, a connection that another pool of the group lent last,
	// serve this pool: it must first clear everything that pool's
	// borrowers left in the session, whatever a ResetChecker or Reset
	// decided (they may be another tenant's), and then apply this pool's
	// own settings. The pool calls it before c serves here, under the
	// pool's DialTimeout, and never calls Reset on a moved connection
	// first. An error (or a panic) closes c, and the pool dials instead.
	Bind func(ctx context.Context, c Connector) error
}
