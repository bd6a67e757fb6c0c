// Command fleet measures pools that share one PostgreSQL server: many
// tenant sources, a connection budget, priorities, live resizing and
// replicas that meet at the server's own limit. It runs against a real
// server (PG_DSN, or -dsn), under a role of its own whose CONNECTION LIMIT
// protects the server's other users, and samples pg_stat_activity every
// 100 ms for the role's connections.
//
//	go run . -seconds 20 -out ../../docs/fleet.png   # make fleet: the full run
//	go run . -seconds 3 -out ''                       # the short run under .ci/run
//
// Scenarios (-scenarios, comma-separated; default all):
//
//	skew      100 tenants with a schema each in one database (search_path
//	          and a setting in each DSN), Zipf(1.1) demand at twice the
//	          capacity of 40 connections, lognormal holds (median 40 ms):
//	          a Budget of 40 (sharing connections, and not), 100 plain
//	          pools, and one FIFO semaphore of 40 in front of them; every
//	          request checks that it read its own tenant's row and setting
//	skewdb    the same load on a database per tenant: a Budget of 40, and
//	          100 plain pools
//	wake      99 tenants saturate 40 connections; tenant 100 (MinSize 2)
//	          starts: the time to its first connection
//	flood     20 interactive tenants, and 5 batch tenants at 10 times the
//	          budget: the interactive wait with and without the flood
//	resize    the skew load while Budget.SetLimit goes 40, 10, 60
//	replicas  4 processes of 100 Adaptive tenant pools each, behind a role
//	          limited to 40 connections
//
// It prints a Markdown report; -out writes a chart of the server's
// connections over time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"
)

type options struct {
	dsn       string
	seconds   time.Duration
	scenarios []string
	out       string
	replica   bool // run as one replica of the replicas scenario
}

var allScenarios = []string{"skew", "skewdb", "wake", "flood", "resize", "replicas"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var scen string
	fs.StringVar(&o.dsn, "dsn", os.Getenv("PG_DSN"), "PostgreSQL DSN of a superuser (it creates and drops a role); default $PG_DSN")
	fs.DurationVar(&o.seconds, "seconds", 20*time.Second, "how long each run of each scenario lasts (a bare number is seconds)")
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "scenarios to run, comma-separated")
	fs.StringVar(&o.out, "out", "", "chart of the server's connections to write (.png or .svg); empty for none")
	fs.BoolVar(&o.replica, "replica", false, "internal: run as one replica process")
	fs.Float64Var(&loadFactor, "load", loadFactor, "the skew scenario's demand, in multiples of what the budget serves")
	// -seconds 3 reads as 3 s.
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "-seconds="); ok && !strings.ContainsAny(v, "smh") {
			args[i] = "-seconds=" + v + "s"
		}
		if a == "-seconds" && i+1 < len(args) && !strings.ContainsAny(args[i+1], "smh") {
			args[i+1] += "s"
		}
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.dsn == "" {
		return o, errors.New("no server: set PG_DSN or pass -dsn")
	}
	if o.seconds < time.Second {
		return o, fmt.Errorf("-seconds must be at least 1s, got %v", o.seconds)
	}
	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return o, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fleet:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.replica {
		rep, err := runReplica(ctx, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet replica:", err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(rep)
		return
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}
