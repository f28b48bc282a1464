/* cg_workload.c: a fixed, deterministic micro-workload of the matmul
 * kernels for callgrind (scripts/callgrind-kernels.sh): instruction counts
 * per kernel function are exact and repeatable, so two versions of a kernel
 * can be compared without timing noise on a shared machine.
 *
 *   cg_workload decode   every type: 1 token x 256 rows x 2048   (1 thread)
 *   cg_workload batch    every type: 64 tokens x 64 rows x 2048  (1 thread)
 *   cg_workload exact    the batch workload on the kernels' exact path
 *                        (mm_<t>_exact_avx2 for the 32-block types)
 * Optional further arguments: type names to restrict the run, and -k K to
 * change the row length (default 2048; e.g. 640 for gemma-3-270m, whose
 * rows end in a partial group of blocks). The kernel of
 * type T is the function mm_<t>_avx2; activation quantization is
 * q8_quantize_row. */
#include "harness.h"

static const int ALL[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                          QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};

int main(int argc, char **argv) {
    if (argc < 2 ||
        (strcmp(argv[1], "decode") && strcmp(argv[1], "batch") && strcmp(argv[1], "exact"))) {
        fprintf(stderr, "usage: cg_workload decode|batch|exact [TYPE...]\n");
        return 2;
    }
    if (!simd_has_avx2()) {
        fprintf(stderr, "no AVX2\n");
        return 0;
    }
    int exact = !strcmp(argv[1], "exact"), batch = exact || !strcmp(argv[1], "batch");
    int64_t rows = batch ? 64 : 256, k = 2048;
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], "-k")) k = atoll(argv[i + 1]);
    int n = batch ? 64 : 1;
    for (size_t t = 0; t < sizeof ALL / sizeof *ALL; t++) {
        const char *name = quant_get(ALL[t])->name;
        int want = argc == 2;
        int named = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "-k")) {
                i++;
                continue;
            }
            named = 1;
            want |= !strcmp(argv[i], name);
        }
        want |= !named;
        if (k % quant_get(ALL[t])->block) want = 0;
        if (!want) continue;
        const mm_kernel *kr = mm_kernel_get(ALL[t], 1);
        h_weight w = h_weight_new(ALL[t], rows, k);
        float *x = h_act(n, k), *out = h_alloc(sizeof(float) * n * rows);
        h_qact q = h_prepare(kr, x, n, k);
        void *scratch = h_alloc(MM_SCRATCH_BYTES);
        (exact ? kr->exact : kr->fn)(k, w.q, w.rs, (int)rows, &q.act, n, out, (size_t)rows,
                                     scratch);
        free(scratch);
        double s = 0;
        for (int64_t i = 0; i < n * rows; i++) s += out[i];
        printf("%s %s checksum %.6g bytes %zu\n", argv[1], name, s, w.rs * rows);
        free(q.buf), free(w.q), free(x), free(out);
    }
    return 0;
}
