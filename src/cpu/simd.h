/* simd.h: CPU feature detection and the AVX2 helpers shared by the SIMD
 * kernel files (src/cpu/dot_*.c, src/cpu/q8.c).
 *
 * The library is built for the baseline x86-64 unless BEAST_NATIVE adds
 * -march=native, so AVX2 code is compiled per region with a target pragma:
 *
 *     #include "cpu/simd.h"
 *     #if SIMD_X86
 *     SIMD_AVX2_BEGIN
 *     ... functions using AVX2 / FMA / F16C intrinsics ...
 *     SIMD_AVX2_END
 *     #endif
 *
 * and such functions are only called after simd_has_avx2() said yes (the
 * kernel table in mm.c decides once per backend). The helpers below are
 * static inline and compiled in the AVX2 region of every file that includes
 * this header, so they may only be called from AVX2 code. */
#ifndef BEAST_SIMD_H
#define BEAST_SIMD_H

#include <stdint.h>
#include <string.h>

/* BEAST_NO_SIMD: build without the AVX2 code, as on a non-x86 machine */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BEAST_NO_SIMD)
#define SIMD_X86 1
#else
#define SIMD_X86 0
#endif

/* True when the CPU (and OS) can run the AVX2 + FMA + F16C kernels. */
int simd_has_avx2(void);

#if SIMD_X86

/* clang-format off */
#if defined(__clang__)
#define SIMD_AVX2_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define SIMD_AVX2_END   _Pragma("clang attribute pop")
#else
#define SIMD_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define SIMD_AVX2_END   _Pragma("GCC pop_options")
#endif
/* clang-format on */

#include <immintrin.h>

#define SIMD_INLINE static inline __attribute__((always_inline))

/* Fully unroll the next loop (its bound is a compile-time constant once the
 * kernel template is inlined), so small arrays of vectors become registers. */
/* Unroll the next loop only twice: fully unrolled, GCC regroups integer
 * sums into trees that need more registers than there are. */
#if defined(__clang__)
#define SIMD_UNROLL  _Pragma("unroll")
#define SIMD_UNROLL2 _Pragma("unroll 2")
#else
#define SIMD_UNROLL  _Pragma("GCC unroll 16")
#define SIMD_UNROLL2 _Pragma("GCC unroll 2")
#endif

SIMD_AVX2_BEGIN

/* Keep v in a register: stops the compiler from folding the load of v into
 * every instruction that uses it (a load per use instead of one). */
#define SIMD_IN_REG(v) __asm__("" : "+v"(v))

/* Software prefetch of the weight stream when decoding: a row is read
 * once, from DRAM for a real model, and the hardware prefetcher alone
 * leaves bandwidth unused (measured on the target, Zen 3: a matvec from
 * DRAM by one thread went from ~8-10 to ~10-11.5 GB/s with 2-4 KB). */
#ifndef SIMD_PREFETCH /* -DSIMD_PREFETCH=N to experiment */
#define SIMD_PREFETCH 2048
#endif
SIMD_INLINE void simd_prefetch(const uint8_t *p, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

/* little-endian fields at any alignment */
SIMD_INLINE uint16_t simd_rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
SIMD_INLINE uint32_t simd_rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* IEEE half to float with F16C */
SIMD_INLINE float simd_f16(const uint8_t *p) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(simd_rd16(p))));
}

/* the f16 at p + i * stride for i < 8, as 8 floats */
SIMD_INLINE __m256 simd_f16x8(const uint8_t *p, size_t stride) {
    __m128i h = _mm_cvtsi32_si128(simd_rd16(p));
    h = _mm_insert_epi16(h, simd_rd16(p + stride), 1);
    h = _mm_insert_epi16(h, simd_rd16(p + 2 * stride), 2);
    h = _mm_insert_epi16(h, simd_rd16(p + 3 * stride), 3);
    h = _mm_insert_epi16(h, simd_rd16(p + 4 * stride), 4);
    h = _mm_insert_epi16(h, simd_rd16(p + 5 * stride), 5);
    h = _mm_insert_epi16(h, simd_rd16(p + 6 * stride), 6);
    h = _mm_insert_epi16(h, simd_rd16(p + 7 * stride), 7);
    return _mm256_cvtph_ps(h);
}

/* sum of the 8 lanes */
SIMD_INLINE float simd_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SIMD_INLINE float simd_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SIMD_INLINE int simd_hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Lane i of the result = the sum of the 8 lanes of p[i]: reduces 8 vectors
 * of partial sums (one per block) to one vector with a lane per block, so
 * the per-block scales are applied with one multiply-add for 8 blocks. */
SIMD_INLINE __m256i simd_reduce8_i32(const __m256i p[8]) {
    __m256i a = _mm256_hadd_epi32(p[0], p[1]), b = _mm256_hadd_epi32(p[2], p[3]);
    __m256i c = _mm256_hadd_epi32(p[4], p[5]), d = _mm256_hadd_epi32(p[6], p[7]);
    __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d);
    /* ab = [0 1 2 3 (low halves) | 0 1 2 3 (high halves)], cd likewise for 4..7 */
    __m256i lo = _mm256_permute2x128_si256(ab, cd, 0x20),
            hi = _mm256_permute2x128_si256(ab, cd, 0x31);
    return _mm256_add_epi32(lo, hi);
}

/* e^x for 8 floats, a few ulp: x = n ln2 + r with n = round(x / ln2) and
 * |r| <= ln2 / 2 (ln2 split in a high part exact in float and a low
 * correction, so r is exact to a few ulp), e^r by its Taylor polynomial to
 * degree 7 (truncation below 0.35^8 / 8! = 5e-9 relative), times 2^n built
 * in the exponent bits. x is clamped to [-87, 88] so 2^n stays a normal
 * float: e^x saturates at about 1.6e38 above and 1.6e-38 below. */
SIMD_INLINE __m256 simd_exp(__m256 x) {
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

/* 16 bytes of packed nibbles -> 32 bytes: the low nibbles of bytes 0..15,
 * then their high nibbles (the element order of the 32-blocks) */
SIMD_INLINE __m256i simd_nibbles32(const uint8_t *p) {
    /* both halves get the 16 bytes; the high half is shifted right by 4 per
     * dword (the bits that cross into a byte's top nibble are masked off) */
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    v = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* bit e of `bits` -> byte e = 0xff (set) or 0 */
SIMD_INLINE __m256i simd_bits_to_bytes(uint32_t bits) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i mask = _mm256_set1_epi64x(0x8040201008040201ll);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
}

/* sum_e u[e] * s[e] in 8 int32 lanes (u: unsigned bytes, s: signed bytes);
 * exact while every pair u0*s0 + u1*s1 fits in int16, i.e. u <= 127 for
 * s in [-127, 127] (or the sign trick below for signed weights) */
SIMD_INLINE __m256i simd_dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* the same for two signed operands with |w| <= 127: |w| * (s with w's sign) */
SIMD_INLINE __m256i simd_dot_s8s8(__m256i w, __m256i s) {
    return simd_dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w));
}

SIMD_AVX2_END

#endif /* SIMD_X86 */
#endif
