package postgres_test

// Tests that stop and start the shared PostgreSQL server. They run only
// where PG_CTLCLUSTER says how (`.ci/run` sets it).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// serverControl returns a function that runs pg_ctlcluster ACTION on the
// test server, or skips the test unless POOL_TEST_RESTARTS_PG=yes opts in
// and PG_CTLCLUSTER says how. The
// server is started again when the test ends, whatever happened.
func serverControl(t *testing.T) func(action string) {
	t.Helper()
	ctl := os.Getenv("PG_CTLCLUSTER")
	if os.Getenv("POOL_TEST_RESTARTS_PG") != "yes" || ctl == "" {
		t.Skip("this test stops and restarts the PostgreSQL server: it runs only with POOL_TEST_RESTARTS_PG=yes and PG_CTLCLUSTER set to the server's pg_ctlcluster command (.ci/run sets both, on CI's own server)")
	}
	t.Cleanup(func() { _ = exec.Command("bash", "-c", ctl+" start").Run() })
	return func(action string) {
		out, err := exec.Command("bash", "-c", ctl+" "+action).CombinedOutput()
		require.NoError(t, err, "%s %s: %s", ctl, action, out)
	}
}

// TestServerRestart stops and starts the shared PostgreSQL server, so it
// runs only with POOL_TEST_RESTARTS_PG=yes and PG_CTLCLUSTER (`.ci/run` sets both).
func TestServerRestart(t *testing.T) {
	base := dsn(t)
	pgctl := serverControl(t)

	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 2, 4
	pcfg.AcquireTimeout = 2 * time.Second
	pcfg.DialTimeout = 2 * time.Second
	p := newPool(t, cfg, pcfg, postgres.Options{ConnectTimeout: 2 * time.Second})
	require.NoError(t, p.WaitReady(bg))
	query := func() error {
		return p.With(bg, func(c *postgres.Conn) error {
			var v int
			return c.Conn().QueryRow(bg, "select 1").Scan(&v)
		})
	}
	require.NoError(t, query())

	pgctl("stop")
	before := p.Stats()
	const during = 20
	named := false // a refused dial's error names the server's address
	for i := range during {
		start := time.Now()
		err := query()
		require.Error(t, err, "request %d succeeded with the server down", i)
		assert.Less(t, time.Since(start), 3*time.Second, "a request hung while the server was down")
		if i >= 2 { // the two idle connections fail first; then dials are refused
			assert.ErrorIs(t, err, pool.ErrDial)
		}
		named = named || strings.Contains(err.Error(), "127.0.0.1")
	}
	mid := p.Stats()
	dials := (mid.Created + mid.DialErrors) - (before.Created + before.DialErrors)
	assert.LessOrEqual(t, dials, int64(during), "dial flood: %d dials for %d requests", dials, during)
	// The idle connections, if dialled less than a second before the stop,
	// fail as new connections that failed their check, and the pool fails
	// fast with that error until its backoff lets it dial again; the next
	// dial is refused, and names the address.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(3 * time.Second); !named && time.Now().Before(deadline); <-tick.C {
		err := query()
		require.Error(t, err)
		named = strings.Contains(err.Error(), "127.0.0.1")
	}
	assert.True(t, named, "no error named the server's address while it was down")

	pgctl("start")
	deadline := time.Now().Add(30 * time.Second)
	for query() != nil {
		require.True(t, time.Now().Before(deadline), "pool did not recover after the server came back")
	}
	for range 20 {
		require.NoError(t, query())
	}
	t.Logf("server down: %d requests failed fast with %d dials; recovered once it was back", during, dials)
}

// TestServerDownUnderLoadFailsFast stops the server under load from 32
// goroutines. While it is down, every request fails within 100 ms with an
// error matching pool.ErrDial, and the pool dials at most 10 times a
// second; once it is back, the pool serves again within 1 s. Like
// TestServerRestart it runs only with POOL_TEST_RESTARTS_PG=yes and PG_CTLCLUSTER.
func TestServerDownUnderLoadFailsFast(t *testing.T) {
	base := dsn(t)
	pgctl := serverControl(t)

	cfg, _ := tagged(t, base)
	var dialMu sync.Mutex
	var dialAt []time.Time
	factory := postgres.Factory(cfg, postgres.Options{ConnectTimeout: 2 * time.Second, Reset: postgres.ResetTransaction})
	counted := func(ctx context.Context) (*postgres.Conn, error) {
		dialMu.Lock()
		dialAt = append(dialAt, time.Now())
		dialMu.Unlock()
		return factory(ctx)
	}
	pcfg := pool.DefaultConfig() // DialBackoff 50 ms, doubling to 500 ms
	pcfg.MinSize, pcfg.MaxSize = 2, 8
	pcfg.AcquireTimeout = 5 * time.Second
	p, err := pool.New(counted, pcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	require.NoError(t, p.WaitReady(bg))

	type outcome struct {
		start, end time.Time
		err        error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				err := p.With(bg, func(c *postgres.Conn) error {
					var v int
					err := c.Conn().QueryRow(bg, "select 1").Scan(&v)
					if err != nil {
						return fmt.Errorf("%w: %w", pool.ErrBadConn, err)
					}
					return nil
				})
				end := time.Now()
				mu.Lock()
				outcomes = append(outcomes, outcome{start, end, err})
				mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond) // a client's retry pause, not a sync point
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // load before the stop

	pgctl("stop")
	stopped := time.Now()
	time.Sleep(2500 * time.Millisecond) // down, under load
	restarting := time.Now()
	pgctl("start")
	started := time.Now()
	time.Sleep(1500 * time.Millisecond) // back, under load
	close(stop)
	wg.Wait()

	// Requests in the down window: from 200 ms after the stop (in-flight
	// queries and idle connections to the dead server have failed by
	// then) to the restart.
	downFrom := stopped.Add(200 * time.Millisecond)
	var down, slow, notDial int
	var worst time.Duration
	firstOK := time.Time{}
	for _, o := range outcomes {
		switch {
		case o.start.After(downFrom) && o.end.Before(restarting):
			down++
			d := o.end.Sub(o.start)
			worst = max(worst, d)
			if d > 100*time.Millisecond {
				slow++
			}
			if !errors.Is(o.err, pool.ErrDial) {
				notDial++
				if notDial <= 3 {
					t.Logf("not ErrDial while down: %v", o.err)
				}
			}
		case o.start.After(started) && o.err == nil && (firstOK.IsZero() || o.end.Before(firstOK)):
			firstOK = o.end
		}
	}
	dialMu.Lock()
	var downDials int
	for _, at := range dialAt {
		if at.After(downFrom) && at.Before(restarting) {
			downDials++
		}
	}
	dialMu.Unlock()
	window := restarting.Sub(downFrom).Seconds()
	rate := float64(downDials) / window
	recovery := firstOK.Sub(started)
	t.Logf("down %.1f s: %d requests, worst %v, %d over 100 ms, %d not ErrDial; %d dials (%.1f/s); served again %v after the start",
		window, down, worst, slow, notDial, downDials, rate, recovery)
	require.Positive(t, down, "no request ran while the server was down")
	assert.Zero(t, slow, "requests took over 100 ms to fail while the server was down (worst %v)", worst)
	assert.Zero(t, notDial, "requests failed without ErrDial while the server was down")
	assert.LessOrEqual(t, rate, 10.0, "dial storm while the server was down")
	require.False(t, firstOK.IsZero(), "the pool never served again after the restart")
	assert.LessOrEqual(t, recovery, time.Second, "the pool took too long to serve again")
	assert.False(t, p.Stats().Down)
}
