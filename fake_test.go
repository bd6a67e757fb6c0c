package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/deepanalyze/pool"
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
