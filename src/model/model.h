/* model.h: a loaded model: hyperparameters read from GGUF metadata, weight
 * handles bound to backends, the tokenizer and the chat template.
 *
 * Architectures are rows of a table (arch.c): each row says how to read its
 * hyperparameters and which per-layer features its forward pass uses, so a
 * new transformer family is a new row, not a new forward pass. */
#ifndef BEAST_MODEL_H
#define BEAST_MODEL_H

#include "backend/backend.h"
#include "beast.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>

#define MODEL_MAX_LAYERS 512

typedef enum { ARCH_LLAMA = 0, ARCH_GEMMA3, ARCH_COUNT } model_arch;

typedef struct {
    model_arch arch;
    const char *arch_name;
    int n_layer, n_embd, n_ff, n_vocab, n_ctx_train;
    int n_head, n_head_kv, head_dim; /* head_dim = key/value length */
    int n_rot;                       /* rotary dims per head */
    float rope_base, rope_base_swa, rope_freq_scale;
    bool rope_neox; /* rotate halves (NeoX) instead of interleaved pairs */
    float norm_eps;
    float embd_scale; /* input embedding multiplier (Gemma: sqrt(n_embd)) */
    float attn_scale; /* q.k multiplier */
    bk_act act;       /* feed-forward gate activation */
    bool qk_norm;     /* per-head RMSNorm of q and k (Gemma 3) */
    bool post_norms;  /* RMSNorm after attention and FFN, before the residual */
    int swa_window;   /* sliding window for layers marked in swa_layer */
    bool swa_layer[MODEL_MAX_LAYERS];
} model_hparams;

typedef struct {
    bk_weight attn_norm, wq, wk, wv, wo;
    bk_weight q_norm, k_norm, post_attn_norm;
    bk_weight ffn_norm, w_gate, w_up, w_down, post_ffn_norm;
} model_layer;

/* Layer split (partial GPU offload, beast_model_params.n_gpu_layers = N with
 * 0 < N < n_layer): layers il < split run on bk_lo, a CPU backend, with the
 * token embedding; layers il >= split (the last N, as llama.cpp does), the
 * output norm and the output matrix run on bk, the GPU. Without a split
 * (split 0, bk_lo NULL) everything is on bk. So bk is always the backend of
 * the last layer and the logits (the context reads logits and candidates
 * there). Each layer's weights and KV cache live on its layer's backend. */
struct beast_model {
    gguf_file *file;
    char *path;
    model_hparams hp;
    tok_vocab *vocab;
    char *chat_template; /* from the file, or a built-in; NULL = none */
    backend *bk;         /* last layers, output norm and output matrix */
    backend *bk_lo;      /* layers below split and tok_embd when split; else NULL */
    int split;           /* first layer on bk (0: no split) */
    int n_gpu_layers;    /* layers on the accelerator (the GPU); 0: all on the CPU */
    bk_weight tok_embd, output_norm, output;
    bool output_shared; /* output is tok_embd's binding (tied, one backend) */
    model_layer *layers;
    int n_threads;
    char gpu_note[256]; /* why the GPU is not used, when it is not */
};

/* The backend of layer il (il = 0 also runs the token embedding). */
static inline backend *model_layer_bk(const beast_model *m, int il) {
    return il < m->split ? m->bk_lo : m->bk;
}

/* Set a backend.h flag on every backend of m (before any compute). */
void model_set_deterministic(beast_model *m, int on);
void model_set_float_act(beast_model *m, int on);

/* Read and check hyperparameters for f's architecture. */
int model_read_hparams(const gguf_file *f, model_hparams *hp);

/* beast_model_load with another accelerator: `accel` makes the backend that
 * takes the offloaded layers (beast_model_load: the CUDA backend). It
 * returns NULL + err_set when there is none; then the CPU runs everything
 * and the message is kept in gpu_note. Tests pass a second CPU backend to
 * run the layer split on the CPU (tests/test_split.c). Not public API. */
typedef backend *(*model_accel_fn)(int n_threads);
beast_model *model_load_with(const char *path, const beast_model_params *p, model_accel_fn accel);

#endif
