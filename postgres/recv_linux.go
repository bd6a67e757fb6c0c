package postgres

import (
	"syscall"
	"unsafe"
)

// recvPeek peeks at up to len(buf) bytes of socket fd without waiting:
// recvfrom(2) with MSG_PEEK|MSG_DONTWAIT, called directly, since
// syscall.Recvfrom allocates for the sender's address.
func recvPeek(fd uintptr, buf []byte) (int, error) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
