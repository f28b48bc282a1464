/* cuda_matvec.cu: weight kernels of the CUDA backend: the decode mat-vec
 * (n <= 8 tokens) for every weight type, dequantizing in registers, and the
 * row dequantizer used by embed and by the cuBLAS path for larger batches.
 * One token of Q4_K or Q6_K goes to cuda_mvq.cu's integer kernel unless the caller
 * asks for exact (float) results.
 *
 * Mat-vec: a CTA takes a group of R rows (R = 4 for one token, 2 for two,
 * so the x values loaded for a part serve all R rows), its 1..4 warps
 * stride over the parts of the rows (cuda_quant.cuh: 32 weights a part),
 * the x of a part's four runs loaded before its arithmetic; partial sums
 * meet through shuffles and shared memory. The first two parts are loaded before the kernel waits
 * for its predecessor (programmatic dependent launch: weights are never written). One launch may
 * serve up to CUDA_MV_MAX_JOBS weights of one type and width reading the same x (q/k/v, gate/up),
 * and in "glu" mode a CTA computes the same rows of two weights (gate, up) and writes act(gate) *
 * up as well.
 *
 * Three to eight tokens: 4 rows a CTA, so that each x value loaded serves
 * them all: the kernel is bound by loading x (8 tokens x 32 floats for each
 * part of 32 weights), not by the weights. On an H200 (1B Q4_K_M, decode
 * step of 8 sequences) 1 row a CTA took 6.1 ms, 2 rows 3.7 ms, 4 rows 2.7 ms.
 *
 * Arithmetic: codes become exact floats (one PRMT and one FADD each, no
 * conversion instruction), and each run of 8 adds sc * sum(q * x) - mn *
 * sum(x) in float, so results match the CPU's float reference to rounding.
 * (A variant that skips the FADD by reading a code byte as the float
 * 0.5 + u / 256 and correcting with sum(x) measured no faster on an H200:
 * dev/cuda/matvec.cu; the kernels are bound by the scattered 16-byte loads
 * of x and of 2-byte aligned blocks, not by arithmetic.)
 */
#include "cuda/cuda_impl.h"
#include "cuda/cuda_quant.cuh"

#include <stdlib.h>

#define MV_MAX_WARPS 4

template <int NT>
static __device__ __forceinline__ void load_x8(const float *x, int cols, int n, int off,
                                               float xv[NT][8]) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (NT == 1 || t < n) {
            const float4 *p = (const float4 *)(x + (size_t)t * cols + off);
            float4 a = __ldg(p), b = __ldg(p + 1);
            xv[t][0] = a.x, xv[t][1] = a.y, xv[t][2] = a.z, xv[t][3] = a.w;
            xv[t][4] = b.x, xv[t][5] = b.y, xv[t][6] = b.z, xv[t][7] = b.w;
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) xv[t][i] = 0.0f;
        }
    }
}

template <int TYPE, int NT, int R>
static __device__ __forceinline__ void mv_part(const typename cq_type<TYPE>::Raw (&raw)[R], int b,
                                               int p, const float *__restrict__ x, int cols, int n,
                                               float (&acc)[R][NT]) {
    using T = cq_type<TYPE>;
    /* x of all four runs first (up to two tokens): one round of load
     * latency per part instead of one per run */
    constexpr int XH = NT <= 2 ? 4 : 1;
    float xh[XH][NT][8];
    if (XH == 4)
#pragma unroll
        for (int g = 0; g < XH; g++) load_x8<NT>(x, cols, n, b * T::QK + T::off(p, g), xh[g]);
#pragma unroll
    for (int g = 0; g < 4; g++) {
        float(&xv)[NT][8] = xh[XH == 4 ? g : 0];
        if (XH == 1) load_x8<NT>(x, cols, n, b * T::QK + T::off(p, g), xv);
        float sx[NT];
        if (T::HAS_MIN) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float s = 0.0f;
#pragma unroll
                for (int i = 0; i < 8; i++) s += xv[t][i];
                sx[t] = s;
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            float sc, mn;
            {
                float q[8];
                cq_run<TYPE>(raw[r], p, g, q, sc, mn);
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    float s = 0.0f;
#pragma unroll
                    for (int i = 0; i < 8; i++) s = fmaf(q[i], xv[t][i], s);
                    acc[r][t] = fmaf(sc, s, acc[r][t]);
                    if (T::HAS_MIN) acc[r][t] = fmaf(-mn, sx[t], acc[r][t]);
                }
            }
        }
    }
}

struct mv_jobs {
    const uint8_t *w[CUDA_MV_MAX_JOBS];
    float *out[CUDA_MV_MAX_JOBS];
    int rows[CUDA_MV_MAX_JOBS];
    int groups_end[CUDA_MV_MAX_JOBS]; /* cumulative row groups (CTAs) */
    int n_jobs;
    int glu; /* 0, or 1 + bk_act: rows of w[0] (gate) and w[1] (up) together */
};

static __device__ __forceinline__ float mv_act(float g, int act) {
    if (act == 0) return g / (1.0f + expf(-g));
    const float c = 0.7978845608028654f;
    return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
}

/* RW = rows a CTA holds: R, or 2R in glu mode (R of gate, then R of up);
 * U = parts in flight per thread (1 or 2) */
template <int TYPE, int NT, int R, int RW, int U>
__global__ void __launch_bounds__(32 * MV_MAX_WARPS)
    mv_kernel(const mv_jobs jobs, size_t row_bytes, int cols, const float *__restrict__ x, int n) {
    using T = cq_type<TYPE>;
    const int items = cols / T::QK * T::PARTS, stride = blockDim.x;
    int j = 0;
#pragma unroll
    for (int k = 1; k < CUDA_MV_MAX_JOBS; k++)
        if (k < jobs.n_jobs && (int)blockIdx.x >= jobs.groups_end[k - 1]) j = k;
    const int rows = jobs.rows[j];
    const int r0 = ((int)blockIdx.x - (j ? jobs.groups_end[j - 1] : 0)) * R;
    const uint8_t *wr[RW];
#pragma unroll
    for (int r = 0; r < RW; r++) {
        const uint8_t *base = RW > R && r >= R ? jobs.w[1] : jobs.w[j];
        wr[r] = base + (size_t)min(r0 + r % R, rows - 1) * row_bytes;
    }
    float acc[RW][NT];
#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

    /* the first parts: loaded before waiting for the previous kernel */
    typename T::Raw raw0[RW], raw1[RW];
    int it = threadIdx.x;
    {
        const int i1 = it + stride;
#pragma unroll
        for (int r = 0; r < RW; r++) {
            if (it < items)
                raw0[r] = T::load(wr[r] + (size_t)(it / T::PARTS) * T::BYTES, it % T::PARTS);
            if (U == 2 && i1 < items)
                raw1[r] = T::load(wr[r] + (size_t)(i1 / T::PARTS) * T::BYTES, i1 % T::PARTS);
        }
    }
    cuda_pdl_wait();
    while (it < items) {
        const int i1 = it + stride;
        mv_part<TYPE, NT, RW>(raw0, it / T::PARTS, it % T::PARTS, x, cols, n, acc);
        if (U == 2 && i1 < items)
            mv_part<TYPE, NT, RW>(raw1, i1 / T::PARTS, i1 % T::PARTS, x, cols, n, acc);
        it += U * stride;
        const int i2 = it + stride;
#pragma unroll
        for (int r = 0; r < RW; r++) {
            if (it < items)
                raw0[r] = T::load(wr[r] + (size_t)(it / T::PARTS) * T::BYTES, it % T::PARTS);
            if (U == 2 && i2 < items)
                raw1[r] = T::load(wr[r] + (size_t)(i2 / T::PARTS) * T::BYTES, i2 % T::PARTS);
        }
    }

    /* reduce over the CTA */
    __shared__ float red[MV_MAX_WARPS][RW * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) red[warp][r * NT + t] = v;
        }
    __syncthreads();
    if (threadIdx.x < R * NT) {
        const int r = threadIdx.x / NT, t = threadIdx.x % NT;
        if (t < n && r0 + r < rows) {
            float v = 0.0f;
            for (int k = 0; k < nw; k++) v += red[k][r * NT + t];
            const size_t o = (size_t)t * rows + r0 + r;
            if (RW > R) {
                float u = 0.0f;
                for (int k = 0; k < nw; k++) u += red[k][(R + r) * NT + t];
                jobs.out[1][o] = u;
                jobs.out[0][o] = mv_act(v, jobs.glu - 1) * u;
            } else {
                jobs.out[j][o] = v;
            }
        }
    }
}

/* Plain fallback for the float types when cols % 32 != 0: a warp per row. */
static __device__ __forceinline__ float elem_float(const uint8_t *row, int type, int64_t c) {
    if (type == CQ_F32) return __ldg((const float *)row + c);
    uint32_t h = __ldg((const unsigned short *)row + c);
    return type == CQ_F16 ? cq_h2f(h) : __uint_as_float(h << 16);
}

__global__ void mv_float_kernel(float *out, const uint8_t *w, size_t row_bytes, int type, int rows,
                                int cols, const float *x, int n) {
    cuda_pdl_wait();
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= rows) return;
    const uint8_t *wr = w + (size_t)row * row_bytes;
    for (int t = 0; t < n; t++) {
        float s = 0.0f;
        for (int c = lane; c < cols; c += 32)
            s = fmaf(elem_float(wr, type, c), x[(size_t)t * cols + c], s);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) out[(size_t)t * rows + row] = s;
    }
}

static size_t row_size(int type, int64_t cols) {
    switch (type) {
    case CQ_F32:
        return (size_t)cols * 4;
    case CQ_F16:
    case CQ_BF16:
        return (size_t)cols * 2;
    default:
        break;
    }
    size_t bytes = 0;
    cq_dispatch(type,
                [&]<int T>() { bytes = (size_t)(cols / cq_type<T>::QK) * cq_type<T>::BYTES; });
    return bytes;
}

int cuda_type_supported(int type) {
    switch (type) {
    case CQ_F32:
    case CQ_F16:
    case CQ_BF16:
    case CQ_Q4_0:
    case CQ_Q4_1:
    case CQ_Q5_0:
    case CQ_Q5_1:
    case CQ_Q8_0:
    case CQ_Q2_K:
    case CQ_Q3_K:
    case CQ_Q4_K:
    case CQ_Q5_K:
    case CQ_Q6_K:
        return 1;
    default:
        return 0;
    }
}

static int is_float_type(int type) {
    return type == CQ_F32 || type == CQ_F16 || type == CQ_BF16;
}

template <int T, int NT, int R, int RW, int U>
static void mv_launch(cudaStream_t s, mv_jobs &jobs, const int64_t *rows, size_t rb, int cols,
                      const float *x, int n) {
    int g = 0;
    for (int k = 0; k < jobs.n_jobs; k++) {
        jobs.rows[k] = (int)rows[k];
        g += (int)((rows[k] + R - 1) / R);
        jobs.groups_end[k] = g;
    }
    int items = cols / cq_type<T>::QK * cq_type<T>::PARTS, warps = items / 64;
    warps = warps < 1 ? 1 : (warps > MV_MAX_WARPS ? MV_MAX_WARPS : warps);
    cuda_launch(mv_kernel<T, NT, R, RW, U>, dim3(g), dim3(32 * warps), 0, s, (const mv_jobs)jobs,
                rb, cols, x, n);
}

/* Rows a CTA for 3..4 tokens (which = 0) and 5..8 tokens (which = 1): 1, 2
 * or 4; defaults 4 and 4, BEAST_CUDA_MV_R4 and BEAST_CUDA_MV_R8 override
 * (read once; the only global state here, a measuring knob). */
static int mv_rows(int which) {
    static int r[2] = {0, 0};
    if (!r[which]) {
        const char *v = getenv(which ? "BEAST_CUDA_MV_R8" : "BEAST_CUDA_MV_R4");
        int k = v && *v ? atoi(v) : 4;
        r[which] = k == 1 || k == 2 ? k : 4;
    }
    return r[which];
}

static int mv_run(cudaStream_t s, int n_jobs, float *const *out, int type, const void *const *w,
                  const int64_t *rows, int64_t cols, const float *x, int n, int glu, int exact) {
    if (n < 1 || n > CUDA_MV_MAX_NT || n_jobs < 1 || n_jobs > CUDA_MV_MAX_JOBS || cols < 1 ||
        cols > INT32_MAX / 2) {
        err_set("cuda matvec: bad shape (%d weights, %lld columns, n %d)", n_jobs, (long long)cols,
                n);
        return -1;
    }
    for (int k = 0; k < n_jobs; k++)
        if (rows[k] < 1 || rows[k] > INT32_MAX / 2) {
            err_set("cuda matvec: bad row count %lld", (long long)rows[k]);
            return -1;
        }
    if (!cuda_type_supported(type)) {
        err_set("cuda matvec: weight type %d is not supported", type);
        return -1;
    }
    if (n == 1 && !exact && cuda_mvq_supported(type, cols) && (uintptr_t)x % 16 == 0 &&
        (!glu || (n_jobs == 2 && rows[0] == rows[1])))
        return cuda_mvq(s, n_jobs, out, type, w, rows, cols, x, glu);
    size_t rb = row_size(type, cols);
    if (glu && (n_jobs != 2 || rows[0] != rows[1] || n > 4 || cols % 32 || (uintptr_t)x % 16)) {
        err_set("cuda matvec: bad gate/up pair");
        return -1;
    }
    if (is_float_type(type) && (cols % 32 || (uintptr_t)x % 16)) {
        for (int k = 0; k < n_jobs; k++)
            cuda_launch(mv_float_kernel, dim3((unsigned)((rows[k] + 3) / 4)), dim3(128), 0, s,
                        out[k], (const uint8_t *)w[k], rb, type, (int)rows[k], (int)cols, x, n);
        return 0;
    }
    if ((uintptr_t)x % 16) {
        err_set("cuda matvec: x is not 16-byte aligned");
        return -1;
    }
    mv_jobs jobs;
    memset(&jobs, 0, sizeof jobs);
    jobs.n_jobs = n_jobs;
    for (int k = 0; k < n_jobs; k++) {
        jobs.w[k] = (const uint8_t *)w[k];
        jobs.out[k] = out[k];
    }
    jobs.glu = glu;
    if (glu) jobs.n_jobs = 1; /* one job of row groups; w[1] and out[1] are the up rows */
    cq_dispatch(type, [&]<int T>() {
        /* one token: 4 rows a CTA, one part in flight (dev/cuda/matvec.cu v10,
         * the fastest shape measured); more tokens: fewer rows */
        if (glu) {
            if (n == 1)
                mv_launch<T, 1, 2, 4, 1>(s, jobs, rows, rb, (int)cols, x, n);
            else
                mv_launch<T, 4, 1, 2, 2>(s, jobs, rows, rb, (int)cols, x, n);
        } else if (n == 1) {
            mv_launch<T, 1, 4, 4, 1>(s, jobs, rows, rb, (int)cols, x, n);
        } else if (n == 2) {
            mv_launch<T, 2, 2, 2, 2>(s, jobs, rows, rb, (int)cols, x, n);
        } else if (n <= 4) {
            if (mv_rows(0) == 4)
                mv_launch<T, 4, 4, 4, 1>(s, jobs, rows, rb, (int)cols, x, n);
            else if (mv_rows(0) == 2)
                mv_launch<T, 4, 2, 2, 1>(s, jobs, rows, rb, (int)cols, x, n);
            else
                mv_launch<T, 4, 1, 1, 2>(s, jobs, rows, rb, (int)cols, x, n);
        } else if (mv_rows(1) == 4) {
            mv_launch<T, 8, 4, 4, 1>(s, jobs, rows, rb, (int)cols, x, n);
        } else if (mv_rows(1) == 2) {
            mv_launch<T, 8, 2, 2, 1>(s, jobs, rows, rb, (int)cols, x, n);
        } else {
            mv_launch<T, 8, 1, 1, 2>(s, jobs, rows, rb, (int)cols, x, n);
        }
    });
    return 0;
}

int cuda_matvec_multi(cudaStream_t s, int n_jobs, float *const *out, int type, const void *const *w,
                      const int64_t *rows, int64_t cols, const float *x, int n, int exact) {
    return mv_run(s, n_jobs, out, type, w, rows, cols, x, n, 0, exact);
}

int cuda_matvec_glu(cudaStream_t s, float *gate_out, float *up_out, int type, const void *w_gate,
                    const void *w_up, int64_t rows, int64_t cols, const float *x, int n, int act,
                    int exact) {
    float *out[2] = {gate_out, up_out};
    const void *w[2] = {w_gate, w_up};
    int64_t r[2] = {rows, rows};
    return mv_run(s, 2, out, type, w, r, cols, x, n, 1 + act, exact);
}

int cuda_matvec(cudaStream_t s, float *out, int type, const void *w, int64_t rows, int64_t cols,
                const float *x, int n) {
    return cuda_matvec_multi(s, 1, &out, type, &w, &rows, cols, x, n, 0);
}

/* ---- dequantize rows: a thread per part ---- */
template <int TYPE>
__global__ void deq_kernel(float *__restrict__ out, const uint8_t *__restrict__ w, size_t row_bytes,
                           int cols, const int32_t *__restrict__ ids, int64_t row0, int n,
                           float scale) {
    using T = cq_type<TYPE>;
    cuda_pdl_wait();
    const int per_row = cols / T::QK * T::PARTS;
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * per_row) return;
    int i = (int)(idx / per_row), it = (int)(idx % per_row);
    int64_t src = ids ? ids[i] : row0 + i;
    int b = it / T::PARTS, p = it % T::PARTS;
    typename T::Raw raw = T::load(w + (size_t)src * row_bytes + (size_t)b * T::BYTES, p);
    float *o = out + (size_t)i * cols + (size_t)b * T::QK;
#pragma unroll
    for (int g = 0; g < 4; g++) {
        float q[8], sc, mn;
        cq_run<TYPE>(raw, p, g, q, sc, mn);
        float v[8];
        /* the reference's order of operations (no fused multiply-add), so
         * embeddings are bit-identical to the CPU backend's */
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __fmul_rn(__fsub_rn(__fmul_rn(sc, q[k]), mn), scale);
        float4 *d = (float4 *)(o + T::off(p, g));
        d[0] = make_float4(v[0], v[1], v[2], v[3]);
        d[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
}

/* How rows of `type` dequantize into out: 0 element by element (float types
 * off the 32-element grid), 1 by parts (cq_type), -1 unsupported (err_set). */
static int deq_plan(int type, int64_t cols, const void *out) {
    if (!cuda_type_supported(type) || cols < 1 || cols > INT32_MAX / 2) {
        err_set("cuda dequant: type %d with %lld columns is not supported", type, (long long)cols);
        return -1;
    }
    if (is_float_type(type) && (cols % 32 || (uintptr_t)out % 16)) return 0;
    if ((uintptr_t)out % 16) {
        err_set("cuda dequant: output is not 16-byte aligned");
        return -1;
    }
    return 1;
}

/* deq_kernel into half precision (the f16 GEMM path's weights): values
 * beyond the f16 range saturate at +-65504 instead of becoming infinite. */
template <int TYPE>
__global__ void deq_h_kernel(__half *__restrict__ out, const uint8_t *__restrict__ w,
                             size_t row_bytes, int cols, int64_t row0, int64_t n) {
    using T = cq_type<TYPE>;
    cuda_pdl_wait();
    const int per_row = cols / T::QK * T::PARTS;
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * per_row) return;
    int64_t i = idx / per_row;
    int it = (int)(idx % per_row);
    int b = it / T::PARTS, p = it % T::PARTS;
    typename T::Raw raw = T::load(w + (size_t)(row0 + i) * row_bytes + (size_t)b * T::BYTES, p);
    __half *o = out + (size_t)i * cols + (size_t)b * T::QK;
#pragma unroll
    for (int g = 0; g < 4; g++) {
        float q[8], sc, mn;
        cq_run<TYPE>(raw, p, g, q, sc, mn);
        __align__(16) __half v[8];
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __float2half_rn(cuda_sat16(sc * q[k] - mn));
        *(uint4 *)(o + T::off(p, g)) = *(const uint4 *)v;
    }
}

__global__ void deq_h_float_kernel(__half *out, const uint8_t *w, size_t row_bytes, int type,
                                   int cols, int64_t row0, int64_t n) {
    cuda_pdl_wait();
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * cols) return;
    int64_t i = idx / cols;
    int c = (int)(idx % cols);
    float v = elem_float(w + (size_t)(row0 + i) * row_bytes, type, c);
    out[idx] = __float2half_rn(cuda_sat16(v));
}

int cuda_dequant_rows_f16(cudaStream_t s, __half *out, int type, const void *w, int64_t cols,
                          int64_t row0, int64_t n) {
    if (n < 1) return 0;
    const int plan = deq_plan(type, cols, out);
    if (plan < 0) return -1;
    size_t rb = row_size(type, cols);
    const uint8_t *W = (const uint8_t *)w;
    if (plan == 0) {
        int64_t total = n * cols;
        cuda_launch(deq_h_float_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256), 0, s, out,
                    W, rb, type, (int)cols, row0, n);
        return 0;
    }
    cq_dispatch(type, [&]<int T>() {
        int64_t total = n * (cols / cq_type<T>::QK * cq_type<T>::PARTS);
        cuda_launch(deq_h_kernel<T>, dim3((unsigned)((total + 127) / 128)), dim3(128), 0, s, out, W,
                    rb, (int)cols, row0, n);
    });
    return 0;
}

__global__ void deq_float_kernel(float *out, const uint8_t *w, size_t row_bytes, int type, int cols,
                                 const int32_t *ids, int64_t row0, int n, float scale) {
    cuda_pdl_wait();
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * cols) return;
    int i = (int)(idx / cols), c = (int)(idx % cols);
    int64_t src = ids ? ids[i] : row0 + i;
    out[idx] = __fmul_rn(elem_float(w + (size_t)src * row_bytes, type, c), scale);
}

int cuda_dequant_rows(cudaStream_t s, float *out, int type, const void *w, int64_t cols,
                      const int32_t *ids, int64_t row0, int n, float scale) {
    if (n < 1) return 0;
    const int plan = deq_plan(type, cols, out);
    if (plan < 0) return -1;
    size_t rb = row_size(type, cols);
    const uint8_t *W = (const uint8_t *)w;
    if (plan == 0) {
        int64_t total = (int64_t)n * cols;
        cuda_launch(deq_float_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256), 0, s, out,
                    W, rb, type, (int)cols, ids, row0, n, scale);
        return 0;
    }
    cq_dispatch(type, [&]<int T>() {
        int64_t total = (int64_t)n * (cols / cq_type<T>::QK * cq_type<T>::PARTS);
        cuda_launch(deq_kernel<T>, dim3((unsigned)((total + 127) / 128)), dim3(128), 0, s, out, W,
                    rb, (int)cols, ids, row0, n, scale);
    });
    return 0;
}
