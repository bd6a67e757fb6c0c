package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The colours of the modes, and a neutral one for the legend's line kinds.
var (
	modeColor = map[string]color.Color{
		"unpooled": color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
		"pool":     color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	}
	grey   = color.Gray{Y: 0x60}
	dashed = []vg.Length{vg.Points(6), vg.Points(4)}
)

func init() {
	// One family of type throughout, the sans-serif of the title.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
}

// chartPaths returns where the charts of out go: out itself for
// throughput and latency, and out with "-wait" before its extension for
// the wait-time distribution.
func chartPaths(out string) (main, wait string) {
	ext := filepath.Ext(out)
	return out, strings.TrimSuffix(out, ext) + "-wait" + ext
}

// writeCharts draws the two pictures of a run: throughput and latency
// against concurrency, in two panels, and the distribution of wait times
// at the highest concurrency.
func writeCharts(out, describe string, results []result) error {
	main, wait := chartPaths(out)
	if err := writeMainChart(main, describe, results); err != nil {
		return err
	}
	return writeWaitChart(wait, results)
}

// byMode splits results by mode, in first-seen order.
func byMode(results []result) ([]string, map[string][]result) {
	var modes []string
	m := map[string][]result{}
	for _, r := range results {
		if _, ok := m[r.mode]; !ok {
			modes = append(modes, r.mode)
		}
		m[r.mode] = append(m[r.mode], r)
	}
	return modes, m
}

func writeMainChart(path, describe string, results []result) error {
	modes, rs := byMode(results)
	var levels []float64
	for _, r := range rs[modes[0]] {
		levels = append(levels, float64(r.clients))
	}

	tput := newPanel("Throughput", "concurrent clients (log scale)", "requests per second (log scale)")
	lat := newPanel("Latency: p50 solid, p99 dashed", "concurrent clients (log scale)", "latency per request (log scale)")
	tput.X.Tick.Marker, lat.X.Tick.Marker = levelTicks(levels), levelTicks(levels)
	tput.Y.Tick.Marker = logTicks{format: siCount}
	lat.Y.Tick.Marker = logTicks{format: durationLabel}

	legend := newLegend()
	for _, m := range modes {
		var rps, p50, p99 plotter.XYs
		for _, r := range rs[m] {
			x := float64(r.clients)
			if r.rps() > 0 {
				rps = append(rps, plotter.XY{X: x, Y: r.rps()})
			}
			if r.p50 > 0 {
				p50 = append(p50, plotter.XY{X: x, Y: r.p50.Seconds()})
				p99 = append(p99, plotter.XY{X: x, Y: r.p99.Seconds()})
			}
		}
		col := colorOf(m)
		line, points, err := plotter.NewLinePoints(rps)
		if err != nil {
			return err
		}
		styleLine(line, points, col, nil)
		tput.Add(line, points)
		legend.Add(m, line, points)
		for i, xys := range []plotter.XYs{p50, p99} {
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			var dash []vg.Length
			if i == 1 {
				dash = dashed
			}
			styleLine(l, pts, col, dash)
			lat.Add(l, pts)
		}
	}
	p50Key, _ := plotter.NewLine(plotter.XYs{})
	p50Key.LineStyle = draw.LineStyle{Color: grey, Width: vg.Points(2)}
	p99Key, _ := plotter.NewLine(plotter.XYs{})
	p99Key.LineStyle = draw.LineStyle{Color: grey, Width: vg.Points(2), Dashes: dashed}
	legend.Add("p50", p50Key)
	legend.Add("p99", p99Key)
	for _, p := range []*plot.Plot{tput, lat} {
		padLog(&p.Y)
		p.X.Min, p.X.Max = levels[0]/1.3, levels[len(levels)-1]*1.3
	}

	title := "poolbench: the same load connecting per request (unpooled) and through pool"
	return render(path, 12*vg.Inch, 5*vg.Inch, title, describe, legend, []*plot.Plot{tput, lat})
}

func writeWaitChart(path string, results []result) error {
	modes, rs := byMode(results)
	clients := 0
	for _, r := range results {
		clients = max(clients, r.clients)
	}
	p := newPanel(fmt.Sprintf("Time to get a connection, %d concurrent clients", clients),
		"wait: dial (unpooled) or acquire (pool), log scale", "share of requests that waited at most this long")
	p.X.Tick.Marker = logTicks{format: durationLabel}
	p.Y.Min, p.Y.Max = 0, 1
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{
		{Value: 0, Label: "0"}, {Value: 0.25, Label: "25%"}, {Value: 0.5, Label: "50%"},
		{Value: 0.75, Label: "75%"}, {Value: 1, Label: "100%"},
	})
	p.Y.Scale = plot.LinearScale{}
	legend := newLegend()
	lo, hi := math.Inf(1), 0.0
	for _, m := range modes {
		var waits []time.Duration
		for _, r := range rs[m] {
			if r.clients == clients {
				waits = r.waits
			}
		}
		xys := cdf(waits)
		if len(xys) == 0 {
			continue
		}
		lo, hi = min(lo, xys[0].X), max(hi, xys[len(xys)-1].X)
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.LineStyle = draw.LineStyle{Color: colorOf(m), Width: vg.Points(2.5)}
		p.Add(line)
		legend.Add(m, line)
	}
	if hi == 0 {
		return fmt.Errorf("no wait times at %d clients", clients)
	}
	p.X.Min, p.X.Max = lo/1.5, hi*1.5
	title := "poolbench: how long a request waits for its connection"
	return render(path, 9*vg.Inch, 5*vg.Inch, title, "", legend, []*plot.Plot{p})
}

// cdf turns sorted waits into at most 400 points of the empirical
// distribution, every one above zero (the axis is logarithmic).
func cdf(waits []time.Duration) plotter.XYs {
	n := len(waits)
	if n == 0 {
		return nil
	}
	step := max(1, n/400)
	var xys plotter.XYs
	for i := 0; i < n; i += step {
		xys = append(xys, plotter.XY{X: max(waits[i].Seconds(), 1e-7), Y: float64(i+1) / float64(n)})
	}
	xys = append(xys, plotter.XY{X: max(waits[n-1].Seconds(), 1e-7), Y: 1})
	return xys
}

func newPanel(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Add(plotter.NewGrid())
	return p
}

// key is a legend laid out in one row, in a strip of its own.
type key struct {
	entries []keyEntry
}

type keyEntry struct {
	name   string
	thumbs []plot.Thumbnailer
}

func newLegend() *key { return &key{} }

// Add adds an entry drawn with thumbs.
func (k *key) Add(name string, thumbs ...plot.Thumbnailer) {
	k.entries = append(k.entries, keyEntry{name, thumbs})
}

// legendFor returns a gonum legend of one entry.
func legendFor(e keyEntry) plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font.Size = vg.Points(12)
	l.ThumbnailWidth = vg.Points(30)
	l.Left = true
	l.Add(e.name, e.thumbs...)
	return l
}

func styleLine(l *plotter.Line, s *plotter.Scatter, c color.Color, dashes []vg.Length) {
	l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(2), Dashes: dashes}
	s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3), Shape: draw.CircleGlyph{}}
}

func colorOf(mode string) color.Color {
	if c, ok := modeColor[mode]; ok {
		return c
	}
	return color.Black
}

// padLog widens a log axis by half a step each way, so that no point sits
// on the frame.
func padLog(a *plot.Axis) {
	if a.Min > 0 {
		a.Min /= 1.5
	}
	a.Max *= 1.5
}

// render lays out a title on top, the panels side by side, and the legend
// in a strip of its own at the bottom, where it covers no data.
func render(path string, w, h vg.Length, title, subtitle string, legend *key, panels []*plot.Plot) error {
	format := strings.TrimPrefix(filepath.Ext(path), ".")
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	white := draw.Canvas{Canvas: dc.Canvas, Rectangle: dc.Rectangle}
	white.SetColor(color.White)
	white.Fill(white.Rectangle.Path())

	titleH, legendH := vg.Points(44), vg.Points(30)
	if subtitle == "" {
		titleH = vg.Points(30)
	}
	sty := text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(16)), Handler: plot.DefaultTextHandler,
		XAlign: draw.XCenter, YAlign: draw.YTop}
	sty.Font.Variant = "Sans"
	top := vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - vg.Points(6)}
	dc.FillText(sty, top, title)
	if subtitle != "" {
		sub := sty
		sub.Font.Size = vg.Points(11)
		sub.Color = grey
		dc.FillText(sub, vg.Point{X: top.X, Y: top.Y - vg.Points(22)}, subtitle)
	}

	body := dc
	body.Max.Y -= titleH
	body.Min.Y += legendH
	tiles := draw.Tiles{Cols: len(panels), Rows: 1, PadX: vg.Points(30), PadLeft: vg.Points(6), PadRight: vg.Points(12)}
	for i, p := range panels {
		p.Draw(tiles.At(body, i, 0))
	}

	// The legend, centred in its strip.
	strip := dc
	strip.Max.Y = dc.Min.Y + legendH
	widths := make([]vg.Length, len(legend.entries))
	var width vg.Length
	for i, e := range legend.entries {
		l := legendFor(e)
		widths[i] = l.ThumbnailWidth + l.TextStyle.Rectangle(e.name).Size().X + vg.Points(28)
		width += widths[i]
	}
	x := (strip.Min.X+strip.Max.X)/2 - width/2
	for i, e := range legend.entries {
		cell := strip
		cell.Min.X, cell.Max.X = x, x+widths[i]
		cell.Min.Y += vg.Points(6)
		cell.Max.Y -= vg.Points(6)
		l := legendFor(e)
		l.Draw(cell)
		x += widths[i]
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// levelTicks labels exactly the concurrency levels run.
func levelTicks(levels []float64) plot.Ticker {
	var ticks []plot.Tick
	for _, l := range levels {
		ticks = append(ticks, plot.Tick{Value: l, Label: strconv.FormatFloat(l, 'f', -1, 64)})
	}
	return plot.ConstantTicks(ticks)
}

// logTicks puts labelled ticks at 1, 2 and 5 times the powers of ten
// within the axis (at the powers of ten alone over more than three
// decades), labelled by format, and unlabelled ones at the other integers.
type logTicks struct{ format func(float64) string }

func (t logTicks) Ticks(lo, hi float64) []plot.Tick {
	// Over more than three decades, 2 and 5 would crowd the labels.
	wide := math.Log10(hi)-math.Log10(lo) > 3
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1.0; m < 10; m++ {
			v := m * base
			if v < lo || v > hi {
				continue
			}
			label := ""
			if m == 1 || (!wide && (m == 2 || m == 5)) {
				label = t.format(v)
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: label})
		}
	}
	return ticks
}

// siCount labels a count: 500, 2k, 60k, 1.5M.
func siCount(v float64) string {
	switch {
	case v >= 1e6:
		return trim(v/1e6) + "M"
	case v >= 1e3:
		return trim(v/1e3) + "k"
	}
	return trim(v)
}

// durationLabel labels seconds: 500 µs, 1 ms, 2 s.
func durationLabel(v float64) string {
	switch {
	case v >= 1:
		return trim(v) + " s"
	case v >= 1e-3:
		return trim(v*1e3) + " ms"
	case v >= 1e-6:
		return trim(v*1e6) + " µs"
	}
	return trim(v*1e9) + " ns"
}

func trim(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }
