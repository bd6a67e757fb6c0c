package pool

import "fmt"

// SetMaxSize changes MaxSize while the pool is in use. Growing it serves
// waiting callers at once, with new dials. Shrinking it closes idle
// connections above the new size at once, oldest first, and connections
// in use when they come back, so no loan is cut short; until they have,
// the pool holds more than MaxSize and dials nothing. No waiter is lost:
// each is served by a release once the pool is within MaxSize again.
// Connections closed this way are counted in Stats.ClosedResized.
//
// n must be at least 1 and at least MinSize (ErrInvalidConfig otherwise).
// On a closed pool SetMaxSize returns ErrPoolClosed. A pool that a Manager
// or registry replaces is made from its registered Config again.
func (p *Pool[C]) SetMaxSize(n int) error {
	p.mu.Lock()
	switch {
	case p.closed.Load():
		p.unlock()
		return ErrPoolClosed
	case n < 1:
		p.unlock()
		return invalidField("MaxSize", "is %d; it must be at least 1", n)
	case n < p.minSize:
		err := invalidField("MaxSize", "is %d, below MinSize %d", n, p.minSize)
		p.unlock()
		return err
	}
	p.maxSize = n
	p.aboveMax = p.n.open() > n
	p.aboveMaxFast.Store(p.aboveMax)
	// Parked connections come back first: above MaxSize they are closed
	// (putLocked), and none parks again until the pool is within it.
	closing := p.unparkLocked(p.clock.coarse())
	closing = p.closeIdleLocked(p.idle.takeOldest(p.n.kept()-n, nil), CloseResized, closing)
	p.refillLocked() // growing: dials for waiters
	p.unlock()
	p.doAll(closing)
	return nil
}

// Reset drops the pool's connections, as after a failover, a rotated
// credential or a server turned read-only: every idle connection is
// closed at once, every connection in use is closed when it is released
// instead of being reused, and a dial already in flight is closed when it
// arrives, so that every loan from now on gets a connection dialled after
// Reset. No loan is cut short and no waiter is failed: waiters are served
// by new dials, MinSize is refilled. The connections closed are counted
// in Stats.ClosedReset (reason CloseReset), the calls in Stats.Resets. On
// a closed pool Reset does nothing.
func (p *Pool[C]) Reset() {
	p.mu.Lock()
	if p.closed.Load() {
		p.unlock()
		return
	}
	p.genFast.Add(1)
	p.stats.resets.Add(1)
	// Parked connections come back first, and are closed (putLocked);
	// none parks again (park checks the generation).
	closing := p.unparkLocked(p.clock.coarse())
	closing = p.closeIdleLocked(p.idle.takeOldest(p.n[stateIdle], nil), CloseReset, closing)
	p.refillLocked() // dials for waiters and MinSize
	p.unlock()
	p.doAll(closing)
	p.settleBudget()
}

// SetFactory makes f the pool's Factory, as after a rotated credential
// or a moved host, and drops the connections of the old one as Reset
// does: loans in progress finish on their connections, which are closed
// when released; idle connections are closed at once and a dial in
// flight when it arrives; every loan from now on gets a connection that f
// dialled. No waiter is failed. f must not be nil, and a pool of a Share
// group, whose connections move between pools that dial alike, cannot
// change it (ErrInvalidConfig for both); on a closed pool SetFactory
// returns ErrPoolClosed.
func (p *Pool[C]) SetFactory(f Factory[C]) error {
	switch {
	case f == nil:
		return newError("invalid config: factory is nil", ErrInvalidConfig)
	case p.cfg.Share.Group != "":
		return newError(fmt.Sprintf("invalid config: the pool shares connections in group %q (Config.Share): its factory cannot change", p.cfg.Share.Group), ErrInvalidConfig)
	case p.closed.Load():
		return ErrPoolClosed
	}
	p.factory.Store(&f)
	p.Reset() // after the store: a dial that loaded the old f read the old generation
	return nil
}

// SetMinSize changes MinSize while the pool is in use. Raising it dials
// the missing connections in the background (WaitReady waits for them);
// lowering it lets the reaper close idle connections down to it.
//
// n must not be negative nor above MaxSize (ErrInvalidConfig otherwise).
// On a closed pool SetMinSize returns ErrPoolClosed.
func (p *Pool[C]) SetMinSize(n int) error {
	p.mu.Lock()
	if err := p.setMinSizeLocked(n); err != nil {
		p.unlock()
		return err
	}
	p.refillLocked()
	p.unlock()
	p.settleBudget() // a MinSize the budget refused: reclaim for it
	return nil
}

// setMinSizeLocked checks n and makes it the MinSize. p.mu must be held.
func (p *Pool[C]) setMinSizeLocked(n int) error {
	switch {
	case p.closed.Load():
		return ErrPoolClosed
	case n < 0:
		return invalidField("MinSize", "is %d; it must not be negative", n)
	case n > p.maxSize:
		return invalidField("MinSize", "is %d, above MaxSize %d", n, p.maxSize)
	}
	if err := p.setBudgetMinLocked(n); err != nil {
		return err
	}
	p.minSize = n
	return nil
}
