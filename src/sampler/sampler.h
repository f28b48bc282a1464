/* sampler.h: turning a logit vector into the next token (temperature, top-k,
 * top-p, min-p, repetition / presence / frequency penalties, logit bias,
 * seeded PRNG) and OpenAI-style log-probabilities.
 *
 * Pipeline of sampler_sample(), in this order:
 *   1. copy the logits (the caller's array is never modified); here and after
 *      steps 2 and 3, NaN becomes -inf (banned) and +inf becomes FLT_MAX
 *      (forced; several such tokens share the draws)
 *   2. logit bias: logit[t] += bias
 *   3. penalties, for every distinct token t seen c > 0 times in the window
 *      of the last repeat_last_n accepted tokens:
 *        repeat:   logit > 0 ? logit / repeat_penalty : logit * repeat_penalty
 *        then:     logit -= presence_penalty + frequency_penalty * c
 *   4. temperature <= 0: greedy, the highest logit, lowest id on ties
 *   5. top_k: keep the k highest logits (ties broken towards the lower id)
 *   6. temperature and softmax over the kept tokens (double precision,
 *      max subtracted first)
 *   7. top_p: keep the shortest prefix of the tokens sorted by probability
 *      (lowest id first on ties) whose cumulative probability reaches top_p
 *   8. min_p: keep tokens whose probability is >= min_p * (top probability)
 *   9. draw one token from the kept ones, renormalised (sums and the draw
 *      run over the kept tokens in increasing id order).
 * Tokens at -inf never come out. Non-greedy sampling consumes exactly one
 * PRNG draw per call, so the same seed, logits and accepted tokens give the
 * same tokens on every run (the PRNG is xoshiro256** seeded by splitmix64
 * and does not depend on the platform; only libm's exp() could differ in the
 * last bit between platforms).
 *
 * Cost per call is O(n_vocab) plus O(n_vocab log k) worst case for top_k; no
 * full sort of the vocabulary ever happens (top_p finds its cut with a
 * quickselect on probability mass, expected O(n)).
 *
 * A sampler is not thread-safe; use one per sequence.
 *
 * Sampling from candidates (sampler_sample_cand): the engine can give a
 * row's best BEAST_N_CAND logits instead of the row (beast_candidates).
 * Every token outside such a list has a logit <= tau, the list's last one
 * (or is -inf when the list is shorter). Bias and penalties are applied to
 * the candidates; outside tokens can only go down (unless a positive bias
 * names one, or penalties raise logits: then no proof). The result equals
 * sampler_sample's on the full row when:
 *   greedy: the best penalised candidate is above tau;
 *   top_k = k: the k-th best penalised candidate is above tau (then the
 *     top-k set and its softmax are exactly known);
 *   no top_k: the mass z of the whole vocabulary lies in [z_c, z_c + (n_vocab
 *     - n) * exp((tau - max) / T)] (z_c: the candidates'); min_p must drop
 *     a token at tau, or top_p must cut inside the candidates above tau; and
 *     the top_p cut is the same for both ends of the range (the cut moves
 *     monotonically with z), with a relative margin of 1e-9 for sums taken
 *     in other orders. Plain temperature sampling over an open list never
 *     qualifies.
 * With a complete list (shorter than the maximum: every other token is
 * -inf) all of this holds trivially. */
#ifndef BEAST_SAMPLER_H
#define BEAST_SAMPLER_H

#include "beast.h" /* beast_cand */

#include <stdint.h>

typedef struct sampler sampler;

typedef struct {
    int32_t token;
    float bias; /* added to the logit; -INFINITY bans the token, +INFINITY forces it */
} sampler_bias;

typedef struct {
    float temperature;        /* <= 0: greedy */
    int top_k;                /* <= 0 (or >= n_vocab): off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off; values above 1 act as 1 */
    float repeat_penalty;     /* 1: off; must be > 0 */
    int repeat_last_n;        /* penalty window: -1 whole history, 0 no penalties */
    float presence_penalty;   /* 0: off (OpenAI semantics) */
    float frequency_penalty;  /* 0: off (OpenAI semantics) */
    const sampler_bias *bias; /* copied by sampler_new; tokens must be in range */
    int n_bias;
    uint64_t seed;
} sampler_params;

#define SAMPLER_DEFAULT_SEED 0x5eedbea57ull

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1,
 * repeat_last_n 64, no presence/frequency penalty, no bias,
 * seed SAMPLER_DEFAULT_SEED. */
sampler_params sampler_default_params(void);

/* Whether p picks the raw argmax (greedy, no penalties, no bias): then the
 * choice is beast_generate_greedy's, which can make it on the device. */
bool sampler_params_greedy(const sampler_params *p);

/* NULL (with err_set) on bad parameters (NaN values, repeat_penalty <= 0,
 * repeat_last_n < -1, bias token out of range, n_vocab < 1) or no memory.
 * Memory: about 24 bytes per vocabulary entry. */
sampler *sampler_new(const sampler_params *p, int n_vocab);
void sampler_free(sampler *s);

/* Forget the accepted-token history and restart the PRNG from the seed. */
void sampler_reset(sampler *s);

/* Record a token in the penalty history (generated tokens, and prompt tokens
 * too if penalties should see them). Out-of-range tokens are ignored; so is
 * everything when penalties are off. */
void sampler_accept(sampler *s, int32_t token);

/* Choose the next token from n_vocab logits. Does not record it (call
 * sampler_accept). Returns -1 with err_set only when no token is possible
 * (every logit -inf or NaN after bias and penalties). */
int32_t sampler_sample(sampler *s, const float *logits);

/* The same choice from the n best candidates of the row (beast_candidates:
 * best first, n <= n_max; n < n_max means every other logit is -inf), when
 * they prove it equal to sampler_sample's on the whole row (see above).
 * Returns 1 with *token, having consumed the PRNG draw sampler_sample would
 * have; 0 when the whole row is needed (nothing consumed: call
 * sampler_sample on it). Also 0 for a list that breaks the order. */
int sampler_sample_cand(sampler *s, const beast_cand *cands, int n, int n_max, int32_t *token);

/* The logits after steps 1-3 of the last sampler_sample() call (n_vocab
 * floats owned by the sampler, valid until the next call), or NULL if
 * nothing was sampled since creation / reset or the last token came from
 * sampler_sample_cand. */
const float *sampler_last_logits(const sampler *s);

/* Log-probabilities of the distribution softmax(logits) at temperature 1,
 * with NaN treated as -inf. Pass the raw model logits to get the model's own
 * log-probabilities (what OpenAI's logprobs report), or sampler_last_logits()
 * for the distribution after bias and penalties.
 *   token >= 0: *token_logprob receives log p(token) (may be -inf).
 *   n_top > 0: top_ids / top_logprobs receive the n_top most likely tokens,
 *   most likely first, lower id first on ties; -inf tokens are left out.
 * Returns the number of top entries written, or -1 (err_set) on bad
 * arguments or no memory. */
int sampler_logprobs(const float *logits, int n_vocab, int32_t token, float *token_logprob,
                     int n_top, int32_t *top_ids, float *top_logprobs);

/* sampler_logprobs of the raw row from its candidates (as in
 * sampler_sample_cand) and its log-sum-exp: log p = logit - lse. Returns the
 * number of top entries, or -1 when the list cannot answer (the token is
 * not a candidate, or more top entries are asked than it holds, while
 * tokens outside may be finite; or bad arguments): then use
 * sampler_logprobs on the row. The same tokens and order as
 * sampler_logprobs; values may differ in the last bits, as lse comes from
 * float exponentials summed in another order (beast_candidates) where
 * sampler_logprobs sums double ones. */
int sampler_logprobs_cand(const beast_cand *cands, int n, int n_max, float lse, int n_vocab,
                          int32_t token, float *token_logprob, int n_top, int32_t *top_ids,
                          float *top_logprobs);

#endif
