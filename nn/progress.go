package nn

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress is a progress bar with a rate and an ETA, drawn on a terminal
// (standard error by default) and silent elsewhere unless asked.
type Progress struct{ bar *progressbar.ProgressBar }

// NewProgress starts a bar of total units (e.g. "img" or "frame") written to
// w (nil: standard error).
func NewProgress(w io.Writer, total int, desc, unit string) *Progress {
	if w == nil {
		w = os.Stderr
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
func (p *Progress) Add(n int) { _ = p.bar.Add(n) }

// Describe replaces the text before the bar (running loss, say).
func (p *Progress) Describe(s string) { p.bar.Describe(s) }

// Finish clears the bar.
func (p *Progress) Finish() { _ = p.bar.Finish() }
