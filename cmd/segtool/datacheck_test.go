package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/segtool/segtool/datasets"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shapesForCheck generates a small shapes set for data check.
func shapesForCheck(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shapes")
	require.NoError(t, datasets.GenerateShapes(dir, datasets.ShapesOptions{N: 6, Width: 16, Height: 16, Seed: 2}))
	return dir
}

const shapesClassConfig = `task: seg        # other keys are left alone
name: shapes
data:
  train: demo/shapes
  mask_encoding: index
  ignore_index: 255
  classes:
    - {name: background, color: [0, 0, 0]}
    - {name: circle, color: "#e6194b"}
    - name: square
      color: [60, 180, 75]
    - triangle
model: {base: 8}
`

func TestDataCheck(t *testing.T) {
	dir := shapesForCheck(t)

	code, out, errOut := segtool(t, "data", "check", dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "pairs:      6")
	assert.Contains(t, out, "auto, decided per file: index (6)")
	assert.Contains(t, out, "inferred from the masks")
	assert.Contains(t, out, "no problems found")

	cfg := filepath.Join(t.TempDir(), "shapes.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(shapesClassConfig), 0o644))
	code, out, errOut = segtool(t, "data", "check", "--classes-from", cfg, dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "classes:    4 (given), ignore index 255")
	assert.Contains(t, out, "encoding:   index (6 files)")
	assert.Contains(t, out, "circle")
	assert.Contains(t, out, "(230,25,75)", "colour given as #rrggbb")
	assert.Contains(t, out, "triangle    (128,128,0)", "a bare name gets DefaultPalette's colour of its index")

	code, out, errOut = segtool(t, "data", "check", "--json", "--classes-from", cfg, dir)
	require.Equal(t, 0, code, errOut)
	var r datasets.CheckReport
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, 6, r.Pairs)
	require.Len(t, r.Classes, 4)
	assert.Equal(t, "square", r.Classes[2].Name)
	assert.Equal(t, [3]uint8{60, 180, 75}, r.Classes[2].Color)
	assert.Equal(t, 255, r.Ignore)
	var sum int64
	for _, c := range r.Classes {
		sum += c.Pixels
	}
	assert.Equal(t, int64(6*16*16), sum)
}

func TestDataCheckProblems(t *testing.T) {
	dir := shapesForCheck(t)
	cfg := filepath.Join(t.TempDir(), "shapes.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(shapesClassConfig), 0o644))
	// A mask with a label past the table, and an image without a mask.
	bad := make([]uint8, 16*16)
	bad[0] = 9
	require.NoError(t, datasets.WritePNG(filepath.Join(dir, "masks", "0002.png"), bad, 16, 16, 1))
	require.NoError(t, datasets.WritePNG(filepath.Join(dir, "images", "extra.png"), make([]uint8, 16*16*3), 16, 16, 3))

	code, out, errOut := segtool(t, "data", "check", "--classes-from", cfg, dir)
	requireOneLineError(t, code, errOut, "data check", "1 image(s) without a mask", "1 mask value(s) not in the class table")
	assert.Contains(t, out, filepath.Join(dir, "masks", "0002.png"))
	assert.Contains(t, out, "value 9: 1 pixel")
	assert.Contains(t, out, filepath.Join(dir, "images", "extra.png"))

	code, _, errOut = segtool(t, "data", "check", t.TempDir())
	requireOneLineError(t, code, errOut, "looked for")

	code, _, errOut = segtool(t, "data", "check")
	requireOneLineError(t, code, errOut, "give one data set")

	code, _, errOut = segtool(t, "data", "check", "--encoding", "jpeg", dir)
	requireOneLineError(t, code, errOut, "--encoding", "auto, index, palette, rgb, binary")

	badCfg := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(badCfg, []byte("data:\n  classes:\n    - {name: a, color: [1, 2]}\n"), 0o644))
	code, _, errOut = segtool(t, "data", "check", "--classes-from", badCfg, dir)
	requireOneLineError(t, code, errOut, badCfg, `data.classes: class "a"`, "line 3", "[R, G, B]")
}
