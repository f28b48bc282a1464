/* dot_float.c: AVX2 matrix-product kernels for float weights (F32, F16,
 * BF16) against f32 activations.
 *
 * 8 weights at a time are widened to f32 (F16: vcvtph2ps; BF16: a 16-bit
 * shift) and multiplied into per-(row, token) accumulators with FMA. The
 * micro-kernel covers 4 rows x 3 tokens (12 accumulators, the 3 token
 * vectors held in registers), so each converted weight vector serves 3
 * tokens and each activation vector 4 rows; batches are blocked in rows and
 * k so a tile's data stays in L1 and a block's weights in L2. k need not be a
 * multiple of 8: the tail is done in scalar code. Every tile, decode or
 * batch, sums a (row, token) in the same chunks of FL_KC with one
 * accumulator each, so results do not depend on the batch (test_
 * determinism.c). Results differ from the
 * double-precision reference only by f32 rounding (about sqrt(k) * 2^-24
 * relative to sum |w x|). */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"
#include "util/util.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

/* tile: FL_RMAX rows x FL_CMAX tokens: 12 accumulators and the 3 token
 * vectors in registers, each weight vector loaded (converted) once */
#define FL_RMAX 4
#define FL_CMAX 3

/* 8 weights of row w starting at element i, as floats */
SIMD_INLINE __m256 fl_load(int type, const uint8_t *w, int64_t i) {
    switch (type) {
    case QT_F32:
        return _mm256_loadu_ps((const float *)w + i);
    case QT_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i)));
    default: {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + 2 * i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    }
}

SIMD_INLINE float fl_scalar(int type, const uint8_t *w, int64_t i) {
    switch (type) {
    case QT_F32: {
        float f;
        memcpy(&f, w + 4 * i, 4);
        return f;
    }
    case QT_F16:
        return simd_f16(w + 2 * i);
    default:
        return bf16_to_f32(simd_rd16(w + 2 * i));
    }
}

/* k is summed in chunks of FL_KC elements: the batch path blocks k by that
 * much (so a block of weights stays in L2), and the decode path sums in the
 * same chunks so that every (row, token) result is the same float
 * computation whichever path and tile computes it. */
#define FL_KC 512

/* R rows x C tokens over k elements; out = (or +=, unless first) the dots.
 * Per (row, token) and chunk of FL_KC: one 8-lane accumulator, its lane sum,
 * plus the scalar tail (k % 8, last chunk only); chunk sums are added in
 * order. */
SIMD_INLINE void fl_tile(int type, int R, int C, int64_t k, const uint8_t *w, size_t ws,
                         const mm_act *a, float *out, size_t ldo, int first) {
    __m256 acc[FL_RMAX][FL_CMAX];
    const float *x[FL_CMAX];
    SIMD_UNROLL for (int c = 0; c < C; c++) x[c] =
        (const float *)((const char *)a->rows + c * a->stride);
    for (int64_t k0 = 0; k0 < k; k0 += FL_KC) {
        int64_t k1 = MIN(k0 + FL_KC, k), i = k0;
        SIMD_UNROLL for (int r = 0; r < R; r++) SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] =
            _mm256_setzero_ps();
        for (; i + 8 <= k1; i += 8) {
            __m256 xv[FL_CMAX];
            SIMD_UNROLL for (int c = 0; c < C; c++) {
                xv[c] = _mm256_loadu_ps(x[c] + i);
                SIMD_IN_REG(xv[c]);
            }
            SIMD_UNROLL for (int r = 0; r < R; r++) {
                __m256 wr = fl_load(type, w + r * ws, i);
                SIMD_UNROLL for (int c = 0; c < C; c++) acc[r][c] =
                    _mm256_fmadd_ps(wr, xv[c], acc[r][c]);
            }
        }
        SIMD_UNROLL for (int r = 0; r < R; r++) SIMD_UNROLL for (int c = 0; c < C; c++) {
            float s = simd_hsum(acc[r][c]);
            for (int64_t j = i; j < k1; j++) s += fl_scalar(type, w + r * ws, j) * x[c][j];
            out[c * ldo + r] = first && k0 == 0 ? s : out[c * ldo + r] + s;
        }
    }
}

typedef void (*fl_tile_fn)(int64_t k, const uint8_t *w, size_t ws, const mm_act *a, float *out,
                           size_t ldo, int first);

/* clang-format off */
#define FL_T(t, R, C)                                                                              \
    static void fl_##t##_##R##x##C(int64_t k, const uint8_t *w, size_t ws, const mm_act *a,        \
                                   float *out, size_t ldo, int first) {                            \
        fl_tile(QT_##t, R, C, k, w, ws, a, out, ldo, first);                                       \
    }
#define FL_TYPE(t)                                                                                 \
    FL_T(t, 1, 1) FL_T(t, 1, 2) FL_T(t, 1, 3)                                                         \
    FL_T(t, 4, 1) FL_T(t, 4, 2) FL_T(t, 4, 3)
#define FL_TABLE(t)                                                                                \
    {{fl_##t##_1x1, fl_##t##_1x2, fl_##t##_1x3}, {fl_##t##_4x1, fl_##t##_4x2, fl_##t##_4x3}}

FL_TYPE(F32)
FL_TYPE(F16)
FL_TYPE(BF16)
/* clang-format on */

static const fl_tile_fn fl_tiles[3][2][FL_CMAX] = {FL_TABLE(F32), FL_TABLE(F16), FL_TABLE(BF16)};

/* Decoding (up to FL_CMAX tokens): one pass, tokens outer, rows inner.
 * Batches: blocks of FL_RB rows x FL_KC elements (at most 192 KB of f32
 * weights: they stay in L2), and within a block tokens in groups of FL_CMAX
 * (outer) and rows in groups of FL_RMAX (inner), so the rows and tokens of
 * a tile stay in L1 while it runs over them. */
#define FL_RB 96 /* a multiple of FL_RMAX */
static void fl_gemm(int ti, int64_t k, const uint8_t *w, size_t ws, int nr, const mm_act *a, int nc,
                    float *out, size_t ldo) {
    const size_t esz = ti == 0 ? 4 : 2;
    const int batch = nc > FL_CMAX;
    const int64_t kc = batch ? FL_KC : k;
    const int rb = batch ? FL_RB : nr;
    for (int rb0 = 0; rb0 < nr; rb0 += rb) {
        int rbn = MIN(rb, nr - rb0);
        for (int64_t k0 = 0; k0 < k; k0 += kc) {
            int64_t kn = MIN(kc, k - k0);
            const uint8_t *wk = w + rb0 * ws + k0 * esz;
            for (int c0 = 0; c0 < nc; c0 += FL_CMAX) {
                int cn = MIN(FL_CMAX, nc - c0);
                mm_act ac = {(const char *)a->rows + c0 * a->stride + k0 * 4, a->stride};
                float *o = out + c0 * ldo + rb0;
                int r0 = 0;
                for (; r0 + FL_RMAX <= rbn; r0 += FL_RMAX)
                    fl_tiles[ti][1][cn - 1](kn, wk + r0 * ws, ws, &ac, o + r0, ldo, k0 == 0);
                for (; r0 < rbn; r0++)
                    fl_tiles[ti][0][cn - 1](kn, wk + r0 * ws, ws, &ac, o + r0, ldo, k0 == 0);
            }
        }
    }
}

void mm_f32_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                 float *out, size_t ldo, void *scratch) {
    (void)scratch;
    fl_gemm(0, k, w, wstride, nr, a, nc, out, ldo);
}
void mm_f16_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                 float *out, size_t ldo, void *scratch) {
    (void)scratch;
    fl_gemm(1, k, w, wstride, nr, a, nc, out, ldo);
}
void mm_bf16_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch) {
    (void)scratch;
    fl_gemm(2, k, w, wstride, nr, a, nc, out, ldo);
}

SIMD_AVX2_END
#endif
