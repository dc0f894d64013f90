package main

import (
	"math"
	"strings"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
)

// curvesFile is the picture of a run's metrics, redrawn after every epoch.
const curvesFile = "curves.png"

// Colours of the lines that are not classes (matplotlib's first three).
var curveColors = [][3]uint8{{31, 119, 180}, {255, 127, 14}, {44, 160, 44}}

// curvePanels turns a run's metrics into charts against the epoch: the
// losses; the validation scores of the task (mIoU, mean Dice and pixel
// accuracy; PSNR; the negative ELBO and its terms); and for a segmenter the
// IoU of every class in its colour, where the rare classes show whether
// they are being learnt at all.
func curvePanels(cfg *Config, hist []nn.EpochMetrics) []datasets.Panel {
	line := func(name, key string, color [3]uint8) datasets.Series {
		s := datasets.Series{Name: name, Color: color}
		for _, m := range hist {
			v, ok := m[key]
			if !ok {
				v = math.NaN()
			}
			s.X, s.Y = append(s.X, m["epoch"]), append(s.Y, v)
		}
		return s
	}
	has := func(key string) bool {
		for _, m := range hist {
			if _, ok := m[key]; ok {
				return true
			}
		}
		return false
	}
	panel := func(title string, names, keys []string) datasets.Panel {
		p := datasets.Panel{Title: title, XLabel: "epoch"}
		for i, k := range keys {
			if has(k) {
				p.Series = append(p.Series, line(names[i], k, curveColors[i%len(curveColors)]))
			}
		}
		return p
	}
	panels := []datasets.Panel{panel("loss", []string{"train", "val"}, []string{"train_loss", "val_loss"})}
	switch cfg.Task {
	case "seg":
		panels = append(panels, panel("validation", []string{"mIoU", "mean Dice", "pixel accuracy"},
			[]string{"val_miou", "val_mdice", "val_pixel_accuracy"}))
		classes := datasets.Panel{Title: "validation IoU per class", XLabel: "epoch"}
		for _, c := range cfg.Data.Classes {
			if key := "val_iou_" + strings.ReplaceAll(c.Name, " ", "_"); has(key) {
				classes.Series = append(classes.Series, line(c.Name, key, c.Color))
			}
		}
		panels = append(panels, classes)
	case "ae":
		panels = append(panels, panel("validation PSNR (dB)", []string{"PSNR"}, []string{"val_psnr"}))
	case "vae":
		panels[0] = panel("loss (nats per image)", []string{"train loss", "val negative ELBO"}, []string{"train_loss", "val_neg_elbo"})
		panels = append(panels, panel("validation ELBO terms (nats per image)", []string{"reconstruction", "KL"},
			[]string{"val_recon", "val_kl"}))
	}
	// A loss that falls by an order of magnitude or more (the first epoch's
	// against the rest) is read on a log axis; linear, all but the first
	// points lie flat along the bottom.
	lo, hi := math.Inf(1), 0.0
	for _, s := range panels[0].Series {
		for _, v := range s.Y {
			if v > 0 && !math.IsInf(v, 0) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	panels[0].LogY = hi >= 10*lo
	var out []datasets.Panel
	for _, p := range panels {
		if len(p.Series) > 0 {
			out = append(out, p)
		}
	}
	return out
}
