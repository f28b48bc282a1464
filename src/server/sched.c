/* sched.c: the continuous-batching scheduler (see sched.h). */
#include "server/sched.h"

const double srv_latency_buckets[15] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                                        0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 30.0};

srv_sched_params srv_sched_default_params(void) {
    srv_sched_params p = {0};
    p.n_parallel = 4;
    p.n_ctx = 4096;
    p.n_batch = 512;
    p.queue_max = 64;
    p.prefix_cache = true;
    return p;
}
