/* quant_fit.c: the scale searches the reference quantizers share: nearest
 * integer assignment, f16 rounding helpers, and the symmetric (x ~ s*q) and
 * affine (x ~ s*q + b) scale fits. See quant_impl.h for the contracts.
 *
 * The search, in words: start from the min/max scale (the one that maps the
 * extreme element(s) exactly onto the end of the integer range, so nothing is
 * clipped by more than one step), then try a grid of narrower ranges (down to
 * half), which trade clipping a few extreme elements for finer steps for all
 * the others. For every candidate, assign each element its nearest integer,
 * then also try the least-squares scale (and offset) for that assignment,
 * re-assigned. The candidate with the smallest squared error wins. Because the
 * min/max scale is always a candidate, the result is never worse than it,
 * which is what the error bounds in quant_legacy.c / quant_k.c rest on. */
#include <math.h>

#include "quant/quant_impl.h"

#define FIT_STEPS  10    /* grid candidates after the min/max one */
#define FIT_SHRINK 0.05f /* each step narrows the range by 5% */

int quant_nearest(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo; /* also NaN */
    if (v >= (float)hi) return hi;
    return (int)rintf(v); /* ties to even; one instruction, unlike roundf */
}

uint16_t quant_f16_sat(float v) {
    if (v > 65504.0f) return 0x7bff;
    if (v < -65504.0f) return 0xfbff;
    return f32_to_fp16(v);
}

uint16_t quant_f16_up(float v) {
    uint16_t h = quant_f16_sat(v);
    /* for a positive half, the next larger value is the next bit pattern */
    if (fp16_to_f32(h) < v && h < 0x7bff) h++;
    return h;
}

static float maybe_f16(float v, int round_f16) {
    return round_f16 ? fp16_to_f32(quant_f16_sat(v)) : v;
}

double quant_assign_sym(const float *x, int n, float s, int qmin, int qmax, int8_t *q) {
    double err = 0;
    float inv = s != 0 ? 1.0f / s : 0.0f; /* multiplying is much cheaper than dividing */
    for (int i = 0; i < n; i++) {
        int qi = quant_nearest(x[i] * inv, qmin, qmax);
        q[i] = (int8_t)qi;
        double e = (double)x[i] - (double)(s * (float)qi);
        err += e * e;
    }
    return err;
}

double quant_assign_affine(const float *x, int n, float s, float b, int qmax, int8_t *q) {
    double err = 0;
    float inv = s != 0 ? 1.0f / s : 0.0f;
    for (int i = 0; i < n; i++) {
        int qi = quant_nearest((x[i] - b) * inv, 0, qmax);
        q[i] = (int8_t)qi;
        double e = (double)x[i] - (double)(s * (float)qi + b);
        err += e * e;
    }
    return err;
}

float quant_fit_sym(const float *x, int n, int qmin, int qmax, int round_f16) {
    float m = 0; /* the element of largest magnitude, with its sign */
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(m)) m = x[i];
    if (m == 0) return 0;

    int8_t q[QUANT_MAX_BLOCK];
    float best = maybe_f16(m / (float)qmin, round_f16); /* min/max: m -> qmin */
    double best_err = quant_assign_sym(x, n, best, qmin, qmax, q);

    for (int k = 0; k <= FIT_STEPS; k++) {
        /* m -> -r, r from |qmin| + 1/2 down to about half of that */
        float r = ((float)-qmin + 0.5f) * (1.0f - FIT_SHRINK * (float)k);
        float s = maybe_f16(-m / r, round_f16);
        double err = quant_assign_sym(x, n, s, qmin, qmax, q);
        if (err < best_err) best_err = err, best = s;

        double sum_xq = 0, sum_qq = 0; /* least squares for this assignment */
        for (int i = 0; i < n; i++) {
            sum_xq += (double)x[i] * q[i];
            sum_qq += (double)q[i] * q[i];
        }
        if (sum_qq > 0) {
            s = maybe_f16((float)(sum_xq / sum_qq), round_f16);
            err = quant_assign_sym(x, n, s, qmin, qmax, q);
            if (err < best_err) best_err = err, best = s;
        }
    }
    return best;
}

void quant_fit_affine(const float *x, int n, int qmax, int b_nonpos, int round_f16, float *s_out,
                      float *b_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (b_nonpos && lo > 0) lo = 0;
    if (!(hi > lo)) { /* constant block (or NaNs): the offset says it all */
        *s_out = 0;
        *b_out = maybe_f16(lo, round_f16);
        return;
    }

    int8_t q[QUANT_MAX_BLOCK];
    float best_s = maybe_f16((hi - lo) / (float)qmax, round_f16); /* min/max */
    float best_b = maybe_f16(lo, round_f16);
    double best_err = quant_assign_affine(x, n, best_s, best_b, qmax, q);

    for (int k = 0; k <= FIT_STEPS; k++) {
        /* a range narrower by k steps, centred on the data's */
        float range = (hi - lo) * (1.0f - FIT_SHRINK * (float)k);
        float s = maybe_f16(range / (float)qmax, round_f16);
        float b = lo + 0.5f * ((hi - lo) - range);
        if (b_nonpos && b > 0) b = 0;
        b = maybe_f16(b, round_f16);
        double err = quant_assign_affine(x, n, s, b, qmax, q);
        if (err < best_err) best_err = err, best_s = s, best_b = b;

        /* least squares (s, b) for this assignment */
        double sq = 0, sqq = 0, sx = 0, sxq = 0;
        for (int i = 0; i < n; i++) {
            sq += q[i];
            sqq += (double)q[i] * q[i];
            sx += x[i];
            sxq += (double)x[i] * q[i];
        }
        double det = n * sqq - sq * sq;
        if (!(det > 0)) continue;
        double s2 = (n * sxq - sq * sx) / det;
        double b2 = (sx - s2 * sq) / n;
        if (b_nonpos && b2 > 0) b2 = 0, s2 = sxq / sqq;
        if (!(s2 > 0)) continue;
        s = maybe_f16((float)s2, round_f16);
        b = maybe_f16((float)b2, round_f16);
        err = quant_assign_affine(x, n, s, b, qmax, q);
        if (err < best_err) best_err = err, best_s = s, best_b = b;
    }
    *s_out = best_s;
    *b_out = best_b;
}
