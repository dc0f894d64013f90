package seg

import (
	"context"
	"fmt"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
)

// Task trains a segmenter with nn.Train.
type Task struct {
	Model *Model
	// EvalBatch is the batch size of validation (default 8).
	EvalBatch int
}

// lossOptions maps the config's loss onto the op's.
func (c Config) lossOptions(kind ops.SegLossKind) ops.SegLossOptions {
	opt := ops.SegLossOptions{Kind: kind, Ignore: c.Ignore, Gamma: c.FocalGamma}
	if kind != ops.Dice {
		opt.Weights = c.ClassWeights
	}
	return opt
}

// BuildTrain builds the training graph: images and label maps in, the
// configured loss out.
func (t *Task) BuildTrain(s *nn.Scope, n int) (*nn.TrainGraph, error) {
	cfg := t.Model.Config
	u, err := NewUNet(s, cfg.NetConfig)
	if err != nil {
		return nil, err
	}
	x := s.Input("x", n, cfg.InChannels, cfg.Height, cfg.Width)
	labels := s.Input("labels", n, cfg.Height, cfg.Width)
	logits, err := u.Forward(x)
	if err != nil {
		return nil, err
	}
	logs := map[string]*G.Node{}
	var loss *G.Node
	switch cfg.Loss {
	case "ce":
		loss, err = ops.SegLoss(logits, labels, cfg.lossOptions(ops.CrossEntropy))
	case "focal":
		loss, err = ops.SegLoss(logits, labels, cfg.lossOptions(ops.Focal))
	case "dice":
		loss, err = ops.SegLoss(logits, labels, cfg.lossOptions(ops.Dice))
	case "ce+dice":
		var ce, dice *G.Node
		if ce, err = ops.SegLoss(logits, labels, cfg.lossOptions(ops.CrossEntropy)); err != nil {
			return nil, err
		}
		if dice, err = ops.SegLoss(logits, labels, cfg.lossOptions(ops.Dice)); err != nil {
			return nil, err
		}
		logs["ce"], logs["dice"] = ce, dice
		loss, err = G.Add(ce, dice)
	default:
		err = fmt.Errorf("unknown loss %q", cfg.Loss)
	}
	if err != nil {
		return nil, err
	}
	lv := make([]float32, n*cfg.Height*cfg.Width)
	feed := func(b nn.Batch) error {
		if b.Masks == nil {
			return fmt.Errorf("segmentation needs masks, the batch has none")
		}
		if err := nn.Feed(x, b.X); err != nil {
			return err
		}
		for i, v := range b.Masks {
			lv[i] = float32(v)
		}
		return nn.Feed(labels, lv)
	}
	return &nn.TrainGraph{Scope: s, Loss: loss, Logs: logs, Feed: feed}, nil
}

// Validate scores the model on ds (see Evaluate) and reports the training
// loss on it too, as "loss".
func (t *Task) Validate(ctx context.Context, _ *nn.Store, ds nn.Dataset) (map[string]float64, error) {
	var loss float64
	cm, err := evaluate(ctx, t.Model, ds, t.EvalBatch, nil, &loss)
	if err != nil {
		return nil, err
	}
	m := cm.Scores().Map(t.Model.Config.Names())
	m["loss"] = loss
	return m, nil
}

// LossValue is the configured training loss of logits [n, Classes, Height,
// Width] against masks [n, Height, Width] at the model's input size.
func (c Config) LossValue(logits []float32, masks []int32, n int) (float64, error) {
	labels := make([]float32, len(masks))
	for i, v := range masks {
		labels[i] = float32(v)
	}
	value := func(kind ops.SegLossKind) (float64, error) {
		return ops.SegLossValue(logits, labels, n, c.Classes, c.Height, c.Width, c.lossOptions(kind))
	}
	switch c.Loss {
	case "ce":
		return value(ops.CrossEntropy)
	case "focal":
		return value(ops.Focal)
	case "dice":
		return value(ops.Dice)
	case "ce+dice":
		ce, err := value(ops.CrossEntropy)
		if err != nil {
			return 0, err
		}
		dice, err := value(ops.Dice)
		return ce + dice, err
	}
	return 0, fmt.Errorf("unknown loss %q", c.Loss)
}

// Metadata is the model's.
func (t *Task) Metadata() (map[string]string, error) { return t.Model.Metadata() }

// Best keeps the model of highest validation mean IoU.
func (t *Task) Best() (string, bool) { return "miou", true }

// NativeSource is labelled data that can also give each mask at its own
// resolution, where scores are computed (datasets.Labelled is one).
type NativeSource interface {
	nn.Dataset
	Native(i int) (img []float32, h, w int, mask []int32, err error)
}

// Evaluate predicts every image of ds at the model's input size and counts
// the predictions in one confusion matrix. When ds is a NativeSource the
// logits are resized bilinearly to each mask's own resolution first (how
// CamVid and most benchmarks are scored); otherwise they are compared with
// the masks at the model's size. each, if not nil, sees every prediction:
// the index, the class map and its size.
func Evaluate(ctx context.Context, m *Model, ds nn.Dataset, batch int, each func(i int, pred []int32, h, w int)) (*Confusion, error) {
	return evaluate(ctx, m, ds, batch, each, nil)
}

// evaluate is Evaluate; with loss not nil it also sets *loss to the mean
// over batches (weighted by their images) of the training loss at the
// model's input size.
func evaluate(ctx context.Context, m *Model, ds nn.Dataset, batch int, each func(i int, pred []int32, h, w int), loss *float64) (*Confusion, error) {
	if batch <= 0 {
		batch = 8
	}
	cfg := m.Config
	c, h, w := ds.Shape()
	if c != cfg.InChannels || h != cfg.Height || w != cfg.Width {
		return nil, fmt.Errorf("data are %dx%dx%d but the model takes %dx%dx%d", c, h, w, cfg.InChannels, cfg.Height, cfg.Width)
	}
	native, hasNative := ds.(NativeSource)
	cm := NewConfusion(cfg.Classes)
	size := c * h * w
	k := cfg.Classes
	batch = min(batch, ds.Len())
	// One input buffer, and every batch the same size: the last, short one
	// is padded with zeros (in eval mode images do not affect each other),
	// so one inference graph serves the whole set instead of a second one
	// for the remainder (136 MB more for CamVid's 101 = 12x8 + 5).
	x := make([]float32, batch*size)
	masks := make([][]int32, batch)
	var lossSum float64
	var lossMasks []int32
	if loss != nil {
		lossMasks = make([]int32, batch*h*w)
	}
	for start := 0; start < ds.Len(); start += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(batch, ds.Len()-start)
		for j := 0; j < n; j++ {
			img, mask, err := ds.Get(start+j, 0)
			if err != nil {
				return nil, err
			}
			copy(x[j*size:], img)
			masks[j] = mask
		}
		clear(x[n*size:])
		logits, err := m.Logits(x, batch, h, w)
		if err != nil {
			return nil, err
		}
		if loss != nil {
			for j := 0; j < n; j++ {
				if masks[j] == nil {
					return nil, fmt.Errorf("example %d has no mask", start+j)
				}
				copy(lossMasks[j*h*w:], masks[j])
			}
			v, err := cfg.LossValue(logits[:n*k*h*w], lossMasks[:n*h*w], n)
			if err != nil {
				return nil, fmt.Errorf("validation loss: %w", err)
			}
			lossSum += v * float64(n)
		}
		for j := 0; j < n; j++ {
			lj := logits[j*k*h*w : (j+1)*k*h*w]
			mask, mh, mw := masks[j], h, w
			if hasNative {
				var err error
				if _, mh, mw, mask, err = native.Native(start + j); err != nil {
					return nil, err
				}
				lj = ResizeBilinear(lj, k, h, w, mh, mw)
			}
			if mask == nil {
				return nil, fmt.Errorf("example %d has no mask", start+j)
			}
			pred := Argmax(lj, k, mh*mw)
			if err := cm.Add(pred, mask, cfg.Ignore); err != nil {
				return nil, err
			}
			if each != nil {
				each(start+j, pred, mh, mw)
			}
		}
	}
	if loss != nil && ds.Len() > 0 {
		*loss = lossSum / float64(ds.Len())
	}
	return cm, nil
}
