package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/segtool/segtool/datasets"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// dataCheckCommand is `segtool data check`.
func dataCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "check a labelled data set: pairs, unpaired files, size mismatches, undecodable files, mask values not in the class table, class pixels and suggested weights",
		ArgsUsage: "DIR",
		Description: `DIR is a folder with images/ and masks/ (or labels/, annotations/; image/ + label/),
a split folder such as CamVid's train/ beside trainannot/ (DIR/train or DIR:train),
or a list file (.txt/.csv) of "image mask" lines. Every image and mask is decoded.

With --classes-from, masks are checked against the config's class table
(data.classes: [{name, color}], data.ignore_index, data.mask_encoding); without
it the classes are inferred from the masks. The exit status is 1 when any
problem is found, so the command can guard a training script.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "classes-from", Aliases: []string{"config", "c"}, Usage: "take the class table, ignore index and mask encoding from this YAML `CONFIG` (its data.classes, data.ignore_index, data.mask_encoding)"},
			&cli.StringFlag{Name: "encoding", Usage: "mask encoding: auto, index, palette, rgb or binary", DefaultText: "the config's, else auto"},
			&cli.IntFlag{Name: "ignore-index", Value: -1, Usage: "label left out of the histogram and weights (-1: none)", DefaultText: "the config's, else -1"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: guard(func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("data check: give one data set: a folder, DIR:split, or a list file of pairs")
			}
			spec := c.Args().First()
			opt := datasets.LabelledOptions{Classes: datasets.ClassTable{Ignore: -1}}
			if path := c.String("classes-from"); path != "" {
				cc, err := readClassConfig(path)
				if err != nil {
					return err
				}
				opt.Classes, opt.Encoding = cc.table, cc.encoding
			}
			if c.IsSet("encoding") {
				enc, err := datasets.ParseMaskEncoding(c.String("encoding"))
				if err != nil {
					return fmt.Errorf("--encoding: %w", err)
				}
				opt.Encoding = enc
			}
			if c.IsSet("ignore-index") {
				opt.Classes.Ignore = c.Int("ignore-index")
			}
			r, err := datasets.Check(spec, opt)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				r.Write(c.App.Writer)
			}
			if probs := r.Problems(); len(probs) > 0 {
				return fmt.Errorf("data check %s: %s (the report above lists the files)", spec, strings.Join(probs, "; "))
			}
			return nil
		}),
	}
}

// classConfig is what data check reads from a training config.
type classConfig struct {
	table    datasets.ClassTable
	encoding datasets.MaskEncoding
}

// classConfigFile is the part of a YAML config data check reads; other keys
// are left alone, so any training config will do.
type classConfigFile struct {
	Data struct {
		Classes      []ClassConfig `yaml:"classes"`
		IgnoreIndex  *int          `yaml:"ignore_index"`
		IgnoreColor  *Color        `yaml:"ignore_color"`
		MaskEncoding string        `yaml:"mask_encoding"`
	} `yaml:"data"`
}

// readClassConfig reads data.classes, data.ignore_index (default: none),
// data.ignore_color and data.mask_encoding (default auto) from a YAML config,
// as train reads them. With no classes the table is left empty, so that
// Check infers it.
func readClassConfig(path string) (classConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return classConfig{}, fmt.Errorf("--classes-from: %w", err)
	}
	var f classConfigFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return classConfig{}, fmt.Errorf("config %s: %s", path, explainYAML(err))
	}
	c := Config{Data: DataConfig{Classes: f.Data.Classes, IgnoreIndex: f.Data.IgnoreIndex, IgnoreColor: f.Data.IgnoreColor}}
	c.Defaults() // the palette for bare names, no ignore index
	cc := classConfig{table: c.classTable()}
	if cc.encoding, err = datasets.ParseMaskEncoding(f.Data.MaskEncoding); err != nil {
		return classConfig{}, fmt.Errorf("config %s: data.mask_encoding: %w", path, err)
	}
	if len(cc.table.Classes) > 0 || cc.table.IgnoreColor != nil {
		if err := cc.table.Validate(); err != nil {
			return classConfig{}, fmt.Errorf("config %s: data.classes: %w", path, err)
		}
	}
	return cc, nil
}
