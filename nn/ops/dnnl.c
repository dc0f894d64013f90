// segtool's C layer over oneDNN 2.x; see dnnl.h.
#include "dnnl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <oneapi/dnnl/dnnl_version.h>

// oneDNN 3.0 removed the operation descriptors (dnnl_*_desc_init) this file
// is written against; Debian bookworm ships 2.6.3.
#if !defined(DNNL_VERSION_MAJOR) || DNNL_VERSION_MAJOR != 2
#error "segtool needs oneDNN 2.x (Debian bookworm's libdnnl-dev 2.6); oneDNN 3 removed the C API used here"
#endif

// From libgomp, which libdnnl.so.2 is built against (DNNL_CPU_RUNTIME OMP).
// The thread count is a per-thread setting of the calling thread.
extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);

int sg_omp_max_threads(void) { return omp_get_max_threads(); }

const char *sg_dnnl_version(void) {
    static char v[32];
    const dnnl_version_t *d = dnnl_version();
    snprintf(v, sizeof v, "%d.%d.%d", d->major, d->minor, d->patch);
    return v;
}

static dnnl_engine_t eng;
static dnnl_primitive_attr_t attr; // user-managed scratchpad: see DESIGN.md
static char init_err[256];

const char *sg_dnnl_init_error(void) { return init_err; }

int sg_dnnl_init(void) {
    if (eng) return 0;
    dnnl_status_t s;
    if ((s = dnnl_engine_create(&eng, dnnl_cpu, 0)) != dnnl_success ||
        (s = dnnl_primitive_attr_create(&attr)) != dnnl_success ||
        (s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) != dnnl_success) {
        snprintf(init_err, sizeof init_err, "oneDNN: creating the CPU engine failed: %s", dnnl_status2str(s));
        eng = NULL;
        return -1;
    }
    return 0;
}

// A scratch buffer that grows as needed.
typedef struct {
    void *p;
    size_t size;
} buf;

static void *grow(buf *b, size_t size) {
    if (size == 0) size = 64;
    if (b->size < size) {
        free(b->p);
        size_t sz = (size + 4095) & ~(size_t)4095;
        b->p = aligned_alloc(4096, sz);
        b->size = b->p ? sz : 0;
    }
    return b->p;
}

// A tensor argument of a convolution: the caller's plain layout and the one
// the primitive wants, with the reorder between them when they differ.
typedef struct {
    dnnl_memory_desc_t user, comp;
    int reorder; // 0: the primitive reads/writes the user buffer directly
    int out;     // 1: comp -> user after the primitive
    int blk;     // comp is nChw16c with no padding: a caller's buffer may hold it as is
    dnnl_primitive_t r;
    dnnl_memory_t mu, mc, rpad; // rpad: the reorder's scratchpad (or NULL)
    size_t rpad_size;
} port;

typedef struct entry {
    int kind, nthr, n, c, h, w, o, k, pad, bias, relu;
    dnnl_primitive_desc_t pd, hint;
    dnnl_primitive_t prim;
    port p[3]; // FWD: src, weights, dst; BWD_DATA: diff_dst, weights, diff_src; BWD_WEIGHTS: src, diff_dst, diff_weights
    dnnl_memory_t bias_mem, pad_mem;
    size_t pad_size;
    struct entry *next;
} entry;

enum { SLOT_A, SLOT_B, SLOT_C, SLOT_PAD, NSLOTS };

struct sg_ctx {
    dnnl_stream_t strm;
    entry *cache;
    int ncached;
    buf slot[NSLOTS];
    char err[512];
};

// The weights of the current op call in the primitive's layout, shared by
// every context (the Go side serialises op calls): see sg_conv_weights.
static buf shared_w;
static dnnl_memory_desc_t shared_w_md;
static int shared_w_valid;

const char *sg_ctx_error(sg_ctx *ctx) { return ctx->err; }

static int fail(sg_ctx *ctx, dnnl_status_t s, const char *what, int line) {
    snprintf(ctx->err, sizeof ctx->err, "oneDNN: %s failed: %s (dnnl.c:%d)", what, dnnl_status2str(s), line);
    return s == dnnl_success ? -1000 : -(int)s;
}

#define CHECK(call)                                                      \
    do {                                                                 \
        dnnl_status_t s_ = (call);                                       \
        if (s_ != dnnl_success) return fail(ctx, s_, #call, __LINE__);   \
    } while (0)

static int oom(sg_ctx *ctx, size_t size) {
    snprintf(ctx->err, sizeof ctx->err, "oneDNN: out of memory for a %zu-byte scratch buffer", size);
    return -1000;
}

sg_ctx *sg_ctx_new(void) {
    if (!eng) return NULL;
    sg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    if (dnnl_stream_create(&ctx->strm, eng, dnnl_stream_default_flags) != dnnl_success) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

long sg_scratch_bytes(sg_ctx *ctx) {
    if (!ctx) return (long)shared_w.size;
    long s = 0;
    for (int i = 0; i < NSLOTS; i++) s += (long)ctx->slot[i].size;
    return s;
}

int sg_cached(sg_ctx *ctx) { return ctx->ncached; }

static int port_init(sg_ctx *ctx, port *p, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *comp, int out) {
    p->user = *user;
    p->comp = *comp;
    p->out = out;
    CHECK(dnnl_memory_create(&p->mu, &p->user, eng, DNNL_MEMORY_NONE));
    p->reorder = !dnnl_memory_desc_equal(&p->user, &p->comp);
    if (!p->reorder) return 0;
    if (p->user.ndims == 4) {
        dnnl_memory_desc_t b16;
        dnnl_memory_desc_init_by_tag(&b16, 4, p->user.dims, dnnl_f32, dnnl_aBcd16b);
        p->blk = p->user.dims[1] % 16 == 0 && dnnl_memory_desc_equal(&b16, &p->comp) &&
                 dnnl_memory_desc_get_size(&p->comp) == dnnl_memory_desc_get_size(&p->user);
    }
    CHECK(dnnl_memory_create(&p->mc, &p->comp, eng, DNNL_MEMORY_NONE));
    dnnl_primitive_desc_t rpd;
    if (out)
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &p->comp, eng, &p->user, eng, attr));
    else
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &p->user, eng, &p->comp, eng, attr));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
    p->rpad_size = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (p->rpad_size) CHECK(dnnl_memory_create(&p->rpad, smd, eng, DNNL_MEMORY_NONE));
    CHECK(dnnl_primitive_create(&p->r, rpd));
    CHECK(dnnl_primitive_desc_destroy(rpd));
    return 0;
}

// The memory object the primitive itself uses for this port.
static dnnl_memory_t port_mem(port *p) { return p->reorder ? p->mc : p->mu; }

static int run_reorder(sg_ctx *ctx, port *p) {
    dnnl_exec_arg_t a[3] = {
        {DNNL_ARG_FROM, p->out ? p->mc : p->mu},
        {DNNL_ARG_TO, p->out ? p->mu : p->mc},
        {DNNL_ARG_SCRATCHPAD, p->rpad},
    };
    if (p->rpad) {
        void *s = grow(&ctx->slot[SLOT_PAD], p->rpad_size);
        if (!s) return oom(ctx, p->rpad_size);
        CHECK(dnnl_memory_set_data_handle(p->rpad, s));
    }
    CHECK(dnnl_primitive_execute(p->r, ctx->strm, p->rpad ? 3 : 2, a));
    return 0;
}

// Binds the caller's buffer and the blocked copy in b (NULL: the port's own
// slot), reordering an input into the primitive's layout unless noreorder.
static int port_bind(sg_ctx *ctx, port *p, const void *user, buf *b, int noreorder) {
    CHECK(dnnl_memory_set_data_handle(p->mu, (void *)user));
    if (!p->reorder) return 0;
    size_t size = dnnl_memory_desc_get_size(&p->comp);
    void *s = grow(b, size);
    if (!s) return oom(ctx, size);
    CHECK(dnnl_memory_set_data_handle(p->mc, s));
    if (!p->out && !noreorder) return run_reorder(ctx, p);
    return 0;
}

// Binds a caller's buffer that already holds the primitive's (blocked)
// layout: no reorder either way.
static int port_bind_blocked(sg_ctx *ctx, port *p, const void *user) {
    if (!p->blk) {
        snprintf(ctx->err, sizeof ctx->err, "oneDNN: a blocked buffer for a port whose layout is not nChw16c");
        return -1000;
    }
    CHECK(dnnl_memory_set_data_handle(p->mc, (void *)user));
    return 0;
}

static void port_unbind(port *p) {
    dnnl_memory_set_data_handle(p->mu, NULL);
    if (p->reorder) dnnl_memory_set_data_handle(p->mc, NULL);
}

static void md(dnnl_memory_desc_t *d, int nd, dnnl_dim_t a, dnnl_dim_t b, dnnl_dim_t c, dnnl_dim_t e,
               dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, e};
    dnnl_memory_desc_init_by_tag(d, nd, dims, dnnl_f32, tag);
}

static int entry_init(sg_ctx *ctx, entry *e) {
    int oh = e->h + 2 * e->pad - e->k + 1, ow = e->w + 2 * e->pad - e->k + 1;
    dnnl_memory_desc_t u_x, u_w, u_b, u_y, x, wt, y;
    md(&u_x, 4, e->n, e->c, e->h, e->w, dnnl_nchw);
    md(&u_w, 4, e->o, e->c, e->k, e->k, dnnl_oihw);
    md(&u_b, 1, e->o, 0, 0, 0, dnnl_a);
    md(&u_y, 4, e->n, e->o, oh, ow, dnnl_nchw);
    // format "any": oneDNN's own blocked layouts (forcing plain NCHW/OIHW
    // falls back to a much slower GEMM kernel).
    md(&x, 4, e->n, e->c, e->h, e->w, dnnl_format_tag_any);
    md(&wt, 4, e->o, e->c, e->k, e->k, dnnl_format_tag_any);
    md(&y, 4, e->n, e->o, oh, ow, dnnl_format_tag_any);
    dnnl_dims_t st = {1, 1}, pl = {e->pad, e->pad};
    dnnl_convolution_desc_t cd, fd;
    int rc;
    omp_set_num_threads(e->nthr); // oneDNN plans the work split now
    CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &x, &wt,
                                             (e->kind != SG_FWD || e->bias) ? &u_b : NULL, &y, st, pl, pl));
    if (e->kind == SG_FWD) {
        dnnl_primitive_attr_t a = attr;
        if (e->relu) { // ReLU applied as the output is written
            dnnl_post_ops_t po;
            CHECK(dnnl_primitive_attr_clone(&a, attr));
            CHECK(dnnl_post_ops_create(&po));
            CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
            CHECK(dnnl_primitive_attr_set_post_ops(a, po));
            CHECK(dnnl_post_ops_destroy(po));
        }
        dnnl_status_t st_ = dnnl_primitive_desc_create(&e->pd, &fd, a, eng, NULL);
        if (a != attr) dnnl_primitive_attr_destroy(a);
        CHECK(st_);
        if ((rc = port_init(ctx, &e->p[0], &u_x, dnnl_primitive_desc_query_md(e->pd, dnnl_query_src_md, 0), 0))) return rc;
        if ((rc = port_init(ctx, &e->p[1], &u_w, dnnl_primitive_desc_query_md(e->pd, dnnl_query_weights_md, 0), 0))) return rc;
        if ((rc = port_init(ctx, &e->p[2], &u_y, dnnl_primitive_desc_query_md(e->pd, dnnl_query_dst_md, 0), 1))) return rc;
    } else {
        CHECK(dnnl_primitive_desc_create(&e->hint, &fd, attr, eng, NULL));
        if (e->kind == SG_BWD_DATA) {
            CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &x, &wt, &y, st, pl, pl));
            CHECK(dnnl_primitive_desc_create(&e->pd, &cd, attr, eng, e->hint));
            if ((rc = port_init(ctx, &e->p[0], &u_y, dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_dst_md, 0), 0))) return rc;
            if ((rc = port_init(ctx, &e->p[1], &u_w, dnnl_primitive_desc_query_md(e->pd, dnnl_query_weights_md, 0), 0))) return rc;
            if ((rc = port_init(ctx, &e->p[2], &u_x, dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_src_md, 0), 1))) return rc;
        } else {
            CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &x, &wt,
                                                              e->bias ? &u_b : NULL, &y, st, pl, pl));
            CHECK(dnnl_primitive_desc_create(&e->pd, &cd, attr, eng, e->hint));
            if ((rc = port_init(ctx, &e->p[0], &u_x, dnnl_primitive_desc_query_md(e->pd, dnnl_query_src_md, 0), 0))) return rc;
            if ((rc = port_init(ctx, &e->p[1], &u_y, dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_dst_md, 0), 0))) return rc;
            if ((rc = port_init(ctx, &e->p[2], &u_w, dnnl_primitive_desc_query_md(e->pd, dnnl_query_diff_weights_md, 0), 1))) return rc;
        }
    }
    if (e->bias) CHECK(dnnl_memory_create(&e->bias_mem, &u_b, eng, DNNL_MEMORY_NONE));
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(e->pd, dnnl_query_scratchpad_md, 0);
    e->pad_size = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (e->pad_size) CHECK(dnnl_memory_create(&e->pad_mem, smd, eng, DNNL_MEMORY_NONE));
    CHECK(dnnl_primitive_create(&e->prim, e->pd));
    return 0;
}

static entry *lookup(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad, int bias,
                     int relu, int *rc) {
    *rc = 0;
    for (entry *e = ctx->cache; e; e = e->next)
        if (e->kind == kind && e->nthr == nthr && e->n == n && e->c == c && e->h == h && e->w == w && e->o == o &&
            e->k == k && e->pad == pad && e->bias == bias && e->relu == relu)
            return e;
    entry *e = calloc(1, sizeof *e);
    if (!e) {
        *rc = oom(ctx, sizeof *e);
        return NULL;
    }
    *e = (entry){.kind = kind, .nthr = nthr, .n = n, .c = c, .h = h, .w = w, .o = o, .k = k, .pad = pad, .bias = bias,
                 .relu = relu};
    if ((*rc = entry_init(ctx, e))) {
        // A half-built entry is leaked rather than torn down: this only
        // happens for shapes oneDNN rejects, and the error is reported.
        return NULL;
    }
    e->next = ctx->cache;
    ctx->cache = e;
    ctx->ncached++;
    return e;
}

// run binds the ports, runs the primitive and reorders the output. For the
// weights port of FWD and BWD_DATA (index 1), the blocked copy is the shared
// one sg_conv_weights made.
static int run(sg_ctx *ctx, entry *e, const void *a0, const void *a1, void *a2, void *bias, int blocked) {
    int rc;
    omp_set_num_threads(e->nthr);
    if (blocked & 1)
        rc = port_bind_blocked(ctx, &e->p[0], a0);
    else
        rc = port_bind(ctx, &e->p[0], a0, &ctx->slot[SLOT_A], 0);
    if (rc) return rc;
    if (e->kind == SG_BWD_WEIGHTS) {
        if (blocked & 2)
            rc = port_bind_blocked(ctx, &e->p[1], a1);
        else
            rc = port_bind(ctx, &e->p[1], a1, &ctx->slot[SLOT_B], 0);
        if (rc) return rc;
    } else if (e->p[1].reorder) {
        if (!shared_w_valid || !dnnl_memory_desc_equal(&shared_w_md, &e->p[1].comp)) {
            snprintf(ctx->err, sizeof ctx->err, "oneDNN: the shared weights are not in this primitive's layout (sg_conv_weights not called first)");
            return -1000;
        }
        if ((rc = port_bind(ctx, &e->p[1], a1, &shared_w, 1))) return rc;
    } else if ((rc = port_bind(ctx, &e->p[1], a1, NULL, 1))) {
        return rc;
    }
    if (blocked & 4)
        rc = port_bind_blocked(ctx, &e->p[2], a2);
    else
        rc = port_bind(ctx, &e->p[2], a2, &ctx->slot[SLOT_C], 0);
    if (rc) return rc;
    dnnl_exec_arg_t args[6];
    int na = 0;
    static const int roles[3][3] = {
        [SG_FWD] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
        [SG_BWD_DATA] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
        [SG_BWD_WEIGHTS] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS},
    };
    for (int i = 0; i < 3; i++) args[na++] = (dnnl_exec_arg_t){roles[e->kind][i], port_mem(&e->p[i])};
    if (e->bias) {
        CHECK(dnnl_memory_set_data_handle(e->bias_mem, bias));
        args[na++] = (dnnl_exec_arg_t){e->kind == SG_FWD ? DNNL_ARG_BIAS : DNNL_ARG_DIFF_BIAS, e->bias_mem};
    }
    if (e->pad_mem) {
        void *s = grow(&ctx->slot[SLOT_PAD], e->pad_size);
        if (!s) return oom(ctx, e->pad_size);
        CHECK(dnnl_memory_set_data_handle(e->pad_mem, s));
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->pad_mem};
    }
    CHECK(dnnl_primitive_execute(e->prim, ctx->strm, na, args));
    if (e->p[2].reorder && !(blocked & 4) && (rc = run_reorder(ctx, &e->p[2]))) return rc;
    CHECK(dnnl_stream_wait(ctx->strm));
    for (int i = 0; i < 3; i++) port_unbind(&e->p[i]);
    if (e->bias) dnnl_memory_set_data_handle(e->bias_mem, NULL);
    return 0;
}

int sg_conv_weights(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad, int relu,
                    const float *wt) {
    int rc;
    if (kind != SG_FWD && kind != SG_BWD_DATA) {
        snprintf(ctx->err, sizeof ctx->err, "sg_conv_weights: kind %d has no weights input", kind);
        return -1000;
    }
    entry *e = lookup(ctx, kind, nthr, n, c, h, w, o, k, pad, kind == SG_FWD, kind == SG_FWD && relu, &rc);
    if (!e) return rc;
    shared_w_valid = 0;
    port *p = &e->p[1];
    if (!p->reorder) return 0;
    omp_set_num_threads(nthr);
    if ((rc = port_bind(ctx, p, wt, &shared_w, 0))) return rc;
    CHECK(dnnl_stream_wait(ctx->strm));
    port_unbind(p);
    shared_w_md = p->comp;
    shared_w_valid = 1;
    return 0;
}

// The blocked flags, by port: see dnnl.h.
static int port_flags(int kind, int blocked) {
    int f = 0;
    if (blocked & SG_BLK_IN) f |= 1;
    if (kind == SG_BWD_WEIGHTS && (blocked & SG_BLK_DY)) f |= 2;
    if (kind != SG_BWD_WEIGHTS && (blocked & SG_BLK_OUT)) f |= 4;
    return f;
}

int sg_conv_fwd(sg_ctx *ctx, int nthr, int n, int c, int h, int w, int o, int k, int pad, int relu, int blocked,
                const float *x, const float *wt, const float *b, float *y) {
    int rc;
    entry *e = lookup(ctx, SG_FWD, nthr, n, c, h, w, o, k, pad, b != NULL, relu != 0, &rc);
    if (!e) return rc;
    return run(ctx, e, x, wt, y, (void *)b, port_flags(SG_FWD, blocked));
}

int sg_conv_bwd_data(sg_ctx *ctx, int nthr, int n, int c, int h, int w, int o, int k, int pad, int blocked,
                     const float *wt, const float *dy, float *dx) {
    int rc;
    entry *e = lookup(ctx, SG_BWD_DATA, nthr, n, c, h, w, o, k, pad, 0, 0, &rc);
    if (!e) return rc;
    return run(ctx, e, dy, wt, dx, NULL, port_flags(SG_BWD_DATA, blocked));
}

int sg_conv_bwd_weights(sg_ctx *ctx, int nthr, int n, int c, int h, int w, int o, int k, int pad, int blocked,
                        const float *x, const float *dy, float *dw, float *db) {
    int rc;
    entry *e = lookup(ctx, SG_BWD_WEIGHTS, nthr, n, c, h, w, o, k, pad, db != NULL, 0, &rc);
    if (!e) return rc;
    return run(ctx, e, x, dy, dw, db, port_flags(SG_BWD_WEIGHTS, blocked));
}

int sg_conv_can_block(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad, int relu,
                      int bias) {
    int rc;
    entry *e = lookup(ctx, kind, nthr, n, c, h, w, o, k, pad, bias, kind == SG_FWD && relu, &rc);
    if (!e) return -1;
    int f = 0;
    if (e->p[0].blk) f |= SG_BLK_IN;
    if (kind == SG_BWD_WEIGHTS ? e->p[1].blk : e->p[2].blk) f |= kind == SG_BWD_WEIGHTS ? SG_BLK_DY : SG_BLK_OUT;
    return f;
}

const char *sg_conv_impl(sg_ctx *ctx, int kind, int nthr, int n, int c, int h, int w, int o, int k, int pad) {
    int rc;
    entry *e = lookup(ctx, kind, nthr, n, c, h, w, o, k, pad, kind != SG_BWD_DATA, 0, &rc);
    if (!e) return ctx->err;
    const char *s = NULL;
    dnnl_primitive_desc_query(e->pd, dnnl_query_impl_info_str, 0, &s);
    return s ? s : "?";
}
