package ops

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// SegLossKind selects a per-pixel classification loss.
type SegLossKind int

const (
	// CrossEntropy is softmax cross-entropy, weighted per class: the sum of
	// w[y] * -log p_y over labelled pixels divided by the sum of w[y]
	// (PyTorch's CrossEntropyLoss with weight and ignore_index).
	CrossEntropy SegLossKind = iota
	// Focal is the focal loss (Lin et al. 2017), w[y] * -(1-p_y)^gamma log p_y,
	// normalised like CrossEntropy.
	Focal
	// Dice is 1 - the mean over classes of the soft Dice coefficient
	// (2 sum p_k g_k + 1) / (sum p_k + sum g_k + 1) over labelled pixels.
	Dice
)

func (k SegLossKind) String() string {
	switch k {
	case Focal:
		return "focal"
	case Dice:
		return "dice"
	}
	return "ce"
}

// SegLossOptions configures SegLoss.
type SegLossOptions struct {
	Kind SegLossKind
	// Weights per class (nil: all 1); used by CrossEntropy and Focal.
	Weights []float64
	// Ignore is a label left out of the loss (-1: none).
	Ignore int
	// Gamma is the focal loss's focusing parameter (default 2).
	Gamma float64
}

// SegLoss scores logits [N,K,H,W] against labels [N,H,W] (class indices
// stored as floats, Ignore for unlabelled pixels) and returns a scalar. The
// softmax is over K and computed stably per pixel (Gorgonia's SoftMax on the
// last axis starts every row from the tensor's first element and overflows).
// Labels get no gradient.
func SegLoss(logits, labels *G.Node, opt SegLossOptions) (*G.Node, error) {
	s, ls := logits.Shape(), labels.Shape()
	if s.Dims() != 4 || ls.Dims() != 3 || ls[0] != s[0] || ls[1] != s[2] || ls[2] != s[3] {
		return nil, fmt.Errorf("%v loss: want logits [N,K,H,W] and labels [N,H,W]; got %v and %v", opt.Kind, s, ls)
	}
	if opt.Weights != nil && len(opt.Weights) != s[1] {
		return nil, fmt.Errorf("%v loss: %d class weights for %d classes", opt.Kind, len(opt.Weights), s[1])
	}
	if opt.Kind == Focal && opt.Gamma == 0 {
		opt.Gamma = 2
	}
	op := &segLossOp{opBase: newBase(opt.Kind.String()), opt: opt, n: s[0], k: s[1], hw: s[2] * s[3], shape: s.Clone()}
	return apply(op, logits, labels)
}

// SegLossValue is SegLoss's value for logits [n,k,h,w] and labels [n,h,w]
// held in slices, outside any graph: the training loss measured on
// validation data, say. It is the same code as the op's forward pass.
func SegLossValue(logits, labels []float32, n, k, h, w int, opt SegLossOptions) (float64, error) {
	if len(logits) != n*k*h*w || len(labels) != n*h*w {
		return 0, fmt.Errorf("%v loss: %d logits and %d labels for [%d,%d,%d,%d]", opt.Kind, len(logits), len(labels), n, k, h, w)
	}
	if opt.Weights != nil && len(opt.Weights) != k {
		return 0, fmt.Errorf("%v loss: %d class weights for %d classes", opt.Kind, len(opt.Weights), k)
	}
	if opt.Kind == Focal && opt.Gamma == 0 {
		opt.Gamma = 2
	}
	op := &segLossOp{opBase: newBase(opt.Kind.String()), opt: opt, n: n, k: k, hw: h * w, shape: tensor.Shape{n, k, h, w}}
	return segLoss(op, logits, labels)
}

type segLossOp struct {
	opBase
	opt      SegLossOptions
	n, k, hw int
	shape    tensor.Shape
	// Cross-entropy's forward pass leaves the softmax ([]float32 or
	// []float64, laid out as the logits), the labels (-1: ignored) and the
	// weight sum for its backward pass, which then needs no exponentials.
	probs  any
	labels []int32
	wsum   float64
	stash  uintptr // the logits the stash was computed from (0: none)
}

func (op *segLossOp) Arity() int    { return 2 }
func (op *segLossOp) Type() hm.Type { return fnType(4, 3, 0) }
func (op *segLossOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}
func (op *segLossOp) Do(in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	var v float64
	err = dispatchE(op.name, x,
		func() (err error) { v, err = segLoss(op, data[float32](x), data[float32](y)); return err },
		func() (err error) { v, err = segLoss(op, data[float64](x), data[float64](y)); return err })
	if err != nil {
		return nil, err
	}
	return makeScalar(x.Dtype(), v), nil
}

func (op *segLossOp) DiffWRT(int) []bool { return []bool{true, false} }

// SymDiff's op also takes the loss itself as an input, only so that it runs
// after the forward pass and can use what that left behind.
func (op *segLossOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := applyGrad(&segLossGradOp{opBase: newBase(op.name + "_dx"), fwd: op}, inputs[0], inputs[1], grad, output)
	return G.Nodes{dx, nil}, err
}

// segLossGradOp: (logits, labels, dloss, loss) -> dlogits.
type segLossGradOp struct {
	opBase
	fwd *segLossOp
}

func (op *segLossGradOp) Arity() int    { return 4 }
func (op *segLossGradOp) Type() hm.Type { return fnType(4, 3, 0, 0, 4) }
func (op *segLossGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.fwd.shape.Clone(), nil
}
func (op *segLossGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *segLossGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	g, err := scalar(in[2])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	dx := op.output(prealloc, in, -1, x.Dtype(), op.fwd.shape)
	err = dispatchE(op.name, x,
		func() error { return segLossBackward(op.fwd, data[float32](x), data[float32](y), g, data[float32](dx)) },
		func() error { return segLossBackward(op.fwd, data[float64](x), data[float64](y), g, data[float64](dx)) })
	if err != nil {
		return nil, err
	}
	return dx, nil
}

// pixelSoftmax writes the softmax over the k classes of pixel j of image n
// into p, stably (subtracting the pixel's own maximum).
func pixelSoftmax[T Float](x []T, n, k, hw, j int, p []float64) {
	base := n*k*hw + j
	m := math.Inf(-1)
	for c := 0; c < k; c++ {
		m = max(m, float64(x[base+c*hw]))
	}
	var s float64
	for c := 0; c < k; c++ {
		e := math.Exp(float64(x[base+c*hw]) - m)
		p[c] = e
		s += e
	}
	for c := 0; c < k; c++ {
		p[c] /= s
	}
}

func (op *segLossOp) weight(c int) float64 {
	if op.opt.Weights == nil {
		return 1
	}
	return op.opt.Weights[c]
}

// label reads pixel j's label; ok is false for ignored pixels.
func (op *segLossOp) label(v float64) (int, bool, error) {
	c := int(math.Round(v))
	if c == op.opt.Ignore {
		return 0, false, nil
	}
	if c < 0 || c >= op.k {
		return 0, false, fmt.Errorf("%s loss: label %d is not a class (0..%d) nor the ignore index %d", op.name, c, op.k-1, op.opt.Ignore)
	}
	return c, true, nil
}

// lossChunk is how many pixels one goroutine takes at a time. The chunks
// do not depend on the number of cores, and partial sums are added in chunk
// order, so the loss is the same number on any machine.
const lossChunk = 4096

// overPixels calls fn(im, lo, hi, part) for ranges [lo, hi) of the pixels of
// each image im, in parallel, with a zeroed slice of parts floats per range;
// it returns the per-range slices in order and the first error.
func overPixels(n, hw, parts int, fn func(im, lo, hi int, part []float64) error) ([][]float64, error) {
	per := max((hw+lossChunk-1)/lossChunk, 1)
	nch := n * per
	res := make([][]float64, nch)
	errs := make([]error, nch)
	store := make([]float64, nch*parts)
	parallel(nch, func(_, c int) {
		im, r := c/per, c%per
		res[c] = store[c*parts : (c+1)*parts]
		errs[c] = fn(im, r*lossChunk, min((r+1)*lossChunk, hw), res[c])
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// sumParts adds the per-range slices in order.
func sumParts(res [][]float64, parts int) []float64 {
	s := make([]float64, parts)
	for _, r := range res {
		for i, v := range r {
			s[i] += v
		}
	}
	return s
}

// diceSums are, per class, sum p, sum g and sum p*g over labelled pixels.
type diceSums struct{ p, g, pg []float64 }

// segLoss computes the loss value.
func segLoss[T Float](op *segLossOp, x, y []T) (float64, error) {
	n, k, hw := op.n, op.k, op.hw
	switch op.opt.Kind {
	case CrossEntropy:
		return ceForward(op, x, y)
	case Focal:
		res, err := overPixels(n, hw, 2, func(im, lo, hi int, part []float64) error {
			p := make([]float64, k)
			for j := lo; j < hi; j++ {
				c, ok, err := op.label(float64(y[im*hw+j]))
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				pixelSoftmax(x, im, k, hw, j, p)
				w := op.weight(c)
				pc := max(p[c], 1e-300)
				if op.opt.Kind == CrossEntropy {
					part[0] += -w * math.Log(pc)
				} else {
					part[0] += -w * math.Pow(1-pc, op.opt.Gamma) * math.Log(pc)
				}
				part[1] += w
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		s := sumParts(res, 2)
		if s[1] == 0 {
			return 0, nil
		}
		return s[0] / s[1], nil
	case Dice:
		d, err := diceSumsOf(op, x, y)
		if err != nil {
			return 0, err
		}
		var s float64
		for c := 0; c < k; c++ {
			s += (2*d.pg[c] + 1) / (d.p[c] + d.g[c] + 1)
		}
		return 1 - s/float64(k), nil
	}
	return 0, fmt.Errorf("unknown loss %v", op.opt.Kind)
}

func diceSumsOf[T Float](op *segLossOp, x, y []T) (diceSums, error) {
	k, hw := op.k, op.hw
	res, err := overPixels(op.n, hw, 3*k, func(im, lo, hi int, part []float64) error {
		p := make([]float64, k)
		for j := lo; j < hi; j++ {
			c, ok, err := op.label(float64(y[im*hw+j]))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			pixelSoftmax(x, im, k, hw, j, p)
			for q := 0; q < k; q++ {
				part[q] += p[q]
			}
			part[k+c]++
			part[2*k+c] += p[c]
		}
		return nil
	})
	if err != nil {
		return diceSums{}, err
	}
	s := sumParts(res, 3*k)
	return diceSums{p: s[:k], g: s[k : 2*k], pg: s[2*k:]}, nil
}

func segLossBackward[T Float](op *segLossOp, x, y []T, g float64, dx []T) error {
	n, k, hw := op.n, op.k, op.hw
	switch op.opt.Kind {
	case CrossEntropy, Focal:
		if op.opt.Kind == CrossEntropy && ceBackward(op, x, g, dx) {
			return nil
		}
		res, err := overPixels(n, hw, 1, func(im, lo, hi int, part []float64) error {
			for i := im*hw + lo; i < im*hw+hi; i++ {
				c, ok, err := op.label(float64(y[i]))
				if err != nil {
					return err
				}
				if ok {
					part[0] += op.weight(c)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		wsum := sumParts(res, 1)[0]
		_, err = overPixels(n, hw, 0, func(im, lo, hi int, _ []float64) error {
			p := make([]float64, k)
			for j := lo; j < hi; j++ {
				base := im*k*hw + j
				c, ok, _ := op.label(float64(y[im*hw+j]))
				if !ok || wsum == 0 {
					for q := 0; q < k; q++ {
						dx[base+q*hw] = 0
					}
					continue
				}
				pixelSoftmax(x, im, k, hw, j, p)
				w := op.weight(c) * g / wsum
				if op.opt.Kind == CrossEntropy {
					for q := 0; q < k; q++ {
						d := p[q]
						if q == c {
							d--
						}
						dx[base+q*hw] = T(w * d)
					}
					continue
				}
				// focal: L = -(1-pc)^γ log pc; dL/dpc = γ(1-pc)^(γ-1) log pc - (1-pc)^γ/pc,
				// and dpc/dx_q = pc(δ_qc - p_q).
				gm := op.opt.Gamma
				pc := max(p[c], 1e-300)
				dLdpc := gm*math.Pow(1-pc, gm-1)*math.Log(pc) - math.Pow(1-pc, gm)/pc
				for q := 0; q < k; q++ {
					delta := 0.0
					if q == c {
						delta = 1
					}
					dx[base+q*hw] = T(w * dLdpc * pc * (delta - p[q]))
				}
			}
			return nil
		})
		return err
	case Dice:
		d, err := diceSumsOf(op, x, y)
		if err != nil {
			return err
		}
		// L = 1 - (1/K) sum_c (2 I_c + 1)/(P_c + G_c + 1); dL/dp_q at a pixel
		// of label c = -(1/K) [2 g_q/(D_q) - (2 I_q + 1)/D_q^2], D_q = P_q+G_q+1.
		dldp := func(q int, gq float64) float64 {
			den := d.p[q] + d.g[q] + 1
			return -(2*gq/den - (2*d.pg[q]+1)/(den*den)) / float64(k)
		}
		_, err = overPixels(n, hw, 0, func(im, lo, hi int, _ []float64) error {
			p := make([]float64, k)
			for j := lo; j < hi; j++ {
				base := im*k*hw + j
				c, ok, _ := op.label(float64(y[im*hw+j]))
				if !ok {
					for q := 0; q < k; q++ {
						dx[base+q*hw] = 0
					}
					continue
				}
				pixelSoftmax(x, im, k, hw, j, p)
				// chain through the softmax: dx_r = sum_q dL/dp_q p_q (δ_qr - p_r)
				var dot float64
				for q := 0; q < k; q++ {
					gq := 0.0
					if q == c {
						gq = 1
					}
					dot += dldp(q, gq) * p[q]
				}
				for r := 0; r < k; r++ {
					gr := 0.0
					if r == c {
						gr = 1
					}
					dx[base+r*hw] = T(g * p[r] * (dldp(r, gr) - dot))
				}
			}
			return nil
		})
		return err
	}
	return fmt.Errorf("unknown loss %v", op.opt.Kind)
}

// ceForward is the cross-entropy and the softmax it leaves for ceBackward.
func ceForward[T Float](op *segLossOp, x, y []T) (float64, error) {
	n, k, hw := op.n, op.k, op.hw
	probs, _ := op.probs.([]T)
	if len(probs) != len(x) {
		probs = make([]T, len(x))
		op.probs = probs
	}
	if len(op.labels) != n*hw {
		op.labels = make([]int32, n*hw)
	}
	op.stash = 0
	labels := op.labels
	// Without class weights the sum of log(sum exp) over pixels is the log
	// of a product: each factor is in [1, k], so a run of them fits a
	// float64 and costs one math.Log (as slow as four math.Exp) per run.
	run := 1
	if op.opt.Weights == nil {
		run = max(1, int(900/math.Log2(float64(max(k, 2)))))
	}
	if x32, ok := any(x).([]float32); ok { // vectorised C (kernels.c)
		p32, y32 := any(probs).([]float32), any(y).([]float32)
		res, err := overPixels(n, hw, 2, func(im, lo, hi int, part []float64) error {
			return ceChunk32(op, x32, y32, p32, labels, op.opt.Weights, im, lo, hi, part)
		})
		if err != nil {
			return 0, err
		}
		return op.ceFinish(res, uintptr(unsafe.Pointer(&x[0]))), nil
	}
	res, err := overPixels(n, hw, 2, func(im, lo, hi int, part []float64) error {
		prod, inRun := 1.0, 0
		for j := lo; j < hi; j++ {
			c, ok, err := op.label(float64(y[im*hw+j]))
			if err != nil {
				return err
			}
			if !ok {
				labels[im*hw+j] = -1
				continue
			}
			labels[im*hw+j] = int32(c)
			base := im*k*hw + j
			m := x[base]
			for q := 1; q < k; q++ {
				m = max(m, x[base+q*hw])
			}
			var s float64
			for q := 0; q < k; q++ {
				e := math.Exp(float64(x[base+q*hw] - m))
				probs[base+q*hw] = T(e)
				s += e
			}
			inv := T(1 / s)
			for q := 0; q < k; q++ {
				probs[base+q*hw] *= inv
			}
			// -log p_c = log(sum exp(x - m)) - (x_c - m)
			w := op.weight(c)
			part[0] -= w * float64(x[base+c*hw]-m)
			part[1] += w
			if run == 1 {
				part[0] += w * math.Log(s)
				continue
			}
			prod *= s
			if inRun++; inRun == run {
				part[0] += math.Log(prod)
				prod, inRun = 1, 0
			}
		}
		part[0] += math.Log(prod)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return op.ceFinish(res, uintptr(unsafe.Pointer(&x[0]))), nil
}

// ceFinish sums the chunks' loss and weight, records the stash, and returns
// the mean loss.
func (op *segLossOp) ceFinish(res [][]float64, logits uintptr) float64 {
	sum := sumParts(res, 2)
	op.wsum = sum[1]
	op.stash = logits
	if sum[1] == 0 {
		return 0
	}
	return sum[0] / sum[1]
}

// ceBackward writes the cross-entropy's gradient from what ceForward left,
// if it left it for these logits; false otherwise.
func ceBackward[T Float](op *segLossOp, x []T, g float64, dx []T) bool {
	probs, ok := op.probs.([]T)
	if !ok || len(probs) != len(x) || op.stash != uintptr(unsafe.Pointer(&x[0])) {
		return false
	}
	n, k, hw := op.n, op.k, op.hw
	if op.wsum == 0 {
		clear(dx)
		return true
	}
	scale := g / op.wsum
	_, _ = overPixels(n, hw, 0, func(im, lo, hi int, _ []float64) error {
		lab := op.labels[im*hw+lo : im*hw+hi]
		for q := 0; q < k; q++ {
			off := (im*k+q)*hw + lo
			ps, ds := probs[off:off+hi-lo], dx[off:off+hi-lo]
			ps = ps[:len(lab)]
			ds = ds[:len(lab)]
			if op.opt.Weights == nil {
				s := T(scale)
				for j, c := range lab {
					ds[j] = s * (ps[j] - T(b2u(int(c) == q))) * T(b2u(c >= 0))
				}
				continue
			}
			for j, c := range lab {
				if c < 0 {
					ds[j] = 0
					continue
				}
				ds[j] = T(op.opt.Weights[c]*scale) * (ps[j] - T(b2u(int(c) == q)))
			}
		}
		return nil
	})
	return true
}
