/* test_engine.c: the engine's batch semantics on generated models.
 *
 * For tiny llama and gemma3 models (the latter with a sliding window shorter
 * than the test sequences):
 *  - a prompt decoded as one batch, token by token, and in odd-sized
 *    micro-batches gives the same logits at every position;
 *  - two sequences interleaved in one batch give the logits each gets alone;
 *  - truncating a sequence and decoding again reproduces the logits;
 *  - bad batches (token or sequence out of range, context overflow) fail
 *    with a message and leave the context unchanged;
 *  - beast_candidates keeps its promise on the row beast_logits gives, for
 *    decode steps (logits left in backend memory, read lazily, also across
 *    micro-batches) and for larger batches (rows on the host).
 *  - beast_generate_greedy gives the tokens of the loop it replaces (decode,
 *    host argmax, decode), run ahead and step by step, stops where asked
 *    with the cache as the loop would leave it, and keeps to the context.
 * And the CPU backend's topk and argmax ops on random rows (ties, -inf,
 * NaN, +inf, -0, short rows), checked the same way.
 * Run twice: on the exact CPU path (BEAST_CPU_SCALAR=1, f32 activations)
 * the invariance is to 1e-4; on the fast path the batch and single-token
 * kernels sum in different orders, and with 8-bit activations a last-bit
 * difference can flip one rounding in the next layer's quantization, which
 * then propagates through the KV cache: there the bound is 5% of the logit
 * range (tiny random models are chaotic). */
#include "backend/backend.h"
#include "beast.h"
#include "model/gen.h"
#include "util/util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* max |a-b| / max |b| over one logit vector */
static double diff(const float *a, const float *b, int n) {
    double md = 0, mb = 1e-30;
    for (int i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return md / mb;
}

static double TOL = 1e-4;

static float clean(float x) {
    return x != x ? -INFINITY : x == INFINITY ? FLT_MAX : x;
}

/* A top list of a row checked without sorting the row: entry j is (ids[j],
 * vals[j]), vals[j] the clean logit; the n entries come in strict order
 * (higher logit, lower id on ties), and every other token comes after the
 * last (lower logit, or equal with a higher id). lse (unless NULL) against
 * the row's log-sum-exp in double. */
static int check_top(const float *row, int nv, const int32_t *ids, const float *vals, int n,
                     const float *lse, const char *what) {
    int ok = 1;
    char *in = calloc((size_t)nv, 1);
    for (int j = 0; j < n && ok; j++) {
        ok &= ids[j] >= 0 && ids[j] < nv && !in[ids[j]];
        if (!ok) break;
        in[ids[j]] = 1;
        ok &= vals[j] == clean(row[ids[j]]);
        if (j > 0) ok &= vals[j - 1] > vals[j] || (vals[j - 1] == vals[j] && ids[j - 1] < ids[j]);
    }
    CHECK(ok, "%s: the %d listed entries are not the row's, in order", what, n);
    for (int i = 0; i < nv && ok && n > 0; i++) {
        float l = clean(row[i]);
        if (!in[i] && !(l < vals[n - 1] || (l == vals[n - 1] && i > ids[n - 1]))) {
            CHECK(0, "%s: token %d (%g) beats the last of %d listed (%d, %g)", what, i, (double)l,
                  n, ids[n - 1], (double)vals[n - 1]);
            ok = 0;
        }
    }
    free(in);
    if (lse) {
        double mx = -INFINITY, z = 0;
        for (int i = 0; i < nv; i++) mx = fmax(mx, clean(row[i]));
        for (int i = 0; i < nv && mx != -INFINITY; i++) z += exp((double)clean(row[i]) - mx);
        double want = mx == -INFINITY ? -INFINITY : mx + log(z);
        int good =
            want == -INFINITY ? *lse == -INFINITY : fabs(*lse - want) <= 1e-5 * fmax(1, fabs(want));
        CHECK(good, "%s: lse %.9g want %.9g", what, (double)*lse, want);
        ok &= good;
    }
    return ok;
}

/* beast_candidates of entry i against its row: BEAST_N_CAND or all the
 * finite logits. Asks for the candidates before the row when `first`. */
static void check_cands(beast_ctx *c, int i, int nv, int with_lse, int first, const char *what) {
    const beast_cand *cd = NULL;
    float lse = 0;
    int n = first ? beast_candidates(c, i, &cd, with_lse ? &lse : NULL) : 0;
    const float *row = beast_logits(c, i);
    if (!first) n = beast_candidates(c, i, &cd, with_lse ? &lse : NULL);
    CHECK(row && n >= 0 && n <= BEAST_N_CAND, "%s: entry %d: logits %p, %d candidates (%s)", what,
          i, (const void *)row, n, beast_error());
    if (!row || n < 0) return;
    int finite = 0;
    for (int t = 0; t < nv; t++) finite += clean(row[t]) != -INFINITY;
    CHECK(n == MIN(BEAST_N_CAND, finite), "%s: %d candidates of %d finite logits", what, n, finite);
    int32_t ids[BEAST_N_CAND];
    float vals[BEAST_N_CAND];
    for (int j = 0; j < n; j++) ids[j] = cd[j].id, vals[j] = cd[j].logit;
    check_top(row, nv, ids, vals, n, with_lse ? &lse : NULL, what);
}

/* The CPU backend's topk op on random rows. */
static void test_topk_op(void) {
    backend *bk = bk_cpu_new(2);
    CHECK(bk != NULL, "cpu backend: %s", beast_error());
    if (!bk) return;
    int sizes[] = {1, 3, 63, 64, 65, 1000, 49152 + 7};
    for (int t = 0; t < 24; t++) {
        int nv = sizes[t % 7], rows = 1 + rng_int(5), shape = rng_int(4);
        float *l = bk->ops->alloc(bk, (size_t)rows * nv * sizeof(float));
        int32_t *ids = bk->ops->alloc(bk, (size_t)rows * BK_TOPK * sizeof(int32_t));
        float *vals = bk->ops->alloc(bk, (size_t)rows * BK_TOPK * sizeof(float));
        float *lse = bk->ops->alloc(bk, (size_t)rows * sizeof(float));
        for (size_t i = 0; i < (size_t)rows * nv; i++) {
            double g = rng_normal();
            l[i] = shape == 0   ? (float)(3 * g)
                   : shape == 1 ? (float)floor(2 * g) * 0.5f /* many ties */
                   : shape == 2 ? 0.0f                       /* all equal (and -0 below) */
                                : (float)(g * 1e-3);
            int r = rng_int(200);
            if (r == 0) l[i] = -INFINITY;
            if (r == 1) l[i] = NAN;
            if (r == 2 && rng_int(10) == 0) l[i] = INFINITY;
            if (r == 3) l[i] = -0.0f;
        }
        if (rows > 1) /* one row all -inf */
            for (int i = 0; i < nv; i++) l[(size_t)nv + i] = -INFINITY;
        bk->ops->topk(bk, ids, vals, lse, l, rows, nv);
        CHECK(bk->ops->sync(bk) == 0, "topk sync");
        char what[64];
        for (int r = 0; r < rows; r++) {
            snprintf(what, sizeof what, "topk op, %d logits, shape %d, row %d", nv, shape, r);
            const int32_t *ri = ids + (size_t)r * BK_TOPK;
            const float *rv = vals + (size_t)r * BK_TOPK;
            int k = MIN(BK_TOPK, nv), tail = 1;
            check_top(l + (size_t)r * nv, nv, ri, rv, k, lse + r, what);
            for (int j = k; j < BK_TOPK; j++) tail &= ri[j] == -1 && rv[j] == -INFINITY;
            CHECK(tail, "%s: entries past n_vocab", what);
        }
        bk->ops->free(bk, l);
        bk->ops->free(bk, ids);
        bk->ops->free(bk, vals);
        bk->ops->free(bk, lse);
    }
    bk->ops->destroy(bk);
}

/* The argmax op (the greedy pick) on random rows like topk's, against its
 * definition and against topk's first entry. */
static void test_argmax_op(void) {
    backend *bk = bk_cpu_new(2);
    CHECK(bk != NULL, "cpu backend: %s", beast_error());
    if (!bk) return;
    for (int t = 0; t < 40; t++) {
        int nv = 1 + rng_int(t % 2 ? 70 : 5000), rows = 1 + rng_int(4), shape = rng_int(3);
        float *l = bk->ops->alloc(bk, (size_t)rows * nv * sizeof(float));
        int32_t *ids = bk->ops->alloc(bk, (size_t)rows * sizeof(int32_t));
        for (size_t i = 0; i < (size_t)rows * nv; i++) {
            double g = rng_normal();
            l[i] = shape == 0 ? (float)(3 * g) : shape == 1 ? (float)floor(g) : 0.0f;
            int r = rng_int(50);
            if (r == 0) l[i] = -INFINITY;
            if (r == 1) l[i] = NAN;
            if (r == 2 && rng_int(20) == 0) l[i] = INFINITY;
            if (r == 3) l[i] = -0.0f;
        }
        if (rows > 1) /* one row all -inf or NaN: id 0 */
            for (int i = 0; i < nv; i++) l[(size_t)nv + i] = i % 3 ? -INFINITY : NAN;
        bk->ops->argmax(bk, ids, l, rows, nv);
        CHECK(bk->ops->sync(bk) == 0, "argmax sync");
        for (int r = 0; r < rows; r++) {
            const float *row = l + (size_t)r * nv;
            int best = 0; /* the definition, written out */
            for (int i = 1; i < nv; i++) {
                float a = isnan(row[i]) ? -INFINITY : row[i];
                float b = isnan(row[best]) ? -INFINITY : row[best];
                if (a > b) best = i;
            }
            int32_t tid[BK_TOPK];
            float tv[BK_TOPK];
            bk_topk_row(row, nv, tid, tv, NULL);
            CHECK(ids[r] == best && ids[r] == tid[0] && bk_argmax_row(row, nv) == best,
                  "argmax op, %d logits, shape %d, row %d: %d, definition %d, topk %d", nv, shape,
                  r, ids[r], best, tid[0]);
        }
        bk->ops->free(bk, l);
        bk->ops->free(bk, ids);
    }
    bk->ops->destroy(bk);
}

/* beast_generate_greedy against the loop it replaces (decode, argmax of the
 * logits on the host, decode that), on sequence 1 of c from empty. */

static void check_generate(beast_ctx *c, beast_batch *b, int nv, const int32_t *toks,
                           const char *preset) {
    enum { K = 24 };
    int32_t want[K];
    float *ref = malloc((size_t)K * nv * sizeof(float));
    /* the reference: prompt toks[0..3], then K steps of the host's argmax */
    beast_seq_clear(c, 1);
    beast_batch_clear(b);
    for (int i = 0; i < 3; i++) beast_batch_add(b, toks[i], 1, false);
    CHECK(beast_decode(c, b) == 0, "generate prompt: %s", beast_error());
    int32_t t = toks[3];
    for (int k = 0; k < K; k++) {
        beast_batch_clear(b);
        beast_batch_add(b, t, 1, true);
        CHECK(beast_decode(c, b) == 0, "reference step: %s", beast_error());
        memcpy(ref + (size_t)k * nv, beast_logits(c, 0), (size_t)nv * 4);
        t = want[k] = bk_argmax_row(ref + (size_t)k * nv, nv);
    }
    for (int ahead = 1; ahead >= 0; ahead--) {
        setenv("BEAST_GEN_AHEAD", ahead ? "1" : "0", 1); /* the CPU would not run ahead */
        /* all K tokens */
        beast_seq_truncate(c, 1, 3);
        gen_rec r = {{0}, 0, 0};
        int got = beast_generate_greedy(c, 1, toks[3], K, rec_token, &r);
        CHECK(got == K && r.n == K && !memcmp(r.tok, want, sizeof want),
              "%s: generate (ahead %d) gives the reference tokens (%d of %d)", preset, ahead, got,
              K);
        CHECK(beast_seq_len(c, 1) == 3 + K, "%s: generate leaves %d positions (want %d)", preset,
              beast_seq_len(c, 1), 3 + K);
        CHECK(beast_logits(c, 0) == NULL, "no logits after generate");
        /* stopped at token 5: the step queued past it is undone, and the
         * cache continues exactly where the reference was */
        beast_seq_truncate(c, 1, 3);
        gen_rec r2 = {{0}, 0, 5};
        got = beast_generate_greedy(c, 1, toks[3], K, rec_token, &r2);
        CHECK(got == 5 && !memcmp(r2.tok, want, 5 * sizeof *want), "%s: stopped generate: %d",
              preset, got);
        CHECK(beast_seq_len(c, 1) == 3 + 5, "%s: stopped at 5, %d positions (want 8)", preset,
              beast_seq_len(c, 1));
        beast_batch_clear(b);
        beast_batch_add(b, want[4], 1, true);
        CHECK(beast_decode(c, b) == 0, "decode after generate: %s", beast_error());
        CHECK(diff(beast_logits(c, 0), ref + (size_t)5 * nv, nv) < TOL,
              "%s: logits after a stopped generate (ahead %d): %g", preset, ahead,
              diff(beast_logits(c, 0), ref + (size_t)5 * nv, nv));
        /* the context bounds it: 96 positions, 90 held, 6 steps fit */
        beast_seq_truncate(c, 1, 3);
        beast_batch_clear(b);
        for (int i = 3; i < 90; i++) beast_batch_add(b, toks[i % 70], 1, false);
        CHECK(beast_decode(c, b) == 0, "fill: %s", beast_error());
        gen_rec r3 = {{0}, 0, 0};
        got = beast_generate_greedy(c, 1, toks[3], 1000, rec_token, &r3);
        CHECK(got == 6 && beast_seq_len(c, 1) == 96, "%s: generate up to the context: %d, %d",
              preset, got, beast_seq_len(c, 1));
        CHECK(beast_generate_greedy(c, 1, toks[3], 5, rec_token, &r3) == 0,
              "a full sequence generates nothing");
        unsetenv("BEAST_GEN_AHEAD");
    }
    gen_rec r4 = {{0}, 0, 0};
    CHECK(beast_generate_greedy(c, 1, nv, 4, rec_token, &r4) == -1 &&
              strstr(beast_error(), "out of range") && r4.n == 0,
          "generate with a bad token: %s", beast_error());
    CHECK(beast_generate_greedy(c, 7, 3, 4, rec_token, &r4) == -1 && r4.n == 0,
          "generate on a bad sequence");
    beast_seq_clear(c, 1);
    free(ref);
}

static void run_model(const char *preset, int seed) {
    char path[] = "/tmp/beast_test_engine_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    gen_params gp = {0};
    gp.shape = gen_shape_preset(preset);
    gp.wtype = GEN_MIX_Q4_K_M;
    gp.embd_type = -1;
    gp.seed = (uint64_t)seed;
    gp.n_threads = 2;
    if (!gp.shape || gen_write(path, &gp)) {
        CHECK(0, "generate %s: %s", preset, beast_error());
        unlink(path);
        return;
    }
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 2;
    mp.n_gpu_layers = 0;
    beast_model *m = beast_model_load(path, &mp);
    unlink(path);
    if (!m) {
        CHECK(0, "load %s: %s", preset, beast_error());
        return;
    }
    const int nv = beast_n_vocab(m), N = 70; /* longer than tiny-gemma3's window */
    int32_t toks[70], toks2[70];
    srand((unsigned)seed);
    for (int i = 0; i < N; i++) {
        toks[i] = rand() % 256 + 3; /* byte-range tokens of the synthetic vocab */
        toks2[i] = rand() % 256 + 3;
    }
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 96;
    cp.n_seq = 2;
    cp.n_batch = 512;
    beast_ctx *c = beast_ctx_new(m, &cp);
    cp.n_batch = 7; /* odd micro-batches */
    beast_ctx *c7 = beast_ctx_new(m, &cp);
    beast_batch *b = beast_batch_new(8);
    CHECK(c && c7 && b, "ctx: %s", beast_error());
    if (!c || !c7 || !b) goto out;
    float *ref = malloc((size_t)N * nv * sizeof(float));
    float *ref2 = malloc((size_t)N * nv * sizeof(float));

    /* 1. token by token: the reference for everything else */
    for (int i = 0; i < N; i++) {
        beast_batch_clear(b);
        beast_batch_add(b, toks[i], 0, true);
        CHECK(beast_decode(c, b) == 0, "decode: %s", beast_error());
        if (i % 10 < 2) check_cands(c, 0, nv, i % 4 == 0, i % 2, "decode step");
        memcpy(ref + (size_t)i * nv, beast_logits(c, 0), (size_t)nv * 4);
    }
    for (int i = 0; i < N; i++) {
        beast_batch_clear(b);
        beast_batch_add(b, toks2[i], 1, true);
        CHECK(beast_decode(c, b) == 0, "decode: %s", beast_error());
        memcpy(ref2 + (size_t)i * nv, beast_logits(c, 0), (size_t)nv * 4);
    }
    CHECK(beast_seq_len(c, 0) == N && beast_seq_len(c, 1) == N, "lengths");

    /* 2. whole prompt in one batch (all logits), and in micro-batches of 7 */
    beast_ctx *cs[2] = {c, c7};
    for (int k = 0; k < 2; k++) {
        beast_seq_clear(cs[k], 0);
        beast_batch_clear(b);
        for (int i = 0; i < N; i++) beast_batch_add(b, toks[i], 0, true);
        CHECK(beast_decode(cs[k], b) == 0, "batch decode: %s", beast_error());
        double worst = 0;
        for (int i = 0; i < N; i++)
            worst = fmax(worst, diff(beast_logits(cs[k], i), ref + (size_t)i * nv, nv));
        CHECK(worst < TOL, "%s: one batch (n_batch %s) vs token by token: %g", preset,
              k ? "7" : "512", worst);
        for (int i = 0; i < N; i += 7) check_cands(cs[k], i, nv, i % 2, i % 3 == 0, "prompt rows");
    }

    /* 2b. 20 rows of logits over three micro-batches of 7: left in backend
     * memory (20 <= 32 rows), each micro-batch's at its own offset */
    beast_seq_clear(c7, 0);
    beast_batch_clear(b);
    for (int i = 0; i < 20; i++) beast_batch_add(b, toks[i], 0, true);
    CHECK(beast_decode(c7, b) == 0, "20 rows: %s", beast_error());
    for (int i = 0; i < 20; i++) { /* all candidates first, without lse, then with it */
        const beast_cand *cd;
        CHECK(beast_candidates(c7, i, &cd, NULL) >= 0, "candidates: %s", beast_error());
    }
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        check_cands(c7, i, nv, 1, 1, "20 rows");
        worst = fmax(worst, diff(beast_logits(c7, i), ref + (size_t)i * nv, nv));
    }
    CHECK(worst < TOL, "%s: 20 rows over micro-batches vs token by token: %g", preset, worst);
    {
        const beast_cand *cd;
        CHECK(beast_candidates(c7, 20, &cd, NULL) == -1 && beast_logits(c7, 20) == NULL,
              "an entry past the batch has no candidates");
    }

    /* 3. two sequences interleaved in one batch, only some logits */
    beast_seq_clear(c, 0);
    beast_seq_clear(c, 1);
    beast_batch_clear(b);
    for (int i = 0; i < N; i++) {
        beast_batch_add(b, toks[i], 0, i % 3 == 0);
        beast_batch_add(b, toks2[i], 1, i % 5 == 0);
    }
    CHECK(beast_decode(c, b) == 0, "interleaved: %s", beast_error());
    worst = 0;
    check_cands(c, 0, nv, 1, 1, "interleaved");
    for (int i = 0; i < N; i++) {
        const float *l0 = beast_logits(c, 2 * i), *l1 = beast_logits(c, 2 * i + 1);
        CHECK((l0 != NULL) == (i % 3 == 0) && (l1 != NULL) == (i % 5 == 0), "logit rows");
        if (l0) worst = fmax(worst, diff(l0, ref + (size_t)i * nv, nv));
        if (l1) worst = fmax(worst, diff(l1, ref2 + (size_t)i * nv, nv));
    }
    CHECK(worst < TOL, "%s: interleaved sequences vs alone: %g", preset, worst);

    /* 4. truncate and decode again */
    CHECK(beast_seq_truncate(c, 0, 40) == 0 && beast_seq_len(c, 0) == 40, "truncate");
    beast_batch_clear(b);
    for (int i = 40; i < N; i++) beast_batch_add(b, toks[i], 0, true);
    CHECK(beast_decode(c, b) == 0, "re-decode: %s", beast_error());
    worst = 0;
    for (int i = 40; i < N; i++)
        worst = fmax(worst, diff(beast_logits(c, i - 40), ref + (size_t)i * nv, nv));
    CHECK(worst < TOL, "%s: after truncation: %g", preset, worst);

    /* 5. bad batches leave everything as it was */
    int len0 = beast_seq_len(c, 0), len1 = beast_seq_len(c, 1);
    beast_batch_clear(b);
    beast_batch_add(b, 5, 0, true);
    beast_batch_add(b, nv, 1, true); /* token out of range */
    CHECK(beast_decode(c, b) == -1 && strstr(beast_error(), "out of range"), "bad token: %s",
          beast_error());
    beast_batch_clear(b);
    beast_batch_add(b, 5, 2, true); /* sequence out of range */
    CHECK(beast_decode(c, b) == -1 && strstr(beast_error(), "sequence"), "bad seq: %s",
          beast_error());
    beast_batch_clear(b);
    beast_batch_add(b, 5, 1, true);
    for (int i = 0; i < 30; i++) beast_batch_add(b, 5, 0, true); /* 70 + 30 > 96 */
    CHECK(beast_decode(c, b) == -1 && strstr(beast_error(), "context"), "overflow: %s",
          beast_error());
    CHECK(beast_seq_len(c, 0) == len0 && beast_seq_len(c, 1) == len1, "unchanged after errors");
    /* and the context still works */
    beast_batch_clear(b);
    beast_batch_add(b, toks[N - 1], 0, true);
    CHECK(beast_decode(c, b) == 0, "decode after errors: %s", beast_error());

    /* 6. greedy generation, one step ahead */
    check_generate(c, b, nv, toks, preset);
    free(ref);
    free(ref2);
out:
    beast_batch_free(b);
    beast_ctx_free(c);
    beast_ctx_free(c7);
    beast_model_free(m);
}

int main(void) {
    int seed = (int)check_seed();
    test_topk_op();
    test_argmax_op();
    for (int exact = 1; exact >= 0; exact--) {
        if (exact)
            setenv("BEAST_CPU_SCALAR", "1", 1);
        else
            unsetenv("BEAST_CPU_SCALAR");
        TOL = exact ? 1e-4 : 0.05;
        printf("%s path, tolerance %g\n", exact ? "exact" : "fast", TOL);
        run_model("tiny-llama", seed);
        run_model("tiny-gemma3", seed);
    }
    return check_done();
}
