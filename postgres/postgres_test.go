package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

var bg = context.Background()

// dsn returns the test server's DSN from PG_DSN, or skips.
func dsn(t *testing.T) string {
	t.Helper()
	d := os.Getenv("PG_DSN")
	if d == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	return d
}

// tagged returns a ConnConfig for PG_DSN whose connections carry a unique
// application_name, so that pg_stat_activity shows exactly this test's
// backends.
func tagged(t *testing.T, base string) (*pgx.ConnConfig, string) {
	t.Helper()
	cfg, err := postgres.ParseDSN(base)
	require.NoError(t, err)
	tag := fmt.Sprintf("pooltest-%s-%d", strings.ToLower(t.Name()), time.Now().UnixNano())
	if len(tag) > 60 {
		tag = tag[len(tag)-60:]
	}
	cfg.RuntimeParams["application_name"] = tag
	return cfg, tag
}

// admin is a connection outside any pool, for looking at the server.
func admin(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(bg, dsn(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(bg) })
	return c
}

func backends(t *testing.T, a *pgx.Conn, tag string) int {
	t.Helper()
	var n int
	require.NoError(t, a.QueryRow(bg, "select count(*) from pg_stat_activity where application_name = $1", tag).Scan(&n))
	return n
}

// waitBackends polls the server (not a goroutine of ours: backends exit
// asynchronously on the server) until this tag has want backends.
func waitBackends(t *testing.T, a *pgx.Conn, tag string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := backends(t, a, tag)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends for %s, want %d", n, tag, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newPool(t *testing.T, cfg *pgx.ConnConfig, pcfg pool.Config, opts postgres.Options) *pool.Pool[*postgres.Conn] {
	t.Helper()
	p, err := pool.New(postgres.Factory(cfg, opts), pcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestQueriesThroughRegistryNeverExceedMaxBackends(t *testing.T) {
	base := dsn(t)
	a := admin(t)
	cfg, tag := tagged(t, base)
	reg := pool.NewRegistry[*postgres.Conn]()
	defer reg.Close()
	pcfg := pool.DefaultConfig()
	pcfg.MaxSize = 8
	require.NoError(t, reg.Register(bg, "pg", postgres.Factory(cfg, postgres.Options{}), pcfg, pool.WithTestConnect()))

	var peak atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // samples the server while the load runs
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n int64
			if err := a.QueryRow(bg, "select count(*) from pg_stat_activity where application_name = $1", tag).Scan(&n); err != nil {
				return
			}
			if n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	var wg sync.WaitGroup
	var sum atomic.Int64
	for g := range 64 {
		wg.Go(func() {
			for i := range 10 {
				err := reg.With(bg, "pg", func(c *postgres.Conn) error {
					var v int64
					err := c.Conn().QueryRow(bg, "select $1::bigint from pg_sleep(0.002)", g*100+i).Scan(&v)
					sum.Add(v)
					return err
				})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-watched
	var want int64
	for g := range 64 {
		for i := range 10 {
			want += int64(g*100 + i)
		}
	}
	assert.Equal(t, want, sum.Load(), "query results")
	assert.LessOrEqual(t, peak.Load(), int64(8), "more backends than MaxSize")
	assert.Positive(t, peak.Load())
	s := reg.Stats()["pg"]
	assert.Equal(t, s.Total, backends(t, a, tag), "pool and server disagree on open connections")
	require.NoError(t, reg.Close())
	waitBackends(t, a, tag, 0)
}

func TestSessionStateNeverLeaksToTheNextBorrower(t *testing.T) {
	base := dsn(t)
	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 1 // one backend, reused
	p := newPool(t, cfg, pcfg, postgres.Options{})

	var pid1, pid2 uint32
	require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
		pg := c.Conn()
		pid1 = pg.PgConn().PID()
		for _, q := range []string{
			"SET statement_timeout = '1234ms'",
			"CREATE TEMP TABLE leftover (x int)",
			"SELECT pg_advisory_lock(4242)",
			"LISTEN leftover_channel",
			"PREPARE leftover_stmt AS SELECT 1",
			"BEGIN",
			"INSERT INTO leftover VALUES (1)",
		} {
			if _, err := pg.Exec(bg, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		_, err := pg.Prepare(bg, "pgx_stmt", "select 2")
		return err // released inside an open transaction
	}))
	require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
		pg := c.Conn()
		pid2 = pg.PgConn().PID()
		assert.Equal(t, byte('I'), pg.PgConn().TxStatus(), "transaction carried over")
		var s string
		require.NoError(t, pg.QueryRow(bg, "SHOW statement_timeout").Scan(&s))
		assert.Equal(t, "0", s, "SET carried over")
		var n int
		require.NoError(t, pg.QueryRow(bg, "select count(*) from pg_class where relname = 'leftover' and relpersistence = 't'").Scan(&n))
		assert.Zero(t, n, "temp table carried over")
		require.NoError(t, pg.QueryRow(bg, "select count(*) from pg_prepared_statements where name in ('leftover_stmt', 'pgx_stmt')").Scan(&n))
		assert.Zero(t, n, "prepared statement carried over")
		require.NoError(t, pg.QueryRow(bg, "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()").Scan(&n))
		assert.Zero(t, n, "advisory lock carried over")
		require.NoError(t, pg.QueryRow(bg, "select count(*) from pg_listening_channels()").Scan(&n))
		assert.Zero(t, n, "LISTEN carried over")
		// pgx's own cache was cleared too: preparing the same name works.
		_, err := pg.Prepare(bg, "pgx_stmt", "select 3")
		assert.NoError(t, err)
		var v int
		require.NoError(t, pg.QueryRow(bg, "pgx_stmt").Scan(&v))
		assert.Equal(t, 3, v)
		return nil
	}))
	assert.Equal(t, pid1, pid2, "the backend was not reused, so isolation was not tested")
	assert.EqualValues(t, 0, p.Stats().ClosedBroken)
}

// Four connections, each just used, have their backends terminated. With
// every check peeking (PeekAfterIdle negative), IsValid finds the FATAL
// messages and FINs in the sockets before a loan, so no request meets a
// dead connection. By default a connection checked under a second ago is
// not peeked: the first request meets a dead one (postgres.With would run
// it again elsewhere), and from then on, its source having lost a
// connection, every check peeks and no other dead one is lent.
func TestTerminatedBackendsAreDiscarded(t *testing.T) {
	t.Run("every check peeks", func(t *testing.T) { terminatedBackends(t, postgres.Options{PeekAfterIdle: -1}, 0, 0) })
	t.Run("default", func(t *testing.T) { terminatedBackends(t, postgres.Options{}, 0, 1) })
	// Idle past PeekAfterIdle, the connections are peeked before a loan.
	t.Run("idle past PeekAfterIdle", func(t *testing.T) {
		terminatedBackends(t, postgres.Options{PeekAfterIdle: 20 * time.Millisecond}, 40*time.Millisecond, 0)
	})
}

// terminatedBackends terminates the backends of four connections, lets
// them sit idle for idle, then sends 20 requests through Pool.With (no
// retry): wantFailed of them meet a dead connection, the first ones.
func terminatedBackends(t *testing.T, opts postgres.Options, idle time.Duration, wantFailed int) {
	base := dsn(t)
	a := admin(t)
	cfg, tag := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 4, 4
	p := newPool(t, cfg, pcfg, opts)
	require.NoError(t, p.WaitReady(bg))
	var held []*pool.PooledConn[*postgres.Conn]
	for range 4 { // each serves once, as connections in use have
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		held = append(held, pc)
	}
	for _, pc := range held {
		pc.Release()
	}
	var old []uint32
	require.NoError(t, a.QueryRow(bg, "select array_agg(pid) from pg_stat_activity where application_name = $1", tag).Scan(&old))
	require.Len(t, old, 4)
	var killed int
	require.NoError(t, a.QueryRow(bg, "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = $1", tag).Scan(&killed))
	require.Equal(t, 4, killed)
	waitBackends(t, a, tag, 0)
	time.Sleep(idle) // the connections' idle time, on the server's side of the test

	failed := 0
	for i := range 20 {
		err := p.With(bg, func(c *postgres.Conn) error {
			var v int
			if err := c.Conn().QueryRow(bg, "select $1::int", i).Scan(&v); err != nil {
				return err
			}
			assert.NotContains(t, old, c.Conn().PgConn().PID(), "a terminated backend was lent")
			return nil
		})
		if err != nil {
			failed++
			assert.Less(t, i, wantFailed, "request %d met a dead connection: %v", i, err)
		}
	}
	assert.Equal(t, wantFailed, failed, "requests that met a dead connection")
	assert.EqualValues(t, 4, p.Stats().ClosedBroken, "the four dead connections were closed as broken")
}

// What IsValid's peek at the socket costs on a live, idle connection.
func BenchmarkIsValid(b *testing.B) {
	d := os.Getenv("PG_DSN")
	if d == "" {
		b.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this benchmark")
	}
	f, err := postgres.FactoryFromDSN(d, postgres.Options{PeekAfterIdle: -1}) // a peek at every check
	require.NoError(b, err)
	c, err := f(bg)
	require.NoError(b, err)
	defer c.Close()
	for b.Loop() {
		if !c.IsValid() {
			b.Fatal("a live connection reported invalid")
		}
	}
}

func TestCancelledQueryDoesNotReturnDirtyConnection(t *testing.T) {
	base := dsn(t)
	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 1
	p := newPool(t, cfg, pcfg, postgres.Options{})
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.With(ctx, func(c *postgres.Conn) error {
		_, err := c.Conn().Exec(ctx, "BEGIN")
		if err != nil {
			return err
		}
		_, err = c.Conn().Exec(ctx, "select pg_sleep(10)")
		return err
	})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "cancel did not interrupt the query")
	require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
		assert.Equal(t, byte('I'), c.Conn().PgConn().TxStatus())
		var v int
		return c.Conn().QueryRow(bg, "select 7").Scan(&v)
	}))
}

// The server's refusal at a role's CONNECTION LIMIT (SQLSTATE 53300) is
// capacity, not failure: with a role limited to 3 connections, a pool of 8
// and 16 callers running 10 ms queries for 5 s, no caller fails, the pool
// settles at 3 connections, and its refused dials stay few (one probe per
// pause, the pause growing to DialBackoffMax).
func TestRoleConnectionLimitIsCapacityNotFailure(t *testing.T) {
	base := dsn(t)
	a := admin(t)
	role := fmt.Sprintf("pool_limited_%d", time.Now().UnixNano()%1e9)
	_, err := a.Exec(bg, fmt.Sprintf("CREATE ROLE %s LOGIN CONNECTION LIMIT 3", role))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = a.Exec(bg, "DROP ROLE IF EXISTS "+role) })
	cfg, tag := tagged(t, base)
	cfg.User = role

	// The dial's own error says what the server said, and is capacity.
	var held []*postgres.Conn
	dial := postgres.Factory(cfg, postgres.Options{})
	for range 3 {
		c, err := dial(bg)
		require.NoError(t, err)
		held = append(held, c)
	}
	_, err = dial(bg)
	require.ErrorIs(t, err, pool.ErrCapacity)
	assert.Contains(t, err.Error(), "53300")
	for _, c := range held {
		require.NoError(t, c.Close())
	}
	waitBackends(t, a, tag, 0)

	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 8
	pcfg.AcquireTimeout = 5 * time.Second
	p, err := pool.New(postgres.Factory(cfg, postgres.Options{}), pcfg)
	require.NoError(t, err)

	var served, failed atomic.Int64
	var maxBackends atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := p.With(bg, func(c *postgres.Conn) error {
					_, err := c.Conn().Exec(bg, "select pg_sleep(0.01)")
					return err
				})
				if err != nil {
					if failed.Add(1) <= 3 {
						t.Errorf("caller failed: %v", err)
					}
					continue
				}
				served.Add(1)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if n := int64(backends(t, a, tag)); n > maxBackends.Load() {
			maxBackends.Store(n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	s := p.Stats()
	t.Logf("role limit 3, MaxSize 8, 16 callers, 10 ms queries, 5 s: served %d, failed %d, refused dials %d, ceiling %d, backends at most %d",
		served.Load(), failed.Load(), s.Refused, s.Ceiling, maxBackends.Load())
	assert.Zero(t, failed.Load())
	assert.Positive(t, s.Refused, "the limit was never hit")
	assert.Equal(t, 3, s.Ceiling)
	assert.False(t, s.Down)
	assert.LessOrEqual(t, maxBackends.Load(), int64(3))
	// Probes: a first burst of up to MaxConcurrentDials, then one per
	// pause of 25 to 500 ms: about 20 in 5 s.
	assert.LessOrEqual(t, s.Refused, int64(40), "a connect storm")
	require.NoError(t, p.Close())
	waitBackends(t, a, tag, 0)
}

// The errors that say the server is full match pool.ErrCapacity; others
// do not.
func TestConnectErrorsThatMeanCapacity(t *testing.T) {
	for _, c := range []struct {
		err  *pgconn.PgError
		full bool
	}{
		{&pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "sorry, too many clients already"}, true},
		{&pgconn.PgError{Severity: "FATAL", Code: "53300", Message: `too many connections for role "app"`}, true},
		{&pgconn.PgError{Severity: "FATAL", Code: "53400", Message: "configuration limit exceeded"}, true},
		{&pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: "no more connections allowed (max_client_conn)"}, true},
		{&pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: "invalid startup packet"}, false},
		{&pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}, false},
		{&pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}, false},
	} {
		err := postgres.AtCapacity(fmt.Errorf("postgres: connect: %w", c.err))
		assert.Equal(t, c.full, errors.Is(err, pool.ErrCapacity), "%s %s", c.err.Code, c.err.Message)
		var pe *pgconn.PgError
		assert.ErrorAs(t, err, &pe, "the PgError is still there")
		assert.Equal(t, fmt.Sprintf("postgres: connect: %v", c.err), err.Error())
	}
	assert.NotErrorIs(t, postgres.AtCapacity(errors.New("dial tcp: connection refused")), pool.ErrCapacity)
}

func TestThroughPgBouncerTransactionMode(t *testing.T) {
	bouncer := os.Getenv("PGBOUNCER_DSN")
	if bouncer == "" {
		t.Skip("PGBOUNCER_DSN is not set; set it to a PgBouncer in transaction mode in front of PG_DSN's server to run this test")
	}
	cfg, err := postgres.ParseDSN(bouncer)
	require.NoError(t, err)
	// PgBouncer in transaction mode cannot keep prepared statements.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	pcfg := pool.DefaultConfig()
	pcfg.MaxSize = 8
	p := newPool(t, cfg, pcfg, postgres.Options{Reset: postgres.ResetTransaction})
	var wg sync.WaitGroup
	var sum atomic.Int64
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				err := p.With(bg, func(c *postgres.Conn) error {
					tx, err := c.Conn().Begin(bg)
					if err != nil {
						return err
					}
					defer tx.Rollback(bg)
					var v int64
					if err := tx.QueryRow(bg, "select $1::bigint", g*20+i).Scan(&v); err != nil {
						return err
					}
					sum.Add(v)
					return tx.Commit(bg)
				})
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, (640*639)/2, sum.Load())
	assert.LessOrEqual(t, p.Stats().Total, 8)
}

func TestErrorsNeverContainThePassword(t *testing.T) {
	const pw = "s3cret-Pa55word"
	f, err := postgres.FactoryFromDSN("postgres://postgres:"+pw+"@127.0.0.1:1/test?sslmode=disable&connect_timeout=1", postgres.Options{})
	require.NoError(t, err)
	_, err = f(bg)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), pw)
	assert.Contains(t, err.Error(), "127.0.0.1")

	_, err = postgres.ParseDSN("postgres://postgres:" + pw + "@127.0.0.1:notaport/test")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), pw)
	_, err = postgres.ParseDSN("host=127.0.0.1 password=" + pw + " port=notaport")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), pw)

	var logged bytes.Buffer
	cfg := pool.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := pool.New(f, cfg)
	require.NoError(t, err)
	defer p.Close()
	err = p.WaitReady(bg)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), pw)
	assert.NotContains(t, fmt.Sprintf("%+v", p.Stats()), pw)
	_, err = p.Acquire(bg) // fails fast while the source is down
	require.ErrorIs(t, err, pool.ErrDial)
	assert.NotContains(t, err.Error(), pw)
	require.NoError(t, p.Close())
	assert.Contains(t, logged.String(), "source down", "the failed dials were not logged")
	assert.NotContains(t, logged.String(), pw, "the password reached the log")
}

// A registry of mixed kinds and one of PostgreSQL only both take a DSN in
// one call, and handlers get a *pgx.Conn without a type assertion.
func TestRegisterDSNAndTypedWith(t *testing.T) {
	base := dsn(t)
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 0, 2

	mixed := pool.NewRegistry[pool.Connector]()
	t.Cleanup(func() { _ = mixed.Close() })
	require.NoError(t, postgres.Register(bg, mixed, "pg", base, postgres.Options{}, cfg, pool.WithTestConnect()))
	require.NoError(t, mixed.Register(bg, "other", func(context.Context) (pool.Connector, error) { return otherConn{}, nil }, cfg))
	var one int
	require.NoError(t, postgres.With(bg, mixed, "pg", func(c *pgx.Conn) error {
		return c.QueryRow(bg, "select 1").Scan(&one)
	}))
	assert.Equal(t, 1, one)
	called := false
	err := postgres.With(bg, mixed, "other", func(*pgx.Conn) error { called = true; return nil })
	require.Error(t, err)
	assert.False(t, called)
	assert.Contains(t, err.Error(), `"other" is not a PostgreSQL source`)
	err = postgres.With(bg, mixed, "missing", func(*pgx.Conn) error { return nil })
	assert.ErrorIs(t, err, pool.ErrUnknownSource)

	only := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = only.Close() })
	require.NoError(t, postgres.Register(bg, only, "pg", base, postgres.Options{Reset: postgres.ResetTransaction}, cfg))
	require.NoError(t, postgres.With(bg, only, "pg", func(c *pgx.Conn) error {
		return c.QueryRow(bg, "select 2").Scan(&one)
	}))
	assert.Equal(t, 2, one)

	const pw = "s3cret-Pa55word"
	err = postgres.Register(bg, only, "bad", "postgres://postgres:"+pw+"@127.0.0.1:notaport/test", postgres.Options{}, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"bad"`)
	assert.NotContains(t, err.Error(), pw)

	wrong := pool.NewRegistry[otherConn]()
	t.Cleanup(func() { _ = wrong.Close() })
	err = postgres.Register(bg, wrong, "pg", base, postgres.Options{}, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot hold PostgreSQL connections")
}

// otherConn is a source of another kind, for registries of mixed kinds.
type otherConn struct{}

func (otherConn) Ping(context.Context) error { return nil }
func (otherConn) Close() error               { return nil }

// An empty DSN is refused with an error that says how to mean it, not
// taken silently as libpq's defaults (the local socket, as the OS user).
func TestEmptyDSNIsRefusedUnlessEnvDefaultsIsSet(t *testing.T) {
	reg := pool.NewRegistry[*postgres.Conn]()
	defer reg.Close()
	for _, dsn := range []string{"", "   "} {
		err := postgres.Register(bg, reg, "sales", dsn, postgres.Options{}, pool.DefaultConfig())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "DSN is empty")
		assert.Contains(t, err.Error(), "EnvDefaults")
		assert.Contains(t, err.Error(), `"sales"`)
		assert.Equal(t, 1, strings.Count(err.Error(), "postgres:"), "the prefix stutters: %v", err)
		_, err = postgres.Dial(bg, dsn)
		assert.ErrorContains(t, err, "postgres: the DSN is empty")
	}
	assert.Empty(t, reg.IDs(), "a source with an empty DSN was registered")

	// Opted in, the environment's defaults apply: PGHOST and PGPORT point
	// at a closed port, so the dial fails there, not at the local socket.
	t.Setenv("PGHOST", "127.0.0.1")
	t.Setenv("PGPORT", "1")
	f, err := postgres.FactoryFromDSN("", postgres.Options{EnvDefaults: true, ConnectTimeout: time.Second})
	require.NoError(t, err)
	_, err = f(bg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:1")
}

// killOwnBackend ends c's backend from the admin connection and waits until
// the server has ended it, as a restart or pg_terminate_backend would in
// the middle of a loan.
func killOwnBackend(t *testing.T, a *pgx.Conn, c *pgx.Conn) {
	t.Helper()
	pid := c.PgConn().PID()
	_, err := a.Exec(bg, "select pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		require.NoError(t, a.QueryRow(bg, "select count(*) from pg_stat_activity where pid = $1", pid).Scan(&n))
		if n == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "backend %d outlived pg_terminate_backend", pid)
		time.Sleep(10 * time.Millisecond) // the server ends the backend on its own time
	}
}

// A callback declared Idempotent that fails because the server ended its
// connection mid-loan runs again on a fresh connection, and the caller
// sees no error; under NoRetry, or without Idempotent for a write that
// reached the server, it runs once and the caller sees the error, and the
// write has no duplicate effect.
func TestWithRetriesOnADeadConnectionOnlyWhatIsSafe(t *testing.T) {
	base := dsn(t)
	a := admin(t)
	table := scratchTable(t, a, "retry")
	var err error
	reg := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 2
	require.NoError(t, postgres.Register(bg, reg, "db", base, postgres.Options{}, pcfg))

	calls := 0
	var pids []uint32
	readOnce := func(c *pgx.Conn) error {
		calls++
		pids = append(pids, c.PgConn().PID())
		if calls == 1 {
			killOwnBackend(t, a, c)
		}
		var v int
		return c.QueryRow(bg, "select 1").Scan(&v)
	}
	require.NoError(t, postgres.With(postgres.Idempotent(bg), reg, "db", readOnce))
	assert.Equal(t, 2, calls)
	assert.NotEqual(t, pids[0], pids[1], "retried on the dead connection")

	// A restart leaves several dead connections: the retry that meets a
	// second one goes on, up to the bound, and stops there.
	for _, dead := range []int{2, 3, 4} {
		calls, pids = 0, nil
		readDead := func(c *pgx.Conn) error {
			calls++
			pids = append(pids, c.PgConn().PID())
			if calls <= dead {
				killOwnBackend(t, a, c)
			}
			var v int
			return c.QueryRow(bg, "select 1").Scan(&v)
		}
		err = postgres.With(postgres.Idempotent(bg), reg, "db", readDead)
		if dead < 4 {
			require.NoError(t, err, "%d dead connections in a row", dead)
			assert.Equal(t, dead+1, calls)
		} else {
			require.Error(t, err, "the retries have a bound")
			assert.Equal(t, 4, calls, "the retries have a bound")
		}
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(pids))), len(pids), "retried on a dead connection")
	}

	calls = 0
	err = postgres.With(postgres.NoRetry(postgres.Idempotent(bg)), reg, "db", readOnce)
	require.Error(t, err)
	assert.Equal(t, 1, calls, "NoRetry retried")

	calls = 0
	write := func(c *pgx.Conn) error {
		calls++
		if calls == 1 {
			killOwnBackend(t, a, c)
		}
		_, err := c.Exec(bg, "insert into "+table+" values (1)")
		return err
	}
	err = postgres.With(bg, reg, "db", write)
	require.Error(t, err, "a write on a dead connection failed, and must say so")
	assert.Equal(t, 1, calls, "a write that may have reached the server was retried")
	var rows int
	require.NoError(t, a.QueryRow(bg, "select count(*) from "+table).Scan(&rows))
	assert.Zero(t, rows)
	s := reg.Stats()["db"]
	assert.EqualValues(t, 3+2+3+4, s.ClosedBroken, "each dead connection closed, none lent again")
}

// What the peek costs a loan, interleaved: an Acquire and Release of an
// idle live connection (IsValid runs on both), and a With running one
// round trip, each with the peek on and off, on one pool of one
// connection, peeking at every check (PeekAfterIdle negative; by default
// a connection this busy is never peeked). Run with -count to interleave
// passes.
func BenchmarkLoanPeek(b *testing.B) {
	d := os.Getenv("PG_DSN")
	if d == "" {
		b.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this benchmark")
	}
	f, err := postgres.FactoryFromDSN(d, postgres.Options{PeekAfterIdle: -1})
	require.NoError(b, err)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 1, 1
	p, err := pool.New(f, pcfg)
	require.NoError(b, err)
	defer p.Close()
	require.NoError(b, p.WaitReady(bg))
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "peek", false: "nopeek"}[on]
		b.Run("acquire-release/"+name, func(b *testing.B) {
			defer postgres.SetPeek(postgres.SetPeek(on))
			for b.Loop() {
				pc, err := p.Acquire(bg)
				if err != nil {
					b.Fatal(err)
				}
				pc.Release()
			}
		})
		b.Run("with-query/"+name, func(b *testing.B) {
			defer postgres.SetPeek(postgres.SetPeek(on))
			for b.Loop() {
				err := p.With(bg, func(c *postgres.Conn) error {
					_, err := c.Conn().Exec(bg, ";")
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A round of pg_terminate_backend leaves more dead connections idle than
// With has runs of fn, and the peek does not see them (the server's
// goodbye not read yet: the peek is off here): the retry pings past every
// one of them to a live connection, and fn runs twice, not once per dead
// connection.
func TestWithPingsPastEveryDeadIdleConnection(t *testing.T) {
	base := dsn(t)
	a := admin(t)
	tag := fmt.Sprintf("pooltest-dead-idle-%d", time.Now().UnixNano())
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	defer postgres.SetPeek(postgres.SetPeek(false))
	reg := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	const size = 6
	pcfg := pool.DefaultConfig()
	// No MinSize: a refill dialled after the first dead connection closes
	// would be lent before the dead ones, and hide them.
	pcfg.MinSize, pcfg.MaxSize = 0, size
	require.NoError(t, postgres.Register(bg, reg, "db", base+sep+"application_name="+tag, postgres.Options{}, pcfg))
	p, err := reg.Pool(bg, "db")
	require.NoError(t, err)
	var held []*pool.PooledConn[*postgres.Conn]
	for range size {
		pc, err := reg.Get(bg, "db")
		require.NoError(t, err)
		held = append(held, pc)
	}
	for _, pc := range held {
		require.NoError(t, reg.Release("db", pc))
	}
	waitBackends(t, a, tag, size)

	_, err = a.Exec(bg, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1", tag)
	require.NoError(t, err)
	waitBackends(t, a, tag, 0)

	calls := 0
	err = postgres.With(postgres.Idempotent(bg), reg, "db", func(c *pgx.Conn) error {
		calls++
		var v int
		return c.QueryRow(bg, "select 1").Scan(&v)
	})
	require.NoError(t, err, "With answered an error with a live connection to be had")
	assert.Equal(t, 2, calls, "fn ran once per dead connection")
	assert.EqualValues(t, size, p.Stats().ClosedBroken, "each dead connection closed")
}

// scratchTable creates a table (n int) of the test's own, named after
// prefix, and drops it when the test ends.
func scratchTable(t *testing.T, a *pgx.Conn, prefix string) string {
	t.Helper()
	table := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e9)
	_, err := a.Exec(bg, "create table "+table+" (n int)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = a.Exec(bg, "drop table if exists "+table) })
	return table
}
