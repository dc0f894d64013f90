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
//     oneDNN call, made by the calling thread or one of threads-1 POSIX
//     threads of pool.c (each with its own dnnl.c context), which take
//     slices as they come free: a core lost for a while to another process
//     slows a convolution down by its share, instead of stalling it at a
//     barrier the way a parallel region of OpenMP threads does. The whole
//     call is one cgo call; idle threads sleep on a condition variable, and
//     with one OpenMP thread per oneDNN call no OpenMP pool exists: nothing
//     spins. (Go threads locked to the work ran the same slices 15% slower
//     and twice as unevenly on these 2-core machines: each handoff between
//     them went through Go's scheduler.)
//   - Batches too small to split (fewer images than threads) run as one call
//     on the first worker thread with oneDNN's own OpenMP threading; the
//     thread count is set on that thread through omp_set_num_threads
//     (OMP_NUM_THREADS is read when the library loads, before main), and as
//     it is always the same thread only one OpenMP pool is ever made. Its
//     threads sleep when idle (never OMP_WAIT_POLICY=active).
//   - Backward-weights slices each write a partial gradient, summed in slice
//     order: results do not depend on which thread took which slice, so a
//     resumed run still reproduces an uninterrupted one bit for bit.
//   - The cgo pointer rules hold: Go slices are passed as call arguments,
//     bound as memory handles and unbound before the call returns.

// dnnlPool guards the C thread pool: one convolution call at a time.
type dnnlPool struct {
	once    sync.Once
	err     error
	mu      sync.Mutex
	threads int
}

var dnnl dnnlPool

// sliceMode is for experiments (SEGTOOL_DNNL_SLICES): 0 runs every
// convolution as one call with oneDNN's OpenMP threads, 1 gives each thread
// one slice; unset (-1), the default plan of sg_plan.
var sliceMode = func() int {
	if v, err := strconv.Atoi(os.Getenv("SEGTOOL_DNNL_SLICES")); err == nil {
		return v
	}
	return -1
}()

// DNNLThreads is the number of threads for oneDNN: SEGTOOL_THREADS if set,
// otherwise GOMAXPROCS when the first convolution runs.
func DNNLThreads() int {
	if v, err := strconv.Atoi(os.Getenv("SEGTOOL_THREADS")); err == nil && v > 0 {
		return v
	}
	return runtime.GOMAXPROCS(0)
}

func (p *dnnlPool) start(threads int) {
	if rc := C.sg_pool_init(C.int(threads)); rc != 0 {
		p.err = errors.New(C.GoString(C.sg_pool_error()))
		return
	}
	p.threads = threads
}

func (p *dnnlPool) init() error {
	p.once.Do(func() { p.start(DNNLThreads()) })
	return p.err
}

// SetDNNLThreads sets how many threads the convolutions use. It must come
// before the first convolution (or ask for the number already in use).
func SetDNNLThreads(n int) error {
	if n < 1 {
		return fmt.Errorf("oneDNN threads: %d is not a thread count", n)
	}
	dnnl.once.Do(func() { dnnl.start(n) })
	if dnnl.err != nil {
		return dnnl.err
	}
	if dnnl.threads != n {
		return fmt.Errorf("oneDNN threads: already running with %d, cannot change to %d", dnnl.threads, n)
	}
	return nil
}

func fptr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Blocked flags: which activations of a call are in oneDNN's nChw16c layout
// instead of NCHW (see dnnl.h and blocking in plan.go).
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

// run makes one convolution call of the kind on the pool.
func (p *dnnlPool) run(op string, kind C.int, g convGeom, relu bool, blocked int, x, w, b, y, dy, dx, dw, db []float32) error {
	if err := p.init(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rc := C.sg_run(kind, C.int(sliceMode), C.int(g.n), C.int(g.c), C.int(g.h), C.int(g.w), C.int(g.o), C.int(g.k), C.int(g.pad),
		cbool(relu), C.int(blocked), fptr(x), fptr(w), fptr(b), fptr(y), fptr(dy), fptr(dx), fptr(dw), fptr(db))
	if rc != 0 {
		return fmt.Errorf("%s: %s", op, C.GoString(C.sg_pool_error()))
	}
	return nil
}

// dnnlConvForward writes conv(x, w) + b into y, and applies ReLU to it when
// relu is set.
func dnnlConvForward(g convGeom, x, w, b, y []float32, relu bool, blocked int) error {
	return dnnl.run("conv forward", C.SG_FWD, g, relu, blocked, x, w, b, y, nil, nil, nil, nil)
}

func dnnlConvDataGrad(g convGeom, w, dy, dx []float32, blocked int) error {
	return dnnl.run("conv backward data", C.SG_BWD_DATA, g, false, blocked, nil, w, nil, nil, dy, dx, nil, nil)
}

// dnnlConvWeightGrad writes dw and, when db is not nil, the bias gradient.
func dnnlConvWeightGrad(g convGeom, x, dy, dw, db []float32, blocked int) error {
	return dnnl.run("conv backward weights", C.SG_BWD_WEIGHTS, g, false, blocked, x, nil, nil, nil, dy, nil, dw, db)
}

// dnnlCanBlock returns the blocked flags the convolution of this kind
// accepts for every slice it is split into.
func dnnlCanBlock(kind int, g convGeom, relu, bias bool) (int, error) {
	if err := dnnl.init(); err != nil {
		return 0, err
	}
	dnnl.mu.Lock()
	defer dnnl.mu.Unlock()
	f := C.sg_run_can_block(C.int(kind), C.int(sliceMode), C.int(g.n), C.int(g.c), C.int(g.h), C.int(g.w), C.int(g.o), C.int(g.k),
		C.int(g.pad), cbool(relu), cbool(bias))
	if f < 0 {
		return 0, fmt.Errorf("oneDNN: %s", C.GoString(C.sg_pool_error()))
	}
	return int(f), nil
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
	return C.GoString(C.sg_run_impl(C.int(kind), C.int(sliceMode), C.int(g.n), C.int(g.c), C.int(g.h), C.int(g.w), C.int(g.o), C.int(g.k), C.int(g.pad)))
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
	return int64(C.sg_pool_scratch_bytes())
}
