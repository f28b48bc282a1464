/* dev/cuda/matvec.cu: workbench for the decode mat-vec kernel (one token,
 * y = W x, W in a GGUF weight type), llm.c style: several versions, a check
 * of each against the CPU reference (quant traits' dot, in double), and a
 * timing table with achieved bandwidth next to two ceilings measured in the
 * same run: a device-to-device cudaMemcpy (bytes read + written) and a
 * read-only reduction kernel (16-byte loads).
 *
 * Versions (the production kernel is src/cuda/cuda_matvec.cu's, run as "lib"):
 *   v1  R=1 row per CTA, no unrolling: one part per thread per iteration
 *   v2  R=2 rows per CTA share the x loads, 2 parts in flight (= lib's shape)
 *   v3  R=4 rows, 2 parts in flight
 *   v4  R=2 rows, 4 parts in flight
 *   (v1-v4: one CTA per row group, up to 4 warps splitting the row, result
 *   through shared memory: the first library version)
 *   v5  persistent warps: a warp per R=2 row group, grid-stride over groups,
 *       2 parts per lane in flight, as many CTAs as fit on the device
 *   v6  v5 with 4 parts in flight
 *   v7  v5 with R=4
 *   v8  v5 with R=1 and 4 parts in flight
 *   v2nx v2 without loading x (a diagnostic, its check is expected to
 *       fail): the cost of x's scattered 16-byte loads
 *   v9  v2 with the x of a part's four runs loaded before any arithmetic
 *   v10 v9 with R=4 rows and one part in flight
 *   v11 integer dot products (dp4a) on x quantized to int8 in blocks of 32
 *       (quant_x8 launched first, included in the time), R=4, one part in
 *       flight; v11b R=2, 2 parts; v11c R=4, 2 parts; v11n = v11 without
 *       the quantize launch (x already quantized, as a fused producer would
 *       leave it; runs after v11, which leaves it quantized). Checked
 *       against the float reference with the activation rounding added to
 *       the bound (sum |w| * amax32(x) / 254).
 *   libx the library's float path (cuda_matvec_multi, exact)
 *   libr lib with cuda_mvq.cu's register kernel (mvq_kernel) in place of its
 *        staged one (weights through shared memory by cp.async)
 *   lib cuda_matvec() as the backend calls it (for one token of Q4_K:
 *       src/cuda/cuda_mvq.cu, 8-bit x quantized inside the kernel, checked
 *       with the activation rounding bound) (v2's shape, launched with
 *       programmatic dependent launch, with fused-launch support)
 * bench/results/ holds tables of runs, including a variant (since removed)
 * that read 4-6 bit codes as the float 0.5 + u/256 to save an FADD a weight:
 * no faster, which with v2nx says the loads, not the arithmetic, bound it.
 * Weights are random bytes with sane f16 scale fields (any bytes are a valid
 * block once the scales are finite), so big matrices are made at memory
 * speed. Matrices are replicated to rotate through >= 256 MiB so that the L2
 * (50 MiB) does not serve repeated runs.
 *
 * usage: dev-cuda-matvec [--quick | --ceilings | --only S]   (--only S: the rows whose
 *        "type/shape/version" contains S; build: the dev-cuda-matvec CMake
 * target; --ceilings prints the two ceilings only) */
#include "cuda/cuda_impl.h"
#include "cuda/cuda_quant.cuh"

extern "C" {
#include "quant/quant.h"
}

#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the kernel, with the shape parameters open ---- */
template <int TYPE, int R, bool NOX = false, bool XH = false>
__device__ __forceinline__ void part_dot(const typename cq_type<TYPE>::Raw (&raw)[R], int b, int p,
                                         const float *__restrict__ x, float (&acc)[R]) {
    using T = cq_type<TYPE>;
    float4 xa[4], xc[4];
    if (XH) /* all four runs' x before any arithmetic */
#pragma unroll
        for (int g = 0; g < 4; g++) {
            const float4 *xp = (const float4 *)(x + b * T::QK + T::off(p, g));
            xa[g] = __ldg(xp), xc[g] = __ldg(xp + 1);
        }
#pragma unroll
    for (int g = 0; g < 4; g++) {
        const float4 *xp = (const float4 *)(x + b * T::QK + T::off(p, g));
        float4 a, c;
        if (NOX) { /* diagnostic: no x traffic (x = the run index) */
            a = c = make_float4(g, g + 1, g + 2, g + 3);
        } else if (XH) {
            a = xa[g], c = xc[g];
        } else {
            a = __ldg(xp), c = __ldg(xp + 1);
        }
        float xv[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
        float sx = 0.0f;
        if (T::HAS_MIN)
#pragma unroll
            for (int i = 0; i < 8; i++) sx += xv[i];
#pragma unroll
        for (int r = 0; r < R; r++) {
            float q[8], sc, mn;
            cq_run<TYPE>(raw[r], p, g, q, sc, mn);
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) s = fmaf(q[i], xv[i], s);
            acc[r] = fmaf(sc, s, acc[r]);
            if (T::HAS_MIN) acc[r] = fmaf(-mn, sx, acc[r]);
        }
    }
}

template <int TYPE, int R, int U, bool NOX = false, bool XH = false>
__global__ void __launch_bounds__(128)
    mv_dev(float *out, const uint8_t *__restrict__ w, size_t row_bytes, int rows, int cols,
           const float *__restrict__ x) {
    using T = cq_type<TYPE>;
    const int r0 = blockIdx.x * R, items = cols / T::QK * T::PARTS, stride = blockDim.x;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    const uint8_t *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = w + (size_t)min(r0 + r, rows - 1) * row_bytes;
    for (int it = threadIdx.x; it < items; it += U * stride) {
        typename T::Raw raw[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int i = it + u * stride;
            if (i < items)
#pragma unroll
                for (int r = 0; r < R; r++)
                    raw[u][r] = T::load(wr[r] + (size_t)(i / T::PARTS) * T::BYTES, i % T::PARTS);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int i = it + u * stride;
            if (i < items) part_dot<TYPE, R, NOX, XH>(raw[u], i / T::PARTS, i % T::PARTS, x, acc);
        }
    }
    __shared__ float red[4][R];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[warp][r] = v;
    }
    __syncthreads();
    if (threadIdx.x < R && r0 + (int)threadIdx.x < rows) {
        float v = 0.0f;
        for (int k = 0; k < nw; k++) v += red[k][threadIdx.x];
        out[r0 + threadIdx.x] = v;
    }
}

/* persistent warps: a warp per R-row group, grid-stride, U parts per lane in
 * flight, no shared memory (the shape the library kernel took) */
template <int TYPE, int R, int U>
__global__ void __launch_bounds__(128)
    mv_persist(float *out, const uint8_t *__restrict__ w, size_t row_bytes, int rows, int cols,
               const float *__restrict__ x) {
    using T = cq_type<TYPE>;
    const int items = cols / T::QK * T::PARTS, lane = threadIdx.x & 31;
    const int groups = (rows + R - 1) / R, nwarps = gridDim.x * (blockDim.x >> 5);
    for (int grp = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); grp < groups;
         grp += nwarps) {
        const int r0 = grp * R;
        const uint8_t *wr[R];
#pragma unroll
        for (int r = 0; r < R; r++) wr[r] = w + (size_t)min(r0 + r, rows - 1) * row_bytes;
        float acc[R];
#pragma unroll
        for (int r = 0; r < R; r++) acc[r] = 0.0f;
        for (int base = lane; base < items; base += 32 * U) {
            typename T::Raw raw[U][R];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = base + 32 * u;
                if (i < items)
#pragma unroll
                    for (int r = 0; r < R; r++)
                        raw[u][r] =
                            T::load(wr[r] + (size_t)(i / T::PARTS) * T::BYTES, i % T::PARTS);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                int i = base + 32 * u;
                if (i < items) part_dot<TYPE, R>(raw[u], i / T::PARTS, i % T::PARTS, x, acc);
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = acc[r];
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0 && r0 + r < rows) out[r0 + r] = v;
        }
    }
}

/* ---- v11: integer dot products on 8-bit activations ----
 * x is first quantized to int8 in blocks of 32 (scale amax / 127, one float
 * per block) with the float sum of every run of 8 kept exact (x8s); a run of
 * 8 codes u (unsigned bytes) then costs two dp4a: sum(u * xq), and
 *   acc += sc * d_x * sum(u * xq) - (sc * ZP + mn) * sum(x of the run).
 * Results change by the activation rounding (|err| <= sum |w| * amax / 254
 * per block), as on the SIMD CPU backend and in llama.cpp. */
struct xq8 {
    const int8_t *q; /* [cols] */
    const float *d;  /* [cols / 32] */
    const float *s;  /* [cols / 8] run sums of the float x */
};

__global__ void quant_x8(const float *__restrict__ x, int8_t *q, float *d, float *s, int cols) {
    int b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (b * 32 >= cols) return;
    float v = x[b * 32 + lane], a = fabsf(v), r = v;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
    float sc = a / 127.0f, inv = a > 0 ? 127.0f / a : 0.0f;
    q[b * 32 + lane] = (int8_t)__float2int_rn(v * inv);
    if (lane == 0) d[b] = sc;
    if ((lane & 7) == 0) s[b * 4 + lane / 8] = r;
}

static __device__ __forceinline__ int dp4a_us(uint32_t u, int x, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(u), "r"(x), "r"(c));
    return d;
}

template <int TYPE, int R>
__device__ __forceinline__ void part_dot_q8(const typename cq_type<TYPE>::Raw (&raw)[R], int b,
                                            int p, const xq8 &x, float (&acc)[R]) {
    using T = cq_type<TYPE>;
    int2 xv[4];
    float xd[4], xs[4];
#pragma unroll
    for (int g = 0; g < 4; g++) {
        int off = b * T::QK + T::off(p, g);
        xv[g] = __ldg((const int2 *)(x.q + off));
        xd[g] = __ldg(x.d + off / 32);
        xs[g] = __ldg(x.s + off / 8);
    }
#pragma unroll
    for (int g = 0; g < 4; g++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            uint32_t u0, u1;
            float sc, mn;
            T::runu(raw[r], p, g, u0, u1, sc, mn);
            int is = dp4a_us(u1, xv[g].y, dp4a_us(u0, xv[g].x, 0));
            acc[r] = fmaf(sc * xd[g], (float)is, acc[r]);
            acc[r] = fmaf(-fmaf(sc, T::ZP, mn), xs[g], acc[r]);
        }
}

template <int TYPE, int R, int U>
__global__ void __launch_bounds__(128) mv_q8(float *out, const uint8_t *__restrict__ w,
                                             size_t row_bytes, int rows, int cols, const xq8 x) {
    using T = cq_type<TYPE>;
    const int r0 = blockIdx.x * R, items = cols / T::QK * T::PARTS, stride = blockDim.x;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    const uint8_t *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = w + (size_t)min(r0 + r, rows - 1) * row_bytes;
    for (int it = threadIdx.x; it < items; it += U * stride) {
        typename T::Raw raw[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int i = it + u * stride;
            if (i < items)
#pragma unroll
                for (int r = 0; r < R; r++)
                    raw[u][r] = T::load(wr[r] + (size_t)(i / T::PARTS) * T::BYTES, i % T::PARTS);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int i = it + u * stride;
            if (i < items) part_dot_q8<TYPE, R>(raw[u], i / T::PARTS, i % T::PARTS, x, acc);
        }
    }
    __shared__ float red[4][R];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[warp][r] = v;
    }
    __syncthreads();
    if (threadIdx.x < R && r0 + (int)threadIdx.x < rows) {
        float v = 0.0f;
        for (int k = 0; k < nw; k++) v += red[k][threadIdx.x];
        out[r0 + threadIdx.x] = v;
    }
}

/* read-only ceiling: sum of all 16-byte words */
__global__ void read_kernel(const uint4 *p, size_t n, unsigned *sink) {
    unsigned acc = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldg(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;
}

/* ---- host side ---- */
static uint64_t rng = 88172645463325252ull;
static uint64_t next64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float frand(void) {
    return (float)((next64() >> 11) * (1.0 / 9007199254740992.0));
}
static uint16_t f16(float f) {
    return f32_to_fp16(f);
}

/* byte offsets of the f16 scale (d) and min fields of a block */
static void scale_fields(int type, int *d, int *m) {
    *d = -1, *m = -1;
    switch (type) {
    case QT_Q4_0:
    case QT_Q5_0:
    case QT_Q8_0:
        *d = 0;
        break;
    case QT_Q4_1:
    case QT_Q5_1:
    case QT_Q4_K:
    case QT_Q5_K:
        *d = 0, *m = 2;
        break;
    case QT_Q2_K:
        *d = 80, *m = 82;
        break;
    case QT_Q3_K:
        *d = 108;
        break;
    case QT_Q6_K:
        *d = 208;
        break;
    }
}

static void make_weights(int type, int64_t rows, int64_t cols, std::vector<uint8_t> &buf) {
    size_t rs = quant_row_size(type, cols), n = rs * rows;
    buf.resize(n);
    if (type == QT_F32 || type == QT_F16 || type == QT_BF16) {
        for (size_t i = 0; i < (size_t)(rows * cols); i++) {
            float v = (frand() - 0.5f) * 0.2f;
            if (type == QT_F32)
                memcpy(&buf[4 * i], &v, 4);
            else {
                uint16_t h = type == QT_F16 ? f16(v) : f32_to_bf16(v);
                memcpy(&buf[2 * i], &h, 2);
            }
        }
        return;
    }
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t r = next64();
        memcpy(&buf[i], &r, 8);
    }
    const quant_traits *qt = quant_get(type);
    int d, m;
    scale_fields(type, &d, &m);
    size_t nblk = n / qt->bytes;
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *blk = &buf[b * qt->bytes];
        uint16_t v = f16(0.001f + 0.01f * frand());
        memcpy(blk + d, &v, 2);
        if (m >= 0) {
            float mv = 0.001f + 0.01f * frand();
            /* legacy types store +m (any sign); K-quants an unsigned dmin */
            if (type == QT_Q4_1 || type == QT_Q5_1) mv = frand() < 0.5f ? -mv : mv;
            v = f16(mv);
            memcpy(blk + m, &v, 2);
        }
    }
}

typedef void (*launch_fn)(cudaStream_t, float *, const uint8_t *, size_t, int, int, const float *);

template <int TYPE, int R, int U, bool NOX = false, bool XH = false>
static void launch_dev(cudaStream_t s, float *out, const uint8_t *w, size_t rb, int rows, int cols,
                       const float *x) {
    int items = cols / cq_type<TYPE>::QK * cq_type<TYPE>::PARTS;
    int warps = std::max(1, std::min(4, items / 64));
    mv_dev<TYPE, R, U, NOX, XH>
        <<<(rows + R - 1) / R, 32 * warps, 0, s>>>(out, w, rb, rows, cols, x);
}

template <int TYPE, int R, int U>
static void launch_persist(cudaStream_t s, float *out, const uint8_t *w, size_t rb, int rows,
                           int cols, const float *x) {
    static int per_sm = 0, sms = 0;
    if (!per_sm) {
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mv_persist<TYPE, R, U>, 128, 0);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
        if (per_sm < 1) per_sm = 1;
    }
    int groups = (rows + R - 1) / R, ctas = std::min((groups + 3) / 4, per_sm * sms);
    mv_persist<TYPE, R, U><<<ctas, 128, 0, s>>>(out, w, rb, rows, cols, x);
}

/* v11 scratch for the quantized x (sized for the largest shape) */
static int8_t *g_xq;
static float *g_xd, *g_xs;

/* v11: quantize x, then the dp4a mat-vec (QX = false: the mat-vec alone, x
 * quantized once beforehand, as if a previous kernel had written it) */
template <int TYPE, int R, int U, bool QX = true>
static void launch_q8(cudaStream_t s, float *out, const uint8_t *w, size_t rb, int rows, int cols,
                      const float *x) {
    if (QX || !x) quant_x8<<<(cols / 32 + 3) / 4, 128, 0, s>>>(x, g_xq, g_xd, g_xs, cols);
    int items = cols / cq_type<TYPE>::QK * cq_type<TYPE>::PARTS;
    int warps = std::max(1, std::min(4, items / 64));
    xq8 xq = {g_xq, g_xd, g_xs};
    mv_q8<TYPE, R, U><<<(rows + R - 1) / R, 32 * warps, 0, s>>>(out, w, rb, rows, cols, xq);
}

static int g_type;
static void launch_lib(cudaStream_t s, float *out, const uint8_t *w, size_t rb, int rows, int cols,
                       const float *x) {
    (void)rb;
    cuda_matvec(s, out, g_type, w, rows, cols, x, 1);
}

/* the library's float (exact) path, where "lib" takes cuda_mvq.cu's */
static void launch_libx(cudaStream_t s, float *out, const uint8_t *w, size_t rb, int rows, int cols,
                        const float *x) {
    (void)rb;
    const void *wp = w;
    int64_t r = rows;
    cuda_matvec_multi(s, 1, &out, g_type, &wp, &r, cols, x, 1, 1);
}

/* lib with cuda_mvq's register kernel (mvq_kernel) in place of the staged one */
static void launch_libr(cudaStream_t s, float *out, const uint8_t *w, size_t rb, int rows, int cols,
                        const float *x) {
    cuda_mvq_set_staged(0);
    launch_lib(s, out, w, rb, rows, cols, x);
    cuda_mvq_set_staged(1);
}

struct version {
    const char *name;
    launch_fn fn;
};

template <int TYPE> static std::vector<version> versions() {
    if constexpr (cq_type<TYPE>::INT)
        if (TYPE == CQ_Q4_K || TYPE == CQ_Q6_K || TYPE == CQ_Q5_K || TYPE == CQ_Q8_0 ||
            TYPE == CQ_Q4_0)
            return {{"v2", launch_dev<TYPE, 2, 2>},
                    {"v10", launch_dev<TYPE, 4, 1, false, true>},
                    {"v11", launch_q8<TYPE, 4, 1>},
                    {"v11b", launch_q8<TYPE, 2, 2>},
                    {"v11c", launch_q8<TYPE, 4, 2>},
                    {"v11n", launch_q8<TYPE, 4, 1, false>},
                    {"libx", launch_libx},
                    {"libr", launch_libr},
                    {"lib", launch_lib}};
    return {{"v1", launch_dev<TYPE, 1, 1>},
            {"v2", launch_dev<TYPE, 2, 2>},
            {"v3", launch_dev<TYPE, 4, 2>},
            {"v4", launch_dev<TYPE, 2, 4>},
            {"v5", launch_persist<TYPE, 2, 2>},
            {"v6", launch_persist<TYPE, 2, 4>},
            {"v7", launch_persist<TYPE, 4, 2>},
            {"v8", launch_persist<TYPE, 1, 4>},
            {"v2nx", launch_dev<TYPE, 2, 2, true>},
            {"v9", launch_dev<TYPE, 2, 2, false, true>},
            {"v10", launch_dev<TYPE, 4, 1, false, true>},
            {"lib", launch_lib}};
}

static std::vector<version> versions_of(int type) {
    std::vector<version> v;
    cq_dispatch(type, [&]<int T>() { v = versions<T>(); });
    return v;
}

/* median time (us) of a launch, rotating over `copies` weight copies */
template <typename F> static double time_us(cudaStream_t s, int reps, F &&f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    f(0); /* warm-up */
    CK(cudaStreamSynchronize(s));
    std::vector<double> t;
    for (int k = 0; k < 7; k++) {
        CK(cudaEventRecord(a, s));
        for (int i = 0; i < reps; i++) f(i);
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(1000.0 * ms / reps);
    }
    CK(cudaGetLastError());
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[t.size() / 2];
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int ceilings_only = argc > 1 && !strcmp(argv[1], "--ceilings");
    /* --only S: just the rows whose "type/shape/version" contains S */
    const char *only = argc > 2 && !strcmp(argv[1], "--only") ? argv[2] : NULL;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize >> 20);
    cudaStream_t s;
    CK(cudaStreamCreate(&s));

    /* ceilings */
    size_t cb = (size_t)1 << 30;
    uint8_t *ca, *cbuf;
    unsigned *sink;
    CK(cudaMalloc(&ca, cb));
    CK(cudaMalloc(&cbuf, cb));
    CK(cudaMalloc(&sink, 4));
    CK(cudaMemset(ca, 1, cb));
    double t_copy =
        time_us(s, 10, [&](int) { cudaMemcpyAsync(cbuf, ca, cb, cudaMemcpyDeviceToDevice, s); });
    double copy_gbs = 2.0 * cb / t_copy / 1e3;
    double t_read = time_us(s, 10, [&](int) {
        read_kernel<<<prop.multiProcessorCount * 8, 512, 0, s>>>((const uint4 *)ca, cb / 16, sink);
    });
    double read_gbs = cb / t_read / 1e3;
    printf("ceilings: cudaMemcpy D2D %.0f GB/s (read+write), read-only kernel %.0f GB/s\n",
           copy_gbs, read_gbs);
    CK(cudaFree(ca));
    CK(cudaFree(cbuf));
    if (ceilings_only) return 0;
    CK(cudaMalloc(&g_xq, 16384));
    CK(cudaMalloc(&g_xd, 16384 / 32 * 4));
    CK(cudaMalloc(&g_xs, 16384 / 8 * 4));

    const int types[] = {QT_Q4_K, QT_Q6_K, QT_Q5_K, QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0,
                         QT_Q5_1, QT_Q2_K, QT_Q3_K, QT_F16,  QT_BF16, QT_F32};
    struct shape {
        int rows, cols;
        const char *what;
    };
    const shape shapes[] = {{2048, 2048, "1B attn_q"},   {8192, 2048, "1B ffn_up"},
                            {2048, 8192, "1B ffn_down"}, {128256, 2048, "1B output"},
                            {14336, 4096, "8B ffn_up"},  {4096, 14336, "8B ffn_down"}};
    int n_shapes = quick ? 2 : (int)(sizeof shapes / sizeof shapes[0]);
    int failures = 0;
    printf("\n%-5s %-13s %-6s %9s %9s %7s %7s  check\n", "type", "shape", "ver", "MB", "us", "GB/s",
           "%read");
    for (int type : types) {
        const quant_traits *qt = quant_get(type);
        g_type = type;
        std::vector<version> vs = versions_of(type);
        for (int si = 0; si < n_shapes; si++) {
            const shape &sh = shapes[si];
            size_t rs = quant_row_size(type, sh.cols), bytes = rs * sh.rows;
            if (bytes > ((size_t)600 << 20)) continue; /* F32 of the biggest shapes */
            if (only) {
                bool any = false;
                for (auto &v : vs) {
                    char key[128];
                    snprintf(key, sizeof key, "%s/%s/%s", qt->name, sh.what, v.name);
                    any |= strstr(key, only) != NULL;
                }
                if (!any) continue;
            }
            std::vector<uint8_t> hw;
            make_weights(type, sh.rows, sh.cols, hw);
            int copies = (int)std::min<size_t>(32, (((size_t)256 << 20) + bytes - 1) / bytes);
            uint8_t *dw;
            CK(cudaMalloc(&dw, bytes * copies));
            for (int c = 0; c < copies; c++)
                CK(cudaMemcpy(dw + (size_t)c * bytes, hw.data(), bytes, cudaMemcpyHostToDevice));
            std::vector<float> hx(sh.cols);
            for (auto &v : hx) v = frand() * 2 - 1;
            float *dx, *dy;
            CK(cudaMalloc(&dx, sh.cols * 4));
            CK(cudaMalloc(&dy, sh.rows * 4));
            CK(cudaMemcpy(dx, hx.data(), sh.cols * 4, cudaMemcpyHostToDevice));
            /* reference on a sample of rows */
            std::vector<int> rows_chk;
            for (int k = 0; k < 48; k++) rows_chk.push_back((int)(next64() % sh.rows));
            rows_chk.push_back(sh.rows - 1);
            std::vector<double> ref(rows_chk.size()), S(rows_chk.size()), A(rows_chk.size());
            std::vector<float> deq(sh.cols);
            for (size_t k = 0; k < rows_chk.size(); k++) {
                const uint8_t *row = hw.data() + (size_t)rows_chk[k] * rs;
                ref[k] = qt->dot(row, hx.data(), sh.cols);
                qt->dequant(row, deq.data(), sh.cols);
                double s2 = 1e-30, a2 = 0;
                for (int c = 0; c < sh.cols; c++) s2 += fabs((double)deq[c] * hx[c]);
                /* v11's activation rounding: amax of x's block of 32 / 254 per element */
                for (int c0 = 0; c0 < sh.cols; c0 += 32) {
                    double am = 0;
                    for (int c = c0; c < c0 + 32 && c < sh.cols; c++) am = fmax(am, fabs(hx[c]));
                    for (int c = c0; c < c0 + 32 && c < sh.cols; c++)
                        a2 += fabs((double)deq[c]) * am / 254;
                }
                S[k] = s2;
                A[k] = a2 / s2;
            }
            for (auto &v : vs) {
                if (only) {
                    char key[128];
                    snprintf(key, sizeof key, "%s/%s/%s", qt->name, sh.what, v.name);
                    if (!strstr(key, only)) continue;
                }
                std::vector<float> y(sh.rows, NAN);
                CK(cudaMemcpy(dy, y.data(), sh.rows * 4, cudaMemcpyHostToDevice));
                v.fn(s, dy, dw, rs, sh.rows, sh.cols, dx);
                CK(cudaStreamSynchronize(s));
                CK(cudaGetLastError());
                CK(cudaMemcpy(y.data(), dy, sh.rows * 4, cudaMemcpyDeviceToHost));
                /* error / S, over the allowed: 2e-5, plus the activation
                 * rounding for the 8-bit-x versions (v11*) */
                bool q8 = !strncmp(v.name, "v11", 3) ||
                          (!strncmp(v.name, "lib", 3) && strcmp(v.name, "libx") &&
                           cuda_mvq_supported(type, sh.cols));
                double worst = 0;
                for (size_t k = 0; k < rows_chk.size(); k++) {
                    double e = fabs(y[rows_chk[k]] - ref[k]) / S[k] / (2e-5 + (q8 ? A[k] : 0));
                    if (!(e <= worst)) worst = e;
                }
                bool diag = !strcmp(v.name, "v2nx"), ok = worst < 1;
                if (!diag) failures += !ok;
                int reps =
                    (int)std::max<size_t>(5, std::min<size_t>(200, ((size_t)2 << 30) / bytes));
                double us = time_us(s, reps, [&](int i) {
                    v.fn(s, dy, dw + (size_t)(i % copies) * bytes, rs, sh.rows, sh.cols, dx);
                });
                double gbs = bytes / us / 1e3;
                printf("%-5s %-13s %-6s %9.2f %9.2f %7.0f %6.0f%%  %s (%.1e)\n", qt->name, sh.what,
                       v.name, bytes / 1e6, us, gbs, 100 * gbs / read_gbs,
                       diag ? "(diagnostic)"
                       : ok ? "ok"
                            : "FAIL",
                       worst);
            }
            CK(cudaFree(dw));
            CK(cudaFree(dx));
            CK(cudaFree(dy));
        }
    }
    printf("\nmatvec: %s (%d failures)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
