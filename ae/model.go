// Package ae is the reconstruction auto-encoder: the shared encoder, a dense
// bottleneck to a latent code of configurable size, and the shared decoder,
// trained to give back its input (MSE, or BCE for data in [0,1]), optionally
// from a noisy copy of it (denoising). It also has the metrics (MSE, PSNR,
// SSIM) and the linear baseline an auto-encoder must beat: PCA with as many
// components as the latent code.
package ae

import (
	"fmt"
	"strconv"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Kind is the model kind written in AE model files.
const Kind = "ae"

// Config is an auto-encoder's architecture and loss.
type Config struct {
	nn.EncoderConfig `yaml:",inline"`
	// Height and Width of the images (after resizing); both must be
	// multiples of 2^Depth.
	Height int `yaml:"height" json:"height"`
	Width  int `yaml:"width" json:"width"`
	// Latent is the size of the code (default 16). 0 keeps the encoder's
	// convolutional bottleneck as the code, with no dense layers.
	Latent int `yaml:"latent" json:"latent"`
	// Loss is "bce" (for data in [0,1], the default) or "mse".
	Loss string `yaml:"loss" json:"loss"`
	// Noise is the standard deviation of Gaussian noise added to the input
	// in training (denoising); the target stays clean. Default 0.
	Noise float64 `yaml:"noise" json:"noise"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.EncoderConfig.Defaults()
	if c.Loss == "" {
		c.Loss = "bce"
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := c.EncoderConfig.Validate(); err != nil {
		return err
	}
	if err := c.CheckSize(c.Height, c.Width); err != nil {
		return err
	}
	if c.Latent < 0 {
		return fmt.Errorf("latent must be >= 0, got %d", c.Latent)
	}
	if c.Loss != "bce" && c.Loss != "mse" {
		return fmt.Errorf("loss must be \"bce\" or \"mse\", got %q", c.Loss)
	}
	if c.Noise < 0 {
		return fmt.Errorf("noise must be >= 0, got %g", c.Noise)
	}
	return nil
}

// LossKind is the loss as an ops.LossKind.
func (c Config) LossKind() ops.LossKind {
	if c.Loss == "bce" {
		return ops.BCEWithLogits
	}
	return ops.MSE
}

// CodeSize is the number of values in one image's code.
func (c Config) CodeSize() int {
	if c.Latent > 0 {
		return c.Latent
	}
	bc, bh, bw := c.Bottleneck(c.Height, c.Width)
	return bc * bh * bw
}

// Net is the auto-encoder built into one graph: encoder.*, to_latent.*
// (with a dense code), then the shared nn.LatentDecoder: from_latent.*,
// decoder.* and head.* parameters.
type Net struct {
	Encoder  *nn.Encoder
	toLatent *nn.Linear
	Decoder  *nn.LatentDecoder
}

// NewNet builds the network's modules into s.
func NewNet(s *nn.Scope, cfg Config) (*Net, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Net{}
	var err error
	if n.Encoder, err = nn.NewEncoder(s, "encoder", cfg.EncoderConfig); err != nil {
		return nil, err
	}
	if cfg.Latent > 0 {
		bc, bh, bw := cfg.Bottleneck(cfg.Height, cfg.Width)
		if n.toLatent, err = nn.NewLinear(s, "to_latent", bc*bh*bw, cfg.Latent); err != nil {
			return nil, err
		}
	}
	if n.Decoder, err = nn.NewLatentDecoder(s, cfg.EncoderConfig, cfg.Latent, cfg.Height, cfg.Width); err != nil {
		return nil, err
	}
	return n, nil
}

// Encode maps images [N,C,H,W] to codes [N,CodeSize].
func (n *Net) Encode(x *G.Node) (*G.Node, error) {
	b, _, err := n.Encoder.Forward(x)
	if err != nil {
		return nil, err
	}
	flat, err := nn.Flatten(b)
	if err != nil || n.toLatent == nil {
		return flat, err
	}
	return n.toLatent.Forward(flat)
}

// Decode maps codes [N,CodeSize] to output logits (bce) or values (mse)
// [N,C,H,W].
func (n *Net) Decode(z *G.Node) (*G.Node, error) { return n.Decoder.Forward(z) }

// Forward encodes and decodes.
func (n *Net) Forward(x *G.Node) (*G.Node, error) {
	z, err := n.Encode(x)
	if err != nil {
		return nil, err
	}
	return n.Decode(z)
}

// Model is a trained (or new) auto-encoder: its configuration and weights,
// with inference graphs built on demand.
type Model struct {
	Config Config
	Store  *nn.Store
	// Info is extra metadata saved with the model (where it was trained,
	// say); Load fills it with the file's whole metadata.
	Info  map[string]string
	recon *nn.Runner
	enc   *nn.Runner
	dec   *nn.Runner
}

// New makes an auto-encoder with fresh weights drawn from seed.
func New(cfg Config, seed uint64) (*Model, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Store: nn.NewStore(tensor.Float32, seed)}
	// Build once so every tensor exists in creation order.
	if _, err := NewNet(nn.NewScope(m.Store, nn.EvalMode), cfg); err != nil {
		return nil, err
	}
	m.init()
	return m, nil
}

func (m *Model) init() {
	m.recon = nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		net, err := NewNet(s, m.Config)
		if err != nil {
			return nil, nil, err
		}
		x := s.Input("x", n, m.Config.InChannels, m.Config.Height, m.Config.Width)
		y, err := net.Forward(x)
		return []*G.Node{x}, []*G.Node{y}, err
	})
	m.enc = nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		net, err := NewNet(s, m.Config)
		if err != nil {
			return nil, nil, err
		}
		x := s.Input("x", n, m.Config.InChannels, m.Config.Height, m.Config.Width)
		z, err := net.Encode(x)
		return []*G.Node{x}, []*G.Node{z}, err
	})
	m.dec = nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		net, err := NewNet(s, m.Config)
		if err != nil {
			return nil, nil, err
		}
		z := s.Input("z", n, m.Config.CodeSize())
		y, err := net.Decode(z)
		return []*G.Node{z}, []*G.Node{y}, err
	})
}

// Load reads an auto-encoder model file.
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

// Metadata is what model files of this model carry: Info, the input
// description, the kind and the config.
func (m *Model) Metadata() (map[string]string, error) {
	return nn.ModelMetadata(Kind, m.Config, m.Info, map[string]string{
		"segtool.input":     fmt.Sprintf("%dx%dx%d", m.Config.InChannels, m.Config.Height, m.Config.Width),
		"segtool.normalize": "x/255 (values in [0,1])",
		"segtool.latent":    strconv.Itoa(m.Config.CodeSize()),
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
	m.recon.Close()
	m.enc.Close()
	m.dec.Close()
}

// ImageSize is the number of values in one image.
func (m *Model) ImageSize() int {
	return m.Config.InChannels * m.Config.Height * m.Config.Width
}

// Reconstruct returns the reconstructions of n images (NCHW in [0,1]), in
// the same space (the sigmoid is applied for a BCE model).
func (m *Model) Reconstruct(x []float32, n int) ([]float32, error) {
	out, err := m.recon.Run(n, x)
	if err != nil {
		return nil, err
	}
	return m.toImage(out[0]), nil
}

// Encode returns the codes of n images, n*CodeSize values.
func (m *Model) Encode(x []float32, n int) ([]float32, error) {
	out, err := m.enc.Run(n, x)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// Decode returns the images of n codes.
func (m *Model) Decode(z []float32, n int) ([]float32, error) {
	out, err := m.dec.Run(n, z)
	if err != nil {
		return nil, err
	}
	return m.toImage(out[0]), nil
}

func (m *Model) toImage(y []float32) []float32 { return ops.ToImage(m.Config.LossKind(), y) }
