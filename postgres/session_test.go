package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

func TestClassifyIsConservative(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"select 1", "clean"},
		{"  SELECT * FROM orders WHERE id = $1", "clean"},
		{"/* tenant 7 */ select name from t", "clean"},
		{"-- comment\ninsert into t values ($1)", "clean"},
		{"update t set x = 1 where id = 2", "clean"},
		{"delete from t", "clean"},
		{"with x as (select 1) select * from x", "clean"},
		{"(select 1) union (select 2)", "clean"},
		{"begin", "clean"},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE", "clean"},
		{"commit", "clean"},
		{"rollback to savepoint a", "clean"},
		{"select 1;", "clean"},
		{"select 1; set work_mem = '1GB'", "dirty"},
		{"begin; set role x", "dirty"},
		{"SET statement_timeout = 5", "dirty"},
		{"set local statement_timeout = 5", "dirty"},
		{"reset all", "dirty"},
		{"select set_config('work_mem', '1GB', false)", "dirty"},
		{"SELECT pg_catalog.SET_CONFIG('a.b', 'c', false)", "dirty"},
		{"select pg_advisory_lock(1)", "dirty"},
		{"select pg_try_advisory_lock(1)", "dirty"},
		{"select nextval('s')", "dirty"},
		{"select * into temp t2 from t", "dirty"},
		{"create temp table t (x int)", "dirty"},
		{"listen ch", "dirty"},
		{"declare c cursor with hold for select 1", "dirty"},
		{"do $$ begin perform 1; end $$", "dirty"},
		{"call proc()", "dirty"},
		{"copy t from stdin", "dirty"},
		{"set role tenant", "dirty"},
		{"SET SESSION AUTHORIZATION tenant", "dirty"},
		{"set search_path = tenant_7", "prepared"},
		{"select set_config('search_path', 'x', false)", "prepared"},
		{"PREPARE s AS select 1", "prepared"},
		{"deallocate s", "prepared"},
		{"execute s", "prepared"},
		{"", "dirty"},
		{"/* unterminated", "dirty"},
	} {
		assert.Equal(t, tc.want, postgres.Classify(tc.sql), "%q", tc.sql)
	}
}

// With the default Options, nothing a borrower does to its session
// reaches the next borrower of the same backend: each item is done by one
// borrower and looked for by the next, on one connection.
func TestDefaultResetIsolatesEverySessionItem(t *testing.T) {
	base := dsn(t)
	items := sessionItems(t, admin(t))
	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 1 // one backend, reused
	p := newPool(t, cfg, pcfg, postgres.Options{})
	var pid uint32
	for _, it := range items {
		t.Run(it.name, func(t *testing.T) {
			require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
				if pid == 0 {
					pid = c.Conn().PgConn().PID()
				}
				assert.Equal(t, pid, c.Conn().PgConn().PID(), "a new backend: isolation not tested")
				return it.dirty(c.Conn())
			}))
			require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
				assert.Equal(t, byte('I'), c.Conn().PgConn().TxStatus(), "transaction carried over")
				got, want := it.check(c.Conn())
				assert.Equal(t, want, got, "%s carried over to the next borrower", it.name)
				return nil
			}))
		})
	}
	assert.EqualValues(t, 0, p.Stats().ClosedBroken, "a reset failed and closed the connection")
}

// A release after plain queries and transactions costs no round trip, and
// pgx's statement cache survives a reset of a dirty session.
func TestCleanReleaseCostsNoRoundTrip(t *testing.T) {
	base := dsn(t)
	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 1
	p := newPool(t, cfg, pcfg, postgres.Options{})
	a := admin(t)
	table := fmt.Sprintf("pooltest_rows_%d", rand.Uint32()) // its own, dropped after
	_, err := a.Exec(bg, "CREATE TABLE "+table+" (id int primary key, v text)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = a.Exec(bg, "DROP TABLE IF EXISTS "+table) }) // before a closes (LIFO)

	var conn *postgres.Conn
	plain := func(c *postgres.Conn) error {
		conn = c
		pg := c.Conn()
		var v int
		if err := pg.QueryRow(bg, "select $1::int", 5).Scan(&v); err != nil {
			return err
		}
		tx, err := pg.Begin(bg)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(bg, "insert into "+table+" values ($1, 'x') on conflict (id) do update set v = excluded.v", 1); err != nil {
			return err
		}
		return tx.Commit(bg)
	}
	require.NoError(t, p.With(bg, plain))
	before := conn.ResetRoundTrips()
	for range 5 {
		require.NoError(t, p.With(bg, plain))
	}
	assert.Equal(t, before, conn.ResetRoundTrips(), "releases after plain queries made round trips")

	// A dirty session costs one round trip, and the cached statement of
	// "select $1::int" is still valid afterwards.
	require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
		_, err := c.Conn().Exec(bg, "SET work_mem = '8MB'")
		return err
	}))
	assert.Equal(t, before+1, conn.ResetRoundTrips())
	require.NoError(t, p.With(bg, plain))
	assert.Equal(t, before+1, conn.ResetRoundTrips())
}

// ResetAlways resets everything on every release, even what the tracer
// cannot see: a setting changed through the PgConn underneath.
func TestResetAlwaysCoversWhatIsNotTracked(t *testing.T) {
	base := dsn(t)
	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 1
	for _, mode := range []postgres.ResetMode{postgres.ResetSession, postgres.ResetAlways} {
		p := newPool(t, cfg, pcfg, postgres.Options{Reset: mode})
		require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
			_, err := c.Conn().PgConn().Exec(context.Background(), "SET statement_timeout = '4444ms'").ReadAll()
			return err
		}))
		var s string
		require.NoError(t, p.With(bg, func(c *postgres.Conn) error {
			return c.Conn().QueryRow(bg, "SHOW statement_timeout").Scan(&s)
		}))
		if mode == postgres.ResetAlways {
			assert.Equal(t, "0", s, "ResetAlways let an untracked setting through")
		} else {
			assert.Equal(t, "4444ms", s, "the documented gap of ResetSession: statements through the PgConn are not seen")
		}
		require.NoError(t, p.Close())
	}
}

// sessionItem is one kind of session state: what a borrower does, and
// what the next borrower sees of it, and should see.
type sessionItem struct {
	name  string
	dirty func(*pgx.Conn) error
	check func(*pgx.Conn) (any, any)
}

// sessionItems is every kind of session state a borrower can leave, each
// with the check the next borrower makes. The role and sequence they use
// are made here.
func sessionItems(t *testing.T, a *pgx.Conn) []sessionItem {
	t.Helper()
	_, err := a.Exec(bg, "DO $$ BEGIN CREATE ROLE pooltest_tenant NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	require.NoError(t, err)
	_, err = a.Exec(bg, "CREATE SEQUENCE IF NOT EXISTS pooltest_seq")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = a.Exec(bg, "DROP SEQUENCE IF EXISTS pooltest_seq")
		_, _ = a.Exec(bg, "DROP ROLE IF EXISTS pooltest_tenant")
	})

	exec := func(sqls ...string) func(*pgx.Conn) error {
		return func(c *pgx.Conn) error {
			for _, s := range sqls {
				if _, err := c.Exec(bg, s); err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			return nil
		}
	}
	query := func(sql string, want any) func(*pgx.Conn) (any, any) {
		return func(c *pgx.Conn) (any, any) {
			var got string
			if err := c.QueryRow(bg, sql).Scan(&got); err != nil {
				return err.Error(), want
			}
			return got, want
		}
	}
	count := func(sql string) func(*pgx.Conn) (any, any) {
		return query("select count(*)::text from ("+sql+") x", "0")
	}
	return []sessionItem{
		{"SET", exec("SET statement_timeout = '1234ms'"), query("SHOW statement_timeout", "0")},
		{"set_config", exec("SELECT set_config('statement_timeout', '4321ms', false)"), query("SHOW statement_timeout", "0")},
		{"SET ROLE", exec("SET ROLE pooltest_tenant"), query("select current_user::text", "postgres")},
		{"SET SESSION AUTHORIZATION", exec("SET SESSION AUTHORIZATION pooltest_tenant"), query("select current_user::text", "postgres")},
		{"search_path", exec("SET search_path = pg_catalog"), query("SHOW search_path", `"$user", public`)},
		{"custom setting", exec("SET myapp.tenant = '7'"), query("select coalesce(current_setting('myapp.tenant', true), '')", "")},
		{"temporary table", exec("CREATE TEMP TABLE pooltest_tmp (x int)"), count("select 1 from pg_class where relname = 'pooltest_tmp' and relpersistence = 't'")},
		{"SELECT INTO TEMP", exec("SELECT 1 AS x INTO TEMP pooltest_tmp2"), count("select 1 from pg_class where relname = 'pooltest_tmp2'")},
		{"advisory lock", exec("SELECT pg_advisory_lock(4242)"), count("select 1 from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()")},
		{"LISTEN", exec("LISTEN pooltest_channel"), count("select pg_listening_channels()")},
		{"cursor WITH HOLD", exec("DECLARE pooltest_cur CURSOR WITH HOLD FOR SELECT 1"), count("select 1 from pg_cursors where name = 'pooltest_cur'")},
		{"PREPARE by hand", exec("PREPARE pooltest_stmt AS SELECT 1"), count("select 1 from pg_prepared_statements where name = 'pooltest_stmt'")},
		{"pgx Prepare by name", func(c *pgx.Conn) error { _, err := c.Prepare(bg, "pooltest_pgx", "select 2"); return err },
			count("select 1 from pg_prepared_statements where name = 'pooltest_pgx'")},
		{"sequence currval", exec("SELECT nextval('pooltest_seq')"), func(c *pgx.Conn) (any, any) {
			var v int64
			err := c.QueryRow(bg, "select currval('pooltest_seq')").Scan(&v)
			if err != nil && strings.Contains(err.Error(), "not yet defined in this session") {
				return "undefined", "undefined"
			}
			return fmt.Sprint(v, err), "undefined"
		}},
		{"open transaction", exec("BEGIN", "SET LOCAL statement_timeout = '99ms'", "SET work_mem = '9MB'"), query("SHOW work_mem", "4MB")},
		{"failed transaction", func(c *pgx.Conn) error {
			_, _ = c.Exec(bg, "BEGIN")
			_, _ = c.Exec(bg, "select 1/0")
			return nil
		}, query("select 'ok'", "ok")},
		{"SET in a batch", func(c *pgx.Conn) error {
			b := &pgx.Batch{}
			b.Queue("select 1")
			b.Queue("SET statement_timeout = '777ms'")
			return c.SendBatch(bg, b).Close()
		}, query("SHOW statement_timeout", "0")},
	}
}
