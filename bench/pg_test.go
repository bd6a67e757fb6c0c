package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// pgSize is every pool's maximum size in the PostgreSQL benchmarks.
const pgSize = 8

// pgQuerier runs one query and returns the integer it selects.
type pgQuerier interface {
	query(ctx context.Context, sql string, arg int) (int, error)
	close()
}

type pgContender struct {
	name string
	new  func(b *testing.B, dsn string) pgQuerier
}

var pgContenders = []pgContender{
	{"pgxpool", newPgxpool},
	{"pool", func(b *testing.B, dsn string) pgQuerier { return newPoolPG(b, dsn, postgres.ResetSession) }},
	{"pool-txreset", func(b *testing.B, dsn string) pgQuerier { return newPoolPG(b, dsn, postgres.ResetTransaction) }},
	{"pool-always", func(b *testing.B, dsn string) pgQuerier { return newPoolPG(b, dsn, postgres.ResetAlways) }},
	{"sql", newSQLPG},
	{"nopool", newNoPool},
}

type poolPG struct{ p *pool.Pool[*postgres.Conn] }

func newPoolPG(b *testing.B, dsn string, reset postgres.ResetMode) pgQuerier {
	f, err := postgres.FactoryFromDSN(dsn, postgres.Options{Reset: reset})
	if err != nil {
		b.Fatal(err)
	}
	cfg := pool.DefaultConfig()
	cfg.MaxSize = pgSize
	p, err := pool.New(f, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return poolPG{p}
}

func (q poolPG) query(ctx context.Context, sql string, arg int) (v int, err error) {
	err = q.p.With(ctx, func(c *postgres.Conn) error { return c.Conn().QueryRow(ctx, sql, arg).Scan(&v) })
	return v, err
}
func (q poolPG) close() { _ = q.p.Close() }

type pgxpoolPG struct{ p *pgxpool.Pool }

func newPgxpool(b *testing.B, dsn string) pgQuerier { return pgxpoolPG{openPgxpool(b, dsn)} }

// openPgxpool opens pgxpool on dsn with pgSize connections, its other
// settings its defaults.
func openPgxpool(b *testing.B, dsn string) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = pgSize
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func (q pgxpoolPG) query(ctx context.Context, sql string, arg int) (v int, err error) {
	err = q.p.QueryRow(ctx, sql, arg).Scan(&v)
	return v, err
}
func (q pgxpoolPG) close() { q.p.Close() }

type sqlPG struct{ db *sql.DB }

func newSQLPG(b *testing.B, dsn string) pgQuerier {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgSize)
	db.SetMaxIdleConns(pgSize)
	return sqlPG{db}
}

func (q sqlPG) query(ctx context.Context, sql string, arg int) (v int, err error) {
	err = q.db.QueryRowContext(ctx, sql, arg).Scan(&v)
	return v, err
}
func (q sqlPG) close() { _ = q.db.Close() }

type noPool struct{ cfg *pgx.ConnConfig }

func newNoPool(b *testing.B, dsn string) pgQuerier {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	return noPool{cfg}
}

func (q noPool) query(ctx context.Context, sql string, arg int) (v int, err error) {
	c, err := pgx.ConnectConfig(ctx, q.cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	err = c.QueryRow(ctx, sql, arg).Scan(&v)
	return v, err
}
func (q noPool) close() {}

var pgQueries = []struct{ name, sql string }{
	{"select1", "select $1::int"},
	{"indexed", "select id from bench_items where id = $1"},
}

func setupPG(b *testing.B, dsn string) {
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	_, err = c.Exec(context.Background(), `
		create table if not exists bench_items (id int primary key, name text not null);
		insert into bench_items select g, 'item ' || g from generate_series(1, 10000) g on conflict do nothing`)
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPG runs SELECT 1 and an indexed lookup on the real server with
// 1, 16 and 64 concurrent clients, for pool with the adapter (full session
// reset, and transaction-only reset as pgxpool does), pgxpool,
// database/sql with pgx's stdlib driver, and no pool (connect per query).
// It reports queries per second and the p50 and p99 latency.
func BenchmarkPG(b *testing.B) {
	dsn := os.Getenv("PG_DSN")
	if dsn == "" {
		b.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	setupPG(b, dsn)
	only := os.Getenv("PG_CONTENDER") // run.sh interleaves contenders with it
	for _, q := range pgQueries {
		for _, clients := range []int{1, 16, 64} {
			for _, ct := range pgContenders {
				if only != "" && only != ct.name {
					continue
				}
				b.Run(fmt.Sprintf("%s/c=%d/%s", q.name, clients, ct.name), func(b *testing.B) {
					qr := ct.new(b, dsn)
					defer qr.close()
					runPG(b, qr, q.sql, clients)
				})
			}
		}
	}
}

// warmUp brings a contender to its full size, with as many clients as
// the run (at least pgSize), each running query ten times, so that no
// dial falls inside the measurement.
func warmUp(b *testing.B, clients int, query func(arg int) error) {
	var warm sync.WaitGroup
	for c := range max(clients, pgSize) {
		warm.Go(func() {
			for i := range 10 {
				if err := query(c*10 + i + 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	warm.Wait()
}

func runPG(b *testing.B, qr pgQuerier, sql string, clients int) {
	ctx := context.Background()
	warmUp(b, clients, func(arg int) error {
		_, err := qr.query(ctx, sql, arg)
		return err
	})
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
	)
	n := int64(b.N)
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			local := make([]time.Duration, 0, 1024)
			for i := next.Add(1); i <= n; i = next.Add(1) {
				arg := int(i%10000) + 1
				t0 := time.Now()
				v, err := qr.query(ctx, sql, arg)
				local = append(local, time.Since(t0))
				if err != nil || v != arg {
					b.Errorf("query(%d) = %d, %v", arg, v, err)
					return
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "qps")
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ns")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-us/q")
	}
}
