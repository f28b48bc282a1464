/* cmd_chat.c: `beast chat`: interactive chat with line editing and history
 * (libedit). Each turn re-renders the whole conversation with the model's
 * chat template and reuses the KV cache for the tokens that did not change,
 * so only the new turn is processed. Ctrl-C stops the current reply. */
#include "cli/cli.h"

#include <editline/readline.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static const char CHAT_HELP[] =
    "usage: beast chat [-m MODEL] [options]\n"
    "\n"
    "Chat with an instruct model. Commands: /reset (new conversation), /exit.\n"
    "Ctrl-C stops the current reply; Ctrl-D or /exit quits.\n"
    "\n"
    "      --system TEXT        system message\n"
    "  -h, --help               this help\n";

typedef struct {
    beast_chat_msg *msgs;
    int n, cap;
} convo;

static int convo_add(convo *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        beast_chat_msg *m = realloc(c->msgs, (size_t)cap * sizeof *m);
        if (!m) return -1;
        c->msgs = m;
        c->cap = cap;
    }
    char *r = strdup(role), *t = strdup(content);
    if (!r || !t) {
        free(r);
        free(t);
        return -1;
    }
    c->msgs[c->n++] = (beast_chat_msg){r, t};
    return 0;
}

static void convo_clear(convo *c, int keep) {
    while (c->n > keep) {
        c->n--;
        free((char *)c->msgs[c->n].role);
        free((char *)c->msgs[c->n].content);
    }
}

/* Tokens currently in the context for sequence 0 (to find the common prefix
 * with the next rendering). */
typedef struct {
    int32_t *t;
    int n, cap;
} toklist;

static int toklist_push(toklist *l, const int32_t *t, int n) {
    if (l->n + n > l->cap) {
        int cap = l->cap * 2 > l->n + n ? l->cap * 2 : l->n + n;
        int32_t *p = realloc(l->t, (size_t)cap * sizeof *p);
        if (!p) return -1;
        l->t = p;
        l->cap = cap;
    }
    memcpy(l->t + l->n, t, (size_t)n * sizeof *t);
    l->n += n;
    return 0;
}

int cmd_chat(int argc, char **argv) {
    cli_common o;
    cli_common_init(&o);
    const char *system = NULL;
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"system", required_argument, 0, 2002},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int opt;
    optind = 1;
    o.n_predict = -1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "h", longopts, NULL)) != -1) {
        int r = cli_common_parse(&o, opt, optarg);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (opt) {
        case 2002:
            system = optarg;
            break;
        case 'h':
            printf("%s\n%s", CHAT_HELP, CLI_COMMON_HELP);
            return 0;
        default:
            fprintf(stderr, "%s", CHAT_HELP);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "beast chat: unexpected argument '%s'\n%s", argv[optind], CHAT_HELP);
        return 2;
    }
    double load_ms = 0;
    beast_model *m = cli_load_model(&o, argv[0], &load_ms);
    if (!m) return 1;
    int rc = 1;
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = o.n_ctx;
    cp.n_batch = o.n_batch;
    beast_ctx *c = beast_ctx_new(m, &cp);
    sampler *s = c ? sampler_new(&o.sp, beast_n_vocab(m)) : NULL;
    convo cv = {0};
    toklist ctx_toks = {0};
    int32_t *gen = NULL, *toks = NULL;
    int gen_cap = 0;
    if (!c || !s) {
        fprintf(stderr, "beast: %s\n", beast_error());
        goto out;
    }
    if (system && convo_add(&cv, "system", system)) goto out;
    int keep = cv.n;
    bool tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "beast chat: /reset starts over, /exit quits, Ctrl-C stops a reply\n");
    cli_install_sigint();
    using_history();
    for (;;) {
        cli_interrupted = 0;
        char *line = readline(tty ? "> " : "");
        if (!line) break;
        if (!*line) {
            free(line);
            continue;
        }
        if (tty) add_history(line);
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            free(line);
            convo_clear(&cv, keep);
            beast_seq_clear(c, 0);
            ctx_toks.n = 0;
            sampler_reset(s);
            fprintf(stderr, "(conversation cleared)\n");
            continue;
        }
        int rc_add = convo_add(&cv, "user", line);
        free(line);
        if (rc_add) goto out;
        char *rendered = NULL;
        if (beast_chat_render(m, cv.msgs, cv.n, true, &rendered)) {
            fprintf(stderr, "beast: %s\n", beast_error());
            convo_clear(&cv, cv.n - 1);
            continue;
        }
        free(toks);
        toks = NULL;
        /* the template emits BOS itself when the model wants one */
        int n = beast_tokenize_alloc(m, rendered, strlen(rendered), false, true, &toks);
        free(rendered);
        if (n < 0) {
            fprintf(stderr, "beast: %s\n", beast_error());
            convo_clear(&cv, cv.n - 1);
            continue;
        }
        /* reuse the cached prefix */
        int common = 0;
        while (common < n && common < ctx_toks.n && toks[common] == ctx_toks.t[common]) common++;
        if (common == n) common--; /* always feed at least one token */
        beast_seq_truncate(c, 0, common);
        ctx_toks.n = common;
        cli_gen_stats st;
        int r = cli_generate(c, m, s, &o, toks + common, n - common, stdout, &st, &gen, &gen_cap);
        if (r) {
            /* e.g. the conversation outgrew the context: drop this turn */
            convo_clear(&cv, cv.n - 1);
            beast_seq_truncate(c, 0, ctx_toks.n);
            fprintf(stderr, "(turn dropped; /reset to start over)\n");
            continue;
        }
        toklist_push(&ctx_toks, toks + common, n - common);
        /* the reply as the model produced it, for the history */
        size_t cap = 1024, len = 0;
        char *reply = malloc(cap);
        for (int i = 0; reply && i < st.n_gen; i++) {
            if (beast_token_is_eog(m, gen[i])) break;
            char piece[512];
            int np = beast_token_piece(m, gen[i], piece, sizeof piece, false);
            if (np <= 0 || np > (int)sizeof piece) continue;
            if (len + (size_t)np + 1 > cap) {
                char *nr = realloc(reply, cap = 2 * cap + (size_t)np);
                if (!nr) {
                    free(reply);
                    reply = NULL;
                    break;
                }
                reply = nr;
            }
            memcpy(reply + len, piece, (size_t)np);
            len += (size_t)np;
        }
        if (reply) reply[len] = 0;
        /* the tokens generated are in the cache but the next rendering
         * decides what stays: keep them in the list so the prefix matches */
        toklist_push(&ctx_toks, gen,
                     st.n_gen > 0 && strcmp(st.finish, "stop") ? st.n_gen : MAX(st.n_gen - 1, 0));
        ctx_toks.n = MIN(ctx_toks.n, beast_seq_len(c, 0));
        convo_add(&cv, "assistant", reply ? reply : "");
        free(reply);
        printf("\n");
        if (o.verbose) cli_print_stats(stderr, load_ms, &st);
        if (!strcmp(st.finish, "interrupted")) fprintf(stderr, "(stopped)\n");
    }
    rc = 0;
out:
    convo_clear(&cv, 0);
    free(cv.msgs);
    free(ctx_toks.t);
    free(gen);
    free(toks);
    sampler_free(s);
    beast_ctx_free(c);
    beast_model_free(m);
    return rc;
}
