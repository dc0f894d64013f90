package nn

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

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
//
// The update is element by element, so it is split into chunks run on
// GOMAXPROCS goroutines: the result is the same bits however it is split.
func (a *Adam) Step(nodes []*G.Node, params []*Param, frozen func(name string) bool) error {
	a.t++
	c1 := 1 - math.Pow(a.Beta1, float64(a.t))
	c2 := 1 - math.Pow(a.Beta2, float64(a.t))
	var work []adamChunk
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
		switch p.Value.Data().(type) {
		case []float32, []float64:
		default:
			return fmt.Errorf("adam: %s: unsupported dtype %v", p.Name, p.Value.Dtype())
		}
		if gt.Dtype() != p.Value.Dtype() || gt.Len() != len(m) {
			return fmt.Errorf("adam: %s: gradient is %v x %d, the parameter %v x %d", p.Name, gt.Dtype(), gt.Len(), p.Value.Dtype(), len(m))
		}
		for lo := 0; lo < len(m); lo += adamChunkLen {
			work = append(work, adamChunk{w: p.Value.Data(), g: gt.Data(), m: m, v: v, lo: lo, hi: min(lo+adamChunkLen, len(m))})
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(work))
	if workers <= 1 {
		for _, c := range work {
			a.update(c, c1, c2)
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := int(next.Add(1)) - 1; k < len(work); k = int(next.Add(1)) - 1 {
				a.update(work[k], c1, c2)
			}
		})
	}
	wg.Wait()
	return nil
}

// adamChunkLen is the number of values one goroutine updates at a time:
// large enough to amortise the hand-off, small enough to balance two cores
// over parameters of very different sizes.
const adamChunkLen = 1 << 15

// adamChunk is the range [lo, hi) of one parameter, its gradient and moments.
type adamChunk struct {
	w, g   any // []float32 or []float64, the same type
	m, v   []float64
	lo, hi int
}

func (a *Adam) update(c adamChunk, c1, c2 float64) {
	m, v := c.m[c.lo:c.hi], c.v[c.lo:c.hi]
	switch w := c.w.(type) {
	case []float32:
		w, g := w[c.lo:c.hi], c.g.([]float32)[c.lo:c.hi]
		for j := range w {
			gj := float64(g[j]) + a.WeightDecay*float64(w[j])
			m[j] = a.Beta1*m[j] + (1-a.Beta1)*gj
			v[j] = a.Beta2*v[j] + (1-a.Beta2)*gj*gj
			w[j] -= float32(a.LR * (m[j] / c1) / (math.Sqrt(v[j]/c2) + a.Eps))
			g[j] = 0
		}
	case []float64:
		w, g := w[c.lo:c.hi], c.g.([]float64)[c.lo:c.hi]
		for j := range w {
			gj := g[j] + a.WeightDecay*w[j]
			m[j] = a.Beta1*m[j] + (1-a.Beta1)*gj
			v[j] = a.Beta2*v[j] + (1-a.Beta2)*gj*gj
			w[j] -= a.LR * (m[j] / c1) / (math.Sqrt(v[j]/c2) + a.Eps)
			g[j] = 0
		}
	}
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
