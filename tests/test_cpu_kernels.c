/* test_cpu_kernels.c: the CPU matrix-product kernels (src/cpu/mm.h) and the
 * activation quantizer (src/cpu/q8.h) against the scalar references, on
 * fresh random inputs (seed printed; BEAST_TEST_SEED=<n> repeats a run).
 *
 * (a) q8 quantizer: the AVX2 version equals the scalar one byte for byte
 *     (scales bit for bit), and the scalar one meets its definition: d =
 *     amax / 127, every element within d/2 of d * q (plus 1e-6 (d + |x|) for
 *     the float rounding of 1/d and x * (1/d)), sums = d * sum q, bsums =
 *     sum q.
 * (b) every kernel, for every weight type, against quant_get(t)->dot (double
 *     precision on the f32 activation), for odd row counts and token counts
 *     (all tile shapes and their remainders):
 *     - activations exactly representable in 8 bits (x = 2^-e * q with an
 *       element of +-127 in each block): quantization is lossless, so the
 *       kernel must agree with the reference to float rounding:
 *       |err| <= 1e-5 * sum_i |w_i| |x_i| (+ 1e-30);
 *     - normal activations: the error comes from the activation rounding
 *       |x_i - a_i| <= d_b / 2 (d_b = amax of the block / 127, blocks of 32
 *       for the legacy types, 256 for the K-quants), so
 *       |err| <= sum_b d_b / 2 * sum_{i in b} |w_i| * (1 + 1e-4)
 *                + 1e-4 * sum_i 3 W_b |x_i|    (W_b = max |w| in block b:
 *       float rounding of the scaled integer sums and of the offset terms).
 *       This bound holds for every output, no statistics involved. Also the
 *       worst relative error max |err| / (|w| |x|) is printed and must be
 *       below 1e-2 (typically ~1e-3 for 8-bit activations).
 *     F32 / F16 / BF16 use f32 activations: |err| <= 1e-5 * sum |w_i x_i|.
 * (b2) batch independence of every quantized kernel, bit for bit: the
 *     `exact` path on 9 tokens (batch panels) gives each token exactly
 *     what the decode path gives it alone and in groups of 2..4 tokens
 *     (mm.h; row lengths with partial groups of blocks: 640 = 20 blocks of
 *     32, 576, 288, 416; 256 .. 2304 for the K-quants).
 * (c) the backend's matmul with 1, 2 and 3 threads, odd shapes, against the
 *     reference path of the same backend (BEAST_CPU_SCALAR=1), same bounds.
 * (d) the backend's attention (AVX2 kernel, src/cpu/attn.c) against its
 *     scalar path (itself checked against float64 in test_backend_cpu.c):
 *     head sizes 64, 256 and 36 (a tail of 4), GQA groups 1, 3, 4, 6,
 *     f16 and f32 caches, sliding windows, contexts up to 300 positions in
 *     shuffled blocks, one token (decoding) and whole prompts; 1e-5 relative
 *     to max |out| (both compute in f32; the softmax sum in double).
 * (e) the AVX2 GLU activations (src/cpu/vec.c) against double precision on
 *     normal, wide (+-100) and special inputs, odd lengths: with t the
 *     argument of e^-t (x for SiLU, 2u for GELU), |err| <= 4e-7 (1 + |t|)
 *     |ref| + 1e-35: a few ulp from the exp approximation, plus the float
 *     rounding of t, which e^-t turns into an error of |t| ulp; e^x is
 *     clamped at 1.6e+-38, which moves results only below 1e-36.
 * Without AVX2 (b) and the SIMD half of (a) are skipped (printed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "cpu/mm.h"
#include "cpu/q8.h"
#include "cpu/simd.h"
#include "cpu/vec.h"
#include "quant/quant.h"
#include "util/util.h"

#include "check.h"

/* normal, with 1% outliers x20 (activation-like), per-block scales varying */
static void fill_act(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = rng_normal();
        if (rng_uniform() < 0.01) x[i] *= 20;
    }
}

static void *xalloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) abort();
    return p;
}

/* ---- (a) quantizer ---- */

static void test_q8_kind(q8_kind kind, int simd) {
    const char *name = kind == Q8_32 ? "Q8_32" : "Q8_K";
    int bsz = kind == Q8_32 ? 32 : 256;
    for (int trial = 0; trial < 20; trial++) {
        int64_t k = 256 * (2 + rng_int(7)); /* at least two blocks of 256 */
        float *x = xalloc((size_t)k * 4);
        fill_act(x, k);
        if (trial % 4 == 1) /* a zero block and a tiny one */
            for (int i = 0; i < bsz; i++) x[i] = 0, x[bsz + i] *= 1e-30f;
        if (trial % 4 == 2) /* wildly different block scales */
            for (int64_t i = 0; i < k; i++) x[i] *= powf(10.0f, (float)((i / bsz) % 7) - 3);
        size_t rb = q8_row_bytes(kind, k);
        uint8_t *r0 = xalloc(rb), *r1 = xalloc(rb);
        memset(r0, 0x55, rb), memset(r1, 0x55, rb);
        q8_quantize_row(kind, x, k, r0, 0);
        if (simd) {
            q8_quantize_row(kind, x, k, r1, 1);
            CHECK(memcmp(r0, r1, rb) == 0, "%s k=%lld: AVX2 row differs from scalar", name,
                  (long long)k);
        }
        /* the scalar one against its definition */
        const int8_t *q = q8_qs(r0);
        const float *d = q8_d(r0, k);
        for (int64_t b = 0; b < k / bsz; b++) {
            float amax = 0;
            int sum = 0, ok = 1;
            for (int i = 0; i < bsz; i++) amax = fmaxf(amax, fabsf(x[b * bsz + i]));
            CHECK(d[b] == amax / 127.0f, "%s block %lld: d %g, amax/127 %g", name, (long long)b,
                  d[b], amax / 127.0f);
            for (int i = 0; i < bsz; i++) {
                float e = fabsf(x[b * bsz + i] - d[b] * q[b * bsz + i]);
                if (e > d[b] * (0.5f + 1e-6f) + fabsf(x[b * bsz + i]) * 1e-6f) ok = 0;
                if (q[b * bsz + i] < -127) ok = 0;
                sum += q[b * bsz + i];
                if (kind == Q8_K && i % 16 == 15) {
                    CHECK(q8_bsums(r0, k)[16 * b + i / 16] == sum, "%s bsum", name);
                    sum = 0;
                }
            }
            CHECK(ok, "%s block %lld: an element is not within d/2", name, (long long)b);
            if (kind == Q8_32) CHECK(q8_s(r0, k)[b] == d[b] * (float)sum, "%s: block sum", name);
        }
        free(x), free(r0), free(r1);
    }
}

/* ---- (b) kernels ---- */

typedef struct {
    int type;
    const char *name;
} tinfo;

static const tinfo TYPES[] = {
    {QT_F32, "F32"},   {QT_F16, "F16"},   {QT_BF16, "BF16"}, {QT_Q4_0, "Q4_0"}, {QT_Q4_1, "Q4_1"},
    {QT_Q5_0, "Q5_0"}, {QT_Q5_1, "Q5_1"}, {QT_Q8_0, "Q8_0"}, {QT_Q2_K, "Q2_K"}, {QT_Q3_K, "Q3_K"},
    {QT_Q4_K, "Q4_K"}, {QT_Q5_K, "Q5_K"}, {QT_Q6_K, "Q6_K"},
};

/* activation block of the kernel for a weight type (0: f32 activations) */
static int act_block(int type) {
    const mm_kernel *kr = mm_kernel_get(type, 1);
    if (!kr || kr->act == MM_ACT_F32) return 0;
    return kr->act == MM_ACT_Q8_32 ? 32 : 256;
}

/* x exactly representable in Q8_32 and Q8_K: per 256, 2^-e * q with q in
 * [-127, 127] and +-127 in every 32 */
static void fill_exact(float *x, int64_t k) {
    for (int64_t b = 0; b < k; b += 256) {
        float s = ldexpf(1.0f, rng_int(12) - 6);
        for (int i = 0; i < 256 && b + i < k; i++) {
            int q = rng_int(255) - 127;
            if (i % 32 == 5) q = rng_uniform() < 0.5 ? 127 : -127;
            x[b + i] = s * (float)q;
        }
    }
}

/* The error allowed for output (row w, activation x) of a type; see the
 * header. exact: activations representable (no quantization error). */
static double allowed(int type, const float *w, const float *x, int64_t k, int exact) {
    int bsz = act_block(type);
    double sum_wx = 0;
    for (int64_t i = 0; i < k; i++) sum_wx += fabs((double)w[i] * x[i]);
    if (!bsz || exact) return 1e-5 * sum_wx + 1e-30;
    double quant = 0, fl = 0;
    for (int64_t b = 0; b < k; b += bsz) {
        double amax = 0, wmax = 0, sw = 0, sx = 0;
        for (int i = 0; i < bsz; i++) {
            amax = fmax(amax, fabs(x[b + i]));
            wmax = fmax(wmax, fabs(w[b + i]));
            sw += fabs(w[b + i]);
            sx += fabs(x[b + i]);
        }
        quant += amax / 127 / 2 * sw;
        fl += 3 * wmax * sx;
    }
    return quant * (1 + 1e-4) + 1e-4 * fl + 1e-30;
}

/* Run the kernel on nr rows x nc tokens of one type, check every output. */
static void check_kernel(const tinfo *t, int nr, int nc, int64_t k, int exact) {
    const quant_traits *qt = quant_get(t->type);
    const mm_kernel *kr = mm_kernel_get(t->type, 1);
    size_t rs = quant_row_size(t->type, k);
    float *wf = xalloc((size_t)nr * k * 4), *wd = xalloc((size_t)nr * k * 4);
    float *x = xalloc((size_t)nc * k * 4), *out = xalloc((size_t)nc * nr * 4);
    uint8_t *wq = xalloc(rs * nr);
    for (int64_t i = 0; i < nr * k; i++) wf[i] = 0.5f * rng_normal();
    for (int r = 0; r < nr; r++) {
        qt->quant(wf + r * k, wq + r * rs, k);
        qt->dequant(wq + r * rs, wd + r * k, k);
    }
    for (int c = 0; c < nc; c++) {
        if (exact)
            fill_exact(x + c * k, k);
        else
            fill_act(x + c * k, k);
    }
    /* the activations as the backend would prepare them */
    mm_act act = {x, (size_t)k * 4};
    void *qbuf = NULL, *scratch = xalloc(MM_SCRATCH_BYTES);
    if (kr->act != MM_ACT_F32) {
        size_t rb = q8_row_bytes((q8_kind)kr->act, k);
        qbuf = xalloc(rb * nc);
        for (int c = 0; c < nc; c++)
            q8_quantize_row((q8_kind)kr->act, x + c * k, k, (char *)qbuf + c * rb, 1);
        act = (mm_act){qbuf, rb};
    }
    for (int i = 0; i < nc * nr; i++) out[i] = NAN;
    kr->fn(k, wq, rs, nr, &act, nc, out, (size_t)nr, scratch);
    double worst = 0;
    int bad = 0;
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) {
            double ref = qt->dot(wq + r * rs, x + c * k, k);
            double err = fabs(out[c * nr + r] - ref);
            double lim = allowed(t->type, wd + r * k, x + c * k, k, exact);
            double nw = 0, nx = 0;
            for (int64_t i = 0; i < k; i++) nw += (double)wd[r * k + i] * wd[r * k + i];
            for (int64_t i = 0; i < k; i++) nx += (double)x[c * k + i] * x[c * k + i];
            worst = fmax(worst, err / (sqrt(nw * nx) + 1e-30));
            if (!(err <= lim) && bad++ < 3)
                printf("  %s %s r=%d c=%d k=%lld: got %.9g ref %.9g err %.3g allowed %.3g\n",
                       t->name, exact ? "exact" : "normal", r, c, (long long)k, out[c * nr + r],
                       ref, err, lim);
        }
    CHECK(bad == 0, "%s nr=%d nc=%d k=%lld %s: %d outputs over the bound", t->name, nr, nc,
          (long long)k, exact ? "exact" : "normal", bad);
    CHECK(worst < 1e-2, "%s: relative error %g vs |w||x|", t->name, worst);
    if (nr == 37 && nc == 5)
        printf("  %-5s k=%-5lld %-6s max |err| / (|w| |x|) = %.2e\n", t->name, (long long)k,
               exact ? "exact" : "normal", worst);
    free(wf), free(wd), free(x), free(out), free(wq), free(qbuf), free(scratch);
}

static void test_kernels(void) {
    const int nrs[] = {1, 2, 3, 5, 37}, ncs[] = {1, 2, 3, 4, 5, 7, 9};
    for (size_t ti = 0; ti < ARRAY_LEN(TYPES); ti++) {
        const tinfo *t = &TYPES[ti];
        int blk = quant_get(t->type)->block;
        int64_t ks[3] = {256, 512, 1024};
        if (blk == 32) ks[0] = 32 * 9;         /* odd block count */
        if (blk == 1) ks[0] = 77, ks[1] = 264; /* tails of 8 */
        for (size_t a = 0; a < ARRAY_LEN(nrs); a++)
            for (size_t b = 0; b < ARRAY_LEN(ncs); b++)
                check_kernel(t, nrs[a], ncs[b], ks[(a + b) % 3], (a + b) % 2);
        check_kernel(t, 37, 5, 512, 1);
        check_kernel(t, 37, 5, 2048, 0);
    }
}

/* ---- (b2) batch independence ---- */

static void check_exact(int type, int nr, int64_t k) {
    const quant_traits *qt = quant_get(type);
    const mm_kernel *kr = mm_kernel_get(type, 1);
    const int nc = 9;
    size_t rs = quant_row_size(type, k), rb = q8_row_bytes((q8_kind)kr->act, k);
    float *wf = xalloc((size_t)k * 4), *x = xalloc((size_t)nc * k * 4);
    float *ob = xalloc((size_t)nc * nr * 4), *od = xalloc((size_t)nc * nr * 4);
    uint8_t *wq = xalloc(rs * nr);
    void *qbuf = xalloc(rb * nc), *scratch = xalloc(MM_SCRATCH_BYTES);
    for (int r = 0; r < nr; r++) {
        for (int64_t i = 0; i < k; i++) wf[i] = 0.5f * rng_normal();
        qt->quant(wf, wq + r * rs, k);
    }
    fill_act(x, (int64_t)nc * k);
    for (int c = 0; c < nc; c++)
        q8_quantize_row((q8_kind)kr->act, x + c * k, k, (char *)qbuf + c * rb, 1);
    mm_act act = {qbuf, rb};
    kr->exact(k, wq, rs, nr, &act, nc, ob, (size_t)nr, scratch);
    int bad = 0;
    for (int g = 1; g <= 4; g++) /* decode in groups of g tokens */
        for (int c0 = 0; c0 < nc; c0 += g) {
            int n = MIN(g, nc - c0);
            mm_act a = {(const char *)qbuf + c0 * rb, rb};
            for (int i = 0; i < n * nr; i++) od[i] = NAN;
            kr->fn(k, wq, rs, nr, &a, n, od, (size_t)nr, scratch);
            for (int i = 0; i < n * nr; i++)
                if (memcmp(&od[i], &ob[c0 * nr + i], 4) && bad++ < 3)
                    printf("  %s k=%lld token %d row %d (decode %d): %.9g, batch %.9g\n", qt->name,
                           (long long)k, c0 + i / nr, i % nr, n, od[i], ob[c0 * nr + i]);
        }
    CHECK(bad == 0, "%s nr=%d k=%lld: %d decode results differ from the exact batch", qt->name, nr,
          (long long)k, bad);
    free(wf), free(x), free(ob), free(od), free(wq), free(qbuf), free(scratch);
}

static void test_exact(void) {
    const int64_t k32[] = {640, 576, 288, 416, 2048}, k256[] = {256, 1024, 2304};
    for (size_t ti = 0; ti < ARRAY_LEN(TYPES); ti++) {
        int type = TYPES[ti].type, blk = quant_get(type)->block;
        if (act_block(type) == 0) continue;
        const int64_t *ks = blk == 32 ? k32 : k256;
        size_t nk = blk == 32 ? ARRAY_LEN(k32) : ARRAY_LEN(k256);
        for (size_t i = 0; i < nk; i++) check_exact(type, 1 + (int)(i * 7) % 19, ks[i]);
    }
}

/* ---- (c) the backend, several thread counts ---- */

static void test_backend(void) {
    const int types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                         QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    setenv("BEAST_CPU_SCALAR", "1", 1);
    backend *ref_bk = bk_cpu_new(2);
    unsetenv("BEAST_CPU_SCALAR");
    for (int nt = 1; nt <= 3; nt++) {
        backend *bk = bk_cpu_new(nt);
        CHECK(bk && ref_bk, "backend");
        if (!bk || !ref_bk) return;
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
            int type = types[ti];
            const quant_traits *qt = quant_get(type);
            int rows = 101 + 2 * rng_int(50), n = 1 + rng_int(13);
            int64_t k = qt->block == 256 ? 512 : qt->block == 32 ? 32 * 11 : 99;
            if (ti % 3 == 0) n = 1; /* decode */
            size_t rs = quant_row_size(type, k);
            float *wf = xalloc((size_t)rows * k * 4), *wd = xalloc((size_t)rows * k * 4);
            float *x = xalloc((size_t)n * k * 4);
            float *out = xalloc((size_t)n * rows * 4), *ref = xalloc((size_t)n * rows * 4);
            uint8_t *wq = xalloc(rs * rows);
            for (int64_t i = 0; i < rows * k; i++) wf[i] = 0.5f * rng_normal();
            fill_act(x, n * k);
            for (int r = 0; r < rows; r++) {
                qt->quant(wf + r * k, wq + r * rs, k);
                qt->dequant(wq + r * rs, wd + r * k, k);
            }
            bk_weight W = {type, rows, k, NULL, wq};
            bk->ops->weight_init(bk, &W);
            bk->ops->matmul(bk, out, &W, x, n);
            ref_bk->ops->matmul(ref_bk, ref, &W, x, n);
            CHECK(bk->ops->sync(bk) == 0 && ref_bk->ops->sync(ref_bk) == 0, "sync");
            int bad = 0;
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++) {
                    double lim = allowed(type, wd + r * k, x + t * k, k, 0) * 1.01;
                    if (!(fabs(out[t * rows + r] - ref[t * rows + r]) <= lim)) bad++;
                }
            CHECK(bad == 0, "backend %d threads, %s rows=%d n=%d: %d outputs off", nt, qt->name,
                  rows, n, bad);
            free(wf), free(wd), free(x), free(out), free(ref), free(wq);
        }
        bk->ops->destroy(bk);
    }
    ref_bk->ops->destroy(ref_bk);
}

/* ---- (d) attention ---- */

static void attn_case(backend *bk, backend *ref, int n_head, int n_kv, int hd, int kv_type,
                      int window, int ctx, int n_new) {
    const int bs = 16, n_blocks = (ctx + bs - 1) / bs + 2;
    int kv_dim = n_kv * hd;
    size_t esz = kv_type == QT_F16 ? 2 : 4;
    bk_kv_layer L = {bk->ops->alloc(bk, (size_t)n_blocks * bs * kv_dim * esz),
                     bk->ops->alloc(bk, (size_t)n_blocks * bs * kv_dim * esz), kv_dim, kv_type};
    int32_t *bt = xalloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) bt[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = rng_int(i + 1), t = bt[i];
        bt[i] = bt[j], bt[j] = t;
    }
    /* the whole context in the cache; the last n_new positions are queried */
    float *K = xalloc((size_t)ctx * kv_dim * 4), *V = xalloc((size_t)ctx * kv_dim * 4);
    int32_t *slot = xalloc((size_t)ctx * 4), *pos = xalloc((size_t)n_new * 4);
    int32_t *row = xalloc((size_t)n_new * 4);
    for (int64_t i = 0; i < (int64_t)ctx * kv_dim; i++) K[i] = rng_normal(), V[i] = rng_normal();
    for (int p = 0; p < ctx; p++) slot[p] = bt[p / bs] * bs + p % bs;
    bk->ops->kv_write(bk, &L, K, V, slot, ctx);
    for (int i = 0; i < n_new; i++) pos[i] = ctx - n_new + i, row[i] = 0;
    size_t qn = (size_t)n_new * n_head * hd;
    float *Q = xalloc(qn * 4), *O = xalloc(qn * 4), *R = xalloc(qn * 4);
    for (size_t i = 0; i < qn; i++) Q[i] = 2 * rng_normal();
    bk_attn_batch ab = {n_new, pos, row, bt, n_blocks, bs, 0};
    float scale = 1.0f / sqrtf((float)hd);
    bk->ops->attention(bk, O, Q, &L, &ab, n_head, n_kv, hd, window, scale);
    ref->ops->attention(ref, R, Q, &L, &ab, n_head, n_kv, hd, window, scale);
    CHECK(bk->ops->sync(bk) == 0 && ref->ops->sync(ref) == 0, "sync");
    double md = check_max_diff(O, R, qn), mr = check_max_abs(R, qn);
    CHECK(md / mr < 1e-5, "attention heads %d/%d hd %d kv %s window %d ctx %d n %d: rel err %g",
          n_head, n_kv, hd, kv_type == QT_F16 ? "f16" : "f32", window, ctx, n_new, md / mr);
    bk->ops->free(bk, L.k);
    bk->ops->free(bk, L.v);
    free(bt), free(K), free(V), free(slot), free(pos), free(row), free(Q), free(O), free(R);
}

static void test_attention(void) {
    setenv("BEAST_CPU_SCALAR", "1", 1);
    backend *ref = bk_cpu_new(2);
    unsetenv("BEAST_CPU_SCALAR");
    backend *bk = bk_cpu_new(2);
    const int shapes[][3] = {{9, 3, 64}, {4, 1, 256}, {8, 2, 64}, {6, 1, 36}, {2, 2, 64}};
    for (size_t si = 0; si < ARRAY_LEN(shapes); si++)
        for (int kv = 0; kv < 2; kv++) {
            int type = kv ? QT_F32 : QT_F16;
            attn_case(bk, ref, shapes[si][0], shapes[si][1], shapes[si][2], type, 0, 300, 1);
            attn_case(bk, ref, shapes[si][0], shapes[si][1], shapes[si][2], type, 0,
                      17 + rng_int(80), 17);
            attn_case(bk, ref, shapes[si][0], shapes[si][1], shapes[si][2], type, 7, 100, 9);
        }
    bk->ops->destroy(bk);
    ref->ops->destroy(ref);
}

/* ---- (e) GLU activations ---- */

static void test_glu(void) {
#if SIMD_X86
    const int64_t n = 4099;
    float *g = xalloc(n * 4), *u = xalloc(n * 4), *o = xalloc(n * 4);
    for (int range = 0; range < 3; range++) {
        for (int64_t i = 0; i < n; i++) {
            g[i] = range == 0   ? 3 * rng_normal()
                   : range == 1 ? (float)(200 * rng_uniform() - 100)
                                : rng_normal();
            u[i] = rng_normal();
        }
        if (range == 2) { /* special values */
            const float sp[] = {0.0f,   -0.0f,   1e-30f, -1e-30f, 87.0f, -87.0f, 88.5f, -88.5f,
                                200.0f, -200.0f, 1e-6f,  -1e-6f,  9.9f,  -9.9f,  10.5f, -10.5f};
            for (size_t i = 0; i < ARRAY_LEN(sp); i++) g[i] = sp[i];
        }
        for (int act = 0; act < 2; act++) {
            vec_glu_avx2(o, g, u, n, act);
            double worst = 0;
            int bad = 0;
            for (int64_t i = 0; i < n; i++) {
                double x = g[i], f;
                /* 0.5 x (1 + tanh u) = x / (1 + e^-2u): the second form has no
                 * cancellation for large negative u */
                double t = act == 0 ? x : 2 * sqrt(2 / M_PI) * (x + 0.044715 * x * x * x);
                f = x / (1 + exp(-t));
                /* the float argument t carries a relative rounding error of a
                 * few 2^-24, which e^-t turns into |t| times that */
                double ref = f * u[i], err = fabs(o[i] - ref), tol = 4e-7 * (1 + fabs(t));
                if (fabs(ref) > 1e-30) worst = fmax(worst, err / fabs(ref) / (1 + fabs(t)));
                if (!(err <= tol * fabs(ref) + 1e-35) && bad++ < 3)
                    printf("  glu act %d: x %g up %g got %g ref %g\n", act, x, u[i], o[i], ref);
            }
            CHECK(bad == 0, "glu act %d range %d: %d outputs off", act, range, bad);
            if (range == 1)
                printf("  glu act %d: max relative error / (1 + |t|) %.2e\n", act, worst);
        }
    }
    free(g), free(u), free(o);
#endif
}

int main(void) {
    check_seed();
    int simd = simd_has_avx2();
    printf("AVX2+FMA+F16C: %s\n", simd ? "yes" : "no (SIMD checks skipped)");
    test_q8_kind(Q8_32, simd);
    test_q8_kind(Q8_K, simd);
    if (simd) test_kernels();
    if (simd) test_exact();
    test_backend();
    test_attention();
    if (simd) test_glu();
    return check_done();
}
