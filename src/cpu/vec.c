/* vec.c: AVX2 elementwise kernels (see vec.h).
 *
 * e^x: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 split
 * in a high part exact in float and a low correction, so r is exact to a
 * few ulp), e^r by its Taylor polynomial to degree 7 (truncation below
 * 0.35^8 / 8! = 5e-9 relative), times 2^n built in the exponent bits.
 * x is clamped to [-87, 88] so 2^n stays a normal float: e^x saturates at
 * about 1.6e38 above and 1.6e-38 below, which for the activations here only
 * changes results that are already 0 or x to within 1e-37. */
#include "cpu/vec.h"
#include "cpu/simd.h"

#include <math.h>

#if SIMD_X86
SIMD_AVX2_BEGIN

SIMD_INLINE __m256 vec_exp(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693145751953125f); /* 12 significant bits */
    const __m256 ln2_lo = _mm256_set1_ps(1.42860682030941723e-6f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2_hi, x);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);
    /* 1 + r + r^2/2! + ... + r^7/7! */
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* x / (1 + e^-t) */
SIMD_INLINE __m256 vec_x_sigmoid(__m256 x, __m256 t) {
    __m256 e = vec_exp(_mm256_sub_ps(_mm256_setzero_ps(), t));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

SIMD_INLINE __m256 vec_act(__m256 g, int act) {
    if (act == 0) return vec_x_sigmoid(g, g);
    const __m256 c2 = _mm256_set1_ps(2 * 0.7978845608028654f); /* 2 sqrt(2/pi) */
    __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    __m256 u2 = _mm256_mul_ps(c2, _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
    return vec_x_sigmoid(g, u2);
}

/* the tail, in scalar code with the same formulas */
static float vec_act1(float g, int act) {
    float t = act == 0 ? g : 2 * 0.7978845608028654f * (g + 0.044715f * g * g * g);
    return g / (1.0f + expf(-t));
}

void vec_glu_avx2(float *out, const float *gate, const float *up, int64_t n, int act) {
    int64_t i = 0;
    if (act == 0)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i, _mm256_mul_ps(vec_act(_mm256_loadu_ps(gate + i), 0),
                                                    _mm256_loadu_ps(up + i)));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i, _mm256_mul_ps(vec_act(_mm256_loadu_ps(gate + i), 1),
                                                    _mm256_loadu_ps(up + i)));
    for (; i < n; i++) out[i] = vec_act1(gate[i], act) * up[i];
}

SIMD_AVX2_END
#endif
