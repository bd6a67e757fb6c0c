package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsRejectsBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-duration", "0s"}, "-duration must be positive"},
		{[]string{"-c", "1,x"}, `"x" is not a concurrency level`},
		{[]string{"-c", "0"}, `"0" is not a concurrency level`},
		{[]string{"-sources", "0"}, "-sources must be at least 1"},
		{[]string{"-pool-size", "-3"}, "-pool-size must be at least 1"},
		{[]string{"-out", "chart.jpg"}, "-out must end in .svg or .png"},
		{[]string{"-blob", "-dsn", "postgres://x"}, "different benchmarks"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
	o, err := parseFlags([]string{"-c", "8, 1,8"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.levels) != 2 || o.levels[0] != 1 || o.levels[1] != 8 {
		t.Errorf("levels = %v, want [1 8]", o.levels)
	}
}

// A short run end to end: both modes at two levels, no errors, the pool
// opens at most sources × pool size connections, and the chart is written.
func TestRunEmbedded(t *testing.T) {
	testRun(t, "")
}

// The same against PostgreSQL through the adapter, with -dsn.
func TestRunPostgres(t *testing.T) {
	dsn := os.Getenv("PG_DSN")
	if dsn == "" {
		t.Skip("PG_DSN is not set; set it to a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, to run this test")
	}
	testRun(t, dsn)
}

func testRun(t *testing.T, dsn string) {
	dir := t.TempDir()
	o := options{
		dsn:      dsn,
		duration: 300 * time.Millisecond,
		levels:   []int{1, 8},
		sources:  2,
		poolSize: 2,
		out:      filepath.Join(dir, "chart.svg"),
	}
	var out, stderr bytes.Buffer
	if err := run(context.Background(), o, &out, &stderr); err != nil {
		t.Fatal(err)
	}
	// Not a terminal: no progress bar, one line per finished run.
	if got := strings.Count(stderr.String(), "\n"); got != 4 || strings.Contains(stderr.String(), "\r") {
		t.Errorf("stderr is not one line per run:\n%q", stderr.String())
	}
	text := out.String()
	var pooledOpened, unpooledOpened, rows int
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 8 || (f[0] != "pool" && f[0] != "unpooled") {
			continue
		}
		rows++
		if f[7] != "0" {
			t.Errorf("errors in row %q", line)
		}
		n := atoi(t, f[6])
		if f[0] == "pool" {
			pooledOpened += n
		} else {
			unpooledOpened += n
		}
	}
	if rows != 4 {
		t.Fatalf("want 4 result rows, got %d in:\n%s", rows, text)
	}
	if pooledOpened < 1 || pooledOpened > o.sources*o.poolSize {
		t.Errorf("pool opened %d connections, want 1..%d", pooledOpened, o.sources*o.poolSize)
	}
	if unpooledOpened <= pooledOpened {
		t.Errorf("unpooled opened %d connections, pooled %d: connect-per-request should open more", unpooledOpened, pooledOpened)
	}
	main, wait := chartPaths(o.out)
	for path, says := range map[string]string{main: "Throughput", wait: "Time to get a connection, 8 concurrent clients"} {
		svg, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"<svg", says, "unpooled", "pool"} {
			if !bytes.Contains(svg, []byte(want)) {
				t.Errorf("%s: no %q in the SVG", path, want)
			}
		}
	}
	if !strings.Contains(text, "charts written to "+main) || !strings.Contains(text, wait) {
		t.Errorf("the output does not say where the charts went:\n%s", text)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// -blob runs every client kind on both workloads against Azurite and
// prints one row each; the pooled one stays within -pool-size connections.
func TestRunBlob(t *testing.T) {
	if os.Getenv("AZURITE_CONNECTION_STRING") == "" {
		t.Skip("AZURITE_CONNECTION_STRING is not set; set it for an Azurite over HTTPS to run this test (.ci/services.sh starts one, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
	o, err := parseFlags([]string{"-blob", "-c", "1,4", "-duration", "200ms", "-pool-size", "2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := runBlob(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	rows := 0
	for _, line := range strings.Split(stdout.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 7 || (f[0] != "read" && f[0] != "list") {
			continue
		}
		rows++
		if f[3] == "0" {
			t.Errorf("no requests served: %s", line)
		}
		if f[2] == "pool" && f[6] != "1" && f[6] != "2" {
			t.Errorf("pooled client opened more than -pool-size connections: %s", line)
		}
	}
	if rows != 2*2*3 {
		t.Errorf("%d rows, want 12:\n%s", rows, stdout.String())
	}
	if _, err := parseFlags([]string{"-blob", "-dsn", "postgres://x"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "different benchmarks") {
		t.Errorf("-blob with -dsn: %v", err)
	}
}

// The axes' labels read like "2k" and "1 ms", and the charts' paths are
// given relative to the working directory.
func TestLabelsAndPaths(t *testing.T) {
	for v, want := range map[float64]string{500: "500", 2000: "2k", 60000: "60k", 1.5e6: "1.5M"} {
		if got := siCount(v); got != want {
			t.Errorf("siCount(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{1e-3: "1 ms", 5e-4: "500 µs", 2: "2 s", 1e-7: "100 ns"} {
		if got := durationLabel(v); got != want {
			t.Errorf("durationLabel(%v) = %q, want %q", v, got, want)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got := relative(filepath.Join(wd, "docs", "x.png")); got != filepath.Join("docs", "x.png") {
		t.Errorf("relative = %q", got)
	}
	if got := relative("/elsewhere/x.png"); got != "/elsewhere/x.png" {
		t.Errorf("relative outside the working directory = %q", got)
	}
	m, w := chartPaths("docs/poolbench.png")
	if m != "docs/poolbench.png" || w != "docs/poolbench-wait.png" {
		t.Errorf("chartPaths = %q, %q", m, w)
	}
}

// The table says "1 client", and says why a warm pool opened nothing.
func TestTableWords(t *testing.T) {
	if got := plural(1, "client"); got != "1 client" {
		t.Errorf("plural(1) = %q", got)
	}
	if got := plural(16, "client"); got != "16 clients" {
		t.Errorf("plural(16) = %q", got)
	}
	const why = "0 means every request reused one already open"
	var b strings.Builder
	printTable(&b, []result{
		{mode: "no pool", clients: 1, requests: 10, elapsed: time.Second, opened: 10},
		{mode: "pool", clients: 1, requests: 50, elapsed: time.Second, opened: 0},
	})
	if !strings.Contains(b.String(), why) {
		t.Errorf("a pool that opened nothing is not explained:\n%s", b.String())
	}
	b.Reset()
	printTable(&b, []result{{mode: "pool", clients: 1, requests: 50, elapsed: time.Second, opened: 3}})
	if strings.Contains(b.String(), why) {
		t.Errorf("explained a zero that is not there:\n%s", b.String())
	}
}
