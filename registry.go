package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

type source[C Connector] struct {
	dial Factory[C]
	cfg  Config // cfg.reserved: its MinSize reserved on cfg.Budget, if any
}

// PooledRegistry holds data sources registered by ID, each served by a
// Pool created on first use. Handlers call With(ctx, id, fn).
//
// To hold sources of different kinds in one registry, use
// PooledRegistry[Connector] and type-assert inside fn.
type PooledRegistry[C Connector] struct {
	manager *Manager[C]

	// mu protects sources and closed. It is never held while dialling or
	// closing.
	mu      sync.RWMutex
	sources map[string]*source[C] // each registration its own, compared by identity
	closed  bool
	// replacing serialises Replace calls, so that a source's pool ends
	// with the factory its registration ends with.
	replacing sync.Mutex
}

// NewRegistry returns an empty registry.
func NewRegistry[C Connector]() *PooledRegistry[C] {
	r := &PooledRegistry[C]{sources: make(map[string]*source[C])}
	r.manager, _ = NewManager(r.poolFor) // cannot fail: poolFor is not nil
	return r
}

// poolFor is the Manager's PoolFactory: it looks the source up.
func (r *PooledRegistry[C]) poolFor(_ context.Context, id string) (Factory[C], Config, error) {
	r.mu.RLock()
	s, ok := r.sources[id]
	var dial Factory[C]
	var cfg Config
	if ok {
		dial, cfg = s.dial, s.cfg // Replace changes dial under mu
	}
	r.mu.RUnlock()
	if !ok {
		return nil, Config{}, ErrUnknownSource
	}
	return dial, cfg, nil
}

// RegisterOption changes what Register does.
type RegisterOption func(*registerOptions)

type registerOptions struct {
	testConnect bool
}

// WithTestConnect makes Register create the pool at once, acquire one
// connection and Ping it. If that fails, Register removes what it
// registered, unless another caller has replaced it meanwhile, and
// returns the error. The connection stays in the pool.
func WithTestConnect() RegisterOption {
	return func(o *registerOptions) { o.testConnect = true }
}

// Register adds a source. The ID must be non-empty and not yet registered
// (ErrDuplicateSource), dial must not be nil and cfg must be valid
// (ErrInvalidConfig). A source on a Budget has its MinSize reserved there
// now, until Unregister or the registry's Close, and is refused
// (ErrInvalidConfig) if the MinSizes reserved on the budget would sum
// past its limit. Its pool is created on first use, unless
// WithTestConnect is given; ctx bounds only that test connection. On a
// closed registry Register returns ErrPoolClosed.
func (r *PooledRegistry[C]) Register(ctx context.Context, id string, dial Factory[C], cfg Config, opts ...RegisterOption) error {
	var o registerOptions
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case id == "":
		return newError("invalid config: source ID is empty", ErrInvalidConfig)
	case dial == nil:
		return sourceError(id, newError("invalid config: factory is nil", ErrInvalidConfig))
	}
	if err := cfg.Validate(); err != nil {
		return sourceError(id, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return sourceError(id, ErrPoolClosed)
	}
	if _, dup := r.sources[id]; dup {
		r.mu.Unlock()
		return sourceError(id, ErrDuplicateSource)
	}
	s := &source[C]{dial: dial, cfg: cfg}
	if cfg.Budget != nil && cfg.MinSize > 0 {
		// Reserved now, so that a source that does not fit is refused
		// here, not at its first request.
		res, err := cfg.Budget.reserve(cfg.MinSize)
		if err != nil {
			r.mu.Unlock()
			return sourceError(id, err)
		}
		s.cfg.reserved = res
	}
	r.sources[id] = s
	r.mu.Unlock()

	if !o.testConnect {
		return nil
	}
	err := r.testConnect(ctx, id)
	if err != nil {
		_ = r.unregister(id, s)
		return sourceError(id, newError("test connect: "+detail(err), err))
	}
	return nil
}

func (r *PooledRegistry[C]) testConnect(ctx context.Context, id string) error {
	p, err := r.manager.Pool(ctx, id)
	if err != nil {
		return err
	}
	pc, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	if err := pc.Conn().Ping(ctx); err != nil {
		pc.Discard()
		return err
	}
	pc.Release()
	return nil
}

// Unregister removes a source and closes its pool (connections in use are
// closed when released). It returns an error matching ErrUnknownSource if
// the ID is not registered.
func (r *PooledRegistry[C]) Unregister(id string) error {
	return r.unregister(id, nil)
}

// unregister removes the source registered as id, only if it is s when s
// is not nil, and closes its pool.
func (r *PooledRegistry[C]) unregister(id string, s *source[C]) error {
	r.mu.Lock()
	cur, ok := r.sources[id]
	if ok && s != nil && cur != s {
		r.mu.Unlock()
		return nil // replaced by another caller: theirs now
	}
	delete(r.sources, id)
	r.mu.Unlock()
	if !ok {
		return sourceError(id, ErrUnknownSource)
	}
	err := r.manager.ClosePool(id)
	if errors.Is(err, ErrUnknownSource) { // registered but never used
		err = nil
	}
	cur.cfg.reserved.release() // after its pool has left the budget
	return err
}

// Reset drops the connections of source id's pool (see Pool.Reset), as
// after a failover of its server; a source whose pool is not made yet has
// none. An unknown ID returns an error matching ErrUnknownSource.
func (r *PooledRegistry[C]) Reset(id string) error {
	r.mu.RLock()
	_, ok := r.sources[id]
	r.mu.RUnlock()
	if !ok {
		return sourceError(id, ErrUnknownSource)
	}
	if p, ok := r.manager.Lookup(id); ok {
		p.Reset()
	}
	return nil
}

// Replace gives source id a new Factory, as after a rotated credential or
// a moved host (see Pool.SetFactory): loans in flight finish on their
// connections, which are closed when released, and every loan from now
// on, of the source's pool if it is made or of the one made later, gets a
// connection that dial made. The source keeps its Config, its pool and
// its Stats. dial must not be nil, and a source that shares connections
// (Config.Share) cannot change it: ErrInvalidConfig for both. An unknown
// ID returns an error matching ErrUnknownSource, a closed registry one
// matching ErrPoolClosed.
func (r *PooledRegistry[C]) Replace(id string, dial Factory[C]) error {
	if dial == nil {
		return sourceError(id, newError("invalid config: factory is nil", ErrInvalidConfig))
	}
	r.replacing.Lock()
	defer r.replacing.Unlock()
	r.mu.Lock()
	s, ok := r.sources[id]
	switch {
	case r.closed:
		r.mu.Unlock()
		return sourceError(id, ErrPoolClosed)
	case !ok:
		r.mu.Unlock()
		return sourceError(id, ErrUnknownSource)
	case s.cfg.Share.Group != "":
		r.mu.Unlock()
		return sourceError(id, newError(fmt.Sprintf("invalid config: the source shares connections in group %q (Config.Share): its factory cannot change; Unregister and Register it", s.cfg.Share.Group), ErrInvalidConfig))
	}
	s.dial = dial // a pool made from now on dials with it
	r.mu.Unlock()
	// A pool made, or being made with the old factory: it takes the new.
	if p, ok := r.manager.settled(id); ok {
		if err := p.SetFactory(dial); err != nil && !errors.Is(err, ErrPoolClosed) {
			return sourceError(id, err)
		}
	}
	return nil
}

// Pool returns the pool of a registered source, creating it if needed. An
// unknown ID returns an error matching ErrUnknownSource.
func (r *PooledRegistry[C]) Pool(ctx context.Context, id string) (*Pool[C], error) {
	if p, ok := r.manager.Lookup(id); ok && !p.closed.Load() {
		return p, nil
	}
	r.mu.RLock()
	_, ok := r.sources[id]
	closed := r.closed
	r.mu.RUnlock()
	switch {
	case closed:
		return nil, sourceError(id, ErrPoolClosed)
	case !ok:
		return nil, sourceError(id, ErrUnknownSource)
	}
	return r.manager.Pool(ctx, id)
}

// Get acquires a connection from the source's pool (see Pool.Acquire).
// Errors name the source ID and match the pool's sentinel errors.
func (r *PooledRegistry[C]) Get(ctx context.Context, id string) (*PooledConn[C], error) {
	p, err := r.Pool(ctx, id)
	if err != nil {
		return nil, err
	}
	pc, err := p.Acquire(ctx)
	if err != nil {
		return nil, sourceError(id, err)
	}
	return pc, nil
}

// Release ends a loan obtained with Get. Unlike PooledConn.Release it
// reports misuse as an error instead of panicking: ErrNotHeld for a loan
// that has already ended (also when the same connection has since been
// lent to someone else, whose loan is left alone), and, for a loan that
// is not of source id in this registry, ErrUnknownSource if id has no
// pool, ErrForeignConn otherwise. A loan of id is accepted even if its
// pool has been closed or replaced since Get. A loan in progress is
// always released to its own pool, so nothing leaks.
func (r *PooledRegistry[C]) Release(id string, pc *PooledConn[C]) error {
	if pc == nil {
		return sourceError(id, ErrNotHeld)
	}
	own := pc.pool()
	if !pc.end(endRelease) {
		return sourceError(id, ErrNotHeld)
	}
	if own.manager == r.manager && own.cfg.Name == id {
		return nil
	}
	if _, ok := r.manager.Lookup(id); !ok {
		return sourceError(id, ErrUnknownSource)
	}
	return sourceError(id, ErrForeignConn)
}

// With acquires a connection from the source's pool, calls fn with it and
// ends the loan as Pool.With does. Acquire errors name the source ID; fn's
// error is returned unchanged. It allocates nothing once the pool exists.
func (r *PooledRegistry[C]) With(ctx context.Context, id string, fn func(C) error) error {
	p, err := r.Pool(ctx, id)
	if err != nil {
		return err
	}
	fnErr, acquireErr := p.with(ctx, fn)
	if acquireErr != nil {
		return sourceError(id, acquireErr)
	}
	return fnErr
}

// IDs returns the registered source IDs, sorted.
func (r *PooledRegistry[C]) IDs() []string {
	r.mu.RLock()
	ids := make([]string, 0, len(r.sources))
	for id := range r.sources {
		ids = append(ids, id)
	}
	r.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// Stats returns the Stats of every source whose pool has been created.
func (r *PooledRegistry[C]) Stats() map[string]Stats { return r.manager.Stats() }

// Holders returns who holds the connections of every source whose pool
// has been created (see Pool.Holders), for a debug endpoint.
func (r *PooledRegistry[C]) Holders() map[string]Holders { return r.manager.Holders() }

func (r *PooledRegistry[C]) markClosed() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// releaseReservations ends the sources' reservations on their budgets,
// once their pools are closed.
func (r *PooledRegistry[C]) releaseReservations() {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.sources {
		s.cfg.reserved.release()
	}
}

// Close closes every pool (see Manager.Close); later calls return
// ErrPoolClosed. The MinSizes its sources reserved on budgets are free
// again.
func (r *PooledRegistry[C]) Close() error {
	r.markClosed()
	defer r.releaseReservations()
	return r.manager.Close()
}

// Shutdown closes every pool and waits, until ctx ends, for connections in
// use to be released (see Manager.Shutdown).
func (r *PooledRegistry[C]) Shutdown(ctx context.Context) error {
	r.markClosed()
	defer r.releaseReservations()
	return r.manager.Shutdown(ctx)
}
