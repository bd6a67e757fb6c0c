package blobload_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool/azblob"
	"github.com/deepanalyze/pool/azblob/blobload"
)

// Every contender runs every workload against Azurite and checks every
// answer; the pooled one never has more connections open than MaxSize,
// and a new client per request never holds more than one per goroutine.
func TestEveryContenderRuns(t *testing.T) {
	cs, ca := os.Getenv("AZURITE_CONNECTION_STRING"), os.Getenv("AZURITE_CA_CERT")
	if cs == "" || ca == "" {
		t.Skip("AZURITE_CONNECTION_STRING and AZURITE_CA_CERT are not set; set them for an Azurite over HTTPS to run this test (.ci/services.sh starts one, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
	tlsCfg, err := azblob.TrustCA(ca)
	require.NoError(t, err)
	target := blobload.Target{ConnectionString: cs, Container: "blobload-test", TLS: tlsCfg}
	want, err := blobload.Prepare(context.Background(), target)
	require.NoError(t, err)
	require.Len(t, want, 1<<10)

	for _, w := range []blobload.Workload{blobload.Read, blobload.List} {
		for _, c := range blobload.Contenders {
			r, err := blobload.Run(context.Background(), target, c, w, 8, 2, 40, 0, want)
			require.NoError(t, err, "%s %s", c, w)
			assert.Equal(t, 40, r.Requests, "%s %s", c, w)
			assert.Positive(t, r.PerSecond)
			assert.LessOrEqual(t, r.P50, r.P99)
			assert.Positive(t, r.PeakConns, "%s %s", c, w)
			if c == blobload.Pool {
				assert.LessOrEqual(t, r.PeakConns, 2, "%s: MaxSize 2", w)
			}
		}
	}
	_, err = blobload.Run(context.Background(), target, "nosuch", blobload.Read, 1, 1, 1, 0, want)
	assert.ErrorContains(t, err, "unknown contender")
}
