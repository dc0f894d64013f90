package datasets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
)

// videoInfo reads a video back and returns its frame count (by reading every
// frame), the size of the frames, the header's frame count, and the mean
// absolute difference between the first and last frames.
func videoInfo(t *testing.T, path string) (frames, w, h, header int, motion float64) {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(path)
	require.NoError(t, err)
	defer vc.Close()
	require.True(t, vc.IsOpened(), path)
	header = int(vc.Get(gocv.VideoCaptureFrameCount))
	first := gocv.NewMat()
	defer first.Close()
	last := gocv.NewMat()
	defer last.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	for vc.Read(&frame) && !frame.Empty() {
		if frames == 0 {
			frame.CopyTo(&first)
			w, h = frame.Cols(), frame.Rows()
		}
		frame.CopyTo(&last)
		frames++
	}
	if frames > 1 {
		diff := gocv.NewMat()
		defer diff.Close()
		gocv.AbsDiff(first, last, &diff)
		mean := diff.Mean()
		motion = (mean.Val1 + mean.Val2 + mean.Val3) / 3
	}
	return frames, w, h, header, motion
}

func TestGenerateShapesVideo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	path := filepath.Join(dir, "shapes.avi")
	require.NoError(t, GenerateShapesVideo(path, 24, 96, 64, 12, 5))
	assert.Equal(t, []string{"shapes.avi"}, dirNames(t, dir), "no temporary file left behind")

	frames, w, h, header, motion := videoInfo(t, path)
	assert.Equal(t, 24, frames)
	assert.Equal(t, 24, header)
	assert.Equal(t, 96, w)
	assert.Equal(t, 64, h)
	assert.Greater(t, motion, 0.5, "the shapes move")
}

func TestGenerateShapesVideoErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name         string
		frames, w, h int
		fps          float64
		want         string
	}{
		{"v.gif", 5, 32, 32, 10, "not a video container"},
		{"v.avi", -1, 32, 32, 10, "frames"},
		{"v.avi", 5, 33, 32, 10, "even sizes"},
		{"v.avi", 5, 8, 8, 10, "even sizes"},
		{"v.avi", 5, 32, 32, -2, "fps"},
	} {
		err := GenerateShapesVideo(filepath.Join(dir, tc.name), tc.frames, tc.w, tc.h, tc.fps, 1)
		require.Error(t, err, "%+v", tc)
		assert.Contains(t, err.Error(), filepath.Join(dir, tc.name))
		assert.Contains(t, err.Error(), tc.want)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}
