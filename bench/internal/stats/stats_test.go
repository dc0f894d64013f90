package stats

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMedian(t *testing.T) {
	v := []float64{5, 1, 3}
	assert.Equal(t, 3.0, Median(v))
	assert.Equal(t, []float64{5, 1, 3}, v, "left alone")
	assert.Equal(t, 2.5, Median([]float64{4, 1, 2, 3}))
	assert.Equal(t, 0.0, Median(nil))
}
