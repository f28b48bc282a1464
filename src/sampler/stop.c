/* stop.c: the streaming stop-string matcher (see stop.h). */
#include "sampler/stop.h"

#include "util/util.h"

#include <stdlib.h>

struct stop {
    char **strs; /* non-empty stop strings */
    size_t *lens;
    int *index; /* position of each in the caller's array */
    int n;
    char *buf; /* pending text, not yet emitted */
    size_t len, cap;
    size_t safe; /* no stop string can start before buf + safe */
    int hit;
    int which;
};

stop *stop_new(const char *const *stops, int n) {
    stop *s = xcalloc(1, sizeof *s);
    if (!s) return NULL;
    s->which = -1;
    if (stops && n > 0) {
        s->strs = xcalloc((size_t)n, sizeof *s->strs);
        s->lens = xcalloc((size_t)n, sizeof *s->lens);
        s->index = xcalloc((size_t)n, sizeof *s->index);
        if (!s->strs || !s->lens || !s->index) goto fail;
        for (int i = 0; i < n; i++) {
            if (!stops[i] || !stops[i][0]) continue;
            s->lens[s->n] = strlen(stops[i]);
            s->index[s->n] = i;
            s->strs[s->n] = xstrdup(stops[i]);
            if (!s->strs[s->n++]) goto fail;
        }
    }
    return s;
fail:
    stop_free(s);
    return NULL;
}

void stop_free(stop *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->strs[i]);
    free(s->strs);
    free(s->lens);
    free(s->index);
    free(s->buf);
    free(s);
}

void stop_reset(stop *s) {
    if (!s) return;
    s->len = s->safe = 0;
    s->hit = 0;
    s->which = -1;
}

size_t stop_pending(const stop *s) {
    return s ? s->len : 0;
}
int stop_which(const stop *s) {
    return s ? s->which : -1;
}

/* Look for stop strings at every position from s->safe on. On a complete
 * match, cut the text there; otherwise move s->safe up to the first position
 * where the rest of the text is the start of some stop string. */
static void scan(stop *s) {
    size_t first_partial = s->len;
    for (size_t pos = s->safe; pos < s->len; pos++) {
        size_t avail = s->len - pos;
        for (int i = 0; i < s->n; i++) {
            size_t n = MIN(avail, s->lens[i]);
            if (memcmp(s->buf + pos, s->strs[i], n) != 0) continue;
            if (n == s->lens[i]) { /* complete: the earliest one wins */
                s->hit = 1;
                s->which = s->index[i];
                s->len = s->safe = pos;
                return;
            }
            if (first_partial > pos) first_partial = pos;
        }
    }
    s->safe = first_partial;
}

/* Length of buf[0..n) without a trailing incomplete UTF-8 sequence. */
static size_t utf8_whole(const char *buf, size_t n) {
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char b = (unsigned char)buf[n - back];
        if ((b & 0xc0) == 0x80) continue; /* continuation byte: look further back */
        if (b < 0xc0) return n;           /* ASCII */
        size_t need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
        return need > back ? n - back : n;
    }
    return n;
}

/* Copy up to min(limit, out_cap) bytes out and drop them from the buffer. */
static size_t emit(stop *s, size_t limit, char *out, size_t out_cap) {
    size_t n = MIN(limit, out_cap);
    if (n == 0 || !out) return 0;
    memcpy(out, s->buf, n);
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
    s->safe = s->safe > n ? s->safe - n : 0;
    return n;
}

size_t stop_feed(stop *s, const char *text, size_t len, char *out, size_t out_cap, int *hit) {
    if (hit) *hit = 0;
    if (!s) return 0;
    if (!s->hit && text && len > 0) {
        if (s->len + len > s->cap) {
            size_t cap = MAX(2 * s->cap, s->len + len);
            if (cap < 64) cap = 64;
            char *b = xrealloc(s->buf, cap);
            if (!b) return emit(s, utf8_whole(s->buf, s->safe), out, out_cap);
            s->buf = b;
            s->cap = cap;
        }
        memcpy(s->buf + s->len, text, len);
        s->len += len;
        scan(s);
    }
    if (hit) *hit = s->hit;
    /* after a hit the whole buffer is the final text before the stop string */
    return emit(s, s->hit ? s->len : utf8_whole(s->buf, s->safe), out, out_cap);
}

size_t stop_flush(stop *s, char *out, size_t out_cap) {
    if (!s) return 0;
    return emit(s, s->len, out, out_cap);
}
