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
 * with one multiply-add each.
 * Batches: leg_pack unpacks a panel of PR rows x PB blocks into scratch
 * (32 bytes of w and dw broadcast to 8 floats per block, the offsets per
 * row), and leg_micro runs 2 rows x 4 tokens over it: per row, token and
 * block maddubs, madd, cvt, mul (dw * da), fma, with the activation and
 * scale as memory operands, and per 8 blocks one FMA of the rows' offsets
 * with the tokens' block sums. (bench/kernels/legacy_micro.c: the hadd
 * reduction of the decode path is not faster here; the loop is bound by
 * the two integer multiplies per row, token and block.) */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

/* batch panel: PR rows x PB blocks; micro-kernel tile MR rows x MC tokens */
#define PR 16
#define PB 64
#define MR 2
#define MC 4
/* scratch bytes of a panel: per row and block 32 B of w and 32 B of dw,
 * then the offsets, one float per row and block */
#define PANEL_W   ((size_t)PR * PB * 64)
#define PANEL_OFF ((size_t)PR * PB * 4)
_Static_assert(PANEL_W + PANEL_OFF <= MM_SCRATCH_BYTES, "panel does not fit the scratch");

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

/* ---- decoding: one weight row x C <= 4 tokens ---- */

SIMD_INLINE void leg_row(int type, int C, int64_t k, const uint8_t *w, const mm_act *a, float *out,
                         size_t ldo) {
    const int bytes = leg_bytes(type), has_off = type != QT_Q8_0;
    const int64_t nb = k / 32;
    const int8_t *qa[MC];
    const float *da[MC], *sa[MC];
    __m256 acc[MC], corr[MC]; /* corr: the offsets of the tail blocks */
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        da[c] = q8_d(qa[c], k);
        sa[c] = q8_s(qa[c], k);
        acc[c] = _mm256_setzero_ps();
        corr[c] = _mm256_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        const uint8_t *blk = w + b * bytes;
        __m256i p[MC][8];
        simd_prefetch(blk + SIMD_PREFETCH, 8 * bytes);
        SIMD_UNROLL for (int i = 0; i < 8; i++) {
            __m256i wv = leg_ints(type, blk + i * bytes);
            __m256i wabs = type == QT_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(qa[c] + (b + i) * 32));
                p[c][i] = leg_dot(type, wv, wabs, av);
            }
        }
        /* lanes = the 8 blocks from here on */
        __m256 dw8 = simd_f16x8(blk, (size_t)bytes);
        __m256 off8 = leg_off8(type, blk, dw8);
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            __m256 sum = _mm256_cvtepi32_ps(simd_reduce8_i32(p[c]));
            acc[c] = _mm256_fmadd_ps(sum, _mm256_mul_ps(dw8, _mm256_loadu_ps(da[c] + b)), acc[c]);
            if (has_off) acc[c] = _mm256_fmadd_ps(off8, _mm256_loadu_ps(sa[c] + b), acc[c]);
        }
    }
    for (; b < nb; b++) { /* the last nb % 8 blocks */
        const uint8_t *blk = w + b * bytes;
        float dw = simd_f16(blk), off = leg_off(type, blk, dw);
        __m256i wv = leg_ints(type, blk);
        __m256i wabs = type == QT_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(qa[c] + b * 32));
            __m256i p = leg_dot(type, wv, wabs, av);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da[c][b]), acc[c]);
            if (has_off)
                corr[c] =
                    _mm256_add_ps(corr[c], _mm256_setr_ps(off * sa[c][b], 0, 0, 0, 0, 0, 0, 0));
        }
    }
    SIMD_UNROLL for (int c = 0; c < C; c++) out[c * ldo] =
        simd_hsum(_mm256_add_ps(acc[c], corr[c]));
}

/* ---- batches: panels and a micro-kernel ---- */

/* Unpack rows [0, nr) x blocks [b0, b0 + nb) into the panel: for row r and
 * block j, 32 bytes of w at pw + (r * PB + j) * 64, dw x 8 after them, and
 * off[r * PB + j]. */
SIMD_INLINE void leg_pack(int type, const uint8_t *w, size_t ws, int nr, int64_t b0, int nb,
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

/* lanes i < n all ones */
SIMD_INLINE __m256i leg_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* R rows x C tokens of a panel over nb blocks starting at activation block
 * b0; adds into out (out[c * ldo + r]) unless first. After every 8 blocks,
 * the offset terms of those blocks: one FMA per row and token of the rows'
 * offsets with the tokens' block sums (8 blocks in the lanes). */
SIMD_INLINE void leg_micro(int type, int R, int C, const uint8_t *pw, const float *off, int nb,
                           const mm_act *a, int64_t k, int64_t b0, float *out, size_t ldo,
                           int first) {
    const int has_off = type != QT_Q8_0;
    __m256 acc[MR][MC];
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
            __m256i wv[MR], wabs[MR];
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
            __m256 o[MR];
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

typedef void (*leg_micro_fn)(const uint8_t *pw, const float *off, int nb, const mm_act *a,
                             int64_t k, int64_t b0, float *out, size_t ldo, int first);
typedef void (*leg_row_fn)(int64_t k, const uint8_t *w, const mm_act *a, float *out, size_t ldo);
typedef void (*leg_pack_fn)(const uint8_t *w, size_t ws, int nr, int64_t b0, int nb, uint8_t *pw,
                            float *off);

/* instantiations per type: micro-kernels R in {1, 2} x C in 1..4, rows C 1..4 */
#define LEG_MICRO(t, R, C)                                                                         \
    static void leg_micro_##t##_##R##_##C(const uint8_t *pw, const float *off, int nb,             \
                                          const mm_act *a, int64_t k, int64_t b0, float *out,      \
                                          size_t ldo, int first) {                                 \
        leg_micro(QT_##t, R, C, pw, off, nb, a, k, b0, out, ldo, first);                           \
    }
#define LEG_ROW(t, C)                                                                              \
    static void leg_row_##t##_##C(int64_t k, const uint8_t *w, const mm_act *a, float *out,        \
                                  size_t ldo) {                                                    \
        leg_row(QT_##t, C, k, w, a, out, ldo);                                                     \
    }
#define LEG_TYPE(t)                                                                                \
    LEG_MICRO(t, 1, 1)                                                                             \
    LEG_MICRO(t, 1, 2)                                                                             \
    LEG_MICRO(t, 1, 3)                                                                             \
    LEG_MICRO(t, 1, 4)                                                                             \
    LEG_MICRO(t, 2, 1)                                                                             \
    LEG_MICRO(t, 2, 2)                                                                             \
    LEG_MICRO(t, 2, 3)                                                                             \
    LEG_MICRO(t, 2, 4)                                                                             \
    LEG_ROW(t, 1)                                                                                  \
    LEG_ROW(t, 2)                                                                                  \
    LEG_ROW(t, 3) LEG_ROW(t, 4) static void leg_pack_##t(                                          \
        const uint8_t *w, size_t ws, int nr, int64_t b0, int nb, uint8_t *pw, float *off) {        \
        leg_pack(QT_##t, w, ws, nr, b0, nb, pw, off);                                              \
    }                                                                                              \
    static const leg_micro_fn leg_micros_##t[2][4] = {                                             \
        {leg_micro_##t##_1_1, leg_micro_##t##_1_2, leg_micro_##t##_1_3, leg_micro_##t##_1_4},      \
        {leg_micro_##t##_2_1, leg_micro_##t##_2_2, leg_micro_##t##_2_3, leg_micro_##t##_2_4}};     \
    static const leg_row_fn leg_rows_##t[4] = {leg_row_##t##_1, leg_row_##t##_2, leg_row_##t##_3,  \
                                               leg_row_##t##_4};

static void leg_gemm(const leg_micro_fn micros[2][4], const leg_row_fn rows[4], leg_pack_fn pack,
                     int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a, int nc,
                     float *out, size_t ldo, void *scratch) {
    if (nc <= MC) { /* decoding: stream the rows */
        for (int r = 0; r < nr; r++) rows[nc - 1](k, w + r * ws, a, out + r, ldo);
        return;
    }
    uint8_t *pw = scratch;
    float *off = (float *)(pw + PANEL_W);
    const int64_t nb = k / 32;
    for (int r0 = 0; r0 < nr; r0 += PR) {
        int pr = MIN(PR, nr - r0);
        for (int64_t b0 = 0; b0 < nb; b0 += PB) {
            int pb = (int)MIN((int64_t)PB, nb - b0);
            pack(w + r0 * ws, ws, pr, b0, pb, pw, off);
            for (int c0 = 0; c0 < nc; c0 += MC) {
                int cn = MIN(MC, nc - c0);
                mm_act ac = {(const char *)a->rows + c0 * a->stride, a->stride};
                float *o = out + c0 * ldo + r0;
                int r = 0;
                for (; r + MR <= pr; r += MR)
                    micros[1][cn - 1](pw + (size_t)r * PB * 64, off + r * PB, pb, &ac, k, b0, o + r,
                                      ldo, b0 == 0);
                for (; r < pr; r++)
                    micros[0][cn - 1](pw + (size_t)r * PB * 64, off + r * PB, pb, &ac, k, b0, o + r,
                                      ldo, b0 == 0);
            }
        }
    }
}

#define LEG_ENTRY(t, lc)                                                                           \
    LEG_TYPE(t)                                                                                    \
    void mm_##lc##_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,      \
                        int nc, float *out, size_t ldo, void *scratch) {                           \
        leg_gemm(leg_micros_##t, leg_rows_##t, leg_pack_##t, k, w, wstride, nr, a, nc, out, ldo,   \
                 scratch);                                                                         \
    }

LEG_ENTRY(Q4_0, q4_0)
LEG_ENTRY(Q4_1, q4_1)
LEG_ENTRY(Q5_0, q5_0)
LEG_ENTRY(Q5_1, q5_1)
LEG_ENTRY(Q8_0, q8_0)

SIMD_AVX2_END
#endif
