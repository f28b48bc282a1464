/* gguf_bytes.h: the byte level shared by the GGUF reader (gguf.c) and writer
 * (gguf_write.c), internal to src/gguf: little-endian loads and stores of
 * 16/32/64-bit words at unaligned addresses, the size of each scalar value
 * type, and the one conversion each way between a scalar's bytes and a
 * gguf_value.
 *
 * GGUF is little-endian; so is every host beast supports, so a load or store
 * is a memcpy (the compiler emits one move). */
#ifndef BEAST_GGUF_BYTES_H
#define BEAST_GGUF_BYTES_H

#include "gguf/gguf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_bytes.h: GGUF is read and written in host byte order, which must be little-endian"
#endif

static inline uint16_t gguf_rd_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t gguf_rd_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t gguf_rd_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void gguf_wr_u16(uint8_t *p, uint16_t v) {
    memcpy(p, &v, 2);
}
static inline void gguf_wr_u32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static inline void gguf_wr_u64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}

/* Bytes of one value of a scalar type; 0 for STRING, ARRAY and unknown. */
static inline size_t gguf_scalar_size(gguf_vtype t) {
    switch (t) {
    case GGUF_U8:
    case GGUF_I8:
    case GGUF_BOOL:
        return 1;
    case GGUF_U16:
    case GGUF_I16:
        return 2;
    case GGUF_U32:
    case GGUF_I32:
    case GGUF_F32:
        return 4;
    case GGUF_U64:
    case GGUF_I64:
    case GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

/* The scalar of type v->type at p into v's u (unsigned, BOOL as 0/1), i
 * (signed, sign-extended) or f (F32 widened). v is untouched for a type that
 * is not a scalar. */
static inline void gguf_scalar_decode(gguf_value *v, const uint8_t *p) {
    uint64_t x;
    switch (gguf_scalar_size(v->type)) {
    case 1:
        x = p[0];
        break;
    case 2:
        x = gguf_rd_u16(p);
        break;
    case 4:
        x = gguf_rd_u32(p);
        break;
    case 8:
        x = gguf_rd_u64(p);
        break;
    default:
        return;
    }
    switch (v->type) {
    case GGUF_BOOL:
        v->u = x != 0;
        break;
    case GGUF_I8:
        v->i = (int8_t)x;
        break;
    case GGUF_I16:
        v->i = (int16_t)x;
        break;
    case GGUF_I32:
        v->i = (int32_t)x;
        break;
    case GGUF_I64:
        v->i = (int64_t)x;
        break;
    case GGUF_F32: {
        uint32_t b = (uint32_t)x;
        float f;
        memcpy(&f, &b, 4);
        v->f = f;
        break;
    }
    case GGUF_F64:
        memcpy(&v->f, &x, 8);
        break;
    default: /* U8, U16, U32, U64 */
        v->u = x;
        break;
    }
}

/* The reverse: v (a scalar type) as its gguf_scalar_size(v->type) bytes at
 * p, integers truncated to the type's width, F32 rounded from the double.
 * Returns the byte count (0, writing nothing, for a non-scalar type). */
static inline size_t gguf_scalar_encode(const gguf_value *v, uint8_t *p) {
    uint64_t x;
    switch (v->type) {
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        x = (uint64_t)v->i;
        break;
    case GGUF_F32: {
        float f = (float)v->f;
        uint32_t b;
        memcpy(&b, &f, 4);
        x = b;
        break;
    }
    case GGUF_F64:
        memcpy(&x, &v->f, 8);
        break;
    default: /* U8, U16, U32, U64, BOOL */
        x = v->u;
        break;
    }
    size_t n = gguf_scalar_size(v->type);
    switch (n) {
    case 1:
        p[0] = (uint8_t)x;
        break;
    case 2:
        gguf_wr_u16(p, (uint16_t)x);
        break;
    case 4:
        gguf_wr_u32(p, (uint32_t)x);
        break;
    case 8:
        gguf_wr_u64(p, x);
        break;
    default:
        break;
    }
    return n;
}

#endif
