//go:build unix

package postgres

import (
	"errors"
	"net"
	"syscall"
)

// peek looks at c's socket without blocking and without consuming
// anything: it reports whether the server has closed the connection (a
// FIN, a reset) or sent something an idle connection should not have
// (a terminate message, FATAL, before the close). It costs one system
// call. A socket it cannot reach reports alive.
func peek(c net.Conn) (alive bool) {
	for {
		u, ok := c.(interface{ NetConn() net.Conn }) // a *tls.Conn
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	alive = true
	var buf [1]byte
	// Control, not Read: Read would wait for the descriptor's read lock,
	// which a goroutine of pgx's may hold, blocked in a read, on an idle
	// connection (its background reader). A peek that does not wait and
	// consumes nothing needs no lock.
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR):
			alive = true // nothing to read: as an idle connection should be
		case err != nil, n == 0, n > 0:
			alive = false // reset, closed (EOF), or unprompted bytes
		}
	})
	return alive
}
