package ops

import (
	"fmt"
	"math"

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
	return G.ApplyOp(op, logits, labels)
}

type segLossOp struct {
	opBase
	opt      SegLossOptions
	n, k, hw int
	shape    tensor.Shape
}

func (op *segLossOp) Arity() int    { return 2 }
func (op *segLossOp) Type() hm.Type { return fnType(4, 3, 0) }
func (op *segLossOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}
func (op *segLossOp) Do(in ...G.Value) (G.Value, error) {
	x, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	y, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	var v float64
	err = dispatch(op.name, x,
		func() { v, err = segLoss(op, data[float32](x), data[float32](y)) },
		func() { v, err = segLoss(op, data[float64](x), data[float64](y)) })
	return makeScalar(x.Dtype(), v), err
}

func (op *segLossOp) DiffWRT(int) []bool { return []bool{true, false} }
func (op *segLossOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(&segLossGradOp{opBase: newBase(op.name + "_dx"), fwd: op}, inputs[0], inputs[1], grad)
	return G.Nodes{dx, nil}, err
}

// segLossGradOp: (logits, labels, dloss) -> dlogits.
type segLossGradOp struct {
	opBase
	fwd *segLossOp
}

func (op *segLossGradOp) Arity() int    { return 3 }
func (op *segLossGradOp) Type() hm.Type { return fnType(4, 3, 0, 4) }
func (op *segLossGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.fwd.shape.Clone(), nil
}
func (op *segLossGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *segLossGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
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
	dx := out(prealloc, x.Dtype(), op.fwd.shape, in...)
	err = dispatch(op.name, x,
		func() { err = segLossBackward(op.fwd, data[float32](x), data[float32](y), g, data[float32](dx)) },
		func() { err = segLossBackward(op.fwd, data[float64](x), data[float64](y), g, data[float64](dx)) })
	return dx, err
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

// diceSums are, per class, sum p, sum g and sum p*g over labelled pixels.
type diceSums struct{ p, g, pg []float64 }

// segLoss computes the loss value.
func segLoss[T Float](op *segLossOp, x, y []T) (float64, error) {
	n, k, hw := op.n, op.k, op.hw
	p := make([]float64, k)
	switch op.opt.Kind {
	case CrossEntropy, Focal:
		var total, wsum float64
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				c, ok, err := op.label(float64(y[i*hw+j]))
				if err != nil {
					return 0, err
				}
				if !ok {
					continue
				}
				pixelSoftmax(x, i, k, hw, j, p)
				w := op.weight(c)
				pc := max(p[c], 1e-300)
				if op.opt.Kind == CrossEntropy {
					total += -w * math.Log(pc)
				} else {
					total += -w * math.Pow(1-pc, op.opt.Gamma) * math.Log(pc)
				}
				wsum += w
			}
		}
		if wsum == 0 {
			return 0, nil
		}
		return total / wsum, nil
	case Dice:
		d, err := op.diceSums(x, y, p)
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

func (op *segLossOp) diceSums(x any, y any, p []float64) (diceSums, error) {
	var err error
	d := diceSums{p: make([]float64, op.k), g: make([]float64, op.k), pg: make([]float64, op.k)}
	visit := func(c int, probs []float64) {
		for q := 0; q < op.k; q++ {
			d.p[q] += probs[q]
		}
		d.g[c]++
		d.pg[c] += probs[c]
	}
	switch xv := x.(type) {
	case []float32:
		err = forLabelled(op, xv, y.([]float32), p, visit)
	case []float64:
		err = forLabelled(op, xv, y.([]float64), p, visit)
	}
	return d, err
}

// forLabelled calls fn with the label and softmax of every labelled pixel.
func forLabelled[T Float](op *segLossOp, x, y []T, p []float64, fn func(c int, p []float64)) error {
	for i := 0; i < op.n; i++ {
		for j := 0; j < op.hw; j++ {
			c, ok, err := op.label(float64(y[i*op.hw+j]))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			pixelSoftmax(x, i, op.k, op.hw, j, p)
			fn(c, p)
		}
	}
	return nil
}

func segLossBackward[T Float](op *segLossOp, x, y []T, g float64, dx []T) error {
	n, k, hw := op.n, op.k, op.hw
	clear(dx)
	p := make([]float64, k)
	switch op.opt.Kind {
	case CrossEntropy, Focal:
		var wsum float64
		for i := 0; i < n*hw; i++ {
			c, ok, err := op.label(float64(y[i]))
			if err != nil {
				return err
			}
			if ok {
				wsum += op.weight(c)
			}
		}
		if wsum == 0 {
			return nil
		}
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				c, ok, _ := op.label(float64(y[i*hw+j]))
				if !ok {
					continue
				}
				pixelSoftmax(x, i, k, hw, j, p)
				w := op.weight(c) * g / wsum
				base := i*k*hw + j
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
		}
	case Dice:
		d, err := op.diceSums(any(x), any(y), p)
		if err != nil {
			return err
		}
		// L = 1 - (1/K) sum_c (2 I_c + 1)/(P_c + G_c + 1); dL/dp_q at a pixel
		// of label c = -(1/K) [2 g_q/(D_q) - (2 I_q + 1)/D_q^2], D_q = P_q+G_q+1.
		dldp := func(q int, gq float64) float64 {
			den := d.p[q] + d.g[q] + 1
			return -(2*gq/den - (2*d.pg[q]+1)/(den*den)) / float64(k)
		}
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				c, ok, _ := op.label(float64(y[i*hw+j]))
				if !ok {
					continue
				}
				pixelSoftmax(x, i, k, hw, j, p)
				// chain through the softmax: dx_r = sum_q dL/dp_q p_q (δ_qr - p_r)
				var dot float64
				for q := 0; q < k; q++ {
					gq := 0.0
					if q == c {
						gq = 1
					}
					dot += dldp(q, gq) * p[q]
				}
				base := i*k*hw + j
				for r := 0; r < k; r++ {
					gr := 0.0
					if r == c {
						gr = 1
					}
					dx[base+r*hw] = T(g * p[r] * (dldp(r, gr) - dot))
				}
			}
		}
	}
	return nil
}
