package datasets

import (
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"
)

// ColorizeCHW paints a class map (h*w labels) with the class colours as a
// CHW float RGB image in [0,1], ready for WriteGrid. Labels without a colour
// (the ignore index) are black.
func ColorizeCHW(labels []int32, colors [][3]uint8, ignore int) []float32 {
	n := len(labels)
	out := make([]float32, 3*n)
	for i, l := range labels {
		if int(l) == ignore || l < 0 || int(l) >= len(colors) {
			continue
		}
		c := colors[l]
		out[i], out[n+i], out[2*n+i] = float32(c[0])/255, float32(c[1])/255, float32(c[2])/255
	}
	return out
}

// ResizeLabels resizes a class map with nearest-neighbour sampling (pixel
// centres), so no label is invented between two others.
func ResizeLabels(labels []int32, h, w, oh, ow int) []int32 {
	out := make([]int32, oh*ow)
	for y := 0; y < oh; y++ {
		sy := min(h-1, (2*y+1)*h/(2*oh))
		for x := 0; x < ow; x++ {
			out[y*ow+x] = labels[sy*w+min(w-1, (2*x+1)*w/(2*ow))]
		}
	}
	return out
}

// WriteConfusion draws a row-normalised confusion matrix (rows: true class,
// columns: predicted) as a heat map with the class names and each cell's
// value, and writes it atomically as PNG.
func WriteConfusion(path string, m [][]float64, names []string) error {
	k := len(m)
	if k == 0 {
		return fmt.Errorf("confusion image %s: empty matrix", path)
	}
	const cell, left, top = 44, 120, 110
	w, h := left+k*cell+10, top+k*cell+10
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 255, 255, 0), h, w, gocv.MatTypeCV8UC3)
	defer img.Close()
	black := color.RGBA{0, 0, 0, 255}
	font := gocv.FontHersheySimplex
	label := func(i int) string {
		if i < len(names) && names[i] != "" {
			s := names[i]
			if len(s) > 12 {
				s = s[:12]
			}
			return s
		}
		return fmt.Sprint(i)
	}
	gocv.PutText(&img, "true \\ predicted", image.Pt(4, 16), font, 0.45, black, 1)
	for t := 0; t < k; t++ {
		gocv.PutText(&img, label(t), image.Pt(4, top+t*cell+cell/2+5), font, 0.42, black, 1)
		for p := 0; p < k; p++ {
			v := min(1, max(0, m[t][p]))
			// white to dark blue
			r := uint8(255 - 225*v)
			g := uint8(255 - 190*v)
			b := uint8(255 - 90*v)
			x0, y0 := left+p*cell, top+t*cell
			gocv.Rectangle(&img, image.Rect(x0, y0, x0+cell-1, y0+cell-1), color.RGBA{r, g, b, 255}, -1)
			txt := color.RGBA{0, 0, 0, 255}
			if v > 0.55 {
				txt = color.RGBA{255, 255, 255, 255}
			}
			gocv.PutText(&img, fmt.Sprintf("%.2f", v), image.Pt(x0+5, y0+cell/2+4), font, 0.38, txt, 1)
		}
	}
	// predicted-class names, written vertically above the columns
	for p := 0; p < k; p++ {
		s := label(p)
		for j, ch := range s {
			gocv.PutText(&img, string(ch), image.Pt(left+p*cell+cell/2-5, 30+j*7), font, 0.3, black, 1)
		}
	}
	return writeMatPNG(path, img)
}
