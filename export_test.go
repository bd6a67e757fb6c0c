package pool

import (
	"fmt"
	"time"
)

// ReapStep runs one reaper step at now, as the background reaper does, and
// returns how many connections it closed for idleness and for age.
func (p *Pool[C]) ReapStep(now time.Time) (idle, lifetime int) {
	p.mu.Lock()
	closing := p.reapLocked(int64(now.Sub(p.epoch)))
	p.mu.Unlock()
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

// CheckAccounting returns an error if the pool's counts disagree with its
// idle stack and wait queue, or exceed MaxSize.
func (p *Pool[C]) CheckAccounting() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := p.waiters.head; w != nil; w = w.next {
		n++
	}
	switch {
	case n != p.waiters.len:
		return fmt.Errorf("wait list has %d waiters, len says %d", n, p.waiters.len)
	case p.numOpen != len(p.idle)+p.numInUse+p.numDialing+p.numClosing:
		return fmt.Errorf("open %d != idle %d + in use %d + dialing %d + closing %d",
			p.numOpen, len(p.idle), p.numInUse, p.numDialing, p.numClosing)
	case p.numOpen > p.cfg.MaxSize:
		return fmt.Errorf("open %d > max %d", p.numOpen, p.cfg.MaxSize)
	case len(p.idle) > 0 && p.waiters.len > 0:
		return fmt.Errorf("%d idle while %d wait", len(p.idle), p.waiters.len)
	case p.numInUse < 0 || p.numDialing < 0 || p.numClosing < 0:
		return fmt.Errorf("negative count: in use %d, dialing %d, closing %d", p.numInUse, p.numDialing, p.numClosing)
	}
	return nil
}

// SetGaveUpHook sets a function that runs when a waiter has given up and
// before it leaves the queue. Set it before the pool is shared.
func (p *Pool[C]) SetGaveUpHook(fn func()) { p.testHookGaveUp = fn }

// ExpiresAt returns when the loan's connection passes its MaxLifetime.
func (pc *PooledConn[C]) ExpiresAt() time.Time {
	return pc.e.pool.epoch.Add(time.Duration(pc.e.expiresAt))
}
