package main

import (
	"io"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The max-min fair share: capped demands sum to what was served.
func TestFairShare(t *testing.T) {
	assert.InDelta(t, 30, fairShare([]int{10, 100, 100}, 70), 1e-9) // 10 + 30 + 30
	assert.InDelta(t, 20, fairShare([]int{20, 20, 20}, 60), 1e-9)
	assert.True(t, math.IsInf(fairShare([]int{1, 2}, 10), 1), "every demand met")
}

// Jain's index over the backlogged tenants: 1 when each gets its share,
// lower when one gets less; tenants asking less than the share are left
// out.
func TestFairness(t *testing.T) {
	tl := newTally(4, time.Second, time.Second)
	tl.arrivals[0] = []int{10, 100, 100, 100}
	tl.served[0] = []int{10, 30, 30, 30}
	jain, lowest := tl.fairness(1)
	assert.InDelta(t, 1, jain, 1e-9)
	assert.InDelta(t, 1, lowest, 1e-9)

	tl.served[0] = []int{10, 60, 20, 10} // 90 served: a share of 30 each
	jain, lowest = tl.fairness(1)
	assert.InDelta(t, 90.0*90/(3*(60*60+20*20+10*10)), jain, 1e-9)
	assert.InDelta(t, 10.0/30, lowest, 1e-9)
}

func TestZipfAndPoisson(t *testing.T) {
	w := zipf(100, 1.1)
	var sum float64
	for i, x := range w {
		sum += x
		if i > 0 {
			assert.Less(t, x, w[i-1])
		}
	}
	assert.InDelta(t, 1, sum, 1e-9)
	assert.InDelta(t, math.Pow(2, 1.1), w[0]/w[1], 1e-9)

	r := rand.New(rand.NewPCG(3, 4))
	for _, m := range []float64{0.01, 3.5, 47} {
		n := 0
		for range 20000 {
			n += poisson(r, m)
		}
		assert.InEpsilon(t, m, float64(n)/20000, 0.05, "mean %v", m)
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-dsn", "postgres://x", "-seconds", "3", "-scenarios", "skew,wake"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, o.seconds)
	assert.Equal(t, []string{"skew", "wake"}, o.scenarios)
	_, err = parseFlags([]string{"-dsn", "postgres://x", "-scenarios", "skew,nope"}, io.Discard)
	assert.ErrorContains(t, err, `unknown scenario "nope"`)
	_, err = parseFlags([]string{"-dsn", "postgres://x", "-seconds", "0.5s"}, io.Discard)
	assert.ErrorContains(t, err, "at least 1s")
	t.Setenv("PG_DSN", "")
	_, err = parseFlags(nil, io.Discard)
	assert.ErrorContains(t, err, "PG_DSN")
}
