package main

import (
	"fmt"
	"path/filepath"

	"github.com/segtool/segtool/ae"
	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/urfave/cli/v2"
)

// newAEJob trains a reconstruction auto-encoder on unlabelled images.
func newAEJob(cfg *Config) (*trainJob, error) {
	train, val, err := loadTrainVal(cfg)
	if err != nil {
		return nil, err
	}
	aeCfg, err := cfg.AEConfig()
	if err != nil {
		return nil, err
	}
	model, err := ae.New(aeCfg, cfg.Train.Seed)
	if err != nil {
		return nil, err
	}
	model.Info = map[string]string{"segtool.train_data": absSpec(cfg.Data.Train), "segtool.run": cfg.Name}
	return &trainJob{
		store: model.Store, task: &ae.Task{Model: model, EvalBatch: 64}, train: train, val: val,
		close: model.Close,
		after: func(c *cli.Context, res *nn.Result, runDir string) error {
			best, err := ae.Load(res.BestPath)
			if err != nil {
				return err
			}
			defer best.Close()
			grid := filepath.Join(runDir, "reconstructions.png")
			if err := writeReconstructionGrid(best, val, 16, grid); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "reconstructions of validation images: %s\n", grid)
			return nil
		},
	}, nil
}

// writeReconstructionGrid writes up to n images of ds in rows of 8 with their
// reconstructions in the row below.
func writeReconstructionGrid(m *ae.Model, ds nn.Dataset, n int, path string) error {
	n = min(n, ds.Len())
	if n == 0 {
		return nil
	}
	size := m.ImageSize()
	x := make([]float32, n*size)
	for i := 0; i < n; i++ {
		img, _, err := ds.Get(i, 0)
		if err != nil {
			return err
		}
		copy(x[i*size:], img)
	}
	y, err := m.Reconstruct(x, n)
	if err != nil {
		return err
	}
	// rows of inputs, each above the row of their reconstructions
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
	cfg := m.Config
	return datasets.WriteGrid(path, tiles, cfg.InChannels, cfg.Height, cfg.Width, cols, gridScale(cfg.Height))
}
