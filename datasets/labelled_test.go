package datasets

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// table3 is a three-class table with distinct colours and no ignore index.
var table3 = ClassTable{Classes: []Class{
	{"bg", [3]uint8{0, 0, 0}}, {"road", [3]uint8{128, 64, 128}}, {"car", [3]uint8{64, 0, 128}},
}, Ignore: -1}

// withIgnore returns t with another ignore index.
func withIgnore(t ClassTable, ignore int) ClassTable {
	t.Ignore = ignore
	return t
}

// testMask is a 4x3 label map (W x H) used across the tests.
var testMask = []uint8{
	0, 1, 1, 2,
	0, 1, 2, 2,
	0, 0, 2, 1,
}

const testW, testH = 4, 3

// testImage is a 4x3 RGB image whose red channel is 60*label, so that a
// test can tell which label each pixel had.
func testImage(mask []uint8) []uint8 {
	out := make([]uint8, 0, 3*len(mask))
	for i, v := range mask {
		out = append(out, 60*v, uint8(10*i), 200)
	}
	return out
}

// writeGrey16 writes a 16-bit grey PNG.
func writeGrey16(t *testing.T, path string, vals []uint16, w, h int) {
	t.Helper()
	img := image.NewGray16(image.Rect(0, 0, w, h))
	for i, v := range vals {
		img.SetGray16(i%w, i/w, color.Gray16{Y: v})
	}
	writeImage(t, path, img)
}

// writePaletted writes a palette PNG whose pixels are the palette indices
// idx.
func writePaletted(t *testing.T, path string, idx []uint8, w, h int, pal [][3]uint8) {
	t.Helper()
	p := make(color.Palette, len(pal))
	for i, c := range pal {
		p[i] = color.RGBA{c[0], c[1], c[2], 255}
	}
	img := image.NewPaletted(image.Rect(0, 0, w, h), p)
	copy(img.Pix, idx)
	writeImage(t, path, img)
}

// writeImage encodes img as PNG at path, making its folder.
func writeImage(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

// colourMask maps labels to the table's colours (RGB interleaved).
func colourMask(mask []uint8, t ClassTable) []uint8 {
	out := make([]uint8, 0, 3*len(mask))
	for _, v := range mask {
		c := t.Classes[v].Color
		out = append(out, c[0], c[1], c[2])
	}
	return out
}

// writePair writes image and grey index mask name.png into imgDir and
// maskDir.
func writePair(t *testing.T, imgDir, maskDir, name string, mask []uint8) {
	t.Helper()
	writeTestPNG(t, imgDir, name+".png", testImage(mask), testW, testH, 3)
	writeTestPNG(t, maskDir, name+".png", mask, testW, testH, 1)
}

// shifted returns testMask with every label replaced by f(label).
func shifted(f func(uint8) uint8) []uint8 {
	out := make([]uint8, len(testMask))
	for i, v := range testMask {
		out[i] = f(v)
	}
	return out
}

// flipped is testMask with the labels 1 and 2 swapped, to tell pairs apart.
var flipped = shifted(func(v uint8) uint8 { return [3]uint8{0, 2, 1}[v] })

// requireLabels checks pair i's mask and, when red is not nil, that its
// image's red channel is 60 times red's labels (see testImage).
func requireLabels(t *testing.T, l *Labelled, i int, want, red []uint8) {
	t.Helper()
	img, mask, err := l.Get(i, 0)
	require.NoError(t, err)
	require.Len(t, mask, len(want))
	for k, v := range want {
		require.Equal(t, int32(v), mask[k], "pair %d pixel %d", i, k)
	}
	c, h, w := l.Shape()
	require.Len(t, img, c*h*w)
	for k, v := range red {
		require.InDelta(t, float64(60*v)/255, img[k], 1e-6, "red channel of pixel %d", k)
	}
}

func TestOpenLabelledLayouts(t *testing.T) {
	type layout struct {
		name  string
		build func(t *testing.T, dir string) string // returns the spec
		// images and masks, in pair order
		wantImg, wantMask []string
	}
	folders := func(imgSub, maskSub string) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			writePair(t, filepath.Join(dir, imgSub), filepath.Join(dir, maskSub), "a", testMask)
			writePair(t, filepath.Join(dir, imgSub), filepath.Join(dir, maskSub), "b", flipped)
			return dir
		}
	}
	layouts := []layout{
		{"images+masks", folders("images", "masks"), []string{"images/a.png", "images/b.png"}, []string{"masks/a.png", "masks/b.png"}},
		{"images+labels", folders("images", "labels"), []string{"images/a.png", "images/b.png"}, []string{"labels/a.png", "labels/b.png"}},
		{"images+annotations", folders("images", "annotations"), []string{"images/a.png", "images/b.png"}, []string{"annotations/a.png", "annotations/b.png"}},
		{"image+label (ISBI membrane)", folders("image", "label"), []string{"image/a.png", "image/b.png"}, []string{"label/a.png", "label/b.png"}},
		{"any extension on either side, mask suffix", func(t *testing.T, dir string) string {
			// A BMP image whose mask is a_mask.png, and a PNG image whose
			// mask is b.bmp (grey BMPs keep their values).
			imgs, masks := filepath.Join(dir, "images"), filepath.Join(dir, "masks")
			require.NoError(t, encodeAtomic(filepath.Join(imgs, "a.bmp"), ".bmp", bgr(testImage(testMask)), testW, testH, 3))
			writeTestPNG(t, masks, "a_mask.png", testMask, testW, testH, 1)
			writeTestPNG(t, imgs, "b.png", testImage(flipped), testW, testH, 3)
			require.NoError(t, encodeAtomic(filepath.Join(masks, "b.bmp"), ".bmp", flipped, testW, testH, 1))
			require.NoError(t, os.WriteFile(filepath.Join(masks, "notes.txt"), []byte("ignored"), 0o644))
			return dir
		}, []string{"images/a.bmp", "images/b.png"}, []string{"masks/a_mask.png", "masks/b.bmp"}},
		{"split dir/train", func(t *testing.T, dir string) string {
			writePair(t, filepath.Join(dir, "train"), filepath.Join(dir, "trainannot"), "a", testMask)
			writePair(t, filepath.Join(dir, "train"), filepath.Join(dir, "trainannot"), "b", flipped)
			writePair(t, filepath.Join(dir, "val"), filepath.Join(dir, "valannot"), "z", testMask)
			return filepath.Join(dir, "train")
		}, []string{"train/a.png", "train/b.png"}, []string{"trainannot/a.png", "trainannot/b.png"}},
		{"split dir:val", func(t *testing.T, dir string) string {
			writePair(t, filepath.Join(dir, "train"), filepath.Join(dir, "trainannot"), "z", testMask)
			writePair(t, filepath.Join(dir, "val"), filepath.Join(dir, "valannot"), "a", testMask)
			writePair(t, filepath.Join(dir, "val"), filepath.Join(dir, "valannot"), "b", flipped)
			return dir + ":val"
		}, []string{"val/a.png", "val/b.png"}, []string{"valannot/a.png", "valannot/b.png"}},
		{"list .txt", func(t *testing.T, dir string) string {
			writePair(t, filepath.Join(dir, "x"), filepath.Join(dir, "y"), "a", testMask)
			writePair(t, filepath.Join(dir, "x"), filepath.Join(dir, "y"), "b", flipped)
			list := "# image mask\n\nx/a.png y/a.png\n  x/b.png\ty/b.png  \n"
			p := filepath.Join(dir, "pairs.txt")
			require.NoError(t, os.WriteFile(p, []byte(list), 0o644))
			return p
		}, []string{"x/a.png", "x/b.png"}, []string{"y/a.png", "y/b.png"}},
		{"list .csv with header", func(t *testing.T, dir string) string {
			writePair(t, filepath.Join(dir, "my images"), filepath.Join(dir, "y"), "a", testMask)
			writePair(t, filepath.Join(dir, "my images"), filepath.Join(dir, "y"), "b", flipped)
			list := "image,mask\nmy images/a.png, y/a.png\n\"my images/b.png\",y/b.png\n"
			p := filepath.Join(dir, "pairs.csv")
			require.NoError(t, os.WriteFile(p, []byte(list), 0o644))
			return p
		}, []string{"my images/a.png", "my images/b.png"}, []string{"y/a.png", "y/b.png"}},
	}
	for _, lc := range layouts {
		t.Run(lc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := lc.build(t, dir)
			l, err := OpenLabelled(spec, LabelledOptions{Classes: table3})
			require.NoError(t, err)
			require.Equal(t, 2, l.Len())
			for i := range 2 {
				assert.Equal(t, filepath.Join(dir, lc.wantImg[i]), l.ImagePath(i))
				assert.Equal(t, filepath.Join(dir, lc.wantMask[i]), l.MaskPath(i))
			}
			c, h, w := l.Shape()
			assert.Equal(t, []int{3, testH, testW}, []int{c, h, w}, "size of the first pair by default")
			requireLabels(t, l, 0, testMask, testMask)
			requireLabels(t, l, 1, flipped, flipped)
			assert.Equal(t, 0, l.Skipped())
			assert.NotEmpty(t, l.Layout())
		})
	}
}

// bgr swaps interleaved RGB to OpenCV's BGR.
func bgr(rgb []uint8) []uint8 {
	out := append([]uint8(nil), rgb...)
	for i := 0; i < len(out); i += 3 {
		out[i], out[i+2] = out[i+2], out[i]
	}
	return out
}

func TestOpenLabelledShapes(t *testing.T) {
	dir := t.TempDir()
	opt := ShapesOptions{N: 6, Width: 24, Height: 20, Seed: 3}
	require.NoError(t, GenerateShapes(dir, opt))
	l, err := OpenLabelled(dir, LabelledOptions{Classes: ClassTable{Classes: ShapesClasses, Ignore: -1}})
	require.NoError(t, err)
	require.Equal(t, 6, l.Len())
	assert.Equal(t, map[MaskEncoding]int{MaskIndex: 6}, l.Encodings())
	for i := range 6 {
		rgb, want := RenderShapesScene(opt, i)
		img, mask, err := l.Get(i, 0)
		require.NoError(t, err)
		for k, v := range want {
			require.Equal(t, int32(v), mask[k])
		}
		assert.InDelta(t, float64(rgb[0])/255, img[0], 1e-6, "red of the first pixel")
		nimg, h, w, nmask, err := l.Native(i)
		require.NoError(t, err)
		assert.Equal(t, []int{20, 24}, []int{h, w})
		assert.Equal(t, img, nimg, "native size is the training size here")
		assert.Equal(t, mask, nmask)
	}
}

func TestMaskEncodings(t *testing.T) {
	tbl := withIgnore(table3, 255)
	cases := []struct {
		name    string
		enc     MaskEncoding
		table   ClassTable
		write   func(t *testing.T, path string)
		want    []uint8 // labels; 255 marks the ignore index
		decided MaskEncoding
	}{
		{"index 8-bit", MaskIndex, tbl, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), testMask, testW, testH, 1)
		}, testMask, MaskIndex},
		{"auto grey is index, with ignore 255", MaskAuto, tbl, func(t *testing.T, p string) {
			m := append([]uint8(nil), testMask...)
			m[0] = 255
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), m, testW, testH, 1)
		}, append([]uint8{255}, testMask[1:]...), MaskIndex},
		{"index saved as RGB with equal channels", MaskAuto, tbl, func(t *testing.T, p string) {
			rgb := make([]uint8, 0, 3*len(testMask))
			for _, v := range testMask {
				rgb = append(rgb, v, v, v)
			}
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), rgb, testW, testH, 3)
		}, testMask, MaskIndex},
		{"palette PNG (auto)", MaskAuto, tbl, func(t *testing.T, p string) {
			// The palette's colours are not the classes': only indices count.
			writePaletted(t, p, testMask, testW, testH, [][3]uint8{{9, 9, 9}, {200, 10, 10}, {10, 200, 10}})
		}, testMask, MaskPalette},
		{"palette PNG (palette)", MaskPalette, tbl, func(t *testing.T, p string) {
			writePaletted(t, p, testMask, testW, testH, [][3]uint8{{9, 9, 9}, {200, 10, 10}, {10, 200, 10}})
		}, testMask, MaskPalette},
		{"rgb colours through the table (auto)", MaskAuto, tbl, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), colourMask(testMask, tbl), testW, testH, 3)
		}, testMask, MaskRGB},
		{"rgb with an ignore colour", MaskRGB, func() ClassTable {
			t := tbl
			t.IgnoreColor = &[3]uint8{255, 255, 255}
			return t
		}(), func(t *testing.T, p string) {
			rgb := colourMask(testMask, tbl)
			rgb[0], rgb[1], rgb[2] = 255, 255, 255
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), rgb, testW, testH, 3)
		}, append([]uint8{255}, testMask[1:]...), MaskRGB},
		{"binary 0/255 (auto, two classes)", MaskAuto, ClassTable{Classes: table3.Classes[:2], Ignore: -1}, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), shifted(func(v uint8) uint8 { return 255 * (v % 2) }), testW, testH, 1)
		}, shifted(func(v uint8) uint8 { return v % 2 }), MaskBinary},
		{"binary (binary)", MaskBinary, ClassTable{Classes: table3.Classes[:2], Ignore: -1}, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), shifted(func(v uint8) uint8 { return 255 * (v % 2) }), testW, testH, 1)
		}, shifted(func(v uint8) uint8 { return v % 2 }), MaskBinary},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestPNG(t, filepath.Join(dir, "images"), "a.png", testImage(testMask), testW, testH, 3)
			tc.write(t, filepath.Join(dir, "masks", "a.png"))
			l, err := OpenLabelled(dir, LabelledOptions{Classes: tc.table, Encoding: tc.enc})
			require.NoError(t, err)
			requireLabels(t, l, 0, tc.want, nil)
			assert.Equal(t, map[MaskEncoding]int{tc.decided: 1}, l.Encodings())
			r, err := Check(dir, LabelledOptions{Classes: tc.table, Encoding: tc.enc})
			require.NoError(t, err)
			assert.Equal(t, map[MaskEncoding]int{tc.decided: 1}, r.Decided, "Check says what was decided")
			assert.True(t, r.OK(), "%v", r.Problems())
		})
	}
}

func TestMask16BitAndLargeIgnore(t *testing.T) {
	dir := t.TempDir()
	writeTestPNG(t, filepath.Join(dir, "images"), "a.png", testImage(testMask), testW, testH, 3)
	vals := make([]uint16, len(testMask))
	for i, v := range testMask {
		vals[i] = uint16(v)
	}
	vals[5] = 1000 // ignore index past 8 bits
	writeGrey16(t, filepath.Join(dir, "masks", "a.png"), vals, testW, testH)
	l, err := OpenLabelled(dir, LabelledOptions{Classes: withIgnore(table3, 1000), Height: 6, Width: 8,
		Augment: &Augment{ScaleMin: 0.5, ScaleMax: 0.5}})
	require.NoError(t, err)
	_, mask, err := l.Get(0, 1)
	require.NoError(t, err)
	n := 0
	for _, v := range mask {
		require.True(t, v <= 2 || v == 1000, "label %d", v)
		if v == 1000 {
			n++
		}
	}
	assert.Greater(t, n, 24, "zoomed out by half: the border is the ignore index 1000")
	_, _, _, native, err := l.Native(0)
	require.NoError(t, err)
	assert.Equal(t, int32(1000), native[5])
}

func TestMaskEncodingErrors(t *testing.T) {
	cases := []struct {
		name  string
		enc   MaskEncoding
		table ClassTable
		write func(t *testing.T, path string)
		want  []string
	}{
		{"index value not in the table", MaskAuto, table3, func(t *testing.T, p string) {
			m := append([]uint8(nil), testMask...)
			m[3], m[4] = 7, 7
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), m, testW, testH, 1)
		}, []string{"value 7 (2 pixels)", "3 classes: 0 bg, 1 road, 2 car", "no ignore index"}},
		{"the ignore index is allowed, others not", MaskAuto, withIgnore(table3, 255), func(t *testing.T, p string) {
			m := append([]uint8(nil), testMask...)
			m[3], m[4] = 255, 254
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), m, testW, testH, 1)
		}, []string{"value 254 (1 pixel)", "ignore 255"}},
		{"colour not in the table", MaskRGB, table3, func(t *testing.T, p string) {
			rgb := colourMask(testMask, table3)
			rgb[3], rgb[4], rgb[5] = 1, 2, 3
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), rgb, testW, testH, 3)
		}, []string{"colour (1,2,3) (1 pixel)", "1 road (128,64,128)"}},
		{"binary value other than 0/255", MaskBinary, ClassTable{Classes: table3.Classes[:2], Ignore: -1}, func(t *testing.T, p string) {
			m := shifted(func(v uint8) uint8 { return 255 * (v % 2) })
			m[2] = 128
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), m, testW, testH, 1)
		}, []string{"value 128 (1 pixel)", "neither 0 nor 255"}},
		{"colour mask read as index", MaskIndex, table3, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), colourMask(testMask, table3), testW, testH, 3)
		}, []string{"is a colour image", "pixel 1,0 is (128,64,128)", "use mask encoding rgb"}},
		{"grey mask read as palette", MaskPalette, table3, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), testMask, testW, testH, 1)
		}, []string{"8-bit grey image, not a palette"}},
		{"colour classes that share a colour", MaskRGB, ClassTable{Classes: []Class{{"a", [3]uint8{1, 1, 1}}, {"b", [3]uint8{1, 1, 1}}}, Ignore: -1}, func(t *testing.T, p string) {
			writeTestPNG(t, filepath.Dir(p), filepath.Base(p), solid(testW, testH, 1, 1, 1), testW, testH, 3)
		}, []string{"same colour (1,1,1)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestPNG(t, filepath.Join(dir, "images"), "a.png", testImage(testMask), testW, testH, 3)
			mask := filepath.Join(dir, "masks", "a.png")
			tc.write(t, mask)
			_, err := OpenLabelled(dir, LabelledOptions{Classes: tc.table, Encoding: tc.enc})
			require.Error(t, err)
			if !strings.Contains(tc.name, "share") {
				assert.Contains(t, err.Error(), mask, "the error names the file")
			}
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// badSet writes a folder with 3 good pairs and one of each problem; it
// returns the folder and the files each problem is about.
func badSet(t *testing.T) (dir string, bad map[string][]string) {
	dir = t.TempDir()
	imgs, masks := filepath.Join(dir, "images"), filepath.Join(dir, "masks")
	for _, n := range []string{"good1", "good2", "good3"} {
		writePair(t, imgs, masks, n, testMask)
	}
	writeTestPNG(t, imgs, "mismatch.png", testImage(testMask), testW, testH, 3)
	writeTestPNG(t, masks, "mismatch.png", solid(testW+2, testH, 0), testW+2, testH, 1)
	unknown := shifted(func(v uint8) uint8 { return v })
	unknown[0] = 9
	writePair(t, imgs, masks, "unknown", unknown)
	writeTestPNG(t, masks, "corrupt.png", testMask, testW, testH, 1)
	require.NoError(t, os.WriteFile(filepath.Join(imgs, "corrupt.png"), []byte("not a png"), 0o644))
	writeTestPNG(t, imgs, "lonely.png", testImage(testMask), testW, testH, 3)
	writeTestPNG(t, masks, "orphan.png", testMask, testW, testH, 1)
	return dir, map[string][]string{
		"mismatch": {filepath.Join(masks, "mismatch.png"), filepath.Join(imgs, "mismatch.png"), "6x3", "4x3"},
		"unknown":  {filepath.Join(masks, "unknown.png"), "value 9"},
		"corrupt":  {filepath.Join(imgs, "corrupt.png"), "decode"},
		"lonely":   {filepath.Join(imgs, "lonely.png")},
		"orphan":   {filepath.Join(masks, "orphan.png")},
	}
}

func TestOpenLabelledErrorsNameTheFile(t *testing.T) {
	for _, name := range []string{"mismatch", "unknown", "corrupt", "lonely"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			imgs, masks := filepath.Join(dir, "images"), filepath.Join(dir, "masks")
			writePair(t, imgs, masks, "good", testMask)
			full, bad := badSet(t)
			// Copy just this problem's files into a fresh set.
			for _, sub := range []string{"images", "masks"} {
				if b, err := os.ReadFile(filepath.Join(full, sub, name+".png")); err == nil {
					require.NoError(t, os.WriteFile(filepath.Join(dir, sub, name+".png"), b, 0o644))
				}
			}
			_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
			require.Error(t, err)
			for _, w := range bad[name] {
				w = strings.Replace(w, full, dir, 1)
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	t.Run("mask file that does not decode", func(t *testing.T) {
		dir := t.TempDir()
		writeTestPNG(t, filepath.Join(dir, "images"), "a.png", testImage(testMask), testW, testH, 3)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "masks"), 0o755))
		mask := filepath.Join(dir, "masks", "a.png")
		require.NoError(t, os.WriteFile(mask, pngSignature, 0o644)) // a PNG cut short
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "decode "+mask)
	})
	t.Run("empty folder", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, dir)
		assert.ErrorContains(t, err, "looked for: (1) a folder with images/ and masks/")
		assert.ErrorContains(t, err, "trainannot")
		assert.ErrorContains(t, err, "list file")
		_, err = Check(dir, LabelledOptions{Classes: table3})
		assert.ErrorContains(t, err, "looked for")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := OpenLabelled(filepath.Join(t.TempDir(), "nope"), LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "does not exist")
	})
	t.Run("no pairs", func(t *testing.T) {
		dir := t.TempDir()
		writeTestPNG(t, filepath.Join(dir, "images"), "a.png", testImage(testMask), testW, testH, 3)
		writeTestPNG(t, filepath.Join(dir, "masks"), "b.png", testMask, testW, testH, 1)
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "1 image(s) without a mask")
		assert.ErrorContains(t, err, filepath.Join(dir, "images", "a.png"))
		assert.ErrorContains(t, err, filepath.Join(dir, "masks", "b.png"))
		_, err = OpenLabelled(dir, LabelledOptions{Classes: table3, SkipBad: true, Warn: &bytes.Buffer{}})
		require.ErrorContains(t, err, "no image has a mask of the same name")
		assert.ErrorContains(t, err, "looked for")
	})
	t.Run("images without mask folder", func(t *testing.T) {
		dir := t.TempDir()
		writeTestPNG(t, filepath.Join(dir, "images"), "a.png", testImage(testMask), testW, testH, 3)
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "no mask folder")
		assert.ErrorContains(t, err, "masks/, mask/, labels/")
	})
	t.Run("root of split folders", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, filepath.Join(dir, "train"), filepath.Join(dir, "trainannot"), "a", testMask)
		writePair(t, filepath.Join(dir, "val"), filepath.Join(dir, "valannot"), "a", testMask)
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "holds split folders (train+trainannot, val+valannot)")
		assert.ErrorContains(t, err, filepath.Join(dir, "train"))
		_, err = OpenLabelled(dir+":test", LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "has no folder")
	})
	t.Run("two files with one name", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, filepath.Join(dir, "images"), filepath.Join(dir, "masks"), "a", testMask)
		writeTestPNG(t, filepath.Join(dir, "masks"), "a.bmp", testMask, testW, testH, 1)
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "same name")
	})
	t.Run("list line", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "l.txt")
		require.NoError(t, os.WriteFile(p, []byte("a.png b.png\na.png\n"), 0o644))
		_, err := OpenLabelled(p, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, p+" line 2")
	})
	t.Run("different sizes without a training size", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, filepath.Join(dir, "images"), filepath.Join(dir, "masks"), "a", testMask)
		writeTestPNG(t, filepath.Join(dir, "images"), "b.png", solid(8, 8, 1, 2, 3), 8, 8, 3)
		writeTestPNG(t, filepath.Join(dir, "masks"), "b.png", solid(8, 8, 1), 8, 8, 1)
		_, err := OpenLabelled(dir, LabelledOptions{Classes: table3})
		require.ErrorContains(t, err, "8x8 but the first image is 4x3")
		l, err := OpenLabelled(dir, LabelledOptions{Classes: table3, Height: 6, Width: 6})
		require.NoError(t, err, "with a training size both are resized")
		require.Equal(t, 2, l.Len())
		_, h, w, _, err := l.Native(1)
		require.NoError(t, err)
		assert.Equal(t, []int{8, 8}, []int{h, w})
	})
	t.Run("bad options", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, filepath.Join(dir, "images"), filepath.Join(dir, "masks"), "a", testMask)
		for _, o := range []LabelledOptions{
			{Classes: table3, Channels: 2},
			{Classes: table3, Height: 5},
			{Classes: table3, Encoding: "jpeg"},
			{Classes: table3, Augment: &Augment{Rotate: -1}},
			{Classes: ClassTable{Classes: []Class{{"", [3]uint8{}}}}},
		} {
			_, err := OpenLabelled(dir, o)
			assert.Error(t, err, "%+v", o)
		}
	})
}

func TestSkipBad(t *testing.T) {
	dir, bad := badSet(t)
	var warn bytes.Buffer
	l, err := OpenLabelled(dir, LabelledOptions{Classes: table3, SkipBad: true, Warn: &warn})
	require.NoError(t, err)
	assert.Equal(t, 3, l.Len())
	assert.Equal(t, 5, l.Skipped(), "mismatch, unknown, corrupt, lonely, orphan")
	lines := strings.Split(strings.TrimSpace(warn.String()), "\n")
	require.Len(t, lines, 6, warn.String())
	assert.Equal(t, "warning: "+dir+": 5 bad file(s) or pair(s) skipped (--skip-bad), 3 pairs used", lines[5], "the count comes last")
	lines = lines[:5]
	for name, files := range bad {
		found := false
		for _, line := range lines {
			if strings.Contains(line, files[0]) {
				found = true
				assert.True(t, strings.HasPrefix(line, "warning: skipping"), line)
			}
		}
		assert.True(t, found, "a warning names %s", name)
	}
	for i := range l.Len() {
		assert.Contains(t, l.ImagePath(i), "good")
		requireLabels(t, l, i, testMask, testMask)
	}

	// Strict: the first problem in file order is the error.
	_, err = OpenLabelled(dir, LabelledOptions{Classes: table3})
	require.Error(t, err)

	// Nothing good left.
	only := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(only, "images"), 0o755))
	writeTestPNG(t, filepath.Join(only, "masks"), "a.png", testMask, testW, testH, 1)
	require.NoError(t, os.WriteFile(filepath.Join(only, "images", "a.png"), []byte("junk"), 0o644))
	_, err = OpenLabelled(only, LabelledOptions{Classes: table3, SkipBad: true, Warn: &warn})
	require.ErrorContains(t, err, "all 1 pairs are bad")
}

func TestInferredClasses(t *testing.T) {
	t.Run("binary", func(t *testing.T) {
		dir := t.TempDir()
		writeTestPNG(t, filepath.Join(dir, "image"), "0.png", solid(testW, testH, 7), testW, testH, 1)
		writeTestPNG(t, filepath.Join(dir, "label"), "0.png", shifted(func(v uint8) uint8 { return 255 * (v % 2) }), testW, testH, 1)
		l, err := OpenLabelled(dir, LabelledOptions{Channels: 1})
		require.NoError(t, err)
		assert.True(t, l.Inferred())
		tb := l.Classes()
		assert.Len(t, tb.Classes, 2)
		assert.Equal(t, -1, tb.Ignore, "the zero table means no ignore index")
		requireLabels(t, l, 0, shifted(func(v uint8) uint8 { return v % 2 }), nil)
	})
	t.Run("colours", func(t *testing.T) {
		dir := t.TempDir()
		writeTestPNG(t, filepath.Join(dir, "images"), "0.png", testImage(testMask), testW, testH, 3)
		writeTestPNG(t, filepath.Join(dir, "masks"), "0.png", colourMask(testMask, table3), testW, testH, 3)
		l, err := OpenLabelled(dir, LabelledOptions{})
		require.NoError(t, err)
		tb := l.Classes()
		require.Len(t, tb.Classes, 3)
		// Sorted by colour: (0,0,0) bg, (64,0,128) car, (128,64,128) road.
		assert.Equal(t, "#000000", tb.Classes[0].Name)
		assert.Equal(t, [3]uint8{64, 0, 128}, tb.Classes[1].Color)
		requireLabels(t, l, 0, shifted(func(v uint8) uint8 { return [3]uint8{0, 2, 1}[v] }), testMask)
	})
	t.Run("index with an ignore index", func(t *testing.T) {
		dir := t.TempDir()
		m := append([]uint8(nil), testMask...)
		m[0] = 255
		writePair(t, filepath.Join(dir, "images"), filepath.Join(dir, "masks"), "0", m)
		l, err := OpenLabelled(dir, LabelledOptions{Classes: ClassTable{Ignore: 255}})
		require.NoError(t, err)
		assert.Len(t, l.Classes().Classes, 3, "0..2; 255 is the ignore index")
		assert.Equal(t, DefaultPalette(3)[2], l.Classes().Classes[2].Color)
	})
}

func TestLabelledResizeAndCache(t *testing.T) {
	dir := t.TempDir()
	// 8x6 masks made of 2x2 blocks: halving keeps every block's label.
	const w, h = 8, 6
	blocks := make([]uint8, w*h)
	for y := range h {
		for x := range w {
			blocks[y*w+x] = testMask[(y/2)*testW+x/2]
		}
	}
	img := make([]uint8, 0, 3*w*h)
	for _, v := range blocks {
		img = append(img, 60*v, 0, 0)
	}
	for _, n := range []string{"a", "b", "c"} {
		writeTestPNG(t, filepath.Join(dir, "images"), n+".png", img, w, h, 3)
		writeTestPNG(t, filepath.Join(dir, "masks"), n+".png", blocks, w, h, 1)
	}
	aug := &Augment{HFlip: true, ScaleMin: 0.8, ScaleMax: 1.3, Rotate: 15, Brightness: 0.3}
	cached, err := OpenLabelled(dir, LabelledOptions{Classes: table3, Height: testH, Width: testW, Augment: aug})
	require.NoError(t, err)
	require.NotNil(t, cached.imgs, "small sets are cached")
	assert.NotNil(t, cached.native)
	plain, err := OpenLabelled(dir, LabelledOptions{Classes: table3, Height: testH, Width: testW, CacheBytes: -1, Augment: aug})
	require.NoError(t, err)
	require.Nil(t, plain.imgs, "CacheBytes < 0: decoded per Get")
	assert.Nil(t, plain.native)
	noaug, err := OpenLabelled(dir, LabelledOptions{Classes: table3, Height: testH, Width: testW})
	require.NoError(t, err)
	requireLabels(t, noaug, 0, testMask, testMask)
	for i := range 3 {
		for _, seed := range []uint64{0, 1, 99} {
			a, am, err := cached.Get(i, seed)
			require.NoError(t, err)
			b, bm, err := plain.Get(i, seed)
			require.NoError(t, err)
			require.Equal(t, a, b, "cached and uncached give the same")
			require.Equal(t, am, bm)
		}
		a, ah, aw, am, err := cached.Native(i)
		require.NoError(t, err)
		a2, _, _, am2, err := cached.Native(i) // from the cache now
		require.NoError(t, err)
		b, bh, bw, bm, err := plain.Native(i)
		require.NoError(t, err)
		assert.Equal(t, []int{h, w, h, w}, []int{ah, aw, bh, bw})
		assert.Equal(t, a, b)
		assert.Equal(t, a, a2)
		assert.Equal(t, am, bm)
		assert.Equal(t, am, am2)
		for k, v := range blocks {
			require.Equal(t, int32(v), am[k])
		}
	}
	_, _, err = cached.Get(3, 0)
	assert.ErrorContains(t, err, "out of range")
	_, _, _, _, err = cached.Native(-1)
	assert.ErrorContains(t, err, "out of range")
}
