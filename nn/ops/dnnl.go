package ops

/*
#cgo CFLAGS: -O2 -std=gnu11 -fopenmp-simd
#cgo LDFLAGS: -ldnnl -lgomp
#include "dnnl.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The float32 convolutions run on oneDNN (the kernel library PyTorch uses on
// CPUs), called through the small C layer in dnnl.c. How it is called comes
// from measuring it on these machines (DESIGN.md):
//
//   - oneDNN picks its own blocked memory formats; dnnl.c reorders the
//     caller's NCHW tensors into scratch buffers and back, so Gorgonia's
//     tensors never change layout.
//   - The batch is split into slices and each slice is one single-threaded
//     oneDNN call on one of a fixed set of worker threads (one per core),
//     each locked to its OS thread and owning a dnnl.c context. Workers take
//     slices as they come free, so a core lost for a while to another
//     process slows a convolution down by its share, instead of stalling it
//     at a barrier the way a parallel region of OpenMP threads (which spin,
//     then sleep) does. With one OpenMP thread per call no OpenMP thread
//     pool exists at all: nothing spins beside Go's own goroutines.
//   - Batches too small to split (fewer images than workers) run as one
//     call on the first worker with oneDNN's own OpenMP threading; the
//     thread count is set on that thread through omp_set_num_threads
//     (OMP_NUM_THREADS is read when the library loads, before main), and
//     because it is always the same locked thread only one OpenMP pool is
//     ever made. Its threads sleep when idle (never OMP_WAIT_POLICY=active).
//   - Backward-weights slices each write a partial gradient, summed in slice
//     order: results do not depend on which worker took which slice, so a
//     resumed run still reproduces an uninterrupted one bit for bit.
//   - The cgo pointer rules hold: Go slices are passed as call arguments,
//     bound as memory handles and unbound before the call returns.

// dnnlPool is the set of worker threads; one op call at a time uses it.
type dnnlPool struct {
	once    sync.Once
	err     error
	mu      sync.Mutex
	workers []*dnnlWorker
	// partial weight and bias gradients of the slices after the first
	partW, partB []float32
}

type dnnlWorker struct {
	ctx  *C.sg_ctx
	jobs chan *dnnlJob
}

// dnnlJob is one op call's work: slices 0..n-1, taken in turn by the
// workers it was given to.
type dnnlJob struct {
	n    int
	next atomic.Int64
	fn   func(ctx *C.sg_ctx, i int) C.int
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

var dnnl dnnlPool

// sliceMode is for experiments (SEGTOOL_DNNL_SLICES): 0 runs every
// convolution as one call with oneDNN's OpenMP threads, 1 gives each worker
// one slice; unset, the default below.
var sliceMode = func() int {
	if v, err := strconv.Atoi(os.Getenv("SEGTOOL_DNNL_SLICES")); err == nil {
		return v
	}
	return -1
}()

// DNNLThreads is the number of worker threads for oneDNN: SEGTOOL_THREADS if
// set, otherwise GOMAXPROCS when the first convolution runs.
func DNNLThreads() int {
	if v, err := strconv.Atoi(os.Getenv("SEGTOOL_THREADS")); err == nil && v > 0 {
		return v
	}
	return runtime.GOMAXPROCS(0)
}

func (p *dnnlPool) start(threads int) {
	if rc := C.sg_dnnl_init(); rc != 0 {
		p.err = errors.New(C.GoString(C.sg_dnnl_init_error()))
		return
	}
	for i := 0; i < threads; i++ {
		w := &dnnlWorker{jobs: make(chan *dnnlJob)}
		ready := make(chan bool)
		go w.loop(ready)
		if !<-ready {
			p.err = errors.New("oneDNN: cannot create a context (out of memory)")
			return
		}
		p.workers = append(p.workers, w)
	}
}

func (w *dnnlWorker) loop(ready chan<- bool) {
	runtime.LockOSThread() // for the life of the process
	w.ctx = C.sg_ctx_new()
	ready <- w.ctx != nil
	for j := range w.jobs {
		for {
			i := int(j.next.Add(1) - 1)
			if i >= j.n {
				break
			}
			if rc := j.fn(w.ctx, i); rc != 0 {
				j.fail(fmt.Errorf("%s", C.GoString(C.sg_ctx_error(w.ctx))))
			}
		}
		j.wg.Done()
	}
}

func (j *dnnlJob) fail(err error) {
	j.mu.Lock()
	if j.err == nil {
		j.err = err
	}
	j.mu.Unlock()
}

func (p *dnnlPool) init() error {
	p.once.Do(func() { p.start(DNNLThreads()) })
	return p.err
}

// SetDNNLThreads sets how many worker threads the convolutions use. It must
// come before the first convolution (or ask for the number already in use).
func SetDNNLThreads(n int) error {
	if n < 1 {
		return fmt.Errorf("oneDNN threads: %d is not a thread count", n)
	}
	dnnl.once.Do(func() { dnnl.start(n) })
	if dnnl.err != nil {
		return dnnl.err
	}
	if len(dnnl.workers) != n {
		return fmt.Errorf("oneDNN threads: already running with %d, cannot change to %d", len(dnnl.workers), n)
	}
	return nil
}

// run runs fn for slices 0..n-1 on up to n workers and waits. The caller
// holds p.mu.
func (p *dnnlPool) run(n int, fn func(ctx *C.sg_ctx, i int) C.int) error {
	j := &dnnlJob{n: n, fn: fn}
	nw := min(n, len(p.workers))
	j.wg.Add(nw)
	for _, w := range p.workers[:nw] {
		w.jobs <- j
	}
	j.wg.Wait()
	return j.err
}

// each runs fn once on every worker and waits. The caller holds p.mu.
func (p *dnnlPool) each(fn func(ctx *C.sg_ctx) C.int) error {
	jobs := make([]*dnnlJob, len(p.workers))
	for i, w := range p.workers {
		jobs[i] = &dnnlJob{n: 1, fn: func(ctx *C.sg_ctx, _ int) C.int { return fn(ctx) }}
		jobs[i].wg.Add(1)
		w.jobs <- jobs[i]
	}
	var err error
	for _, j := range jobs {
		j.wg.Wait()
		err = errors.Join(err, j.err)
	}
	return err
}

// first runs fn once on the first worker, which owns the OpenMP pool.
func (p *dnnlPool) first(fn func(ctx *C.sg_ctx) C.int) error {
	return p.run(1, func(ctx *C.sg_ctx, _ int) C.int { return fn(ctx) })
}

// plan splits a batch of n images of hw output pixels into slices for t
// workers: 2t slices for large images when there are enough of them (so
// that a worker that falls behind leaves the rest to the others), t slices
// for small ones (at 32x32 and below a call needs more images to run at
// full speed: 4 images a call are 1.3-1.8x faster than 2 there, measured),
// otherwise one slice run with t OpenMP threads. It returns the slice
// boundaries and the OpenMP threads of each call.
func plan(n, hw, t int) (bounds []int, nthr int) {
	slices := 1
	switch {
	case t <= 1:
	case sliceMode == 1: // experiments: one slice per worker
		if n >= t {
			slices = t
		}
	case sliceMode == 0: // experiments: oneDNN's own threads, whole batch
	case n >= 2*t && hw >= 64*64:
		slices = 2 * t
	case n >= 2*t || (n >= t && n%t == 0):
		slices = t
	}
	if slices == 1 {
		return []int{0, n}, max(t, 1)
	}
	bounds = make([]int, slices+1)
	for i := range bounds {
		bounds[i] = i * n / slices
	}
	return bounds, 1
}

func fptr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

// cg holds a geometry as C ints, for a slice of sub images.
type cg struct{ n, c, h, w, o, k, pad C.int }

func cgeom(g convGeom, sub int) cg {
	return cg{C.int(sub), C.int(g.c), C.int(g.h), C.int(g.w), C.int(g.o), C.int(g.k), C.int(g.pad)}
}

// uniform tells whether all slices have the same number of images (then
// one weights reorder serves them all).
func uniform(bounds []int) bool {
	for i := 2; i < len(bounds); i++ {
		if bounds[i]-bounds[i-1] != bounds[1]-bounds[0] {
			return false
		}
	}
	return true
}

// withWeights runs a forward or backward-data convolution: the weights are
// reordered once into oneDNN's layout, then the slices run.
func withWeights(op string, kind C.int, g convGeom, relu bool, w []float32, slice func(ctx *C.sg_ctx, nthr C.int, lo, hi int) C.int) error {
	if err := dnnl.init(); err != nil {
		return err
	}
	dnnl.mu.Lock()
	defer dnnl.mu.Unlock()
	bounds, nthr := plan(g.n, g.oh()*g.ow(), len(dnnl.workers))
	groups := [][]int{bounds}
	if !uniform(bounds) { // the last slice is smaller: its own weights layout call
		groups = [][]int{bounds[:len(bounds)-1], bounds[len(bounds)-2:]}
	}
	for _, b := range groups {
		sub := b[1] - b[0]
		c := cgeom(g, sub)
		if err := dnnl.first(func(ctx *C.sg_ctx) C.int {
			return C.sg_conv_weights(ctx, kind, C.int(nthr), c.n, c.c, c.h, c.w, c.o, c.k, c.pad, cbool(relu), fptr(w))
		}); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := dnnl.run(len(b)-1, func(ctx *C.sg_ctx, i int) C.int {
			return slice(ctx, C.int(nthr), b[i], b[i+1])
		}); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Blocked flags: which activations of a call are in oneDNN's nChw16c layout
// instead of NCHW (see dnnl.h and blocked in plan.go).
const (
	blkIn  = C.SG_BLK_IN
	blkOut = C.SG_BLK_OUT
	blkDy  = C.SG_BLK_DY
)

// The kinds of convolution call.
const (
	kindFwd        = C.SG_FWD
	kindBwdData    = C.SG_BWD_DATA
	kindBwdWeights = C.SG_BWD_WEIGHTS
)

// dnnlConvForward writes conv(x, w) + b into y, and applies ReLU to it when
// relu is set.
func dnnlConvForward(g convGeom, x, w, b, y []float32, relu bool, blocked int) error {
	in, out := g.c*g.h*g.w, g.o*g.oh()*g.ow()
	return withWeights("conv forward", C.SG_FWD, g, relu, w, func(ctx *C.sg_ctx, nthr C.int, lo, hi int) C.int {
		c := cgeom(g, hi-lo)
		return C.sg_conv_fwd(ctx, nthr, c.n, c.c, c.h, c.w, c.o, c.k, c.pad, cbool(relu), C.int(blocked),
			fptr(x[lo*in:hi*in]), fptr(w), fptr(b), fptr(y[lo*out:hi*out]))
	})
}

func dnnlConvDataGrad(g convGeom, w, dy, dx []float32, blocked int) error {
	in, out := g.c*g.h*g.w, g.o*g.oh()*g.ow()
	return withWeights("conv backward data", C.SG_BWD_DATA, g, false, w, func(ctx *C.sg_ctx, nthr C.int, lo, hi int) C.int {
		c := cgeom(g, hi-lo)
		return C.sg_conv_bwd_data(ctx, nthr, c.n, c.c, c.h, c.w, c.o, c.k, c.pad, C.int(blocked),
			fptr(w), fptr(dy[lo*out:hi*out]), fptr(dx[lo*in:hi*in]))
	})
}

// dnnlCanBlock returns the blocked flags the convolution of this kind
// accepts for every slice it is split into.
func dnnlCanBlock(kind int, g convGeom, relu, bias bool) (int, error) {
	if err := dnnl.init(); err != nil {
		return 0, err
	}
	dnnl.mu.Lock()
	defer dnnl.mu.Unlock()
	bounds, nthr := plan(g.n, g.oh()*g.ow(), len(dnnl.workers))
	flags := blkIn | blkOut | blkDy
	for i := 0; i+1 < len(bounds); i++ {
		c := cgeom(g, bounds[i+1]-bounds[i])
		var f C.int
		if err := dnnl.first(func(ctx *C.sg_ctx) C.int {
			f = C.sg_conv_can_block(ctx, C.int(kind), C.int(nthr), c.n, c.c, c.h, c.w, c.o, c.k, c.pad, cbool(relu), cbool(bias))
			if f < 0 {
				return -1
			}
			return 0
		}); err != nil {
			return 0, err
		}
		flags &= int(f)
	}
	return flags, nil
}

// dnnlConvWeightGrad writes dw and, when db is not nil, the bias gradient.
func dnnlConvWeightGrad(g convGeom, x, dy, dw, db []float32, blocked int) error {
	if err := dnnl.init(); err != nil {
		return err
	}
	dnnl.mu.Lock()
	defer dnnl.mu.Unlock()
	in, out := g.c*g.h*g.w, g.o*g.oh()*g.ow()
	bounds, nthr := plan(g.n, g.oh()*g.ow(), len(dnnl.workers))
	ns := len(bounds) - 1
	if need := (ns - 1) * len(dw); len(dnnl.partW) < need {
		dnnl.partW = make([]float32, need)
	}
	if need := (ns - 1) * g.o; db != nil && len(dnnl.partB) < need {
		dnnl.partB = make([]float32, need)
	}
	part := func(i int) ([]float32, []float32) {
		if i == 0 {
			return dw, db
		}
		pw := dnnl.partW[(i-1)*len(dw) : i*len(dw)]
		if db == nil {
			return pw, nil
		}
		return pw, dnnl.partB[(i-1)*g.o : i*g.o]
	}
	err := dnnl.run(ns, func(ctx *C.sg_ctx, i int) C.int {
		lo, hi := bounds[i], bounds[i+1]
		c := cgeom(g, hi-lo)
		pw, pb := part(i)
		return C.sg_conv_bwd_weights(ctx, C.int(nthr), c.n, c.c, c.h, c.w, c.o, c.k, c.pad, C.int(blocked),
			fptr(x[lo*in:hi*in]), fptr(dy[lo*out:hi*out]), fptr(pw), fptr(pb))
	})
	if err != nil || ns == 1 {
		if err != nil {
			return fmt.Errorf("conv backward weights: %w", err)
		}
		return nil
	}
	// Sum the partial gradients in slice order, the workers taking a range
	// of elements each.
	nw := len(dnnl.workers)
	return dnnl.run(nw, func(_ *C.sg_ctx, r int) C.int {
		lo, hi := r*len(dw)/nw, (r+1)*len(dw)/nw
		for i := 1; i < ns; i++ {
			pw, _ := part(i)
			addTo(dw[lo:hi], pw[lo:hi])
		}
		if db != nil && r == 0 {
			for i := 1; i < ns; i++ {
				_, pb := part(i)
				addTo(db, pb)
			}
		}
		return 0
	})
}

func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// convImpl names the oneDNN implementation for a convolution (kind 0
// forward, 1 backward data, 2 backward weights) of the first slice, for
// diagnostics.
func convImpl(kind int, g convGeom) string {
	if err := dnnl.init(); err != nil {
		return err.Error()
	}
	dnnl.mu.Lock()
	defer dnnl.mu.Unlock()
	bounds, nthr := plan(g.n, g.oh()*g.ow(), len(dnnl.workers))
	c := cgeom(g, bounds[1]-bounds[0])
	var s string
	_ = dnnl.first(func(ctx *C.sg_ctx) C.int {
		s = C.GoString(C.sg_conv_impl(ctx, C.int(kind), C.int(nthr), c.n, c.c, c.h, c.w, c.o, c.k, c.pad))
		return 0
	})
	return s
}

// DNNLVersion is the version of the oneDNN library loaded.
func DNNLVersion() string { return C.GoString(C.sg_dnnl_version()) }

// DNNLScratchBytes is the memory the oneDNN layer holds in scratch buffers.
func DNNLScratchBytes() int64 {
	if dnnl.init() != nil {
		return 0
	}
	dnnl.mu.Lock()
	defer dnnl.mu.Unlock()
	var n atomic.Int64
	_ = dnnl.each(func(ctx *C.sg_ctx) C.int {
		n.Add(int64(C.sg_scratch_bytes(ctx)))
		return 0
	})
	return n.Load() + int64(C.sg_scratch_bytes(nil)) + int64(4*(len(dnnl.partW)+len(dnnl.partB)))
}
