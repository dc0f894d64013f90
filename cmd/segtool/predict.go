package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/seg"
	"github.com/urfave/cli/v2"
)

func predictCommand() *cli.Command {
	return &cli.Command{
		Name:  "predict",
		Usage: "paint a segmenter's masks over images, folders of images, videos or a camera",
		Description: `--input is an image (the output is an image), a folder of images (the
output is a folder of overlays with the same file names), a video file
(anything OpenCV's FFmpeg reads; the output is a video of the same size,
frame rate and frame count), or a camera index such as 0 (Ctrl-C stops).

Frames are resized to the model's input size, predicted, and the class
map is scaled back to the frame's size; --tile instead predicts overlapping
tiles at full resolution and blends them. A video runs as a pipeline
(decode, infer in batches of --batch, paint, encode) with a progress bar.
A frame that cannot be decoded is reported and replaced by the previous
overlay, so the output keeps the input's timing. Ctrl-C finishes the frames
in flight and leaves a complete, playable file.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true, Usage: "segmenter model `FILE` (.safetensors)"},
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Required: true, Usage: "an image, a folder of images, a video `PATH`, or a camera index"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output `PATH`: an image, a folder, or a video (.mp4, .avi, .mkv, .mov)"},
			&cli.Float64Flag{Name: "alpha", Value: 0.5, Usage: "weight of the mask colours over the picture (0..1)"},
			&cli.BoolFlag{Name: "legend", Usage: "draw the class names and colours in the top-left corner"},
			&cli.BoolFlag{Name: "labels", Usage: "write class names on large regions"},
			&cli.StringFlag{Name: "masks", Usage: "also write class-index PNGs (NAME.png) and colour masks (NAME_color.png) into `DIR`"},
			&cli.StringFlag{Name: "codec", Usage: "video `FOURCC` (default by extension: mp4v for .mp4, MJPG for .avi)"},
			&cli.BoolFlag{Name: "tile", Usage: "predict overlapping tiles of the model's input size at full resolution instead of resizing"},
			&cli.IntFlag{Name: "overlap", Usage: "with --tile: pixels shared by neighbouring tiles (0: a quarter of the tile)"},
			&cli.IntFlag{Name: "batch", Value: 4, Usage: "frames (or tiles) per inference batch"},
			&cli.Float64Flag{Name: "smooth", Usage: "video: exponential smoothing of class probabilities across frames, 0 (off) to <1"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		},
		Action: guard(runPredict),
	}
}

// predictOptions are the flags, checked.
type predictOptions struct {
	alpha          float64
	legend, labels bool
	masks          string
	tile           bool
	overlap        int
	batch          int
	smooth         float64
}

// minLabelFrac is the share of the picture a region needs to get a label:
// 0.5%, a 34x25 patch of a 480x360 frame.
const minLabelFrac = 0.005

// maxLabels bounds the labels drawn on one frame.
const maxLabels = 12

// onFrameWritten, when set (tests), is called after each output frame.
var onFrameWritten func(i int)

func runPredict(c *cli.Context) error {
	opt := predictOptions{
		alpha: c.Float64("alpha"), legend: c.Bool("legend"), labels: c.Bool("labels"), masks: c.String("masks"),
		tile: c.Bool("tile"), overlap: c.Int("overlap"), batch: c.Int("batch"), smooth: c.Float64("smooth"),
	}
	switch {
	case !(opt.alpha >= 0 && opt.alpha <= 1):
		return fmt.Errorf("--alpha %g: give a weight from 0 (picture only) to 1 (mask only)", opt.alpha)
	case opt.batch < 1:
		return fmt.Errorf("--batch %d: give at least 1", opt.batch)
	case opt.overlap < 0:
		return fmt.Errorf("--overlap %d: give 0 (automatic) or more pixels", opt.overlap)
	case !(opt.smooth >= 0 && opt.smooth < 1):
		return fmt.Errorf("--smooth %g: give a factor from 0 (off) to below 1", opt.smooth)
	}
	input, out := c.String("input"), c.String("out")
	m, err := seg.Load(c.String("model"))
	if err != nil {
		return err
	}
	defer m.Close()

	src, sink, err := openPredictIO(input, out, c.String("codec"))
	if err != nil {
		return err
	}
	defer src.Close()
	if opt.smooth > 0 && !sink.repeats() {
		sink.abort()
		return fmt.Errorf("--smooth averages successive video frames; it means nothing for separate images (leave it out)")
	}
	var bar *nn.Progress
	if !c.Bool("quiet") {
		bar = nn.NewProgress(c.App.ErrWriter, src.total(), "predict", "frame")
	}
	p := &predictor{m: m, opt: opt, src: src, sink: sink, warn: c.App.ErrWriter, bar: bar}
	if p.smoother, err = seg.NewSmoother(opt.smooth); err != nil {
		return err
	}
	start := time.Now()
	stats, err := p.run(c.Context)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		sink.abort()
		return err
	}
	if n := src.shortfall(); n > 0 && !stats.interrupted {
		fmt.Fprintf(c.App.ErrWriter, "segtool: warning: %s lists %d frames but its stream ended %d short (a truncated file, or damage FFmpeg skipped without saying where); the output has the frames it had\n",
			input, src.total(), n)
	}
	if err := sink.finish(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(c.App.Writer, "%s: %d frames in %.1fs (%.2f frames/s)%s\n", sink.describe(), stats.written, secs, float64(stats.written)/max(secs, 1e-9), stats.note())
	if stats.interrupted && !src.camera() {
		return interruptedError{fmt.Sprintf("interrupted after %d frames of %s: the output so far is complete in %s", stats.written, input, sink.where())}
	}
	return nil
}

// frameSource hands out the input's frames in order.
type frameSource interface {
	// next returns the next frame and its name (for mask files); a
	// *datasets.FrameError or a decode error for one that is skipped;
	// io.EOF at the end.
	next() (datasets.Frame, string, error)
	// total is the expected frame count (-1: unknown).
	total() int
	// shortfall, at the end, is how many frames the input lists but its
	// stream did not have (see datasets.VideoReader.Shortfall).
	shortfall() int
	camera() bool
	Close() error
}

// frameSink takes the overlays in order.
type frameSink interface {
	write(f datasets.Frame, name string) error
	// repeats reports whether a skipped input frame is replaced in the
	// output (video) or left out (images).
	repeats() bool
	// blank is the frame written in place of a skipped one before any
	// good frame was seen.
	blank() datasets.Frame
	finish() error
	abort()
	describe() string
	where() string
}

// openPredictIO works out what the input and output are.
func openPredictIO(input, out, codec string) (frameSource, frameSink, error) {
	st, statErr := os.Stat(input)
	if statErr == nil && absPath(input) == absPath(out) {
		return nil, nil, fmt.Errorf("--out %s is the input; give another name so the input is not overwritten", out)
	}
	switch {
	case statErr == nil && st.IsDir():
		paths, err := datasets.ImageFiles(input)
		if err != nil {
			return nil, nil, err
		}
		if st, err := os.Stat(out); err == nil && !st.IsDir() {
			return nil, nil, fmt.Errorf("--out %s is a file; the overlays of a folder go into a folder", out)
		}
		return &imageSource{paths: paths}, &imageSink{dir: out}, nil
	case statErr == nil && datasets.IsImageFile(input):
		target := out
		if st, err := os.Stat(out); (err == nil && st.IsDir()) || strings.HasSuffix(out, string(filepath.Separator)) {
			target = filepath.Join(out, filepath.Base(input))
		}
		if err := checkImageOut(target); err != nil {
			return nil, nil, err
		}
		return &imageSource{paths: []string{input}, single: true}, &imageSink{file: target}, nil
	case statErr != nil && !datasets.IsCamera(input):
		if errors.Is(statErr, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("--input %s: does not exist; give an image, a folder of images, a video file or a camera index", input)
		}
		return nil, nil, fmt.Errorf("--input %s: %w", input, statErr)
	}
	if datasets.IsImageFile(out) {
		return nil, nil, fmt.Errorf("--out %s is an image name but %s is a video; give a video name (.mp4, .avi, ...)", out, input)
	}
	r, err := datasets.OpenVideo(input)
	if err != nil {
		return nil, nil, err
	}
	info := r.Info()
	fps := info.FPS
	if !(fps > 0 && fps <= 1000) || math.IsNaN(fps) {
		fps = 25
		if info.Camera {
			fps = 30
		}
	}
	w, err := datasets.CreateVideo(out, fps, info.Width, info.Height, codec)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return &videoSource{r: r}, &videoSink{w: w, fps: fps, info: info}, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return filepath.Clean(a)
	}
	return filepath.Clean(p)
}

// checkImageOut makes sure an image can be written under that name.
func checkImageOut(path string) error {
	if !datasets.IsImageFile(path) {
		return fmt.Errorf("--out %s: give an image name (.png, .jpg, ...) or a folder for the overlay of an image", path)
	}
	return nil
}

type imageSource struct {
	paths  []string
	i      int
	single bool
}

func (s *imageSource) next() (datasets.Frame, string, error) {
	if s.i >= len(s.paths) {
		return datasets.Frame{}, "", io.EOF
	}
	p := s.paths[s.i]
	s.i++
	f, err := datasets.ReadFrame(p)
	if err != nil && s.single {
		// One image that cannot be read is the whole job failing.
		return f, p, fatalError{err}
	}
	return f, filepath.Base(p), err
}
func (s *imageSource) total() int     { return len(s.paths) }
func (s *imageSource) camera() bool   { return false }
func (s *imageSource) shortfall() int { return 0 }
func (s *imageSource) Close() error   { return nil }

// fatalError is a source error that stops the run instead of skipping.
type fatalError struct{ error }

func (e fatalError) Unwrap() error { return e.error }

type imageSink struct {
	dir, file string
	n         int
}

func (s *imageSink) write(f datasets.Frame, name string) error {
	p := s.file
	if p == "" {
		p = filepath.Join(s.dir, name)
	}
	s.n++
	return datasets.WriteFrame(p, f)
}
func (s *imageSink) repeats() bool         { return false }
func (s *imageSink) blank() datasets.Frame { return datasets.Frame{} }
func (s *imageSink) finish() error {
	if s.n == 0 {
		return errors.New("no image could be read; nothing was written")
	}
	return nil
}
func (s *imageSink) abort() {}
func (s *imageSink) describe() string {
	if s.file != "" {
		return s.file
	}
	return s.dir
}
func (s *imageSink) where() string { return s.describe() }

type videoSource struct{ r *datasets.VideoReader }

func (s *videoSource) next() (datasets.Frame, string, error) {
	f, err := s.r.Next()
	return f, "", err
}
func (s *videoSource) total() int {
	if n := s.r.Info().Frames; n > 0 {
		return n
	}
	return -1
}
func (s *videoSource) camera() bool   { return s.r.Info().Camera }
func (s *videoSource) shortfall() int { return s.r.Shortfall() }
func (s *videoSource) Close() error   { return s.r.Close() }

type videoSink struct {
	w    *datasets.VideoWriter
	fps  float64
	info datasets.VideoInfo
}

func (s *videoSink) write(f datasets.Frame, _ string) error { return s.w.Write(f) }
func (s *videoSink) repeats() bool                          { return true }
func (s *videoSink) blank() datasets.Frame                  { return datasets.NewFrame(s.info.Width, s.info.Height) }
func (s *videoSink) finish() error                          { return s.w.Close() }
func (s *videoSink) abort()                                 { s.w.Abort() }
func (s *videoSink) describe() string {
	return fmt.Sprintf("%s (%dx%d, %.4g fps, %s)", s.w.Path(), s.info.Width, s.info.Height, s.fps, s.w.Codec())
}
func (s *videoSink) where() string { return s.w.Path() }

// predictor runs the pipeline over one source.
type predictor struct {
	m        *seg.Model
	opt      predictOptions
	src      frameSource
	sink     frameSink
	smoother *seg.Smoother
	warn     io.Writer
	bar      *nn.Progress
}

// item is one frame on its way through the pipeline.
type item struct {
	idx    int
	name   string
	frame  datasets.Frame
	bad    error     // the frame was skipped
	x      []float32 // model input
	xh, xw int       // its size
	scores []float32 // logits (or smoothed probabilities) of xh x xw
	out    datasets.Frame
}

type predictStats struct {
	written, skipped int
	interrupted      bool
}

func (s predictStats) note() string {
	if s.skipped == 0 {
		return ""
	}
	return fmt.Sprintf("; %d damaged frames skipped", s.skipped)
}

// pipeline carries the first error of any stage and stops the others.
type pipeline struct {
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func (pl *pipeline) fail(err error) {
	pl.once.Do(func() {
		pl.err = err
		pl.cancel()
	})
}

// send hands it on unless the pipeline has failed.
func send(pl *pipeline, ch chan<- *item, it *item) bool {
	select {
	case ch <- it:
		return true
	case <-pl.ctx.Done():
		return false
	}
}

// run decodes, infers, paints and writes in four goroutines joined by
// bounded channels, so decoding and encoding overlap inference. Cancelling
// ctx stops the reading; the frames already read are finished and written.
func (p *predictor) run(ctx context.Context) (predictStats, error) {
	pctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pl := &pipeline{ctx: pctx, cancel: cancel}
	decoded := make(chan *item, 2*p.opt.batch)
	inferred := make(chan *item, p.opt.batch)
	painted := make(chan *item, 4)
	var stats predictStats
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(decoded)
		stats.interrupted = p.read(ctx, pl, decoded)
	})
	wg.Go(func() {
		defer close(inferred)
		p.infer(pl, decoded, inferred)
	})
	wg.Go(func() {
		defer close(painted)
		p.paint(pl, inferred, painted)
	})
	wg.Go(func() {
		stats.written, stats.skipped = p.write(pl, painted)
	})
	wg.Wait()
	return stats, pl.err
}

// read is the decode stage; it reports whether ctx stopped it.
func (p *predictor) read(ctx context.Context, pl *pipeline, out chan<- *item) bool {
	cfg := p.m.Config
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return true
		}
		if pl.ctx.Err() != nil {
			return false
		}
		f, name, err := p.src.next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if name == "" {
			name = fmt.Sprintf("%06d", i)
		}
		it := &item{idx: i, name: name, frame: f}
		var fe fatalError
		switch {
		case errors.As(err, &fe):
			pl.fail(fe.error)
			return false
		case err != nil:
			it.bad = err
		case p.opt.tile:
			it.xw, it.xh = f.Width, f.Height
			it.x, err = datasets.FrameToCHW(f, 0, 0, cfg.InChannels)
		default:
			it.xw, it.xh = cfg.Width, cfg.Height
			it.x, err = datasets.FrameToCHW(f, cfg.Width, cfg.Height, cfg.InChannels)
		}
		if err != nil && it.bad == nil {
			pl.fail(err)
			return false
		}
		if !send(pl, out, it) {
			return false
		}
	}
}

// infer is the inference stage: batches of frames at the model's size, or
// each frame's tiles.
func (p *predictor) infer(pl *pipeline, in <-chan *item, out chan<- *item) {
	var batch []*item
	good := 0
	flush := func() bool {
		if err := p.inferBatch(batch, good); err != nil {
			pl.fail(err)
			return false
		}
		for _, it := range batch {
			if !send(pl, out, it) {
				return false
			}
		}
		batch, good = batch[:0], 0
		return true
	}
	for it := range in {
		batch = append(batch, it)
		if it.bad == nil {
			good++
		}
		if good >= p.opt.batch || (p.opt.tile && good > 0) || p.src.camera() {
			if !flush() {
				return
			}
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

func (p *predictor) inferBatch(batch []*item, good int) error {
	if good == 0 {
		return nil
	}
	cfg := p.m.Config
	k := cfg.Classes
	if p.opt.tile {
		for _, it := range batch {
			if it.bad != nil {
				continue
			}
			l, err := p.m.LogitsTiled(it.x, it.xh, it.xw, seg.TileOptions{Overlap: p.opt.overlap, Batch: p.opt.batch})
			if err != nil {
				return err
			}
			it.scores, it.x = l, nil
		}
		return nil
	}
	size := cfg.InChannels * cfg.Height * cfg.Width
	x := make([]float32, 0, good*size)
	for _, it := range batch {
		if it.bad == nil {
			x = append(x, it.x...)
		}
	}
	l, err := p.m.Logits(x, good, cfg.Height, cfg.Width)
	if err != nil {
		return err
	}
	plane := k * cfg.Height * cfg.Width
	j := 0
	for _, it := range batch {
		if it.bad == nil {
			it.scores, it.x = l[j*plane:(j+1)*plane], nil
			j++
		}
	}
	return nil
}

// paint is the overlay stage: smoothing (in frame order), class maps at the
// frame's size, colours, legend, labels and the optional mask files.
func (p *predictor) paint(pl *pipeline, in <-chan *item, out chan<- *item) {
	for it := range in {
		if it.bad == nil {
			if err := p.paintOne(it); err != nil {
				pl.fail(err)
				return
			}
		}
		if !send(pl, out, it) {
			return
		}
	}
}

func (p *predictor) paintOne(it *item) error {
	cfg := p.m.Config
	k := cfg.Classes
	f := it.frame
	scores := p.smoother.Step(it.scores, k, it.xh*it.xw)
	var low []int32
	if p.opt.labels {
		low = seg.Argmax(scores, k, it.xh*it.xw)
	}
	full, err := datasets.ResizePlanes(scores, k, it.xh, it.xw, f.Height, f.Width)
	if err != nil {
		return err
	}
	labels := seg.Argmax(full, k, f.Height*f.Width)
	colors := make([][3]uint8, k)
	names := make([]string, k)
	for i, cl := range cfg.ClassTable {
		colors[i], names[i] = cl.Color, cl.Name
	}
	o, err := datasets.Overlay(f, labels, colors, cfg.Ignore, p.opt.alpha)
	if err != nil {
		return err
	}
	if p.opt.labels {
		var avoid image.Rectangle
		if p.opt.legend {
			avoid = datasets.LegendRect(f.Width, f.Height, names, colors)
		}
		if err := datasets.DrawLabels(o, low, it.xw, it.xh, names, cfg.Ignore, minLabelFrac, maxLabels, avoid); err != nil {
			return err
		}
	}
	if p.opt.legend {
		if err := datasets.DrawLegend(o, names, colors); err != nil {
			return err
		}
	}
	if p.opt.masks != "" {
		stem := strings.TrimSuffix(it.name, filepath.Ext(it.name))
		if err := datasets.WriteLabelMap(filepath.Join(p.opt.masks, stem+".png"), labels, f.Width, f.Height); err != nil {
			return err
		}
		cm, err := datasets.ColorMask(labels, f.Width, f.Height, colors, cfg.Ignore)
		if err != nil {
			return err
		}
		if err := datasets.WriteFrame(filepath.Join(p.opt.masks, stem+"_color.png"), cm); err != nil {
			return err
		}
	}
	it.out, it.scores, it.frame = o, nil, datasets.Frame{}
	return nil
}

// write is the encode stage. A skipped frame of a video is replaced by the
// last good overlay (black before the first), so frame count and timing
// are kept; each run of skipped frames gets one warning line.
func (p *predictor) write(pl *pipeline, in <-chan *item) (written, skipped int) {
	var last datasets.Frame
	runStart, runEnd := -1, -1
	var runErr error
	warnRun := func() {
		if runStart < 0 {
			return
		}
		what := fmt.Sprintf("frame %d", runStart)
		if runEnd > runStart {
			what = fmt.Sprintf("frames %d-%d", runStart, runEnd)
		}
		action := "wrote the previous overlay in its place"
		if runEnd > runStart {
			action = "wrote the previous overlay in their place"
		}
		var fe *datasets.FrameError
		if errors.As(runErr, &fe) {
			fmt.Fprintf(p.warn, "segtool: warning: %s of %s could not be decoded (damaged data); %s\n", what, fe.Source, action)
		} else {
			fmt.Fprintf(p.warn, "segtool: warning: %s: %v; %s\n", what, runErr, action)
		}
		runStart = -1
	}
	defer warnRun()
	for it := range in {
		if pl.ctx.Err() != nil {
			continue // drain; the error is already recorded
		}
		f := it.out
		if it.bad != nil {
			skipped++
			if !p.sink.repeats() {
				fmt.Fprintf(p.warn, "segtool: warning: %v; skipped it\n", it.bad)
				continue
			}
			if runStart < 0 {
				runStart, runErr = it.idx, it.bad
			}
			runEnd = it.idx
			if last.Empty() {
				last = p.sink.blank()
			}
			f = last
		} else {
			warnRun()
			last = f
		}
		if err := p.sink.write(f, it.name); err != nil {
			pl.fail(err)
			continue
		}
		written++
		if p.bar != nil {
			p.bar.Add(1)
		}
		if onFrameWritten != nil {
			onFrameWritten(written)
		}
	}
	return written, skipped
}
