package pool

import (
	"errors"
	"time"
)

// The capacity ceiling: how a pool (or a budget) follows the server's own
// connection limit, which every replica of a service sees and none
// configures. A Factory whose dial the server refused because it was full
// returns an error matching ErrCapacity. Such a refusal is a signal of
// capacity, not of failure:
//
//   - the source is not marked down, and no caller is failed for it: the
//     callers wait for a connection to come back or for a later dial,
//     within their ctx and AcquireTimeout;
//   - the ceiling drops to the connections open (multiplicative
//     decrease), zero included: no dial starts above it;
//   - while callers wait, the ceiling rises by one (a probe) at most once
//     per pause, the pause doubling after each refusal in a row up to its
//     cap (additive increase); a probe that succeeds halves the refusals
//     counted, so that replicas that contend for one server's last slots
//     keep probing slowly, while a server that has made room is probed
//     faster after each success. A dial below the ceiling that succeeds
//     (a connection replaced) leaves the pause alone;
//   - idle connections closed for want of use take the ceiling down with
//     them: what a pool gives back, it takes again only by probing.
//
// Without a Budget the ceiling is the pool's, and the pause is
// DialBackoff capped at DialBackoffMax (capacityPause and capacityPauseMax
// when DialBackoff is zero). With a Budget it is the budget's, shared by
// its pools, with capacityPause and capacityPauseMax: the server refuses
// the fleet, not one pool, and one probe per pause for the whole budget
// keeps a replica's refused dials few.

const (
	capacityPause    = 50 * time.Millisecond
	capacityPauseMax = 500 * time.Millisecond
)

// ceilingState is a ceiling below the configured maximum. The zero value
// is no ceiling.
type ceilingState struct {
	// set is true while there is a ceiling; at is the ceiling then.
	set bool
	at  int
	// refusals counts the refusals in a row; the pause before the next
	// probe doubles with each.
	refusals int
	// probeAt is when the next probe may start, in the owner's clock.
	probeAt int64
	// probing is set while a probe's dial is in flight.
	probing bool
}

// limit is the most connections that may be open: max, or the ceiling
// below it.
func (c *ceilingState) limit(max int) int {
	if c.set && c.at < max {
		return c.at
	}
	return max
}

// refused lowers the ceiling to open and, for the first refusal in a row
// or a probe's, sets when the next probe may start, the pause doubling
// with each. Any other refusal, of a dial that started before the ceiling
// dropped, only lowers the ceiling.
func (c *ceilingState) refused(open int, now int64, pause func(n int) time.Duration) {
	if !c.set || open < c.at {
		c.set, c.at = true, open
	}
	if c.refusals > 0 && !c.probing {
		return
	}
	c.probing = false
	c.refusals++
	c.probeAt = addSat(now, pause(c.refusals))
}

// probe raises the ceiling by one if it is below limit and the pause since
// the last probe or refusal has passed. Otherwise it returns false and,
// if a probe will be due, when (0 if none will).
func (c *ceilingState) probe(limit int, now int64, pause func(n int) time.Duration) (ok bool, at int64) {
	if !c.set || c.at >= limit {
		return false, 0
	}
	if now < c.probeAt {
		return false, c.probeAt
	}
	c.at++
	c.probing = true
	c.probeAt = addSat(now, pause(max(c.refusals, 1)))
	return true, 0
}

// succeeded records a dial that succeeded. A probe's success halves the
// refusals counted in a row, and so shortens the pause before the next
// probe (a run of successes brings it back to the shortest); the success
// of any other dial, one below the ceiling, says nothing of room above
// it and leaves the pause as it is. (While a probe is in flight, the
// first success is taken for the probe's.) The ceiling ends once it has
// grown back to max.
func (c *ceilingState) succeeded(max int) {
	if c.probing {
		c.probing = false
		c.refusals /= 2
	}
	if c.at >= max {
		*c = ceilingState{}
	}
}

// gaveBackLocked records that the pool closed idle connections it had no
// use for. While the server refuses dials for capacity, the ceiling (the
// pool's, or its budget's) follows them down: their slots go back to the
// server, for whichever of its clients wants one, and taking one again
// costs a probe, like any growth above the room known. Otherwise a replica
// that holds its share would take back at once every slot it gives up,
// and one that lost its share would wait for its probes to meet a gap
// between a close and a redial. p.mu must be held, the connections
// already closing.
func (p *Pool[C]) gaveBackLocked() {
	if p.bm == nil {
		if c := &p.dialing.ceiling; c.set {
			c.at = min(c.at, p.liveLocked())
		}
		return
	}
	b := p.cfg.Budget
	b.mu.Lock()
	if b.ceiling.set {
		closing, _ := b.closingLocked()
		b.ceiling.at = min(b.ceiling.at, b.open-closing)
	}
	b.mu.Unlock()
}

// isCapacity reports whether a dial error says the server is full.
func isCapacity(err error) bool { return errors.Is(err, ErrCapacity) }

// capLocked is the most connections the pool may dial up to: MaxSize, or
// the capacity ceiling below it. p.mu must be held.
func (p *Pool[C]) capLocked() int { return p.dialing.ceiling.limit(p.maxSize) }

// capacityPauseFor is the pause before the n-th probe after refusals:
// the pool's backoff, or capacityPause doubled up to capacityPauseMax if
// DialBackoff is zero.
func (p *Pool[C]) capacityPauseFor(n int) time.Duration {
	if p.cfg.DialBackoff > 0 {
		return p.backoff(n)
	}
	return pauseFor(n)
}

// pauseFor is capacityPause doubled n-1 times, capped at
// capacityPauseMax, with jitter between half and all of it.
func pauseFor(n int) time.Duration { return jitteredBackoff(capacityPause, capacityPauseMax, n) }

// refusedLocked records a dial refused for capacity: the ceiling (the
// pool's, or its budget's) drops to the connections open. It returns the
// event to log once the caller has unlocked. p.mu must be held, the
// failed dial already uncounted.
func (p *Pool[C]) refusedLocked(err error, now int64) event {
	p.stats.refused.Add(1)
	// The server answered: it is up, only full. A down state (from
	// earlier failures) ends, so that callers wait instead of failing.
	d := &p.dialing
	d.failures, d.retryAt, d.lastErr = 0, 0, err
	var ceiling int
	if p.bm != nil {
		ceiling = p.cfg.Budget.refused()
	} else {
		p.dialing.ceiling.refused(p.liveLocked(), now, p.capacityPauseFor)
		ceiling = p.dialing.ceiling.at
	}
	if p.log == nil {
		return event{}
	}
	return event{levelDebug, "dial refused: the server is at capacity; callers wait", []any{"error", err.Error(), "ceiling", ceiling}}
}

// probeLocked starts a probe above the pool's ceiling if one is due, and
// reports whether it did; if one will be due, it arms the retry timer.
// p.mu must be held.
func (p *Pool[C]) probeLocked(now int64) bool {
	ok, at := p.dialing.ceiling.probe(p.maxSize, now, p.capacityPauseFor)
	if at != 0 {
		p.armRetryLocked(now, at)
	}
	return ok
}

// dialSucceededLocked records a dial that succeeded: for the ceiling
// unless the pool is closed, and, on a budget, as a dial no longer in
// flight. p.mu must be held.
func (p *Pool[C]) dialSucceededLocked() {
	if p.bm != nil {
		p.cfg.Budget.dialEnded()
	}
	switch {
	case p.closed.Load():
	case p.bm != nil:
		p.cfg.Budget.dialSucceeded()
	default:
		p.dialing.ceiling.succeeded(p.maxSize)
	}
}

// The budget's side.

// capLocked is the most slots the budget may hand out: its limit, or the
// capacity ceiling below it. b.mu must be held.
func (b *Budget) capLocked() int { return b.ceiling.limit(b.limit) }

// now reads the budget's clock: nanoseconds since it was made.
func (b *Budget) now() int64 { return int64(time.Since(b.epoch)) }

// refused records a dial refused for capacity by one of the budget's
// pools, whose slot is already freed, and returns the new ceiling.
func (b *Budget) refused() int {
	b.refusals.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	closing, _ := b.closingLocked()
	b.ceiling.refused(b.open-closing, b.now(), pauseFor)
	return b.ceiling.at
}

// dialEnded counts out a dial of one of the budget's pools that has
// produced a connection: a slot held back by budgetDials may go now.
func (b *Budget) dialEnded() {
	b.mu.Lock()
	b.dialing--
	if b.wanting.Load() > 0 {
		b.dirty.Store(true)
	}
	b.mu.Unlock()
}

// dialSucceeded records, for the ceiling, a dial of one of the budget's
// open pools that succeeded.
func (b *Budget) dialSucceeded() {
	b.mu.Lock()
	if b.ceiling.set || b.ceiling.refusals > 0 {
		b.ceiling.succeeded(b.limit)
	}
	b.mu.Unlock()
}

// probeLocked raises the ceiling by one if a probe is due, and reports
// whether it did; if one will be due, it arms the wake timer for then.
// b.mu must be held.
func (b *Budget) probeLocked() bool {
	now := b.now()
	ok, at := b.ceiling.probe(b.limit, now, pauseFor)
	if at != 0 {
		b.armWakeLocked(at)
	}
	return ok
}
