package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
	"github.com/deepanalyze/pool/postgres"
	poolprom "github.com/deepanalyze/pool/prometheus"
)

// Service serves queries against the registered sources, of both kinds,
// from one registry.
type Service struct {
	reg     *pool.PooledRegistry[pool.Connector]
	budgets map[string]*pool.Budget // by name; written only by NewService
	kinds   map[string]string       // source ID to kind; written only by NewService
	metrics *prometheus.Registry
	hooks   func(id string) pool.Hooks // the pool metrics of source id
	log     *slog.Logger
}

// NewService registers every source, test-connecting each, and fails on
// the first that cannot be reached.
func NewService(ctx context.Context, c Config) (*Service, error) {
	s := &Service{reg: pool.NewRegistry[pool.Connector](), kinds: map[string]string{}, budgets: map[string]*pool.Budget{}, log: slog.Default()}
	for name, bc := range c.Budgets {
		b, err := pool.NewBudget(bc.Limit)
		if err != nil {
			return nil, fmt.Errorf("budget %q: %w", name, err)
		}
		b.SetName(name)
		s.budgets[name] = b
	}
	collector := poolprom.New("")
	collector.AddRegistry(s.reg)
	s.metrics = prometheus.NewRegistry()
	s.metrics.MustRegister(collector, collectors.NewGoCollector())
	s.hooks = collector.Hooks
	for _, src := range c.Sources {
		if err := s.register(ctx, src); err != nil {
			_ = s.reg.Close()
			return nil, err // it names the source, once
		}
	}
	return s, nil
}

// register registers one source. Its errors name the source once: the
// registry's and the connector modules' own errors already do, and those
// of the source's settings are wrapped here.
func (s *Service) register(ctx context.Context, src SourceConfig) error {
	named := func(err error) error { return fmt.Errorf("source %q: %w", src.ID, err) }
	cfg, err := src.poolConfig()
	if err != nil {
		return named(err)
	}
	cfg.Hooks = s.hooks(src.ID)
	cfg.Budget = s.budgets[src.Budget] // nil for none
	dsn, err := src.dsn()
	if err != nil {
		return named(err)
	}
	s.kinds[src.ID] = src.kind()
	if src.kind() == kindPostgres {
		opts, err := src.postgresOptions()
		if err != nil {
			return named(err)
		}
		return postgres.Register(ctx, s.reg, src.ID, dsn, opts, cfg, pool.WithTestConnect())
	}
	opts, err := src.blobOptions(dsn)
	if err != nil {
		return named(err)
	}
	if src.CreateContainer {
		if err := azblob.CreateContainer(ctx, opts); err != nil {
			return named(err)
		}
	}
	return azblob.Register(ctx, s.reg, src.ID, opts, cfg, pool.WithTestConnect())
}

// Handler routes:
//
//	GET /sources/{id}/double?n=21         runs a query on PostgreSQL source id
//	GET /sources/{id}/blobs?prefix=p      lists a page of blobs of Blob source id
//	GET /sources/{id}/blobs/{name...}     reads one blob
//	GET /stats                            every pool's statistics
//	GET /budgets                          every budget's statistics
//	GET /metrics                          the pools' metrics, for Prometheus
//
// A request may carry X-Priority: interactive, normal (the default) or
// batch; when sources are busy, interactive requests are served first and
// batch ones last, each class still getting a floor of the connections.
// Every answer but /metrics, errors included (400, 404, 405, 503, 500), is
// JSON.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sources/{id}/double", method(http.MethodGet, s.double))
	mux.HandleFunc("/sources/{id}/blobs", method(http.MethodGet, s.listBlobs))
	mux.HandleFunc("/sources/{id}/blobs/{name...}", method(http.MethodGet, s.readBlob))
	mux.HandleFunc("/stats", method(http.MethodGet, s.stats))
	mux.HandleFunc("/budgets", method(http.MethodGet, s.budgetStats))
	mux.HandleFunc("/holders", method(http.MethodGet, s.holders))
	mux.Handle("/metrics", method(http.MethodGet, promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+quoted(r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux would redirect an unclean path (/sources//double) to
		// a clean one; an API answers it as not found instead.
		if p := r.URL.Path; p == "" || path.Clean(p) != p {
			writeError(w, http.StatusNotFound, "no such endpoint: "+quoted(p))
			return
		}
		if h := r.Header.Values("X-Priority"); len(h) > 0 {
			prio, ok := priorities[strings.ToLower(strings.TrimSpace(h[0]))]
			if !ok || len(h) > 1 {
				writeError(w, http.StatusBadRequest, "X-Priority must be given once, as interactive, normal or batch")
				return
			}
			r = r.WithContext(pool.WithPriority(r.Context(), prio))
		}
		mux.ServeHTTP(w, r)
	})
}

// priorities are the values of the X-Priority header.
var priorities = map[string]pool.Priority{
	"interactive": pool.PriorityInteractive,
	"normal":      pool.PriorityNormal,
	"batch":       pool.PriorityBatch,
}

// method answers 405 to a request of another method than m (HEAD is
// served wherever GET is).
func method(m string, h http.HandlerFunc) http.HandlerFunc {
	allow := m
	if m == http.MethodGet {
		allow = "GET, HEAD"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && !(m == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method "+quoted(r.Method)+" not allowed; use "+allow)
			return
		}
		h(w, r)
	}
}

// maxQuoted is how much of a client's input an error answer quotes.
const maxQuoted = 64

// quoted quotes s for an error answer: at most its first maxQuoted bytes
// (whole runes), saying how long it was when it was cut.
func quoted(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

type doubleResponse struct {
	Source  string `json:"source"`
	N       int64  `json:"n"`
	Doubled int64  `json:"doubled"`
	Backend uint32 `json:"backend_pid"`
}

// maxN keeps n * 2 within PostgreSQL's int, which the query uses.
const maxN = math.MaxInt32 / 2

func (s *Service) double(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	for k := range q {
		if k != "n" {
			writeError(w, http.StatusBadRequest, "unknown parameter "+quoted(k))
			return
		}
	}
	if len(q["n"]) != 1 {
		writeError(w, http.StatusBadRequest, "give n exactly once")
		return
	}
	n, err := strconv.ParseInt(q.Get("n"), 10, 64)
	if err != nil || n < -maxN-1 || n > maxN {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("n must be an integer from %d to %d", -maxN-1, maxN))
		return
	}
	if !s.isKind(w, id, kindPostgres) {
		return
	}
	resp := doubleResponse{Source: id, N: n}
	// A read: if the server ends the connection under it, it runs again
	// on a fresh one.
	err = postgres.With(postgres.Idempotent(r.Context()), s.reg, id, func(c *pgx.Conn) error {
		resp.Backend = c.PgConn().PID()
		return c.QueryRow(r.Context(), "select $1::int * 2", n).Scan(&resp.Doubled)
	})
	if err == nil {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	s.writeSourceError(w, r, id, err)
}

// isKind answers 400 and returns false when source id is registered with
// another kind than want; an unknown ID is left to the registry.
func (s *Service) isKind(w http.ResponseWriter, id, want string) bool {
	if k, ok := s.kinds[id]; ok && k != want {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("source %s is a %s source, not %s", quoted(id), k, want))
		return false
	}
	return true
}

// writeSourceError answers a failed use of source id: its own words stay
// in the log.
func (s *Service) writeSourceError(w http.ResponseWriter, r *http.Request, id string, err error) {
	switch {
	case errors.Is(err, azblob.ErrBlobNotFound):
		writeError(w, http.StatusNotFound, "no such blob")
	case errors.Is(err, azblob.ErrThrottled), errors.Is(err, pool.ErrTooManyWaiters),
		errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil: // shed: its turn would come too late
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("source %s is busy; try again later", quoted(id)))
	case errors.Is(err, pool.ErrUnknownSource):
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown source %s", quoted(id)))
	case errors.Is(err, pool.ErrAcquireTimeout), errors.Is(err, pool.ErrPoolClosed), errors.Is(err, pool.ErrDial):
		s.log.Warn("source unavailable", "source", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("source %s is unavailable; try again later", quoted(id)))
	case r.Context().Err() != nil:
		writeError(w, http.StatusServiceUnavailable, "request cancelled")
	case connectionLost(err): // a retry found no live connection either
		s.log.Warn("connection lost", "source", id, "error", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("source %s lost its connection; try again", quoted(id)))
	default: // the driver's own words stay in the log
		s.log.Error("query failed", "source", id, "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// connectionLost reports whether err is the loss of the connection (the
// server ended it, or the network did) rather than an error of the query.
func connectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) { // admin_shutdown, crash_shutdown, cannot_connect_now, connection_exception
		return pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || strings.HasPrefix(pe.Code, "08")
	}
	var ne net.Error
	return pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// sourceStats is one pool's statistics in the JSON of /stats: snake_case
// keys, durations in seconds.
type sourceStats struct {
	Total              int     `json:"total"`
	Idle               int     `json:"idle"`
	InUse              int     `json:"in_use"`
	Dialing            int     `json:"dialing"`
	Closing            int     `json:"closing"`
	Waiting            int     `json:"waiting"`
	MinSize            int     `json:"min_size"`
	MaxSize            int     `json:"max_size"`
	Ceiling            int     `json:"ceiling"`
	Target             int     `json:"target"`
	MeanHoldSeconds    float64 `json:"mean_hold_seconds"`
	Down               bool    `json:"down"`
	DialFailuresInARow int     `json:"dial_failures_in_a_row"`
	AcquireCount       int64   `json:"acquire_count"`
	WaitCount          int64   `json:"wait_count"`
	WaitSeconds        float64 `json:"wait_seconds"`
	CanceledAcquires   int64   `json:"canceled_acquires"`
	TimedOutAcquires   int64   `json:"timed_out_acquires"`
	FailedFast         int64   `json:"failed_fast"`
	TooManyWaiters     int64   `json:"too_many_waiters"`
	Shed               int64   `json:"shed"`
	Created            int64   `json:"created"`
	DialErrors         int64   `json:"dial_errors"`
	Refused            int64   `json:"refused"`
	ClosedIdle         int64   `json:"closed_idle"`
	ClosedLifetime     int64   `json:"closed_lifetime"`
	ClosedBroken       int64   `json:"closed_broken"`
	ClosedPool         int64   `json:"closed_pool"`
	ClosedResized      int64   `json:"closed_resized"`
	ClosedBudget       int64   `json:"closed_budget"`
	LeakedLoans        int64   `json:"leaked_loans"`
	AbandonedLoans     int64   `json:"abandoned_loans"`
	PanicsRecovered    int64   `json:"panics_recovered"`
}

func toSourceStats(s pool.Stats) sourceStats {
	return sourceStats{
		Total: s.Total, Idle: s.Idle, InUse: s.InUse, Dialing: s.Dialing, Closing: s.Closing,
		Waiting: s.Waiting, MinSize: s.MinSize, MaxSize: s.MaxSize,
		Ceiling: s.Ceiling, Target: s.Target, MeanHoldSeconds: s.MeanHold.Seconds(),
		Down: s.Down, DialFailuresInARow: s.DialFailuresInARow,
		AcquireCount: s.AcquireCount, WaitCount: s.WaitCount, WaitSeconds: s.WaitDuration.Seconds(),
		CanceledAcquires: s.CanceledAcquires, TimedOutAcquires: s.TimedOutAcquires, FailedFast: s.FailedFast,
		TooManyWaiters: s.TooManyWaiters, Shed: s.Shed,
		Created: s.Created, DialErrors: s.DialErrors, Refused: s.Refused,
		ClosedIdle: s.ClosedIdle, ClosedLifetime: s.ClosedLifetime, ClosedBroken: s.ClosedBroken, ClosedPool: s.ClosedPool,
		ClosedResized: s.ClosedResized, ClosedBudget: s.ClosedBudget,
		LeakedLoans: s.LeakedLoans, AbandonedLoans: s.AbandonedLoans, PanicsRecovered: s.PanicsRecovered,
	}
}

func (s *Service) stats(w http.ResponseWriter, _ *http.Request) {
	out := map[string]sourceStats{}
	for id, st := range s.reg.Stats() {
		out[id] = toSourceStats(st)
	}
	writeJSON(w, http.StatusOK, out)
}

// holdersJSON is who holds one source's connections, in the JSON of
// /holders.
type holdersJSON struct {
	InUse          int          `json:"in_use"`
	MaxSize        int          `json:"max_size"`
	Loans          int          `json:"loans"`
	LongestSeconds []float64    `json:"longest_seconds"`
	Sites          []holderSite `json:"sites,omitempty"`
}

type holderSite struct {
	Site           string  `json:"site"`
	Loans          int     `json:"loans"`
	LongestSeconds float64 `json:"longest_seconds"`
}

// holders serves each pool's loans in progress: how many, the longest,
// and (with leak_threshold) where they were acquired.
func (s *Service) holders(w http.ResponseWriter, _ *http.Request) {
	out := map[string]holdersJSON{}
	for id, h := range s.reg.Holders() {
		j := holdersJSON{InUse: h.InUse, MaxSize: h.MaxSize, Loans: h.Loans, LongestSeconds: []float64{}}
		for _, d := range h.Longest {
			j.LongestSeconds = append(j.LongestSeconds, d.Seconds())
		}
		for _, site := range h.Sites {
			j.Sites = append(j.Sites, holderSite{Site: site.Site, Loans: site.Loans, LongestSeconds: site.Longest.Seconds()})
		}
		out[id] = j
	}
	writeJSON(w, http.StatusOK, out)
}

// budgetJSON is one budget's statistics in the JSON of /budgets.
type budgetJSON struct {
	Limit         int                   `json:"limit"`
	Ceiling       int                   `json:"ceiling"`
	Open          int                   `json:"open"`
	Sources       map[string]budgetPool `json:"sources"`
	Moved         int64                 `json:"moved"`
	Yielded       int64                 `json:"yielded"`
	ReclaimedIdle int64                 `json:"reclaimed_idle"`
	Refused       int64                 `json:"refused"`
}

type budgetPool struct {
	Weight  int `json:"weight"`
	MinSize int `json:"min_size"`
	Open    int `json:"open"`
	Waiting int `json:"waiting"`
}

func (s *Service) budgetStats(w http.ResponseWriter, _ *http.Request) {
	out := map[string]budgetJSON{}
	for name, b := range s.budgets {
		st := b.Stats()
		j := budgetJSON{Limit: st.Limit, Ceiling: st.Ceiling, Open: st.Open, Sources: map[string]budgetPool{},
			Moved: st.Moved, Yielded: st.Yielded, ReclaimedIdle: st.ReclaimedIdle, Refused: st.Refused}
		for _, ps := range st.Pools {
			if !ps.Closed {
				j.Sources[ps.Name] = budgetPool{Weight: ps.Weight, MinSize: ps.MinSize, Open: ps.Open, Waiting: ps.Waiting}
			}
		}
		out[name] = j
	}
	writeJSON(w, http.StatusOK, out)
}

// Shutdown closes every pool and waits, until ctx ends, for connections in
// use to come back. Call it after the HTTP server has drained.
func (s *Service) Shutdown(ctx context.Context) error { return s.reg.Shutdown(ctx) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
