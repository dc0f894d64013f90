package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/urfave/cli/v2"
)

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a model from a YAML config (flags override it)",
		Description: `The config's task says what is trained: ae (a reconstruction auto-encoder),
vae (a variational auto-encoder) or seg (a U-Net segmenter on images with
masks, optionally starting from an ae/vae encoder: --init-encoder).
The run directory (runs/<name>, or --out) receives config.yaml, metrics.jsonl,
last.safetensors, best.safetensors (by validation score), state.safetensors
(for --resume) and pictures: curves.png (the metrics by epoch, redrawn after
each), reconstructions.png (ae, vae), samples.png (vae), predictions.png and
confusion.png (seg). Ctrl-C saves the run; --resume
continues it exactly.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config `FILE` (see configs/)"},
			&cli.StringFlag{Name: "data", Usage: "training data: a folder of images (seg: images with masks), or mnist (overrides data.train)"},
			&cli.StringFlag{Name: "val", Usage: "validation data (overrides data.val; default: hold out data.val_fraction)"},
			&cli.IntFlag{Name: "epochs", Usage: "number of epochs (overrides train.epochs; default 10)"},
			&cli.IntFlag{Name: "batch", Usage: "minibatch size (overrides train.batch; default 32)"},
			&cli.Float64Flag{Name: "lr", Usage: "Adam learning rate (overrides train.lr; default 0.001)"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of weights, order and noise (overrides train.seed; default 1)"},
			&cli.IntFlag{Name: "limit", Usage: "train on the first N images only (overrides data.limit)"},
			&cli.StringFlag{Name: "init-encoder", Usage: "seg: start the encoder from this ae/vae/seg model `FILE` (overrides model.init_encoder)"},
			&cli.IntFlag{Name: "freeze-encoder-epochs", Usage: "seg: train only the decoder for the first N epochs (overrides model.freeze_encoder_epochs)"},
			&cli.BoolFlag{Name: "skip-bad", Usage: "skip unreadable or inconsistent image/mask pairs with a warning (overrides data.skip_bad)"},
			&cli.StringFlag{Name: "out", Usage: "run `DIR` (default runs/<name>)"},
			&cli.BoolFlag{Name: "resume", Usage: "continue the run in the run directory where it stopped"},
			&cli.BoolFlag{Name: "force", Usage: "start afresh in a run directory that already holds a run"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: guard(runTrain),
	}
}

func runTrain(c *cli.Context) error {
	cfg := &Config{}
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = LoadConfig(path); err != nil {
			return err
		}
	}
	if c.IsSet("data") {
		cfg.Data.Train = c.String("data")
	}
	if c.IsSet("val") {
		cfg.Data.Val = c.String("val")
	}
	if c.IsSet("epochs") {
		cfg.Train.Epochs = c.Int("epochs")
	}
	if c.IsSet("batch") {
		cfg.Train.Batch = c.Int("batch")
	}
	if c.IsSet("lr") {
		cfg.Train.LR = c.Float64("lr")
	}
	if c.IsSet("seed") {
		cfg.Train.Seed = c.Uint64("seed")
	}
	if c.IsSet("limit") {
		cfg.Data.Limit = c.Int("limit")
	}
	if c.IsSet("init-encoder") {
		cfg.Model.InitEncoder = c.String("init-encoder")
	}
	if c.IsSet("freeze-encoder-epochs") {
		cfg.Model.FreezeEncoderEpochs = c.Int("freeze-encoder-epochs")
	}
	if c.IsSet("skip-bad") {
		cfg.Data.SkipBad = c.Bool("skip-bad")
	}
	if cfg.Name == "" {
		cfg.Name = "run"
	}
	cfg.Defaults()
	cfg.warn = c.App.ErrWriter
	if err := cfg.Validate(); err != nil {
		return err
	}
	runDir := c.String("out")
	if runDir == "" {
		runDir = filepath.Join("runs", cfg.Name)
	}
	resume := c.Bool("resume")
	if _, err := os.Stat(filepath.Join(runDir, nn.StateFile)); err == nil && !resume && !c.Bool("force") {
		return fmt.Errorf("%s already holds a run: --resume continues it, --force starts afresh over it, --out picks another directory", runDir)
	}

	job, err := trainers[cfg.Task](cfg)
	if err != nil {
		return err
	}
	defer job.close()

	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	resolved, err := cfg.YAML()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(runDir, "config.yaml"), resolved); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "training %s: %d train / %d val images, %d parameters, run directory %s\n",
		cfg.Task, job.train.Len(), job.val.Len(), job.store.NumParams(), runDir)

	if job.note != "" {
		fmt.Fprintln(c.App.Writer, job.note)
	}
	res, err := nn.Train(c.Context, job.task, job.store, job.train, job.val, nn.TrainOptions{
		Epochs: cfg.Train.Epochs, Batch: cfg.Train.Batch, LR: cfg.Train.LR, WeightDecay: cfg.Train.WeightDecay,
		Seed: cfg.Train.Seed, RunDir: runDir, Resume: resume, Log: c.App.Writer, Progress: c.App.ErrWriter, Quiet: c.Bool("quiet"),
		FreezePrefix: job.freezePrefix, FreezeEpochs: job.freezeEpochs, Schedule: cfg.Train.Schedule,
		AfterEpoch: func(hist []nn.EpochMetrics) error {
			if err := datasets.WriteCurves(filepath.Join(runDir, curvesFile), curvePanels(cfg, hist)); err != nil {
				// a picture is not worth stopping a run for
				fmt.Fprintf(c.App.ErrWriter, "segtool: warning: %v\n", err)
			}
			return nil
		},
	})
	if errors.Is(err, nn.ErrInterrupted) {
		return interruptedError{fmt.Sprintf("interrupted: saved %s; continue with the same command and --resume", res.LastPath)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "best model: %s\nlast model: %s\n", res.BestPath, res.LastPath)
	return job.after(c, res, runDir)
}

// trainJob is one task's side of a training run: its model's weights, its
// nn.Task, its data, and what it writes when training is done.
type trainJob struct {
	store      *nn.Store
	task       nn.Task
	train, val nn.Dataset
	// after runs once training has finished (pictures of the best model).
	after func(c *cli.Context, res *nn.Result, runDir string) error
	close func()
	// note is printed before training (what was loaded, say).
	note string
	// freezePrefix names parameters kept fixed for freezeEpochs epochs.
	freezePrefix string
	freezeEpochs int
}

// trainers makes the job for each task of the config.
var trainers = map[string]func(cfg *Config) (*trainJob, error){
	"ae": newAEJob,
}

// loadTrainVal opens the training data and the validation data (a folder of
// its own, or a held-out part of the training data).
func loadTrainVal(cfg *Config) (train, val nn.Dataset, err error) {
	d := cfg.Data
	all, err := openImages(d.Train, d.Channels, d.Height, d.Width)
	if err != nil {
		return nil, nil, err
	}
	if d.Val != "" {
		if val, err = openImages(d.Val, d.Channels, d.Height, d.Width); err != nil {
			return nil, nil, err
		}
		train = all
	} else {
		tr, va := datasets.SplitIndices(all.Len(), *d.ValFraction, cfg.Train.Seed)
		train, val = datasets.Subset(all, tr), datasets.Subset(all, va)
	}
	if d.Limit > 0 {
		train = datasets.Limit(train, d.Limit)
	}
	if train.Len() == 0 {
		return nil, nil, fmt.Errorf("%s: no training images left after the validation split", d.Train)
	}
	return train, val, nil
}

// writeFileAtomic writes to a temporary file beside path and renames it.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// evalBatch is the batch size of validation: up to 64 images of 32x32
// pixels' worth (small images evaluate fastest in large batches), but never
// more than 64 images, nor fewer than the training batch: an inference graph
// holds its batch's activations, so 64 images of 256x192 would take 1.7 GB
// where the training batch is known to fit.
func evalBatch(cfg *Config) int {
	px := max(1, cfg.Data.Height*cfg.Data.Width)
	return min(64, max(cfg.Train.Batch, 64*32*32/px))
}
