package ops

import (
	"fmt"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The variational auto-encoder's ops: the KL divergence of a diagonal
// Gaussian from the standard normal, the reparameterisation
// z = mu + exp(logvar/2)*eps, and a pointwise loss summed over each example
// (a log-likelihood in nats, where PointwiseLoss averages every value).

// GaussianKL is KL(N(mu, diag(exp(logvar))) || N(0, I)) of every row of mu
// and logvar [N, D], summed over D and averaged over N:
//
//	(1/N) sum_n sum_j ½(mu² + exp(logvar) − 1 − logvar)
//
// a scalar, never negative, 0 only where mu = 0 and logvar = 0.
func GaussianKL(mu, logvar *G.Node) (*G.Node, error) {
	ms, ls := mu.Shape(), logvar.Shape()
	if ms.Dims() != 2 || !ms.Eq(ls) {
		return nil, fmt.Errorf("gaussian kl: want mu and logvar [N,D] of the same shape; got %v and %v", ms, ls)
	}
	return G.ApplyOp(&klOp{opBase: newBase("gaussian_kl"), n: ms[0], d: ms[1]}, mu, logvar)
}

// KLTerms writes each row's KL divergence from N(0, I) into out (one value
// per row of d), outside a graph: evaluation reports it per image.
func KLTerms[T Float](mu, logvar []T, d int, out []float64) {
	for i := range out {
		out[i] = klSum(mu[i*d:(i+1)*d], logvar[i*d:(i+1)*d])
	}
}

func klSum[T Float](mu, logvar []T) float64 {
	var s float64
	for i, m := range mu {
		l := float64(logvar[i])
		s += 0.5 * (float64(m)*float64(m) + math.Exp(l) - 1 - l)
	}
	return s
}

type klOp struct {
	opBase
	n, d int
}

func (op *klOp) Arity() int                                     { return 2 }
func (op *klOp) Type() hm.Type                                  { return fnType(2, 2, 0) }
func (op *klOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return tensor.ScalarShape(), nil }
func (op *klOp) Do(in ...G.Value) (G.Value, error) {
	mu, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	lv, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	var v float64
	err = dispatch(op.name, mu,
		func() { v = klSum(data[float32](mu), data[float32](lv)) },
		func() { v = klSum(data[float64](mu), data[float64](lv)) })
	return makeScalar(mu.Dtype(), v/float64(op.n)), err
}

func (op *klOp) DiffWRT(int) []bool { return []bool{true, true} }
func (op *klOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	grads := make(G.Nodes, 2)
	for i, name := range []string{"_dmu", "_dlogvar"} {
		g, err := G.ApplyOp(&klGradOp{opBase: newBase(op.name + name), n: op.n, d: op.d, wrtLogvar: i == 1}, inputs[0], inputs[1], grad)
		if err != nil {
			return nil, err
		}
		grads[i] = g
	}
	return grads, nil
}

// klGradOp: (mu, logvar, dkl) -> dmu = dkl*mu/N, or dlogvar =
// dkl*½(exp(logvar) − 1)/N.
type klGradOp struct {
	opBase
	n, d      int
	wrtLogvar bool
}

func (op *klGradOp) Arity() int    { return 3 }
func (op *klGradOp) Type() hm.Type { return fnType(2, 2, 0, 2) }
func (op *klGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.n, op.d}, nil
}
func (op *klGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *klGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	mu, err := dense(op.name, in[0])
	if err != nil {
		return nil, err
	}
	lv, err := dense(op.name, in[1])
	if err != nil {
		return nil, err
	}
	g, err := scalar(in[2])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	dx := op.outBuf(prealloc, mu.Dtype(), tensor.Shape{op.n, op.d}, in...)
	scale := g / float64(op.n)
	err = dispatch(op.name, mu,
		func() { klGrad(op.wrtLogvar, scale, data[float32](mu), data[float32](lv), data[float32](dx)) },
		func() { klGrad(op.wrtLogvar, scale, data[float64](mu), data[float64](lv), data[float64](dx)) })
	return dx, err
}

func klGrad[T Float](wrtLogvar bool, scale float64, mu, lv, dx []T) {
	if wrtLogvar {
		for i, l := range lv {
			dx[i] = T(scale * 0.5 * (math.Exp(float64(l)) - 1))
		}
		return
	}
	for i, m := range mu {
		dx[i] = T(scale * float64(m))
	}
}

// Reparameterize draws z = mu + exp(logvar/2)*eps from N(mu,
// diag(exp(logvar))) as a differentiable function of mu and logvar, given
// standard normal noise eps; all three are [N, D]. eps gets no gradient: it
// is data the caller draws (from a seed, so that runs repeat).
func Reparameterize(mu, logvar, eps *G.Node) (*G.Node, error) {
	ms, ls, es := mu.Shape(), logvar.Shape(), eps.Shape()
	if ms.Dims() != 2 || !ms.Eq(ls) || !ms.Eq(es) {
		return nil, fmt.Errorf("reparameterize: want mu, logvar and eps [N,D] of one shape; got %v, %v and %v", ms, ls, es)
	}
	return G.ApplyOp(&reparamOp{opBase: newBase("reparameterize"), shape: ms.Clone()}, mu, logvar, eps)
}

type reparamOp struct {
	opBase
	shape tensor.Shape
}

func (op *reparamOp) Arity() int                                     { return 3 }
func (op *reparamOp) Type() hm.Type                                  { return fnType(2, 2, 2, 2) }
func (op *reparamOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *reparamOp) Do(in ...G.Value) (G.Value, error)              { return op.UsePreallocDo(nil, in...) }
func (op *reparamOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	ts, err := denseAll(op.name, in)
	if err != nil {
		return nil, err
	}
	z := op.outBuf(prealloc, ts[0].Dtype(), op.shape, in...)
	err = dispatch(op.name, z,
		func() { reparam(data[float32](ts[0]), data[float32](ts[1]), data[float32](ts[2]), data[float32](z)) },
		func() { reparam(data[float64](ts[0]), data[float64](ts[1]), data[float64](ts[2]), data[float64](z)) })
	return z, err
}

func reparam[T Float](mu, lv, eps, z []T) {
	for i, m := range mu {
		z[i] = m + T(math.Exp(0.5*float64(lv[i])))*eps[i]
	}
}

func (op *reparamOp) DiffWRT(int) []bool { return []bool{true, true, false} }
func (op *reparamOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	// dz/dmu is the identity: mu's gradient is z's.
	dlv, err := G.ApplyOp(&reparamGradOp{opBase: newBase(op.name + "_dlogvar"), shape: op.shape}, inputs[1], inputs[2], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{grad, dlv, nil}, nil
}

// reparamGradOp: (logvar, eps, dz) -> dlogvar = dz*½exp(logvar/2)*eps.
type reparamGradOp struct {
	opBase
	shape tensor.Shape
}

func (op *reparamGradOp) Arity() int    { return 3 }
func (op *reparamGradOp) Type() hm.Type { return fnType(2, 2, 2, 2) }
func (op *reparamGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.shape.Clone(), nil
}
func (op *reparamGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *reparamGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
	ts, err := denseAll(op.name, in)
	if err != nil {
		return nil, err
	}
	dlv := op.outBuf(prealloc, ts[0].Dtype(), op.shape, in...)
	err = dispatch(op.name, dlv,
		func() {
			reparamGrad(data[float32](ts[0]), data[float32](ts[1]), data[float32](ts[2]), data[float32](dlv))
		},
		func() {
			reparamGrad(data[float64](ts[0]), data[float64](ts[1]), data[float64](ts[2]), data[float64](dlv))
		})
	return dlv, err
}

func reparamGrad[T Float](lv, eps, dz, dlv []T) {
	for i, l := range lv {
		dlv[i] = T(0.5*math.Exp(0.5*float64(l))) * eps[i] * dz[i]
	}
}

// SumLoss is the pointwise loss of the kind between pred and target (same
// shape, the first axis the batch) summed over each example's values and
// averaged over the batch: for BCEWithLogits the negative Bernoulli
// log-likelihood of an image in nats, for MSE its sum of squared errors. A
// scalar; the target gets no gradient.
func SumLoss(kind LossKind, pred, target *G.Node) (*G.Node, error) {
	if !pred.Shape().Eq(target.Shape()) || pred.Dims() < 1 {
		return nil, fmt.Errorf("%v sum loss: prediction %v and target %v differ in shape", kind, pred.Shape(), target.Shape())
	}
	return G.ApplyOp(&sumLossOp{opBase: newBase(kind.String() + "_sum"), kind: kind, shape: pred.Shape().Clone()}, pred, target)
}

// SumLossTerms writes each example's summed loss (size values each) into
// out, outside a graph.
func SumLossTerms[T Float](kind LossKind, pred, target []T, size int, out []float64) {
	for i := range out {
		out[i] = MeanLoss(kind, pred[i*size:(i+1)*size], target[i*size:(i+1)*size]) * float64(size)
	}
}

type sumLossOp struct {
	opBase
	kind  LossKind
	shape tensor.Shape
}

// perExample is the factor from PointwiseLoss's mean over every value to a
// sum per example averaged over the batch.
func (op *sumLossOp) perExample() float64 {
	return float64(op.shape.TotalSize()) / float64(op.shape[0])
}

func (op *sumLossOp) Arity() int { return 2 }
func (op *sumLossOp) Type() hm.Type {
	d := op.shape.Dims()
	return fnType(d, d, 0)
}
func (op *sumLossOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}
func (op *sumLossOp) Do(in ...G.Value) (G.Value, error) {
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
	return makeScalar(p.Dtype(), v*op.perExample()), err
}

func (op *sumLossOp) DiffWRT(int) []bool { return []bool{true, false} }
func (op *sumLossOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dp, err := G.ApplyOp(&sumLossGradOp{opBase: newBase(op.name + "_dx"), kind: op.kind, shape: op.shape, perExample: op.perExample()},
		inputs[0], inputs[1], grad)
	return G.Nodes{dp, nil}, err
}

// sumLossGradOp: (pred, target, dloss) -> dpred, PointwiseLoss's gradient
// scaled from the mean over every value to the mean over examples.
type sumLossGradOp struct {
	opBase
	kind       LossKind
	shape      tensor.Shape
	perExample float64
}

func (op *sumLossGradOp) Arity() int { return 3 }
func (op *sumLossGradOp) Type() hm.Type {
	d := op.shape.Dims()
	return fnType(d, d, 0, d)
}
func (op *sumLossGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.shape.Clone(), nil
}
func (op *sumLossGradOp) Do(in ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, in...) }
func (op *sumLossGradOp) UsePreallocDo(prealloc G.Value, in ...G.Value) (G.Value, error) {
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
	g *= op.perExample
	dp := op.outBuf(prealloc, p.Dtype(), op.shape, in...)
	err = dispatch(op.name, p,
		func() { pointwiseLossGrad(op.kind, g, data[float32](p), data[float32](t), data[float32](dp)) },
		func() { pointwiseLossGrad(op.kind, g, data[float64](p), data[float64](t), data[float64](dp)) })
	return dp, err
}

// denseAll reads every input as a dense tensor of one dtype.
func denseAll(op string, in []G.Value) ([]*tensor.Dense, error) {
	ts := make([]*tensor.Dense, len(in))
	for i, v := range in {
		t, err := dense(op, v)
		if err != nil {
			return nil, err
		}
		if i > 0 && t.Dtype() != ts[0].Dtype() {
			return nil, fmt.Errorf("%s: input %d is %v, input 0 %v", op, i, t.Dtype(), ts[0].Dtype())
		}
		ts[i] = t
	}
	return ts, nil
}
