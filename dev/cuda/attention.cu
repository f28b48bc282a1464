/* dev/cuda/attention.cu: workbench for the paged decode attention
 * (src/cuda/cuda_attn.cu): a check against a float64 CPU reference, then the
 * time of one layer's attention for one decoding token per sequence at
 * growing context lengths, with the number of sequence splits (flash-
 * decoding) as the library picks it and forced to other values, and the KV
 * bytes read per second next to a device-to-device cudaMemcpy measured in
 * the same run. f16 cache, blocks of 16 positions in shuffled order.
 *
 * usage: dev-cuda-attention   (build: the dev-cuda-attention CMake target) */
#include "cuda/cuda_impl.h"

#include <algorithm>
#include <cuda_fp16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

struct setup {
    int n_seq, len, H, HKV, D, bs = 16, max_blocks;
    std::vector<int32_t> bt, pos, row;
    std::vector<__half> K, V; /* [slots][kv_dim] */
    std::vector<float> Q;
    int32_t *dbt, *dpos, *drow;
    __half *dK, *dV;
    float *dQ, *dO, *scratch = nullptr;
    size_t scratch_cap = 0;
};

static void make(setup &s) {
    int kv_dim = s.HKV * s.D;
    s.max_blocks = (s.len + s.bs - 1) / s.bs;
    int n_blocks = s.n_seq * s.max_blocks;
    std::vector<int32_t> perm(n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) std::swap(perm[i], perm[(rng >> 20) % (i + 1)]), frand();
    s.bt = perm;
    size_t slots = (size_t)n_blocks * s.bs;
    s.K.resize(slots * kv_dim);
    s.V.resize(slots * kv_dim);
    for (auto &v : s.K) v = __float2half(frand());
    for (auto &v : s.V) v = __float2half(frand());
    s.Q.resize((size_t)s.n_seq * s.H * s.D);
    for (auto &v : s.Q) v = frand();
    s.pos.assign(s.n_seq, s.len - 1);
    s.row.resize(s.n_seq);
    for (int i = 0; i < s.n_seq; i++) s.row[i] = i;
    CK(cudaMalloc(&s.dbt, s.bt.size() * 4));
    CK(cudaMalloc(&s.dpos, s.n_seq * 4));
    CK(cudaMalloc(&s.drow, s.n_seq * 4));
    CK(cudaMalloc(&s.dK, s.K.size() * 2));
    CK(cudaMalloc(&s.dV, s.V.size() * 2));
    CK(cudaMalloc(&s.dQ, s.Q.size() * 4));
    CK(cudaMalloc(&s.dO, s.Q.size() * 4));
    CK(cudaMemcpy(s.dbt, s.bt.data(), s.bt.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.dpos, s.pos.data(), s.n_seq * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.drow, s.row.data(), s.n_seq * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.dK, s.K.data(), s.K.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.dV, s.V.data(), s.V.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.dQ, s.Q.data(), s.Q.size() * 4, cudaMemcpyHostToDevice));
}

static void release(setup &s) {
    cudaFree(s.dbt), cudaFree(s.dpos), cudaFree(s.drow), cudaFree(s.dK), cudaFree(s.dV);
    cudaFree(s.dQ), cudaFree(s.dO), cudaFree(s.scratch);
}

static void run(cudaStream_t st, setup &s, int splits) {
    size_t need = cuda_attn_scratch(s.n_seq, s.H, s.D, splits);
    if (need > s.scratch_cap) {
        cudaFree(s.scratch);
        CK(cudaMalloc(&s.scratch, need * 4));
        s.scratch_cap = need;
    }
    bk_kv_layer kv = {s.dK, s.dV, s.HKV * s.D, 1};
    bk_attn_batch ab = {s.n_seq, s.dpos, s.drow, s.dbt, s.max_blocks, s.bs, s.len};
    if (cuda_attention(st, s.dO, s.dQ, &kv, &ab, s.H, s.HKV, s.D, 0, 1.0f / sqrtf((float)s.D),
                       splits, 0, s.scratch)) {
        fprintf(stderr, "cuda_attention: %s\n", err_get());
        exit(1);
    }
}

static double check(cudaStream_t st, setup &s, int splits) {
    run(st, s, splits);
    CK(cudaStreamSynchronize(st));
    CK(cudaGetLastError());
    std::vector<float> o(s.Q.size());
    CK(cudaMemcpy(o.data(), s.dO, o.size() * 4, cudaMemcpyDeviceToHost));
    int kv_dim = s.HKV * s.D, G = s.H / s.HKV;
    double worst = 0;
    std::vector<double> sc(s.len);
    for (int i = 0; i < s.n_seq; i++)
        for (int h = 0; h < s.H; h++) {
            int kvh = h / G;
            double mx = -1e300, sum = 0;
            for (int p = 0; p < s.len; p++) {
                size_t slot = (size_t)s.bt[i * s.max_blocks + p / s.bs] * s.bs + p % s.bs;
                double d = 0;
                for (int e = 0; e < s.D; e++)
                    d += (double)s.Q[((size_t)i * s.H + h) * s.D + e] *
                         __half2float(s.K[slot * kv_dim + kvh * s.D + e]);
                sc[p] = d / sqrt((double)s.D);
                mx = std::max(mx, sc[p]);
            }
            for (int p = 0; p < s.len; p++) sum += sc[p] = exp(sc[p] - mx);
            for (int e = 0; e < s.D; e++) {
                double acc = 0;
                for (int p = 0; p < s.len; p++) {
                    size_t slot = (size_t)s.bt[i * s.max_blocks + p / s.bs] * s.bs + p % s.bs;
                    acc += sc[p] / sum * __half2float(s.V[slot * kv_dim + kvh * s.D + e]);
                }
                double d = fabs(acc - o[((size_t)i * s.H + h) * s.D + e]);
                if (!(d <= worst)) worst = d;
            }
        }
    return worst;
}

template <typename F> static double time_us(cudaStream_t s, int reps, F &&f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    f();
    CK(cudaStreamSynchronize(s));
    std::vector<double> t;
    for (int k = 0; k < 7; k++) {
        CK(cudaEventRecord(a, s));
        for (int i = 0; i < reps; i++) f();
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(1000.0 * ms / reps);
    }
    CK(cudaGetLastError());
    std::sort(t.begin(), t.end());
    return t[3];
}

int main(void) {
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    size_t cb = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, cb));
    CK(cudaMalloc(&b, cb));
    double t_copy =
        time_us(st, 10, [&] { cudaMemcpyAsync(b, a, cb, cudaMemcpyDeviceToDevice, st); });
    double copy_gbs = 2.0 * cb / t_copy / 1e3;
    cudaFree(a), cudaFree(b);
    printf("cudaMemcpy D2D: %.0f GB/s (read+write)\n", copy_gbs);

    int failures = 0;
    /* checks: odd lengths, GQA shapes, forced splits */
    struct {
        int n_seq, len, H, HKV, D;
    } chk[] = {
        {2, 3001, 32, 8, 64}, {1, 777, 8, 8, 128}, {3, 1500, 4, 1, 256}, {2, 50, 14, 2, 128}};
    for (auto &c : chk) {
        setup s;
        s.n_seq = c.n_seq, s.len = c.len, s.H = c.H, s.HKV = c.HKV, s.D = c.D;
        make(s);
        for (int splits : {1, 7, cuda_attn_splits(s.n_seq, s.HKV, s.max_blocks * s.bs)}) {
            double e = check(st, s, splits);
            bool ok = e < 1e-4;
            failures += !ok;
            printf("check seqs %d len %5d heads %2d/%d D %3d splits %2d: max err %.2e %s\n",
                   c.n_seq, c.len, c.H, c.HKV, c.D, splits, e, ok ? "ok" : "FAIL");
        }
        release(s);
    }

    printf("\n%-4s %-6s %-9s %6s %6s %9s %8s %6s\n", "seqs", "len", "heads/D", "splits", "", "us",
           "KV GB/s", "%copy");
    struct {
        int n_seq, H, HKV, D;
    } shapes[] = {{1, 32, 8, 64}, {1, 32, 8, 128}, {8, 32, 8, 64}};
    for (auto &sh : shapes)
        for (int len : {256, 1024, 4096, 16384, 65536}) {
            if ((size_t)sh.n_seq * len > 200000) continue;
            setup s;
            s.n_seq = sh.n_seq, s.len = len, s.H = sh.H, s.HKV = sh.HKV, s.D = sh.D;
            make(s);
            int lib = cuda_attn_splits(s.n_seq, s.HKV, s.max_blocks * s.bs);
            double kv_bytes = 2.0 * s.n_seq * len * s.HKV * s.D * 2;
            for (int splits : {1, lib / 2 > 0 ? lib / 2 : 1, lib, 2 * lib}) {
                double us = time_us(st, 20, [&] { run(st, s, splits); });
                printf("%-4d %-6d %2d/%d/%-4d %6d %6s %9.2f %8.0f %5.0f%%\n", sh.n_seq, len, sh.H,
                       sh.HKV, sh.D, splits, splits == lib ? "(lib)" : "", us, kv_bytes / us / 1e3,
                       100 * kv_bytes / us / 1e3 / copy_gbs);
            }
            release(s);
        }
    printf("\nattention: %s (%d failures)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
