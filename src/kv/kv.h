/* kv.h: the paged KV cache.
 *
 * Storage is one K and one V buffer per layer, in the memory of that layer's
 * backend (a model split between the CPU and the GPU keeps each layer's
 * cache where the layer runs), of n_blocks * block_size slots (rows of
 * kv_dim values); the bookkeeping below is shared by all layers. A sequence owns an
 * ordered list of blocks (its block table); position p of the sequence lives
 * in slot table[p / block_size] * block_size + p % block_size. Blocks are
 * reference-counted so sequences can share a prefix (prefix caching, forks)
 * and are returned to the free list when the last user lets go.
 *
 * Sharing invariant: a sequence never writes into a block it shares. Only
 * whole (full) blocks are ever shared (kv_share), a sequence only writes at
 * positions >= its length, and a truncation that would end inside a shared
 * block keeps only the whole blocks before it (kv_truncate rounds down), so
 * the next write goes to a fresh block.
 *
 * This file is host-side bookkeeping only; kernels see slots and block
 * tables through bk_attn_batch. */
#ifndef BEAST_KV_H
#define BEAST_KV_H

#include "backend/backend.h"

#include <stdint.h>

typedef struct {
    int32_t *blocks; /* block table */
    int n_blocks;    /* entries used */
    int cap_blocks;  /* entries allocated */
    int len;         /* positions stored */
} kv_seq;

typedef struct {
    backend **layer_bk; /* [n_layer] the backend holding each layer's storage */
    int n_layer, kv_dim, block_size, n_blocks, n_seq, n_ctx;
    bk_kv_layer *layers; /* [n_layer] */
    int32_t *refcnt;     /* [n_blocks] */
    int32_t *free_list;  /* stack of free block ids */
    int n_free;
    kv_seq *seqs; /* [n_seq] */
} kv_cache;

/* layer_bk[l]: the backend of layer l (copied); n_ctx: max positions per
 * sequence; n_tokens: total slots over all sequences (rounded up to whole
 * blocks). */
kv_cache *kv_new(backend *const *layer_bk, int n_layer, int kv_dim, int type, int n_seq, int n_ctx,
                 int n_tokens, int block_size);
void kv_free(kv_cache *kv);

/* Make room for n more positions in seq (allocating blocks). 0, or -1 with
 * err_set when the sequence would pass n_ctx or the cache is full; on failure
 * nothing changes. */
int kv_reserve(kv_cache *kv, int seq, int n);
/* Slot of position pos of seq (which must be reserved). */
int32_t kv_slot(const kv_cache *kv, int seq, int pos);
/* Keep the first len positions, releasing blocks past them. When len ends
 * inside a block that another sequence also holds, the length is rounded
 * down to that block's start (the block is let go). Returns the length kept
 * (<= len; the old length when len is not below it). */
int kv_truncate(kv_cache *kv, int seq, int len);
/* Number of free blocks. */
int kv_n_free(const kv_cache *kv);

/* Let dst (which must hold nothing) start with the first whole blocks of
 * src: floor(min(n, len(src)) / block_size) blocks, reference counts bumped,
 * no data copied. Returns the positions dst now holds (a multiple of
 * block_size, possibly 0), or -1 with err_set on bad arguments. */
int kv_share(kv_cache *kv, int dst, int src, int n);

#endif
