package bench

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deepanalyze/pool"
)

// work stands for ~100 ns of a holder's own work; the result is kept so
// the compiler cannot drop it.
var sink uint64

func work() {
	x := uint64(88172645463325252)
	for range 40 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	sink += x
}

func eachContender(b *testing.B, size int, fn func(b *testing.B, c contender)) {
	for _, ct := range contenders {
		b.Run(ct.name, func(b *testing.B) { fn(b, ct.new(b, size)) })
	}
}

func cycle(b *testing.B, c contender, ctx context.Context) {
	h, err := c.Acquire(ctx)
	if err != nil {
		b.Error(err)
		return
	}
	c.Release(h)
}

// BenchmarkSerial: one goroutine, Acquire then Release.
func BenchmarkSerial(b *testing.B) {
	eachContender(b, 4, func(b *testing.B, c contender) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			cycle(b, c, ctx)
		}
	})
}

// BenchmarkParallel: GOMAXPROCS goroutines on 64 connections, uncontended.
func BenchmarkParallel(b *testing.B) {
	eachContender(b, 64, func(b *testing.B, c contender) {
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				cycle(b, c, ctx)
			}
		})
	})
}

// holdAndRelease is a holder that works ~100 ns and then yields, as one
// that blocks on I/O would.
func holdAndRelease(c contender, h any) {
	work()
	runtime.Gosched()
	c.Release(h)
}

// BenchmarkContended: 16×GOMAXPROCS goroutines on 4 connections.
func BenchmarkContended(b *testing.B) {
	eachContender(b, 4, func(b *testing.B, c contender) {
		ctx := context.Background()
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h, err := c.Acquire(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				holdAndRelease(c, h)
			}
		})
	})
}

// BenchmarkContendedTimeout: the contended workload with a
// context.WithTimeout per acquire.
func BenchmarkContendedTimeout(b *testing.B) {
	eachContender(b, 4, func(b *testing.B, c contender) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				h, err := c.Acquire(ctx)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				holdAndRelease(c, h)
			}
		})
	})
}

// BenchmarkWaitLatency: the contended workload, timing every acquire.
// It reports the wait's p50, p99, p99.9 and max, max over mean (fairness
// of waits), and the spread of completed operations per goroutine (the
// busiest goroutine's count over the idlest's). Waits go into a
// fixed-size histogram per goroutine, so that measuring allocates nothing
// and adds no GC of its own.
func BenchmarkWaitLatency(b *testing.B) {
	eachContender(b, 4, func(b *testing.B, c contender) {
		ctx := context.Background()
		var (
			mu    sync.Mutex
			total histogram
			ops   []int
		)
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			local := new(histogram)
			for pb.Next() {
				start := time.Now()
				h, err := c.Acquire(ctx)
				local.record(time.Since(start))
				if err != nil {
					b.Error(err)
					return
				}
				holdAndRelease(c, h)
			}
			mu.Lock()
			total.merge(local)
			ops = append(ops, int(local.n))
			mu.Unlock()
		})
		b.StopTimer()
		if total.n == 0 {
			return
		}
		b.ReportMetric(float64(total.quantile(0.50)), "p50-ns")
		b.ReportMetric(float64(total.quantile(0.99)), "p99-ns")
		b.ReportMetric(float64(total.quantile(0.999)), "p99.9-ns")
		b.ReportMetric(float64(total.max), "max-ns")
		b.ReportMetric(float64(total.max)/(float64(total.sum)/float64(total.n)), "max/mean")
		lo, hi := slices.Min(ops), slices.Max(ops)
		b.ReportMetric(float64(hi)/float64(max(lo, 1)), "ops-spread")
	})
}

// histogram counts durations in buckets of 1/16 of a power of two (at most
// 6.25% wide), keeping the exact count, sum and max.
type histogram struct {
	buckets [64 * 16]int64
	n, sum  int64
	max     time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	if e < 4 {
		return int(v)
	}
	return e*16 + int((v>>(e-4))&15)
}

// bucketTop is the largest duration that falls in bucket i.
func bucketTop(i int) time.Duration {
	e, m := i/16, uint64(i%16)
	if e < 4 {
		return time.Duration(i)
	}
	return time.Duration(((16 + m + 1) << (e - 4)) - 1)
}

func (h *histogram) record(d time.Duration) {
	h.buckets[bucketOf(d)]++
	h.n++
	h.sum += int64(d)
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.buckets {
		h.buckets[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the top of the bucket holding the q-th duration.
func (h *histogram) quantile(q float64) time.Duration {
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.buckets {
		seen += c
		if seen >= rank {
			return min(bucketTop(i), h.max)
		}
	}
	return h.max
}

// BenchmarkRegistryWith: PooledRegistry.With by ID with 1, 100 and 10,000
// registered IDs, against Pool.With on the same kind of pool.
func BenchmarkRegistryWith(b *testing.B) {
	ctx := context.Background()
	fn := func(*benchConn) error { return nil }
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	dial := func(context.Context) (*benchConn, error) { return &benchConn{}, nil }
	b.Run("pool.With", func(b *testing.B) {
		p, err := pool.New(dial, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		_ = p.With(ctx, fn)
		b.ReportAllocs()
		for b.Loop() {
			if err := p.With(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("registry/ids=%d", n), func(b *testing.B) {
			reg := pool.NewRegistry[*benchConn]()
			defer reg.Close()
			for i := range n {
				if err := reg.Register(ctx, fmt.Sprintf("source-%05d", i), dial, cfg); err != nil {
					b.Fatal(err)
				}
			}
			id := fmt.Sprintf("source-%05d", n/2)
			_ = reg.With(ctx, id, fn)
			b.ReportAllocs()
			for b.Loop() {
				if err := reg.With(ctx, id, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkManagerScale creates 10,000 empty pools in one Manager and
// reports the heap per pool and the goroutines the pools keep.
func BenchmarkManagerScale(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	for b.Loop() {
		m, err := pool.NewManager(func(context.Context, string) (pool.Factory[*benchConn], pool.Config, error) {
			return func(context.Context) (*benchConn, error) { return &benchConn{}, nil }, cfg, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("source-%05d", i)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		for _, id := range ids {
			if _, err := m.Pool(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/pool")
		b.ReportMetric(float64(g1-g0), "goroutines")
		_ = m.Close()
	}
}
