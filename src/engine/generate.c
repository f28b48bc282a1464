/* generate.c: greedy generation that keeps the device busy
 * (beast_generate_greedy).
 *
 * A decode step of one token on a GPU takes a fraction of a millisecond,
 * and a loop that waits for each step, reads its logits and only then
 * queues the next leaves the device idle for the host's part of every step
 * (building the batch, launching, waking up from the wait). Greedy decoding
 * needs no host decision between steps: the pick is an argmax on the
 * device (the backend's argmax op, into d.pick), the next step's embedding
 * reads its token id from there, and only the positions and KV slots,
 * which do not depend on the token, come from the host. So step k + 1 is
 * submitted before token k is read; the host reads token k (an async copy
 * of 4 bytes) while step k + 1 runs. When generation stops, the step queued
 * past the end has written one KV row, which is truncated away.
 *
 * Feeding on the device needs the embedding on the backend that picks (a
 * model split between the CPU and the GPU feeds each token from the host
 * instead, as does BEAST_GEN_AHEAD=0). The CPU backend runs every op as it
 * is called, so a step queued ahead would only be computed early and, at
 * the end, for nothing: there the loop runs step by step. */
#include "engine/engine.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* queue one step of `tok` (or, with ids_dev, of the token already there)
 * for seq, its pick landing in *pick once *ticket is waited for */
static int gen_step(beast_ctx *c, beast_batch *b, int seq, int32_t tok, const int32_t *ids_dev,
                    int32_t *pick, int64_t *ticket) {
    beast_batch_clear(b);
    beast_batch_add(b, tok, seq, true);
    fwd_step st = {ids_dev, pick, ticket};
    return engine_decode(c, b, &st);
}

/* BEAST_GEN_AHEAD: 0 never run ahead, 1 always (where the embedding is on
 * the picking backend: lets the CPU tests walk the running-ahead path), unset
 * where the backend only queues work (bk_ops.runs_ahead) */
static bool run_ahead(const beast_ctx *c) {
    if (model_layer_bk(c->m, 0) != c->bk) return false;
    const char *v = getenv("BEAST_GEN_AHEAD");
    if (v && *v) return strcmp(v, "0") != 0;
    return c->bk->ops->runs_ahead;
}

int beast_generate_greedy(beast_ctx *c, int seq, int32_t tok, int n, beast_token_fn on_token,
                          void *user) {
    if (!c || !on_token || n < 0 || seq < 0 || seq >= c->n_seq) {
        err_set("beast_generate_greedy: bad arguments");
        return -1;
    }
    if (tok < 0 || tok >= c->m->hp.n_vocab) {
        err_set("token id %d out of range [0, %d)", tok, c->m->hp.n_vocab);
        return -1;
    }
    const int len0 = c->kv->seqs[seq].len, room = c->n_ctx - len0;
    if (n > room) n = room; /* one position a step */
    if (n == 0) return 0;
    backend *bk = c->bk;
    const bk_ops *op = bk->ops;
    const bool ahead = run_ahead(c);
    beast_batch *b = beast_batch_new(1);
    if (!b) return -1;
    int32_t pick[2] = {0, 0};
    int64_t ticket[2] = {0, 0};
    int got = 0, rc = -1;
    if (gen_step(c, b, seq, tok, NULL, &pick[0], &ticket[0])) goto done;
    for (int k = 0; k < n; k++) {
        const int cur = k & 1, nxt = cur ^ 1;
        /* step k + 1, fed on the device (a failed one undid itself) */
        const bool queued =
            ahead && k + 1 < n && !gen_step(c, b, seq, 0, c->d.pick, &pick[nxt], &ticket[nxt]);
        const bool failed = ahead && k + 1 < n && !queued;
        if (op->wait(bk, ticket[cur]) || failed) { /* token k never reaches the caller */
            if (queued) op->wait(bk, ticket[nxt]);
            kv_truncate(c->kv, seq, len0 + k);
            goto done;
        }
        got++;
        if (!on_token(user, pick[cur]) || k + 1 == n) {
            if (queued) { /* the step past the end: undone */
                if (op->wait(bk, ticket[nxt])) goto done;
                kv_truncate(c->kv, seq, len0 + k + 1);
            }
            break;
        }
        if (!queued && gen_step(c, b, seq, pick[cur], NULL, &pick[nxt], &ticket[nxt])) goto done;
    }
    rc = 0;
done:
    /* the last decode's logits belong to a step the caller never saw */
    for (int i = 0; i < c->logit_row_cap; i++) c->logit_row[i] = -1;
    c->n_out = 0;
    beast_batch_free(b);
    return rc ? -1 : got;
}
