// Package safetensors reads and writes the safetensors file format, the
// format segtool keeps models in and that PyTorch (safetensors.torch.load_file)
// and other frameworks read.
//
// A file is an 8-byte little-endian uint64 N, then N bytes of a JSON object
// mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// plus an optional "__metadata__" object of string values, then the data
// buffer. Offsets are relative to the start of the buffer and all data is
// little-endian.
//
// What Encode writes matches what the reference (Rust) implementation writes
// closely enough for every reader: tensors laid out in name order with
// contiguous offsets, a compact header padded with spaces to a multiple of 8
// bytes so that the buffer starts aligned. Decode validates everything it
// reads and returns an error, never a panic or an allocation larger than the
// input, for a corrupt file.
package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header Decode accepts (100 MiB), the
// same limit as the reference implementation; a larger length field is
// taken to be corruption rather than a reason to allocate.
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the string metadata.
const metadataKey = "__metadata__"

// dtypeSizes holds the element size in bytes of every dtype the format
// defines. Decode rejects any other dtype.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Tensor is one named array in a file: its dtype ("F32", "F64", "I32",
// "I64", "U8", "BF16", ... as the format spells them), its shape (an empty
// shape is a scalar holding one element) and its raw little-endian bytes.
type Tensor struct {
	DType string
	Shape []int
	Data  []byte
}

// F32 returns an F32 tensor holding a little-endian copy of v. It does not
// check len(v) against shape: Encode and Write do, so a mismatch is an error
// there rather than a panic here.
func F32(shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{DType: "F32", Shape: slices.Clone(shape), Data: b}
}

// F64 returns an F64 tensor holding a little-endian copy of v; like F32 it
// leaves checking len(v) against shape to Encode.
func F64(shape []int, v []float64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return Tensor{DType: "F64", Shape: slices.Clone(shape), Data: b}
}

// I64 returns an I64 tensor holding a little-endian copy of v; like F32 it
// leaves checking len(v) against shape to Encode.
func I64(shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{DType: "I64", Shape: slices.Clone(shape), Data: b}
}

// NumElements returns the product of the shape (1 for a scalar), or an error
// for a negative dimension or a product that overflows an int.
func (t Tensor) NumElements() (int, error) {
	return numElements(t.Shape)
}

func numElements(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has negative dimension %d", shape, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n = int(lo)
	}
	return n, nil
}

// check returns the element count after making sure the dtype is known and
// Data holds exactly one element's bytes per element of the shape.
func (t Tensor) check() (int, error) {
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q", t.DType)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return 0, err
	}
	hi, want := bits.Mul64(uint64(n), uint64(size))
	if hi != 0 || want != uint64(len(t.Data)) {
		return 0, fmt.Errorf("%s %v needs %d x %d bytes but data has %d", t.DType, t.Shape, n, size, len(t.Data))
	}
	return n, nil
}

// Float32s returns the values of an F32 or F64 tensor as float32 (F64 values
// are rounded). Other dtypes, and data whose length does not match the
// shape, are errors.
func (t Tensor) Float32s() ([]float32, error) {
	n, err := t.check()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	switch t.DType {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	default:
		return nil, fmt.Errorf("dtype %s is not F32 or F64", t.DType)
	}
	return out, nil
}

// Float64s returns the values of an F32 or F64 tensor as float64. Other
// dtypes, and data whose length does not match the shape, are errors.
func (t Tensor) Float64s() ([]float64, error) {
	n, err := t.check()
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	switch t.DType {
	case "F32":
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
	case "F64":
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
	default:
		return nil, fmt.Errorf("dtype %s is not F32 or F64", t.DType)
	}
	return out, nil
}

// Int64s returns the values of an integer tensor (I8, I16, I32, I64, U8,
// U16, U32, U64) as int64. A U64 value above math.MaxInt64, a non-integer
// dtype, or data whose length does not match the shape is an error.
func (t Tensor) Int64s() ([]int64, error) {
	n, err := t.check()
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	le := binary.LittleEndian
	for i := range out {
		switch t.DType {
		case "I8":
			out[i] = int64(int8(t.Data[i]))
		case "U8":
			out[i] = int64(t.Data[i])
		case "I16":
			out[i] = int64(int16(le.Uint16(t.Data[2*i:])))
		case "U16":
			out[i] = int64(le.Uint16(t.Data[2*i:]))
		case "I32":
			out[i] = int64(int32(le.Uint32(t.Data[4*i:])))
		case "U32":
			out[i] = int64(le.Uint32(t.Data[4*i:]))
		case "I64":
			out[i] = int64(le.Uint64(t.Data[8*i:]))
		case "U64":
			v := le.Uint64(t.Data[8*i:])
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("U64 element %d = %d overflows int64", i, v)
			}
			out[i] = int64(v)
		default:
			return nil, fmt.Errorf("dtype %s is not an integer type", t.DType)
		}
	}
	return out, nil
}

// File is a decoded safetensors file. Tensors and Metadata are never nil
// after Decode, though either may be empty.
type File struct {
	Tensors  map[string]Tensor
	Metadata map[string]string
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for name := range f.Tensors {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Encode writes tensors and meta (which may be nil) to w in safetensors
// form: tensors sorted by name with contiguous offsets, the header padded
// with spaces to a multiple of 8 bytes, and no "__metadata__" entry when meta
// is empty. Every tensor is checked (known dtype, no negative dimension,
// Data length = element count x dtype size, name not "__metadata__") before
// anything is written, so an invalid tensor leaves w untouched.
func Encode(w io.Writer, tensors map[string]Tensor, meta map[string]string) error {
	header, names, err := buildHeader(tensors, meta)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("writing header length: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	for _, name := range names {
		if _, err := w.Write(tensors[name].Data); err != nil {
			return fmt.Errorf("writing tensor %q: %w", name, err)
		}
	}
	return nil
}

// buildHeader validates the tensors and returns the padded JSON header and
// the tensor names in the order their data follows it.
func buildHeader(tensors map[string]Tensor, meta map[string]string) ([]byte, []string, error) {
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	slices.Sort(names)

	// The header is written by hand rather than by marshalling a map so that
	// the key order (metadata first, then tensors by name, then dtype, shape,
	// data_offsets inside each) is fixed and matches the reference writer.
	var b bytes.Buffer
	b.WriteByte('{')
	if len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			// JSON strings are UTF-8: encoding/json would silently replace
			// bad bytes, and the file would no longer say what was asked.
			if !utf8.ValidString(k) || !utf8.ValidString(meta[k]) {
				return nil, nil, fmt.Errorf("metadata %q is not valid UTF-8", k)
			}
		}
		writeJSONString(&b, metadataKey)
		b.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, meta[k])
		}
		b.WriteByte('}')
	}
	var offset uint64
	for i, name := range names {
		t := tensors[name]
		if name == metadataKey {
			return nil, nil, fmt.Errorf("tensor name %q is reserved for metadata", name)
		}
		if !utf8.ValidString(name) {
			return nil, nil, fmt.Errorf("tensor name %q is not valid UTF-8", name)
		}
		if _, err := t.check(); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if i > 0 || len(meta) > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, t.DType)
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := offset + uint64(len(t.Data))
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, offset, end)
		offset = end
	}
	b.WriteByte('}')
	// Padding to a multiple of 8 keeps the buffer 8-byte aligned for readers
	// that map the file and view the data in place.
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, nil, fmt.Errorf("header of %d bytes is over the %d-byte limit readers accept", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), names, nil
}

// writeJSONString writes s as a JSON string without the HTML escaping of
// encoding/json's default, so names like "a<b" stay readable in the header.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // cannot fail for a string; writing to a bytes.Buffer never fails
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// entry is one tensor's header record as read; pointers tell a missing
// field from a zero one.
type entry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// Decode reads a safetensors file of size bytes from r and validates it:
// the header length must fit in the file and be at most MaxHeaderSize, the
// header must be a JSON object without duplicate keys, every tensor must
// have a known dtype, a shape without negative dimensions whose element
// count does not overflow, and data_offsets [begin, end] inside the buffer
// with end-begin = element count x dtype size and no two tensors
// overlapping; metadata values must be strings. Gaps between tensors and
// bytes after the last are allowed, as other writers may align data.
// Each tensor's Data is a slice of one shared buffer (with its capacity
// capped, so appending to one cannot overwrite another).
//
// Decode allocates no more than the bytes r actually delivers (plus
// amortised growth), so a lying length field cannot make it reserve
// gigabytes. The errors carry no file name; Read adds it.
func Decode(r io.Reader, size int64) (*File, error) {
	if size < 8 {
		return nil, fmt.Errorf("truncated: file has %d bytes, fewer than the 8-byte header length", max(size, 0))
	}
	var nb [8]byte
	if _, err := io.ReadFull(r, nb[:]); err != nil {
		return nil, fmt.Errorf("reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > uint64(size-8) {
		return nil, fmt.Errorf("truncated: header says %d bytes but file has %d", n, size)
	}
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("header length %d is over the %d-byte limit", n, MaxHeaderSize)
	}
	header, err := readN(r, int64(n))
	if err != nil {
		return nil, fmt.Errorf("reading %d-byte header: %w", n, err)
	}
	bufLen := uint64(size-8) - n

	entries, meta, err := parseHeader(header)
	if err != nil {
		return nil, err
	}

	type span struct {
		name       string
		begin, end uint64
	}
	spans := make([]span, 0, len(entries))
	f := &File{Tensors: make(map[string]Tensor, len(entries)), Metadata: meta}
	for name, e := range entries {
		t, begin, end, err := checkEntry(e, bufLen)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		f.Tensors[name] = t
		spans = append(spans, span{name, begin, end})
	}
	slices.SortFunc(spans, func(a, b span) int {
		if c := cmpU64(a.begin, b.begin); c != 0 {
			return c
		}
		return cmpU64(a.end, b.end)
	})
	var need uint64
	for i, s := range spans {
		if i > 0 && s.begin < spans[i-1].end {
			p := spans[i-1]
			return nil, fmt.Errorf("tensors %q and %q overlap: data_offsets [%d,%d] and [%d,%d]",
				p.name, s.name, p.begin, p.end, s.begin, s.end)
		}
		need = max(need, s.end)
	}
	// Only the bytes some tensor uses are read; trailing bytes are skipped.
	buf, err := readN(r, int64(need))
	if err != nil {
		return nil, fmt.Errorf("reading %d bytes of tensor data: %w", need, err)
	}
	for _, s := range spans {
		t := f.Tensors[s.name]
		t.Data = buf[s.begin:s.end:s.end]
		f.Tensors[s.name] = t
	}
	return f, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseHeader splits the header into tensor entries and metadata, rejecting
// anything that is not a single JSON object with unique keys.
func parseHeader(header []byte) (map[string]json.RawMessage, map[string]string, error) {
	trimmed := bytes.TrimLeft(header, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, nil, errors.New("header is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("header is not valid JSON: %w", err)
	}
	entries := make(map[string]json.RawMessage)
	meta := make(map[string]string)
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header is not valid JSON: key %v is not a string", tok)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: value of %q: %w", key, err)
		}
		if _, dup := entries[key]; dup || (key == metadataKey && seenMeta) {
			return nil, nil, fmt.Errorf("header has key %q twice", key)
		}
		if key == metadataKey {
			seenMeta = true
			if err := parseMetadata(raw, meta); err != nil {
				return nil, nil, err
			}
			continue
		}
		entries[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("header is not valid JSON: %w", err)
	}
	if rest := bytes.TrimSpace(header[dec.InputOffset():]); len(rest) > 0 {
		return nil, nil, fmt.Errorf("header has %d unexpected bytes after the JSON object", len(rest))
	}
	return entries, meta, nil
}

func parseMetadata(raw json.RawMessage, meta map[string]string) error {
	if string(raw) == "null" { // the reference writer's "no metadata"
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("%s is not an object of strings: %w", metadataKey, err)
	}
	for k, v := range obj {
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return fmt.Errorf("%s %q: value %s is not a string", metadataKey, k, truncate(v))
		}
		meta[k] = s
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// checkEntry validates one tensor record against a buffer of bufLen bytes
// and returns the tensor (without Data) and its byte range.
func checkEntry(raw json.RawMessage, bufLen uint64) (Tensor, uint64, uint64, error) {
	var e entry
	if len(raw) == 0 || raw[0] != '{' {
		return Tensor{}, 0, 0, fmt.Errorf("entry %s is not an object", truncate(raw))
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return Tensor{}, 0, 0, fmt.Errorf("bad entry: %w", err)
	}
	if e.DType == nil {
		return Tensor{}, 0, 0, errors.New("no dtype")
	}
	size, ok := dtypeSizes[*e.DType]
	if !ok {
		return Tensor{}, 0, 0, fmt.Errorf("unknown dtype %q", *e.DType)
	}
	if e.Shape == nil {
		return Tensor{}, 0, 0, errors.New("no shape")
	}
	shape := make([]int, len(*e.Shape))
	count := uint64(1)
	for i, d := range *e.Shape {
		if d < 0 {
			return Tensor{}, 0, 0, fmt.Errorf("shape %v has negative dimension %d", *e.Shape, d)
		}
		hi, lo := bits.Mul64(count, uint64(d))
		if hi != 0 || lo > math.MaxInt64/8 || uint64(d) > math.MaxInt {
			return Tensor{}, 0, 0, fmt.Errorf("shape %v has too many elements", *e.Shape)
		}
		count = lo
		shape[i] = int(d)
	}
	if len(e.DataOffsets) != 2 {
		return Tensor{}, 0, 0, fmt.Errorf("data_offsets %v should be [begin, end]", e.DataOffsets)
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	switch {
	case begin > end:
		return Tensor{}, 0, 0, fmt.Errorf("data_offsets [%d,%d] are reversed", begin, end)
	case end > bufLen:
		return Tensor{}, 0, 0, fmt.Errorf("data_offsets [%d,%d] run past the end of the %d-byte data buffer", begin, end, bufLen)
	case end-begin != count*uint64(size): // count <= MaxInt64/8, so no overflow
		return Tensor{}, 0, 0, fmt.Errorf("data_offsets [%d,%d] hold %d bytes but %s %v needs %d",
			begin, end, end-begin, *e.DType, *e.Shape, count*uint64(size))
	}
	return Tensor{DType: *e.DType, Shape: shape}, begin, end, nil
}

// readN reads exactly n bytes, growing its buffer as data arrives so that
// memory follows what r delivers rather than what a header claims.
func readN(r io.Reader, n int64) ([]byte, error) {
	const chunk = 1 << 20
	buf := make([]byte, 0, min(n, chunk))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(n-int64(len(buf)), int64(cap(buf)))))
		}
		m := int(min(n-int64(len(buf)), int64(cap(buf)-len(buf))))
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+m])
		buf = buf[:len(buf)+got]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("truncated: got %d of %d bytes: %w", len(buf), n, err)
		}
	}
	return buf, nil
}

// Read opens and decodes the safetensors file at path; every error starts
// with the path.
func Read(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the path
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	f, err := Decode(bufio.NewReaderSize(fh, 1<<16), st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Write encodes tensors and meta (which may be nil) to path atomically: it
// writes a temporary file in the same directory, syncs it, and renames it
// over path, so readers see either the old file or the complete new one.
// On any error the old file at path is untouched and the temporary file is
// removed. A new file gets mode 0644; an existing file's mode is kept.
func Write(path string, tensors map[string]Tensor, meta map[string]string) (err error) {
	// Validate before touching the disk: a bad tensor is the common error
	// and needs no temporary file at all.
	if _, _, err := buildHeader(tensors, meta); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: creating temporary file: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := Encode(bw, tensors, meta); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("%s: writing: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Sync before rename: otherwise a crash can leave the new name pointing
	// at a file whose data never reached the disk.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: syncing: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: closing: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Syncing the directory makes the rename itself durable; not every
	// platform allows opening a directory for that, so it is best effort.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
