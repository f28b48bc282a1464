/* cmd_run.c: `beast run`: one prompt in, streamed text out, timings on
 * stderr. */
#include "cli/cli.h"
#include "cuda/cuda.h"
#include "model/model.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char RUN_HELP[] =
    "usage: beast run [-m MODEL] -p PROMPT [options]\n"
    "\n"
    "Generate text from PROMPT and stream it to stdout; a timing line goes to stderr.\n"
    "\n"
    "  -p, --prompt TEXT        the prompt (or - to read it from stdin)\n"
    "      --chat               format the prompt as a user message with the model's\n"
    "                           chat template (instruct models)\n"
    "      --system TEXT        system message (with --chat)\n"
    "  -h, --help               this help\n";

static char *read_stdin(void) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += k;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    buf[n] = 0;
    return buf;
}

/* --verbose: where the time to ready went. The backend's own split (device
 * set-up, weight upload, graph capture) comes from the CUDA counters; the
 * rest of the load is mapping and validating the file and the tokenizer. */
static void print_load_split(const beast_model *m, double load_ms, double ctx_ms) {
    bk_cuda_stats cs;
    bk_cuda_get_stats(m->bk, &cs);
    double map_ms = load_ms - cs.init_ms - cs.upload_ms;
    fprintf(stderr, "load split: map+parse+tokenizer %.0f ms", map_ms);
    if (bk_is_cuda(m->bk))
        fprintf(stderr, ", gpu init %.0f ms, weight upload %.0f ms (%.0f MiB, %.2f GB/s)",
                cs.init_ms, cs.upload_ms, cs.weight_bytes / 1048576.0,
                cs.upload_ms > 0 ? cs.weight_bytes / cs.upload_ms / 1e6 : 0.0);
    fprintf(stderr, ", context allocation %.0f ms", ctx_ms);
    if (bk_is_cuda(m->bk))
        fprintf(stderr,
                ", graph capture %.0f ms (%ld graphs, during generation), f16 weight copies "
                "%.0f MiB (made by the first prompt)",
                cs.capture_ms, cs.graph_captures, cs.f16_bytes / 1048576.0);
    fprintf(stderr, "; ready after %.0f ms\n", load_ms + ctx_ms);
}

int cmd_run(int argc, char **argv) {
    cli_common o;
    cli_common_init(&o);
    const char *prompt = NULL, *system = NULL;
    bool chat = false;
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"prompt", required_argument, 0, 'p'},
                                             {"chat", no_argument, 0, 2001},
                                             {"system", required_argument, 0, 2002},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "p:h", longopts, NULL)) != -1) {
        int r = cli_common_parse(&o, opt, optarg);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (opt) {
        case 'p':
            prompt = optarg;
            break;
        case 2001:
            chat = true;
            break;
        case 2002:
            system = optarg;
            break;
        case 'h':
            printf("%s\n%s", RUN_HELP, CLI_COMMON_HELP);
            return 0;
        default:
            fprintf(stderr, "%s", RUN_HELP);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "beast run: unexpected argument '%s'\n%s", argv[optind], RUN_HELP);
        return 2;
    }
    if (!prompt) {
        fprintf(stderr, "beast run: a prompt is required (-p)\n%s", RUN_HELP);
        return 2;
    }
    char *owned_prompt = NULL;
    if (!strcmp(prompt, "-")) {
        if (!(owned_prompt = read_stdin())) return 1;
        prompt = owned_prompt;
    }

    int rc = 1;
    double load_ms = 0;
    beast_model *m = NULL;
    beast_ctx *c = NULL;
    sampler *s = NULL;
    char *rendered = NULL;
    int32_t *toks = NULL;
    if (!(m = cli_load_model(&o, argv[0], &load_ms))) goto out;
    if (chat) {
        beast_chat_msg msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (beast_chat_msg){"system", system};
        msgs[nm++] = (beast_chat_msg){"user", prompt};
        if (beast_chat_render(m, msgs, nm, true, &rendered)) {
            fprintf(stderr, "beast: %s\n", beast_error());
            goto out;
        }
    }
    /* A rendered template carries its own BOS when the model wants one. */
    const char *text = rendered ? rendered : prompt;
    bool add_special = true;
    if (rendered) {
        char bos[64];
        int32_t b = beast_token_bos(m);
        int nb = b >= 0 ? beast_token_piece(m, b, bos, sizeof bos, true) : 0;
        if (nb > 0 && nb < (int)sizeof bos && !strncmp(rendered, bos, (size_t)nb))
            add_special = false;
    }
    int n = beast_tokenize_alloc(m, text, strlen(text), add_special, rendered != NULL, &toks);
    if (n < 0) {
        fprintf(stderr, "beast: %s\n", beast_error());
        goto out;
    }
    if (n == 0) {
        fprintf(stderr, "beast: the prompt is empty\n");
        goto out;
    }
    if (o.verbose) {
        beast_model_info in;
        beast_model_get_info(m, &in);
        char where[512];
        cli_backend_desc(&in, where, sizeof where);
        fprintf(stderr, "backend: %s\n", where);
        fprintf(stderr, "prompt: %d tokens:", n);
        for (int i = 0; i < n; i++) {
            char piece[64];
            int np = beast_token_piece(m, toks[i], piece, sizeof piece - 1, true);
            piece[np > 0 && np < (int)sizeof piece ? np : 0] = 0;
            fprintf(stderr, " %d'%s'", toks[i], piece);
        }
        fprintf(stderr, "\n");
    }
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = o.n_ctx;
    cp.n_batch = o.n_batch;
    struct timespec c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    if (!(c = beast_ctx_new(m, &cp)) || !(s = sampler_new(&o.sp, beast_n_vocab(m)))) {
        fprintf(stderr, "beast: %s\n", beast_error());
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &c1);
    double ctx_ms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    cli_install_sigint();
    cli_gen_stats st;
    if (cli_generate(c, m, s, &o, toks, n, stdout, &st, NULL, NULL)) goto out;
    cli_print_stats(stderr, load_ms, &st);
    if (o.verbose) print_load_split(m, load_ms, ctx_ms);
    rc = 0;
out:
    free(toks);
    free(rendered);
    free(owned_prompt);
    sampler_free(s);
    beast_ctx_free(c);
    beast_model_free(m);
    return rc;
}
