package main

import (
	"context"
	"encoding/json"
	"fmt"
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

func startService(t *testing.T) (*Service, *httptest.Server) {
	t.Helper()
	if os.Getenv("PG_DSN") == "" {
		t.Skip("PG_DSN is not set; run `bash .ci/run`, or set PG_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	cfg, err := LoadConfig("config.json") // the shipped example, with ${PG_DSN}
	require.NoError(t, err)
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
	assert.Equal(t, 42, got.Doubled)
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
				assert.Equal(t, 2*i, got.Doubled)
				pids.Store(got.Backend, true)
			}
		})
	}
	wg.Wait()
	n := 0
	pids.Range(func(any, any) bool { n++; return true })
	assert.LessOrEqual(t, n, 4, "reports has max_size 4")

	var stats map[string]pool.Stats
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

	c, err = LoadConfig(write("size.json", `{"sources": [{"id": "a", "dsn": "postgres://127.0.0.1/x", "max_size": -1}]}`))
	require.NoError(t, err)
	_, err = NewService(context.Background(), c)
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
}
