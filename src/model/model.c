/* model.c: beast_model_load and friends: open the GGUF, read hyperparameters,
 * pick the backends (all on the GPU, all on the CPU, or the layers split
 * between them: model.h), bind every weight (checked for presence, shape
 * and type) to its layer's backend, load the tokenizer and pick the chat
 * template. */
#include "beast.h"
#include "model/model.h"
#include "quant/quant.h"
#include "template/chat.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *beast_error(void) {
    return err_get();
}

beast_model_params beast_model_default_params(void) {
    beast_model_params p = {0};
    p.n_gpu_layers = -1;
    return p;
}

/* Find a tensor by name, check it is [rows x cols] (a vector when rows is 0)
 * of a type we compute with and make it usable on bk. Optional tensors may
 * be absent. */
static int bind(beast_model *m, backend *bk, bk_weight *w, const char *name, int64_t rows,
                int64_t cols, int optional) {
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    if (!t) {
        if (optional) return 0;
        err_set("missing tensor '%s'", name);
        return -1;
    }
    int64_t want_dims = rows ? 2 : 1;
    int64_t r = t->n_dims >= 2 ? t->ne[1] : 0;
    if (t->n_dims != want_dims || t->ne[0] != cols || r != rows) {
        err_set("tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                (long long)t->ne[0], (long long)r, (long long)cols, (long long)rows);
        return -1;
    }
    if (!quant_supported(t->type)) {
        const quant_traits *qt = quant_get(t->type);
        err_set("tensor '%s' has type %s, which is not supported", name, qt ? qt->name : "?");
        return -1;
    }
    if (!rows && t->type != QT_F32) {
        err_set("tensor '%s' must be F32", name);
        return -1;
    }
    w->type = t->type;
    w->rows = rows ? rows : 1;
    w->cols = cols;
    w->host = t->data;
    w->data = NULL;
    return bk->ops->weight_init(bk, w);
}

static int bind_layer(beast_model *m, int il) {
    const model_hparams *hp = &m->hp;
    model_layer *L = &m->layers[il];
    backend *bk = model_layer_bk(m, il);
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
            KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, D = hp->head_dim;
    char n[128];
#define B(field, suffix, rows, cols, opt)                                                          \
    snprintf(n, sizeof n, "blk.%d.%s.weight", il, suffix);                                         \
    if (bind(m, bk, &L->field, n, rows, cols, opt)) return -1;
    B(attn_norm, "attn_norm", 0, E, 0);
    B(wq, "attn_q", Q, E, 0);
    B(wk, "attn_k", KV, E, 0);
    B(wv, "attn_v", KV, E, 0);
    B(wo, "attn_output", E, Q, 0);
    B(ffn_norm, "ffn_norm", 0, E, 0);
    B(w_gate, "ffn_gate", F, E, 0);
    B(w_up, "ffn_up", F, E, 0);
    B(w_down, "ffn_down", E, F, 0);
    if (hp->qk_norm) {
        B(q_norm, "attn_q_norm", 0, D, 0);
        B(k_norm, "attn_k_norm", 0, D, 0);
    }
    if (hp->post_norms) {
        B(post_attn_norm, "post_attention_norm", 0, E, 0);
        B(post_ffn_norm, "post_ffw_norm", 0, E, 0);
    }
#undef B
    return 0;
}

static void release(backend *bk, bk_weight *w) {
    if (w->data) bk->ops->weight_release(bk, w);
}

/* Every binding on its own backend, before the backends go. */
static void release_all(beast_model *m) {
    if (!m->bk) return;
    if (!m->output_shared) release(m->bk, &m->output);
    release(m->bk, &m->output_norm);
    release(model_layer_bk(m, 0), &m->tok_embd);
    if (m->layers)
        for (int il = 0; il < m->hp.n_layer; il++) {
            bk_weight *w = (bk_weight *)&m->layers[il];
            for (size_t j = 0; j < sizeof(model_layer) / sizeof(bk_weight); j++)
                release(model_layer_bk(m, il), &w[j]);
        }
}

void beast_model_free(beast_model *m) {
    if (!m) return;
    release_all(m);
    free(m->layers);
    if (m->bk) m->bk->ops->destroy(m->bk);
    if (m->bk_lo) m->bk_lo->ops->destroy(m->bk_lo);
    tok_free(m->vocab);
    free(m->chat_template);
    gguf_close(m->file);
    free(m->path);
    free(m);
}

void model_set_deterministic(beast_model *m, int on) {
    m->bk->deterministic = on;
    if (m->bk_lo) m->bk_lo->deterministic = on;
}

void model_set_float_act(beast_model *m, int on) {
    m->bk->float_act = on;
    if (m->bk_lo) m->bk_lo->float_act = on;
}

static backend *cuda_accel(int n_threads) {
    (void)n_threads;
    return bk_cuda_new(0);
}

/* The backends for n_gpu_layers (model.h: the layer split). */
static int pick_backends(beast_model *m, const beast_model_params *p, model_accel_fn accel) {
    int n_layer = m->hp.n_layer, n_gpu = p->n_gpu_layers;
    if (n_gpu < -1) {
        err_set("n_gpu_layers %d: use -1 (all layers on the GPU), 0 (CPU only) or a layer count",
                n_gpu);
        return -1;
    }
    if (n_gpu < 0 || n_gpu > n_layer) n_gpu = n_layer;
    /* the GPU when asked for (default: all layers) and there is one; else the
     * CPU. Why there was none is kept for `beast run -v` (beast_model_info). */
    if (n_gpu > 0 && !(m->bk = accel(m->n_threads)))
        snprintf(m->gpu_note, sizeof m->gpu_note, "%s", err_get());
    if (!m->bk) return (m->bk = bk_cpu_new(m->n_threads)) ? 0 : -1;
    m->n_gpu_layers = n_gpu;
    if (n_gpu < n_layer) {
        if (!(m->bk_lo = bk_cpu_new(m->n_threads))) return -1;
        m->split = n_layer - n_gpu;
    }
    return 0;
}

static int load(beast_model *m, const beast_model_params *p, model_accel_fn accel) {
    if (!(m->file = gguf_open(m->path))) return -1; /* its message names the file */
    if (model_read_hparams(m->file, &m->hp)) goto named;
    if (!(m->vocab = tok_load(m->file))) goto named;
    m->hp.n_vocab = tok_n_vocab(m->vocab);

    m->n_threads = p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->n_threads < 1) m->n_threads = 1;
    if (pick_backends(m, p, accel)) goto named;
    model_set_deterministic(m, p->deterministic);

    const model_hparams *hp = &m->hp;
    backend *bk_in = model_layer_bk(m, 0);
    if (bind(m, bk_in, &m->tok_embd, "token_embd.weight", hp->n_vocab, hp->n_embd, 0)) goto named;
    if (bind(m, m->bk, &m->output_norm, "output_norm.weight", 0, hp->n_embd, 0)) goto named;
    if (bind(m, m->bk, &m->output, "output.weight", hp->n_vocab, hp->n_embd, 1)) goto named;
    if (!m->output.host) { /* tied embeddings: the output matrix is token_embd */
        if (bk_in == m->bk) {
            m->output = m->tok_embd;
            m->output_shared = true;
        } else if (bind(m, m->bk, &m->output, "token_embd.weight", hp->n_vocab, hp->n_embd, 0)) {
            goto named;
        }
    }
    if (!(m->layers = xcalloc((size_t)hp->n_layer, sizeof *m->layers))) goto named;
    for (int il = 0; il < hp->n_layer; il++)
        if (bind_layer(m, il)) goto named;

    gguf_str t;
    if (gguf_get_str(m->file, "tokenizer.chat_template", &t)) {
        m->chat_template = xstrndup(t.ptr, t.len);
    } else {
        const char *b = chat_builtin(hp->arch == ARCH_GEMMA3 ? "gemma3" : "chatml");
        if (b) m->chat_template = xstrdup(b);
    }
    return 0;
named:
    err_prefix("%s", m->path);
    return -1;
}

beast_model *model_load_with(const char *path, const beast_model_params *p, model_accel_fn accel) {
    beast_model_params def = beast_model_default_params();
    if (!p) p = &def;
    beast_model *m = xcalloc(1, sizeof *m);
    if (!m) return NULL;
    if (!(m->path = xstrdup(path)) || load(m, p, accel ? accel : cuda_accel)) {
        beast_model_free(m);
        return NULL;
    }
    return m;
}

beast_model *beast_model_load(const char *path, const beast_model_params *p) {
    return model_load_with(path, p, NULL);
}

void beast_model_get_info(const beast_model *m, beast_model_info *o) {
    memset(o, 0, sizeof *o);
    const model_hparams *hp = &m->hp;
    o->arch = hp->arch_name;
    gguf_str s;
    static _Thread_local char name[128];
    name[0] = 0;
    if (gguf_get_str(m->file, "general.name", &s))
        snprintf(name, sizeof name, "%.*s", (int)MIN(s.len, 127), s.ptr);
    o->name = name;
    o->n_layer = hp->n_layer;
    o->n_embd = hp->n_embd;
    o->n_head = hp->n_head;
    o->n_head_kv = hp->n_head_kv;
    o->head_dim = hp->head_dim;
    o->n_ff = hp->n_ff;
    o->n_vocab = hp->n_vocab;
    o->n_ctx_train = hp->n_ctx_train;
    o->sliding_window = hp->swa_window;
    o->rope_base = hp->rope_base;
    o->file_size = m->file->size;
    o->kv_bytes_per_token = (size_t)hp->n_layer * 2 * hp->n_head_kv * hp->head_dim * 2;
    o->backend = m->bk->ops->name;
    o->gpu_note = m->gpu_note;
    o->n_gpu_layers = m->n_gpu_layers;
    for (int64_t i = 0; i < m->file->n_tensors; i++) {
        const gguf_tensor *t = &m->file->tensors[i];
        int64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) ne *= t->ne[d];
        o->n_params += ne;
        o->weight_bytes += t->size;
        const quant_traits *qt = quant_get(t->type);
        const char *tn = qt ? qt->name : "?";
        int k = 0;
        while (k < o->n_types && strcmp(o->type_names[k], tn)) k++;
        if (k == o->n_types) {
            if (k == (int)ARRAY_LEN(o->type_names)) continue;
            o->type_names[o->n_types++] = tn;
        }
        o->type_counts[k]++;
    }
    /* a decoded token reads every weight once, but only one embedding row
     * unless the embedding is also the output matrix */
    size_t embd = quant_row_size(m->tok_embd.type, m->tok_embd.cols) * (size_t)m->tok_embd.rows;
    o->bytes_per_token = o->weight_bytes;
    if (m->output.host != m->tok_embd.host)
        o->bytes_per_token -= embd - quant_row_size(m->tok_embd.type, m->tok_embd.cols);
}

/* ---- tokenizer and chat wrappers ---- */
int beast_n_vocab(const beast_model *m) {
    return m->hp.n_vocab;
}
int32_t beast_token_bos(const beast_model *m) {
    return tok_bos(m->vocab);
}
int32_t beast_token_eos(const beast_model *m) {
    return tok_eos(m->vocab);
}
bool beast_token_is_eog(const beast_model *m, int32_t t) {
    return tok_is_eog(m->vocab, t);
}

int beast_tokenize(const beast_model *m, const char *text, size_t len, bool add_special,
                   bool parse_special, int32_t *out, int max) {
    int flags = (add_special ? TOK_ADD_SPECIAL : 0) | (parse_special ? TOK_PARSE_SPECIAL : 0);
    return tok_encode(m->vocab, text, len, flags, out, max);
}

int beast_tokenize_alloc(const beast_model *m, const char *text, size_t len, bool add_special,
                         bool parse_special, int32_t **out) {
    /* a first guess of one token per byte (capped), then the exact size */
    int cap = (int)(len < (1u << 26) ? len : (1u << 26)) + 16;
    int32_t *buf = xmalloc((size_t)cap * sizeof *buf);
    if (!buf) return -1;
    int n = beast_tokenize(m, text, len, add_special, parse_special, buf, cap);
    if (n > cap) {
        free(buf);
        if (!(buf = xmalloc((size_t)n * sizeof *buf))) return -1;
        n = beast_tokenize(m, text, len, add_special, parse_special, buf, n);
    }
    if (n < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return n;
}

int beast_token_piece(const beast_model *m, int32_t tok, char *buf, int cap, bool special) {
    if (tok < 0 || tok >= m->hp.n_vocab) {
        err_set("token id %d out of range", tok);
        return -1;
    }
    return tok_piece(m->vocab, tok, buf, cap, special);
}

int beast_chat_render(const beast_model *m, const beast_chat_msg *msgs, int n,
                      bool add_generation_prompt, char **out) {
    if (!m->chat_template) {
        err_set("the model has no chat template");
        return -1;
    }
    char bos[256] = "", eos[256] = "";
    int32_t b = tok_bos(m->vocab), e = tok_eos(m->vocab);
    if (b >= 0) {
        int k = tok_piece(m->vocab, b, bos, sizeof bos - 1, true);
        bos[k > 0 && k < (int)sizeof bos ? k : 0] = 0;
    }
    if (e >= 0) {
        int k = tok_piece(m->vocab, e, eos, sizeof eos - 1, true);
        eos[k > 0 && k < (int)sizeof eos ? k : 0] = 0;
    }
    return chat_render(m->chat_template, (const chat_msg *)msgs, n, add_generation_prompt, bos, eos,
                       out);
}
