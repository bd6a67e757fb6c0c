//go:build !unix

package bench

import "time"

// processCPU is not measured here: cpu-us/q is not reported.
func processCPU() time.Duration { return 0 }
