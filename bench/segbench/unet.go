package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
	"github.com/segtool/segtool/seg"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Net is the reference workload of issue 3: the U-Net of base width 16 and
// depth 4 on batches of 3-channel square images, 4 classes.
type Net struct {
	Batch, Size, Base, Depth, Classes int
	Norm                              nn.Norm
}

func (n Net) config() seg.NetConfig {
	return seg.NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: n.Base, Depth: n.Depth, Norm: n.Norm}, Classes: n.Classes}
}

// ConvFLOPs counts the multiply-adds (as 2 FLOPs) of every convolution in one
// forward pass, and in one training step: forward, backward data (all but
// the first layer, whose input needs no gradient) and backward weights.
// Both benchmarks are scored by these same numbers.
func (n Net) ConvFLOPs() (forward, train float64) {
	conv := func(c, o, hw, k int) float64 { return 2 * float64(n.Batch) * float64(hw*hw) * float64(o*c*k*k) }
	ch := n.config().Channels()
	var first float64
	in := 3
	for i, c := range ch {
		hw := n.Size >> i
		f := conv(in, c, hw, 3)
		if i == 0 {
			first = f
		}
		forward += f + conv(c, c, hw, 3)
		in = c
	}
	for i := n.Depth - 1; i >= 0; i-- {
		hw := n.Size >> i
		forward += conv(ch[i+1]+ch[i], ch[i], hw, 3) + conv(ch[i], ch[i], hw, 3)
	}
	forward += conv(n.Base, n.Classes, n.Size, 1)
	return forward, 3*forward - first
}

// trainer is one training graph with its machine and optimiser: what
// nn.Train runs each step (feed, run, Adam, reset), without the data loader.
type trainer struct {
	x, labels, logits, loss *G.Node
	logitsValue             G.Value // bound after each run
	nodes                   []*G.Node
	params                  []*nn.Param
	vm                      G.VM
	adam                    *nn.Adam
	scope                   *nn.Scope
}

func newTrainer(store *nn.Store, net Net) (*trainer, error) {
	s := nn.NewScope(store, nn.TrainMode)
	u, err := seg.NewUNet(s, net.config())
	if err != nil {
		return nil, err
	}
	t := &trainer{scope: s}
	t.x = s.Input("x", net.Batch, 3, net.Size, net.Size)
	t.labels = s.Input("labels", net.Batch, net.Size, net.Size)
	if t.logits, err = u.Forward(t.x); err != nil {
		return nil, err
	}
	if t.loss, err = ops.SegLoss(t.logits, t.labels, ops.SegLossOptions{Kind: ops.CrossEntropy, Ignore: -1}); err != nil {
		return nil, err
	}
	G.Read(t.logits, &t.logitsValue)
	t.nodes, t.params = s.Learnables()
	if _, err := G.Grad(t.loss, t.nodes...); err != nil {
		return nil, fmt.Errorf("differentiate: %w", err)
	}
	t.vm = G.NewTapeMachine(s.Graph(), G.BindDualValues(t.nodes...))
	t.adam = nn.NewAdam(1e-3, 0)
	return t, nil
}

// step runs one training step and returns the loss.
func (t *trainer) step(x, labels []float32) (float64, error) {
	if err := nn.Feed(t.x, x); err != nil {
		return 0, err
	}
	if err := nn.Feed(t.labels, labels); err != nil {
		return 0, err
	}
	defer t.vm.Reset()
	if err := t.vm.RunAll(); err != nil {
		return 0, err
	}
	loss, err := nn.Scalar(t.loss.Value())
	if err != nil {
		return 0, err
	}
	return loss, t.adam.Step(t.nodes, t.params, nil)
}

// newRunner is the inference graph, as seg's predictor runs it.
func newRunner(store *nn.Store, net Net) *nn.Runner {
	return nn.NewRunner(store, func(s *nn.Scope, n int) ([]*G.Node, []*G.Node, error) {
		u, err := seg.NewUNet(s, net.config())
		if err != nil {
			return nil, nil, err
		}
		x := s.Input("x", n, 3, net.Size, net.Size)
		y, err := u.Forward(x)
		return []*G.Node{x}, []*G.Node{y}, err
	})
}

// randomBatch is a batch of N(0,1) images and uniform labels.
func randomBatch(net Net, seed uint64) (x, labels []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	x = make([]float32, net.Batch*3*net.Size*net.Size)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	labels = make([]float32, net.Batch*net.Size*net.Size)
	for i := range labels {
		labels[i] = float32(r.IntN(net.Classes))
	}
	return x, labels
}

func newStore(seed uint64) *nn.Store { return nn.NewStore(tensor.Float32, seed) }
