/* kv.c: paged KV cache bookkeeping (see kv.h). */
#include "kv/kv.h"
#include "quant/quant.h"
#include "util/util.h"

#include <stdlib.h>

kv_cache *kv_new(backend *const *layer_bk, int n_layer, int kv_dim, int type, int n_seq, int n_ctx,
                 int n_tokens, int block_size) {
    if (n_seq < 1 || n_ctx < 1 || n_tokens < 1 || block_size < 1) {
        err_set("kv cache: bad size (n_seq %d, n_ctx %d, tokens %d)", n_seq, n_ctx, n_tokens);
        return NULL;
    }
    kv_cache *kv = xcalloc(1, sizeof *kv);
    if (!kv) return NULL;
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->block_size = block_size;
    kv->n_blocks = (n_tokens + block_size - 1) / block_size;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    size_t esize = type == QT_F16 ? 2 : 4;
    size_t bytes = (size_t)kv->n_blocks * block_size * kv_dim * esize;
    kv->layers = xcalloc((size_t)n_layer, sizeof *kv->layers);
    kv->layer_bk = xcalloc((size_t)n_layer, sizeof *kv->layer_bk);
    kv->refcnt = xcalloc((size_t)kv->n_blocks, sizeof *kv->refcnt);
    kv->free_list = xcalloc((size_t)kv->n_blocks, sizeof *kv->free_list);
    kv->seqs = xcalloc((size_t)n_seq, sizeof *kv->seqs);
    if (!kv->layers || !kv->layer_bk || !kv->refcnt || !kv->free_list || !kv->seqs) goto fail;
    for (int l = 0; l < n_layer; l++) {
        backend *bk = kv->layer_bk[l] = layer_bk[l];
        bk_kv_layer *L = &kv->layers[l];
        L->kv_dim = kv_dim;
        L->type = type;
        if (!(L->k = bk->ops->alloc(bk, bytes)) || !(L->v = bk->ops->alloc(bk, bytes))) {
            err_prefix("kv cache (%zu MiB per layer)", 2 * bytes >> 20);
            goto fail;
        }
    }
    /* stack with block 0 on top so allocation order is 0, 1, 2, ... */
    for (int i = 0; i < kv->n_blocks; i++) kv->free_list[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    return kv;
fail:
    kv_free(kv);
    return NULL;
}

void kv_free(kv_cache *kv) {
    if (!kv) return;
    if (kv->layers && kv->layer_bk)
        for (int l = 0; l < kv->n_layer; l++) {
            backend *bk = kv->layer_bk[l];
            if (kv->layers[l].k) bk->ops->free(bk, kv->layers[l].k);
            if (kv->layers[l].v) bk->ops->free(bk, kv->layers[l].v);
        }
    if (kv->seqs)
        for (int s = 0; s < kv->n_seq; s++) free(kv->seqs[s].blocks);
    free(kv->layers);
    free(kv->layer_bk);
    free(kv->refcnt);
    free(kv->free_list);
    free(kv->seqs);
    free(kv);
}

/* Make sure seq's block table can hold n entries. */
static int grow_table(kv_seq *s, int n) {
    if (n <= s->cap_blocks) return 0;
    int cap = MAX(n, 2 * s->cap_blocks);
    int32_t *b = xrealloc(s->blocks, (size_t)cap * sizeof *b);
    if (!b) return -1;
    s->blocks = b;
    s->cap_blocks = cap;
    return 0;
}

int kv_reserve(kv_cache *kv, int seq, int n) {
    kv_seq *s = &kv->seqs[seq];
    if (s->len + n > kv->n_ctx) {
        err_set("context full: sequence %d would hold %d positions, the context is %d", seq,
                s->len + n, kv->n_ctx);
        return -1;
    }
    int need = (s->len + n + kv->block_size - 1) / kv->block_size;
    if (need - s->n_blocks > kv->n_free) {
        err_set("KV cache full: %d more blocks needed, %d free", need - s->n_blocks, kv->n_free);
        return -1;
    }
    if (grow_table(s, need)) return -1;
    while (s->n_blocks < need) {
        int32_t id = kv->free_list[--kv->n_free];
        kv->refcnt[id] = 1;
        s->blocks[s->n_blocks++] = id;
    }
    s->len += n;
    return 0;
}

int32_t kv_slot(const kv_cache *kv, int seq, int pos) {
    const kv_seq *s = &kv->seqs[seq];
    return s->blocks[pos / kv->block_size] * kv->block_size + pos % kv->block_size;
}

int kv_truncate(kv_cache *kv, int seq, int len) {
    kv_seq *s = &kv->seqs[seq];
    if (len < 0) len = 0;
    if (len >= s->len) return s->len;
    int bs = kv->block_size;
    /* never keep a partial shared block: later writes would land in it */
    if (len % bs && kv->refcnt[s->blocks[len / bs]] > 1) len -= len % bs;
    int keep = (len + bs - 1) / bs;
    while (s->n_blocks > keep) {
        int32_t id = s->blocks[--s->n_blocks];
        if (--kv->refcnt[id] == 0) kv->free_list[kv->n_free++] = id;
    }
    s->len = len;
    return len;
}

int kv_share(kv_cache *kv, int dst, int src, int n) {
    if (dst < 0 || dst >= kv->n_seq || src < 0 || src >= kv->n_seq || dst == src || n < 0) {
        err_set("kv share: bad sequences %d <- %d or length %d", dst, src, n);
        return -1;
    }
    kv_seq *d = &kv->seqs[dst];
    const kv_seq *s = &kv->seqs[src];
    if (d->len != 0) {
        err_set("kv share: sequence %d is not empty (%d positions)", dst, d->len);
        return -1;
    }
    int nb = MIN(n, s->len) / kv->block_size;
    if (grow_table(d, nb)) return -1;
    for (int i = 0; i < nb; i++) {
        d->blocks[i] = s->blocks[i];
        kv->refcnt[s->blocks[i]]++;
    }
    d->n_blocks = nb;
    d->len = nb * kv->block_size;
    return d->len;
}

int kv_n_free(const kv_cache *kv) {
    return kv->n_free;
}
