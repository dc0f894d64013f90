package datasets

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckFindsEveryProblem(t *testing.T) {
	dir, bad := badSet(t)
	// A second mask with the unknown value 9, and a colour mask (under
	// index) to be a mask error.
	unknown := append([]uint8(nil), testMask...)
	unknown[1], unknown[2] = 9, 9
	writePair(t, filepath.Join(dir, "images"), filepath.Join(dir, "masks"), "unknown2", unknown)
	writeTestPNG(t, filepath.Join(dir, "images"), "colour.png", testImage(testMask), testW, testH, 3)
	writeTestPNG(t, filepath.Join(dir, "masks"), "colour.png", colourMask(testMask, table3), testW, testH, 3)

	r, err := Check(dir, LabelledOptions{Classes: table3, Encoding: MaskIndex})
	require.NoError(t, err)
	assert.Equal(t, 8, r.Pairs, "3 good, mismatch, unknown, unknown2, corrupt, colour")
	assert.Equal(t, []string{bad["lonely"][0]}, r.UnpairedImages)
	assert.Equal(t, []string{bad["orphan"][0]}, r.UnpairedMasks)
	require.Len(t, r.SizeMismatches, 1)
	assert.Equal(t, SizeMismatch{Image: bad["mismatch"][1], Mask: bad["mismatch"][0], ImageWidth: 4, ImageHeight: 3, MaskWidth: 6, MaskHeight: 3}, r.SizeMismatches[0])
	require.Len(t, r.DecodeFailures, 1)
	assert.Equal(t, bad["corrupt"][0], r.DecodeFailures[0].File)
	require.Len(t, r.MaskErrors, 1)
	assert.Contains(t, r.MaskErrors[0].Error, "colour.png is a colour image")
	require.Len(t, r.UnknownValues, 1)
	u := r.UnknownValues[0]
	assert.Equal(t, "value 9", u.Value)
	assert.Equal(t, int64(3), u.Pixels)
	assert.Equal(t, 2, u.FileCount)
	assert.Equal(t, []string{bad["unknown"][0], filepath.Join(dir, "masks", "unknown2.png")}, u.Files)
	assert.Len(t, r.Problems(), 6)
	assert.False(t, r.OK())

	var out bytes.Buffer
	r.Write(&out)
	text := out.String()
	for _, want := range []string{
		"pairs:      8", bad["lonely"][0], bad["orphan"][0], "mask " + bad["mismatch"][0] + " is 6x3 but image " + bad["mismatch"][1] + " is 4x3",
		bad["corrupt"][0], "value 9: 3 pixels in " + bad["unknown"][0], "3 classes: 0 bg, 1 road, 2 car",
		"problems: 1 image(s) without a mask",
	} {
		assert.Contains(t, text, want)
	}

	b, err := json.Marshal(r)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	for _, k := range []string{"pairs", "unpaired_images", "unpaired_masks", "size_mismatches", "decode_failures", "unknown_values", "classes", "decided", "weight_method"} {
		assert.Contains(t, back, k)
	}
}

func TestCheckHistogramAndWeights(t *testing.T) {
	dir := t.TempDir()
	imgs, masks := filepath.Join(dir, "images"), filepath.Join(dir, "masks")
	// a: 12 pixels, 4 bg, 4 road, 3 car, 1 ignore (255).
	a := []uint8{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 255}
	// b: 12 pixels, 10 bg, 2 road; no car.
	b := []uint8{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}
	writePair(t, imgs, masks, "a", a)
	writePair(t, imgs, masks, "b", b)
	r, err := Check(dir, LabelledOptions{Classes: withIgnore(table3, 255)})
	require.NoError(t, err)
	require.True(t, r.OK(), "%v", r.Problems())
	assert.Equal(t, int64(1), r.IgnoredPixels)
	assert.Equal(t, int64(23), r.LabelledPixels)
	require.Len(t, r.Classes, 3)
	assert.Equal(t, []int64{14, 6, 3}, []int64{r.Classes[0].Pixels, r.Classes[1].Pixels, r.Classes[2].Pixels})
	assert.Equal(t, []int{2, 2, 1}, []int{r.Classes[0].Images, r.Classes[1].Images, r.Classes[2].Images})
	// Median frequency: freq = pixels / labelled pixels of the masks holding
	// the class: bg 14/23, road 6/23, car 3/11; the median is car's 3/11.
	freq := []float64{14.0 / 23, 6.0 / 23, 3.0 / 11}
	med := 3.0 / 11
	for c := range 3 {
		assert.InDelta(t, med/freq[c], r.Classes[c].Weight, 1e-12, "class %d", c)
		assert.InDelta(t, float64(r.Classes[c].Pixels)/23, r.Classes[c].Fraction, 1e-12)
	}
	assert.Contains(t, r.WeightMethod, "median-frequency balancing")
	assert.Equal(t, map[string]int{"4x3": 2}, r.MaskSizes)
	var out bytes.Buffer
	r.Write(&out)
	assert.Contains(t, out.String(), "no problems found")
	assert.Contains(t, out.String(), "suggested class weights: median-frequency balancing")
}

func TestCheckIgnoredClassInTheTable(t *testing.T) {
	dir := t.TempDir()
	writePair(t, filepath.Join(dir, "images"), filepath.Join(dir, "masks"), "a", testMask)
	r, err := Check(dir, LabelledOptions{Classes: withIgnore(table3, 2)})
	require.NoError(t, err)
	assert.True(t, r.Classes[2].Ignored)
	assert.Zero(t, r.Classes[2].Weight)
	assert.Equal(t, int64(4), r.IgnoredPixels, "the four car pixels")
	assert.Equal(t, int64(8), r.LabelledPixels)
}

func TestCheckInfers(t *testing.T) {
	dir := t.TempDir()
	writeTestPNG(t, filepath.Join(dir, "image"), "0.png", solid(testW, testH, 9), testW, testH, 1)
	m := shifted(func(v uint8) uint8 { return 255 * (v % 2) })
	writeTestPNG(t, filepath.Join(dir, "label"), "0.png", m, testW, testH, 1)
	r, err := Check(dir, LabelledOptions{})
	require.NoError(t, err)
	assert.True(t, r.ClassesInferred)
	assert.Equal(t, map[MaskEncoding]int{MaskBinary: 1}, r.Decided)
	require.Len(t, r.Classes, 2)
	assert.Equal(t, -1, r.Ignore)
	var out bytes.Buffer
	r.Write(&out)
	assert.Contains(t, out.String(), "binary (1)")
	assert.Contains(t, out.String(), "inferred from the masks")
	assert.Contains(t, out.String(), `- {name: "class1", color: [128, 0, 0]}`)

	// Sparse labels: the hint suggests an ignore index.
	writeTestPNG(t, filepath.Join(dir, "label"), "0.png", shifted(func(v uint8) uint8 { return []uint8{0, 1, 200}[v] }), testW, testH, 1)
	r, err = Check(dir, LabelledOptions{})
	require.NoError(t, err)
	assert.Len(t, r.Classes, 201)
	assert.True(t, strings.Contains(strings.Join(r.Hints, " "), "data.ignore_index"), "%v", r.Hints)
}

func TestClassTable(t *testing.T) {
	assert.NoError(t, table3.Validate())
	assert.NoError(t, withIgnore(table3, 255).Validate())
	assert.NoError(t, withIgnore(table3, 1).Validate(), "an ignored class inside the table")
	for _, tb := range []ClassTable{
		{},
		{Classes: []Class{{"a", [3]uint8{}}, {"a", [3]uint8{1}}}, Ignore: -1},
		{Classes: []Class{{" ", [3]uint8{}}}, Ignore: -1},
		{Classes: table3.Classes, Ignore: -2},
		{Classes: table3.Classes, Ignore: 70000},
		{Classes: table3.Classes, Ignore: -1, IgnoreColor: &[3]uint8{1, 2, 3}},
		{Classes: table3.Classes, Ignore: 255, IgnoreColor: &[3]uint8{128, 64, 128}},
	} {
		assert.Error(t, tb.Validate(), "%+v", tb)
	}
	assert.True(t, withIgnore(table3, 1).Scored(0))
	assert.False(t, withIgnore(table3, 1).Scored(1))
	assert.False(t, table3.Scored(3))
	assert.Equal(t, "3 classes: 0 bg, 1 road, 2 car; ignore 255", withIgnore(table3, 255).String())

	long := ClassTable{Ignore: -1}
	for i := range 30 {
		long.Classes = append(long.Classes, Class{Name: string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	assert.Contains(t, long.String(), ", ..., 27 ")
}

func TestDefaultPalette(t *testing.T) {
	p := DefaultPalette(300)
	require.Len(t, p, 300)
	assert.Equal(t, [3]uint8{0, 0, 0}, p[0])
	assert.Equal(t, [3]uint8{128, 0, 0}, p[1])
	assert.Equal(t, [3]uint8{0, 128, 0}, p[2])
	assert.Equal(t, [3]uint8{64, 0, 128}, p[12], "PASCAL VOC's colour 12")
	seen := map[[3]uint8]bool{}
	for _, c := range p {
		assert.False(t, seen[c], "%v twice", c)
		seen[c] = true
	}
	assert.Equal(t, p[:5], DefaultPalette(5))
	assert.Empty(t, DefaultPalette(0))
}

func TestParseColorAndEncoding(t *testing.T) {
	for in, want := range map[string][3]uint8{
		"#80407f": {128, 64, 127}, "80407F": {128, 64, 127}, "128,64,127": {128, 64, 127},
		" (1, 2, 3) ": {1, 2, 3}, "[0,0,255]": {0, 0, 255},
	} {
		got, err := ParseColor(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "#12345", "1,2", "1,2,300", "red"} {
		_, err := ParseColor(in)
		assert.Error(t, err, in)
	}
	e, err := ParseMaskEncoding("")
	require.NoError(t, err)
	assert.Equal(t, MaskAuto, e)
	e, err = ParseMaskEncoding("RGB")
	require.NoError(t, err)
	assert.Equal(t, MaskRGB, e)
	_, err = ParseMaskEncoding("colour")
	assert.ErrorContains(t, err, "auto, index, palette, rgb, binary")
}
