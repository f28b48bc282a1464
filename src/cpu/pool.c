/* pool.c: persistent thread pool (see pool.h).
 *
 * One job at a time. The caller publishes (fn, ctx, n_tasks), bumps the
 * generation counter and wakes sleepers; every thread, the caller too, takes
 * task indices from a shared atomic counter; the last thread to finish a task
 * lets the caller return.
 *
 * Waiting. With the machine to itself a job ends microseconds after the
 * caller runs out of tasks, so the caller spins (pause) for a short while
 * first. But when other processes use the cores, the thread still running
 * the last task may have been preempted, and a caller that spins then burns
 * the very core time that thread needs (2 threads became slower than 1). So
 * after CALLER_SPIN pauses the caller sleeps on the `done` counter (futex on
 * Linux, sched_yield elsewhere); the thread that finishes the last task
 * wakes it if it said it sleeps (`sleeping`, seq_cst on both sides: either
 * the caller sees the count complete or the finisher sees the flag). Idle
 * workers likewise spin, then yield the core between polls, then sleep on
 * the condition variable. */
#include "cpu/pool.h"
#include "util/util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define SPIN_ITERS  2000 /* idle worker: pauses before yielding */
#define YIELD_ITERS 200  /* idle worker: yields before sleeping */
#define CALLER_SPIN 4000 /* caller: pauses before sleeping on the job's end */

/* The claim word and the count of finished tasks each have a cache line:
 * threads claiming tasks do not invalidate the line the others read the
 * job's fields from. */
struct pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen; /* job generation */
    atomic_int stop;
    pool_fn fn;
    void *ctx;
    atomic_int n_tasks;
    _Alignas(64) _Atomic uint64_t next; /* (generation << 32) | next task index */
    _Alignas(64) atomic_int done;       /* tasks finished (the caller's futex word) */
    atomic_int sleeping;                /* the caller sleeps on `done` */
    char pad[64 - 2 * sizeof(atomic_int)];
};

typedef struct {
    pool *p;
    int id;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* sleep while *w == v (may return early); wake one sleeper of w */
static void word_wait(atomic_int *w, int v) {
#ifdef __linux__
    syscall(SYS_futex, (int *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
#else
    (void)w, (void)v;
    sched_yield();
#endif
}
static void word_wake(atomic_int *w) {
#ifdef __linux__
    syscall(SYS_futex, (int *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
    (void)w;
#endif
}

/* Claim tasks of job `job` only: the generation in the high half of `next`
 * keeps a late thread from taking indices of a newer job with stale state.
 * The tasks a thread ran are added to `done` once, when it finds no task
 * left (one contended atomic per task, the claim, instead of two); the
 * caller returns only when every task is counted. */
static void work(pool *p, int thread, unsigned job) {
    int ran = 0;
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
        do {
            if ((unsigned)(v >> 32) != job ||
                (uint32_t)v >= (uint32_t)atomic_load_explicit(&p->n_tasks, memory_order_relaxed))
                goto out;
        } while (!atomic_compare_exchange_weak_explicit(&p->next, &v, v + 1, memory_order_acq_rel,
                                                        memory_order_acquire));
        p->fn(p->ctx, (int)(uint32_t)v, thread);
        ran++;
    }
out:
    if (!ran) return;
    int d = atomic_fetch_add_explicit(&p->done, ran, memory_order_seq_cst) + ran;
    if (d == atomic_load_explicit(&p->n_tasks, memory_order_relaxed) &&
        atomic_load_explicit(&p->sleeping, memory_order_seq_cst))
        word_wake(&p->done);
}

static void *worker(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    int id = wa->id;
    free(wa);
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            if (spins < SPIN_ITERS + YIELD_ITERS) { /* let others have the core */
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        work(p, id, seen);
    }
}

pool *pool_new(int n_threads) {
    pool *p = NULL;
    if (posix_memalign((void **)&p, 64, sizeof *p)) {
        err_set("out of memory (thread pool)");
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = xcalloc((size_t)p->n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < p->n_threads; i++) {
        worker_arg *wa = xmalloc(sizeof *wa);
        if (!wa) {
            p->n_threads = i;
            break;
        }
        wa->p = p;
        wa->id = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa)) {
            free(wa);
            p->n_threads = i;
            break;
        }
    }
    return p;
}

void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

int pool_threads(const pool *p) {
    return p->n_threads;
}

void pool_run(pool *p, pool_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }
    unsigned job = atomic_load(&p->gen) + 1;
    /* First retire the previous job's claim word: a thread still in work()
     * for it may have read `next` and be about to read n_tasks; once `next`
     * has changed its claim (a CAS on the old value) can only fail, so it
     * never runs a task with the new job's fn or count. Index 0xffffffff
     * also keeps this job closed until its fields are written. */
    atomic_store_explicit(&p->next, ((uint64_t)job << 32) | 0xffffffffu, memory_order_seq_cst);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next, (uint64_t)job << 32, memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->gen, job, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, 0, job);
    /* every task is claimed: wait for the ones other threads still run */
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; spins++) {
        if (spins < CALLER_SPIN) {
            cpu_relax();
            continue;
        }
        atomic_store_explicit(&p->sleeping, 1, memory_order_seq_cst);
        int d = atomic_load_explicit(&p->done, memory_order_seq_cst);
        if (d < n_tasks) word_wait(&p->done, d);
        atomic_store_explicit(&p->sleeping, 0, memory_order_relaxed);
    }
}
