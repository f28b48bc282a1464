/* backend.h: the small interface the forward pass is written against.
 *
 * A backend owns a kind of memory (host RAM, GPU memory) and the kernels that
 * compute on it. The forward pass (src/engine/forward.c) calls these ops in
 * order and never touches activation memory itself, so the same code drives
 * the CPU and the CUDA backend. Ops may run asynchronously (a GPU queues
 * them on a stream, ready for graph capture); download() and sync() are the
 * only points where the host waits.
 *
 * Shapes: activations are row-major float32 matrices, one row per token.
 * A weight matrix has `rows` output features of `cols` inputs each, stored in
 * its file type row by row (GGUF ne[0] = cols, ne[1] = rows). */
#ifndef BEAST_BACKEND_H
#define BEAST_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct backend backend;

typedef struct {
    int type; /* quant_type */
    int64_t rows, cols;
    const void *data; /* backend memory */
    const void *host; /* the bytes in the mapped file */
} bk_weight;

typedef enum { BK_ACT_SILU = 0, BK_ACT_GELU_TANH = 1 } bk_act;

/* Per-batch attention metadata, in backend memory (uploaded once per pass). */
typedef struct {
    int n_tokens;
    const int32_t *pos;         /* [n_tokens] position of each token in its sequence */
    const int32_t *seq_row;     /* [n_tokens] row of the token's sequence in block_table */
    const int32_t *block_table; /* [rows * max_blocks] physical KV block ids */
    int max_blocks;
    int block_size;
    /* 0, or the most positions any token of the batch sees (its position +
     * 1): a backend may pick a kernel shape for short spans by it */
    int max_span;
} bk_attn_batch;

/* One layer's KV cache storage: [n_slots][kv_dim] of kv_type. */
typedef struct {
    void *k, *v;
    int kv_dim;
    int type; /* quant_type: QT_F16 or QT_F32 */
} bk_kv_layer;

typedef struct {
    const char *name;
    void (*destroy)(backend *b);

    /* memory */
    void *(*alloc)(backend *b, size_t bytes); /* NULL + err_set on failure */
    void (*free)(backend *b, void *p);
    int (*upload)(backend *b, void *dst, const void *src, size_t n);
    int (*download)(backend *b, void *dst, const void *src, size_t n);
    /* Make w->data usable by this backend, from w->host (CPU: in place). */
    int (*weight_init)(backend *b, bk_weight *w);
    void (*weight_release)(backend *b, bk_weight *w);

    /* compute */
    /* out[i] = scale * emb[ids[i]] */
    void (*embed)(backend *b, float *out, const bk_weight *emb, const int32_t *ids, int n,
                  float scale);
    /* out[r] = x[r] / rms(x[r]) * w, for rows of length dim; out may be x */
    void (*rmsnorm)(backend *b, float *out, const float *x, const float *w, int rows, int dim,
                    float eps);
    /* out[t][r] = sum_c W[r][c] * x[t][c], t < n */
    void (*matmul)(backend *b, float *out, const bk_weight *w, const float *x, int n);
    /* rotate the first n_rot dims of each head in x[n][n_heads*head_dim];
     * neox: rotate pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    void (*rope)(backend *b, float *x, const int32_t *pos, int n, int n_heads, int head_dim,
                 int n_rot, float base, float freq_scale, int neox);
    /* store k, v rows [n][kv_dim] at cache slots */
    void (*kv_write)(backend *b, const bk_kv_layer *kv, const float *k, const float *v,
                     const int32_t *slots, int n);
    /* causal attention of each token over its own sequence's cache positions
     * [max(0, pos - window + 1), pos] (window 0 = unlimited); q and out are
     * [n][n_head * head_dim], grouped-query: head h reads kv head h / (n_head/n_head_kv) */
    void (*attention)(backend *b, float *out, const float *q, const bk_kv_layer *kv,
                      const bk_attn_batch *ab, int n_head, int n_head_kv, int head_dim, int window,
                      float scale);
    /* x += y */
    void (*add)(backend *b, float *x, const float *y, int64_t n);
    /* out = act(gate) * up */
    void (*glu)(backend *b, float *out, const float *gate, const float *up, int64_t n, bk_act act);
    /* out[i] = x[rows[i]] for rows of length dim */
    void (*gather)(backend *b, float *out, const float *x, const int32_t *rows, int n, int dim);
    /* For each of `rows` rows of n_vocab logits: the BK_TOPK best entries,
     * best first, into ids[r * BK_TOPK ..] and vals[r * BK_TOPK ..], and the
     * row's log-sum-exp into lse[r] (skipped when lse is NULL); see the
     * definition at BK_TOPK below. All pointers are backend memory. */
    void (*topk)(backend *b, int32_t *ids, float *vals, float *lse, const float *logits, int rows,
                 int n_vocab);
    /* ids[r] = the greedy pick of row r of n_vocab logits: the highest
     * clean logit (see topk), the lowest id on ties (bk_argmax_row) */
    void (*argmax)(backend *b, int32_t *ids, const float *logits, int rows, int n_vocab);
    /* wait for all queued work */
    int (*sync)(backend *b);

    /* Running ahead: the host queues the next step while the device works
     * on this one. submit starts everything queued without waiting and
     * returns its ticket (> 0), or -1 with err_set; wait(t) returns once
     * the work of ticket t and every earlier one has run (0, or -1 with
     * err_set when any of it failed). download_async queues a copy of n
     * bytes from backend memory to host memory dst, taken after everything
     * queued before the next submit (or sync) has run; dst holds them once
     * that submit's ticket is waited for (or the sync returns). A backend
     * whose ops finish as they are called (the CPU) copies at once and has
     * nothing to wait for. */
    int (*download_async)(backend *b, void *dst, const void *src, size_t n);
    int64_t (*submit)(backend *b);
    int (*wait)(backend *b, int64_t ticket);
    /* whether ops only queue work (the host gains by running ahead); the
     * CPU's run as they are called, so a step queued ahead is just done */
    int runs_ahead;
} bk_ops;

struct backend {
    const bk_ops *ops;
    void *impl;
    /* When set, every batched op gives each row bit for bit what the same
     * op gives that row alone (batch size 1): results do not depend on how
     * tokens are batched. Set by the model loader before any compute. */
    int deterministic;
    /* When set, one-token matmuls use float activations as batched ones do
     * (the CUDA mat-vec otherwise rounds them to 8-bit blocks), so a token's
     * result depends on its batch only through the batched path's own
     * rounding (f16 on the GPU). The server sets it; CPU kernels ignore it
     * (their one-token and batched paths already round alike). */
    int float_act;
};

/* topk. A logit l counts as clean(l): NaN as -inf, +inf as FLT_MAX (the
 * sampler's rule). Entries are ordered by clean logit, higher first, and on
 * equal logits by id, lower first (-0 equals +0): the sampler's order. A row
 * gives its first min(BK_TOPK, n_vocab) entries in that order (-inf ones
 * included, so a row's -inf entries come in id order); when n_vocab <
 * BK_TOPK the rest are id -1, logit -inf. vals hold the clean logits.
 * lse = m + log(sum_i exp(clean(l_i) - m)) with m the largest clean logit,
 * each exp taken in float; -inf when every logit is -inf.
 *
 * BK_TOPK = 64: covers the usual top_k (40, the default here and in Ollama
 * and llama.cpp) with room for the strict "k-th best beats everything
 * outside" test the sampler needs, and OpenAI's 20 top_logprobs; a row's
 * result is 516 bytes; 64 entries sort with one thread per entry. */
#define BK_TOPK 64

/* The topk definition for one row in host memory (a heap of BK_TOPK; the
 * CPU backend's op, and the engine's host path). lse may be NULL. */
void bk_topk_row(const float *logits, int n_vocab, int32_t *ids, float *vals, float *lse);
/* The argmax definition for one row in host memory: the index of the
 * highest clean logit, the lowest one on ties; 0 when every logit is -inf
 * or NaN. */
int32_t bk_argmax_row(const float *logits, int n_vocab);

/* Constructors. */
backend *bk_cpu_new(int n_threads);
/* The CUDA backend on GPU `device`; NULL + err_set when there is no usable
 * device or the library was built without CUDA ("built without CUDA"). */
backend *bk_cuda_new(int device);

#endif
