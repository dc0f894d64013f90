package ae

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
)

// Task trains an auto-encoder with nn.Train.
type Task struct {
	Model *Model
	// EvalBatch is the batch size of validation (default 64).
	EvalBatch int
}

// BuildTrain builds the training graph: noisy (or clean) input, clean target.
func (t *Task) BuildTrain(s *nn.Scope, n int) (*nn.TrainGraph, error) {
	cfg := t.Model.Config
	net, err := NewNet(s, cfg)
	if err != nil {
		return nil, err
	}
	x := s.Input("x", n, cfg.InChannels, cfg.Height, cfg.Width)
	target := s.Input("target", n, cfg.InChannels, cfg.Height, cfg.Width)
	y, err := net.Forward(x)
	if err != nil {
		return nil, err
	}
	loss, err := ops.PointwiseLoss(cfg.LossKind(), y, target)
	if err != nil {
		return nil, err
	}
	noisy := make([]float32, n*cfg.InChannels*cfg.Height*cfg.Width)
	feed := func(b nn.Batch) error {
		if err := nn.Feed(target, b.X); err != nil {
			return err
		}
		if cfg.Noise == 0 {
			return nn.Feed(x, b.X)
		}
		AddNoise(noisy, b.X, cfg.Noise, b.Seed)
		return nn.Feed(x, noisy)
	}
	return &nn.TrainGraph{Scope: s, Loss: loss, Feed: feed}, nil
}

// AddNoise writes clean + N(0, sd^2) noise, clipped to [0,1], into dst.
func AddNoise(dst, clean []float32, sd float64, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0xa0159e))
	for i, v := range clean {
		dst[i] = float32(min(1, max(0, float64(v)+sd*r.NormFloat64())))
	}
}

// Validate reports the reconstruction metrics of Evaluate.
func (t *Task) Validate(ctx context.Context, store *nn.Store, ds nn.Dataset) (map[string]float64, error) {
	m, err := Evaluate(ctx, t.Model, ds, t.EvalBatch, nil)
	if err != nil {
		return nil, err
	}
	return m.Map(), nil
}

// Metadata is the model's.
func (t *Task) Metadata() (map[string]string, error) { return t.Model.Metadata() }

// Best keeps the model of lowest validation MSE.
func (t *Task) Best() (string, bool) { return "mse", false }

// Metrics are an auto-encoder's scores on a data set.
type Metrics struct {
	// Loss is the training loss (BCE or MSE) averaged over every value.
	Loss float64 `json:"loss"`
	// MSE is the mean squared error per value, in [0,1] units.
	MSE float64 `json:"mse"`
	// PSNR is the mean over images of each image's PSNR (dB, peak 1);
	// perfect reconstructions count as 100 dB.
	PSNR float64 `json:"psnr"`
	// SSIM is the mean over images of each image's SSIM.
	SSIM float64 `json:"ssim"`
	// Images is how many images were scored.
	Images int `json:"images"`
}

// Map lists the metrics by name.
func (m Metrics) Map() map[string]float64 {
	return map[string]float64{"loss": m.Loss, "mse": m.MSE, "psnr": m.PSNR, "ssim": m.SSIM}
}

// Evaluate reconstructs every image of ds in batches and scores it. each, if
// not nil, sees every (input, reconstruction) pair in order.
func Evaluate(ctx context.Context, m *Model, ds nn.Dataset, batch int, each func(i int, x, y []float32)) (Metrics, error) {
	if batch <= 0 {
		batch = 64
	}
	c, h, w := ds.Shape()
	cfg := m.Config
	if c != cfg.InChannels || h != cfg.Height || w != cfg.Width {
		return Metrics{}, fmt.Errorf("data are %dx%dx%d but the model takes %dx%dx%d", c, h, w, cfg.InChannels, cfg.Height, cfg.Width)
	}
	size := c * h * w
	var res Metrics
	var lossSum, seSum, psnrSum, ssimSum float64
	for start := 0; start < ds.Len(); start += batch {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(batch, ds.Len()-start)
		x := make([]float32, n*size)
		for k := 0; k < n; k++ {
			img, _, err := ds.Get(start+k, 0)
			if err != nil {
				return res, err
			}
			copy(x[k*size:], img)
		}
		logits, err := m.recon.Run(n, x)
		if err != nil {
			return res, err
		}
		raw := logits[0]
		lossSum += ops.MeanLoss(cfg.LossKind(), raw, x) * float64(len(x))
		y := m.toImage(raw)
		for k := 0; k < n; k++ {
			a, b := x[k*size:(k+1)*size], y[k*size:(k+1)*size]
			mse := MSE(a, b)
			seSum += mse * float64(size)
			psnrSum += min(PSNR(mse, 1), 100)
			ssimSum += SSIM(a, b, c, h, w)
			if each != nil {
				each(start+k, a, b)
			}
		}
	}
	total := float64(ds.Len())
	res = Metrics{Loss: lossSum / (total * float64(size)), MSE: seSum / (total * float64(size)),
		PSNR: psnrSum / total, SSIM: ssimSum / total, Images: ds.Len()}
	return res, nil
}
