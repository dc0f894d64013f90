package ops

/*
#include "kernels.h"
*/
import "C"

import "unsafe"

// The float32 paths of the memory-bound ops call the C loops of kernels.c
// (vectorised; Go does not vectorise). Each call covers a range big enough
// that cgo's cost (about 100 ns) does not count; the Go goroutines of
// parallel and parallelRange split the work between the cores as before.
// The float64 paths, which the gradient tests run, stay in Go.

func cf(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func relu32(x, y []float32) {
	parallelRange(len(x), elemGrain, func(lo, hi int) {
		C.sg_relu(cf(x[lo:hi]), cf(y[lo:hi]), C.long(hi-lo))
	})
}

func reluGrad32(y, dy, dx []float32) {
	parallelRange(len(y), elemGrain, func(lo, hi int) {
		C.sg_relu_grad(cf(y[lo:hi]), cf(dy[lo:hi]), cf(dx[lo:hi]), C.long(hi-lo))
	})
}

// planeRange runs fn over ranges of whole planes of hw values.
func planeRange(planes, hw int, fn func(lo, hi int)) {
	parallelRange(planes, max(1, elemGrain/max(hw, 1)), fn)
}

func maxPool32(s []int, x, y []float32) {
	h, w := s[2], s[3]
	oh, ow := h/2, w/2
	planeRange(s[0]*s[1], h*w, func(lo, hi int) {
		C.sg_maxpool2(cf(x[lo*h*w:hi*h*w]), cf(y[lo*oh*ow:hi*oh*ow]), C.long(hi-lo), C.int(h), C.int(w))
	})
}

func maxPoolGrad32(s []int, x, dy, dx []float32) {
	h, w := s[2], s[3]
	oh, ow := h/2, w/2
	planeRange(s[0]*s[1], h*w, func(lo, hi int) {
		C.sg_maxpool2_grad(cf(x[lo*h*w:hi*h*w]), cf(dy[lo*oh*ow:hi*oh*ow]), cf(dx[lo*h*w:hi*h*w]),
			C.long(hi-lo), C.int(h), C.int(w))
	})
}

func upsample32(s []int, x, y []float32) {
	h, w := s[2], s[3]
	planeRange(s[0]*s[1], 4*h*w, func(lo, hi int) {
		C.sg_upsample2(cf(x[lo*h*w:hi*h*w]), cf(y[lo*4*h*w:hi*4*h*w]), C.long(hi-lo), C.int(h), C.int(w))
	})
}

func upsampleGrad32(s []int, dy, dx []float32) {
	h, w := s[2], s[3]
	planeRange(s[0]*s[1], 4*h*w, func(lo, hi int) {
		C.sg_upsample2_grad(cf(dy[lo*4*h*w:hi*4*h*w]), cf(dx[lo*h*w:hi*h*w]), C.long(hi-lo), C.int(h), C.int(w))
	})
}

// chan32 is channel ch of x [n, c, hw] as C sees it: the first plane's
// address, the images and the stride between their planes.
func chan32(x []float32, n, c, hw, ch int) (*C.float, C.int, C.long, C.long) {
	return cf(x[ch*hw:]), C.int(n), C.long(c * hw), C.long(hw)
}

func bnStats32(x []float32, n, c, hw, ch int) (mean, variance float64) {
	p, cn, st, chw := chan32(x, n, c, hw, ch)
	m := float64(n * hw)
	mean = float64(C.sg_chan_sum(p, cn, st, chw)) / m
	return mean, float64(C.sg_chan_sqdev(p, cn, st, chw, C.double(mean))) / m
}

func bnAffine32(x, y []float32, n, c, hw, ch int, mean, scale, shift float32, relu bool) {
	p, cn, st, chw := chan32(x, n, c, hw, ch)
	r := C.int(0)
	if relu {
		r = 1
	}
	C.sg_chan_affine(p, cf(y[ch*hw:]), cn, st, chw, C.float(mean), C.float(scale), C.float(shift), r)
}

func bnGradSums32(dy, x []float32, n, c, hw, ch int, mean float64) (sdy, sdyx float64) {
	p, cn, st, chw := chan32(dy, n, c, hw, ch)
	var a, b C.double
	C.sg_chan_dydev(p, cf(x[ch*hw:]), cn, st, chw, C.double(mean), &a, &b)
	return float64(a), float64(b)
}

func bnDx32(dy, x, dx []float32, n, c, hw, ch int, a, b, c0, mean float32) {
	p, cn, st, chw := chan32(dy, n, c, hw, ch)
	C.sg_chan_bn_dx(p, cf(x[ch*hw:]), cf(dx[ch*hw:]), cn, st, chw, C.float(a), C.float(b), C.float(c0), C.float(mean))
}

// toPlain returns a copy of x [n,c,h,w] held in nChw16c, in NCHW.
func toPlain(x []float32, s []int) []float32 {
	out := make([]float32, len(x))
	C.sg_blocked_to_plain(cf(x), cf(out), C.int(s[0]), C.int(s[1]), C.long(s[2]*s[3]))
	return out
}

// Batch norm on nChw16c (see kernels.c): block b of the c/16 blocks.

func bnBlkStats32(x []float32, n, c, hw, b int) (mean, variance [16]float64) {
	C.sg_blk_stats(cf(x), C.int(n), C.int(c/16), C.long(hw), C.int(b),
		(*C.double)(unsafe.Pointer(&mean[0])), (*C.double)(unsafe.Pointer(&variance[0])))
	return mean, variance
}

func bnBlkAffine32(x, y []float32, n, c, hw, b int, mean, scale, shift *[16]float32, relu bool) {
	r := C.int(0)
	if relu {
		r = 1
	}
	C.sg_blk_affine(cf(x), cf(y), C.int(n), C.int(c/16), C.long(hw), C.int(b), (*C.float)(unsafe.Pointer(&mean[0])),
		(*C.float)(unsafe.Pointer(&scale[0])), (*C.float)(unsafe.Pointer(&shift[0])), r)
}

func bnBlkGradSums32(dy, x []float32, n, c, hw, b int, mean *[16]float64) (sdy, sdyx [16]float64) {
	C.sg_blk_dydev(cf(dy), cf(x), C.int(n), C.int(c/16), C.long(hw), C.int(b), (*C.double)(unsafe.Pointer(&mean[0])),
		(*C.double)(unsafe.Pointer(&sdy[0])), (*C.double)(unsafe.Pointer(&sdyx[0])))
	return sdy, sdyx
}

func bnBlkDx32(dy, x, dx []float32, n, c, hw, b int, ka, kb, kc, mean *[16]float32) {
	C.sg_blk_bn_dx(cf(dy), cf(x), cf(dx), C.int(n), C.int(c/16), C.long(hw), C.int(b), (*C.float)(unsafe.Pointer(&ka[0])),
		(*C.float)(unsafe.Pointer(&kb[0])), (*C.float)(unsafe.Pointer(&kc[0])), (*C.float)(unsafe.Pointer(&mean[0])))
}

// ceChunk32 is the cross-entropy of pixels [lo, hi) of image im (see
// ceForward): it adds to part the loss and weight sums.
func ceChunk32(op *segLossOp, x, y, probs []float32, labels []int32, weights []float64, im, lo, hi int, part []float64) error {
	k, hw := op.k, op.hw
	var out [4]C.double
	var wp *C.double
	if len(weights) > 0 {
		wp = (*C.double)(unsafe.Pointer(&weights[0]))
	}
	C.sg_ce_chunk(cf(x[im*k*hw:]), cf(y[im*hw:]), cf(probs[im*k*hw:]), (*C.int)(unsafe.Pointer(&labels[im*hw])),
		C.int(k), C.long(hw), C.long(lo), C.long(hi), C.int(op.opt.Ignore), wp, &out[0])
	if out[2] != 0 {
		_, _, err := op.label(float64(out[3]))
		return err
	}
	part[0] += float64(out[0])
	part[1] += float64(out[1])
	return nil
}
