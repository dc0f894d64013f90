//go:build matprofile

package datasets

import (
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
)

// TestVideoPathLeaksNoMat runs every step of painting masks over a video —
// decode (with a damaged stretch), resize to the model's size, resize of
// scores back, overlay, legend, labels, mask files, encode — over 300
// frames and checks that no Mat is left open:
//
//	go test -tags matprofile ./datasets
func TestVideoPathLeaksNoMat(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.avi")
	require.NoError(t, GenerateShapesVideo(in, 300, 64, 48, 25, 4))
	damageFrames(t, in, 100, 110)
	before := gocv.MatProfile.Count()

	r, err := OpenVideo(in)
	require.NoError(t, err)
	w, err := CreateVideo(filepath.Join(dir, "out.mp4"), 25, 64, 48, "")
	require.NoError(t, err)
	names := []string{"background", "circle", "square", "triangle"}
	colors := [][3]uint8{{0, 0, 0}, {230, 25, 75}, {60, 180, 75}, {0, 130, 200}}
	last := NewFrame(64, 48)
	good, bad := 0, 0
	for i := 0; ; i++ {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bad++
			require.NoError(t, w.Write(last))
			continue
		}
		good++
		x, err := FrameToCHW(f, 32, 24, 3)
		require.NoError(t, err)
		// scores: one plane per class from the colour channels
		scores := make([]float32, 4*32*24)
		copy(scores[32*24:], x)
		full, err := ResizePlanes(scores, 4, 24, 32, 48, 64)
		require.NoError(t, err)
		labels := make([]int32, 64*48)
		for j := range labels {
			best := 0
			for c := 1; c < 4; c++ {
				if full[c*64*48+j] > full[best*64*48+j] {
					best = c
				}
			}
			labels[j] = int32(best)
		}
		o, err := Overlay(f, labels, colors, -1, 0.5)
		require.NoError(t, err)
		require.NoError(t, DrawLabels(o, labels, 64, 48, names, -1, 0.05, 5, LegendRect(64, 48, names, colors)))
		require.NoError(t, DrawLegend(o, names, colors))
		if i%50 == 0 {
			cm, err := ColorMask(labels, 64, 48, colors, -1)
			require.NoError(t, err)
			require.NoError(t, WriteFrame(filepath.Join(dir, "masks", "c.png"), cm))
			require.NoError(t, WriteLabelMap(filepath.Join(dir, "masks", "l.png"), labels, 64, 48))
			_, err = ReadFrame(filepath.Join(dir, "masks", "c.png"))
			require.NoError(t, err)
		}
		require.NoError(t, w.Write(o))
		last = o
	}
	require.NoError(t, r.Close())
	require.NoError(t, w.Close())
	require.Equal(t, 290, good)
	require.Equal(t, 10, bad)
	require.Equal(t, before, gocv.MatProfile.Count(), "Mats left open over %d frames", good+bad)
	require.Equal(t, 0, OpenMats())
}
