package poolotel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/deepanalyze/pool"
	poolotel "github.com/deepanalyze/pool/otel"
)

type conn struct{}

func (conn) Ping(context.Context) error { return nil }
func (conn) Close() error               { return nil }

// collect reads every metric of the scope, by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, poolotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// gaugeValue returns the value of a non-monotonic or monotonic int64 sum
// at the point with exactly these attributes.
func sumValue(t *testing.T, m metricdata.Metrics, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	want := attribute.NewSet(attrs...)
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is %T, want an int64 sum", m.Name, m.Data)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	t.Fatalf("%s has no point with %v", m.Name, attrs)
	return 0
}

func histogram(t *testing.T, m metricdata.Metrics, name string) metricdata.HistogramDataPoint[float64] {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is %T, want a float64 histogram", m.Name, m.Data)
	want := attribute.NewSet(poolotel.PoolNameKey.String(name))
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp
		}
	}
	t.Fatalf("%s has no point for pool %q", m.Name, name)
	return metricdata.HistogramDataPoint[float64]{}
}

// A pool driven to a known state, in fake time, reads back through the
// SDK's ManualReader with the conventions' names, units, attributes and
// the exact values.
func TestMetricsOfAPoolInAKnownState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
		require.NoError(t, err)

		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 0, 2
		cfg.ReapInterval, cfg.PingAfterIdle = 0, 0
		cfg.AcquireTimeout = time.Second
		cfg.Hooks = m.Hooks("pg-sales")
		p, err := pool.New(func(context.Context) (conn, error) {
			time.Sleep(100 * time.Millisecond) // each dial
			return conn{}, nil
		}, cfg)
		require.NoError(t, err)
		defer p.Close()
		reg, err := m.ObservePool("pg-sales", p)
		require.NoError(t, err)
		defer reg.Unregister()

		bg := context.Background()
		a, err := p.Acquire(bg) // 100 ms: a dial
		require.NoError(t, err)
		b, err := p.Acquire(bg) // 100 ms
		require.NoError(t, err)
		_, err = p.Acquire(bg) // waits 1 s, times out
		require.ErrorIs(t, err, pool.ErrAcquireTimeout)
		waited := make(chan error)
		go func() {
			c, err := p.Acquire(bg) // waits for a
			if err == nil {
				c.Release()
			}
			waited <- err
		}()
		synctest.Wait() // the goroutine is queued

		got := collect(t, reader)
		pn := poolotel.PoolNameKey.String("pg-sales")
		count := got["db.client.connection.count"]
		assert.False(t, count.Data.(metricdata.Sum[int64]).IsMonotonic, "count is an UpDownCounter")
		assert.EqualValues(t, 0, sumValue(t, count, pn, poolotel.StateKey.String("idle")))
		assert.EqualValues(t, 2, sumValue(t, count, pn, poolotel.StateKey.String("used")))
		assert.EqualValues(t, 2, sumValue(t, got["db.client.connection.max"], pn))
		assert.EqualValues(t, 2, sumValue(t, got["db.client.connection.idle.max"], pn))
		assert.EqualValues(t, 0, sumValue(t, got["db.client.connection.idle.min"], pn))
		assert.EqualValues(t, 1, sumValue(t, got["db.client.connection.pending_requests"], pn))
		assert.EqualValues(t, 1, sumValue(t, got["db.client.connection.timeouts"], pn))
		assert.True(t, got["db.client.connection.timeouts"].Data.(metricdata.Sum[int64]).IsMonotonic)

		create := histogram(t, got["db.client.connection.create_time"], "pg-sales")
		assert.EqualValues(t, 2, create.Count)
		assert.InDelta(t, 0.2, create.Sum, 1e-9)
		wait := histogram(t, got["db.client.connection.wait_time"], "pg-sales")
		assert.EqualValues(t, 3, wait.Count, "two acquires and one timeout")
		assert.InDelta(t, 1.2, wait.Sum, 1e-9)

		time.Sleep(250 * time.Millisecond)
		a.Release() // handed to the waiter, which releases at once
		require.NoError(t, <-waited)
		b.Release()
		got = collect(t, reader)
		for name, unit := range map[string]string{
			"db.client.connection.count": "{connection}", "db.client.connection.idle.max": "{connection}",
			"db.client.connection.idle.min": "{connection}", "db.client.connection.max": "{connection}",
			"db.client.connection.pending_requests": "{request}", "db.client.connection.timeouts": "{timeout}",
			"db.client.connection.create_time": "s", "db.client.connection.wait_time": "s", "db.client.connection.use_time": "s",
		} {
			require.Contains(t, got, name)
			assert.Equal(t, unit, got[name].Unit, name)
		}
		use := histogram(t, got["db.client.connection.use_time"], "pg-sales")
		assert.EqualValues(t, 3, use.Count)
		assert.InDelta(t, 1.35+1.25+0, use.Sum, 1e-9, "a held from 0.1 s to 1.45 s, b from 0.2 s, the waiter no time")
		wait = histogram(t, got["db.client.connection.wait_time"], "pg-sales")
		assert.EqualValues(t, 4, wait.Count)
		assert.InDelta(t, 1.2+0.25, wait.Sum, 1e-9)
		assert.EqualValues(t, 2, sumValue(t, got["db.client.connection.count"], pn, poolotel.StateKey.String("idle")))
		assert.EqualValues(t, 0, sumValue(t, got["db.client.connection.pending_requests"], pn))
	})
}

// A registry's sources are observed under their IDs.
func TestObserveRegistry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	reg := pool.NewRegistry[conn]()
	defer reg.Close()
	for _, id := range []string{"a", "b"} {
		cfg := pool.DefaultConfig()
		cfg.Hooks = m.Hooks(id)
		require.NoError(t, reg.Register(context.Background(), id, func(context.Context) (conn, error) { return conn{}, nil }, cfg))
		require.NoError(t, reg.With(context.Background(), id, func(conn) error { return nil }))
	}
	r, err := m.ObserveRegistry(reg)
	require.NoError(t, err)
	defer r.Unregister()
	got := collect(t, reader)
	for _, id := range []string{"a", "b"} {
		assert.EqualValues(t, 10, sumValue(t, got["db.client.connection.max"], poolotel.PoolNameKey.String(id)))
		assert.EqualValues(t, 1, histogram(t, got["db.client.connection.use_time"], id).Count)
	}
}

// With the hooks set, an acquire and release through a real SDK pipeline
// allocates nothing.
func TestHooksDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	reader := sdkmetric.NewManualReader()
	m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	cfg := pool.DefaultConfig()
	cfg.Hooks = m.Hooks("x")
	p, err := pool.New(func(context.Context) (conn, error) { return conn{}, nil }, cfg)
	require.NoError(t, err)
	defer p.Close()
	fn := func(conn) error { return nil }
	require.NoError(t, p.With(context.Background(), fn))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = p.With(context.Background(), fn) }))
}

// A pool observed without a name is observed under its Config.Name.
func TestObservePoolUsesThePoolsName(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	cfg := pool.DefaultConfig()
	cfg.Name, cfg.MaxSize = "reports", 7
	p, err := pool.New(func(context.Context) (conn, error) { return conn{}, nil }, cfg)
	require.NoError(t, err)
	defer p.Close()
	r, err := m.ObservePool("", p)
	require.NoError(t, err)
	defer r.Unregister()
	got := collect(t, reader)
	assert.EqualValues(t, 7, sumValue(t, got["db.client.connection.max"], poolotel.PoolNameKey.String("reports")))
}

// A dial the server refuses for capacity lowers the ceiling and counts a
// refusal; a caller shed under ShedHopeless is counted too.
func TestMetricsOfCapacityAndShedding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
		require.NoError(t, err)
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
		reg, err := m.ObservePool("pg-sales", p)
		require.NoError(t, err)
		defer reg.Unregister()

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

		got := collect(t, reader)
		pn := poolotel.PoolNameKey.String("pg-sales")
		assert.EqualValues(t, 1, sumValue(t, got["pool.connection.ceiling"], pn))
		assert.EqualValues(t, 1, sumValue(t, got["pool.connection.refused"], pn))
		assert.EqualValues(t, 1, sumValue(t, got["pool.acquire.shed"], pn))
		assert.True(t, got["pool.connection.refused"].Data.(metricdata.Sum[int64]).IsMonotonic)
		assert.False(t, got["pool.connection.ceiling"].Data.(metricdata.Sum[int64]).IsMonotonic)
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
// Bind, are counted per pool and direction.
func TestMetricsOfMovedConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		m, err := poolotel.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
		require.NoError(t, err)
		a, b := moveAndFailABind(t)
		for name, p := range map[string]*pool.Pool[*sconn]{"a": a, "b": b} {
			reg, err := m.ObservePool(name, p)
			require.NoError(t, err)
			defer reg.Unregister()
		}
		got := collect(t, reader)
		moved, bindErrors := got["pool.connection.moved"], got["pool.connection.bind_errors"]
		pa, pb := poolotel.PoolNameKey.String("a"), poolotel.PoolNameKey.String("b")
		in, out := poolotel.DirectionKey.String("in"), poolotel.DirectionKey.String("out")
		assert.EqualValues(t, 1, sumValue(t, moved, pa, out))
		assert.EqualValues(t, 1, sumValue(t, moved, pb, in))
		assert.EqualValues(t, 1, sumValue(t, moved, pb, out))
		assert.EqualValues(t, 0, sumValue(t, moved, pa, in), "the move into a failed to bind: no dial avoided")
		assert.EqualValues(t, 1, sumValue(t, bindErrors, pa))
		assert.EqualValues(t, 0, sumValue(t, bindErrors, pb))
		assert.True(t, moved.Data.(metricdata.Sum[int64]).IsMonotonic)
		assert.True(t, bindErrors.Data.(metricdata.Sum[int64]).IsMonotonic)
	})
}
