// The threads that run segtool's convolutions (see dnnl.go): the calling
// thread and threads-1 POSIX threads, each with a dnnl.c context, taking
// slices of a batch as they come free. Idle threads sleep on a condition
// variable; no thread spins, and neither Go's scheduler nor OpenMP is
// involved in handing out the work.
#include "dnnl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXT 64
#define MAXSLICES (2 * MAXT)

static int nthreads; // the caller and nthreads-1 workers
static sg_ctx *ctxs[MAXT];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_work = PTHREAD_COND_INITIALIZER, cv_done = PTHREAD_COND_INITIALIZER;
static unsigned long gen;
static int pending;
static char pool_err[512];

typedef struct task task;
struct task {
    int (*fn)(task *t, int id, int i);
    int n;    // items 0..n-1
    int only; // -1: any thread takes items; otherwise only that thread
    atomic_int next;
    int rc;
    char err[512];
    // the convolution
    int kind, nthr, n_img, c, h, w, o, k, pad, relu, blocked;
    const float *x, *wt, *b, *dy;
    float *y, *dx, *dw, *db;
    int nslices, bounds[MAXSLICES + 1];
    long wlen;
};
static task *cur;

// Partial weight and bias gradients of slices 1.. of backward weights.
static float *partw, *partb;
static size_t partw_len, partb_len;

const char *sg_pool_error(void) { return pool_err; }

static void run_items(task *t, int id) {
    if (t->only >= 0 && t->only != id) return;
    for (;;) {
        int i = atomic_fetch_add(&t->next, 1);
        if (i >= t->n) return;
        int rc = t->fn(t, id, i);
        if (rc) {
            pthread_mutex_lock(&mu);
            if (!t->rc) {
                t->rc = rc;
                snprintf(t->err, sizeof t->err, "%s", sg_ctx_error(ctxs[id]));
            }
            pthread_mutex_unlock(&mu);
        }
    }
}

static void *worker(void *arg) {
    int id = (int)(long)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (gen == seen) pthread_cond_wait(&cv_work, &mu);
        seen = gen;
        task *t = cur;
        pthread_mutex_unlock(&mu);
        run_items(t, id);
        pthread_mutex_lock(&mu);
        if (--pending == 0) pthread_cond_signal(&cv_done);
    }
    return NULL;
}

// dispatch runs t's items on every thread and returns when all are done.
static int dispatch(task *t) {
    atomic_store(&t->next, 0);
    t->rc = 0;
    if (nthreads > 1 && (t->n > 1 || t->only > 0)) {
        pthread_mutex_lock(&mu);
        cur = t;
        pending = nthreads - 1;
        gen++;
        pthread_cond_broadcast(&cv_work);
        pthread_mutex_unlock(&mu);
        run_items(t, 0);
        pthread_mutex_lock(&mu);
        while (pending > 0) pthread_cond_wait(&cv_done, &mu);
        pthread_mutex_unlock(&mu);
    } else {
        t->only = -1;
        run_items(t, 0);
    }
    if (t->rc) snprintf(pool_err, sizeof pool_err, "%s", t->err);
    return t->rc;
}

int sg_pool_init(int threads) {
    if (nthreads) return threads == nthreads ? 0 : -1;
    if (threads < 1 || threads > MAXT) {
        snprintf(pool_err, sizeof pool_err, "oneDNN: %d threads (1..%d)", threads, MAXT);
        return -1;
    }
    if (sg_dnnl_init()) {
        snprintf(pool_err, sizeof pool_err, "%s", sg_dnnl_init_error());
        return -1;
    }
    for (int i = 0; i < threads; i++)
        if (!(ctxs[i] = sg_ctx_new())) {
            snprintf(pool_err, sizeof pool_err, "oneDNN: cannot make a context (out of memory)");
            return -1;
        }
    for (int i = 1; i < threads; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker, (void *)(long)i)) {
            snprintf(pool_err, sizeof pool_err, "oneDNN: cannot start a worker thread");
            return -1;
        }
        pthread_detach(th);
    }
    nthreads = threads;
    return 0;
}

int sg_pool_threads(void) { return nthreads; }

int sg_plan(int n, long hw, int t, int mode, int *bounds, int *nthr) {
    int slices = 1;
    if (t <= 1) {
    } else if (mode == 1) {
        if (n >= t) slices = t;
    } else if (mode == 0) {
    } else if (n >= 2 * t && hw >= 64 * 64) {
        slices = 2 * t;
    } else if (n >= 2 * t || (n >= t && n % t == 0)) {
        slices = t;
    }
    if (slices > MAXSLICES) slices = MAXSLICES;
    for (int i = 0; i <= slices; i++) bounds[i] = (int)((long)i * n / slices);
    *nthr = slices == 1 && t > 1 ? t : 1;
    return slices;
}

static int plan_task(task *t, int mode) {
    long hw = (long)(t->h + 2 * t->pad - t->k + 1) * (t->w + 2 * t->pad - t->k + 1);
    t->nslices = sg_plan(t->n_img, hw, nthreads, mode, t->bounds, &t->nthr);
    return t->nslices;
}

static long in_size(task *t) { return (long)t->c * t->h * t->w; }
static long out_size(task *t) {
    return (long)t->o * (t->h + 2 * t->pad - t->k + 1) * (t->w + 2 * t->pad - t->k + 1);
}

static int weights(task *t, int id, int sub) {
    return sg_conv_weights(ctxs[id], t->kind, t->nthr, sub, t->c, t->h, t->w, t->o, t->k, t->pad, t->relu, t->wt);
}

static int slice(task *t, int id, int i) {
    int lo = t->bounds[i], hi = t->bounds[i + 1], sub = hi - lo;
    long in = in_size(t), out = out_size(t);
    sg_ctx *ctx = ctxs[id];
    switch (t->kind) {
    case SG_FWD:
        return sg_conv_fwd(ctx, t->nthr, sub, t->c, t->h, t->w, t->o, t->k, t->pad, t->relu, t->blocked, t->x + lo * in,
                           t->wt, t->b, t->y + lo * out);
    case SG_BWD_DATA:
        return sg_conv_bwd_data(ctx, t->nthr, sub, t->c, t->h, t->w, t->o, t->k, t->pad, t->blocked, t->wt,
                                t->dy + lo * out, t->dx + lo * in);
    default: {
        float *dw = i == 0 ? t->dw : partw + (i - 1) * t->wlen;
        float *db = !t->db ? NULL : i == 0 ? t->db : partb + (i - 1) * t->o;
        return sg_conv_bwd_weights(ctx, t->nthr, sub, t->c, t->h, t->w, t->o, t->k, t->pad, t->blocked,
                                   t->x + lo * in, t->dy + lo * out, dw, db);
    }
    }
}

// The whole call on one thread with oneDNN's OpenMP threads: batches too
// small to slice. Always the same worker, so only one OpenMP pool is made.
static int whole(task *t, int id, int i) {
    (void)i;
    int rc;
    if (t->kind != SG_BWD_WEIGHTS && (rc = weights(t, id, t->n_img))) return rc;
    return slice(t, id, 0);
}

// Sums the partial gradients in slice order, over element range i.
static int sum_range(task *t, int id, int i) {
    (void)id;
    long lo = t->wlen * i / t->n, hi = t->wlen * (i + 1) / t->n;
    for (int s = 1; s < t->nslices; s++) {
        const float *p = partw + (s - 1) * t->wlen;
        for (long j = lo; j < hi; j++) t->dw[j] += p[j];
    }
    if (i == 0 && t->db)
        for (int s = 1; s < t->nslices; s++)
            for (int j = 0; j < t->o; j++) t->db[j] += partb[(s - 1) * t->o + j];
    return 0;
}

static int grow_parts(task *t) {
    size_t nw = (size_t)(t->nslices - 1) * t->wlen, nb = (size_t)(t->nslices - 1) * t->o;
    if (partw_len < nw) {
        free(partw);
        partw = malloc(nw * sizeof(float));
        partw_len = partw ? nw : 0;
    }
    if (partb_len < nb) {
        free(partb);
        partb = malloc(nb * sizeof(float));
        partb_len = partb ? nb : 0;
    }
    if ((nw && !partw) || (nb && !partb)) {
        snprintf(pool_err, sizeof pool_err, "oneDNN: out of memory for partial weight gradients");
        return -1000;
    }
    return 0;
}

int sg_run(int kind, int mode, int n, int c, int h, int w, int o, int k, int pad, int relu, int blocked,
           const float *x, const float *wt, const float *b, float *y, const float *dy, float *dx, float *dw,
           float *db) {
    if (!nthreads) {
        snprintf(pool_err, sizeof pool_err, "oneDNN: the thread pool is not started");
        return -1000;
    }
    task t = {.kind = kind, .n_img = n, .c = c, .h = h, .w = w, .o = o, .k = k, .pad = pad, .relu = relu,
              .blocked = blocked, .x = x, .wt = wt, .b = b, .y = y, .dy = dy, .dx = dx, .dw = dw, .db = db,
              .wlen = (long)o * c * k * k, .only = -1};
    int ns = plan_task(&t, mode), rc;
    if (ns == 1 && t.nthr > 1) {
        t.fn = whole;
        t.n = 1;
        t.only = 1;
        return dispatch(&t);
    }
    if (kind == SG_BWD_WEIGHTS) {
        if (ns > 1 && (rc = grow_parts(&t))) return rc;
        t.fn = slice;
        t.n = ns;
        if ((rc = dispatch(&t))) return rc;
        if (ns == 1) return 0;
        t.fn = sum_range;
        t.n = nthreads;
        t.only = -1;
        return dispatch(&t);
    }
    // Forward and backward data: the weights in oneDNN's layout once for
    // each slice size (all slices but perhaps the last have one size).
    int last = ns - 1, uniform = t.bounds[ns] - t.bounds[last] == t.bounds[1] - t.bounds[0];
    if ((rc = weights(&t, 0, t.bounds[1] - t.bounds[0]))) {
        snprintf(pool_err, sizeof pool_err, "%s", sg_ctx_error(ctxs[0]));
        return rc;
    }
    t.fn = slice;
    t.n = uniform ? ns : last;
    if ((rc = dispatch(&t))) return rc;
    if (uniform) return 0;
    if ((rc = weights(&t, 0, t.bounds[ns] - t.bounds[last]))) {
        snprintf(pool_err, sizeof pool_err, "%s", sg_ctx_error(ctxs[0]));
        return rc;
    }
    if ((rc = slice(&t, 0, last))) snprintf(pool_err, sizeof pool_err, "%s", sg_ctx_error(ctxs[0]));
    return rc;
}

int sg_run_can_block(int kind, int mode, int n, int c, int h, int w, int o, int k, int pad, int relu, int bias) {
    if (!nthreads) return -1;
    task t = {.n_img = n, .c = c, .h = h, .w = w, .o = o, .k = k, .pad = pad};
    int ns = plan_task(&t, mode), flags = SG_BLK_IN | SG_BLK_OUT | SG_BLK_DY;
    for (int i = 0; i < ns; i++) {
        int f = sg_conv_can_block(ctxs[0], kind, t.nthr, t.bounds[i + 1] - t.bounds[i], c, h, w, o, k, pad, relu, bias);
        if (f < 0) return -1;
        flags &= f;
    }
    return flags;
}

const char *sg_run_impl(int kind, int mode, int n, int c, int h, int w, int o, int k, int pad) {
    task t = {.n_img = n, .c = c, .h = h, .w = w, .o = o, .k = k, .pad = pad};
    if (!nthreads) return "no pool";
    plan_task(&t, mode);
    return sg_conv_impl(ctxs[0], kind, t.nthr, t.bounds[1] - t.bounds[0], c, h, w, o, k, pad);
}

long sg_pool_scratch_bytes(void) {
    long s = sg_scratch_bytes(NULL) + (long)(partw_len + partb_len) * (long)sizeof(float);
    for (int i = 0; i < nthreads; i++) s += sg_scratch_bytes(ctxs[i]);
    return s;
}
