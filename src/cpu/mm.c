/* mm.c: CPU feature detection and the table of matrix-product kernels
 * (see mm.h). The table is constant; the choice depends only on the CPU and
 * the caller's simd flag, so there is no mutable global state. */
#include "cpu/mm.h"
#include "cpu/simd.h"
#include "quant/quant.h"

#if SIMD_X86
#include <cpuid.h>
#endif

int simd_has_avx2(void) {
#if SIMD_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    if ((xlo & 6) != 6) return 0; /* the OS saves the XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1; /* AVX2 */
#else
    return 0;
#endif
}

#if SIMD_X86
static const mm_kernel avx2_kernels[QT_COUNT] = {
    [QT_F32] = {MM_ACT_F32, mm_f32_avx2, "avx2", mm_f32_avx2},
    [QT_F16] = {MM_ACT_F32, mm_f16_avx2, "avx2", mm_f16_avx2},
    [QT_BF16] = {MM_ACT_F32, mm_bf16_avx2, "avx2", mm_bf16_avx2},
    [QT_Q4_0] = {MM_ACT_Q8_32, mm_q4_0_avx2, "avx2", mm_q4_0_exact_avx2},
    [QT_Q4_1] = {MM_ACT_Q8_32, mm_q4_1_avx2, "avx2", mm_q4_1_exact_avx2},
    [QT_Q5_0] = {MM_ACT_Q8_32, mm_q5_0_avx2, "avx2", mm_q5_0_exact_avx2},
    [QT_Q5_1] = {MM_ACT_Q8_32, mm_q5_1_avx2, "avx2", mm_q5_1_exact_avx2},
    [QT_Q8_0] = {MM_ACT_Q8_32, mm_q8_0_avx2, "avx2", mm_q8_0_exact_avx2},
    [QT_Q2_K] = {MM_ACT_Q8_K, mm_q2_k_avx2, "avx2", mm_q2_k_avx2},
    [QT_Q3_K] = {MM_ACT_Q8_K, mm_q3_k_avx2, "avx2", mm_q3_k_avx2},
    [QT_Q4_K] = {MM_ACT_Q8_K, mm_q4_k_avx2, "avx2", mm_q4_k_avx2},
    [QT_Q5_K] = {MM_ACT_Q8_K, mm_q5_k_avx2, "avx2", mm_q5_k_avx2},
    [QT_Q6_K] = {MM_ACT_Q8_K, mm_q6_k_avx2, "avx2", mm_q6_k_avx2},
};
#endif

const mm_kernel *mm_kernel_get(int type, int simd) {
#if SIMD_X86
    if (simd && type >= 0 && type < QT_COUNT && avx2_kernels[type].fn) return &avx2_kernels[type];
#else
    (void)type, (void)simd;
#endif
    return NULL;
}
