/* model.h: a loaded model: hyperparameters read from GGUF metadata, weight
 * handles bound to a backend, the tokenizer and the chat template.
 *
 * Architectures are rows of a table (arch.c): each row says how to read its
 * hyperparameters and which per-layer features its forward pass uses, so a
 * new transformer family is a new row, not a new forward pass. */
#ifndef BEAST_MODEL_H
#define BEAST_MODEL_H

#include "backend/backend.h"
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

struct beast_model {
    gguf_file *file;
    char *path;
    model_hparams hp;
    tok_vocab *vocab;
    char *chat_template; /* from the file, or a built-in; NULL = none */
    backend *bk;         /* the backend the weights are bound to */
    bk_weight tok_embd, output_norm, output;
    model_layer *layers;
    int n_threads;
    char gpu_note[256]; /* why the GPU is not used, when it is not */
};

/* Read and check hyperparameters for f's architecture. */
int model_read_hparams(const gguf_file *f, model_hparams *hp);

#endif
