/* quant.h: tensor element types and their traits table.
 *
 * One row per type (ggml's numbering, as stored in GGUF files): block size,
 * bytes per block, and the reference (scalar C) conversions. Fast SIMD or GPU
 * kernels live with their backend and are tested against these rows.
 * Code that needs a per-type behaviour looks it up here instead of switching
 * on the type. */
#ifndef BEAST_QUANT_H
#define BEAST_QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15,
    QT_I8 = 24,
    QT_I16 = 25,
    QT_I32 = 26,
    QT_I64 = 27,
    QT_F64 = 28,
    QT_BF16 = 30,
    QT_COUNT = 40 /* table size; ids >= this are unknown */
} quant_type;

typedef struct {
    const char *name; /* "Q4_K" */
    int block;        /* elements per block (1 for plain types) */
    int bytes;        /* bytes per block */
    /* Reference conversions; n is a multiple of block. NULL where the engine
     * does not compute with the type (e.g. the integer types): such a type can
     * be stored in a file but a model using it is rejected. */
    void (*dequant)(const void *src, float *dst, int64_t n);
    void (*quant)(const float *src, void *dst, int64_t n);
    /* Reference dot product of one quantized row with an f32 vector:
     * sum_i dequant(row)[i] * x[i], accumulated in double. */
    float (*dot)(const void *row, const float *x, int64_t n);
} quant_traits;

/* The row for a type id read from a file, or NULL when the id is unknown
 * (not a ggml type id at all, or one of the ids we do not know). */
const quant_traits *quant_get(int type);

/* Bytes of n elements of the type; n must be a multiple of the block size.
 * Returns 0 for unknown types or a non-multiple n. */
size_t quant_row_size(int type, int64_t n);

/* True when the engine can compute with this type (dequant/dot present). */
int quant_supported(int type);

#endif
