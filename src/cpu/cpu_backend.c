/* cpu_backend.c: the CPU implementation of the backend interface.
 *
 * Memory is host memory; weights are used in place from the mmapped file.
 * Every op splits its work into tasks for the thread pool.
 *
 * Matrix products take the SIMD kernel of the weight type (src/cpu/mm.h):
 * the activations are quantized once per call (q8.h) for the quantized
 * types, then the weight rows are split into contiguous chunks, one task
 * each, and a task runs the kernel on its rows for all tokens (the kernel
 * tiles rows x tokens so weight blocks are reused from registers and
 * cache). Without a kernel (no AVX2, or BEAST_CPU_SCALAR=1 in the
 * environment when the backend is created) the reference path dequantizes
 * one weight row at a time into a per-thread buffer through the quant
 * traits table and dots it with every token in float.
 *
 * With AVX2 the attention (src/cpu/attn.c: one task per token and group of
 * query heads sharing a KV head) and the GLU activations (src/cpu/vec.c)
 * also have SIMD versions; the scalar ones below stay as the reference and
 * the fallback. topk keeps a heap of BK_TOPK per row (bk_topk_row, also the
 * engine's host path), one task per row.
 *
 * Batch independence (backend.h `deterministic`). Every op but matmul
 * computes a token's row with the same operations whatever else is in the
 * call: rmsnorm, rope, embed, kv_write and attention work per token (the
 * attention kernels per token and head, the head grouping of a task does not
 * change a head's sums), add and glu per element (the GLU tail goes through
 * the vector code too), activation quantization per row. The matmul kernels
 * for float and K-quant weights sum a (row, token) in the same order in the
 * decode (up to 4 tokens) and the batch path. Only the 32-block types
 * (Q4_0 .. Q8_0) differ by default: their decode kernel reduces 8 blocks to
 * a lane each before scaling, their fast batch micro-kernel scales each
 * block in 8 partial lanes, so a token's logits change in the last bits
 * when it is batched with more than 4 others. In deterministic mode those
 * types use the kernel's `exact` batch path (mm.h), which sums like the
 * decode kernel. Results do not depend on the thread count either: tasks
 * split rows, never a row's sum. */
#include "backend/backend.h"
#include "cpu/attn.h"
#include "cpu/mm.h"
#include "cpu/pool.h"
#include "cpu/q8.h"
#include "cpu/simd.h"
#include "cpu/vec.h"
#include "quant/quant.h"
#include "util/heap.h"
#include "util/util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define MAX_THREADS   256
#define ROWS_PER_TASK 16
#define MM_MAX_TASKS  256 /* tasks of a matmul on the SIMD path */

typedef struct {
    pool *pool;
    int n_threads;
    float *scratch[MAX_THREADS]; /* per-thread buffers */
    size_t scratch_cap[MAX_THREADS];
    int failed;      /* sticky: an op could not run; reported by sync() */
    int64_t tickets; /* submits so far (running ahead: nothing to wait for) */
    int simd;        /* use the SIMD matmul kernels */
    void *qbuf;      /* quantized activations of the current matmul */
    size_t qbuf_cap;
} cpu_impl;

static cpu_impl *impl(backend *b) {
    return b->impl;
}

/* Make every thread's scratch hold n floats (called before a job). */
static int ensure_scratch(cpu_impl *c, size_t n) {
    for (int t = 0; t < c->n_threads; t++) {
        if (c->scratch_cap[t] >= n) continue;
        free(c->scratch[t]);
        c->scratch[t] = NULL;
        c->scratch_cap[t] = 0;
        void *p = NULL;
        if (posix_memalign(&p, 64, n * sizeof(float))) {
            err_set("out of memory (scratch of %zu floats)", n);
            c->failed = 1;
            return -1;
        }
        c->scratch[t] = p;
        c->scratch_cap[t] = n;
    }
    return 0;
}

/* ---- memory ---- */
static void *cpu_alloc(backend *b, size_t n) {
    (void)b;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        err_set("out of memory (asked for %zu bytes)", n);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}
static void cpu_free(backend *b, void *p) {
    (void)b;
    free(p);
}
static int cpu_copy(backend *b, void *dst, const void *src, size_t n) {
    (void)b;
    memcpy(dst, src, n);
    return 0;
}
static int cpu_weight_init(backend *b, bk_weight *w) {
    (void)b;
    w->data = w->host;
    return 0;
}
static void cpu_weight_release(backend *b, bk_weight *w) {
    (void)b;
    w->data = NULL;
}

/* ---- dot product of two float vectors, written so the compiler
 * vectorises it: 8 independent accumulators. ---- */
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* ---- embed ---- */
typedef struct {
    float *out;
    const bk_weight *w;
    const int32_t *ids;
    float scale;
} embed_job;

static void embed_task(void *ctx, int i, int t) {
    (void)t;
    embed_job *j = ctx;
    const quant_traits *qt = quant_get(j->w->type);
    size_t rs = quant_row_size(j->w->type, j->w->cols);
    float *o = j->out + (size_t)i * j->w->cols;
    qt->dequant((const char *)j->w->data + (size_t)j->ids[i] * rs, o, j->w->cols);
    if (j->scale != 1.0f)
        for (int64_t k = 0; k < j->w->cols; k++) o[k] *= j->scale;
}

static void cpu_embed(backend *b, float *out, const bk_weight *w, const int32_t *ids, int n,
                      float scale) {
    embed_job j = {out, w, ids, scale};
    pool_run(impl(b)->pool, embed_task, &j, n);
}

/* ---- rmsnorm ---- */
typedef struct {
    float *out;
    const float *x, *w;
    int dim;
    float eps;
} norm_job;

static void norm_task(void *ctx, int r, int t) {
    (void)t;
    norm_job *j = ctx;
    const float *x = j->x + (size_t)r * j->dim;
    float *o = j->out + (size_t)r * j->dim;
    double ss = 0;
    for (int i = 0; i < j->dim; i++) ss += (double)x[i] * x[i];
    float s = (float)(1.0 / sqrt(ss / j->dim + j->eps));
    for (int i = 0; i < j->dim; i++) o[i] = x[i] * s * j->w[i];
}

static void cpu_rmsnorm(backend *b, float *out, const float *x, const float *w, int rows, int dim,
                        float eps) {
    norm_job j = {out, x, w, dim, eps};
    pool_run(impl(b)->pool, norm_task, &j, rows);
}

/* ---- matmul ---- */
typedef struct {
    float *out;
    const bk_weight *w;
    const float *x;
    int n;
    cpu_impl *c;
    /* fast path */
    const mm_kernel *kr;
    mm_fn fn; /* kr->fn, or kr->exact in deterministic mode */
    mm_act act;
    int64_t bound[MM_MAX_TASKS + 1]; /* task i: rows [bound[i], bound[i + 1]) */
    /* activation quantization */
    size_t row_bytes;
    int tok_per_task;
} mm_job;

/* reference path: dequantize a row, dot it with every token */
static void mm_task(void *ctx, int task, int t) {
    mm_job *j = ctx;
    const bk_weight *w = j->w;
    const quant_traits *qt = quant_get(w->type);
    size_t rs = quant_row_size(w->type, w->cols);
    int64_t r0 = (int64_t)task * ROWS_PER_TASK, r1 = MIN(r0 + ROWS_PER_TASK, w->rows);
    float *row = j->c->scratch[t];
    for (int64_t r = r0; r < r1; r++) {
        const void *src = (const char *)w->data + (size_t)r * rs;
        const float *wr = w->type == QT_F32 ? (const float *)src : row;
        if (w->type != QT_F32) qt->dequant(src, row, w->cols);
        for (int i = 0; i < j->n; i++)
            j->out[(size_t)i * w->rows + r] = dot_f32(wr, j->x + (size_t)i * w->cols, w->cols);
    }
}

/* fast path: a chunk of rows, all tokens */
static void mm_fast_task(void *ctx, int task, int t) {
    mm_job *j = ctx;
    const bk_weight *w = j->w;
    size_t rs = quant_row_size(w->type, w->cols);
    int64_t r0 = j->bound[task];
    int nr = (int)(j->bound[task + 1] - r0);
    j->fn(w->cols, (const uint8_t *)w->data + (size_t)r0 * rs, rs, nr, &j->act, j->n, j->out + r0,
          (size_t)w->rows, j->c->scratch[t]);
}

/* quantize the activations of a group of tokens */
static void q8_task(void *ctx, int task, int t) {
    (void)t;
    mm_job *j = ctx;
    int64_t k = j->w->cols;
    int i0 = task * j->tok_per_task, i1 = MIN(i0 + j->tok_per_task, j->n);
    for (int i = i0; i < i1; i++)
        q8_quantize_row((q8_kind)j->kr->act, j->x + (size_t)i * k, k,
                        (char *)j->c->qbuf + (size_t)i * j->row_bytes, 1);
}

static int ensure_qbuf(cpu_impl *c, size_t n) {
    if (c->qbuf_cap >= n) return 0;
    free(c->qbuf);
    c->qbuf = NULL;
    c->qbuf_cap = 0;
    if (posix_memalign(&c->qbuf, 64, n)) {
        c->qbuf = NULL;
        err_set("out of memory (%zu bytes of quantized activations)", n);
        c->failed = 1;
        return -1;
    }
    c->qbuf_cap = n;
    return 0;
}

/* The row ranges of the tasks; returns their number (<= MM_MAX_TASKS).
 * Batches (n > 4): equal tasks of about 1/8 of a thread's share (a thread
 * delayed by other work on the machine does not hold up the call), at least
 * 16 rows and a multiple of 16 (the row panels of the quantized batch
 * kernels). Decoding: guided sizes, each task a 1/(4 T) of the rows still
 * unassigned (T threads), at least 16 rows (long against the cost of
 * claiming a task) and 1/128 of the matrix, and a multiple of 4: the
 * first tasks are large, the last ones small, so the threads finish within
 * a short task of each other (with equal tasks of 1/16 of the rows, the
 * last one left a thread idle for up to 1/16 of the call at 2 threads). */
static int mm_split(int64_t rows, int n_threads, int n, int64_t *bound) {
    int nt = 0;
    bound[0] = 0;
    if (n > 4) {
        int64_t r = MAX(rows / ((int64_t)n_threads * 8), (rows + MM_MAX_TASKS - 1) / MM_MAX_TASKS);
        r = MIN(MAX(16, (r + 15) / 16 * 16), rows);
        for (int64_t r0 = 0; r0 < rows; r0 += r) bound[++nt] = MIN(r0 + r, rows);
        return nt;
    }
    const int64_t rmin = MAX(16, (rows / (MM_MAX_TASKS / 2) + 3) / 4 * 4);
    for (int64_t r0 = 0; r0 < rows;) {
        int64_t r = (rows - r0) / (4 * (int64_t)n_threads);
        r = MAX(rmin, (r + 3) / 4 * 4);
        if (nt == MM_MAX_TASKS - 1 || rows - r0 < r + rmin) r = rows - r0;
        r0 += r;
        bound[++nt] = r0;
    }
    return nt;
}

static void cpu_matmul(backend *b, float *out, const bk_weight *w, const float *x, int n) {
    cpu_impl *c = impl(b);
    if (n <= 0 || w->rows <= 0) return;
    const mm_kernel *kr = mm_kernel_get(w->type, c->simd);
    if (!kr) {
        if (ensure_scratch(c, (size_t)w->cols)) return;
        mm_job j = {.out = out, .w = w, .x = x, .n = n, .c = c};
        pool_run(c->pool, mm_task, &j, (int)((w->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK));
        return;
    }
    mm_job j = {.out = out, .w = w, .x = x, .n = n, .c = c, .kr = kr};
    j.fn = b->deterministic ? kr->exact : kr->fn;
    if (ensure_scratch(c, MM_SCRATCH_BYTES / sizeof(float))) return;
    if (kr->act == MM_ACT_F32) {
        j.act = (mm_act){x, (size_t)w->cols * sizeof(float)};
    } else {
        j.row_bytes = q8_row_bytes((q8_kind)kr->act, w->cols);
        if (ensure_qbuf(c, (size_t)n * j.row_bytes)) return;
        int groups = (int)MIN((int64_t)n, (int64_t)c->n_threads * 4);
        if ((int64_t)n * w->cols < 65536) groups = 1; /* not worth waking the pool */
        j.tok_per_task = (n + groups - 1) / groups;
        pool_run(c->pool, q8_task, &j, (n + j.tok_per_task - 1) / j.tok_per_task);
        j.act = (mm_act){c->qbuf, j.row_bytes};
    }
    pool_run(c->pool, mm_fast_task, &j, mm_split(w->rows, c->n_threads, n, j.bound));
}

/* ---- rope ---- */
#define ROPE_MAX_HALF 512
typedef struct {
    float *x;
    const int32_t *pos;
    int n_heads, head_dim, n_rot, neox;
    float base, freq_scale;
    const double *inv_freq; /* base^(-2k / n_rot), k < n_rot / 2, or NULL */
} rope_job;

static void rope_task(void *ctx, int i, int t) {
    (void)t;
    rope_job *j = ctx;
    int half = j->n_rot / 2;
    double p = (double)j->pos[i] * j->freq_scale;
    for (int k = 0; k < half; k++) {
        double f = j->inv_freq ? j->inv_freq[k] : pow(j->base, -2.0 * k / j->n_rot);
        double theta = p * f;
        float cs = (float)cos(theta), sn = (float)sin(theta);
        for (int h = 0; h < j->n_heads; h++) {
            float *v = j->x + ((size_t)i * j->n_heads + h) * j->head_dim;
            int a = j->neox ? k : 2 * k, bb = j->neox ? k + half : 2 * k + 1;
            float x0 = v[a], x1 = v[bb];
            v[a] = x0 * cs - x1 * sn;
            v[bb] = x0 * sn + x1 * cs;
        }
    }
}

/* The frequencies are the same for every token: computed once per call (the
 * same pow as before, so the same angles). */
static void cpu_rope(backend *b, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                     int n_rot, float base, float freq_scale, int neox) {
    double inv_freq[ROPE_MAX_HALF];
    int half = n_rot / 2;
    for (int k = 0; k < half && half <= ROPE_MAX_HALF; k++)
        inv_freq[k] = pow(base, -2.0 * k / n_rot);
    rope_job j = {x,        pos,        n_heads,
                  head_dim, n_rot,      neox,
                  base,     freq_scale, half <= ROPE_MAX_HALF ? inv_freq : NULL};
    pool_run(impl(b)->pool, rope_task, &j, n);
}

/* ---- kv cache ---- */
typedef struct {
    const bk_kv_layer *kv;
    const float *k, *v;
    const int32_t *slots;
} kvw_job;

static void kvw_task(void *ctx, int i, int t) {
    (void)t;
    kvw_job *j = ctx;
    int d = j->kv->kv_dim;
    size_t off = (size_t)j->slots[i] * d;
    const float *k = j->k + (size_t)i * d, *v = j->v + (size_t)i * d;
    if (j->kv->type == QT_F16) {
        uint16_t *K = (uint16_t *)j->kv->k + off, *V = (uint16_t *)j->kv->v + off;
        for (int e = 0; e < d; e++) {
            K[e] = f32_to_fp16(k[e]);
            V[e] = f32_to_fp16(v[e]);
        }
    } else {
        memcpy((float *)j->kv->k + off, k, (size_t)d * sizeof(float));
        memcpy((float *)j->kv->v + off, v, (size_t)d * sizeof(float));
    }
}

static void cpu_kv_write(backend *b, const bk_kv_layer *kv, const float *k, const float *v,
                         const int32_t *slots, int n) {
    kvw_job j = {kv, k, v, slots};
    pool_run(impl(b)->pool, kvw_task, &j, n);
}

/* ---- attention ---- */
typedef struct {
    float *out;
    const float *q;
    const bk_kv_layer *kv;
    const bk_attn_batch *ab;
    int n_head, n_head_kv, head_dim, window;
    float scale;
    cpu_impl *c;
} attn_job;

static inline void load_row(const bk_kv_layer *kv, const void *base, int32_t slot, int off, int d,
                            float *dst) {
    if (kv->type == QT_F16) {
        const uint16_t *s = (const uint16_t *)base + (size_t)slot * kv->kv_dim + off;
        for (int e = 0; e < d; e++) dst[e] = fp16_to_f32(s[e]);
    } else {
        memcpy(dst, (const float *)base + (size_t)slot * kv->kv_dim + off, (size_t)d * 4);
    }
}

static void attn_task(void *ctx, int task, int t) {
    attn_job *j = ctx;
    const bk_attn_batch *ab = j->ab;
    int i = task / j->n_head, h = task % j->n_head;
    int d = j->head_dim, kvh = h / (j->n_head / j->n_head_kv);
    int pos = ab->pos[i];
    int lo = j->window > 0 ? MAX(0, pos - j->window + 1) : 0;
    const int32_t *bt = ab->block_table + (size_t)ab->seq_row[i] * ab->max_blocks;
    const float *q = j->q + ((size_t)i * j->n_head + h) * d;
    float *o = j->out + ((size_t)i * j->n_head + h) * d;
    float *sc = j->c->scratch[t], *row = sc + (pos + 1);
    float mx = -INFINITY;
    for (int p = lo; p <= pos; p++) {
        int32_t slot = bt[p / ab->block_size] * ab->block_size + p % ab->block_size;
        load_row(j->kv, j->kv->k, slot, kvh * d, d, row);
        sc[p] = dot_f32(q, row, d) * j->scale;
        mx = MAX(mx, sc[p]);
    }
    double sum = 0;
    for (int p = lo; p <= pos; p++) {
        sc[p] = expf(sc[p] - mx);
        sum += sc[p];
    }
    float inv = (float)(1.0 / sum);
    for (int e = 0; e < d; e++) o[e] = 0;
    for (int p = lo; p <= pos; p++) {
        int32_t slot = bt[p / ab->block_size] * ab->block_size + p % ab->block_size;
        load_row(j->kv, j->kv->v, slot, kvh * d, d, row);
        float w = sc[p] * inv;
        for (int e = 0; e < d; e++) o[e] += w * row[e];
    }
}

/* SIMD path: one task per token, KV head and chunk of the heads sharing it
 * (the whole group unless there are too few tasks to keep the threads busy,
 * as when decoding one token with one KV head). */
typedef struct {
    attn_job *j;
    int hpt; /* query heads per task */
} attn_simd_job;

static void attn_simd_task(void *ctx, int task, int t) {
#if SIMD_X86
    attn_simd_job *sj = ctx;
    attn_job *j = sj->j;
    const bk_attn_batch *ab = j->ab;
    int g = j->n_head / j->n_head_kv, chunks = g / sj->hpt;
    int i = task / (j->n_head_kv * chunks), r = task % (j->n_head_kv * chunks);
    int kvh = r / chunks, h0 = kvh * g + r % chunks * sj->hpt, d = j->head_dim;
    int pos = ab->pos[i];
    int lo = j->window > 0 ? MAX(0, pos - j->window + 1) : 0;
    attn_seq s = {j->kv->k,
                  j->kv->v,
                  j->kv->type == QT_F16,
                  j->kv->kv_dim,
                  ab->block_table + (size_t)ab->seq_row[i] * ab->max_blocks,
                  ab->block_size};
    size_t row = ((size_t)i * j->n_head + h0) * d;
    attn_group_avx2(&s, kvh * d, d, j->q + row, sj->hpt, lo, pos, j->scale, j->out + row,
                    j->c->scratch[t]);
#else
    (void)ctx, (void)task, (void)t;
#endif
}

static void cpu_attention(backend *b, float *out, const float *q, const bk_kv_layer *kv,
                          const bk_attn_batch *ab, int n_head, int n_head_kv, int head_dim,
                          int window, float scale) {
    cpu_impl *c = impl(b);
    int max_pos = 0;
    for (int i = 0; i < ab->n_tokens; i++) max_pos = MAX(max_pos, ab->pos[i]);
    attn_job j = {out, q, kv, ab, n_head, n_head_kv, head_dim, window, scale, c};
    int g = n_head / n_head_kv;
    if (c->simd && n_head_kv > 0 && n_head % n_head_kv == 0) {
        attn_simd_job sj = {&j, g};
        if ((int64_t)ab->n_tokens * n_head_kv < 4 * c->n_threads) sj.hpt = 1;
        if (ensure_scratch(c, ATTN_SCRATCH(max_pos + 1, sj.hpt))) return;
        pool_run(c->pool, attn_simd_task, &sj, ab->n_tokens * n_head_kv * (g / sj.hpt));
        return;
    }
    if (ensure_scratch(c, (size_t)max_pos + 1 + (size_t)head_dim)) return;
    pool_run(c->pool, attn_task, &j, ab->n_tokens * n_head);
}

/* ---- elementwise ---- */
#define EW_CHUNK 16384
typedef struct {
    float *out;
    const float *a, *b;
    int64_t n;
    bk_act act;
    int simd;
} ew_job;

static void add_task(void *ctx, int task, int t) {
    (void)t;
    ew_job *j = ctx;
    int64_t i0 = (int64_t)task * EW_CHUNK, i1 = MIN(i0 + EW_CHUNK, j->n);
    for (int64_t i = i0; i < i1; i++) j->out[i] += j->a[i];
}

static void cpu_add(backend *b, float *x, const float *y, int64_t n) {
    ew_job j = {x, y, NULL, n, 0, 0};
    pool_run(impl(b)->pool, add_task, &j, (int)((n + EW_CHUNK - 1) / EW_CHUNK));
}

static inline float gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static void glu_task(void *ctx, int task, int t) {
    (void)t;
    ew_job *j = ctx;
    int64_t i0 = (int64_t)task * EW_CHUNK, i1 = MIN(i0 + EW_CHUNK, j->n);
#if SIMD_X86
    if (j->simd) {
        vec_glu_avx2(j->out + i0, j->a + i0, j->b + i0, i1 - i0, j->act == BK_ACT_SILU ? 0 : 1);
        return;
    }
#endif
    for (int64_t i = i0; i < i1; i++) {
        float g = j->a[i];
        float a = j->act == BK_ACT_SILU ? g / (1.0f + expf(-g)) : gelu_tanh(g);
        j->out[i] = a * j->b[i];
    }
}

static void cpu_glu(backend *b, float *out, const float *gate, const float *up, int64_t n,
                    bk_act act) {
    ew_job j = {out, gate, up, n, act, impl(b)->simd};
    pool_run(impl(b)->pool, glu_task, &j, (int)((n + EW_CHUNK - 1) / EW_CHUNK));
}

static void cpu_gather(backend *b, float *out, const float *x, const int32_t *rows, int n,
                       int dim) {
    (void)b;
    for (int i = 0; i < n; i++)
        memmove(out + (size_t)i * dim, x + (size_t)rows[i] * dim, (size_t)dim * sizeof(float));
}

/* ---- topk (backend.h: BK_TOPK) ---- */
typedef struct {
    float v;
    int32_t id;
} tk_ent;

/* the heap keeps the best entries with the worst on top: a leaves before b
 * when it comes after b in the sampler's order (lower logit, or the same
 * and a higher id) */
static bool tk_worse(const void *x, const void *y) {
    const tk_ent *a = x, *b = y;
    return a->v < b->v || (a->v == b->v && a->id > b->id);
}
HEAP_DEFINE(tk_heap, tk_ent, tk_worse)

static inline float tk_clean(float x) {
    if (x != x) return -INFINITY;
    if (x == INFINITY) return FLT_MAX;
    return x;
}

void bk_topk_row(const float *logits, int n_vocab, int32_t *ids, float *vals, float *lse) {
    tk_ent buf[BK_TOPK], e;
    heap h = {(unsigned char *)buf, 0, BK_TOPK}; /* never grows: at most BK_TOPK */
    int k = MIN(BK_TOPK, MAX(n_vocab, 0));
    for (int i = 0; i < n_vocab; i++) {
        e = (tk_ent){tk_clean(logits[i]), i};
        if ((int)h.n < k) {
            tk_heap_push(&h, &e);
        } else if (e.v > buf[0].v) { /* ids come in increasing order: a newcomer loses ties */
            tk_ent out;
            tk_heap_pop(&h, &out);
            tk_heap_push(&h, &e);
        }
    }
    int m = (int)h.n;
    for (int j = m - 1; j >= 0; j--) { /* the worst leaves first */
        tk_heap_pop(&h, &e);
        ids[j] = e.id;
        vals[j] = e.v;
    }
    for (int j = m; j < BK_TOPK; j++) {
        ids[j] = -1;
        vals[j] = -INFINITY;
    }
    if (!lse) return;
    float mx = m > 0 ? vals[0] : -INFINITY;
    if (mx == -INFINITY) {
        *lse = -INFINITY;
        return;
    }
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) {
        float l = tk_clean(logits[i]);
        if (l != -INFINITY) sum += (double)expf(l - mx);
    }
    *lse = (float)((double)mx + log(sum));
}

typedef struct {
    int32_t *ids;
    float *vals, *lse;
    const float *logits;
    int n_vocab;
} topk_job;

static void topk_task(void *ctx, int r, int t) {
    (void)t;
    topk_job *j = ctx;
    bk_topk_row(j->logits + (size_t)r * j->n_vocab, j->n_vocab, j->ids + (size_t)r * BK_TOPK,
                j->vals + (size_t)r * BK_TOPK, j->lse ? j->lse + r : NULL);
}

static void cpu_topk(backend *b, int32_t *ids, float *vals, float *lse, const float *logits,
                     int rows, int n_vocab) {
    topk_job j = {ids, vals, lse, logits, n_vocab};
    pool_run(impl(b)->pool, topk_task, &j, rows);
}

int32_t bk_argmax_row(const float *logits, int n_vocab) {
    int32_t best = 0;
    float bv = n_vocab > 0 ? tk_clean(logits[0]) : -INFINITY;
    for (int i = 1; i < n_vocab; i++) {
        float v = tk_clean(logits[i]);
        if (v > bv) bv = v, best = i; /* a later id never wins a tie */
    }
    return best;
}

static void cpu_argmax(backend *b, int32_t *ids, const float *logits, int rows, int n_vocab) {
    (void)b;
    for (int r = 0; r < rows; r++) ids[r] = bk_argmax_row(logits + (size_t)r * n_vocab, n_vocab);
}

/* running ahead: every op has finished when it returns, so a copy is made at
 * once and a ticket is only a count */
static int cpu_download_async(backend *b, void *dst, const void *src, size_t n) {
    (void)b;
    memcpy(dst, src, n);
    return 0;
}

static int64_t cpu_submit(backend *b) {
    cpu_impl *c = impl(b);
    if (c->failed) {
        c->failed = 0;
        return -1;
    }
    return ++c->tickets;
}

static int cpu_wait(backend *b, int64_t ticket) {
    (void)b, (void)ticket;
    return 0;
}

static int cpu_sync(backend *b) {
    cpu_impl *c = impl(b);
    int f = c->failed;
    c->failed = 0;
    return f ? -1 : 0;
}

static void cpu_destroy(backend *b) {
    cpu_impl *c = impl(b);
    pool_free(c->pool);
    for (int t = 0; t < c->n_threads; t++) free(c->scratch[t]);
    free(c->qbuf);
    free(c);
    free(b);
}

static const bk_ops CPU_OPS = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .weight_init = cpu_weight_init,
    .weight_release = cpu_weight_release,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .kv_write = cpu_kv_write,
    .attention = cpu_attention,
    .add = cpu_add,
    .glu = cpu_glu,
    .gather = cpu_gather,
    .topk = cpu_topk,
    .argmax = cpu_argmax,
    .sync = cpu_sync,
    .download_async = cpu_download_async,
    .submit = cpu_submit,
    .wait = cpu_wait,
};

backend *bk_cpu_new(int n_threads) {
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    backend *b = xcalloc(1, sizeof *b);
    cpu_impl *c = xcalloc(1, sizeof *c);
    if (!b || !c || !(c->pool = pool_new(n_threads))) {
        free(b);
        free(c);
        return NULL;
    }
    c->n_threads = pool_threads(c->pool);
    const char *sc = getenv("BEAST_CPU_SCALAR");
    c->simd = simd_has_avx2() && !(sc && *sc && strcmp(sc, "0") != 0);
    b->ops = &CPU_OPS;
    b->impl = c;
    return b;
}
