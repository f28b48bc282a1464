/* harness.h: shared code of the kernel microbenchmarks in bench/kernels/
 * (llm.c dev/cuda style: one file per kernel family, several versions each,
 * every version checked against the scalar reference before it is timed).
 *
 * Timing: each measurement is the minimum over `reps` runs after a warm-up
 * (the machine is shared, so the minimum is the least disturbed run).
 * Single-thread versions are timed in CPU time of the calling thread
 * (CLOCK_THREAD_CPUTIME_ID), which does not count the time the thread was
 * preempted by other work on the machine; multi-threaded runs (the backend
 * op on its pool) in wall time.
 * Sizes: decode = one token against rows x k weights, reported as GB/s of
 * weight bytes streamed; batch = 512 tokens, reported as GFLOP/s
 * (2 * rows * k * n). The matrices (a few MB) live in the 32 MB L3 of the
 * test machine, so decode numbers are L3 bandwidth, not DRAM.
 *
 * Header-only (static functions): each bench file is one program. */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "cpu/mm.h"
#include "cpu/q8.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

static uint64_t h_rng = 12345;
static inline float h_nrand(void) {
    h_rng = h_rng * 6364136223846793005ull + 1442695040888963407ull;
    double u = ((h_rng >> 11) + 1.0) / 9007199254740993.0;
    h_rng = h_rng * 6364136223846793005ull + 1442695040888963407ull;
    double v = (h_rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static inline void *h_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static inline double h_clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static inline double h_now(void) { return h_clock(CLOCK_MONOTONIC); }

/* A weight matrix of a type, quantized from normal values (quantizing a big
 * matrix with the reference quantizers is slow, so a few distinct rows are
 * quantized and repeated). */
typedef struct {
    int type;
    int64_t rows, k;
    size_t rs;
    uint8_t *q;
} h_weight;

static inline h_weight h_weight_new(int type, int64_t rows, int64_t k) {
    const quant_traits *qt = quant_get(type);
    h_weight w = {type, rows, k, quant_row_size(type, k), NULL};
    w.q = h_alloc(w.rs * rows);
    float *f = h_alloc((size_t)k * 4);
    const int distinct = 16;
    for (int r = 0; r < distinct && r < rows; r++) {
        for (int64_t i = 0; i < k; i++) f[i] = 0.5f * h_nrand();
        qt->quant(f, w.q + r * w.rs, k);
    }
    for (int64_t r = distinct; r < rows; r++)
        memcpy(w.q + r * w.rs, w.q + (r % distinct) * w.rs, w.rs);
    free(f);
    return w;
}

static inline float *h_act(int n, int64_t k) {
    float *x = h_alloc((size_t)n * k * 4);
    for (int64_t i = 0; i < n * k; i++) x[i] = h_nrand();
    return x;
}

/* Activations prepared for a kernel (what cpu_backend.c does). */
typedef struct {
    mm_act act;
    void *buf;
} h_qact;

static inline h_qact h_prepare(const mm_kernel *kr, const float *x, int n, int64_t k) {
    h_qact q = {{x, (size_t)k * 4}, NULL};
    if (kr->act == MM_ACT_F32) return q;
    size_t rb = q8_row_bytes((q8_kind)kr->act, k);
    q.buf = h_alloc(rb * n);
    for (int i = 0; i < n; i++)
        q8_quantize_row((q8_kind)kr->act, x + i * k, k, (char *)q.buf + i * rb, 1);
    q.act = (mm_act){q.buf, rb};
    return q;
}

/* The reference path as the backend had it before the SIMD kernels:
 * dequantize a row, dot it with each token in float (8 accumulators). */
static inline float h_dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

static inline void h_ref_matmul(const h_weight *w, const float *x, int n, float *out, float *row) {
    const quant_traits *qt = quant_get(w->type);
    for (int64_t r = 0; r < w->rows; r++) {
        qt->dequant(w->q + r * w->rs, row, w->k);
        for (int i = 0; i < n; i++) out[i * w->rows + r] = h_dot_f32(row, x + i * w->k, w->k);
    }
}

/* max |a - b| / max |b| */
static inline double h_rel(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1e-30;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return md / mb;
}

/* Time fn(ctx) `reps` times after one warm-up run; returns the minimum, in
 * thread CPU time (cpu) or wall time. */
typedef void (*h_fn)(void *ctx);
static inline double h_time(h_fn fn, void *ctx, int reps, int cpu) {
    clockid_t id = cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    fn(ctx);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = h_clock(id);
        fn(ctx);
        best = fmin(best, h_clock(id) - t0);
    }
    return best;
}

#endif
