package nn

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// adamGraph binds, for each parameter, a node whose gradient after one run
// is the constant c_i (the loss is the sum of w_i * c_i; one graph per
// parameter, as their dtypes differ).
type adamGraph struct {
	nodes  []*G.Node
	params []*Param
	vms    []G.VM
	consts []*tensor.Dense
}

func newAdamGraph(t testing.TB, params []*Param) *adamGraph {
	t.Helper()
	ag := &adamGraph{params: params}
	for _, p := range params {
		g := G.NewGraph()
		w := G.NewTensor(g, p.Value.Dtype(), 1, G.WithShape(p.Value.Len()), G.WithValue(p.Value), G.WithName(p.Name))
		c := tensor.New(tensor.Of(p.Value.Dtype()), tensor.WithShape(p.Value.Len()))
		cn := G.NewTensor(g, p.Value.Dtype(), 1, G.WithShape(p.Value.Len()), G.WithValue(c), G.WithName("c."+p.Name))
		loss := G.Must(G.Sum(G.Must(G.HadamardProd(w, cn))))
		_, err := G.Grad(loss, w)
		require.NoError(t, err)
		vm := G.NewTapeMachine(g, G.BindDualValues(w))
		t.Cleanup(func() { vm.Close() })
		ag.nodes = append(ag.nodes, w)
		ag.consts = append(ag.consts, c)
		ag.vms = append(ag.vms, vm)
	}
	return ag
}

// run sets the gradients (drawn from r) and runs the graph; it returns them
// as float64s.
func (ag *adamGraph) run(t testing.TB, r *rand.Rand) [][]float64 {
	t.Helper()
	out := make([][]float64, len(ag.consts))
	for i, c := range ag.consts {
		out[i] = make([]float64, c.Len())
		switch d := c.Data().(type) {
		case []float32:
			for j := range d {
				d[j] = float32(r.NormFloat64())
				out[i][j] = float64(d[j])
			}
		case []float64:
			for j := range d {
				d[j] = r.NormFloat64()
				out[i][j] = d[j]
			}
		}
	}
	for _, vm := range ag.vms {
		require.NoError(t, vm.RunAll())
		vm.Reset()
	}
	return out
}

func adamParams(seed uint64) []*Param {
	r := rand.New(rand.NewPCG(seed, 3))
	mk := func(name string, dt tensor.Dtype, n int) *Param {
		v := tensor.New(tensor.Of(dt), tensor.WithShape(n))
		switch d := v.Data().(type) {
		case []float32:
			for j := range d {
				d[j] = float32(r.NormFloat64())
			}
		case []float64:
			for j := range d {
				d[j] = r.NormFloat64()
			}
		}
		return &Param{Name: name, Value: v, Trainable: true}
	}
	// The large one spans several chunks, with a short last one.
	return []*Param{mk("a", tensor.Float32, 5), mk("big", tensor.Float32, 3*adamChunkLen+17), mk("frozen", tensor.Float32, 7), mk("d", tensor.Float64, 11)}
}

func values(p *Param) []float64 {
	out := make([]float64, p.Value.Len())
	switch d := p.Value.Data().(type) {
	case []float32:
		for j, v := range d {
			out[j] = float64(v)
		}
	case []float64:
		copy(out, d)
	}
	return out
}

// Adam against the algorithm written out directly (PyTorch's form, with
// L2 weight decay added to the gradient), over several steps, with a frozen
// parameter; and the first step moves every weight by lr*g/(|g|+eps),
// almost exactly lr against the gradient's sign.
func TestAdamFollowsTheAlgorithm(t *testing.T) {
	const lr, wd = 0.01, 0.1
	params := adamParams(1)
	ag := newAdamGraph(t, params)
	opt := NewAdam(lr, wd)
	frozen := func(name string) bool { return name == "frozen" }
	type state struct{ w, m, v []float64 }
	ref := make([]state, len(params))
	for i, p := range params {
		ref[i] = state{w: values(p), m: make([]float64, p.Value.Len()), v: make([]float64, p.Value.Len())}
	}
	r := rand.New(rand.NewPCG(2, 2))
	for step := 1; step <= 4; step++ {
		grads := ag.run(t, r)
		require.NoError(t, opt.Step(ag.nodes, params, frozen))
		c1, c2 := 1-math.Pow(0.9, float64(step)), 1-math.Pow(0.999, float64(step))
		for i, p := range params {
			got := values(p)
			if p.Name == "frozen" {
				assert.Equal(t, ref[i].w, got, "a frozen parameter keeps its values")
				continue
			}
			s := ref[i]
			tol := 1e-12
			if p.Value.Dtype() == tensor.Float32 {
				tol = 1e-6
			}
			for j := range got {
				g := grads[i][j] + wd*s.w[j]
				s.m[j] = 0.9*s.m[j] + 0.1*g
				s.v[j] = 0.999*s.v[j] + 0.001*g*g
				want := s.w[j] - lr*(s.m[j]/c1)/(math.Sqrt(s.v[j]/c2)+1e-8)
				if step == 1 {
					require.InDelta(t, s.w[j]-lr*g/(math.Abs(g)+1e-8), want, 1e-12)
				}
				if math.Abs(got[j]-want) > tol {
					t.Fatalf("step %d: %s[%d] = %v, want %v", step, p.Name, j, got[j], want)
				}
				s.w[j] = got[j] // follow the stored (rounded) weights
			}
		}
		// The gradients are zeroed for the next run, frozen ones too.
		for _, n := range ag.nodes {
			gv, err := n.Grad()
			require.NoError(t, err)
			for _, v := range values(&Param{Value: gv.(*tensor.Dense)}) {
				require.Zero(t, v)
			}
		}
	}
	assert.Equal(t, 4, opt.Steps())
}

// Split over one goroutine or several, the update is the same bits.
func TestAdamDoesNotDependOnTheThreads(t *testing.T) {
	run := func(procs int) [][]float64 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		params := adamParams(5)
		ag := newAdamGraph(t, params)
		opt := NewAdam(0.003, 0)
		r := rand.New(rand.NewPCG(6, 6))
		for range 3 {
			ag.run(t, r)
			require.NoError(t, opt.Step(ag.nodes, params, nil))
		}
		out := make([][]float64, len(params))
		for i, p := range params {
			out[i] = values(p)
		}
		return out
	}
	assert.Equal(t, run(1), run(4))
}

// BenchmarkAdamStep is one update of the 2M float32 values of the CamVid
// U-Net, on one goroutine and on GOMAXPROCS (compare the two lines).
func BenchmarkAdamStep(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	v := tensor.New(tensor.WithShape(1965739), tensor.WithBacking(make([]float32, 1965739)))
	for j, d := 0, v.Data().([]float32); j < len(d); j++ {
		d[j] = float32(r.NormFloat64())
	}
	params := []*Param{{Name: "w", Value: v, Trainable: true}}
	ag := newAdamGraph(b, params)
	ag.run(b, r)
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run("procs="+strconv.Itoa(procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			opt := NewAdam(1e-3, 0)
			for b.Loop() {
				if err := opt.Step(ag.nodes, params, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
