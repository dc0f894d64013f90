package seg

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
)

// randomLabelled is n random images of the model's size with random masks;
// with native set, it also gives masks of their own (larger) size, as
// labelled folders do.
type randomLabelled struct {
	n, c, h, w int
	k          int
	native     bool
}

func (d randomLabelled) Len() int             { return d.n }
func (d randomLabelled) Shape() (c, h, w int) { return d.c, d.h, d.w }
func (d randomLabelled) mask(i, h, w int) []int32 {
	r := rand.New(rand.NewPCG(uint64(i), 9))
	m := make([]int32, h*w)
	for j := range m {
		m[j] = int32(r.IntN(d.k))
	}
	return m
}

func (d randomLabelled) Get(i int, _ uint64) ([]float32, []int32, error) {
	return smoothImage(d.h, d.w, uint64(i)), d.mask(i, d.h, d.w), nil
}

type nativeLabelled struct{ randomLabelled }

func (d nativeLabelled) Native(i int) ([]float32, int, int, []int32, error) {
	h, w := d.h+8, d.w+16
	return smoothImage(h, w, uint64(i)), h, w, d.mask(i, h, w), nil
}

// The confusion matrix is the same whatever the batch, including batches
// that do not divide the set (the last one is padded) and batches larger
// than the set; at native resolution too.
func TestEvaluateDoesNotDependOnTheBatch(t *testing.T) {
	m := tileTestModel(t, 2)
	base := randomLabelled{n: 7, c: 3, h: 32, w: 32, k: 3}
	for _, ds := range []interface {
		Len() int
		Shape() (int, int, int)
		Get(int, uint64) ([]float32, []int32, error)
	}{base, nativeLabelled{base}} {
		var counted []int
		want, err := Evaluate(context.Background(), m, ds, 1, func(i int, pred []int32, h, w int) {
			counted = append(counted, i)
			assert.Len(t, pred, h*w)
		})
		require.NoError(t, err)
		assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6}, counted, "each image once, in order")
		var total int64
		for _, row := range want.Counts {
			for _, v := range row {
				total += v
			}
		}
		_, h, w := ds.Shape()
		if _, ok := ds.(nativeLabelled); ok {
			h, w = h+8, w+16
		}
		assert.Equal(t, int64(7*h*w), total, "every pixel of every mask counted once")
		for _, b := range []int{2, 3, 4, 7, 16} {
			got, err := Evaluate(context.Background(), m, ds, b, nil)
			require.NoError(t, err)
			assert.Equal(t, want.Counts, got.Counts, "batch %d", b)
		}
	}
}

// The validation loss is the training loss: without batch norm (whose
// statistics differ between training and inference) the training graph's
// loss on a batch equals Validate's on the same images in one batch.
func TestValidateLossIsTheTrainingLoss(t *testing.T) {
	for _, loss := range []string{"ce", "focal", "dice", "ce+dice"} {
		t.Run(loss, func(t *testing.T) {
			cfg := Config{
				NetConfig:  NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: 4, Depth: 2, Norm: nn.NoNorm}, Classes: 3},
				Height:     16,
				Width:      16,
				ClassTable: []Class{{Name: "a"}, {Name: "b"}, {Name: "c"}},
				Ignore:     -1,
				Loss:       loss,
			}
			if loss == "ce" {
				cfg.ClassWeights = []float64{1, 2, 0.5}
			}
			m, err := New(cfg, 3)
			require.NoError(t, err)
			defer m.Close()
			ds := randomLabelled{n: 5, c: 3, h: 16, w: 16, k: 3}
			task := &Task{Model: m, EvalBatch: ds.n}
			got, err := task.Validate(context.Background(), m.Store, ds)
			require.NoError(t, err)

			s := nn.NewScope(m.Store, nn.TrainMode)
			tg, err := task.BuildTrain(s, ds.n)
			require.NoError(t, err)
			vm := G.NewTapeMachine(s.Graph())
			defer vm.Close()
			b := nn.Batch{N: ds.n, C: 3, H: 16, W: 16}
			for i := range ds.n {
				img, mask, _ := ds.Get(i, 0)
				b.X, b.Masks = append(b.X, img...), append(b.Masks, mask...)
			}
			require.NoError(t, tg.Feed(b))
			require.NoError(t, vm.RunAll())
			want, err := nn.Scalar(tg.Loss.Value())
			require.NoError(t, err)
			assert.Greater(t, want, 0.0)
			assert.InDelta(t, want, got["loss"], 1e-5*want)
		})
	}
}
