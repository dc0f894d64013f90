package ae

import (
	"fmt"
	"math"
)

// Image-quality metrics for reconstructions. Images are float32 in [0,1],
// CHW flattened, and both images of a pair have the same c, h, w. A length
// mismatch is a programming error, so these functions panic on it (as copy
// and gonum do) rather than return an error every caller would ignore.

// SSIM constants from Wang et al. 2004 for images with dynamic range L = 1.
const (
	ssimWindow = 11   // side of the Gaussian window
	ssimSigma  = 1.5  // its standard deviation in pixels
	ssimK1     = 0.01 // luminance stabiliser: C1 = (K1 L)^2
	ssimK2     = 0.03 // contrast stabiliser: C2 = (K2 L)^2
)

// MSE returns the mean squared difference between a and b, accumulated in
// float64. Two empty images are identical, so MSE returns 0 for them. It
// panics if the lengths differ.
func MSE(a, b []float32) float64 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("ae.MSE: images have %d and %d values", len(a), len(b)))
	}
	if len(a) == 0 {
		return 0
	}
	var s float64
	for i, x := range a {
		d := float64(x) - float64(b[i])
		s += d * d
	}
	return s / float64(len(a))
}

// PSNR returns the peak signal-to-noise ratio in dB, 10*log10(peak^2/mse),
// for a mean squared error and the peak signal value (1 for images in
// [0,1], 255 for 8-bit). It is +Inf when mse is 0 (identical images).
func PSNR(mse float64, peak float64) float64 {
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(peak*peak/mse)
}

// SSIM returns the structural similarity of images a and b of c channels
// of h x w pixels, following Wang et al. 2004: an 11x11 Gaussian window
// with sigma 1.5, K1 = 0.01, K2 = 0.03, dynamic range L = 1, the SSIM map
// computed at every "valid" window position (no padding) and averaged over
// positions and channels. It is 1 for identical images and symmetric in a
// and b.
//
// An image smaller than 11 pixels along a side gets a window shrunk to that
// side along it (the central part of the same sigma-1.5 Gaussian,
// renormalised), so that tiny images and tests still get a value instead of
// a panic; such values are not comparable with published 11x11 ones.
// SSIM panics if c, h or w is below 1 or a length is not c*h*w.
func SSIM(a, b []float32, c, h, w int) float64 {
	if c < 1 || h < 1 || w < 1 {
		panic(fmt.Sprintf("ae.SSIM: bad image size %dx%dx%d", c, h, w))
	}
	if len(a) != c*h*w || len(b) != c*h*w {
		panic(fmt.Sprintf("ae.SSIM: images have %d and %d values, want %dx%dx%d = %d", len(a), len(b), c, h, w, c*h*w))
	}
	gy := gaussian(min(ssimWindow, h), ssimSigma)
	gx := gaussian(min(ssimWindow, w), ssimSigma)
	oh, ow := h-len(gy)+1, w-len(gx)+1
	const c1 = (ssimK1 * 1) * (ssimK1 * 1)
	const c2 = (ssimK2 * 1) * (ssimK2 * 1)

	// The five local moments are filtered together, one separable pass per
	// axis, so each channel costs 5 small convolutions and no padding.
	plane := h * w
	src := make([][]float64, 5)
	for i := range src {
		src[i] = make([]float64, plane)
	}
	tmp := make([][]float64, 5)
	for i := range tmp {
		tmp[i] = make([]float64, h*ow)
	}
	out := make([][]float64, 5)
	for i := range out {
		out[i] = make([]float64, oh*ow)
	}
	var total float64
	for ch := 0; ch < c; ch++ {
		pa, pb := a[ch*plane:(ch+1)*plane], b[ch*plane:(ch+1)*plane]
		for i := range pa {
			x, y := float64(pa[i]), float64(pb[i])
			src[0][i], src[1][i], src[2][i], src[3][i], src[4][i] = x, y, x*x, y*y, x*y
		}
		for m := range src {
			filterRows(src[m], tmp[m], h, w, gx)
			filterCols(tmp[m], out[m], h, ow, gy)
		}
		for i := 0; i < oh*ow; i++ {
			mx, my := out[0][i], out[1][i]
			vx := out[2][i] - mx*mx
			vy := out[3][i] - my*my
			cxy := out[4][i] - mx*my
			total += ((2*mx*my + c1) * (2*cxy + c2)) / ((mx*mx + my*my + c1) * (vx + vy + c2))
		}
	}
	return total / float64(c*oh*ow)
}

// gaussian returns n weights of a Gaussian with the given sigma centred on
// the middle of the window (between two pixels when n is even), summing to 1.
func gaussian(n int, sigma float64) []float64 {
	g := make([]float64, n)
	centre := float64(n-1) / 2
	var s float64
	for i := range g {
		d := float64(i) - centre
		g[i] = math.Exp(-d * d / (2 * sigma * sigma))
		s += g[i]
	}
	for i := range g {
		g[i] /= s
	}
	return g
}

// filterRows correlates each of the h rows of src (h x w) with g, keeping
// only full windows: dst is h x (w-len(g)+1).
func filterRows(src, dst []float64, h, w int, g []float64) {
	ow := w - len(g) + 1
	for y := 0; y < h; y++ {
		row := src[y*w : (y+1)*w]
		for x := 0; x < ow; x++ {
			var s float64
			for j, gj := range g {
				s += gj * row[x+j]
			}
			dst[y*ow+x] = s
		}
	}
}

// filterCols correlates each column of src (h x w) with g, keeping only full
// windows: dst is (h-len(g)+1) x w.
func filterCols(src, dst []float64, h, w int, g []float64) {
	oh := h - len(g) + 1
	for y := 0; y < oh; y++ {
		d := dst[y*w : (y+1)*w]
		clear(d)
		for j, gj := range g {
			s := src[(y+j)*w : (y+j+1)*w]
			for x := range d {
				d[x] += gj * s[x]
			}
		}
	}
}
