package poolotel_test

import (
	"context"
	"fmt"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/deepanalyze/pool"
	poolotel "github.com/deepanalyze/pool/otel"
)

// memConn stands for a real connection (a *pgx.Conn, an *azblob.Conn).
type memConn struct{}

func (memConn) Ping(context.Context) error { return nil }
func (memConn) Close() error               { return nil }

// A registry's sources reported through OpenTelemetry: the Hooks of each
// source record the histograms, and ObserveRegistry the gauges of every
// source at each collection. A ManualReader stands in for an exporter.
func Example() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		log.Fatal(err)
	}
	reg := pool.NewRegistry[memConn]()
	defer reg.Close()
	cfg := pool.DefaultConfig()
	cfg.Hooks = m.Hooks("pg-sales") // per source, before Register
	dial := func(context.Context) (memConn, error) { return memConn{}, nil }
	if err := reg.Register(ctx, "pg-sales", dial, cfg); err != nil {
		log.Fatal(err)
	}
	if _, err := m.ObserveRegistry(reg); err != nil {
		log.Fatal(err)
	}
	for range 3 {
		if err := reg.With(ctx, "pg-sales", func(memConn) error { return nil }); err != nil {
			log.Fatal(err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Histogram[float64]:
				if mt.Name == "db.client.connection.use_time" {
					fmt.Println(mt.Name, "loans:", d.DataPoints[0].Count)
				}
			case metricdata.Sum[int64]:
				if mt.Name == "db.client.connection.count" {
					for _, dp := range d.DataPoints {
						state, _ := dp.Attributes.Value(poolotel.StateKey)
						fmt.Println(mt.Name, state.AsString()+":", dp.Value)
					}
				}
			}
		}
	}
	// Unordered output:
	// db.client.connection.use_time loans: 3
	// db.client.connection.count idle: 1
	// db.client.connection.count used: 0
}
