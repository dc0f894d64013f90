package ops

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Op timings: a coarse profile by op kind (conv forward, its backward
// passes, batch norm, ...) that says where a training step goes, including
// the time spent inside oneDNN's own threads, which a Go CPU profile does not
// see. Off unless EnableTimings is called; then each op costs two clock
// reads.

var (
	timingOn atomic.Bool
	timingMu sync.Mutex
	timings  = map[string]*OpTiming{}
)

// OpTiming is the accumulated wall time of one kind of op.
type OpTiming struct {
	Kind  string
	Calls int
	Total time.Duration
}

// EnableTimings turns op timing on (clearing what was recorded) or off
// (keeping it for Timings).
func EnableTimings(on bool) {
	if on {
		timingMu.Lock()
		timings = map[string]*OpTiming{}
		timingMu.Unlock()
	}
	timingOn.Store(on)
}

// Timings returns the recorded timings, largest total first.
func Timings() []OpTiming {
	timingMu.Lock()
	defer timingMu.Unlock()
	out := make([]OpTiming, 0, len(timings))
	for _, t := range timings {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Total > out[j].Total })
	return out
}

func noTimer() {}

// timer starts timing one op call; call the returned function when it is
// done. Ops are grouped by name ("conv3x3", "conv3x3_dx", "relu", ...).
func timer(name string) func() {
	if !timingOn.Load() {
		return noTimer
	}
	start := time.Now()
	return func() {
		d := time.Since(start)
		timingMu.Lock()
		t := timings[name]
		if t == nil {
			t = &OpTiming{Kind: name}
			timings[name] = t
		}
		t.Calls++
		t.Total += d
		timingMu.Unlock()
	}
}
