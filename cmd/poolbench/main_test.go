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
		t.Skip("PG_DSN is not set; run `bash .ci/run`, or set PG_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
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
	var out bytes.Buffer
	if err := run(context.Background(), o, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
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
	svg, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("pool req/s")) {
		t.Errorf("chart is not an SVG with the pool series")
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
		t.Skip(`AZURITE_CONNECTION_STRING is not set; run bash .ci/run, or eval "$(bash .ci/services.sh)" from the repository root first`)
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
