//go:build matprofile

package datasets

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"gocv.io/x/gocv"
)

// TestMain, under -tags matprofile, fails the run when any gocv.Mat made by
// the package or its tests is left unclosed:
//
//	go test -tags matprofile ./datasets
func TestMain(m *testing.M) {
	code := m.Run()
	if n := gocv.MatProfile.Count(); n != 0 {
		var b bytes.Buffer
		gocv.MatProfile.WriteTo(&b, 1)
		fmt.Fprintf(os.Stderr, "%d gocv.Mat left open:\n%s", n, b.String())
		code = 1
	}
	os.Exit(code)
}
