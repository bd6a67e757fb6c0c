// Connections that move between the pools of a Share group (see Share):
// the pool that gives one up, and the pool that re-binds it.
//
// A move replaces a close and a dial. The giving pool takes the
// connection out of its books as if it had closed it (movedOutLocked:
// its entry is gone, and a stale handle of it reaches nothing), and its
// budget slot passes straight to the receiving pool as a dial in flight
// (Budget.moveSlotLocked), so the budget's count never drops and never
// exceeds what is open. The receiving pool makes a new entry for it once
// Bind has returned (dialMoved), exactly as for a connection it dialled:
// a loan there never sees the giver's entry, handles or loan numbers.

package pool

import (
	"context"
	"math/rand/v2"
	"reflect"
	"time"
)

// give is budgetPool.give: it moves an idle connection, one the pool may
// give up (it is above its MinSize), to member to of its Share group, and
// reports whether it did. The connection is the least recently used.
func (p *Pool[C]) give(to *member) bool {
	moved := p.moveOutIdle(to)
	if moved == nil {
		return false
	}
	to.pool.adopt(moved.conn, moved.createdAt)
	return true
}

// handOver is budgetPool.handOver: it gives up its least recently used
// idle connection, if it has one it may give up, to a pool of its Share
// group that is about to dial with a slot of its own; the connection's
// slot goes back to the budget.
func (p *Pool[C]) handOver() (conn any, createdAt time.Time, ok bool) {
	moved := p.moveOutIdle(nil)
	if moved == nil {
		return nil, time.Time{}, false
	}
	return moved.conn, moved.createdAt, true
}

// moveOutIdle takes the least recently used idle connection out of the
// pool's books for a move (movedOutLocked; to nil: it goes without its
// slot), if the pool is above its MinSize, and returns it; nil if none.
func (p *Pool[C]) moveOutIdle(to *member) *entry[C] {
	p.mu.Lock()
	closing := p.unparkLocked(p.clock.coarse())
	var moved *entry[C]
	if p.n.kept() > p.minSize {
		if oldest := p.idle.takeOldest(1, nil); len(oldest) == 1 {
			if moved = oldest[0]; !p.movedOutLocked(moved, to) {
				p.idle.push(moved)
				moved = nil
			}
		}
	}
	p.unlock()
	p.doAll(closing)
	if moved != nil && to == nil {
		p.settleBudget() // its slot is free
	}
	return moved
}

// adopt is budgetPool.adopt: c, a connection that another pool of the
// Share group gave up, comes with a slot that the budget has counted for
// this pool as a dial in flight. The pool binds it and then takes it as
// it takes a connection it dialled: to a waiter, else idle. A pool that
// is closed, or at MaxSize, closes it and gives the slot back.
func (p *Pool[C]) adopt(c any, createdAt time.Time) {
	conn, ok := c.(C)
	b := p.cfg.Budget
	p.mu.Lock()
	if !ok || p.closed.Load() || p.n.open() >= p.maxSize {
		b.mu.Lock()
		b.freeLocked(p.bm, false)
		b.mu.Unlock()
		p.unlock()
		p.stats.bindErrors.Add(1)
		if cc, ok := c.(Connector); ok {
			p.closeMoved(cc)
		}
		p.settleBudget()
		return
	}
	if p.shortfallLocked() <= 1 {
		b.mu.Lock()
		b.setWantLocked(p.bm, false)
		b.mu.Unlock()
	}
	p.dialStartLocked()
	p.unlock()
	go p.dialMoved(conn, createdAt, p.genFast.Load())
}

// dialMoved binds a connection another pool of the group gave up, as a
// dial in flight.
func (p *Pool[C]) dialMoved(conn C, createdAt time.Time, gen uint64) {
	defer p.bg.Done()
	ctx, cancel := p.dialContext()
	defer cancel()
	p.bindMoved(ctx, conn, createdAt, gen)
}

// bindMoved binds conn, moved from another pool of the group, and takes
// it as the result of the dial in flight it stands for: if Bind fails,
// the connection is closed and the pool dials a new one in its place.
func (p *Pool[C]) bindMoved(ctx context.Context, conn C, createdAt time.Time, gen uint64) {
	err := p.callBind(ctx, conn)
	if err == nil {
		p.dialled(conn, nil, createdAt, p.clock.now(), gen)
		return
	}
	p.stats.bindErrors.Add(1)
	p.logf(levelWarn, "moved connection failed to bind; dialling instead", "error", err.Error())
	p.closeMoved(conn)
	conn, err = p.callFactory(ctx)
	p.dialled(conn, err, time.Time{}, p.clock.now(), gen)
}

// dialOrTakeFromGroup is a dial's work: a pool of a Share group first
// takes an idle connection another pool of the group may give up, and
// binds it, so that a budget with room never holds an idle connection of
// the group while a new one is dialled; else, and for any other pool,
// the Factory dials.
// gen is the pool's generation when the dial began (see Reset).
func (p *Pool[C]) dialOrTakeFromGroup(ctx context.Context, gen uint64) {
	if p.bm != nil && p.cfg.Share.Group != "" {
		if c, createdAt, ok := p.cfg.Budget.idleOfGroup(p.bm); ok {
			if conn, ok := c.(C); ok { // always: a group holds one connection type
				p.bindMoved(ctx, conn, createdAt, gen)
				return
			}
			p.closeMoved(c.(Connector))
		}
	}
	conn, err := p.callFactory(ctx)
	p.dialled(conn, err, time.Time{}, p.clock.now(), gen)
}

// callBind runs Share.Bind; a panic becomes a *PanicError.
func (p *Pool[C]) callBind(ctx context.Context, conn C) (err error) {
	defer func() {
		if v := recover(); v != nil {
			pe := newPanicError("Share.Bind", v)
			p.logPanic(pe)
			err = pe
		}
	}()
	return p.cfg.Share.Bind(ctx, conn)
}

// closeMoved closes a moved connection that never got an entry here; a
// panic in Close is logged.
func (p *Pool[C]) closeMoved(c Connector) {
	defer func() {
		if v := recover(); v != nil {
			p.logPanic(newPanicError("Close", v))
		}
	}()
	_ = c.Close()
}

// newEntry makes the entry of a connection that the pool has just dialled
// (createdAt zero) or bound after a move (createdAt when it was dialled,
// by whichever pool): MaxLifetime counts from the dial.
func (p *Pool[C]) newEntry(conn C, createdAt time.Time, now int64, gen uint64) *entry[C] {
	moved := !createdAt.IsZero()
	if !moved {
		createdAt = p.clock.time(now)
	}
	e := &entry[C]{pool: p, conn: conn, createdAt: createdAt, expiresAt: maxReading, fresh: true, moved: moved, gen: gen}
	if lt := p.cfg.MaxLifetime; lt > 0 {
		age := p.clock.time(now).Sub(createdAt)
		e.expiresAt = addSat(now, lt-age-rand.N(lt/10+1))
	}
	e.validator, _ = any(conn).(Validator)
	e.resetter, _ = any(conn).(Resetter)
	e.resetChecker, _ = any(conn).(ResetChecker)
	return e
}

// shareKind is the connection type of a pool on a budget, so that only
// pools of one type ever exchange connections, whatever their Group.
func shareKind[C Connector]() reflect.Type { return reflect.TypeFor[C]() }
