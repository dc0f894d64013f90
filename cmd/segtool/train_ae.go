package main

import (
	"fmt"
	"path/filepath"

	"github.com/segtool/segtool/ae"
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
		store: model.Store, task: &ae.Task{Model: model, EvalBatch: evalBatch(cfg)}, train: train, val: val,
		close: model.Close,
		after: func(c *cli.Context, res *nn.Result, runDir string) error {
			best, err := ae.Load(res.BestPath)
			if err != nil {
				return err
			}
			defer best.Close()
			grid := filepath.Join(runDir, "reconstructions.png")
			shape := imageShape{best.Config.InChannels, best.Config.Height, best.Config.Width}
			if err := writeReconGrid(best.Reconstruct, shape, spread(val, 16), 16, grid); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "reconstructions of validation images: %s\n", grid)
			return nil
		},
	}, nil
}
