package datasets

import (
	"image"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testColors = [][3]uint8{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}}

// stripes is a w x h class map of vertical stripes of the three classes,
// with label 9 (ignored) in the last column.
func stripes(w, h int) []int32 {
	l := make([]int32, w*h)
	for y := range h {
		for x := range w {
			l[y*w+x] = int32(3 * x / w)
			if x == w-1 {
				l[y*w+x] = 9
			}
		}
	}
	return l
}

func greyFrame(w, h int, v uint8) Frame {
	f := NewFrame(w, h)
	for i := range f.Pix {
		f.Pix[i] = v
	}
	return f
}

func TestOverlay(t *testing.T) {
	w, h := 12, 5
	f := greyFrame(w, h, 100)
	labels := stripes(w, h)
	one, err := Overlay(f, labels, testColors, 9, 1)
	require.NoError(t, err)
	half, err := Overlay(f, labels, testColors, 9, 0.5)
	require.NoError(t, err)
	zero, err := Overlay(f, labels, testColors, 9, 0)
	require.NoError(t, err)
	assert.Equal(t, f.Pix, zero.Pix)
	for i, l := range labels {
		px := one.Pix[3*i : 3*i+3]
		if l == 9 {
			assert.Equal(t, []uint8{100, 100, 100}, px, "ignored pixels keep the picture")
			assert.Equal(t, []uint8{100, 100, 100}, half.Pix[3*i:3*i+3])
			continue
		}
		c := testColors[l]
		assert.Equal(t, []uint8{c[2], c[1], c[0]}, px, "alpha 1 is the class colour (BGR)")
		for k := range 3 {
			want := (100 + float64(c[2-k])) / 2
			assert.InDelta(t, want, float64(half.Pix[3*i+k]), 0.51)
		}
	}
	assert.Equal(t, greyFrame(w, h, 100).Pix, f.Pix, "the input frame is untouched")
	_, err = Overlay(f, labels[:5], testColors, 9, 1)
	assert.ErrorContains(t, err, "labels")

	cm, err := ColorMask(labels, w, h, testColors, 9)
	require.NoError(t, err)
	assert.Equal(t, one.Pix[:3*(w-1)], cm.Pix[:3*(w-1)])
	assert.Equal(t, []uint8{0, 0, 0}, cm.Pix[3*(w-1):3*w], "ignored is black")
}

func TestFrameToCHW(t *testing.T) {
	f := NewFrame(4, 2)
	for i := range 8 {
		f.Pix[3*i], f.Pix[3*i+1], f.Pix[3*i+2] = uint8(i), uint8(10*i), uint8(20*i) // B, G, R
	}
	x, err := FrameToCHW(f, 0, 0, 3)
	require.NoError(t, err)
	require.Len(t, x, 3*8)
	assert.InDelta(t, 20*3/255.0, x[3], 1e-6, "R plane first")
	assert.InDelta(t, 10*3/255.0, x[8+3], 1e-6)
	assert.InDelta(t, 3/255.0, x[16+3], 1e-6)
	small, err := FrameToCHW(greyFrame(64, 48, 51), 16, 8, 1)
	require.NoError(t, err)
	require.Len(t, small, 16*8)
	for _, v := range small {
		assert.InDelta(t, 0.2, v, 1e-6)
	}
	_, err = FrameToCHW(f, 0, 0, 2)
	assert.ErrorContains(t, err, "channels")
}

// bilinear is the reference: half-pixel centres, edges clamped.
func bilinear(x []float32, h, w, oh, ow int) []float32 {
	out := make([]float32, oh*ow)
	for oy := range oh {
		sy := max(0, (float64(oy)+0.5)*float64(h)/float64(oh)-0.5)
		y0 := min(int(sy), h-1)
		y1, fy := min(y0+1, h-1), sy-float64(y0)
		for ox := range ow {
			sx := max(0, (float64(ox)+0.5)*float64(w)/float64(ow)-0.5)
			x0 := min(int(sx), w-1)
			x1, fx := min(x0+1, w-1), sx-float64(x0)
			top := float64(x[y0*w+x0])*(1-fx) + float64(x[y0*w+x1])*fx
			bot := float64(x[y1*w+x0])*(1-fx) + float64(x[y1*w+x1])*fx
			out[oy*ow+ox] = float32(top*(1-fy) + bot*fy)
		}
	}
	return out
}

func TestResizePlanes(t *testing.T) {
	h, w := 6, 8
	x := make([]float32, 2*h*w)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.7))
	}
	for _, sz := range [][2]int{{24, 32}, {13, 19}, {3, 4}} {
		got, err := ResizePlanes(x, 2, h, w, sz[0], sz[1])
		require.NoError(t, err)
		for p := range 2 {
			want := bilinear(x[p*h*w:(p+1)*h*w], h, w, sz[0], sz[1])
			plane := got[p*sz[0]*sz[1] : (p+1)*sz[0]*sz[1]]
			for i := range want {
				require.InDelta(t, want[i], plane[i], 1e-4, "size %v plane %d pixel %d", sz, p, i)
			}
		}
	}
	same, err := ResizePlanes(x, 2, h, w, h, w)
	require.NoError(t, err)
	assert.Equal(t, x, same)
	_, err = ResizePlanes(x, 3, h, w, 4, 4)
	assert.Error(t, err)
}

func TestRegions(t *testing.T) {
	// a 20x10 map: class 1 fills the left half, class 2 a 4x4 block on the
	// right, class 0 the rest, and one stray class-1 pixel
	w, h := 20, 10
	l := make([]int32, w*h)
	for y := range h {
		for x := range w {
			switch {
			case x < 10:
				l[y*w+x] = 1
			case x >= 14 && x < 18 && y >= 3 && y < 7:
				l[y*w+x] = 2
			}
		}
	}
	l[0*w+19] = 1
	rs, err := Regions(l, w, h, 2, -1)
	require.NoError(t, err)
	require.Len(t, rs, 3, "the stray pixel is below the minimum area")
	assert.Equal(t, Region{Class: 1, Area: 100, X: rs[0].X, Y: rs[0].Y}, rs[0])
	assert.Equal(t, int32(0), rs[1].Class)
	assert.Equal(t, 100-16-1, rs[1].Area)
	assert.Equal(t, int32(2), rs[2].Class)
	assert.Equal(t, 16, rs[2].Area)
	for _, r := range rs {
		assert.Equal(t, r.Class, l[r.Y*w+r.X], "the anchor lies inside its region")
	}
	assert.InDelta(t, 4.5, float64(rs[0].X), 1.01, "the anchor is central")
	rs, err = Regions(l, w, h, 2, 1)
	require.NoError(t, err)
	assert.Len(t, rs, 2, "the ignore label has no regions")
}

func TestDrawLegendAndLabels(t *testing.T) {
	w, h := 160, 120
	f := greyFrame(w, h, 128)
	require.NoError(t, DrawLegend(f, []string{"red", "green", "blue"}, testColors))
	changed := func(f Frame, x0, y0, x1, y1 int) int {
		n := 0
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				if f.Pix[3*(y*w+x)] != 128 {
					n++
				}
			}
		}
		return n
	}
	assert.Greater(t, changed(f, 0, 0, w/2, h/2), 200, "the legend is in the top-left corner")
	assert.Zero(t, changed(f, w/2, h/2, w, h), "and nowhere else")
	lr := LegendRect(w, h, []string{"red", "green", "blue"}, testColors)
	require.False(t, lr.Empty())
	assert.Equal(t, changed(f, 0, 0, w, h), changed(f, lr.Min.X, lr.Min.Y, lr.Max.X, lr.Max.Y), "all of it inside LegendRect")
	// a red swatch is there
	red := 0
	for i := 0; i < len(f.Pix); i += 3 {
		if f.Pix[i] == 0 && f.Pix[i+1] == 0 && f.Pix[i+2] == 255 {
			red++
		}
	}
	assert.Greater(t, red, 10)

	g := greyFrame(w, h, 128)
	labels := stripes(16, 12)
	require.NoError(t, DrawLabels(g, labels, 16, 12, []string{"a", "b", "c"}, 9, 0.05, 10, image.Rectangle{}))
	// text lands in each stripe (the map is a tenth of the frame's size)
	for s := range 3 {
		x0, x1 := s*w/3, (s+1)*w/3
		assert.Greater(t, changed(g, x0, 0, x1, h), 10, "stripe %d has its label", s)
	}
	before := g.Clone()
	require.NoError(t, DrawLabels(g, labels, 16, 12, []string{"a", "b", "c"}, 9, 0.9, 10, image.Rectangle{}), "no region large enough: nothing drawn")
	require.NoError(t, DrawLabels(g, labels, 16, 12, []string{"a", "b", "c"}, 9, 0.05, 10, image.Rect(0, 0, w, h)), "all to avoid: nothing drawn")
	assert.Equal(t, before.Pix, g.Pix)
}
