package seg

import (
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/nntest"
	"github.com/segtool/segtool/nn/ops"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestUNetGradients(t *testing.T) {
	cfg := NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 2, Base: 2, Depth: 2, Norm: nn.BatchNorm}, Classes: 3}
	nntest.CheckGradients(t, []int{2, 2, 8, 4}, false, func(s *nn.Scope, x *G.Node) (*G.Node, error) {
		u, err := NewUNet(s, cfg)
		if err != nil {
			return nil, err
		}
		logits, err := u.Forward(x)
		if err != nil {
			return nil, err
		}
		labels := s.Input("labels", 2, 8, 4)
		ld := labels.Value().Data().([]float64)
		for i := range ld {
			ld[i] = float64(i % 4) // 3 is ignored
		}
		return ops.SegLoss(logits, labels, ops.SegLossOptions{Kind: ops.CrossEntropy, Ignore: 3})
	})
}

func TestUNetShapesAndNames(t *testing.T) {
	store := nn.NewStore(tensor.Float32, 1)
	s := nn.NewScope(store, nn.EvalMode)
	u, err := NewUNet(s, NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: 4, Depth: 3, Norm: nn.BatchNorm}, Classes: 5})
	require.NoError(t, err)
	y, err := u.Forward(s.Input("x", 2, 3, 16, 24))
	require.NoError(t, err)
	assert.Equal(t, []int{2, 5, 16, 24}, []int(y.Shape()))
	// the deepest decoder level joins 32 upsampled channels with the 16 of the skip
	assert.Equal(t, []int{16, 48, 3, 3}, []int(store.Get("decoder.up1.conv1.weight").Value.Shape()))
	assert.Equal(t, []int{4, 12, 3, 3}, []int(store.Get("decoder.up3.conv1.weight").Value.Shape()))
	assert.Equal(t, []int{5, 4, 1, 1}, []int(store.Get("head.weight").Value.Shape()))
	require.Error(t, NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: 4, Depth: 3, Norm: nn.BatchNorm}, Classes: 1}.Validate())
}
