/* engine.c: inference contexts and batches: beast_ctx_new, beast_decode.
 *
 * beast_decode checks the batch, reserves KV positions for every sequence
 * (all or nothing), splits the batch into micro-batches of at most n_batch
 * tokens, and runs the forward pass on each.
 *
 * Logits: a decode that asks for at most LOGIT_ROWS rows leaves them in
 * backend memory; beast_logits copies a row to the host on its first call,
 * beast_candidates runs the backend's topk over all rows on its first call
 * and copies only those results (a GPU sends 516 bytes a row instead of
 * n_vocab floats). Larger batches download every row as it is computed, and
 * candidates come from the host rows through the same definition
 * (bk_topk_row). */
#include "engine/engine.h"
#include "quant/quant.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>

#define KV_BLOCK 16

beast_ctx_params beast_ctx_default_params(void) {
    beast_ctx_params p = {0};
    p.n_seq = 1;
    p.n_batch = 512;
    p.kv_type = BEAST_KV_F16;
    return p;
}

static void free_bufs(backend *bk, fwd_bufs *d) {
    void **bufs[] = {
        (void **)&d->x,        (void **)&d->xb,          (void **)&d->q,     (void **)&d->k,
        (void **)&d->v,        (void **)&d->att,         (void **)&d->hb,    (void **)&d->hb2,
        (void **)&d->xo,       (void **)&d->logits,      (void **)&d->topk,  (void **)&d->pick,
        (void **)&d->ids,      (void **)&d->pos,         (void **)&d->slots, (void **)&d->seq_row,
        (void **)&d->out_rows, (void **)&d->block_table,
    };
    for (size_t i = 0; i < ARRAY_LEN(bufs); i++)
        if (*bufs[i]) {
            bk->ops->free(bk, *bufs[i]);
            *bufs[i] = NULL;
        }
}

/* One set of activation buffers on bk; the output ones (xo, logits, topk)
 * only when bk computes the logits. */
static int alloc_bufs(beast_ctx *c, backend *bk, fwd_bufs *d, bool output) {
    const model_hparams *hp = &c->m->hp;
    size_t nb = (size_t)c->n_batch, E = hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim,
           KV = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff,
           rows = (size_t)MIN(c->n_batch, c->n_seq);
    struct {
        void **dst;
        size_t bytes;
        bool output;
    } a[] = {
        {(void **)&d->x, nb * E * 4, 0},
        {(void **)&d->xb, nb * E * 4, 0},
        {(void **)&d->q, nb * Q * 4, 0},
        {(void **)&d->k, nb * KV * 4, 0},
        {(void **)&d->v, nb * KV * 4, 0},
        {(void **)&d->att, nb * Q * 4, 0},
        {(void **)&d->hb, nb * F * 4, 0},
        {(void **)&d->hb2, nb * F * 4, 0},
        {(void **)&d->xo, nb * E * 4, 1},
        {(void **)&d->logits, (size_t)LOGIT_ROWS * hp->n_vocab * 4, 1},
        {(void **)&d->topk, TOPK_BYTES(LOGIT_ROWS), 1},
        {(void **)&d->pick, (size_t)LOGIT_ROWS * 4, 1},
        {(void **)&d->ids, nb * 4, 0},
        {(void **)&d->pos, nb * 4, 0},
        {(void **)&d->slots, nb * 4, 0},
        {(void **)&d->seq_row, nb * 4, 0},
        {(void **)&d->out_rows, nb * 4, 0},
        {(void **)&d->block_table, rows * c->max_blocks * 4, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(a); i++)
        if ((output || !a[i].output) && !(*a[i].dst = bk->ops->alloc(bk, a[i].bytes))) return -1;
    return 0;
}

void beast_ctx_free(beast_ctx *c) {
    if (!c) return;
    free_bufs(c->bk, &c->d);
    if (c->m->bk_lo) free_bufs(c->m->bk_lo, &c->d_lo);
    free(c->h_x);
    kv_free(c->kv);
    free(c->h_pos);
    free(c->h_slots);
    free(c->h_seq_row);
    free(c->h_block_table);
    free(c->h_out_rows);
    free(c->h_row_of);
    free(c->h_seq_scratch);
    free(c->logits);
    free(c->logit_row);
    free(c->row_flags);
    free(c->cand);
    free(c->cand_n);
    free(c->cand_lse);
    free(c->h_topk);
    free(c);
}

beast_ctx *beast_ctx_new(beast_model *m, const beast_ctx_params *pp) {
    beast_ctx_params p = pp ? *pp : beast_ctx_default_params();
    const model_hparams *hp = &m->hp;
    if (p.n_ctx <= 0) p.n_ctx = hp->n_ctx_train;
    if (p.n_seq <= 0) p.n_seq = 1;
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_ctx > (1 << 24) || p.n_seq > 4096 || p.n_batch > 65536) {
        err_set("context parameters out of range (n_ctx %d, n_seq %d, n_batch %d)", p.n_ctx,
                p.n_seq, p.n_batch);
        return NULL;
    }
    int64_t kv_tokens = p.n_kv_tokens > 0 ? p.n_kv_tokens : (int64_t)p.n_ctx * p.n_seq;
    if (kv_tokens > (1 << 26)) {
        err_set("KV cache of %lld positions is too large", (long long)kv_tokens);
        return NULL;
    }
    beast_ctx *c = xcalloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->bk = m->bk;
    c->n_ctx = p.n_ctx;
    c->n_seq = p.n_seq;
    c->n_batch = p.n_batch;
    c->max_blocks = (p.n_ctx + KV_BLOCK - 1) / KV_BLOCK;
    backend *layer_bk[MODEL_MAX_LAYERS];
    for (int il = 0; il < hp->n_layer; il++) layer_bk[il] = model_layer_bk(m, il);
    c->kv = kv_new(layer_bk, hp->n_layer, hp->n_head_kv * hp->head_dim,
                   p.kv_type == BEAST_KV_F32 ? QT_F32 : QT_F16, p.n_seq, p.n_ctx, (int)kv_tokens,
                   KV_BLOCK);
    if (!c->kv) goto fail;

    size_t nb = (size_t)p.n_batch, rows = (size_t)MIN(p.n_batch, p.n_seq);
    if (alloc_bufs(c, c->bk, &c->d, true)) goto fail;
    if (m->bk_lo && (alloc_bufs(c, m->bk_lo, &c->d_lo, false) ||
                     !(c->h_x = xmalloc(nb * hp->n_embd * sizeof(float)))))
        goto fail;
    c->h_pos = xmalloc(nb * 4);
    c->h_slots = xmalloc(nb * 4);
    c->h_seq_row = xmalloc(nb * 4);
    c->h_out_rows = xmalloc(nb * 4);
    c->h_block_table = xmalloc(rows * c->max_blocks * 4);
    c->h_row_of = xmalloc((size_t)p.n_seq * sizeof(int));
    c->h_seq_scratch = xmalloc((size_t)p.n_seq * 3 * sizeof(int));
    c->h_topk = xmalloc(TOPK_BYTES(LOGIT_ROWS));
    if (!c->h_row_of || !c->h_seq_scratch || !c->h_pos || !c->h_slots || !c->h_seq_row ||
        !c->h_out_rows || !c->h_block_table || !c->h_topk)
        goto fail;
    return c;
fail:
    err_prefix("creating context (n_ctx %d, n_seq %d, n_batch %d)", p.n_ctx, p.n_seq, p.n_batch);
    beast_ctx_free(c);
    return NULL;
}

int beast_ctx_n_ctx(const beast_ctx *c) {
    return c->n_ctx;
}

/* ---- batches ---- */
beast_batch *beast_batch_new(int cap) {
    if (cap < 1) cap = 1;
    beast_batch *b = xcalloc(1, sizeof *b);
    if (!b) return NULL;
    b->cap = cap;
    b->token = xmalloc((size_t)cap * sizeof *b->token);
    b->seq = xmalloc((size_t)cap * sizeof *b->seq);
    b->logits = xmalloc((size_t)cap);
    if (!b->token || !b->seq || !b->logits) {
        beast_batch_free(b);
        return NULL;
    }
    return b;
}

void beast_batch_free(beast_batch *b) {
    if (!b) return;
    free(b->token);
    free(b->seq);
    free(b->logits);
    free(b);
}

void beast_batch_clear(beast_batch *b) {
    b->n = 0;
}

int beast_batch_add(beast_batch *b, int32_t token, int seq, bool want_logits) {
    if (b->n == b->cap) {
        int cap = 2 * b->cap;
        int32_t *t = xrealloc(b->token, (size_t)cap * sizeof *t);
        if (!t) return -1;
        b->token = t;
        int32_t *s = xrealloc(b->seq, (size_t)cap * sizeof *s);
        if (!s) return -1;
        b->seq = s;
        int8_t *l = xrealloc(b->logits, (size_t)cap);
        if (!l) return -1;
        b->logits = l;
        b->cap = cap;
    }
    b->token[b->n] = token;
    b->seq[b->n] = seq;
    b->logits[b->n] = want_logits;
    b->n++;
    return 0;
}

/* ---- decode ---- */
int beast_seq_len(const beast_ctx *c, int seq) {
    return seq >= 0 && seq < c->n_seq ? c->kv->seqs[seq].len : 0;
}

void beast_seq_clear(beast_ctx *c, int seq) {
    if (seq >= 0 && seq < c->n_seq) kv_truncate(c->kv, seq, 0);
}

int beast_seq_truncate(beast_ctx *c, int seq, int len) {
    if (seq < 0 || seq >= c->n_seq || len < 0) {
        err_set("bad sequence %d or length %d", seq, len);
        return -1;
    }
    kv_truncate(c->kv, seq, len);
    return 0;
}

int beast_seq_share(beast_ctx *c, int dst, int src, int n) {
    return kv_share(c->kv, dst, src, n);
}

void beast_kv_blocks(const beast_ctx *c, int *total, int *free_blocks, int *block_size) {
    if (total) *total = c->kv->n_blocks;
    if (free_blocks) *free_blocks = kv_n_free(c->kv);
    if (block_size) *block_size = c->kv->block_size;
}

int beast_ctx_n_seq(const beast_ctx *c) {
    return c->n_seq;
}

/* ---- logits and candidates of the last decode ---- */
const float *beast_logits(beast_ctx *c, int i) {
    if (!c || i < 0 || i >= c->logit_row_cap || c->logit_row[i] < 0) return NULL;
    int r = c->logit_row[i];
    size_t nv = (size_t)c->m->hp.n_vocab;
    float *row = c->logits + (size_t)r * nv;
    if (!(c->row_flags[r] & ROW_HOST)) {
        if (c->bk->ops->download(c->bk, row, c->d.logits + (size_t)r * nv, nv * sizeof(float))) {
            err_prefix("reading logits");
            return NULL;
        }
        c->row_flags[r] |= ROW_HOST;
    }
    return row;
}

/* Row r's candidates from its topk result (BK_TOPK entries, -inf ones last). */
static void set_cands(beast_ctx *c, int r, const int32_t *ids, const float *vals,
                      const float *lse) {
    beast_cand *o = c->cand + (size_t)r * BK_TOPK;
    int n = 0;
    while (n < BK_TOPK && vals[n] != -INFINITY) {
        o[n].id = ids[n];
        o[n].logit = vals[n];
        n++;
    }
    c->cand_n[r] = n;
    c->row_flags[r] |= ROW_CAND;
    if (lse) {
        c->cand_lse[r] = *lse;
        c->row_flags[r] |= ROW_LSE;
    }
}

/* Every row's candidates with the backend's topk on the logits it holds
 * (lazy mode): one op, one small download. */
static int topk_all(beast_ctx *c, int with_lse) {
    const bk_ops *op = c->bk->ops;
    int rows = c->n_out, nv = c->m->hp.n_vocab;
    int32_t *d_ids = c->d.topk;
    float *d_vals = (float *)d_ids + (size_t)rows * BK_TOPK,
          *d_lse = d_vals + (size_t)rows * BK_TOPK;
    op->topk(c->bk, d_ids, d_vals, with_lse ? d_lse : NULL, c->d.logits, rows, nv);
    if (op->download(c->bk, c->h_topk, c->d.topk, TOPK_BYTES(rows))) {
        err_prefix("selecting candidates");
        return -1;
    }
    const int32_t *ids = c->h_topk;
    const float *vals = (const float *)ids + (size_t)rows * BK_TOPK,
                *lse = vals + (size_t)rows * BK_TOPK;
    for (int r = 0; r < rows; r++)
        set_cands(c, r, ids + (size_t)r * BK_TOPK, vals + (size_t)r * BK_TOPK,
                  with_lse ? lse + r : NULL);
    return 0;
}

int beast_candidates(beast_ctx *c, int i, const beast_cand **out, float *lse) {
    if (!c || !out) {
        err_set("beast_candidates: bad arguments");
        return -1;
    }
    if (i < 0 || i >= c->logit_row_cap || c->logit_row[i] < 0) {
        err_set("beast_candidates: batch entry %d has no logits", i);
        return -1;
    }
    int r = c->logit_row[i], need = ROW_CAND | (lse ? ROW_LSE : 0);
    if ((c->row_flags[r] & need) != need) {
        if (c->lazy && c->bk->ops->topk) {
            if (topk_all(c, lse != NULL)) return -1;
        } else { /* the row on the host: the same selection there */
            const float *row = beast_logits(c, i);
            if (!row) return -1;
            int32_t ids[BK_TOPK];
            float vals[BK_TOPK], l;
            bk_topk_row(row, c->m->hp.n_vocab, ids, vals, lse ? &l : NULL);
            set_cands(c, r, ids, vals, lse ? &l : NULL);
        }
    }
    *out = c->cand + (size_t)r * BK_TOPK;
    if (lse) *lse = c->cand_lse[r];
    return c->cand_n[r];
}

void beast_last_stats(const beast_ctx *c, beast_decode_stats *out) {
    *out = c->stats;
}

void beast_ctx_set_profile(beast_ctx *c, bool on) {
    c->profile = on;
    if (on) memset(c->prof, 0, sizeof c->prof);
}

int beast_ctx_profile(const beast_ctx *c, const char **names, double *seconds, int max) {
    for (int i = 0; i < FWD_OP_COUNT && i < max; i++) {
        names[i] = FWD_OP_NAMES[i];
        seconds[i] = c->prof[i];
    }
    return FWD_OP_COUNT;
}

/* Restore every sequence's length after a failed decode (and leave no
 * logits to read). */
static void rollback(beast_ctx *c, const int *old_len) {
    for (int s = 0; s < c->n_seq; s++) kv_truncate(c->kv, s, old_len[s]);
    for (int i = 0; i < c->logit_row_cap; i++) c->logit_row[i] = -1;
    c->n_out = 0;
}

/* Per-row arrays for n rows of logits. */
static int grow_rows(beast_ctx *c, int n) {
    if (n <= c->rows_cap) return 0;
    uint8_t *f = xrealloc(c->row_flags, (size_t)n);
    if (!f) return -1;
    c->row_flags = f;
    beast_cand *cd = xrealloc(c->cand, (size_t)n * BK_TOPK * sizeof *cd);
    if (!cd) return -1;
    c->cand = cd;
    int *cn = xrealloc(c->cand_n, (size_t)n * sizeof *cn);
    if (!cn) return -1;
    c->cand_n = cn;
    float *cl = xrealloc(c->cand_lse, (size_t)n * sizeof *cl);
    if (!cl) return -1;
    c->cand_lse = cl;
    c->rows_cap = n;
    return 0;
}

int beast_decode(beast_ctx *c, const beast_batch *b) {
    return engine_decode(c, b, NULL);
}

int engine_decode(beast_ctx *c, const beast_batch *b, const fwd_step *st) {
    double t0 = time_now();
    const int n_vocab = c->m->hp.n_vocab;
    if (b->n <= 0) {
        err_set("empty batch");
        return -1;
    }
    for (int i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= n_vocab) {
            err_set("token id %d out of range [0, %d)", b->token[i], n_vocab);
            return -1;
        }
        if (b->seq[i] < 0 || b->seq[i] >= c->n_seq) {
            err_set("sequence id %d out of range [0, %d)", b->seq[i], c->n_seq);
            return -1;
        }
    }
    /* per-sequence reservation, all or nothing */
    int *count = c->h_seq_scratch; /* kept in the context: no allocation per call */
    memset(count, 0, (size_t)c->n_seq * sizeof *count);
    int *old_len = count + c->n_seq, *cursor = old_len + c->n_seq;
    for (int i = 0; i < b->n; i++) count[b->seq[i]]++;
    for (int s = 0; s < c->n_seq; s++) old_len[s] = cursor[s] = c->kv->seqs[s].len;
    int rc = -1;
    for (int s = 0; s < c->n_seq; s++)
        if (count[s] && kv_reserve(c->kv, s, count[s])) {
            rollback(c, old_len);
            goto done;
        }

    /* logits rows in batch order */
    int n_out = 0;
    if (c->logit_row_cap < b->n) {
        int32_t *lr = xrealloc(c->logit_row, (size_t)b->n * sizeof *lr);
        if (!lr) goto fail;
        c->logit_row = lr;
        c->logit_row_cap = b->n;
    }
    for (int i = 0; i < c->logit_row_cap; i++)
        c->logit_row[i] = i < b->n && b->logits[i] ? n_out++ : -1;
    if ((size_t)n_out * n_vocab > c->logits_cap) {
        float *l = xrealloc(c->logits, (size_t)n_out * n_vocab * sizeof(float));
        if (!l) goto fail;
        c->logits = l;
        c->logits_cap = (size_t)n_out * n_vocab;
    }
    if (grow_rows(c, n_out)) goto fail;
    /* a decode step's few rows stay in backend memory until asked for */
    c->n_out = n_out;
    c->lazy = n_out <= LOGIT_ROWS;
    if (n_out > 0) memset(c->row_flags, c->lazy ? 0 : ROW_HOST, (size_t)n_out);
    if (st && (b->n > c->n_batch || !c->lazy)) {
        err_set("a step run ahead takes at most %d tokens and %d logits (got %d, %d)", c->n_batch,
                LOGIT_ROWS, b->n, n_out);
        goto fail;
    }

    int out_done = 0;
    for (int i0 = 0; i0 < b->n; i0 += c->n_batch) {
        int n = MIN(c->n_batch, b->n - i0);
        fwd_batch fb = {0};
        fb.n = n;
        fb.ids = b->token + i0;
        fb.pos = c->h_pos;
        fb.slots = c->h_slots;
        fb.seq_row = c->h_seq_row;
        fb.block_table = c->h_block_table;
        fb.out_rows = c->h_out_rows;
        fb.max_blocks = c->max_blocks;
        /* rows of the block table: distinct sequences of this micro-batch */
        int n_rows = 0;
        for (int s = 0; s < c->n_seq; s++) c->h_row_of[s] = -1;
        for (int i = 0; i < n; i++) {
            int s = b->seq[i0 + i], r = c->h_row_of[s];
            if (r < 0) {
                r = c->h_row_of[s] = n_rows++;
                memcpy(fb.block_table + (size_t)r * c->max_blocks, c->kv->seqs[s].blocks,
                       (size_t)c->kv->seqs[s].n_blocks * sizeof(int32_t));
            }
            fb.seq_row[i] = r;
            fb.pos[i] = cursor[s]++;
            fb.slots[i] = kv_slot(c->kv, s, fb.pos[i]);
            if (b->logits[i0 + i]) fb.out_rows[fb.n_out++] = i;
        }
        fb.n_rows = n_rows;
        fb.logits_out = c->lazy ? NULL : c->logits + (size_t)out_done * n_vocab;
        fb.dev_row = c->lazy ? out_done : -1;
        fb.step = st;
        if (fwd_run(c, &fb)) {
            rollback(c, old_len);
            goto done;
        }
        out_done += fb.n_out;
    }
    rc = 0;
    c->stats.total = time_now() - t0;
    c->stats.n_tokens = b->n;
    goto done;
fail:
    rollback(c, old_len);
done:
    return rc;
}
