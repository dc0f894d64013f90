package seg

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
