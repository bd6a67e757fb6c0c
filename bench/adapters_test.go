package bench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"

	"github.com/jackc/puddle/v2"
	commons "github.com/jolestar/go-commons-pool/v2"
	silenceper "github.com/silenceper/pool"
	"vitess.io/vitess/go/pools/smartconnpool"

	"github.com/deepanalyze/pool"
)

// benchConn is the connection every contender pools: it costs nothing, so
// the benchmarks measure the pools.
type benchConn struct{ closed bool }

func (c *benchConn) Ping(context.Context) error { return nil }
func (c *benchConn) Close() error               { c.closed = true; return nil }

// smartConn is benchConn for smartconnpool, whose Close returns nothing.
type smartConn struct{ benchConn }

func (c *smartConn) Close()                                                     { c.closed = true }
func (c *smartConn) ApplySetting(context.Context, *smartconnpool.Setting) error { return nil }
func (c *smartConn) ResetSetting(context.Context) error                         { return nil }
func (c *smartConn) Setting() *smartconnpool.Setting                            { return nil }
func (c *smartConn) IsClosed() bool                                             { return c.closed }

// contender is one pool behind the common adapter. Acquire returns an
// opaque handle that Release takes back.
type contender interface {
	Acquire(ctx context.Context) (any, error)
	Release(h any)
	Close()
}

type newContender func(tb testing.TB, size int) contender

// contenders lists every pool, puddle first since ratios are taken to it.
var contenders = []struct {
	name string
	new  newContender
}{
	{"puddle", newPuddle},
	{"pool", newPool},
	{"smartconnpool", newSmart},
	{"sql", newSQL},
	{"silenceper", newSilenceper},
	{"commons", newCommons},
	{"channel", newChannel},
}

// warm acquires size connections at once and releases them, so that every
// pool is full before timing starts.
func warm(tb testing.TB, c contender, size int) contender {
	tb.Helper()
	hs := make([]any, 0, size)
	for range size {
		h, err := c.Acquire(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		c.Release(h)
	}
	tb.Cleanup(c.Close)
	return c
}

// --- pool

type poolContender struct{ p *pool.Pool[*benchConn] }

func newPool(tb testing.TB, size int) contender {
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 0, size
	p, err := pool.New(func(context.Context) (*benchConn, error) { return &benchConn{}, nil }, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return warm(tb, poolContender{p}, size)
}

func (c poolContender) Acquire(ctx context.Context) (any, error) { return c.p.Acquire(ctx) }
func (c poolContender) Release(h any)                            { h.(*pool.PooledConn[*benchConn]).Release() }
func (c poolContender) Close()                                   { _ = c.p.Close() }

// --- puddle

type puddleContender struct{ p *puddle.Pool[*benchConn] }

func newPuddle(tb testing.TB, size int) contender {
	p, err := puddle.NewPool(&puddle.Config[*benchConn]{
		Constructor: func(context.Context) (*benchConn, error) { return &benchConn{}, nil },
		Destructor:  func(c *benchConn) { _ = c.Close() },
		MaxSize:     int32(size),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return warm(tb, puddleContender{p}, size)
}

func (c puddleContender) Acquire(ctx context.Context) (any, error) { return c.p.Acquire(ctx) }
func (c puddleContender) Release(h any)                            { h.(*puddle.Resource[*benchConn]).Release() }
func (c puddleContender) Close()                                   { c.p.Close() }

// --- vitess smartconnpool

type smartContender struct {
	p *smartconnpool.ConnPool[*smartConn]
}

func newSmart(tb testing.TB, size int) contender {
	p := smartconnpool.NewPool(&smartconnpool.Config[*smartConn]{Capacity: int64(size)})
	p.Open(func(context.Context) (*smartConn, error) { return &smartConn{}, nil }, nil)
	return warm(tb, smartContender{p}, size)
}

func (c smartContender) Acquire(ctx context.Context) (any, error) { return c.p.Get(ctx, nil) }
func (c smartContender) Release(h any)                            { h.(*smartconnpool.Pooled[*smartConn]).Recycle() }
func (c smartContender) Close()                                   { c.p.Close() }

// --- database/sql over a fake driver

type sqlContender struct{ db *sql.DB }

func newSQL(tb testing.TB, size int) contender {
	db := sql.OpenDB(fakeConnector{})
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	return warm(tb, sqlContender{db}, size)
}

func (c sqlContender) Acquire(ctx context.Context) (any, error) { return c.db.Conn(ctx) }
func (c sqlContender) Release(h any)                            { _ = h.(*sql.Conn).Close() }
func (c sqlContender) Close()                                   { _ = c.db.Close() }

type fakeConnector struct{}

func (fakeConnector) Connect(context.Context) (driver.Conn, error) { return fakeDriverConn{}, nil }
func (fakeConnector) Driver() driver.Driver                        { return fakeDriver{} }

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return fakeDriverConn{}, nil }

type fakeDriverConn struct{}

var errNotSupported = errors.New("fake driver: not supported")

func (fakeDriverConn) Prepare(string) (driver.Stmt, error) { return nil, errNotSupported }
func (fakeDriverConn) Close() error                        { return nil }
func (fakeDriverConn) Begin() (driver.Tx, error)           { return nil, errNotSupported }

// --- silenceper/pool (its Get takes no context)

type silenceperContender struct{ p silenceper.Pool }

func newSilenceper(tb testing.TB, size int) contender {
	p, err := silenceper.NewChannelPool(&silenceper.Config{
		InitialCap: 0,
		MaxCap:     size,
		MaxIdle:    size,
		Factory:    func() (any, error) { return &benchConn{}, nil },
		Close:      func(c any) error { return c.(*benchConn).Close() },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return warm(tb, silenceperContender{p}, size)
}

func (c silenceperContender) Acquire(context.Context) (any, error) { return c.p.Get() }
func (c silenceperContender) Release(h any)                        { _ = c.p.Put(h) }
func (c silenceperContender) Close()                               { c.p.Release() }

// --- jolestar/go-commons-pool v2

type commonsContender struct{ p *commons.ObjectPool }

func newCommons(tb testing.TB, size int) contender {
	cfg := commons.NewDefaultPoolConfig()
	cfg.MaxTotal, cfg.MaxIdle = size, size
	factory := commons.NewPooledObjectFactorySimple(func(context.Context) (any, error) { return &benchConn{}, nil })
	p := commons.NewObjectPool(context.Background(), factory, cfg)
	return warm(tb, commonsContender{p}, size)
}

func (c commonsContender) Acquire(ctx context.Context) (any, error) { return c.p.BorrowObject(ctx) }
func (c commonsContender) Release(h any)                            { _ = c.p.ReturnObject(context.Background(), h) }
func (c commonsContender) Close()                                   { c.p.Close(context.Background()) }

// --- a buffered channel: the floor

type channelContender struct{ ch chan *benchConn }

func newChannel(tb testing.TB, size int) contender {
	ch := make(chan *benchConn, size)
	for range size {
		ch <- &benchConn{}
	}
	return warm(tb, channelContender{ch}, size)
}

func (c channelContender) Acquire(ctx context.Context) (any, error) {
	select {
	case conn := <-c.ch:
		return conn, nil
	default:
	}
	select {
	case conn := <-c.ch:
		return conn, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (c channelContender) Release(h any) { c.ch <- h.(*benchConn) }
func (c channelContender) Close()        {}
