package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ReLU is max(x, 0) on a tensor of any shape.
func ReLU(x *G.Node) (*G.Node, error) {
	return G.ApplyOp(&reluOp{opBase: newBase("relu"), shape: x.Shape().Clone()}, x)
}

type reluOp struct {
	opBase
	shape tensor.Shape
}

func (op *reluOp) Arity() int                                     { return 1 }
func (op *reluOp) Type() hm.Type                                  { return fnType(op.shape.Dims(), op.shape.Dims()) }
func (op *reluOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *reluOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *reluOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y := out(prealloc, x.Dtype(), op.shape, in...)
	err = dispatch(op.name, x,
		func() { relu(data[float32](x), data[float32](y)) },
		func() { relu(data[float64](x), data[float64](y)) })
	return y, err
}

func relu[T Float](x, y []T) {
	for i, v := range x {
		y[i] = max(v, 0)
	}
}

func (op *reluOp) DiffWRT(int) []bool { return []bool{true} }
func (op *reluOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(&reluGradOp{opBase: newBase("relu_dx"), shape: op.shape}, output, grad)
	return G.Nodes{dx}, err
}

// reluGradOp: (y, dy) -> dy where y > 0. It reads the output, not the input,
// so the input's buffer is free once the forward pass is done.
type reluGradOp struct {
	opBase
	shape tensor.Shape
}

func (op *reluGradOp) Arity() int { return 2 }
func (op *reluGradOp) Type() hm.Type {
	d := op.shape.Dims()
	return fnType(d, d, d)
}
func (op *reluGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *reluGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *reluGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	y, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	dx := out(prealloc, y.Dtype(), op.shape, in...)
	err = dispatch(op.name, y,
		func() { reluGrad(data[float32](y), data[float32](dy), data[float32](dx)) },
		func() { reluGrad(data[float64](y), data[float64](dy), data[float64](dx)) })
	return dx, err
}

func reluGrad[T Float](y, dy, dx []T) {
	for i, v := range y {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
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
	return G.ApplyOp(op, xs...)
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
	ts := make([]*tensor.Dense, len(in))
	for i, v := range in {
		t, err := dense(op.name, v)
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	y := out(prealloc, ts[0].Dtype(), op.shape, in...)
	err := dispatch(op.name, y,
		func() { concat(op, ts, data[float32](y)) },
		func() { concat(op, ts, data[float64](y)) })
	return y, err
}

func concat[T Float](op *concatOp, ts []*tensor.Dense, y []T) {
	total := op.shape[1]
	for n := 0; n < op.n; n++ {
		off := 0
		for i, t := range ts {
			sz := op.chans[i] * op.hw
			copy(y[(n*total+off)*op.hw:][:sz], data[T](t)[n*sz:(n+1)*sz])
			off += op.chans[i]
		}
	}
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
		g, err := G.ApplyOp(&channelSliceOp{opBase: newBase(fmt.Sprintf("concat_dx%d", i)), n: op.n, hw: op.hw,
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
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y := out(prealloc, x.Dtype(), op.outShape(x.Shape()), in...)
	err = dispatch(op.name, x,
		func() { channelSlice(op, data[float32](x), data[float32](y)) },
		func() { channelSlice(op, data[float64](x), data[float64](y)) })
	return y, err
}

func channelSlice[T Float](op *channelSliceOp, x, y []T) {
	c := op.to - op.from
	for n := 0; n < op.n; n++ {
		copy(y[n*c*op.hw:(n+1)*c*op.hw], x[(n*op.total+op.from)*op.hw:][:c*op.hw])
	}
}
