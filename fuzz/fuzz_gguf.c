/* fuzz_gguf.c: libFuzzer target for the GGUF reader and writer. Parses the
 * input; when it is accepted, walks every key/value and tensor accessor
 * (touching all tensor bytes' ends), then checks the writer property: copying
 * every kv (gguf_w_value) and tensor into a writer must produce a file that
 * parses, and copying that again must give the identical bytes. */
#include "gguf/gguf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_gguf: property failed: %s (%s)\n", #c, err_get());               \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

static volatile uint64_t sink;

static void cstr(char *dst, gguf_str s) {
    memcpy(dst, s.ptr, s.len); /* names are <= 1024 bytes */
    dst[s.len] = 0;
}

static uint64_t walk_value(const gguf_value *v) {
    uint64_t h = (uint64_t)v->type;
    switch (v->type) {
    case GGUF_STRING:
        if (v->str.len) h += (uint8_t)v->str.ptr[0] + (uint8_t)v->str.ptr[v->str.len - 1];
        break;
    case GGUF_ARRAY:
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.type == GGUF_ARRAY) {
                REQUIRE(v->arr.items[i].type == GGUF_ARRAY);
                h += walk_value(&v->arr.items[i]);
            } else if (v->arr.type == GGUF_STRING) {
                gguf_str s = gguf_arr_str(v, i);
                h += s.len + (s.len ? (uint8_t)s.ptr[s.len - 1] : 0);
            } else {
                double d = gguf_arr_float(v, i);
                uint64_t bits;
                memcpy(&bits, &d, 8);
                h += (uint64_t)gguf_arr_int(v, i) + bits;
            }
        }
        break;
    default:
        h += v->u;
        break;
    }
    return h;
}

static gguf_writer *copy(const gguf_file *f) {
    static char name[1100];
    gguf_writer *w = gguf_writer_new();
    REQUIRE(w);
    for (int64_t i = 0; i < f->n_kv; i++) {
        cstr(name, f->kv[i].key);
        gguf_w_value(w, name, &f->kv[i].val);
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        cstr(name, t->name);
        REQUIRE(gguf_w_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == 0);
    }
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = gguf_parse(data, size);
    if (!f) {
        REQUIRE(strncmp(err_get(), "gguf: ", 6) == 0);
        return 0;
    }
    static char name[1100];
    uint64_t h = 0;
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        cstr(name, kv->key);
        REQUIRE(gguf_get(f, name) == &kv->val);
        int64_t iv;
        double dv;
        bool bv;
        gguf_str sv;
        h += gguf_get_int(f, name, &iv) ? (uint64_t)iv : 0;
        h += gguf_get_float(f, name, &dv) ? (uint64_t)(dv == dv) : 0; /* NaN-safe */
        h += gguf_get_bool(f, name, &bv) ? bv : 0;
        h += gguf_get_str(f, name, &sv) ? sv.len : 0;
        h += gguf_get_arr(f, name) ? 1 : 0;
        h += walk_value(&kv->val);
        h += (uint64_t)strlen(gguf_vtype_name(kv->val.type));
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        cstr(name, t->name);
        REQUIRE(gguf_find_tensor(f, name) == t);
        REQUIRE(t->size > 0 && (const uint8_t *)t->data >= data &&
                (const uint8_t *)t->data + t->size <= data + size);
        h += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->size - 1];
    }
    sink = h;

    /* writer round trip */
    gguf_writer *w = copy(f);
    uint8_t *a = NULL, *b = NULL;
    size_t an = 0, bn = 0;
    REQUIRE(gguf_writer_to_mem(w, 0, &a, &an) == 0);
    gguf_writer_free(w);
    gguf_file *g = gguf_parse(a, an);
    REQUIRE(g != NULL);
    REQUIRE(g->n_kv == f->n_kv && g->n_tensors == f->n_tensors && g->alignment == f->alignment);
    w = copy(g);
    REQUIRE(gguf_writer_to_mem(w, 0, &b, &bn) == 0);
    gguf_writer_free(w);
    REQUIRE(an == bn && memcmp(a, b, an) == 0);
    gguf_close(g);
    free(a);
    free(b);
    gguf_close(f);
    return 0;
}
