package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/safetensors"
	"github.com/stretchr/testify/require"
)

const python = "/usr/bin/python3"

// TestParityWithPyTorch loads the same weights into segtool's U-Net and into
// the PyTorch one of bench/unet_torch.py and runs the same batch through
// both: the logits must agree to 1e-4 (relative to the largest logit), at
// inference and in training mode, and so must the loss, every parameter's
// gradient and the updated batch-norm statistics (to 1e-3). This is what
// makes the benchmark a comparison of two implementations of one function.
// It needs Debian's python3-torch (make bench installs it) and is skipped
// without it.
func TestParityWithPyTorch(t *testing.T) {
	if out, err := exec.Command(python, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Skipf("no PyTorch for %s (make bench installs python3-torch): %s", python, strings.TrimSpace(string(out)))
	}
	// One PyTorch process for both nets: importing torch is most of the
	// test's time.
	norms := []nn.Norm{nn.NoNorm, nn.BatchNorm}
	checks := make([]func(*testing.T), len(norms))
	var dirs []string
	for i, norm := range norms {
		dir := filepath.Join(t.TempDir(), string(norm))
		require.NoError(t, os.Mkdir(dir, 0o755))
		dirs = append(dirs, dir)
		checks[i] = prepare(t, norm, dir)
	}
	cmd := exec.Command(python, append([]string{"../unet_torch.py", "parity"}, dirs...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unet_torch.py parity: %v\n%s", err, b)
	}
	for i, norm := range norms {
		t.Run(string(norm), checks[i])
	}
}

// prepare writes the model and the batch into dir, runs segtool on them,
// and returns the check of PyTorch's results.
func prepare(t *testing.T, norm nn.Norm, dir string) func(*testing.T) {
	net := Net{Batch: 2, Size: 64, Base: 16, Depth: 4, Classes: 4, Norm: norm}
	store := newStore(7)
	tr, err := newTrainer(store, net)
	require.NoError(t, err)
	// Non-trivial values everywhere a default would hide a mistake: biases,
	// batch-norm scales and shifts, and running statistics.
	r := rand.New(rand.NewPCG(8, 9))
	for _, p := range store.Params() {
		v := p.Value.Data().([]float32)
		switch {
		case strings.HasSuffix(p.Name, "running_var"):
			for i := range v {
				v[i] = 0.5 + r.Float32()
			}
		case strings.HasSuffix(p.Name, "running_mean"), strings.HasSuffix(p.Name, ".bias"):
			for i := range v {
				v[i] = 0.1 * float32(r.NormFloat64())
			}
		case strings.Contains(p.Name, "norm") && strings.HasSuffix(p.Name, ".weight"):
			for i := range v {
				v[i] = 0.5 + r.Float32()
			}
		}
	}
	cfg, err := json.Marshal(net.config())
	require.NoError(t, err)
	model := filepath.Join(dir, "model.safetensors")
	require.NoError(t, nn.SaveModel(model, store, map[string]string{nn.MetaKind: "seg", nn.MetaConfig: string(cfg)}))
	x, labels := randomBatch(net, 3)
	dataFile := filepath.Join(dir, "data.safetensors")
	require.NoError(t, safetensors.Write(dataFile, map[string]safetensors.Tensor{
		"x":      safetensors.F32([]int{net.Batch, 3, net.Size, net.Size}, x),
		"labels": safetensors.F32([]int{net.Batch, net.Size, net.Size}, labels),
	}, nil))

	// segtool: inference first (running statistics as loaded), then one
	// training-mode pass, which updates them, without an optimiser step.
	runner := newRunner(store, net)
	defer runner.Close()
	outs, err := runner.Run(net.Batch, x)
	require.NoError(t, err)
	evalLogits := outs[0]
	require.NoError(t, nn.Feed(tr.x, x))
	require.NoError(t, nn.Feed(tr.labels, labels))
	require.NoError(t, tr.vm.RunAll())
	loss, err := nn.Scalar(tr.loss.Value())
	require.NoError(t, err)

	trainVals, err := nn.Float32s(tr.logitsValue)
	require.NoError(t, err)
	grads := make([][]float32, len(tr.nodes))
	for i, n := range tr.nodes {
		gv, err := n.Grad()
		require.NoError(t, err)
		if grads[i], err = nn.Float32s(gv); err != nil {
			t.Fatal(err)
		}
	}
	return func(t *testing.T) { check(t, norm, dir, store, tr, evalLogits, trainVals, loss, grads) }
}

func check(t *testing.T, norm nn.Norm, dir string, store *nn.Store, tr *trainer, evalLogits, trainVals []float32, loss float64, grads [][]float32) {
	ref, err := safetensors.Read(filepath.Join(dir, "torch.safetensors"))
	require.NoError(t, err)
	get := func(name string) []float32 {
		tt, ok := ref.Tensors[name]
		require.Truef(t, ok, "PyTorch wrote no %s", name)
		v, err := tt.Float32s()
		require.NoError(t, err)
		return v
	}
	d := closeTo(t, "inference logits", get("logits_eval"), evalLogits, 1e-4)
	t.Logf("norm %s: inference logits agree to %.2g of the largest", norm, d)
	d = closeTo(t, "training-mode logits", get("logits_train"), trainVals, 1e-4)
	t.Logf("norm %s: training-mode logits agree to %.2g of the largest", norm, d)
	require.InDelta(t, float64(get("loss")[0]), loss, 1e-4*loss, "loss")
	worst := 0.0
	for i, g := range grads {
		name := tr.params[i].Name
		if norm == nn.BatchNorm && strings.HasSuffix(name, ".bias") && strings.Contains(name, "conv") {
			continue // a bias before batch norm has no gradient but rounding
		}
		worst = max(worst, closeTo(t, "gradient of "+name, get("grad."+name), g, 1e-3))
	}
	t.Logf("norm %s: gradients agree to %.2g", norm, worst)
	for _, p := range store.Params() {
		if !p.Trainable {
			v, _ := nn.Float32s(p.Value)
			closeTo(t, "updated "+p.Name, get("after."+p.Name), v, 1e-4)
		}
	}
}

// closeTo requires max |got-want| <= tol * max |want| and returns the
// relative difference.
func closeTo(t *testing.T, what string, want, got []float32, tol float64) float64 {
	t.Helper()
	require.Lenf(t, got, len(want), "%s: lengths", what)
	scale, worst := 0.0, 0.0
	for i, w := range want {
		scale = max(scale, math.Abs(float64(w)))
		worst = max(worst, math.Abs(float64(got[i])-float64(w)))
	}
	rel := worst / max(scale, 1e-30)
	require.LessOrEqualf(t, rel, tol, "%s: differ by %.3g, %.3g of the largest value %.3g", what, worst, rel, scale)
	return rel
}

func TestMain(m *testing.M) {
	// the tests run in the package directory; the script is one up
	if _, err := os.Stat("../unet_torch.py"); err != nil {
		panic("bench/unet_torch.py not found next to bench/segbench")
	}
	os.Exit(m.Run())
}
