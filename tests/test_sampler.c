/* test_sampler.c: the sampler (src/sampler/sampler.c) against slow reference
 * computations on fresh random logits, and the stop-string matcher
 * (src/sampler/stop.c) against a whole-text reference.
 * The seed is printed; set BEAST_TEST_SEED to replay a run. */
#include "sampler/sampler.h"
#include "sampler/stop.h"
#include "util/util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int n_fail, n_check;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        n_check++;                                                                                 \
        if (!(cond)) {                                                                             \
            n_fail++;                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* ---- test randomness (independent of the sampler's PRNG) --------------- */

static uint64_t rs;
static uint64_t rnd(void) {
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rnd_unit(void) {
    return (double)(rnd() >> 11) * 0x1.0p-53;
}
static float rnd_range(double lo, double hi) {
    return (float)(lo + (hi - lo) * rnd_unit());
}
static int rnd_int(int n) {
    return (int)(rnd() % (uint64_t)n);
}

static void rnd_logits(float *l, int n, double lo, double hi) {
    for (int i = 0; i < n; i++) l[i] = rnd_range(lo, hi);
}

static sampler_params plain_params(float temp) {
    sampler_params p = sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.seed = rnd();
    return p;
}

/* ---- slow references ---------------------------------------------------- */

static float ref_clean(float x) {
    return x != x ? -INFINITY : x == INFINITY ? FLT_MAX : x;
}

static int ref_argmax(const float *l, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (ref_clean(l[i]) != -INFINITY && (best < 0 || ref_clean(l[i]) > ref_clean(l[best])))
            best = i;
    return best;
}

static const float *sort_key;
static int cmp_ids(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    float lx = ref_clean(sort_key[x]), ly = ref_clean(sort_key[y]);
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* The set the sampler may draw from and each member's probability, by the
 * documented pipeline with a full sort. Returns the size of the set. */
static int ref_allowed(const float *logits, int n, const sampler_params *p, double *prob) {
    int *ids = malloc((size_t)n * sizeof *ids);
    double *e = malloc((size_t)n * sizeof *e);
    int m = 0;
    for (int i = 0; i < n; i++) {
        prob[i] = 0;
        if (ref_clean(logits[i]) != -INFINITY) ids[m++] = i;
    }
    sort_key = logits;
    qsort(ids, (size_t)m, sizeof *ids, cmp_ids);
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    double maxl = m ? ref_clean(logits[ids[0]]) : 0, z = 0;
    for (int j = 0; j < m; j++) {
        e[j] = exp(((double)ref_clean(logits[ids[j]]) - maxl) / (double)p->temperature);
        z += e[j];
    }
    int keep = m;
    if (p->top_p < 1) {
        double cum = 0;
        for (int j = 0; j < m; j++) {
            cum += e[j];
            if (cum >= (double)p->top_p * z) {
                keep = j + 1;
                break;
            }
        }
    }
    double min_p = p->min_p > 1 ? 1 : p->min_p, total = 0;
    int count = 0;
    for (int j = 0; j < keep; j++) {
        if (min_p > 0 && e[j] < min_p) continue;
        prob[ids[j]] = e[j];
        total += e[j];
        count++;
    }
    for (int i = 0; i < n; i++) prob[i] /= total;
    free(ids);
    free(e);
    return count;
}

/* Pearson chi-square of observed counts against probabilities; categories
 * expecting fewer than 5 draws are pooled. True when the statistic is below
 * a bound that a correct sampler exceeds with probability < 1e-6. */
static int chi_square_ok(const long *obs, const double *prob, int n, long draws, double *stat_out) {
    double stat = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        double ex = prob[i] * (double)draws;
        if (ex < 5) {
            pool_e += ex;
            pool_o += (double)obs[i];
            continue;
        }
        stat += ((double)obs[i] - ex) * ((double)obs[i] - ex) / ex;
        cells++;
    }
    if (pool_e >= 1) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        cells++;
    }
    double df = cells > 1 ? cells - 1 : 1;
    *stat_out = stat;
    return stat < df + 7 * sqrt(2 * df) + 12;
}

/* ---- sampler tests ------------------------------------------------------ */

static void test_greedy(void) {
    for (int trial = 0; trial < 20; trial++) {
        int n = 1 + rnd_int(3000);
        float *l = malloc((size_t)n * sizeof *l);
        rnd_logits(l, n, -20, 20);
        if (n > 2 && trial % 2) { /* a tie for the maximum: the lower id wins */
            int a = rnd_int(n), b = rnd_int(n);
            int hi = ref_argmax(l, n);
            l[a] = l[b] = l[hi] + 1;
        }
        sampler_params p = plain_params(trial % 3 ? 0.0f : -1.0f);
        sampler *s = sampler_new(&p, n);
        int32_t t = sampler_sample(s, l);
        CHECK(t == ref_argmax(l, n), "greedy n=%d: got %d want %d", n, t, ref_argmax(l, n));
        sampler_free(s);

        /* top_k = 1 is greedy at any temperature */
        float temps[] = {1e-6f, 0.7f, 1.0f, 5.0f, 1e30f, INFINITY};
        for (size_t k = 0; k < ARRAY_LEN(temps); k++) {
            p = plain_params(temps[k]);
            p.top_k = 1;
            p.top_p = rnd_range(0, 1);
            s = sampler_new(&p, n);
            for (int d = 0; d < 5; d++) {
                t = sampler_sample(s, l);
                CHECK(t == ref_argmax(l, n), "top_k=1 T=%g: got %d want %d", (double)temps[k], t,
                      ref_argmax(l, n));
            }
            sampler_free(s);
        }
        free(l);
    }
}

static void test_determinism(void) {
    int n = 5000;
    float *l = malloc((size_t)n * sizeof *l);
    sampler_params p = sampler_default_params();
    p.seed = rnd();
    p.temperature = 1.5f;
    p.top_k = 0;
    p.repeat_penalty = 1.2f;
    p.presence_penalty = 0.3f;
    sampler *a = sampler_new(&p, n), *b = sampler_new(&p, n);
    int32_t seq[300];
    int differ = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t save = rs;
        for (int i = 0; i < 300; i++) {
            rnd_logits(l, n, 0, 2);
            int32_t x = sampler_sample(a, l), y = sampler_sample(b, l);
            CHECK(x == y, "same seed, step %d: %d vs %d", i, x, y);
            if (pass == 0)
                seq[i] = x;
            else
                CHECK(seq[i] == x, "after reset, step %d: %d vs %d", i, x, seq[i]);
            sampler_accept(a, x);
            sampler_accept(b, y);
        }
        rs = save; /* replay the same logits after the reset */
        sampler_reset(a);
        sampler_reset(b);
    }
    /* another seed gives another sequence (flat logits: equality is ~impossible) */
    p.seed ^= 1;
    sampler *c = sampler_new(&p, n);
    for (int i = 0; i < 300; i++) {
        rnd_logits(l, n, 0, 2);
        int32_t x = sampler_sample(c, l);
        differ += x != seq[i];
        sampler_accept(c, x);
    }
    CHECK(differ > 0, "a different seed gave the same 300 tokens");
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
    free(l);
}

/* Many draws from a small vocabulary: every token in the reference set, and
 * frequencies matching the reference probabilities. */
static void check_distribution(const float *l, int n, const sampler_params *p, long draws,
                               const char *what) {
    double *prob = malloc((size_t)n * sizeof *prob);
    long *obs = calloc((size_t)n, sizeof *obs);
    ref_allowed(l, n, p, prob);
    sampler *s = sampler_new(p, n);
    int outside = 0;
    for (long d = 0; d < draws; d++) {
        int32_t t = sampler_sample(s, l);
        if (t < 0 || t >= n || prob[t] == 0)
            outside++;
        else
            obs[t]++;
    }
    double stat;
    int ok = chi_square_ok(obs, prob, n, draws, &stat);
    CHECK(outside == 0, "%s: %d draws outside the allowed set", what, outside);
    CHECK(ok, "%s: chi-square %.1f too large (n=%d, T=%g k=%d p=%g min_p=%g)", what, stat, n,
          (double)p->temperature, p->top_k, (double)p->top_p, (double)p->min_p);
    sampler_free(s);
    free(prob);
    free(obs);
}

static void test_distribution(void) {
    float l[16];
    for (int trial = 0; trial < 6; trial++) {
        int n = 4 + rnd_int(13);
        rnd_logits(l, n, -2, 2);
        sampler_params p = plain_params(rnd_range(0.5, 2));
        check_distribution(l, n, &p, 200000, "softmax");
        p.top_k = 2 + rnd_int(n - 2);
        p.top_p = rnd_range(0.5, 0.95);
        p.min_p = rnd_range(0.02, 0.3);
        check_distribution(l, n, &p, 100000, "top_k+top_p+min_p");
    }
    /* huge temperature: uniform */
    rnd_logits(l, 10, -3, 3);
    sampler_params p = plain_params(INFINITY);
    check_distribution(l, 10, &p, 100000, "T=inf");
    double u[10];
    for (int i = 0; i < 10; i++) u[i] = 0.1;
    long obs[10] = {0};
    p = plain_params(1e7f);
    sampler *s = sampler_new(&p, 10);
    for (int d = 0; d < 100000; d++) obs[sampler_sample(s, l)]++;
    double stat;
    CHECK(chi_square_ok(obs, u, 10, 100000, &stat), "T=1e7 not uniform: chi-square %.1f", stat);
    sampler_free(s);
    /* tiny temperature: argmax whenever the gap is not tiny */
    rnd_logits(l, 16, -3, 3);
    l[rnd_int(16)] = 4;
    p = plain_params(1e-4f);
    s = sampler_new(&p, 16);
    for (int d = 0; d < 1000; d++) {
        int32_t t = sampler_sample(s, l);
        CHECK(t == ref_argmax(l, 16), "T=1e-4: got %d want %d", t, ref_argmax(l, 16));
    }
    sampler_free(s);
}

/* top_k / top_p / min_p only return tokens of the reference set. */
static void test_allowed_sets(void) {
    int ks[] = {0, 1, 2, 7, 40, 300, 1999, 5000};
    float ps[] = {1, 0.97f, 0.9f, 0.5f, 0.1f, 0};
    float mins[] = {0, 0.005f, 0.05f, 0.3f, 1.5f};
    int n = 2000;
    float *l = malloc((size_t)n * sizeof *l);
    double *prob = malloc((size_t)n * sizeof *prob);
    for (int trial = 0; trial < 60; trial++) {
        double scale = rnd_range(0.5, 15);
        rnd_logits(l, n, -scale, scale);
        for (int i = 0; i < 20; i++) l[rnd_int(n)] = -INFINITY;
        if (trial % 4 == 0) /* duplicated values to exercise tie-breaking */
            for (int i = 0; i < 200; i++) l[rnd_int(n)] = l[rnd_int(n)];
        sampler_params p = plain_params(rnd_range(0.1, 3));
        p.top_k = ks[rnd_int(ARRAY_LEN(ks))];
        p.top_p = ps[rnd_int(ARRAY_LEN(ps))];
        p.min_p = mins[rnd_int(ARRAY_LEN(mins))];
        int count = ref_allowed(l, n, &p, prob);
        sampler *s = sampler_new(&p, n);
        int bad = 0, seen = 0;
        char *hit = calloc((size_t)n, 1);
        for (int d = 0; d < 400; d++) {
            int32_t t = sampler_sample(s, l);
            if (t < 0 || t >= n || prob[t] == 0)
                bad++;
            else if (!hit[t])
                hit[t] = 1, seen++;
        }
        CHECK(bad == 0, "k=%d p=%g min_p=%g T=%g: %d of 400 draws outside a set of %d", p.top_k,
              (double)p.top_p, (double)p.min_p, (double)p.temperature, bad, count);
        CHECK(count > 1 || seen == 1, "single allowed token but %d distinct draws", seen);
        free(hit);
        sampler_free(s);
    }
    free(l);
    free(prob);

    /* full-size vocabulary with a wide nucleus: top_p must order far more
     * than its first chunk */
    n = 262144;
    l = malloc((size_t)n * sizeof *l);
    prob = malloc((size_t)n * sizeof *prob);
    rnd_logits(l, n, 0, 3);
    sampler_params p = plain_params(1.0f);
    p.top_p = 0.6f;
    int count = ref_allowed(l, n, &p, prob);
    sampler *s = sampler_new(&p, n);
    int bad = 0;
    for (int d = 0; d < 50; d++) {
        int32_t t = sampler_sample(s, l);
        if (t < 0 || prob[t] == 0) bad++;
    }
    CHECK(count > 10000, "big nucleus expected, got %d", count);
    CHECK(bad == 0, "n=262144 top_p=0.6: %d of 50 draws outside the nucleus", bad);
    sampler_free(s);
    /* and the defaults on the same vocabulary */
    p = sampler_default_params();
    p.seed = rnd();
    count = ref_allowed(l, n, &p, prob);
    s = sampler_new(&p, n);
    bad = 0;
    for (int d = 0; d < 200; d++) {
        int32_t t = sampler_sample(s, l);
        if (t < 0 || prob[t] == 0) bad++;
    }
    CHECK(bad == 0, "n=262144 defaults: %d of 200 draws outside a set of %d", bad, count);
    sampler_free(s);
    free(l);
    free(prob);
}

/* The logits after bias and penalties, exactly as documented. */
static void test_penalties(void) {
    int n = 500;
    float *l = malloc((size_t)n * sizeof *l), *want = malloc((size_t)n * sizeof *want);
    int32_t hist[400];
    int *count = malloc((size_t)n * sizeof *count);
    int windows[] = {16, 1, -1, 0, 1000, 64};
    for (int trial = 0; trial < 24; trial++) {
        rnd_logits(l, n, -5, 5);
        sampler_bias bias[6], saved[6];
        for (int i = 0; i < 6; i++) bias[i] = (sampler_bias){rnd_int(n), rnd_range(-3, 3)};
        bias[5].token = bias[4].token; /* the same token twice: both apply */
        memcpy(saved, bias, sizeof bias);
        sampler_params p = plain_params(1.0f);
        p.repeat_last_n = windows[trial % ARRAY_LEN(windows)];
        p.repeat_penalty = trial % 3 ? rnd_range(0.5, 2) : 1.0f;
        p.presence_penalty = rnd_range(-1, 1);
        p.frequency_penalty = trial % 2 ? rnd_range(-1, 1) : 0.0f;
        p.bias = bias;
        p.n_bias = trial % 4 < 2 ? 6 : 0;
        sampler *s = sampler_new(&p, n);
        bias[0].bias = 1000; /* the sampler must have its own copy */
        int nh = rnd_int(400);
        for (int i = 0; i < nh; i++) {
            hist[i] = rnd_int(40); /* few distinct tokens: many repeats */
            sampler_accept(s, hist[i]);
        }
        sampler_accept(s, -1); /* ignored */
        sampler_accept(s, n);  /* ignored */
        CHECK(sampler_last_logits(s) == NULL, "last logits before any sample");
        CHECK(sampler_sample(s, l) >= 0, "sample failed");
        const float *got = sampler_last_logits(s);

        memcpy(want, l, (size_t)n * sizeof *want);
        for (int i = 0; i < p.n_bias; i++) want[saved[i].token] += saved[i].bias;
        memset(count, 0, (size_t)n * sizeof *count);
        int from = p.repeat_last_n < 0 ? 0 : MAX(0, nh - p.repeat_last_n);
        for (int i = from; i < nh; i++) count[hist[i]]++;
        int bad = 0, changed = 0;
        for (int t = 0; t < n; t++) {
            float w = want[t];
            if (count[t] > 0) {
                if (p.repeat_penalty != 1) w = w > 0 ? w / p.repeat_penalty : w * p.repeat_penalty;
                w -= p.presence_penalty + p.frequency_penalty * (float)count[t];
                changed++;
                if (fabsf(got[t] - w) > 1e-6f * (1 + fabsf(w))) bad++;
            } else if (got[t] != w) {
                bad++; /* untouched logits must be bit-identical */
            }
        }
        CHECK(bad == 0, "penalties (window %d, %d accepted, %d changed): %d logits wrong",
              p.repeat_last_n, nh, changed, bad);
        sampler_free(s);
    }
    free(l);
    free(want);
    free(count);
}

static void test_bias_and_edges(void) {
    int n = 300;
    float *l = malloc((size_t)n * sizeof *l);
    rnd_logits(l, n, -4, 4);
    int top = ref_argmax(l, n);

    /* -inf bias bans the argmax in greedy and sampled modes */
    sampler_bias ban = {top, -INFINITY};
    sampler_params p = plain_params(0);
    p.bias = &ban;
    p.n_bias = 1;
    sampler *s = sampler_new(&p, n);
    float keep = l[top];
    l[top] = -INFINITY;
    int second = ref_argmax(l, n);
    l[top] = keep;
    CHECK(sampler_sample(s, l) == second, "banned argmax still chosen by greedy");
    sampler_free(s);
    p = plain_params(5.0f); /* flat distribution: a leak would show */
    p.bias = &ban;
    p.n_bias = 1;
    s = sampler_new(&p, n);
    int leaks = 0;
    for (int d = 0; d < 20000; d++) leaks += sampler_sample(s, l) == top;
    CHECK(leaks == 0, "banned token drawn %d times", leaks);
    sampler_free(s);

    /* +inf bias forces a token */
    sampler_bias force = {rnd_int(n), INFINITY};
    p = plain_params(1.0f);
    p.bias = &force;
    p.n_bias = 1;
    s = sampler_new(&p, n);
    for (int d = 0; d < 100; d++)
        CHECK(sampler_sample(s, l) == force.token, "+inf bias did not force the token");
    sampler_free(s);

    /* all -inf but one; NaN everywhere but one; all -inf */
    float *odd = malloc((size_t)n * sizeof *odd);
    int only = rnd_int(n);
    for (int variant = 0; variant < 3; variant++) {
        for (int i = 0; i < n; i++) odd[i] = variant == 1 ? NAN : -INFINITY;
        if (variant < 2) odd[only] = rnd_range(-100, 100);
        for (int mode = 0; mode < 4; mode++) {
            p = mode == 0 ? plain_params(0) : sampler_default_params();
            p.seed = rnd();
            if (mode == 2) p.top_k = 0;
            if (mode == 3) p.temperature = 1e-30f;
            s = sampler_new(&p, n);
            int32_t t = sampler_sample(s, odd);
            if (variant < 2)
                CHECK(t == only, "variant %d mode %d: got %d want %d", variant, mode, t, only);
            else
                CHECK(t == -1, "all -inf: got %d want -1", t);
            sampler_free(s);
        }
    }
    /* NaN sprinkled among normal logits never comes out */
    rnd_logits(odd, n, -1, 1);
    for (int i = 0; i < n; i += 3) odd[i] = NAN;
    p = plain_params(2.0f);
    s = sampler_new(&p, n);
    int nan_drawn = 0;
    for (int d = 0; d < 5000; d++) nan_drawn += sampler_sample(s, odd) % 3 == 0;
    CHECK(nan_drawn == 0, "NaN logits drawn %d times", nan_drawn);
    sampler_free(s);
    /* two +inf logits share the draws */
    rnd_logits(odd, n, -1, 1);
    int a = rnd_int(n / 2), b = n / 2 + rnd_int(n / 2);
    odd[a] = odd[b] = INFINITY;
    p = plain_params(1.0f);
    s = sampler_new(&p, n);
    long ca = 0, cb = 0, other = 0;
    for (int d = 0; d < 10000; d++) {
        int32_t t = sampler_sample(s, odd);
        ca += t == a, cb += t == b, other += t != a && t != b;
    }
    CHECK(other == 0 && ca > 4500 && cb > 4500, "+inf pair: %ld %ld other %ld", ca, cb, other);
    sampler_free(s);
    free(odd);

    /* n_vocab = 1 */
    float one = rnd_range(-5, 5);
    p = sampler_default_params();
    s = sampler_new(&p, 1);
    for (int d = 0; d < 10; d++) CHECK(sampler_sample(s, &one) == 0, "n_vocab=1");
    sampler_free(s);

    /* bad parameters are refused, not crashed on */
    sampler_bias outside = {n, 1};
    p = sampler_default_params();
    CHECK(sampler_new(&p, 0) == NULL, "n_vocab 0 accepted");
    p.bias = &outside;
    p.n_bias = 1;
    CHECK(sampler_new(&p, n) == NULL, "out-of-range bias accepted");
    p = sampler_default_params();
    p.temperature = NAN;
    CHECK(sampler_new(&p, n) == NULL, "NaN temperature accepted");
    p = sampler_default_params();
    p.repeat_penalty = 0;
    CHECK(sampler_new(&p, n) == NULL, "repeat_penalty 0 accepted");
    p = sampler_default_params();
    p.repeat_last_n = -2;
    CHECK(sampler_new(&p, n) == NULL, "repeat_last_n -2 accepted");
    CHECK(sampler_sample(NULL, l) == -1, "NULL sampler");
    free(l);
}

static void test_logprobs(void) {
    for (int trial = 0; trial < 10; trial++) {
        int n = 1 + rnd_int(5000);
        float *l = malloc((size_t)n * sizeof *l);
        rnd_logits(l, n, -10, 10);
        if (n > 4) l[rnd_int(n)] = -INFINITY, l[rnd_int(n)] = NAN;
        double maxl = -INFINITY, z = 0;
        for (int i = 0; i < n; i++) maxl = fmax(maxl, ref_clean(l[i]));
        for (int i = 0; i < n; i++) z += exp(ref_clean(l[i]) - maxl);
        double lse = maxl + log(z);

        int nt = 1 + rnd_int(25);
        int32_t ids[30];
        float lp[30], tlp;
        int32_t tok = rnd_int(n);
        int got = sampler_logprobs(l, n, tok, &tlp, nt, ids, lp);
        int finite = 0;
        for (int i = 0; i < n; i++) finite += ref_clean(l[i]) != -INFINITY;
        CHECK(got == MIN(nt, finite), "logprobs count %d want %d", got, MIN(nt, finite));
        double want_t = ref_clean(l[tok]) - lse;
        CHECK(ref_clean(l[tok]) == -INFINITY ? tlp == -INFINITY : fabs(tlp - want_t) < 1e-4,
              "token logprob %g want %g", (double)tlp, want_t);
        int *order = malloc((size_t)n * sizeof *order);
        for (int i = 0; i < n; i++) order[i] = i;
        sort_key = l;
        qsort(order, (size_t)n, sizeof *order, cmp_ids);
        for (int j = 0; j < got; j++) {
            CHECK(ids[j] == order[j], "top %d: id %d want %d", j, ids[j], order[j]);
            CHECK(fabs(lp[j] - (l[order[j]] - lse)) < 1e-4, "top %d: logprob %g want %g", j,
                  (double)lp[j], l[order[j]] - lse);
        }
        free(order);
        free(l);
    }
    float none[3] = {-INFINITY, NAN, -INFINITY}, tlp = 0;
    int32_t id;
    float lp;
    CHECK(sampler_logprobs(none, 3, 1, &tlp, 1, &id, &lp) == 0 && tlp == -INFINITY,
          "all -inf logprobs");
    CHECK(sampler_logprobs(none, 3, 3, &tlp, 0, NULL, NULL) == -1, "token out of range");
}

/* ---- sampling from candidates ----------------------------------------- */

/* The n <= K best finite clean logits, best first (lower id on ties), by a
 * full sort: what beast_candidates gives. Returns n. */
static int ref_cands(const float *l, int n, int K, beast_cand *out) {
    int *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = i;
    sort_key = l;
    qsort(ids, (size_t)n, sizeof *ids, cmp_ids);
    int m = 0;
    while (m < K && m < n && ref_clean(l[ids[m]]) != -INFINITY) {
        out[m] = (beast_cand){ids[m], ref_clean(l[ids[m]])};
        m++;
    }
    free(ids);
    return m;
}

/* Logit rows of several shapes: smooth, peaked, many ties (values on a
 * coarse grid), some -inf / NaN / +inf. */
static void cand_row(float *l, int n, int shape) {
    for (int i = 0; i < n; i++) {
        double g = sqrt(-2 * log(1 - rnd_unit())) * cos(6.283185307179586 * rnd_unit());
        /* smooth, peaked, heavy ties, flat */
        l[i] = shape == 0   ? (float)(2 * g)
               : shape == 1 ? (float)(4 * g + (rnd_int(50) == 0 ? 8 : 0))
               : shape == 2 ? (float)floor(2 * g) * 0.5f
                            : (float)(0.3 * g);
    }
    int extra = rnd_int(4);
    for (int e = 0; e < extra && n > 8; e++) {
        int i = rnd_int(n), kind = rnd_int(5);
        l[i] = kind == 0 ? NAN : kind == 1 ? INFINITY : -INFINITY;
    }
    if (n > 8 && rnd_int(10) == 0) /* most of the row banned: a short list */
        for (int i = 0; i < n; i++)
            if (rnd_int(n) >= 20) l[i] = -INFINITY;
}

static sampler_params cand_params(int n, int32_t *bias_tok, sampler_bias *bias, const float *l) {
    sampler_params p = sampler_default_params();
    p.seed = rnd();
    float temps[] = {0, 0, 0.3f, 0.8f, 1, 1.5f};
    int ks[] = {0, 0, 1, 5, 40, 40, 63, 64, 65, 100};
    float tps[] = {1, 1, 0.5f, 0.9f, 0.95f, 0.99f, 0};
    float mps[] = {0, 0, 0.05f, 0.1f, 0.5f, 1e-6f};
    p.temperature = temps[rnd_int(6)];
    p.top_k = ks[rnd_int(10)];
    p.top_p = tps[rnd_int(7)];
    p.min_p = mps[rnd_int(6)];
    if (rnd_int(3) == 0) { /* the server's defaults */
        p = sampler_default_params();
        p.seed = rnd();
    }
    if (rnd_int(2)) {
        float rps[] = {1, 1.1f, 1.3f, 0.8f};
        float pps[] = {0, 0.5f, -0.5f, 2};
        float fps[] = {0, 0.2f, -0.3f};
        int wins[] = {16, 64, -1, 0};
        p.repeat_penalty = rps[rnd_int(4)];
        p.presence_penalty = pps[rnd_int(4)];
        p.frequency_penalty = fps[rnd_int(3)];
        p.repeat_last_n = wins[rnd_int(4)];
    }
    p.n_bias = 0;
    if (rnd_int(3) == 0) {
        int nb = 1 + rnd_int(4);
        for (int i = 0; i < nb; i++) {
            /* often a top token (so the bias moves a candidate), else any */
            int32_t t = rnd_int(2) ? ref_argmax(l, n) : rnd_int(n);
            if (t < 0) t = rnd_int(n);
            float bs[] = {-INFINITY, -5, -0.5f, 0.5f, 3, INFINITY};
            bias_tok[i] = t;
            bias[i] = (sampler_bias){t, bs[rnd_int(6)]};
        }
        p.bias = bias;
        p.n_bias = nb;
    }
    return p;
}

/* Two samplers with the same parameters and seed: one takes the candidate
 * path whenever it claims exactness, the other always sees the whole row.
 * Their tokens must be identical at every step (which also proves the
 * candidate path consumes the PRNG exactly like the full path). */
static void test_candidates(void) {
    const int K = BEAST_N_CAND;
    long fast[5] = {0}, total[5] = {0}; /* greedy, top_k, min_p, top_p, plain */
    long fast_open[5] = {0};            /* ... with tokens outside the list possibly finite */
    long lp_fast = 0, lp_total = 0;
    int nvs[] = {1, 30, 64, 65, 200, 1000, 5000};
    beast_cand cands[BEAST_N_CAND];
    for (int trial = 0; trial < 600; trial++) {
        int n = nvs[rnd_int(7)];
        float *l = malloc((size_t)n * sizeof *l);
        int32_t bias_tok[8];
        sampler_bias bias[8];
        cand_row(l, n, rnd_int(4));
        sampler_params p = cand_params(n, bias_tok, bias, l);
        sampler *a = sampler_new(&p, n), *b = sampler_new(&p, n);
        if (!a || !b) {
            CHECK(0, "sampler_new: %s", err_get());
            break;
        }
        /* a history of tokens, some among the candidates, some not */
        int nc = ref_cands(l, n, K, cands);
        int hist = rnd_int(40);
        for (int i = 0; i < hist; i++) {
            int32_t t = nc > 0 && rnd_int(2) ? cands[rnd_int(nc)].id : rnd_int(n);
            sampler_accept(a, t);
            sampler_accept(b, t);
        }
        int mode = !(p.temperature > 0)         ? 0
                   : p.top_k > 0 && p.top_k < n ? 1
                   : p.min_p > 0                ? 2
                   : p.top_p < 1                ? 3
                                                : 4;
        for (int step = 0; step < 24; step++) {
            if (step > 0 && step % 6 == 0) cand_row(l, n, rnd_int(4)); /* 6 draws per row */
            nc = ref_cands(l, n, K, cands);
            int32_t ta = -1, tb = sampler_sample(b, l);
            int ok = sampler_sample_cand(a, cands, nc, K, &ta);
            total[mode]++;
            if (ok) {
                fast[mode]++;
                fast_open[mode] += nc == K && n > K;
            } else {
                ta = sampler_sample(a, l);
            }
            CHECK(ta == tb,
                  "trial %d step %d (n %d, %s path, T %g k %d p %g min_p %g rp %g pp %g fp %g "
                  "bias %d): token %d vs full row %d",
                  trial, step, n, ok ? "candidate" : "full", (double)p.temperature, p.top_k,
                  (double)p.top_p, (double)p.min_p, (double)p.repeat_penalty,
                  (double)p.presence_penalty, (double)p.frequency_penalty, p.n_bias, ta, tb);
            if (ta != tb) break;
            if (tb >= 0) {
                sampler_accept(a, tb);
                sampler_accept(b, tb);
            }

            /* log-probabilities of the raw row: the same tokens and order */
            double mx = -INFINITY, z = 0;
            for (int i = 0; i < n; i++) mx = fmax(mx, ref_clean(l[i]));
            for (int i = 0; i < n && mx != -INFINITY; i++) z += exp(ref_clean(l[i]) - mx);
            float lse = mx == -INFINITY ? -INFINITY : (float)(mx + log(z));
            int nt = rnd_int(21);
            int32_t tok = rnd_int(3) == 0 ? rnd_int(n) : tb >= 0 ? tb : 0;
            int32_t id1[20], id2[20];
            float lp1[20], lp2[20], t1 = 0, t2 = 0;
            int g1 = sampler_logprobs_cand(cands, nc, K, lse, n, tok, &t1, nt, id1, lp1);
            int g2 = sampler_logprobs(l, n, tok, &t2, nt, id2, lp2);
            lp_total++;
            if (g1 >= 0) {
                lp_fast++;
                int same = g1 == g2 && (t1 == t2 || fabs(t1 - t2) <= 1e-5 * fmax(1, fabs(t2)));
                for (int j = 0; j < g1 && same; j++)
                    same =
                        id1[j] == id2[j] && fabs(lp1[j] - lp2[j]) <= 1e-5 * fmax(1, fabs(lp2[j]));
                CHECK(same,
                      "logprobs from candidates (n %d, token %d, %d top): %d entries, %g vs "
                      "%d, %g",
                      n, tok, nt, g1, (double)t1, g2, (double)t2);
            } else {
                int in = 0;
                for (int j = 0; j < nc; j++) in |= cands[j].id == tok;
                CHECK(nc == K && nc < n && (!in || MIN(nt, n) > nc),
                      "logprobs refused with a complete list");
            }
        }
        sampler_free(a);
        sampler_free(b);
        free(l);
    }
    const char *names[5] = {"greedy", "top_k", "min_p", "top_p", "temperature only"};
    for (int m = 0; m < 5; m++)
        printf("candidates: %-16s %5ld of %5ld steps on the fast path (%5ld with an open list)\n",
               names[m], fast[m], total[m], fast_open[m]);
    printf("candidates: logprobs %ld of %ld from the candidates\n", lp_fast, lp_total);

    /* The common case must take the fast path: default parameters (top_k 40)
     * and greedy on a smooth row of a larger vocabulary. */
    int n = 32000, hits = 0;
    float *l = malloc((size_t)n * sizeof *l);
    for (int trial = 0; trial < 50; trial++) {
        rnd_logits(l, n, -10, 10);
        sampler_params p = sampler_default_params();
        p.seed = rnd();
        p.temperature = trial % 2 ? 0.8f : 0;
        sampler *a = sampler_new(&p, n), *b = sampler_new(&p, n);
        int nc = ref_cands(l, n, K, cands);
        int32_t ta = -1, tb = sampler_sample(b, l);
        hits += sampler_sample_cand(a, cands, nc, K, &ta);
        CHECK(ta == tb, "default parameters: %d vs %d", ta, tb);
        sampler_free(a);
        sampler_free(b);
    }
    CHECK(hits == 50, "default parameters: fast path %d of 50", hits);
    free(l);

    /* a list out of order, or too long, is refused */
    sampler_params p = sampler_default_params();
    sampler *a = sampler_new(&p, 100);
    beast_cand bad[3] = {{5, 1.0f}, {3, 2.0f}, {7, 0.5f}};
    int32_t t;
    CHECK(sampler_sample_cand(a, bad, 3, K, &t) == 0, "unordered list accepted");
    CHECK(sampler_sample_cand(a, bad, 3, 2, &t) == 0, "n > n_max accepted");
    sampler_free(a);
}

/* ---- stop matcher tests ------------------------------------------------- */

/* Feed pieces, collect everything (feeds + flush). Returns the hit flag. */
static int run_stop(const char *const *stops, int n_stops, const char *const *pieces, int n_pieces,
                    char *out, int *which) {
    stop *st = stop_new(stops, n_stops);
    size_t total = 0;
    int hit = 0;
    char buf[512];
    for (int i = 0; i < n_pieces && !hit; i++) {
        size_t n = stop_feed(st, pieces[i], strlen(pieces[i]), buf, sizeof buf, &hit);
        memcpy(out + total, buf, n);
        total += n;
    }
    total += stop_flush(st, out + total, 512);
    out[total] = 0;
    if (which) *which = stop_which(st);
    stop_free(st);
    return hit;
}

/* True when buf[0..n) is a sequence of whole UTF-8 characters. */
static int utf8_whole_chars(const char *buf, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = (unsigned char)buf[i];
        size_t need = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
        if (need == 0 || i + need > n) return 0;
        for (size_t j = 1; j < need; j++)
            if (((unsigned char)buf[i + j] & 0xc0) != 0x80) return 0;
        i += need;
    }
    return 1;
}

static void test_stop_cases(void) {
    char out[1024];
    int which;
    {
        const char *stops[] = {"ab"}, *pieces[] = {"a", "a", "b", "zzz"};
        int hit = run_stop(stops, 1, pieces, 4, out, &which);
        CHECK(hit && strcmp(out, "a") == 0 && which == 0, "aab: hit %d out '%s'", hit, out);
    }
    {
        const char *stops[] = {"</s>"}, *pieces[] = {"hello <", "/", "s>", " more"};
        int hit = run_stop(stops, 1, pieces, 4, out, NULL);
        CHECK(hit && strcmp(out, "hello ") == 0, "across pieces: '%s'", out);
    }
    { /* the held-back text comes out as soon as it cannot be a stop */
        const char *stops[] = {"</s>"};
        stop *st = stop_new(stops, 1);
        char buf[64];
        int hit;
        size_t n = stop_feed(st, "x </", 4, buf, sizeof buf, &hit);
        CHECK(n == 2 && memcmp(buf, "x ", 2) == 0 && !hit, "held: %zu", n);
        CHECK(stop_pending(st) == 2, "pending %zu", stop_pending(st));
        n = stop_feed(st, "b>", 2, buf, sizeof buf, &hit);
        CHECK(n == 4 && memcmp(buf, "</b>", 4) == 0 && !hit, "released: %zu", n);
        n = stop_feed(st, "<</s", 4, buf, sizeof buf, &hit);
        CHECK(n == 1 && buf[0] == '<' && !hit, "overlap: %zu", n);
        n = stop_feed(st, ">tail", 5, buf, sizeof buf, &hit);
        CHECK(n == 0 && hit && stop_which(st) == 0, "hit after overlap: %zu %d", n, hit);
        n = stop_feed(st, "ignored", 7, buf, sizeof buf, &hit);
        CHECK(n == 0 && hit, "text after a hit: %zu", n);
        CHECK(stop_flush(st, buf, sizeof buf) == 0, "flush after hit");
        stop_reset(st);
        n = stop_feed(st, "ok", 2, buf, sizeof buf, &hit);
        CHECK(n == 2 && !hit && stop_which(st) == -1, "after reset: %zu", n);
        stop_free(st);
    }
    {
        const char *stops[] = {"STOP", "END", ""}, *pieces[] = {"this E", "NDS", " x"};
        int hit = run_stop(stops, 3, pieces, 3, out, &which);
        CHECK(hit && strcmp(out, "this ") == 0 && which == 1, "multi: '%s' which %d", out, which);
    }
    { /* a complete shorter stop wins over a longer one still pending */
        const char *stops[] = {"abcd", "c"}, *pieces[] = {"xab", "c", "d"};
        int hit = run_stop(stops, 2, pieces, 3, out, &which);
        CHECK(hit && strcmp(out, "xab") == 0 && which == 1, "short wins: '%s' %d", out, which);
    }
    { /* no match: the partial tail comes out on flush */
        const char *stops[] = {"<|end|>"}, *pieces[] = {"a<|e", "n"};
        int hit = run_stop(stops, 1, pieces, 2, out, NULL);
        CHECK(!hit && strcmp(out, "a<|en") == 0, "flush partial: '%s'", out);
    }
    { /* UTF-8 stop string and text split inside characters */
        const char *text = "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80!";
        const char *stops[] = {"\xe6\x9c\xac\xe8\xaa\x9e"}; /* "本語" */
        stop *st = stop_new(stops, 1);
        char all[128], buf[64];
        size_t total = 0, len = strlen(text);
        int hit = 0;
        for (size_t i = 0; i < len && !hit; i++) { /* one byte at a time */
            size_t n = stop_feed(st, text + i, 1, buf, sizeof buf, &hit);
            CHECK(utf8_whole_chars(buf, n), "emitted a split UTF-8 character");
            memcpy(all + total, buf, n);
            total += n;
        }
        total += stop_flush(st, all + total, sizeof all - total);
        all[total] = 0;
        CHECK(hit && strcmp(all, "h\xc3\xa9llo \xe6\x97\xa5") == 0, "UTF-8 stop: '%s'", all);
        stop_free(st);
        /* without stops the same bytes pass through intact */
        st = stop_new(NULL, 0);
        total = 0;
        for (size_t i = 0; i < len; i++) {
            size_t n = stop_feed(st, text + i, 1, buf, sizeof buf, &hit);
            CHECK(utf8_whole_chars(buf, n), "emitted a split UTF-8 character");
            memcpy(all + total, buf, n);
            total += n;
        }
        total += stop_flush(st, all + total, sizeof all - total);
        CHECK(total == len && memcmp(all, text, len) == 0 && !hit, "UTF-8 passthrough");
        stop_free(st);
    }
    { /* a tiny output buffer loses nothing */
        const char *stops[] = {"zz"};
        stop *st = stop_new(stops, 1);
        char all[64], c;
        size_t total = 0;
        int hit;
        total += stop_feed(st, "hello world z", 13, &c, 1, &hit);
        all[0] = c;
        while (stop_pending(st) > 2) total += stop_feed(st, NULL, 0, all + total, 1, &hit);
        total += stop_feed(st, "z!", 2, all + total, 1, &hit);
        CHECK(hit, "tiny buffer: no hit");
        size_t n;
        while ((n = stop_flush(st, all + total, 1)) > 0) total += n;
        all[total] = 0;
        CHECK(strcmp(all, "hello world ") == 0, "tiny buffer: '%s'", all);
        stop_free(st);
    }
}

/* Random texts, stops and piece boundaries against a whole-text reference:
 * the emitted text after each piece is exactly the longest prefix that no
 * stop string can still start in (ASCII, so no UTF-8 hold-back). */
static void test_stop_random(void) {
    for (int trial = 0; trial < 2000; trial++) {
        char text[200], stops_buf[4][8], so_far[200];
        const char *stops[4];
        int ns = rnd_int(5), len = 1 + rnd_int(150);
        for (int i = 0; i < ns; i++) {
            int sl = 1 + rnd_int(5);
            for (int j = 0; j < sl; j++) stops_buf[i][j] = (char)('a' + rnd_int(3));
            stops_buf[i][sl] = 0;
            stops[i] = stops_buf[i];
        }
        for (int i = 0; i < len; i++) text[i] = (char)('a' + rnd_int(3 + trial % 5));
        text[len] = 0;

        stop *st = stop_new(stops, ns);
        char out[400], buf[256];
        size_t total = 0;
        int pos = 0, hit = 0, ok = 1;
        while (pos < len && !hit && ok) {
            int piece = 1 + rnd_int(8);
            if (piece > len - pos) piece = len - pos;
            size_t n = stop_feed(st, text + pos, (size_t)piece, buf, sizeof buf, &hit);
            memcpy(out + total, buf, n);
            total += n;
            pos += piece;
            /* reference on the text so far */
            memcpy(so_far, text, (size_t)pos);
            so_far[pos] = 0;
            int first = -1, first_which = -1;
            for (int i = 0; i < ns; i++) {
                char *f = strstr(so_far, stops[i]);
                if (f && (first < 0 || f - so_far < first))
                    first = (int)(f - so_far), first_which = i;
            }
            size_t want;
            if (first >= 0) {
                want = (size_t)first;
                ok &= hit && stop_which(st) == first_which;
            } else {
                want = (size_t)pos; /* first position still starting a stop */
                for (int p0 = 0; p0 < pos && want == (size_t)pos; p0++)
                    for (int i = 0; i < ns; i++)
                        if (strncmp(so_far + p0, stops[i], (size_t)(pos - p0)) == 0) want = p0;
                ok &= !hit;
            }
            ok &= total == want && memcmp(out, text, want) == 0;
        }
        total += stop_flush(st, out + total, sizeof out - total);
        if (!hit) ok &= total == (size_t)len && memcmp(out, text, (size_t)len) == 0;
        CHECK(ok, "random stop trial %d: text '%s' (%d stops, first '%s')", trial, text, ns,
              ns ? stops[0] : "");
        stop_free(st);
        if (!ok) break;
    }
}

int main(void) {
    const char *env = getenv("BEAST_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock() << 32;
    printf("test_sampler: seed %llu (BEAST_TEST_SEED to replay)\n", (unsigned long long)seed);
    rs = seed;

    test_greedy();
    test_determinism();
    test_distribution();
    test_allowed_sets();
    test_penalties();
    test_bias_and_edges();
    test_logprobs();
    test_candidates();
    test_stop_cases();
    test_stop_random();

    printf("test_sampler: %d checks, %d failed\n", n_check, n_fail);
    return n_fail ? 1 : 0;
}
