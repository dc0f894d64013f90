// Command segtool trains and runs encoder-decoder models for images: a
// reconstruction auto-encoder, a variational auto-encoder and a U-Net
// segmenter on one shared encoder, and predicts, evaluates and samples.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SEGTOOL_CPUPROFILE=FILE writes a CPU profile of the whole command (for
	// `go tool pprof`): where the time goes is a question worth one variable.
	if path := os.Getenv("SEGTOOL_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer f.Close()
				defer pprof.StopCPUProfile()
			}
		}
	}
	// segtool's heap is mostly long-lived, pointer-free tensors (the
	// buffers of the training and inference graphs, the decoded data set),
	// which a collection does not scan, so collecting more often is cheap,
	// while Go's default (GOGC=100) lets the heap grow to twice what is live.
	// Measured on CamVid training (batch 8 at 256x192): peak RSS 2.85 GB at
	// 100, 2.0 GB at 25, the same CPU time. GOGC, when set, still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if code != 0 {
		pprof.StopCPUProfile()
		os.Exit(code)
	}
}

// run is the whole program; it returns the exit status: 0, 1 for any error
// (one line on stderr), 130 for a run interrupted after saving.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:    "segtool",
		Usage:   "train and run encoder-decoder models (auto-encoder, VAE, U-Net segmenter) on your images",
		Version: version,
		Commands: []*cli.Command{
			trainCommand(),
			reconstructCommand(),
			evalCommand(),
			sampleCommand(),
			interpolateCommand(),
			traverseCommand(),
			encodeCommand(),
			decodeCommand(),
			dataCommand(),
			predictCommand(),
		},
		// One line on standard error and exit 1 is what every failure gets;
		// urfave would otherwise print help for some and exit for others.
		ExitErrHandler: func(*cli.Context, error) {},
		Writer:         stdout,
		ErrWriter:      stderr,
	}
	err := app.RunContext(ctx, flagsFirst(app, args))
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "segtool:", err)
	var interrupted interruptedError
	if errors.As(err, &interrupted) {
		return 130
	}
	return 1
}

// interruptedError reports a run stopped by Ctrl-C after saving.
type interruptedError struct{ msg string }

func (e interruptedError) Error() string { return e.msg }

// guard turns a panic inside a command into an error, so a bug reaches the
// user as one line and deferred cleanup (temporary files) still runs.
func guard(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if os.Getenv("SEGTOOL_DEBUG") != "" {
					fmt.Fprintf(os.Stderr, "%s\n", debug.Stack())
				}
				err = fmt.Errorf("internal error in %s: %v (please report it; SEGTOOL_DEBUG=1 prints the stack)", c.Command.Name, r)
			}
		}()
		if c.NArg() > 0 && c.Command.ArgsUsage == "" {
			return fmt.Errorf("%s: unexpected argument %q (this command takes options only, each as --name value)", c.Command.Name, c.Args().First())
		}
		return action(c)
	}
}
