package pool

import "time"

// reap is the reaper's timer callback: one reapLocked step, the closes it
// asks for done outside the lock, and the next run scheduled.
func (p *Pool[C]) reap() {
	p.mu.Lock()
	if p.closed.Load() {
		p.unlock()
		return
	}
	p.bg.Add(1)
	defer p.bg.Done()
	closing := p.reapLocked(p.clock.now())
	p.unlock()
	p.doAll(closing)
	p.mu.Lock()
	if !p.closed.Load() {
		p.refillLocked()
		p.reapTimer.Reset(p.cfg.ReapInterval)
	}
	p.unlock()
}

// reapLocked is one step of the reaper, at time now (a real reading): it
// takes out of the idle set every connection past its lifetime, and those
// idle for MaxIdleTime or longer while the pool stays at MinSize or above,
// moves them to closing and returns them for the caller to close outside
// the lock. Idle time is measured from a coarse reading taken on release,
// which may be early; the reaper allows clockDoubt for it, so that no
// connection is closed before it has been idle MaxIdleTime. p.mu must be
// held.
func (p *Pool[C]) reapLocked(now int64) []handoff[C] {
	closing := p.unparkLocked(now) // above MaxSize
	closing = p.closeIdleLocked(p.idle.takeWhere(func(e *entry[C]) bool { return now >= e.expiresAt }), CloseLifetime, closing)
	if p.cfg.MaxIdleTime > 0 {
		spare := p.n.kept() - p.minSize // oldest first, down to MinSize
		closing = p.closeIdleLocked(p.idle.takeWhere(func(e *entry[C]) bool {
			if spare <= 0 || time.Duration(now-e.idleSince)-clockDoubt < p.cfg.MaxIdleTime {
				return false
			}
			spare--
			return true
		}), CloseIdle, closing)
	}
	return closing
}
