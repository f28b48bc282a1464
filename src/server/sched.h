/* sched.h: the continuous-batching scheduler behind `beast serve`.
 *
 * One engine thread owns the beast_ctx. Every step it runs ONE beast_decode
 * over all active sequences: one token for each sequence that is decoding,
 * plus chunks of prompts still being prefilled, up to the step's token
 * budget (n_batch), so a long prompt never stalls the users already
 * generating. Then it samples the next token of every sequence that asked
 * for logits, turns tokens into text (stop strings held back, UTF-8 kept
 * whole), and posts events to each request's queue.
 *
 * Any other thread (the HTTP handlers) submits requests and reads their
 * events. Prompts arrive already tokenized (HTTP threads tokenize and render
 * chat templates in parallel; the model is read-only).
 *
 * KV memory is paged (src/kv): each active request holds one sequence id of
 * the context. Prefix caching: a finished sequence keeps its KV blocks while
 * nothing needs them; a new request whose prompt starts with the same tokens
 * as a finished or running sequence shares those whole blocks instead of
 * recomputing them. Cached sequences are evicted (least recently used first)
 * when a slot or KV blocks are needed.
 *
 * Admission: at most n_parallel requests run at once; up to queue_max more
 * wait in FIFO order; beyond that srv_submit fails with SRV_E_BUSY. A request
 * whose prompt + 1 cannot fit n_ctx fails with SRV_E_TOO_LONG before any
 * work. A cancelled request (client gone, timeout) releases its sequence at
 * the next step boundary.
 *
 * Details the front end can rely on:
 *  - Events of one request come in order: TOKEN events, then exactly one
 *    DONE, which is the last. DONE also comes for cancelled, timed-out and
 *    failed requests, and for every request still queued or running when
 *    srv_sched_free runs.
 *  - An end-of-generation token (unless ignore_eos) ends the request with
 *    SRV_FINISH_STOP and is not sent as a TOKEN event nor counted in n_gen.
 *    The token that completes a stop string is sent (its text cut before the
 *    stop string) and counted.
 *  - n_ctx bounds prompt + generated tokens: LENGTH once they reach it.
 *  - KV cache exhausted: cached prefixes are evicted first, then the newest
 *    running request is preempted (back to the front of the queue, its
 *    tokens so far prefilled again later; sampler state kept). A
 *    request that cannot fit even alone ends with SRV_FINISH_ERROR
 *    ("out of KV cache ...").
 *  - A failing engine step ends the requests in that step with
 *    SRV_FINISH_ERROR and the engine's message; the server keeps running.
 *  - The context holds 2 * n_parallel sequence ids with prefix_cache (half
 *    for cached prefixes), n_parallel without. Prefixes shorter than one KV
 *    block (16 tokens) are not cached.
 *  - srv_sched_stats' counters (and the KV figures) include a request's
 *    completion by the time its DONE event can be read. */
#ifndef BEAST_SRV_SCHED_H
#define BEAST_SRV_SCHED_H

#include "beast.h"
#include "sampler/sampler.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct srv_sched srv_sched;
typedef struct srv_req srv_req;

typedef struct {
    int n_parallel;     /* max running requests (>= 1) */
    int n_ctx;          /* max positions per request (prompt + generated) */
    int n_batch;        /* max tokens per engine step */
    int n_kv_tokens;    /* total KV positions; 0 = n_ctx * n_parallel */
    int queue_max;      /* max waiting (not yet running) requests */
    bool prefix_cache;  /* share KV of common prompt prefixes */
    bool deterministic; /* results independent of batch composition (slower); sets the
                           model's backend flag (same as loading the model with
                           beast_model_params.deterministic) */
} srv_sched_params;

srv_sched_params srv_sched_default_params(void);

/* Creates the context and starts the engine thread. NULL + err_set. */
srv_sched *srv_sched_new(beast_model *m, const srv_sched_params *p);
/* Stops accepting work, cancels every request (their DONE events say
 * SRV_FINISH_CANCELLED), joins the engine thread, frees everything. Requests
 * not yet released by their owners stay valid until srv_req_release. */
void srv_sched_free(srv_sched *s);

#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_STOPS        16

typedef struct {
    const int32_t *prompt; /* tokens (copied); must be >= 1 */
    int n_prompt;
    int max_tokens;          /* generated tokens; <= 0: until the context is full */
    sampler_params sp;       /* sp.bias copied */
    const char *const *stop; /* stop strings (copied), up to SRV_MAX_STOPS */
    int n_stop;
    bool ignore_eos;      /* keep going past end-of-generation tokens */
    int logprobs;         /* -1: none; 0: chosen token's logprob; k > 0: also top k */
    double timeout_s;     /* wall time limit from submission; <= 0: none */
    bool special_in_text; /* render control tokens as text */
} srv_req_params;

enum { SRV_EV_TOKEN = 1, SRV_EV_DONE = 2 };
enum {
    SRV_FINISH_NONE = 0,
    SRV_FINISH_STOP,      /* end-of-generation token or stop string */
    SRV_FINISH_LENGTH,    /* max_tokens or context full */
    SRV_FINISH_CANCELLED, /* srv_cancel or server shutdown */
    SRV_FINISH_TIMEOUT,   /* timeout_s passed */
    SRV_FINISH_ERROR      /* engine failure; message in ev.error */
};

typedef struct {
    int kind; /* SRV_EV_TOKEN or SRV_EV_DONE */
    /* SRV_EV_TOKEN: one generated token, and the text that became final
     * with it (may be empty while a stop string or a UTF-8 character is
     * pending; a DONE event can carry the rest). Owned by the event. */
    int32_t token;
    char *text;
    int text_len;
    float logprob; /* log p(token) under the model (temperature 1), if asked */
    int n_top;
    int32_t top_id[SRV_MAX_TOP_LOGPROBS];
    float top_logprob[SRV_MAX_TOP_LOGPROBS];
    /* SRV_EV_DONE: final counts and timings */
    int finish;
    int n_prompt, n_cached, n_gen;   /* n_cached: prompt tokens reused from the prefix cache */
    double t_queue, t_prompt, t_gen; /* seconds: waiting, prefill, generation */
    char error[160];
} srv_event;

/* Error codes of srv_submit (also in err_set's message). */
enum { SRV_OK = 0, SRV_E_BUSY = 1, SRV_E_TOO_LONG = 2, SRV_E_INVALID = 3, SRV_E_SHUTDOWN = 4 };

/* Queue a request. Returns the request handle, or NULL with *err set. */
srv_req *srv_submit(srv_sched *s, const srv_req_params *p, int *err);

/* Wait up to timeout_s (< 0: forever) for the next event of r. Returns 1 and
 * fills *ev (free it with srv_event_clear), 0 on timeout, -1 when the DONE
 * event was already taken. */
int srv_next_event(srv_req *r, srv_event *ev, double timeout_s);
void srv_event_clear(srv_event *ev);

/* Ask the engine to stop r (client disconnected). Idempotent; a DONE event
 * with SRV_FINISH_CANCELLED follows unless r already finished. */
void srv_cancel(srv_req *r);
/* The owner is done with r (after its DONE event, or after srv_cancel). The
 * scheduler frees it once it no longer uses it. */
void srv_req_release(srv_req *r);

/* A consistent snapshot for /metrics and /health. */
typedef struct {
    int n_parallel, n_running, n_waiting, queue_max;
    int kv_blocks_total, kv_blocks_used, kv_block_size;
    int n_cached_seqs;
    uint64_t n_steps, prompt_tokens, cached_prompt_tokens, gen_tokens;
    uint64_t req_finished[SRV_FINISH_ERROR + 1]; /* by finish reason */
    /* latency histograms: counts per bucket (cumulative is the reader's job),
     * bucket upper bounds in srv_latency_buckets, last bucket = +Inf */
    uint64_t ttft_hist[16], itl_hist[16];
    double ttft_sum, itl_sum;
    uint64_t ttft_count, itl_count;
} srv_stats;

extern const double srv_latency_buckets[15]; /* seconds, increasing */

void srv_sched_stats(srv_sched *s, srv_stats *out);
const beast_model *srv_sched_model(const srv_sched *s);
int srv_sched_n_ctx(const srv_sched *s);

#endif
