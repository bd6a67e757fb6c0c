package pool

import "slices"

// Waking a goroutine is never done under the pool's lock. An edge that
// ends a waiter's wait, with a connection or an error, queues a delivery
// (serveLocked) or returns a handoff; unlock, the only way p.mu is
// unlocked, sends the queued deliveries once the lock is free, and the
// caller carries out its handoffs after it. wake_test.go checks the
// source for both rules: every send to a waiter's or a WaitReady caller's
// channel is in deliver, and every unlock of p.mu is in unlock.

// delivery is one send that ends a wait: a result to a waiter, or an
// answer to a WaitReady caller; or a close that an edge could not leave
// to its caller (see deferCloseLocked).
type delivery[C Connector] struct {
	w       *waiter[C]
	r       result[C]
	ready   *readyWaiter
	err     error     // for ready
	closing *entry[C] // to close, for reason
	reason  CloseReason
}

// deliver makes the send. Each channel has a buffer of one and gets one
// send per wait, so it never blocks.
func (d delivery[C]) deliver() {
	switch {
	case d.ready != nil:
		d.ready.ch <- d.err
	case d.closing != nil:
		_ = d.closing.pool.finishClose(d.closing, d.reason) // a panic in Close is logged there
	default:
		d.w.ch <- d.r
	}
}

// deferClose queues the close h stands for, to be done once p.mu is
// unlocked, by an edge whose caller has no way to carry it out. p.mu must
// be held.
func (p *Pool[C]) deferCloseLocked(h handoff[C]) {
	p.wakes = append(p.wakes, delivery[C]{closing: h.e, reason: h.reason})
}

// serveLocked queues r for waiter w, dequeued, to be sent once p.mu is
// unlocked. p.mu must be held.
func (p *Pool[C]) serveLocked(w *waiter[C], r result[C]) {
	p.wakes = append(p.wakes, delivery[C]{w: w, r: r})
}

// answerReadyLocked queues err for WaitReady caller r. p.mu must be held.
func (p *Pool[C]) answerReadyLocked(r *readyWaiter, err error) {
	p.wakes = append(p.wakes, delivery[C]{ready: r, err: err})
}

// unlock unlocks p.mu and then sends the deliveries queued under it. It
// is the only way p.mu is unlocked (small enough to inline: with nothing
// queued, it costs one length check).
func (p *Pool[C]) unlock() {
	if len(p.wakes) == 0 {
		p.mu.Unlock()
		return
	}
	p.unlockAndWake()
}

// unlockAndWake is unlock with deliveries queued: it takes them, unlocks,
// and sends them, in the order they were queued.
func (p *Pool[C]) unlockAndWake() {
	var buf [4]delivery[C]
	var ds []delivery[C]
	if len(p.wakes) <= len(buf) {
		ds = buf[:copy(buf[:], p.wakes)]
	} else {
		ds = slices.Clone(p.wakes) // Close, or many timed out at once
	}
	if cap(p.wakes) > 64 {
		p.wakes = nil // what Close queued is not kept
	} else {
		clear(p.wakes)
		p.wakes = p.wakes[:0]
	}
	p.mu.Unlock()
	for _, d := range ds {
		d.deliver()
	}
}
