package datasets

import (
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShapesClasses(t *testing.T) {
	require.Len(t, ShapesClasses, 4)
	names := []string{"background", "circle", "square", "triangle"}
	for i, c := range ShapesClasses {
		assert.Equal(t, names[i], c.Name)
	}
	assert.Equal(t, "circle", ShapesClasses[ShapeCircle].Name)
	assert.Equal(t, "square", ShapesClasses[ShapeSquare].Name)
	assert.Equal(t, "triangle", ShapesClasses[ShapeTriangle].Name)
}

func TestRenderShapesSceneDeterministic(t *testing.T) {
	opt := ShapesOptions{Width: 48, Height: 40, Seed: 3}
	rgb, mask := RenderShapesScene(opt, 5)
	require.Len(t, rgb, 48*40*3)
	require.Len(t, mask, 48*40)
	rgb2, mask2 := RenderShapesScene(opt, 5)
	assert.Equal(t, rgb, rgb2)
	assert.Equal(t, mask, mask2)

	other, _ := RenderShapesScene(opt, 6)
	assert.NotEqual(t, rgb, other, "another index, another scene")
	opt.Seed = 4
	other, _ = RenderShapesScene(opt, 5)
	assert.NotEqual(t, rgb, other, "another seed, another scene")

	opt.N = 999 // N does not change a scene
	opt.Seed = 3
	rgb3, _ := RenderShapesScene(opt, 5)
	assert.Equal(t, rgb, rgb3)

	assert.Panics(t, func() { RenderShapesScene(ShapesOptions{Width: 8}, 0) })
}

func TestShapesMasksMatchGeometry(t *testing.T) {
	opt, err := ShapesOptions{Seed: 11}.resolve()
	require.NoError(t, err)
	w, h := opt.Width, opt.Height
	var classPixels [4]int
	hueBins := map[uint8]map[int]bool{ShapeCircle: {}, ShapeSquare: {}, ShapeTriangle: {}}
	for i := range 150 {
		rgb, mask, shapes := renderScene(opt, i, true)
		plain, plainMask, _ := renderScene(opt, i, false)
		require.Len(t, shapes, len(shapes))
		require.GreaterOrEqual(t, len(shapes), opt.MinShapes)
		require.LessOrEqual(t, len(shapes), opt.MaxShapes)
		for _, m := range plainMask {
			require.Zero(t, m)
		}

		tests := make([]inside, len(shapes))
		for k := range shapes {
			tests[k] = shapes[k].insideTest()
			hueBins[shapes[k].class][hueBin(shapes[k].fill)] = true
		}
		nonBG := 0
		changed := 0
		for y := range h {
			for x := range w {
				p := y*w + x
				// The mask holds the class of the topmost shape whose
				// inside holds the pixel centre, else background.
				want := uint8(ShapeBackground)
				for k := range shapes {
					if tests[k](float64(x)+0.5, float64(y)+0.5) {
						want = shapes[k].class
					}
				}
				require.Equal(t, want, mask[p], "scene %d pixel (%d,%d)", i, x, y)
				require.LessOrEqual(t, mask[p], uint8(3))
				classPixels[mask[p]]++
				d := 0
				for ch := range 3 {
					d += absDiff(rgb[3*p+ch], plain[3*p+ch])
				}
				if mask[p] != ShapeBackground {
					nonBG++
					if d > 0 {
						changed++
					}
				} else if d > 0 {
					// Only anti-aliased edges outside the mask change.
					require.True(t, nearMask(mask, w, h, x, y, 3), "scene %d pixel (%d,%d) changed far from any shape", i, x, y)
				}
			}
		}
		require.Positive(t, nonBG, "scene %d has no shape pixels", i)
		assert.GreaterOrEqual(t, float64(changed), 0.95*float64(nonBG), "scene %d: shapes must show in the picture", i)
	}
	total := float64(150 * w * h)
	assert.InDelta(t, 0.8, float64(classPixels[0])/total, 0.15, "background fraction")
	for k := 1; k < 4; k++ {
		frac := float64(classPixels[k]) / total
		assert.Greater(t, frac, 0.02, "class %s fraction", ShapesClasses[k].Name)
		assert.Less(t, frac, 0.2, "class %s fraction", ShapesClasses[k].Name)
	}
	for class, bins := range hueBins {
		assert.GreaterOrEqual(t, len(bins), 5, "class %s should come in many colours, not one", ShapesClasses[class].Name)
	}
}

func TestShapesSingleShapeArea(t *testing.T) {
	opt, err := ShapesOptions{Seed: 5, MinShapes: 1, MaxShapes: 1, Width: 96, Height: 80}.resolve()
	require.NoError(t, err)
	seen := map[uint8]bool{}
	for i := range 60 {
		_, mask, shapes := renderScene(opt, i, true)
		require.Len(t, shapes, 1)
		s := shapes[0]
		seen[s.class] = true
		n := 0
		for _, m := range mask {
			if m != ShapeBackground {
				require.Equal(t, s.class, m)
				n++
			}
		}
		area := s.area()
		side := float64(min(opt.Width, opt.Height))
		assert.InDelta(t, area, float64(n), 0.12*area+6, "scene %d (%s)", i, ShapesClasses[s.class].Name)
		// Sizes stay within the documented fractions.
		x0, y0, x1, y1 := s.extent()
		ext := math.Max(x1-x0, y1-y0)
		assert.GreaterOrEqual(t, ext, 0.10*side*0.99, "scene %d", i)
		assert.LessOrEqual(t, ext, 0.35*side*1.5, "scene %d", i)
		// Fully inside the picture.
		assert.True(t, s.cx+x0 >= -1e-9 && s.cy+y0 >= -1e-9 && s.cx+x1 <= float64(opt.Width)+1e-9 && s.cy+y1 <= float64(opt.Height)+1e-9)
	}
	assert.Len(t, seen, 3, "all three shape classes appear")
}

func TestShapesOptionsValidate(t *testing.T) {
	assert.NoError(t, ShapesOptions{}.Validate())
	for _, bad := range []ShapesOptions{
		{N: -1},
		{Width: 8},
		{MinShapes: 5, MaxShapes: 2},
		{MinSize: 0.4, MaxSize: 0.2},
		{MaxSize: 0.9},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
	opt, err := ShapesOptions{MinShapes: 6}.resolve()
	require.NoError(t, err)
	assert.Equal(t, 6, opt.MaxShapes)
	assert.ErrorContains(t, GenerateShapes(t.TempDir(), ShapesOptions{Width: 8}), "too small")
}

func TestGenerateShapesFiles(t *testing.T) {
	dir := t.TempDir()
	opt := ShapesOptions{N: 3, Width: 40, Height: 32, Seed: 9}
	require.NoError(t, GenerateShapes(dir, opt))
	assert.Equal(t, []string{"0000.png", "0001.png", "0002.png"}, dirNames(t, filepath.Join(dir, "images")))
	assert.Equal(t, []string{"0000.png", "0001.png", "0002.png"}, dirNames(t, filepath.Join(dir, "masks")))
	for i := range 3 {
		rgb, mask := RenderShapesScene(opt, i)
		name := filepath.Join(dir, "images", []string{"0000.png", "0001.png", "0002.png"}[i])
		img := readPNG(t, name)
		assert.IsType(t, &image.RGBA{}, img, "an 8-bit RGB file")
		assert.Equal(t, rgb, pngPixels(t, img, 3))
		m := readPNG(t, filepath.Join(dir, "masks", filepath.Base(name)))
		assert.IsType(t, &image.Gray{}, m, "an 8-bit grey file")
		assert.Equal(t, mask, pngPixels(t, m, 1))
	}

	// Through the folder loader: the images/ subfolder is picked up.
	f, err := NewImageFolder(dir, ImageOptions{})
	require.NoError(t, err)
	assert.Equal(t, 3, f.Len())
	c, h, w := f.Shape()
	assert.Equal(t, []int{3, 32, 40}, []int{c, h, w})
}

// readPNG decodes a PNG file with Go's decoder.
func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err, path)
	return img
}

// pngPixels returns an 8-bit image's pixels interleaved with c channels.
func pngPixels(t *testing.T, img image.Image, c int) []uint8 {
	t.Helper()
	b := img.Bounds()
	out := make([]uint8, 0, b.Dx()*b.Dy()*c)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			switch c {
			case 1:
				out = append(out, uint8(r>>8))
			case 3:
				out = append(out, uint8(r>>8), uint8(g>>8), uint8(bl>>8))
			default:
				out = append(out, uint8(r>>8), uint8(g>>8), uint8(bl>>8), uint8(a>>8))
			}
		}
	}
	return out
}

// hueBin returns which of 12 hue sectors a colour falls in.
func hueBin(c [3]float64) int {
	r, g, b := c[0], c[1], c[2]
	mx, mn := math.Max(r, math.Max(g, b)), math.Min(r, math.Min(g, b))
	if mx == mn {
		return 0
	}
	var h float64
	switch mx {
	case r:
		h = math.Mod((g-b)/(mx-mn), 6)
	case g:
		h = (b-r)/(mx-mn) + 2
	default:
		h = (r-g)/(mx-mn) + 4
	}
	if h < 0 {
		h += 6
	}
	return int(h*2) % 12
}

// nearMask reports whether a non-background mask pixel lies within d pixels
// (Chebyshev) of (x, y).
func nearMask(mask []uint8, w, h, x, y, d int) bool {
	for yy := max(0, y-d); yy <= min(h-1, y+d); yy++ {
		for xx := max(0, x-d); xx <= min(w-1, x+d); xx++ {
			if mask[yy*w+xx] != ShapeBackground {
				return true
			}
		}
	}
	return false
}

// absDiff is |a-b| for bytes.
func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
