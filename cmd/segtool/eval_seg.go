package main

import (
	"encoding/json"
	"fmt"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/seg"
	"github.com/urfave/cli/v2"
)

func init() { evaluators[seg.Kind] = evalSeg }

// segDataOptions opens labelled data the way the model expects it: its
// input size and channels, its class table and ignore index.
func segDataOptions(m *seg.Model) datasets.LabelledOptions {
	cfg := m.Config
	t := datasets.ClassTable{Ignore: cfg.Ignore}
	for _, cl := range cfg.ClassTable {
		t.Classes = append(t.Classes, datasets.Class{Name: cl.Name, Color: cl.Color})
	}
	return datasets.LabelledOptions{Channels: cfg.InChannels, Height: cfg.Height, Width: cfg.Width,
		Classes: t, Encoding: "auto"}
}

type segEvalReport struct {
	Model   string     `json:"model"`
	Kind    string     `json:"kind"`
	Data    string     `json:"data"`
	Images  int        `json:"images"`
	Classes []string   `json:"classes"`
	Scores  seg.Scores `json:"scores"`
	Matrix  [][]int64  `json:"confusion"`
	Image   string     `json:"confusion_image,omitempty"`
}

func evalSeg(c *cli.Context) error {
	m, err := seg.Load(c.String("model"))
	if err != nil {
		return err
	}
	defer m.Close()
	ds, err := datasets.OpenLabelled(c.String("data"), segDataOptions(m))
	if err != nil {
		return err
	}
	cm, err := seg.Evaluate(c.Context, m, ds, c.Int("batch"), nil)
	if err != nil {
		return err
	}
	rep := segEvalReport{Model: c.String("model"), Kind: seg.Kind, Data: c.String("data"), Images: ds.Len(),
		Classes: m.Config.Names(), Scores: cm.Scores(), Matrix: cm.Counts, Image: c.String("confusion")}
	if rep.Image != "" {
		if err := datasets.WriteConfusion(rep.Image, cm.RowNormalized(), m.Config.Names()); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(rep)
	}
	fmt.Fprintf(c.App.Writer, "model  %s (segmenter, %d classes, ignore %d)\ndata   %s (%d images, scored at the masks' resolution)\n\n",
		rep.Model, m.Config.Classes, m.Config.Ignore, rep.Data, rep.Images)
	rep.Scores.WriteTable(c.App.Writer, m.Config.Names())
	if rep.Image != "" {
		fmt.Fprintf(c.App.Writer, "confusion matrix: %s\n", rep.Image)
	}
	return nil
}
