package datasets

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"
)

// videoCodecs are the FourCC codes tried, in order, for each container
// extension. OpenCV always has its own MJPG-in-AVI writer, so .avi works on
// every OpenCV build; the others need a backend (FFmpeg, GStreamer) that has
// the codec.
var videoCodecs = map[string][]string{
	".avi": {"MJPG"},
	".mkv": {"MJPG", "XVID"},
	".mp4": {"mp4v", "avc1"},
	".m4v": {"mp4v", "avc1"},
	".mov": {"mp4v", "avc1", "MJPG"},
}

// Defaults of GenerateShapesVideo for zero arguments.
const (
	DefaultVideoFrames = 60
	DefaultVideoWidth  = 320
	DefaultVideoHeight = 240
	DefaultVideoFPS    = 25
)

// GenerateShapesVideo writes a short video of shapes like those of the shapes
// data set moving over a textured background: 2 to 4 shapes (sizes 12-30% of
// the shorter side, random colours) move in straight lines, bounce off the
// edges, triangles turn slowly and squares rock within +-20 degrees; the
// background is fixed and each frame gets fresh faint noise. The frames are a
// function of the arguments alone.
//
// Zero arguments take defaults: frames 60, width 320, height 240, fps 25;
// width and height must be even and at least 16. The container follows the
// extension: .avi is Motion-JPEG (MJPG), which OpenCV can always write;
// .mkv tries MJPG then XVID, .mp4/.m4v mp4v then avc1, .mov mp4v, avc1 then
// MJPG. If no codec opens, the error says so; use .avi. The video is written
// to a temporary name (same folder, same extension) and renamed when
// complete; the parent folder is created.
func GenerateShapesVideo(path string, frames, width, height int, fps float64, seed uint64) error {
	if frames == 0 {
		frames = DefaultVideoFrames
	}
	if width == 0 {
		width = DefaultVideoWidth
	}
	if height == 0 {
		height = DefaultVideoHeight
	}
	if fps == 0 {
		fps = DefaultVideoFPS
	}
	switch {
	case frames < 0:
		return fmt.Errorf("video %s: %d frames; give a positive count", path, frames)
	case width < 16 || height < 16 || width%2 != 0 || height%2 != 0:
		return fmt.Errorf("video %s: size %dx%d; use even sizes of at least 16x16 (video codecs want even sizes)", path, width, height)
	case !(fps > 0) || math.IsInf(fps, 0):
		return fmt.Errorf("video %s: fps %g; give a positive frame rate", path, fps)
	}
	ext := strings.ToLower(filepath.Ext(path))
	codecs, ok := videoCodecs[ext]
	if !ok {
		return fmt.Errorf("video %s: extension %q is not a video container this writer knows; use .avi (MJPG), .mkv, .mp4, .m4v or .mov", path, ext)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("video %s: create folder: %w", path, err)
	}
	tmp, err := tempPathLike(path)
	if err != nil {
		return fmt.Errorf("video %s: %w", path, err)
	}
	if err := writeShapesVideo(tmp, codecs, frames, width, height, fps, seed); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("video %s: %w", path, err)
	}
	return commitTemp(tmp, path)
}

// openVideoWriter opens a writer for the first codec that works.
func openVideoWriter(path string, codecs []string, fps float64, w, h int) (*gocv.VideoWriter, error) {
	for _, codec := range codecs {
		vw, err := gocv.VideoWriterFile(path, codec, fps, w, h, true)
		if err != nil {
			return nil, err
		}
		if vw.IsOpened() {
			return vw, nil
		}
		vw.Close()
	}
	return nil, fmt.Errorf("OpenCV could not open a video writer with codec %s for %s; write .avi (MJPG) instead", strings.Join(codecs, " or "), filepath.Ext(path))
}

// mover is a shape with a velocity (pixels and radians per frame).
type mover struct {
	shape
	vx, vy, spin float64
}

// writeShapesVideo opens the writer, renders every frame into it and closes
// it, so the file is complete when it returns nil.
func writeShapesVideo(path string, codecs []string, frames, w, h int, fps float64, seed uint64) error {
	vw, err := openVideoWriter(path, codecs, fps, w, h)
	if err != nil {
		return err
	}
	werr := writeShapesFrames(vw, frames, w, h, seed)
	cerr := vw.Close() // finishes the container (AVI index) before the rename
	if werr != nil {
		return werr
	}
	return cerr
}

// writeShapesFrames renders the frames of the video and writes them.
func writeShapesFrames(vw *gocv.VideoWriter, frames, w, h int, seed uint64) error {
	bg := newCanvas(w, h)
	paintBackground(bg, sceneRand(seed, 0, streamBackground))
	movers := videoMovers(bg, sceneRand(seed, 0, streamShapes))
	noise := sceneRand(seed, 0, streamNoise)
	for f := range frames {
		cv := bg.clone()
		for k := range movers {
			cv.draw(&movers[k].shape, nil)
		}
		cv.addNoise(noise, 3)
		if err := writeFrame(vw, cv); err != nil {
			return fmt.Errorf("frame %d: %w", f, err)
		}
		for k := range movers {
			movers[k].step(w, h)
		}
	}
	return nil
}

// videoMovers picks the moving shapes of a video.
func videoMovers(bg *canvas, r *rand.Rand) []mover {
	side := float64(min(bg.w, bg.h))
	movers := make([]mover, 2+r.IntN(3))
	for k := range movers {
		s := randomShape(r, uint8(1+r.IntN(3)), side*(0.12+0.18*r.Float64()))
		x0, y0, x1, y1 := s.extent()
		s.cx = -x0 + (float64(bg.w)-(x1-x0))*r.Float64()
		s.cy = -y0 + (float64(bg.h)-(y1-y0))*r.Float64()
		s.fill = pickFill(bg, &s, r)
		speed := side * (0.008 + 0.017*r.Float64())
		dir := r.Float64() * 2 * math.Pi
		m := mover{shape: s, vx: speed * math.Cos(dir), vy: speed * math.Sin(dir)}
		if s.class != ShapeCircle {
			m.spin = (r.Float64()*2 - 1) * 0.03
		}
		movers[k] = m
	}
	return movers
}

// step moves the shape one frame on, bouncing it off the frame's edges.
func (m *mover) step(w, h int) {
	m.cx += m.vx
	m.cy += m.vy
	m.angle += m.spin
	// Squares swing within the data set's +-20 degrees rather than spin
	// into diamonds, which a model trained on the stills has not seen.
	if m.class == ShapeSquare && math.Abs(m.angle) > maxSquareTurn {
		m.angle = math.Copysign(maxSquareTurn, m.angle)
		m.spin = -m.spin
	}
	x0, y0, x1, y1 := m.extent()
	if m.cx+x0 < 0 {
		m.cx = -x0
		m.vx = math.Abs(m.vx)
	} else if m.cx+x1 > float64(w) {
		m.cx = float64(w) - x1
		m.vx = -math.Abs(m.vx)
	}
	if m.cy+y0 < 0 {
		m.cy = -y0
		m.vy = math.Abs(m.vy)
	} else if m.cy+y1 > float64(h) {
		m.cy = float64(h) - y1
		m.vy = -math.Abs(m.vy)
	}
}

// writeFrame hands one canvas to the video writer as a BGR Mat.
func writeFrame(vw *gocv.VideoWriter, cv *canvas) error {
	m, err := gocv.NewMatFromBytes(cv.h, cv.w, gocv.MatTypeCV8UC3, cv.bytes(true))
	if err != nil {
		return err
	}
	defer m.Close()
	return vw.Write(m)
}
