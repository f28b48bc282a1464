/* test_gen.c: the model generator (src/model/gen.c): presets and type names,
 * the Q4_K_M-style mix rule and block-size fallbacks, generated files read
 * back with the GGUF reader (metadata, every tensor's name/shape/type, weight
 * statistics after dequantization), determinism (same seed -> same bytes at
 * any thread count, other seed -> other bytes), that files of different
 * types hold the same underlying weights, bank and exact fill, error cases,
 * and that beast_model_load() accepts the files. With BEAST_MODELS_DIR:
 * --vocab-from copies the real tokenizers, and gemma3-270m Q4_K_M gets the
 * same per-tensor types as the real llama.cpp file.
 * The weight seed is random per run and printed; BEAST_TEST_SEED replays. */
#include "beast.h"
#include "gguf/gguf.h"
#include "model/gen.h"
#include "quant/quant.h"
#include "util/util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int n_fail, n_check;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        n_check++;                                                                                 \
        if (!(cond)) {                                                                             \
            n_fail++;                                                                              \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static uint64_t g_seed;

/* ---- temp files ---- */

#define MAX_TMP 64
static char g_tmp[MAX_TMP][64];
static int g_ntmp;

static const char *tmp_file(void) {
    if (g_ntmp == MAX_TMP) return NULL;
    char *p = g_tmp[g_ntmp];
    snprintf(p, 64, "/tmp/beast_test_gen_XXXXXX");
    int fd = mkstemp(p);
    if (fd < 0) return NULL;
    close(fd);
    g_ntmp++;
    return p;
}

static void tmp_cleanup(void) {
    for (int i = 0; i < g_ntmp; i++) unlink(g_tmp[i]);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)sz;
    return b;
}

static gen_params params(const char *preset, const char *type) {
    gen_params p = {0};
    p.shape = gen_shape_preset(preset);
    p.wtype = gen_type_from_name(type);
    p.embd_type = -1;
    p.seed = g_seed;
    p.n_threads = 2;
    return p;
}

/* ---- names, presets, the type rule ---- */

static void test_names(void) {
    const char *names[] = {"tiny-llama", "tiny-gemma3", "smollm2-135m", "llama-1b",
                           "llama-3b",   "llama-8b",    "gemma3-270m"};
    int n = 0;
    while (gen_shape_at(n)) n++;
    CHECK(n == (int)ARRAY_LEN(names), "%d presets", n);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        const gen_shape *s = gen_shape_preset(names[i]);
        CHECK(s && !strcmp(s->name, names[i]), "preset %s", names[i]);
    }
    CHECK(!gen_shape_preset("llama-70b") && strstr(err_get(), "llama-70b"), "%s", err_get());
    CHECK(!gen_shape_preset(NULL), "NULL preset");
    const gen_shape *s = gen_shape_preset("llama-8b");
    CHECK(s->n_layer == 32 && s->n_embd == 4096 && s->n_ff == 14336 && s->n_head == 32 &&
              s->n_head_kv == 8 && s->head_dim == 128,
          "llama-8b shape");
    s = gen_shape_preset("gemma3-270m");
    CHECK(s->n_layer == 18 && s->n_embd == 640 && s->head_dim == 256 && s->sliding_window == 512,
          "gemma3-270m shape");

    const char *types[] = {"F32",  "F16",  "BF16", "Q4_0", "Q4_1", "Q5_0",   "Q5_1",   "Q8_0",
                           "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q3_K_M", "Q4_K_M", "Q5_K_M"};
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
        int t = gen_type_from_name(types[i]);
        CHECK(t >= 0 && !strcmp(gen_type_name(t), types[i]), "type %s -> %d", types[i], t);
    }
    CHECK(gen_type_from_name("q4_k_m") == GEN_MIX_Q4_K_M, "case-insensitive");
    CHECK(gen_type_from_name("Q4_K") == QT_Q4_K, "Q4_K id");
    const char *bad[] = {"Q8_K", "Q8_1", "I32", "Q4_K_X", "", "IQ4_NL"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        CHECK(gen_type_from_name(bad[i]) == -1, "bad type '%s' accepted", bad[i]);
    CHECK(!strcmp(gen_type_name(-5), "?"), "bad type name");
}

/* llama.cpp's pattern, written out independently: more bits for the first
 * and last eighth of the layers and every third layer in between. */
static int ref_more_bits(int i, int n) {
    if (i < n / 8 || i >= 7 * n / 8) return 1;
    for (int k = n / 8 + 2; k < 7 * n / 8; k += 3)
        if (k == i) return 1;
    return 0;
}

static void test_type_rule(void) {
    gen_params p = params("llama-1b", "Q4_K_M");
    CHECK(gen_tensor_type(&p, "token_embd.weight", 2048) == QT_Q6_K, "tied embd");
    CHECK(gen_tensor_type(&p, "output.weight", 2048) == QT_Q6_K, "output");
    int n6 = 0;
    for (int il = 0; il < 16; il++) {
        char n[64];
        int want = ref_more_bits(il, 16) ? QT_Q6_K : QT_Q4_K;
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", il);
        CHECK(gen_tensor_type(&p, n, 2048) == want, "%s", n);
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", il);
        CHECK(gen_tensor_type(&p, n, 8192) == want, "%s", n);
        n6 += want == QT_Q6_K;
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", il);
        CHECK(gen_tensor_type(&p, n, 2048) == QT_Q4_K, "%s", n);
        snprintf(n, sizeof n, "blk.%d.attn_output.weight", il);
        CHECK(gen_tensor_type(&p, n, 2048) == QT_Q4_K, "%s", n);
    }
    CHECK(n6 == 8, "16 layers: %d Q6_K layers (llama.cpp gives 8)", n6);
    p.untied_output = 1;
    CHECK(gen_tensor_type(&p, "token_embd.weight", 2048) == QT_Q4_K, "untied embd");
    CHECK(gen_tensor_type(&p, "output.weight", 2048) == QT_Q6_K, "untied output");
    p.embd_type = QT_Q8_0;
    CHECK(gen_tensor_type(&p, "token_embd.weight", 2048) == QT_Q8_0, "embd_type");
    CHECK(gen_tensor_type(&p, "output.weight", 2048) == QT_Q8_0, "embd_type output");

    /* Fallbacks when the row length is not a multiple of 256 (or 32). */
    p = params("gemma3-270m", "Q4_K_M");
    CHECK(gen_tensor_type(&p, "token_embd.weight", 640) == QT_Q8_0, "Q6_K -> Q8_0");
    CHECK(gen_tensor_type(&p, "blk.3.attn_q.weight", 640) == QT_Q5_0, "Q4_K -> Q5_0");
    CHECK(gen_tensor_type(&p, "blk.0.attn_v.weight", 640) == QT_Q8_0, "Q6_K -> Q8_0");
    CHECK(gen_tensor_type(&p, "blk.3.attn_v.weight", 640) == QT_Q5_0, "Q4_K -> Q5_0");
    CHECK(gen_tensor_type(&p, "blk.0.ffn_down.weight", 2048) == QT_Q6_K, "no fallback");
    struct {
        const char *type;
        int64_t cols;
        int want;
    } fb[] = {{"Q5_K", 640, QT_Q5_1}, {"Q2_K", 640, QT_Q4_0}, {"Q3_K", 640, QT_Q4_0},
              {"Q6_K", 640, QT_Q8_0}, {"Q4_K", 100, QT_F16},  {"Q8_0", 100, QT_F16},
              {"Q4_0", 96, QT_Q4_0},  {"F32", 7, QT_F32},     {"BF16", 7, QT_BF16}};
    for (size_t i = 0; i < ARRAY_LEN(fb); i++) {
        p = params("tiny-llama", fb[i].type);
        int t = gen_tensor_type(&p, "blk.0.attn_q.weight", fb[i].cols);
        CHECK(t == fb[i].want, "%s cols %" PRId64 " -> %s", fb[i].type, fb[i].cols,
              gen_type_name(t));
    }
    /* Q3_K_M: attn_v Q5_K in the first two layers, ffn_down Q5_K in the
     * first sixteenth, attn_output Q4_K. */
    p = params("llama-8b", "Q3_K_M");
    CHECK(gen_tensor_type(&p, "blk.1.attn_v.weight", 4096) == QT_Q5_K, "q3km v1");
    CHECK(gen_tensor_type(&p, "blk.2.attn_v.weight", 4096) == QT_Q4_K, "q3km v2");
    CHECK(gen_tensor_type(&p, "blk.1.ffn_down.weight", 14336) == QT_Q5_K, "q3km d1");
    CHECK(gen_tensor_type(&p, "blk.2.ffn_down.weight", 14336) == QT_Q4_K, "q3km d2");
    CHECK(gen_tensor_type(&p, "blk.9.attn_output.weight", 4096) == QT_Q4_K, "q3km o");
    CHECK(gen_tensor_type(&p, "blk.9.ffn_up.weight", 4096) == QT_Q3_K, "q3km up");
}

/* ---- reading a generated file back ---- */

static int64_t get_int(const gguf_file *f, const char *key) {
    int64_t v = -1;
    return gguf_get_int(f, key, &v) ? v : -1;
}

static double get_float(const gguf_file *f, const char *key) {
    double v = NAN;
    return gguf_get_float(f, key, &v) ? v : NAN;
}

typedef struct {
    const char *name;
    int64_t cols, rows; /* rows 0: a vector */
    int kind;           /* 0 weight, 1 scaled-down weight, 2 norm */
} want_tensor;

/* The tensors the loader binds, in file order. */
static int expected_tensors(const gen_shape *s, int64_t n_vocab, int untied, want_tensor *w,
                            char (*names)[64]) {
    int n = 0, gemma = !strcmp(s->arch, "gemma3");
    int64_t E = s->n_embd, F = s->n_ff, Q = (int64_t)s->n_head * s->head_dim,
            KV = (int64_t)s->n_head_kv * s->head_dim, D = s->head_dim;
#define W(nm, c, r, k)                                                                             \
    do {                                                                                           \
        snprintf(names[n], 64, "%s", nm);                                                          \
        w[n] = (want_tensor){names[n], c, r, k};                                                   \
        n++;                                                                                       \
    } while (0)
    W("token_embd.weight", E, n_vocab, 0);
    for (int il = 0; il < s->n_layer; il++) {
        char b[64];
#define L(sfx, c, r, k)                                                                            \
    do {                                                                                           \
        snprintf(b, sizeof b, "blk.%d.%s.weight", il, sfx);                                        \
        W(b, c, r, k);                                                                             \
    } while (0)
        L("attn_norm", E, 0, 2);
        L("attn_q", E, Q, 0);
        L("attn_k", E, KV, 0);
        L("attn_v", E, KV, 0);
        L("attn_output", Q, E, 1);
        if (gemma) {
            L("attn_q_norm", D, 0, 2);
            L("attn_k_norm", D, 0, 2);
            L("post_attention_norm", E, 0, 2);
        }
        L("ffn_norm", E, 0, 2);
        L("ffn_gate", E, F, 0);
        L("ffn_up", E, F, 0);
        L("ffn_down", F, E, 1);
        if (gemma) L("post_ffw_norm", E, 0, 2);
#undef L
    }
    W("output_norm.weight", E, 0, 2);
    if (untied) W("output.weight", E, n_vocab, 0);
#undef W
    return n;
}

/* The first rows of a tensor (at most about 2^20 elements), dequantized. */
static float *dequant_tensor(const gguf_tensor *t, int64_t *rows) {
    *rows = MIN(t->ne[1], MAX(1, ((int64_t)1 << 20) / t->ne[0]));
    float *x = malloc((size_t)(*rows * t->ne[0]) * sizeof(float));
    if (!x) return NULL;
    const quant_traits *q = quant_get(t->type);
    size_t rb = quant_row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < *rows; r++)
        q->dequant((const uint8_t *)t->data + r * rb, x + r * t->ne[0], t->ne[0]);
    return x;
}

/* Check a generated file against its parameters: metadata, the exact tensor
 * list, types, and the weight distribution. Returns the open file. */
static gguf_file *check_file(const char *path, const gen_params *p, int64_t want_vocab) {
    gguf_file *f = gguf_open(path);
    CHECK(f, "open %s: %s", path, err_get());
    if (!f) return NULL;
    const gen_shape *s = p->shape;
    const char *a = s->arch;
    char k[128];
    gguf_str str;
    CHECK(gguf_get_str(f, "general.architecture", &str) && gguf_str_eq(str, a), "arch");
    char name[160];
    snprintf(name, sizeof name, "beast-gen %s %s seed %" PRIu64, s->name, gen_type_name(p->wtype),
             p->seed);
    CHECK(gguf_get_str(f, "general.name", &str) && gguf_str_eq(str, name), "general.name %.*s",
          (int)str.len, str.ptr);
    int64_t ft = get_int(f, "general.file_type");
    if (p->wtype == GEN_MIX_Q4_K_M) CHECK(ft == 15, "file_type %" PRId64, ft);
    if (p->wtype == QT_F16) CHECK(ft == 1, "file_type %" PRId64, ft);
    if (p->wtype == QT_Q8_0) CHECK(ft == 7, "file_type %" PRId64, ft);
    struct {
        const char *key;
        int64_t v;
    } ints[] = {{"block_count", s->n_layer},
                {"embedding_length", s->n_embd},
                {"feed_forward_length", s->n_ff},
                {"attention.head_count", s->n_head},
                {"attention.head_count_kv", s->n_head_kv},
                {"attention.key_length", s->head_dim},
                {"attention.value_length", s->head_dim},
                {"context_length", s->n_ctx},
                {"rope.dimension_count", s->head_dim},
                {"attention.sliding_window", s->sliding_window ? s->sliding_window : -1}};
    for (size_t i = 0; i < ARRAY_LEN(ints); i++) {
        snprintf(k, sizeof k, "%s.%s", a, ints[i].key);
        CHECK(get_int(f, k) == ints[i].v, "%s = %" PRId64 ", want %" PRId64, k, get_int(f, k),
              ints[i].v);
    }
    snprintf(k, sizeof k, "%s.rope.freq_base", a);
    CHECK(get_float(f, k) == (double)s->rope_base, "%s", k);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", a);
    double eps = get_float(f, k);
    CHECK(eps > 0 && eps <= 1e-5, "%s = %g", k, eps);
    const gguf_value *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
    int64_t n_vocab = toks ? (int64_t)toks->arr.n : -1;
    CHECK(n_vocab > 256 && (want_vocab <= 0 || n_vocab == want_vocab), "n_vocab %" PRId64, n_vocab);
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", &str), "tokenizer.ggml.model");

    static want_tensor w[4096];
    static char names[4096][64];
    int n = expected_tensors(s, n_vocab, p->untied_output, w, names);
    CHECK(f->n_tensors == n, "%" PRId64 " tensors, want %d", f->n_tensors, n);
    for (int i = 0; i < n && i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        CHECK(gguf_str_eq(t->name, w[i].name), "tensor %d is %.*s, want %s", i, (int)t->name.len,
              t->name.ptr, w[i].name);
        int dims = w[i].rows ? 2 : 1;
        CHECK(t->n_dims == dims && t->ne[0] == w[i].cols && t->ne[1] == (dims == 2 ? w[i].rows : 1),
              "%s shape [%" PRId64 ", %" PRId64 "]", w[i].name, t->ne[0], t->ne[1]);
        int want_type = dims == 1 ? QT_F32 : gen_tensor_type(p, w[i].name, w[i].cols);
        CHECK(t->type == want_type, "%s type %d want %d", w[i].name, t->type, want_type);
        CHECK(t->ne[0] % quant_get(t->type)->block == 0, "%s block", w[i].name);
        if (t->n_dims != dims || t->ne[0] != w[i].cols) continue;
        /* Distribution after dequantization: mean 0 and std 0.02 (scaled
         * down by 1/sqrt(2 n_layer) for attn_output / ffn_down), or norms
         * around 1 with std 0.1. */
        int64_t rows;
        float *x = dequant_tensor(t, &rows);
        if (!x) continue;
        int64_t ne = t->ne[0] * rows;
        double sum = 0, sq = 0;
        int finite = 1;
        for (int64_t e = 0; e < ne; e++) {
            finite &= isfinite(x[e]);
            sum += x[e];
        }
        double mean = sum / (double)ne;
        for (int64_t e = 0; e < ne; e++) sq += (x[e] - mean) * (x[e] - mean);
        double sd = sqrt(sq / (double)ne);
        double want_mean = w[i].kind == 2 ? 1.0 : 0.0;
        double want_sd = w[i].kind == 2   ? 0.1
                         : w[i].kind == 1 ? 0.02 / sqrt(2.0 * s->n_layer)
                                          : 0.02;
        double se = want_sd / sqrt((double)ne); /* standard error of the mean */
        CHECK(finite, "%s has non-finite values", w[i].name);
        CHECK(fabs(mean - want_mean) < 6 * se + 1e-3 * want_sd, "%s mean %g want %g", w[i].name,
              mean, want_mean);
        double tol = ne >= 4096 ? 0.05 : 0.3; /* short vectors vary more */
        CHECK(fabs(sd / want_sd - 1) < tol, "%s std %g want %g", w[i].name, sd, want_sd);
        free(x);
    }
    return f;
}

/* Dequantized tensors of two files of the same model; returns the worst
 * relative RMS difference over the 2D tensors. */
static double max_rel_diff(const gguf_file *a, const gguf_file *b) {
    double worst = 0;
    for (int64_t i = 0; i < a->n_tensors && i < b->n_tensors; i++) {
        const gguf_tensor *ta = &a->tensors[i], *tb = &b->tensors[i];
        if (ta->ne[0] != tb->ne[0] || ta->ne[1] != tb->ne[1]) return INFINITY;
        int64_t ra, rb;
        float *x = dequant_tensor(ta, &ra), *y = dequant_tensor(tb, &rb);
        if (!x || !y) {
            free(x);
            free(y);
            return INFINITY;
        }
        double d = 0, s = 0;
        for (int64_t e = 0; e < ta->ne[0] * ra; e++) {
            d += (x[e] - y[e]) * (double)(x[e] - y[e]);
            s += (double)x[e] * x[e];
        }
        worst = MAX(worst, sqrt(d / s));
        free(x);
        free(y);
    }
    return worst;
}

static void check_load(const char *path, const gen_params *p) {
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 1;
    beast_model *m = beast_model_load(path, &mp);
    CHECK(m, "beast_model_load(%s %s): %s", p->shape->name, gen_type_name(p->wtype), beast_error());
    if (!m) return;
    beast_model_info info;
    beast_model_get_info(m, &info);
    const gen_shape *s = p->shape;
    CHECK(!strcmp(info.arch, s->arch) && info.n_layer == s->n_layer && info.n_embd == s->n_embd &&
              info.n_ff == s->n_ff && info.n_head == s->n_head && info.n_head_kv == s->n_head_kv &&
              info.head_dim == s->head_dim && info.sliding_window == s->sliding_window,
          "model info of %s", s->name);
    CHECK(strstr(info.name, "beast-gen") == info.name, "name '%s'", info.name);
    beast_model_free(m);
}

/* ---- generated files ---- */

static void test_files(void) {
    /* The reference quantizers take about 1 us per weight: the slow types
     * are spread over the two presets. F32 first: the others compare to it. */
    const char *presets[] = {"tiny-llama", "tiny-gemma3"};
    const char *type_sets[][8] = {{"F32", "BF16", "Q8_0", "Q4_0", "Q6_K", "Q4_K_M", "Q3_K_M"},
                                  {"F32", "F16", "Q8_0", "Q5_1", "Q4_K_M"}};
    for (size_t pi = 0; pi < ARRAY_LEN(presets); pi++) {
        gguf_file *f32 = NULL;
        const char *const *types = type_sets[pi];
        for (size_t ti = 0; ti < 8 && types[ti]; ti++) {
            gen_params p = params(presets[pi], types[ti]);
            p.n_threads = 1 + (int)ti % 3;
            const char *path = tmp_file();
            int rc = gen_write(path, &p);
            CHECK(rc == 0, "gen %s %s: %s", presets[pi], types[ti], err_get());
            if (rc) continue;
            gguf_file *f = check_file(path, &p, 0);
            if (f && f32) {
                /* Same seed, other type: quantizations of the same weights. */
                double d = max_rel_diff(f32, f);
                double lim = p.wtype == QT_F32 ? 0 : p.wtype == QT_F16 ? 1e-3 : 0.2;
                CHECK(d <= lim, "%s %s vs F32: rel diff %g", presets[pi], types[ti], d);
            }
            check_load(path, &p);
            if (ti == 0)
                f32 = f;
            else
                gguf_close(f);
        }
        gguf_close(f32);
    }
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *x = read_all(a, &na), *y = read_all(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* Bytes of the tensor data sections that differ (the headers differ in the
 * seed written in general.name). */
static double data_diff_frac(const char *a, const char *b) {
    gguf_file *fa = gguf_open(a), *fb = gguf_open(b);
    double frac = -1;
    if (fa && fb && fa->size - fa->data_offset == fb->size - fb->data_offset) {
        size_t n = fa->size - fa->data_offset, d = 0;
        for (size_t i = 0; i < n; i++)
            d += fa->base[fa->data_offset + i] != fb->base[fb->data_offset + i];
        frac = (double)d / (double)n;
    }
    gguf_close(fa);
    gguf_close(fb);
    return frac;
}

static void test_determinism(void) {
    const int fills[] = {GEN_FILL_EXACT, GEN_FILL_BANK};
    for (size_t fi = 0; fi < ARRAY_LEN(fills); fi++) {
        gen_params p = params(fi ? "tiny-gemma3" : "tiny-llama", "Q4_K_M");
        p.fill = fills[fi];
        const char *a = tmp_file(), *b = tmp_file(), *c = tmp_file();
        p.n_threads = 1;
        CHECK(gen_write(a, &p) == 0, "%s", err_get());
        p.n_threads = 3;
        CHECK(gen_write(b, &p) == 0, "%s", err_get());
        CHECK(same_file(a, b), "fill %d: 1 and 3 threads differ", p.fill);
        p.seed = g_seed + 1;
        CHECK(gen_write(c, &p) == 0, "%s", err_get());
        double d = data_diff_frac(a, c);
        CHECK(d > 0.5, "fill %d: other seed changes only %g of the data bytes", p.fill, d);
        gguf_close(check_file(c, &p, 0));
        if (fills[fi] == GEN_FILL_BANK) check_load(c, &p);
    }
    /* Bank and exact fills hold different weights of the same distribution
     * (check_file above checked the distribution). */
    gen_params p = params("tiny-llama", "Q8_0");
    const char *a = tmp_file(), *b = tmp_file();
    p.fill = GEN_FILL_EXACT;
    CHECK(gen_write(a, &p) == 0, "%s", err_get());
    p.fill = GEN_FILL_BANK;
    CHECK(gen_write(b, &p) == 0, "%s", err_get());
    CHECK(data_diff_frac(a, b) > 0.5, "bank == exact");
    /* Auto picks exact for tiny models. */
    p.fill = GEN_FILL_AUTO;
    const char *c = tmp_file();
    CHECK(gen_write(c, &p) == 0 && same_file(a, c), "auto fill of a tiny model is not exact");
}

static void test_untied_and_embd(void) {
    gen_params p = params("tiny-llama", "Q4_K_M");
    p.untied_output = 1;
    p.embd_type = QT_F16;
    const char *path = tmp_file();
    CHECK(gen_write(path, &p) == 0, "%s", err_get());
    gguf_file *f = check_file(path, &p, 0);
    if (f) {
        const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight"),
                          *o = gguf_find_tensor(f, "output.weight");
        CHECK(e && o && e->type == QT_F16 && o->type == QT_F16, "embd/output types");
        CHECK(e && o && e->size == o->size && memcmp(e->data, o->data, e->size),
              "untied output must differ from the embedding");
    }
    gguf_close(f);
    check_load(path, &p);
}

static void test_errors(void) {
    gen_params p = params("tiny-llama", "Q4_0");
    CHECK(gen_write("/nonexistent-dir/x.gguf", &p) == -1 && strstr(err_get(), "nonexistent"), "%s",
          err_get());
    p.vocab_from = "/nonexistent-dir/vocab.gguf";
    const char *path = tmp_file();
    unlink(path);
    CHECK(gen_write(path, &p) == -1 && *err_get(), "vocab_from missing");
    struct stat st;
    CHECK(stat(path, &st) != 0, "failed output not removed");
    p.vocab_from = NULL;
    gen_shape bad = *p.shape;
    bad.n_head_kv = 3; /* 4 % 3 */
    p.shape = &bad;
    CHECK(gen_write(path, &p) == -1 && strstr(err_get(), "n_head"), "%s", err_get());
    bad = *gen_shape_preset("tiny-llama");
    bad.head_dim = 63;
    CHECK(gen_write(path, &p) == -1, "odd head_dim");
    bad = *gen_shape_preset("tiny-llama");
    bad.arch = "mamba";
    CHECK(gen_write(path, &p) == -1 && strstr(err_get(), "mamba"), "%s", err_get());
    bad = *gen_shape_preset("tiny-llama");
    bad.n_layer = 0;
    CHECK(gen_write(path, &p) == -1, "0 layers");
    p = params("tiny-llama", "Q4_0");
    p.wtype = QT_Q8_K;
    CHECK(gen_write(path, &p) == -1, "Q8_K weights");
    p.wtype = QT_Q4_0;
    p.embd_type = GEN_MIX_Q4_K_M;
    CHECK(gen_write(path, &p) == -1, "mix as embd type");
    p.embd_type = -1;
    p.fill = 7;
    CHECK(gen_write(path, &p) == -1, "bad fill");
    CHECK(gen_write(path, NULL) == -1, "NULL params");
    p.fill = 0;
    CHECK(gen_write(NULL, &p) == -1, "NULL path");

    /* A custom shape (no preset name) with ragged dims takes the fallbacks. */
    gen_shape cs = {NULL, "llama", 1, 96, 160, 3, 1, 32, 128, 10000.0f, 0, 0};
    p = params("tiny-llama", "Q4_K_M");
    p.shape = &cs;
    CHECK(gen_write(path, &p) == 0, "custom shape: %s", err_get());
    gguf_file *f = gguf_open(path);
    CHECK(f, "%s", err_get());
    if (f) {
        gguf_str s;
        CHECK(gguf_get_str(f, "general.name", &s) && s.len > 17 &&
                  !memcmp(s.ptr, "beast-gen custom ", 17),
              "custom name");
        const gguf_tensor *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
        CHECK(t && t->type == QT_Q8_0 && t->ne[0] == 160, "ffn_down of a custom shape");
        t = gguf_find_tensor(f, "blk.0.attn_q.weight");
        CHECK(t && t->type == QT_Q5_0, "attn_q of a custom shape");
    }
    gguf_close(f);
}

/* ---- with the real models ---- */

static void test_vocab_from(void) {
    const char *dir = getenv("BEAST_MODELS_DIR");
    if (!dir || !*dir) {
        printf("BEAST_MODELS_DIR not set: skipping --vocab-from tests\n");
        return;
    }
    char smol[1024], gemma[1024];
    snprintf(smol, sizeof smol, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir);
    snprintf(gemma, sizeof gemma, "%s/gemma-3-270m-q4_k_m.gguf", dir);
    struct stat st;
    if (stat(smol, &st) == 0) {
        gen_params p = params("tiny-llama", "Q8_0");
        p.vocab_from = smol;
        const char *path = tmp_file();
        CHECK(gen_write(path, &p) == 0, "%s", err_get());
        gguf_file *f = check_file(path, &p, 49152);
        gguf_file *src = gguf_open(smol);
        if (f && src) {
            CHECK(get_int(f, "llama.vocab_size") == 49152, "vocab_size");
            int n_tok = 0;
            for (int64_t i = 0; i < src->n_kv; i++) {
                gguf_str k = src->kv[i].key;
                if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10)) continue;
                n_tok++;
                char key[256];
                snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
                const gguf_value *v = gguf_get(f, key);
                CHECK(v && v->type == src->kv[i].val.type, "%s not copied", key);
            }
            CHECK(n_tok >= 10, "only %d tokenizer keys", n_tok);
            gguf_str a, b;
            CHECK(gguf_get_str(f, "tokenizer.chat_template", &a) &&
                      gguf_get_str(src, "tokenizer.chat_template", &b) && a.len == b.len &&
                      !memcmp(a.ptr, b.ptr, a.len),
                  "chat template");
            const gguf_value *m = gguf_get_arr(f, "tokenizer.ggml.merges");
            CHECK(m && m->arr.n == 48900, "merges");
        }
        gguf_close(src);
        gguf_close(f);
        check_load(path, &p);
        beast_model *bm = beast_model_load(path, NULL);
        if (bm) {
            CHECK(beast_n_vocab(bm) == 49152, "n_vocab %d", beast_n_vocab(bm));
            beast_model_free(bm);
        }
    } else {
        printf("%s absent: skipped\n", smol);
    }
    if (stat(gemma, &st) == 0) {
        /* The real file is llama.cpp's Q4_K_M of this shape: every tensor's
         * type must match ours. */
        gen_params p = params("gemma3-270m", "Q4_K_M");
        p.vocab_from = gemma;
        p.n_threads = 2;
        const char *path = tmp_file();
        CHECK(gen_write(path, &p) == 0, "%s", err_get());
        gguf_file *f = check_file(path, &p, 262144), *src = gguf_open(gemma);
        if (f && src) {
            CHECK(f->n_tensors == src->n_tensors, "%" PRId64 " vs %" PRId64 " tensors",
                  f->n_tensors, src->n_tensors);
            int mism = 0;
            for (int64_t i = 0; i < src->n_tensors; i++) {
                const gguf_tensor *t = &src->tensors[i];
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
                const gguf_tensor *g = gguf_find_tensor(f, name);
                int ok = g && g->type == t->type && g->n_dims == t->n_dims &&
                         g->ne[0] == t->ne[0] && g->ne[1] == t->ne[1];
                if (!ok && mism++ < 5)
                    CHECK(ok, "%s: ours %s, llama.cpp %s", name,
                          g ? gen_type_name(g->type) : "missing", gen_type_name(t->type));
            }
            CHECK(mism == 0, "%d tensors differ from the real Q4_K_M file", mism);
        }
        gguf_close(src);
        gguf_close(f);
        check_load(path, &p);
    } else {
        printf("%s absent: skipped\n", gemma);
    }
}

int main(void) {
    const char *env = getenv("BEAST_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
    printf("test_gen: seed %" PRIu64 " (BEAST_TEST_SEED to replay)\n", g_seed);
    test_names();
    test_type_rule();
    test_files();
    test_determinism();
    test_untied_and_embd();
    test_errors();
    test_vocab_from();
    tmp_cleanup();
    printf("test_gen: %d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
