package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/segtool/segtool/ae"
	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/safetensors"
	"github.com/segtool/segtool/vae"
	"github.com/urfave/cli/v2"
	"gonum.org/v1/gonum/mat"
)

// The generative side of the auto-encoders: sample, interpolate and
// traverse decode points of a latent space; encode and decode use it for
// compression. All of them take a VAE or a plain AE, so the two latent
// spaces can be compared side by side.

// latentModel is an AE or a VAE seen through its latent space.
type latentModel struct {
	kind  string
	path  string
	shape imageShape
	code  int
	info  map[string]string
	// encode gives codes (posterior means for a VAE), decode images in [0,1]
	// (values for an MSE model, clamped when written).
	encode, decode func(x []float32, n int) ([]float32, error)
	close          func()
}

// loadLatentModel opens an "ae" or "vae" model file.
func loadLatentModel(path string) (*latentModel, error) {
	f, err := nn.ReadModel(path, ae.Kind, vae.Kind)
	if err != nil {
		return nil, err
	}
	if f.Metadata[nn.MetaKind] == vae.Kind {
		m, err := vae.Load(path)
		if err != nil {
			return nil, err
		}
		c := m.Config
		return &latentModel{kind: vae.Kind, path: path, shape: imageShape{c.InChannels, c.Height, c.Width}, code: c.Latent,
			info: m.Info, encode: m.Encode, decode: m.Decode, close: m.Close}, nil
	}
	m, err := ae.Load(path)
	if err != nil {
		return nil, err
	}
	c := m.Config
	return &latentModel{kind: ae.Kind, path: path, shape: imageShape{c.InChannels, c.Height, c.Width}, code: c.CodeSize(),
		info: m.Info, encode: m.Encode, decode: m.Decode, close: m.Close}, nil
}

// inferBatch is how many images the commands run through a model at once.
const inferBatch = 64

// mapBatches applies f to n items of inSize values each, inferBatch at a
// time, and joins the results.
func mapBatches(x []float32, n, inSize int, f func([]float32, int) ([]float32, error)) ([]float32, error) {
	var out []float32
	for s := 0; s < n; s += inferBatch {
		k := min(inferBatch, n-s)
		y, err := f(x[s*inSize:(s+k)*inSize], k)
		if err != nil {
			return nil, err
		}
		out = append(out, y...)
	}
	return out, nil
}

func (m *latentModel) encodeAll(x []float32, n int) ([]float32, error) {
	return mapBatches(x, n, m.shape.size(), m.encode)
}

func (m *latentModel) decodeAll(z []float32, n int) ([]float32, error) {
	return mapBatches(z, n, m.code, m.decode)
}

// prior is where sample draws latent points from: N(mean, L L^T).
type prior struct {
	mean []float64
	// chol is the lower Cholesky factor (d x d, row-major), or nil for a
	// diagonal covariance of std².
	chol []float64
	std  []float64
	desc string
}

func (p *prior) draw(n int, seed uint64) []float32 {
	d := len(p.mean)
	eps := vae.Normal(n*d, seed)
	z := make([]float32, n*d)
	for i := 0; i < n; i++ {
		e, out := eps[i*d:(i+1)*d], z[i*d:(i+1)*d]
		for r := 0; r < d; r++ {
			v := p.mean[r]
			if p.chol != nil {
				for k := 0; k <= r; k++ {
					v += p.chol[r*d+k] * float64(e[k])
				}
			} else {
				v += p.std[r] * float64(e[r])
			}
			out[r] = float32(v)
		}
	}
	return z
}

func standardPrior(d int) *prior {
	p := &prior{mean: make([]float64, d), std: make([]float64, d), desc: "N(0, I)"}
	for i := range p.std {
		p.std[i] = 1
	}
	return p
}

// priorFor is a VAE's N(0, I), or for an AE a Gaussian fitted to the codes
// of (at most max of) its training images — recorded in the model file, or
// fitData — with a note when neither can be had (then N(0, I) too).
func priorFor(m *latentModel, fitData string, max int) (p *prior, note string, err error) {
	if m.kind == vae.Kind {
		return standardPrior(m.code), "", nil
	}
	spec := fitData
	if spec == "" {
		spec = m.info["segtool.train_data"]
	}
	const unfit = "drawing codes from N(0, I), which an auto-encoder was never trained to decode"
	switch {
	case spec == "none":
		return standardPrior(m.code), "note: --fit-data none: " + unfit, nil
	case spec == "":
		return standardPrior(m.code), "note: the model file does not say what it was trained on (pass --fit-data); " + unfit, nil
	}
	ds, err := openImages(spec, m.shape.c, m.shape.h, m.shape.w)
	if err != nil {
		if fitData != "" {
			return nil, "", err
		}
		return standardPrior(m.code), fmt.Sprintf("note: cannot open the model's training data (%v); %s", err, unfit), nil
	}
	n := min(ds.Len(), max)
	if n < 2 {
		return nil, "", fmt.Errorf("%s: need at least 2 images to fit a Gaussian to the codes", spec)
	}
	x, err := loadN(ds, n)
	if err != nil {
		return nil, "", err
	}
	z, err := m.encodeAll(x, n)
	if err != nil {
		return nil, "", err
	}
	p = fitGaussian(z, n, m.code)
	p.desc = fmt.Sprintf("a Gaussian fitted to the codes of %d images of %s", n, spec)
	return p, "", nil
}

// fitGaussian fits a full-covariance Gaussian to n points of dimension d
// (diagonal above 256 dimensions, where a full one costs too much).
func fitGaussian(z []float32, n, d int) *prior {
	p := &prior{mean: make([]float64, d), std: make([]float64, d)}
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			p.mean[j] += float64(z[i*d+j]) / float64(n)
		}
	}
	cov := make([]float64, d*d)
	for i := 0; i < n; i++ {
		row := z[i*d : (i+1)*d]
		for a := 0; a < d; a++ {
			da := float64(row[a]) - p.mean[a]
			if d > 256 {
				cov[a*d+a] += da * da
				continue
			}
			for b := 0; b <= a; b++ {
				cov[a*d+b] += da * (float64(row[b]) - p.mean[b])
			}
		}
	}
	for a := 0; a < d; a++ {
		for b := 0; b <= a; b++ {
			cov[a*d+b] /= float64(n - 1)
			cov[b*d+a] = cov[a*d+b]
		}
		p.std[a] = math.Sqrt(cov[a*d+a])
	}
	if d > 256 {
		return p
	}
	// a little jitter keeps a rank-deficient covariance factorisable
	var trace float64
	for a := 0; a < d; a++ {
		trace += cov[a*d+a]
	}
	for _, jitter := range []float64{0, 1e-6, 1e-4, 1e-2} {
		s := mat.NewSymDense(d, append([]float64(nil), cov...))
		for a := 0; a < d; a++ {
			s.SetSym(a, a, s.At(a, a)+jitter*trace/float64(d)+1e-12)
		}
		var ch mat.Cholesky
		if ch.Factorize(s) {
			var l mat.TriDense
			ch.LTo(&l)
			p.chol = make([]float64, d*d)
			for a := 0; a < d; a++ {
				for b := 0; b <= a; b++ {
					p.chol[a*d+b] = l.At(a, b)
				}
			}
			return p
		}
	}
	return p // diagonal
}

func loadN(ds nn.Dataset, n int) ([]float32, error) {
	c, h, w := ds.Shape()
	size := c * h * w
	x := make([]float32, n*size)
	for i := 0; i < n; i++ {
		img, _, err := ds.Get(i, 0)
		if err != nil {
			return nil, err
		}
		copy(x[i*size:], img)
	}
	return x, nil
}

// pickImage reads one image: a file, or DATA@INDEX — image INDEX (from 0)
// of a folder or an MNIST split, such as mnist:test@7.
func pickImage(spec string, s imageShape) ([]float32, error) {
	if st, err := os.Stat(spec); err == nil && !st.IsDir() {
		return datasets.LoadImage(spec, datasets.ImageOptions{Channels: s.c, Height: s.h, Width: s.w})
	}
	at := strings.LastIndex(spec, "@")
	if at < 0 {
		return nil, fmt.Errorf("%s: not an image file; give an image, or DATA@INDEX such as mnist:test@7 or photos@0", spec)
	}
	i, err := strconv.Atoi(spec[at+1:])
	if err != nil || i < 0 {
		return nil, fmt.Errorf("%s: %q is not an image index (DATA@INDEX, from 0)", spec, spec[at+1:])
	}
	ds, err := openImages(spec[:at], s.c, s.h, s.w)
	if err != nil {
		return nil, err
	}
	if i >= ds.Len() {
		return nil, fmt.Errorf("%s: index %d, but %s has %d images", spec, i, spec[:at], ds.Len())
	}
	img, _, err := ds.Get(i, 0)
	return img, err
}

// modelFlag is made afresh for each command: urfave/cli flags keep state.
func modelFlag() cli.Flag {
	return &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true, Usage: "VAE or auto-encoder model `FILE` (.safetensors)"}
}

func aePriorFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "fit-data", Usage: "auto-encoder: images whose codes the sampling Gaussian is fitted to (default: the model's training data)"},
		&cli.IntFlag{Name: "fit-samples", Value: 5000, Usage: "auto-encoder: fit the Gaussian to at most this many images"},
	}
}

func sampleCommand() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "decode random points of a model's latent space into a grid of images",
		Description: `For a VAE the points are drawn from its prior N(0, I). For a plain
auto-encoder, which has no prior, they are drawn from a Gaussian fitted to the
codes of its training data (recorded in the model file; --fit-data overrides).`,
		Flags: append([]cli.Flag{
			modelFlag(),
			&cli.IntFlag{Name: "n", Value: 64, Usage: "how many samples"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "samples.png", Usage: "output image `FILE`"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the draws: the same seed gives the same samples"},
			&cli.IntFlag{Name: "cols", Value: 8, Usage: "images per row"},
		}, aePriorFlags()...),
		Action: guard(runSample),
	}
}

func runSample(c *cli.Context) error {
	n := c.Int("n")
	if n < 1 || n > 4096 {
		return fmt.Errorf("--n %d: ask for 1 to 4096 samples", n)
	}
	m, err := loadLatentModel(c.String("model"))
	if err != nil {
		return err
	}
	defer m.close()
	p, note, err := priorFor(m, c.String("fit-data"), c.Int("fit-samples"))
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(c.App.Writer, note)
	}
	imgs, err := m.decodeAll(p.draw(n, c.Uint64("seed")), n)
	if err != nil {
		return err
	}
	if err := writeTiles(c.String("out"), imgs, m.shape, max(1, c.Int("cols"))); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%d samples of the %s from %s: %s\n", n, m.kind, p.desc, c.String("out"))
	return nil
}

func interpolateCommand() *cli.Command {
	return &cli.Command{
		Name:  "interpolate",
		Usage: "decode the straight line between two images' codes into a strip",
		Description: `The strip is the first image, the decoded points from its code to the
second's (both ends included), and the second image. A VAE uses the
posterior means. An image is a file, or DATA@INDEX (from 0) such as
mnist:test@3 or photos@12.`,
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "from", Required: true, Usage: "first image (FILE or DATA@INDEX)"},
			&cli.StringFlag{Name: "to", Required: true, Usage: "second image (FILE or DATA@INDEX)"},
			&cli.IntFlag{Name: "steps", Value: 10, Usage: "decoded points along the line, both ends included"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "interpolation.png", Usage: "output image `FILE`"},
		},
		Action: guard(runInterpolate),
	}
}

func runInterpolate(c *cli.Context) error {
	steps := c.Int("steps")
	if steps < 2 || steps > 256 {
		return fmt.Errorf("--steps %d: use 2 to 256 points", steps)
	}
	m, err := loadLatentModel(c.String("model"))
	if err != nil {
		return err
	}
	defer m.close()
	a, err := pickImage(c.String("from"), m.shape)
	if err != nil {
		return err
	}
	b, err := pickImage(c.String("to"), m.shape)
	if err != nil {
		return err
	}
	z, err := m.encodeAll(append(append([]float32(nil), a...), b...), 2)
	if err != nil {
		return err
	}
	d := m.code
	line := make([]float32, steps*d)
	for s := 0; s < steps; s++ {
		t := float32(s) / float32(steps-1)
		for j := 0; j < d; j++ {
			line[s*d+j] = (1-t)*z[j] + t*z[d+j]
		}
	}
	imgs, err := m.decodeAll(line, steps)
	if err != nil {
		return err
	}
	strip := append(append(append([]float32(nil), a...), imgs...), b...)
	if err := writeTiles(c.String("out"), strip, m.shape, steps+2); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s, %d points of the %s's latent line, %s: %s\n", c.String("from"), steps, m.kind, c.String("to"), c.String("out"))
	return nil
}

func traverseCommand() *cli.Command {
	return &cli.Command{
		Name:  "traverse",
		Usage: "sweep latent dimensions one at a time (for a 2-D latent: the manifold grid)",
		Description: `Row k changes latent dimension k from -range to +range (columns) around
the code of --input, or around the origin (for an auto-encoder: around the
mean of its codes, in units of each dimension's standard deviation). A 2-D
latent gives the classic manifold: the grid of decoded points over
[-range, range]^2, dimension 1 left to right, dimension 2 bottom to top.`,
		Flags: append([]cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "image to sweep around (FILE or DATA@INDEX; default the origin)"},
			&cli.IntFlag{Name: "dims", Value: 8, Usage: "how many latent dimensions (the first N), one row each"},
			&cli.IntFlag{Name: "steps", Usage: "points per dimension (default 11; 15 for the 2-D manifold)"},
			&cli.Float64Flag{Name: "range", Value: 3, Usage: "sweep from -range to +range"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "traversal.png", Usage: "output image `FILE`"},
		}, aePriorFlags()...),
		Action: guard(runTraverse),
	}
}

func runTraverse(c *cli.Context) error {
	dims, rng := c.Int("dims"), c.Float64("range")
	if dims < 1 {
		return fmt.Errorf("--dims %d: sweep at least 1 dimension", dims)
	}
	if !(rng > 0) || rng > 100 {
		return fmt.Errorf("--range %g: use a positive number up to 100", rng)
	}
	m, err := loadLatentModel(c.String("model"))
	if err != nil {
		return err
	}
	defer m.close()
	d := m.code
	manifold := d == 2
	steps := c.Int("steps")
	if steps == 0 {
		steps = 11
		if manifold {
			steps = 15
		}
	}
	if steps < 2 || steps > 64 {
		return fmt.Errorf("--steps %d: use 2 to 64 points", steps)
	}
	p, note, err := priorFor(m, c.String("fit-data"), c.Int("fit-samples"))
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(c.App.Writer, note)
	}
	center := make([]float32, d)
	for j := range center {
		center[j] = float32(p.mean[j])
	}
	around := "the origin"
	if m.kind == ae.Kind {
		around = "the mean code"
	}
	if in := c.String("input"); in != "" {
		img, err := pickImage(in, m.shape)
		if err != nil {
			return err
		}
		if center, err = m.encode(img, 1); err != nil {
			return err
		}
		around = in
	}
	value := func(s int) float64 { return -rng + 2*rng*float64(s)/float64(steps-1) }
	var pts []float32
	rows := min(dims, d)
	if manifold {
		rows = steps
		for r := 0; r < steps; r++ {
			for s := 0; s < steps; s++ {
				z := append([]float32(nil), center...)
				z[0] += float32(value(s) * p.std[0])
				z[1] += float32(value(steps-1-r) * p.std[1])
				pts = append(pts, z...)
			}
		}
	} else {
		for r := 0; r < rows; r++ {
			for s := 0; s < steps; s++ {
				z := append([]float32(nil), center...)
				z[r] += float32(value(s) * p.std[r])
				pts = append(pts, z...)
			}
		}
	}
	imgs, err := m.decodeAll(pts, len(pts)/d)
	if err != nil {
		return err
	}
	if err := writeTiles(c.String("out"), imgs, m.shape, steps); err != nil {
		return err
	}
	what := fmt.Sprintf("dimensions 1-%d of the %s's %d-d latent, one per row", rows, m.kind, d)
	if manifold {
		what = fmt.Sprintf("the %s's 2-d latent manifold, %dx%d points", m.kind, steps, steps)
	}
	fmt.Fprintf(c.App.Writer, "%s, %g..%g around %s: %s\n", what, -rng, rng, around, c.String("out"))
	return nil
}

// Code files: one safetensors file with the tensor "codes" [N, code size]
// (float32) and these metadata keys.
const (
	codesTensor   = "codes"
	metaCodeModel = "segtool.codes.model"
	metaCodeKind  = "segtool.codes.kind"
	metaCodeFrom  = "segtool.codes.source"
	metaCodeNames = "segtool.codes.names"
	metaCodeInput = "segtool.input"
)

func encodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "encode",
		Usage: "compress images to their latent codes (a .safetensors file)",
		Description: `Writes each image's code (the posterior mean, for a VAE) as the float32
tensor "codes" [N, code size], and reports the compression ratio (the images
as 8-bit pixels over the codes as float32) and the PSNR of the round trip
through the decoder, with the decoded images rounded to 8 bits.`,
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "an image, a folder of images, or mnist:test"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "codes.safetensors", Usage: "output `FILE`"},
			&cli.IntFlag{Name: "n", Usage: "encode the first N images only (default all)"},
		},
		Action: guard(runEncode),
	}
}

func runEncode(c *cli.Context) error {
	m, err := loadLatentModel(c.String("model"))
	if err != nil {
		return err
	}
	defer m.close()
	in := c.String("input")
	ds, err := openInput(in, m.shape.c, m.shape.h, m.shape.w)
	if err != nil {
		return err
	}
	n := ds.Len()
	if k := c.Int("n"); k > 0 {
		n = min(n, k)
	}
	if n == 0 {
		return fmt.Errorf("%s: no images", in)
	}
	x, err := loadN(ds, n)
	if err != nil {
		return err
	}
	z, err := m.encodeAll(x, n)
	if err != nil {
		return err
	}
	y, err := m.decodeAll(z, n)
	if err != nil {
		return err
	}
	names := imageNames(ds, in, n)
	nb, err := json.Marshal(names)
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(m.path)
	meta := map[string]string{
		metaCodeModel: abs, metaCodeKind: m.kind, metaCodeFrom: absSpec(in), metaCodeNames: string(nb),
		metaCodeInput: fmt.Sprintf("%dx%dx%d", m.shape.c, m.shape.h, m.shape.w), "segtool.latent": strconv.Itoa(m.code),
	}
	if err := safetensors.Write(c.String("out"), map[string]safetensors.Tensor{codesTensor: safetensors.F32([]int{n, m.code}, z)}, meta); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%d images -> %d codes of %d values: %s\n", n, n, m.code, c.String("out"))
	fmt.Fprintln(c.App.Writer, compressionLine(m, roundTripPSNR(x, y, n)))
	return nil
}

func decodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "decode",
		Usage: "rebuild images from a codes file written by encode",
		Description: `Writes one PNG per code into --out, named after the encoded images, and
reports the compression ratio and, when the encoded images can still be
read, the PSNR of the round trip (8-bit images against 8-bit images).`,
		Flags: []cli.Flag{
			modelFlag(),
			&cli.StringFlag{Name: "codes", Required: true, Usage: "codes `FILE` written by segtool encode"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output `DIR`"},
		},
		Action: guard(runDecode),
	}
}

func runDecode(c *cli.Context) error {
	m, err := loadLatentModel(c.String("model"))
	if err != nil {
		return err
	}
	defer m.close()
	path := c.String("codes")
	f, err := safetensors.Read(path)
	if err != nil {
		return err
	}
	t, ok := f.Tensors[codesTensor]
	if !ok {
		return fmt.Errorf("%s: no %q tensor; is it a file written by segtool encode?", path, codesTensor)
	}
	if len(t.Shape) != 2 || t.Shape[0] < 1 {
		return fmt.Errorf("%s: codes have shape %v, want [N, %d]", path, t.Shape, m.code)
	}
	if t.Shape[1] != m.code {
		return fmt.Errorf("%s: codes have %d values each but %s takes %d (a code file from another model?)", path, t.Shape[1], m.path, m.code)
	}
	z, err := t.Float32s()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	n := t.Shape[0]
	for i, v := range z {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s: code %d holds %v", path, i/m.code, v)
		}
	}
	names := make([]string, n)
	var stored []string
	if json.Unmarshal([]byte(f.Metadata[metaCodeNames]), &stored) != nil || len(stored) != n {
		stored = nil
	}
	for i := range names {
		if stored != nil {
			names[i] = stored[i]
		} else {
			names[i] = fmt.Sprintf("%05d.png", i)
		}
	}
	y, err := m.decodeAll(z, n)
	if err != nil {
		return err
	}
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	size := m.shape.size()
	for i := 0; i < n; i++ {
		if err := writeImage(filepath.Join(out, names[i]), y[i*size:(i+1)*size], m.shape); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.App.Writer, "%d codes of %d values -> %d images in %s\n", n, m.code, n, out)
	psnr := math.NaN()
	if src := f.Metadata[metaCodeFrom]; src != "" {
		if ds, err := openInput(src, m.shape.c, m.shape.h, m.shape.w); err == nil && ds.Len() >= n {
			if x, err := loadN(ds, n); err == nil {
				psnr = roundTripPSNR(x, y, n)
			}
		}
	}
	fmt.Fprintln(c.App.Writer, compressionLine(m, psnr))
	return nil
}

// imageNames are the PNG names decode gives the images: the files' own
// names, or the index.
func imageNames(ds nn.Dataset, spec string, n int) []string {
	names := make([]string, n)
	pather, _ := ds.(interface{ Path(int) string })
	for i := range names {
		switch {
		case pather != nil:
			names[i] = pngName(pather.Path(i))
		case n == 1 && !isMNIST(spec):
			names[i] = pngName(spec)
		default:
			names[i] = fmt.Sprintf("%05d.png", i)
		}
	}
	return names
}

func pngName(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b)) + ".png"
}

func compressionLine(m *latentModel, psnr float64) string {
	img, code := m.shape.size(), 4*m.code
	s := fmt.Sprintf("compression: %d bytes per image (8-bit %dx%dx%d) / %d bytes per code (%d float32) = %.1fx",
		img, m.shape.c, m.shape.h, m.shape.w, code, m.code, float64(img)/float64(code))
	if math.IsNaN(psnr) {
		return s + "; round-trip PSNR unknown (the encoded images cannot be read)"
	}
	return s + fmt.Sprintf("; round-trip PSNR %.2f dB", psnr)
}

// roundTripPSNR is the mean over images of the PSNR (dB, peak 255) of the
// decoded images rounded to 8 bits against the 8-bit originals.
func roundTripPSNR(x, y []float32, n int) float64 {
	size := len(x) / n
	var sum float64
	for i := 0; i < n; i++ {
		var se float64
		for j := i * size; j < (i+1)*size; j++ {
			d := float64(toByte(x[j])) - float64(toByte(y[j]))
			se += d * d
		}
		mse := se / float64(size)
		if mse == 0 {
			sum += 100
		} else {
			sum += min(100, 10*math.Log10(255*255/mse))
		}
	}
	return sum / float64(n)
}

func toByte(v float32) uint8 {
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(v*255 + 0.5)
}

// writeImage writes one CHW image in [0,1] as an 8-bit PNG.
func writeImage(path string, img []float32, s imageShape) error {
	plane := s.h * s.w
	pix := make([]uint8, plane*s.c)
	for i := 0; i < plane; i++ {
		for ch := 0; ch < s.c; ch++ {
			pix[i*s.c+ch] = toByte(img[ch*plane+i])
		}
	}
	return datasets.WritePNG(path, pix, s.w, s.h, s.c)
}

// reconstructVAE is reconstruct for VAE models (the posterior means
// decoded); handled says whether the file was one.
func reconstructVAE(c *cli.Context) (handled bool, err error) {
	f, err := nn.ReadModel(c.String("model"))
	if err != nil || f.Metadata[nn.MetaKind] != vae.Kind {
		return false, nil // not a VAE: the auto-encoder path reports errors
	}
	m, err := vae.Load(c.String("model"))
	if err != nil {
		return true, err
	}
	defer m.Close()
	cfg := m.Config
	ds, err := openInput(c.String("input"), cfg.InChannels, cfg.Height, cfg.Width)
	if err != nil {
		return true, err
	}
	if c.Int("n") < 1 {
		return true, errors.New("--n must be at least 1")
	}
	if err := writeReconGrid(m.Reconstruct, imageShape{cfg.InChannels, cfg.Height, cfg.Width}, ds, c.Int("n"), c.String("out")); err != nil {
		return true, err
	}
	fmt.Fprintln(c.App.Writer, c.String("out"))
	return true, nil
}

type vaeEvalReport struct {
	Model   string      `json:"model"`
	Kind    string      `json:"kind"`
	Data    string      `json:"data"`
	Latent  int         `json:"latent"`
	Metrics vae.Metrics `json:"metrics"`
}

// evalVAE reports the negative ELBO (nats per image) with its two terms,
// and the reconstruction error of the decoded means.
func evalVAE(c *cli.Context) error {
	m, err := vae.Load(c.String("model"))
	if err != nil {
		return err
	}
	defer m.Close()
	cfg := m.Config
	ds, err := openInput(c.String("data"), cfg.InChannels, cfg.Height, cfg.Width)
	if err != nil {
		return err
	}
	if ds.Len() == 0 {
		return fmt.Errorf("%s: no images", c.String("data"))
	}
	rep := vaeEvalReport{Model: c.String("model"), Kind: vae.Kind, Data: c.String("data"), Latent: cfg.Latent}
	if rep.Metrics, err = vae.Evaluate(c.Context, m, ds, c.Int("batch")); err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(rep)
	}
	w := c.App.Writer
	r := rep.Metrics
	fmt.Fprintf(w, "model  %s (variational auto-encoder, %d-d latent, %s likelihood)\ndata   %s (%d images)\n\n", rep.Model, rep.Latent, cfg.Loss, rep.Data, r.Images)
	fmt.Fprintf(w, "negative ELBO  %.2f nats per image = reconstruction %.2f + KL %.2f\n", r.NegELBO, r.Recon, r.KL)
	fmt.Fprintf(w, "decoded means  MSE %.5f, PSNR %.2f dB\n", r.MSE, r.PSNR)
	return nil
}
