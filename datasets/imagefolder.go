package datasets

import (
	"errors"
	"fmt"
	"image"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"gocv.io/x/gocv"
)

// ImageExtensions are the file extensions (lower case, with the dot) that
// NewImageFolder treats as images; the match is case-insensitive. Treat it as
// read-only.
var ImageExtensions = []string{".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}

// decodeWorkers bounds how many images are decoded at once: the machines this
// runs on have few cores, and OpenCV's codecs are single-threaded per image.
const decodeWorkers = 2

// ImageOptions says how NewImageFolder turns files into tensors.
type ImageOptions struct {
	// Channels is 1 (grey) or 3 (RGB); 0 means 3. Grey files loaded as 3
	// channels are replicated, colour files loaded as 1 are converted to grey
	// (OpenCV's BT.601 luma); an alpha channel is dropped.
	Channels int
	// Height and Width are the size every image is resized to: bilinear when
	// enlarging, pixel-area averaging (INTER_AREA) when shrinking. Both 0 (the
	// default) keeps the size of the first image, and then every image must
	// have that size.
	Height, Width int
}

// resolve fills in the defaults and checks the options.
func (o ImageOptions) resolve() (ImageOptions, error) {
	if o.Channels == 0 {
		o.Channels = 3
	}
	if o.Channels != 1 && o.Channels != 3 {
		return o, fmt.Errorf("image options: Channels is %d; use 1 (grey) or 3 (RGB)", o.Channels)
	}
	if o.Height < 0 || o.Width < 0 || (o.Height == 0) != (o.Width == 0) {
		return o, fmt.Errorf("image options: size %dx%d (WxH) is invalid; set both Width and Height > 0, or both 0 to keep the images' own size", o.Width, o.Height)
	}
	return o, nil
}

// ImageFolder is an unlabelled image data set (for auto-encoders), decoded
// into memory once by NewImageFolder. It implements Source.
type ImageFolder struct {
	dir     string
	paths   []string
	c, h, w int
	imgs    [][]float32
}

// NewImageFolder lists and decodes the images in dir, or in dir/images when
// that subfolder exists. It takes the files whose extension is in
// ImageExtensions (case-insensitive), non-recursively and skipping hidden
// files, sorted by name. All images are decoded up front, two at a time, and
// kept in memory as float32 CHW in [0,1]; the first file that fails to decode
// fails the whole call. Errors name the path and say what to change.
func NewImageFolder(dir string, opt ImageOptions) (*ImageFolder, error) {
	opt, err := opt.resolve()
	if err != nil {
		return nil, fmt.Errorf("image folder %s: %w", dir, err)
	}
	imgDir, err := resolveImageDir(dir)
	if err != nil {
		return nil, err
	}
	paths, err := listImages(imgDir)
	if err != nil {
		return nil, err
	}
	sameSize := ""
	if opt.Height == 0 {
		h, w, err := imageSize(paths[0])
		if err != nil {
			return nil, err
		}
		opt.Height, opt.Width = h, w
		sameSize = paths[0]
	}
	imgs, err := decodeAll(paths, opt, sameSize)
	if err != nil {
		return nil, err
	}
	return &ImageFolder{dir: imgDir, paths: paths, c: opt.Channels, h: opt.Height, w: opt.Width, imgs: imgs}, nil
}

// resolveImageDir returns dir/images when it is a folder, else dir, with an
// error that says what to do when dir is missing or not a folder.
func resolveImageDir(dir string) (string, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("image folder %s: does not exist; check the path (give a folder of images, or one with an images/ subfolder)", dir)
	case err != nil:
		return "", fmt.Errorf("image folder %s: %w", dir, err)
	case !st.IsDir():
		return "", fmt.Errorf("image folder %s: is a file, not a directory; give the folder that holds the images", dir)
	}
	sub := filepath.Join(dir, "images")
	if st, err := os.Stat(sub); err == nil && st.IsDir() {
		return sub, nil
	}
	return dir, nil
}

// isImageName reports whether a file name has one of ImageExtensions and is
// not hidden.
func isImageName(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	return slices.Contains(ImageExtensions, strings.ToLower(filepath.Ext(name)))
}

// listImages returns the sorted paths of the images directly in dir.
func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image folder %s: %w", dir, err)
	}
	var paths []string
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || !isImageName(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if e.Type()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(p); err != nil || st.IsDir() {
				continue
			}
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("image folder %s: contains no images (looked for %s, not in subfolders); put the images there or in an images/ subfolder", dir, strings.Join(ImageExtensions, " "))
	}
	return paths, nil
}

// decodeAll decodes every path with decodeWorkers workers. The first error
// stops the hand-out of further files and is the one returned. When sameSize
// names a file, images are not resized but must have that file's size.
func decodeAll(paths []string, opt ImageOptions, sameSize string) ([][]float32, error) {
	imgs := make([][]float32, len(paths))
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for range min(decodeWorkers, len(paths)) {
		wg.Go(func() {
			for i := range jobs {
				img, err := decodeImage(paths[i], opt, sameSize)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				imgs[i] = img
			}
		})
	}
	for i := range paths {
		if failed() {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return imgs, nil
}

// decodeError is the error for bytes OpenCV cannot turn into an image.
func decodeError(path string) error {
	return fmt.Errorf("decode %s: not an image OpenCV can read (empty or corrupt)", path)
}

// readMat decodes the file at path as 1-channel grey or 3-channel BGR.
// The caller owns (and closes) the returned Mat.
func readMat(path string, channels int) (gocv.Mat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) == 0 {
		return gocv.Mat{}, decodeError(path)
	}
	flag := gocv.IMReadColor
	if channels == 1 {
		flag = gocv.IMReadGrayScale
	}
	m, err := gocv.IMDecode(data, flag)
	if err != nil {
		return gocv.Mat{}, decodeError(path)
	}
	if m.Empty() {
		m.Close()
		return gocv.Mat{}, decodeError(path)
	}
	return m, nil
}

// imageSize returns the height and width of the image at path.
func imageSize(path string) (h, w int, err error) {
	m, err := readMat(path, 1)
	if err != nil {
		return 0, 0, err
	}
	defer m.Close()
	return m.Rows(), m.Cols(), nil
}

// decodeImage reads one file into a CHW float32 tensor of the options' shape.
// When sameSize names a file, a differently sized image is an error instead
// of being resized.
func decodeImage(path string, opt ImageOptions, sameSize string) ([]float32, error) {
	src, err := readMat(path, opt.Channels)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if src.Rows() == opt.Height && src.Cols() == opt.Width {
		return matToCHW(path, src, opt.Channels)
	}
	if sameSize != "" {
		return nil, fmt.Errorf("image %s is %dx%d but %s is %dx%d (WxH); set ImageOptions Width and Height to resize them all to one size",
			path, src.Cols(), src.Rows(), sameSize, opt.Width, opt.Height)
	}
	interp := gocv.InterpolationLinear
	if opt.Width <= src.Cols() && opt.Height <= src.Rows() {
		interp = gocv.InterpolationArea
	}
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, image.Pt(opt.Width, opt.Height), 0, 0, interp)
	return matToCHW(path, dst, opt.Channels)
}

// matToCHW converts an 8-bit grey or BGR Mat to a float32 CHW tensor in
// [0,1] with RGB channel order.
func matToCHW(path string, m gocv.Mat, channels int) ([]float32, error) {
	want := gocv.MatTypeCV8UC3
	if channels == 1 {
		want = gocv.MatTypeCV8UC1
	}
	if m.Type() != want {
		return nil, fmt.Errorf("decode %s: OpenCV gave pixel type %v, want %v", path, m.Type(), want)
	}
	pix, err := m.DataPtrUint8()
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	h, w := m.Rows(), m.Cols()
	plane := h * w
	out := make([]float32, channels*plane)
	const inv = 1.0 / 255
	if channels == 1 {
		for i, v := range pix[:plane] {
			out[i] = float32(v) * inv
		}
		return out, nil
	}
	r, g, b := out[:plane], out[plane:2*plane], out[2*plane:]
	for i := range plane {
		b[i] = float32(pix[3*i]) * inv
		g[i] = float32(pix[3*i+1]) * inv
		r[i] = float32(pix[3*i+2]) * inv
	}
	return out, nil
}

// Len is the number of images.
func (f *ImageFolder) Len() int { return len(f.imgs) }

// Shape is the (channels, height, width) of every image.
func (f *ImageFolder) Shape() (c, h, w int) { return f.c, f.h, f.w }

// Dir is the folder the images were read from (dir or dir/images).
func (f *ImageFolder) Dir() string { return f.dir }

// Path is the file image i was read from; it panics when i is out of range.
func (f *ImageFolder) Path(i int) string { return f.paths[i] }

// Get returns image i as C*H*W float32 in CHW order, RGB channel order, values
// in [0,1]. The slice is the folder's cache, shared by every caller: treat it
// as read-only (copy it before changing it). mask is always nil (the folder is
// unlabelled); seed is unused (reserved for augmentation).
func (f *ImageFolder) Get(i int, seed uint64) (img []float32, mask []int32, err error) {
	if i < 0 || i >= len(f.imgs) {
		return nil, nil, fmt.Errorf("image folder %s: index %d out of range [0,%d)", f.dir, i, len(f.imgs))
	}
	return f.imgs[i], nil, nil
}
