// Package nn holds the building blocks shared by the auto-encoder, the VAE
// and the segmenter: parameter storage with dotted names, layers on top of
// nn/ops, the encoder and decoder, model files, the Adam optimiser and the
// training loop.
//
// Weights live in a Store, apart from any graph. A model is built into a
// Scope — one Gorgonia graph plus the Store — as often as needed: the
// training graph and the inference graphs (one per batch size) bind the same
// weight tensors, so what the optimiser changes every graph sees.
package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Param is one named tensor of a model: a trainable weight, or a buffer
// (batch-norm running statistics) that is saved but not trained.
type Param struct {
	Name      string
	Value     *tensor.Dense
	Trainable bool
}

// Store holds a model's tensors by dotted name, in creation order, and the
// seeded source new weights are drawn from.
type Store struct {
	dtype  tensor.Dtype
	rng    *rand.Rand
	order  []string
	params map[string]*Param
}

// NewStore makes an empty store of the given dtype (tensor.Float32 for
// models, tensor.Float64 for gradient checks) whose initial weights are drawn
// from seed: the same seed and model give the same weights.
func NewStore(dtype tensor.Dtype, seed uint64) *Store {
	return &Store{dtype: dtype, rng: rand.New(rand.NewPCG(seed, 0x5e67001)), params: map[string]*Param{}}
}

// Dtype is the element type of every tensor in the store.
func (s *Store) Dtype() tensor.Dtype { return s.dtype }

// Params lists the tensors in creation order.
func (s *Store) Params() []*Param {
	out := make([]*Param, len(s.order))
	for i, n := range s.order {
		out[i] = s.params[n]
	}
	return out
}

// Get returns the tensor called name, or nil.
func (s *Store) Get(name string) *Param { return s.params[name] }

// NumParams counts trainable elements.
func (s *Store) NumParams() int {
	n := 0
	for _, p := range s.params {
		if p.Trainable {
			n += p.Value.Len()
		}
	}
	return n
}

// Init fills a new tensor's backing slice (float64 values, converted to the
// store's dtype).
type Init func(r *rand.Rand, v []float64)

// HeNormal draws N(0, 2/fanIn): the scale that keeps activations' variance
// through ReLU layers (He et al. 2015).
func HeNormal(fanIn int) Init {
	sd := math.Sqrt(2 / float64(fanIn))
	return func(r *rand.Rand, v []float64) {
		for i := range v {
			v[i] = r.NormFloat64() * sd
		}
	}
}

// GlorotUniform draws U(-a, a), a = sqrt(6/(fanIn+fanOut)), for layers not
// followed by a ReLU.
func GlorotUniform(fanIn, fanOut int) Init {
	a := math.Sqrt(6 / float64(fanIn+fanOut))
	return func(r *rand.Rand, v []float64) {
		for i := range v {
			v[i] = (2*r.Float64() - 1) * a
		}
	}
}

// Const fills with c.
func Const(c float64) Init {
	return func(_ *rand.Rand, v []float64) {
		for i := range v {
			v[i] = c
		}
	}
}

// tensor returns the named tensor, creating and initialising it on first use.
// A second request must agree on shape and kind.
func (s *Store) tensor(name string, shape []int, init Init, trainable bool) (*Param, error) {
	if p, ok := s.params[name]; ok {
		if !p.Value.Shape().Eq(tensor.Shape(shape)) || p.Trainable != trainable {
			return nil, fmt.Errorf("%s: already exists with shape %v, requested %v", name, p.Value.Shape(), shape)
		}
		return p, nil
	}
	n := tensor.Shape(shape).TotalSize()
	v := make([]float64, n)
	init(s.rng, v)
	var t *tensor.Dense
	if s.dtype == tensor.Float64 {
		t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	} else {
		f := make([]float32, n)
		for i, x := range v {
			f[i] = float32(x)
		}
		t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(f))
	}
	p := &Param{Name: name, Value: t, Trainable: trainable}
	s.params[name] = p
	s.order = append(s.order, name)
	return p, nil
}

// Mode says which graph a model is being built for.
type Mode int

const (
	// TrainMode builds the training graph: batch statistics, gradients.
	TrainMode Mode = iota
	// EvalMode builds an inference graph: running statistics, no gradients.
	EvalMode
)

// Scope is where a model is built: a graph, the store its weights come from,
// the dotted name prefix of the current module, and the mode. Sub-modules get
// sub-scopes; every parameter created in any of them is recorded, so the
// trainer's list of learnables can never miss one.
type Scope struct {
	g      *G.ExprGraph
	store  *Store
	prefix string
	mode   Mode
	nodes  *[]paramNode
}

type paramNode struct {
	param *Param
	node  *G.Node
}

// NewScope starts building a model into a fresh graph.
func NewScope(store *Store, mode Mode) *Scope {
	return &Scope{g: G.NewGraph(), store: store, mode: mode, nodes: new([]paramNode)}
}

// Graph is the scope's Gorgonia graph.
func (s *Scope) Graph() *G.ExprGraph { return s.g }

// Store is where the weights live.
func (s *Scope) Store() *Store { return s.store }

// Mode is TrainMode or EvalMode.
func (s *Scope) Mode() Mode { return s.mode }

// Training reports whether the scope builds the training graph.
func (s *Scope) Training() bool { return s.mode == TrainMode }

// Name is the dotted path of the current module.
func (s *Scope) Name() string { return s.prefix }

// Sub enters the sub-module name.
func (s *Scope) Sub(name string) *Scope {
	c := *s
	c.prefix = s.join(name)
	return &c
}

func (s *Scope) join(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "." + name
}

// Param returns a node in this graph bound to the trainable tensor name
// (under the current prefix), creating the tensor with init on first use.
func (s *Scope) Param(name string, shape []int, init Init) (*G.Node, error) {
	full := s.join(name)
	p, err := s.store.tensor(full, shape, init, true)
	if err != nil {
		return nil, err
	}
	for _, pn := range *s.nodes {
		if pn.param == p {
			return pn.node, nil
		}
	}
	n := G.NewTensor(s.g, s.store.dtype, len(shape), G.WithShape(shape...), G.WithValue(p.Value), G.WithName(full))
	*s.nodes = append(*s.nodes, paramNode{p, n})
	return n, nil
}

// Buffer returns the non-trainable tensor name, creating it with init.
func (s *Scope) Buffer(name string, shape []int, init Init) (*tensor.Dense, error) {
	p, err := s.store.tensor(s.join(name), shape, init, false)
	if err != nil {
		return nil, err
	}
	return p.Value, nil
}

// Learnables lists the graph nodes of every trainable parameter built into
// this scope's graph, and the store entries they are bound to.
func (s *Scope) Learnables() ([]*G.Node, []*Param) {
	nodes := make([]*G.Node, len(*s.nodes))
	params := make([]*Param, len(*s.nodes))
	for i, pn := range *s.nodes {
		nodes[i], params[i] = pn.node, pn.param
	}
	return nodes, params
}

// Input adds an input tensor of the given shape to the graph.
func (s *Scope) Input(name string, shape ...int) *G.Node {
	var t *tensor.Dense
	if s.store.dtype == tensor.Float64 {
		t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(make([]float64, tensor.Shape(shape).TotalSize())))
	} else {
		t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(make([]float32, tensor.Shape(shape).TotalSize())))
	}
	return G.NewTensor(s.g, s.store.dtype, len(shape), G.WithShape(shape...), G.WithValue(t), G.WithName(name))
}

// Names lists the store's tensor names with the given prefix, sorted.
func (s *Store) Names(prefix string) []string {
	var out []string
	for _, n := range s.order {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
