package vae

import (
	"context"
	"fmt"
	"math"

	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Task trains a VAE with nn.Train on the negative ELBO.
type Task struct {
	Model *Model
	// EvalBatch is the batch size of validation (default 64).
	EvalBatch int
}

// BuildTrain builds the training graph: the loss is reconstruction +
// beta*KL in nats per image, averaged over the batch, with eps drawn from
// the batch's seed and beta from its fractional epoch (the KL warm-up). It
// logs both terms, and beta.
func (t *Task) BuildTrain(s *nn.Scope, n int) (*nn.TrainGraph, error) {
	cfg := t.Model.Config
	net, err := NewNet(s, cfg)
	if err != nil {
		return nil, err
	}
	x := s.Input("x", n, cfg.InChannels, cfg.Height, cfg.Width)
	eps := s.Input("eps", n, cfg.Latent)
	y, mu, logvar, err := net.Forward(x, eps)
	if err != nil {
		return nil, err
	}
	recon, kl, err := objective(s, cfg, y, x, mu, logvar)
	if err != nil {
		return nil, err
	}
	dt := s.Store().Dtype()
	beta := G.NewScalar(s.Graph(), dt, G.WithName("beta"), G.WithValue(scalarValue(dt, cfg.BetaAt(0))))
	weighted, err := G.Mul(beta, kl)
	if err != nil {
		return nil, err
	}
	loss, err := G.Add(recon, weighted)
	if err != nil {
		return nil, err
	}
	feed := func(b nn.Batch) error {
		if err := nn.Feed(x, b.X); err != nil {
			return err
		}
		if err := nn.Feed(eps, Normal(n*cfg.Latent, b.Seed)); err != nil {
			return err
		}
		return G.Let(beta, scalarValue(dt, cfg.BetaAt(b.Progress)))
	}
	return &nn.TrainGraph{Scope: s, Loss: loss, Feed: feed,
		Logs: map[string]*G.Node{"recon": recon, "kl": kl, "beta": beta}}, nil
}

// objective builds the two terms of the negative ELBO in nats per image,
// averaged over the batch: the reconstruction -log p(x|z) of x from the
// decoder's output y, and KL(q(z|x) || N(0, I)).
func objective(s *nn.Scope, cfg Config, y, x, mu, logvar *G.Node) (recon, kl *G.Node, err error) {
	if recon, err = ops.SumLoss(cfg.LossKind(), y, x); err != nil {
		return nil, nil, err
	}
	if off := cfg.ReconOffset(); off != 0 {
		if recon, err = G.Add(recon, G.NewConstant(scalarValue(s.Store().Dtype(), off))); err != nil {
			return nil, nil, err
		}
	}
	if kl, err = ops.GaussianKL(mu, logvar); err != nil {
		return nil, nil, err
	}
	return recon, kl, nil
}

func scalarValue(dt tensor.Dtype, v float64) G.Value {
	if dt == tensor.Float64 {
		return G.NewF64(v)
	}
	return G.NewF32(float32(v))
}

// Validate reports Evaluate's metrics.
func (t *Task) Validate(ctx context.Context, store *nn.Store, ds nn.Dataset) (map[string]float64, error) {
	m, err := Evaluate(ctx, t.Model, ds, t.EvalBatch)
	if err != nil {
		return nil, err
	}
	return m.Map(), nil
}

// Metadata is the model's.
func (t *Task) Metadata() (map[string]string, error) { return t.Model.Metadata() }

// Best keeps the model of lowest validation negative ELBO.
func (t *Task) Best() (string, bool) { return "neg_elbo", false }

// Metrics are a VAE's scores on a data set, in nats per image (the mean over
// images) for the ELBO and its terms.
type Metrics struct {
	// NegELBO is Recon + KL: an upper bound on -log p(x), the beta = 1
	// ELBO whatever beta the model was trained with.
	NegELBO float64 `json:"neg_elbo"`
	// Recon is -log p(x|z) for one z drawn from q(z|x) per image.
	Recon float64 `json:"recon"`
	// KL is KL(q(z|x) || N(0, I)), in closed form.
	KL float64 `json:"kl"`
	// MSE is the mean squared error per value of the reconstructions
	// (decoded means), in [0,1] units.
	MSE float64 `json:"mse"`
	// PSNR is the mean over images of each reconstruction's PSNR (dB, peak
	// 1); perfect reconstructions count as 100 dB.
	PSNR float64 `json:"psnr"`
	// Images is how many images were scored.
	Images int `json:"images"`
}

// Map lists the metrics by name.
func (m Metrics) Map() map[string]float64 {
	return map[string]float64{"neg_elbo": m.NegELBO, "recon": m.Recon, "kl": m.KL, "mse": m.MSE, "psnr": m.PSNR}
}

// evalSeed fixes the noise of evaluation: image i always gets the same eps,
// so the reported ELBO does not depend on the batch size or the run.
const evalSeed = 0xe1b0

// Evaluate scores every image of ds in batches: the negative ELBO with one
// posterior sample per image (its noise fixed by the image's index), its two
// terms, and the reconstruction error of the decoded mean.
func Evaluate(ctx context.Context, m *Model, ds nn.Dataset, batch int) (Metrics, error) {
	if batch <= 0 {
		batch = 64
	}
	c, h, w := ds.Shape()
	cfg := m.Config
	if c != cfg.InChannels || h != cfg.Height || w != cfg.Width {
		return Metrics{}, fmt.Errorf("data are %dx%dx%d but the model takes %dx%dx%d", c, h, w, cfg.InChannels, cfg.Height, cfg.Width)
	}
	if ds.Len() == 0 {
		return Metrics{}, fmt.Errorf("no images to evaluate")
	}
	size, d := c*h*w, cfg.Latent
	var res Metrics
	var reconSum, klSum, seSum, psnrSum float64
	recon, kl := make([]float64, batch), make([]float64, batch)
	for start := 0; start < ds.Len(); start += batch {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(batch, ds.Len()-start)
		x := make([]float32, n*size)
		eps := make([]float32, n*d)
		for k := 0; k < n; k++ {
			img, _, err := ds.Get(start+k, 0)
			if err != nil {
				return res, err
			}
			copy(x[k*size:], img)
			copy(eps[k*d:], Normal(d, evalSeed^uint64(start+k)<<16))
		}
		out, err := m.eval.Run(n, x, eps)
		if err != nil {
			return res, err
		}
		mu, lv, ySample, yMean := out[0], out[1], out[2], out[3]
		ops.SumLossTerms(cfg.LossKind(), ySample, x, size, recon[:n])
		ops.KLTerms(mu, lv, d, kl[:n])
		rec := m.toImage(yMean)
		for k := 0; k < n; k++ {
			reconSum += recon[k] + cfg.ReconOffset()
			klSum += kl[k]
			var se float64
			for j, v := range x[k*size : (k+1)*size] {
				e := float64(v - rec[k*size+j])
				se += e * e
			}
			seSum += se
			mse := se / float64(size)
			psnr := 100.0
			if mse > 0 {
				psnr = min(100, 10*math.Log10(1/mse))
			}
			psnrSum += psnr
		}
	}
	total := float64(ds.Len())
	res = Metrics{Recon: reconSum / total, KL: klSum / total, MSE: seSum / (total * float64(size)),
		PSNR: psnrSum / total, Images: ds.Len()}
	res.NegELBO = res.Recon + res.KL
	return res, nil
}
