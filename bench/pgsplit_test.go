package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// loaner splits one loan into its parts: take a connection (the wait and
// the acquire-time checks), run the query on it, give it back (the
// release and, for this pool, its reset).
type loaner interface {
	acquire(ctx context.Context) (conn *pgx.Conn, release func(), err error)
	close()
}

type poolLoaner struct{ p *pool.Pool[*postgres.Conn] }

func (l poolLoaner) acquire(ctx context.Context) (*pgx.Conn, func(), error) {
	pc, err := l.p.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pc.Conn().Conn(), pc.Release, nil
}
func (l poolLoaner) close() { _ = l.p.Close() }

// yieldLoaner is this pool with a runtime.Gosched after each release: an
// experiment on where the query's tail comes from (bench/RESULTS.md),
// not a way to use the pool.
type yieldLoaner struct{ poolLoaner }

func (l yieldLoaner) acquire(ctx context.Context) (*pgx.Conn, func(), error) {
	c, rel, err := l.poolLoaner.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { rel(); runtime.Gosched() }, nil
}

type pgxpoolLoaner struct{ p *pgxpool.Pool }

func (l pgxpoolLoaner) acquire(ctx context.Context) (*pgx.Conn, func(), error) {
	c, err := l.p.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c.Conn(), c.Release, nil
}
func (l pgxpoolLoaner) close() { l.p.Close() }

// BenchmarkPGLoanSplit times each part of a loan on the real server, for
// this pool (the default postgres.Options{}) and pgxpool, 8 connections,
// 16 and 64 clients, select 1 and an indexed read: p50 and p99 of the
// acquire, the query and the release, and of the whole loan; and, from
// runtime/metrics over the run, the p99 of the scheduler's latency (how
// long goroutines waited runnable) and the GC cycles. PG_CONTENDER picks
// one contender, so that a script can interleave them.
func BenchmarkPGLoanSplit(b *testing.B) {
	dsn := os.Getenv("PG_DSN")
	if dsn == "" {
		b.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	setupPG(b, dsn)
	contenders := []struct {
		name string
		new  func(b *testing.B) loaner
	}{
		{"pgxpool", func(b *testing.B) loaner { return pgxpoolLoaner{openPgxpool(b, dsn)} }},
		{"pool", func(b *testing.B) loaner { return newPoolLoaner(b, dsn, postgres.Options{}) }},
		// Without the session tracer that ResetSession (the default)
		// installs: the reset pgxpool does.
		// An experiment: the releasing goroutine yields its P.
		{"pool-yield", func(b *testing.B) loaner {
			return yieldLoaner{newPoolLoaner(b, dsn, postgres.Options{}).(poolLoaner)}
		}},
		{"pool-txreset", func(b *testing.B) loaner {
			return newPoolLoaner(b, dsn, postgres.Options{Reset: postgres.ResetTransaction})
		}},
	}
	only := os.Getenv("PG_CONTENDER")
	for _, q := range pgQueries {
		for _, clients := range []int{16, 64} {
			for _, ct := range contenders {
				if only != "" && only != ct.name {
					continue
				}
				b.Run(fmt.Sprintf("%s/c=%d/%s", q.name, clients, ct.name), func(b *testing.B) {
					l := ct.new(b)
					defer l.close()
					runSplit(b, l, q.sql, clients)
				})
			}
		}
	}
}

func newPoolLoaner(b *testing.B, dsn string, opts postgres.Options) loaner {
	f, err := postgres.FactoryFromDSN(dsn, opts)
	if err != nil {
		b.Fatal(err)
	}
	cfg := pool.DefaultConfig()
	cfg.MaxSize = pgSize
	p, err := pool.New(f, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return poolLoaner{p}
}

// schedSample reads the scheduler's latency histogram and the GC cycles.
func schedSample() (*metrics.Float64Histogram, uint64) {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram(), s[1].Value.Uint64()
}

// histDeltaP99 is the 99th percentile of the counts added between two
// readings of one histogram, as its bucket's upper bound.
func histDeltaP99(before, after *metrics.Float64Histogram) float64 {
	var total uint64
	delta := make([]uint64, len(after.Counts))
	for i := range after.Counts {
		delta[i] = after.Counts[i] - before.Counts[i]
		total += delta[i]
	}
	if total == 0 {
		return 0
	}
	want := total - total/100
	var seen uint64
	for i, n := range delta {
		if seen += n; seen >= want {
			return after.Buckets[i+1]
		}
	}
	return after.Buckets[len(after.Buckets)-1]
}

func runSplit(b *testing.B, l loaner, sql string, clients int) {
	ctx := context.Background()
	warmUp(b, clients, func(arg int) error {
		conn, release, err := l.acquire(ctx)
		if err != nil {
			return err
		}
		defer release()
		var v int
		return conn.QueryRow(ctx, sql, arg).Scan(&v)
	})
	type parts struct{ acquire, query, release, loan []time.Duration }
	var (
		next atomic.Int64
		mu   sync.Mutex
		all  parts
		wg   sync.WaitGroup
	)
	n := int64(b.N)
	sched0, gc0 := schedSample()
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			var my parts
			for i := next.Add(1); i <= n; i = next.Add(1) {
				arg := int(i%10000) + 1
				t0 := time.Now()
				conn, release, err := l.acquire(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				t1 := time.Now()
				var v int
				err = conn.QueryRow(ctx, sql, arg).Scan(&v)
				t2 := time.Now()
				release()
				t3 := time.Now()
				if err != nil || v != arg {
					b.Errorf("query(%d) = %d, %v", arg, v, err)
					return
				}
				my.acquire = append(my.acquire, t1.Sub(t0))
				my.query = append(my.query, t2.Sub(t1))
				my.release = append(my.release, t3.Sub(t2))
				my.loan = append(my.loan, t3.Sub(t0))
			}
			mu.Lock()
			all.acquire = append(all.acquire, my.acquire...)
			all.query = append(all.query, my.query...)
			all.release = append(all.release, my.release...)
			all.loan = append(all.loan, my.loan...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	sched1, gc1 := schedSample()
	if len(all.loan) == 0 {
		return
	}
	b.ReportMetric(float64(len(all.loan))/elapsed.Seconds(), "qps")
	for _, part := range []struct {
		name string
		d    []time.Duration
	}{{"acquire", all.acquire}, {"query", all.query}, {"release", all.release}, {"loan", all.loan}} {
		slices.Sort(part.d)
		b.ReportMetric(float64(part.d[len(part.d)/2]), part.name+"-p50-ns")
		b.ReportMetric(float64(part.d[min(len(part.d)-1, len(part.d)*99/100)]), part.name+"-p99-ns")
	}
	b.ReportMetric(histDeltaP99(sched0, sched1)*1e9, "sched-p99-ns")
	b.ReportMetric(float64(gc1-gc0), "gc-cycles")
}
