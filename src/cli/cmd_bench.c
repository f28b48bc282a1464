/* cmd_bench.c: `beast bench`: prompt-processing and generation speed, in
 * the spirit of llama-bench: tests ppN (N prompt tokens in one batch) and tgN
 * (N tokens generated one at a time, greedily: each step is fed the pick of
 * the one before, through beast_generate_greedy, which on a GPU queues step
 * k + 1 before the host reads token k; llama-bench's tg instead feeds random
 * tokens and waits for each step), each after an optional context depth,
 * repeated after one warm-up run; mean and standard deviation of tokens/s.
 * For generation it also reports the weight bytes read per token and the
 * achieved GB/s, next to the memory bandwidth of a large copy measured here.
 * --profile adds the share of time per op kind.
 *
 * --parallel N,... adds batched decoding (like llama-batched-bench): N
 * sequences each get a short prompt (not timed), then every decode step is
 * one beast_decode holding one token of each sequence; it reports the
 * aggregate tokens/s and the time per step (what a server step with N
 * running requests costs). */
#include "cli/cli.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char BENCH_HELP[] =
    "usage: beast bench [options]\n"
    "\n"
    "  -m, --model PATH      model (repeatable; default: the default model)\n"
    "  -p, --n-prompt N,...  prompt-processing tests (default 512; 0 = none)\n"
    "  -n, --n-gen N,...     generation tests (default 128; 0 = none)\n"
    "  -t, --threads N,...   thread counts (default: all cores)\n"
    "  -d, --depth N         tokens already in the context before each test (default 0)\n"
    "  -r, --repetitions N   measured runs per test, after one warm-up (default 5)\n"
    "  -b, --batch-size N    tokens per forward pass (default 512)\n"
    "  -ngl, --gpu-layers N  layers on the GPU when there is one (default -1 = all;\n"
    "                        0 = CPU only; N = the last N, the rest on the CPU)\n"
    "  -o, --output FMT      md (default), csv or json\n"
    "      --parallel N,...  also decode the tg tests with N sequences at once (one token\n"
    "                        each per step; aggregate t/s and ms per step)\n"
    "      --profile         per-op time split of one pp and one tg run (and of each\n"
    "                        --parallel run)\n"
    "  -h, --help            this help\n";

#define MAX_LIST 16

typedef struct {
    int v[MAX_LIST];
    int n;
} intlist;

static int parse_list(const char *name, const char *arg, intlist *l, int lo) {
    l->n = 0;
    const char *s = arg;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > (1 << 24) || l->n == MAX_LIST) {
            fprintf(stderr, "beast bench: bad --%s '%s'\n", name, arg);
            return -1;
        }
        l->v[l->n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            fprintf(stderr, "beast bench: bad --%s '%s'\n", name, arg);
            return -1;
        }
    }
    return l->n ? 0 : -1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- memory bandwidth: a large copy, and a large read, split over threads ---- */
#define BW_BYTES ((size_t)512 << 20)
#define BW_MAX_T 64

/* one thread's share: a copy of src to dst, or (dst NULL) a sum of src */
typedef struct {
    char *dst;
    const char *src;
    size_t n;
    uint64_t sum;
} bw_part;

static void *bw_thread(void *a) {
    bw_part *p = a;
    if (p->dst) {
        memcpy(p->dst, p->src, p->n);
        return NULL;
    }
    /* 16 independent chains, 128 bytes a step: vectorised, several loads in flight */
    const uint64_t *w = (const uint64_t *)p->src;
    uint64_t s[16] = {0};
    for (size_t i = 0; i + 16 <= p->n / 8; i += 16)
        for (int k = 0; k < 16; k++) s[k] ^= w[i + k];
    uint64_t sum = 0;
    for (int k = 0; k < 16; k++) sum ^= s[k];
    p->sum = sum;
    return NULL;
}

/* The best of 5 passes over BW_BYTES of src (copied into dst, or read when
 * dst is NULL) on `threads` threads, in seconds. */
static double bw_best(int threads, char *dst, const char *src) {
    int k = threads < BW_MAX_T ? threads : BW_MAX_T;
    bw_part parts[BW_MAX_T];
    size_t share = BW_BYTES / k / 64 * 64;
    for (int i = 0; i < k; i++)
        parts[i] = (bw_part){dst ? dst + share * i : NULL, src + share * i,
                             i == k - 1 ? BW_BYTES - share * i : share, 0};
    double best = 1e30;
    volatile uint64_t sink = 0;
    for (int r = 0; r < 5; r++) {
        pthread_t th[BW_MAX_T];
        double t0 = now_s();
        for (int i = 1; i < k; i++) pthread_create(&th[i], NULL, bw_thread, &parts[i]);
        bw_thread(&parts[0]);
        for (int i = 1; i < k; i++) pthread_join(th[i], NULL);
        double t = now_s() - t0;
        for (int i = 0; i < k; i++) sink ^= parts[i].sum;
        if (t < best) best = t;
    }
    return best;
}

/* the machine's two ceilings, bytes per second: a copy (bytes read + written),
 * and a read-only sum, the ceiling of a workload that only reads, as decoding
 * does (a copy's read + write rate is not reachable by reads alone on every
 * machine: a 2-core EPYC VM gave 37 GB/s copy and 27 GB/s read) */
typedef struct {
    double copy, read;
} ceilings;

static ceilings measure_ceilings(int threads) {
    ceilings c = {0, 0};
    char *src = malloc(BW_BYTES), *dst = malloc(BW_BYTES);
    if (src && dst) {
        memset(src, 1, BW_BYTES);
        memset(dst, 2, BW_BYTES);
        c.copy = 2.0 * (double)BW_BYTES / bw_best(threads, dst, src);
        c.read = (double)BW_BYTES / bw_best(threads, NULL, src);
    }
    free(src);
    free(dst);
    return c;
}

/* ---- tests ---- */
typedef struct {
    const char *model;
    beast_model_info info;
    int threads, n_prompt, n_gen, depth, reps;
    int n_par;        /* sequences decoded at once (0: the single-sequence tests) */
    double mean, sd;  /* tokens/s (aggregate over the sequences) */
    double gbps;      /* tg: weight + KV bytes read per second */
    double bytes_tok; /* tg: bytes read per token */
} result;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int32_t rand_tok(int n_vocab) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int32_t)(rng % (uint64_t)n_vocab);
}

/* Fill the context with `depth` tokens (not timed). */
static int prefill(beast_ctx *c, beast_batch *b, int nv, int depth) {
    beast_seq_clear(c, 0);
    for (int i0 = 0; i0 < depth; i0 += 512) {
        beast_batch_clear(b);
        for (int i = i0; i < depth && i < i0 + 512; i++) beast_batch_add(b, rand_tok(nv), 0, false);
        if (beast_decode(c, b)) return -1;
    }
    return 0;
}

static bool count_token(void *user, int32_t tok) {
    (void)user, (void)tok;
    return true;
}

/* One timed run: pp (n_prompt tokens, one batch) or tg (n_gen single steps). */
static double run_once(beast_ctx *c, beast_batch *b, int nv, int depth, int n_prompt, int n_gen) {
    if (prefill(c, b, nv, depth)) return -1;
    double t0 = now_s();
    if (n_prompt > 0) {
        beast_batch_clear(b);
        for (int i = 0; i < n_prompt; i++) beast_batch_add(b, rand_tok(nv), 0, i == n_prompt - 1);
        if (beast_decode(c, b)) return -1;
        return now_s() - t0;
    }
    /* tg: n_gen tokens generated greedily, each step fed the pick of the
     * one before (on a GPU the device picks and feeds it, one step ahead) */
    int got = beast_generate_greedy(c, 0, rand_tok(nv), n_gen, count_token, NULL);
    if (got != n_gen) {
        if (got >= 0) fprintf(stderr, "beast bench: %d of %d tokens generated\n", got, n_gen);
        return -1;
    }
    return now_s() - t0;
}

static int run_test(beast_ctx *c, beast_batch *b, int nv, result *r) {
    int n_tok = r->n_prompt ? r->n_prompt : r->n_gen;
    if (run_once(c, b, nv, r->depth, r->n_prompt, r->n_gen) < 0) return -1; /* warm-up */
    double sum = 0, sq = 0;
    for (int k = 0; k < r->reps; k++) {
        double t = run_once(c, b, nv, r->depth, r->n_prompt, r->n_gen);
        if (t < 0) return -1;
        double ts = n_tok / t;
        sum += ts;
        sq += ts * ts;
    }
    r->mean = sum / r->reps;
    r->sd = r->reps > 1 ? sqrt(fmax(0, (sq - sum * sum / r->reps) / (r->reps - 1))) : 0;
    if (r->n_gen) {
        double kv = (double)r->info.kv_bytes_per_token * (r->depth + r->n_gen / 2.0);
        r->bytes_tok = (double)r->info.bytes_per_token + kv;
        r->gbps = r->bytes_tok * r->mean / 1e9;
    }
    return 0;
}

/* ---- batched decoding: n_par sequences, one token each per step ---- */
#define PAR_PROMPT 16

/* Give each of the n_par sequences a fresh PAR_PROMPT-token prompt (not
 * timed), then time n_gen steps of one token per sequence (with prof, the
 * per-op profile counts the steps only). Seconds or -1. */
static double run_parallel(beast_ctx *c, beast_batch *b, int nv, int n_par, int n_gen, int prof) {
    beast_batch_clear(b);
    for (int s = 0; s < n_par; s++) {
        beast_seq_clear(c, s);
        for (int i = 0; i < PAR_PROMPT; i++)
            if (beast_batch_add(b, rand_tok(nv), s, i == PAR_PROMPT - 1)) return -1;
    }
    if (beast_decode(c, b)) return -1;
    if (prof) beast_ctx_set_profile(c, true);
    double t0 = now_s();
    for (int k = 0; k < n_gen; k++) {
        beast_batch_clear(b);
        for (int s = 0; s < n_par; s++)
            if (beast_batch_add(b, rand_tok(nv), s, true)) return -1;
        if (beast_decode(c, b)) return -1;
    }
    return now_s() - t0;
}

static int run_parallel_test(beast_ctx *c, beast_batch *b, int nv, result *r) {
    if (run_parallel(c, b, nv, r->n_par, r->n_gen, 0) < 0) return -1; /* warm-up */
    double sum = 0, sq = 0;
    for (int k = 0; k < r->reps; k++) {
        double t = run_parallel(c, b, nv, r->n_par, r->n_gen, 0);
        if (t < 0) return -1;
        double ts = (double)r->n_par * r->n_gen / t;
        sum += ts;
        sq += ts * ts;
    }
    r->mean = sum / r->reps;
    r->sd = r->reps > 1 ? sqrt(fmax(0, (sq - sum * sum / r->reps) / (r->reps - 1))) : 0;
    r->bytes_tok = 0;
    r->gbps = 0;
    return 0;
}

static void print_profile(beast_ctx *c, const char *label, double t) {
    const char *names[32];
    double secs[32];
    int n = beast_ctx_profile(c, names, secs, 32);
    double tot = 0;
    for (int i = 0; i < n; i++) tot += secs[i];
    printf("\nprofile %s (%.1f ms, ops %.1f ms):", label, t * 1e3, tot * 1e3);
    for (int i = 0; i < n; i++)
        if (secs[i] > 0) printf(" %s %.1f%%", names[i], 100 * secs[i] / tot);
    printf("\n");
}

/* Per-op split of one batched run (eager and synchronised per op). */
static void profile_parallel(beast_ctx *c, beast_batch *b, int nv, int n_par, int n_gen) {
    double t = run_parallel(c, b, nv, n_par, n_gen, 1);
    beast_ctx_set_profile(c, false);
    if (t < 0) return;
    char label[64];
    snprintf(label, sizeof label, "tg%d x%d", n_gen, n_par);
    print_profile(c, label, t);
}

static void profile(beast_ctx *c, beast_batch *b, int nv, int depth, int n_prompt, int n_gen) {
    const char *names[32];
    double secs[32];
    struct {
        const char *label;
        int p, g;
    } runs[2] = {{"pp", n_prompt, 0}, {"tg", 0, n_gen}};
    for (int k = 0; k < 2; k++) {
        if (!runs[k].p && !runs[k].g) continue;
        beast_ctx_set_profile(c, false);
        if (prefill(c, b, nv, depth)) return;
        beast_ctx_set_profile(c, true);
        double t = run_once(c, b, nv, 0, runs[k].p, runs[k].g);
        /* run_once prefilled again with depth 0: the context is still the
         * depth-filled one only if depth == 0; profile at depth 0 */
        int n = beast_ctx_profile(c, names, secs, 32);
        double tot = 0;
        for (int i = 0; i < n; i++) tot += secs[i];
        printf("\nprofile %s%d (%.1f ms, ops %.1f ms):", runs[k].label,
               runs[k].p ? runs[k].p : runs[k].g, t * 1e3, tot * 1e3);
        for (int i = 0; i < n; i++)
            if (secs[i] > 0) printf(" %s %.1f%%", names[i], 100 * secs[i] / tot);
        printf("\n");
        beast_ctx_set_profile(c, false);
    }
}

static void human_size(char *buf, size_t n, double bytes) {
    if (bytes >= 1 << 30)
        snprintf(buf, n, "%.2f GiB", bytes / (1 << 30));
    else
        snprintf(buf, n, "%.2f MiB", bytes / (1 << 20));
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void print_result(const result *r, const char *fmt, const ceilings *cl) {
    char test[64], bk[32];
    /* a split model: the backend of the last layers / the layers on it */
    if (r->info.n_gpu_layers > 0 && r->info.n_gpu_layers < r->info.n_layer)
        snprintf(bk, sizeof bk, "%s/%d", r->info.backend, r->info.n_gpu_layers);
    else
        snprintf(bk, sizeof bk, "%s", r->info.backend);
    if (r->n_prompt)
        snprintf(test, sizeof test, "pp%d", r->n_prompt);
    else if (r->n_par)
        snprintf(test, sizeof test, "tg%d x%d", r->n_gen, r->n_par);
    else
        snprintf(test, sizeof test, "tg%d", r->n_gen);
    if (r->depth) snprintf(test + strlen(test), sizeof test - strlen(test), " @ d%d", r->depth);
    if (!strcmp(fmt, "csv")) {
        printf("%s,%zu,%lld,%s,%d,%d,%d,%d,%.3f,%.3f,%.0f,%.3f,%.3f,%d,%.4f,%.3f\n",
               base_name(r->model), r->info.file_size, (long long)r->info.n_params, bk, r->threads,
               r->n_prompt, r->n_gen, r->depth, r->mean, r->sd, r->bytes_tok, r->gbps,
               cl->copy / 1e9, r->n_par, r->n_par ? 1e3 * r->n_par / r->mean : 0.0, cl->read / 1e9);
    } else if (!strcmp(fmt, "json")) {
        printf("  {\"model\": \"%s\", \"size\": %zu, \"params\": %lld, \"backend\": \"%s\", "
               "\"threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"depth\": %d, "
               "\"avg_ts\": %.3f, \"stddev_ts\": %.3f, \"bytes_per_token\": %.0f, "
               "\"gbps\": %.3f, \"copy_gbps\": %.3f, \"n_parallel\": %d, \"ms_per_step\": %.4f, "
               "\"read_gbps\": %.3f}",
               base_name(r->model), r->info.file_size, (long long)r->info.n_params, bk, r->threads,
               r->n_prompt, r->n_gen, r->depth, r->mean, r->sd, r->bytes_tok, r->gbps,
               cl->copy / 1e9, r->n_par, r->n_par ? 1e3 * r->n_par / r->mean : 0.0, cl->read / 1e9);
    } else {
        char size[32], gb[32] = "";
        human_size(size, sizeof size, (double)r->info.file_size);
        if (r->n_par)
            snprintf(gb, sizeof gb, "%.2fms", 1e3 * r->n_par / r->mean);
        else if (r->n_gen)
            snprintf(gb, sizeof gb, "%.2f", r->gbps);
        printf("| %-32s | %10s | %7.1f M | %-4s | %7d | %12s | %9.2f ± %-7.2f | %6s |\n",
               base_name(r->model), size, r->info.n_params / 1e6, bk, r->threads, test, r->mean,
               r->sd, gb);
    }
}

/* The --parallel tests of one model: a context of max(P) sequences, each
 * tg test at each P. 0 or 1. */
static int bench_parallel(beast_model *m, beast_batch *b, int nv, result *r, const intlist *par,
                          const intlist *tg, const char *fmt, const ceilings *cl, int do_profile,
                          int *first) {
    int maxp = 0, maxg = 0;
    for (int i = 0; i < par->n; i++) maxp = par->v[i] > maxp ? par->v[i] : maxp;
    for (int i = 0; i < tg->n; i++) maxg = tg->v[i] > maxg ? tg->v[i] : maxg;
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = PAR_PROMPT + maxg + 1;
    cp.n_seq = maxp;
    cp.n_batch = maxp * PAR_PROMPT > 512 ? maxp * PAR_PROMPT : 512;
    beast_ctx *c = beast_ctx_new(m, &cp);
    if (!c) {
        fprintf(stderr, "beast: %s\n", beast_error());
        return 1;
    }
    int rc = 0;
    r->depth = 0;
    r->n_prompt = 0;
    for (int pi = 0; pi < par->n && !rc; pi++)
        for (int gi = 0; gi < tg->n && !rc; gi++) {
            if (!tg->v[gi]) continue;
            r->n_par = par->v[pi];
            r->n_gen = tg->v[gi];
            if (run_parallel_test(c, b, nv, r)) {
                fprintf(stderr, "beast: %s\n", beast_error());
                rc = 1;
                break;
            }
            if (!strcmp(fmt, "json") && !*first) printf(",\n");
            *first = 0;
            print_result(r, fmt, cl);
            fflush(stdout);
        }
    if (!rc && do_profile)
        for (int pi = 0; pi < par->n; pi++) profile_parallel(c, b, nv, par->v[pi], maxg);
    r->n_par = 0;
    beast_ctx_free(c);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *models[MAX_LIST];
    int n_models = 0, depth = 0, reps = 5, n_batch = 512, do_profile = 0, n_gpu_layers = -1;
    intlist pp = {{512}, 1}, tg = {{128}, 1}, th = {{0}, 0}, par = {{0}, 0};
    const char *fmt = "md";
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"n-prompt", required_argument, 0, 'p'},
                                             {"n-gen", required_argument, 0, 'n'},
                                             {"threads", required_argument, 0, 't'},
                                             {"depth", required_argument, 0, 'd'},
                                             {"repetitions", required_argument, 0, 'r'},
                                             {"batch-size", required_argument, 0, 'b'},
                                             {"output", required_argument, 0, 'o'},
                                             {"profile", no_argument, 0, 1001},
                                             {"parallel", required_argument, 0, 1002},
                                             {"gpu-layers", required_argument, 0, 1003},
                                             {"n-gpu-layers", required_argument, 0, 1003},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:n:t:d:r:b:o:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (n_models == MAX_LIST) {
                fprintf(stderr, "beast bench: at most %d models\n", MAX_LIST);
                return 2;
            }
            models[n_models++] = optarg;
            break;
        case 'p':
            if (parse_list("n-prompt", optarg, &pp, 0)) return 2;
            break;
        case 'n':
            if (parse_list("n-gen", optarg, &tg, 0)) return 2;
            break;
        case 't':
            if (parse_list("threads", optarg, &th, 1)) return 2;
            break;
        case 'd':
        case 'r':
        case 'b': {
            intlist one;
            const char *nm = opt == 'd' ? "depth" : opt == 'r' ? "repetitions" : "batch-size";
            if (parse_list(nm, optarg, &one, opt == 'd' ? 0 : 1) || one.n != 1) return 2;
            *(opt == 'd' ? &depth : opt == 'r' ? &reps : &n_batch) = one.v[0];
            break;
        }
        case 'o':
            if (strcmp(optarg, "md") && strcmp(optarg, "csv") && strcmp(optarg, "json")) {
                fprintf(stderr, "beast bench: --output must be md, csv or json\n");
                return 2;
            }
            fmt = optarg;
            break;
        case 1001:
            do_profile = 1;
            break;
        case 1002:
            if (parse_list("parallel", optarg, &par, 1)) return 2;
            break;
        case 1003: {
            intlist one;
            if (parse_list("gpu-layers", optarg, &one, -1) || one.n != 1) return 2;
            n_gpu_layers = one.v[0];
            break;
        }
        case 'h':
            printf("%s", BENCH_HELP);
            return 0;
        default:
            fprintf(stderr, "%s", BENCH_HELP);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "beast bench: unexpected argument '%s'\n%s", argv[optind], BENCH_HELP);
        return 2;
    }
    if (!th.n) {
        th.v[0] = (int)sysconf(_SC_NPROCESSORS_ONLN);
        th.n = 1;
    }
    if (!n_models) {
        cli_common o;
        cli_common_init(&o);
        const char *p = cli_model_path(&o, argv[0]);
        if (!p) return 1;
        models[n_models++] = p;
    }

    int max_threads = 1;
    for (int i = 0; i < th.n; i++) max_threads = th.v[i] > max_threads ? th.v[i] : max_threads;
    ceilings cl = measure_ceilings(max_threads);
    if (!strcmp(fmt, "md")) {
        printf(
            "memory bandwidth, %d threads: copy %.2f GB/s (read + write), read-only %.2f GB/s\n\n",
            max_threads, cl.copy / 1e9, cl.read / 1e9);
        if (par.n)
            printf("tgN xP: P sequences decoded together, one token each per step: aggregate "
                   "t/s, ms per step in the last column\n\n");
        printf("| %-32s | %10s | %9s | %-4s | %7s | %12s | %19s | %6s |\n", "model", "size",
               "params", "bk", "threads", "test", "t/s", "GB/s");

        printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------------", "------------",
               "-----------", "------", "--------:", "--------------",
               "--------------------:", "-------:");
    } else if (!strcmp(fmt, "csv")) {
        printf("model,size,params,backend,threads,n_prompt,n_gen,depth,avg_ts,stddev_ts,"
               "bytes_per_token,gbps,copy_gbps,n_parallel,ms_per_step,read_gbps\n");
    } else {
        printf("[\n");
    }
    int first = 1, rc = 0;
    for (int mi = 0; mi < n_models && !rc; mi++) {
        for (int ti = 0; ti < th.n && !rc; ti++) {
            beast_model_params mp = beast_model_default_params();
            mp.n_threads = th.v[ti];
            mp.n_gpu_layers = n_gpu_layers;
            beast_model *m = beast_model_load(models[mi], &mp);
            if (!m) {
                fprintf(stderr, "beast: %s\n", beast_error());
                rc = 1;
                break;
            }
            int maxp = 0, maxg = 0;
            for (int i = 0; i < pp.n; i++) maxp = pp.v[i] > maxp ? pp.v[i] : maxp;
            for (int i = 0; i < tg.n; i++) maxg = tg.v[i] > maxg ? tg.v[i] : maxg;
            beast_ctx_params cp = beast_ctx_default_params();
            cp.n_ctx = depth + (maxp > maxg ? maxp : maxg) + 1;
            cp.n_batch = n_batch;
            beast_ctx *c = beast_ctx_new(m, &cp);
            beast_batch *b = beast_batch_new(512);
            int nv = beast_n_vocab(m);
            result r = {0};
            r.model = models[mi];
            beast_model_get_info(m, &r.info);
            r.threads = th.v[ti];
            r.depth = depth;
            r.reps = reps;
            for (int k = 0; c && b && k < pp.n + tg.n; k++) {
                r.n_prompt = k < pp.n ? pp.v[k] : 0;
                r.n_gen = k < pp.n ? 0 : tg.v[k - pp.n];
                if (!r.n_prompt && !r.n_gen) continue;
                if (run_test(c, b, nv, &r)) {
                    fprintf(stderr, "beast: %s\n", beast_error());
                    rc = 1;
                    break;
                }
                if (!strcmp(fmt, "json") && !first) printf(",\n");
                first = 0;
                print_result(&r, fmt, &cl);
                fflush(stdout);
            }
            if (!c || !b) {
                fprintf(stderr, "beast: %s\n", beast_error());
                rc = 1;
            }
            if (!rc && do_profile) profile(c, b, nv, depth, maxp, maxg);
            beast_ctx_free(c);
            c = NULL;
            if (!rc && par.n && maxg > 0)
                rc = bench_parallel(m, b, nv, &r, &par, &tg, fmt, &cl, do_profile, &first);
            beast_batch_free(b);
            beast_model_free(m);
        }
    }
    if (!strcmp(fmt, "json")) printf("\n]\n");
    return rc;
}
