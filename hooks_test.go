package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
)

// hookLog records every hook call as a line, in order.
type hookLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *hookLog) add(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *hookLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// Each hook sees its events with exact times (fake time), on the
// goroutine of the event and outside the pool lock: the Close hook calls
// Stats, which takes it.
func TestHooksSeeEveryEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p *pool.Pool[plainConn]
		log := &hookLog{}
		dials := 0
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 0, 1
		cfg.ReapInterval, cfg.PingAfterIdle = 0, 0
		cfg.Hooks = pool.Hooks{
			Acquire: func(wait time.Duration, err error) { log.add("acquire %v %s", wait, errText(err)) },
			Release: func(use time.Duration) { log.add("release %v", use) },
			Dial:    func(took time.Duration, err error) { log.add("dial %v %s", took, errText(err)) },
			Close: func(r pool.CloseReason) {
				log.add("close %s (in use %d)", r, p.Stats().InUse)
			},
		}
		var err error
		p, err = pool.New(func(context.Context) (plainConn, error) {
			time.Sleep(100 * time.Millisecond)
			dials++
			if dials == 2 {
				return plainConn{}, errors.New("refused")
			}
			return plainConn{}, nil
		}, cfg)
		require.NoError(t, err)

		a, err := p.Acquire(bg) // dials: 100 ms
		require.NoError(t, err)
		assert.Equal(t, []string{"dial 100ms ok", "acquire 100ms ok"}, log.take())

		got := make(chan *pool.PooledConn[plainConn])
		go func() {
			b, err := p.Acquire(bg) // waits for a's release
			assert.NoError(t, err)
			got <- b
		}()
		time.Sleep(250 * time.Millisecond)
		a.Release()
		b := <-got
		assert.Equal(t, []string{"release 250ms", "acquire 250ms ok"}, log.take())

		time.Sleep(50 * time.Millisecond)
		b.Discard()
		synctest.Wait()
		assert.Equal(t, []string{"release 50ms", "close broken (in use 0)"}, log.take())

		_, err = p.Acquire(bg) // the second dial fails after 100 ms
		require.ErrorIs(t, err, pool.ErrDial)
		assert.Equal(t, []string{"dial 100ms refused", "acquire 100ms pool: dial failed: refused"}, log.take())

		time.Sleep(time.Second) // past the backoff
		require.NoError(t, p.With(bg, func(plainConn) error {
			time.Sleep(10 * time.Millisecond)
			return nil
		}))
		_, err = p.TryAcquire(bg)
		require.NoError(t, err) // held by the test until Close
		require.NoError(t, p.Close())
		synctest.Wait()
		assert.Equal(t, []string{
			"dial 100ms ok", "acquire 100ms ok", "release 10ms", "acquire 0s ok",
		}, log.take())
	})
}

// The reaper's closes carry their reasons, and so do a closed pool's.
func TestHooksSeeCloseReasons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &hookLog{}
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 0, 3
		cfg.ReapInterval = time.Second
		cfg.MaxIdleTime = 1500 * time.Millisecond
		cfg.MaxLifetime = 0
		cfg.Hooks.Close = func(r pool.CloseReason) { log.add("close %s", r) }
		p, err := pool.New(func(context.Context) (plainConn, error) { return plainConn{}, nil }, cfg)
		require.NoError(t, err)
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"close idle"}, log.take())
		require.NoError(t, p.Close())

		cfg.MaxIdleTime, cfg.MaxLifetime = 0, 1500*time.Millisecond
		p, err = pool.New(func(context.Context) (plainConn, error) { return plainConn{}, nil }, cfg)
		require.NoError(t, err)
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"close lifetime"}, log.take())

		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		require.NoError(t, p.Close())
		synctest.Wait()
		assert.Equal(t, []string{"close pool_closed"}, log.take())
	})
	for r, want := range map[pool.CloseReason]string{
		pool.CloseIdle: "idle", pool.CloseLifetime: "lifetime", pool.CloseBroken: "broken",
		pool.ClosePoolClosed: "pool_closed", pool.CloseAbandoned: "abandoned", pool.CloseReason(99): "unknown",
	} {
		assert.Equal(t, want, r.String())
	}
}

// The registry's paths report to the hooks as the pool's do: With, and
// Get with PooledRegistry.Release.
func TestHooksSeeTheRegistryPaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &hookLog{}
		cfg := pool.DefaultConfig()
		cfg.MinSize = 0
		cfg.Hooks = pool.Hooks{
			Acquire: func(wait time.Duration, err error) { log.add("acquire %v %s", wait, errText(err)) },
			Release: func(use time.Duration) { log.add("release %v", use) },
		}
		reg := pool.NewRegistry[plainConn]()
		defer reg.Close()
		require.NoError(t, reg.Register(bg, "a", func(context.Context) (plainConn, error) {
			time.Sleep(20 * time.Millisecond)
			return plainConn{}, nil
		}, cfg))
		require.NoError(t, reg.With(bg, "a", func(plainConn) error {
			time.Sleep(30 * time.Millisecond)
			return nil
		}))
		pc, err := reg.Get(bg, "a")
		require.NoError(t, err)
		time.Sleep(40 * time.Millisecond)
		require.NoError(t, reg.Release("a", pc))
		assert.Equal(t, []string{"acquire 20ms ok", "release 30ms", "acquire 0s ok", "release 40ms"}, log.take())
	})
}

// Hooks that panic are recovered and counted; the pool's books stay
// right and every connection still comes back.
func TestPanickingHooksLeakNothing(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 0, 1
	cfg.Hooks = pool.Hooks{
		Acquire: func(time.Duration, error) { panic("acquire hook") },
		Release: func(time.Duration) { panic("release hook") },
		Dial:    func(time.Duration, error) { panic("dial hook") },
		Close:   func(pool.CloseReason) { panic("close hook") },
	}
	p, err := pool.New(func(context.Context) (plainConn, error) { return plainConn{}, nil }, cfg)
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, p.With(bg, func(plainConn) error { return nil }))
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Release()
		pc, err = p.Acquire(bg)
		require.NoError(t, err)
		pc.Discard() // closed: the close hook panics too
	}
	s := p.Stats()
	assert.Zero(t, s.InUse)
	assert.LessOrEqual(t, s.Total, 1)
	assert.EqualValues(t, 3, s.ClosedBroken)
	// Per round: 3 acquires, 3 loan ends, 1 dial (the first round's or
	// after each Discard), 1 close.
	assert.EqualValues(t, 3*(3+3+1+1), s.PanicsRecovered)
	require.NoError(t, p.Close())
}

// The Dial hook sees a panicking Factory's panic as the dial's error.
func TestDialHookSeesAPanickingFactory(t *testing.T) {
	var mu sync.Mutex
	var got []error
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	cfg.Hooks.Dial = func(_ time.Duration, err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
	}
	p, err := pool.New(func(context.Context) (plainConn, error) { panic("factory") }, cfg)
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Acquire(bg)
	require.ErrorIs(t, err, pool.ErrDial)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, got)
	var pe *pool.PanicError
	assert.ErrorAs(t, got[0], &pe)
}
