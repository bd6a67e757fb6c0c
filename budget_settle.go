// How slots move between the pools of a budget: which pool must yield a
// connection at release, which idle connection is reclaimed, and the
// settling that hands freed slots out.

package pool

import "time"

// mustYieldLocked reports whether m's pool must give up a connection it
// is releasing, instead of reusing it, so that its slot goes elsewhere;
// held is how long m has had the connection's slot. It must when the
// budget is over its limit (the connection closes); or when the budget is
// full and a member that wants a slot is further below its share (see
// outranks). If that member shares connections with m (see Share), the
// connection moves to it, returned as to, which costs no dial, so slots
// rotate at every release; otherwise the connection closes so that the
// member dials, which it must only when fewer slots are on their way back
// (connections closing) than members want, and slots rotate at
// rotateAfter. A pool never yields below its MinSize. b.mu must be held.
func (b *Budget) mustYieldLocked(m *member, held time.Duration) (yield bool, to *member) {
	eff := m.open - m.closing
	if eff <= m.min {
		return false, nil
	}
	closing, need := b.closingLocked()
	if b.open-closing > b.limit {
		return true, nil
	}
	t := b.neediestLocked(m)
	// t's callers wait in a higher class than any of m's, or are
	// interactive while m has none waiting: the slot is theirs
	// (priority.go), whatever the shares. (A normal-class t and an m with
	// no waiter go by the shares, and the idle reclaim below.)
	higher := t != nil && b.rankLocked(t) < b.rankLocked(m) && (m.top < numClasses || t.top == classInteractive)
	switch {
	case t == nil || b.roomLocked(t) > 0:
		return false, nil
	case t.shares(m):
		return higher || outranks(t, m, eff, held, 0), t
	case closing >= need:
		return false, nil
	}
	return higher || outranks(t, m, eff, held, rotateAfter), nil
}

// rotateAfter is how long a pool keeps a slot before it must give it to a
// waiting pool that holds none, when it is not otherwise ahead of it: a
// slot that moves costs a dial (a TCP, TLS and authentication handshake,
// and on PostgreSQL a new backend process), so slots rotate among more
// waiting pools than the budget has slots at this pace, not at every
// release.
const rotateAfter = time.Second

// reclaimAfter is how long an idle connection must have been idle before
// it is reclaimed for a waiting pool holding none (when its own pool is
// not otherwise ahead): long enough that a pool between two quick
// requests keeps its connection, short enough that an idle slot does not
// sit unused for long while another pool waits.
const reclaimAfter = 100 * time.Millisecond

// outranks reports whether t, which wants a slot, should get one that m,
// holding eff connections (not closing), has held for held: t is below
// its MinSize; or m holds at least two more per unit of weight than t
// (m would still hold as many as t after giving one up); or t holds none
// and m has had the slot for after or longer (rotateAfter for a
// connection in use, reclaimAfter for an idle one, whose idle time counts
// as held). b.mu must be held.
func outranks(t, m *member, eff int, held, after time.Duration) bool {
	teff := t.open - t.closing
	switch {
	case teff < t.min:
		return true
	case (teff+1)*m.weight <= (eff-1)*t.weight:
		return true
	}
	return teff == 0 && held >= after
}

// closingLocked sums the members' closing connections (slots on their
// way back) and the slots wanted (at least one per member that wants).
// b.mu must be held.
func (b *Budget) closingLocked() (closing, need int) {
	for _, m := range b.members {
		closing += m.closing
		if m.want {
			need += max(m.need, 1)
		}
	}
	return closing, need
}

// settle does the budget's deferred work, with no pool lock held: it
// gives free slots to the members that want them, neediest first, and
// when the budget is full (or over its limit) with members still wanting,
// closes idle connections of other pools, least recently used first. Any
// goroutine that may have made work (freed a slot, been refused one,
// changed the limit) calls it after unlocking; one runs it at a time, and
// it runs again for work that arrived while it ran.
func (b *Budget) settle() {
	for b.dirty.Load() {
		if !b.settling.TryLock() {
			return // the goroutine settling sees dirty
		}
		for b.dirty.Swap(false) {
			for b.settleStep() {
			}
		}
		b.settling.Unlock()
	}
}

// settleStep does one piece of the work and reports whether it did any.
func (b *Budget) settleStep() bool {
	b.mu.Lock()
	closing, _ := b.closingLocked()
	over := b.open-closing > b.limit
	t := b.neediestLocked(nil)
	switch {
	case t != nil && b.dialCappedLocked(t):
		b.mu.Unlock()
		return false // a dial that ends settles the budget again
	case t != nil && (b.roomLocked(t) > 0 || (b.probeLocked() && b.roomLocked(t) > 0)):
		b.handOutLocked(t)
		b.mu.Unlock()
		t.pool.grant()
		return true
	case t == nil && !over:
		b.mu.Unlock()
		return false
	}
	// Full, with a member wanting, or over the limit: reclaim the least
	// recently used idle connection that a pool may give up: over the
	// limit, any; else one of a pool that t outranks, counting the time
	// the connection has been idle as the time held.
	type candidate struct {
		pool budgetPool
		m    member // a copy, read under mu
		mp   *member
	}
	pools := make([]candidate, 0, len(b.members))
	var tc member
	if t != nil {
		tc = *t
	}
	for _, m := range b.members {
		if m != t && m.open-m.closing > m.min {
			pools = append(pools, candidate{m.pool, *m, m})
		}
	}
	b.mu.Unlock()
	var victim budgetPool
	var share bool // the victim's idle connection moves to t instead of closing
	var oldest, soonest time.Time
	now := time.Now()
	for _, c := range pools {
		since, ok := c.pool.oldestIdle()
		if !ok {
			continue
		}
		eff := c.m.open - c.m.closing
		shares := t != nil && !over && t.shares(c.mp)
		after := reclaimAfter
		if shares {
			after = 0 // a move costs no dial
		}
		// Reclaimable: over the limit; or idle after or longer (a pool
		// that holds a connection idle while another waits has no use
		// for it, whatever the shares); or t outranks the pool.
		if idle := now.Sub(since); !over && idle < after && !outranks(&tc, &c.m, eff, idle, after) {
			// Reclaimable later, once idle reclaimAfter?
			if at := since.Add(after); soonest.IsZero() || at.Before(soonest) {
				soonest = at
			}
			continue
		}
		// A connection that can move goes first: it costs no dial.
		if victim == nil || (shares && !share) || (shares == share && since.Before(oldest)) {
			victim, oldest, share = c.pool, since, shares
		}
	}
	if victim == nil && !soonest.IsZero() {
		b.mu.Lock()
		b.armWakeLocked(b.now() + int64(soonest.Sub(now)))
		b.mu.Unlock()
	}
	if share && victim.give(t) {
		return true
	}
	if victim == nil || !victim.reclaimIdle() {
		return false
	}
	b.reclaimed.Add(1)
	return true
}

// armWakeLocked makes the wake timer settle the budget no later than at
// (the budget's clock). b.mu must be held.
func (b *Budget) armWakeLocked(at int64) {
	b.wake.set(at, b.now())
}

func (b *Budget) woken() {
	b.mu.Lock()
	b.wake.fired()
	b.mu.Unlock()
	b.dirty.Store(true)
	b.settle()
}
