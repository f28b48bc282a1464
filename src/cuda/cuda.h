/* cuda.h: extras of the CUDA backend beyond backend.h (whose bk_cuda_new
 * creates it): counters for tests and benchmarks. Available in every build;
 * without CUDA they report zeros. */
#ifndef BEAST_CUDA_H
#define BEAST_CUDA_H

#include "backend/backend.h"

#include <stddef.h>

typedef struct {
    long eager_runs;     /* command queues launched kernel by kernel */
    long graph_captures; /* queues captured into a CUDA graph */
    long graph_replays;  /* queues run as a cached graph */
    size_t weight_bytes; /* weight bytes on the device */
    size_t f16_bytes;    /* f16 weight copies made for the GEMM path */
    /* load-time split (host wall clock, ms): device and cuBLAS set-up in
     * bk_cuda_new, weight uploads (allocation and copy) in weight_init,
     * graph capture and instantiation */
    double init_ms, upload_ms, capture_ms;
    /* matmuls of up to this many tokens run as mat-vecs; larger ones take
     * the cuBLAS path (BEAST_CUDA_MV_MAX) */
    int mv_max;
    /* one-token Q4_K / Q6_K mat-vec launches that took the staged kernel
     * (cuda_mvq.cu), process-wide: lets a test tell which kernel ran */
    long mvq_staged;
    /* launches of one-token step programs (cuda_step.cu), process-wide */
    long step_launches;
} bk_cuda_stats;

/* Counters of a CUDA backend (zeros for any other backend). */
void bk_cuda_get_stats(backend *b, bk_cuda_stats *out);
/* Whether b is a CUDA backend. */
int bk_is_cuda(const backend *b);
/* Which kernel one-token Q4_K / Q6_K mat-vecs take (cuda_mvq.cu; for tests
 * and benchmarks): 0 the register kernel, 1 the staged kernel wherever it
 * can run (the default). Results are the same bits. */
void bk_cuda_set_mvq_staged(int mode);

#endif
