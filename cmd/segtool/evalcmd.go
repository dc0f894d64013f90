package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/segtool/segtool/ae"
	"github.com/segtool/segtool/nn"
	"github.com/urfave/cli/v2"
)

func reconstructCommand() *cli.Command {
	return &cli.Command{
		Name:  "reconstruct",
		Usage: "write a grid of images above their reconstructions by an auto-encoder or VAE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true, Usage: "auto-encoder or VAE model `FILE` (.safetensors)"},
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "an image, a folder of images, or mnist:test"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "reconstructions.png", Usage: "output image `FILE`"},
			&cli.IntFlag{Name: "n", Value: 16, Usage: "how many images (the first N)"},
		},
		Action: guard(func(c *cli.Context) error {
			if handled, err := reconstructVAE(c); handled {
				return err
			}
			m, err := ae.Load(c.String("model"))
			if err != nil {
				return err
			}
			defer m.Close()
			cfg := m.Config
			ds, err := openInput(c.String("input"), cfg.InChannels, cfg.Height, cfg.Width)
			if err != nil {
				return err
			}
			if c.Int("n") < 1 {
				return fmt.Errorf("--n must be at least 1")
			}
			shape := imageShape{cfg.InChannels, cfg.Height, cfg.Width}
			if err := writeReconGrid(m.Reconstruct, shape, ds, c.Int("n"), c.String("out")); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, c.String("out"))
			return nil
		}),
	}
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "score a model on a data set (segmenter: IoU, Dice, accuracy; auto-encoder: MSE, PSNR, SSIM beside a PCA baseline)",
		Description: `For an auto-encoder, eval also fits PCA with as many components as the
model's latent code on the model's training data (or --pca-data) and scores
it on the same images: the linear baseline the non-linear model must beat.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true, Usage: "model `FILE` (.safetensors)"},
			&cli.StringFlag{Name: "data", Aliases: []string{"d"}, Required: true, Usage: "a folder of images, or mnist:test"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"},
			&cli.StringFlag{Name: "pca-data", Usage: "data to fit the PCA baseline on (default: the model's training data; none: skip)"},
			&cli.IntFlag{Name: "pca-samples", Value: 10000, Usage: "fit PCA on at most this many training images"},
			&cli.IntFlag{Name: "batch", Value: 16, Usage: "inference batch size"},
			&cli.StringFlag{Name: "confusion", Usage: "segmenter: also draw the confusion matrix into this PNG `FILE`"},
		},
		Action: guard(runEval),
	}
}

type evalReport struct {
	Model    string       `json:"model"`
	Kind     string       `json:"kind"`
	Data     string       `json:"data"`
	Latent   int          `json:"latent"`
	Metrics  ae.Metrics   `json:"metrics"`
	Baseline *pcaBaseline `json:"pca,omitempty"`
	Note     string       `json:"note,omitempty"`
}

type pcaBaseline struct {
	Components int     `json:"components"`
	FitData    string  `json:"fit_data"`
	FitImages  int     `json:"fit_images"`
	MSE        float64 `json:"mse"`
	PSNR       float64 `json:"psnr"`
	SSIM       float64 `json:"ssim"`
}

// evaluators scores a model file of each kind; eval picks one by the kind
// written in the file.
var evaluators = map[string]func(c *cli.Context) error{
	ae.Kind: evalAE,
}

func runEval(c *cli.Context) error {
	path := c.String("model")
	f, err := nn.ReadModel(path)
	if err != nil {
		return err
	}
	kind := f.Metadata[nn.MetaKind]
	eval, ok := evaluators[kind]
	if !ok {
		return fmt.Errorf("%s: eval does not know models of kind %q (%s)", path, kind, strings.Join(sortedKeys(evaluators), ", "))
	}
	return eval(c)
}

func evalAE(c *cli.Context) error {
	m, err := ae.Load(c.String("model"))
	if err != nil {
		return err
	}
	defer m.Close()
	cfg := m.Config
	ds, err := openInput(c.String("data"), cfg.InChannels, cfg.Height, cfg.Width)
	if err != nil {
		return err
	}
	if ds.Len() == 0 {
		return fmt.Errorf("%s: no images", c.String("data"))
	}
	rep := evalReport{Model: c.String("model"), Kind: ae.Kind, Data: c.String("data"), Latent: cfg.CodeSize()}
	if rep.Metrics, err = ae.Evaluate(c.Context, m, ds, c.Int("batch"), nil); err != nil {
		return err
	}

	fit := c.String("pca-data")
	if fit == "" {
		fit = m.Info["segtool.train_data"]
	}
	switch {
	case fit == "none":
	case fit == "":
		rep.Note = "no PCA baseline: the model file does not say what it was trained on; pass --pca-data"
	case cfg.CodeSize() > 4096:
		rep.Note = fmt.Sprintf("no PCA baseline: the code has %d values (latent 0); PCA of that size is not a baseline", cfg.CodeSize())
	default:
		if rep.Baseline, err = fitPCABaseline(fit, ds, m, c.Int("pca-samples")); err != nil {
			return fmt.Errorf("PCA baseline: %w", err)
		}
	}

	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		return enc.Encode(rep)
	}
	fmt.Fprintf(c.App.Writer, "model  %s (auto-encoder, %d-value code)\ndata   %s (%d images)\n\n", rep.Model, rep.Latent, rep.Data, rep.Metrics.Images)
	fmt.Fprintf(c.App.Writer, "%-10s %10s %8s %8s\n", "", "MSE", "PSNR", "SSIM")
	fmt.Fprintf(c.App.Writer, "%-10s %10.5f %8.2f %8.4f\n", "ae", rep.Metrics.MSE, rep.Metrics.PSNR, rep.Metrics.SSIM)
	if b := rep.Baseline; b != nil {
		fmt.Fprintf(c.App.Writer, "%-10s %10.5f %8.2f %8.4f   (fitted on %d images of %s)\n", "pca-"+strconv.Itoa(b.Components), b.MSE, b.PSNR, b.SSIM, b.FitImages, b.FitData)
	}
	if rep.Note != "" {
		fmt.Fprintln(c.App.Writer, rep.Note)
	}
	return nil
}

func fitPCABaseline(spec string, test interface {
	Len() int
	Get(int, uint64) ([]float32, []int32, error)
}, m *ae.Model, maxSamples int) (*pcaBaseline, error) {
	cfg := m.Config
	train, err := openImages(spec, cfg.InChannels, cfg.Height, cfg.Width)
	if err != nil {
		return nil, err
	}
	n := min(train.Len(), max(maxSamples, cfg.CodeSize()))
	data := make([][]float32, n)
	for i := range data {
		if data[i], _, err = train.Get(i, 0); err != nil {
			return nil, err
		}
	}
	k := min(cfg.CodeSize(), n)
	p, err := ae.FitPCA(data, k)
	if err != nil {
		return nil, err
	}
	b := &pcaBaseline{Components: k, FitData: spec, FitImages: n}
	rec := make([]float32, m.ImageSize())
	var se, psnr, ssim float64
	for i := 0; i < test.Len(); i++ {
		x, _, err := test.Get(i, 0)
		if err != nil {
			return nil, err
		}
		p.Reconstruct(x, rec)
		for j := range rec {
			rec[j] = min(1, max(0, rec[j]))
		}
		mse := ae.MSE(x, rec)
		se += mse
		psnr += min(ae.PSNR(mse, 1), 100)
		ssim += ae.SSIM(x, rec, cfg.InChannels, cfg.Height, cfg.Width)
	}
	t := float64(test.Len())
	b.MSE, b.PSNR, b.SSIM = se/t, psnr/t, ssim/t
	return b, nil
}
