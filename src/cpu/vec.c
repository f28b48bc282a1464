/* vec.c: AVX2 elementwise kernels (see vec.h). e^x is simd_exp (simd.h);
 * its clamping to [-87, 88] only changes results that are already 0 or x to
 * within 1e-37. Every element goes through the same vector code (the tail
 * through a padded copy), so its result does not depend on its position in
 * the array (batch-independent results, backend.h `deterministic`). */
#include "cpu/vec.h"
#include "cpu/simd.h"

#include <math.h>
#include <string.h>

#if SIMD_X86
SIMD_AVX2_BEGIN

/* x / (1 + e^-t) */
SIMD_INLINE __m256 vec_x_sigmoid(__m256 x, __m256 t) {
    __m256 e = simd_exp(_mm256_sub_ps(_mm256_setzero_ps(), t));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

SIMD_INLINE __m256 vec_act(__m256 g, int act) {
    if (act == 0) return vec_x_sigmoid(g, g);
    const __m256 c2 = _mm256_set1_ps(2 * 0.7978845608028654f); /* 2 sqrt(2/pi) */
    __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    __m256 u2 = _mm256_mul_ps(c2, _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
    return vec_x_sigmoid(g, u2);
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
    if (i < n) { /* the last n % 8, through the same vector code */
        float g[8] = {0}, u[8] = {0}, o[8];
        memcpy(g, gate + i, (size_t)(n - i) * sizeof(float));
        memcpy(u, up + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(o, _mm256_mul_ps(vec_act(_mm256_loadu_ps(g), act), _mm256_loadu_ps(u)));
        memcpy(out + i, o, (size_t)(n - i) * sizeof(float));
    }
}

SIMD_AVX2_END
#endif
