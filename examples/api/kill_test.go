package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryRequestIsAnsweredWhileBackendsAreKilled: 64 clients send valid
// requests to the service for 10 s (3 with -short) while every backend of
// its source is terminated each second. The dead connections are the
// pool's to get past: every request gets a 200 with the right answer.
func TestEveryRequestIsAnsweredWhileBackendsAreKilled(t *testing.T) {
	base := os.Getenv("PG_DSN")
	if base == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	seconds := 10
	if testing.Short() {
		seconds = 3
	}
	tag := fmt.Sprintf("apikill%d", time.Now().UnixNano())
	size := 8
	svc, err := NewService(context.Background(), Config{Sources: []SourceConfig{{ID: "sales", DSN: withApp(t, base, tag), MaxSize: &size, AcquireTimeout: "5s"}}})
	require.NoError(t, err)
	ts := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		ts.Close()
		_ = svc.Shutdown(context.Background())
	})

	admin, err := pgx.Connect(context.Background(), base)
	require.NoError(t, err)
	defer admin.Close(context.Background())
	stop := make(chan struct{})
	var killed, rounds atomic.Int64
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var n int64
			if err := admin.QueryRow(context.Background(),
				"select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = $1", tag).Scan(&n); err == nil {
				killed.Add(n)
				rounds.Add(1)
			}
		}
	}()

	transport := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	client := &http.Client{Transport: transport, Timeout: 20 * time.Second}
	var ok, bad atomic.Int64
	var mu sync.Mutex
	var failures []string
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				n := rand.IntN(2_000_000) - 1_000_000
				resp, err := client.Get(fmt.Sprintf("%s/sources/sales/double?n=%d", ts.URL, n))
				if err != nil {
					bad.Add(1)
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var got doubleResponse
				if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Doubled != 2*int64(n) {
					bad.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, body))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-killerDone
	t.Logf("%d s, 64 clients: %d answered 200, %d not; %d backends killed in %d rounds", seconds, ok.Load(), bad.Load(), killed.Load(), rounds.Load())
	for i, f := range failures {
		if i == 3 {
			break
		}
		t.Logf("not a 200: %s", f)
	}
	require.Positive(t, rounds.Load(), "no backend was killed")
	assert.Positive(t, killed.Load(), "no backend was killed")
	assert.Positive(t, ok.Load())
	assert.Zero(t, bad.Load(), "valid requests answered without a 200 while backends were killed")
}
