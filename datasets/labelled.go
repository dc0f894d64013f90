package datasets

import (
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"gocv.io/x/gocv"
)

// DefaultCacheBytes is how much decoded data a Labelled set keeps in memory
// at most (LabelledOptions.CacheBytes 0): above it, Get decodes its files
// on every call.
const DefaultCacheBytes int64 = 4 << 30

// interNearestExact is OpenCV's INTER_NEAREST_EXACT (gocv v0.31 has no name
// for it): nearest neighbour on pixel centres, as the bilinear and area
// resizes of the images use, where INTER_NEAREST is off by half a pixel.
const interNearestExact gocv.InterpolationFlags = 6

// LabelledOptions says how OpenLabelled reads image/mask pairs.
type LabelledOptions struct {
	// Channels is 1 (grey) or 3 (RGB); 0 means 3 (see ImageOptions).
	Channels int
	// Height and Width are the training size Get returns: images are resized
	// bilinearly (pixel-area averaging when shrinking), masks by nearest
	// neighbour. Both 0 (the default) keeps the size of the first pair, and
	// then every pair must have that size.
	Height, Width int
	// Classes is the class table masks are checked against. With no classes
	// the table is inferred from the masks (labels 0 to the largest one
	// found, or the colours found in colour masks, sorted), honouring
	// Classes.Ignore, except that the whole zero ClassTable means no ignore
	// index.
	Classes ClassTable
	// Encoding is how mask pixels become labels; "" is MaskAuto.
	Encoding MaskEncoding
	// Augment is the random augmentation of Get; nil: none (validation).
	Augment *Augment
	// SkipBad leaves out, with a one-line warning each, the pairs that fail
	// (an image or mask that cannot be decoded, a mask whose size differs
	// from its image, a mask value not in the class table) and the images
	// and masks without a partner; Skipped counts them. Default false: the
	// first such problem is the error.
	SkipBad bool
	// Warn is where SkipBad's warnings go; nil: os.Stderr.
	Warn io.Writer
	// CacheBytes bounds the decoded data kept in memory (images and masks at
	// the training size, and at their own size once Native or a zoom of the
	// augmentation has read them);
	// 0 means DefaultCacheBytes (4 GiB), negative: no caching.
	CacheBytes int64
}

// resolve fills in the defaults and checks the options. infer is true when
// the class table is to be inferred from the masks.
func (o LabelledOptions) resolve() (_ LabelledOptions, infer bool, err error) {
	img, err := ImageOptions{Channels: o.Channels, Height: o.Height, Width: o.Width}.resolve()
	if err != nil {
		return o, false, err
	}
	o.Channels = img.Channels
	if o.Encoding, err = ParseMaskEncoding(string(o.Encoding)); err != nil {
		return o, false, err
	}
	if o.Augment != nil {
		if err := o.Augment.Validate(); err != nil {
			return o, false, err
		}
	}
	if o.Warn == nil {
		o.Warn = os.Stderr
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if len(o.Classes.Classes) == 0 {
		if o.Classes.Ignore == 0 && o.Classes.IgnoreColor == nil {
			o.Classes.Ignore = -1
		}
		if o.Classes.Ignore < -1 || o.Classes.Ignore > MaxLabel {
			return o, false, fmt.Errorf("class table: ignore index %d; use -1 (none) or a label in [0, %d]", o.Classes.Ignore, MaxLabel)
		}
		return o, true, nil
	}
	return o, false, o.Classes.Validate()
}

// Labelled is a segmentation data set: images and their class masks, checked
// and (when they fit in LabelledOptions.CacheBytes) decoded into memory by
// OpenLabelled. It implements Source; Get and Native are safe for
// concurrent use.
type Labelled struct {
	spec, layout string
	pairs        []pair
	c, h, w      int
	table        ClassTable
	inferred     bool
	lab          *labeller
	enc          MaskEncoding
	decided      map[MaskEncoding]int
	aug          *Augment
	fill         uint16 // label of pixels brought in from outside
	skipped      int

	// imgs (interleaved, BGR for colour) and masks at the training size;
	// nil when the set is too big to cache.
	imgs  [][]uint8
	masks [][]uint16

	nativeSize [][2]int     // h, w of each pair
	native     *nativeCache // Native's reads; nil: not cached
}

// nativeCache keeps pairs at their own size once Native has decoded them.
// It is shared by the views WithAugment makes.
type nativeCache struct {
	mu    sync.Mutex
	imgs  [][]uint8
	masks [][]uint16
}

var _ Source = (*Labelled)(nil)

// OpenLabelled finds the image/mask pairs of spec, checks every one of them
// and decodes them (two at a time) into memory, so that every problem with
// the data surfaces here, before any training. spec is any of:
//
//   - a folder with images/ and masks/ subfolders (also image/, imgs/, img/
//     for the images and mask/, labels/, label/, annotations/, annot/, gt/
//     for the masks), matched by file name without the extension, any image
//     extension on either side; a mask named like its image plus _mask,
//     _label, _gt, _seg, _L (and a few more) pairs too;
//   - a split folder such as CamVid's: DIR/train with its masks in
//     DIR/trainannot (spec "DIR/train" or "DIR:train"; val/valannot,
//     test/testannot, also _annot, _labels, _masks and more suffixes);
//   - a list file (.txt or .csv): one "image mask" pair per line, separated
//     by a comma, a tab or spaces, relative to the list file's folder;
//     blank lines, # comments and a header line are skipped.
//
// Masks are read strictly: a mask whose size differs from its image, a
// label (or colour) not in the class table and not the ignore index, a file
// that does not decode, and an image or mask without a partner are errors
// that name the files, unless opt.SkipBad leaves them out with a warning.
// An empty folder, or one with no pairs, is an error that lists the layouts
// looked for.
func OpenLabelled(spec string, opt LabelledOptions) (*Labelled, error) {
	opt, infer, err := opt.resolve()
	if err != nil {
		return nil, fmt.Errorf("labelled data %s: %w", spec, err)
	}
	ps, err := findPairs(spec)
	if err != nil {
		return nil, err
	}
	l := &Labelled{spec: spec, layout: ps.layout, c: opt.Channels, h: opt.Height, w: opt.Width,
		enc: opt.Encoding, aug: opt.Augment, decided: map[MaskEncoding]int{}}
	warn := func(format string, args ...any) {
		l.skipped++
		fmt.Fprintf(opt.Warn, "warning: "+format+"\n", args...)
	}
	if n := len(ps.unpairedImages) + len(ps.unpairedMasks); n > 0 {
		if !opt.SkipBad {
			return nil, unpairedError(ps)
		}
		for _, p := range ps.unpairedImages {
			warn("skipping image %s: it has no mask of the same name", p)
		}
		for _, p := range ps.unpairedMasks {
			warn("skipping mask %s: no image has its name", p)
		}
	}
	if len(ps.pairs) == 0 {
		return nil, fmt.Errorf("labelled data %s (%s): no image has a mask of the same name; name each mask like its image (any extension), %s", spec, ps.layout, layoutsLookedFor)
	}
	pairs := ps.pairs
	l.table = opt.Classes
	if infer {
		scans, errs := scanMasks(pairs, opt.Encoding, -1, opt.Classes.Ignore, !opt.SkipBad)
		if err := firstError(errs); err != nil && !opt.SkipBad {
			return nil, err
		}
		var good []pair
		var goodScans []*maskScan
		for i, err := range errs {
			if err != nil {
				warn("skipping %s + %s: %v", pairs[i].image, pairs[i].mask, err)
				continue
			}
			good = append(good, pairs[i])
			goodScans = append(goodScans, scans[i])
		}
		if len(good) == 0 {
			return nil, allSkipped(spec, len(pairs))
		}
		pairs = good
		if l.table, err = inferTable(good, goodScans, opt.Classes.Ignore, opt.Classes.IgnoreColor); err != nil {
			return nil, fmt.Errorf("labelled data %s: %w", spec, err)
		}
		l.inferred = true
	}
	l.lab = newLabeller(l.table)
	if opt.Encoding == MaskRGB && l.lab.dupErr != nil {
		return nil, fmt.Errorf("labelled data %s: mask encoding rgb, but %w", spec, l.lab.dupErr)
	}
	if l.table.Ignore >= 0 {
		l.fill = uint16(l.table.Ignore)
	}
	sameSize := false
	if l.h == 0 {
		for _, p := range pairs {
			if h, w, err := imageSize(p.image); err == nil {
				l.h, l.w, sameSize = h, w, true
				break
			}
		}
		if !sameSize { // every image is bad: the pass below says how
			l.h, l.w = 1, 1
		}
	}

	n := len(pairs)
	trainBytes := int64(n) * int64(l.h) * int64(l.w) * int64(l.c+2)
	cache := trainBytes <= opt.CacheBytes
	imgs := make([][]uint8, n)
	masks := make([][]uint16, n)
	sizes := make([][2]int, n)
	decided := make([]MaskEncoding, n)
	errs := runPairs(n, !opt.SkipBad, func(i int) error {
		r, err := l.load(pairs[i], l.h, l.w, sameSize, cache)
		if err != nil {
			return err
		}
		imgs[i], masks[i], sizes[i], decided[i] = r.img, r.lab, [2]int{r.nh, r.nw}, r.decided
		return nil
	})
	if err := firstError(errs); err != nil && !opt.SkipBad {
		return nil, fmt.Errorf("%w (segtool data check lists every problem of the set)", err)
	}
	var nativeBytes int64
	for i, err := range errs {
		if err != nil {
			warn("skipping %s + %s: %v", pairs[i].image, pairs[i].mask, err)
			continue
		}
		l.pairs = append(l.pairs, pairs[i])
		l.nativeSize = append(l.nativeSize, sizes[i])
		l.decided[decided[i]]++
		nativeBytes += int64(sizes[i][0]) * int64(sizes[i][1]) * int64(l.c+2)
		if cache {
			l.imgs = append(l.imgs, imgs[i])
			l.masks = append(l.masks, masks[i])
		}
	}
	if len(l.pairs) == 0 {
		return nil, allSkipped(spec, n)
	}
	if !cache {
		trainBytes = 0
	}
	if trainBytes+nativeBytes <= opt.CacheBytes {
		l.native = &nativeCache{imgs: make([][]uint8, len(l.pairs)), masks: make([][]uint16, len(l.pairs))}
	}
	if l.skipped > 0 {
		// one count after the warnings, which can run to pages
		fmt.Fprintf(opt.Warn, "warning: %s: %d bad file(s) or pair(s) skipped (--skip-bad), %d pairs used\n", spec, l.skipped, len(l.pairs))
	}
	return l, nil
}

// WithAugment returns a view of the same pairs, sharing the decoded data,
// whose Get augments with a (nil: none). It lets one decoded set serve both
// training (augmented) and validation (plain) without decoding it twice.
func (l *Labelled) WithAugment(a *Augment) (*Labelled, error) {
	if a != nil {
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("labelled data %s: %w", l.spec, err)
		}
		a = &Augment{HFlip: a.HFlip, VFlip: a.VFlip, ScaleMin: a.ScaleMin, ScaleMax: a.ScaleMax, Rotate: a.Rotate,
			Brightness: a.Brightness, Contrast: a.Contrast, Saturation: a.Saturation}
	}
	v := *l
	v.aug = a
	return &v, nil
}

// unpairedError is the error for images or masks without a partner.
func unpairedError(ps *pairSet) error {
	var parts []string
	if n := len(ps.unpairedImages); n > 0 {
		parts = append(parts, fmt.Sprintf("%d image(s) without a mask of the same name (first: %s)", n, ps.unpairedImages[0]))
	}
	if n := len(ps.unpairedMasks); n > 0 {
		parts = append(parts, fmt.Sprintf("%d mask(s) without an image (first: %s)", n, ps.unpairedMasks[0]))
	}
	msg := parts[0]
	if len(parts) == 2 {
		msg += " and " + parts[1]
	}
	return fmt.Errorf("labelled data (%s): %s; give every image a mask with its name, or skip bad pairs (--skip-bad)", ps.layout, msg)
}

// allSkipped is the error when SkipBad left nothing.
func allSkipped(spec string, n int) error {
	return fmt.Errorf("labelled data %s: all %d pairs are bad and were skipped (see the warnings above); fix them (segtool data check %s lists the problems)", spec, n, spec)
}

// firstError returns the error of the lowest index, or nil.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// runPairs calls fn(i) for every i in [0, n) on decodeWorkers goroutines
// and returns each call's error. With stopEarly, no further i is handed out
// once a call has failed.
func runPairs(n int, stopEarly bool, fn func(i int) error) []error {
	errs := make([]error, n)
	var failed atomic.Bool
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(decodeWorkers, n) {
		wg.Go(func() {
			for i := range jobs {
				if err := fn(i); err != nil {
					errs[i] = err
					failed.Store(true)
				}
			}
		})
	}
	for i := range n {
		if stopEarly && failed.Load() {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return errs
}

// loaded is one decoded and checked pair.
type loaded struct {
	img     []uint8  // interleaved (BGR for colour), at the size asked for
	lab     []uint16 // labels, at the size asked for
	nh, nw  int      // the pair's own size
	decided MaskEncoding
}

// load decodes and checks a pair and, when keep, returns it resized to
// h x w (0 x 0: its own size). With sameSize, a pair not h x w is an error.
func (l *Labelled) load(p pair, h, w int, sameSize, keep bool) (*loaded, error) {
	raw, err := decodeMask(p.mask)
	if err != nil {
		return nil, err
	}
	dec, err := decideEncoding(p.mask, raw, l.enc, len(l.table.Classes), l.table.Ignore)
	if err != nil {
		return nil, err
	}
	labels, err := l.lab.labels(p.mask, maskKeys(raw, dec, l.table.Ignore), dec)
	if err != nil {
		return nil, err
	}
	src, err := readMat(p.image, l.c)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if src.Rows() != raw.h || src.Cols() != raw.w {
		return nil, fmt.Errorf("mask %s is %dx%d but image %s is %dx%d (WxH); a mask must have its image's size", p.mask, raw.w, raw.h, p.image, src.Cols(), src.Rows())
	}
	if sameSize && (raw.h != h || raw.w != w) {
		return nil, fmt.Errorf("image %s is %dx%d but the first image is %dx%d (WxH); set the training size (Height and Width, data.height/width) to resize them all", p.image, raw.w, raw.h, w, h)
	}
	r := &loaded{nh: raw.h, nw: raw.w, decided: dec}
	if !keep {
		return r, nil
	}
	if h == 0 {
		h, w = raw.h, raw.w
	}
	if r.img, err = resizedBytes(p.image, src, h, w, l.c); err != nil {
		return nil, err
	}
	if r.lab, err = resizeLabels(labels, raw.h, raw.w, h, w); err != nil {
		return nil, fmt.Errorf("mask %s: %w", p.mask, err)
	}
	return r, nil
}

// resizedBytes returns an 8-bit grey or BGR Mat's pixels at h x w: bilinear
// when enlarging, pixel-area averaging when shrinking (as decodeImage).
func resizedBytes(path string, src gocv.Mat, h, w, c int) ([]uint8, error) {
	want := gocv.MatTypeCV8UC3
	if c == 1 {
		want = gocv.MatTypeCV8UC1
	}
	if src.Type() != want {
		return nil, fmt.Errorf("decode %s: OpenCV gave pixel type %v, want %v", path, src.Type(), want)
	}
	if src.Rows() == h && src.Cols() == w {
		pix, err := src.DataPtrUint8()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		return append([]uint8(nil), pix...), nil
	}
	interp := gocv.InterpolationLinear
	if w <= src.Cols() && h <= src.Rows() {
		interp = gocv.InterpolationArea
	}
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, image.Pt(w, h), 0, 0, interp)
	pix, err := dst.DataPtrUint8()
	if err != nil {
		return nil, fmt.Errorf("resize %s: %w", path, err)
	}
	return append([]uint8(nil), pix...), nil
}

// resizeLabels resizes a label map by nearest neighbour on pixel centres.
func resizeLabels(lab []uint16, h, w, th, tw int) ([]uint16, error) {
	if h == th && w == tw {
		return lab, nil
	}
	src, err := labelMatFrom(lab, h, w, 0)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, image.Pt(tw, th), 0, 0, interNearestExact)
	v, err := dst.DataPtrUint16()
	if err != nil {
		return nil, err
	}
	if len(v) != th*tw {
		return nil, fmt.Errorf("resize labels: OpenCV gave %d values, want %d", len(v), th*tw)
	}
	return append([]uint16(nil), v...), nil
}

// bytesToCHW converts interleaved 8-bit pixels (BGR for colour) to a CHW
// float32 RGB tensor in [0,1].
func bytesToCHW(pix []uint8, c, plane int) []float32 {
	out := make([]float32, c*plane)
	const inv = 1.0 / 255
	if c == 1 {
		for i, v := range pix[:plane] {
			out[i] = float32(v) * inv
		}
		return out
	}
	r, g, b := out[:plane], out[plane:2*plane], out[2*plane:]
	for i := range plane {
		b[i] = float32(pix[3*i]) * inv
		g[i] = float32(pix[3*i+1]) * inv
		r[i] = float32(pix[3*i+2]) * inv
	}
	return out
}

// labelsToInt32 widens labels for the Source interface.
func labelsToInt32(lab []uint16) []int32 {
	out := make([]int32, len(lab))
	for i, v := range lab {
		out[i] = int32(v)
	}
	return out
}

// Len is the number of pairs (after any skipped by SkipBad).
func (l *Labelled) Len() int { return len(l.pairs) }

// Shape is the (channels, height, width) of the images Get returns.
func (l *Labelled) Shape() (c, h, w int) { return l.c, l.h, l.w }

// ImagePath is the file of pair i's image; it panics when i is out of range.
func (l *Labelled) ImagePath(i int) string { return l.pairs[i].image }

// MaskPath is the file of pair i's mask; it panics when i is out of range.
func (l *Labelled) MaskPath(i int) string { return l.pairs[i].mask }

// Skipped is how many pairs, and images or masks without a partner,
// SkipBad left out (0 without SkipBad).
func (l *Labelled) Skipped() int { return l.skipped }

// Classes is the class table masks were read with: the one given, or the one
// inferred from the masks (see Inferred).
func (l *Labelled) Classes() ClassTable { return l.table }

// Inferred reports whether the class table was inferred from the masks.
func (l *Labelled) Inferred() bool { return l.inferred }

// Layout says which layout OpenLabelled found, and where.
func (l *Labelled) Layout() string { return l.layout }

// Encodings counts the mask files by the encoding they were read with (with
// MaskAuto, what was decided for each).
func (l *Labelled) Encodings() map[MaskEncoding]int {
	out := make(map[MaskEncoding]int, len(l.decided))
	for k, v := range l.decided {
		out[k] = v
	}
	return out
}

// checkIndex is the error for an index out of range.
func (l *Labelled) checkIndex(i int) error {
	if i < 0 || i >= len(l.pairs) {
		return fmt.Errorf("labelled data %s: index %d out of range [0,%d)", l.spec, i, len(l.pairs))
	}
	return nil
}

// Get returns pair i at the training size: the image as C*H*W float32 (CHW,
// RGB order, values in [0,1]) and its H*W labels (class indices, or the
// ignore index). With LabelledOptions.Augment set, image and mask are
// augmented together, as a function of (seed, i) alone: flips, then zoom and
// turn (bilinear for the image, nearest neighbour for the mask; pixels moved
// in from outside are black in the image and the ignore index in the mask,
// or 0 when there is none), then the colour jitter of the image. The slices
// are the caller's.
func (l *Labelled) Get(i int, seed uint64) ([]float32, []int32, error) {
	if err := l.checkIndex(i); err != nil {
		return nil, nil, err
	}
	var img []uint8
	var lab []uint16
	if l.imgs != nil {
		img, lab = l.imgs[i], l.masks[i]
	} else {
		r, err := l.load(l.pairs[i], l.h, l.w, false, true)
		if err != nil {
			return nil, nil, err
		}
		img, lab = r.img, r.lab
	}
	plane := l.h * l.w
	if l.aug == nil {
		return bytesToCHW(img, l.c, plane), labelsToInt32(lab), nil
	}
	p := l.aug.draw(augRand(seed, i), l.w, l.h)
	sh, sw := l.h, l.w // the size of img and lab
	if nh, nw := l.nativeSize[i][0], l.nativeSize[i][1]; p.scale != 1 && (nh != l.h || nw != l.w) {
		// A zoom starts from the pair at its own size, resized once to the
		// zoomed size (pixel-area averaging when shrinking, as for the
		// training size; nearest for the labels): zooming into the copy at
		// the training size would enlarge pixels already averaged away, so
		// zoomed-in samples would be blurrier than anything seen at test time.
		var err error
		if img, lab, sh, sw, err = l.zoomed(i, p.scale); err != nil {
			return nil, nil, err
		}
		p.scale = 1
	}
	if p.hflip || p.vflip || p.geometric() || sh != l.h || sw != l.w {
		var err error
		if img, lab, err = augmentGeometry(img, l.c, lab, sh, sw, l.h, l.w, p, l.fill); err != nil {
			return nil, nil, fmt.Errorf("augment %s: %w", l.pairs[i].image, err)
		}
	}
	x := bytesToCHW(img, l.c, plane)
	jitter(x, l.c, plane, p)
	return x, labelsToInt32(lab), nil
}

// Native returns pair i at its own size, h x w (the mask's size, which is
// the image's), unaugmented: for scoring at full resolution as benchmarks
// do. It is decoded on first use and kept when the set fits in the cache
// budget. The slices are the caller's.
func (l *Labelled) Native(i int) (img []float32, h, w int, mask []int32, err error) {
	if err := l.checkIndex(i); err != nil {
		return nil, 0, 0, nil, err
	}
	pix, lab, err := l.nativeBytes(i)
	if err != nil {
		return nil, 0, 0, nil, err
	}
	h, w = l.nativeSize[i][0], l.nativeSize[i][1]
	return bytesToCHW(pix, l.c, h*w), h, w, labelsToInt32(lab), nil
}

// nativeBytes is pair i at its own size as decoded: interleaved 8-bit
// pixels and labels, shared with the cache (not to be modified).
func (l *Labelled) nativeBytes(i int) ([]uint8, []uint16, error) {
	h, w := l.nativeSize[i][0], l.nativeSize[i][1]
	if nc := l.native; nc != nil {
		nc.mu.Lock()
		pix, lab := nc.imgs[i], nc.masks[i]
		nc.mu.Unlock()
		if pix != nil {
			return pix, lab, nil
		}
	}
	r, err := l.load(l.pairs[i], 0, 0, false, true)
	if err != nil {
		return nil, nil, err
	}
	if r.nh != h || r.nw != w {
		return nil, nil, errors.New("labelled data: " + l.pairs[i].image + " changed size since it was opened")
	}
	if nc := l.native; nc != nil {
		nc.mu.Lock()
		nc.imgs[i], nc.masks[i] = r.img, r.lab
		nc.mu.Unlock()
	}
	return r.img, r.lab, nil
}

// zoomed is pair i resized from its own size to the training size times
// scale (at least 1x1): the image by area averaging when shrinking and
// bilinearly when enlarging, the labels by nearest neighbour.
func (l *Labelled) zoomed(i int, scale float64) ([]uint8, []uint16, int, int, error) {
	pix, lab, err := l.nativeBytes(i)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	nh, nw := l.nativeSize[i][0], l.nativeSize[i][1]
	sh := max(1, int(math.Round(float64(l.h)*scale)))
	sw := max(1, int(math.Round(float64(l.w)*scale)))
	m, err := matFrom(pix, nh, nw, l.c)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	defer m.Close()
	img, err := resizedBytes(l.pairs[i].image, m, sh, sw, l.c)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	zl, err := resizeLabels(lab, nh, nw, sh, sw)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("mask %s: %w", l.pairs[i].mask, err)
	}
	return img, zl, sh, sw, nil
}
