/* test_srv_sched.c: the continuous-batching scheduler (src/server/sched.c)
 * on the real SmolLM2 model.
 *
 *  (a) greedy results of N concurrent requests (8 with BEAST_TEST_QUICK=1,
 *      else 32) equal the same requests run alone, except after a near-tie
 *      (top-2 logit gap < 0.1 at the first divergence; the count is
 *      reported); again with a deterministic model, where identical results
 *      are required when a probe shows the backend honours the flag;
 *  (b) stop strings, max_tokens (LENGTH, exactly n tokens), end of
 *      generation (STOP), ignore_eos;
 *  (c) cancel frees the sequence (KV blocks back to none used, a new
 *      request runs);
 *  (d) full queue: SRV_E_BUSY; too long: SRV_E_TOO_LONG; bad: SRV_E_INVALID;
 *  (e) timeouts, running and waiting;
 *  (f) usage counts of DONE events, prefix cache reuse (n_cached);
 *  (g) shutdown with requests in flight ends every request with a DONE;
 *  plus a KV cache too small for all requests at once (preemption) giving
 *      the same tokens as alone.
 * BEAST_SCHED_BENCH=1 also measures aggregate tok/s at 1 and 8 concurrent
 * requests (printed, never asserted). */
#include "beast.h"
#include "server/sched.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

typedef struct {
    int32_t tok[512];
    float gap[512]; /* top-1 minus top-2 logprob (= logit gap) at each token */
    int n_tok, n_events;
    char text[4096];
    int text_len;
    srv_event done;
} result;

static beast_model *g_model;

static int tokenize(const char *text, int32_t *out, int max) {
    int n = beast_tokenize(g_model, text, strlen(text), true, true, out, max);
    return n > max ? -1 : n;
}

static srv_req_params greedy_params(const int32_t *prompt, int n, int max_tokens) {
    srv_req_params p = {0};
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = max_tokens;
    p.sp = sampler_default_params();
    p.sp.temperature = 0;
    p.logprobs = 2;
    return p;
}

/* Read events until DONE. Returns 0, or -1 when the event stream broke. */
static int collect(srv_req *r, result *res) {
    memset(res, 0, sizeof *res);
    for (;;) {
        srv_event ev;
        int rc = srv_next_event(r, &ev, 120.0);
        if (rc != 1) return -1;
        if (ev.text_len > 0 && res->text_len + ev.text_len < (int)sizeof res->text) {
            memcpy(res->text + res->text_len, ev.text, (size_t)ev.text_len);
            res->text_len += ev.text_len;
        }
        if (ev.kind == SRV_EV_TOKEN) {
            if (res->n_tok < 512) {
                res->tok[res->n_tok] = ev.token;
                res->gap[res->n_tok] = ev.n_top >= 2 ? ev.top_logprob[0] - ev.top_logprob[1] : 1e9f;
                res->n_tok++;
            }
            res->n_events++;
            srv_event_clear(&ev);
        } else {
            srv_event_clear(&ev);
            res->done = ev;
            return 0;
        }
    }
}

static int run_one(srv_sched *s, const srv_req_params *p, result *res) {
    int err = 0;
    srv_req *r = srv_submit(s, p, &err);
    if (!r) return -1;
    int rc = collect(r, res);
    srv_req_release(r);
    return rc;
}

static const char *PROMPTS[] = {
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at",
    "My favourite recipe for pancakes:",
    "In 1969, the first humans",
    "List of prime numbers: 2, 3, 5,",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "Dear hiring manager,",
    "SELECT name FROM users WHERE",
    "The largest planet in the solar system",
    "To be or not to be,",
    "Machine learning is",
    "How do airplanes fly?",
    "The recipe calls for two cups of",
    "In the beginning",
    "A haiku about the sea:",
    "The Pythagorean theorem states that",
    "Rust and C differ in",
    "Paris is known for",
    "The mitochondria is",
    "import numpy as np\n",
    "An apple a day",
    "The speed of light is",
    "Why is the sky blue?",
    "1, 1, 2, 3, 5, 8,",
    "The opposite of hot is",
    "Shakespeare wrote",
    "Good morning! Today we will",
    "The stock market",
};
#define N_PROMPTS ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))

/* Compare two greedy token streams; returns 0 same, 1 differs after a
 * near-tie, 2 differs otherwise. */
static double g_tie = 0.1; /* near-tie bound: max(0.1, the backend's batch drift) */

static int compare(const result *alone, const result *batched, int *at) {
    int n = MIN(alone->n_tok, batched->n_tok);
    for (int i = 0; i < n; i++)
        if (alone->tok[i] != batched->tok[i]) {
            *at = i;
            return alone->gap[i] < g_tie || batched->gap[i] < g_tie ? 1 : 2;
        }
    *at = n;
    if (alone->n_tok != batched->n_tok || alone->done.finish != batched->done.finish) return 2;
    return 0;
}

/* Stats are published after each engine step: wait until nothing runs. */
static void stats_idle(srv_sched *s, srv_stats *st) {
    for (int i = 0; i < 400; i++) {
        srv_sched_stats(s, st);
        if (st->n_running == 0 && st->n_waiting == 0) return;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

static int kv_used_wait(srv_sched *s, int want) {
    srv_stats st;
    for (int i = 0; i < 400; i++) {
        srv_sched_stats(s, &st);
        if (st.kv_blocks_used == want && st.n_running == 0) return want;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return st.kv_blocks_used;
}

/* (a): N prompts alone, then all at once. Returns the number of streams that
 * differ (after near-ties; hard differences are CHECK failures unless
 * soft). */
static int concurrent_vs_alone(beast_model *m, int n, int max_tokens, bool prefix, bool require,
                               const char *label) {
    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = n;
    sp.n_ctx = 256;
    sp.n_batch = 128;
    sp.prefix_cache = prefix;
    srv_sched *s = srv_sched_new(m, &sp);
    CHECK(s, "%s: scheduler: %s", label, beast_error());
    if (!s) return -1;
    static int32_t prompts[64][64];
    int np[64];
    result *alone = calloc((size_t)n, sizeof *alone), *batched = calloc((size_t)n, sizeof *batched);
    for (int i = 0; i < n; i++) np[i] = tokenize(PROMPTS[i % N_PROMPTS], prompts[i], 64);
    for (int i = 0; i < n; i++) {
        srv_req_params p = greedy_params(prompts[i], np[i], max_tokens);
        CHECK(run_one(s, &p, &alone[i]) == 0, "%s: alone %d", label, i);
    }
    srv_req *reqs[64];
    for (int i = 0; i < n; i++) {
        srv_req_params p = greedy_params(prompts[i], np[i], max_tokens);
        int err = 0;
        reqs[i] = srv_submit(s, &p, &err);
        CHECK(reqs[i], "%s: submit %d: %d %s", label, i, err, beast_error());
    }
    int n_diff = 0, n_tie = 0, n_strict = 0, n_first = 0;
    for (int i = 0; i < n; i++) {
        if (!reqs[i]) continue;
        CHECK(collect(reqs[i], &batched[i]) == 0, "%s: collect %d", label, i);
        srv_req_release(reqs[i]);
        int at = 0, c = compare(&alone[i], &batched[i], &at);
        n_first += alone[i].n_tok > 0;
        n_first += batched[i].n_tok > 0;
        if (c) {
            n_diff++;
            n_tie += c == 1;
            n_strict += at < alone[i].n_tok && alone[i].gap[at] >= 0.1f && at < batched[i].n_tok &&
                        batched[i].gap[at] >= 0.1f;
            printf("  %s: stream %d differs at token %d (gap %.4f/%.4f)%s\n", label, i, at,
                   at < alone[i].n_tok ? alone[i].gap[at] : -1.f,
                   at < batched[i].n_tok ? batched[i].gap[at] : -1.f,
                   c == 1 ? " after a near-tie" : "");
        }
        if (require)
            CHECK(c == 0, "%s: stream %d must be identical", label, i);
        else
            CHECK(c != 2, "%s: stream %d differs at %d without a near-tie", label, i, at);
        CHECK(batched[i].done.finish == SRV_FINISH_LENGTH ||
                  batched[i].done.finish == SRV_FINISH_STOP,
              "%s: finish %d", label, batched[i].done.finish);
        CHECK(batched[i].done.n_gen == batched[i].n_events, "%s: usage n_gen %d vs %d events",
              label, batched[i].done.n_gen, batched[i].n_events);
        CHECK(batched[i].done.n_prompt == np[i], "%s: usage n_prompt", label);
    }
    printf("%s: %d concurrent streams, %d differ from alone (%d after a near-tie < %.3g; %d with "
           "both top-2 gaps >= 0.1)\n",
           label, n, n_diff, n_tie, g_tie, n_strict);
    srv_stats st;
    stats_idle(s, &st);
    CHECK(st.req_finished[SRV_FINISH_LENGTH] + st.req_finished[SRV_FINISH_STOP] == (uint64_t)2 * n,
          "%s: finished counters", label);
    CHECK(st.ttft_count == (uint64_t)n_first, "%s: ttft count %llu vs %d", label,
          (unsigned long long)st.ttft_count, n_first);
    srv_sched_free(s);
    free(alone);
    free(batched);
    return n_diff;
}

/* How far apart are a token's logits alone and inside a batch? (max |diff|
 * over: one decoding token alone vs. with 7 other sequences decoding, and a
 * prompt prefilled alone vs. together with 7 others). 0: batch-invariant. */
static double probe_drift(beast_model *m) {
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_seq = 8;
    cp.n_batch = 64;
    beast_ctx *c = beast_ctx_new(m, &cp);
    if (!c) return 1e30;
    int32_t t[8][32];
    int n[8];
    for (int k = 0; k < 8; k++) n[k] = tokenize(PROMPTS[k], t[k], 32);
    beast_batch *b = beast_batch_new(256);
    int nv = beast_n_vocab(m);
    float *a = malloc((size_t)nv * sizeof *a);
    double drift = 0;
    /* pass 0: everything alone; 1: prefill alone, decode together; 2: both together */
    for (int pass = 0; pass < 3; pass++) {
        for (int k = 0; k < 8; k++) beast_seq_clear(c, k);
        for (int k = 0; k < 8; k++) {
            if (pass < 2 || k == 0) beast_batch_clear(b);
            for (int i = 0; i < n[k] - 1; i++) beast_batch_add(b, t[k][i], k, false);
            if ((pass < 2 || k == 7) && beast_decode(c, b)) drift = 1e30;
        }
        beast_batch_clear(b);
        int nk = pass == 0 ? 1 : 8;
        for (int k = 0; k < nk; k++) beast_batch_add(b, t[k][n[k] - 1], k, true);
        if (beast_decode(c, b)) drift = 1e30;
        const float *l = beast_logits(c, 0);
        if (!l) {
            drift = 1e30;
            break;
        }
        if (pass == 0)
            memcpy(a, l, (size_t)nv * sizeof *a);
        else
            for (int i = 0; i < nv; i++) drift = fmax(drift, fabs((double)a[i] - l[i]));
    }
    free(a);
    beast_batch_free(b);
    beast_ctx_free(c);
    return drift;
}

static void test_finishes(srv_sched *s) {
    int32_t pr[64];
    int n = tokenize("Once upon a time, in a small village,", pr, 64);
    result base, r;
    srv_req_params p = greedy_params(pr, n, 24);
    CHECK(run_one(s, &p, &base) == 0, "base run");
    CHECK(base.done.finish == SRV_FINISH_LENGTH && base.n_tok == 24, "max_tokens: LENGTH %d, %d",
          base.done.finish, base.n_tok);
    CHECK(base.done.n_gen == 24 && base.done.n_prompt == n, "usage %d %d", base.done.n_gen,
          base.done.n_prompt);
    /* max_tokens 5: exactly 5 tokens, the first 5 of the longer run */
    p.max_tokens = 5;
    CHECK(run_one(s, &p, &r) == 0 && r.done.finish == SRV_FINISH_LENGTH && r.n_tok == 5,
          "max_tokens 5");
    CHECK(memcmp(r.tok, base.tok, 5 * sizeof(int32_t)) == 0, "max_tokens 5: same tokens");
    /* a stop string from the middle of the text: the text ends right before
     * its first occurrence */
    if (base.text_len > 12) {
        char stop[8];
        memcpy(stop, base.text + 8, 4);
        stop[4] = 0;
        const char *first = strstr(base.text, stop);
        const char *stops[] = {"<never appears>", stop};
        p.max_tokens = 24;
        p.stop = stops;
        p.n_stop = 2;
        CHECK(run_one(s, &p, &r) == 0, "stop run");
        CHECK(r.done.finish == SRV_FINISH_STOP, "stop string: finish %d", r.done.finish);
        CHECK(first && r.text_len == (int)(first - base.text) &&
                  memcmp(r.text, base.text, (size_t)r.text_len) == 0,
              "stop string '%s': text '%.*s' vs '%s'", stop, r.text_len, r.text, base.text);
        CHECK(r.n_tok < 24 && r.done.n_gen == r.n_events, "stop: tokens %d", r.n_tok);
        p.stop = NULL;
        p.n_stop = 0;
    }
    /* end of generation: force EOS with a logit bias */
    sampler_bias bias = {beast_token_eos(g_model), INFINITY};
    p.sp.bias = &bias;
    p.sp.n_bias = 1;
    p.max_tokens = 6;
    CHECK(run_one(s, &p, &r) == 0 && r.done.finish == SRV_FINISH_STOP && r.n_tok == 0 &&
              r.done.n_gen == 0,
          "EOG: finish %d, %d tokens", r.done.finish, r.n_tok);
    p.ignore_eos = true;
    CHECK(run_one(s, &p, &r) == 0 && r.done.finish == SRV_FINISH_LENGTH && r.n_tok == 6 &&
              r.tok[5] == bias.token,
          "ignore_eos: finish %d, %d tokens", r.done.finish, r.n_tok);
    /* logprobs: the greedy token is the top one, top list sorted */
    p.sp.n_bias = 0;
    p.sp.bias = NULL;
    p.ignore_eos = false;
    p.max_tokens = 3;
    p.logprobs = 5;
    int err;
    srv_req *q = srv_submit(s, &p, &err);
    srv_event ev;
    int ok = q && srv_next_event(q, &ev, 60) == 1 && ev.kind == SRV_EV_TOKEN;
    CHECK(ok && ev.n_top == 5 && ev.top_id[0] == ev.token &&
              fabsf(ev.top_logprob[0] - ev.logprob) < 1e-6f && ev.logprob <= 0 &&
              ev.top_logprob[1] <= ev.top_logprob[0],
          "logprobs");
    if (ok) srv_event_clear(&ev);
    srv_req_release(q); /* released early: the scheduler frees it */
}

static void test_cancel_queue_timeout(beast_model *m) {
    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = 1;
    sp.n_ctx = 512;
    sp.queue_max = 2;
    sp.prefix_cache = false;
    srv_sched *s = srv_sched_new(m, &sp);
    CHECK(s, "scheduler");
    if (!s) return;
    int32_t pr[64];
    int n = tokenize("Write a very long story about a dragon.", pr, 64);
    srv_req_params p = greedy_params(pr, n, 0); /* until the context is full */
    p.ignore_eos = true;
    int err = 0;
    /* (c) cancel mid-generation */
    srv_req *a = srv_submit(s, &p, &err);
    srv_event ev;
    int got = 0;
    while (got < 2 && srv_next_event(a, &ev, 60) == 1) {
        got += ev.kind == SRV_EV_TOKEN;
        srv_event_clear(&ev);
    }
    CHECK(got == 2, "two tokens before cancel");
    srv_cancel(a);
    srv_cancel(a); /* idempotent */
    result res;
    CHECK(collect(a, &res) == 0 && res.done.finish == SRV_FINISH_CANCELLED, "cancelled: %d",
          res.done.finish);
    CHECK(srv_next_event(a, &ev, 0) == -1, "no event after DONE");
    srv_req_release(a);
    CHECK(kv_used_wait(s, 0) == 0, "KV blocks all free after cancel");
    p.max_tokens = 3;
    CHECK(run_one(s, &p, &res) == 0 && res.done.finish == SRV_FINISH_LENGTH && res.n_tok == 3,
          "a new request runs after cancel");

    /* (d) queue full, too long, invalid */
    p.max_tokens = 0;
    srv_req *q[4];
    for (int i = 0; i < 3; i++) {
        q[i] = srv_submit(s, &p, &err);
        CHECK(q[i] && err == SRV_OK, "submit %d: %d", i, err);
    }
    q[3] = srv_submit(s, &p, &err);
    CHECK(!q[3] && err == SRV_E_BUSY, "queue full: BUSY, got %d", err);
    int32_t *longp = calloc(600, sizeof *longp);
    for (int i = 0; i < 600; i++) longp[i] = pr[i % n];
    srv_req_params lp = greedy_params(longp, 512, 4);
    CHECK(!srv_submit(s, &lp, &err) && err == SRV_E_TOO_LONG, "too long: %d", err);
    lp.n_prompt = 511; /* prompt + 1 fits exactly */
    srv_req *fits = srv_submit(s, &lp, &err);
    CHECK(!fits && err == SRV_E_BUSY, "n_ctx - 1 passes the length check (busy now): %d", err);
    lp.n_prompt = 0;
    CHECK(!srv_submit(s, &lp, &err) && err == SRV_E_INVALID, "empty prompt: %d", err);
    lp.n_prompt = 3;
    longp[1] = beast_n_vocab(m);
    CHECK(!srv_submit(s, &lp, &err) && err == SRV_E_INVALID, "token out of range: %d", err);
    longp[1] = -5;
    CHECK(!srv_submit(s, &lp, &err) && err == SRV_E_INVALID, "negative token: %d", err);
    lp.n_prompt = 3;
    longp[1] = 1;
    lp.sp.repeat_penalty = -1;
    CHECK(!srv_submit(s, &lp, &err) && err == SRV_E_INVALID, "bad sampler params: %d", err);
    free(longp);
    for (int i = 0; i < 3; i++) srv_cancel(q[i]);
    for (int i = 0; i < 3; i++) {
        CHECK(collect(q[i], &res) == 0 && res.done.finish == SRV_FINISH_CANCELLED,
              "queued %d cancelled: %d", i, res.done.finish);
        srv_req_release(q[i]);
    }

    /* (e) timeouts: one running, one waiting behind it */
    p.timeout_s = 0.5;
    srv_req *t1 = srv_submit(s, &p, &err);
    p.timeout_s = 0.2;
    srv_req *t2 = srv_submit(s, &p, &err);
    double t0 = time_now();
    CHECK(t2 && collect(t2, &res) == 0 && res.done.finish == SRV_FINISH_TIMEOUT, "waiting timeout");
    CHECK(t1 && collect(t1, &res) == 0 && res.done.finish == SRV_FINISH_TIMEOUT &&
              res.n_tok == res.done.n_gen,
          "running timeout: %d", res.done.finish);
    printf("timeouts ended after %.2f s (limit 0.5 s)\n", time_now() - t0);
    srv_req_release(t1);
    srv_req_release(t2);
    CHECK(kv_used_wait(s, 0) == 0, "KV blocks all free after timeouts");
    srv_stats st;
    stats_idle(s, &st);
    CHECK(st.req_finished[SRV_FINISH_CANCELLED] == 4 && st.req_finished[SRV_FINISH_TIMEOUT] == 2,
          "finish counters %llu %llu", (unsigned long long)st.req_finished[SRV_FINISH_CANCELLED],
          (unsigned long long)st.req_finished[SRV_FINISH_TIMEOUT]);
    srv_sched_free(s);
}

/* Prefix cache: the same prompt again reuses its whole blocks; the result
 * equals the one computed from scratch (up to near-ties). */
static void test_prefix_cache(beast_model *m) {
    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = 2;
    sp.n_ctx = 256;
    srv_sched *s = srv_sched_new(m, &sp);
    CHECK(s, "scheduler");
    if (!s) return;
    int32_t pr[128];
    int n = tokenize("You are a helpful assistant. Answer briefly and precisely. "
                     "Question: what is the tallest mountain on Earth? Answer:",
                     pr, 128);
    result a, b;
    srv_req_params p = greedy_params(pr, n, 12);
    CHECK(run_one(s, &p, &a) == 0 && a.done.n_cached == 0, "first: no cache %d", a.done.n_cached);
    CHECK(run_one(s, &p, &b) == 0, "second run");
    CHECK(b.done.n_cached == n - 1, "second: %d of %d prompt tokens cached (taken over)",
          b.done.n_cached, n);
    int at, c = compare(&a, &b, &at);
    CHECK(c != 2, "cached prefix gives the same tokens (differ at %d)", at);
    /* a running sequence's whole blocks are shared by a new request with
     * the same prefix (here: the same prompt with another ending) */
    int32_t pr2[128];
    memcpy(pr2, pr, (size_t)n * sizeof *pr);
    pr2[n - 1] = pr[n - 3];
    srv_req_params p2 = greedy_params(pr2, n, 8);
    result alone2, both2;
    CHECK(run_one(s, &p2, &alone2) == 0, "alone 2");
    /* two unrelated short requests (under a block: not worth caching) */
    int32_t other[2][16];
    for (int k = 0; k < 2; k++) {
        int no = tokenize(PROMPTS[k + 10], other[k], 16);
        srv_req_params po = greedy_params(other[k], no, 2);
        result tmp;
        run_one(s, &po, &tmp);
    }
    p.max_tokens = 40;
    p.ignore_eos = true;
    int err;
    srv_req *ra = srv_submit(s, &p, &err);
    srv_event ev;
    CHECK(ra && srv_next_event(ra, &ev, 60) == 1 && ev.kind == SRV_EV_TOKEN, "A runs");
    srv_event_clear(&ev);
    srv_req *rb = srv_submit(s, &p2, &err);
    CHECK(rb && collect(rb, &both2) == 0, "B while A runs");
    int whole = (n - 1) / 16 * 16;
    CHECK(both2.done.n_cached == whole, "B shares A's %d whole-block positions: %d", whole,
          both2.done.n_cached);
    c = compare(&alone2, &both2, &at);
    CHECK(c != 2, "B with shared blocks gives the same tokens (differ at %d)", at);
    result ares;
    CHECK(collect(ra, &ares) == 0 && ares.done.n_gen == 40, "A finishes: %d", ares.done.n_gen);
    printf("prefix cache: n %d, cached: second %d, alone2 %d, A %d, B %d\n", n, b.done.n_cached,
           alone2.done.n_cached, ares.done.n_cached, both2.done.n_cached);
    srv_req_release(ra);
    srv_req_release(rb);
    srv_stats st;
    for (int i = 0; i < 200; i++) { /* stats are published after each step */
        srv_sched_stats(s, &st);
        if (st.n_running == 0 && st.n_cached_seqs == 2) break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    printf("prefix cache: %d cached sequences, %d/%d blocks used\n", st.n_cached_seqs,
           st.kv_blocks_used, st.kv_blocks_total);
    CHECK(st.n_cached_seqs == 2, "two cached sequences: %d", st.n_cached_seqs);
    /* the second run, alone 2 and A take over n - 1, B shares whole blocks */
    CHECK(st.cached_prompt_tokens == (uint64_t)(3 * (n - 1) + whole), "cached prompt tokens %llu",
          (unsigned long long)st.cached_prompt_tokens);
    srv_sched_free(s);
}

/* A KV cache too small for all requests at once: preemption and requeueing
 * keep every stream the same as alone. */
static void test_kv_pressure(beast_model *m) {
    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = 4;
    sp.n_ctx = 128;
    sp.n_kv_tokens = 128; /* 8 blocks: two requests of ~40 positions fit */
    sp.prefix_cache = false;
    srv_sched *s = srv_sched_new(m, &sp);
    CHECK(s, "scheduler: %s", beast_error());
    if (!s) return;
    int32_t pr[4][64];
    int np[4];
    result alone[4], batched[4];
    srv_req *rq[4];
    for (int i = 0; i < 4; i++) {
        np[i] = tokenize(PROMPTS[i + 4], pr[i], 64);
        srv_req_params p = greedy_params(pr[i], np[i], 40);
        CHECK(run_one(s, &p, &alone[i]) == 0 && alone[i].n_tok == 40, "alone %d", i);
    }
    int err;
    for (int i = 0; i < 4; i++) {
        srv_req_params p = greedy_params(pr[i], np[i], 40);
        rq[i] = srv_submit(s, &p, &err);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(rq[i] && collect(rq[i], &batched[i]) == 0, "collect %d", i);
        srv_req_release(rq[i]);
        int at, c = compare(&alone[i], &batched[i], &at);
        CHECK(c != 2 && batched[i].n_tok == 40, "KV pressure: stream %d differs at %d (%d tokens)",
              i, at, batched[i].n_tok);
    }
    /* a request that cannot fit even alone fails cleanly */
    srv_req_params p = greedy_params(pr[0], np[0], 0);
    result r;
    sp.n_kv_tokens = 48;
    srv_sched *s2 = srv_sched_new(m, &sp);
    CHECK(s2 && run_one(s2, &p, &r) == 0 && r.done.finish == SRV_FINISH_ERROR && r.n_tok > 0,
          "out of KV alone: finish %d after %d tokens (%s)", r.done.finish, r.n_tok, r.done.error);
    srv_sched_free(s2);
    CHECK(kv_used_wait(s, 0) == 0, "all blocks free");
    srv_sched_free(s);
}

/* (g) shutdown with requests in flight, some already released. */
static void test_shutdown(beast_model *m) {
    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = 2;
    sp.n_ctx = 256;
    sp.queue_max = 8;
    srv_sched *s = srv_sched_new(m, &sp);
    CHECK(s, "scheduler");
    if (!s) return;
    int32_t pr[64];
    int n = tokenize("Tell me everything about the ocean.", pr, 64);
    srv_req_params p = greedy_params(pr, n, 0);
    p.ignore_eos = true;
    srv_req *r[6];
    int err;
    for (int i = 0; i < 6; i++) r[i] = srv_submit(s, &p, &err);
    srv_event ev;
    CHECK(srv_next_event(r[0], &ev, 60) == 1, "first event");
    srv_event_clear(&ev);
    srv_req_release(r[5]); /* the owner walked away */
    srv_sched_free(s);
    for (int i = 0; i < 5; i++) {
        result res;
        CHECK(r[i] && collect(r[i], &res) == 0 && res.done.finish == SRV_FINISH_CANCELLED,
              "shutdown: request %d ends cancelled: %d", i, res.done.finish);
        srv_cancel(r[i]); /* after shutdown: harmless */
        srv_req_release(r[i]);
    }
}

static void bench(beast_model *m) {
    for (int conc = 1; conc <= 8; conc *= 8) {
        srv_sched_params sp = srv_sched_default_params();
        sp.n_parallel = conc;
        sp.n_ctx = 256;
        sp.prefix_cache = false;
        srv_sched *s = srv_sched_new(m, &sp);
        int32_t pr[8][64];
        srv_req *rq[8];
        int err, total = 0;
        double t0 = time_now();
        for (int i = 0; i < 8; i++) {
            int n = tokenize(PROMPTS[i], pr[i], 64);
            srv_req_params p = greedy_params(pr[i], n, 64);
            p.ignore_eos = true;
            p.logprobs = -1;
            rq[i] = srv_submit(s, &p, &err);
            if (conc == 1) {
                result r;
                collect(rq[i], &r);
                total += r.n_tok;
                srv_req_release(rq[i]);
            }
        }
        if (conc > 1)
            for (int i = 0; i < 8; i++) {
                result r;
                collect(rq[i], &r);
                total += r.n_tok;
                srv_req_release(rq[i]);
            }
        double dt = time_now() - t0;
        srv_stats st;
        srv_sched_stats(s, &st);
        printf("bench: %d concurrent: %d tokens in %.2f s = %.1f tok/s aggregate; mean TTFT %.3f "
               "s, mean ITL %.4f s\n",
               conc, total, dt, total / dt, st.ttft_sum / (double)MAX(1, st.ttft_count),
               st.itl_sum / (double)MAX(1, st.itl_count));
        srv_sched_free(s);
    }
}

int main(void) {
    const char *dir = getenv("BEAST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir ? dir : "../models");
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("skipped: %s not found\n", path);
        return 77;
    }
    fclose(f);
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 2;
    g_model = beast_model_load(path, &mp);
    CHECK(g_model, "load: %s", beast_error());
    if (!g_model) return check_done();
    bool quick = getenv("BEAST_TEST_QUICK") && atoi(getenv("BEAST_TEST_QUICK"));
    if (getenv("BEAST_SCHED_BENCH")) {
        bench(g_model);
        beast_model_free(g_model);
        return check_done();
    }

    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = 2;
    sp.n_ctx = 256;
    srv_sched *s = srv_sched_new(g_model, &sp);
    CHECK(s, "scheduler: %s", beast_error());
    if (s) {
        test_finishes(s);
        srv_sched_free(s);
    }
    test_cancel_queue_timeout(g_model);
    test_prefix_cache(g_model);
    test_kv_pressure(g_model);
    test_shutdown(g_model);
    /* fast path: allowed divergences are near-ties within the backend's own
     * batch-vs-alone logit drift */
    double drift = probe_drift(g_model);
    g_tie = fmax(0.1, drift);
    printf("backend batch drift: max |logit alone - logit in a batch| = %.4f\n", drift);
    int n_conc = quick ? 8 : 32;
    concurrent_vs_alone(g_model, n_conc, quick ? 12 : 24, false, drift == 0, "batched");

    /* the exact CPU path (BEAST_CPU_SCALAR=1) is batch-invariant: there the
     * scheduler must reproduce every stream exactly */
    setenv("BEAST_CPU_SCALAR", "1", 1);
    beast_model *sm = beast_model_load(path, &mp);
    unsetenv("BEAST_CPU_SCALAR");
    CHECK(sm, "load (scalar)");
    if (sm) {
        double d = probe_drift(sm);
        printf("scalar path batch drift: %.4g\n", d);
        g_tie = fmax(0.1, d);
        concurrent_vs_alone(sm, quick ? 3 : 8, quick ? 4 : 12, false, d == 0, "scalar");
        beast_model_free(sm);
    }

    /* deterministic model: identical results required when the backend
     * honours the flag (probe: one token alone vs. in a batch of 8) */
    mp.deterministic = true;
    beast_model *dm = beast_model_load(path, &mp);
    CHECK(dm, "load deterministic");
    if (dm) {
        double d = probe_drift(dm);
        bool honoured = d == 0;
        g_tie = fmax(0.1, d);
        printf("deterministic flag %s by the backend (drift %.4g)\n",
               honoured ? "honoured" : "NOT honoured (identical results not required)", d);
        concurrent_vs_alone(dm, quick ? 4 : 16, quick ? 8 : 24, false, honoured, "deterministic");
        beast_model_free(dm);
    }
    beast_model_free(g_model);
    return check_done();
}
