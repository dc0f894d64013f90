package datasets

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestImageFolderListsAndDecodes(t *testing.T) {
	dir := t.TempDir()
	// 2x2 RGB: red, green / blue, white.
	quad := []uint8{255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255}
	writeTestPNG(t, dir, "b.png", quad, 2, 2, 3)
	writeTestPNG(t, dir, "a.PNG", solid(2, 2, 51), 2, 2, 1) // grey 0.2, upper-case extension
	writeTestPNG(t, dir, ".hidden.png", solid(2, 2, 0), 2, 2, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.png"), 0o755))

	f, err := NewImageFolder(dir, ImageOptions{})
	require.NoError(t, err)
	require.Equal(t, 2, f.Len())
	assert.Equal(t, filepath.Join(dir, "a.PNG"), f.Path(0), "sorted by name")
	assert.Equal(t, filepath.Join(dir, "b.png"), f.Path(1))
	c, h, w := f.Shape()
	assert.Equal(t, []int{3, 2, 2}, []int{c, h, w}, "default: 3 channels, first image's size")

	grey, mask, err := f.Get(0, 0)
	require.NoError(t, err)
	assert.Nil(t, mask)
	require.Len(t, grey, 12)
	for _, v := range grey {
		assert.InDelta(t, 0.2, v, 1e-6, "grey replicated into R, G and B")
	}

	img, _, err := f.Get(1, 42)
	require.NoError(t, err)
	// CHW, RGB order: plane R = [1 0 0 1], G = [0 1 0 1], B = [0 0 1 1].
	assert.Equal(t, []float32{1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1}, img)

	_, _, err = f.Get(2, 0)
	assert.ErrorContains(t, err, "out of range")

	// The same folder as one grey channel: colour is turned to luma.
	g, err := NewImageFolder(dir, ImageOptions{Channels: 1})
	require.NoError(t, err)
	c, _, _ = g.Shape()
	assert.Equal(t, 1, c)
	img, _, err = g.Get(1, 0)
	require.NoError(t, err)
	require.Len(t, img, 4)
	for i, want := range []float64{0.299, 0.587, 0.114, 1} {
		assert.InDelta(t, want, img[i], 1.0/255+1e-6, "pixel %d", i)
	}
}

func TestImageFolderResize(t *testing.T) {
	dir := t.TempDir()
	writeTestPNG(t, dir, "big.png", solid(40, 30, 10, 100, 200), 40, 30, 3)
	writeTestPNG(t, dir, "small.png", solid(5, 7, 10, 100, 200), 5, 7, 3)
	f, err := NewImageFolder(dir, ImageOptions{Channels: 3, Height: 12, Width: 16})
	require.NoError(t, err)
	c, h, w := f.Shape()
	assert.Equal(t, []int{3, 12, 16}, []int{c, h, w})
	for i := range f.Len() { // one image shrunk (area), one enlarged (bilinear)
		img, _, err := f.Get(i, 0)
		require.NoError(t, err)
		require.Len(t, img, 3*12*16)
		for k, want := range []float64{10, 100, 200} {
			for _, v := range img[k*12*16 : (k+1)*12*16] {
				require.InDelta(t, want/255, v, 1.0/255+1e-6, "a flat colour stays flat through resizing")
			}
		}
	}
}

func TestImageFolderUsesImagesSubfolder(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "images"), 0o755))
	writeTestPNG(t, dir, "top.png", solid(3, 3, 0), 3, 3, 1)
	writeTestPNG(t, filepath.Join(dir, "images"), "in.png", solid(3, 3, 0), 3, 3, 1)
	writeTestPNG(t, filepath.Join(dir, "images"), "in2.png", solid(3, 3, 0), 3, 3, 1)
	f, err := NewImageFolder(dir, ImageOptions{Channels: 1})
	require.NoError(t, err)
	assert.Equal(t, 2, f.Len())
	assert.Equal(t, filepath.Join(dir, "images"), f.Dir())
}

func TestImageFolderFixtures(t *testing.T) {
	f, err := NewImageFolder(filepath.Join("..", "testdata", "shapes"), ImageOptions{Height: 32, Width: 32})
	require.NoError(t, err)
	assert.Equal(t, 8, f.Len())
	c, h, w := f.Shape()
	assert.Equal(t, []int{3, 32, 32}, []int{c, h, w})
	img, _, err := f.Get(7, 0)
	require.NoError(t, err)
	for _, v := range img {
		require.True(t, v >= 0 && v <= 1)
	}
}

func TestImageFolderErrors(t *testing.T) {
	base := t.TempDir()

	_, err := NewImageFolder(filepath.Join(base, "nope"), ImageOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(base, "nope"))
	assert.Contains(t, err.Error(), "does not exist")

	file := writeTestPNG(t, base, "file.png", solid(2, 2, 0), 2, 2, 1)
	_, err = NewImageFolder(file, ImageOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), file)
	assert.Contains(t, err.Error(), "not a directory")

	empty := filepath.Join(base, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(empty, "readme.txt"), []byte("hi"), 0o644))
	_, err = NewImageFolder(empty, ImageOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), empty)
	assert.Contains(t, err.Error(), "no images")
	assert.Contains(t, err.Error(), ".png .jpg .jpeg")

	_, err = NewImageFolder(base, ImageOptions{Channels: 2})
	assert.ErrorContains(t, err, "Channels is 2")
	_, err = NewImageFolder(base, ImageOptions{Height: 5})
	assert.ErrorContains(t, err, "both")

	mixed := filepath.Join(base, "mixed")
	require.NoError(t, os.Mkdir(mixed, 0o755))
	writeTestPNG(t, mixed, "a.png", solid(4, 4, 0), 4, 4, 1)
	writeTestPNG(t, mixed, "b.png", solid(5, 4, 0), 5, 4, 1)
	_, err = NewImageFolder(mixed, ImageOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(mixed, "b.png"))
	assert.Contains(t, err.Error(), "set ImageOptions Width and Height")
	_, err = NewImageFolder(mixed, ImageOptions{Width: 4, Height: 4})
	assert.NoError(t, err, "with a size set, sizes may differ")
}

func TestImageFolderCorruptFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func() []byte
	}{
		{"random bytes", func() []byte {
			r := rand.New(rand.NewPCG(1, 2))
			b := make([]byte, 500)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{"empty file", func() []byte { return nil }},
		{"png cut short", func() []byte {
			p := writeTestPNG(t, t.TempDir(), "whole.png", solid(16, 16, 1, 2, 3), 16, 16, 3)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			return b[:20]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range []string{"a.png", "b.png", "c.png", "d.png"} {
				writeTestPNG(t, dir, n, solid(4, 4, 9), 4, 4, 1)
			}
			bad := filepath.Join(dir, "x.png")
			require.NoError(t, os.WriteFile(bad, tc.data(), 0o644))
			_, err := NewImageFolder(dir, ImageOptions{Height: 4, Width: 4})
			require.Error(t, err)
			assert.Equal(t, "decode "+bad+": not an image OpenCV can read (empty or corrupt)", err.Error())
		})
	}
}

func TestImageFolderReadsOtherFormats(t *testing.T) {
	dir := t.TempDir()
	tile := make([]float32, 3*6*6)
	for i := range tile {
		tile[i] = 0.5
	}
	for _, name := range []string{"a.jpg", "b.bmp", "c.tiff", "d.webp", "e.ppm", "f.pgm"} {
		// A one-tile grid with scale 1 is a 10x10 grey-padded picture.
		require.NoError(t, WriteGrid(filepath.Join(dir, name), [][]float32{tile}, 3, 6, 6, 1, 1))
	}
	f, err := NewImageFolder(dir, ImageOptions{Channels: 1})
	require.NoError(t, err)
	assert.Equal(t, 6, f.Len())
	for i := range f.Len() {
		img, _, err := f.Get(i, 0)
		require.NoError(t, err)
		assert.InDelta(t, 0.5, img[5*10+5], 0.03, f.Path(i))
	}
}
