package ae

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func randomImage(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = rng.Float32()
	}
	return x
}

func TestMSEKnownValues(t *testing.T) {
	a := []float32{0, 0.5, 1, 0.25}
	b := []float32{0, 0, 1, 0.75}
	assert.InDelta(t, 0.125, MSE(a, b), 1e-15) // (0 + 0.25 + 0 + 0.25) / 4
	assert.Equal(t, 0.0, MSE(a, a))
	assert.Equal(t, 0.0, MSE(nil, nil))
	assert.Panics(t, func() { MSE(a, b[:3]) })
}

func TestPSNRKnownValues(t *testing.T) {
	assert.InDelta(t, 20.0, PSNR(0.01, 1), 1e-12)
	assert.InDelta(t, 10*math.Log10(8), PSNR(0.125, 1), 1e-12)
	assert.InDelta(t, 30.0, PSNR(65.025, 255), 1e-12) // 255^2 / 65.025 = 1000
	assert.True(t, math.IsInf(PSNR(0, 1), 1))
	a := []float32{0, 0.5, 1, 0.25}
	b := []float32{0, 0, 1, 0.75}
	assert.InDelta(t, 9.030899869919435, PSNR(MSE(a, b), 1), 1e-12)
}

func TestSSIMIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range [][3]int{{3, 16, 16}, {1, 28, 28}, {1, 4, 6}, {2, 1, 1}} {
		x := randomImage(rng, s[0]*s[1]*s[2])
		assert.InDelta(t, 1.0, SSIM(x, x, s[0], s[1], s[2]), 1e-12, "%v", s)
	}
}

func TestSSIMDecreasesWithNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	const c, h, w = 3, 24, 20
	// A smooth image, as SSIM is about structure.
	x := make([]float32, c*h*w)
	for ch := 0; ch < c; ch++ {
		for y := 0; y < h; y++ {
			for i := 0; i < w; i++ {
				x[(ch*h+y)*w+i] = float32(0.5 + 0.4*math.Sin(float64(y)/3+float64(ch))*math.Cos(float64(i)/4))
			}
		}
	}
	prev := SSIM(x, x, c, h, w)
	for _, sigma := range []float64{0.01, 0.03, 0.1, 0.3} {
		y := make([]float32, len(x))
		for i, v := range x {
			y[i] = float32(math.Min(1, math.Max(0, float64(v)+sigma*rng.NormFloat64())))
		}
		s := SSIM(x, y, c, h, w)
		assert.Less(t, s, prev, "sigma %g", sigma)
		assert.InDelta(t, s, SSIM(y, x, c, h, w), 1e-14, "symmetric")
		prev = s
	}
	assert.Less(t, prev, 0.5, "heavy noise leaves little structure")
}

func TestSSIMHandChecked(t *testing.T) {
	const c1, c2 = 0.01 * 0.01, 0.03 * 0.03
	// Constant images: no variance, so SSIM is the luminance term
	// (2 ma mb + C1) / (ma^2 + mb^2 + C1) at every window.
	ma, mb := float64(float32(0.2)), float64(float32(0.5))
	want := (2*ma*mb + c1) / (ma*ma + mb*mb + c1)
	assert.InDelta(t, 0.2001/0.2901, want, 1e-8) // float32(0.2) is not quite 0.2
	for _, s := range [][3]int{{1, 16, 16}, {3, 11, 11}, {2, 5, 7}} {
		n := s[0] * s[1] * s[2]
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = 0.2, 0.5
		}
		assert.InDelta(t, want, SSIM(a, b, s[0], s[1], s[2]), 1e-12, "%v", s)
	}

	// A 1x2 image: the window shrinks to 1x2 with weights 1/2, 1/2.
	// a = [0 1]: mean 1/2, variance 1/4; b = [0 0]: mean 0, variance 0.
	got := SSIM([]float32{0, 1}, []float32{0, 0}, 1, 1, 2)
	assert.InDelta(t, (c1*c2)/((0.25+c1)*(0.25+c2)), got, 1e-15)
}

func TestSSIMWindow(t *testing.T) {
	g := gaussian(11, 1.5)
	var sum float64
	for i, v := range g {
		sum += v
		assert.InDelta(t, v, g[10-i], 1e-15, "symmetric")
	}
	assert.InDelta(t, 1.0, sum, 1e-15)
	assert.InDelta(t, math.Exp(-25/4.5), g[0]/g[5], 1e-12, "edge / centre = exp(-5^2 / (2 sigma^2))")

	assert.Panics(t, func() { SSIM(make([]float32, 4), make([]float32, 4), 1, 2, 3) })
	assert.Panics(t, func() { SSIM(nil, nil, 0, 1, 1) })
}

func TestSSIMAgainstDirectWindowSum(t *testing.T) {
	// The separable filtering must equal the plain 2-D weighted sums.
	rng := rand.New(rand.NewPCG(3, 3))
	const h, w = 13, 14
	a, b := randomImage(rng, h*w), randomImage(rng, h*w)
	g := gaussian(11, 1.5)
	const c1, c2 = 0.01 * 0.01, 0.03 * 0.03
	var total float64
	for y := 0; y+11 <= h; y++ {
		for x := 0; x+11 <= w; x++ {
			var ma, mb, saa, sbb, sab float64
			for i := 0; i < 11; i++ {
				for j := 0; j < 11; j++ {
					wt := g[i] * g[j]
					va, vb := float64(a[(y+i)*w+x+j]), float64(b[(y+i)*w+x+j])
					ma += wt * va
					mb += wt * vb
					saa += wt * va * va
					sbb += wt * vb * vb
					sab += wt * va * vb
				}
			}
			total += (2*ma*mb + c1) * (2*(sab-ma*mb) + c2) /
				((ma*ma + mb*mb + c1) * (saa - ma*ma + sbb - mb*mb + c2))
		}
	}
	want := total / float64((h-10)*(w-10))
	require.InDelta(t, want, SSIM(a, b, 1, h, w), 1e-12)
}
