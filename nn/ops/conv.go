package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Conv2D is a stride-1 2-D convolution with a fused bias, in NCHW:
// x [N,C,H,W] * w [O,C,K,K] + b [O] -> [N,O,H+2*pad-K+1,W+2*pad-K+1].
//
// inputGrad false tells the op that x is data (the first layer's input), so
// the backward pass skips the gradient with respect to x — for a 3-channel
// input layer that is the most wasteful of the three backward products.
func Conv2D(x, w, b *G.Node, pad int, inputGrad bool) (*G.Node, error) {
	xs, ws, bs := x.Shape(), w.Shape(), b.Shape()
	if xs.Dims() != 4 || ws.Dims() != 4 || bs.Dims() != 1 {
		return nil, fmt.Errorf("conv2d: want x 4-d, w 4-d, b 1-d; got %v, %v, %v", xs, ws, bs)
	}
	if ws[2] != ws[3] {
		return nil, fmt.Errorf("conv2d: only square kernels, got %v", ws)
	}
	if xs[1] != ws[1] {
		return nil, fmt.Errorf("conv2d: input has %d channels but weight %v expects %d", xs[1], ws, ws[1])
	}
	if bs[0] != ws[0] {
		return nil, fmt.Errorf("conv2d: bias %v does not match %d output channels", bs, ws[0])
	}
	g := convGeom{n: xs[0], c: xs[1], h: xs[2], w: xs[3], o: ws[0], k: ws[2], pad: pad}
	if g.oh() < 1 || g.ow() < 1 {
		return nil, fmt.Errorf("conv2d: input %v too small for kernel %d with pad %d", xs, g.k, pad)
	}
	op := &convOp{opBase: newBase(fmt.Sprintf("conv%dx%d", g.k, g.k)), g: g, inputGrad: inputGrad}
	return apply(op, x, w, b)
}

// convGeom is the shape of one convolution.
type convGeom struct{ n, c, h, w, o, k, pad int }

func (g convGeom) oh() int         { return g.h + 2*g.pad - g.k + 1 }
func (g convGeom) ow() int         { return g.w + 2*g.pad - g.k + 1 }
func (g convGeom) colRows() int    { return g.c * g.k * g.k }
func (g convGeom) pointwise() bool { return g.k == 1 && g.pad == 0 }
func (g convGeom) outShape() tensor.Shape {
	return tensor.Shape{g.n, g.o, g.oh(), g.ow()}
}

// im2col lays out the receptive fields of one image as a (C*K*K) x (OH*OW)
// matrix, zero outside the image.
func im2col[T Float](g convGeom, x, col []T) {
	oh, ow := g.oh(), g.ow()
	for c := 0; c < g.c; c++ {
		plane := x[c*g.h*g.w : (c+1)*g.h*g.w]
		for ky := 0; ky < g.k; ky++ {
			for kx := 0; kx < g.k; kx++ {
				row := col[((c*g.k+ky)*g.k+kx)*oh*ow:][:oh*ow]
				for y := 0; y < oh; y++ {
					dst := row[y*ow : (y+1)*ow]
					iy := y + ky - g.pad
					if iy < 0 || iy >= g.h {
						clear(dst)
						continue
					}
					src := plane[iy*g.w : (iy+1)*g.w]
					// output x reads input x+kx-pad; split into zero / copy / zero.
					lo := max(0, g.pad-kx)
					hi := min(ow, g.w+g.pad-kx)
					clear(dst[:lo])
					if hi > lo {
						copy(dst[lo:hi], src[lo+kx-g.pad:hi+kx-g.pad])
					} else {
						hi = lo
					}
					clear(dst[hi:])
				}
			}
		}
	}
}

// col2im is im2col's adjoint: it adds each column entry back onto the pixel it
// was read from.
func col2im[T Float](g convGeom, col, x []T) {
	oh, ow := g.oh(), g.ow()
	clear(x)
	for c := 0; c < g.c; c++ {
		plane := x[c*g.h*g.w : (c+1)*g.h*g.w]
		for ky := 0; ky < g.k; ky++ {
			for kx := 0; kx < g.k; kx++ {
				row := col[((c*g.k+ky)*g.k+kx)*oh*ow:][:oh*ow]
				for y := 0; y < oh; y++ {
					iy := y + ky - g.pad
					if iy < 0 || iy >= g.h {
						continue
					}
					src := row[y*ow : (y+1)*ow]
					dst := plane[iy*g.w : (iy+1)*g.w]
					lo := max(0, g.pad-kx)
					hi := min(ow, g.w+g.pad-kx)
					for xo := lo; xo < hi; xo++ {
						dst[xo+kx-g.pad] += src[xo]
					}
				}
			}
		}
	}
}

type convOp struct {
	opBase
	g         convGeom
	inputGrad bool
}

func (op *convOp) Arity() int { return 3 }
func (op *convOp) Type() hm.Type {
	return fnType(4, 4, 1, 4)
}
func (op *convOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.g.outShape(), nil }
func (op *convOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }

func (op *convOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
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
	y := op.output(prealloc, in, -1, x.Dtype(), op.g.outShape())
	// oneDNN applies the ReLU that follows as it writes the output (see
	// fusions).
	fuse := x.Dtype() == tensor.Float32 && op.fuse()
	// Input and output may be in oneDNN's blocked layout (see blocking).
	blk, outBlk := 0, x.Dtype() == tensor.Float32 && op.blocked()
	if op.blk[0] {
		blk |= blkIn
	}
	if outBlk {
		blk |= blkOut
	}
	err = dispatchE(op.name, x,
		func() error {
			return dnnlConvForward(op.g, data[float32](x), data[float32](w), data[float32](b), data[float32](y), fuse, blk)
		},
		func() error {
			convForward(op.g, data[float64](x), data[float64](w), data[float64](b), data[float64](y))
			return nil
		})
	op.passOn(fuse && err == nil)
	op.tellLayout(outBlk && err == nil)
	return y, err
}

func convForward[T Float](g convGeom, x, w, b, y []T) {
	inSz, outSz := g.c*g.h*g.w, g.o*g.oh()*g.ow()
	hw := g.oh() * g.ow()
	var cols [][]T
	if !g.pointwise() {
		cols = make([][]T, workers(g.n))
		for i := range cols {
			cols[i] = make([]T, g.colRows()*hw)
		}
	}
	parallel(g.n, func(wk, n int) {
		xn, yn := x[n*inSz:(n+1)*inSz], y[n*outSz:(n+1)*outSz]
		for o := 0; o < g.o; o++ {
			row := yn[o*hw : (o+1)*hw]
			for i := range row {
				row[i] = b[o]
			}
		}
		col := xn
		if !g.pointwise() {
			col = cols[wk]
			im2col(g, xn, col)
		}
		gemm(false, false, g.o, hw, g.colRows(), 1, w, g.colRows(), col, hw, 1, yn, hw)
	})
}

func (op *convOp) DiffWRT(int) []bool { return []bool{op.inputGrad, true, true} }

func (op *convOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	x, w := inputs[0], inputs[1]
	var dx *G.Node
	var err error
	if op.inputGrad {
		if dx, err = applyGrad(&convDataGradOp{opBase: newBase(op.name + "_dx"), g: op.g}, w, grad); err != nil {
			return nil, err
		}
	}
	dwOp := &convWeightGradOp{opBase: newBase(op.name + "_dw"), g: op.g}
	dw, err := applyGrad(dwOp, x, grad)
	if err != nil {
		return nil, err
	}
	// The bias gradient comes out of the weight-gradient kernel (oneDNN sums
	// dy per channel on the way); its op hands it over and takes dw as input
	// so that it runs after.
	db, err := applyGrad(&convBiasGradOp{opBase: newBase(op.name + "_db"), dw: dwOp}, dw)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dw, db}, nil
}

// convDataGradOp: (w, dy) -> dx.
type convDataGradOp struct {
	opBase
	g convGeom
}

func (op *convDataGradOp) Arity() int    { return 2 }
func (op *convDataGradOp) Type() hm.Type { return fnType(4, 4, 4) }
func (op *convDataGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.g.n, op.g.c, op.g.h, op.g.w}, nil
}
func (op *convDataGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *convDataGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	w, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	shape, _ := op.InferShape()
	dx := op.output(prealloc, in, -1, w.Dtype(), shape)
	blk, outBlk := 0, w.Dtype() == tensor.Float32 && op.blocked()
	if op.blk[1] {
		blk |= blkIn
	}
	if outBlk {
		blk |= blkOut
	}
	err = dispatchE(op.name, w,
		func() error {
			return dnnlConvDataGrad(op.g, data[float32](w), data[float32](dy), data[float32](dx), blk)
		},
		func() error { convDataGrad(op.g, data[float64](w), data[float64](dy), data[float64](dx)); return nil })
	op.tellLayout(outBlk && err == nil)
	return dx, err
}

func convDataGrad[T Float](g convGeom, w, dy, dx []T) {
	inSz, hw := g.c*g.h*g.w, g.oh()*g.ow()
	outSz := g.o * hw
	var cols [][]T
	if !g.pointwise() {
		cols = make([][]T, workers(g.n))
		for i := range cols {
			cols[i] = make([]T, g.colRows()*hw)
		}
	}
	parallel(g.n, func(wk, n int) {
		dyn, dxn := dy[n*outSz:(n+1)*outSz], dx[n*inSz:(n+1)*inSz]
		if g.pointwise() {
			gemm(true, false, g.c, hw, g.o, 1, w, g.c, dyn, hw, 0, dxn, hw)
			return
		}
		col := cols[wk]
		gemm(true, false, g.colRows(), hw, g.o, 1, w, g.colRows(), dyn, hw, 0, col, hw)
		col2im(g, col, dxn)
	})
}

// convWeightGradOp: (x, dy) -> dw, and the bias gradient into db for the
// convBiasGradOp that follows it.
type convWeightGradOp struct {
	opBase
	g  convGeom
	db *tensor.Dense
}

func (op *convWeightGradOp) Arity() int    { return 2 }
func (op *convWeightGradOp) Type() hm.Type { return fnType(4, 4, 4) }
func (op *convWeightGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.g.o, op.g.c, op.g.k, op.g.k}, nil
}
func (op *convWeightGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *convWeightGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	shape, _ := op.InferShape()
	dw := op.output(prealloc, in, -1, x.Dtype(), shape)
	if op.db == nil || op.db.Dtype() != x.Dtype() {
		op.db = tensor.New(tensor.Of(x.Dtype()), tensor.WithShape(op.g.o))
	}
	err = dispatchE(op.name, x,
		func() error {
			blk := 0
			if op.blk[0] {
				blk |= blkIn
			}
			if op.blk[1] {
				blk |= blkDy
			}
			return dnnlConvWeightGrad(op.g, data[float32](x), data[float32](dy), data[float32](dw), data[float32](op.db), blk)
		},
		func() error {
			convWeightGrad(op.g, data[float64](x), data[float64](dy), data[float64](dw))
			channelSum(op.g.n, op.g.o, op.g.oh()*op.g.ow(), data[float64](dy), data[float64](op.db))
			return nil
		})
	return dw, err
}

// convBiasGradOp: (dw) -> db, the bias gradient its weight-gradient op
// found.
type convBiasGradOp struct {
	opBase
	dw *convWeightGradOp
}

func (op *convBiasGradOp) Arity() int    { return 1 }
func (op *convBiasGradOp) Type() hm.Type { return fnType(4, 1) }
func (op *convBiasGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.dw.g.o}, nil
}
func (op *convBiasGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *convBiasGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	if op.dw.db == nil {
		return nil, fmt.Errorf("%s: the weight gradient has not run", op.name)
	}
	db := op.output(prealloc, in, -1, op.dw.db.Dtype(), tensor.Shape{op.dw.g.o})
	copy(db.Header.Raw, op.dw.db.Header.Raw)
	return db, nil
}

// convWeightGrad sums dy[n] * col[n]^T over the batch. Each worker owns a
// fixed stripe of images and its own accumulator, and the accumulators are
// added in worker order, so the result does not depend on scheduling: a
// resumed run reproduces an uninterrupted one bit for bit.
func convWeightGrad[T Float](g convGeom, x, dy, dw []T) {
	inSz, hw := g.c*g.h*g.w, g.oh()*g.ow()
	outSz := g.o * hw
	nw := workers(g.n)
	acc := make([][]T, nw)
	cols := make([][]T, nw)
	for i := range acc {
		acc[i] = make([]T, len(dw))
		if !g.pointwise() {
			cols[i] = make([]T, g.colRows()*hw)
		}
	}
	stripes(g.n, nw, func(wk, n int) {
		xn, dyn := x[n*inSz:(n+1)*inSz], dy[n*outSz:(n+1)*outSz]
		col := xn
		if !g.pointwise() {
			col = cols[wk]
			im2col(g, xn, col)
		}
		gemm(false, true, g.o, g.colRows(), hw, 1, dyn, hw, col, hw, 1, acc[wk], g.colRows())
	})
	copy(dw, acc[0])
	for _, a := range acc[1:] {
		for i, v := range a {
			dw[i] += v
		}
	}
}

// channelSum sums a [N,C,...] tensor over everything but C (a bias
// gradient).
func channelSum[T Float](n, c, hw int, dy, db []T) {
	for ch := 0; ch < c; ch++ {
		var s float64
		for i := 0; i < n; i++ {
			for _, v := range dy[(i*c+ch)*hw : (i*c+ch+1)*hw] {
				s += float64(v)
			}
		}
		db[ch] = T(s)
	}
}
