package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/deepanalyze/pool"
)

// mode is one way of serving requests: through the pool, or connecting
// per request.
type mode struct {
	name string
	// do serves one request and returns how long it waited for its
	// connection (the dial, or the pool's acquire).
	do     func(ctx context.Context, id string, n int) (time.Duration, error)
	opened func() int64 // connections opened so far
}

// backend is a data source with both modes over it.
type backend struct {
	describe string
	ids      []string
	modes    []mode // unpooled first
	close    func() error
}

// result is one load at one concurrency level in one mode.
type result struct {
	mode     string
	clients  int
	requests int64
	errors   int64
	elapsed  time.Duration
	p50, p99 time.Duration
	max      time.Duration
	opened   int64
	firstErr error
	waits    []time.Duration // each request's wait for its connection, sorted
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func poolConfig(o options) pool.Config {
	cfg := pool.DefaultConfig()
	cfg.MaxSize = o.poolSize
	cfg.MinSize = 1
	cfg.AcquireTimeout = 10 * time.Second
	return cfg
}

// embeddedBackend starts the embedded TLS data server and registers
// o.sources databases on it.
func embeddedBackend(ctx context.Context, o options) (*backend, error) {
	const secret = "poolbench-secret"
	srv, clientTLS, err := startDataServer(secret)
	if err != nil {
		return nil, fmt.Errorf("start embedded server: %w", err)
	}
	var opened atomic.Int64
	reg := pool.NewRegistry[querier]()
	b := &backend{describe: "an embedded TLS server on loopback, with an authentication round trip per connection"}
	dialers := map[string]*dialer{}
	for i := range o.sources {
		id := fmt.Sprintf("source-%d", i+1)
		d := &dialer{addr: srv.Addr(), database: id, secret: []byte(secret), tlsCfg: clientTLS, opened: &opened}
		dialers[id] = d
		b.ids = append(b.ids, id)
		factory := func(ctx context.Context) (querier, error) { return d.dial(ctx) }
		if err := reg.Register(ctx, id, factory, poolConfig(o)); err != nil {
			srv.Close()
			return nil, err
		}
	}
	b.modes = bothModes(reg, func(ctx context.Context, id string) (querier, error) { return dialers[id].dial(ctx) }, opened.Load)
	b.close = func() error {
		err := reg.Shutdown(context.Background())
		if e := srv.Close(); err == nil {
			err = e
		}
		return err
	}
	return b, nil
}

// bothModes serves requests connecting per request with dial, and through
// reg; opened counts the connections dialled either way.
func bothModes(reg *pool.PooledRegistry[querier], dial func(ctx context.Context, id string) (querier, error), opened func() int64) []mode {
	return []mode{
		{
			name: "unpooled",
			do: func(ctx context.Context, id string, n int) (time.Duration, error) {
				t0 := time.Now()
				c, err := dial(ctx, id)
				wait := time.Since(t0)
				if err != nil {
					return wait, err
				}
				defer c.Close()
				return wait, check(c.Query(ctx, n))(n)
			},
			opened: opened,
		},
		{
			name: "pool",
			do: func(ctx context.Context, id string, n int) (time.Duration, error) {
				t0 := time.Now()
				var wait time.Duration
				err := reg.With(ctx, id, func(c querier) error {
					wait = time.Since(t0)
					return check(c.Query(ctx, n))(n)
				})
				return wait, err
			},
			opened: opened,
		},
	}
}

// check turns a query's answer into an error if it is wrong.
func check(v int, err error) func(n int) error {
	return func(n int) error {
		if err != nil {
			return err
		}
		if v != 2*n {
			return fmt.Errorf("query %d: got %d, want %d", n, v, 2*n)
		}
		return nil
	}
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	var (
		b   *backend
		err error
	)
	if o.dsn != "" {
		b, err = postgresBackend(ctx, o)
	} else {
		b, err = embeddedBackend(ctx, o)
	}
	if err != nil {
		return err
	}
	defer b.close()
	fmt.Fprintf(stdout, "poolbench: %s; %d sources, pool size %d, %v per run, concurrency %v\n\n",
		b.describe, len(b.ids), o.poolSize, o.duration, o.levels)

	steps := int64(len(o.levels) * len(b.modes) * int(o.duration/(100*time.Millisecond)))
	var bar *progressbar.ProgressBar
	if o.progress && isTerminal(stderr) {
		bar = progressbar.NewOptions64(steps,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	var results []result
	for _, c := range o.levels {
		for _, m := range b.modes {
			if bar != nil {
				bar.Describe(fmt.Sprintf("%-8s c=%-4d", m.name, c))
			}
			r := load(ctx, m, b.ids, c, o.duration, bar)
			results = append(results, r)
			if bar == nil { // in a log: one line per finished run
				fmt.Fprintf(stderr, "poolbench: %s, %s: %.0f req/s, p99 %s\n", m.name, plural(c, "client"), r.rps(), round(r.p99))
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	printTable(stdout, results)
	if o.out != "" {
		if err := writeCharts(o.out, b.describe, results); err != nil {
			return fmt.Errorf("write charts: %w", err)
		}
		main, wait := chartPaths(o.out)
		fmt.Fprintf(stdout, "\ncharts written to %s (throughput and latency) and %s (wait for a connection)\n", relative(main), relative(wait))
	}
	for _, r := range results {
		if r.errors > 0 {
			fmt.Fprintf(stdout, "first error (%s, c=%d): %v\n", r.mode, r.clients, r.firstErr)
		}
	}
	return nil
}

// load runs clients goroutines, each sending requests to random source IDs
// back to back for d.
func load(ctx context.Context, m mode, ids []string, clients int, d time.Duration, bar *progressbar.ProgressBar) result {
	opened0 := m.opened()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		waits    []time.Duration
		errs     atomic.Int64
		firstErr atomic.Pointer[error]
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			localWaits := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				id := ids[rand.IntN(len(ids))]
				n := rand.IntN(1 << 20)
				t0 := time.Now()
				// A request has its own deadline; the run's end does not
				// cut it short, so that every counted request is whole.
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				wait, err := m.do(rctx, id, n)
				rcancel()
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				local = append(local, time.Since(t0))
				localWaits = append(localWaits, wait)
			}
			mu.Lock()
			lat = append(lat, local...)
			waits = append(waits, localWaits...)
			mu.Unlock()
		})
	}
	if bar != nil {
		tick := time.NewTicker(100 * time.Millisecond)
		for done := false; !done; {
			select {
			case <-tick.C:
				_ = bar.Add(1)
			case <-ctx.Done():
				done = true
			}
		}
		tick.Stop()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	slices.Sort(waits)
	r := result{mode: m.name, clients: clients, requests: int64(len(lat)), errors: errs.Load(),
		elapsed: elapsed, opened: m.opened() - opened0, waits: waits}
	if p := firstErr.Load(); p != nil {
		r.firstErr = *p
	}
	if len(lat) > 0 {
		at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
		r.p50, r.p99, r.max = at(0.50), at(0.99), lat[len(lat)-1]
	}
	return r
}

func printTable(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tclients\treq/s\tp50\tp99\tmax\tconns opened\terrors\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%d\t\n", r.mode, r.clients, r.rps(),
			round(r.p50), round(r.p99), round(r.max), r.opened, r.errors)
	}
	tw.Flush()
	for _, r := range results {
		if r.opened == 0 && r.requests > 0 {
			fmt.Fprintln(w, "conns opened counts the dials during each run: a pool keeps the connections of the runs before it, so 0 means every request reused one already open.")
			break
		}
	}
	fmt.Fprintln(w)
	for i := 0; i+1 < len(results); i += 2 {
		u, p := results[i], results[i+1]
		if u.rps() > 0 && p.p50 > 0 {
			fmt.Fprintf(w, "clients=%d: pool serves %.1f× the requests per second, p50 latency %.1f× lower\n",
				u.clients, p.rps()/u.rps(), float64(u.p50)/float64(p.p50))
		}
	}
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// relative returns path relative to the working directory, where the
// command was run, when it lies below it.
func relative(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return abs
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}
