/* test_split.c: partial GPU offload (beast_model_params.n_gpu_layers = N,
 * 0 < N < n_layer: the first layers on the CPU, the last N on the GPU), run
 * here without a GPU: model_load_with's accelerator hook makes the "GPU" a
 * second CPU backend. The split path is then all there (weights and KV
 * cache of each layer on its own backend, the token embedding on the first,
 * the residual stream moved between the two through host memory, the
 * output matrix (its own binding when the embeddings are tied) and the
 * logits on the last) while both sides run the same kernels: every logit
 * must equal the unsplit run's bit for bit.
 *
 * For a generated 5-layer llama (tied and untied output), the tiny gemma3
 * preset (6 layers: q/k norms, post norms, sliding window) and the real
 * SmolLM2 when it is in BEAST_MODELS_DIR (tied embeddings, 30 layers), at
 * N = 0, 1, n_layer/2, n_layer-1, n_layer, -1 and more than n_layer:
 * two sequences prefilled in one batch of 37 rows of logits (downloaded as
 * computed) over micro-batches of 7 tokens, then greedy decode steps of both
 * sequences in one batch (logits left in backend memory, candidates from
 * the output backend's topk), then beast_generate_greedy on one of them
 * (the same tokens: split, each pick comes back to the host; unsplit, it is
 * fed in backend memory). Also: where each layer's KV cache lives, the
 * reported layer count, the flags set on both backends, a profiled split run
 * (same bits), the fallback to the CPU when the accelerator cannot be made,
 * and N = -2 failing with a message. */
#include "beast.h"
#include "engine/engine.h"
#include "model/gen.h"
#include "model/model.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define THREADS 2
#define P0      20 /* prompt tokens of sequence 0 */
#define P1      17 /* prompt tokens of sequence 1 */
#define STEPS   4  /* greedy decode steps, both sequences in each */
#define ROWS    (P0 + P1 + 2 * STEPS)

static backend *cpu_accel(int n_threads) {
    return bk_cpu_new(n_threads);
}

static backend *no_accel(int n_threads) {
    (void)n_threads;
    err_set("no accelerator in this test");
    return NULL;
}

/* Prompt tokens of this run's two sequences (random byte-range ids of the
 * synthetic vocab, ordinary tokens of a real one). */
static int32_t prompt[2][P0 > P1 ? P0 : P1];

#define GEN 6 /* tokens of the greedy generation after the steps */

typedef struct {
    int ngl, n_batch, profile, deterministic;
    int32_t *gen; /* [GEN]: beast_generate_greedy's tokens on sequence 1 */
} run_opts;

/* Load the model with o->ngl layers on the accelerator (a second CPU
 * backend), run the prompt and the decode steps, and keep every row of
 * logits in out[ROWS][nv]. 0, or -1 after a failed check. */
static int run(const char *path, const run_opts *o, float *out, int nv, const char *label) {
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = THREADS;
    mp.n_gpu_layers = o->ngl;
    mp.deterministic = o->deterministic;
    beast_model *m = model_load_with(path, &mp, cpu_accel);
    CHECK(m, "%s: load: %s", label, beast_error());
    if (!m) return -1;
    int rc = -1;
    beast_ctx *c = NULL;
    beast_batch *b = NULL;
    const int L = m->hp.n_layer;
    int want = o->ngl < 0 || o->ngl > L ? L : o->ngl;
    bool split = want > 0 && want < L;
    beast_model_info in;
    beast_model_get_info(m, &in);
    CHECK(in.n_gpu_layers == want, "%s: info says %d layers on the accelerator, want %d", label,
          in.n_gpu_layers, want);
    CHECK(m->split == (split ? L - want : 0) && (m->bk_lo != NULL) == split,
          "%s: split at %d (bk_lo %p), want %d", label, m->split, (void *)m->bk_lo,
          split ? L - want : 0);
    CHECK(beast_n_vocab(m) == nv, "%s: vocab %d, want %d", label, beast_n_vocab(m), nv);
    if (beast_n_vocab(m) != nv) goto out;
    if (split) {
        /* the tied output matrix has its own binding on the output backend */
        CHECK(!m->output_shared, "%s: the output shares the embedding's binding across backends",
              label);
        CHECK(m->bk_lo->deterministic == o->deterministic &&
                  m->bk->deterministic == o->deterministic,
              "%s: deterministic flag not on both backends", label);
        model_set_float_act(m, 1);
        CHECK(m->bk_lo->float_act && m->bk->float_act, "%s: float_act not on both backends", label);
        model_set_float_act(m, 0);
    }

    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_seq = 2;
    cp.n_batch = o->n_batch;
    c = beast_ctx_new(m, &cp);
    b = beast_batch_new(ROWS);
    CHECK(c && b, "%s: context: %s", label, beast_error());
    if (!c || !b) goto out;
    int placed = 1; /* each layer and its KV cache on the right backend */
    for (int il = 0; il < L; il++) {
        backend *lb = split && il < L - want ? m->bk_lo : m->bk;
        placed &= model_layer_bk(m, il) == lb && c->kv->layer_bk[il] == lb;
    }
    CHECK(placed, "%s: a layer or its KV cache is not on the right backend", label);
    CHECK(c->bk == m->bk, "%s: the context's logits are not on the output backend", label);
    if (o->profile) beast_ctx_set_profile(c, true);

    /* prompts of both sequences, interleaved, every row asking for logits */
    for (int i = 0; i < MAX(P0, P1); i++) {
        if (i < P0) beast_batch_add(b, prompt[0][i], 0, true);
        if (i < P1) beast_batch_add(b, prompt[1][i], 1, true);
    }
    int row = 0, last[2] = {-1, -1};
    CHECK(beast_decode(c, b) == 0, "%s: prompt: %s", label, beast_error());
    for (int i = 0; i < b->n; i++) {
        const float *l = beast_logits(c, i);
        CHECK(l, "%s: prompt row %d: %s", label, i, beast_error());
        if (!l) goto out;
        memcpy(out + (size_t)row++ * nv, l, (size_t)nv * sizeof(float));
        last[b->seq[i]] = i;
    }
    int32_t next[2];
    for (int s = 0; s < 2; s++) { /* argmax of the host rows */
        const float *l = beast_logits(c, last[s]);
        next[s] = 0;
        for (int t = 1; t < nv; t++)
            if (l[t] > l[next[s]]) next[s] = t;
    }
    for (int step = 0; step < STEPS; step++) {
        beast_batch_clear(b);
        beast_batch_add(b, next[0], 0, true);
        beast_batch_add(b, next[1], 1, true);
        CHECK(beast_decode(c, b) == 0, "%s: step %d: %s", label, step, beast_error());
        for (int s = 0; s < 2; s++) {
            const beast_cand *cand;
            float lse;
            int n = beast_candidates(c, s, &cand, &lse);
            const float *l = beast_logits(c, s);
            CHECK(n > 0 && l, "%s: step %d seq %d: %s", label, step, s, beast_error());
            if (n <= 0 || !l) goto out;
            next[s] = cand[0].id; /* greedy, from the output backend's topk */
            memcpy(out + (size_t)row++ * nv, l, (size_t)nv * sizeof(float));
        }
    }
    /* greedy generation: a split model feeds each pick from the host, the
     * unsplit one runs ahead with the pick fed in backend memory */
    gen_rec gr = {{0}, 0, 0};
    CHECK(beast_generate_greedy(c, 1, next[1], GEN, rec_token, &gr) == GEN && gr.n == GEN,
          "%s: generate: %s", label, beast_error());
    memcpy(o->gen, gr.tok, GEN * sizeof *o->gen);
    if (o->profile) {
        const char *names[FWD_OP_COUNT];
        double secs[FWD_OP_COUNT];
        int k = beast_ctx_profile(c, names, secs, FWD_OP_COUNT);
        CHECK(k == FWD_OP_COUNT && !strcmp(names[FWD_MOVE], "move"), "%s: profile kinds", label);
        printf("%s: profiled, move %.3f ms of %.3f ms in matmuls\n", label, secs[FWD_MOVE] * 1e3,
               secs[FWD_MATMUL] * 1e3);
    }
    rc = 0;
out:
    beast_batch_free(b);
    beast_ctx_free(c);
    beast_model_free(m);
    return rc;
}

/* Every row against the reference, bit for bit; the reference not zero. */
static void compare(const float *ref, const float *got, int nv, const char *label) {
    size_t n = (size_t)ROWS * nv;
    int nonzero = 0, finite = 1;
    for (size_t i = 0; i < n; i++) {
        nonzero |= ref[i] != 0;
        finite &= isfinite(ref[i]);
    }
    CHECK(nonzero && finite, "%s: reference logits are all zero or not finite", label);
    int bad = -1;
    for (int r = 0; r < ROWS && bad < 0; r++)
        if (memcmp(ref + (size_t)r * nv, got + (size_t)r * nv, (size_t)nv * sizeof(float))) bad = r;
    CHECK(bad < 0, "%s: row %d differs from the unsplit run (max diff %g)", label, bad,
          bad < 0 ? 0.0
                  : check_max_diff(ref + (size_t)bad * nv, got + (size_t)bad * nv, (size_t)nv));
}

/* The unsplit CPU run with o's batch size and flags into ref, then each
 * split in ngls[] into got, compared with it. */
static void against_cpu(const char *path, const char *name, run_opts o, const int *ngls, int n,
                        float *ref, float *got, int nv) {
    char label[160];
    int32_t gen_ref[GEN] = {0}, gen_got[GEN];
    o.gen = gen_ref;
    const char *how = o.deterministic ? ", deterministic" : o.profile ? ", profiled" : "";
    int profile = o.profile;
    snprintf(label, sizeof label, "%s cpu, batch %d%s", name, o.n_batch, how);
    o.ngl = 0;
    o.profile = 0;
    if (run(path, &o, ref, nv, label)) return;
    o.profile = profile;
    o.gen = gen_got;
    for (int k = 0; k < n; k++) {
        o.ngl = ngls[k];
        snprintf(label, sizeof label, "%s ngl %d, batch %d%s", name, o.ngl, o.n_batch, how);
        memset(got, 0, (size_t)ROWS * nv * sizeof(float));
        memset(gen_got, 0xff, sizeof gen_got);
        if (!run(path, &o, got, nv, label)) {
            compare(ref, got, nv, label);
            CHECK(!memcmp(gen_ref, gen_got, sizeof gen_ref),
                  "%s: generated tokens differ from the unsplit run's", label);
        }
    }
}

static void test_model(const char *path, const char *name) {
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 1;
    mp.n_gpu_layers = 0;
    beast_model *m = beast_model_load(path, &mp);
    CHECK(m, "%s: load: %s", name, beast_error());
    if (!m) return;
    const int L = m->hp.n_layer, nv = beast_n_vocab(m);
    beast_model_free(m);
    float *ref = malloc((size_t)ROWS * nv * sizeof(float));
    float *got = malloc((size_t)ROWS * nv * sizeof(float));
    int fails = check_failures;
    /* micro-batches of 7 tokens: the prompt crosses the split in pieces */
    int ngls[] = {0, 1, L / 2, L - 1, L, -1, L + 5};
    against_cpu(path, name, (run_opts){0, 7, 0, 0, NULL}, ngls, ARRAY_LEN(ngls), ref, got, nv);
    /* the prompt in one batch, profiled (every op waited for) */
    int half[] = {L / 2};
    against_cpu(path, name, (run_opts){0, 512, 1, 0, NULL}, half, 1, ref, got, nv);
    /* the deterministic kernels on both sides */
    int last[] = {1, L - 1};
    against_cpu(path, name, (run_opts){0, 7, 0, 1, NULL}, last, 2, ref, got, nv);
    printf("%s: %d layers, split runs against the CPU run: %s\n", name, L,
           check_failures == fails ? "the same bits" : "FAILED");
    free(ref);
    free(got);
}

/* No accelerator: everything on the CPU, the reason kept. */
static void test_fallback(const char *path) {
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 1;
    mp.n_gpu_layers = 1;
    beast_model *m = model_load_with(path, &mp, no_accel);
    CHECK(m, "fallback: load: %s", beast_error());
    if (!m) return;
    beast_model_info in;
    beast_model_get_info(m, &in);
    CHECK(in.n_gpu_layers == 0 && !m->bk_lo && m->split == 0 && !strcmp(in.backend, "cpu"),
          "fallback: %d layers on the accelerator, backend %s", in.n_gpu_layers, in.backend);
    CHECK(strstr(in.gpu_note, "no accelerator in this test") != NULL, "fallback: gpu_note '%s'",
          in.gpu_note);
    beast_model_free(m);
}

static void test_bad_count(const char *path) {
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 1;
    mp.n_gpu_layers = -2;
    beast_model *m = beast_model_load(path, &mp);
    CHECK(!m, "n_gpu_layers -2 was accepted");
    CHECK(strstr(beast_error(), "n_gpu_layers -2") != NULL, "n_gpu_layers -2: message '%s'",
          beast_error());
    printf("n_gpu_layers -2: %s\n", beast_error());
    beast_model_free(m);
    m = model_load_with(path, &mp, cpu_accel);
    CHECK(!m, "n_gpu_layers -2 was accepted with the test accelerator");
    beast_model_free(m);
}

/* Write a generated model to a temporary file; 0 or -1. */
static int generate(char *path, const gen_shape *shape, int untied, uint64_t seed) {
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    gen_params gp = {0};
    gp.shape = shape;
    gp.wtype = GEN_MIX_Q4_K_M;
    gp.embd_type = -1;
    gp.seed = seed;
    gp.n_threads = THREADS;
    gp.untied_output = untied;
    if (gen_write(path, &gp)) {
        CHECK(0, "generate: %s", beast_error());
        unlink(path);
        return -1;
    }
    return 0;
}

int main(void) {
    uint64_t seed = check_seed();
    /* the unsplit runs generate ahead (the CPU would not by itself); a split
     * model never does */
    setenv("BEAST_GEN_AHEAD", "1", 1);
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < (int)ARRAY_LEN(prompt[0]); i++) prompt[s][i] = 3 + rng_int(250);
    /* llama rows of 256 (K-quants), five layers so every split point differs */
    static const gen_shape llama5 = {NULL, "llama", 5, 256, 512, 4, 2, 64, 2048, 10000.0f, 0, 0};
    const struct {
        const gen_shape *shape;
        int untied;
        const char *name;
    } gens[] = {
        {&llama5, 0, "llama-5 tied"},
        {&llama5, 1, "llama-5 untied"},
        {gen_shape_preset("tiny-gemma3"), 0, "tiny-gemma3"},
    };
    for (size_t i = 0; i < ARRAY_LEN(gens); i++) {
        char path[] = "/tmp/beast_test_split_XXXXXX";
        if (!gens[i].shape || generate(path, gens[i].shape, gens[i].untied, seed + i)) {
            CHECK(0, "%s: not generated", gens[i].name);
            continue;
        }
        test_model(path, gens[i].name);
        if (i == 0) {
            test_fallback(path);
            test_bad_count(path);
        }
        unlink(path);
    }

    const char *dir = getenv("BEAST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir ? dir : "../models");
    if (access(path, R_OK) == 0)
        test_model(path, "SmolLM2-135M");
    else
        printf("%s not there: the real-model check is skipped\n", path);
    return check_done();
}
