package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServiceUnderLoad drives the service over real HTTP against the real
// PostgreSQL: 64 concurrent clients, valid and invalid requests mixed, for
// LOAD_SECONDS (default 10, and 30 in CI; 3 with -short). It checks every
// answer, samples pg_stat_activity for each source's backends, and then
// shuts the server down while the clients are still sending: every
// request the server accepted must be answered.
func TestServiceUnderLoad(t *testing.T) {
	base := os.Getenv("PG_DSN")
	if base == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	seconds := 10
	if testing.Short() {
		seconds = 3
	}
	if s := os.Getenv("LOAD_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		seconds = n
	}
	tag := fmt.Sprintf("apiload%d", time.Now().UnixNano())
	sizes := map[string]int{"sales": 8, "reports": 4}
	var cfg Config
	for _, id := range []string{"sales", "reports"} {
		size := sizes[id]
		cfg.Sources = append(cfg.Sources, SourceConfig{ID: id, DSN: withApp(t, base, tag+id), MaxSize: &size, AcquireTimeout: "5s"})
	}
	svc, err := NewService(context.Background(), cfg)
	require.NoError(t, err)

	// Count what the server accepted and answered, at the handler.
	var accepted, answered atomic.Int64
	h := svc.Handler()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accepted.Add(1)
		h.ServeHTTP(w, r)
		answered.Add(1)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, shutdown := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, counted, svc, 10*time.Second) }()
	baseURL := "http://" + ln.Addr().String()

	// Sample the backends of each source while the load runs.
	admin, err := pgx.Connect(context.Background(), base)
	require.NoError(t, err)
	defer admin.Close(context.Background())
	var peakMu sync.Mutex
	peak := map[string]int{}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for id := range sizes {
				var n int
				if err := admin.QueryRow(context.Background(), "select count(*) from pg_stat_activity where application_name = $1", tag+id).Scan(&n); err == nil {
					peakMu.Lock()
					peak[id] = max(peak[id], n)
					peakMu.Unlock()
				}
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	type tally struct {
		valid, invalid, wrong, validErrors, received, refused int64
		latencies                                             []time.Duration
	}
	var (
		mu       sync.Mutex
		total    tally
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	transport := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	client := &http.Client{Transport: transport, Timeout: 20 * time.Second}
	invalid := []struct {
		method, path string
		code         int
	}{
		{"GET", "/sources/sales/double?n=x", 400},
		{"GET", "/sources/sales/double?n=99999999999", 400},
		{"GET", "/sources/reports/double?n=2000000000", 400},
		{"GET", "/sources/sales/double?n=1&x=2", 400},
		{"GET", "/sources/nope/double?n=1", 404},
		{"GET", "/sources//double?n=1", 404},
		{"POST", "/sources/sales/double?n=1", 405},
	}
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for range 64 {
		wg.Go(func() {
			var my tally
			defer func() {
				mu.Lock()
				total.valid += my.valid
				total.invalid += my.invalid
				total.wrong += my.wrong
				total.validErrors += my.validErrors
				total.received += my.received
				total.refused += my.refused
				total.latencies = append(total.latencies, my.latencies...)
				mu.Unlock()
			}()
			for {
				if stopping.Load() && time.Now().After(deadline.Add(2*time.Second)) {
					return
				}
				isValid := rand.IntN(10) < 8
				method, path, wantCode := "GET", "", http.StatusOK
				var n int
				if isValid {
					id := []string{"sales", "reports"}[rand.IntN(2)]
					n = rand.IntN(2_000_000) - 1_000_000
					path = fmt.Sprintf("/sources/%s/double?n=%d", id, n)
				} else {
					inv := invalid[rand.IntN(len(invalid))]
					method, path, wantCode = inv.method, inv.path, inv.code
				}
				req, _ := http.NewRequest(method, baseURL+path, nil)
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if stopping.Load() {
						var op *net.OpError
						if errors.As(err, &op) && op.Op == "dial" {
							my.refused++ // the server has stopped accepting: never accepted
							return
						}
					}
					t.Errorf("%s %s: %v", method, path, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				my.received++
				elapsed := time.Since(start)
				if resp.StatusCode != wantCode {
					if isValid {
						my.validErrors++
					}
					t.Errorf("%s %s: %d %s, want %d", method, path, resp.StatusCode, body, wantCode)
					continue
				}
				if !isValid {
					my.invalid++
					var e map[string]string
					if json.Unmarshal(body, &e) != nil || e["error"] == "" {
						t.Errorf("%s %s: not a JSON error: %s", method, path, body)
					}
					continue
				}
				my.valid++
				var got doubleResponse
				if err := json.Unmarshal(body, &got); err != nil || got.Doubled != 2*int64(n) {
					my.wrong++
					t.Errorf("%s: wrong answer %s", path, body)
				}
				if !stopping.Load() {
					my.latencies = append(my.latencies, elapsed)
				}
				if time.Now().After(deadline) && !stopping.Load() {
					return
				}
			}
		})
	}
	// Run the load, then shut down while the clients are still sending.
	time.Sleep(time.Until(deadline)) // the test's own duration, not a sync point
	stopping.Store(true)
	shutdown()
	wg.Wait()
	require.NoError(t, <-served)
	close(stopSampling)
	<-sampled

	slices.Sort(total.latencies)
	var p50, p99 time.Duration
	if n := len(total.latencies); n > 0 {
		p50, p99 = total.latencies[n/2], total.latencies[n*99/100]
	}
	t.Logf("%d s, 64 clients: %d valid (%.0f req/s, p50 %v, p99 %v), %d invalid, %d wrong, %d errors on valid requests; "+
		"peak backends %v; accepted %d, answered %d, received %d, refused after shutdown began %d",
		seconds, total.valid, float64(total.valid)/float64(seconds), p50, p99, total.invalid, total.wrong, total.validErrors,
		peak, accepted.Load(), answered.Load(), total.received, total.refused)
	assert.Zero(t, total.wrong, "wrong answers")
	assert.Zero(t, total.validErrors, "errors on valid requests")
	assert.Positive(t, total.valid)
	assert.Positive(t, total.invalid)
	for id, size := range sizes {
		assert.LessOrEqual(t, peak[id], size, "source %s had more backends than its max_size", id)
		assert.Positive(t, peak[id], "no backend of %s was ever seen", id)
	}
	assert.Equal(t, accepted.Load(), answered.Load(), "a request the server accepted was not answered")
	assert.Equal(t, accepted.Load(), total.received, "a request the server accepted never reached its client")
}

// withApp returns the URL DSN base with its application_name set to app,
// so that pg_stat_activity shows a test's own backends.
func withApp(t *testing.T, base, app string) string {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}
