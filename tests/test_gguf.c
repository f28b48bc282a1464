/* test_gguf.c: the GGUF reader and writer: a full round trip (every value
 * type, nested arrays, several tensor types and alignments), the look-up
 * helpers, the two real models (skipped when absent), and a corruption battery
 * (truncations, byte flips, hostile counts/lengths/types/offsets) that must
 * fail cleanly with a message.
 *
 * `test_gguf --gen-corpus DIR` writes small valid seed files for the fuzzer. */
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "util/util.h"

#include "check.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *tmp_path(const char *tag) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 512, "%s/test_gguf_%ld_%s.gguf", dir, (long)getpid(), tag);
    return p;
}

/* Walk every accessor of a parsed file (touches all data) and return a checksum. */
static uint64_t walk_value(const gguf_value *v, int depth) {
    uint64_t h = (uint64_t)v->type * 31 + (uint64_t)depth;
    if (v->type == GGUF_STRING) {
        for (uint64_t i = 0; i < v->str.len; i++) h = h * 131 + (uint8_t)v->str.ptr[i];
    } else if (v->type == GGUF_ARRAY) {
        h += v->arr.n;
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.type == GGUF_ARRAY) {
                h += walk_value(&v->arr.items[i], depth + 1);
            } else if (v->arr.type == GGUF_STRING) {
                gguf_str s = gguf_arr_str(v, i);
                h = h * 7 + s.len + (s.len ? (uint8_t)s.ptr[s.len - 1] : 0);
            } else {
                double f = gguf_arr_float(v, i);
                h = h * 3 + (uint64_t)gguf_arr_int(v, i) + (f == f ? 1 : 0);
            }
        }
    } else {
        h += v->u;
    }
    return h;
}

static uint64_t walk_file(const gguf_file *f) {
    uint64_t h = 0;
    char key[1100];
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = 0;
        const gguf_value *v = gguf_get(f, key);
        CHECK_TRUE(v == &kv->val);
        int64_t iv;
        double dv;
        bool bv;
        gguf_str sv;
        h += gguf_get_int(f, key, &iv) ? (uint64_t)iv : 1;
        h += gguf_get_float(f, key, &dv) ? 2 : 3;
        h += gguf_get_bool(f, key, &bv) ? bv : 5;
        h += gguf_get_str(f, key, &sv) ? sv.len : 7;
        h += gguf_get_arr(f, key) ? 11 : 13;
        h += walk_value(v, 0);
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char name[1100];
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        CHECK_TRUE(gguf_find_tensor(f, name) == t);
        const uint8_t *d = t->data;
        h += d[0] + d[t->size - 1] + t->size;
    }
    return h;
}

/* ---- round trip ---- */

static const int tensor_types[] = {QT_F32,  QT_F16,  QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q8_0, QT_Q4_K,
                                   QT_Q6_K, QT_Q8_K, QT_I8,   QT_I32,  QT_F64,  QT_BF16};

typedef struct {
    char name[32];
    int type, n_dims;
    int64_t ne[4];
    size_t size;
    uint8_t *data;
} ref_tensor;

typedef struct {
    uint8_t u8v;
    int8_t i8v;
    uint16_t u16v;
    int16_t i16v;
    uint32_t u32v;
    int32_t i32v;
    float f32v;
    bool boolv;
    uint64_t u64v;
    int64_t i64v;
    double f64v;
    char str[64];
    uint8_t raw[13][40]; /* one array per scalar type */
    uint64_t raw_n[13];
    char *strs[50];
    int n_strs;
    ref_tensor t[13];
    int n_t;
} ref_data;

static void ref_init(ref_data *r) {
    memset(r, 0, sizeof *r);
    r->u8v = (uint8_t)(1 + rng_u64() % 255);
    r->i8v = (int8_t)(-1 - (int)(rng_u64() % 127));
    r->u16v = (uint16_t)(1 + rng_u64() % 65535);
    r->i16v = (int16_t)(-1 - (int)(rng_u64() % 32767));
    r->u32v = (uint32_t)(1 + rng_u64() % 4000000000u);
    r->i32v = -(int32_t)(1 + rng_u64() % 2000000000);
    r->f32v = (float)(rng_uniform() * 200 - 100);
    r->boolv = rng_u64() & 1;
    r->u64v = rng_u64() | (1ull << 63);
    r->i64v = -(int64_t)(rng_u64() >> 2) - 1;
    r->f64v = rng_uniform() * 1e300;
    for (int i = 0; i < 20; i++) r->str[i] = (char)('a' + rng_u64() % 26);
    r->str[5] = 0;          /* embedded NUL */
    r->str[6] = (char)0xff; /* invalid UTF-8: allowed in values */
    for (int t = 0; t < GGUF_NTYPES; t++) {
        if (t == GGUF_STRING || t == GGUF_ARRAY) continue;
        r->raw_n[t] = 1 + rng_u64() % 5;
        rng_bytes(r->raw[t], sizeof r->raw[t]);
        if (t == GGUF_BOOL)
            for (int i = 0; i < 40; i++) r->raw[t][i] &= 1;
    }
    r->n_strs = 3 + (int)(rng_u64() % 40);
    for (int i = 0; i < r->n_strs; i++) {
        int len = (int)(rng_u64() % 12);
        r->strs[i] = malloc((size_t)len + 1);
        for (int k = 0; k < len; k++) r->strs[i][k] = (char)(1 + rng_u64() % 255);
        r->strs[i][len] = 0;
    }
    r->n_t = (int)ARRAY_LEN(tensor_types);
    for (int i = 0; i < r->n_t; i++) {
        ref_tensor *t = &r->t[i];
        const quant_traits *q = quant_get(tensor_types[i]);
        snprintf(t->name, sizeof t->name, "blk.%d.%s.weight", i, q->name);
        t->type = tensor_types[i];
        t->n_dims = 1 + (int)(rng_u64() % 4);
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        t->ne[0] = (int64_t)q->block * (1 + (int64_t)(rng_u64() % 3));
        for (int d = 1; d < t->n_dims; d++) t->ne[d] = 1 + (int64_t)(rng_u64() % 3);
        t->size = quant_row_size(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        t->data = malloc(t->size);
        rng_bytes(t->data, t->size);
    }
}

static void ref_free(ref_data *r) {
    for (int i = 0; i < r->n_strs; i++) free(r->strs[i]);
    for (int i = 0; i < r->n_t; i++) free(r->t[i].data);
}

/* Nested array values built by hand: [[s0,s1],[s2],[]] of strings and a
 * depth-k chain [[[...[u16 x3]...]]]. */
typedef struct {
    gguf_value outer, inner[3], s[3];
    gguf_value chain[8];
    uint16_t leaf[3];
} nested;

static void nested_init(nested *n, const ref_data *r) {
    memset(n, 0, sizeof *n);
    for (int i = 0; i < 3; i++) {
        n->s[i].type = GGUF_STRING;
        n->s[i].str.ptr = r->strs[i];
        n->s[i].str.len = strlen(r->strs[i]);
    }
    for (int i = 0; i < 3; i++) {
        n->inner[i].type = GGUF_ARRAY;
        n->inner[i].arr.type = GGUF_STRING;
    }
    n->inner[0].arr.n = 2;
    n->inner[0].arr.items = &n->s[0];
    n->inner[1].arr.n = 1;
    n->inner[1].arr.items = &n->s[2];
    n->inner[2].arr.n = 0;
    n->outer.type = GGUF_ARRAY;
    n->outer.arr.type = GGUF_ARRAY;
    n->outer.arr.n = 3;
    n->outer.arr.items = n->inner;
    for (int i = 0; i < 3; i++) n->leaf[i] = (uint16_t)(1 + rng_u64() % 60000);
    /* chain[7] is the innermost: array of u16; chain[k] holds chain[k+1] */
    for (int k = 7; k >= 0; k--) {
        n->chain[k].type = GGUF_ARRAY;
        if (k == 7) {
            n->chain[k].arr.type = GGUF_U16;
            n->chain[k].arr.n = 3;
            n->chain[k].arr.raw = (const uint8_t *)n->leaf;
        } else {
            n->chain[k].arr.type = GGUF_ARRAY;
            n->chain[k].arr.n = 1;
            n->chain[k].arr.items = &n->chain[k + 1];
        }
    }
}

static void write_ref(gguf_writer *w, const ref_data *r, const nested *n) {
    gguf_w_str(w, "general.architecture", "testarch");
    gguf_w_u8(w, "t.u8", r->u8v);
    gguf_w_i8(w, "t.i8", r->i8v);
    gguf_w_u16(w, "t.u16", r->u16v);
    gguf_w_i16(w, "t.i16", r->i16v);
    gguf_w_u32(w, "t.u32", 12345); /* replaced below: keeps its position */
    gguf_w_i32(w, "t.i32", r->i32v);
    gguf_w_f32(w, "t.f32", r->f32v);
    gguf_w_bool(w, "t.bool", r->boolv);
    gguf_w_strn(w, "t.string", r->str, 20);
    gguf_w_u64(w, "t.u64", r->u64v);
    gguf_w_i64(w, "t.i64", r->i64v);
    gguf_w_f64(w, "t.f64", r->f64v);
    gguf_w_u32(w, "t.u32", r->u32v);
    for (int t = 0; t < GGUF_NTYPES; t++) {
        if (t == GGUF_STRING || t == GGUF_ARRAY) continue;
        char key[64];
        snprintf(key, sizeof key, "t.arr.%s", gguf_vtype_name((gguf_vtype)t));
        if (t == GGUF_I32)
            gguf_w_arr_i32(w, key, (const int32_t *)(const void *)r->raw[t], r->raw_n[t]);
        else if (t == GGUF_F32)
            gguf_w_arr_f32(w, key, (const float *)(const void *)r->raw[t], r->raw_n[t]);
        else
            gguf_w_arr_raw(w, key, (gguf_vtype)t, r->raw[t], r->raw_n[t]);
    }
    gguf_w_arr_str(w, "t.arr.string", (const char *const *)r->strs, (uint64_t)r->n_strs);
    gguf_w_arr_i32(w, "t.arr.empty", NULL, 0);
    gguf_w_value(w, "t.arr.nested_strings", &n->outer);
    gguf_w_value(w, "t.arr.chain8", &n->chain[0]);
    for (int i = 0; i < r->n_t; i++) {
        const ref_tensor *t = &r->t[i];
        CHECK_TRUE(gguf_w_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data) == 0);
    }
}

static void check_ref(const gguf_file *f, const ref_data *r, size_t alignment) {
    int64_t iv;
    double dv;
    bool bv;
    gguf_str sv;
    CHECK_TRUE(f->version == 3);
    CHECK_TRUE(f->n_kv == 4 + 12 + 11 + 1 + (alignment != 32 ? 1 : 0));
    CHECK_TRUE(gguf_str_eq(f->kv[0].key, "general.architecture"));
    CHECK_TRUE(gguf_str_eq(f->kv[5].key, "t.u32")); /* replaced in place */
    CHECK_TRUE(gguf_get_str(f, "general.architecture", &sv) && gguf_str_eq(sv, "testarch"));
    CHECK_TRUE(gguf_get(f, "t.u8")->type == GGUF_U8 && gguf_get(f, "t.u8")->u == r->u8v);
    CHECK_TRUE(gguf_get(f, "t.i8")->type == GGUF_I8 && gguf_get(f, "t.i8")->i == r->i8v);
    CHECK_TRUE(gguf_get(f, "t.u16")->type == GGUF_U16 && gguf_get(f, "t.u16")->u == r->u16v);
    CHECK_TRUE(gguf_get(f, "t.i16")->type == GGUF_I16 && gguf_get(f, "t.i16")->i == r->i16v);
    CHECK_TRUE(gguf_get(f, "t.u32")->type == GGUF_U32 && gguf_get(f, "t.u32")->u == r->u32v);
    CHECK_TRUE(gguf_get(f, "t.i32")->type == GGUF_I32 && gguf_get(f, "t.i32")->i == r->i32v);
    CHECK_TRUE(gguf_get(f, "t.f32")->type == GGUF_F32 &&
               gguf_get(f, "t.f32")->f == (double)r->f32v);
    CHECK_TRUE(gguf_get(f, "t.bool")->type == GGUF_BOOL && gguf_get(f, "t.bool")->u == r->boolv);
    CHECK_TRUE(gguf_get(f, "t.u64")->type == GGUF_U64 && gguf_get(f, "t.u64")->u == r->u64v);
    CHECK_TRUE(gguf_get(f, "t.i64")->type == GGUF_I64 && gguf_get(f, "t.i64")->i == r->i64v);
    CHECK_TRUE(gguf_get(f, "t.f64")->type == GGUF_F64 && gguf_get(f, "t.f64")->f == r->f64v);
    CHECK_TRUE(gguf_get_str(f, "t.string", &sv) && sv.len == 20 && memcmp(sv.ptr, r->str, 20) == 0);
    /* type-tolerant helpers */
    CHECK_TRUE(gguf_get_int(f, "t.i8", &iv) && iv == r->i8v);
    CHECK_TRUE(gguf_get_int(f, "t.u32", &iv) && iv == (int64_t)r->u32v);
    CHECK_TRUE(!gguf_get_int(f, "t.u64", &iv)); /* > INT64_MAX */
    CHECK_TRUE(gguf_get_int(f, "t.bool", &iv) && iv == r->boolv);
    CHECK_TRUE(!gguf_get_int(f, "t.f32", &iv));
    CHECK_TRUE(!gguf_get_int(f, "t.string", &iv));
    CHECK_TRUE(gguf_get_float(f, "t.f32", &dv) && dv == (double)r->f32v);
    CHECK_TRUE(gguf_get_float(f, "t.i16", &dv) && dv == (double)r->i16v);
    CHECK_TRUE(gguf_get_float(f, "t.u64", &dv) && dv == (double)r->u64v);
    CHECK_TRUE(!gguf_get_float(f, "t.string", &dv));
    CHECK_TRUE(gguf_get_bool(f, "t.bool", &bv) && bv == r->boolv);
    CHECK_TRUE(gguf_get_bool(f, "t.u8", &bv) && bv);
    CHECK_TRUE(!gguf_get_bool(f, "t.f64", &bv));
    CHECK_TRUE(!gguf_get_str(f, "t.u8", &sv));
    CHECK_TRUE(!gguf_get_arr(f, "t.u8"));
    CHECK_TRUE(!gguf_get(f, "t.missing") && !gguf_get_int(f, "t.missing", &iv));
    CHECK_TRUE(!gguf_get(f, "t.u") && !gguf_get(f, "t.u80") && !gguf_get(f, ""));
    /* scalar arrays: raw bytes and per-element accessors */
    for (int t = 0; t < GGUF_NTYPES; t++) {
        if (t == GGUF_STRING || t == GGUF_ARRAY) continue;
        char key[64];
        snprintf(key, sizeof key, "t.arr.%s", gguf_vtype_name((gguf_vtype)t));
        const gguf_value *a = gguf_get_arr(f, key);
        CHECK(a && a->arr.type == (gguf_vtype)t && a->arr.n == r->raw_n[t], "%s", key);
        if (!a) continue;
        for (uint64_t i = 0; i < a->arr.n; i++) {
            const uint8_t *p = r->raw[t];
            int64_t ei = 0;
            double ef = 0;
            switch (t) {
            case GGUF_U8:
            case GGUF_BOOL:
                ei = p[i];
                ef = (double)ei;
                break;
            case GGUF_I8:
                ei = (int8_t)p[i];
                ef = (double)ei;
                break;
            case GGUF_U16: {
                uint16_t x;
                memcpy(&x, p + 2 * i, 2);
                ei = x;
                ef = x;
                break;
            }
            case GGUF_I16: {
                int16_t x;
                memcpy(&x, p + 2 * i, 2);
                ei = x;
                ef = x;
                break;
            }
            case GGUF_U32: {
                uint32_t x;
                memcpy(&x, p + 4 * i, 4);
                ei = x;
                ef = x;
                break;
            }
            case GGUF_I32: {
                int32_t x;
                memcpy(&x, p + 4 * i, 4);
                ei = x;
                ef = x;
                break;
            }
            case GGUF_U64: {
                uint64_t x;
                memcpy(&x, p + 8 * i, 8);
                ei = (int64_t)x;
                ef = (double)x;
                break;
            }
            case GGUF_I64: {
                int64_t x;
                memcpy(&x, p + 8 * i, 8);
                ei = x;
                ef = (double)x;
                break;
            }
            case GGUF_F32: {
                float x;
                memcpy(&x, p + 4 * i, 4);
                ef = x;
                ei = gguf_arr_int(a, i);
                break;
            }
            case GGUF_F64: {
                double x;
                memcpy(&x, p + 8 * i, 8);
                ef = x;
                ei = gguf_arr_int(a, i);
                break;
            }
            }
            CHECK(gguf_arr_int(a, i) == ei, "%s[%" PRIu64 "]", key, i);
            double got = gguf_arr_float(a, i);
            CHECK(got == ef || (isnan(got) && isnan(ef)), "%s[%" PRIu64 "]", key, i);
        }
        size_t es = (t == GGUF_U8 || t == GGUF_I8 || t == GGUF_BOOL)    ? 1
                    : (t == GGUF_U16 || t == GGUF_I16)                  ? 2
                    : (t == GGUF_U32 || t == GGUF_I32 || t == GGUF_F32) ? 4
                                                                        : 8;
        CHECK_TRUE(memcmp(a->arr.raw, r->raw[t], es * a->arr.n) == 0);
        CHECK_TRUE(gguf_arr_str(a, 0).ptr == NULL); /* wrong element type */
    }
    const gguf_value *a = gguf_get_arr(f, "t.arr.string");
    CHECK_TRUE(a && a->arr.type == GGUF_STRING && a->arr.n == (uint64_t)r->n_strs);
    for (int i = 0; a && i < r->n_strs; i++)
        CHECK_TRUE(gguf_str_eq(gguf_arr_str(a, (uint64_t)i), r->strs[i]));
    a = gguf_get_arr(f, "t.arr.empty");
    CHECK_TRUE(a && a->arr.type == GGUF_I32 && a->arr.n == 0);
    a = gguf_get_arr(f, "t.arr.nested_strings");
    CHECK_TRUE(a && a->arr.type == GGUF_ARRAY && a->arr.n == 3);
    if (a && a->arr.n == 3) {
        const gguf_value *in = a->arr.items;
        CHECK_TRUE(in[0].type == GGUF_ARRAY && in[0].arr.type == GGUF_STRING && in[0].arr.n == 2);
        CHECK_TRUE(in[1].arr.n == 1 && in[2].arr.n == 0 && in[2].arr.type == GGUF_STRING);
        CHECK_TRUE(gguf_str_eq(gguf_arr_str(&in[0], 0), r->strs[0]));
        CHECK_TRUE(gguf_str_eq(gguf_arr_str(&in[0], 1), r->strs[1]));
        CHECK_TRUE(gguf_str_eq(gguf_arr_str(&in[1], 0), r->strs[2]));
    }
    a = gguf_get_arr(f, "t.arr.chain8");
    for (int k = 0; k < 7 && a; k++) {
        CHECK_TRUE(a->arr.type == GGUF_ARRAY && a->arr.n == 1);
        a = a->arr.n == 1 ? &a->arr.items[0] : NULL;
    }
    CHECK_TRUE(a && a->arr.type == GGUF_U16 && a->arr.n == 3);
    /* tensors */
    CHECK_TRUE(f->n_tensors == r->n_t);
    CHECK_TRUE(f->alignment == alignment);
    CHECK_TRUE(f->data_offset % alignment == 0);
    for (int i = 0; i < r->n_t && i < f->n_tensors; i++) {
        const ref_tensor *rt = &r->t[i];
        const gguf_tensor *t = gguf_find_tensor(f, rt->name);
        CHECK_TRUE(t == &f->tensors[i]);
        if (!t) continue;
        CHECK_TRUE(gguf_str_eq(t->name, rt->name));
        CHECK_TRUE(t->type == rt->type && t->n_dims == rt->n_dims);
        CHECK_TRUE(memcmp(t->ne, rt->ne, sizeof t->ne) == 0);
        CHECK_TRUE(t->size == rt->size && t->offset % alignment == 0);
        CHECK_TRUE((const uint8_t *)t->data == f->base + f->data_offset + t->offset);
        CHECK_TRUE(memcmp(t->data, rt->data, rt->size) == 0);
    }
    CHECK_TRUE(!gguf_find_tensor(f, "nope") && !gguf_find_tensor(f, ""));
}

/* Copy every kv (gguf_w_value) and tensor of f into a new writer. */
static gguf_writer *copy_file(const gguf_file *f) {
    gguf_writer *w = gguf_writer_new();
    for (int64_t i = 0; i < f->n_kv; i++) {
        char key[1100];
        memcpy(key, f->kv[i].key.ptr, f->kv[i].key.len);
        key[f->kv[i].key.len] = 0;
        gguf_w_value(w, key, &f->kv[i].val);
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char name[1100];
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        CHECK_TRUE(gguf_w_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == 0);
    }
    return w;
}

static void test_roundtrip(void) {
    static const size_t aligns[] = {32, 1, 64, 4096};
    for (size_t ai = 0; ai < ARRAY_LEN(aligns); ai++) {
        ref_data r;
        nested n;
        ref_init(&r);
        nested_init(&n, &r);
        gguf_writer *w = gguf_writer_new();
        write_ref(w, &r, &n);
        const char *path = tmp_path("rt");
        CHECK(gguf_writer_save(w, path, ai == 0 ? 0 : aligns[ai]) == 0, "%s", err_get());
        uint8_t *mem = NULL;
        size_t mem_n = 0;
        CHECK_TRUE(gguf_writer_to_mem(w, aligns[ai], &mem, &mem_n) == 0);
        gguf_writer_free(w);

        size_t file_n = 0;
        uint8_t *file = check_read_file(path, &file_n);
        CHECK_TRUE(file && file_n == mem_n && memcmp(file, mem, mem_n) == 0);

        gguf_file *f = gguf_open(path);
        CHECK(f != NULL, "%s", err_get());
        if (f) {
            CHECK_TRUE(f->mapped == 1 && f->size == file_n);
            check_ref(f, &r, aligns[ai]);
            walk_file(f);
            /* deep copy through gguf_w_value: byte-identical file */
            gguf_writer *w2 = copy_file(f);
            uint8_t *mem2 = NULL;
            size_t mem2_n = 0;
            CHECK(gguf_writer_to_mem(w2, 0, &mem2, &mem2_n) == 0, "%s", err_get());
            CHECK_TRUE(mem2_n == mem_n && mem2 && memcmp(mem2, mem, mem_n) == 0);
            free(mem2);
            gguf_writer_free(w2);
            gguf_close(f);
        }
        /* the same image from memory, and as version 2 */
        f = gguf_parse(mem, mem_n);
        CHECK_TRUE(f && f->mapped == 0);
        if (f) check_ref(f, &r, aligns[ai]);
        gguf_close(f);
        mem[4] = 2;
        f = gguf_parse(mem, mem_n);
        CHECK_TRUE(f && f->version == 2);
        gguf_close(f);
        free(mem);
        free(file);
        remove(path);
        ref_free(&r);
    }

    /* an empty file: header only */
    gguf_writer *w = gguf_writer_new();
    uint8_t *mem = NULL;
    size_t n = 0;
    CHECK_TRUE(gguf_writer_to_mem(w, 0, &mem, &n) == 0 && n == 24);
    gguf_file *f = gguf_parse(mem, n);
    CHECK_TRUE(f && f->n_kv == 0 && f->n_tensors == 0);
    gguf_close(f);
    free(mem);
    gguf_writer_free(w);

    /* writer-side validation */
    w = gguf_writer_new();
    int64_t ne[2] = {33, 2};
    float data[64 * 2] = {1};
    CHECK_TRUE(gguf_w_tensor(w, "x", QT_Q4_0, 2, ne, data) == -1 &&
               strstr(err_get(), "block size"));
    CHECK_TRUE(gguf_w_tensor(w, "x", 23, 1, ne, data) == -1 && strstr(err_get(), "type 23"));
    CHECK_TRUE(gguf_w_tensor(w, "x", QT_F32, 0, ne, data) == -1);
    CHECK_TRUE(gguf_w_tensor(w, "", QT_F32, 1, ne, data) == -1);
    CHECK_TRUE(gguf_w_tensor(w, "x", QT_F32, 2, ne, data) == 0);
    CHECK_TRUE(gguf_w_tensor(w, "x", QT_F32, 2, ne, data) == -1 && strstr(err_get(), "duplicate"));
    CHECK_TRUE(gguf_writer_to_mem(w, 48, &mem, &n) == -1 && strstr(err_get(), "power of two"));
    gguf_w_u32(w, "bad\nkey", 1);
    CHECK_TRUE(gguf_writer_to_mem(w, 0, &mem, &n) == -1 && strstr(err_get(), "invalid key"));
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_value deep = {.type = GGUF_ARRAY};
    deep.arr.type = GGUF_ARRAY;
    deep.arr.n = 1;
    nested nn;
    ref_data rr;
    ref_init(&rr);
    nested_init(&nn, &rr);
    deep.arr.items = &nn.chain[0]; /* 9 levels */
    gguf_w_value(w, "deep", &deep);
    CHECK_TRUE(gguf_writer_to_mem(w, 0, &mem, &n) == -1 && strstr(err_get(), "deep"));
    gguf_writer_free(w);
    ref_free(&rr);
    CHECK_TRUE(gguf_open("/nonexistent/x.gguf") == NULL && strstr(err_get(), "cannot open"));
    CHECK_TRUE(gguf_open("/") == NULL && strstr(err_get(), "not a regular file"));
    /* tiny and empty files through gguf_open (mmap is skipped for them) */
    const char *tp = tmp_path("tiny");
    FILE *fp = fopen(tp, "wb");
    fwrite("GGUF\3\0\0\0", 1, 8, fp);
    fclose(fp);
    CHECK_TRUE(gguf_open(tp) == NULL && strstr(err_get(), tp) &&
               strstr(err_get(), "too small (8 bytes)"));
    fp = fopen(tp, "wb");
    fclose(fp);
    CHECK_TRUE(gguf_open(tp) == NULL && strstr(err_get(), "too small (0 bytes)"));
    fp = fopen(tp, "wb");
    fwrite("PK\3\4 this is a zip file", 1, 20, fp);
    fclose(fp);
    CHECK_TRUE(gguf_open(tp) == NULL && strstr(err_get(), "not a GGUF file"));
    remove(tp);
}

/* ---- real models ---- */

static int test_models(void) {
    const char *dir = getenv("BEAST_MODELS_DIR");
    if (!dir) dir = "../models";
    int found = 0;
    char path[1024];
    struct {
        const char *file, *arch;
        int64_t n_tensors, n_tokens, blocks;
        const char *tok0;
    } m[] = {
        {"SmolLM2-135M-Instruct.Q4_1.gguf", "llama", 272, 49152, 30, "<|endoftext|>"},
        {"gemma-3-270m-q4_k_m.gguf", "gemma3", 236, 262144, 18, "<pad>"},
    };
    for (size_t k = 0; k < ARRAY_LEN(m); k++) {
        snprintf(path, sizeof path, "%s/%s", dir, m[k].file);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "skip: %s absent\n", path);
            continue;
        }
        found++;
        double t0 = time_now();
        gguf_file *f = gguf_open(path);
        double dt = time_now() - t0;
        CHECK(f != NULL, "%s", err_get());
        if (!f) continue;
        fprintf(stderr, "%s: %" PRId64 " kv, %" PRId64 " tensors, parsed in %.1f ms\n", m[k].file,
                f->n_kv, f->n_tensors, dt * 1e3);
        gguf_str s;
        CHECK_TRUE(gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, m[k].arch));
        CHECK_TRUE(f->version == 3 && f->n_kv == 33 && f->alignment == 32);
        CHECK_TRUE(f->n_tensors == m[k].n_tensors);
        const gguf_value *tok = gguf_get_arr(f, "tokenizer.ggml.tokens");
        CHECK_TRUE(tok && tok->arr.type == GGUF_STRING && (int64_t)tok->arr.n == m[k].n_tokens);
        if (tok) CHECK_TRUE(gguf_str_eq(gguf_arr_str(tok, 0), m[k].tok0));
        const gguf_value *tt = gguf_get_arr(f, "tokenizer.ggml.token_type");
        CHECK_TRUE(tt && tt->arr.type == GGUF_I32 && (int64_t)tt->arr.n == m[k].n_tokens);
        char key[128];
        int64_t blocks;
        snprintf(key, sizeof key, "%s.block_count", m[k].arch);
        CHECK_TRUE(gguf_get_int(f, key, &blocks) && blocks == m[k].blocks);
        const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
        CHECK_TRUE(t && t->n_dims == 2 && t->ne[1] == m[k].n_tokens);
        /* every tensor within the file, sizes consistent */
        uint64_t total = 0;
        for (int64_t i = 0; i < f->n_tensors; i++) total += f->tensors[i].size;
        CHECK_TRUE(total <= f->size - f->data_offset);
        if (k == 0) {
            CHECK_TRUE(t && t->type == QT_Q8_0 && t->ne[0] == 576 && t->offset == 0);
            CHECK_TRUE(f->data_offset == 1785664);
            CHECK_TRUE(t && t->size == 30081024);
            double fb;
            CHECK_TRUE(gguf_get_float(f, "llama.rope.freq_base", &fb) && fb == 100000.0);
            const gguf_value *mg = gguf_get_arr(f, "tokenizer.ggml.merges");
            CHECK_TRUE(mg && mg->arr.n == 48900);
            gguf_str last = gguf_arr_str(tok, 49151);
            CHECK_TRUE(gguf_str_eq(last, "ectable"));
        } else {
            const gguf_value *sc = gguf_get_arr(f, "tokenizer.ggml.scores");
            CHECK_TRUE(sc && sc->arr.type == GGUF_F32 && sc->arr.n == 262144);
            CHECK_TRUE(!gguf_get(f, "tokenizer.chat_template"));
        }
        /* a full deep copy of the header (no tensors) re-parses identically */
        gguf_writer *w = gguf_writer_new();
        for (int64_t i = 0; i < f->n_kv; i++) {
            char kk[1100];
            memcpy(kk, f->kv[i].key.ptr, f->kv[i].key.len);
            kk[f->kv[i].key.len] = 0;
            gguf_w_value(w, kk, &f->kv[i].val);
        }
        uint8_t *mem;
        size_t mn;
        CHECK_TRUE(gguf_writer_to_mem(w, 0, &mem, &mn) == 0);
        gguf_writer_free(w);
        gguf_file *g = gguf_parse(mem, mn);
        CHECK_TRUE(g && g->n_kv == f->n_kv);
        /* kv section bytes equal: from after the 24-byte header to the first tensor info */
        if (g) {
            const uint8_t *fe = (const uint8_t *)f->tensors[0].name.ptr - 8;
            CHECK_TRUE(mn == (size_t)(fe - f->base) &&
                       memcmp(mem + 24, f->base + 24, mn - 24) == 0);
        }
        gguf_close(g);
        free(mem);
        gguf_close(f);
    }
    return found;
}

/* ---- corruption battery ---- */

static int n_rejected, n_accepted;

/* Parse a mutated image: must either fail with a message or parse into
 * something whose accessors are all safe. Returns 1 when it parsed. */
static int try_parse(const uint8_t *img, size_t n) {
    /* copy to an exactly-sized heap block so ASan sees any overread */
    uint8_t *b = malloc(n ? n : 1);
    memcpy(b, img, n);
    err_clear();
    gguf_file *f = gguf_parse(b, n);
    int ok = f != NULL;
    if (f) {
        walk_file(f);
        gguf_close(f);
        n_accepted++;
    } else {
        const char *e = err_get();
        CHECK_TRUE(e && strlen(e) > 6 && strncmp(e, "gguf: ", 6) == 0 &&
                   strcmp(e, "unknown error"));
        n_rejected++;
    }
    free(b);
    return ok;
}

/* Expect rejection; when want != NULL the message must contain it. */
static void expect_fail(const uint8_t *img, size_t n, const char *want, const char *what) {
    int ok = try_parse(img, n);
    CHECK(!ok, "%s: mutated file was accepted", what);
    if (!ok && getenv("BEAST_VERBOSE")) fprintf(stderr, "  %-28s -> %s\n", what, err_get());
    if (!ok && want)
        CHECK(strstr(err_get(), want) != NULL, "%s: message '%s' lacks '%s'", what, err_get(),
              want);
}

static void put32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}

static uint8_t *make_small(size_t *n, size_t alignment) {
    gguf_writer *w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_u32(w, "llama.block_count", 2);
    gguf_w_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", true);
    const char *toks[] = {"<s>", "a", "bc"};
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    int32_t tt[3] = {3, 1, 1};
    gguf_w_arr_i32(w, "tokenizer.ggml.token_type", tt, 3);
    uint8_t bools[2] = {1, 0};
    gguf_w_arr_raw(w, "x.bools", GGUF_BOOL, bools, 2);
    int64_t ne0[2] = {32, 2}, ne1[1] = {8}, ne2[2] = {256, 1};
    uint8_t data[4096];
    rng_bytes(data, sizeof data);
    gguf_w_tensor(w, "blk.0.attn_q.weight", QT_Q8_0, 2, ne0, data);
    gguf_w_tensor(w, "output_norm.weight", QT_F32, 1, ne1, data);
    gguf_w_tensor(w, "blk.1.ffn.weight", QT_Q4_K, 2, ne2, data);
    uint8_t *img = NULL;
    CHECK_TRUE(gguf_writer_to_mem(w, alignment, &img, n) == 0);
    gguf_writer_free(w);
    return img;
}

static size_t off_of(const gguf_file *f, const void *p) {
    return (size_t)((const uint8_t *)p - f->base);
}

static void test_corruption(void) {
    size_t n;
    uint8_t *img = make_small(&n, 0);
    gguf_file *f = gguf_parse(img, n);
    CHECK_TRUE(f != NULL);
    if (!f) return;
    uint8_t *m = malloc(n);
    const size_t hdr_end = off_of(f, f->tensors[f->n_tensors - 1].name.ptr) +
                           f->tensors[f->n_tensors - 1].name.len + 4 + 8 * 2 + 4 + 8;
    size_t data_end = 0;
    for (int64_t i = 0; i < f->n_tensors; i++)
        data_end = MAX(data_end, f->data_offset + f->tensors[i].offset + f->tensors[i].size);

    /* 1. every truncation before the end of the last tensor's data fails */
    for (size_t len = 0; len < data_end; len++) expect_fail(img, len, NULL, "truncation");
    CHECK_TRUE(try_parse(img, data_end)); /* trailing padding is optional */
    expect_fail(img, 0, "too small", "empty");
    expect_fail(img, 10, "too small", "10 bytes");
    expect_fail(img, 30, "cannot fit", "truncated after the counts");
    {
        size_t at = off_of(f, f->tensors[0].name.ptr) + 3;
        CHECK_TRUE(at > 24 + 3 * 33 + 7 * 14); /* past the count plausibility check */
        expect_fail(img, at, "tensor 0: tensor name length 19", "truncated in tensor 0's name");
        at = off_of(f, f->kv[4].key.ptr) + 2;
        expect_fail(img, at, NULL, "truncated in kv 4's key");
    }

    /* 2. byte flips over the whole header region: anything goes but no crash */
    static const uint8_t xors[] = {0x01, 0x80, 0xff, 0x7f, 0x10};
    for (size_t i = 0; i < hdr_end; i++) {
        for (size_t k = 0; k < ARRAY_LEN(xors); k++) {
            memcpy(m, img, n);
            m[i] ^= xors[k];
            try_parse(m, n);
        }
        memcpy(m, img, n);
        m[i] = 0;
        try_parse(m, n);
    }
    /* 8-byte fields overwritten with extreme values at every offset */
    static const uint64_t big[] = {UINT64_MAX, (uint64_t)1 << 63, (uint64_t)1 << 40, 0xffffffffu,
                                   1000000};
    for (size_t i = 0; i + 8 <= hdr_end; i++) {
        for (size_t k = 0; k < ARRAY_LEN(big); k++) {
            memcpy(m, img, n);
            put64(m + i, big[k]);
            try_parse(m, n);
        }
    }
    /* random multi-byte damage */
    for (int it = 0; it < 3000; it++) {
        memcpy(m, img, n);
        int hits = 1 + (int)(rng_u64() % 4);
        for (int h = 0; h < hits; h++) m[rng_u64() % hdr_end] = (uint8_t)rng_u64();
        try_parse(m, n);
    }

    /* 3. targeted mutations with specific messages */
#define MUT(stmt, want, what)                                                                      \
    do {                                                                                           \
        memcpy(m, img, n);                                                                         \
        stmt;                                                                                      \
        expect_fail(m, n, want, what);                                                             \
    } while (0)
    MUT(memcpy(m, "GGML", 4), "not a GGUF file", "magic");
    MUT(put32(m + 4, 1), "version 1 is not supported", "v1");
    MUT(put32(m + 4, 4), "unsupported GGUF version 4", "v4");
    MUT(put32(m + 4, 0x03000000), "big-endian", "big-endian");
    MUT(put64(m + 8, UINT64_MAX), "cannot fit", "tensor count huge");
    MUT(put64(m + 16, (uint64_t)1 << 62), "cannot fit", "kv count huge");
    MUT(put64(m + 16, 1000), NULL, "kv count too large");
    MUT(put64(m + 8, 50), NULL, "tensor count too large");

    /* per-kv fields */
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        size_t klen_at = off_of(f, kv->key.ptr) - 8;
        size_t type_at = off_of(f, kv->key.ptr) + kv->key.len;
        size_t val_at = type_at + 4;
        MUT(put64(m + klen_at, UINT64_MAX), "runs past end of file", "key length huge");
        MUT(put64(m + klen_at, n - klen_at - 7), "runs past end of file", "key length past end");
        MUT(put64(m + klen_at, 0), NULL, "key length 0");
        MUT(m[klen_at + 8] = 0x07, "non-printable", "key control byte");
        MUT(m[klen_at + 8] = 0xc3, "non-printable", "key high byte");
        MUT(put32(m + type_at, 13), "unknown value type 13", "value type 13");
        MUT(put32(m + type_at, 0xffffffffu), "unknown value type", "value type -1");
        if (kv->val.type == GGUF_STRING) {
            MUT(put64(m + val_at, UINT64_MAX), "runs past end of file", "string length huge");
            MUT(put64(m + val_at, n), "runs past end of file", "string length n");
        }
        if (kv->val.type == GGUF_BOOL) MUT(m[val_at] = 2, "not 0 or 1", "bool 2");
        if (kv->val.type == GGUF_ARRAY) {
            MUT(put32(m + val_at, 13), "unknown array element type 13", "array elem type");
            MUT(put64(m + val_at + 4, UINT64_MAX), "cannot fit", "array count huge");
            MUT(put64(m + val_at + 4, (uint64_t)1 << 61), "cannot fit", "array count 2^61");
            if (kv->val.arr.type == GGUF_STRING) {
                size_t s0 = val_at + 12;
                MUT(put64(m + s0, UINT64_MAX), "element 0: string length", "array string huge");
                MUT(put64(m + s0 + 8 + 3, (uint64_t)1 << 40), "element 1: string length",
                    "array string 1 huge");
            }
            if (kv->val.arr.type == GGUF_BOOL)
                MUT(m[val_at + 12 + 1] = 7, "element 1: bool", "bool elem");
        }
    }
    /* duplicate key: give the next 20-byte key the bytes of kv 0's key */
    {
        CHECK_TRUE(f->kv[0].key.len == 20);
        int done = 0;
        for (int64_t i = 1; i < f->n_kv && !done; i++) {
            if (f->kv[i].key.len == 20) {
                MUT(memcpy(m + off_of(f, f->kv[i].key.ptr), f->kv[0].key.ptr, 20),
                    "duplicate key 'general.architecture'", "duplicate key");
                done = 1;
            }
        }
        CHECK_TRUE(done);
    }
    /* alignment key */
    {
        size_t n2;
        uint8_t *img2 = make_small(&n2, 64);
        gguf_file *g = gguf_parse(img2, n2);
        CHECK_TRUE(g && g->alignment == 64);
        const gguf_kv *al = NULL;
        for (int64_t i = 0; g && i < g->n_kv; i++)
            if (gguf_str_eq(g->kv[i].key, "general.alignment")) al = &g->kv[i];
        CHECK_TRUE(al != NULL);
        if (al) {
            size_t at = (size_t)((const uint8_t *)al->key.ptr - img2) + al->key.len;
            uint8_t *m2 = malloc(n2);
#define MUT2(stmt, want, what)                                                                     \
    do {                                                                                           \
        memcpy(m2, img2, n2);                                                                      \
        stmt;                                                                                      \
        expect_fail(m2, n2, want, what);                                                           \
    } while (0)
            MUT2(put32(m2 + at + 4, 0), "not a power of two", "alignment 0");
            MUT2(put32(m2 + at + 4, 48), "general.alignment 48 is not a power of two",
                 "alignment 48");
            MUT2(put32(m2 + at, GGUF_I32), "expected u32", "alignment type");
            /* alignment 128 makes the 64-aligned offsets misaligned */
            MUT2(put32(m2 + at + 4, 128), NULL, "alignment 128");
            /* a smaller power of two is still consistent */
            memcpy(m2, img2, n2);
            put32(m2 + at + 4, 16);
            CHECK_TRUE(try_parse(m2, n2));
            free(m2);
        }
        gguf_close(g);
        free(img2);
    }
    /* per-tensor fields */
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        size_t nlen_at = off_of(f, t->name.ptr) - 8;
        size_t nd_at = off_of(f, t->name.ptr) + t->name.len;
        size_t ne_at = nd_at + 4;
        size_t ty_at = ne_at + 8 * (size_t)t->n_dims;
        size_t off_at = ty_at + 4;
        char nm[64];
        snprintf(nm, sizeof nm, "tensor '%.*s'", (int)t->name.len, t->name.ptr);
        MUT(put64(m + nlen_at, UINT64_MAX), "runs past end of file", "name length huge");
        MUT(m[nlen_at + 8] = 0x01, "non-printable", "name control byte");
        MUT(put64(m + nlen_at, 0), NULL, "name length 0");
        MUT(put32(m + nd_at, 0), "n_dims 0", "n_dims 0");
        MUT(put32(m + nd_at, 5), "n_dims 5", "n_dims 5");
        MUT(put32(m + nd_at, 0xffffffffu), "n_dims", "n_dims -1");
        MUT(put64(m + ne_at, 0), "ne[0] = 0", "ne 0");
        MUT(put64(m + ne_at, UINT64_MAX), "ne[0] = -1", "ne -1");
        MUT(put64(m + ne_at, (uint64_t)1 << 41), "not in 1..2^40", "ne 2^41");
        MUT(put64(m + ne_at, 16), t->type == QT_F32 ? NULL : "not a multiple of the block size",
            "ne0 16");
        MUT(put64(m + ne_at, 1 << 20), NULL, "ne0 large: data runs past end");
        if (t->n_dims == 2) {
            memcpy(m, img, n);
            put64(m + ne_at, 1 << 20);
            put64(m + ne_at + 8, (uint64_t)1 << 21);
            expect_fail(m, n, "exceeds 2^40", "product > 2^40");
        }
        MUT(put32(m + ty_at, 23), "unsupported tensor type 23 in tensor", "type 23");
        MUT(put32(m + ty_at, 1000), "unsupported tensor type 1000", "type 1000");
        MUT(put32(m + ty_at, 0xffffffffu), "unsupported tensor type 4294967295", "type -1");
        MUT(put32(m + ty_at, 4), "unsupported tensor type 4", "type 4 (removed Q4_2)");
        MUT(put64(m + off_at, t->offset + 1), "not a multiple of the alignment 32", "misaligned");
        MUT(put64(m + off_at, t->offset + 16), "not a multiple of the alignment", "misaligned 16");
        MUT(put64(m + off_at, UINT64_MAX - 31), "runs past end of file", "offset huge");
        MUT(put64(m + off_at, (uint64_t)(n - f->data_offset + 32) & ~(uint64_t)31),
            "runs past end of file", "offset past end");
        if (i > 0) {
            MUT(put64(m + off_at, f->tensors[i - 1].offset), "overlap", "overlap with previous");
            /* same name as the previous tensor when lengths agree */
            if (f->tensors[i - 1].name.len == t->name.len)
                MUT(memcpy(m + nlen_at + 8, f->tensors[i - 1].name.ptr, t->name.len),
                    "duplicate tensor name", "duplicate tensor");
        }
    }
    /* brief-style message check on one case */
    {
        const gguf_tensor *t = &f->tensors[0];
        size_t off_at = off_of(f, t->name.ptr) + t->name.len + 4 + 8 * (size_t)t->n_dims + 4;
        memcpy(m, img, n);
        put64(m + off_at, 4096);
        expect_fail(m, n, NULL, "tensor past end");
        char want[256];
        snprintf(want, sizeof want,
                 "gguf: tensor 'blk.0.attn_q.weight': data [offset %zu, size %zu] runs past end "
                 "of file (size %zu)",
                 f->data_offset + 4096, t->size, n);
        CHECK(strcmp(err_get(), want) == 0, "got '%s'", err_get());
    }
    /* duplicate tensor names: a hand-made pair differing in one byte */
    {
        gguf_writer *w = gguf_writer_new();
        int64_t ne[1] = {4};
        float d[4] = {1, 2, 3, 4};
        gguf_w_tensor(w, "aaaa", QT_F32, 1, ne, d);
        gguf_w_tensor(w, "aaab", QT_F32, 1, ne, d);
        uint8_t *im;
        size_t in;
        CHECK_TRUE(gguf_writer_to_mem(w, 0, &im, &in) == 0);
        gguf_writer_free(w);
        for (size_t i = 0; i + 4 <= in; i++) {
            if (memcmp(im + i, "aaab", 4) == 0) {
                im[i + 3] = 'a';
                break;
            }
        }
        expect_fail(im, in, "duplicate tensor name 'aaaa'", "duplicate tensor");
        free(im);
    }
    gguf_close(f);
    free(m);
    free(img);

    /* 4. hand-built nesting: 8 levels parse, 9 do not; empty/odd keys */
    for (int levels = 8; levels <= 40; levels += 1) {
        uint8_t b[1024];
        size_t k = 0;
        memcpy(b, "GGUF", 4);
        put32(b + 4, 3);
        put64(b + 8, 0);
        put64(b + 16, 1);
        k = 24;
        put64(b + k, 1), k += 8;
        b[k++] = 'a';
        put32(b + k, GGUF_ARRAY), k += 4;
        for (int l = 1; l < levels; l++) {
            put32(b + k, GGUF_ARRAY), k += 4;
            put64(b + k, 1), k += 8;
        }
        put32(b + k, GGUF_U8), k += 4;
        put64(b + k, 1), k += 8;
        b[k++] = 42;
        if (levels == 8) {
            CHECK(try_parse(b, k), "%s", err_get());
        } else {
            expect_fail(b, k, "nested deeper than 8", "nesting");
            if (levels > 12) break;
        }
    }
    {
        /* a kv of 2^20 empty nested arrays costs one allocation and stays bounded */
        size_t cnt = 1 << 16, sz = 24 + 9 + 4 + 12 + cnt * 12;
        uint8_t *b = calloc(1, sz);
        memcpy(b, "GGUF", 4);
        put32(b + 4, 3);
        put64(b + 16, 1);
        size_t k = 24;
        put64(b + k, 1), k += 8;
        b[k++] = 'a';
        put32(b + k, GGUF_ARRAY), k += 4;
        put32(b + k, GGUF_ARRAY), k += 4;
        put64(b + k, cnt), k += 8;
        for (size_t i = 0; i < cnt; i++) {
            put32(b + k, GGUF_STRING), k += 4;
            put64(b + k, 0), k += 8;
        }
        CHECK_TRUE(k == sz && try_parse(b, sz));
        put64(b + 24 + 9 + 8, cnt + 1);
        expect_fail(b, sz, "cannot fit", "nested count one too many");
        free(b);
    }
    fprintf(stderr, "corruption battery: %d rejected, %d accepted (harmless mutations)\n",
            n_rejected, n_accepted);
}

/* ---- fuzzer seed corpus ---- */

static int gen_corpus(const char *dir) {
    mkdir(dir, 0755);
    char path[1024];
    int k = 0;
    for (size_t ai = 0; ai < 2; ai++) {
        size_t n;
        uint8_t *img = make_small(&n, ai ? 64 : 0);
        snprintf(path, sizeof path, "%s/small%zu.gguf", dir, ai);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(img, 1, n, fp) != n) return 1;
        fclose(fp);
        free(img);
        k++;
    }
    ref_data r;
    nested nn;
    ref_init(&r);
    nested_init(&nn, &r);
    for (int i = 0; i < r.n_t; i++) { /* keep the seed small */
        r.t[i].n_dims = 1;
        r.t[i].ne[1] = r.t[i].ne[2] = r.t[i].ne[3] = 1;
        r.t[i].ne[0] = quant_get(r.t[i].type)->block;
    }
    gguf_writer *w = gguf_writer_new();
    write_ref(w, &r, &nn);
    snprintf(path, sizeof path, "%s/alltypes.gguf", dir);
    if (gguf_writer_save(w, path, 0) != 0) return 1;
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_w_value(w, "n", &nn.outer);
    gguf_w_u32(w, "general.alignment", 8);
    snprintf(path, sizeof path, "%s/kvonly.gguf", dir);
    if (gguf_writer_save(w, path, 0) != 0) return 1;
    gguf_writer_free(w);
    ref_free(&r);
    fprintf(stderr, "wrote %d seed files to %s\n", k + 2, dir);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--gen-corpus") == 0) return gen_corpus(argv[2]);
    check_seed();
    test_roundtrip();
    int models = test_models();
    test_corruption();
    if (!models) printf("real models absent: skipped that part\n");
    return check_done();
}
