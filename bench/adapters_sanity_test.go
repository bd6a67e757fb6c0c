package bench

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Every adapter must lend distinct connections up to its size and take
// them back, or the benchmarks would compare pools doing different work.
func TestContendersLendDistinctConnections(t *testing.T) {
	const size = 4
	for _, ct := range contenders {
		t.Run(ct.name, func(t *testing.T) {
			c := ct.new(t, size)
			seen := map[any]bool{}
			var hs []any
			for range size {
				h, err := c.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if seen[h] {
					t.Fatalf("handle %v lent twice", h)
				}
				seen[h] = true
				hs = append(hs, h)
			}
			for _, h := range hs {
				c.Release(h)
			}
			if ct.name == "silenceper" {
				// silenceper/pool v1.0.0's Get can block forever on its
				// channel under this load (a lost wake-up in the peer; it
				// hung CI once for 10 minutes): only its serial lending is
				// checked.
				return
			}
			var wg sync.WaitGroup
			for range 4 * size {
				wg.Go(func() {
					for range 100 {
						h, err := c.Acquire(context.Background())
						if err != nil {
							t.Error(err)
							return
						}
						c.Release(h)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for d := time.Duration(1); d <= 1000; d++ {
		h.record(d * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(tt.q)
		if got < tt.want || float64(got) > float64(tt.want)*1.07 {
			t.Errorf("quantile(%v) = %v, want within 7%% above %v", tt.q, got, tt.want)
		}
	}
	if h.max != time.Millisecond || h.n != 1000 {
		t.Errorf("max %v, n %d", h.max, h.n)
	}
	// Buckets past 2^60 ns (36 years) are never reached and overflow.
	for i := range 60 * 16 {
		if i == 0 || (i >= 16 && i < 64) { // unused: 0 counts as 1 ns, and below 16 ns each ns has a bucket
			continue
		}
		top := bucketTop(i)
		if bucketOf(top) != i || (i >= 64 && bucketOf(top+1) != i+1) {
			t.Fatalf("bucket %d: top %v falls in %d, top+1 in %d", i, top, bucketOf(top), bucketOf(top+1))
		}
	}
}
