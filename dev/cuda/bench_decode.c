/* dev/cuda/bench_decode.c: decode speed of a model through the public API:
 * prefill a random prompt in each of S sequences, then decode greedily one
 * token per sequence per step, timing every step. Prints prefill tok/s, the
 * median step time, decode tok/s, and the weight bytes a step streams over
 * the step time (the bandwidth a single-sequence decode achieves). With a
 * CUDA backend, also the graph counters (BEAST_CUDA_GRAPHS=0 turns graphs
 * off for comparison).
 *
 * usage: dev-cuda-bench_decode MODEL.gguf [--prompt N] [--gen N] [--seqs S]
 *                               [--cpu] [--ctx N] [--det]
 * --det loads the model in deterministic mode (batch-independent results). */
#include "beast.h"
#include "cuda/cuda.h"
#include "model/model.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(
            stderr,
            "usage: %s MODEL.gguf [--prompt N] [--gen N] [--seqs S] [--cpu] [--ctx N] [--det]\n",
            argv[0]);
        return 2;
    }
    int prompt = 128, gen = 128, seqs = 1, cpu = 0, n_ctx = 0, det = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
            prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc)
            gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seqs") && i + 1 < argc)
            seqs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc)
            n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--det"))
            det = 1;
        else if (!strcmp(argv[i], "--cpu"))
            cpu = 1;
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (prompt < 1 || gen < 1 || seqs < 1) return 2;
    beast_model_params mp = beast_model_default_params();
    mp.n_gpu_layers = cpu ? 0 : -1;
    mp.deterministic = det;
    double t0 = time_now();
    beast_model *m = beast_model_load(argv[1], &mp);
    if (!m) {
        fprintf(stderr, "load: %s\n", beast_error());
        return 1;
    }
    double t_load = time_now() - t0;
    beast_model_info info;
    beast_model_get_info(m, &info);
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = n_ctx > 0 ? n_ctx : prompt + gen + 16;
    cp.n_seq = seqs;
    cp.n_batch = 512;
    beast_ctx *c = beast_ctx_new(m, &cp);
    if (!c) {
        fprintf(stderr, "ctx: %s\n", beast_error());
        return 1;
    }
    int n_vocab = beast_n_vocab(m);
    beast_batch *b = beast_batch_new(prompt * seqs);
    uint64_t r = 12345;
    for (int s = 0; s < seqs; s++)
        for (int i = 0; i < prompt; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            beast_batch_add(b, (int32_t)((r >> 33) % (uint64_t)n_vocab), s, i == prompt - 1);
        }
    t0 = time_now();
    if (beast_decode(c, b)) {
        fprintf(stderr, "prefill: %s\n", beast_error());
        return 1;
    }
    double t_prefill = time_now() - t0;
    int32_t *next = malloc(seqs * sizeof *next);
    double *step = malloc(gen * sizeof *step);
    for (int s = 0; s < seqs; s++) next[s] = 0;
    for (int g = 0; g < gen; g++) {
        for (int s = 0; s < seqs; s++) {
            const float *l = beast_logits(c, g == 0 ? s * prompt + prompt - 1 : s);
            int best = 0;
            for (int v = 1; v < n_vocab; v++)
                if (l[v] > l[best]) best = v;
            next[s] = best;
        }
        beast_batch_clear(b);
        for (int s = 0; s < seqs; s++) beast_batch_add(b, next[s], s, true);
        t0 = time_now();
        if (beast_decode(c, b)) {
            fprintf(stderr, "decode: %s\n", beast_error());
            return 1;
        }
        step[g] = time_now() - t0;
    }
    double sum = 0;
    for (int g = 0; g < gen; g++) sum += step[g];
    qsort(step, gen, sizeof *step, cmp_d);
    double med = step[gen / 2];
    bk_cuda_stats st;
    bk_cuda_get_stats(m->bk, &st);
    printf("model %s (%s, %d layers, embd %d, vocab %d), %.1f MB of weights, backend %s\n", argv[1],
           info.arch, info.n_layer, info.n_embd, info.n_vocab, info.weight_bytes / 1e6,
           m->bk->ops->name);
    printf("load %.2f s | prefill %d x %d tokens: %.1f ms, %.0f tok/s\n", t_load, seqs, prompt,
           t_prefill * 1e3, seqs * prompt / t_prefill);
    printf("decode %d steps x %d seqs: median step %.3f ms (min %.3f, mean %.3f), %.1f tok/s, "
           "weights/step-time %.0f GB/s\n",
           gen, seqs, med * 1e3, step[0] * 1e3, sum / gen * 1e3, seqs / med,
           info.weight_bytes / med / 1e9);
    if (bk_is_cuda(m->bk))
        printf("cuda graphs: %ld captures, %ld replays, %ld eager runs\n", st.graph_captures,
               st.graph_replays, st.eager_runs);
    free(next);
    free(step);
    beast_batch_free(b);
    beast_ctx_free(c);
    beast_model_free(m);
    return 0;
}
