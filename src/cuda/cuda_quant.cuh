/* cuda_quant.cuh: device-side decoding of every weight type the engine
 * computes with (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K),
 * shared by the mat-vec, dequantize and embedding kernels (and dev/cuda).
 *
 * The bytes are ggml's block layouts, exactly as in the GGUF file (see
 * src/quant/quant_legacy.c and quant_k.c for the layouts). Each block is cut
 * into PARTS "parts" of 32 weights; a part is 4 "runs" of 8 consecutive
 * elements, and every run lies inside one sub-block, so it has one scale and
 * one min. A thread handles one part:
 *
 *   Raw r = T::load(block, p);            all the bytes the part needs, with
 *                                          the widest loads the block's
 *                                          alignment allows (16 B for Q4_K,
 *                                          Q5_K, F32/F16/BF16; 4 B for Q4_1,
 *                                          Q5_1, Q2_K; 2 B for the others)
 *   cq_run<TYPE>(r, p, g, q, sc, mn);      run g (0..3): q[0..8) as floats and
 *                                          the run's scale and min, so that
 *                                          weight i = sc * q[i] - mn
 *   T::runu(r, p, g, u0, u1, sc, mn)       (integer types) the run's codes as
 *                                          8 unsigned bytes u, q = u - T::ZP
 *   T::off(p, g)                            element offset of run g in the block
 *
 * Small integers become floats without a conversion instruction: a byte u
 * placed in the low mantissa of 2^23 (one PRMT) is the float 2^23 + u, and
 * one FADD removes 2^23 and the type's zero point exactly.
 *
 * The float types use virtual blocks of 32 elements (1 part), so they need
 * cols % 32 == 0; kernels fall back to a plain loop otherwise. */
#ifndef BEAST_CUDA_QUANT_CUH
#define BEAST_CUDA_QUANT_CUH

#ifndef CQ_HOST_EMULATION /* dev/cuda/decode_host_check.cpp runs these on the CPU */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#include <stdint.h>

#define CQ_DEV static __device__ __forceinline__

/* ggml type ids (quant.h's quant_type) */
enum {
    CQ_F32 = 0,
    CQ_F16 = 1,
    CQ_Q4_0 = 2,
    CQ_Q4_1 = 3,
    CQ_Q5_0 = 6,
    CQ_Q5_1 = 7,
    CQ_Q8_0 = 8,
    CQ_Q2_K = 10,
    CQ_Q3_K = 11,
    CQ_Q4_K = 12,
    CQ_Q5_K = 13,
    CQ_Q6_K = 14,
    CQ_BF16 = 30,
};

/* ---- loads (weights are read-only for the kernel's lifetime) ---- */
CQ_DEV uint32_t cq_ld16(const uint8_t *p) {
    return __ldg((const unsigned short *)p);
}
CQ_DEV uint32_t cq_ld32(const uint8_t *p) {
    return __ldg((const unsigned int *)p);
}
/* 32 bits from a 2-byte aligned address */
CQ_DEV uint32_t cq_ld32a2(const uint8_t *p) {
    const unsigned short *s = (const unsigned short *)p;
    return (uint32_t)__ldg(s) | ((uint32_t)__ldg(s + 1) << 16);
}
CQ_DEV uint4 cq_ld128(const uint8_t *p) {
    return __ldg((const uint4 *)p);
}

#define CQ_MAGIC_ 8388608.0f
CQ_DEV float cq_h2f(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffff)));
}

/* 2^23 + byte k of w, as a float */
CQ_DEV float cq_bytef(uint32_t w, int k) {
    return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | (unsigned)k));
}
/* 8 bytes (two words) to floats, minus 2^23 + zero point */
CQ_DEV void cq_bytes8(uint32_t w0, uint32_t w1, float magic, float q[8]) {
#pragma unroll
    for (int k = 0; k < 4; k++) {
        q[k] = cq_bytef(w0, k) - magic;
        q[4 + k] = cq_bytef(w1, k) - magic;
    }
}
/* a small unsigned integer (< 2^23) as a float, without I2F */
CQ_DEV float cq_u2f(uint32_t v) {
    return __uint_as_float(0x4B000000u | v) - CQ_MAGIC_;
}
/* bit i of x (i < 4) to bit 0 of byte i */
CQ_DEV uint32_t cq_spread4(uint32_t x) {
    return ((x & 0xf) * 0x00204081u) & 0x01010101u;
}

#define CQ_MAGIC 8388608.0f

/* ---- float types ---- */
template <int TYPE> struct cq_type;

template <> struct cq_type<CQ_F32> {
    static constexpr int QK = 32, BYTES = 128, PARTS = 1;
    static constexpr bool INT = false;
    static constexpr int UBITS = 32; /* (not integer codes) */
    static constexpr float ZP = 0.0f;
    static constexpr bool HAS_MIN = false;
    struct Raw {
        float4 v[8];
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        (void)p;
        Raw r;
#pragma unroll
        for (int i = 0; i < 8; i++) r.v[i] = __ldg((const float4 *)b + i);
        return r;
    }
    CQ_DEV int off(int p, int g) {
        return (void)p, 8 * g;
    }
    CQ_DEV void run(const Raw &r, int p, int g, float q[8], float &sc, float &mn) {
        (void)p;
        float4 a = r.v[2 * g], c = r.v[2 * g + 1];
        q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w;
        q[4] = c.x, q[5] = c.y, q[6] = c.z, q[7] = c.w;
        sc = 1.0f, mn = 0.0f;
    }
};

template <> struct cq_type<CQ_F16> {
    static constexpr int QK = 32, BYTES = 64, PARTS = 1;
    static constexpr bool INT = false;
    static constexpr int UBITS = 32; /* (not integer codes) */
    static constexpr float ZP = 0.0f;
    static constexpr bool HAS_MIN = false;
    struct Raw {
        uint4 v[4];
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        (void)p;
        Raw r;
#pragma unroll
        for (int i = 0; i < 4; i++) r.v[i] = cq_ld128(b + 16 * i);
        return r;
    }
    CQ_DEV int off(int p, int g) {
        return (void)p, 8 * g;
    }
    CQ_DEV void run(const Raw &r, int p, int g, float q[8], float &sc, float &mn) {
        (void)p;
        uint32_t w[4] = {r.v[g].x, r.v[g].y, r.v[g].z, r.v[g].w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __half22float2(*(const __half2 *)&w[k]);
            q[2 * k] = f.x, q[2 * k + 1] = f.y;
        }
        sc = 1.0f, mn = 0.0f;
    }
};

template <> struct cq_type<CQ_BF16> {
    static constexpr int QK = 32, BYTES = 64, PARTS = 1;
    static constexpr bool INT = false;
    static constexpr int UBITS = 32; /* (not integer codes) */
    static constexpr float ZP = 0.0f;
    static constexpr bool HAS_MIN = false;
    using Raw = cq_type<CQ_F16>::Raw;
    CQ_DEV Raw load(const uint8_t *b, int p) { return cq_type<CQ_F16>::load(b, p); }
    CQ_DEV int off(int p, int g) { return (void)p, 8 * g; }
    CQ_DEV void run(const Raw &r, int p, int g, float q[8], float &sc, float &mn) {
        (void)p;
        uint32_t w[4] = {r.v[g].x, r.v[g].y, r.v[g].z, r.v[g].w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q[2 * k] = __uint_as_float(w[k] << 16);
            q[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
        sc = 1.0f, mn = 0.0f;
    }
};

/* ---- 32-element block types: one part per block, run g = elements 8g.. ---- */

/* low (g < 2) or high (g >= 2) nibbles of bytes 8(g&1)..8(g&1)+7 of 16 qs bytes */
CQ_DEV void cq_nib_run(const uint32_t qs[4], int g, uint32_t &w0, uint32_t &w1) {
    int sh = (g >> 1) * 4;
    w0 = (qs[2 * (g & 1)] >> sh) & 0x0f0f0f0fu;
    w1 = (qs[2 * (g & 1) + 1] >> sh) & 0x0f0f0f0fu;
}

/* Q5: the 5th bits of elements 8g..8g+7 (bits of qh) into bit 4 of each byte */
CQ_DEV void cq_q5_run(const uint32_t qs[4], uint32_t qh, int g, uint32_t &w0, uint32_t &w1) {
    cq_nib_run(qs, g, w0, w1);
    uint32_t hb = qh >> (8 * g);
    w0 |= cq_spread4(hb) << 4;
    w1 |= cq_spread4(hb >> 4) << 4;
}

/* The five types share one layout: an f16 scale d (Q4_0, Q5_0, Q8_0) or f16
 * d and m in one word (Q4_1, Q5_1); for Q5 a word of 5th bits; then the codes
 * (16 bytes of nibbles, or 32 int8 for Q8_0). After a 2-byte header the
 * words are only 2-byte aligned. Without a min the codes are symmetric,
 * q = u - ZP with ZP = 2^(UBITS-1); with one, weight = d u + m. */
template <bool QH, int NQS> struct cq_legacy_raw {
    uint32_t d, qh, qs[NQS]; /* d: d (f16), or d | m << 16 */
};
template <int NQS> struct cq_legacy_raw<false, NQS> { uint32_t d, qs[NQS]; };

template <int UBITS_, bool MIN_> struct cq_legacy {
    static constexpr bool QH = UBITS_ == 5;         /* a word of 5th bits */
    static constexpr int HDR = MIN_ ? 4 : 2;        /* bytes of d, or of d and m */
    static constexpr int NQS = UBITS_ == 8 ? 8 : 4; /* words of codes */
    static constexpr int QK = 32, BYTES = HDR + (QH ? 4 : 0) + 4 * NQS, PARTS = 1;
    static constexpr bool INT = true;
    static constexpr int UBITS = UBITS_; /* bits of the unsigned codes u */
    static constexpr float ZP = MIN_ ? 0.0f : (float)(1 << (UBITS_ - 1)); /* q = u - ZP */
    static constexpr bool HAS_MIN = MIN_;
    using Raw = cq_legacy_raw<QH, NQS>;
    CQ_DEV uint32_t ld(const uint8_t *p) { return MIN_ ? cq_ld32(p) : cq_ld32a2(p); }
    CQ_DEV Raw load(const uint8_t *b, int p) {
        (void)p;
        Raw r;
        r.d = MIN_ ? cq_ld32(b) : cq_ld16(b);
        if constexpr (QH) r.qh = ld(b + HDR);
        const uint8_t *qs = b + HDR + (QH ? 4 : 0);
#pragma unroll
        for (int i = 0; i < NQS; i++) r.qs[i] = ld(qs + 4 * i);
        return r;
    }
    CQ_DEV int off(int p, int g) {
        return (void)p, 8 * g;
    }
    CQ_DEV void runu(const Raw &r, int p, int g, uint32_t &u0, uint32_t &u1, float &sc, float &mn) {
        (void)p;
        if constexpr (UBITS_ == 8) {
            /* int8 + 128 is the unsigned byte with its top bit flipped */
            u0 = r.qs[2 * g] ^ 0x80808080u;
            u1 = r.qs[2 * g + 1] ^ 0x80808080u;
        } else if constexpr (QH) {
            cq_q5_run(r.qs, r.qh, g, u0, u1);
        } else {
            cq_nib_run(r.qs, g, u0, u1);
        }
        sc = cq_h2f(r.d), mn = MIN_ ? -cq_h2f(r.d >> 16) : 0.0f;
    }
};

template <> struct cq_type<CQ_Q4_0> : cq_legacy<4, false> {};
template <> struct cq_type<CQ_Q4_1> : cq_legacy<4, true> {};
template <> struct cq_type<CQ_Q5_0> : cq_legacy<5, false> {};
template <> struct cq_type<CQ_Q5_1> : cq_legacy<5, true> {};
template <> struct cq_type<CQ_Q8_0> : cq_legacy<8, false> {};

/* ---- K-quants: 256-element super-blocks, 8 parts ----
 * Q2_K, Q3_K, Q6_K: part p = (h, qq) = (p / 4, p % 4) holds elements
 *   128h + 32g + 8qq + i   (run g, i < 8), sub-block 8h + 2g + qq / 2.
 * Q4_K, Q5_K: part p = (c, half) = (p / 2, p % 2) holds elements
 *   64c + 32(g / 2) + 16half + 8(g % 2) + i, sub-block 2c + g / 2. */
CQ_DEV int cq_off_hq(int p, int g) { /* Q2_K, Q3_K, Q6_K */
    return 128 * (p >> 2) + 32 * g + 8 * (p & 3);
}
CQ_DEV int cq_off_c(int p, int g) { /* Q4_K, Q5_K */
    return 64 * (p >> 1) + 32 * (g >> 1) + 16 * (p & 1) + 8 * (g & 1);
}

template <> struct cq_type<CQ_Q2_K> {
    static constexpr int QK = 256, BYTES = 84, PARTS = 8;
    static constexpr bool INT = true;
    static constexpr int UBITS = 2;   /* bits of the unsigned codes u */
    static constexpr float ZP = 0.0f; /* q = u - ZP */
    static constexpr bool HAS_MIN = true;
    struct Raw {
        uint32_t q0, q1, s0, s1, dd;
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        int h = p >> 2, qq = p & 3;
        Raw r;
        r.q0 = cq_ld32(b + 16 + 32 * h + 8 * qq);
        r.q1 = cq_ld32(b + 16 + 32 * h + 8 * qq + 4);
        r.s0 = cq_ld32(b + 8 * h);
        r.s1 = cq_ld32(b + 8 * h + 4);
        r.dd = cq_ld32(b + 80);
        return r;
    }
    CQ_DEV int off(int p, int g) { return cq_off_hq(p, g); }
    CQ_DEV void runu(const Raw &r, int p, int g, uint32_t &u0, uint32_t &u1, float &sc, float &mn) {
        u0 = (r.q0 >> (2 * g)) & 0x03030303u;
        u1 = (r.q1 >> (2 * g)) & 0x03030303u;
        int k = ((p & 3) >> 1) + 2 * (g & 1); /* byte of s0 (g < 2) or s1 */
        uint32_t s = ((g < 2 ? r.s0 : r.s1) >> (8 * k)) & 0xff;
        sc = cq_h2f(r.dd) * cq_u2f(s & 15);
        mn = cq_h2f(r.dd >> 16) * cq_u2f(s >> 4);
    }
};

template <> struct cq_type<CQ_Q3_K> {
    static constexpr int QK = 256, BYTES = 110, PARTS = 8;
    static constexpr bool INT = true;
    static constexpr int UBITS = 3;   /* bits of the unsigned codes u */
    static constexpr float ZP = 4.0f; /* q = u - ZP */
    static constexpr bool HAS_MIN = false;
    struct Raw {
        uint32_t q0, q1, m0, m1, s0, s1, s2, d;
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        int h = p >> 2, qq = p & 3;
        Raw r;
        r.q0 = cq_ld32a2(b + 32 + 32 * h + 8 * qq);
        r.q1 = cq_ld32a2(b + 32 + 32 * h + 8 * qq + 4);
        r.m0 = cq_ld32a2(b + 8 * qq);
        r.m1 = cq_ld32a2(b + 8 * qq + 4);
        r.s0 = cq_ld32a2(b + 96);
        r.s1 = cq_ld32a2(b + 100);
        r.s2 = cq_ld32a2(b + 104);
        r.d = cq_ld16(b + 108);
        return r;
    }
    CQ_DEV int off(int p, int g) { return cq_off_hq(p, g); }
    CQ_DEV void runu(const Raw &r, int p, int g, uint32_t &u0, uint32_t &u1, float &sc, float &mn) {
        int h = p >> 2, q2 = (p & 3) >> 1, hs = 4 * h + g;
        uint32_t w0 = ((r.q0 >> (2 * g)) & 0x03030303u) | (((r.m0 >> hs) & 0x01010101u) << 2);
        uint32_t w1 = ((r.q1 >> (2 * g)) & 0x03030303u) | (((r.m1 >> hs) & 0x01010101u) << 2);
        u0 = w0;
        u1 = w1;
        /* 6-bit scale of sub-block j = 8h + 2g + q2: low 4 bits in byte
         * 2g + q2 (s0 for g < 2, else s1), high 2 bits in byte
         * 8 + 2(g & 1) + q2 (s2) at bit 2(2h + g / 2) */
        int bsh = 8 * (2 * (g & 1) + q2);
        uint32_t lo = ((g < 2 ? r.s0 : r.s1) >> (bsh + 4 * h)) & 15;
        uint32_t hi = (r.s2 >> (bsh + 2 * (2 * h + (g >> 1)))) & 3;
        sc = cq_h2f(r.d) * (__uint_as_float(0x4B000000u | lo | hi << 4) - (CQ_MAGIC + 32.0f));
        mn = 0.0f;
    }
};

/* The 6-bit scale and min of sub-block j = 2c + g/2 of a Q4_K/Q5_K header
 * (bytes 4..15 = words y, z, w = s[0..11]), branch-free on whole words:
 *   j < 4:  sc = s[j] & 63,                      m = s[j+4] & 63
 *   j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
 *           m  = (s[j+4] >> 4) | (s[j] >> 6) << 4 */
CQ_DEV void cq_k4_scale_min(const uint4 &hdr, int c, int g, float &sc, float &mn) {
    uint32_t sw =
        c < 2 ? hdr.y & 0x3f3f3f3fu : (hdr.w & 0x0f0f0f0fu) | ((hdr.y >> 2) & 0x30303030u);
    uint32_t mw =
        c < 2 ? hdr.z & 0x3f3f3f3fu : ((hdr.w >> 4) & 0x0f0f0f0fu) | ((hdr.z >> 2) & 0x30303030u);
    int sh = 16 * (c & 1) + 8 * (g >> 1);
    sc = cq_h2f(hdr.x) * cq_u2f((sw >> sh) & 63);
    mn = cq_h2f(hdr.x >> 16) * cq_u2f((mw >> sh) & 63);
}

template <> struct cq_type<CQ_Q4_K> {
    static constexpr int QK = 256, BYTES = 144, PARTS = 8;
    static constexpr bool INT = true;
    static constexpr int UBITS = 4;   /* bits of the unsigned codes u */
    static constexpr float ZP = 0.0f; /* q = u - ZP */
    static constexpr bool HAS_MIN = true;
    struct Raw {
        uint4 hdr, qs;
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        Raw r;
        r.hdr = cq_ld128(b);
        r.qs = cq_ld128(b + 16 + 16 * p);
        return r;
    }
    CQ_DEV int off(int p, int g) { return cq_off_c(p, g); }
    CQ_DEV void runu(const Raw &r, int p, int g, uint32_t &u0, uint32_t &u1, float &sc, float &mn) {
        uint32_t qs[4] = {r.qs.x, r.qs.y, r.qs.z, r.qs.w};
        uint32_t w0, w1;
        cq_nib_run(qs, g, w0, w1);
        u0 = w0;
        u1 = w1;
        cq_k4_scale_min(r.hdr, p >> 1, g, sc, mn);
    }
};

template <> struct cq_type<CQ_Q5_K> {
    static constexpr int QK = 256, BYTES = 176, PARTS = 8;
    static constexpr bool INT = true;
    static constexpr int UBITS = 5;   /* bits of the unsigned codes u */
    static constexpr float ZP = 0.0f; /* q = u - ZP */
    static constexpr bool HAS_MIN = true;
    struct Raw {
        uint4 hdr, qh, qs;
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        Raw r;
        r.hdr = cq_ld128(b);
        r.qh = cq_ld128(b + 16 + 16 * (p & 1));
        r.qs = cq_ld128(b + 48 + 16 * p);
        return r;
    }
    CQ_DEV int off(int p, int g) { return cq_off_c(p, g); }
    CQ_DEV void runu(const Raw &r, int p, int g, uint32_t &u0, uint32_t &u1, float &sc, float &mn) {
        uint32_t qs[4] = {r.qs.x, r.qs.y, r.qs.z, r.qs.w};
        uint32_t w0, w1;
        cq_nib_run(qs, g, w0, w1);
        int bit = 2 * (p >> 1) + (g >> 1);
        uint32_t h0 = (g & 1) ? r.qh.z : r.qh.x, h1 = (g & 1) ? r.qh.w : r.qh.y;
        w0 |= ((h0 >> bit) & 0x01010101u) << 4;
        w1 |= ((h1 >> bit) & 0x01010101u) << 4;
        u0 = w0;
        u1 = w1;
        cq_k4_scale_min(r.hdr, p >> 1, g, sc, mn);
    }
};

template <> struct cq_type<CQ_Q6_K> {
    static constexpr int QK = 256, BYTES = 210, PARTS = 8;
    static constexpr bool INT = true;
    static constexpr int UBITS = 6;    /* bits of the unsigned codes u */
    static constexpr float ZP = 32.0f; /* q = u - ZP */
    static constexpr bool HAS_MIN = false;
    struct Raw {
        uint32_t l0a, l0b, l1a, l1b, ha, hb, s0, s1, d;
    };
    CQ_DEV Raw load(const uint8_t *b, int p) {
        int h = p >> 2, qq = p & 3;
        const uint8_t *ql = b + 64 * h + 8 * qq, *qh = b + 128 + 32 * h + 8 * qq;
        Raw r;
        r.l0a = cq_ld32a2(ql);
        r.l0b = cq_ld32a2(ql + 4);
        r.l1a = cq_ld32a2(ql + 32);
        r.l1b = cq_ld32a2(ql + 36);
        r.ha = cq_ld32a2(qh);
        r.hb = cq_ld32a2(qh + 4);
        r.s0 = cq_ld32a2(b + 192 + 8 * h);
        r.s1 = cq_ld32a2(b + 196 + 8 * h);
        r.d = cq_ld16(b + 208);
        return r;
    }
    CQ_DEV int off(int p, int g) { return cq_off_hq(p, g); }
    CQ_DEV void runu(const Raw &r, int p, int g, uint32_t &u0, uint32_t &u1, float &sc, float &mn) {
        uint32_t a = (g & 1) ? r.l1a : r.l0a, b = (g & 1) ? r.l1b : r.l0b;
        int sh = (g >> 1) * 4;
        uint32_t w0 = ((a >> sh) & 0x0f0f0f0fu) | (((r.ha >> (2 * g)) & 0x03030303u) << 4);
        uint32_t w1 = ((b >> sh) & 0x0f0f0f0fu) | (((r.hb >> (2 * g)) & 0x03030303u) << 4);
        u0 = w0;
        u1 = w1;
        /* int8 scale byte 2g + qq/2 of s0 (g < 2) or s1; +128 by a flipped top bit */
        uint32_t sb =
            (((g < 2 ? r.s0 : r.s1) >> (8 * (2 * (g & 1) + ((p & 3) >> 1)))) & 0xff) ^ 0x80;
        sc = cq_h2f(r.d) * (__uint_as_float(0x4B000000u | sb) - (CQ_MAGIC + 128.0f));
        mn = 0.0f;
    }
};

/* Run g of part p as floats q[i] (weight i = sc * q[i] - mn), any type. */
template <int TYPE>
CQ_DEV void cq_run(const typename cq_type<TYPE>::Raw &r, int p, int g, float q[8], float &sc,
                   float &mn) {
    using T = cq_type<TYPE>;
    if constexpr (T::INT) {
        uint32_t u0, u1;
        T::runu(r, p, g, u0, u1, sc, mn);
        cq_bytes8(u0, u1, CQ_MAGIC + T::ZP, q);
    } else {
        T::run(r, p, g, q, sc, mn);
    }
}

/* Call F.template operator()<TYPE>() for a runtime type id; false when the
 * type has no decoder. */
template <typename F> static inline bool cq_dispatch(int type, F &&f) {
    switch (type) {
    case CQ_F32:
        f.template operator()<CQ_F32>();
        return true;
    case CQ_F16:
        f.template operator()<CQ_F16>();
        return true;
    case CQ_BF16:
        f.template operator()<CQ_BF16>();
        return true;
    case CQ_Q4_0:
        f.template operator()<CQ_Q4_0>();
        return true;
    case CQ_Q4_1:
        f.template operator()<CQ_Q4_1>();
        return true;
    case CQ_Q5_0:
        f.template operator()<CQ_Q5_0>();
        return true;
    case CQ_Q5_1:
        f.template operator()<CQ_Q5_1>();
        return true;
    case CQ_Q8_0:
        f.template operator()<CQ_Q8_0>();
        return true;
    case CQ_Q2_K:
        f.template operator()<CQ_Q2_K>();
        return true;
    case CQ_Q3_K:
        f.template operator()<CQ_Q3_K>();
        return true;
    case CQ_Q4_K:
        f.template operator()<CQ_Q4_K>();
        return true;
    case CQ_Q5_K:
        f.template operator()<CQ_Q5_K>();
        return true;
    case CQ_Q6_K:
        f.template operator()<CQ_Q6_K>();
        return true;
    default:
        return false;
    }
}

#endif
