/* dot_legacy.c: AVX2 matrix-product kernels for the 32-element block types
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against Q8_32 activations (q8.h).
 *
 * A weight block is turned into 32 bytes of integers w plus a float scale dw
 * and offset off, element = dw * w + off:
 *   Q4_0: w = nibble (0..15),           off = -8 dw
 *   Q4_1: w = nibble,                   off = m
 *   Q5_0: w = nibble | high bit << 4,   off = -16 dw
 *   Q5_1: w = nibble | high bit << 4,   off = m
 *   Q8_0: w = q (signed),               off = 0
 * so with an activation block a = da * qa (and its sum s = da * sum qa):
 *   dot = dw * da * sum(w * qa) + off * s.
 * sum(w * qa) is exact in integers: maddubs (unsigned w x signed qa, pairs
 * in int16: at most 2 * 31 * 127) and madd to int32; Q8_0's signed weights
 * use the sign trick (|w| x qa with w's sign, at most 2 * 127 * 127).
 *
 * Decoding (up to 4 tokens): leg_row streams one weight row (prefetching
 * 2 KB ahead); per block and token maddubs + madd give int32 partial sums,
 * and every 8 blocks these are reduced with hadds to one vector with a lane
 * per block, so the 8 scales (converted at once) and the offsets are applied
 * with one multiply-add each (leg_apply).
 * Batches: leg_pack unpacks a panel of PR rows x PB blocks into scratch
 * (32 bytes of w per block, dw and the offset as floats), and leg_micro runs
 * 1 row x 4 tokens over it with the same reduction: the dots of two blocks
 * combined by one hadd as they are made, two more hadds and a cross-lane add
 * per 8 blocks, then leg_apply. (bench/kernels/legacy_micro.c: as fast as
 * the earlier per-block scaling, v1 there, with 25% fewer instructions.)
 *
 * Batch independence: both paths do the same float operations in the same
 * order for a (row, token): per panel of PB blocks one accumulator, groups
 * of 8 blocks in the lanes (a last partial group with zero lanes), the
 * panel's lane sum added to the running sum. Integer sums are exact in any
 * order. So a token's result does not depend on how many tokens share the
 * call (test_determinism.c). */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

/* batch panel: PR rows x PB blocks; micro-kernel tile 1 row x MC tokens.
 * Scratch of a panel: 32 bytes of w per row and block, then dw and the
 * offset, one float each per row and block. The decode kernel sums in the
 * same panels of PB blocks (see leg_row). */
#define PR      16
#define PB      64
#define MC      4
#define PANEL_W ((size_t)PR * PB * 32)
#define PANEL_F ((size_t)PR * PB * 4)
_Static_assert(PANEL_W + 2 * PANEL_F <= MM_SCRATCH_BYTES, "panel does not fit the scratch");
/* the default batch path: tile FMR rows x MC tokens; per row and block 32 B
 * of w and 32 B of dw x 8, then the offsets */
#define FMR      2
#define FPANEL_W ((size_t)PR * PB * 64)
_Static_assert(FPANEL_W + PANEL_F <= MM_SCRATCH_BYTES, "panel does not fit the scratch");

SIMD_INLINE int leg_bytes(int type) {
    switch (type) {
    case QT_Q4_0:
        return 18;
    case QT_Q4_1:
        return 20;
    case QT_Q5_0:
        return 22;
    case QT_Q5_1:
        return 24;
    default:
        return 34; /* Q8_0 */
    }
}

/* the 32 integers w of a block (signed for Q8_0) */
SIMD_INLINE __m256i leg_ints(int type, const uint8_t *b) {
    const __m256i b4 = _mm256_set1_epi8(16);
    switch (type) {
    case QT_Q4_0:
        return simd_nibbles32(b + 2);
    case QT_Q4_1:
        return simd_nibbles32(b + 4);
    case QT_Q5_0:
        return _mm256_or_si256(simd_nibbles32(b + 6),
                               _mm256_and_si256(simd_bits_to_bytes(simd_rd32(b + 2)), b4));
    case QT_Q5_1:
        return _mm256_or_si256(simd_nibbles32(b + 8),
                               _mm256_and_si256(simd_bits_to_bytes(simd_rd32(b + 4)), b4));
    default:
        return _mm256_loadu_si256((const __m256i *)(b + 2));
    }
}

/* offset of a block given its scale (Q8_0: 0) */
SIMD_INLINE float leg_off(int type, const uint8_t *b, float dw) {
    switch (type) {
    case QT_Q4_0:
        return -8.0f * dw;
    case QT_Q5_0:
        return -16.0f * dw;
    case QT_Q4_1:
    case QT_Q5_1:
        return simd_f16(b + 2);
    default:
        return 0;
    }
}

/* the same for 8 consecutive blocks */
SIMD_INLINE __m256 leg_off8(int type, const uint8_t *b, __m256 dw8) {
    switch (type) {
    case QT_Q4_0:
        return _mm256_mul_ps(dw8, _mm256_set1_ps(-8.0f));
    case QT_Q5_0:
        return _mm256_mul_ps(dw8, _mm256_set1_ps(-16.0f));
    case QT_Q4_1:
    case QT_Q5_1:
        return simd_f16x8(b + 2, (size_t)leg_bytes(type));
    default:
        return _mm256_setzero_ps();
    }
}

/* sum(w * qa) in 8 int32 lanes; wabs = |w| for Q8_0 (unused otherwise) */
SIMD_INLINE __m256i leg_dot(int type, __m256i w, __m256i wabs, __m256i qa) {
    if (type == QT_Q8_0) return simd_dot_u8s8(wabs, _mm256_sign_epi8(qa, w));
    return simd_dot_u8s8(w, qa);
}

/* lanes i < n all ones */
SIMD_INLINE __m256i leg_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* h[i] = hadd of the dots of blocks 2i, 2i + 1 -> lane j = the dot of block j */
SIMD_INLINE __m256i leg_pairs_to_lanes(const __m256i h[4]) {
    /* ab = [0 1 2 3 | 0 1 2 3]: the low / high halves of blocks 0..3 */
    __m256i ab = _mm256_hadd_epi32(h[0], h[1]), cd = _mm256_hadd_epi32(h[2], h[3]);
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20),
                            _mm256_permute2x128_si256(ab, cd, 0x31));
}

/* The float work of a group of 8 blocks, lane i = block i (lanes of missing
 * blocks of a last partial group are 0 in every operand): the integer dots
 * times dw * da, then the offsets times the activation block sums. Both
 * paths call this with the same values, so they round identically. */
SIMD_INLINE __m256 leg_apply(int has_off, __m256i isum, __m256 dw8, __m256 da8, __m256 off8,
                             __m256 sa8, __m256 acc) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw8, da8), acc);
    if (has_off) acc = _mm256_fmadd_ps(off8, sa8, acc);
    return acc;
}

/* A last group of exactly 4 blocks (k = 640: 20 blocks) at blk, activation
 * block b, for leg_row: the lanes 0..3 of the 8-lane group computation in
 * 128-bit halves. Lanes 4..7 would add 0 * 0 to the accumulator, i.e. + 0
 * (which only turns -0 into +0), so they become acc + 0. */
SIMD_INLINE void leg_half(int type, int C, const uint8_t *blk, int64_t b, const int8_t *const *qa,
                          const float *const *da, const float *const *sa, __m256 *acc) {
    const int bytes = leg_bytes(type), has_off = type != QT_Q8_0;
    __m256i p[MC][4];
    SIMD_UNROLL for (int i = 0; i < 4; i++) {
        __m256i wv = leg_ints(type, blk + i * bytes);
        __m256i wabs = type == QT_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
        SIMD_UNROLL for (int c = 0; c < C; c++) p[c][i] =
            leg_dot(type, wv, wabs, _mm256_loadu_si256((const __m256i *)(qa[c] + (b + i) * 32)));
    }
    __m128i h = _mm_cvtsi32_si128(simd_rd16(blk));
    h = _mm_insert_epi16(h, simd_rd16(blk + bytes), 1);
    h = _mm_insert_epi16(h, simd_rd16(blk + 2 * bytes), 2);
    h = _mm_insert_epi16(h, simd_rd16(blk + 3 * bytes), 3);
    __m128 dw4 = _mm_cvtph_ps(h), off4 = _mm_setzero_ps();
    if (type == QT_Q4_0) off4 = _mm_mul_ps(dw4, _mm_set1_ps(-8.0f));
    if (type == QT_Q5_0) off4 = _mm_mul_ps(dw4, _mm_set1_ps(-16.0f));
    if (type == QT_Q4_1 || type == QT_Q5_1) {
        __m128i m = _mm_cvtsi32_si128(simd_rd16(blk + 2));
        m = _mm_insert_epi16(m, simd_rd16(blk + bytes + 2), 1);
        m = _mm_insert_epi16(m, simd_rd16(blk + 2 * bytes + 2), 2);
        m = _mm_insert_epi16(m, simd_rd16(blk + 3 * bytes + 2), 3);
        off4 = _mm_cvtph_ps(m);
    }
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        /* as leg_pairs_to_lanes with the pairs of blocks 4..7 zero */
        __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(p[c][0], p[c][1]),
                                       _mm256_hadd_epi32(p[c][2], p[c][3]));
        __m128i isum = _mm_add_epi32(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1));
        __m128 lo = _mm256_castps256_ps128(acc[c]), hi = _mm256_extractf128_ps(acc[c], 1);
        lo = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), _mm_mul_ps(dw4, _mm_loadu_ps(da[c] + b)), lo);
        if (has_off) lo = _mm_fmadd_ps(off4, _mm_loadu_ps(sa[c] + b), lo);
        acc[c] = _mm256_set_m128(_mm_add_ps(hi, _mm_setzero_ps()), lo);
    }
}

/* ---- decoding: one weight row x C <= 4 tokens ----
 *
 * The order of the float operations is the batch path's: per panel of PB
 * blocks an accumulator with a lane per block of each group of 8 (partial
 * last group: zero lanes), its lane sum added to the row's running sum. */

SIMD_INLINE void leg_row(int type, int C, int64_t k, const uint8_t *w, const mm_act *a, float *out,
                         size_t ldo) {
    const int bytes = leg_bytes(type), has_off = type != QT_Q8_0;
    const int64_t nb = k / 32;
    const int8_t *qa[MC];
    const float *da[MC], *sa[MC];
    __m256 acc[MC];
    float sum[MC];
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        da[c] = q8_d(qa[c], k);
        sa[c] = q8_s(qa[c], k);
        sum[c] = 0;
    }
    for (int64_t b0 = 0; b0 < nb; b0 += PB) {
        const int64_t b1 = MIN(b0 + PB, nb);
        int64_t b = b0;
        SIMD_UNROLL for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
        for (; b + 8 <= b1; b += 8) {
            const uint8_t *blk = w + b * bytes;
            /* the dots of block pairs combined by hadd as they are made (few
             * live vectors: the constants of the unpacking stay in registers) */
            __m256i h[MC][4];
            simd_prefetch(blk + SIMD_PREFETCH, 8 * bytes);
            SIMD_UNROLL for (int i = 0; i < 8; i += 2) {
                __m256i p[2][MC];
                SIMD_UNROLL for (int u = 0; u < 2; u++) {
                    __m256i wv = leg_ints(type, blk + (i + u) * bytes);
                    __m256i wabs = type == QT_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
                    SIMD_UNROLL for (int c = 0; c < C; c++) p[u][c] =
                        leg_dot(type, wv, wabs,
                                _mm256_loadu_si256((const __m256i *)(qa[c] + (b + i + u) * 32)));
                }
                SIMD_UNROLL for (int c = 0; c < C; c++) h[c][i / 2] =
                    _mm256_hadd_epi32(p[0][c], p[1][c]);
            }
            __m256 dw8 = simd_f16x8(blk, (size_t)bytes);
            __m256 off8 = leg_off8(type, blk, dw8);
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[c] =
                leg_apply(has_off, leg_pairs_to_lanes(h[c]), dw8, _mm256_loadu_ps(da[c] + b), off8,
                          _mm256_loadu_ps(sa[c] + b), acc[c]);
        }
        if (b1 - b == 4) { /* k = 640: 20 blocks */
            leg_half(type, C, w + b * bytes, b, qa, da, sa, acc);
            b = b1;
        }
        if (b < b1) { /* the last nb % 8 blocks */
            const int jn = (int)(b1 - b);
            const __m256i m = leg_mask(jn);
            float dw[8] = {0}, off[8] = {0};
            __m256i h[MC][4]; /* as in leg_group: hadd of the dots of pairs */
            SIMD_UNROLL for (int i = 0; i < 8; i += 2) {
                SIMD_UNROLL for (int c = 0; c < C; c++) h[c][i / 2] = _mm256_setzero_si256();
                if (i >= jn) continue;
                __m256i pp[2][MC];
                SIMD_UNROLL for (int u = 0; u < 2; u++) {
                    SIMD_UNROLL for (int c = 0; c < C; c++) pp[u][c] = _mm256_setzero_si256();
                    if (i + u >= jn) continue;
                    const uint8_t *blk = w + (b + i + u) * bytes;
                    __m256i wv = leg_ints(type, blk);
                    __m256i wabs = type == QT_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
                    dw[i + u] = simd_f16(blk);
                    off[i + u] = leg_off(type, blk, dw[i + u]);
                    SIMD_UNROLL for (int c = 0; c < C; c++) pp[u][c] =
                        leg_dot(type, wv, wabs,
                                _mm256_loadu_si256((const __m256i *)(qa[c] + (b + i + u) * 32)));
                }
                SIMD_UNROLL for (int c = 0; c < C; c++) h[c][i / 2] =
                    _mm256_hadd_epi32(pp[0][c], pp[1][c]);
            }
            __m256 dw8 = _mm256_loadu_ps(dw), off8 = _mm256_loadu_ps(off);
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[c] =
                leg_apply(has_off, leg_pairs_to_lanes(h[c]), dw8, _mm256_maskload_ps(da[c] + b, m),
                          off8, _mm256_maskload_ps(sa[c] + b, m), acc[c]);
        }
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            float v = simd_hsum(acc[c]);
            sum[c] = b0 == 0 ? v : sum[c] + v;
        }
    }
    SIMD_UNROLL for (int c = 0; c < C; c++) out[c * ldo] = sum[c];
}

/* ---- batches: panels and a micro-kernel ---- */

/* Unpack rows [0, nr) x blocks [b0, b0 + nb) into the panel: for row r and
 * block j, 32 bytes of w at pw + (r * PB + j) * 32, dw[r * PB + j] and
 * off[r * PB + j]; zero blocks after a last partial group of 8. */
SIMD_INLINE void leg_pack(int type, const uint8_t *w, size_t ws, int nr, int64_t b0, int nb,
                          uint8_t *pw, float *dw, float *off) {
    const int bytes = leg_bytes(type);
    for (int r = 0; r < nr; r++) {
        const uint8_t *blk = w + r * ws + b0 * bytes;
        uint8_t *p = pw + (size_t)r * PB * 32;
        int j = 0;
        for (; j < nb; j++, blk += bytes, p += 32) {
            float d = simd_f16(blk);
            _mm256_store_si256((__m256i *)p, leg_ints(type, blk));
            dw[r * PB + j] = d;
            off[r * PB + j] = leg_off(type, blk, d);
        }
        for (; j % 8; j++, p += 32) { /* zero blocks up to a group of 8 */
            _mm256_store_si256((__m256i *)p, _mm256_setzero_si256());
            dw[r * PB + j] = 0;
            off[r * PB + j] = 0;
        }
    }
}

/* Blocks [j8, j8 + jn) of a panel row (jn <= 8) into acc[c] for C tokens.
 * The integer dots of block pairs are combined with hadd as they are made,
 * then to one vector per token with a lane per block (bench/kernels/
 * legacy_micro.c v2). A last partial group (jn < 8, a compile-time 8 in
 * the main loop) skips the pairs past its blocks, reads the zero block the
 * pack left after an odd last block against a valid activation block (a
 * zero dot), and the activation scales with a mask. */
SIMD_INLINE void leg_group(int type, int C, const uint8_t *pw, const float *dw, const float *off,
                           const int8_t *const *qa, const float *const *da, const float *const *sa,
                           int j8, int jn, __m256 *acc) {
    const int has_off = type != QT_Q8_0;
    __m256i h[MC][4]; /* per token: hadd of the dots of blocks 2i, 2i + 1 */
    SIMD_UNROLL for (int i = 0; i < 8; i += 2) {
        if (i >= jn) { /* pairs past a partial group: no blocks */
            SIMD_UNROLL for (int c = 0; c < C; c++) h[c][i / 2] = _mm256_setzero_si256();
            continue;
        }
        __m256i wa = _mm256_load_si256((const __m256i *)(pw + (size_t)(j8 + i) * 32));
        __m256i wb = _mm256_load_si256((const __m256i *)(pw + (size_t)(j8 + i + 1) * 32));
        __m256i aa = type == QT_Q8_0 ? _mm256_sign_epi8(wa, wa) : wa;
        __m256i ab = type == QT_Q8_0 ? _mm256_sign_epi8(wb, wb) : wb;
        int ia = j8 + (i < jn ? i : 0), ib = j8 + (i + 1 < jn ? i + 1 : 0);
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            __m256i pa =
                leg_dot(type, wa, aa, _mm256_loadu_si256((const __m256i *)(qa[c] + ia * 32)));
            __m256i pb =
                leg_dot(type, wb, ab, _mm256_loadu_si256((const __m256i *)(qa[c] + ib * 32)));
            h[c][i / 2] = _mm256_hadd_epi32(pa, pb);
        }
    }
    __m256 dw8 = _mm256_load_ps(dw + j8), off8 = _mm256_load_ps(off + j8);
    const __m256i m = leg_mask(jn);
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        __m256i isum = leg_pairs_to_lanes(h[c]);
        __m256 da8 = jn == 8 ? _mm256_loadu_ps(da[c] + j8) : _mm256_maskload_ps(da[c] + j8, m);
        __m256 sa8 = jn == 8 ? _mm256_loadu_ps(sa[c] + j8) : _mm256_maskload_ps(sa[c] + j8, m);
        acc[c] = leg_apply(has_off, isum, dw8, da8, off8, sa8, acc[c]);
    }
}

/* One row x C tokens of a panel over nb blocks starting at activation block
 * b0; adds into out (out[c * ldo]) unless first. Per group of 8 blocks the
 * integer dots of block pairs are combined with hadd as they are made, to
 * one vector per token with a lane per block (bench/kernels/legacy_micro.c
 * v2: as fast as applying the scales per block, and the same float
 * operations as the decode kernel). */
SIMD_INLINE void leg_micro(int type, int C, const uint8_t *pw, const float *dw, const float *off,
                           int nb, const mm_act *a, int64_t k, int64_t b0, float *out, size_t ldo,
                           int first) {
    __m256 acc[MC];
    const int8_t *qa[MC];
    const float *da[MC], *sa[MC];
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        da[c] = q8_d(qa[c], k) + b0;
        sa[c] = q8_s(qa[c], k) + b0;
        qa[c] += b0 * 32;
        acc[c] = _mm256_setzero_ps();
    }
    int j8 = 0;
    for (; j8 + 8 <= nb; j8 += 8) leg_group(type, C, pw, dw, off, qa, da, sa, j8, 8, acc);
    if (j8 < nb) leg_group(type, C, pw, dw, off, qa, da, sa, j8, nb - j8, acc);
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        float v = simd_hsum(acc[c]);
        out[c * ldo] = first ? v : out[c * ldo] + v;
    }
}

/* The default batch path. Unpack rows [0, nr) x blocks [b0, b0 + nb) into
 * the panel: for row r and block j, 32 bytes of w at pw + (r * PB + j) * 64,
 * dw x 8 after them, and off[r * PB + j]. */
SIMD_INLINE void leg_pack_fast(int type, const uint8_t *w, size_t ws, int nr, int64_t b0, int nb,
                               uint8_t *pw, float *off) {
    const int bytes = leg_bytes(type);
    for (int r = 0; r < nr; r++) {
        const uint8_t *blk = w + r * ws + b0 * bytes;
        uint8_t *p = pw + (size_t)r * PB * 64;
        for (int j = 0; j < nb; j++, blk += bytes, p += 64) {
            float dw = simd_f16(blk);
            _mm256_store_si256((__m256i *)p, leg_ints(type, blk));
            _mm256_store_ps((float *)(p + 32), _mm256_set1_ps(dw));
            off[r * PB + j] = leg_off(type, blk, dw);
        }
    }
}

/* R rows x C tokens of a panel over nb blocks starting at activation block
 * b0; adds into out (out[c * ldo + r]) unless first. Per row, token and
 * block: the dot in 8 lanes times dw * da, added to the accumulator. After every 8 blocks,
 * the offset terms of those blocks: one FMA per row and token of the rows'
 * offsets with the tokens' block sums (8 blocks in the lanes). */
SIMD_INLINE void leg_micro_fast(int type, int R, int C, const uint8_t *pw, const float *off, int nb,
                                const mm_act *a, int64_t k, int64_t b0, float *out, size_t ldo,
                                int first) {
    const int has_off = type != QT_Q8_0;
    __m256 acc[FMR][MC];
    const int8_t *qa[MC];
    const float *da[MC], *sa[MC];
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        da[c] = q8_d(qa[c], k) + b0;
        sa[c] = q8_s(qa[c], k) + b0;
        qa[c] += b0 * 32;
        SIMD_UNROLL for (int r = 0; r < R; r++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int j8 = 0; j8 < nb; j8 += 8) {
        int jn = MIN(8, nb - j8);
        for (int j = j8; j < j8 + jn; j++) {
            __m256i wv[FMR], wabs[FMR];
            SIMD_UNROLL for (int r = 0; r < R; r++) {
                wv[r] = _mm256_load_si256((const __m256i *)(pw + ((size_t)r * PB + j) * 64));
                wabs[r] = type == QT_Q8_0 ? _mm256_sign_epi8(wv[r], wv[r]) : wv[r];
            }
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                __m256 dac = _mm256_broadcast_ss(da[c] + j);
                __m256i av = _mm256_load_si256((const __m256i *)(qa[c] + j * 32));
                SIMD_UNROLL for (int r = 0; r < R; r++) {
                    __m256i p = leg_dot(type, wv[r], wabs[r], av);
                    __m256 dw =
                        _mm256_load_ps((const float *)(pw + ((size_t)r * PB + j) * 64 + 32));
                    acc[r][c] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dac, dw), acc[r][c]);
                }
            }
        }
        if (has_off) {
            __m256i m = leg_mask(jn);
            __m256 o[FMR];
            SIMD_UNROLL for (int r = 0; r < R; r++) o[r] = _mm256_maskload_ps(off + r * PB + j8, m);
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                __m256 sv = _mm256_maskload_ps(sa[c] + j8, m);
                SIMD_UNROLL for (int r = 0; r < R; r++) acc[r][c] =
                    _mm256_fmadd_ps(o[r], sv, acc[r][c]);
            }
        }
    }
    SIMD_UNROLL for (int r = 0; r < R; r++) SIMD_UNROLL for (int c = 0; c < C; c++) {
        float v = simd_hsum(acc[r][c]);
        out[c * ldo + r] = first ? v : out[c * ldo + r] + v;
    }
}

typedef void (*leg_micro_fn)(const uint8_t *pw, const float *dw, const float *off, int nb,
                             const mm_act *a, int64_t k, int64_t b0, float *out, size_t ldo,
                             int first);
typedef void (*leg_fast_fn)(const uint8_t *pw, const float *off, int nb, const mm_act *a, int64_t k,
                            int64_t b0, float *out, size_t ldo, int first);
typedef void (*leg_row_fn)(int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a,
                           float *out, size_t ldo);

/* The kernels of one type: rows and micro-kernels for C in 1..4 tokens. */
typedef struct {
    leg_row_fn rows[4];
    leg_micro_fn micros[4];   /* exact path: lane per block */
    leg_fast_fn fast[FMR][4]; /* default path: R rows x C tokens */
    void (*pack)(const uint8_t *w, size_t ws, int nr, int64_t b0, int nb, uint8_t *pw, float *dw,
                 float *off);
    void (*pack_fast)(const uint8_t *w, size_t ws, int nr, int64_t b0, int nb, uint8_t *pw,
                      float *off);
} leg_kernels;

#define LEG_MICRO(t, C)                                                                            \
    static void leg_micro_##t##_##C(const uint8_t *pw, const float *dw, const float *off, int nb,  \
                                    const mm_act *a, int64_t k, int64_t b0, float *out,            \
                                    size_t ldo, int first) {                                       \
        leg_micro(QT_##t, C, pw, dw, off, nb, a, k, b0, out, ldo, first);                          \
    }
#define LEG_FAST(t, R, C)                                                                          \
    static void leg_fast_##t##_##R##_##C(const uint8_t *pw, const float *off, int nb,              \
                                         const mm_act *a, int64_t k, int64_t b0, float *out,       \
                                         size_t ldo, int first) {                                  \
        leg_micro_fast(QT_##t, R, C, pw, off, nb, a, k, b0, out, ldo, first);                      \
    }
#define LEG_ROW(t, C)                                                                              \
    static void leg_row_##t##_##C(int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a, \
                                  float *out, size_t ldo) {                                        \
        for (int r = 0; r < nr; r++) leg_row(QT_##t, C, k, w + r * ws, a, out + r, ldo);           \
    }
#define LEG_C(t, C) LEG_MICRO(t, C) LEG_FAST(t, 1, C) LEG_FAST(t, 2, C) LEG_ROW(t, C)
#define LEG_TYPE(t)                                                                                \
    LEG_C(t, 1)                                                                                    \
    LEG_C(t, 2)                                                                                    \
    LEG_C(t, 3)                                                                                    \
    LEG_C(t, 4)                                                                                    \
    static void leg_pack_##t(const uint8_t *w, size_t ws, int nr, int64_t b0, int nb, uint8_t *pw, \
                             float *dw, float *off) {                                              \
        leg_pack(QT_##t, w, ws, nr, b0, nb, pw, dw, off);                                          \
    }                                                                                              \
    static void leg_pack_fast_##t(const uint8_t *w, size_t ws, int nr, int64_t b0, int nb,         \
                                  uint8_t *pw, float *off) {                                       \
        leg_pack_fast(QT_##t, w, ws, nr, b0, nb, pw, off);                                         \
    }                                                                                              \
    static const leg_kernels leg_##t = {                                                           \
        {leg_row_##t##_1, leg_row_##t##_2, leg_row_##t##_3, leg_row_##t##_4},                      \
        {leg_micro_##t##_1, leg_micro_##t##_2, leg_micro_##t##_3, leg_micro_##t##_4},              \
        {{leg_fast_##t##_1_1, leg_fast_##t##_1_2, leg_fast_##t##_1_3, leg_fast_##t##_1_4},         \
         {leg_fast_##t##_2_1, leg_fast_##t##_2_2, leg_fast_##t##_2_3, leg_fast_##t##_2_4}},        \
        leg_pack_##t,                                                                              \
        leg_pack_fast_##t};

static void leg_gemm(const leg_kernels *K, int exact, int64_t k, const uint8_t *w, size_t ws,
                     int nr, const mm_act *a, int nc, float *out, size_t ldo, void *scratch) {
    if (nc <= MC) { /* decoding: stream the rows */
        K->rows[nc - 1](k, w, ws, nr, a, out, ldo);
        return;
    }
    uint8_t *pw = scratch;
    float *dw = (float *)(pw + PANEL_W), *off = dw + PR * PB;
    float *foff = (float *)(pw + FPANEL_W);
    const int64_t nb = k / 32;
    for (int r0 = 0; r0 < nr; r0 += PR) {
        int pr = MIN(PR, nr - r0);
        for (int64_t b0 = 0; b0 < nb; b0 += PB) {
            int pb = (int)MIN((int64_t)PB, nb - b0);
            if (exact)
                K->pack(w + r0 * ws, ws, pr, b0, pb, pw, dw, off);
            else
                K->pack_fast(w + r0 * ws, ws, pr, b0, pb, pw, foff);
            for (int c0 = 0; c0 < nc; c0 += MC) {
                int cn = MIN(MC, nc - c0);
                mm_act ac = {(const char *)a->rows + c0 * a->stride, a->stride};
                float *o = out + c0 * ldo + r0;
                if (exact) {
                    for (int r = 0; r < pr; r++)
                        K->micros[cn - 1](pw + (size_t)r * PB * 32, dw + r * PB, off + r * PB, pb,
                                          &ac, k, b0, o + r, ldo, b0 == 0);
                    continue;
                }
                int r = 0;
                for (; r + FMR <= pr; r += FMR)
                    K->fast[1][cn - 1](pw + (size_t)r * PB * 64, foff + r * PB, pb, &ac, k, b0,
                                       o + r, ldo, b0 == 0);
                for (; r < pr; r++)
                    K->fast[0][cn - 1](pw + (size_t)r * PB * 64, foff + r * PB, pb, &ac, k, b0,
                                       o + r, ldo, b0 == 0);
            }
        }
    }
}

#define LEG_ENTRY(t, lc)                                                                           \
    LEG_TYPE(t)                                                                                    \
    void mm_##lc##_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,      \
                        int nc, float *out, size_t ldo, void *scratch) {                           \
        leg_gemm(&leg_##t, 0, k, w, wstride, nr, a, nc, out, ldo, scratch);                        \
    }                                                                                              \
    void mm_##lc##_exact_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr,                 \
                              const mm_act *a, int nc, float *out, size_t ldo, void *scratch) {    \
        leg_gemm(&leg_##t, 1, k, w, wstride, nr, a, nc, out, ldo, scratch);                        \
    }

LEG_ENTRY(Q4_0, q4_0)
LEG_ENTRY(Q4_1, q4_1)
LEG_ENTRY(Q5_0, q5_0)
LEG_ENTRY(Q5_1, q5_1)
LEG_ENTRY(Q8_0, q8_0)

SIMD_AVX2_END
#endif
