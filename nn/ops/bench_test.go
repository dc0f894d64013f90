package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gorgonia.org/tensor"
)

// The reference U-Net's convolutions (batch 8, 128x128 input), float32 on
// oneDNN: go test -run '^$' -bench Conv ./nn/ops/
var unetConvs = []convGeom{
	{n: 8, c: 3, h: 128, w: 128, o: 16, k: 3, pad: 1},
	{n: 8, c: 16, h: 128, w: 128, o: 16, k: 3, pad: 1},
	{n: 8, c: 48, h: 128, w: 128, o: 16, k: 3, pad: 1},
	{n: 8, c: 32, h: 64, w: 64, o: 32, k: 3, pad: 1},
	{n: 8, c: 64, h: 32, w: 32, o: 64, k: 3, pad: 1},
	{n: 8, c: 128, h: 16, w: 16, o: 128, k: 3, pad: 1},
	{n: 8, c: 256, h: 8, w: 8, o: 256, k: 3, pad: 1},
	{n: 8, c: 384, h: 16, w: 16, o: 128, k: 3, pad: 1},
	{n: 8, c: 16, h: 128, w: 128, o: 4, k: 1, pad: 0},
}

func BenchmarkConv(b *testing.B) {
	for _, g := range unetConvs {
		r := rand.New(rand.NewPCG(1, 2))
		x := to32(randSlice(r, g.n*g.c*g.h*g.w))
		w := to32(randSlice(r, g.o*g.c*g.k*g.k))
		bias := to32(randSlice(r, g.o))
		y := make([]float32, g.n*g.o*g.oh()*g.ow())
		dx := make([]float32, len(x))
		dw := make([]float32, len(w))
		flops := 2 * float64(g.n*g.oh()*g.ow()) * float64(g.o*g.c*g.k*g.k)
		name := fmt.Sprintf("c%d_o%d_%d_k%d", g.c, g.o, g.h, g.k)
		for _, kind := range []string{"fwd", "bwd_data", "bwd_weights"} {
			b.Run(name+"/"+kind, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					var err error
					switch kind {
					case "fwd":
						err = dnnlConvForward(g, x, w, bias, y, false, 0)
					case "bwd_data":
						err = dnnlConvDataGrad(g, w, y, dx, 0)
					case "bwd_weights":
						err = dnnlConvWeightGrad(g, x, y, dw, bias, 0)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// The Go kernels on the reference net's largest activation, [8,16,128,128].
func BenchmarkKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	const n, c, h, w = 8, 16, 128, 128
	x := to32(randSlice(r, n*c*h*w))
	dy := to32(randSlice(r, n*c*h*w))
	y := make([]float32, len(x))
	relu(x, y)
	out := make([]float32, len(x))
	bytes := func(b *testing.B, nb int) { b.SetBytes(int64(nb)) }
	b.Run("relu", func(b *testing.B) {
		bytes(b, 8*len(x))
		for i := 0; i < b.N; i++ {
			relu(x, out)
		}
	})
	b.Run("relu_dx", func(b *testing.B) {
		bytes(b, 12*len(x))
		for i := 0; i < b.N; i++ {
			reluGrad(y, dy, out)
		}
	})
	s := tensor.Shape{n, c, h, w}
	pooled := make([]float32, len(x)/4)
	b.Run("maxpool2", func(b *testing.B) {
		bytes(b, 5*len(x))
		for i := 0; i < b.N; i++ {
			maxPoolForward(s, x, pooled)
		}
	})
	b.Run("maxpool2_dx", func(b *testing.B) {
		bytes(b, 9*len(x))
		for i := 0; i < b.N; i++ {
			maxPoolBackward(s, x, pooled, out)
		}
	})
	st := &BNState{RunningMean: tensor.New(tensor.WithShape(c), tensor.WithBacking(make([]float32, c))),
		RunningVar: tensor.New(tensor.WithShape(c), tensor.WithBacking(make([]float32, c))), Momentum: 0.1, Eps: 1e-5}
	bn := &bnOp{opBase: newBase("bn"), shape: s, st: st, training: true, mean: make([]float64, c), invStd: make([]float64, c),
		dgamma: make([]float64, c), dbeta: make([]float64, c)}
	gamma, beta := to32(randSlice(r, c)), to32(randSlice(r, c))
	b.Run("batchnorm", func(b *testing.B) {
		bytes(b, 8*len(x))
		for i := 0; i < b.N; i++ {
			bnForward(bn, x, gamma, beta, out, false)
		}
	})
	b.Run("batchnorm_dx", func(b *testing.B) {
		bytes(b, 12*len(x))
		for i := 0; i < b.N; i++ {
			bnBackward(bn, x, gamma, dy, out)
		}
	})
	const k = 4
	logits := to32(randSlice(r, n*k*h*w))
	labels := make([]float32, n*h*w)
	for i := range labels {
		labels[i] = float32(r.IntN(k))
	}
	ce := &segLossOp{opBase: newBase("ce"), opt: SegLossOptions{Kind: CrossEntropy, Ignore: -1}, n: n, k: k, hw: h * w}
	dl := make([]float32, len(logits))
	b.Run("ce", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := segLoss(ce, logits, labels); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ce_dx", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := segLossBackward(ce, logits, labels, 1, dl); err != nil {
				b.Fatal(err)
			}
		}
	})
	up := make([]float32, len(x)*4)
	b.Run("upsample2", func(b *testing.B) {
		bytes(b, 20*len(x))
		for i := 0; i < b.N; i++ {
			upsampleForward(s, x, up)
		}
	})
	b.Run("upsample2_dx", func(b *testing.B) {
		bytes(b, 20*len(x))
		for i := 0; i < b.N; i++ {
			upsampleBackward(s, up, out)
		}
	})
}
