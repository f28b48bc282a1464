/* test_pool.c: the thread pool runs every task of every job exactly once and
 * returns only when all are done, across many back-to-back jobs of varying
 * size (the pattern of a decode step: hundreds of small jobs), with more
 * threads than cores so workers are often late. */
#include "cpu/pool.h"

#include <stdatomic.h>
#include <stdlib.h>

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

int main(void) {
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
    return check_done();
}
