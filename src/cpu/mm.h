/* mm.h: the CPU matrix-product kernels (one per weight type) and their
 * selection.
 *
 * A kernel computes a block of the product out[t][r] = W[r] . x[t]: nr
 * weight rows (the row pointer w, wstride bytes apart) against nc activation
 * rows, writing out[c * ldo + r]. For up to 4 tokens (decoding) it streams
 * the weight rows once, each weight block unpacked once and used for every
 * token. For more tokens it unpacks a panel of rows x blocks into scratch
 * memory (integers ready for maddubs, scales as floats) and runs a small
 * rows x tokens micro-kernel over it, so the unpacking is paid once for all
 * tokens and each unpacked vector serves several tokens from registers. The
 * caller (cpu_backend.c) splits the matrix into row blocks for the threads.
 *
 * The activation rows are f32 (F32, F16, BF16 weights) or quantized with
 * q8.h (all quantized weight types); mm_act describes them.
 *
 * Kernels exist for AVX2+FMA+F16C (dot_float.c, dot_legacy.c, dot_kquant.c).
 * Without them (another CPU, or BEAST_CPU_SCALAR=1) mm_kernel_get returns
 * NULL and the backend uses the reference path: dequantize a weight row with
 * the quant traits and dot it in float. */
#ifndef BEAST_CPU_MM_H
#define BEAST_CPU_MM_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/q8.h"

typedef enum { MM_ACT_F32 = 0, MM_ACT_Q8_32 = Q8_32, MM_ACT_Q8_K = Q8_K } mm_act_kind;

typedef struct {
    const void *rows; /* activation row c at rows + c * stride bytes */
    size_t stride;
} mm_act;

/* Scratch memory a kernel may use (64-byte aligned, per thread). */
#define MM_SCRATCH_BYTES (128 * 1024)

typedef void (*mm_fn)(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                      float *out, size_t ldo, void *scratch);

typedef struct {
    mm_act_kind act;
    mm_fn fn;
    const char *name; /* "avx2" */
    /* fn's batch-independent variant: every token gets bit for bit its
     * result of nc = 1 (backend.h `deterministic`). The same function as fn
     * for the types whose batch path already sums in the decode path's order
     * (all but the 32-block types; see dot_legacy.c). */
    mm_fn exact;
} mm_kernel;

/* The kernel for a weight type; NULL for the reference path (no SIMD kernel
 * for the type, or simd == 0). simd: nonzero only when simd_has_avx2() said
 * yes; callers check once (the backend at creation: cpuid is slow, and traps
 * to the hypervisor in a VM). */
const mm_kernel *mm_kernel_get(int type, int simd);

/* The per-type kernels (AVX2), for mm.c and the tests / benchmarks. */
void mm_f32_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                 float *out, size_t ldo, void *scratch);
void mm_f16_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                 float *out, size_t ldo, void *scratch);
void mm_bf16_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q4_0_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q4_1_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q5_0_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q5_1_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q4_0_exact_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,
                        int nc, float *out, size_t ldo, void *scratch);
void mm_q4_1_exact_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,
                        int nc, float *out, size_t ldo, void *scratch);
void mm_q5_0_exact_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,
                        int nc, float *out, size_t ldo, void *scratch);
void mm_q5_1_exact_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,
                        int nc, float *out, size_t ldo, void *scratch);
void mm_q8_0_exact_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a,
                        int nc, float *out, size_t ldo, void *scratch);
void mm_q8_0_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q2_k_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q3_k_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q4_k_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q5_k_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);
void mm_q6_k_avx2(int64_t k, const uint8_t *w, size_t wstride, int nr, const mm_act *a, int nc,
                  float *out, size_t ldo, void *scratch);

#endif
