package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// startService starts the service from the shipped config.json. Its
// PostgreSQL sources need PG_DSN; without Azurite's variables it starts
// from config.pg.json, the same without the Blob source, so that the
// PostgreSQL tests run without Azurite.
func startService(t *testing.T) (*Service, *httptest.Server) {
	t.Helper()
	if os.Getenv("PG_DSN") == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	file := "config.json" // the shipped example, with ${PG_DSN} and Azurite
	if os.Getenv("AZURITE_CONNECTION_STRING") == "" || os.Getenv("AZURITE_CA_CERT") == "" {
		file = "config.pg.json" // the same without its Blob source
	}
	cfg, err := LoadConfig(file)
	require.NoError(t, err)
	return startFrom(t, cfg)
}

// config.pg.json is config.json without its Blob source.
func TestThePostgreSQLOnlyConfigIsTheShippedOneLessBlob(t *testing.T) {
	read := func(file string) map[string]any {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var c map[string]any
		require.NoError(t, json.Unmarshal(b, &c))
		return c
	}
	full, pg := read("config.json"), read("config.pg.json")
	var kept []any
	for _, s := range full["sources"].([]any) {
		if s.(map[string]any)["kind"] != kindBlob {
			kept = append(kept, s)
		}
	}
	require.Less(t, len(kept), len(full["sources"].([]any)), "config.json has no Blob source")
	full["sources"] = kept
	assert.Equal(t, full, pg)
}

// needAzurite skips a test that needs the shipped config's Blob source.
func needAzurite(t *testing.T) {
	t.Helper()
	if os.Getenv("AZURITE_CONNECTION_STRING") == "" || os.Getenv("AZURITE_CA_CERT") == "" {
		t.Skip("AZURITE_CONNECTION_STRING and AZURITE_CA_CERT are not set; set them for an Azurite over HTTPS to run this test (.ci/services.sh starts one, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
}

func startFrom(t *testing.T, cfg Config) (*Service, *httptest.Server) {
	t.Helper()
	svc, err := NewService(context.Background(), cfg)
	require.NoError(t, err)
	ts := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		ts.Close()
		_ = svc.Shutdown(context.Background())
	})
	return svc, ts
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	return resp.StatusCode
}

func TestQueryThroughTheService(t *testing.T) {
	_, ts := startService(t)
	var got doubleResponse
	code := getJSON(t, ts.URL+"/sources/sales/double?n=21", &got)
	require.Equal(t, http.StatusOK, code)
	assert.EqualValues(t, 42, got.Doubled)
	assert.Equal(t, "sales", got.Source)
	assert.NotZero(t, got.Backend)

	var errBody map[string]string
	assert.Equal(t, http.StatusNotFound, getJSON(t, ts.URL+"/sources/nope/double?n=1", &errBody))
	assert.Contains(t, errBody["error"], "unknown source")
	assert.Equal(t, http.StatusBadRequest, getJSON(t, ts.URL+"/sources/sales/double?n=x", &errBody))
}

func TestConcurrentRequestsShareThePool(t *testing.T) {
	_, ts := startService(t)
	var wg sync.WaitGroup
	pids := sync.Map{}
	for i := range 40 {
		wg.Go(func() {
			var got doubleResponse
			if assert.Equal(t, http.StatusOK, getJSON(t, fmt.Sprintf("%s/sources/reports/double?n=%d", ts.URL, i), &got)) {
				assert.EqualValues(t, 2*i, got.Doubled)
				pids.Store(got.Backend, true)
			}
		})
	}
	wg.Wait()
	n := 0
	pids.Range(func(any, any) bool { n++; return true })
	assert.LessOrEqual(t, n, 4, "reports has max_size 4")

	var stats map[string]sourceStats
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/stats", &stats))
	assert.EqualValues(t, 41, stats["reports"].AcquireCount, "40 requests and the test connection of Register")
	assert.LessOrEqual(t, stats["reports"].Total, 4)
	assert.Equal(t, 0, stats["reports"].InUse)
	assert.Equal(t, 8, stats["sales"].MaxSize)
}

func TestShutdownDrainsThePools(t *testing.T) {
	svc, ts := startService(t)
	var got doubleResponse
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/sales/double?n=1", &got))
	ts.Close() // drains the HTTP requests
	require.NoError(t, svc.Shutdown(context.Background()))
	for id, s := range svc.reg.Stats() {
		t.Errorf("pool %s still listed after Shutdown: %+v", id, s)
	}
	err := svc.reg.With(context.Background(), "sales", nil)
	assert.ErrorIs(t, err, pool.ErrPoolClosed)
}

func TestLoadConfigRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	_, err := LoadConfig(write("bad.json", "{"))
	assert.Error(t, err)
	_, err = LoadConfig(write("empty.json", `{"sources": []}`))
	assert.ErrorContains(t, err, "no sources")
	_, err = LoadConfig(filepath.Join(dir, "missing.json"))
	assert.Error(t, err)

	c, err := LoadConfig(write("dup.json", `{"sources": [{"id": "a", "dsn": "postgres://127.0.0.1:1/x?connect_timeout=1"}, {"id": "a", "dsn": "postgres://127.0.0.1:1/x"}]}`))
	require.NoError(t, err)
	_, err = NewService(context.Background(), c)
	assert.Error(t, err, "unreachable source must fail registration")

	_, err = LoadConfig(write("size.json", `{"sources": [{"id": "a", "dsn": "postgres://127.0.0.1/x", "max_size": -1}]}`))
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	_, err = LoadConfig(write("typo.json", `{"sources": [{"id": "a", "dsn": "postgres://127.0.0.1/x", "max_sise": 4}]}`))
	assert.ErrorContains(t, err, "max_sise")

	// A DSN naming an unset variable refuses to start and says which.
	t.Setenv("POOLTEST_UNSET_DSN", "")
	_, err = LoadConfig(write("env.json", `{"sources": [{"id": "a", "dsn": "${POOLTEST_UNSET_DSN}"}]}`))
	assert.ErrorContains(t, err, "POOLTEST_UNSET_DSN is not set")
	_, err = LoadConfig(write("emptydsn.json", `{"sources": [{"id": "a", "dsn": ""}]}`))
	assert.ErrorContains(t, err, "dsn is empty")

	// min_size 0 is expressible, and absent means the default.
	c, err = LoadConfig(write("min.json", `{"sources": [{"id": "a", "dsn": "postgres://127.0.0.1/x", "min_size": 0}, {"id": "b", "dsn": "postgres://127.0.0.1/x"}]}`))
	require.NoError(t, err)
	a, _ := c.Sources[0].poolConfig()
	b, _ := c.Sources[1].poolConfig()
	assert.Equal(t, 0, a.MinSize)
	assert.Equal(t, pool.DefaultConfig().MinSize, b.MinSize)
}

// Bad input gets 400 with a JSON error that names the problem and none of
// the driver's or the server's own text; routing errors are JSON too, and
// an unclean path is not redirected.
func TestBadRequestsGetJSONErrorsWithoutInternals(t *testing.T) {
	_, ts := startService(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		code         int
		says         string
	}{
		{"GET", "/sources/sales/double?n=99999999999", 400, "n must be an integer"},
		{"GET", "/sources/sales/double?n=2000000000", 400, "n must be an integer"},
		{"GET", "/sources/sales/double?n=-2000000000", 400, "n must be an integer"},
		{"GET", "/sources/sales/double?n=1.5", 400, "n must be an integer"},
		{"GET", "/sources/sales/double?n=x", 400, "n must be an integer"},
		{"GET", "/sources/sales/double", 400, "give n exactly once"},
		{"GET", "/sources/sales/double?n=1&n=2", 400, "give n exactly once"},
		{"GET", "/sources/sales/double?n=1&debug=1", 400, `unknown parameter "debug"`},
		{"GET", "/sources/nope/double?n=1", 404, `unknown source "nope"`},
		{"GET", "/sources//double?n=1", 404, "no such endpoint"},
		{"GET", "/nowhere", 404, "no such endpoint"},
		{"POST", "/sources/sales/double?n=1", 405, "not allowed"},
		{"DELETE", "/stats", 405, "not allowed"},
	} {
		req, err := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		var body map[string]string
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %s", tc.method, tc.path)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		assert.Equal(t, tc.code, resp.StatusCode, "%s %s", tc.method, tc.path)
		assert.Contains(t, body["error"], tc.says, "%s %s", tc.method, tc.path)
		for _, internal := range []string{"pgx", "SQLSTATE", "ERROR:", "out of range", "strconv", "pool:"} {
			assert.NotContains(t, body["error"], internal, "%s %s leaks internals", tc.method, tc.path)
		}
	}
	// The extremes that are allowed work.
	var got doubleResponse
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/sales/double?n=1073741823", &got))
	assert.EqualValues(t, 2147483646, got.Doubled)
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/sales/double?n=-1073741824", &got))
	assert.EqualValues(t, -2147483648, got.Doubled)
}

// A port already taken is reported as an error, and nothing says
// "listening".
func TestBindFailureIsReportedBeforeListening(t *testing.T) {
	if os.Getenv("PG_DSN") == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	cfgPath := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(cfgPath, []byte(`{"addr": "`+taken.Addr().String()+`", "sources": [{"id": "a", "dsn": "${PG_DSN}"}]}`), 0o600))
	var logged bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	defer slog.SetDefault(old)
	err = run(context.Background(), cfgPath)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "address already in use")
	assert.NotContains(t, logged.String(), "listening")
}

// holdSales takes a connection of the sales source, as a handler would,
// from a site of its own that /holders names.
func holdSales(t *testing.T, svc *Service) *pool.PooledConn[pool.Connector] {
	t.Helper()
	pc, err := svc.reg.Get(context.Background(), "sales")
	require.NoError(t, err)
	return pc
}

// /holders says who holds each source's connections: the loans in
// progress, the longest, and with leak_threshold where they came from.
func TestHoldersEndpointNamesTheLoansInProgress(t *testing.T) {
	if os.Getenv("PG_DSN") == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	cfg, err := LoadConfig("config.pg.json")
	require.NoError(t, err)
	for i := range cfg.Sources {
		if cfg.Sources[i].ID == "sales" {
			cfg.Sources[i].LeakThreshold = "1h"
		}
	}
	svc, ts := startFrom(t, cfg)
	held := []*pool.PooledConn[pool.Connector]{holdSales(t, svc), holdSales(t, svc)}

	var got map[string]holdersJSON
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/holders", &got))
	sales := got["sales"]
	assert.Equal(t, 2, sales.Loans)
	assert.GreaterOrEqual(t, sales.InUse, 2)
	assert.Len(t, sales.LongestSeconds, 2)
	require.Len(t, sales.Sites, 1, "%+v", sales)
	assert.Contains(t, sales.Sites[0].Site, "holdSales")
	assert.Equal(t, 2, sales.Sites[0].Loans)

	for _, pc := range held {
		require.NoError(t, svc.reg.Release("sales", pc))
	}
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/holders", &got))
	assert.Zero(t, got["sales"].Loans)
	assert.Empty(t, got["sales"].Sites)

	cfg.Sources[0].LeakThreshold = "soon"
	_, err = NewService(context.Background(), cfg)
	assert.ErrorContains(t, err, "leak_threshold")
}
