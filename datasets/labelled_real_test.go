package datasets

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// realData is the project's shared folder of real data sets
// (../shared/data/README.md); tests that read it skip where it is absent.
var realData = filepath.Join("..", "..", "shared", "data")

// needReal skips the test unless the real data set sub is present.
func needReal(t *testing.T, sub string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(realData, sub))
	require.NoError(t, err)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("real data %s not present (%v): this test reads the shared CamVid/membrane copies, see ../shared/data/README.md", p, err)
	}
	return p
}

// camvidTable is CamVid's 11 classes with void (11) ignored.
func camvidTable() ClassTable {
	t := ClassTable{Ignore: 11}
	for _, n := range []string{"Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"} {
		t.Classes = append(t.Classes, Class{Name: n})
	}
	return t
}

// TestRealCamVid reads the first pairs of CamVid's training split (through
// a list file, to stay fast) the way training does, and checks them.
func TestRealCamVid(t *testing.T) {
	root := needReal(t, "camvid")
	entries, err := os.ReadDir(filepath.Join(root, "train"))
	require.NoError(t, err)
	var list strings.Builder
	n := 0
	for _, e := range entries {
		if n == 12 {
			break
		}
		fmt.Fprintf(&list, "%s,%s\n", filepath.Join(root, "train", e.Name()), filepath.Join(root, "trainannot", e.Name()))
		n++
	}
	lf := filepath.Join(t.TempDir(), "camvid.csv")
	require.NoError(t, os.WriteFile(lf, []byte(list.String()), 0o644))

	r, err := Check(lf, LabelledOptions{Classes: camvidTable()})
	require.NoError(t, err)
	var out bytes.Buffer
	r.Write(&out)
	t.Log("\n" + out.String())
	require.True(t, r.OK(), "%v", r.Problems())
	assert.Equal(t, map[MaskEncoding]int{MaskIndex: n}, r.Decided)
	assert.Equal(t, map[string]int{"480x360": n}, r.MaskSizes)

	l, err := OpenLabelled(lf, LabelledOptions{Classes: camvidTable(), Height: 192, Width: 256,
		Augment: &Augment{HFlip: true, ScaleMin: 0.75, ScaleMax: 1.5, Rotate: 5, Brightness: 0.2}})
	require.NoError(t, err)
	img, mask, err := l.Get(0, 1)
	require.NoError(t, err)
	assert.Len(t, img, 3*192*256)
	for _, v := range mask {
		require.True(t, v >= 0 && v <= 11, "label %d", v)
	}
	nimg, h, w, nmask, err := l.Native(0)
	require.NoError(t, err)
	assert.Equal(t, []int{360, 480}, []int{h, w})
	assert.Len(t, nimg, 3*360*480)
	assert.Len(t, nmask, 360*480)

	// The split specs find the pairs (listing only: decoding all 367 would
	// cost seconds).
	for _, spec := range []string{filepath.Join(root, "train"), root + ":train"} {
		ps, err := findPairs(spec)
		require.NoError(t, err)
		assert.Len(t, ps.pairs, 367)
		assert.Empty(t, ps.unpairedImages)
		assert.Empty(t, ps.unpairedMasks)
		assert.Equal(t, filepath.Join(root, "trainannot", entries[0].Name()), ps.pairs[0].mask)
	}
}

// TestRealMembrane checks the ISBI membrane set: image/ + label/, binary
// 0/255 labels, inferred as two classes.
func TestRealMembrane(t *testing.T) {
	root := needReal(t, "membrane")
	r, err := Check(root, LabelledOptions{Channels: 1})
	require.NoError(t, err)
	var out bytes.Buffer
	r.Write(&out)
	t.Log("\n" + out.String())
	require.True(t, r.OK(), "%v", r.Problems())
	assert.Equal(t, 30, r.Pairs)
	assert.Equal(t, map[MaskEncoding]int{MaskBinary: 30}, r.Decided)
	require.Len(t, r.Classes, 2)
	assert.InDelta(t, 0.22, r.Classes[0].Fraction, 0.02, "about 22% membrane")

	l, err := OpenLabelled(root, LabelledOptions{Channels: 1, Height: 64, Width: 64,
		Classes: ClassTable{Classes: []Class{{"membrane", [3]uint8{255, 0, 0}}, {"cell", [3]uint8{0, 0, 0}}}, Ignore: -1}})
	require.NoError(t, err)
	assert.Equal(t, 30, l.Len())
	_, mask, err := l.Get(0, 0)
	require.NoError(t, err)
	for _, v := range mask {
		require.True(t, v == 0 || v == 1)
	}
}
