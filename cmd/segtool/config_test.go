package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/datasets"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loadConfigText(t *testing.T, body string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return LoadConfig(p)
}

func TestClassForms(t *testing.T) {
	cfg, err := loadConfigText(t, `task: seg
data:
  train: x
  ignore_index: 255
  ignore_color: "#ffffff"
  classes:
    - {name: road, color: [128, 64, 128]}
    - {name: sky, colour: "#808080"}
    - tree
`)
	require.NoError(t, err)
	cfg.Defaults()
	require.Len(t, cfg.Data.Classes, 3)
	assert.Equal(t, Color{128, 64, 128}, cfg.Data.Classes[0].Color)
	assert.Equal(t, Color{128, 128, 128}, cfg.Data.Classes[1].Color, "#rrggbb, under colour:")
	assert.Equal(t, Color(datasets.DefaultPalette(3)[2]), cfg.Data.Classes[2].Color, "a bare name gets the palette's colour of its index")
	table := cfg.classTable()
	require.NotNil(t, table.IgnoreColor)
	assert.Equal(t, [3]uint8{255, 255, 255}, *table.IgnoreColor)
	assert.Equal(t, 255, table.Ignore)

	// The resolved config in the run directory reads back the same.
	b, err := cfg.YAML()
	require.NoError(t, err)
	assert.Contains(t, string(b), "color: [128, 64, 128]")
	again, err := loadConfigText(t, string(b))
	require.NoError(t, err)
	again.Defaults()
	assert.Equal(t, cfg.Data.Classes, again.Data.Classes)
	assert.Equal(t, cfg.Data.IgnoreColor, again.Data.IgnoreColor)
}

func TestConfigErrorsSpeakTheFilesWords(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{
		{"train:\n  epohcs: 3\n", []string{`line 2: unknown key "epohcs" in train (did you mean "epochs"?)`}},
		{"model:\n  zzz: 3\n", []string{`unknown key "zzz" in model (its keys: base, depth, norm,`}},
		{"modle: {}\n", []string{`unknown key "modle" in the top level (did you mean "model"?)`}},
		{"data:\n  augment: {flip: true}\n", []string{`in data.augment (did you mean "hflip"?)`}},
		{"train:\n  batch: eight\n", []string{`line 2: "eight" is text; this key takes a whole number`}},
		{"data:\n  augment:\n    scale: 2\n", []string{`this key takes a list of numbers`}},
		{"data:\n  classes:\n    - {name: a, color: [1, 2, 300]}\n", []string{`class "a"`, "300 is outside 0..255"}},
		{"data:\n  classes:\n    - {name: a, colr: [1, 2, 3]}\n", []string{`unknown key "colr" in a class`}},
		{"data:\n  classes:\n    - {color: [1, 2, 3]}\n", []string{"needs a name"}},
	} {
		_, err := loadConfigText(t, tc.body)
		require.Error(t, err, tc.body)
		for _, w := range tc.want {
			assert.Contains(t, err.Error(), w, tc.body)
		}
		assert.NotContains(t, err.Error(), "main.", "no Go type names: %s", err)
		assert.NotContains(t, err.Error(), "\n")
	}
}

func TestEditDistance(t *testing.T) {
	assert.Equal(t, 0, editDistance("lr", "lr"))
	assert.Equal(t, 1, editDistance("epohcs", "epochs"), "a swap is one edit")
	assert.Equal(t, 1, editDistance("bach", "batch"))
	assert.Equal(t, 3, editDistance("abc", ""))
	assert.Equal(t, "", closest("zzz", []string{"base", "depth"}))
}

// A colour-coded data set with a void colour trains once the config names
// that colour (data.ignore_color), and fails naming it when it does not.
func TestTrainOnColourMasksWithVoid(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "rgb")
	colors := [][3]uint8{{0, 0, 0}, {230, 25, 75}, {60, 180, 75}, {0, 130, 200}}
	require.NoError(t, os.MkdirAll(filepath.Join(data, "images"), 0o755))
	names, err := filepath.Glob(filepath.Join(fix.data, "masks", "*.png"))
	require.NoError(t, err)
	for _, m := range names[:12] {
		f, err := os.Open(m)
		require.NoError(t, err)
		img, err := png.Decode(f)
		f.Close()
		require.NoError(t, err)
		b := img.Bounds()
		rgb := make([]uint8, 0, 3*b.Dx()*b.Dy())
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, _, _, _ := img.At(x, y).RGBA()
				c := colors[r>>8]
				if y == 0 { // a void border row
					c = [3]uint8{255, 255, 255}
				}
				rgb = append(rgb, c[:]...)
			}
		}
		base := filepath.Base(m)
		require.NoError(t, datasets.WritePNG(filepath.Join(data, "masks", base), rgb, b.Dx(), b.Dy(), 3))
		in, err := os.ReadFile(filepath.Join(fix.data, "images", base))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(data, "images", base), in, 0o644))
	}
	body := strings.Replace(tinySegConfig, "mask_encoding: index", "mask_encoding: rgb", 1)
	cfg := writeSegConfig(t, dir, body)
	code, _, errOut := segtool(t, "train", "--config", cfg, "--data", data, "--out", filepath.Join(dir, "run1"), "-q", "--epochs", "1")
	requireOneLineError(t, code, errOut, "(255,255,255)")

	body = strings.Replace(body, "mask_encoding: rgb", "mask_encoding: rgb\n  ignore_index: 255\n  ignore_color: [255, 255, 255]", 1)
	cfg = writeSegConfig(t, dir, body)
	code, out, errOut := segtool(t, "train", "--config", cfg, "--data", data, "--out", filepath.Join(dir, "run2"), "-q", "--epochs", "1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "pixel accuracy")
}
