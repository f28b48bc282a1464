/* q8.h: activation quantization for the integer dot kernels.
 *
 * Before a matrix product with a quantized weight type, every token's f32
 * activation row is quantized once to 8 bits, so the kernels can multiply
 * weight integers with activation integers (AVX2 maddubs / madd) and apply
 * the float scales once per block. Two formats:
 *
 *   Q8_32 (for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): blocks of 32 elements,
 *     d = amax / 127 (f32), q = round-to-nearest-even(x / d) in [-127, 127],
 *     and the block sum s = d * sum(q) (for the weight types with an offset).
 *     Row layout: int8 q[k] | f32 d[k/32] | f32 s[k/32].
 *   Q8_K (for Q2_K .. Q6_K): super-blocks of 256 with one f32 d each, plus
 *     int16 sums of q over each 16 elements ("bsums", for the sub-block
 *     mins/offsets of the K-quants).
 *     Row layout: int8 q[k] | f32 d[k/256] | int16 bsum[k/16].
 * Rows are padded to 64 bytes; q starts 64-byte aligned when the buffer is.
 *
 * Error: every element is within d/2 = amax_block / 254 of x (amax over the
 * block of 32, or over the 256 of a super-block); test_cpu_kernels.c bounds
 * the dot-product error with exactly that.
 *
 * There is one scalar implementation (the reference) and an AVX2 one; they
 * give bit-identical results (same float operations; rounding through the
 * current rounding mode, round-to-nearest-even by default). */
#ifndef BEAST_CPU_Q8_H
#define BEAST_CPU_Q8_H

#include <stddef.h>
#include <stdint.h>

typedef enum { Q8_32 = 1, Q8_K = 2 } q8_kind;

#define Q8_ROW_ALIGN 64

/* Bytes of one quantized row of k elements (k a multiple of 32, or 256 for
 * Q8_K), padded to Q8_ROW_ALIGN. */
size_t q8_row_bytes(q8_kind kind, int64_t k);

/* Quantize one row x[k] into row (q8_row_bytes of it).
 * simd: use the AVX2 version (the caller checked simd_has_avx2()). */
void q8_quantize_row(q8_kind kind, const float *x, int64_t k, void *row, int simd);

/* The pieces of a quantized row. */
static inline const int8_t *q8_qs(const void *row) {
    return (const int8_t *)row;
}
static inline const float *q8_d(const void *row, int64_t k) {
    return (const float *)((const char *)row + k);
}
/* Q8_32 only: the block sums, after the k/32 scales */
static inline const float *q8_s(const void *row, int64_t k) {
    return q8_d(row, k) + k / 32;
}
/* Q8_K only: the 16-element sums, after the k/256 scales */
static inline const int16_t *q8_bsums(const void *row, int64_t k) {
    return (const int16_t *)((const char *)row + k + 4 * (k / 256));
}

#endif
