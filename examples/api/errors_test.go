package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An error answer quotes at most a short prefix of what the client sent,
// and says how long it was.
func TestErrorAnswersQuoteAShortPrefix(t *testing.T) {
	_, ts := pgService(t, `{"sources": [{"id": "a", "dsn": "${PG_DSN}", "max_size": 2}]}`)
	long := strings.Repeat("x", 100_000)
	for _, path := range []string{
		"/sources/" + long + "/double?n=1",     // an unknown source
		"/sources/a/double?n=1&" + long + "=1", // an unknown parameter
		"/" + long,                             // no such endpoint
	} {
		resp, err := http.Get(ts.URL + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Less(t, len(body), 300, "%d bytes answered to %d sent", len(body), len(path))
		var e map[string]string
		require.NoError(t, json.Unmarshal(body, &e))
		assert.Regexp(t, `… \(10000[01] bytes\)$`, e["error"]) // the path's is one longer: its "/"
		assert.Contains(t, e["error"], strings.Repeat("x", maxQuoted-1))
	}
	// A short one is quoted whole.
	resp, err := http.Get(ts.URL + "/sources/nope/double?n=1")
	require.NoError(t, err)
	var e map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	resp.Body.Close()
	assert.Equal(t, `unknown source "nope"`, e["error"])
}

func TestQuotedCutsWholeRunes(t *testing.T) {
	s := strings.Repeat("é", 40) // 80 bytes, two each
	q := quoted(s)
	assert.Equal(t, `"`+strings.Repeat("é", 32)+`"… (80 bytes)`, q)
	assert.Equal(t, `"short"`, quoted("short"))
}

// A 405 names both methods a GET endpoint serves, and HEAD is served.
func TestMethodNotAllowedNamesGetAndHead(t *testing.T) {
	_, ts := pgService(t, `{"sources": [{"id": "a", "dsn": "${PG_DSN}", "max_size": 2}]}`)
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/stats", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	resp, err = http.Head(ts.URL + "/stats")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// An ID that cannot be a segment of the URL path is refused at start.
func TestLoadConfigRefusesIDsThatCannotBeRouted(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"a/b", "..", ".", "", "x?y", "x#y", "x%2Fy"} {
		p := filepath.Join(dir, "c.json")
		body, _ := json.Marshal(map[string]any{"sources": []map[string]any{{"id": id, "dsn": "postgres://h/x"}}})
		require.NoError(t, os.WriteFile(p, body, 0o600))
		_, err := LoadConfig(p)
		assert.Error(t, err, "id %q", id)
	}
}

// A source that fails at start is named once in the error.
func TestStartupErrorNamesTheSourceOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"sources": [{"id": "sales", "dsn": "postgres://127.0.0.1:1/x?connect_timeout=1"}]}`), 0o600))
	cfg, err := LoadConfig(file)
	require.NoError(t, err)
	_, err = NewService(context.Background(), cfg)
	require.Error(t, err)
	assert.Equal(t, 1, strings.Count(err.Error(), `"sales"`), "%v", err)

	require.NoError(t, os.WriteFile(file, []byte(`{"sources": [{"id": "sales", "dsn": "${POOLTEST_UNSET}"}]}`), 0o600))
	t.Setenv("POOLTEST_UNSET", "x")
	cfg, err = LoadConfig(file)
	require.NoError(t, err)
	t.Setenv("POOLTEST_UNSET", "")
	_, err = NewService(context.Background(), cfg)
	require.Error(t, err)
	assert.Equal(t, 1, strings.Count(err.Error(), `"sales"`), "%v", err)
}

// A keep-alive client that sends nothing more does not hold the shutdown
// for the whole drain: its idle connection is closed after idleGrace,
// while a request in flight at the shutdown still gets its answer.
func TestIdleKeepAliveClientDoesNotHoldShutdown(t *testing.T) {
	svc, _ := pgService(t, `{"sources": [{"id": "a", "dsn": "${PG_DSN}", "max_size": 2}]}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	inHandler := make(chan struct{})
	release := make(chan struct{})
	h := svc.Handler()
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			close(inHandler)
			<-release
		}
		h.ServeHTTP(w, r)
	})
	ctx, shutdown := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, slow, svc, time.Minute) }()
	base := "http://" + ln.Addr().String()

	idleClient := &http.Client{Transport: &http.Transport{}}
	resp, err := idleClient.Get(base + "/stats") // its connection stays open, idle
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	slowDone := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{}}).Get(base + "/stats?slow=1")
		if err != nil {
			slowDone <- 0
			return
		}
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()
	<-inHandler
	start := time.Now()
	shutdown()
	close(release) // the request in flight finishes during the drain
	assert.Equal(t, http.StatusOK, <-slowDone, "the request in flight was answered")
	require.NoError(t, <-served)
	took := time.Since(start)
	assert.Less(t, took, idleGrace+2*time.Second, "the idle client held the shutdown for %v of a one-minute drain", took)
}

// A query that lost its connection (and found none alive on its retry)
// is a 503 with Retry-After, never a 500; a query's own error stays a 500.
func TestLostConnectionIsA503(t *testing.T) {
	s := &Service{log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		err  error
		code int
	}{
		{&pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}, http.StatusServiceUnavailable},
		{&pgconn.PgError{Severity: "FATAL", Code: "08006", Message: "connection failure"}, http.StatusServiceUnavailable},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), http.StatusServiceUnavailable},
		{&net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, http.StatusServiceUnavailable},
		{&pgconn.PgError{Severity: "ERROR", Code: "42601", Message: "syntax error"}, http.StatusInternalServerError},
		{errors.New("something else"), http.StatusInternalServerError},
	} {
		rec := httptest.NewRecorder()
		s.writeSourceError(rec, httptest.NewRequest(http.MethodGet, "/sources/a/double?n=1", nil), "a", c.err)
		assert.Equal(t, c.code, rec.Code, "%v", c.err)
		if c.code == http.StatusServiceUnavailable {
			assert.Equal(t, "1", rec.Header().Get("Retry-After"), "%v", c.err)
		}
		assert.NotContains(t, rec.Body.String(), "57P01")
	}
}

// The log ends with a line that says the service stopped, after the one
// that says it is draining.
func TestServeLogsThatItStopped(t *testing.T) {
	svc, _ := pgService(t, `{"sources": [{"id": "a", "dsn": "${PG_DSN}", "max_size": 1}]}`)
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	}), nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, shutdown := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, svc.Handler(), svc, time.Second) }()
	shutdown()
	require.NoError(t, <-served)
	mu.Lock()
	log := buf.String()
	mu.Unlock()
	draining, stopped := strings.Index(log, "shutting down: draining"), strings.Index(log, "msg=\"stopped: ")
	require.GreaterOrEqual(t, draining, 0, "log: %s", log)
	assert.Greater(t, stopped, draining, "no stopped line after draining: %s", log)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
