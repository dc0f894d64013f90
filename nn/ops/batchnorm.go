package ops

import (
	"fmt"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BNState is a batch-norm layer's running statistics, shared by the layer's
// training and inference graphs and saved with the model. Their dtype is the
// model's.
type BNState struct {
	RunningMean, RunningVar *tensor.Dense // [C]
	// Momentum is the weight of the newest batch in the running averages
	// (PyTorch's convention; default 0.1).
	Momentum float64
	// Eps is added to the variance (default 1e-5).
	Eps float64
}

// BatchNorm normalises x [N,C,H,W] per channel and applies gamma [C] and
// beta [C]. With training, it uses the batch's statistics and updates the
// running ones in st (unbiased variance, as PyTorch does); without, it uses
// the running statistics. Which one is fixed when the graph is built: the
// training and inference graphs are separate.
func BatchNorm(x, gamma, beta *G.Node, st *BNState, training bool) (*G.Node, error) {
	s := x.Shape()
	if s.Dims() != 4 {
		return nil, fmt.Errorf("batchnorm: want a 4-d input, got %v", s)
	}
	c := s[1]
	if !gamma.Shape().Eq(tensor.Shape{c}) || !beta.Shape().Eq(tensor.Shape{c}) {
		return nil, fmt.Errorf("batchnorm: gamma %v and beta %v must be [%d]", gamma.Shape(), beta.Shape(), c)
	}
	if st == nil || st.RunningMean == nil || st.RunningVar == nil || st.RunningMean.Len() != c || st.RunningVar.Len() != c {
		return nil, fmt.Errorf("batchnorm: running statistics missing or not of length %d", c)
	}
	if training && s[0]*s[2]*s[3] < 2 {
		return nil, fmt.Errorf("batchnorm: training needs more than one value per channel, got input %v", s)
	}
	op := &bnOp{opBase: newBase("batchnorm"), shape: s.Clone(), st: st, training: training,
		mean: make([]float64, c), invStd: make([]float64, c)}
	return G.ApplyOp(op, x, gamma, beta)
}

type bnOp struct {
	opBase
	shape    tensor.Shape
	st       *BNState
	training bool
	// the statistics the last forward pass normalised with, for the backward pass
	mean, invStd []float64
}

func (op *bnOp) Arity() int                                     { return 3 }
func (op *bnOp) Type() hm.Type                                  { return fnType(4, 1, 1, 4) }
func (op *bnOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *bnOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *bnOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	gamma, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	beta, err := dense(op.name, in[2])
	if err != nil {
		return nil, err
	}
	y := out(prealloc, x.Dtype(), op.shape, in...)
	err = dispatch(op.name, x,
		func() { bnForward(op, data[float32](x), data[float32](gamma), data[float32](beta), data[float32](y)) },
		func() { bnForward(op, data[float64](x), data[float64](gamma), data[float64](beta), data[float64](y)) })
	return y, err
}

func bnForward[T Float](op *bnOp, x, gamma, beta, y []T) {
	n, c, hw := op.shape[0], op.shape[1], op.shape[2]*op.shape[3]
	rm, rv := data[T](op.st.RunningMean), data[T](op.st.RunningVar)
	m := float64(n * hw)
	parallel(c, func(_, ch int) {
		mean, variance := float64(rm[ch]), float64(rv[ch])
		if op.training {
			var s float64
			for i := 0; i < n; i++ {
				for _, v := range x[(i*c+ch)*hw : (i*c+ch+1)*hw] {
					s += float64(v)
				}
			}
			mean = s / m
			var ss float64
			for i := 0; i < n; i++ {
				for _, v := range x[(i*c+ch)*hw : (i*c+ch+1)*hw] {
					d := float64(v) - mean
					ss += d * d
				}
			}
			variance = ss / m
			mom := op.st.Momentum
			rm[ch] = T((1-mom)*float64(rm[ch]) + mom*mean)
			rv[ch] = T((1-mom)*float64(rv[ch]) + mom*variance*m/(m-1))
		}
		inv := 1 / math.Sqrt(variance+op.st.Eps)
		op.mean[ch], op.invStd[ch] = mean, inv
		scale := float64(gamma[ch]) * inv
		shift := float64(beta[ch]) - mean*scale
		for i := 0; i < n; i++ {
			src, dst := x[(i*c+ch)*hw:(i*c+ch+1)*hw], y[(i*c+ch)*hw:(i*c+ch+1)*hw]
			for j, v := range src {
				dst[j] = T(float64(v)*scale + shift)
			}
		}
	})
}

func (op *bnOp) DiffWRT(int) []bool { return []bool{true, true, true} }
func (op *bnOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	x, gamma := inputs[0], inputs[1]
	dx, err := G.ApplyOp(&bnGradOp{opBase: newBase("batchnorm_dx"), fwd: op}, x, gamma, grad)
	if err != nil {
		return nil, err
	}
	dgamma, err := G.ApplyOp(&bnGammaGradOp{opBase: newBase("batchnorm_dgamma"), fwd: op}, x, grad)
	if err != nil {
		return nil, err
	}
	s := op.shape
	dbeta, err := G.ApplyOp(&channelSumOp{opBase: newBase("batchnorm_dbeta"), n: s[0], c: s[1], hw: s[2] * s[3]}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dgamma, dbeta}, nil
}

// bnGradOp: (x, gamma, dy) -> dx, with the forward pass's statistics. In
// training mode the batch mean and variance depend on x, which adds the two
// mean terms:
//
//	dx = gamma*invstd * (dy - mean(dy) - xhat*mean(dy*xhat)).
type bnGradOp struct {
	opBase
	fwd *bnOp
}

func (op *bnGradOp) Arity() int                                     { return 3 }
func (op *bnGradOp) Type() hm.Type                                  { return fnType(4, 1, 4, 4) }
func (op *bnGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.fwd.shape.Clone(), nil }
func (op *bnGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *bnGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	gamma, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[2])
	if err != nil {
		return nil, err
	}
	dx := out(prealloc, x.Dtype(), op.fwd.shape, in...)
	err = dispatch(op.name, x,
		func() {
			bnBackward(op.fwd, data[float32](x), data[float32](gamma), data[float32](dy), data[float32](dx))
		},
		func() {
			bnBackward(op.fwd, data[float64](x), data[float64](gamma), data[float64](dy), data[float64](dx))
		})
	return dx, err
}

func bnBackward[T Float](f *bnOp, x, gamma, dy, dx []T) {
	n, c, hw := f.shape[0], f.shape[1], f.shape[2]*f.shape[3]
	m := float64(n * hw)
	parallel(c, func(_, ch int) {
		mean, inv := f.mean[ch], f.invStd[ch]
		var sdy, sdyx float64
		if f.training {
			for i := 0; i < n; i++ {
				off := (i*c + ch) * hw
				for j, g := range dy[off : off+hw] {
					sdy += float64(g)
					sdyx += float64(g) * (float64(x[off+j]) - mean) * inv
				}
			}
			sdy /= m
			sdyx /= m
		}
		k := float64(gamma[ch]) * inv
		for i := 0; i < n; i++ {
			off := (i*c + ch) * hw
			for j, g := range dy[off : off+hw] {
				xhat := (float64(x[off+j]) - mean) * inv
				dx[off+j] = T(k * (float64(g) - sdy - xhat*sdyx))
			}
		}
	})
}

// bnGammaGradOp: (x, dy) -> dgamma = sum(dy * xhat) per channel.
type bnGammaGradOp struct {
	opBase
	fwd *bnOp
}

func (op *bnGammaGradOp) Arity() int    { return 2 }
func (op *bnGammaGradOp) Type() hm.Type { return fnType(4, 4, 1) }
func (op *bnGammaGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.fwd.shape[1]}, nil
}
func (op *bnGammaGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *bnGammaGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	dg := out(prealloc, x.Dtype(), tensor.Shape{op.fwd.shape[1]}, in...)
	err = dispatch(op.name, x,
		func() { bnGammaGrad(op.fwd, data[float32](x), data[float32](dy), data[float32](dg)) },
		func() { bnGammaGrad(op.fwd, data[float64](x), data[float64](dy), data[float64](dg)) })
	return dg, err
}

func bnGammaGrad[T Float](f *bnOp, x, dy, dg []T) {
	n, c, hw := f.shape[0], f.shape[1], f.shape[2]*f.shape[3]
	for ch := 0; ch < c; ch++ {
		mean, inv := f.mean[ch], f.invStd[ch]
		var s float64
		for i := 0; i < n; i++ {
			off := (i*c + ch) * hw
			for j, g := range dy[off : off+hw] {
				s += float64(g) * (float64(x[off+j]) - mean) * inv
			}
		}
		dg[ch] = T(s)
	}
}
