package vae

import (
	"fmt"

	"github.com/segtool/segtool/nn"
	G "gorgonia.org/gorgonia"
)

// runner is nn.Runner for graphs with several inputs (images and the noise
// of the reparameterisation): one compiled inference graph per batch size.
type runner struct {
	store *nn.Store
	build func(s *nn.Scope, n int) (ins, outs []*G.Node, err error)
	cache map[int]*compiled
}

type compiled struct {
	ins, outs []*G.Node
	vm        G.VM
}

func newRunner(store *nn.Store, build func(s *nn.Scope, n int) (ins, outs []*G.Node, err error)) *runner {
	return &runner{store: store, build: build, cache: map[int]*compiled{}}
}

// run feeds one slice per input (for n examples) and returns a copy of
// every output.
func (r *runner) run(n int, ins ...[]float32) ([][]float32, error) {
	c, ok := r.cache[n]
	if !ok {
		s := nn.NewScope(r.store, nn.EvalMode)
		in, outs, err := r.build(s, n)
		if err != nil {
			return nil, err
		}
		c = &compiled{ins: in, outs: outs, vm: G.NewTapeMachine(s.Graph())}
		r.cache[n] = c
	}
	if len(ins) != len(c.ins) {
		return nil, fmt.Errorf("inference: %d inputs given, the graph takes %d", len(ins), len(c.ins))
	}
	for i, v := range ins {
		if err := nn.Feed(c.ins[i], v); err != nil {
			return nil, err
		}
	}
	defer c.vm.Reset()
	if err := c.vm.RunAll(); err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	res := make([][]float32, len(c.outs))
	for i, o := range c.outs {
		v, err := nn.Float32s(o.Value())
		if err != nil {
			return nil, err
		}
		res[i] = v
	}
	return res, nil
}

func (r *runner) close() {
	for _, c := range r.cache {
		c.vm.Close()
	}
	r.cache = map[int]*compiled{}
}
