//go:build !matprofile

package datasets

// OpenMats is the number of gocv.Mat values made and not yet closed, in the
// whole program. It is only counted in builds with -tags matprofile (gocv's
// Mat profiler); otherwise it is -1.
func OpenMats() int { return -1 }
