package ae

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/nntest"
	"github.com/segtool/segtool/nn/ops"
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

func TestNetGradients(t *testing.T) {
	for _, tc := range []struct {
		name   string
		latent int
		loss   string
	}{{"dense-code-bce", 3, "bce"}, {"conv-code-mse", 0, "mse"}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(tc.latent, tc.loss)
			nntest.CheckGradients(t, []int{3, 2, 8, 4}, false, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
				net, err := NewNet(s, cfg)
				if err != nil {
					return nil, err
				}
				y, err := net.Forward(x)
				if err != nil {
					return nil, err
				}
				// the loss itself, against a fixed target
				target := s.Input("target", 3, 2, 8, 4)
				td := target.Value().Data().([]float64)
				for i := range td {
					td[i] = float64(i%5) / 4
				}
				return ops.PointwiseLoss(cfg.LossKind(), y, target)
			})
		})
	}
}

func TestConfigValidation(t *testing.T) {
	cfg := smallConfig(4, "mse")
	cfg.Height = 6
	require.ErrorContains(t, cfg.Validate(), "multiples of 2^depth = 4")
	cfg = smallConfig(4, "l1")
	require.ErrorContains(t, cfg.Validate(), `"l1"`)
	cfg = smallConfig(-1, "mse")
	require.Error(t, cfg.Validate())
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

func TestSaveLoadGivesTheSameReconstructions(t *testing.T) {
	m, err := New(smallConfig(5, "bce"), 3)
	require.NoError(t, err)
	defer m.Close()
	// change the running statistics so the test sees them saved
	_, err = nn.Train(context.Background(), &Task{Model: m}, m.Store, randomImages{12, 2, 8, 4}, nil,
		nn.TrainOptions{Epochs: 2, Batch: 4, LR: 1e-2, Seed: 1, RunDir: t.TempDir(), Quiet: true})
	require.NoError(t, err)
	x, _, _ := randomImages{1, 2, 8, 4}.Get(0, 0)
	want, err := m.Reconstruct(x, 1)
	require.NoError(t, err)
	for _, v := range want {
		require.True(t, v >= 0 && v <= 1, "BCE outputs pass through the sigmoid")
	}
	path := filepath.Join(t.TempDir(), "ae.safetensors")
	m.Info = map[string]string{"segtool.train_data": "somewhere"}
	require.NoError(t, m.Save(path))
	back, err := Load(path)
	require.NoError(t, err)
	defer back.Close()
	assert.Equal(t, m.Config, back.Config)
	assert.Equal(t, "somewhere", back.Info["segtool.train_data"])
	got, err := back.Reconstruct(x, 1)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// encode then decode is the same function as reconstruct
	z, err := back.Encode(x, 1)
	require.NoError(t, err)
	require.Len(t, z, 5)
	y, err := back.Decode(z, 1)
	require.NoError(t, err)
	assert.InDeltaSlice(t, toF64(want), toF64(y), 1e-6)
}

func TestEvaluateScoresAgainstTheInput(t *testing.T) {
	m, err := New(smallConfig(5, "mse"), 3)
	require.NoError(t, err)
	defer m.Close()
	ds := randomImages{5, 2, 8, 4}
	var seen int
	res, err := Evaluate(context.Background(), m, ds, 2, func(i int, x, y []float32) {
		assert.Equal(t, seen, i)
		seen++
		want, _, _ := ds.Get(i, 0)
		assert.Equal(t, want, x)
	})
	require.NoError(t, err)
	assert.Equal(t, 5, seen)
	assert.Equal(t, 5, res.Images)
	// with an MSE model the loss is the MSE
	assert.InDelta(t, res.MSE, res.Loss, 1e-9)
	_, err = Evaluate(context.Background(), m, randomImages{2, 1, 8, 4}, 2, nil)
	require.ErrorContains(t, err, "model takes 2x8x4")
}

func TestDenoisingNoiseIsSeededAndClipped(t *testing.T) {
	clean := []float32{0, 0.5, 1, 0.2}
	a, b := make([]float32, 4), make([]float32, 4)
	AddNoise(a, clean, 0.3, 7)
	AddNoise(b, clean, 0.3, 7)
	assert.Equal(t, a, b)
	AddNoise(b, clean, 0.3, 8)
	assert.NotEqual(t, a, b)
	for _, v := range a {
		assert.True(t, v >= 0 && v <= 1)
	}
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
