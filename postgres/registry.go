package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/deepanalyze/pool"
)

// Register registers a PostgreSQL source under id in reg, from a DSN (URL
// or keyword/value) dialled with opts, pooled with cfg. reg may hold only
// PostgreSQL sources (PooledRegistry[*Conn]) or sources of mixed kinds
// (PooledRegistry[pool.Connector]); a registry whose connection type
// cannot hold a *Conn is refused (see pool.Adapt). ropts are passed on, so
// pool.WithTestConnect() checks the source now. Errors name the ID and
// never contain the password.
//
// A source on a pool.Budget shares its connections with the other
// sources of that Budget that reach the same server, database and user
// with the same credentials and differ only in run-time parameters (see
// SharedFactory), unless opts.NoShare is set or cfg.Share is set already.
func Register[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id, dsn string, opts Options, cfg pool.Config, ropts ...pool.RegisterOption) error {
	pcfg, err := parseSource(id, dsn, opts)
	if err != nil {
		return err
	}
	dial := Factory(pcfg, opts)
	if cfg.Budget != nil && !opts.NoShare && cfg.Share.Group == "" {
		dial, cfg.Share = SharedFactory(pcfg, opts)
	}
	f, err := adaptSource[C](id, dial)
	if err != nil {
		return err
	}
	return reg.Register(ctx, id, f, cfg, ropts...)
}

// parseSource parses source id's DSN, which may be empty only with
// opts.EnvDefaults; the error names the source, never the password.
func parseSource(id, dsn string, opts Options) (*pgx.ConnConfig, error) {
	if strings.TrimSpace(dsn) == "" && !opts.EnvDefaults {
		return nil, fmt.Errorf("postgres: source %q: %w", id, errEmptyDSN)
	}
	pcfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: source %q: %w", id, err)
	}
	return pcfg, nil
}

// adaptSource adapts dial to a registry of C, or says why it cannot.
func adaptSource[C pool.Connector](id string, dial pool.Factory[*Conn]) (pool.Factory[C], error) {
	f, err := pool.Adapt[C](dial)
	if err != nil {
		return nil, fmt.Errorf("postgres: source %q: this registry cannot hold PostgreSQL connections (%w)", id, err)
	}
	return f, nil
}

// Replace gives source id of reg a new DSN or Options, live, as after a
// rotated credential or a moved host (see pool.PooledRegistry.Replace):
// loans in flight finish on their connections, which are closed when
// released, and every later loan gets a connection dialled with the new
// ones. A source that shares its connections on a budget (see Register)
// cannot change them: Unregister and Register it. Errors never contain
// the password.
func Replace[C pool.Connector](reg *pool.PooledRegistry[C], id, dsn string, opts Options) error {
	pcfg, err := parseSource(id, dsn, opts)
	if err != nil {
		return err
	}
	f, err := adaptSource[C](id, Factory(pcfg, opts))
	if err != nil {
		return err
	}
	return reg.Replace(id, f)
}

// With runs fn with the pgx connection of source id, borrowed from reg
// for the length of the call, as PooledRegistry.With does: fn's error is
// returned unchanged, and one that wraps pool.ErrBadConn closes the
// connection instead of returning it. A source that is not PostgreSQL
// returns an error naming its type, and fn is not called.
//
// If fn fails on a connection the server had closed (a restart, a
// failover, pg_terminate_backend) and nothing of it reached the server
// (pgconn.SafeToRetry), With runs fn again on another connection, the
// dead one closed, up to four runs of fn in all. Each retry first pings
// the connection it is lent: one the server had closed too is closed
// and the next one is pinged, up to one more than the pool's MaxSize, so
// that a round of dead connections left idle costs pings, never a run of
// fn. With a ctx from Idempotent, it retries after any failure that left
// the connection closed, since fn may then run more than once; NoRetry
// turns retrying off. Nothing else is ever retried.
//
// A failure with SQLSTATE 25006 (a write on a read-only server) on a
// source whose DSN asks for a writable server (target_session_attrs=
// read-write, or a single host) means the server is a standby now: With
// resets the source (pool.PooledRegistry.Reset), once per generation of
// its connections, so that the next dials find the new primary (pgx
// tries a multi-host DSN's hosts in order). The error is returned, and fn
// is not run again: its write may be retried by the caller.
//
// The connection belongs to the pool: fn must not close it, keep it, or
// hand it to another goroutine that outlives the call.
func With[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id string, fn func(*pgx.Conn) error) error {
	var died bool  // the last attempt's connection was closed when fn returned
	var stale bool // the last retry's connection failed its ping, closed by the server
	attempt := func(c C, ping bool) error {
		pc, ok := any(c).(*Conn)
		if !ok {
			return fmt.Errorf("postgres: source %q is not a PostgreSQL source (its connections are %T)", id, c)
		}
		if ping {
			if err := pc.conn.Ping(ctx); err != nil {
				stale = pc.conn.PgConn().IsClosed()
				return fmt.Errorf("postgres: source %q: ping before a retry: %w (%w)", id, err, pool.ErrBadConn)
			}
		}
		err := fn(pc.conn)
		died = err != nil && pc.conn.PgConn().IsClosed()
		if err != nil && pc.health.writable && readOnly(err) && pc.health.gen.CompareAndSwap(pc.gen, pc.gen+1) {
			_ = reg.Reset(id) // the server turned read-only: a failover; this connection closes on release
		}
		return err
	}
	err := reg.With(ctx, id, func(c C) error { return attempt(c, false) })
	pings := 0
	for tries := 1; err != nil && died && tries < maxAttempts && retryable(ctx, err); tries++ {
		died = false
		if pings == 0 {
			pings = maxPings(ctx, reg, id)
		}
		for {
			stale = false
			err = reg.With(ctx, id, func(c C) error { return attempt(c, true) })
			if pings--; !stale || pings <= 0 || ctx.Err() != nil {
				break
			}
		}
		if stale {
			return err
		}
	}
	return err
}

// maxPings bounds the connections one retry of With pings: one more than
// the pool holds, so that it goes past every dead idle connection to a
// new one.
func maxPings[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id string) int {
	p, err := reg.Pool(ctx, id)
	if err != nil {
		return 1
	}
	return p.Config().MaxSize + 1
}

// maxAttempts bounds how often With runs fn when each attempt meets a
// connection the server had closed (killed while fn ran, after its
// ping).
const maxAttempts = 4

type retryKey struct{}

type retryMode uint8

const (
	retrySafe       retryMode = iota // the default: only what never reached the server
	retryIdempotent                  // any failure on a closed connection
	retryNever
)

// Idempotent returns a ctx under which With may run fn a second time after
// any failure that left its connection closed: for a callback that reads,
// or whose writes are safe to repeat.
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, retryKey{}, retryIdempotent)
}

// NoRetry returns a ctx under which With never runs fn a second time.
func NoRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, retryKey{}, retryNever)
}

// retryable reports whether With may run fn again after err, which fn
// returned on a connection that the server had closed.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	mode, _ := ctx.Value(retryKey{}).(retryMode)
	switch mode {
	case retryNever:
		return false
	case retryIdempotent:
		return true
	}
	return pgconn.SafeToRetry(err)
}
