package pool

import "context"

// Priority is the class of an Acquire that has to wait: higher classes are
// served first, in FIFO order within a class, and a waiting lower class is
// never starved (see WithPriority). The zero value is PriorityNormal.
type Priority int8

const (
	// PriorityBatch is for work that can wait: scans, exports, reports.
	PriorityBatch Priority = -1
	// PriorityNormal is the default class.
	PriorityNormal Priority = 0
	// PriorityInteractive is for a person waiting on the answer.
	PriorityInteractive Priority = 1
)

// String returns "batch", "normal" or "interactive".
func (p Priority) String() string {
	switch p.class() {
	case classInteractive:
		return "interactive"
	case classBatch:
		return "batch"
	}
	return "normal"
}

// numClasses is the number of priority classes; a class is an index into
// the wait list's queues, 0 the highest.
const numClasses = 3

const (
	classInteractive = 0
	classNormal      = 1
	classBatch       = 2
)

// class maps a Priority to its queue; values out of range count as the
// nearest class.
func (p Priority) class() int {
	switch {
	case p >= PriorityInteractive:
		return classInteractive
	case p <= PriorityBatch:
		return classBatch
	}
	return classNormal
}

// floorEvery is the starvation floor: a class that waits is passed over
// at most floorEvery-1 hand-offs in a row for another class that is not
// owed its own turn (see waitList.pick).
const floorEvery = 10

type priorityKey struct{}

// WithPriority returns a copy of ctx that makes Acquire, With and the
// registry's With wait in class p when they have to wait. A caller that
// finds an idle connection never reads it.
//
// The rule: a released connection goes to the longest waiter of the
// highest class that waits, except that a class passed over nine hand-offs
// in a row while it waited gets the tenth (when two lower classes are owed
// a turn at once, the one passed over longest goes first, then the other).
// So a waiting class gets at least one hand-off in ten, or one in eleven
// when all three classes wait. Values above PriorityInteractive count as
// interactive, below PriorityBatch as batch.
//
// On a Budget the classes also order its pools: a freed slot goes to the
// pool whose callers wait in the highest class, under the same floor
// counted across the pools; when the budget is full, a pool releasing a
// connection gives it up to a pool whose callers wait in a higher class
// than any of its own, or, when none of its own waits, to a pool whose
// interactive callers wait (see Budget).
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityFrom returns the priority WithPriority set on ctx, or
// PriorityNormal.
func PriorityFrom(ctx context.Context) Priority {
	p, _ := ctx.Value(priorityKey{}).(Priority)
	return p
}
