//go:build matprofile

package main

import (
	"path/filepath"
	"testing"

	"github.com/segtool/segtool/datasets"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPredictLeaksNoMat runs the whole command over a 300-frame video with a
// damaged stretch, with every option that draws or writes, and checks with
// gocv's Mat profiler that no Mat is left open:
//
//	go test -tags matprofile -run LeaksNoMat ./cmd/segtool
func TestPredictLeaksNoMat(t *testing.T) {
	fx := predictSetup(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "long.avi")
	require.NoError(t, datasets.GenerateShapesVideo(in, 300, 64, 48, 25, 8))
	damageMJPG(t, in, in, 120, 125)
	require.Equal(t, 0, datasets.OpenMats())
	for _, extra := range [][]string{
		{"--legend", "--labels", "--masks", filepath.Join(dir, "masks"), "--smooth", "0.5"},
		{"--tile", "--codec", "MJPG"},
	} {
		out := filepath.Join(dir, "out.avi")
		args := append([]string{"predict", "--model", fx.model, "--input", in, "--out", out, "-q"}, extra...)
		code, stdout, errOut := segtool(t, args...)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, stdout, "300 frames")
		assert.Contains(t, errOut, "frames 120-124")
		assert.Equal(t, 0, datasets.OpenMats(), "Mats left open after predict %v", extra)
	}
	frames, _ := readVideo(t, filepath.Join(dir, "out.avi"))
	assert.Len(t, frames, 300)
	assert.Equal(t, 0, datasets.OpenMats())
}
