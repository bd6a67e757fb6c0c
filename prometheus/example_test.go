package poolprom_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deepanalyze/pool"
	poolprom "github.com/deepanalyze/pool/prometheus"
)

// memConn stands for a real connection (a *pgx.Conn, an *azblob.Conn).
type memConn struct{}

func (memConn) Ping(context.Context) error { return nil }
func (memConn) Close() error               { return nil }

// A registry's sources exposed to Prometheus: each source's Hooks observe
// the histograms, and the Collector reads every source's Stats at each
// scrape. Serve it with promhttp.HandlerFor(r, promhttp.HandlerOpts{}).
func Example() {
	ctx := context.Background()
	c := poolprom.New("")
	reg := pool.NewRegistry[memConn]()
	defer reg.Close()
	cfg := pool.DefaultConfig()
	cfg.Hooks = c.Hooks("pg-sales") // per source, before Register
	dial := func(context.Context) (memConn, error) { return memConn{}, nil }
	if err := reg.Register(ctx, "pg-sales", dial, cfg); err != nil {
		log.Fatal(err)
	}
	c.AddRegistry(reg)
	r := prometheus.NewPedanticRegistry()
	r.MustRegister(c)

	for range 3 {
		if err := reg.With(ctx, "pg-sales", func(memConn) error { return nil }); err != nil {
			log.Fatal(err)
		}
	}
	families, err := r.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		switch name := f.GetName(); {
		case name == "pool_acquires_total":
			fmt.Println(name, f.GetMetric()[0].GetCounter().GetValue())
		case name == "pool_connections_idle", name == "pool_connections_max":
			fmt.Println(name, f.GetMetric()[0].GetGauge().GetValue())
		case strings.HasSuffix(name, "_usage_seconds"):
			fmt.Println(name, "loans:", f.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	// Output:
	// pool_acquires_total 3
	// pool_connection_usage_seconds loans: 3
	// pool_connections_idle 1
	// pool_connections_max 10
}
