package main

import (
	"fmt"
	"os"
	"strings"

	chart "github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"
)

// writeChart draws requests per second (left axis, solid) and p99 latency
// in milliseconds (right axis, dashed) against concurrency, one colour per
// mode, to an SVG or PNG file.
func writeChart(path string, results []result) error {
	byMode := map[string][]result{}
	var modes []string
	for _, r := range results {
		if _, ok := byMode[r.mode]; !ok {
			modes = append(modes, r.mode)
		}
		byMode[r.mode] = append(byMode[r.mode], r)
	}
	colors := map[string]drawing.Color{
		"unpooled": drawing.ColorRed,
		"pool":     drawing.ColorBlue,
	}
	var series []chart.Series
	var ticks []chart.Tick
	for _, r := range byMode[modes[0]] {
		ticks = append(ticks, chart.Tick{Value: float64(r.clients), Label: fmt.Sprint(r.clients)})
	}
	for _, m := range modes {
		var xs, rps, p99 []float64
		for _, r := range byMode[m] {
			xs = append(xs, float64(r.clients))
			rps = append(rps, r.rps())
			p99 = append(p99, float64(r.p99.Microseconds())/1000)
		}
		col, ok := colors[m]
		if !ok {
			col = drawing.ColorBlack
		}
		series = append(series,
			chart.ContinuousSeries{
				Name:    m + " req/s",
				XValues: xs, YValues: rps,
				Style: chart.Style{StrokeColor: col, StrokeWidth: 2, DotWidth: 3, DotColor: col},
			},
			chart.ContinuousSeries{
				Name:    m + " p99 ms",
				YAxis:   chart.YAxisSecondary,
				XValues: xs, YValues: p99,
				Style: chart.Style{StrokeColor: col, StrokeWidth: 2, StrokeDashArray: []float64{6, 4}},
			},
		)
	}
	graph := chart.Chart{
		Title:      "poolbench: pooled vs unpooled",
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 20, Right: 20, Bottom: 20}},
		XAxis:      chart.XAxis{Name: "concurrent clients", Ticks: ticks},
		YAxis:      chart.YAxis{Name: "requests per second"},
		YAxisSecondary: chart.YAxis{
			Name: "p99 latency (ms)",
		},
		Series: series,
	}
	graph.Elements = []chart.Renderable{chart.LegendThin(&graph)}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	render := chart.PNG
	if strings.HasSuffix(path, ".svg") {
		render = chart.SVG
	}
	if err := graph.Render(render, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
