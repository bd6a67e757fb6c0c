package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// A PostgreSQL database registered by ID, and a handler's query on a
// borrowed *pgx.Conn whose session is reset for the next borrower. It
// needs a server: TestExampleRunsAgainstTheServer runs it at PG_DSN.
func Example() {
	ctx := context.Background()
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Shutdown(ctx)

	cfg := pool.DefaultConfig()
	cfg.MaxSize = 4
	err := postgres.Register(ctx, reg, "pg-sales", os.Getenv("PG_DSN"),
		postgres.Options{}, cfg, pool.WithTestConnect())
	if err != nil {
		log.Fatal(err) // names the source; never contains the password
	}

	var n int
	err = postgres.With(ctx, reg, "pg-sales", func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "select $1::int * 2", 21).Scan(&n)
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
}

// Register checks what it can before any connection: an empty DSN is
// refused, and the error names the source.
func ExampleRegister_emptyDSN() {
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Close()
	err := postgres.Register(context.Background(), reg, "pg-sales", "",
		postgres.Options{}, pool.DefaultConfig())
	fmt.Println(err)
	// Output:
	// postgres: source "pg-sales": the DSN is empty; give one, or set Options.EnvDefaults to use libpq's PG* environment variables and defaults
}

// Example has no Output comment, since go test would run it without a
// server; this runs it against PG_DSN and checks what it printed.
func TestExampleRunsAgainstTheServer(t *testing.T) {
	dsn(t)
	assert.Equal(t, "42\n", captureStdout(t, Example))
}

// captureStdout returns what fn wrote to os.Stdout.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	saved := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	defer func() { os.Stdout = saved }()
	fn()
	os.Stdout = saved
	require.NoError(t, w.Close())
	return <-out
}
