/* test_pool.c: the thread pool runs every task of every job exactly once and
 * returns only when all are done, across many back-to-back jobs of varying
 * size (the pattern of a decode step: hundreds of small jobs), with more
 * threads than cores so workers are often late; and again with tasks that
 * sleep, so the caller runs out of tasks long before the job ends and goes
 * to sleep itself (the futex wait of pool.c): every task must have finished
 * its work, written after the sleep, when pool_run returns; a lost wake-up
 * would hang it, so an alarm ends the test (failed) after 120 s. */
#include "cpu/pool.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

typedef struct {
    atomic_int *hits;
    int job;
} job_ctx;

static void task(void *ctx, int i, int t) {
    (void)t;
    job_ctx *j = ctx;
    atomic_fetch_add(&j->hits[i], 1);
}

/* sleeps 0-300 us (some tasks not at all), then records that it ran */
typedef struct {
    atomic_int *hits;
    const int *sleep_us;
} slow_ctx;

static void slow_task(void *ctx, int i, int t) {
    (void)t;
    slow_ctx *j = ctx;
    if (j->sleep_us[i]) {
        struct timespec ts = {0, 1000L * j->sleep_us[i]};
        nanosleep(&ts, NULL);
    }
    atomic_fetch_add(&j->hits[i], 1);
}

static void test_sleeping_caller(void) {
    enum { MAX_TASKS = 12, JOBS = 600 };
    static atomic_int hits[MAX_TASKS];
    int sleep_us[MAX_TASKS];
    alarm(120); /* a caller that sleeps forever fails the test */
    for (int threads = 2; threads <= 6; threads += 4) {
        pool *p = pool_new(threads);
        CHECK(p != NULL, "pool_new");
        int bad = 0;
        for (int jn = 0; jn < JOBS && !bad; jn++) {
            int n = 1 + rng_int(MAX_TASKS);
            for (int i = 0; i < MAX_TASKS; i++) {
                atomic_store(&hits[i], 0);
                sleep_us[i] = rng_int(3) ? rng_int(300) : 0;
            }
            slow_ctx c = {hits, sleep_us};
            pool_run(p, slow_task, &c, n);
            for (int i = 0; i < MAX_TASKS; i++)
                if (atomic_load(&hits[i]) != (i < n)) bad = 1;
        }
        CHECK(!bad,
              "%d threads, sleeping tasks: a task ran twice, not at all, or after pool_run "
              "returned",
              threads);
        pool_free(p);
    }
    alarm(0);
}

int main(void) {
    check_seed();
    enum { MAX_TASKS = 300, JOBS = 20000 };
    static atomic_int hits[MAX_TASKS];
    for (int threads = 2; threads <= 8; threads *= 2) {
        pool *p = pool_new(threads);
        CHECK(p != NULL, "pool_new");
        int bad = 0;
        srand(threads);
        for (int jn = 0; jn < JOBS && !bad; jn++) {
            int n = 1 + rand() % MAX_TASKS;
            if (jn % 3 == 0) n = 1 + rand() % 4; /* small jobs right after big ones */
            for (int i = 0; i < MAX_TASKS; i++) atomic_store(&hits[i], 0);
            job_ctx c = {hits, jn};
            pool_run(p, task, &c, n);
            for (int i = 0; i < MAX_TASKS; i++)
                if (atomic_load(&hits[i]) != (i < n)) bad = 1;
        }
        CHECK(!bad, "%d threads: a task ran twice, not at all, or after pool_run returned",
              threads);
        pool_free(p);
    }
    test_sleeping_caller();
    return check_done();
}
