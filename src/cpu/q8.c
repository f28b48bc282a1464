/* q8.c: activation quantization to Q8_32 / Q8_K (see q8.h): the scalar
 * reference and the AVX2 version, which must agree bit for bit.
 *
 * Per block (32 or 256 elements): amax = max |x|, d = amax / 127,
 * id = d ? 1 / d : 0, q = nearest-even(x * id). The float operations are the
 * same in both versions, and x * id never exceeds 127.5 in magnitude (it is at
 * most amax * (127 / amax) with two roundings), so no clamping is needed. */
#include "cpu/q8.h"
#include "cpu/simd.h"

#include <math.h>
#include <string.h>

size_t q8_row_bytes(q8_kind kind, int64_t k) {
    size_t n = (size_t)k;
    if (kind == Q8_32)
        n += 8 * (size_t)(k / 32);
    else
        n += 4 * (size_t)(k / 256) + 2 * (size_t)(k / 16);
    return (n + Q8_ROW_ALIGN - 1) / Q8_ROW_ALIGN * Q8_ROW_ALIGN;
}

/* ---- scalar reference ---- */

/* one block of n: returns d, writes q, and the sums of q over each 16 */
static float quant_block_ref(const float *x, int n, int8_t *q, int *sum16) {
    float amax = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) {
        float v = x[i] * id;
        q[i] = (int8_t)lrintf(v);
    }
    for (int j = 0; j < n / 16; j++) {
        int s = 0;
        for (int i = 16 * j; i < 16 * j + 16; i++) s += q[i];
        sum16[j] = s;
    }
    return d;
}

static void quant_row_ref(q8_kind kind, const float *x, int64_t k, void *row) {
    int8_t *qs = row;
    float *d = (float *)((char *)row + k);
    int sum16[16];
    if (kind == Q8_32) {
        for (int64_t b = 0; b < k / 32; b++) {
            d[b] = quant_block_ref(x + 32 * b, 32, qs + 32 * b, sum16);
            d[k / 32 + b] = d[b] * (float)(sum16[0] + sum16[1]);
        }
    } else {
        int16_t *bs = (int16_t *)(d + k / 256);
        for (int64_t b = 0; b < k / 256; b++) {
            d[b] = quant_block_ref(x + 256 * b, 256, qs + 256 * b, sum16);
            for (int j = 0; j < 16; j++) bs[16 * b + j] = (int16_t)sum16[j];
        }
    }
}

/* ---- AVX2 ---- */

#if SIMD_X86
SIMD_AVX2_BEGIN

/* max |x| over n (multiple of 32) */
SIMD_INLINE float amax_avx2(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 elements times id, rounded, packed to 32 int8 in order; the int32 lanes
 * of the rounded values summed in pairs of 16 into *s0, *s1 */
SIMD_INLINE __m256i round32_avx2(const float *x, __m256 id, int *s0, int *s1) {
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i e = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    *s0 = simd_hsum_i32(_mm256_add_epi32(a, b));
    *s1 = simd_hsum_i32(_mm256_add_epi32(c, e));
    /* packs work per 128-bit lane: undo the interleave with one permute */
    __m256i ab = _mm256_packs_epi32(a, b), ce = _mm256_packs_epi32(c, e);
    __m256i q = _mm256_packs_epi16(ab, ce);
    return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quant_row_avx2(q8_kind kind, const float *x, int64_t k, void *row) {
    int8_t *qs = row;
    float *d = (float *)((char *)row + k);
    int bsz = kind == Q8_32 ? 32 : 256;
    int16_t *bs = (int16_t *)(d + k / 256);
    for (int64_t b = 0; b < k / bsz; b++) {
        const float *xb = x + bsz * b;
        float amax = amax_avx2(xb, bsz);
        float db = amax / 127.0f, idb = db != 0.0f ? 1.0f / db : 0.0f;
        __m256 id = _mm256_set1_ps(idb);
        d[b] = db;
        for (int i = 0; i < bsz; i += 32) {
            int s0, s1;
            __m256i q = round32_avx2(xb + i, id, &s0, &s1);
            _mm256_storeu_si256((__m256i *)(qs + bsz * b + i), q);
            if (kind == Q8_32) {
                d[k / 32 + b] = db * (float)(s0 + s1);
            } else {
                bs[16 * b + i / 16] = (int16_t)s0;
                bs[16 * b + i / 16 + 1] = (int16_t)s1;
            }
        }
    }
}

SIMD_AVX2_END
#endif

void q8_quantize_row(q8_kind kind, const float *x, int64_t k, void *row, int simd) {
#if SIMD_X86
    if (simd) {
        quant_row_avx2(kind, x, k, row);
        return;
    }
#else
    (void)simd;
#endif
    quant_row_ref(kind, x, k, row);
}
