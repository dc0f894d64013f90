// float32 kernels of segtool's memory-bound ops (see kernels.go). Go does
// not vectorise loops; these are compiled for AVX-512, AVX2 and plain x86-64
// (target_clones: the loader picks one for the CPU) and are 2-4x faster
// than the same loops in Go on these machines.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((target_clones("avx512f", "avx2", "default"))) __attribute__((optimize("O3")))
#else
#define KERNEL __attribute__((optimize("O3")))
#endif

KERNEL void sg_relu(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

KERNEL void sg_relu_grad(const float *y, const float *dy, float *dx, long n) {
    for (long i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}

// One channel of n images: image i's plane starts at x + i*stride.

KERNEL double sg_chan_sum(const float *x, int n, long stride, long hw) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        const float *p = x + i * stride;
#pragma omp simd reduction(+ : s)
        for (long j = 0; j < hw; j++) s += p[j];
    }
    return s;
}

KERNEL double sg_chan_sqdev(const float *x, int n, long stride, long hw, double mean) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        const float *p = x + i * stride;
#pragma omp simd reduction(+ : s)
        for (long j = 0; j < hw; j++) {
            double d = (double)p[j] - mean;
            s += d * d;
        }
    }
    return s;
}

KERNEL void sg_chan_affine(const float *x, float *y, int n, long stride, long hw, float mean, float scale, float shift,
                           int relu) {
    for (int i = 0; i < n; i++) {
        const float *p = x + i * stride;
        float *q = y + i * stride;
        if (relu) {
            for (long j = 0; j < hw; j++) {
                float v = (p[j] - mean) * scale + shift;
                q[j] = v > 0 ? v : 0;
            }
        } else {
            for (long j = 0; j < hw; j++) q[j] = (p[j] - mean) * scale + shift;
        }
    }
}

KERNEL void sg_chan_dydev(const float *dy, const float *x, int n, long stride, long hw, double mean, double *sdy,
                          double *sdyx) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        const float *g = dy + i * stride, *p = x + i * stride;
#pragma omp simd reduction(+ : a, b)
        for (long j = 0; j < hw; j++) {
            a += g[j];
            b += (double)g[j] * ((double)p[j] - mean);
        }
    }
    *sdy = a;
    *sdyx = b;
}

KERNEL void sg_chan_bn_dx(const float *dy, const float *x, float *dx, int n, long stride, long hw, float a, float b,
                          float c, float mean) {
    for (int i = 0; i < n; i++) {
        const float *g = dy + i * stride, *p = x + i * stride;
        float *q = dx + i * stride;
        for (long j = 0; j < hw; j++) q[j] = a * g[j] + b * (p[j] - mean) + c;
    }
}

// Planes of h x w (contiguous, planes of them in a row).

KERNEL void sg_maxpool2(const float *x, float *y, long planes, int h, int w) {
    int oh = h / 2, ow = w / 2;
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * h * w;
        float *yp = y + p * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
            float *o = yp + oy * ow;
            for (int ox = 0; ox < ow; ox++) {
                float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
                float m0 = a > b ? a : b, m1 = c > d ? c : d;
                o[ox] = m0 > m1 ? m0 : m1;
            }
        }
    }
}

// The gradient goes to the first maximum of each window in reading order.
KERNEL void sg_maxpool2_grad(const float *x, const float *dy, float *dx, long planes, int h, int w) {
    int oh = h / 2, ow = w / 2;
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * h * w, *g = dy + p * oh * ow;
        float *dp = dx + p * h * w;
        for (int oy = 0; oy < oh; oy++) {
            const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
            float *d0 = dp + 2 * oy * w, *d1 = d0 + w;
            const float *go = g + oy * ow;
            for (int ox = 0; ox < ow; ox++) {
                float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
                float m0 = a > b ? a : b, m1 = c > d ? c : d, m = m0 > m1 ? m0 : m1;
                int ia = a == m, ib = !ia && b == m, ic = !ia && !ib && c == m, id = !ia && !ib && !ic;
                float v = go[ox];
                d0[2 * ox] = ia ? v : 0;
                d0[2 * ox + 1] = ib ? v : 0;
                d1[2 * ox] = ic ? v : 0;
                d1[2 * ox + 1] = id ? v : 0;
            }
            if (w % 2) d0[w - 1] = d1[w - 1] = 0;
        }
        if (h % 2)
            for (int j = 0; j < w; j++) dp[(h - 1) * w + j] = 0;
    }
}

KERNEL void sg_upsample2(const float *x, float *y, long planes, int h, int w) {
    for (long p = 0; p < planes; p++) {
        const float *xp = x + p * h * w;
        float *yp = y + p * 4 * h * w;
        for (int iy = 0; iy < h; iy++) {
            const float *src = xp + iy * w;
            float *r0 = yp + 2 * iy * 2 * w, *r1 = r0 + 2 * w;
            for (int ix = 0; ix < w; ix++) {
                float v = src[ix];
                r0[2 * ix] = v;
                r0[2 * ix + 1] = v;
                r1[2 * ix] = v;
                r1[2 * ix + 1] = v;
            }
        }
    }
}

KERNEL void sg_upsample2_grad(const float *dy, float *dx, long planes, int h, int w) {
    for (long p = 0; p < planes; p++) {
        const float *gp = dy + p * 4 * h * w;
        float *dp = dx + p * h * w;
        for (int iy = 0; iy < h; iy++) {
            const float *r0 = gp + 2 * iy * 2 * w, *r1 = r0 + 2 * w;
            float *o = dp + iy * w;
            for (int ix = 0; ix < w; ix++) o[ix] = r0[2 * ix] + r0[2 * ix + 1] + r1[2 * ix] + r1[2 * ix + 1];
        }
    }
}

// nChw16c (c a multiple of 16) to NCHW.
void sg_blocked_to_plain(const float *src, float *dst, int n, int c, long hw) {
    int cb = c / 16;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < cb; b++) {
            const float *s = src + ((long)i * cb + b) * hw * 16;
            for (int l = 0; l < 16; l++) {
                float *d = dst + ((long)i * c + b * 16 + l) * hw;
                for (long j = 0; j < hw; j++) d[j] = s[j * 16 + l];
            }
        }
}

// Batch norm on nChw16c: one block of 16 channels at a time, lane l being
// channel 16b+l. Image i's block b is hw rows of 16 at x + (i*cb + b)*hw*16.

KERNEL void sg_blk_stats(const float *x, int n, int cb, long hw, int b, double *mean, double *var) {
    double s[16] = {0}, q[16] = {0};
    for (int i = 0; i < n; i++) {
        const float *p = x + ((long)i * cb + b) * hw * 16;
        for (long j = 0; j < hw; j++)
            for (int l = 0; l < 16; l++) s[l] += p[j * 16 + l];
    }
    double m = (double)n * hw;
    for (int l = 0; l < 16; l++) mean[l] = s[l] / m;
    for (int i = 0; i < n; i++) {
        const float *p = x + ((long)i * cb + b) * hw * 16;
        for (long j = 0; j < hw; j++)
            for (int l = 0; l < 16; l++) {
                double d = (double)p[j * 16 + l] - mean[l];
                q[l] += d * d;
            }
    }
    for (int l = 0; l < 16; l++) var[l] = q[l] / m;
}

KERNEL void sg_blk_affine(const float *x, float *y, int n, int cb, long hw, int b, const float *mean,
                          const float *scale, const float *shift, int relu) {
    for (int i = 0; i < n; i++) {
        const float *p = x + ((long)i * cb + b) * hw * 16;
        float *q = y + ((long)i * cb + b) * hw * 16;
        for (long j = 0; j < hw; j++)
            for (int l = 0; l < 16; l++) {
                float v = (p[j * 16 + l] - mean[l]) * scale[l] + shift[l];
                q[j * 16 + l] = relu ? (v > 0 ? v : 0) : v;
            }
    }
}

KERNEL void sg_blk_dydev(const float *dy, const float *x, int n, int cb, long hw, int b, const double *mean,
                         double *sdy, double *sdyx) {
    double a[16] = {0}, c[16] = {0};
    for (int i = 0; i < n; i++) {
        long off = ((long)i * cb + b) * hw * 16;
        const float *g = dy + off, *p = x + off;
        for (long j = 0; j < hw; j++)
            for (int l = 0; l < 16; l++) {
                a[l] += g[j * 16 + l];
                c[l] += (double)g[j * 16 + l] * ((double)p[j * 16 + l] - mean[l]);
            }
    }
    for (int l = 0; l < 16; l++) {
        sdy[l] = a[l];
        sdyx[l] = c[l];
    }
}

KERNEL void sg_blk_bn_dx(const float *dy, const float *x, float *dx, int n, int cb, long hw, int b, const float *ka,
                         const float *kb, const float *kc, const float *mean) {
    for (int i = 0; i < n; i++) {
        long off = ((long)i * cb + b) * hw * 16;
        const float *g = dy + off, *p = x + off;
        float *q = dx + off;
        for (long j = 0; j < hw; j++)
            for (int l = 0; l < 16; l++)
                q[j * 16 + l] = ka[l] * g[j * 16 + l] + kb[l] * (p[j * 16 + l] - mean[l]) + kc[l];
    }
}
