package pool

import (
	"sync/atomic"
	"time"
)

// counters are the pool's event counters: atomics, so that counting never
// takes the lock.
type counters struct {
	canceled        atomic.Int64
	timedOut        atomic.Int64
	failedFast      atomic.Int64
	tooManyWaiters  atomic.Int64
	created         atomic.Int64
	movedIn         atomic.Int64
	movedOut        atomic.Int64
	bindErrors      atomic.Int64
	dialErrors      atomic.Int64
	refused         atomic.Int64
	shed            atomic.Int64
	closedIdle      atomic.Int64
	closedLifetime  atomic.Int64
	closedBroken    atomic.Int64
	closedPool      atomic.Int64
	closedResized   atomic.Int64
	closedBudget    atomic.Int64
	closedReset     atomic.Int64
	resets          atomic.Int64
	leakedLoans     atomic.Int64
	abandonedLoans  atomic.Int64
	panicsRecovered atomic.Int64
}

func (c *counters) countClose(reason CloseReason) {
	switch reason {
	case CloseIdle:
		c.closedIdle.Add(1)
	case CloseLifetime:
		c.closedLifetime.Add(1)
	case CloseBroken:
		c.closedBroken.Add(1)
	case ClosePoolClosed:
		c.closedPool.Add(1)
	case CloseAbandoned:
		c.abandonedLoans.Add(1)
	case CloseResized:
		c.closedResized.Add(1)
	case CloseBudget:
		c.closedBudget.Add(1)
	case CloseReset:
		c.closedReset.Add(1)
	}
}

// Stats is a snapshot of a pool's state and counters.
type Stats struct {
	Total   int // connections open: Idle + InUse + Dialing + Closing
	Idle    int // connections idle: on the idle stack or parked
	InUse   int // connections lent to callers, or being checked for one
	Dialing int // dials in flight
	Closing int // connections taken out of service and being closed
	Waiting int // Acquire calls waiting for a connection
	MinSize int // Config.MinSize, or as SetMinSize last set it
	MaxSize int // Config.MaxSize, or as SetMaxSize last set it
	// Ceiling is the most connections the pool may open now: MaxSize, or
	// less while the server refuses dials for capacity (see ErrCapacity).
	// On a Budget the ceiling is the budget's (BudgetStats.Ceiling).
	Ceiling int
	// MeanHold is the mean loan length over the last seconds, measured
	// with Config.Adaptive or Config.ShedHopeless; zero otherwise.
	MeanHold time.Duration
	// Target is the connections Config.Adaptive keeps open for the
	// demand; zero without it.
	Target int

	// Down is true while the source is down: the last dial failed (with
	// Config.DialBackoff set) and none has succeeded since. Acquires for
	// which no connection is coming then fail fast.
	Down bool
	// DialFailuresInARow counts the failed dials since the last success.
	DialFailuresInARow int

	AcquireCount     int64         // successful Acquire, TryAcquire and With calls
	WaitCount        int64         // Acquire calls that had to wait
	WaitDuration     time.Duration // total time spent waiting by those calls
	CanceledAcquires int64         // Acquire calls ended by the caller's context
	TimedOutAcquires int64         // Acquire calls ended by AcquireTimeout
	FailedFast       int64         // Acquire calls refused at once while the source was down
	TooManyWaiters   int64         // Acquire calls refused at once because Config.MaxWaiters callers were waiting
	Shed             int64         // Acquire calls failed at once because their deadline would pass before their turn (Config.ShedHopeless)

	Created        int64 // connections dialled successfully
	MovedIn        int64 // connections another pool of its Share group gave up, bound here instead of a dial
	MovedOut       int64 // connections given up to another pool of its Share group instead of closed
	BindErrors     int64 // moved connections that failed Share.Bind (closed, and a dial made instead)
	DialErrors     int64 // dials that failed, and new connections that failed their first check
	Refused        int64 // dials the server refused for capacity (ErrCapacity), of DialErrors
	ClosedIdle     int64 // closed after MaxIdleTime
	ClosedLifetime int64 // closed after MaxLifetime
	ClosedBroken   int64 // closed by a failed check, ErrBadConn, a panic or Discard
	ClosedPool     int64 // closed because the pool was closed
	ClosedResized  int64 // closed because SetMaxSize lowered MaxSize below the connections open
	ClosedBudget   int64 // closed so that their slot went to another pool on the Budget (see Budget)
	ClosedReset    int64 // closed because they were dialled before a Reset
	Resets         int64 // calls of Reset

	LeakedLoans     int64 // loans held past Config.LeakThreshold (each counted once)
	AbandonedLoans  int64 // handles dropped without Release; their connections were closed
	PanicsRecovered int64 // panics in connector calls and Factories that the pool recovered or re-raised
}

// Stats returns a snapshot of the pool. The gauges are read together under
// the lock; the counters are read just after.
func (p *Pool[C]) Stats() Stats {
	p.mu.Lock()
	parked, loans := p.idle.census()
	n := p.n.withParked(parked)
	s := Stats{
		Total:   p.n.open(),
		Idle:    n[stateIdle] + n[stateParked],
		InUse:   n[stateChecking] + n[stateLent] + n[stateResetting],
		Dialing: n[stateDialling],
		Closing: n[stateClosing],
		Waiting: p.waiters.len,
		MinSize: p.minSize,
		MaxSize: p.maxSize,
		Ceiling: p.capLocked(),

		MeanHold: time.Duration(p.demand.meanHold),
		Target:   p.demand.target,

		Down:               p.downLocked(),
		DialFailuresInARow: p.dialing.failures,
	}
	p.unlock()
	c := &p.stats
	s.AcquireCount = loans
	waits, waitNanos := p.idle.waits()
	s.WaitCount, s.WaitDuration = waits, time.Duration(waitNanos)
	s.CanceledAcquires = c.canceled.Load()
	s.TimedOutAcquires = c.timedOut.Load()
	s.FailedFast = c.failedFast.Load()
	s.TooManyWaiters = c.tooManyWaiters.Load()
	s.Shed = c.shed.Load()
	s.Created = c.created.Load()
	s.MovedIn, s.MovedOut, s.BindErrors = c.movedIn.Load(), c.movedOut.Load(), c.bindErrors.Load()
	s.DialErrors = c.dialErrors.Load()
	s.Refused = c.refused.Load()
	s.ClosedIdle = c.closedIdle.Load()
	s.ClosedLifetime = c.closedLifetime.Load()
	s.ClosedBroken = c.closedBroken.Load()
	s.ClosedPool = c.closedPool.Load()
	s.ClosedResized = c.closedResized.Load()
	s.ClosedBudget = c.closedBudget.Load()
	s.ClosedReset, s.Resets = c.closedReset.Load(), c.resets.Load()
	s.LeakedLoans = c.leakedLoans.Load()
	s.AbandonedLoans = c.abandonedLoans.Load()
	s.PanicsRecovered = c.panicsRecovered.Load()
	return s
}

// recordWait counts the wait of a call that queued at start, when it ends.
func (p *Pool[C]) recordWait(start int64) {
	p.idle.countWait(p.clock.now() - start)
}
