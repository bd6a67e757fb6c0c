package postgres_test

// A server that turned read-only or is changing, and a DSN replaced live:
// what a failover asks of a source.

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// Which DSNs ask for a writable server: the ones whose 25006 resets the
// source.
func TestWhichDSNsAskForAWritableServer(t *testing.T) {
	for _, tc := range []struct {
		dsn  string
		want bool
	}{
		{"postgres://u@h:5432/db", true},
		{"postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write", true},
		{"postgres://u@h1:5432,h2:5433/db", false},
		{"postgres://u@h1:5432,h2:5433/db?target_session_attrs=any", false},
		{"postgres://u@h:5432/db?target_session_attrs=read-only", false},
		{"postgres://u@h:5432/db?target_session_attrs=prefer-standby", false},
	} {
		assert.Equal(t, tc.want, postgres.WantsWritable(tc.dsn), tc.dsn)
	}
}

// A server that answers a write with SQLSTATE 25006 (read-only, as a
// standby does after a failover) resets the source once per generation
// of its connections: two loans of the same generation failing together
// reset it once; a connection dialled after that reset, failing again,
// resets it again. The server here is made read-only for the source's
// sessions (default_transaction_read_only in the DSN).
func TestReadOnlyServerResetsTheSourceOncePerGeneration(t *testing.T) {
	base := dsn(t)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	a := admin(t)
	table := scratchTable(t, a, "ro")
	reg := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 0, 2
	ro := base + sep + "options=-c%20default_transaction_read_only%3Don"
	require.NoError(t, postgres.Register(bg, reg, "db", ro, postgres.Options{}, pcfg))
	p, err := reg.Pool(bg, "db")
	require.NoError(t, err)

	var inside sync.WaitGroup
	inside.Add(2)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			errs <- postgres.With(bg, reg, "db", func(c *pgx.Conn) error {
				inside.Done()
				inside.Wait() // both loans are of the first generation
				_, err := c.Exec(bg, "insert into "+table+" values (1)")
				return err
			})
		}()
	}
	for range 2 {
		var pe *pgconn.PgError
		err := <-errs
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "25006", pe.Code)
	}
	s := p.Stats()
	assert.EqualValues(t, 1, s.Resets, "two loans of one generation reset the source %d times", s.Resets)
	assert.EqualValues(t, 2, s.ClosedReset, "the read-only connections were kept")

	err = postgres.With(bg, reg, "db", func(c *pgx.Conn) error {
		_, err := c.Exec(bg, "insert into "+table+" values (1)")
		return err
	})
	require.Error(t, err)
	assert.EqualValues(t, 2, p.Stats().Resets, "a connection of the next generation did not reset the source")

	// A read is not a write: it does not reset anything.
	require.NoError(t, postgres.With(bg, reg, "db", func(c *pgx.Conn) error {
		var v int
		return c.QueryRow(bg, "select 1").Scan(&v)
	}))
	assert.EqualValues(t, 2, p.Stats().Resets)
}

// A dial answered by a server that is changing (starting up, shutting
// down, a standby where a primary is asked for) matches pool.ErrNotReady,
// on any host of a multi-host DSN; a refused TCP connection, a bad
// password and a full server do not.
func TestWhichDialErrorsMeanTheServerIsNotReady(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:5433: connect: connection refused")
	shutting := &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is shutting down"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a standby, for target_session_attrs=read-write", fmt.Errorf("connect: %w", errors.Join(refused, pgconn.ErrReadOnlyConnection)), true},
		{"shutting down, on the second host", fmt.Errorf("connect: %w", errors.Join(refused, shutting)), true},
		{"starting up", fmt.Errorf("connect: %w", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}), true},
		{"refused", fmt.Errorf("connect: %w", refused), false},
		{"a bad password", fmt.Errorf("connect: %w", &pgconn.PgError{Code: "28P01"}), false},
		{"a full server", postgres.AtCapacity(fmt.Errorf("connect: %w", &pgconn.PgError{Code: "53300"})), false},
	} {
		got := postgres.NotReady(tc.err)
		assert.Equal(t, tc.want, errors.Is(got, pool.ErrNotReady), tc.name)
		assert.ErrorIs(t, got, tc.err, "%s: the cause is kept", tc.name)
		assert.Equal(t, tc.err.Error(), got.Error(), tc.name)
	}
}

// Replace changes a registered source's DSN live, as a credential
// rotation or a host change does: a loan in flight finishes on its old
// connection, and every later loan gets a connection dialled with the
// new DSN; a bad DSN is refused and changes nothing.
func TestReplaceTheDSNLive(t *testing.T) {
	base := dsn(t)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	reg := pool.NewRegistry[*postgres.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 2, 4
	tag := fmt.Sprintf("replace%d", time.Now().UnixNano()%1e9)
	require.NoError(t, postgres.Register(bg, reg, "db", base+sep+"application_name="+tag+"-old", postgres.Options{}, pcfg))
	name := func(c *pgx.Conn) string {
		var s string
		require.NoError(t, c.QueryRow(bg, "select current_setting('application_name')").Scan(&s))
		return s
	}
	held, err := reg.Get(bg, "db")
	require.NoError(t, err)
	assert.Equal(t, tag+"-old", name(held.Conn().Conn()))

	require.NoError(t, postgres.Replace(reg, "db", base+sep+"application_name="+tag+"-new", postgres.Options{}))
	assert.Equal(t, tag+"-old", name(held.Conn().Conn()), "the loan in flight lost its connection")
	for range 6 {
		require.NoError(t, postgres.With(bg, reg, "db", func(c *pgx.Conn) error {
			assert.Equal(t, tag+"-new", name(c))
			return nil
		}))
	}
	require.NoError(t, reg.Release("db", held))
	var old int
	a := admin(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		require.NoError(t, a.QueryRow(bg, "select count(*) from pg_stat_activity where application_name = $1", tag+"-old").Scan(&old))
		if old == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the server, not a goroutine
	}
	assert.Zero(t, old, "connections of the old DSN still open")

	err = postgres.Replace(reg, "db", "postgres://u:s3cret@[::1", postgres.Options{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.ErrorIs(t, postgres.Replace(reg, "nope", base, postgres.Options{}), pool.ErrUnknownSource)
	require.NoError(t, postgres.With(bg, reg, "db", func(c *pgx.Conn) error {
		assert.Equal(t, tag+"-new", name(c), "a refused Replace changed the source")
		return nil
	}))
}
