/* quant_k.c: the K-quants, 256-element super-blocks: Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K and the activation type Q8_K: byte layouts (ggml's, as stored in GGUF),
 * unpack to the decoded form of quant_impl.h, and the reference quantizers.
 *
 * Layouts (little-endian; e = element 0..255 of the super-block; "2-bit
 * field" k of a byte is bits 2k..2k+1):
 *
 * Q2_K (84 B): scales[16] | qs[64] | f16 d | f16 dmin
 *   16 sub-blocks of 16. scales[j] = sc | m << 4 (4 bits each).
 *   q(e) = 2-bit field (e/32)%4 of qs[32*(e/128) + e%32], 0..3
 *   x = d*sc * q - dmin*m                                (j = e/16)
 * Q3_K (110 B): hmask[32] | qs[64] | scales[12] | f16 d
 *   16 sub-blocks of 16, 6-bit signed sub-scales (stored + 32):
 *   low 4 bits of scale j: j < 8 ? low nibble of scales[j]
 *                                : high nibble of scales[j-8]
 *   high 2 bits of scale j: 2-bit field j/4 of scales[8 + j%4]
 *   q(e) = (2-bit field (e/32)%4 of qs[32*(e/128) + e%32])
 *          - (bit e/32 of hmask[e%32] ? 0 : 4),        -4..3
 *   x = d*(sc - 32) * q
 * Q4_K (144 B): f16 d | f16 dmin | scales[12] | qs[128]
 *   8 sub-blocks of 32, 6-bit sc and m packed in 12 bytes (s = scales):
 *   j < 4:  sc = s[j] & 63,  m = s[j+4] & 63
 *   j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4
 *           m  = (s[j+4] >> 4) | (s[j]   >> 6) << 4
 *   q(e) = nibble of qs[32*(e/64) + e%32]: low if e%64 < 32, else high
 *   x = d*sc * q - dmin*m                                (j = e/32)
 * Q5_K (176 B): f16 d | f16 dmin | scales[12] | qh[32] | qs[128]
 *   as Q4_K, plus a 5th bit: bit e/32 of qh[e%32] (q is 0..31)
 * Q6_K (210 B): ql[128] | qh[64] | int8 scales[16] | f16 d
 *   16 sub-blocks of 16. With h = e/128, k = (e%128)/32, l = e%32:
 *   low 4 bits: ql[64h + 32*(k%2) + l], low nibble if k < 2 else high
 *   high 2 bits: 2-bit field k of qh[32h + l]
 *   x = d*sc[e/16] * (q - 32)
 * Q8_K (292 B): f32 d | int8 qs[256] | int16 bsums[16]
 *   x = d * q; bsums[j] = sum of qs[16j..16j+15] (for dot kernels). An
 *   activation format, never in files.
 *
 * Quantizers. Each sub-block is first fitted on its own in float
 * (quant_fit_sym / quant_fit_affine). The super-block scales d (and dmin)
 * are then set from the min/max ("covering") needs of the sub-blocks and
 * rounded *up* to f16, so that every sub-block's covering sub-scale fits in
 * the integer range. Each sub-block then picks, by least squared error, among
 * its covering integer sub-scale (and min) and the 3 (x3) integers nearest
 * its fitted float ones; elements get their nearest q for the chosen pair.
 *
 * Error bounds, per sub-block (R = max(x,0) - min(x,0) of the sub-block,
 * Rmax the largest R in the super-block, amax = max |x|, A = the largest
 * amax; qmax = 3, 15, 31; smax = 15, 63, 63 for Q2_K, Q4_K, Q5_K):
 *   Q2_K, Q4_K, Q5_K: the covering pair leaves every element within half a
 *     step s' of its value, s' <= (R + dmin)/qmax + d, with dmin <= Rmax/smax
 *     and d <= (Rmax + dmin)/(qmax*smax) (times 1 + 2^-10 for the f16
 *     rounding up), so RMS error <= s'/2.
 *   Q3_K, Q6_K (q in [-4,3] / [-32,31], sub-scales up to 31 / 127): covering
 *     step s' in [amax/|qmin|, amax/|qmin| + d], d <= A/(|qmin|*scmax) (1 +
 *     2^-10); every element within s' of its value (half a step, or the
 *     clipped short side of the asymmetric range), so RMS error <= s'.
 *   Q8_K: d = amax/127 (f32), every element within d/2.
 * The search only ever lowers the error below these. */
#include <math.h>

#include "quant/quant_impl.h"

/* 2-bit field k of byte b */
static int field2(uint8_t b, int k) {
    return (b >> (2 * k)) & 3;
}

/* ---- decoding ---- */

static void unpack_q2_k(const uint8_t *b, quant_block *u) {
    const uint8_t *scales = b, *qs = b + 16;
    float d = quant_rdf16(b + 80), dmin = quant_rdf16(b + 82);
    for (int j = 0; j < 16; j++) {
        u->scale[j] = d * (float)(scales[j] & 15);
        u->min[j] = dmin * (float)(scales[j] >> 4);
    }
    for (int e = 0; e < QK_K; e++)
        u->q[e] = (int8_t)field2(qs[32 * (e / 128) + e % 32], (e / 32) % 4);
}

/* the 6-bit signed sub-scale j of Q3_K, still offset by 32 */
static int q3_k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    int hi = field2(s[8 + j % 4], j / 4);
    return lo | hi << 4;
}

static void unpack_q3_k(const uint8_t *b, quant_block *u) {
    const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
    float d = quant_rdf16(b + 108);
    for (int j = 0; j < 16; j++) {
        u->scale[j] = d * (float)(q3_k_scale(scales, j) - 32);
        u->min[j] = 0;
    }
    for (int e = 0; e < QK_K; e++) {
        int low = field2(qs[32 * (e / 128) + e % 32], (e / 32) % 4);
        int high = (hmask[e % 32] >> (e / 32)) & 1;
        u->q[e] = (int8_t)(low - (high ? 0 : 4));
    }
}

/* the 6-bit sub-scale and min j of Q4_K / Q5_K */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* d, dmin and the 8 sub-scales / mins of a Q4_K or Q5_K block */
static void k4_unpack_scales(const uint8_t *b, quant_block *u) {
    float d = quant_rdf16(b), dmin = quant_rdf16(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(b + 4, j, &sc, &m);
        u->scale[j] = d * (float)sc;
        u->min[j] = dmin * (float)m;
    }
}

/* low 4 bits of element e in a Q4_K / Q5_K qs array */
static int k4_nibble(const uint8_t *qs, int e) {
    uint8_t byte = qs[32 * (e / 64) + e % 32];
    return e % 64 < 32 ? byte & 15 : byte >> 4;
}

static void unpack_q4_k(const uint8_t *b, quant_block *u) {
    k4_unpack_scales(b, u);
    for (int e = 0; e < QK_K; e++) u->q[e] = (int8_t)k4_nibble(b + 16, e);
}

static void unpack_q5_k(const uint8_t *b, quant_block *u) {
    const uint8_t *qh = b + 16, *qs = b + 48;
    k4_unpack_scales(b, u);
    for (int e = 0; e < QK_K; e++)
        u->q[e] = (int8_t)(k4_nibble(qs, e) | ((qh[e % 32] >> (e / 32)) & 1) << 4);
}

static void unpack_q6_k(const uint8_t *b, quant_block *u) {
    const uint8_t *ql = b, *qh = b + 128, *scales = b + 192;
    float d = quant_rdf16(b + 208);
    for (int j = 0; j < 16; j++) {
        u->scale[j] = d * (float)(int8_t)scales[j];
        u->min[j] = 0;
    }
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        uint8_t lowbyte = ql[64 * h + 32 * (k % 2) + l];
        int low = k < 2 ? lowbyte & 15 : lowbyte >> 4;
        int high = field2(qh[32 * h + l], k);
        u->q[e] = (int8_t)((low | high << 4) - 32);
    }
}

static void unpack_q8_k(const uint8_t *b, quant_block *u) {
    memcpy(&u->scale[0], b, 4); /* f32, little-endian like the host */
    u->min[0] = 0;
    for (int e = 0; e < QK_K; e++) u->q[e] = (int8_t)b[4 + e];
}

static const quant_format fmt_q2_k = {QK_K, 84, 16, unpack_q2_k};
static const quant_format fmt_q3_k = {QK_K, 110, 16, unpack_q3_k};
static const quant_format fmt_q4_k = {QK_K, 144, 32, unpack_q4_k};
static const quant_format fmt_q5_k = {QK_K, 176, 32, unpack_q5_k};
static const quant_format fmt_q6_k = {QK_K, 210, 16, unpack_q6_k};
static const quant_format fmt_q8_k = {QK_K, 292, QK_K, unpack_q8_k};

/* ---- quantization: two-level scale fitting ---- */

/* Smallest k in [0, kmax] with step * k >= v (in float, as dequant computes
 * it), or kmax if none. step > 0. */
static int ceil_steps(float v, float step, int kmax) {
    int k = quant_nearest(ceilf(v / step), 0, kmax);
    while (k < kmax && step * (float)k < v) k++;
    return k;
}

/* A super-block in integers: value of element e =
 *   d*sc[j] * q[e] - dmin*m[j]   (affine)   or   d*sc[j] * q[e]   (symmetric) */
typedef struct {
    uint16_t d, dmin; /* f16 */
    int sc[16], m[16];
    int8_t q[QK_K];
} kfit;

/* Affine two-level fit (Q2_K, Q4_K, Q5_K): nsub sub-blocks of `sub`
 * elements, q in [0, qmax], sc and m in [0, smax]. */
static void fit_k_affine(const float *x, int nsub, int sub, int qmax, int smax, kfit *out) {
    float fit_s[16], fit_mn[16]; /* each sub-block's own float fit */
    float hi[16], cover_mn[16];  /* its covering range: [-cover_mn, hi] */
    float max_cover_mn = 0;
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * sub;
        float b;
        quant_fit_affine(xj, sub, qmax, 1, 0, &fit_s[j], &b);
        fit_mn[j] = -b;
        float lo = 0;
        hi[j] = 0;
        for (int i = 0; i < sub; i++) {
            lo = fminf(lo, xj[i]);
            hi[j] = fmaxf(hi[j], xj[i]);
        }
        cover_mn[j] = -lo;
        max_cover_mn = fmaxf(max_cover_mn, cover_mn[j]);
    }

    out->dmin = quant_f16_up(max_cover_mn / (float)smax);
    float dmin = fp16_to_f32(out->dmin);
    int cover_m[16];
    float need[16], max_need = 0; /* the step that covers [-dmin*m, hi] */
    for (int j = 0; j < nsub; j++) {
        cover_m[j] = dmin > 0 ? ceil_steps(cover_mn[j], dmin, smax) : 0;
        need[j] = (hi[j] + dmin * (float)cover_m[j]) / (float)qmax;
        max_need = fmaxf(max_need, need[j]);
    }
    out->d = quant_f16_up(max_need / (float)smax);
    float d = fp16_to_f32(out->d);

    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * sub;
        int8_t q[32];
        /* candidates: the covering pair, then 3x3 around the float fit */
        int best_sc = d > 0 ? ceil_steps(need[j], d, smax) : 0, best_m = cover_m[j];
        double best_err = quant_assign_affine(xj, sub, d * (float)best_sc, -(dmin * (float)best_m),
                                              qmax, out->q + j * sub);
        int rs = d > 0 ? quant_nearest(fit_s[j] / d, 0, smax) : 0;
        int rm = dmin > 0 ? quant_nearest(fit_mn[j] / dmin, 0, smax) : 0;
        for (int sc = rs - 1; sc <= rs + 1; sc++) {
            for (int m = rm - 1; m <= rm + 1; m++) {
                if (sc < 0 || sc > smax || m < 0 || m > smax) continue;
                double err =
                    quant_assign_affine(xj, sub, d * (float)sc, -(dmin * (float)m), qmax, q);
                if (err < best_err) {
                    best_err = err, best_sc = sc, best_m = m;
                    memcpy(out->q + j * sub, q, (size_t)sub);
                }
            }
        }
        out->sc[j] = best_sc;
        out->m[j] = best_m;
    }
}

/* Symmetric two-level fit (Q3_K, Q6_K): 16 sub-blocks of 16, q in
 * [qmin, qmax], sub-scales in [-smax - 1, smax]. */
static void fit_k_sym(const float *x, int qmin, int qmax, int smax, kfit *out) {
    float fit_s[16], cover_s[16], max_cover = 0;
    for (int j = 0; j < 16; j++) {
        const float *xj = x + j * 16;
        fit_s[j] = quant_fit_sym(xj, 16, qmin, qmax, 0);
        float m = 0;
        for (int i = 0; i < 16; i++)
            if (fabsf(xj[i]) > fabsf(m)) m = xj[i];
        cover_s[j] = m / (float)qmin; /* maps m onto qmin */
        max_cover = fmaxf(max_cover, fabsf(cover_s[j]));
    }
    out->d = quant_f16_up(max_cover / (float)smax);
    out->dmin = 0;
    float d = fp16_to_f32(out->d);

    for (int j = 0; j < 16; j++) {
        const float *xj = x + j * 16;
        int8_t q[16];
        int best_sc = 0;
        if (d > 0) {
            best_sc = ceil_steps(fabsf(cover_s[j]), d, smax);
            if (cover_s[j] < 0) best_sc = -best_sc;
        }
        double best_err = quant_assign_sym(xj, 16, d * (float)best_sc, qmin, qmax, out->q + j * 16);
        int r = d > 0 ? quant_nearest(fit_s[j] / d, -smax - 1, smax) : 0;
        for (int sc = r - 1; sc <= r + 1; sc++) {
            if (sc < -smax - 1 || sc > smax) continue;
            double err = quant_assign_sym(xj, 16, d * (float)sc, qmin, qmax, q);
            if (err < best_err) {
                best_err = err, best_sc = sc;
                memcpy(out->q + j * 16, q, 16);
            }
        }
        out->sc[j] = best_sc;
        out->m[j] = 0;
    }
}

/* ---- quantization: packing ---- */

void quant_quant_q2_k(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    kfit f;
    for (int64_t i = 0; i < n; i += QK_K, x += QK_K, b += 84) {
        fit_k_affine(x, 16, 16, 3, 15, &f);
        memset(b, 0, 84);
        for (int j = 0; j < 16; j++) b[j] = (uint8_t)(f.sc[j] | f.m[j] << 4);
        for (int e = 0; e < QK_K; e++)
            b[16 + 32 * (e / 128) + e % 32] |= (uint8_t)(f.q[e] << (2 * ((e / 32) % 4)));
        quant_wr16(b + 80, f.d);
        quant_wr16(b + 82, f.dmin);
    }
}

void quant_quant_q3_k(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    kfit f;
    for (int64_t i = 0; i < n; i += QK_K, x += QK_K, b += 110) {
        fit_k_sym(x, -4, 3, 31, &f);
        memset(b, 0, 110);
        uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
        for (int e = 0; e < QK_K; e++) {
            int u = f.q[e] + 4; /* 0..7: low 2 bits, and bit 2 set means "no -4" */
            qs[32 * (e / 128) + e % 32] |= (uint8_t)((u & 3) << (2 * ((e / 32) % 4)));
            hmask[e % 32] |= (uint8_t)((u >> 2) << (e / 32));
        }
        for (int j = 0; j < 16; j++) {
            int v = f.sc[j] + 32; /* 0..63 */
            if (j < 8)
                scales[j] |= (uint8_t)(v & 15);
            else
                scales[j - 8] |= (uint8_t)((v & 15) << 4);
            scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        }
        quant_wr16(b + 108, f.d);
    }
}

/* d, dmin and the 12 packed scale bytes of Q4_K / Q5_K */
static void k4_pack_scales(uint8_t *b, const kfit *f) {
    uint8_t *s = b + 4;
    quant_wr16(b, f->d);
    quant_wr16(b + 2, f->dmin);
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        int sc = f->sc[j], m = f->m[j];
        if (j < 4) {
            s[j] |= (uint8_t)sc;
            s[j + 4] |= (uint8_t)m;
        } else {
            s[j + 4] = (uint8_t)((sc & 15) | (m & 15) << 4);
            s[j - 4] |= (uint8_t)((sc >> 4) << 6);
            s[j] |= (uint8_t)((m >> 4) << 6);
        }
    }
}

static void k4_pack_nibbles(uint8_t *qs, const int8_t *q) {
    memset(qs, 0, 128);
    for (int e = 0; e < QK_K; e++)
        qs[32 * (e / 64) + e % 32] |= (uint8_t)((q[e] & 15) << (e % 64 < 32 ? 0 : 4));
}

void quant_quant_q4_k(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    kfit f;
    for (int64_t i = 0; i < n; i += QK_K, x += QK_K, b += 144) {
        fit_k_affine(x, 8, 32, 15, 63, &f);
        k4_pack_scales(b, &f);
        k4_pack_nibbles(b + 16, f.q);
    }
}

void quant_quant_q5_k(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    kfit f;
    for (int64_t i = 0; i < n; i += QK_K, x += QK_K, b += 176) {
        fit_k_affine(x, 8, 32, 31, 63, &f);
        k4_pack_scales(b, &f);
        uint8_t *qh = b + 16;
        memset(qh, 0, 32);
        for (int e = 0; e < QK_K; e++) qh[e % 32] |= (uint8_t)(((f.q[e] >> 4) & 1) << (e / 32));
        k4_pack_nibbles(b + 48, f.q);
    }
}

void quant_quant_q6_k(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    kfit f;
    for (int64_t i = 0; i < n; i += QK_K, x += QK_K, b += 210) {
        fit_k_sym(x, -32, 31, 127, &f);
        memset(b, 0, 210);
        uint8_t *ql = b, *qh = b + 128;
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int u = f.q[e] + 32; /* 0..63 */
            ql[64 * h + 32 * (k % 2) + l] |= (uint8_t)((u & 15) << (k < 2 ? 0 : 4));
            qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * k));
        }
        for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)f.sc[j];
        quant_wr16(b + 208, f.d);
    }
}

void quant_quant_q8_k(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    int8_t q[QK_K];
    for (int64_t i = 0; i < n; i += QK_K, x += QK_K, b += 292) {
        float amax = 0;
        for (int e = 0; e < QK_K; e++) amax = fmaxf(amax, fabsf(x[e]));
        float d = amax / 127.0f;
        memcpy(b, &d, 4);
        quant_assign_sym(x, QK_K, d, -127, 127, q);
        memcpy(b + 4, q, QK_K);
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int e = 16 * j; e < 16 * (j + 1); e++) sum += q[e];
            int16_t s16 = (int16_t)sum;
            uint8_t *p = b + 260 + 2 * j;
            quant_wr16(p, (uint16_t)s16);
        }
    }
}

/* ---- row functions ---- */

#define ROW_FNS(t)                                                                                 \
    void quant_dequant_##t(const void *src, float *dst, int64_t n) {                               \
        quant_dequant_blocks(&fmt_##t, src, dst, n);                                               \
    }                                                                                              \
    float quant_dot_##t(const void *row, const float *x, int64_t n) {                              \
        return quant_dot_blocks(&fmt_##t, row, x, n);                                              \
    }

ROW_FNS(q2_k)
ROW_FNS(q3_k)
ROW_FNS(q4_k)
ROW_FNS(q5_k)
ROW_FNS(q6_k)
ROW_FNS(q8_k)
