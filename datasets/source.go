package datasets

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Source is a random-access data set of same-shaped samples.
//
// Get returns sample i as a C*H*W []float32 in CHW order (RGB channel order,
// values in [0,1]) and, for labelled data sets, its H*W class mask; mask is
// nil for unlabelled data. seed selects the random augmentation of sample i
// for sources that augment; sources that do not ignore it. Callers must treat
// the returned slices as read-only: a source may hand out its cache.
type Source interface {
	// Len is the number of samples.
	Len() int
	// Shape is the shape of every image Get returns.
	Shape() (c, h, w int)
	// Get returns sample i (0 <= i < Len()).
	Get(i int, seed uint64) ([]float32, []int32, error)
}

// The data sets of this package are Sources.
var (
	_ Source = (*ImageFolder)(nil)
	_ Source = (*MNIST)(nil)
	_ Source = (*subset)(nil)
)

// subset is a view of a Source through an index list.
type subset struct {
	src Source
	idx []int
}

// Subset returns the view of src whose sample i is src's sample idx[i]. The
// index list is copied; indices are not checked here, an index outside src
// makes that sample's Get fail.
func Subset(src Source, idx []int) Source {
	return &subset{src: src, idx: slices.Clone(idx)}
}

// Len is the number of indices in the view.
func (s *subset) Len() int { return len(s.idx) }

// Shape is the underlying source's shape.
func (s *subset) Shape() (c, h, w int) { return s.src.Shape() }

// Get returns the underlying source's sample idx[i].
func (s *subset) Get(i int, seed uint64) ([]float32, []int32, error) {
	if i < 0 || i >= len(s.idx) {
		return nil, nil, fmt.Errorf("subset: index %d out of range [0,%d)", i, len(s.idx))
	}
	j := s.idx[i]
	if j < 0 || j >= s.src.Len() {
		return nil, nil, fmt.Errorf("subset: sample %d maps to index %d, outside the source's %d samples", i, j, s.src.Len())
	}
	return s.src.Get(j, seed)
}

// Limit returns the first n samples of src; n <= 0 or n >= src.Len() returns
// src itself (all samples).
func Limit(src Source, n int) Source {
	if n <= 0 || n >= src.Len() {
		return src
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return Subset(src, idx)
}

// SplitIndices splits the indices 0..n-1 into a training and a validation
// set, shuffled by a math/rand/v2 PCG generator seeded with (seed, 0), so the
// same (n, valFrac, seed) always gives the same split. valFrac is clamped to
// [0,1]; the validation set holds round(valFrac*n) indices, except that for
// valFrac < 1 the training set keeps at least one index and for valFrac > 0
// and n >= 2 the validation set gets at least one. Each returned
// list is sorted ascending (the trainer shuffles per epoch itself) and
// non-nil.
func SplitIndices(n int, valFrac float64, seed uint64) (train, val []int) {
	if n <= 0 {
		return []int{}, []int{}
	}
	if math.IsNaN(valFrac) || valFrac < 0 {
		valFrac = 0
	}
	if valFrac > 1 {
		valFrac = 1
	}
	nVal := int(math.Round(valFrac * float64(n)))
	if valFrac < 1 {
		nVal = min(nVal, n-1)
	}
	if valFrac > 0 && n >= 2 {
		nVal = max(nVal, 1)
	}
	perm := rand.New(rand.NewPCG(seed, 0)).Perm(n)
	val = slices.Clone(perm[:nVal])
	train = slices.Clone(perm[nVal:])
	slices.Sort(val)
	slices.Sort(train)
	return train, val
}
