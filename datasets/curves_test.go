package datasets

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi  float64
		integer bool
	}{
		{0.013, 0.87, false}, {1, 30, true}, {1, 1, true}, {0.5, 0.5, false}, {-3.2, 140, false}, {95.3, 96.1, false},
	} {
		ticks, a, b := niceTicks(tc.lo, tc.hi, 6, tc.integer)
		require.GreaterOrEqual(t, len(ticks), 2, "%+v", tc)
		assert.LessOrEqual(t, a, tc.lo, "%+v", tc)
		assert.GreaterOrEqual(t, b, tc.hi, "%+v", tc)
		assert.InDelta(t, a, ticks[0], 1e-9)
		assert.InDelta(t, b, ticks[len(ticks)-1], 1e-9)
		assert.LessOrEqual(t, len(ticks), 13, "%+v: about 6 steps, not %d", tc, len(ticks))
		step := ticks[1] - ticks[0]
		mant := step / math.Pow(10, math.Floor(math.Log10(step)+1e-9))
		assert.True(t, math.Abs(mant-1) < 1e-6 || math.Abs(mant-2) < 1e-6 || math.Abs(mant-5) < 1e-6, "%+v: step %g", tc, step)
		if tc.integer {
			for _, v := range ticks {
				assert.Equal(t, math.Round(v), v, "integer axis tick %g", v)
			}
		}
	}
}

func TestLogTicks(t *testing.T) {
	ticks, a, b := logTicks(0.0089, 0.092)
	assert.InDeltaSlice(t, []float64{0.005, 0.01, 0.02, 0.05, 0.1}, ticks, 1e-12)
	assert.InDelta(t, 0.005, a, 1e-12)
	assert.InDelta(t, 0.1, b, 1e-12)
	ticks, _, _ = logTicks(1e-5, 3)
	assert.InDeltaSlice(t, []float64{1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10}, ticks, 1e-12, "over many decades only the powers")
	ticks, a, b = logTicks(2, 2)
	assert.LessOrEqual(t, a, 2.0)
	assert.GreaterOrEqual(t, b, 2.0)
	assert.GreaterOrEqual(t, len(ticks), 2)
}

func TestWriteCurves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "curves.png")
	red := [3]uint8{220, 0, 0}
	blue := [3]uint8{0, 0, 220}
	classes := Panel{Title: "val IoU per class"}
	for i := range 6 {
		classes.Series = append(classes.Series, Series{Name: "class " + string(rune('a'+i)), X: []float64{1, 2, 3}, Y: []float64{0.1 * float64(i), 0.2, 0.3}})
	}
	panels := []Panel{
		{Title: "loss", XLabel: "epoch", LogY: true, Series: []Series{
			{Name: "train", X: []float64{1, 2, 3, 4}, Y: []float64{1.2, 0.8, 0.6, 0.5}, Color: red},
			{Name: "val", X: []float64{1, 2, 3, 4}, Y: []float64{1.3, math.NaN(), 0.7, 0.65}, Color: blue},
		}},
		{Title: "one point", Series: []Series{{Name: "val mIoU", X: []float64{1}, Y: []float64{0.25}, Color: red}}},
		classes,
	}
	require.NoError(t, WriteCurves(path, panels))
	// where each panel starts: the plot, then its legend
	var start [4]int
	for i, p := range panels {
		start[i+1] = start[i] + panelW + legendWidth(p) + 8
	}
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	b := img.Bounds()
	assert.Equal(t, panelH, b.Dy())
	assert.Equal(t, start[3], b.Dx())

	// Each panel shows its lines: count the pixels of each colour in it.
	count := func(x0, x1 int, c [3]uint8) int {
		n := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := x0; x < x1; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				if uint8(r>>8) == c[0] && uint8(g>>8) == c[1] && uint8(bl>>8) == c[2] {
					n++
				}
			}
		}
		return n
	}
	assert.Greater(t, count(0, panelW, red), 200, "the train line, in the plot")
	assert.Greater(t, count(0, panelW, blue), 100, "the val line, with its gap")
	// a single point: the axes are widened around it, so it is the plot's centre
	cx := start[1] + plotLeft + (panelW-plotLeft-plotRight)/2
	cy := plotTop + (panelH-plotTop-plotBottom)/2
	r, g, bl, _ := img.At(cx, cy).RGBA()
	assert.Equal(t, red, [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}, "a single point is drawn at the centre")
	assert.Zero(t, count(start[1], start[2], blue))

	assert.Error(t, WriteCurves(path, nil))
	// written atomically: no temporary file is left beside the picture
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "curves.png", entries[0].Name())
}

func TestWriteCurvesLogAxis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.png")
	green := [3]uint8{0, 160, 0}
	// 0.01 .. 0.1 is one decade: the geometric mean is the plot's middle
	require.NoError(t, WriteCurves(path, []Panel{{Title: "loss", LogY: true, Series: []Series{
		{Name: "train", X: []float64{1, 2, 3}, Y: []float64{0.01, math.Sqrt(0.001), 0.1}, Color: green}}}}))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	cx := plotLeft + (panelW-plotLeft-plotRight)/2
	cy := plotTop + (panelH-plotTop-plotBottom)/2
	r, g, b, _ := img.At(cx, cy).RGBA()
	assert.Equal(t, green, [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)})
}

func TestVisibleDarkensLightColours(t *testing.T) {
	c := visible([3]uint8{250, 250, 250})
	assert.Less(t, 0.299*float64(c.R)+0.587*float64(c.G)+0.114*float64(c.B), 181.0)
	assert.Equal(t, uint8(60), visible([3]uint8{60, 40, 222}).R, "a dark colour stays")
}
