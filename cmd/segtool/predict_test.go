package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/seg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// predictClasses are the test model's classes.
var predictClasses = []seg.Class{
	{Name: "background", Color: [3]uint8{0, 0, 0}},
	{Name: "circle", Color: [3]uint8{230, 25, 75}},
	{Name: "square", Color: [3]uint8{60, 180, 75}},
	{Name: "triangle", Color: [3]uint8{0, 130, 200}},
}

// predictFixture is a model and a video for one test.
type predictFixture struct {
	model string
	video string // 40 frames, 96x64, 12 fps, MJPG
}

// predictSetup makes an untrained segmenter with fixed seeds (it predicts
// something arbitrary but deterministic) and a shapes video in a temporary
// folder of the test.
func predictSetup(t *testing.T) predictFixture {
	t.Helper()
	dir := t.TempDir()
	cfg := seg.Config{
		NetConfig:  seg.NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: 4, Depth: 2}, Classes: len(predictClasses)},
		Height:     32,
		Width:      48,
		ClassTable: predictClasses,
		Ignore:     -1,
	}
	m, err := seg.New(cfg, 7)
	require.NoError(t, err)
	fx := predictFixture{model: filepath.Join(dir, "model.safetensors"), video: filepath.Join(dir, "shapes.avi")}
	require.NoError(t, m.Save(fx.model))
	require.NoError(t, datasets.GenerateShapesVideo(fx.video, 40, 96, 64, 12, 3))
	return fx
}

// readVideo reads a video back: every frame, its info.
func readVideo(t *testing.T, path string) ([]datasets.Frame, datasets.VideoInfo) {
	t.Helper()
	r, err := datasets.OpenVideo(path)
	require.NoError(t, err)
	defer r.Close()
	var frames []datasets.Frame
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "frame %d of %s", len(frames), path)
		frames = append(frames, f)
	}
	return frames, r.Info()
}

func writeTestImage(t *testing.T, path string, w, h int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	pix := make([]uint8, w*h*3)
	for y := range h {
		for x := range w {
			i := 3 * (y*w + x)
			// smooth gradients plus a block, so the model sees structure
			pix[i] = uint8(x * 255 / w)
			pix[i+1] = uint8(y * 255 / h)
			pix[i+2] = uint8(r.IntN(40))
			if x > w/3 && x < w/2 && y > h/3 && y < 2*h/3 {
				pix[i], pix[i+1], pix[i+2] = 250, 240, 20
			}
		}
	}
	require.NoError(t, datasets.WritePNG(path, pix, w, h, 3))
}

func TestPredictImage(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "in.png")
	writeTestImage(t, img, 150, 100, 1)
	out := filepath.Join(dir, "out", "over.png")
	masks := filepath.Join(dir, "masks")
	code, stdout, errOut := segtool(t, "predict", "--model", predictFix.model, "--input", img, "--out", out,
		"--masks", masks, "--legend", "--labels", "-q")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, out)
	f, err := datasets.ReadFrame(out)
	require.NoError(t, err)
	assert.Equal(t, [2]int{150, 100}, [2]int{f.Width, f.Height})
	for _, name := range []string{"in.png", "in_color.png"} {
		m, err := datasets.ReadFrame(filepath.Join(masks, name))
		require.NoError(t, err, name)
		assert.Equal(t, [2]int{150, 100}, [2]int{m.Width, m.Height}, name)
	}
	// an existing folder as --out takes the input's name
	code, _, errOut = segtool(t, "predict", "--model", predictFix.model, "--input", img, "--out", dir+"/out", "-q")
	require.Equal(t, 0, code, errOut)
	assert.FileExists(t, filepath.Join(dir, "out", "in.png"))
}

// TestPredictOverlayColours checks, at alpha 1, that every pixel of the
// overlay is the colour of its class in the class map written beside it.
func TestPredictOverlayColours(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "in.png")
	writeTestImage(t, img, 120, 80, 2)
	out := filepath.Join(dir, "over.png")
	masks := filepath.Join(dir, "masks")
	code, _, errOut := segtool(t, "predict", "--model", predictFix.model, "--input", img, "--out", out, "--alpha", "1", "--masks", masks, "-q")
	require.Equal(t, 0, code, errOut)
	over, err := datasets.ReadFrame(out)
	require.NoError(t, err)
	idx, err := datasets.ReadFrame(filepath.Join(masks, "in.png"))
	require.NoError(t, err)
	seen := map[uint8]int{}
	for i := range over.Width * over.Height {
		l := idx.Pix[3*i] // grey read as BGR: all three equal
		require.Less(t, int(l), len(predictClasses))
		seen[l]++
		c := predictClasses[l].Color
		require.Equal(t, []uint8{c[2], c[1], c[0]}, over.Pix[3*i:3*i+3], "pixel %d of class %d", i, l)
	}
	assert.GreaterOrEqual(t, len(seen), 2, "the map has more than one class: %v", seen)

	// alpha 0 gives the picture back
	code, _, errOut = segtool(t, "predict", "--model", predictFix.model, "--input", img, "--out", out, "--alpha", "0", "-q")
	require.Equal(t, 0, code, errOut)
	over, err = datasets.ReadFrame(out)
	require.NoError(t, err)
	orig, err := datasets.ReadFrame(img)
	require.NoError(t, err)
	assert.Equal(t, orig.Pix, over.Pix)
}

func TestPredictFolder(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	sizes := map[string][2]int{"a.png": {64, 48}, "b.png": {100, 30}, "c.jpg": {33, 77}}
	for name, s := range sizes {
		if strings.HasSuffix(name, ".png") {
			writeTestImage(t, filepath.Join(in, name), s[0], s[1], 3)
			continue
		}
		tmp := filepath.Join(dir, "c.png")
		writeTestImage(t, tmp, s[0], s[1], 4)
		f, err := datasets.ReadFrame(tmp)
		require.NoError(t, err)
		require.NoError(t, datasets.WriteFrame(filepath.Join(in, name), f))
	}
	require.NoError(t, os.WriteFile(filepath.Join(in, "broken.png"), []byte("not a png"), 0o644))
	out := filepath.Join(dir, "out")
	code, stdout, errOut := segtool(t, "predict", "--model", predictFix.model, "--input", in, "--out", out, "-q", "--batch", "2")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "3 frames")
	warn := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, warn, 1, errOut)
	assert.Contains(t, warn[0], "broken.png")
	assert.ElementsMatch(t, []string{"a.png", "b.png", "c.jpg"}, dirEntries(t, out))
	for name, s := range sizes {
		f, err := datasets.ReadFrame(filepath.Join(out, name))
		require.NoError(t, err)
		assert.Equal(t, s, [2]int{f.Width, f.Height}, name)
	}
	// the input folder is never the output
	code, _, errOut = segtool(t, "predict", "--model", predictFix.model, "--input", in, "--out", in, "-q")
	requireOneLineError(t, code, errOut, "is the input")
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestPredictVideo(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		out, codec string
		args       []string
	}{
		{"over.mp4", "mp4v", nil},
		{"over.avi", "MJPG", []string{"--legend", "--labels", "--batch", "3"}},
		{"tiled.mkv", "XVID", []string{"--tile", "--codec", "XVID"}},
	} {
		out := filepath.Join(dir, tc.out)
		args := append([]string{"predict", "--model", predictFix.model, "--input", predictFix.video, "--out", out, "-q"}, tc.args...)
		code, stdout, errOut := segtool(t, args...)
		require.Equal(t, 0, code, errOut)
		assert.Empty(t, errOut)
		assert.Contains(t, stdout, "40 frames")
		assert.Contains(t, stdout, tc.codec)
		frames, info := readVideo(t, out)
		assert.Len(t, frames, 40, tc.out)
		assert.Equal(t, 96, info.Width, tc.out)
		assert.Equal(t, 64, info.Height, tc.out)
		assert.InDelta(t, 12, info.FPS, 1e-3, tc.out)
	}
	assert.ElementsMatch(t, []string{"over.mp4", "over.avi", "tiled.mkv"}, dirEntries(t, dir), "no temporary files left")
}

// predictMasks runs predict on the video with the extra flags and returns
// the class-index masks it wrote, in frame order, as PNG bytes and decoded.
func predictMasks(t *testing.T, fx predictFixture, extra ...string) (files [][]byte, maps [][]uint8) {
	t.Helper()
	dir := t.TempDir()
	masks := filepath.Join(dir, "masks")
	args := append([]string{"predict", "--model", fx.model, "--input", fx.video, "--out", filepath.Join(dir, "o.avi"), "--masks", masks, "-q"}, extra...)
	code, _, errOut := segtool(t, args...)
	require.Equal(t, 0, code, errOut)
	for i := 0; ; i++ {
		p := filepath.Join(masks, fmt.Sprintf("%06d.png", i))
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		require.NoError(t, err)
		f, err := datasets.ReadFrame(p)
		require.NoError(t, err)
		labels := make([]uint8, f.Width*f.Height)
		for j := range labels {
			labels[j] = f.Pix[3*j]
		}
		files, maps = append(files, b), append(maps, labels)
	}
	return files, maps
}

// flicker counts the pixels whose class changes from one frame to the next.
func flicker(maps [][]uint8) int {
	n := 0
	for i := 1; i < len(maps); i++ {
		for j := range maps[i] {
			if maps[i][j] != maps[i-1][j] {
				n++
			}
		}
	}
	return n
}

func TestPredictSmoothing(t *testing.T) {
	fx := predictSetup(t)
	plain, plainMaps := predictMasks(t, fx)
	require.Len(t, plain, 40)
	off, _ := predictMasks(t, fx, "--smooth", "0")
	assert.Equal(t, plain, off, "A = 0 is exactly no smoothing")
	_, smoothMaps := predictMasks(t, fx, "--smooth", "0.8")
	require.Len(t, smoothMaps, 40)
	assert.Less(t, flicker(smoothMaps), flicker(plainMaps), "smoothing steadies the masks")
	assert.NotEqual(t, plainMaps[20], smoothMaps[20])
}

// damageMJPG overwrites the JPEG data of frames [from, to) of an MJPG AVI
// (after each frame's start-of-image marker), leaving the container intact.
func damageMJPG(t *testing.T, src, dst string, from, to int) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(9, 9))
	frame := 0
	for i := 0; i+10 < len(b); i++ {
		if string(b[i:i+4]) != "00dc" || b[i+8] != 0xFF || b[i+9] != 0xD8 {
			continue
		}
		n := int(b[i+4]) | int(b[i+5])<<8 | int(b[i+6])<<16 | int(b[i+7])<<24
		if frame >= from && frame < to {
			for j := i + 10; j < i+8+n; j++ {
				b[j] = uint8(r.IntN(256))
			}
		}
		frame++
		i += 7 + n
	}
	require.Greater(t, frame, to, "found the frames")
	require.NoError(t, os.WriteFile(dst, b, 0o644))
}

func TestPredictDamagedVideo(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "damaged.avi")
	damageMJPG(t, predictFix.video, bad, 15, 18)
	out := filepath.Join(dir, "over.avi")
	code, stdout, errOut := segtool(t, "predict", "--model", predictFix.model, "--input", bad, "--out", out, "-q")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, lines, 1, "one warning for the damaged stretch: %q", errOut)
	assert.Contains(t, lines[0], "frames 15-17")
	assert.Contains(t, lines[0], bad)
	assert.Contains(t, stdout, "40 frames")
	assert.Contains(t, stdout, "3 damaged frames")
	frames, info := readVideo(t, out)
	require.Len(t, frames, 40, "the output keeps the input's frame count")
	assert.InDelta(t, 12, info.FPS, 1e-3)
	// the damaged frames repeat the last good overlay
	for i := 15; i < 18; i++ {
		assert.Equal(t, frames[14].Pix, frames[i].Pix, "frame %d", i)
	}
	assert.NotEqual(t, frames[14].Pix, frames[18].Pix)
}

func TestPredictTruncatedVideo(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	b, err := os.ReadFile(predictFix.video)
	require.NoError(t, err)
	cut := filepath.Join(dir, "cut.avi")
	require.NoError(t, os.WriteFile(cut, b[:len(b)*6/10], 0o644))
	out := filepath.Join(dir, "over.mp4")
	code, stdout, errOut := segtool(t, "predict", "--model", predictFix.model, "--input", cut, "--out", out, "-q")
	require.Equal(t, 0, code, errOut)
	frames, _ := readVideo(t, out)
	assert.Greater(t, len(frames), 10)
	assert.Less(t, len(frames), 40)
	assert.Contains(t, stdout, fmt.Sprintf("%d frames", len(frames)))
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, lines, 1, errOut)
	assert.Contains(t, lines[0], fmt.Sprintf("lists 40 frames but its stream ended %d short", 40-len(frames)))
}

func TestPredictBadInput(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	notVideo := filepath.Join(dir, "notes.avi")
	require.NoError(t, os.WriteFile(notVideo, []byte("this is not a video at all"), 0o644))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	brokenImg := filepath.Join(dir, "broken.png")
	require.NoError(t, os.WriteFile(brokenImg, []byte("not a png"), 0o644))
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing input", []string{"--input", filepath.Join(dir, "nope.mp4"), "--out", filepath.Join(dir, "o.mp4")}, []string{"nope.mp4", "does not exist"}},
		{"not a video", []string{"--input", notVideo, "--out", filepath.Join(dir, "o.mp4")}, []string{notVideo, "cannot open"}},
		{"no camera", []string{"--input", "7", "--out", filepath.Join(dir, "o.mp4")}, []string{"camera 7"}},
		{"empty folder", []string{"--input", empty, "--out", filepath.Join(dir, "o")}, []string{empty, "no images"}},
		{"broken image", []string{"--input", brokenImg, "--out", filepath.Join(dir, "o.png")}, []string{brokenImg}},
		{"bad extension", []string{"--input", predictFix.video, "--out", filepath.Join(dir, "o.xyz")}, []string{"o.xyz", "extension"}},
		{"bad codec", []string{"--input", predictFix.video, "--out", filepath.Join(dir, "o.avi"), "--codec", "NOPE1"}, []string{"FourCC"}},
		{"bad alpha", []string{"--input", predictFix.video, "--out", filepath.Join(dir, "o.avi"), "--alpha", "2"}, []string{"--alpha"}},
		{"bad smooth", []string{"--input", predictFix.video, "--out", filepath.Join(dir, "o.avi"), "--smooth", "1"}, []string{"--smooth"}},
		{"output is the input", []string{"--input", predictFix.video, "--out", predictFix.video}, []string{"is the input"}},
		{"missing model", []string{"--model", filepath.Join(dir, "none.safetensors"), "--input", predictFix.video, "--out", filepath.Join(dir, "o.avi")}, []string{"none.safetensors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"predict", "--model", predictFix.model, "-q"}, tc.args...)
			code, _, errOut := segtool(t, args...)
			requireOneLineError(t, code, errOut, tc.want...)
		})
	}
	assert.ElementsMatch(t, []string{"notes.avi", "empty", "broken.png"}, dirEntries(t, dir), "nothing written for a run that cannot start")
}

func TestPredictCancelKeepsAPlayableVideo(t *testing.T) {
	predictFix := predictSetup(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "over.mp4")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onFrameWritten = func(i int) {
		if i == 8 {
			cancel() // what Ctrl-C does to the command's context
		}
	}
	defer func() { onFrameWritten = nil }()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"segtool", "predict", "--model", predictFix.model, "--input", predictFix.video, "--out", out, "-q", "--batch", "2"}, &stdout, &stderr)
	assert.Equal(t, 130, code, stderr.String())
	assert.Contains(t, stderr.String(), "interrupted")
	assert.Contains(t, stderr.String(), out)
	frames, info := readVideo(t, out)
	assert.GreaterOrEqual(t, len(frames), 8, "the frames written before the stop and those in flight")
	assert.Less(t, len(frames), 40)
	assert.Equal(t, 96, info.Width)
	assert.Contains(t, stdout.String(), fmt.Sprintf("%d frames", len(frames)))
	assert.Equal(t, []string{"over.mp4"}, dirEntries(t, dir))
}
