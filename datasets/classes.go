package datasets

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxLabel is the largest class index or ignore index a mask may use: labels
// are kept as 16-bit values, and one value is reserved for the pixels that
// augmentation moves in from outside the image.
const MaxLabel = 65534

// ClassTable is the set of classes a labelled data set is scored on: what
// each class index in a mask means, and which label is left out.
type ClassTable struct {
	// Classes are the classes, by index: a mask pixel of label i is
	// Classes[i].
	Classes []Class
	// Ignore is the label left out of the loss and the metrics (CamVid's void
	// 11, or 255); -1 means none. It may be a label past the classes (11 with
	// CamVid's 11 classes) or one of them (then that class stays in the table,
	// so that its name and colour are known, but is never scored). Note that
	// the zero value, 0, ignores class 0: set -1 when nothing is ignored.
	Ignore int
	// IgnoreColor is the colour ignored pixels have in RGB colour masks (for
	// example black for CamVid's colour masks), when Ignore is past the
	// classes; nil: ignored pixels have no colour of their own (for an
	// ignored class inside the table its Color already says it). Unused for
	// other encodings.
	IgnoreColor *[3]uint8
}

// Validate checks that the table has classes, that their names are set and
// different, and that the ignore index is -1 or a label in [0, MaxLabel].
// Class colours need not differ unless colour masks are read (OpenLabelled
// and Check say so when they do).
func (t ClassTable) Validate() error {
	if len(t.Classes) == 0 {
		return fmt.Errorf("class table: no classes; list them (data.classes: - {name: road, color: [128, 64, 128]} ...)")
	}
	if len(t.Classes) > MaxLabel+1 {
		return fmt.Errorf("class table: %d classes; at most %d are supported", len(t.Classes), MaxLabel+1)
	}
	seen := make(map[string]int, len(t.Classes))
	for i, c := range t.Classes {
		if strings.TrimSpace(c.Name) == "" {
			return fmt.Errorf("class table: class %d has no name; give every class a name", i)
		}
		if j, ok := seen[c.Name]; ok {
			return fmt.Errorf("class table: classes %d and %d are both called %q; give them different names", j, i, c.Name)
		}
		seen[c.Name] = i
	}
	if t.Ignore < -1 || t.Ignore > MaxLabel {
		return fmt.Errorf("class table: ignore index %d; use -1 (none) or a label in [0, %d] (such as 255)", t.Ignore, MaxLabel)
	}
	if t.IgnoreColor != nil {
		if t.Ignore < 0 {
			return fmt.Errorf("class table: an ignore colour %s is set but no ignore index; set the ignore index too", colorString(*t.IgnoreColor))
		}
		for i, c := range t.Classes {
			if c.Color == *t.IgnoreColor && i != t.Ignore {
				return fmt.Errorf("class table: the ignore colour %s is also the colour of class %d %s; colour masks could not tell them apart", colorString(c.Color), i, c.Name)
			}
		}
	}
	return nil
}

// Scored reports whether label is a class that counts in loss and metrics:
// in [0, len(Classes)) and not Ignore.
func (t ClassTable) Scored(label int) bool {
	return label >= 0 && label < len(t.Classes) && label != t.Ignore
}

// String describes the table in one line, for error messages: the classes
// by index (the middle of a long table left out) and the ignore index.
func (t ClassTable) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d classes: ", len(t.Classes))
	const head, tail = 8, 3
	for i, c := range t.Classes {
		if len(t.Classes) > head+tail+1 && i == head {
			fmt.Fprintf(&b, ", ...")
		}
		if len(t.Classes) > head+tail+1 && i >= head && i < len(t.Classes)-tail {
			continue
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", i, c.Name)
	}
	if t.Ignore >= 0 {
		fmt.Fprintf(&b, "; ignore %d", t.Ignore)
	} else {
		b.WriteString("; no ignore index")
	}
	return b.String()
}

// colorTable describes the class colours, for errors about colour masks.
func (t ClassTable) colorTable() string {
	var b strings.Builder
	const most = 12
	for i, c := range t.Classes {
		if i == most {
			fmt.Fprintf(&b, ", ... (%d more)", len(t.Classes)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s %s", i, c.Name, colorString(c.Color))
	}
	if t.IgnoreColor != nil {
		fmt.Fprintf(&b, "; ignore %d %s", t.Ignore, colorString(*t.IgnoreColor))
	}
	return b.String()
}

// colorString writes an RGB colour as (r,g,b).
func colorString(c [3]uint8) string { return fmt.Sprintf("(%d,%d,%d)", c[0], c[1], c[2]) }

// ParseColor reads an RGB colour written as "#rrggbb", "rrggbb" or
// "r,g,b" (decimal, each 0..255, spaces allowed; also "(r,g,b)" and
// "[r,g,b]").
func ParseColor(s string) ([3]uint8, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "#") || (len(t) == 6 && !strings.Contains(t, ",")) {
		h := strings.TrimPrefix(t, "#")
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil || len(h) != 6 {
			return [3]uint8{}, fmt.Errorf("colour %q: write it as #rrggbb or r,g,b", s)
		}
		return [3]uint8{uint8(v >> 16), uint8(v >> 8), uint8(v)}, nil
	}
	t = strings.Trim(t, "()[] ")
	parts := strings.Split(t, ",")
	if len(parts) != 3 {
		return [3]uint8{}, fmt.Errorf("colour %q: write it as #rrggbb or r,g,b", s)
	}
	var c [3]uint8
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 || v > 255 {
			return [3]uint8{}, fmt.Errorf("colour %q: component %q is not a number in 0..255", s, strings.TrimSpace(p))
		}
		c[i] = uint8(v)
	}
	return c, nil
}

// DefaultPalette returns n distinct colours, for classes that come without
// colours (index masks). They are the PASCAL VOC palette: index 0 is black,
// then (128,0,0), (0,128,0), (128,128,0), (0,0,128), ... built from the bits
// of the index, so that colour i is the same whatever n is and no two of the
// first 2^24 are alike.
func DefaultPalette(n int) [][3]uint8 {
	out := make([][3]uint8, max(n, 0))
	for i := range out {
		var c [3]uint8
		v := i
		for bit := 7; v > 0; bit-- {
			c[0] |= uint8(v&1) << bit
			c[1] |= uint8(v>>1&1) << bit
			c[2] |= uint8(v>>2&1) << bit
			v >>= 3
			if bit == 0 {
				break
			}
		}
		out[i] = c
	}
	return out
}

// MaskEncoding says how the pixels of a mask file are turned into labels.
type MaskEncoding string

// The mask encodings. MaskAuto is the default.
const (
	// MaskAuto decides per file: a palette PNG is MaskPalette, a colour
	// image (channels not all equal) MaskRGB, a grey image holding only 0 and
	// 255 (with 255 present, and neither a class nor the ignore index)
	// MaskBinary, and any other grey image MaskIndex. Check reports what it
	// decided.
	MaskAuto MaskEncoding = "auto"
	// MaskIndex reads 8- or 16-bit grey values as labels (a palette PNG's
	// palette indices too; a colour image whose channels are all equal is
	// grey).
	MaskIndex MaskEncoding = "index"
	// MaskPalette reads the palette indices of an indexed-colour PNG as
	// labels; the palette's colours are not used.
	MaskPalette MaskEncoding = "palette"
	// MaskRGB maps each pixel's colour to the class of that colour in the
	// class table (ClassTable.IgnoreColor to the ignore index).
	MaskRGB MaskEncoding = "rgb"
	// MaskBinary reads grey 0 as label 0 and 255 (65535 in 16-bit files) as
	// label 1; any other value but the ignore index is an error.
	MaskBinary MaskEncoding = "binary"
)

// MaskEncodings lists the encodings ParseMaskEncoding accepts.
var MaskEncodings = []MaskEncoding{MaskAuto, MaskIndex, MaskPalette, MaskRGB, MaskBinary}

// ParseMaskEncoding reads an encoding name (case-insensitive); "" is
// MaskAuto.
func ParseMaskEncoding(s string) (MaskEncoding, error) {
	e := MaskEncoding(strings.ToLower(strings.TrimSpace(s)))
	if e == "" {
		return MaskAuto, nil
	}
	for _, k := range MaskEncodings {
		if e == k {
			return e, nil
		}
	}
	names := make([]string, len(MaskEncodings))
	for i, k := range MaskEncodings {
		names[i] = string(k)
	}
	return "", fmt.Errorf("mask encoding %q: use one of %s", s, strings.Join(names, ", "))
}
