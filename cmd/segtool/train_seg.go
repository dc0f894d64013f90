package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/seg"
	"github.com/urfave/cli/v2"
)

func init() {
	trainers["seg"] = newSegJob
	modelChecks["seg"] = func(c *Config) error {
		if _, err := c.SegConfig(); err != nil {
			return err
		}
		return nil
	}
}

// classTable is the config's classes as datasets sees them.
func (c *Config) classTable() datasets.ClassTable {
	t := datasets.ClassTable{Ignore: *c.Data.IgnoreIndex}
	if c.Data.IgnoreColor != nil {
		col := [3]uint8(*c.Data.IgnoreColor)
		t.IgnoreColor = &col
	}
	for _, cl := range c.Data.Classes {
		t.Classes = append(t.Classes, datasets.Class{Name: cl.Name, Color: cl.Color})
	}
	return t
}

// SegConfig is the segmenter the config describes (class weights "auto" are
// filled in later from the training masks).
func (c *Config) SegConfig() (seg.Config, error) {
	if len(c.Data.Classes) < 2 {
		return seg.Config{}, errors.New("data.classes: list the classes in label order, at least 2, each as {name: ..., color: [r, g, b]} (binary masks are 2 classes)")
	}
	cfg := seg.Config{
		NetConfig: seg.NetConfig{
			EncoderConfig: nn.EncoderConfig{InChannels: c.Data.Channels, Base: c.Model.Base, Depth: c.Model.Depth, Norm: nn.Norm(c.Model.Norm)},
			Classes:       len(c.Data.Classes),
		},
		Height: c.Data.Height, Width: c.Data.Width,
		Ignore: *c.Data.IgnoreIndex, Loss: c.Model.Loss,
		ClassWeights: c.Model.ClassWeights.Values, FocalGamma: c.Model.FocalGamma,
	}
	for _, cl := range c.Data.Classes {
		cfg.ClassTable = append(cfg.ClassTable, seg.Class{Name: cl.Name, Color: cl.Color})
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("model: %w", err)
	}
	if err := c.classTable().Validate(); err != nil {
		return cfg, fmt.Errorf("data.classes: %w", err)
	}
	if c.Model.FreezeEncoderEpochs < 0 {
		return cfg, fmt.Errorf("model.freeze_encoder_epochs: %d must be >= 0", c.Model.FreezeEncoderEpochs)
	}
	if c.Model.FreezeEncoderEpochs > 0 && c.Model.InitEncoder == "" {
		return cfg, errors.New("model.freeze_encoder_epochs: freezing an encoder that was not initialised (set model.init_encoder or --init-encoder) only slows training")
	}
	return cfg, nil
}

func (c *Config) augment() *datasets.Augment {
	a := c.Data.Augment
	aug := &datasets.Augment{HFlip: a.HFlip, VFlip: a.VFlip, Rotate: a.Rotate,
		Brightness: a.Brightness, Contrast: a.Contrast, Saturation: a.Saturation}
	if len(a.Scale) == 2 {
		aug.ScaleMin, aug.ScaleMax = a.Scale[0], a.Scale[1]
	}
	if *aug == (datasets.Augment{}) {
		return nil
	}
	return aug
}

func (c *Config) labelledOptions(augment bool) datasets.LabelledOptions {
	opt := datasets.LabelledOptions{Channels: c.Data.Channels, Height: c.Data.Height, Width: c.Data.Width,
		Classes: c.classTable(), Encoding: datasets.MaskEncoding(c.Data.MaskEncoding), SkipBad: c.Data.SkipBad, Warn: c.warn}
	if augment {
		opt.Augment = c.augment()
	}
	return opt
}

// nativeSubset is a part of a labelled set that keeps its full-resolution
// masks for scoring.
type nativeSubset struct {
	src *datasets.Labelled
	idx []int
}

func (s nativeSubset) Len() int               { return len(s.idx) }
func (s nativeSubset) Shape() (int, int, int) { return s.src.Shape() }
func (s nativeSubset) Get(i int, seed uint64) ([]float32, []int32, error) {
	return s.src.Get(s.idx[i], seed)
}
func (s nativeSubset) Native(i int) ([]float32, int, int, []int32, error) {
	return s.src.Native(s.idx[i])
}

// openSegData opens the training set (augmented) and the validation set
// (a folder of its own, or a held-out part of the training folder).
func openSegData(cfg *Config) (train, val nn.Dataset, err error) {
	d := cfg.Data
	all, err := datasets.OpenLabelled(d.Train, cfg.labelledOptions(true))
	if err != nil {
		return nil, nil, err
	}
	if d.Val != "" {
		v, err := datasets.OpenLabelled(d.Val, cfg.labelledOptions(false))
		if err != nil {
			return nil, nil, err
		}
		train, val = all, v
	} else {
		// the same decoded images, seen without augmentation for validation
		plain, err := all.WithAugment(nil)
		if err != nil {
			return nil, nil, err
		}
		tr, va := datasets.SplitIndices(all.Len(), *d.ValFraction, cfg.Train.Seed)
		train, val = nativeSubset{all, tr}, nativeSubset{plain, va}
	}
	if d.Limit > 0 {
		train = datasets.Limit(train, d.Limit)
	}
	if train.Len() == 0 {
		return nil, nil, fmt.Errorf("%s: no training pairs left after the validation split", d.Train)
	}
	return train, val, nil
}

// medianFrequencyWeights counts the class pixels of the training masks (at
// the training size, unaugmented) and balances them as data check suggests.
func medianFrequencyWeights(ds nn.Dataset, k, ignore int) ([]float64, error) {
	pixels, present := make([]int64, k), make([]int64, k)
	local := make([]int64, k)
	for i := 0; i < ds.Len(); i++ {
		_, mask, err := ds.Get(i, 0)
		if err != nil {
			return nil, err
		}
		clear(local)
		var labelled int64
		for _, v := range mask {
			if int(v) != ignore && v >= 0 && int(v) < k {
				local[v]++
				labelled++
			}
		}
		for c, n := range local {
			if n > 0 {
				pixels[c] += n
				present[c] += labelled
			}
		}
	}
	w := datasets.MedianFrequencyWeights(pixels, present)
	if slices.Max(w) == 0 {
		return nil, errors.New("class weights: the training masks have no labelled pixels")
	}
	return w, nil
}

// newSegJob trains the U-Net segmenter on images with masks.
func newSegJob(cfg *Config) (*trainJob, error) {
	segCfg, err := cfg.SegConfig()
	if err != nil {
		return nil, err
	}
	train, val, err := openSegData(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Model.ClassWeights.Auto {
		if segCfg.ClassWeights, err = medianFrequencyWeights(train, segCfg.Classes, segCfg.Ignore); err != nil {
			return nil, err
		}
	}
	model, err := seg.New(segCfg, cfg.Train.Seed)
	if err != nil {
		return nil, err
	}
	model.Info = map[string]string{"segtool.train_data": absSpec(cfg.Data.Train), "segtool.run": cfg.Name}
	job := &trainJob{store: model.Store, task: &seg.Task{Model: model, EvalBatch: evalBatch(cfg)}, train: train, val: val,
		close: model.Close}
	if path := cfg.Model.InitEncoder; path != "" {
		f, err := nn.ReadModel(path, "ae", "vae", "seg")
		if err != nil {
			return nil, err
		}
		rep, err := model.Store.Load(f, "encoder.", false)
		if err != nil {
			return nil, fmt.Errorf("init encoder from %s: %w", path, err)
		}
		if len(rep.Missing) > 0 {
			return nil, fmt.Errorf("init encoder from %s: it lacks %s", path, list(rep.Missing))
		}
		job.note = fmt.Sprintf("encoder initialised from %s (%d tensors)", path, len(rep.Loaded))
		if cfg.Model.FreezeEncoderEpochs > 0 {
			job.freezePrefix, job.freezeEpochs = "encoder.", cfg.Model.FreezeEncoderEpochs
			job.note += fmt.Sprintf("; frozen for the first %d epochs", cfg.Model.FreezeEncoderEpochs)
		}
	}
	job.after = func(c *cli.Context, res *nn.Result, runDir string) error {
		best, err := seg.Load(res.BestPath)
		if err != nil {
			return err
		}
		defer best.Close()
		return writeSegReport(c.Context, c.App.Writer, best, val, runDir, "val")
	}
	return job, nil
}

// writeSegReport scores m on ds and writes the table, the confusion matrix
// image and a grid of predictions into dir.
func writeSegReport(ctx context.Context, w interface{ Write([]byte) (int, error) }, m *seg.Model, ds nn.Dataset, dir, name string) error {
	// Eight images spread evenly over the set: consecutive ones are often
	// frames of one scene (CamVid's are).
	show := map[int]bool{}
	for k := range min(8, ds.Len()) {
		show[k*ds.Len()/min(8, ds.Len())] = true
	}
	var grid []predictionTile
	cm, err := seg.Evaluate(ctx, m, ds, 8, func(i int, pred []int32, h, w int) {
		if show[i] {
			grid = append(grid, predictionTile{i: i, pred: pred, h: h, w: w})
		}
	})
	if err != nil {
		return err
	}
	scores := cm.Scores()
	fmt.Fprintf(w, "%s scores of the best model:\n", name)
	scores.WriteTable(w, m.Config.Names())
	cmPath := filepath.Join(dir, "confusion.png")
	if err := datasets.WriteConfusion(cmPath, cm.RowNormalized(), m.Config.Names()); err != nil {
		return err
	}
	predPath := filepath.Join(dir, "predictions.png")
	if err := writePredictionGrid(predPath, m, ds, grid); err != nil {
		return err
	}
	fmt.Fprintf(w, "confusion matrix: %s\npredictions (image, truth, prediction): %s\n", cmPath, predPath)
	return nil
}

type predictionTile struct {
	i    int
	pred []int32
	h, w int
}

// writePredictionGrid shows, for each tile, the image, the true mask and the
// predicted mask side by side, at the model's input size.
func writePredictionGrid(path string, m *seg.Model, ds nn.Dataset, tiles []predictionTile) error {
	if len(tiles) == 0 {
		return nil
	}
	cfg := m.Config
	colors := make([][3]uint8, len(cfg.ClassTable))
	for i, cl := range cfg.ClassTable {
		colors[i] = cl.Color
	}
	var imgs [][]float32
	for _, t := range tiles {
		img, mask, err := ds.Get(t.i, 0)
		if err != nil {
			return err
		}
		pred := t.pred
		if t.h != cfg.Height || t.w != cfg.Width {
			pred = datasets.ResizeLabels(pred, t.h, t.w, cfg.Height, cfg.Width)
		}
		imgs = append(imgs, toRGB(img, cfg.InChannels),
			datasets.ColorizeCHW(mask, colors, cfg.Ignore),
			datasets.ColorizeCHW(pred, colors, cfg.Ignore))
	}
	return datasets.WriteGrid(path, imgs, 3, cfg.Height, cfg.Width, 3, gridScale(cfg.Height))
}

// toRGB replicates a grey CHW image to three channels.
func toRGB(img []float32, c int) []float32 {
	if c == 3 {
		return img
	}
	out := make([]float32, 3*len(img))
	for k := 0; k < 3; k++ {
		copy(out[k*len(img):], img)
	}
	return out
}

func list(s []string) string {
	if len(s) > 5 {
		return fmt.Sprintf("%v and %d more", s[:5], len(s)-5)
	}
	return fmt.Sprint(s)
}
