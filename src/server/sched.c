/* sched.c: the continuous-batching scheduler (see sched.h).
 *
 * Threads and locks. One engine thread owns the beast_ctx, the sequence
 * slots and every running request's generation state. Two kinds of lock:
 *   s->mu  the waiting queue, the shutdown/wake flags, the published stats;
 *   r->mu  one request's event queue and its finished/released flags.
 * Lock order: r->mu before s->mu (srv_cancel). The engine never takes r->mu
 * while holding s->mu.
 *
 * Request lifetime: a request is freed by whichever of the two comes second:
 * the engine finishing it (DONE queued, no more references from the
 * scheduler) or its owner calling srv_req_release.
 *
 * Sequences. The context has n_seq ids: n_parallel without prefix caching,
 * 2 * n_parallel with it, so finished sequences can stay cached (their KV
 * blocks and tokens kept) after their requests end. A slot is FREE, RUNNING
 * (owned by a request) or CACHED. A request's tokens are its prompt followed
 * by what it generated; the KV of its sequence holds the first n_fed of
 * them. Each step feeds every running request either its one pending
 * token (decoding) or a chunk of the rest (prefill), decoding first, at most
 * n_batch tokens in all; the entry that feeds a request's last known token
 * asks for logits, and the sampled token is appended.
 *
 * Out of KV blocks: before each step the blocks the step needs are counted;
 * cached sequences are evicted (least recently used first), then the newest
 * running request is preempted: its sequence is dropped and it goes back to
 * the front of the queue with its tokens so far, to be prefilled again
 * (sampler state kept, so its output does not change). A request that cannot
 * fit even alone fails with "out of KV cache". */
#include "server/sched.h"
#include "model/model.h"
#include "sampler/stop.h"
#include "util/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

const double srv_latency_buckets[15] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.25, 0.5,
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

/* ---- structures ---- */
typedef struct ev_node {
    struct ev_node *next;
    srv_event ev;
} ev_node;

struct srv_req {
    /* owner side, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_sched *s; /* NULL once finished */
    ev_node *head, *tail;
    ev_node *done_node; /* allocated at submission: DONE can always be posted */
    ev_node *spare;     /* nodes whose events were read, for reuse */
    bool finished, done_taken, released;
    atomic_int cancel;
    /* waiting queue link (under s->mu) */
    srv_req *qnext;
    /* engine side */
    int32_t *tok; /* prompt, then generated tokens */
    int n_tok, cap_tok, n_prompt, n_fed, n_gen, max_tokens, seq, plan;
    int n_cached, logprobs;
    bool ignore_eos, special, admitted_once, got_first;
    ev_node *node; /* engine side: a node for the next TOKEN event, or NULL */
    sampler *smp;
    stop *st;
    double t_submit, deadline, t_admit, t_first, t_last;
    uint64_t order; /* admission order, for preemption (newest first) */
};

enum { SLOT_FREE, SLOT_RUNNING, SLOT_CACHED };

typedef struct {
    int state;
    srv_req *req;  /* RUNNING */
    int32_t *toks; /* CACHED: the tokens its KV holds */
    int n_toks, cap;
    uint64_t lru;
} sched_slot;

struct srv_sched {
    beast_model *m;
    beast_ctx *ctx;
    srv_sched_params p;
    int n_vocab, n_seq, block, n_ctx, kv_total, budget;
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    srv_req *q_head, *q_tail;
    int n_waiting, n_running_pub, n_cached_pub, kv_free_pub;
    bool shutdown, wake;
    srv_stats pub; /* counters and histograms as of the last step */
    /* engine thread only */
    srv_stats st;
    srv_req **run; /* running requests in admission order */
    int n_run;
    sched_slot *slots;
    beast_batch *batch;
    srv_req **ent_req; /* per batch entry wanting logits: its request, else NULL */
    int ent_cap;
    uint64_t lru_clock, order_clock;
    char *piece, *out;
    int piece_cap, out_cap;
};

/* ---- small helpers ---- */
static void abs_deadline(struct timespec *ts, double timeout_s) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    double sec = floor(timeout_s);
    ts->tv_sec += (time_t)sec;
    ts->tv_nsec += (long)((timeout_s - sec) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int cond_init_mono(pthread_cond_t *cv) {
    pthread_condattr_t a;
    if (pthread_condattr_init(&a)) return -1;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc ? -1 : 0;
}

static int hist_bucket(double v) {
    for (int i = 0; i < 15; i++)
        if (v <= srv_latency_buckets[i]) return i;
    return 15;
}

static void req_free(srv_req *r) {
    if (!r) return;
    for (ev_node *e = r->head, *n; e; e = n) {
        n = e->next;
        srv_event_clear(&e->ev);
        free(e);
    }
    if (r->done_node) {
        srv_event_clear(&r->done_node->ev);
        free(r->done_node);
    }
    for (ev_node *e = r->spare, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    free(r->node);
    sampler_free(r->smp);
    stop_free(r->st);
    free(r->tok);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Append an event node to r's queue (engine thread), and take back a node
 * the reader is done with for the next event: a request streaming tokens
 * cycles through a few nodes instead of allocating one per token. */
static void post(srv_req *r, ev_node *e) {
    e->next = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = e;
    else
        r->head = e;
    r->tail = e;
    if (!r->node && r->spare) {
        r->node = r->spare;
        r->spare = r->node->next;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- slots ---- */
static int slot_of_free(srv_sched *s) {
    for (int i = 0; i < s->n_seq; i++)
        if (s->slots[i].state == SLOT_FREE) return i;
    return -1;
}

static int slot_lru_cached(srv_sched *s, int except) {
    int best = -1;
    for (int i = 0; i < s->n_seq; i++)
        if (i != except && s->slots[i].state == SLOT_CACHED &&
            (best < 0 || s->slots[i].lru < s->slots[best].lru))
            best = i;
    return best;
}

static void slot_clear(srv_sched *s, int i) {
    beast_seq_clear(s->ctx, i);
    s->slots[i].state = SLOT_FREE;
    s->slots[i].req = NULL;
    s->slots[i].n_toks = 0;
}

/* Drop the least recently used cached sequence; false when there is none. */
static bool evict_one(srv_sched *s, int except) {
    int i = slot_lru_cached(s, except);
    if (i < 0) return false;
    slot_clear(s, i);
    return true;
}

/* The request leaves slot i: keep its KV as a cached prefix when caching is
 * on (and the token copy can be made), else free it. */
static void slot_leave(srv_sched *s, int i, srv_req *r, bool keep) {
    sched_slot *sl = &s->slots[i];
    sl->req = NULL;
    if (keep && s->p.prefix_cache && r->n_fed >= s->block && beast_seq_len(s->ctx, i) == r->n_fed) {
        if (sl->cap < r->n_fed) {
            int32_t *t = xrealloc(sl->toks, (size_t)r->n_fed * sizeof *t);
            if (t) {
                sl->toks = t;
                sl->cap = r->n_fed;
            }
        }
        if (sl->cap >= r->n_fed) {
            memcpy(sl->toks, r->tok, (size_t)r->n_fed * sizeof *r->tok);
            sl->n_toks = r->n_fed;
            sl->state = SLOT_CACHED;
            sl->lru = ++s->lru_clock;
            return;
        }
    }
    slot_clear(s, i);
}

static void publish(srv_sched *s);

/* ---- finishing ---- */
static void run_remove(srv_sched *s, srv_req *r) {
    for (int i = 0; i < s->n_run; i++)
        if (s->run[i] == r) {
            memmove(s->run + i, s->run + i + 1, (size_t)(s->n_run - i - 1) * sizeof *s->run);
            s->n_run--;
            pthread_mutex_lock(&s->mu);
            s->n_running_pub--;
            pthread_mutex_unlock(&s->mu);
            return;
        }
}

/* End r: free or cache its sequence, queue DONE (with the text the stop
 * matcher still held), and let go of r. r must not be in the waiting queue. */
static void finish(srv_sched *s, srv_req *r, int reason, const char *msg) {
    if (r->seq >= 0) {
        run_remove(s, r);
        slot_leave(s, r->seq, r, reason != SRV_FINISH_ERROR);
        r->seq = -1;
    }
    double now = time_now();
    srv_event *ev = &r->done_node->ev;
    memset(ev, 0, sizeof *ev);
    ev->kind = SRV_EV_DONE;
    ev->token = -1;
    ev->finish = reason;
    ev->n_prompt = r->n_prompt;
    ev->n_cached = r->n_cached;
    ev->n_gen = r->n_gen;
    double t_admit = r->admitted_once ? r->t_admit : now;
    ev->t_queue = t_admit - r->t_submit;
    double t_first = r->got_first ? r->t_first : now;
    ev->t_prompt = r->admitted_once ? t_first - t_admit : 0;
    ev->t_gen = r->got_first ? now - r->t_first : 0;
    if (msg) snprintf(ev->error, sizeof ev->error, "%s", msg);
    /* the rest of the text (held back for a possible stop string or an
     * unfinished UTF-8 character) */
    size_t pend = stop_pending(r->st);
    ev->text = xmalloc(pend + 1);
    if (ev->text) {
        size_t n = 0, k;
        while (n < pend && (k = stop_flush(r->st, ev->text + n, pend - n)) > 0) n += k;
        ev->text[n] = 0;
        ev->text_len = (int)n;
    }
    if (reason >= 0 && reason <= SRV_FINISH_ERROR) s->st.req_finished[reason]++;
    publish(s); /* whoever sees DONE sees the stats that include it */

    ev_node *e = r->done_node;
    r->done_node = NULL;
    e->next = NULL;
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = e;
    else
        r->head = e;
    r->tail = e;
    r->finished = true;
    r->s = NULL;
    bool free_now = r->released;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (free_now) req_free(r);
}

/* Put a running request back at the front of the queue (out of KV). */
static void preempt(srv_sched *s, srv_req *r) {
    run_remove(s, r);
    slot_clear(s, r->seq);
    r->seq = -1;
    r->n_fed = 0;
    pthread_mutex_lock(&s->mu);
    r->qnext = s->q_head;
    s->q_head = r;
    if (!s->q_tail) s->q_tail = r;
    s->n_waiting++;
    pthread_mutex_unlock(&s->mu);
}

/* Cancelled and timed-out requests, running or waiting. */
static void sweep(srv_sched *s) {
    double now = time_now();
    for (int i = 0; i < s->n_run;) {
        srv_req *r = s->run[i];
        if (atomic_load(&r->cancel))
            finish(s, r, SRV_FINISH_CANCELLED, NULL);
        else if (r->deadline > 0 && now >= r->deadline)
            finish(s, r, SRV_FINISH_TIMEOUT, "timeout");
        else
            i++;
    }
    srv_req *gone = NULL;
    pthread_mutex_lock(&s->mu);
    srv_req **pp = &s->q_head, *prev = NULL;
    while (*pp) {
        srv_req *r = *pp;
        if (atomic_load(&r->cancel) || (r->deadline > 0 && now >= r->deadline)) {
            *pp = r->qnext;
            if (s->q_tail == r) s->q_tail = prev;
            s->n_waiting--;
            r->qnext = gone;
            gone = r;
        } else {
            prev = r;
            pp = &r->qnext;
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (gone) {
        srv_req *r = gone;
        gone = r->qnext;
        r->qnext = NULL;
        if (atomic_load(&r->cancel))
            finish(s, r, SRV_FINISH_CANCELLED, NULL);
        else
            finish(s, r, SRV_FINISH_TIMEOUT, "timeout");
    }
}

/* ---- admission ---- */
static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int n = MIN(na, nb), i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static int blocks_for(srv_sched *s, int n) {
    return (n + s->block - 1) / s->block;
}

/* Blocks that evicting every cached sequence would free (those no running
 * sequence shares are counted by their sequences' lengths: an estimate that
 * only decides whether to wait, never correctness). */
static int evictable_blocks(srv_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_seq; i++)
        if (s->slots[i].state == SLOT_CACHED) n += blocks_for(s, beast_seq_len(s->ctx, i));
    return n;
}

/* Move waiting requests to free slots while there is room. */
static void admit(srv_sched *s) {
    while (s->n_run < s->p.n_parallel) {
        pthread_mutex_lock(&s->mu);
        srv_req *r = s->q_head;
        pthread_mutex_unlock(&s->mu);
        if (!r) return;

        /* the running or cached sequence sharing the longest prefix; at
         * least the last token is always fed again (its logits are needed) */
        int best = -1, best_len = 0, want = r->n_tok - 1;
        if (s->p.prefix_cache)
            for (int i = 0; i < s->n_seq; i++) {
                sched_slot *sl = &s->slots[i];
                int L = 0;
                if (sl->state == SLOT_CACHED)
                    L = common_prefix(sl->toks, sl->n_toks, r->tok, want);
                else if (sl->state == SLOT_RUNNING)
                    L = common_prefix(sl->req->tok, sl->req->n_fed, r->tok, want);
                if (L > best_len) {
                    best = i;
                    best_len = L;
                }
            }
        int free_slot = slot_of_free(s);
        /* a cached best match is taken over (its KV kept up to the common
         * prefix) when the match is worth a block or a slot is needed anyway */
        bool takeover = best >= 0 && s->slots[best].state == SLOT_CACHED &&
                        (best_len >= s->block || free_slot < 0);
        bool share = !takeover && best >= 0 && best_len >= s->block;
        int reuse = takeover ? best_len : share ? best_len / s->block * s->block : 0;
        /* room: blocks for the whole prompt plus the first generated token */
        int need = blocks_for(s, r->n_tok + 1) - reuse / s->block, n_free = 0;
        beast_kv_blocks(s->ctx, NULL, &n_free, NULL);
        if (s->n_run > 0 && need > n_free + evictable_blocks(s)) return;

        pthread_mutex_lock(&s->mu);
        s->q_head = r->qnext;
        if (!s->q_head) s->q_tail = NULL;
        s->n_waiting--;
        s->n_running_pub++;
        pthread_mutex_unlock(&s->mu);
        r->qnext = NULL;

        int dst, fed = 0;
        if (takeover) {
            dst = best;
            beast_seq_truncate(s->ctx, dst, best_len);
            fed = beast_seq_len(s->ctx, dst);
        } else {
            dst = free_slot;
            if (dst < 0) {
                int v = slot_lru_cached(s, share ? best : -1);
                slot_clear(s, v); /* v >= 0: fewer than n_parallel run, n_seq >= n_parallel */
                dst = v;
            }
            if (share) {
                int k = beast_seq_share(s->ctx, dst, best, best_len);
                fed = k > 0 ? k : 0;
            }
        }
        s->slots[dst].state = SLOT_RUNNING;
        s->slots[dst].req = r;
        s->slots[dst].n_toks = 0;
        r->seq = dst;
        r->n_fed = fed;
        r->order = ++s->order_clock;
        if (!r->admitted_once) {
            r->admitted_once = true;
            r->t_admit = time_now();
            r->n_cached = MIN(fed, r->n_prompt);
            s->st.cached_prompt_tokens += (uint64_t)r->n_cached;
            s->st.prompt_tokens += (uint64_t)r->n_prompt;
        }
        s->run[s->n_run++] = r;
    }
}

/* ---- one step ---- */
static int plan_step(srv_sched *s) {
    beast_batch_clear(s->batch);
    for (int i = 0; i < s->n_run; i++) s->run[i]->plan = 0;
    /* decoding sequences first: one token each */
    for (int i = 0; i < s->n_run && s->batch->n < s->budget; i++) {
        srv_req *r = s->run[i];
        if (r->n_tok - r->n_fed == 1) {
            if (beast_batch_add(s->batch, r->tok[r->n_tok - 1], r->seq, true)) return -1;
            r->plan = 1;
        }
    }
    /* then prompt chunks in admission order, within the step's budget */
    for (int i = 0; i < s->n_run && s->batch->n < s->budget; i++) {
        srv_req *r = s->run[i];
        int rest = r->n_tok - r->n_fed;
        if (rest <= 1) continue;
        int k = MIN(rest, s->budget - s->batch->n);
        for (int j = 0; j < k; j++)
            if (beast_batch_add(s->batch, r->tok[r->n_fed + j], r->seq,
                                r->n_fed + j == r->n_tok - 1))
                return -1;
        r->plan = k;
    }
    return 0;
}

/* KV blocks the planned step needs beyond what the sequences hold. */
static int step_blocks(srv_sched *s) {
    int need = 0;
    for (int i = 0; i < s->n_run; i++) {
        srv_req *r = s->run[i];
        if (r->plan) need += blocks_for(s, r->n_fed + r->plan) - blocks_for(s, r->n_fed);
    }
    return need;
}

static srv_req *newest_running(srv_sched *s) {
    srv_req *n = NULL;
    for (int i = 0; i < s->n_run; i++)
        if (!n || s->run[i]->order > n->order) n = s->run[i];
    return n;
}

static int grow_buf(char **buf, int *cap, size_t need) {
    if ((size_t)*cap >= need) return 0;
    size_t c = MAX(need, (size_t)*cap * 2);
    char *b = xrealloc(*buf, c);
    if (!b) return -1;
    *buf = b;
    *cap = (int)c;
    return 0;
}

/* Sample r's next token from batch entry j's logits and post it. The
 * candidates (a few hundred bytes from the GPU) decide when they prove the
 * result equal to the whole row's; else the row is read. */
static void take_token(srv_sched *s, srv_req *r, int j) {
    const beast_cand *cand = NULL;
    float lse = 0;
    int nc = beast_candidates(s->ctx, j, &cand, r->logprobs >= 0 ? &lse : NULL);
    const float *logits = NULL;
    int32_t t;
    if (nc < 0 || !sampler_sample_cand(r->smp, cand, nc, BEAST_N_CAND, &t)) {
        logits = beast_logits(s->ctx, j);
        t = logits ? sampler_sample(r->smp, logits) : -1;
    }
    if (t < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "sampling failed: %s", err_get());
        finish(s, r, SRV_FINISH_ERROR, msg);
        return;
    }
    sampler_accept(r->smp, t);
    double now = time_now();
    if (!r->ignore_eos && beast_token_is_eog(s->m, t)) {
        finish(s, r, SRV_FINISH_STOP, NULL);
        return;
    }
    ev_node *e = r->node;
    r->node = NULL;
    if (e)
        memset(e, 0, sizeof *e);
    else if (!(e = xcalloc(1, sizeof *e))) {
        finish(s, r, SRV_FINISH_ERROR, "out of memory");
        return;
    }
    srv_event *ev = &e->ev;
    ev->kind = SRV_EV_TOKEN;
    ev->token = t;
    if (r->logprobs >= 0) {
        int k = MIN(r->logprobs, SRV_MAX_TOP_LOGPROBS), n = -1;
        if (nc >= 0)
            n = sampler_logprobs_cand(cand, nc, BEAST_N_CAND, lse, s->n_vocab, t, &ev->logprob, k,
                                      ev->top_id, ev->top_logprob);
        if (n < 0 && (logits || (logits = beast_logits(s->ctx, j))))
            n = sampler_logprobs(logits, s->n_vocab, t, &ev->logprob, k, ev->top_id,
                                 ev->top_logprob);
        ev->n_top = n > 0 ? n : 0;
    }
    int len = beast_token_piece(s->m, t, s->piece, s->piece_cap, r->special);
    if (len > s->piece_cap) {
        if (grow_buf(&s->piece, &s->piece_cap, (size_t)len)) len = -1;
        if (len >= 0) len = beast_token_piece(s->m, t, s->piece, s->piece_cap, r->special);
    }
    if (len < 0) len = 0;
    size_t need = (size_t)len + stop_pending(r->st) + 1;
    int hit = 0;
    size_t n = 0;
    if (!grow_buf(&s->out, &s->out_cap, need))
        n = stop_feed(r->st, s->piece, (size_t)len, s->out, need, &hit);
    ev->text = xmalloc(n + 1);
    if (ev->text) {
        memcpy(ev->text, s->out, n);
        ev->text[n] = 0;
        ev->text_len = (int)n;
    }
    /* latency statistics */
    if (!r->got_first) {
        r->got_first = true;
        r->t_first = now;
        double v = now - r->t_submit;
        s->st.ttft_hist[hist_bucket(v)]++;
        s->st.ttft_sum += v;
        s->st.ttft_count++;
    } else {
        double v = now - r->t_last;
        s->st.itl_hist[hist_bucket(v)]++;
        s->st.itl_sum += v;
        s->st.itl_count++;
    }
    r->t_last = now;
    r->tok[r->n_tok++] = t;
    r->n_gen++;
    s->st.gen_tokens++;
    post(r, e);
    if (hit)
        finish(s, r, SRV_FINISH_STOP, NULL);
    else if ((r->max_tokens > 0 && r->n_gen >= r->max_tokens) || r->n_tok >= s->n_ctx)
        finish(s, r, SRV_FINISH_LENGTH, NULL);
}

static void step(srv_sched *s) {
    /* plan, making room in the KV cache: evict cached prefixes, then
     * preempt the newest request, then (alone and still too big) fail it */
    for (;;) {
        if (s->n_run == 0) return;
        if (plan_step(s)) {
            srv_req *r = newest_running(s);
            finish(s, r, SRV_FINISH_ERROR, "out of memory");
            continue;
        }
        int n_free = 0;
        beast_kv_blocks(s->ctx, NULL, &n_free, NULL);
        if (step_blocks(s) <= n_free) break;
        if (evict_one(s, -1)) continue;
        srv_req *r = newest_running(s);
        if (s->n_run > 1)
            preempt(s, r);
        else
            finish(s, r, SRV_FINISH_ERROR, "out of KV cache: the request does not fit");
    }
    if (s->batch->n == 0) return;
    if (beast_decode(s->ctx, s->batch)) {
        char msg[160];
        snprintf(msg, sizeof msg, "engine: %s", err_get());
        /* the requests of the failed batch end; the others carry on */
        for (int i = 0; i < s->n_run;) {
            if (s->run[i]->plan)
                finish(s, s->run[i], SRV_FINISH_ERROR, msg);
            else
                i++;
        }
        return;
    }
    s->st.n_steps++;
    /* map entries that asked for logits back to their requests */
    if (s->ent_cap < s->batch->n) {
        srv_req **e = xrealloc(s->ent_req, (size_t)s->batch->n * sizeof *e);
        if (!e) {
            while (s->n_run) finish(s, s->run[0], SRV_FINISH_ERROR, "out of memory");
            return;
        }
        s->ent_req = e;
        s->ent_cap = s->batch->n;
    }
    for (int i = 0; i < s->batch->n; i++) s->ent_req[i] = NULL;
    int snap = s->n_run;
    srv_req **runs = s->run;
    for (int i = 0; i < snap; i++) {
        srv_req *r = runs[i];
        if (!r->plan) continue;
        r->n_fed += r->plan;
        if (r->n_fed == r->n_tok)
            for (int j = 0; j < s->batch->n; j++)
                if (s->batch->seq[j] == r->seq && s->batch->logits[j]) s->ent_req[j] = r;
    }
    for (int j = 0; j < s->batch->n; j++)
        if (s->ent_req[j]) take_token(s, s->ent_req[j], j);
}

static void publish(srv_sched *s) {
    int n_free = 0, n_cached = 0;
    beast_kv_blocks(s->ctx, NULL, &n_free, NULL);
    for (int i = 0; i < s->n_seq; i++) n_cached += s->slots[i].state == SLOT_CACHED;
    pthread_mutex_lock(&s->mu);
    s->pub = s->st;
    s->kv_free_pub = n_free;
    s->n_cached_pub = n_cached;
    pthread_mutex_unlock(&s->mu);
}

static void *engine_main(void *arg) {
    srv_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown && s->n_run == 0 && !s->q_head && !s->wake)
            pthread_cond_wait(&s->cv, &s->mu);
        s->wake = false;
        bool stop = s->shutdown;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        sweep(s);
        admit(s);
        step(s);
        publish(s);
    }
    /* shutdown: cancel everything */
    while (s->n_run) finish(s, s->run[0], SRV_FINISH_CANCELLED, "server shutting down");
    for (;;) {
        pthread_mutex_lock(&s->mu);
        srv_req *r = s->q_head;
        if (r) {
            s->q_head = r->qnext;
            if (!s->q_head) s->q_tail = NULL;
            s->n_waiting--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r) break;
        r->qnext = NULL;
        finish(s, r, SRV_FINISH_CANCELLED, "server shutting down");
    }
    publish(s);
    return NULL;
}

/* ---- public ---- */
srv_sched *srv_sched_new(beast_model *m, const srv_sched_params *pp) {
    srv_sched_params p = pp ? *pp : srv_sched_default_params();
    if (!m || p.n_parallel < 1 || p.n_parallel > 1024 || p.n_ctx < 2 || p.n_batch < 1 ||
        p.queue_max < 0 || p.n_kv_tokens < 0) {
        err_set("scheduler: bad parameters (n_parallel %d, n_ctx %d, n_batch %d, queue_max %d)",
                p.n_parallel, p.n_ctx, p.n_batch, p.queue_max);
        return NULL;
    }
    srv_sched *s = xcalloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->p = p;
    s->n_vocab = beast_n_vocab(m);
    s->n_seq = p.prefix_cache ? 2 * p.n_parallel : p.n_parallel;
    s->n_ctx = p.n_ctx;
    if (p.deterministic) model_set_deterministic(m, 1); /* before any compute on this model */
    /* a request alone must get what it gets in a batch, up to the batched
     * path's rounding: no 8-bit activations for one token (on an H200 with a
     * random-weight 1B model, 3 of 32 concurrent greedy streams left their
     * solo text at top-2 gaps of 0.10-0.20 with them, none without) */
    model_set_float_act(m, 1);
    beast_ctx_params cp = beast_ctx_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_seq = s->n_seq;
    cp.n_batch = p.n_batch;
    cp.n_kv_tokens = p.n_kv_tokens > 0 ? p.n_kv_tokens : p.n_ctx * p.n_parallel;
    if ((int64_t)p.n_ctx * p.n_parallel > (1 << 26) && p.n_kv_tokens == 0) {
        err_set("scheduler: KV cache of n_ctx %d x %d sequences is too large", p.n_ctx,
                p.n_parallel);
        free(s);
        return NULL;
    }
    s->ctx = beast_ctx_new(m, &cp);
    if (!s->ctx) {
        free(s);
        return NULL;
    }
    beast_kv_blocks(s->ctx, &s->kv_total, NULL, &s->block);
    s->budget = MAX(p.n_batch, p.n_parallel); /* every decoding sequence, every step */
    s->run = xcalloc((size_t)p.n_parallel, sizeof *s->run);
    s->slots = xcalloc((size_t)s->n_seq, sizeof *s->slots);
    s->batch = beast_batch_new(p.n_batch);
    s->piece_cap = 256;
    s->piece = xmalloc((size_t)s->piece_cap);
    s->out_cap = 256;
    s->out = xmalloc((size_t)s->out_cap);
    if (!s->run || !s->slots || !s->batch || !s->piece || !s->out) goto fail;
    if (pthread_mutex_init(&s->mu, NULL)) goto fail;
    if (cond_init_mono(&s->cv)) {
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    if (pthread_create(&s->th, NULL, engine_main, s)) {
        err_set("scheduler: cannot start the engine thread");
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    s->th_started = true;
    publish(s);
    return s;
fail:
    beast_ctx_free(s->ctx);
    free(s->run);
    free(s->slots);
    beast_batch_free(s->batch);
    free(s->piece);
    free(s->out);
    free(s);
    return NULL;
}

void srv_sched_free(srv_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->shutdown = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    for (int i = 0; i < s->n_seq; i++) free(s->slots[i].toks);
    free(s->slots);
    free(s->run);
    free(s->ent_req);
    beast_batch_free(s->batch);
    beast_ctx_free(s->ctx);
    free(s->piece);
    free(s->out);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static srv_req *submit_fail(int *err, int code, srv_req *r) {
    if (err) *err = code;
    req_free(r);
    return NULL;
}

srv_req *srv_submit(srv_sched *s, const srv_req_params *p, int *err) {
    if (err) *err = SRV_OK;
    if (!s || !p || !p->prompt || p->n_prompt < 1 || p->n_stop < 0 || p->n_stop > SRV_MAX_STOPS ||
        (p->n_stop > 0 && !p->stop) || p->logprobs > SRV_MAX_TOP_LOGPROBS ||
        p->timeout_s != p->timeout_s) {
        err_set("invalid request parameters");
        return submit_fail(err, SRV_E_INVALID, NULL);
    }
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= s->n_vocab) {
            err_set("invalid request: prompt token %d out of range [0, %d)", p->prompt[i],
                    s->n_vocab);
            return submit_fail(err, SRV_E_INVALID, NULL);
        }
    int kv_total = s->kv_total;
    if (p->n_prompt + 1 > s->n_ctx || p->n_prompt + 1 > kv_total * s->block) {
        err_set("prompt too long: %d tokens, the context holds %d", p->n_prompt,
                MIN(s->n_ctx, kv_total * s->block));
        return submit_fail(err, SRV_E_TOO_LONG, NULL);
    }
    srv_req *r = xcalloc(1, sizeof *r);
    if (!r) return submit_fail(err, SRV_E_INVALID, NULL);
    if (pthread_mutex_init(&r->mu, NULL)) {
        free(r);
        return submit_fail(err, SRV_E_INVALID, NULL);
    }
    if (cond_init_mono(&r->cv)) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return submit_fail(err, SRV_E_INVALID, NULL);
    }
    atomic_init(&r->cancel, 0);
    r->seq = -1;
    r->cap_tok = s->n_ctx + 1;
    r->tok = xmalloc((size_t)r->cap_tok * sizeof *r->tok);
    r->done_node = xcalloc(1, sizeof *r->done_node);
    r->smp = sampler_new(&p->sp, s->n_vocab);
    r->st = stop_new(p->stop, p->n_stop);
    if (!r->tok || !r->done_node || !r->smp || !r->st) {
        err_prefix("invalid request");
        return submit_fail(err, SRV_E_INVALID, r);
    }
    memcpy(r->tok, p->prompt, (size_t)p->n_prompt * sizeof *r->tok);
    r->n_tok = r->n_prompt = p->n_prompt;
    r->max_tokens = p->max_tokens;
    r->ignore_eos = p->ignore_eos;
    r->special = p->special_in_text;
    r->logprobs = p->logprobs < 0 ? -1 : p->logprobs;
    r->t_submit = time_now();
    r->deadline = p->timeout_s > 0 ? r->t_submit + p->timeout_s : 0;

    pthread_mutex_lock(&s->mu);
    int code = SRV_OK;
    if (s->shutdown) {
        code = SRV_E_SHUTDOWN;
        err_set("server shutting down");
    } else {
        int room = s->p.queue_max + MAX(0, s->p.n_parallel - s->n_running_pub);
        if (s->n_waiting >= room) {
            code = SRV_E_BUSY;
            err_set("server busy: %d requests waiting", s->n_waiting);
        }
    }
    if (code == SRV_OK) {
        r->s = s;
        if (s->q_tail)
            s->q_tail->qnext = r;
        else
            s->q_head = r;
        s->q_tail = r;
        s->n_waiting++;
        s->wake = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (code != SRV_OK) return submit_fail(err, code, r);
    return r;
}

int srv_next_event(srv_req *r, srv_event *ev, double timeout_s) {
    struct timespec ts;
    if (timeout_s > 0) abs_deadline(&ts, timeout_s);
    pthread_mutex_lock(&r->mu);
    int rc;
    for (;;) {
        if (r->head) {
            ev_node *e = r->head;
            r->head = e->next;
            if (!r->head) r->tail = NULL;
            *ev = e->ev;
            e->next = r->spare; /* the engine reuses it (post) */
            r->spare = e;
            if (ev->kind == SRV_EV_DONE) r->done_taken = true;
            rc = 1;
            break;
        }
        if (r->done_taken) {
            rc = -1;
            break;
        }
        if (timeout_s == 0) {
            rc = 0;
            break;
        }
        if (timeout_s < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT && !r->head) {
            rc = r->done_taken ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void srv_event_clear(srv_event *ev) {
    if (!ev) return;
    free(ev->text);
    ev->text = NULL;
    ev->text_len = 0;
}

/* Flag r cancelled and wake the engine (r->mu held by the caller). */
static void cancel_locked(srv_req *r) {
    if (r->finished) return;
    atomic_store(&r->cancel, 1);
    srv_sched *s = r->s; /* alive: the engine cannot finish r while we hold r->mu */
    if (s) {
        pthread_mutex_lock(&s->mu);
        s->wake = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

void srv_cancel(srv_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    cancel_locked(r);
    pthread_mutex_unlock(&r->mu);
}

void srv_req_release(srv_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->released = true;
    cancel_locked(r); /* nobody reads its events any more */
    bool free_now = r->finished;
    pthread_mutex_unlock(&r->mu);
    if (free_now) req_free(r);
}

void srv_sched_stats(srv_sched *s, srv_stats *out) {
    int total = s->kv_total, bs = s->block; /* constant after creation */
    pthread_mutex_lock(&s->mu);
    *out = s->pub;
    out->n_parallel = s->p.n_parallel;
    out->n_running = s->n_running_pub;
    out->n_waiting = s->n_waiting;
    out->queue_max = s->p.queue_max;
    out->kv_blocks_total = total;
    out->kv_blocks_used = total - s->kv_free_pub;
    out->kv_block_size = bs;
    out->n_cached_seqs = s->n_cached_pub;
    pthread_mutex_unlock(&s->mu);
}

const beast_model *srv_sched_model(const srv_sched *s) {
    return s->m;
}

int srv_sched_n_ctx(const srv_sched *s) {
    return s->n_ctx;
}
