/* legacy_micro.c: versions of the batch micro-kernel for the 32-block types
 * (dot_legacy.c's leg_micro), on a packed panel of Q4_0-like unsigned
 * weights against Q8_32 activations, all in L1/L2.
 *
 *   v1  the library's: 2 rows x 4 tokens, per row, token and block
 *       maddubs, madd, cvt, mul (dw * da), fma (scales applied per block)
 *   v2  lanes = blocks: per row and token, 8 blocks of int32 partial sums
 *       reduced with hadd to one vector with a lane per block, then one cvt
 *       and one fma with the 8 scale products (1 row x 4 tokens; the
 *       reduction trees of 4 tokens live in registers)
 *   v3  as v2, but the int16 pair sums of two blocks are added with one
 *       phaddw before the widening madd: half the madds (the int16 sums
 *       stay below 2 * 2 * 15 * 127)
 *
 * Both are checked against a scalar computation of the same sums, then
 * timed (thread CPU time, min of runs). Output: GFLOP/s (2 per
 * multiply-add) per version. usage: legacy_micro [reps] */
#include "harness.h"

#if SIMD_X86
SIMD_AVX2_BEGIN

#define NB 64 /* blocks per row in the panel */
#define NR 16 /* rows */
#define NT 64 /* tokens */

typedef struct {
    uint8_t w[NR][NB][32] __attribute__((aligned(32))); /* unsigned 0..15 */
    float dw[NR][NB];
    int8_t qa[NT][NB][32] __attribute__((aligned(32)));
    float da[NT][NB];
} panel;

static void v1(const panel *p, float *out) {
    for (int c0 = 0; c0 < NT; c0 += 4)
        for (int r0 = 0; r0 < NR; r0 += 2) {
            __m256 acc[2][4];
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
            for (int j = 0; j < NB; j++) {
                __m256i w0 = _mm256_load_si256((const __m256i *)p->w[r0][j]);
                __m256i w1 = _mm256_load_si256((const __m256i *)p->w[r0 + 1][j]);
                __m256 d0 = _mm256_broadcast_ss(&p->dw[r0][j]),
                       d1 = _mm256_broadcast_ss(&p->dw[r0 + 1][j]);
                SIMD_UNROLL for (int c = 0; c < 4; c++) {
                    __m256i a = _mm256_load_si256((const __m256i *)p->qa[c0 + c][j]);
                    __m256 da = _mm256_broadcast_ss(&p->da[c0 + c][j]);
                    acc[0][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(simd_dot_u8s8(w0, a)),
                                                _mm256_mul_ps(da, d0), acc[0][c]);
                    acc[1][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(simd_dot_u8s8(w1, a)),
                                                _mm256_mul_ps(da, d1), acc[1][c]);
                }
            }
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < 4; c++) out[(c0 + c) * NR + r0 + r] = simd_hsum(acc[r][c]);
        }
}

static void v2(const panel *p, float *out) {
    for (int c0 = 0; c0 < NT; c0 += 4)
        for (int r = 0; r < NR; r++) {
            __m256 acc[4];
            for (int c = 0; c < 4; c++) acc[c] = _mm256_setzero_ps();
            for (int j8 = 0; j8 < NB; j8 += 8) {
                __m256i h[4][4]; /* per token: pair sums of blocks 0-1, 2-3, 4-5, 6-7 */
                SIMD_UNROLL for (int i = 0; i < 8; i += 2) {
                    __m256i wa = _mm256_load_si256((const __m256i *)p->w[r][j8 + i]);
                    __m256i wb = _mm256_load_si256((const __m256i *)p->w[r][j8 + i + 1]);
                    SIMD_UNROLL for (int c = 0; c < 4; c++) {
                        __m256i pa = simd_dot_u8s8(
                            wa, _mm256_load_si256((const __m256i *)p->qa[c0 + c][j8 + i]));
                        __m256i pb = simd_dot_u8s8(
                            wb, _mm256_load_si256((const __m256i *)p->qa[c0 + c][j8 + i + 1]));
                        h[c][i / 2] = _mm256_hadd_epi32(pa, pb);
                    }
                }
                __m256 dw = _mm256_loadu_ps(&p->dw[r][j8]);
                SIMD_UNROLL for (int c = 0; c < 4; c++) {
                    __m256i ab = _mm256_hadd_epi32(h[c][0], h[c][1]);
                    __m256i cd = _mm256_hadd_epi32(h[c][2], h[c][3]);
                    __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20),
                                                 _mm256_permute2x128_si256(ab, cd, 0x31));
                    __m256 sc = _mm256_mul_ps(dw, _mm256_loadu_ps(&p->da[c0 + c][j8]));
                    acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[c]);
                }
            }
            for (int c = 0; c < 4; c++) out[(c0 + c) * NR + r] = simd_hsum(acc[c]);
        }
}

static void v3(const panel *p, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int c0 = 0; c0 < NT; c0 += 4)
        for (int r = 0; r < NR; r++) {
            __m256 acc[4];
            for (int c = 0; c < 4; c++) acc[c] = _mm256_setzero_ps();
            for (int j8 = 0; j8 < NB; j8 += 8) {
                __m256i m[4][4]; /* per token: blocks 0-1, 2-3, 4-5, 6-7 */
                SIMD_UNROLL for (int i = 0; i < 8; i += 2) {
                    __m256i wa = _mm256_load_si256((const __m256i *)p->w[r][j8 + i]);
                    __m256i wb = _mm256_load_si256((const __m256i *)p->w[r][j8 + i + 1]);
                    SIMD_UNROLL for (int c = 0; c < 4; c++) {
                        __m256i pa = _mm256_maddubs_epi16(
                            wa, _mm256_load_si256((const __m256i *)p->qa[c0 + c][j8 + i]));
                        __m256i pb = _mm256_maddubs_epi16(
                            wb, _mm256_load_si256((const __m256i *)p->qa[c0 + c][j8 + i + 1]));
                        m[c][i / 2] = _mm256_madd_epi16(_mm256_hadd_epi16(pa, pb), ones);
                    }
                }
                __m256 dw = _mm256_loadu_ps(&p->dw[r][j8]);
                SIMD_UNROLL for (int c = 0; c < 4; c++) {
                    /* m = [a a b b | a a b b] per pair of blocks (a, b) */
                    __m256i ab = _mm256_hadd_epi32(m[c][0], m[c][1]);
                    __m256i cd = _mm256_hadd_epi32(m[c][2], m[c][3]);
                    /* ab = [0 1 2 3 | 0 1 2 3]: low / high halves of each block */
                    __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20),
                                                 _mm256_permute2x128_si256(ab, cd, 0x31));
                    __m256 sc = _mm256_mul_ps(dw, _mm256_loadu_ps(&p->da[c0 + c][j8]));
                    acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[c]);
                }
            }
            for (int c = 0; c < 4; c++) out[(c0 + c) * NR + r] = simd_hsum(acc[c]);
        }
}

SIMD_AVX2_END

typedef struct {
    const panel *p;
    float *out;
    void (*fn)(const panel *, float *);
} job;
static void run(void *ctx) {
    job *j = ctx;
    for (int i = 0; i < 20; i++) j->fn(j->p, j->out);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (!simd_has_avx2()) return 0;
    panel *p = h_alloc(sizeof *p);
    for (int r = 0; r < NR; r++)
        for (int j = 0; j < NB; j++) {
            p->dw[r][j] = 0.01f * (1 + h_nrand() * h_nrand());
            for (int e = 0; e < 32; e++) p->w[r][j][e] = (uint8_t)((r * 7 + j * 3 + e * 5) % 16);
        }
    for (int c = 0; c < NT; c++)
        for (int j = 0; j < NB; j++) {
            p->da[c][j] = 0.02f * (1 + h_nrand() * h_nrand());
            for (int e = 0; e < 32; e++)
                p->qa[c][j][e] = (int8_t)((c * 11 + j * 13 + e * 17) % 255 - 127);
        }
    float *ref = h_alloc(NT * NR * 4), *out = h_alloc(NT * NR * 4);
    for (int c = 0; c < NT; c++)
        for (int r = 0; r < NR; r++) {
            double s = 0;
            for (int j = 0; j < NB; j++) {
                int d = 0;
                for (int e = 0; e < 32; e++) d += p->w[r][j][e] * p->qa[c][j][e];
                s += (double)p->dw[r][j] * p->da[c][j] * d;
            }
            ref[c * NR + r] = (float)s;
        }
    void (*fns[3])(const panel *, float *) = {v1, v2, v3};
    const char *names[3] = {"v1 scale per block (library)", "v2 lanes = blocks (hadd)",
                            "v3 v2 + phaddw before madd"};
    double flop = 20.0 * 2 * NR * NT * NB * 32;
    for (int v = 0; v < 3; v++) {
        fns[v](p, out);
        double e = h_rel(out, ref, NT * NR);
        job j = {p, out, fns[v]};
        double t = h_time(run, &j, reps, 1);
        printf("%-30s  rel err %.1e  %7.2f GFLOP/s\n", names[v], e, flop / t * 1e-9);
    }
    return 0;
}
#else
int main(void) {
    return 0;
}
#endif
