package datasets

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countSource is a Source whose sample i is the single value i.
type countSource int

func (n countSource) Len() int             { return int(n) }
func (n countSource) Shape() (c, h, w int) { return 1, 1, 1 }
func (n countSource) Get(i int, seed uint64) ([]float32, []int32, error) {
	if i < 0 || i >= int(n) {
		return nil, nil, fmt.Errorf("index %d out of range", i)
	}
	return []float32{float32(i)}, nil, nil
}

func TestSubsetAndLimit(t *testing.T) {
	src := countSource(10)
	idx := []int{7, 2, 9}
	sub := Subset(src, idx)
	idx[0] = 0 // Subset keeps its own copy
	require.Equal(t, 3, sub.Len())
	c, h, w := sub.Shape()
	assert.Equal(t, []int{1, 1, 1}, []int{c, h, w})
	for i, want := range []float32{7, 2, 9} {
		img, mask, err := sub.Get(i, 0)
		require.NoError(t, err)
		assert.Nil(t, mask)
		assert.Equal(t, want, img[0])
	}
	_, _, err := sub.Get(3, 0)
	assert.ErrorContains(t, err, "out of range")
	_, _, err = Subset(src, []int{12}).Get(0, 0)
	assert.ErrorContains(t, err, "index 12")

	nested := Subset(sub, []int{2, 0})
	img, _, err := nested.Get(0, 0)
	require.NoError(t, err)
	assert.Equal(t, float32(9), img[0])

	assert.Equal(t, 4, Limit(src, 4).Len())
	img, _, err = Limit(src, 4).Get(3, 0)
	require.NoError(t, err)
	assert.Equal(t, float32(3), img[0])
	for _, n := range []int{0, -1, 10, 11} {
		assert.Equal(t, 10, Limit(src, n).Len(), "n=%d", n)
	}
}

func TestSplitIndices(t *testing.T) {
	train, val := SplitIndices(100, 0.2, 7)
	assert.Len(t, val, 20)
	assert.Len(t, train, 80)
	assert.True(t, slices.IsSorted(train) && slices.IsSorted(val))
	all := append(slices.Clone(train), val...)
	slices.Sort(all)
	for i, v := range all {
		require.Equal(t, i, v, "train and val must partition 0..n-1")
	}

	t2, v2 := SplitIndices(100, 0.2, 7)
	assert.Equal(t, train, t2, "same seed, same split")
	assert.Equal(t, val, v2)
	_, v3 := SplitIndices(100, 0.2, 8)
	assert.NotEqual(t, val, v3, "another seed, another split")
	assert.NotEqual(t, []int{80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99}, val, "shuffled, not the tail")

	for _, tc := range []struct {
		n            int
		frac         float64
		nTrain, nVal int
	}{
		{0, 0.5, 0, 0},
		{1, 0.5, 1, 0},
		{2, 0.01, 1, 1},
		{2, 0.99, 1, 1},
		{10, 0, 10, 0},
		{10, 1, 0, 10},
		{10, -3, 10, 0},
		{10, 7, 0, 10},
	} {
		tr, va := SplitIndices(tc.n, tc.frac, 1)
		assert.Len(t, tr, tc.nTrain, "n=%d frac=%g", tc.n, tc.frac)
		assert.Len(t, va, tc.nVal, "n=%d frac=%g", tc.n, tc.frac)
		assert.NotNil(t, tr)
		assert.NotNil(t, va)
	}
}
