/* check.h: the few lines every C test shares: a failure counter, CHECK()
 * that reports and counts without stopping, the closing summary line
 * ("N passed, M failed" is what CI reads), the random numbers for fresh
 * test inputs (splitmix64; check_seed() picks and prints the run's seed),
 * float comparison, reading a whole file and recording generated tokens.
 * Include once per test program. */
#ifndef BEAST_TEST_CHECK_H
#define BEAST_TEST_CHECK_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int check_failures, check_passes;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passes++;                                                                        \
        } else {                                                                                   \
            check_failures++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* CHECK with the condition's own text as the message. */
#define CHECK_TRUE(cond) CHECK(cond, "%s", #cond)

/* Print the summary and return the exit code. */
static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_passes, check_failures);
    return check_failures ? 1 : 0;
}

/* ---- random numbers (splitmix64) ---- */

static uint64_t check_rng;

/* Seed the generator from BEAST_TEST_SEED, or from the clock and the process
 * id when it is unset, print it ("seed N (BEAST_TEST_SEED repeats it)") and
 * return it. */
static inline uint64_t check_seed(void) {
    const char *s = getenv("BEAST_TEST_SEED");
    check_rng = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("seed %llu (BEAST_TEST_SEED repeats it)\n", (unsigned long long)check_rng);
    return check_rng;
}

static inline uint64_t rng_u64(void) {
    uint64_t z = (check_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static inline double rng_uniform(void) {
    return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}

/* uniform in 0 .. n-1 (n > 0) */
static inline int rng_int(int n) {
    return (int)(rng_u64() % (uint64_t)n);
}

/* standard normal (Box-Muller; 1 - u keeps the logarithm finite) */
static inline double rng_normal(void) {
    double u = 1.0 - rng_uniform(), v = rng_uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static inline void rng_bytes(void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(rng_u64() >> 24);
}

/* ---- float comparison ---- */

/* max |a[i] - b[i]| in double; NaN anywhere makes it NaN */
static inline double check_max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* max |a[i]|, at least 1e-30 (a safe divisor for relative errors) */
static inline double check_max_abs(const float *a, size_t n) {
    double m = 1e-30;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* ---- files ---- */

/* The whole file in a malloc'd buffer (one spare byte at the end) and its
 * size in *n; NULL when it cannot be read. */
static inline uint8_t *check_read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    long sz = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    uint8_t *b = sz >= 0 && fseek(fp, 0, SEEK_SET) == 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = b ? (size_t)sz : 0;
    return b;
}

/* A token callback for beast_generate_greedy that records the tokens (up to
 * 64) and returns false on the stop_at-th (0: never). */
typedef struct {
    int32_t tok[64];
    int n, stop_at;
} gen_rec;

static inline bool rec_token(void *user, int32_t tok) {
    gen_rec *r = (gen_rec *)user;
    if (r->n < 64) r->tok[r->n] = tok;
    r->n++;
    return r->n != r->stop_at;
}

#endif
