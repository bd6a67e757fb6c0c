//go:build unix

package postgres

import (
	"errors"
	"net"
	"syscall"
)

// peeker looks at a connection's socket without blocking and without
// consuming anything: it reports whether the server has closed the
// connection (a FIN, a reset) or sent something an idle connection
// should not have (a terminate message, FATAL, before the close). It
// costs one system call and no allocation: the raw socket and the
// function given to it are made once, at dial. The pool calls IsValid
// from one goroutine at a time, so its fields need no lock.
type peeker struct {
	rc    syscall.RawConn // nil: the socket cannot be reached; report alive
	fn    func(fd uintptr)
	alive bool
	buf   [1]byte
}

func newPeeker(c net.Conn) *peeker {
	for {
		u, ok := c.(interface{ NetConn() net.Conn }) // a *tls.Conn
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{rc: rc}
	p.fn = func(fd uintptr) {
		n, err := recvPeek(fd, p.buf[:])
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR):
			p.alive = true // nothing to read: as an idle connection should be
		default:
			p.alive = false // reset, closed (EOF, n == 0), or unprompted bytes (n > 0)
		}
		_ = n
	}
	return p
}

// ok reports whether the socket looks alive. Control, not Read: Read
// would wait for the descriptor's read lock, which a goroutine of pgx's
// may hold, blocked in a read, on an idle connection (its background
// reader). A peek that does not wait and consumes nothing needs no lock.
func (p *peeker) ok() bool {
	if p == nil {
		return true
	}
	p.alive = true
	if p.rc.Control(p.fn) != nil {
		return true
	}
	return p.alive
}
