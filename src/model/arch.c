/* arch.c: per-architecture hyperparameter reading.
 *
 * Each supported architecture is a row: its GGUF name and a function that
 * fills the architecture-specific parts of model_hparams. Everything common
 * (block count, embedding size, heads, RoPE base, norm epsilon) is read once
 * in model_read_hparams with the "<arch>." key prefix. */
#include "model/model.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>

static bool get_i(const gguf_file *f, const char *arch, const char *key, int64_t *out) {
    char k[256];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_get_int(f, k, out);
}

static bool get_f(const gguf_file *f, const char *arch, const char *key, double *out) {
    char k[256];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_get_float(f, k, out);
}

static void llama_hparams(const gguf_file *f, model_hparams *hp) {
    (void)f;
    hp->rope_neox = false; /* GGUF llama stores q/k permuted for interleaved pairs */
    hp->act = BK_ACT_SILU;
    hp->embd_scale = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
}

static void gemma3_hparams(const gguf_file *f, model_hparams *hp) {
    hp->rope_neox = true;
    hp->act = BK_ACT_GELU_TANH;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->qk_norm = true;
    hp->post_norms = true;
    /* Local (sliding-window) layers use a fixed RoPE base of 10000; every
     * sixth layer is global and uses the file's base. */
    hp->rope_base_swa = 10000.0f;
    int64_t w = 0;
    if (get_i(f, "gemma3", "attention.sliding_window", &w) && w > 0) {
        hp->swa_window = (int)w;
        for (int i = 0; i < hp->n_layer; i++) hp->swa_layer[i] = (i % 6) != 5;
    }
}

static const struct {
    const char *name;
    model_arch arch;
    void (*fill)(const gguf_file *f, model_hparams *hp);
} ARCHS[] = {
    {"llama", ARCH_LLAMA, llama_hparams},
    {"gemma3", ARCH_GEMMA3, gemma3_hparams},
};

int model_read_hparams(const gguf_file *f, model_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    gguf_str as;
    if (!gguf_get_str(f, "general.architecture", &as)) {
        err_set("missing general.architecture");
        return -1;
    }
    char arch[64];
    snprintf(arch, sizeof arch, "%.*s", (int)MIN(as.len, 63), as.ptr);
    int row = -1;
    for (size_t i = 0; i < ARRAY_LEN(ARCHS); i++)
        if (!strcmp(arch, ARCHS[i].name)) row = (int)i;
    if (row < 0) {
        err_set("unsupported architecture '%s' (supported: llama, gemma3)", arch);
        return -1;
    }
    hp->arch = ARCHS[row].arch;
    hp->arch_name = ARCHS[row].name;

    int64_t v;
    struct {
        const char *key;
        int *dst;
        int required;
    } ints[] = {
        {"block_count", &hp->n_layer, 1},
        {"embedding_length", &hp->n_embd, 1},
        {"feed_forward_length", &hp->n_ff, 1},
        {"attention.head_count", &hp->n_head, 1},
        {"attention.head_count_kv", &hp->n_head_kv, 0},
        {"context_length", &hp->n_ctx_train, 0},
        {"attention.key_length", &hp->head_dim, 0},
        {"rope.dimension_count", &hp->n_rot, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(ints); i++) {
        if (!get_i(f, arch, ints[i].key, &v)) {
            if (ints[i].required) {
                err_set("missing %s.%s", arch, ints[i].key);
                return -1;
            }
            continue;
        }
        if (v <= 0 || v > (1 << 24)) {
            err_set("%s.%s = %lld is out of range", arch, ints[i].key, (long long)v);
            return -1;
        }
        *ints[i].dst = (int)v;
    }
    if (hp->n_layer > MODEL_MAX_LAYERS) {
        err_set("%d layers is more than the supported %d", hp->n_layer, MODEL_MAX_LAYERS);
        return -1;
    }
    if (!hp->n_head_kv) hp->n_head_kv = hp->n_head;
    if (!hp->head_dim) hp->head_dim = hp->n_embd / hp->n_head;
    if (!hp->n_rot) hp->n_rot = hp->head_dim;
    if (!hp->n_ctx_train) hp->n_ctx_train = 2048;
    if (hp->n_head % hp->n_head_kv) {
        err_set("head_count %d is not a multiple of head_count_kv %d", hp->n_head, hp->n_head_kv);
        return -1;
    }
    if (get_i(f, arch, "attention.value_length", &v) && v != hp->head_dim) {
        err_set("key_length %d != value_length %lld is not supported", hp->head_dim, (long long)v);
        return -1;
    }
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2) {
        err_set("rope dimension %d does not fit head size %d", hp->n_rot, hp->head_dim);
        return -1;
    }
    double d;
    hp->rope_base = get_f(f, arch, "rope.freq_base", &d) ? (float)d : 10000.0f;
    hp->rope_base_swa = hp->rope_base;
    hp->rope_freq_scale = 1.0f;
    if (get_f(f, arch, "rope.scaling.factor", &d) && d > 0) {
        gguf_str st;
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
        if (gguf_get_str(f, k, &st) && !gguf_str_eq(st, "linear") && !gguf_str_eq(st, "none")) {
            err_set("unsupported rope scaling type '%.*s'", (int)st.len, st.ptr);
            return -1;
        }
        if (!gguf_get_str(f, k, &st) || gguf_str_eq(st, "linear"))
            hp->rope_freq_scale = 1.0f / (float)d;
    }
    hp->norm_eps = get_f(f, arch, "attention.layer_norm_rms_epsilon", &d) ? (float)d : 1e-5f;
    ARCHS[row].fill(f, hp);
    return 0;
}
