/* engine.h: the inference context (struct beast_ctx) shared by engine.c
 * (context, batches, decode) and forward.c (the forward pass). */
#ifndef BEAST_ENGINE_H
#define BEAST_ENGINE_H

#include "beast.h"
#include "kv/kv.h"
#include "model/model.h"

/* Activations for one micro-batch of up to n_batch tokens, in backend memory. */
typedef struct {
    float *x;      /* [n][n_embd] residual stream */
    float *xb;     /* [n][n_embd] normed input / branch output */
    float *q;      /* [n][n_head*head_dim] */
    float *k, *v;  /* [n][n_head_kv*head_dim] */
    float *att;    /* [n][n_head*head_dim] attention output */
    float *hb;     /* [n][n_ff] gate, then act(gate)*up */
    float *hb2;    /* [n][n_ff] up */
    float *xo;     /* [n][n_embd] rows that produce logits */
    float *logits; /* [LOGIT_ROWS][n_vocab] */
    int32_t *ids, *pos, *slots, *seq_row, *out_rows, *block_table;
} fwd_bufs;

/* Host-side description of one micro-batch. */
typedef struct {
    int n;
    const int32_t *ids;   /* [n] */
    int32_t *pos;         /* [n] */
    int32_t *slots;       /* [n] */
    int32_t *seq_row;     /* [n] */
    int32_t *block_table; /* [n_rows][max_blocks] */
    int n_rows, max_blocks;
    int32_t *out_rows; /* [n_out] tokens that want logits */
    int n_out;
    float *logits_out; /* host destination, n_out * n_vocab */
} fwd_batch;

#define LOGIT_ROWS 32

enum {
    FWD_EMBED,
    FWD_RMSNORM,
    FWD_MATMUL,
    FWD_ROPE,
    FWD_KV_WRITE,
    FWD_ATTENTION,
    FWD_ADD,
    FWD_GLU,
    FWD_OUTPUT,
    FWD_OP_COUNT
};
extern const char *const FWD_OP_NAMES[FWD_OP_COUNT];

struct beast_ctx {
    beast_model *m;
    backend *bk;
    kv_cache *kv;
    int n_ctx, n_seq, n_batch, max_blocks;
    fwd_bufs d;
    /* host staging for a micro-batch */
    int32_t *h_pos, *h_slots, *h_seq_row, *h_block_table, *h_out_rows;
    int *h_row_of;      /* [n_seq] block-table row of each sequence in a micro-batch */
    int *h_seq_scratch; /* [3 * n_seq] per-sequence counters of beast_decode */
    /* logits of the last decode: rows in batch order of the entries that
     * asked for them; logit_row[i] = row of batch entry i or -1 */
    float *logits;
    size_t logits_cap;
    int32_t *logit_row;
    int logit_row_cap;
    beast_decode_stats stats;
    int profile;               /* time every op (see beast_ctx_set_profile) */
    double prof[FWD_OP_COUNT]; /* seconds per op kind since profiling was enabled */
};

/* Run the forward pass for one micro-batch whose KV slots are reserved. */
int fwd_run(beast_ctx *c, const fwd_batch *b);

#endif
