/* pool.h: a persistent thread pool for data-parallel kernels.
 *
 * pool_run(p, fn, ctx, n) calls fn(ctx, i, thread) for every task i < n,
 * spread over the pool's threads (the caller's thread included), and returns
 * when all are done. Workers spin briefly between jobs, then sleep, so the
 * hundreds of small jobs of one decode step don't pay a wake-up each. */
#ifndef BEAST_POOL_H
#define BEAST_POOL_H

typedef void (*pool_fn)(void *ctx, int task, int thread);
typedef struct pool pool;

pool *pool_new(int n_threads);
void pool_free(pool *p);
int pool_threads(const pool *p);
void pool_run(pool *p, pool_fn fn, void *ctx, int n_tasks);

#endif
