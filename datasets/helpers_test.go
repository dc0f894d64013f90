package datasets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeTestPNG writes a w x h image with c channels (interleaved, RGB) to
// dir/name and returns its path.
func writeTestPNG(t *testing.T, dir, name string, pix []uint8, w, h, c int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, WritePNG(p, pix, w, h, c))
	return p
}

// solid returns w*h pixels of one colour with len(col) channels.
func solid(w, h int, col ...uint8) []uint8 {
	out := make([]uint8, 0, w*h*len(col))
	for range w * h {
		out = append(out, col...)
	}
	return out
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
