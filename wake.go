package pool

import "slices"

// Waking a goroutine is never done under the pool's lock. An edge that
// ends a waiter's wait, with a connection or an error, queues a delivery
// (p.wakes.serve) or returns a handoff; unlock, the only way p.mu is
// unlocked, sends the queued deliveries once the lock is free, and the
// caller carries out its handoffs after it. wake_test.go checks the
// source for both rules: every send to a waiter's or a WaitReady caller's
// channel is in deliver, and every unlock of p.mu is in unlock.

// delivery is one send that ends a wait: a result to a waiter, or an
// answer to a WaitReady caller; or a close that an edge could not leave
// to its caller (see wakeList.close).
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

// wakeList is the deliveries queued under the pool's mu, which protects
// it; unlock sends them.
type wakeList[C Connector] []delivery[C]

// serve queues r for waiter w, dequeued, to be sent once p.mu is unlocked.
func (l *wakeList[C]) serve(w *waiter[C], r result[C]) {
	*l = append(*l, delivery[C]{w: w, r: r})
}

// answerReady queues err for WaitReady caller r.
func (l *wakeList[C]) answerReady(r *readyWaiter, err error) {
	*l = append(*l, delivery[C]{ready: r, err: err})
}

// close queues the close h stands for, to be done once p.mu is unlocked,
// for an edge whose caller has no way to carry it out.
func (l *wakeList[C]) close(h handoff[C]) {
	*l = append(*l, delivery[C]{closing: h.e, reason: h.reason})
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
