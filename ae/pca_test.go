package ae

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// orthonormalBasis returns k random orthonormal vectors of length d.
func orthonormalBasis(rng *rand.Rand, k, d int) [][]float64 {
	basis := make([][]float64, 0, k)
	for len(basis) < k {
		v := make([]float64, d)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		if orthogonaliseAgainst(v, basis) {
			basis = append(basis, v)
		}
	}
	return basis
}

// subspaceData returns n samples of dimension d lying on a len(scales)-dim
// affine subspace (offset 0.5, spreads scales along its axes) plus Gaussian
// noise of the given standard deviation.
func subspaceData(rng *rand.Rand, n, d int, scales []float64, noise float64) [][]float32 {
	basis := orthonormalBasis(rng, len(scales), d)
	data := make([][]float32, n)
	for s := range data {
		row := make([]float64, d)
		for j, b := range basis {
			c := scales[j] * rng.NormFloat64()
			for i := range row {
				row[i] += c * b[i]
			}
		}
		data[s] = make([]float32, d)
		for i, v := range row {
			data[s][i] = float32(0.5 + v + noise*rng.NormFloat64())
		}
	}
	return data
}

func randomData(rng *rand.Rand, n, d int) [][]float32 {
	data := make([][]float32, n)
	for i := range data {
		data[i] = randomImage(rng, d)
	}
	return data
}

func assertOrthonormal(t *testing.T, rows [][]float64, tol float64) {
	t.Helper()
	for i := range rows {
		for j := range rows {
			want := 0.0
			if i == j {
				want = 1
			}
			require.InDelta(t, want, blas64.Dot(vec(rows[i]), vec(rows[j])), tol, "rows %d, %d", i, j)
		}
	}
}

func assertDescending(t *testing.T, v []float64) {
	t.Helper()
	for i := 1; i < len(v); i++ {
		assert.GreaterOrEqual(t, v[i-1], v[i], "index %d", i)
	}
}

func TestPCAReconstructsSubspace(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 1))
	scales := []float64{3, 2, 1, 0.5}
	// N > D takes the covariance path, N < D the Gram path.
	for _, size := range [][2]int{{300, 40}, {40, 300}} {
		n, d := size[0], size[1]
		data := subspaceData(rng, n, d, scales, 1e-6)
		p, err := FitPCA(data, 4)
		require.NoError(t, err)
		assert.Less(t, p.MSE(data), 1e-10, "k components of k-dim data: only noise is lost")
		assertOrthonormal(t, p.Components, 1e-10)
		assertDescending(t, p.Explained)
		for j, s := range scales {
			// Sample variance along each axis: within 35% for these N.
			assert.InEpsilon(t, s*s, p.Explained[j], 0.35, "%v component %d", size, j)
		}

		q, err := FitPCA(data, 3)
		require.NoError(t, err)
		// The lost axis has variance 0.25, spread over d elements.
		assert.Greater(t, q.MSE(data), 0.5*0.25/float64(d))
	}
}

func TestPCAReconstruct(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 1))
	data := subspaceData(rng, 50, 12, []float64{1, 0.5}, 0.01)
	p, err := FitPCA(data, 2)
	require.NoError(t, err)

	var total float64
	out := make([]float32, 12)
	for _, x := range data {
		p.Reconstruct(x, out)
		total += MSE(x, out)
	}
	assert.InDelta(t, p.MSE(data), total/float64(len(data)), 1e-9, "MSE is the mean of per-sample errors")

	x := append([]float32(nil), data[0]...)
	p.Reconstruct(data[0], out)
	p.Reconstruct(x, x)
	assert.Equal(t, out, x, "out may alias x")
	assert.Panics(t, func() { p.Reconstruct(x[:5], out) })
	assert.Panics(t, func() { p.MSE([][]float32{x[:5]}) })
	assert.Equal(t, 0.0, p.MSE(nil))
}

func TestPCACovarianceAndGramAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	for _, size := range [][2]int{{60, 25}, {25, 60}, {30, 30}} {
		data := randomData(rng, size[0], size[1])
		const k = 8
		cov, err := fitPCA(data, k, pcaCovariance)
		require.NoError(t, err)
		gram, err := fitPCA(data, k, pcaGram)
		require.NoError(t, err)
		assert.InDeltaSlice(t, cov.Mean, gram.Mean, 1e-15)
		for j := 0; j < k; j++ {
			assert.InEpsilon(t, cov.Explained[j], gram.Explained[j], 1e-9, "%v explained %d", size, j)
			// Same vector, and fixSign makes it the same sign.
			assert.InDeltaSlice(t, cov.Components[j], gram.Components[j], 1e-8, "%v component %d", size, j)
		}
		assertDescending(t, cov.Explained)
		assertOrthonormal(t, gram.Components, 1e-10)
		assert.InDelta(t, cov.MSE(data), gram.MSE(data), 1e-10)
	}
}

func TestPCAExplainedIsSampleVariance(t *testing.T) {
	// Two samples in 2-D: one axis, along (1,1)/sqrt2, with variance
	// |x1 - x0|^2 / 2 (N-1 = 1).
	data := [][]float32{{0, 0}, {1, 1}}
	for _, m := range []pcaMethod{pcaCovariance, pcaGram} {
		p, err := fitPCA(data, 2, m)
		require.NoError(t, err)
		assert.InDeltaSlice(t, []float64{0.5, 0.5}, p.Mean, 1e-15)
		assert.InDelta(t, 1.0, p.Explained[0], 1e-12)
		assert.InDelta(t, 0.0, p.Explained[1], 1e-12)
		assert.InDeltaSlice(t, []float64{math.Sqrt2 / 2, math.Sqrt2 / 2}, p.Components[0], 1e-12)
		assertOrthonormal(t, p.Components, 1e-12)
	}
}

func TestPCARankDeficient(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	// 10 samples span 9 dimensions once centred: the 10th component has to
	// be completed, on both paths.
	data := randomData(rng, 10, 30)
	for _, m := range []pcaMethod{pcaAuto, pcaCovariance, pcaGram} {
		p, err := fitPCA(data, 10, m)
		require.NoError(t, err)
		assertOrthonormal(t, p.Components, 1e-10)
		assert.InDelta(t, 0, p.Explained[9], 1e-12)
		assert.Greater(t, p.Explained[8], 1e-3)
		assert.Less(t, p.MSE(data), 1e-12)
	}
	// Identical samples span nothing.
	same := [][]float32{{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}}
	for _, m := range []pcaMethod{pcaCovariance, pcaGram} {
		p, err := fitPCA(same, 3, m)
		require.NoError(t, err)
		assertOrthonormal(t, p.Components, 1e-12)
		assert.Equal(t, []float64{0, 0, 0}, p.Explained)
		assert.Equal(t, 0.0, p.MSE(same))
	}
}

func TestFitPCAErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	data := randomData(rng, 5, 3)
	for name, tc := range map[string]struct {
		data [][]float32
		k    int
		msg  string
	}{
		"k zero":    {data, 0, "k = 0 components, want 1 <= k <= min(samples 5, dimension 3)"},
		"k > D":     {data, 4, "k = 4"},
		"k > N":     {data[:2], 3, "min(samples 2, dimension 3)"},
		"no data":   {nil, 1, "no samples"},
		"empty row": {[][]float32{{}}, 1, "samples are empty"},
		"ragged":    {[][]float32{{1, 2, 3}, {1, 2}}, 1, "ragged data: sample 1 has 2 values but sample 0 has 3"},
		"nan":       {[][]float32{{1, 2}, {float32(math.NaN()), 0}}, 1, "sample 1 value 0 is NaN"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := FitPCA(tc.data, tc.k)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// gramOf returns X X^T of data with a decaying spectrum: n rows, rank r.
func gramOf(rng *rand.Rand, n, r int, decay float64) blas64.General {
	x := blas64.General{Rows: n, Cols: r, Stride: r, Data: make([]float64, n*r)}
	for i := 0; i < n; i++ {
		for j := 0; j < r; j++ {
			x.Data[i*r+j] = rng.NormFloat64() * math.Pow(float64(j+1), -decay)
		}
	}
	g := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, x, x, 0, g)
	return g
}

func TestPCAEigenKrylovMatchesFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	for name, tc := range map[string]struct {
		n, rank, k int
		decay      float64
		mayFail    bool // may give up, leaving the answer to topEigen's fallback
	}{
		"decaying":      {600, 600, 12, 0.8, false},
		"flat":          {560, 2000, 10, 0, true}, // noise-like: slowest convergence
		"rank below k":  {520, 7, 12, 0.5, false}, // Krylov space goes invariant
		"power-of-two":  {512, 512, 20, 0.6, false},
		"k equals rank": {540, 16, 16, 0.3, false},
	} {
		t.Run(name, func(t *testing.T) {
			a := gramOf(rng, tc.n, tc.rank, tc.decay)
			want, wantVecs, err := eigenFull(a, tc.k)
			require.NoError(t, err)
			got, gotVecs, ok := eigenKrylov(a, tc.k)
			if !ok {
				require.True(t, tc.mayFail, "did not converge")
				got, gotVecs, err = topEigen(a, tc.k)
				require.NoError(t, err)
			}
			for j := range want {
				assert.InDelta(t, want[j], got[j], 1e-8*want[0], "eigenvalue %d", j)
			}
			cols := columns(gotVecs)
			assertOrthonormal(t, cols, 1e-10)
			assert.True(t, verifyEigen(a, got, gotVecs, 1e-8))
			wantCols := columns(wantVecs)
			for j := range cols {
				if j >= tc.rank {
					break // zero eigenvalues: any orthonormal basis will do
				}
				dot := blas64.Dot(vec(cols[j]), vec(wantCols[j]))
				// Distinct eigenvalues: the same vector up to sign.
				if j+1 < len(want) && want[j]-want[j+1] > 1e-3*want[0] && (j == 0 || want[j-1]-want[j] > 1e-3*want[0]) {
					assert.InDelta(t, 1, math.Abs(dot), 1e-6, "eigenvector %d", j)
				}
			}
		})
	}
}

func TestPCATopEigenSmallMatrix(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 1))
	a := gramOf(rng, 40, 40, 0.5)
	vals, vecs, err := topEigen(a, 40)
	require.NoError(t, err)
	assertDescending(t, vals)
	assert.True(t, verifyEigen(a, vals, vecs, 1e-12))
}

func TestFitPCAGramPathUsesKrylov(t *testing.T) {
	// N = 600 samples of D = 900: the Gram matrix is big enough for the
	// Krylov solver; check the end-to-end result on exactly 6-dim data.
	rng := rand.New(rand.NewPCG(17, 1))
	data := subspaceData(rng, 600, 900, []float64{2, 1.5, 1, 0.7, 0.5, 0.3}, 0)
	p, err := FitPCA(data, 6)
	require.NoError(t, err)
	assertOrthonormal(t, p.Components, 1e-9)
	assertDescending(t, p.Explained)
	assert.Less(t, p.MSE(data), 1e-12) // float32 rounding of the data only
}

func BenchmarkFitPCA(b *testing.B) {
	for _, size := range []struct {
		name    string
		n, d, k int
	}{{"mnist-784x10000", 10000, 784, 32}, {"rgb64-12288x2000", 2000, 12288, 32}} {
		b.Run(size.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(18, 1))
			scales := make([]float64, 300)
			for i := range scales {
				scales[i] = math.Pow(float64(i+1), -0.7)
			}
			data := subspaceData(rng, size.n, size.d, scales, 0.05)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := FitPCA(data, size.k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
