package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The float32 convolutions run on oneDNN; the float64 ones on the Go kernels
// that the gradient tests check against finite differences. Every shape class
// the models use must agree between the two.
var dnnlShapes = []convGeom{
	{n: 2, c: 16, h: 12, w: 10, o: 32, k: 3, pad: 1}, // 3x3 same, blocked channels
	{n: 2, c: 3, h: 16, w: 16, o: 16, k: 3, pad: 1},  // first layer: 3 input channels
	{n: 1, c: 1, h: 9, w: 9, o: 8, k: 3, pad: 1},     // grey input
	{n: 3, c: 16, h: 8, w: 8, o: 4, k: 1, pad: 0},    // 1x1 head to 4 classes
	{n: 2, c: 48, h: 6, w: 6, o: 16, k: 3, pad: 1},   // decoder: concatenated skip
	{n: 2, c: 5, h: 7, w: 5, o: 6, k: 3, pad: 1},     // odd sizes and channel counts
	{n: 2, c: 5, h: 7, w: 9, o: 3, k: 3, pad: 0},     // valid padding
	{n: 1, c: 7, h: 3, w: 11, o: 9, k: 1, pad: 0},    // odd 1x1
	{n: 2, c: 256, h: 4, w: 4, o: 128, k: 3, pad: 1}, // deep, tiny spatial
	{n: 1, c: 24, h: 13, w: 17, o: 20, k: 5, pad: 2}, // 5x5
	{n: 2, c: 32, h: 33, w: 31, o: 16, k: 3, pad: 1}, // odd, larger
	{n: 1, c: 3, h: 128, w: 96, o: 16, k: 3, pad: 1}, // a real first layer
	{n: 1, c: 64, h: 20, w: 20, o: 64, k: 3, pad: 1}, // equal channels
	{n: 4, c: 2, h: 5, w: 4, o: 3, k: 3, pad: 1},     // the gradient tests' sizes
	{n: 1, c: 512, h: 2, w: 2, o: 256, k: 3, pad: 1}, // wider than the reference net
	{n: 2, c: 128, h: 8, w: 8, o: 256, k: 1, pad: 0}, // wide 1x1
	{n: 1, c: 16, h: 1, w: 1, o: 16, k: 3, pad: 1},   // a single pixel
	{n: 1, c: 17, h: 6, w: 6, o: 33, k: 3, pad: 1},   // just past a block of 16
	{n: 8, c: 16, h: 16, w: 16, o: 16, k: 3, pad: 1}, // full batch
	{n: 2, c: 384, h: 8, w: 8, o: 128, k: 3, pad: 1}, // the deepest decoder level
	{n: 2, c: 16, h: 64, w: 64, o: 4, k: 1, pad: 0},  // a real head
	{n: 1, c: 3, h: 2, w: 3, o: 2, k: 3, pad: 1},     // smaller than the kernel's reach
	{n: 1, c: 8, h: 10, w: 10, o: 8, k: 3, pad: 0},   // valid, blocked
	{n: 1, c: 96, h: 32, w: 32, o: 32, k: 3, pad: 1}, // the third decoder level
}

func randSlice(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// relClose requires max |got-want| <= tol * max |want| (and elementwise no
// worse than 10 tol relative to that scale, so no one element hides).
func relClose(t *testing.T, what string, want []float64, got []float32, tol float64) {
	t.Helper()
	require.Len(t, got, len(want), what)
	scale := 0.0
	for _, v := range want {
		scale = max(scale, math.Abs(v))
	}
	scale = max(scale, 1e-30)
	worst, at := 0.0, 0
	for i, v := range want {
		if d := math.Abs(float64(got[i]) - v); d > worst {
			worst, at = d, i
		}
	}
	require.LessOrEqualf(t, worst/scale, tol, "%s: element %d: got %g want %g (scale %g)", what, at, got[at], want[at], scale)
}

func TestDNNLConvMatchesGoKernels(t *testing.T) {
	for _, g := range dnnlShapes {
		t.Run(fmt.Sprintf("n%d_c%d_%dx%d_o%d_k%d_p%d", g.n, g.c, g.h, g.w, g.o, g.k, g.pad), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(g.c*1000+g.h), uint64(g.o)))
			inN, outN := g.n*g.c*g.h*g.w, g.n*g.o*g.oh()*g.ow()
			x, w, b, dy := randSlice(r, inN), randSlice(r, g.o*g.c*g.k*g.k), randSlice(r, g.o), randSlice(r, outN)

			y64 := make([]float64, outN)
			convForward(g, x, w, b, y64)
			y32 := make([]float32, outN)
			require.NoError(t, dnnlConvForward(g, to32(x), to32(w), to32(b), y32, false, 0))
			relClose(t, "forward", y64, y32, 1e-4)

			dx64 := make([]float64, inN)
			convDataGrad(g, w, dy, dx64)
			dx32 := make([]float32, inN)
			for i := range dx32 {
				dx32[i] = float32(math.NaN()) // the kernel must overwrite, not accumulate
			}
			require.NoError(t, dnnlConvDataGrad(g, to32(w), to32(dy), dx32, 0))
			relClose(t, "backward data", dx64, dx32, 1e-4)

			dw64 := make([]float64, len(w))
			convWeightGrad(g, x, dy, dw64)
			db64 := make([]float64, g.o)
			channelSum(g.n, g.o, g.oh()*g.ow(), dy, db64)
			dw32, db32 := make([]float32, len(w)), make([]float32, g.o)
			for i := range dw32 {
				dw32[i] = float32(math.NaN())
			}
			require.NoError(t, dnnlConvWeightGrad(g, to32(x), to32(dy), dw32, db32, 0))
			relClose(t, "backward weights", dw64, dw32, 1e-4)
			relClose(t, "backward bias", db64, db32, 1e-4)
			dw32b := make([]float32, len(w))
			require.NoError(t, dnnlConvWeightGrad(g, to32(x), to32(dy), dw32b, nil, 0))
			relClose(t, "backward weights without bias", dw64, dw32b, 1e-4)
		})
	}
}
