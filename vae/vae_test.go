package vae

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/nntest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
)

func smallConfig(latent int, loss string) Config {
	cfg := Config{EncoderConfig: nn.EncoderConfig{InChannels: 2, Base: 2, Depth: 2, Norm: nn.BatchNorm},
		Height: 8, Width: 4, Latent: latent, Loss: loss}
	cfg.Defaults()
	return cfg
}

// The whole objective — encoder, both heads, the reparameterised sample
// with fixed eps, decoder, likelihood and KL — against finite differences.
func TestNetGradients(t *testing.T) {
	for _, loss := range []string{"bce", "mse"} {
		t.Run(loss, func(t *testing.T) {
			cfg := smallConfig(3, loss)
			nntest.CheckGradients(t, []int{3, 2, 8, 4}, false, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
				net, err := NewNet(s, cfg)
				if err != nil {
					return nil, err
				}
				eps := s.Input("eps", 3, cfg.Latent)
				copy(eps.Value().Data().([]float64), toF64(Normal(3*cfg.Latent, 5)))
				target := s.Input("target", 3, 2, 8, 4)
				td := target.Value().Data().([]float64)
				for i := range td {
					td[i] = float64(i%5) / 4
				}
				y, mu, logvar, err := net.Forward(x, eps)
				if err != nil {
					return nil, err
				}
				recon, kl, err := objective(s, cfg, y, target, mu, logvar)
				if err != nil {
					return nil, err
				}
				return G.Add(recon, kl)
			})
		})
	}
}

func TestParameterNames(t *testing.T) {
	m, err := New(smallConfig(3, "bce"), 1)
	require.NoError(t, err)
	defer m.Close()
	for _, name := range []string{"encoder.inc.conv1.weight", "encoder.down2.norm2.running_var", "mu.weight", "mu.bias",
		"logvar.weight", "logvar.bias", "from_latent.weight", "decoder.up1.conv1.weight", "head.weight", "head.bias"} {
		assert.NotNil(t, m.Store.Get(name), name)
	}
	// 2*2^2 = 8 channels at 2x1 after two poolings of 8x4
	assert.Equal(t, []int{3, 16}, []int(m.Store.Get("mu.weight").Value.Shape()))
	assert.Equal(t, []int{16, 3}, []int(m.Store.Get("from_latent.weight").Value.Shape()))
}

func TestConfig(t *testing.T) {
	var cfg Config
	cfg.InChannels, cfg.Height, cfg.Width = 1, 28, 28
	cfg.Defaults()
	assert.Equal(t, 20, cfg.Latent)
	assert.Equal(t, 1.0, cfg.Beta)
	assert.Equal(t, "bce", cfg.Loss)
	cfg.Depth = 2
	require.NoError(t, cfg.Validate())

	bad := cfg
	bad.Height = 30
	require.ErrorContains(t, bad.Validate(), "multiples of 2^depth = 4")
	bad = cfg
	bad.Loss = "l1"
	require.ErrorContains(t, bad.Validate(), `"l1"`)
	bad = cfg
	bad.Beta = -1
	require.ErrorContains(t, bad.Validate(), "beta")
	bad = cfg
	bad.KLWarmupEpochs = -2
	require.ErrorContains(t, bad.Validate(), "kl_warmup_epochs")
	bad = cfg
	bad.Latent = -1
	require.ErrorContains(t, bad.Validate(), "latent")

	cfg.Beta, cfg.KLWarmupEpochs = 2, 1.5
	assert.Equal(t, 0.0, cfg.BetaAt(0))
	assert.InDelta(t, 1.0, cfg.BetaAt(0.75), 1e-12)
	assert.Equal(t, 2.0, cfg.BetaAt(1.5))
	assert.Equal(t, 2.0, cfg.BetaAt(7))
	cfg.KLWarmupEpochs = 0
	assert.Equal(t, 2.0, cfg.BetaAt(0))
}

type randomImages struct{ n, c, h, w int }

func (d randomImages) Len() int               { return d.n }
func (d randomImages) Shape() (int, int, int) { return d.c, d.h, d.w }
func (d randomImages) Get(i int, _ uint64) ([]float32, []int32, error) {
	r := rand.New(rand.NewPCG(uint64(i), 9))
	v := make([]float32, d.c*d.h*d.w)
	for j := range v {
		v[j] = r.Float32()
	}
	return v, nil, nil
}

// The training graph's loss is recon + beta*KL with beta from the batch's
// fractional epoch, and the logged terms are the ones the loss was made of.
func TestTrainGraphWeighsTheKL(t *testing.T) {
	cfg := smallConfig(3, "mse")
	cfg.Beta, cfg.KLWarmupEpochs = 2, 1
	m, err := New(cfg, 1)
	require.NoError(t, err)
	defer m.Close()
	s := nn.NewScope(m.Store, nn.TrainMode)
	tg, err := (&Task{Model: m}).BuildTrain(s, 4)
	require.NoError(t, err)
	vm := G.NewTapeMachine(s.Graph())
	defer vm.Close()
	x := make([]float32, 4*cfg.ImageSize())
	for i := range x {
		x[i] = float32(i%7) / 6
	}
	read := func(progress float64) (loss, recon, kl, beta float64) {
		require.NoError(t, tg.Feed(nn.Batch{N: 4, C: 2, H: 8, W: 4, X: x, Seed: 3, Progress: progress}))
		require.NoError(t, vm.RunAll())
		defer vm.Reset()
		vals := make([]float64, 4)
		for i, n := range []*G.Node{tg.Loss, tg.Logs["recon"], tg.Logs["kl"], tg.Logs["beta"]} {
			vals[i], err = nn.Scalar(n.Value())
			require.NoError(t, err)
		}
		return vals[0], vals[1], vals[2], vals[3]
	}
	loss, recon, kl, beta := read(0)
	assert.Equal(t, 0.0, beta)
	assert.InDelta(t, recon, loss, 1e-3)
	assert.Greater(t, kl, 0.0)
	// the Gaussian's constant: (D/2) ln pi nats per image on top of the SSE
	assert.Greater(t, recon, cfg.ReconOffset())
	loss2, recon2, kl2, beta := read(0.5)
	assert.Equal(t, 1.0, beta)
	assert.Equal(t, recon, recon2, "same seed, same eps, same weights")
	assert.Equal(t, kl, kl2)
	assert.InDelta(t, recon+kl, loss2, 1e-3)
	loss3, _, _, beta := read(3)
	assert.Equal(t, 2.0, beta)
	assert.InDelta(t, recon+2*kl, loss3, 1e-3)
}

func TestTrainingReportsTheELBO(t *testing.T) {
	m, err := New(smallConfig(3, "bce"), 2)
	require.NoError(t, err)
	defer m.Close()
	ds := randomImages{16, 2, 8, 4}
	res, err := nn.Train(context.Background(), &Task{Model: m, EvalBatch: 5}, m.Store, ds, ds,
		nn.TrainOptions{Epochs: 2, Batch: 4, LR: 1e-2, Seed: 1, RunDir: t.TempDir(), Quiet: true})
	require.NoError(t, err)
	last := res.Last
	for _, k := range []string{"train_loss", "train_recon", "train_kl", "val_neg_elbo", "val_recon", "val_kl", "val_mse", "val_psnr"} {
		assert.Contains(t, last, k)
	}
	assert.InDelta(t, last["train_recon"]+last["train_kl"], last["train_loss"], 1e-3*last["train_loss"], "beta 1: the loss is the negative ELBO")
	assert.InDelta(t, last["val_recon"]+last["val_kl"], last["val_neg_elbo"], 1e-9)
	assert.LessOrEqual(t, res.Best, last["val_neg_elbo"], "the best model has the fewest nats")
}

func TestEvaluateDoesNotDependOnTheBatch(t *testing.T) {
	m, err := New(smallConfig(4, "mse"), 3)
	require.NoError(t, err)
	defer m.Close()
	ds := randomImages{7, 2, 8, 4}
	a, err := Evaluate(context.Background(), m, ds, 2)
	require.NoError(t, err)
	b, err := Evaluate(context.Background(), m, ds, 7)
	require.NoError(t, err)
	assert.Equal(t, 7, a.Images)
	assert.InDelta(t, a.NegELBO, b.NegELBO, 1e-4)
	assert.InDelta(t, a.KL, b.KL, 1e-5)
	assert.InDelta(t, a.MSE, b.MSE, 1e-7)
	assert.Greater(t, a.KL, 0.0)
	assert.InDelta(t, a.Recon+a.KL, a.NegELBO, 1e-9)
	_, err = Evaluate(context.Background(), m, randomImages{2, 1, 8, 4}, 2)
	require.ErrorContains(t, err, "model takes 2x8x4")
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m, err := New(smallConfig(5, "bce"), 3)
	require.NoError(t, err)
	defer m.Close()
	// train a little so the running statistics are not their initial values
	_, err = nn.Train(context.Background(), &Task{Model: m}, m.Store, randomImages{12, 2, 8, 4}, nil,
		nn.TrainOptions{Epochs: 2, Batch: 4, LR: 1e-2, Seed: 1, RunDir: t.TempDir(), Quiet: true})
	require.NoError(t, err)
	x, _, _ := randomImages{2, 2, 8, 4}.Get(0, 0)
	want, err := m.Reconstruct(x, 1)
	require.NoError(t, err)
	for _, v := range want {
		require.True(t, v >= 0 && v <= 1, "BCE outputs pass through the sigmoid")
	}
	samples, err := m.Sample(3, 11)
	require.NoError(t, err)

	path := filepath.Join(t.TempDir(), "vae.safetensors")
	m.Info = map[string]string{"segtool.train_data": "somewhere"}
	require.NoError(t, m.Save(path))
	back, err := Load(path)
	require.NoError(t, err)
	defer back.Close()
	assert.Equal(t, m.Config, back.Config)
	assert.Equal(t, Kind, back.Info[nn.MetaKind])
	assert.Equal(t, "somewhere", back.Info["segtool.train_data"])
	assert.Equal(t, "5", back.Info["segtool.latent"])
	got, err := back.Reconstruct(x, 1)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	again, err := back.Sample(3, 11)
	require.NoError(t, err)
	assert.Equal(t, samples, again)

	// reconstruct is decode(encode) of the means
	mu, lv, err := back.EncodeDist(x, 1)
	require.NoError(t, err)
	require.Len(t, mu, 5)
	require.Len(t, lv, 5)
	y, err := back.Decode(mu, 1)
	require.NoError(t, err)
	assert.Equal(t, got, y)

	// an AE file is not a VAE
	other := filepath.Join(t.TempDir(), "ae.safetensors")
	m.Info[nn.MetaKind] = "ae"
	require.NoError(t, nn.SaveModel(other, m.Store, map[string]string{nn.MetaKind: "ae"}))
	_, err = Load(other)
	require.ErrorContains(t, err, `is an auto-encoder ("ae"); this needs a variational auto-encoder ("vae")`)
}

func TestSamplesAreSeeded(t *testing.T) {
	m, err := New(smallConfig(4, "bce"), 4)
	require.NoError(t, err)
	defer m.Close()
	a, err := m.Sample(6, 1)
	require.NoError(t, err)
	b, err := m.Sample(6, 1)
	require.NoError(t, err)
	c, err := m.Sample(6, 2)
	require.NoError(t, err)
	require.Len(t, a, 6*m.ImageSize())
	assert.Equal(t, a, b, "same seed, same samples")
	assert.NotEqual(t, a, c)
	assert.Equal(t, Normal(10, 3), Normal(10, 3))
	// the draws are standard normal
	z := Normal(20000, 9)
	var s, ss float64
	for _, v := range z {
		s += float64(v)
		ss += float64(v) * float64(v)
	}
	assert.InDelta(t, 0, s/20000, 0.03)
	assert.InDelta(t, 1, ss/20000, 0.04)
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
