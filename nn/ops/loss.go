package ops

import (
	"fmt"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// LossKind selects a pointwise regression loss.
type LossKind int

const (
	// MSE is the mean of (pred - target)^2 over every element.
	MSE LossKind = iota
	// BCEWithLogits is the mean binary cross-entropy of sigmoid(pred)
	// against targets in [0,1], computed from the logits in the stable form
	// max(x,0) - x*t + log(1+exp(-|x|)) (Gorgonia's BinaryXent takes the log
	// of probabilities and overflows).
	BCEWithLogits
)

func (k LossKind) String() string {
	if k == BCEWithLogits {
		return "bce"
	}
	return "mse"
}

// PointwiseLoss is the mean over all elements of the chosen loss between pred
// and target (same shape); it returns a scalar. The target gets no gradient.
func PointwiseLoss(kind LossKind, pred, target *G.Node) (*G.Node, error) {
	if !pred.Shape().Eq(target.Shape()) {
		return nil, fmt.Errorf("%v loss: prediction %v and target %v differ in shape", kind, pred.Shape(), target.Shape())
	}
	return apply(&lossOp{opBase: newBase(kind.String()), kind: kind, shape: pred.Shape().Clone()}, pred, target)
}

type lossOp struct {
	opBase
	kind  LossKind
	shape tensor.Shape
}

func (op *lossOp) Arity() int { return 2 }
func (op *lossOp) Type() hm.Type {
	d := op.shape.Dims()
	return fnType(d, d, 0)
}
func (op *lossOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return tensor.ScalarShape(), nil }
func (op *lossOp) Do(in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	p, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	t, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	var v float64
	err = dispatch(op.name, p,
		func() { v = MeanLoss(op.kind, data[float32](p), data[float32](t)) },
		func() { v = MeanLoss(op.kind, data[float64](p), data[float64](t)) })
	return makeScalar(p.Dtype(), v), err
}

// MeanLoss is the loss of the kind averaged over all values, computed
// outside a graph (evaluation uses it to report the training loss).
func MeanLoss[T Float](kind LossKind, p, t []T) float64 {
	var s float64
	switch kind {
	case MSE:
		for i, v := range p {
			d := float64(v) - float64(t[i])
			s += d * d
		}
	case BCEWithLogits:
		for i, v := range p {
			x := float64(v)
			s += max(x, 0) - x*float64(t[i]) + math.Log1p(math.Exp(-math.Abs(x)))
		}
	}
	return s / float64(len(p))
}

func (op *lossOp) DiffWRT(int) []bool { return []bool{true, false} }
func (op *lossOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dp, err := applyGrad(&lossGradOp{opBase: newBase(op.name + "_dx"), kind: op.kind, shape: op.shape}, inputs[0], inputs[1], grad)
	return G.Nodes{dp, nil}, err
}

// lossGradOp: (pred, target, dloss) -> dpred.
type lossGradOp struct {
	opBase
	kind  LossKind
	shape tensor.Shape
}

func (op *lossGradOp) Arity() int { return 3 }
func (op *lossGradOp) Type() hm.Type {
	d := op.shape.Dims()
	return fnType(d, d, 0, d)
}
func (op *lossGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *lossGradOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *lossGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	defer timer(op.name)()
	p, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	t, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	g, err := scalar(in[2])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	dp := op.output(prealloc, in, -1, p.Dtype(), op.shape)
	err = dispatch(op.name, p,
		func() { pointwiseLossGrad(op.kind, g, data[float32](p), data[float32](t), data[float32](dp)) },
		func() { pointwiseLossGrad(op.kind, g, data[float64](p), data[float64](t), data[float64](dp)) })
	return dp, err
}

func pointwiseLossGrad[T Float](kind LossKind, g float64, p, t, dp []T) {
	scale := g / float64(len(p))
	switch kind {
	case MSE:
		for i, v := range p {
			dp[i] = T(2 * scale * float64(v-t[i]))
		}
	case BCEWithLogits:
		for i, v := range p {
			dp[i] = T(scale * (Sigmoid(float64(v)) - float64(t[i])))
		}
	}
}

// ToImage turns a decoder's output trained with the loss kind into image
// values, in place: the sigmoid of BCE logits; MSE outputs are values
// already.
func ToImage(kind LossKind, y []float32) []float32 {
	if kind == BCEWithLogits {
		for i, v := range y {
			y[i] = float32(Sigmoid(float64(v)))
		}
	}
	return y
}

// Sigmoid is 1/(1+exp(-x)), computed without overflow for large |x|.
func Sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}
