/* test_cuda.c: the CUDA backend against the CPU backend, op by op on fresh
 * random inputs (a new seed each run, printed; BEAST_TEST_SEED repeats one),
 * then whole models: generated tiny llama / gemma3 files (and the real
 * default models when $BEAST_MODELS_DIR has them), GPU logits vs. CPU logits
 * through prefill and greedy decoding, several sequences at once, and CUDA
 * graph replay vs. plain launches (bit-identical), and deterministic mode
 * (every token's logits in a batch equal to its batch-of-one logits). Exit 77 (skipped) when no
 * CUDA device is usable or the library was built without CUDA.
 *
 * The reference is the CPU backend's scalar path (BEAST_CPU_SCALAR=1: each
 * weight row dequantized, then float dot products), which computes the
 * op's definition in float. The default CPU backend (SIMD kernels that
 * round the activations to 8-bit blocks or to the weight's float format) is
 * compared too, with its rounding added to the tolerance.
 *
 * Tolerances. Let S = sum_c |w[r][c] * x[t][c]| (the size of the terms of
 * one dot product).
 *   matmul, mat-vec path (n <= mv_max, bk_cuda_stats): both backends sum the same float
 *     products in float, in different orders: random rounding errors of
 *     about sqrt(cols) * 2^-24 * S (< 4e-6 S at 4096 columns); we allow
 *     2e-5 S. Against the SIMD CPU backend we add its activation rounding:
 *     8-bit blocks err by at most amax(block)/254 per element, so
 *     sum_c |w[r][c]| * amax256(x[t], c) / 254 (blocks of 256 bound those of
 *     32); f16 / bf16 activations by 2^-11 / 2^-8 relative (allowed: 2^-10 S
 *     and 2^-7 S).
 *   matmul, one token of Q4_K or Q6_K: 8-bit activations in blocks of 32, so the
 *     activation rounding bound of the SIMD backend (blocks of 256, larger)
 *     is added to the 2e-5 S.
 *   matmul, cuBLAS path (n > mv_max): f16 operands (the f16 weight copy and
 *     x rounded to f16: relative error <= 2^-11 each; TF32 for f32 weights:
 *     <= 2^-10 each), so |error| <= 2 * 2^-10 * S plus float accumulation:
 *     we allow 2.5e-3 S.
 *   embed: the same float operations as the reference dequantizer: 1e-6
 *     relative (it is normally bit-exact; the count is printed).
 *   rmsnorm, rope, glu, add: float evaluation of the same formulas: 1e-5
 *     relative to the row's largest value (add and gather: exact).
 *   attention: a convex combination of V rows computed with float softmax in
 *     another order: 2e-5 of max |V|.
 *   whole model: logits differ by the matmul errors above carried through
 *     the layers; prompt prefill takes the f16 tensor-core path. We require
 *     ||gpu - cpu|| / ||cpu|| < 1e-2 per step and that the GPU's top token is
 *     within twice the largest logit difference of the CPU's top logit. */
#include "backend/backend.h"
#include "beast.h"
#include "cuda/cuda.h"
#include "model/gen.h"
#include "model/model.h"
#include "quant/quant.h"
#include "util/util.h"

#include "check.h"

#include <execinfo.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * rng_normal();
}

static backend *G, *C, *R; /* GPU, CPU (SIMD) and CPU (scalar reference) backends */

/* The CPU backends run on one thread: the reference needs no speed, and the
 * thread pool's scheduling is not what this test is about. */
static backend *cpu_scalar_backend(void) {
    setenv("BEAST_CPU_SCALAR", "1", 1);
    backend *b = bk_cpu_new(1);
    unsetenv("BEAST_CPU_SCALAR");
    return b;
}

/* device copy of host data */
static void *dput(const void *h, size_t bytes) {
    void *d = G->ops->alloc(G, bytes);
    if (!d) {
        printf("FAIL: alloc %zu: %s\n", bytes, err_get());
        exit(1);
    }
    if (G->ops->upload(G, d, h, bytes)) {
        printf("FAIL: upload: %s\n", err_get());
        exit(1);
    }
    return d;
}
static void dget(void *h, const void *d, size_t bytes) {
    CHECK(G->ops->download(G, h, d, bytes) == 0, "download: %s", err_get());
}
static void dfree(void *d) {
    G->ops->free(G, d);
}

/* ---- matmul ---- */
static const int TYPES[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                            QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};

/* activation-rounding bound of the SIMD CPU kernels for row r, token t */
static double act_bound(int type, const float *deq_row, const float *x, int cols) {
    if (type == QT_F32) return 0;
    if (type == QT_F16 || type == QT_BF16) {
        double S = 0;
        for (int c = 0; c < cols; c++) S += fabs((double)deq_row[c] * x[c]);
        return S * (type == QT_F16 ? 1.0 / 1024 : 1.0 / 128);
    }
    double e = 0;
    for (int c0 = 0; c0 < cols; c0 += 256) {
        int c1 = MIN(cols, c0 + 256);
        double amax = 0, wsum = 0;
        for (int c = c0; c < c1; c++) {
            amax = fmax(amax, fabs(x[c]));
            wsum += fabs(deq_row[c]);
        }
        e += wsum * amax / 254 * 1.01;
    }
    return e;
}

static void check_matmul(int type, int rows, int cols, const int *ns, int n_ns) {
    const quant_traits *qt = quant_get(type);
    size_t rs = quant_row_size(type, cols);
    float *w = malloc((size_t)rows * cols * 4), *deq = malloc((size_t)rows * cols * 4);
    char *q = malloc(rs * rows);
    fill(w, (size_t)rows * cols, 0.5f);
    for (int r = 0; r < rows; r++) qt->quant(w + (size_t)r * cols, q + r * rs, cols);
    for (int r = 0; r < rows; r++) qt->dequant(q + r * rs, deq + (size_t)r * cols, cols);
    bk_weight Wc = {type, rows, cols, NULL, q}, Wr = Wc, Wg = Wc;
    CHECK(C->ops->weight_init(C, &Wc) == 0 && R->ops->weight_init(R, &Wr) == 0, "cpu weight_init");
    if (G->ops->weight_init(G, &Wg)) {
        CHECK(0, "cuda weight_init %s: %s", qt->name, err_get());
        goto done;
    }
    for (int k = 0; k < n_ns; k++) {
        int n = ns[k];
        float *x = malloc((size_t)n * cols * 4), *oc = malloc((size_t)n * rows * 4),
              *orf = malloc((size_t)n * rows * 4), *og = malloc((size_t)n * rows * 4);
        fill(x, (size_t)n * cols, 1.0f);
        C->ops->matmul(C, oc, &Wc, x, n);
        C->ops->sync(C);
        R->ops->matmul(R, orf, &Wr, x, n);
        R->ops->sync(R);
        for (size_t i = 0; i < (size_t)n * rows; i++) og[i] = NAN; /* poison the output */
        float *xd = dput(x, (size_t)n * cols * 4), *od = dput(og, (size_t)n * rows * 4);
        G->ops->matmul(G, od, &Wg, xd, n);
        CHECK(G->ops->sync(G) == 0, "sync: %s", err_get());
        dget(og, od, (size_t)n * rows * 4);
        bk_cuda_stats st;
        bk_cuda_get_stats(G, &st);
        double tol = n > st.mv_max ? 2.5e-3 : 2e-5, worst = 0, worst_c = 0;
        /* one token of Q4_K / Q6_K runs on 8-bit activations (cuda_mvq.cu): their
         * rounding is allowed on top, as for the SIMD CPU backend */
        int q8 = n == 1 && (type == QT_Q4_K || type == QT_Q6_K) && cols % 256 == 0;
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++) {
                const float *dr = deq + (size_t)r * cols, *xt = x + (size_t)t * cols;
                double S = 1e-30;
                for (int c = 0; c < cols; c++) S += fabs((double)dr[c] * xt[c]);
                size_t o = (size_t)t * rows + r;
                double e = fabs((double)og[o] - orf[o]) /
                           (q8 ? 1 + act_bound(type, dr, xt, cols) / (tol * S) : 1) / S;
                if (!(e <= worst)) worst = e;
                double ec = fabs((double)og[o] - oc[o]) / (tol * S + act_bound(type, dr, xt, cols));
                if (!(ec <= worst_c)) worst_c = ec;
            }
        CHECK(worst < tol, "matmul %s %dx%d n=%d: error %.3g S vs the reference (tolerance %.3g S)",
              qt->name, rows, cols, n, worst, tol);
        CHECK(worst_c <= 1, "matmul %s %dx%d n=%d: error %.3g x the bound vs the SIMD CPU",
              qt->name, rows, cols, n, worst_c);
        dfree(xd), dfree(od);
        free(x), free(oc), free(orf), free(og);
    }
    G->ops->weight_release(G, &Wg);
done:
    free(w), free(deq), free(q);
}

/* The backend fuses consecutive matmuls reading one x (q/k/v), rope of q
 * then k, and add then rmsnorm: the fused launches must give the results
 * of the single ops (matmul: bit-identical; the others vs. the CPU). */
static void test_fusions(void) {
    const int types[] = {QT_Q4_K, QT_Q6_K, QT_Q8_0, QT_F16};
    for (size_t ti = 0; ti < ARRAY_LEN(types); ti++)
        for (int n = 1; n <= 8; n += 4) {
            int type = types[ti], cols = 512, rows[3] = {64, 16, 16 + rng_int(40)};
            const quant_traits *qt = quant_get(type);
            size_t rs = quant_row_size(type, cols);
            bk_weight W[3];
            char *q[3];
            float *x = malloc((size_t)n * cols * 4), *od[3], *ref[3], *got = malloc(64 * 8 * 4 * 2);
            fill(x, (size_t)n * cols, 1.0f);
            float *xd = dput(x, (size_t)n * cols * 4);
            for (int j = 0; j < 3; j++) {
                float *w = malloc((size_t)rows[j] * cols * 4);
                fill(w, (size_t)rows[j] * cols, 0.5f);
                q[j] = malloc(rs * rows[j]);
                for (int r = 0; r < rows[j]; r++)
                    qt->quant(w + (size_t)r * cols, q[j] + r * rs, cols);
                free(w);
                W[j] = (bk_weight){type, rows[j], cols, NULL, q[j]};
                CHECK(G->ops->weight_init(G, &W[j]) == 0, "weight_init");
                od[j] = G->ops->alloc(G, (size_t)n * rows[j] * 4);
                ref[j] = malloc((size_t)n * rows[j] * 4);
                G->ops->matmul(G, od[j], &W[j], xd, n); /* alone */
                dget(ref[j], od[j], (size_t)n * rows[j] * 4);
            }
            for (int j = 0; j < 3; j++) G->ops->matmul(G, od[j], &W[j], xd, n); /* fused */
            CHECK(G->ops->sync(G) == 0, "sync");
            for (int j = 0; j < 3; j++) {
                dget(got, od[j], (size_t)n * rows[j] * 4);
                CHECK(!memcmp(got, ref[j], (size_t)n * rows[j] * 4),
                      "fused matmul %s n=%d weight %d differs from the single launch", qt->name, n,
                      j);
                G->ops->weight_release(G, &W[j]);
                dfree(od[j]);
                free(ref[j]), free(q[j]);
            }
            dfree(xd);
            free(x), free(got);
        }

    /* gate, up, glu: one launch; the same bits as the three ops alone */
    for (int n = 1; n <= 4; n += 3)
        for (int act = 0; act < 2; act++) {
            int type = act ? QT_Q6_K : QT_Q4_K, cols = 512, rows = 48;
            const quant_traits *qt = quant_get(type);
            size_t rs = quant_row_size(type, cols), m = (size_t)n * rows;
            float *w = malloc((size_t)rows * cols * 4), *x = malloc((size_t)n * cols * 4);
            char *qg = malloc(rs * rows), *qu = malloc(rs * rows);
            fill(x, (size_t)n * cols, 1.0f);
            fill(w, (size_t)rows * cols, 0.5f);
            for (int r = 0; r < rows; r++) qt->quant(w + (size_t)r * cols, qg + r * rs, cols);
            fill(w, (size_t)rows * cols, 0.5f);
            for (int r = 0; r < rows; r++) qt->quant(w + (size_t)r * cols, qu + r * rs, cols);
            bk_weight Wg = {type, rows, cols, NULL, qg}, Wu = {type, rows, cols, NULL, qu};
            G->ops->weight_init(G, &Wg);
            G->ops->weight_init(G, &Wu);
            float *xd = dput(x, (size_t)n * cols * 4), *hb = G->ops->alloc(G, m * 4),
                  *hb2 = G->ops->alloc(G, m * 4);
            float *r1 = malloc(m * 4), *r2 = malloc(m * 4), *g1 = malloc(m * 4),
                  *g2 = malloc(m * 4);
            G->ops->matmul(G, hb, &Wg, xd, n);
            G->ops->sync(G);
            G->ops->matmul(G, hb2, &Wu, xd, n);
            G->ops->sync(G);
            G->ops->glu(G, hb, hb, hb2, (int64_t)m, act);
            dget(r1, hb, m * 4);
            dget(r2, hb2, m * 4);
            G->ops->matmul(G, hb, &Wg, xd, n); /* fused */
            G->ops->matmul(G, hb2, &Wu, xd, n);
            G->ops->glu(G, hb, hb, hb2, (int64_t)m, act);
            dget(g1, hb, m * 4);
            dget(g2, hb2, m * 4);
            CHECK(!memcmp(g1, r1, m * 4) && !memcmp(g2, r2, m * 4),
                  "fused gate/up/glu %s n=%d act=%d differs from the three ops (%g, %g)", qt->name,
                  n, act, check_max_diff(g1, r1, m), check_max_diff(g2, r2, m));
            G->ops->weight_release(G, &Wg);
            G->ops->weight_release(G, &Wu);
            dfree(xd), dfree(hb), dfree(hb2);
            free(w), free(x), free(qg), free(qu), free(r1), free(r2), free(g1), free(g2);
        }

    /* rope q then k */
    {
        int n = 3, hq = 8, hk = 2, hd = 64;
        int32_t pos[3] = {5, 900 + rng_int(100), 40000 + rng_int(1000)};
        size_t mq = (size_t)n * hq * hd, mk = (size_t)n * hk * hd;
        float *xq = malloc(mq * 4), *xk = malloc(mk * 4), *g = malloc(mq * 4);
        fill(xq, mq, 1.0f), fill(xk, mk, 1.0f);
        float *qd = dput(xq, mq * 4), *kd = dput(xk, mk * 4);
        int32_t *pd = dput(pos, sizeof pos);
        for (int neox = 0; neox < 2; neox++) {
            C->ops->rope(C, xq, pos, n, hq, hd, hd, 500000.0f, 1.0f, neox);
            C->ops->rope(C, xk, pos, n, hk, hd, hd, 500000.0f, 1.0f, neox);
            G->ops->rope(G, qd, pd, n, hq, hd, hd, 500000.0f, 1.0f, neox);
            G->ops->rope(G, kd, pd, n, hk, hd, hd, 500000.0f, 1.0f, neox);
            dget(g, qd, mq * 4);
            CHECK(check_max_diff(g, xq, mq) / check_max_abs(xq, mq) < 1e-5, "fused rope q neox=%d",
                  neox);
            dget(g, kd, mk * 4);
            CHECK(check_max_diff(g, xk, mk) / check_max_abs(xk, mk) < 1e-5, "fused rope k neox=%d",
                  neox);
        }
        dfree(qd), dfree(kd), dfree(pd);
        free(xq), free(xk), free(g);
    }

    /* rope q, rope k, then kv_write of k and v: one launch (cuda_rope_kv);
     * half the dimensions rotated, so the copied pairs are checked too */
    for (int f16 = 0; f16 < 2; f16++)
        for (int neox = 0; neox < 2; neox++) {
            int n = 3, hq = 8, hk = 2, hd = 64, nrot = 32, kvd = hk * hd, n_slots = 16;
            int32_t pos[3] = {3, 700 + rng_int(100), 30000 + rng_int(1000)}, slots[3] = {7, 2, 11};
            size_t mq = (size_t)n * hq * hd, mk = (size_t)n * kvd, es = f16 ? 2 : 4;
            size_t cb = (size_t)n_slots * kvd * es;
            float *xq = malloc(mq * 4), *xk = malloc(mk * 4), *xv = malloc(mk * 4);
            float *g = malloc(mq * 4), *a = malloc((size_t)n_slots * kvd * 4),
                  *b = malloc((size_t)n_slots * kvd * 4);
            char *kc = calloc(1, cb), *vc = calloc(1, cb), *hc = malloc(cb);
            fill(xq, mq, 1.0f), fill(xk, mk, 1.0f), fill(xv, mk, 1.0f);
            float *qd = dput(xq, mq * 4), *kd = dput(xk, mk * 4), *vd = dput(xv, mk * 4);
            int32_t *pd = dput(pos, sizeof pos), *sd = dput(slots, sizeof slots);
            void *kcd = dput(kc, cb), *vcd = dput(vc, cb);
            int qt = f16 ? QT_F16 : QT_F32;
            bk_kv_layer kvh = {kc, vc, kvd, qt}, kvg = {kcd, vcd, kvd, qt};
            C->ops->rope(C, xq, pos, n, hq, hd, nrot, 10000.0f, 1.0f, neox);
            C->ops->rope(C, xk, pos, n, hk, hd, nrot, 10000.0f, 1.0f, neox);
            C->ops->kv_write(C, &kvh, xk, xv, slots, n);
            C->ops->sync(C);
            G->ops->rope(G, qd, pd, n, hq, hd, nrot, 10000.0f, 1.0f, neox);
            G->ops->rope(G, kd, pd, n, hk, hd, nrot, 10000.0f, 1.0f, neox);
            G->ops->kv_write(G, &kvg, kd, vd, sd, n);
            dget(g, qd, mq * 4);
            CHECK(check_max_diff(g, xq, mq) / check_max_abs(xq, mq) < 1e-5,
                  "rope+kv fused: q (neox=%d f16=%d)", neox, f16);
            dget(g, kd, mk * 4);
            CHECK(check_max_diff(g, xk, mk) / check_max_abs(xk, mk) < 1e-5,
                  "rope+kv fused: k (neox=%d f16=%d)", neox, f16);
            for (int t = 0; t < 2; t++) { /* the K, then the V cache */
                dget(hc, t ? vcd : kcd, cb);
                quant_get(qt)->dequant(hc, a, (int64_t)n_slots * kvd);
                quant_get(qt)->dequant(t ? vc : kc, b, (int64_t)n_slots * kvd);
                /* f16: the two sides may round a value 1e-7 apart to neighbouring halves */
                double tol = f16 ? 1e-3 : 1e-5;
                CHECK(check_max_diff(a, b, (size_t)n_slots * kvd) /
                              check_max_abs(b, (size_t)n_slots * kvd) <
                          tol,
                      "rope+kv fused: %s cache (neox=%d f16=%d)", t ? "V" : "K", neox, f16);
            }
            dfree(qd), dfree(kd), dfree(vd), dfree(pd), dfree(sd), dfree(kcd), dfree(vcd);
            free(xq), free(xk), free(xv), free(g), free(a), free(b), free(kc), free(vc), free(hc);
        }

    /* add then rmsnorm of the sum, the output over the added branch */
    /* registers for rows of up to 8192 floats, the strided kernel beyond and
     * for widths not a multiple of 4 */
    const int add_dims[] = {320, 1280, 1022, 9000};
    for (size_t di = 0; di < ARRAY_LEN(add_dims); di++) {
        const int dim = add_dims[di];
        int rows = 3;
        size_t m = (size_t)rows * dim;
        float *x = malloc(m * 4), *y = malloc(m * 4), *w = malloc(dim * 4), *g = malloc(m * 4);
        fill(x, m, 2.0f), fill(y, m, 1.0f), fill(w, dim, 1.0f);
        float *xd = dput(x, m * 4), *yd = dput(y, m * 4), *wd = dput(w, dim * 4);
        C->ops->add(C, x, y, (int64_t)m);
        C->ops->rmsnorm(C, y, x, w, rows, dim, 1e-5f);
        G->ops->add(G, xd, yd, (int64_t)m);
        G->ops->rmsnorm(G, yd, xd, wd, rows, dim, 1e-5f);
        dget(g, xd, m * 4);
        CHECK(check_max_diff(g, x, m) == 0, "fused add: sum differs (dim %d)", dim);
        dget(g, yd, m * 4);
        CHECK(check_max_diff(g, y, m) / check_max_abs(y, m) < 1e-5, "fused add+rmsnorm dim %d: %g",
              dim, check_max_diff(g, y, m) / check_max_abs(y, m));
        dfree(xd), dfree(yd), dfree(wd);
        free(x), free(y), free(w), free(g);
    }
    printf("fusions: done\n");
}

/* cuda_mvq.cu's two kernels for one token of Q4_K / Q6_K (weights loaded
 * into registers, or staged through shared memory) give the same bits, for
 * fused q/k/v-style jobs (three weights, one x) and a single weight */
static void check_mvq_kernels(int type, int cols) {
    const quant_traits *qt = quant_get(type);
    size_t rs = quant_row_size(type, cols);
    const int rows[3] = {301, 64 + rng_int(40), 3};
    bk_weight W[3];
    char *q[3];
    for (int j = 0; j < 3; j++) {
        float *w = malloc((size_t)rows[j] * cols * 4);
        fill(w, (size_t)rows[j] * cols, 0.5f);
        q[j] = malloc(rs * rows[j]);
        for (int r = 0; r < rows[j]; r++) qt->quant(w + (size_t)r * cols, q[j] + r * rs, cols);
        free(w);
        W[j] = (bk_weight){type, rows[j], cols, NULL, q[j]};
        CHECK(G->ops->weight_init(G, &W[j]) == 0, "weight_init: %s", err_get());
    }
    float *x = malloc((size_t)cols * 4), *out[2][4];
    fill(x, cols, 1.0f);
    float *xd = dput(x, (size_t)cols * 4);
    for (int m = 0; m < 2; m++) {
        bk_cuda_set_mvq_staged(m);
        bk_cuda_stats st0, st1;
        bk_cuda_get_stats(G, &st0);
        void *od[4];
        for (int j = 0; j < 4; j++) od[j] = G->ops->alloc(G, (size_t)rows[j % 3] * 4);
        for (int j = 0; j < 3; j++) G->ops->matmul(G, od[j], &W[j], xd, 1); /* fused: 3 jobs */
        G->ops->matmul(G, od[3], &W[0], xd, 1); /* a fourth: its own launch */
        CHECK(G->ops->sync(G) == 0, "sync: %s", err_get());
        bk_cuda_get_stats(G, &st1);
        /* two launches (the fused three, the fourth), staged only in mode 1 */
        CHECK(st1.mvq_staged - st0.mvq_staged == (m ? 2 : 0),
              "mvq %s %d columns, mode %d: %ld staged launches", qt->name, cols, m,
              st1.mvq_staged - st0.mvq_staged);
        for (int j = 0; j < 4; j++) {
            out[m][j] = malloc((size_t)rows[j % 3] * 4);
            dget(out[m][j], od[j], (size_t)rows[j % 3] * 4);
            dfree(od[j]);
        }
        dfree(xd);
        xd = dput(x, (size_t)cols * 4);
    }
    bk_cuda_set_mvq_staged(1);
    for (int j = 0; j < 4; j++) {
        CHECK(!memcmp(out[0][j], out[1][j], (size_t)rows[j % 3] * 4),
              "mvq %s %dx%d job %d: the staged and register kernels differ", qt->name, rows[j % 3],
              cols, j);
        free(out[0][j]), free(out[1][j]);
    }
    for (int j = 0; j < 3; j++) {
        G->ops->weight_release(G, &W[j]);
        free(q[j]);
    }
    dfree(xd);
    free(x);
}

static void test_matmul(void) {
    const int ns[] = {1, 2, 3, 4, 5, 8, 13, 32, 33, 40};
    for (size_t ti = 0; ti < ARRAY_LEN(TYPES); ti++) {
        check_matmul(TYPES[ti], 67, 256, ns, (int)ARRAY_LEN(ns));
        check_matmul(TYPES[ti], 35, 4096, ns, 3);
    }
    /* the float fallback (columns not a multiple of 32) */
    const int ns2[] = {1, 3, 40};
    check_matmul(QT_F32, 19, 200, ns2, 3);
    check_matmul(QT_F16, 19, 200, ns2, 3);
    check_matmul(QT_BF16, 19, 200, ns2, 3);
    /* a weight larger than the cuBLAS path's dequantization slice */
    const int ns3[] = {33};
    check_matmul(QT_Q8_0, 16500, 2048, ns3, 1);
    /* the register one-token kernel (the staged one is the default) */
    const int ns4[] = {1};
    bk_cuda_set_mvq_staged(0);
    check_matmul(QT_Q4_K, 301, 2048, ns4, 1);
    check_matmul(QT_Q6_K, 35, 4096, ns4, 1);
    bk_cuda_set_mvq_staged(1);
    check_mvq_kernels(QT_Q4_K, 2048);
    check_mvq_kernels(QT_Q4_K, 2304); /* a last step of one block */
    check_mvq_kernels(QT_Q6_K, 4096);
    printf("matmul: %zu types checked\n", ARRAY_LEN(TYPES));
}

/* ---- embed ---- */
static void test_embed(void) {
    int exact = 0, total = 0;
    for (size_t ti = 0; ti < ARRAY_LEN(TYPES); ti++)
        for (int dim = 256; dim >= 200; dim -= 56) {
            int type = TYPES[ti];
            if (dim % 256 && type != QT_F32 && type != QT_F16 && type != QT_BF16) continue;
            const quant_traits *qt = quant_get(type);
            int vocab = 50, n = 7;
            size_t rs = quant_row_size(type, dim);
            float *w = malloc((size_t)vocab * dim * 4), *oc = malloc((size_t)n * dim * 4),
                  *og = malloc((size_t)n * dim * 4);
            char *q = malloc(rs * vocab);
            fill(w, (size_t)vocab * dim, 1.0f);
            for (int r = 0; r < vocab; r++) qt->quant(w + (size_t)r * dim, q + r * rs, dim);
            bk_weight Wc = {type, vocab, dim, NULL, q}, Wg = Wc;
            C->ops->weight_init(C, &Wc);
            CHECK(G->ops->weight_init(G, &Wg) == 0, "weight_init: %s", err_get());
            int32_t ids[7];
            for (int i = 0; i < n; i++) ids[i] = rng_int(vocab);
            ids[0] = vocab - 1;
            float scale = 0.5f + (float)rng_uniform() * 3;
            C->ops->embed(C, oc, &Wc, ids, n, scale);
            int32_t *idd = dput(ids, sizeof ids);
            float *od = G->ops->alloc(G, (size_t)n * dim * 4);
            G->ops->embed(G, od, &Wg, idd, n, scale);
            dget(og, od, (size_t)n * dim * 4);
            double e = check_max_diff(og, oc, (size_t)n * dim) / check_max_abs(oc, (size_t)n * dim);
            CHECK(e < 1e-6, "embed %s dim %d: rel err %g", qt->name, dim, e);
            exact += e == 0;
            total++;
            dfree(idd), dfree(od);
            G->ops->weight_release(G, &Wg);
            free(w), free(oc), free(og), free(q);
        }
    printf("embed: %d of %d cases bit-identical to the CPU\n", exact, total);
}

/* ---- small ops ---- */
static void test_small_ops(void) {
    /* rmsnorm: the row in registers (width a multiple of 4, up to 8192), the
     * warp-per-row (1022) and block-per-row (9000) kernels; in place too */
    const int dims[] = {64, 96, 2048, 3000, 1022, 9000};
    for (size_t k = 0; k < ARRAY_LEN(dims); k++) {
        int rows = 5, dim = dims[k];
        float *x = malloc((size_t)rows * dim * 4), *w = malloc(dim * 4),
              *oc = malloc((size_t)rows * dim * 4), *og = malloc((size_t)rows * dim * 4);
        fill(x, (size_t)rows * dim, 3.0f);
        fill(w, dim, 1.0f);
        C->ops->rmsnorm(C, oc, x, w, rows, dim, 1e-6f);
        float *xd = dput(x, (size_t)rows * dim * 4), *wd = dput(w, dim * 4),
              *od = G->ops->alloc(G, (size_t)rows * dim * 4);
        G->ops->rmsnorm(G, od, xd, wd, rows, dim, 1e-6f);
        dget(og, od, (size_t)rows * dim * 4);
        double e =
            check_max_diff(og, oc, (size_t)rows * dim) / check_max_abs(oc, (size_t)rows * dim);
        CHECK(e < 1e-5, "rmsnorm dim %d: %g", dim, e);
        G->ops->rmsnorm(G, xd, xd, wd, rows, dim, 1e-6f);
        dget(og, xd, (size_t)rows * dim * 4);
        e = check_max_diff(og, oc, (size_t)rows * dim) / check_max_abs(oc, (size_t)rows * dim);
        CHECK(e < 1e-5, "rmsnorm in place dim %d: %g", dim, e);
        dfree(xd), dfree(wd), dfree(od);
        free(x), free(w), free(oc), free(og);
    }

    /* rope: both layouts, partial rotation, long positions */
    for (int neox = 0; neox < 2; neox++)
        for (int hd = 64; hd <= 128; hd += 64)
            for (int n_rot = hd; n_rot >= 32; n_rot -= hd - 32) {
                int n = 5, heads = 3;
                int32_t pos[5] = {0, 1, 77, 4095, 100000 + rng_int(30000)};
                size_t m = (size_t)n * heads * hd;
                float *x = malloc(m * 4), *og = malloc(m * 4);
                fill(x, m, 1.0f);
                float *xd = dput(x, m * 4);
                int32_t *pd = dput(pos, sizeof pos);
                float base = 10000.0f + (float)rng_int(500000),
                      fs = rng_uniform() < 0.5 ? 1.0f : 0.25f;
                C->ops->rope(C, x, pos, n, heads, hd, n_rot, base, fs, neox);
                G->ops->rope(G, xd, pd, n, heads, hd, n_rot, base, fs, neox);
                dget(og, xd, m * 4);
                double e = check_max_diff(og, x, m) / check_max_abs(x, m);
                CHECK(e < 1e-5, "rope neox=%d hd=%d n_rot=%d: %g", neox, hd, n_rot, e);
                dfree(xd), dfree(pd);
                free(x), free(og);
            }

    /* add, glu (both activations), aligned and odd lengths */
    for (int64_t n = 40000; n <= 40001; n++) {
        float *a = malloc(n * 4), *b = malloc(n * 4), *oc = malloc(n * 4), *og = malloc(n * 4);
        fill(a, n, 3.0f);
        fill(b, n, 1.0f);
        float *ad = dput(a, n * 4), *bd = dput(b, n * 4), *od = G->ops->alloc(G, n * 4);
        for (int act = 0; act < 2; act++) {
            C->ops->glu(C, oc, a, b, n, act);
            G->ops->glu(G, od, ad, bd, n, act);
            dget(og, od, n * 4);
            double e = check_max_diff(og, oc, n) / check_max_abs(oc, n);
            CHECK(e < 1e-5, "glu act %d n %lld: %g", act, (long long)n, e);
        }
        G->ops->glu(G, ad, ad, bd, n, BK_ACT_SILU); /* out = gate, as the forward pass does */
        C->ops->glu(C, oc, a, b, n, BK_ACT_SILU);
        dget(og, ad, n * 4);
        CHECK(check_max_diff(og, oc, n) / check_max_abs(oc, n) < 1e-5, "glu in place");
        G->ops->upload(G, ad, a, n * 4);
        C->ops->add(C, a, b, n);
        G->ops->add(G, ad, bd, n);
        dget(og, ad, n * 4);
        CHECK(check_max_diff(og, a, n) == 0, "add n %lld", (long long)n);
        dfree(ad), dfree(bd), dfree(od);
        free(a), free(b), free(oc), free(og);
    }

    /* gather (repeated and permuted rows) */
    int dim = 96, n = 6;
    int32_t rows[6] = {5, 0, 5, 3, 1, 2};
    float *x = malloc(6 * dim * 4), *oc = malloc(n * dim * 4), *og = malloc(n * dim * 4);
    fill(x, 6 * dim, 1.0f);
    C->ops->gather(C, oc, x, rows, n, dim);
    float *xd = dput(x, 6 * dim * 4), *od = G->ops->alloc(G, n * dim * 4);
    int32_t *rd = dput(rows, sizeof rows);
    G->ops->gather(G, od, xd, rd, n, dim);
    dget(og, od, n * dim * 4);
    CHECK(check_max_diff(og, oc, n * dim) == 0, "gather");
    /* in place, compacting as the forward pass may: rows ascending */
    int32_t up[3] = {1, 3, 4};
    C->ops->gather(C, x, x, up, 3, dim);
    G->ops->upload(G, rd, up, sizeof up);
    G->ops->gather(G, xd, xd, rd, 3, dim);
    dget(og, xd, 3 * dim * 4);
    CHECK(check_max_diff(og, x, 3 * dim) == 0, "gather in place");
    dfree(xd), dfree(od), dfree(rd);
    free(x), free(oc), free(og);
    printf("small ops: done\n");
}

/* ---- topk (backend.h: BK_TOPK) ----
 * The GPU's radix select against a plain reference: every entry of the row
 * sorted by (clean logit descending, id ascending), the first BK_TOPK taken
 * (-1 / -inf past n_vocab); lse in double. Rows with many equal logits (the
 * tie rule decides which of them are in), -inf, NaN, +inf, -0, denormals,
 * fewer finite entries than BK_TOPK, all -inf, all equal. ids and logits
 * must be identical; lse within 1e-5 of max(1, |lse|) (float exponentials,
 * summed in another order). The CPU backend's op must agree exactly too. */
static float tk_clean(float x) {
    return x != x ? -INFINITY : x == INFINITY ? FLT_MAX : x;
}

static const float *tk_row;
static int tk_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float lx = tk_clean(tk_row[x]), ly = tk_clean(tk_row[y]);
    if (lx != ly) return lx > ly ? -1 : 1;
    return (x > y) - (x < y);
}

static void topk_ref(const float *row, int nv, int32_t *order, int32_t *ids, float *vals,
                     double *lse) {
    for (int i = 0; i < nv; i++) order[i] = i;
    tk_row = row;
    qsort(order, (size_t)nv, sizeof *order, tk_cmp);
    for (int j = 0; j < BK_TOPK; j++) {
        ids[j] = j < nv ? order[j] : -1;
        vals[j] = j < nv ? tk_clean(row[order[j]]) : -INFINITY;
    }
    double mx = nv > 0 ? tk_clean(row[order[0]]) : -INFINITY, z = 0;
    for (int i = 0; i < nv && mx != -INFINITY; i++) z += exp((double)tk_clean(row[i]) - mx);
    *lse = mx == -INFINITY ? -INFINITY : mx + log(z);
}

static void topk_fill_row(float *x, int nv, int shape) {
    for (int i = 0; i < nv; i++) {
        double g = rng_normal();
        /* smooth, heavy ties, all equal, few finite, none finite, denormals
         * and zeros of both signs */
        x[i] = shape == 0   ? (float)(3 * g)
               : shape == 1 ? (float)floor(2 * g) * 0.5f
               : shape == 2 ? 1.25f
               : shape == 3 ? (rng_int(nv) < 30 ? (float)g : -INFINITY)
               : shape == 4 ? -INFINITY
                            : (float)(g * 1e-38);
        int r = rng_int(500);
        if (r == 0) x[i] = NAN;
        if (r == 1) x[i] = -INFINITY;
        if (r == 2) x[i] = -0.0f;
        if (r == 3 && rng_int(20) == 0) x[i] = INFINITY;
    }
}

static void check_topk(int nv, int rows) {
    size_t n = (size_t)rows * nv;
    float *x = malloc(n * 4 + 4);
    int shapes[64];
    for (int r = 0; r < rows; r++) {
        shapes[r] = r == 0 ? 0 : rng_int(6);
        topk_fill_row(x + (size_t)r * nv, nv, shapes[r]);
    }
    size_t kb = (size_t)rows * BK_TOPK * 4;
    float *xd = dput(x, n * 4 + 4);
    int32_t *idd = G->ops->alloc(G, kb), *idd2 = G->ops->alloc(G, kb);
    float *vd = G->ops->alloc(G, kb), *vd2 = G->ops->alloc(G, kb), *ld = G->ops->alloc(G, rows * 4);
    G->ops->topk(G, idd, vd, ld, xd, rows, nv);
    G->ops->topk(G, idd2, vd2, NULL, xd, rows, nv); /* without lse: the same list */
    int32_t *amd = G->ops->alloc(G, (size_t)rows * 4), *am = malloc((size_t)rows * 4);
    G->ops->argmax(G, amd, xd, rows, nv);
    G->ops->argmax(G, amd, xd, rows, nv); /* again: the scratch is left as it was found */
    dget(am, amd, (size_t)rows * 4);
    int32_t *ig = malloc(kb), *ig2 = malloc(kb), *ic = malloc(kb), *order = malloc(nv * 4 + 4);
    float *vg = malloc(kb), *vg2 = malloc(kb), *vc = malloc(kb), *lg = malloc(rows * 4),
          *lc = malloc(rows * 4);
    dget(ig, idd, kb), dget(vg, vd, kb), dget(lg, ld, rows * 4);
    dget(ig2, idd2, kb), dget(vg2, vd2, kb);
    C->ops->topk(C, ic, vc, lc, x, rows, nv);
    C->ops->sync(C);
    int bad = 0;
    for (int r = 0; r < rows && bad < 5; r++) {
        int32_t ids[BK_TOPK];
        float vals[BK_TOPK];
        double lse;
        topk_ref(x + (size_t)r * nv, nv, order, ids, vals, &lse);
        size_t o = (size_t)r * BK_TOPK;
        int same = 1, same2 = 1, same_cpu = 1;
        for (int j = 0; j < BK_TOPK; j++) {
            same &= ig[o + j] == ids[j] && vg[o + j] == vals[j];
            same2 &= ig2[o + j] == ids[j] && vg2[o + j] == vals[j];
            same_cpu &= ic[o + j] == ids[j] && vc[o + j] == vals[j];
        }
        double tol = 1e-5 * fmax(1, fabs(lse));
        int lse_ok = lse == -INFINITY ? lg[r] == -INFINITY : fabs(lg[r] - lse) <= tol;
        int lse_cpu = lse == -INFINITY ? lc[r] == -INFINITY : fabs(lc[r] - lse) <= tol;
        CHECK(same && same2,
              "topk %d logits row %d (shape %d): GPU list differs (with lse %d, "
              "without %d; first: %d %g vs %d %g)",
              nv, r, shapes[r], same, same2, ig[o], (double)vg[o], ids[0], (double)vals[0]);
        CHECK(same_cpu, "topk %d logits row %d (shape %d): CPU list differs", nv, r, shapes[r]);
        CHECK(am[r] == ids[0] && am[r] == bk_argmax_row(x + (size_t)r * nv, nv),
              "argmax %d logits row %d (shape %d): GPU %d, want %d", nv, r, shapes[r], am[r],
              ids[0]);
        bad += am[r] != ids[0];
        CHECK(lse_ok && lse_cpu,
              "topk %d logits row %d (shape %d): lse GPU %.9g CPU %.9g want %.9g", nv, r, shapes[r],
              (double)lg[r], (double)lc[r], lse);
        bad += !(same && same2 && same_cpu && lse_ok && lse_cpu);
    }
    dfree(xd), dfree(idd), dfree(idd2), dfree(vd), dfree(vd2), dfree(ld), dfree(amd), free(am);
    free(x), free(ig), free(ig2), free(ic), free(order), free(vg), free(vg2), free(vc), free(lg),
        free(lc);
}

static void test_topk(void) {
    const int sizes[] = {262144, 49152 + 7, 128256, 1, 63, 64, 65, 1000, 32000};
    for (size_t k = 0; k < ARRAY_LEN(sizes); k++) check_topk(sizes[k], 1 + rng_int(40));
    check_topk(262144, 40);
    check_topk(128256, 32);
    /* for information (not checked): a decode step's 32 rows of 128256
     * logits, the topk op (with the small download) vs. downloading them */
    int rows = 32, nv = 128256, reps = 20;
    size_t n = (size_t)rows * nv;
    float *x = malloc(n * 4);
    topk_fill_row(x, (int)n, 0);
    float *xd = dput(x, n * 4), *vd = G->ops->alloc(G, (size_t)rows * BK_TOPK * 4),
          *ld = G->ops->alloc(G, rows * 4);
    int32_t *idd = G->ops->alloc(G, (size_t)rows * BK_TOPK * 4), *ih = malloc(rows * BK_TOPK * 4);
    double t0 = time_now();
    for (int r = 0; r < reps; r++) {
        G->ops->topk(G, idd, vd, ld, xd, rows, nv);
        dget(ih, idd, (size_t)rows * BK_TOPK * 4);
    }
    double t1 = time_now();
    for (int r = 0; r < reps; r++) dget(x, xd, n * 4);
    double t2 = time_now();
    printf("topk: %d rows x %d: %.1f us per call (topk + download), full rows download %.1f us\n",
           rows, nv, (t1 - t0) / reps * 1e6, (t2 - t1) / reps * 1e6);
    dfree(xd), dfree(vd), dfree(ld), dfree(idd);
    free(x), free(ih);
    printf("topk: done\n");
}

/* ---- kv_write + attention ---- */
typedef struct {
    int n_head, n_head_kv, hd, window, kv_type;
} attn_cfg;

static void check_attention(const attn_cfg *cf) {
    const int bs = 16, n_seq = 3;
    const int lens[3] = {1 + rng_int(8), 200 + rng_int(200),
                         1500 + rng_int(1500)}; /* before the batch */
    const int add[3] = {3, 1, 2};               /* batch tokens */
    int max_blocks = (lens[2] + 8) / bs + 2, n_blocks = n_seq * max_blocks + 5;
    if (max_blocks < 1 || max_blocks > 1000) return;
    int kv_dim = cf->n_head_kv * cf->hd;
    size_t esize = cf->kv_type == QT_F16 ? 2 : 4, cache = (size_t)n_blocks * bs * kv_dim * esize;
    bk_kv_layer Lc = {C->ops->alloc(C, cache), C->ops->alloc(C, cache), kv_dim, cf->kv_type};
    bk_kv_layer Lg = {G->ops->alloc(G, cache), G->ops->alloc(G, cache), kv_dim, cf->kv_type};
    int *perm = malloc(n_blocks * sizeof(int));
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = rng_int(i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *bt = malloc((size_t)n_seq * max_blocks * 4);
    for (int i = 0; i < n_seq * max_blocks; i++) bt[i] = perm[i];
    /* history, written in one kv_write per sequence */
    for (int s = 0; s < n_seq; s++) {
        int n = lens[s];
        float *K = malloc((size_t)n * kv_dim * 4), *V = malloc((size_t)n * kv_dim * 4);
        int32_t *slot = malloc(n * 4);
        fill(K, (size_t)n * kv_dim, 1.0f);
        fill(V, (size_t)n * kv_dim, 1.0f);
        for (int p = 0; p < n; p++) slot[p] = bt[s * max_blocks + p / bs] * bs + p % bs;
        C->ops->kv_write(C, &Lc, K, V, slot, n);
        float *Kd = dput(K, (size_t)n * kv_dim * 4), *Vd = dput(V, (size_t)n * kv_dim * 4);
        int32_t *sd = dput(slot, n * 4);
        G->ops->kv_write(G, &Lg, Kd, Vd, sd, n);
        G->ops->sync(G);
        dfree(Kd), dfree(Vd), dfree(sd);
        free(K), free(V), free(slot);
    }
    /* the batch: its own K/V first, then attention (as the forward pass) */
    int n = add[0] + add[1] + add[2];
    int32_t *pos = malloc(n * 4), *row = malloc(n * 4), *slot = malloc(n * 4);
    int t = 0;
    for (int s = 0; s < n_seq; s++)
        for (int k = 0; k < add[s]; k++, t++) {
            pos[t] = lens[s] + k;
            row[t] = s;
            slot[t] = bt[s * max_blocks + pos[t] / bs] * bs + pos[t] % bs;
        }
    size_t qn = (size_t)n * cf->n_head * cf->hd;
    float *K = malloc((size_t)n * kv_dim * 4), *V = malloc((size_t)n * kv_dim * 4);
    float *Q = malloc(qn * 4), *oc = malloc(qn * 4), *og = malloc(qn * 4);
    fill(K, (size_t)n * kv_dim, 1.0f);
    fill(V, (size_t)n * kv_dim, 1.0f);
    fill(Q, qn, 1.0f);
    C->ops->kv_write(C, &Lc, K, V, slot, n);
    bk_attn_batch abc = {n, pos, row, bt, max_blocks, bs, 0};
    float scale = 1.0f / sqrtf((float)cf->hd);
    C->ops->attention(C, oc, Q, &Lc, &abc, cf->n_head, cf->n_head_kv, cf->hd, cf->window, scale);
    C->ops->sync(C);
    float *Kd = dput(K, (size_t)n * kv_dim * 4), *Vd = dput(V, (size_t)n * kv_dim * 4),
          *Qd = dput(Q, qn * 4), *od = G->ops->alloc(G, qn * 4);
    int32_t *pd = dput(pos, n * 4), *rd = dput(row, n * 4), *sd = dput(slot, n * 4),
            *btd = dput(bt, (size_t)n_seq * max_blocks * 4);
    G->ops->kv_write(G, &Lg, Kd, Vd, sd, n);
    bk_attn_batch abg = {n, pd, rd, btd, max_blocks, bs, 0};
    for (int i = 0; i < n; i++) abg.max_span = MAX(abg.max_span, pos[i] + 1);
    G->ops->attention(G, od, Qd, &Lg, &abg, cf->n_head, cf->n_head_kv, cf->hd, cf->window, scale);
    CHECK(G->ops->sync(G) == 0, "attention sync: %s", err_get());
    dget(og, od, qn * 4);
    double e = check_max_diff(og, oc, qn);
    CHECK(e < 2e-5 * 5, "attention heads %d/%d hd %d window %d kv %s (lens %d %d %d): max diff %g",
          cf->n_head, cf->n_head_kv, cf->hd, cf->window, cf->kv_type == QT_F16 ? "f16" : "f32",
          lens[0], lens[1], lens[2], e);
    /* each token alone, as a single-sequence decode step: the first two
     * sequences' spans are short (one query head a CTA), the third's long */
    const size_t row_q = (size_t)cf->n_head * cf->hd;
    for (int i = 0; i < n; i++) {
        bk_attn_batch a1 = {1, pd + i, rd + i, btd, max_blocks, bs, pos[i] + 1};
        G->ops->attention(G, od, Qd + i * row_q, &Lg, &a1, cf->n_head, cf->n_head_kv, cf->hd,
                          cf->window, scale);
        CHECK(G->ops->sync(G) == 0, "attention sync: %s", err_get());
        dget(og, od, row_q * 4);
        double e1 = check_max_diff(og, oc + i * row_q, row_q);
        CHECK(e1 < 2e-5 * 5, "attention heads %d/%d hd %d window %d, token %d alone (pos %d): %g",
              cf->n_head, cf->n_head_kv, cf->hd, cf->window, i, pos[i], e1);
    }
    dfree(Kd), dfree(Vd), dfree(Qd), dfree(od), dfree(pd), dfree(rd), dfree(sd), dfree(btd);
    dfree(Lg.k), dfree(Lg.v);
    C->ops->free(C, Lc.k), C->ops->free(C, Lc.v);
    free(perm), free(bt), free(pos), free(row), free(slot), free(K), free(V), free(Q), free(oc),
        free(og);
}

static void test_attention(void) {
    const attn_cfg cfgs[] = {
        {4, 2, 64, 0, QT_F16},    {4, 2, 64, 0, QT_F32},   {32, 8, 64, 0, QT_F16},
        {8, 8, 128, 0, QT_F16},   {4, 1, 256, 0, QT_F16},  {4, 1, 256, 512, QT_F16},
        {9, 3, 64, 0, QT_F16},    {16, 2, 128, 0, QT_F16}, {8, 1, 64, 0, QT_F32},
        {4, 4, 32, 0, QT_F32},    {4, 2, 64, 33, QT_F16},  {14, 2, 128, 0, QT_F16},
        {32, 2, 64, 100, QT_F16},
    };
    for (size_t k = 0; k < ARRAY_LEN(cfgs); k++) check_attention(&cfgs[k]);
    printf("attention: %zu configurations checked\n", ARRAY_LEN(cfgs));
}

/* ---- whole models ---- */

/* Greedy decoding with the CPU's choices fed to both models; compares the
 * logits of every step. n_seq sequences run together (their prompts differ). */
static void compare_models(const char *path, const char *label, int kv_f32) {
    beast_model_params mp = beast_model_default_params();
    mp.n_gpu_layers = 0;
    mp.n_threads = 1;
    setenv("BEAST_CPU_SCALAR", "1", 1); /* the reference: float dot products */
    beast_model *mc = beast_model_load(path, &mp);
    unsetenv("BEAST_CPU_SCALAR");
    beast_model *md = beast_model_load(path, &mp); /* SIMD CPU, for information */
    mp.n_gpu_layers = -1;
    beast_model *mq = beast_model_load(path, &mp); /* GPU, 8-bit x in Q4_K mat-vecs */
    setenv("BEAST_CUDA_Q8", "0", 1);               /* the others: float activations */
    beast_model *mg = beast_model_load(path, &mp);
    setenv("BEAST_CUDA_GRAPHS", "0", 1);
    beast_model *me = beast_model_load(path, &mp); /* GPU without graphs */
    unsetenv("BEAST_CUDA_GRAPHS");
    unsetenv("BEAST_CUDA_Q8");
    CHECK(mc && md && mg && me && mq, "%s: load: %s", label, beast_error());
    if (!mc || !md || !mg || !me || !mq) goto out;
    {
        int n_vocab = beast_n_vocab(mc), n_seq = 3, prompt = 40, steps = 24;
        beast_ctx_params cp = beast_ctx_default_params();
        cp.n_ctx = 256;
        cp.n_seq = n_seq;
        cp.n_batch = 64;
        cp.kv_type = kv_f32 ? BEAST_KV_F32 : BEAST_KV_F16;
        beast_ctx *cc = beast_ctx_new(mc, &cp), *cg = beast_ctx_new(mg, &cp),
                  *ce = beast_ctx_new(me, &cp), *cd = beast_ctx_new(md, &cp),
                  *cq = beast_ctx_new(mq, &cp);
        CHECK(cc && cg && ce && cd && cq, "%s: ctx: %s", label, beast_error());
        beast_batch *b = beast_batch_new(n_seq * prompt);
        int32_t *next = malloc(n_seq * sizeof *next);
        double worst = 0, worst_simd = 0, worst_q8 = 0;
        int bad_top = 0, not_identical = 0;
        for (int step = 0; cc && cg && ce && cd && cq && step <= steps; step++) {
            beast_batch_clear(b);
            for (int s = 0; s < n_seq; s++) {
                if (step == 0) /* prompts of different lengths */
                    for (int i = 0; i < prompt - 7 * s; i++)
                        beast_batch_add(b, rng_int(n_vocab), s, i == prompt - 7 * s - 1);
                else
                    beast_batch_add(b, next[s], s, true);
            }
            int rc = beast_decode(cc, b) | beast_decode(cg, b) | beast_decode(ce, b) |
                     beast_decode(cd, b) | beast_decode(cq, b);
            CHECK(rc == 0, "%s: decode step %d: %s", label, step, beast_error());
            if (rc) break;
            for (int s = 0; s < n_seq; s++) {
                int i = s;
                if (step == 0) {
                    int at = 0;
                    for (int k = 0; k <= s; k++) at += prompt - 7 * k;
                    i = at - 1;
                }
                const float *lc = beast_logits(cc, i), *lg = beast_logits(cg, i),
                            *le = beast_logits(ce, i), *ld = beast_logits(cd, i),
                            *lq = beast_logits(cq, i);
                if (!lc || !lg || !le || !ld || !lq) {
                    CHECK(0, "%s: no logits for entry %d", label, i);
                    continue;
                }
                double d2 = 0, c2 = 0, md = 0, s2 = 0, q2 = 0;
                int top_c = 0, top_g = 0;
                for (int v = 0; v < n_vocab; v++) {
                    double d = (double)lg[v] - lc[v], ds = (double)ld[v] - lc[v];
                    d2 += d * d;
                    s2 += ds * ds;
                    q2 += ((double)lq[v] - lc[v]) * ((double)lq[v] - lc[v]);
                    c2 += (double)lc[v] * lc[v];
                    md = fmax(md, fabs(d));
                    if (lc[v] > lc[top_c]) top_c = v;
                    if (lg[v] > lg[top_g]) top_g = v;
                }
                double rel = sqrt(d2 / fmax(c2, 1e-30));
                if (!(rel <= worst)) worst = rel;
                worst_simd = fmax(worst_simd, sqrt(s2 / fmax(c2, 1e-30)));
                worst_q8 = fmax(worst_q8, sqrt(q2 / fmax(c2, 1e-30)));
                if (!(lc[top_g] >= lc[top_c] - 2 * md - 1e-6)) bad_top++;
                if (memcmp(lg, le, (size_t)n_vocab * sizeof(float))) not_identical++;
                next[s] = top_c;
            }
        }
        CHECK(worst < 1e-2, "%s: logits rel error %g", label, worst);
        /* 8-bit activations (decode steps, Q4_K): within the CPU's own 8-bit
         * activation error, or 1% */
        CHECK(worst_q8 < fmax(1e-2, 1.5 * worst_simd), "%s: 8-bit-x logits rel error %g", label,
              worst_q8);
        CHECK(bad_top == 0, "%s: %d steps where the GPU's top token is not a CPU top", label,
              bad_top);
        CHECK(not_identical == 0, "%s: %d graph-replay logits differ from plain launches", label,
              not_identical);
        bk_cuda_stats sg, se;
        bk_cuda_get_stats(mg->bk, &sg);
        bk_cuda_get_stats(me->bk, &se);
        CHECK(sg.graph_replays >= steps - 2 && se.graph_captures == 0,
              "%s: graph replays %ld (of %d steps), captures with graphs off %ld", label,
              sg.graph_replays, steps, se.graph_captures);
        printf("%s: %d steps x %d sequences, worst logits rel error %.3g (8-bit x: %.3g, SIMD "
               "CPU: %.3g), graphs: %ld captures %ld replays\n",
               label, steps + 1, n_seq, worst, worst_q8, worst_simd, sg.graph_captures,
               sg.graph_replays);
        beast_batch_free(b);
        free(next);
        beast_ctx_free(cc);
        beast_ctx_free(cg);
        beast_ctx_free(ce);
        beast_ctx_free(cd);
        beast_ctx_free(cq);
    }
out:
    beast_model_free(mq);
    beast_model_free(md);
    beast_model_free(mc);
    beast_model_free(mg);
    beast_model_free(me);
}

/* beast_candidates on the GPU: 40 sequences, decode steps of 20 (rows left
 * on the GPU: topk there, then 516 bytes a row) and of 40 (more than 32
 * rows: on the host), each row's list against the reference of the row
 * beast_logits gives, asked for before and after the row, with and without
 * lse. */
static void check_candidates_model(const char *path, const char *label) {
    beast_model_params mp = beast_model_default_params();
    beast_model *m = beast_model_load(path, &mp);
    CHECK(m != NULL, "%s: load: %s", label, beast_error());
    if (!m) return;
    int nv = beast_n_vocab(m), n_seq = 40, bad = 0, rows = 0;
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_seq = n_seq;
    beast_ctx *c = beast_ctx_new(m, &cp);
    beast_batch *b = beast_batch_new(4 * n_seq);
    int32_t *order = malloc((size_t)nv * 4);
    for (int step = 0; c && b && step < 8 && bad < 5; step++) {
        int ns = step == 0 || step % 3 == 2 ? n_seq : 20;
        beast_batch_clear(b);
        for (int s = 0; s < ns; s++)
            for (int i = 0; i < (step ? 1 : 3); i++)
                beast_batch_add(b, rng_int(nv), s, step || i == 2);
        CHECK(beast_decode(c, b) == 0, "%s: decode: %s", label, beast_error());
        for (int e = 0; e < b->n && bad < 5; e++) {
            if (!b->logits[e]) continue;
            int first = (e + step) % 2, with_lse = (e / 2 + step) % 2;
            const beast_cand *cd = NULL;
            float lse = 0;
            int n = first ? beast_candidates(c, e, &cd, with_lse ? &lse : NULL) : 0;
            const float *row = beast_logits(c, e);
            if (!first) n = beast_candidates(c, e, &cd, with_lse ? &lse : NULL);
            if (!row || n < 0) {
                CHECK(0, "%s: entry %d: %s", label, e, beast_error());
                bad++;
                continue;
            }
            int32_t ids[BK_TOPK];
            float vals[BK_TOPK];
            double want;
            topk_ref(row, nv, order, ids, vals, &want);
            int nf = 0;
            while (nf < BK_TOPK && vals[nf] != -INFINITY) nf++;
            int ok = n == nf;
            for (int j = 0; j < n && ok; j++) ok = cd[j].id == ids[j] && cd[j].logit == vals[j];
            if (with_lse) ok &= fabs(lse - want) <= 1e-5 * fmax(1, fabs(want));
            CHECK(ok, "%s: step %d (%d rows) entry %d: %d candidates, want %d (lse %g want %g)",
                  label, step, ns, e, n, nf, (double)lse, want);
            bad += !ok;
            rows++;
        }
    }
    printf("%s: candidates of %d rows checked\n", label, rows);
    free(order);
    beast_batch_free(b);
    beast_ctx_free(c);
    beast_model_free(m);
}

/* Partial offload (n_gpu_layers = N): the last N layers and the output on
 * the GPU, the rest on the CPU. Logits through a prompt (micro-batches of
 * 16) and greedy decode steps of two sequences against the scalar CPU
 * reference: the split's error must stay within 1% or 1.5 times the larger
 * of its two halves' own errors (the all-GPU and the SIMD all-CPU model
 * against the same reference; the SIMD CPU rounds activations to 8 bits
 * and errs by a few percent on these tiny random models). Also the split's
 * placement and weight bytes, and graph replays of the GPU half. */
static void check_split(const char *path, const char *label, int n_gpu) {
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 2;
    beast_model *mg = beast_model_load(path, &mp); /* all on the GPU */
    mp.n_gpu_layers = 0;
    beast_model *mc = beast_model_load(path, &mp); /* all on the CPU (SIMD) */
    setenv("BEAST_CPU_SCALAR", "1", 1);
    beast_model *mr = beast_model_load(path, &mp); /* the reference */
    unsetenv("BEAST_CPU_SCALAR");
    mp.n_gpu_layers = n_gpu;
    beast_model *ms = beast_model_load(path, &mp);
    CHECK(mg && mc && mr && ms, "%s split %d: load: %s", label, n_gpu, beast_error());
    if (!mg || !mc || !mr || !ms) goto out;
    {
        beast_model_info info;
        beast_model_get_info(ms, &info);
        bk_cuda_stats sg, ss;
        bk_cuda_get_stats(mg->bk, &sg);
        bk_cuda_get_stats(ms->bk, &ss);
        CHECK(bk_is_cuda(ms->bk) && ms->bk_lo && !bk_is_cuda(ms->bk_lo) &&
                  info.n_gpu_layers == n_gpu && ss.weight_bytes < sg.weight_bytes,
              "%s split %d: placement (n_gpu_layers %d, weight bytes %zu of %zu)", label, n_gpu,
              info.n_gpu_layers, ss.weight_bytes, sg.weight_bytes);
        int n_vocab = beast_n_vocab(mg), n_seq = 2, prompt = 37, steps = 12;
        beast_ctx_params cp = beast_ctx_default_params();
        cp.n_ctx = 256;
        cp.n_seq = n_seq;
        cp.n_batch = 16;
        beast_ctx *cx[4] = {beast_ctx_new(mr, &cp), beast_ctx_new(ms, &cp), beast_ctx_new(mg, &cp),
                            beast_ctx_new(mc, &cp)}; /* reference, split, GPU, CPU */
        int ok = cx[0] && cx[1] && cx[2] && cx[3];
        CHECK(ok, "%s split %d: ctx: %s", label, n_gpu, beast_error());
        beast_batch *b = beast_batch_new(n_seq * prompt);
        int32_t next[2] = {0, 0};
        double worst[4] = {0, 0, 0, 0};
        int bad_top = 0;
        for (int step = 0; ok && step <= steps; step++) {
            beast_batch_clear(b);
            for (int q = 0; q < n_seq; q++) {
                int len = prompt - 5 * q;
                if (step == 0)
                    for (int i = 0; i < len; i++)
                        beast_batch_add(b, (i * 7 + q) % n_vocab, q, i == len - 1);
                else
                    beast_batch_add(b, next[q], q, true);
            }
            int rc = 0;
            for (int e = 0; e < 4; e++) rc |= beast_decode(cx[e], b);
            CHECK(rc == 0, "%s split %d: decode step %d: %s", label, n_gpu, step, beast_error());
            if (rc) break;
            for (int q = 0; q < n_seq; q++) {
                int i = step ? q : (q ? 2 * prompt - 5 : prompt) - 1;
                const float *lr = beast_logits(cx[0], i);
                double r2 = 0, md = 0;
                int top_r = 0, top_s = 0;
                for (int e = 1; e < 4; e++) {
                    const float *l = beast_logits(cx[e], i);
                    if (!lr || !l) {
                        CHECK(0, "%s split %d: no logits for entry %d", label, n_gpu, i);
                        break;
                    }
                    double d2 = 0;
                    r2 = 0;
                    for (int v = 0; v < n_vocab; v++) {
                        d2 += ((double)l[v] - lr[v]) * ((double)l[v] - lr[v]);
                        r2 += (double)lr[v] * lr[v];
                        if (e == 1) {
                            md = fmax(md, fabs((double)l[v] - lr[v]));
                            if (l[v] > l[top_s]) top_s = v;
                            if (lr[v] > lr[top_r]) top_r = v;
                        }
                    }
                    worst[e] = fmax(worst[e], sqrt(d2 / fmax(r2, 1e-30)));
                }
                if (lr && !(lr[top_s] >= lr[top_r] - 2 * md - 1e-6)) bad_top++;
                next[q] = top_r;
            }
        }
        bk_cuda_stats s1;
        bk_cuda_get_stats(ms->bk, &s1);
        CHECK(worst[1] < fmax(1e-2, 1.5 * fmax(worst[2], worst[3])) && bad_top == 0,
              "%s split %d: logits rel error %g (GPU %g, SIMD CPU %g), %d bad tops", label, n_gpu,
              worst[1], worst[2], worst[3], bad_top);
        CHECK(s1.graph_replays - ss.graph_replays >= steps - 2,
              "%s split %d: %ld graph replays in %d decode steps", label, n_gpu,
              s1.graph_replays - ss.graph_replays, steps);
        printf("%s: %d of %d layers on the GPU: worst logits rel error %.3g (all-GPU %.3g, SIMD "
               "all-CPU %.3g); %ld graph replays\n",
               label, n_gpu, info.n_layer, worst[1], worst[2], worst[3],
               s1.graph_replays - ss.graph_replays);
        beast_batch_free(b);
        for (int e = 0; e < 4; e++) beast_ctx_free(cx[e]);
    }
out:
    beast_model_free(mg);
    beast_model_free(mc);
    beast_model_free(mr);
    beast_model_free(ms);
}

/* The one-token step program (cuda_step.cu): one sequence decoded greedily
 * (a prompt, then batches of one token, the only ones the program takes) on
 * the GPU with step programs (with and without graphs) and without them
 * (BEAST_CUDA_STEP=0), against the scalar CPU reference. The program's
 * logits must be as close to the reference as the plain launches' (both use
 * 8-bit activations), bit-identical between graph replays and eager runs,
 * and it must actually have run. long_ctx: the sequence grows past the
 * attention's short span (CUDA_ATTN_SHORT), where the program gives way to
 * the plain launches. */
static void check_step(const char *path, const char *label, int kv_f32, int long_ctx) {
    beast_model_params mp = beast_model_default_params();
    mp.n_gpu_layers = 0;
    mp.n_threads = 1;
    setenv("BEAST_CPU_SCALAR", "1", 1);
    beast_model *mc = beast_model_load(path, &mp); /* the reference */
    unsetenv("BEAST_CPU_SCALAR");
    beast_model *md = beast_model_load(path, &mp); /* SIMD CPU: its 8-bit error */
    mp.n_gpu_layers = -1;
    beast_model *ms = beast_model_load(path, &mp); /* step programs */
    setenv("BEAST_CUDA_GRAPHS", "0", 1);
    beast_model *me = beast_model_load(path, &mp); /* step programs, no graphs */
    unsetenv("BEAST_CUDA_GRAPHS");
    setenv("BEAST_CUDA_STEP", "0", 1);
    beast_model *mo = beast_model_load(path, &mp); /* plain launches */
    unsetenv("BEAST_CUDA_STEP");
    CHECK(mc && md && ms && me && mo, "%s step: load: %s", label, beast_error());
    if (!mc || !md || !ms || !me || !mo) goto out;
    {
        beast_model *mods[5] = {mc, md, ms, me, mo};
        beast_ctx *cx[5] = {NULL, NULL, NULL, NULL, NULL};
        beast_ctx_params cp = beast_ctx_default_params();
        cp.n_ctx = long_ctx ? 1024 : 256;
        cp.n_seq = 1;
        cp.n_batch = 64;
        cp.kv_type = kv_f32 ? BEAST_KV_F32 : BEAST_KV_F16;
        int ok = 1;
        for (int e = 0; e < 5; e++) ok &= (cx[e] = beast_ctx_new(mods[e], &cp)) != NULL;
        CHECK(ok, "%s step: ctx: %s", label, beast_error());
        const int n_vocab = beast_n_vocab(mc), prompt = long_ctx ? 490 : 19, steps = 40;
        beast_batch *b = beast_batch_new(prompt);
        bk_cuda_stats s0, s1;
        bk_cuda_get_stats(ms->bk, &s0);
        double worst_s = 0, worst_o = 0, worst_simd = 0, worst_so = 0;
        int bad_top = 0, not_identical = 0, next = 0, last = 0, short_steps = 0;
        for (int step = 0; ok && step <= steps; step++) {
            int done = 0;
            while (done < (step ? 1 : prompt)) { /* the prompt in batches of 64 */
                beast_batch_clear(b);
                int n = step ? 1 : MIN(64, prompt - done);
                last = n - 1;
                for (int i = 0; i < n; i++)
                    beast_batch_add(b, step ? next : rng_int(n_vocab), 0, i == n - 1);
                int rc = 0;
                for (int e = 0; e < 5; e++) rc |= beast_decode(cx[e], b);
                CHECK(rc == 0, "%s step: decode step %d: %s", label, step, beast_error());
                if (rc) ok = 0;
                done += n;
                if (!ok) break;
            }
            if (!ok) break;
            short_steps += step > 0 && prompt + step <= 512; /* CUDA_ATTN_SHORT */
            const float *l[5];
            for (int e = 0; e < 5; e++) l[e] = beast_logits(cx[e], last);
            if (!l[0] || !l[1] || !l[2] || !l[3] || !l[4]) {
                CHECK(0, "%s step: no logits at step %d", label, step);
                break;
            }
            double c2 = 0, s2 = 0, o2 = 0, d2 = 0, so2 = 0, md = 0;
            int top_c = 0, top_s = 0;
            for (int v = 0; v < n_vocab; v++) {
                double ds = (double)l[2][v] - l[0][v], dd = (double)l[1][v] - l[0][v];
                double dof = (double)l[4][v] - l[0][v], dso = (double)l[2][v] - l[4][v];
                c2 += (double)l[0][v] * l[0][v];
                s2 += ds * ds, d2 += dd * dd, o2 += dof * dof, so2 += dso * dso;
                md = fmax(md, fabs(ds));
                if (l[0][v] > l[0][top_c]) top_c = v;
                if (l[2][v] > l[2][top_s]) top_s = v;
            }
            c2 = fmax(c2, 1e-30);
            worst_s = fmax(worst_s, sqrt(s2 / c2));
            worst_o = fmax(worst_o, sqrt(o2 / c2));
            worst_simd = fmax(worst_simd, sqrt(d2 / c2));
            worst_so = fmax(worst_so, sqrt(so2 / c2));
            if (!(l[0][top_s] >= l[0][top_c] - 2 * md - 1e-6)) bad_top++;
            if (memcmp(l[2], l[3], (size_t)n_vocab * sizeof(float))) not_identical++;
            next = top_c;
        }
        bk_cuda_get_stats(ms->bk, &s1);
        long ran = s1.step_launches - s0.step_launches;
        /* one a short-span decode step of me (ms: the eager run and the
         * capture, then graph replays) */
        CHECK(ran >= short_steps + 1,
              "%s step: %ld step-program launches for %d short one-token steps", label, ran,
              short_steps);
        CHECK(worst_s < fmax(1e-2, 1.5 * fmax(worst_simd, worst_o)),
              "%s step: logits rel error %g (plain launches %g, SIMD CPU %g)", label, worst_s,
              worst_o, worst_simd);
        CHECK(bad_top == 0, "%s step: %d steps where the top token is not a CPU top", label,
              bad_top);
        CHECK(not_identical == 0, "%s step: %d graph-replay logits differ from eager runs", label,
              not_identical);
        CHECK(s1.graph_replays - s0.graph_replays >= steps - 3,
              "%s step: %ld graph replays in %d steps (capture of the program failed?)", label,
              s1.graph_replays - s0.graph_replays, steps);
        printf("%s step program%s: %d steps, %ld launches, logits rel error %.3g (plain launches "
               "%.3g, SIMD CPU %.3g; program against plain %.3g)\n",
               label, long_ctx ? " (past the short span)" : "", steps, ran, worst_s, worst_o,
               worst_simd, worst_so);
        beast_batch_free(b);
        for (int e = 0; e < 5; e++) beast_ctx_free(cx[e]);
    }
out:
    beast_model_free(mc);
    beast_model_free(md);
    beast_model_free(ms);
    beast_model_free(me);
    beast_model_free(mo);
}

/* A generated model in a fresh temporary file (path[64]): 0, or -1 after a
 * failed check (no file left behind). */
static int gen_temp(char *path, const gen_shape *shape, int wtype, int untied) {
    snprintf(path, 64, "/tmp/beast_test_cuda_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        CHECK(0, "mkstemp");
        return -1;
    }
    close(fd);
    gen_params p = {0};
    p.shape = shape;
    p.wtype = wtype;
    p.embd_type = -1;
    p.seed = rng_u64();
    p.n_threads = 4;
    p.untied_output = untied;
    int rc = gen_write(path, &p);
    CHECK(rc == 0, "gen_write %s: %s", shape->name ? shape->name : shape->arch, err_get());
    if (rc) unlink(path);
    return rc;
}

/* beast_generate_greedy on the GPU (run ahead: step k + 1 queued, fed by
 * step k's pick on the device, before token k is read) against the loop it
 * replaces on the same GPU model (decode, download the logits, host
 * argmax): the same tokens, run ahead and step by step; stopped early, the
 * cache is left as that loop leaves it (the next step's logits match). */

static void check_generate(const char *path, const char *label) {
    beast_model_params mp = beast_model_default_params();
    mp.n_gpu_layers = -1;
    mp.n_threads = 1;
    beast_model *m = beast_model_load(path, &mp);
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 64;
    beast_ctx *c = m ? beast_ctx_new(m, &cp) : NULL;
    beast_batch *b = beast_batch_new(16);
    CHECK(m && c && b, "%s generate: load: %s", label, beast_error());
    if (!m || !c || !b) goto out;
    CHECK(m->bk->ops->runs_ahead, "%s generate: the CUDA backend does not run ahead", label);
    const int fails = check_failures;
    enum { K = 40 };
    const int nv = beast_n_vocab(m), P = 12;
    int32_t want[K], prompt[12];
    float *ref = malloc((size_t)K * nv * sizeof(float));
    for (int i = 0; i < P; i++) prompt[i] = rng_int(nv);
    beast_batch_clear(b);
    for (int i = 0; i < P - 1; i++) beast_batch_add(b, prompt[i], 0, false);
    CHECK(beast_decode(c, b) == 0, "%s generate: prompt: %s", label, beast_error());
    int32_t t = prompt[P - 1];
    for (int k = 0; k < K; k++) {
        beast_batch_clear(b);
        beast_batch_add(b, t, 0, true);
        const float *l = beast_decode(c, b) == 0 ? beast_logits(c, 0) : NULL;
        CHECK(l != NULL, "%s generate: reference step %d: %s", label, k, beast_error());
        if (!l) goto out_ref;
        memcpy(ref + (size_t)k * nv, l, (size_t)nv * 4);
        t = want[k] = bk_argmax_row(l, nv);
    }
    for (int ahead = 1; ahead >= 0; ahead--) {
        if (!ahead) setenv("BEAST_GEN_AHEAD", "0", 1);
        for (int rep = 0; rep < 3; rep++) { /* eager, captured, replayed */
            beast_seq_truncate(c, 0, P - 1);
            gen_rec r = {{0}, 0, 0};
            int got = beast_generate_greedy(c, 0, prompt[P - 1], K, rec_token, &r);
            int same = got == K && r.n == K && !memcmp(r.tok, want, sizeof want);
            int first = 0;
            while (first < K && first < r.n && r.tok[first] == want[first]) first++;
            CHECK(same, "%s generate (ahead %d, run %d): %d tokens, first difference at %d", label,
                  ahead, rep, got, first);
            CHECK(beast_seq_len(c, 0) == P - 1 + K, "%s generate: %d positions (want %d)", label,
                  beast_seq_len(c, 0), P - 1 + K);
        }
        beast_seq_truncate(c, 0, P - 1);
        gen_rec r2 = {{0}, 0, 9};
        int got = beast_generate_greedy(c, 0, prompt[P - 1], K, rec_token, &r2);
        CHECK(got == 9 && !memcmp(r2.tok, want, 9 * sizeof *want) &&
                  beast_seq_len(c, 0) == P - 1 + 9,
              "%s generate stopped at 9 (ahead %d): %d tokens, %d positions", label, ahead, got,
              beast_seq_len(c, 0));
        beast_batch_clear(b);
        beast_batch_add(b, want[8], 0, true);
        const float *l = beast_decode(c, b) == 0 ? beast_logits(c, 0) : NULL;
        double worst = 0, mx = 0;
        for (int v = 0; l && v < nv; v++) {
            worst = fmax(worst, fabs((double)l[v] - ref[(size_t)9 * nv + v]));
            mx = fmax(mx, fabs(ref[(size_t)9 * nv + v]));
        }
        CHECK(l && worst <= 1e-5 * mx,
              "%s: the step after a stopped generate (ahead %d): max diff %g of %g", label, ahead,
              worst, mx);
        unsetenv("BEAST_GEN_AHEAD");
    }
    if (check_failures == fails)
        printf("%s: generate (run ahead and step by step) matches the decode loop\n", label);
out_ref:
    free(ref);
out:
    beast_batch_free(b);
    beast_ctx_free(c);
    beast_model_free(m);
}

static void test_generated(void) {
    struct {
        const char *preset;
        int wtype;
        int kv_f32;
    } cases[] = {
        {"tiny-llama", GEN_MIX_Q4_K_M, 0},  {"tiny-llama", QT_Q8_0, 1},  {"tiny-llama", QT_F16, 0},
        {"tiny-gemma3", GEN_MIX_Q4_K_M, 0}, {"tiny-gemma3", QT_BF16, 0},
    };
    for (size_t k = 0; k < ARRAY_LEN(cases); k++) {
        char path[64];
        int rc = gen_temp(path, gen_shape_preset(cases[k].preset), cases[k].wtype, (int)(k & 1));
        if (!rc) {
            char label[96];
            snprintf(label, sizeof label, "%s %s%s", cases[k].preset, gen_type_name(cases[k].wtype),
                     cases[k].kv_f32 ? " (f32 KV)" : "");
            compare_models(path, label, cases[k].kv_f32);
            if (k == 0 || k == 3) check_candidates_model(path, label);
            if (k == 0) check_step(path, label, 0, 0);
            if (k == 0 || k == 3) check_generate(path, label);
            if (k == 0 || k == 3) { /* partial offload: one layer, half of them */
                int nl = gen_shape_preset(cases[k].preset)->n_layer;
                check_split(path, label, 1);
                if (nl / 2 > 1) check_split(path, label, nl / 2);
            }
        }
        unlink(path);
    }
}

/* step programs on a second shape: head_dim 128, four query heads on one KV
 * head, 512 columns (Q6_K rows of two blocks: 2-byte aligned), f32 KV, a
 * sequence that grows past the short span; and with one split a head */
static void test_step_shapes(void) {
    static const gen_shape shape = {NULL, "llama", 2, 512, 1024, 4, 1, 128, 2048, 10000.0f, 0, 0};
    char path[64];
    if (gen_temp(path, &shape, GEN_MIX_Q4_K_M, 1)) return;
    check_step(path, "llama head_dim 128 Q4_K_M (f32 KV)", 1, 1);
    check_step(path, "llama head_dim 128 Q4_K_M", 0, 0);
    check_step(path, "llama head_dim 128 Q4_K_M (long)", 0, 1); /* f16 KV, 4 splits merged */
    /* one split a head: up to 512 positions a CTA, tiles after the first */
    setenv("BEAST_CUDA_STEP_SPLITS", "1", 1);
    check_step(path, "llama head_dim 128 Q4_K_M (f32 KV, 1 split)", 1, 1);
    check_step(path, "llama head_dim 128 Q4_K_M (1 split)", 0, 1);
    unsetenv("BEAST_CUDA_STEP_SPLITS");
    unlink(path);
}

/* Deterministic mode: the logits of every token of a batch (3 sequences,
 * prompts of 40 / 33 / 26 tokens in one batch of 99, then decode steps of
 * all three) must equal, bit for bit, those of the same token computed in a
 * batch of one (each sequence fed token by token on its own). */
static void check_deterministic(const char *path, const char *label) {
    beast_model_params mp = beast_model_default_params();
    mp.deterministic = true;
    beast_model *m = beast_model_load(path, &mp);
    CHECK(m != NULL, "%s: load: %s", label, beast_error());
    if (!m) return;
    int n_vocab = beast_n_vocab(m), n_seq = 3, prompt = 40, steps = 6;
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_seq = n_seq;
    cp.n_batch = 128;
    beast_ctx *cb = beast_ctx_new(m, &cp), *c1 = beast_ctx_new(m, &cp);
    beast_batch *b = beast_batch_new(n_seq * prompt);
    int32_t toks[3][64];
    float *ref = malloc((size_t)n_vocab * sizeof *ref);
    int differ = 0, compared = 0;
    CHECK(cb && c1 && b && ref, "%s: ctx: %s", label, beast_error());
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < prompt + steps; i++) toks[s][i] = rng_int(n_vocab);
    for (int step = 0; cb && c1 && b && ref && step <= steps; step++) {
        /* the batch: whole prompts at step 0, one token each after */
        beast_batch_clear(b);
        for (int s = 0; s < n_seq; s++) {
            int len = prompt - 7 * s;
            if (step == 0)
                for (int i = 0; i < len; i++) beast_batch_add(b, toks[s][i], s, i == len - 1);
            else
                beast_batch_add(b, toks[s][len + step - 1], s, true);
        }
        int rc = beast_decode(cb, b);
        CHECK(rc == 0, "%s: batch decode: %s", label, beast_error());
        if (rc) break;
        int row = 0;
        for (int s = 0; s < n_seq; s++) {
            int len = prompt - 7 * s;
            row += step == 0 ? len : 1;
            /* the same tokens alone, one at a time */
            int from = step == 0 ? 0 : len + step - 1, to = step == 0 ? len : len + step;
            for (int i = from; i < to && !rc; i++) {
                beast_batch_clear(b);
                beast_batch_add(b, toks[s][i], s, true);
                rc = beast_decode(c1, b);
            }
            CHECK(rc == 0, "%s: single decode: %s", label, beast_error());
            const float *l1 = rc ? NULL : beast_logits(c1, 0);
            if (l1) memcpy(ref, l1, (size_t)n_vocab * sizeof *ref);
            const float *lb = beast_logits(cb, row - 1);
            if (!l1 || !lb) {
                CHECK(0, "%s: no logits (step %d, sequence %d)", label, step, s);
                continue;
            }
            compared++;
            if (memcmp(lb, ref, (size_t)n_vocab * sizeof *ref)) {
                double md = 0;
                for (int v = 0; v < n_vocab; v++) md = fmax(md, fabs((double)lb[v] - ref[v]));
                if (!differ++)
                    printf("%s: step %d sequence %d: batched logits differ from single ones by up "
                           "to %g\n",
                           label, step, s, md);
            }
        }
    }
    CHECK(differ == 0, "%s: deterministic mode: %d of %d logit rows differ from batch-of-one",
          label, differ, compared);
    printf("%s: deterministic mode: %d logit rows, batched == batch-of-one bit for bit: %s\n",
           label, compared, differ ? "no" : "yes");
    free(ref);
    beast_batch_free(b);
    beast_ctx_free(cb);
    beast_ctx_free(c1);
    beast_model_free(m);
}

static void test_deterministic(void) {
    const char *presets[] = {"tiny-llama", "tiny-gemma3"};
    for (size_t k = 0; k < ARRAY_LEN(presets); k++) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/beast_test_cuda_XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0) {
            CHECK(0, "mkstemp");
            return;
        }
        close(fd);
        gen_params p = {0};
        p.shape = gen_shape_preset(presets[k]);
        p.wtype = GEN_MIX_Q4_K_M;
        p.embd_type = -1;
        p.seed = rng_u64();
        p.n_threads = 4;
        int rc = gen_write(path, &p);
        CHECK(rc == 0, "gen_write %s: %s", presets[k], err_get());
        if (!rc) check_deterministic(path, presets[k]);
        unlink(path);
    }
}

static void test_real_models(void) {
    const char *dir = getenv("BEAST_MODELS_DIR");
    const char *names[] = {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"};
    for (size_t k = 0; dir && k < ARRAY_LEN(names); k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        if (access(path, R_OK)) {
            printf("%s: not present, skipped\n", names[k]);
            continue;
        }
        compare_models(path, names[k], 0);
        check_generate(path, names[k]);
    }
}

/* a crash prints where it happened (addresses: addr2line -e test_cuda) */
static void on_crash(int sig) {
    void *frames[64];
    int n = backtrace(frames, 64);
    fprintf(stderr, "test_cuda: signal %d, backtrace:\n", sig);
    backtrace_symbols_fd(frames, n, 2);
    _exit(128 + sig);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGSEGV, on_crash);
    signal(SIGABRT, on_crash);
    check_seed();
    G = bk_cuda_new(0);
    if (!G) {
        printf("skipped: no CUDA backend: %s\n", err_get());
        return 77;
    }
    C = bk_cpu_new(1);
    R = cpu_scalar_backend();
    if (!C || !R) {
        printf("FAIL: cpu backend: %s\n", err_get());
        return 1;
    }
    test_small_ops();
    test_topk();
    test_embed();
    test_attention();
    test_fusions();
    test_matmul();
    G->ops->destroy(G);
    C->ops->destroy(C);
    R->ops->destroy(R);
    test_deterministic();
    test_generated();
    test_step_shapes();
    test_real_models();
    return check_done();
}
