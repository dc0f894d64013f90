package nn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segtool/segtool/nn/safetensors"
	G "gorgonia.org/gorgonia"
)

// Dataset is what the trainer reads examples from. The datasets package
// satisfies it without importing nn.
type Dataset interface {
	// Len is the number of examples.
	Len() int
	// Shape is every image's channels, height and width.
	Shape() (c, h, w int)
	// Get returns example i: the image as C*H*W float32 and, for labelled
	// data, its H*W class map (nil otherwise). seed drives augmentation.
	// The slices must not be modified.
	Get(i int, seed uint64) (img []float32, mask []int32, err error)
}

// Batch is one minibatch in NCHW.
type Batch struct {
	N, C, H, W int
	X          []float32 // N*C*H*W
	Masks      []int32   // N*H*W, or nil for unlabelled data
	// Seed is this step's own seed, for noise a task draws (denoising, the
	// VAE's epsilon): a resumed run draws the same.
	Seed uint64
	// Epoch (from 0) and Progress, the fractional epoch (epoch +
	// step/steps), for schedules such as a KL warm-up.
	Epoch    int
	Progress float64
}

// TrainGraph is a task's training graph for one batch size.
type TrainGraph struct {
	Scope *Scope
	// Loss is the scalar to minimise.
	Loss *G.Node
	// Logs are further scalars averaged over the epoch and reported beside
	// the loss (an ELBO's two terms, say).
	Logs map[string]*G.Node
	// Feed copies a batch into the graph's inputs.
	Feed func(Batch) error
}

// Task is what the trainer trains: the AE, the VAE or the segmenter.
type Task interface {
	// BuildTrain builds the training graph for batches of n into s.
	BuildTrain(s *Scope, n int) (*TrainGraph, error)
	// Validate scores the model in store on ds (the trainer's mode is not
	// involved: it builds its own inference graphs).
	Validate(ctx context.Context, store *Store, ds Dataset) (map[string]float64, error)
	// Metadata goes into every model file the run writes.
	Metadata() (map[string]string, error)
	// Best names the validation metric that picks the best model, and
	// whether higher is better.
	Best() (metric string, higher bool)
}

// TrainOptions configures a run.
type TrainOptions struct {
	Epochs int
	// Batch is the minibatch size; the last incomplete batch of an epoch is
	// dropped (a data set smaller than Batch trains on batches of its size).
	Batch       int
	LR          float64
	WeightDecay float64
	Seed        uint64
	// RunDir receives metrics.jsonl, last.safetensors, best.safetensors and
	// state.safetensors.
	RunDir string
	// Resume continues the run in RunDir from its state file.
	Resume bool
	// Progress receives the progress bar (nil: standard error); Log the
	// epoch summaries (nil: discarded).
	Progress, Log io.Writer
	// Quiet hides the progress bar.
	Quiet bool
	// Schedule is the learning-rate schedule: "constant" (default) or
	// "cosine" (from LR down to 0 over the run, half a cosine, per step).
	Schedule string
	// FreezePrefix and FreezeEpochs keep the parameters whose names start
	// with the prefix (e.g. "encoder.") fixed for the first FreezeEpochs
	// epochs: a pretrained encoder is not disturbed while the decoder learns.
	FreezePrefix string
	FreezeEpochs int
	// AfterEpoch, when set, is called after each epoch's line is in
	// metrics.jsonl, with every epoch's metrics so far (those before a
	// resume too): the place to draw curves. An error stops training.
	AfterEpoch func(history []EpochMetrics) error
}

// ErrInterrupted is returned when the context is cancelled (Ctrl-C): the
// trainer has saved the model and its state, and --resume continues.
var ErrInterrupted = errors.New("training interrupted")

// EpochMetrics is one line of metrics.jsonl.
type EpochMetrics map[string]float64

// Result summarises a run.
type Result struct {
	Epochs   int
	Last     EpochMetrics
	Best     float64
	BestPath string
	LastPath string
}

// Files in a run directory.
const (
	LastModel   = "last.safetensors"
	BestModel   = "best.safetensors"
	StateFile   = "state.safetensors"
	MetricsFile = "metrics.jsonl"
)

type runState struct {
	epoch, step int
	best        float64
	hasBest     bool
}

// Train runs the training loop: epochs of minibatches in an order shuffled
// from the seed and epoch, Adam, validation after each epoch, metrics.jsonl,
// last and best models, and a state file for --resume. The order, the
// per-example augmentation seeds and the per-step noise seeds all derive from
// (seed, epoch, step), so an interrupted and resumed run computes exactly
// what an uninterrupted one does.
func Train(ctx context.Context, task Task, store *Store, train, val Dataset, opt TrainOptions) (*Result, error) {
	if train.Len() == 0 {
		return nil, errors.New("training set is empty")
	}
	if opt.Schedule != "" && opt.Schedule != "constant" && opt.Schedule != "cosine" {
		return nil, fmt.Errorf("unknown learning-rate schedule %q (constant or cosine)", opt.Schedule)
	}
	if opt.Epochs < 1 || opt.Batch < 1 || !(opt.LR > 0) {
		return nil, fmt.Errorf("epochs, batch and lr must be positive (got %d, %d, %g)", opt.Epochs, opt.Batch, opt.LR)
	}
	batch := min(opt.Batch, train.Len())
	steps := train.Len() / batch
	if err := os.MkdirAll(opt.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	log := opt.Log
	if log == nil {
		log = io.Discard
	}

	scope := NewScope(store, TrainMode)
	tg, err := task.BuildTrain(scope, batch)
	if err != nil {
		return nil, fmt.Errorf("build training graph: %w", err)
	}
	nodes, params := scope.Learnables()
	if len(nodes) == 0 {
		return nil, errors.New("model has no trainable parameters")
	}
	if _, err := G.Grad(tg.Loss, nodes...); err != nil {
		return nil, fmt.Errorf("differentiate: %w", err)
	}
	vm := G.NewTapeMachine(scope.Graph(), G.BindDualValues(nodes...))
	defer vm.Close()

	adam := NewAdam(opt.LR, opt.WeightDecay)
	st := runState{}
	if opt.Resume {
		if st, err = loadState(opt.RunDir, store, adam, opt); err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		if st.epoch >= opt.Epochs {
			return nil, fmt.Errorf("resume: the run in %s has already done %d epochs; ask for more with --epochs", opt.RunDir, st.epoch)
		}
		if err := truncateMetrics(filepath.Join(opt.RunDir, MetricsFile), st.epoch); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "resuming %s at epoch %d step %d\n", opt.RunDir, st.epoch+1, st.step)
	} else if err := os.WriteFile(filepath.Join(opt.RunDir, MetricsFile), nil, 0o644); err != nil {
		return nil, err
	}
	meta, err := task.Metadata()
	if err != nil {
		return nil, err
	}
	bestName, higher := task.Best()
	res := &Result{LastPath: filepath.Join(opt.RunDir, LastModel), BestPath: filepath.Join(opt.RunDir, BestModel)}

	save := func(epoch, step int) error {
		if err := SaveModel(res.LastPath, store, meta); err != nil {
			return err
		}
		return saveState(opt.RunDir, adam, runState{epoch: epoch, step: step, best: st.best, hasBest: st.hasBest}, opt)
	}

	c, h, w := train.Shape()
	for epoch := st.epoch; epoch < opt.Epochs; epoch++ {
		start := time.Now()
		perm := rand.New(rand.NewPCG(opt.Seed, uint64(epoch))).Perm(train.Len())
		first := 0
		if epoch == st.epoch {
			first = st.step
		}
		bctx, cancel := context.WithCancel(ctx)
		batches := prefetch(bctx, train, perm, batch, first, steps, opt.Seed, epoch, c, h, w)
		var bar *Progress
		if !opt.Quiet {
			bar = NewProgress(opt.Progress, (steps-first)*batch, fmt.Sprintf("epoch %d/%d", epoch+1, opt.Epochs), "img")
		}
		sums := map[string]float64{}
		done := 0
		for step := first; step < steps; step++ {
			if ctx.Err() != nil {
				cancel()
				if bar != nil {
					bar.Finish()
				}
				if err := save(epoch, step); err != nil {
					return nil, fmt.Errorf("saving after interrupt: %w", err)
				}
				return res, ErrInterrupted
			}
			b, ok := <-batches
			if !ok || b.err != nil {
				cancel()
				if bar != nil {
					bar.Finish()
				}
				if ctx.Err() != nil {
					continue // interrupted while loading: handled at the top
				}
				if b.err == nil {
					b.err = errors.New("data loader stopped")
				}
				return nil, b.err
			}
			if err := tg.Feed(b.Batch); err != nil {
				cancel()
				return nil, err
			}
			if err := vm.RunAll(); err != nil {
				cancel()
				return nil, fmt.Errorf("epoch %d step %d: %w", epoch+1, step, err)
			}
			loss, err := Scalar(tg.Loss.Value())
			if err != nil {
				cancel()
				return nil, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				cancel()
				if bar != nil {
					bar.Finish()
				}
				return nil, fmt.Errorf("epoch %d step %d: the loss became %v; the saved models are from before this epoch — try a lower --lr", epoch+1, step, loss)
			}
			sums["loss"] += loss
			for k, n := range tg.Logs {
				v, err := Scalar(n.Value())
				if err != nil {
					cancel()
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				sums[k] += v
			}
			var frozen func(string) bool
			if epoch < opt.FreezeEpochs && opt.FreezePrefix != "" {
				frozen = func(name string) bool { return strings.HasPrefix(name, opt.FreezePrefix) }
			}
			adam.LR = ScheduledLR(opt.Schedule, opt.LR, float64(epoch)+float64(step)/float64(steps), opt.Epochs)
			if err := adam.Step(nodes, params, frozen); err != nil {
				cancel()
				return nil, err
			}
			vm.Reset()
			done++
			if bar != nil {
				bar.Describe(fmt.Sprintf("epoch %d/%d loss %.4g", epoch+1, opt.Epochs, sums["loss"]/float64(done)))
				bar.Add(batch)
			}
		}
		cancel()
		if bar != nil {
			bar.Finish()
		}
		m := EpochMetrics{"epoch": float64(epoch + 1)}
		for k, v := range sums {
			m["train_"+k] = v / float64(max(done, 1))
		}
		m["train_images_per_s"] = float64(done*batch) / time.Since(start).Seconds()
		m["lr"] = adam.LR
		if val != nil && val.Len() > 0 {
			vals, err := task.Validate(ctx, store, val)
			if err != nil {
				if ctx.Err() != nil {
					if err := save(epoch+1, 0); err != nil {
						return nil, err
					}
					return res, ErrInterrupted
				}
				return nil, fmt.Errorf("validation: %w", err)
			}
			for k, v := range vals {
				m["val_"+k] = v
			}
		}
		m["seconds"] = time.Since(start).Seconds()
		if err := appendMetrics(filepath.Join(opt.RunDir, MetricsFile), m); err != nil {
			return nil, err
		}
		fmt.Fprintln(log, formatMetrics(m))
		if opt.AfterEpoch != nil {
			hist, err := ReadMetrics(filepath.Join(opt.RunDir, MetricsFile))
			if err != nil {
				return nil, err
			}
			if err := opt.AfterEpoch(hist); err != nil {
				return nil, err
			}
		}

		key := "val_" + bestName
		if _, ok := m[key]; !ok {
			key = "train_loss" // no validation set: the training loss decides
			higher = false
		}
		if v := m[key]; !st.hasBest || (higher && v > st.best) || (!higher && v < st.best) {
			st.best, st.hasBest = v, true
			if err := SaveModel(res.BestPath, store, meta); err != nil {
				return nil, err
			}
		}
		if err := save(epoch+1, 0); err != nil {
			return nil, err
		}
		res.Epochs, res.Last, res.Best = epoch+1, m, st.best
	}
	return res, nil
}

type loaded struct {
	Batch
	err error
}

// prefetch assembles batches on a separate goroutine, two ahead, so decoding
// and augmentation overlap the training step; the examples of a batch are
// loaded by two workers (each example has its own seed, so the result does
// not depend on which worker loads it).
func prefetch(ctx context.Context, ds Dataset, perm []int, batch, first, steps int, seed uint64, epoch, c, h, w int) <-chan loaded {
	ch := make(chan loaded, 2)
	go func() {
		defer close(ch)
		for step := first; step < steps; step++ {
			b, err := loadBatch(ds, perm[step*batch:(step+1)*batch], seed, epoch, step, c, h, w)
			if err == nil {
				b.Progress = float64(epoch) + float64(step)/float64(steps)
			}
			select {
			case ch <- loaded{Batch: b, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func loadBatch(ds Dataset, idx []int, seed uint64, epoch, step, c, h, w int) (Batch, error) {
	n := len(idx)
	b := Batch{N: n, C: c, H: h, W: w, X: make([]float32, n*c*h*w),
		Seed: mix(seed, uint64(epoch), uint64(step), 0), Epoch: epoch}
	errs := make([]error, n)
	masks := make([][]int32, n)
	var wg sync.WaitGroup
	const workers = 2
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			for k := wk; k < n; k += workers {
				img, mask, err := ds.Get(idx[k], mix(seed, uint64(epoch), uint64(step), uint64(k)+1))
				if err == nil && len(img) != c*h*w {
					err = fmt.Errorf("example %d has %d values, want %dx%dx%d", idx[k], len(img), c, h, w)
				}
				if err == nil && mask != nil && len(mask) != h*w {
					err = fmt.Errorf("example %d has a mask of %d values, want %dx%d", idx[k], len(mask), h, w)
				}
				if err != nil {
					errs[k] = err
					continue
				}
				copy(b.X[k*c*h*w:], img)
				masks[k] = mask
			}
		}(wk)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return b, err // the first in batch order, whichever worker met it
		}
	}
	if masks[0] != nil {
		b.Masks = make([]int32, n*h*w)
		for k, m := range masks {
			if m == nil {
				return b, fmt.Errorf("example %d has no mask while others have", idx[k])
			}
			copy(b.Masks[k*h*w:], m)
		}
	}
	return b, nil
}

// ScheduledLR is the learning rate at a point of the run (progress in
// epochs, fractional) under the schedule.
func ScheduledLR(schedule string, lr, progress float64, epochs int) float64 {
	if schedule == "cosine" {
		return lr * 0.5 * (1 + math.Cos(math.Pi*min(progress/float64(epochs), 1)))
	}
	return lr
}

// mix hashes its arguments into one seed (splitmix64 steps).
func mix(vs ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range vs {
		h ^= v + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

func formatMetrics(m EpochMetrics) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "epoch %d:", int(m["epoch"]))
	for _, k := range sortedKeys(m) {
		if k == "epoch" {
			continue
		}
		fmt.Fprintf(&b, " %s=%.4g", k, m[k])
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func appendMetrics(path string, m EpochMetrics) error {
	clean := map[string]float64{}
	for k, v := range m {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			clean[k] = v
		}
	}
	line, err := json.Marshal(clean)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadMetrics reads a run's metrics.jsonl: one EpochMetrics per line, in
// order. A last line cut short (a run killed while writing it) is left
// out; any other line that is not a JSON object of numbers is an error.
func ReadMetrics(path string) ([]EpochMetrics, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(b, []byte("\n"))
	var out []EpochMetrics
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m EpochMetrics
		if err := json.Unmarshal(line, &m); err != nil {
			if i == len(lines)-1 {
				break // no newline after it: cut short
			}
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// truncateMetrics keeps the lines of epochs up to epoch (a resumed run
// rewrites the rest).
func truncateMetrics(path string, epoch int) error {
	ms, err := ReadMetrics(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep bytes.Buffer
	for _, m := range ms {
		if int(m["epoch"]) <= epoch {
			line, err := json.Marshal(m)
			if err != nil {
				return err
			}
			keep.Write(append(line, '\n'))
		}
	}
	return os.WriteFile(path, keep.Bytes(), 0o644)
}

func saveState(dir string, adam *Adam, st runState, opt TrainOptions) error {
	meta := map[string]string{
		MetaFormat:   FormatVersion,
		"epoch":      strconv.Itoa(st.epoch),
		"step":       strconv.Itoa(st.step),
		"adam_steps": strconv.Itoa(adam.Steps()),
		"seed":       strconv.FormatUint(opt.Seed, 10),
		"batch":      strconv.Itoa(opt.Batch),
	}
	if st.hasBest {
		meta["best"] = strconv.FormatFloat(st.best, 'g', -1, 64)
	}
	if err := safetensors.Write(filepath.Join(dir, StateFile), adam.tensors(), meta); err != nil {
		return fmt.Errorf("save training state: %w", err)
	}
	return nil
}

func loadState(dir string, store *Store, adam *Adam, opt TrainOptions) (runState, error) {
	var st runState
	path := filepath.Join(dir, StateFile)
	f, err := safetensors.Read(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, fmt.Errorf("%s has no %s to resume from", dir, StateFile)
		}
		return st, err
	}
	if f.Metadata["seed"] != strconv.FormatUint(opt.Seed, 10) || f.Metadata["batch"] != strconv.Itoa(opt.Batch) {
		return st, fmt.Errorf("%s was started with seed %s and batch %s; resume with the same (got seed %d, batch %d)",
			dir, f.Metadata["seed"], f.Metadata["batch"], opt.Seed, opt.Batch)
	}
	if st.epoch, err = strconv.Atoi(f.Metadata["epoch"]); err != nil {
		return st, fmt.Errorf("%s: bad epoch %q", path, f.Metadata["epoch"])
	}
	if st.step, err = strconv.Atoi(f.Metadata["step"]); err != nil {
		return st, fmt.Errorf("%s: bad step %q", path, f.Metadata["step"])
	}
	if b, ok := f.Metadata["best"]; ok {
		if st.best, err = strconv.ParseFloat(b, 64); err != nil {
			return st, fmt.Errorf("%s: bad best %q", path, b)
		}
		st.hasBest = true
	}
	if err := adam.restore(f, store, f.Metadata["adam_steps"]); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	mf, err := ReadModel(filepath.Join(dir, LastModel))
	if err != nil {
		return st, err
	}
	if _, err := store.Load(mf, "", true); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, LastModel), err)
	}
	return st, nil
}
