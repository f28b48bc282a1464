/* quant_impl.h: what the files of src/quant/ share; not for other modules.
 *
 * The decoded form of a block. Every quantized type here stores a block as
 * small integers q[e] plus, per sub-block of `sub` elements, a scale and a
 * min, and element e of the block is
 *
 *     scale[e / sub] * q[e] - min[e / sub]        (computed in float)
 *
 * (min is 0 for the symmetric types). Each type has one "unpack" function
 * from its bytes to this form, with the element index arithmetic written out;
 * dequant and dot are then the same loop for every type.
 *
 * Exactness: in every format scale*q and min are exact in float: an f16 has
 * 11 significant bits, and sub-scale and quant add at most 12 more (Q6_K:
 * 7 + 5), within float's 24; Q8_K's f32 d times q is a single product. So
 * the value above is the correctly rounded d*sc*q - dmin*m whatever the
 * evaluation order, fma or not: any kernel that dequantizes to f32 this way,
 * on any hardware, gets bit-identical values, and they equal ggml's.
 *
 * Also here: the scale-fitting searches used by the quantizers (quant_fit.c)
 * and the per-type row functions that quant.c puts in the traits table. */
#ifndef BEAST_QUANT_IMPL_H
#define BEAST_QUANT_IMPL_H

#include <stdint.h>

#include "util/util.h"

#define QK_K            256 /* super-block size of the K-quants */
#define QUANT_MAX_BLOCK 256
#define QUANT_MAX_SUB   16 /* most sub-blocks in one block */

typedef struct {
    int8_t q[QUANT_MAX_BLOCK];
    float scale[QUANT_MAX_SUB];
    float min[QUANT_MAX_SUB];
} quant_block;

typedef struct {
    int block; /* elements per block */
    int bytes; /* bytes per block */
    int sub;   /* elements per sub-block (== block when there is one scale) */
    void (*unpack)(const uint8_t *blk, quant_block *out);
} quant_format;

/* Generic row loops over a format's unpack (quant.c). n is a multiple of
 * f->block. */
void quant_dequant_blocks(const quant_format *f, const void *src, float *dst, int64_t n);
/* sum over sub-blocks of scale * sum(q*x) - min * sum(x), all in double. */
float quant_dot_blocks(const quant_format *f, const void *row, const float *x, int64_t n);

/* Little-endian fields. */
static inline uint16_t quant_rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void quant_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}
static inline float quant_rdf16(const uint8_t *p) {
    return fp16_to_f32(quant_rd16(p));
}

/* ---- quantization helpers (quant_fit.c) ---- */

/* Nearest integer to v (ties to even) clamped to [lo, hi]; NaN gives lo.
 * Never converts an out-of-range float to int. */
int quant_nearest(float v, int lo, int hi);

/* f16 of v, saturating at +-65504 instead of overflowing to infinity. */
uint16_t quant_f16_sat(float v);
/* Smallest f16 >= v, for v >= 0 (saturates at 65504). Used for super-block
 * scales so that the integer sub-scales derived from them never overflow. */
uint16_t quant_f16_up(float v);

/* Symmetric fit: a scale s for x[0..n) ~ s * q, q integer in [qmin, qmax]
 * (qmin < 0 < qmax). Tries the min/max scale (largest-magnitude element onto
 * qmin) and a grid of smaller ones, each refined by least squares, keeping the
 * one with the least squared error under nearest-integer assignment. So its
 * error is never worse than the min/max scale's. With round_f16 set, every
 * candidate is rounded through f16 before it is judged (for scales stored as
 * f16). Returns 0 for an all-zero x. */
float quant_fit_sym(const float *x, int n, int qmin, int qmax, int round_f16);

/* Affine fit: x ~ s * q + b, q integer in [0, qmax], s >= 0. Same search
 * (min/max first, then narrower ranges, least-squares refits). With
 * b_nonpos set, b is kept <= 0 (the K-quants store -b as an unsigned min).
 * With round_f16, s and b are rounded through f16 before being judged. */
void quant_fit_affine(const float *x, int n, int qmax, int b_nonpos, int round_f16, float *s,
                      float *b);

/* Nearest-integer assignment for a given scale (and offset): writes q and
 * returns the squared error sum (x - (s*q [+ b]))^2 in double, with s*q [+ b]
 * computed in float as dequant does. s == 0 gives q = 0 everywhere. */
double quant_assign_sym(const float *x, int n, float s, int qmin, int qmax, int8_t *q);
double quant_assign_affine(const float *x, int n, float s, float b, int qmax, int8_t *q);

/* ---- per-type row functions for the traits table ---- */

#define QUANT_DECLARE_ROW_FNS(t)                                                                   \
    void quant_dequant_##t(const void *src, float *dst, int64_t n);                                \
    void quant_quant_##t(const float *src, void *dst, int64_t n);                                  \
    float quant_dot_##t(const void *row, const float *x, int64_t n);

QUANT_DECLARE_ROW_FNS(q4_0)
QUANT_DECLARE_ROW_FNS(q4_1)
QUANT_DECLARE_ROW_FNS(q5_0)
QUANT_DECLARE_ROW_FNS(q5_1)
QUANT_DECLARE_ROW_FNS(q8_0)
QUANT_DECLARE_ROW_FNS(q8_1)
QUANT_DECLARE_ROW_FNS(q2_k)
QUANT_DECLARE_ROW_FNS(q3_k)
QUANT_DECLARE_ROW_FNS(q4_k)
QUANT_DECLARE_ROW_FNS(q5_k)
QUANT_DECLARE_ROW_FNS(q6_k)
QUANT_DECLARE_ROW_FNS(q8_k)

#endif
