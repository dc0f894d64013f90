package datasets

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// squareSet writes one 32x24 pair: a white square (class 1) off centre on
// black (class 0), so that where it went after augmenting is plain in both.
func squareSet(t *testing.T) string {
	t.Helper()
	const w, h = 32, 24
	dir := t.TempDir()
	img := make([]uint8, 3*w*h)
	mask := make([]uint8, w*h)
	for y := 4; y < 14; y++ {
		for x := 6; x < 18; x++ {
			mask[y*w+x] = 1
			img[3*(y*w+x)], img[3*(y*w+x)+1], img[3*(y*w+x)+2] = 255, 255, 255
		}
	}
	writeTestPNG(t, filepath.Join(dir, "images"), "sq.png", img, w, h, 3)
	writeTestPNG(t, filepath.Join(dir, "masks"), "sq.png", mask, w, h, 1)
	return dir
}

var twoClasses = ClassTable{Classes: []Class{{"bg", [3]uint8{}}, {"square", [3]uint8{255, 255, 255}}}, Ignore: 7}

func TestAugmentKeepsImageAndMaskAligned(t *testing.T) {
	dir := squareSet(t)
	aug := &Augment{HFlip: true, VFlip: true, ScaleMin: 0.6, ScaleMax: 1.6, Rotate: 30}
	l, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: aug})
	require.NoError(t, err)
	plain, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses})
	require.NoError(t, err)
	orig, origMask, err := plain.Get(0, 0)
	require.NoError(t, err)
	_, h, w := l.Shape()
	plane := h * w
	changed, sawIgnore := 0, 0
	for seed := range uint64(40) {
		img, mask, err := l.Get(0, seed)
		require.NoError(t, err)
		require.Len(t, img, 3*plane)
		require.Len(t, mask, plane)
		for i, m := range mask {
			v := img[i] // red; the square is white, so any channel will do
			switch m {
			case 1:
				// The nearest source pixel is in the square and weighs at
				// least a quarter in the bilinear blend (a bit less with
				// OpenCV's 1/32-pixel fixed point).
				require.GreaterOrEqual(t, v, float32(0.2), "seed %d pixel %d,%d: mask says square, image is dark", seed, i%w, i/w)
			case 0:
				require.LessOrEqual(t, v, float32(0.8), "seed %d pixel %d,%d: mask says background, image is bright", seed, i%w, i/w)
			case 7:
				sawIgnore++
				require.LessOrEqual(t, v, float32(0.8), "outside the picture is black")
			default:
				t.Fatalf("seed %d: label %d", seed, m)
			}
		}
		if !equalInt32(mask, origMask) {
			changed++
		}
	}
	assert.Greater(t, changed, 30, "most seeds move the square")
	assert.Greater(t, sawIgnore, 0, "zooming out and turning brings in ignore pixels")
	assert.Len(t, orig, 3*plane)
}

func equalInt32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAugmentFlipsExactly(t *testing.T) {
	dir := squareSet(t)
	plain, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses})
	require.NoError(t, err)
	orig, origMask, err := plain.Get(0, 0)
	require.NoError(t, err)
	l, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: &Augment{HFlip: true}})
	require.NoError(t, err)
	_, h, w := l.Shape()
	flips := 0
	for seed := range uint64(20) {
		img, mask, err := l.Get(0, seed)
		require.NoError(t, err)
		if equalInt32(mask, origMask) {
			assert.Equal(t, orig, img, "not flipped: unchanged")
			continue
		}
		flips++
		for y := range h {
			for x := range w {
				require.Equal(t, origMask[y*w+w-1-x], mask[y*w+x])
				require.Equal(t, orig[y*w+w-1-x], img[y*w+x])
			}
		}
	}
	assert.Greater(t, flips, 4)
	assert.Less(t, flips, 16, "p = 0.5")
}

func TestAugmentDeterministic(t *testing.T) {
	dir := squareSet(t)
	aug := &Augment{HFlip: true, ScaleMin: 0.8, ScaleMax: 1.25, Rotate: 10, Brightness: 0.2, Contrast: 0.2, Saturation: 0.2}
	a, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: aug})
	require.NoError(t, err)
	b, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: aug, CacheBytes: -1})
	require.NoError(t, err)
	differ := 0
	var prev []float32
	for seed := range uint64(8) {
		x1, m1, err := a.Get(0, seed)
		require.NoError(t, err)
		x2, m2, err := a.Get(0, seed)
		require.NoError(t, err)
		x3, m3, err := b.Get(0, seed)
		require.NoError(t, err)
		require.Equal(t, x1, x2, "same seed, same sample")
		require.Equal(t, m1, m2)
		require.Equal(t, x1, x3, "another Labelled of the same data agrees")
		require.Equal(t, m1, m3)
		if prev != nil && !equalFloat32(prev, x1) {
			differ++
		}
		prev = x1
	}
	assert.Greater(t, differ, 5, "seeds give different samples")
}

func equalFloat32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAugmentColourJitter(t *testing.T) {
	dir := t.TempDir()
	const w, h = 8, 4
	img := make([]uint8, 0, 3*w*h)
	for i := range w * h {
		img = append(img, uint8(40+4*i), 100, 160)
	}
	writeTestPNG(t, filepath.Join(dir, "images"), "a.png", img, w, h, 3)
	writeTestPNG(t, filepath.Join(dir, "masks"), "a.png", solid(w, h, 1), w, h, 1)
	plain, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses})
	require.NoError(t, err)
	orig, origMask, err := plain.Get(0, 0)
	require.NoError(t, err)

	l, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: &Augment{Brightness: 0.5}})
	require.NoError(t, err)
	for seed := range uint64(5) {
		x, mask, err := l.Get(0, seed)
		require.NoError(t, err)
		assert.Equal(t, origMask, mask, "colour jitter leaves the mask alone")
		// Brightness is one factor for every value.
		f := x[0] / orig[0]
		assert.InDelta(t, 1, f, 0.5+1e-6)
		for i := range x {
			assert.InDelta(t, min(orig[i]*f, 1), x[i], 1e-5)
		}
	}
	l, err = OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: &Augment{Saturation: 1}})
	require.NoError(t, err)
	x, _, err := l.Get(0, 3)
	require.NoError(t, err)
	plane := w * h
	for i := range plane {
		for _, v := range []float32{x[i], x[plane+i], x[2*plane+i]} {
			assert.True(t, v >= 0 && v <= 1, "clamped to [0,1]")
		}
		// The grey level of each pixel is kept by a saturation change (up to
		// clamping, which these mid-range colours stay clear of at seed 3).
		g0 := lumaAt(orig, 3, plane, i)
		g1 := lumaAt(x, 3, plane, i)
		assert.InDelta(t, g0, g1, 0.02)
	}
}

func TestAugmentValidate(t *testing.T) {
	assert.NoError(t, Augment{}.Validate())
	assert.NoError(t, Augment{HFlip: true, ScaleMin: 1, ScaleMax: 1, Rotate: 10, Brightness: 0.2}.Validate())
	for _, a := range []Augment{
		{ScaleMin: 0, ScaleMax: 2},
		{ScaleMin: 2, ScaleMax: 1},
		{Rotate: 200},
		{Brightness: -0.1},
		{Contrast: 2},
	} {
		assert.Error(t, a.Validate(), "%+v", a)
	}
}

func TestAugmentNoIgnoreFillsZero(t *testing.T) {
	dir := squareSet(t)
	tbl := twoClasses
	tbl.Ignore = -1
	l, err := OpenLabelled(dir, LabelledOptions{Classes: tbl, Augment: &Augment{ScaleMin: 0.5, ScaleMax: 0.5}})
	require.NoError(t, err)
	_, mask, err := l.Get(0, 1)
	require.NoError(t, err)
	for _, v := range mask {
		require.True(t, v == 0 || v == 1, "label %d", v)
	}
}

func TestWithAugmentSharesTheData(t *testing.T) {
	dir := squareSet(t)
	aug := &Augment{HFlip: true, ScaleMin: 0.7, ScaleMax: 1.3, Rotate: 20, Contrast: 0.3}
	plain, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses})
	require.NoError(t, err)
	augmented, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: aug})
	require.NoError(t, err)
	view, err := plain.WithAugment(aug)
	require.NoError(t, err)
	back, err := view.WithAugment(nil)
	require.NoError(t, err)
	for seed := range uint64(5) {
		a, am, err := augmented.Get(0, seed)
		require.NoError(t, err)
		v, vm, err := view.Get(0, seed)
		require.NoError(t, err)
		require.Equal(t, a, v, "the view augments like a set opened with the augmentation")
		require.Equal(t, am, vm)
		p, pm, err := plain.Get(0, seed)
		require.NoError(t, err)
		b, bm, err := back.Get(0, seed)
		require.NoError(t, err)
		require.Equal(t, p, b, "the original is not augmented")
		require.Equal(t, pm, bm)
	}
	_, _, _, _, err = view.Native(0)
	require.NoError(t, err)
	assert.Same(t, plain.native, view.native, "Native's cache is shared")
	_, err = plain.WithAugment(&Augment{Rotate: 500})
	assert.Error(t, err)
}

func TestLabelledConcurrentUse(t *testing.T) {
	dir := squareSet(t)
	l, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: &Augment{HFlip: true, Rotate: 10}})
	require.NoError(t, err)
	want, wantMask, err := l.Get(0, 5)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				x, m, err := l.Get(0, 5)
				if err == nil && (!equalFloat32(x, want) || !equalInt32(m, wantMask)) {
					err = fmt.Errorf("concurrent Get differs")
				}
				if err == nil {
					_, _, _, _, err = l.Native(0)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// squareSetAt is squareSet drawn at k times its size (k*32 x k*24).
func squareSetAt(t *testing.T, k int) string {
	t.Helper()
	w, h := 32*k, 24*k
	dir := t.TempDir()
	img := make([]uint8, 3*w*h)
	mask := make([]uint8, w*h)
	for y := 4 * k; y < 14*k; y++ {
		for x := 6 * k; x < 18*k; x++ {
			mask[y*w+x] = 1
			img[3*(y*w+x)], img[3*(y*w+x)+1], img[3*(y*w+x)+2] = 255, 255, 255
		}
	}
	writeTestPNG(t, filepath.Join(dir, "images"), "sq.png", img, w, h, 3)
	writeTestPNG(t, filepath.Join(dir, "masks"), "sq.png", mask, w, h, 1)
	return dir
}

// With pairs larger than the training size a zoom starts from the pair's
// own size: image and mask stay aligned, and zoomed in, detail averaged away
// at the training size comes back (stripes one pixel wide at 128x96 are a
// flat grey at 32x24, and stripes again when zoomed in four times).
func TestAugmentZoomsFromTheNativeSize(t *testing.T) {
	dir := squareSetAt(t, 3)
	aug := &Augment{HFlip: true, ScaleMin: 0.6, ScaleMax: 1.6, Rotate: 30}
	for _, cache := range []int64{0, -1} {
		l, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Augment: aug, Height: 24, Width: 32, CacheBytes: cache})
		require.NoError(t, err)
		changed := 0
		for seed := range uint64(30) {
			img, mask, err := l.Get(0, seed)
			require.NoError(t, err)
			require.Len(t, img, 3*24*32)
			for i, m := range mask {
				switch m {
				case 1:
					require.GreaterOrEqual(t, img[i], float32(0.2), "seed %d pixel %d: mask says square, image is dark", seed, i)
				case 0, 7:
					require.LessOrEqual(t, img[i], float32(0.8), "seed %d pixel %d: mask says background, image is bright", seed, i)
				default:
					t.Fatalf("seed %d: label %d", seed, m)
				}
			}
			if !equalInt32(mask, labelsOf(t, dir)) {
				changed++
			}
		}
		assert.Greater(t, changed, 20)
	}

	stripes := t.TempDir()
	const w, h = 128, 96
	img := make([]uint8, 3*w*h)
	for i := range w * h {
		if i%2 == 1 {
			img[3*i], img[3*i+1], img[3*i+2] = 255, 255, 255
		}
	}
	writeTestPNG(t, filepath.Join(stripes, "images"), "s.png", img, w, h, 3)
	writeTestPNG(t, filepath.Join(stripes, "masks"), "s.png", solid(w, h, 1), w, h, 1)
	spread := func(x []float32) float64 {
		var lo, hi float32 = 1, 0
		for _, v := range x[:w/4*h/4] {
			lo, hi = min(lo, v), max(hi, v)
		}
		return float64(hi - lo)
	}
	plain, err := OpenLabelled(stripes, LabelledOptions{Classes: twoClasses, Height: h / 4, Width: w / 4})
	require.NoError(t, err)
	x, _, err := plain.Get(0, 0)
	require.NoError(t, err)
	assert.Less(t, spread(x), 0.05, "at the training size the stripes average to grey")
	zoom, err := OpenLabelled(stripes, LabelledOptions{Classes: twoClasses, Height: h / 4, Width: w / 4,
		Augment: &Augment{ScaleMin: 4, ScaleMax: 4}})
	require.NoError(t, err)
	x, mask, err := zoom.Get(0, 3)
	require.NoError(t, err)
	assert.Greater(t, spread(x), 0.9, "zoomed in four times, the stripes are back")
	for _, m := range mask {
		require.Equal(t, int32(1), m, "zoomed in, every pixel is in the picture")
	}
}

// labelsOf is the unaugmented mask of the one pair in dir at 32x24.
func labelsOf(t *testing.T, dir string) []int32 {
	t.Helper()
	l, err := OpenLabelled(dir, LabelledOptions{Classes: twoClasses, Height: 24, Width: 32})
	require.NoError(t, err)
	_, m, err := l.Get(0, 0)
	require.NoError(t, err)
	return m
}
