package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
)

// openImages opens a data spec as unlabelled images of the given size:
// "mnist" or "mnist:train", "mnist:test", or a folder of images.
func openImages(spec string, channels, height, width int) (nn.Dataset, error) {
	if isMNIST(spec) {
		split := strings.TrimPrefix(strings.TrimPrefix(spec, "mnist"), ":")
		if split == "" {
			split = "train"
		}
		if split != "train" && split != "test" {
			return nil, fmt.Errorf("%s: MNIST splits are mnist:train and mnist:test", spec)
		}
		dir, err := datasets.FindMNIST()
		if err != nil {
			return nil, err
		}
		m, err := datasets.LoadMNIST(dir, split)
		if err != nil {
			return nil, err
		}
		if c, h, w := m.Shape(); c != channels || h != height || w != width {
			return nil, fmt.Errorf("%s: MNIST images are %dx%dx%d but %dx%dx%d were asked for (set data.channels: 1, height: 28, width: 28)",
				spec, c, h, w, channels, height, width)
		}
		return m, nil
	}
	return datasets.NewImageFolder(spec, datasets.ImageOptions{Channels: channels, Height: height, Width: width})
}

// openInput opens what reconstruct and friends take: one image file, a
// folder, or an MNIST split.
func openInput(spec string, channels, height, width int) (nn.Dataset, error) {
	if st, err := os.Stat(spec); err == nil && !st.IsDir() {
		img, err := datasets.LoadImage(spec, datasets.ImageOptions{Channels: channels, Height: height, Width: width})
		if err != nil {
			return nil, err
		}
		return single{img: img, c: channels, h: height, w: width}, nil
	}
	return openImages(spec, channels, height, width)
}

type single struct {
	img     []float32
	c, h, w int
}

func (s single) Len() int               { return 1 }
func (s single) Shape() (int, int, int) { return s.c, s.h, s.w }
func (s single) Get(int, uint64) ([]float32, []int32, error) {
	return s.img, nil, nil
}

// absSpec makes a folder spec absolute so a model file's record of it works
// from anywhere.
func absSpec(spec string) string {
	if isMNIST(spec) {
		return spec
	}
	if a, err := filepath.Abs(spec); err == nil {
		return a
	}
	return spec
}

// gridScale enlarges small images so a grid is comfortable to look at.
func gridScale(h int) int { return max(1, 96/h) }
