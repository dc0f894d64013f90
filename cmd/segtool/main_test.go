package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn/safetensors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// segtool runs the command line in-process and returns its exit status,
// standard output and standard error.
func segtool(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"segtool"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// requireOneLineError checks a failure the way a user sees it: status 1 and
// one line on stderr that mentions every want.
func requireOneLineError(t *testing.T, code int, stderr string, want ...string) {
	t.Helper()
	require.Equal(t, 1, code, "stderr: %s", stderr)
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	require.Len(t, lines, 1, "one line, no stack trace: %q", stderr)
	require.True(t, strings.HasPrefix(lines[0], "segtool: "), lines[0])
	for _, w := range want {
		require.Contains(t, lines[0], w)
	}
	require.NotContains(t, stderr, "goroutine")
	require.NotContains(t, stderr, "internal error")
}

const tinyConfig = `task: ae
name: tiny
data:
  channels: 3
  height: 16
  width: 16
  val_fraction: 0.25
model:
  base: 4
  depth: 2
  latent: 8
  loss: mse
train:
  epochs: 4
  batch: 4
  lr: 0.01
  seed: 3
`

// fixture makes a small shapes data set, a config and a trained model, once
// per test binary.
var fix struct {
	dir, data, config, run string
}

func setup(t *testing.T) {
	t.Helper()
	if fix.dir != "" {
		return
	}
	dir, err := os.MkdirTemp("", "segtool-cmd")
	require.NoError(t, err)
	fix.dir = dir
	fix.data = filepath.Join(dir, "shapes")
	code, out, errOut := segtool(t, "data", "shapes", "--out", fix.data, "--n", "32", "--size", "16", "--frames", "0")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "32 images")
	fix.config = filepath.Join(dir, "tiny.yaml")
	require.NoError(t, os.WriteFile(fix.config, []byte(tinyConfig), 0o644))
	fix.run = filepath.Join(dir, "run")
	code, out, errOut = segtool(t, "train", "--config", fix.config, "--data", fix.data, "--out", fix.run, "--quiet")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "best model:")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix.dir != "" {
		os.RemoveAll(fix.dir)
	}
	os.Exit(code)
}

func TestTrainWritesTheRunDirectory(t *testing.T) {
	setup(t)
	for _, f := range []string{"config.yaml", "metrics.jsonl", "last.safetensors", "best.safetensors", "state.safetensors", "reconstructions.png", "curves.png"} {
		assert.FileExists(t, filepath.Join(fix.run, f))
	}
	b, err := os.ReadFile(filepath.Join(fix.run, "metrics.jsonl"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 4)
	var first, last map[string]float64
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[3]), &last))
	assert.Equal(t, 4.0, last["epoch"])
	for _, k := range []string{"train_loss", "val_mse", "val_psnr", "val_ssim", "train_images_per_s"} {
		assert.Contains(t, last, k)
	}
	assert.Less(t, last["train_loss"], first["train_loss"]/3, "training lowers the loss")
	// the resolved config has the defaults filled in and loads again
	cfg, err := LoadConfig(filepath.Join(fix.run, "config.yaml"))
	require.NoError(t, err)
	assert.Equal(t, fix.data, cfg.Data.Train)
	assert.Equal(t, "batch", cfg.Model.Norm)
}

func TestEvalJSONHasTheBaseline(t *testing.T) {
	setup(t)
	code, out, errOut := segtool(t, "eval", "--model", filepath.Join(fix.run, "best.safetensors"), "--data", fix.data, "--json")
	require.Equal(t, 0, code, errOut)
	var rep evalReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, 32, rep.Metrics.Images)
	assert.Greater(t, rep.Metrics.MSE, 0.0)
	assert.Less(t, rep.Metrics.MSE, 1.0)
	require.NotNil(t, rep.Baseline, "PCA fitted on the model's recorded training data")
	assert.Equal(t, 8, rep.Baseline.Components)
	assert.Greater(t, rep.Baseline.MSE, 0.0)

	code, out, errOut = segtool(t, "eval", "--model", filepath.Join(fix.run, "best.safetensors"), "--data", fix.data)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "pca-8")
}

func TestReconstructWritesAGrid(t *testing.T) {
	setup(t)
	out := filepath.Join(t.TempDir(), "grid.png")
	img := filepath.Join(fix.data, "images", "0003.png")
	for _, input := range []string{fix.data, img} {
		code, _, errOut := segtool(t, "reconstruct", "--model", filepath.Join(fix.run, "best.safetensors"), "--input", input, "--out", out, "--n", "4")
		require.Equal(t, 0, code, errOut)
		back, err := datasets.NewImageFolder(filepath.Dir(out), datasets.ImageOptions{Channels: 3})
		require.NoError(t, err)
		require.Equal(t, 1, back.Len())
		_, h, _ := back.Shape()
		assert.Greater(t, h, 2*16, "two rows: inputs above reconstructions")
	}
}

func TestHelpListsFlagsWithDefaults(t *testing.T) {
	code, out, _ := segtool(t, "reconstruct", "--help")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `--out FILE, -o FILE`)
	assert.Contains(t, out, `(default: "reconstructions.png")`)
	code, out, _ = segtool(t, "train", "--help")
	require.Equal(t, 0, code)
	for _, f := range []string{"--config", "--data", "--epochs", "--batch", "--lr", "--out", "--seed", "--resume"} {
		assert.Contains(t, out, f)
	}
	code, out, _ = segtool(t, "--help")
	require.Equal(t, 0, code)
	for _, c := range []string{"train", "reconstruct", "eval", "data"} {
		assert.Contains(t, out, c)
	}
}

func TestBadInput(t *testing.T) {
	setup(t)
	tmp := t.TempDir()
	model := filepath.Join(fix.run, "best.safetensors")

	t.Run("missing data folder", func(t *testing.T) {
		missing := filepath.Join(tmp, "no-such-folder")
		code, _, errOut := segtool(t, "train", "--config", fix.config, "--data", missing, "--out", filepath.Join(tmp, "r1"), "-q")
		requireOneLineError(t, code, errOut, missing)
		assert.NoDirExists(t, filepath.Join(tmp, "r1"), "nothing is written for a run that cannot start")
	})
	t.Run("undecodable image", func(t *testing.T) {
		dir := filepath.Join(tmp, "broken")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		src, err := os.ReadFile(filepath.Join(fix.data, "images", "0000.png"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "good.png"), src, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.png"), []byte("this is not a png"), 0o644))
		code, _, errOut := segtool(t, "train", "--config", fix.config, "--data", dir, "--out", filepath.Join(tmp, "r2"), "-q")
		requireOneLineError(t, code, errOut, "bad.png")
	})
	t.Run("unknown config key", func(t *testing.T) {
		cfg := filepath.Join(tmp, "unknown.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(tinyConfig+"  epohcs: 3\n"), 0o644))
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(tmp, "r3"), "-q")
		requireOneLineError(t, code, errOut, cfg, "epohcs")
	})
	t.Run("wrong config type", func(t *testing.T) {
		cfg := filepath.Join(tmp, "type.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(tinyConfig, "epochs: 4", "epochs: two", 1)), 0o644))
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(tmp, "r4"), "-q")
		requireOneLineError(t, code, errOut, cfg, "two")
	})
	t.Run("bad config value", func(t *testing.T) {
		cfg := filepath.Join(tmp, "value.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(tinyConfig, "height: 16", "height: 18", 1)), 0o644))
		code, _, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(tmp, "r5"), "-q")
		requireOneLineError(t, code, errOut, "multiples of 2^depth")
	})
	t.Run("truncated model", func(t *testing.T) {
		b, err := os.ReadFile(model)
		require.NoError(t, err)
		for _, cut := range []int{3, 100, len(b) / 2, len(b) - 1} {
			trunc := filepath.Join(tmp, "trunc.safetensors")
			require.NoError(t, os.WriteFile(trunc, b[:cut], 0o644))
			code, _, errOut := segtool(t, "eval", "--model", trunc, "--data", fix.data)
			requireOneLineError(t, code, errOut, trunc)
			code, _, errOut = segtool(t, "reconstruct", "--model", trunc, "--input", fix.data, "--out", filepath.Join(tmp, "x.png"))
			requireOneLineError(t, code, errOut, trunc)
		}
		assert.NoFileExists(t, filepath.Join(tmp, "x.png"))
	})
	t.Run("model of the wrong kind", func(t *testing.T) {
		f, err := safetensors.Read(model)
		require.NoError(t, err)
		f.Metadata["segtool.kind"] = "seg"
		other := filepath.Join(tmp, "seg.safetensors")
		require.NoError(t, safetensors.Write(other, f.Tensors, f.Metadata))
		code, _, errOut := segtool(t, "reconstruct", "--model", other, "--input", fix.data)
		requireOneLineError(t, code, errOut, other, `is a segmenter ("seg"); this needs an auto-encoder ("ae")`)
	})
	t.Run("not a model at all", func(t *testing.T) {
		code, _, errOut := segtool(t, "eval", "--model", filepath.Join(fix.data, "images", "0000.png"), "--data", fix.data)
		requireOneLineError(t, code, errOut, "0000.png")
	})
	t.Run("existing run is not overwritten", func(t *testing.T) {
		before := hashDir(t, fix.run)
		code, _, errOut := segtool(t, "train", "--config", fix.config, "--data", fix.data, "--out", fix.run, "-q")
		requireOneLineError(t, code, errOut, fix.run, "--resume")
		assert.Equal(t, before, hashDir(t, fix.run))
	})
	t.Run("stray argument", func(t *testing.T) {
		code, _, errOut := segtool(t, "eval", "--model", model, "--data", fix.data, "extra")
		requireOneLineError(t, code, errOut, "extra")
	})
}

func TestResumeContinuesTheRun(t *testing.T) {
	setup(t)
	dir := filepath.Join(t.TempDir(), "resumed")
	code, _, errOut := segtool(t, "train", "--config", fix.config, "--data", fix.data, "--out", dir, "--epochs", "2", "-q")
	require.Equal(t, 0, code, errOut)
	code, out, errOut := segtool(t, "train", "--config", fix.config, "--data", fix.data, "--out", dir, "--epochs", "4", "--resume", "-q")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "resuming")
	// same seed, same data: the resumed run ends with the uninterrupted run's weights
	a, err := safetensors.Read(filepath.Join(dir, "last.safetensors"))
	require.NoError(t, err)
	b, err := safetensors.Read(filepath.Join(fix.run, "last.safetensors"))
	require.NoError(t, err)
	for name, t1 := range b.Tensors {
		assert.Equal(t, t1.Data, a.Tensors[name].Data, name)
	}
}

func hashDir(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}
