package nn_test

import (
	"fmt"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/nntest"
	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
)

func TestModuleGradients(t *testing.T) {
	t.Run("conv_block_batchnorm", func(t *testing.T) {
		nntest.CheckGradients(t, []int{2, 3, 6, 6}, true, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
			b, err := nn.NewConvBlock(s, "block", nn.BlockConfig{In: 3, Out: 4, Norm: nn.BatchNorm})
			if err != nil {
				return nil, err
			}
			return b.Forward(x)
		})
	})
	t.Run("encoder", func(t *testing.T) {
		nntest.CheckGradients(t, []int{2, 2, 8, 8}, false, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
			e, err := nn.NewEncoder(s, "encoder", nn.EncoderConfig{InChannels: 2, Base: 3, Depth: 2, Norm: nn.BatchNorm})
			if err != nil {
				return nil, err
			}
			b, skips, err := e.Forward(x)
			if err != nil {
				return nil, err
			}
			// every skip must reach the loss too
			if len(skips) != 2 || skips[0].Shape()[2] != 8 || skips[1].Shape()[2] != 4 {
				return nil, fmt.Errorf("skips %v", skips)
			}
			up, err := ops.Upsample2(b)
			if err != nil {
				return nil, err
			}
			return ops.ConcatChannels(up, skips[1])
		})
	})
	t.Run("decoder_no_norm", func(t *testing.T) {
		nntest.CheckGradients(t, []int{2, 8, 2, 2}, true, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
			d, err := nn.NewDecoder(s, "decoder", nn.EncoderConfig{InChannels: 1, Base: 2, Depth: 2, Norm: nn.NoNorm})
			if err != nil {
				return nil, err
			}
			return d.Forward(x)
		})
	})
	t.Run("linear", func(t *testing.T) {
		nntest.CheckGradients(t, []int{3, 5}, true, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
			l, err := nn.NewLinear(s, "fc", 5, 2)
			if err != nil {
				return nil, err
			}
			return l.Forward(x)
		})
	})
}
