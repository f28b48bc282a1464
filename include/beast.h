/* beast.h: the public C API of the beast inference engine.
 *
 *   beast_model    a loaded GGUF model: weights (used in place from the
 *                  mmapped file on the CPU), hyperparameters, tokenizer,
 *                  chat template. Read-only after load; share it freely.
 *   beast_ctx      an inference context: KV cache for up to n_seq sequences,
 *                  scratch buffers, the backend. One thread at a time.
 *   beast_batch    tokens of one or more sequences to run in one forward
 *                  pass (prompt prefill and decoding share the same path).
 *
 * Every function that can fail returns NULL or a negative number and leaves
 * one line in beast_error(). Nothing here aborts on bad input. */
#ifndef BEAST_H
#define BEAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct beast_model beast_model;
typedef struct beast_ctx beast_ctx;

/* The last error of the calling thread, one line. */
const char *beast_error(void);

/* ---- model ---- */
typedef struct {
    int n_threads;      /* CPU threads for compute; 0 = all cores */
    int n_gpu_layers;   /* layers on the GPU when one is present: -1 = all (default),
                           0 = CPU only, N = the last N layers (the first ones and the
                           token embedding on the CPU; the output goes with the last
                           layer); N >= n_layer = all */
    bool deterministic; /* every token's result independent of the batch it is in
                           (fixed reduction order; slower batches) */
} beast_model_params;

beast_model_params beast_model_default_params(void);
beast_model *beast_model_load(const char *path, const beast_model_params *p);
void beast_model_free(beast_model *m);

typedef struct {
    const char *arch; /* "llama", "gemma3" */
    const char *name; /* general.name or "" */
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train;
    int sliding_window; /* 0 = none */
    double rope_base;
    int64_t n_params;
    size_t file_size;
    size_t weight_bytes;       /* bytes of all tensors */
    size_t kv_bytes_per_token; /* KV cache bytes per position (all layers, K+V) */
    size_t bytes_per_token;    /* weight bytes one decoded token reads (all but the unused
                                  embedding rows) */
    const char *backend;       /* "cpu", "cuda" */
    const char *gpu_note;      /* why not "cuda" when the GPU was asked for, else "" */
    int n_gpu_layers;          /* layers on the GPU (n_layer: all; 0: CPU only; between:
                                  the last ones, the rest on the CPU) */
    int n_types;               /* entries used in type_names/type_counts */
    const char *type_names[16];
    int type_counts[16];
} beast_model_info;

void beast_model_get_info(const beast_model *m, beast_model_info *out);

/* ---- tokenizer ---- */
int beast_n_vocab(const beast_model *m);
int32_t beast_token_bos(const beast_model *m);
int32_t beast_token_eos(const beast_model *m);
bool beast_token_is_eog(const beast_model *m, int32_t tok); /* end of generation */
/* Returns the number of tokens (which may exceed max: call again with more
 * room), or -1. add_special: BOS/EOS as the model says. parse_special:
 * recognise control-token text such as "<|im_start|>". */
int beast_tokenize(const beast_model *m, const char *text, size_t len, bool add_special,
                   bool parse_special, int32_t *out, int max);
/* The same into a buffer of the right size: returns the count and *out
 * (malloc'd, the caller frees it), or -1. */
int beast_tokenize_alloc(const beast_model *m, const char *text, size_t len, bool add_special,
                         bool parse_special, int32_t **out);
/* Raw bytes of one token (may be part of a UTF-8 character); returns the
 * length, which may exceed cap. Control tokens give "" unless special. */
int beast_token_piece(const beast_model *m, int32_t tok, char *buf, int cap, bool special);

/* ---- chat ---- */
typedef struct {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} beast_chat_msg;

/* Render messages with the model's chat template (its own, or a built-in one
 * for its architecture). *out is malloc'd. Returns 0 or -1. */
int beast_chat_render(const beast_model *m, const beast_chat_msg *msgs, int n,
                      bool add_generation_prompt, char **out);

/* ---- context ---- */
typedef enum { BEAST_KV_F16 = 0, BEAST_KV_F32 = 1 } beast_kv_type;

typedef struct {
    int n_ctx;       /* max positions per sequence; 0 = the model's training length */
    int n_seq;       /* max concurrent sequences (ids 0..n_seq-1) */
    int n_batch;     /* max tokens per forward pass (larger batches are split) */
    int n_kv_tokens; /* KV capacity in positions over all sequences; 0 = n_ctx * n_seq */
    beast_kv_type kv_type;
} beast_ctx_params;

beast_ctx_params beast_ctx_default_params(void);
beast_ctx *beast_ctx_new(beast_model *m, const beast_ctx_params *p);
void beast_ctx_free(beast_ctx *c);
int beast_ctx_n_ctx(const beast_ctx *c);

/* ---- batches ----
 * Each token is appended to its sequence at the sequence's next position.
 * want_logits marks the tokens whose next-token logits the caller reads. */
typedef struct {
    int n, cap;
    int32_t *token;
    int32_t *seq;
    int8_t *logits;
} beast_batch;

beast_batch *beast_batch_new(int cap);
void beast_batch_free(beast_batch *b);
void beast_batch_clear(beast_batch *b);
int beast_batch_add(beast_batch *b, int32_t token, int seq, bool want_logits);

/* Run the forward pass for a batch. Returns 0, or -1 (bad token id or
 * sequence, context full, out of KV blocks): then nothing was appended. */
int beast_decode(beast_ctx *c, const beast_batch *b);
/* Logits (n_vocab floats) for batch entry i of the last beast_decode, or
 * NULL when that entry did not ask for them (or, on a GPU, when reading them
 * back failed: beast_error says so). Valid until the next decode. When a
 * decode asked for at most 32 rows of logits they stay in backend memory
 * and each row is copied to the host on its first beast_logits call. */
const float *beast_logits(beast_ctx *c, int i);

/* The best candidates of batch entry i's logits, for sampling without the
 * whole row. A logit counts as clean(l): NaN as -inf, +inf as FLT_MAX (the
 * sampler's rule). *out receives n <= BEAST_N_CAND entries (the return
 * value): the n best finite clean logits, highest first, lower id first on
 * equal logits. Guarantees:
 *   n < BEAST_N_CAND: every other token's logit is -inf (or NaN);
 *   n == BEAST_N_CAND: every other token's logit is <= out[n-1].logit, and
 *   one equal to it has a higher id than every candidate of that logit.
 * lse (may be NULL) receives the row's log-sum-exp, max + log(sum exp(l -
 * max)) over every token, computed in float per term (log-probabilities
 * are logit - lse); -inf when n == 0. Returns -1 (beast_error) when entry
 * i did not ask for logits or the backend failed. Valid until the next
 * decode. On a GPU, the first call after a decode selects the candidates of
 * all its rows at once (at most 32 rows of logits: then only the
 * candidates, 516 bytes a row, come to the host); asking for lse the first
 * time after calls without it selects again. */
#define BEAST_N_CAND 64
typedef struct {
    int32_t id;
    float logit;
} beast_cand;
int beast_candidates(beast_ctx *c, int i, const beast_cand **out, float *lse);

/* Greedy generation on sequence seq: decode tok, then each step's pick (the
 * highest clean logit, the lowest id on ties: the sampler's greedy choice;
 * a row of only -inf or NaN gives 0), calling on_token(user, t) with every
 * token picked, until n tokens have come, on_token returns false, or the
 * sequence fills the context. The pick is made where the logits are, and
 * a backend that runs ahead (the GPU) gets step k + 1 queued, fed by step
 * k's pick in its own memory, before the host reads token k: the host's
 * work and the device's step overlap. The step queued past the end is
 * undone. Returns the number of tokens picked (each passed to on_token),
 * or -1 (beast_error). Afterwards seq holds tok and every token picked but
 * the last, and no logits are left to read. BEAST_GEN_AHEAD=0 in the
 * environment waits for every step before queueing the next; =1 runs
 * ahead on the CPU too (where it gains nothing: for tests). */
typedef bool (*beast_token_fn)(void *user, int32_t tok);
int beast_generate_greedy(beast_ctx *c, int seq, int32_t tok, int n, beast_token_fn on_token,
                          void *user);

int beast_seq_len(const beast_ctx *c, int seq); /* positions held */
void beast_seq_clear(beast_ctx *c, int seq);    /* forget a sequence */
/* Keep the first len positions; returns 0 or -1. When len ends inside a KV
 * block that another sequence shares (see beast_seq_share), the sequence
 * keeps only the whole blocks before it: read beast_seq_len for the length
 * actually kept (always <= len; the rest must be decoded again). */
int beast_seq_truncate(beast_ctx *c, int seq, int len);

/* Prefix sharing (KV blocks of 16 positions, reference-counted): let the
 * empty sequence dst start with the first floor(min(n, len(src)) / block)
 * whole blocks of src, without copying or recomputing them. The caller
 * guarantees both sequences hold the same tokens there (that is the point).
 * Either sequence may then grow, be truncated or cleared independently; a
 * sequence never writes into a shared block. Returns the positions dst now
 * holds (a multiple of the block size, possibly 0), or -1 (bad ids, dst
 * not empty). */
int beast_seq_share(beast_ctx *c, int dst, int src, int n);
/* KV cache occupancy in blocks. Any pointer may be NULL. */
void beast_kv_blocks(const beast_ctx *c, int *total, int *free_blocks, int *block_size);
int beast_ctx_n_seq(const beast_ctx *c);

/* Time spent in the last beast_decode, split by phase (seconds). */
typedef struct {
    double total;
    int n_tokens;
} beast_decode_stats;
void beast_last_stats(const beast_ctx *c, beast_decode_stats *out);

/* Per-op timing: while on, every op of the forward pass is waited for and
 * its time added to its kind (embed, rmsnorm, matmul, ...). Turning it on
 * resets the totals. beast_ctx_profile fills up to max (name, seconds) pairs
 * and returns the number of kinds. */
void beast_ctx_set_profile(beast_ctx *c, bool on);
int beast_ctx_profile(const beast_ctx *c, const char **names, double *seconds, int max);

#ifdef __cplusplus
}
#endif
#endif
