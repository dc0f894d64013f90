package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Linear is a fully connected layer: x [N,In] . w[Out,In]^T + b [Out] -> [N,Out]
// (PyTorch's weight layout, so weights move between the two unchanged).
func Linear(x, w, b *G.Node) (*G.Node, error) {
	xs, ws, bs := x.Shape(), w.Shape(), b.Shape()
	if xs.Dims() != 2 || ws.Dims() != 2 || bs.Dims() != 1 || xs[1] != ws[1] || bs[0] != ws[0] {
		return nil, fmt.Errorf("linear: want x [N,In], w [Out,In], b [Out]; got %v, %v, %v", xs, ws, bs)
	}
	op := &linearOp{opBase: newBase("linear"), n: xs[0], in: xs[1], out: ws[0]}
	return apply(op, x, w, b)
}

type linearOp struct {
	opBase
	n, in, out int
}

func (op *linearOp) Arity() int    { return 3 }
func (op *linearOp) Type() hm.Type { return fnType(2, 2, 1, 2) }
func (op *linearOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.n, op.out}, nil
}
func (op *linearOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *linearOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	w, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	b, err := dense(op.name, in[2])
	if err != nil {
		return nil, err
	}
	y := op.output(prealloc, in, -1, x.Dtype(), tensor.Shape{op.n, op.out})
	err = dispatch(op.name, x,
		func() { linearForward(op, data[float32](x), data[float32](w), data[float32](b), data[float32](y)) },
		func() { linearForward(op, data[float64](x), data[float64](w), data[float64](b), data[float64](y)) })
	return y, err
}

func linearForward[T Float](op *linearOp, x, w, b, y []T) {
	for i := 0; i < op.n; i++ {
		copy(y[i*op.out:(i+1)*op.out], b)
	}
	gemm(false, true, op.n, op.out, op.in, 1, x, op.in, w, op.in, 1, y, op.out)
}

func (op *linearOp) DiffWRT(int) []bool { return []bool{true, true, true} }
func (op *linearOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	x, w := inputs[0], inputs[1]
	dx, err := applyGrad(&matmulOp{opBase: newBase("linear_dx"), m: op.n, n: op.in, k: op.out}, grad, w)
	if err != nil {
		return nil, err
	}
	dw, err := applyGrad(&matmulOp{opBase: newBase("linear_dw"), m: op.out, n: op.in, k: op.n, transA: true}, grad, x)
	if err != nil {
		return nil, err
	}
	db, err := applyGrad(&rowSumOp{opBase: newBase("linear_db"), n: op.n, c: op.out}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dw, db}, nil
}

// matmulOp: op(A) [m,k] . B [k,n], where op(A) is A or A^T.
type matmulOp struct {
	opBase
	m, n, k int
	transA  bool
}

func (op *matmulOp) Arity() int    { return 2 }
func (op *matmulOp) Type() hm.Type { return fnType(2, 2, 2) }
func (op *matmulOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.m, op.n}, nil
}
func (op *matmulOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *matmulOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	a, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	b, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	c := op.output(prealloc, in, -1, a.Dtype(), tensor.Shape{op.m, op.n})
	lda := op.k
	if op.transA {
		lda = op.m
	}
	err = dispatch(op.name, a,
		func() {
			gemm(op.transA, false, op.m, op.n, op.k, 1, data[float32](a), lda, data[float32](b), op.n, 0, data[float32](c), op.n)
		},
		func() {
			gemm(op.transA, false, op.m, op.n, op.k, 1, data[float64](a), lda, data[float64](b), op.n, 0, data[float64](c), op.n)
		})
	return c, err
}

// rowSumOp sums an [N,C] matrix over N.
type rowSumOp struct {
	opBase
	n, c int
}

func (op *rowSumOp) Arity() int                                     { return 1 }
func (op *rowSumOp) Type() hm.Type                                  { return fnType(2, 1) }
func (op *rowSumOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return tensor.Shape{op.c}, nil }
func (op *rowSumOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *rowSumOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	dy, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	db := op.output(prealloc, in, -1, dy.Dtype(), tensor.Shape{op.c})
	err = dispatch(op.name, dy,
		func() { channelSum(op.n, op.c, 1, data[float32](dy), data[float32](db)) },
		func() { channelSum(op.n, op.c, 1, data[float64](dy), data[float64](db)) })
	return db, err
}
