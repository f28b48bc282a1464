/* metrics.c: the HTTP-level counters (requests by endpoint and status code,
 * client disconnects, open streams; updated atomically by the connection
 * threads) and the /metrics page: Prometheus text format 0.0.4 built from
 * those counters and a srv_sched_stats snapshot. */
#include "server/server.h"

#include <stdio.h>

const int srv_metric_codes[SRV_N_CODES] = {200, 400, 401, 404, 405, 413,
                                           429, 500, 503, 408, 431, 0};

const char *const srv_endpoint_names[SRV_EP_COUNT] = {"/",
                                                      "/health",
                                                      "/metrics",
                                                      "/v1/models",
                                                      "/v1/chat/completions",
                                                      "/v1/completions",
                                                      "/api/generate",
                                                      "/api/chat",
                                                      "/api/tags",
                                                      "/api/show",
                                                      "/api/version",
                                                      "other"};

void srv_counters_add(srv_http_counters *c, int endpoint, int status) {
    if (endpoint < 0 || endpoint >= SRV_EP_COUNT) endpoint = SRV_EP_OTHER;
    int k = SRV_N_CODES - 1;
    for (int i = 0; i < SRV_N_CODES - 1; i++)
        if (srv_metric_codes[i] == status) k = i;
    __atomic_fetch_add(&c->requests[endpoint][k], 1, __ATOMIC_RELAXED);
}

static unsigned long long ld(const unsigned long long *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void head(srv_buf *o, const char *name, const char *type, const char *help) {
    srv_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(srv_buf *o, const char *name, const char *type, const char *help, double v) {
    head(o, name, type, help);
    srv_buf_printf(o, "%s %.17g\n", name, v);
}

static void histogram(srv_buf *o, const char *name, const char *help, const uint64_t *counts,
                      double sum, uint64_t count) {
    head(o, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < 15; i++) {
        cum += counts[i];
        srv_buf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, srv_latency_buckets[i],
                       (unsigned long long)cum);
    }
    cum += counts[15];
    /* +Inf must equal _count; the scheduler counts both, trust _count */
    if (cum < count) cum = count;
    srv_buf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    srv_buf_printf(o, "%s_sum %.17g\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
}

void srv_metrics_render(const srv_stats *st, const srv_http_counters *c, srv_buf *o) {
    head(o, "beast_http_requests_total", "counter", "HTTP requests by endpoint and status code.");
    for (int e = 0; e < SRV_EP_COUNT; e++) {
        for (int k = 0; k < SRV_N_CODES; k++) {
            unsigned long long n = ld(&c->requests[e][k]);
            if (!n) continue;
            if (srv_metric_codes[k])
                srv_buf_printf(o, "beast_http_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
                               srv_endpoint_names[e], srv_metric_codes[k], n);
            else
                srv_buf_printf(o,
                               "beast_http_requests_total{endpoint=\"%s\",code=\"other\"} %llu\n",
                               srv_endpoint_names[e], n);
        }
    }
    scalar(o, "beast_http_client_disconnects_total", "counter",
           "Generation requests whose client went away before the end.",
           (double)ld(&c->disconnects));
    scalar(o, "beast_http_generations_active", "gauge",
           "Generation requests being answered (queued or running).",
           (double)__atomic_load_n(&c->active_streams, __ATOMIC_RELAXED));
    scalar(o, "beast_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
           (double)st->prompt_tokens);
    scalar(o, "beast_prompt_tokens_cached_total", "counter",
           "Prompt tokens reused from the prefix cache.", (double)st->cached_prompt_tokens);
    scalar(o, "beast_generated_tokens_total", "counter", "Generated tokens.",
           (double)st->gen_tokens);
    scalar(o, "beast_engine_steps_total", "counter", "Batched forward passes run.",
           (double)st->n_steps);
    scalar(o, "beast_queue_depth", "gauge", "Requests waiting for a slot.", st->n_waiting);
    scalar(o, "beast_queue_capacity", "gauge", "Most requests that may wait.", st->queue_max);
    scalar(o, "beast_active_sequences", "gauge", "Requests running (prefill or decode).",
           st->n_running);
    scalar(o, "beast_parallel_slots", "gauge", "Most requests that run at once.", st->n_parallel);
    scalar(o, "beast_cached_sequences", "gauge", "Finished sequences kept for prefix reuse.",
           st->n_cached_seqs);
    scalar(o, "beast_kv_blocks_used", "gauge", "KV cache blocks in use.", st->kv_blocks_used);
    scalar(o, "beast_kv_blocks_free", "gauge", "KV cache blocks free.",
           st->kv_blocks_total - st->kv_blocks_used);
    scalar(o, "beast_kv_block_size", "gauge", "Positions per KV cache block.", st->kv_block_size);
    static const char *const reasons[SRV_FINISH_ERROR + 1] = {"none",      "stop",    "length",
                                                              "cancelled", "timeout", "error"};
    head(o, "beast_requests_finished_total", "counter", "Finished requests by reason.");
    for (int i = 1; i <= SRV_FINISH_ERROR; i++)
        srv_buf_printf(o, "beast_requests_finished_total{reason=\"%s\"} %llu\n", reasons[i],
                       (unsigned long long)st->req_finished[i]);
    histogram(o, "beast_time_to_first_token_seconds", "Time from submission to the first token.",
              st->ttft_hist, st->ttft_sum, st->ttft_count);
    histogram(o, "beast_inter_token_latency_seconds", "Time between consecutive tokens.",
              st->itl_hist, st->itl_sum, st->itl_count);
}
