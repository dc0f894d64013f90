// Package stats has the small numbers the benchmarks in bench/ report.
package stats

import (
	"os"
	"slices"
	"strings"
)

// Median is the middle value of v (the mean of the two middle ones for an
// even count; 0 for none). v is left alone.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// LoadAvg is the 1, 5 and 15 minute load averages from /proc/loadavg, or
// "?" where there is none.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
