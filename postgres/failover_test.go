package postgres_test

// A failover on a primary and a synchronous standby of the test's own,
// on two loopback ports: never the user's server.

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// cluster is a PostgreSQL cluster of a test's own.
type cluster struct {
	t    *testing.T
	bin  string // the server's bin directory
	dir  string // its data directory
	port int
	as   string // the user to run the server as ("" for the current one)
}

// run runs one of the server's programs, as c.as, and fails the test if
// it fails.
func (c *cluster) run(prog string, args ...string) {
	c.t.Helper()
	require.NoError(c.t, c.try(prog, args...))
}

func (c *cluster) try(prog string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	if c.as != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.as, "--", filepath.Join(c.bin, prog)}, args...)...)
	}
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *cluster) ctl(args ...string) {
	c.t.Helper()
	c.run("pg_ctl", append([]string{"-D", c.dir, "-l", c.dir + ".log", "-w", "-t", "30"}, args...)...)
}

func (c *cluster) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

func (c *cluster) conn() *pgx.Conn {
	c.t.Helper()
	conn, err := pgx.Connect(bg, c.dsn())
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// failoverPair starts a primary and a streaming standby with synchronous
// replication (a commit is acknowledged once it is on both), or skips
// unless POOL_TEST_FAILOVER=yes opts in. Both are stopped and removed
// when the test ends.
func failoverPair(t *testing.T) (primary, standby *cluster) {
	t.Helper()
	if os.Getenv("POOL_TEST_FAILOVER") != "yes" {
		t.Skip("this test makes a PostgreSQL primary and standby of its own on two free loopback ports (initdb, pg_basebackup), stops one and promotes the other: it runs only with POOL_TEST_FAILOVER=yes, and needs PostgreSQL's server programs (PG_BINDIR, or pg_config --bindir)")
	}
	bin := os.Getenv("PG_BINDIR")
	if bin == "" {
		out, err := exec.Command("pg_config", "--bindir").Output()
		require.NoError(t, err, "pg_config --bindir: set PG_BINDIR to the directory of initdb and pg_ctl")
		bin = strings.TrimSpace(string(out))
	}
	as := ""
	if os.Geteuid() == 0 { // the server refuses to run as root
		_, err := user.Lookup("postgres")
		require.NoError(t, err, "running as root, the clusters run as the postgres user")
		as = "postgres"
	}
	base, err := os.MkdirTemp("", "pool-failover-")
	require.NoError(t, err)
	if as != "" {
		require.NoError(t, exec.Command("chown", as, base).Run())
	}
	primary = &cluster{t: t, bin: bin, dir: filepath.Join(base, "primary"), port: freePort(t), as: as}
	standby = &cluster{t: t, bin: bin, dir: filepath.Join(base, "standby"), port: freePort(t), as: as}
	t.Cleanup(func() {
		for _, c := range []*cluster{primary, standby} {
			_ = c.try("pg_ctl", "-D", c.dir, "-m", "immediate", "-w", "stop")
		}
		if t.Failed() {
			for _, c := range []*cluster{primary, standby} {
				if b, err := os.ReadFile(c.dir + ".log"); err == nil {
					t.Logf("%s log:\n%s", filepath.Base(c.dir), b)
				}
			}
		}
		_ = os.RemoveAll(base)
	})

	primary.run("initdb", "-D", primary.dir, "-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions")
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 4
hot_standby = on
synchronous_standby_names = '*'
synchronous_commit = on
fsync = off
shared_buffers = 16MB
max_connections = 100
`, primary.port, base)
	appendFile(t, filepath.Join(primary.dir, "postgresql.conf"), conf)
	primary.ctl("start")

	standby.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", standby.dir, "-R", "-X", "stream", "--no-sync")
	// Promoted, it commits alone: no standby of its own to wait for.
	appendFile(t, filepath.Join(standby.dir, "postgresql.auto.conf"), fmt.Sprintf("port = %d\nsynchronous_standby_names = ''\n", standby.port))
	standby.ctl("start")

	admin := primary.conn()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		require.NoError(t, admin.QueryRow(bg, "select count(*) from pg_stat_replication where sync_state = 'sync'").Scan(&n))
		if n == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the standby never became synchronous")
		time.Sleep(20 * time.Millisecond) // polling the server, not a goroutine
	}
	return primary, standby
}

func appendFile(t *testing.T, name, text string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(text)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// freePort returns a loopback port that nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestFailoverToAPromotedStandby: 64 clients write rows with unique keys
// through a registry and read each one back, on a multi-host DSN with
// target_session_attrs=read-write. The primary is stopped at once (-m
// immediate) and, half a second later, the standby promoted.
//   - Writes resume within 0.5 s of the promotion.
//   - Every write acknowledged is on the new primary, exactly once.
//   - No request that starts once the new primary accepts writes fails;
//     while no server accepts them, requests fail fast (within one
//     probe: in tens of milliseconds; the test allows a tenth of
//     AcquireTimeout, for a loaded machine).
//   - The old primary comes back under its address read-only, and the
//     pool's connections are terminated: each fails at most the request
//     it was running, and every write lands on the new primary.
func TestFailoverToAPromotedStandby(t *testing.T) {
	primary, standby := failoverPair(t)
	reg := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 4, 16
	cfg.AcquireTimeout = 5 * time.Second
	require.NoError(t, postgres.Register(bg, reg, "db", failoverDSN(primary, standby), postgres.Options{ConnectTimeout: 2 * time.Second}, cfg))
	// A source whose one host is the standby: its DSN asks for a writable
	// server (one host, no target_session_attrs), and the standby says
	// in_hot_standby=on in its handshake, so no connection is lent.
	direct := pool.DefaultConfig()
	direct.MinSize, direct.AcquireTimeout = 0, time.Second
	require.NoError(t, postgres.Register(bg, reg, "standby", standby.dsn(), postgres.Options{}, direct))
	err := postgres.With(bg, reg, "standby", func(*pgx.Conn) error {
		t.Error("a connection to a standby was lent to a source that asks for a writable server")
		return nil
	})
	require.ErrorIs(t, err, pool.ErrDial)
	assert.ErrorContains(t, err, "IsValid")

	r := runFailover(t, primary, standby, func(ctx context.Context, sql string, args []any, dest ...any) error {
		return postgres.With(ctx, reg, "db", func(c *pgx.Conn) error { return c.QueryRow(ctx, sql, args...).Scan(dest...) })
	})
	// Promoted, the same server serves that source.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = postgres.With(bg, reg, "standby", func(c *pgx.Conn) error {
			_, err := c.Exec(bg, "insert into kv values ('direct', inet_server_port())")
			return err
		})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the source's backoff, not a goroutine
	}
	require.NoError(t, err, "the promoted standby never served the source whose one host it is")

	require.False(t, r.firstWrite.IsZero(), "no write succeeded after the failover")
	assert.LessOrEqual(t, r.firstWrite.Sub(r.promoting), 500*time.Millisecond, "writes resumed too late after the promotion")
	assert.Equal(t, r.acked, r.present, "acknowledged writes missing from the new primary")
	assert.Zero(t, r.dup)
	assert.Zero(t, r.lost, "acknowledged writes not found on read-back")
	assert.Zero(t, r.failedAfter, "requests failed after the new primary accepted writes")
	// Fail-fast: a caller waits for one probe at most, never for
	// AcquireTimeout (the bound leaves room for a loaded machine's dial).
	assert.LessOrEqual(t, r.worstDuring, cfg.AcquireTimeout/10, "a request took too long to fail during the outage")
	assert.Positive(t, r.killed, "no pool connection to drop")
	// A dropped connection fails the request it was running, if any.
	assert.LessOrEqual(t, r.failedDropped, r.killed, "more requests failed than connections were dropped")
	assert.Equal(t, []int{standby.port}, r.portsAfterDrop, "writes after the drop landed elsewhere than the new primary")
	assert.LessOrEqual(t, r.onOld, r.acked)
}

// TestFailoverSideBySideWithPgxpool runs the failover above on this pool
// and on pgxpool (16 connections, its defaults), alternating, on fresh
// clusters each time, and logs each run's figures for bench/RESULTS.md:
// no thresholds. It runs only with POOL_BENCH_FAILOVER=yes (and what
// TestFailoverToAPromotedStandby needs).
func TestFailoverSideBySideWithPgxpool(t *testing.T) {
	if os.Getenv("POOL_BENCH_FAILOVER") != "yes" {
		t.Skip("a measurement for bench/RESULTS.md, about a minute: it runs only with POOL_BENCH_FAILOVER=yes, and POOL_TEST_FAILOVER=yes")
	}
	for round := range 3 {
		t.Run(fmt.Sprintf("pool/%d", round), func(t *testing.T) {
			primary, standby := failoverPair(t)
			reg := pool.NewRegistry[*postgres.Conn]()
			t.Cleanup(func() { _ = reg.Close() })
			cfg := pool.DefaultConfig()
			cfg.MinSize, cfg.MaxSize = 4, 16
			require.NoError(t, postgres.Register(bg, reg, "db", failoverDSN(primary, standby), postgres.Options{}, cfg))
			runFailover(t, primary, standby, func(ctx context.Context, sql string, args []any, dest ...any) error {
				return postgres.With(ctx, reg, "db", func(c *pgx.Conn) error { return c.QueryRow(ctx, sql, args...).Scan(dest...) })
			})
		})
		t.Run(fmt.Sprintf("pgxpool/%d", round), func(t *testing.T) {
			primary, standby := failoverPair(t)
			pcfg, err := pgxpool.ParseConfig(failoverDSN(primary, standby) + "&pool_max_conns=16")
			require.NoError(t, err)
			pp, err := pgxpool.NewWithConfig(bg, pcfg)
			require.NoError(t, err)
			t.Cleanup(pp.Close)
			runFailover(t, primary, standby, func(ctx context.Context, sql string, args []any, dest ...any) error {
				return pp.QueryRow(ctx, sql, args...).Scan(dest...)
			})
		})
	}
}

// failoverDSN is the clients' DSN: both hosts, the writable one wanted.
func failoverDSN(primary, standby *cluster) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write&application_name=pool-failover",
		primary.port, standby.port)
}

// queryRow runs one statement of a client and scans its row.
type queryRow func(ctx context.Context, sql string, args []any, dest ...any) error

// failoverResult is what runFailover measured.
type failoverResult struct {
	stopped, promoting, accepting, firstWrite time.Time

	requests, acked, present, dup, lost, onOld int
	failedDuring, failedAfter, failedDropped   int
	worstDuring                                time.Duration
	killed                                     int
	portsAfterDrop                             []int
}

// runFailover drives 64 clients through q, each writing a row with a
// unique key and reading it back, while the primary is stopped at once
// and, half a second later, the standby promoted; then the old primary
// comes back read-only under its address and the clients' connections
// are dropped. It logs and returns what it measured.
func runFailover(t *testing.T, primary, standby *cluster, q queryRow) failoverResult {
	t.Helper()
	const failoverDetection = 500 * time.Millisecond
	setup := primary.conn()
	_, err := setup.Exec(bg, "create table kv (k text primary key, port int not null)")
	require.NoError(t, err)
	_, err = setup.Exec(bg, "create table marker (at timestamptz)")
	require.NoError(t, err)

	type outcome struct {
		start, end time.Time
		write      bool
		err        error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		acked    []string
		lost     []string
		ports    = map[int]int{} // the server port of each acknowledged write, after the drop
		phase3   bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for c := range 64 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("c%d-%d", c, i)
				start := time.Now()
				var port int
				err := q(bg, "insert into kv values ($1, inet_server_port()) returning port", []any{key}, &port)
				end := time.Now()
				mu.Lock()
				outcomes = append(outcomes, outcome{start, end, true, err})
				if err == nil {
					acked = append(acked, key)
					if phase3 {
						ports[port]++
					}
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond) // a client's retry pause, not a sync point
					continue
				}
				start = time.Now()
				var found int
				err = q(bg, "select count(*) from kv where k = $1", []any{key}, &found)
				end = time.Now()
				mu.Lock()
				outcomes = append(outcomes, outcome{start, end, false, err})
				if err == nil && found != 1 {
					lost = append(lost, key)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second) // load before the failover

	// The new primary's own view: a connection to the standby, open across
	// the promotion, that writes as soon as it can.
	watch := standby.conn()
	r := failoverResult{}
	primary.ctl("-m", "immediate", "stop")
	stopped := time.Now() // the primary is gone
	r.stopped = stopped
	accepted := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			ctx, cancel := context.WithTimeout(bg, 2*time.Second)
			_, err := watch.Exec(ctx, "insert into marker values (now())")
			cancel()
			if err == nil {
				accepted <- time.Now()
				return
			}
			time.Sleep(time.Millisecond) // polling the server, not a goroutine
		}
		close(accepted)
	}()
	time.Sleep(failoverDetection) // the time an HA agent takes to decide
	promoting := time.Now()
	r.promoting = promoting
	standby.ctl("promote")
	accepting, ok := <-accepted
	require.True(t, ok, "the promoted standby never accepted a write")
	r.accepting = accepting
	time.Sleep(2 * time.Second) // load on the new primary

	// The old primary comes back under its address, read-only; the pool's
	// connections are dropped.
	primary.ctl("-o", "-c default_transaction_read_only=on -c synchronous_standby_names=''", "start")
	mu.Lock()
	phase3 = true
	mu.Unlock()
	dropped := time.Now()
	var killed int
	require.NoError(t, watch.QueryRow(bg, "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'pool-failover'").Scan(&killed))
	time.Sleep(time.Second) // load after the drop
	close(stop)
	wg.Wait()

	var firstWrite time.Time
	var failedAfter, failedDropped, failedDuring int
	var worstDuring time.Duration
	for _, o := range outcomes {
		if o.write && o.err == nil && o.start.After(stopped) && (firstWrite.IsZero() || o.end.Before(firstWrite)) {
			firstWrite = o.end
		}
		switch {
		case o.end.After(dropped): // running, or started, when the connections were dropped
			if o.err != nil {
				failedDropped++
			}
		case o.start.After(accepting):
			if o.err != nil {
				if failedAfter++; failedAfter <= 3 {
					t.Logf("failed %v after the new primary accepted writes: %v", o.start.Sub(accepting), o.err)
				}
			}
		case o.start.After(stopped) && o.err != nil:
			failedDuring++
			d := o.end.Sub(o.start)
			worstDuring = max(worstDuring, d)
		}
	}
	newPrimary := standby.conn()
	var present int
	require.NoError(t, newPrimary.QueryRow(bg, "select count(*) from kv where k = any($1)", acked).Scan(&present))
	var dup int
	require.NoError(t, newPrimary.QueryRow(bg, "select count(*) from (select k from kv group by k having count(*) > 1) d").Scan(&dup))
	var onOld int
	old := primary.conn()
	require.NoError(t, old.QueryRow(bg, "select count(*) from kv").Scan(&onOld))

	t.Logf("the new primary accepted writes %v after the promote began, %v after the stop; the clients' first write %v after the promote began (%v after it accepted)",
		accepting.Sub(promoting).Round(time.Millisecond), accepting.Sub(stopped).Round(time.Millisecond),
		firstWrite.Sub(promoting).Round(time.Millisecond), firstWrite.Sub(accepting).Round(time.Millisecond))
	t.Logf("%d requests, %d writes acknowledged, %d found on the new primary, %d duplicated, %d lost on read-back; %d failed during the outage (worst %v), %d failed after the new primary accepted writes; the old primary back read-only, %d backends dropped: %d requests failed, then writes by server port %v",
		len(outcomes), len(acked), present, dup, len(lost), failedDuring, worstDuring, failedAfter, killed, failedDropped, ports)

	var ro string
	require.NoError(t, old.QueryRow(bg, "show default_transaction_read_only").Scan(&ro))
	require.Equal(t, "on", ro, "the old primary came back writable")
	r.firstWrite = firstWrite
	r.requests, r.acked, r.present, r.dup, r.lost, r.onOld = len(outcomes), len(acked), present, dup, len(lost), onOld
	r.failedDuring, r.failedAfter, r.failedDropped, r.worstDuring = failedDuring, failedAfter, failedDropped, worstDuring
	r.killed = killed
	r.portsAfterDrop = slices.Sorted(maps.Keys(ports))
	return r
}
