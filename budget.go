package pool

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Budget is a number of connections shared by the pools whose
// Config.Budget points at it, for pools that reach one server (or one
// account): together they never hold more than its limit open, counting
// every connection idle, in use, being dialled or being closed, whatever
// Pool, Manager or registry they belong to.
//
// Within the limit:
//   - each pool's MinSize connections are reserved for it;
//   - a pool alone in wanting more may use every slot the others do not
//     hold or reserve;
//   - a freed slot goes to a waiting pool below its MinSize first, then
//     to the pool whose callers wait in the highest priority class
//     (WithPriority; a lower class that waits still gets one slot in
//     ten), then to the pool with the fewest connections per unit of
//     Config.Weight;
//   - when the budget is full, a pool gives up a connection it releases,
//     instead of reusing it, to a waiting pool that is below its MinSize,
//     waits in a higher class, or after the move would still hold no
//     more per unit of weight than the giver (on a budget of 4, pools of
//     weight 2 and 1 stay at 2 each: a third slot would put the taker at
//     1.5 per unit and the giver at 1), or holds none while the giver has
//     had the slot a second; idle connections of other pools are reclaimed
//     under the same rule, least recently used first, an idle one
//     counting as held after 100 ms;
//   - pools of one Config.Share group pass the connection itself,
//     re-bound, where others close one so that the taker dials, and take
//     each other's idle connections before they dial.
//
// A Budget is safe for concurrent use. Pools join it in New and leave it
// when they are closed. The zero Budget is not usable: make one with
// NewBudget.
type Budget struct {
	// settling is held by the one goroutine running settle; others leave
	// the work to it through dirty.
	settling sync.Mutex
	dirty    atomic.Bool
	// wanting counts the members that want a slot; read without mu on the
	// release path, to skip the budget when nobody wants.
	wanting atomic.Int32
	// over is set while open exceeds limit (after SetLimit or a join).
	over atomic.Bool

	moved     atomic.Int64
	shared    atomic.Int64 // connections moved between pools of a Share group
	yielded   atomic.Int64
	reclaimed atomic.Int64
	refusals  atomic.Int64 // dials of its pools refused for capacity

	epoch time.Time // the budget's clock starts here (see now)

	// mu protects the fields below and every member's. It is taken with a
	// pool's mu held, never the other way round: the budget never locks a
	// pool while it holds mu.
	mu      sync.Mutex
	name    string
	limit   int
	open    int    // slots held by members: their connections open, closing ones included
	dialing int    // of which dials in flight (at most budgetDials)
	slots   uint64 // slots handed out, ever: the clock of member.lastSlot
	// mins is the MinSizes reserved: the members', and the reservations
	// of registered sources that have no member now.
	mins    int
	members []*member
	// passed counts, per priority class, the slots handed out to members
	// of other classes while a member of the class wanted one, since the
	// class was last served: the floor of priority.go, across pools.
	passed [numClasses]int
	// ceiling is the capacity ceiling below limit, while the server
	// refuses dials (capacity.go).
	ceiling ceilingState
	// wake settles the budget (on the budget's clock) when the next probe
	// above the ceiling is due, or an idle connection becomes old enough
	// to reclaim.
	wake alarm
}

// member is one pool's account with a budget. Its fields are protected
// by the budget's mu.
type member struct {
	pool    budgetPool
	name    string
	weight  int
	min     int
	open    int  // connections open, in any state (dials in flight included)
	closing int  // of which being closed: their slots are on their way back
	want    bool // has callers waiting for a dial that the budget refused
	need    int  // how many dials it wanted when last refused, less the slots granted since
	// lastSlot is when it last got a slot, in slots handed out by the
	// budget: of two members equally far below their share, the one
	// served longest ago goes first, so that two pools on one slot take
	// turns.
	lastSlot uint64
	closed   bool // the pool is closed; it leaves when open reaches 0
	// group and kind are the pool's Share.Group and connection type:
	// members with the same non-empty group and kind exchange connections.
	group string
	kind  reflect.Type
	// top is the highest priority class its callers wait in (a class of
	// priority.go), numClasses if none, as its pool last told the budget.
	top uint8
	// res is the registered source's reservation that this member stands
	// in for, nil if none.
	res *reservation
}

// reservation is the MinSize a source registered with a PooledRegistry
// holds on its budget, from Register to its removal, whether or not its
// pool exists: a source that fits when it registers still fits at its
// first request, and one that does not is refused at Register. While its
// pool is a member, the member's MinSize counts instead. Its fields are
// protected by the budget's mu.
type reservation struct {
	b        *Budget
	n        int
	m        *member // the member standing in for it, nil if none
	released bool
}

// reserve holds n for a registered source (ErrInvalidConfig, naming the
// budget and the sum, if the reservations would exceed the limit).
func (b *Budget) reserve(n int) (*reservation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mins+n > b.limit {
		return nil, newError(fmt.Sprintf("invalid config: MinSize %d: the MinSizes reserved on %s would sum to %d",
			n, b.labelLocked(), b.mins+n), ErrInvalidConfig)
	}
	b.mins += n
	return &reservation{b: b, n: n}, nil
}

// release ends the reservation when its source is removed; a member
// still standing in for it keeps its own MinSize counted. A nil r is
// none.
func (r *reservation) release() {
	if r == nil {
		return
	}
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.released {
		return
	}
	r.released = true
	if r.m != nil {
		r.m.res, r.m = nil, nil
		return
	}
	b.mins -= r.n
}

// shares reports whether m and o exchange connections (see Share).
func (m *member) shares(o *member) bool {
	return m.group != "" && m.group == o.group && m.kind == o.kind
}

// budgetPool is what a budget asks of a member pool. Each method locks the
// pool; the budget calls them with its own mu unlocked.
type budgetPool interface {
	// grant gives the pool a slot the budget has counted for it already:
	// it dials with it, or gives it back if it no longer needs it.
	grant()
	// oldestIdle returns when its least recently used idle connection went
	// idle, if it has one it may give up (it is above its MinSize).
	oldestIdle() (time.Time, bool)
	// reclaimIdle closes its least recently used idle connection for the
	// budget, if it still has one it may give up.
	reclaimIdle() bool
	// waiting returns the number of its callers that wait.
	waiting() int
	// give moves its least recently used idle connection, if it has one
	// it may give up, to member to of its Share group (see share.go), and
	// reports whether it did.
	give(to *member) bool
	// adopt takes c, a connection another pool of its Share group gave
	// up, with a slot the budget has counted for it as a dial in flight.
	adopt(c any, createdAt time.Time)
	// handOver gives up its least recently used idle connection, if it
	// has one it may give up, to a pool of its Share group that dials
	// with a slot of its own; the connection's slot is freed.
	handOver() (conn any, createdAt time.Time, ok bool)
}

// NewBudget returns a budget of limit connections; limit must be at least
// 1 (ErrInvalidConfig otherwise).
func NewBudget(limit int) (*Budget, error) {
	if limit < 1 {
		return nil, newError(fmt.Sprintf("invalid config: budget limit is %d; it must be at least 1", limit), ErrInvalidConfig)
	}
	b := &Budget{limit: limit, epoch: time.Now()}
	b.wake.fn = b.woken
	return b, nil
}

// SetName names the budget in its errors and Stats.
func (b *Budget) SetName(name string) {
	b.mu.Lock()
	b.name = name
	b.mu.Unlock()
}

// label is how errors name the budget. b.mu must be held.
func (b *Budget) labelLocked() string {
	if b.name != "" {
		return fmt.Sprintf("budget %q (limit %d)", b.name, b.limit)
	}
	return fmt.Sprintf("budget (limit %d)", b.limit)
}

// SetLimit changes the limit while the budget is in use. Raising it lets
// waiting pools dial at once. Lowering it below the connections open
// closes idle connections at once (least recently used first, never below
// a pool's MinSize) and connections in use when they are released, so no
// loan is cut short; until then no pool dials. n must be at least 1 and at
// least the sum of the MinSizes of the pools on the budget
// (ErrInvalidConfig otherwise).
func (b *Budget) SetLimit(n int) error {
	b.mu.Lock()
	switch {
	case n < 1:
		b.mu.Unlock()
		return newError(fmt.Sprintf("invalid config: budget limit is %d; it must be at least 1", n), ErrInvalidConfig)
	case n < b.mins:
		err := newError(fmt.Sprintf("invalid config: %s: limit %d is below the MinSizes reserved on it, which sum to %d",
			b.labelLocked(), n, b.mins), ErrInvalidConfig)
		b.mu.Unlock()
		return err
	}
	b.limit = n
	b.checkOverLocked()
	b.dirty.Store(true) // a raised limit has slots for the pools that want
	b.mu.Unlock()
	b.settle()
	return nil
}

// BudgetStats is a snapshot of a budget.
type BudgetStats struct {
	Name  string // as SetName set it
	Limit int    // the limit
	// Ceiling is the most connections its pools may open now: Limit, or
	// less while the server refuses dials for capacity (see ErrCapacity).
	Ceiling int
	Open    int // connections open in its pools, closing ones included
	Dialing int // of which being dialled (at most 4, but for pools below their MinSize)
	// Reserved is the MinSizes reserved on it: its pools', and those of
	// sources registered with a PooledRegistry whose pool is not made.
	Reserved int
	// Pools has one line per pool on the budget, in the order they joined.
	Pools []BudgetPoolStats
	// Moved counts slots the budget gave to a waiting pool: freed by a
	// release, a close or a reclaim, or never used.
	Moved int64
	// Yielded counts connections a pool closed at release, instead of
	// reusing them, so that their slot went to a pool further below its
	// share (or back under a lowered limit).
	Yielded int64
	// ReclaimedIdle counts idle connections closed at once because another
	// pool waited and the budget was full (or over its limit).
	ReclaimedIdle int64
	// Refused counts dials of its pools that the server refused for
	// capacity (see ErrCapacity).
	Refused int64
	// Shared counts connections that moved from one pool to another of a
	// Share group, each a dial avoided and a connection not closed (see
	// Share).
	Shared int64
}

// BudgetPoolStats is one pool's share of a budget.
type BudgetPoolStats struct {
	Name    string // the pool's Config.Name (its source ID in a Manager or registry)
	Weight  int    // its Config.Weight
	MinSize int    // its reserved minimum
	Open    int    // connections it has open, closing ones included
	Waiting int    // its callers waiting for a connection
	Closed  bool   // the pool is closed and its last connections are closing
}

// Stats returns a snapshot of the budget. The slots are read together;
// each pool's Waiting is read just after, from the pool.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	s := BudgetStats{Name: b.name, Limit: b.limit, Ceiling: b.capLocked(), Open: b.open, Dialing: b.dialing, Reserved: b.mins}
	pools := make([]budgetPool, len(b.members))
	for i, m := range b.members {
		s.Pools = append(s.Pools, BudgetPoolStats{Name: m.name, Weight: m.weight, MinSize: m.min, Open: m.open, Closed: m.closed})
		pools[i] = m.pool
	}
	b.mu.Unlock()
	for i, p := range pools {
		s.Pools[i].Waiting = p.waiting()
	}
	s.Moved, s.Yielded, s.ReclaimedIdle = b.moved.Load(), b.yielded.Load(), b.reclaimed.Load()
	s.Refused = b.refusals.Load()
	s.Shared = b.shared.Load()
	return s
}

// join adds a pool with the given MinSize, weight and share group (group
// and kind, see member). res, if not nil, is its registered source's
// reservation, for which the member's MinSize then counts instead.
func (b *Budget) join(p budgetPool, name string, minSize, weight int, group string, kind reflect.Type, res *reservation) (*member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	mins := b.mins
	if res != nil && (res.released || res.m != nil) {
		res = nil // its source is gone, or another pool of it stands in
	}
	if res != nil {
		mins -= res.n
	}
	if mins+minSize > b.limit {
		return nil, newError(fmt.Sprintf("invalid config: MinSize %d: the MinSizes reserved on %s would sum to %d",
			minSize, b.labelLocked(), mins+minSize), ErrInvalidConfig)
	}
	m := &member{pool: p, name: name, weight: weight, min: minSize, group: group, kind: kind, top: numClasses, res: res}
	if res != nil {
		res.m = m
	}
	b.members = append(b.members, m)
	b.mins = mins + minSize
	return m, nil
}

// setMinLocked changes m's reserved minimum. b.mu must be held.
func (b *Budget) setMinLocked(m *member, n int) error {
	if b.mins-m.min+n > b.limit {
		return newError(fmt.Sprintf("invalid config: MinSize %d: the MinSizes reserved on %s would sum to %d",
			n, b.labelLocked(), b.mins-m.min+n), ErrInvalidConfig)
	}
	b.mins += n - m.min
	m.min = n
	return nil
}

// leaveLocked marks m's pool closed: its reservation ends at once, and it
// leaves the budget when its last connection is gone. b.mu must be held.
func (b *Budget) leaveLocked(m *member) {
	if m.closed {
		return
	}
	m.closed = true
	b.mins -= m.min
	m.min = 0
	if r := m.res; r != nil { // the source is still registered: its reservation counts again
		b.mins += r.n
		r.m, m.res = nil, nil
	}
	b.setWantLocked(m, false)
	b.forgetIfDoneLocked(m)
}

func (b *Budget) forgetIfDoneLocked(m *member) {
	if !m.closed || m.open > 0 {
		return
	}
	if i := slices.Index(b.members, m); i >= 0 {
		b.members = slices.Delete(b.members, i, i+1)
	}
}

func (b *Budget) setWantLocked(m *member, want bool) {
	if !want {
		m.need = 0
		m.top = numClasses
	}
	if m.want == want {
		return
	}
	m.want = want
	if want {
		b.wanting.Add(1)
		b.dirty.Store(true)
	} else {
		b.wanting.Add(-1)
	}
}

// needier reports whether x should get a slot before y, of one priority
// class: x holds fewer connections per unit of weight, or as few and got
// its last slot earlier.
func needier(x, y *member) bool {
	xs, ys := (x.open-x.closing)*y.weight, (y.open-y.closing)*x.weight
	if xs != ys {
		return xs < ys
	}
	return x.lastSlot < y.lastSlot
}

// budgetDials bounds the dials in flight for a budget's pools together,
// but for pools below their MinSize.
// Slots that move between pools are dialled anew, and on PostgreSQL a new
// connection is a new backend process: forty at once on a small server
// took a second each in the fleet benchmark (bench/RESULTS.md), during
// which their slots served nothing.
const budgetDials = 4

// dialCappedLocked reports whether m must wait to dial because budgetDials
// dials are in flight: a pool below its MinSize never waits for that (a
// pool joining a full budget gets its reservation within a loan).
// b.mu must be held.
func (b *Budget) dialCappedLocked(m *member) bool {
	return b.dialing >= budgetDials && m.open >= m.min
}

// handOutLocked counts a slot given to m, for a dial. b.mu must be held.
func (b *Budget) handOutLocked(m *member) {
	m.open++
	b.open++
	b.dialing++
	b.slots++
	m.lastSlot = b.slots
	m.need = max(m.need-1, 0)
	if int(m.top) < numClasses {
		b.servedClassLocked(m)
	}
}

// beforeLocked reports whether x should get a slot before y: x is below
// its MinSize and y is not; or x's callers wait in a higher priority
// class (a class owed its turn by the floor ranking first); or, in one
// class, x is needier by share (needier). b.mu must be held.
func (b *Budget) beforeLocked(x, y *member) bool {
	if xBelow, yBelow := x.open < x.min, y.open < y.min; xBelow != yBelow {
		return xBelow
	}
	if xr, yr := b.rankLocked(x), b.rankLocked(y); xr != yr {
		return xr < yr
	}
	return needier(x, y)
}

// rankLocked is m's place in the priority order: its top class, or -1
// when that class has been passed over floorEvery-1 slots in a row.
// b.mu must be held.
func (b *Budget) rankLocked(m *member) int {
	c := int(m.top)
	if c < numClasses && b.passed[c] >= floorEvery-1 {
		return -1
	}
	return c
}

// servedClassLocked counts a slot handed to m for the floor: each other
// class that a wanting member waits in is passed over once. b.mu must be
// held.
func (b *Budget) servedClassLocked(m *member) {
	var waiting [numClasses]bool
	for _, o := range b.members {
		if o.want && o != m && int(o.top) < numClasses {
			waiting[o.top] = true
		}
	}
	for c := range numClasses {
		switch {
		case c == int(m.top):
			b.passed[c] = 0
		case waiting[c]:
			b.passed[c]++
		}
	}
}

// neediestLocked returns the wanting member that should get the next
// slot, other than not, or nil. b.mu must be held.
func (b *Budget) neediestLocked(not *member) *member {
	var best *member
	for _, m := range b.members {
		if m.want && m != not && !m.closed && (best == nil || b.beforeLocked(m, best)) {
			best = m
		}
	}
	return best
}

// needierThanLocked reports whether a member that wants a slot should
// get one before m. b.mu must be held.
func (b *Budget) needierThanLocked(m *member) bool {
	t := b.neediestLocked(m)
	return t != nil && b.beforeLocked(t, m)
}

// roomLocked is the number of slots m may take now: below its MinSize,
// any slot not open (its reservation); above, what no member holds or
// reserves. b.mu must be held.
func (b *Budget) roomLocked(m *member) int {
	free := b.capLocked() - b.open
	if m.open < m.min {
		return free
	}
	reserved := 0
	for _, o := range b.members {
		reserved += max(0, o.min-o.open)
	}
	return free - reserved
}

// mayTakeLocked reports whether m may take a slot now: there is room for
// it, the budget's dials are not capped for it, and no wanting member
// goes first. b.mu must be held.
func (b *Budget) mayTakeLocked(m *member) bool {
	return b.roomLocked(m) > 0 && !b.dialCappedLocked(m) && !b.needierThanLocked(m)
}

// takeLocked takes a slot for a dial of m's pool, or records that m
// wants need slots and returns false: the budget is full, or another
// member that wants a slot is further below its share. b.mu must be held.
func (b *Budget) takeLocked(m *member, need int) bool {
	if m.closed {
		return false
	}
	if !b.mayTakeLocked(m) {
		b.setWantLocked(m, true)
		m.need = need
		return false
	}
	b.handOutLocked(m)
	return true
}

// moveSlotLocked passes the slot of a connection of from, which moves to
// to with its connection (see share.go), straight to to, as a dial in
// flight there: the slot is never free in between. b.mu must be held.
func (b *Budget) moveSlotLocked(from, to *member) {
	from.open--
	b.open--
	b.handOutLocked(to)
	b.shared.Add(1)
	b.forgetIfDoneLocked(from)
}

// handedOverLocked frees the slot of an idle connection of m that went,
// without its slot, to a pool of m's Share group that had one (handOver).
// b.mu must be held.
func (b *Budget) handedOverLocked(m *member) {
	m.open--
	b.open--
	b.shared.Add(1)
	b.checkOverLocked()
	if b.wanting.Load() > 0 {
		b.dirty.Store(true)
	}
	b.forgetIfDoneLocked(m)
}

// idleOfGroup takes, for m's pool, which is about to dial with a slot it
// holds, the least recently used idle connection that another pool of
// m's Share group may give up (one above its MinSize) and that has been
// idle reclaimAfter or longer, with its slot freed (handOver); ok is
// false if there is none. A connection idle for less is in use between
// its pool's requests: taking it would only make that pool take another,
// each move costing a Bind, where a dial is paid once. No lock may be
// held.
func (b *Budget) idleOfGroup(m *member) (conn any, createdAt time.Time, ok bool) {
	b.mu.Lock()
	var pools []budgetPool
	for _, o := range b.members {
		if o != m && !o.closed && o.shares(m) && o.open-o.closing > o.min {
			pools = append(pools, o.pool)
		}
	}
	b.mu.Unlock()
	if len(pools) == 0 {
		return nil, time.Time{}, false
	}
	type idle struct {
		pool  budgetPool
		since time.Time
	}
	var idles []idle
	now := time.Now()
	for _, p := range pools {
		if since, ok := p.oldestIdle(); ok && now.Sub(since) >= reclaimAfter {
			idles = append(idles, idle{p, since})
		}
	}
	slices.SortFunc(idles, func(x, y idle) int { return x.since.Compare(y.since) })
	for _, c := range idles {
		if conn, createdAt, ok := c.pool.handOver(); ok {
			return conn, createdAt, true
		}
	}
	return nil, time.Time{}, false
}

// freeLocked gives back the slot of a connection of m that is gone
// (closing says whether it went through closingLocked) or of a dial that
// failed or was never started. b.mu must be held.
func (b *Budget) freeLocked(m *member, closing bool) {
	if closing {
		m.closing--
	} else {
		b.dialing-- // a dial that failed, or a slot granted and not used
	}
	m.open--
	b.open--
	b.checkOverLocked()
	if b.wanting.Load() > 0 {
		b.dirty.Store(true)
	}
	b.forgetIfDoneLocked(m)
}

// contended reports whether a pool's release must ask the budget whether
// to yield its slot: a pool wants a slot, or the budget is over its limit.
// Read without b.mu, by the lock-free path.
func (b *Budget) contended() bool { return b.wanting.Load() != 0 || b.over.Load() }

func (b *Budget) checkOverLocked() {
	over := b.open > b.limit
	if over {
		b.dirty.Store(true)
	}
	b.over.Store(over)
}
