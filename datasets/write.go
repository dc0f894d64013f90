package datasets

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"gocv.io/x/gocv"
)

// GridPadding is the gap, in output pixels, WriteGrid leaves around and
// between tiles; GridPaddingValue is its grey level.
const (
	GridPadding      = 2
	GridPaddingValue = 128
)

// gridExtensions are the extensions WriteGrid hands to OpenCV's encoder. The
// list is closed on purpose: for an extension OpenCV does not know (or a
// channel count a PxM variant refuses) cv::imencode throws a C++ exception,
// which through cgo aborts the whole program.
var gridExtensions = []string{".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pnm", ".ppm", ".pgm", ".sr", ".ras"}

// WritePNG writes an 8-bit image of w x h pixels with c channels (1 grey,
// 3 RGB or 4 RGBA; row-major, channels interleaved) as a PNG, atomically
// (temporary file in the same folder, then rename), creating the parent
// folder. It uses Go's image/png, so the bytes written depend only on the
// pixels and the Go release.
func WritePNG(path string, rgb []uint8, w, h, c int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("write %s: size %dx%d is empty; give width and height > 0", path, w, h)
	}
	if len(rgb) != w*h*c {
		return fmt.Errorf("write %s: %d bytes of pixels for %dx%d with %d channels, want %d", path, len(rgb), w, h, c, w*h*c)
	}
	var img image.Image
	switch c {
	case 1:
		img = &image.Gray{Pix: rgb, Stride: w, Rect: image.Rect(0, 0, w, h)}
	case 3:
		// Opaque NRGBA makes image/png write a plain RGB file.
		m := image.NewNRGBA(image.Rect(0, 0, w, h))
		for i := range w * h {
			copy(m.Pix[4*i:4*i+3], rgb[3*i:3*i+3])
			m.Pix[4*i+3] = 255
		}
		img = m
	case 4:
		img = &image.NRGBA{Pix: rgb, Stride: 4 * w, Rect: image.Rect(0, 0, w, h)}
	default:
		return fmt.Errorf("write %s: %d channels; WritePNG takes 1 (grey), 3 (RGB) or 4 (RGBA)", path, c)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return writeFileAtomic(path, buf.Bytes())
}

// WriteGrid tiles CHW float images (c is 1 or 3, RGB order, values in [0,1];
// outside values are clamped, NaN is 0) into a grid of cols columns (cols <= 0
// means ceil(sqrt(len(imgs)))), each tile upscaled scale times by nearest
// neighbour (scale <= 0 means 1), with GridPadding grey pixels around and
// between tiles. The format follows path's extension (.png, .jpg, .jpeg,
// .bmp, .tif, .tiff, .webp, .pnm, .ppm, .pgm, ...; .pgm is written grey and
// .ppm colour); OpenCV encodes it. The file is written atomically and its
// parent folder created.
func WriteGrid(path string, imgs [][]float32, c, h, w, cols int, scale int) error {
	ext := strings.ToLower(filepath.Ext(path))
	if !slices.Contains(gridExtensions, ext) {
		return fmt.Errorf("write %s: %q is not an image format this writer knows; use one of %s", path, ext, strings.Join(gridExtensions, " "))
	}
	if len(imgs) == 0 {
		return fmt.Errorf("write %s: no images to put in the grid", path)
	}
	if c != 1 && c != 3 {
		return fmt.Errorf("write %s: %d channels; WriteGrid takes 1 (grey) or 3 (RGB)", path, c)
	}
	if h <= 0 || w <= 0 {
		return fmt.Errorf("write %s: tile size %dx%d is empty; give h and w > 0", path, w, h)
	}
	for k, img := range imgs {
		if len(img) != c*h*w {
			return fmt.Errorf("write %s: image %d has %d values, want %d (%dx%dx%d CHW)", path, k, len(img), c*h*w, c, h, w)
		}
	}
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(len(imgs)))))
	}
	cols = min(cols, len(imgs))
	if scale <= 0 {
		scale = 1
	}
	outC := c
	switch ext {
	case ".pgm":
		outC = 1
	case ".ppm":
		outC = 3
	}
	pix, gw, gh := tileGrid(imgs, c, h, w, cols, scale, outC)
	return encodeAtomic(path, ext, pix, gw, gh, outC)
}

// tileGrid lays out the grid as 8-bit interleaved pixels, BGR when outC is 3
// (OpenCV's order). A grey tile in a colour grid is replicated; a colour tile
// in a grey grid is turned to luma (BT.601).
func tileGrid(imgs [][]float32, c, h, w, cols, scale, outC int) (pix []uint8, gw, gh int) {
	rows := (len(imgs) + cols - 1) / cols
	tw, th := w*scale, h*scale
	gw = cols*(tw+GridPadding) + GridPadding
	gh = rows*(th+GridPadding) + GridPadding
	pix = make([]uint8, gw*gh*outC)
	for k := range pix {
		pix[k] = GridPaddingValue
	}
	plane := h * w
	for k, img := range imgs {
		ox := GridPadding + (k%cols)*(tw+GridPadding)
		oy := GridPadding + (k/cols)*(th+GridPadding)
		for y := range th {
			for x := range tw {
				si := (y/scale)*w + x/scale
				var rgb [3]uint8
				if c == 1 {
					v := toByte(img[si])
					rgb = [3]uint8{v, v, v}
				} else {
					rgb = [3]uint8{toByte(img[si]), toByte(img[plane+si]), toByte(img[2*plane+si])}
				}
				o := ((oy+y)*gw + ox + x) * outC
				if outC == 1 {
					pix[o] = luma(rgb)
				} else {
					pix[o], pix[o+1], pix[o+2] = rgb[2], rgb[1], rgb[0]
				}
			}
		}
	}
	return pix, gw, gh
}

// toByte maps [0,1] to 0..255, clamping, with NaN as 0.
func toByte(v float32) uint8 {
	if !(v > 0) { // also NaN
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(v*255 + 0.5)
}

// luma is the BT.601 grey level of an RGB pixel, as OpenCV computes it.
func luma(rgb [3]uint8) uint8 {
	return uint8(0.299*float64(rgb[0]) + 0.587*float64(rgb[1]) + 0.114*float64(rgb[2]) + 0.5)
}

// encodeAtomic encodes 8-bit grey or BGR pixels with OpenCV in the format of
// ext and writes them to path atomically.
func encodeAtomic(path, ext string, pix []uint8, w, h, c int) error {
	mt := gocv.MatTypeCV8UC3
	if c == 1 {
		mt = gocv.MatTypeCV8UC1
	}
	m, err := gocv.NewMatFromBytes(h, w, mt, pix)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.FileExt(ext), m)
	if err != nil {
		return fmt.Errorf("write %s: encode: %w", path, err)
	}
	defer buf.Close()
	data := buf.GetBytes()
	if len(data) == 0 {
		return fmt.Errorf("write %s: OpenCV could not encode %s (is its codec built in?); try .png", path, ext)
	}
	// GetBytes points into C memory that buf.Close frees; the write below
	// finishes first.
	return writeFileAtomic(path, data)
}
