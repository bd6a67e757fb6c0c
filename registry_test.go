package pool_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Defect 1, through the registry: a stale Release returns ErrNotHeld and
// leaves the current holder's loan alone.
func TestRegistryStaleReleaseIsErrNotHeld(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = reg.Close() })
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db", src.factory(), testConfig(1)))
	stale, err := reg.Get(bg, "db")
	require.NoError(t, err)
	require.NoError(t, reg.Release("db", stale))
	current, err := reg.Get(bg, "db")
	require.NoError(t, err)
	assert.ErrorIs(t, reg.Release("db", stale), pool.ErrNotHeld)
	assert.Equal(t, 1, reg.Stats()["db"].InUse, "stale release ended the current loan")
	require.NoError(t, reg.Release("db", current))
	assert.ErrorIs(t, reg.Release("db", current), pool.ErrNotHeld)
}

// Defect 10: an error that crosses the registry says "pool:" once.
func TestRegistryErrorsSayPoolOnce(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db1", src.factory(), testConfig(1)))
	require.NoError(t, reg.Close())
	err := reg.With(bg, "db1", func(*fakeConn) error { return nil })
	require.ErrorIs(t, err, pool.ErrPoolClosed)
	assert.Equal(t, 1, strings.Count(err.Error(), "pool:"), "%q", err)
	assert.Contains(t, err.Error(), `"db1"`)
}

// The Python registry only logged when asked to release a connector it
// did not know. Here the caller gets an error, and the connection is not
// lost.
func TestRegistryReleaseReportsMisuse(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = reg.Close() })
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "a", src.factory(), testConfig(2)))
	require.NoError(t, reg.Register(bg, "b", newFakeSource(t).factory(), testConfig(2)))
	pb, err := reg.Get(bg, "b")
	require.NoError(t, err)
	pc, err := reg.Get(bg, "a")
	require.NoError(t, err)

	err = reg.Release("nope", pc)
	assert.ErrorIs(t, err, pool.ErrUnknownSource)
	assert.Contains(t, err.Error(), `"nope"`)
	pa, _ := reg.Pool(bg, "a")
	assert.Equal(t, 1, pa.Stats().Idle, "connection lost after release with an unknown ID")

	err = reg.Release("a", pc)
	assert.ErrorIs(t, err, pool.ErrNotHeld, "second release")

	err = reg.Release("a", pb)
	assert.ErrorIs(t, err, pool.ErrForeignConn)
	pbPool, _ := reg.Pool(bg, "b")
	assert.Equal(t, 1, pbPool.Stats().Idle, "foreign connection must go back to its own pool")
	assert.True(t, errors.Is(reg.Release("a", nil), pool.ErrNotHeld))
}

func newTestRegistry(t testing.TB) *pool.PooledRegistry[*fakeConn] {
	reg := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

func TestRegistryGetReleaseAndWith(t *testing.T) {
	reg := newTestRegistry(t)
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db1", src.factory(), testConfig(2)))
	assert.EqualValues(t, 0, src.dials.Load(), "Register must not dial without WithTestConnect")

	pc, err := reg.Get(bg, "db1")
	require.NoError(t, err)
	c := pc.Conn()
	require.NoError(t, reg.Release("db1", pc))
	require.NoError(t, reg.With(bg, "db1", func(got *fakeConn) error {
		assert.Same(t, c, got, "connection not reused through the registry")
		return nil
	}))
	stats := reg.Stats()
	assert.Equal(t, 1, stats["db1"].Idle)
	assert.EqualValues(t, 2, stats["db1"].AcquireCount)
	assert.EqualValues(t, 1, src.dials.Load())
}

func TestRegistryRejectsBadRegistrations(t *testing.T) {
	reg := newTestRegistry(t)
	f := newFakeSource(t).factory()
	require.NoError(t, reg.Register(bg, "db1", f, testConfig(2)))

	err := reg.Register(bg, "db1", f, testConfig(2))
	assert.ErrorIs(t, err, pool.ErrDuplicateSource)
	assert.Contains(t, err.Error(), `"db1"`)
	assert.ErrorIs(t, reg.Register(bg, "", f, testConfig(2)), pool.ErrInvalidConfig)
	assert.ErrorIs(t, reg.Register(bg, "db2", nil, testConfig(2)), pool.ErrInvalidConfig)
	err = reg.Register(bg, "db3", f, pool.Config{})
	assert.ErrorIs(t, err, pool.ErrInvalidConfig)
	assert.Contains(t, err.Error(), `"db3"`)
	assert.Contains(t, err.Error(), "MaxSize")
	assert.Equal(t, []string{"db1"}, reg.IDs())
}

func TestRegistryUnknownIDIsAnError(t *testing.T) {
	reg := newTestRegistry(t)
	_, err := reg.Get(bg, "nope")
	assert.ErrorIs(t, err, pool.ErrUnknownSource)
	assert.Contains(t, err.Error(), `"nope"`)
	called := false
	err = reg.With(bg, "nope", func(*fakeConn) error { called = true; return nil })
	assert.ErrorIs(t, err, pool.ErrUnknownSource)
	assert.False(t, called)
	assert.ErrorIs(t, reg.Unregister("nope"), pool.ErrUnknownSource)
}

func TestRegistryAcquireErrorsNameTheSource(t *testing.T) {
	reg := newTestRegistry(t)
	src := newFakeSource(t)
	refused := errors.New("connection refused")
	src.failDials(refused)
	require.NoError(t, reg.Register(bg, "db1", src.factory(), testConfig(2)))
	err := reg.With(bg, "db1", func(*fakeConn) error { return nil })
	assert.ErrorIs(t, err, refused)
	assert.ErrorIs(t, err, pool.ErrDial)
	assert.Contains(t, err.Error(), `"db1"`)
}

func TestRegistryUnregisterClosesThePool(t *testing.T) {
	reg := newTestRegistry(t)
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db1", src.factory(), testConfig(2)))
	require.NoError(t, reg.With(bg, "db1", func(*fakeConn) error { return nil }))
	held, err := reg.Get(bg, "db1")
	require.NoError(t, err)

	require.NoError(t, reg.Unregister("db1"))
	assert.Empty(t, reg.IDs())
	_, err = reg.Get(bg, "db1")
	assert.ErrorIs(t, err, pool.ErrUnknownSource)
	held.Release() // closed, since its pool is closed
	src.checkAllClosedOnce(t)

	// The ID can be registered again, and a never-used source unregisters.
	require.NoError(t, reg.Register(bg, "db1", src.factory(), testConfig(2)))
	assert.NoError(t, reg.Unregister("db1"))
}

func TestRegistryTestConnect(t *testing.T) {
	reg := newTestRegistry(t)
	good := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "good", good.factory(), testConfig(2), pool.WithTestConnect()))
	assert.EqualValues(t, 1, good.pings.Load(), "test connect did not ping")
	p, err := reg.Pool(bg, "good")
	require.NoError(t, err)
	assert.Equal(t, 1, p.Stats().Idle, "test connection should stay in the pool")

	bad := newFakeSource(t)
	refused := errors.New("connection refused")
	bad.failDials(refused)
	err = reg.Register(bg, "bad", bad.factory(), testConfig(2), pool.WithTestConnect())
	assert.ErrorIs(t, err, refused)
	assert.Contains(t, err.Error(), `"bad"`)
	assert.Equal(t, []string{"good"}, reg.IDs(), "failed source stays registered")
}

func TestRegistryCloseClosesEverything(t *testing.T) {
	reg := newTestRegistry(t)
	a, b := newFakeSource(t), newFakeSource(t)
	require.NoError(t, reg.Register(bg, "a", a.factory(), testConfig(2)))
	require.NoError(t, reg.Register(bg, "b", b.factory(), testConfig(2)))
	for _, id := range reg.IDs() {
		require.NoError(t, reg.With(bg, id, func(*fakeConn) error { return nil }))
	}
	require.NoError(t, reg.Close())
	a.checkAllClosedOnce(t)
	b.checkAllClosedOnce(t)
	err := reg.With(bg, "a", func(*fakeConn) error { return nil })
	assert.ErrorIs(t, err, pool.ErrPoolClosed)
	assert.ErrorIs(t, reg.Register(bg, "c", a.factory(), testConfig(2)), pool.ErrPoolClosed)
	require.NoError(t, reg.Shutdown(bg), "Shutdown after Close")
}

func TestRegistryReplacesAPoolClosedDirectly(t *testing.T) {
	reg := newTestRegistry(t)
	require.NoError(t, reg.Register(bg, "db1", newFakeSource(t).factory(), testConfig(2)))
	p1, err := reg.Pool(bg, "db1")
	require.NoError(t, err)
	require.NoError(t, p1.Close())
	require.NoError(t, reg.With(bg, "db1", func(*fakeConn) error { return nil }))
	p2, err := reg.Pool(bg, "db1")
	require.NoError(t, err)
	assert.NotSame(t, p1, p2)
}

// resettable is a connection type narrower than Connector, for Adapt.
type resettable interface {
	pool.Connector
	Reset(context.Context) error
}

// Adapt lets a registry of Connector hold a typed Factory's connections,
// which keep their Resetter and Validator behind the interface; dial
// errors and nil connections pass through as failed dials; a type that
// cannot be held, or a nil Factory, is refused before anything is dialled.
func TestAdapt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := newFakeSource(t)
	f, err := pool.Adapt[pool.Connector](src.factory())
	require.NoError(t, err)
	reg := pool.NewRegistry[pool.Connector]()
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 0, 1
	require.NoError(t, reg.Register(ctx, "fake", f, cfg, pool.WithTestConnect()))
	var got *fakeConn
	require.NoError(t, reg.With(ctx, "fake", func(c pool.Connector) error {
		got = c.(*fakeConn)
		return nil
	}))
	require.NotNil(t, got)
	assert.Equal(t, int64(1), src.dials.Load(), "one connection, reused")
	assert.Equal(t, int64(2), src.resets.Load(), "Reset ran on both releases (test connect, With)")
	assert.Positive(t, src.checks.Load(), "IsValid ran")
	require.NoError(t, reg.Close())
	src.checkAllClosedOnce(t)

	boom := errors.New("boom")
	failing := newFakeSource(t)
	failing.failDials(boom)
	f, err = pool.Adapt[pool.Connector](failing.factory())
	require.NoError(t, err)
	_, err = f(ctx)
	require.ErrorIs(t, err, boom)

	f, err = pool.Adapt[pool.Connector](pool.Factory[*fakeConn](func(context.Context) (*fakeConn, error) { return nil, nil }))
	require.NoError(t, err)
	p, err := pool.New(f, cfg)
	require.NoError(t, err)
	_, err = p.Acquire(ctx)
	require.ErrorContains(t, err, "nil connection")
	require.NoError(t, p.Close())

	narrow, err := pool.Adapt[resettable](src.factory())
	require.NoError(t, err, "a *fakeConn has Reset")
	require.NotNil(t, narrow)

	_, err = pool.Adapt[*fakeConn](pool.Factory[pool.Connector](func(context.Context) (pool.Connector, error) { return &fakeConn{}, nil }))
	require.ErrorContains(t, err, "a pool.Connector cannot be held as a *pool_test.fakeConn")
	_, err = pool.Adapt[resettable](pool.Factory[plainConn](func(context.Context) (plainConn, error) { return plainConn{}, nil }))
	require.ErrorContains(t, err, "a pool_test.plainConn cannot be held as a pool_test.resettable")
	_, err = pool.Adapt[pool.Connector, *fakeConn](nil)
	require.ErrorContains(t, err, "nil Factory")
}

// A Register whose test connect fails removes what it registered, and
// only that. Before, when another caller had meanwhile unregistered the
// ID and registered it anew, the failed Register's cleanup removed the
// other caller's registration, although its Register had returned nil.
func TestFailedTestConnectRemovesOnlyItsOwnRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := pool.NewRegistry[*fakeConn]()
		defer reg.Close()
		first := newFakeSource(t)
		pinging, fail := make(chan struct{}), make(chan struct{})
		first.onPing = func(context.Context, *fakeConn) error {
			close(pinging)
			<-fail
			return errors.New("password authentication failed")
		}
		registered := make(chan error)
		go func() {
			registered <- reg.Register(bg, "db", first.factory(), testConfig(1), pool.WithTestConnect())
		}()
		<-pinging // the test connect's Ping is running

		require.NoError(t, reg.Unregister("db"))
		second := newFakeSource(t)
		require.NoError(t, reg.Register(bg, "db", second.factory(), testConfig(1)))
		close(fail)
		require.Error(t, <-registered)

		assert.Equal(t, []string{"db"}, reg.IDs(), "the second registration was removed")
		require.NoError(t, reg.With(bg, "db", func(*fakeConn) error { return nil }))
		assert.EqualValues(t, 1, second.dials.Load())
	})
}

// A loan is released to its source whatever became of the pool that lent
// it: closed directly, and replaced on next use. Before, Release reported
// ErrForeignConn ("belongs to another source") for it.
func TestRegistryReleaseAfterThePoolWasReplaced(t *testing.T) {
	reg := pool.NewRegistry[*fakeConn]()
	defer reg.Close()
	src := newFakeSource(t)
	require.NoError(t, reg.Register(bg, "db", src.factory(), testConfig(2)))
	pc, err := reg.Get(bg, "db")
	require.NoError(t, err)
	old, err := reg.Pool(bg, "db")
	require.NoError(t, err)
	require.NoError(t, old.Close())
	require.NoError(t, reg.With(bg, "db", func(*fakeConn) error { return nil })) // a new pool
	replaced, err := reg.Pool(bg, "db")
	require.NoError(t, err)
	require.NotSame(t, old, replaced)

	c := pc.Conn()
	assert.NoError(t, reg.Release("db", pc))
	assert.EqualValues(t, 1, c.closed.Load(), "its pool is closed, so it is closed")
	assert.ErrorIs(t, reg.Release("db", pc), pool.ErrNotHeld)

	// A loan of another registry's "db" is still foreign.
	other := pool.NewRegistry[*fakeConn]()
	defer other.Close()
	require.NoError(t, other.Register(bg, "db", newFakeSource(t).factory(), testConfig(1)))
	opc, err := other.Get(bg, "db")
	require.NoError(t, err)
	assert.ErrorIs(t, reg.Release("db", opc), pool.ErrForeignConn)
	assert.ErrorIs(t, other.Release("db", opc), pool.ErrNotHeld, "released to its own pool by the first call")
}

// A source's MinSize is reserved on its budget when it registers: the
// source that would take the reservations past the limit is refused at
// Register, with an error naming it, the budget and the sum, not at its
// first request. The reservation holds while the source is registered,
// whether its pool exists or not, counts once when it does, and ends
// with Unregister, a failed test connection, or the registry's Close.
func TestRegisterReservesMinSizeOnTheBudget(t *testing.T) {
	b := newTestBudget(t, 2)
	b.SetName("pg-main")
	src := newFakeSource(t)
	cfg := budgetConfig(b, "", 4)
	cfg.MinSize = 1
	reg := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = reg.Close() })
	require.NoError(t, reg.Register(bg, "acme", src.factory(), cfg))
	require.NoError(t, reg.Register(bg, "globex", src.factory(), cfg))
	assert.Equal(t, 2, b.Stats().Reserved, "two sources registered, no pool made")
	assert.Empty(t, b.Stats().Pools)

	err := reg.Register(bg, "initech", src.factory(), cfg)
	require.ErrorIs(t, err, pool.ErrInvalidConfig)
	for _, want := range []string{`"initech"`, `budget "pg-main" (limit 2)`, "sum to 3"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, reg.IDs(), "initech")

	// Making the pools counts each reservation once, and closing a pool
	// without unregistering it keeps its source's reservation.
	require.NoError(t, reg.With(bg, "acme", func(*fakeConn) error { return nil }))
	require.NoError(t, reg.With(bg, "globex", func(*fakeConn) error { return nil }))
	assert.Equal(t, 2, b.Stats().Reserved)
	assert.Error(t, b.SetLimit(1), "the limit went below the reservations")
	acme, err := reg.Pool(bg, "acme")
	require.NoError(t, err)
	require.NoError(t, acme.Close())
	assert.Equal(t, 2, b.Stats().Reserved, "a closed pool's source is still registered")
	assert.ErrorIs(t, reg.Register(bg, "initech", src.factory(), cfg), pool.ErrInvalidConfig)
	require.NoError(t, reg.With(bg, "acme", func(*fakeConn) error { return nil }), "the pool made again")
	assert.Equal(t, 2, b.Stats().Reserved)
	// A pool made from the Config of the source's pool, once that is
	// closed, reserves its own MinSize: the source keeps its reservation.
	acme, err = reg.Pool(bg, "acme")
	require.NoError(t, err)
	acmeCfg := acme.Config()
	require.NoError(t, acme.Close())
	_, err = pool.New(src.factory(), acmeCfg)
	assert.ErrorIs(t, err, pool.ErrInvalidConfig, "a pool made from a registered pool's Config took the source's reservation")
	assert.Equal(t, 2, b.Stats().Reserved)

	// Unregistering frees the reservation; so does a failed test connect.
	require.NoError(t, reg.Unregister("globex"))
	assert.Equal(t, 1, b.Stats().Reserved)
	src.failDials(errors.New("refused"))
	assert.Error(t, reg.Register(bg, "initech", src.factory(), cfg, pool.WithTestConnect()))
	assert.Equal(t, 1, b.Stats().Reserved, "a source refused by its test connection keeps a reservation")
	src.failDials(nil)
	require.NoError(t, reg.Register(bg, "initech", src.factory(), cfg))

	// A second registry on the budget gets what the first gives back.
	other := pool.NewRegistry[*fakeConn]()
	t.Cleanup(func() { _ = other.Close() })
	assert.ErrorIs(t, other.Register(bg, "umbrella", src.factory(), cfg), pool.ErrInvalidConfig)
	require.NoError(t, reg.Close())
	assert.Zero(t, b.Stats().Reserved)
	require.NoError(t, other.Register(bg, "umbrella", src.factory(), cfg))
	require.NoError(t, other.Register(bg, "hooli", src.factory(), cfg))
}
