package pool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/require"
)

// fakeSource dials fakeConns and keeps the books a test checks: how many
// are alive at once, that each is closed exactly once, and that no two
// holders use one at the same time.
type fakeSource struct {
	t testing.TB

	dials     atomic.Int64 // factory calls
	alive     atomic.Int64 // dialled and not yet closed
	maxAlive  atomic.Int64
	closes    atomic.Int64
	reClosed  atomic.Int64 // Close called on a closed conn
	pings     atomic.Int64
	resets    atomic.Int64
	checks    atomic.Int64 // IsValid calls
	dialFault atomic.Pointer[error]

	// hooks, each optional; set before the pool is used.
	onDial  func(ctx context.Context) error
	onPing  func(ctx context.Context, c *fakeConn) error
	onReset func(ctx context.Context, c *fakeConn) error
	onValid func(c *fakeConn) bool  // replaces the IsValid check
	onClose func(c *fakeConn) error // runs first in Close
	// onNeedsReset answers NeedsReset; unset, every release resets.
	onNeedsReset func(c *fakeConn) bool

	mu    sync.Mutex
	conns []*fakeConn
}

func newFakeSource(t testing.TB) *fakeSource { return &fakeSource{t: t} }

// failDials makes every later dial fail with err (nil restores success).
func (s *fakeSource) failDials(err error) {
	if err == nil {
		s.dialFault.Store(nil)
		return
	}
	s.dialFault.Store(&err)
}

func (s *fakeSource) dial(ctx context.Context) (*fakeConn, error) {
	s.dials.Add(1)
	if s.onDial != nil {
		if err := s.onDial(ctx); err != nil {
			return nil, err
		}
	}
	if e := s.dialFault.Load(); e != nil {
		return nil, *e
	}
	c := &fakeConn{src: s, closedSig: make(chan struct{})}
	s.mu.Lock()
	c.id = len(s.conns) + 1
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	n := s.alive.Add(1)
	for {
		m := s.maxAlive.Load()
		if n <= m || s.maxAlive.CompareAndSwap(m, n) {
			break
		}
	}
	return c, nil
}

// factory is the pool.Factory for this source.
func (s *fakeSource) factory() pool.Factory[*fakeConn] { return s.dial }

func (s *fakeSource) all() []*fakeConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*fakeConn(nil), s.conns...)
}

// checkAllClosedOnce fails the test unless every connection ever dialled
// has been closed exactly once.
func (s *fakeSource) checkAllClosedOnce(t testing.TB) {
	t.Helper()
	for _, c := range s.all() {
		if n := c.closed.Load(); n != 1 {
			t.Errorf("conn %d closed %d times, want 1", c.id, n)
		}
	}
	if n := s.reClosed.Load(); n != 0 {
		t.Errorf("%d Close calls on already closed conns", n)
	}
	if n := s.alive.Load(); n != 0 {
		t.Errorf("%d conns still alive", n)
	}
}

type fakeConn struct {
	src     *fakeSource
	id      int
	closed  atomic.Int32
	invalid atomic.Bool  // IsValid reports false
	holders atomic.Int32 // set by tests that check exclusive use
	dirty   atomic.Bool  // session state a borrower left; Reset clears it
	used    atomic.Bool  // set by use: the conn has been lent
	// bound is the pool a test's Share.Bind (or a pool's own factory,
	// sharedFactory) last bound the conn to.
	bound atomic.Pointer[string]
	// closedSig is closed by the first Close, as closing a socket wakes a
	// blocked read.
	closedSig chan struct{}
}

var errClosedConn = errors.New("fake: use of closed connection")

func (c *fakeConn) String() string { return fmt.Sprintf("conn%d", c.id) }

func (c *fakeConn) Ping(ctx context.Context) error {
	c.src.pings.Add(1)
	if c.closed.Load() != 0 {
		return errClosedConn
	}
	if c.src.onPing != nil {
		return c.src.onPing(ctx, c)
	}
	return nil
}

func (c *fakeConn) Close() error {
	var err error
	if c.src.onClose != nil {
		err = c.src.onClose(c) // may panic or block; an error still closes
	}
	if c.closed.Add(1) > 1 {
		c.src.reClosed.Add(1)
		return errClosedConn
	}
	close(c.closedSig)
	c.src.alive.Add(-1)
	c.src.closes.Add(1)
	return err
}

func (c *fakeConn) IsValid() bool {
	c.src.checks.Add(1)
	if c.src.onValid != nil {
		return c.src.onValid(c) && c.closed.Load() == 0
	}
	return c.closed.Load() == 0 && !c.invalid.Load()
}

func (c *fakeConn) NeedsReset() bool {
	if c.src.onNeedsReset != nil {
		return c.src.onNeedsReset(c)
	}
	return true
}

func (c *fakeConn) Reset(ctx context.Context) error {
	c.src.resets.Add(1)
	if c.src.onReset != nil {
		if err := c.src.onReset(ctx, c); err != nil {
			return err
		}
	}
	c.dirty.Store(false)
	return nil
}

// use marks the start of exclusive use by one holder and fails the test
// if someone else holds the conn or it is closed.
func (c *fakeConn) use(t testing.TB) {
	c.used.Store(true)
	if n := c.holders.Add(1); n != 1 {
		t.Errorf("%v has %d holders at once", c, n)
	}
	if c.closed.Load() != 0 {
		t.Errorf("%v lent after it was closed", c)
	}
}

func (c *fakeConn) done() { c.holders.Add(-1) }

// testConfig is DefaultConfig without warm connections or a reaper, so that
// a test dials only what it asks for.
func testConfig(maxSize int) pool.Config {
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	cfg.MaxSize = maxSize
	cfg.ReapInterval = 0
	cfg.PingAfterIdle = 0
	return cfg
}

func newTestPool(t testing.TB, src *fakeSource, cfg pool.Config) *pool.Pool[*fakeConn] {
	t.Helper()
	p, err := pool.New(src.factory(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// requireNotDone fails the test if ch has already delivered. Call it after
// synctest.Wait, when every goroutine that could send is blocked.
func requireNotDone(t *testing.T, ch <-chan error, msg string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal(msg)
	default:
	}
}

var bg = context.Background()

// acquireN takes n loans of p at once.
func acquireN(t *testing.T, p *pool.Pool[*fakeConn], n int) []*pool.PooledConn[*fakeConn] {
	t.Helper()
	held := make([]*pool.PooledConn[*fakeConn], 0, n)
	for range n {
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		held = append(held, pc)
	}
	return held
}

// fillIdle dials n connections into p's idle stack: it acquires n at once,
// then releases them.
func fillIdle(t *testing.T, p *pool.Pool[*fakeConn], n int) {
	t.Helper()
	for _, pc := range acquireN(t, p, n) {
		pc.Release()
	}
}

// waitOrFail fails the test if fn does not finish within a generous real
// time: with the bug, fn would block on the pool lock forever.
func waitOrFail(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked while another goroutine was inside a health check: the pool lock is held across I/O", what)
	}
}

// logRecorder is an slog handler that keeps every record's text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	seen  chan string // every message, if set
	onLog func()      // runs in Handle, if set
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs returns a handler that records into r, with attrs on every
// line after the record's own.
func (r *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &attrRecorder{r: r, attrs: attrs}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	return r.handle(rec, nil)
}

func (r *logRecorder) handle(rec slog.Record, extra []slog.Attr) error {
	var b bytes.Buffer
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	for _, a := range extra {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
	}
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	if r.seen != nil {
		r.seen <- rec.Message
	}
	if r.onLog != nil {
		r.onLog()
	}
	return nil
}

func (r *logRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// records returns each record's text.
func (r *logRecorder) records() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// attrRecorder is a logRecorder's handler with attributes.
type attrRecorder struct {
	r     *logRecorder
	attrs []slog.Attr
}

func (h *attrRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *attrRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &attrRecorder{r: h.r, attrs: append(slices.Clip(h.attrs), attrs...)}
}

func (h *attrRecorder) WithGroup(string) slog.Handler { return h }

func (h *attrRecorder) Handle(_ context.Context, rec slog.Record) error {
	return h.r.handle(rec, h.attrs)
}

// plainConn is a connector with neither Reset nor IsValid.
type plainConn struct{}

func (plainConn) Ping(context.Context) error { return nil }

func (plainConn) Close() error { return nil }
