/* gen.c: the model generator (see gen.h): shape presets, weight type rules
 * (plain types, llama.cpp-style mixes, block-size fallbacks), the synthetic
 * byte-level vocabulary, seeded weights and the streaming GGUF output.
 *
 * Output: the key/values are encoded by the gguf writer (gguf_writer_to_mem
 * with no tensors); this file then appends the tensor infos itself and
 * streams each tensor's data, generated and quantized a slice of rows at a
 * time on a thread pool, so memory stays bounded whatever the model size. */
#include "model/gen.h"

#include "cpu/pool.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GEN_ALIGN       32
#define GEN_SLICE_BYTES ((size_t)64 << 20) /* output bytes generated per pool run */
#define GEN_TASK_ELEMS  ((int64_t)1 << 16) /* elements per pool task (about) */

/* ---- presets ---- */

static const gen_shape PRESETS[] = {
    /* Tests: rows of 256 so the K-quants apply to llama; tiny-gemma3 has
     * n_embd 320 so, like the real gemma3-270m (640), most weights take the
     * block-size fallback, and 6 layers so layer 5 is a global one. */
    {"tiny-llama", "llama", 2, 256, 512, 4, 2, 64, 2048, 10000.0f, 0, 0},
    {"tiny-gemma3", "gemma3", 6, 320, 256, 4, 1, 64, 2048, 1e6f, 32, 0},
    {"smollm2-135m", "llama", 30, 576, 1536, 9, 3, 64, 8192, 100000.0f, 0, 49152},
    {"llama-1b", "llama", 16, 2048, 8192, 32, 8, 64, 131072, 500000.0f, 0, 128256},
    {"llama-3b", "llama", 28, 3072, 8192, 24, 8, 128, 131072, 500000.0f, 0, 128256},
    {"llama-8b", "llama", 32, 4096, 14336, 32, 8, 128, 131072, 500000.0f, 0, 128256},
    {"gemma3-270m", "gemma3", 18, 640, 2048, 4, 1, 256, 32768, 1e6f, 512, 262144},
};

const gen_shape *gen_shape_at(int i) {
    return i >= 0 && i < (int)ARRAY_LEN(PRESETS) ? &PRESETS[i] : NULL;
}

const gen_shape *gen_shape_preset(const char *name) {
    for (size_t i = 0; name && i < ARRAY_LEN(PRESETS); i++)
        if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    err_set("unknown model preset '%s' (see beast-gen --list)", name ? name : "(null)");
    return NULL;
}

/* ---- types ---- */

static const int PLAIN_TYPES[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                                  QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};

static const struct {
    int id;
    const char *name;
    int base;      /* type of the tensors the mix does not single out */
    int file_type; /* llama.cpp's general.file_type */
} MIXES[] = {
    {GEN_MIX_Q4_K_M, "Q4_K_M", QT_Q4_K, 15},
    {GEN_MIX_Q5_K_M, "Q5_K_M", QT_Q5_K, 17},
    {GEN_MIX_Q3_K_M, "Q3_K_M", QT_Q3_K, 12},
};

static int mix_row(int id) {
    for (size_t i = 0; i < ARRAY_LEN(MIXES); i++)
        if (MIXES[i].id == id) return (int)i;
    return -1;
}

static int plain_ok(int t) {
    for (size_t i = 0; i < ARRAY_LEN(PLAIN_TYPES); i++)
        if (PLAIN_TYPES[i] == t) return 1;
    return 0;
}

int gen_type_from_name(const char *name) {
    if (!name) name = "";
    for (size_t i = 0; i < ARRAY_LEN(MIXES); i++)
        if (!strcasecmp(name, MIXES[i].name)) return MIXES[i].id;
    for (size_t i = 0; i < ARRAY_LEN(PLAIN_TYPES); i++)
        if (!strcasecmp(name, quant_get(PLAIN_TYPES[i])->name)) return PLAIN_TYPES[i];
    err_set("unknown weight type '%s' (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K "
            "Q6_K Q3_K_M Q4_K_M Q5_K_M)",
            name);
    return -1;
}

const char *gen_type_name(int type) {
    int m = mix_row(type);
    if (m >= 0) return MIXES[m].name;
    if (type >= 0 && type < QT_COUNT) {
        const quant_traits *q = quant_get(type);
        if (q) return q->name;
    }
    return "?";
}

/* llama.cpp's general.file_type of a plain type (a K type maps to its _S
 * mix); -1 when it has none. */
static int file_type_of(int t) {
    int m = mix_row(t);
    if (m >= 0) return MIXES[m].file_type;
    switch (t) {
    case QT_F32:
        return 0;
    case QT_F16:
        return 1;
    case QT_Q4_0:
        return 2;
    case QT_Q4_1:
        return 3;
    case QT_Q8_0:
        return 7;
    case QT_Q5_0:
        return 8;
    case QT_Q5_1:
        return 9;
    case QT_Q2_K:
        return 10;
    case QT_Q3_K:
        return 11;
    case QT_Q4_K:
        return 14;
    case QT_Q5_K:
        return 16;
    case QT_Q6_K:
        return 18;
    case QT_BF16:
        return 32;
    default:
        return -1;
    }
}

/* llama.cpp's "use more bits" layer pattern: the first and last eighth of
 * the layers and every third one in between. */
static int more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* A type whose block does not divide the row length is replaced like
 * llama.cpp does (IQ4_NL, which we lack, becomes Q4_0), then F16. */
static int fit_type(int t, int64_t cols) {
    if (cols % quant_get(t)->block == 0) return t;
    switch (t) {
    case QT_Q2_K:
    case QT_Q3_K:
        t = QT_Q4_0;
        break;
    case QT_Q4_K:
        t = QT_Q5_0;
        break;
    case QT_Q5_K:
        t = QT_Q5_1;
        break;
    case QT_Q6_K:
        t = QT_Q8_0;
        break;
    default:
        break;
    }
    return cols % quant_get(t)->block == 0 ? t : QT_F16;
}

int gen_tensor_type(const gen_params *p, const char *name, int64_t cols) {
    int w = p->wtype, m = mix_row(w);
    int base = m >= 0 ? MIXES[m].base : w, t = base;
    int n_layer = p->shape ? p->shape->n_layer : 1, il = -1, off = 0;
    char what[64] = "";
    if (sscanf(name, "blk.%d.%n", &il, &off) == 1 && off > 0)
        snprintf(what, sizeof what, "%s", name + off);
    if (!strcmp(name, "token_embd.weight")) {
        if (p->embd_type >= 0)
            t = p->embd_type;
        else if (m >= 0 && !p->untied_output)
            t = QT_Q6_K; /* tied: it is the output too */
    } else if (!strcmp(name, "output.weight")) {
        if (p->embd_type >= 0)
            t = p->embd_type;
        else if (m >= 0)
            t = QT_Q6_K;
    } else if (m >= 0 && !strcmp(what, "attn_v.weight")) {
        if (w == GEN_MIX_Q3_K_M)
            t = il < 2 ? QT_Q5_K : QT_Q4_K;
        else if (more_bits(il, n_layer))
            t = QT_Q6_K;
    } else if (m >= 0 && !strcmp(what, "ffn_down.weight")) {
        if (w == GEN_MIX_Q3_K_M)
            t = il < n_layer / 16 ? QT_Q5_K : QT_Q4_K;
        else if (more_bits(il, n_layer))
            t = QT_Q6_K;
    } else if (w == GEN_MIX_Q3_K_M && !strcmp(what, "attn_output.weight")) {
        t = QT_Q4_K;
    }
    return fit_type(t, cols);
}

/* ---- random numbers ---- */

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(uint64_t seed, const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then mixed with the seed */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    uint64_t st = seed ^ h;
    return splitmix64(&st);
}

/* x[i] = mean + std * N(0,1), from its own stream (Box-Muller on pairs). */
static void fill_normal(float *x, int64_t n, uint64_t stream, float mean, float std) {
    uint64_t st = stream;
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = (double)((splitmix64(&st) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
        double u2 = (double)(splitmix64(&st) >> 11) * 0x1.0p-53;       /* [0, 1) */
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        x[i] = mean + std * (float)(r * cos(a));
        if (i + 1 < n) x[i + 1] = mean + std * (float)(r * sin(a));
    }
}

/* ---- the tensor list ---- */

typedef struct {
    char name[64];
    int type, n_dims;
    int64_t ne[2]; /* cols, rows */
    float mean, std;
    int bank; /* filled from a bank (2D weights in bank mode) */
    uint64_t seed;
    size_t row_bytes, size;
    uint64_t offset;
} gtensor;

typedef struct {
    gtensor *t;
    int n, cap;
} tlist;

static int add_tensor(tlist *l, const gen_params *p, const char *name, int64_t cols, int64_t rows,
                      float mean, float std) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        gtensor *t = xrealloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return -1;
        l->t = t;
        l->cap = cap;
    }
    gtensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = rows ? 2 : 1;
    t->ne[0] = cols;
    t->ne[1] = rows ? rows : 1;
    t->type = rows ? gen_tensor_type(p, name, cols) : QT_F32;
    t->mean = mean;
    t->std = std;
    t->seed = hash_name(p->seed, name);
    t->row_bytes = quant_row_size(t->type, cols);
    t->size = t->row_bytes * (size_t)t->ne[1];
    return 0;
}

static int build_tensors(tlist *l, const gen_params *p, int64_t n_vocab) {
    const gen_shape *s = p->shape;
    int64_t E = s->n_embd, F = s->n_ff, Q = (int64_t)s->n_head * s->head_dim,
            KV = (int64_t)s->n_head_kv * s->head_dim, D = s->head_dim;
    int gemma = !strcmp(s->arch, "gemma3");
    const float std = 0.02f, std_out = 0.02f / sqrtf(2.0f * (float)s->n_layer), nstd = 0.1f;
    char n[64];
    int rc = add_tensor(l, p, "token_embd.weight", E, n_vocab, 0, std);
    for (int il = 0; il < s->n_layer && !rc; il++) {
#define T(suffix, cols, rows, mean, sd)                                                            \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d.%s.weight", il, suffix);                                     \
        rc = rc ? rc : add_tensor(l, p, n, cols, rows, mean, sd);                                  \
    } while (0)
        T("attn_norm", E, 0, 1, nstd);
        T("attn_q", E, Q, 0, std);
        T("attn_k", E, KV, 0, std);
        T("attn_v", E, KV, 0, std);
        T("attn_output", Q, E, 0, std_out);
        if (gemma) {
            T("attn_q_norm", D, 0, 1, nstd);
            T("attn_k_norm", D, 0, 1, nstd);
            T("post_attention_norm", E, 0, 1, nstd);
        }
        T("ffn_norm", E, 0, 1, nstd);
        T("ffn_gate", E, F, 0, std);
        T("ffn_up", E, F, 0, std);
        T("ffn_down", F, E, 0, std_out);
        if (gemma) T("post_ffw_norm", E, 0, 1, nstd);
#undef T
    }
    if (!rc) rc = add_tensor(l, p, "output_norm.weight", E, 0, 1, nstd);
    if (!rc && p->untied_output) rc = add_tensor(l, p, "output.weight", E, n_vocab, 0, std);
    return rc;
}

/* ---- synthetic vocabulary ---- */

typedef struct {
    char **tok;
    int32_t *type;
    int n, cap;
    char **merge;
    int n_merge, cap_merge;
    int bos, eos, unk, pad, eot; /* -1 = none */
    int add_bos;
} svocab;

static void sv_free(svocab *v) {
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    for (int i = 0; i < v->n_merge; i++) free(v->merge[i]);
    free(v->tok);
    free(v->type);
    free(v->merge);
}

static int sv_find(const svocab *v, const char *s) {
    for (int i = 0; i < v->n; i++)
        if (!strcmp(v->tok[i], s)) return i;
    return -1;
}

static int sv_add(svocab *v, const char *s, int type) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 512;
        char **t = xrealloc(v->tok, (size_t)cap * sizeof *t);
        if (!t) return -1;
        v->tok = t;
        int32_t *ty = xrealloc(v->type, (size_t)cap * sizeof *ty);
        if (!ty) return -1;
        v->type = ty;
        v->cap = cap;
    }
    if (!(v->tok[v->n] = xstrdup(s))) return -1;
    v->type[v->n] = type;
    return v->n++;
}

static int sv_merge(svocab *v, const char *a, const char *b) {
    if (v->n_merge == v->cap_merge) {
        int cap = v->cap_merge ? 2 * v->cap_merge : 128;
        char **m = xrealloc(v->merge, (size_t)cap * sizeof *m);
        if (!m) return -1;
        v->merge = m;
        v->cap_merge = cap;
    }
    size_t la = strlen(a), lb = strlen(b);
    char *m = xmalloc(la + lb + 2);
    if (!m) return -1;
    memcpy(m, a, la);
    m[la] = ' ';
    memcpy(m + la + 1, b, lb + 1);
    v->merge[v->n_merge++] = m;
    return 0;
}

/* GPT-2's byte -> code point map: printable bytes stand for themselves, the
 * others are moved to 256 + k in byte order. */
static unsigned byte_cp(unsigned b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    unsigned k = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) k++;
    return 256 + k;
}

static int put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xC0 | (cp >> 6)); /* all code points here are < 0x800 */
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* Token text of a byte string in the byte-level alphabet. */
static void byte_text(const char *s, size_t n, char *out) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += put_utf8(out + k, byte_cp((uint8_t)s[i]));
    out[k] = 0;
}

/* Words whose merges make the vocab: each is merged left to right, one
 * character at a time (" the" -> "Ġ t", "Ġt h", "Ġth e"). */
static const char *const WORDS[] = {
    " the", " a",     " and",   " of",  " to",  " in",    " is",    " it",    " that", " you",
    " he",  " was",   " for",   " on",  " are", " with",  " as",    " be",    " this", " have",
    " not", " hello", " world", " one", " two", " three", " beast", " model", "the",   "ing",
    "er",   "ed",     "th",     "in",   "on",   "an",     "  ",     "    ",   "\n\n",  ".\n",
};

static int build_synth_vocab(svocab *v, int gemma, int64_t n_target) {
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->unk = v->pad = v->eot = -1;
    if (gemma) {
        /* Gemma's special ids and names, so its chat template works. */
        v->pad = sv_add(v, "<pad>", 3);
        v->eos = sv_add(v, "<eos>", 3);
        v->bos = sv_add(v, "<bos>", 3);
        v->unk = sv_add(v, "<unk>", 2);
        sv_add(v, "<start_of_turn>", 3);
        v->eot = sv_add(v, "<end_of_turn>", 3);
        v->add_bos = 1;
    } else {
        /* ChatML (as SmolLM2): bos <|im_start|>, eos <|im_end|>. */
        v->unk = sv_add(v, "<|endoftext|>", 3);
        v->bos = sv_add(v, "<|im_start|>", 3);
        v->eos = v->pad = sv_add(v, "<|im_end|>", 3);
        v->add_bos = 0;
    }
    if (v->n == 0) return -1;
    char buf[64];
    for (unsigned b = 0; b < 256; b++) {
        char c = (char)b;
        byte_text(&c, 1, buf);
        if (sv_add(v, buf, 1) < 0) return -1;
    }
    for (size_t w = 0; w < ARRAY_LEN(WORDS); w++) {
        const char *s = WORDS[w];
        size_t len = strlen(s);
        char left[64], right[16], merged[64];
        byte_text(s, 1, left);
        for (size_t i = 1; i < len; i++) {
            byte_text(s + i, 1, right);
            byte_text(s, i + 1, merged);
            if (sv_find(v, merged) < 0) {
                if (sv_merge(v, left, right) || sv_add(v, merged, 1) < 0) return -1;
            }
            snprintf(left, sizeof left, "%s", merged);
        }
    }
    for (int64_t i = 0; v->n < n_target; i++) {
        snprintf(buf, sizeof buf, "<|gen_filler_%" PRId64 "|>", i);
        if (sv_add(v, buf, 1) < 0) return -1;
    }
    return 0;
}

static void put_synth_vocab(gguf_writer *w, const svocab *v) {
    gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_w_str(w, "tokenizer.ggml.pre", "default");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, (uint64_t)v->n);
    gguf_w_arr_i32(w, "tokenizer.ggml.token_type", v->type, (uint64_t)v->n);
    gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merge, (uint64_t)v->n_merge);
    if (v->bos >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->unk >= 0) gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
    if (v->pad >= 0) gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
    if (v->eot >= 0) gguf_w_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)v->eot);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", false);
    gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", false);
}

/* Copy every tokenizer.* key of f; returns the token count or -1. */
static int64_t copy_vocab(gguf_writer *w, const gguf_file *f, const char *path) {
    const gguf_value *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
    if (!toks || toks->arr.type != GGUF_STRING || toks->arr.n == 0 ||
        toks->arr.n > ((uint64_t)1 << 24)) {
        err_set("%s has no usable tokenizer.ggml.tokens array", path);
        return -1;
    }
    for (int64_t i = 0; i < f->n_kv; i++) {
        gguf_str k = f->kv[i].key;
        if (k.len < 10 || k.len > 255 || memcmp(k.ptr, "tokenizer.", 10)) continue;
        char key[256];
        memcpy(key, k.ptr, k.len);
        key[k.len] = 0;
        gguf_w_value(w, key, &f->kv[i].val);
    }
    return (int64_t)toks->arr.n;
}

/* ---- validation ---- */

static int check_params(const gen_params *p) {
    if (!p || !p->shape) {
        err_set("gen: no parameters or no shape");
        return -1;
    }
    const gen_shape *s = p->shape;
    if (!s->arch || (strcmp(s->arch, "llama") && strcmp(s->arch, "gemma3"))) {
        err_set("gen: unsupported architecture '%s' (llama, gemma3)", s->arch ? s->arch : "(null)");
        return -1;
    }
    const int lim = 1 << 20;
    struct {
        const char *what;
        int v, max;
    } dims[] = {{"n_layer", s->n_layer, 512},
                {"n_embd", s->n_embd, lim},
                {"n_ff", s->n_ff, lim},
                {"n_head", s->n_head, 4096},
                {"n_head_kv", s->n_head_kv, 4096},
                {"head_dim", s->head_dim, 4096},
                {"n_ctx", s->n_ctx, 1 << 24}};
    for (size_t i = 0; i < ARRAY_LEN(dims); i++) {
        if (dims[i].v < 1 || dims[i].v > dims[i].max) {
            err_set("gen: %s = %d is out of range 1..%d", dims[i].what, dims[i].v, dims[i].max);
            return -1;
        }
    }
    if (s->n_head % s->n_head_kv) {
        err_set("gen: n_head %d is not a multiple of n_head_kv %d", s->n_head, s->n_head_kv);
        return -1;
    }
    if (s->head_dim % 2) {
        err_set("gen: head_dim %d must be even (RoPE rotates pairs)", s->head_dim);
        return -1;
    }
    if (!(s->rope_base > 0) || s->sliding_window < 0 || s->n_vocab < 0 || s->n_vocab > (1 << 24)) {
        err_set("gen: bad rope_base, sliding_window or n_vocab");
        return -1;
    }
    if (!plain_ok(p->wtype) && mix_row(p->wtype) < 0) {
        err_set("gen: weight type %d is not usable for weights", p->wtype);
        return -1;
    }
    if (p->fill < GEN_FILL_AUTO || p->fill > GEN_FILL_BANK) {
        err_set("gen: bad fill mode %d", p->fill);
        return -1;
    }
    if (p->embd_type != -1 && !plain_ok(p->embd_type)) {
        err_set("gen: embedding type %d is not usable for weights", p->embd_type);
        return -1;
    }
    return 0;
}

/* ---- tensor data ---- */

#define BANK_UNIT  256  /* elements per unit: a multiple of every block size */
#define BANK_UNITS 4096 /* units per bank (a power of two) */
#define BANK_MAX   32   /* distinct (type, scale) banks in one model */

/* The N(0,1) units (shared) and their quantizations at one (type, std). */
typedef struct {
    int type;
    float std;
    size_t unit_bytes;
    uint8_t *q; /* BANK_UNITS * unit_bytes */
} bank;

typedef struct {
    float *units; /* BANK_UNITS * BANK_UNIT, NULL until first needed */
    bank b[BANK_MAX];
    int n;
} bank_set;

typedef struct {
    const gtensor *t;
    int64_t row0, rows_per_task, row_end;
    uint8_t *out;       /* slice output, rows from row0 */
    float *scratch;     /* n_threads rows of t->ne[0] floats */
    const bank *bk;     /* bank mode, else NULL */
    size_t tail_bytes;  /* bank mode: bytes of the last, partial unit */
    const float *units; /* bank build: the float units */
} job;

static void bank_task(void *ctx, int task, int thread) {
    (void)thread;
    job *j = ctx;
    const bank *b = j->bk;
    const quant_traits *q = quant_get(b->type);
    float x[BANK_UNIT];
    for (int u = task * 64; u < (task + 1) * 64 && u < BANK_UNITS; u++) {
        const float *src = j->units + (size_t)u * BANK_UNIT;
        for (int e = 0; e < BANK_UNIT; e++) x[e] = b->std * src[e];
        q->quant(x, b->q + (size_t)u * b->unit_bytes, BANK_UNIT);
    }
}

/* The bank for (type, std), built on first use; NULL + err_set on failure. */
static const bank *get_bank(bank_set *bs, pool *pl, uint64_t seed, int type, float std) {
    for (int i = 0; i < bs->n; i++)
        if (bs->b[i].type == type && bs->b[i].std == std) return &bs->b[i];
    if (bs->n == BANK_MAX) {
        err_set("gen: too many weight banks");
        return NULL;
    }
    if (!bs->units) {
        if (!(bs->units = xmalloc((size_t)BANK_UNITS * BANK_UNIT * sizeof(float)))) return NULL;
        uint64_t s0 = hash_name(seed, "gen.bank");
        for (int u = 0; u < BANK_UNITS; u++) {
            uint64_t st = s0 + (uint64_t)u * 0xD1B54A32D192ED03ull;
            fill_normal(bs->units + (size_t)u * BANK_UNIT, BANK_UNIT, splitmix64(&st), 0, 1);
        }
    }
    bank *b = &bs->b[bs->n];
    b->type = type;
    b->std = std;
    b->unit_bytes = quant_row_size(type, BANK_UNIT);
    if (!(b->q = xmalloc((size_t)BANK_UNITS * b->unit_bytes))) return NULL;
    job j = {0};
    j.bk = b;
    j.units = bs->units;
    pool_run(pl, bank_task, &j, BANK_UNITS / 64);
    bs->n++;
    return b;
}

static void bank_free(bank_set *bs) {
    for (int i = 0; i < bs->n; i++) free(bs->b[i].q);
    free(bs->units);
}

static void gen_task(void *ctx, int task, int thread) {
    job *j = ctx;
    const gtensor *t = j->t;
    int64_t cols = t->ne[0];
    int64_t r0 = j->row0 + (int64_t)task * j->rows_per_task;
    int64_t r1 = MIN(r0 + j->rows_per_task, j->row_end);
    for (int64_t r = r0; r < r1; r++) {
        uint64_t st = t->seed + (uint64_t)r * 0xD1B54A32D192ED03ull;
        uint8_t *dst = j->out + (size_t)(r - j->row0) * t->row_bytes;
        if (j->bk) {
            const bank *b = j->bk;
            for (int64_t c = 0; c < cols; c += BANK_UNIT) {
                uint64_t u = splitmix64(&st) & (BANK_UNITS - 1);
                size_t n = cols - c >= BANK_UNIT ? b->unit_bytes : j->tail_bytes;
                memcpy(dst, b->q + u * b->unit_bytes, n);
                dst += n;
            }
        } else {
            float *x = j->scratch + (size_t)thread * (size_t)cols;
            fill_normal(x, cols, splitmix64(&st), t->mean, t->std);
            quant_get(t->type)->quant(x, dst, cols);
        }
    }
}

static int write_zeros(FILE *fp, size_t n) {
    static const uint8_t z[GEN_ALIGN];
    return n && fwrite(z, 1, n, fp) != n ? -1 : 0;
}

static int write_data(FILE *fp, const tlist *l, pool *pl, const gen_params *p) {
    int64_t max_cols = 1;
    size_t max_row = 1, total = 0, done = 0;
    for (int i = 0; i < l->n; i++) {
        max_cols = MAX(max_cols, l->t[i].ne[0]);
        max_row = MAX(max_row, l->t[i].row_bytes);
        total += l->t[i].size;
    }
    int nt = pool_threads(pl);
    size_t slice_cap = MAX(GEN_SLICE_BYTES, max_row);
    float *scratch = xmalloc((size_t)nt * (size_t)max_cols * sizeof(float));
    uint8_t *out = xmalloc(slice_cap);
    bank_set bs = {0};
    int rc = scratch && out ? 0 : -1;
    for (int i = 0; i < l->n && !rc; i++) {
        const gtensor *t = &l->t[i];
        const bank *bk = NULL;
        if (t->bank && !(bk = get_bank(&bs, pl, p->seed, t->type, t->std))) {
            rc = -1;
            break;
        }
        int64_t rows = t->ne[1], slice_rows = (int64_t)(slice_cap / t->row_bytes);
        int64_t per_task = MAX(1, (bk ? 16 : 1) * GEN_TASK_ELEMS / t->ne[0]);
        for (int64_t r0 = 0; r0 < rows && !rc; r0 += slice_rows) {
            job j = {t, r0, per_task, MIN(rows, r0 + slice_rows), out, scratch, bk, 0, NULL};
            if (bk) j.tail_bytes = quant_row_size(t->type, t->ne[0] % BANK_UNIT);
            int64_t n_rows = j.row_end - r0;
            pool_run(pl, gen_task, &j, (int)((n_rows + per_task - 1) / per_task));
            size_t bytes = (size_t)n_rows * t->row_bytes;
            errno = 0;
            if (fwrite(out, 1, bytes, fp) != bytes) rc = -1;
            done += bytes;
            if (p->progress) p->progress(p->progress_user, (double)done / (double)total);
        }
        if (!rc) rc = write_zeros(fp, (GEN_ALIGN - t->size % GEN_ALIGN) % GEN_ALIGN);
        if (rc) err_set("gen: write failed: %s", strerror(errno ? errno : EIO));
    }
    bank_free(&bs);
    free(scratch);
    free(out);
    return rc;
}

/* ---- the file ---- */

static void put_hparams(gguf_writer *w, const gen_params *p, int64_t n_vocab) {
    const gen_shape *s = p->shape;
    const char *a = s->arch;
    char k[128];
#define KU(key, v)                                                                                 \
    snprintf(k, sizeof k, "%s." key, a);                                                           \
    gguf_w_u32(w, k, (uint32_t)(v));
#define KF(key, v)                                                                                 \
    snprintf(k, sizeof k, "%s." key, a);                                                           \
    gguf_w_f32(w, k, (float)(v));
    KU("context_length", s->n_ctx);
    KU("embedding_length", s->n_embd);
    KU("block_count", s->n_layer);
    KU("feed_forward_length", s->n_ff);
    KU("attention.head_count", s->n_head);
    KU("attention.head_count_kv", s->n_head_kv);
    KU("attention.key_length", s->head_dim);
    KU("attention.value_length", s->head_dim);
    KU("rope.dimension_count", s->head_dim);
    KU("vocab_size", n_vocab);
    KF("rope.freq_base", s->rope_base);
    KF("attention.layer_norm_rms_epsilon", strcmp(a, "gemma3") ? 1e-5 : 1e-6);
    if (s->sliding_window > 0) {
        KU("attention.sliding_window", s->sliding_window);
    }
#undef KU
#undef KF
}

/* The key/value part of the header, encoded by the gguf writer, or NULL. */
static uint8_t *build_kv(const gen_params *p, int64_t *n_vocab, size_t *size) {
    const gen_shape *s = p->shape;
    gguf_writer *w = gguf_writer_new();
    if (!w) return NULL;
    char name[160];
    gguf_w_str(w, "general.architecture", s->arch);
    gguf_w_str(w, "general.type", "model");
    snprintf(name, sizeof name, "beast-gen %s %s seed %" PRIu64, s->name ? s->name : "custom",
             gen_type_name(p->wtype), p->seed);
    gguf_w_str(w, "general.name", name);
    int ft = file_type_of(p->wtype);
    if (ft >= 0) gguf_w_u32(w, "general.file_type", (uint32_t)ft);
    gguf_w_u32(w, "general.quantization_version", 2);

    int ok = 1;
    if (p->vocab_from) {
        gguf_file *f = gguf_open(p->vocab_from);
        if (!f) {
            err_prefix("gen: vocab");
            ok = 0;
        } else {
            *n_vocab = copy_vocab(w, f, p->vocab_from);
            ok = *n_vocab > 0;
            gguf_close(f);
        }
    } else {
        svocab v;
        if (build_synth_vocab(&v, !strcmp(s->arch, "gemma3"), s->n_vocab) == 0) {
            put_synth_vocab(w, &v);
            *n_vocab = v.n;
        } else {
            ok = 0;
        }
        sv_free(&v);
    }
    uint8_t *buf = NULL;
    if (ok) put_hparams(w, p, *n_vocab);
    if (ok && gguf_writer_to_mem(w, 0, &buf, size) != 0) buf = NULL;
    gguf_writer_free(w);
    return buf;
}

static void put_le(uint8_t *dst, uint64_t v, int n) {
    for (int i = 0; i < n; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

/* Tensor infos after the key/values, offsets assigned. */
static uint8_t *build_infos(tlist *l, size_t *size) {
    size_t n = 0;
    for (int i = 0; i < l->n; i++) n += 8 + strlen(l->t[i].name) + 4 + 8 * 2 + 4 + 8;
    uint8_t *b = xmalloc(n ? n : 1), *o = b;
    if (!b) return NULL;
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        gtensor *t = &l->t[i];
        size_t nl = strlen(t->name);
        put_le(o, nl, 8);
        memcpy(o + 8, t->name, nl);
        o += 8 + nl;
        put_le(o, (uint64_t)t->n_dims, 4);
        o += 4;
        for (int d = 0; d < t->n_dims; d++, o += 8) put_le(o, (uint64_t)t->ne[d], 8);
        put_le(o, (uint64_t)t->type, 4);
        put_le(o + 4, off, 8);
        o += 12;
        t->offset = off;
        off += (t->size + GEN_ALIGN - 1) / GEN_ALIGN * GEN_ALIGN;
    }
    *size = (size_t)(o - b);
    return b;
}

int gen_write(const char *path, const gen_params *p) {
    if (check_params(p)) return -1;
    if (!path) {
        err_set("gen: no output path");
        return -1;
    }
    int64_t n_vocab = 0;
    size_t kv_size = 0, info_size = 0;
    tlist l = {0};
    uint8_t *kv = NULL, *info = NULL;
    pool *pl = NULL;
    FILE *fp = NULL;
    int rc = -1;
    if (!(kv = build_kv(p, &n_vocab, &kv_size))) goto done;
    /* The writer laid out "GGUF", version 3, n_tensors = 0, n_kv, key/values. */
    if (kv_size < 24 || memcmp(kv, "GGUF", 4) || kv[4] != 3) {
        err_set("gen: unexpected header from the gguf writer");
        goto done;
    }
    for (int i = 8; i < 16; i++) {
        if (kv[i]) {
            err_set("gen: unexpected header from the gguf writer");
            goto done;
        }
    }
    if (build_tensors(&l, p, n_vocab)) goto done;
    int64_t n_weights = 0;
    for (int i = 0; i < l.n; i++)
        if (l.t[i].n_dims == 2) n_weights += l.t[i].ne[0] * l.t[i].ne[1];
    int fill = p->fill != GEN_FILL_AUTO        ? p->fill
               : n_weights <= (int64_t)1 << 25 ? GEN_FILL_EXACT
                                               : GEN_FILL_BANK;
    for (int i = 0; i < l.n; i++) l.t[i].bank = fill == GEN_FILL_BANK && l.t[i].n_dims == 2;
    if (!(info = build_infos(&l, &info_size))) goto done;
    put_le(kv + 8, (uint64_t)l.n, 8);
    if (!(pl = pool_new(p->n_threads > 0 ? p->n_threads : 1))) goto done;
    if (!(fp = fopen(path, "wb"))) {
        err_set("gen: cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    size_t hdr = kv_size + info_size;
    errno = 0;
    if (fwrite(kv, 1, kv_size, fp) != kv_size || fwrite(info, 1, info_size, fp) != info_size ||
        write_zeros(fp, (GEN_ALIGN - hdr % GEN_ALIGN) % GEN_ALIGN)) {
        err_set("gen: write failed: %s", strerror(errno ? errno : EIO));
        goto done;
    }
    if (write_data(fp, &l, pl, p)) goto done;
    rc = 0;
done:
    if (fp) {
        if (fclose(fp) != 0 && rc == 0) {
            err_set("gen: %s: close failed: %s", path, strerror(errno));
            rc = -1;
        }
        if (rc) remove(path);
    }
    if (rc) err_prefix("%s", path);
    pool_free(pl);
    free(kv);
    free(info);
    free(l.t);
    return rc;
}
