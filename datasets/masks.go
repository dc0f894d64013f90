package datasets

import (
	"bytes"
	"cmp"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gocv.io/x/gocv"
)

// rawKind is what a mask file holds before an encoding gives it meaning.
type rawKind int

const (
	rawGrey    rawKind = iota // grey levels in v
	rawPalette                // palette indices in v, colours in palette
	rawColor                  // RGB in rgb (channels not all equal)
)

// rawMask is a decoded mask file.
type rawMask struct {
	w, h    int
	kind    rawKind
	bits    int        // 8 or 16: depth of v for rawGrey
	v       []uint16   // rawGrey, rawPalette: one value per pixel
	rgb     []uint8    // rawColor: 3 bytes (R, G, B) per pixel
	palette [][3]uint8 // rawPalette: the PNG's palette
}

// pngSignature starts every PNG file.
var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// decodeMask reads a mask file. PNGs are decoded by Go's image/png, which
// (unlike OpenCV) hands out a palette PNG's indices; other formats, and PNGs
// Go refuses, go through OpenCV unchanged (any depth, any channels). A colour
// image whose channels are equal everywhere is returned as grey.
func decodeMask(path string) (*rawMask, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) == 0 {
		return nil, decodeError(path)
	}
	if bytes.HasPrefix(data, pngSignature) {
		if img, err := png.Decode(bytes.NewReader(data)); err == nil {
			return normaliseMask(fromGoImage(img)), nil
		}
	}
	m, err := fromOpenCV(path, data)
	if err != nil {
		return nil, err
	}
	return normaliseMask(m), nil
}

// fromGoImage converts what image/png decodes into a rawMask.
func fromGoImage(img image.Image) *rawMask {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	m := &rawMask{w: w, h: h}
	switch im := img.(type) {
	case *image.Gray:
		m.kind, m.bits, m.v = rawGrey, 8, make([]uint16, w*h)
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+w]
			for x, p := range row {
				m.v[y*w+x] = uint16(p)
			}
		}
	case *image.Gray16:
		m.kind, m.bits, m.v = rawGrey, 16, make([]uint16, w*h)
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+2*w]
			for x := range w {
				m.v[y*w+x] = uint16(row[2*x])<<8 | uint16(row[2*x+1])
			}
		}
	case *image.Paletted:
		m.kind, m.v = rawPalette, make([]uint16, w*h)
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+w]
			for x, p := range row {
				m.v[y*w+x] = uint16(p)
			}
		}
		m.palette = make([][3]uint8, len(im.Palette))
		for i, c := range im.Palette {
			r, g, bl, _ := c.RGBA()
			m.palette[i] = [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
		}
	case *image.NRGBA:
		m.kind, m.rgb = rawColor, make([]uint8, 3*w*h)
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+4*w]
			for x := range w {
				copy(m.rgb[3*(y*w+x):], row[4*x:4*x+3])
			}
		}
	case *image.RGBA:
		m.kind, m.rgb = rawColor, make([]uint8, 3*w*h)
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+4*w]
			for x := range w {
				copy(m.rgb[3*(y*w+x):], row[4*x:4*x+3])
			}
		}
	default: // 16-bit colour: the high byte of each channel, alpha dropped
		m.kind, m.rgb = rawColor, make([]uint8, 3*w*h)
		for y := range h {
			for x := range w {
				r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				if a > 0 && a < 0xffff { // undo premultiplication
					r, g, bl = r*0xffff/a, g*0xffff/a, bl*0xffff/a
				}
				o := 3 * (y*w + x)
				m.rgb[o], m.rgb[o+1], m.rgb[o+2] = uint8(r>>8), uint8(g>>8), uint8(bl>>8)
			}
		}
	}
	return m
}

// fromOpenCV decodes a non-PNG mask with OpenCV, keeping its depth.
func fromOpenCV(path string, data []byte) (*rawMask, error) {
	mat, err := gocv.IMDecode(data, gocv.IMReadUnchanged)
	if err != nil {
		return nil, decodeError(path)
	}
	defer mat.Close()
	if mat.Empty() {
		return nil, decodeError(path)
	}
	w, h := mat.Cols(), mat.Rows()
	m := &rawMask{w: w, h: h}
	n := w * h
	switch mat.Type() {
	case gocv.MatTypeCV8UC1:
		pix, err := mat.DataPtrUint8()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		m.kind, m.bits, m.v = rawGrey, 8, make([]uint16, n)
		for i, p := range pix[:n] {
			m.v[i] = uint16(p)
		}
	case gocv.MatTypeCV16UC1:
		pix, err := mat.DataPtrUint16()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		m.kind, m.bits, m.v = rawGrey, 16, append([]uint16(nil), pix[:n]...)
	case gocv.MatTypeCV8UC3, gocv.MatTypeCV8UC4:
		pix, err := mat.DataPtrUint8()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		ch := mat.Channels()
		m.kind, m.rgb = rawColor, make([]uint8, 3*n)
		for i := range n { // OpenCV is BGR(A)
			m.rgb[3*i], m.rgb[3*i+1], m.rgb[3*i+2] = pix[ch*i+2], pix[ch*i+1], pix[ch*i]
		}
	case gocv.MatTypeCV16UC3, gocv.MatTypeCV16UC4:
		pix, err := mat.DataPtrUint16()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		ch := mat.Channels()
		m.kind, m.rgb = rawColor, make([]uint8, 3*n)
		for i := range n {
			m.rgb[3*i], m.rgb[3*i+1], m.rgb[3*i+2] = uint8(pix[ch*i+2]>>8), uint8(pix[ch*i+1]>>8), uint8(pix[ch*i]>>8)
		}
	default:
		return nil, fmt.Errorf("decode %s: pixel type %v is not a mask type (want 8- or 16-bit grey, colour or palette); save the mask as an 8-bit PNG", path, mat.Type())
	}
	return m, nil
}

// normaliseMask turns a colour mask whose channels are equal everywhere into
// an 8-bit grey one (tools often save index masks as RGB).
func normaliseMask(m *rawMask) *rawMask {
	if m.kind != rawColor {
		return m
	}
	n := m.w * m.h
	for i := range n {
		if m.rgb[3*i] != m.rgb[3*i+1] || m.rgb[3*i] != m.rgb[3*i+2] {
			return m
		}
	}
	v := make([]uint16, n)
	for i := range n {
		v[i] = uint16(m.rgb[3*i])
	}
	return &rawMask{w: m.w, h: m.h, kind: rawGrey, bits: 8, v: v}
}

// firstColour returns a pixel whose channels differ, for messages.
func (m *rawMask) firstColour() (x, y int, c [3]uint8) {
	for i := range m.w * m.h {
		p := [3]uint8{m.rgb[3*i], m.rgb[3*i+1], m.rgb[3*i+2]}
		if p[0] != p[1] || p[0] != p[2] {
			return i % m.w, i / m.w, p
		}
	}
	return 0, 0, [3]uint8{}
}

// describe says what the file holds, for messages.
func (m *rawMask) describe() string {
	switch m.kind {
	case rawGrey:
		return fmt.Sprintf("%d-bit grey", m.bits)
	case rawPalette:
		return "palette (indexed colour)"
	}
	return "colour"
}

// decideEncoding picks the encoding of one mask file under enc. k is the
// number of classes and ignore the ignore index, or k < 0 when the classes
// are still to be inferred from the masks.
func decideEncoding(path string, m *rawMask, enc MaskEncoding, k, ignore int) (MaskEncoding, error) {
	switch enc {
	case MaskAuto:
		switch m.kind {
		case rawPalette:
			return MaskPalette, nil
		case rawColor:
			return MaskRGB, nil
		}
		full := uint16(255)
		if m.bits == 16 {
			full = 65535
		}
		if int(full) == ignore || (k >= 0 && int(full) < k) {
			return MaskIndex, nil
		}
		hasFull := false
		for _, v := range m.v {
			switch v {
			case 0:
			case full:
				hasFull = true
			default:
				return MaskIndex, nil
			}
		}
		if hasFull {
			return MaskBinary, nil
		}
		return MaskIndex, nil
	case MaskIndex:
		if m.kind == rawColor {
			x, y, c := m.firstColour()
			return "", fmt.Errorf("mask %s is a colour image (pixel %d,%d is %s) but the mask encoding is index, which wants grey class indices; use mask encoding rgb (colours mapped through the class colours) or auto", path, x, y, colorString(c))
		}
		return MaskIndex, nil
	case MaskPalette:
		if m.kind != rawPalette {
			return "", fmt.Errorf("mask %s is a %s image, not a palette (indexed-colour) PNG, but the mask encoding is palette; use index for grey masks, rgb for colour masks, or auto", path, m.describe())
		}
		return MaskPalette, nil
	case MaskRGB:
		if m.kind == rawGrey && m.bits == 16 {
			return "", fmt.Errorf("mask %s is a 16-bit grey image but the mask encoding is rgb; use index (or auto) for grey masks", path)
		}
		return MaskRGB, nil
	case MaskBinary:
		if m.kind == rawColor {
			x, y, c := m.firstColour()
			return "", fmt.Errorf("mask %s is a colour image (pixel %d,%d is %s) but the mask encoding is binary, which wants grey 0/255; use rgb or auto", path, x, y, colorString(c))
		}
		if m.kind == rawPalette {
			for _, v := range m.v {
				if int(v) >= len(m.palette) {
					return "", fmt.Errorf("mask %s: palette index %d is past its %d-colour palette; the file is broken", path, v, len(m.palette))
				}
				if c := m.palette[v]; c[0] != c[1] || c[0] != c[2] {
					return "", fmt.Errorf("mask %s is a palette PNG with colour %s in use but the mask encoding is binary, which wants grey 0/255; use palette or auto", path, colorString(c))
				}
			}
		}
		return MaskBinary, nil
	}
	return "", fmt.Errorf("mask encoding %q: use one of auto, index, palette, rgb, binary", enc)
}

// maskKey is one pixel's meaning before the class table maps it to a label:
// a label (index, palette and binary masks), a colour (colour masks), or a
// value a binary mask may not hold.
type maskKey uint32

const (
	keyColour    maskKey = 1 << 30 // | r<<16 | g<<8 | b
	keyBadBinary maskKey = 1 << 29 // | the raw value
	keyValueMask maskKey = 1<<24 - 1
)

// colourKey is the key of an RGB colour.
func colourKey(c [3]uint8) maskKey {
	return keyColour | maskKey(c[0])<<16 | maskKey(c[1])<<8 | maskKey(c[2])
}

// colour is the RGB colour of a colour key.
func (k maskKey) colour() [3]uint8 { return [3]uint8{uint8(k >> 16), uint8(k >> 8), uint8(k)} }

// String is how reports and errors name a key.
func (k maskKey) String() string {
	switch {
	case k&keyColour != 0:
		return "colour " + colorString(k.colour())
	case k&keyBadBinary != 0:
		return fmt.Sprintf("value %d", k&keyValueMask)
	}
	return fmt.Sprintf("value %d", k)
}

// maskKeys gives every pixel its key under the decided encoding.
func maskKeys(m *rawMask, enc MaskEncoding, ignore int) []maskKey {
	n := m.w * m.h
	keys := make([]maskKey, n)
	switch enc {
	case MaskIndex, MaskPalette:
		for i, v := range m.v {
			keys[i] = maskKey(v)
		}
	case MaskBinary:
		full := 255
		if m.kind == rawGrey && m.bits == 16 {
			full = 65535
		}
		for i, v := range m.v {
			g := int(v)
			if m.kind == rawPalette {
				g = int(m.palette[v][0])
			}
			switch g {
			case 0:
				keys[i] = 0
			case full:
				keys[i] = 1
			default:
				if g == ignore {
					keys[i] = maskKey(g)
				} else {
					keys[i] = keyBadBinary | maskKey(g)
				}
			}
		}
	case MaskRGB:
		switch m.kind {
		case rawColor:
			for i := range n {
				keys[i] = colourKey([3]uint8{m.rgb[3*i], m.rgb[3*i+1], m.rgb[3*i+2]})
			}
		case rawPalette:
			for i, v := range m.v {
				c := [3]uint8{}
				if int(v) < len(m.palette) {
					c = m.palette[v]
				}
				keys[i] = colourKey(c)
			}
		default:
			for i, v := range m.v {
				g := uint8(v)
				keys[i] = colourKey([3]uint8{g, g, g})
			}
		}
	}
	return keys
}

// labeller maps keys to labels through a class table.
type labeller struct {
	table   ClassTable
	colours map[[3]uint8]uint16
	dupErr  error // two classes share a colour: colour masks are ambiguous
}

// newLabeller prepares the lookups of a (valid) table.
func newLabeller(t ClassTable) *labeller {
	l := &labeller{table: t, colours: make(map[[3]uint8]uint16, len(t.Classes)+1)}
	for i, c := range t.Classes {
		if j, ok := l.colours[c.Color]; ok && l.dupErr == nil {
			l.dupErr = fmt.Errorf("classes %d %s and %d %s have the same colour %s, so colour masks cannot tell them apart; give them different colours in the class table",
				j, t.Classes[j].Name, i, c.Name, colorString(c.Color))
			continue
		}
		l.colours[c.Color] = uint16(i)
	}
	if t.IgnoreColor != nil {
		l.colours[*t.IgnoreColor] = uint16(t.Ignore)
	}
	return l
}

// label maps one key; ok is false for a key the table does not know.
func (l *labeller) label(k maskKey) (uint16, bool) {
	switch {
	case k&keyColour != 0:
		v, ok := l.colours[k.colour()]
		return v, ok
	case k&keyBadBinary != 0:
		return 0, false
	}
	if int(k) < len(l.table.Classes) || int(k) == l.table.Ignore {
		return uint16(k), true
	}
	return 0, false
}

// keyCount is a key and how many pixels have it.
type keyCount struct {
	key    maskKey
	pixels int64
}

// labels maps every key of a mask to its label. A key the table does not
// know makes the error, which names the file, the most common such key (and
// how many others there are) and the table.
func (l *labeller) labels(path string, keys []maskKey, enc MaskEncoding) ([]uint16, error) {
	if enc == MaskRGB && l.dupErr != nil {
		return nil, fmt.Errorf("mask %s is a colour mask but %w", path, l.dupErr)
	}
	out := make([]uint16, len(keys))
	var bad map[maskKey]int64
	last, lastLab, lastOK := maskKey(1<<31), uint16(0), false
	for i, k := range keys {
		if k != last {
			last = k
			lastLab, lastOK = l.label(k)
		}
		if !lastOK {
			if bad == nil {
				bad = map[maskKey]int64{}
			}
			bad[k]++
			continue
		}
		out[i] = lastLab
	}
	if bad != nil {
		return nil, l.unknownError(path, enc, bad)
	}
	return out, nil
}

// unknownError is the error for keys not in the table.
func (l *labeller) unknownError(path string, enc MaskEncoding, bad map[maskKey]int64) error {
	counts := sortedCounts(bad)
	top := counts[0]
	others := ""
	if len(counts) > 1 {
		others = fmt.Sprintf(" (and %d other unknown value(s))", len(counts)-1)
	}
	hint := ""
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".jpg" || ext == ".jpeg" {
		hint = "; JPEG is lossy and blurs the edges of masks: save masks as PNG"
	}
	switch {
	case top.key&keyBadBinary != 0:
		return fmt.Errorf("mask %s: %s (%s)%s is neither 0 nor 255, but the mask encoding is binary; fix the mask, or use index masks and a class table%s",
			path, top.key, pixelCount(top.pixels), others, hint)
	case top.key&keyColour != 0:
		return fmt.Errorf("mask %s: %s (%s)%s is not the colour of any class (%s); fix the mask or add the colour to the class table (data.classes)%s",
			path, top.key, pixelCount(top.pixels), others, l.table.colorTable(), hint)
	}
	return fmt.Errorf("mask %s (%s): %s (%s)%s is not a class of the table (%s); fix the mask, add the class to data.classes, or set data.ignore_index to it%s",
		path, enc, top.key, pixelCount(top.pixels), others, l.table.String(), hint)
}

// pixelCount writes "1 pixel" or "n pixels".
func pixelCount(n int64) string {
	if n == 1 {
		return "1 pixel"
	}
	return fmt.Sprintf("%d pixels", n)
}

// sortedCounts lists a histogram most common first (ties by key).
func sortedCounts(h map[maskKey]int64) []keyCount {
	out := make([]keyCount, 0, len(h))
	for k, n := range h {
		out = append(out, keyCount{k, n})
	}
	slices.SortFunc(out, func(a, b keyCount) int {
		if a.pixels != b.pixels {
			return cmp.Compare(b.pixels, a.pixels)
		}
		return cmp.Compare(a.key, b.key)
	})
	return out
}
