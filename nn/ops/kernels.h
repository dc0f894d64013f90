/* float32 kernels for the memory-bound ops (see kernels.c and kernels.go). */
#ifndef SEGTOOL_KERNELS_H
#define SEGTOOL_KERNELS_H

void sg_relu(const float *x, float *y, long n);
void sg_relu_grad(const float *y, const float *dy, float *dx, long n);

/* One channel of n images, image i's plane of hw values at x + i*stride. */
double sg_chan_sum(const float *x, int n, long stride, long hw);
double sg_chan_sqdev(const float *x, int n, long stride, long hw, double mean);
void sg_chan_affine(const float *x, float *y, int n, long stride, long hw, float mean, float scale, float shift,
                    int relu);
void sg_chan_dydev(const float *dy, const float *x, int n, long stride, long hw, double mean, double *sdy,
                   double *sdyx);
void sg_chan_bn_dx(const float *dy, const float *x, float *dx, int n, long stride, long hw, float a, float b,
                   float c, float mean);

/* planes consecutive h x w planes. */
void sg_maxpool2(const float *x, float *y, long planes, int h, int w);
void sg_maxpool2_grad(const float *x, const float *dy, float *dx, long planes, int h, int w);
void sg_upsample2(const float *x, float *y, long planes, int h, int w);
void sg_upsample2_grad(const float *dy, float *dx, long planes, int h, int w);

/* Batch norm on nChw16c, block b of cb blocks of 16 channels (arrays of 16). */
void sg_blk_stats(const float *x, int n, int cb, long hw, int b, double *mean, double *var);
void sg_blk_affine(const float *x, float *y, int n, int cb, long hw, int b, const float *mean, const float *scale,
                   const float *shift, int relu);
void sg_blk_dydev(const float *dy, const float *x, int n, int cb, long hw, int b, const double *mean, double *sdy,
                  double *sdyx);
void sg_blk_bn_dx(const float *dy, const float *x, float *dx, int n, int cb, long hw, int b, const float *ka,
                  const float *kb, const float *kc, const float *mean);

/* Softmax cross-entropy over pixels [lo, hi) of one image (see kernels.c);
 * out: loss sum, weight sum, and a bad-label flag and value. */
void sg_ce_chunk(const float *x, const float *lab, float *probs, int *labels, int k, long hw, long lo, long hi,
                 int ignore, const double *w, double *out);

/* nChw16c (c a multiple of 16) to NCHW. */
void sg_blocked_to_plain(const float *src, float *dst, int n, int c, long hw);

#endif
