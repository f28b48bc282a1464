/* decode.c: decode-shaped memory benchmark of the CPU backend's matmul op.
 *
 * One-token decoding streams every weight matrix once per token from DRAM
 * (a model is far larger than the L3). This program measures, in wall time
 * on T threads (default 2):
 *   read    the read bandwidth of plain AVX2 loads over 1 GiB, the rows
 *           split over the threads (the ceiling a matvec can reach)
 *   TYPE    the backend matmul op, one token, over a stack of matrices of
 *           the Llama-3.2-1B layer shapes (q 2048x2048, k/v 512x2048,
 *           o 2048x2048, gate/up 8192x2048, down 2048x8192) for L layers
 *           (default 8: 270 MB of Q4_K, more than the L3), then the output
 *           matrix 128256x2048 of the same type; GB/s of weight bytes
 * The numbers are only meaningful on an idle machine: run it several times
 * (-r: best of R passes).
 *
 * The weights live in one anonymous mapping, with -H advised for
 * transparent huge pages (MADV_HUGEPAGE; the TLB effect of 2 MB pages).
 *
 * Usage: decode [-t T] [-r R] [-l L] [-o] [-H] [TYPE...]   (-o: output
 *        matrix only, -l 0: no layers) */
#include "harness.h"

#include <pthread.h>
#include <sys/mman.h>

static int use_huge; /* -H */

/* n bytes in a fresh 2 MB-aligned anonymous mapping (munmap frees the
 * aligned part; the head before it stays mapped) */
static uint8_t *arena_alloc(size_t n) {
    const size_t hp = (size_t)2 << 20;
    n = (n + hp - 1) / hp * hp;
    uint8_t *p = mmap(NULL, n + hp, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "mmap failed\n");
        exit(1);
    }
    p = (uint8_t *)(((uintptr_t)p + hp - 1) / hp * hp);
    if (use_huge && madvise(p, n, MADV_HUGEPAGE)) fprintf(stderr, "madvise failed\n");
    return p;
}

typedef struct {
    const uint8_t *p;
    size_t n;
    uint64_t sum;
} rd_part;

SIMD_AVX2_BEGIN
static void *rd_thread(void *a) {
    rd_part *r = a;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 128 <= r->n; i += 128) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(r->p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(r->p + i + 32)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(r->p + i + 64)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(r->p + i + 96)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    r->sum = (uint64_t)_mm256_extract_epi64(s0, 0) + (uint64_t)_mm256_extract_epi64(s0, 3);
    return NULL;
}
SIMD_AVX2_END

static double read_bw(int threads, int reps) {
    size_t n = (size_t)1 << 30;
    uint8_t *p = arena_alloc(n);
    memset(p, 1, n);
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        pthread_t th[64];
        rd_part parts[64];
        double t0 = h_now();
        for (int i = 0; i < threads; i++) {
            parts[i] = (rd_part){p + n / threads * i, n / threads, 0};
            if (i) pthread_create(&th[i], NULL, rd_thread, &parts[i]);
        }
        rd_thread(&parts[0]);
        for (int i = 1; i < threads; i++) pthread_join(th[i], NULL);
        double t = h_now() - t0;
        if (r && t < best) best = t;
    }
    munmap(p, n);
    return (double)n / best * 1e-9;
}

static const int ALL[] = {QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0,
                          QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};

int main(int argc, char **argv) {
    int threads = 2, reps = 5, layers = 8, out_only = 0, types[32], nt = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-o"))
            out_only = 1;
        else if (!strcmp(argv[i], "-H"))
            use_huge = 1;
        else
            for (size_t t = 0; t < sizeof ALL / sizeof *ALL; t++)
                if (!strcmp(argv[i], quant_get(ALL[t])->name)) types[nt++] = ALL[t];
    }
    if (threads < 1 || threads > 64) threads = 2;
    if (!simd_has_avx2()) {
        printf("no AVX2+FMA+F16C on this CPU\n");
        return 0;
    }
    printf("read bandwidth, %d threads: %.2f GB/s\n", threads, read_bw(threads, reps));
    backend *bk = bk_cpu_new(threads);
    const int64_t shp[7][2] = {{2048, 2048}, {512, 2048},  {512, 2048}, {2048, 2048},
                               {8192, 2048}, {8192, 2048}, {2048, 8192}};
    for (int ti = 0; ti < nt; ti++) {
        int type = types[ti];
        int nm = out_only ? 0 : 7 * layers;
        bk_weight *W = h_alloc(sizeof *W * (nm + 1));
        h_weight *hw = h_alloc(sizeof *hw * (nm + 1));
        double bytes_l = 0, bytes_o;
        size_t total = 0, off = 0;
        for (int m = 0; m <= nm; m++) {
            hw[m] = m < nm ? h_weight_new(type, shp[m % 7][0], shp[m % 7][1])
                           : h_weight_new(type, 128256, 2048);
            total += (hw[m].rs * hw[m].rows + 4095) / 4096 * 4096;
        }
        uint8_t *arena = arena_alloc(total);
        for (int m = 0; m <= nm; m++) {
            size_t nb = hw[m].rs * hw[m].rows;
            memcpy(arena + off, hw[m].q, nb);
            free(hw[m].q);
            hw[m].q = arena + off;
            off += (nb + 4095) / 4096 * 4096;
            W[m] = (bk_weight){type, hw[m].rows, hw[m].k, hw[m].q, hw[m].q};
            if (m < nm) bytes_l += (double)nb;
        }
        bytes_o = (double)hw[nm].rs * 128256;
        float *x = h_act(1, 8192), *out = h_alloc(sizeof(float) * 128256);
        double best_l = 1e30, best_o = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = h_now();
            for (int m = 0; m < nm; m++) bk->ops->matmul(bk, out, &W[m], x, 1);
            double t1 = h_now();
            bk->ops->matmul(bk, out, &W[nm], x, 1);
            double t2 = h_now();
            if (r) best_l = fmin(best_l, t1 - t0), best_o = fmin(best_o, t2 - t1);
        }
        printf("%-5s layers %7.1f MB %6.2f GB/s | output %6.1f MB %6.2f GB/s | all %6.2f GB/s\n",
               quant_get(type)->name, bytes_l * 1e-6, nm ? bytes_l / best_l * 1e-9 : 0.0,
               bytes_o * 1e-6, bytes_o / best_o * 1e-9,
               (bytes_l + bytes_o) / (best_l + best_o) * 1e-9);
        fflush(stdout);
        munmap(arena, (total + ((size_t)2 << 20) - 1) / ((size_t)2 << 20) * ((size_t)2 << 20));
        free(W), free(hw), free(x), free(out);
    }
    bk->ops->destroy(bk);
    return 0;
}
