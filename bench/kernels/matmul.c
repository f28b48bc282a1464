/* matmul.c: microbenchmark of the CPU matrix product, every weight type.
 *
 * Versions (each checked against the reference before timing):
 *   ref     the old backend path: dequantize a row with the quant traits,
 *           dot it in float with every token (1 thread)
 *   tok     the AVX2 kernel called one token at a time (no reuse of weight
 *           blocks across tokens; batch only; 1 thread)
 *   avx2    activation quantization + the AVX2 kernel, all tokens (1 thread)
 *   bk-ref  the backend's matmul op, reference path (BEAST_CPU_SCALAR=1)
 *   bk      the backend's matmul op (quantization + kernel on the pool)
 * The bk columns use T threads (-t, default 2) and wall time; the others run
 * on the calling thread and are timed in its CPU time (see harness.h).
 *
 * Usage: matmul [-t threads] [-r reps] [-q] [-x] [-s ROWS,K,N] [TYPE...]
 *   -q: quick (skip the slow ref and bk-ref columns).
 *   -x: the avx2 column runs the kernels' exact batch path (mm.h: what the
 *       backend's deterministic mode uses).
 *   -s: one custom shape instead of the table's three (e.g. a gemma output
 *       matrix, 262144,640,1: larger than the L3, so decode reads DRAM). */
#include "harness.h"

static const int ALL[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                          QT_Q8_0, QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};

static int use_exact; /* -x: the kernels' exact (deterministic-mode) batch path */

typedef struct {
    const h_weight *w;
    const float *x;
    int n;
    float *out, *row;
    const mm_kernel *kr;
    backend *bk;
    bk_weight W;
    void *scratch;
} job;

static void run_ref(void *p) {
    job *j = p;
    h_ref_matmul(j->w, j->x, j->n, j->out, j->row);
}

static void run_avx2(void *p) {
    job *j = p;
    h_qact q = h_prepare(j->kr, j->x, j->n, j->w->k);
    mm_fn fn = use_exact ? j->kr->exact : j->kr->fn;
    fn(j->w->k, j->w->q, j->w->rs, (int)j->w->rows, &q.act, j->n, j->out, (size_t)j->w->rows,
       j->scratch);
    free(q.buf);
}

static void run_tok(void *p) {
    job *j = p;
    h_qact q = h_prepare(j->kr, j->x, j->n, j->w->k);
    for (int i = 0; i < j->n; i++) {
        mm_act a = q.act;
        a.rows = (const char *)a.rows + i * a.stride;
        j->kr->fn(j->w->k, j->w->q, j->w->rs, (int)j->w->rows, &a, 1, j->out + i * j->w->rows,
                  (size_t)j->w->rows, j->scratch);
    }
    free(q.buf);
}

static void run_bk(void *p) {
    job *j = p;
    j->bk->ops->matmul(j->bk, j->out, &j->W, j->x, j->n);
}

/* one measurement: seconds, and a check of the result against ref */
static double measure(h_fn fn, job *j, const float *ref, int reps, double tol, int cpu) {
    memset(j->out, 0, sizeof(float) * j->n * j->w->rows);
    fn(j);
    double e = h_rel(j->out, ref, (size_t)j->n * j->w->rows);
    if (!(e < tol)) {
        printf("\n  result check failed: rel err %g\n", e);
        exit(1);
    }
    return h_time(fn, j, reps, cpu);
}

int main(int argc, char **argv) {
    int threads = 2, reps = 5, quick = 0, types[32], nt = 0;
    long long custom[3] = {0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-q"))
            quick = 1;
        else if (!strcmp(argv[i], "-x"))
            use_exact = 1;
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            sscanf(argv[++i], "%lld,%lld,%lld", &custom[0], &custom[1], &custom[2]);
        else
            for (size_t t = 0; t < sizeof ALL / sizeof *ALL; t++)
                if (!strcmp(argv[i], quant_get(ALL[t])->name)) types[nt++] = ALL[t];
    }
    if (!nt)
        for (size_t t = 0; t < sizeof ALL / sizeof *ALL; t++) types[nt++] = ALL[t];
    if (!simd_has_avx2()) {
        printf("no AVX2+FMA+F16C on this CPU\n");
        return 0;
    }
    setenv("BEAST_CPU_SCALAR", "1", 1);
    backend *bk_ref = bk_cpu_new(threads);
    unsetenv("BEAST_CPU_SCALAR");
    backend *bk = bk_cpu_new(threads);
    void *scratch = h_alloc(MM_SCRATCH_BYTES);
    printf("decode: 1 token, GB/s of weights; batch: 512 tokens, GFLOP/s; min of %d runs; "
           "bk = backend op with %d threads\n",
           reps, threads);
    printf("%-5s | %-29s | %-29s | %s\n", "", "decode 2048x2048  GB/s", "decode 8192x2048  GB/s",
           "batch 512 x 2048x2048  GFLOP/s");
    printf("%-5s | %6s %6s %6s %6s | %6s %6s %6s %6s | %6s %6s %6s %6s %6s\n", "type", "ref",
           "avx2", "bk-ref", "bk", "ref", "avx2", "bk-ref", "bk", "ref", "tok", "avx2", "bk-ref",
           "bk");
    for (int ti = 0; ti < nt; ti++) {
        int type = types[ti];
        const mm_kernel *kr = mm_kernel_get(type, 1);
        double tol = kr->act == MM_ACT_F32 ? 1e-5 : 3e-2;
        printf("%-5s |", quant_get(type)->name);
        fflush(stdout);
        int64_t shapes[3][3] = {{2048, 2048, 1}, {8192, 2048, 1}, {2048, 2048, 512}};
        int n_shapes = 3;
        if (custom[0] > 0) {
            shapes[0][0] = custom[0], shapes[0][1] = custom[1], shapes[0][2] = custom[2];
            n_shapes = 1;
        }
        for (int s = 0; s < n_shapes; s++) {
            int64_t rows = shapes[s][0], k = shapes[s][1];
            int n = (int)shapes[s][2];
            if (k % quant_get(type)->block) {
                printf(" k %% %d != 0\n", quant_get(type)->block);
                continue;
            }
            h_weight w = h_weight_new(type, rows, k);
            float *x = h_act(n, k), *out = h_alloc(sizeof(float) * n * rows);
            float *ref = h_alloc(sizeof(float) * n * rows), *row = h_alloc(sizeof(float) * k);
            job j = {&w, x, n, out, row, kr, NULL, {type, rows, k, w.q, w.q}, scratch};
            double bytes = (double)w.rs * rows, flop = 2.0 * rows * k * n;
            h_ref_matmul(&w, x, n, ref, row);
            double t_ref = -1, t_tok = -1, t_bkref = -1;
            int r_slow = n > 1 ? 1 : reps; /* the reference batch takes seconds */
            if (!quick) {
                t_ref = measure(run_ref, &j, ref, r_slow, 1e-5, 1);
                j.bk = bk_ref;
                t_bkref = measure(run_bk, &j, ref, r_slow, 1e-5, 0);
            }
            if (n > 1) t_tok = measure(run_tok, &j, ref, reps, tol, 1);
            double t_avx2 = measure(run_avx2, &j, ref, reps, tol, 1);
            j.bk = bk;
            double t_bk = measure(run_bk, &j, ref, reps, tol, 0);
            double unit = n == 1 ? bytes * 1e-9 : flop * 1e-9;
#define COL(t) ((t) > 0 ? unit / (t) : 0.0)
            if (n == 1)
                printf(" %6.2f %6.2f %6.2f %6.2f |%s", COL(t_ref), COL(t_avx2), COL(t_bkref),
                       COL(t_bk), n_shapes == 1 ? "  (GB/s)\n" : "");
            else if (n_shapes == 1)
                printf(" %6.2f %6.2f %6.2f %6.2f %6.2f  (GFLOP/s)\n", COL(t_ref), COL(t_tok),
                       COL(t_avx2), COL(t_bkref), COL(t_bk));
            else
                printf(" %6.2f %6.2f %6.2f %6.2f %6.2f\n", COL(t_ref), COL(t_tok), COL(t_avx2),
                       COL(t_bkref), COL(t_bk));
            fflush(stdout);
            free(w.q), free(x), free(out), free(ref), free(row);
        }
    }
    bk->ops->destroy(bk);
    bk_ref->ops->destroy(bk_ref);
    return 0;
}
