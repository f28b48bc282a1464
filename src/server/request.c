/* request.c: srv_gen, the API-independent form of a generation request
 * (defaults, freeing, turning it into prompt tokens with the model), request
 * ids, and the srv_resp dispatchers that hand events to the API's
 * formatter. */
#include "server/server.h"
#include "util/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* 64 unpredictable-enough bits (request ids, default seeds). */
static uint64_t rand64(void) {
    static atomic_ullong counter;
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                 atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
}

void srv_make_id(char *out, size_t cap, const char *prefix) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char tail[25];
    uint64_t r = 0;
    for (int i = 0; i < 24; i++) {
        if (i % 8 == 0) r = rand64();
        tail[i] = abc[r % 62];
        r /= 62;
    }
    tail[24] = 0;
    snprintf(out, cap, "%s%s", prefix, tail);
}

void srv_gen_init(srv_gen *g, int api) {
    memset(g, 0, sizeof *g);
    g->api = api;
    g->sp = sampler_default_params();
    g->sp.seed = rand64();
    g->max_tokens = api == SRV_API_COMPLETION ? 16 : -1; /* OpenAI's defaults */
    g->logprobs = -1;
    g->stream = api == SRV_API_OLLAMA_GENERATE || api == SRV_API_OLLAMA_CHAT;
}

void srv_gen_free(srv_gen *g) {
    for (int i = 0; i < g->n_msgs; i++) {
        free((char *)g->msgs[i].role);
        free((char *)g->msgs[i].content);
    }
    free(g->msgs);
    free(g->prompt);
    free(g->tokens);
    free(g->bias);
    for (int i = 0; i < g->n_stop; i++) free(g->stops[i]);
    memset(g, 0, sizeof *g);
}

int srv_gen_tokens(const beast_model *m, const srv_gen *g, int32_t **out, srv_err *e) {
    int n_vocab = beast_n_vocab(m);
    *out = NULL;
    for (int i = 0; i < g->sp.n_bias; i++) {
        if (g->bias[i].token < 0 || g->bias[i].token >= n_vocab) {
            srv_err_set(e, 400, "logit_bias",
                        "logit_bias: token %d is not in the vocabulary (0..%d)",
                        (int)g->bias[i].token, n_vocab - 1);
            return -1;
        }
    }
    int n = -1;
    if (g->n_msgs > 0) {
        char *rendered = NULL;
        if (beast_chat_render(m, g->msgs, g->n_msgs, true, &rendered)) {
            srv_err_set(e, 400, "messages", "the chat template failed: %s", beast_error());
            return -1;
        }
        /* A rendered template carries its own BOS when the model wants one. */
        bool add_special = true;
        char bos[64];
        int32_t b = beast_token_bos(m);
        int nb = b >= 0 ? beast_token_piece(m, b, bos, sizeof bos, true) : 0;
        if (nb > 0 && nb < (int)sizeof bos && !strncmp(rendered, bos, (size_t)nb))
            add_special = false;
        n = beast_tokenize_alloc(m, rendered, strlen(rendered), add_special, true, out);
        free(rendered);
    } else if (g->prompt) {
        n = beast_tokenize_alloc(m, g->prompt, strlen(g->prompt), true, true, out);
    } else if (g->tokens) {
        for (int i = 0; i < g->n_tokens; i++) {
            if (g->tokens[i] < 0 || g->tokens[i] >= n_vocab) {
                srv_err_set(e, 400, "prompt", "prompt token %d is not in the vocabulary (0..%d)",
                            (int)g->tokens[i], n_vocab - 1);
                return -1;
            }
        }
        *out = xmalloc((size_t)(g->n_tokens ? g->n_tokens : 1) * sizeof **out);
        if (*out) {
            memcpy(*out, g->tokens, (size_t)g->n_tokens * sizeof **out);
            n = g->n_tokens;
        }
    } else {
        n = 0;
    }
    if (n < 0) {
        srv_err_set(e, 500, NULL, "tokenizing the prompt failed: %s", beast_error());
        return -1;
    }
    if (n == 0) {
        free(*out);
        *out = NULL;
        srv_err_set(e, 400, g->n_msgs ? "messages" : "prompt", "the prompt is empty");
        return -1;
    }
    return n;
}

const char *srv_finish_name(int finish) {
    return finish == SRV_FINISH_STOP ? "stop" : "length";
}

/* ---- responses ---- */

void srv_resp_init(srv_resp *r, int api, const srv_gen *g, const beast_model *m,
                   const char *model_name, double load_s) {
    memset(r, 0, sizeof *r);
    r->api = api;
    r->stream = g->stream;
    r->include_usage = g->include_usage;
    r->m = m;
    r->model_name = model_name;
    r->logprobs = g->logprobs;
    r->load_s = load_s;
    r->created = (long long)time(NULL);
    r->t_start = time_now();
    srv_make_id(r->id, sizeof r->id, api == SRV_API_CHAT ? "chatcmpl-" : "cmpl-");
}

void srv_resp_free(srv_resp *r) {
    srv_buf_free(&r->text);
    if (r->lp) json_decref(r->lp);
    r->lp = NULL;
}

void srv_resp_token(srv_resp *r, const srv_event *ev, srv_buf *out) {
    if (r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION)
        srv_openai_token(r, ev, out);
    else
        srv_ollama_token(r, ev, out);
}

void srv_resp_done(srv_resp *r, const srv_event *ev, srv_buf *out, int *status) {
    *status = 200;
    if (r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION)
        srv_openai_done(r, ev, out, status);
    else
        srv_ollama_done(r, ev, out, status);
}

void srv_resp_keepalive(const srv_resp *r, srv_buf *out) {
    /* SSE comments are ignored by clients; JSON and NDJSON parsers skip
     * whitespace before a value */
    if (r->stream && (r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION))
        srv_buf_puts(out, ": keep-alive\n\n");
    else
        srv_buf_add(out, " ", 1);
}
