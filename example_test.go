package pool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/deepanalyze/pool"
)

// pgConn stands in for a database connection.
type pgConn struct{ db string }

func (c *pgConn) Ping(context.Context) error { return nil }
func (c *pgConn) Close() error               { return nil }
func (c *pgConn) Query(q string) string      { return c.db + ": " + strings.ToUpper(q) }

// blobConn stands in for a blob-store client.
type blobConn struct{ container string }

func (c *blobConn) Ping(context.Context) error { return nil }
func (c *blobConn) Close() error               { return nil }
func (c *blobConn) Get(name string) string     { return c.container + "/" + name }

func ExamplePool() {
	ctx := context.Background()
	dials := 0
	dial := func(context.Context) (*pgConn, error) {
		dials++
		return &pgConn{db: "sales"}, nil
	}
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	p, err := pool.New(dial, cfg)
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for range 3 {
		err := p.With(ctx, func(c *pgConn) error {
			fmt.Println(c.Query("select 1"))
			return nil
		})
		if err != nil {
			panic(err)
		}
	}
	s := p.Stats()
	fmt.Printf("dials=%d acquires=%d idle=%d\n", dials, s.AcquireCount, s.Idle)
	// Output:
	// sales: SELECT 1
	// sales: SELECT 1
	// sales: SELECT 1
	// dials=1 acquires=3 idle=1
}

func ExamplePool_Acquire() {
	ctx := context.Background()
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	p, err := pool.New(func(context.Context) (*pgConn, error) { return &pgConn{db: "sales"}, nil }, cfg)
	if err != nil {
		panic(err)
	}
	defer p.Close()

	pc, err := p.Acquire(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(pc.Conn().Query("select now()"))
	pc.Release() // or pc.Discard() if the connection is broken
	fmt.Println("in use:", p.Stats().InUse)
	// Output:
	// sales: SELECT NOW()
	// in use: 0
}

func ExampleManager() {
	ctx := context.Background()
	m, err := pool.NewManager(func(_ context.Context, id string) (pool.Factory[*pgConn], pool.Config, error) {
		cfg := pool.DefaultConfig()
		cfg.MinSize = 0
		if id == "reports" {
			cfg.MaxSize = 2 // each ID can have its own Config
		}
		return func(context.Context) (*pgConn, error) { return &pgConn{db: id}, nil }, cfg, nil
	})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	for _, id := range []string{"sales", "reports", "sales"} {
		p, err := m.Pool(ctx, id) // created on first use, exactly once
		if err != nil {
			panic(err)
		}
		err = p.With(ctx, func(c *pgConn) error {
			fmt.Println(c.Query("select count(*) from t"))
			return nil
		})
		if err != nil {
			panic(err)
		}
	}
	for _, id := range m.IDs() {
		p, ok := m.Lookup(id)
		if !ok {
			panic("no pool for " + id)
		}
		fmt.Printf("%s: max %d, %d acquires\n", id, p.Config().MaxSize, p.Stats().AcquireCount)
	}
	// Output:
	// sales: SELECT COUNT(*) FROM T
	// reports: SELECT COUNT(*) FROM T
	// sales: SELECT COUNT(*) FROM T
	// reports: max 2, 1 acquires
	// sales: max 10, 2 acquires
}

// A registry of Connector holds sources of different kinds; handlers
// type-assert to the kind they expect.
func ExamplePooledRegistry() {
	ctx := context.Background()
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Close()

	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	err := reg.Register(ctx, "pg-sales", func(context.Context) (pool.Connector, error) {
		return &pgConn{db: "sales"}, nil
	}, cfg, pool.WithTestConnect())
	if err != nil {
		panic(err)
	}
	err = reg.Register(ctx, "blob-logs", func(context.Context) (pool.Connector, error) {
		return &blobConn{container: "logs"}, nil
	}, cfg)
	if err != nil {
		panic(err)
	}

	err = reg.With(ctx, "pg-sales", func(c pool.Connector) error {
		fmt.Println(c.(*pgConn).Query("select 1"))
		return nil
	})
	if err != nil {
		panic(err)
	}
	err = reg.With(ctx, "blob-logs", func(c pool.Connector) error {
		fmt.Println(c.(*blobConn).Get("2026-11-30.log"))
		return nil
	})
	if err != nil {
		panic(err)
	}
	err = reg.With(ctx, "pg-missing", func(pool.Connector) error { return nil })
	fmt.Println(errors.Is(err, pool.ErrUnknownSource), err)
	fmt.Println(reg.IDs())
	// Output:
	// sales: SELECT 1
	// logs/2026-11-30.log
	// true pool: source "pg-missing": unknown source
	// [blob-logs pg-sales]
}

// Adapt puts a Factory written for one connection type into a registry
// that holds several kinds.
func ExampleAdapt() {
	ctx := context.Background()
	dialSales := func(context.Context) (*pgConn, error) { return &pgConn{db: "sales"}, nil }

	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Close()
	f, err := pool.Adapt[pool.Connector](dialSales)
	if err != nil {
		panic(err)
	}
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	if err := reg.Register(ctx, "pg-sales", f, cfg); err != nil {
		panic(err)
	}
	err = reg.With(ctx, "pg-sales", func(c pool.Connector) error {
		fmt.Println(c.(*pgConn).Query("select 1"))
		return nil
	})
	fmt.Println(err)

	_, err = pool.Adapt[*blobConn](dialSales)
	fmt.Println(err)
	// Output:
	// sales: SELECT 1
	// <nil>
	// pool: Adapt: a *pool_test.pgConn cannot be held as a *pool_test.blobConn
}
