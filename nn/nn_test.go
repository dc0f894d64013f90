package nn

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/nn/ops"
	"github.com/segtool/segtool/nn/safetensors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// moduleGradCheck builds a module with fresh float64 weights, reduces its
// output with fixed random weights, and checks the gradient of every
// parameter (a sample of elements each) and of the input against central
// finite differences.
func moduleGradCheck(t *testing.T, inShape []int, inputGrad bool, build func(s *Scope, x *G.Node) (*G.Node, error)) {
	t.Helper()
	store := NewStore(tensor.Float64, 1)
	s := NewScope(store, TrainMode)
	x := s.Input("x", inShape...)
	r := rand.New(rand.NewPCG(2, 3))
	xd := x.Value().Data().([]float64)
	for i := range xd {
		xd[i] = r.NormFloat64()
	}
	y, err := build(s, x)
	require.NoError(t, err)
	// Zero biases put exactly-zero pre-activations on ReLU's kink wherever a
	// layer's input is all zero, where finite differences are meaningless.
	for _, p := range store.Params() {
		if strings.HasSuffix(p.Name, "bias") {
			for i, v := range p.Value.Data().([]float64) {
				p.Value.Data().([]float64)[i] = v + 0.1*r.NormFloat64()
			}
		}
	}
	wv := make([]float64, y.Shape().TotalSize())
	for i := range wv {
		wv[i] = r.NormFloat64()
	}
	w := G.NewTensor(s.Graph(), tensor.Float64, y.Dims(), G.WithShape(y.Shape()...), G.WithValue(tensor.New(tensor.WithShape(y.Shape()...), tensor.WithBacking(wv))), G.WithName("w"))
	cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, w))))
	nodes, params := s.Learnables()
	wrt := append([]*G.Node(nil), nodes...)
	vals := make([][]float64, 0, len(params)+1)
	names := []string{}
	for _, p := range params {
		vals = append(vals, p.Value.Data().([]float64))
		names = append(names, p.Name)
	}
	if inputGrad {
		wrt = append(wrt, x)
		vals = append(vals, xd)
		names = append(names, "input")
	}
	_, err = G.Grad(cost, wrt...)
	require.NoError(t, err)
	m := G.NewTapeMachine(s.Graph(), G.BindDualValues(wrt...))
	defer m.Close()
	require.NoError(t, m.RunAll())
	analytic := make([][]float64, len(wrt))
	for i, n := range wrt {
		g, err := n.Grad()
		require.NoError(t, err)
		analytic[i] = append([]float64(nil), g.Data().([]float64)...)
	}
	m.Reset()
	eval := func() float64 {
		require.NoError(t, m.RunAll())
		v, err := Scalar(cost.Value())
		require.NoError(t, err)
		m.Reset()
		return v
	}
	const eps = 1e-5
	for i, v := range vals {
		idx := r.Perm(len(v))
		if len(idx) > 6 {
			idx = idx[:6]
		}
		for _, j := range idx {
			orig := v[j]
			v[j] = orig + eps
			up := eval()
			v[j] = orig - eps
			down := eval()
			v[j] = orig
			num := (up - down) / (2 * eps)
			assert.InDeltaf(t, num, analytic[i][j], 1e-4*max(1, math.Abs(num)), "%s[%d]", names[i], j)
		}
	}
}

func TestModuleGradients(t *testing.T) {
	t.Run("conv_block_batchnorm", func(t *testing.T) {
		moduleGradCheck(t, []int{2, 3, 6, 6}, true, func(s *Scope, x *G.Node) (*G.Node, error) {
			b, err := NewConvBlock(s, "block", BlockConfig{In: 3, Out: 4, Norm: BatchNorm})
			if err != nil {
				return nil, err
			}
			return b.Forward(x)
		})
	})
	t.Run("encoder", func(t *testing.T) {
		moduleGradCheck(t, []int{2, 2, 8, 8}, false, func(s *Scope, x *G.Node) (*G.Node, error) {
			e, err := NewEncoder(s, "encoder", EncoderConfig{InChannels: 2, Base: 3, Depth: 2, Norm: BatchNorm})
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
		moduleGradCheck(t, []int{2, 8, 2, 2}, true, func(s *Scope, x *G.Node) (*G.Node, error) {
			d, err := NewDecoder(s, "decoder", EncoderConfig{InChannels: 1, Base: 2, Depth: 2, Norm: NoNorm})
			if err != nil {
				return nil, err
			}
			return d.Forward(x)
		})
	})
	t.Run("linear", func(t *testing.T) {
		moduleGradCheck(t, []int{3, 5}, true, func(s *Scope, x *G.Node) (*G.Node, error) {
			l, err := NewLinear(s, "fc", 5, 2)
			if err != nil {
				return nil, err
			}
			return l.Forward(x)
		})
	})
}

func TestParameterNamesFollowModulePath(t *testing.T) {
	store := NewStore(tensor.Float32, 1)
	s := NewScope(store, TrainMode)
	_, err := NewEncoder(s, "encoder", EncoderConfig{InChannels: 3, Base: 4, Depth: 2, Norm: BatchNorm})
	require.NoError(t, err)
	for _, name := range []string{"encoder.inc.conv1.weight", "encoder.inc.norm2.running_var", "encoder.down2.conv2.bias", "encoder.down1.norm1.weight"} {
		assert.NotNil(t, store.Get(name), name)
	}
	assert.Equal(t, []int{16, 16, 3, 3}, []int(store.Get("encoder.down2.conv2.weight").Value.Shape()))
	nodes, params := s.Learnables()
	assert.Len(t, nodes, len(params))
	trainable := 0
	for _, p := range store.Params() {
		if p.Trainable {
			trainable++
		}
	}
	assert.Equal(t, trainable, len(params), "every trainable tensor is a learnable of the graph")
	assert.False(t, store.Get("encoder.inc.norm1.running_mean").Trainable)
}

func TestSameSeedSameWeights(t *testing.T) {
	build := func(seed uint64) []float32 {
		store := NewStore(tensor.Float32, seed)
		_, err := NewEncoder(NewScope(store, TrainMode), "encoder", EncoderConfig{InChannels: 1, Base: 2, Depth: 1, Norm: NoNorm})
		require.NoError(t, err)
		return append([]float32(nil), store.Get("encoder.down1.conv1.weight").Value.Data().([]float32)...)
	}
	assert.Equal(t, build(3), build(3))
	assert.NotEqual(t, build(3), build(4))
}

func TestModelRoundTripAndPrefixLoad(t *testing.T) {
	dir := t.TempDir()
	cfg := EncoderConfig{InChannels: 1, Base: 2, Depth: 2, Norm: BatchNorm}
	src := NewStore(tensor.Float32, 1)
	s := NewScope(src, TrainMode)
	_, err := NewEncoder(s, "encoder", cfg)
	require.NoError(t, err)
	_, err = NewDecoder(s, "decoder", cfg)
	require.NoError(t, err)
	src.Get("encoder.inc.norm1.running_mean").Value.Data().([]float32)[0] = 0.25
	path := filepath.Join(dir, "m.safetensors")
	require.NoError(t, SaveModel(path, src, map[string]string{MetaKind: "ae"}))

	f, err := ReadModel(path, "ae")
	require.NoError(t, err)
	dst := NewStore(tensor.Float32, 99)
	s2 := NewScope(dst, TrainMode)
	_, err = NewEncoder(s2, "encoder", cfg)
	require.NoError(t, err)
	_, err = NewDecoder(s2, "decoder", cfg)
	require.NoError(t, err)
	_, err = dst.Load(f, "", true)
	require.NoError(t, err)
	for _, p := range src.Params() {
		assert.Equal(t, p.Value.Data(), dst.Get(p.Name).Value.Data(), p.Name)
	}

	// an encoder-only model takes encoder.* and reports the decoder as unexpected
	enc := NewStore(tensor.Float32, 5)
	_, err = NewEncoder(NewScope(enc, TrainMode), "encoder", cfg)
	require.NoError(t, err)
	rep, err := enc.Load(f, "encoder.", false)
	require.NoError(t, err)
	assert.Empty(t, rep.Missing)
	assert.Empty(t, rep.Unexpected, "the prefix limits what is considered")
	assert.Equal(t, src.Get("encoder.down2.conv1.weight").Value.Data(), enc.Get("encoder.down2.conv1.weight").Value.Data())
	_, err = enc.Load(f, "", true)
	require.ErrorContains(t, err, "decoder.up1.conv1.weight")

	// a wider encoder fails naming the tensor and both shapes
	wide := NewStore(tensor.Float32, 5)
	_, err = NewEncoder(NewScope(wide, TrainMode), "encoder", EncoderConfig{InChannels: 1, Base: 4, Depth: 2, Norm: BatchNorm})
	require.NoError(t, err)
	_, err = wide.Load(f, "encoder.", false)
	require.ErrorContains(t, err, "encoder.inc.conv1.weight: shape [2 1 3 3] in the file but [4 1 3 3] in the model")

	_, err = ReadModel(path, "seg")
	require.ErrorContains(t, err, `is a "ae" model`)
	foreign := filepath.Join(dir, "foreign.safetensors")
	require.NoError(t, safetensors.Write(foreign, map[string]safetensors.Tensor{"x": safetensors.F32([]int{1}, []float32{1})}, nil))
	_, err = ReadModel(foreign)
	require.ErrorContains(t, err, "not a segtool model")
}

// toyData is a small deterministic unlabelled data set.
type toyData struct {
	n, c, h, w int
}

func (d toyData) Len() int               { return d.n }
func (d toyData) Shape() (int, int, int) { return d.c, d.h, d.w }
func (d toyData) Get(i int, _ uint64) ([]float32, []int32, error) {
	r := rand.New(rand.NewPCG(uint64(i), 1))
	v := make([]float32, d.c*d.h*d.w)
	for j := range v {
		v[j] = r.Float32()
	}
	return v, nil, nil
}

// regressTask learns to reproduce its input through one conv block (enough
// to exercise the trainer without the ae package).
type regressTask struct{ validations int }

func (rt *regressTask) BuildTrain(s *Scope, n int) (*TrainGraph, error) {
	x := s.Input("x", n, 1, 4, 4)
	b, err := NewConvBlock(s, "block", BlockConfig{In: 1, Out: 2, Norm: BatchNorm})
	if err != nil {
		return nil, err
	}
	y, err := b.Forward(x)
	if err != nil {
		return nil, err
	}
	head, err := NewConv(s, "head", ConvConfig{In: 2, Out: 1, Kernel: 1})
	if err != nil {
		return nil, err
	}
	if y, err = head.Forward(y); err != nil {
		return nil, err
	}
	loss, err := ops.PointwiseLoss(ops.MSE, y, x)
	if err != nil {
		return nil, err
	}
	return &TrainGraph{Scope: s, Loss: loss, Feed: func(b Batch) error { return Feed(x, b.X) }}, nil
}
func (rt *regressTask) Validate(context.Context, *Store, Dataset) (map[string]float64, error) {
	rt.validations++
	return map[string]float64{"score": float64(rt.validations)}, nil
}
func (rt *regressTask) Metadata() (map[string]string, error) {
	return map[string]string{MetaKind: "toy"}, nil
}
func (rt *regressTask) Best() (string, bool) { return "score", true }

func trainToy(t *testing.T, dir string, epochs int, resume bool, ctx context.Context) (*Store, error) {
	store := NewStore(tensor.Float32, 11)
	_, err := Train(ctx, &regressTask{}, store, toyData{n: 20, c: 1, h: 4, w: 4}, toyData{n: 4, c: 1, h: 4, w: 4},
		TrainOptions{Epochs: epochs, Batch: 6, LR: 1e-2, Seed: 5, RunDir: dir, Resume: resume, Quiet: true})
	return store, err
}

func TestResumeMatchesUninterruptedRun(t *testing.T) {
	full, err := trainToy(t, t.TempDir(), 3, false, context.Background())
	require.NoError(t, err)

	dir := t.TempDir()
	_, err = trainToy(t, dir, 1, false, context.Background())
	require.NoError(t, err)
	resumed, err := trainToy(t, dir, 3, true, context.Background())
	require.NoError(t, err)
	for _, p := range full.Params() {
		assert.Equal(t, p.Value.Data(), resumed.Get(p.Name).Value.Data(), p.Name)
	}
	// metrics.jsonl has one line per epoch, not duplicated by the resume
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	require.NoError(t, err)
	assert.Equal(t, 3, countLines(b))
	for _, f := range []string{LastModel, BestModel, StateFile} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
}

func TestInterruptSavesAndResumesMidEpoch(t *testing.T) {
	full, err := trainToy(t, t.TempDir(), 2, false, context.Background())
	require.NoError(t, err)

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // interrupted before the first step
	_, err = trainToy(t, dir, 2, false, ctx)
	require.ErrorIs(t, err, ErrInterrupted)
	require.FileExists(t, filepath.Join(dir, StateFile))
	resumed, err := trainToy(t, dir, 2, true, context.Background())
	require.NoError(t, err)
	for _, p := range full.Params() {
		assert.Equal(t, p.Value.Data(), resumed.Get(p.Name).Value.Data(), p.Name)
	}
}

func TestTrainingLowersTheLoss(t *testing.T) {
	dir := t.TempDir()
	store := NewStore(tensor.Float32, 11)
	res, err := Train(context.Background(), &regressTask{}, store, toyData{n: 24, c: 1, h: 4, w: 4}, nil,
		TrainOptions{Epochs: 1, Batch: 6, LR: 1e-2, Seed: 5, RunDir: dir, Quiet: true})
	require.NoError(t, err)
	first := res.Last["train_loss"]
	res, err = Train(context.Background(), &regressTask{}, store, toyData{n: 24, c: 1, h: 4, w: 4}, nil,
		TrainOptions{Epochs: 30, Batch: 6, LR: 1e-2, Seed: 5, RunDir: dir, Quiet: true})
	require.NoError(t, err)
	assert.Less(t, res.Last["train_loss"], first/2)
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}
