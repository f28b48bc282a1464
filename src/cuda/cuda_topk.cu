/* cuda_topk.cu: the backend's topk op (backend.h, BK_TOPK): for each row of
 * logits, the BK_TOPK best (id, logit) pairs in the sampler's order (clean
 * logit descending, id ascending) and the row's log-sum-exp. One CTA of
 * 1024 threads per row; the rows of a decode step run side by side.
 *
 * Every logit is cleaned (NaN -> -inf, +inf -> FLT_MAX) and mapped to an
 * order-preserving 32-bit key (-0 taken as +0, so equal floats have equal
 * keys). A radix select finds the group holding the k-th largest entry
 * (k = min(BK_TOPK, n_vocab)): up to four passes over the row, each a
 * histogram of one 8-bit digit (most significant first) of the keys that
 * match the digits chosen so far (one shared histogram per warp), picking
 * the bin where the k-th largest lies; it stops early when that bin holds
 * exactly the entries still needed, else after four passes the group is
 * one key T. A last pass collects every entry above the group (at most
 * k - 1; arrival order does not matter, the final sort orders them) and the
 * group's entries: gathered when they fit in shared memory and ranked by
 * index, else (thousands of ties) taken in index order chunk by chunk, so
 * that ties at T go to the lowest ids and the result never depends on
 * thread timing. Then the k are sorted by rank (each thread counts the
 * entries that beat its own). The first pass also finds the maximum, the
 * second adds exp(l - max) (float exp, per-thread double sums, reduced in
 * double) for the log-sum-exp.
 *
 * Cost (H200, 32 rows of 128256 logits): about 0.1 ms, against 2.2 ms to
 * download the rows (and a host pass over them). Each pass is bound by one
 * SM's load throughput: spreading a row over several CTAs would be the next
 * step if it ever matters. */
#include "cuda/cuda_impl.h"

#include <float.h>

#define TK_THREADS 1024
#define TK_WARPS   (TK_THREADS / 32)
#define TK_EQ_CAP  1024 /* group entries gathered in shared memory */

static __device__ __forceinline__ float tk_clean(float x) {
    if (isnan(x)) return -INFINITY;
    if (x == INFINITY) return FLT_MAX;
    return x;
}

/* larger key = larger float; -0 and +0 share one key */
static __device__ __forceinline__ uint32_t tk_key(float x) {
    uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ float tk_unkey(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* f(clean logit, index) for every entry of the row, this thread's share,
 * TK_UNROLL loads in flight at a time. */
#define TK_UNROLL 8
template <typename F> static __device__ __forceinline__ void tk_scan(const float *x, int n, F f) {
    const int stride = TK_THREADS * TK_UNROLL;
    int i0 = threadIdx.x;
    for (; i0 + (TK_UNROLL - 1) * TK_THREADS < n; i0 += stride) {
        float v[TK_UNROLL];
#pragma unroll
        for (int u = 0; u < TK_UNROLL; u++) v[u] = x[i0 + u * TK_THREADS];
#pragma unroll
        for (int u = 0; u < TK_UNROLL; u++) f(tk_clean(v[u]), i0 + u * TK_THREADS);
    }
    for (; i0 < n; i0 += TK_THREADS) f(tk_clean(x[i0]), i0);
}

__global__ void __launch_bounds__(TK_THREADS)
    topk_kernel(int32_t *ids, float *vals, float *lse, const float *logits, int n) {
    __shared__ unsigned hist[TK_WARPS * 256]; /* one histogram per warp */
    __shared__ unsigned tot[256];
    __shared__ uint32_t wmax[TK_WARPS];
    __shared__ double wsum[TK_WARPS];
    __shared__ int wcnt[TK_WARPS];
    __shared__ int s_ngt, s_neq;
    __shared__ int32_t eqi[TK_EQ_CAP];
    __shared__ float eqv[TK_EQ_CAP];
    __shared__ uint32_t s_maxkey;
    __shared__ int s_bin, s_above, s_cnt;
    __shared__ uint32_t ck[BK_TOPK];
    __shared__ int32_t ci[BK_TOPK];
    __shared__ float cv[BK_TOPK];

    cuda_pdl_wait();
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *x = logits + (size_t)row * n;
    int32_t *oid = ids + (size_t)row * BK_TOPK;
    float *oval = vals + (size_t)row * BK_TOPK;
    const int k = n < BK_TOPK ? n : BK_TOPK;
    if (k <= 0) {
        for (int j = tid; j < BK_TOPK; j += TK_THREADS) oid[j] = -1, oval[j] = -INFINITY;
        if (lse && tid == 0) lse[row] = -INFINITY;
        return;
    }

    /* ---- radix select: the k-th largest key lies in the group of keys
     * whose bits under `mask` equal `prefix`; krem of that group are taken */
    uint32_t prefix = 0, mask = 0;
    int krem = k;
    float mx = -INFINITY;
    double acc = 0;
    bool summed = false;
    unsigned *wh = hist + warp * 256;
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 24 - 8 * pass;
        for (int b = tid; b < TK_WARPS * 256; b += TK_THREADS) hist[b] = 0;
        __syncthreads();
        const bool do_sum = lse && pass == 1;
        uint32_t kmax = 0;
        tk_scan(x, n, [&](float v, int) {
            uint32_t key = tk_key(v);
            kmax = key > kmax ? key : kmax;
            if (do_sum && v != -INFINITY) acc += (double)expf(v - mx);
            if ((key & mask) == prefix) {
                unsigned bin = (key >> shift) & 255u;
                atomicAdd(&wh[bin], 1u);
            }
        });
        summed |= do_sum;
        if (pass == 0) {
            kmax = __reduce_max_sync(0xffffffffu, kmax);
            if (lane == 0) wmax[warp] = kmax;
        }
        __syncthreads();
        if (tid < 256) {
            unsigned t = 0;
            for (int w = 0; w < TK_WARPS; w++) t += hist[w * 256 + tid];
            tot[tid] = t;
        }
        if (pass == 0 && tid == 0) {
            uint32_t m = 0;
            for (int w = 0; w < TK_WARPS; w++) m = wmax[w] > m ? wmax[w] : m;
            s_maxkey = m;
        }
        __syncthreads();
        if (warp == 0) {
            /* lane l holds bins 255 - 8l down to 248 - 8l; counts from the top */
            int s = 0;
            for (int j = 0; j < 8; j++) s += (int)tot[255 - 8 * lane - j];
            int incl = s;
            for (int o = 1; o < 32; o <<= 1) {
                int v = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += v;
            }
            int c = incl - s;
            if (c < krem && krem <= incl) {
                for (int j = 0; j < 8; j++) {
                    int b = 255 - 8 * lane - j, h = (int)tot[b];
                    if (c + h >= krem) {
                        s_bin = b;
                        s_above = c;
                        s_cnt = h;
                        break;
                    }
                    c += h;
                }
            }
        }
        __syncthreads();
        if (pass == 0) mx = tk_unkey(s_maxkey);
        krem -= s_above;
        prefix |= (uint32_t)s_bin << shift;
        mask |= 0xffu << shift;
        if (s_cnt == krem) break; /* the whole bin is taken: no need to narrow it */
    }
    if (lse && !summed)
        tk_scan(x, n, [&](float v, int) {
            if (v != -INFINITY) acc += (double)expf(v - mx);
        });

    /* ---- collect. The group (masked key == prefix) holds s_cnt entries,
     * of which the krem with the lowest indices are taken; everything above
     * it (k - krem entries) is. Order of arrival does not matter for those:
     * the final sort orders them. The group's entries are gathered too when
     * they fit (the usual case: one entry, or a few ties), then ranked by
     * index; a larger group (heavy ties) is walked in index order instead,
     * where its first krem come soon. */
    const int n_gt = k - krem, n_eq = s_cnt;
    const bool gather_eq = n_eq <= TK_EQ_CAP;
    if (tid == 0) s_ngt = s_neq = 0;
    __syncthreads();
    tk_scan(x, n, [&](float v, int i) {
        uint32_t mk = tk_key(v) & mask;
        if (mk > prefix) {
            int p = atomicAdd(&s_ngt, 1);
            ck[p] = tk_key(v), ci[p] = i, cv[p] = v;
        } else if (gather_eq && mk == prefix) {
            int p = atomicAdd(&s_neq, 1);
            eqi[p] = i, eqv[p] = v;
        }
    });
    __syncthreads();
    if (gather_eq) {
        for (int t = tid; t < n_eq; t += TK_THREADS) {
            int my = eqi[t], r = t;
            if (n_eq > krem) { /* rank by index */
                r = 0;
                for (int j = 0; j < n_eq; j++) r += eqi[j] < my;
            }
            if (r < krem) ck[n_gt + r] = tk_key(eqv[t]), ci[n_gt + r] = my, cv[n_gt + r] = eqv[t];
        }
    } else {
        /* chunks of TK_THREADS entries in index order, positions by counts */
        int base = 0;
        const unsigned lt = (1u << lane) - 1;
        for (int i0 = 0; i0 < n && base < krem; i0 += TK_THREADS) {
            int i = i0 + tid;
            float v = i < n ? tk_clean(x[i]) : -INFINITY;
            bool eq = i < n && (tk_key(v) & mask) == prefix;
            unsigned be = __ballot_sync(0xffffffffu, eq);
            if (lane == 0) wcnt[warp] = __popc(be);
            __syncthreads();
            int o = base, tot_c = 0;
            for (int w = 0; w < TK_WARPS; w++) {
                if (w < warp) o += wcnt[w];
                tot_c += wcnt[w];
            }
            o += __popc(be & lt);
            if (eq && o < krem) ck[n_gt + o] = tk_key(v), ci[n_gt + o] = i, cv[n_gt + o] = v;
            base += tot_c;
            __syncthreads(); /* wcnt is rewritten by the next chunk */
        }
    }
    __syncthreads();

    /* ---- sort the k by rank; fill the rest */
    if (tid < k) {
        uint32_t mk = ck[tid];
        int32_t mi = ci[tid];
        int rank = 0;
        for (int j = 0; j < k; j++) rank += ck[j] > mk || (ck[j] == mk && ci[j] < mi);
        oid[rank] = mi;
        oval[rank] = cv[tid];
    } else if (tid < BK_TOPK) {
        oid[tid] = -1;
        oval[tid] = -INFINITY;
    }

    /* ---- log-sum-exp */
    if (lse) {
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) wsum[warp] = acc;
        __syncthreads();
        if (tid == 0) {
            double s = 0;
            for (int w = 0; w < TK_WARPS; w++) s += wsum[w];
            lse[row] = mx == -INFINITY ? -INFINITY : (float)((double)mx + log(s));
        }
    }
}

int cuda_topk(cudaStream_t s, int32_t *ids, float *vals, float *lse, const float *logits, int rows,
              int n_vocab) {
    if (rows <= 0) return 0;
    if (rows > 65535 || n_vocab < 0) {
        err_set("cuda topk: %d rows of %d logits not supported", rows, n_vocab);
        return -1;
    }
    cuda_launch(topk_kernel, dim3(rows), dim3(TK_THREADS), 0, s, ids, vals, lse, logits, n_vocab);
    return 0;
}

/* ---- argmax: the greedy pick (backend.h's argmax op) ----
 * Each entry is one 64-bit key, (order key of its clean logit) << 32 |
 * (2^32 - 1 - index), so the largest key is the highest logit with the
 * lowest index on ties. A row is spread over CTAs of AM_THREADS * AM_PER
 * entries (a 128k vocabulary: 32 CTAs); each CTA reduces its share and
 * folds it into best[row] with atomicMax, and the CTA that arrives last
 * (count[row]) turns the winner into an id and leaves best and count at 0
 * for the next launch. */
#define AM_THREADS 256
#define AM_PER     16

__global__ void __launch_bounds__(AM_THREADS)
    argmax_kernel(int32_t *ids, const float *logits, int n, unsigned long long *best,
                  unsigned *count) {
    __shared__ unsigned long long wbest[AM_THREADS / 32];
    const int row = blockIdx.y, i0 = blockIdx.x * AM_THREADS * AM_PER + threadIdx.x;
    const float *x = logits + (size_t)row * n;
    unsigned long long k = 0; /* below every entry's key */
    cuda_pdl_wait();
#pragma unroll
    for (int j = 0; j < AM_PER; j++) {
        const int i = i0 + j * AM_THREADS;
        if (i < n) {
            const unsigned long long e =
                (unsigned long long)tk_key(tk_clean(x[i])) << 32 | (0xffffffffu - (unsigned)i);
            k = e > k ? e : k;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long v = __shfl_xor_sync(0xffffffffu, k, o);
        k = v > k ? v : k;
    }
    if ((threadIdx.x & 31) == 0) wbest[threadIdx.x >> 5] = k;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < AM_THREADS / 32; w++) k = wbest[w] > k ? wbest[w] : k;
        atomicMax(best + row, k);
        __threadfence();
        if (atomicAdd(count + row, 1u) == gridDim.x - 1) { /* every CTA's max is in */
            const unsigned long long b = atomicExch(best + row, 0ull);
            count[row] = 0;
            ids[row] = (int32_t)(0xffffffffu - (unsigned)b);
        }
    }
}

int cuda_argmax(cudaStream_t s, int32_t *ids, const float *logits, int rows, int n_vocab,
                unsigned long long *best, unsigned *count) {
    if (rows <= 0) return 0;
    if (rows > 65535 || n_vocab < 1) {
        err_set("cuda argmax: %d rows of %d logits not supported", rows, n_vocab);
        return -1;
    }
    const int per = AM_THREADS * AM_PER;
    cuda_launch(argmax_kernel, dim3((n_vocab + per - 1) / per, rows), dim3(AM_THREADS), 0, s, ids,
                logits, n_vocab, best, count);
    return 0;
}
