package pool

import (
	"sync"
	"sync/atomic"
	"time"
)

// clockTick is how often the coarse clock is refreshed while the pool is
// in use.
const clockTick = time.Millisecond

// clockDoubt is how far from a boundary (MaxLifetime, PingAfterIdle,
// MaxIdleTime) the coarse clock is trusted. Nearer than that, the real
// clock decides. The coarse clock lags by a tick or two when its refresh
// runs; it lags more only when its refresh goroutine cannot run at all,
// for example with GOMAXPROCS=1 and another goroutine computing without
// a pause, and Go's scheduler preempts such a goroutine after 10 ms.
const clockDoubt = 50 * time.Millisecond

// clock is a pool's clock: monotonic nanoseconds since epoch, which costs
// one clock read where time.Now costs two. Under testing/synctest it
// follows the bubble's fake time.
//
// The coarse reading is the acquire fast path's clock: an atomic load,
// where a real reading costs 20 to 40 ns on the machines we measure on,
// half of an Acquire-Release cycle. While the pool is in use, a timer
// refreshes it every clockTick; a tick that finds it unread since the last
// one stops the timer, and the next read reads the real clock and starts
// it again. An idle pool has no timer running. Only decisions far from
// their boundary (see clockDoubt) and wait statistics use it; every time
// the pool stores in an entry or compares with a waiter's deadline near
// its end comes from the real clock.
type clock struct {
	epoch time.Time

	cached  atomic.Int64 // the real clock at the last refresh
	running atomic.Bool  // the refresh timer is armed
	read    atomic.Bool  // read since the last refresh

	mu      sync.Mutex // serialises refreshes; protects the fields below
	refresh alarm
	stopped bool
	frozen  bool // tests only: refreshes keep the cached reading
}

func newClock() clock { return clock{epoch: time.Now()} }

// now reads the real clock.
func (c *clock) now() int64 { return int64(time.Since(c.epoch)) }

// time converts a reading to a time.Time.
func (c *clock) time(n int64) time.Time { return c.epoch.Add(time.Duration(n)) }

// coarse returns the clock as of its last refresh: behind the real clock,
// by a tick or two while the refresh goroutine runs.
func (c *clock) coarse() int64 {
	if !c.running.Load() {
		return c.start()
	}
	if !c.read.Load() {
		c.read.Store(true)
	}
	return c.cached.Load()
}

// start reads the real clock and starts the refresh timer.
func (c *clock) start() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.frozen {
		now = c.cached.Load()
	}
	c.cached.Store(now)
	if !c.running.Load() && !c.stopped {
		c.read.Store(true)
		if c.refresh.fn == nil {
			c.refresh.fn = c.tick
		}
		c.refresh.set(now+int64(clockTick), now)
		c.running.Store(true)
	}
	return now
}

// tick is the refresh timer's callback.
func (c *clock) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh.fired()
	if c.stopped {
		return
	}
	now := c.now()
	if !c.frozen {
		c.cached.Store(now)
	}
	if !c.read.Swap(false) {
		c.running.Store(false)
		return
	}
	c.refresh.set(now+int64(clockTick), now)
}

// stop stops the refresh timer for good (the pool is closed). Later
// coarse readings read the real clock.
func (c *clock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.refresh.stop()
	c.running.Store(false)
}

// alarm is a timer that calls fn at the earliest of the times it is set
// for: the one shape of every deadline timer here (the AcquireTimeout
// timer, the retry timer, the budget's wake timer, the coarse clock's
// refresh). Its owner protects it with a lock of its own, gives it its
// callback (fn) before the first set, and the callback calls fired first,
// under that lock. Its timer is made on first use.
type alarm struct {
	fn    func()
	t     *time.Timer
	at    int64 // when it fires, valid while armed
	armed bool
}

// set makes a call fn no later than at; now is a reading of the same
// clock as at. An alarm armed for at or earlier is left as it is. (fn is
// a field, not an argument: a method value made at each call would
// allocate.)
func (a *alarm) set(at, now int64) {
	if a.armed && a.at <= at {
		return
	}
	d := time.Duration(at - now)
	if a.t == nil {
		a.t = time.AfterFunc(d, a.fn)
	} else {
		a.t.Reset(d)
	}
	a.at, a.armed = at, true
}

// fired records that a's callback runs: a later set arms it again.
func (a *alarm) fired() { a.armed = false }

// stop disarms a for good, if it was ever armed.
func (a *alarm) stop() {
	if a.t != nil {
		a.t.Stop()
	}
	a.armed = false
}

// addSat returns t+d, saturated at the largest reading: a user's duration
// near math.MaxInt64 must not wrap around into the past.
func addSat(t int64, d time.Duration) int64 {
	if d > 0 && t > maxReading-int64(d) {
		return maxReading
	}
	return t + int64(d)
}

// maxReading is the latest reading there is: "never".
const maxReading = 1<<63 - 1
