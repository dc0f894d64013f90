//go:build matprofile

package datasets

import "gocv.io/x/gocv"

// OpenMats is the number of gocv.Mat values made and not yet closed, in the
// whole program (gocv's Mat profiler, on in this -tags matprofile build).
func OpenMats() int { return gocv.MatProfile.Count() }
