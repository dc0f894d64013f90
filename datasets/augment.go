package datasets

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"

	"gocv.io/x/gocv"
)

// Augment is the random augmentation Labelled.Get applies to an image and
// its mask together. The zero value changes nothing; each part is off at its
// zero value and switched on by its strength.
type Augment struct {
	// HFlip and VFlip flip left-right and top-bottom, each with
	// probability 0.5.
	HFlip, VFlip bool
	// ScaleMin and ScaleMax bound a random zoom, uniform in between, after
	// which the picture is cropped (zoomed in) or padded (zoomed out) back to
	// the training size at a random place. 0,0 or 1,1: off.
	ScaleMin, ScaleMax float64
	// Rotate is the largest turn in degrees; the angle is uniform in
	// [-Rotate, Rotate]. 0: off.
	Rotate float64
	// Brightness, Contrast and Saturation are colour jitter strengths: each
	// factor is uniform in [1-s, 1+s] (0.2: ±20%). 0: off. Saturation does
	// nothing to grey images.
	Brightness, Contrast, Saturation float64
}

// Validate checks the strengths: scale 0,0 or 0 < ScaleMin <= ScaleMax <= 10,
// Rotate in [0, 180], jitter strengths in [0, 1].
func (a Augment) Validate() error {
	switch {
	case !(a.ScaleMin == 0 && a.ScaleMax == 0) && !(a.ScaleMin > 0 && a.ScaleMin <= a.ScaleMax && a.ScaleMax <= 10):
		return fmt.Errorf("augment: scale range [%g, %g]; use 0 < min <= max <= 10 (e.g. 0.75, 1.5), or 0,0 for none", a.ScaleMin, a.ScaleMax)
	case !(a.Rotate >= 0 && a.Rotate <= 180):
		return fmt.Errorf("augment: rotate %g degrees; use 0 (none) to 180", a.Rotate)
	}
	for _, j := range []struct {
		name string
		v    float64
	}{{"brightness", a.Brightness}, {"contrast", a.Contrast}, {"saturation", a.Saturation}} {
		if !(j.v >= 0 && j.v <= 1) {
			return fmt.Errorf("augment: %s %g; use a strength in [0, 1] (0.2 = ±20%%, 0: none)", j.name, j.v)
		}
	}
	return nil
}

// augParams is one draw of the augmentation.
type augParams struct {
	hflip, vflip            bool
	scale, angle, tx, ty    float64 // angle in degrees, shift in pixels
	bright, contrast, satur float64 // factors
}

// geometric reports whether the draw scales or turns the picture.
func (p augParams) geometric() bool { return p.scale != 1 || p.angle != 0 }

// draw picks the augmentation of one sample of size w x h. Every random
// number is drawn whether or not its part is on, so that switching one part
// on does not change what the others do.
func (a *Augment) draw(r *rand.Rand, w, h int) augParams {
	u := func() float64 { return 2*r.Float64() - 1 } // uniform in [-1, 1)
	p := augParams{scale: 1, bright: 1, contrast: 1, satur: 1}
	hf, vf := r.IntN(2) == 1, r.IntN(2) == 1
	us, ua, ux, uy := r.Float64(), u(), u(), u()
	ub, uc, usat := u(), u(), u()
	p.hflip, p.vflip = a.HFlip && hf, a.VFlip && vf
	if a.ScaleMin > 0 && !(a.ScaleMin == 1 && a.ScaleMax == 1) {
		p.scale = a.ScaleMin + (a.ScaleMax-a.ScaleMin)*us
		// Zoomed in, the shift picks the crop; zoomed out, where the smaller
		// picture sits: either way the picture covers the frame or lies in it.
		p.tx = ux * math.Abs(p.scale-1) * float64(w) / 2
		p.ty = uy * math.Abs(p.scale-1) * float64(h) / 2
	}
	p.angle = a.Rotate * ua
	p.bright = 1 + a.Brightness*ub
	p.contrast = 1 + a.Contrast*uc
	p.satur = 1 + a.Saturation*usat
	return p
}

// augRand is the generator of sample i's augmentation under seed.
func augRand(seed uint64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix64(seed), splitmix64(uint64(i)^0x5eed)))
}

// matFrom copies 8-bit interleaved pixels (channels 1 or 3) into a new
// C-owned Mat, so OpenCV never holds a pointer into Go memory. The caller
// closes it.
func matFrom(pix []uint8, h, w, c int) (gocv.Mat, error) {
	mt := gocv.MatTypeCV8UC3
	if c == 1 {
		mt = gocv.MatTypeCV8UC1
	}
	m := gocv.NewMatWithSize(h, w, mt)
	dst, err := m.DataPtrUint8()
	if err != nil {
		m.Close()
		return gocv.Mat{}, err
	}
	copy(dst, pix)
	return m, nil
}

// labelMatFrom copies labels into a new 16-bit one-channel Mat, adding
// offset to each (see warpLabels). The caller closes it.
func labelMatFrom(lab []uint16, h, w int, offset uint16) (gocv.Mat, error) {
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV16UC1)
	dst, err := m.DataPtrUint16()
	if err != nil {
		m.Close()
		return gocv.Mat{}, err
	}
	for i, v := range lab {
		dst[i] = v + offset
	}
	return m, nil
}

// augmentGeometry applies the flips, zoom and turn of p to an image (8-bit
// interleaved, c channels) and its labels, both sh x sw, and returns new
// slices of h x w (the inputs are left alone): the centre of the source
// lands at the centre of the output, moved by p's shift. The image is
// interpolated bilinearly and the labels by nearest neighbour with the same
// transform; image pixels brought in from outside are black and label
// pixels fill.
func augmentGeometry(img []uint8, c int, lab []uint16, sh, sw, h, w int, p augParams, fill uint16) ([]uint8, []uint16, error) {
	im, err := matFrom(img, sh, sw, c)
	if err != nil {
		return nil, nil, err
	}
	defer im.Close()
	// Labels are shifted up by one so that 0 can mark "outside the picture"
	// (warpAffine's border value is 8-bit, too small for a 16-bit ignore).
	lm, err := labelMatFrom(lab, sh, sw, 1)
	if err != nil {
		return nil, nil, err
	}
	defer lm.Close()
	// src and srcL are views of whichever Mats hold the current picture;
	// each Mat is closed by its own variable's defer.
	src, srcL := im, lm
	fim := gocv.NewMat()
	defer fim.Close()
	flm := gocv.NewMat()
	defer flm.Close()
	if code, ok := flipCode(p.hflip, p.vflip); ok {
		gocv.Flip(im, &fim, code)
		gocv.Flip(lm, &flm, code)
		src, srcL = fim, flm
	}
	if p.geometric() || sh != h || sw != w {
		m := affineMat(p, sw, sh, w, h)
		defer m.Close()
		wim := gocv.NewMat()
		defer wim.Close()
		wlm := gocv.NewMat()
		defer wlm.Close()
		size := image.Pt(w, h)
		gocv.WarpAffineWithParams(src, &wim, m, size, gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
		gocv.WarpAffineWithParams(srcL, &wlm, m, size, gocv.InterpolationNearestNeighbor, gocv.BorderConstant, color.RGBA{})
		return matBytes(wim, h, w, c, wlm, fill)
	}
	return matBytes(src, h, w, c, srcL, fill)
}

// matBytes copies an image Mat and a shifted label Mat (0: outside) out.
func matBytes(im gocv.Mat, h, w, c int, lm gocv.Mat, fill uint16) ([]uint8, []uint16, error) {
	pix, err := im.DataPtrUint8()
	if err != nil {
		return nil, nil, err
	}
	lv, err := lm.DataPtrUint16()
	if err != nil {
		return nil, nil, err
	}
	if len(pix) != h*w*c || len(lv) != h*w {
		return nil, nil, fmt.Errorf("augment: OpenCV returned %d pixels and %d labels, want %d and %d", len(pix), len(lv), h*w*c, h*w)
	}
	outImg := append([]uint8(nil), pix...)
	outLab := make([]uint16, h*w)
	for i, v := range lv {
		if v == 0 {
			outLab[i] = fill
		} else {
			outLab[i] = v - 1
		}
	}
	return outImg, outLab, nil
}

// flipCode is OpenCV's flip code for the flips asked for.
func flipCode(h, v bool) (int, bool) {
	switch {
	case h && v:
		return -1, true
	case h:
		return 1, true
	case v:
		return 0, true
	}
	return 0, false
}

// affineMat is the 2x3 forward map of p from a sw x sh source to a w x h
// output: zoom by p.scale and turn by p.angle degrees (counter-clockwise on
// screen, as OpenCV's getRotationMatrix2D) about the source's centre, which
// goes to the output's centre, then shift by (tx, ty). Centres are those of
// the pixel grids, ((w-1)/2, (h-1)/2), so image and labels stay aligned. A
// map that only moves the picture moves it by whole pixels.
func affineMat(p augParams, sw, sh, w, h int) gocv.Mat {
	sx, sy := float64(sw-1)/2, float64(sh-1)/2
	cx, cy := float64(w-1)/2, float64(h-1)/2
	sin, cos := math.Sincos(p.angle * math.Pi / 180)
	a, b := p.scale*cos, p.scale*sin
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	vals := [6]float64{a, b, cx - a*sx - b*sy + p.tx, -b, a, cy + b*sx - a*sy + p.ty}
	if p.scale == 1 && p.angle == 0 {
		// A plain crop (or pad) moves by whole pixels: no blur.
		vals[2], vals[5] = math.Round(vals[2]), math.Round(vals[5])
	}
	for k, v := range vals {
		m.SetDoubleAt(k/3, k%3, v)
	}
	return m
}

// jitter applies p's brightness, contrast and saturation factors, in that
// order, to a CHW float image in [0,1], clamping after each.
func jitter(x []float32, c, plane int, p augParams) {
	clamp := func(v float32) float32 { return min(max(v, 0), 1) }
	if p.bright != 1 {
		f := float32(p.bright)
		for i, v := range x {
			x[i] = clamp(v * f)
		}
	}
	if p.contrast != 1 {
		var sum float64
		for i := range plane {
			sum += float64(lumaAt(x, c, plane, i))
		}
		mean := float32(sum / float64(plane))
		f := float32(p.contrast)
		for i, v := range x {
			x[i] = clamp((v-mean)*f + mean)
		}
	}
	if p.satur != 1 && c == 3 {
		f := float32(p.satur)
		for i := range plane {
			g := lumaAt(x, c, plane, i)
			for ch := range 3 {
				v := x[ch*plane+i]
				x[ch*plane+i] = clamp((v-g)*f + g)
			}
		}
	}
}

// lumaAt is the BT.601 grey level of pixel i of a CHW image.
func lumaAt(x []float32, c, plane, i int) float32 {
	if c == 1 {
		return x[i]
	}
	return 0.299*x[i] + 0.587*x[plane+i] + 0.114*x[2*plane+i]
}
