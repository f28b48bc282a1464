/* cmd_run.c: `beast run`: one prompt in, streamed text out, timings on
 * stderr. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

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
    int n = cli_tokenize(m, text, add_special, rendered != NULL, &toks);
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
        fprintf(stderr, "backend: %s%s%s%s\n", in.backend, *in.gpu_note ? " (no GPU: " : "",
                in.gpu_note, *in.gpu_note ? ")" : "");
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
    if (!(c = beast_ctx_new(m, &cp)) || !(s = sampler_new(&o.sp, beast_n_vocab(m)))) {
        fprintf(stderr, "beast: %s\n", beast_error());
        goto out;
    }
    cli_install_sigint();
    cli_gen_stats st;
    if (cli_generate(c, m, s, &o, toks, n, stdout, &st, NULL, NULL)) goto out;
    cli_print_stats(stderr, load_ms, &st);
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
