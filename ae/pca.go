package ae

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// PCA is a linear auto-encoder: the baseline a learned auto-encoder with a
// k-dimensional code has to beat. A sample x is encoded as
// Components (x - Mean) and decoded as Mean + Components^T code.
type PCA struct {
	// Mean is the per-dimension mean of the training data (length D).
	Mean []float64
	// Components holds k orthonormal rows of length D, the principal axes
	// in order of decreasing variance. Each row's sign is fixed so that its
	// entry of largest magnitude is positive, which makes fits repeatable.
	Components [][]float64
	// Explained is the variance of the training data along each component
	// (the covariance eigenvalue, with the unbiased N-1 denominator),
	// non-increasing.
	Explained []float64
}

// pcaMethod selects how FitPCA finds the principal axes; tests force each.
type pcaMethod int

const (
	pcaAuto       pcaMethod = iota // covariance when D <= N, else Gram
	pcaCovariance                  // eigenvectors of the D x D covariance
	pcaGram                        // eigenvectors of the N x N Gram matrix, mapped back
)

// FitPCA fits k principal components to data, N samples of dimension D
// (each sample is typically an image flattened CHW). It centres the data and
// takes the top k eigenvectors of the D x D covariance when D <= N, or else
// of the N x N Gram matrix X X^T, mapped back to D dimensions with X^T and
// normalised: both give the same axes, and the smaller matrix is far
// cheaper for, say, 2000 images of 3x64x64. The top k eigenvectors come from
// a full symmetric eigendecomposition for small matrices and from a
// self-checking block Krylov solver for large ones (see topEigen); on the
// 2-core machines here 10000 MNIST digits with k = 32 take about 1.5 s and
// 2000 images of 3x64x64 about 4-8 s, most of it forming X X^T. Memory is a
// float64 copy of the data plus the min(N, D)^2 matrix.
//
// When the data span fewer than k dimensions (duplicate samples, N <= k
// with the centring taking one dimension away) the missing components are
// completed with arbitrary orthonormal directions of zero explained
// variance, so Components always has k orthonormal rows.
//
// FitPCA returns an error for k < 1, k > min(N, D), no samples, empty or
// ragged samples, and NaN or infinite values.
func FitPCA(data [][]float32, k int) (*PCA, error) {
	return fitPCA(data, k, pcaAuto)
}

func fitPCA(data [][]float32, k int, method pcaMethod) (*PCA, error) {
	n := len(data)
	if n == 0 {
		return nil, errors.New("pca: no samples")
	}
	d := len(data[0])
	if d == 0 {
		return nil, errors.New("pca: samples are empty")
	}
	for i, row := range data {
		if len(row) != d {
			return nil, fmt.Errorf("pca: ragged data: sample %d has %d values but sample 0 has %d", i, len(row), d)
		}
		for j, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("pca: sample %d value %d is %v", i, j, v)
			}
		}
	}
	if k < 1 || k > min(n, d) {
		return nil, fmt.Errorf("pca: k = %d components, want 1 <= k <= min(samples %d, dimension %d)", k, n, d)
	}

	mean := make([]float64, d)
	for _, row := range data {
		for j, v := range row {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	x := make([]float64, n*d)
	for i, row := range data {
		xi := x[i*d : (i+1)*d]
		for j, v := range row {
			xi[j] = float64(v) - mean[j]
		}
	}
	xm := blas64.General{Rows: n, Cols: d, Stride: d, Data: x}

	if method == pcaAuto {
		method = pcaCovariance
		if d > n {
			method = pcaGram
		}
	}
	var (
		vals  []float64
		comps [][]float64
		null  []bool // directions the data do not span, to be completed
	)
	switch method {
	case pcaCovariance:
		var vecs blas64.General
		var err error
		vals, vecs, err = topEigen(gramUpper(xm, true), k)
		if err != nil {
			return nil, fmt.Errorf("pca: covariance: %w", err)
		}
		comps = columns(vecs)
		null = make([]bool, k)
	case pcaGram:
		var u blas64.General
		var err error
		vals, u, err = topEigen(gramUpper(xm, false), k)
		if err != nil {
			return nil, fmt.Errorf("pca: gram matrix: %w", err)
		}
		// v = X^T u / sqrt(lambda): the unit eigenvector of X^T X that
		// shares u's eigenvalue. Directions with no variance map to ~0 and
		// are completed below instead of normalising rounding noise.
		v := blas64.General{Rows: k, Cols: d, Stride: d, Data: make([]float64, k*d)}
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, u, xm, 0, v)
		comps = make([][]float64, k)
		null = make([]bool, k)
		for j := range comps {
			comps[j] = v.Data[j*d : (j+1)*d : (j+1)*d]
			if vals[j] <= nullEigen(vals) {
				null[j] = true
				continue
			}
			s := 1 / math.Sqrt(vals[j])
			for i := range comps[j] {
				comps[j][i] *= s
			}
		}
	default:
		panic("pca: unknown method")
	}

	tol := nullEigen(vals)
	explained := make([]float64, k)
	for j, l := range vals {
		if l > tol && !null[j] {
			explained[j] = l / float64(max(n-1, 1))
		}
	}
	orthonormalise(comps, null)
	for _, c := range comps {
		fixSign(c)
	}
	return &PCA{Mean: mean, Components: comps, Explained: explained}, nil
}

// nullEigen is the eigenvalue below which a direction counts as not spanned
// by the data: relative to the largest, it is at the level of rounding error
// in forming and factorising the matrix.
func nullEigen(vals []float64) float64 {
	if len(vals) == 0 || vals[0] <= 0 {
		return 0
	}
	return vals[0] * 1e-12
}

// gramUpper returns X^T X (cov, D x D) or X X^T (N x N) as a full symmetric
// n x n row-major matrix. Only block rows of the upper triangle are
// multiplied, by the parallel Gemm, then mirrored: gonum's Syrk runs on one
// core and was 3x slower for 2000 x 12288 data.
func gramUpper(x blas64.General, cov bool) blas64.General {
	n := x.Rows
	if cov {
		n = x.Cols
	}
	g := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
	const block = 256
	for i0 := 0; i0 < n; i0 += block {
		i1 := min(n, i0+block)
		c := blas64.General{Rows: i1 - i0, Cols: n - i0, Stride: n, Data: g.Data[i0*n+i0:]}
		if cov {
			// Column blocks of X: G[I, I:] = X[:, I]^T X[:, I:].
			a := blas64.General{Rows: x.Rows, Cols: i1 - i0, Stride: x.Stride, Data: x.Data[i0:]}
			b := blas64.General{Rows: x.Rows, Cols: n - i0, Stride: x.Stride, Data: x.Data[i0:]}
			blas64.Gemm(blas.Trans, blas.NoTrans, 1, a, b, 0, c)
		} else {
			// Row blocks of X: G[I, I:] = X[I, :] X[I:, :]^T.
			a := blas64.General{Rows: i1 - i0, Cols: x.Cols, Stride: x.Stride, Data: x.Data[i0*x.Stride:]}
			b := blas64.General{Rows: n - i0, Cols: x.Cols, Stride: x.Stride, Data: x.Data[i0*x.Stride:]}
			blas64.Gemm(blas.NoTrans, blas.Trans, 1, a, b, 0, c)
		}
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			g.Data[j*n+i] = g.Data[i*n+j]
		}
	}
	return g
}

// columns copies the columns of m into separate rows.
func columns(m blas64.General) [][]float64 {
	out := make([][]float64, m.Cols)
	for j := range out {
		out[j] = make([]float64, m.Rows)
		for i := range out[j] {
			out[j][i] = m.Data[i*m.Stride+j]
		}
	}
	return out
}

// orthonormalise makes the rows of v orthonormal in place, by modified
// Gram-Schmidt. Rows
// marked null, and rows that collapse because they were (numerically) in
// the span of earlier ones, are replaced by unit vectors orthogonal to all
// the others, taken from the standard basis in order so results repeat.
func orthonormalise(v [][]float64, null []bool) {
	var done [][]float64
	var redo []int
	for j, row := range v {
		if null[j] || !orthogonaliseAgainst(row, done) {
			redo = append(redo, j)
			continue
		}
		done = append(done, row)
	}
	next := 0 // next standard basis vector to try
	for _, j := range redo {
		row := v[j]
		for {
			clear(row)
			row[next] = 1
			next++
			if orthogonaliseAgainst(row, done) {
				break
			}
		}
		done = append(done, row)
	}
}

// orthogonaliseAgainst removes from row its components along the
// orthonormal rows of basis and normalises it, reporting false when less
// than half of its length was outside their span (then row is garbage).
func orthogonaliseAgainst(row []float64, basis [][]float64) bool {
	before := blas64.Nrm2(vec(row))
	if before == 0 {
		return false
	}
	after := project(row, basis)
	if after < 0.5*before {
		return false
	}
	blas64.Scal(1/after, vec(row))
	return true
}

// project removes from x its components along the orthonormal rows of
// basis, in two passes (one is not enough in floating point), and returns
// the norm of what is left.
func project(x []float64, basis [][]float64) float64 {
	for pass := 0; pass < 2; pass++ {
		for _, b := range basis {
			blas64.Axpy(-blas64.Dot(vec(b), vec(x)), vec(b), vec(x))
		}
	}
	return blas64.Nrm2(vec(x))
}

func vec(x []float64) blas64.Vector { return blas64.Vector{N: len(x), Inc: 1, Data: x} }

// fixSign flips v so that its entry of largest magnitude is positive:
// eigenvectors are only defined up to sign, and this makes two fits of the
// same data (or the two methods) agree.
func fixSign(v []float64) {
	best := 0
	for i, x := range v {
		if math.Abs(x) > math.Abs(v[best]) {
			best = i
		}
	}
	if v[best] < 0 {
		for i := range v {
			v[i] = -v[i]
		}
	}
}

// krylovMinN is the matrix size below which topEigen always uses the full
// factorisation: there it takes well under a second, and its answer needs no
// convergence test.
const krylovMinN = 512

// topEigen returns the k largest eigenvalues of the symmetric n x n matrix a
// (full, row-major), in decreasing order, and the matching unit eigenvectors
// as the columns of an n x k matrix. Small problems, and problems where k is
// over a twelfth of n, use the full factorisation (symEigenTop, gonum's
// LAPACK Syev as in mat.EigenSym). Large ones first try block
// Krylov (eigenKrylov), whose answer is accepted only when every returned
// pair has a residual |A v - l v| of at most 1e-8 of the largest eigenvalue
// (checked on a itself), which puts a true eigenvalue within that distance
// of each value returned (skipping one entirely would take a random start
// orthogonal to its eigenvector); otherwise they fall back to the full one. The reason: that computes all n
// eigenvectors, about 18 s for the 2000 x 2000 Gram matrix of 2000 images of
// 3x64x64 on the 2-core machines here, where the Krylov method needs one to
// three seconds for the few dozen components a baseline uses (more for flat,
// noise-like spectra, which converge slowest).
func topEigen(a blas64.General, k int) ([]float64, blas64.General, error) {
	if a.Rows >= krylovMinN && 12*k <= a.Rows {
		if vals, vecs, ok := eigenKrylov(a, k); ok {
			return vals, vecs, nil
		}
	}
	return eigenFull(a, k)
}

// eigenFull is topEigen by a full symmetric eigendecomposition.
func eigenFull(a blas64.General, k int) ([]float64, blas64.General, error) {
	n := a.Rows
	vals, vecs, ok := symEigenTop(a.Data, a.Stride, n, k)
	if !ok {
		return nil, blas64.General{}, fmt.Errorf("eigendecomposition of the %dx%d matrix did not converge", n, n)
	}
	return vals, vecs, nil
}

// symEigenTop returns the k largest eigenvalues (decreasing) and their unit
// eigenvectors (columns of an n x k matrix) of the symmetric n x n matrix
// whose upper triangle is src (row-major, stride ld), which is not changed.
//
// It calls LAPACK's Syev (what mat.EigenSym wraps) on a copy whose stride is
// never a multiple of 32: with the stride mat.EigenSym picks, n = 512, 768
// and 1024 took 9x, 7x and 10x longer than n+8 here (cache-set aliasing
// when the eigenvectors are accumulated), and such sizes are common (1024
// samples, 32x32 images, Krylov spaces of 16-column blocks).
func symEigenTop(src []float64, ld, n, k int) ([]float64, blas64.General, bool) {
	stride := n
	if stride%32 == 0 {
		stride += 8 // keeps rows 64-byte aligned, which an odd pad does not
	}
	a := blas64.Symmetric{N: n, Stride: stride, Uplo: blas.Upper, Data: make([]float64, n*stride)}
	for i := 0; i < n; i++ {
		copy(a.Data[i*stride+i:i*stride+n], src[i*ld+i:i*ld+n])
	}
	w := make([]float64, n)
	work := make([]float64, 1)
	lapack64.Syev(lapack.EVCompute, a, w, work, -1)
	work = make([]float64, int(work[0]))
	if !lapack64.Syev(lapack.EVCompute, a, w, work, len(work)) {
		return nil, blas64.General{}, false
	}
	vals := make([]float64, k)
	vecs := blas64.General{Rows: n, Cols: k, Stride: k, Data: make([]float64, n*k)}
	for j := 0; j < k; j++ {
		src := n - 1 - j // w is ascending
		vals[j] = w[src]
		for i := 0; i < n; i++ {
			vecs.Data[i*k+j] = a.Data[i*stride+src]
		}
	}
	return vals, vecs, true
}

// eigenKrylov is topEigen by block Lanczos with full reorthogonalisation.
// It builds an orthonormal basis Q of the block Krylov space of a random
// start, keeps H = Q^T A Q exactly (each block of A Q is projected onto all
// of Q, twice), and every so often takes the Ritz pairs of H. Because the
// reorthogonalisation is complete, A Q = Q H + R E^T where R is the last
// (unnormalised) block, so a Ritz pair's residual is |R s_last| and costs
// nothing to check; the accepted pairs are verified once against A itself.
// ok is false when the space grew to its cap without converging.
func eigenKrylov(a blas64.General, k int) ([]float64, blas64.General, bool) {
	n := a.Rows
	// Small blocks give high-degree polynomials (fast convergence per
	// multiplication); 16 columns still make Gemm, not Gemv, do the work.
	b := min(16, k+4)
	maxDim := min(n/2, 10*k+48*b)
	maxDim -= maxDim % b
	if maxDim < k+2*b {
		return nil, blas64.General{}, false
	}
	q := blas64.General{Rows: n, Cols: maxDim, Stride: maxDim, Data: make([]float64, n*maxDim)}
	h := make([]float64, maxDim*maxDim)
	w := blas64.General{Rows: n, Cols: b, Stride: b, Data: make([]float64, n*b)}
	proj := blas64.General{Rows: maxDim, Cols: b, Stride: b, Data: make([]float64, maxDim*b)}
	rng := rand.New(rand.NewPCG(1, 2)) // fixed: fits repeat exactly

	for i := range w.Data {
		w.Data[i] = rng.NormFloat64()
	}
	ref := make([]float64, b)
	for c := range ref {
		ref[c] = 1 // w is random, not a projected product: keep every column
	}
	if !orthoBlock(q, 0, w, ref, rng) {
		return nil, blas64.General{}, false
	}
	tol := 1e-9 // residual relative to the largest eigenvalue; see topEigen
	nextCheck := max(2*k+2*b, 3*b)
	for end := b; ; end += b {
		qj := subCols(q, end-b, end)
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, a, qj, 0, w) // W = A Q_j
		for c := range ref {
			ref[c] = blas64.Nrm2(blas64.Vector{N: n, Inc: b, Data: w.Data[c:]})
		}
		qAll := subCols(q, 0, end)
		p := blas64.General{Rows: end, Cols: b, Stride: b, Data: proj.Data[:end*b]}
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, qAll, w, 0, p) // Q^T A Q_j
		for i := 0; i < end; i++ {
			for c := 0; c < b; c++ {
				v := p.Data[i*b+c]
				h[i*maxDim+end-b+c] = v
				h[(end-b+c)*maxDim+i] = v
			}
		}
		blas64.Gemm(blas.NoTrans, blas.NoTrans, -1, qAll, p, 1, w)
		// Second pass: after one, W can keep components along Q of the
		// order of eps*|A|, which would break the exactness of H.
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, qAll, w, 0, p)
		blas64.Gemm(blas.NoTrans, blas.NoTrans, -1, qAll, p, 1, w)

		if end >= nextCheck || end+b > maxDim {
			// Checks grow 1.5x apart: the m x m Ritz problem, not the products,
			// dominates the cost once m is large.
			nextCheck = end + max(b, end/2)
			vals, sm, ok := symEigenTop(h, maxDim, end, k)
			if ok {
				// Residual of each Ritz pair: |W s[end-b:end]|.
				worst := 0.0
				for j := 0; j < k; j++ {
					var r2 float64
					for i := 0; i < n; i++ {
						var t float64
						for c := 0; c < b; c++ {
							t += w.Data[i*b+c] * sm.Data[(end-b+c)*k+j]
						}
						r2 += t * t
					}
					worst = max(worst, math.Sqrt(r2))
				}
				if worst <= tol*math.Abs(vals[0]) {
					vecs := blas64.General{Rows: n, Cols: k, Stride: k, Data: make([]float64, n*k)}
					blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, qAll, sm, 0, vecs)
					if verifyEigen(a, vals, vecs, 10*tol) {
						return vals, vecs, true
					}
					tol /= 10 // the estimate was optimistic: ask for more
				}
			}
		}
		if end+b > maxDim {
			return nil, blas64.General{}, false
		}
		// The remainder becomes the next block; orthoBlock also restarts
		// directions that vanished (the space became invariant).
		if !orthoBlock(q, end, w, ref, rng) {
			return nil, blas64.General{}, false
		}
	}
}

func subCols(m blas64.General, c0, c1 int) blas64.General {
	return blas64.General{Rows: m.Rows, Cols: c1 - c0, Stride: m.Stride, Data: m.Data[c0:]}
}

// orthoBlock orthonormalises the b columns of w, which the caller has
// already projected off q's first col columns, and stores them as q's
// columns col..col+b. ref[c] is the norm of column c before that projection:
// a column that lost nearly all of it lies (numerically) in the span
// already, and normalising what is left would amplify rounding into a
// vector that is not orthogonal to q. Such columns are replaced by random
// ones, so the space keeps growing past an invariant subspace (as for a
// rank-deficient matrix); H stays exact because it is computed, not
// recurred.
func orthoBlock(q blas64.General, col int, w blas64.General, ref []float64, rng *rand.Rand) bool {
	n, b := q.Rows, w.Cols
	fresh := make([][]float64, 0, b)
	coef := make([]float64, col)
	qOld := subCols(q, 0, col)
	for c := 0; c < b; c++ {
		x := make([]float64, n)
		for i := range x {
			x[i] = w.Data[i*w.Stride+c]
		}
		ok := ref[c] > 0 && project(x, fresh) > 1e-4*ref[c]
		for attempt := 0; !ok && attempt < 3; attempt++ {
			for i := range x {
				x[i] = rng.NormFloat64()
			}
			before := blas64.Nrm2(vec(x))
			// Gemv streams through the row-major q; dots down its columns
			// would stride through memory once per column.
			for pass := 0; pass < 2 && col > 0; pass++ {
				blas64.Gemv(blas.Trans, 1, qOld, vec(x), 0, vec(coef))
				blas64.Gemv(blas.NoTrans, -1, qOld, vec(coef), 1, vec(x))
			}
			ok = project(x, fresh) > 0.5*before
		}
		if !ok {
			return false
		}
		blas64.Scal(1/blas64.Nrm2(vec(x)), vec(x))
		fresh = append(fresh, x)
	}
	for c, x := range fresh {
		for i, v := range x {
			q.Data[i*q.Stride+col+c] = v
		}
	}
	return true
}

// verifyEigen checks |A v_j - l_j v_j| <= tol*|l_0| for every column j, so
// that the Krylov answer is trusted on A itself and not on its estimate.
func verifyEigen(a blas64.General, vals []float64, vecs blas64.General, tol float64) bool {
	n, k := vecs.Rows, vecs.Cols
	av := blas64.General{Rows: n, Cols: k, Stride: k, Data: make([]float64, n*k)}
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, a, vecs, 0, av)
	for j := 0; j < k; j++ {
		var r2 float64
		for i := 0; i < n; i++ {
			r := av.Data[i*k+j] - vals[j]*vecs.Data[i*k+j]
			r2 += r * r
		}
		if math.Sqrt(r2) > tol*math.Abs(vals[0]) {
			return false
		}
	}
	return true
}

// Reconstruct projects x onto the components and back, writing
// Mean + C^T C (x - Mean) to out. out may be x itself. It panics if x or out
// does not have the fitted dimension.
func (p *PCA) Reconstruct(x []float32, out []float32) {
	d := len(p.Mean)
	if len(x) != d || len(out) != d {
		panic(fmt.Sprintf("ae.PCA.Reconstruct: x has %d and out %d values, want %d", len(x), len(out), d))
	}
	code := make([]float64, len(p.Components))
	for j, c := range p.Components {
		var s float64
		for i, v := range x {
			s += c[i] * (float64(v) - p.Mean[i])
		}
		code[j] = s
	}
	rec := slices.Clone(p.Mean)
	for j, c := range p.Components {
		blas64.Axpy(code[j], vec(c), vec(rec))
	}
	for i, v := range rec {
		out[i] = float32(v)
	}
}

// MSE returns the mean squared reconstruction error per element over data,
// computed in float64 without rounding the reconstruction to float32; 0 for
// no samples. It panics if a sample does not have the fitted dimension.
func (p *PCA) MSE(data [][]float32) float64 {
	n, d, k := len(data), len(p.Mean), len(p.Components)
	if n == 0 || d == 0 {
		return 0
	}
	comp := blas64.General{Rows: k, Cols: d, Stride: d, Data: make([]float64, k*d)}
	for j, c := range p.Components {
		copy(comp.Data[j*d:(j+1)*d], c)
	}
	// Chunks of samples keep memory small while Gemm still does the work.
	const chunk = 256
	r := min(chunk, n)
	xc := make([]float64, r*d)
	code := make([]float64, r*max(k, 1))
	var sum float64
	for i0 := 0; i0 < n; i0 += chunk {
		rows := min(chunk, n-i0)
		for i := 0; i < rows; i++ {
			row := data[i0+i]
			if len(row) != d {
				panic(fmt.Sprintf("ae.PCA.MSE: sample %d has %d values, want %d", i0+i, len(row), d))
			}
			dst := xc[i*d : (i+1)*d]
			for j, v := range row {
				dst[j] = float64(v) - p.Mean[j]
			}
		}
		x := blas64.General{Rows: rows, Cols: d, Stride: d, Data: xc}
		if k > 0 {
			cd := blas64.General{Rows: rows, Cols: k, Stride: k, Data: code}
			blas64.Gemm(blas.NoTrans, blas.Trans, 1, x, comp, 0, cd)    // code = X C^T
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -1, cd, comp, 1, x) // X -= code C
		}
		for _, v := range xc[:rows*d] {
			sum += v * v
		}
	}
	return sum / (float64(n) * float64(d))
}
