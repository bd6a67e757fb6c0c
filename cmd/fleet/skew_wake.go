package main

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// strategy is one way of putting tenant pools in front of the server.
type strategy struct {
	name   string
	pools  []*pool.Pool[*postgres.Conn]
	budget *pool.Budget
	sem    *semaphore.Weighted
	do     do
}

func (st *strategy) close() { closeAll(st.pools) }

// viaPools runs each request on its tenant's pool.
func viaPools(ps []*pool.Pool[*postgres.Conn]) do {
	return func(ctx context.Context, tenant int, fn func(*postgres.Conn) error) error {
		return ps[tenant].With(ctx, fn)
	}
}

// withBudget: the tenant pools share a Budget of limit.
func (s *server) withBudget(n, limit int, edit func(i int, cfg *pool.Config)) (*strategy, error) {
	b, err := pool.NewBudget(limit)
	if err != nil {
		return nil, err
	}
	ps, err := s.tenants(n, func(i int, cfg *pool.Config) {
		cfg.Budget = b
		if edit != nil {
			edit(i, cfg)
		}
	})
	if err != nil {
		return nil, err
	}
	return &strategy{name: fmt.Sprintf("Budget(%d)", limit), pools: ps, budget: b, do: viaPools(ps)}, nil
}

// plain: the tenant pools, each on its own (MaxSize 10).
func (s *server) plain(n int) (*strategy, error) {
	ps, err := s.tenants(n, func(int, *pool.Config) {})
	if err != nil {
		return nil, err
	}
	return &strategy{name: "plain pools", pools: ps, do: viaPools(ps)}, nil
}

// semaphored: one FIFO semaphore of limit in front of the plain pools.
func (s *server) semaphored(n, limit int) (*strategy, error) {
	ps, err := s.tenants(n, func(int, *pool.Config) {})
	if err != nil {
		return nil, err
	}
	sem := semaphore.NewWeighted(int64(limit))
	return &strategy{name: fmt.Sprintf("semaphore(%d)", limit), pools: ps, sem: sem, do: func(ctx context.Context, tenant int, fn func(*postgres.Conn) error) error {
		if err := sem.Acquire(ctx, 1); err != nil {
			return err
		}
		defer sem.Release(1)
		return ps[tenant].With(ctx, fn)
	}}, nil
}

// roleLimit is the role's CONNECTION LIMIT for the scenarios that do not
// set their own: above the budget, so that only the strategy bounds the
// run, and well below the server's max_connections of 100.
const roleLimit = 64

// report is what a scenario found: a Markdown table, notes, and series
// for the chart.
type report struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
	series map[string][]sample
	limits []sample // a limit that changes over the run, for the chart
}

func pct(n, of int) string {
	if of == 0 {
		return "0 %"
	}
	return fmt.Sprintf("%.2f %%", 100*float64(n)/float64(of))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// skew: 100 tenants with Zipf(1.1) demand at twice the capacity of the
// budget, through each strategy, the tenants laid out as l.
func skew(ctx context.Context, s *server, o options, l layout) (*report, error) {
	if err := s.useLayout(ctx, l, tenantsN); err != nil {
		return nil, err
	}
	defer s.useLayout(ctx, layoutOne, 0)
	rates := zipf(tenantsN, 1.1)
	offered := loadFactor * capacity(budget)
	for i := range rates {
		rates[i] *= offered
	}
	window := min(10*time.Second, o.seconds)
	r := &report{
		title: fmt.Sprintf("Skew, %v: %d tenants, Zipf(1.1) demand of %.0f req/s (%.1f times the %.0f req/s that %d connections serve at the mean hold of %v), lognormal holds (median %v), 2 s deadline, %v after 2 s of warm-up, role limit %d",
			l, tenantsN, offered, loadFactor, capacity(budget), budget, meanHold().Round(100*time.Microsecond), medianHold, o.seconds, roleLimit),
		header: []string{"strategy", "server connections, max", "served req/s", "served ÷ capacity", "timed out", "failed", "saw another tenant's row", "Jain's index (lowest window)", "lowest backlogged tenant ÷ share", "p99 wait", "connections opened/s after warm-up", "moves/s", "refused dials/s"},
		series: map[string][]sample{},
	}
	builders := []func() (*strategy, error){
		func() (*strategy, error) { return s.withBudget(tenantsN, budget, nil) },
	}
	if l == layoutSchemas {
		builders = append(builders, func() (*strategy, error) {
			s.share = false
			defer func() { s.share = true }()
			st, err := s.withBudget(tenantsN, budget, nil)
			if st != nil {
				st.name += ", no sharing"
			}
			return st, err
		})
	}
	builders = append(builders, func() (*strategy, error) { return s.plain(tenantsN) })
	if l == layoutSchemas {
		builders = append(builders, func() (*strategy, error) { return s.semaphored(tenantsN, budget) })
	}
	for _, build := range builders {
		if err := s.limit(ctx, roleLimit); err != nil {
			return nil, err
		}
		s.settle(ctx)
		st, err := build()
		if err != nil {
			return nil, err
		}
		stop := s.sampler(ctx)
		t := newTally(tenantsN, o.seconds, window)
		t.work = s.work
		opened := func() (created, moved int64) {
			for _, p := range st.pools {
				ps := p.Stats()
				created += ps.Created
				moved += ps.MovedIn
			}
			return created, moved
		}
		var warmCreated, warmMoved atomic.Int64
		warm := time.AfterFunc(warmUp, func() {
			c, m := opened()
			warmCreated.Store(c)
			warmMoved.Store(m)
		})
		openLoop(ctx, t, st.do, rates, warmUp, o.seconds, 2*time.Second)
		warm.Stop()
		samples := stop()
		created, moved := opened()
		var refused int64
		for _, p := range st.pools {
			refused += p.Stats().Refused
		}
		st.close()
		secs := (o.seconds + warmUp).Seconds()
		arr, _ := t.totals()
		jain, lowest := t.fairness(int(o.seconds / window))
		rate := t.throughput()
		r.rows = append(r.rows, []string{st.name, fmt.Sprint(maxOf(samples)),
			fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.2f", rate/capacity(budget)),
			pct(t.timedOut, arr), pct(t.failed, arr), fmt.Sprint(t.crossed),
			fmt.Sprintf("%.2f", jain), fmt.Sprintf("%.2f", lowest), ms(t.waitQuantile(0.99)),
			fmt.Sprintf("%.1f", float64(created-warmCreated.Load())/o.seconds.Seconds()),
			fmt.Sprintf("%.0f", float64(moved-warmMoved.Load())/o.seconds.Seconds()),
			fmt.Sprintf("%.0f", float64(refused)/secs)})
		if t.example != nil {
			r.notes = append(r.notes, fmt.Sprintf("%s: a failure: %v", st.name, t.example))
		}
		r.series[fmt.Sprintf("%s (%v)", st.name, l)] = samples
	}
	return r, ctx.Err()
}

// wake: 99 tenants saturate the budget; tenant 100, with MinSize 2,
// starts, five times: the time from its start to its first connection.
func wake(ctx context.Context, s *server, o options) (*report, error) {
	r := &report{
		title:  fmt.Sprintf("Wake-up: 99 tenants, 4 clients each with no pause, saturate %d connections; tenant 100 (MinSize 2) starts and sends one request, 5 times", budget),
		header: []string{"strategy", "first connection, median", "first connection, max", "server connections, max"},
		series: map[string][]sample{},
	}
	firstConnectionTimeout = max(2*time.Second, o.seconds/2)
	for _, withBudget := range []bool{true, false} {
		if err := s.limit(ctx, roleLimit); err != nil {
			return nil, err
		}
		s.settle(ctx)
		var st *strategy
		var err error
		if withBudget {
			st, err = s.withBudget(tenantsN-1, budget, nil)
		} else {
			st, err = s.semaphored(tenantsN-1, budget)
		}
		if err != nil {
			return nil, err
		}
		stopSamples := s.sampler(ctx)
		t := newTally(tenantsN, o.seconds+10*time.Second, time.Hour)
		stop := make(chan struct{})
		for i := range tenantsN - 1 {
			closedLoop(ctx, t, st.do, i, 4, 0, 5*time.Second, stop, uint64(i))
		}
		time.Sleep(time.Second) // saturated
		var firsts []time.Duration
		var failures []string
		for range 5 {
			cfg := pool.DefaultConfig()
			cfg.Name, cfg.MinSize, cfg.MaxSize, cfg.PingAfterIdle = "t99", 2, 10, 0
			cfg.Budget = st.budget
			start := time.Now()
			p, err := pool.New(postgres.Factory(s.cfg, postgres.Options{}), cfg)
			if err != nil {
				close(stop)
				return nil, err
			}
			first, err := firstConnection(ctx, st, p, start)
			_ = p.Close()
			if err != nil {
				failures = append(failures, err.Error())
				first = firstConnectionTimeout
			}
			firsts = append(firsts, first)
			time.Sleep(o.seconds / 10)
		}
		close(stop)
		t.inFlight.Wait()
		samples := stopSamples()
		st.close()
		sorted := append([]time.Duration(nil), firsts...)
		sortDurations(sorted)
		r.rows = append(r.rows, []string{st.name, wakeTime(sorted[len(sorted)/2]), wakeTime(sorted[len(sorted)-1]), fmt.Sprint(maxOf(samples))})
		if len(failures) > 0 {
			r.notes = append(r.notes, fmt.Sprintf("%s: %d of 5 starts got no connection in %v: %s", st.name, len(failures), firstConnectionTimeout, failures[0]))
		}
	}
	return r, ctx.Err()
}

// firstConnectionTimeout bounds the wait for tenant 100's first
// connection: half a run, and at least 2 s. Set by wake.
var firstConnectionTimeout = 10 * time.Second

func wakeTime(d time.Duration) string {
	if d >= firstConnectionTimeout {
		return "none in " + firstConnectionTimeout.String()
	}
	return ms(d)
}

// firstConnection sends tenant 100's first request through st, on p, and
// returns how long after start its work began.
func firstConnection(ctx context.Context, st *strategy, p *pool.Pool[*postgres.Conn], start time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, firstConnectionTimeout)
	defer cancel()
	var first time.Duration
	work := func(c *postgres.Conn) error {
		first = time.Since(start)
		return hold(context.WithoutCancel(ctx), c, medianHold)
	}
	var err error
	if st.budget != nil {
		err = p.With(ctx, work)
	} else { // behind the semaphore, as every other tenant is
		err = st.semaphoreDo(ctx, p, work)
	}
	if err != nil {
		return 0, fmt.Errorf("tenant 100's first request: %w", err)
	}
	return first, nil
}

// semaphoreDo runs fn on p behind st's semaphore.
func (st *strategy) semaphoreDo(ctx context.Context, p *pool.Pool[*postgres.Conn], fn func(*postgres.Conn) error) error {
	if err := st.sem.Acquire(ctx, 1); err != nil {
		return err
	}
	defer st.sem.Release(1)
	return p.With(ctx, fn)
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

// warmUp is how long the open-loop scenarios run before they count.
const warmUp = 2 * time.Second

// loadFactor is the skew scenario's demand, in multiples of capacity.
var loadFactor = 2.0
