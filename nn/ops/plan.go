package ops

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Memory planning for the backward pass.
//
// Gorgonia's tape machine gives every node a register of its own and
// clears them all on Reset, so without help every gradient tensor of a step
// is a buffer of its own for the whole step: for the reference U-Net that is
// as much memory again as the forward activations, although each gradient
// is dead a few ops after it is made (PyTorch frees them as it goes). Ops
// here therefore share buffers between gradients whose lifetimes do not
// overlap, the way a register allocator would.
//
// The plan is made from the graph the first time one of its ops runs: the
// execution order is the tape machine's own (the reverse of gorgonia.Sort,
// which is deterministic), a node's lifetime ends at its last consumer, and
// an op that returns a pointer (an in-place op, a reshape, a view) extends
// the lifetime of what it may alias. Only graphs with a backward pass share
// buffers: there a forward value's buffer goes to a gradient once the
// backward pass has read the value for the last time, and each gradient's
// soon after it is made. (Read values of such a graph with gorgonia.Read,
// as its documentation says: after a run, a node's value may hold anything.)
// Inference graphs keep every value, since callers read model outputs, and
// at times intermediate values, after a run. A value is kept to the end of
// the step when it is the gradient of a leaf (parameters and inputs: the
// values callers ask for), when nothing consumes it, or when a Read does. The ops check as they run that they run in the planned order;
// if not (a machine over part of the graph), the plan is dropped and every
// op keeps a buffer of its own, as before.

// planner is implemented by every op of this package (through opBase).
type planner interface {
	G.Op
	base() *opBase
}

func (b *opBase) base() *opBase { return b }

// apply is G.ApplyOp for this package's ops: it records the node, which
// the memory plan needs.
func apply(op planner, children ...*G.Node) (*G.Node, error) {
	n, err := G.ApplyOp(op, children...)
	if err == nil {
		op.base().node = n
	}
	return n, err
}

// applyGrad is apply for the ops of a backward pass (made in SymDiff).
func applyGrad(op planner, children ...*G.Node) (*G.Node, error) {
	op.base().grad = true
	return apply(op, children...)
}

// inPlacer is an op that overwrites input k when Gorgonia finds it dead.
type inPlacer interface {
	OverwritesInput() int
	ReturnsPtr() bool
}

type memPlan struct {
	mu     sync.Mutex
	g      *G.ExprGraph
	nnodes int
	broken bool
	next   int // the rank expected to run next
	nranks int
	bufs   [][]float64
}

// nodePlan is what the plan says about one node of this package.
type nodePlan struct {
	rank    int  // position among this package's ops in execution order
	inPlace bool // Gorgonia will overwrite the input the op names
	buf     int  // shared buffer index, -1: none (the op keeps its own)
	// Fusions (see fuse): the op applies the ReLU that follows it (relu is
	// that ReLU's op), or a convolution applies the inference-mode batch
	// norm that follows it (foldBN, with its scale and shift nodes), whose
	// op then passes its input on.
	fuseReLU    bool
	relu        *opBase
	foldBN      *bnOp
	gamma, beta *G.Node
}

var plans sync.Mutex // guards making plans

// planMisses counts planned buffers that could not be used (a wrong shape,
// or aliasing an input: a planning mistake the tests look for).
var planMisses atomic.Int64

var debugPlan = os.Getenv("SEGTOOL_DEBUG_PLAN") != ""

// thePlan returns the op's plan, making it for the op's graph if needed;
// nil when the op has no node.
func (b *opBase) thePlan() *memPlan {
	if b.node == nil {
		return nil
	}
	g := b.node.Graph()
	if b.plan != nil && b.plan.g == g && b.plan.nnodes == len(g.AllNodes()) {
		return b.plan
	}
	plans.Lock()
	defer plans.Unlock()
	if b.plan != nil && b.plan.g == g && b.plan.nnodes == len(g.AllNodes()) {
		return b.plan
	}
	makePlan(g)
	return b.plan
}

// makePlan plans g and hands the plan to every op of this package in it.
func makePlan(g *G.ExprGraph) {
	sorted, err := G.Sort(g)
	p := &memPlan{g: g, nnodes: len(g.AllNodes())}
	if err != nil {
		p.broken = true
	}
	order := make([]*G.Node, len(sorted))
	for i, n := range sorted {
		order[len(sorted)-1-i] = n
	}
	pos := make(map[*G.Node]int, len(order))
	for i, n := range order {
		pos[n] = i
	}
	end := len(order)
	isLeaf := func(n *G.Node) bool { return n.Op() == nil || g.From(n.ID()).Len() == 0 }
	children := func(n *G.Node) []*G.Node {
		var cs []*G.Node
		it := g.From(n.ID())
		for it.Next() {
			cs = append(cs, it.Node().(*G.Node))
		}
		return cs
	}
	// last[n]: the last position n's value is read at, as Gorgonia sees it
	// (gorgoLast) and with aliasing (last).
	gorgoLast := make([]int, len(order))
	keep := make([]bool, len(order)) // kept to the end of the step
	isGrad := make([]bool, len(order))
	training := false
	for i, n := range order {
		isGrad[i] = len(n.DerivOf()) > 0
		if pb, ok := n.Op().(planner); ok && pb.base().grad {
			isGrad[i] = true
		}
		training = training || isGrad[i]
	}
	for i, n := range order {
		gorgoLast[i] = i
		it := g.To(n.ID())
		consumers := 0
		for it.Next() {
			c := it.Node().(*G.Node)
			consumers++
			if cp, ok := pos[c]; ok && cp > gorgoLast[i] {
				gorgoLast[i] = cp
			}
			if c.Op() != nil && c.Op().String() == "print" { // a Read
				keep[i] = true
			}
		}
		for _, d := range n.DerivOf() {
			if isLeaf(d) {
				keep[i], gorgoLast[i] = true, end
			}
		}
		if consumers == 0 || !training {
			keep[i] = true
		}
	}
	last := append([]int(nil), gorgoLast...)
	plansByNode := map[*G.Node]*nodePlan{}
	rank := 0
	for i, n := range order {
		if pb, ok := n.Op().(planner); ok && pb.base().node == n {
			// Every op here whose result is a tensor gets it from output,
			// which checks the order; the losses' scalars do not.
			np := &nodePlan{rank: -1, buf: -1}
			if !n.IsScalar() && n.Shape().Dims() > 0 {
				np.rank = rank
				rank++
			}
			if ip, ok := n.Op().(inPlacer); ok && ip.ReturnsPtr() && ip.OverwritesInput() >= 0 {
				cs := children(n)
				k := ip.OverwritesInput()
				if k < len(cs) && cs[k].Op() != nil && gorgoLast[pos[cs[k]]] == i {
					np.inPlace = true
				}
			}
			plansByNode[n] = np
		}
	}
	fusions(g, order, plansByNode)
	// Aliasing, from the last node back so that chains of in-place ops
	// carry the lifetime all the way.
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		if n.Op() == nil || !n.Op().ReturnsPtr() {
			continue
		}
		cs := children(n)
		if np, ok := plansByNode[n]; ok {
			if np.inPlace {
				c := cs[n.Op().(inPlacer).OverwritesInput()]
				last[pos[c]] = max(last[pos[c]], last[i])
			}
			continue
		}
		for _, c := range cs { // another package's op: it may alias any input
			last[pos[c]] = max(last[pos[c]], last[i])
		}
	}
	// Buffers for gradients, first come first served: a buffer is free
	// again after the last read of the node holding it.
	type active struct{ buf, until int }
	var busy []active
	var free []int
	var sizes []int
	for i, n := range order {
		np, ok := plansByNode[n]
		if !ok || np.inPlace || keep[i] || p.broken {
			continue
		}
		kept := busy[:0]
		for _, a := range busy {
			if a.until < i {
				free = append(free, a.buf)
			} else {
				kept = append(kept, a)
			}
		}
		busy = kept
		size := n.Shape().TotalSize() * int(n.Dtype().Size())
		best := -1 // the smallest free buffer that fits, else the largest
		for j, b := range free {
			switch {
			case best < 0:
				best = j
			case sizes[b] >= size:
				if sizes[free[best]] < size || sizes[b] < sizes[free[best]] {
					best = j
				}
			case sizes[free[best]] < size && sizes[b] > sizes[free[best]]:
				best = j
			}
		}
		var b int
		if best >= 0 {
			b = free[best]
			free = append(free[:best], free[best+1:]...)
			sizes[b] = max(sizes[b], size)
		} else {
			b = len(sizes)
			sizes = append(sizes, size)
		}
		np.buf = b
		busy = append(busy, active{b, last[i]})
	}
	if debugPlan {
		var tot, cnt, kept, keptBytes, inpl int
		for i, n := range order {
			if np, ok := plansByNode[n]; ok {
				sz := n.Shape().TotalSize() * int(n.Dtype().Size())
				switch {
				case np.inPlace:
					inpl++
				case np.buf >= 0:
					cnt++
				default:
					kept++
					keptBytes += sz
					if len(n.DerivOf()) > 0 && sz > 1<<20 {
						fmt.Printf("  kept grad %s %v last=%d keep=%v\n", n.Op(), n.Shape(), last[i], keep[i])
					}
				}
			}
		}
		for _, s := range sizes {
			tot += s
		}
		for i, n := range order {
			if np, ok := plansByNode[n]; ok && np.buf >= 0 {
				fmt.Printf("  %3d..%3d buf %d %s %v\n", i, last[i], np.buf, n.Op(), n.Shape())
			}
		}
		fmt.Printf("plan: %d nodes, %d shared over %d buffers (%.1f MB), %d kept (%.1f MB), %d in place\n", len(order), cnt, len(sizes), float64(tot)/1e6, kept, float64(keptBytes)/1e6, inpl)
	}
	p.bufs = make([][]float64, len(sizes))
	for i, s := range sizes {
		p.bufs[i] = make([]float64, (s+7)/8)
	}
	p.nranks = rank
	for n, np := range plansByNode {
		b := n.Op().(planner).base()
		b.plan, b.np = p, np
	}
}

// fusions finds a ReLU that overwrites the only output of a convolution or
// batch norm: the producer applies the ReLU on its way out (oneDNN as it
// writes the convolution's output, batch norm in its normalising pass), and
// the ReLU has nothing left to do. Both ways give the same bits, so a fused
// call and an unfused one agree exactly.
//
// The producer tells the ReLU per call whether it did the work
// (opBase.fusedIn), and the ReLU passes its input on only then: if anything
// runs unplanned, the work is done twice rather than not at all.
func fusions(g *G.ExprGraph, order []*G.Node, plans map[*G.Node]*nodePlan) {
	for _, n := range order {
		switch n.Op().(type) {
		case *convOp, *bnOp:
		default:
			continue
		}
		np := plans[n]
		it := g.To(n.ID())
		if np == nil || it.Len() != 1 || !it.Next() {
			continue
		}
		c := it.Node().(*G.Node)
		if r, ok := c.Op().(*reluOp); ok && plans[c] != nil && plans[c].inPlace {
			np.fuseReLU, np.relu = true, r.base()
		}
	}
}

// visit checks that the op runs in the planned order; false drops the plan.
func (p *memPlan) visit(np *nodePlan) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken {
		return false
	}
	if np.rank == 0 {
		p.next = 0
	}
	if np.rank != p.next {
		p.broken = true
		return false
	}
	p.next++
	return true
}

// fuse reports whether the op applies the ReLU that follows it in this
// call (the plan is in force and names the fusion). Valid after output.
func (b *opBase) fuse() bool {
	return b.active && b.np != nil && b.np.fuseReLU
}

// passOn tells the ReLU after this op whether this call applied it.
func (b *opBase) passOn(fused bool) {
	if b.np != nil && b.np.relu != nil {
		b.np.relu.fusedIn = fused
	}
}

// output returns the tensor an op writes its result into: input k itself
// when Gorgonia overwrites it (k >= 0; see inPlace), a shared buffer when
// the plan gives the node one, otherwise the op's own buffer (outBuf).
func (b *opBase) output(prealloc G.Value, in []G.Value, k int, dt tensor.Dtype, shape tensor.Shape) *tensor.Dense {
	p := b.thePlan()
	b.active = p != nil && b.np != nil && b.np.rank >= 0 && p.visit(b.np)
	if !b.active {
		if k >= 0 {
			if y := inPlace(prealloc, in, k); y != nil {
				return y
			}
		}
		return b.outBuf(prealloc, dt, shape, in...)
	}
	if b.np.inPlace {
		if y := inPlace(prealloc, in, k); y != nil {
			return y
		}
		return b.outBuf(prealloc, dt, shape, in...)
	}
	// Not planned in place: even if Gorgonia offers input k, writing there
	// would outlive what the plan gave that buffer, so the op writes into
	// its planned or own buffer instead (Gorgonia takes whatever is
	// returned).
	if b.np.buf >= 0 {
		if t := b.planned(p, dt, shape, in); t != nil {
			return t
		}
		planMisses.Add(1)
	}
	return b.outBuf(nil, dt, shape, in...)
}

// planned is the node's shared buffer as a tensor of dt and shape.
func (b *opBase) planned(p *memPlan, dt tensor.Dtype, shape tensor.Shape, in []G.Value) *tensor.Dense {
	buf := p.bufs[b.np.buf]
	if b.ptensor == nil || b.ptensor.Dtype() != dt || !b.ptensor.Shape().Eq(shape) || b.pbuf != &buf[0] {
		n := shape.TotalSize()
		if n*int(dt.Size()) > 8*len(buf) {
			return nil
		}
		var backing any
		switch dt {
		case tensor.Float32:
			backing = unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), n)
		case tensor.Float64:
			backing = buf[:n]
		default:
			return nil
		}
		b.ptensor = tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(backing))
		b.pbuf = &buf[0]
		b.buf = nil // the op's own buffer is no longer needed
	}
	return fits(b.ptensor, dt, shape, in)
}
