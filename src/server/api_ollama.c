/* api_ollama.c: the Ollama-compatible API: parsing /api/generate and
 * /api/chat bodies into srv_gen, and formatting replies (NDJSON lines while
 * streaming, which is Ollama's default; one object with "stream": false),
 * with the final object's counts and durations in nanoseconds.
 *
 * Sampling defaults are the engine's (temperature 0.8, top_k 40, top_p
 * 0.95, min_p 0.05, no repeat penalty, a random seed); num_predict absent,
 * -1 or -2 means until the context is full or the model stops. An empty
 * prompt (generate) or an empty message list (chat) only answers that the
 * model is loaded (done_reason "load"), as Ollama does. */
#include "server/server.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *dup_s(const char *s, srv_err *e) {
    char *d = strdup(s);
    if (!d) srv_err_set(e, 500, NULL, "out of memory");
    return d;
}

static int add_msg(srv_gen *g, const char *role, const char *content, srv_err *e) {
    beast_chat_msg *m = realloc(g->msgs, (size_t)(g->n_msgs + 1) * sizeof *m);
    if (!m) {
        srv_err_set(e, 500, NULL, "out of memory");
        return -1;
    }
    g->msgs = m;
    char *r = dup_s(role, e), *c = r ? dup_s(content, e) : NULL;
    if (!c) {
        free(r);
        return -1;
    }
    m[g->n_msgs].role = r;
    m[g->n_msgs].content = c;
    g->n_msgs++;
    return 0;
}

static int no_images(const json_t *o, srv_err *e) {
    const json_t *im = json_object_get(o, "images");
    if (json_is_array(im) && json_array_size(im) > 0) {
        srv_err_set(e, 400, "images", "images are not supported");
        return -1;
    }
    return 0;
}

static int parse_options(const json_t *root, srv_gen *g, srv_err *e) {
    const json_t *o = json_object_get(root, "options");
    if (!o || json_is_null(o)) return 0;
    if (!json_is_object(o)) {
        srv_err_set(e, 400, "options", "'options' must be an object");
        return -1;
    }
    double d;
    long long v;
    int r;
    if ((r = srv_get_num(o, "temperature", 0, 100, &d, e)) < 0) return -1;
    if (r) g->sp.temperature = (float)d;
    if ((r = srv_get_num(o, "top_p", 0, 1, &d, e)) < 0) return -1;
    if (r) g->sp.top_p = (float)d;
    if ((r = srv_get_num(o, "min_p", 0, 1, &d, e)) < 0) return -1;
    if (r) g->sp.min_p = (float)d;
    if ((r = srv_get_int(o, "top_k", -1, 1 << 30, &v, e)) < 0) return -1;
    if (r) g->sp.top_k = (int)v;
    if ((r = srv_get_num(o, "presence_penalty", -100, 100, &d, e)) < 0) return -1;
    if (r) g->sp.presence_penalty = (float)d;
    if ((r = srv_get_num(o, "frequency_penalty", -100, 100, &d, e)) < 0) return -1;
    if (r) g->sp.frequency_penalty = (float)d;
    if ((r = srv_get_num(o, "repeat_penalty", 0.01, 100, &d, e)) < 0) return -1;
    if (r) g->sp.repeat_penalty = (float)d;
    if ((r = srv_get_int(o, "repeat_last_n", -1, 1 << 24, &v, e)) < 0) return -1;
    if (r) g->sp.repeat_last_n = (int)v;
    if ((r = srv_get_int(o, "num_predict", -2, 1 << 30, &v, e)) < 0) return -1;
    if (r) g->max_tokens = v > 0 ? (int)v : -1;
    if ((r = srv_get_int(o, "seed", INT64_MIN, INT64_MAX, &v, e)) < 0) return -1;
    if (r) {
        g->sp.seed = (uint64_t)v;
        g->seed_given = true;
    }
    if (srv_get_stops(o, "stop", g, e) < 0) return -1;
    if (srv_get_bool(o, "ignore_eos", &g->ignore_eos, e) < 0) return -1;
    return 0;
}

int srv_ollama_parse(json_t *root, int api, srv_gen *g, srv_err *e) {
    srv_gen_init(g, api);
    const char *s;
    if (srv_get_str(root, "model", &s, NULL, e) < 0) return -1;
    if (srv_get_bool(root, "stream", &g->stream, e) < 0) return -1;
    const json_t *fmt = json_object_get(root, "format");
    if (fmt && !json_is_null(fmt) && !(json_is_string(fmt) && !*json_string_value(fmt))) {
        srv_err_set(e, 400, "format", "'format' (structured output) is not supported");
        return -1;
    }
    const json_t *tools = json_object_get(root, "tools");
    if (json_is_array(tools) && json_array_size(tools) > 0) {
        srv_err_set(e, 400, "tools", "tools are not supported");
        return -1;
    }
    if (no_images(root, e)) return -1;
    if (parse_options(root, g, e)) return -1;
    if (api == SRV_API_OLLAMA_GENERATE) {
        const char *prompt = "", *system = NULL;
        bool raw = false;
        if (srv_get_str(root, "prompt", &prompt, NULL, e) < 0) return -1;
        if (srv_get_str(root, "system", &system, NULL, e) < 0) return -1;
        if (srv_get_bool(root, "raw", &raw, e) < 0) return -1;
        if (!*prompt) {
            g->load_only = true;
            return 0;
        }
        if (raw) return (g->prompt = dup_s(prompt, e)) ? 0 : -1;
        if (system && *system && add_msg(g, "system", system, e)) return -1;
        return add_msg(g, "user", prompt, e);
    }
    const json_t *msgs = json_object_get(root, "messages");
    if (!msgs || json_is_null(msgs) || (json_is_array(msgs) && json_array_size(msgs) == 0)) {
        g->load_only = true;
        return 0;
    }
    if (!json_is_array(msgs)) {
        srv_err_set(e, 400, "messages", "'messages' must be an array");
        return -1;
    }
    if (json_array_size(msgs) > SRV_MAX_MESSAGES) {
        srv_err_set(e, 400, "messages", "at most %d messages", SRV_MAX_MESSAGES);
        return -1;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = NULL, *content = "";
        if (!json_is_object(m) || srv_get_str(m, "role", &role, NULL, e) <= 0) {
            srv_err_set(e, 400, "messages", "messages[%zu] must be an object with a 'role'", i);
            return -1;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool")) {
            srv_err_set(e, 400, "messages",
                        "messages[%zu]: role must be system, user, assistant or tool", i);
            return -1;
        }
        if (srv_get_str(m, "content", &content, NULL, e) < 0) return -1;
        if (no_images(m, e)) return -1;
        if (add_msg(g, role, content, e)) return -1;
    }
    return 0;
}

/* ---- formatting ---- */

/* RFC 3339 UTC time with nanoseconds, as Ollama writes "created_at". */
static void now_rfc3339(char *out, size_t cap) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", day, (long)ts.tv_nsec);
}

static json_t *base_obj(const srv_resp *r) {
    char t[64];
    now_rfc3339(t, sizeof t);
    const char *mn = r->model_name ? r->model_name : "";
    return json_pack("{s:o,s:s}", "model", srv_json_str(mn, strlen(mn)), "created_at", t);
}

static void set_text(const srv_resp *r, json_t *j, const char *text, size_t n) {
    if (r->api == SRV_API_OLLAMA_CHAT)
        json_object_set_new(
            j, "message",
            json_pack("{s:s,s:o}", "role", "assistant", "content", srv_json_str(text, n)));
    else
        json_object_set_new(j, "response", srv_json_str(text, n));
}

static void line(srv_buf *out, json_t *j) {
    srv_json_append(out, j);
    srv_buf_add(out, "\n", 1);
    json_decref(j);
}

void srv_ollama_token(srv_resp *r, const srv_event *ev, srv_buf *out) {
    if (ev->text_len <= 0) return;
    if (!r->stream) {
        srv_buf_add(&r->text, ev->text, (size_t)ev->text_len);
        return;
    }
    json_t *j = base_obj(r);
    set_text(r, j, ev->text, (size_t)ev->text_len);
    json_object_set_new(j, "done", json_false());
    line(out, j);
}

void srv_ollama_error_body(const srv_err *e, srv_buf *out) {
    json_t *j = json_pack("{s:o}", "error", srv_json_str(e->message, strlen(e->message)));
    srv_json_append(out, j);
    json_decref(j);
}

static json_int_t ns(double s) {
    return s > 0 ? (json_int_t)(s * 1e9) : 0;
}

void srv_ollama_done(srv_resp *r, const srv_event *ev, srv_buf *out, int *status) {
    if (ev->finish == SRV_FINISH_ERROR) {
        srv_err e;
        srv_err_set(&e, 500, NULL, "generation failed: %s", ev->error[0] ? ev->error : "error");
        if (!r->stream) *status = 500;
        srv_ollama_error_body(&e, out);
        if (r->stream) srv_buf_add(out, "\n", 1);
        return;
    }
    if (ev->text_len > 0) srv_buf_add(&r->text, ev->text, (size_t)ev->text_len);
    json_t *j = base_obj(r);
    if (r->stream)
        set_text(r, j, ev->text ? ev->text : "", ev->text_len > 0 ? (size_t)ev->text_len : 0);
    else
        set_text(r, j, r->text.p ? r->text.p : "", r->text.n);
    json_object_set_new(j, "done", json_true());
    json_object_set_new(j, "done_reason", json_string(srv_finish_name(ev->finish)));
    json_object_set_new(j, "total_duration", json_integer(ns(time_now() - r->t_start)));
    json_object_set_new(j, "load_duration", json_integer(0));
    json_object_set_new(j, "prompt_eval_count", json_integer(ev->n_prompt));
    json_object_set_new(j, "prompt_eval_duration", json_integer(ns(ev->t_prompt)));
    json_object_set_new(j, "eval_count", json_integer(ev->n_gen));
    json_object_set_new(j, "eval_duration", json_integer(ns(ev->t_gen)));
    if (r->stream)
        line(out, j);
    else {
        srv_json_append(out, j);
        json_decref(j);
    }
}

/* The reply to an empty prompt: the model is loaded. */
void srv_ollama_load_reply(const srv_resp *r, srv_buf *out) {
    json_t *j = base_obj(r);
    set_text(r, j, "", 0);
    json_object_set_new(j, "done", json_true());
    json_object_set_new(j, "done_reason", json_string("load"));
    srv_json_append(out, j);
    if (r->stream) srv_buf_add(out, "\n", 1);
    json_decref(j);
}
