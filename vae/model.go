// Package vae is the variational auto-encoder: the shared encoder, two dense
// heads giving the mean and log-variance of a diagonal Gaussian posterior
// q(z|x), a sample z = mu + exp(logvar/2)*eps drawn by reparameterisation,
// and the shared decoder as the likelihood p(x|z) (Bernoulli for data in
// [0,1] such as MNIST, Gaussian for natural images). It is trained on the
// negative ELBO in nats per image, reconstruction + beta*KL(q(z|x) ||
// N(0, I)), so its decoder is a generator: decoded draws from N(0, I) are
// images, and walks through the latent space change them smoothly.
package vae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Kind is the model kind written in VAE model files.
const Kind = "vae"

// Config is a VAE's architecture and objective.
type Config struct {
	nn.EncoderConfig `yaml:",inline"`
	// Height and Width of the images (after resizing); both must be
	// multiples of 2^Depth.
	Height int `yaml:"height" json:"height"`
	Width  int `yaml:"width" json:"width"`
	// Latent is the dimension of z (default 20).
	Latent int `yaml:"latent" json:"latent"`
	// Loss is the likelihood: "bce" (Bernoulli, for data in [0,1]; the
	// default) or "mse" (Gaussian with variance 1/2: the sum of squared
	// errors plus (D/2)·ln π nats, for natural images).
	Loss string `yaml:"loss" json:"loss"`
	// Beta weighs the KL term in training (default 1, the ELBO; beta > 1
	// is the beta-VAE). Validation always reports the beta = 1 ELBO.
	Beta float64 `yaml:"beta" json:"beta"`
	// KLWarmupEpochs ramps the KL weight linearly from 0 to Beta over this
	// many (fractional) epochs (default 0: no warm-up).
	KLWarmupEpochs float64 `yaml:"kl_warmup_epochs" json:"kl_warmup_epochs"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.EncoderConfig.Defaults()
	if c.Latent == 0 {
		c.Latent = 20
	}
	if c.Loss == "" {
		c.Loss = "bce"
	}
	if c.Beta == 0 {
		c.Beta = 1
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
	if c.Latent < 1 || c.Latent > 4096 {
		return fmt.Errorf("latent must be in 1..4096 for a VAE, got %d", c.Latent)
	}
	if c.Loss != "bce" && c.Loss != "mse" {
		return fmt.Errorf("loss must be \"bce\" or \"mse\", got %q", c.Loss)
	}
	if !(c.Beta > 0) || math.IsInf(c.Beta, 0) {
		return fmt.Errorf("beta must be positive, got %g", c.Beta)
	}
	if c.KLWarmupEpochs < 0 || math.IsInf(c.KLWarmupEpochs, 0) || math.IsNaN(c.KLWarmupEpochs) {
		return fmt.Errorf("kl_warmup_epochs must be >= 0, got %g", c.KLWarmupEpochs)
	}
	return nil
}

// LossKind is the likelihood as an ops.LossKind.
func (c Config) LossKind() ops.LossKind {
	if c.Loss == "bce" {
		return ops.BCEWithLogits
	}
	return ops.MSE
}

// ImageSize is the number of values in one image.
func (c Config) ImageSize() int { return c.InChannels * c.Height * c.Width }

// ReconOffset is the constant, in nats per image, that turns the summed
// pointwise loss into a negative log-likelihood: (D/2)·ln π for the
// Gaussian of variance 1/2, 0 for the Bernoulli.
func (c Config) ReconOffset() float64 {
	if c.LossKind() == ops.MSE {
		return 0.5 * float64(c.ImageSize()) * math.Log(math.Pi)
	}
	return 0
}

// BetaAt is the KL weight at a fractional epoch: Beta, ramped linearly from
// 0 over the first KLWarmupEpochs.
func (c Config) BetaAt(progress float64) float64 {
	if c.KLWarmupEpochs <= 0 || progress >= c.KLWarmupEpochs {
		return c.Beta
	}
	return c.Beta * max(0, progress) / c.KLWarmupEpochs
}

// Net is the VAE built into one graph: encoder.*, mu.*, logvar.*, then the
// shared nn.LatentDecoder: from_latent.*, decoder.* and head.* parameters.
type Net struct {
	Encoder    *nn.Encoder
	mu, logvar *nn.Linear
	Decoder    *nn.LatentDecoder
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
	bc, bh, bw := cfg.Bottleneck(cfg.Height, cfg.Width)
	flat := bc * bh * bw
	if n.mu, err = nn.NewLinear(s, "mu", flat, cfg.Latent); err != nil {
		return nil, err
	}
	if n.logvar, err = nn.NewLinear(s, "logvar", flat, cfg.Latent); err != nil {
		return nil, err
	}
	if n.Decoder, err = nn.NewLatentDecoder(s, cfg.EncoderConfig, cfg.Latent, cfg.Height, cfg.Width); err != nil {
		return nil, err
	}
	return n, nil
}

// Encode maps images [N,C,H,W] to the posterior's mean and log-variance,
// both [N,Latent].
func (n *Net) Encode(x *G.Node) (mu, logvar *G.Node, err error) {
	b, _, err := n.Encoder.Forward(x)
	if err != nil {
		return nil, nil, err
	}
	flat, err := nn.Flatten(b)
	if err != nil {
		return nil, nil, err
	}
	if mu, err = n.mu.Forward(flat); err != nil {
		return nil, nil, fmt.Errorf("mu: %w", err)
	}
	if logvar, err = n.logvar.Forward(flat); err != nil {
		return nil, nil, fmt.Errorf("logvar: %w", err)
	}
	return mu, logvar, nil
}

// Decode maps latent points [N,Latent] to output logits (bce) or values
// (mse) [N,C,H,W].
func (n *Net) Decode(z *G.Node) (*G.Node, error) { return n.Decoder.Forward(z) }

// Forward encodes x, draws z = mu + exp(logvar/2)*eps with the given
// standard normal noise eps [N,Latent], and decodes it.
func (n *Net) Forward(x, eps *G.Node) (y, mu, logvar *G.Node, err error) {
	if mu, logvar, err = n.Encode(x); err != nil {
		return nil, nil, nil, err
	}
	z, err := ops.Reparameterize(mu, logvar, eps)
	if err != nil {
		return nil, nil, nil, err
	}
	if y, err = n.Decode(z); err != nil {
		return nil, nil, nil, err
	}
	return y, mu, logvar, nil
}

// Model is a trained (or new) VAE: its configuration and weights, with
// inference graphs built on demand.
type Model struct {
	Config Config
	Store  *nn.Store
	// Info is extra metadata saved with the model (what it was trained on,
	// say); Load fills it with the file's whole metadata.
	Info map[string]string
	enc  *nn.Runner
	dec  *nn.Runner
	eval *nn.Runner
}

// New makes a VAE with fresh weights drawn from seed.
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
	cfg := m.Config
	image := func(s *nn.Scope, n int) *G.Node { return s.Input("x", n, cfg.InChannels, cfg.Height, cfg.Width) }
	m.enc = nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		net, err := NewNet(s, cfg)
		if err != nil {
			return nil, nil, err
		}
		x := image(s, n)
		mu, lv, err := net.Encode(x)
		return []*G.Node{x}, []*G.Node{mu, lv}, err
	})
	m.dec = nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		net, err := NewNet(s, cfg)
		if err != nil {
			return nil, nil, err
		}
		z := s.Input("z", n, cfg.Latent)
		y, err := net.Decode(z)
		return []*G.Node{z}, []*G.Node{y}, err
	})
	// evaluation: the posterior, a decoded sample (for the ELBO) and the
	// decoded mean (for the reconstruction error)
	m.eval = nn.NewRunner(m.Store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		net, err := NewNet(s, cfg)
		if err != nil {
			return nil, nil, err
		}
		x, eps := image(s, n), s.Input("eps", n, cfg.Latent)
		y, mu, lv, err := net.Forward(x, eps)
		if err != nil {
			return nil, nil, err
		}
		ym, err := net.Decode(mu)
		return []*G.Node{x, eps}, []*G.Node{mu, lv, y, ym}, err
	})
}

// Load reads a VAE model file.
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
		"segtool.latent":    strconv.Itoa(m.Config.Latent),
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
	m.enc.Close()
	m.dec.Close()
	m.eval.Close()
}

// ImageSize is the number of values in one image.
func (m *Model) ImageSize() int { return m.Config.ImageSize() }

// CodeSize is the latent dimension.
func (m *Model) CodeSize() int { return m.Config.Latent }

// EncodeDist returns the posterior of n images (NCHW in [0,1]): the means
// and log-variances, n*Latent values each.
func (m *Model) EncodeDist(x []float32, n int) (mu, logvar []float32, err error) {
	out, err := m.enc.Run(n, x)
	if err != nil {
		return nil, nil, err
	}
	return out[0], out[1], nil
}

// Encode returns the posterior means of n images, n*Latent values: the
// codes of the images.
func (m *Model) Encode(x []float32, n int) ([]float32, error) {
	mu, _, err := m.EncodeDist(x, n)
	return mu, err
}

// Decode returns the images of n latent points (the mean of p(x|z): the
// sigmoid of the logits for a BCE model).
func (m *Model) Decode(z []float32, n int) ([]float32, error) {
	out, err := m.dec.Run(n, z)
	if err != nil {
		return nil, err
	}
	return m.toImage(out[0]), nil
}

// Reconstruct decodes the posterior means of n images.
func (m *Model) Reconstruct(x []float32, n int) ([]float32, error) {
	mu, err := m.Encode(x, n)
	if err != nil {
		return nil, err
	}
	return m.Decode(mu, n)
}

// Sample decodes n draws from the prior N(0, I); the same seed gives the
// same images.
func (m *Model) Sample(n int, seed uint64) ([]float32, error) {
	return m.Decode(Normal(n*m.Config.Latent, seed), n)
}

// Normal returns n standard normal draws from seed.
func Normal(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x7ae5eed))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func (m *Model) toImage(y []float32) []float32 { return ops.ToImage(m.Config.LossKind(), y) }
