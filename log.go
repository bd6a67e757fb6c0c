package pool

import (
	"context"
	"log/slog"
)

// Log levels, named so that call sites read as what they report.
const (
	levelDebug = slog.LevelDebug
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

// logf logs an event through Config.Logger, if one is set, with the
// attribute source=Config.Name when the pool has a name (a Manager's and
// a registry's pools are named after their source ID). It never receives
// a connection string or a password: only error texts, counts and stacks.
func (p *Pool[C]) logf(level slog.Level, msg string, args ...any) {
	if p.log == nil {
		return
	}
	p.log.Log(context.Background(), level, "pool: "+msg, args...)
}

// event is a log record decided under the pool lock and logged after it
// is released: the Logger is user code, and user code never runs under
// the lock. The zero event logs nothing.
type event struct {
	level slog.Level
	msg   string
	args  []any
}

// emit logs ev, if it holds anything. p.mu must not be held.
func (p *Pool[C]) emit(ev event) {
	if ev.msg != "" {
		p.logf(ev.level, ev.msg, ev.args...)
	}
}

// logPanic counts and logs a panic recovered from a connector or Factory.
func (p *Pool[C]) logPanic(pe *PanicError) {
	p.stats.panicsRecovered.Add(1)
	p.logf(levelError, "connector panicked; recovered", "op", pe.Op, "panic", pe.Value, "stack", string(pe.Stack))
}
