package pool

import (
	"context"
	"errors"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

// PoolFactory tells a Manager how to build the pool for one source ID: the
// Factory that dials it and the Config of its pool. It is called at most
// once at a time per ID, with a context that ends when the Manager is
// closed, not when the caller that caused it gives up. A panic in it
// becomes the creation's error (a *PanicError).
type PoolFactory[C Connector] func(ctx context.Context, id string) (Factory[C], Config, error)

// Manager owns one Pool per source ID. A pool is created on first use,
// exactly once however many goroutines ask for it at the same time; a
// failed creation is not remembered, so the next call tries again.
// Looking up an existing pool takes no lock. Each pool is named after its
// ID (Config.Name), in its log lines and metrics.
type Manager[C Connector] struct {
	newPool PoolFactory[C]
	ctx     context.Context // passed to newPool; cancelled by Close
	cancel  context.CancelFunc

	// pools maps ID to *Pool[C]. It is read without locks; it is written
	// only with mu held.
	pools sync.Map

	// bg counts creations in flight; Add only with mu held and closed false.
	bg sync.WaitGroup

	// mu protects the fields below and serialises writes to pools. It is
	// never held while calling newPool or closing a pool.
	mu       sync.Mutex
	closed   bool
	creating map[string]*creation[C]
}

// creation is one pool being built; callers for the same ID wait on done.
type creation[C Connector] struct {
	done     chan struct{}
	pool     *Pool[C]
	err      error
	canceled bool // ClosePool or Close ran while it was being built
}

// NewManager returns a Manager that builds pools with newPool.
func NewManager[C Connector](newPool PoolFactory[C]) (*Manager[C], error) {
	if newPool == nil {
		return nil, newError("invalid config: PoolFactory is nil", ErrInvalidConfig)
	}
	m := &Manager[C]{newPool: newPool, creating: make(map[string]*creation[C])}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Pool returns the pool for id, creating it if needed. A pool that was
// closed directly with Pool.Close is replaced by a new one, and so is one
// removed with ClosePool, even while its cancelled creation is still
// finishing (Pool waits for that creation, then starts a new one).
//
// If ctx ends while the pool is being created, Pool returns ctx's error;
// the creation goes on and serves later calls. A creation error is
// returned wrapped with the ID, and is not cached. On a closed Manager,
// Pool returns an error matching ErrPoolClosed.
func (m *Manager[C]) Pool(ctx context.Context, id string) (*Pool[C], error) {
	if v, ok := m.pools.Load(id); ok && !v.(*Pool[C]).closed.Load() {
		return v.(*Pool[C]), nil
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, sourceError(id, ErrPoolClosed)
		}
		if v, ok := m.pools.Load(id); ok {
			if !v.(*Pool[C]).closed.Load() {
				m.mu.Unlock()
				return v.(*Pool[C]), nil
			}
			// Closed with Pool.Close rather than ClosePool: forget it and
			// build a new one.
			m.pools.Delete(id)
		}
		c := m.creating[id]
		if c != nil && c.canceled {
			// ClosePool cancelled this creation; it is still finishing.
			// Wait for it, so that the PoolFactory never runs twice at
			// once for an ID, then build anew.
			m.mu.Unlock()
			select {
			case <-c.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if c == nil {
			c = &creation[C]{done: make(chan struct{})}
			m.creating[id] = c
			m.bg.Add(1)
			go m.build(id, c)
		}
		m.mu.Unlock()
		select {
		case <-c.done:
			return c.pool, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// build runs newPool and New for id outside the lock, then publishes the
// pool, unless the ID was closed meanwhile.
func (m *Manager[C]) build(id string, c *creation[C]) {
	defer m.bg.Done()
	p, err := m.newPoolRecovered(id)
	if err != nil {
		err = sourceError(id, err)
	}
	var orphan *Pool[C]
	m.mu.Lock()
	delete(m.creating, id)
	if err == nil && (c.canceled || m.closed) {
		orphan, p = p, nil
		err = sourceError(id, ErrPoolClosed)
	}
	if p != nil {
		m.pools.Store(id, p)
	}
	c.pool, c.err = p, err
	close(c.done)
	m.mu.Unlock()
	if orphan != nil {
		_ = orphan.Close()
	}
}

// newPoolRecovered calls the PoolFactory and New, and names the pool
// after id; a panic in the PoolFactory becomes a *PanicError.
func (m *Manager[C]) newPoolRecovered(id string) (p *Pool[C], err error) {
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, newPanicError("PoolFactory", v)
		}
	}()
	dial, cfg, err := m.newPool(m.ctx, id)
	if err != nil {
		return nil, err
	}
	cfg.Name = id
	if p, err = New(dial, cfg); err != nil {
		return nil, err
	}
	p.manager = m // before the pool is published
	return p, nil
}

// Lookup returns the pool for id if it has been created, without creating
// it.
func (m *Manager[C]) Lookup(id string) (*Pool[C], bool) {
	v, ok := m.pools.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*Pool[C]), true
}

// settled returns the pool for id once no creation of it is in flight,
// and false if there is none; it creates nothing.
func (m *Manager[C]) settled(id string) (*Pool[C], bool) {
	for {
		m.mu.Lock()
		c := m.creating[id]
		if c == nil {
			v, ok := m.pools.Load(id)
			m.mu.Unlock()
			if !ok {
				return nil, false
			}
			return v.(*Pool[C]), true
		}
		m.mu.Unlock()
		<-c.done // New dials nothing before it returns: this is short
	}
}

// ClosePool removes the pool for id and closes it; a creation in flight
// for id is closed as soon as it finishes. It returns the pool's Close
// error, or an error matching ErrUnknownSource if there was no pool and no
// creation for id.
func (m *Manager[C]) ClosePool(id string) error {
	m.mu.Lock()
	c := m.creating[id]
	if c != nil {
		c.canceled = true
	}
	v, ok := m.pools.LoadAndDelete(id)
	m.mu.Unlock()
	if !ok {
		if c != nil {
			return nil
		}
		return sourceError(id, ErrUnknownSource)
	}
	return v.(*Pool[C]).Close()
}

// IDs returns the IDs of the pools created so far, sorted.
func (m *Manager[C]) IDs() []string {
	var ids []string
	m.pools.Range(func(k, _ any) bool {
		ids = append(ids, k.(string))
		return true
	})
	slices.Sort(ids)
	return ids
}

// Stats returns each created pool's Stats by ID.
func (m *Manager[C]) Stats() map[string]Stats {
	out := make(map[string]Stats)
	m.pools.Range(func(k, v any) bool {
		out[k.(string)] = v.(*Pool[C]).Stats()
		return true
	})
	return out
}

// Holders returns who holds each created pool's connections, by ID (see
// Pool.Holders).
func (m *Manager[C]) Holders() map[string]Holders {
	out := make(map[string]Holders)
	m.pools.Range(func(k, v any) bool {
		out[k.(string)] = v.(*Pool[C]).Holders()
		return true
	})
	return out
}

// detachAll marks the Manager closed, cancels creations in flight and
// removes every pool; it returns them, and false if the Manager was
// already closed.
func (m *Manager[C]) detachAll() ([]*Pool[C], bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false
	}
	m.closed = true
	for _, c := range m.creating {
		c.canceled = true
	}
	var pools []*Pool[C]
	m.pools.Range(func(k, v any) bool {
		pools = append(pools, v.(*Pool[C]))
		m.pools.Delete(k)
		return true
	})
	m.cancel()
	return pools, true
}

// stopped is a pool that stop has closed, with its idle connections still
// to close.
type stopped[C Connector] struct {
	p     *Pool[C]
	idle  []*entry[C]
	first bool
}

// stopAll closes every pool without I/O, so that none lends again while
// the others are closing.
func stopAll[C Connector](pools []*Pool[C]) []stopped[C] {
	out := make([]stopped[C], len(pools))
	for i, p := range pools {
		idle, first := p.stop()
		out[i] = stopped[C]{p, idle, first}
	}
	return out
}

// Close closes every pool (see Pool.Close) and makes later calls of Pool
// return ErrPoolClosed. Every pool stops lending before any is closed;
// then their idle connections are closed, 16 pools at a time. It returns
// once creations in flight have finished, with the pools' errors joined.
// Closing a closed Manager returns nil.
func (m *Manager[C]) Close() error {
	pools, first := m.detachAll()
	if !first {
		return nil
	}
	m.bg.Wait()
	var (
		g    errgroup.Group
		mu   sync.Mutex
		errs []error
	)
	g.SetLimit(16)
	for _, s := range stopAll(pools) {
		if !s.first {
			continue
		}
		g.Go(func() error {
			if err := s.p.closeStopped(s.idle); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// Shutdown closes every pool at once, so that none lends again, then
// waits until every pool's connections in use have been released and
// closed (see Pool.Shutdown), or until ctx ends: then it returns ctx's
// error and what is left finishes in the background. Creations in flight
// are cancelled, and waited for within ctx.
func (m *Manager[C]) Shutdown(ctx context.Context) error {
	pools, first := m.detachAll()
	if !first {
		return nil
	}
	all := stopAll(pools)
	created := make(chan struct{})
	go func() { m.bg.Wait(); close(created) }()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, s := range all {
		wg.Go(func() {
			if err := s.p.awaitStopped(ctx, s.idle, s.first); err != nil && err != ctx.Err() {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	select {
	case <-created:
	case <-ctx.Done():
	}
	// Each pool cut short reports ctx's error; report it once.
	errs = slices.DeleteFunc(errs, func(err error) bool { return errors.Is(err, ctx.Err()) })
	return errors.Join(append(errs, ctx.Err())...)
}
