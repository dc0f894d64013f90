package datasets

import (
	"fmt"
	"image"
	"image/color"
	"slices"
	"unsafe"

	"gocv.io/x/gocv"
)

// resizeFrame returns f resized to w x h: pixel-area averaging when
// shrinking (no aliasing), bilinear when enlarging.
func resizeFrame(f Frame, w, h int) (Frame, error) {
	if f.Width == w && f.Height == h {
		return f, nil
	}
	src, err := f.mat()
	if err != nil {
		return Frame{}, err
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	interp := gocv.InterpolationLinear
	if w <= f.Width && h <= f.Height {
		interp = gocv.InterpolationArea
	}
	gocv.Resize(src, &dst, image.Pt(w, h), 0, 0, interp)
	return frameFromMat(dst)
}

// ResizeFrame returns f resized to w x h (area averaging when shrinking,
// bilinear when enlarging); f itself when it already has that size.
func ResizeFrame(f Frame, w, h int) (Frame, error) {
	if err := f.check("resize"); err != nil {
		return Frame{}, err
	}
	if w <= 0 || h <= 0 {
		return Frame{}, fmt.Errorf("resize: target size %dx%d is empty", w, h)
	}
	return resizeFrame(f, w, h)
}

// FrameToCHW turns a frame into the tensor models take: CHW float32 in
// [0,1], RGB channel order for channels 3 and OpenCV's BT.601 luma for
// channels 1, resized to w x h first the way image folders are (area
// averaging when shrinking, bilinear when enlarging); w, h = 0, 0 keeps the
// frame's size.
func FrameToCHW(f Frame, w, h, channels int) ([]float32, error) {
	if err := f.check("frame to tensor"); err != nil {
		return nil, err
	}
	if channels != 1 && channels != 3 {
		return nil, fmt.Errorf("frame to tensor: %d channels; models take 1 (grey) or 3 (RGB)", channels)
	}
	if w == 0 && h == 0 {
		w, h = f.Width, f.Height
	}
	r, err := resizeFrame(f, w, h)
	if err != nil {
		return nil, err
	}
	plane := w * h
	out := make([]float32, channels*plane)
	const inv = 1.0 / 255
	if channels == 1 {
		for i := range plane {
			out[i] = float32(luma([3]uint8{r.Pix[3*i+2], r.Pix[3*i+1], r.Pix[3*i]})) * inv
		}
		return out, nil
	}
	rr, gg, bb := out[:plane], out[plane:2*plane], out[2*plane:]
	for i := range plane {
		bb[i] = float32(r.Pix[3*i]) * inv
		gg[i] = float32(r.Pix[3*i+1]) * inv
		rr[i] = float32(r.Pix[3*i+2]) * inv
	}
	return out, nil
}

// ResizePlanes resizes planes of h x w float32 values (logits or
// probabilities, CHW) to oh x ow bilinearly with half-pixel centres — the
// same sampling as seg.ResizeBilinear (PyTorch's align_corners=False), done
// by OpenCV's vectorised resize. x itself is returned when the size does not
// change.
func ResizePlanes(x []float32, planes, h, w, oh, ow int) ([]float32, error) {
	if len(x) != planes*h*w || h <= 0 || w <= 0 {
		return nil, fmt.Errorf("resize planes: %d values for %d planes of %dx%d", len(x), planes, w, h)
	}
	if oh <= 0 || ow <= 0 {
		return nil, fmt.Errorf("resize planes: target size %dx%d is empty", ow, oh)
	}
	if h == oh && w == ow {
		return x, nil
	}
	out := make([]float32, planes*oh*ow)
	for p := range planes {
		if err := resizePlane(x[p*h*w:(p+1)*h*w], h, w, out[p*oh*ow:(p+1)*oh*ow], oh, ow); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// resizePlane resizes one float plane into dst.
func resizePlane(src []float32, h, w int, dst []float32, oh, ow int) error {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), len(src)*4)
	in, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV32F, b)
	if err != nil {
		return fmt.Errorf("resize planes: %w", err)
	}
	defer in.Close()
	res := gocv.NewMat()
	defer res.Close()
	gocv.Resize(in, &res, image.Pt(ow, oh), 0, 0, gocv.InterpolationLinear)
	v, err := res.DataPtrFloat32()
	if err != nil {
		return fmt.Errorf("resize planes: %w", err)
	}
	copy(dst, v)
	return nil
}

// checkLabels reports a class map that does not fit w x h.
func checkLabels(what string, labels []int32, w, h int) error {
	if w <= 0 || h <= 0 || len(labels) != w*h {
		return fmt.Errorf("%s: %d labels for a %dx%d map", what, len(labels), w, h)
	}
	return nil
}

// Overlay returns a new frame: f with each pixel's class colour blended in,
// out = (1-alpha)*pixel + alpha*colour, rounded. colors are RGB, indexed
// by class (a model's class table); pixels labelled ignore or with no colour
// keep the picture. labels has one class per pixel of f. alpha is clamped
// to [0,1]: 1 paints the mask, 0 returns the picture.
func Overlay(f Frame, labels []int32, colors [][3]uint8, ignore int, alpha float64) (Frame, error) {
	if err := f.check("overlay"); err != nil {
		return Frame{}, err
	}
	if err := checkLabels("overlay", labels, f.Width, f.Height); err != nil {
		return Frame{}, err
	}
	a := int32(min(1, max(0, alpha))*256 + 0.5)
	out := f.Clone()
	// colour * a per class, BGR, precomputed
	pre := make([][3]int32, len(colors))
	for i, c := range colors {
		pre[i] = [3]int32{int32(c[2]) * a, int32(c[1]) * a, int32(c[0]) * a}
	}
	keep := 256 - a
	n := int32(len(colors))
	for i, l := range labels {
		if l < 0 || l >= n || int(l) == ignore {
			continue
		}
		c := pre[l]
		p := out.Pix[3*i : 3*i+3 : 3*i+3]
		p[0] = uint8((int32(p[0])*keep + c[0] + 128) >> 8)
		p[1] = uint8((int32(p[1])*keep + c[1] + 128) >> 8)
		p[2] = uint8((int32(p[2])*keep + c[2] + 128) >> 8)
	}
	return out, nil
}

// ColorMask paints a class map of w x h with the class colours (RGB, by
// class) as a frame; the ignore label and labels without a colour are
// black.
func ColorMask(labels []int32, w, h int, colors [][3]uint8, ignore int) (Frame, error) {
	if err := checkLabels("colour mask", labels, w, h); err != nil {
		return Frame{}, err
	}
	out := NewFrame(w, h)
	for i, l := range labels {
		if l < 0 || int(l) >= len(colors) || int(l) == ignore {
			continue
		}
		c := colors[l]
		out.Pix[3*i], out.Pix[3*i+1], out.Pix[3*i+2] = c[2], c[1], c[0]
	}
	return out, nil
}

// WriteLabelMap writes a class map of w x h as an 8-bit grey PNG of class
// indices (the mask encoding training reads), atomically.
func WriteLabelMap(path string, labels []int32, w, h int) error {
	if err := checkLabels("write "+path, labels, w, h); err != nil {
		return err
	}
	pix := make([]uint8, len(labels))
	for i, l := range labels {
		if l < 0 || l > 255 {
			return fmt.Errorf("write %s: label %d does not fit an 8-bit PNG", path, l)
		}
		pix[i] = uint8(l)
	}
	return encodeAtomic(path, ".png", pix, w, h, 1)
}

// textStyle is the font size and stroke for text on a frame of height h:
// readable on 240-line video, not shouting on 1080.
func textStyle(h int) (scale float64, thick int) {
	scale = min(1.0, max(0.35, float64(h)/700))
	thick = 1
	if scale >= 0.7 {
		thick = 2
	}
	return scale, thick
}

const textFont = gocv.FontHersheySimplex

// outlinedText draws white text with a dark outline, legible on any
// background.
func outlinedText(m *gocv.Mat, s string, org image.Point, scale float64, thick int) {
	gocv.PutTextWithParams(m, s, org, textFont, scale, color.RGBA{0, 0, 0, 255}, thick+2, gocv.LineAA, false)
	gocv.PutTextWithParams(m, s, org, textFont, scale, color.RGBA{255, 255, 255, 255}, thick, gocv.LineAA, false)
}

// legendLayout is the geometry of the legend of n classes on a frame of
// w x h: the panel, the rows that fit, and the text metrics.
type legendLayout struct {
	panel                   image.Rectangle
	rows                    int
	scale                   float64
	thick, pad, row, th, sw int
}

func layoutLegend(w, h int, names []string, n int) legendLayout {
	scale, thick := textStyle(h)
	tw := 0
	th := gocv.GetTextSize("Ag", textFont, scale, thick).Y
	for _, s := range names[:n] {
		tw = max(tw, gocv.GetTextSize(s, textFont, scale, thick).X)
	}
	pad := max(3, th/2)
	row := th + pad
	l := legendLayout{scale: scale, thick: thick, pad: pad, row: row, th: th, sw: th + 2}
	l.rows = max(0, min(n, (h-2*pad)/row))
	x0, y0 := pad, pad
	l.panel = image.Rect(x0, y0, min(w, x0+pad+l.sw+pad+tw+pad), min(h, y0+pad+l.rows*row))
	return l
}

// LegendRect is where DrawLegend draws on a frame of w x h (empty when
// nothing fits), for keeping other drawing out of it.
func LegendRect(w, h int, names []string, colors [][3]uint8) image.Rectangle {
	n := min(len(names), len(colors))
	if n == 0 || w <= 0 || h <= 0 {
		return image.Rectangle{}
	}
	l := layoutLegend(w, h, names, n)
	if l.rows == 0 {
		return image.Rectangle{}
	}
	return l.panel
}

// DrawLegend draws, in f's top-left corner and in place, one row per class:
// a swatch of its colour (RGB) and its name, on a darkened panel (see
// LegendRect). Classes beyond what fits the frame's height are left out.
func DrawLegend(f Frame, names []string, colors [][3]uint8) error {
	if err := f.check("legend"); err != nil {
		return err
	}
	n := min(len(names), len(colors))
	if n == 0 {
		return nil
	}
	l := layoutLegend(f.Width, f.Height, names, n)
	if l.rows == 0 {
		return nil
	}
	n = l.rows
	scale, thick, pad, row, th, sw := l.scale, l.thick, l.pad, l.row, l.th, l.sw
	x0, y0, x1, y1 := l.panel.Min.X, l.panel.Min.Y, l.panel.Max.X, l.panel.Max.Y
	for y := y0; y < y1; y++ {
		p := f.Pix[3*(y*f.Width+x0) : 3*(y*f.Width+x1)]
		for i := range p {
			p[i] = uint8(uint16(p[i]) * 3 / 8)
		}
	}
	m, err := f.mat()
	if err != nil {
		return fmt.Errorf("legend: %w", err)
	}
	defer m.Close()
	for i := range n {
		c := colors[i]
		top := y0 + pad + i*row
		r := image.Rect(x0+pad, top, x0+pad+sw, top+sw-2)
		gocv.Rectangle(&m, r, color.RGBA{c[0], c[1], c[2], 255}, -1)
		gocv.Rectangle(&m, r, color.RGBA{255, 255, 255, 255}, 1)
		gocv.PutTextWithParams(&m, names[i], image.Pt(x0+pad+sw+pad, top+th-1), textFont, scale, color.RGBA{255, 255, 255, 255}, thick, gocv.LineAA, false)
	}
	return nil
}

// Region is a connected area of one class in a class map.
type Region struct {
	// Class is the label of every pixel of the region.
	Class int32
	// Area in pixels.
	Area int
	// X, Y is the pixel of the region farthest from its border (where a
	// label inside it is least likely to spill over).
	X, Y int
}

// Regions finds the 4-connected regions of equal label in a class map of
// w x h with at least minArea pixels, largest first; the ignore label makes
// no regions.
func Regions(labels []int32, w, h, minArea, ignore int) ([]Region, error) {
	if err := checkLabels("regions", labels, w, h); err != nil {
		return nil, err
	}
	n := w * h
	comp := make([]int32, n)
	for i := range comp {
		comp[i] = -1
	}
	// chamfer (3-4) distance to the nearest pixel of another label or the
	// image's edge
	dist := make([]int32, n)
	const inf = 1 << 30
	for y := range h {
		for x := range w {
			i := y*w + x
			l := labels[i]
			edge := x == 0 || y == 0 || x == w-1 || y == h-1 ||
				labels[i-1] != l || labels[i+1] != l || labels[i-w] != l || labels[i+w] != l
			if edge {
				dist[i] = 3
			} else {
				dist[i] = inf
			}
		}
	}
	for y := 1; y < h-1; y++ {
		for x := 1; x < w-1; x++ {
			i := y*w + x
			dist[i] = min(dist[i], dist[i-1]+3, dist[i-w]+3, dist[i-w-1]+4, dist[i-w+1]+4)
		}
	}
	for y := h - 2; y >= 1; y-- {
		for x := w - 2; x >= 1; x-- {
			i := y*w + x
			dist[i] = min(dist[i], dist[i+1]+3, dist[i+w]+3, dist[i+w+1]+4, dist[i+w-1]+4)
		}
	}
	var out []Region
	stack := make([]int32, 0, 1024)
	for s := range n {
		if comp[s] >= 0 {
			continue
		}
		l := labels[s]
		id := int32(len(out))
		comp[s] = id
		stack = append(stack[:0], int32(s))
		r := Region{Class: l}
		best := int32(-1)
		for len(stack) > 0 {
			i := int(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			r.Area++
			if dist[i] > best {
				best, r.X, r.Y = dist[i], i%w, i/w
			}
			x := i % w
			for _, j := range [4]int{i - 1, i + 1, i - w, i + w} {
				if j < 0 || j >= n || (j == i-1 && x == 0) || (j == i+1 && x == w-1) {
					continue
				}
				if comp[j] < 0 && labels[j] == l {
					comp[j] = id
					stack = append(stack, int32(j))
				}
			}
		}
		out = append(out, r)
	}
	kept := out[:0]
	for _, r := range out {
		if r.Area >= minArea && int(r.Class) != ignore {
			kept = append(kept, r)
		}
	}
	slices.SortStableFunc(kept, func(a, b Region) int { return b.Area - a.Area })
	return kept, nil
}

// DrawLabels writes each class's name, in place, on the regions of a class
// map (lw x lh, any resolution: positions are scaled to f) that cover at
// least minFrac of it, at the point of the region farthest from its border;
// at most maxLabels labels, largest regions first, none over another or
// over avoid (the legend's LegendRect, say; empty: nothing to avoid).
// names are by class; the ignore label gets none.
func DrawLabels(f Frame, labels []int32, lw, lh int, names []string, ignore int, minFrac float64, maxLabels int, avoid image.Rectangle) error {
	if err := f.check("labels"); err != nil {
		return err
	}
	regions, err := Regions(labels, lw, lh, max(1, int(minFrac*float64(lw*lh))), ignore)
	if err != nil {
		return err
	}
	if len(regions) > maxLabels {
		regions = regions[:maxLabels]
	}
	if len(regions) == 0 {
		return nil
	}
	m, err := f.mat()
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	defer m.Close()
	scale, thick := textStyle(f.Height)
	var drawn []image.Rectangle
	if !avoid.Empty() {
		drawn = append(drawn, avoid)
	}
	for _, r := range regions {
		if int(r.Class) >= len(names) {
			continue
		}
		s := names[r.Class]
		sz := gocv.GetTextSize(s, textFont, scale, thick)
		cx := (2*r.X + 1) * f.Width / (2 * lw)
		cy := (2*r.Y + 1) * f.Height / (2 * lh)
		x := min(max(0, cx-sz.X/2), max(0, f.Width-sz.X))
		y := min(max(sz.Y, cy+sz.Y/2), f.Height-1)
		box := image.Rect(x, y-sz.Y, x+sz.X, y).Inset(-2)
		// A smaller region's label that would cover a larger one's is
		// left out: two names on top of each other help no one.
		if slices.ContainsFunc(drawn, box.Overlaps) {
			continue
		}
		drawn = append(drawn, box)
		outlinedText(&m, s, image.Pt(x, y), scale, thick)
	}
	return nil
}
