/* cuda_mvq.cuh: the device pieces of the one-token Q4_K / Q6_K mat-vec
 * (cuda_mvq.cu explains the lane layout and the arithmetic) that the step
 * program (cuda_step.cu) shares: what a lane loads for one item of a row,
 * its integer dot product against 8-bit activations, the activation of the
 * glu, and the cp.async helpers. */
#ifndef BEAST_CUDA_MVQ_CUH
#define BEAST_CUDA_MVQ_CUH

#include "cuda/cuda_impl.h"
#include "cuda/cuda_quant.cuh"

#define MVQ_R 2 /* rows a warp holds at once */

static __device__ __forceinline__ float mvq_act(float g, int act) {
    if (act == 0) return g / (1.0f + expf(-g));
    const float c = 0.7978845608028654f;
    return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
}

/* loads of weight bytes from global memory (read-only path) or, SM, from
 * shared memory (the staged kernel's copies) */
template <bool SM> static __device__ __forceinline__ uint32_t mvq_l32(const uint32_t *p) {
    return SM ? *p : __ldg(p);
}
template <bool SM> static __device__ __forceinline__ uint32_t mvq_l16(const uint8_t *p) {
    return SM ? (uint32_t) * (const unsigned short *)p : cq_ld16(p);
}
template <bool SM> static __device__ __forceinline__ uint4 mvq_l128(const uint8_t *p) {
    return SM ? *(const uint4 *)p : cq_ld128(p);
}

/* 16 bytes from a 2-byte aligned address (5 aligned words, funnel shifts;
 * the fifth word is read only inside the block) */
template <bool SM> static __device__ __forceinline__ uint4 mvq_ld128a2(const uint8_t *p) {
    const uint32_t *q = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
    const uint32_t a = mvq_l32<SM>(q), b = mvq_l32<SM>(q + 1), c = mvq_l32<SM>(q + 2),
                   d = mvq_l32<SM>(q + 3), e = mvq_l32<SM>(q + 4);
    const int sh = (int)((uintptr_t)p & 3) * 8;
    return make_uint4(__funnelshift_r(a, b, sh), __funnelshift_r(b, c, sh),
                      __funnelshift_r(c, d, sh), __funnelshift_r(d, e, sh));
}

/* what a lane loads for one item (a quarter of a block) of one row */
template <int TYPE> struct mvq_raw;
template <> struct mvq_raw<CQ_Q4_K> {
    static constexpr int BYTES = 144;
    uint4 hdr, q0, q1;
    template <bool SM = false> __device__ __forceinline__ void load(const uint8_t *row, int it) {
        const uint8_t *b = row + (size_t)(it >> 2) * BYTES;
        hdr = mvq_l128<SM>(b);
        q0 = mvq_l128<SM>(b + 16 + 32 * (it & 3));
        q1 = mvq_l128<SM>(b + 32 + 32 * (it & 3));
    }
};
template <> struct mvq_raw<CQ_Q6_K> {
    static constexpr int BYTES = 210;
    uint4 la, lb, qh;
    uint32_t s0, s1, d;
    template <bool SM = false> __device__ __forceinline__ void load(const uint8_t *row, int it) {
        const uint8_t *b = row + (size_t)(it >> 2) * BYTES;
        const int h = (it & 3) >> 1, k = it & 1;
        la = mvq_ld128a2<SM>(b + 64 * h + 16 * k);
        lb = mvq_ld128a2<SM>(b + 64 * h + 32 + 16 * k);
        qh = mvq_ld128a2<SM>(b + 128 + 32 * h + 16 * k);
        const uint8_t *sp = b + 192 + 8 * h; /* the half's 8 scales */
        s0 = mvq_l16<SM>(sp) | mvq_l16<SM>(sp + 2) << 16;
        s1 = mvq_l16<SM>(sp + 4) | mvq_l16<SM>(sp + 6) << 16;
        d = mvq_l16<SM>(b + 208);
    }
};

/* one item (64 weights) of one row against the int8 x of its elements */
template <int TYPE>
static __device__ __forceinline__ float mvq_dot(const mvq_raw<TYPE> &r, int it, const int8_t *xq,
                                                const float *xd, const float *xs);

template <>
__device__ __forceinline__ float mvq_dot<CQ_Q6_K>(const mvq_raw<CQ_Q6_K> &r, int it,
                                                  const int8_t *xq, const float *xd,
                                                  const float *xs) {
    (void)xs;
    const int h = (it & 3) >> 1, k = it & 1;
    const int e0 = (it >> 2) * 256 + 128 * h + 16 * k; /* element of column 0 */
    const uint32_t la[4] = {r.la.x, r.la.y, r.la.z, r.la.w};
    const uint32_t lb[4] = {r.lb.x, r.lb.y, r.lb.z, r.lb.w};
    const uint32_t qh[4] = {r.qh.x, r.qh.y, r.qh.z, r.qh.w};
    float acc = 0.0f;
#pragma unroll
    for (int q = 0; q < 4; q++) { /* the 16 elements e0 + 32 q .. + 16 */
        const int4 xv = *(const int4 *)(xq + e0 + 32 * q);
        const int xw[4] = {xv.x, xv.y, xv.z, xv.w};
        int is = 0;
#pragma unroll
        for (int m = 0; m < 4; m++) {
            const uint32_t lo = (q & 1) ? lb[m] : la[m];
            const uint32_t lo4 = q < 2 ? lo & 0x0f0f0f0fu : (lo >> 4) & 0x0f0f0f0fu;
            const uint32_t hi2 = ((q == 0   ? qh[m] << 4
                                   : q == 1 ? qh[m] << 2
                                   : q == 2 ? qh[m]
                                            : qh[m] >> 2)) &
                                 0x30303030u;
            is = __dp4a((int)__vsub4(lo4 | hi2, 0x20202020u), xw[m], is);
        }
        /* int8 scale 2q + k of the half */
        const uint32_t sw = q < 2 ? r.s0 : r.s1;
        const float sc = (float)(int8_t)(sw >> (8 * (2 * (q & 1) + k)));
        acc = fmaf(sc * xd[(e0 + 32 * q) >> 5], (float)is, acc);
    }
    return cq_h2f(r.d) * acc;
}

template <>
__device__ __forceinline__ float mvq_dot<CQ_Q4_K>(const mvq_raw<CQ_Q4_K> &r, int it,
                                                  const int8_t *xq, const float *xd,
                                                  const float *xs) {
    const int c = it & 3, e0 = (it >> 2) * 256 + 64 * c; /* first element */
    const int4 *xp = (const int4 *)(xq + e0);
    const int4 xq4[4] = {xp[0], xp[1], xp[2], xp[3]};
    const float d0 = xd[e0 >> 5], d1 = xd[(e0 >> 5) + 1];
    const float s0 = xs[e0 >> 5], s1 = xs[(e0 >> 5) + 1];
    const uint32_t w[8] = {r.q0.x, r.q0.y, r.q0.z, r.q0.w, r.q1.x, r.q1.y, r.q1.z, r.q1.w};
    const int xl[8] = {xq4[0].x, xq4[0].y, xq4[0].z, xq4[0].w,
                       xq4[1].x, xq4[1].y, xq4[1].z, xq4[1].w};
    const int xh[8] = {xq4[2].x, xq4[2].y, xq4[2].z, xq4[2].w,
                       xq4[3].x, xq4[3].y, xq4[3].z, xq4[3].w};
    int lo = 0, hi = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        lo = __dp4a((int)(w[k] & 0x0f0f0f0fu), xl[k], lo);
        hi = __dp4a((int)((w[k] >> 4) & 0x0f0f0f0fu), xh[k], hi);
    }
    float sc0, mn0, sc1, mn1;
    cq_k4_scale_min(r.hdr, c, 0, sc0, mn0); /* sub-block 2c: the low nibbles */
    cq_k4_scale_min(r.hdr, c, 2, sc1, mn1); /* sub-block 2c + 1: the high nibbles */
    float acc = (sc0 * d0) * (float)lo;
    acc = fmaf(-mn0, s0, acc);
    acc = fmaf(sc1 * d1, (float)hi, acc);
    return fmaf(-mn1, s1, acc);
}

static __device__ __forceinline__ void mvq_cp16(uint8_t *dst, const uint8_t *src) {
    asm volatile(
        "cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
        "l"(src)
        : "memory");
}
static __device__ __forceinline__ void mvq_cp_commit(void) {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> static __device__ __forceinline__ void mvq_cp_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
/* one float4 of x (element 4 * i4) into int8: the 8 threads of a block of
 * 32 find its amax and float sum by shuffles (whole 8-lane groups, all
 * lanes of the warp calling), then each stores its 4 codes, and the group's
 * first the block's scale amax / 127 and sum */
static __device__ __forceinline__ void mvq_quant4(float4 v, int i4, int n4, int8_t *xq, float *xd,
                                                  float *xs) {
    float a = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    float sum = (v.x + v.y) + (v.z + v.w);
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) {
        a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    }
    if (i4 < n4) {
        const float inv = a > 0.0f ? 127.0f / a : 0.0f;
        ((uint32_t *)xq)[i4] = (uint32_t)(__float2int_rn(v.x * inv) & 0xff) |
                               (uint32_t)(__float2int_rn(v.y * inv) & 0xff) << 8 |
                               (uint32_t)(__float2int_rn(v.z * inv) & 0xff) << 16 |
                               (uint32_t)(__float2int_rn(v.w * inv) & 0xff) << 24;
        if ((i4 & 7) == 0) {
            xd[i4 >> 3] = a / 127.0f;
            xs[i4 >> 3] = sum;
        }
    }
}

/* lane 0's store of a group's sums (reduced over the warp): with glu, row
 * r0 of gate and up as out[0] = act(gate) * up, out[1] = up; else rows r0
 * and r0 + 1 of job j (those that exist), each also added into res when
 * res is given */
static __device__ __forceinline__ void mvq_store(float *const *out, const int *rows, int glu, int j,
                                                 int r0, const float (&acc)[MVQ_R], float *res) {
    if (glu) {
        out[1][r0] = acc[1];
        out[0][r0] = mvq_act(acc[0], glu - 1) * acc[1];
        return;
    }
#pragma unroll
    for (int r = 0; r < MVQ_R; r++)
        if (r0 + r < rows[j]) {
            out[j][r0 + r] = acc[r];
            if (res) res[r0 + r] = __ldcg(res + r0 + r) + acc[r];
        }
}

/* each row's sum over the warp's lanes, in every lane (the same shuffle
 * order wherever it is used, so fused and single launches agree) */
static __device__ __forceinline__ void mvq_warp_sum(float (&acc)[MVQ_R]) {
#pragma unroll
    for (int r = 0; r < MVQ_R; r++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
}

#endif
