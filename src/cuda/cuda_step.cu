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
 * block): warp w of the grid (numbered across the CTAs first) takes groups
 * w, w + NW, ... of every mat-vec in turn. Its producer walks that same sequence of (instruction,
 * group, step) STP_S - 1 steps ahead of its consumer, copying each step's bytes with cp.async into
 * a ring of STP_S slots (16-byte aligned copies of a range that may start 2-byte aligned: Q6_K rows
 * of any multiple of 256 columns). Before its groups, every CTA builds the 8-bit input x in shared
 * memory itself (with the rmsnorm folded in when the instruction has one), so a norm costs no
 * barrier; a residual add is the mat-vec's epilogue (each row has one writer). The attention
 * instruction gives each CTA a split of one query head's positions: it rotates q and the head's k,
 * stores k and v in the cache (the first split of each KV group), and attends over its cached
 * positions plus the current one from its own registers, so the store needs
 * no barrier either; the mat-vec that reads the output merges the splits
 * while building its input.
 *
 * Data written inside the kernel is read back through L2 (__ldcg), never
 * through the non-coherent read-only path. */
#include "cuda/cuda_mvq.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STP_WARPS   16
#define STP_THREADS (32 * STP_WARPS)
#define STP_S       3                                  /* ring slots a warp */
#define STP_ROW     (8 * mvq_raw<CQ_Q6_K>::BYTES + 32) /* a row's step: 8 blocks + slack */
#define STP_SLOT    (MVQ_R * STP_ROW)                  /* a step of a group's 2 rows */
#define STP_RING    ((size_t)STP_WARPS * STP_S * STP_SLOT)
/* shared memory after the rings: the 8-bit x (or the attention's buffers) */
#define STP_SCRATCH ((size_t)CUDA_STEP_MAX_COLS + CUDA_STEP_MAX_COLS / 32 * 8 + 64 * 4)
/* q, k, v, sc[TK <= STP_THREADS / 4], red[STP_WARPS][D], wred[2][TK / 32] */
#define STP_ATTN_SM                                                                                \
    ((size_t)(3 * CUDA_STEP_MAX_HEAD_DIM + STP_THREADS / 4 + STP_WARPS * CUDA_STEP_MAX_HEAD_DIM +  \
              STP_THREADS / 64) *                                                                  \
     4)
#define STP_SCRATCH_ALL (STP_SCRATCH > STP_ATTN_SM ? STP_SCRATCH : STP_ATTN_SM)

static long g_step_launches;

/* ---- grid barrier ----
 * One word: CTA 0 adds 2^31 - (n - 1), every other CTA 1, so the word's top
 * bit flips exactly when the last CTA arrives (and its low bits return to
 * where they were: self-resetting, consecutive launches need no memset).
 * Each CTA spins until the bit differs from the one its own add saw: one
 * atomic round trip and a poll, no second word for a generation. */
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
        const unsigned inc = blockIdx.x == 0 ? 0x80000000u - (gridDim.x - 1) : 1u;
        unsigned old;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;"
                     : "=r"(old)
                     : "l"(bar), "r"(inc)
                     : "memory");
        while (((stp_ld_acquire(bar) ^ old) & 0x80000000u) == 0) {
        }
    } else if (threadIdx.x >= 32 && threadIdx.x < 32 + (int)(sizeof *next / 4)) {
        /* meanwhile the next instruction into shared memory */
        ((uint32_t *)ins_sm)[threadIdx.x - 32] = __ldg((const uint32_t *)next + threadIdx.x - 32);
    }
    __syncthreads();
}

/* ---- the weight stream ---- */
static __device__ __forceinline__ int stp_bytes(int type) {
    return type == CQ_Q4_K ? mvq_raw<CQ_Q4_K>::BYTES : mvq_raw<CQ_Q6_K>::BYTES;
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
 * x, rmsnorm(src) * norm_w, or the merge of an attention's splits, into
 * int8 blocks of 32 (mvq_quant4: scale amax / 127 in xd, exact float sum in
 * xs); CTA 0 also stores the vector built to x_out. A norm's scalar
 * 1 / rms is returned, not applied: the products take it (W (s x) = s W x),
 * so x * norm_w is quantized as it arrives, without waiting for the sum of
 * squares, and one __syncthreads serves both. The whole x (at most
 * CUDA_STEP_MAX_COLS) comes in one round trip, STP_XV float4 a thread, the
 * norm's weight with it. */
#define STP_XV (CUDA_STEP_MAX_COLS / 4 / STP_THREADS)

/* an attention's tile of positions (stp_al::TK) for head_dim d */
static __host__ __device__ constexpr int stp_tile(int d, bool f16) {
    return STP_THREADS / (d / (f16 ? 8 : 4) / 2);
}

/* the splits an attention's heads take at position p: one a tile of the
 * span, at most s (each merged split costs the mat-vec that reads the
 * output a load a column) */
static __device__ __forceinline__ int stp_splits_now(int p, int window, int s, int tile) {
    const int lo0 = window > 0 ? max(0, p - window + 1) : 0;
    return min(s, (p + 1 - lo0 + tile - 1) / tile);
}

/* the position of an attention: read once a launch when it is the
 * program's (stp_pos), else from its buffer */
static __device__ __forceinline__ int stp_position(const int32_t *pos, const int32_t *kpos,
                                                   int stp_pos) {
    return pos == kpos ? stp_pos : __ldcg(pos);
}

/* element 4 * i4 of the attention's output: its head's splits merged in
 * split order, out = sum_k e_k o_k / sum_k e_k l_k with e_k = exp(m_k - M) */
static __device__ __forceinline__ float4 stp_merge(const cuda_step_ins &I, int S, int i4) {
    const int D = I.merge_dim, e = 4 * i4, h = e / D;
    const float4 *o4 = (const float4 *)(I.x + (size_t)h * I.merge_splits * D + e % D);
    const float2 *ml = (const float2 *)(I.merge_ml + (size_t)h * I.merge_splits * 2);
    float4 o[CUDA_STEP_ATTN_SPLITS];
    float2 mk[CUDA_STEP_ATTN_SPLITS];
#pragma unroll
    for (int k = 0; k < CUDA_STEP_ATTN_SPLITS; k++)
        if (k < S) o[k] = __ldcg(o4 + (size_t)k * D / 4), mk[k] = __ldcg(ml + k);
    float M = -INFINITY;
#pragma unroll
    for (int k = 0; k < CUDA_STEP_ATTN_SPLITS; k++)
        if (k < S) M = fmaxf(M, mk[k].x);
    float L = 0.0f;
    float4 O = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < CUDA_STEP_ATTN_SPLITS; k++)
        if (k < S) {
            const float w = expf(mk[k].x - M); /* 0 for an empty split */
            L += w * mk[k].y;
            O.x += w * o[k].x, O.y += w * o[k].y, O.z += w * o[k].z, O.w += w * o[k].w;
        }
    return make_float4(O.x / L, O.y / L, O.z / L, O.w / L);
}

static __device__ float stp_input(const cuda_step_ins &I, int8_t *xq, float *xd, float *xs,
                                  float *red, const int32_t *kpos, int stp_pos) {
    const int n4 = I.cols / 4;
    float4 *xout = blockIdx.x == 0 ? (float4 *)I.x_out : NULL;
    if (I.merge_splits) { /* each float4 merged and quantized in turn */
        const int S = stp_splits_now(stp_position(I.merge_pos, kpos, stp_pos), I.merge_window,
                                     I.merge_splits, I.merge_tile);
#pragma unroll 2
        for (int i4 = threadIdx.x; i4 < n4; i4 += STP_THREADS) { /* whole warps */
            const float4 v = stp_merge(I, S, i4);
            if (xout) xout[i4] = v;
            mvq_quant4(v, i4, n4, xq, xd, xs);
        }
        __syncthreads();
        return 1.0f;
    }
    const float4 *s4 = (const float4 *)(I.x + (I.src_row ? (size_t)__ldcg(I.src_row) * I.cols : 0));
    const float4 *w4 = (const float4 *)I.norm_w;
    float4 v[STP_XV];
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < STP_XV; u++) {
        const int i4 = u * STP_THREADS + threadIdx.x;
        v[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i4 < n4) v[u] = __ldcg(s4 + i4);
    }
#pragma unroll
    for (int u = 0; u < STP_XV; u++) {
        if (u * STP_THREADS >= n4) break; /* whole warps: n4 % 64 == 0 */
        const int i4 = u * STP_THREADS + threadIdx.x;
        if (w4) {
            const float4 w = __ldg(w4 + i4);
            ss = fmaf(v[u].x, v[u].x, ss);
            ss = fmaf(v[u].y, v[u].y, ss);
            ss = fmaf(v[u].z, v[u].z, ss);
            ss = fmaf(v[u].w, v[u].w, ss);
            v[u] = make_float4(v[u].x * w.x, v[u].y * w.y, v[u].z * w.z, v[u].w * w.w);
        }
        mvq_quant4(v[u], i4, n4, xq, xd, xs);
    }
    if (w4) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    }
    __syncthreads();
    float sc = 1.0f;
    if (w4) {
        ss = 0.0f;
        for (int k = 0; k < STP_WARPS; k++) ss += red[k];
        sc = (float)(1.0 / sqrt((double)ss / I.cols + I.eps));
    }
    if (xout)
#pragma unroll
        for (int u = 0; u < STP_XV; u++) {
            const int i4 = u * STP_THREADS + threadIdx.x;
            if (i4 < n4) xout[i4] = make_float4(v[u].x * sc, v[u].y * sc, v[u].z * sc, v[u].w * sc);
        }
    return sc;
}

/* ---- a mat-vec instruction: the warp's groups ---- */
template <int TYPE>
static __device__ __forceinline__ void
stp_group_steps(const uint8_t *const (&wr)[MVQ_R], int iters, int items, stp_producer &P,
                uint8_t *ring, const int8_t *xq, const float *xd, const float *xs,
                float (&acc)[MVQ_R], int lane) {
    for (int k = 0; k < iters; k++) {
        /* STP_S - 1 steps ahead, into the slot read last; this step's slot
         * is the one the producer fills next */
        P.issue(ring, lane);
        const uint8_t *in = ring + P.slot * STP_SLOT;
        mvq_cp_wait<STP_S - 1>();
        __syncwarp();
        const int it = lane + 32 * k;
        if (it < items)
#pragma unroll
            for (int r = 0; r < MVQ_R; r++) {
                const int mis =
                    (int)((uintptr_t)(wr[r] + (size_t)8 * k * mvq_raw<TYPE>::BYTES) & 15);
                mvq_raw<TYPE> raw;
                raw.template load<true>(in + r * STP_ROW + mis, lane);
                acc[r] += mvq_dot<TYPE>(raw, it, xq, xd, xs);
            }
        __syncwarp(); /* the slot is refilled by the next issue() */
    }
}

static __device__ void stp_matvec(const cuda_step_ins &I, const stp_mv &M, stp_producer &P,
                                  uint8_t *ring, const int8_t *xq, const float *xd, const float *xs,
                                  float sc, int gw, int nw, int lane) {
    const int items = I.cols / 256 * 4, iters = (items + 31) / 32, groups = M.groups;
    for (int g = gw; g < groups; g += nw) {
        float acc[MVQ_R] = {};
        int j, r0;
        const uint8_t *wr[MVQ_R];
        stp_group(M, g, j, r0, wr);
        if (M.type[j] == CQ_Q4_K)
            stp_group_steps<CQ_Q4_K>(wr, iters, items, P, ring, xq, xd, xs, acc, lane);
        else
            stp_group_steps<CQ_Q6_K>(wr, iters, items, P, ring, xq, xd, xs, acc, lane);
        mvq_warp_sum(acc);
#pragma unroll
        for (int r = 0; r < MVQ_R; r++) acc[r] *= sc;
        if (lane == 0) mvq_store(I.out, I.rows, I.glu, j, r0, acc, I.res);
    }
}

/* ---- the attention instruction: a split of one query head a CTA ----
 * Latency, not bandwidth, bounds it (a few hundred cached positions), so
 * its global round trips are what it is written around: the cache rows of
 * the split's positions are found once a program (the first attention
 * fills stp_rows, later layers hit it: cuda_step_upload marks those with
 * the same positions and block table as same_rows),
 * then the tile's K and V rows are requested before q, k and v (which the
 * previous instruction wrote) arrive, and the splits are merged by the
 * mat-vec that reads the output (stp_merge), not by a ticket here. What is
 * left is about two round trips and the arithmetic. */
/* 16 bytes of a cache row as floats (8 halves or 4 floats) */
template <bool F16> static __device__ __forceinline__ void stp_unpack(uint4 raw, float *f) {
    if (F16) {
        const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float2 t = __half22float2(h2[e]);
            f[2 * e] = t.x, f[2 * e + 1] = t.y;
        }
    } else {
        const float *t = (const float *)&raw;
#pragma unroll
        for (int e = 0; e < 4; e++) f[e] = t[e];
    }
}

#define STP_ROWS 512 /* positions of a split whose rows are cached */
struct stp_rows {
    int valid;         /* filled (reset at the start and by a fill) */
    int lo, n;         /* the split's first position, its count */
    int row[STP_ROWS]; /* cache row of position lo + i */
};

/* the attention's thread layout for head_dim D and the cache's element
 * size: 16-byte pieces of EL elements, CH a row. The score pass gives each
 * position of a tile TP threads (KQ = 2 pieces each, so a tile's loads fit
 * in registers beside the mat-vec's state); the value pass gives thread
 * (c, pl) piece c of the rows j = pl (mod PL), R of them a tile of TK
 * positions. */
template <int D, bool F16> struct stp_al {
    static constexpr int EL = F16 ? 8 : 4, CH = D / EL, KQ = 2;
    static constexpr int TP = CH / KQ, TK = STP_THREADS / TP, PL = STP_THREADS / CH, R = TK / PL;
    static_assert(R >= 1 && TK <= 128 && TK % 32 == 0 && TK == stp_tile(D, F16),
                  "attention layout");
};

/* a tile's K (KQ pieces of a row a thread) and V rows requested; the current
 * position's come from registers. Without a hit, the rows are looked up in
 * the block table and kept in rc. */
template <int D, bool F16>
static __device__ __forceinline__ void
stp_attn_load(int t0, int lo, int hi, int p, bool hit, stp_rows &rc, const int32_t *table, int bs,
              const char *kb, const char *vb, size_t stride, uint4 (&kr)[stp_al<D, F16>::KQ],
              uint4 (&vr)[stp_al<D, F16>::R]) {
    using L = stp_al<D, F16>;
    constexpr int CH = L::CH, KQ = L::KQ, TK = L::TK, PL = L::PL, R = L::R;
    const int tid = threadIdx.x, j = tid / L::TP, qd = tid % L::TP, c = tid % CH, pl = tid / CH;
    const int nt = min(TK, hi + 1 - t0);
    if (j < nt && t0 + j != p) {
        const int pp = t0 + j;
        const int row = hit ? rc.row[pp - lo] : __ldcg(table + pp / bs) * bs + pp % bs;
        if (!hit && qd == 0 && pp - lo < STP_ROWS) rc.row[pp - lo] = row;
        const uint4 *kp = (const uint4 *)(kb + (size_t)row * stride) + qd * KQ;
#pragma unroll
        for (int u = 0; u < KQ; u++) kr[u] = __ldcg(kp + u);
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int jj = pl + PL * r, pp = t0 + jj;
        if (jj < nt && pp != p) {
            const int row = hit ? rc.row[pp - lo] : __ldcg(table + pp / bs) * bs + pp % bs;
            vr[r] = __ldcg((const uint4 *)(vb + (size_t)row * stride) + c);
        }
    }
}

template <int D, bool F16>
static __device__ void stp_attention(const cuda_step_ins &I, float *sm, stp_rows &rc,
                                     const int32_t *kpos, int stp_pos) {
    using L = stp_al<D, F16>;
    constexpr int EL = L::EL, CH = L::CH, KQ = L::KQ, TP = L::TP, TK = L::TK, PL = L::PL;
    constexpr int R = L::R, ES = F16 ? 2 : 4;
    if ((int)blockIdx.x >= I.n_head * I.splits) return;
    const int h = blockIdx.x % I.n_head, sp = blockIdx.x / I.n_head;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int G = I.n_head / I.n_head_kv, kvh = h / G;
    float *qs = sm, *kc = qs + D, *vc = kc + D, *sc = vc + D; /* sc: [TK] */
    float *red = sc + TK;                                     /* [STP_WARPS][D] */
    float *wred = red + STP_WARPS * D;                        /* [2][TK / 32] */
    const int p = stp_position(I.pos, kpos, stp_pos);
    const int S = stp_splits_now(p, I.window, I.splits, TK);
    if (sp >= S) return; /* the span needs fewer splits */
    const bool hit = I.same_rows && rc.valid;
    int lo, hi;
    const int32_t *table = NULL;
    if (hit) {
        lo = rc.lo, hi = rc.lo + rc.n - 1;
    } else {
        const int lo0 = I.window > 0 ? max(0, p - I.window + 1) : 0;
        const int chunk = ((p + 1 - lo0 + S - 1) / S + 31) & ~31;
        lo = lo0 + sp * chunk, hi = min(p, lo + chunk - 1);
        table = I.block_table + (size_t)__ldcg(I.seq_row) * I.max_blocks;
        if (tid == 0) rc.valid = 0; /* its rows are rewritten below */
    }
    const int bs = I.block_size;
    const size_t stride = (size_t)I.kv_dim * ES;
    const char *kb = (const char *)I.kc + (size_t)kvh * D * ES;
    const char *vb = (const char *)I.vc + (size_t)kvh * D * ES;
    const int j = tid / TP, qd = tid % TP; /* score pass: position j, piece group qd */
    const int c = tid % CH, pl = tid / CH; /* value pass */
    uint4 kr[KQ], vr[R];
    if (lo <= hi) stp_attn_load<D, F16>(lo, lo, hi, p, hit, rc, table, bs, kb, vb, stride, kr, vr);

    /* rope of q (scaled) and k, the current k and v as the cache holds them */
    const bool store = h % G == 0 && sp == 0;
    const size_t coff = (size_t)__ldcg(I.slots) * I.kv_dim + (size_t)kvh * D;
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

    float m = -INFINITY, l = 0.0f, o[EL];
#pragma unroll
    for (int e = 0; e < EL; e++) o[e] = 0.0f;
    for (int t0 = lo; t0 <= hi; t0 += TK) {
        const int nt = min(TK, hi + 1 - t0);
        if (t0 != lo) {
            __syncthreads(); /* the last tile's sc and wred are read */
            stp_attn_load<D, F16>(t0, lo, hi, p, hit, rc, table, bs, kb, vb, stride, kr, vr);
        }
        /* scores: KQ pieces of a row a thread, summed over its TP lanes */
        float s = 0.0f;
        if (j < nt) {
            const float *qq = qs + qd * (KQ * EL);
            if (t0 + j == p) {
#pragma unroll
                for (int d = 0; d < KQ * EL; d++) s = fmaf(qq[d], kc[qd * (KQ * EL) + d], s);
            } else {
#pragma unroll
                for (int u = 0; u < KQ; u++) {
                    float kf[EL];
                    stp_unpack<F16>(kr[u], kf);
#pragma unroll
                    for (int e = 0; e < EL; e++) s = fmaf(qq[u * EL + e], kf[e], s);
                }
            }
        }
#pragma unroll
        for (int o2 = 1; o2 < TP; o2 <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o2);
        if (qd == 0 && j < nt) sc[j] = s;
        __syncthreads();
        /* the tile's max, then its exponentials and their sum */
        if (tid < TK) {
            float t = tid < nt ? sc[tid] : -INFINITY;
#pragma unroll
            for (int o2 = 16; o2 > 0; o2 >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o2));
            if (lane == 0) wred[warp] = t;
        }
        __syncthreads();
        float tmax = wred[0];
#pragma unroll
        for (int w = 1; w < TK / 32; w++) tmax = fmaxf(tmax, wred[w]);
        const float mn = fmaxf(m, tmax), corr = expf(m - mn); /* 0 on the first tile */
        m = mn;
        if (tid < TK) {
            const float pw = tid < nt ? expf(sc[tid] - mn) : 0.0f;
            sc[tid] = pw;
            float ts = pw;
#pragma unroll
            for (int o2 = 16; o2 > 0; o2 >>= 1) ts += __shfl_xor_sync(0xffffffffu, ts, o2);
            if (lane == 0) wred[TK / 32 + warp] = ts;
        }
        __syncthreads();
        float tsum = 0.0f;
#pragma unroll
        for (int w = 0; w < TK / 32; w++) tsum += wred[TK / 32 + w];
        l = l * corr + tsum;
        /* values */
#pragma unroll
        for (int e = 0; e < EL; e++) o[e] *= corr;
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int jj = pl + PL * r;
            if (jj < nt) {
                const float w = sc[jj];
                float vf[EL];
                if (t0 + jj == p) {
#pragma unroll
                    for (int e = 0; e < EL; e++) vf[e] = vc[c * EL + e];
                } else {
                    stp_unpack<F16>(vr[r], vf);
                }
#pragma unroll
                for (int e = 0; e < EL; e++) o[e] = fmaf(w, vf[e], o[e]);
            }
        }
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
    const size_t at = (size_t)h * I.splits + sp;
    if (tid < D) {
        float acc = 0.0f;
        for (int w = 0; w < STP_WARPS; w++) acc += red[w * D + tid];
        I.part[at * D + tid] = acc;
    }
    if (tid == 0) {
        I.part_ml[2 * at] = m, I.part_ml[2 * at + 1] = l;
        if (!hit && hi + 1 - lo <= STP_ROWS) { /* the rows of every tile are in rc.row */
            rc.lo = lo, rc.n = max(0, hi + 1 - lo), rc.valid = 1;
        }
    }
}

/* ---- the kernel ---- */
__global__ void __launch_bounds__(STP_THREADS, 1)
    step_kernel(const cuda_step_ins *__restrict__ prog, int n_ins, unsigned *bar,
                unsigned long long *trace, const int32_t *kpos) {
    extern __shared__ int4 stp_sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint8_t *ring = (uint8_t *)stp_sm + (size_t)warp * STP_S * STP_SLOT;
    uint8_t *scratch = (uint8_t *)stp_sm + STP_RING;
    /* warps of the grid numbered across the CTAs first, so a mat-vec of
     * fewer groups than warps still spreads over every SM */
    const int gw = warp * gridDim.x + blockIdx.x, nw = gridDim.x * STP_WARPS;

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
    __shared__ stp_rows rows;
    __shared__ int stp_pos;
    if (threadIdx.x == 0) {
        rows.valid = 0;
        stp_pos = kpos ? __ldcg(kpos) : 0;
    }
    if (n_ins > 0 && threadIdx.x < (int)(sizeof ins_sm / 4))
        ((uint32_t *)&ins_sm)[threadIdx.x] = __ldg((const uint32_t *)prog + threadIdx.x);
    __syncthreads();
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
            const float sc = stp_input(I, xq, xd, xs, red, kpos, stp_pos);
            if (trace && threadIdx.x == 0) atomicMax(trace + 4 * i + 1, stp_now());
            stp_matvec(I, mv[i], P, ring, xq, xd, xs, sc, gw, nw, lane);
            __syncthreads(); /* the x buffers are rewritten by the next instruction */
        } else if (I.head_dim == 64) {
            if (I.f16)
                stp_attention<64, true>(I, (float *)scratch, rows, kpos, stp_pos);
            else
                stp_attention<64, false>(I, (float *)scratch, rows, kpos, stp_pos);
        } else {
            if (I.f16)
                stp_attention<128, true>(I, (float *)scratch, rows, kpos, stp_pos);
            else
                stp_attention<128, false>(I, (float *)scratch, rows, kpos, stp_pos);
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

int cuda_step_ctas(void) {
    return cuda_step_supported() ? g_step_ctas : 0;
}

int cuda_step_run(cudaStream_t s, const cuda_step_ins *prog, int n_ins, const int32_t *pos,
                  unsigned *bar, unsigned long long *trace) {
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
    cudaError_t e = cudaLaunchKernelEx(&cfg, step_kernel, prog, n_ins, bar, trace, pos);
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
    cuda_step_ins *hi = (cuda_step_ins *)h;
    const cuda_step_ins *prev = NULL; /* the attention before */
    for (int t = 0; t < n_ins; t++) {
        cuda_step_ins &I = hi[t];
        if (I.merge_splits && t > 0 && hi[t - 1].kind == CUDA_STEP_ATTN) {
            const cuda_step_ins &A = hi[t - 1];
            I.merge_tile = stp_tile(A.head_dim, A.f16 != 0);
            I.merge_window = A.window;
            I.merge_pos = A.pos;
        }
        if (I.kind != CUDA_STEP_ATTN) continue;
        I.same_rows = prev && prev->pos == I.pos && prev->seq_row == I.seq_row &&
                      prev->block_table == I.block_table && prev->block_size == I.block_size &&
                      prev->max_blocks == I.max_blocks && prev->window == I.window &&
                      prev->n_head == I.n_head && prev->splits == I.splits &&
                      prev->head_dim == I.head_dim && prev->f16 == I.f16;
        prev = &I;
    }
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
