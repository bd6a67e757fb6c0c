package pool

import (
	"context"
	"testing"
	"unsafe"
)

type layoutConn struct{}

func (*layoutConn) Ping(context.Context) error { return nil }
func (*layoutConn) Close() error               { return nil }

// An entry fills whole cache lines, so that two connections in use on two
// cores never share one; a field added without adjusting the padding
// breaks this silently, and costs the parallel benchmark dearly.
func TestEntryFillsWholeCacheLines(t *testing.T) {
	if size := unsafe.Sizeof(entry[*layoutConn]{}); size%64 != 0 {
		t.Errorf("entry is %d bytes, not a multiple of 64: adjust its padding", size)
	}
	var p Pool[*layoutConn]
	if first, last := unsafe.Offsetof(p.mu)/64, (unsafe.Offsetof(p.waiters)+unsafe.Sizeof(p.waiters.len)-1)/64; last-first > 1 {
		t.Errorf("the fields from mu to waiters.len span %d cache lines, not 2", last-first+1)
	}
	if off := unsafe.Offsetof(p.cfg); off < unsafe.Offsetof(p.stats)+unsafe.Sizeof(p.stats)+64 {
		t.Errorf("cfg at %d is within a cache line of the counters", off)
	}
}
