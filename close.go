package pool

import (
	"context"
	"errors"
)

// Close closes the pool: waiting and later Acquires get ErrPoolClosed,
// idle connections are closed now, dials in flight are cancelled, and
// connections in use are closed when they are released. Close returns once
// the idle connections are closed and every dial and any running reaper
// step have finished (a timer that fires later sees the pool closed and
// returns at once), with the idle connections' Close errors joined; a
// panic in one Close becomes a *PanicError there and does not stop the
// others. Closing a closed pool returns nil at once.
func (p *Pool[C]) Close() error {
	idle, first := p.stop()
	if !first {
		return nil
	}
	return p.closeStopped(idle)
}

// Shutdown closes the pool like Close, then waits until every connection
// in use has been released and closed. It returns when that is done, or
// when ctx ends, whichever is first: then it returns ctx's error, and the
// closes still pending (slow Close calls, a Factory that ignores its ctx,
// connections still in use) finish in the background.
func (p *Pool[C]) Shutdown(ctx context.Context) error {
	idle, first := p.stop()
	return p.awaitStopped(ctx, idle, first)
}

// stop marks the pool closed and takes everything out of service without
// any I/O: waiters fail with ErrPoolClosed (once it has unlocked), dials
// are cancelled, timers stopped. It returns the idle connections for the caller to close (now
// counted as closing), and false if the pool was already closed.
func (p *Pool[C]) stop() (idle []*entry[C], first bool) {
	p.mu.Lock()
	if p.closed.Load() {
		p.unlock()
		return nil, false
	}
	p.closed.Store(true)
	closing := p.unparkLocked(p.clock.coarse()) // closing: the pool is closed
	closing = p.closeIdleLocked(p.idle.drain(), ClosePoolClosed, closing)
	for _, h := range closing {
		idle = append(idle, h.e)
	}
	for w := p.waiters.popFront(); w != nil; w = p.waiters.popFront() {
		p.wakes.serve(w, result[C]{err: ErrPoolClosed})
	}
	p.timeout.stop()
	p.dialing.retry.stop()
	if p.demand.timer != nil {
		p.demand.timer.Stop()
	}
	p.notifyReadyLocked()
	p.signalDrainedLocked()
	p.leaveBudgetLocked()
	p.unlock()
	p.settleBudget()
	p.cancelDials()
	if p.reapTimer != nil {
		p.reapTimer.Stop()
	}
	p.clock.stop()
	return idle, true
}

// closeStopped closes the idle connections stop returned, then waits for
// the dials and a running reaper step.
func (p *Pool[C]) closeStopped(idle []*entry[C]) error {
	var errs []error
	for _, e := range idle {
		if err := p.finishClose(e, ClosePoolClosed); err != nil {
			errs = append(errs, err)
		}
	}
	p.bg.Wait()
	return errors.Join(errs...)
}

// awaitStopped closes what stop returned in the background and waits,
// until ctx ends, for that and for every connection in use to be closed.
func (p *Pool[C]) awaitStopped(ctx context.Context, idle []*entry[C], first bool) error {
	closed := make(chan error, 1)
	if first {
		go func() { closed <- p.closeStopped(idle) }()
	} else {
		closed <- nil
	}
	var err error
	select {
	case err = <-closed:
	case <-ctx.Done():
		p.logShutdownCut(ctx)
		return ctx.Err()
	}
	select {
	case <-p.drained:
		return err
	case <-ctx.Done():
		p.logShutdownCut(ctx)
		return errors.Join(err, ctx.Err())
	}
}

func (p *Pool[C]) logShutdownCut(ctx context.Context) {
	if p.log == nil {
		return
	}
	s := p.Stats()
	p.logf(levelWarn, "shutdown cut short; connections still open are closed when they finish",
		"error", ctx.Err().Error(), "in_use", s.InUse, "closing", s.Closing, "dialing", s.Dialing)
}

// signalDrainedLocked closes drained once the pool is closed and every
// connection is gone. p.mu must be held.
func (p *Pool[C]) signalDrainedLocked() {
	if p.closed.Load() && p.n.open() == 0 {
		select {
		case <-p.drained:
		default:
			close(p.drained)
		}
	}
}

// finishClose closes a connection in state closing, outside the lock,
// then forgets it (closing → gone) and dials replacements if needed. A
// panic in Close becomes the returned *PanicError.
func (p *Pool[C]) finishClose(e *entry[C], reason CloseReason) error {
	err := p.closeConn(e)
	p.stats.countClose(reason)
	p.reportClose(reason)
	p.mu.Lock()
	p.goneLocked(e)
	if !p.closed.Load() {
		p.refillLocked()
		p.failUncoveredLocked(false)
	}
	p.notifyReadyLocked()
	p.signalDrainedLocked()
	p.unlock()
	p.settleBudget()
	return err
}
