package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// pgQuerier runs the load's query on a PostgreSQL connection; it keeps the
// adapter's IsValid and Reset.
type pgQuerier struct{ *postgres.Conn }

func (q pgQuerier) Query(ctx context.Context, n int) (int, error) {
	var v int
	err := q.Conn.Conn().QueryRow(ctx, "select $1::int * 2", n).Scan(&v)
	return v, err
}

// postgresBackend registers o.sources IDs, all on the server at o.dsn,
// with the default (session-resetting) adapter options.
func postgresBackend(ctx context.Context, o options) (*backend, error) {
	cfg, err := postgres.ParseDSN(o.dsn)
	if err != nil {
		return nil, err
	}
	var opened atomic.Int64
	dial := postgres.Factory(cfg, postgres.Options{})
	counted := func(ctx context.Context) (querier, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		opened.Add(1)
		return pgQuerier{c}, nil
	}
	reg := pool.NewRegistry[querier]()
	b := &backend{describe: fmt.Sprintf("PostgreSQL %s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)}
	for i := range o.sources {
		id := fmt.Sprintf("pg-%d", i+1)
		b.ids = append(b.ids, id)
		if err := reg.Register(ctx, id, counted, poolConfig(o), pool.WithTestConnect()); err != nil {
			_ = reg.Close()
			return nil, err
		}
	}
	b.modes = bothModes(reg, func(ctx context.Context, _ string) (querier, error) { return counted(ctx) }, opened.Load)
	b.close = func() error { return reg.Shutdown(context.Background()) }
	return b, nil
}
