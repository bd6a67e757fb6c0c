package pool

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes one Pool. Start from DefaultConfig and change what you need:
// a zero Config is invalid (MaxSize 0), so a forgotten field never silently
// means "unlimited".
//
// Durations of zero switch the feature off, as documented on each field;
// negative durations are invalid unless the field says otherwise.
type Config struct {
	// MinSize is the number of connections the pool keeps open even when
	// idle. New dials them in the background, and the reaper refills to
	// MinSize. Default 1. Zero keeps no warm connections. Negative is
	// invalid, and so is a MinSize above MaxSize.
	MinSize int

	// MaxSize bounds the connections open at once: idle, in use and being
	// dialled together. Default 10. Must be at least 1.
	MaxSize int

	// MaxIdleTime closes a connection that has sat idle this long, as long
	// as the pool stays at MinSize or above. Default 5 minutes. Zero keeps
	// idle connections forever.
	MaxIdleTime time.Duration

	// MaxLifetime closes a connection this long after it was dialled (less
	// a random jitter of up to a tenth, so a fleet does not reconnect at
	// once). An expired connection is never lent: the reaper closes it when
	// idle, and Acquire closes it instead of lending it. A loan in progress
	// is not cut short. Default 1 hour. Zero means connections never expire
	// by age.
	MaxLifetime time.Duration

	// AcquireTimeout bounds how long Acquire waits when the caller's
	// context has no earlier deadline. Default 30 seconds. Zero means only
	// the caller's context bounds the wait.
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
	// least this long before handing it out. Idle time is measured without
	// a clock read on release, so it may be over-estimated by the length of
	// the previous loan: a connection held longer than PingAfterIdle is
	// pinged on its next acquire. Default 1 second. Zero pings every
	// connection taken from the idle stack. Negative never pings.
	PingAfterIdle time.Duration

	// PingTimeout bounds each Ping made by Acquire. Default 5 seconds. Zero
	// means the Ping is bounded only by the caller's context.
	PingTimeout time.Duration

	// ResetTimeout bounds each Reset made on release, for connectors that
	// implement Resetter. Default 5 seconds. Zero means no bound.
	ResetTimeout time.Duration
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
	}
}

// ErrInvalidConfig is returned by Config.Validate, New and the Manager when
// a Config field is out of range; the message names the field.
var ErrInvalidConfig = errors.New("pool: invalid config")

// Validate reports the first field that is out of range, as an error that
// matches ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.MaxSize < 1:
		return bad("MaxSize", "is %d; it must be at least 1 (start from DefaultConfig())", c.MaxSize)
	case c.MinSize < 0:
		return bad("MinSize", "is %d; it must not be negative", c.MinSize)
	case c.MinSize > c.MaxSize:
		return bad("MinSize", "is %d, above MaxSize %d", c.MinSize, c.MaxSize)
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
		{"PingTimeout", c.PingTimeout},
		{"ResetTimeout", c.ResetTimeout},
	}
	for _, f := range durations {
		if f.d < 0 {
			return bad(f.name, "is %v; it must not be negative", f.d)
		}
	}
	return nil
}
