/* segtool's thin C layer over oneDNN 2.x: float32 2-D convolutions (stride
 * 1, square kernels, symmetric padding) on plain NCHW/OIHW buffers owned by
 * the caller. Primitives are created once per shape and cached; oneDNN picks
 * its own (blocked) memory formats and the data is reordered in and out of
 * them in scratch buffers owned by this layer, so the caller's buffers never
 * change layout.
 *
 * A context (sg_ctx) holds a primitive cache, a stream and scratch buffers
 * for one caller at a time. segtool keeps one per worker thread and gives
 * each worker a slice of the batch, running oneDNN single-threaded on each:
 * see dnnl.go. Pointers are used only during the call. */
#ifndef SEGTOOL_DNNL_H
#define SEGTOOL_DNNL_H

typedef struct sg_ctx sg_ctx;

/* Creates the engine (once; not thread-safe). 0 on success. */
int sg_dnnl_init(void);
/* A new context, or NULL (out of memory or no engine). */
sg_ctx *sg_ctx_new(void);
/* What the last failing call on ctx reported. */
const char *sg_ctx_error(sg_ctx *ctx);
/* The last error of sg_dnnl_init. */
const char *sg_dnnl_init_error(void);

enum { SG_FWD = 0, SG_BWD_DATA = 1, SG_BWD_WEIGHTS = 2 };

/* Every call below takes the shape of the convolution it runs and nthr, the
 * OpenMP threads oneDNN may use for it (set on the calling thread; part of
 * the cache key, since oneDNN plans its work split when a primitive is made).
 * They return 0 on success; otherwise sg_ctx_error says what failed.
 *
 * For SG_FWD and SG_BWD_DATA the weights wt [o,c,k,k] are reordered into the
 * layout the primitive wants once per op call, by sg_conv_weights, into a
 * buffer shared by every context (calls are serialised by the caller); the
 * convolution calls that follow read them from there. */
int sg_conv_weights(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad, int relu,
                    const float *wt);

/* Activations are NCHW, except where a blocked flag says a buffer holds
 * oneDNN's nChw16c layout (channels in blocks of 16 innermost, the same
 * size when C is a multiple of 16): SG_BLK_IN for the input activation (x,
 * or dy of backward data), SG_BLK_OUT for the output (y, dx), SG_BLK_DY for
 * dy of backward weights. Only where sg_conv_can_block says the primitive
 * uses that layout; no reorder is then made for that buffer. */
enum { SG_BLK_IN = 1, SG_BLK_OUT = 2, SG_BLK_DY = 4 };

/* y[n,o,oh,ow] = b[o] + sum w[o,c,ky,kx] * x[n,c,oh+ky-pad,ow+kx-pad], then
 * max(y, 0) when relu is not 0. */
int sg_conv_fwd(sg_ctx *ctx, int nthr, int n, int c, int h, int w, int o, int k, int pad, int relu, int blocked,
                const float *x, const float *wt, const float *b, float *y);
/* dx = conv^T(w, dy) (overwrites dx). */
int sg_conv_bwd_data(sg_ctx *ctx, int nthr, int n, int c, int h, int w, int o, int k, int pad, int blocked,
                     const float *wt, const float *dy, float *dx);
/* dw = sum over the n images of dy (x) x; db = per-channel sum of dy when db
 * is not NULL (both overwritten). */
int sg_conv_bwd_weights(sg_ctx *ctx, int nthr, int n, int c, int h, int w, int o, int k, int pad, int blocked,
                        const float *x, const float *dy, float *dw, float *db);
/* Which blocked flags the primitive of this kind and shape can take (-1:
 * error). */
int sg_conv_can_block(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad, int relu,
                      int bias);

/* The implementation oneDNN chose ("jit:avx512_core", ...), for diagnostics. */
const char *sg_conv_impl(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad);

/* Bytes held in ctx's scratch buffers (ctx NULL: the shared ones), and the
 * number of primitives ctx has cached. */
long sg_scratch_bytes(sg_ctx *ctx);
int sg_cached(sg_ctx *ctx);

/* The oneDNN version loaded ("2.6.3"). */
const char *sg_dnnl_version(void);

/* The thread pool (pool.c): the caller and threads-1 POSIX threads, each with
 * a context. sg_run runs one convolution call, sliced by batch (sg_plan) or
 * whole with OpenMP threads on one worker for small batches; mode is -1
 * (the default plan), 0 (always whole) or 1 (one slice per thread), for
 * experiments. Only one call at a time. */
int sg_pool_init(int threads);
int sg_pool_threads(void);
const char *sg_pool_error(void);
int sg_plan(int n, long hw, int t, int mode, int *bounds, int *nthr);
int sg_run(int kind, int mode, int n, int c, int h, int w, int o, int k, int pad, int relu, int blocked,
           const float *x, const float *wt, const float *b, float *y, const float *dy, float *dx, float *dw,
           float *db);
int sg_run_can_block(int kind, int mode, int n, int c, int h, int w, int o, int k, int pad, int relu, int bias);
const char *sg_run_impl(int kind, int mode, int n, int c, int h, int w, int o, int k, int pad);
long sg_pool_scratch_bytes(void);

/* omp_get_max_threads() on the calling thread. */
int sg_omp_max_threads(void);

#endif
