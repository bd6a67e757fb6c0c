package pool

import "time"

// reap is the reaper's timer callback: one reapLocked step, the closes it
// asks for done outside the lock, and the next run scheduled.
func (p *Pool[C]) reap() {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return
	}
	p.bg.Add(1)
	defer p.bg.Done()
	closing := p.reapLocked(p.clock.now())
	p.mu.Unlock()
	for _, c := range closing {
		_ = p.finishClose(c.e, c.reason) // a panic in Close is logged there
	}
	p.mu.Lock()
	if !p.closed.Load() {
		p.refillLocked()
		p.reapTimer.Reset(p.cfg.ReapInterval)
	}
	p.mu.Unlock()
}

type reaped[C Connector] struct {
	e      *entry[C]
	reason CloseReason
}

// reapLocked is one step of the reaper, at time now (a real reading): it
// takes off the idle stack every connection past its lifetime, and those
// idle for MaxIdleTime or longer while the pool stays at MinSize or above,
// moves them to closing and returns them for the caller to close outside
// the lock. Idle time is measured from a coarse reading taken on release,
// which may be early; the reaper allows clockDoubt for it, so that no
// connection is closed before it has been idle MaxIdleTime. p.mu must be
// held.
func (p *Pool[C]) reapLocked(now int64) []reaped[C] {
	var closing []reaped[C]
	for _, h := range p.unparkLocked(now) { // above MaxSize
		closing = append(closing, reaped[C]{h.e, h.reason})
	}
	open := p.openLocked() - p.n[stateClosing]
	kept := p.idle[:0]
	for _, e := range p.idle { // oldest first
		switch {
		case now >= e.expiresAt:
			closing = append(closing, reaped[C]{e, CloseLifetime})
			open--
		case p.cfg.MaxIdleTime > 0 && time.Duration(now-e.idleSince)-clockDoubt >= p.cfg.MaxIdleTime && open > p.minSize:
			closing = append(closing, reaped[C]{e, CloseIdle})
			open--
		default:
			kept = append(kept, e)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	for _, c := range closing {
		p.closeLocked(c.e)
	}
	return closing
}
