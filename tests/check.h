/* check.h: the few lines every C test shares: a failure counter, CHECK()
 * that reports and counts without stopping, and the closing summary line
 * ("N passed, M failed" is what CI reads). Include once per test program. */
#ifndef BEAST_TEST_CHECK_H
#define BEAST_TEST_CHECK_H

#include <stdio.h>

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

#endif
