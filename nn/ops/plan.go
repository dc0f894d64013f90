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
// the lifetime of what it may alias. In a graph with a backward pass a
// forward value's buffer goes to a gradient once the backward pass has read
// the value for the last time, and each gradient's soon after it is made; in
// an inference graph the intermediate activations (4-d values consumed in
// the graph) share buffers the same way. A value is kept to the end of the
// step when it is the gradient of a leaf (parameters and inputs: the values
// callers ask for), when nothing consumes it (outputs), when a Read does,
// and, at inference, when it is not 4-d (a latent code, say). Read any other
// value with gorgonia.Read, as Gorgonia's documentation says: after a run, a
// node's value may hold anything. The ops check as they run that they run in the planned order;
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
	// The op applies the ReLU that follows it (relu is that ReLU's op; see
	// fusions).
	fuseReLU bool
	relu     *opBase
	// blkOut: the op writes its output in oneDNN's blocked layout; refs:
	// the consumers it tells, every call, which layout its output is in
	// (see blocking).
	blkOut bool
	refs   []cref
}

// cref is input in of a consumer.
type cref struct {
	op *opBase
	in int
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
		// Inference graphs share the buffers of intermediate activations
		// (4-d) only: latent codes and the like, which callers read, stay.
		if consumers == 0 || (!training && n.Shape().Dims() != 4) {
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
	visible := make([]bool, len(order)) // a caller may read it after a run
	for i, n := range order {
		visible[i] = g.To(n.ID()).Len() == 0
		if keep[i] && training { // a Read, a gradient of a leaf, or an output
			visible[i] = true
		}
		it := g.To(n.ID())
		for it.Next() {
			if c := it.Node().(*G.Node); c.Op() != nil && c.Op().String() == "print" {
				visible[i] = true
			}
		}
		for _, d := range n.DerivOf() {
			if isLeaf(d) {
				visible[i] = true
			}
		}
	}
	blocking(g, order, pos, visible, plansByNode, children)
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
		b.blk = [4]bool{}
	}
}

// blocking decides which activations stay in oneDNN's blocked layout
// (nChw16c) between ops, so that neither the op writing them nor the ops
// reading them reorder to and from NCHW: about a quarter of a convolution's
// time here. A convolution's output (forward, or its input gradient) may be
// blocked when every op that reads it, directly or through ReLU and its
// gradient (which do not care about the layout), is a convolution that can
// take it so, or one of those (or batch norm, forward or backward); when its channels are a multiple of 16
// and oneDNN uses that very layout for each of those calls; and when no
// caller may read it (it is not an output, a gradient of a leaf, nor read by
// gorgonia.Read). In the U-Net that is the activation inside each block
// (conv, ReLU, conv) and its gradient.
//
// Each op that may write a blocked output tells its consumers per call
// which layout it wrote (opBase.blk), and they read it so; an op running
// unplanned writes NCHW and says so.
func blocking(g *G.ExprGraph, order []*G.Node, pos map[*G.Node]int, visible []bool, plans map[*G.Node]*nodePlan, children func(*G.Node) []*G.Node) {
	can := map[*G.Node]int{} // the flags oneDNN takes, per conv node
	canBlock := func(n *G.Node) int {
		if f, ok := can[n]; ok {
			return f
		}
		f := 0
		if n.Dtype() == tensor.Float32 {
			var err error
			switch op := n.Op().(type) {
			case *convOp:
				f, err = dnnlCanBlock(kindFwd, op.g, plans[n] != nil && plans[n].fuseReLU, true)
			case *convDataGradOp:
				f, err = dnnlCanBlock(kindBwdData, op.g, false, false)
			case *convWeightGradOp:
				f, err = dnnlCanBlock(kindBwdWeights, op.g, false, true)
			}
			if err != nil {
				f = 0
			}
		}
		can[n] = f
		return f
	}
	// accepts: can input k of consumer c be blocked?
	accepts := func(c *G.Node, k int) bool {
		switch c.Op().(type) {
		case *convOp:
			return k == 0 && canBlock(c)&blkIn != 0
		case *convDataGradOp:
			return k == 1 && canBlock(c)&blkIn != 0
		case *convWeightGradOp:
			return (k == 0 && canBlock(c)&blkIn != 0) || (k == 1 && canBlock(c)&blkDy != 0)
		case *reluOp:
			return k == 0
		case *reluGradOp:
			return k == 0 || k == 1
		case *bnOp:
			return k == 0 && c.Shape()[1]%16 == 0 && c.Dtype() == tensor.Float32
		case *bnGradOp:
			return (k == 0 || k == 2) && c.Shape()[1]%16 == 0 && c.Dtype() == tensor.Float32
		case *bnParamGradOp: // reads no values, only runs after its input
			return k == 0
		}
		return false
	}
	// passes: does the consumer's output take input k's layout?
	passes := func(c *G.Node, k int) bool {
		switch c.Op().(type) {
		case *reluOp, *bnOp:
			return k == 0
		case *reluGradOp:
			return k == 1
		case *bnGradOp:
			return k == 2
		}
		return false
	}
	consumers := func(n *G.Node) []cref {
		var out []cref
		it := g.To(n.ID())
		for it.Next() {
			c := it.Node().(*G.Node)
			pb, ok := c.Op().(planner)
			if !ok || plans[c] == nil {
				continue
			}
			for k, ch := range children(c) {
				if ch == n {
					out = append(out, cref{pb.base(), k})
				}
			}
		}
		return out
	}
	for _, n := range order {
		np := plans[n]
		if np == nil {
			continue
		}
		switch n.Op().(type) {
		case *convOp, *convDataGradOp, *reluOp, *reluGradOp, *bnOp, *bnGradOp:
			np.refs = consumers(n)
		default:
			continue
		}
		var writes bool
		switch n.Op().(type) {
		case *convOp, *convDataGradOp:
			writes = n.Shape()[1]%16 == 0 && canBlock(n)&blkOut != 0
		}
		if !writes {
			continue
		}
		ok := true
		stack, seen := []*G.Node{n}, map[*G.Node]bool{n: true}
		for len(stack) > 0 && ok {
			m := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if visible[pos[m]] {
				ok = false
				break
			}
			it := g.To(m.ID())
			for it.Next() && ok {
				c := it.Node().(*G.Node)
				for k, ch := range children(c) {
					if ch != m {
						continue
					}
					if _, ours := c.Op().(planner); !ours || plans[c] == nil || !accepts(c, k) {
						ok = false
						break
					}
					if passes(c, k) && !seen[c] {
						seen[c] = true
						stack = append(stack, c)
					}
				}
			}
		}
		np.blkOut = ok
		if debugPlan && ok {
			fmt.Printf("  blocked: %s %v\n", n.Op(), n.Shape())
		}
	}
}

// blocked reports whether the op writes a blocked output this call.
func (b *opBase) blocked() bool { return b.active && b.np != nil && b.np.blkOut }

// tellLayout tells the op's consumers which layout its output is in.
func (b *opBase) tellLayout(blocked bool) {
	if b.np == nil {
		return
	}
	for _, r := range b.np.refs {
		r.op.blk[r.in] = blocked
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
