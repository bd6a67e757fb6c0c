package pool

// This file is the state machine of a connection: its states, and one
// function per edge between them. Every edge but park and the lock-free
// take runs with p.mu held, moves the counts in p.n together with
// entry.state, and does no I/O; the hand-off or Close that an edge calls
// for is done after unlocking (see handoff and unlock). Nothing else
// changes a connection's state or the counts.
//
//	(slot) ─dialStartLocked─► dialling ─dialFailedLocked─► (gone)
//	                              │
//	                        dialledLocked
//	                              ▼
//	        ┌─────────────────► idle ──takeIdleLocked──┐
//	        │ putLocked           │ takeIdleLocked     │ (no check due)
//	        │ unparkLocked        ▼                    ▼
//	        │                 checking ─checkPassed─► lent ─resetLocked─► resetting
//	        │                     │                   │ ▲                  │
//	        └──── putLocked ──────┴──────────────── park│ │take ◄─ putLocked ┘
//	                                                  ▼ │
//	                                                 parked
//
//	closeLocked: checking, lent or resetting ─► closing ─goneLocked─► (gone)
//	closeIdleLocked: idle ─► closing
//	movedOutLocked: idle, checking, lent or resetting ─► (gone), no Close:
//	    the connection goes to another pool of its Share group (share.go)
//
// Where putLocked (and dialledLocked, and unparkLocked) find a waiter,
// handLocked gives the connection to it: lent, or checking when a check
// is due (checkDue). On a closed pool, or one above a MaxSize that
// SetMaxSize lowered, putLocked sends it to closing instead.
//
// Every way a connection leaves lent: putLocked (Release, no Reset or
// IsValid, taken under the lock), park (the same, without the lock; see
// fast.go), resetLocked (Release, with Reset), closeLocked (Discard,
// ErrBadConn, a failed IsValid, a panic in With's fn or in NeedsReset, a
// dropped handle).
//
// Parked. park (lent → parked) and the lock-free take (parked → lent) run
// without the lock, so they write neither p.n nor entry.state: the lock's
// books count a parked connection lent, the state it left and will come
// back to, and entry.state says lent. Where it is says parked: in a slot
// of the idle set. books.withParked gives each state's count, the parked ones
// counted in their slots; decisions under the lock count them lent (they
// come back to the lock at unparkLocked, when a caller queues or the lock
// needs its idle connections, as a release does).

// connState is where a connection is in its life.
type connState uint8

const (
	// stateDialling counts dials in flight: a slot below MaxSize is
	// reserved, and no entry exists yet (an entry is in this state only
	// inside dialledLocked).
	stateDialling connState = iota
	// stateIdle: on the idle set's stack.
	stateIdle
	// stateParked: in a slot of the idle set, idle, reached and left
	// without the lock (see above).
	stateParked
	// stateChecking: taken for one caller, who runs the acquire-time checks
	// (MaxLifetime near, IsValid, Ping) outside the lock.
	stateChecking
	// stateLent: a loan is in progress, or is being handed to a waiter
	// that needs no check, or has just ended and its holder has not yet
	// reached the pool (NeedsReset and IsValid run then).
	stateLent
	// stateResetting: the loan has ended; Reset and IsValid run outside
	// the lock.
	stateResetting
	// stateClosing: out of service; Close runs outside the lock.
	stateClosing

	numStates

	// stateGone marks an entry closed and forgotten; it is counted
	// nowhere.
	stateGone = numStates
)

var stateNames = [numStates + 1]string{"dialling", "idle", "parked", "checking", "lent", "resetting", "closing", "gone"}

func (s connState) String() string { return stateNames[s] }

// handoff is what an edge leaves to do once p.mu is unlocked: give a
// connection to a waiter, or close it. The zero handoff does nothing.
type handoff[C Connector] struct {
	e      *entry[C]
	w      *waiter[C]  // the waiter to give e to; nil if e is closing
	check  bool        // e is handed in state checking, not lent
	reason CloseReason // why e is closing, if it is
	to     *member     // the pool of the Share group that e's connection moved to
}

// do carries out h. p.mu must not be held. It returns Close's error when h
// closes a connection. The zero handoff, a connection put on the idle
// stack, returns at once (do is small enough to inline).
func (h handoff[C]) do(p *Pool[C]) error {
	if h.e == nil {
		return nil
	}
	return h.carryOut(p)
}

func (h handoff[C]) carryOut(p *Pool[C]) error {
	switch {
	case h.w != nil:
		delivery[C]{w: h.w, r: result[C]{e: h.e, check: h.check}}.deliver()
		return nil
	case h.to != nil:
		h.to.pool.adopt(h.e.conn, h.e.createdAt)
		return nil
	}
	return p.finishClose(h.e, h.reason)
}

// doAll carries out handoffs after unlocking; a panic in Close is logged
// there.
func (p *Pool[C]) doAll(hs []handoff[C]) {
	for _, h := range hs {
		_ = h.do(p)
	}
}

// moveLocked moves e to state to, with the counts. p.mu must be held.
func (p *Pool[C]) moveLocked(e *entry[C], to connState) {
	if e.state >= stateClosing {
		panic("pool: internal: a " + e.state.String() + " connection moved to " + to.String())
	}
	p.n[e.state]--
	p.n[to]++
	e.state = to
}

// dialStartLocked: a free slot → dialling. The caller starts the dial
// goroutine. p.mu must be held, the pool open and below MaxSize, and on a
// budget, the budget's slot taken (takeSlotLocked, or a grant).
func (p *Pool[C]) dialStartLocked() {
	if p.dialing.failures > 0 {
		p.dialing.probeAt = p.clock.now()
	}
	p.n[stateDialling]++
	p.bg.Add(1)
}

// dialFailedLocked: dialling → gone, for a dial that failed; its budget
// slot is given back. p.mu must be held.
func (p *Pool[C]) dialFailedLocked() {
	p.n[stateDialling]--
	p.freeSlotLocked(false)
}

// dialledLocked: dialling → idle, lent or checking (to a waiter), or
// closing on a closed pool, for a new connection e dialled at now. p.mu
// must be held.
func (p *Pool[C]) dialledLocked(e *entry[C], now int64) handoff[C] {
	e.state = stateDialling
	e.index = len(p.conns)
	p.conns = append(p.conns, e)
	return p.putLocked(e, now, now)
}

// takeIdleLocked: idle → lent, or idle → checking when a check is due
// (see checkDue), for the newest idle connection; now is a coarse
// reading. It returns nil if none is idle. p.mu must be held.
func (p *Pool[C]) takeIdleLocked(now int64) (*entry[C], connState) {
	e := p.idle.takeNewest()
	if e == nil {
		return nil, stateIdle
	}
	if p.checkDue(e, now) {
		p.moveLocked(e, stateChecking)
		return e, stateChecking
	}
	p.moveLocked(e, stateLent)
	return e, stateLent
}

// checkPassedLocked: checking → lent, for a connection that passed its
// acquire-time checks. p.mu must be held.
func (p *Pool[C]) checkPassedLocked(e *entry[C]) {
	p.moveLocked(e, stateLent)
}

// resetLocked: lent → resetting, for a connection whose loan has ended and
// that needs Reset before reuse. p.mu must be held.
func (p *Pool[C]) resetLocked(e *entry[C]) {
	p.moveLocked(e, stateResetting)
}

// putLocked: dialling, checking, lent or resetting → the longest waiter
// (see handLocked), else → idle, stamped idle since idleSince; on a
// closed pool, or one above a MaxSize lowered by SetMaxSize, or dialled
// before a Reset, → closing;
// on a budget that another pool needs the slot of, → closing. now is a
// coarse reading or better. p.mu must be held.
func (p *Pool[C]) putLocked(e *entry[C], idleSince, now int64) handoff[C] {
	e.idleSince = idleSince
	switch {
	case p.closed.Load():
		p.closeLocked(e)
		return handoff[C]{e: e, reason: ClosePoolClosed}
	case p.aboveMax && p.n.kept() > p.maxSize:
		p.closeLocked(e)
		return handoff[C]{e: e, reason: CloseResized}
	case e.gen != p.genFast.Load(): // dialled before a Reset
		p.closeLocked(e)
		return handoff[C]{e: e, reason: CloseReset}
	case p.bm != nil && !e.fresh: // a new connection serves once first
		if yield, to := p.yieldLocked(e, now); yield {
			if to != nil && p.movedOutLocked(e, to) {
				return handoff[C]{e: e, to: to}
			}
			p.closeLocked(e)
			return handoff[C]{e: e, reason: CloseBudget}
		}
	}
	if p.waiters.len > 0 {
		if w := p.nextWaiterLocked(now); w != nil {
			if p.bm != nil && p.waiters.len == 0 {
				p.waiterLeftLocked() // served the last: no claim on the budget left
			}
			return p.handLocked(e, w, now)
		}
	}
	p.moveLocked(e, stateIdle)
	p.idle.push(e)
	return handoff[C]{}
}

// handLocked: any state but closing → lent, or → checking if a check is
// due, for waiter w, dequeued; the handoff serves w after unlocking. p.mu
// must be held.
func (p *Pool[C]) handLocked(e *entry[C], w *waiter[C], now int64) handoff[C] {
	if p.checkDue(e, now) {
		p.moveLocked(e, stateChecking)
		return handoff[C]{e: e, w: w, check: true}
	}
	p.moveLocked(e, stateLent)
	return handoff[C]{e: e, w: w}
}

// unparkLocked: parked → a waiter, idle or closing, for every parked
// connection, as a release under the lock would put it (putLocked). The
// waiters are served after unlocking (unlock); the closings, on a closed
// pool, one above MaxSize or on a budget that needs the slots elsewhere,
// are returned for the caller to carry out. p.mu must be held.
func (p *Pool[C]) unparkLocked(now int64) []handoff[C] {
	var closing []handoff[C]
	p.idle.unpark(func(e *entry[C]) {
		switch h := p.putLocked(e, e.idleSince, now); {
		case h.w != nil:
			p.wakes.serve(h.w, result[C]{e: h.e, check: h.check})
		case h.e != nil:
			closing = append(closing, h)
		}
	})
	return closing
}

// closeIdleLocked: idle → closing, for connections the idle set has just
// given up (takeOldest, takeWhere), each for reason. It returns the
// closings for the caller to carry out after unlocking. p.mu must be
// held.
func (p *Pool[C]) closeIdleLocked(idle []*entry[C], reason CloseReason, closing []handoff[C]) []handoff[C] {
	for _, e := range idle {
		if e.state != stateIdle {
			panic("pool: internal: a " + e.state.String() + " connection closed as idle")
		}
		p.closeLocked(e)
		closing = append(closing, handoff[C]{e: e, reason: reason})
	}
	if reason == CloseIdle && len(idle) > 0 {
		p.gaveBackLocked()
	}
	return closing
}

// closeLocked: idle, checking, lent or resetting → closing. An idle
// connection must already be out of the idle set (closeIdleLocked). The
// caller closes it with finishClose after unlocking. On a budget, the
// slot counts as on its way back. p.mu must be held.
func (p *Pool[C]) closeLocked(e *entry[C]) {
	p.moveLocked(e, stateClosing)
	p.closingSlotLocked()
}

// goneLocked: closing → gone, once Close has returned; its budget slot is
// given back. p.mu must be held.
func (p *Pool[C]) goneLocked(e *entry[C]) {
	if e.state != stateClosing {
		panic("pool: internal: a " + e.state.String() + " connection forgotten")
	}
	e.state = stateGone
	p.n[stateClosing]--
	p.freeSlotLocked(true)
	p.forgetLocked(e)
}

// movedOutLocked: idle, checking, lent or resetting → gone, without
// Close: the connection and its budget slot go to member to, another pool
// of its Share group, which binds it (adopt); with to nil, the connection
// goes to a pool of the group that dials with a slot of its own
// (handOver), and its slot goes back to the budget. It reports false, and
// changes nothing, if to's pool is closed or the connection is being
// closed already (a Reset watchdog). An idle connection must already be
// out of the idle set. p.mu must be held.
func (p *Pool[C]) movedOutLocked(e *entry[C], to *member) bool {
	if e.state >= stateClosing {
		panic("pool: internal: a " + e.state.String() + " connection moved out")
	}
	b := p.cfg.Budget
	b.mu.Lock()
	ok := (to == nil || !to.closed) && e.closed.CompareAndSwap(false, true) // no Close of this entry's may run now
	switch {
	case ok && to != nil:
		b.moveSlotLocked(p.bm, to)
	case ok:
		b.handedOverLocked(p.bm)
	}
	b.mu.Unlock()
	if !ok {
		return false
	}
	p.n[e.state]--
	e.state = stateGone
	p.stats.movedOut.Add(1)
	p.forgetLocked(e)
	return true
}

// forgetLocked takes a gone connection out of the pool's list. p.mu must
// be held.
func (p *Pool[C]) forgetLocked(e *entry[C]) {
	if p.aboveMax && p.n.open() <= p.maxSize {
		p.aboveMax = false
		p.aboveMaxFast.Store(false)
	}
	last := p.conns[len(p.conns)-1]
	p.conns[e.index] = last
	last.index = e.index
	p.conns[len(p.conns)-1] = nil
	p.conns = p.conns[:len(p.conns)-1]
}

// checkDue reports whether e must be checked before it is lent: it has an
// IsValid, or now, a coarse reading, is within clockDoubt of its
// MaxLifetime or of PingAfterIdle, where the real clock decides. It runs
// no user code and reads no clock.
func (p *Pool[C]) checkDue(e *entry[C], now int64) bool {
	soon := now + int64(clockDoubt)
	return e.validator != nil || soon >= e.expiresAt ||
		(p.cfg.PingAfterIdle > 0 && soon-e.idleSince >= int64(p.cfg.PingAfterIdle))
}

// onlyIsValidDue reports whether, of the checks checkDue stands for, only
// IsValid is due: neither MaxLifetime nor PingAfterIdle is near, by now, a
// coarse reading.
func (p *Pool[C]) onlyIsValidDue(e *entry[C], now int64) bool {
	soon := now + int64(clockDoubt)
	return soon < e.expiresAt && (p.cfg.PingAfterIdle <= 0 || soon-e.idleSince < int64(p.cfg.PingAfterIdle))
}

// books counts connections by state as the lock sees them: a parked
// connection is counted lent (see withParked). It is protected by the
// pool's mu.
type books [numStates]int

// open is the number of connections open: every state's count, dials in
// flight included.
func (n *books) open() int {
	return n[stateDialling] + n[stateIdle] + n[stateParked] + n[stateChecking] + n[stateLent] + n[stateResetting] + n[stateClosing]
}

// kept is the number of connections open and not being closed, dials in
// flight included.
func (n *books) kept() int { return n.open() - n[stateClosing] }

// withParked returns the counts with k of the connections counted lent
// moved to parked: k is what the idle set's slots hold. Exact between
// operations; while loans start and end without the lock, a connection
// moving between a slot and a caller may be counted on either side.
func (n books) withParked(k int) books {
	n[stateLent] -= k
	n[stateParked] += k
	return n
}

// inUse counts the connections in callers' hands, or on their way back to
// the lock: checked, lent (parked ones included) or being reset.
func (n *books) inUse() int { return n[stateChecking] + n[stateLent] + n[stateResetting] }
