// Command ratio reads `go test -bench` output from several passes on
// standard input and prints, as Markdown, the median of each measurement
// and each contender's ratio to puddle, with the targets of the
// comparison.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// line matches "BenchmarkSerial/pool-2   123   45.6 ns/op   0 B/op ...".
var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

type key struct{ bench, unit string }

func main() {
	scalePath := flag.String("scale", "", "file of BenchmarkParallel results at several -cpu values")
	flag.Parse()
	samples, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratio:", err)
		os.Exit(1)
	}
	if len(samples) == 0 {
		fmt.Fprintln(os.Stderr, "ratio: no benchmark lines on standard input")
		os.Exit(1)
	}
	med := func(bench, unit string) (float64, bool) {
		v := samples[key{bench, unit}]
		if len(v) == 0 {
			return 0, false
		}
		v = slices.Clone(v)
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2], true
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()

	names := []string{"pool", "puddle", "smartconnpool", "sql", "silenceper", "commons", "channel"}
	workloads := []string{"Serial", "Parallel", "Contended", "ContendedTimeout"}
	fmt.Fprintln(out, "### ns per Acquire+Release (median), and ratio to puddle")
	fmt.Fprintln(out)
	fmt.Fprintf(out, "| workload | %s |\n", strings.Join(names, " | "))
	fmt.Fprintf(out, "|---|%s\n", strings.Repeat("---|", len(names)))
	for _, w := range workloads {
		base, _ := med("Benchmark"+w+"/puddle", "ns/op")
		fmt.Fprintf(out, "| %s |", w)
		for _, n := range names {
			v, ok := med("Benchmark"+w+"/"+n, "ns/op")
			if !ok {
				fmt.Fprint(out, " – |")
				continue
			}
			allocs, _ := med("Benchmark"+w+"/"+n, "allocs/op")
			fmt.Fprintf(out, " %.0f (%.2f×, %.0f allocs) |", v, v/base, allocs)
		}
		fmt.Fprintln(out)
	}

	fmt.Fprintln(out)
	fmt.Fprintln(out, "### Contended wait per acquire (16×GOMAXPROCS goroutines, 4 connections; medians over passes)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| pool | p50 | p99 | p99.9 | max | max/mean | ops spread (max/min per goroutine) |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	for _, n := range names {
		b := "BenchmarkWaitLatency/" + n
		p50, ok := med(b, "p50-ns")
		if !ok {
			continue
		}
		p99, _ := med(b, "p99-ns")
		p999, _ := med(b, "p99.9-ns")
		mx, _ := med(b, "max-ns")
		mm, _ := med(b, "max/mean")
		spread, _ := med(b, "ops-spread")
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %.1f | %.2f |\n", n, dur(p50), dur(p99), dur(p999), dur(mx), mm, spread)
	}

	fmt.Fprintln(out)
	fmt.Fprintln(out, "### Registry.With by ID against Pool.With")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| benchmark | ns/op | over Pool.With |")
	fmt.Fprintln(out, "|---|---|---|")
	base, _ := med("BenchmarkRegistryWith/pool.With", "ns/op")
	fmt.Fprintf(out, "| Pool.With | %.1f | – |\n", base)
	for _, n := range []string{"1", "100", "10000"} {
		if v, ok := med("BenchmarkRegistryWith/registry/ids="+n, "ns/op"); ok {
			fmt.Fprintf(out, "| PooledRegistry.With, %s IDs | %.1f | %+.1f ns |\n", n, v, v-base)
		}
	}

	if *scalePath != "" {
		if err := printScaling(out, *scalePath); err != nil {
			fmt.Fprintln(os.Stderr, "ratio:", err)
			os.Exit(1)
		}
	}

	if bp, ok := med("BenchmarkManagerScale", "B/pool"); ok {
		g, _ := med("BenchmarkManagerScale", "goroutines")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "### 10,000 empty pools in one Manager")
		fmt.Fprintln(out)
		fmt.Fprintf(out, "%.0f bytes of heap per pool; %.0f goroutines kept by the 10,000 pools.\n", bp, g)
	}

	if _, ok := med("BenchmarkPG/select1/c=16/pgxpool", "qps"); ok {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "### PostgreSQL (loopback server; max 8 connections per pool)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "queries per second, p50 / p99 latency. `pool` is the default `ResetSession`: it resets only what a borrower may have changed (nothing after these queries); `pool-txreset` only rolls back an open transaction, as pgxpool does; `pool-always` resets the whole session on every release (DEALLOCATE ALL, DISCARD ALL).")
		fmt.Fprintln(out)
		latencyTable(out, med, latencyRun{
			bench: "BenchmarkPG", workloads: []string{"select1", "indexed"}, firstColumn: "query",
			contenders: []string{"pool", "pool-txreset", "pool-always", "pgxpool", "sql", "nopool"},
			rate:       "qps", rateUnit: "q/s",
			ratios: []string{"pool / pgxpool: q/s, p99"},
			ratioCells: func(b string) string {
				return fmt.Sprintf(" %.2f×, %.2f× |", ratioOf(med, b, "pool", "pgxpool", "qps"), ratioOf(med, b, "pool", "pgxpool", "p99-ns"))
			},
		})
	}

	if _, ok := med("BenchmarkHooks/acquire-release/none", "ns/op"); ok {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "### What metrics cost (uncontended, ns per operation, median)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| operation | no hook | OpenTelemetry hooks (SDK, ManualReader) | Prometheus collector hooks |")
		fmt.Fprintln(out, "|---|---|---|---|")
		for _, op := range []string{"acquire-release", "with"} {
			none, _ := med("BenchmarkHooks/"+op+"/none", "ns/op")
			ot, _ := med("BenchmarkHooks/"+op+"/otel", "ns/op")
			pr, _ := med("BenchmarkHooks/"+op+"/prometheus", "ns/op")
			oa, _ := med("BenchmarkHooks/"+op+"/otel", "allocs/op")
			pa, _ := med("BenchmarkHooks/"+op+"/prometheus", "allocs/op")
			fmt.Fprintf(out, "| %s | %.0f | %.0f (%+.0f, %.0f allocs) | %.0f (%+.0f, %.0f allocs) |\n", op, none, ot, ot-none, oa, pr, pr-none, pa)
		}
	}

	if _, ok := med("BenchmarkBlob/read/c=1/pool", "rps"); ok {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "### Azure Blob (Azurite over HTTPS on loopback; pool MaxSize 8)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "requests per second, p50 / p99 latency, peak of TCP connections open at once. `read`: a 1 KiB blob; `list`: a 100-blob prefix. `pool`: the pooled connector; `shared`: one SDK client with the SDK's default transport settings; `per-request`: a new SDK client and transport per request.")
		fmt.Fprintln(out)
		latencyTable(out, med, latencyRun{
			bench: "BenchmarkBlob", workloads: []string{"read", "list"}, firstColumn: "workload",
			contenders: []string{"pool", "shared", "per-request"},
			rate:       "rps", rateUnit: "req/s", conns: true,
			ratios: []string{"pool / shared: req/s, p99", "pool / per-request req/s"},
			ratioCells: func(b string) string {
				return fmt.Sprintf(" %.2f×, %.2f× | %.2f× |", ratioOf(med, b, "pool", "shared", "rps"),
					ratioOf(med, b, "pool", "shared", "p99-ns"), ratioOf(med, b, "pool", "per-request", "rps"))
			},
		})
	}

	fmt.Fprintln(out)
	fmt.Fprintln(out, "### Targets")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| target | measured | met |")
	fmt.Fprintln(out, "|---|---|---|")
	ratio := func(w string) float64 {
		a, _ := med("Benchmark"+w+"/pool", "ns/op")
		b, _ := med("Benchmark"+w+"/puddle", "ns/op")
		return a / b
	}
	allocs, _ := med("BenchmarkSerial/pool", "allocs/op")
	check(out, "serial ≤ 0.5× puddle, 0 allocs", fmt.Sprintf("%.2f×, %.0f allocs", ratio("Serial"), allocs), ratio("Serial") <= 0.5 && allocs == 0)
	check(out, "parallel uncontended ≤ 0.5× puddle", fmt.Sprintf("%.2f×", ratio("Parallel")), ratio("Parallel") <= 0.5)
	check(out, "parallel contended ≤ 0.7× puddle", fmt.Sprintf("%.2f×", ratio("Contended")), ratio("Contended") <= 0.7)
	check(out, "with ctx timeout ≤ 0.8× puddle", fmt.Sprintf("%.2f×", ratio("ContendedTimeout")), ratio("ContendedTimeout") <= 0.8)
	p99, _ := med("BenchmarkWaitLatency/pool", "p99-ns")
	sp99, _ := med("BenchmarkWaitLatency/smartconnpool", "p99-ns")
	mm, _ := med("BenchmarkWaitLatency/pool", "max/mean")
	check(out, "contended p99 wait ≤ smartconnpool's", fmt.Sprintf("%s vs %s", dur(p99), dur(sp99)), p99 <= sp99)
	check(out, "contended max wait ≤ 3× mean", fmt.Sprintf("%.1f×", mm), mm <= 3)
	reg, _ := med("BenchmarkRegistryWith/registry/ids=10000", "ns/op")
	check(out, "registry With ≤ 25 ns over Pool.With at 10,000 IDs", fmt.Sprintf("%+.1f ns", reg-base), reg-base <= 25)
	if bp, ok := med("BenchmarkManagerScale", "B/pool"); ok {
		g, _ := med("BenchmarkManagerScale", "goroutines")
		check(out, "10,000 pools: O(1) goroutines, ≤ 4 KiB per empty pool", fmt.Sprintf("%.0f goroutines, %.0f B/pool", g, bp), g <= 2 && bp <= 4096)
	}
	for _, q := range []string{"select1", "indexed"} {
		for _, c := range []string{"16", "64"} {
			b := "BenchmarkPG/" + q + "/c=" + c + "/"
			a, ok := med(b+"pool", "qps")
			if !ok {
				continue
			}
			x, _ := med(b+"pgxpool", "qps")
			ap, _ := med(b+"pool", "p99-ns")
			xp, _ := med(b+"pgxpool", "p99-ns")
			check(out, fmt.Sprintf("PostgreSQL, %s, %s clients: pool (default reset) ≥ 0.9× pgxpool q/s, p99 ≤ 1.1×", q, c),
				fmt.Sprintf("%.2f×, p99 %s vs %s (%.2f×)", a/x, dur(ap), dur(xp), ap/xp), a/x >= 0.9 && ap <= 1.1*xp)
		}
	}
	blobChecks(out, med)
}

// latencyRun describes a table of a load benchmark named
// bench/<workload>/c=<clients>/<contender>: per contender the rate, p50
// and p99 (and the peak of connections, if conns), then ratio columns.
type latencyRun struct {
	bench, firstColumn string
	workloads          []string
	contenders         []string
	rate, rateUnit     string
	conns              bool
	ratios             []string              // the ratio columns' headers
	ratioCells         func(b string) string // the ratio cells, given "bench/workload/c=N/"
}

func latencyTable(out io.Writer, med func(bench, unit string) (float64, bool), r latencyRun) {
	fmt.Fprintf(out, "| %s | clients | %s | %s |\n", r.firstColumn, strings.Join(r.contenders, " | "), strings.Join(r.ratios, " | "))
	fmt.Fprintf(out, "|---|---|%s\n", strings.Repeat("---|", len(r.contenders)+len(r.ratios)))
	for _, w := range r.workloads {
		for _, c := range []string{"1", "16", "64"} {
			prefix := r.bench + "/" + w + "/c=" + c + "/"
			fmt.Fprintf(out, "| %s | %s |", w, c)
			for _, n := range r.contenders {
				rate, ok := med(prefix+n, r.rate)
				if !ok {
					fmt.Fprint(out, " – |")
					continue
				}
				p50, _ := med(prefix+n, "p50-ns")
				p99, _ := med(prefix+n, "p99-ns")
				fmt.Fprintf(out, " %.0f %s, %s / %s", rate, r.rateUnit, dur(p50), dur(p99))
				if r.conns {
					conns, _ := med(prefix+n, "peak-conns")
					fmt.Fprintf(out, ", %.0f conns", conns)
				}
				fmt.Fprint(out, " |")
			}
			fmt.Fprintln(out, r.ratioCells(prefix))
		}
	}
}

// ratioOf is a's median of unit over b's, both under prefix.
func ratioOf(med func(bench, unit string) (float64, bool), prefix, a, b, unit string) float64 {
	x, _ := med(prefix+a, unit)
	y, _ := med(prefix+b, unit)
	return x / y
}

// blobChecks adds the targets of the Blob benchmark, if it ran.
func blobChecks(out io.Writer, med func(bench, unit string) (float64, bool)) {
	for _, w := range []string{"read", "list"} {
		for _, c := range []string{"1", "16", "64"} {
			b := "BenchmarkBlob/" + w + "/c=" + c + "/"
			a, ok := med(b+"pool", "rps")
			if !ok {
				continue
			}
			sh, _ := med(b+"shared", "rps")
			pr, _ := med(b+"per-request", "rps")
			conns, _ := med(b+"pool", "peak-conns")
			check(out, fmt.Sprintf("Blob, %s, %s clients: pool ≥ 0.95× shared client req/s, ≤ 8 connections", w, c),
				fmt.Sprintf("%.2f×, %.0f conns", a/sh, conns), a >= 0.95*sh && conns <= 8)
			check(out, fmt.Sprintf("Blob, %s, %s clients: pool ≥ 5× client per request", w, c),
				fmt.Sprintf("%.2f×", a/pr), a >= 5*pr)
			if c == "64" {
				ap, _ := med(b+"pool", "p99-ns")
				sp, _ := med(b+"shared", "p99-ns")
				check(out, fmt.Sprintf("Blob, %s, 64 clients: pool p99 ≤ shared client's", w),
					fmt.Sprintf("%s vs %s", dur(ap), dur(sp)), ap <= sp)
			}
		}
	}
}

func check(w io.Writer, target, measured string, ok bool) {
	mark := "no"
	if ok {
		mark = "yes"
	}
	fmt.Fprintf(w, "| %s | %s | %s |\n", target, measured, mark)
}

func dur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func parse(r io.Reader) (map[key][]float64, error) {
	samples := map[key][]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(m[2])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			k := key{m[1], fields[i+1]}
			samples[k] = append(samples[k], v)
		}
	}
	return samples, sc.Err()
}

// scaleLine matches "BenchmarkParallel/pool-2  123  45.6 ns/op"; no
// suffix means -cpu 1.
var scaleLine = regexp.MustCompile(`^BenchmarkParallel/(\S+?)(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op`)

// printScaling prints operations per second of the uncontended parallel
// workload at each -cpu value, medians over passes.
func printScaling(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ns := map[string]map[int][]float64{}
	var names []string
	cpus := map[int]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := scaleLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		cpu := 1
		if m[2] != "" {
			cpu, _ = strconv.Atoi(m[2])
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		if ns[m[1]] == nil {
			ns[m[1]] = map[int][]float64{}
			names = append(names, m[1])
		}
		ns[m[1]][cpu] = append(ns[m[1]][cpu], v)
		cpus[cpu] = true
	}
	var cs []int
	for c := range cpus {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	if len(cs) == 0 {
		return sc.Err()
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "### Scaling with cores (parallel uncontended, 64 connections; million Acquire+Release per second, median of 3)")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| pool |")
	for _, c := range cs {
		fmt.Fprintf(w, " -cpu %d |", c)
	}
	fmt.Fprintf(w, " %d cores / 1 |\n|---|%s---|\n", cs[len(cs)-1], strings.Repeat("---|", len(cs)))
	for _, n := range names {
		fmt.Fprintf(w, "| %s |", n)
		var first, last float64
		for i, c := range cs {
			v := slices.Clone(ns[n][c])
			slices.Sort(v)
			if len(v) == 0 {
				fmt.Fprint(w, " – |")
				continue
			}
			mops := 1e3 / v[len(v)/2]
			if i == 0 {
				first = mops
			}
			last = mops
			fmt.Fprintf(w, " %.2f |", mops)
		}
		fmt.Fprintf(w, " %.2f× |\n", last/first)
	}
	return sc.Err()
}
