package nn

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/segtool/segtool/nn/safetensors"
	"gorgonia.org/tensor"
)

// Model-file metadata keys. A segtool model is one .safetensors file: the
// tensors by dotted name, and these strings in its metadata.
const (
	// MetaFormat is the file format version, FormatVersion.
	MetaFormat = "segtool.format"
	// MetaKind is the model kind: "ae", "vae" or "seg".
	MetaKind = "segtool.kind"
	// MetaConfig is the model configuration as JSON.
	MetaConfig = "segtool.config"
)

// FormatVersion is the model-file format this build writes and reads.
const FormatVersion = "1"

// SaveModel writes every tensor of the store, converted to float32, with the
// metadata (MetaFormat is added), atomically: a crash leaves the old file.
func SaveModel(path string, store *Store, meta map[string]string) error {
	ts := make(map[string]safetensors.Tensor, len(store.order))
	for _, p := range store.Params() {
		v, err := float32Data(p.Value)
		if err != nil {
			return fmt.Errorf("save %s: %s: %w", path, p.Name, err)
		}
		ts[p.Name] = safetensors.F32(p.Value.Shape().Clone(), v)
	}
	m := map[string]string{MetaFormat: FormatVersion}
	for k, v := range meta {
		m[k] = v
	}
	if err := safetensors.Write(path, ts, m); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// ReadModel reads a model file and checks that it is one segtool wrote, of a
// format this build knows, and (when kinds is not empty) of one of the given
// kinds.
func ReadModel(path string, kinds ...string) (*safetensors.File, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	v, ok := f.Metadata[MetaFormat]
	if !ok {
		return nil, fmt.Errorf("%s: not a segtool model (its metadata has no %s)", path, MetaFormat)
	}
	if v != FormatVersion {
		return nil, fmt.Errorf("%s: model format %q, this segtool reads %q", path, v, FormatVersion)
	}
	kind := f.Metadata[MetaKind]
	if len(kinds) > 0 && !slices.Contains(kinds, kind) {
		want := make([]string, len(kinds))
		for i, k := range kinds {
			want[i] = kindName(k)
		}
		return nil, fmt.Errorf("%s: is %s; this needs %s", path, kindName(kind), strings.Join(want, " or "))
	}
	return f, nil
}

// kindName says what a model kind is, in words, with the kind as written
// in model files and configs.
func kindName(kind string) string {
	switch kind {
	case "ae":
		return `an auto-encoder ("ae")`
	case "vae":
		return `a variational auto-encoder ("vae")`
	case "seg":
		return `a segmenter ("seg")`
	}
	return fmt.Sprintf("a model of kind %q", kind)
}

// LoadReport lists what a load did not match.
type LoadReport struct {
	Loaded     []string
	Missing    []string // in the model, not in the file
	Unexpected []string // in the file, not in the model
}

// Load copies the file's tensors whose names start with prefix into the
// store's tensors of the same name. A shape mismatch is always an error
// naming the tensor and both shapes. With strict, so are missing and
// unexpected names; otherwise they are reported.
func (s *Store) Load(f *safetensors.File, prefix string, strict bool) (LoadReport, error) {
	var rep LoadReport
	var mismatched []string
	for _, name := range s.Names(prefix) {
		p := s.params[name]
		t, ok := f.Tensors[name]
		if !ok {
			rep.Missing = append(rep.Missing, name)
			continue
		}
		if !slices.Equal(t.Shape, p.Value.Shape()) {
			mismatched = append(mismatched, fmt.Sprintf("%s: shape %v in the file but %v in the model", name, t.Shape, []int(p.Value.Shape())))
			continue
		}
		if err := setData(p.Value, t); err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		rep.Loaded = append(rep.Loaded, name)
	}
	for _, name := range f.Names() {
		if strings.HasPrefix(name, prefix) && s.params[name] == nil {
			rep.Unexpected = append(rep.Unexpected, name)
		}
	}
	if len(mismatched) > 0 {
		return rep, fmt.Errorf("%d tensors do not fit the model (a different width, depth or channel count?): %s", len(mismatched), strings.Join(mismatched, "; "))
	}
	if len(rep.Loaded) == 0 {
		return rep, fmt.Errorf("no tensors named %q... in the file", prefix)
	}
	if strict && (len(rep.Missing) > 0 || len(rep.Unexpected) > 0) {
		return rep, fmt.Errorf("tensors missing from the file: %s; unexpected in the file: %s", list(rep.Missing), list(rep.Unexpected))
	}
	return rep, nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	if len(s) > 6 {
		return strings.Join(s[:6], ", ") + fmt.Sprintf(" and %d more", len(s)-6)
	}
	return strings.Join(s, ", ")
}

func float32Data(t *tensor.Dense) ([]float32, error) {
	switch d := t.Data().(type) {
	case []float32:
		return d, nil
	case []float64:
		out := make([]float32, len(d))
		for i, v := range d {
			out[i] = float32(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported dtype %v", t.Dtype())
}

func setData(dst *tensor.Dense, t safetensors.Tensor) error {
	switch d := dst.Data().(type) {
	case []float32:
		v, err := t.Float32s()
		if err != nil {
			return err
		}
		copy(d, v)
	case []float64:
		v, err := t.Float64s()
		if err != nil {
			return err
		}
		copy(d, v)
	default:
		return fmt.Errorf("unsupported dtype %v", dst.Dtype())
	}
	return nil
}

// ReadModelConfig reads a model file of the given kind and decodes the model
// configuration it carries into cfg (a pointer); the caller builds the model
// from cfg and then loads the file's tensors with LoadWeights.
func ReadModelConfig(path, kind string, cfg any) (*safetensors.File, error) {
	f, err := ReadModel(path, kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(f.Metadata[MetaConfig]), cfg); err != nil {
		return nil, fmt.Errorf("%s: bad model config: %w", path, err)
	}
	return f, nil
}

// LoadWeights copies every tensor of f into the store, strictly: a file that
// lacks one of the model's tensors, or has one the model lacks, is an error.
func LoadWeights(path string, f *safetensors.File, store *Store) error {
	if _, err := store.Load(f, "", true); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ModelMetadata is the metadata of a model file: info (what the caller
// wants kept, e.g. where it was trained), then extra, then the kind and the
// configuration as JSON, which neither can override.
func ModelMetadata(kind string, cfg any, info, extra map[string]string) (map[string]string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	meta := map[string]string{}
	for k, v := range info {
		meta[k] = v
	}
	for k, v := range extra {
		meta[k] = v
	}
	meta[MetaKind] = kind
	meta[MetaConfig] = string(b)
	return meta, nil
}
