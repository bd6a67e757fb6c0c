package pool

import (
	"runtime"
	"strconv"
	"strings"
	"time"
)

// leakTracker follows one loan while Config.LeakThreshold is set.
type leakTracker struct {
	stack []uintptr // where the loan was acquired
	timer *time.Timer
}

// trackLeak captures the acquiring stack and arms the hold-time timer for
// a loan. The timer reports the loan once if it is still in progress.
func (p *Pool[C]) trackLeak(e *entry[C], loan uint64) {
	var pcs [32]uintptr
	n := runtime.Callers(3, pcs[:]) // skip Callers, trackLeak, startLoan
	t := &leakTracker{stack: append([]uintptr(nil), pcs[:n]...)}
	t.timer = time.AfterFunc(p.cfg.LeakThreshold, func() {
		if !e.inLoan(loan) {
			return
		}
		p.stats.leakedLoans.Add(1)
		p.logf(levelWarn, "connection held longer than LeakThreshold",
			"threshold", p.cfg.LeakThreshold.String(), "acquired_at", formatStack(t.stack))
	})
	e.leak.Store(t)
}

// untrackLeak stops following a loan that has ended. Only the goroutine
// that ended it calls it.
func (p *Pool[C]) untrackLeak(e *entry[C]) {
	if t := e.leak.Swap(nil); t != nil {
		t.timer.Stop()
	}
}

// abandoned identifies a loan whose handle the garbage collector may find
// unreachable. It must not point at the handle.
type abandoned[C Connector] struct {
	e     *entry[C]
	loan  uint64
	stack []uintptr
}

// trackedHandle allocates a handle of its own for a loan, with a cleanup
// that reclaims the loan if the handle is dropped while it is in progress.
func (p *Pool[C]) trackedHandle(e *entry[C], loan uint64) *PooledConn[C] {
	h := &PooledConn[C]{e: e, loan: loan}
	runtime.AddCleanup(h, p.reclaim, abandoned[C]{e: e, loan: loan, stack: e.leak.Load().stack})
	return h
}

// reclaim runs when a tracked handle has become unreachable. If its loan
// never ended, nobody can end it now: the connection is closed (its holder
// may still have its C) and its slot given back.
func (p *Pool[C]) reclaim(a abandoned[C]) {
	if !a.e.endLoan(a.loan) {
		return // released in time
	}
	p.loanEnded(a.e)
	p.untrackLeak(a.e)
	_ = p.retire(a.e, CloseAbandoned)
	p.logf(levelError, "connection handle dropped without Release; connection closed and slot reclaimed",
		"acquired_at", formatStack(a.stack))
}

// formatStack renders a captured stack as "function file:line" lines,
// leaving out the frames of this module's library packages
// (libraryFrame).
func formatStack(pcs []uintptr) string {
	var b strings.Builder
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if !libraryFrame(f.Function) {
			b.WriteString(f.Function)
			b.WriteString("\n\t")
			b.WriteString(f.File)
			b.WriteString(":")
			b.WriteString(strconv.Itoa(f.Line))
			b.WriteString("\n")
		}
		if !more {
			break
		}
	}
	return b.String()
}
