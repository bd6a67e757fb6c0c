package pool

// This file is the state machine of a connection: its states, and one
// function per edge between them. Every edge runs with p.mu held, moves
// the counts in p.n together with entry.state, and does no I/O; the
// hand-off or Close that an edge calls for is done by its caller after
// unlocking (see handoff). Nothing else changes a connection's state or
// the counts.
//
//	(slot) ─dialStartLocked─► dialling ─dialFailedLocked─► (gone)
//	                              │
//	                        dialledLocked
//	                              ▼
//	        ┌─────────────────► idle ──takeIdleLocked──┐
//	        │ putLocked           │ takeIdleLocked     │ (no check due)
//	        │                     ▼                    ▼
//	        │                 checking ─checkPassed─► lent ─resetLocked─► resetting
//	        │                     │                    │                    │
//	        └──── putLocked ──────┴────────────────────┴─────── putLocked ──┘
//
//	closeLocked: idle, checking, lent or resetting ─► closing ─goneLocked─► (gone)
//
// Where putLocked (and dialledLocked) find a waiter, handLocked gives the
// connection to it: lent, or checking when a check is due (checkDue).
// On a closed pool, or one above a MaxSize that SetMaxSize lowered,
// putLocked sends it to closing instead. Every way a
// connection leaves lent: putLocked (Release, no Reset or IsValid),
// resetLocked (Release, with them), closeLocked (Discard, ErrBadConn, a
// panic in With's fn or in NeedsReset, a dropped handle).

// connState is where a connection is in its life.
type connState uint8

const (
	// stateDialling counts dials in flight: a slot below MaxSize is
	// reserved, and no entry exists yet (an entry is in this state only
	// inside dialledLocked).
	stateDialling connState = iota
	// stateIdle: on the idle stack, p.idle.
	stateIdle
	// stateChecking: taken for one caller, who runs the acquire-time checks
	// (MaxLifetime near, IsValid, Ping) outside the lock.
	stateChecking
	// stateLent: a loan is in progress, or is being handed to a waiter
	// that needs no check, or has just ended and its holder has not yet
	// reached the pool (NeedsReset runs then).
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

var stateNames = [numStates + 1]string{"dialling", "idle", "checking", "lent", "resetting", "closing", "gone"}

func (s connState) String() string { return stateNames[s] }

// handoff is what an edge leaves to do once p.mu is unlocked: give a
// connection to a waiter (waking a goroutine is not done under the lock),
// or close it. The zero handoff does nothing.
type handoff[C Connector] struct {
	e      *entry[C]
	w      *waiter[C]  // the waiter to give e to; nil if e is closing
	check  bool        // e is handed in state checking, not lent
	reason CloseReason // why e is closing, if it is
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
	if h.w != nil {
		h.w.ch <- result[C]{e: h.e, check: h.check}
		return nil
	}
	return p.finishClose(h.e, h.reason)
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
// reading. It returns nil if none is idle. A connection lent here is
// counted in Stats.AcquireCount. p.mu must be held.
func (p *Pool[C]) takeIdleLocked(now int64) (*entry[C], connState) {
	e := p.popIdleLocked()
	if e == nil {
		return nil, stateIdle
	}
	if p.checkDue(e, now) {
		p.moveLocked(e, stateChecking)
		return e, stateChecking
	}
	p.moveLocked(e, stateLent)
	p.lends++
	return e, stateLent
}

// popIdleLocked takes the newest connection off the idle stack, still in
// state idle, or returns nil. The caller moves it on at once. p.mu must be
// held.
func (p *Pool[C]) popIdleLocked() *entry[C] {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	e := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return e
}

// checkPassedLocked: checking → lent, for a connection that passed its
// acquire-time checks; counted in Stats.AcquireCount. p.mu must be held.
func (p *Pool[C]) checkPassedLocked(e *entry[C]) {
	p.moveLocked(e, stateLent)
	p.lends++
}

// resetLocked: lent → resetting, for a connection whose loan has ended and
// that needs Reset or IsValid before reuse. p.mu must be held.
func (p *Pool[C]) resetLocked(e *entry[C]) {
	p.moveLocked(e, stateResetting)
}

// putLocked: dialling, checking, lent or resetting → the longest waiter
// (see handLocked), else → idle, stamped idle since idleSince; on a
// closed pool, or one above a MaxSize lowered by SetMaxSize, → closing.
// now is a coarse reading or better. p.mu must be held.
func (p *Pool[C]) putLocked(e *entry[C], idleSince, now int64) handoff[C] {
	e.idleSince = idleSince
	switch {
	case p.closed.Load():
		p.closeLocked(e)
		return handoff[C]{e: e, reason: ClosePoolClosed}
	case p.aboveMax && p.openLocked()-p.n[stateClosing] > p.maxSize:
		p.closeLocked(e)
		return handoff[C]{e: e, reason: CloseResized}
	case p.bm != nil && !e.fresh && p.yieldLocked(e, now): // a new connection serves once first
		p.closeLocked(e)
		return handoff[C]{e: e, reason: CloseBudget}
	}
	if p.waiters.len > 0 {
		if w := p.nextWaiterLocked(now); w != nil {
			return p.handLocked(e, w, now)
		}
	}
	p.moveLocked(e, stateIdle)
	p.idle = append(p.idle, e)
	return handoff[C]{}
}

// handLocked: any state but closing → lent, or → checking if a check is
// due, for waiter w, dequeued; the handoff serves w after unlocking. A
// connection handed lent is counted in Stats.AcquireCount by the waiter
// when it takes it, since a waiter that gives up at that instant puts it
// back unused. p.mu must be held.
func (p *Pool[C]) handLocked(e *entry[C], w *waiter[C], now int64) handoff[C] {
	if p.checkDue(e, now) {
		p.moveLocked(e, stateChecking)
		return handoff[C]{e: e, w: w, check: true}
	}
	p.moveLocked(e, stateLent)
	return handoff[C]{e: e, w: w}
}

// closeLocked: idle, checking, lent or resetting → closing. An idle
// connection must already be off the idle stack. The caller closes it
// with finishClose after unlocking. On a budget, the slot counts as on
// its way back. p.mu must be held.
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
	if p.aboveMax && p.openLocked() <= p.maxSize {
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

// openLocked is the number of connections open: every state's count, a
// dial in flight included. p.mu must be held.
func (p *Pool[C]) openLocked() int {
	n := p.n
	return n[stateDialling] + n[stateIdle] + n[stateChecking] + n[stateLent] + n[stateResetting] + n[stateClosing]
}
