// Command segbench measures segtool against PyTorch on the reference
// workload of issue 3: the U-Net (base 16, depth 4, 4 classes) on batches of
// 8 x 3 x 128 x 128, softmax cross-entropy and Adam, with and without batch
// norm, on the same CPU threads.
//
//	segbench                       both implementations, both norms, one table
//	segbench -only go -norm none   one measurement of segtool, as a JSON line
//
// Each measurement runs in a process of its own (peak memory is per
// process), and the implementations take turns, round by round, so that
// load from elsewhere on the machine falls on both alike. Times are medians
// over the timed steps; with -rounds > 1, the median of the rounds.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/segtool/segtool/bench/internal/stats"
	"github.com/segtool/segtool/nn"
	"github.com/segtool/segtool/nn/ops"
)

type options struct {
	only, norm, python, script      string
	batch, size, threads            int
	steps, warmup, rounds, profiles int
}

// Result is one implementation's measurement of one configuration.
type Result struct {
	Impl      string  `json:"impl"`
	Norm      string  `json:"norm"`
	Batch     int     `json:"batch"`
	Size      int     `json:"size"`
	Threads   int     `json:"threads"`
	TrainMs   float64 `json:"train_ms"`
	TrainMin  float64 `json:"train_ms_min"`
	InferMs   float64 `json:"infer_ms"`
	InferMin  float64 `json:"infer_ms_min"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	LossFirst float64 `json:"loss_first"`
	LossLast  float64 `json:"loss_last"`
	Params    int     `json:"params"`
	// segtool only: bytes allocated by Go per training step, and the op
	// kinds that took the most time per step.
	AllocMBPerStep float64   `json:"alloc_mb_per_step,omitempty"`
	GCPerStep      float64   `json:"gc_per_step,omitempty"`
	Ops            []OpShare `json:"ops,omitempty"`
	InferOps       []OpShare `json:"infer_ops,omitempty"`
}

// OpShare is one op kind's time per training step.
type OpShare struct {
	Kind  string  `json:"kind"`
	Ms    float64 `json:"ms"`
	Calls int     `json:"calls"`
}

func main() {
	var o options
	flag.StringVar(&o.only, "only", "", "measure one implementation and print JSON: go or torch")
	flag.StringVar(&o.norm, "norm", "both", "none, batch or both")
	flag.IntVar(&o.batch, "batch", 8, "images per batch")
	flag.IntVar(&o.size, "size", 128, "image height and width")
	flag.IntVar(&o.threads, "threads", 2, "threads for both implementations")
	flag.IntVar(&o.steps, "steps", 20, "timed training steps and inference batches per measurement")
	flag.IntVar(&o.warmup, "warmup", 3, "untimed steps first")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of all measurements, taking turns")
	flag.IntVar(&o.profiles, "opsteps", 3, "extra segtool steps timed op by op after the measurement (0: none)")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "the Python that has Debian's python3-torch")
	flag.StringVar(&o.script, "script", "bench/unet_torch.py", "the PyTorch side")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "segbench:", err)
		os.Exit(1)
	}
}

func run(o options, w io.Writer) error {
	norms := []string{o.norm}
	if o.norm == "both" {
		norms = []string{"none", "batch"}
	}
	for _, n := range norms {
		if n != "none" && n != "batch" {
			return fmt.Errorf("-norm %q: want none, batch or both", n)
		}
	}
	switch o.only {
	case "go":
		if len(norms) != 1 {
			return fmt.Errorf("-only go measures one -norm")
		}
		r, err := measureGo(o, norms[0])
		if err != nil {
			return err
		}
		return json.NewEncoder(w).Encode(r)
	case "torch":
		if len(norms) != 1 {
			return fmt.Errorf("-only torch measures one -norm")
		}
		r, err := measureTorch(o, norms[0])
		if err != nil {
			return err
		}
		return json.NewEncoder(w).Encode(r)
	case "":
	default:
		return fmt.Errorf("-only %q: want go or torch", o.only)
	}
	return table(o, norms, w)
}

func peakRSSMB() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}

// measureGo runs segtool's side in this process.
func measureGo(o options, norm string) (*Result, error) {
	runtime.GOMAXPROCS(o.threads)
	if err := ops.SetDNNLThreads(o.threads); err != nil {
		return nil, err
	}
	if path := os.Getenv("SEGTOOL_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	net := Net{Batch: o.batch, Size: o.size, Base: 16, Depth: 4, Classes: 4, Norm: nn.Norm(norm)}
	store := newStore(1)
	tr, err := newTrainer(store, net)
	if err != nil {
		return nil, err
	}
	x, labels := randomBatch(net, 1)
	res := &Result{Impl: "segtool (oneDNN " + ops.DNNLVersion() + ")", Norm: norm, Batch: o.batch, Size: o.size, Threads: o.threads, Params: store.NumParams()}
	var train []float64
	var ms0, ms1 runtime.MemStats
	for i := 0; i < o.warmup+o.steps; i++ {
		if i == o.warmup {
			runtime.ReadMemStats(&ms0)
		}
		t0 := time.Now()
		loss, err := tr.step(x, labels)
		if err != nil {
			return nil, err
		}
		dt := time.Since(t0)
		if i == 0 {
			res.LossFirst = loss
		}
		res.LossLast = loss
		if i >= o.warmup {
			train = append(train, float64(dt.Microseconds())/1e3)
		}
	}
	runtime.ReadMemStats(&ms1)
	res.AllocMBPerStep = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(o.steps) / (1 << 20)
	res.GCPerStep = float64(ms1.NumGC-ms0.NumGC) / float64(o.steps)
	res.TrainMs, res.TrainMin = stats.Median(train), slices.Min(train)

	runner := newRunner(store, net)
	defer runner.Close()
	var infer []float64
	for i := 0; i < o.warmup+o.steps; i++ {
		t0 := time.Now()
		if _, err := runner.Run(o.batch, x); err != nil {
			return nil, err
		}
		if i >= o.warmup {
			infer = append(infer, float64(time.Since(t0).Microseconds())/1e3)
		}
	}
	res.InferMs, res.InferMin = stats.Median(infer), slices.Min(infer)
	res.PeakRSSMB = peakRSSMB()

	if o.profiles > 0 {
		var err error
		if res.Ops, err = opTimings(o.profiles, func() error { _, err := tr.step(x, labels); return err }); err != nil {
			return nil, err
		}
		if res.InferOps, err = opTimings(o.profiles, func() error { _, err := runner.Run(o.batch, x); return err }); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// opTimings runs f n times with op timings on and returns the time per run
// of each op kind, the whole run first and what was outside the ops last.
func opTimings(n int, f func() error) ([]OpShare, error) {
	ops.EnableTimings(true)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := f(); err != nil {
			ops.EnableTimings(false)
			return nil, err
		}
	}
	total := time.Since(t0)
	ops.EnableTimings(false)
	var inOps time.Duration
	out := []OpShare{{Kind: "(whole)", Ms: ms(total) / float64(n)}}
	for _, t := range ops.Timings() {
		inOps += t.Total
		out = append(out, OpShare{Kind: t.Kind, Ms: ms(t.Total) / float64(n), Calls: t.Calls / n})
	}
	return append(out, OpShare{Kind: "(outside segtool's ops)", Ms: ms(total-inOps) / float64(n)}), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// measureTorch runs the PyTorch side in its own process.
func measureTorch(o options, norm string) (*Result, error) {
	cmd := exec.Command(o.python, o.script, "bench", "--norm", norm, "--batch", fmt.Sprint(o.batch),
		"--size", fmt.Sprint(o.size), "--threads", fmt.Sprint(o.threads), "--steps", fmt.Sprint(o.steps),
		"--warmup", fmt.Sprint(o.warmup))
	return runChild(cmd)
}

func runChild(cmd *exec.Cmd) (*Result, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return nil, fmt.Errorf("%s: reading its result: %v", strings.Join(cmd.Args, " "), err)
	}
	return &r, nil
}

// table runs every measurement in child processes, taking turns, and prints
// the comparison.
func table(o options, norms []string, w io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := exec.LookPath(o.python); err != nil {
		return fmt.Errorf("no %s: PyTorch's side needs Debian's python3-torch (make bench installs it)", o.python)
	}
	startLoad := stats.LoadAvg()
	start := time.Now()
	results := map[string][]*Result{} // impl/norm -> rounds
	for r := 0; r < o.rounds; r++ {
		for _, norm := range norms {
			args := []string{"-only", "go", "-norm", norm, "-batch", fmt.Sprint(o.batch), "-size", fmt.Sprint(o.size),
				"-threads", fmt.Sprint(o.threads), "-steps", fmt.Sprint(o.steps), "-warmup", fmt.Sprint(o.warmup),
				"-opsteps", fmt.Sprint(o.profiles)}
			g, err := runChild(exec.Command(self, args...))
			if err != nil {
				return err
			}
			results["go/"+norm] = append(results["go/"+norm], g)
			t, err := measureTorch(o, norm)
			if err != nil {
				return err
			}
			results["torch/"+norm] = append(results["torch/"+norm], t)
			fmt.Fprintf(os.Stderr, "round %d norm %s: segtool train %.0f ms infer %.0f ms | PyTorch train %.0f ms infer %.0f ms\n",
				r+1, norm, g.TrainMs, g.InferMs, t.TrainMs, t.InferMs)
		}
	}
	fmt.Fprintf(w, "U-Net base 16 depth 4, batch %d x 3 x %d x %d, 4 classes, softmax CE + Adam, %d threads; %d timed steps after %d warm-up, %d round(s)\n",
		o.batch, o.size, o.size, o.threads, o.steps, o.warmup, o.rounds)
	fmt.Fprintf(w, "load average before: %s, after: %s (%s)\n", startLoad, stats.LoadAvg(), time.Since(start).Round(time.Second))
	var g0, t0 *Result
	if rs := results["go/"+norms[0]]; len(rs) > 0 {
		g0 = rs[0]
	}
	if rs := results["torch/"+norms[0]]; len(rs) > 0 {
		t0 = rs[0]
	}
	fmt.Fprintf(w, "%s vs %s\n\n", g0.Impl, t0.Impl)
	fmt.Fprintln(w, "| norm | metric | segtool | PyTorch | segtool/PyTorch |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: |")
	for _, norm := range norms {
		g, t := summarise(results["go/"+norm]), summarise(results["torch/"+norm])
		net := Net{Batch: o.batch, Size: o.size, Base: 16, Depth: 4, Classes: 4}
		fwd, trn := net.ConvFLOPs()
		img := float64(o.batch)
		row := func(metric string, a, b float64, format string) {
			fmt.Fprintf(w, "| %s | %s | "+format+" | "+format+" | %.2fx |\n", norm, metric, a, b, a/b)
		}
		row("train step ms", g.TrainMs, t.TrainMs, "%.1f")
		row("inference ms / batch", g.InferMs, t.InferMs, "%.1f")
		row("train step ms, best", g.TrainMin, t.TrainMin, "%.1f")
		row("inference ms, best", g.InferMin, t.InferMin, "%.1f")
		row("train images/s", img/g.TrainMs*1e3, img/t.TrainMs*1e3, "%.1f")
		row("inference images/s", img/g.InferMs*1e3, img/t.InferMs*1e3, "%.1f")
		row("peak RSS MB", g.PeakRSSMB, t.PeakRSSMB, "%.0f")
		row("train conv GFLOP/s", trn/g.TrainMs/1e6, trn/t.TrainMs/1e6, "%.1f")
		row("inference conv GFLOP/s", fwd/g.InferMs/1e6, fwd/t.InferMs/1e6, "%.1f")
	}
	net := Net{Batch: o.batch, Size: o.size, Base: 16, Depth: 4, Classes: 4}
	fwd, trn := net.ConvFLOPs()
	fmt.Fprintf(w, "\nconv work: %.2f GFLOP per inference batch, %.2f GFLOP per training step (ratios below 1.00x: segtool is faster or smaller)\n", fwd/1e9, trn/1e9)
	for _, norm := range norms {
		g := summarise(results["go/"+norm])
		fmt.Fprintf(w, "segtool norm %s: %.2f MB allocated by Go per training step, %.2f GCs per step; loss %.4f -> %.4f over %d steps\n",
			norm, g.AllocMBPerStep, g.GCPerStep, g.LossFirst, g.LossLast, o.warmup+o.steps)
		for _, part := range []struct {
			what string
			ops  []OpShare
		}{{"training step", g.Ops}, {"inference batch", g.InferOps}} {
			if len(part.ops) == 0 {
				continue
			}
			fmt.Fprintf(w, "  where a segtool %s goes (norm %s, ms, op timings on):\n", part.what, norm)
			for _, op := range part.ops {
				if op.Ms < 0.05 && op.Calls > 0 {
					continue
				}
				if op.Calls > 0 {
					fmt.Fprintf(w, "    %-24s %7.1f ms  (%d calls)\n", op.Kind, op.Ms, op.Calls)
				} else {
					fmt.Fprintf(w, "    %-24s %7.1f ms\n", op.Kind, op.Ms)
				}
			}
		}
	}
	return nil
}

// summarise takes the median of each time over rounds, the largest peak
// memory, and the first round's other numbers.
func summarise(rs []*Result) Result {
	if len(rs) == 0 {
		return Result{}
	}
	s := *rs[0]
	var tr, in []float64
	for _, r := range rs {
		tr = append(tr, r.TrainMs)
		in = append(in, r.InferMs)
		s.PeakRSSMB = max(s.PeakRSSMB, r.PeakRSSMB)
	}
	s.TrainMs, s.InferMs = stats.Median(tr), stats.Median(in)
	for _, r := range rs {
		s.TrainMin, s.InferMin = min(s.TrainMin, r.TrainMin), min(s.InferMin, r.InferMin)
	}
	return s
}
