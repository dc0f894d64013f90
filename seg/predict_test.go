package seg

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tileTestModel(t *testing.T, depth int) *Model {
	t.Helper()
	cfg := Config{
		NetConfig:  NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: 4, Depth: depth}, Classes: 3},
		Height:     32,
		Width:      32,
		ClassTable: []Class{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		Ignore:     -1,
	}
	m, err := New(cfg, 11)
	require.NoError(t, err)
	t.Cleanup(m.Close)
	return m
}

// smoothImage is a picture of slowly varying colour (a few low-frequency
// waves), the kind of content on which a tile's border looks like the
// picture around it.
func smoothImage(h, w int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 2))
	x := make([]float32, 3*h*w)
	for c := range 3 {
		fy, fx, ph := 1+2*r.Float64(), 1+2*r.Float64(), 2*math.Pi*r.Float64()
		for i := range h {
			for j := range w {
				v := 0.5 + 0.4*math.Sin(fy*math.Pi*float64(i)/float64(h)+fx*math.Pi*float64(j)/float64(w)+ph)
				x[(c*h+i)*w+j] = float32(v)
			}
		}
	}
	return x
}

func TestLogitsTiledOneTileIsLogits(t *testing.T) {
	m := tileTestModel(t, 2)
	h, w := 40, 56
	x := smoothImage(h, w, 1)
	want, err := m.Logits(x, 1, h, w)
	require.NoError(t, err)
	for _, opt := range []TileOptions{{Height: 40, Width: 56}, {Height: 64, Width: 64}} {
		got, err := m.LogitsTiled(x, h, w, opt)
		require.NoError(t, err)
		assert.Equal(t, want, got, "%+v", opt)
	}
}

// tiledError is the mean absolute difference of tiled from full-image
// logits, relative to the logits' mean absolute deviation, and the share of
// pixels whose class agrees.
func tiledError(t *testing.T, m *Model, x []float32, h, w int, opt TileOptions) (rel, agree float64) {
	t.Helper()
	want, err := m.Logits(x, 1, h, w)
	require.NoError(t, err)
	got, err := m.LogitsTiled(x, h, w, opt)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	var diff, spread, mean float64
	for _, v := range want {
		mean += float64(v)
	}
	mean /= float64(len(want))
	for i, v := range want {
		diff += math.Abs(float64(got[i] - v))
		spread += math.Abs(float64(v) - mean)
	}
	a, b := Argmax(want, 3, h*w), Argmax(got, 3, h*w)
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	return diff / spread, float64(same) / float64(len(a))
}

func TestLogitsTiledSmallTilesStayClose(t *testing.T) {
	m := tileTestModel(t, 2)
	h, w := 64, 96
	x := smoothImage(h, w, 2)
	abut, _ := tiledError(t, m, x, h, w, TileOptions{Height: 32, Width: 32, Overlap: 1})
	for _, opt := range []TileOptions{{Height: 32, Width: 32, Overlap: 16, Batch: 3}, {Height: 48, Width: 40}} {
		rel, agree := tiledError(t, m, x, h, w, opt)
		t.Logf("%+v: relative error %.3f (abutting tiles %.3f), class agreement %.3f", opt, rel, abut, agree)
		assert.Less(t, rel, 0.1, "%+v", opt)
		assert.Less(t, rel, abut, "blending overlapping tiles beats abutting ones")
		assert.Greater(t, agree, 0.95, "%+v", opt)
	}
}

func TestTileStarts(t *testing.T) {
	assert.Equal(t, []int{0}, tileStarts(30, 32, 8))
	assert.Equal(t, []int{0}, tileStarts(32, 32, 8))
	assert.Equal(t, []int{0, 24, 48, 64}, tileStarts(96, 32, 8))
	for _, n := range []int{33, 50, 97, 130} {
		s := tileStarts(n, 32, 8)
		assert.Equal(t, 0, s[0])
		assert.Equal(t, n-32, s[len(s)-1], "the last tile is flush with the edge")
		for i := 1; i < len(s); i++ {
			assert.LessOrEqual(t, s[i]-s[i-1], 24, "neighbours overlap by at least 8")
		}
	}
	r := blendRamp(16, 4)
	for i, v := range r {
		assert.Greater(t, v, float32(0))
		assert.Equal(t, v, r[len(r)-1-i], "symmetric")
	}
	assert.Equal(t, float32(1), r[8])
}

func TestTileOptionErrors(t *testing.T) {
	m := tileTestModel(t, 2)
	x := smoothImage(40, 40, 3)
	_, err := m.LogitsTiled(x, 40, 40, TileOptions{Height: 16, Width: 16, Overlap: 16})
	assert.ErrorContains(t, err, "overlap")
	_, err = m.LogitsTiled(x[:10], 40, 40, TileOptions{})
	assert.ErrorContains(t, err, "values")
}

func TestSoftmax(t *testing.T) {
	p := Softmax([]float32{1000, 0, 0, 1}, 2, 2) // [k=2][hw=2]
	assert.InDelta(t, 1, p[0], 1e-6)
	assert.InDelta(t, 0, p[2], 1e-6)
	assert.InDelta(t, 1/(1+math.E), p[1], 1e-6)
	assert.InDelta(t, math.E/(1+math.E), p[3], 1e-6)
}

func TestSmoother(t *testing.T) {
	off, err := NewSmoother(0)
	require.NoError(t, err)
	l := []float32{3, -1, 0.5, 2}
	assert.Equal(t, []float32{3, -1, 0.5, 2}, off.Step(l, 2, 2), "A = 0 passes logits through")

	s, err := NewSmoother(0.5)
	require.NoError(t, err)
	// one pixel, two classes, flipping every frame between confident
	// class 0 and a weaker class 1: the average stays with class 0
	frames := [][]float32{{4, 0}, {0, 1}, {4, 0}, {0, 1}}
	for i, f := range frames {
		p := s.Step(append([]float32(nil), f...), 2, 1)
		assert.InDelta(t, 1, p[0]+p[1], 1e-6)
		if i > 0 {
			assert.Equal(t, int32(0), Argmax(p, 2, 1)[0], "frame %d", i)
		}
	}
	s.Reset()
	p := s.Step([]float32{0, 1}, 2, 1)
	assert.Equal(t, int32(1), Argmax(p, 2, 1)[0], "after Reset there is no past")
	for _, a := range []float64{-0.1, 1, math.NaN()} {
		_, err := NewSmoother(a)
		assert.Error(t, err, "%g", a)
	}
}
