package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/seg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const tinySegConfig = `task: seg
name: tinyseg
data:
  channels: 3
  height: 16
  width: 16
  val_fraction: 0.25
  mask_encoding: index
  classes:
    - {name: background, color: [0, 0, 0]}
    - {name: circle, color: [230, 25, 75]}
    - {name: square, color: [60, 180, 75]}
    - {name: triangle, color: [0, 130, 200]}
  augment:
    hflip: true
model:
  base: 4
  depth: 2
  loss: ce
train:
  epochs: 3
  batch: 4
  lr: 0.01
  seed: 3
`

func writeSegConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "seg.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestSegTrainEvalFromAutoEncoder(t *testing.T) {
	setup(t) // shapes data at 16x16 and an AE (base 4, depth 2) trained on them
	dir := t.TempDir()
	cfg := writeSegConfig(t, dir, tinySegConfig)
	run := filepath.Join(dir, "run")
	code, out, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", run, "-q",
		"--init-encoder", filepath.Join(fix.run, "best.safetensors"), "--freeze-encoder-epochs", "1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "encoder initialised from")
	assert.Contains(t, out, "frozen for the first 1 epochs")
	assert.Contains(t, out, "pixel accuracy")
	for _, f := range []string{"best.safetensors", "confusion.png", "predictions.png", "metrics.jsonl", "curves.png"} {
		assert.FileExists(t, filepath.Join(run, f))
	}
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	require.NoError(t, err)
	var m map[string]float64
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &m))
	assert.Contains(t, m, "val_miou")
	assert.Contains(t, m, "val_iou_background")
	assert.Greater(t, m["val_loss"], 0.0, "the training loss on the validation set")

	img := filepath.Join(dir, "cm.png")
	code, out, errOut = segtool(t, "eval", "--model", filepath.Join(run, "best.safetensors"), "--data", fix.data, "--json", "--confusion", img)
	require.Equal(t, 0, code, errOut)
	var rep segEvalReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, 32, rep.Images)
	assert.Equal(t, []string{"background", "circle", "square", "triangle"}, rep.Classes)
	assert.Greater(t, rep.Scores.PixelAccuracy, 0.3)
	var total int64
	for _, row := range rep.Matrix {
		for _, v := range row {
			total += v
		}
	}
	assert.Equal(t, int64(32*16*16), total, "every pixel of every mask, at the masks' resolution")
	assert.FileExists(t, img)
}

func TestSegBadInput(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	t.Run("encoder of another shape", func(t *testing.T) {
		cfg := writeSegConfig(t, dir, strings.Replace(tinySegConfig, "base: 4", "base: 8", 1))
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(dir, "r1"), "-q",
			"--init-encoder", filepath.Join(fix.run, "best.safetensors"))
		requireOneLineError(t, code, errOut, "encoder.inc.conv1.weight", "[4 3 3 3]", "[8 3 3 3]")
	})
	t.Run("no classes", func(t *testing.T) {
		body := tinySegConfig[:strings.Index(tinySegConfig, "  classes:")] + tinySegConfig[strings.Index(tinySegConfig, "  augment:"):]
		cfg := writeSegConfig(t, dir, body)
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(dir, "r2"), "-q")
		requireOneLineError(t, code, errOut, "data.classes")
	})
	t.Run("mask value outside the class table", func(t *testing.T) {
		// only three classes listed: the triangles' label 3 is unknown
		body := strings.Replace(tinySegConfig, "    - {name: triangle, color: [0, 130, 200]}\n", "", 1)
		cfg := writeSegConfig(t, dir, body)
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(dir, "r3"), "-q")
		requireOneLineError(t, code, errOut, filepath.Join(fix.data, "masks"), "3")
	})
	t.Run("eval an auto-encoder on masks is not a segmenter", func(t *testing.T) {
		cfg := writeSegConfig(t, dir, tinySegConfig)
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(dir, "r4"), "-q",
			"--freeze-encoder-epochs", "2")
		requireOneLineError(t, code, errOut, "freeze_encoder_epochs")
	})
}

// copyShapes copies the fixture's shapes set so a test can break it.
func copyShapes(t *testing.T, dst string) {
	t.Helper()
	for _, sub := range []string{"images", "masks"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dst, sub), 0o755))
		entries, err := os.ReadDir(filepath.Join(fix.data, sub))
		require.NoError(t, err)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(fix.data, sub, e.Name()))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dst, sub, e.Name()), b, 0o644))
		}
	}
}

func TestSegBadPairs(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	cfg := writeSegConfig(t, dir, tinySegConfig)
	data := filepath.Join(dir, "data")
	copyShapes(t, data)
	// a mask of another size than its image
	other := filepath.Join(dir, "other")
	code, _, errOut := segtool(t, "data", "shapes", "--out", other, "--n", "1", "--size", "24", "--frames", "0")
	require.Equal(t, 0, code, errOut)
	b, err := os.ReadFile(filepath.Join(other, "masks", "0000.png"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(data, "masks", "0005.png"), b, 0o644))

	code, _, errOut = segtool(t, "train", "--config", cfg, "--data", data, "--out", filepath.Join(dir, "r1"), "-q")
	requireOneLineError(t, code, errOut, "0005.png", "24x24")
	assert.NoDirExists(t, filepath.Join(dir, "r1"))

	// --skip-bad trains on the rest and says what it skipped
	code, out, errOut := segtool(t, "train", "--config", cfg, "--data", data, "--out", filepath.Join(dir, "r2"), "-q", "--skip-bad", "--epochs", "1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "0005.png")
	assert.Contains(t, out, "23 train / 8 val", "31 pairs left, a quarter held out")

	t.Run("empty folder", func(t *testing.T) {
		empty := filepath.Join(dir, "empty")
		require.NoError(t, os.MkdirAll(empty, 0o755))
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", empty, "--out", filepath.Join(dir, "r3"), "-q")
		requireOneLineError(t, code, errOut, empty)
	})
	t.Run("undecodable image", func(t *testing.T) {
		good, err := os.ReadFile(filepath.Join(fix.data, "masks", "0005.png"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(data, "masks", "0005.png"), good, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(data, "images", "0007.png"), []byte("not a png"), 0o644))
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", data, "--out", filepath.Join(dir, "r4"), "-q")
		requireOneLineError(t, code, errOut, "0007.png")
	})
}

func TestSegAutoClassWeights(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	cfg := writeSegConfig(t, dir, strings.Replace(tinySegConfig, "  loss: ce\n", "  loss: ce\n  class_weights: auto\n", 1))
	run := filepath.Join(dir, "run")
	code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", run, "-q", "--epochs", "1")
	require.Equal(t, 0, code, errOut)
	m, err := seg.Load(filepath.Join(run, "best.safetensors"))
	require.NoError(t, err)
	defer m.Close()
	w := m.Config.ClassWeights
	require.Len(t, w, 4)
	assert.Less(t, w[0], 1.0, "background is the most frequent class")
	for _, v := range w[1:] {
		assert.Greater(t, v, w[0])
	}
}

func TestEvalBatchBoundsValidationMemory(t *testing.T) {
	for _, c := range []struct{ h, w, batch, want int }{
		{28, 28, 32, 64},   // MNIST: large batches
		{64, 64, 4, 16},    // the shapes demo
		{192, 256, 8, 8},   // CamVid: the training batch
		{192, 256, 32, 32}, // what trains fits
		{512, 512, 2, 2},
		{8, 8, 128, 64},
	} {
		cfg := &Config{}
		cfg.Data.Height, cfg.Data.Width, cfg.Train.Batch = c.h, c.w, c.batch
		assert.Equal(t, c.want, evalBatch(cfg), "%dx%d, training batch %d", c.h, c.w, c.batch)
	}
}

// Every config shipped in configs/ reads strictly, fills its defaults and
// validates, model included (the data need not be there). Model checks exist
// for the ae, vae and seg tasks.
func TestShippedConfigsAreValid(t *testing.T) {
	paths, err := filepath.Glob("../../configs/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(paths), 10)
	for _, p := range paths {
		cfg, err := LoadConfig(p)
		require.NoError(t, err, p)
		if cfg.Data.Train == "" {
			cfg.Data.Train = "DIR" // the configs for any folder take it from --data
		}
		cfg.Defaults()
		require.NoError(t, cfg.Validate(), p)
	}
}
