package pool

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ReapStep runs one reaper step at now, as the background reaper does, and
// returns how many connections it closed for idleness and for age.
func (p *Pool[C]) ReapStep(now time.Time) (idle, lifetime int) {
	p.mu.Lock()
	closing := p.reapLocked(int64(now.Sub(p.clock.epoch)))
	p.unlock()
	for _, c := range closing {
		if c.reason == CloseIdle {
			idle++
		} else {
			lifetime++
		}
		_ = p.finishClose(c.e, c.reason)
	}
	return idle, lifetime
}

// CheckAccounting returns an error if the pool's books disagree with its
// connections: each state's count with the states of the connections
// open (a connection in a slot of the idle set counted parked, the slots
// read once), the idle stack with the idle count and its entries' states,
// the wait queue with its length; or if the pool is above MaxSize (unless
// a SetMaxSize lowered it below what was open, and then with no idle
// connection), holds idle connections on its stack while callers wait, or
// has a negative count. It may run while loans start and end on the
// lock-free path: those change where a connection is, never the books.
// (A release may be seen parked while a caller waits, in the instant
// before it takes its connection back: TestNoConnectionStaysParkedWhileACallerWaits
// is what checks that none stays.)
func (p *Pool[C]) CheckAccounting() error {
	p.mu.Lock()
	defer p.unlock()
	n := 0
	for c := range numClasses {
		k := 0
		for w := p.waiters.q[c].head; w != nil; w = w.next {
			if int(w.class) != c {
				return fmt.Errorf("a class %d waiter is queued in class %d", w.class, c)
			}
			k++
		}
		if k != p.waiters.q[c].len {
			return fmt.Errorf("class %d has %d waiters, its len says %d", c, k, p.waiters.q[c].len)
		}
		n += k
	}
	if n != p.waiters.len {
		return fmt.Errorf("wait list has %d waiters, len says %d", n, p.waiters.len)
	}
	var parked []*entry[C] // one reading of the slots
	p.idle.eachParked(func(e *entry[C]) {
		if !slices.Contains(parked, e) {
			parked = append(parked, e)
		}
	})
	counts := p.n.withParked(len(parked))
	var seen [numStates]int
	for i, e := range p.conns {
		if e.index != i {
			return fmt.Errorf("connection at %d says it is at %d", i, e.index)
		}
		if slices.Contains(parked, e) {
			if e.state != stateLent {
				return fmt.Errorf("a parked connection the lock last saw %s, not lent", e.state)
			}
			seen[stateParked]++
			continue
		}
		seen[e.state]++
	}
	seen[stateDialling] = counts[stateDialling] // dials in flight have no entry
	if books(seen) != counts {
		return fmt.Errorf("counts %v, connections' states %v (%s)", counts, seen, statesLegend())
	}
	for _, e := range p.idle.stack {
		if e.state != stateIdle {
			return fmt.Errorf("a %s connection on the idle stack", e.state)
		}
	}
	switch open := p.n.open(); {
	case p.n[stateParked] != 0:
		return fmt.Errorf("the lock's books count %d parked; only the slots count them", p.n[stateParked])
	case open != len(p.conns)+p.n[stateDialling]:
		return fmt.Errorf("counts say %d open, %d connections and %d dials", open, len(p.conns), p.n[stateDialling])
	case len(p.idle.stack) != p.n[stateIdle]:
		return fmt.Errorf("idle stack holds %d, count says %d", len(p.idle.stack), p.n[stateIdle])
	case open > p.maxSize && !p.aboveMax:
		return fmt.Errorf("open %d > max %d", open, p.maxSize)
	case p.n.kept() > p.maxSize && p.n[stateIdle] > 0:
		// Only SetMaxSize puts a pool above its MaxSize, and then it
		// keeps no idle connection until it is within it again.
		return fmt.Errorf("%d idle while %d open > max %d", p.n[stateIdle], p.n.kept(), p.maxSize)
	case p.n[stateIdle] > 0 && p.waiters.len > 0:
		return fmt.Errorf("%d idle while %d wait", p.n[stateIdle], p.waiters.len)
	}
	for s, c := range counts {
		if c < 0 {
			return fmt.Errorf("negative count: %d %s", c, connState(s))
		}
	}
	return nil
}

func statesLegend() string {
	var b strings.Builder
	for s := range numStates {
		if s > 0 {
			b.WriteString(" ")
		}
		b.WriteString(s.String())
	}
	return b.String()
}

// States returns how many connections are in each state, by name.
func (p *Pool[C]) States() map[string]int {
	p.mu.Lock()
	defer p.unlock()
	out := make(map[string]int, numStates)
	parked, _ := p.idle.census()
	for s, c := range p.n.withParked(parked) {
		out[connState(s).String()] = c
	}
	return out
}

// FreezeCoarseClock stops the coarse clock's refreshes, as a goroutine
// that never yields would on one CPU: its reading goes stale.
func (p *Pool[C]) FreezeCoarseClock() {
	c := &p.clock
	c.mu.Lock()
	c.cached.Store(c.now())
	c.frozen = true
	c.mu.Unlock()
}

// SetGaveUpHook sets a function that runs when a waiter has given up and
// before it leaves the queue. Set it before the pool is shared.
func (p *Pool[C]) SetGaveUpHook(fn func()) { p.testHookGaveUp = fn }

// ExpiresAt returns when the loan's connection passes its MaxLifetime.
func (pc *PooledConn[C]) ExpiresAt() time.Time {
	return pc.e.pool.clock.time(pc.e.expiresAt)
}

// Parked returns how many connections are parked on the lock-free path.
func (p *Pool[C]) Parked() int {
	n, _ := p.idle.census()
	return n
}

// WhileLocked runs fn while holding the pool's lock, so that a test can
// show that fn does not need it.
func (p *Pool[C]) WhileLocked(fn func()) {
	p.mu.Lock()
	defer p.unlock()
	fn()
}
