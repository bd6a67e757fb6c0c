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
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// pgService starts the service from a config written by the test, with
// PostgreSQL sources only.
func pgService(t *testing.T, config string) (*Service, *httptest.Server) {
	t.Helper()
	if os.Getenv("PG_DSN") == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL to run this test")
	}
	file := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(file, []byte(config), 0o600))
	cfg, err := LoadConfig(file)
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

// Two sources on one budget of 3 never hold more than 3 connections
// together, under 40 concurrent requests; /budgets reports it.
func TestSourcesShareABudget(t *testing.T) {
	_, ts := pgService(t, `{"budgets": {"main-pg": {"limit": 3}}, "sources": [
		{"id": "a", "dsn": "${PG_DSN}", "max_size": 8, "min_size": 1, "budget": "main-pg", "weight": 2},
		{"id": "b", "dsn": "${PG_DSN}", "max_size": 8, "min_size": 1, "budget": "main-pg"}]}`)
	stop := make(chan struct{})
	var maxOpen int
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var b map[string]budgetJSON
			if getJSON(t, ts.URL+"/budgets", &b) == http.StatusOK {
				maxOpen = max(maxOpen, b["main-pg"].Open)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			id := []string{"a", "b"}[i%2]
			var got doubleResponse
			assert.Equal(t, http.StatusOK, getJSON(t, fmt.Sprintf("%s/sources/%s/double?n=%d", ts.URL, id, i), &got))
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	var b map[string]budgetJSON
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/budgets", &b))
	mp := b["main-pg"]
	assert.Equal(t, 3, mp.Limit)
	assert.LessOrEqual(t, maxOpen, 3)
	assert.LessOrEqual(t, mp.Open, 3)
	assert.Equal(t, 2, mp.Sources["a"].Weight)
	assert.Equal(t, 1, mp.Sources["b"].Weight)
	assert.Equal(t, 1, mp.Sources["b"].MinSize)
}

// X-Priority reaches the pool: with the source's one connection held, an
// interactive request queued after a batch one is served first, and so is
// an interactive acquire queued after both; a bad value is a 400.
func TestPriorityHeader(t *testing.T) {
	svc, ts := pgService(t, `{"sources": [{"id": "a", "dsn": "${PG_DSN}", "max_size": 1, "min_size": 1}]}`)
	held, err := svc.reg.Get(context.Background(), "a")
	require.NoError(t, err)

	order := make(chan string, 2)
	get := func(prio string) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sources/a/double?n=1", nil)
		req.Header.Set("X-Priority", prio)
		resp, err := http.DefaultClient.Do(req)
		if assert.NoError(t, err) {
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			resp.Body.Close()
		}
		order <- prio
	}
	waitFor := func(n int) { // the requests are queued in the pool
		for deadline := time.Now().Add(10 * time.Second); svc.reg.Stats()["a"].Waiting < n; {
			require.True(t, time.Now().Before(deadline), "requests did not queue")
			time.Sleep(time.Millisecond) // polling Stats: the pool has no event for a caller that starts to wait
		}
	}
	go get("batch")
	waitFor(1)
	go get("Interactive")
	waitFor(2)
	// The test queues a third, interactive, acquire behind the two, so
	// that the connection comes back to it, not to the batch request,
	// once the interactive request is done: the order of the answers is
	// then the order in which the pool served them.
	again := make(chan *pool.PooledConn[pool.Connector], 1)
	go func() {
		c, err := svc.reg.Get(pool.WithPriority(context.Background(), pool.PriorityInteractive), "a")
		assert.NoError(t, err)
		again <- c
	}()
	waitFor(3)
	require.NoError(t, svc.reg.Release("a", held))
	assert.Equal(t, "Interactive", <-order)
	c := <-again
	assert.Equal(t, 1, svc.reg.Stats()["a"].Waiting, "the batch request waits for the test's loan")
	require.NoError(t, svc.reg.Release("a", c))
	assert.Equal(t, "batch", <-order)

	for _, bad := range []string{"urgent", ""} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sources/a/double?n=1", nil)
		req.Header.Set("X-Priority", bad)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
		assert.Contains(t, body["error"], "X-Priority")
	}
}

func TestLoadConfigChecksBudgets(t *testing.T) {
	dir := t.TempDir()
	load := func(body string) error {
		p := filepath.Join(dir, "c.json")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		_, err := LoadConfig(p)
		return err
	}
	assert.ErrorContains(t, load(`{"sources": [{"id": "a", "dsn": "postgres://h/x", "budget": "nope"}]}`), `budget "nope" is not in budgets`)
	assert.ErrorContains(t, load(`{"budgets": {"pg": {"limit": 0}}, "sources": [{"id": "a", "dsn": "postgres://h/x", "budget": "pg"}]}`), `budget "pg": limit 0`)
	assert.ErrorIs(t, load(`{"budgets": {"pg": {"limit": 2}}, "sources": [{"id": "a", "dsn": "postgres://h/x", "budget": "pg", "weight": -1}]}`), pool.ErrInvalidConfig)
	assert.ErrorContains(t, load(`{"budgets": {"pg": {"limit": 2, "limt": 3}}, "sources": [{"id": "a", "dsn": "postgres://h/x"}]}`), "limt")
	assert.NoError(t, load(`{"budgets": {"pg": {"limit": 2}}, "sources": [{"id": "a", "dsn": "postgres://h/x", "budget": "pg", "weight": 3, "adaptive": true, "shed_hopeless": true}]}`))
}

// MinSizes above the budget's limit fail at start, naming the budget.
func TestBudgetOverbookedByMinSizesFailsAtStart(t *testing.T) {
	if os.Getenv("PG_DSN") == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL to run this test")
	}
	file := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"budgets": {"main-pg": {"limit": 2}}, "sources": [
		{"id": "a", "dsn": "${PG_DSN}", "min_size": 2, "budget": "main-pg"},
		{"id": "b", "dsn": "${PG_DSN}", "min_size": 1, "budget": "main-pg"}]}`), 0o600))
	cfg, err := LoadConfig(file)
	require.NoError(t, err)
	_, err = NewService(context.Background(), cfg)
	require.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), `"main-pg"`)
	assert.Contains(t, err.Error(), "sum to 3")
}

// Tenants of one server that differ only in their settings share the
// budget's connections: on a limit of one, both are served by one
// backend, and every request sees its own tenant's settings.
func TestTenantsOnOneBudgetShareConnectionsAndKeepTheirSettings(t *testing.T) {
	svc, ts := pgService(t, `{"budgets": {"pg": {"limit": 1}}, "sources": [
		{"id": "acme", "dsn": "${PG_DSN}", "min_size": 0, "budget": "pg",
		 "settings": {"application_name": "tenant-acme", "search_path": "acme, public"}},
		{"id": "globex", "dsn": "${PG_DSN}", "min_size": 0, "budget": "pg",
		 "settings": {"application_name": "tenant-globex", "search_path": "globex, public"}}]}`)
	ctx := context.Background()
	backends := map[uint32]bool{}
	for range 3 {
		for _, id := range []string{"acme", "globex"} {
			var got doubleResponse
			require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/"+id+"/double?n=2", &got))
			backends[got.Backend] = true
			var app, path string
			require.NoError(t, postgres.With(ctx, svc.reg, id, func(c *pgx.Conn) error {
				return c.QueryRow(ctx, "select current_setting('application_name'), current_setting('search_path')").Scan(&app, &path)
			}))
			assert.Equal(t, "tenant-"+id, app)
			assert.Equal(t, id+", public", path)
		}
	}
	assert.Len(t, backends, 1, "the tenants did not share the budget's one connection")
	s := svc.reg.Stats()
	assert.Positive(t, s["acme"].MovedIn)
	assert.Positive(t, s["globex"].MovedIn)
}

func TestSettingsJoinTheDSN(t *testing.T) {
	got, err := withSettings("postgres://u:secret@h:5432/db?sslmode=disable", map[string]string{"search_path": "a, public", "app.tenant": "a"})
	require.NoError(t, err)
	cfg, err := postgres.ParseDSN(got)
	require.NoError(t, err)
	assert.Equal(t, "a, public", cfg.RuntimeParams["search_path"])
	assert.Equal(t, "a", cfg.RuntimeParams["app.tenant"])
	assert.Equal(t, "secret", cfg.Password)

	got, err = withSettings("host=h user=u dbname=db", map[string]string{"application_name": `it's \ odd`})
	require.NoError(t, err)
	cfg, err = postgres.ParseDSN(got)
	require.NoError(t, err)
	assert.Equal(t, `it's \ odd`, cfg.RuntimeParams["application_name"])

	_, err = withSettings("postgres://u:secret@h:bad/db", map[string]string{"a": "b"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "secret")

	file := filepath.Join(t.TempDir(), "config.json")
	for cfg, want := range map[string]string{
		`{"sources": [{"id": "a", "dsn": "postgres://h/x", "settings": {"search_path; drop": "x"}}]}`:        "not the name of a run-time parameter",
		`{"sources": [{"id": "f", "kind": "azblob", "dsn": "x", "container": "c", "settings": {"a": "b"}}]}`: "settings are for kind postgres",
	} {
		require.NoError(t, os.WriteFile(file, []byte(cfg), 0o600))
		_, err := LoadConfig(file)
		assert.ErrorContains(t, err, want)
	}
}
