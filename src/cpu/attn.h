/* attn.h: the AVX2 kernel of the CPU attention op (cpu_backend.c keeps the
 * scalar version as the reference and fallback).
 *
 * One call handles one query token and a group of query heads that share a
 * KV head (grouped-query attention), so every K and V row is read and
 * converted (F16C) once for the whole group instead of once per head.
 * Two passes over the positions: scores (then softmax in float), then the
 * weighted sum of V rows. */
#ifndef BEAST_CPU_ATTN_H
#define BEAST_CPU_ATTN_H

#include <stdint.h>

typedef struct {
    const void *k, *v; /* [slots][kv_dim] of f16 (kv_f16) or f32 */
    int kv_f16, kv_dim;
    const int32_t *blocks; /* the sequence's block table */
    int block_size;
} attn_seq;

/* Scratch floats attn_group_avx2 needs for n_pos positions and g heads. */
#define ATTN_SCRATCH(n_pos, g) ((size_t)(n_pos) * ((size_t)(g) + 1) + 16)

/* out[j][e] for heads j < g (q and out: g rows of d floats, contiguous):
 * softmax over positions p in [lo, pos] of scale * q_j . K[p] (K row
 * elements off .. off + d - 1 of the position's slot), times V[p]. */
void attn_group_avx2(const attn_seq *s, int off, int d, const float *q, int g, int lo, int pos,
                     float scale, float *out, float *scratch);

#endif
