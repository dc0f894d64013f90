package seg

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfusionScores(t *testing.T) {
	c := NewConfusion(4)
	// truth:  0 0 0 1 1 2 9(ignored)
	// pred:   0 0 1 1 1 0 3
	require.NoError(t, c.Add([]int32{0, 0, 1, 1, 1, 0, 3}, []int32{0, 0, 0, 1, 1, 2, 9}, 9))
	s := c.Scores()
	// class 0: TP 2, FN 1, FP 1 -> IoU 2/4; class 1: TP 2, FP 1 -> 2/3; class 2: TP 0, FN 1 -> 0
	assert.InDelta(t, 0.5, s.IoU[0], 1e-12)
	assert.InDelta(t, 2.0/3, s.IoU[1], 1e-12)
	assert.InDelta(t, 0, s.IoU[2], 1e-12)
	assert.Equal(t, -1.0, s.IoU[3], "class 3 is absent from truth and prediction: left out")
	assert.InDelta(t, (0.5+2.0/3+0)/3, s.MeanIoU, 1e-12)
	assert.InDelta(t, 4.0/6, s.PixelAccuracy, 1e-12)
	assert.InDelta(t, 2*2.0/(2*2+1+1), s.Dice[0], 1e-12)
	assert.Equal(t, []int64{3, 2, 1, 0}, s.Support)
	assert.Equal(t, int64(6), s.Pixels)

	m := s.Map([]string{"sky", "road", "car", "bike"})
	assert.Contains(t, m, "iou_sky")
	assert.NotContains(t, m, "iou_bike")

	var b bytes.Buffer
	s.WriteTable(&b, []string{"sky", "road", "car", "bike"})
	assert.Contains(t, b.String(), "road")
	assert.Contains(t, b.String(), "pixel accuracy 0.6667")

	rn := c.RowNormalized()
	assert.InDeltaSlice(t, []float64{2.0 / 3, 1.0 / 3, 0, 0}, rn[0], 1e-12)

	require.Error(t, c.Add([]int32{7}, []int32{0}, -1), "predicted class out of range")
	require.Error(t, c.Add([]int32{0}, []int32{0, 1}, -1))
}
