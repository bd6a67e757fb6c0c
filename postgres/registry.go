package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
)

// Register registers a PostgreSQL source under id in reg, from a DSN (URL
// or keyword/value) dialled with opts, pooled with cfg. reg may hold only
// PostgreSQL sources (PooledRegistry[*Conn]) or sources of mixed kinds
// (PooledRegistry[pool.Connector]); a registry whose connection type
// cannot hold a *Conn is refused (see pool.Adapt). ropts are passed on, so
// pool.WithTestConnect() checks the source now. Errors name the ID and
// never contain the password.
func Register[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id, dsn string, opts Options, cfg pool.Config, ropts ...pool.RegisterOption) error {
	dial, err := FactoryFromDSN(dsn, opts)
	if err != nil {
		return fmt.Errorf("postgres: source %q: %w", id, err)
	}
	f, err := pool.Adapt[C](dial)
	if err != nil {
		return fmt.Errorf("postgres: source %q: this registry cannot hold PostgreSQL connections (%w)", id, err)
	}
	return reg.Register(ctx, id, f, cfg, ropts...)
}

// With runs fn with the pgx connection of source id, borrowed from reg
// for the length of the call, as PooledRegistry.With does: fn's error is
// returned unchanged, and one that wraps pool.ErrBadConn closes the
// connection instead of returning it. A source that is not PostgreSQL
// returns an error naming its type, and fn is not called.
//
// The connection belongs to the pool: fn must not close it, keep it, or
// hand it to another goroutine that outlives the call.
func With[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id string, fn func(*pgx.Conn) error) error {
	return reg.With(ctx, id, func(c C) error {
		pc, ok := any(c).(*Conn)
		if !ok {
			return fmt.Errorf("postgres: source %q is not a PostgreSQL source (its connections are %T)", id, c)
		}
		return fn(pc.conn)
	})
}
