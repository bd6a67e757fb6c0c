package main

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// writeChart draws, for each report with series, the server's connections
// over time, one panel per report, side by side.
func writeChart(path string, reports []*report) error {
	var panels []*plot.Plot
	for _, r := range reports {
		if len(r.series) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = shortTitle(r.title)
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = "server connections"
		p.Legend.Top = false // bottom right, below the lines at their plateau
		p.Y.Min = 0
		names := make([]string, 0, len(r.series))
		for name := range r.series {
			names = append(names, name)
		}
		slices.Sort(names)
		for i, name := range names {
			l, err := plotter.NewLine(points(r.series[name]))
			if err != nil {
				return err
			}
			l.Color = palette[i%len(palette)]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(name, l)
		}
		if len(r.limits) > 0 {
			l, err := plotter.NewLine(points(r.limits))
			if err != nil {
				return err
			}
			l.Color = color.Black
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			p.Legend.Add("the budget's limit", l)
		}
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return nil
	}
	const w, h = 5 * vg.Inch, 3.6 * vg.Inch
	img := vgimg.New(w*vg.Length(len(panels)), h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{panels}, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[0][i])
	}
	f, err := createFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	png := vgimg.PngCanvas{Canvas: img}
	if _, err := png.WriteTo(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func points(ss []sample) plotter.XYs {
	xy := make(plotter.XYs, len(ss))
	for i, s := range ss {
		xy[i].X, xy[i].Y = s.at.Seconds(), float64(s.n)
	}
	return xy
}

func shortTitle(t string) string {
	for i, r := range t {
		if r == ':' {
			return t[:i]
		}
	}
	return t
}
