//go:build unix && !linux

package postgres

import "syscall"

// recvPeek peeks at up to len(buf) bytes of socket fd without waiting.
func recvPeek(fd uintptr, buf []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
