package azblob_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool/azblob"
	"github.com/deepanalyze/pool/azblob/blobload"
)

// azurite is the emulator the tests run against: .ci/services.sh starts it
// and exports these variables.
type azurite struct {
	connStr string
	tls     *tls.Config
	port    int
}

const devKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

func needAzurite(t testing.TB) azurite {
	t.Helper()
	cs, ca := os.Getenv("AZURITE_CONNECTION_STRING"), os.Getenv("AZURITE_CA_CERT")
	if cs == "" || ca == "" {
		t.Skip("AZURITE_CONNECTION_STRING and AZURITE_CA_CERT are not set; set them for an Azurite over HTTPS to run this test (.ci/services.sh starts one, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
	return azurite{connStr: cs, tls: trust(t, ca), port: endpointPort(t, cs)}
}

func trust(t testing.TB, caFile string) *tls.Config {
	cfg, err := azblob.TrustCA(caFile)
	require.NoError(t, err)
	return cfg
}

func endpointPort(t testing.TB, connStr string) int {
	for _, kv := range strings.Split(connStr, ";") {
		if v, ok := strings.CutPrefix(kv, "BlobEndpoint="); ok {
			hostport := strings.Split(strings.TrimPrefix(v, "https://"), "/")[0]
			_, p, _ := strings.Cut(hostport, ":")
			n, err := strconv.Atoi(p)
			require.NoError(t, err, "port of %s", v)
			return n
		}
	}
	t.Fatalf("no BlobEndpoint in the connection string")
	return 0
}

// options points the connector at container name.
func (a azurite) options(name string) azblob.Options {
	return azblob.Options{ConnectionString: a.connStr, Container: name, TLSConfig: a.tls}
}

// admin returns an SDK client of the container, outside any pool.
func (a azurite) admin(t testing.TB, name string) *container.Client {
	t.Helper()
	c, err := container.NewClientFromConnectionString(a.connStr, name, &container.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: &http.Client{Transport: &http.Transport{TLSClientConfig: a.tls}},
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
	})
	require.NoError(t, err)
	return c
}

// newContainer creates a container of a unique name, deleted after the test.
func (a azurite) newContainer(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", rand.Uint64()%1e9, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	name = strings.ReplaceAll(name, "_", "-")
	c := a.admin(t, name)
	_, err := c.Create(context.Background(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = c.Delete(context.Background(), nil) })
	return name
}

// tcpConnsTo counts this process's open TCP sockets to port, from the
// operating system.
func tcpConnsTo(t testing.TB, port int) int {
	t.Helper()
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc here to count sockets from")
	}
	return blobload.OpenConns(port)
}

// logSink is a slog handler that keeps every record's text.
type logSink struct {
	mu    sync.Mutex
	lines []string
	match string
	found chan struct{} // closed at the first record whose message contains match
	once  sync.Once
}

func newLogSink(match string) *logSink { return &logSink{match: match, found: make(chan struct{})} }

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	s.mu.Lock()
	s.lines = append(s.lines, b.String())
	s.mu.Unlock()
	if s.match != "" && strings.Contains(r.Message, s.match) {
		s.once.Do(func() { close(s.found) })
	}
	return nil
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}
