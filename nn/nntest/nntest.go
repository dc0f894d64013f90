// Package nntest checks gradients of segtool modules against finite
// differences, for the tests of nn, ae, vae and seg.
package nntest

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// CheckGradients builds a module with fresh float64 weights, reduces its
// output with fixed random weights, and checks the gradient of every
// parameter (a sample of elements each) and of the input against central
// finite differences.
func CheckGradients(t *testing.T, inShape []int, inputGrad bool, build func(s *nn.Scope, x *G.Node) (*G.Node, error)) {
	t.Helper()
	store := nn.NewStore(tensor.Float64, 1)
	s := nn.NewScope(store, nn.TrainMode)
	x := s.Input("x", inShape...)
	r := rand.New(rand.NewPCG(2, 3))
	xd := x.Value().Data().([]float64)
	for i := range xd {
		xd[i] = r.NormFloat64()
	}
	y, err := build(s, x)
	require.NoError(t, err)
	// Zero biases put exactly-zero pre-activations on ReLU's kink wherever a
	// layer's input is all zero, where finite differences are meaningless.
	for _, p := range store.Params() {
		if strings.HasSuffix(p.Name, "bias") {
			for i, v := range p.Value.Data().([]float64) {
				p.Value.Data().([]float64)[i] = v + 0.1*r.NormFloat64()
			}
		}
	}
	cost := y
	if !y.IsScalar() {
		wv := make([]float64, y.Shape().TotalSize())
		for i := range wv {
			wv[i] = r.NormFloat64()
		}
		w := G.NewTensor(s.Graph(), tensor.Float64, y.Dims(), G.WithShape(y.Shape()...), G.WithValue(tensor.New(tensor.WithShape(y.Shape()...), tensor.WithBacking(wv))), G.WithName("w"))
		cost = G.Must(G.Sum(G.Must(G.HadamardProd(y, w))))
	}
	nodes, params := s.Learnables()
	wrt := append([]*G.Node(nil), nodes...)
	vals := make([][]float64, 0, len(params)+1)
	names := []string{}
	for _, p := range params {
		vals = append(vals, p.Value.Data().([]float64))
		names = append(names, p.Name)
	}
	if inputGrad {
		wrt = append(wrt, x)
		vals = append(vals, xd)
		names = append(names, "input")
	}
	_, err = G.Grad(cost, wrt...)
	require.NoError(t, err)
	m := G.NewTapeMachine(s.Graph(), G.BindDualValues(wrt...))
	defer m.Close()
	require.NoError(t, m.RunAll())
	analytic := make([][]float64, len(wrt))
	for i, n := range wrt {
		g, err := n.Grad()
		require.NoError(t, err)
		analytic[i] = append([]float64(nil), g.Data().([]float64)...)
	}
	m.Reset()
	eval := func() float64 {
		require.NoError(t, m.RunAll())
		v, err := nn.Scalar(cost.Value())
		require.NoError(t, err)
		m.Reset()
		return v
	}
	const eps = 1e-5
	for i, v := range vals {
		idx := r.Perm(len(v))
		if len(idx) > 6 {
			idx = idx[:6]
		}
		for _, j := range idx {
			orig := v[j]
			v[j] = orig + eps
			up := eval()
			v[j] = orig - eps
			down := eval()
			v[j] = orig
			num := (up - down) / (2 * eps)
			assert.InDeltaf(t, num, analytic[i][j], 1e-4*max(1, math.Abs(num)), "%s[%d]", names[i], j)
		}
	}
}
