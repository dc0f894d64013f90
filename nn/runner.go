package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
)

// BuildFunc builds an inference graph for batches of n into s and returns
// its input nodes (images; the noise of a VAE's sampling, say) and the
// outputs to read.
type BuildFunc func(s *Scope, n int) (ins, outs []*G.Node, err error)

// Runner runs a model's inference graph on batches of any size, keeping one
// compiled graph per batch size it has seen (usually two: the batch size and
// the last partial batch).
type Runner struct {
	store *Store
	build BuildFunc
	cache map[int]*compiled
}

type compiled struct {
	ins, outs []*G.Node
	vm        G.VM
}

// NewRunner makes a runner over the weights in store.
func NewRunner(store *Store, build BuildFunc) *Runner {
	return &Runner{store: store, build: build, cache: map[int]*compiled{}}
}

// Run feeds one slice per input of the graph, each holding n examples
// (images in NCHW), and returns a copy of every output.
func (r *Runner) Run(n int, ins ...[]float32) ([][]float32, error) {
	c, ok := r.cache[n]
	if !ok {
		s := NewScope(r.store, EvalMode)
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
		if err := Feed(c.ins[i], v); err != nil {
			return nil, err
		}
	}
	defer c.vm.Reset()
	if err := c.vm.RunAll(); err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	res := make([][]float32, len(c.outs))
	for i, o := range c.outs {
		v, err := Float32s(o.Value())
		if err != nil {
			return nil, err
		}
		res[i] = v
	}
	return res, nil
}

// Close releases the compiled graphs.
func (r *Runner) Close() {
	for _, c := range r.cache {
		c.vm.Close()
	}
	r.cache = map[int]*compiled{}
}
