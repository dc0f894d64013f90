package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/segtool/segtool/ae"
	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"go.yaml.in/yaml/v3"
)

// Config is a training run's YAML file. Unknown keys and wrong types are
// errors; every field has a default so a config names only what it changes.
type Config struct {
	// Task is "ae" (the reconstruction auto-encoder), "vae" (the
	// variational auto-encoder) or "seg" (the U-Net segmenter).
	Task string `yaml:"task"`
	// Name is the run's name: its directory is runs/<name> unless --out says
	// otherwise. Default: the config file's name.
	Name  string      `yaml:"name"`
	Data  DataConfig  `yaml:"data"`
	Model ModelConfig `yaml:"model"`
	Train TrainConfig `yaml:"train"`

	// warn receives warnings while data are opened (skipped pairs); not
	// part of the file.
	warn io.Writer
}

// DataConfig says where the images are and what size they are trained at.
type DataConfig struct {
	// Train is "mnist" (the training split of MNIST) or a folder of images
	// (its images/ subfolder if there is one).
	Train string `yaml:"train"`
	// Val is "mnist:test" or a folder; empty holds out val_fraction of Train.
	Val string `yaml:"val"`
	// ValFraction of Train is held out for validation when Val is empty
	// (default 0.1).
	ValFraction *float64 `yaml:"val_fraction"`
	// Channels is 1 (grey) or 3 (RGB; default 3, 1 for MNIST).
	Channels int `yaml:"channels"`
	// Height, Width: images are resized to this (default 64x64; MNIST 28x28).
	Height int `yaml:"height"`
	Width  int `yaml:"width"`
	// Limit trains on the first Limit images only (0: all).
	Limit int `yaml:"limit"`

	// Segmentation only.

	// Classes names the classes in label order, each with a display colour
	// (required for seg; colours are also how "rgb" masks are read).
	Classes []ClassConfig `yaml:"classes"`
	// IgnoreIndex is the mask label left out of loss and metrics (CamVid's
	// void 11, or 255); default -1: none, every mask value must be a class.
	IgnoreIndex *int `yaml:"ignore_index"`
	// IgnoreColor is the colour of ignored pixels in RGB colour masks (the
	// void of a colour-coded data set); it reads as IgnoreIndex.
	IgnoreColor *Color `yaml:"ignore_color,omitempty"`
	// MaskEncoding is index, palette, rgb, binary or auto (default).
	MaskEncoding string `yaml:"mask_encoding"`
	// Augment switches training augmentations on, each with its strength.
	Augment AugmentConfig `yaml:"augment"`
	// SkipBad skips unreadable or inconsistent image/mask pairs with a
	// warning instead of stopping (default false).
	SkipBad bool `yaml:"skip_bad"`
}

// ClassConfig is one class of a segmentation config: {name: road, color:
// [128, 64, 128]} (also color: "#804080", or colour:), or a bare name, whose
// colour Defaults takes from datasets.DefaultPalette.
type ClassConfig struct {
	Name  string `yaml:"name"`
	Color Color  `yaml:"color"`
	// noColor: a bare name; Defaults picks the colour
	noColor bool
}

// UnmarshalYAML reads the forms above; other keys are errors, as anywhere
// else in a config.
func (c *ClassConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*c = ClassConfig{Name: n.Value, noColor: true}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a class is {name: NAME, color: [R, G, B]} or a bare name", n.Line)
	}
	*c = ClassConfig{noColor: true}
	var color *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			if err := v.Decode(&c.Name); err != nil {
				return err
			}
		case "color", "colour":
			color = v
		default:
			return fmt.Errorf("line %d: unknown key %q in a class of data.classes (its keys: name, color)", k.Line, k.Value)
		}
	}
	if c.Name == "" {
		return fmt.Errorf("line %d: a class of data.classes needs a name", n.Line)
	}
	if color != nil {
		if err := color.Decode(&c.Color); err != nil {
			return fmt.Errorf("data.classes: class %q: %w", c.Name, err)
		}
		c.noColor = false
	}
	return nil
}

// Color is an RGB colour in a config: [r, g, b] (each 0..255) or "#rrggbb".
type Color [3]uint8

// UnmarshalYAML reads either form.
func (c *Color) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var v []int
		if err := n.Decode(&v); err != nil || len(v) != 3 {
			return fmt.Errorf("line %d: write a colour as [R, G, B] with each 0..255, or \"#rrggbb\"", n.Line)
		}
		for i, x := range v {
			if x < 0 || x > 255 {
				return fmt.Errorf("line %d: colour component %d is outside 0..255", n.Line, x)
			}
			c[i] = uint8(x)
		}
		return nil
	}
	v, err := datasets.ParseColor(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*c = v
	return nil
}

// MarshalYAML writes [r, g, b] on one line.
func (c Color) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, v := range c {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(int(v))})
	}
	return n, nil
}

// AugmentConfig is the training augmentation (all off by default).
type AugmentConfig struct {
	HFlip bool `yaml:"hflip"`
	VFlip bool `yaml:"vflip"`
	// Scale is [min, max] of a random zoom, then a crop (or pad) back to size.
	Scale []float64 `yaml:"scale,flow"`
	// Rotate is the largest rotation in degrees.
	Rotate float64 `yaml:"rotate"`
	// Brightness, Contrast, Saturation are jitter strengths (0.2 = ±20%).
	Brightness float64 `yaml:"brightness"`
	Contrast   float64 `yaml:"contrast"`
	Saturation float64 `yaml:"saturation"`
}

// ModelConfig is the architecture.
type ModelConfig struct {
	// Base width (default 16) and Depth (default 4, or 2 for 28x28 MNIST)
	// of the encoder; the decoder mirrors it.
	Base  int `yaml:"base"`
	Depth int `yaml:"depth"`
	// Norm is "batch" (default) or "none".
	Norm string `yaml:"norm"`
	// Latent is the size of the auto-encoder's code (default 16; 0: the
	// convolutional bottleneck itself).
	Latent *int `yaml:"latent"`
	// Loss is "bce" (default) or "mse".
	Loss string `yaml:"loss"`
	// Noise is the std of the input noise for a denoising AE (default 0).
	Noise float64 `yaml:"noise"`
	// Beta weighs the VAE's KL term (default 1); KLWarmupEpochs ramps it
	// linearly from 0 over that many epochs (default 0: none).
	Beta           float64 `yaml:"beta,omitempty"`
	KLWarmupEpochs float64 `yaml:"kl_warmup_epochs,omitempty"`

	// Segmentation only.

	// ClassWeights weight the cross-entropy (or focal) loss per class: a
	// list, or "auto" for median-frequency balancing from the training masks.
	ClassWeights WeightsConfig `yaml:"class_weights"`
	// FocalGamma is the focal loss's gamma (default 2).
	FocalGamma float64 `yaml:"focal_gamma"`
	// InitEncoder is a model file (ae, vae or seg) whose encoder.* weights
	// start the segmenter's encoder.
	InitEncoder string `yaml:"init_encoder"`
	// FreezeEncoderEpochs trains only the decoder for that many epochs.
	FreezeEncoderEpochs int `yaml:"freeze_encoder_epochs"`
}

// WeightsConfig is a list of class weights or "auto".
type WeightsConfig struct {
	Auto   bool
	Values []float64
}

// UnmarshalYAML accepts a list of numbers or the word auto.
func (w *WeightsConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "auto" {
			w.Auto = true
			return nil
		}
		return fmt.Errorf("line %d: class_weights is a list of numbers or auto, not %q", n.Line, n.Value)
	}
	return n.Decode(&w.Values)
}

// MarshalYAML writes it back the same way.
func (w WeightsConfig) MarshalYAML() (any, error) {
	if w.Auto {
		return "auto", nil
	}
	return w.Values, nil
}

// IsZero lets omitempty-free marshalling print nothing for unset weights.
func (w WeightsConfig) IsZero() bool { return !w.Auto && w.Values == nil }

// TrainConfig is the optimisation.
type TrainConfig struct {
	Epochs      int     `yaml:"epochs"`       // default 10
	Batch       int     `yaml:"batch"`        // default 32
	LR          float64 `yaml:"lr"`           // default 0.001
	WeightDecay float64 `yaml:"weight_decay"` // default 0
	// Schedule of the learning rate: constant (default) or cosine.
	Schedule string `yaml:"schedule"`
	Seed     uint64 `yaml:"seed"` // default 1
}

// LoadConfig reads a YAML config strictly.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %s", path, explainYAML(err))
	}
	if cfg.Name == "" {
		base := path[strings.LastIndex(path, "/")+1:]
		cfg.Name = strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
	}
	return &cfg, nil
}

func isMNIST(spec string) bool { return spec == "mnist" || strings.HasPrefix(spec, "mnist:") }

// Defaults fills what the file left out.
func (c *Config) Defaults() {
	if c.Task == "" {
		c.Task = "ae"
	}
	mnist := isMNIST(c.Data.Train)
	if c.Data.Channels == 0 {
		c.Data.Channels = 3
		if mnist {
			c.Data.Channels = 1
		}
	}
	if c.Data.Height == 0 && c.Data.Width == 0 {
		c.Data.Height, c.Data.Width = 64, 64
		if mnist {
			c.Data.Height, c.Data.Width = 28, 28
		}
	}
	if c.Data.ValFraction == nil {
		f := 0.1
		c.Data.ValFraction = &f
	}
	if c.Data.Val == "" && mnist {
		c.Data.Val = "mnist:test"
	}
	if c.Model.Base == 0 {
		c.Model.Base = 16
	}
	if c.Model.Depth == 0 {
		c.Model.Depth = 4
		if c.Data.Height == 28 && c.Data.Width == 28 {
			c.Model.Depth = 2
		}
	}
	if c.Model.Norm == "" {
		c.Model.Norm = string(nn.BatchNorm)
	}
	if c.Model.Latent == nil {
		l := 16
		if c.Task == "vae" {
			l = 20
		}
		c.Model.Latent = &l
	}
	if c.Task == "vae" && c.Model.Beta == 0 {
		c.Model.Beta = 1
	}
	if c.Model.Loss == "" {
		c.Model.Loss = "bce"
		if c.Task == "seg" {
			c.Model.Loss = "ce"
		}
	}
	if c.Data.IgnoreIndex == nil {
		none := -1
		c.Data.IgnoreIndex = &none
	}
	palette := datasets.DefaultPalette(len(c.Data.Classes))
	for i := range c.Data.Classes {
		if cl := &c.Data.Classes[i]; cl.noColor {
			cl.Color, cl.noColor = palette[i], false
		}
	}
	if c.Data.MaskEncoding == "" {
		c.Data.MaskEncoding = "auto"
	}
	if c.Train.Epochs == 0 {
		c.Train.Epochs = 10
	}
	if c.Train.Batch == 0 {
		c.Train.Batch = 32
	}
	if c.Train.LR == 0 {
		c.Train.LR = 1e-3
	}
	if c.Train.Seed == 0 {
		c.Train.Seed = 1
	}
}

// Validate checks the whole config, naming the key at fault.
func (c *Config) Validate() error {
	if _, ok := trainers[c.Task]; !ok {
		return fmt.Errorf("task: %q is not a task this segtool trains (%s)", c.Task, strings.Join(sortedKeys(trainers), ", "))
	}
	if c.Data.Train == "" {
		return errors.New("data.train: no training data given (a folder of images, or mnist); set it in the config or pass --data")
	}
	if c.Data.Channels != 1 && c.Data.Channels != 3 {
		return fmt.Errorf("data.channels: %d; use 1 (grey) or 3 (RGB)", c.Data.Channels)
	}
	if c.Data.Height < 1 || c.Data.Width < 1 {
		return fmt.Errorf("data.height/width: %dx%d must be positive", c.Data.Height, c.Data.Width)
	}
	if f := *c.Data.ValFraction; f < 0 || f >= 1 {
		return fmt.Errorf("data.val_fraction: %g must be in [0, 1)", f)
	}
	if c.Data.Limit < 0 {
		return fmt.Errorf("data.limit: %d must be >= 0", c.Data.Limit)
	}
	if c.Train.Schedule != "" && c.Train.Schedule != "constant" && c.Train.Schedule != "cosine" {
		return fmt.Errorf("train.schedule: %q; use constant or cosine", c.Train.Schedule)
	}
	if c.Train.Epochs < 1 || c.Train.Batch < 1 || !(c.Train.LR > 0) || c.Train.WeightDecay < 0 {
		return fmt.Errorf("train: epochs (%d), batch (%d) and lr (%g) must be positive, weight_decay (%g) >= 0",
			c.Train.Epochs, c.Train.Batch, c.Train.LR, c.Train.WeightDecay)
	}
	if check, ok := modelChecks[c.Task]; ok {
		if err := check(c); err != nil {
			return err
		}
	}
	return nil
}

// modelChecks validates the task-specific part of a config.
var modelChecks = map[string]func(*Config) error{
	"ae": func(c *Config) error {
		if _, err := c.AEConfig(); err != nil {
			return fmt.Errorf("model: %w", err)
		}
		return nil
	},
}

// AEConfig is the auto-encoder the config describes.
func (c *Config) AEConfig() (ae.Config, error) {
	cfg := ae.Config{
		EncoderConfig: nn.EncoderConfig{InChannels: c.Data.Channels, Base: c.Model.Base, Depth: c.Model.Depth, Norm: nn.Norm(c.Model.Norm)},
		Height:        c.Data.Height, Width: c.Data.Width,
		Latent: *c.Model.Latent, Loss: c.Model.Loss, Noise: c.Model.Noise,
	}
	cfg.Defaults()
	return cfg, cfg.Validate()
}

// YAML is the resolved config, written into the run directory.
func (c *Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
