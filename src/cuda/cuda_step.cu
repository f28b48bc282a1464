/* cuda_step.cu: the one-token step program. A decode step of one token runs
 * its layers (and the output norm and matrix) as one persistent kernel that
 * executes a list of instructions (cuda_step_ins, built by the backend from
 * its command queue) with a grid barrier between consecutive ones.
 *
 * Why: a one-token step launches about nine kernels a layer, and each
 * boundary costs several microseconds (the next grid ramps up, reads its
 * input, and its first weights arrive one DRAM latency after that) against
 * 2-10 us of weight streaming per mat-vec on an H100: the 1B shape spent
 * about 60 us a layer on 12 us of weights. Inside one kernel the boundary
 * is a grid barrier (an atomic and a spin, about a microsecond), and every
 * warp's weight stream runs ahead across instructions: while the grid waits
 * at a barrier or computes attention, the warps already copy the weights of
 * the next mat-vec into shared memory.
 *
 * Shape: one CTA of STP_WARPS warps per SM (cooperative launch, so all are
 * resident). Mat-vec instructions use cuda_mvq.cu's lane layout and integer
 * arithmetic (groups of 2 rows, steps of 8 blocks a row, a lane a quarter
 * block): warp w of the grid takes groups w, w + NW, ... of every mat-vec in
 * turn. Its producer walks that same sequence of (instruction, group, step)
 * STP_S - 1 steps ahead of its consumer, copying each step's bytes with
 * cp.async into a ring of STP_S slots (16-byte aligned copies of a range
 * that may start 2-byte aligned: Q6_K rows of any multiple of 256 columns).
 * Before its groups, every CTA builds the 8-bit input x in shared memory
 * itself (with the rmsnorm folded in when the instruction has one), so a
 * norm costs no barrier; a residual add is the mat-vec's epilogue (each row
 * has one writer). The attention instruction takes one query head per CTA:
 * it rotates q and the head's k, stores k and v in the cache (the first CTA
 * of each KV group), and attends over the cached positions plus the current
 * one from its own registers, so the store needs no barrier either.
 *
 * Data written inside the kernel is read back through L2 (__ldcg), never
 * through the non-coherent read-only path. */
#include "cuda/cuda_mvq.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STP_WARPS   16
#define STP_THREADS (32 * STP_WARPS)
#define STP_S       3                 /* ring slots a warp */
#define STP_ROW     (8 * 210 + 32)    /* a row's step: 8 blocks + alignment slack */
#define STP_SLOT    (MVQ_R * STP_ROW) /* a step of a group's 2 rows */
#define STP_RING    ((size_t)STP_WARPS * STP_S * STP_SLOT)
#define STP_TILE    STP_THREADS /* attention positions a pass */
/* shared memory after the rings: the 8-bit x (or the attention's buffers) */
#define STP_SCRATCH     ((size_t)CUDA_STEP_MAX_COLS + CUDA_STEP_MAX_COLS / 32 * 8 + 64 * 4)
#define STP_ATTN_SM     ((size_t)(3 * 128 + 2 * STP_TILE + STP_WARPS * 128 + STP_WARPS) * 4)
#define STP_SCRATCH_ALL (STP_SCRATCH > STP_ATTN_SM ? STP_SCRATCH : STP_ATTN_SM)

static long g_step_launches;

/* ---- grid barrier ----
 * bar[0] counts arrivals, bar[1] is the generation. The last CTA to arrive
 * resets the count and bumps the generation; the others spin until it
 * changes. Self-resetting, so consecutive launches need no memset. */
static __device__ __forceinline__ unsigned stp_ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

static __device__ __forceinline__ unsigned long long stp_now(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* trace (BEAST_CUDA_STEP_TRACE): per instruction i, [4i] its start (CTA 0,
 * after the barrier), [4i + 1] the last CTA's input ready, [4i + 2] the last
 * CTA's work done, [4i + 3] the first CTA's work done */
static __device__ __forceinline__ void stp_barrier(unsigned *bar, unsigned long long *trace, int i,
                                                   const cuda_step_ins *next,
                                                   cuda_step_ins *ins_sm) {
    __syncthreads();
    if (trace && threadIdx.x == 0) {
        const unsigned long long t = stp_now();
        atomicMax(trace + 4 * (i - 1) + 2, t);
        atomicMin(trace + 4 * (i - 1) + 3, t);
    }
    if (threadIdx.x == 0) {
        /* arrive with release semantics (the CTA's writes, ordered by the
         * __syncthreads above, become visible with it), wait with acquire */
        unsigned gen, old;
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(gen) : "l"(bar + 1) : "memory");
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;"
                     : "=r"(old)
                     : "l"(bar)
                     : "memory");
        if (old == gridDim.x - 1) {
            asm volatile("st.relaxed.gpu.global.u32 [%0], 0;" ::"l"(bar) : "memory");
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar + 1) : "memory");
        } else {
            while (stp_ld_acquire(bar + 1) == gen) {
            }
        }
    } else if (threadIdx.x >= 32 && threadIdx.x < 32 + (int)(sizeof *next / 4)) {
        /* meanwhile the next instruction into shared memory */
        ((uint32_t *)ins_sm)[threadIdx.x - 32] = __ldg((const uint32_t *)next + threadIdx.x - 32);
    }
    __syncthreads();
}

/* ---- the weight stream ---- */
static __device__ __forceinline__ int stp_bytes(int type) {
    return type == CQ_Q4_K ? 144 : 210;
}

/* What the weight streams need of a mat-vec instruction, for every
 * instruction of the program in shared memory (copied at the start), so the
 * producers never wait on global memory to find their next rows. */
struct stp_mv {
    const uint8_t *w[3];
    int groups; /* 0: not a mat-vec */
    int cols, glu;
    int type[3], rows[3], ge[2]; /* ge: the first two cumulative group counts */
};

/* where a program's descriptors start in its device copy */
static __host__ __device__ size_t stp_mv_offset(int n_ins) {
    return ((size_t)n_ins * sizeof(cuda_step_ins) + 15) & ~(size_t)15;
}

/* group g of a mat-vec: its job, first row, and the two row pointers */
static __device__ __forceinline__ void stp_group(const stp_mv &M, int g, int &j, int &r0,
                                                 const uint8_t *(&wr)[MVQ_R]) {
    j = g >= M.ge[0] ? (g >= M.ge[1] ? 2 : 1) : 0;
    const size_t rb = (size_t)(M.cols / 256) * stp_bytes(M.type[j]);
    if (M.glu) {
        r0 = g;
        wr[0] = M.w[0] + g * rb;
        wr[1] = M.w[1] + g * rb;
    } else {
        r0 = (g - (j ? M.ge[j - 1] : 0)) * MVQ_R;
#pragma unroll
        for (int r = 0; r < MVQ_R; r++) wr[r] = M.w[j] + (size_t)min(r0 + r, M.rows[j] - 1) * rb;
    }
}

/* A warp's producer: the (instruction, group, step) it copies next. */
struct stp_producer {
    const stp_mv *mv;  /* [n_ins] in shared memory */
    int n_ins, gw, nw; /* the warp's index in the grid, warps in the grid */
    int pi, pg, pk, slot;

    /* the first mat-vec at or after instruction i with a group for this warp */
    __device__ void seek(int i) {
        for (pi = i; pi < n_ins; pi++)
            if (gw < mv[pi].groups) break;
        pg = gw;
        pk = 0;
    }

    /* copy the next step into the next slot (an empty cp.async group past
     * the end keeps the consumer's count) */
    __device__ void issue(uint8_t *ring, int lane) {
        if (pi < n_ins) {
            const stp_mv &M = mv[pi];
            int j, r0;
            const uint8_t *wr[MVQ_R];
            stp_group(M, pg, j, r0, wr);
            const int bytes = stp_bytes(M.type[j]), nb = M.cols / 256;
            const int nblk = min(8, nb - 8 * pk);
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) {
                const uintptr_t a = (uintptr_t)(wr[r] + (size_t)8 * pk * bytes);
                const uint8_t *lo = (const uint8_t *)(a & ~(uintptr_t)15);
                const int chunks =
                    (int)(((a + (uintptr_t)nblk * bytes + 15) & ~(uintptr_t)15) - (uintptr_t)lo) /
                    16;
                uint8_t *dst = ring + slot * STP_SLOT + r * STP_ROW;
                for (int c = lane; c < chunks; c += 32) mvq_cp16(dst + 16 * c, lo + 16 * c);
            }
            if (++pk == (nb * 4 + 31) / 32) {
                pk = 0;
                pg += nw;
                if (pg >= M.groups) seek(pi + 1);
            }
        }
        mvq_cp_commit();
        slot = slot == STP_S - 1 ? 0 : slot + 1;
    }
};

/* ---- the 8-bit input of a mat-vec ----
 * x (or rmsnorm(src) * norm_w) into int8 blocks of 32 (mvq_quant4: scale
 * amax / 127 in xd, exact float sum in xs); CTA 0 also stores the normed
 * vector to norm_out. The whole x (at most CUDA_STEP_MAX_COLS) comes in one
 * round trip, STP_XV float4 a thread; a norm's weight is prefetched into L1
 * with it and read once the scale is known. */
#define STP_XV (CUDA_STEP_MAX_COLS / 4 / STP_THREADS)
static __device__ void stp_input(const cuda_step_ins &I, int8_t *xq, float *xd, float *xs,
                                 float *red) {
    const int n4 = I.cols / 4;
    const float4 *s4 = (const float4 *)(I.x + (I.src_row ? (size_t)__ldcg(I.src_row) * I.cols : 0));
    const float4 *w4 = (const float4 *)I.norm_w;
    float4 v[STP_XV];
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < STP_XV; u++) {
        const int i4 = u * STP_THREADS + threadIdx.x;
        v[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i4 < n4) {
            v[u] = __ldcg(s4 + i4);
            if (w4) asm volatile("prefetch.global.L1 [%0];" ::"l"(w4 + i4));
        }
    }
    float sc = 1.0f;
    if (w4) {
#pragma unroll
        for (int u = 0; u < STP_XV; u++) {
            ss = fmaf(v[u].x, v[u].x, ss);
            ss = fmaf(v[u].y, v[u].y, ss);
            ss = fmaf(v[u].z, v[u].z, ss);
            ss = fmaf(v[u].w, v[u].w, ss);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
        __syncthreads();
        ss = 0.0f;
        for (int k = 0; k < STP_WARPS; k++) ss += red[k];
        sc = (float)(1.0 / sqrt((double)ss / I.cols + I.eps));
    }
    float4 *nout = w4 && I.norm_out && blockIdx.x == 0 ? (float4 *)I.norm_out : NULL;
#pragma unroll
    for (int u = 0; u < STP_XV; u++) {
        if (u * STP_THREADS >= n4) break; /* whole warps: n4 % 64 == 0 */
        const int i4 = u * STP_THREADS + threadIdx.x;
        if (w4 && i4 < n4) {
            const float4 w = __ldg(w4 + i4);
            v[u] = make_float4(v[u].x * sc * w.x, v[u].y * sc * w.y, v[u].z * sc * w.z,
                               v[u].w * sc * w.w);
            if (nout) nout[i4] = v[u];
        }
        mvq_quant4(v[u], i4, n4, xq, xd, xs);
    }
    __syncthreads();
}

/* ---- a mat-vec instruction: the warp's groups ---- */
template <int TYPE>
static __device__ __forceinline__ void
stp_group_steps(const uint8_t *const (&wr)[MVQ_R], int iters, int items, stp_producer &P,
                uint8_t *ring, int &slot, const int8_t *xq, const float *xd, const float *xs,
                float (&acc)[MVQ_R], int lane) {
    for (int k = 0; k < iters; k++) {
        P.issue(ring, lane); /* STP_S - 1 steps ahead */
        mvq_cp_wait<STP_S - 1>();
        __syncwarp();
        const int it = lane + 32 * k;
        if (it < items)
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) {
                const int mis =
                    (int)((uintptr_t)(wr[r] + (size_t)8 * k * mvq_raw<TYPE>::BYTES) & 15);
                mvq_raw<TYPE> raw;
                raw.template load<true>(ring + slot * STP_SLOT + r * STP_ROW + mis, lane);
                acc[r] += mvq_dot<TYPE>(raw, it, xq, xd, xs);
            }
        __syncwarp(); /* the slot is refilled by a later issue() */
        slot = slot == STP_S - 1 ? 0 : slot + 1;
    }
}

static __device__ void stp_matvec(const cuda_step_ins &I, const stp_mv &M, stp_producer &P,
                                  uint8_t *ring, int &slot, const int8_t *xq, const float *xd,
                                  const float *xs, int gw, int nw, int lane) {
    const int items = I.cols / 256 * 4, iters = (items + 31) / 32, groups = M.groups;
    for (int g = gw; g < groups; g += nw) {
        float acc[MVQ_R] = {};
        int j, r0;
        const uint8_t *wr[MVQ_R];
        stp_group(M, g, j, r0, wr);
        if (M.type[j] == CQ_Q4_K)
            stp_group_steps<CQ_Q4_K>(wr, iters, items, P, ring, slot, xq, xd, xs, acc, lane);
        else
            stp_group_steps<CQ_Q6_K>(wr, iters, items, P, ring, slot, xq, xd, xs, acc, lane);
        mvq_warp_sum(acc);
        if (lane == 0) {
            if (I.glu) {
                I.out[1][g] = acc[1];
                I.out[0][g] = mvq_act(acc[0], I.glu - 1) * acc[1];
            } else {
#pragma unroll
                for (int r = 0; r < MVQ_R; r++)
                    if (r0 + r < I.rows[j]) {
                        I.out[j][r0 + r] = acc[r];
                        if (I.res) I.res[r0 + r] = __ldcg(I.res + r0 + r) + acc[r];
                    }
            }
        }
    }
}

/* ---- the attention instruction: one query head a CTA ---- */
template <int D, bool F16> static __device__ void stp_attention(const cuda_step_ins &I, float *sm) {
    /* values: a thread takes one 16-byte piece (EL elements) of V rows, at
     * positions j = its position lane mod PL */
    constexpr int EL = F16 ? 8 : 4, CH = D / EL, PL = STP_THREADS / CH;
    const int splits = I.part && I.n_head <= CUDA_STEP_ATTN_HEADS
                           ? max(1, min(CUDA_STEP_ATTN_SPLITS, (int)gridDim.x / I.n_head))
                           : 1;
    if ((int)blockIdx.x >= I.n_head * splits) return;
    const int h = blockIdx.x % I.n_head, sp = blockIdx.x / I.n_head;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = I.n_head / I.n_head_kv, kvh = h / G;
    float *qs = sm, *kc = qs + D, *vc = kc + D, *sc = vc + D; /* sc: [STP_TILE] */
    float *red = sc + STP_TILE;                               /* [STP_WARPS][D] */
    float *wred = red + STP_WARPS * D;                        /* [STP_WARPS] */
    int *offs = (int *)(wred + STP_WARPS);                    /* [STP_TILE] cache rows */
    const int p = __ldcg(I.pos), slot = __ldcg(I.slots);
    const bool store = h % G == 0 && sp == 0;
    const size_t coff = (size_t)slot * I.kv_dim + (size_t)kvh * D;

    /* rope of q (scaled) and k, the current k and v as the cache holds them */
    if (tid < D / 2) {
        const int half = I.n_rot / 2, pr = tid;
        const float *qh = I.q + (size_t)h * D, *kh = I.k + (size_t)kvh * D;
        int a, b;
        float q0, q1, k0, k1;
        if (pr < half) {
            float sn, cs;
            cuda_rope_sincos(p, pr, I.n_rot, I.log2_base, I.freq_scale, sn, cs);
            a = I.neox ? pr : 2 * pr, b = I.neox ? pr + half : 2 * pr + 1;
            const float x0 = __ldcg(qh + a), x1 = __ldcg(qh + b);
            q0 = x0 * cs - x1 * sn, q1 = x0 * sn + x1 * cs;
            const float y0 = __ldcg(kh + a), y1 = __ldcg(kh + b);
            k0 = y0 * cs - y1 * sn, k1 = y0 * sn + y1 * cs;
        } else {
            a = I.n_rot + 2 * (pr - half), b = a + 1;
            q0 = __ldcg(qh + a), q1 = __ldcg(qh + b);
            k0 = __ldcg(kh + a), k1 = __ldcg(kh + b);
        }
        qs[a] = q0 * I.scale, qs[b] = q1 * I.scale;
        if (F16) {
            const __half h0 = __float2half_rn(k0), h1 = __float2half_rn(k1);
            kc[a] = __half2float(h0), kc[b] = __half2float(h1);
            if (store) ((__half *)I.kc)[coff + a] = h0, ((__half *)I.kc)[coff + b] = h1;
        } else {
            kc[a] = k0, kc[b] = k1;
            if (store) ((float *)I.kc)[coff + a] = k0, ((float *)I.kc)[coff + b] = k1;
        }
    } else if (tid < D / 2 + D) {
        const int e = tid - D / 2;
        const float v = __ldcg(I.v + (size_t)kvh * D + e);
        if (F16) {
            const __half hv = __float2half_rn(v);
            vc[e] = __half2float(hv);
            if (store) ((__half *)I.vc)[coff + e] = hv;
        } else {
            vc[e] = v;
            if (store) ((float *)I.vc)[coff + e] = v;
        }
    }
    __syncthreads();

    const int lo0 = I.window > 0 ? max(0, p - I.window + 1) : 0;
    const int chunk = ((p + 1 - lo0 + splits - 1) / splits + 31) & ~31;
    const int lo = lo0 + sp * chunk, hi = min(p, lo + chunk - 1); /* this split's positions */
    const int32_t *table = I.block_table + (size_t)__ldcg(I.seq_row) * I.max_blocks;
    const int bs = I.block_size;
    const int c = tid % CH, pl = tid / CH; /* the value pass's piece and position lane */
    float m = -INFINITY, l = 0.0f, o[EL];
#pragma unroll
    for (int e = 0; e < EL; e++) o[e] = 0.0f;
    for (int t0 = lo; t0 <= hi; t0 += STP_TILE) {
        const int nt = min(STP_TILE, hi + 1 - t0);
        /* scores: one position a thread (its cache row kept for the values) */
        float s = -INFINITY;
        if (tid < nt) {
            const int pp = t0 + tid;
            s = 0.0f;
            if (pp == p) {
                offs[tid] = -1;
#pragma unroll 8
                for (int d = 0; d < D; d++) s = fmaf(qs[d], kc[d], s);
            } else {
                const int row = __ldcg(table + pp / bs) * bs + pp % bs;
                offs[tid] = row;
                const uint4 *kr =
                    (const uint4 *)((const char *)I.kc +
                                    ((size_t)row * I.kv_dim + (size_t)kvh * D) * (F16 ? 2 : 4));
                constexpr int B = CH < 8 ? CH : 8; /* 16-byte loads in flight */
#pragma unroll
                for (int u0 = 0; u0 < CH; u0 += B) {
                    uint4 raw[B];
#pragma unroll
                    for (int u = 0; u < B; u++) raw[u] = __ldcg(kr + u0 + u);
#pragma unroll
                    for (int u = 0; u < B; u++) {
                        float kf[EL];
                        if (F16) {
                            const __half2 *h2 = (const __half2 *)&raw[u];
#pragma unroll
                            for (int e = 0; e < EL / 2; e++) {
                                const float2 f = __half22float2(h2[e]);
                                kf[2 * e] = f.x, kf[2 * e + 1] = f.y;
                            }
                        } else {
                            const float *f = (const float *)&raw[u];
#pragma unroll
                            for (int e = 0; e < EL; e++) kf[e] = f[e];
                        }
#pragma unroll
                        for (int e = 0; e < EL; e++) s = fmaf(qs[(u0 + u) * EL + e], kf[e], s);
                    }
                }
            }
        }
        /* the tile's max, then its exponentials and their sum */
        float t = s;
#pragma unroll
        for (int o2 = 16; o2 > 0; o2 >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o2));
        if (lane == 0) wred[warp] = t;
        __syncthreads();
        float tmax = wred[0];
        for (int w = 1; w < STP_WARPS; w++) tmax = fmaxf(tmax, wred[w]);
        const float mn = fmaxf(m, tmax), corr = expf(m - mn); /* 0 on the first tile */
        m = mn;
        const float pw = tid < nt ? expf(s - mn) : 0.0f;
        sc[tid] = pw;
        float ts = pw;
#pragma unroll
        for (int o2 = 16; o2 > 0; o2 >>= 1) ts += __shfl_xor_sync(0xffffffffu, ts, o2);
        __syncthreads(); /* every thread has read wred's maxima; sc and offs are written */
        if (lane == 0) wred[warp] = ts;
            /* values: 16-byte pieces of V rows, independent loads */
#pragma unroll
        for (int e = 0; e < EL; e++) o[e] *= corr;
#pragma unroll 4
        for (int j = pl; j < nt; j += PL) {
            const int row = offs[j];
            const float w = sc[j];
            float vf[EL];
            if (row < 0) {
#pragma unroll
                for (int e = 0; e < EL; e++) vf[e] = vc[c * EL + e];
            } else {
                const uint4 raw = __ldcg(
                    (const uint4 *)((const char *)I.vc +
                                    ((size_t)row * I.kv_dim + (size_t)kvh * D) * (F16 ? 2 : 4)) +
                    c);
                if (F16) {
                    const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
                    for (int e = 0; e < EL / 2; e++) {
                        const float2 f = __half22float2(h2[e]);
                        vf[2 * e] = f.x, vf[2 * e + 1] = f.y;
                    }
                } else {
                    const float *f = (const float *)&raw;
#pragma unroll
                    for (int e = 0; e < EL; e++) vf[e] = f[e];
                }
            }
#pragma unroll
            for (int e = 0; e < EL; e++) o[e] = fmaf(w, vf[e], o[e]);
        }
        __syncthreads();
        float tsum = 0.0f;
        for (int w = 0; w < STP_WARPS; w++) tsum += wred[w];
        l = l * corr + tsum;
        __syncthreads(); /* sc, offs and wred are rewritten by the next tile */
    }
    /* the position lanes of a warp by shuffles, then the warps */
#pragma unroll
    for (int e = 0; e < EL; e++)
#pragma unroll
        for (int o2 = CH; o2 < 32; o2 <<= 1) o[e] += __shfl_xor_sync(0xffffffffu, o[e], o2);
    if (lane < CH)
#pragma unroll
        for (int e = 0; e < EL; e++) red[warp * D + c * EL + e] = o[e];
    __syncthreads();
    float acc = 0.0f;
    if (tid < D)
        for (int w = 0; w < STP_WARPS; w++) acc += red[w * D + tid];
    if (splits == 1) {
        if (tid < D) I.att[(size_t)h * D + tid] = acc / l;
        return;
    }
    /* several splits: the partial (o, m, l), then the last split of the head
     * to arrive merges them all, in split order */
    float *part = I.part + (size_t)h * splits * (D + 2);
    if (tid < D) part[(size_t)sp * (D + 2) + tid] = acc;
    if (tid == 0) part[(size_t)sp * (D + 2) + D] = m, part[(size_t)sp * (D + 2) + D + 1] = l;
    __syncthreads();
    __shared__ unsigned last;
    if (tid == 0) {
        __threadfence();
        last = atomicAdd(I.tickets + h, 1u) == (unsigned)splits - 1;
        if (last) {
            __threadfence();
            I.tickets[h] = 0; /* read again only after a grid barrier */
        }
    }
    __syncthreads();
    if (!last || tid >= D) return;
    float M = -INFINITY;
    for (int k = 0; k < splits; k++) M = fmaxf(M, __ldcg(part + (size_t)k * (D + 2) + D));
    float L = 0.0f, O = 0.0f;
    for (int k = 0; k < splits; k++) {
        const float e = expf(__ldcg(part + (size_t)k * (D + 2) + D) - M); /* 0 for empty splits */
        L += e * __ldcg(part + (size_t)k * (D + 2) + D + 1);
        O += e * __ldcg(part + (size_t)k * (D + 2) + tid);
    }
    I.att[(size_t)h * D + tid] = O / L;
}

/* ---- the kernel ---- */
__global__ void __launch_bounds__(STP_THREADS, 1)
    step_kernel(const cuda_step_ins *__restrict__ prog, int n_ins, unsigned *bar,
                unsigned long long *trace) {
    extern __shared__ int4 stp_sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint8_t *ring = (uint8_t *)stp_sm + (size_t)warp * STP_S * STP_SLOT;
    uint8_t *scratch = (uint8_t *)stp_sm + STP_RING;
    const int gw = blockIdx.x * STP_WARPS + warp, nw = gridDim.x * STP_WARPS;

    /* the mat-vec descriptors (after the instructions, cuda_step_upload),
     * then the first weights: neither depends on the previous kernel */
    stp_mv *mv = (stp_mv *)(scratch + STP_SCRATCH_ALL);
    {
        const uint2 *src = (const uint2 *)((const char *)prog + stp_mv_offset(n_ins));
        for (int t = threadIdx.x; t < n_ins * (int)(sizeof *mv / 8); t += STP_THREADS)
            ((uint2 *)mv)[t] = __ldg(src + t);
    }
    __syncthreads();
    stp_producer P;
    P.mv = mv, P.n_ins = n_ins, P.gw = gw, P.nw = nw, P.slot = 0;
    P.seek(0);
#pragma unroll
    for (int i = 0; i < STP_S - 1; i++) P.issue(ring, lane);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    __shared__ cuda_step_ins ins_sm;
    if (n_ins > 0 && threadIdx.x < (int)(sizeof ins_sm / 4))
        ((uint32_t *)&ins_sm)[threadIdx.x] = __ldg((const uint32_t *)prog + threadIdx.x);
    __syncthreads();
    int slot = 0;
    for (int i = 0; i < n_ins; i++) {
        const cuda_step_ins &I = ins_sm;
        if (i > 0) stp_barrier(bar, trace, i, prog + i, &ins_sm);
        if (trace && blockIdx.x == 0 && threadIdx.x == 0) trace[4 * i] = stp_now();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        /* the next kernel may start its weight reads during the last one */
        if (i == n_ins - 1) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
        if (I.kind == CUDA_STEP_MV) {
            int8_t *xq = (int8_t *)scratch;
            float *xd = (float *)(xq + I.cols), *xs = xd + I.cols / 32, *red = xs + I.cols / 32;
            stp_input(I, xq, xd, xs, red);
            if (trace && threadIdx.x == 0) atomicMax(trace + 4 * i + 1, stp_now());
            stp_matvec(I, mv[i], P, ring, slot, xq, xd, xs, gw, nw, lane);
            __syncthreads(); /* the x buffers are rewritten by the next instruction */
        } else if (I.head_dim == 64) {
            if (I.f16)
                stp_attention<64, true>(I, (float *)scratch);
            else
                stp_attention<64, false>(I, (float *)scratch);
        } else {
            if (I.f16)
                stp_attention<128, true>(I, (float *)scratch);
            else
                stp_attention<128, false>(I, (float *)scratch);
        }
    }
    if (trace && n_ins > 0) {
        __syncthreads();
        if (threadIdx.x == 0) {
            const unsigned long long t = stp_now();
            atomicMax(trace + 4 * (n_ins - 1) + 2, t);
            atomicMin(trace + 4 * (n_ins - 1) + 3, t);
        }
    }
    mvq_cp_wait<0>();
}

/* dynamic shared memory of a program of n_ins instructions */
static size_t step_smem(int n_ins) {
    return STP_RING + STP_SCRATCH_ALL + (size_t)n_ins * sizeof(stp_mv);
}

static int g_step_ctas = -1;

int cuda_step_supported(void) {
    if (g_step_ctas < 0) {
        g_step_ctas = 0;
        int dev = 0, sms = 0, coop = 0, per_sm = 0, optin = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        const size_t most = step_smem(CUDA_STEP_MAX_INS);
        if (coop && (size_t)optin >= most &&
            cudaFuncSetAttribute(step_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)most) == cudaSuccess &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, step_kernel, STP_THREADS,
                                                          most) == cudaSuccess &&
            per_sm >= 1)
            g_step_ctas = sms; /* one CTA an SM */
        cudaGetLastError();
    }
    return g_step_ctas > 0;
}

int cuda_step_run(cudaStream_t s, const cuda_step_ins *prog, int n_ins, unsigned *bar,
                  unsigned long long *trace) {
    if (!cuda_step_supported()) {
        err_set("cuda: this device cannot run step programs");
        return -1;
    }
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = dim3(g_step_ctas);
    cfg.blockDim = dim3(STP_THREADS);
    if (n_ins > CUDA_STEP_MAX_INS) {
        err_set("cuda: a step program of %d instructions (at most %d)", n_ins, CUDA_STEP_MAX_INS);
        return -1;
    }
    cfg.dynamicSmemBytes = step_smem(n_ins);
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = cuda_pdl() ? 2 : 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, step_kernel, prog, n_ins, bar, trace);
    if (e != cudaSuccess) {
        err_set("cuda: step program launch: %s", cudaGetErrorString(e));
        return -1;
    }
    g_step_launches++;
    return 0;
}

size_t cuda_step_bytes(int n_ins) {
    return stp_mv_offset(n_ins) + (size_t)n_ins * sizeof(stp_mv);
}

int cuda_step_upload(void *dev, const cuda_step_ins *ins, int n_ins) {
    const size_t bytes = cuda_step_bytes(n_ins);
    uint8_t *h = (uint8_t *)calloc(1, bytes);
    if (!h) {
        err_set("out of memory");
        return -1;
    }
    memcpy(h, ins, (size_t)n_ins * sizeof *ins);
    stp_mv *mv = (stp_mv *)(h + stp_mv_offset(n_ins));
    for (int t = 0; t < n_ins; t++) {
        const cuda_step_ins &I = ins[t];
        stp_mv &M = mv[t];
        M.groups = I.kind == CUDA_STEP_MV ? I.groups_end[I.n_jobs - 1] : 0;
        M.cols = I.cols, M.glu = I.glu;
        for (int k = 0; k < 3; k++)
            M.w[k] = (const uint8_t *)I.w[k], M.type[k] = I.type[k], M.rows[k] = I.rows[k];
        M.ge[0] = I.groups_end[0], M.ge[1] = I.groups_end[1];
    }
    cudaError_t e = cudaMemcpy(dev, h, bytes, cudaMemcpyHostToDevice);
    free(h);
    if (e != cudaSuccess) {
        err_set("cuda: step program upload: %s", cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

long cuda_step_launches(void) {
    return g_step_launches;
}
