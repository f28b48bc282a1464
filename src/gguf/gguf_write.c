/* gguf_write.c: the GGUF writer. Collects key/values (each kept already
 * encoded, in insertion order) and tensors (copied), then writes a version 3
 * file with every tensor's data aligned. Owns the gguf_writer_* / gguf_w_*
 * functions.
 *
 * The void setters cannot report failure, so the first problem (bad key, out
 * of memory, invalid value) is remembered and returned by gguf_writer_save. */
#include "gguf/gguf.h"

#include "gguf/gguf_bytes.h"
#include "quant/quant.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W_MAX_DEPTH 8 /* same nesting limit as the reader */
#define W_MAX_NAME  1024

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

typedef struct {
    char *key;
    wbuf val; /* u32 type + encoded value */
} wkv;

typedef struct {
    char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    size_t size;
    uint8_t *data;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    char *err; /* first deferred error */
};

static void buf_put(wbuf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(wbuf *b, uint32_t v) {
    uint8_t p[4];
    gguf_wr_u32(p, v);
    buf_put(b, p, 4);
}
static void put_u64(wbuf *b, uint64_t v) {
    uint8_t p[8];
    gguf_wr_u64(p, v);
    buf_put(b, p, 8);
}
static void put_str(wbuf *b, const char *s, uint64_t n) {
    put_u64(b, n);
    buf_put(b, s, (size_t)n);
}

static void w_fail(gguf_writer *w, const char *fmt, const char *what) {
    if (w->err) return;
    char msg[512];
    snprintf(msg, sizeof msg, fmt, what);
    w->err = strdup(msg);
    if (!w->err) w->err = strdup("out of memory"); /* may stay NULL: then save sees oom */
}

gguf_writer *gguf_writer_new(void) {
    return xcalloc(1, sizeof(gguf_writer));
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w->err);
    free(w);
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > W_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}

/* The slot for key (existing one emptied, or a new one); NULL on error. */
static wbuf *kv_slot(gguf_writer *w, const char *key) {
    if (!w) return NULL;
    if (!key || !name_ok(key)) {
        w_fail(w, "gguf writer: invalid key '%s' (need 1..1024 printable ASCII bytes)",
               key ? key : "(null)");
        return NULL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            w->kv[i].val.n = 0;
            w->kv[i].val.oom = 0;
            return &w->kv[i].val;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) {
            w_fail(w, "gguf writer: out of memory adding key '%s'", key);
            return NULL;
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        w_fail(w, "gguf writer: out of memory adding key '%s'", key);
        return NULL;
    }
    wkv *e = &w->kv[w->n_kv++];
    e->key = k;
    memset(&e->val, 0, sizeof e->val);
    return &e->val;
}

/* Every scalar setter: type word, then the value through the one encoder. */
static void w_scalar(gguf_writer *w, const char *key, gguf_value v) {
    wbuf *b = kv_slot(w, key);
    if (!b) return;
    uint8_t p[8];
    put_u32(b, (uint32_t)v.type);
    buf_put(b, p, gguf_scalar_encode(&v, p));
}

void gguf_w_u8(gguf_writer *w, const char *key, uint8_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_U8, .u = v});
}
void gguf_w_i8(gguf_writer *w, const char *key, int8_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_I8, .i = v});
}
void gguf_w_u16(gguf_writer *w, const char *key, uint16_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_U16, .u = v});
}
void gguf_w_i16(gguf_writer *w, const char *key, int16_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_I16, .i = v});
}
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_U32, .u = v});
}
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_I32, .i = v});
}
void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_U64, .u = v});
}
void gguf_w_i64(gguf_writer *w, const char *key, int64_t v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_I64, .i = v});
}
void gguf_w_f32(gguf_writer *w, const char *key, float v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_F32, .f = v});
}
void gguf_w_f64(gguf_writer *w, const char *key, double v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_F64, .f = v});
}
void gguf_w_bool(gguf_writer *w, const char *key, bool v) {
    w_scalar(w, key, (gguf_value){.type = GGUF_BOOL, .u = v ? 1 : 0});
}

void gguf_w_strn(gguf_writer *w, const char *key, const char *v, uint64_t n) {
    if (w && n && !v) {
        w_fail(w, "gguf writer: key '%s': NULL string", key ? key : "(null)");
        return;
    }
    wbuf *b = kv_slot(w, key);
    if (!b) return;
    put_u32(b, GGUF_STRING);
    put_str(b, n ? v : "", n);
}

void gguf_w_str(gguf_writer *w, const char *key, const char *v) {
    gguf_w_strn(w, key, v ? v : "", v ? strlen(v) : 0);
}

void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    if (w && n && !v) {
        w_fail(w, "gguf writer: key '%s': NULL array", key ? key : "(null)");
        return;
    }
    wbuf *b = kv_slot(w, key);
    if (!b) return;
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_STRING);
    put_u64(b, n);
    for (uint64_t i = 0; i < n; i++) put_str(b, v[i] ? v[i] : "", v[i] ? strlen(v[i]) : 0);
}

void gguf_w_arr_raw(gguf_writer *w, const char *key, gguf_vtype elem, const void *v, uint64_t n) {
    size_t es = gguf_scalar_size(elem);
    if (!es) {
        if (w)
            w_fail(w, "gguf writer: key '%s': gguf_w_arr_raw needs a scalar element type",
                   key ? key : "(null)");
        return;
    }
    if (n > SIZE_MAX / es || (n && !v)) {
        if (w) w_fail(w, "gguf writer: key '%s': array too large or NULL", key ? key : "(null)");
        return;
    }
    wbuf *b = kv_slot(w, key);
    if (!b) return;
    put_u32(b, GGUF_ARRAY);
    put_u32(b, (uint32_t)elem);
    put_u64(b, n);
    buf_put(b, v, (size_t)n * es);
}

void gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    gguf_w_arr_raw(w, key, GGUF_I32, v, n);
}

void gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    gguf_w_arr_raw(w, key, GGUF_F32, v, n);
}

/* Encode a value's payload (without its type word). false on invalid input. */
static bool enc_value(wbuf *b, const gguf_value *v, int depth) {
    gguf_vtype t = v->type;
    size_t es = gguf_scalar_size(t);
    if (es) {
        if (t == GGUF_BOOL && v->u > 1) return false;
        uint8_t p[8];
        buf_put(b, p, gguf_scalar_encode(v, p));
        return true;
    }
    if (t == GGUF_STRING) {
        if (v->str.len && !v->str.ptr) return false;
        put_str(b, v->str.ptr, v->str.len);
        return true;
    }
    if (t != GGUF_ARRAY || depth >= W_MAX_DEPTH) return false;
    gguf_vtype et = v->arr.type;
    uint64_t n = v->arr.n;
    put_u32(b, (uint32_t)et);
    put_u64(b, n);
    size_t ees = gguf_scalar_size(et);
    if (ees) {
        if (n && !v->arr.raw) return false;
        if (n > SIZE_MAX / ees) return false;
        if (et == GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (v->arr.raw[i] > 1) return false;
        buf_put(b, v->arr.raw, (size_t)n * ees);
        return true;
    }
    if (et != GGUF_STRING && et != GGUF_ARRAY) return false;
    if (n && !v->arr.items) return false;
    for (uint64_t i = 0; i < n; i++) {
        if (v->arr.items[i].type != et) return false;
        if (!enc_value(b, &v->arr.items[i], depth + 1)) return false;
    }
    return true;
}

void gguf_w_value(gguf_writer *w, const char *key, const gguf_value *v) {
    if (!w) return;
    if (!v) {
        w_fail(w, "gguf writer: key '%s': NULL value", key ? key : "(null)");
        return;
    }
    wbuf tmp = {0};
    put_u32(&tmp, (uint32_t)v->type);
    if (!enc_value(&tmp, v, 0)) {
        free(tmp.p);
        w_fail(w, "gguf writer: key '%s': invalid value (bad type, bool, or nesting too deep)",
               key ? key : "(null)");
        return;
    }
    if (tmp.oom) {
        free(tmp.p);
        w_fail(w, "gguf writer: key '%s': out of memory", key ? key : "(null)");
        return;
    }
    wbuf *b = kv_slot(w, key);
    if (!b) {
        free(tmp.p);
        return;
    }
    free(b->p);
    *b = tmp;
}

int gguf_w_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                  const void *data) {
    if (!w) {
        err_set("gguf writer: NULL writer");
        return -1;
    }
    if (!name || !name_ok(name)) {
        err_set("gguf writer: invalid tensor name '%s' (need 1..1024 printable ASCII bytes)",
                name ? name : "(null)");
        return -1;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            err_set("gguf writer: duplicate tensor '%s'", name);
            return -1;
        }
    }
    const quant_traits *q = quant_get(type);
    if (!q) {
        err_set("gguf writer: tensor '%s': unsupported tensor type %d", name, type);
        return -1;
    }
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne) {
        err_set("gguf writer: tensor '%s': n_dims %d is not in 1..%d", name, n_dims, GGUF_MAX_DIMS);
        return -1;
    }
    int64_t dims[GGUF_MAX_DIMS] = {1, 1, 1, 1}, nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || ne[d] > ((int64_t)1 << 40) || nel > ((int64_t)1 << 40) / ne[d]) {
            err_set("gguf writer: tensor '%s': bad shape (ne[%d] = %" PRId64 ")", name, d, ne[d]);
            return -1;
        }
        nel *= ne[d];
        dims[d] = ne[d];
    }
    if (dims[0] % q->block) {
        err_set("gguf writer: tensor '%s': ne[0] = %" PRId64 " is not a multiple of the block size "
                "%d of type %s",
                name, dims[0], q->block, q->name);
        return -1;
    }
    size_t size = quant_row_size(type, dims[0]);
    for (int d = 1; d < GGUF_MAX_DIMS; d++) size *= (size_t)dims[d]; /* <= 2^40 elements */
    if (!data) {
        err_set("gguf writer: tensor '%s': no data", name);
        return -1;
    }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *p = xrealloc(w->t, cap * sizeof *p);
        if (!p) return -1;
        w->t = p;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    t->name = xstrdup(name);
    t->data = xmalloc(size);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return -1;
    }
    memcpy(t->data, data, size);
    t->type = type;
    t->n_dims = n_dims;
    memcpy(t->ne, dims, sizeof dims);
    t->size = size;
    w->n_t++;
    return 0;
}

/* ---- output ---- */

typedef struct {
    FILE *fp;  /* file sink, or */
    wbuf *mem; /* memory sink */
    int err;
} sink;

static void out(sink *s, const void *p, size_t n) {
    if (s->err || n == 0) return;
    if (s->fp) {
        if (fwrite(p, 1, n, s->fp) != n) s->err = errno ? errno : EIO;
    } else {
        buf_put(s->mem, p, n);
        if (s->mem->oom) s->err = ENOMEM;
    }
}

static void out_zeros(sink *s, size_t n) {
    static const uint8_t z[64];
    while (n) {
        size_t k = MIN(n, sizeof z);
        out(s, z, k);
        n -= k;
    }
}

static int emit(gguf_writer *w, sink *s, size_t alignment) {
    if (!w) {
        err_set("gguf writer: NULL writer");
        return -1;
    }
    if (w->err) {
        err_set("%s", w->err);
        return -1;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (w->kv[i].val.oom) {
            err_set("gguf writer: out of memory encoding key '%s'", w->kv[i].key);
            return -1;
        }
    }
    /* effective alignment: argument, else an existing general.alignment, else 32 */
    const wkv *akv = NULL;
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, "general.alignment") == 0) akv = &w->kv[i];
    if (alignment == 0 && akv) {
        if (akv->val.n != 8 || gguf_rd_u32(akv->val.p) != GGUF_U32) {
            err_set("gguf writer: general.alignment must be a u32");
            return -1;
        }
        alignment = gguf_rd_u32(akv->val.p + 4);
    }
    if (alignment == 0) alignment = 32;
    if ((alignment & (alignment - 1)) || alignment > ((size_t)1 << 31)) {
        err_set("gguf writer: alignment %zu is not a power of two up to 2^31", alignment);
        return -1;
    }
    bool add_align = !akv && alignment != 32;
    uint32_t a32 = (uint32_t)alignment;

    wbuf hdr = {0};
    buf_put(&hdr, "GGUF", 4);
    put_u32(&hdr, 3);
    put_u64(&hdr, w->n_t);
    put_u64(&hdr, w->n_kv + (add_align ? 1 : 0));
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&hdr, w->kv[i].key, strlen(w->kv[i].key));
        if (&w->kv[i] == akv) {
            put_u32(&hdr, GGUF_U32);
            put_u32(&hdr, a32);
        } else {
            buf_put(&hdr, w->kv[i].val.p, w->kv[i].val.n);
        }
    }
    if (add_align) {
        put_str(&hdr, "general.alignment", 17);
        put_u32(&hdr, GGUF_U32);
        put_u32(&hdr, a32);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&hdr, t->name, strlen(t->name));
        put_u32(&hdr, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(&hdr, (uint64_t)t->ne[d]);
        put_u32(&hdr, (uint32_t)t->type);
        put_u64(&hdr, off);
        off += (t->size + alignment - 1) / alignment * alignment;
    }
    if (hdr.oom) {
        free(hdr.p);
        err_set("gguf writer: out of memory building the header");
        return -1;
    }
    out(s, hdr.p, hdr.n);
    if (w->n_t) out_zeros(s, (alignment - hdr.n % alignment) % alignment);
    free(hdr.p);
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        out(s, t->data, t->size);
        out_zeros(s, (alignment - t->size % alignment) % alignment);
    }
    if (s->err) {
        err_set("gguf writer: write failed: %s", strerror(s->err));
        return -1;
    }
    return 0;
}

int gguf_writer_save(gguf_writer *w, const char *path, size_t alignment) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        err_set("gguf writer: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    sink s = {fp, NULL, 0};
    errno = 0;
    int rc = emit(w, &s, alignment);
    if (fclose(fp) != 0 && rc == 0) {
        err_set("gguf writer: %s: close failed: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        err_prefix("%s", path);
        remove(path);
    }
    return rc;
}

int gguf_writer_to_mem(gguf_writer *w, size_t alignment, uint8_t **out_buf, size_t *out_size) {
    wbuf b = {0};
    sink s = {NULL, &b, 0};
    if (emit(w, &s, alignment) != 0) {
        free(b.p);
        return -1;
    }
    if (!b.p) b.p = malloc(1); /* never happens: a file has at least a header */
    if (!b.p) {
        err_set("gguf writer: out of memory");
        return -1;
    }
    *out_buf = b.p;
    *out_size = b.n;
    return 0;
}
