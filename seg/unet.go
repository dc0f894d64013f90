// Package seg is the semantic segmenter: a U-Net made of the shared encoder,
// a decoder that upsamples and concatenates the encoder's skip features, and
// a 1x1 head to one logit per class; its losses, its confusion-matrix
// metrics, and the predictor that turns images of any size into class maps.
//
// Binary masks are two classes with a softmax, like any other: one code path,
// one loss, one set of metrics.
package seg

import (
	"fmt"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
)

// Kind is the model kind written in segmenter model files.
const Kind = "seg"

// NetConfig is the U-Net's architecture.
type NetConfig struct {
	nn.EncoderConfig `yaml:",inline"`
	// Classes is the number of classes, at least 2 (the ignore index is
	// not a class).
	Classes int `yaml:"classes" json:"classes"`
}

// Validate checks the architecture.
func (c NetConfig) Validate() error {
	if err := c.EncoderConfig.Validate(); err != nil {
		return err
	}
	if c.Classes < 2 {
		return fmt.Errorf("classes must be at least 2 (binary masks are 2 classes), got %d", c.Classes)
	}
	return nil
}

// UNet is the segmenter built into one graph: encoder.*, decoder.up1 (the
// deepest) ... decoder.upD, head.*.
type UNet struct {
	cfg     NetConfig
	Encoder *nn.Encoder
	ups     []*nn.ConvBlock
	head    *nn.Conv
}

// NewUNet builds the network's modules into s.
func NewUNet(s *nn.Scope, cfg NetConfig) (*UNet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := &UNet{cfg: cfg}
	var err error
	if u.Encoder, err = nn.NewEncoder(s, "encoder", cfg.EncoderConfig); err != nil {
		return nil, err
	}
	ch := cfg.Channels()
	dec := s.Sub("decoder")
	for i := cfg.Depth - 1; i >= 0; i-- {
		// upsampled deeper features (ch[i+1]) joined with the skip (ch[i])
		b, err := nn.NewConvBlock(dec, fmt.Sprintf("up%d", cfg.Depth-i), nn.BlockConfig{In: ch[i+1] + ch[i], Out: ch[i], Norm: cfg.Norm})
		if err != nil {
			return nil, err
		}
		u.ups = append(u.ups, b)
	}
	if u.head, err = nn.NewConv(s, "head", nn.ConvConfig{In: cfg.Base, Out: cfg.Classes, Kernel: 1}); err != nil {
		return nil, err
	}
	return u, nil
}

// Forward maps images [N,C,H,W] (H, W multiples of 2^Depth) to logits
// [N,Classes,H,W].
func (u *UNet) Forward(x *G.Node) (*G.Node, error) {
	b, skips, err := u.Encoder.Forward(x)
	if err != nil {
		return nil, err
	}
	x = b
	for i, blk := range u.ups {
		skip := skips[len(skips)-1-i]
		if x, err = ops.Upsample2(x); err != nil {
			return nil, err
		}
		if x, err = ops.ConcatChannels(x, skip); err != nil {
			return nil, err
		}
		if x, err = blk.Forward(x); err != nil {
			return nil, fmt.Errorf("decoder.up%d: %w", i+1, err)
		}
	}
	return u.head.Forward(x)
}
