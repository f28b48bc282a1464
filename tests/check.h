/* check.h: the few lines every C test shares: a failure counter, CHECK()
 * that reports and counts without stopping, the closing summary line
 * ("N passed, M failed" is what CI reads), and the random numbers for fresh
 * test inputs (splitmix64; check_seed() picks and prints the run's seed).
 * Include once per test program. */
#ifndef BEAST_TEST_CHECK_H
#define BEAST_TEST_CHECK_H

#include <math.h>
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

#endif
