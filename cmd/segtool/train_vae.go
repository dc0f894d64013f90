package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/vae"
	"github.com/urfave/cli/v2"
)

func init() {
	trainers[vae.Kind] = newVAEJob
	evaluators[vae.Kind] = evalVAE
	modelChecks[vae.Kind] = func(c *Config) error {
		_, err := c.VAEConfig() // its errors name the model key
		return err
	}
}

// VAEConfig is the variational auto-encoder the config describes.
func (c *Config) VAEConfig() (vae.Config, error) {
	var cfg vae.Config
	if c.Model.Latent == nil || *c.Model.Latent < 1 {
		return cfg, errors.New("model.latent: a VAE needs a latent space of at least 1 dimension (default 20)")
	}
	if c.Model.Noise != 0 {
		return cfg, errors.New("model.noise: the VAE takes no input noise (its noise is in the latent space); remove the key")
	}
	cfg = vae.Config{
		EncoderConfig: nn.EncoderConfig{InChannels: c.Data.Channels, Base: c.Model.Base, Depth: c.Model.Depth, Norm: nn.Norm(c.Model.Norm)},
		Height:        c.Data.Height, Width: c.Data.Width,
		Latent: *c.Model.Latent, Loss: c.Model.Loss, Beta: c.Model.Beta, KLWarmupEpochs: c.Model.KLWarmupEpochs,
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("model: %w", err)
	}
	return cfg, nil
}

// newVAEJob trains a variational auto-encoder on unlabelled images.
func newVAEJob(cfg *Config) (*trainJob, error) {
	vcfg, err := cfg.VAEConfig()
	if err != nil {
		return nil, err
	}
	train, val, err := loadTrainVal(cfg)
	if err != nil {
		return nil, err
	}
	model, err := vae.New(vcfg, cfg.Train.Seed)
	if err != nil {
		return nil, err
	}
	model.Info = map[string]string{"segtool.train_data": absSpec(cfg.Data.Train), "segtool.run": cfg.Name}
	return &trainJob{
		store: model.Store, task: &vae.Task{Model: model, EvalBatch: evalBatch(cfg)}, train: train, val: val,
		close: model.Close,
		after: func(c *cli.Context, res *nn.Result, runDir string) error {
			best, err := vae.Load(res.BestPath)
			if err != nil {
				return err
			}
			defer best.Close()
			shape := imageShape{best.Config.InChannels, best.Config.Height, best.Config.Width}
			grid := filepath.Join(runDir, "reconstructions.png")
			if err := writeReconGrid(best.Reconstruct, shape, spread(val, 16), 16, grid); err != nil {
				return err
			}
			samples := filepath.Join(runDir, "samples.png")
			imgs, err := best.Sample(64, 1)
			if err != nil {
				return err
			}
			if err := writeTiles(samples, imgs, shape, 8); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "reconstructions of validation images: %s\nsamples from N(0, I): %s\n", grid, samples)
			return nil
		},
	}, nil
}

// imageShape is channels, height and width.
type imageShape struct{ c, h, w int }

func (s imageShape) size() int { return s.c * s.h * s.w }

// writeTiles writes n = len(imgs)/size images as a grid of cols columns.
func writeTiles(path string, imgs []float32, s imageShape, cols int) error {
	size := s.size()
	tiles := make([][]float32, 0, len(imgs)/size)
	for i := 0; i+size <= len(imgs); i += size {
		tiles = append(tiles, imgs[i:i+size])
	}
	return datasets.WriteGrid(path, tiles, s.c, s.h, s.w, cols, gridScale(s.h))
}

// writeReconGrid writes the first n images of ds (or all, if fewer) in rows
// of 8, each row above the row of their reconstructions by recon.
func writeReconGrid(recon func(x []float32, n int) ([]float32, error), s imageShape, ds nn.Dataset, n int, path string) error {
	n = min(n, ds.Len())
	if n == 0 {
		return nil
	}
	size := s.size()
	x := make([]float32, n*size)
	for i := 0; i < n; i++ {
		img, _, err := ds.Get(i, 0)
		if err != nil {
			return err
		}
		copy(x[i*size:], img)
	}
	y, err := recon(x, n)
	if err != nil {
		return err
	}
	cols := min(8, n)
	blank := make([]float32, size)
	var tiles [][]float32
	for r := 0; r < n; r += cols {
		for _, src := range [][]float32{x, y} {
			for i := r; i < r+cols; i++ {
				if i < n {
					tiles = append(tiles, src[i*size:(i+1)*size])
				} else {
					tiles = append(tiles, blank)
				}
			}
		}
	}
	return datasets.WriteGrid(path, tiles, s.c, s.h, s.w, cols, gridScale(s.h))
}

// spread is a view of n images of ds spread evenly over it (all of them when
// it has no more), for the pictures of a run: consecutive images are often
// frames of one scene.
func spread(ds nn.Dataset, n int) nn.Dataset {
	if ds.Len() <= n {
		return ds
	}
	idx := make([]int, n)
	for k := range idx {
		idx[k] = k * ds.Len() / n
	}
	return pick{ds, idx}
}

type pick struct {
	nn.Dataset
	idx []int
}

func (p pick) Len() int { return len(p.idx) }
func (p pick) Get(i int, seed uint64) ([]float32, []int32, error) {
	return p.Dataset.Get(p.idx[i], seed)
}
