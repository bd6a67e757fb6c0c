package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startPrometheus runs Debian's Prometheus server on a free loopback port,
// scraping target every 500 ms, and returns its address once it is ready.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := os.Getenv("PROMETHEUS")
	if bin == "" {
		t.Skip("PROMETHEUS is not set; set it to a Prometheus server binary to run this test (Debian's prometheus package has it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
global:
  scrape_interval: 500ms
  scrape_timeout: 500ms
scrape_configs:
  - job_name: api
    static_configs:
      - targets: ['%s']
`, target)), 0o600))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=info")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var seen []string
		for sc.Scan() {
			seen = append(seen, sc.Text())
			if strings.Contains(sc.Text(), "Server is ready to receive web requests") {
				ready <- nil
				_, _ = io.Copy(io.Discard, stderr)
				return
			}
		}
		ready <- fmt.Errorf("prometheus exited:\n%s", strings.Join(seen, "\n"))
	}()
	select {
	case err := <-ready:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("prometheus was not ready within 60 s")
	}
	return addr
}

// waitFor polls Prometheus's API, an outside process, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// query runs an instant PromQL query and returns each series' value by
// its source label.
func query(t *testing.T, prom, q string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + prom + "/api/v1/query?query=" + url.QueryEscape(q))
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, q)
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		v, err := strconv.ParseFloat(r.Value[1].(string), 64)
		require.NoError(t, err)
		out[r.Metric["source"]] = v
	}
	return out
}

// A real Prometheus scrapes the service's /metrics while it serves load:
// the wait-time histogram of every configured source counts the requests,
// and in-use connections never exceed MaxSize at any scrape.
func TestPrometheusScrapesTheService(t *testing.T) {
	needAzurite(t)
	svc, ts := startService(t)
	prom := startPrometheus(t, strings.TrimPrefix(ts.URL, "http://"))
	cfg, err := LoadConfig("config.json")
	require.NoError(t, err)
	seed(t, svc, map[string][]byte{"metrics/one": []byte("1")})

	paths := map[string]string{}
	maxSize := map[string]float64{}
	for _, src := range cfg.Sources {
		pc, err := src.poolConfig()
		require.NoError(t, err)
		maxSize[src.ID] = float64(pc.MaxSize)
		if src.kind() == kindBlob {
			paths[src.ID] = "/sources/" + src.ID + "/blobs/metrics/one"
		} else {
			paths[src.ID] = "/sources/" + src.ID + "/double?n=3"
		}
	}
	// Prometheus applies a new target list up to 5 s after it starts: wait
	// for its first scrape, so that the load is scraped throughout.
	waitFor(t, "the first scrape", func() bool { return query(t, prom, `up{job="api"}`)[""] == 1 })

	// Load from 32 clients on every source, long enough for several
	// scrapes to land while connections are in use.
	stop := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := 0; time.Now().Before(stop); j++ {
				id := cfg.Sources[(i+j)%len(cfg.Sources)].ID
				resp, err := http.Get(ts.URL + paths[id])
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode, paths[id])
			}
		})
	}
	wg.Wait()

	// Wait for a scrape that saw every acquire of the load.
	acquires := map[string]float64{}
	for id, s := range svc.reg.Stats() {
		acquires[id] = float64(s.AcquireCount)
	}
	var counts map[string]float64
	waitFor(t, "a scrape after the load", func() bool {
		counts = query(t, prom, "pool_connection_acquire_seconds_count")
		caught := len(counts) == len(cfg.Sources)
		for id, n := range acquires {
			caught = caught && counts[id] >= n
		}
		return caught
	})
	for _, src := range cfg.Sources {
		assert.Positive(t, counts[src.ID], "wait-time histogram of %s", src.ID)
	}
	peak := query(t, prom, "max_over_time(pool_connections_active[5m])")
	samples := query(t, prom, "count_over_time(pool_connections_active[5m])")
	for _, src := range cfg.Sources {
		assert.LessOrEqual(t, peak[src.ID], maxSize[src.ID], "in-use connections of %s", src.ID)
		assert.Greater(t, samples[src.ID], 3.0, "scrapes of %s", src.ID)
	}
	assert.Equal(t, maxSize, query(t, prom, "pool_connections_max"))
	t.Logf("acquire counts %v, peak in use %v over %v scrapes; scrape durations %v", counts, peak, samples, query(t, prom, "max_over_time(scrape_duration_seconds[5m])"))
}
