/* test_backend_cpu.c: every CPU backend op against a float64 reference on
 * fresh random inputs: matmul for each weight type (vs. the quant traits'
 * reference dot), rmsnorm, rope (both layouts), glu, add, gather, embed,
 * and paged attention (shuffled block tables, GQA, sliding window) vs. a
 * contiguous float64 attention. */
#include "backend/backend.h"
#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"

static uint64_t rng_state;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * nrand();
}

/* max |a-b| / (max |b| + tiny) */
static double rel_err(const float *a, const double *b, size_t n) {
    double md = 0, mb = 1e-30;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - b[i]));
        mb = fmax(mb, fabs(b[i]));
    }
    return md / mb;
}

/* Matmul tolerance. Float weights (F32, F16, BF16): f32 accumulation, 1e-5
 * relative to max |ref|. Quantized weights: the backend may quantize the
 * activations to 8 bits (as llama.cpp does) in blocks of 32 (legacy types)
 * or 256 (K-quants), d = amax / 127, so each activation is off by at most
 * d / 2 and an output by at most sum_b d_b / 2 * sum_{i in b} |w_i| (w the
 * dequantized row); plus float rounding, 1e-4 * sum_i 3 max_b |w| |x_i|.
 * That bound is checked for every output (src/cpu/q8.h, test_cpu_kernels.c). */
static double mm_allowed(const quant_traits *qt, const float *w, const float *x, int cols) {
    int bsz = qt->block == 1 ? 0 : qt->block == 32 ? 32 : 256;
    double q = 0, fl = 0;
    for (int b = 0; bsz && b < cols; b += bsz) {
        double amax = 0, wmax = 0, sw = 0, sx = 0;
        for (int i = b; i < b + bsz; i++) {
            amax = fmax(amax, fabs(x[i]));
            wmax = fmax(wmax, fabs(w[i]));
            sw += fabs(w[i]);
            sx += fabs(x[i]);
        }
        q += amax / 127 / 2 * sw;
        fl += 3 * wmax * sx;
    }
    return q * (1 + 1e-4) + 1e-4 * fl;
}

static void test_matmul(backend *bk) {
    int types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                   QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
        const quant_traits *qt = quant_get(types[ti]);
        if (!qt || !qt->quant) {
            CHECK(0, "type %d has no reference quantizer", types[ti]);
            continue;
        }
        int rows = 37, cols = 512, n = 5;
        float *w = malloc((size_t)rows * cols * 4), *x = malloc((size_t)n * cols * 4);
        float *wd = malloc((size_t)rows * cols * 4);
        float *out = malloc((size_t)n * rows * 4);
        double *ref = malloc((size_t)n * rows * 8);
        size_t rs = quant_row_size(types[ti], cols);
        char *q = malloc(rs * rows);
        fill(w, (size_t)rows * cols, 0.5f);
        fill(x, (size_t)n * cols, 1.0f);
        for (int r = 0; r < rows; r++) {
            qt->quant(w + (size_t)r * cols, q + r * rs, cols);
            qt->dequant(q + r * rs, wd + (size_t)r * cols, cols);
        }
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++)
                ref[t * rows + r] = qt->dot(q + r * rs, x + (size_t)t * cols, cols);
        bk_weight W = {types[ti], rows, cols, NULL, q};
        bk->ops->weight_init(bk, &W);
        bk->ops->matmul(bk, out, &W, x, n);
        CHECK(bk->ops->sync(bk) == 0, "sync");
        if (qt->block == 1) {
            double e = rel_err(out, ref, (size_t)n * rows);
            CHECK(e < 1e-5, "matmul %s: rel err %g", qt->name, e);
        } else {
            int bad = 0;
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++) {
                    double lim = mm_allowed(qt, wd + (size_t)r * cols, x + (size_t)t * cols, cols);
                    if (!(fabs(out[t * rows + r] - ref[t * rows + r]) <= lim)) bad++;
                }
            CHECK(bad == 0, "matmul %s: %d of %d outputs over the bound", qt->name, bad, n * rows);
        }
        free(w), free(wd), free(x), free(out), free(ref), free(q);
    }
}

static void test_norm_rope_glu(backend *bk) {
    int rows = 7, dim = 96;
    float *x = malloc(rows * dim * 4), *w = malloc(dim * 4), *o = malloc(rows * dim * 4);
    double *ref = malloc(rows * dim * 8);
    fill(x, rows * dim, 2.0f);
    fill(w, dim, 1.0f);
    float eps = 1e-5f;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)x[r * dim + i] * x[r * dim + i];
        double s = 1 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) ref[r * dim + i] = x[r * dim + i] * s * w[i];
    }
    bk->ops->rmsnorm(bk, o, x, w, rows, dim, eps);
    CHECK(rel_err(o, ref, rows * dim) < 1e-6, "rmsnorm");
    bk->ops->rmsnorm(bk, x, x, w, rows, dim, eps); /* in place */
    CHECK(rel_err(x, ref, rows * dim) < 1e-6, "rmsnorm in place");

    /* rope: as complex rotation in float64 */
    for (int neox = 0; neox < 2; neox++) {
        int n = 4, heads = 3, hd = 64, n_rot = 32;
        float base = 10000.0f, fs = 0.5f;
        int32_t pos[4] = {0, 1, 77, 4095};
        float *v = malloc(n * heads * hd * 4);
        double *r = malloc(n * heads * hd * 8);
        fill(v, n * heads * hd, 1.0f);
        for (int i = 0; i < n * heads * hd; i++) r[i] = v[i];
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
                for (int k = 0; k < n_rot / 2; k++) {
                    double th = pos[t] * fs * pow(base, -2.0 * k / n_rot);
                    int a = neox ? k : 2 * k, b = neox ? k + n_rot / 2 : 2 * k + 1;
                    double *p = r + (t * heads + h) * hd;
                    double x0 = p[a], x1 = p[b];
                    p[a] = x0 * cos(th) - x1 * sin(th);
                    p[b] = x0 * sin(th) + x1 * cos(th);
                }
        bk->ops->rope(bk, v, pos, n, heads, hd, n_rot, base, fs, neox);
        CHECK(rel_err(v, r, n * heads * hd) < 1e-5, "rope neox=%d: %g", neox,
              rel_err(v, r, n * heads * hd));
        free(v), free(r);
    }

    /* glu, add, gather */
    int64_t n = 40000;
    float *g = malloc(n * 4), *u = malloc(n * 4), *out = malloc(n * 4);
    double *gr = malloc(n * 8);
    fill(g, n, 3.0f);
    fill(u, n, 1.0f);
    for (int act = 0; act < 2; act++) {
        for (int64_t i = 0; i < n; i++) {
            double a = g[i];
            double f = act == BK_ACT_SILU
                           ? a / (1 + exp(-a))
                           : 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
            gr[i] = f * u[i];
        }
        bk->ops->glu(bk, out, g, u, n, act);
        CHECK(rel_err(out, gr, n) < 1e-5, "glu act=%d", act);
    }
    for (int64_t i = 0; i < n; i++) gr[i] = (double)g[i] + u[i];
    bk->ops->add(bk, g, u, n);
    CHECK(rel_err(g, gr, n) < 1e-6, "add");
    int32_t rws[3] = {5, 0, 5};
    float *ga = malloc(3 * dim * 4);
    double *gref = malloc(3 * dim * 8);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < dim; k++) gref[i * dim + k] = o[rws[i] * dim + k];
    bk->ops->gather(bk, ga, o, rws, 3, dim);
    CHECK(rel_err(ga, gref, 3 * dim) == 0, "gather");
    free(x), free(w), free(o), free(ref), free(g), free(u), free(out), free(gr), free(ga),
        free(gref);
}

static void test_embed(backend *bk) {
    int vocab = 50, dim = 64;
    const quant_traits *qt = quant_get(QT_Q8_0);
    size_t rs = quant_row_size(QT_Q8_0, dim);
    float *w = malloc(vocab * dim * 4), *o = malloc(3 * dim * 4), *row = malloc(dim * 4);
    char *q = malloc(rs * vocab);
    fill(w, vocab * dim, 1.0f);
    for (int r = 0; r < vocab; r++) qt->quant(w + r * dim, q + r * rs, dim);
    bk_weight W = {QT_Q8_0, vocab, dim, NULL, q};
    bk->ops->weight_init(bk, &W);
    int32_t ids[3] = {49, 0, 17};
    bk->ops->embed(bk, o, &W, ids, 3, 2.5f);
    double ref[3 * 64];
    for (int i = 0; i < 3; i++) {
        qt->dequant(q + ids[i] * rs, row, dim);
        for (int k = 0; k < dim; k++) ref[i * dim + k] = 2.5 * row[k];
    }
    CHECK(rel_err(o, ref, 3 * dim) < 1e-7, "embed");
    free(w), free(o), free(row), free(q);
}

/* Paged attention: 3 sequences of different lengths, blocks shuffled. */
static void test_attention(backend *bk, int kv_type, int window) {
    const int n_head = 6, n_head_kv = 2, hd = 32, bs = 4, n_blocks = 64;
    const int lens[3] = {1, 13, 37};
    int kv_dim = n_head_kv * hd;
    size_t esize = kv_type == QT_F16 ? 2 : 4;
    bk_kv_layer L = {bk->ops->alloc(bk, (size_t)n_blocks * bs * kv_dim * esize),
                     bk->ops->alloc(bk, (size_t)n_blocks * bs * kv_dim * esize), kv_dim, kv_type};
    int perm[64];
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(urand() * (i + 1));
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int max_blocks = 10;
    int32_t bt[3 * 10];
    int used = 0;
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < max_blocks; b++) bt[s * max_blocks + b] = perm[used++];
    /* all positions of every sequence as one batch */
    int n = lens[0] + lens[1] + lens[2];
    int32_t *pos = malloc(n * 4), *row = malloc(n * 4), *slot = malloc(n * 4);
    float *K = malloc((size_t)n * kv_dim * 4), *V = malloc((size_t)n * kv_dim * 4);
    float *Q = malloc((size_t)n * n_head * hd * 4), *O = malloc((size_t)n * n_head * hd * 4);
    double *R = malloc((size_t)n * n_head * hd * 8);
    fill(K, (size_t)n * kv_dim, 1.0f);
    fill(V, (size_t)n * kv_dim, 1.0f);
    fill(Q, (size_t)n * n_head * hd, 1.0f);
    int t = 0;
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < lens[s]; p++, t++) {
            pos[t] = p;
            row[t] = s;
            slot[t] = bt[s * max_blocks + p / bs] * bs + p % bs;
        }
    bk->ops->kv_write(bk, &L, K, V, slot, n);
    bk_attn_batch ab = {n, pos, row, bt, max_blocks, bs, 0};
    float scale = 1.0f / sqrtf((float)hd);
    bk->ops->attention(bk, O, Q, &L, &ab, n_head, n_head_kv, hd, window, scale);
    CHECK(bk->ops->sync(bk) == 0, "sync");
    /* reference: token t of seq s attends to the tokens of s at positions
     * in the window, using the values as stored (f16-rounded if f16) */
    int start[3] = {0, lens[0], lens[0] + lens[1]};
    for (int i = 0; i < n; i++) {
        int s = row[i], p = pos[i], lo = window > 0 ? (p - window + 1 > 0 ? p - window + 1 : 0) : 0;
        for (int h = 0; h < n_head; h++) {
            int kvh = h / (n_head / n_head_kv);
            double sc[64], mx = -1e300, sum = 0;
            for (int j = lo; j <= p; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++) {
                    float kk = K[(size_t)(start[s] + j) * kv_dim + kvh * hd + e];
                    if (kv_type == QT_F16) kk = fp16_to_f32(f32_to_fp16(kk));
                    d += (double)Q[((size_t)i * n_head + h) * hd + e] * kk;
                }
                sc[j] = d * scale;
                mx = fmax(mx, sc[j]);
            }
            for (int j = lo; j <= p; j++) sum += sc[j] = exp(sc[j] - mx);
            for (int e = 0; e < hd; e++) {
                double acc = 0;
                for (int j = lo; j <= p; j++) {
                    float vv = V[(size_t)(start[s] + j) * kv_dim + kvh * hd + e];
                    if (kv_type == QT_F16) vv = fp16_to_f32(f32_to_fp16(vv));
                    acc += sc[j] / sum * vv;
                }
                R[((size_t)i * n_head + h) * hd + e] = acc;
            }
        }
    }
    double e = rel_err(O, R, (size_t)n * n_head * hd);
    CHECK(e < 1e-5, "attention kv=%s window=%d: rel err %g", kv_type == QT_F16 ? "f16" : "f32",
          window, e);
    bk->ops->free(bk, L.k);
    bk->ops->free(bk, L.v);
    free(pos), free(row), free(slot), free(K), free(V), free(Q), free(O), free(R);
}

int main(void) {
    rng_state = (uint64_t)time(NULL);
    printf("seed %llu\n", (unsigned long long)rng_state);
    for (int threads = 1; threads <= 3; threads += 2) {
        backend *bk = bk_cpu_new(threads);
        if (!bk) {
            printf("FAIL: backend: %s\n", err_get());
            return 1;
        }
        test_matmul(bk);
        test_norm_rope_glu(bk);
        test_embed(bk);
        test_attention(bk, QT_F32, 0);
        test_attention(bk, QT_F16, 0);
        test_attention(bk, QT_F16, 5);
        bk->ops->destroy(bk);
    }
    return check_done();
}
