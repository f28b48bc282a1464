/* http.c: the HTTP front end of `beast serve` on libmicrohttpd: one thread
 * per connection (capped), routing, the API key, body and JSON limits,
 * generation replies streamed from scheduler events, client-disconnect
 * detection, metrics counting and graceful shutdown.
 *
 * Every generation reply (streaming or not) is a libmicrohttpd content
 * reader that blocks on srv_next_event in short slices. Between events it
 * polls the client socket for a hang-up (POLLRDHUP) and cancels the request
 * when the client is gone, so its sequence is freed at the next engine
 * step. While nothing is produced it sends a keep-alive every few seconds
 * (an SSE comment, or a space before the JSON, which JSON parsers skip), so
 * the idle-connection timeout that stops slow or silent clients never cuts
 * a reply that is only waiting for the engine. A non-streaming reply is
 * therefore sent with status 200 before the result is known; an engine
 * failure after submission comes back as an error body.
 *
 * Slow clients: libmicrohttpd closes connections idle for conn_timeout_s,
 * but a client trickling one byte at a time is never idle. A watchdog
 * thread therefore shuts down any connection that is not being answered a
 * generation and has not completed a request within read_timeout_s of its
 * start or of its previous request. */
#include "server/server.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The web page, compiled in by CMake when src/server/webui.html exists. */
#if defined(__has_include)
#if __has_include("server/webui.html")
#define SRV_HAVE_WEBUI 1
extern const unsigned char srv_webui_html[];
extern const unsigned long srv_webui_html_len;
#endif
#endif

#define KEEPALIVE_MAX_S 5.0 /* longest silence on a generation reply */
#define WAIT_SLICE_S    0.05

typedef struct gen_job gen_job;

/* One open TCP connection (libmicrohttpd's socket context). */
typedef struct conn_rec {
    int fd;
    double t_mark; /* connection start or end of its last request */
    bool busy;     /* answering a generation */
    struct conn_rec *prev, *next;
} conn_rec;

struct srv_http {
    srv_sched *s;
    const beast_model *m;
    struct MHD_Daemon *d;
    srv_http_params p;
    char *api_key, *model_name, *host;
    int port;
    double keepalive_s;
    atomic_bool stopping;
    srv_http_counters counters;
    pthread_mutex_t mu; /* guards the job and connection lists, each job's req */
    gen_job *jobs;
    int n_jobs;
    conn_rec *conns;
    pthread_t watchdog;
    bool watchdog_started;
    atomic_bool watchdog_stop;
};

/* One generation reply in flight. */
struct gen_job {
    srv_http *h;
    int endpoint;
    int fd; /* the client socket */
    srv_req *req;
    srv_resp resp;
    srv_buf out;
    size_t out_off;
    bool finished; /* the DONE event was formatted */
    bool listed;   /* in h->jobs */
    double last_send;
    gen_job *prev, *next;
};

/* Per HTTP request state (libmicrohttpd's con_cls). */
typedef struct {
    int endpoint;
    srv_buf body;
    bool too_large;
    bool responded;
} req_state;

srv_http_params srv_http_default_params(void) {
    srv_http_params p = {0};
    p.host = "127.0.0.1";
    p.port = 8080;
    p.max_body = SRV_DEFAULT_BODY;
    p.max_conns = 256;
    p.conn_timeout_s = 20;
    p.read_timeout_s = 30;
    p.model_name = "model";
    return p;
}

/* ---- routing ---- */

enum { M_GET = 1, M_POST = 2 };

static const struct {
    const char *path;
    int endpoint, methods;
} routes[] = {
    {"/", SRV_EP_ROOT, M_GET},
    {"/health", SRV_EP_HEALTH, M_GET},
    {"/metrics", SRV_EP_METRICS, M_GET},
    {"/v1/models", SRV_EP_MODELS, M_GET},
    {"/v1/chat/completions", SRV_EP_CHAT, M_POST},
    {"/v1/completions", SRV_EP_COMPLETIONS, M_POST},
    {"/api/generate", SRV_EP_GENERATE, M_POST},
    {"/api/chat", SRV_EP_OLLAMA_CHAT, M_POST},
    {"/api/tags", SRV_EP_TAGS, M_GET},
    {"/api/show", SRV_EP_SHOW, M_POST},
    {"/api/version", SRV_EP_VERSION, M_GET},
};

static int route(const char *url, int *methods) {
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (!strcmp(url, routes[i].path)) {
            *methods = routes[i].methods;
            return routes[i].endpoint;
        }
    }
    if (!strncmp(url, "/v1/models/", 11) && url[11]) { /* one model's entry */
        *methods = M_GET;
        return SRV_EP_MODELS;
    }
    *methods = 0;
    return -1;
}

static bool ollama_shaped(int ep) {
    return ep == SRV_EP_GENERATE || ep == SRV_EP_OLLAMA_CHAT || ep == SRV_EP_TAGS ||
           ep == SRV_EP_SHOW || ep == SRV_EP_VERSION;
}

/* ---- replies ---- */

static enum MHD_Result reply(srv_http *h, struct MHD_Connection *c, int ep, int status,
                             const char *ctype, const char *body, size_t n, const char *hname,
                             const char *hval) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname) MHD_add_response_header(r, hname, hval);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    srv_counters_add(&h->counters, ep, status);
    return ret;
}

static enum MHD_Result reply_json(srv_http *h, struct MHD_Connection *c, int ep, int status,
                                  json_t *j) {
    srv_buf b = {0};
    srv_json_append(&b, j);
    json_decref(j);
    enum MHD_Result r;
    if (b.oom)
        r = reply(h, c, ep, 500, "application/json",
                  "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":"
                  "null,\"code\":null}}",
                  0, NULL, NULL);
    else
        r = reply(h, c, ep, status, "application/json", b.p, b.n, NULL, NULL);
    srv_buf_free(&b);
    return r;
}

static enum MHD_Result reply_err(srv_http *h, struct MHD_Connection *c, int ep, const srv_err *e,
                                 const char *hname, const char *hval) {
    srv_buf b = {0};
    if (ollama_shaped(ep))
        srv_ollama_error_body(e, &b);
    else
        srv_openai_error_body(e, &b);
    enum MHD_Result r = reply(h, c, ep, e->status, "application/json", b.p ? b.p : "{}",
                              b.p ? b.n : 2, hname, hval);
    srv_buf_free(&b);
    return r;
}

/* ---- the job list (for shutdown) ---- */

static void job_unlist(gen_job *j) {
    srv_http *h = j->h;
    pthread_mutex_lock(&h->mu);
    if (j->listed) {
        if (j->prev)
            j->prev->next = j->next;
        else
            h->jobs = j->next;
        if (j->next) j->next->prev = j->prev;
        j->listed = false;
        h->n_jobs--;
    }
    pthread_mutex_unlock(&h->mu);
}

/* Forget the scheduler request (after DONE, or cancelling it first). */
static void job_release(gen_job *j, bool cancel) {
    job_unlist(j);
    if (j->req) {
        if (cancel) srv_cancel(j->req);
        srv_req_release(j->req);
        j->req = NULL;
    }
}

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static ssize_t job_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gen_job *j = cls;
    for (;;) {
        if (j->out_off < j->out.n) {
            size_t k = j->out.n - j->out_off;
            if (k > max) k = max;
            memcpy(buf, j->out.p + j->out_off, k);
            j->out_off += k;
            if (j->out_off == j->out.n) j->out.n = j->out_off = 0;
            j->last_send = time_now();
            return (ssize_t)k;
        }
        if (j->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (j->finished || !j->req) return MHD_CONTENT_READER_END_OF_STREAM;
        srv_event ev;
        int r = srv_next_event(j->req, &ev, WAIT_SLICE_S);
        if (r == 1) {
            if (ev.kind == SRV_EV_TOKEN) {
                srv_resp_token(&j->resp, &ev, &j->out);
            } else {
                int status;
                srv_resp_done(&j->resp, &ev, &j->out, &status);
                j->finished = true;
                job_release(j, false);
            }
            srv_event_clear(&ev);
        } else if (r < 0) {
            j->finished = true;
            job_release(j, false);
        }
        if (client_gone(j->fd)) {
            __atomic_fetch_add(&j->h->counters.disconnects, 1, __ATOMIC_RELAXED);
            job_release(j, true);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (j->out.n == 0 && time_now() - j->last_send > j->h->keepalive_s)
            srv_resp_keepalive(&j->resp, &j->out);
    }
}

static void job_free(void *cls) {
    gen_job *j = cls;
    job_release(j, !j->finished);
    __atomic_fetch_sub(&j->h->counters.active_streams, 1, __ATOMIC_RELAXED);
    srv_resp_free(&j->resp);
    srv_buf_free(&j->out);
    free(j);
}

static conn_rec *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* ---- generation endpoints ---- */

static enum MHD_Result do_generate(srv_http *h, struct MHD_Connection *c, req_state *rs) {
    int ep = rs->endpoint;
    int api = ep == SRV_EP_CHAT          ? SRV_API_CHAT
              : ep == SRV_EP_COMPLETIONS ? SRV_API_COMPLETION
              : ep == SRV_EP_GENERATE    ? SRV_API_OLLAMA_GENERATE
                                         : SRV_API_OLLAMA_CHAT;
    srv_err e = {0};
    json_t *root = srv_json_parse(rs->body.p ? rs->body.p : "", rs->body.n, &e);
    if (!root) return reply_err(h, c, ep, &e, NULL, NULL);
    srv_gen g;
    int pr = api <= SRV_API_COMPLETION ? srv_openai_parse(root, api, &g, &e)
                                       : srv_ollama_parse(root, api, &g, &e);
    json_decref(root);
    if (pr) {
        srv_gen_free(&g);
        return reply_err(h, c, ep, &e, NULL, NULL);
    }
    if (g.load_only) {
        srv_resp rp;
        srv_resp_init(&rp, api, &g, h->m, h->model_name, h->p.load_s);
        srv_buf b = {0};
        srv_ollama_load_reply(&rp, &b);
        srv_resp_free(&rp);
        srv_gen_free(&g);
        enum MHD_Result r =
            reply(h, c, ep, 200, "application/json", b.p ? b.p : "", b.p ? b.n : 0, NULL, NULL);
        srv_buf_free(&b);
        return r;
    }
    int32_t *toks = NULL;
    int n = srv_gen_tokens(h->m, &g, &toks, &e);
    if (n < 0) {
        srv_gen_free(&g);
        return reply_err(h, c, ep, &e, NULL, NULL);
    }
    gen_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(toks);
        srv_gen_free(&g);
        srv_err_set(&e, 500, NULL, "out of memory");
        return reply_err(h, c, ep, &e, NULL, NULL);
    }
    j->h = h;
    j->endpoint = ep;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    srv_resp_init(&j->resp, api, &g, h->m, h->model_name, h->p.load_s);

    srv_req_params rp = {0};
    rp.prompt = toks;
    rp.n_prompt = n;
    rp.max_tokens = g.max_tokens;
    rp.sp = g.sp;
    rp.stop = (const char *const *)g.stops;
    rp.n_stop = g.n_stop;
    rp.logprobs = g.logprobs;
    rp.ignore_eos = g.ignore_eos;
    rp.timeout_s = h->p.req_timeout_s;

    /* list the job first so a shutdown that starts now still cancels it */
    pthread_mutex_lock(&h->mu);
    bool stopping = atomic_load(&h->stopping);
    if (!stopping) {
        j->next = h->jobs;
        if (h->jobs) h->jobs->prev = j;
        h->jobs = j;
        j->listed = true;
        h->n_jobs++;
    }
    pthread_mutex_unlock(&h->mu);
    int err = SRV_E_SHUTDOWN;
    srv_req *req = NULL;
    if (!stopping) {
        req = srv_submit(h->s, &rp, &err);
        pthread_mutex_lock(&h->mu);
        j->req = req;
        pthread_mutex_unlock(&h->mu);
    }
    free(toks);
    bool stream = g.stream, had_msgs = g.n_msgs > 0;
    srv_gen_free(&g);
    if (!req) {
        job_unlist(j);
        srv_resp_free(&j->resp);
        free(j);
        const char *hn = NULL, *hv = NULL;
        switch (err) {
        case SRV_E_BUSY:
            srv_err_set(&e, 429, NULL, "the server is busy (queue full); retry later");
            hn = "Retry-After", hv = "1";
            break;
        case SRV_E_TOO_LONG:
            srv_err_set(&e, 400, had_msgs ? "messages" : "prompt",
                        "the prompt has %d tokens; this server's context is %d tokens", n,
                        srv_sched_n_ctx(h->s));
            e.code = "context_length_exceeded";
            break;
        case SRV_E_SHUTDOWN:
            srv_err_set(&e, 503, NULL, "the server is shutting down");
            break;
        case SRV_E_INVALID:
            srv_err_set(&e, 400, NULL, "invalid request: %s", beast_error());
            break;
        default:
            srv_err_set(&e, 500, NULL, "could not queue the request: %s", beast_error());
            break;
        }
        return reply_err(h, c, ep, &e, hn, hv);
    }
    __atomic_fetch_add(&h->counters.active_streams, 1, __ATOMIC_RELAXED);
    j->last_send = time_now();
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, job_read, j, job_free);
    if (!r) {
        job_free(j);
        return MHD_NO;
    }
    const char *ctype = !stream                     ? "application/json"
                        : api <= SRV_API_COMPLETION ? "text/event-stream"
                                                    : "application/x-ndjson";
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r); /* job_free runs when libmicrohttpd is done with it */
    conn_rec *cr = conn_of(c);
    if (cr) {
        pthread_mutex_lock(&h->mu);
        cr->busy = true;
        pthread_mutex_unlock(&h->mu);
    }
    srv_counters_add(&h->counters, ep, 200);
    return ret;
}

/* ---- the other endpoints ---- */

static void param_size(int64_t n, char *out, size_t cap) {
    if (n >= 1000000000)
        snprintf(out, cap, "%.1fB", (double)n / 1e9);
    else
        snprintf(out, cap, "%.0fM", (double)n / 1e6);
}

/* The most common tensor type other than F32 (Ollama's quantization_level). */
static const char *main_type(const beast_model_info *mi) {
    int best = -1;
    for (int i = 0; i < mi->n_types && i < 16; i++)
        if (strcmp(mi->type_names[i], "F32") &&
            (best < 0 || mi->type_counts[i] > mi->type_counts[best]))
            best = i;
    return best >= 0 ? mi->type_names[best] : "F32";
}

static json_t *ollama_details(const beast_model_info *mi) {
    char ps[32];
    param_size(mi->n_params, ps, sizeof ps);
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "gguf", "family",
                     mi->arch, "families", mi->arch, "parameter_size", ps, "quantization_level",
                     main_type(mi));
}

static enum MHD_Result do_simple(srv_http *h, struct MHD_Connection *c, req_state *rs,
                                 const char *url) {
    int ep = rs->endpoint;
    beast_model_info mi;
    beast_model_get_info(h->m, &mi);
    json_t *name = srv_json_str(h->model_name, strlen(h->model_name));
    switch (ep) {
    case SRV_EP_ROOT:
        json_decref(name);
#ifdef SRV_HAVE_WEBUI
        return reply(h, c, ep, 200, "text/html; charset=utf-8", (const char *)srv_webui_html,
                     (size_t)srv_webui_html_len, NULL, NULL);
#else
        return reply(h, c, ep, 200, "text/plain; charset=utf-8", "beast is running\n", 17, NULL,
                     NULL);
#endif
    case SRV_EP_HEALTH:
        json_decref(name);
        if (atomic_load(&h->stopping))
            return reply_json(h, c, ep, 503, json_pack("{s:s}", "status", "shutting down"));
        return reply_json(h, c, ep, 200, json_pack("{s:s}", "status", "ok"));
    case SRV_EP_METRICS: {
        json_decref(name);
        srv_stats st;
        srv_sched_stats(h->s, &st);
        srv_buf b = {0};
        srv_metrics_render(&st, &h->counters, &b);
        enum MHD_Result r =
            reply(h, c, ep, b.oom ? 500 : 200, "text/plain; version=0.0.4; charset=utf-8",
                  b.p ? b.p : "", b.oom || !b.p ? 0 : b.n, NULL, NULL);
        srv_buf_free(&b);
        return r;
    }
    case SRV_EP_MODELS: {
        json_t *entry = json_pack("{s:O,s:s,s:I,s:s}", "id", name, "object", "model", "created",
                                  (json_int_t)time(NULL), "owned_by", "beast");
        if (strlen(url) > 11) { /* /v1/models/{id} */
            const char *id = url + 11;
            if (strcmp(id, h->model_name)) {
                json_decref(entry);
                json_decref(name);
                srv_err e;
                srv_err_set(&e, 404, "model", "The model '%.100s' does not exist", id);
                e.code = "model_not_found";
                return reply_err(h, c, ep, &e, NULL, NULL);
            }
            json_decref(name);
            return reply_json(h, c, ep, 200, entry);
        }
        json_decref(name);
        return reply_json(h, c, ep, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", entry));
    }
    case SRV_EP_TAGS: {
        json_t *m =
            json_pack("{s:O,s:O,s:s,s:I,s:s,s:o}", "name", name, "model", name, "modified_at",
                      "1970-01-01T00:00:00Z", "size", (json_int_t)mi.file_size, "digest", "",
                      "details", ollama_details(&mi));
        json_decref(name);
        return reply_json(h, c, ep, 200, json_pack("{s:[o]}", "models", m));
    }
    case SRV_EP_VERSION:
        json_decref(name);
        return reply_json(h, c, ep, 200, json_pack("{s:s}", "version", "0.1.0"));
    case SRV_EP_SHOW: {
        srv_err e = {0};
        json_t *root = srv_json_parse(rs->body.p ? rs->body.p : "", rs->body.n, &e);
        if (!root) {
            json_decref(name);
            return reply_err(h, c, ep, &e, NULL, NULL);
        }
        json_decref(root);
        char key[96];
        json_t *info = json_object();
        json_object_set_new(info, "general.architecture", json_string(mi.arch));
        json_object_set_new(info, "general.parameter_count", json_integer(mi.n_params));
        snprintf(key, sizeof key, "%s.context_length", mi.arch);
        json_object_set_new(info, key, json_integer(mi.n_ctx_train));
        snprintf(key, sizeof key, "%s.embedding_length", mi.arch);
        json_object_set_new(info, key, json_integer(mi.n_embd));
        snprintf(key, sizeof key, "%s.block_count", mi.arch);
        json_object_set_new(info, key, json_integer(mi.n_layer));
        snprintf(key, sizeof key, "%s.attention.head_count", mi.arch);
        json_object_set_new(info, key, json_integer(mi.n_head));
        snprintf(key, sizeof key, "%s.attention.head_count_kv", mi.arch);
        json_object_set_new(info, key, json_integer(mi.n_head_kv));
        json_t *j = json_pack("{s:s,s:s,s:s,s:o,s:o,s:[s],s:O}", "modelfile", "", "parameters", "",
                              "template", "", "details", ollama_details(&mi), "model_info", info,
                              "capabilities", "completion", "model", name);
        json_decref(name);
        return reply_json(h, c, ep, 200, j);
    }
    default:
        json_decref(name);
        return MHD_NO;
    }
}

/* ---- libmicrohttpd callbacks ---- */

static bool auth_ok(srv_http *h, struct MHD_Connection *c) {
    if (!h->api_key) return true;
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!a || strncasecmp(a, "Bearer ", 7)) return false;
    a += 7;
    while (*a == ' ') a++;
    size_t n = strlen(a), k = strlen(h->api_key);
    unsigned diff = n != k;
    for (size_t i = 0; i < k; i++)
        diff |=
            (unsigned)(unsigned char)h->api_key[i] ^ (unsigned)(unsigned char)(i < n ? a[i] : 0);
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    srv_http *h = cls;
    req_state *rs = *con_cls;
    if (!rs) {
        if (!(rs = calloc(1, sizeof *rs))) return MHD_NO;
        *con_cls = rs;
        int methods;
        rs->endpoint = route(url, &methods);
        int m = !strcmp(method, "GET") || !strcmp(method, "HEAD") ? M_GET
                : !strcmp(method, "POST")                         ? M_POST
                                                                  : 0;
        srv_err e;
        rs->responded = true;
        if (rs->endpoint < 0) {
            rs->endpoint = SRV_EP_OTHER;
            srv_err_set(&e, 404, NULL, "Invalid URL (%.16s %.200s)", method, url);
            e.type = "invalid_request_error";
            return reply_err(h, c, SRV_EP_OTHER, &e, NULL, NULL);
        }
        if (!(methods & m)) {
            srv_err_set(&e, 405, NULL, "method %.16s is not allowed on %.200s", method, url);
            return reply_err(h, c, rs->endpoint, &e, "Allow",
                             methods == M_GET ? "GET, HEAD" : "POST");
        }
        if (rs->endpoint != SRV_EP_HEALTH && rs->endpoint != SRV_EP_ROOT && !auth_ok(h, c)) {
            srv_err_set(&e, 401, NULL, "missing or wrong API key (Authorization: Bearer KEY)");
            e.type = "invalid_request_error";
            e.code = "invalid_api_key";
            return reply_err(h, c, rs->endpoint, &e, "WWW-Authenticate", "Bearer");
        }
        if (atomic_load(&h->stopping) && rs->endpoint != SRV_EP_HEALTH) {
            srv_err_set(&e, 503, NULL, "the server is shutting down");
            return reply_err(h, c, rs->endpoint, &e, NULL, NULL);
        }
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->p.max_body) {
            srv_err_set(&e, 413, NULL, "the request body is larger than %zu bytes", h->p.max_body);
            return reply_err(h, c, rs->endpoint, &e, NULL, NULL);
        }
        rs->responded = false;
        return MHD_YES; /* the body (if any) follows */
    }
    if (rs->responded) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rs->too_large && rs->body.n + *upload_size > h->p.max_body) {
            rs->too_large = true;
            srv_buf_free(&rs->body);
        }
        if (!rs->too_large) srv_buf_add(&rs->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    rs->responded = true;
    srv_err e;
    if (rs->too_large) {
        srv_err_set(&e, 413, NULL, "the request body is larger than %zu bytes", h->p.max_body);
        return reply_err(h, c, rs->endpoint, &e, NULL, NULL);
    }
    if (rs->body.oom) {
        srv_err_set(&e, 500, NULL, "out of memory");
        return reply_err(h, c, rs->endpoint, &e, NULL, NULL);
    }
    switch (rs->endpoint) {
    case SRV_EP_CHAT:
    case SRV_EP_COMPLETIONS:
    case SRV_EP_GENERATE:
    case SRV_EP_OLLAMA_CHAT:
        return do_generate(h, c, rs);
    default:
        return do_simple(h, c, rs, url);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    srv_http *h = cls;
    conn_rec *cr = conn_of(c);
    if (cr) {
        pthread_mutex_lock(&h->mu);
        cr->busy = false;
        cr->t_mark = time_now();
        pthread_mutex_unlock(&h->mu);
    }
    req_state *rs = *con_cls;
    if (rs) {
        srv_buf_free(&rs->body);
        free(rs);
    }
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    srv_http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_rec *cr = calloc(1, sizeof *cr);
        if (!cr) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        cr->fd = ci ? ci->connect_fd : -1;
        cr->t_mark = time_now();
        pthread_mutex_lock(&h->mu);
        cr->next = h->conns;
        if (h->conns) h->conns->prev = cr;
        h->conns = cr;
        pthread_mutex_unlock(&h->mu);
        *socket_context = cr;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_rec *cr = *socket_context;
        pthread_mutex_lock(&h->mu);
        if (cr->prev)
            cr->prev->next = cr->next;
        else
            h->conns = cr->next;
        if (cr->next) cr->next->prev = cr->prev;
        pthread_mutex_unlock(&h->mu);
        free(cr);
        *socket_context = NULL;
    }
}

static void sleep_s(double s);

/* Shuts down connections that take too long to deliver a request. The
 * connection's own thread then sees the end of the stream and closes it
 * (the socket stays open until the CLOSED notification has run, which
 * takes the same lock). */
static void *watchdog_main(void *arg) {
    srv_http *h = arg;
    while (!atomic_load(&h->watchdog_stop)) {
        sleep_s(0.25);
        double now = time_now();
        pthread_mutex_lock(&h->mu);
        for (conn_rec *cr = h->conns; cr; cr = cr->next) {
            if (!cr->busy && cr->fd >= 0 && now - cr->t_mark > h->p.read_timeout_s) {
                shutdown(cr->fd, SHUT_RDWR);
                cr->t_mark = now + 1e9; /* once */
            }
        }
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

/* ---- start / stop ---- */

srv_http *srv_http_start(srv_sched *s, const srv_http_params *p) {
    srv_http *h = xcalloc(1, sizeof *h);
    if (!h) return NULL;
    h->s = s;
    h->m = srv_sched_model(s);
    h->p = *p;
    pthread_mutex_init(&h->mu, NULL);
    h->api_key = p->api_key && *p->api_key ? xstrdup(p->api_key) : NULL;
    h->model_name = xstrdup(p->model_name ? p->model_name : "model");
    h->host = xstrdup(p->host ? p->host : "127.0.0.1");
    if (!h->model_name || !h->host || (p->api_key && *p->api_key && !h->api_key)) goto fail;
    if (h->p.max_body == 0) h->p.max_body = SRV_DEFAULT_BODY;
    if (h->p.max_conns <= 0) h->p.max_conns = 256;
    if (h->p.conn_timeout_s <= 0) h->p.conn_timeout_s = 20;
    if (h->p.read_timeout_s <= 0) h->p.read_timeout_s = 30;
    h->keepalive_s = h->p.conn_timeout_s / 4.0;
    if (h->keepalive_s > KEEPALIVE_MAX_S) h->keepalive_s = KEEPALIVE_MAX_S;
    if (p->port < 0 || p->port > 65535) {
        err_set("port %d is not in 0..65535", p->port);
        goto fail;
    }

    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gr = getaddrinfo(h->host, NULL, &hints, &ai);
    if (gr || !ai) {
        err_set("cannot resolve host '%s': %s", h->host, gai_strerror(gr));
        goto fail;
    }
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen < sizeof sa ? ai->ai_addrlen : sizeof sa);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) {
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)p->port);
        flags |= MHD_USE_IPv6;
    } else {
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)p->port);
    }
    freeaddrinfo(ai);
    h->d = MHD_start_daemon(
        flags, (uint16_t)p->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)h->p.max_conns, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->p.conn_timeout_s,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(2u << 20), MHD_OPTION_LISTEN_BACKLOG_SIZE, 128u,
        MHD_OPTION_END);
    if (!h->d) {
        err_set("cannot listen on %s port %d (address in use, or not allowed)", h->host, p->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di && di->port ? di->port : p->port;
    if (pthread_create(&h->watchdog, NULL, watchdog_main, h)) {
        err_set("cannot start the connection watchdog thread");
        goto fail;
    }
    h->watchdog_started = true;
    return h;
fail:
    srv_http_free(h);
    return NULL;
}

int srv_http_port(const srv_http *h) {
    return h->port;
}

static int jobs_left(srv_http *h, bool cancel) {
    pthread_mutex_lock(&h->mu);
    int n = h->n_jobs;
    if (cancel)
        for (gen_job *j = h->jobs; j; j = j->next)
            if (j->req) srv_cancel(j->req);
    pthread_mutex_unlock(&h->mu);
    return n;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

void srv_http_stop(srv_http *h, double drain_s) {
    if (!h || !h->d) return;
    atomic_store(&h->stopping, true);
    MHD_socket ls = MHD_quiesce_daemon(h->d); /* no new connections */
    if (ls != MHD_INVALID_SOCKET) close(ls);
    double t0 = time_now();
    while (jobs_left(h, false) > 0 && time_now() - t0 < drain_s) sleep_s(0.02);
    /* cancel what is left: each reply still gets its final chunk */
    t0 = time_now();
    while (jobs_left(h, true) > 0 && time_now() - t0 < 10) sleep_s(0.02);
    /* let the last bytes go out before the connections close */
    t0 = time_now();
    while (__atomic_load_n(&h->counters.active_streams, __ATOMIC_RELAXED) > 0 &&
           time_now() - t0 < 2)
        sleep_s(0.02);
    MHD_stop_daemon(h->d);
    h->d = NULL;
    if (h->watchdog_started) {
        atomic_store(&h->watchdog_stop, true);
        pthread_join(h->watchdog, NULL);
        h->watchdog_started = false;
    }
}

void srv_http_free(srv_http *h) {
    if (!h) return;
    if (h->d) srv_http_stop(h, 0);
    if (h->watchdog_started) {
        atomic_store(&h->watchdog_stop, true);
        pthread_join(h->watchdog, NULL);
    }
    pthread_mutex_destroy(&h->mu);
    free(h->api_key);
    free(h->model_name);
    free(h->host);
    free(h);
}
