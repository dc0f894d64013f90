package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"gorgonia.org/tensor"
)

// The models train in float32, where several kernels take their own paths
// (branch-free ReLU gradient and max-pool gradient, cross-entropy's stashed
// softmax, oneDNN for convolutions); the gradient tests run in float64.
// These tests hold the float32 results to the float64 ones.

func TestFloat32KernelsMatchFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	const n, c, h, w = 3, 5, 7, 9
	s := tensor.Shape{n, c, h, w}
	x64 := randSlice(r, n*c*h*w)
	// ties and zeros, where the rules (first maximum, ReLU at 0) matter
	for i := 0; i < len(x64); i += 7 {
		x64[i] = 0
	}
	for i := 1; i < len(x64); i += 11 {
		x64[i] = x64[i-1]
	}
	dy64 := randSlice(r, len(x64))
	x32, dy32 := to32(x64), to32(dy64)

	y64, y32 := make([]float64, len(x64)), make([]float32, len(x64))
	relu(x64, y64)
	relu(x32, y32)
	relClose(t, "relu", y64, y32, 1e-7)

	g64, g32 := make([]float64, len(x64)), make([]float32, len(x64))
	reluGrad(y64, dy64, g64)
	reluGrad(y32, dy32, g32)
	relClose(t, "relu_dx", g64, g32, 1e-7)
	// in place on dy
	d := append([]float32(nil), dy32...)
	reluGrad(y32, d, d)
	require.Equal(t, g32, d)

	ps := (h / 2) * (w / 2) * n * c
	p64, p32 := make([]float64, ps), make([]float32, ps)
	maxPoolForward(s, x64, p64)
	maxPoolForward(s, x32, p32)
	relClose(t, "maxpool", p64, p32, 1e-7)
	pd64, pd32 := randSlice(r, ps), make([]float32, 0)
	pd32 = to32(pd64)
	dx64, dx32 := make([]float64, len(x64)), make([]float32, len(x64))
	for i := range dx32 {
		dx32[i] = float32(math.NaN()) // every element must be written
	}
	maxPoolBackward(s, x64, pd64, dx64)
	maxPoolBackward(s, x32, pd32, dx32)
	relClose(t, "maxpool_dx", dx64, dx32, 1e-7)

	up64, up32 := make([]float64, 4*len(x64)), make([]float32, 4*len(x64))
	upsampleForward(s, x64, up64)
	upsampleForward(s, x32, up32)
	relClose(t, "upsample", up64, up32, 1e-7)
	u64 := randSlice(r, 4*len(x64))
	upsampleBackward(s, u64, dx64)
	upsampleBackward(s, to32(u64), dx32)
	relClose(t, "upsample_dx", dx64, dx32, 1e-6)

	for _, training := range []bool{true, false} {
		mk := func(dt tensor.Dtype) *bnOp {
			rm, rv := randSlice(rand.New(rand.NewPCG(1, 1)), c), make([]float64, c)
			for i := range rv {
				rv[i] = 0.5 + float64(i)
			}
			st := &BNState{Momentum: 0.1, Eps: 1e-5}
			if dt == tensor.Float32 {
				st.RunningMean = tensor.New(tensor.WithShape(c), tensor.WithBacking(to32(rm)))
				st.RunningVar = tensor.New(tensor.WithShape(c), tensor.WithBacking(to32(rv)))
			} else {
				st.RunningMean = tensor.New(tensor.WithShape(c), tensor.WithBacking(rm))
				st.RunningVar = tensor.New(tensor.WithShape(c), tensor.WithBacking(rv))
			}
			return &bnOp{opBase: newBase("bn"), shape: s, st: st, training: training, mean: make([]float64, c),
				invStd: make([]float64, c), dgamma: make([]float64, c), dbeta: make([]float64, c)}
		}
		b64, b32 := mk(tensor.Float64), mk(tensor.Float32)
		xs := make([]float64, len(x64))
		for i, v := range x64 {
			xs[i] = 3*v + 5 // a mean far from zero
		}
		gamma, beta := randSlice(r, c), randSlice(r, c)
		bnForward(b64, xs, gamma, beta, y64, false)
		bnForward(b32, to32(xs), to32(gamma), to32(beta), y32, false)
		relClose(t, "batchnorm", y64, y32, 1e-5)
		bnBackward(b64, xs, gamma, dy64, g64)
		d32 := append([]float32(nil), dy32...)
		bnBackward(b32, to32(xs), to32(gamma), d32, d32) // in place
		relClose(t, "batchnorm_dx", g64, d32, 1e-5)
		require.InDeltaSlice(t, b64.dgamma, b32.dgamma, 1e-4*max(1, absMax(b64.dgamma)))
		require.InDeltaSlice(t, b64.dbeta, b32.dbeta, 1e-4*max(1, absMax(b64.dbeta)))
	}
}

func absMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

func TestCrossEntropyStashMatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	const n, k, hw = 2, 5, 3000 // an image spans chunks unevenly
	for _, weights := range [][]float64{nil, {1, 2, 0.5, 1, 3}} {
		op := &segLossOp{opBase: newBase("ce"), opt: SegLossOptions{Kind: CrossEntropy, Ignore: 4, Weights: weights}, n: n, k: k, hw: hw}
		x := randSlice(r, n*k*hw)
		for i := range x {
			x[i] *= 5
		}
		y := make([]float64, n*hw)
		for i := range y {
			y[i] = float64(r.IntN(k)) // 4 is ignored
		}
		// the value against a direct per-pixel sum
		var want, wsum float64
		p := make([]float64, k)
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				c := int(y[i*hw+j])
				if c == 4 {
					continue
				}
				pixelSoftmax(x, i, k, hw, j, p)
				wc := op.weight(c)
				want += -wc * math.Log(p[c])
				wsum += wc
			}
		}
		want /= wsum
		for _, f32 := range []bool{false, true} {
			var got float64
			var err error
			if f32 {
				got, err = segLoss(op, to32(x), to32(y))
			} else {
				got, err = segLoss(op, x, y)
			}
			require.NoError(t, err)
			require.InDelta(t, want, got, 1e-5*want)
		}
		// the backward pass from the stash equals the one that recomputes
		got := make([]float64, len(x))
		_, err := segLoss(op, x, y)
		require.NoError(t, err)
		require.NoError(t, segLossBackward(op, x, y, 0.7, got))
		op.stash = 0
		fresh := make([]float64, len(x))
		require.NoError(t, segLossBackward(op, x, y, 0.7, fresh))
		require.InDeltaSlice(t, fresh, got, 1e-12)
		g32 := make([]float32, len(x))
		_, err = segLoss(op, to32(x), to32(y))
		require.NoError(t, err)
		require.NoError(t, segLossBackward(op, to32(x), to32(y), 0.7, g32))
		relClose(t, "ce_dx float32", fresh, g32, 1e-5)
	}
}
