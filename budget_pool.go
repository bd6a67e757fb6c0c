// The pool's side of a budget: what a pool asks of it, and what the
// budget asks of a pool (budgetPool).

package pool

import "time"

// takeSlotLocked takes a budget slot for one dial, if the pool is on a
// budget; it reports false if the budget refused, which then records how
// many slots the pool wants (for its waiters, or to reach MinSize). p.mu
// must be held.
func (p *Pool[C]) takeSlotLocked() bool {
	if p.bm == nil {
		return true
	}
	b := p.cfg.Budget
	need := max(p.shortfallLocked(), 1) // a dial is starting: the pool is below MaxSize
	top := p.waiters.top()
	b.mu.Lock()
	p.bm.top = top
	ok := b.takeLocked(p.bm, need)
	b.mu.Unlock()
	return ok
}

// freeSlotLocked gives back the budget slot of a connection that is gone
// (closing: it went through closeLocked) or a dial that failed. p.mu must
// be held.
func (p *Pool[C]) freeSlotLocked(closing bool) {
	if p.bm == nil {
		return
	}
	b := p.cfg.Budget
	b.mu.Lock()
	b.freeLocked(p.bm, closing)
	b.mu.Unlock()
}

// settleBudget runs the budget's deferred work, if the pool is on a
// budget. p.mu must not be held.
func (p *Pool[C]) settleBudget() {
	if p.bm != nil {
		p.cfg.Budget.settle()
	}
}

// yieldLocked reports whether connection e, being put back at now, must
// leave the pool so that its slot goes to another pool (see
// Budget.mustYieldLocked), and to which pool of its Share group it moves,
// if it moves rather than closes. It forgets that the pool wants a slot
// when nobody waits. p.mu must be held.
func (p *Pool[C]) yieldLocked(e *entry[C], now int64) (bool, *member) {
	b := p.cfg.Budget
	if !b.contended() {
		return false, nil
	}
	top := p.waiters.top()
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.waiters.len == 0 {
		b.setWantLocked(p.bm, false)
	} else {
		p.bm.top = top // mustYieldLocked weighs the pool's own waiters
	}
	yield, to := b.mustYieldLocked(p.bm, p.clock.time(now).Sub(e.createdAt))
	switch {
	case yield && to == nil:
		b.yielded.Add(1)
	case !yield && b.wanting.Load() > 0:
		// The connection stays: the settling after unlocking reclaims it
		// once it has been idle long enough, or arms the timer for then.
		b.dirty.Store(true)
	}
	return yield, to
}

// waiterLeftLocked drops the pool's claim on its budget once its last
// waiter has given up or been served, unless it is below its MinSize: a
// slot must never be reclaimed from another pool, or granted, for a
// caller who has gone.
// p.mu must be held.
func (p *Pool[C]) waiterLeftLocked() {
	if p.bm == nil || p.waiters.len > 0 || p.n.open() < p.minSize {
		return
	}
	b := p.cfg.Budget
	b.mu.Lock()
	b.setWantLocked(p.bm, false)
	b.mu.Unlock()
}

// roomForTryLocked reports whether a TryAcquire may start a dial: without
// a budget, or when the budget would grant a slot at once. A TryAcquire
// never waits, so it never claims a slot of the budget (a claim makes the
// budget reclaim another pool's connection for it). p.mu must be held.
func (p *Pool[C]) roomForTryLocked() bool {
	if p.bm == nil {
		return true
	}
	b := p.cfg.Budget
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mayTakeLocked(p.bm)
}

// closingSlotLocked records that a connection is being closed, so that
// the budget counts its slot as on its way back. p.mu must be held.
func (p *Pool[C]) closingSlotLocked() {
	if p.bm == nil {
		return
	}
	b := p.cfg.Budget
	b.mu.Lock()
	p.bm.closing++
	b.mu.Unlock()
}

// grant is budgetPool.grant.
func (p *Pool[C]) grant() {
	p.mu.Lock()
	b := p.cfg.Budget
	need := p.shortfallLocked()
	// At MaxConcurrentDials, the slot goes back: a dial in flight that
	// ends refills the pool, and claims a slot again if it still needs one.
	if !p.closed.Load() && need > 0 && p.n[stateDialling] < p.dialLimitLocked() {
		p.dialStartLocked()
		go p.dial()
		if need <= 1 {
			b.mu.Lock()
			b.setWantLocked(p.bm, false)
			b.mu.Unlock()
		}
		p.unlock()
		b.moved.Add(1)
		return
	}
	b.mu.Lock()
	b.setWantLocked(p.bm, false)
	b.freeLocked(p.bm, false)
	b.mu.Unlock()
	p.unlock()
}

// oldestIdle is budgetPool.oldestIdle.
func (p *Pool[C]) oldestIdle() (time.Time, bool) {
	p.mu.Lock()
	closing := p.unparkLocked(p.clock.coarse())
	e := p.idle.oldest()
	ok := e != nil && p.n.kept() > p.minSize
	var since time.Time
	if ok {
		since = p.clock.time(e.idleSince)
	}
	p.unlock()
	p.doAll(closing)
	return since, ok
}

// reclaimIdle is budgetPool.reclaimIdle.
func (p *Pool[C]) reclaimIdle() bool {
	p.mu.Lock()
	closing := p.unparkLocked(p.clock.coarse())
	var oldest []*entry[C]
	if p.n.kept() > p.minSize {
		oldest = p.idle.takeOldest(1, nil)
		closing = p.closeIdleLocked(oldest, CloseBudget, closing)
	}
	p.unlock()
	p.doAll(closing)
	return len(oldest) > 0
}

// waiting is budgetPool.waiting.
func (p *Pool[C]) waiting() int {
	p.mu.Lock()
	defer p.unlock()
	return p.waiters.len
}

// leaveBudgetLocked ends the pool's reservation on its budget, which it
// leaves once its last connection is gone. p.mu must be held.
func (p *Pool[C]) leaveBudgetLocked() {
	if p.bm == nil {
		return
	}
	b := p.cfg.Budget
	b.mu.Lock()
	b.leaveLocked(p.bm)
	b.checkOverLocked()
	b.mu.Unlock()
}

// setBudgetMinLocked changes the pool's reservation on its budget. p.mu
// must be held.
func (p *Pool[C]) setBudgetMinLocked(n int) error {
	if p.bm == nil {
		return nil
	}
	b := p.cfg.Budget
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.setMinLocked(p.bm, n)
}
