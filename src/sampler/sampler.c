/* sampler.c: the token sampler (see sampler.h for the pipeline), its PRNG,
 * partial selection helpers and the log-probability helper; both also from
 * a row's best candidates when those prove the result (sampler.h). */
#include "sampler/sampler.h"

#include "util/util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* ---- PRNG: xoshiro256** seeded through splitmix64 ---------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t st[4]) {
    uint64_t r = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_double(uint64_t st[4]) {
    return (double)(rng_next(st) >> 11) * 0x1.0p-53;
}

static void rng_seed(uint64_t st[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&seed);
}

/* ---- candidates and their total order ---------------------------------- */

typedef struct {
    int32_t id;
    float logit;
    double p; /* unnormalised probability, set after the softmax step */
} cand;

/* a comes before b: higher logit, or same logit and lower id. (Bitwise
 * operators: no branches, which matters in the partition loop.) */
static int better(const cand *a, const cand *b) {
    return (a->logit > b->logit) | ((a->logit == b->logit) & (a->id < b->id));
}

static int cmp_best_first(const void *x, const void *y) {
    const cand *a = x, *b = y;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static int cmp_id(const void *x, const void *y) {
    const cand *a = x, *b = y;
    return (a->id > b->id) - (a->id < b->id);
}

static void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* NaN -> -inf, +inf -> FLT_MAX. */
static float clean(float x) {
    if (x != x) return -INFINITY;
    if (x == INFINITY) return FLT_MAX;
    return x;
}

/* Min-heap keyed on the order above (the root is the worst kept entry). */
static void heap_sift_down(cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        swap_cand(&h[i], &h[w]);
        i = w;
    }
}

static void heap_sift_up(cand *h, int i) {
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!better(&h[parent], &h[i])) return;
        swap_cand(&h[parent], &h[i]);
        i = parent;
    }
}

/* The k best finite entries of v[0..n) into h (unordered); returns how many
 * (fewer than k when fewer entries are finite). One pass; since ids arrive in
 * increasing order, a newcomer with a logit equal to the root's is worse. */
static int heap_top(const float *v, int n, cand *h, int k) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        float l = clean(v[i]);
        if (l == -INFINITY) continue;
        if (m < k) {
            h[m] = (cand){i, l, 0};
            heap_sift_up(h, m++);
        } else if (l > h[0].logit) {
            h[0] = (cand){i, l, 0};
            heap_sift_down(h, m, 0);
        }
    }
    return m;
}

/* Quickselect step on c[lo..hi) (hi - lo >= 2): picks a median-of-three
 * pivot and returns its final index; the entries before it beat it, the
 * entries after it do not. */
static size_t partition(cand *c, size_t lo, size_t hi) {
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (better(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
    if (better(&c[last], &c[lo])) swap_cand(&c[last], &c[lo]);
    if (better(&c[mid], &c[last])) swap_cand(&c[mid], &c[last]);
    cand piv = c[last]; /* the median of the three */
    size_t store = lo;
    for (size_t i = lo; i < last; i++) { /* Lomuto, written without branches */
        cand x = c[i];
        int b = better(&x, &piv);
        c[i] = c[store];
        c[store] = x;
        store += (size_t)b;
    }
    swap_cand(&c[store], &c[last]);
    return store;
}

/* ---- the sampler -------------------------------------------------------- */

struct sampler {
    sampler_params p; /* p.bias points at `bias` */
    sampler_bias *bias;
    int n_vocab;
    int penalize; /* penalties on and a window to apply them over */
    float *work;  /* logits after bias and penalties */
    int have_work;
    cand *cand;      /* n_vocab candidates */
    int32_t *counts; /* n_vocab, all zero between calls */
    int32_t *hist;   /* penalty window (a ring once it holds repeat_last_n) */
    size_t hist_n, hist_cap, hist_head;
    uint64_t rng[4];
};

sampler_params sampler_default_params(void) {
    sampler_params p = {0};
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = SAMPLER_DEFAULT_SEED;
    return p;
}

/* whether any penalty applies */
static bool params_penalize(const sampler_params *p) {
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1 || p->presence_penalty != 0 || p->frequency_penalty != 0);
}

bool sampler_params_greedy(const sampler_params *p) {
    return p->temperature <= 0 && !params_penalize(p) && p->n_bias == 0;
}

sampler *sampler_new(const sampler_params *p, int n_vocab) {
    if (!p || n_vocab < 1) {
        err_set("sampler: bad arguments (n_vocab %d)", n_vocab);
        return NULL;
    }
    if (isnan(p->temperature) || isnan(p->top_p) || isnan(p->min_p) || isnan(p->repeat_penalty) ||
        !isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty)) {
        err_set("sampler: NaN or infinite parameter");
        return NULL;
    }
    if (!(p->repeat_penalty > 0) || isinf(p->repeat_penalty)) {
        err_set("sampler: repeat_penalty must be positive and finite (got %g)",
                (double)p->repeat_penalty);
        return NULL;
    }
    if (p->repeat_last_n < -1) {
        err_set("sampler: repeat_last_n must be >= -1 (got %d)", p->repeat_last_n);
        return NULL;
    }
    if (p->n_bias < 0 || (p->n_bias > 0 && !p->bias)) {
        err_set("sampler: bad bias list");
        return NULL;
    }
    for (int i = 0; i < p->n_bias; i++) {
        if (p->bias[i].token < 0 || p->bias[i].token >= n_vocab) {
            err_set("sampler: bias token %d out of range (n_vocab %d)", (int)p->bias[i].token,
                    n_vocab);
            return NULL;
        }
        if (isnan(p->bias[i].bias)) {
            err_set("sampler: bias for token %d is NaN", (int)p->bias[i].token);
            return NULL;
        }
    }

    sampler *s = xcalloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    if (s->p.min_p > 1) s->p.min_p = 1;
    s->penalize = params_penalize(p);
    s->work = xmalloc((size_t)n_vocab * sizeof *s->work);
    s->cand = xmalloc((size_t)n_vocab * sizeof *s->cand);
    s->counts = xcalloc((size_t)n_vocab, sizeof *s->counts);
    if (p->n_bias > 0) s->bias = xmalloc((size_t)p->n_bias * sizeof *s->bias);
    if (!s->work || !s->cand || !s->counts || (p->n_bias > 0 && !s->bias)) {
        sampler_free(s);
        return NULL;
    }
    if (p->n_bias > 0) memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    s->p.bias = s->bias;
    sampler_reset(s);
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->cand);
    free(s->counts);
    free(s->bias);
    free(s->hist);
    free(s);
}

void sampler_reset(sampler *s) {
    if (!s) return;
    s->hist_n = s->hist_head = 0;
    s->have_work = 0;
    rng_seed(s->rng, s->p.seed);
}

void sampler_accept(sampler *s, int32_t token) {
    if (!s || !s->penalize || token < 0 || token >= s->n_vocab) return;
    size_t window = (size_t)s->p.repeat_last_n; /* huge for -1: never wraps */
    if (s->hist_n == window) {                  /* full ring: overwrite the oldest */
        s->hist[s->hist_head] = token;
        s->hist_head = (s->hist_head + 1) % window;
        return;
    }
    if (s->hist_n == s->hist_cap) {
        size_t cap = s->hist_cap ? 2 * s->hist_cap : 64;
        if (cap > window) cap = window;
        int32_t *h = xrealloc(s->hist, cap * sizeof *h);
        if (!h) return; /* out of memory: the token is not recorded */
        s->hist = h;
        s->hist_cap = cap;
    }
    s->hist[s->hist_n++] = token;
}

/* A logit of a token seen c > 0 times in the penalty window. */
static float penalize(const sampler_params *p, float l, int32_t c) {
    if (p->repeat_penalty != 1) l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
    l -= p->presence_penalty + p->frequency_penalty * (float)c;
    return clean(l);
}

static void apply_penalties(sampler *s, float *w) {
    for (size_t i = 0; i < s->hist_n; i++) s->counts[s->hist[i]]++;
    for (size_t i = 0; i < s->hist_n; i++) {
        int32_t t = s->hist[i];
        int32_t c = s->counts[t];
        if (c == 0) continue; /* already done */
        s->counts[t] = 0;
        w[t] = penalize(&s->p, w[t], c);
    }
}

/* Put c[0..m) in increasing id order: the order every sum and the draw run
 * in, so that they depend only on which tokens are there (the candidate
 * path rebuilds the same sets from candidates alone). Few entries: a sort;
 * many: ranks from a pass over the vocabulary (s->counts, zero again after)
 * and an in-place permutation, O(n_vocab + m). */
static void order_by_id(sampler *s, cand *c, int m) {
    if ((size_t)m * 64 <= (size_t)s->n_vocab || m <= 64) {
        qsort(c, (size_t)m, sizeof *c, cmp_id);
        return;
    }
    int32_t *rank = s->counts;
    for (int j = 0; j < m; j++) rank[c[j].id] = 1;
    int32_t r = 0;
    for (int i = 0; i < s->n_vocab; i++)
        if (rank[i]) rank[i] = ++r;
    for (int j = 0; j < m; j++)
        while (rank[c[j].id] - 1 != j) swap_cand(&c[j], &c[rank[c[j].id] - 1]);
    for (int j = 0; j < m; j++) rank[c[j].id] = 0;
}

/* Temperature + softmax over c[0..m) (unnormalised: the top token, at
 * maxl, gets 1) and min_p: c is compacted to the kept entries, in the same
 * order, with .p set; *z receives the mass of all m. Returns the count. */
static int softmax_min_p(const sampler_params *p, cand *c, int m, float maxl, double *z) {
    double temp = p->temperature, sum = 0;
    int kept = 0;
    for (int j = 0; j < m; j++) {
        double e = exp(((double)c[j].logit - (double)maxl) / temp);
        sum += e;
        if (p->min_p > 0 && e < (double)p->min_p) continue;
        c[kept] = c[j];
        c[kept++].p = e;
    }
    *z = sum;
    return kept;
}

/* One token from c[0..kept) (id order) with probabilities .p, u in [0, 1). */
static int32_t draw(const cand *c, int kept, double u) {
    double total = 0;
    for (int j = 0; j < kept; j++) total += c[j].p;
    double r = u * total, acc = 0;
    int last = 0;
    for (int j = 0; j < kept; j++) {
        if (c[j].p <= 0) continue;
        acc += c[j].p;
        last = j;
        if (r < acc) return c[j].id;
    }
    return c[last].id; /* rounding: r landed on total */
}

/* top_p: the kept set is the shortest best-first run of c[0..m) whose mass
 * (sum of .p) reaches target. Found like a quickselect on mass, in O(m)
 * expected time without sorting: c is reordered so that the set is c[0..r)
 * (in no particular order) and r is returned. */
static int top_p_cut(cand *c, int m, double target) {
    if (m == 0) return 0;
    if (!(target > 0)) { /* the best token alone reaches it */
        int b = 0;
        for (int j = 1; j < m; j++)
            if (better(&c[j], &c[b])) b = j;
        swap_cand(&c[0], &c[b]);
        return 1;
    }
    size_t lo = 0, hi = (size_t)m; /* c[0..lo) kept; the cut lies in [lo, hi) */
    double mass = 0;               /* of c[0..lo) */
    while (hi - lo > 16) {
        size_t piv = partition(c, lo, hi);
        double head = 0; /* c[lo..piv): all beat the pivot */
        for (size_t i = lo; i < piv; i++) head += c[i].p;
        if (mass + head >= target) {
            hi = piv;
        } else {
            mass += head + c[piv].p;
            lo = piv + 1;
            if (mass >= target) return (int)lo;
        }
    }
    qsort(c + lo, hi - lo, sizeof *c, cmp_best_first);
    for (size_t j = lo; j < hi; j++) {
        mass += c[j].p;
        if (mass >= target) return (int)j + 1;
    }
    return (int)hi;
}

int32_t sampler_sample(sampler *s, const float *logits) {
    if (!s || !logits) {
        err_set("sampler_sample: bad arguments");
        return -1;
    }
    const sampler_params *p = &s->p;
    int n = s->n_vocab;
    float *w = s->work;

    for (int i = 0; i < n; i++) w[i] = clean(logits[i]);
    for (int i = 0; i < p->n_bias; i++) {
        int32_t t = p->bias[i].token;
        w[t] = clean(w[t] + p->bias[i].bias);
    }
    if (s->penalize) apply_penalties(s, w);
    s->have_work = 1;

    if (!(p->temperature > 0)) { /* greedy */
        int best = -1;
        float bl = -INFINITY;
        for (int i = 0; i < n; i++)
            if (w[i] > bl) bl = w[i], best = i;
        if (best < 0) err_set("sampler: every token has probability zero");
        return best;
    }

    double u = rng_double(s->rng); /* exactly one draw per non-greedy call */

    /* candidates: the top_k best, or every finite logit; in id order */
    cand *c = s->cand;
    int m = 0;
    if (p->top_k > 0 && p->top_k < n) {
        m = heap_top(w, n, c, p->top_k);
        order_by_id(s, c, m);
    } else {
        for (int i = 0; i < n; i++)
            if (w[i] != -INFINITY) c[m++] = (cand){i, w[i], 0};
    }
    if (m == 0) {
        err_set("sampler: every token has probability zero");
        return -1;
    }

    /* temperature + softmax, min_p */
    float maxl = c[0].logit;
    for (int j = 1; j < m; j++)
        if (c[j].logit > maxl) maxl = c[j].logit;
    double z;
    int kept = softmax_min_p(p, c, m, maxl, &z);
    /* top_p after min_p gives the same set as the documented order: both keep
     * a best-first prefix, and z still counts the tokens min_p dropped. */
    if (p->top_p < 1) {
        kept = top_p_cut(c, kept, (double)p->top_p * z);
        order_by_id(s, c, kept);
    }
    return draw(c, kept, u);
}

/* ---- sampling from candidates ------------------------------------------ */

/* Relative slack on sums of probability mass: the sampler and this path add
 * the same terms in other orders (and z is only bounded here); rounding of a
 * sum of up to 2^31 positive doubles stays far below it. */
#define CAND_SLACK 1e-9

/* top_p on the kept candidates c[0..kept) (id order, .p set) when the full
 * mass z is only known to lie in [z_lo, z_hi]. known: how many of the kept,
 * best first, are surely ahead of every token not among the candidates (all
 * of them when none of those is kept). Leaves the cut set in c[0..r), id
 * order, and returns r; -1 when the cut is not certain. */
static int cand_top_p(sampler *s, cand *c, int kept, int known, double z_lo, double z_hi) {
    double t_lo = (double)s->p.top_p * z_lo, t_hi = (double)s->p.top_p * z_hi;
    t_lo = t_lo > 0 ? t_lo * (1 - CAND_SLACK) : t_lo;
    t_hi = t_hi > 0 ? t_hi * (1 + CAND_SLACK) : t_hi;
    qsort(c, (size_t)kept, sizeof *c, cmp_best_first);
    int r_lo = -1, r_hi = -1;
    double mass = 0;
    for (int j = 0; j < known && r_hi < 0; j++) {
        mass += c[j].p;
        if (r_lo < 0 && mass >= t_lo) r_lo = j + 1;
        if (mass >= t_hi) r_hi = j + 1;
    }
    if (known == kept) { /* the whole list is known: the cut can be all of it */
        if (r_lo < 0) r_lo = kept;
        if (r_hi < 0) r_hi = kept;
    }
    if (r_lo < 0 || r_lo != r_hi) return -1;
    order_by_id(s, c, r_lo);
    return r_lo;
}

int sampler_sample_cand(sampler *s, const beast_cand *cands, int n, int n_max, int32_t *token) {
    if (!s || !token || n < 0 || n > n_max || n > s->n_vocab || (n > 0 && !cands)) return 0;
    const sampler_params *p = &s->p;
    const int nv = s->n_vocab;
    cand *w = s->cand;
    for (int j = 0; j < n; j++) {
        w[j] = (cand){cands[j].id, clean(cands[j].logit), 0};
        if (w[j].id < 0 || w[j].id >= nv || (j > 0 && !better(&w[j - 1], &w[j]))) return 0;
    }
    /* every token outside the list has a logit <= tau; "open": some of them
     * may be finite (the list is full and does not hold the vocabulary) */
    const int open = n > 0 && n == n_max && n < nv && w[n - 1].logit != -INFINITY;
    const float tau = open ? w[n - 1].logit : -INFINITY;

    /* bias and penalties on the candidates; outside tokens only go down
     * (positive bias or penalties that raise a logit: no proof) */
    int32_t *pos = s->counts; /* zero between calls: here id -> index + 1 */
    int ok = 1;
    for (int j = 0; j < n; j++) {
        if (pos[w[j].id]) ok = 0; /* the same id twice */
        pos[w[j].id] = j + 1;
    }
    for (int i = 0; i < p->n_bias && ok; i++) {
        int32_t t = p->bias[i].token, j = pos[t];
        if (j)
            w[j - 1].logit = clean(w[j - 1].logit + p->bias[i].bias);
        else if (open && p->bias[i].bias > 0)
            ok = 0;
    }
    if (s->penalize && ok) {
        int outside = 0;
        for (size_t i = 0; i < s->hist_n; i++) {
            int32_t j = pos[s->hist[i]];
            if (j)
                w[j - 1].p += 1; /* the count, for now */
            else
                outside = 1;
        }
        int raise = p->repeat_penalty < 1 || p->presence_penalty < 0 || p->frequency_penalty < 0;
        if (outside && open && raise) ok = 0;
        for (int j = 0; j < n; j++)
            if (w[j].p > 0) w[j].logit = penalize(p, w[j].logit, (int32_t)w[j].p);
    }
    for (int j = 0; j < n; j++) pos[w[j].id] = 0;
    if (!ok) return 0;

    if (!(p->temperature > 0)) { /* greedy */
        int b = -1;
        for (int j = 0; j < n; j++)
            if (w[j].logit != -INFINITY && (b < 0 || better(&w[j], &w[b]))) b = j;
        if (b < 0 || (open && !(w[b].logit > tau))) return 0;
        s->have_work = 0;
        *token = w[b].id;
        return 1;
    }

    qsort(w, (size_t)n, sizeof *w, cmp_best_first);
    int nf = 0; /* finite candidates: a prefix now */
    while (nf < n && w[nf].logit != -INFINITY) nf++;
    if (nf == 0 || (open && w[0].logit < tau)) return 0; /* the top token may be outside */
    const float maxl = w[0].logit;
    int kept;
    double z;
    if (p->top_k > 0 && p->top_k < nv) {
        /* the k best must be candidates that beat every outside token */
        int k = p->top_k;
        if (open && (k > nf || !(w[k - 1].logit > tau))) return 0;
        int m = MIN(k, nf);
        order_by_id(s, w, m);
        kept = softmax_min_p(p, w, m, maxl, &z);
        if (p->top_p < 1 && (kept = cand_top_p(s, w, kept, kept, z, z)) < 0) return 0;
    } else {
        /* every finite token: the candidates and up to nv - n outside ones,
         * each with a weight of at most e_out */
        double e_out = open ? exp(((double)tau - (double)maxl) / (double)p->temperature) : 0;
        double out_mass = open ? (double)(nv - n) * e_out * (1 + CAND_SLACK) : 0;
        int min_p_on = p->min_p > 0;
        /* an outside token could pass min_p */
        if (open && min_p_on && !(e_out * (1 + CAND_SLACK) < (double)p->min_p)) return 0;
        if (open && !min_p_on && !(p->top_p < 1)) return 0; /* the whole vocabulary */
        order_by_id(s, w, nf);
        kept = softmax_min_p(p, w, nf, maxl, &z);
        if (p->top_p < 1) {
            /* without min_p, outside tokens stay in the running: only the
             * candidates above tau are surely ahead of them */
            int known = kept;
            if (open && !min_p_on) {
                known = 0;
                for (int j = 0; j < kept; j++) known += w[j].logit > tau;
            }
            if ((kept = cand_top_p(s, w, kept, known, z, z + out_mass)) < 0) return 0;
        }
    }
    s->have_work = 0;
    *token = draw(w, kept, rng_double(s->rng));
    return 1;
}

const float *sampler_last_logits(const sampler *s) {
    return s && s->have_work ? s->work : NULL;
}

int sampler_logprobs_cand(const beast_cand *cands, int n, int n_max, float lse, int n_vocab,
                          int32_t token, float *token_logprob, int n_top, int32_t *top_ids,
                          float *top_logprobs) {
    if (n < 0 || n > n_max || (n > 0 && !cands) || n_vocab < 1 || token >= n_vocab ||
        (token >= 0 && !token_logprob) || (n_top > 0 && (!top_ids || !top_logprobs)))
        return -1;
    const int complete = n < n_max || n >= n_vocab; /* every other token is -inf */
    if (token >= 0) {
        int j = 0;
        while (j < n && cands[j].id != token) j++;
        if (j == n && !complete) return -1;
        float l = j < n ? clean(cands[j].logit) : -INFINITY;
        *token_logprob = l == -INFINITY ? -INFINITY : (float)((double)l - (double)lse);
    }
    if (n_top <= 0) return 0;
    int k = MIN(n_top, n_vocab);
    if (k > n && !complete) return -1;
    int m = 0;
    while (m < MIN(k, n) && clean(cands[m].logit) != -INFINITY) {
        top_ids[m] = cands[m].id;
        top_logprobs[m] = (float)((double)clean(cands[m].logit) - (double)lse);
        m++;
    }
    return m;
}

int sampler_logprobs(const float *logits, int n_vocab, int32_t token, float *token_logprob,
                     int n_top, int32_t *top_ids, float *top_logprobs) {
    if (!logits || n_vocab < 1 || (token >= 0 && (token >= n_vocab || !token_logprob)) ||
        (n_top > 0 && (!top_ids || !top_logprobs))) {
        err_set("sampler_logprobs: bad arguments");
        return -1;
    }
    float maxl = -INFINITY;
    for (int i = 0; i < n_vocab; i++) {
        float l = clean(logits[i]);
        if (l > maxl) maxl = l;
    }
    double lse = -INFINITY;
    if (maxl != -INFINITY) {
        double z = 0;
        for (int i = 0; i < n_vocab; i++) z += exp((double)clean(logits[i]) - (double)maxl);
        lse = (double)maxl + log(z);
    }
    if (token >= 0) {
        float l = clean(logits[token]);
        *token_logprob = l == -INFINITY ? -INFINITY : (float)((double)l - lse);
    }
    if (n_top <= 0 || maxl == -INFINITY) return 0;

    int k = MIN(n_top, n_vocab);
    cand *h = xmalloc((size_t)k * sizeof *h);
    if (!h) return -1;
    int m = heap_top(logits, n_vocab, h, k);
    qsort(h, (size_t)m, sizeof *h, cmp_best_first);
    for (int j = 0; j < m; j++) {
        top_ids[j] = h[j].id;
        top_logprobs[j] = (float)((double)h[j].logit - lse);
    }
    free(h);
    return m;
}
