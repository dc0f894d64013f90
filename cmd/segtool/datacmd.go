package main

import (
	"fmt"
	"path/filepath"

	"github.com/segtool/segtool/datasets"
	"github.com/urfave/cli/v2"
)

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "data tools",
		Subcommands: []*cli.Command{{
			Name:  "shapes",
			Usage: "generate the demo data set: coloured shapes on textured backgrounds with class masks, and a video",
			Description: `Writes DIR/images/NNNN.png and DIR/masks/NNNN.png (class index per pixel:
0 background, 1 circle, 2 square, 3 triangle) and, unless --frames is 0,
DIR/shapes.avi with such shapes moving.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
				&cli.IntFlag{Name: "n", Value: 400, Usage: "number of images"},
				&cli.IntFlag{Name: "size", Value: 64, Usage: "image width and height in pixels"},
				&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the scenes"},
				&cli.IntFlag{Name: "frames", Value: 120, Usage: "frames of the moving-shapes video (0: no video)"},
			},
			Action: guard(func(c *cli.Context) error {
				dir := c.String("out")
				size := c.Int("size")
				opt := datasets.ShapesOptions{N: c.Int("n"), Width: size, Height: size, Seed: c.Uint64("seed")}
				if err := datasets.GenerateShapes(dir, opt); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%d images and masks in %s\n", opt.N, dir)
				if f := c.Int("frames"); f > 0 {
					video := filepath.Join(dir, "shapes.avi")
					if err := datasets.GenerateShapesVideo(video, f, 4*size, 3*size, 15, c.Uint64("seed")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%d-frame video: %s\n", f, video)
				}
				return nil
			}),
		}, dataCheckCommand()},
	}
}
