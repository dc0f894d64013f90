// Package datasets is everything in segtool that touches files and pixels:
// folders of images, the MNIST idx files, the generated "shapes" demo data
// set and its video, and writing images (grids of samples, PNGs).
//
// It is the only package of segtool that imports GoCV (OpenCV). A gocv.Mat
// never leaves it: images cross the package boundary as plain []float32
// tensors in CHW order (one sample) with values in [0,1] and RGB channel
// order, and class masks as []int32 (one class index per pixel, H*W).
//
// Every file this package writes is written to a temporary name in the
// destination folder and renamed into place, so an interrupted run never
// leaves a half-written file behind.
package datasets
