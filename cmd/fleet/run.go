package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// run runs the scenarios in order and prints their reports.
func run(ctx context.Context, o options, w io.Writer) error {
	s, err := openServer(ctx, o.dsn)
	if err != nil {
		return err
	}
	defer s.close()
	scenarios := map[string]func(context.Context, *server, options) (*report, error){
		"skew": func(ctx context.Context, s *server, o options) (*report, error) {
			return skew(ctx, s, o, layoutSchemas)
		},
		"skewdb": func(ctx context.Context, s *server, o options) (*report, error) {
			return skew(ctx, s, o, layoutDatabases)
		},
		"wake": wake, "flood": flood, "resize": resize, "replicas": replicasScenario,
	}
	var reports []*report
	fmt.Fprintf(w, "# fleet: %v per run, role %s\n\n", o.seconds, s.role)
	for _, name := range o.scenarios {
		start := time.Now()
		r, err := scenarios[name](ctx, s, o)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		printReport(w, r)
		fmt.Fprintf(w, "(%s took %v)\n\n", name, time.Since(start).Round(time.Second))
		reports = append(reports, r)
	}
	if o.out != "" {
		if err := writeChart(o.out, reports); err != nil {
			return err
		}
		fmt.Fprintf(w, "chart: %s\n", o.out)
	}
	return nil
}

func printReport(w io.Writer, r *report) {
	fmt.Fprintf(w, "## %s\n\n", r.title)
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(r.header, " | "), strings.Repeat("---|", len(r.header)))
	for _, row := range r.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	for _, n := range r.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
	}
}
