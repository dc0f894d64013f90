package seg

import (
	"fmt"
	"math"
)

// TileOptions says how LogitsTiled cuts an image into windows.
type TileOptions struct {
	// Height and Width of a tile; 0 takes the model's input size (Config
	// Height and Width). A tile larger than the image shrinks to it.
	Height, Width int
	// Overlap is how many pixels neighbouring tiles share along each axis;
	// 0 takes a quarter of the tile's side, rounded down to a multiple of
	// 2^Depth. It must be smaller than the tile.
	Overlap int
	// Batch is how many tiles run through the network at once (default 4).
	Batch int
}

// resolve fills in the defaults for an image of h x w.
func (o TileOptions) resolve(cfg Config, h, w int) (TileOptions, error) {
	if o.Height < 0 || o.Width < 0 || o.Overlap < 0 || o.Batch < 0 {
		return o, fmt.Errorf("tiles: negative option in %+v", o)
	}
	if o.Height == 0 {
		o.Height = cfg.Height
	}
	if o.Width == 0 {
		o.Width = cfg.Width
	}
	if o.Overlap == 0 {
		f := 1 << cfg.Depth
		o.Overlap = max(min(o.Height, o.Width)/4/f*f, min(f, min(o.Height, o.Width)/4))
	}
	if o.Overlap >= o.Height || o.Overlap >= o.Width {
		return o, fmt.Errorf("tiles: overlap %d must be smaller than the tile %dx%d (WxH)", o.Overlap, o.Width, o.Height)
	}
	o.Height, o.Width = min(o.Height, h), min(o.Width, w)
	if o.Batch == 0 {
		o.Batch = 4
	}
	return o, nil
}

// tileStarts are the offsets of tiles of size t along an axis of length n:
// a stride of t-overlap from 0, the last tile flush with the far edge.
func tileStarts(n, t, overlap int) []int {
	if t >= n {
		return []int{0}
	}
	stride := max(1, t-overlap)
	var s []int
	for p := 0; p+t < n; p += stride {
		s = append(s, p)
	}
	return append(s, n-t)
}

// blendRamp is the weight of each position along a tile of size t: a
// raised cosine rising over the first and last ramp pixels and 1 between,
// so a pixel near a tile's edge (where the network saw zero padding instead
// of the picture) counts less than the neighbouring tile's view of it. Every
// weight is > 0, so a pixel that only one tile covers (at the image's edge)
// still gets that tile's prediction.
func blendRamp(t, ramp int) []float32 {
	out := make([]float32, t)
	for i := range out {
		d := min(i, t-1-i) + 1 // 1 at the edge
		if d > ramp {
			out[i] = 1
			continue
		}
		out[i] = float32(0.5 - 0.5*math.Cos(math.Pi*float64(d)/float64(ramp+1)))
	}
	return out
}

// LogitsTiled predicts one image x (CHW, values in [0,1]) of any size at
// full resolution by running overlapping tiles through Logits and blending
// their logits: each output pixel is the weighted mean of the logits of the
// tiles that cover it, with weights that fall smoothly towards each tile's
// edges (see blendRamp). It returns logits [Classes, h, w]. When one tile
// covers the whole image the result is exactly Logits of the image.
func (m *Model) LogitsTiled(x []float32, h, w int, opt TileOptions) ([]float32, error) {
	c, k := m.Config.InChannels, m.Config.Classes
	if len(x) != c*h*w {
		return nil, fmt.Errorf("tiles: %d values for an image of %dx%dx%d", len(x), c, h, w)
	}
	opt, err := opt.resolve(m.Config, h, w)
	if err != nil {
		return nil, err
	}
	th, tw := opt.Height, opt.Width
	ys, xs := tileStarts(h, th, opt.Overlap), tileStarts(w, tw, opt.Overlap)
	if len(ys) == 1 && len(xs) == 1 {
		return m.Logits(x, 1, h, w)
	}
	type tile struct{ y, x int }
	var tiles []tile
	for _, y := range ys {
		for _, xx := range xs {
			tiles = append(tiles, tile{y, xx})
		}
	}
	wy, wx := blendRamp(th, opt.Overlap), blendRamp(tw, opt.Overlap)
	acc := make([]float32, k*h*w)
	wsum := make([]float32, h*w)
	in := make([]float32, opt.Batch*c*th*tw)
	for start := 0; start < len(tiles); start += opt.Batch {
		batch := tiles[start:min(start+opt.Batch, len(tiles))]
		n := len(batch)
		for j, t := range batch {
			dst := in[j*c*th*tw:]
			for ch := range c {
				for r := range th {
					src := x[(ch*h+t.y+r)*w+t.x:]
					copy(dst[(ch*th+r)*tw:(ch*th+r+1)*tw], src[:tw])
				}
			}
		}
		out, err := m.Logits(in[:n*c*th*tw], n, th, tw)
		if err != nil {
			return nil, fmt.Errorf("tiles: %w", err)
		}
		for j, t := range batch {
			lo := out[j*k*th*tw:]
			for r := range th {
				for q := range tw {
					wt := wy[r] * wx[q]
					p := (t.y+r)*w + t.x + q
					wsum[p] += wt
					for cl := range k {
						acc[cl*h*w+p] += wt * lo[(cl*th+r)*tw+q]
					}
				}
			}
		}
	}
	for p, s := range wsum {
		inv := 1 / s
		for cl := range k {
			acc[cl*h*w+p] *= inv
		}
	}
	return acc, nil
}

// Softmax turns logits [k, hw] into class probabilities in place and returns
// them; it subtracts each pixel's largest logit first, so large logits do not
// overflow.
func Softmax(logits []float32, k, hw int) []float32 {
	for j := 0; j < hw; j++ {
		mx := logits[j]
		for c := 1; c < k; c++ {
			mx = max(mx, logits[c*hw+j])
		}
		var sum float32
		for c := range k {
			e := float32(math.Exp(float64(logits[c*hw+j] - mx)))
			logits[c*hw+j] = e
			sum += e
		}
		inv := 1 / sum
		for c := range k {
			logits[c*hw+j] *= inv
		}
	}
	return logits
}

// Smoother smooths class probabilities over a sequence of frames with an
// exponential moving average: p_t = A*p_(t-1) + (1-A)*softmax(logits_t). A
// is in [0,1); A = 0 is off: Step then returns the logits untouched, so the
// class maps are exactly those of unsmoothed prediction. Larger A steadies
// flickering masks and lags behind motion (A = 0.5 halves a change's weight
// every frame). The zero value is off.
type Smoother struct {
	A    float32
	prev []float32
	k    int
}

// NewSmoother makes a smoother with factor a; it fails unless 0 <= a < 1.
func NewSmoother(a float64) (*Smoother, error) {
	if !(a >= 0 && a < 1) {
		return nil, fmt.Errorf("smoothing factor %g must be in [0,1) (0: off)", a)
	}
	return &Smoother{A: float32(a)}, nil
}

// Step takes one frame's logits [k, hw] and returns the scores to take the
// argmax of: the smoothed probabilities (the logits' buffer is reused for
// them), or the logits themselves when A is 0. A frame of another size or
// class count restarts the average.
func (s *Smoother) Step(logits []float32, k, hw int) []float32 {
	if s == nil || s.A == 0 {
		return logits
	}
	p := Softmax(logits, k, hw)
	if len(s.prev) != len(p) || s.k != k {
		s.prev = append(s.prev[:0], p...)
		s.k = k
		return p
	}
	a, b := s.A, 1-s.A
	for i, v := range p {
		nv := a*s.prev[i] + b*v
		s.prev[i] = nv
		p[i] = nv
	}
	return p
}

// Reset forgets the frames seen so far.
func (s *Smoother) Reset() {
	if s != nil {
		s.prev = s.prev[:0]
	}
}
