package nn

import (
	"fmt"
	"math"
	"strconv"

	"github.com/segtool/segtool/nn/safetensors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Adam is the Adam optimiser (Kingma & Ba 2015) with PyTorch's defaults and
// its weight_decay convention (L2 added to the gradient). Its moments are
// kept by parameter name, so they can be saved and a run resumed exactly —
// Gorgonia's own solvers keep them by position and cannot be saved.
type Adam struct {
	// LR is the step size (default 1e-3).
	LR float64
	// Beta1, Beta2 are the moment decay rates (0.9, 0.999); Eps is 1e-8.
	Beta1, Beta2, Eps float64
	// WeightDecay is the L2 coefficient (default 0).
	WeightDecay float64

	t    int
	m, v map[string][]float64
}

// NewAdam makes an optimiser with the given step size and weight decay.
func NewAdam(lr, weightDecay float64) *Adam {
	return &Adam{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay,
		m: map[string][]float64{}, v: map[string][]float64{}}
}

// Steps is how many updates have been made.
func (a *Adam) Steps() int { return a.t }

// Step updates every parameter from the gradient bound to its node, then
// zeroes that gradient (Gorgonia accumulates gradients across runs).
// Parameters for which frozen returns true (frozen may be nil) keep their
// values and moments; their gradients are zeroed all the same.
func (a *Adam) Step(nodes []*G.Node, params []*Param, frozen func(name string) bool) error {
	a.t++
	c1 := 1 - math.Pow(a.Beta1, float64(a.t))
	c2 := 1 - math.Pow(a.Beta2, float64(a.t))
	for i, n := range nodes {
		p := params[i]
		gv, err := n.Grad()
		if err != nil {
			return fmt.Errorf("adam: %s: %w", p.Name, err)
		}
		gt, ok := gv.(*tensor.Dense)
		if !ok {
			return fmt.Errorf("adam: %s: gradient is %T", p.Name, gv)
		}
		if frozen != nil && frozen(p.Name) {
			gt.Zero()
			continue
		}
		m, v := a.m[p.Name], a.v[p.Name]
		if m == nil {
			m, v = make([]float64, p.Value.Len()), make([]float64, p.Value.Len())
			a.m[p.Name], a.v[p.Name] = m, v
		}
		switch w := p.Value.Data().(type) {
		case []float32:
			g := gt.Data().([]float32)
			for j := range w {
				gj := float64(g[j]) + a.WeightDecay*float64(w[j])
				m[j] = a.Beta1*m[j] + (1-a.Beta1)*gj
				v[j] = a.Beta2*v[j] + (1-a.Beta2)*gj*gj
				w[j] -= float32(a.LR * (m[j] / c1) / (math.Sqrt(v[j]/c2) + a.Eps))
				g[j] = 0
			}
		case []float64:
			g := gt.Data().([]float64)
			for j := range w {
				gj := g[j] + a.WeightDecay*w[j]
				m[j] = a.Beta1*m[j] + (1-a.Beta1)*gj
				v[j] = a.Beta2*v[j] + (1-a.Beta2)*gj*gj
				w[j] -= a.LR * (m[j] / c1) / (math.Sqrt(v[j]/c2) + a.Eps)
				g[j] = 0
			}
		default:
			return fmt.Errorf("adam: %s: unsupported dtype %v", p.Name, p.Value.Dtype())
		}
	}
	return nil
}

// tensors returns the moments for saving, as m.NAME and v.NAME.
func (a *Adam) tensors() map[string]safetensors.Tensor {
	ts := map[string]safetensors.Tensor{}
	for name, m := range a.m {
		ts["m."+name] = safetensors.F64([]int{len(m)}, m)
		ts["v."+name] = safetensors.F64([]int{len(m)}, a.v[name])
	}
	return ts
}

// restore loads moments saved by tensors, checking them against the store.
func (a *Adam) restore(f *safetensors.File, store *Store, steps string) error {
	t, err := strconv.Atoi(steps)
	if err != nil || t < 0 {
		return fmt.Errorf("bad optimiser step count %q", steps)
	}
	a.t = t
	for _, p := range store.Params() {
		if !p.Trainable {
			continue
		}
		mt, okm := f.Tensors["m."+p.Name]
		vt, okv := f.Tensors["v."+p.Name]
		if !okm || !okv {
			if t == 0 {
				continue
			}
			return fmt.Errorf("optimiser state has no moments for %s", p.Name)
		}
		m, err := mt.Float64s()
		if err != nil {
			return fmt.Errorf("m.%s: %w", p.Name, err)
		}
		v, err := vt.Float64s()
		if err != nil {
			return fmt.Errorf("v.%s: %w", p.Name, err)
		}
		if len(m) != p.Value.Len() || len(v) != p.Value.Len() {
			return fmt.Errorf("optimiser moments for %s have %d values, the parameter %d", p.Name, len(m), p.Value.Len())
		}
		a.m[p.Name], a.v[p.Name] = m, v
	}
	return nil
}
