// Package poolotel reports github.com/deepanalyze/pool's pools as
// OpenTelemetry metrics, with the instrument names, units and attributes of
// the semantic conventions for database client connection pools
// (semconv v1.43.0, db.client.connection.*):
//
//   - db.client.connection.count {connection}, by db.client.connection.state
//     (idle, used): the pool's idle and in-use connections;
//   - db.client.connection.idle.max, db.client.connection.idle.min and
//     db.client.connection.max {connection}: MaxSize, MinSize and MaxSize
//     (the pool keeps no separate idle maximum);
//   - db.client.connection.pending_requests {request}: callers waiting;
//   - db.client.connection.timeouts {timeout}: acquires that timed out;
//   - db.client.connection.create_time, db.client.connection.wait_time and
//     db.client.connection.use_time (histograms, s): each dial, each
//     acquire, each loan.
//
// Beyond the conventions, in the pool.* namespace:
//
//   - pool.connection.ceiling {connection}: the most connections the pool
//     may open now, MaxSize or less while the server refuses for capacity;
//   - pool.connection.refused {connection}: dials refused for capacity;
//   - pool.acquire.shed {request}: acquires failed at once under
//     ShedHopeless;
//   - pool.connection.moved {connection}, by pool.connection.direction
//     (in, out): connections that moved between pools of one
//     Config.Share group; each one in is a dial avoided;
//   - pool.connection.bind_errors {connection}: moved connections that
//     failed Share.Bind (closed, and dialled instead).
//
// Every point carries db.client.connection.pool.name, the source ID. The
// gauges and the timeout count are read from Stats when the reader
// collects, so they cost nothing between collections; the histograms are
// recorded by the pool's Hooks, which allocate nothing per event.
//
//	m, err := poolotel.New(otel.GetMeterProvider())
//	cfg := pool.DefaultConfig()
//	cfg.Hooks = m.Hooks("pg-sales")             // per source, before Register
//	err = reg.Register(ctx, "pg-sales", dial, cfg)
//	reg2, err := m.ObserveRegistry(reg)          // the gauges of every source
package poolotel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/deepanalyze/pool"
)

// ScopeName is the instrumentation scope of the meter New uses.
const ScopeName = "github.com/deepanalyze/pool/otel"

// The attribute keys of the conventions.
const (
	PoolNameKey = attribute.Key("db.client.connection.pool.name")
	StateKey    = attribute.Key("db.client.connection.state")
	// DirectionKey tells pool.connection.moved's points apart: "in" (bound
	// here instead of a dial) or "out" (given to another pool).
	DirectionKey = attribute.Key("pool.connection.direction")
)

// durationBuckets are the histograms' bucket bounds, in seconds: from
// 100 µs (a pooled acquire) to 30 s (AcquireTimeout's default).
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics holds the instruments. One Metrics serves any number of pools.
type Metrics struct {
	meter                         metric.Meter
	createTime, waitTime, useTime metric.Float64Histogram
	count, idleMax, idleMin, max  metric.Int64ObservableUpDownCounter
	pending                       metric.Int64ObservableUpDownCounter
	timeouts                      metric.Int64ObservableCounter
	ceiling                       metric.Int64ObservableUpDownCounter
	refused, shed                 metric.Int64ObservableCounter
	moved, bindErrors             metric.Int64ObservableCounter
}

// New creates the instruments on mp's meter for ScopeName.
func New(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter(ScopeName)}
	var errs [14]error
	hist := func(name, desc string, i int) metric.Float64Histogram {
		h, err := m.meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs[i] = err
		return h
	}
	gauge := func(name, unit, desc string, i int) metric.Int64ObservableUpDownCounter {
		g, err := m.meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs[i] = err
		return g
	}
	m.createTime = hist("db.client.connection.create_time", "The time it took to create a new connection.", 0)
	m.waitTime = hist("db.client.connection.wait_time", "The time it took to obtain an open connection from the pool.", 1)
	m.useTime = hist("db.client.connection.use_time", "The time between borrowing a connection and returning it to the pool.", 2)
	m.count = gauge("db.client.connection.count", "{connection}", "The number of connections that are currently in state described by the `state` attribute.", 3)
	m.idleMax = gauge("db.client.connection.idle.max", "{connection}", "The maximum number of idle open connections allowed.", 4)
	m.idleMin = gauge("db.client.connection.idle.min", "{connection}", "The minimum number of idle open connections allowed.", 5)
	m.max = gauge("db.client.connection.max", "{connection}", "The maximum number of open connections allowed.", 6)
	m.pending = gauge("db.client.connection.pending_requests", "{request}", "The number of current pending requests for an open connection.", 7)
	m.timeouts, errs[8] = m.meter.Int64ObservableCounter("db.client.connection.timeouts", metric.WithUnit("{timeout}"),
		metric.WithDescription("The number of connection timeouts that have occurred trying to obtain a connection from the pool."))
	// Not in the semantic conventions: the pool's capacity ceiling and
	// what it refused or shed.
	m.ceiling = gauge("pool.connection.ceiling", "{connection}", "The most connections the pool may open now: its maximum, or less while the server refuses connections for capacity.", 9)
	m.refused, errs[10] = m.meter.Int64ObservableCounter("pool.connection.refused", metric.WithUnit("{connection}"),
		metric.WithDescription("The number of new connections the server refused for capacity."))
	m.shed, errs[11] = m.meter.Int64ObservableCounter("pool.acquire.shed", metric.WithUnit("{request}"),
		metric.WithDescription("The number of requests failed at once because their deadline would pass before their turn."))
	m.moved, errs[12] = m.meter.Int64ObservableCounter("pool.connection.moved", metric.WithUnit("{connection}"),
		metric.WithDescription("The number of connections that moved between pools of one share group, in (each a dial avoided) or out."))
	m.bindErrors, errs[13] = m.meter.Int64ObservableCounter("pool.connection.bind_errors", metric.WithUnit("{connection}"),
		metric.WithDescription("The number of moved connections that failed to bind to their new pool, closed and replaced by a dial."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return m, nil
}

// Hooks returns the hooks that record the histograms of the pool named
// name (the source ID): set them as Config.Hooks before the pool is made.
// Each event costs one histogram record and no allocation.
func (m *Metrics) Hooks(name string) pool.Hooks {
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(PoolNameKey.String(name)))}
	ctx := context.Background()
	return pool.Hooks{
		Acquire: func(wait time.Duration, _ error) { m.waitTime.Record(ctx, wait.Seconds(), opts...) },
		Release: func(use time.Duration) { m.useTime.Record(ctx, use.Seconds(), opts...) },
		Dial: func(took time.Duration, err error) {
			if err == nil { // the time it took to create a connection
				m.createTime.Record(ctx, took.Seconds(), opts...)
			}
		},
	}
}

// StatsSource is what has pools to observe: a *pool.PooledRegistry or a
// *pool.Manager.
type StatsSource interface {
	Stats() map[string]pool.Stats
}

// ObserveRegistry observes the gauges and the timeout count of every pool
// of src at each collection, named by ID. Unregister the returned
// registration to stop.
func (m *Metrics) ObserveRegistry(src StatsSource) (metric.Registration, error) {
	return m.observe(src.Stats)
}

// ObservePool observes one pool's gauges and timeout count, as name; an
// empty name means the pool's Config.Name, for a *pool.Pool.
func (m *Metrics) ObservePool(name string, p interface{ Stats() pool.Stats }) (metric.Registration, error) {
	if named, ok := p.(interface{ Config() pool.Config }); ok && name == "" {
		name = named.Config().Name
	}
	return m.observe(func() map[string]pool.Stats { return map[string]pool.Stats{name: p.Stats()} })
}

func (m *Metrics) observe(stats func() map[string]pool.Stats) (metric.Registration, error) {
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for name, s := range stats() {
			pn := PoolNameKey.String(name)
			o.ObserveInt64(m.count, int64(s.Idle), metric.WithAttributes(pn, StateKey.String("idle")))
			// Used: lent, or being checked for a caller.
			o.ObserveInt64(m.count, int64(s.InUse), metric.WithAttributes(pn, StateKey.String("used")))
			set := metric.WithAttributes(pn)
			o.ObserveInt64(m.idleMax, int64(s.MaxSize), set)
			o.ObserveInt64(m.idleMin, int64(s.MinSize), set)
			o.ObserveInt64(m.max, int64(s.MaxSize), set)
			o.ObserveInt64(m.pending, int64(s.Waiting), set)
			o.ObserveInt64(m.timeouts, s.TimedOutAcquires, set)
			o.ObserveInt64(m.ceiling, int64(s.Ceiling), set)
			o.ObserveInt64(m.refused, s.Refused, set)
			o.ObserveInt64(m.shed, s.Shed, set)
			o.ObserveInt64(m.moved, s.MovedIn, metric.WithAttributes(pn, DirectionKey.String("in")))
			o.ObserveInt64(m.moved, s.MovedOut, metric.WithAttributes(pn, DirectionKey.String("out")))
			o.ObserveInt64(m.bindErrors, s.BindErrors, set)
		}
		return nil
	}, m.count, m.idleMax, m.idleMin, m.max, m.pending, m.timeouts, m.ceiling, m.refused, m.shed, m.moved, m.bindErrors)
}
