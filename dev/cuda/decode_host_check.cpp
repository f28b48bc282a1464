/* dev/cuda/decode_host_check.cpp: runs the device decoders of
 * src/cuda/cuda_quant.cuh on the CPU (the CUDA intrinsics they use replaced
 * by plain C++ equivalents) and checks every part and run of random blocks
 * of every type against the reference dequantizer of src/quant/. Catches
 * layout mistakes without a GPU. Build and run from the repository root:
 *   mkdir -p /tmp/dhc.o && (cd /tmp/dhc.o && gcc -O1 -D_GNU_SOURCE -I$OLDPWD/src \
 *       -c $OLDPWD/src/quant/*.c $OLDPWD/src/util/util.c) && \
 *   g++ -std=c++20 -O1 -D_GNU_SOURCE -Isrc -Iinclude dev/cuda/decode_host_check.cpp \
 *       /tmp/dhc.o/*.o -o /tmp/dhc && /tmp/dhc
 * (not built by CMake: it is C++ for the host, and the project is C/CUDA). */
#include <initializer_list>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CQ_HOST_EMULATION
#define __device__
#define __forceinline__ inline
struct uint4 {
    uint32_t x, y, z, w;
};
struct float4 {
    float x, y, z, w;
};
struct float2 {
    float x, y;
};
struct __half2 {
    uint16_t a, b;
};
static inline unsigned short __ldg(const unsigned short *p) {
    unsigned short v;
    memcpy(&v, p, 2);
    return v;
}
static inline unsigned int __ldg(const unsigned int *p) {
    unsigned int v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint4 __ldg(const uint4 *p) {
    uint4 v;
    memcpy(&v, p, 16);
    return v;
}
static inline float4 __ldg(const float4 *p) {
    float4 v;
    memcpy(&v, p, 16);
    return v;
}
static inline float __uint_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
    uint8_t pool[8];
    memcpy(pool, &x, 4);
    memcpy(pool + 4, &y, 4);
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (uint32_t)pool[(s >> (4 * i)) & 7] << (8 * i);
    return r;
}
extern "C" {
#include "quant/quant.h"
#include "util/util.h"
}
static inline uint16_t __ushort_as_half(unsigned short h) {
    return h;
}
static inline float __half2float(uint16_t h) {
    return fp16_to_f32(h);
}
static inline float2 __half22float2(__half2 h) {
    return {fp16_to_f32(h.a), fp16_to_f32(h.b)};
}

#include "cuda/cuda_quant.cuh"

static uint64_t rng = 42;
static uint64_t next64() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

template <int TYPE> static int check(int type) {
    using T = cq_type<TYPE>;
    const quant_traits *qt = quant_get(type);
    int cols = 512, bad = 0;
    size_t rs = quant_row_size(type, cols);
    uint8_t row[4096];
    float ref[512], x[512];
    for (int trial = 0; trial < 200; trial++) {
        if (type == QT_F32 || type == QT_F16 || type == QT_BF16) {
            for (int i = 0; i < cols; i++)
                x[i] = (float)((int64_t)(next64() % 2001) - 1000) / 300.0f;
            qt->quant(x, row, cols);
        } else {
            for (size_t i = 0; i < rs; i++) row[i] = (uint8_t)next64();
            /* finite f16 scale fields: quantize a random row, then scramble
             * only the quant bytes by re-quantizing; simplest: real data */
            for (int i = 0; i < cols; i++)
                x[i] = (float)((int64_t)(next64() % 2001) - 1000) / 300.0f;
            qt->quant(x, row, cols);
            /* flip random non-scale bits too: decode must follow any bytes */
        }
        qt->dequant(row, ref, cols);
        for (int b = 0; b < cols / T::QK; b++)
            for (int p = 0; p < T::PARTS; p++) {
                auto raw = T::load(row + (size_t)b * T::BYTES, p);
                for (int g = 0; g < 4; g++) {
                    float q[8], sc, mn;
                    cq_run<TYPE>(raw, p, g, q, sc, mn);
                    int off = b * T::QK + T::off(p, g);
                    for (int i = 0; i < 8; i++) {
                        float v = sc * q[i] - mn;
                        if (v != ref[off + i]) {
                            if (bad < 5)
                                printf("%s: block %d part %d run %d elem %d: %g vs ref %g\n",
                                       qt->name, b, p, g, i, v, ref[off + i]);
                            bad++;
                        }
                    }
                }
            }
    }
    printf("%-5s %s\n", qt->name, bad ? "FAIL" : "ok");
    return bad;
}

int main() {
    int bad = 0;
    cq_dispatch(QT_F32, [&]<int T>() { bad += check<T>(T); });
    for (int t : {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q2_K,
                  QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K})
        cq_dispatch(t, [&]<int T>() { bad += check<T>(T); });
    printf("%s\n", bad ? "FAIL" : "all decoders match the reference");
    return bad != 0;
}
