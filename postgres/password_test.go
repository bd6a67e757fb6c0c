package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// Options.Password fails a dial with an error that wraps the provider's,
// names the server, and never shows a password; a provider that hangs is
// cut off by ConnectTimeout; an empty answer is refused. No server needed:
// the dial stops before it connects.
func TestPasswordProviderErrors(t *testing.T) {
	cfg, err := postgres.ParseDSN("postgres://app:dsn-secret@127.0.0.1:1/db")
	require.NoError(t, err)

	denied := errors.New("token service said no")
	dial := postgres.Factory(cfg, postgres.Options{Password: func(context.Context) (string, error) {
		return "half-token-secret", denied
	}})
	_, err = dial(bg)
	require.ErrorIs(t, err, denied)
	assert.Contains(t, err.Error(), "app@127.0.0.1:1/db")
	assert.NotContains(t, err.Error(), "half-token-secret")
	assert.NotContains(t, err.Error(), "dsn-secret")

	dial = postgres.Factory(cfg, postgres.Options{Password: func(context.Context) (string, error) { return "", nil }})
	_, err = dial(bg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "empty password")

	dial = postgres.Factory(cfg, postgres.Options{
		ConnectTimeout: 50 * time.Millisecond,
		Password: func(ctx context.Context) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		},
	})
	start := time.Now()
	_, err = dial(bg)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)

	// The provider's password, not the DSN's, is what the dial uses: the
	// server behind port 1 is absent, so the connect error is the proof
	// that the dial went on, and it shows neither password.
	var calls atomic.Int32
	dial = postgres.Factory(cfg, postgres.Options{Password: func(context.Context) (string, error) {
		calls.Add(1)
		return "provided-secret", nil
	}})
	_, err = dial(bg)
	require.Error(t, err)
	assert.Equal(t, int32(1), calls.Load())
	assert.Contains(t, err.Error(), "connect to app@127.0.0.1:1/db")
	assert.NotContains(t, err.Error(), "provided-secret")
	assert.NotContains(t, err.Error(), "dsn-secret")
}

// passwordAuth makes the server check role's password, which this
// machine's server does not (trust): it puts scram-sha-256 lines for role
// alone at the top of pg_hba.conf, through SQL (so it needs a superuser
// DSN), reloads, and puts the file back when the test ends. Because it
// rewrites the server's configuration, it runs only with
// POOL_TEST_RECONFIGURES_PG=yes.
func passwordAuth(t *testing.T, a *pgx.Conn, role string) {
	t.Helper()
	if os.Getenv("POOL_TEST_RECONFIGURES_PG") != "yes" {
		t.Skip("this test rewrites the server's pg_hba.conf (for a role of its own) and reloads it: it runs only with POOL_TEST_RECONFIGURES_PG=yes (.ci/run sets it, on CI's own server)")
	}
	var file, orig string
	require.NoError(t, a.QueryRow(bg, "select current_setting('hba_file')").Scan(&file))
	require.NoError(t, a.QueryRow(bg, "select pg_read_file($1)", file).Scan(&orig))
	write := func(content string) {
		var oid uint32
		require.NoError(t, a.QueryRow(bg, "select lo_from_bytea(0, $1)", []byte(content)).Scan(&oid))
		_, err := a.Exec(bg, "select lo_export($1, $2)", oid, file)
		_, _ = a.Exec(bg, "select lo_unlink($1)", oid)
		require.NoError(t, err)
		_, err = a.Exec(bg, "select pg_reload_conf()")
		require.NoError(t, err)
	}
	lines := fmt.Sprintf("local all %[1]s scram-sha-256\nhost all %[1]s 127.0.0.1/32 scram-sha-256\nhost all %[1]s ::1/128 scram-sha-256\n", role)
	write(lines + orig)
	t.Cleanup(func() { write(orig) })
}

// refused reports whether the server refuses role with password
// (SQLSTATE 28P01, invalid_password).
func refused(t *testing.T, base, role, password string) bool {
	t.Helper()
	cfg, err := pgx.ParseConfig(base)
	require.NoError(t, err)
	cfg.User, cfg.Password = role, password
	c, err := pgx.ConnectConfig(bg, cfg)
	if err == nil {
		_ = c.Close(bg)
		return false
	}
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "connect as %s: %v", role, err)
	require.Equal(t, "28P01", pe.Code, "connect as %s: %v", role, err)
	return true
}

// A real role's password rotates while a pool of it serves 8 callers:
// connections opened with the old password keep working (the same
// backend answers after the rotation), new connections authenticate with
// the new one (the old one is refused by then), and no caller sees an
// error. A wrong password fails the dial with the server's 28P01 and
// without the password in the text.
func TestPasswordRotatesUnderLoad(t *testing.T) {
	base := dsn(t)
	a := admin(t)
	role := fmt.Sprintf("pool_rotate_%d", time.Now().UnixNano()%1e9)
	first, second := fmt.Sprintf("first-%d", time.Now().UnixNano()), fmt.Sprintf("second-%d", time.Now().UnixNano())
	_, err := a.Exec(bg, fmt.Sprintf("CREATE ROLE %s LOGIN CONNECTION LIMIT 12 PASSWORD '%s'", role, first))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = a.Exec(bg, "select pg_terminate_backend(pid) from pg_stat_activity where usename = $1", role)
		_, _ = a.Exec(bg, "DROP ROLE IF EXISTS "+role)
	})
	passwordAuth(t, a, role)
	// The reload is asynchronous: wait until the server checks passwords.
	deadline := time.Now().Add(10 * time.Second)
	for !refused(t, base, role, "wrong") {
		require.True(t, time.Now().Before(deadline), "the server still lets %s in with a wrong password", role)
		time.Sleep(20 * time.Millisecond)
	}
	require.False(t, refused(t, base, role, first))

	cfg, err := postgres.ParseDSN(base)
	require.NoError(t, err)
	cfg.User, cfg.Password = role, ""

	// A wrong password: the server's refusal, and no password in the text.
	_, err = postgres.Factory(cfg, postgres.Options{Password: func(context.Context) (string, error) {
		return "wrong-" + first, nil
	}})(bg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "28P01")
	assert.NotContains(t, err.Error(), "wrong-"+first)

	// The provider, as a secret store would be. The rotation waits for the
	// dials in flight and holds new ones back while it changes the
	// server, as a rotation with an overlap would: a dial that read the
	// old password just before the change would otherwise be refused.
	var (
		mu      sync.RWMutex
		current = first
		asked   = map[string]int{}
		amu     sync.Mutex
	)
	provider := func(context.Context) (string, error) {
		amu.Lock()
		defer amu.Unlock()
		asked[current]++
		return current, nil
	}
	dial := postgres.Factory(cfg, postgres.Options{Password: provider})
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 2, 8
	pcfg.MaxLifetime = 150 * time.Millisecond // keeps the pool dialling
	pcfg.AcquireTimeout = 5 * time.Second
	p, err := pool.New(func(ctx context.Context) (*postgres.Conn, error) {
		mu.RLock()
		defer mu.RUnlock()
		return dial(ctx)
	}, pcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	held, err := p.Acquire(bg)
	require.NoError(t, err)
	var heldPID uint32
	require.NoError(t, held.Conn().Conn().QueryRow(bg, "select pg_backend_pid()").Scan(&heldPID))

	var (
		served, rotatedAt   atomic.Int64
		rotatedTime         atomic.Int64 // when, in UnixNano
		failures            []error
		fmu                 sync.Mutex
		warm, after         = make(chan struct{}), make(chan struct{})
		warmOnce, afterOnce sync.Once
		stop                = make(chan struct{})
		wg                  sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := p.With(bg, func(c *postgres.Conn) error {
					_, err := c.Conn().Exec(bg, "select 1")
					return err
				})
				if err != nil {
					fmu.Lock()
					failures = append(failures, err)
					fmu.Unlock()
				}
				n := served.Add(1)
				if n >= 200 {
					warmOnce.Do(func() { close(warm) })
				}
				// 2,000 more requests, spanning at least three
				// MaxLifetimes (a fast machine serves 2,000 in less).
				if r := rotatedAt.Load(); r > 0 && n >= r+2000 && time.Since(time.Unix(0, rotatedTime.Load())) >= 3*pcfg.MaxLifetime {
					afterOnce.Do(func() { close(after) })
				}
			}
		})
	}
	<-warm
	mu.Lock()
	_, err = a.Exec(bg, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, second))
	amu.Lock()
	current = second
	amu.Unlock()
	createdAtRotation := p.Stats().Created
	mu.Unlock()
	require.NoError(t, err)
	rotatedTime.Store(time.Now().UnixNano())
	rotatedAt.Store(served.Load())
	<-after
	close(stop)
	wg.Wait()

	assert.Empty(t, failures, "callers saw errors during the rotation")
	// The connection opened with the old password still works, on the
	// same backend.
	var pid uint32
	require.NoError(t, held.Conn().Conn().QueryRow(bg, "select pg_backend_pid()").Scan(&pid))
	assert.Equal(t, heldPID, pid)
	held.Release()
	// New connections came from the new password: the old one is refused.
	assert.True(t, refused(t, base, role, first))
	st := p.Stats()
	amu.Lock()
	// Each connection opened since asked for the new password (a dial may
	// have asked and not yet been counted).
	assert.GreaterOrEqual(t, int64(asked[second]), st.Created-createdAtRotation)
	amu.Unlock()
	assert.Zero(t, st.DialErrors, "a dial failed during the rotation")
	assert.Greater(t, st.Created, createdAtRotation, "no connection was opened after the rotation")
	stats := fmt.Sprintf("%+v", st)
	assert.NotContains(t, stats, first)
	assert.NotContains(t, stats, second)
	t.Logf("served %d, opened %d connections after the rotation, asked for the new password %d times",
		served.Load(), st.Created-createdAtRotation, asked[second])
	assert.False(t, strings.Contains(fmt.Sprint(failures), second))
}
