package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/deepanalyze/pool/azblob"
	"github.com/deepanalyze/pool/azblob/blobload"
)

// blobSize is the pooled connector's MaxSize in the Blob benchmark, as
// pgSize is in the PostgreSQL one.
const blobSize = 8

// BenchmarkBlob reads a 1 KiB blob and lists a 100-blob prefix over HTTPS
// from Azurite with 1, 16 and 64 clients, through the pooled connector,
// one shared SDK client, and a new SDK client per request; b.N is the
// number of requests of each run, after a warm-up. It reports
// requests per second, p50 and p99 latency, and the peak of TCP
// connections open to Azurite (from /proc).
func BenchmarkBlob(b *testing.B) {
	cs, ca := os.Getenv("AZURITE_CONNECTION_STRING"), os.Getenv("AZURITE_CA_CERT")
	if cs == "" || ca == "" {
		b.Skip("AZURITE_CONNECTION_STRING and AZURITE_CA_CERT are not set; set them for an Azurite over HTTPS to run this test (.ci/services.sh starts one, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
	tlsCfg, err := azblob.TrustCA(ca)
	if err != nil {
		b.Fatal(err)
	}
	target := blobload.Target{ConnectionString: cs, Container: "bench", TLS: tlsCfg}
	want, err := blobload.Prepare(context.Background(), target)
	if err != nil {
		b.Fatal(err)
	}
	only := os.Getenv("BLOB_CONTENDER") // run.sh interleaves contenders with it
	for _, w := range []blobload.Workload{blobload.Read, blobload.List} {
		for _, clients := range []int{1, 16, 64} {
			for _, c := range blobload.Contenders {
				if only != "" && only != string(c) {
					continue
				}
				b.Run(fmt.Sprintf("%s/c=%d/%s", w, clients, c), func(b *testing.B) {
					b.ResetTimer()
					r, err := blobload.Run(context.Background(), target, c, w, clients, blobSize, b.N, 0, want)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(r.PerSecond, "rps")
					b.ReportMetric(float64(r.P50), "p50-ns")
					b.ReportMetric(float64(r.P99), "p99-ns")
					b.ReportMetric(float64(r.PeakConns), "peak-conns")
				})
			}
		}
	}
}
