/* cuda_stub.c: the CUDA backend's entry points in a build without CUDA
 * (BEAST_CUDA off or no nvcc): bk_cuda_new fails with a clear message so
 * callers fall back to the CPU. With CUDA, cuda_backend.cu defines them. */
#include "backend/backend.h"
#include "cuda/cuda.h"
#include "util/util.h"

#ifndef BEAST_HAVE_CUDA
backend *bk_cuda_new(int device) {
    (void)device;
    err_set("built without CUDA");
    return NULL;
}

void bk_cuda_get_stats(backend *b, bk_cuda_stats *out) {
    (void)b;
    memset(out, 0, sizeof *out);
}

int bk_is_cuda(const backend *b) {
    (void)b;
    return 0;
}

void bk_cuda_set_mvq_staged(int mode) {
    (void)mode;
}
#else
/* ISO C wants a translation unit to declare something */
typedef int cuda_stub_unused;
#endif
