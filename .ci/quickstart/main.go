// The README's quick start, as a user outside the repository writes it.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
	"github.com/deepanalyze/pool/postgres"
)

func main() {
	ctx := context.Background()
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Shutdown(context.Background())

	cfg := pool.DefaultConfig()
	cfg.MaxSize = 20
	cfg.Logger = slog.Default()
	err := postgres.Register(ctx, reg, "pg-sales", os.Getenv("SALES_DSN"),
		postgres.Options{}, cfg, pool.WithTestConnect())
	if err != nil {
		log.Fatal(err)
	}
	blobOpts := azblob.Options{ConnectionString: os.Getenv("RAW_STORAGE"), Container: "raw"}
	// Not in the README: a fresh Azurite has no container, nor a blob.
	if err := azblob.CreateContainer(ctx, blobOpts); err != nil {
		log.Fatal(err)
	}
	err = azblob.Register(ctx, reg, "blob-raw", blobOpts, cfg, pool.WithTestConnect())
	if err != nil {
		log.Fatal(err)
	}
	err = azblob.With(ctx, reg, "blob-raw", func(c *azblob.Conn) error {
		return c.Upload(ctx, "2026/11/orders.csv", strings.NewReader("id,total\n1,42\n"), nil)
	})
	if err != nil {
		log.Fatal(err)
	}

	var n int
	err = postgres.With(ctx, reg, "pg-sales", func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "select count(*) from pg_class").Scan(&n)
	})
	if err != nil {
		log.Fatal(err)
	}
	body, err := azblob.Open(ctx, reg, "blob-raw", "2026/11/orders.csv")
	if err != nil {
		log.Fatal(err)
	}
	defer body.Close()
	var total int64
	err = azblob.With(ctx, reg, "blob-raw", func(c *azblob.Conn) error {
		for b, err := range c.List(ctx, "2026/11/") {
			if err != nil {
				return err
			}
			total += b.Size
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("quick start: ok,", n > 0, total > 0)
}
