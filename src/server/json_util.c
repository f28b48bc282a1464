/* json_util.c: the server's small shared pieces: error records, a growing
 * byte buffer, the pre-parse check of request bodies (nesting depth and
 * container sizes), UTF-8 checking and repair, and JSON output helpers. */
#include "server/server.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_err_set(srv_err *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* ---- buffer ---- */

void srv_buf_add(srv_buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void srv_buf_puts(srv_buf *b, const char *s) {
    srv_buf_add(b, s, strlen(s));
}

void srv_buf_printf(srv_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        srv_buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    srv_buf_add(b, big, (size_t)n);
    free(big);
}

void srv_buf_free(srv_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- JSON input ---- */

bool srv_json_prescan(const char *s, size_t n, int max_depth, long max_elems, srv_err *e) {
    long commas[SRV_MAX_DEPTH + 1];
    int depth = 0;
    bool in_str = false, esc = false;
    if (max_depth > SRV_MAX_DEPTH) max_depth = SRV_MAX_DEPTH;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        switch (c) {
        case '"':
            in_str = true;
            break;
        case '[':
        case '{':
            if (depth >= max_depth) {
                srv_err_set(e, 400, NULL, "JSON nesting deeper than %d levels", max_depth);
                return false;
            }
            commas[++depth] = 0;
            break;
        case ']':
        case '}':
            if (depth > 0) depth--;
            break;
        case ',':
            if (depth > 0 && ++commas[depth] >= max_elems) {
                srv_err_set(e, 400, NULL, "a JSON array or object has more than %ld entries",
                            max_elems);
                return false;
            }
            break;
        default:
            break;
        }
    }
    return true;
}

json_t *srv_json_parse(const char *s, size_t n, srv_err *e) {
    if (!srv_json_prescan(s, n, SRV_MAX_DEPTH, SRV_MAX_ELEMS, e)) return NULL;
    json_error_t je;
    json_t *root = json_loadb(s, n, 0, &je);
    if (!root) {
        srv_err_set(e, 400, NULL, "invalid JSON in the request body: %s (line %d, column %d)",
                    je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        srv_err_set(e, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned min, cp;
    if ((c & 0xe0) == 0xc0) {
        len = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

bool srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(u + i, n - i);
        if (!k) return false;
        i += (size_t)k;
    }
    return true;
}

json_t *srv_json_str(const char *s, size_t n) {
    if (!s) return json_string("");
    if (srv_utf8_valid(s, n)) return json_stringn(s, n);
    srv_buf b = {0};
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(u + i, n - i);
        if (k) {
            srv_buf_add(&b, u + i, (size_t)k);
            i += (size_t)k;
        } else {
            srv_buf_add(&b, "\xef\xbf\xbd", 3); /* U+FFFD */
            i++;
        }
    }
    json_t *j = b.oom ? NULL : json_stringn(b.p ? b.p : "", b.n);
    srv_buf_free(&b);
    return j;
}

json_t *srv_json_real(double v) {
    if (isnan(v)) v = 0;
    if (isinf(v)) v = v < 0 ? -9999.0 : 9999.0;
    return json_real(v);
}

void srv_json_append(srv_buf *b, const json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (!s) {
        b->oom = true;
        return;
    }
    srv_buf_puts(b, s);
    free(s);
}

/* ---- typed field readers ---- */

int srv_get_num(const json_t *o, const char *key, double lo, double hi, double *out, srv_err *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) {
        srv_err_set(e, 400, key, "'%s' must be a number", key);
        return -1;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        srv_err_set(e, 400, key, "'%s' must be between %g and %g", key, lo, hi);
        return -1;
    }
    *out = d;
    return 1;
}

int srv_get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out,
                srv_err *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        srv_err_set(e, 400, key, "'%s' must be an integer", key);
        return -1;
    }
    if (x < lo || x > hi) {
        srv_err_set(e, 400, key, "'%s' must be between %lld and %lld", key, lo, hi);
        return -1;
    }
    *out = x;
    return 1;
}

int srv_get_bool(const json_t *o, const char *key, bool *out, srv_err *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        srv_err_set(e, 400, key, "'%s' must be true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

int srv_get_str(const json_t *o, const char *key, const char **out, size_t *len, srv_err *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        srv_err_set(e, 400, key, "'%s' must be a string", key);
        return -1;
    }
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return 1;
}

static int add_stop(srv_gen *g, const char *key, const json_t *v, srv_err *e) {
    if (!json_is_string(v)) {
        srv_err_set(e, 400, key, "'%s' must be a string or an array of strings", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n == 0) return 0; /* an empty stop string stops nothing */
    if (n > SRV_MAX_STOP_LEN) {
        srv_err_set(e, 400, key, "a stop string is longer than %d bytes", SRV_MAX_STOP_LEN);
        return -1;
    }
    if (g->n_stop == SRV_MAX_STOPS) {
        srv_err_set(e, 400, key, "at most %d stop strings", SRV_MAX_STOPS);
        return -1;
    }
    if (!(g->stops[g->n_stop] = strdup(json_string_value(v)))) {
        srv_err_set(e, 500, NULL, "out of memory");
        return -1;
    }
    g->n_stop++;
    return 0;
}

int srv_get_stops(const json_t *o, const char *key, srv_gen *g, srv_err *e) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (add_stop(g, key, x, e)) return -1;
        }
        return 1;
    }
    return add_stop(g, key, v, e) ? -1 : 1;
}
