/* cmd_serve.c: `beast serve`: load a model, start the batching scheduler
 * and the HTTP server (OpenAI- and Ollama-compatible), print one "serving"
 * line when ready, and shut down cleanly on SIGINT / SIGTERM. Built only
 * with the server library (BEAST_HAVE_SERVER). */
#ifdef BEAST_HAVE_SERVER
#include "cli/cli.h"
#include "server/sched.h"
#include "server/server.h"
#include "util/util.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char SERVE_HELP[] =
    "usage: beast serve [-m MODEL] [options]\n"
    "\n"
    "Serve the model over HTTP: OpenAI API (/v1/chat/completions, /v1/completions,\n"
    "/v1/models), Ollama API (/api/generate, /api/chat, /api/tags, /api/show,\n"
    "/api/version), /health, /metrics and a chat page at /.\n"
    "\n"
    "  -m, --model PATH         GGUF file (default: the default model)\n"
    "      --host ADDR          address to bind (default 127.0.0.1; 0.0.0.0 = all)\n"
    "      --port N             TCP port (default 8080; 0 = any free port)\n"
    "      --parallel N         requests generated at once (default 4)\n"
    "  -c, --ctx N              positions per request, prompt + reply (default 4096,\n"
    "                           at most the model's training length)\n"
    "  -b, --batch N            tokens per engine step (default 512)\n"
    "      --queue N            requests that may wait for a slot (default 64); more\n"
    "                           get 429 with Retry-After\n"
    "      --timeout S          per-request time limit in seconds (default 0 = none)\n"
    "      --api-key KEY        require 'Authorization: Bearer KEY' (also $BEAST_API_KEY)\n"
    "      --max-body N         request body limit in bytes (default 1048576)\n"
    "      --max-conns N        concurrent connections (default 256)\n"
    "      --idle-timeout S     close connections idle this long (default 20)\n"
    "      --read-timeout S     a request must arrive whole within S seconds (default 30)\n"
    "      --drain S            on SIGINT/SIGTERM, let replies finish for S seconds\n"
    "                           before cancelling them (default 5)\n"
    "      --deterministic      results independent of batch composition and of the\n"
    "                           prefix cache (default on the CPU, where it costs some\n"
    "                           prefill speed; on the GPU it costs much more)\n"
    "      --no-deterministic   allow batch-dependent rounding (faster prefill on the CPU)\n"
    "      --no-prefix-cache    do not reuse the KV of shared prompt prefixes\n"
    "  -t, --threads N          CPU threads (default: all cores)\n"
    "  -ngl, --gpu-layers N     layers on the GPU when there is one: -1 = all (default),\n"
    "                           0 = CPU only, N = the last N (the first ones and the\n"
    "                           token embedding on the CPU)\n"
    "  -v, --verbose            more detail on stderr\n"
    "  -h, --help               this help\n";

static int parse_num(const char *name, const char *arg, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "beast serve: --%s: '%s' is not a number in [%g, %g]\n", name, arg, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* The model's id for the APIs: the file name without ".gguf". */
static void model_id(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) out[n - 5] = 0;
}

int cmd_serve(int argc, char **argv) {
    cli_common o;
    cli_common_init(&o);
    srv_http_params hp = srv_http_default_params();
    srv_sched_params sp = srv_sched_default_params();
    int gpu_layers = -1, n_ctx = 4096;
    int deterministic = -1; /* -1: on for the CPU backend, off for the GPU */
    bool ctx_given = false;
    double drain = 5;
    const char *api_key = getenv("BEAST_API_KEY");
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"host", required_argument, 0, 3001},
                                             {"port", required_argument, 0, 3002},
                                             {"parallel", required_argument, 0, 3003},
                                             {"ctx", required_argument, 0, 'c'},
                                             {"ctx-size", required_argument, 0, 'c'},
                                             {"batch", required_argument, 0, 'b'},
                                             {"batch-size", required_argument, 0, 'b'},
                                             {"queue", required_argument, 0, 3004},
                                             {"timeout", required_argument, 0, 3005},
                                             {"api-key", required_argument, 0, 3006},
                                             {"max-body", required_argument, 0, 3007},
                                             {"max-conns", required_argument, 0, 3008},
                                             {"idle-timeout", required_argument, 0, 3009},
                                             {"drain", required_argument, 0, 3010},
                                             {"read-timeout", required_argument, 0, 3014},
                                             {"deterministic", no_argument, 0, 3011},
                                             {"no-deterministic", no_argument, 0, 3015},
                                             {"no-prefix-cache", no_argument, 0, 3012},
                                             {"gpu-layers", required_argument, 0, 3013},
                                             {"n-gpu-layers", required_argument, 0, 3013},
                                             {"threads", required_argument, 0, 't'},
                                             {"verbose", no_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int opt;
    double v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:c:b:t:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            o.model = optarg;
            break;
        case 3001:
            hp.host = optarg;
            break;
        case 3002:
            if (parse_num("port", optarg, 0, 65535, &v)) return 2;
            hp.port = (int)v;
            break;
        case 3003:
            if (parse_num("parallel", optarg, 1, 1024, &v)) return 2;
            sp.n_parallel = (int)v;
            break;
        case 'c':
            if (parse_num("ctx", optarg, 0, 1 << 24, &v)) return 2;
            n_ctx = (int)v;
            ctx_given = true;
            break;
        case 'b':
            if (parse_num("batch", optarg, 1, 65536, &v)) return 2;
            sp.n_batch = (int)v;
            break;
        case 3004:
            if (parse_num("queue", optarg, 0, 1 << 20, &v)) return 2;
            sp.queue_max = (int)v;
            break;
        case 3005:
            if (parse_num("timeout", optarg, 0, 1e7, &v)) return 2;
            hp.req_timeout_s = v;
            break;
        case 3006:
            api_key = optarg;
            break;
        case 3007:
            if (parse_num("max-body", optarg, 64, 1 << 30, &v)) return 2;
            hp.max_body = (size_t)v;
            break;
        case 3008:
            if (parse_num("max-conns", optarg, 1, 100000, &v)) return 2;
            hp.max_conns = (int)v;
            break;
        case 3009:
            if (parse_num("idle-timeout", optarg, 1, 86400, &v)) return 2;
            hp.conn_timeout_s = (int)v;
            break;
        case 3010:
            if (parse_num("drain", optarg, 0, 3600, &v)) return 2;
            drain = v;
            break;
        case 3014:
            if (parse_num("read-timeout", optarg, 1, 86400, &v)) return 2;
            hp.read_timeout_s = v;
            break;
        case 3011:
            deterministic = 1;
            break;
        case 3015:
            deterministic = 0;
            break;
        case 3012:
            sp.prefix_cache = false;
            break;
        case 3013:
            if (parse_num("gpu-layers", optarg, -1, 100000, &v)) return 2;
            gpu_layers = (int)v;
            break;
        case 't':
            if (parse_num("threads", optarg, 1, 1024, &v)) return 2;
            o.n_threads = (int)v;
            break;
        case 'v':
            o.verbose = true;
            break;
        case 'h':
            fputs(SERVE_HELP, stdout);
            return 0;
        default:
            fputs(SERVE_HELP, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "beast serve: unexpected argument '%s'\n%s", argv[optind], SERVE_HELP);
        return 2;
    }
    const char *path = cli_model_path(&o, argv[0]);
    if (!path) return 1;

    /* SIGINT/SIGTERM are taken by sigwait below: block them before any
     * thread starts so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    double t0 = time_now();
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = o.n_threads;
    mp.n_gpu_layers = gpu_layers;
    mp.deterministic = deterministic == 1;
    beast_model *m = beast_model_load(path, &mp);
    if (!m) {
        fprintf(stderr, "beast: %s\n", beast_error());
        return 1;
    }
    beast_model_info mi;
    beast_model_get_info(m, &mi);
    if (n_ctx == 0 || (mi.n_ctx_train > 0 && n_ctx > mi.n_ctx_train)) {
        if (ctx_given && n_ctx > 0)
            fprintf(stderr, "beast serve: --ctx %d is more than the model's %d; using %d\n", n_ctx,
                    mi.n_ctx_train, mi.n_ctx_train);
        n_ctx = mi.n_ctx_train > 0 ? mi.n_ctx_train : 4096;
    }
    sp.n_ctx = n_ctx;
    /* Default: batch-independent results on the CPU, where the exact batch
     * kernels cost a part of prefill speed (docs/BENCHMARKS.md), so a user
     * gets the same text alone or among 32 and with or without the prefix
     * cache. On the GPU the exact mode runs every matmul as mat-vecs, which
     * costs most of prefill and batching throughput: off unless asked. */
    if (deterministic < 0) deterministic = strcmp(mi.backend, "cpu") == 0;
    sp.deterministic = deterministic;
    srv_sched *s = srv_sched_new(m, &sp);
    if (!s) {
        fprintf(stderr, "beast: %s\n", beast_error());
        beast_model_free(m);
        return 1;
    }
    char id[256];
    model_id(path, id, sizeof id);
    hp.model_name = id;
    hp.api_key = api_key;
    hp.load_s = time_now() - t0;
    srv_http *h = srv_http_start(s, &hp);
    if (!h) {
        fprintf(stderr, "beast: %s\n", beast_error());
        srv_sched_free(s);
        beast_model_free(m);
        return 1;
    }
    bool v6 = strchr(hp.host, ':') != NULL;
    printf("beast: serving %s on http://%s%s%s:%d (parallel %d, ctx %d)\n", id, v6 ? "[" : "",
           hp.host, v6 ? "]" : "", srv_http_port(h), sp.n_parallel, sp.n_ctx);
    fflush(stdout);
    char where[512];
    cli_backend_desc(&mi, where, sizeof where);
    if (o.verbose)
        fprintf(stderr, "beast serve: backend %s, batch %d, queue %d%s%s\n", where, sp.n_batch,
                sp.queue_max, api_key && *api_key ? ", API key required" : "",
                deterministic ? ", deterministic" : "");

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "beast serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_http_stop(h, drain);
    srv_http_free(h);
    srv_sched_free(s);
    beast_model_free(m);
    return 0;
}
#else
typedef int cmd_serve_unused; /* an empty file is not valid C */
#endif
