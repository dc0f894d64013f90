package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleTensors() map[string]Tensor {
	return map[string]Tensor{
		"encoder.down1.conv1.weight": F32([]int{2, 1, 3, 3}, []float32{
			1, 2, 3, 4, 5, 6, 7, 8, 9,
			-1, -2, -3, -4, -5, -6, -7, -8, float32(math.Inf(1)),
		}),
		"encoder.down1.conv1.bias": F64([]int{2}, []float64{0.5, -1e300}),
		"step":                     I64([]int{}, []int64{-42}),
		"empty":                    F32([]int{0, 4}, nil),
		"mask":                     {DType: "U8", Shape: []int{3}, Data: []byte{0, 1, 255}},
	}
}

func encode(t *testing.T, tensors map[string]Tensor, meta map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Encode(&b, tensors, meta))
	return b.Bytes()
}

func decode(b []byte) (*File, error) { return Decode(bytes.NewReader(b), int64(len(b))) }

func TestSafetensorsRoundTrip(t *testing.T) {
	in := sampleTensors()
	meta := map[string]string{"kind": "ae", "config": `{"channels":[16,32]}`, "ünïcode": "ok <&>"}
	f, err := decode(encode(t, in, meta))
	require.NoError(t, err)
	assert.Equal(t, meta, f.Metadata)
	assert.Equal(t, []string{"empty", "encoder.down1.conv1.bias", "encoder.down1.conv1.weight", "mask", "step"}, f.Names())
	for name, want := range in {
		got := f.Tensors[name]
		assert.Equal(t, want.DType, got.DType, name)
		assert.Equal(t, want.Shape, got.Shape, name)
		assert.Equal(t, len(want.Data), len(got.Data), name)
		if len(want.Data) > 0 {
			assert.Equal(t, want.Data, got.Data, name)
		}
	}

	w, err := f.Tensors["encoder.down1.conv1.weight"].Float32s()
	require.NoError(t, err)
	assert.Equal(t, float32(9), w[8])
	assert.True(t, math.IsInf(float64(w[17]), 1))
	b64, err := f.Tensors["encoder.down1.conv1.bias"].Float64s()
	require.NoError(t, err)
	assert.Equal(t, []float64{0.5, -1e300}, b64)
	b32, err := f.Tensors["encoder.down1.conv1.bias"].Float32s()
	require.NoError(t, err)
	assert.Equal(t, []float32{0.5, float32(math.Inf(-1))}, b32, "F64 -> F32 rounds like a Go conversion")
	step, err := f.Tensors["step"].Int64s()
	require.NoError(t, err)
	assert.Equal(t, []int64{-42}, step)
	mask, err := f.Tensors["mask"].Int64s()
	require.NoError(t, err)
	assert.Equal(t, []int64{0, 1, 255}, mask)
	empty, err := f.Tensors["empty"].Float32s()
	require.NoError(t, err)
	assert.Empty(t, empty)

	// Appending to one tensor's data must not overwrite the next one's.
	bias := f.Tensors["encoder.down1.conv1.bias"]
	_ = append(bias.Data, 9, 9, 9, 9)
	again, err := f.Tensors["encoder.down1.conv1.weight"].Float32s()
	require.NoError(t, err)
	assert.Equal(t, w, again)
}

func TestSafetensorsNoMetadata(t *testing.T) {
	b := encode(t, map[string]Tensor{"x": F32([]int{1}, []float32{3})}, nil)
	assert.NotContains(t, string(b), metadataKey)
	f, err := decode(b)
	require.NoError(t, err)
	assert.NotNil(t, f.Metadata)
	assert.Empty(t, f.Metadata)

	f, err = decode(encode(t, nil, nil))
	require.NoError(t, err)
	assert.Empty(t, f.Tensors)
}

// TestEncodeKnownBytes pins the exact layout so that it matches the format
// description (and what the Rust writer emits) byte for byte.
func TestEncodeKnownBytes(t *testing.T) {
	tensors := map[string]Tensor{
		"b": I64(nil, []int64{7}),
		"a": F32([]int{2}, []float32{1, -2}),
	}
	header := `{"__metadata__":{"format":"pt"},` +
		`"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}` +
		"      " // 138 bytes of JSON + 6 spaces = 144, a multiple of 8
	want := []byte{0x90, 0, 0, 0, 0, 0, 0, 0} // 144, little-endian uint64
	want = append(want, header...)
	want = append(want,
		0x00, 0x00, 0x80, 0x3f, // 1.0f
		0x00, 0x00, 0x00, 0xc0, // -2.0f
		0x07, 0, 0, 0, 0, 0, 0, 0, // int64 7
	)
	got := encode(t, tensors, map[string]string{"format": "pt"})
	assert.Equal(t, want, got)
	assert.Equal(t, 144, len(header))

	// And the reverse: a hand-made file with extra spaces, a gap and a
	// null metadata decodes.
	hdr := `{ "__metadata__" : null, "z": {"shape": [1], "dtype": "F32", "data_offsets": [4, 8]} }`
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	file = append(file, hdr...)
	file = append(file, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x80, 0x3f)
	f, err := decode(file)
	require.NoError(t, err)
	z, err := f.Tensors["z"].Float32s()
	require.NoError(t, err)
	assert.Equal(t, []float32{1}, z)
}

func TestEncodeRejectsBadTensors(t *testing.T) {
	for name, tc := range map[string]struct {
		tensors map[string]Tensor
		meta    map[string]string
		msg     string
	}{
		"short data":     {map[string]Tensor{"w": F32([]int{2, 2}, []float32{1, 2, 3})}, nil, `tensor "w": F32 [2 2] needs 4 x 4 bytes but data has 12`},
		"unknown dtype":  {map[string]Tensor{"w": {DType: "F31", Shape: []int{1}, Data: make([]byte, 4)}}, nil, `unknown dtype "F31"`},
		"negative dim":   {map[string]Tensor{"w": {DType: "U8", Shape: []int{-1}}}, nil, "negative dimension -1"},
		"overflow":       {map[string]Tensor{"w": {DType: "U8", Shape: []int{math.MaxInt, 3}}}, nil, "too many elements"},
		"reserved name":  {map[string]Tensor{metadataKey: F32([]int{1}, []float32{1})}, nil, "reserved"},
		"bad utf8 name":  {map[string]Tensor{"w\xff": F32([]int{1}, []float32{1})}, nil, "UTF-8"},
		"bad utf8 value": {nil, map[string]string{"k": "\xff"}, "UTF-8"},
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			err := Encode(&b, tc.tensors, tc.meta)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Zero(t, b.Len(), "nothing is written for invalid input")
		})
	}
}

// corrupt builds a file from a raw header and buffer.
func corrupt(header string, buf []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), buf...)
}

func TestDecodeRejectsCorruption(t *testing.T) {
	valid := encode(t, sampleTensors(), map[string]string{"kind": "ae"})
	hugeLen := bytes.Clone(valid)
	binary.LittleEndian.PutUint64(hugeLen, math.MaxUint64)
	entry := func(s string) string { return `{"w":` + s + `}` }

	cases := map[string]struct {
		file []byte
		msg  string
	}{
		"empty":            {nil, "truncated: file has 0 bytes"},
		"7 bytes":          {valid[:7], "truncated: file has 7 bytes, fewer than the 8-byte header length"},
		"header only len":  {valid[:8], "truncated: header says"},
		"mid header":       {valid[:50], "truncated: header says"},
		"huge header len":  {hugeLen, "truncated: header says 18446744073709551615 bytes but file has"},
		"mid data":         {valid[:len(valid)-5], "run past the end of the"},
		"not json":         {corrupt(`{"w": nope}`, nil), "header is not valid JSON"},
		"json array":       {corrupt(`[1,2,3]`, nil), "header is not a JSON object"},
		"json string":      {corrupt(`"hi"`, nil), "header is not a JSON object"},
		"blank header":     {corrupt(`        `, nil), "header is not a JSON object"},
		"unclosed":         {corrupt(`{"w":{}`, nil), "header is not valid JSON"},
		"trailing garbage": {corrupt(`{} {}`, nil), "unexpected bytes after the JSON object"},
		"duplicate key":    {corrupt(`{"w":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"w":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, nil), `key "w" twice`},
		"entry not object": {corrupt(entry(`[1]`), nil), `tensor "w": entry [1] is not an object`},
		"unknown dtype":    {corrupt(entry(`{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}`), []byte{0}), `tensor "w": unknown dtype "Q4"`},
		"no dtype":         {corrupt(entry(`{"shape":[1],"data_offsets":[0,1]}`), []byte{0}), "no dtype"},
		"no shape":         {corrupt(entry(`{"dtype":"U8","data_offsets":[0,1]}`), []byte{0}), "no shape"},
		"negative dim":     {corrupt(entry(`{"dtype":"U8","shape":[2,-1],"data_offsets":[0,0]}`), nil), "negative dimension -1"},
		"fractional dim":   {corrupt(entry(`{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}`), nil), `tensor "w": bad entry`},
		"dim overflow":     {corrupt(entry(`{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}`), nil), "too many elements"},
		"dim over int64":   {corrupt(entry(`{"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,0]}`), nil), `tensor "w": bad entry`},
		"one offset":       {corrupt(entry(`{"dtype":"U8","shape":[1],"data_offsets":[0]}`), []byte{0}), "should be [begin, end]"},
		"negative offset":  {corrupt(entry(`{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}`), []byte{0}), `tensor "w": bad entry`},
		"reversed":         {corrupt(entry(`{"dtype":"U8","shape":[0],"data_offsets":[2,1]}`), []byte{0, 0}), "data_offsets [2,1] are reversed"},
		"out of range":     {corrupt(entry(`{"dtype":"U8","shape":[4],"data_offsets":[0,4]}`), []byte{0, 0}), "data_offsets [0,4] run past the end of the 2-byte data buffer"},
		"wrong size":       {corrupt(entry(`{"dtype":"F32","shape":[3],"data_offsets":[0,8]}`), make([]byte, 8)), "hold 8 bytes but F32 [3] needs 12"},
		"huge offsets":     {corrupt(entry(`{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,18446744073709551615]}`), nil), "run past the end"},
		"overlap": {corrupt(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)),
			`tensors "a" and "b" overlap: data_offsets [0,8] and [4,12]`},
		"metadata int":      {corrupt(`{"__metadata__":{"epoch":3}}`, nil), `__metadata__ "epoch": value 3 is not a string`},
		"metadata nested":   {corrupt(`{"__metadata__":{"cfg":{"a":"b"}}}`, nil), `__metadata__ "cfg": value {"a":"b"} is not a string`},
		"metadata array":    {corrupt(`{"__metadata__":["a"]}`, nil), "__metadata__ is not an object of strings"},
		"metadata repeated": {corrupt(`{"__metadata__":{},"__metadata__":{}}`, nil), "twice"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := decode(tc.file)
			require.Error(t, err)
			assert.Nil(t, f)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// zeros is an endless reader, so a file bigger than the header limit can be
// decoded without allocating it.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestDecodeRejectsHugeHeader(t *testing.T) {
	n := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+8)
	_, err := Decode(io.MultiReader(bytes.NewReader(n), zeros{}), 8+MaxHeaderSize+16)
	require.Error(t, err)
	assert.Equal(t, "header length 104857608 is over the 104857600-byte limit", err.Error())
}

func TestDecodeTruncatedEverywhere(t *testing.T) {
	valid := encode(t, sampleTensors(), map[string]string{"kind": "ae"})
	for n := 0; n < len(valid); n++ {
		_, err := decode(valid[:n])
		require.Error(t, err, "truncated to %d of %d bytes", n, len(valid))
	}
	// A size that claims more than the reader delivers is an error too, not
	// a hang or a giant allocation.
	_, err := Decode(bytes.NewReader(valid[:len(valid)-3]), 1<<40)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "truncated")
}

func TestSafetensorsTensorAccessors(t *testing.T) {
	for dtype, data := range map[string][]byte{
		"I8":  {0xfe},
		"U8":  {0xfe},
		"I16": {0xfe, 0xff},
		"U16": {0xfe, 0xff},
		"I32": {0xfe, 0xff, 0xff, 0xff},
		"U32": {0xfe, 0xff, 0xff, 0xff},
		"I64": {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"U64": {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	} {
		want := map[string]int64{"I8": -2, "U8": 254, "I16": -2, "U16": 65534, "I32": -2,
			"U32": 1<<32 - 2, "I64": -2, "U64": math.MaxInt64 - 1}[dtype]
		got, err := Tensor{DType: dtype, Shape: []int{1}, Data: data}.Int64s()
		require.NoError(t, err, dtype)
		assert.Equal(t, []int64{want}, got, dtype)
	}
	f64, err := F32([]int{2}, []float32{0.25, -3}).Float64s()
	require.NoError(t, err)
	assert.Equal(t, []float64{0.25, -3}, f64)

	_, err = I64([]int{1}, []int64{1}).Float32s()
	assert.ErrorContains(t, err, "dtype I64 is not F32 or F64")
	_, err = F32([]int{1}, []float32{1}).Int64s()
	assert.ErrorContains(t, err, "dtype F32 is not an integer type")
	_, err = F32([]int{3}, []float32{1, 2}).Float64s()
	assert.ErrorContains(t, err, "F32 [3] needs 3 x 4 bytes but data has 8")
	_, err = Tensor{DType: "U64", Shape: []int{1}, Data: bytes.Repeat([]byte{0xff}, 8)}.Int64s()
	assert.ErrorContains(t, err, "overflows int64")
	n, err := Tensor{Shape: []int{2, 3, 4}}.NumElements()
	require.NoError(t, err)
	assert.Equal(t, 24, n)
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	in := sampleTensors()
	require.NoError(t, Write(path, in, map[string]string{"kind": "seg"}))
	f, err := Read(path)
	require.NoError(t, err)
	assert.Equal(t, "seg", f.Metadata["kind"])
	assert.Equal(t, in["mask"].Data, f.Tensors["mask"].Data)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	assertOnlyFiles(t, dir, "model.safetensors")

	// Overwriting replaces the content.
	require.NoError(t, Write(path, map[string]Tensor{"x": F32([]int{1}, []float32{2})}, nil))
	f, err = Read(path)
	require.NoError(t, err)
	assert.Equal(t, []string{"x"}, f.Names())
	assertOnlyFiles(t, dir, "model.safetensors")
}

func TestWriteFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "best.safetensors")
	require.NoError(t, Write(path, sampleTensors(), nil))
	old, err := os.ReadFile(path)
	require.NoError(t, err)

	bad := sampleTensors()
	bad["broken"] = Tensor{DType: "F32", Shape: []int{10}, Data: make([]byte, 39)}
	err = Write(path, bad, nil)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), path+": "), err.Error())
	assert.Contains(t, err.Error(), `tensor "broken"`)

	now, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, old, now)
	assertOnlyFiles(t, dir, "best.safetensors")

	// A failure after the temporary file exists (here: the target is a
	// directory, so rename fails) also cleans up.
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(sub, "keep"), nil, 0o644))
	err = Write(sub, sampleTensors(), nil)
	require.Error(t, err)
	assertOnlyFiles(t, dir, "best.safetensors", "sub")

	err = Write(filepath.Join(dir, "missing", "m.safetensors"), sampleTensors(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing")
}

func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	assert.ElementsMatch(t, names, got, "no temporary file is left behind")
}

func TestReadErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	file := binary.LittleEndian.AppendUint64(nil, 1234)
	file = append(file, make([]byte, 92)...)
	require.NoError(t, os.WriteFile(path, file, 0o644))
	_, err := Read(path)
	require.Error(t, err)
	assert.Equal(t, path+": truncated: header says 1234 bytes but file has 100", err.Error())

	_, err = Read(filepath.Join(dir, "nope.safetensors"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))
	assert.Contains(t, err.Error(), "nope.safetensors")
}

func FuzzDecode(f *testing.F) {
	var b bytes.Buffer
	if err := Encode(&b, sampleTensors(), map[string]string{"kind": "ae"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:40])
	f.Add(corrupt(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}`, make([]byte, 8)))
	f.Add(corrupt(`{"__metadata__":{"k":"v"}}`, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode again and decode to the same thing.
		var out bytes.Buffer
		if err := Encode(&out, file.Tensors, file.Metadata); err != nil {
			t.Fatalf("re-encoding a decoded file: %v", err)
		}
		again, err := decode(out.Bytes())
		if err != nil {
			t.Fatalf("decoding a re-encoded file: %v", err)
		}
		if len(again.Tensors) != len(file.Tensors) || len(again.Metadata) != len(file.Metadata) {
			t.Fatalf("round trip changed the file")
		}
		for name, t1 := range file.Tensors {
			t2 := again.Tensors[name]
			if t1.DType != t2.DType || !bytes.Equal(t1.Data, t2.Data) || len(t1.Shape) != len(t2.Shape) {
				t.Fatalf("round trip changed tensor %q", name)
			}
		}
	})
}
