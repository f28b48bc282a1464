/* cuda_attn.cu: attention over the paged KV cache (block tables, grouped-
 * query heads, sliding window), flash-decoding style.
 *
 * A CTA of 128 threads takes one token, one KV head, a slice of GT of the
 * query heads that share it, and one split of the token's visible positions
 * [max(0, pos - window + 1), pos]. It walks its positions in tiles of 128:
 *   scores   one position per thread: the K row (f16 or f32, 16-byte loads)
 *            against the GT query heads (in shared memory, pre-scaled);
 *   softmax  online: running max m and sum l per head, the accumulators
 *            rescaled when the max grows;
 *   values   one position per warp at a time, each lane D/32 dimensions of
 *            the V row (coalesced), accumulated for the GT heads.
 * With one split the CTA writes the normalised output; otherwise it writes
 * (m, l, o) and a second kernel merges the splits. The number of splits is
 * fixed per batch shape on the host (so a captured graph stays valid as the
 * sequences grow); each CTA finds its positions from pos[] on the device. */
#include "cuda/cuda_impl.h"

#include <cuda_fp16.h>
#include <math.h>

#define ATT_THREADS       128
#define ATT_TILE          128
#define ATT_MIN_CHUNK     32
#define ATT_ONE_HEAD_CTAS 32 /* grids up to this many CTAs may go one head a CTA */

template <int VEC, int GT, bool F16>
__global__ void __launch_bounds__(ATT_THREADS)
    attn_kernel(float *__restrict__ out, float *__restrict__ part, const float *__restrict__ q,
                const void *__restrict__ Kc, const void *__restrict__ Vc, int kv_dim,
                const int32_t *__restrict__ pos, const int32_t *__restrict__ seq_row,
                const int32_t *__restrict__ block_table, int max_blocks, int bs, int n_head,
                int n_head_kv, int slices, int window, float scale, int splits, int det_chunk) {
    constexpr int D = 32 * VEC;
    cuda_pdl_wait();
    extern __shared__ float sm[];
    float *qs = sm;                  /* [GT][D] */
    float *sc = qs + GT * D;         /* [GT][ATT_TILE] */
    float *red = sc + GT * ATT_TILE; /* [4][GT][D] and small reductions */

    const int G = n_head / n_head_kv;
    const int slice = blockIdx.x % slices, kvh = (blockIdx.x / slices) % n_head_kv,
              i = blockIdx.x / (slices * n_head_kv), sp = blockIdx.y;
    const int h0 = kvh * G + slice * GT; /* first query head of this CTA */
    const int ng = min(GT, G - slice * GT);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    const int p_last = pos[i];
    const int lo = window > 0 ? max(0, p_last - window + 1) : 0;
    const int len = p_last - lo + 1;
    int chunk = (len + splits - 1) / splits;
    chunk = det_chunk ? det_chunk : (max(chunk, ATT_MIN_CHUNK) + 31) & ~31;
    const int start = lo + sp * chunk, stop = min(p_last + 1, start + chunk);
    const int32_t *table = block_table + (size_t)seq_row[i] * max_blocks;

    for (int e = tid; e < GT * D; e += ATT_THREADS) {
        int g = e / D;
        qs[e] = g < ng ? q[((size_t)i * n_head + h0 + g) * D + e % D] * scale : 0.0f;
    }
    __syncthreads();

    float m[GT], l[GT], o[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int v = 0; v < VEC; v++) o[g][v] = 0.0f;
    }

    for (int t0 = start; t0 < stop; t0 += ATT_TILE) {
        const int nt = min(ATT_TILE, stop - t0);
        /* scores: one position per thread */
        float s[GT];
#pragma unroll
        for (int g = 0; g < GT; g++) s[g] = -INFINITY;
        if (tid < nt) {
            int p = t0 + tid;
            size_t off = ((size_t)table[p / bs] * bs + p % bs) * kv_dim + (size_t)kvh * D;
#pragma unroll
            for (int g = 0; g < GT; g++) s[g] = 0.0f;
#pragma unroll 4
            for (int d = 0; d < D; d += 8) {
                float kf[8];
                if (F16) {
                    uint4 raw = __ldg((const uint4 *)((const __half *)Kc + off + d));
                    const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        float2 f = __half22float2(h2[j]);
                        kf[2 * j] = f.x, kf[2 * j + 1] = f.y;
                    }
                } else {
                    const float4 *src = (const float4 *)((const float *)Kc + off + d);
                    float4 a = __ldg(src), b = __ldg(src + 1);
                    kf[0] = a.x, kf[1] = a.y, kf[2] = a.z, kf[3] = a.w;
                    kf[4] = b.x, kf[5] = b.y, kf[6] = b.z, kf[7] = b.w;
                }
#pragma unroll
                for (int g = 0; g < GT; g++) {
                    const float4 *qq = (const float4 *)(qs + g * D + d);
                    float4 a = qq[0], b = qq[1];
                    s[g] = fmaf(a.x, kf[0], s[g]);
                    s[g] = fmaf(a.y, kf[1], s[g]);
                    s[g] = fmaf(a.z, kf[2], s[g]);
                    s[g] = fmaf(a.w, kf[3], s[g]);
                    s[g] = fmaf(b.x, kf[4], s[g]);
                    s[g] = fmaf(b.y, kf[5], s[g]);
                    s[g] = fmaf(b.z, kf[6], s[g]);
                    s[g] = fmaf(b.w, kf[7], s[g]);
                }
            }
        }
        /* tile max per head */
        float tmax[GT];
#pragma unroll
        for (int g = 0; g < GT; g++) {
            float v = s[g];
#pragma unroll
            for (int o2 = 16; o2 > 0; o2 >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o2));
            if (lane == 0) red[warp * GT + g] = v;
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < GT; g++) {
            float v = red[g];
#pragma unroll
            for (int w = 1; w < ATT_THREADS / 32; w++) v = fmaxf(v, red[w * GT + g]);
            tmax[g] = v;
        }
#pragma unroll
        for (int g = 0; g < GT; g++) {
            float mn = fmaxf(m[g], tmax[g]);
            float corr = expf(m[g] - mn); /* 0 on the first tile (m = -inf) */
            m[g] = mn;
            float pw = tid < nt ? expf(s[g] - mn) : 0.0f;
            sc[g * ATT_TILE + tid] = pw;
            l[g] = l[g] * corr + pw;
#pragma unroll
            for (int v = 0; v < VEC; v++) o[g][v] *= corr;
        }
        __syncthreads();
        /* values: one position per warp, D/32 dims per lane */
        for (int j = warp; j < nt; j += ATT_THREADS / 32) {
            int p = t0 + j;
            size_t off = ((size_t)table[p / bs] * bs + p % bs) * kv_dim + (size_t)kvh * D +
                         (size_t)lane * VEC;
            float vf[VEC];
            if (F16) {
                const __half *src = (const __half *)Vc + off;
#pragma unroll
                for (int v = 0; v < VEC; v += 2) {
                    if (VEC == 1) {
                        vf[0] = __half2float(src[0]);
                    } else {
                        float2 f = __half22float2(*(const __half2 *)(src + v));
                        vf[v] = f.x;
                        if (v + 1 < VEC) vf[v + 1] = f.y;
                    }
                }
            } else {
                const float *src = (const float *)Vc + off;
#pragma unroll
                for (int v = 0; v < VEC; v++) vf[v] = src[v];
            }
#pragma unroll
            for (int g = 0; g < GT; g++) {
                float w = sc[g * ATT_TILE + j];
#pragma unroll
                for (int v = 0; v < VEC; v++) o[g][v] = fmaf(w, vf[v], o[g][v]);
            }
        }
        __syncthreads();
    }

    /* combine the warps: o by shared memory, l by shuffles */
#pragma unroll
    for (int g = 0; g < GT; g++)
#pragma unroll
        for (int v = 0; v < VEC; v++) red[(warp * GT + g) * D + lane * VEC + v] = o[g][v];
    float lsum[GT];
#pragma unroll
    for (int g = 0; g < GT; g++) {
        float v = l[g];
#pragma unroll
        for (int o2 = 16; o2 > 0; o2 >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o2);
        lsum[g] = v;
    }
    __shared__ float lred[ATT_THREADS / 32][GT];
    if (lane == 0)
#pragma unroll
        for (int g = 0; g < GT; g++) lred[warp][g] = lsum[g];
    __syncthreads();
    for (int e = tid; e < ng * D; e += ATT_THREADS) {
        int g = e / D, d = e % D;
        float acc = 0.0f, lt = 0.0f;
#pragma unroll
        for (int w = 0; w < ATT_THREADS / 32; w++) {
            acc += red[(w * GT + g) * D + d];
            lt += lred[w][g];
        }
        size_t row = (size_t)i * n_head + h0 + g;
        if (splits == 1) {
            out[row * D + d] = acc / lt;
        } else {
            float *pp = part + (row * splits + sp) * (D + 2);
            if (d == 0) {
                pp[0] = start < stop ? m[g] : -INFINITY;
                pp[1] = lt;
            }
            pp[2 + d] = acc;
        }
    }
}

/* merge the splits of one (token, head): a thread per dimension */
__global__ void attn_merge_kernel(float *out, const float *part, int D, int splits) {
    cuda_pdl_wait();
    size_t row = blockIdx.x;
    const float *pp = part + row * splits * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, pp[s * (D + 2)]);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float L = 0.0f, acc = 0.0f;
        for (int s = 0; s < splits; s++) {
            const float *ps = pp + s * (D + 2);
            if (ps[0] == -INFINITY) continue;
            float w = expf(ps[0] - M);
            L += ps[1] * w;
            acc += ps[2 + d] * w;
        }
        out[row * D + d] = acc / L;
    }
}

static int att_gt(int G, int vec) {
    int gt = 1;
    while (gt < G && gt < 8) gt *= 2;
    while (gt * vec > 32) gt /= 2;
    return gt;
}

int cuda_attn_short(int max_span, int window) {
    const int span = window > 0 && max_span > window ? window : max_span;
    return span > 0 && span <= CUDA_ATTN_SHORT;
}

int cuda_attn_splits(int n_tokens, int n_head_kv, int max_len) {
    int ctas = n_tokens * n_head_kv;
    int splits = (264 + ctas - 1) / ctas; /* about two CTAs per multiprocessor */
    int most = (max_len + 63) / 64;
    if (splits > most) splits = most;
    if (splits > 64) splits = 64;
    return splits < 1 ? 1 : splits;
}

int cuda_attn_det_splits(int max_len) {
    int s = (max_len + CUDA_ATTN_DET_CHUNK - 1) / CUDA_ATTN_DET_CHUNK;
    return s < 1 ? 1 : s;
}

size_t cuda_attn_scratch(int n_tokens, int n_head, int head_dim, int splits) {
    return splits > 1 ? (size_t)n_tokens * n_head * splits * (head_dim + 2) : 0;
}

template <int VEC, int GT>
static void attn_launch(cudaStream_t s, dim3 grid, size_t smem, float *out, float *part,
                        const float *q, const bk_kv_layer *kv, const bk_attn_batch *ab, int n_head,
                        int n_head_kv, int slices, int window, float scale, int splits, int chunk) {
    if (kv->type == 1) {
        if (smem > 48 * 1024)
            cudaFuncSetAttribute(attn_kernel<VEC, GT, true>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        cuda_launch(attn_kernel<VEC, GT, true>, grid, dim3(ATT_THREADS), smem, s, out, part, q,
                    (const void *)kv->k, (const void *)kv->v, kv->kv_dim, ab->pos, ab->seq_row,
                    ab->block_table, ab->max_blocks, ab->block_size, n_head, n_head_kv, slices,
                    window, scale, splits, chunk);
    } else {
        if (smem > 48 * 1024)
            cudaFuncSetAttribute(attn_kernel<VEC, GT, false>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        cuda_launch(attn_kernel<VEC, GT, false>, grid, dim3(ATT_THREADS), smem, s, out, part, q,
                    (const void *)kv->k, (const void *)kv->v, kv->kv_dim, ab->pos, ab->seq_row,
                    ab->block_table, ab->max_blocks, ab->block_size, n_head, n_head_kv, slices,
                    window, scale, splits, chunk);
    }
}

template <int VEC>
static void attn_launch_vec(int gt, cudaStream_t s, dim3 grid, size_t smem, float *out, float *part,
                            const float *q, const bk_kv_layer *kv, const bk_attn_batch *ab,
                            int n_head, int n_head_kv, int slices, int window, float scale,
                            int splits, int chunk) {
#define AL(G)                                                                                      \
    attn_launch<VEC, G>(s, grid, smem, out, part, q, kv, ab, n_head, n_head_kv, slices, window,    \
                        scale, splits, chunk)
    switch (gt) {
    case 1:
        AL(1);
        break;
    case 2:
        AL(2);
        break;
    case 4:
        AL(4);
        break;
    default:
        if constexpr (VEC <= 4) AL(8);
        break;
    }
#undef AL
}

int cuda_attention(cudaStream_t s, float *out, const float *q, const bk_kv_layer *kv,
                   const bk_attn_batch *ab, int n_head, int n_head_kv, int head_dim, int window,
                   float scale, int splits, int chunk, float *scratch) {
    int n = ab->n_tokens;
    if (n < 1) return 0;
    int vec = head_dim / 32;
    if (head_dim % 32 || (vec != 1 && vec != 2 && vec != 4 && vec != 8) || n_head_kv < 1 ||
        n_head % n_head_kv || kv->kv_dim != n_head_kv * head_dim) {
        err_set("cuda attention: head size %d (heads %d / %d) is not supported", head_dim, n_head,
                n_head_kv);
        return -1;
    }
    int G = n_head / n_head_kv, gt = att_gt(G, vec), slices = (G + gt - 1) / gt;
    /* A short span on a small grid (single-sequence decode): one query head
     * a CTA. Such an attention is a chain of dependent latencies, which more
     * CTAs shorten (H100, 8B shape's heads, 256 positions: 10.6 -> 8.2 us a
     * layer, 1B shape's 8.3 -> 7.6); a long one is bound by reading K and V,
     * which GT heads a CTA read once for all (16384 positions: 37.7 us with
     * 4 heads a CTA, 61.7 with one). Each head's arithmetic is the same. */
    if (cuda_attn_short(ab->max_span, window) && n * n_head_kv * slices <= ATT_ONE_HEAD_CTAS) {
        gt = 1;
        slices = G;
    }
    size_t smem = ((size_t)gt * head_dim + (size_t)gt * ATT_TILE + 4 * (size_t)gt * head_dim) * 4;
    dim3 grid((unsigned)(n * n_head_kv * slices), (unsigned)splits);
#define ALV(V)                                                                                     \
    attn_launch_vec<V>(gt, s, grid, smem, out, scratch, q, kv, ab, n_head, n_head_kv, slices,      \
                       window, scale, splits, chunk)
    switch (vec) {
    case 1:
        ALV(1);
        break;
    case 2:
        ALV(2);
        break;
    case 4:
        ALV(4);
        break;
    case 8:
        ALV(8);
        break;
    }
#undef ALV
    if (splits > 1)
        cuda_launch(attn_merge_kernel, dim3((unsigned)(n * n_head)),
                    dim3(head_dim < 256 ? head_dim : 256), 0, s, out, (const float *)scratch,
                    head_dim, splits);
    return 0;
}
