package datasets

import (
	"cmp"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// CheckReport is what Check finds in a labelled data set. Its fields are
// exported with JSON names for `segtool data check --json`; Write prints it
// for people.
type CheckReport struct {
	// Spec is the data set as given; Layout the layout found and where.
	Spec   string `json:"spec"`
	Layout string `json:"layout"`
	// Pairs is the number of image/mask pairs found (good or bad).
	Pairs int `json:"pairs"`
	// UnpairedImages are images without a mask, UnpairedMasks masks without
	// an image.
	UnpairedImages []string `json:"unpaired_images"`
	UnpairedMasks  []string `json:"unpaired_masks"`
	// SizeMismatches are masks whose size differs from their image's.
	SizeMismatches []SizeMismatch `json:"size_mismatches"`
	// DecodeFailures are images and masks that could not be read.
	DecodeFailures []FileError `json:"decode_failures"`
	// MaskErrors are masks that decode but cannot be read with the mask
	// encoding (a colour mask when it is index, say).
	MaskErrors []FileError `json:"mask_errors"`
	// UnknownValues are the mask values (or colours) that are neither a class
	// of the table nor the ignore index, most pixels first.
	UnknownValues []UnknownValue `json:"unknown_values"`
	// Encoding is the mask encoding asked for; Decided counts the mask files
	// by the encoding they were read with (with auto, what was decided).
	Encoding MaskEncoding         `json:"encoding"`
	Decided  map[MaskEncoding]int `json:"decided"`
	// ClassesInferred is true when no class table was given and the classes
	// are what the masks hold.
	ClassesInferred bool `json:"classes_inferred"`
	// Ignore is the ignore index (-1: none); IgnoredPixels the pixels with
	// it, LabelledPixels the pixels of scored classes.
	Ignore         int   `json:"ignore_index"`
	IgnoredPixels  int64 `json:"ignored_pixels"`
	LabelledPixels int64 `json:"labelled_pixels"`
	// Classes are the per-class pixel counts and suggested weights.
	Classes []ClassStat `json:"classes"`
	// WeightMethod says how ClassStat.Weight was computed.
	WeightMethod string `json:"weight_method"`
	// MaskSizes counts the masks by size, "WxH".
	MaskSizes map[string]int `json:"mask_sizes"`
	// Hints are suggestions drawn from what was found.
	Hints []string `json:"hints,omitempty"`

	table ClassTable
}

// SizeMismatch is a mask whose size differs from its image's.
type SizeMismatch struct {
	Image       string `json:"image"`
	Mask        string `json:"mask"`
	ImageWidth  int    `json:"image_width"`
	ImageHeight int    `json:"image_height"`
	MaskWidth   int    `json:"mask_width"`
	MaskHeight  int    `json:"mask_height"`
}

// FileError is a file and what is wrong with it.
type FileError struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

// UnknownValue is a mask value or colour not in the class table.
type UnknownValue struct {
	// Value is "value 14" or "colour (12,34,56)".
	Value  string `json:"value"`
	Pixels int64  `json:"pixels"`
	// Files are the masks that hold it (the first maxListed), FileCount how
	// many do.
	Files     []string `json:"files"`
	FileCount int      `json:"file_count"`
}

// ClassStat is one class's share of the labelled pixels.
type ClassStat struct {
	Index int      `json:"index"`
	Name  string   `json:"name"`
	Color [3]uint8 `json:"color"`
	// Pixels of the class over all masks; Fraction of LabelledPixels; Images
	// is the number of masks that hold it.
	Pixels   int64   `json:"pixels"`
	Fraction float64 `json:"fraction"`
	Images   int     `json:"images"`
	// Ignored is true for a class that is the ignore index (not scored).
	Ignored bool `json:"ignored,omitempty"`
	// Weight is the suggested loss weight (see CheckReport.WeightMethod); 0
	// for classes never seen and for the ignored class.
	Weight float64 `json:"weight"`
}

// MedianFrequencyBalancing describes how Check suggests class weights.
const MedianFrequencyBalancing = "median-frequency balancing (Eigen & Fergus 2015, as SegNet weights CamVid): " +
	"weight = median(freq) / freq(class), freq(class) = pixels of the class / labelled pixels of the masks that hold it; ignored pixels left out"

// maxListed bounds the files listed per unknown value.
const maxListed = 10

// Problems lists what is wrong, one line each; empty when the set is fit to
// train on.
func (r *CheckReport) Problems() []string {
	var out []string
	if r.Pairs == 0 {
		out = append(out, "no image/mask pairs")
	}
	add := func(n int, what string) {
		if n > 0 {
			out = append(out, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(len(r.UnpairedImages), "image(s) without a mask")
	add(len(r.UnpairedMasks), "mask(s) without an image")
	add(len(r.SizeMismatches), "mask(s) of another size than their image")
	add(len(r.DecodeFailures), "file(s) that cannot be decoded")
	add(len(r.MaskErrors), "mask(s) that do not fit the mask encoding")
	add(len(r.UnknownValues), "mask value(s) not in the class table")
	return out
}

// OK reports whether Check found no problems.
func (r *CheckReport) OK() bool { return len(r.Problems()) == 0 }

// Table is the class table the masks were checked against: the one given,
// or the one inferred from them.
func (r *CheckReport) Table() ClassTable { return r.table }

// maskScan is what one mask holds.
type maskScan struct {
	h, w    int
	decided MaskEncoding
	hist    map[maskKey]int64
	palette [][3]uint8
}

// scanRaw decides a decoded mask's encoding and counts its keys.
func scanRaw(path string, raw *rawMask, enc MaskEncoding, k, ignore int) (*maskScan, error) {
	dec, err := decideEncoding(path, raw, enc, k, ignore)
	if err != nil {
		return nil, err
	}
	s := &maskScan{h: raw.h, w: raw.w, decided: dec, hist: map[maskKey]int64{}, palette: raw.palette}
	keys := maskKeys(raw, dec, ignore)
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j] == keys[i] {
			j++
		}
		s.hist[keys[i]] += int64(j - i)
		i = j
	}
	return s, nil
}

// scanMasks decodes and scans the masks of pairs concurrently.
func scanMasks(pairs []pair, enc MaskEncoding, k, ignore int, stopEarly bool) ([]*maskScan, []error) {
	scans := make([]*maskScan, len(pairs))
	errs := runPairs(len(pairs), stopEarly, func(i int) error {
		raw, err := decodeMask(pairs[i].mask)
		if err != nil {
			return err
		}
		scans[i], err = scanRaw(pairs[i].mask, raw, enc, k, ignore)
		return err
	})
	return scans, errs
}

// inferTable makes the class table of masks read without one: labels 0 to
// the largest found (coloured by the first palette PNG's palette, else
// DefaultPalette), or, for colour masks, the colours found, sorted by RGB
// value and named #rrggbb. ignore (and ignoreColor) are kept as given.
func inferTable(pairs []pair, scans []*maskScan, ignore int, ignoreColor *[3]uint8) (ClassTable, error) {
	var colourFile, valueFile string
	maxV := -1
	colours := map[[3]uint8]bool{}
	var palette [][3]uint8
	for i, s := range scans {
		if s == nil {
			continue
		}
		for k := range s.hist {
			switch {
			case k&keyColour != 0:
				colourFile = pairs[i].mask
				if ignoreColor == nil || k.colour() != *ignoreColor {
					colours[k.colour()] = true
				}
			case k&keyBadBinary != 0:
			default:
				valueFile = pairs[i].mask
				if int(k) != ignore {
					maxV = max(maxV, int(k))
				}
			}
		}
		if s.decided == MaskPalette && palette == nil {
			palette = s.palette
		}
	}
	t := ClassTable{Ignore: ignore, IgnoreColor: ignoreColor}
	switch {
	case colourFile != "" && valueFile != "":
		return t, fmt.Errorf("the masks mix colour masks (%s) and index masks (%s), so no class table can be inferred; give a class table (data.classes) or a mask encoding", colourFile, valueFile)
	case colourFile != "":
		list := make([][3]uint8, 0, len(colours))
		for c := range colours {
			list = append(list, c)
		}
		slices.SortFunc(list, func(a, b [3]uint8) int {
			return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]), cmp.Compare(a[2], b[2]))
		})
		if len(list) > MaxLabel {
			return t, fmt.Errorf("the colour masks hold %d colours, too many to be classes; give a class table (data.classes)", len(list))
		}
		for _, c := range list {
			t.Classes = append(t.Classes, Class{Name: fmt.Sprintf("#%02x%02x%02x", c[0], c[1], c[2]), Color: c})
		}
	case maxV >= 0:
		def := DefaultPalette(maxV + 1)
		for i := range maxV + 1 {
			c := def[i]
			if i < len(palette) {
				c = palette[i]
			}
			t.Classes = append(t.Classes, Class{Name: fmt.Sprintf("class%d", i), Color: c})
		}
	default:
		return t, fmt.Errorf("the masks hold no class labels (only the ignore index or bad values), so no class table can be inferred")
	}
	return t, nil
}

// checked is what Check learns of one pair.
type checked struct {
	scan       *maskScan
	maskErr    error // decode failure
	encErr     error // does not fit the encoding
	imgErr     error
	imgW, imgH int
}

// Check examines a labelled data set the way OpenLabelled reads it (spec
// and opt as there; the training size, Augment, SkipBad and CacheBytes do
// not matter) and reports everything it finds instead of stopping at the
// first problem: pairs found, images and masks without a partner, size
// mismatches, files that do not decode, mask values or colours not in the
// class table (with pixel counts and the files), the encoding decided per
// mask, each class's pixels and suggested weights. Every image and mask is
// decoded, two at a time. It returns an error only when spec holds no
// layout it knows (such as an empty or missing folder) or the options are
// wrong.
func Check(spec string, opt LabelledOptions) (*CheckReport, error) {
	opt, infer, err := opt.resolve()
	if err != nil {
		return nil, fmt.Errorf("labelled data %s: %w", spec, err)
	}
	ps, err := findPairs(spec)
	if err != nil {
		return nil, err
	}
	r := &CheckReport{
		Spec: spec, Layout: ps.layout, Pairs: len(ps.pairs),
		UnpairedImages: nonNil(ps.unpairedImages), UnpairedMasks: nonNil(ps.unpairedMasks),
		SizeMismatches: []SizeMismatch{}, DecodeFailures: []FileError{}, MaskErrors: []FileError{},
		UnknownValues: []UnknownValue{}, Classes: []ClassStat{},
		Encoding: opt.Encoding, Decided: map[MaskEncoding]int{}, MaskSizes: map[string]int{},
		ClassesInferred: infer, Ignore: opt.Classes.Ignore, WeightMethod: MedianFrequencyBalancing,
	}
	k := len(opt.Classes.Classes)
	if infer {
		k = -1
	}
	res := make([]checked, len(ps.pairs))
	runPairs(len(ps.pairs), false, func(i int) error {
		p, c := ps.pairs[i], &res[i]
		if raw, err := decodeMask(p.mask); err != nil {
			c.maskErr = err
		} else if c.scan, err = scanRaw(p.mask, raw, opt.Encoding, k, opt.Classes.Ignore); err != nil {
			c.encErr = err
		}
		if h, w, err := imageSize(p.image); err != nil {
			c.imgErr = err
		} else {
			c.imgH, c.imgW = h, w
		}
		return nil
	})
	var scans []*maskScan
	for i, c := range res {
		p := ps.pairs[i]
		if c.imgErr != nil {
			r.DecodeFailures = append(r.DecodeFailures, FileError{p.image, c.imgErr.Error()})
		}
		if c.maskErr != nil {
			r.DecodeFailures = append(r.DecodeFailures, FileError{p.mask, c.maskErr.Error()})
		}
		if c.encErr != nil {
			r.MaskErrors = append(r.MaskErrors, FileError{p.mask, c.encErr.Error()})
		}
		scans = append(scans, c.scan)
		if c.scan == nil {
			continue
		}
		r.MaskSizes[fmt.Sprintf("%dx%d", c.scan.w, c.scan.h)]++
		if c.imgErr == nil && (c.imgW != c.scan.w || c.imgH != c.scan.h) {
			r.SizeMismatches = append(r.SizeMismatches, SizeMismatch{p.image, p.mask, c.imgW, c.imgH, c.scan.w, c.scan.h})
		}
	}
	r.table = opt.Classes
	if infer {
		if r.table, err = inferTable(ps.pairs, scans, opt.Classes.Ignore, opt.Classes.IgnoreColor); err != nil {
			if slices.ContainsFunc(scans, func(s *maskScan) bool { return s != nil }) {
				return nil, fmt.Errorf("labelled data %s: %w", spec, err)
			}
			// No mask could be read: the report's problems say why.
			r.table = ClassTable{Ignore: opt.Classes.Ignore}
		}
	}
	r.tally(ps.pairs, scans)
	r.addHints(ps.pairs)
	return r, nil
}

// nonNil makes JSON say [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// tally maps every scanned mask through the table: class pixels, unknown
// values, weights.
func (r *CheckReport) tally(pairs []pair, scans []*maskScan) {
	t := r.table
	lab := newLabeller(t)
	K := len(t.Classes)
	pixels := make([]int64, K)
	images := make([]int, K)
	present := make([]int64, K) // labelled pixels of the masks holding the class
	type unk struct {
		pixels int64
		files  []string
		n      int
	}
	unknown := map[maskKey]*unk{}
	for i, s := range scans {
		if s == nil {
			continue
		}
		r.Decided[s.decided]++
		if s.decided == MaskRGB && lab.dupErr != nil {
			r.MaskErrors = append(r.MaskErrors, FileError{pairs[i].mask, fmt.Sprintf("mask %s is a colour mask but %v", pairs[i].mask, lab.dupErr)})
			continue
		}
		local := make(map[int]int64)
		var labelled int64
		for k, n := range s.hist {
			v, ok := lab.label(k)
			if !ok {
				u := unknown[k]
				if u == nil {
					u = &unk{}
					unknown[k] = u
				}
				u.pixels += n
				u.n++
				if len(u.files) < maxListed {
					u.files = append(u.files, pairs[i].mask)
				}
				continue
			}
			if !t.Scored(int(v)) {
				r.IgnoredPixels += n
				if int(v) < K {
					pixels[v] += n
					local[int(v)] += 0
				}
				continue
			}
			local[int(v)] += n
			labelled += n
		}
		for c, n := range local {
			if t.Scored(c) {
				pixels[c] += n
				present[c] += labelled
			}
			images[c]++
		}
		r.LabelledPixels += labelled
	}
	for k, u := range unknown {
		r.UnknownValues = append(r.UnknownValues, UnknownValue{Value: k.String(), Pixels: u.pixels, Files: u.files, FileCount: u.n})
	}
	slices.SortFunc(r.UnknownValues, func(a, b UnknownValue) int {
		return cmp.Or(cmp.Compare(b.Pixels, a.Pixels), strings.Compare(a.Value, b.Value))
	})
	for c := range K {
		if !t.Scored(c) {
			present[c] = 0 // no weight for the ignored label
		}
	}
	weights := MedianFrequencyWeights(pixels, present)
	for c, cl := range t.Classes {
		st := ClassStat{Index: c, Name: cl.Name, Color: cl.Color, Pixels: pixels[c], Images: images[c], Ignored: !t.Scored(c)}
		if st.Ignored {
			st.Fraction = 0
		} else if r.LabelledPixels > 0 {
			st.Fraction = float64(pixels[c]) / float64(r.LabelledPixels)
		}
		st.Weight = weights[c]
		r.Classes = append(r.Classes, st)
	}
}

// MedianFrequencyWeights balances classes as SegNet does for CamVid (Eigen &
// Fergus 2015): weight = median(freq) / freq(class), where freq(class) is the
// class's pixels over the labelled pixels of the masks that hold it
// (present[c]). Classes never seen (present 0) get weight 0.
func MedianFrequencyWeights(pixels, present []int64) []float64 {
	freq := make([]float64, len(pixels))
	var seen []float64
	for c := range pixels {
		if pixels[c] > 0 && present[c] > 0 {
			freq[c] = float64(pixels[c]) / float64(present[c])
			seen = append(seen, freq[c])
		}
	}
	med := median(seen)
	w := make([]float64, len(pixels))
	for c, f := range freq {
		if f > 0 {
			w[c] = med / f
		}
	}
	return w
}

// median is the median of xs (0 for none); xs is reordered.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// addHints adds suggestions drawn from the findings.
func (r *CheckReport) addHints(pairs []pair) {
	var absent []string
	for _, c := range r.Classes {
		if !c.Ignored && c.Pixels == 0 {
			absent = append(absent, fmt.Sprintf("%d %s", c.Index, c.Name))
		}
	}
	if len(absent) > 0 && r.Pairs > 0 {
		if len(absent) > 12 {
			absent = append(absent[:12], fmt.Sprintf("... (%d in all)", len(absent)))
		}
		h := "classes that no mask holds: " + strings.Join(absent, ", ")
		if r.ClassesInferred {
			h += fmt.Sprintf("; inferred classes run from 0 to the largest label found, so a large label such as 255 may be a void label: set the ignore index to it (data.ignore_index)")
		}
		r.Hints = append(r.Hints, h)
	}
	if r.ClassesInferred && r.Pairs > 0 {
		r.Hints = append(r.Hints, "no class table was given, so the classes are the labels the masks hold; check against yours with --classes-from CONFIG (data.classes, data.ignore_index, data.mask_encoding)")
	}
	for _, p := range pairs {
		if ext := strings.ToLower(filepath.Ext(p.mask)); ext == ".jpg" || ext == ".jpeg" {
			r.Hints = append(r.Hints, "some masks are JPEG ("+p.mask+"), which is lossy and blurs label edges into new values: save masks as PNG")
			break
		}
	}
	if len(r.MaskSizes) > 1 {
		r.Hints = append(r.Hints, "the masks have several sizes: training resizes them all to data.height x data.width, and scoring uses each mask's own size")
	}
}

// Write prints the report for people: what was found, each problem with
// the files (a few per kind), the class histogram and weights.
func (r *CheckReport) Write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("data check: %s\n", r.Spec)
	p("layout:     %s\n", r.Layout)
	p("pairs:      %d\n", r.Pairs)
	if len(r.MaskSizes) > 0 {
		p("mask sizes: %s\n", countList(r.MaskSizes))
	}
	dec := map[string]int{}
	for k, v := range r.Decided {
		dec[string(k)] = v
	}
	if r.Encoding == MaskAuto {
		p("encoding:   auto, decided per file: %s\n", countList(dec))
	} else {
		p("encoding:   %s (%d files)\n", r.Encoding, r.Decided[r.Encoding])
	}
	src := "given"
	if r.ClassesInferred {
		src = "inferred from the masks"
	}
	ign := "none"
	if r.Ignore >= 0 {
		ign = fmt.Sprint(r.Ignore)
	}
	p("classes:    %d (%s), ignore index %s\n", len(r.Classes), src, ign)

	const most = 10
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		p("\n%s (%d):\n", title, len(items))
		for i, s := range items {
			if i == most {
				p("  ... and %d more\n", len(items)-most)
				break
			}
			p("  %s\n", s)
		}
	}
	list("images without a mask", r.UnpairedImages)
	list("masks without an image", r.UnpairedMasks)
	var lines []string
	for _, m := range r.SizeMismatches {
		lines = append(lines, fmt.Sprintf("mask %s is %dx%d but image %s is %dx%d", m.Mask, m.MaskWidth, m.MaskHeight, m.Image, m.ImageWidth, m.ImageHeight))
	}
	list("size mismatches (WxH)", lines)
	lines = nil
	for _, f := range r.DecodeFailures {
		lines = append(lines, f.Error)
	}
	list("files that cannot be decoded", lines)
	lines = nil
	for _, f := range r.MaskErrors {
		lines = append(lines, f.Error)
	}
	list("masks that do not fit the encoding", lines)
	lines = nil
	for _, u := range r.UnknownValues {
		files := strings.Join(u.Files, ", ")
		if u.FileCount > len(u.Files) {
			files += fmt.Sprintf(", ... (%d files)", u.FileCount)
		}
		lines = append(lines, fmt.Sprintf("%s: %s in %s", u.Value, pixelCount(u.Pixels), files))
	}
	if len(lines) > 0 {
		list("mask values not in the class table ("+r.table.String()+")", lines)
	}

	if len(r.Classes) > 0 {
		total := r.LabelledPixels + r.IgnoredPixels
		p("\nclass pixels: %d labelled", r.LabelledPixels)
		if r.Ignore >= 0 {
			p(", %d ignored (%.2f%% of all)", r.IgnoredPixels, pct(r.IgnoredPixels, total))
		}
		p("\n")
		nameW := len("class")
		for _, c := range r.Classes {
			nameW = max(nameW, len(c.Name))
		}
		p("  %5s  %-*s  %-13s  %12s  %7s  %6s  %7s\n", "index", nameW, "class", "colour", "pixels", "share", "masks", "weight")
		for _, c := range r.Classes {
			share, weight := fmt.Sprintf("%6.2f%%", 100*c.Fraction), fmt.Sprintf("%7.3f", c.Weight)
			if c.Ignored {
				share, weight = "ignored", "-"
			} else if c.Pixels == 0 {
				weight = "absent"
			}
			p("  %5d  %-*s  %-13s  %12d  %7s  %6d  %7s\n", c.Index, nameW, c.Name, colorString(c.Color), c.Pixels, share, c.Images, weight)
		}
		p("suggested class weights: %s\n", r.WeightMethod)
		if r.ClassesInferred {
			p("\nthe class table as config (data.classes):\n")
			for _, c := range r.Classes {
				p("  - {name: %q, color: [%d, %d, %d]}\n", c.Name, c.Color[0], c.Color[1], c.Color[2])
			}
		}
	}
	for _, h := range r.Hints {
		p("\nhint: %s\n", h)
	}
	if probs := r.Problems(); len(probs) > 0 {
		p("\nproblems: %s\n", strings.Join(probs, "; "))
	} else {
		p("\nno problems found\n")
	}
}

// pct is 100*a/b, 0 when b is 0.
func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// countList writes counts as "a (3), b (1)", most first.
func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%d)", k, m[k])
	}
	return strings.Join(parts, ", ")
}
