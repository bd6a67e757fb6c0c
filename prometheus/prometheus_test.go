package poolprom_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	poolprom "github.com/deepanalyze/pool/prometheus"
)

type conn struct{}

func (conn) Ping(context.Context) error { return nil }
func (conn) Close() error               { return nil }

// A pool driven to a known state, in fake time, scrapes as exactly these
// gauges and counters, and histograms with the exact counts and sums.
func TestCollectorReportsAPoolInAKnownState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := poolprom.New("")
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 1, 2
		cfg.ReapInterval, cfg.PingAfterIdle = 0, 0
		cfg.AcquireTimeout = time.Second
		cfg.Hooks = c.Hooks("pg-sales")
		p, err := pool.New(func(context.Context) (conn, error) {
			time.Sleep(100 * time.Millisecond)
			return conn{}, nil
		}, cfg)
		require.NoError(t, err)
		defer p.Close()
		c.AddPool("pg-sales", p)
		require.NoError(t, p.WaitReady(context.Background())) // MinSize: one dial

		bg := context.Background()
		a, err := p.Acquire(bg) // the warm one: no wait
		require.NoError(t, err)
		b, err := p.Acquire(bg) // a dial: 100 ms
		require.NoError(t, err)
		_, err = p.Acquire(bg) // 1 s, then AcquireTimeout
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if c, err := p.Acquire(bg); err == nil { // waits for a
				c.Discard()
			}
		}()
		synctest.Wait()

		const gauges = `
# HELP pool_connections Open connections: idle, in use, being dialled and being closed.
# TYPE pool_connections gauge
pool_connections{source="pg-sales"} 2
# HELP pool_connections_active Connections lent to callers, or being checked for one.
# TYPE pool_connections_active gauge
pool_connections_active{source="pg-sales"} 2
# HELP pool_connections_idle Idle connections.
# TYPE pool_connections_idle gauge
pool_connections_idle{source="pg-sales"} 0
# HELP pool_connections_pending Callers waiting for a connection.
# TYPE pool_connections_pending gauge
pool_connections_pending{source="pg-sales"} 1
# HELP pool_connections_max The pool's MaxSize.
# TYPE pool_connections_max gauge
pool_connections_max{source="pg-sales"} 2
# HELP pool_connections_min The pool's MinSize.
# TYPE pool_connections_min gauge
pool_connections_min{source="pg-sales"} 1
# HELP pool_connection_timeouts_total Acquires that ended at AcquireTimeout.
# TYPE pool_connection_timeouts_total counter
pool_connection_timeouts_total{source="pg-sales"} 1
# HELP pool_connections_created_total Connections dialled successfully.
# TYPE pool_connections_created_total counter
pool_connections_created_total{source="pg-sales"} 2
`
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(gauges),
			"pool_connections", "pool_connections_active", "pool_connections_idle", "pool_connections_pending",
			"pool_connections_max", "pool_connections_min", "pool_connection_timeouts_total", "pool_connections_created_total"))

		time.Sleep(400 * time.Millisecond)
		a.Release() // to the waiter, which discards it
		<-done
		b.Release()
		synctest.Wait()
		const after = `
# HELP pool_connections_closed_total Connections closed, by reason.
# TYPE pool_connections_closed_total counter
pool_connections_closed_total{reason="abandoned",source="pg-sales"} 0
pool_connections_closed_total{reason="broken",source="pg-sales"} 1
pool_connections_closed_total{reason="budget",source="pg-sales"} 0
pool_connections_closed_total{reason="idle",source="pg-sales"} 0
pool_connections_closed_total{reason="lifetime",source="pg-sales"} 0
pool_connections_closed_total{reason="pool_closed",source="pg-sales"} 0
pool_connections_closed_total{reason="reset",source="pg-sales"} 0
pool_connections_closed_total{reason="resized",source="pg-sales"} 0
# HELP pool_acquires_total Acquires that lent a connection.
# TYPE pool_acquires_total counter
pool_acquires_total{source="pg-sales"} 3
`
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(after), "pool_connections_closed_total", "pool_acquires_total"))

		// Histograms: counts and sums in seconds, from fake time.
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(c))
		families, err := reg.Gather()
		require.NoError(t, err)
		hist := map[string][2]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				if h := m.GetHistogram(); h != nil {
					hist[f.GetName()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
				}
			}
		}
		assert.Equal(t, [2]float64{2, 0.2}, round(hist["pool_connection_creation_seconds"]), "two dials of 100 ms")
		assert.Equal(t, [2]float64{4, 1.5}, round(hist["pool_connection_acquire_seconds"]), "0 + 0.1 + 1 (timeout) + 0.4 s")
		assert.Equal(t, [2]float64{3, 2.9}, round(hist["pool_connection_usage_seconds"]), "a held from 0.1 s to 1.6 s, b from 0.2 s, the waiter 0")
	})
}

func round(v [2]float64) [2]float64 {
	return [2]float64{v[0], float64(int64(v[1]*1e6+0.5)) / 1e6}
}

// A registry's sources are reported under their IDs, and what the
// collector exposes passes promtool's lint.
func TestRegistryMetricsPassPromtool(t *testing.T) {
	c := poolprom.New("")
	reg := pool.NewRegistry[conn]()
	defer reg.Close()
	for _, id := range []string{"pg-sales", "blob-raw"} {
		cfg := pool.DefaultConfig()
		cfg.Hooks = c.Hooks(id)
		require.NoError(t, reg.Register(context.Background(), id, func(context.Context) (conn, error) { return conn{}, nil }, cfg))
		require.NoError(t, reg.With(context.Background(), id, func(conn) error { return nil }))
	}
	c.AddRegistry(reg)
	pr := prometheus.NewPedanticRegistry()
	require.NoError(t, pr.Register(c))
	n, err := testutil.GatherAndCount(pr, "pool_connection_usage_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "one usage histogram per source")
	require.NoError(t, testutil.GatherAndCompare(pr, strings.NewReader(`
# HELP pool_connections_max The pool's MaxSize.
# TYPE pool_connections_max gauge
pool_connections_max{source="blob-raw"} 10
pool_connections_max{source="pg-sales"} 10
`), "pool_connections_max"))

	families, err := pr.Gather()
	require.NoError(t, err)
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		require.NoError(t, enc.Encode(f))
	}
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		t.Skip("PROMTOOL is not set; set it to Prometheus's promtool to run this test (Debian's prometheus package has it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s\n%s", out, text.String())
	assert.Empty(t, strings.TrimSpace(string(out)), "promtool has remarks")
}

// With the hooks set, an acquire and release allocates nothing.
func TestHooksDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := poolprom.New("")
	cfg := pool.DefaultConfig()
	cfg.Hooks = c.Hooks("x")
	p, err := pool.New(func(context.Context) (conn, error) { return conn{}, nil }, cfg)
	require.NoError(t, err)
	defer p.Close()
	fn := func(conn) error { return nil }
	require.NoError(t, p.With(context.Background(), fn))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = p.With(context.Background(), fn) }))
}

// A Manager is reported like a registry, one source label per pool.
func TestManagerMetrics(t *testing.T) {
	c := poolprom.New("db")
	m, err := pool.NewManager(func(_ context.Context, id string) (pool.Factory[conn], pool.Config, error) {
		cfg := pool.DefaultConfig()
		cfg.MaxSize = len(id)
		cfg.Hooks = c.Hooks(id)
		return func(context.Context) (conn, error) { return conn{}, nil }, cfg, nil
	})
	require.NoError(t, err)
	defer m.Close()
	for _, id := range []string{"ab", "abc"} {
		p, err := m.Pool(context.Background(), id)
		require.NoError(t, err)
		require.NoError(t, p.With(context.Background(), func(conn) error { return nil }))
	}
	c.AddRegistry(m)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP db_connections_max The pool's MaxSize.
# TYPE db_connections_max gauge
db_connections_max{source="ab"} 2
db_connections_max{source="abc"} 3
`), "db_connections_max"))
	assert.Equal(t, 2, testutil.CollectAndCount(c, "db_connection_acquire_seconds"))
}

// The same ID added twice (one Manager added twice, and a pool added under
// an ID the Manager has) is reported once, from the first source added,
// and the scrape still succeeds: a duplicate series would fail all of it.
func TestDuplicateSourcesDoNotFailTheScrape(t *testing.T) {
	c := poolprom.New("db")
	m, err := pool.NewManager(func(_ context.Context, id string) (pool.Factory[conn], pool.Config, error) {
		cfg := pool.DefaultConfig()
		cfg.MaxSize = 4
		return func(context.Context) (conn, error) { return conn{}, nil }, cfg, nil
	})
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Pool(context.Background(), "ab")
	require.NoError(t, err)
	cfg := pool.DefaultConfig()
	cfg.MaxSize = 9
	other, err := pool.New(func(context.Context) (conn, error) { return conn{}, nil }, cfg)
	require.NoError(t, err)
	defer other.Close()
	c.AddRegistry(m)
	c.AddRegistry(m)
	c.AddPool("ab", other)

	pr := prometheus.NewPedanticRegistry()
	require.NoError(t, pr.Register(c))
	require.NoError(t, testutil.GatherAndCompare(pr, strings.NewReader(`
# HELP db_connections_max The pool's MaxSize.
# TYPE db_connections_max gauge
db_connections_max{source="ab"} 4
`), "db_connections_max"))
}

// A pool added without a source label is labelled with its Config.Name.
func TestAddPoolUsesThePoolsName(t *testing.T) {
	c := poolprom.New("db")
	cfg := pool.DefaultConfig()
	cfg.Name, cfg.MaxSize = "reports", 7
	p, err := pool.New(func(context.Context) (conn, error) { return conn{}, nil }, cfg)
	require.NoError(t, err)
	defer p.Close()
	c.AddPool("", p)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP db_connections_max The pool's MaxSize.
# TYPE db_connections_max gauge
db_connections_max{source="reports"} 7
`), "db_connections_max"))
}

// A dial the server refuses for capacity lowers the ceiling and counts a
// refusal; a caller shed under ShedHopeless is counted too.
func TestCollectorReportsCapacityAndShedding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := poolprom.New("")
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 0, 3
		cfg.ReapInterval, cfg.PingAfterIdle = 0, 0
		cfg.ShedHopeless = true
		cfg.DialBackoff, cfg.DialBackoffMax = time.Second, time.Second // no probe while it waits
		dials := 0
		p, err := pool.New(func(context.Context) (conn, error) {
			if dials++; dials > 1 {
				return conn{}, fmt.Errorf("too many clients: %w", pool.ErrCapacity)
			}
			return conn{}, nil
		}, cfg)
		require.NoError(t, err)
		defer p.Close()
		c.AddPool("pg-sales", p)

		bg := context.Background()
		a, err := p.Acquire(bg)
		require.NoError(t, err)
		time.Sleep(time.Second) // a loan of 1 s: the mean hold
		a.Release()
		time.Sleep(200 * time.Millisecond) // sampled
		a, err = p.Acquire(bg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
		_, err = p.Acquire(ctx) // its dial is refused; it waits for a, and times out
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		ctx, cancel = context.WithTimeout(bg, 100*time.Millisecond)
		_, err = p.Acquire(ctx) // the pool is at its ceiling: shed at once
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		a.Release()

		const want = `
# HELP pool_connections_ceiling The most connections the pool may open now: MaxSize, or less while the server refuses dials for capacity.
# TYPE pool_connections_ceiling gauge
pool_connections_ceiling{source="pg-sales"} 1
# HELP pool_dials_refused_total Dials the server refused for capacity (pool.ErrCapacity), of the failed dials.
# TYPE pool_dials_refused_total counter
pool_dials_refused_total{source="pg-sales"} 1
# HELP pool_acquires_shed_total Acquires failed at once because their deadline would pass before their turn (ShedHopeless).
# TYPE pool_acquires_shed_total counter
pool_acquires_shed_total{source="pg-sales"} 1
`
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
			"pool_connections_ceiling", "pool_dials_refused_total", "pool_acquires_shed_total"))
	})
}

// sconn is a connection with an identity, so that a move shows.
type sconn struct{ id int }

func (*sconn) Ping(context.Context) error { return nil }
func (*sconn) Close() error               { return nil }

// moveAndFailABind drives two pools of one Share group on a budget of
// one: a's connection moves to b's waiter, then back to a's waiter, whose
// Bind fails (a dials instead). It returns the pools, to be reported as
// "a" and "b".
func moveAndFailABind(t *testing.T) (a, b *pool.Pool[*sconn]) {
	bg := context.Background()
	budget, err := pool.NewBudget(1)
	require.NoError(t, err)
	dials := 0
	mk := func(name string, bind func() error) *pool.Pool[*sconn] {
		cfg := pool.DefaultConfig()
		cfg.Name, cfg.Budget = name, budget
		cfg.MinSize, cfg.MaxSize = 0, 1
		cfg.ReapInterval, cfg.PingAfterIdle = 0, 0
		cfg.Share = pool.Share{Group: "g", Bind: func(context.Context, pool.Connector) error { return bind() }}
		p, err := pool.New(func(context.Context) (*sconn, error) { dials++; return &sconn{id: dials}, nil }, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	a = mk("a", func() error { return errors.New("bind refused") })
	b = mk("b", func() error { return nil })
	for _, step := range []struct{ from, to *pool.Pool[*sconn] }{{a, b}, {b, a}} {
		held, err := step.from.Acquire(bg)
		require.NoError(t, err)
		got := make(chan *pool.PooledConn[*sconn])
		go func() {
			pc, err := step.to.Acquire(bg)
			assert.NoError(t, err)
			got <- pc
		}()
		synctest.Wait() // it waits: the budget's one slot is held
		held.Release()  // the connection moves to it (and, into a, fails to bind)
		(<-got).Release()
	}
	require.EqualValues(t, 1, b.Stats().MovedIn)
	require.EqualValues(t, 1, a.Stats().BindErrors)
	require.Equal(t, 2, dials, "the first dial and a's after its Bind failed")
	return a, b
}

// Connections moved between the pools of a Share group, and a failed
// Bind, are counted per source and direction.
func TestCollectorReportsMovedConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := poolprom.New("")
		a, b := moveAndFailABind(t)
		c.AddPool("", a)
		c.AddPool("", b)
		const want = `
# HELP pool_connections_moved_total Connections moved between pools of one Share group: in (bound here, a dial avoided) or out (given to another pool).
# TYPE pool_connections_moved_total counter
pool_connections_moved_total{direction="in",source="a"} 0
pool_connections_moved_total{direction="out",source="a"} 1
pool_connections_moved_total{direction="in",source="b"} 1
pool_connections_moved_total{direction="out",source="b"} 1
# HELP pool_bind_errors_total Moved connections that failed Share.Bind, closed and replaced by a dial.
# TYPE pool_bind_errors_total counter
pool_bind_errors_total{source="a"} 1
pool_bind_errors_total{source="b"} 0
`
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
			"pool_connections_moved_total", "pool_bind_errors_total"))
	})
}
