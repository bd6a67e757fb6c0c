// Package poolprom exposes github.com/deepanalyze/pool's pools to
// Prometheus: a prometheus.Collector for pools, a Manager or a
// PooledRegistry, with one "source" label per source ID. Its metrics follow
// HikariCP's Micrometer set (connections, active, idle, pending, max, min,
// timeouts, creation, usage, acquire) under Prometheus's naming rules:
//
//	pool_connections{source}                     gauge: open connections (idle, in use, dialling, closing)
//	pool_connections_active{source}              gauge: lent, or being checked for a caller
//	pool_connections_idle{source}                gauge
//	pool_connections_pending{source}             gauge: callers waiting for a connection
//	pool_connections_max{source}                 gauge: MaxSize
//	pool_connections_min{source}                 gauge: MinSize
//	pool_connection_timeouts_total{source}       counter: acquires that ended at AcquireTimeout
//	pool_connections_created_total{source}       counter
//	pool_connections_closed_total{source,reason} counter: idle, lifetime, broken, pool_closed, abandoned, resized, budget, reset
//	pool_dial_errors_total{source}               counter
//	pool_acquires_total{source}                  counter: acquires that lent a connection
//	pool_connections_ceiling{source}             gauge: MaxSize, or less while the server refuses for capacity
//	pool_dials_refused_total{source}             counter: dials refused for capacity (pool.ErrCapacity)
//	pool_acquires_shed_total{source}             counter: acquires failed at once under ShedHopeless
//	pool_connections_moved_total{source,direction} counter: moved between pools of one Share group, in (a dial avoided) or out
//	pool_bind_errors_total{source}               counter: moved connections that failed Share.Bind (closed, dialled instead)
//	pool_connection_acquire_seconds{source}      histogram: each Acquire's wait
//	pool_connection_usage_seconds{source}        histogram: each loan's length
//	pool_connection_creation_seconds{source}     histogram: each successful dial
//
// Gauges and counters are read from Stats at each scrape, so they cost
// nothing between scrapes; the histograms are observed by the pool's Hooks,
// which allocate nothing per event.
//
//	c := poolprom.New("")
//	cfg := pool.DefaultConfig()
//	cfg.Hooks = c.Hooks("pg-sales")             // per source, before Register
//	err := reg.Register(ctx, "pg-sales", dial, cfg)
//	c.AddRegistry(reg)
//	prometheus.MustRegister(c)
package poolprom

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deepanalyze/pool"
)

// Buckets are the histograms' bounds, in seconds: from 100 µs (a pooled
// acquire) to 30 s (AcquireTimeout's default).
var Buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// StatsSource is what has pools to report: a *pool.PooledRegistry or a
// *pool.Manager.
type StatsSource interface {
	Stats() map[string]pool.Stats
}

// Collector reports the pools added to it. It is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	sources []func() map[string]pool.Stats // guarded by mu

	acquire, usage, creation *prometheus.HistogramVec

	connections, active, idle, pending, max, min *prometheus.Desc
	timeouts, created, closed, dialErrors, acqs  *prometheus.Desc
	ceiling, refused, shed                       *prometheus.Desc
	moved, bindErrors                            *prometheus.Desc
}

// New returns a Collector whose metric names start with namespace ("pool"
// when empty).
func New(namespace string) *Collector {
	if namespace == "" {
		namespace = "pool"
	}
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: name, Help: help, Buckets: Buckets,
		}, []string{"source"})
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, append([]string{"source"}, labels...), nil)
	}
	return &Collector{
		acquire:     hist("connection_acquire_seconds", "Time each Acquire took to obtain a connection, waits and checks included."),
		usage:       hist("connection_usage_seconds", "Time each connection was held, from Acquire to Release."),
		creation:    hist("connection_creation_seconds", "Time each new connection took to dial."),
		connections: desc("connections", "Open connections: idle, in use, being dialled and being closed."),
		active:      desc("connections_active", "Connections lent to callers, or being checked for one."),
		idle:        desc("connections_idle", "Idle connections."),
		pending:     desc("connections_pending", "Callers waiting for a connection."),
		max:         desc("connections_max", "The pool's MaxSize."),
		min:         desc("connections_min", "The pool's MinSize."),
		timeouts:    desc("connection_timeouts_total", "Acquires that ended at AcquireTimeout."),
		created:     desc("connections_created_total", "Connections dialled successfully."),
		closed:      desc("connections_closed_total", "Connections closed, by reason.", "reason"),
		dialErrors:  desc("dial_errors_total", "Failed dials."),
		acqs:        desc("acquires_total", "Acquires that lent a connection."),
		ceiling:     desc("connections_ceiling", "The most connections the pool may open now: MaxSize, or less while the server refuses dials for capacity."),
		refused:     desc("dials_refused_total", "Dials the server refused for capacity (pool.ErrCapacity), of the failed dials."),
		shed:        desc("acquires_shed_total", "Acquires failed at once because their deadline would pass before their turn (ShedHopeless)."),
		moved:       desc("connections_moved_total", "Connections moved between pools of one Share group: in (bound here, a dial avoided) or out (given to another pool).", "direction"),
		bindErrors:  desc("bind_errors_total", "Moved connections that failed Share.Bind, closed and replaced by a dial."),
	}
}

// Hooks returns the hooks that observe the histograms of source: set them
// as Config.Hooks before the pool is made.
func (c *Collector) Hooks(source string) pool.Hooks {
	acquire := c.acquire.WithLabelValues(source)
	usage := c.usage.WithLabelValues(source)
	creation := c.creation.WithLabelValues(source)
	return pool.Hooks{
		Acquire: func(wait time.Duration, _ error) { acquire.Observe(wait.Seconds()) },
		Release: func(use time.Duration) { usage.Observe(use.Seconds()) },
		Dial: func(took time.Duration, err error) {
			if err == nil {
				creation.Observe(took.Seconds())
			}
		},
	}
}

// AddRegistry reports every pool of src, labelled with its ID, at each
// scrape. An ID is reported once per scrape, from the first source added
// that has it: a second registry, Manager or pool with the same ID (or the
// same one added twice) is skipped rather than failing the scrape.
func (c *Collector) AddRegistry(src StatsSource) { c.add(src.Stats) }

// AddPool reports one pool, labelled source; an empty source means the
// pool's Config.Name, for a *pool.Pool.
func (c *Collector) AddPool(source string, p interface{ Stats() pool.Stats }) {
	if named, ok := p.(interface{ Config() pool.Config }); ok && source == "" {
		source = named.Config().Name
	}
	c.add(func() map[string]pool.Stats { return map[string]pool.Stats{source: p.Stats()} })
}

func (c *Collector) add(f func() map[string]pool.Stats) {
	c.mu.Lock()
	c.sources = append(c.sources, f)
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.active, c.idle, c.pending, c.max, c.min, c.timeouts, c.created, c.closed, c.dialErrors, c.acqs, c.ceiling, c.refused, c.shed, c.moved, c.bindErrors} {
		ch <- d
	}
	c.acquire.Describe(ch)
	c.usage.Describe(ch)
	c.creation.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := c.sources
	c.mu.Unlock()
	seen := make(map[string]bool)
	for _, f := range sources {
		for id, s := range f() {
			if seen[id] { // the same ID added twice would fail the whole scrape
				continue
			}
			seen[id] = true
			gauge := func(d *prometheus.Desc, v int) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), id)
			}
			counter := func(d *prometheus.Desc, v int64, labels ...string) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{id}, labels...)...)
			}
			gauge(c.connections, s.Total)
			gauge(c.active, s.InUse)
			gauge(c.idle, s.Idle)
			gauge(c.pending, s.Waiting)
			gauge(c.max, s.MaxSize)
			gauge(c.min, s.MinSize)
			counter(c.timeouts, s.TimedOutAcquires)
			counter(c.created, s.Created)
			counter(c.dialErrors, s.DialErrors)
			counter(c.acqs, s.AcquireCount)
			gauge(c.ceiling, s.Ceiling)
			counter(c.refused, s.Refused)
			counter(c.shed, s.Shed)
			counter(c.moved, s.MovedIn, "in")
			counter(c.moved, s.MovedOut, "out")
			counter(c.bindErrors, s.BindErrors)
			counter(c.closed, s.ClosedIdle, pool.CloseIdle.String())
			counter(c.closed, s.ClosedLifetime, pool.CloseLifetime.String())
			counter(c.closed, s.ClosedBroken, pool.CloseBroken.String())
			counter(c.closed, s.ClosedPool, pool.ClosePoolClosed.String())
			counter(c.closed, s.AbandonedLoans, pool.CloseAbandoned.String())
			counter(c.closed, s.ClosedResized, pool.CloseResized.String())
			counter(c.closed, s.ClosedBudget, pool.CloseBudget.String())
			counter(c.closed, s.ClosedReset, pool.CloseReset.String())
		}
	}
	c.acquire.Collect(ch)
	c.usage.Collect(ch)
	c.creation.Collect(ch)
}
