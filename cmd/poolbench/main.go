// Command poolbench shows what pooling buys. It starts an embedded data
// source (a loopback TLS server with an authentication round trip, so a
// connection costs what it costs in life and a query is cheap), registers
// several source IDs in a pool.PooledRegistry, and drives the same load
// twice at each concurrency level: connecting per request, and through the
// pool. It prints requests per second, latency percentiles, connections
// opened and errors, and writes a chart of throughput and latency against
// concurrency.
//
//	go run ./cmd/poolbench                     # about a minute
//	go run ./cmd/poolbench -duration 2s -c 1,16 -out chart.png
//	go run ./cmd/poolbench -blob -c 1,16,64   # Azure Blob on Azurite
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"
)

type options struct {
	duration time.Duration
	levels   []int
	sources  int
	poolSize int
	out      string
	dsn      string
	blob     bool
	progress bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("poolbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var levels string
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long each load runs, per concurrency level and mode")
	fs.StringVar(&levels, "c", "1,8,32,64", "comma-separated concurrency levels (number of concurrent clients)")
	fs.IntVar(&o.sources, "sources", 4, "number of data-source IDs registered")
	fs.IntVar(&o.poolSize, "pool-size", 8, "MaxSize of each source's pool")
	fs.StringVar(&o.out, "out", "poolbench.png", "chart to write (.png or .svg); the wait-time chart goes beside it with -wait before the extension; empty for none")
	fs.StringVar(&o.dsn, "dsn", "", "run against PostgreSQL at this DSN instead of the embedded server (see the postgres module)")
	fs.BoolVar(&o.blob, "blob", false, "benchmark Azure Blob Storage (Azurite, from AZURITE_CONNECTION_STRING) instead: pooled connector, shared SDK client, client per request")
	fs.BoolVar(&o.progress, "progress", true, "show a progress bar when stderr is a terminal (otherwise one line per finished run)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: poolbench [flags]\n\nRuns the same load without a pool and with pool, and compares them.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var errs []error
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("-duration must be positive, got %v", o.duration))
	}
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			errs = append(errs, fmt.Errorf("-c: %q is not a concurrency level between 1 and 4096", f))
			continue
		}
		o.levels = append(o.levels, n)
	}
	slices.Sort(o.levels)
	o.levels = slices.Compact(o.levels)
	if o.sources < 1 {
		errs = append(errs, fmt.Errorf("-sources must be at least 1, got %d", o.sources))
	}
	if o.poolSize < 1 {
		errs = append(errs, fmt.Errorf("-pool-size must be at least 1, got %d", o.poolSize))
	}
	if o.blob && o.dsn != "" {
		errs = append(errs, errors.New("-blob and -dsn are different benchmarks; give one"))
	}
	if o.out != "" && !strings.HasSuffix(o.out, ".svg") && !strings.HasSuffix(o.out, ".png") {
		errs = append(errs, fmt.Errorf("-out must end in .svg or .png, got %q", o.out))
	}
	return o, errors.Join(errs...)
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolbench: %v\nRun 'poolbench -h' for the flags.\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	runner := run
	if o.blob {
		runner = runBlob
	}
	if err := runner(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "poolbench: %v\n", err)
		os.Exit(1)
	}
}
