/* quant_legacy.c: the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q8_1: byte layouts (ggml's, as stored in GGUF), unpack to the decoded form
 * of quant_impl.h, and the reference quantizers.
 *
 * Layouts (little-endian, f16 = IEEE half):
 *   Q4_0 (18 B): f16 d | 16 B nibbles            x = d * (nib - 8)
 *   Q4_1 (20 B): f16 d | f16 m | 16 B nibbles    x = d * nib + m
 *   Q5_0 (22 B): f16 d | u32 qh | 16 B nibbles   x = d * ((nib | hb << 4) - 16)
 *   Q5_1 (24 B): f16 d | f16 m | u32 qh | 16 B   x = d * (nib | hb << 4) + m
 *   Q8_0 (34 B): f16 d | 32 x int8               x = d * q
 *   Q8_1 (36 B): f16 d | f16 s | 32 x int8       x = d * q;  s = d * sum(q)
 * Nibbles: element e < 16 is the low nibble of byte e, element e >= 16 the high
 * nibble of byte e - 16. hb (5th bit) of element e is bit e of qh.
 * Q8_1's s is redundant (a precomputed term for dot kernels); dequant ignores
 * it. It is an activation format: the engine quantizes into it, files do not
 * hold it.
 *
 * Quantizers and their error bounds (per block of 32, amax = max |x|,
 * range = max x - min x; f16 scale rounding adds a relative 2^-11 on top):
 *   Q4_0, Q5_0: scale from quant_fit_sym with candidates rounded to f16.
 *     The min/max candidate s0 = amax / 8 (Q4_0) or amax / 16 (Q5_0) leaves
 *     every element within s0 of its value (s0/2 by rounding, s0 on the short
 *     positive side of the asymmetric range), and the search is never worse,
 *     so RMS error <= s0. Typically about s0 / 3.5.
 *   Q4_1, Q5_1: quant_fit_affine with f16 candidates. The min/max candidate
 *     has step range / 15 (or / 31) and every element within half a step,
 *     plus the f16 rounding of the offset (<= 2^-11 |min x|), so RMS error
 *     <= range / 30 (or / 62) + 2^-10 amax.
 *   Q8_0, Q8_1: plain min/max, d = amax / 127 rounded to f16, q nearest in
 *     [-127, 127]: every element within d / 2 (a search gains nothing at 8
 *     bits, and this is the conventional activation quantizer).
 * Blocks whose scale under/overflows f16 (amax below ~1e-3 or above ~1e6)
 * lose precision; model weights and activations are far from both. */
#include <math.h>

#include "quant/quant_impl.h"

/* nibble of element e (0..31) in a 16-byte array */
static int nibble(const uint8_t *qs, int e) {
    return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
}

/* pack 32 values 0..15 into 16 bytes */
static void pack_nibbles(uint8_t *qs, const int8_t *v) {
    for (int i = 0; i < 16; i++) qs[i] = (uint8_t)((v[i] & 15) | ((v[i + 16] & 15) << 4));
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- Q4_0 ---- */

static void unpack_q4_0(const uint8_t *b, quant_block *u) {
    u->scale[0] = quant_rdf16(b);
    u->min[0] = 0;
    for (int e = 0; e < 32; e++) u->q[e] = (int8_t)(nibble(b + 2, e) - 8);
}

static const quant_format fmt_q4_0 = {32, 18, 32, unpack_q4_0};

void quant_quant_q4_0(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    int8_t q[32];
    for (int64_t i = 0; i < n; i += 32, x += 32, b += 18) {
        float d = quant_fit_sym(x, 32, -8, 7, 1);
        quant_wr16(b, quant_f16_sat(d));
        quant_assign_sym(x, 32, quant_rdf16(b), -8, 7, q);
        for (int e = 0; e < 32; e++) q[e] = (int8_t)(q[e] + 8);
        pack_nibbles(b + 2, q);
    }
}

/* ---- Q4_1 ---- */

static void unpack_q4_1(const uint8_t *b, quant_block *u) {
    u->scale[0] = quant_rdf16(b);
    u->min[0] = -quant_rdf16(b + 2);
    for (int e = 0; e < 32; e++) u->q[e] = (int8_t)nibble(b + 4, e);
}

static const quant_format fmt_q4_1 = {32, 20, 32, unpack_q4_1};

void quant_quant_q4_1(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    int8_t q[32];
    for (int64_t i = 0; i < n; i += 32, x += 32, b += 20) {
        float d, m;
        quant_fit_affine(x, 32, 15, 0, 1, &d, &m);
        quant_wr16(b, quant_f16_sat(d));
        quant_wr16(b + 2, quant_f16_sat(m));
        quant_assign_affine(x, 32, quant_rdf16(b), quant_rdf16(b + 2), 15, q);
        pack_nibbles(b + 4, q);
    }
}

/* ---- Q5_0 ---- */

static void unpack_q5_0(const uint8_t *b, quant_block *u) {
    uint32_t qh = rd32(b + 2);
    u->scale[0] = quant_rdf16(b);
    u->min[0] = 0;
    for (int e = 0; e < 32; e++)
        u->q[e] = (int8_t)((nibble(b + 6, e) | (int)((qh >> e) & 1) << 4) - 16);
}

static const quant_format fmt_q5_0 = {32, 22, 32, unpack_q5_0};

/* 32 values 0..31: high bits into a u32, low nibbles into 16 bytes */
static void pack_5bit(uint8_t *qh, uint8_t *qs, const int8_t *v) {
    uint32_t h = 0;
    for (int e = 0; e < 32; e++) h |= (uint32_t)((v[e] >> 4) & 1) << e;
    wr32(qh, h);
    pack_nibbles(qs, v);
}

void quant_quant_q5_0(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    int8_t q[32];
    for (int64_t i = 0; i < n; i += 32, x += 32, b += 22) {
        float d = quant_fit_sym(x, 32, -16, 15, 1);
        quant_wr16(b, quant_f16_sat(d));
        quant_assign_sym(x, 32, quant_rdf16(b), -16, 15, q);
        for (int e = 0; e < 32; e++) q[e] = (int8_t)(q[e] + 16);
        pack_5bit(b + 2, b + 6, q);
    }
}

/* ---- Q5_1 ---- */

static void unpack_q5_1(const uint8_t *b, quant_block *u) {
    uint32_t qh = rd32(b + 4);
    u->scale[0] = quant_rdf16(b);
    u->min[0] = -quant_rdf16(b + 2);
    for (int e = 0; e < 32; e++) u->q[e] = (int8_t)(nibble(b + 8, e) | (int)((qh >> e) & 1) << 4);
}

static const quant_format fmt_q5_1 = {32, 24, 32, unpack_q5_1};

void quant_quant_q5_1(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    int8_t q[32];
    for (int64_t i = 0; i < n; i += 32, x += 32, b += 24) {
        float d, m;
        quant_fit_affine(x, 32, 31, 0, 1, &d, &m);
        quant_wr16(b, quant_f16_sat(d));
        quant_wr16(b + 2, quant_f16_sat(m));
        quant_assign_affine(x, 32, quant_rdf16(b), quant_rdf16(b + 2), 31, q);
        pack_5bit(b + 4, b + 8, q);
    }
}

/* ---- Q8_0 and Q8_1 ---- */

static void unpack_q8_0(const uint8_t *b, quant_block *u) {
    u->scale[0] = quant_rdf16(b);
    u->min[0] = 0;
    for (int e = 0; e < 32; e++) u->q[e] = (int8_t)b[2 + e];
}

static const quant_format fmt_q8_0 = {32, 34, 32, unpack_q8_0};

/* d = amax / 127 as f16, q nearest for that d; returns sum(q) */
static int quant_8bit(const float *x, uint8_t *d_field, uint8_t *qs) {
    float amax = 0;
    for (int e = 0; e < 32; e++) amax = fmaxf(amax, fabsf(x[e]));
    quant_wr16(d_field, quant_f16_sat(amax / 127.0f));
    int8_t q[32];
    quant_assign_sym(x, 32, quant_rdf16(d_field), -127, 127, q);
    int sum = 0;
    for (int e = 0; e < 32; e++) {
        qs[e] = (uint8_t)q[e];
        sum += q[e];
    }
    return sum;
}

void quant_quant_q8_0(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n; i += 32, x += 32, b += 34) quant_8bit(x, b, b + 2);
}

static void unpack_q8_1(const uint8_t *b, quant_block *u) {
    u->scale[0] = quant_rdf16(b);
    u->min[0] = 0;
    for (int e = 0; e < 32; e++) u->q[e] = (int8_t)b[4 + e];
}

static const quant_format fmt_q8_1 = {32, 36, 32, unpack_q8_1};

void quant_quant_q8_1(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n; i += 32, x += 32, b += 36) {
        int sum = quant_8bit(x, b, b + 4);
        quant_wr16(b + 2, quant_f16_sat(quant_rdf16(b) * (float)sum));
    }
}

/* ---- row functions ---- */

#define ROW_FNS(t)                                                                                 \
    void quant_dequant_##t(const void *src, float *dst, int64_t n) {                               \
        quant_dequant_blocks(&fmt_##t, src, dst, n);                                               \
    }                                                                                              \
    float quant_dot_##t(const void *row, const float *x, int64_t n) {                              \
        return quant_dot_blocks(&fmt_##t, row, x, n);                                              \
    }

ROW_FNS(q4_0)
ROW_FNS(q4_1)
ROW_FNS(q5_0)
ROW_FNS(q5_1)
ROW_FNS(q8_0)
ROW_FNS(q8_1)
