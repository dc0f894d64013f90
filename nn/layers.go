package nn

import (
	"fmt"

	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Conv is a stride-1 convolution with bias: 3x3 with padding 1 keeps the
// size, 1x1 is a per-pixel linear map. Parameters: weight [Out,In,K,K]
// (He-normal), bias [Out] (zero).
type Conv struct {
	W, B      *G.Node
	pad       int
	inputGrad bool
}

// ConvConfig configures a Conv.
type ConvConfig struct {
	In, Out int
	// Kernel is 1 or 3 (default 3); padding is Kernel/2.
	Kernel int
	// InputIsData marks the first layer of a network, whose input needs no
	// gradient.
	InputIsData bool
}

// NewConv makes the parameters name.weight and name.bias.
func NewConv(s *Scope, name string, cfg ConvConfig) (*Conv, error) {
	if cfg.Kernel == 0 {
		cfg.Kernel = 3
	}
	if cfg.In < 1 || cfg.Out < 1 || cfg.Kernel%2 != 1 {
		return nil, fmt.Errorf("%s: bad conv config %+v", s.join(name), cfg)
	}
	s = s.Sub(name)
	k := cfg.Kernel
	w, err := s.Param("weight", []int{cfg.Out, cfg.In, k, k}, HeNormal(cfg.In*k*k))
	if err != nil {
		return nil, err
	}
	b, err := s.Param("bias", []int{cfg.Out}, Const(0))
	if err != nil {
		return nil, err
	}
	return &Conv{W: w, B: b, pad: k / 2, inputGrad: !cfg.InputIsData}, nil
}

// Forward applies the convolution to x [N,In,H,W].
func (c *Conv) Forward(x *G.Node) (*G.Node, error) {
	return ops.Conv2D(x, c.W, c.B, c.pad, c.inputGrad)
}

// Linear is a fully connected layer: weight [Out,In], bias [Out].
type Linear struct{ W, B *G.Node }

// NewLinear makes name.weight (Glorot-uniform) and name.bias (zero).
func NewLinear(s *Scope, name string, in, out int) (*Linear, error) {
	s = s.Sub(name)
	w, err := s.Param("weight", []int{out, in}, GlorotUniform(in, out))
	if err != nil {
		return nil, err
	}
	b, err := s.Param("bias", []int{out}, Const(0))
	if err != nil {
		return nil, err
	}
	return &Linear{W: w, B: b}, nil
}

// Forward maps x [N,In] to [N,Out].
func (l *Linear) Forward(x *G.Node) (*G.Node, error) { return ops.Linear(x, l.W, l.B) }

// Norm names a normalisation layer.
type Norm string

const (
	// BatchNorm normalises with batch statistics in training and running
	// statistics at inference (the default).
	BatchNorm Norm = "batch"
	// NoNorm leaves activations as they are.
	NoNorm Norm = "none"
)

// Validate reports an unknown normalisation.
func (n Norm) Validate() error {
	switch n {
	case BatchNorm, NoNorm:
		return nil
	}
	return fmt.Errorf("unknown norm %q (want %q or %q)", string(n), BatchNorm, NoNorm)
}

// BatchNorm2d is batch normalisation over the channels of NCHW: parameters
// weight (gamma, 1) and bias (beta, 0), buffers running_mean (0) and
// running_var (1) — PyTorch's names, momentum 0.1 and eps 1e-5.
type BatchNorm2d struct {
	gamma, beta *G.Node
	state       *ops.BNState
	training    bool
}

// NewBatchNorm2d makes the parameters and buffers under name.
func NewBatchNorm2d(s *Scope, name string, channels int) (*BatchNorm2d, error) {
	s = s.Sub(name)
	gamma, err := s.Param("weight", []int{channels}, Const(1))
	if err != nil {
		return nil, err
	}
	beta, err := s.Param("bias", []int{channels}, Const(0))
	if err != nil {
		return nil, err
	}
	rm, err := s.Buffer("running_mean", []int{channels}, Const(0))
	if err != nil {
		return nil, err
	}
	rv, err := s.Buffer("running_var", []int{channels}, Const(1))
	if err != nil {
		return nil, err
	}
	return &BatchNorm2d{gamma: gamma, beta: beta, training: s.Training(),
		state: &ops.BNState{RunningMean: rm, RunningVar: rv, Momentum: 0.1, Eps: 1e-5}}, nil
}

// Forward normalises x.
func (b *BatchNorm2d) Forward(x *G.Node) (*G.Node, error) {
	return ops.BatchNorm(x, b.gamma, b.beta, b.state, b.training)
}

// ConvBlock is (3x3 conv -> norm -> ReLU) twice, the unit of the encoder and
// decoder: name.conv1, name.norm1, name.conv2, name.norm2.
type ConvBlock struct {
	convs [2]*Conv
	norms [2]*BatchNorm2d
}

// BlockConfig configures a ConvBlock.
type BlockConfig struct {
	In, Out     int
	Norm        Norm
	InputIsData bool
}

// NewConvBlock builds the block's layers.
func NewConvBlock(s *Scope, name string, cfg BlockConfig) (*ConvBlock, error) {
	s = s.Sub(name)
	b := &ConvBlock{}
	in := cfg.In
	for i := range 2 {
		c, err := NewConv(s, fmt.Sprintf("conv%d", i+1), ConvConfig{In: in, Out: cfg.Out, InputIsData: cfg.InputIsData && i == 0})
		if err != nil {
			return nil, err
		}
		b.convs[i] = c
		if cfg.Norm == BatchNorm {
			if b.norms[i], err = NewBatchNorm2d(s, fmt.Sprintf("norm%d", i+1), cfg.Out); err != nil {
				return nil, err
			}
		}
		in = cfg.Out
	}
	return b, nil
}

// Forward runs both stages.
func (b *ConvBlock) Forward(x *G.Node) (*G.Node, error) {
	var err error
	for i := range 2 {
		if x, err = b.convs[i].Forward(x); err != nil {
			return nil, err
		}
		if b.norms[i] != nil {
			if x, err = b.norms[i].Forward(x); err != nil {
				return nil, err
			}
		}
		if x, err = ops.ReLU(x); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// EncoderConfig configures the shared encoder.
type EncoderConfig struct {
	// InChannels of the images: 1 grey, 3 RGB.
	InChannels int `yaml:"in_channels" json:"in_channels"`
	// Base is the width of the first level; each level down doubles it
	// (default 16).
	Base int `yaml:"base" json:"base"`
	// Depth is the number of 2x2 down-samplings (default 4): inputs must be
	// multiples of 2^Depth, which the models ensure by padding.
	Depth int `yaml:"depth" json:"depth"`
	// Norm is "batch" (default) or "none".
	Norm Norm `yaml:"norm" json:"norm"`
}

// Defaults fills unset fields.
func (c *EncoderConfig) Defaults() {
	if c.Base == 0 {
		c.Base = 16
	}
	if c.Depth == 0 {
		c.Depth = 4
	}
	if c.Norm == "" {
		c.Norm = BatchNorm
	}
}

// Validate checks the ranges.
func (c EncoderConfig) Validate() error {
	if c.InChannels < 1 {
		return fmt.Errorf("in_channels must be at least 1, got %d", c.InChannels)
	}
	if c.Base < 1 || c.Base > 1024 {
		return fmt.Errorf("base must be in 1..1024, got %d", c.Base)
	}
	if c.Depth < 0 || c.Depth > 8 {
		return fmt.Errorf("depth must be in 0..8, got %d", c.Depth)
	}
	return c.Norm.Validate()
}

// CheckSize is an error unless h x w images fit the encoder as they are:
// both positive multiples of 2^Depth, which it halves them by.
func (c EncoderConfig) CheckSize(h, w int) error {
	f := 1 << c.Depth
	if h < f || w < f || h%f != 0 || w%f != 0 {
		return fmt.Errorf("height and width (%dx%d) must be positive multiples of 2^depth = %d", h, w, f)
	}
	return nil
}

// Bottleneck is the shape of the encoder's output for h x w images:
// channels (Base*2^Depth), height and width (h and w / 2^Depth).
func (c EncoderConfig) Bottleneck(h, w int) (ch, bh, bw int) {
	f := 1 << c.Depth
	return c.Base << c.Depth, h / f, w / f
}

// Channels lists the width of every level, highest resolution first:
// Base, 2*Base, ..., Base*2^Depth.
func (c EncoderConfig) Channels() []int {
	ch := make([]int, c.Depth+1)
	for i := range ch {
		ch[i] = c.Base << i
	}
	return ch
}

// Encoder is the convolutional encoder every model shares: a block at full
// resolution (name.inc), then Depth times 2x2 max-pool and a block that
// doubles the width (name.down1 ... name.downD).
type Encoder struct {
	cfg    EncoderConfig
	blocks []*ConvBlock
}

// NewEncoder builds the encoder; cfg must be valid (Defaults applied).
func NewEncoder(s *Scope, name string, cfg EncoderConfig) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s = s.Sub(name)
	ch := cfg.Channels()
	e := &Encoder{cfg: cfg}
	in := cfg.InChannels
	for i, c := range ch {
		bname := "inc"
		if i > 0 {
			bname = fmt.Sprintf("down%d", i)
		}
		b, err := NewConvBlock(s, bname, BlockConfig{In: in, Out: c, Norm: cfg.Norm, InputIsData: i == 0})
		if err != nil {
			return nil, err
		}
		e.blocks = append(e.blocks, b)
		in = c
	}
	return e, nil
}

// Forward returns the bottleneck [N, OutChannels, H/2^D, W/2^D] and the skip
// features of every level above it, highest resolution first: skips[i] has
// Channels()[i] channels at H/2^i.
func (e *Encoder) Forward(x *G.Node) (bottleneck *G.Node, skips []*G.Node, err error) {
	s := x.Shape()
	f := 1 << e.cfg.Depth
	if s.Dims() != 4 || s[1] != e.cfg.InChannels || s[2]%f != 0 || s[3]%f != 0 {
		return nil, nil, fmt.Errorf("encoder: input %v must be [N,%d,H,W] with H and W multiples of %d", s, e.cfg.InChannels, f)
	}
	for i, b := range e.blocks {
		if i > 0 {
			skips = append(skips, x)
			if x, err = ops.MaxPool2(x); err != nil {
				return nil, nil, err
			}
		}
		if x, err = b.Forward(x); err != nil {
			return nil, nil, fmt.Errorf("encoder level %d: %w", i, err)
		}
	}
	return x, skips, nil
}

// OutChannels is the bottleneck's width, Base*2^Depth.
func (e *Encoder) OutChannels() int { return e.cfg.Base << e.cfg.Depth }

// Config returns the configuration the encoder was built with.
func (e *Encoder) Config() EncoderConfig { return e.cfg }

// Decoder mirrors the encoder without skip connections: Depth times x2
// nearest upsample and a block that halves the width (name.up1 ... upD).
// Its output has Base channels at full resolution; a head maps it to outputs.
type Decoder struct {
	blocks []*ConvBlock
	out    int
}

// NewDecoder builds the decoder for an encoder of configuration cfg.
func NewDecoder(s *Scope, name string, cfg EncoderConfig) (*Decoder, error) {
	s = s.Sub(name)
	ch := cfg.Channels()
	d := &Decoder{out: cfg.Base}
	for i := cfg.Depth; i >= 1; i-- {
		b, err := NewConvBlock(s, fmt.Sprintf("up%d", cfg.Depth-i+1), BlockConfig{In: ch[i], Out: ch[i-1], Norm: cfg.Norm})
		if err != nil {
			return nil, err
		}
		d.blocks = append(d.blocks, b)
	}
	return d, nil
}

// Forward upsamples the bottleneck back to full resolution.
func (d *Decoder) Forward(x *G.Node) (*G.Node, error) {
	var err error
	for i, b := range d.blocks {
		if x, err = ops.Upsample2(x); err != nil {
			return nil, err
		}
		if x, err = b.Forward(x); err != nil {
			return nil, fmt.Errorf("decoder level %d: %w", i+1, err)
		}
	}
	return x, nil
}

// OutChannels is the width of the decoder's output (the encoder's Base).
func (d *Decoder) OutChannels() int { return d.out }

// Flatten reshapes [N, ...] to [N, rest]: an encoder's bottleneck as the
// input of a dense layer.
func Flatten(x *G.Node) (*G.Node, error) {
	n := x.Shape()[0]
	return G.Reshape(x, tensor.Shape{n, x.Shape().TotalSize() / n})
}

// LatentDecoder turns codes back into images, the generative half that the
// auto-encoder and the VAE share: a dense layer (from_latent) and a ReLU up
// to the encoder's bottleneck, the shared Decoder (decoder.*), and a 1x1
// head to the image's channels (head.*). With latent 0 the code is the
// bottleneck itself, flattened, and there is no dense layer.
type LatentDecoder struct {
	bc, bh, bw int
	fromLatent *Linear
	Decoder    *Decoder
	head       *Conv
}

// NewLatentDecoder builds the modules (from_latent, decoder, head, in that
// order) into s for images of height x width made by an encoder of cfg.
func NewLatentDecoder(s *Scope, cfg EncoderConfig, latent, height, width int) (*LatentDecoder, error) {
	if err := cfg.CheckSize(height, width); err != nil {
		return nil, err
	}
	d := &LatentDecoder{}
	d.bc, d.bh, d.bw = cfg.Bottleneck(height, width)
	var err error
	if latent > 0 {
		if d.fromLatent, err = NewLinear(s, "from_latent", latent, d.bc*d.bh*d.bw); err != nil {
			return nil, err
		}
	}
	if d.Decoder, err = NewDecoder(s, "decoder", cfg); err != nil {
		return nil, err
	}
	if d.head, err = NewConv(s, "head", ConvConfig{In: cfg.Base, Out: cfg.InChannels, Kernel: 1}); err != nil {
		return nil, err
	}
	return d, nil
}

// Forward maps codes [N, latent] to the head's output [N, C, H, W]: logits
// for a BCE model, values for an MSE one.
func (d *LatentDecoder) Forward(z *G.Node) (*G.Node, error) {
	var err error
	if d.fromLatent != nil {
		if z, err = d.fromLatent.Forward(z); err != nil {
			return nil, fmt.Errorf("from_latent: %w", err)
		}
		if z, err = ops.ReLU(z); err != nil {
			return nil, err
		}
	}
	x, err := G.Reshape(z, tensor.Shape{z.Shape()[0], d.bc, d.bh, d.bw})
	if err != nil {
		return nil, err
	}
	if x, err = d.Decoder.Forward(x); err != nil {
		return nil, err
	}
	return d.head.Forward(x)
}

// Feed copies v into the tensor bound to an input node.
func Feed(n *G.Node, v []float32) error {
	t, ok := n.Value().(*tensor.Dense)
	if !ok {
		return fmt.Errorf("%s: no tensor bound", n.Name())
	}
	switch d := t.Data().(type) {
	case []float32:
		if len(d) != len(v) {
			return fmt.Errorf("%s: feeding %d values into %v", n.Name(), len(v), t.Shape())
		}
		copy(d, v)
	case []float64:
		if len(d) != len(v) {
			return fmt.Errorf("%s: feeding %d values into %v", n.Name(), len(v), t.Shape())
		}
		for i, x := range v {
			d[i] = float64(x)
		}
	default:
		return fmt.Errorf("%s: unsupported dtype %v", n.Name(), t.Dtype())
	}
	return nil
}

// Float32s copies a float32 or float64 value out as float32.
func Float32s(v G.Value) ([]float32, error) {
	switch d := v.Data().(type) {
	case []float32:
		return append([]float32(nil), d...), nil
	case []float64:
		out := make([]float32, len(d))
		for i, x := range d {
			out[i] = float32(x)
		}
		return out, nil
	case float32:
		return []float32{d}, nil
	case float64:
		return []float32{float32(d)}, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

// Scalar reads a scalar value as float64.
func Scalar(v G.Value) (float64, error) {
	switch d := v.Data().(type) {
	case float32:
		return float64(d), nil
	case float64:
		return d, nil
	case []float32:
		if len(d) == 1 {
			return float64(d[0]), nil
		}
	case []float64:
		if len(d) == 1 {
			return d[0], nil
		}
	}
	return 0, fmt.Errorf("not a scalar: %T %v", v, v.Shape())
}
