package main

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/deepanalyze/pool/postgres"
)

// do runs fn on a connection of tenant's source, as a strategy does.
type do func(ctx context.Context, tenant int, fn func(*postgres.Conn) error) error

// tally counts a run's requests per tenant and per window of window.
type tally struct {
	mu       sync.Mutex
	start    time.Time
	end      time.Time // of the open loop's arrivals; zero for a closed loop
	window   time.Duration
	arrivals [][]int // [window][tenant]
	served   [][]int
	failed   int
	timedOut int
	waits    []time.Duration // of served requests: from arrival to the work's start
	example  error           // the first failure
	crossed  int             // requests that saw another tenant's row or setting
	// completed counts the requests served whose work ended between
	// start and end: the throughput of the run, which counting by arrival
	// would overstate (a request that arrived in the run may be served in
	// the drain after it) and the warm-up's backlog would too.
	completed int
	// work is a request's work on its connection; nil for hold.
	work     func(ctx context.Context, c *postgres.Conn, tenant int, d time.Duration) error
	inFlight sync.WaitGroup
}

func newTally(tenants int, d, window time.Duration) *tally {
	n := int(math.Ceil(float64(d) / float64(window)))
	t := &tally{start: time.Now(), window: window}
	for range n + 1 {
		t.arrivals = append(t.arrivals, make([]int, tenants))
		t.served = append(t.served, make([]int, tenants))
	}
	return t
}

// slot is the window of a request that arrived at at, or -1 for one that
// arrived before the tally started (during a warm-up).
func (t *tally) slot(at time.Time) int {
	if at.Before(t.start) {
		return -1
	}
	return min(int(at.Sub(t.start)/t.window), len(t.arrivals)-1)
}

// request runs one request of tenant through d, with a deadline of
// timeout, holding the connection for a drawn hold.
func (t *tally) request(ctx context.Context, d do, tenant int, timeout, holdFor time.Duration) {
	arrived := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var started time.Time
	err := d(ctx, tenant, func(c *postgres.Conn) error {
		started = time.Now()
		// The deadline bounds the wait for a connection; once the work
		// has started it runs to its end, as a handler's query does when
		// its deadline leaves room for it. (pgx closes a connection whose
		// query a deadline cuts short: in an overload every connection
		// would be redialled, and the run would measure that instead.)
		if t.work != nil {
			return t.work(context.WithoutCancel(ctx), c, tenant, holdFor)
		}
		return hold(context.WithoutCancel(ctx), c, holdFor)
	})
	finished := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil && !finished.Before(t.start) && finished.Before(t.end) {
		t.completed++
	}
	w := t.slot(arrived)
	if w < 0 {
		return
	}
	t.arrivals[w][tenant]++
	switch {
	case err == nil:
		t.served[w][tenant]++
		t.waits = append(t.waits, started.Sub(arrived))
	case errors.Is(err, errCrossed):
		t.crossed++
		t.failed++
		if t.example == nil {
			t.example = err
		}
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		t.timedOut++
	default:
		t.failed++
		if t.example == nil {
			t.example = err
		}
	}
}

func (t *tally) totals() (arrivals, served int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.arrivals {
		for i := range t.arrivals[w] {
			arrivals += t.arrivals[w][i]
			served += t.served[w][i]
		}
	}
	return arrivals, served
}

// throughput is the requests served per second of the run, counted by
// when their work ended.
func (t *tally) throughput() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return float64(t.completed) / t.end.Sub(t.start).Seconds()
}

// waitQuantile returns the q-quantile of the served requests' waits.
func (t *tally) waitQuantile(q float64) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waits) == 0 {
		return 0
	}
	w := slices.Clone(t.waits)
	slices.Sort(w)
	return w[min(int(q*float64(len(w))), len(w)-1)]
}

// fairness returns, over the windows that lie wholly in the run, the
// lowest Jain's index of served ÷ fair share among the backlogged tenants,
// and the lowest such ratio of any backlogged tenant. A window's fair
// share is the max-min share of what was served in it, given what each
// tenant asked (all weights 1); a tenant is backlogged when it asked more
// than that share.
func (t *tally) fairness(whole int) (jain, lowest float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	jain, lowest = 1, math.Inf(1)
	for w := range min(whole, len(t.served)) {
		total := 0
		for _, s := range t.served[w] {
			total += s
		}
		share := fairShare(t.arrivals[w], float64(total))
		var sum, sumSq float64
		n := 0
		for i, a := range t.arrivals[w] {
			if float64(a) <= share*1.05 {
				continue
			}
			x := float64(t.served[w][i]) / share
			sum, sumSq, n = sum+x, sumSq+x*x, n+1
			lowest = min(lowest, x)
		}
		if n > 0 {
			jain = min(jain, sum*sum/(float64(n)*sumSq))
		}
	}
	if math.IsInf(lowest, 1) {
		lowest = 0
	}
	return jain, lowest
}

// fairShare is the level L at which the demands, each capped at L, sum to
// total: the max-min fair share.
func fairShare(demand []int, total float64) float64 {
	d := make([]float64, len(demand))
	for i, a := range demand {
		d[i] = float64(a)
	}
	slices.Sort(d)
	left, n := total, float64(len(d))
	for i, v := range d {
		if v*(n-float64(i)) >= left {
			return left / (n - float64(i))
		}
		left -= v
	}
	return math.Inf(1) // every demand met
}

// openLoop offers Poisson arrivals at rates (per tenant, per second) for
// warm and then dur, each request run through do with a deadline of
// timeout, and waits for them all. t counts from the end of warm: the
// pools have dialled what they keep by then (a PostgreSQL connection
// costs a backend process, so a cold start is a storm of its own).
func openLoop(ctx context.Context, t *tally, d do, rates []float64, warm, dur, timeout time.Duration) {
	r := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	t.mu.Lock()
	t.start = last.Add(warm)
	t.end = t.start.Add(dur)
	end := t.end
	t.mu.Unlock()
	for now := last; now.Before(end) && ctx.Err() == nil; now = <-tick.C {
		dt := now.Sub(last).Seconds()
		last = now
		for tenant, rate := range rates {
			for range poisson(r, rate*dt) {
				h := drawHold(r)
				t.inFlight.Go(func() { t.request(ctx, d, tenant, timeout, h) })
			}
		}
	}
	t.inFlight.Wait()
}

// closedLoop runs workers goroutines for tenant, each sending its next
// request when the last one ends (after think), until stop is closed.
func closedLoop(ctx context.Context, t *tally, d do, tenant, workers int, think, timeout time.Duration, stop <-chan struct{}, seed uint64) {
	for w := range workers {
		t.inFlight.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				t.request(ctx, d, tenant, timeout, drawHold(r))
				if think > 0 {
					time.Sleep(think) // the client's own pause between requests
				}
			}
		})
	}
}

// poisson draws from a Poisson distribution of mean m (Knuth's method,
// in steps of 20 for large means).
func poisson(r *rand.Rand, m float64) int {
	n := 0
	for m > 20 {
		n += poisson(r, 20)
		m -= 20
	}
	l, p := math.Exp(-m), 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return n
		}
		n++
	}
}
