/* dot_kquant.c: AVX2 matrix-product kernels for the K-quants Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K against Q8_K activations (q8.h).
 *
 * A 256-element super-block has one f16 scale d (and dmin for the types
 * with mins) and small integer sub-block scales, so almost everything stays
 * in integers: for each group of 32 elements the weights are unpacked to 32
 * unsigned bytes u (0..3, 0..7, 0..15, 0..31, 0..63), multiplied with the
 * activation bytes (maddubs; pairs fit int16: at most 2 * 63 * 127), and the
 * pair sums multiplied by the sub-block scales in int16 (madd) into int32
 * lanes; one float multiply-add per super-block applies d * da. The parts
 * that do not depend on the element are done with the activation's 16-element
 * sums bs[j] (Q8_K bsums):
 *   Q2_K: x = d sc_j u - dmin m_j:   - dmin * sum_j m_j bs_j      (float)
 *   Q3_K: x = d sc_j (u - 4):        - 4 * sum_j sc_j bs_j        (int)
 *   Q4_K, Q5_K: x = d sc_j u - dmin m_j (sub-blocks of 32, so m_j pairs
 *         with bs_2j + bs_2j+1):     - dmin * sum_j m_j bs_..     (float)
 *   Q6_K: x = d sc_j (u - 32):       - 32 * sum_j sc_j bs_j       (int)
 * Integer ranges: per int32 lane at most 8 groups * 2 * 16002 * 128 plus the
 * offset term 32 * 2 * 128 * 2032: far below 2^31.
 *
 * Bit layouts are those documented in src/quant/quant_k.c. The micro-kernel
 * covers R rows x C tokens like the other kernel files. */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

#define KQ_RMAX 2
#define KQ_CMAX 4

/* What a micro-kernel needs of one weight super-block. */
typedef struct {
    const uint8_t *b; /* the block */
    __m256i sc;       /* int16 sub-scales arranged for kq_scale() */
    __m256i mv;       /* int16, in bsums order: mins (Q2/4/5_K) or scales (Q3/6_K) */
    __m256i qh;       /* Q3_K hmask, Q5_K qh */
    float d, dmin;
} kq_block;

SIMD_INLINE int kq_bytes(int type) {
    switch (type) {
    case QT_Q2_K:
        return 84;
    case QT_Q3_K:
        return 110;
    case QT_Q4_K:
        return 144;
    case QT_Q5_K:
        return 176;
    default:
        return 210;
    }
}

/* 16 int8 sub-scales s[0..15] -> int16 [s0 s2 .. s14 | s1 s3 .. s15], so the
 * in-lane shuffle of kq_scale puts s_2g in the low and s_2g+1 in the high
 * half (the two 16-element sub-blocks of group g) */
SIMD_INLINE __m256i kq_even_odd(__m128i s8) {
    const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, eo));
}

/* the 6-bit scales and mins of Q4_K / Q5_K (12 bytes at s): bytes 0..7 */
SIMD_INLINE void kq_k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *m) {
    uint32_t u0 = simd_rd32(s), u1 = simd_rd32(s + 4), u2 = simd_rd32(s + 8);
    uint32_t sc_lo = u0 & 0x3f3f3f3f, m_lo = u1 & 0x3f3f3f3f;
    uint32_t sc_hi = (u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4;
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4;
    *sc = sc_lo | (uint64_t)sc_hi << 32;
    *m = m_lo | (uint64_t)m_hi << 32;
}

SIMD_INLINE void kq_prepare(int type, const uint8_t *b, kq_block *k) {
    k->b = b;
    switch (type) {
    case QT_Q2_K: {
        __m128i s = _mm_loadu_si128((const __m128i *)b);
        k->sc = kq_even_odd(_mm_and_si128(s, _mm_set1_epi8(15)));
        k->mv = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(15)));
        k->d = simd_f16(b + 80);
        k->dmin = simd_f16(b + 82);
        break;
    }
    case QT_Q3_K: {
        const uint8_t *s = b + 96;
        uint32_t a0 = simd_rd32(s), a1 = simd_rd32(s + 4), a2 = simd_rd32(s + 8);
        const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
        uint32_t s0 = (a0 & m4) | (a2 & m2) << 4;
        uint32_t s1 = (a1 & m4) | ((a2 >> 2) & m2) << 4;
        uint32_t s2 = ((a0 >> 4) & m4) | ((a2 >> 4) & m2) << 4;
        uint32_t s3 = ((a1 >> 4) & m4) | ((a2 >> 6) & m2) << 4;
        __m128i v =
            _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
        k->sc = kq_even_odd(v);
        k->mv = _mm256_cvtepi8_epi16(v);
        k->qh = _mm256_loadu_si256((const __m256i *)b);
        k->d = simd_f16(b + 108);
        break;
    }
    case QT_Q4_K:
    case QT_Q5_K: {
        uint64_t sc, m;
        kq_k4_scales(b + 4, &sc, &m);
        __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m));
        k->sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        k->mv = _mm256_setr_m128i(_mm_unpacklo_epi16(m8, m8), _mm_unpackhi_epi16(m8, m8));
        if (type == QT_Q5_K) k->qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        k->d = simd_f16(b);
        k->dmin = simd_f16(b + 2);
        break;
    }
    default: { /* Q6_K */
        __m128i s = _mm_loadu_si128((const __m128i *)(b + 192));
        k->sc = kq_even_odd(s);
        k->mv = _mm256_cvtepi8_epi16(s);
        k->d = simd_f16(b + 208);
        break;
    }
    }
}

/* int16 scales for the 32 elements of group g (0..7) */
SIMD_INLINE __m256i kq_scale(const kq_block *k, int g) {
    return _mm256_shuffle_epi8(k->sc, _mm256_set1_epi16((short)(0x0100 + 0x0202 * g)));
}

/* bytes shifted right by s (0..7) within each byte, masked to `mask` */
SIMD_INLINE __m256i kq_bits(__m256i v, int s, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, s), _mm256_set1_epi8((char)mask));
}

/* the unsigned weight bytes of group g (elements 32g .. 32g+31) */
SIMD_INLINE __m256i kq_group(int type, const kq_block *k, int g) {
    const uint8_t *b = k->b;
    switch (type) {
    case QT_Q2_K: {
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (g / 4)));
        return kq_bits(q, 2 * (g % 4), 3);
    }
    case QT_Q3_K: {
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * (g / 4)));
        __m256i hi = g >= 2
                         ? kq_bits(k->qh, g - 2, 4)
                         : _mm256_and_si256(_mm256_slli_epi16(k->qh, 2 - g), _mm256_set1_epi8(4));
        return _mm256_or_si256(kq_bits(q, 2 * (g % 4), 3), hi);
    }
    case QT_Q4_K: {
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (g / 2)));
        return kq_bits(q, 4 * (g % 2), 15);
    }
    case QT_Q5_K: {
        __m256i q = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * (g / 2)));
        __m256i hi = g >= 4
                         ? kq_bits(k->qh, g - 4, 16)
                         : _mm256_and_si256(_mm256_slli_epi16(k->qh, 4 - g), _mm256_set1_epi8(16));
        return _mm256_or_si256(kq_bits(q, 4 * (g % 2), 15), hi);
    }
    default: { /* Q6_K: g = 4h + k */
        int h = g / 4, kk = g % 4;
        __m256i ql = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * (kk % 2)));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
        __m256i lo = kq_bits(ql, 4 * (kk / 2), 15);
        __m256i hi = 2 * kk <= 4
                         ? _mm256_and_si256(_mm256_slli_epi16(qh, 4 - 2 * kk), _mm256_set1_epi8(48))
                         : kq_bits(qh, 2 * kk - 4, 48);
        return _mm256_or_si256(lo, hi);
    }
    }
}

SIMD_INLINE void kq_tile(int type, int R, int C, int64_t nsb, const uint8_t *w, size_t ws,
                         const mm_act *a, float *out, size_t ldo) {
    const int bytes = kq_bytes(type);
    const int64_t k = nsb * 256;
    const int has_min = type == QT_Q2_K || type == QT_Q4_K || type == QT_Q5_K;
    const int off_shift = type == QT_Q3_K ? 2 : 5; /* x 4 or x 32 */
    __m256 acc[KQ_RMAX][KQ_CMAX];
    const int8_t *qa[KQ_CMAX];
    for (int c = 0; c < C; c++) qa[c] = (const int8_t *)a->rows + c * a->stride;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        kq_block kb[KQ_RMAX];
        __m256i isum[KQ_RMAX][KQ_CMAX];
        for (int r = 0; r < R; r++) kq_prepare(type, w + r * ws + sb * bytes, &kb[r]);
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            __m256i wg[KQ_RMAX], sg[KQ_RMAX];
            for (int r = 0; r < R; r++) {
                wg[r] = kq_group(type, &kb[r], g);
                sg[r] = kq_scale(&kb[r], g);
            }
            for (int c = 0; c < C; c++) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(qa[c] + sb * 256 + 32 * g));
                for (int r = 0; r < R; r++) {
                    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wg[r], av), sg[r]);
                    isum[r][c] = _mm256_add_epi32(isum[r][c], p);
                }
            }
        }
        for (int c = 0; c < C; c++) {
            const float da = q8_d(qa[c], k)[sb];
            __m256i bs = _mm256_loadu_si256((const __m256i *)(q8_bsums(qa[c], k) + 16 * sb));
            for (int r = 0; r < R; r++) {
                __m256i mb = _mm256_madd_epi16(kb[r].mv, bs);
                __m256i is = isum[r][c];
                if (!has_min) is = _mm256_sub_epi32(is, _mm256_slli_epi32(mb, off_shift));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(kb[r].d * da),
                                            acc[r][c]);
                if (has_min)
                    acc[r][c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mb),
                                                 _mm256_set1_ps(kb[r].dmin * da), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) out[c * ldo + r] = simd_hsum(acc[r][c]);
}

typedef void (*kq_tile_fn)(int64_t nsb, const uint8_t *w, size_t ws, const mm_act *a, float *out,
                           size_t ldo);

#define KQ_T(t, R, C)                                                                              \
    static void kq_##t##_##R##x##C(int64_t nsb, const uint8_t *w, size_t ws, const mm_act *a,      \
                                   float *out, size_t ldo) {                                       \
        kq_tile(QT_##t, R, C, nsb, w, ws, a, out, ldo);                                            \
    }
#define KQ_ROW(t, R) KQ_T(t, R, 1) KQ_T(t, R, 2) KQ_T(t, R, 3) KQ_T(t, R, 4)
#define KQ_TYPE(t)   KQ_ROW(t, 1) KQ_ROW(t, 2)
#define KQ_TABLE(t)                                                                                \
    {                                                                                              \
        {kq_##t##_1x1, kq_##t##_1x2, kq_##t##_1x3, kq_##t##_1x4}, {                                \
            kq_##t##_2x1, kq_##t##_2x2, kq_##t##_2x3, kq_##t##_2x4                                 \
        }                                                                                          \
    }

KQ_TYPE(Q2_K)
KQ_TYPE(Q3_K)
KQ_TYPE(Q4_K)
KQ_TYPE(Q5_K)
KQ_TYPE(Q6_K)

static const kq_tile_fn kq_tiles[5][2][KQ_CMAX] = {KQ_TABLE(Q2_K), KQ_TABLE(Q3_K), KQ_TABLE(Q4_K),
                                                   KQ_TABLE(Q5_K), KQ_TABLE(Q6_K)};

static void kq_gemm(int ti, int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a, int nc,
                    float *out, size_t ldo) {
    int64_t nsb = k / 256;
    for (int c0 = 0; c0 < nc; c0 += KQ_CMAX) {
        int cn = MIN(KQ_CMAX, nc - c0);
        mm_act ac = {(const char *)a->rows + c0 * a->stride, a->stride, NULL, 0};
        int r0 = 0;
        for (; r0 + KQ_RMAX <= nr; r0 += KQ_RMAX)
            kq_tiles[ti][1][cn - 1](nsb, w + r0 * ws, ws, &ac, out + c0 * ldo + r0, ldo);
        for (; r0 < nr; r0++)
            kq_tiles[ti][0][cn - 1](nsb, w + r0 * ws, ws, &ac, out + c0 * ldo + r0, ldo);
    }
}

#define KQ_ENTRY(lc, ti)                                                                           \
    void mm_##lc##_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,      \
                        int nc, float *out, size_t ldo) {                                          \
        kq_gemm(ti, k, w, wstride, nr, a, nc, out, ldo);                                           \
    }

KQ_ENTRY(q2_k, 0)
KQ_ENTRY(q3_k, 1)
KQ_ENTRY(q4_k, 2)
KQ_ENTRY(q5_k, 3)
KQ_ENTRY(q6_k, 4)

SIMD_AVX2_END
#endif
