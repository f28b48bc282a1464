/* gguf.c: the GGUF reader: maps a file (or takes a caller's buffer), validates
 * every field against the file size and sane limits before anything uses it,
 * and answers key/value and tensor look-ups. Owns gguf_open/parse/close, the
 * gguf_get_* and gguf_arr_* accessors and gguf_vtype_name.
 *
 * Cost model: one pass over the header; each array of strings or arrays gets
 * exactly one items[] allocation; every count is checked against the bytes
 * left before anything is allocated or looped over, so a hostile file can
 * neither ask for a huge allocation nor spin. Duplicate detection and look-ups
 * use sorted name tables (O(n log n) worst case, no hash flooding). */
#include "gguf/gguf.h"

#include "gguf/gguf_bytes.h"
#include "quant/quant.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC             "GGUF"
#define GGUF_HEADER_SIZE       24 /* magic, version, tensor_count, kv_count */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH         8    /* array nesting levels below a kv value */
#define GGUF_MAX_NAME          1024 /* bytes in a key or tensor name */
#define GGUF_MAX_ELEMS         ((int64_t)1 << 40)
#define GGUF_MIN_KV            14  /* u64 key len + 1 key byte + u32 type + 1 value byte */
#define GGUF_MIN_TINFO         33  /* u64 len + 1 byte + u32 n_dims + u64 ne + u32 type + u64 off */
#define SHOW                   100 /* name bytes quoted in messages */

typedef struct {
    const char *ptr;
    uint64_t len;
    int64_t idx;
} name_ent;

/* The public struct plus private look-up tables; gguf_file is the first member
 * so a gguf_file pointer handed out is also the impl pointer. */
typedef struct {
    gguf_file f;
    name_ent *kv_sorted;
    name_ent *t_sorted;
} gguf_impl;

typedef struct {
    const uint8_t *base;
    size_t size;
    size_t pos;
} cursor;

/* ---- small readers (all bounds-checked by the caller via need()) ---- */

static size_t left(const cursor *c) {
    return c->size - c->pos;
}

static bool need(cursor *c, size_t n, const char *what) {
    if (n > left(c)) {
        err_set("%s at offset %zu needs %zu bytes but the file ends at %zu", what, c->pos, n,
                c->size);
        return false;
    }
    return true;
}

static uint32_t rd_u32(cursor *c) {
    uint32_t v = gguf_rd_u32(c->base + c->pos);
    c->pos += 4;
    return v;
}

static uint64_t rd_u64(cursor *c) {
    uint64_t v = gguf_rd_u64(c->base + c->pos);
    c->pos += 8;
    return v;
}

static bool get_u32(cursor *c, uint32_t *out, const char *what) {
    if (!need(c, 4, what)) return false;
    *out = rd_u32(c);
    return true;
}

static bool get_u64(cursor *c, uint64_t *out, const char *what) {
    if (!need(c, 8, what)) return false;
    *out = rd_u64(c);
    return true;
}

static bool get_str(cursor *c, gguf_str *s, const char *what) {
    size_t at = c->pos;
    uint64_t len;
    if (!get_u64(c, &len, what)) return false;
    if (len > left(c)) {
        err_set("%s length %" PRIu64 " at offset %zu runs past end of file (size %zu)", what, len,
                at, c->size);
        return false;
    }
    s->len = len;
    s->ptr = (const char *)c->base + c->pos;
    c->pos += (size_t)len;
    return true;
}

/* Smallest encoding of one element of type t (for count checks). */
static size_t min_elem_size(gguf_vtype t) {
    if (t == GGUF_STRING) return 8;
    if (t == GGUF_ARRAY) return 12;
    return gguf_scalar_size(t);
}

const char *gguf_vtype_name(gguf_vtype t) {
    static const char *const names[GGUF_NTYPES] = {
        "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
        "bool", "string", "array", "u64", "i64", "f64",
    };
    if ((unsigned)t >= GGUF_NTYPES) return "unknown";
    return names[t];
}

static void value_free(gguf_value *v);

static void items_free(gguf_value *items, uint64_t n) {
    if (!items) return;
    for (uint64_t i = 0; i < n; i++) value_free(&items[i]);
    free(items);
}

static void value_free(gguf_value *v) {
    if (v->type == GGUF_ARRAY && v->arr.items) {
        /* items were calloc'd: entries not yet parsed are zero (U8) and free nothing */
        items_free(v->arr.items, v->arr.n);
        v->arr.items = NULL;
    }
}

/* Parse a value of type t (already read) at the cursor. depth counts array
 * levels. On failure err is set; the caller adds context. */
static bool parse_value(cursor *c, gguf_value *v, gguf_vtype t, int depth) {
    memset(v, 0, sizeof *v);
    v->type = t;
    if ((unsigned)t >= GGUF_NTYPES) {
        err_set("unknown value type %u at offset %zu", (unsigned)t, c->pos - 4);
        return false;
    }
    if (t == GGUF_STRING) return get_str(c, &v->str, "string");
    if (t != GGUF_ARRAY) {
        size_t n = gguf_scalar_size(t);
        if (!need(c, n, gguf_vtype_name(t))) return false;
        if (t == GGUF_BOOL && c->base[c->pos] > 1) {
            err_set("bool value %u at offset %zu is not 0 or 1", c->base[c->pos], c->pos);
            return false;
        }
        gguf_scalar_decode(v, c->base + c->pos);
        c->pos += n;
        return true;
    }
    /* array */
    if (depth >= GGUF_MAX_DEPTH) {
        err_set("arrays nested deeper than %d levels at offset %zu", GGUF_MAX_DEPTH, c->pos);
        return false;
    }
    size_t at = c->pos;
    uint32_t et;
    uint64_t n;
    if (!get_u32(c, &et, "array element type") || !get_u64(c, &n, "array count")) return false;
    if (et >= GGUF_NTYPES) {
        err_set("unknown array element type %u at offset %zu", et, at);
        return false;
    }
    size_t es = min_elem_size((gguf_vtype)et);
    if (n > left(c) / es) {
        err_set("array of %" PRIu64 " %s elements at offset %zu cannot fit in the %zu bytes left "
                "in the file",
                n, gguf_vtype_name((gguf_vtype)et), at, left(c));
        return false;
    }
    v->arr.type = (gguf_vtype)et;
    v->arr.n = n;
    v->arr.raw = c->base + c->pos;
    if (et != GGUF_STRING && et != GGUF_ARRAY) {
        if (et == GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                if (c->base[c->pos + i] > 1) {
                    err_set("array element %" PRIu64 ": bool value %u at offset %zu is not 0 or 1",
                            i, c->base[c->pos + i], c->pos + (size_t)i);
                    return false;
                }
            }
        }
        c->pos += (size_t)n * es;
        return true;
    }
    v->arr.raw = NULL;
    if (n == 0) return true;
    v->arr.items = xcalloc((size_t)n, sizeof(gguf_value));
    if (!v->arr.items) return false;
    gguf_value *items = v->arr.items;
    if (et == GGUF_STRING) {
        /* hot path (tokenizer vocabularies): inline string reads */
        const uint8_t *base = c->base;
        size_t pos = c->pos, size = c->size;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len;
            if (size - pos < 8) {
                err_set("array element %" PRIu64 ": string at offset %zu runs past end of file "
                        "(size %zu)",
                        i, pos, size);
                return false;
            }
            len = gguf_rd_u64(base + pos);
            if (len > size - pos - 8) {
                err_set("array element %" PRIu64 ": string length %" PRIu64
                        " at offset %zu runs past end of file (size %zu)",
                        i, len, pos, size);
                return false;
            }
            items[i].type = GGUF_STRING;
            items[i].str.len = len;
            items[i].str.ptr = (const char *)base + pos + 8;
            pos += 8 + (size_t)len;
        }
        c->pos = pos;
        return true;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!parse_value(c, &items[i], GGUF_ARRAY, depth + 1)) {
            err_prefix("array element %" PRIu64, i);
            return false;
        }
    }
    return true;
}

/* Keys and tensor names: 1..GGUF_MAX_NAME bytes of printable ASCII. */
static bool check_name(gguf_str s, const char *what, int64_t idx, size_t at) {
    if (s.len == 0) {
        err_set("%s %" PRId64 " at offset %zu has an empty name", what, idx, at);
        return false;
    }
    if (s.len > GGUF_MAX_NAME) {
        err_set("%s %" PRId64 " at offset %zu: name length %" PRIu64 " exceeds %d bytes", what, idx,
                at, s.len, GGUF_MAX_NAME);
        return false;
    }
    for (uint64_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch < 0x20 || ch > 0x7e) {
            err_set("%s %" PRId64 " at offset %zu: %s has a non-printable byte 0x%02x at "
                    "position %" PRIu64 "%s%.*s%s",
                    what, idx, at, strcmp(what, "kv") ? "name" : "key", ch, i, i ? " (after '" : "",
                    (int)MIN(i, SHOW), s.ptr, i ? "')" : "");
            return false;
        }
    }
    return true;
}

static int name_cmp(const char *a, uint64_t alen, const char *b, uint64_t blen) {
    int r = memcmp(a, b, (size_t)MIN(alen, blen));
    if (r) return r;
    return alen < blen ? -1 : alen > blen;
}

static int name_ent_cmp(const void *x, const void *y) {
    const name_ent *a = x, *b = y;
    int r = name_cmp(a->ptr, a->len, b->ptr, b->len);
    if (r) return r;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static const name_ent *name_find(const name_ent *tab, int64_t n, const char *key, size_t klen) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = name_cmp(tab[mid].ptr, tab[mid].len, key, klen);
        if (r == 0) return &tab[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Sort names; report the first duplicate. */
static name_ent *build_sorted(const gguf_str *(*get)(const gguf_file *, int64_t),
                              const gguf_file *f, int64_t n, const char *what) {
    name_ent *tab = xmalloc((size_t)(n ? n : 1) * sizeof *tab);
    if (!tab) return NULL;
    for (int64_t i = 0; i < n; i++) {
        const gguf_str *s = get(f, i);
        tab[i].ptr = s->ptr;
        tab[i].len = s->len;
        tab[i].idx = i;
    }
    qsort(tab, (size_t)n, sizeof *tab, name_ent_cmp);
    for (int64_t i = 1; i < n; i++) {
        if (name_cmp(tab[i - 1].ptr, tab[i - 1].len, tab[i].ptr, tab[i].len) == 0) {
            err_set("duplicate %s '%.*s' (entries %" PRId64 " and %" PRId64 ")", what,
                    (int)MIN(tab[i].len, SHOW), tab[i].ptr, tab[i - 1].idx, tab[i].idx);
            free(tab);
            return NULL;
        }
    }
    return tab;
}

static const gguf_str *kv_name(const gguf_file *f, int64_t i) {
    return &f->kv[i].key;
}
static const gguf_str *t_name(const gguf_file *f, int64_t i) {
    return &f->tensors[i].name;
}

typedef struct {
    uint64_t off;
    uint64_t size;
    int64_t idx;
} span;

static int span_cmp(const void *x, const void *y) {
    const span *a = x, *b = y;
    if (a->off != b->off) return a->off < b->off ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static bool parse_tensor_info(cursor *c, gguf_tensor *t, int64_t idx) {
    size_t at = c->pos;
    if (!get_str(c, &t->name, "tensor name")) {
        err_prefix("tensor %" PRId64, idx);
        return false;
    }
    if (!check_name(t->name, "tensor", idx, at)) return false;
    const int nl = (int)MIN(t->name.len, SHOW);
    const char *nm = t->name.ptr;
    uint32_t nd;
    if (!get_u32(c, &nd, "n_dims")) goto ctx;
    if (nd == 0 || nd > GGUF_MAX_DIMS) {
        err_set("tensor '%.*s': n_dims %u at offset %zu is not in 1..%d", nl, nm, nd, c->pos - 4,
                GGUF_MAX_DIMS);
        return false;
    }
    t->n_dims = (int)nd;
    int64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (!get_u64(c, &ne, "tensor dimension")) goto ctx;
        if (ne == 0 || ne > (uint64_t)GGUF_MAX_ELEMS) {
            err_set("tensor '%.*s': ne[%u] = %" PRId64 " at offset %zu is not in 1..2^40", nl, nm,
                    d, (int64_t)ne, c->pos - 8);
            return false;
        }
        if ((uint64_t)nel > (uint64_t)GGUF_MAX_ELEMS / ne) {
            err_set("tensor '%.*s': element count exceeds 2^40", nl, nm);
            return false;
        }
        nel *= (int64_t)ne;
        t->ne[d] = (int64_t)ne;
    }
    uint32_t ty;
    uint64_t off;
    if (!get_u32(c, &ty, "tensor type")) goto ctx;
    const quant_traits *q = ty < (uint32_t)QT_COUNT ? quant_get((int)ty) : NULL;
    if (!q) {
        err_set("unsupported tensor type %u in tensor '%.*s'", ty, nl, nm);
        return false;
    }
    t->type = (int)ty;
    if (q->block <= 0 || t->ne[0] % q->block) {
        err_set("tensor '%.*s': ne[0] = %" PRId64 " is not a multiple of the block size %d of type "
                "%s",
                nl, nm, t->ne[0], q->block, q->name);
        return false;
    }
    size_t row = quant_row_size(t->type, t->ne[0]), size = row;
    if (row == 0) {
        err_set("tensor '%.*s': cannot size a row of %" PRId64 " %s", nl, nm, t->ne[0], q->name);
        return false;
    }
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        if (__builtin_mul_overflow(size, (size_t)t->ne[d], &size)) {
            err_set("tensor '%.*s': byte size overflows", nl, nm);
            return false;
        }
    }
    t->size = size;
    if (!get_u64(c, &off, "tensor offset")) goto ctx;
    t->offset = off;
    return true;
ctx:
    err_prefix("tensor '%.*s'", nl, nm);
    return false;
}

static void file_free(gguf_impl *im) {
    gguf_file *f = &im->f;
    if (f->kv) {
        for (int64_t i = 0; i < f->n_kv; i++) value_free(&f->kv[i].val);
        free(f->kv);
    }
    free(f->tensors);
    free(im->kv_sorted);
    free(im->t_sorted);
    free(im);
}

/* The parser proper. Messages carry no "gguf:" prefix; the callers add it. */
static gguf_impl *parse(const uint8_t *buf, size_t size) {
    if (size >= 4 && memcmp(buf, GGUF_MAGIC, 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++)
            shown[i] = (buf[i] >= 0x20 && buf[i] < 0x7f) ? (char)buf[i] : '.';
        shown[4] = 0;
        err_set("not a GGUF file (magic '%s', bytes %02x %02x %02x %02x)", shown, buf[0], buf[1],
                buf[2], buf[3]);
        return NULL;
    }
    if (size < 8) {
        err_set("file too small (%zu bytes) for a GGUF header (%d bytes)", size, GGUF_HEADER_SIZE);
        return NULL;
    }
    cursor c = {buf, size, 4};
    uint32_t version = rd_u32(&c);
    if (version == 1) {
        err_set("GGUF version 1 is not supported (obsolete format; re-convert the model to v3)");
        return NULL;
    }
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version != 0)
            err_set("unsupported GGUF version %u (looks like a big-endian file; only little-endian "
                    "is supported)",
                    version);
        else
            err_set("unsupported GGUF version %u (supported: 2 and 3)", version);
        return NULL;
    }
    if (size < GGUF_HEADER_SIZE) {
        err_set("file too small (%zu bytes) for a GGUF header (%d bytes)", size, GGUF_HEADER_SIZE);
        return NULL;
    }
    uint64_t n_t = rd_u64(&c), n_kv = rd_u64(&c);
    size_t rem = left(&c);
    if (n_t > rem / GGUF_MIN_TINFO || n_kv > rem / GGUF_MIN_KV ||
        n_t * GGUF_MIN_TINFO + n_kv * GGUF_MIN_KV > rem) {
        err_set("%" PRIu64 " tensors and %" PRIu64 " key/values cannot fit in the %zu bytes after "
                "the header",
                n_t, n_kv, rem);
        return NULL;
    }

    gguf_impl *im = xcalloc(1, sizeof *im);
    if (!im) return NULL;
    gguf_file *f = &im->f;
    f->version = version;
    f->base = buf;
    f->size = size;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    f->kv = xcalloc((size_t)(n_kv ? n_kv : 1), sizeof(gguf_kv));
    f->tensors = xcalloc((size_t)(n_t ? n_t : 1), sizeof(gguf_tensor));
    if (!f->kv || !f->tensors) goto fail;

    /* key/values */
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        size_t at = c.pos;
        if (!get_str(&c, &kv->key, "key")) {
            err_prefix("kv %" PRIu64, i);
            goto fail;
        }
        if (!check_name(kv->key, "kv", (int64_t)i, at)) goto fail;
        f->n_kv = (int64_t)i + 1; /* key valid: value is freed on failure */
        uint32_t t;
        if (!get_u32(&c, &t, "value type") || !parse_value(&c, &kv->val, (gguf_vtype)t, 0)) {
            err_prefix("kv %" PRIu64 " '%.*s'", i, (int)MIN(kv->key.len, SHOW), kv->key.ptr);
            goto fail;
        }
    }
    im->kv_sorted = build_sorted(kv_name, f, f->n_kv, "key");
    if (!im->kv_sorted) goto fail;

    /* alignment */
    const name_ent *al = name_find(im->kv_sorted, f->n_kv, "general.alignment", 17);
    if (al) {
        const gguf_value *v = &f->kv[al->idx].val;
        if (v->type != GGUF_U32) {
            err_set("general.alignment has type %s, expected u32", gguf_vtype_name(v->type));
            goto fail;
        }
        if (v->u == 0 || (v->u & (v->u - 1))) {
            err_set("general.alignment %" PRIu64 " is not a power of two", v->u);
            goto fail;
        }
        f->alignment = (size_t)v->u;
    }

    /* tensor infos */
    for (uint64_t i = 0; i < n_t; i++) {
        if (!parse_tensor_info(&c, &f->tensors[i], (int64_t)i)) goto fail;
        f->n_tensors = (int64_t)i + 1;
    }
    f->n_tensors = (int64_t)n_t;
    im->t_sorted = build_sorted(t_name, f, f->n_tensors, "tensor name");
    if (!im->t_sorted) goto fail;

    /* data section: header end rounded up to the alignment (at most 2^31 - 1 past it) */
    uint64_t data_off = ((uint64_t)c.pos + f->alignment - 1) & ~((uint64_t)f->alignment - 1);
    f->data_offset = (size_t)data_off;
    if (n_t > 0 && data_off > size) {
        err_set("file ends (size %zu) before the data section (offset %" PRIu64 ")", size,
                data_off);
        goto fail;
    }
    uint64_t data_len = n_t > 0 ? size - data_off : 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const int nl = (int)MIN(t->name.len, SHOW);
        if (t->offset % f->alignment) {
            err_set("tensor '%.*s': offset %" PRIu64 " is not a multiple of the alignment %zu", nl,
                    t->name.ptr, t->offset, f->alignment);
            goto fail;
        }
        if (t->offset > UINT64_MAX - data_off) {
            err_set("tensor '%.*s': data offset %" PRIu64 " runs past end of file (size %zu)", nl,
                    t->name.ptr, t->offset, size);
            goto fail;
        }
        if (t->offset > data_len || t->size > data_len - t->offset) {
            err_set("tensor '%.*s': data [offset %" PRIu64 ", size %zu] runs past end of file "
                    "(size %zu)",
                    nl, t->name.ptr, data_off + t->offset, t->size, size);
            goto fail;
        }
        t->data = buf + data_off + t->offset;
    }
    if (n_t > 1) {
        span *sp = xmalloc((size_t)n_t * sizeof *sp);
        if (!sp) goto fail;
        for (int64_t i = 0; i < f->n_tensors; i++)
            sp[i] = (span){f->tensors[i].offset, f->tensors[i].size, i};
        qsort(sp, (size_t)n_t, sizeof *sp, span_cmp);
        for (uint64_t i = 1; i < n_t; i++) {
            if (sp[i - 1].off + sp[i - 1].size > sp[i].off) {
                const gguf_tensor *a = &f->tensors[sp[i - 1].idx], *b = &f->tensors[sp[i].idx];
                err_set("tensors '%.*s' [offset %" PRIu64 ", size %zu] and '%.*s' [offset %" PRIu64
                        ", size %zu] overlap",
                        (int)MIN(a->name.len, SHOW), a->name.ptr, a->offset, a->size,
                        (int)MIN(b->name.len, SHOW), b->name.ptr, b->offset, b->size);
                free(sp);
                goto fail;
            }
        }
        free(sp);
    }
    return im;
fail:
    file_free(im);
    return NULL;
}

gguf_file *gguf_parse(const void *buf, size_t size) {
    if (!buf && size) {
        err_set("gguf: NULL buffer");
        return NULL;
    }
    gguf_impl *im = parse(buf ? buf : (const void *)"", size);
    if (!im) {
        err_prefix("gguf");
        return NULL;
    }
    return &im->f;
}

gguf_file *gguf_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set("gguf: %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set("gguf: %s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set("gguf: %s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    if (size < GGUF_HEADER_SIZE) {
        /* also covers size 0, which mmap refuses; parse() gives the precise message */
        uint8_t small[GGUF_HEADER_SIZE];
        ssize_t got = size ? read(fd, small, size) : 0;
        close(fd);
        if (got != (ssize_t)size) {
            err_set("gguf: %s: read failed", path);
            return NULL;
        }
        gguf_impl *im = parse(small, size); /* fails: too small for any valid file */
        if (im) {
            file_free(im);
            err_set("internal error: a %zu-byte file parsed", size);
        }
        err_prefix("gguf: %s", path);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        err_set("gguf: %s: mmap failed: %s", path, strerror(errno));
        return NULL;
    }
    gguf_impl *im = parse(map, size);
    if (!im) {
        err_prefix("gguf: %s", path);
        munmap(map, size);
        return NULL;
    }
    im->f.mapped = 1;
    return &im->f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    gguf_impl *im = (gguf_impl *)f;
    if (f->mapped) munmap((void *)f->base, f->size);
    file_free(im);
}

/* ---- look-ups ---- */

const gguf_value *gguf_get(const gguf_file *f, const char *key) {
    if (!f || !key) return NULL;
    const gguf_impl *im = (const gguf_impl *)f;
    const name_ent *e = name_find(im->kv_sorted, f->n_kv, key, strlen(key));
    return e ? &f->kv[e->idx].val : NULL;
}

static bool value_int(const gguf_value *v, int64_t *out) {
    switch (v->type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_BOOL:
        *out = (int64_t)v->u;
        return true;
    case GGUF_U64:
        if (v->u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->u;
        return true;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        *out = v->i;
        return true;
    default:
        return false;
    }
}

bool gguf_get_int(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_value *v = gguf_get(f, key);
    int64_t x;
    if (!v || !value_int(v, &x)) return false;
    if (out) *out = x;
    return true;
}

bool gguf_get_float(const gguf_file *f, const char *key, double *out) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return false;
    double x;
    if (v->type == GGUF_F32 || v->type == GGUF_F64) {
        x = v->f;
    } else if (v->type == GGUF_U64) {
        x = (double)v->u;
    } else {
        int64_t i;
        if (!value_int(v, &i)) return false;
        x = (double)i;
    }
    if (out) *out = x;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return false;
    bool b;
    if (v->type == GGUF_BOOL || v->type == GGUF_U8 || v->type == GGUF_U16 || v->type == GGUF_U32 ||
        v->type == GGUF_U64)
        b = v->u != 0;
    else if (v->type == GGUF_I8 || v->type == GGUF_I16 || v->type == GGUF_I32 ||
             v->type == GGUF_I64)
        b = v->i != 0;
    else
        return false;
    if (out) *out = b;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_value *v = gguf_get(f, key);
    if (!v || v->type != GGUF_STRING) return false;
    if (out) *out = v->str;
    return true;
}

const gguf_value *gguf_get_arr(const gguf_file *f, const char *key) {
    const gguf_value *v = gguf_get(f, key);
    return v && v->type == GGUF_ARRAY ? v : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f || !name) return NULL;
    const gguf_impl *im = (const gguf_impl *)f;
    const name_ent *e = name_find(im->t_sorted, f->n_tensors, name, strlen(name));
    return e ? &f->tensors[e->idx] : NULL;
}

/* Element i of a scalar array as a decoded value (type U8 and 0 otherwise). */
static gguf_value arr_elem(const gguf_value *arr, uint64_t i) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    if (!arr || arr->type != GGUF_ARRAY || i >= arr->arr.n) return v;
    size_t es = gguf_scalar_size(arr->arr.type);
    if (!es || !arr->arr.raw) return v;
    v.type = arr->arr.type;
    gguf_scalar_decode(&v, arr->arr.raw + (size_t)i * es);
    return v;
}

int64_t gguf_arr_int(const gguf_value *arr, uint64_t i) {
    gguf_value v = arr_elem(arr, i);
    switch (v.type) {
    case GGUF_F32:
    case GGUF_F64:
        return (v.f >= -9.2e18 && v.f <= 9.2e18) ? (int64_t)v.f : 0; /* NaN -> 0 */
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        return v.i;
    default:
        return (int64_t)v.u;
    }
}

double gguf_arr_float(const gguf_value *arr, uint64_t i) {
    gguf_value v = arr_elem(arr, i);
    switch (v.type) {
    case GGUF_F32:
    case GGUF_F64:
        return v.f;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        return (double)v.i;
    default:
        return (double)v.u;
    }
}

gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i) {
    gguf_str s = {0, NULL};
    if (arr && arr->type == GGUF_ARRAY && arr->arr.type == GGUF_STRING && arr->arr.items &&
        i < arr->arr.n)
        s = arr->arr.items[i].str;
    return s;
}

bool gguf_str_eq(gguf_str s, const char *c) {
    if (!c) return false;
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}
