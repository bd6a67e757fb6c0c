package pool

// While the source is down: the quick phase and its probes, fail-fast,
// and the backoff (see POOLING.md, "Dialling, capacity and demand").

import (
	"errors"
	"math/rand/v2"
	"time"
)

// probeDueLocked reports whether a caller with the given deadline (pool
// clock, 0 for none) at now waits for the source's next probe instead of
// failing with the error of a dial made before it asked: the source went
// down less than quickPhase ago, so the probe is at most firstRetry away,
// and it is in flight or due before the deadline. A source down for
// longer fails callers in microseconds. p.mu must be held.
func (p *Pool[C]) probeDueLocked(now, deadline int64) bool {
	d := &p.dialing
	if !p.quickLocked(now) {
		return false
	}
	if p.n[stateDialling] > 0 {
		return true
	}
	if p.n.open() >= p.maxSize {
		return false // no probe can start
	}
	return deadline == 0 || max(now, d.retryAt) < deadline
}

// quickLocked reports whether the source, down, is in its quick phase at
// now: DialBackoff is longer than firstRetry, and it went down less than
// quickPhase ago, or less than notReadyPhase ago with its last failure
// matching ErrNotReady. p.mu must be held.
func (p *Pool[C]) quickLocked(now int64) bool {
	d := &p.dialing
	if firstRetry >= p.cfg.DialBackoff {
		return false
	}
	down := now - d.downAt
	return down < int64(quickPhase) || (d.notReady && down < int64(notReadyPhase))
}

// probeAnswersLocked reports whether the dial that has just failed at now
// was a probe of the source's quick phase, which answers only the callers
// who asked before it began (sparedLocked); the first failure answers
// everyone, as a dial error does. p.mu must be held.
func (p *Pool[C]) probeAnswersLocked(now int64) bool {
	return p.downLocked() && p.dialing.failures >= 2 && p.quickLocked(now)
}

// sparedLocked reports whether w waits for the next probe after the one
// that has just failed (probeAnswersLocked): it queued after that probe
// began, so that probe's error is older than its question, and the next
// probe is due before its deadline. p.mu must be held.
func (p *Pool[C]) sparedLocked(w *waiter[C]) bool {
	d := &p.dialing
	if w.queuedAt <= d.probeAt {
		return false
	}
	deadline := p.deadlineOf(w.ctx, w.timeoutAt)
	return deadline == 0 || d.retryAt < deadline
}

// failFastLocked returns the error that fails w's Acquire (call a) at
// once, without queueing it: when the source is down, nothing is open
// that will come back (no connection in use), no dial in flight is left
// for the caller, no dial may start for it yet, and the next probe is not
// one it waits for (probeDueLocked; a call waits for one probe only).
// Otherwise it returns nil. p.mu must be held.
func (p *Pool[C]) failFastLocked(now int64, w *waiter[C], a *acquisition[C]) error {
	switch {
	case !p.downLocked():
		return nil
	case p.n.inUse() > 0:
		return nil // a lent connection comes back, to the waiters in turn
	case p.n[stateDialling] > p.waiters.len:
		return nil // a connection is coming for this caller
	case now >= p.dialing.retryAt && p.n[stateDialling] == 0 && p.n.open() < p.maxSize:
		return nil // this caller's wait starts the next probe
	case !a.probeFailed && p.probeDueLocked(now, p.deadlineOf(w.ctx, w.timeoutAt)):
		return nil // the probe comes before its deadline: it gets its answer
	}
	return p.dialing.lastErr
}

// failUncoveredLocked fails fast, newest first, the waiters for whom no
// connection is coming while the source is down: none is in use, to come
// back, and there are more waiters than dials in flight. Unless a probe
// has just failed (probeFailed), it spares them while they wait for the
// next probe (probeDueLocked, their deadlines left to AcquireTimeout and
// their contexts); a probe of the quick phase that failed answers only
// those who asked before it began (probeAnswersLocked). p.mu must be
// held.
func (p *Pool[C]) failUncoveredLocked(probeFailed bool) {
	if !p.downLocked() || p.n.inUse() > 0 {
		return
	}
	now := p.clock.now()
	if !probeFailed && p.probeDueLocked(now, 0) {
		return
	}
	if probeFailed && p.probeAnswersLocked(now) {
		if p.n[stateDialling] > 0 {
			return // dials begun before the source went down: each answers when it ends
		}
		// Only those who asked before the failed probe began have their
		// answer (they waited for it: not failed fast); the others wait
		// for the next one.
		p.waiters.each(func(w *waiter[C]) {
			if !p.sparedLocked(w) {
				p.waiters.remove(w)
				p.wakes.serve(w, result[C]{err: p.dialing.lastErr})
			}
		})
		return
	}
	for p.waiters.len > p.n[stateDialling] {
		w := p.waiters.popBack()
		p.stats.failedFast.Add(1)
		p.wakes.serve(w, result[C]{err: p.dialing.lastErr})
	}
}

// sourceFailedLocked records a failed dial (err matches ErrDial) and, with
// backoff on, marks the source down until retryAt. It returns the event to
// log once the caller has unlocked. p.mu must be held.
func (p *Pool[C]) sourceFailedLocked(err error, now int64) event {
	d := &p.dialing
	d.lastErr = err
	if d.failures == 0 {
		d.downAt, d.quick, d.probeAt = now, 0, now
	}
	d.notReady = errors.Is(err, ErrNotReady)
	d.failures++
	for _, r := range p.ready {
		r.failed = err
	}
	if p.cfg.DialBackoff == 0 {
		return event{}
	}
	d.retryAt = addSat(now, p.downPause(now, d.failures))
	if p.log == nil {
		return event{}
	}
	if d.failures == 1 {
		return event{levelWarn, "source down: dial failed; failing fast and backing off", []any{"error", err.Error()}}
	}
	return event{levelDebug, "dial failed again", []any{"error", err.Error(), "failures", d.failures}}
}

// sourceUpLocked ends a down state at once, and returns the event to
// log once the caller has unlocked. p.mu must be held.
func (p *Pool[C]) sourceUpLocked() event {
	d := &p.dialing
	var ev event
	if p.downLocked() && p.log != nil {
		ev = event{levelInfo, "source recovered: dial succeeded; fail fast off", []any{"after_failures", d.failures}}
	}
	d.failures, d.retryAt, d.lastErr = 0, 0, nil
	return ev
}

// For quickPhase after a source's first failed dial, the pool probes it
// at pauses of firstRetry (jittered, so between half and all of it), when
// DialBackoff is longer, and callers wait for the next probe; then the
// backoff from DialBackoff starts. A server back within tens of
// milliseconds (a restart, a failover) is found about as soon, at a cost
// of about seven dials to one that stays down.
const (
	firstRetry = 20 * time.Millisecond
	quickPhase = 100 * time.Millisecond
	// notReadyPhase is how long the quick phase lasts while the dials
	// fail with ErrNotReady: a server that answers and says it is
	// changing (a standby where a primary is asked for, a server starting
	// up or shutting down) is in a failover, which mostly ends within
	// seconds.
	notReadyPhase = 10 * time.Second
)

// backoff is DialBackoff doubled n-1 times, capped at DialBackoffMax (a
// minute if unset), with jitter between half and all of it: the pause
// before the n-th probe above a capacity ceiling.
func (p *Pool[C]) backoff(n int) time.Duration {
	return jitteredBackoff(p.cfg.DialBackoff, p.backoffMax(), n)
}

// backoffMax is DialBackoffMax, or a minute if unset.
func (p *Pool[C]) backoffMax() time.Duration {
	if d := p.cfg.DialBackoffMax; d > 0 {
		return d
	}
	return time.Minute
}

// downPause is the pause after a source's failed dial at now, the n-th
// in a row: firstRetry's in the quick phase, then backoff's, counted
// from the first failure after it.
func (p *Pool[C]) downPause(now int64, n int) time.Duration {
	d := &p.dialing
	if p.quickLocked(now) {
		d.quick = n
		return jitteredBackoff(firstRetry, firstRetry, 1)
	}
	return p.backoff(n - d.quick)
}

// jitteredBackoff is base doubled n-1 times, capped at ceiling, with
// jitter between half and all of it.
func jitteredBackoff(base, ceiling time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d = min(d, ceiling/2) * 2 // never past the ceiling, never wrapping
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}
