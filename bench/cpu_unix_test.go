//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time this process (the client: the server runs
// apart) has used so far, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
