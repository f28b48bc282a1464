/* api_openai.c: the OpenAI-compatible API: parsing /v1/chat/completions
 * and /v1/completions bodies into srv_gen, and formatting replies: whole
 * JSON objects, SSE chunks ("data: {...}\n\n" ending with "data: [DONE]"),
 * logprobs in each endpoint's shape, usage, and error bodies.
 *
 * Defaults for absent fields are the engine's (those of `beast run`):
 * temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, a random seed;
 * temperature 0 is greedy. max_tokens defaults to 16 for completions (as
 * OpenAI) and to "until the context is full or the model stops" for chat. */
#include "server/server.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ---- */

static char *dup_n(const char *s, size_t n, srv_err *e) {
    char *d = malloc(n + 1);
    if (!d) {
        srv_err_set(e, 500, NULL, "out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Message content: a string, null, or an array of {type:"text", text}. */
static char *content_text(const json_t *c, srv_err *e) {
    if (!c || json_is_null(c)) return dup_n("", 0, e);
    if (json_is_string(c)) return dup_n(json_string_value(c), json_string_length(c), e);
    if (!json_is_array(c)) {
        srv_err_set(e, 400, "messages", "message content must be a string or an array of parts");
        return NULL;
    }
    srv_buf b = {0};
    size_t i;
    const json_t *part;
    json_array_foreach(c, i, part) {
        const json_t *type = json_object_get(part, "type");
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            srv_buf_free(&b);
            srv_err_set(e, 400, "messages",
                        "content parts must be {\"type\": \"text\", \"text\": ...} (only text is "
                        "supported)");
            return NULL;
        }
        if (i > 0) srv_buf_add(&b, "\n", 1);
        srv_buf_add(&b, json_string_value(text), json_string_length(text));
    }
    if (b.oom) {
        srv_buf_free(&b);
        srv_err_set(e, 500, NULL, "out of memory");
        return NULL;
    }
    if (!b.p) return dup_n("", 0, e);
    return b.p;
}

static int parse_messages(const json_t *root, srv_gen *g, srv_err *e) {
    const json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        srv_err_set(e, 400, "messages", "'messages' must be a non-empty array");
        return -1;
    }
    size_t n = json_array_size(msgs);
    if (n > SRV_MAX_MESSAGES) {
        srv_err_set(e, 400, "messages", "at most %d messages", SRV_MAX_MESSAGES);
        return -1;
    }
    if (!(g->msgs = calloc(n, sizeof *g->msgs))) {
        srv_err_set(e, 500, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        const json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            srv_err_set(e, 400, "messages", "messages[%zu] must be an object with a 'role'", i);
            return -1;
        }
        const char *r = json_string_value(role);
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
            strcmp(r, "tool")) {
            srv_err_set(e, 400, "messages",
                        "messages[%zu]: role must be system, developer, user, assistant or tool",
                        i);
            return -1;
        }
        char *content = content_text(json_object_get(m, "content"), e);
        if (!content) return -1;
        char *rd = dup_n(r, strlen(r), e);
        if (!rd) {
            free(content);
            return -1;
        }
        g->msgs[i].role = rd;
        g->msgs[i].content = content;
        g->n_msgs = (int)i + 1;
    }
    return 0;
}

static int parse_token_array(const json_t *a, srv_gen *g, srv_err *e) {
    size_t n = json_array_size(a);
    if (!(g->tokens = malloc((n ? n : 1) * sizeof *g->tokens))) {
        srv_err_set(e, 500, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(a, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX) {
            srv_err_set(e, 400, "prompt", "'prompt' token arrays hold token ids (integers >= 0)");
            return -1;
        }
        g->tokens[i] = (int32_t)json_integer_value(t);
    }
    g->n_tokens = (int)n;
    return 0;
}

/* prompt: a string, [string], [int...] or [[int...]] (one prompt only). */
static int parse_prompt(const json_t *root, srv_gen *g, srv_err *e) {
    const json_t *p = json_object_get(root, "prompt");
    if (json_is_string(p)) {
        g->prompt = dup_n(json_string_value(p), json_string_length(p), e);
        return g->prompt ? 0 : -1;
    }
    if (!json_is_array(p)) {
        srv_err_set(e, 400, "prompt",
                    "'prompt' must be a string, an array of one string or an array of tokens");
        return -1;
    }
    if (json_array_size(p) == 0) {
        srv_err_set(e, 400, "prompt", "'prompt' is empty");
        return -1;
    }
    const json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return parse_token_array(p, g, e);
    if (json_array_size(p) > 1) {
        srv_err_set(e, 400, "prompt", "only one prompt per request is supported (n = 1)");
        return -1;
    }
    if (json_is_string(first)) {
        g->prompt = dup_n(json_string_value(first), json_string_length(first), e);
        return g->prompt ? 0 : -1;
    }
    if (json_is_array(first) && json_array_size(first) > 0) return parse_token_array(first, g, e);
    srv_err_set(e, 400, "prompt",
                "'prompt' must be a string, an array of one string or an array of tokens");
    return -1;
}

static int parse_bias(const json_t *root, srv_gen *g, srv_err *e) {
    const json_t *lb = json_object_get(root, "logit_bias");
    if (!lb || json_is_null(lb)) return 0;
    if (!json_is_object(lb)) {
        srv_err_set(e, 400, "logit_bias", "'logit_bias' must be an object of token id -> bias");
        return -1;
    }
    size_t n = json_object_size(lb);
    if (n > SRV_MAX_BIAS) {
        srv_err_set(e, 400, "logit_bias", "at most %d logit_bias entries", SRV_MAX_BIAS);
        return -1;
    }
    if (n == 0) return 0;
    if (!(g->bias = calloc(n, sizeof *g->bias))) {
        srv_err_set(e, 500, NULL, "out of memory");
        return -1;
    }
    const char *key;
    const json_t *v;
    int k = 0;
    json_object_foreach((json_t *)lb, key, v) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id > INT32_MAX) {
            srv_err_set(e, 400, "logit_bias", "logit_bias key '%.40s' is not a token id", key);
            return -1;
        }
        if (!json_is_number(v) || !(fabs(json_number_value(v)) <= 100)) {
            srv_err_set(e, 400, "logit_bias", "logit_bias values must be numbers in [-100, 100]");
            return -1;
        }
        double b = json_number_value(v);
        g->bias[k].token = (int32_t)id;
        g->bias[k].bias = b <= -100 ? -INFINITY : (float)b; /* -100 bans, as OpenAI */
        k++;
    }
    g->sp.bias = g->bias;
    g->sp.n_bias = k;
    return 0;
}

int srv_openai_parse(json_t *root, int api, srv_gen *g, srv_err *e) {
    srv_gen_init(g, api);
    bool chat = api == SRV_API_CHAT;
    const char *model;
    if (srv_get_str(root, "model", &model, NULL, e) < 0) return -1;
    if (chat ? parse_messages(root, g, e) : parse_prompt(root, g, e)) return -1;
    if (srv_get_bool(root, "stream", &g->stream, e) < 0) return -1;
    const json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            srv_err_set(e, 400, "stream_options", "'stream_options' must be an object");
            return -1;
        }
        if (srv_get_bool(so, "include_usage", &g->include_usage, e) < 0) return -1;
    }
    long long v;
    int r;
    if ((r = srv_get_int(root, "max_tokens", 1, 1 << 30, &v, e)) < 0) return -1;
    if (r) g->max_tokens = (int)v;
    if ((r = srv_get_int(root, "max_completion_tokens", 1, 1 << 30, &v, e)) < 0) return -1;
    if (r) g->max_tokens = (int)v;
    if ((r = srv_get_int(root, "n", 1, 1 << 30, &v, e)) < 0) return -1;
    if (r && v != 1) {
        srv_err_set(e, 400, "n", "only n = 1 is supported");
        return -1;
    }
    if ((r = srv_get_int(root, "best_of", 1, 1 << 30, &v, e)) < 0) return -1;
    if (r && v != 1) {
        srv_err_set(e, 400, "best_of", "only best_of = 1 is supported");
        return -1;
    }
    bool echo = false;
    if (srv_get_bool(root, "echo", &echo, e) < 0) return -1;
    if (echo) {
        srv_err_set(e, 400, "echo", "'echo' is not supported");
        return -1;
    }
    const json_t *tools = json_object_get(root, "tools");
    if (json_is_array(tools) && json_array_size(tools) > 0) {
        srv_err_set(e, 400, "tools", "tools are not supported");
        return -1;
    }
    const json_t *rf = json_object_get(root, "response_format");
    if (json_is_object(rf)) {
        const json_t *t = json_object_get(rf, "type");
        if (json_is_string(t) && strcmp(json_string_value(t), "text")) {
            srv_err_set(e, 400, "response_format", "only response_format type 'text' is supported");
            return -1;
        }
    }
    double d;
    if ((r = srv_get_num(root, "temperature", 0, 2, &d, e)) < 0) return -1;
    if (r) g->sp.temperature = (float)d;
    if ((r = srv_get_num(root, "top_p", 0, 1, &d, e)) < 0) return -1;
    if (r) g->sp.top_p = (float)d;
    if ((r = srv_get_num(root, "min_p", 0, 1, &d, e)) < 0) return -1;
    if (r) g->sp.min_p = (float)d;
    if ((r = srv_get_int(root, "top_k", -1, 1 << 30, &v, e)) < 0) return -1;
    if (r) g->sp.top_k = (int)v;
    if ((r = srv_get_num(root, "presence_penalty", -2, 2, &d, e)) < 0) return -1;
    if (r) g->sp.presence_penalty = (float)d;
    if ((r = srv_get_num(root, "frequency_penalty", -2, 2, &d, e)) < 0) return -1;
    if (r) g->sp.frequency_penalty = (float)d;
    if ((r = srv_get_num(root, "repeat_penalty", 0.01, 10, &d, e)) < 0) return -1;
    if (r) g->sp.repeat_penalty = (float)d;
    if ((r = srv_get_int(root, "seed", INT64_MIN, INT64_MAX, &v, e)) < 0) return -1;
    if (r) {
        g->sp.seed = (uint64_t)v;
        g->seed_given = true;
    }
    if (srv_get_stops(root, "stop", g, e) < 0) return -1;
    if (srv_get_bool(root, "ignore_eos", &g->ignore_eos, e) < 0) return -1;
    if (parse_bias(root, g, e)) return -1;
    if (chat) {
        bool lp = false;
        if (srv_get_bool(root, "logprobs", &lp, e) < 0) return -1;
        if ((r = srv_get_int(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, e)) < 0) return -1;
        if (r && !lp) {
            srv_err_set(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            return -1;
        }
        if (lp) g->logprobs = r ? (int)v : 0;
    } else {
        if ((r = srv_get_int(root, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, e)) < 0) return -1;
        if (r) g->logprobs = (int)v;
    }
    return 0;
}

/* ---- formatting ---- */

/* The text of one token (control tokens included), possibly a partial
 * UTF-8 character. Returns a malloc'd buffer and its length. */
static char *piece(const beast_model *m, int32_t tok, int *len) {
    char small[128];
    int n = m ? beast_token_piece(m, tok, small, sizeof small, true) : 0;
    if (n < 0) n = 0;
    char *p = malloc((size_t)n + 1);
    if (!p) {
        *len = 0;
        return NULL;
    }
    if (n < (int)sizeof small)
        memcpy(p, small, (size_t)n);
    else
        beast_token_piece(m, tok, p, n + 1, true);
    p[n] = 0;
    *len = n;
    return p;
}

static json_t *bytes_array(const char *s, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

/* Chat: {"token","logprob","bytes","top_logprobs":[...]} for one event. */
static json_t *chat_lp_entry(const srv_resp *r, const srv_event *ev) {
    int n;
    char *p = piece(r->m, ev->token, &n);
    json_t *o = json_object();
    json_object_set_new(o, "token", srv_json_str(p, (size_t)n));
    json_object_set_new(o, "logprob", srv_json_real(ev->logprob));
    json_object_set_new(o, "bytes", bytes_array(p, n));
    free(p);
    json_t *top = json_array();
    for (int i = 0; i < ev->n_top && i < SRV_MAX_TOP_LOGPROBS; i++) {
        char *q = piece(r->m, ev->top_id[i], &n);
        json_t *t = json_object();
        json_object_set_new(t, "token", srv_json_str(q, (size_t)n));
        json_object_set_new(t, "logprob", srv_json_real(ev->top_logprob[i]));
        json_object_set_new(t, "bytes", bytes_array(q, n));
        free(q);
        json_array_append_new(top, t);
    }
    json_object_set_new(o, "top_logprobs", top);
    return o;
}

/* Completions: appends one token to {"tokens","token_logprobs",
 * "top_logprobs","text_offset"}. */
static void compl_lp_add(srv_resp *r, json_t *lp, const srv_event *ev) {
    int n;
    char *p = piece(r->m, ev->token, &n);
    json_array_append_new(json_object_get(lp, "tokens"), srv_json_str(p, (size_t)n));
    free(p);
    json_array_append_new(json_object_get(lp, "token_logprobs"), srv_json_real(ev->logprob));
    json_t *top = json_object();
    for (int i = 0; i < ev->n_top && i < SRV_MAX_TOP_LOGPROBS; i++) {
        char *q = piece(r->m, ev->top_id[i], &n);
        json_t *k = srv_json_str(q, (size_t)n);
        free(q);
        if (k && !json_object_get(top, json_string_value(k)))
            json_object_set_new(top, json_string_value(k), srv_json_real(ev->top_logprob[i]));
        json_decref(k);
    }
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer(r->text_off));
}

static json_t *compl_lp_new(void) {
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs",
                     "text_offset");
}

static json_t *usage_obj(const srv_event *ev) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", ev->n_prompt, "completion_tokens",
                     ev->n_gen, "total_tokens", ev->n_prompt + ev->n_gen, "prompt_tokens_details",
                     "cached_tokens", ev->n_cached);
}

/* The envelope shared by every chunk / reply. */
static json_t *envelope(const srv_resp *r, const char *object) {
    const char *mn = r->model_name ? r->model_name : "";
    return json_pack("{s:s,s:s,s:I,s:o,s:s}", "id", r->id, "object", object, "created",
                     (json_int_t)r->created, "model", srv_json_str(mn, strlen(mn)),
                     "system_fingerprint", "beast");
}

static void sse(srv_buf *out, json_t *j) {
    srv_buf_puts(out, "data: ");
    srv_json_append(out, j);
    srv_buf_puts(out, "\n\n");
    json_decref(j);
}

/* One streamed chunk with text (and the event's logprobs when asked). */
static void stream_chunk(srv_resp *r, const srv_event *ev, const char *text, int text_len,
                         const char *finish, srv_buf *out) {
    bool chat = r->api == SRV_API_CHAT;
    json_t *j = envelope(r, chat ? "chat.completion.chunk" : "text_completion");
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    if (chat) {
        json_t *delta = json_object();
        if (!r->role_sent) {
            json_object_set_new(delta, "role", json_string("assistant"));
            r->role_sent = true;
        }
        if (text) json_object_set_new(delta, "content", srv_json_str(text, (size_t)text_len));
        json_object_set_new(ch, "delta", delta);
    } else {
        json_object_set_new(ch, "text",
                            srv_json_str(text ? text : "", text ? (size_t)text_len : 0));
    }
    json_t *lp = NULL;
    if (ev && ev->kind == SRV_EV_TOKEN && r->logprobs >= 0) {
        if (chat) {
            lp = json_pack("{s:[o],s:n}", "content", chat_lp_entry(r, ev), "refusal");
        } else {
            lp = compl_lp_new();
            compl_lp_add(r, lp, ev);
        }
    }
    json_object_set_new(ch, "logprobs", lp ? lp : json_null());
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    if (r->include_usage) json_object_set_new(j, "usage", json_null());
    sse(out, j);
}

void srv_openai_token(srv_resp *r, const srv_event *ev, srv_buf *out) {
    if (r->stream) {
        if (ev->text_len > 0 || r->logprobs >= 0)
            stream_chunk(r, ev, ev->text ? ev->text : "", ev->text_len, NULL, out);
        r->text_off += ev->text_len;
        return;
    }
    if (ev->text_len > 0) srv_buf_add(&r->text, ev->text, (size_t)ev->text_len);
    if (r->logprobs >= 0) {
        if (r->api == SRV_API_CHAT) {
            if (!r->lp) r->lp = json_array();
            json_array_append_new(r->lp, chat_lp_entry(r, ev));
        } else {
            if (!r->lp) r->lp = compl_lp_new();
            compl_lp_add(r, r->lp, ev);
        }
    }
    r->text_off += ev->text_len;
}

void srv_openai_error_body(const srv_err *e, srv_buf *out) {
    json_t *j = json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message",
                          srv_json_str(e->message, strlen(e->message)), "type",
                          e->type ? e->type : "invalid_request_error", "param",
                          e->param[0] ? json_string(e->param) : json_null(), "code",
                          e->code ? json_string(e->code) : json_null());
    srv_json_append(out, j);
    json_decref(j);
}

void srv_openai_done(srv_resp *r, const srv_event *ev, srv_buf *out, int *status) {
    bool chat = r->api == SRV_API_CHAT;
    if (ev->finish == SRV_FINISH_ERROR) {
        srv_err e;
        srv_err_set(&e, 500, NULL, "generation failed: %s", ev->error[0] ? ev->error : "error");
        if (r->stream) {
            srv_buf_puts(out, "data: ");
            srv_openai_error_body(&e, out);
            srv_buf_puts(out, "\n\ndata: [DONE]\n\n");
        } else {
            *status = 500;
            srv_openai_error_body(&e, out);
        }
        return;
    }
    const char *finish = srv_finish_name(ev->finish);
    if (r->stream) {
        if (ev->text_len > 0) stream_chunk(r, NULL, ev->text, ev->text_len, NULL, out);
        stream_chunk(r, NULL, NULL, 0, finish, out);
        if (r->include_usage) {
            json_t *j = envelope(r, chat ? "chat.completion.chunk" : "text_completion");
            json_object_set_new(j, "choices", json_array());
            json_object_set_new(j, "usage", usage_obj(ev));
            sse(out, j);
        }
        srv_buf_puts(out, "data: [DONE]\n\n");
        return;
    }
    if (ev->text_len > 0) srv_buf_add(&r->text, ev->text, (size_t)ev->text_len);
    json_t *j = envelope(r, chat ? "chat.completion" : "text_completion");
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    json_t *text = srv_json_str(r->text.p ? r->text.p : "", r->text.n);
    if (chat)
        json_object_set_new(
            ch, "message",
            json_pack("{s:s,s:o,s:n}", "role", "assistant", "content", text, "refusal"));
    else
        json_object_set_new(ch, "text", text);
    json_t *lp = json_null();
    if (r->logprobs >= 0) {
        json_decref(lp);
        if (chat)
            lp = json_pack("{s:o,s:n}", "content", r->lp ? json_incref(r->lp) : json_array(),
                           "refusal");
        else
            lp = r->lp ? json_incref(r->lp) : compl_lp_new();
    }
    json_object_set_new(ch, "logprobs", lp);
    json_object_set_new(ch, "finish_reason", json_string(finish));
    json_object_set_new(j, "choices", json_pack("[o]", ch));
    json_object_set_new(j, "usage", usage_obj(ev));
    srv_json_append(out, j);
    json_decref(j);
}
