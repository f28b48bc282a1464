/* forward.c: the transformer forward pass, written once against the backend
 * interface and batch-aware: a micro-batch holds tokens of any number of
 * sequences at any positions (prompt prefill and decoding alike).
 *
 * Per layer (pre-norm residual blocks; optional parts by hyperparameter):
 *   h = norm(x); q,k,v = h Wq, h Wk, h Wv; [q,k = per-head norm]; rope(q,k)
 *   store k,v in the paged cache; a = attention(q, cache); o = a Wo
 *   [o = norm(o)]; x += o
 *   h = norm(x); f = (act(h Wgate) * h Wup) Wdown; [f = norm(f)]; x += f
 * then logits = norm(x) Wout for the tokens that asked for them: downloaded
 * as they are computed, or, for the few rows of a decode step, left in
 * backend memory for the engine to read on demand (engine.c).
 *
 * Layers run in segments: consecutive layers on one backend, with that
 * backend's buffers and its copy of the batch metadata. A model on one
 * backend is one segment; a split model (model.h: the first layers on the
 * CPU, the last on the GPU) is two, and between them the residual stream x
 * goes through host memory (download from one backend, upload to the next).
 * The embedding runs on the first segment's backend, the logits on the
 * last's (c->bk). */
#include "engine/engine.h"
#include "util/util.h"

const char *const FWD_OP_NAMES[FWD_OP_COUNT] = {
    "embed", "rmsnorm", "matmul", "rope", "kv_write", "attention", "add", "glu", "output", "move",
};

/* Run one op; with profiling on, wait for it and charge its time to `kind`
 * (this serialises a GPU backend: profile runs measure, they don't race). */
#define OP(kind, call)                                                                             \
    do {                                                                                           \
        if (c->profile) {                                                                          \
            double t0_ = time_now();                                                               \
            call;                                                                                  \
            op->sync(bk);                                                                          \
            c->prof[kind] += time_now() - t0_;                                                     \
        } else {                                                                                   \
            call;                                                                                  \
        }                                                                                          \
    } while (0)

/* the token ids already in backend memory (running ahead), or NULL */
static const int32_t *fwd_ids_dev(const fwd_batch *b) {
    return b->step ? b->step->ids_dev : NULL;
}

/* The batch's token ids, positions, KV slots and block table to d. */
static int upload_meta(backend *bk, fwd_bufs *d, const fwd_batch *b) {
    const bk_ops *op = bk->ops;
    size_t n4 = (size_t)b->n * 4;
    return (!fwd_ids_dev(b) && op->upload(bk, d->ids, b->ids, n4)) ||
           op->upload(bk, d->pos, b->pos, n4) || op->upload(bk, d->slots, b->slots, n4) ||
           op->upload(bk, d->seq_row, b->seq_row, n4) ||
           op->upload(bk, d->block_table, b->block_table, (size_t)b->n_rows * b->max_blocks * 4) ||
           op->upload(bk, d->out_rows, b->out_rows, (size_t)b->n_out * 4);
}

/* Layers [l0, l1), all on bk, on the residual stream d->x of n tokens. */
static void run_layers(beast_ctx *c, backend *bk, fwd_bufs *d, const bk_attn_batch *ab, int l0,
                       int l1) {
    const model_hparams *hp = &c->m->hp;
    const bk_ops *op = bk->ops;
    const int n = ab->n_tokens, E = hp->n_embd, H = hp->n_head, HKV = hp->n_head_kv,
              D = hp->head_dim;
    const float eps = hp->norm_eps;
    for (int il = l0; il < l1; il++) {
        const model_layer *L = &c->m->layers[il];
        const bk_kv_layer *kv = &c->kv->layers[il];
        bool swa = hp->swa_layer[il];

        OP(FWD_RMSNORM, op->rmsnorm(bk, d->xb, d->x, L->attn_norm.data, n, E, eps));
        OP(FWD_MATMUL, op->matmul(bk, d->q, &L->wq, d->xb, n));
        OP(FWD_MATMUL, op->matmul(bk, d->k, &L->wk, d->xb, n));
        OP(FWD_MATMUL, op->matmul(bk, d->v, &L->wv, d->xb, n));
        if (hp->qk_norm) {
            OP(FWD_RMSNORM, op->rmsnorm(bk, d->q, d->q, L->q_norm.data, n * H, D, eps));
            OP(FWD_RMSNORM, op->rmsnorm(bk, d->k, d->k, L->k_norm.data, n * HKV, D, eps));
        }
        float base = swa ? hp->rope_base_swa : hp->rope_base;
        OP(FWD_ROPE, op->rope(bk, d->q, d->pos, n, H, D, hp->n_rot, base, hp->rope_freq_scale,
                              hp->rope_neox));
        OP(FWD_ROPE, op->rope(bk, d->k, d->pos, n, HKV, D, hp->n_rot, base, hp->rope_freq_scale,
                              hp->rope_neox));
        OP(FWD_KV_WRITE, op->kv_write(bk, kv, d->k, d->v, d->slots, n));
        OP(FWD_ATTENTION, op->attention(bk, d->att, d->q, kv, ab, H, HKV, D,
                                        swa ? hp->swa_window : 0, hp->attn_scale));
        OP(FWD_MATMUL, op->matmul(bk, d->xb, &L->wo, d->att, n));
        if (hp->post_norms)
            OP(FWD_RMSNORM, op->rmsnorm(bk, d->xb, d->xb, L->post_attn_norm.data, n, E, eps));
        OP(FWD_ADD, op->add(bk, d->x, d->xb, (int64_t)n * E));

        OP(FWD_RMSNORM, op->rmsnorm(bk, d->xb, d->x, L->ffn_norm.data, n, E, eps));
        OP(FWD_MATMUL, op->matmul(bk, d->hb, &L->w_gate, d->xb, n));
        OP(FWD_MATMUL, op->matmul(bk, d->hb2, &L->w_up, d->xb, n));
        OP(FWD_GLU, op->glu(bk, d->hb, d->hb, d->hb2, (int64_t)n * hp->n_ff, hp->act));
        OP(FWD_MATMUL, op->matmul(bk, d->xb, &L->w_down, d->hb, n));
        if (hp->post_norms)
            OP(FWD_RMSNORM, op->rmsnorm(bk, d->xb, d->xb, L->post_ffn_norm.data, n, E, eps));
        OP(FWD_ADD, op->add(bk, d->x, d->xb, (int64_t)n * E));
    }
}

/* The residual stream of n tokens from backend `from` to backend bk, through
 * host memory (the download waits for `from`'s queued work). */
static int move_x(beast_ctx *c, backend *from, backend *bk, int n) {
    const bk_ops *op = bk->ops;
    size_t bytes = (size_t)n * c->m->hp.n_embd * sizeof(float);
    int rc = 0;
    OP(FWD_MOVE, rc = from->ops->download(from, c->h_x, ctx_bufs(c, from)->x, bytes) ||
                      op->upload(bk, ctx_bufs(c, bk)->x, c->h_x, bytes));
    return rc;
}

/* norm(x) Wout for the tokens that asked for logits, on c->bk. */
static int run_output(beast_ctx *c, const fwd_batch *b) {
    const beast_model *m = c->m;
    const model_hparams *hp = &m->hp;
    backend *bk = c->bk;
    const bk_ops *op = bk->ops;
    fwd_bufs *d = &c->d;
    const int E = hp->n_embd;
    if (b->n_out == 0) return 0;
    OP(FWD_OUTPUT, op->gather(bk, d->xo, d->x, d->out_rows, b->n_out, E));
    OP(FWD_OUTPUT, op->rmsnorm(bk, d->xo, d->xo, m->output_norm.data, b->n_out, E, hp->norm_eps));
    if (b->dev_row >= 0) /* the caller reads them later (n_out + dev_row <= LOGIT_ROWS) */
        OP(FWD_OUTPUT, op->matmul(bk, d->logits + (size_t)b->dev_row * hp->n_vocab, &m->output,
                                  d->xo, b->n_out));
    for (int r = 0; r < b->n_out && b->dev_row < 0; r += LOGIT_ROWS) {
        int nr = MIN(LOGIT_ROWS, b->n_out - r);
        OP(FWD_OUTPUT, op->matmul(bk, d->logits, &m->output, d->xo + (size_t)r * E, nr));
        if (op->download(bk, b->logits_out + (size_t)r * hp->n_vocab, d->logits,
                         (size_t)nr * hp->n_vocab * sizeof(float)))
            return -1;
    }
    return 0;
}

int fwd_run(beast_ctx *c, const fwd_batch *b) {
    const beast_model *m = c->m;
    const model_hparams *hp = &m->hp;
    const int n = b->n;
    int max_span = 0;
    for (int i = 0; i < n; i++) max_span = MAX(max_span, b->pos[i] + 1);

    backend *prev = NULL; /* the backend of the segment before */
    for (int l0 = 0, l1; l0 < hp->n_layer; l0 = l1) {
        backend *bk = model_layer_bk(m, l0);
        for (l1 = l0 + 1; l1 < hp->n_layer && model_layer_bk(m, l1) == bk; l1++) {
        }
        const bk_ops *op = bk->ops;
        fwd_bufs *d = ctx_bufs(c, bk);
        if (upload_meta(bk, d, b)) return -1;
        if (!prev)
            OP(FWD_EMBED, op->embed(bk, d->x, &m->tok_embd,
                                    fwd_ids_dev(b) ? fwd_ids_dev(b) : d->ids, n, hp->embd_scale));
        else if (move_x(c, prev, bk, n))
            return -1;
        bk_attn_batch ab = {
            n, d->pos, d->seq_row, d->block_table, b->max_blocks, c->kv->block_size, max_span};
        run_layers(c, bk, d, &ab, l0, l1);
        prev = bk;
    }
    if (run_output(c, b)) return -1;
    const fwd_step *st = b->step;
    const bk_ops *op = c->bk->ops;
    if (st && st->pick && b->n_out > 0) { /* lazy rows only (engine_decode) */
        op->argmax(c->bk, c->d.pick + b->dev_row, c->d.logits + (size_t)b->dev_row * hp->n_vocab,
                   b->n_out, hp->n_vocab);
        if (op->download_async(c->bk, st->pick, c->d.pick + b->dev_row, (size_t)b->n_out * 4))
            return -1;
    }
    if (st && st->ticket) return (*st->ticket = op->submit(c->bk)) < 0 ? -1 : 0;
    return op->sync(c->bk);
}
