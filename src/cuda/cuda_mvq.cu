/* cuda_mvq.cu: the one-token mat-vec for Q4_K and Q6_K weights with
 * integer dot products on 8-bit activations (dp4a), the decode path of
 * Q4_K_M models.
 *
 * Why: the float mat-vec (cuda_matvec.cu) spends 4-6 instructions a weight
 * (code to float, scale, FMA) and is bound by instruction issue at 30-40% of
 * the memory bandwidth (dev/cuda/matvec.cu). Here one dp4a multiplies four
 * 4-bit codes by four int8 activations and sums them, and each sub-block's
 * scale and min are decoded once per 32 weights: about one instruction a
 * weight.
 *
 * Shape: a persistent grid of CTAs of 8 warps. Each CTA first quantizes x
 * into shared memory (int8 in blocks of 32 with scale amax / 127, and the
 * exact float sum of each block for the min term), then its warps take
 * groups of 2 rows (2 rows of one weight, or in glu mode the same row of
 * gate and up) until all rows are done. A lane takes one quarter of a
 * 256-weight block per row: the 16-byte header and the 32 code bytes of two
 * sub-blocks (64 weights), three 16-byte loads; the warp's lanes cover 8
 * consecutive blocks (1152 contiguous bytes) per row and step. A row's sum
 * is reduced by shuffles within its warp, so every row is computed the same
 * way whatever the job mix (fusions stay bit-identical to single launches).
 * Each warp keeps two steps in flight (the next step's weights are loaded
 * before the current one is multiplied, across groups too), and the first
 * step's weights are loaded before the kernel waits for its predecessor
 * (programmatic dependent launch).
 *
 * Q4_K: w = d * sc_j * u - dmin * m_j (u the 4-bit code, j the sub-block
 * of 32), so a sub-block contributes
 *   d * sc_j * xd_j * sum(u * xq) - dmin * m_j * sum(x)
 * with x ~ xd_j * xq. Q6_K: w = d * sc_j * (u - 32) over sub-blocks of 16;
 * a lane takes one half (128 weights) and one of the two 16-element columns
 * of it: 16 bytes each of the low-bit words ql (two spans) and the high
 * bits qh, its 4 int8 scales and d (the 210-byte blocks are only 2-byte
 * aligned: aligned 32-bit loads and funnel shifts); u - 32 is formed per
 * byte (vsub4) and multiplied signed. The activation rounding adds at most
 * sum_c |w_c| * amax32(x) / 254 to a row's error (as on the SIMD CPU
 * backend, and as llama.cpp's GPU mat-vec does).
 *
 * Two kernels share that lane layout and arithmetic: mvq_kernel loads the
 * weights straight into registers; mvq_staged_kernel copies them into shared
 * memory with cp.async first (below), which streams larger matrices faster. */
#include "cuda/cuda_mvq.cuh"

#include <stdlib.h>
#include <string.h>

#define MVQ_WARPS 8

struct mvq_jobs {
    const uint8_t *w[CUDA_MV_MAX_JOBS];
    float *out[CUDA_MV_MAX_JOBS];
    int rows[CUDA_MV_MAX_JOBS];
    int groups_end[CUDA_MV_MAX_JOBS]; /* cumulative row groups */
    int n_jobs;
    int glu; /* 0, or 1 + bk_act: group k = row k of w[0] (gate) and w[1] (up) */
};

/* the rows of group g: job j, first row r0; row pointers of the 2 rows */
static __device__ __forceinline__ void mvq_group(const mvq_jobs &jobs, int g, size_t row_bytes,
                                                 int &j, int &r0, const uint8_t *(&wr)[MVQ_R]) {
    j = 0;
#pragma unroll
    for (int k = 1; k < CUDA_MV_MAX_JOBS; k++)
        if (k < jobs.n_jobs && g >= jobs.groups_end[k - 1]) j = k;
    if (jobs.glu) {
        r0 = g;
        wr[0] = jobs.w[0] + (size_t)g * row_bytes;
        wr[1] = jobs.w[1] + (size_t)g * row_bytes;
    } else {
        r0 = (g - (j ? jobs.groups_end[j - 1] : 0)) * MVQ_R;
#pragma unroll
        for (int r = 0; r < MVQ_R; r++)
            wr[r] = jobs.w[j] + (size_t)min(r0 + r, jobs.rows[j] - 1) * row_bytes;
    }
}

/* x -> int8 blocks of 32 in shared memory (scale amax / 127 in xd, the
 * exact float sum in xs), by the whole CTA: 8 threads a block, a float4
 * each, up to four float4 loads of a thread in flight */
static __device__ __forceinline__ void mvq_quant_x(const float *__restrict__ x, int cols,
                                                   int8_t *xq, float *xd, float *xs) {
    const int n4 = cols / 4;
    for (int base = 0; base < n4; base += 4 * blockDim.x) {
        float4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i4 = base + u * blockDim.x + threadIdx.x;
            if (i4 < n4) v[u] = __ldg((const float4 *)x + i4);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i4 = base + u * blockDim.x + threadIdx.x;
            if (base + u * (int)blockDim.x >= n4) break; /* whole warps: n4 % 64 == 0 */
            mvq_quant4(v[u], i4, n4, xq, xd, xs);
        }
    }
}

/* a group's sums, reduced over the warp, written by lane 0 */
static __device__ __forceinline__ void mvq_write(const mvq_jobs &jobs, int j, int r0,
                                                 float (&acc)[MVQ_R], int lane) {
    mvq_warp_sum(acc);
    if (lane == 0) mvq_store(jobs.out, jobs.rows, jobs.glu, j, r0, acc, NULL);
#pragma unroll
    for (int r = 0; r < MVQ_R; r++) acc[r] = 0.0f;
}

template <int TYPE>
__global__ void __launch_bounds__(32 * MVQ_WARPS, 2)
    mvq_kernel(const mvq_jobs jobs, size_t row_bytes, int cols, const float *__restrict__ x,
               int n_groups) {
    extern __shared__ int4 mvq_sm[];
    int8_t *xq = (int8_t *)mvq_sm;    /* [cols] */
    float *xd = (float *)(xq + cols); /* [cols / 32] scales */
    float *xs = xd + cols / 32;       /* [cols / 32] float sums */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int items = cols / 256 * 4, gstride = gridDim.x * MVQ_WARPS;

    /* A warp walks its (group, step) pairs in order, the weights of the
     * next pair loaded before the current one is multiplied (two steps in
     * flight); the first pair's, before the wait for the previous kernel. */
    const int iters = (items + 31) / 32;
    int g = blockIdx.x * MVQ_WARPS + warp, k = 0, j = 0, r0 = 0;
    const uint8_t *wr[MVQ_R];
    mvq_raw<TYPE> cur[MVQ_R], nxt[MVQ_R];
    if (g < n_groups) {
        mvq_group(jobs, g, row_bytes, j, r0, wr);
        if (lane < items)
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) cur[r].load(wr[r], lane);
    }
    cuda_pdl_wait();

    mvq_quant_x(x, cols, xq, xd, xs);
    __syncthreads();

    float acc[MVQ_R] = {};
    while (g < n_groups) {
        /* the next pair: (g, k + 1), or the first step of the next group */
        int g2 = g, k2 = k + 1, j2 = j, r02 = r0;
        const uint8_t *wr2[MVQ_R];
#pragma unroll
        for (int r = 0; r < MVQ_R; r++) wr2[r] = wr[r];
        if (k2 == iters) {
            k2 = 0;
            g2 = g + gstride;
            if (g2 < n_groups) mvq_group(jobs, g2, row_bytes, j2, r02, wr2);
        }
        if (g2 < n_groups && lane + 32 * k2 < items)
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) nxt[r].load(wr2[r], lane + 32 * k2);
        if (lane + 32 * k < items)
#pragma unroll
            for (int r = 0; r < MVQ_R; r++)
                acc[r] += mvq_dot<TYPE>(cur[r], lane + 32 * k, xq, xd, xs);
        if (k == iters - 1) mvq_write(jobs, j, r0, acc, lane); /* the group's last step */
#pragma unroll
        for (int r = 0; r < MVQ_R; r++) {
            cur[r] = nxt[r];
            wr[r] = wr2[r];
        }
        g = g2, k = k2, j = j2, r0 = r02;
    }
}

/* ---- the staged kernel: weights copied into shared memory by cp.async ----
 * Why: mvq_kernel's lanes load their quarter blocks straight into registers:
 * three 16-byte loads per lane and row that touch 30-40 cache lines per warp
 * instruction set (the L1 at 74% busy for 47% of the DRAM bandwidth, Nsight
 * Compute on an H100, 8B ffn_up), and registers for two steps in flight cap
 * the CTAs per multiprocessor at two. Here each warp copies the bytes of its
 * next steps (the same 8 blocks of its 2 rows) with cp.async, contiguous
 * 16-byte pieces per lane (a warp instruction covers 512 contiguous bytes),
 * into its own ring of S slots in shared memory, S - 1 steps ahead, and
 * multiplies the current slot with mvq_kernel's lane layout and arithmetic
 * (so results are bit-identical to it). The first S - 1 steps are copied
 * before the wait for the previous kernel. Measured (dev/cuda/matvec, H100,
 * against mvq_kernel): Q4_K 8B ffn_up 15.3 against 17.0 us (70% against 63%
 * of the read ceiling), Q6_K 8B ffn_down 26.6 against 30.5 us, Q6_K 1B
 * output 84 against 96 us; a decode step of the 8B shape 3.25 against 3.39
 * ms. */

template <int TYPE> struct mvq_stage {
    static constexpr int ROW = 8 * mvq_raw<TYPE>::BYTES; /* a row's 8 blocks */
    static constexpr int SLOT = MVQ_R * ROW;
    static constexpr int S = TYPE == CQ_Q4_K ? 4 : 3; /* slots a warp */
    static constexpr size_t RING = (size_t)MVQ_WARPS * S * SLOT;
};

template <int TYPE>
__global__ void __launch_bounds__(32 * MVQ_WARPS, 2)
    mvq_staged_kernel(const mvq_jobs jobs, size_t row_bytes, int cols, const float *x,
                      int n_groups) {
    using ST = mvq_stage<TYPE>;
    constexpr int BYTES = mvq_raw<TYPE>::BYTES, S = ST::S;
    extern __shared__ int4 mvq_sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint8_t *ring = (uint8_t *)mvq_sm + (size_t)warp * S * ST::SLOT;
    int8_t *xq = (int8_t *)mvq_sm + ST::RING; /* [cols] */
    float *xd = (float *)(xq + cols);         /* [cols / 32] scales */
    float *xs = xd + cols / 32;               /* [cols / 32] float sums */
    const int nb = cols / 256, items = nb * 4, iters = (items + 31) / 32;
    const int gstride = gridDim.x * MVQ_WARPS;

    /* copy step (g, k) (blocks 8k .. 8k + 7 of the group's rows) into a slot */
    int pg = blockIdx.x * MVQ_WARPS + warp, pk = 0, pslot = 0;
    auto issue = [&]() {
        if (pg < n_groups) {
            int j, r0;
            const uint8_t *wr[MVQ_R];
            mvq_group(jobs, pg, row_bytes, j, r0, wr);
            const int chunks = min(8, nb - 8 * pk) * BYTES / 16;
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) {
                const uint8_t *src = wr[r] + (size_t)8 * pk * BYTES;
                uint8_t *dst = ring + pslot * ST::SLOT + r * ST::ROW;
                for (int c = lane; c < chunks; c += 32) mvq_cp16(dst + 16 * c, src + 16 * c);
            }
            if (++pk == iters) pk = 0, pg += gstride;
        }
        mvq_cp_commit(); /* an empty group past the end keeps the count */
        pslot = pslot == S - 1 ? 0 : pslot + 1;
    };
#pragma unroll
    for (int i = 0; i < S - 1; i++) issue();
    cuda_pdl_wait();
    mvq_quant_x(x, cols, xq, xd, xs);
    __syncthreads();

    int g = blockIdx.x * MVQ_WARPS + warp, k = 0, slot = 0, j = 0, r0 = 0;
    if (g < n_groups) {
        const uint8_t *unused[MVQ_R];
        mvq_group(jobs, g, row_bytes, j, r0, unused);
    }
    float acc[MVQ_R] = {};
    while (g < n_groups) {
        issue(); /* S - 1 steps ahead */
        mvq_cp_wait<S - 1>();
        __syncwarp();
        const int it = lane + 32 * k;
        if (it < items)
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) {
                mvq_raw<TYPE> raw;
                raw.template load<true>(ring + slot * ST::SLOT + r * ST::ROW, lane);
                acc[r] += mvq_dot<TYPE>(raw, it, xq, xd, xs);
            }
        __syncwarp(); /* the slot is refilled by the next issue() */
        slot = slot == S - 1 ? 0 : slot + 1;
        if (++k == iters) {
            mvq_write(jobs, j, r0, acc, lane);
            k = 0;
            g += gstride;
            if (g < n_groups) {
                const uint8_t *unused[MVQ_R];
                mvq_group(jobs, g, row_bytes, j, r0, unused);
            }
        }
    }
    mvq_cp_wait<0>();
}

int cuda_mvq_supported(int type, int64_t cols) {
    return (type == CQ_Q4_K || type == CQ_Q6_K) && cols % 256 == 0 && cols >= 256 &&
           cols <= CUDA_MVQ_MAX_COLS;
}

/* A persistent grid for `kernel`: one CTA per MVQ_WARPS row groups, at most
 * as many as fit on the device with `most` bytes of shared memory (the
 * widest x; the grid keeps to it for every width). Cached per kernel. */
template <typename K>
static int mvq_ctas(K kernel, size_t most, int groups, int &sms, int &per_sm) {
    if (!sms) {
        int dev = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        if (most > 48 * 1024)
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)most);
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * MVQ_WARPS, most);
        if (per_sm < 1) per_sm = 1;
        if (sms < 1) sms = 1;
    }
    int ctas = (groups + MVQ_WARPS - 1) / MVQ_WARPS;
    return ctas > sms * per_sm ? sms * per_sm : ctas;
}

template <int TYPE>
static void mvq_launch(cudaStream_t s, const mvq_jobs &jobs, int64_t cols, const float *x,
                       int groups, size_t smem) {
    static int sms = 0, per_sm = 0;
    const int ctas = mvq_ctas(mvq_kernel<TYPE>, (CUDA_MVQ_MAX_COLS * 5) / 4, groups, sms, per_sm);
    cuda_launch(mvq_kernel<TYPE>, dim3(ctas), dim3(32 * MVQ_WARPS), smem, s, jobs,
                (size_t)(cols / 256 * mvq_raw<TYPE>::BYTES), (int)cols, x, groups);
}

/* BEAST_CUDA_MVQ_STAGED=0: mvq_kernel only */
static int g_mvq_staged = -1;
static long g_mvq_staged_launches;

template <int TYPE>
static void mvq_staged_launch(cudaStream_t s, const mvq_jobs &jobs, int64_t cols, const float *x,
                              int groups, size_t x_smem) {
    static int sms = 0, per_sm = 0;
    const int ctas =
        mvq_ctas(mvq_staged_kernel<TYPE>, mvq_stage<TYPE>::RING + (CUDA_MVQ_MAX_COLS * 5) / 4,
                 groups, sms, per_sm);
    cuda_launch(mvq_staged_kernel<TYPE>, dim3(ctas), dim3(32 * MVQ_WARPS),
                mvq_stage<TYPE>::RING + x_smem, s, jobs,
                (size_t)(cols / 256 * mvq_raw<TYPE>::BYTES), (int)cols, x, groups);
}

int cuda_mvq(cudaStream_t s, int n_jobs, float *const *out, int type, const void *const *w,
             const int64_t *rows, int64_t cols, const float *x, int glu) {
    if (!cuda_mvq_supported(type, cols) || n_jobs < 1 || n_jobs > CUDA_MV_MAX_JOBS ||
        (glu && (n_jobs != 2 || rows[0] != rows[1])) || (uintptr_t)x % 16) {
        err_set("cuda mvq: unsupported weight type %d / %lld columns / jobs", type,
                (long long)cols);
        return -1;
    }
    if (g_mvq_staged < 0) {
        const char *e = getenv("BEAST_CUDA_MVQ_STAGED");
        g_mvq_staged = !(e && !strcmp(e, "0"));
    }
    mvq_jobs jobs;
    memset(&jobs, 0, sizeof jobs);
    int groups = 0;
    for (int k = 0; k < n_jobs; k++) {
        if (rows[k] < 1 || rows[k] > INT32_MAX / 2) {
            err_set("cuda mvq: bad row count %lld", (long long)rows[k]);
            return -1;
        }
        jobs.w[k] = (const uint8_t *)w[k];
        jobs.out[k] = out[k];
        jobs.rows[k] = (int)rows[k];
        if (!glu || k == 0) groups += glu ? (int)rows[k] : (int)((rows[k] + MVQ_R - 1) / MVQ_R);
        jobs.groups_end[k] = groups;
    }
    jobs.n_jobs = glu ? 1 : n_jobs;
    jobs.glu = glu;
    size_t smem = (size_t)cols + (size_t)cols / 32 * 8;
    /* the staged kernel needs 16-byte aligned rows and whole 8-block steps
     * of Q6_K (210-byte blocks) */
    int staged = g_mvq_staged != 0;
    for (int k = 0; k < n_jobs; k++) staged &= (uintptr_t)w[k] % 16 == 0;
    if (type == CQ_Q6_K) staged &= cols % 2048 == 0;
    /* (the register kernel times as fast or faster alone on a few small
     * Q4_K shapes, dev/cuda/matvec; in a decode step, where the staged one
     * copies its first steps while the previous kernel runs, the staged one
     * wins on those too: H100, 1B shape, 1.005 against 1.029 ms a step) */
    g_mvq_staged_launches += staged;
    if (staged && type == CQ_Q4_K)
        mvq_staged_launch<CQ_Q4_K>(s, jobs, cols, x, groups, smem);
    else if (staged)
        mvq_staged_launch<CQ_Q6_K>(s, jobs, cols, x, groups, smem);
    else if (type == CQ_Q4_K)
        mvq_launch<CQ_Q4_K>(s, jobs, cols, x, groups, smem);
    else
        mvq_launch<CQ_Q6_K>(s, jobs, cols, x, groups, smem);
    return 0;
}

void cuda_mvq_set_staged(int on) {
    g_mvq_staged = on;
}

long cuda_mvq_staged_launches(void) {
    return g_mvq_staged_launches;
}
