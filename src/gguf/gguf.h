/* gguf.h: the GGUF container (v2 and v3): a validating reader over an mmapped
 * file (or any memory buffer) and a writer.
 *
 * Reader: gguf_open() maps the file and checks everything before any use:
 * counts, string lengths, nesting, tensor shapes, types, offsets and sizes
 * against the file size and sane limits. Any problem -> NULL and one clear
 * err_set() line naming what is wrong. Nothing is copied: strings and tensor
 * data point into the mapping (strings are NOT NUL-terminated).
 *
 * Writer: collect key/values and tensors, then gguf_writer_save(). */
#ifndef BEAST_GGUF_H
#define BEAST_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_NTYPES
} gguf_vtype;

typedef struct {
    uint64_t len;
    const char *ptr; /* into the mapping; not NUL-terminated */
} gguf_str;

typedef struct gguf_value {
    gguf_vtype type;
    union {
        uint64_t u;   /* U8, U16, U32, U64, BOOL (0/1) */
        int64_t i;    /* I8, I16, I32, I64 */
        double f;     /* F32, F64 */
        gguf_str str; /* STRING */
        struct {
            gguf_vtype type;          /* element type */
            uint64_t n;               /* element count */
            const uint8_t *raw;       /* scalar elements: n packed little-endian values */
            struct gguf_value *items; /* STRING or ARRAY elements: n parsed values */
        } arr;
    };
} gguf_value;

typedef struct {
    gguf_str key;
    gguf_value val;
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct {
    gguf_str name;
    int type; /* quant_type id */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    uint64_t offset;           /* relative to the data section */
    size_t size;               /* bytes */
    const void *data;          /* into the mapping */
} gguf_tensor;

typedef struct {
    uint32_t version;
    const uint8_t *base; /* start of the file image */
    size_t size;
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    gguf_tensor *tensors;
    size_t alignment;
    size_t data_offset; /* start of the tensor data section */
    int mapped;         /* 1 when base is our mmap (unmapped on close) */
} gguf_file;

/* Open and validate a file (mmap, read-only). NULL + err_set() on failure. */
gguf_file *gguf_open(const char *path);
/* Parse a buffer the caller owns and keeps alive (fuzzer, tests). */
gguf_file *gguf_parse(const void *buf, size_t size);
void gguf_close(gguf_file *f);

/* Look-ups; NULL / false when absent or of an incompatible type. */
const gguf_value *gguf_get(const gguf_file *f, const char *key);
bool gguf_get_int(const gguf_file *f, const char *key, int64_t *out); /* any integer type or bool */
bool gguf_get_float(const gguf_file *f, const char *key, double *out); /* F32/F64 or integer */
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* An array value (any element type), or NULL. */
const gguf_value *gguf_get_arr(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Array element access; i < arr.n is the caller's job. */
int64_t gguf_arr_int(const gguf_value *arr, uint64_t i);
double gguf_arr_float(const gguf_value *arr, uint64_t i);
gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i);

bool gguf_str_eq(gguf_str s, const char *c);
const char *gguf_vtype_name(gguf_vtype t);

/* ---- writer ---- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Setting a key twice replaces the value. Strings are copied. */
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_w_f32(gguf_writer *w, const char *key, float v);
void gguf_w_bool(gguf_writer *w, const char *key, bool v);
void gguf_w_str(gguf_writer *w, const char *key, const char *v);
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Deep-copy a value read from another file (any type, nested arrays too). */
void gguf_w_value(gguf_writer *w, const char *key, const gguf_value *v);
/* Add a tensor; data (size = quant_row_size(type, ne0) * rows) is copied. */
int gguf_w_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                  const void *data);
/* Write version 3 with the given alignment (0 = 32). 0 ok, -1 + err_set(). */
int gguf_writer_save(gguf_writer *w, const char *path, size_t alignment);

/* Additions to the writer. The remaining scalar types: */
void gguf_w_u8(gguf_writer *w, const char *key, uint8_t v);
void gguf_w_i8(gguf_writer *w, const char *key, int8_t v);
void gguf_w_u16(gguf_writer *w, const char *key, uint16_t v);
void gguf_w_i16(gguf_writer *w, const char *key, int16_t v);
void gguf_w_i64(gguf_writer *w, const char *key, int64_t v);
void gguf_w_f64(gguf_writer *w, const char *key, double v);
/* A string of n bytes (may hold NULs or invalid UTF-8). */
void gguf_w_strn(gguf_writer *w, const char *key, const char *v, uint64_t n);
/* An array of n packed little-endian scalars of element type elem (not
 * STRING/ARRAY). */
void gguf_w_arr_raw(gguf_writer *w, const char *key, gguf_vtype elem, const void *v, uint64_t n);
/* Like gguf_writer_save but into a malloc'd buffer (*out, *size; caller
 * frees). Setters that failed (bad key, invalid value, out of memory) make
 * both save functions fail with that first error. When alignment is 0 an
 * existing u32 "general.alignment" key is used, else 32; a non-default
 * alignment is always recorded in "general.alignment". */
int gguf_writer_to_mem(gguf_writer *w, size_t alignment, uint8_t **out, size_t *size);

#endif
