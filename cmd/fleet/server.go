package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// server is the PostgreSQL server under test, seen through a role of the
// run's own: every tenant connects as it, so its CONNECTION LIMIT bounds
// what the run may take of the server, and pg_stat_activity counts the
// run's connections by it.
type server struct {
	admin *pgx.Conn // the DSN's own user, for the role and the samples
	role  string
	cfg   *pgx.ConnConfig // the DSN, as role

	layout layout // how the tenants made next reach the server
	share  bool   // tenants on a budget share connections where they can
	made   map[layout]bool
	madeN  int
}

func openServer(ctx context.Context, dsn string) (*server, error) {
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &server{admin: admin, role: fmt.Sprintf("fleet_%d", os.Getpid()), share: true, made: map[layout]bool{}}
	if _, err := admin.Exec(ctx, "CREATE ROLE "+s.role+" LOGIN CONNECTION LIMIT 0"); err != nil {
		_ = admin.Close(ctx)
		return nil, fmt.Errorf("create role (the DSN's user must be allowed to): %w", err)
	}
	if s.cfg, err = parseRoleDSN(dsn, s.role); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// limit sets the role's CONNECTION LIMIT.
func (s *server) limit(ctx context.Context, n int) error {
	_, err := s.admin.Exec(ctx, fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT %d", s.role, n))
	return err
}

// connections counts the role's backends.
func (s *server) connections(ctx context.Context) (int, error) {
	var n int
	err := s.admin.QueryRow(ctx, "select count(*) from pg_stat_activity where usename = $1", s.role).Scan(&n)
	return n, err
}

// settle waits until the role has no backend left, ending any that
// linger, so that each run starts from zero.
func (s *server) settle(ctx context.Context) {
	for range 100 {
		if n, err := s.connections(ctx); err != nil || n == 0 {
			return
		}
		_, _ = s.admin.Exec(ctx, "select pg_terminate_backend(pid) from pg_stat_activity where usename = $1", s.role)
		time.Sleep(50 * time.Millisecond) // the server ends backends on its own time
	}
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.limit(ctx, 0)
	s.settle(ctx)
	s.dropLayouts(ctx)
	_, _ = s.admin.Exec(ctx, "DROP ROLE IF EXISTS "+s.role)
	_ = s.admin.Close(ctx)
}

// sample is the role's connections at one instant of a run.
type sample struct {
	at time.Duration
	n  int
}

// sampler counts the role's connections every 100 ms until stop is
// called, which returns the samples.
func (s *server) sampler(ctx context.Context) (stop func() []sample) {
	done := make(chan struct{})
	var out []sample
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if n, err := s.connections(ctx); err == nil {
				out = append(out, sample{time.Since(start), n})
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() []sample {
		close(done)
		wg.Wait()
		return out
	}
}

func maxOf(ss []sample) int {
	m := 0
	for _, s := range ss {
		m = max(m, s.n)
	}
	return m
}

// tenants makes n tenant pools on the server, each from cfg as edit
// changes it for tenant i.
func (s *server) tenants(n int, edit func(i int, cfg *pool.Config)) ([]*pool.Pool[*postgres.Conn], error) {
	ps := make([]*pool.Pool[*postgres.Conn], 0, n)
	for i := range n {
		cfg := pool.DefaultConfig()
		cfg.Name = fmt.Sprintf("t%02d", i)
		cfg.MinSize, cfg.MaxSize = 0, 10
		cfg.AcquireTimeout = 0 // each request's own deadline bounds it
		cfg.PingAfterIdle = 0
		edit(i, &cfg)
		p, err := pool.New(s.factory(i, &cfg), cfg)
		if err != nil {
			closeAll(ps)
			return nil, fmt.Errorf("tenant %d: %w", i, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func closeAll(ps []*pool.Pool[*postgres.Conn]) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { _ = p.Close() })
	}
	wg.Wait()
}

// The load: holds are lognormal with a median of 40 ms (the machine's two
// cores stay unsaturated) and a mean of 53.8 ms; capacity is what 40
// connections serve at the mean hold.
const (
	medianHold = 40 * time.Millisecond
	holdSigma  = 0.77
	budget     = 40
	tenantsN   = 100
)

func meanHold() time.Duration {
	return time.Duration(float64(medianHold) * math.Exp(holdSigma*holdSigma/2))
}

// capacity is requests per second that n connections serve.
func capacity(n int) float64 { return float64(n) / meanHold().Seconds() }

func drawHold(r *rand.Rand) time.Duration {
	return time.Duration(float64(medianHold) * math.Exp(holdSigma*r.NormFloat64()))
}

// hold runs one request's work on c: a query that holds the backend for d.
func hold(ctx context.Context, c *postgres.Conn, d time.Duration) error {
	_, err := c.Conn().Exec(ctx, "select pg_sleep($1)", d.Seconds())
	return err
}

// zipf returns n weights proportional to 1/k^s, summing to 1.
func zipf(n int, s float64) []float64 {
	w := make([]float64, n)
	var sum float64
	for k := range n {
		w[k] = 1 / math.Pow(float64(k+1), s)
		sum += w[k]
	}
	for k := range w {
		w[k] /= sum
	}
	return w
}

func createFile(path string) (*os.File, error) { return os.Create(path) }
