package postgres_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// withParams returns base with the query parameters kv added.
func withParams(t *testing.T, base string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads a + as itself
	return u.String()
}

// tenants registers sources a and b of one server, differing only in the
// parameters given, on a budget of one connection: every loan of one
// after the other's is a move of the same backend.
func tenants(t *testing.T, opts postgres.Options, a, b []string) *pool.PooledRegistry[*postgres.Conn] {
	t.Helper()
	base := dsn(t)
	budget, err := pool.NewBudget(1)
	require.NoError(t, err)
	reg := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize, pcfg.Budget = 0, 1, budget
	require.NoError(t, postgres.Register(bg, reg, "a", withParams(t, base, a...), opts, pcfg))
	require.NoError(t, postgres.Register(bg, reg, "b", withParams(t, base, b...), opts, pcfg))
	return reg
}

// A connection that moves from one tenant's source to another's is reset
// first, whatever the session tracker says: each kind of session state
// left by a borrower of source a is looked for by the next borrower, of
// source b, on the same backend. The sources reset only transactions on
// release (ResetTransaction), so that only the move's reset stands
// between them.
func TestAMovedConnectionCarriesNothingAcrossTenants(t *testing.T) {
	items := sessionItems(t, admin(t))
	reg := tenants(t, postgres.Options{Reset: postgres.ResetTransaction},
		[]string{"application_name", "pooltest-a"}, []string{"application_name", "pooltest-b"})
	var pid uint32
	for _, it := range items {
		t.Run(it.name, func(t *testing.T) {
			require.NoError(t, postgres.With(bg, reg, "a", func(c *pgx.Conn) error {
				if pid == 0 {
					pid = c.PgConn().PID()
				}
				assert.Equal(t, pid, c.PgConn().PID(), "a new backend: isolation not tested")
				return it.dirty(c)
			}))
			require.NoError(t, postgres.With(bg, reg, "b", func(c *pgx.Conn) error {
				assert.Equal(t, pid, c.PgConn().PID(), "the connection did not move: isolation not tested")
				assert.Equal(t, byte('I'), c.PgConn().TxStatus(), "transaction carried over")
				got, want := it.check(c)
				assert.Equal(t, want, got, "%s carried over from tenant a to tenant b", it.name)
				var app string
				require.NoError(t, c.QueryRow(bg, "SHOW application_name").Scan(&app))
				assert.Equal(t, "pooltest-b", app, "b's own setting was not bound")
				return nil
			}))
		})
	}
	st := reg.Stats()
	assert.EqualValues(t, 1, st["a"].Created+st["b"].Created, "the tenants did not share one connection")
	assert.Positive(t, st["b"].MovedIn)
	assert.Zero(t, st["a"].ClosedBroken+st["b"].ClosedBroken, "a bind failed and closed the connection")
}

// Tenants with a schema each, through search_path, read a table of one
// name and different shapes with one SQL text through pgx's default
// statement cache, on one backend that moves between them: each always
// reads its own rows, never through a statement or description cached
// for the other.
func TestTenantsOfOneDatabaseReadTheirOwnSchemaThroughTheStatementCache(t *testing.T) {
	a := admin(t)
	for _, sql := range []string{
		"DROP SCHEMA IF EXISTS pooltest_a CASCADE", "DROP SCHEMA IF EXISTS pooltest_b CASCADE",
		"CREATE SCHEMA pooltest_a", "CREATE SCHEMA pooltest_b",
		"CREATE TABLE pooltest_a.t (id int, owner text)", "INSERT INTO pooltest_a.t VALUES (1, 'a')",
		"CREATE TABLE pooltest_b.t (owner text, id bigint, extra bool)", "INSERT INTO pooltest_b.t VALUES ('b', 2, true), ('b', 3, false)",
	} {
		_, err := a.Exec(bg, sql)
		require.NoError(t, err, sql)
	}
	t.Cleanup(func() { _, _ = a.Exec(bg, "DROP SCHEMA IF EXISTS pooltest_a, pooltest_b CASCADE") })
	reg := tenants(t, postgres.Options{},
		[]string{"search_path", "pooltest_a", "options", "-c pooltest.tenant=a"},
		[]string{"search_path", "pooltest_b", "options", "-c pooltest.tenant=b"})

	for i := range 10 {
		for _, id := range []string{"a", "b"} {
			require.NoError(t, postgres.With(bg, reg, id, func(c *pgx.Conn) error {
				rows, err := c.Query(bg, "select * from t order by 1, 2")
				if err != nil {
					return err
				}
				var owners []string
				for rows.Next() {
					vals, err := rows.Values()
					if err != nil {
						return err
					}
					switch id {
					case "a":
						require.Len(t, vals, 2, "round %d: a read a row of b's shape", i)
						owners = append(owners, fmt.Sprint(vals[1]))
					case "b":
						require.Len(t, vals, 3, "round %d: b read a row of a's shape", i)
						owners = append(owners, fmt.Sprint(vals[0]))
					}
				}
				require.NoError(t, rows.Err())
				want := map[string][]string{"a": {"a"}, "b": {"b", "b"}}[id]
				assert.Equal(t, want, owners, "round %d: tenant %s read another tenant's rows", i, id)
				var tenant string
				require.NoError(t, c.QueryRow(bg, "select current_setting('pooltest.tenant')").Scan(&tenant))
				assert.Equal(t, id, tenant, "round %d: tenant %s saw another tenant's setting", i, id)
				return nil
			}))
		}
	}
	st := reg.Stats()
	assert.EqualValues(t, 1, st["a"].Created+st["b"].Created, "the tenants did not share one connection")
	assert.GreaterOrEqual(t, st["a"].MovedIn+st["b"].MovedIn, int64(19))
}

// Sources that differ in what a connection is (the user, the database,
// the password, or an option that is not a setting) are not grouped, and
// a group's key never holds the password.
func TestOnlySourcesThatDifferInSettingsShareAGroup(t *testing.T) {
	base := dsn(t)
	group := func(dsn string, opts postgres.Options) string {
		cfg, err := postgres.ParseDSN(dsn)
		require.NoError(t, err)
		_, s := postgres.SharedFactory(cfg, opts)
		return s.Group
	}
	u, err := url.Parse(base)
	require.NoError(t, err)
	withPassword := *u
	withPassword.User = url.UserPassword(u.User.Username(), "s3cret-pw")
	otherUser := *u
	otherUser.User = url.User("someone_else")
	otherDB := *u
	otherDB.Path = "/other"

	g := group(base, postgres.Options{})
	require.NotEmpty(t, g)
	assert.Equal(t, g, group(withParams(t, base, "search_path", "x", "application_name", "y"), postgres.Options{}))
	assert.Equal(t, g, group(withParams(t, base, "options", "-c a.b=1 --c.d=2"), postgres.Options{}))
	assert.NotEqual(t, g, group(otherUser.String(), postgres.Options{}))
	assert.NotEqual(t, g, group(otherDB.String(), postgres.Options{}))
	assert.NotEqual(t, g, group(withPassword.String(), postgres.Options{}))
	assert.NotEqual(t, g, group(base, postgres.Options{Reset: postgres.ResetAlways}))
	assert.Empty(t, group(withParams(t, base, "options", "-B 100"), postgres.Options{}), "an option that is not a setting was shared")
	assert.NotContains(t, group(withPassword.String(), postgres.Options{}), "s3cret-pw")

	// NoShare keeps Register from sharing.
	budget, err := pool.NewBudget(2)
	require.NoError(t, err)
	reg := pool.NewRegistry[*postgres.Conn]()
	defer reg.Close()
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.Budget = 0, budget
	require.NoError(t, postgres.Register(bg, reg, "shared", base, postgres.Options{}, pcfg))
	require.NoError(t, postgres.Register(bg, reg, "own", base, postgres.Options{NoShare: true}, pcfg))
	for id, want := range map[string]bool{"shared": true, "own": false} {
		p, err := reg.Pool(bg, id)
		require.NoError(t, err)
		assert.Equal(t, want, p.Config().Share.Group != "", id)
		assert.False(t, strings.Contains(p.Config().Share.Group, "s3cret"))
	}
}
