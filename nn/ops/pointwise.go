package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ReLU is max(x, 0) on a tensor of any shape.
func ReLU(x *G.Node) (*G.Node, error) {
	return apply(&reluOp{opBase: newBase("relu"), shape: x.Shape().Clone()}, x)
}

type reluOp struct {
	opBase
	shape tensor.Shape
}

// ReLU overwrites its input when nothing else reads it (a conv or batch-norm
// output usually): one activation less to keep per layer.
func (op *reluOp) ReturnsPtr() bool                               { return true }
func (op *reluOp) OverwritesInput() int                           { return 0 }
func (op *reluOp) Arity() int                                     { return 1 }
func (op *reluOp) Type() hm.Type                                  { return fnType(op.shape.Dims(), op.shape.Dims()) }
func (op *reluOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *reluOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *reluOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y := op.output(prealloc, in, 0, x.Dtype(), op.shape)
	op.tellLayout(op.blk[0]) // elementwise: the output is in the input's layout
	if op.fusedIn {          // the op before applied this ReLU (see fusions)
		op.fusedIn = false
		if y != x {
			copy(y.Header.Raw, x.Header.Raw)
		}
		return y, nil
	}
	err = dispatch(op.name, x,
		func() { relu(data[float32](x), data[float32](y)) },
		func() { relu(data[float64](x), data[float64](y)) })
	return y, err
}

// relu writes max(x, 0) into y (which may be x). The builtin max compiles
// to branch-free code; a sign-bit mask through math.Float32bits is four
// times slower in Go (measured).
func relu[T Float](x, y []T) {
	if x32, ok := any(x).([]float32); ok {
		relu32(x32, any(y).([]float32))
		return
	}
	parallelRange(len(x), elemGrain, func(lo, hi int) {
		xs, ys := x[lo:hi], y[lo:hi]
		ys = ys[:len(xs)]
		for i, v := range xs {
			ys[i] = max(v, 0)
		}
	})
}

func (op *reluOp) DiffWRT(int) []bool { return []bool{true} }
func (op *reluOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := applyGrad(&reluGradOp{opBase: newBase("relu_dx"), shape: op.shape}, output, grad)
	return G.Nodes{dx}, err
}

// reluGradOp: (y, dy) -> dy where y > 0. It reads the output, not the input,
// so the input's buffer is free once the forward pass is done, and it
// overwrites dy when nothing else reads it.
type reluGradOp struct {
	opBase
	shape tensor.Shape
}

func (op *reluGradOp) ReturnsPtr() bool     { return true }
func (op *reluGradOp) OverwritesInput() int { return 1 }
func (op *reluGradOp) Arity() int           { return 2 }
func (op *reluGradOp) Type() hm.Type {
	d := op.shape.Dims()
	return fnType(d, d, d)
}
func (op *reluGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *reluGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *reluGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	y, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	dx := op.output(prealloc, in, 1, y.Dtype(), op.shape)
	if op.blk[0] != op.blk[1] {
		// y and dy in different layouts (something ran unplanned): bring
		// the blocked one to NCHW first.
		yv, dyv := data[float32](y), data[float32](dy)
		if op.blk[0] {
			yv = toPlain(yv, op.shape)
		} else {
			dyv = toPlain(dyv, op.shape)
		}
		reluGrad(yv, dyv, data[float32](dx))
		op.tellLayout(false)
		return dx, nil
	}
	op.tellLayout(op.blk[1])
	err = dispatch(op.name, y,
		func() { reluGrad(data[float32](y), data[float32](dy), data[float32](dx)) },
		func() { reluGrad(data[float64](y), data[float64](dy), data[float64](dx)) })
	return dx, err
}

// reluGrad writes dy where y > 0, else 0, into dx (which may be dy). The
// signs of y are random: a branch per element mispredicts half the time and
// made this the slowest pass of a training step, so the comparison becomes a
// 0/1 factor instead (8x faster, measured).
func reluGrad[T Float](y, dy, dx []T) {
	if y32, ok := any(y).([]float32); ok {
		reluGrad32(y32, any(dy).([]float32), any(dx).([]float32))
		return
	}
	parallelRange(len(y), elemGrain, func(lo, hi int) {
		ys, dys, dxs := y[lo:hi], dy[lo:hi], dx[lo:hi]
		dys, dxs = dys[:len(ys)], dxs[:len(ys)]
		for i, v := range ys {
			dxs[i] = dys[i] * T(b2u(v > 0))
		}
	})
}

// ConcatChannels joins NCHW tensors of equal N, H, W along C (the U-Net's
// skip connections).
func ConcatChannels(xs ...*G.Node) (*G.Node, error) {
	if len(xs) < 2 {
		return nil, fmt.Errorf("concat: need at least two inputs, got %d", len(xs))
	}
	s0 := xs[0].Shape()
	chans := make([]int, len(xs))
	total := 0
	for i, x := range xs {
		s := x.Shape()
		if s.Dims() != 4 || s[0] != s0[0] || s[2] != s0[2] || s[3] != s0[3] {
			return nil, fmt.Errorf("concat: input %d has shape %v, incompatible with %v", i, s, s0)
		}
		chans[i] = s[1]
		total += s[1]
	}
	op := &concatOp{opBase: newBase("concat"), n: s0[0], hw: s0[2] * s0[3], chans: chans,
		shape: tensor.Shape{s0[0], total, s0[2], s0[3]}}
	return apply(op, xs...)
}

type concatOp struct {
	opBase
	n, hw int
	chans []int
	shape tensor.Shape
}

func (op *concatOp) Arity() int { return len(op.chans) }
func (op *concatOp) Type() hm.Type {
	d := make([]int, len(op.chans)+1)
	for i := range d {
		d[i] = 4
	}
	return fnType(d...)
}
func (op *concatOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *concatOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *concatOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	ts := make([]*tensor.Dense, len(in))
	for i, v := range in {
		t, err := dense(op.name, v)
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	y := op.output(prealloc, in, -1, ts[0].Dtype(), op.shape)
	err := dispatch(op.name, y,
		func() { concat(op, ts, data[float32](y)) },
		func() { concat(op, ts, data[float64](y)) })
	return y, err
}

func concat[T Float](op *concatOp, ts []*tensor.Dense, y []T) {
	total := op.shape[1]
	offs := make([]int, len(ts))
	for i := 1; i < len(ts); i++ {
		offs[i] = offs[i-1] + op.chans[i-1]
	}
	parallel(op.n*len(ts), func(_, j int) {
		n, i := j/len(ts), j%len(ts)
		sz := op.chans[i] * op.hw
		copy(y[(n*total+offs[i])*op.hw:][:sz], data[T](ts[i])[n*sz:(n+1)*sz])
	})
}

func (op *concatOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	for i := range d {
		d[i] = true
	}
	return d
}

func (op *concatOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	grads := make(G.Nodes, len(inputs))
	off := 0
	for i, c := range op.chans {
		g, err := applyGrad(&channelSliceOp{opBase: newBase("concat_dx"), n: op.n, hw: op.hw,
			total: op.shape[1], from: off, to: off + c}, grad)
		if err != nil {
			return nil, err
		}
		grads[i] = g
		off += c
	}
	return grads, nil
}

// channelSliceOp copies channels [from, to) out of an NCHW tensor.
type channelSliceOp struct {
	opBase
	n, hw, total, from, to int
}

func (op *channelSliceOp) Arity() int    { return 1 }
func (op *channelSliceOp) Type() hm.Type { return fnType(4, 4) }
func (op *channelSliceOp) outShape(in tensor.Shape) tensor.Shape {
	return tensor.Shape{in[0], op.to - op.from, in[2], in[3]}
}
func (op *channelSliceOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(in[0])
	if err != nil {
		return nil, err
	}
	return op.outShape(s), nil
}
func (op *channelSliceOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *channelSliceOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y := op.output(prealloc, in, -1, x.Dtype(), op.outShape(x.Shape()))
	err = dispatch(op.name, x,
		func() { channelSlice(op, data[float32](x), data[float32](y)) },
		func() { channelSlice(op, data[float64](x), data[float64](y)) })
	return y, err
}

func channelSlice[T Float](op *channelSliceOp, x, y []T) {
	c := op.to - op.from
	parallel(op.n, func(_, n int) {
		copy(y[n*c*op.hw:(n+1)*c*op.hw], x[(n*op.total+op.from)*op.hw:][:c*op.hw])
	})
}
