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
 * Decoding (up to 4 tokens): kq_row streams a weight row, unpacking each
 * group once for all tokens. Batches: kq_pack unpacks a panel of rows x
 * super-blocks into scratch (the 32 bytes of u and the 16 int16 scales of
 * each group, ready for maddubs / madd), and kq_micro runs one row x 4
 * tokens over it: 3 instructions per group and token plus the per
 * super-block float work. kq_finish is the float work of both paths, and
 * kq_row sums in the batch path's panels of KPB super-blocks, so a token's
 * result is the same float computation in a batch and alone
 * (test_determinism.c).
 *
 * Bit layouts are those documented in src/quant/quant_k.c. */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

/* Batch panel of KPR rows x KPB super-blocks; per row and super-block KSB
 * bytes: for each group g, 32 bytes of u then its 32 bytes of int16 scales;
 * then mv (32 bytes), d and dmin (floats). The decode kernel sums in the
 * same panels of KPB super-blocks (see kq_row). */
#define KPR 16
#define KPB 8
#define KSB 576

/* micro-kernel tile: KQ_MR rows x KQ_MC tokens */
#define KQ_MR 1
#define KQ_MC 4

/* What a micro-kernel needs of one weight super-block. */
typedef struct {
    const uint8_t *b; /* the block */
    __m256i sc;       /* sub-scales arranged for kq_scale(): int16 (Q2/3/6_K) or, for
                         Q4/5_K, bytes [sc0..sc7 m0..m7] in both 128-bit lanes */
    __m256i mv;       /* int16, in bsums order: mins (Q2/4/5_K) or scales (Q3/6_K) */
    __m256i qh;       /* Q3_K hmask, Q5_K qh */
    __m128 dd;        /* d, dmin (0 for the types without mins) in lanes 0, 1 */
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

/* The 6-bit scales and mins of Q4_K / Q5_K, 12 bytes s[0..11] at p, as
 * bytes [sc0..sc7 m0..m7] in both 128-bit lanes (16 bytes are read; the 4
 * after the scales are the block's next field):
 *   sc_i = s_i & 63, m_i = s_i+4 & 63                       (i < 4)
 *   sc_i = s_i+4 & 15 | (s_i-4 >> 6) << 4,
 *   m_i = s_i+4 >> 4 | (s_i >> 6) << 4                      (4 <= i < 8)
 * Bytes P = [s0..3 s8..11 s4..7 s8..11]; the third dword shifted right by 4
 * brings the high nibbles of s8..11 down; Q = [0 s0..3 0 s4..7] gives the
 * top two bits. */
SIMD_INLINE __m256i kq_k4_scales(const uint8_t *p) {
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    const __m256i ip = _mm256_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2,
                                        3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m256i iq = _mm256_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7, -1,
                                        -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
    const __m256i mlo = _mm256_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f,
                                          0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f);
    __m256i lo = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_shuffle_epi8(x, ip), _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4)),
        mlo);
    __m256i hi =
        _mm256_and_si256(_mm256_srli_epi16(_mm256_shuffle_epi8(x, iq), 2), _mm256_set1_epi8(0x30));
    return _mm256_or_si256(lo, hi);
}

/* f16 d and dmin at p (consecutive) as floats in lanes 0, 1 */
SIMD_INLINE __m128 kq_f16x2(const uint8_t *p) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)simd_rd32(p)));
}
/* f16 d at p in lane 0, 0 in lane 1 */
SIMD_INLINE __m128 kq_f16x1(const uint8_t *p) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128(simd_rd16(p)));
}

SIMD_INLINE void kq_prepare(int type, const uint8_t *b, kq_block *k) {
    k->b = b;
    k->qh = _mm256_setzero_si256();
    switch (type) {
    case QT_Q2_K: {
        __m128i s = _mm_loadu_si128((const __m128i *)b);
        k->sc = kq_even_odd(_mm_and_si128(s, _mm_set1_epi8(15)));
        k->mv = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(15)));
        k->dd = kq_f16x2(b + 80);
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
        k->dd = kq_f16x1(b + 108);
        break;
    }
    case QT_Q4_K:
    case QT_Q5_K: {
        /* mins m0 m0 m1 m1 .. m3 m3 | m4 m4 .. m7 m7, zero-extended to int16 */
        const __m256i im =
            _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12,
                             -1, 13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1);
        k->sc = kq_k4_scales(b + 4);
        k->mv = _mm256_shuffle_epi8(k->sc, im);
        if (type == QT_Q5_K) k->qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        k->dd = kq_f16x2(b);
        break;
    }
    default: { /* Q6_K */
        __m128i s = _mm_loadu_si128((const __m128i *)(b + 192));
        k->sc = kq_even_odd(s);
        k->mv = _mm256_cvtepi8_epi16(s);
        k->dd = kq_f16x1(b + 208);
        break;
    }
    }
}

/* int16 scales for the 32 elements of group g (0..7) */
SIMD_INLINE __m256i kq_scale(int type, const kq_block *k, int g) {
    if (type == QT_Q4_K || type == QT_Q5_K) /* byte g, zero-extended */
        return _mm256_shuffle_epi8(k->sc, _mm256_set1_epi16((short)(0xff00 + g)));
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

/* ---- decoding: one weight row x C <= 4 tokens ---- */

/* the integer dot of super-block kb with the activation super-block at qa,
 * and its float contribution given the activation scale and bsums */
SIMD_INLINE __m256 kq_finish(int type, const kq_block *kb, __m256i isum, const int16_t *bs,
                             const float *da, __m256 acc) {
    const int has_min = type == QT_Q2_K || type == QT_Q4_K || type == QT_Q5_K;
    const int off_shift = type == QT_Q3_K ? 2 : 5; /* x 4 or x 32 */
    __m256i mb = _mm256_madd_epi16(kb->mv, _mm256_loadu_si256((const __m256i *)bs));
    if (!has_min) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(mb, off_shift));
    if (!has_min)
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum),
                               _mm256_set1_ps(_mm_cvtss_f32(kb->dd) * *da), acc);
    __m128 s = _mm_mul_ps(kb->dd, _mm_broadcast_ss(da)); /* d * da, dmin * da */
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(s), acc);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mb), _mm256_broadcastss_ps(_mm_movehdup_ps(s)), acc);
}

SIMD_INLINE void kq_row(int type, int C, int64_t k, const uint8_t *w, const mm_act *a, float *out,
                        size_t ldo) {
    const int bytes = kq_bytes(type);
    const int64_t nsb = k / 256;
    __m256 acc[KQ_MC];
    const int8_t *qa[KQ_MC];
    float s[KQ_MC]; /* the sums of the finished panels */
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        s[c] = 0;
    }
    /* in the batch path's panels of KPB super-blocks (same rounding) */
    for (int64_t sb0 = 0; sb0 < nsb; sb0 += KPB) {
        const int64_t sb1 = MIN(sb0 + KPB, nsb);
        SIMD_UNROLL for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t sb = sb0; sb < sb1; sb++) {
            kq_block kb;
            __m256i isum[KQ_MC];
            simd_prefetch(w + sb * bytes + SIMD_PREFETCH, bytes);
            kq_prepare(type, w + sb * bytes, &kb);
            SIMD_UNROLL for (int c = 0; c < C; c++) isum[c] = _mm256_setzero_si256();
            SIMD_UNROLL for (int g = 0; g < 8; g++) {
                __m256i wg = kq_group(type, &kb, g), sg = kq_scale(type, &kb, g);
                SIMD_UNROLL for (int c = 0; c < C; c++) {
                    __m256i av = _mm256_loadu_si256((const __m256i *)(qa[c] + sb * 256 + 32 * g));
                    isum[c] = _mm256_add_epi32(isum[c],
                                               _mm256_madd_epi16(_mm256_maddubs_epi16(wg, av), sg));
                }
            }
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[c] = kq_finish(
                type, &kb, isum[c], q8_bsums(qa[c], k) + 16 * sb, q8_d(qa[c], k) + sb, acc[c]);
        }
        SIMD_UNROLL for (int c = 0; c < C; c++) {
            float v = simd_hsum(acc[c]);
            s[c] = sb0 == 0 ? v : s[c] + v;
        }
    }
    SIMD_UNROLL for (int c = 0; c < C; c++) out[c * ldo] = s[c];
}

/* ---- batches: panels and a micro-kernel ---- */

_Static_assert((size_t)KPR *KPB *KSB <= MM_SCRATCH_BYTES, "panel does not fit the scratch");

SIMD_INLINE void kq_pack(int type, const uint8_t *w, size_t ws, int nr, int64_t sb0, int nsb,
                         uint8_t *pw) {
    const int bytes = kq_bytes(type);
    for (int r = 0; r < nr; r++) {
        for (int j = 0; j < nsb; j++) {
            uint8_t *p = pw + ((size_t)r * KPB + j) * KSB;
            kq_block kb;
            kq_prepare(type, w + r * ws + (sb0 + j) * bytes, &kb);
            SIMD_UNROLL for (int g = 0; g < 8; g++) {
                _mm256_store_si256((__m256i *)(p + 64 * g), kq_group(type, &kb, g));
                _mm256_store_si256((__m256i *)(p + 64 * g + 32), kq_scale(type, &kb, g));
            }
            _mm256_store_si256((__m256i *)(p + 512), kb.mv);
            _mm_storel_pi((__m64 *)(p + 544), kb.dd);
        }
    }
}

/* R rows x C tokens of a panel over nsb super-blocks from activation
 * super-block sb0; adds into out unless first. */
SIMD_INLINE void kq_micro(int type, int R, int C, const uint8_t *pw, int nsb, const mm_act *a,
                          int64_t k, int64_t sb0, float *out, size_t ldo, int first) {
    __m256 acc[KQ_MR][KQ_MC];
    const int8_t *qa[KQ_MC];
    SIMD_UNROLL for (int c = 0; c < C; c++) {
        qa[c] = (const int8_t *)a->rows + c * a->stride;
        SIMD_UNROLL for (int r = 0; r < R; r++) acc[r][c] = _mm256_setzero_ps();
    }
    for (int j = 0; j < nsb; j++) {
        __m256i isum[KQ_MR][KQ_MC];
        const uint8_t *p[KQ_MR];
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            p[r] = pw + ((size_t)r * KPB + j) * KSB;
            SIMD_UNROLL for (int c = 0; c < C; c++) isum[r][c] = _mm256_setzero_si256();
        }
        SIMD_UNROLL2 for (int g = 0; g < 8; g++) {
            SIMD_UNROLL for (int r = 0; r < R; r++) {
                __m256i wg = _mm256_load_si256((const __m256i *)(p[r] + 64 * g));
                __m256i sg = _mm256_load_si256((const __m256i *)(p[r] + 64 * g + 32));
                SIMD_UNROLL for (int c = 0; c < C; c++) {
                    __m256i av =
                        _mm256_load_si256((const __m256i *)(qa[c] + (sb0 + j) * 256 + 32 * g));
                    isum[r][c] = _mm256_add_epi32(
                        isum[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(wg, av), sg));
                }
            }
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) {
            kq_block kb;
            kb.mv = _mm256_load_si256((const __m256i *)(p[r] + 512));
            kb.dd = _mm_castpd_ps(_mm_load_sd((const double *)(p[r] + 544)));
            SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] =
                kq_finish(type, &kb, isum[r][c], q8_bsums(qa[c], k) + 16 * (sb0 + j),
                          q8_d(qa[c], k) + sb0 + j, acc[r][c]);
        }
    }
    SIMD_UNROLL for (int r = 0; r < R; r++) SIMD_UNROLL for (int c = 0; c < C; c++) {
        float v = simd_hsum(acc[r][c]);
        out[c * ldo + r] = first ? v : out[c * ldo + r] + v;
    }
}

typedef void (*kq_micro_fn)(const uint8_t *pw, int nsb, const mm_act *a, int64_t k, int64_t sb0,
                            float *out, size_t ldo, int first);
typedef void (*kq_row_fn)(int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a,
                          float *out, size_t ldo);
typedef void (*kq_pack_fn)(const uint8_t *w, size_t ws, int nr, int64_t sb0, int nsb, uint8_t *pw);

#define KQ_MICRO(t, R, C)                                                                          \
    static void kq_micro_##t##_##R##_##C(const uint8_t *pw, int nsb, const mm_act *a, int64_t k,   \
                                         int64_t sb0, float *out, size_t ldo, int first) {         \
        kq_micro(QT_##t, R, C, pw, nsb, a, k, sb0, out, ldo, first);                               \
    }
#define KQ_ROW(t, C)                                                                               \
    static void kq_row_##t##_##C(int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a,  \
                                 float *out, size_t ldo) {                                         \
        for (int r = 0; r < nr; r++) kq_row(QT_##t, C, k, w + r * ws, a, out + r, ldo);            \
    }
#define KQ_TYPE(t)                                                                                 \
    KQ_MICRO(t, 1, 1)                                                                              \
    KQ_MICRO(t, 1, 2)                                                                              \
    KQ_MICRO(t, 1, 3)                                                                              \
    KQ_MICRO(t, 1, 4)                                                                              \
    KQ_ROW(t, 1)                                                                                   \
    KQ_ROW(t, 2)                                                                                   \
    KQ_ROW(t, 3)                                                                                   \
    KQ_ROW(t, 4)                                                                                   \
    static void kq_pack_##t(const uint8_t *w, size_t ws, int nr, int64_t sb0, int nsb,             \
                            uint8_t *pw) {                                                         \
        kq_pack(QT_##t, w, ws, nr, sb0, nsb, pw);                                                  \
    }                                                                                              \
    static const kq_micro_fn kq_micros_##t[4] = {kq_micro_##t##_1_1, kq_micro_##t##_1_2,           \
                                                 kq_micro_##t##_1_3, kq_micro_##t##_1_4};          \
    static const kq_row_fn kq_rows_##t[4] = {kq_row_##t##_1, kq_row_##t##_2, kq_row_##t##_3,       \
                                             kq_row_##t##_4};

static void kq_gemm(const kq_micro_fn micros[4], const kq_row_fn rows[4], kq_pack_fn pack,
                    int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a, int nc,
                    float *out, size_t ldo, void *scratch) {
    if (nc <= KQ_MC) { /* decoding: stream the rows */
        rows[nc - 1](k, w, ws, nr, a, out, ldo);
        return;
    }
    uint8_t *pw = scratch;
    const int64_t nsb = k / 256;
    for (int r0 = 0; r0 < nr; r0 += KPR) {
        int pr = MIN(KPR, nr - r0);
        for (int64_t sb0 = 0; sb0 < nsb; sb0 += KPB) {
            int pb = (int)MIN((int64_t)KPB, nsb - sb0);
            pack(w + r0 * ws, ws, pr, sb0, pb, pw);
            for (int c0 = 0; c0 < nc; c0 += KQ_MC) {
                int cn = MIN(KQ_MC, nc - c0);
                mm_act ac = {(const char *)a->rows + c0 * a->stride, a->stride};
                for (int r = 0; r < pr; r++)
                    micros[cn - 1](pw + (size_t)r * KPB * KSB, pb, &ac, k, sb0,
                                   out + c0 * ldo + r0 + r, ldo, sb0 == 0);
            }
        }
    }
}

#define KQ_ENTRY(t, lc)                                                                            \
    KQ_TYPE(t)                                                                                     \
    void mm_##lc##_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,      \
                        int nc, float *out, size_t ldo, void *scratch) {                           \
        kq_gemm(kq_micros_##t, kq_rows_##t, kq_pack_##t, k, w, wstride, nr, a, nc, out, ldo,       \
                scratch);                                                                          \
    }

KQ_ENTRY(Q2_K, q2_k)
KQ_ENTRY(Q3_K, q3_k)
KQ_ENTRY(Q4_K, q4_k)
KQ_ENTRY(Q5_K, q5_k)
KQ_ENTRY(Q6_K, q6_k)

SIMD_AVX2_END
#endif
