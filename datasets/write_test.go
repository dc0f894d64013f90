package datasets

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
)

func TestWritePNGRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deep", "er")
	for _, c := range []int{1, 3, 4} {
		w, h := 5, 3
		pix := make([]uint8, w*h*c)
		for i := range pix {
			pix[i] = uint8(i * 7)
		}
		if c == 4 {
			for i := 3; i < len(pix); i += 4 {
				pix[i] = 255 // opaque, so that colour survives unpremultiplied
			}
		}
		p := filepath.Join(dir, []string{"", "g.png", "", "rgb.png", "rgba.png"}[c])
		require.NoError(t, WritePNG(p, pix, w, h, c))
		img := readPNG(t, p)
		assert.Equal(t, w, img.Bounds().Dx())
		assert.Equal(t, h, img.Bounds().Dy())
		assert.Equal(t, pix, pngPixels(t, img, c), "c=%d", c)
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	}
	assert.Equal(t, []string{"g.png", "rgb.png", "rgba.png"}, dirNames(t, dir), "no temporary files left")

	assert.ErrorContains(t, WritePNG(filepath.Join(dir, "x.png"), make([]uint8, 5), 2, 2, 1), "want 4")
	assert.ErrorContains(t, WritePNG(filepath.Join(dir, "x.png"), make([]uint8, 8), 2, 2, 2), "2 channels")
	assert.ErrorContains(t, WritePNG(filepath.Join(dir, "x.png"), nil, 0, 2, 1), "empty")
}

func TestWriteGridRoundTrip(t *testing.T) {
	const c, h, w = 3, 4, 5
	imgs := make([][]float32, 3)
	for k := range imgs {
		img := make([]float32, c*h*w)
		for ch := range c {
			for p := range h * w {
				img[ch*h*w+p] = float32(k*3+ch+1) / 10 // tile k, channel ch: a flat value
			}
		}
		imgs[k] = img
	}
	imgs[2][0] = -1                  // clamped to 0
	imgs[2][1] = 7                   // clamped to 1
	imgs[2][2] = float32(math.NaN()) // 0
	path := filepath.Join(t.TempDir(), "sub", "grid.png")
	require.NoError(t, WriteGrid(path, imgs, c, h, w, 2, 3))

	m := gocv.IMRead(path, gocv.IMReadColor)
	defer m.Close()
	require.False(t, m.Empty())
	tw, th := w*3, h*3
	assert.Equal(t, 2*(tw+GridPadding)+GridPadding, m.Cols())
	assert.Equal(t, 2*(th+GridPadding)+GridPadding, m.Rows())
	px := func(x, y int) [3]uint8 { // RGB
		v := m.GetVecbAt(y, x)
		return [3]uint8{v[2], v[1], v[0]}
	}
	pad := uint8(GridPaddingValue)
	assert.Equal(t, [3]uint8{pad, pad, pad}, px(0, 0))
	assert.Equal(t, [3]uint8{pad, pad, pad}, px(GridPadding+tw, 5), "gap between columns")
	assert.Equal(t, [3]uint8{pad, pad, pad}, px(m.Cols()-1, m.Rows()-1), "the empty fourth cell")
	for k := range 2 {
		ox := GridPadding + k*(tw+GridPadding)
		want := [3]uint8{toByte(float32(k*3+1) / 10), toByte(float32(k*3+2) / 10), toByte(float32(k*3+3) / 10)}
		assert.Equal(t, want, px(ox, GridPadding), "tile %d", k)
		assert.Equal(t, want, px(ox+tw-1, GridPadding+th-1), "tile %d corner", k)
	}
	oy := GridPadding + th + GridPadding // tile 2, second row
	assert.Equal(t, [3]uint8{0, toByte(0.8), toByte(0.9)}, px(GridPadding, oy), "clamped low")
	assert.Equal(t, uint8(0), px(GridPadding+2*3, oy)[0], "NaN is 0") // source x=2 is scaled x 6..8
	assert.Equal(t, uint8(255), px(GridPadding+3, oy)[0], "clamped high")

	// Grey tiles, default columns and scale.
	grey := [][]float32{{0, 0.5, 1, 0.25}, {1, 1, 1, 1}, {0, 0, 0, 0}, {0.5, 0.5, 0.5, 0.5}, {0, 0, 0, 0}}
	gpath := filepath.Join(t.TempDir(), "grey.png")
	require.NoError(t, WriteGrid(gpath, grey, 1, 2, 2, 0, 0))
	g := gocv.IMRead(gpath, gocv.IMReadUnchanged)
	defer g.Close()
	assert.Equal(t, 1, g.Channels())
	assert.Equal(t, 3*(2+GridPadding)+GridPadding, g.Cols(), "ceil(sqrt(5)) = 3 columns")
	assert.Equal(t, 2*(2+GridPadding)+GridPadding, g.Rows())
	assert.Equal(t, uint8(128), g.GetUCharAt(GridPadding, GridPadding+1))
	assert.Equal(t, uint8(64), g.GetUCharAt(GridPadding+1, GridPadding+1))
}

func TestWriteGridFormatsAndErrors(t *testing.T) {
	dir := t.TempDir()
	tile := []float32{0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6, 1, 1, 1, 1}
	for _, name := range []string{"a.jpg", "b.pgm", "c.ppm", "d.bmp", "e.tif", "f.webp"} {
		require.NoError(t, WriteGrid(filepath.Join(dir, name), [][]float32{tile}, 3, 2, 2, 1, 4), name)
		m := gocv.IMRead(filepath.Join(dir, name), gocv.IMReadUnchanged)
		require.False(t, m.Empty(), name)
		assert.Equal(t, 8+2*GridPadding, m.Cols(), name)
		m.Close()
	}
	g := [][]float32{{0.5, 0.5, 0.5, 0.5}}
	require.NoError(t, WriteGrid(filepath.Join(dir, "g.ppm"), g, 1, 2, 2, 1, 1), "grey into a colour-only format")

	for _, tc := range []struct {
		name string
		imgs [][]float32
		c    int
		want string
	}{
		{"x.exr", [][]float32{tile}, 3, "not an image format"},
		{"noext", [][]float32{tile}, 3, "not an image format"},
		{"x.png", nil, 3, "no images"},
		{"x.png", [][]float32{tile[:5]}, 3, "image 0 has 5 values, want 12"},
		{"x.png", [][]float32{tile}, 2, "2 channels"},
	} {
		err := WriteGrid(filepath.Join(dir, tc.name), tc.imgs, tc.c, 2, 2, 1, 1)
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), filepath.Join(dir, tc.name))
		assert.Contains(t, err.Error(), tc.want)
	}
}
