package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/nn/safetensors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const tinyVAEConfig = `task: vae
name: tiny-vae
data:
  channels: 3
  height: 16
  width: 16
  val_fraction: 0.25
model:
  base: 4
  depth: 2
  latent: 4
  loss: mse
  kl_warmup_epochs: 1
train:
  epochs: 3
  batch: 4
  lr: 0.01
  seed: 3
`

// vfix holds two tiny VAEs trained on the shapes fixture: a 4-d latent and a
// 2-d one (the manifold case).
var vfix struct{ run, run2d string }

func setupVAE(t *testing.T) {
	t.Helper()
	setup(t)
	if vfix.run != "" {
		return
	}
	for _, latent := range []string{"4", "2"} {
		cfg := filepath.Join(fix.dir, "tiny-vae-"+latent+".yaml")
		require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(tinyVAEConfig, "latent: 4", "latent: "+latent, 1)), 0o644))
		run := filepath.Join(fix.dir, "vae-"+latent)
		code, out, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", run, "--quiet")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "training vae")
		require.Contains(t, out, "samples from N(0, I)")
		if latent == "4" {
			vfix.run = run
		} else {
			vfix.run2d = run
		}
	}
}

func vaeModel() string { return filepath.Join(vfix.run, "best.safetensors") }
func aeModel() string  { return filepath.Join(fix.run, "best.safetensors") }

// pngSize reads an image's width and height.
func pngSize(t *testing.T, path string) (int, int) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	require.NoError(t, err)
	return cfg.Width, cfg.Height
}

// gridSide is the pixels of n tiles of 16 pixels (scaled 6x) in a row.
func gridSide(n int) int { return n*(16*gridScale(16)+2) + 2 }

func TestTrainVAEWritesTheRunDirectory(t *testing.T) {
	setupVAE(t)
	for _, f := range []string{"config.yaml", "metrics.jsonl", "last.safetensors", "best.safetensors", "state.safetensors", "reconstructions.png", "samples.png", "curves.png"} {
		assert.FileExists(t, filepath.Join(vfix.run, f))
	}
	b, err := os.ReadFile(filepath.Join(vfix.run, "metrics.jsonl"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 3)
	var first, last map[string]float64
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[2]), &last))
	for _, k := range []string{"train_loss", "train_recon", "train_kl", "train_beta", "val_neg_elbo", "val_recon", "val_kl", "val_mse", "val_psnr"} {
		assert.Contains(t, last, k)
	}
	assert.InDelta(t, 15.0/36, first["train_beta"], 1e-6, "the KL warm-up: beta averaged over the first epoch's 6 steps, 0/6..5/6")
	assert.Equal(t, 1.0, last["train_beta"])
	assert.InDelta(t, last["val_recon"]+last["val_kl"], last["val_neg_elbo"], 1e-6)
	assert.Less(t, last["val_neg_elbo"], first["val_neg_elbo"], "training lowers the negative ELBO")

	cfg, err := LoadConfig(filepath.Join(vfix.run, "config.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "vae", cfg.Task)
	assert.Equal(t, 1.0, cfg.Model.Beta)
	assert.Equal(t, 1.0, cfg.Model.KLWarmupEpochs)
	// an AE's resolved config gains no VAE keys
	b, err = os.ReadFile(filepath.Join(fix.run, "config.yaml"))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "beta")
}

func TestVAEConfigDefaults(t *testing.T) {
	cfg := &Config{Task: "vae", Data: DataConfig{Train: "mnist"}}
	cfg.Defaults()
	require.NoError(t, cfg.Validate())
	v, err := cfg.VAEConfig()
	require.NoError(t, err)
	assert.Equal(t, 20, v.Latent)
	assert.Equal(t, 1.0, v.Beta)
	assert.Equal(t, 28, v.Height)

	zero := 0
	cfg.Model.Latent = &zero
	_, err = cfg.VAEConfig()
	require.ErrorContains(t, err, "model.latent")
	cfg.Model.Latent, cfg.Model.Noise = nil, 0.1
	cfg.Defaults()
	_, err = cfg.VAEConfig()
	require.ErrorContains(t, err, "model.noise")
}

func TestEvalVAE(t *testing.T) {
	setupVAE(t)
	code, out, errOut := segtool(t, "eval", "--model", vaeModel(), "--data", fix.data, "--json")
	require.Equal(t, 0, code, errOut)
	var rep struct {
		Kind    string             `json:"kind"`
		Latent  int                `json:"latent"`
		Metrics map[string]float64 `json:"metrics"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, "vae", rep.Kind)
	assert.Equal(t, 4, rep.Latent)
	m := rep.Metrics
	for _, k := range []string{"neg_elbo", "recon", "kl", "mse", "psnr"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, 32.0, m["images"])
	assert.GreaterOrEqual(t, m["kl"], 0.0)
	assert.InDelta(t, m["recon"]+m["kl"], m["neg_elbo"], 1e-6)

	code, out, errOut = segtool(t, "eval", "--model", vaeModel(), "--data", fix.data)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "negative ELBO")
	assert.Contains(t, out, "nats per image")
}

func TestReconstructVAE(t *testing.T) {
	setupVAE(t)
	out := filepath.Join(t.TempDir(), "grid.png")
	code, _, errOut := segtool(t, "reconstruct", "--model", vaeModel(), "--input", fix.data, "--out", out, "--n", "4")
	require.Equal(t, 0, code, errOut)
	w, h := pngSize(t, out)
	assert.Equal(t, gridSide(4), w)
	assert.Equal(t, gridSide(2), h, "inputs above reconstructions")
}

func TestSample(t *testing.T) {
	setupVAE(t)
	dir := t.TempDir()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return b
	}
	for _, model := range []string{vaeModel(), aeModel()} {
		kind := map[bool]string{true: "vae", false: "ae"}[model == vaeModel()]
		t.Run(kind, func(t *testing.T) {
			for _, name := range []string{kind + "-a.png", kind + "-b.png"} {
				code, out, errOut := segtool(t, "sample", "--model", model, "--n", "12", "--seed", "5", "--out", filepath.Join(dir, name))
				require.Equal(t, 0, code, errOut)
				assert.Contains(t, out, "12 samples of the "+kind)
				if kind == "ae" {
					assert.Contains(t, out, "fitted to the codes of 32 images", "the AE's training data")
				}
			}
			code, _, errOut := segtool(t, "sample", "--model", model, "--n", "12", "--seed", "6", "--out", filepath.Join(dir, kind+"-c.png"))
			require.Equal(t, 0, code, errOut)
			assert.Equal(t, read(kind+"-a.png"), read(kind+"-b.png"), "same seed, same samples")
			assert.NotEqual(t, read(kind+"-a.png"), read(kind+"-c.png"))
			w, h := pngSize(t, filepath.Join(dir, kind+"-a.png"))
			assert.Equal(t, gridSide(8), w)
			assert.Equal(t, gridSide(2), h)
		})
	}
	t.Run("ae without its training data", func(t *testing.T) {
		f, err := safetensors.Read(aeModel())
		require.NoError(t, err)
		delete(f.Metadata, "segtool.train_data")
		bare := filepath.Join(dir, "bare.safetensors")
		require.NoError(t, safetensors.Write(bare, f.Tensors, f.Metadata))
		code, out, errOut := segtool(t, "sample", "--model", bare, "--n", "4", "--out", filepath.Join(dir, "bare.png"))
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "note:")
		assert.Contains(t, out, "N(0, I)")
		code, out, errOut = segtool(t, "sample", "--model", aeModel(), "--n", "4", "--fit-data", "none", "--out", filepath.Join(dir, "bare.png"))
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "note: --fit-data none")
		// --fit-data gives it the Gaussian back
		code, out, errOut = segtool(t, "sample", "--model", bare, "--n", "4", "--fit-data", fix.data, "--out", filepath.Join(dir, "bare.png"))
		require.Equal(t, 0, code, errOut)
		assert.NotContains(t, out, "note:")
		assert.Contains(t, out, "fitted to the codes of 32 images")
	})
}

func TestInterpolate(t *testing.T) {
	setupVAE(t)
	for _, model := range []string{vaeModel(), aeModel()} {
		out := filepath.Join(t.TempDir(), "strip.png")
		code, stdout, errOut := segtool(t, "interpolate", "--model", model, "--from", fix.data+"@0",
			"--to", filepath.Join(fix.data, "images", "0003.png"), "--steps", "5", "--out", out)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, stdout, "5 points")
		w, h := pngSize(t, out)
		assert.Equal(t, gridSide(7), w, "the two images and 5 points between them")
		assert.Equal(t, gridSide(1), h)
	}
}

func TestTraverse(t *testing.T) {
	setupVAE(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "sweep.png")
	code, stdout, errOut := segtool(t, "traverse", "--model", vaeModel(), "--dims", "3", "--steps", "5", "--out", out)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "dimensions 1-3")
	assert.Contains(t, stdout, "around the origin")
	w, h := pngSize(t, out)
	assert.Equal(t, gridSide(5), w)
	assert.Equal(t, gridSide(3), h)

	// more dimensions than the latent has: one row each
	code, _, errOut = segtool(t, "traverse", "--model", vaeModel(), "--input", fix.data+"@2", "--out", out)
	require.Equal(t, 0, code, errOut)
	w, h = pngSize(t, out)
	assert.Equal(t, gridSide(11), w)
	assert.Equal(t, gridSide(4), h)

	code, stdout, errOut = segtool(t, "traverse", "--model", filepath.Join(vfix.run2d, "best.safetensors"), "--out", out)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "manifold, 15x15")
	w, h = pngSize(t, out)
	assert.Equal(t, gridSide(15), w)
	assert.Equal(t, gridSide(15), h)

	code, stdout, errOut = segtool(t, "traverse", "--model", aeModel(), "--dims", "2", "--steps", "3", "--out", out)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "around the mean code")
}

func TestEncodeDecode(t *testing.T) {
	setupVAE(t)
	for _, tc := range []struct {
		kind, model string
		latent      int
		ratio       string
	}{{"vae", vaeModel(), 4, "48.0x"}, {"ae", aeModel(), 8, "24.0x"}} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := t.TempDir()
			codes := filepath.Join(dir, "codes.safetensors")
			code, out, errOut := segtool(t, "encode", "--model", tc.model, "--input", fix.data, "--out", codes)
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "32 images")
			assert.Contains(t, out, tc.ratio, "768 bytes of 8-bit pixels per image over 4 bytes per value")
			assert.Contains(t, out, "round-trip PSNR")
			f, err := safetensors.Read(codes)
			require.NoError(t, err)
			assert.Equal(t, []int{32, tc.latent}, f.Tensors["codes"].Shape)
			assert.Equal(t, tc.kind, f.Metadata["segtool.codes.kind"])

			back := filepath.Join(dir, "decoded")
			code, out, errOut = segtool(t, "decode", "--model", tc.model, "--codes", codes, "--out", back)
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "32 images")
			assert.Contains(t, out, tc.ratio)
			assert.Contains(t, out, "round-trip PSNR")
			assert.NotContains(t, out, "unknown")
			entries, err := os.ReadDir(back)
			require.NoError(t, err)
			require.Len(t, entries, 32)
			assert.Equal(t, "0000.png", entries[0].Name(), "named after the encoded files")
			w, h := pngSize(t, filepath.Join(back, "0000.png"))
			assert.Equal(t, [2]int{16, 16}, [2]int{w, h})
		})
	}
	t.Run("one image", func(t *testing.T) {
		codes := filepath.Join(t.TempDir(), "one.safetensors")
		code, out, errOut := segtool(t, "encode", "--model", vaeModel(), "--input", filepath.Join(fix.data, "images", "0005.png"), "--out", codes)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "1 images")
	})
}

func TestVAEBadInput(t *testing.T) {
	setupVAE(t)
	tmp := t.TempDir()
	segModel := filepath.Join(tmp, "seg.safetensors")
	f, err := safetensors.Read(vaeModel())
	require.NoError(t, err)
	f.Metadata["segtool.kind"] = "seg"
	require.NoError(t, safetensors.Write(segModel, f.Tensors, f.Metadata))
	aeCodes := filepath.Join(tmp, "ae-codes.safetensors")
	code, _, errOut := segtool(t, "encode", "--model", aeModel(), "--input", fix.data, "--out", aeCodes)
	require.Equal(t, 0, code, errOut)

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"sample on a seg model", []string{"sample", "--model", segModel, "--out", filepath.Join(tmp, "s.png")}, []string{segModel, `"seg"`, `"vae"`}},
		{"traverse on a seg model", []string{"traverse", "--model", segModel, "--out", filepath.Join(tmp, "s.png")}, []string{`"seg"`}},
		{"decode codes of another size", []string{"decode", "--model", vaeModel(), "--codes", aeCodes, "--out", filepath.Join(tmp, "dec")}, []string{aeCodes, "8 values each", "takes 4"}},
		{"decode a file that is not codes", []string{"decode", "--model", vaeModel(), "--codes", vaeModel(), "--out", filepath.Join(tmp, "dec")}, []string{"no \"codes\" tensor"}},
		{"decode an image", []string{"decode", "--model", vaeModel(), "--codes", filepath.Join(fix.data, "images", "0000.png"), "--out", filepath.Join(tmp, "dec")}, []string{"0000.png"}},
		{"interpolate from a folder", []string{"interpolate", "--model", vaeModel(), "--from", fix.data, "--to", fix.data + "@1", "--out", filepath.Join(tmp, "s.png")}, []string{"DATA@INDEX"}},
		{"interpolate past the end", []string{"interpolate", "--model", vaeModel(), "--from", fix.data + "@99", "--to", fix.data + "@1", "--out", filepath.Join(tmp, "s.png")}, []string{"index 99", "32 images"}},
		{"interpolate one step", []string{"interpolate", "--model", vaeModel(), "--from", fix.data + "@0", "--to", fix.data + "@1", "--steps", "1", "--out", filepath.Join(tmp, "s.png")}, []string{"--steps 1"}},
		{"sample none", []string{"sample", "--model", vaeModel(), "--n", "0", "--out", filepath.Join(tmp, "s.png")}, []string{"--n 0"}},
		{"sample to an unknown format", []string{"sample", "--model", vaeModel(), "--out", filepath.Join(tmp, "s.xyz")}, []string{"s.xyz"}},
		{"truncated model", []string{"sample", "--model", filepath.Join(tmp, "trunc.safetensors"), "--out", filepath.Join(tmp, "s.png")}, []string{"trunc.safetensors"}},
		{"vae config with noise", []string{"train", "--config", filepath.Join(tmp, "noisy.yaml"), "--data", fix.data, "--out", filepath.Join(tmp, "r"), "-q"}, []string{"model.noise"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(vaeModel())
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(tmp, "trunc.safetensors"), b[:len(b)/2], 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(tmp, "noisy.yaml"), []byte(strings.Replace(tinyVAEConfig, "loss: mse", "loss: mse\n  noise: 0.1", 1)), 0o644))
			code, _, errOut := segtool(t, tc.args...)
			requireOneLineError(t, code, errOut, tc.want...)
		})
	}
	assert.NoFileExists(t, filepath.Join(tmp, "s.png"), "nothing is written by a command that fails")
	assert.NoDirExists(t, filepath.Join(tmp, "dec"))
	assert.NoDirExists(t, filepath.Join(tmp, "r"))
}

// A VAE's encoder.* tensors start a segmenter as an auto-encoder's do.
func TestVAEEncoderStartsASegmenter(t *testing.T) {
	setupVAE(t)
	dir := t.TempDir()
	cfg := writeSegConfig(t, dir, tinySegConfig)
	code, out, errOut := segtool(t, "train", "--config", cfg, "--data", fix.data, "--out", filepath.Join(dir, "run"), "-q",
		"--epochs", "1", "--init-encoder", vaeModel())
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "encoder initialised from "+vaeModel())
}
