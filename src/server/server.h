/* server.h: the internals of the HTTP front end of `beast serve` shared by
 * its files (not the scheduler, which is sched.h):
 *
 *   json_util.c  request-body checks (nesting depth and container sizes,
 *                before jansson parses), UTF-8 checking and repair, a
 *                growing byte buffer, JSON dumping
 *   request.c    srv_gen, the API-independent form of a generation request,
 *                and turning it into prompt tokens with the model
 *   api_openai.c OpenAI request parsing and response / SSE chunk formatting
 *   api_ollama.c Ollama request parsing and response / NDJSON formatting
 *   metrics.c    HTTP counters and the Prometheus text page
 *   http.c       the libmicrohttpd daemon: routing, auth, limits, streaming,
 *                client-disconnect detection, graceful shutdown
 *
 * Everything here but http.c is plain functions of their inputs, so the
 * tests (tests/test_srv_http.c) check them without sockets. */
#ifndef BEAST_SRV_SERVER_H
#define BEAST_SRV_SERVER_H

#include "server/sched.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits on request bodies ---- */
#define SRV_MAX_DEPTH    64      /* JSON nesting */
#define SRV_MAX_ELEMS    65536   /* entries of any one array or object */
#define SRV_MAX_MESSAGES 4096    /* chat messages */
#define SRV_MAX_BIAS     1024    /* logit_bias entries */
#define SRV_DEFAULT_BODY 1048576 /* request body bytes */
#define SRV_MAX_STOP_LEN 256     /* bytes of one stop string */

/* ---- errors: status code plus the API's error fields ---- */
typedef struct {
    int status;       /* HTTP status */
    const char *type; /* OpenAI error type, e.g. "invalid_request_error" */
    const char *code; /* OpenAI error code or NULL */
    char param[64];   /* offending field or "" */
    char message[320];
} srv_err;

void srv_err_set(srv_err *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- byte buffer ---- */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom; /* an append failed; contents are truncated */
} srv_buf;

void srv_buf_add(srv_buf *b, const void *s, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_free(srv_buf *b);

/* ---- JSON ---- */
/* Checks raw JSON text before parsing: nesting deeper than max_depth or an
 * array / object with more than max_elems entries fails (false + e, 400).
 * Does not validate the syntax (jansson does). */
bool srv_json_prescan(const char *s, size_t n, int max_depth, long max_elems, srv_err *e);
/* Prescan, then parse; the top level must be an object. NULL + e (400). */
json_t *srv_json_parse(const char *s, size_t n, srv_err *e);
bool srv_utf8_valid(const char *s, size_t n);
/* A JSON string from bytes that may not be valid UTF-8 (each bad byte
 * becomes U+FFFD) or may hold NULs (kept as \u0000). NULL only without
 * memory. */
json_t *srv_json_str(const char *s, size_t n);
/* A JSON number that is always finite (jansson rejects inf and NaN):
 * -inf becomes -9999, NaN 0 and +inf 9999. */
json_t *srv_json_real(double v);
/* Compact text of j, appended to b (nothing on failure). */
void srv_json_append(srv_buf *b, const json_t *j);

/* Typed field readers for request objects. Each returns 0 when the field
 * is absent or null (out untouched), 1 when read, -1 (e: 400 naming the
 * field) on a wrong type or a value outside [lo, hi]. */
int srv_get_num(const json_t *o, const char *key, double lo, double hi, double *out, srv_err *e);
int srv_get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out,
                srv_err *e);
int srv_get_bool(const json_t *o, const char *key, bool *out, srv_err *e);
/* A string field; *out points into o (valid while o lives). */
int srv_get_str(const json_t *o, const char *key, const char **out, size_t *len, srv_err *e);
/* "stop": a string or an array of strings, appended to g->stops. */
typedef struct srv_gen_s srv_gen;
int srv_get_stops(const json_t *o, const char *key, srv_gen *g, srv_err *e);

/* ---- requests ---- */
enum {
    SRV_API_CHAT = 0,        /* POST /v1/chat/completions */
    SRV_API_COMPLETION,      /* POST /v1/completions */
    SRV_API_OLLAMA_GENERATE, /* POST /api/generate */
    SRV_API_OLLAMA_CHAT      /* POST /api/chat */
};

struct srv_gen_s {
    int api;
    bool stream, include_usage;
    /* the prompt: messages (chat APIs, and /api/generate unless raw), a
     * text or a token list */
    beast_chat_msg *msgs; /* strings owned (malloc'd) */
    int n_msgs;
    char *prompt;    /* text prompt (completions, raw generate) */
    int32_t *tokens; /* token prompt (completions) */
    int n_tokens;
    bool load_only; /* Ollama: empty prompt, only "load the model" */
    int max_tokens; /* <= 0: until the context is full */
    sampler_params sp;
    sampler_bias *bias; /* sp.bias points here */
    char *stops[SRV_MAX_STOPS];
    int n_stop;
    int logprobs; /* -1 none, else the number of top entries (0: chosen only) */
    bool seed_given;
    bool ignore_eos; /* "ignore_eos" (vLLM/llama.cpp extension): generate max_tokens */
};

void srv_gen_init(srv_gen *g, int api);
void srv_gen_free(srv_gen *g);

/* Parse a request body (already srv_json_parse'd) into g. 0, or -1 + e. */
int srv_openai_parse(json_t *root, int api, srv_gen *g, srv_err *e);
int srv_ollama_parse(json_t *root, int api, srv_gen *g, srv_err *e);

/* Prompt tokens of g for model m (chat template rendered and tokenized with
 * control tokens recognised; text prompts with BOS as the model wants;
 * token prompts checked against the vocabulary), and logit-bias tokens
 * checked. Returns the count and *out (malloc'd), or -1 + e (400/500). */
int srv_gen_tokens(const beast_model *m, const srv_gen *g, int32_t **out, srv_err *e);

/* A fresh request id with the given prefix, e.g. "chatcmpl-" + 24 chars. */
void srv_make_id(char *out, size_t cap, const char *prefix);

/* ---- responses ---- */
typedef struct {
    int api;
    bool stream, include_usage;
    const beast_model *m;
    const char *model_name;
    char id[48];
    long long created; /* unix seconds */
    double t_start;    /* time_now() when the request arrived */
    double load_s;     /* model load time (Ollama load_duration) */
    int logprobs;      /* as srv_gen */
    bool role_sent;    /* chat stream: the first chunk carried the role */
    srv_buf text;      /* non-streaming: the reply so far */
    json_t *lp;        /* non-streaming logprobs accumulated (API's shape) */
    int text_off;      /* completions logprobs: text offset of the next token */
} srv_resp;

void srv_resp_init(srv_resp *r, int api, const srv_gen *g, const beast_model *m,
                   const char *model_name, double load_s);
void srv_resp_free(srv_resp *r);
/* A token event: streaming appends what goes on the wire (an SSE event or
 * an NDJSON line; nothing when there is nothing to say), non-streaming
 * accumulates. */
void srv_resp_token(srv_resp *r, const srv_event *ev, srv_buf *out);
/* The DONE event: streaming appends the final chunk(s) (and the SSE
 * [DONE]); non-streaming appends the whole JSON body. *status receives
 * the HTTP status of a non-streaming reply (500 on engine errors). */
void srv_resp_done(srv_resp *r, const srv_event *ev, srv_buf *out, int *status);
/* Bytes that keep a quiet reply alive without changing its meaning: an SSE
 * comment, or a space (whitespace before a JSON value). */
void srv_resp_keepalive(const srv_resp *r, srv_buf *out);

/* API-specific parts (called by the srv_resp_* dispatchers). */
void srv_openai_token(srv_resp *r, const srv_event *ev, srv_buf *out);
void srv_openai_done(srv_resp *r, const srv_event *ev, srv_buf *out, int *status);
void srv_ollama_token(srv_resp *r, const srv_event *ev, srv_buf *out);
void srv_ollama_done(srv_resp *r, const srv_event *ev, srv_buf *out, int *status);

/* Error bodies: {"error":{"message","type","param","code"}} and Ollama's
 * {"error":"message"}. */
void srv_openai_error_body(const srv_err *e, srv_buf *out);
void srv_ollama_error_body(const srv_err *e, srv_buf *out);

/* Ollama's reply to an empty prompt: done, done_reason "load". */
void srv_ollama_load_reply(const srv_resp *r, srv_buf *out);

/* finish reason names: "stop" or "length" (cancel and timeout: "length") */
const char *srv_finish_name(int finish);

/* ---- metrics ---- */
enum {
    SRV_EP_ROOT = 0,
    SRV_EP_HEALTH,
    SRV_EP_METRICS,
    SRV_EP_MODELS,
    SRV_EP_CHAT,
    SRV_EP_COMPLETIONS,
    SRV_EP_GENERATE,
    SRV_EP_OLLAMA_CHAT,
    SRV_EP_TAGS,
    SRV_EP_SHOW,
    SRV_EP_VERSION,
    SRV_EP_OTHER,
    SRV_EP_COUNT
};
#define SRV_N_CODES 12
extern const int srv_metric_codes[SRV_N_CODES]; /* last entry 0 = any other code */
extern const char *const srv_endpoint_names[SRV_EP_COUNT];

typedef struct {
    /* requests by endpoint and status code (indices into srv_metric_codes) */
    unsigned long long requests[SRV_EP_COUNT][SRV_N_CODES];
    unsigned long long disconnects; /* streams whose client went away */
    long long active_streams;       /* gauge */
} srv_http_counters;

void srv_counters_add(srv_http_counters *c, int endpoint, int status);
/* The Prometheus text (format 0.0.4) for the scheduler's stats and the
 * HTTP counters, appended to out. */
void srv_metrics_render(const srv_stats *st, const srv_http_counters *c, srv_buf *out);

/* ---- the HTTP server ---- */
typedef struct srv_http srv_http;

typedef struct {
    const char *host;       /* address to bind ("127.0.0.1", "::1", "0.0.0.0") */
    int port;               /* 0: any free port */
    const char *api_key;    /* NULL or "": no auth */
    size_t max_body;        /* bytes */
    int max_conns;          /* concurrent connections */
    int conn_timeout_s;     /* idle connection timeout */
    double read_timeout_s;  /* a request must arrive whole within this time of the
                               connection's start or its previous request
                               (slow-client guard); <= 0: 30 */
    double req_timeout_s;   /* per generation request; <= 0: none */
    const char *model_name; /* the id shown by /v1/models */
    double load_s;          /* model load time, for Ollama's load_duration */
} srv_http_params;

srv_http_params srv_http_default_params(void);
/* Starts listening (threads of its own). NULL + err_set. */
srv_http *srv_http_start(srv_sched *s, const srv_http_params *p);
int srv_http_port(const srv_http *h);
/* Stops accepting, lets in-flight requests finish for up to drain_s
 * seconds, cancels the rest (each stream still gets its final chunk), then
 * closes every connection. The scheduler is left running. */
void srv_http_stop(srv_http *h, double drain_s);
void srv_http_free(srv_http *h);

#endif
