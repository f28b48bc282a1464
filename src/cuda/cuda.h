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
} bk_cuda_stats;

/* Counters of a CUDA backend (zeros for any other backend). */
void bk_cuda_get_stats(backend *b, bk_cuda_stats *out);
/* Whether b is a CUDA backend. */
int bk_is_cuda(const backend *b);

#endif
