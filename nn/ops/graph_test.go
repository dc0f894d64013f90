package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// A small U-Net-shaped graph (conv, batch norm, ReLU, pool, upsample,
// concatenated skip, 1x1 head, cross-entropy) run through the tape machine
// in float32 (oneDNN, in-place ReLU and batch-norm gradients, the stashed
// softmax) and in float64 (the Go kernels the gradient tests check): loss
// and every gradient agree, over two steps so that buffers kept from the
// first step are reused correctly in the second.
func TestFloat32GraphMatchesFloat64(t *testing.T) {
	type result struct {
		loss  float64
		grads map[string][]float64
	}
	r := rand.New(rand.NewPCG(51, 52))
	const n, h, w = 2, 8, 12
	vals := map[string][]float64{
		"x": randSlice(r, n*3*h*w), "w1": randSlice(r, 8*3*9), "b1": randSlice(r, 8), "g1": randSlice(r, 8), "be1": randSlice(r, 8),
		"w2": randSlice(r, 16*8*9), "b2": randSlice(r, 16), "w3": randSlice(r, 8*24*9), "b3": randSlice(r, 8),
		"wh": randSlice(r, 4*8), "bh": randSlice(r, 4),
	}
	labels := make([]float64, n*h*w)
	for i := range labels {
		labels[i] = float64(r.IntN(5)) // 4 is ignored
	}
	shapes := map[string][]int{"x": {n, 3, h, w}, "w1": {8, 3, 3, 3}, "b1": {8}, "g1": {8}, "be1": {8},
		"w2": {16, 8, 3, 3}, "b2": {16}, "w3": {8, 24, 3, 3}, "b3": {8}, "wh": {4, 8, 1, 1}, "bh": {4}}
	params := []string{"w1", "b1", "g1", "be1", "w2", "b2", "w3", "b3", "wh", "bh"}
	run := func(dt tensor.Dtype) []result {
		g := G.NewGraph()
		node := func(name string, v []float64, shape []int) *G.Node {
			var t *tensor.Dense
			if dt == tensor.Float32 {
				t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(to32(v)))
			} else {
				t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), v...)))
			}
			return G.NewTensor(g, dt, len(shape), G.WithShape(shape...), G.WithValue(t), G.WithName(name))
		}
		nodes := map[string]*G.Node{}
		for k, v := range vals {
			nodes[k] = node(k, v, shapes[k])
		}
		lab := node("labels", labels, []int{n, h, w})
		st := &BNState{Momentum: 0.1, Eps: 1e-5}
		if dt == tensor.Float32 {
			st.RunningMean, st.RunningVar = tensor.New(tensor.WithShape(8), tensor.WithBacking(make([]float32, 8))), tensor.New(tensor.WithShape(8), tensor.WithBacking([]float32{1, 1, 1, 1, 1, 1, 1, 1}))
		} else {
			st.RunningMean, st.RunningVar = tensor.New(tensor.WithShape(8), tensor.WithBacking(make([]float64, 8))), tensor.New(tensor.WithShape(8), tensor.WithBacking([]float64{1, 1, 1, 1, 1, 1, 1, 1}))
		}
		must := func(n *G.Node, err error) *G.Node {
			require.NoError(t, err)
			return n
		}
		c1 := must(Conv2D(nodes["x"], nodes["w1"], nodes["b1"], 1, false))
		bn := must(BatchNorm(c1, nodes["g1"], nodes["be1"], st, true))
		skip := must(ReLU(bn))
		down := must(ReLU(must(Conv2D(must(MaxPool2(skip)), nodes["w2"], nodes["b2"], 1, true))))
		cat := must(ConcatChannels(must(Upsample2(down)), skip))
		top := must(ReLU(must(Conv2D(cat, nodes["w3"], nodes["b3"], 1, true))))
		logits := must(Conv2D(top, nodes["wh"], nodes["bh"], 0, true))
		loss := must(SegLoss(logits, lab, SegLossOptions{Kind: CrossEntropy, Ignore: 4}))
		var wrt G.Nodes
		for _, p := range params {
			wrt = append(wrt, nodes[p])
		}
		_, err := G.Grad(loss, wrt...)
		require.NoError(t, err)
		m := G.NewTapeMachine(g, G.BindDualValues(wrt...))
		defer m.Close()
		var out []result
		for step := 0; step < 2; step++ {
			require.NoError(t, m.RunAll())
			lv, err := scalar(loss.Value())
			require.NoError(t, err)
			res := result{loss: lv, grads: map[string][]float64{}}
			for _, p := range params {
				gv, err := nodes[p].Grad()
				require.NoError(t, err)
				switch d := gv.Data().(type) {
				case []float32:
					for _, v := range d {
						res.grads[p] = append(res.grads[p], float64(v))
					}
					clear(d)
				case []float64:
					res.grads[p] = append(res.grads[p], d...)
					clear(d)
				}
			}
			if dt == tensor.Float32 && step == 0 {
				// ReLU wrote over the batch norm's output: one buffer, not two
				require.Equal(t, skip.Value().Uintptr(), bn.Value().Uintptr(), "in-place ReLU")
			}
			out = append(out, res)
			m.Reset()
		}
		// the gradients shared buffers, in the planned order, without a miss
		p := logits.Op().(planner).base().plan
		require.NotNil(t, p)
		require.False(t, p.broken, "the ops ran out of the planned order")
		require.Less(t, len(p.bufs), 10, "buffers shared between gradients")
		require.Zero(t, planMisses.Load())
		// ReLUs fused into the convolution and the batch norm before them
		for _, n := range []*G.Node{top, skip} {
			r := n.Op().(planner).base()
			require.True(t, r.np.inPlace, "ReLU in place")
		}
		require.True(t, bn.Op().(planner).base().np.fuseReLU, "batch norm applies the ReLU")
		return out
	}
	want, got := run(tensor.Float64), run(tensor.Float32)
	for step := range want {
		require.InDelta(t, want[step].loss, got[step].loss, 1e-5*want[step].loss, "step %d loss", step)
		for _, p := range params {
			if p == "b1" {
				// batch norm cancels the bias before it: its gradient is 0
				// up to rounding
				require.InDeltaSlice(t, want[step].grads[p], got[step].grads[p], 1e-5)
				continue
			}
			g32 := make([]float32, len(got[step].grads[p]))
			for i, v := range got[step].grads[p] {
				g32[i] = float32(v)
			}
			relClose(t, p, want[step].grads[p], g32, 2e-4)
		}
	}
}

func TestSegLossReportsBadLabels(t *testing.T) {
	g := G.NewGraph()
	x := G.NewTensor(g, tensor.Float32, 4, G.WithShape(1, 2, 1, 2), G.WithValue(tensor.New(tensor.WithShape(1, 2, 1, 2), tensor.WithBacking([]float32{1, 2, 3, 4}))))
	y := G.NewTensor(g, tensor.Float32, 3, G.WithShape(1, 1, 2), G.WithValue(tensor.New(tensor.WithShape(1, 1, 2), tensor.WithBacking([]float32{0, 7}))))
	_, err := SegLoss(x, y, SegLossOptions{Kind: CrossEntropy, Ignore: -1})
	require.NoError(t, err)
	m := G.NewTapeMachine(g)
	defer m.Close()
	require.ErrorContains(t, m.RunAll(), "label 7 is not a class")
}

// A machine over part of a graph runs the ops out of the planned order: the
// plan must notice and step aside, and the results stay right.
func TestPlanStepsAsideForASubgraph(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	g := G.NewGraph()
	mk := func(name string, shape ...int) *G.Node {
		v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(randSlice(r, tensor.Shape(shape).TotalSize())))
		return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithValue(v), G.WithName(name))
	}
	x, w, b := mk("x", 2, 3, 6, 6), mk("w", 4, 3, 3, 3), mk("b", 4)
	h, err := ReLU(G.Must(Conv2D(x, w, b, 1, false)))
	require.NoError(t, err)
	y := G.Must(Upsample2(G.Must(MaxPool2(h))))
	cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, y))))
	_, err = G.Grad(cost, w, b)
	require.NoError(t, err)
	full := G.NewTapeMachine(g, G.BindDualValues(w, b))
	defer full.Close()
	require.NoError(t, full.RunAll())
	want := append([]float64(nil), h.Value().Data().([]float64)...)
	gw, _ := w.Grad()
	wantGrad := append([]float64(nil), gw.Data().([]float64)...)
	full.Reset()

	sub := G.NewTapeMachine(g.SubgraphRoots(h))
	defer sub.Close()
	require.NoError(t, sub.RunAll())
	require.Equal(t, want, h.Value().Data().([]float64))
	sub.Reset()

	clear(gw.Data().([]float64))
	require.NoError(t, full.RunAll())
	gw, _ = w.Grad()
	require.InDeltaSlice(t, wantGrad, gw.Data().([]float64), 1e-12)
}

// Activations inside a block (conv, ReLU, conv) stay in oneDNN's blocked
// layout in float32, forward and backward; the results are those of the
// float64 graph, which never blocks.
func TestBlockedActivationsMatchFloat64(t *testing.T) {
	for _, norm := range []string{"none", "train", "eval"} {
		t.Run(norm, func(t *testing.T) { blockedMatch(t, norm) })
	}
}

func blockedMatch(t *testing.T, norm string) {
	r := rand.New(rand.NewPCG(71, 72))
	vals := map[string][]float64{"x": randSlice(r, 2*16*8*8), "w1": randSlice(r, 16*16*9), "b1": randSlice(r, 16),
		"w2": randSlice(r, 32*16*9), "b2": randSlice(r, 32), "w3": randSlice(r, 32*32*9), "b3": randSlice(r, 32)}
	shapes := map[string][]int{"x": {2, 16, 8, 8}, "w1": {16, 16, 3, 3}, "b1": {16}, "w2": {32, 16, 3, 3}, "b2": {32},
		"w3": {32, 32, 3, 3}, "b3": {32}}
	params := []string{"x", "w1", "b1", "w2", "b2", "w3", "b3"}
	run := func(dt tensor.Dtype) (float64, map[string][]float64, []*G.Node) {
		g := G.NewGraph()
		nodes := map[string]*G.Node{}
		for _, k := range params {
			var v *tensor.Dense
			if dt == tensor.Float32 {
				v = tensor.New(tensor.WithShape(shapes[k]...), tensor.WithBacking(to32(vals[k])))
			} else {
				v = tensor.New(tensor.WithShape(shapes[k]...), tensor.WithBacking(append([]float64(nil), vals[k]...)))
			}
			nodes[k] = G.NewTensor(g, dt, len(shapes[k]), G.WithShape(shapes[k]...), G.WithValue(v), G.WithName(k))
		}
		c1 := G.Must(Conv2D(nodes["x"], nodes["w1"], nodes["b1"], 1, true))
		h1 := c1
		if norm != "none" {
			one := func(v float64) *G.Node {
				b := make([]float64, 16)
				for i := range b {
					b[i] = v + 0.1*float64(i)
				}
				var tv *tensor.Dense
				if dt == tensor.Float32 {
					tv = tensor.New(tensor.WithShape(16), tensor.WithBacking(to32(b)))
				} else {
					tv = tensor.New(tensor.WithShape(16), tensor.WithBacking(b))
				}
				return G.NewTensor(g, dt, 1, G.WithShape(16), G.WithValue(tv))
			}
			rmv, rvv := make([]float64, 16), make([]float64, 16)
			for i := range rvv {
				rmv[i], rvv[i] = 0.3*float64(i%5)-0.5, 0.5+0.2*float64(i)
			}
			st := &BNState{Momentum: 0.1, Eps: 1e-5}
			if dt == tensor.Float32 {
				st.RunningMean, st.RunningVar = tensor.New(tensor.WithShape(16), tensor.WithBacking(to32(rmv))), tensor.New(tensor.WithShape(16), tensor.WithBacking(to32(rvv)))
			} else {
				st.RunningMean, st.RunningVar = tensor.New(tensor.WithShape(16), tensor.WithBacking(rmv)), tensor.New(tensor.WithShape(16), tensor.WithBacking(rvv))
			}
			h1 = G.Must(BatchNorm(c1, one(1), one(0.2), st, norm == "train"))
		}
		c2 := G.Must(Conv2D(G.Must(ReLU(h1)), nodes["w2"], nodes["b2"], 1, true))
		c3 := G.Must(Conv2D(G.Must(ReLU(c2)), nodes["w3"], nodes["b3"], 1, true))
		y := G.Must(ReLU(c3))
		wv := randSlice(rand.New(rand.NewPCG(1, 2)), 2*32*8*8)
		var wt *tensor.Dense
		if dt == tensor.Float32 {
			wt = tensor.New(tensor.WithShape(2, 32, 8, 8), tensor.WithBacking(to32(wv)))
		} else {
			wt = tensor.New(tensor.WithShape(2, 32, 8, 8), tensor.WithBacking(wv))
		}
		cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, G.NewTensor(g, dt, 4, G.WithShape(2, 32, 8, 8), G.WithValue(wt), G.WithName("wt"))))))
		var wrt G.Nodes
		for _, k := range params {
			wrt = append(wrt, nodes[k])
		}
		_, err := G.Grad(cost, wrt...)
		require.NoError(t, err)
		m := G.NewTapeMachine(g, G.BindDualValues(wrt...))
		defer m.Close()
		var loss float64
		grads := map[string][]float64{}
		for step := 0; step < 2; step++ {
			require.NoError(t, m.RunAll())
			loss, err = scalar(cost.Value())
			require.NoError(t, err)
			for _, k := range params {
				gv, err := nodes[k].Grad()
				require.NoError(t, err)
				grads[k] = grads[k][:0]
				switch d := gv.Data().(type) {
				case []float32:
					for _, v := range d {
						grads[k] = append(grads[k], float64(v))
					}
					clear(d)
				case []float64:
					grads[k] = append(grads[k], d...)
					clear(d)
				}
			}
			m.Reset()
		}
		return loss, grads, []*G.Node{c1, c2}
	}
	want, wg, _ := run(tensor.Float64)
	got, gg, convs := run(tensor.Float32)
	for _, c := range convs {
		require.True(t, c.Op().(planner).base().np.blkOut, "%v keeps its output blocked", c)
	}
	require.InDelta(t, want, got, 1e-4*max(1, math.Abs(want)))
	for _, k := range params {
		if k == "b1" && norm == "train" {
			continue // batch norm cancels the bias before it: 0 up to rounding
		}
		g32 := make([]float32, len(gg[k]))
		for i, v := range gg[k] {
			g32[i] = float32(v)
		}
		relClose(t, k, wg[k], g32, 1e-4)
	}
}
