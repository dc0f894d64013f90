package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// evalScalar runs f on constant inputs of the given dtype and returns its
// scalar output.
func evalScalar(t *testing.T, dt tensor.Dtype, vals []*tensor.Dense, f func(in []*G.Node) (*G.Node, error)) float64 {
	t.Helper()
	g := G.NewGraph()
	nodes := make([]*G.Node, len(vals))
	for i, v := range vals {
		if dt == tensor.Float32 {
			f32 := make([]float32, v.Len())
			for j, x := range data[float64](v) {
				f32[j] = float32(x)
			}
			v = tensor.New(tensor.WithShape(v.Shape()...), tensor.WithBacking(f32))
		}
		nodes[i] = G.NewTensor(g, dt, v.Dims(), G.WithShape(v.Shape()...), G.WithValue(v), G.WithName(string(rune('a'+i))))
	}
	y, err := f(nodes)
	require.NoError(t, err)
	m := G.NewTapeMachine(g)
	defer m.Close()
	require.NoError(t, m.RunAll())
	v, err := scalar(y.Value())
	require.NoError(t, err)
	return v
}

func klOf(t *testing.T, mu, lv *tensor.Dense) float64 {
	return evalScalar(t, tensor.Float64, []*tensor.Dense{mu, lv}, func(in []*G.Node) (*G.Node, error) { return GaussianKL(in[0], in[1]) })
}

func TestGaussianKLGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 21))
	gradCheck(t, []*tensor.Dense{randTensor(r, 3, 4), randTensor(r, 3, 4)}, []int{0, 1}, func(in []*G.Node) (*G.Node, error) {
		return GaussianKL(in[0], in[1])
	})
}

func TestGaussianKLIsNeverNegative(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 23))
	zero := tensor.New(tensor.WithShape(2, 5), tensor.WithBacking(make([]float64, 10)))
	require.Equal(t, 0.0, klOf(t, zero, zero.Clone().(*tensor.Dense)), "KL of N(0,I) from itself")
	for trial := range 50 {
		mu, lv := randTensor(r, 4, 6), randTensor(r, 4, 6)
		scale := []float64{1e-4, 0.1, 1, 5}[trial%4]
		for i := range data[float64](mu) {
			data[float64](mu)[i] *= scale
			data[float64](lv)[i] *= scale
		}
		kl := klOf(t, mu, lv)
		require.GreaterOrEqual(t, kl, 0.0, "trial %d", trial)
		terms := make([]float64, 4)
		KLTerms(data[float64](mu), data[float64](lv), 6, terms)
		var sum float64
		for _, k := range terms {
			require.GreaterOrEqual(t, k, 0.0)
			sum += k
		}
		require.InDelta(t, sum/4, kl, 1e-9*max(1, kl), "the op is the per-row KL averaged over rows")
	}
}

// The closed form agrees with a Monte-Carlo estimate of
// E_q[log q(z) − log p(z)] from reparameterised samples.
func TestGaussianKLMatchesMonteCarlo(t *testing.T) {
	mu := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float64{0.5, -1.2, 2, 0, 0.3, -0.7}))
	lv := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float64{-1, 0.4, -2.5, 1.2, 0, -0.3}))
	want := klOf(t, mu, lv)

	const samples = 200000
	r := rand.New(rand.NewPCG(24, 25))
	md, ld := data[float64](mu), data[float64](lv)
	var sum, sumSq float64
	for range samples {
		// one draw for the whole batch: the KL is averaged over the 2 rows
		var est float64
		for j, m := range md {
			sd := math.Exp(ld[j] / 2)
			eps := r.NormFloat64()
			z := m + sd*eps
			logq := -0.5*math.Log(2*math.Pi) - 0.5*ld[j] - 0.5*eps*eps
			logp := -0.5*math.Log(2*math.Pi) - 0.5*z*z
			est += logq - logp
		}
		est /= 2
		sum += est
		sumSq += est * est
	}
	mean := sum / samples
	stderr := math.Sqrt((sumSq/samples - mean*mean) / samples)
	require.InDelta(t, want, mean, 4*stderr, "analytic %.5f, Monte Carlo %.5f ± %.5f", want, mean, stderr)
	require.Less(t, stderr, 0.02*want, "the estimate is precise enough to mean something")
}

func TestReparameterizeGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(26, 27))
	// eps is fixed data; the gradient flows to mu and logvar only
	gradCheck(t, []*tensor.Dense{randTensor(r, 3, 4), randTensor(r, 3, 4), randTensor(r, 3, 4)}, []int{0, 1}, func(in []*G.Node) (*G.Node, error) {
		return Reparameterize(in[0], in[1], in[2])
	})
}

func TestReparameterizeDraws(t *testing.T) {
	mu := tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{1, -2}))
	lv := tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{math.Log(4), 0}))
	eps := tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{0.5, -1}))
	got := evalScalar(t, tensor.Float64, []*tensor.Dense{mu, lv, eps}, func(in []*G.Node) (*G.Node, error) {
		z, err := Reparameterize(in[0], in[1], in[2])
		if err != nil {
			return nil, err
		}
		return G.Sum(z)
	})
	require.InDelta(t, (1+2*0.5)+(-2-1), got, 1e-12, "z = mu + exp(logvar/2)*eps")
	_, err := Reparameterize(G.NewMatrix(G.NewGraph(), tensor.Float64, G.WithShape(2, 3)),
		G.NewMatrix(G.NewGraph(), tensor.Float64, G.WithShape(2, 3)), G.NewMatrix(G.NewGraph(), tensor.Float64, G.WithShape(3, 2)))
	require.ErrorContains(t, err, "one shape")
}

func TestSumLossGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(28, 29))
	for _, kind := range []LossKind{MSE, BCEWithLogits} {
		t.Run(kind.String(), func(t *testing.T) {
			target := randTensor(r, 3, 2, 2, 3)
			for i, v := range data[float64](target) {
				data[float64](target)[i] = Sigmoid(v)
			}
			pred := randTensor(r, 3, 2, 2, 3)
			gradCheck(t, []*tensor.Dense{pred, target}, []int{0}, func(in []*G.Node) (*G.Node, error) {
				return SumLoss(kind, in[0], in[1])
			})
			// the sum over each example's 12 values, averaged over 3 examples
			got := evalScalar(t, tensor.Float64, []*tensor.Dense{pred, target}, func(in []*G.Node) (*G.Node, error) {
				return SumLoss(kind, in[0], in[1])
			})
			terms := make([]float64, 3)
			SumLossTerms(kind, data[float64](pred), data[float64](target), 12, terms)
			require.InDelta(t, (terms[0]+terms[1]+terms[2])/3, got, 1e-12)
			require.InDelta(t, MeanLoss(kind, data[float64](pred), data[float64](target))*12, got, 1e-12)
		})
	}
}

// The VAE's objective end to end: mu feeds both the KL and the decoder-side
// loss, so its two gradients are summed by Gorgonia.
func TestNegativeELBOGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(30, 31))
	target := randTensor(r, 3, 4)
	for i, v := range data[float64](target) {
		data[float64](target)[i] = Sigmoid(v)
	}
	vals := []*tensor.Dense{randTensor(r, 3, 4), randTensor(r, 3, 4), randTensor(r, 3, 4), target}
	gradCheck(t, vals, []int{0, 1}, func(in []*G.Node) (*G.Node, error) {
		z, err := Reparameterize(in[0], in[1], in[2])
		if err != nil {
			return nil, err
		}
		rec, err := SumLoss(BCEWithLogits, z, in[3])
		if err != nil {
			return nil, err
		}
		kl, err := GaussianKL(in[0], in[1])
		if err != nil {
			return nil, err
		}
		return G.Add(rec, kl)
	})
}

func TestVAEOpsFloat32MatchFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(32, 33))
	vals := []*tensor.Dense{randTensor(r, 4, 5), randTensor(r, 4, 5), randTensor(r, 4, 5)}
	f := func(in []*G.Node) (*G.Node, error) {
		z, err := Reparameterize(in[0], in[1], in[2])
		if err != nil {
			return nil, err
		}
		rec, err := SumLoss(MSE, z, in[2])
		if err != nil {
			return nil, err
		}
		kl, err := GaussianKL(in[0], in[1])
		if err != nil {
			return nil, err
		}
		return G.Add(rec, kl)
	}
	a, b := evalScalar(t, tensor.Float64, vals, f), evalScalar(t, tensor.Float32, vals, f)
	require.InDelta(t, a, b, 1e-5*math.Abs(a))
}
