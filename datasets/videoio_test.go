package datasets

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// damageFrames overwrites the JPEG data of frames [from, to) of an MJPG AVI
// after each frame's start-of-image marker, keeping the container intact.
func damageFrames(t *testing.T, path string, from, to int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(5, 5))
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
	require.Greater(t, frame, to)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// readAll returns the frames of a video, nil in place of damaged ones, and
// the indices the FrameErrors named.
func readAll(t *testing.T, path string) (frames []*Frame, damaged []int, info VideoInfo) {
	t.Helper()
	r, err := OpenVideo(path)
	require.NoError(t, err)
	defer r.Close()
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var fe *FrameError
		if errors.As(err, &fe) {
			assert.Equal(t, path, fe.Source)
			damaged = append(damaged, fe.Index)
			frames = append(frames, nil)
			continue
		}
		require.NoError(t, err)
		frames = append(frames, &f)
	}
	return frames, damaged, r.Info()
}

func TestVideoReader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.avi")
	require.NoError(t, GenerateShapesVideo(path, 30, 64, 48, 10, 2))
	frames, damaged, info := readAll(t, path)
	assert.Len(t, frames, 30)
	assert.Empty(t, damaged)
	assert.Equal(t, VideoInfo{Width: 64, Height: 48, FPS: 10, Frames: 30, Codec: "MJPG"}, info)
	for _, f := range frames {
		require.NotNil(t, f)
		assert.Equal(t, 64*48*3, len(f.Pix))
	}

	damageFrames(t, path, 10, 14)
	bad, damaged, _ := readAll(t, path)
	require.Len(t, bad, 30, "a damaged frame keeps its place")
	assert.Equal(t, []int{10, 11, 12, 13}, damaged)
	for i, f := range bad {
		if i >= 10 && i < 14 {
			continue
		}
		require.NotNil(t, f, "frame %d", i)
		assert.Equal(t, frames[i].Pix, f.Pix, "frame %d is the same picture as before the damage", i)
	}
}

// shortfall reads a video to its end and returns the frames read and the
// reader's Shortfall.
func shortfall(t *testing.T, path string) (frames, short int) {
	t.Helper()
	r, err := OpenVideo(path)
	require.NoError(t, err)
	defer r.Close()
	for {
		if _, err := r.Next(); errors.Is(err, io.EOF) {
			break
		}
		frames++
	}
	return frames, r.Shortfall()
}

func TestVideoShortfall(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.avi")
	require.NoError(t, GenerateShapesVideo(path, 30, 64, 48, 10, 2))
	n, short := shortfall(t, path)
	assert.Equal(t, [2]int{30, 0}, [2]int{n, short}, "an intact file")
	b, err := os.ReadFile(path)
	require.NoError(t, err)

	// garbage over whole chunks, headers included: FFmpeg resynchronises at
	// the next frame and the stream is simply shorter
	junk := filepath.Join(dir, "junk.avi")
	var starts []int
	for i := 0; i+10 < len(b); i++ {
		if string(b[i:i+4]) == "00dc" && b[i+8] == 0xFF && b[i+9] == 0xD8 {
			starts = append(starts, i)
		}
	}
	require.Len(t, starts, 30)
	c := append([]byte(nil), b...)
	r := rand.New(rand.NewPCG(1, 1))
	for i := starts[10]; i < starts[14]; i++ {
		c[i] = uint8(r.IntN(256))
	}
	require.NoError(t, os.WriteFile(junk, c, 0o644))
	n, short = shortfall(t, junk)
	assert.Equal(t, 30, n+short, "read %d, short %d", n, short)
	assert.Positive(t, short)

	cut := filepath.Join(dir, "cut.avi")
	require.NoError(t, os.WriteFile(cut, b[:starts[20]], 0o644))
	n, short = shortfall(t, cut)
	assert.Equal(t, [2]int{20, 10}, [2]int{n, short}, "a truncated file")

	// damaged frame data is reported by Next, not short
	damageFrames(t, path, 5, 8)
	n, short = shortfall(t, path)
	assert.Equal(t, [2]int{30, 0}, [2]int{n, short})
}

// TestRealVideos reads the real videos of ../shared/data/videos (not part of
// the project; skipped where absent): frame counts, sizes and rates as the
// data README lists them, and no shortfall for tree.avi's empty slots.
func TestRealVideos(t *testing.T) {
	dir := needReal(t, "videos")
	for _, tc := range []struct {
		name         string
		frames, w, h int
		fps          float64
	}{
		{"tree.avi", 68, 320, 240, 15},
		{"vtest.avi", 795, 768, 576, 10},
		{"Megamind.avi", 270, 720, 528, 23.976},
	} {
		p := filepath.Join(dir, tc.name)
		r, err := OpenVideo(p)
		require.NoError(t, err, p)
		info := r.Info()
		r.Close()
		assert.Equal(t, [2]int{tc.w, tc.h}, [2]int{info.Width, info.Height}, tc.name)
		assert.InDelta(t, tc.fps, info.FPS, 0.01, tc.name)
		if testing.Short() && tc.frames > 100 {
			continue
		}
		n, short := shortfall(t, p)
		assert.Equal(t, tc.frames, n, tc.name)
		assert.Zero(t, short, tc.name)
	}
}

func TestOpenVideoErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text.mp4")
	require.NoError(t, os.WriteFile(text, []byte("hello"), 0o644))
	for _, tc := range []struct{ spec, want string }{
		{filepath.Join(dir, "missing.avi"), "does not exist"},
		{text, "cannot open it as a video"},
		{dir, "is a folder"},
		{"9", "camera 9"},
	} {
		_, err := OpenVideo(tc.spec)
		require.Error(t, err, tc.spec)
		assert.Contains(t, err.Error(), tc.spec)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestVideoWriter(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, codec, want string }{
		{"a.avi", "", "MJPG"},
		{"b.mp4", "", "mp4v"},
		{"c.avi", "XVID", "XVID"},
	} {
		path := filepath.Join(dir, tc.name)
		w, err := CreateVideo(path, 7.5, 40, 30, tc.codec)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, w.Codec())
		for i := range 9 {
			f := NewFrame(40, 30)
			for j := range f.Pix {
				f.Pix[j] = uint8(i * 20)
			}
			require.NoError(t, w.Write(f))
		}
		// a frame of another size is resized, not dropped
		require.NoError(t, w.Write(NewFrame(80, 60)))
		assert.NoFileExists(t, path, "nothing at the destination before Close")
		require.NoError(t, w.Close())
		frames, damaged, info := readAll(t, path)
		assert.Len(t, frames, 10, tc.name)
		assert.Empty(t, damaged)
		assert.Equal(t, 40, info.Width)
		assert.InDelta(t, 7.5, info.FPS, 1e-6, tc.name)
	}
	w, err := CreateVideo(filepath.Join(dir, "d.avi"), 10, 16, 16, "")
	require.NoError(t, err)
	require.NoError(t, w.Write(NewFrame(16, 16)))
	w.Abort()
	assert.ElementsMatch(t, []string{"a.avi", "b.mp4", "c.avi"}, dirNames(t, dir), "Abort leaves nothing; Close leaves no temporary file")

	for _, tc := range []struct {
		name, codec string
		fps         float64
		want        string
	}{
		{"x.gif", "", 10, "not a video container"},
		{"x", "MJPG", 10, "no extension"},
		{"x.avi", "TOOLONG", 10, "FourCC"},
		{"x.avi", "", 0, "frame rate"},
	} {
		_, err := CreateVideo(filepath.Join(dir, tc.name), tc.fps, 16, 16, tc.codec)
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), tc.want)
	}
	_, err = CreateVideo(filepath.Join(dir, "e.avi"), 10, 16, 16, "")
	require.NoError(t, err)
	// Closing with no frames is an error and leaves nothing.
	w, err = CreateVideo(filepath.Join(dir, "f.avi"), 10, 16, 16, "")
	require.NoError(t, err)
	assert.ErrorContains(t, w.Close(), "no frames")
	assert.NoFileExists(t, filepath.Join(dir, "f.avi"))
}

func TestReadWriteFrame(t *testing.T) {
	dir := t.TempDir()
	pix := make([]uint8, 5*4*3)
	for i := range pix {
		pix[i] = uint8(i * 4)
	}
	p := writeTestPNG(t, dir, "rgb.png", pix, 5, 4, 3)
	f, err := ReadFrame(p)
	require.NoError(t, err)
	require.Equal(t, 5, f.Width)
	require.Equal(t, 4, f.Height)
	// RGB in the file, BGR in the frame
	assert.Equal(t, []uint8{pix[2], pix[1], pix[0]}, f.Pix[:3])
	out := filepath.Join(dir, "sub", "copy.png")
	require.NoError(t, WriteFrame(out, f))
	back, err := ReadFrame(out)
	require.NoError(t, err)
	assert.Equal(t, f, back)
	assert.ErrorContains(t, WriteFrame(filepath.Join(dir, "x.gif"), f), "format")
	_, err = ReadFrame(filepath.Join(dir, "missing.png"))
	assert.ErrorContains(t, err, "missing.png")
	grey := writeTestPNG(t, dir, "grey.png", []uint8{10, 20, 30, 40}, 2, 2, 1)
	g, err := ReadFrame(grey)
	require.NoError(t, err)
	assert.Equal(t, []uint8{10, 10, 10}, g.Pix[:3], "grey pictures become three equal channels")
}
