/* attn.c: AVX2 attention for one token and a group of query heads sharing a
 * KV head (see attn.h).
 *
 * Pass 1: the slot of every position (block table lookup once), then the
 * scores of up to 4 heads per sweep over the K rows: 8 K elements are
 * converted once and multiplied into 4 accumulators. Softmax: max, e^x
 * (simd_exp, a few ulp), sum in 8 float lanes. Pass 2: for 4 heads x 16
 * dimensions at a time, 8 accumulators in registers over all positions, so
 * each V vector is converted once per 4 heads. */
#include "cpu/attn.h"
#include "cpu/simd.h"
#include "util/util.h"

#include <math.h>

#if SIMD_X86
SIMD_AVX2_BEGIN

/* 8 elements of a K or V row starting at element e */
SIMD_INLINE __m256 attn_load8(const attn_seq *s, const void *row, int e) {
    if (s->kv_f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + e)));
    return _mm256_loadu_ps((const float *)row + e);
}

SIMD_INLINE float attn_load1(const attn_seq *s, const void *row, int e) {
    if (s->kv_f16) return simd_f16((const uint8_t *)row + 2 * e);
    return ((const float *)row)[e];
}

SIMD_INLINE const void *attn_row(const attn_seq *s, const void *base, int32_t slot, int off) {
    size_t i = (size_t)slot * (size_t)s->kv_dim + (size_t)off;
    return (const char *)base + i * (s->kv_f16 ? 2 : 4);
}

/* scores of heads [j0, j0 + JN) for all positions: sc[j][p - lo] */
SIMD_INLINE void attn_scores(int JN, const attn_seq *s, int off, int d, const float *q, int j0,
                             const int32_t *slot, int n, float scale, float *sc) {
    for (int p = 0; p < n; p++) {
        const void *kr = attn_row(s, s->k, slot[p], off);
        __m256 acc[4];
        SIMD_UNROLL for (int j = 0; j < JN; j++) acc[j] = _mm256_setzero_ps();
        int e = 0;
        for (; e + 8 <= d; e += 8) {
            __m256 kv = attn_load8(s, kr, e);
            SIMD_UNROLL for (int j = 0; j < JN; j++) acc[j] =
                _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)(j0 + j) * d + e), kv, acc[j]);
        }
        SIMD_UNROLL for (int j = 0; j < JN; j++) {
            float v = simd_hsum(acc[j]);
            for (int t = e; t < d; t++) v += q[(size_t)(j0 + j) * d + t] * attn_load1(s, kr, t);
            sc[(size_t)(j0 + j) * n + p] = v * scale;
        }
    }
}

/* out rows of heads [j0, j0 + JN), dimensions [e0, e0 + 8 * EV): sum_p w * V */
SIMD_INLINE void attn_values(int JN, int EV, const attn_seq *s, int off, int d, int j0, int e0,
                             const int32_t *slot, int n, const float *w, float *out) {
    __m256 acc[4][2];
    SIMD_UNROLL for (int j = 0; j < JN; j++) SIMD_UNROLL for (int v = 0; v < EV; v++) acc[j][v] =
        _mm256_setzero_ps();
    for (int p = 0; p < n; p++) {
        const void *vr = attn_row(s, s->v, slot[p], off);
        __m256 vv[2];
        SIMD_UNROLL for (int v = 0; v < EV; v++) vv[v] = attn_load8(s, vr, e0 + 8 * v);
        SIMD_UNROLL for (int j = 0; j < JN; j++) {
            __m256 wj = _mm256_broadcast_ss(w + (size_t)(j0 + j) * n + p);
            SIMD_UNROLL for (int v = 0; v < EV; v++) acc[j][v] =
                _mm256_fmadd_ps(wj, vv[v], acc[j][v]);
        }
    }
    SIMD_UNROLL for (int j = 0; j < JN; j++) SIMD_UNROLL for (int v = 0; v < EV; v++)
        _mm256_storeu_ps(out + (size_t)(j0 + j) * d + e0 + 8 * v, acc[j][v]);
}

static void attn_scores_any(int jn, const attn_seq *s, int off, int d, const float *q, int j0,
                            const int32_t *slot, int n, float scale, float *sc) {
    switch (jn) {
    case 1:
        attn_scores(1, s, off, d, q, j0, slot, n, scale, sc);
        break;
    case 2:
        attn_scores(2, s, off, d, q, j0, slot, n, scale, sc);
        break;
    case 3:
        attn_scores(3, s, off, d, q, j0, slot, n, scale, sc);
        break;
    default:
        attn_scores(4, s, off, d, q, j0, slot, n, scale, sc);
        break;
    }
}

static void attn_values_any(int jn, int ev, const attn_seq *s, int off, int d, int j0, int e0,
                            const int32_t *slot, int n, const float *w, float *out) {
#define AV(J, E) attn_values(J, E, s, off, d, j0, e0, slot, n, w, out)
    if (ev == 2) {
        switch (jn) {
        case 1:
            AV(1, 2);
            break;
        case 2:
            AV(2, 2);
            break;
        case 3:
            AV(3, 2);
            break;
        default:
            AV(4, 2);
            break;
        }
    } else {
        switch (jn) {
        case 1:
            AV(1, 1);
            break;
        case 2:
            AV(2, 1);
            break;
        case 3:
            AV(3, 1);
            break;
        default:
            AV(4, 1);
            break;
        }
    }
#undef AV
}

void attn_group_avx2(const attn_seq *s, int off, int d, const float *q, int g, int lo, int pos,
                     float scale, float *out, float *scratch) {
    const int n = pos - lo + 1;
    int32_t *slot = (int32_t *)scratch;
    float *sc = scratch + n;
    for (int p = lo; p <= pos; p++)
        slot[p - lo] = s->blocks[p / s->block_size] * s->block_size + p % s->block_size;
    for (int j0 = 0; j0 < g; j0 += 4)
        attn_scores_any(MIN(4, g - j0), s, off, d, q, j0, slot, n, scale, sc);
    /* softmax of each head's scores, in place */
    for (int j = 0; j < g; j++) {
        float *r = sc + (size_t)j * n;
        __m256 m8 = _mm256_set1_ps(-INFINITY);
        int p = 0;
        for (; p + 8 <= n; p += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(r + p));
        float mx = simd_hmax(m8);
        for (; p < n; p++) mx = fmaxf(mx, r[p]);
        __m256 mxv = _mm256_set1_ps(mx), s8 = _mm256_setzero_ps();
        for (p = 0; p + 8 <= n; p += 8) {
            __m256 e = simd_exp(_mm256_sub_ps(_mm256_loadu_ps(r + p), mxv));
            _mm256_storeu_ps(r + p, e);
            s8 = _mm256_add_ps(s8, e);
        }
        double sum = simd_hsum(s8);
        for (; p < n; p++) {
            r[p] = expf(r[p] - mx);
            sum += r[p];
        }
        __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
        for (p = 0; p + 8 <= n; p += 8)
            _mm256_storeu_ps(r + p, _mm256_mul_ps(_mm256_loadu_ps(r + p), inv));
        for (; p < n; p++) r[p] *= (float)(1.0 / sum);
    }
    for (int j0 = 0; j0 < g; j0 += 4) {
        int jn = MIN(4, g - j0), e0 = 0;
        for (; e0 + 16 <= d; e0 += 16) attn_values_any(jn, 2, s, off, d, j0, e0, slot, n, sc, out);
        for (; e0 + 8 <= d; e0 += 8) attn_values_any(jn, 1, s, off, d, j0, e0, slot, n, sc, out);
        for (; e0 < d; e0++) /* d not a multiple of 8 */
            for (int j = j0; j < j0 + jn; j++) {
                float acc = 0;
                for (int p = 0; p < n; p++)
                    acc +=
                        sc[(size_t)j * n + p] * attn_load1(s, attn_row(s, s->v, slot[p], off), e0);
                out[(size_t)j * d + e0] = acc;
            }
    }
}

SIMD_AVX2_END
#endif
