package datasets

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// updateFixtures regenerates the checked-in fixtures:
//
//	go test ./datasets -run TestShapesFixtures -update-fixtures
var updateFixtures = flag.Bool("update-fixtures", false, "rewrite testdata/shapes from GenerateShapes")

// fixtureDir and fixtureShapes are the checked-in shapes fixture set
// (testdata/shapes, described in its README.md).
var (
	fixtureDir    = filepath.Join("..", "testdata", "shapes")
	fixtureShapes = ShapesOptions{N: 8, Width: 64, Height: 64, Seed: 1}
)

// TestShapesFixtures keeps testdata/shapes equal to what GenerateShapes makes
// now. Pixels are compared rather than bytes, so that a change in Go's PNG
// encoder does not count as drift, with a little leeway (image values +-2, a
// few mask pixels) because other architectures round floats differently (the
// compiler fuses multiply-adds on arm64, for one); on amd64, where the
// fixtures were made, they match exactly.
func TestShapesFixtures(t *testing.T) {
	if *updateFixtures {
		for _, sub := range []string{"images", "masks"} {
			require.NoError(t, os.RemoveAll(filepath.Join(fixtureDir, sub)))
		}
		require.NoError(t, GenerateShapes(fixtureDir, fixtureShapes))
	}
	fresh := t.TempDir()
	require.NoError(t, GenerateShapes(fresh, fixtureShapes))
	const hint = "testdata/shapes is out of date with GenerateShapes; if the change is intended run: go test ./datasets -run TestShapesFixtures -update-fixtures"
	for _, sub := range []struct {
		name string
		c    int
	}{{"images", 3}, {"masks", 1}} {
		want := dirNames(t, filepath.Join(fresh, sub.name))
		require.Len(t, want, fixtureShapes.N)
		require.Equal(t, want, dirNames(t, filepath.Join(fixtureDir, sub.name)), hint)
		for _, name := range want {
			got := pngPixels(t, readPNG(t, filepath.Join(fixtureDir, sub.name, name)), sub.c)
			exp := pngPixels(t, readPNG(t, filepath.Join(fresh, sub.name, name)), sub.c)
			require.Len(t, got, len(exp), "%s/%s: %s", sub.name, name, hint)
			maxDiff, differ := 0, 0
			for k := range exp {
				if d := absDiff(exp[k], got[k]); d > 0 {
					differ++
					maxDiff = max(maxDiff, d)
				}
			}
			if sub.name == "images" {
				assert.LessOrEqual(t, maxDiff, 2, "%s/%s: %s", sub.name, name, hint)
			} else {
				assert.LessOrEqual(t, differ, 4, "%s/%s: %d mask pixels differ; %s", sub.name, name, differ, hint)
			}
		}
	}
}
