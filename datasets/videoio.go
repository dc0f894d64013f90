package datasets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gocv.io/x/gocv"
)

// Frame is one 8-bit colour picture outside OpenCV: Height rows of Width
// pixels, three bytes each in OpenCV's B, G, R order, row-major and
// contiguous. Frames are how pictures cross the package line for video and
// overlay work (a gocv.Mat never does); treat Pix as read-only unless you
// made the frame.
type Frame struct {
	Width, Height int
	Pix           []uint8
}

// NewFrame returns a black frame of w x h.
func NewFrame(w, h int) Frame {
	return Frame{Width: w, Height: h, Pix: make([]uint8, w*h*3)}
}

// Empty reports whether the frame has no pixels.
func (f Frame) Empty() bool { return f.Width <= 0 || f.Height <= 0 || len(f.Pix) == 0 }

// Clone returns a deep copy.
func (f Frame) Clone() Frame {
	return Frame{Width: f.Width, Height: f.Height, Pix: slices.Clone(f.Pix)}
}

// check reports a frame whose pixel slice does not match its size.
func (f Frame) check(what string) error {
	if f.Width <= 0 || f.Height <= 0 || len(f.Pix) != f.Width*f.Height*3 {
		return fmt.Errorf("%s: frame of %dx%d has %d bytes, want %d (3 per pixel)", what, f.Width, f.Height, len(f.Pix), max(0, f.Width*f.Height*3))
	}
	return nil
}

// mat wraps the frame's pixels in a Mat without copying: drawing on the Mat
// draws on the frame. The caller closes it; the frame's slice stays alive
// as long as the Mat (gocv keeps a reference).
func (f Frame) mat() (gocv.Mat, error) {
	return gocv.NewMatFromBytes(f.Height, f.Width, gocv.MatTypeCV8UC3, f.Pix)
}

// frameFromMat copies an 8-bit Mat of 1, 3 or 4 channels into a BGR frame.
func frameFromMat(m gocv.Mat) (Frame, error) {
	if m.Empty() {
		return Frame{}, errors.New("empty picture")
	}
	src := m
	switch m.Type() {
	case gocv.MatTypeCV8UC3:
	case gocv.MatTypeCV8UC1, gocv.MatTypeCV8UC4:
		conv := gocv.NewMat()
		defer conv.Close()
		code := gocv.ColorGrayToBGR
		if m.Type() == gocv.MatTypeCV8UC4 {
			code = gocv.ColorBGRAToBGR
		}
		gocv.CvtColor(m, &conv, code)
		src = conv
	default:
		return Frame{}, fmt.Errorf("pixel type %v; only 8-bit grey, BGR and BGRA pictures are handled", m.Type())
	}
	if !src.IsContinuous() {
		cont := src.Clone()
		defer cont.Close()
		src = cont
	}
	pix, err := src.DataPtrUint8()
	if err != nil {
		return Frame{}, err
	}
	return Frame{Width: src.Cols(), Height: src.Rows(), Pix: slices.Clone(pix)}, nil
}

// ReadFrame decodes the image file at path into a frame at its own size.
func ReadFrame(path string) (Frame, error) {
	m, err := readMat(path, 3)
	if err != nil {
		return Frame{}, err
	}
	defer m.Close()
	f, err := frameFromMat(m)
	if err != nil {
		return Frame{}, fmt.Errorf("decode %s: %w", path, err)
	}
	return f, nil
}

// WriteFrame encodes a frame into the image format of path's extension
// (.png, .jpg, .bmp, .tif, .webp, ...; see WriteGrid) and writes it
// atomically, creating the parent folder.
func WriteFrame(path string, f Frame) error {
	ext := strings.ToLower(filepath.Ext(path))
	if !slices.Contains(gridExtensions, ext) || ext == ".pgm" {
		return fmt.Errorf("write %s: %q is not a colour image format this writer knows; use .png or .jpg", path, ext)
	}
	if err := f.check("write " + path); err != nil {
		return err
	}
	return encodeAtomic(path, ext, f.Pix, f.Width, f.Height, 3)
}

// ImageFiles lists the images directly in dir the way NewImageFolder does
// (extensions in ImageExtensions, sorted by name, hidden files skipped),
// without decoding them.
func ImageFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image folder %s: does not exist; check the path", dir)
		}
		return nil, fmt.Errorf("image folder %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("image folder %s: is a file, not a directory", dir)
	}
	return listImages(dir)
}

// IsImageFile reports whether path's extension is one of ImageExtensions.
func IsImageFile(path string) bool {
	return slices.Contains(ImageExtensions, strings.ToLower(filepath.Ext(path)))
}

// quietFFmpeg keeps FFmpeg's own messages ("[mjpeg @ 0x...] No JPEG data
// found in image") off standard error: the reader reports damaged frames
// itself, one line each with the frame number. OpenCV reads the variable
// when it first loads FFmpeg, so this runs before the first capture or
// writer; a value the user set is kept (OPENCV_FFMPEG_LOGLEVEL=16 shows
// FFmpeg's errors).
var quietFFmpeg = sync.OnceFunc(func() {
	if _, ok := os.LookupEnv("OPENCV_FFMPEG_LOGLEVEL"); !ok {
		os.Setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")
	}
})

// VideoInfo describes a video source.
type VideoInfo struct {
	// Width and Height of every frame.
	Width, Height int
	// FPS is the frame rate the source declares (0 when it declares none).
	FPS float64
	// Frames is the frame count in the file's header: 0 when unknown
	// (cameras, some streams). Containers with dropped-frame slots (AVI)
	// may list more than can be read; treat it as an estimate.
	Frames int
	// Codec is the source's FourCC ("MJPG", "XVID", ...), when it has one.
	Codec string
	// Camera is true for a capture device.
	Camera bool
}

// maxDamagedRun is how many reads in a row may fail before a video is taken
// to have ended. OpenCV's FFmpeg reader fails one read per packet it cannot
// decode and carries on with the next, but also fails every read at the
// end; a failed read at the end costs microseconds, so a generous bound
// only delays the end of a file by a fraction of a second.
const maxDamagedRun = 1000

// cameraRetries is the same bound for a camera, where a failed read can
// block for a frame interval.
const cameraRetries = 10

// FrameError is a frame of a video (or an image of a folder) that could not
// be decoded. VideoReader.Next returns it in the frame's place and carries
// on with the next frame.
type FrameError struct {
	// Source is the video or image file.
	Source string
	// Index is the frame number, from 0.
	Index int
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("%s: frame %d could not be decoded (damaged data)", e.Source, e.Index)
}

// VideoReader reads the frames of a video file or a camera, one at a time,
// in order. It is not safe for concurrent use.
type VideoReader struct {
	name  string
	vc    *gocv.VideoCapture
	mat   gocv.Mat
	info  VideoInfo
	next  int    // index of the frame Next returns next
	bad   int    // damaged frames found, to hand out before stash
	stash *Frame // the good frame read after a damaged stretch
	done  bool
	// lastSlot is the frame slot of the last good frame by its timestamp
	// (-1: none yet), for Shortfall.
	lastSlot int
}

// cameraIndex reports whether spec is a camera index ("0", "1", ...).
func cameraIndex(spec string) (int, bool) {
	if spec == "" || len(spec) > 3 {
		return 0, false
	}
	n, err := strconv.Atoi(spec)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// IsCamera reports whether spec names a camera (a small non-negative
// integer) rather than a file; a file of that name wins.
func IsCamera(spec string) bool {
	if _, err := os.Stat(spec); err == nil {
		return false
	}
	_, ok := cameraIndex(spec)
	return ok
}

// OpenVideo opens a video file (anything OpenCV's FFmpeg backend reads:
// avi, mp4, mkv, mov, ...) or, when spec is a small integer with no file of
// that name, the camera of that index. Errors name the file and say what to
// check. Close the reader when done.
func OpenVideo(spec string) (*VideoReader, error) {
	quietFFmpeg()
	if idx, ok := cameraIndex(spec); ok {
		if _, err := os.Stat(spec); err != nil {
			return openCamera(idx)
		}
	}
	st, err := os.Stat(spec)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("video %s: does not exist; check the path (or give a camera index such as 0)", spec)
	case err != nil:
		return nil, fmt.Errorf("video %s: %w", spec, err)
	case st.IsDir():
		return nil, fmt.Errorf("video %s: is a folder, not a video file", spec)
	}
	if f, err := os.Open(spec); err != nil {
		return nil, fmt.Errorf("video %s: %w", spec, err)
	} else {
		f.Close()
	}
	// FFmpeg alone: with any backend, OpenCV would also try GStreamer and
	// its image-sequence reader on a bad file and print their warnings.
	vc, err := gocv.VideoCaptureFileWithAPI(spec, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return nil, fmt.Errorf("video %s: OpenCV cannot open it as a video (not a video, damaged, or a codec its FFmpeg lacks); check the file plays, or convert it to .mp4 or .avi", spec)
	}
	r := &VideoReader{name: spec, vc: vc, mat: gocv.NewMat(), lastSlot: -1}
	r.info = VideoInfo{
		Width:  int(vc.Get(gocv.VideoCaptureFrameWidth)),
		Height: int(vc.Get(gocv.VideoCaptureFrameHeight)),
		FPS:    vc.Get(gocv.VideoCaptureFPS),
		Frames: max(0, int(vc.Get(gocv.VideoCaptureFrameCount))),
		Codec:  strings.TrimRight(vc.CodecString(), "\x00 "),
	}
	if r.info.Width <= 0 || r.info.Height <= 0 {
		r.Close()
		return nil, fmt.Errorf("video %s: OpenCV opened it but reports no frame size; it has no readable video stream", spec)
	}
	return r, nil
}

// openCamera opens capture device idx through Video4Linux on Linux.
func openCamera(idx int) (*VideoReader, error) {
	name := fmt.Sprintf("camera %d", idx)
	api := gocv.VideoCaptureAny
	if runtime.GOOS == "linux" {
		// Checked here: OpenCV would print a warning per backend it tries.
		dev := fmt.Sprintf("/dev/video%d", idx)
		if _, err := os.Stat(dev); err != nil {
			return nil, fmt.Errorf("%s: no such device (%s is missing); plug a camera in or give a video file", name, dev)
		}
		api = gocv.VideoCaptureV4L2
	}
	vc, err := gocv.VideoCaptureDeviceWithAPI(idx, api)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return nil, fmt.Errorf("%s: OpenCV cannot open it (in use by another program, or no permission?)", name)
	}
	r := &VideoReader{name: name, vc: vc, mat: gocv.NewMat()}
	r.info = VideoInfo{
		Width:  int(vc.Get(gocv.VideoCaptureFrameWidth)),
		Height: int(vc.Get(gocv.VideoCaptureFrameHeight)),
		FPS:    vc.Get(gocv.VideoCaptureFPS),
		Camera: true,
	}
	// Some drivers report no size until the first frame: read it now so
	// the writer can be opened with the right size.
	f, err := r.read(cameraRetries)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: opened but gives no frames", name)
	}
	r.info.Width, r.info.Height = f.Width, f.Height
	r.stash = &f
	return r, nil
}

// Name is the file name or "camera N".
func (r *VideoReader) Name() string { return r.name }

// Info describes the source.
func (r *VideoReader) Info() VideoInfo { return r.info }

// read reads the next good frame, counting failed reads into r.bad; after
// limit failures in a row it reports io.EOF.
func (r *VideoReader) read(limit int) (Frame, error) {
	fails := 0
	for {
		if r.vc.Read(&r.mat) && !r.mat.Empty() {
			f, err := frameFromMat(r.mat)
			if err == nil && (f.Width != r.info.Width || f.Height != r.info.Height) && r.info.Width > 0 {
				f, err = resizeFrame(f, r.info.Width, r.info.Height)
			}
			if err == nil {
				r.bad += fails
				if !r.info.Camera && r.info.FPS > 0 {
					// Frames flushed from the decoder at the end (after
					// B-frames) come without a timestamp (0): they take the
					// next slot.
					slot := r.lastSlot + 1
					if ms := r.vc.Get(gocv.VideoCapturePosMsec); ms > 0 || r.lastSlot < 0 {
						slot = int(math.Round(ms * r.info.FPS / 1000))
					}
					r.lastSlot = max(r.lastSlot, slot)
				}
				return f, nil
			}
		}
		fails++
		if fails >= limit {
			// Failures with no good frame after them are the end of the
			// input, not damage.
			return Frame{}, io.EOF
		}
	}
}

// Next returns the next frame in order: a good frame and nil; nil frame and
// a *FrameError for a frame that could not be decoded (call Next again for
// the ones after it); or io.EOF at the end. Frames keep their place: the
// n-th call is about frame n-1, damaged or not, so a caller that writes one
// output frame per call stays in step with the input. A frame of another
// size than the first (rare: a stream that changes resolution) is resized to
// the first's size.
func (r *VideoReader) Next() (Frame, error) {
	if r.bad > 0 {
		r.bad--
		i := r.next
		r.next++
		return Frame{}, &FrameError{Source: r.name, Index: i}
	}
	if r.stash != nil {
		f := *r.stash
		r.stash = nil
		r.next++
		return f, nil
	}
	if r.done {
		return Frame{}, io.EOF
	}
	limit := maxDamagedRun
	if r.info.Camera {
		limit = cameraRetries
	}
	f, err := r.read(limit)
	if err != nil {
		r.done = true
		return Frame{}, err
	}
	if r.bad > 0 {
		r.stash = &f
		return r.Next()
	}
	r.next++
	return f, nil
}

// Shortfall, after Next has returned io.EOF, is how many frames the file's
// header lists beyond the timestamp of the last frame read: 0 for a file
// read to its end. More means frames are missing from the stream as OpenCV
// gives it: the file is truncated, or damage broke the container and FFmpeg
// skipped to the next frame it could find without saying so (those frames
// cannot be put back in their place; frames whose data alone is damaged
// are reported by Next instead). Timestamps, not the count of frames read,
// are compared, so containers with empty "drop" slots (tree.avi lists 444
// frames and stores 68) are not short. It is 0 for cameras and files
// without a frame count or rate.
func (r *VideoReader) Shortfall() int {
	if r.info.Camera || r.info.Frames <= 0 || r.lastSlot < 0 {
		return 0
	}
	return max(0, r.info.Frames-(r.lastSlot+1))
}

// Close releases the capture.
func (r *VideoReader) Close() error {
	if r.vc != nil {
		r.vc.Close()
		r.vc = nil
		r.mat.Close()
	}
	return nil
}

// VideoCodecFor returns the FourCC codes CreateVideo tries for a file name,
// by its extension: .avi MJPG; .mp4, .m4v mp4v then avc1; .mkv MJPG then
// XVID; .mov mp4v, avc1 then MJPG. Other extensions have none.
func VideoCodecFor(path string) []string {
	return slices.Clone(videoCodecs[strings.ToLower(filepath.Ext(path))])
}

// VideoWriter writes the frames of a video to a temporary file beside the
// destination (same extension, so OpenCV picks the same container) and
// renames it into place on Close, so the destination only ever holds a
// finished, playable file.
type VideoWriter struct {
	path, tmp string
	codec     string
	w, h      int
	fps       float64
	vw        *gocv.VideoWriter
	frames    int
}

// CreateVideo opens a writer for w x h frames at fps. codec is a FourCC
// ("MJPG", "mp4v", "avc1", "XVID", ...); "" picks one by the extension
// (VideoCodecFor), trying each until OpenCV opens a writer. The parent
// folder is created. Errors say which codecs failed and what to try.
func CreateVideo(path string, fps float64, w, h int, codec string) (*VideoWriter, error) {
	quietFFmpeg()
	switch {
	case w <= 0 || h <= 0:
		return nil, fmt.Errorf("video %s: frame size %dx%d is empty", path, w, h)
	case !(fps > 0) || fps > 1000:
		return nil, fmt.Errorf("video %s: frame rate %g; give a rate in (0, 1000]", path, fps)
	}
	codecs := []string{codec}
	if codec == "" {
		codecs = VideoCodecFor(path)
		if len(codecs) == 0 {
			return nil, fmt.Errorf("video %s: extension %q is not a video container this writer knows; use .mp4 (mp4v), .avi (MJPG), .mkv or .mov, or give --codec", path, filepath.Ext(path))
		}
	} else if len(codec) != 4 {
		return nil, fmt.Errorf("video %s: codec %q is not a FourCC; give four characters such as MJPG, mp4v, avc1 or XVID", path, codec)
	}
	if filepath.Ext(path) == "" {
		return nil, fmt.Errorf("video %s: no extension; OpenCV picks the container by it (.mp4, .avi, .mkv, .mov)", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("video %s: create folder: %w", path, err)
	}
	tmp, err := tempPathLike(path)
	if err != nil {
		return nil, fmt.Errorf("video %s: %w", path, err)
	}
	for _, c := range codecs {
		vw, err := gocv.VideoWriterFile(tmp, c, fps, w, h, true)
		if err == nil && vw.IsOpened() {
			return &VideoWriter{path: path, tmp: tmp, codec: c, w: w, h: h, fps: fps, vw: vw}, nil
		}
		if vw != nil {
			vw.Close()
		}
	}
	os.Remove(tmp)
	return nil, fmt.Errorf("video %s: OpenCV could not open a writer with codec %s for %s files; try another --codec, or write .avi (MJPG, always available)", path, strings.Join(codecs, " or "), filepath.Ext(path))
}

// Path is the destination file.
func (v *VideoWriter) Path() string { return v.path }

// Codec is the FourCC the writer opened with.
func (v *VideoWriter) Codec() string { return v.codec }

// Frames is how many frames were written.
func (v *VideoWriter) Frames() int { return v.frames }

// Write appends a frame; a frame of another size is resized to the video's.
func (v *VideoWriter) Write(f Frame) error {
	if v.vw == nil {
		return fmt.Errorf("video %s: write after close", v.path)
	}
	if err := f.check("video " + v.path); err != nil {
		return err
	}
	if f.Width != v.w || f.Height != v.h {
		var err error
		if f, err = resizeFrame(f, v.w, v.h); err != nil {
			return fmt.Errorf("video %s: %w", v.path, err)
		}
	}
	m, err := f.mat()
	if err != nil {
		return fmt.Errorf("video %s: %w", v.path, err)
	}
	defer m.Close()
	if err := v.vw.Write(m); err != nil {
		return fmt.Errorf("video %s: frame %d: %w", v.path, v.frames, err)
	}
	v.frames++
	return nil
}

// Close finishes the file (the container's index and trailer), checks that
// OpenCV can open it again, and renames it to the destination. After a
// failed Close nothing is left at the destination or the temporary name.
func (v *VideoWriter) Close() error {
	if v.vw == nil {
		return nil
	}
	v.vw.Close()
	v.vw = nil
	if err := checkVideo(v.tmp, v.frames); err != nil {
		os.Remove(v.tmp)
		return fmt.Errorf("video %s: %w", v.path, err)
	}
	return commitTemp(v.tmp, v.path)
}

// Abort closes the writer and removes the temporary file, leaving the
// destination as it was.
func (v *VideoWriter) Abort() {
	if v.vw != nil {
		v.vw.Close()
		v.vw = nil
	}
	os.Remove(v.tmp)
}

// checkVideo opens a finished video to make sure players get a file with a
// readable first frame.
func checkVideo(path string, frames int) error {
	if frames == 0 {
		return errors.New("no frames were written")
	}
	vc, err := gocv.VideoCaptureFileWithAPI(path, gocv.VideoCaptureFFmpeg)
	if vc != nil {
		defer vc.Close()
	}
	if err != nil || !vc.IsOpened() {
		return errors.New("OpenCV wrote a file it cannot open again; try another --codec (MJPG in .avi always works)")
	}
	m := gocv.NewMat()
	defer m.Close()
	if !vc.Read(&m) || m.Empty() {
		return errors.New("OpenCV wrote a file whose first frame it cannot read; try another --codec (MJPG in .avi always works)")
	}
	return nil
}
