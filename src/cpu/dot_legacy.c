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
 * so with activation block a = da * qa (sum s = da * sum qa):
 *   dot = dw * da * sum(w * qa) + off * s.
 * sum(w * qa) is exact in integers: maddubs (unsigned w x signed qa, pairs
 * in int16: at most 2 * 31 * 127) and madd to int32; Q8_0's signed weights
 * use the sign trick (|w| x qa with w's sign). The offset term needs one
 * multiply-add per weight row and block for four tokens at once (the sums
 * table is token-major).
 *
 * The micro-kernel handles R rows x C tokens (R, C <= 4): each unpacked
 * weight block is used for C tokens, each activation block for R rows. */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

#define LEG_RMAX 4
#define LEG_CMAX 4

/* bytes per block */
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

SIMD_INLINE __m256i leg_unpack(int type, const uint8_t *b, float *dw, float *off) {
    const __m256i b4 = _mm256_set1_epi8(16);
    float d = simd_f16(b);
    *dw = d;
    switch (type) {
    case QT_Q4_0:
        *off = -8.0f * d;
        return simd_nibbles32(b + 2);
    case QT_Q4_1:
        *off = simd_f16(b + 2);
        return simd_nibbles32(b + 4);
    case QT_Q5_0:
        *off = -16.0f * d;
        return _mm256_or_si256(simd_nibbles32(b + 6),
                               _mm256_and_si256(simd_bits_to_bytes(simd_rd32(b + 2)), b4));
    case QT_Q5_1:
        *off = simd_f16(b + 2);
        return _mm256_or_si256(simd_nibbles32(b + 8),
                               _mm256_and_si256(simd_bits_to_bytes(simd_rd32(b + 4)), b4));
    default:
        *off = 0;
        return _mm256_loadu_si256((const __m256i *)(b + 2));
    }
}

/* R rows x C tokens over nb blocks */
SIMD_INLINE void leg_tile(int type, int R, int C, int64_t nb, const uint8_t *w, size_t ws,
                          const mm_act *a, float *out, size_t ldo) {
    const int bytes = leg_bytes(type), has_off = type != QT_Q8_0;
    __m256 acc[LEG_RMAX][LEG_CMAX];
    __m128 corr[LEG_RMAX]; /* lane c: offset term of token c */
    const int8_t *qa[LEG_CMAX];
    const float *da[LEG_CMAX];
    for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        da[c] = (const float *)(qa[c] + nb * 32);
    }
    for (int r = 0; r < R; r++) {
        corr[r] = _mm_setzero_ps();
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i wv[LEG_RMAX], wabs[LEG_RMAX];
        float dw[LEG_RMAX], off[LEG_RMAX];
        for (int r = 0; r < R; r++) {
            wv[r] = leg_unpack(type, w + r * ws + b * bytes, &dw[r], &off[r]);
            if (type == QT_Q8_0) wabs[r] = _mm256_sign_epi8(wv[r], wv[r]);
        }
        if (has_off) {
            __m128 s = _mm_loadu_ps(a->sums + b * a->sum_stride);
            for (int r = 0; r < R; r++) corr[r] = _mm_fmadd_ps(_mm_set1_ps(off[r]), s, corr[r]);
        }
        for (int c = 0; c < C; c++) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(qa[c] + b * 32));
            __m256 dac = _mm256_broadcast_ss(da[c] + b);
            for (int r = 0; r < R; r++) {
                __m256i p;
                if (type == QT_Q8_0) {
                    p = simd_dot_u8s8(wabs[r], _mm256_sign_epi8(av, wv[r]));
                } else {
                    p = simd_dot_u8s8(wv[r], av);
                }
                __m256 sc = _mm256_mul_ps(_mm256_set1_ps(dw[r]), dac);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float cr[4];
        _mm_storeu_ps(cr, corr[r]);
        for (int c = 0; c < C; c++) out[c * ldo + r] = simd_hsum(acc[r][c]) + cr[c];
    }
}

typedef void (*leg_tile_fn)(int64_t nb, const uint8_t *w, size_t ws, const mm_act *a, float *out,
                            size_t ldo);

/* instantiate tiles R x C for one type */
#define LEG_T(t, R, C)                                                                             \
    static void leg_##t##_##R##x##C(int64_t nb, const uint8_t *w, size_t ws, const mm_act *a,      \
                                    float *out, size_t ldo) {                                      \
        leg_tile(QT_##t, R, C, nb, w, ws, a, out, ldo);                                            \
    }
#define LEG_ROW(t, R) LEG_T(t, R, 1) LEG_T(t, R, 2) LEG_T(t, R, 3) LEG_T(t, R, 4)
#define LEG_TYPE(t)   LEG_ROW(t, 1) LEG_ROW(t, 4)
#define LEG_TABLE(t)                                                                               \
    {                                                                                              \
        {leg_##t##_1x1, leg_##t##_1x2, leg_##t##_1x3, leg_##t##_1x4}, {                            \
            leg_##t##_4x1, leg_##t##_4x2, leg_##t##_4x3, leg_##t##_4x4                             \
        }                                                                                          \
    }

LEG_TYPE(Q4_0)
LEG_TYPE(Q4_1)
LEG_TYPE(Q5_0)
LEG_TYPE(Q5_1)
LEG_TYPE(Q8_0)

/* [type][R == 4][C - 1] */
static const leg_tile_fn leg_tiles[5][2][4] = {LEG_TABLE(Q4_0), LEG_TABLE(Q4_1), LEG_TABLE(Q5_0),
                                               LEG_TABLE(Q5_1), LEG_TABLE(Q8_0)};

/* Tokens in groups of 4 (outer), rows in groups of 4 (inner): the weight
 * rows of the block stay in cache while the activations stream once. */
static void leg_gemm(int ti, int bytes, int64_t k, const uint8_t *w, size_t ws, int nr,
                     const mm_act *a, int nc, float *out, size_t ldo) {
    int64_t nb = k / 32;
    (void)bytes;
    for (int c0 = 0; c0 < nc; c0 += LEG_CMAX) {
        int cn = MIN(LEG_CMAX, nc - c0);
        mm_act ac = {(const char *)a->rows + c0 * a->stride, a->stride,
                     a->sums ? a->sums + c0 : NULL, a->sum_stride};
        int r0 = 0;
        for (; r0 + LEG_RMAX <= nr; r0 += LEG_RMAX)
            leg_tiles[ti][1][cn - 1](nb, w + r0 * ws, ws, &ac, out + c0 * ldo + r0, ldo);
        for (; r0 < nr; r0++)
            leg_tiles[ti][0][cn - 1](nb, w + r0 * ws, ws, &ac, out + c0 * ldo + r0, ldo);
    }
}

#define LEG_ENTRY(lc, ti, bytes)                                                                   \
    void mm_##lc##_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,      \
                        int nc, float *out, size_t ldo) {                                          \
        leg_gemm(ti, bytes, k, w, wstride, nr, a, nc, out, ldo);                                   \
    }

LEG_ENTRY(q4_0, 0, 18)
LEG_ENTRY(q4_1, 1, 20)
LEG_ENTRY(q5_0, 2, 22)
LEG_ENTRY(q5_1, 3, 24)
LEG_ENTRY(q8_0, 4, 34)

SIMD_AVX2_END
#endif
