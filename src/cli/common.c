/* common.c: options, model lookup and the streaming generation loop shared
 * by the beast subcommands. */
#include "cli/cli.h"
#include "sampler/stop.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "SmolLM2-135M-Instruct.Q4_1.gguf"

const char CLI_COMMON_HELP[] =
    "model and context:\n"
    "  -m, --model PATH         GGUF file (default: models/" DEFAULT_MODEL ")\n"
    "  -t, --threads N          CPU threads (default: all cores)\n"
    "  -c, --ctx-size N         context length (default: the model's)\n"
    "  -b, --batch-size N       tokens per forward pass (default 512)\n"
    "  -n, --n-predict N        tokens to generate (default 256; -1 = until the context is full)\n"
    "  -ngl, --gpu-layers N     layers on the GPU when there is one: -1 = all (default),\n"
    "                           0 = none (CPU only), N = the last N, the first ones and\n"
    "                           the token embedding on the CPU (less GPU memory, slower)\n"
    "sampling:\n"
    "      --temp T             temperature (default 0.8; 0 = greedy)\n"
    "      --greedy             same as --temp 0\n"
    "      --top-k K            (default 40; 0 = off)\n"
    "      --top-p P            (default 0.95; 1 = off)\n"
    "      --min-p P            (default 0.05; 0 = off)\n"
    "      --repeat-penalty R   (default 1.0 = off)\n"
    "      --repeat-last-n N    penalty window (default 64; -1 = all)\n"
    "      --presence-penalty P, --frequency-penalty F   (default 0)\n"
    "      --logit-bias ID=B    add B to token ID's logit (repeatable; B may be -inf)\n"
    "  -s, --seed S             random seed (default: fixed)\n"
    "      --stop STR           stop when STR is generated (repeatable)\n"
    "  -v, --verbose            more detail on stderr\n";

void cli_common_init(cli_common *o) {
    memset(o, 0, sizeof *o);
    o->n_gpu_layers = -1;
    o->n_predict = 256;
    o->n_batch = 512;
    o->sp = sampler_default_params();
}

static int parse_int(const char *name, const char *arg, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < lo || v > hi) {
        fprintf(stderr, "beast: --%s: '%s' is not a whole number in [%ld, %ld]\n", name, arg, lo,
                hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *name, const char *arg, float *out) {
    char *end;
    errno = 0;
    float v = strtof(arg, &end);
    if (errno || end == arg || *end || isnan(v)) {
        fprintf(stderr, "beast: --%s: '%s' is not a number\n", name, arg);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_common_parse(cli_common *o, int opt, const char *arg) {
    sampler_params *sp = &o->sp;
    switch (opt) {
    case 'm':
        o->model = arg;
        return 1;
    case 't':
        return parse_int("threads", arg, 1, 1024, &o->n_threads) ? -1 : 1;
    case 'c':
        return parse_int("ctx-size", arg, 1, 1 << 24, &o->n_ctx) ? -1 : 1;
    case 'b':
        return parse_int("batch-size", arg, 1, 65536, &o->n_batch) ? -1 : 1;
    case 'n':
        return parse_int("n-predict", arg, -1, 1 << 24, &o->n_predict) ? -1 : 1;
    case 'v':
        o->verbose = true;
        return 1;
    case 1012:
        return parse_int("gpu-layers", arg, -1, 1 << 20, &o->n_gpu_layers) ? -1 : 1;
    case 1001:
        return parse_float("temp", arg, &sp->temperature) ? -1 : 1;
    case 1011:
        sp->temperature = 0;
        return 1;
    case 1002:
        return parse_int("top-k", arg, 0, 1 << 30, &sp->top_k) ? -1 : 1;
    case 1003:
        return parse_float("top-p", arg, &sp->top_p) ? -1 : 1;
    case 1004:
        return parse_float("min-p", arg, &sp->min_p) ? -1 : 1;
    case 1005:
        return parse_float("repeat-penalty", arg, &sp->repeat_penalty) ? -1 : 1;
    case 1006:
        return parse_int("repeat-last-n", arg, -1, 1 << 24, &sp->repeat_last_n) ? -1 : 1;
    case 1007:
        return parse_float("presence-penalty", arg, &sp->presence_penalty) ? -1 : 1;
    case 1008:
        return parse_float("frequency-penalty", arg, &sp->frequency_penalty) ? -1 : 1;
    case 's': {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end) {
            fprintf(stderr, "beast: --seed: '%s' is not a whole number\n", arg);
            return -1;
        }
        sp->seed = v;
        return 1;
    }
    case 1009:
        if (o->n_stops == CLI_MAX_STOPS) {
            fprintf(stderr, "beast: at most %d --stop strings\n", CLI_MAX_STOPS);
            return -1;
        }
        o->stops[o->n_stops++] = arg;
        return 1;
    case 1010: {
        const char *eq = strchr(arg, '=');
        int id;
        float b;
        char idbuf[32];
        if (!eq || eq - arg >= (long)sizeof idbuf) {
            fprintf(stderr, "beast: --logit-bias: expected ID=BIAS, got '%s'\n", arg);
            return -1;
        }
        memcpy(idbuf, arg, (size_t)(eq - arg));
        idbuf[eq - arg] = 0;
        if (parse_int("logit-bias", idbuf, 0, 1 << 30, &id)) return -1;
        if (!strcmp(eq + 1, "-inf"))
            b = -INFINITY;
        else if (parse_float("logit-bias", eq + 1, &b))
            return -1;
        if (o->sp.n_bias == CLI_MAX_BIAS) {
            fprintf(stderr, "beast: at most %d --logit-bias entries\n", CLI_MAX_BIAS);
            return -1;
        }
        o->bias[o->sp.n_bias].token = id;
        o->bias[o->sp.n_bias].bias = b;
        o->sp.n_bias++;
        o->sp.bias = o->bias;
        return 1;
    }
    }
    return 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *cli_model_path(const cli_common *o, const char *argv0) {
    static char buf[4096];
    if (o->model) return o->model;
    const char *env = getenv("BEAST_MODEL");
    if (env && *env) return env;
    const char *dir = getenv("BEAST_MODELS_DIR");
    if (dir && *dir) {
        snprintf(buf, sizeof buf, "%s/%s", dir, DEFAULT_MODEL);
        if (file_exists(buf)) return buf;
    }
    snprintf(buf, sizeof buf, "models/%s", DEFAULT_MODEL);
    if (file_exists(buf)) return buf;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(exe, sizeof exe, "%s", argv0);
        n = (ssize_t)strlen(exe);
    }
    exe[n] = 0;
    char *d = dirname(exe);
    const char *rel[] = {"../models", "../../models", "models"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        snprintf(buf, sizeof buf, "%s/%s/%s", d, rel[i], DEFAULT_MODEL);
        if (file_exists(buf)) return buf;
    }
    fprintf(stderr,
            "beast: no model given (-m) and the default model models/%s is not there;\n"
            "       run scripts/setup.sh once to fetch it\n",
            DEFAULT_MODEL);
    return NULL;
}

beast_model *cli_load_model(const cli_common *o, const char *argv0, double *load_ms) {
    const char *path = cli_model_path(o, argv0);
    if (!path) return NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = o->n_threads;
    mp.n_gpu_layers = o->n_gpu_layers;
    beast_model *m = beast_model_load(path, &mp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!m) {
        fprintf(stderr, "beast: %s\n", beast_error());
        return NULL;
    }
    if (load_ms) *load_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    return m;
}

void cli_backend_desc(const beast_model_info *in, char *buf, size_t n) {
    if (in->n_gpu_layers > 0 && in->n_gpu_layers < in->n_layer)
        snprintf(buf, n, "%s: %d/%d layers, the first %d on the CPU", in->backend, in->n_gpu_layers,
                 in->n_layer, in->n_layer - in->n_gpu_layers);
    else if (in->n_gpu_layers > 0)
        snprintf(buf, n, "%s: %d/%d layers", in->backend, in->n_gpu_layers, in->n_layer);
    else
        snprintf(buf, n, "%s%s%s%s", in->backend, *in->gpu_note ? " (no GPU: " : "", in->gpu_note,
                 *in->gpu_note ? ")" : "");
}

volatile sig_atomic_t cli_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

void cli_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* One generated token's handling: recorded, printed through the stop
 * matcher; false when generation ends with it (finish says why). */
typedef struct {
    beast_ctx *c;
    const beast_model *m;
    sampler *s;
    stop *sm;
    FILE *out;
    cli_gen_stats *st;
    int32_t **gen;
    int *gen_cap;
    int failed;
} gen_state;

static bool emit(gen_state *g, int32_t tok) {
    cli_gen_stats *st = g->st;
    sampler_accept(g->s, tok);
    if (g->gen) {
        if (st->n_gen == *g->gen_cap) {
            int cap = *g->gen_cap ? 2 * *g->gen_cap : 256;
            int32_t *t = realloc(*g->gen, (size_t)cap * sizeof *t);
            if (!t) {
                g->failed = 1;
                return false;
            }
            *g->gen = t;
            *g->gen_cap = cap;
        }
        (*g->gen)[st->n_gen] = tok;
    }
    st->n_gen++;
    if (beast_token_is_eog(g->m, tok)) {
        st->finish = "stop";
        return false;
    }
    char piece[512], text[4096];
    int np = beast_token_piece(g->m, tok, piece, sizeof piece, false);
    if (np < 0 || np > (int)sizeof piece) np = 0;
    int hit = 0;
    size_t nt = stop_feed(g->sm, piece, (size_t)np, text, sizeof text, &hit);
    fwrite(text, 1, nt, g->out);
    fflush(g->out);
    if (hit) {
        st->finish = "stop";
        return false;
    }
    return true;
}

/* beast_generate_greedy's callback */
static bool emit_greedy(void *user, int32_t tok) {
    gen_state *g = user;
    if (cli_interrupted) {
        g->st->finish = "interrupted";
        return false;
    }
    return emit(g, tok);
}

int cli_generate(beast_ctx *c, const beast_model *m, sampler *s, const cli_common *o,
                 const int32_t *prompt, int n_prompt, FILE *out, cli_gen_stats *st, int32_t **gen,
                 int *gen_cap) {
    memset(st, 0, sizeof *st);
    st->finish = "error";
    double t1 = now_s();
    int n_ctx = beast_ctx_n_ctx(c);
    if (beast_seq_len(c, 0) + n_prompt >= n_ctx) {
        fprintf(stderr, "beast: prompt too long: %d tokens, the context holds %d\n",
                beast_seq_len(c, 0) + n_prompt, n_ctx);
        return -1;
    }
    beast_batch *b = beast_batch_new(n_prompt > 0 ? n_prompt : 1);
    stop *sm = stop_new(o->stops, o->n_stops);
    if (!b || !sm) goto fail;
    int rc = -1;
    gen_state g = {c, m, s, sm, out, st, gen, gen_cap, 0};

    double t0 = now_s();
    for (int i = 0; i < n_prompt; i++) beast_batch_add(b, prompt[i], 0, i == n_prompt - 1);
    if (n_prompt > 0 && beast_decode(c, b)) {
        fprintf(stderr, "beast: %s\n", beast_error());
        goto done;
    }
    st->n_prompt = n_prompt;
    st->prompt_s = now_s() - t0;

    int limit = o->n_predict < 0 ? n_ctx : o->n_predict;
    /* greedy without penalties: after the first token (from the prompt's
     * logits), the device picks and feeds the rest (beast_generate_greedy) */
    const bool greedy = sampler_params_greedy(&o->sp);
    const float *logits = beast_logits(c, n_prompt - 1);
    t1 = now_s();
    st->finish = "length";
    for (int i = 0; i < limit; i++) {
        if (cli_interrupted) {
            st->finish = "interrupted";
            break;
        }
        int32_t tok = sampler_sample(s, logits);
        if (tok < 0) {
            fprintf(stderr, "beast: %s\n", beast_error());
            st->finish = "error";
            goto done;
        }
        if (!emit(&g, tok)) break;
        if (beast_seq_len(c, 0) + 1 >= n_ctx) { /* positions up to n_ctx - 1 */
            st->finish = "length";
            break;
        }
        if (greedy) { /* keeping to the same positions */
            int n = limit - i - 1, room = n_ctx - 1 - beast_seq_len(c, 0);
            if (n > room) n = room;
            if (beast_generate_greedy(c, 0, tok, n, emit_greedy, &g) < 0) {
                fprintf(stderr, "beast: %s\n", beast_error());
                st->finish = "error";
                goto done;
            }
            break;
        }
        beast_batch_clear(b);
        beast_batch_add(b, tok, 0, true);
        if (beast_decode(c, b)) {
            fprintf(stderr, "beast: %s\n", beast_error());
            st->finish = "error";
            goto done;
        }
        logits = beast_logits(c, 0);
    }
    if (g.failed) goto done;
    size_t nt;
    char text[4096];
    while ((nt = stop_flush(sm, text, sizeof text)) > 0) fwrite(text, 1, nt, out);
    fflush(out);
    rc = 0;
done:
    st->gen_s = now_s() - t1;
    beast_batch_free(b);
    stop_free(sm);
    return rc;
fail:
    fprintf(stderr, "beast: %s\n", beast_error());
    beast_batch_free(b);
    stop_free(sm);
    return -1;
}

void cli_print_stats(FILE *f, double load_ms, const cli_gen_stats *st) {
    fprintf(f, "\nload %.0f ms | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s\n",
            load_ms, st->n_prompt, st->prompt_s > 0 ? st->n_prompt / st->prompt_s : 0.0, st->n_gen,
            st->gen_s > 0 ? st->n_gen / st->gen_s : 0.0);
}
