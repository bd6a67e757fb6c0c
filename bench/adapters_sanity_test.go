package bench

import (
	"context"
	"sync"
	"testing"
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
