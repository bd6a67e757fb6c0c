package bench

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/deepanalyze/pool"
	poolotel "github.com/deepanalyze/pool/otel"
	poolprom "github.com/deepanalyze/pool/prometheus"
)

// BenchmarkHooks measures what metrics cost on the hot path: an uncontended
// Acquire+Release and a With, with no hook, with the OpenTelemetry hooks
// (recording into the SDK with a ManualReader), and with the Prometheus
// collector's hooks.
func BenchmarkHooks(b *testing.B) {
	hooks := map[string]func() pool.Hooks{
		"none": func() pool.Hooks { return pool.Hooks{} },
		"otel": func() pool.Hooks {
			m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
			if err != nil {
				b.Fatal(err)
			}
			return m.Hooks("bench")
		},
		"prometheus": func() pool.Hooks { return poolprom.New("").Hooks("bench") },
	}
	for _, op := range []string{"acquire-release", "with"} {
		for _, name := range []string{"none", "otel", "prometheus"} {
			b.Run(op+"/"+name, func(b *testing.B) {
				cfg := pool.DefaultConfig()
				cfg.MaxSize = 4
				cfg.Hooks = hooks[name]()
				p, err := pool.New(func(context.Context) (*benchConn, error) { return &benchConn{}, nil }, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				ctx := context.Background()
				fn := func(*benchConn) error { return nil }
				b.ReportAllocs()
				for b.Loop() {
					if op == "with" {
						if err := p.With(ctx, fn); err != nil {
							b.Fatal(err)
						}
						continue
					}
					pc, err := p.Acquire(ctx)
					if err != nil {
						b.Fatal(err)
					}
					pc.Release()
				}
			})
		}
	}
}
