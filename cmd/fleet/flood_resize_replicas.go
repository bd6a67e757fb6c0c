package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// flood: 20 interactive tenants and 5 batch tenants at 10 times the
// budget, against the same 20 without the flood.
func flood(ctx context.Context, s *server, o options) (*report, error) {
	r := &report{
		title: fmt.Sprintf("Batch flood: 20 interactive tenants (2 clients each, 20 ms between requests, MinSize 1 on the budget) and 5 batch tenants with 80 clients each (10 times the %d connections), %v",
			budget, o.seconds) + " after 2 s of warm-up",
		header: []string{"run", "interactive wait p50", "interactive wait p99", "interactive timed out", "batch served req/s", "server connections, max"},
		series: map[string][]sample{},
	}
	const interactiveN, batchN = 20, 5
	for _, run := range []struct {
		name   string
		budget bool
		flood  bool
	}{{"Budget(40), no flood", true, false}, {"Budget(40), flood", true, true}, {"semaphore(40), no flood", false, false}, {"semaphore(40), flood", false, true}} {
		if err := s.limit(ctx, roleLimit); err != nil {
			return nil, err
		}
		s.settle(ctx)
		var st *strategy
		var err error
		if run.budget {
			st, err = s.withBudget(interactiveN+batchN, budget, func(i int, cfg *pool.Config) {
				if i < interactiveN {
					cfg.MinSize = 1
				}
			})
		} else {
			st, err = s.semaphored(interactiveN+batchN, budget)
		}
		if err != nil {
			return nil, err
		}
		stopSamples := s.sampler(ctx)
		ti := newTally(interactiveN+batchN, o.seconds+10*time.Second, time.Hour)
		tb := newTally(interactiveN+batchN, o.seconds+10*time.Second, time.Hour)
		ti.start = time.Now().Add(warmUp) // count once the pools are warm
		tb.start = ti.start
		stop := make(chan struct{})
		ictx := pool.WithPriority(ctx, pool.PriorityInteractive)
		bctx := pool.WithPriority(ctx, pool.PriorityBatch)
		for i := range interactiveN {
			closedLoop(ictx, ti, st.do, i, 2, 20*time.Millisecond, 5*time.Second, stop, uint64(i))
		}
		if run.flood {
			for i := interactiveN; i < interactiveN+batchN; i++ {
				closedLoop(bctx, tb, st.do, i, 8*budget/batchN*5/4, 0, 5*time.Second, stop, uint64(i))
			}
		}
		time.Sleep(warmUp + o.seconds)
		close(stop)
		ti.inFlight.Wait()
		tb.inFlight.Wait()
		samples := stopSamples()
		st.close()
		ia, _ := ti.totals()
		_, bs := tb.totals()
		r.rows = append(r.rows, []string{run.name, ms(ti.waitQuantile(0.5)), ms(ti.waitQuantile(0.99)), pct(ti.timedOut, ia),
			fmt.Sprintf("%.0f", float64(bs)/o.seconds.Seconds()), fmt.Sprint(maxOf(samples))})
		if ti.example != nil {
			r.notes = append(r.notes, fmt.Sprintf("%s: an interactive failure: %v", run.name, ti.example))
		}
	}
	return r, ctx.Err()
}

// resize: the skew load on a Budget whose limit goes 40, 10, 60.
func resize(ctx context.Context, s *server, o options) (*report, error) {
	step := min(5*time.Second, o.seconds)
	limits := []int{40, 10, 60}
	rates := zipf(tenantsN, 1.1)
	for i := range rates {
		rates[i] *= 2 * capacity(budget)
	}
	r := &report{
		title:  fmt.Sprintf("Live resize: the skew load on a Budget whose limit goes %v, %v each", limits, step),
		header: []string{"limit", "server connections ≤ limit after", "server connections, max once under", "served req/s"},
		series: map[string][]sample{},
	}
	if err := s.limit(ctx, roleLimit); err != nil {
		return nil, err
	}
	s.settle(ctx)
	st, err := s.withBudget(tenantsN, limits[0], nil)
	if err != nil {
		return nil, err
	}
	stopSamples := s.sampler(ctx)
	t := newTally(tenantsN, step*time.Duration(len(limits)), step)
	var wg sync.WaitGroup
	changedAt := make([]time.Duration, len(limits)) // since the samples began
	changedAt[0] = warmUp
	start := time.Now().Add(warmUp)
	wg.Go(func() {
		for i := 1; i < len(limits); i++ {
			time.Sleep(time.Until(start.Add(step * time.Duration(i))))
			changedAt[i] = time.Since(start) + warmUp
			if err := st.budget.SetLimit(limits[i]); err != nil {
				panic(err)
			}
		}
	})
	began := time.Now()
	openLoop(ctx, t, st.do, rates, warmUp, step*time.Duration(len(limits)), time.Second)
	drained := time.Since(began) - warmUp - step*time.Duration(len(limits))
	wg.Wait()
	samples := stopSamples()
	st.close()
	for i, lim := range limits {
		from, to := changedAt[i], warmUp+step*time.Duration(i+1)
		var under time.Duration = -1
		peak := 0
		for _, sm := range samples {
			if sm.at < from || sm.at >= to {
				continue
			}
			if under < 0 && sm.n <= lim {
				under = sm.at - from
			}
			if under >= 0 {
				peak = max(peak, sm.n)
			}
		}
		served := 0
		for _, n := range t.served[i] {
			served += n
		}
		u := "never"
		if under >= 0 {
			u = ms(under) + " (sampled every 100 ms)"
		}
		r.rows = append(r.rows, []string{fmt.Sprint(lim), u, fmt.Sprint(peak), fmt.Sprintf("%.0f", float64(served)/step.Seconds())})
		r.limits = append(r.limits, sample{from, lim}, sample{to, lim})
	}
	r.notes = append(r.notes, fmt.Sprintf("every request ended (served, or at its 1 s deadline) %v after the load stopped: no waiter lost or stuck; %s timed out, %s failed",
		drained.Round(time.Millisecond), pct(t.timedOut, sum(t.arrivals)), pct(t.failed, sum(t.arrivals))))
	if t.example != nil {
		r.notes = append(r.notes, fmt.Sprintf("a failure: %v", t.example))
	}
	r.series["Budget, SetLimit 40 → 10 → 60"] = samples
	return r, ctx.Err()
}

func sum(a [][]int) int {
	n := 0
	for _, row := range a {
		for _, v := range row {
			n += v
		}
	}
	return n
}

// replicaReport is what one replica process prints.
type replicaReport struct {
	Arrivals, Served, Failed, TimedOut int
	Refused, RefusedFirstSecond        int64
	Example                            string
	Seconds                            float64
	Rate                               float64 // served per second, by when the work ended
}

const replicas = 4

// replicasScenario: 4 processes, each with 100 Adaptive tenant pools on a
// budget of its own, behind a role limited to 40 connections.
func replicasScenario(ctx context.Context, s *server, o options) (*report, error) {
	r := &report{
		title: fmt.Sprintf("Replicas: %d processes, each with %d Adaptive tenant pools (MaxSize 20) on a Budget(40) of its own, Zipf(1.1) demand totalling 80 %% of what 40 connections serve, 1 s deadline, behind a role whose CONNECTION LIMIT is 40, %v",
			replicas, tenantsN, o.seconds),
		header: []string{"process", "requests", "served", "served req/s", "served ÷ capacity", "failed", "timed out", "refused dials/s after the first second"},
		series: map[string][]sample{},
	}
	if err := s.limit(ctx, budget); err != nil {
		return nil, err
	}
	s.settle(ctx)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	stopSamples := s.sampler(ctx)
	outs := make([]bytes.Buffer, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		cmd := exec.CommandContext(ctx, exe, "-replica", "-dsn", o.dsn, "-seconds", o.seconds.String())
		cmd.Env = append(os.Environ(), "FLEET_ROLE="+s.role)
		cmd.Stdout, cmd.Stderr = &outs[i], os.Stderr
		wg.Go(func() { errs[i] = cmd.Run() })
	}
	wg.Wait()
	samples := stopSamples()
	var total replicaReport
	for i := range replicas {
		if errs[i] != nil {
			return nil, fmt.Errorf("replica %d: %w", i, errs[i])
		}
		var rep replicaReport
		if err := json.Unmarshal(outs[i].Bytes(), &rep); err != nil {
			return nil, fmt.Errorf("replica %d: %w: %q", i, err, outs[i].String())
		}
		r.rows = append(r.rows, []string{fmt.Sprint(i + 1), fmt.Sprint(rep.Arrivals), fmt.Sprint(rep.Served), fmt.Sprintf("%.0f", rep.Rate), "", pct(rep.Failed, rep.Arrivals), pct(rep.TimedOut, rep.Arrivals),
			fmt.Sprintf("%.1f", float64(rep.Refused-rep.RefusedFirstSecond)/max(rep.Seconds-1, 1))})
		total.Arrivals += rep.Arrivals
		total.Served += rep.Served
		total.Rate += rep.Rate
		total.Failed += rep.Failed
		total.TimedOut += rep.TimedOut
		if rep.Example != "" {
			r.notes = append(r.notes, fmt.Sprintf("replica %d: a failure: %s", i+1, rep.Example))
		}
	}
	r.rows = append(r.rows, []string{"all", fmt.Sprint(total.Arrivals), fmt.Sprint(total.Served), fmt.Sprintf("%.0f", total.Rate), fmt.Sprintf("%.2f", total.Rate/capacity(budget)), pct(total.Failed, total.Arrivals), pct(total.TimedOut, total.Arrivals), ""})
	r.notes = append(r.notes, fmt.Sprintf("server connections of the role, max over the run: %d (limit %d)", maxOf(samples), budget))
	r.series["4 replicas, role limit 40"] = samples
	return r, ctx.Err()
}

// runReplica is one replica process of the replicas scenario.
func runReplica(ctx context.Context, o options) (replicaReport, error) {
	var rep replicaReport
	cfg, err := parseRoleDSN(o.dsn, os.Getenv("FLEET_ROLE"))
	if err != nil {
		return rep, err
	}
	s := &server{cfg: cfg, share: true}
	st, err := s.withBudget(tenantsN, budget, func(_ int, c *pool.Config) {
		c.MaxSize = 20
		c.Adaptive = true
	})
	if err != nil {
		return rep, err
	}
	defer st.close()
	rates := zipf(tenantsN, 1.1)
	for i := range rates {
		rates[i] *= 0.8 * capacity(budget) / replicas
	}
	t := newTally(tenantsN, o.seconds, time.Hour)
	var firstSecond atomic.Int64
	time.AfterFunc(time.Second, func() { firstSecond.Store(st.budget.Stats().Refused) })
	start := time.Now()
	openLoop(ctx, t, st.do, rates, warmUp, o.seconds, time.Second)
	rep.RefusedFirstSecond = firstSecond.Load()
	rep.Seconds = time.Since(start).Seconds()
	rep.Arrivals, rep.Served = t.totals()
	rep.Rate = t.throughput()
	rep.Failed, rep.TimedOut = t.failed, t.timedOut
	rep.Refused = st.budget.Stats().Refused
	if t.example != nil {
		rep.Example = t.example.Error()
	}
	return rep, nil
}

// parseRoleDSN is dsn, connecting as role.
func parseRoleDSN(dsn, role string) (*pgx.ConnConfig, error) {
	if role == "" {
		return nil, errors.New("FLEET_ROLE is not set: -replica is run by the replicas scenario")
	}
	cfg, err := postgres.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = role, ""
	cfg.RuntimeParams["application_name"] = "fleet"
	return cfg, nil
}
