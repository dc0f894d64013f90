package datasets

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// Class is one segmentation class: its name and the colour masks are painted
// with.
type Class struct {
	// Name is the class name, as shown in reports and stored in models.
	Name string
	// Color is the RGB colour used when the class is painted over an image.
	Color [3]uint8
}

// Class indices of the shapes data set, as stored in its mask PNGs.
const (
	ShapeBackground = 0
	ShapeCircle     = 1
	ShapeSquare     = 2
	ShapeTriangle   = 3
)

// ShapesClasses are the classes of the generated shapes data set, indexed by
// the values in its masks (ShapeBackground .. ShapeTriangle). The colours are
// for painting masks only: the shapes themselves get random colours, so that
// the class is told by geometry, not by colour.
var ShapesClasses = []Class{
	{"background", [3]uint8{0, 0, 0}},
	{"circle", [3]uint8{230, 25, 75}},
	{"square", [3]uint8{60, 180, 75}},
	{"triangle", [3]uint8{0, 130, 200}},
}

// ShapesOptions configures the generated shapes data set. Zero fields take
// the defaults given with each field.
type ShapesOptions struct {
	// N is the number of scenes GenerateShapes writes; default 100.
	N int
	// Width and Height are the scene size in pixels; default 64x64, each at
	// least 16.
	Width, Height int
	// Seed makes the data set: the same options give the same pixels. 0 is a
	// seed like any other.
	Seed uint64
	// MinShapes and MaxShapes bound the number of shapes per scene (uniform
	// in between); defaults 1 and 4 (MaxShapes defaults to
	// max(4, MinShapes)). Scenes always have at least one shape.
	MinShapes, MaxShapes int
	// MinSize and MaxSize bound a shape's size as a fraction of the scene's
	// shorter side (circle diameter, square side, triangle extent); defaults
	// 0.10 and 0.35, within (0, 0.5].
	MinSize, MaxSize float64
}

// resolve fills in the defaults and checks the options.
func (o ShapesOptions) resolve() (ShapesOptions, error) {
	if o.N == 0 {
		o.N = 100
	}
	if o.Width == 0 {
		o.Width = 64
	}
	if o.Height == 0 {
		o.Height = 64
	}
	if o.MinShapes == 0 {
		o.MinShapes = 1
	}
	if o.MaxShapes == 0 {
		o.MaxShapes = max(4, o.MinShapes)
	}
	if o.MinSize == 0 {
		o.MinSize = 0.10
	}
	if o.MaxSize == 0 {
		o.MaxSize = max(0.35, o.MinSize)
	}
	switch {
	case o.N < 0:
		return o, fmt.Errorf("shapes options: N is %d; give the number of scenes (> 0)", o.N)
	case o.Width < 16 || o.Height < 16:
		return o, fmt.Errorf("shapes options: size %dx%d is too small; use at least 16x16", o.Width, o.Height)
	case o.MinShapes < 0 || o.MaxShapes < o.MinShapes:
		return o, fmt.Errorf("shapes options: MinShapes %d, MaxShapes %d; need 0 <= MinShapes <= MaxShapes", o.MinShapes, o.MaxShapes)
	case !(o.MinSize > 0 && o.MinSize <= o.MaxSize && o.MaxSize <= 0.5):
		return o, fmt.Errorf("shapes options: MinSize %g, MaxSize %g; need 0 < MinSize <= MaxSize <= 0.5", o.MinSize, o.MaxSize)
	}
	return o, nil
}

// Validate reports whether the options (after defaults) are usable.
func (o ShapesOptions) Validate() error {
	_, err := o.resolve()
	return err
}

// RenderShapesScene draws scene i of the data set opt describes (opt.N is not
// used): rgb is Height*Width*3 bytes (row-major, RGB) and mask Height*Width
// class indices (ShapesClasses). The scene is a function of (opt, i) alone.
// It panics when opt fails Validate; GenerateShapes checks first.
//
// A scene is a textured background (a random two-colour gradient, a few soft
// colour blobs and faint stripes) with MinShapes..MaxShapes shapes drawn over
// it in turn, each with a random colour and soft shading, anti-aliased; a
// later shape covers an earlier one, in the mask too. Squares are upright or
// turned up to 20 degrees, triangles point any way. Per-pixel Gaussian noise
// goes over the whole picture. A mask pixel is a shape's class when the
// pixel's centre lies inside that shape.
func RenderShapesScene(opt ShapesOptions, i int) (rgb []uint8, mask []uint8) {
	opt, err := opt.resolve()
	if err != nil {
		panic("datasets.RenderShapesScene: " + err.Error())
	}
	rgb, mask, _ = renderScene(opt, i, true)
	return rgb, mask
}

// The random streams of a scene, kept apart so that the background and the
// noise are the same whether or not the shapes are drawn (tests use this).
const (
	streamBackground = iota + 1
	streamShapes
	streamNoise
)

// sceneRand returns the generator of one stream of scene i.
func sceneRand(seed uint64, i int, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix64(seed^stream*0x9e3779b97f4a7c15), splitmix64(uint64(i))))
}

// splitmix64 scrambles x so that neighbouring seeds give unrelated streams.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// renderScene draws scene i, with or without its shapes, and also returns the
// shapes (drawn or not).
func renderScene(opt ShapesOptions, i int, drawShapes bool) (rgb, mask []uint8, shapes []shape) {
	w, h := opt.Width, opt.Height
	cv := newCanvas(w, h)
	paintBackground(cv, sceneRand(opt.Seed, i, streamBackground))
	shapes = sceneShapes(cv, opt, sceneRand(opt.Seed, i, streamShapes))
	mask = make([]uint8, w*h)
	if drawShapes {
		for k := range shapes {
			cv.draw(&shapes[k], mask)
		}
	}
	nr := sceneRand(opt.Seed, i, streamNoise)
	cv.addNoise(nr, 3+7*nr.Float64())
	return cv.bytes(false), mask, shapes
}

// sceneShapes picks the shapes of one scene, fully inside the canvas.
func sceneShapes(cv *canvas, opt ShapesOptions, r *rand.Rand) []shape {
	n := opt.MinShapes + r.IntN(opt.MaxShapes-opt.MinShapes+1)
	side := float64(min(cv.w, cv.h))
	shapes := make([]shape, n)
	for k := range shapes {
		size := side * (opt.MinSize + (opt.MaxSize-opt.MinSize)*r.Float64())
		s := randomShape(r, uint8(1+r.IntN(3)), size)
		x0, y0, x1, y1 := s.extent()
		s.cx = -x0 + (float64(cv.w)-(x1-x0))*r.Float64()
		s.cy = -y0 + (float64(cv.h)-(y1-y0))*r.Float64()
		s.fill = pickFill(cv, &s, r)
		shapes[k] = s
	}
	return shapes
}

// vec is a point or direction in pixel coordinates (x right, y down).
type vec struct{ x, y float64 }

// shape is one shape of a scene: its class, geometry (centre, size, turn) and
// look. Geometry is relative to the centre so that moving it (in videos) is
// a change of cx, cy and angle alone.
type shape struct {
	class  uint8
	cx, cy float64
	size   float64    // circle diameter, square side; triangle circumradius is 0.6*size
	angle  float64    // turn in radians
	corner []float64  // triangle: vertex angles relative to angle
	fill   [3]float64 // RGB, 0..255
	shade  vec        // brightness change per pixel across the shape
}

// maxSquareTurn is how far a square may be turned from upright (20 degrees).
const maxSquareTurn = 20 * math.Pi / 180

// randomShape makes a shape of the class at the origin with random turn and
// shading; the caller places it and picks its colour.
func randomShape(r *rand.Rand, class uint8, size float64) shape {
	s := shape{class: class, size: size}
	switch class {
	case ShapeSquare:
		if r.IntN(2) == 1 {
			s.angle = (r.Float64()*2 - 1) * maxSquareTurn
		}
	case ShapeTriangle:
		s.angle = r.Float64() * 2 * math.Pi
		// Corners near 0, 120 and 240 degrees on the circumcircle: from
		// equilateral to noticeably lopsided, never a sliver.
		s.corner = []float64{0, 2*math.Pi/3 + (r.Float64()*2-1)*0.25, 4*math.Pi/3 + (r.Float64()*2-1)*0.25}
	}
	amp := 30 * r.Float64() // brightness change from one side to the other
	dir := r.Float64() * 2 * math.Pi
	s.shade = vec{math.Cos(dir) * amp / size, math.Sin(dir) * amp / size}
	return s
}

// vertices returns the polygon of a square or triangle in image coordinates.
func (s *shape) vertices() []vec {
	sin, cos := math.Sincos(s.angle)
	rot := func(x, y float64) vec { return vec{s.cx + x*cos - y*sin, s.cy + x*sin + y*cos} }
	switch s.class {
	case ShapeSquare:
		a := s.size / 2
		return []vec{rot(-a, -a), rot(a, -a), rot(a, a), rot(-a, a)}
	case ShapeTriangle:
		// A circumradius of 0.6*size makes an equilateral triangle about size
		// across, like the other shapes.
		R := 0.6 * s.size
		pts := make([]vec, len(s.corner))
		for k, c := range s.corner {
			sc, cc := math.Sincos(c)
			pts[k] = rot(R*cc, R*sc)
		}
		return pts
	}
	return nil
}

// extent returns the shape's bounding box, relative to its centre.
func (s *shape) extent() (x0, y0, x1, y1 float64) {
	if s.class == ShapeCircle {
		r := s.size / 2
		return -r, -r, r, r
	}
	x0, y0, x1, y1 = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range s.vertices() {
		x0, y0 = min(x0, p.x-s.cx), min(y0, p.y-s.cy)
		x1, y1 = max(x1, p.x-s.cx), max(y1, p.y-s.cy)
	}
	return x0, y0, x1, y1
}

// area is the shape's exact area in pixels.
func (s *shape) area() float64 {
	if s.class == ShapeCircle {
		return math.Pi * s.size * s.size / 4
	}
	return math.Abs(orientation(s.vertices())) / 2
}

// inside is a point-in-shape test prepared once per draw.
type inside func(x, y float64) bool

// insideTest returns the shape's point-in-shape test.
func (s *shape) insideTest() inside {
	if s.class == ShapeCircle {
		r2 := s.size * s.size / 4
		cx, cy := s.cx, s.cy
		return func(x, y float64) bool {
			dx, dy := x-cx, y-cy
			return dx*dx+dy*dy <= r2
		}
	}
	pts := s.vertices()
	// Edge half-planes of a convex polygon, oriented so that inside is >= 0
	// whichever way the vertices run.
	type edge struct{ a, b, c float64 }
	edges := make([]edge, len(pts))
	sign := 1.0
	if orientation(pts) < 0 {
		sign = -1
	}
	for k, p := range pts {
		q := pts[(k+1)%len(pts)]
		edges[k] = edge{sign * (p.y - q.y), sign * (q.x - p.x), sign * (p.x*q.y - q.x*p.y)}
	}
	return func(x, y float64) bool {
		for _, e := range edges {
			if e.a*x+e.b*y+e.c < 0 {
				return false
			}
		}
		return true
	}
}

// orientation is the signed doubled area of a polygon (> 0 when its vertices
// run counter-clockwise in x-right, y-up terms).
func orientation(pts []vec) float64 {
	a := 0.0
	for k, p := range pts {
		q := pts[(k+1)%len(pts)]
		a += p.x*q.y - q.x*p.y
	}
	return a
}

// canvas is an RGB float image (0..255 nominal) being drawn on.
type canvas struct {
	w, h int
	pix  []float64 // h*w*3, RGB
}

// newCanvas returns a black canvas.
func newCanvas(w, h int) *canvas {
	return &canvas{w: w, h: h, pix: make([]float64, w*h*3)}
}

// clone returns an independent copy of the canvas.
func (cv *canvas) clone() *canvas {
	return &canvas{w: cv.w, h: cv.h, pix: append([]float64(nil), cv.pix...)}
}

// paintBackground fills the canvas with a random texture: a gradient between
// two colours, soft colour blobs and faint stripes, all low-frequency so that
// shape edges stay the sharpest things in the picture.
func paintBackground(cv *canvas, r *rand.Rand) {
	w, h := float64(cv.w), float64(cv.h)
	side := math.Min(w, h)
	var c0, c1 [3]float64
	for ch := range 3 {
		c0[ch] = 25 + 205*r.Float64()
		c1[ch] = 25 + 205*r.Float64()
	}
	gdir := r.Float64() * 2 * math.Pi
	gx, gy := math.Cos(gdir), math.Sin(gdir)
	half := 0.5 * math.Hypot(w, h)

	type blob struct {
		x, y, inv2s2 float64
		off          [3]float64
	}
	blobs := make([]blob, 2+r.IntN(4))
	for k := range blobs {
		sigma := side * (0.12 + 0.28*r.Float64())
		b := blob{x: w * r.Float64(), y: h * r.Float64(), inv2s2: 1 / (2 * sigma * sigma)}
		for ch := range 3 {
			b.off[ch] = (r.Float64()*2 - 1) * 70
		}
		blobs[k] = b
	}

	type stripes struct{ kx, ky, phase, amp float64 }
	waves := make([]stripes, 2)
	for k := range waves {
		dir := r.Float64() * 2 * math.Pi
		periods := 1.5 + 6*r.Float64() // across the shorter side
		f := 2 * math.Pi * periods / side
		waves[k] = stripes{f * math.Cos(dir), f * math.Sin(dir), r.Float64() * 2 * math.Pi, 12 * r.Float64()}
	}

	for y := range cv.h {
		fy := float64(y) + 0.5
		for x := range cv.w {
			fx := float64(x) + 0.5
			t := 0.5 + 0.5*((fx-w/2)*gx+(fy-h/2)*gy)/half
			var v [3]float64
			for ch := range 3 {
				v[ch] = c0[ch] + (c1[ch]-c0[ch])*t
			}
			for _, b := range blobs {
				dx, dy := fx-b.x, fy-b.y
				g := math.Exp(-(dx*dx + dy*dy) * b.inv2s2)
				for ch := range 3 {
					v[ch] += b.off[ch] * g
				}
			}
			lum := 0.0
			for _, s := range waves {
				lum += s.amp * math.Sin(s.kx*fx+s.ky*fy+s.phase)
			}
			o := 3 * (y*cv.w + x)
			for ch := range 3 {
				cv.pix[o+ch] = v[ch] + lum
			}
		}
	}
}

// meanIn returns the canvas's mean colour over the box [x0,x1)x[y0,y1).
func (cv *canvas) meanIn(x0, y0, x1, y1 int) [3]float64 {
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, cv.w), min(y1, cv.h)
	var sum [3]float64
	n := 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			o := 3 * (y*cv.w + x)
			for ch := range 3 {
				sum[ch] += cv.pix[o+ch]
			}
			n++
		}
	}
	if n > 0 {
		for ch := range sum {
			sum[ch] /= float64(n)
		}
	}
	return sum
}

// pickFill chooses a random vivid colour for s that stands out from the
// background under it: it tries a few random hues and keeps the first far
// enough from the local background, else the farthest seen.
func pickFill(cv *canvas, s *shape, r *rand.Rand) [3]float64 {
	x0, y0, x1, y1 := s.extent()
	bg := cv.meanIn(int(s.cx+x0), int(s.cy+y0), int(math.Ceil(s.cx+x1)), int(math.Ceil(s.cy+y1)))
	var best [3]float64
	bestD := -1.0
	for range 12 {
		c := hsvToRGB(r.Float64(), 0.45+0.55*r.Float64(), 0.35+0.65*r.Float64())
		d := 0.0
		for ch := range 3 {
			d += (c[ch] - bg[ch]) * (c[ch] - bg[ch])
		}
		d = math.Sqrt(d)
		if d > bestD {
			best, bestD = c, d
		}
		if d >= 90 {
			break
		}
	}
	return best
}

// hsvToRGB converts hue, saturation and value in [0,1] to RGB in 0..255.
func hsvToRGB(h, s, v float64) [3]float64 {
	h = math.Mod(h, 1) * 6
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h, 2)-1))
	var r, g, b float64
	switch int(h) {
	case 0:
		r, g, b = c, x, 0
	case 1:
		r, g, b = x, c, 0
	case 2:
		r, g, b = 0, c, x
	case 3:
		r, g, b = 0, x, c
	case 4:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	m := v - c
	return [3]float64{255 * (r + m), 255 * (g + m), 255 * (b + m)}
}

// superSamples is the number of samples per pixel side for anti-aliasing.
const superSamples = 4

// draw paints s over the canvas, anti-aliased by supersampling, and sets the
// mask (when not nil) to s's class wherever a pixel's centre is inside s.
func (cv *canvas) draw(s *shape, mask []uint8) {
	in := s.insideTest()
	x0, y0, x1, y1 := s.extent()
	px0, py0 := max(0, int(math.Floor(s.cx+x0))), max(0, int(math.Floor(s.cy+y0)))
	px1, py1 := min(cv.w, int(math.Ceil(s.cx+x1))+1), min(cv.h, int(math.Ceil(s.cy+y1))+1)
	const step = 1.0 / superSamples
	for y := py0; y < py1; y++ {
		for x := px0; x < px1; x++ {
			fx, fy := float64(x), float64(y)
			hits := 0
			for sy := range superSamples {
				for sx := range superSamples {
					if in(fx+(float64(sx)+0.5)*step, fy+(float64(sy)+0.5)*step) {
						hits++
					}
				}
			}
			if hits == 0 {
				continue
			}
			if mask != nil && in(fx+0.5, fy+0.5) {
				mask[y*cv.w+x] = s.class
			}
			a := float64(hits) / (superSamples * superSamples)
			shade := (fx+0.5-s.cx)*s.shade.x + (fy+0.5-s.cy)*s.shade.y
			o := 3 * (y*cv.w + x)
			for ch := range 3 {
				cv.pix[o+ch] += a * (s.fill[ch] + shade - cv.pix[o+ch])
			}
		}
	}
}

// addNoise adds Gaussian noise of the given standard deviation (in 0..255
// units) to every channel of every pixel.
func (cv *canvas) addNoise(r *rand.Rand, sigma float64) {
	for k := range cv.pix {
		cv.pix[k] += sigma * r.NormFloat64()
	}
}

// bytes returns the canvas as 8-bit RGB (or BGR, for OpenCV), rounded and
// clamped.
func (cv *canvas) bytes(bgr bool) []uint8 {
	out := make([]uint8, len(cv.pix))
	for k := 0; k < len(cv.pix); k += 3 {
		for ch := range 3 {
			v := cv.pix[k+ch]
			dst := k + ch
			if bgr {
				dst = k + 2 - ch
			}
			out[dst] = uint8(math.Round(math.Max(0, math.Min(255, v))))
		}
	}
	return out
}

// GenerateShapes writes the shapes data set opt describes (see
// RenderShapesScene) to dir: scene i goes to dir/images/NNNN.png (RGB) and its
// mask to dir/masks/NNNN.png (8-bit grey, one class index of ShapesClasses
// per pixel), NNNN being i with at least four digits. Folders are created as
// needed; each file is written to a temporary name and renamed, replacing a
// file of the same name; other files already there are left alone.
func GenerateShapes(dir string, opt ShapesOptions) error {
	opt, err := opt.resolve()
	if err != nil {
		return fmt.Errorf("shapes %s: %w", dir, err)
	}
	for _, sub := range []string{"images", "masks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("shapes %s: %w", dir, err)
		}
	}
	digits := max(4, len(strconv.Itoa(opt.N-1)))
	for i := range opt.N {
		name := fmt.Sprintf("%0*d.png", digits, i)
		if err := writeShapesItem(dir, name, opt, i); err != nil {
			return fmt.Errorf("shapes %s: %w", dir, err)
		}
	}
	return nil
}

// writeShapesItem renders scene i and writes its image and mask.
func writeShapesItem(dir, name string, opt ShapesOptions, i int) error {
	rgb, mask := RenderShapesScene(opt, i)
	if err := WritePNG(filepath.Join(dir, "images", name), rgb, opt.Width, opt.Height, 3); err != nil {
		return err
	}
	return WritePNG(filepath.Join(dir, "masks", name), mask, opt.Width, opt.Height, 1)
}
