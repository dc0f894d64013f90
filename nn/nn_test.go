package nn

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/segtool/segtool/nn/ops"
	"github.com/segtool/segtool/nn/safetensors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorgonia.org/tensor"
)

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
	require.ErrorContains(t, err, `is an auto-encoder ("ae"); this needs a segmenter ("seg")`)
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

func TestFreezeKeepsPrefixFixed(t *testing.T) {
	store := NewStore(tensor.Float32, 11)
	_, err := NewConvBlock(NewScope(store, TrainMode), "block", BlockConfig{In: 1, Out: 2, Norm: BatchNorm})
	require.NoError(t, err)
	before := append([]float32(nil), store.Get("block.conv1.weight").Value.Data().([]float32)...)
	_, err = Train(context.Background(), &regressTask{}, store, toyData{n: 12, c: 1, h: 4, w: 4}, nil,
		TrainOptions{Epochs: 1, Batch: 6, LR: 1e-2, Seed: 5, RunDir: t.TempDir(), Quiet: true, FreezePrefix: "block.", FreezeEpochs: 1})
	require.NoError(t, err)
	assert.Equal(t, before, store.Get("block.conv1.weight").Value.Data(), "frozen during epoch 1")
	headBefore := append([]float32(nil), store.Get("head.weight").Value.Data().([]float32)...)
	_, err = Train(context.Background(), &regressTask{}, store, toyData{n: 12, c: 1, h: 4, w: 4}, nil,
		TrainOptions{Epochs: 2, Batch: 6, LR: 1e-2, Seed: 5, RunDir: t.TempDir(), Quiet: true, FreezePrefix: "block.", FreezeEpochs: 1})
	require.NoError(t, err)
	assert.NotEqual(t, before, store.Get("block.conv1.weight").Value.Data(), "trained from epoch 2")
	assert.NotEqual(t, headBefore, store.Get("head.weight").Value.Data())
}

func TestScheduledLR(t *testing.T) {
	assert.Equal(t, 0.1, ScheduledLR("constant", 0.1, 3.5, 10))
	assert.Equal(t, 0.1, ScheduledLR("", 0.1, 3.5, 10))
	assert.InDelta(t, 0.1, ScheduledLR("cosine", 0.1, 0, 10), 1e-15)
	assert.InDelta(t, 0.05, ScheduledLR("cosine", 0.1, 5, 10), 1e-15)
	assert.InDelta(t, 0, ScheduledLR("cosine", 0.1, 10, 10), 1e-15)
	_, err := Train(context.Background(), &regressTask{}, NewStore(tensor.Float32, 1), toyData{n: 4, c: 1, h: 4, w: 4}, nil,
		TrainOptions{Epochs: 1, Batch: 2, LR: 1e-2, RunDir: t.TempDir(), Quiet: true, Schedule: "step"})
	require.ErrorContains(t, err, `"step"`)
}

func TestAfterEpochSeesEveryEpoch(t *testing.T) {
	dir := t.TempDir()
	var seen [][]float64
	opt := TrainOptions{Epochs: 2, Batch: 6, LR: 1e-2, Seed: 5, RunDir: dir, Quiet: true,
		AfterEpoch: func(h []EpochMetrics) error {
			var epochs []float64
			for _, m := range h {
				epochs = append(epochs, m["epoch"])
				assert.Contains(t, m, "train_loss")
				assert.Contains(t, m, "val_score")
			}
			seen = append(seen, epochs)
			return nil
		}}
	data, val := toyData{n: 20, c: 1, h: 4, w: 4}, toyData{n: 4, c: 1, h: 4, w: 4}
	_, err := Train(context.Background(), &regressTask{}, NewStore(tensor.Float32, 11), data, val, opt)
	require.NoError(t, err)
	opt.Epochs, opt.Resume = 3, true
	_, err = Train(context.Background(), &regressTask{}, NewStore(tensor.Float32, 11), data, val, opt)
	require.NoError(t, err)
	assert.Equal(t, [][]float64{{1}, {1, 2}, {1, 2, 3}}, seen, "a resumed run's history starts at epoch 1")

	opt.Epochs, opt.Resume = 1, false
	opt.AfterEpoch = func([]EpochMetrics) error { return errors.New("disk full") }
	_, err = Train(context.Background(), &regressTask{}, NewStore(tensor.Float32, 11), data, val, opt)
	assert.ErrorContains(t, err, "disk full")
}

func TestReadMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), MetricsFile)
	require.NoError(t, os.WriteFile(path, []byte("{\"epoch\":1,\"train_loss\":0.5}\n\n{\"epoch\":2,\"train_loss\":0.25}\n{\"epoch\":3,\"tr"), 0o644))
	ms, err := ReadMetrics(path)
	require.NoError(t, err, "a last line cut short is left out")
	require.Len(t, ms, 2)
	assert.Equal(t, 0.25, ms[1]["train_loss"])

	require.NoError(t, os.WriteFile(path, []byte("{\"epoch\":1}\nnot json\n{\"epoch\":2}\n"), 0o644))
	_, err = ReadMetrics(path)
	assert.ErrorContains(t, err, "line 2")
}
