// Command api is a small HTTP JSON service in the DeepAnalyze shape: data
// sources (PostgreSQL and Azure Blob) registered by ID from a configuration
// file, handlers that run a query and list and read blobs through one
// registry, /stats, and a graceful shutdown that stops accepting, drains,
// and then closes the pools. See README.md.
//
//	eval "$(bash ../../.ci/services.sh)"; go run . -config config.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	path := flag.String("config", "config.json", "configuration file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *path); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// run loads the configuration, binds the address (a bind failure is
// reported before anything says "listening"), registers the sources and
// serves until ctx ends.
func run(ctx context.Context, path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	svc, err := NewService(ctx, cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	slog.Info("listening", "addr", ln.Addr().String())
	return serve(ctx, ln, svc.Handler(), svc, drainTimeout)
}

// drainTimeout bounds how long a shutdown waits for clients to take their
// last answer before it closes what is left.
const drainTimeout = 10 * time.Second

// idleGrace is how long a connection must have been idle, once draining
// has begun, before the drain closes it: a keep-alive client that sends
// nothing more does not hold the shutdown, and one whose next request is
// already on its way gets its answer. (A server may close an idle
// keep-alive connection at any time; clients retry on a new one.)
const idleGrace = time.Second

// serve serves h on ln until ctx ends, then shuts down without losing a
// request the server has accepted: it stops accepting, then keeps serving
// the open connections, answering each next request with "Connection:
// close" so that its client moves on, until every connection has closed
// (or drain passes), closing those that stay idle for idleGrace, and only
// then shuts the HTTP server down and the pools. (http.Server.Shutdown alone closes connections that may hold a
// request it has not answered: golang/go#75591.)
func serve(ctx context.Context, ln net.Listener, h http.Handler, svc *Service, drain time.Duration) error {
	var (
		draining atomic.Bool
		mu       sync.Mutex
		open     int
		idle     = map[net.Conn]time.Time{} // idle connections, and since when
		drained  = make(chan struct{})
		once     sync.Once
	)
	closedAll := func() { // mu held
		if draining.Load() && open == 0 {
			once.Do(func() { close(drained) })
		}
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			switch st {
			case http.StateNew:
				open++
			case http.StateIdle:
				idle[c] = time.Now()
			case http.StateActive:
				delete(idle, c)
			case http.StateClosed, http.StateHijacked:
				delete(idle, c)
				open--
				closedAll()
			}
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc: // the listener failed
		return errors.Join(err, svc.Shutdown(context.Background()))
	case <-ctx.Done():
	}
	slog.Info("shutting down: draining")
	// Stop accepting before answering with "Connection: close": a client
	// told to close dials again, and a connection that reaches the
	// listener's backlog just before it closes is reset by the kernel
	// without ever being accepted.
	_ = ln.Close() // Serve returns
	<-errc
	draining.Store(true)
	mu.Lock()
	closedAll()
	mu.Unlock()
	timer := time.NewTimer(drain)
	defer timer.Stop()
	tick := time.NewTicker(idleGrace / 10)
	defer tick.Stop()
wait:
	for {
		select {
		case <-drained:
			break wait
		case <-timer.C:
			slog.Warn("drain timed out; closing idle connections")
			break wait
		case now := <-tick.C:
			mu.Lock()
			for c, since := range idle {
				if now.Sub(since) >= idleGrace {
					_ = c.Close() // ConnState sees it closed
				}
			}
			mu.Unlock()
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err = errors.Join(err, svc.Shutdown(sctx)); err != nil {
		slog.Error("stopped, with errors", "error", err)
		return err
	}
	slog.Info("stopped: every accepted request answered, every pool closed")
	return nil
}
