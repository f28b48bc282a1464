/* quant.c: the tensor type traits table, the plain float types (F32, F16,
 * BF16), and the generic block loops that dequantize / dot any quantized
 * type through its unpack function (see quant_impl.h). The quantized types
 * themselves live in quant_legacy.c (Q4_0..Q8_1) and quant_k.c (Q2_K..Q8_K). */
#include "quant/quant.h"

#include "quant/quant_impl.h"
#include "util/util.h"

/* ---- F32 ---- */

static void dequant_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void quant_f32(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static float dot_f32(const void *row, const float *x, int64_t n) {
    const uint8_t *p = row;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        float w;
        memcpy(&w, p + 4 * i, 4); /* the row may not be 4-byte aligned */
        sum += (double)w * x[i];
    }
    return (float)sum;
}

/* ---- F16 (IEEE half) ---- */

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = quant_rdf16(p + 2 * i);
}

static void quant_f16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) quant_wr16(p + 2 * i, f32_to_fp16(src[i]));
}

static float dot_f16(const void *row, const float *x, int64_t n) {
    const uint8_t *p = row;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)quant_rdf16(p + 2 * i) * x[i];
    return (float)sum;
}

/* ---- BF16 (top half of an f32) ---- */

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(quant_rd16(p + 2 * i));
}

static void quant_bf16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) quant_wr16(p + 2 * i, f32_to_bf16(src[i]));
}

static float dot_bf16(const void *row, const float *x, int64_t n) {
    const uint8_t *p = row;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)bf16_to_f32(quant_rd16(p + 2 * i)) * x[i];
    return (float)sum;
}

/* ---- generic block loops ---- */

void quant_dequant_blocks(const quant_format *f, const void *src, float *dst, int64_t n) {
    const uint8_t *blk = src;
    quant_block u;
    for (int64_t i = 0; i < n; i += f->block, blk += f->bytes, dst += f->block) {
        f->unpack(blk, &u);
        for (int e = 0; e < f->block; e++) {
            int s = e / f->sub;
            dst[e] = u.scale[s] * (float)u.q[e] - u.min[s];
        }
    }
}

float quant_dot_blocks(const quant_format *f, const void *row, const float *x, int64_t n) {
    const uint8_t *blk = row;
    quant_block u;
    double sum = 0;
    for (int64_t i = 0; i < n; i += f->block, blk += f->bytes, x += f->block) {
        f->unpack(blk, &u);
        for (int s = 0; s < f->block / f->sub; s++) {
            double sum_qx = 0, sum_x = 0;
            for (int e = s * f->sub; e < (s + 1) * f->sub; e++) {
                sum_qx += (double)u.q[e] * x[e];
                sum_x += x[e];
            }
            sum += (double)u.scale[s] * sum_qx - (double)u.min[s] * sum_x;
        }
    }
    return (float)sum;
}

/* ---- the table ---- */

#define ROW(t) quant_dequant_##t, quant_quant_##t, quant_dot_##t

static const quant_traits table[QT_COUNT] = {
    [QT_F32] = {"F32", 1, 4, dequant_f32, quant_f32, dot_f32},
    [QT_F16] = {"F16", 1, 2, dequant_f16, quant_f16, dot_f16},
    [QT_Q4_0] = {"Q4_0", 32, 18, ROW(q4_0)},
    [QT_Q4_1] = {"Q4_1", 32, 20, ROW(q4_1)},
    [QT_Q5_0] = {"Q5_0", 32, 22, ROW(q5_0)},
    [QT_Q5_1] = {"Q5_1", 32, 24, ROW(q5_1)},
    [QT_Q8_0] = {"Q8_0", 32, 34, ROW(q8_0)},
    [QT_Q8_1] = {"Q8_1", 32, 36, ROW(q8_1)},
    [QT_Q2_K] = {"Q2_K", QK_K, 84, ROW(q2_k)},
    [QT_Q3_K] = {"Q3_K", QK_K, 110, ROW(q3_k)},
    [QT_Q4_K] = {"Q4_K", QK_K, 144, ROW(q4_k)},
    [QT_Q5_K] = {"Q5_K", QK_K, 176, ROW(q5_k)},
    [QT_Q6_K] = {"Q6_K", QK_K, 210, ROW(q6_k)},
    [QT_Q8_K] = {"Q8_K", QK_K, 292, ROW(q8_k)},
    [QT_I8] = {"I8", 1, 1, NULL, NULL, NULL},
    [QT_I16] = {"I16", 1, 2, NULL, NULL, NULL},
    [QT_I32] = {"I32", 1, 4, NULL, NULL, NULL},
    [QT_I64] = {"I64", 1, 8, NULL, NULL, NULL},
    [QT_F64] = {"F64", 1, 8, NULL, NULL, NULL},
    [QT_BF16] = {"BF16", 1, 2, dequant_bf16, quant_bf16, dot_bf16},
};

/* ggml ids that exist but that we do not implement: names for messages only. */
static const char *unknown_name(int type) {
    switch (type) {
    case 4:
        return "Q4_2 (removed)";
    case 5:
        return "Q4_3 (removed)";
    case 16:
        return "IQ2_XXS";
    case 17:
        return "IQ2_XS";
    case 18:
        return "IQ3_XXS";
    case 19:
        return "IQ1_S";
    case 20:
        return "IQ4_NL";
    case 21:
        return "IQ3_S";
    case 22:
        return "IQ2_S";
    case 23:
        return "IQ4_XS";
    case 29:
        return "IQ1_M";
    case 34:
        return "TQ1_0";
    case 35:
        return "TQ2_0";
    case 39:
        return "MXFP4";
    default:
        return "unknown";
    }
}

const quant_traits *quant_get(int type) {
    if (type >= 0 && type < QT_COUNT && table[type].name) return &table[type];
    err_set("tensor type %d (%s) is not supported", type, unknown_name(type));
    return NULL;
}

size_t quant_row_size(int type, int64_t n) {
    const quant_traits *t = quant_get(type);
    if (!t) return 0;
    if (n < 0 || n % t->block != 0) {
        err_set("%lld elements is not a whole number of %s blocks (%d)", (long long)n, t->name,
                t->block);
        return 0;
    }
    uint64_t blocks = (uint64_t)(n / t->block);
    if (blocks > SIZE_MAX / (uint64_t)t->bytes) {
        err_set("%lld elements of %s overflow a size", (long long)n, t->name);
        return 0;
    }
    return (size_t)blocks * (size_t)t->bytes;
}

int quant_supported(int type) {
    if (type < 0 || type >= QT_COUNT) return 0;
    const quant_traits *t = &table[type];
    return t->name && t->dequant && t->dot;
}
