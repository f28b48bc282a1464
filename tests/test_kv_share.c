/* test_kv_share.c: prefix sharing of KV blocks (kv_share, beast_seq_share).
 *
 *  1. bookkeeping: only whole blocks are shared, reference counts rise and
 *     fall, a truncation inside a shared block rounds down to its start,
 *     new positions never land in a shared block, bad calls fail cleanly,
 *     and every count is back to zero (all blocks free) at the end;
 *  2. results: on a generated tiny llama model, on the exact CPU path
 *     (BEAST_CPU_SCALAR=1), a sequence that starts from another's shared
 *     blocks gives the same logits as one computed from scratch, while the
 *     source keeps growing and after truncations. */
#include "backend/backend.h"
#include "beast.h"
#include "engine/engine.h"
#include "kv/kv.h"
#include "model/gen.h"
#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static int refs_zero(const kv_cache *kv) {
    for (int i = 0; i < kv->n_blocks; i++)
        if (kv->refcnt[i]) return 0;
    return kv_n_free(kv) == kv->n_blocks;
}

static void bookkeeping(void) {
    backend *bk = bk_cpu_new(1);
    kv_cache *kv = kv_new(&bk, 1, 8, QT_F16, 4, 128, 256, 16); /* 16 blocks */
    CHECK(kv, "create");
    if (!kv) return;
    CHECK(kv_reserve(kv, 0, 40) == 0 && kv_n_free(kv) == 13, "seq 0: 40 positions, 3 blocks");
    /* only the two full blocks are shared */
    CHECK(kv_share(kv, 1, 0, 100) == 32, "share min(100, 40) -> 32");
    CHECK(kv->seqs[1].len == 32 && kv->seqs[1].n_blocks == 2, "seq 1 holds 2 blocks");
    CHECK(kv->refcnt[kv->seqs[0].blocks[0]] == 2 && kv->refcnt[kv->seqs[0].blocks[1]] == 2 &&
              kv->refcnt[kv->seqs[0].blocks[2]] == 1,
          "refcounts 2, 2, 1");
    CHECK(kv_n_free(kv) == 13, "sharing allocates nothing");
    CHECK(kv_share(kv, 2, 0, 20) == 16, "share 20 -> one block");
    CHECK(kv_share(kv, 3, 0, 15) == 0 && kv->seqs[3].len == 0, "less than a block: nothing");
    /* errors */
    CHECK(kv_share(kv, 1, 0, 16) == -1, "dst not empty");
    CHECK(kv_share(kv, 0, 0, 16) == -1, "dst == src");
    CHECK(kv_share(kv, 3, 9, 16) == -1 && kv_share(kv, -1, 0, 16) == -1, "bad ids");
    CHECK(kv_share(kv, 3, 0, -4) == -1, "negative length");
    /* growth: new positions go to fresh blocks, never shared ones */
    CHECK(kv_reserve(kv, 1, 5) == 0, "seq 1 grows");
    int32_t s1 = kv_slot(kv, 1, 32), s0 = kv_slot(kv, 0, 32);
    CHECK(s1 / 16 != s0 / 16 && kv->refcnt[s1 / 16] == 1, "seq 1's position 32 in its own block");
    CHECK(kv_reserve(kv, 0, 10) == 0, "seq 0 grows past its partial block");
    for (int p = 0; p < 32; p++) CHECK(kv_slot(kv, 0, p) == kv_slot(kv, 1, p), "shared slot %d", p);
    /* truncation inside a shared block rounds down; inside an own block not */
    CHECK(kv_truncate(kv, 1, 20) == 16 && kv->seqs[1].len == 16 && kv->seqs[1].n_blocks == 1,
          "truncate into shared block 1 -> 16");
    CHECK(kv->refcnt[kv->seqs[0].blocks[1]] == 1, "block 1 back to one user");
    CHECK(kv_truncate(kv, 0, 45) == 45, "own block: exact");
    CHECK(kv_truncate(kv, 0, 20) == 20 && kv->seqs[0].len == 20,
          "block 1 no longer shared: exact truncation");
    CHECK(kv_truncate(kv, 0, 8) == 0, "block 0 shared by 1 and 2: rounds to 0");
    CHECK(kv_truncate(kv, 0, 50) == 0, "truncating above the length keeps it");
    kv_truncate(kv, 1, 0);
    kv_truncate(kv, 2, 0);
    CHECK(refs_zero(kv), "all reference counts zero, all blocks free");
    kv_free(kv);
    bk->ops->destroy(bk);
}

static double maxdiff(const float *a, const float *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Decode toks[0..n) into seq as one batch with logits for the last k;
 * copy those logits into out (k rows). */
static int run(beast_ctx *c, beast_batch *b, int seq, const int32_t *toks, int n, int k, float *out,
               int nv) {
    beast_batch_clear(b);
    for (int i = 0; i < n; i++) beast_batch_add(b, toks[i], seq, i >= n - k);
    if (beast_decode(c, b)) return -1;
    for (int i = 0; i < k; i++)
        memcpy(out + (size_t)i * nv, beast_logits(c, n - k + i), (size_t)nv * sizeof *out);
    return 0;
}

static void results(void) {
    setenv("BEAST_CPU_SCALAR", "1", 1);
    char path[] = "/tmp/beast_test_kv_share_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    gen_params gp = {0};
    gp.shape = gen_shape_preset("tiny-llama");
    gp.wtype = GEN_MIX_Q4_K_M;
    gp.embd_type = -1;
    gp.seed = 7;
    gp.n_threads = 2;
    beast_model *m = NULL;
    if (gp.shape && gen_write(path, &gp) == 0) {
        beast_model_params mp = beast_model_default_params();
        mp.n_threads = 2;
        mp.n_gpu_layers = 0;
        m = beast_model_load(path, &mp);
    }
    unlink(path);
    CHECK(m, "model: %s", beast_error());
    if (!m) return;
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 96;
    cp.n_seq = 3;
    beast_ctx *c = beast_ctx_new(m, &cp);
    beast_batch *b = beast_batch_new(64);
    const int nv = beast_n_vocab(m), K = 8;
    int32_t P[48], X[K], Y[K], ref_in[64];
    srand(11);
    for (int i = 0; i < 48; i++) P[i] = rand() % 256 + 3;
    for (int i = 0; i < K; i++) {
        X[i] = rand() % 256 + 3;
        Y[i] = rand() % 256 + 3;
    }
    float *ref = malloc((size_t)K * nv * sizeof(float)),
          *got = malloc((size_t)K * nv * sizeof(float));
    CHECK(c && b && ref && got, "ctx");
    if (!c || !b || !ref || !got) goto out;
    int total = 0, nfree = 0, bs = 0;
    beast_kv_blocks(c, &total, &nfree, &bs);
    CHECK(bs == 16 && nfree == total && beast_ctx_n_seq(c) == 3, "kv blocks %d/%d of %d", nfree,
          total, bs);

    /* seq 0: P (40 tokens). seq 1 shares its 2 whole blocks and decodes X. */
    CHECK(run(c, b, 0, P, 40, 1, got, nv) == 0, "seq 0 prefill");
    CHECK(beast_seq_share(c, 1, 0, 40) == 32, "share 32 positions");
    CHECK(run(c, b, 1, X, K, K, got, nv) == 0, "seq 1 decodes X after the shared prefix");
    /* reference from scratch in seq 2: P[0..32) then X */
    memcpy(ref_in, P, 32 * sizeof *P);
    memcpy(ref_in + 32, X, K * sizeof *X);
    CHECK(run(c, b, 2, ref_in, 32 + K, K, ref, nv) == 0, "reference");
    double d = maxdiff(got, ref, K * nv);
    printf("shared prefix vs from scratch: max |diff| %g\n", d);
    CHECK(d <= 1e-5, "shared-prefix logits equal from-scratch ones: %g", d);

    /* the source keeps going (its own partial block 2), unaffected by seq 1 */
    CHECK(run(c, b, 0, Y, K, K, got, nv) == 0, "seq 0 continues");
    beast_seq_clear(c, 2);
    memcpy(ref_in, P, 40 * sizeof *P);
    memcpy(ref_in + 40, Y, K * sizeof *Y);
    CHECK(run(c, b, 2, ref_in, 40 + K, K, ref, nv) == 0, "reference 2");
    d = maxdiff(got, ref, K * nv);
    CHECK(d <= 1e-5, "source after sharing equals from scratch: %g", d);

    /* truncate seq 1 into the shared block 1: rounds down to 16, and
     * decoding P[16..32) + X again gives the same logits as before */
    CHECK(beast_seq_truncate(c, 1, 20) == 0 && beast_seq_len(c, 1) == 16,
          "truncate into a shared block keeps 16, got %d", beast_seq_len(c, 1));
    memcpy(ref_in, P + 16, 16 * sizeof *P);
    memcpy(ref_in + 16, X, K * sizeof *X);
    CHECK(run(c, b, 1, ref_in, 16 + K, K, got, nv) == 0, "seq 1 re-decodes");
    beast_seq_clear(c, 2);
    memcpy(ref_in, P, 32 * sizeof *P);
    memcpy(ref_in + 32, X, K * sizeof *X);
    CHECK(run(c, b, 2, ref_in, 32 + K, K, ref, nv) == 0, "reference 3");
    d = maxdiff(got, ref, K * nv);
    CHECK(d <= 1e-5, "after truncation into the shared block: %g", d);

    /* the shared blocks really are shared: clearing the source leaves seq 1 intact */
    beast_seq_clear(c, 0);
    beast_kv_blocks(c, NULL, &nfree, NULL);
    CHECK(nfree < total, "seq 1 still holds blocks");
    beast_seq_clear(c, 1);
    beast_seq_clear(c, 2);
    CHECK(refs_zero(c->kv), "all reference counts back to zero");
    CHECK(beast_seq_share(c, 1, 1, 16) == -1 && beast_seq_share(c, 0, 7, 16) == -1, "bad ids");
out:
    free(ref);
    free(got);
    beast_batch_free(b);
    beast_ctx_free(c);
    beast_model_free(m);
    unsetenv("BEAST_CPU_SCALAR");
}

int main(void) {
    bookkeeping();
    results();
    return check_done();
}
