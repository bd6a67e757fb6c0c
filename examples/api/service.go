package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// Config is the service's configuration file.
type Config struct {
	Addr    string         `json:"addr"`
	Sources []SourceConfig `json:"sources"`
}

// SourceConfig registers one data source. DSN may name environment
// variables as ${VAR}.
type SourceConfig struct {
	ID             string `json:"id"`
	DSN            string `json:"dsn"`
	MinSize        int    `json:"min_size"`
	MaxSize        int    `json:"max_size"`
	AcquireTimeout string `json:"acquire_timeout"`
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.Sources) == 0 {
		return c, fmt.Errorf("%s: no sources", path)
	}
	return c, nil
}

// poolConfig turns a source's settings into a pool.Config.
func (s SourceConfig) poolConfig() (pool.Config, error) {
	cfg := pool.DefaultConfig()
	if s.MaxSize != 0 {
		cfg.MaxSize = s.MaxSize
	}
	if s.MinSize != 0 {
		cfg.MinSize = s.MinSize
	}
	if s.AcquireTimeout != "" {
		d, err := time.ParseDuration(s.AcquireTimeout)
		if err != nil {
			return cfg, fmt.Errorf("acquire_timeout: %w", err)
		}
		cfg.AcquireTimeout = d
	}
	return cfg, cfg.Validate()
}

// Service serves queries against the registered sources.
type Service struct {
	reg *pool.PooledRegistry[*postgres.Conn]
}

// NewService registers every source, test-connecting each, and fails on
// the first that cannot be reached.
func NewService(ctx context.Context, c Config) (*Service, error) {
	s := &Service{reg: pool.NewRegistry[*postgres.Conn]()}
	for _, src := range c.Sources {
		cfg, err := src.poolConfig()
		if err != nil {
			s.reg.Close()
			return nil, fmt.Errorf("source %q: %w", src.ID, err)
		}
		dial, err := postgres.FactoryFromDSN(os.ExpandEnv(src.DSN), postgres.Options{})
		if err != nil {
			s.reg.Close()
			return nil, fmt.Errorf("source %q: %w", src.ID, err)
		}
		if err := s.reg.Register(ctx, src.ID, dial, cfg, pool.WithTestConnect()); err != nil {
			s.reg.Close()
			return nil, err
		}
	}
	return s, nil
}

// Handler routes:
//
//	GET /sources/{id}/double?n=21  runs a query on source id
//	GET /stats                     every pool's Stats
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sources/{id}/double", s.double)
	mux.HandleFunc("GET /stats", s.stats)
	return mux
}

type doubleResponse struct {
	Source  string `json:"source"`
	N       int    `json:"n"`
	Doubled int    `json:"doubled"`
	Backend uint32 `json:"backend_pid"`
}

func (s *Service) double(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("n must be an integer"))
		return
	}
	resp := doubleResponse{Source: id, N: n}
	err = s.reg.With(r.Context(), id, func(c *postgres.Conn) error {
		resp.Backend = c.Conn().PgConn().PID()
		return c.Conn().QueryRow(r.Context(), "select $1::int * 2", n).Scan(&resp.Doubled)
	})
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, resp)
	case errors.Is(err, pool.ErrUnknownSource):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, pool.ErrAcquireTimeout), errors.Is(err, pool.ErrPoolClosed), errors.Is(err, pool.ErrDial):
		writeError(w, http.StatusServiceUnavailable, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

func (s *Service) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.reg.Stats())
}

// Shutdown closes every pool and waits, until ctx ends, for connections in
// use to come back. Call it after http.Server.Shutdown has drained the
// requests.
func (s *Service) Shutdown(ctx context.Context) error { return s.reg.Shutdown(ctx) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
