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

// Softmax cross-entropy. The exponential and logarithm are Cephes' single
// precision ones (about 1 ulp), written without branches so that the loops
// over pixels vectorise; arguments of exp are x - max <= 0.

static inline float sg_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int i; } s = {.i = ((int)n + 127) << 23};
    return p * s.f;
}

// log for x >= 1 (a sum of exponentials of which the largest is 1).
static inline float sg_logf(float x) {
    union { float f; int i; } u = {.f = x};
    int e = ((u.i >> 23) & 0xff) - 126;   // x = m * 2^e, m in [0.5, 1)
    u.i = (u.i & 0x007fffff) | 0x3f000000;
    float m = u.f;
    int small = m < 0.707106781186547524f;
    e -= small;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    float fe = (float)e;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return m + y + 0.693359375f * fe;
}

#define CE_TILE 256

// Pixels [lo, hi) of one image: x and probs at the image's [k, hw] logits,
// lab (labels as floats) and labels at its hw pixels. Writes the softmax into
// probs, the labels as ints (-1: ignored), and adds the weighted loss and the
// weight sum into out[0] and out[1]. A label that is neither a class nor the
// ignore index is returned (its first pixel's value) with out[2] = 1.
KERNEL void sg_ce_chunk(const float *x, const float *lab, float *probs, int *labels, int k, long hw, long lo, long hi,
                        int ignore, const double *w, double *out) {
    float m[CE_TILE], s[CE_TILE], lg[CE_TILE];
    double loss = 0, wsum = 0;
    for (long t = lo; t < hi; t += CE_TILE) {
        int len = (int)((hi - t) < CE_TILE ? (hi - t) : CE_TILE);
        const float *xt = x + t;
        float *pt = probs + t;
        for (int j = 0; j < len; j++) m[j] = xt[j];
        for (int q = 1; q < k; q++)
            for (int j = 0; j < len; j++) m[j] = xt[q * hw + j] > m[j] ? xt[q * hw + j] : m[j];
        for (int j = 0; j < len; j++) s[j] = 0;
        for (int q = 0; q < k; q++)
            for (int j = 0; j < len; j++) {
                float e = sg_expf(xt[q * hw + j] - m[j]);
                pt[q * hw + j] = e;
                s[j] += e;
            }
        for (int j = 0; j < len; j++) {
            lg[j] = sg_logf(s[j]);
            s[j] = 1.0f / s[j];
        }
        for (int q = 0; q < k; q++)
            for (int j = 0; j < len; j++) pt[q * hw + j] *= s[j];
        for (int j = 0; j < len; j++) {
            int c = (int)__builtin_floorf(lab[t + j] + 0.5f);
            if (c == ignore) {
                labels[t + j] = -1;
                continue;
            }
            if (c < 0 || c >= k) {
                out[2] = 1;
                out[3] = lab[t + j];
                return;
            }
            labels[t + j] = c;
            double wc = w ? w[c] : 1.0;
            loss += wc * ((double)lg[j] - (double)(xt[c * hw + j] - m[j]));
            wsum += wc;
        }
    }
    out[0] += loss;
    out[1] += wsum;
}
