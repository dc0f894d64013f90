package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// MaxPool2 is a 2x2 max-pool with stride 2 on NCHW; odd trailing rows and
// columns are dropped (floor), as in PyTorch.
func MaxPool2(x *G.Node) (*G.Node, error) {
	s := x.Shape()
	if s.Dims() != 4 || s[2] < 2 || s[3] < 2 {
		return nil, fmt.Errorf("maxpool2: want a 4-d input at least 2x2, got %v", s)
	}
	return apply(&poolOp{opBase: newBase("maxpool2"), in: s.Clone()}, x)
}

type poolOp struct {
	opBase
	in tensor.Shape
}

func (op *poolOp) outShape() tensor.Shape {
	return tensor.Shape{op.in[0], op.in[1], op.in[2] / 2, op.in[3] / 2}
}
func (op *poolOp) Arity() int                                     { return 1 }
func (op *poolOp) Type() hm.Type                                  { return fnType(4, 4) }
func (op *poolOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.outShape(), nil }
func (op *poolOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *poolOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y := op.output(prealloc, in, -1, x.Dtype(), op.outShape())
	err = dispatch(op.name, x,
		func() { maxPoolForward(op.in, data[float32](x), data[float32](y)) },
		func() { maxPoolForward(op.in, data[float64](x), data[float64](y)) })
	return y, err
}

func maxPoolForward[T Float](s tensor.Shape, x, y []T) {
	if x32, ok := any(x).([]float32); ok {
		maxPool32(s, x32, any(y).([]float32))
		return
	}
	h, w := s[2], s[3]
	oh, ow := h/2, w/2
	parallel(s[0]*s[1], func(_, p int) {
		xp, yp := x[p*h*w:], y[p*oh*ow:]
		for oy := 0; oy < oh; oy++ {
			r0, r1 := xp[2*oy*w:], xp[(2*oy+1)*w:]
			for ox := 0; ox < ow; ox++ {
				yp[oy*ow+ox] = max(r0[2*ox], r0[2*ox+1], r1[2*ox], r1[2*ox+1])
			}
		}
	})
}

func (op *poolOp) DiffWRT(int) []bool { return []bool{true} }
func (op *poolOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := applyGrad(&poolGradOp{opBase: newBase("maxpool2_dx"), in: op.in}, inputs[0], grad)
	return G.Nodes{dx}, err
}

// poolGradOp: (x, dy) -> dx. It finds each window's maximum again rather than
// keeping an argmax mask: that is a cheap pass and leaves the op stateless.
// Ties go to the first element in reading order.
type poolGradOp struct {
	opBase
	in tensor.Shape
}

func (op *poolGradOp) Arity() int                                     { return 2 }
func (op *poolGradOp) Type() hm.Type                                  { return fnType(4, 4, 4) }
func (op *poolGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.in.Clone(), nil }
func (op *poolGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *poolGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dy, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	dx := op.output(prealloc, in, -1, x.Dtype(), op.in)
	err = dispatch(op.name, x,
		func() { maxPoolBackward(op.in, data[float32](x), data[float32](dy), data[float32](dx)) },
		func() { maxPoolBackward(op.in, data[float64](x), data[float64](dy), data[float64](dx)) })
	return dx, err
}

func maxPoolBackward[T Float](s tensor.Shape, x, dy, dx []T) {
	if x32, ok := any(x).([]float32); ok {
		maxPoolGrad32(s, x32, any(dy).([]float32), any(dx).([]float32))
		return
	}
	h, w := s[2], s[3]
	oh, ow := h/2, w/2
	parallel(s[0]*s[1], func(_, p int) {
		xp, dyp, dxp := x[p*h*w:(p+1)*h*w], dy[p*oh*ow:(p+1)*oh*ow], dx[p*h*w:(p+1)*h*w]
		for oy := 0; oy < oh; oy++ {
			x0, x1 := xp[2*oy*w:(2*oy+1)*w], xp[(2*oy+1)*w:(2*oy+2)*w]
			d0, d1 := dxp[2*oy*w:(2*oy+1)*w], dxp[(2*oy+1)*w:(2*oy+2)*w]
			g := dyp[oy*ow : (oy+1)*ow]
			for ox, v := range g {
				i := 2 * ox
				a, b, c, d := x0[i], x0[i+1], x1[i], x1[i+1]
				d0[i], d0[i+1], d1[i], d1[i+1] = 0, 0, 0, 0
				// the first maximum in reading order gets the gradient
				switch m := max(a, b, c, d); {
				case a == m:
					d0[i] = v
				case b == m:
					d0[i+1] = v
				case c == m:
					d1[i] = v
				default:
					d1[i+1] = v
				}
			}
			if w%2 == 1 {
				d0[w-1], d1[w-1] = 0, 0
			}
		}
		if h%2 == 1 {
			clear(dxp[(h-1)*w:])
		}
	})
}

// b2u is 1 for true: the compiler makes it a SETcc, not a jump.
func b2u(c bool) uint32 {
	var u uint32
	if c {
		u = 1
	}
	return u
}

// Upsample2 is nearest-neighbour x2 upsampling on NCHW.
func Upsample2(x *G.Node) (*G.Node, error) {
	s := x.Shape()
	if s.Dims() != 4 {
		return nil, fmt.Errorf("upsample2: want a 4-d input, got %v", s)
	}
	return apply(&upsampleOp{opBase: newBase("upsample2"), in: s.Clone()}, x)
}

type upsampleOp struct {
	opBase
	in tensor.Shape
}

func (op *upsampleOp) outShape() tensor.Shape {
	return tensor.Shape{op.in[0], op.in[1], op.in[2] * 2, op.in[3] * 2}
}
func (op *upsampleOp) Arity() int                                     { return 1 }
func (op *upsampleOp) Type() hm.Type                                  { return fnType(4, 4) }
func (op *upsampleOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.outShape(), nil }
func (op *upsampleOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *upsampleOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y := op.output(prealloc, in, -1, x.Dtype(), op.outShape())
	err = dispatch(op.name, x,
		func() { upsampleForward(op.in, data[float32](x), data[float32](y)) },
		func() { upsampleForward(op.in, data[float64](x), data[float64](y)) })
	return y, err
}

func upsampleForward[T Float](s tensor.Shape, x, y []T) {
	if x32, ok := any(x).([]float32); ok {
		upsample32(s, x32, any(y).([]float32))
		return
	}
	h, w := s[2], s[3]
	parallel(s[0]*s[1], func(_, p int) {
		xp, yp := x[p*h*w:], y[p*4*h*w:]
		for iy := 0; iy < h; iy++ {
			src := xp[iy*w : (iy+1)*w]
			r0 := yp[2*iy*2*w : (2*iy+1)*2*w]
			for ix, v := range src {
				r0[2*ix], r0[2*ix+1] = v, v
			}
			copy(yp[(2*iy+1)*2*w:(2*iy+2)*2*w], r0)
		}
	})
}

func (op *upsampleOp) DiffWRT(int) []bool { return []bool{true} }
func (op *upsampleOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := applyGrad(&upsampleGradOp{opBase: newBase("upsample2_dx"), in: op.in}, grad)
	return G.Nodes{dx}, err
}

// upsampleGradOp sums each 2x2 block of dy.
type upsampleGradOp struct {
	opBase
	in tensor.Shape
}

func (op *upsampleGradOp) Arity() int                                     { return 1 }
func (op *upsampleGradOp) Type() hm.Type                                  { return fnType(4, 4) }
func (op *upsampleGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.in.Clone(), nil }
func (op *upsampleGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *upsampleGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	dy, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	dx := op.output(prealloc, in, -1, dy.Dtype(), op.in)
	err = dispatch(op.name, dy,
		func() { upsampleBackward(op.in, data[float32](dy), data[float32](dx)) },
		func() { upsampleBackward(op.in, data[float64](dy), data[float64](dx)) })
	return dx, err
}

func upsampleBackward[T Float](s tensor.Shape, dy, dx []T) {
	if dy32, ok := any(dy).([]float32); ok {
		upsampleGrad32(s, dy32, any(dx).([]float32))
		return
	}
	h, w := s[2], s[3]
	parallel(s[0]*s[1], func(_, p int) {
		dyp, dxp := dy[p*4*h*w:], dx[p*h*w:]
		for iy := 0; iy < h; iy++ {
			r0, r1 := dyp[2*iy*2*w:], dyp[(2*iy+1)*2*w:]
			for ix := 0; ix < w; ix++ {
				dxp[iy*w+ix] = r0[2*ix] + r0[2*ix+1] + r1[2*ix] + r1[2*ix+1]
			}
		}
	})
}
