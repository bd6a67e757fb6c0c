package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// layout is how the tenants' sources reach the server.
type layout int

const (
	// layoutOne: every tenant's source is the same DSN (a source per
	// tenant, as a service that registers each tenant does).
	layoutOne layout = iota
	// layoutSchemas: one database, a schema per tenant: each source's DSN
	// has search_path=fleet_tNN and options=-c fleet.tenant=NN, and the
	// request reads the tenant's table t unqualified.
	layoutSchemas
	// layoutDatabases: a database per tenant, fleet_dNN, each with its
	// table t; the DSN also sets fleet.tenant.
	layoutDatabases
)

func (l layout) String() string {
	return [...]string{"tenants of one DSN", "a schema per tenant in one database", "a database per tenant"}[l]
}

func schemaName(i int) string   { return fmt.Sprintf("fleet_t%02d", i) }
func databaseName(i int) string { return fmt.Sprintf("fleet_d%02d", i) }

// source is tenant i's DSN under s.layout.
func (s *server) source(i int) *pgx.ConnConfig {
	cfg := s.cfg.Copy()
	switch s.layout {
	case layoutSchemas:
		cfg.RuntimeParams["search_path"] = schemaName(i)
		cfg.RuntimeParams["options"] = "-c fleet.tenant=" + strconv.Itoa(i)
	case layoutDatabases:
		cfg.Database = databaseName(i)
		cfg.RuntimeParams["options"] = "-c fleet.tenant=" + strconv.Itoa(i)
	}
	return cfg
}

// factory is tenant i's Factory, and its Share when the pool is on a
// budget and s.share is set (as postgres.Register does).
func (s *server) factory(i int, cfg *pool.Config) pool.Factory[*postgres.Conn] {
	src := s.source(i)
	if cfg.Budget != nil && s.share {
		f, share := postgres.SharedFactory(src, postgres.Options{})
		cfg.Share = share
		return f
	}
	return postgres.Factory(src, postgres.Options{})
}

// useLayout makes the schemas or databases of l for n tenants, once, and
// sets it for the tenants made next. close drops them.
func (s *server) useLayout(ctx context.Context, l layout, n int) error {
	s.layout = l
	if l == layoutOne || s.made[l] {
		return nil
	}
	table := func(c *pgx.Conn, qualified string, i int) error {
		_, err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (tenant int, note text); INSERT INTO %[1]s VALUES (%d, 'row of tenant %[2]d'); GRANT SELECT ON %[1]s TO %[3]s",
			qualified, i, s.role))
		return err
	}
	for i := range n {
		switch l {
		case layoutSchemas:
			if _, err := s.admin.Exec(ctx, fmt.Sprintf("DROP SCHEMA IF EXISTS %[1]s CASCADE; CREATE SCHEMA %[1]s; GRANT USAGE ON SCHEMA %[1]s TO %s", schemaName(i), s.role)); err != nil {
				return fmt.Errorf("schema of tenant %d: %w", i, err)
			}
			if err := table(s.admin, schemaName(i)+".t", i); err != nil {
				return fmt.Errorf("table of tenant %d: %w", i, err)
			}
		case layoutDatabases:
			if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+databaseName(i)); err != nil {
				return err
			}
			if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+databaseName(i)+" STRATEGY FILE_COPY"); err != nil {
				return fmt.Errorf("database of tenant %d: %w", i, err)
			}
			acfg := s.admin.Config().Copy()
			acfg.Database = databaseName(i)
			c, err := pgx.ConnectConfig(ctx, acfg)
			if err != nil {
				return err
			}
			err = table(c, "public.t", i)
			_ = c.Close(ctx)
			if err != nil {
				return fmt.Errorf("table of tenant %d: %w", i, err)
			}
		}
	}
	s.made[l] = true
	s.madeN = max(s.madeN, n)
	return nil
}

// dropLayouts drops what useLayout made.
func (s *server) dropLayouts(ctx context.Context) {
	for i := range s.madeN {
		if s.made[layoutSchemas] {
			_, _ = s.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+schemaName(i)+" CASCADE")
		}
		if s.made[layoutDatabases] {
			_, _ = s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+databaseName(i)+" WITH (FORCE)")
		}
	}
}

// errCrossed is a request that saw another tenant's row or setting.
var errCrossed = errors.New("a request saw another tenant's row or setting")

// work is one request of tenant on c, holding it for d: under layoutOne
// a sleep; otherwise a read of the tenant's table t, unqualified, through
// pgx's statement cache, with the tenant's setting, in the same round
// trip as the sleep. A row or setting of another tenant is errCrossed.
func (s *server) work(ctx context.Context, c *postgres.Conn, tenant int, d time.Duration) error {
	if s.layout == layoutOne {
		return hold(ctx, c, d)
	}
	var got int
	var setting string
	err := c.Conn().QueryRow(ctx, "select tenant, current_setting('fleet.tenant', true) from t, pg_sleep($1)", d.Seconds()).Scan(&got, &setting)
	switch {
	case err != nil:
		return err
	case got != tenant || setting != strconv.Itoa(tenant):
		return fmt.Errorf("%w: tenant %d read the row of %d and the setting %q", errCrossed, tenant, got, setting)
	}
	return nil
}
