/* test_quant.c: tests of the tensor type table and its reference conversions
 * (src/quant).
 *
 * (a) goldens: dequant of the blocks in tests/data/quant/<TYPE>.bin (random
 *     valid blocks, blocks quantized by the gguf package, blocks of the real
 *     models; made by tools/goldens/quant_goldens.py) equals the gguf
 *     package's numpy dequantization exactly, bit for bit. No ulp leeway is
 *     needed: in every format the products d*sc*q and dmin*m are exact in
 *     float (an f16 scale has 11 significant bits, sub-scale and quant add at
 *     most 12: Q6_K's 7 + 5; Q8_K's f32 d times q is one product), so the
 *     only rounding is the final subtraction (or the one product), and any
 *     evaluation order, fma contraction included, gives the same float.
 *     Where gguf quantized a known input, our quantizer must do at least as
 *     well on the same input (ours searches over a candidate set that
 *     includes ggml's min/max scale), and for F16/BF16 produce the same bits.
 * (b) round trip quant -> dequant on fresh random inputs (seed printed; set
 *     BEAST_TEST_SEED to repeat a run), four distributions: normal, uniform,
 *     normal with 1% outliers x10..50, all-positive uniform. Checked against
 *     a per-type relative RMS bound (table below, with its justification) and
 *     a distribution-free per-(sub-)block bound that the quantizers guarantee
 *     (see the comments in src/quant/quant_legacy.c and quant_k.c).
 * (c) dot(row, x) equals the double-precision dot of the dequantized row with
 *     x to 1e-5 relative (relative to sum |w_i x_i|).
 * (d) the table: names, block sizes, bytes vs the gguf package's list
 *     (tests/data/quant/sizes.txt), quant_row_size, unknown ids.
 * With BEAST_QUANT_DUMP=DIR, (a) also runs on DIR/<TYPE>.bin (large real-model
 * tensors written by quant_goldens.py --dump). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quant/quant.h"
#include "util/util.h"

#include "check.h"

/* ---- the types and their bounds ----
 *
 * Relative RMS error bounds, sqrt(sum (x - y)^2 / sum x^2) over a row of
 * 4096, one per distribution. Model: rounding to a grid of step s leaves an
 * error spread evenly over [-s/2, s/2], RMS s/sqrt(12). With L = |qmin| for
 * the symmetric types (8, 16, 127; Q3_K 4, Q6_K 32) or qmax for the affine
 * ones (15, 31; Q2_K 3, Q4_K 15, Q5_K 31) the step is amax/L or range/L, so:
 *   uniform(-a, a):     1/(2L) symmetric, 1/L affine
 *   normal:             amax/(L sqrt 12) with amax ~ 2.45 sigma (blocks of 32),
 *                       2.1 (16), 3.0 (256); affine: range ~ 4.1 sigma (32),
 *                       3.5 (16) in place of amax
 *   positive U(.2a, a): 0.448/L symmetric and K-affine (min kept <= 0),
 *                       0.359/L legacy affine (range .8a); rms x = .644a
 *   1% outliers x10..50: the ~27% of blocks holding one get a step ~ outlier/L;
 *                       the error depends on how many land in a row.
 * The search in the quantizers lowers these somewhat (Q2_K a lot: clipping
 * pays at 2 bits). Each bound is 1.25 x the larger of the model value and the
 * worst measured over 30 seeds x 8 rows (1.5 x the measured for outliers).
 * Q2_K's outlier bound is wider still (0.5; 0.31 seen in 90 seeds): its
 * 4-bit sub-scales share one super-block scale, so an outlier leaves the
 * other 15 sub-blocks of its super-block with one or two sub-scale steps.
 * F16 / BF16 are hard bounds: round to nearest, relative 2^-11 / 2^-8 per
 * element. Measured values are printed; the quantizer comments in src/quant
 * give the distribution-free per-block guarantees also checked below. */
enum { DIST_NORMAL, DIST_UNIFORM, DIST_OUTLIERS, DIST_POSITIVE, NDIST };
static const char *DIST_NAMES[NDIST] = {"normal", "uniform", "outliers", "positive"};

typedef struct {
    int type;
    double rms_bound[NDIST]; /* normal, uniform, outliers, positive */
} type_info;

static const type_info TYPES[] = {
    {QT_F32, {0, 0, 0, 0}},
    {QT_F16, {4.9e-4, 4.9e-4, 4.9e-4, 4.9e-4}},
    {QT_BF16, {3.9e-3, 3.9e-3, 3.9e-3, 3.9e-3}},
    {QT_Q4_0, {0.11, 0.078, 0.23, 0.07}},
    {QT_Q4_1, {0.10, 0.084, 0.16, 0.03}},
    {QT_Q5_0, {0.055, 0.039, 0.14, 0.035}},
    {QT_Q5_1, {0.048, 0.040, 0.08, 0.015}},
    {QT_Q8_0, {0.0072, 0.0049, 0.02, 0.0045}},
    {QT_Q8_1, {0.0072, 0.0049, 0.02, 0.0045}},
    {QT_Q2_K, {0.42, 0.42, 0.50, 0.19}},
    {QT_Q3_K, {0.19, 0.16, 0.24, 0.14}},
    {QT_Q4_K, {0.10, 0.084, 0.16, 0.038}},
    {QT_Q5_K, {0.048, 0.040, 0.084, 0.018}},
    {QT_Q6_K, {0.024, 0.020, 0.054, 0.018}},
    {QT_Q8_K, {0.0097, 0.0051, 0.051, 0.0046}},
};
#define NTYPES ((int)ARRAY_LEN(TYPES))

/* ---- (d) the table ---- */

static void test_table(void) {
    FILE *f = fopen("data/quant/sizes.txt", "r");
    CHECK(f, "cannot open data/quant/sizes.txt (run from tests/)");
    if (!f) return;
    char line[256], name[32];
    int id, block, bytes, listed = 0, seen[QT_COUNT] = {0};
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (sscanf(line, "%31s %d %d %d", name, &id, &block, &bytes) != 4) continue;
        listed++;
        const quant_traits *t = quant_get(id);
        CHECK(t, "type %s (%d) missing from the table", name, id);
        if (!t) continue;
        seen[id] = 1;
        CHECK(!strcmp(t->name, name), "type %d named %s, gguf says %s", id, t->name, name);
        CHECK(t->block == block && t->bytes == bytes, "%s: block/bytes %d/%d, gguf says %d/%d",
              name, t->block, t->bytes, block, bytes);
        int storage_only = name[0] == 'I' || !strcmp(name, "F64");
        CHECK(quant_supported(id) == !storage_only, "%s: quant_supported = %d", name,
              quant_supported(id));
        if (storage_only)
            CHECK(!t->dequant && !t->quant && !t->dot, "%s has conversions", name);
        else
            CHECK(t->dequant && t->quant && t->dot, "%s lacks a conversion", name);
        int64_t ks[] = {0, 1, 7, 1000};
        for (int i = 0; i < 4; i++)
            CHECK(quant_row_size(id, ks[i] * block) == (size_t)(ks[i] * bytes),
                  "%s: quant_row_size(%lld)", name, (long long)(ks[i] * block));
        if (block > 1) CHECK(quant_row_size(id, block + 1) == 0, "%s: non-multiple accepted", name);
        CHECK(quant_row_size(id, -block) == 0, "%s: negative n accepted", name);
    }
    fclose(f);
    CHECK(listed == 20, "sizes.txt lists %d types, expected 20", listed);
    for (int i = -3; i < QT_COUNT + 3; i++) {
        int known = i >= 0 && i < QT_COUNT && seen[i];
        err_clear();
        const quant_traits *t = quant_get(i);
        CHECK(!t == !known, "quant_get(%d) = %p", i, (const void *)t);
        if (!known) {
            CHECK(strstr(err_get(), "not supported"), "quant_get(%d): error '%s'", i, err_get());
            CHECK(quant_row_size(i, 256) == 0 && !quant_supported(i), "unknown type %d usable", i);
        }
    }
    CHECK(quant_row_size(QT_F64, INT64_MAX) == 0, "size overflow not caught");
    printf("table: %d types match gguf's sizes\n", listed);
}

/* ---- helpers ---- */

static const type_info *info_of(int type) {
    for (int i = 0; i < NTYPES; i++)
        if (TYPES[i].type == type) return &TYPES[i];
    return NULL;
}

/* sum x*y in double, and sum |x*y| */
static double dot_ref(const float *a, const float *x, int64_t n, double *abs_sum) {
    double s = 0, sa = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * x[i];
        sa += fabs((double)a[i] * x[i]);
    }
    *abs_sum = sa;
    return s;
}

/* (c): the type's dot against the double dot of its own dequantization */
static int dot_matches(const quant_traits *t, const void *row, const float *w, const float *x,
                       int64_t n, double *rel) {
    double abs_sum, ref = dot_ref(w, x, n, &abs_sum);
    double got = t->dot(row, x, n);
    *rel = fabs(got - ref) / (abs_sum > 0 ? abs_sum : 1);
    return fabs(got - ref) <= 1e-5 * abs_sum + 1e-30;
}

static double sq_err(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

/* ---- (a) goldens ---- */

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Check every record of one golden file; returns the number of values. */
static int64_t check_golden_file(const char *path, int want_type) {
    size_t len;
    uint8_t *buf = check_read_file(path, &len);
    CHECK(buf, "cannot read %s", path);
    if (!buf) return 0;
    int64_t values = 0;
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 32 || memcmp(buf + pos, "BQG1", 4)) {
            CHECK(0, "%s: bad record at %zu", path, pos);
            break;
        }
        const uint8_t *h = buf + pos + 4;
        int type = (int)rd_u32(h);
        int block = (int)rd_u32(h + 4), bytes = (int)rd_u32(h + 8);
        int64_t nblocks = rd_u32(h + 12);
        int kind = (int)rd_u32(h + 16), flags = (int)rd_u32(h + 20);
        size_t lablen = rd_u32(h + 24);
        pos += 32;
        char label[200];
        snprintf(label, sizeof label, "%.*s", (int)MIN(lablen, 150), (const char *)buf + pos);
        pos += lablen;
        int64_t n = nblocks * block;
        size_t need = (size_t)(nblocks * bytes) + (size_t)n * 4 * ((flags & 1) ? 2 : 1);
        const quant_traits *t = quant_get(type);
        const type_info *ti = info_of(type);
        if (pos > len || len - pos < need || !t || !ti || type != want_type || t->block != block ||
            t->bytes != bytes) {
            CHECK(0, "%s: record '%s' does not fit (type %d, block %d, bytes %d)", path, label,
                  type, block, bytes);
            break;
        }
        const uint8_t *blocks = buf + pos;
        pos += (size_t)(nblocks * bytes);
        float *expected = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        float *x = malloc((size_t)n * 4), *src = NULL;
        memcpy(expected, buf + pos, (size_t)n * 4); /* host is little-endian */
        pos += (size_t)n * 4;
        if (flags & 1) {
            src = malloc((size_t)n * 4);
            memcpy(src, buf + pos, (size_t)n * 4);
            pos += (size_t)n * 4;
        }

        t->dequant(blocks, y, n);
        int64_t bad = 0, first_bad = -1;
        for (int64_t i = 0; i < n; i++) {
            if (y[i] == expected[i]) continue; /* (no NaNs in the goldens) */
            if (first_bad < 0) first_bad = i;
            bad++;
        }
        CHECK(bad == 0, "%s '%s': %lld of %lld values differ from gguf, first [%lld] %.9g vs %.9g",
              t->name, label, (long long)bad, (long long)n, (long long)first_bad,
              first_bad >= 0 ? y[first_bad] : 0.0, first_bad >= 0 ? expected[first_bad] : 0.0);
        values += n;

        /* (c) on the golden blocks, against gguf's values */
        int finite = 1;
        for (int64_t i = 0; i < n; i++) finite &= isfinite(expected[i]) != 0;
        if (finite) {
            for (int64_t i = 0; i < n; i++) x[i] = (float)rng_normal();
            double rel;
            CHECK(dot_matches(t, blocks, expected, x, n, &rel), "%s '%s': dot off by %.3g", t->name,
                  label, rel);
        }

        /* our quantizer on gguf's input: at least as good, or identical bits */
        if (src && kind == 1) {
            uint8_t *mine = malloc((size_t)(nblocks * bytes));
            t->quant(src, mine, n);
            if (type == QT_F16 || type == QT_BF16) {
                CHECK(!memcmp(mine, blocks, (size_t)(nblocks * bytes)),
                      "%s: quantization differs from gguf's", t->name);
            } else {
                t->dequant(mine, y, n);
                double e_mine = sq_err(src, y, n), e_gguf = sq_err(src, expected, n);
                CHECK(e_mine <= e_gguf * (1 + 1e-6) + 1e-20,
                      "%s: our quantization error %.4g > gguf's %.4g", t->name, e_mine, e_gguf);
                printf("  %-5s our quantizer vs gguf's on the same input: RMS error x%.3f\n",
                       t->name, sqrt(e_mine / e_gguf));
            }
            free(mine);
        }
        free(expected), free(y), free(x), free(src);
    }
    free(buf);
    return values;
}

/* ---- (b) round trips ---- */

static void fill(float *x, int64_t n, int dist) {
    double scale = pow(10.0, -1.0 + 3.0 * rng_uniform()); /* 0.1 .. 100 */
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (dist) {
        case DIST_NORMAL:
            v = rng_normal();
            break;
        case DIST_UNIFORM:
            v = 2 * rng_uniform() - 1;
            break;
        case DIST_OUTLIERS:
            v = rng_normal();
            if (rng_uniform() < 0.01) v *= 10 + 40 * rng_uniform();
            break;
        default:
            v = 0.2 + 0.8 * rng_uniform();
            break;
        }
        x[i] = (float)(v * scale);
    }
}

/* The guaranteed RMS error bound of the sub-block x[lo..hi) of the block
 * x[0..block), per the quantizer comments in src/quant. */
static double sub_bound(int type, const float *x, int block, int sub, int lo) {
    const double f16u = 1.0 + 1.0 / 1024, slack = 1.001, tiny = 1e-6;
    double amax = 0, mn = 0, mx = 0, bmin = x[lo], bmax = x[lo];
    for (int i = lo; i < lo + sub; i++) {
        amax = fmax(amax, fabs(x[i]));
        mn = fmin(mn, x[i]), mx = fmax(mx, x[i]);
        bmin = fmin(bmin, x[i]), bmax = fmax(bmax, x[i]);
    }
    double amax_all = 0, rmax = 0; /* over the sub-blocks of the block */
    for (int s = 0; s < block; s += sub) {
        double a = 0, m0 = 0, m1 = 0;
        for (int i = s; i < s + sub; i++)
            a = fmax(a, fabs(x[i])), m0 = fmin(m0, x[i]), m1 = fmax(m1, x[i]);
        amax_all = fmax(amax_all, a);
        rmax = fmax(rmax, m1 - m0);
    }
    double r = mx - mn; /* range including 0 */
    switch (type) {
    case QT_Q8_0:
    case QT_Q8_1:
    case QT_Q8_K:
        return 0.5 * amax / 127 * f16u + tiny;
    case QT_Q4_0:
        return amax / 8 * slack * 1.01 + tiny;
    case QT_Q5_0:
        return amax / 16 * slack * 1.01 + tiny;
    case QT_Q4_1:
    case QT_Q5_1: {
        int qmax = type == QT_Q4_1 ? 15 : 31;
        double range = bmax - bmin;
        return 0.5 * range / qmax * slack + (amax + range) / 1024 + tiny;
    }
    case QT_Q2_K:
    case QT_Q4_K:
    case QT_Q5_K: {
        int qmax = type == QT_Q2_K ? 3 : type == QT_Q4_K ? 15 : 31;
        int smax = type == QT_Q2_K ? 15 : 63;
        double dmin = rmax / smax * f16u, d = (rmax + dmin) / (qmax * smax) * f16u;
        return 0.5 * ((r + dmin) / qmax + d) * slack + tiny;
    }
    case QT_Q3_K:
    case QT_Q6_K: {
        int qabs = type == QT_Q3_K ? 4 : 32, smax = type == QT_Q3_K ? 31 : 127;
        double d = amax_all / qabs / smax * f16u;
        return (amax / qabs + d) * slack + tiny;
    }
    default:
        return INFINITY;
    }
}

static int sub_size(int type) {
    switch (type) {
    case QT_Q2_K:
    case QT_Q3_K:
    case QT_Q6_K:
        return 16;
    case QT_Q4_K:
    case QT_Q5_K:
        return 32;
    default:
        return quant_get(type)->block;
    }
}

static void test_round_trip(const type_info *ti) {
    const quant_traits *t = quant_get(ti->type);
    const int64_t n = 16 * 256; /* a row of 4096, 8 rows per distribution */
    float *x = malloc(n * 4), *y = malloc(n * 4), *v = malloc(n * 4);
    uint8_t *row = malloc(quant_row_size(ti->type, n));
    double worst[NDIST] = {0}, worst_dot = 0, worst_ratio = 0;
    int64_t bound_fail = 0;
    for (int dist = 0; dist < NDIST; dist++) {
        for (int rep = 0; rep < 8; rep++) {
            fill(x, n, dist);
            t->quant(x, row, n);
            t->dequant(row, y, n);
            double err = sq_err(x, y, n), energy = 0;
            for (int64_t i = 0; i < n; i++) energy += (double)x[i] * x[i];
            double rel = sqrt(err / energy);
            worst[dist] = fmax(worst[dist], rel);
            CHECK(rel <= ti->rms_bound[dist], "%s %s: relative RMS error %.5f > bound %.5f",
                  t->name, DIST_NAMES[dist], rel, ti->rms_bound[dist]);

            if (t->block > 1) { /* the per-(sub-)block guarantee */
                int sub = sub_size(ti->type);
                for (int64_t b = 0; b < n; b += t->block) {
                    for (int lo = 0; lo < t->block; lo += sub) {
                        double e = sqrt(sq_err(x + b + lo, y + b + lo, sub) / sub);
                        double bound = sub_bound(ti->type, x + b, t->block, sub, lo);
                        worst_ratio = fmax(worst_ratio, e / bound);
                        if (e > bound) {
                            if (!bound_fail)
                                printf("  %s %s: block %lld sub %d: RMS error %.6g > bound %.6g\n",
                                       t->name, DIST_NAMES[dist], (long long)(b / t->block),
                                       lo / sub, e, bound);
                            bound_fail++;
                        }
                    }
                }
            } else if (ti->type != QT_F32) { /* F16 / BF16: per element */
                double rel_el = ti->type == QT_F16 ? 1.0 / 2048 : 1.0 / 256;
                for (int64_t i = 0; i < n; i++)
                    if (fabs((double)x[i] - y[i]) > rel_el * fabs(x[i]) + 1e-7) bound_fail++;
            }

            /* layout-specific extras written by the quantizer */
            if (ti->type == QT_Q8_K) {
                for (int64_t b = 0; b < n / 256; b++) {
                    const uint8_t *blk = row + 292 * b;
                    for (int j = 0; j < 16; j++) {
                        int sum = 0;
                        for (int e = 0; e < 16; e++) sum += (int8_t)blk[4 + 16 * j + e];
                        int16_t bs = (int16_t)(blk[260 + 2 * j] | blk[261 + 2 * j] << 8);
                        CHECK(bs == sum, "Q8_K bsums[%d] = %d, sum is %d", j, bs, sum);
                    }
                }
            }
            if (ti->type == QT_Q8_1) {
                for (int64_t b = 0; b < n / 32; b++) {
                    const uint8_t *blk = row + 36 * b;
                    int sum = 0;
                    for (int e = 0; e < 32; e++) sum += (int8_t)blk[4 + e];
                    double d = fp16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
                    double s = fp16_to_f32((uint16_t)(blk[2] | blk[3] << 8));
                    CHECK(fabs(s - d * sum) <= fabs(d * sum) / 1024 + 1e-7,
                          "Q8_1 s = %g, d*sum(q) = %g", s, d * sum);
                }
            }

            /* (c) dot against the dequantized row */
            for (int64_t i = 0; i < n; i++) v[i] = (float)rng_normal();
            double rel_dot;
            CHECK(dot_matches(t, row, y, v, n, &rel_dot), "%s %s: dot off by %.3g", t->name,
                  DIST_NAMES[dist], rel_dot);
            worst_dot = fmax(worst_dot, rel_dot);
        }
    }
    CHECK(bound_fail == 0, "%s: %lld (sub-)blocks over their guaranteed bound", t->name,
          (long long)bound_fail);
    printf("  %-5s rel RMS (bound): normal %.5f (%.4f) uniform %.5f (%.4f) outliers %.5f (%.4f)"
           " positive %.5f (%.4f)  dot err %.1e  worst block/guarantee %.2f\n",
           t->name, worst[0], ti->rms_bound[0], worst[1], ti->rms_bound[1], worst[2],
           ti->rms_bound[2], worst[3], ti->rms_bound[3], worst_dot, worst_ratio);
    free(x), free(y), free(v), free(row);
}

/* (e) bad input: non-finite and extreme values in one block must not crash
 * (run under the sanitizers) nor disturb the other blocks of the row. */
static void test_bad_input(const type_info *ti) {
    const quant_traits *t = quant_get(ti->type);
    if (t->block == 1) return; /* plain conversions: nothing to disturb */
    const int64_t n = 4 * (int64_t)t->block;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    uint8_t *row = malloc(quant_row_size(ti->type, n));
    const float bad[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 1e-30f, 0.0f};
    for (int k = 0; k < (int)ARRAY_LEN(bad); k++) {
        fill(x, n, DIST_NORMAL);
        for (int i = 0; i < t->block; i += 7) x[i] = bad[k]; /* block 0 only */
        t->quant(x, row, n);
        t->dequant(row, y, n);
        (void)t->dot(row, x + t->block, n - t->block); /* just must not crash */
        int sub = sub_size(ti->type);
        for (int64_t b = t->block; b < n; b += t->block)
            for (int lo = 0; lo < t->block; lo += sub) {
                double e = sqrt(sq_err(x + b + lo, y + b + lo, sub) / sub);
                CHECK(e <= sub_bound(ti->type, x + b, t->block, sub, lo),
                      "%s: a %g in block 0 disturbed block %lld", t->name, bad[k],
                      (long long)(b / t->block));
            }
    }
    free(x), free(y), free(row);
}

int main(void) {
    check_seed();

    test_table();

    printf("goldens (gguf package):\n");
    const char *dump = getenv("BEAST_QUANT_DUMP");
    for (int i = 0; i < NTYPES; i++) {
        const quant_traits *t = quant_get(TYPES[i].type);
        char path[512];
        snprintf(path, sizeof path, "data/quant/%s.bin", t->name);
        int64_t values = check_golden_file(path, TYPES[i].type);
        printf("  %-5s %lld golden values checked\n", t->name, (long long)values);
        if (dump) {
            snprintf(path, sizeof path, "%s/%s.bin", dump, t->name);
            if (access(path, R_OK) == 0) {
                values = check_golden_file(path, TYPES[i].type);
                printf("  %-5s %lld real-model values checked (%s)\n", t->name, (long long)values,
                       path);
            }
        }
    }

    printf("round trips (worst of 8 rows of 4096 per distribution):\n");
    for (int i = 0; i < NTYPES; i++) test_round_trip(&TYPES[i]);
    for (int i = 0; i < NTYPES; i++) test_bad_input(&TYPES[i]);
    printf("bad input (NaN, inf, 1e30, 1e-30 in a block): no effect on the other blocks\n");

    return check_done();
}
