/* test_determinism.c: batch-independent results (backend.h `deterministic`,
 * beast_model_params.deterministic).
 *
 * Every token's result must be bit for bit the one it gets when computed
 * alone, whatever else is in the batch. Checked on fresh random inputs:
 *   - ops of the CPU backend: matmul for every weight type (shapes with
 *     several k panels and partial blocks, batches that take the decode and
 *     the panel paths) against each row alone, on 1, 2 and 3 threads and on
 *     the SIMD and the reference (BEAST_CPU_SCALAR) paths, and in default
 *     mode for the types whose kernels are batch-independent anyway; attention of a
 *     batch mixing sequences and positions against each token alone;
 *     rmsnorm, rope and glu row by row;
 *   - the real models (BEAST_MODELS_DIR; skipped with 77 when none is
 *     there): several sequences with prompts of mixed lengths in one batch
 *     against each prompt fed one token at a time, then decode steps with
 *     different batch compositions, on 2 threads and on 1 (the same logits
 *     on both).
 * Comparisons are memcmp of the float results. */
#include "backend/backend.h"
#include "beast.h"
#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * (float)rng_normal();
}

/* first index where a and b differ bitwise, or -1 */
static long first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) return (long)i;
    return -1;
}

static backend *new_backend(int threads, int scalar, int deterministic) {
    if (scalar)
        setenv("BEAST_CPU_SCALAR", "1", 1);
    else
        unsetenv("BEAST_CPU_SCALAR");
    backend *bk = bk_cpu_new(threads);
    unsetenv("BEAST_CPU_SCALAR");
    if (bk) bk->deterministic = deterministic;
    return bk;
}

/* ---- matmul ---- */

static void test_matmul(void) {
    int types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                   QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    const int n = 11; /* panel path: 2 groups of 4 tokens + 3 */
    backend *bks[5] = {new_backend(2, 0, 1), new_backend(1, 0, 1), new_backend(3, 0, 1),
                       new_backend(2, 1, 1), new_backend(2, 0, 0)};
    const char *bk_names[5] = {"2 threads", "1 thread", "3 threads", "reference path",
                               "default mode"};
    for (int i = 0; i < 5; i++) CHECK(bks[i] != NULL, "bk_cpu_new: %s", beast_error());
    if (!bks[0] || !bks[1] || !bks[2] || !bks[3] || !bks[4]) goto out;
    for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
        const quant_traits *qt = quant_get(types[ti]);
        /* several k panels of the batch kernels plus a partial block group
         * (32-blocks: panels of 64, K-quants: 8 super-blocks, float: 512) */
        int cols = qt->block == 1 ? 1283 : qt->block == 32 ? 32 * 131 : 256 * 19;
        int rows = 37 + rng_int(8);
        size_t rs = quant_row_size(types[ti], cols);
        float *w = malloc((size_t)rows * cols * 4), *x = malloc((size_t)n * cols * 4);
        float *all = malloc((size_t)n * rows * 4), *one = malloc((size_t)rows * 4);
        float *sub = malloc((size_t)3 * rows * 4), *other = malloc((size_t)n * rows * 4);
        char *q = malloc(rs * rows);
        fill(w, (size_t)rows * cols, 0.5f);
        fill(x, (size_t)n * cols, 1.0f);
        for (int r = 0; r < rows; r++) qt->quant(w + (size_t)r * cols, q + r * rs, cols);
        for (int bi = 0; bi < 5; bi++) {
            /* default mode: batch-independent too, except the 32-block types
             * (src/cpu/cpu_backend.c says why) */
            if (bi == 4 && qt->block == 32) continue;
            backend *bk = bks[bi];
            bk_weight W = {types[ti], rows, cols, NULL, q};
            bk->ops->weight_init(bk, &W);
            bk->ops->matmul(bk, all, &W, x, n);
            int bad_one = 0, bad_sub = 0;
            for (int t = 0; t < n; t++) {
                bk->ops->matmul(bk, one, &W, x + (size_t)t * cols, 1);
                if (first_diff(one, all + (size_t)t * rows, rows) >= 0) bad_one++;
            }
            /* 3 tokens: the decode kernels with several tokens at once */
            bk->ops->matmul(bk, sub, &W, x + (size_t)5 * cols, 3);
            if (first_diff(sub, all + (size_t)5 * rows, (size_t)3 * rows) >= 0) bad_sub++;
            CHECK(bk->ops->sync(bk) == 0, "sync");
            CHECK(bad_one == 0, "matmul %s %dx%d, %s: %d of %d tokens differ from the token alone",
                  qt->name, rows, cols, bk_names[bi], bad_one, n);
            CHECK(bad_sub == 0, "matmul %s, %s: 3 tokens differ from the batch of %d", qt->name,
                  bk_names[bi], n);
            /* the same on every thread count (SIMD path) */
            if (bi == 0) memcpy(other, all, (size_t)n * rows * 4);
            if (bi == 1 || bi == 2)
                CHECK(first_diff(other, all, (size_t)n * rows) < 0,
                      "matmul %s: %s differs from 2 threads", qt->name, bk_names[bi]);
        }
        free(w), free(x), free(all), free(one), free(sub), free(other), free(q);
    }
out:
    for (int i = 0; i < 5; i++)
        if (bks[i]) bks[i]->ops->destroy(bks[i]);
}

/* ---- attention ---- */

static void test_attention(int kv_type, int scalar) {
    backend *bk = new_backend(2, scalar, 1);
    CHECK(bk != NULL, "bk_cpu_new");
    if (!bk) return;
    const int n_head = 8, n_head_kv = 2, d = 72, kv_dim = n_head_kv * d, bs = 16;
    const int n_seq = 3, max_blocks = 6, n_blocks = n_seq * max_blocks;
    const int n_slots = n_blocks * bs;
    size_t esz = kv_type == QT_F16 ? 2 : 4;
    void *K = malloc((size_t)n_slots * kv_dim * esz), *V = malloc((size_t)n_slots * kv_dim * esz);
    float *tmp = malloc((size_t)kv_dim * 4);
    for (int s = 0; s < n_slots; s++) {
        for (int kv = 0; kv < 2; kv++) {
            fill(tmp, kv_dim, 1.0f);
            void *dst = kv ? V : K;
            for (int e = 0; e < kv_dim; e++) {
                size_t i = (size_t)s * kv_dim + e;
                if (kv_type == QT_F16)
                    ((uint16_t *)dst)[i] = f32_to_fp16(tmp[e]);
                else
                    ((float *)dst)[i] = tmp[e];
            }
        }
    }
    /* shuffled block tables */
    int32_t bt[3 * 6];
    for (int i = 0; i < n_blocks; i++) bt[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = rng_int(i + 1);
        int32_t t = bt[i];
        bt[i] = bt[j];
        bt[j] = t;
    }
    bk_kv_layer kv = {K, V, kv_dim, kv_type};
    enum { NT = 9 };
    int32_t pos[NT], seq_row[NT];
    for (int i = 0; i < NT; i++) {
        seq_row[i] = i % n_seq;
        pos[i] = rng_int(max_blocks * bs);
    }
    float *q = malloc((size_t)NT * n_head * d * 4), *all = malloc((size_t)NT * n_head * d * 4);
    float *one = malloc((size_t)n_head * d * 4);
    fill(q, (size_t)NT * n_head * d, 1.0f);
    for (int window = 0; window <= 40; window += 40) {
        bk_attn_batch ab = {NT, pos, seq_row, bt, max_blocks, bs, 0};
        bk->ops->attention(bk, all, q, &kv, &ab, n_head, n_head_kv, d, window, 0.125f);
        int bad = 0;
        for (int i = 0; i < NT; i++) {
            bk_attn_batch a1 = {1, pos + i, seq_row + i, bt, max_blocks, bs, pos[i] + 1};
            bk->ops->attention(bk, one, q + (size_t)i * n_head * d, &kv, &a1, n_head, n_head_kv, d,
                               window, 0.125f);
            if (first_diff(one, all + (size_t)i * n_head * d, (size_t)n_head * d) >= 0) bad++;
        }
        CHECK(bk->ops->sync(bk) == 0, "sync");
        CHECK(bad == 0, "attention (kv %s, %s, window %d): %d of %d tokens differ alone",
              kv_type == QT_F16 ? "f16" : "f32", scalar ? "reference" : "simd", window, bad, NT);
    }
    free(K), free(V), free(tmp), free(q), free(all), free(one);
    bk->ops->destroy(bk);
}

/* ---- row-wise ops ---- */

static void test_rowwise(int scalar) {
    backend *bk = new_backend(2, scalar, 1);
    CHECK(bk != NULL, "bk_cpu_new");
    if (!bk) return;
    const int rows = 9, dim = 403; /* not a multiple of 8: vector tails */
    const int n_heads = 4, hd = 64;
    float *x = malloc((size_t)rows * dim * 4), *y = malloc((size_t)rows * dim * 4);
    float *w = malloc((size_t)dim * 4), *all = malloc((size_t)rows * dim * 4);
    float *one = malloc((size_t)dim * 4);
    fill(x, (size_t)rows * dim, 2.0f);
    fill(y, (size_t)rows * dim, 1.0f);
    fill(w, dim, 1.0f);
    int bad_norm = 0, bad_glu[2] = {0, 0}, bad_rope = 0;
    bk->ops->rmsnorm(bk, all, x, w, rows, dim, 1e-6f);
    for (int r = 0; r < rows; r++) {
        bk->ops->rmsnorm(bk, one, x + (size_t)r * dim, w, 1, dim, 1e-6f);
        if (first_diff(one, all + (size_t)r * dim, dim) >= 0) bad_norm++;
    }
    for (int act = 0; act < 2; act++) {
        bk->ops->glu(bk, all, x, y, (int64_t)rows * dim, (bk_act)act);
        for (int r = 0; r < rows; r++) {
            bk->ops->glu(bk, one, x + (size_t)r * dim, y + (size_t)r * dim, dim, (bk_act)act);
            if (first_diff(one, all + (size_t)r * dim, dim) >= 0) bad_glu[act]++;
        }
    }
    int32_t pos[9];
    for (int r = 0; r < rows; r++) pos[r] = rng_int(4096);
    float *rq = malloc((size_t)rows * n_heads * hd * 4), *r1 = malloc((size_t)n_heads * hd * 4);
    fill(rq, (size_t)rows * n_heads * hd, 1.0f);
    float *rall = malloc((size_t)rows * n_heads * hd * 4);
    memcpy(rall, rq, (size_t)rows * n_heads * hd * 4);
    bk->ops->rope(bk, rall, pos, rows, n_heads, hd, hd, 10000.0f, 1.0f, 1);
    for (int r = 0; r < rows; r++) {
        memcpy(r1, rq + (size_t)r * n_heads * hd, (size_t)n_heads * hd * 4);
        bk->ops->rope(bk, r1, pos + r, 1, n_heads, hd, hd, 10000.0f, 1.0f, 1);
        if (first_diff(r1, rall + (size_t)r * n_heads * hd, (size_t)n_heads * hd) >= 0) bad_rope++;
    }
    CHECK(bk->ops->sync(bk) == 0, "sync");
    const char *p = scalar ? "reference" : "simd";
    CHECK(bad_norm == 0, "rmsnorm (%s): %d rows differ alone", p, bad_norm);
    CHECK(bad_glu[0] == 0 && bad_glu[1] == 0, "glu (%s): %d / %d rows differ alone", p, bad_glu[0],
          bad_glu[1]);
    CHECK(bad_rope == 0, "rope (%s): %d rows differ alone", p, bad_rope);
    free(x), free(y), free(w), free(all), free(one), free(rq), free(r1), free(rall);
    bk->ops->destroy(bk);
}

/* ---- real models ---- */

enum { NSEQ = 4, MAXP = 24, STEPS = 3 };

/* Prompts of mixed lengths: all in one batch (context a, logits for every
 * token), each token alone (context b); then STEPS decode steps, all
 * sequences together in a, in changing groups in b. */
/* FNV-1a over the bytes of n floats, continuing from h */
static uint64_t hash_floats(uint64_t h, const float *x, size_t n) {
    const unsigned char *b = (const unsigned char *)x;
    for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Returns a hash of every logit of context a (the all-in-one-batch run), so
 * runs with other thread counts on the same random tokens can be compared. */
static uint64_t run_model(const char *path, int threads) {
    uint64_t hash = 14695981039346656037ull;
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = threads;
    mp.n_gpu_layers = 0;
    mp.deterministic = true;
    beast_model *m = beast_model_load(path, &mp);
    CHECK(m != NULL, "load %s: %s", path, beast_error());
    if (!m) return 0;
    const int nv = beast_n_vocab(m);
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_seq = NSEQ;
    beast_ctx *a = beast_ctx_new(m, &cp), *b = beast_ctx_new(m, &cp);
    beast_batch *ba = beast_batch_new(NSEQ * MAXP), *bb = beast_batch_new(NSEQ);
    float *la = malloc((size_t)NSEQ * MAXP * nv * 4);
    CHECK(a && b && ba && bb && la, "contexts: %s", beast_error());
    if (!a || !b || !ba || !bb || !la) goto out;
    int len[NSEQ], total = 0;
    int32_t toks[NSEQ][MAXP];
    const int lens[NSEQ] = {1 + rng_int(3), 5 + rng_int(6), 12 + rng_int(MAXP - 12),
                            2 + rng_int(6)};
    for (int s = 0; s < NSEQ; s++) {
        len[s] = lens[s];
        total += len[s];
        for (int i = 0; i < len[s]; i++) toks[s][i] = 1 + rng_int(nv - 1);
    }
    /* the prompts interleaved in one batch */
    beast_batch_clear(ba);
    int idx[NSEQ][MAXP], at[NSEQ] = {0};
    for (int added = 0; added < total;) {
        int s = rng_int(NSEQ);
        if (at[s] == len[s]) continue;
        idx[s][at[s]] = ba->n;
        beast_batch_add(ba, toks[s][at[s]], s, true);
        at[s]++;
        added++;
    }
    CHECK(beast_decode(a, ba) == 0, "decode: %s", beast_error());
    for (int i = 0; i < total; i++) memcpy(la + (size_t)i * nv, beast_logits(a, i), (size_t)nv * 4);
    hash = hash_floats(hash, la, (size_t)total * nv);
    int bad = 0, checked = 0;
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < len[s]; i++) {
            beast_batch_clear(bb);
            beast_batch_add(bb, toks[s][i], s, true);
            if (beast_decode(b, bb)) {
                CHECK(0, "decode: %s", beast_error());
                goto out;
            }
            checked++;
            if (first_diff(beast_logits(b, 0), la + (size_t)idx[s][i] * nv, nv) >= 0) bad++;
        }
    CHECK(bad == 0, "%s, %d threads: %d of %d prompt tokens (lengths %d %d %d %d) differ alone",
          path, threads, bad, checked, len[0], len[1], len[2], len[3]);
    /* decode steps: the greedy token of each sequence; a: all together,
     * b: groups that change every step */
    int32_t next[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        const float *l = la + (size_t)idx[s][len[s] - 1] * nv;
        int best = 0;
        for (int v = 1; v < nv; v++)
            if (l[v] > l[best]) best = v;
        next[s] = best;
    }
    bad = 0;
    for (int step = 0; step < STEPS; step++) {
        beast_batch_clear(ba);
        for (int s = NSEQ - 1; s >= 0; s--) beast_batch_add(ba, next[s], s, true);
        CHECK(beast_decode(a, ba) == 0, "decode: %s", beast_error());
        for (int i = 0; i < NSEQ; i++)
            memcpy(la + (size_t)(NSEQ - 1 - i) * nv, beast_logits(a, i), (size_t)nv * 4);
        hash = hash_floats(hash, la, (size_t)NSEQ * nv);
        /* b: sequences [0, cut) together, then the rest together */
        int cut = 1 + step % (NSEQ - 1);
        for (int g = 0; g < 2; g++) {
            beast_batch_clear(bb);
            for (int s = g ? cut : 0; s < (g ? NSEQ : cut); s++)
                beast_batch_add(bb, next[s], s, true);
            if (beast_decode(b, bb)) {
                CHECK(0, "decode: %s", beast_error());
                goto out;
            }
            for (int i = 0; i < bb->n; i++)
                if (first_diff(beast_logits(b, i), la + (size_t)bb->seq[i] * nv, nv) >= 0) bad++;
        }
        for (int s = 0; s < NSEQ; s++) {
            const float *l = la + (size_t)s * nv;
            int best = 0;
            for (int v = 1; v < nv; v++)
                if (l[v] > l[best]) best = v;
            next[s] = best;
        }
    }
    CHECK(bad == 0, "%s, %d threads: %d of %d decode results differ between batch compositions",
          path, threads, bad, STEPS * NSEQ);
out:
    free(la);
    beast_batch_free(ba);
    beast_batch_free(bb);
    beast_ctx_free(a);
    beast_ctx_free(b);
    beast_model_free(m);
    return hash;
}

int main(void) {
    check_seed();
    test_matmul();
    for (int scalar = 0; scalar < 2; scalar++) {
        test_attention(QT_F16, scalar);
        test_attention(QT_F32, scalar);
        test_rowwise(scalar);
    }
    const char *dir = getenv("BEAST_MODELS_DIR");
    const char *files[] = {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"};
    int found = 0;
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir ? dir : "../models", files[i]);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        found++;
        uint64_t rng = check_rng, h2 = run_model(path, 2);
        if (i == 0) { /* the same random tokens on 1 thread: the same logits */
            uint64_t after = check_rng;
            check_rng = rng;
            uint64_t h1 = run_model(path, 1);
            CHECK(h1 == h2 && h1 != 0, "%s: logits on 1 thread differ from 2 threads", path);
            check_rng = after;
        }
    }
    int rc = check_done();
    if (!found && rc == 0) {
        printf("no model in %s: model checks skipped\n", dir ? dir : "../models");
        return 77;
    }
    return rc;
}
