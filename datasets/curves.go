package datasets

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"strconv"

	"gocv.io/x/gocv"
)

// Series is one line of a chart: the points (X[i], Y[i]); a NaN Y leaves a
// gap (an epoch without that metric).
type Series struct {
	Name  string
	X, Y  []float64
	Color [3]uint8 // RGB; a colour too light to see on white is darkened
}

// Panel is one chart: a title and its lines on shared axes.
type Panel struct {
	Title  string
	XLabel string
	Series []Series
	// LogY draws the y axis in powers of ten (for a loss that falls by
	// orders of magnitude); it needs every value positive, else the axis
	// stays linear.
	LogY bool
}

// Chart geometry in pixels.
const (
	panelW, panelH          = 520, 340
	plotLeft, plotRight     = 64, 16
	plotTop, plotBottom     = 34, 44
	legendRow, legendSwatch = 16, 18
)

// WriteCurves draws the panels side by side, each with its axes, tick
// labels, grid and, to its right, a legend of its lines, and writes them atomically as a
// PNG: training curves that are quicker to read than metrics.jsonl.
func WriteCurves(path string, panels []Panel) error {
	if len(panels) == 0 {
		return fmt.Errorf("curves %s: no panels to draw", path)
	}
	widths, total := make([]int, len(panels)), 0
	for i, p := range panels {
		widths[i] = panelW + legendWidth(p) + 8
		total += widths[i]
	}
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 255, 255, 0), panelH, total, gocv.MatTypeCV8UC3)
	defer img.Close()
	x := 0
	for i, p := range panels {
		drawPanel(&img, image.Rect(x, 0, x+widths[i], panelH), p)
		x += widths[i]
	}
	return writeMatPNG(path, img)
}

// legendWidth is the width of p's legend box.
func legendWidth(p Panel) int {
	w := 0
	for _, s := range p.Series {
		w = max(w, gocv.GetTextSize(s.Name, gocv.FontHersheySimplex, 0.4, 1).X)
	}
	return w + legendSwatch + 16
}

// drawPanel draws p into the rectangle r of img.
func drawPanel(img *gocv.Mat, r image.Rectangle, p Panel) {
	black := color.RGBA{0, 0, 0, 255}
	grey := color.RGBA{225, 225, 225, 255}
	font := gocv.FontHersheySimplex
	o := r.Min
	area := image.Rect(o.X+plotLeft, o.Y+plotTop, o.X+panelW-plotRight, r.Max.Y-plotBottom)
	gocv.PutTextWithParams(img, p.Title, image.Pt(o.X+plotLeft, o.Y+22), font, 0.55, black, 1, gocv.LineAA, false)

	x0, x1, y0, y1, ok := bounds(p.Series)
	if !ok {
		gocv.PutTextWithParams(img, "no values yet", image.Pt(area.Min.X+10, area.Min.Y+30), font, 0.45, black, 1, gocv.LineAA, false)
		gocv.Rectangle(img, area, black, 1)
		return
	}
	xt, x0, x1 := niceTicks(x0, x1, 6, true)
	var yt []float64
	f := func(y float64) float64 { return y } // where a value stands on the y axis
	if p.LogY && y0 > 0 {
		yt, y0, y1 = logTicks(y0, y1)
		f = math.Log10
	} else {
		yt, y0, y1 = niceTicks(y0, y1, 6, false)
	}
	fy0, fy1 := f(y0), f(y1)
	px := func(x float64) int { return area.Min.X + int(math.Round((x-x0)/(x1-x0)*float64(area.Dx()))) }
	py := func(y float64) int { return area.Max.Y - int(math.Round((f(y)-fy0)/(fy1-fy0)*float64(area.Dy()))) }

	for _, t := range xt {
		x := px(t)
		gocv.Line(img, image.Pt(x, area.Min.Y), image.Pt(x, area.Max.Y), grey, 1)
		s := tickLabel(t)
		sz := gocv.GetTextSize(s, font, 0.4, 1)
		gocv.PutTextWithParams(img, s, image.Pt(x-sz.X/2, area.Max.Y+16), font, 0.4, black, 1, gocv.LineAA, false)
	}
	for _, t := range yt {
		y := py(t)
		gocv.Line(img, image.Pt(area.Min.X, y), image.Pt(area.Max.X, y), grey, 1)
		s := tickLabel(t)
		sz := gocv.GetTextSize(s, font, 0.4, 1)
		gocv.PutTextWithParams(img, s, image.Pt(area.Min.X-6-sz.X, y+5), font, 0.4, black, 1, gocv.LineAA, false)
	}
	gocv.Rectangle(img, area, black, 1)
	if p.XLabel != "" {
		sz := gocv.GetTextSize(p.XLabel, font, 0.45, 1)
		gocv.PutTextWithParams(img, p.XLabel, image.Pt((area.Min.X+area.Max.X-sz.X)/2, r.Max.Y-8), font, 0.45, black, 1, gocv.LineAA, false)
	}

	for _, s := range p.Series {
		c := visible(s.Color)
		var prev *image.Point
		for i := range min(len(s.X), len(s.Y)) {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				prev = nil
				continue
			}
			pt := image.Pt(px(s.X[i]), py(s.Y[i]))
			if prev != nil {
				gocv.Line(img, *prev, pt, c, 2)
			}
			gocv.Circle(img, pt, 2, c, -1)
			prev = &pt
		}
	}

	drawLegend(img, image.Rect(area.Max.X+plotRight, area.Min.Y, r.Max.X-8, area.Min.Y+8+legendRow*len(p.Series)), p)
}

// drawLegend draws a swatch and the name of each line of p in box, which
// is beside the plot: inside it, a legend hides what matters most, the ends
// of the lines.
func drawLegend(img *gocv.Mat, box image.Rectangle, p Panel) {
	gocv.Rectangle(img, box, color.RGBA{255, 255, 255, 255}, -1)
	gocv.Rectangle(img, box, color.RGBA{200, 200, 200, 255}, 1)
	for i, s := range p.Series {
		y := box.Min.Y + 4 + legendRow*i + legendRow/2
		gocv.Line(img, image.Pt(box.Min.X+5, y), image.Pt(box.Min.X+5+legendSwatch, y), visible(s.Color), 2)
		gocv.PutTextWithParams(img, s.Name, image.Pt(box.Min.X+legendSwatch+10, y+5), gocv.FontHersheySimplex, 0.4,
			color.RGBA{0, 0, 0, 255}, 1, gocv.LineAA, false)
	}
}

// bounds is the range of the finite points of all series.
func bounds(ss []Series) (x0, x1, y0, y1 float64, ok bool) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, s := range ss {
		for i := range min(len(s.X), len(s.Y)) {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) || math.IsNaN(s.X[i]) || math.IsInf(s.X[i], 0) {
				continue
			}
			x0, x1 = min(x0, s.X[i]), max(x1, s.X[i])
			y0, y1 = min(y0, s.Y[i]), max(y1, s.Y[i])
			ok = true
		}
	}
	return x0, x1, y0, y1, ok
}

// niceTicks returns ticks at 1, 2 or 5 times a power of ten covering
// [lo, hi] in about n steps, and the axis range they span. A range of one
// value is widened around it; integer axes (epochs) get integer ticks.
func niceTicks(lo, hi float64, n int, integer bool) (ticks []float64, a, b float64) {
	if hi <= lo {
		d := math.Max(math.Abs(lo)*0.05, 1e-3)
		if integer {
			d = 1
		}
		lo, hi = lo-d, hi+d
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	if integer {
		step = math.Max(1, math.Round(step))
	}
	a = math.Floor(lo/step+1e-9) * step
	b = math.Ceil(hi/step-1e-9) * step
	for t := a; t <= b+step/2; t += step {
		ticks = append(ticks, t)
	}
	return ticks, a, b
}

// logTicks returns ticks at 1, 2 and 5 times the powers of ten (only the
// powers over more than three decades) from the last at or below lo to the
// first at or above hi, and those two as the axis range; lo must be > 0.
func logTicks(lo, hi float64) (ticks []float64, a, b float64) {
	e0, e1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if e1 == e0 {
		e1++
	}
	mults := []float64{1, 2, 5}
	if e1-e0 > 3 {
		mults = []float64{1}
	}
	var all []float64
	for e := e0; e <= e1; e++ {
		for _, m := range mults {
			all = append(all, m*math.Pow(10, e))
		}
	}
	i, j := 0, len(all)-1
	for i+1 < len(all) && all[i+1] <= lo*(1+1e-9) {
		i++
	}
	for j > i+1 && all[j-1] >= hi*(1-1e-9) {
		j--
	}
	return all[i : j+1], all[i], all[j]
}

// tickLabel writes t with as few digits as it needs.
func tickLabel(t float64) string {
	if math.Abs(t) < 1e-12 {
		return "0"
	}
	return strconv.FormatFloat(t, 'g', 4, 64)
}

// visible darkens a colour that would be faint on white.
func visible(c [3]uint8) color.RGBA {
	r, g, b := float64(c[0]), float64(c[1]), float64(c[2])
	if l := 0.299*r + 0.587*g + 0.114*b; l > 180 {
		k := 180 / l
		r, g, b = r*k, g*k, b*k
	}
	return color.RGBA{uint8(r), uint8(g), uint8(b), 255}
}

// writeMatPNG writes a BGR Mat as an RGB PNG, atomically.
func writeMatPNG(path string, img gocv.Mat) error {
	rgb, err := img.ToImage()
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	b := rgb.Bounds()
	pix := make([]uint8, 0, b.Dx()*b.Dy()*3)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(rgb.At(x, y)).(color.RGBA)
			pix = append(pix, c.R, c.G, c.B)
		}
	}
	return WritePNG(path, pix, b.Dx(), b.Dy(), 3)
}
