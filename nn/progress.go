package nn

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress is a progress bar with a rate and an ETA. It is drawn only on a
// terminal: in a log file or a pipe its redraws would be noise, and the
// per-epoch summary lines say what is needed there.
type Progress struct{ bar *progressbar.ProgressBar }

// NewProgress starts a bar of total units (e.g. "img" or "frame") written to
// w (nil: standard error). A w that is a file but not a terminal gets no bar;
// any other writer gets one (tests).
func NewProgress(w io.Writer, total int, desc, unit string) *Progress {
	if w == nil {
		w = os.Stderr
	}
	if f, ok := w.(*os.File); ok && !term.IsTerminal(int(f.Fd())) {
		return &Progress{}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(250*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return &Progress{bar: bar}
}

// Add advances the bar by n units.
func (p *Progress) Add(n int) {
	if p.bar != nil {
		_ = p.bar.Add(n)
	}
}

// Describe replaces the text before the bar (running loss, say).
func (p *Progress) Describe(s string) {
	if p.bar != nil {
		p.bar.Describe(s)
	}
}

// Finish clears the bar.
func (p *Progress) Finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
