// Command predictbench measures `segtool predict` on a video side by side
// with bench/predict_peer.py, the same job in Python (OpenCV reading and
// writing, PyTorch inference with the same weights), and prints one table of
// frames/s with the ratio.
//
// The model is the CamVid shape (256x192 input, base 16, depth 4, batch norm,
// 11 classes): untrained unless -model gives one, since the speed depends on
// the shape only. The video is -video, or one assembled from the frames of
// CamVid sequence 0016E5 when ../shared/data/camvid is there (480x360), or a
// generated 480x360 shapes video otherwise. A first, untimed round also
// writes both tools' class masks and reports on how many pixels they agree.
// The timed rounds take turns (segtool, peer with one thread, peer with two)
// so that load from elsewhere falls on all of them alike.
//
//	go build -o bin/predictbench ./bench/predictbench && bin/predictbench
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segtool/segtool/bench/internal/stats"
	"github.com/segtool/segtool/datasets"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/seg"
)

type options struct {
	segtool, python, peer string
	model, video, camvid  string
	rounds, batch         int
	work                  string
}

func main() {
	var o options
	flag.StringVar(&o.segtool, "segtool", "bin/segtool", "the segtool binary")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "the Python that has Debian's python3-torch and python3-opencv")
	flag.StringVar(&o.peer, "peer", "bench/predict_peer.py", "the Python peer")
	flag.StringVar(&o.model, "model", "", "a segmenter model file (default: an untrained one of the CamVid shape)")
	flag.StringVar(&o.video, "video", "", "the input video (default: CamVid 0016E5 frames, or generated shapes)")
	flag.StringVar(&o.camvid, "camvid", "../shared/data/camvid", "CamVid, for the default video")
	flag.IntVar(&o.rounds, "rounds", 3, "timed rounds, each running all three")
	flag.IntVar(&o.batch, "batch", 4, "frames per inference batch, both tools")
	flag.StringVar(&o.work, "work", "", "scratch folder (default: a temporary one, removed at the end)")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "predictbench:", err)
		os.Exit(1)
	}
}

func run(o options, w io.Writer) error {
	if o.work == "" {
		d, err := os.MkdirTemp("", "predictbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.work = d
	} else if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	if o.model == "" {
		o.model = filepath.Join(o.work, "camvid-shape.safetensors")
		if err := untrainedModel(o.model); err != nil {
			return err
		}
	}
	what, err := inputVideo(&o)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "video: %s (%s)\nmodel: %s\n", o.video, what, o.model)

	type runner struct {
		name string
		run  func(masks string) (float64, error)
	}
	runners := []runner{
		{"segtool predict", func(masks string) (float64, error) { return o.runSegtool(masks) }},
		{"peer, PyTorch --threads 1", func(masks string) (float64, error) { return o.runPeer(1, masks) }},
		{"peer, PyTorch --threads 2", func(masks string) (float64, error) { return o.runPeer(2, masks) }},
	}

	// Untimed first round: warms the page cache and both libraries, and
	// writes the masks that are compared.
	mg, mp := filepath.Join(o.work, "masks-segtool"), filepath.Join(o.work, "masks-peer")
	if _, err := runners[0].run(mg); err != nil {
		return err
	}
	if _, err := runners[1].run(mp); err != nil {
		return err
	}
	agree, frames, err := compareMasks(mg, mp)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "masks: segtool and the peer agree on %.4f%% of the pixels of %d frames\n", 100*agree, frames)

	fps := make([][]float64, len(runners))
	wall := make([][]float64, len(runners))
	for r := range o.rounds {
		for i, rn := range runners {
			t0 := time.Now()
			f, err := rn.run("")
			if err != nil {
				return err
			}
			fps[i] = append(fps[i], f)
			wall[i] = append(wall[i], time.Since(t0).Seconds())
			fmt.Fprintf(w, "round %d: %-26s %6.2f frames/s, %5.1f s in all\n", r+1, rn.name, f, wall[i][len(wall[i])-1])
		}
	}
	fmt.Fprintf(w, "\n| %s (%d rounds, batch %d) | frames/s, median | range | whole command, s |\n| --- | --- | --- | --- |\n", what, o.rounds, o.batch)
	med := make([]float64, len(runners))
	for i, rn := range runners {
		med[i] = stats.Median(fps[i])
		fmt.Fprintf(w, "| %s | %.2f | %.2f - %.2f | %.1f |\n", rn.name, med[i], slices.Min(fps[i]), slices.Max(fps[i]), stats.Median(wall[i]))
	}
	fmt.Fprintln(w, "\nframes/s as each tool reports it: from the first frame read to the output closed (model loading and, for the peer, importing torch are outside it; the last column has them)")
	best := max(med[1], med[2])
	fmt.Fprintf(w, "\nsegtool / peer at its faster thread count: %.2fx (%.2fx against one thread, %.2fx against two)\n",
		med[0]/best, med[0]/med[1], med[0]/med[2])
	fmt.Fprintf(w, "load average: %s\n", stats.LoadAvg())
	return nil
}

// camvidClasses names the CamVid classes; the colours are only for painting.
var camvidClasses = []string{"sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "bicyclist"}

func untrainedModel(path string) error {
	cfg := seg.Config{
		NetConfig: seg.NetConfig{EncoderConfig: nn.EncoderConfig{InChannels: 3, Base: 16, Depth: 4, Norm: nn.BatchNorm}, Classes: len(camvidClasses)},
		Height:    192,
		Width:     256,
		Ignore:    11,
	}
	for i, n := range camvidClasses {
		cfg.ClassTable = append(cfg.ClassTable, seg.Class{Name: n, Color: [3]uint8{uint8(40 + 19*i), uint8(200 - 17*i), uint8(90 * i % 256)}})
	}
	m, err := seg.New(cfg, 1)
	if err != nil {
		return err
	}
	return m.Save(path)
}

func inputVideo(o *options) (string, error) {
	if o.video != "" {
		return "given video", nil
	}
	o.video = filepath.Join(o.work, "input.avi")
	if st, err := os.Stat(filepath.Join(o.camvid, "train")); err == nil && st.IsDir() {
		cmd := exec.Command(o.python, o.peer, "make-video", "--out", o.video, "--prefix", "0016E5",
			"--frames", filepath.Join(o.camvid, "train"), filepath.Join(o.camvid, "val"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("assembling the CamVid video: %v\n%s", err, out)
		}
		return "CamVid 0016E5 frames at 480x360, MJPG", nil
	}
	if err := datasets.GenerateShapesVideo(o.video, 300, 480, 360, 30, 1); err != nil {
		return "", err
	}
	return "generated shapes, 300 frames at 480x360, MJPG", nil
}

var fpsLine = regexp.MustCompile(`\(([0-9.]+) frames/s\)`)

func (o options) runSegtool(masks string) (float64, error) {
	args := []string{"predict", "--model", o.model, "--input", o.video, "--out", filepath.Join(o.work, "segtool.avi"),
		"--batch", strconv.Itoa(o.batch), "-q"}
	if masks != "" {
		args = append(args, "--masks", masks)
	}
	out, err := exec.Command(o.segtool, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v\n%s", o.segtool, strings.Join(args, " "), err, out)
	}
	m := fpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no frames/s in the output of segtool predict:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func (o options) runPeer(threads int, masks string) (float64, error) {
	args := []string{o.peer, "predict", "--model", o.model, "--input", o.video, "--out", filepath.Join(o.work, "peer.avi"),
		"--batch", strconv.Itoa(o.batch), "--threads", strconv.Itoa(threads)}
	if masks != "" {
		args = append(args, "--masks", masks)
	}
	cmd := exec.Command(o.python, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v", o.python, strings.Join(args, " "), err)
	}
	var r struct {
		FPS float64 `json:"fps"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.FPS <= 0 {
		return 0, fmt.Errorf("no frames/s in the output of the peer:\n%s", out)
	}
	return r.FPS, nil
}

// compareMasks reads the grey class masks NNNNNN.png both tools wrote and
// returns the fraction of pixels with the same class.
func compareMasks(a, b string) (float64, int, error) {
	all, err := filepath.Glob(filepath.Join(a, "[0-9]*.png"))
	if err != nil {
		return 0, 0, err
	}
	var names []string
	for _, n := range all {
		if !strings.HasSuffix(n, "_color.png") { // segtool's colour masks beside the class masks
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return 0, 0, fmt.Errorf("segtool wrote no masks in %s", a)
	}
	same, total := 0, 0
	for _, na := range names {
		nb := filepath.Join(b, filepath.Base(na))
		ia, err := readGrey(na)
		if err != nil {
			return 0, 0, err
		}
		ib, err := readGrey(nb)
		if err != nil {
			return 0, 0, err
		}
		if ia.Bounds() != ib.Bounds() {
			return 0, 0, fmt.Errorf("%s is %v but %s is %v", na, ia.Bounds(), nb, ib.Bounds())
		}
		for i := range ia.Pix {
			if ia.Pix[i] == ib.Pix[i] {
				same++
			}
		}
		total += len(ia.Pix)
	}
	return float64(same) / float64(total), len(names), nil
}

func readGrey(path string) (*image.Gray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if g, ok := img.(*image.Gray); ok && g.Stride == g.Rect.Dx() {
		return g, nil
	}
	b := img.Bounds()
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			g.Set(x, y, img.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return g, nil
}
