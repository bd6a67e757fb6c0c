package pool

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Demand: what the pool measures of its own load, for Config.Adaptive and
// Config.ShedHopeless. While either is on, every loan is timed (as for
// the Release hook) and a timer samples the pool every demandTick: the
// loans started and their mean hold, smoothed over the last seconds.
//
//   - Adaptive: the connections the demand needs are the arrival rate
//     times the mean hold (Little's law), smoothed, plus a quarter and one
//     more for headroom, between MinSize and MaxSize: the target. An idle
//     connection above the target that has been idle adaptiveGrace or
//     longer is closed (oldest first; counted in Stats.ClosedIdle), so a
//     quiet pool gives its share of the server back within seconds
//     instead of MaxIdleTime. Nothing is closed while callers wait.
//   - ShedHopeless: a caller about to wait, with a deadline (its ctx's or
//     AcquireTimeout), that would not finish its own loan by then fails
//     at once. Its predicted turn is its position (the waiters ahead of
//     it, in its class and above, plus one) times the mean hold, over the
//     connections in use; it is shed if its turn plus one mean hold ends
//     after the deadline, since a loan that starts with less time left
//     than a mean hold mostly runs out of time and is wasted. It applies
//     only when the pool cannot dial for the caller (it is at MaxSize or
//     its ceiling). And a waiter whose turn comes with less time left
//     than a mean hold is skipped at the hand-off and fails the same way:
//     the connection goes to the next waiter, who can use it.

const (
	demandTick    = 100 * time.Millisecond
	adaptiveGrace = time.Second
	// demandSmoothing is the weight of a new sample: about two seconds
	// of memory at one sample per demandTick.
	demandSmoothing = 1.0 / 20
)

// demandState is the pool's measure of its load. Protected by p.mu, but
// for the timer, set in New.
type demandState struct {
	timer *time.Timer
	// last* are the counters at the previous sample.
	lastAt, lastLends, lastHolds, lastHoldNanos int64
	// meanHold is the smoothed mean loan length, in nanoseconds; 0 until
	// a loan has ended.
	meanHold float64
	// need is the smoothed demand, in connections: arrival rate times
	// mean hold.
	need float64
	// target is what Adaptive keeps open; 0 without Adaptive.
	target int
}

// measuresDemand reports whether the pool times its loans and samples its
// demand.
func (c *Config) measuresDemand() bool { return c.Adaptive || c.ShedHopeless }

// startDemandLocked arms the sampling timer. p.mu must be held.
func (p *Pool[C]) startDemandLocked() {
	p.demand.lastAt = p.clock.now()
	p.demand.timer = time.AfterFunc(demandTick, p.sampleDemand)
}

// sampleDemand is the sampling timer's callback: it updates the measures
// and, with Adaptive, closes the idle connections above the target.
func (p *Pool[C]) sampleDemand() {
	now := p.clock.now()
	p.mu.Lock()
	if p.closed.Load() {
		p.unlock()
		return
	}
	d := &p.demand
	lends := p.idle.loans()
	holds, holdNanos := p.idle.holds()
	if dt := now - d.lastAt; dt > 0 {
		if n := holds - d.lastHolds; n > 0 {
			sample := float64(holdNanos-d.lastHoldNanos) / float64(n)
			if d.meanHold == 0 {
				d.meanHold = sample
			} else {
				d.meanHold += (sample - d.meanHold) * demandSmoothing
			}
		}
		rate := float64(lends-d.lastLends) / float64(dt) // loans per nanosecond
		d.need += (rate*d.meanHold - d.need) * demandSmoothing
	}
	d.lastAt, d.lastLends, d.lastHolds, d.lastHoldNanos = now, lends, holds, holdNanos
	var closing []handoff[C]
	if p.cfg.Adaptive {
		d.target = min(max(int(math.Ceil(d.need*1.25))+1, p.minSize), p.maxSize)
		closing = p.shrinkToDemandLocked(now)
	}
	p.bg.Add(1)
	defer p.bg.Done()
	d.timer.Reset(demandTick)
	p.unlock()
	p.doAll(closing)
}

// shrinkToDemandLocked takes out of the idle set, oldest first, the idle
// connections above the target that have been idle adaptiveGrace or
// longer, and moves them to closing. p.mu must be held.
func (p *Pool[C]) shrinkToDemandLocked(now int64) []handoff[C] {
	excess := p.liveLocked() - p.demand.target
	if p.waiters.len > 0 || excess <= 0 {
		return nil
	}
	closing := p.unparkLocked(now)
	return p.closeIdleLocked(p.idle.takeOldest(excess, func(e *entry[C]) bool {
		return time.Duration(now-e.idleSince)-clockDoubt >= adaptiveGrace
	}), CloseIdle, closing)
}

// tooLateLocked returns errShed if w, about to be handed a connection,
// has less time left before its deadline than a mean hold: its loan would
// mostly run out of time, and the connection serves the next waiter
// instead. p.mu must be held.
func (p *Pool[C]) tooLateLocked(w *waiter[C], now int64) error {
	mean := time.Duration(p.demand.meanHold)
	if mean == 0 || w.deadline == 0 || addSat(now, mean) <= w.deadline {
		return nil
	}
	return errShed
}

// deadlineOf is the earlier of timeoutAt (pool clock; 0 for none) and
// ctx's deadline, on the pool's clock; 0 if neither.
func (p *Pool[C]) deadlineOf(ctx context.Context, timeoutAt int64) int64 {
	deadline := timeoutAt
	if dl, ok := ctx.Deadline(); ok {
		if at := max(int64(dl.Sub(p.clock.epoch)), 1); deadline == 0 || at < deadline {
			deadline = at
		}
	}
	return deadline
}

// shedLocked returns the error that fails a caller at once under
// ShedHopeless, or nil: the caller, of class class, with its deadline at
// deadline on the pool's clock (0 if none), would wait past it. p.mu must
// be held.
func (p *Pool[C]) shedLocked(class int, deadline, now int64) error {
	mean := p.demand.meanHold
	if mean == 0 || deadline == 0 || p.n.open() < p.capLocked() {
		return nil // nothing measured yet, no deadline, or a dial can serve the caller
	}
	ahead := 1
	for c := 0; c <= class; c++ {
		ahead += p.waiters.q[c].len
	}
	conns := max(p.n.inUse(), 1)
	wait := time.Duration(float64(ahead) * mean / float64(conns))
	if addSat(addSat(now, wait), time.Duration(mean)) <= deadline {
		return nil
	}
	p.stats.shed.Add(1)
	h := p.holdersLocked()
	return newError(fmt.Sprintf("shed: the predicted wait of %v (position %d, a mean hold of %v, %d connections) and a mean hold end after the deadline, in %v (ShedHopeless)%s",
		wait.Round(time.Microsecond), ahead, time.Duration(mean).Round(time.Microsecond), conns, time.Duration(deadline-now).Round(time.Microsecond), h.suffix()),
		context.DeadlineExceeded, h.err())
}
