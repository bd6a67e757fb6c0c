package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/deepanalyze/pool"
)

// querier is what the load runs against: the embedded server's connection
// or, with -dsn, a PostgreSQL connection.
type querier interface {
	pool.Connector
	Query(ctx context.Context, n int) (int, error)
}

// tlsConn is one authenticated connection to the embedded data server.
type tlsConn struct {
	c      *tls.Conn
	r      *bufio.Reader
	broken atomic.Bool
}

// dialer opens tlsConns to one database of the embedded server and counts
// them.
type dialer struct {
	addr     string
	database string
	secret   []byte
	tlsCfg   *tls.Config
	opened   *atomic.Int64
}

func (d *dialer) dial(ctx context.Context) (*tlsConn, error) {
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, d.tlsCfg)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	r := bufio.NewReader(c)
	hello, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	f := strings.Fields(hello)
	if len(f) != 2 || f[0] != "HELLO" {
		c.Close()
		return nil, fmt.Errorf("unexpected greeting %q", hello)
	}
	nonce, err := hex.DecodeString(f[1])
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("bad nonce: %w", err)
	}
	if _, err := fmt.Fprintf(c, "AUTH %s %x\n", d.database, mac(d.secret, nonce)); err != nil {
		c.Close()
		return nil, err
	}
	reply, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read auth reply: %w", err)
	}
	if strings.TrimSpace(reply) != "OK" {
		c.Close()
		return nil, fmt.Errorf("auth: %s", strings.TrimSpace(reply))
	}
	_ = c.SetDeadline(time.Time{})
	d.opened.Add(1)
	return &tlsConn{c: c, r: r}, nil
}

func (c *tlsConn) roundTrip(ctx context.Context, req string) (string, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	_ = c.c.SetDeadline(dl)
	if _, err := c.c.Write([]byte(req)); err != nil {
		c.broken.Store(true)
		return "", fmt.Errorf("%w: %v", pool.ErrBadConn, err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.broken.Store(true)
		return "", fmt.Errorf("%w: %v", pool.ErrBadConn, err)
	}
	return strings.TrimSpace(line), nil
}

// Query asks the server to double n.
func (c *tlsConn) Query(ctx context.Context, n int) (int, error) {
	line, err := c.roundTrip(ctx, "Q "+strconv.Itoa(n)+"\n")
	if err != nil {
		return 0, err
	}
	v, ok := strings.CutPrefix(line, "R ")
	if !ok {
		return 0, fmt.Errorf("query: %s", line)
	}
	return strconv.Atoi(v)
}

func (c *tlsConn) Ping(ctx context.Context) error {
	line, err := c.roundTrip(ctx, "PING\n")
	if err == nil && line != "PONG" {
		err = fmt.Errorf("ping: %s", line)
	}
	return err
}

func (c *tlsConn) IsValid() bool { return !c.broken.Load() }

func (c *tlsConn) Close() error { return c.c.Close() }
