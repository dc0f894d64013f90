package seg

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/segtool/segtool/nn"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Class is one class's name and display colour.
type Class struct {
	Name  string   `json:"name"`
	Color [3]uint8 `json:"color"`
}

// Config is a segmenter: its network, its input size, and what its classes
// are. All of it is saved in the model file, so predict and eval need
// nothing else.
type Config struct {
	NetConfig `yaml:",inline"`
	// Height and Width are the size images are resized to for training and,
	// by default, for prediction; multiples of 2^Depth.
	Height int `json:"height"`
	Width  int `json:"width"`
	// ClassTable names and colours the classes (len = Classes).
	ClassTable []Class `json:"class_table"`
	// Ignore is the label left out of loss and metrics (-1: none).
	Ignore int `json:"ignore_index"`
	// Loss is "ce" (default), "dice", "focal" or "ce+dice".
	Loss string `json:"loss"`
	// ClassWeights weight the cross-entropy and focal losses (nil: 1).
	ClassWeights []float64 `json:"class_weights,omitempty"`
	// FocalGamma is the focal loss's gamma (default 2).
	FocalGamma float64 `json:"focal_gamma,omitempty"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.EncoderConfig.Defaults()
	if c.Loss == "" {
		c.Loss = "ce"
	}
	if c.Loss == "focal" && c.FocalGamma == 0 {
		c.FocalGamma = 2
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := c.NetConfig.Validate(); err != nil {
		return err
	}
	if err := c.CheckSize(c.Height, c.Width); err != nil {
		return err
	}
	if len(c.ClassTable) != c.Classes {
		return fmt.Errorf("%d classes but %d entries in the class table", c.Classes, len(c.ClassTable))
	}
	if c.Ignore >= 0 && c.Ignore < c.Classes {
		return fmt.Errorf("ignore_index %d is one of the %d classes; use a label outside 0..%d (or -1 for none)", c.Ignore, c.Classes, c.Classes-1)
	}
	switch c.Loss {
	case "ce", "dice", "focal", "ce+dice":
	default:
		return fmt.Errorf("loss must be ce, dice, focal or ce+dice, got %q", c.Loss)
	}
	if c.ClassWeights != nil {
		if len(c.ClassWeights) != c.Classes {
			return fmt.Errorf("%d class weights for %d classes", len(c.ClassWeights), c.Classes)
		}
		for i, w := range c.ClassWeights {
			if !(w >= 0) || math.IsInf(w, 0) {
				return fmt.Errorf("class weight %d is %g; weights must be >= 0", i, w)
			}
		}
	}
	return nil
}

// Names lists the class names.
func (c Config) Names() []string {
	out := make([]string, len(c.ClassTable))
	for i, cl := range c.ClassTable {
		out[i] = cl.Name
	}
	return out
}

// Model is a segmenter's configuration and weights, with inference graphs
// built on demand for each input size.
type Model struct {
	Config Config
	Store  *nn.Store
	// Info is extra metadata saved with the model; Load fills it with the
	// file's whole metadata.
	Info    map[string]string
	runners map[[2]int]*nn.Runner
}

// New makes a segmenter with fresh weights drawn from seed.
func New(cfg Config, seed uint64) (*Model, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Store: nn.NewStore(tensor.Float32, seed), runners: map[[2]int]*nn.Runner{}}
	if _, err := NewUNet(nn.NewScope(m.Store, nn.EvalMode), cfg.NetConfig); err != nil {
		return nil, err
	}
	return m, nil
}

// Load reads a segmenter model file.
func Load(path string) (*Model, error) {
	var cfg Config
	f, err := nn.ReadModelConfig(path, Kind, &cfg)
	if err != nil {
		return nil, err
	}
	m, err := New(cfg, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := nn.LoadWeights(path, f, m.Store); err != nil {
		return nil, err
	}
	m.Info = f.Metadata
	return m, nil
}

// Metadata is what model files of this model carry: Info, the class table
// and ignore index (also inside the config, here for readers of the file),
// the input description, the kind and the config.
func (m *Model) Metadata() (map[string]string, error) {
	classes, err := json.Marshal(m.Config.ClassTable)
	if err != nil {
		return nil, err
	}
	return nn.ModelMetadata(Kind, m.Config, m.Info, map[string]string{
		"segtool.classes":      string(classes),
		"segtool.ignore_index": strconv.Itoa(m.Config.Ignore),
		"segtool.input":        fmt.Sprintf("%dx%dx%d", m.Config.InChannels, m.Config.Height, m.Config.Width),
		"segtool.normalize":    "x/255 (values in [0,1])",
	})
}

// Save writes the model file atomically.
func (m *Model) Save(path string) error {
	meta, err := m.Metadata()
	if err != nil {
		return err
	}
	return nn.SaveModel(path, m.Store, meta)
}

// Close releases the inference graphs.
func (m *Model) Close() {
	for _, r := range m.runners {
		r.Close()
	}
	m.runners = map[[2]int]*nn.Runner{}
}

func (m *Model) runner(h, w int) *nn.Runner {
	key := [2]int{h, w}
	if r, ok := m.runners[key]; ok {
		return r
	}
	r := nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		u, err := NewUNet(s, m.Config.NetConfig)
		if err != nil {
			return nil, nil, err
		}
		x := s.Input("x", n, m.Config.InChannels, h, w)
		y, err := u.Forward(x)
		return []*G.Node{x}, []*G.Node{y}, err
	})
	m.runners[key] = r
	return r
}

// Logits runs n images of any size h x w (NCHW in [0,1]) and returns logits
// [n, Classes, h, w]. Sizes that are not multiples of 2^Depth are padded by
// reflection and the output cropped back.
func (m *Model) Logits(x []float32, n, h, w int) ([]float32, error) {
	c := m.Config.InChannels
	if len(x) != n*c*h*w {
		return nil, fmt.Errorf("logits: %d values for %d images of %dx%dx%d", len(x), n, c, h, w)
	}
	f := 1 << m.Config.Depth
	ph, pw := (h+f-1)/f*f, (w+f-1)/f*f
	in := x
	if ph != h || pw != w {
		in = padReflect(x, n*c, h, w, ph, pw)
	}
	out, err := m.runner(ph, pw).Run(n, in)
	if err != nil {
		return nil, err
	}
	y := out[0]
	if ph != h || pw != w {
		y = crop(y, n*m.Config.Classes, ph, pw, h, w)
	}
	return y, nil
}

// padReflect pads planes of h x w to ph x pw, mirroring the last rows and
// columns (without repeating the edge) so the network sees image-like
// content rather than a black border.
func padReflect(x []float32, planes, h, w, ph, pw int) []float32 {
	out := make([]float32, planes*ph*pw)
	for p := 0; p < planes; p++ {
		src, dst := x[p*h*w:(p+1)*h*w], out[p*ph*pw:(p+1)*ph*pw]
		for y := 0; y < ph; y++ {
			sy := reflect(y, h)
			for xx := 0; xx < pw; xx++ {
				dst[y*pw+xx] = src[sy*w+reflect(xx, w)]
			}
		}
	}
	return out
}

func reflect(i, n int) int {
	if n == 1 {
		return 0
	}
	period := 2 * (n - 1)
	i %= period
	if i >= n {
		i = period - i
	}
	return i
}

func crop(x []float32, planes, h, w, ch, cw int) []float32 {
	out := make([]float32, planes*ch*cw)
	for p := 0; p < planes; p++ {
		for y := 0; y < ch; y++ {
			copy(out[(p*ch+y)*cw:(p*ch+y+1)*cw], x[(p*h+y)*w:(p*h+y)*w+cw])
		}
	}
	return out
}

// ResizeBilinear resizes planes of h x w to oh x ow with half-pixel centres
// (PyTorch's align_corners=False), the usual way logits predicted at the
// training size are scored at a mask's full resolution.
func ResizeBilinear(x []float32, planes, h, w, oh, ow int) []float32 {
	if h == oh && w == ow {
		return x
	}
	out := make([]float32, planes*oh*ow)
	sy, sx := float64(h)/float64(oh), float64(w)/float64(ow)
	type tap struct {
		i0, i1 int
		f      float32
	}
	taps := func(n, on int, s float64) []tap {
		t := make([]tap, on)
		for o := range t {
			v := max((float64(o)+0.5)*s-0.5, 0)
			i0 := min(int(v), n-1)
			t[o] = tap{i0, min(i0+1, n-1), float32(v - float64(i0))}
		}
		return t
	}
	ty, tx := taps(h, oh, sy), taps(w, ow, sx)
	for p := 0; p < planes; p++ {
		src, dst := x[p*h*w:], out[p*oh*ow:]
		for oy, a := range ty {
			r0, r1 := src[a.i0*w:], src[a.i1*w:]
			for ox, b := range tx {
				top := r0[b.i0] + (r0[b.i1]-r0[b.i0])*b.f
				bot := r1[b.i0] + (r1[b.i1]-r1[b.i0])*b.f
				dst[oy*ow+ox] = top + (bot-top)*a.f
			}
		}
	}
	return out
}

// Argmax turns logits [k, hw] into a class map of hw.
func Argmax(logits []float32, k, hw int) []int32 {
	out := make([]int32, hw)
	for j := 0; j < hw; j++ {
		best, bv := 0, logits[j]
		for c := 1; c < k; c++ {
			if v := logits[c*hw+j]; v > bv {
				best, bv = c, v
			}
		}
		out[j] = int32(best)
	}
	return out
}
