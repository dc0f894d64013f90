// Package ops holds segtool's own Gorgonia operations: convolution, pooling,
// upsampling, normalisation, activations and losses, each with its backward
// passes written as ops of their own.
//
// Every layer in nn goes through this package, so a faster kernel replaces a
// stock one here without touching any model. The stock Gorgonia versions of
// these operations are either slow (element-by-element upsample, im2col with a
// fresh allocation per call) or wrong (dropout's backward pass, softmax on the
// last axis); see DESIGN.md.
//
// All kernels are generic over float32 and float64: models train in float32,
// the gradient tests run in float64 against finite differences.
package ops

import (
	"fmt"
	"hash"
	"hash/fnv"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Float is the element type every kernel is written for.
type Float interface{ ~float32 | ~float64 }

// opIDs gives every op instance a distinct identity. Gorgonia merges nodes
// whose op hashes and children are equal; stateful ops (batch norm keeps its
// batch statistics for the backward pass) must never be merged.
var opIDs atomic.Uint64

type opBase struct {
	id   uint64
	name string
	// buf is the output buffer the op keeps across steps (see outBuf).
	buf *tensor.Dense
	// node is the op's node (set by apply), plan and np the memory plan of
	// its graph and what it says about this node, ptensor the planned
	// buffer as a tensor and pbuf the buffer it was made from (see plan.go).
	node    *G.Node
	grad    bool    // a backward op (see applyGrad)
	active  bool    // the plan is in force for this call
	fusedIn bool    // the op before did this op's work (see fusions)
	blk     [4]bool // input k is in oneDNN's blocked layout this call (see blocking)
	plan    *memPlan
	np      *nodePlan
	ptensor *tensor.Dense
	pbuf    *float64
}

func newBase(name string) opBase { return opBase{id: opIDs.Add(1), name: name} }

func (b opBase) ReturnsPtr() bool      { return false }
func (b opBase) CallsExtern() bool     { return false }
func (b opBase) OverwritesInput() int  { return -1 }
func (b opBase) String() string        { return b.name }
func (b opBase) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%s#%d", b.name, b.id) }
func (b opBase) Hashcode() uint32 {
	h := fnv.New32a()
	b.WriteHash(h)
	return h.Sum32()
}

// tensorType is a dims-dimensional tensor of the type variable 'a'.
func tensorType(dims int) hm.Type {
	return G.TensorType{Dims: dims, Of: hm.TypeVariable('a')}
}

// fnType builds the Gorgonia type of an op from its argument and result dims;
// a dims of 0 means a scalar.
func fnType(dims ...int) hm.Type {
	ts := make([]hm.Type, len(dims))
	for i, d := range dims {
		if d == 0 {
			ts[i] = hm.TypeVariable('a')
		} else {
			ts[i] = tensorType(d)
		}
	}
	return hm.NewFnType(ts...)
}

func shapeOf(d G.DimSizer) (tensor.Shape, error) {
	s, ok := d.(tensor.Shape)
	if !ok {
		return nil, fmt.Errorf("expected a shape, got %T", d)
	}
	return s, nil
}

// dense returns the value as a dense tensor, or an error naming the op.
func dense(op string, v G.Value) (*tensor.Dense, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("%s: expected a dense tensor, got %T", op, v)
	}
	return d, nil
}

// scalar reads a scalar value (Gorgonia hands scalar gradients around as
// *F32/*F64 or as 0-d tensors).
func scalar(v G.Value) (float64, error) {
	switch s := v.(type) {
	case *G.F32:
		return float64(*s), nil
	case *G.F64:
		return float64(*s), nil
	case *tensor.Dense:
		switch d := s.Data().(type) {
		case float32:
			return float64(d), nil
		case float64:
			return d, nil
		case []float32:
			if len(d) == 1 {
				return float64(d[0]), nil
			}
		case []float64:
			if len(d) == 1 {
				return d[0], nil
			}
		}
	}
	return 0, fmt.Errorf("expected a scalar, got %T", v)
}

// makeScalar builds a scalar value of the given dtype.
func makeScalar(dt tensor.Dtype, v float64) G.Value {
	if dt == tensor.Float64 {
		return G.NewF64(v)
	}
	return G.NewF32(float32(v))
}

// outBuf is out with a buffer the op keeps from step to step. The tape
// machine clears its registers on Reset, so the first op to write each
// register in a step is offered nothing and would allocate its output afresh
// every step (about 270 MB a step for the reference U-Net, and the garbage
// collector's time with it). Such an op keeps the buffer it made and
// reuses it; an op offered a register that fits uses that. A kept buffer is
// only ever this node's value, and that value is dead again by the time the
// op runs in the next step, so reuse is safe for one machine per graph.
func (b *opBase) outBuf(prealloc G.Value, dt tensor.Dtype, shape tensor.Shape, inputs ...G.Value) *tensor.Dense {
	if p := fits(prealloc, dt, shape, inputs); p != nil {
		return p
	}
	if p := fits(b.buf, dt, shape, inputs); p != nil {
		return p
	}
	b.buf = tensor.New(tensor.Of(dt), tensor.WithShape(shape.Clone()...))
	return b.buf
}

// fits returns v as a dense tensor when it can take an output of the dtype
// and shape, is not a view and does not alias an input; otherwise nil.
func fits(v G.Value, dt tensor.Dtype, shape tensor.Shape, inputs []G.Value) *tensor.Dense {
	p, ok := v.(*tensor.Dense)
	if !ok || p == nil || p.Dtype() != dt || !p.Shape().Eq(shape) || p.IsView() {
		return nil
	}
	for _, in := range inputs {
		if t, ok := in.(*tensor.Dense); ok && t.Uintptr() == p.Uintptr() {
			return nil
		}
	}
	return p
}

// out returns a tensor of the given shape and dtype for an op to write into:
// the preallocated value when the tape machine offers one that fits and is not
// one of the inputs (registers are shared between nodes), otherwise a new one.
// This is what keeps a training step from allocating its activations afresh.
func out(prealloc G.Value, dt tensor.Dtype, shape tensor.Shape, inputs ...G.Value) *tensor.Dense {
	if p := fits(prealloc, dt, shape, inputs); p != nil {
		return p
	}
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape.Clone()...))
}

// parallel runs fn(i) for i in [0, n) on up to GOMAXPROCS goroutines. Each
// worker gets its index w in [0, workers) so it can own scratch buffers.
func parallel(n int, fn func(w, i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(w, i)
			}
		}(w)
	}
	wg.Wait()
}

// workers is how many scratch buffers parallel may need at once.
func workers(n int) int { return max(1, min(runtime.GOMAXPROCS(0), n)) }

// dispatch runs the float32 or float64 version of a kernel by the dtype of t.
func dispatch(op string, t *tensor.Dense, f32 func(), f64 func()) error {
	switch t.Dtype() {
	case tensor.Float32:
		f32()
	case tensor.Float64:
		f64()
	default:
		return fmt.Errorf("%s: unsupported dtype %v (float32 or float64)", op, t.Dtype())
	}
	return nil
}

func data[T Float](t *tensor.Dense) []T { return t.Data().([]T) }

// stripes is parallel with a fixed assignment: worker w handles items w,
// w+nw, w+2nw, ... in order. Use it where per-worker partial results are
// combined and the answer must not depend on scheduling.
func stripes(n, nw int, fn func(w, i int)) {
	if nw <= 1 {
		for i := 0; i < n; i++ {
			fn(0, i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < nw; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += nw {
				fn(w, i)
			}
		}(w)
	}
	wg.Wait()
}

// dispatchE is dispatch for kernels that can fail.
func dispatchE(op string, t *tensor.Dense, f32 func() error, f64 func() error) error {
	var err error
	if derr := dispatch(op, t, func() { err = f32() }, func() { err = f64() }); derr != nil {
		return derr
	}
	return err
}

// parallelRange splits [0, n) into ranges of at least grain elements and
// runs fn on them on up to GOMAXPROCS goroutines (ranges taken as workers
// come free). Elementwise kernels use it to keep both cores busy.
func parallelRange(n, grain int, fn func(lo, hi int)) {
	chunks := min(max(n/max(grain, 1), 1), 4*runtime.GOMAXPROCS(0))
	if chunks <= 1 {
		fn(0, n)
		return
	}
	parallel(chunks, func(_, i int) { fn(i*n/chunks, (i+1)*n/chunks) })
}

// elemGrain is the smallest range parallelRange hands a goroutine for
// elementwise work: below it, starting goroutines costs more than it saves.
const elemGrain = 1 << 15

// inPlace returns input k as the output when the tape machine has put it in
// the output's register: an op whose OverwritesInput is k gets that only
// when Gorgonia's liveness analysis found input k dead after this op.
func inPlace(prealloc G.Value, in []G.Value, k int) *tensor.Dense {
	p, ok := prealloc.(*tensor.Dense)
	if !ok || p == nil || k >= len(in) || p.IsView() {
		return nil
	}
	if x, ok := in[k].(*tensor.Dense); ok && x == p {
		return p
	}
	return nil
}
