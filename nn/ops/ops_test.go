package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func randTensor(r *rand.Rand, shape ...int) *tensor.Dense {
	n := tensor.Shape(shape).TotalSize()
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// gradCheck builds f over input nodes holding vals, reduces the output to a
// scalar with fixed random weights, and compares the gradient with respect to
// each input in wrt against central finite differences (float64).
func gradCheck(t *testing.T, vals []*tensor.Dense, wrt []int, f func(in []*G.Node) (*G.Node, error)) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	g := G.NewGraph()
	nodes := make([]*G.Node, len(vals))
	for i, v := range vals {
		nodes[i] = G.NewTensor(g, tensor.Float64, v.Dims(), G.WithShape(v.Shape()...), G.WithValue(v), G.WithName(string(rune('a'+i))))
	}
	y, err := f(nodes)
	require.NoError(t, err)
	cost := y
	if !y.IsScalar() {
		wv := randTensor(r, y.Shape()...)
		w := G.NewTensor(g, tensor.Float64, wv.Dims(), G.WithShape(wv.Shape()...), G.WithValue(wv), G.WithName("w"))
		cost = G.Must(G.Sum(G.Must(G.HadamardProd(y, w))))
	}
	var wrtNodes G.Nodes
	for _, i := range wrt {
		wrtNodes = append(wrtNodes, nodes[i])
	}
	_, err = G.Grad(cost, wrtNodes...)
	require.NoError(t, err)
	m := G.NewTapeMachine(g, G.BindDualValues(wrtNodes...))
	defer m.Close()
	require.NoError(t, m.RunAll())
	analytic := make([][]float64, len(wrt))
	for k, n := range wrtNodes {
		gv, err := n.Grad()
		require.NoError(t, err)
		analytic[k] = append([]float64(nil), gv.Data().([]float64)...)
	}
	m.Reset()
	eval := func() float64 {
		require.NoError(t, m.RunAll())
		v, err := scalar(cost.Value())
		require.NoError(t, err)
		m.Reset()
		return v
	}
	const eps = 1e-6
	for k, i := range wrt {
		x := vals[i].Data().([]float64)
		// every element of small inputs, a sample of large ones
		idx := r.Perm(len(x))
		if len(idx) > 40 {
			idx = idx[:40]
		}
		for _, j := range idx {
			orig := x[j]
			x[j] = orig + eps
			up := eval()
			x[j] = orig - eps
			down := eval()
			x[j] = orig
			num := (up - down) / (2 * eps)
			tol := 1e-5 * max(1, math.Abs(num))
			require.InDeltaf(t, num, analytic[k][j], tol, "input %d element %d", i, j)
		}
	}
}

func TestConvGradients(t *testing.T) {
	for _, tc := range []struct {
		name   string
		k, pad int
	}{{"3x3", 3, 1}, {"1x1", 1, 0}, {"3x3-valid", 3, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			vals := []*tensor.Dense{randTensor(r, 3, 2, 5, 6), randTensor(r, 4, 2, tc.k, tc.k), randTensor(r, 4)}
			gradCheck(t, vals, []int{0, 1, 2}, func(in []*G.Node) (*G.Node, error) {
				return Conv2D(in[0], in[1], in[2], tc.pad, true)
			})
		})
	}
}

func TestConvMatchesDirectSum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x, w, b := randTensor(r, 2, 3, 7, 5), randTensor(r, 4, 3, 3, 3), randTensor(r, 4)
	g := convGeom{n: 2, c: 3, h: 7, w: 5, o: 4, k: 3, pad: 1}
	y := make([]float64, 2*4*7*5)
	convForward(g, data[float64](x), data[float64](w), data[float64](b), y)
	xd, wd, bd := data[float64](x), data[float64](w), data[float64](b)
	for n := 0; n < 2; n++ {
		for o := 0; o < 4; o++ {
			for i := 0; i < 7; i++ {
				for j := 0; j < 5; j++ {
					s := bd[o]
					for c := 0; c < 3; c++ {
						for ky := 0; ky < 3; ky++ {
							for kx := 0; kx < 3; kx++ {
								yy, xx := i+ky-1, j+kx-1
								if yy >= 0 && yy < 7 && xx >= 0 && xx < 5 {
									s += wd[((o*3+c)*3+ky)*3+kx] * xd[((n*3+c)*7+yy)*5+xx]
								}
							}
						}
					}
					require.InDelta(t, s, y[((n*4+o)*7+i)*5+j], 1e-12)
				}
			}
		}
	}
}

// The stock Gorgonia ops are the reference the custom ones replace.
func TestMatchesStockOps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	xv, wv := randTensor(r, 2, 3, 8, 6), randTensor(r, 5, 3, 3, 3)
	run := func(f func(x, w *G.Node) (*G.Node, error)) []float64 {
		g := G.NewGraph()
		x := G.NewTensor(g, tensor.Float64, 4, G.WithShape(2, 3, 8, 6), G.WithValue(xv.Clone()), G.WithName("x"))
		w := G.NewTensor(g, tensor.Float64, 4, G.WithShape(5, 3, 3, 3), G.WithValue(wv.Clone()), G.WithName("w"))
		y, err := f(x, w)
		require.NoError(t, err)
		var out G.Value
		G.Read(y, &out)
		m := G.NewTapeMachine(g)
		defer m.Close()
		require.NoError(t, m.RunAll())
		return append([]float64(nil), out.Data().([]float64)...)
	}
	zeroBias := func(g *G.ExprGraph) *G.Node {
		return G.NewTensor(g, tensor.Float64, 1, G.WithShape(5), G.WithValue(tensor.New(tensor.WithShape(5), tensor.WithBacking(make([]float64, 5)))), G.WithName("b"))
	}
	require.InDeltaSlice(t,
		run(func(x, w *G.Node) (*G.Node, error) {
			return G.Conv2d(x, w, tensor.Shape{3, 3}, []int{1, 1}, []int{1, 1}, []int{1, 1})
		}),
		run(func(x, w *G.Node) (*G.Node, error) { return Conv2D(x, w, zeroBias(x.Graph()), 1, true) }), 1e-10, "conv")
	require.InDeltaSlice(t,
		run(func(x, _ *G.Node) (*G.Node, error) {
			return G.MaxPool2D(x, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2})
		}),
		run(func(x, _ *G.Node) (*G.Node, error) { return MaxPool2(x) }), 0, "maxpool")
	require.InDeltaSlice(t,
		run(func(x, _ *G.Node) (*G.Node, error) { return G.Upsample2D(x, 2) }),
		run(func(x, _ *G.Node) (*G.Node, error) { return Upsample2(x) }), 0, "upsample")
	require.InDeltaSlice(t,
		run(func(x, _ *G.Node) (*G.Node, error) { return G.Rectify(x) }),
		run(func(x, _ *G.Node) (*G.Node, error) { return ReLU(x) }), 0, "relu")
}

func TestSpatialGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	t.Run("maxpool", func(t *testing.T) {
		gradCheck(t, []*tensor.Dense{randTensor(r, 2, 3, 6, 7)}, []int{0}, func(in []*G.Node) (*G.Node, error) { return MaxPool2(in[0]) })
	})
	t.Run("upsample", func(t *testing.T) {
		gradCheck(t, []*tensor.Dense{randTensor(r, 2, 3, 3, 4)}, []int{0}, func(in []*G.Node) (*G.Node, error) { return Upsample2(in[0]) })
	})
	t.Run("relu", func(t *testing.T) {
		gradCheck(t, []*tensor.Dense{randTensor(r, 2, 3, 4, 4)}, []int{0}, func(in []*G.Node) (*G.Node, error) { return ReLU(in[0]) })
	})
	t.Run("concat", func(t *testing.T) {
		gradCheck(t, []*tensor.Dense{randTensor(r, 2, 3, 4, 4), randTensor(r, 2, 1, 4, 4), randTensor(r, 2, 2, 4, 4)}, []int{0, 1, 2},
			func(in []*G.Node) (*G.Node, error) { return ConcatChannels(in...) })
	})
	t.Run("linear", func(t *testing.T) {
		gradCheck(t, []*tensor.Dense{randTensor(r, 3, 5), randTensor(r, 4, 5), randTensor(r, 4)}, []int{0, 1, 2},
			func(in []*G.Node) (*G.Node, error) { return Linear(in[0], in[1], in[2]) })
	})
}

func TestBatchNormGradients(t *testing.T) {
	for _, training := range []bool{true, false} {
		name := map[bool]string{true: "train", false: "eval"}[training]
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(10, 11))
			st := &BNState{RunningMean: randTensor(r, 3), RunningVar: tensor.New(tensor.WithShape(3), tensor.WithBacking([]float64{0.5, 1, 2})), Momentum: 0.1, Eps: 1e-5}
			vals := []*tensor.Dense{randTensor(r, 4, 3, 3, 2), randTensor(r, 3), randTensor(r, 3)}
			gradCheck(t, vals, []int{0, 1, 2}, func(in []*G.Node) (*G.Node, error) {
				return BatchNorm(in[0], in[1], in[2], st, training)
			})
		})
	}
}

func TestBatchNormStatistics(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	xv := randTensor(r, 5, 2, 3, 3)
	xd := data[float64](xv)
	for i := range xd {
		xd[i] = xd[i]*3 + 2
	}
	st := &BNState{RunningMean: tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{0, 0})),
		RunningVar: tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 1})), Momentum: 0.1, Eps: 1e-5}
	op := &bnOp{opBase: newBase("bn"), shape: tensor.Shape{5, 2, 3, 3}, st: st, training: true, mean: make([]float64, 2), invStd: make([]float64, 2)}
	y := make([]float64, len(xd))
	bnForward(op, xd, []float64{1, 1}, []float64{0, 0}, y, false)
	for ch := 0; ch < 2; ch++ {
		var vals []float64
		for n := 0; n < 5; n++ {
			vals = append(vals, xd[(n*2+ch)*9:(n*2+ch+1)*9]...)
		}
		var mean, ss float64
		for _, v := range vals {
			mean += v
		}
		mean /= float64(len(vals))
		for _, v := range vals {
			ss += (v - mean) * (v - mean)
		}
		unbiased := ss / float64(len(vals)-1)
		require.InDelta(t, 0.1*mean, data[float64](st.RunningMean)[ch], 1e-12)
		require.InDelta(t, 0.9+0.1*unbiased, data[float64](st.RunningVar)[ch], 1e-12)
		// normalised output has zero mean, unit (biased) variance
		var ym, yss float64
		for n := 0; n < 5; n++ {
			for _, v := range y[(n*2+ch)*9 : (n*2+ch+1)*9] {
				ym += v
				yss += v * v
			}
		}
		require.InDelta(t, 0, ym/45, 1e-9)
		require.InDelta(t, 1, yss/45, 1e-4)
	}
}

func TestLossGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 15))
	for _, kind := range []LossKind{MSE, BCEWithLogits} {
		t.Run(kind.String(), func(t *testing.T) {
			target := randTensor(r, 2, 1, 3, 3)
			for i, v := range data[float64](target) {
				data[float64](target)[i] = Sigmoid(v) // targets in [0,1]
			}
			gradCheck(t, []*tensor.Dense{randTensor(r, 2, 1, 3, 3), target}, []int{0}, func(in []*G.Node) (*G.Node, error) {
				return PointwiseLoss(kind, in[0], in[1])
			})
		})
	}
}

func TestBCEIsStableForLargeLogits(t *testing.T) {
	v := MeanLoss(BCEWithLogits, []float64{1000, -1000}, []float64{1, 0})
	require.InDelta(t, 0, v, 1e-12)
	v = MeanLoss(BCEWithLogits, []float64{-1000}, []float64{1})
	require.InDelta(t, 1000, v, 1e-9)
	require.InDelta(t, 1, Sigmoid(1000), 0)
	require.InDelta(t, 0, Sigmoid(-1000), 1e-300)
}

func TestReusesPreallocatedOutput(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	op := &upsampleOp{opBase: newBase("up"), in: tensor.Shape{1, 1, 2, 2}}
	x := randTensor(r, 1, 1, 2, 2)
	pre := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(1, 1, 4, 4))
	y, err := op.UsePreallocDo(pre, x)
	require.NoError(t, err)
	require.Same(t, pre, y)
	// a buffer of the wrong shape, or one aliasing the input, is not reused
	y, err = op.UsePreallocDo(x, x)
	require.NoError(t, err)
	require.NotSame(t, x, y)
}

func TestSegLossGradients(t *testing.T) {
	for _, opt := range []SegLossOptions{
		{Kind: CrossEntropy, Ignore: -1},
		{Kind: CrossEntropy, Ignore: 3, Weights: []float64{0.5, 2, 1, 1}},
		{Kind: Focal, Ignore: 3, Gamma: 2},
		{Kind: Dice, Ignore: 3},
	} {
		t.Run(opt.Kind.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(21, 22))
			labels := tensor.New(tensor.WithShape(2, 3, 4), tensor.WithBacking(make([]float64, 24)))
			for i := range data[float64](labels) {
				data[float64](labels)[i] = float64(r.IntN(4)) // 3 is ignored where Ignore is 3
			}
			gradCheck(t, []*tensor.Dense{randTensor(r, 2, 4, 3, 4), labels}, []int{0}, func(in []*G.Node) (*G.Node, error) {
				return SegLoss(in[0], in[1], opt)
			})
		})
	}
}

func TestCrossEntropyValues(t *testing.T) {
	// one pixel, two classes: logits (1000, 0) must not overflow
	op := &segLossOp{opBase: newBase("ce"), opt: SegLossOptions{Kind: CrossEntropy, Ignore: 255}, n: 1, k: 2, hw: 2}
	v, err := segLoss(op, []float64{1000, 0, 0, 1}, []float64{0, 255})
	require.NoError(t, err)
	require.InDelta(t, 0, v, 1e-12, "the ignored pixel is left out")
	v, err = segLoss(op, []float64{0, 1000, 0, 0}, []float64{0, 0})
	require.NoError(t, err)
	require.InDelta(t, math.Log(2)/2, v, 1e-9, "pixel 0 is a coin toss, pixel 1 certain")
	_, err = segLoss(op, []float64{0, 0, 0, 0}, []float64{5, 0})
	require.ErrorContains(t, err, "label 5 is not a class")
	// a perfect prediction has Dice loss near 0
	op.opt.Kind = Dice
	v, err = segLoss(op, []float64{50, -50, -50, 50}, []float64{0, 1})
	require.NoError(t, err)
	require.InDelta(t, 1-(3.0/3), v, 1e-6)
}

// SegLossValue against the losses written out from their definitions.
func TestSegLossValue(t *testing.T) {
	const n, k, h, w, ignore = 2, 4, 3, 5, 9
	r := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, n*k*h*w)
	for i := range logits {
		logits[i] = float32(3 * r.NormFloat64())
	}
	labels := make([]float32, n*h*w)
	for i := range labels {
		labels[i] = float32(r.IntN(k))
		if i%7 == 0 {
			labels[i] = ignore
		}
	}
	weights := []float64{0.5, 2, 1, 3}
	// per labelled pixel: its class and the softmax
	type px struct {
		c int
		p []float64
	}
	var pixels []px
	for im := range n {
		for j := range h * w {
			c := int(labels[im*h*w+j])
			if c == ignore {
				continue
			}
			p, m := make([]float64, k), math.Inf(-1)
			for q := range k {
				m = max(m, float64(logits[(im*k+q)*h*w+j]))
			}
			var s float64
			for q := range k {
				p[q] = math.Exp(float64(logits[(im*k+q)*h*w+j]) - m)
				s += p[q]
			}
			for q := range p {
				p[q] /= s
			}
			pixels = append(pixels, px{c, p})
		}
	}
	var ceNum, focNum, wsum float64
	sp, sg, spg := make([]float64, k), make([]float64, k), make([]float64, k)
	for _, x := range pixels {
		wt := weights[x.c]
		ceNum += -wt * math.Log(x.p[x.c])
		focNum += -wt * math.Pow(1-x.p[x.c], 2) * math.Log(x.p[x.c])
		wsum += wt
		for q := range k {
			g := 0.0
			if q == x.c {
				g = 1
			}
			sp[q] += x.p[q]
			sg[q] += g
			spg[q] += x.p[q] * g
		}
	}
	var dice float64
	for q := range k {
		dice += (2*spg[q] + 1) / (sp[q] + sg[q] + 1)
	}
	for _, tc := range []struct {
		opt  SegLossOptions
		want float64
	}{
		{SegLossOptions{Kind: CrossEntropy, Ignore: ignore, Weights: weights}, ceNum / wsum},
		{SegLossOptions{Kind: Focal, Ignore: ignore, Weights: weights}, focNum / wsum},
		{SegLossOptions{Kind: Dice, Ignore: ignore}, 1 - dice/k},
	} {
		v, err := SegLossValue(logits, labels, n, k, h, w, tc.opt)
		require.NoError(t, err)
		assert.InDelta(t, tc.want, v, 1e-5*max(1, math.Abs(tc.want)), tc.opt.Kind.String())
	}
	_, err := SegLossValue(logits, labels[1:], n, k, h, w, SegLossOptions{Kind: CrossEntropy, Ignore: ignore})
	assert.Error(t, err)
	_, err = SegLossValue(logits, labels, n, k, h, w, SegLossOptions{Kind: CrossEntropy, Ignore: -1})
	assert.ErrorContains(t, err, "not a class", "label 9 without an ignore index")
}
