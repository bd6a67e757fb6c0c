package azblob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// cutConn is a TCP connection that fails, as a reset would, once more
// than limit bytes have been read from it.
type cutConn struct {
	net.Conn
	left int64
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		_ = c.Conn.Close()
		return 0, errors.New("connection reset by the test")
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

// A connection that breaks in the middle of a blob's body does not fail
// the read: the body resumes from where it was, on a new connection, and
// the bytes are the blob's. Each of the first cuts connections made is
// cut after 1 MiB; the blob is 8 MiB. A blob replaced in the meantime is
// not spliced: the resumed read fails instead of mixing two versions.
func TestReadResumesAfterACutConnection(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	big := randomBytes(t, 8<<20)
	upload(t, a, name, map[string][]byte{"big": big})

	// cutting returns a registry whose first cuts connections are cut
	// after 1 MiB, and the count of connections it made.
	cutting := func(cuts int32) (*pool.PooledRegistry[*azblob.Conn], *atomic.Int32) {
		var dials atomic.Int32
		opts := a.options(name)
		opts.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil || dials.Add(1) > cuts {
				return c, err
			}
			return &cutConn{Conn: c, left: 1 << 20}, nil
		}
		reg := pool.NewRegistry[*azblob.Conn]()
		t.Cleanup(func() { _ = reg.Close() })
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 0, 1
		require.NoError(t, azblob.Register(context.Background(), reg, "blob", opts, cfg))
		return reg, &dials
	}

	reg, dials := cutting(2)
	rc, err := azblob.Open(context.Background(), reg, "blob", "big")
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	assert.True(t, bytes.Equal(big, got), "the resumed body is not the blob's")
	assert.Greater(t, dials.Load(), int32(2), "no connection was cut")

	// A cut while the blob is replaced: the resumed request asks for the
	// version it started with, and the service refuses it.
	reg, _ = cutting(100)
	var once sync.Once
	rc, err = azblob.Open(context.Background(), reg, "blob", "big")
	require.NoError(t, err)
	buf := make([]byte, 64<<10)
	var readErr error
	for readErr == nil {
		_, readErr = rc.Read(buf)
		once.Do(func() { upload(t, a, name, map[string][]byte{"big": []byte("a new version")}) })
	}
	_ = rc.Close()
	require.NotErrorIs(t, readErr, io.EOF, "a read spanning two versions of the blob succeeded")
	var e *azblob.Error
	require.ErrorAs(t, readErr, &e)
	assert.Equal(t, 412, e.StatusCode, "%v", readErr)
}

// A pooled connection whose keep-alive TCP connection the service closed
// (Azurite restarted while it sat idle) serves the next request of every
// kind without an error: the dead connection is replaced under the
// request, which never reaches the caller.
func TestIdleConnectionClosedByTheServiceServesTheNextRequest(t *testing.T) {
	a, az := freshAzurite(t)
	const name = "restarted"
	setUp := func() {
		_, err := a.admin(t, name).Create(context.Background(), nil)
		require.NoError(t, err)
		upload(t, a, name, map[string][]byte{"x": []byte("before")})
	}
	setUp()
	reg := pool.NewRegistry[*azblob.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 1, 1
	require.NoError(t, azblob.Register(context.Background(), reg, "blob", a.options(name), cfg, pool.WithTestConnect()))
	ops := map[string]func(c *azblob.Conn) error{
		"read": func(c *azblob.Conn) error {
			rc, err := c.Read(context.Background(), "x")
			if err != nil {
				return err
			}
			_, err = io.ReadAll(rc)
			return errors.Join(err, rc.Close())
		},
		"upload": func(c *azblob.Conn) error {
			return c.Upload(context.Background(), "y", bytes.NewReader([]byte("after")), nil)
		},
		"properties": func(c *azblob.Conn) error {
			_, err := c.Properties(context.Background(), "x")
			return err
		},
		"list": func(c *azblob.Conn) error {
			_, err := c.ListPage(context.Background(), "", "", 10)
			return err
		},
	}
	for _, op := range []string{"read", "upload", "properties", "list"} {
		require.NoError(t, az.Process.Kill())
		_ = az.Wait()
		az = ownAzurite(t, a.port)
		setUp() // in memory: the container went with the process
		created := reg.Stats()["blob"].Created
		assert.NoError(t, reg.With(context.Background(), "blob", ops[op]), "%s after the restart", op)
		assert.Equal(t, created, reg.Stats()["blob"].Created, "%s: the pool dialled instead of reusing its connection", op)
	}
}
