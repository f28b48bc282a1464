/* engine.h: the inference context (struct beast_ctx) shared by engine.c
 * (context, batches, decode) and forward.c (the forward pass). */
#ifndef BEAST_ENGINE_H
#define BEAST_ENGINE_H

#include "beast.h"
#include "kv/kv.h"
#include "model/model.h"

/* Activations for one micro-batch of up to n_batch tokens, in the memory of
 * one backend. A split model (model.h) has a set on each of its backends;
 * xo, logits and topk only on the output one (NULL on the other). */
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
    void *topk;    /* topk of up to LOGIT_ROWS rows: ids, then logits, then lse */
    int32_t *pick; /* [LOGIT_ROWS] greedy picks of the last step (generate.c) */
    int32_t *ids, *pos, *slots, *seq_row, *out_rows, *block_table;
} fwd_bufs;

/* Running one step ahead (generate.c), for a decode of one micro-batch
 * whose logits stay in backend memory:
 *   ids_dev   the token ids are already in the output backend's memory
 *             (the last step's picks), not uploaded (first layers on that
 *             backend only);
 *   pick      the rows' greedy picks into d.pick, copied to pick (host)
 *             once the ticket is waited for;
 *   ticket    set: the step is submitted, not waited for (its ticket here). */
typedef struct {
    const int32_t *ids_dev;
    int32_t *pick;
    int64_t *ticket;
} fwd_step;

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
    float *logits_out; /* host destination, n_out * n_vocab (when dev_row < 0) */
    int dev_row;       /* >= 0: leave the logits in d.logits from this row on */
    const fwd_step *step;
} fwd_batch;

#define LOGIT_ROWS 32

/* bytes of topk results for `rows` rows (d.topk holds LOGIT_ROWS) */
#define TOPK_BYTES(rows) ((size_t)(rows) * (2 * BK_TOPK + 1) * 4)

enum { ROW_HOST = 1, ROW_CAND = 2, ROW_LSE = 4 };

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
    FWD_MOVE, /* the residual stream from one backend to the next (split models) */
    FWD_OP_COUNT
};
extern const char *const FWD_OP_NAMES[FWD_OP_COUNT];

struct beast_ctx {
    beast_model *m;
    backend *bk; /* m->bk: the last layers and the logits (all of them unless split) */
    kv_cache *kv;
    int n_ctx, n_seq, n_batch, max_blocks;
    fwd_bufs d;    /* on bk */
    fwd_bufs d_lo; /* split models: on m->bk_lo, for the layers below m->split */
    float *h_x;    /* split models: host copy of the residual stream x between backends */
    /* host staging for a micro-batch */
    int32_t *h_pos, *h_slots, *h_seq_row, *h_block_table, *h_out_rows;
    int *h_row_of;      /* [n_seq] block-table row of each sequence in a micro-batch */
    int *h_seq_scratch; /* [3 * n_seq] per-sequence counters of beast_decode */
    /* logits of the last decode: rows in batch order of the entries that
     * asked for them; logit_row[i] = row of batch entry i or -1. With
     * n_out <= LOGIT_ROWS rows (a decode step) they stay in d.logits and
     * row_flags say which have been downloaded into `logits` so far and
     * which have their candidates; with more, all are downloaded as they
     * are computed. */
    float *logits;
    size_t logits_cap;
    int32_t *logit_row;
    int logit_row_cap;
    int n_out, lazy;
    uint8_t *row_flags; /* [n_out] ROW_* */
    beast_cand *cand;   /* [n_out][BK_TOPK] */
    int *cand_n;        /* [n_out] */
    float *cand_lse;    /* [n_out] */
    int rows_cap;       /* of the four arrays above */
    void *h_topk;       /* host copy of d.topk */
    beast_decode_stats stats;
    int profile;               /* time every op (see beast_ctx_set_profile) */
    double prof[FWD_OP_COUNT]; /* seconds per op kind since profiling was enabled */
};

/* The activation buffers on backend bk (c->bk or m->bk_lo). */
static inline fwd_bufs *ctx_bufs(beast_ctx *c, const backend *bk) {
    return bk == c->bk ? &c->d : &c->d_lo;
}

/* Run the forward pass for one micro-batch whose KV slots are reserved. */
int fwd_run(beast_ctx *c, const fwd_batch *b);

/* beast_decode with a step's options (NULL: none; then it is beast_decode).
 * With options the batch must fit one micro-batch (n <= n_batch) and ask
 * for at most LOGIT_ROWS logits. */
int engine_decode(beast_ctx *c, const beast_batch *b, const fwd_step *st);

#endif
