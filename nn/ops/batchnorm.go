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
	return apply(op, x, gamma, beta)
}

type bnOp struct {
	opBase
	shape    tensor.Shape
	st       *BNState
	training bool
	// the statistics the last forward pass normalised with, for the backward pass
	mean, invStd []float64
	// the parameter gradients the last backward pass found on its way
	// (sum dy*xhat and sum dy per channel), for the dgamma and dbeta ops
	dgamma, dbeta []float64
}

// At inference nothing reads the input again, so batch norm overwrites it
// when nothing else does; in training the backward pass needs it.
func (op *bnOp) ReturnsPtr() bool { return !op.training }
func (op *bnOp) OverwritesInput() int {
	if op.training {
		return -1
	}
	return 0
}
func (op *bnOp) Arity() int                                     { return 3 }
func (op *bnOp) Type() hm.Type                                  { return fnType(4, 1, 1, 4) }
func (op *bnOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *bnOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *bnOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
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
	y := op.output(prealloc, in, op.OverwritesInput(), x.Dtype(), op.shape)
	fuse := op.fuse()        // apply the ReLU that follows (see fusions)
	op.tellLayout(op.blk[0]) // per channel: the output is in the input's layout
	err = dispatch(op.name, x,
		func() {
			if op.blk[0] {
				bnForwardBlocked(op, data[float32](x), data[float32](gamma), data[float32](beta), data[float32](y), fuse)
				return
			}
			bnForward(op, data[float32](x), data[float32](gamma), data[float32](beta), data[float32](y), fuse)
		},
		func() {
			bnForward(op, data[float64](x), data[float64](gamma), data[float64](beta), data[float64](y), fuse)
		})
	op.passOn(fuse && err == nil)
	return y, err
}

// sum4 adds v in float64 with four independent accumulators (one chain of
// dependent adds is four times slower).
func sum4[T Float](v []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		s0 += float64(v[i])
		s1 += float64(v[i+1])
		s2 += float64(v[i+2])
		s3 += float64(v[i+3])
	}
	for ; i < len(v); i++ {
		s0 += float64(v[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// sqdev4 is the sum of (v-mean)^2.
func sqdev4[T Float](v []T, mean float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		d0, d1, d2, d3 := float64(v[i])-mean, float64(v[i+1])-mean, float64(v[i+2])-mean, float64(v[i+3])-mean
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(v); i++ {
		d := float64(v[i]) - mean
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// dydev4 is the sum of dy and the sum of dy*(x-mean).
func dydev4[T Float](dy, x []T, mean float64) (float64, float64) {
	x = x[:len(dy)]
	var a0, a1, b0, b1 float64
	i := 0
	for ; i+2 <= len(dy); i += 2 {
		g0, g1 := float64(dy[i]), float64(dy[i+1])
		a0 += g0
		a1 += g1
		b0 += g0 * (float64(x[i]) - mean)
		b1 += g1 * (float64(x[i+1]) - mean)
	}
	for ; i < len(dy); i++ {
		g := float64(dy[i])
		a0 += g
		b0 += g * (float64(x[i]) - mean)
	}
	return a0 + a1, b0 + b1
}

// affine writes (src-mean)*scale + shift into dst (which may be src), in T;
// subtracting the mean first keeps float32 from cancelling large terms.
func affine[T Float](src, dst []T, mean, scale, shift T) {
	dst = dst[:len(src)]
	for j, v := range src {
		dst[j] = (v-mean)*scale + shift
	}
}

// affineReLU is affine then max(., 0).
func affineReLU[T Float](src, dst []T, mean, scale, shift T) {
	dst = dst[:len(src)]
	for j, v := range src {
		dst[j] = max((v-mean)*scale+shift, 0)
	}
}

// bnForward normalises channel by channel: the statistics are summed in
// float64, the normalisation itself runs in the tensor's own precision. A
// channel of the reference net is at most 512 KB, so its three passes (sum,
// squared deviations, normalise) run from the core's cache.
func bnForward[T Float](op *bnOp, x, gamma, beta, y []T, withReLU bool) {
	n, c, hw := op.shape[0], op.shape[1], op.shape[2]*op.shape[3]
	rm, rv := data[T](op.st.RunningMean), data[T](op.st.RunningVar)
	m := float64(n * hw)
	x32, f32 := any(x).([]float32)
	y32, _ := any(y).([]float32)
	parallel(c, func(_, ch int) {
		mean, variance := float64(rm[ch]), float64(rv[ch])
		if op.training && f32 {
			mean, variance = bnStats32(x32, n, c, hw, ch)
		} else if op.training {
			var s float64
			for i := 0; i < n; i++ {
				s += sum4(x[(i*c+ch)*hw : (i*c+ch+1)*hw])
			}
			mean = s / m
			var ss float64
			for i := 0; i < n; i++ {
				ss += sqdev4(x[(i*c+ch)*hw:(i*c+ch+1)*hw], mean)
			}
			variance = ss / m
		}
		if op.training {
			mom := op.st.Momentum
			rm[ch] = T((1-mom)*float64(rm[ch]) + mom*mean)
			rv[ch] = T((1-mom)*float64(rv[ch]) + mom*variance*m/(m-1))
		}
		inv := 1 / math.Sqrt(variance+op.st.Eps)
		op.mean[ch], op.invStd[ch] = mean, inv
		scale := float64(gamma[ch]) * inv
		if f32 {
			bnAffine32(x32, y32, n, c, hw, ch, float32(mean), float32(scale), float32(beta[ch]), withReLU)
			return
		}
		for i := 0; i < n; i++ {
			src, dst := x[(i*c+ch)*hw:(i*c+ch+1)*hw], y[(i*c+ch)*hw:(i*c+ch+1)*hw]
			if withReLU {
				affineReLU(src, dst, T(mean), T(scale), beta[ch])
			} else {
				affine(src, dst, T(mean), T(scale), beta[ch])
			}
		}
	})
}

func (op *bnOp) DiffWRT(int) []bool { return []bool{true, true, true} }

// SymDiff makes one op for dx that also finds dgamma and dbeta on its way
// (they are the sums its formula needs); the dgamma and dbeta ops only hand
// them over, and take dx as their input so that they run after it.
func (op *bnOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	x, gamma := inputs[0], inputs[1]
	c := op.shape[1]
	op.dgamma, op.dbeta = make([]float64, c), make([]float64, c)
	dx, err := applyGrad(&bnGradOp{opBase: newBase("batchnorm_dx"), fwd: op}, x, gamma, grad)
	if err != nil {
		return nil, err
	}
	dgamma, err := applyGrad(&bnParamGradOp{opBase: newBase("batchnorm_dgamma"), fwd: op, sums: op.dgamma}, dx)
	if err != nil {
		return nil, err
	}
	dbeta, err := applyGrad(&bnParamGradOp{opBase: newBase("batchnorm_dbeta"), fwd: op, sums: op.dbeta}, dx)
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
//
// It overwrites dy when nothing else reads it (channel by channel, after
// summing over it), and records sum(dy*xhat) and sum(dy), the gradients of
// gamma and beta.
type bnGradOp struct {
	opBase
	fwd *bnOp
}

func (op *bnGradOp) ReturnsPtr() bool                               { return true }
func (op *bnGradOp) OverwritesInput() int                           { return 2 }
func (op *bnGradOp) Arity() int                                     { return 3 }
func (op *bnGradOp) Type() hm.Type                                  { return fnType(4, 1, 4, 4) }
func (op *bnGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.fwd.shape.Clone(), nil }
func (op *bnGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *bnGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
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
	dx := op.output(prealloc, in, 2, x.Dtype(), op.fwd.shape)
	blocked := op.blk[0] && op.blk[2]
	op.tellLayout(blocked)
	err = dispatch(op.name, x,
		func() {
			xv, dyv := data[float32](x), data[float32](dy)
			switch {
			case blocked:
				bnBackwardBlocked(op.fwd, xv, data[float32](gamma), dyv, data[float32](dx))
				return
			case op.blk[0]: // layouts differ (something ran unplanned): NCHW
				xv = toPlain(xv, op.fwd.shape)
			case op.blk[2]:
				dyv = toPlain(dyv, op.fwd.shape)
			}
			bnBackward(op.fwd, xv, data[float32](gamma), dyv, data[float32](dx))
		},
		func() {
			bnBackward(op.fwd, data[float64](x), data[float64](gamma), data[float64](dy), data[float64](dx))
		})
	return dx, err
}

func bnBackward[T Float](f *bnOp, x, gamma, dy, dx []T) {
	n, c, hw := f.shape[0], f.shape[1], f.shape[2]*f.shape[3]
	m := float64(n * hw)
	x32, f32 := any(x).([]float32)
	dy32, _ := any(dy).([]float32)
	dx32, _ := any(dx).([]float32)
	parallel(c, func(_, ch int) {
		mean, inv := f.mean[ch], f.invStd[ch]
		var sdy, sdyx float64
		if f32 {
			sdy, sdyx = bnGradSums32(dy32, x32, n, c, hw, ch, mean)
		} else {
			for i := 0; i < n; i++ {
				off := (i*c + ch) * hw
				a, b := dydev4(dy[off:off+hw], x[off:off+hw], mean)
				sdy += a
				sdyx += b
			}
		}
		sdyx *= inv // sum dy*xhat
		f.dgamma[ch], f.dbeta[ch] = sdyx, sdy
		k := float64(gamma[ch]) * inv
		if !f.training {
			for i := 0; i < n; i++ {
				off := (i*c + ch) * hw
				affine(dy[off:off+hw], dx[off:off+hw], 0, T(k), 0)
			}
			return
		}
		// dx = k*dy - k*mean(dy) - k*mean(dy*xhat)*inv*(x-mean)
		ta, tb, tc, tm := T(k), T(-k*(sdyx/m)*inv), T(-k*(sdy/m)), T(mean)
		if f32 {
			bnDx32(dy32, x32, dx32, n, c, hw, ch, float32(ta), float32(tb), float32(tc), float32(tm))
			return
		}
		for i := 0; i < n; i++ {
			off := (i*c + ch) * hw
			xs, dys, dxs := x[off:off+hw], dy[off:off+hw], dx[off:off+hw]
			for j, g := range dys {
				dxs[j] = ta*g + tb*(xs[j]-tm) + tc
			}
		}
	})
}

// bnForwardBlocked is bnForward on nChw16c, a block of 16 channels at a
// time.
func bnForwardBlocked(op *bnOp, x, gamma, beta, y []float32, withReLU bool) {
	n, c, hw := op.shape[0], op.shape[1], op.shape[2]*op.shape[3]
	rm, rv := data[float32](op.st.RunningMean), data[float32](op.st.RunningVar)
	m := float64(n * hw)
	parallel(c/16, func(_, b int) {
		var mean, variance [16]float64
		if op.training {
			mean, variance = bnBlkStats32(x, n, c, hw, b)
		}
		var mean32, scale, shift [16]float32
		for l := 0; l < 16; l++ {
			ch := 16*b + l
			if op.training {
				mom := op.st.Momentum
				rm[ch] = float32((1-mom)*float64(rm[ch]) + mom*mean[l])
				rv[ch] = float32((1-mom)*float64(rv[ch]) + mom*variance[l]*m/(m-1))
			} else {
				mean[l], variance[l] = float64(rm[ch]), float64(rv[ch])
			}
			inv := 1 / math.Sqrt(variance[l]+op.st.Eps)
			op.mean[ch], op.invStd[ch] = mean[l], inv
			mean32[l], scale[l], shift[l] = float32(mean[l]), float32(float64(gamma[ch])*inv), beta[ch]
		}
		bnBlkAffine32(x, y, n, c, hw, b, &mean32, &scale, &shift, withReLU)
	})
}

// bnBackwardBlocked is bnBackward on nChw16c.
func bnBackwardBlocked(f *bnOp, x, gamma, dy, dx []float32) {
	n, c, hw := f.shape[0], f.shape[1], f.shape[2]*f.shape[3]
	m := float64(n * hw)
	parallel(c/16, func(_, b int) {
		var mean [16]float64
		copy(mean[:], f.mean[16*b:16*b+16])
		sdy, sdyx := bnBlkGradSums32(dy, x, n, c, hw, b, &mean)
		var ka, kb, kc, mean32 [16]float32
		for l := 0; l < 16; l++ {
			ch := 16*b + l
			inv := f.invStd[ch]
			s := sdyx[l] * inv // sum dy*xhat
			f.dgamma[ch], f.dbeta[ch] = s, sdy[l]
			k := float64(gamma[ch]) * inv
			ka[l], mean32[l] = float32(k), float32(mean[l])
			if f.training {
				kb[l], kc[l] = float32(-k*(s/m)*inv), float32(-k*(sdy[l]/m))
			}
		}
		bnBlkDx32(dy, x, dx, n, c, hw, b, &ka, &kb, &kc, &mean32)
	})
}

// bnParamGradOp hands over dgamma or dbeta, which the dx op (its input, for
// the order) has just summed.
type bnParamGradOp struct {
	opBase
	fwd  *bnOp
	sums []float64
}

func (op *bnParamGradOp) Arity() int    { return 1 }
func (op *bnParamGradOp) Type() hm.Type { return fnType(4, 1) }
func (op *bnParamGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.fwd.shape[1]}, nil
}
func (op *bnParamGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *bnParamGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	dxv, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	g := op.output(prealloc, in, -1, dxv.Dtype(), tensor.Shape{op.fwd.shape[1]})
	err = dispatch(op.name, g,
		func() { copyConvert(data[float32](g), op.sums) },
		func() { copyConvert(data[float64](g), op.sums) })
	return g, err
}

func copyConvert[T Float](dst []T, src []float64) {
	for i, v := range src {
		dst[i] = T(v)
	}
}
