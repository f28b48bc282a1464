/* tok_bpe.c: byte-level BPE ("gpt2" tokenizer model): the pre-tokenizer
 * regexes (PCRE2, JIT when available) chosen by tokenizer.ggml.pre, the merge
 * table built from tokenizer.ggml.merges, and the rank-driven merge loop for
 * one text fragment.
 *
 * Strings are interned as "sids": sid < n_vocab is a token id; merge parts
 * and results that are not tokens get extra sids, so the merge loop compares
 * and looks up integers only. */
#include "tokenizer/tok_internal.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* Unicode White_Space, spelled out so the meaning of \s does not depend on
 * the PCRE2 version (llama.cpp uses this property). */
#define WS                                                                                         \
    "\\t-\\r "                                                                                     \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

#define RE_GPT2                                                                                    \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])"

#define RE_LLAMA3_HEAD                                                                             \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL                                                                             \
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+",
                                         "[0-9][0-9][0-9]"};
static const char *const re_gpt2[] = {RE_GPT2};
static const char *const re_smollm[] = {"\\p{N}", RE_GPT2};
static const char *const re_llama3[] = {RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL};
static const char *const re_qwen2[] = {RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL};

static int compile_regexes(tok_vocab *v) {
    const char *const *list;
    int n;
    switch (v->pre) {
    case TOK_PRE_GPT2:
        list = re_gpt2, n = (int)ARRAY_LEN(re_gpt2);
        break;
    case TOK_PRE_SMOLLM:
        list = re_smollm, n = (int)ARRAY_LEN(re_smollm);
        break;
    case TOK_PRE_LLAMA3:
        list = re_llama3, n = (int)ARRAY_LEN(re_llama3);
        break;
    case TOK_PRE_QWEN2:
        list = re_qwen2, n = (int)ARRAY_LEN(re_qwen2);
        break;
    default:
        list = re_default, n = (int)ARRAY_LEN(re_default);
        break;
    }
    for (int i = 0; i < n; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)list[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            err_set("tokenizer: regex %d does not compile at %zu: %s", i, (size_t)eo,
                    (const char *)msg);
            return -1;
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
        v->re[v->n_re++] = re;
    }
    return 0;
}

/* ---- merges ---- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

int32_t tok_lookup_merge(const tok_vocab *v, int32_t l, int32_t r, int32_t *result) {
    if (!v->merges) return -1;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = (uint32_t)mix64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const tok_merge_slot *s = &v->merges[i];
        if (s->key == UINT64_MAX) return -1;
        if (s->key == key) {
            *result = s->result;
            return s->rank;
        }
    }
}

/* Copy a+b into the arena (stable memory for extra strings). */
static const char *arena_copy(tok_vocab *v, const char *a, size_t na, const char *b, size_t nb) {
    const size_t block = 1 << 16;
    size_t need = na + nb;
    if (v->n_arena == 0 || v->arena_used + need > block) {
        char **ar = xrealloc(v->arena, sizeof(char *) * (size_t)(v->n_arena + 1));
        if (!ar) return NULL;
        v->arena = ar;
        ar[v->n_arena] = xmalloc(MAX(block, need));
        if (!ar[v->n_arena]) return NULL;
        v->n_arena++;
        v->arena_used = 0;
    }
    char *p = v->arena[v->n_arena - 1] + v->arena_used;
    memcpy(p, a, na);
    memcpy(p + na, b, nb);
    v->arena_used += need;
    return p;
}

static int32_t intern(tok_vocab *v, const char *p, size_t len) {
    int32_t sid = tok_lookup(v, p, len);
    if (sid >= 0) return sid;
    return tok_add_string(v, p, (uint32_t)len);
}

int tok_bpe_init(tok_vocab *v, const gguf_value *merges) {
    if (compile_regexes(v) != 0) return -1;
    uint64_t nm = merges->arr.n;
    if (nm > (1u << 28)) {
        err_set("tokenizer: too many merges (%llu)", (unsigned long long)nm);
        return -1;
    }
    uint32_t cap = 1024;
    while (cap < nm * 2 + 16) cap *= 2;
    v->merges = xmalloc(sizeof(tok_merge_slot) * cap);
    if (!v->merges) return -1;
    for (uint32_t i = 0; i < cap; i++) v->merges[i].key = UINT64_MAX;
    v->merge_mask = cap - 1;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (uint64_t r = 0; r < nm; r++) {
        gguf_str m = gguf_arr_str(merges, r);
        /* "left right": the split is the first space after the first byte */
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (!sp) continue;
        size_t nl = (size_t)(sp - m.ptr), nr = m.len - nl - 1;
        if (nr == 0 || nl + nr > UINT32_MAX / 2) continue;
        int32_t l = intern(v, m.ptr, nl), rt = intern(v, sp + 1, nr);
        if (l < 0 || rt < 0) goto fail;
        if (nl + nr > tmp_cap) {
            tmp_cap = (nl + nr) * 2;
            char *t = xrealloc(tmp, tmp_cap);
            if (!t) goto fail;
            tmp = t;
        }
        memcpy(tmp, m.ptr, nl);
        memcpy(tmp + nl, sp + 1, nr);
        int32_t res = tok_lookup(v, tmp, nl + nr);
        if (res < 0) {
            const char *p = arena_copy(v, m.ptr, nl, sp + 1, nr);
            if (!p) goto fail;
            res = tok_add_string(v, p, (uint32_t)(nl + nr));
            if (res < 0) goto fail;
        }
        uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)rt;
        for (uint32_t i = (uint32_t)mix64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
            tok_merge_slot *s = &v->merges[i];
            if (s->key == key) break; /* first rank wins */
            if (s->key == UINT64_MAX) {
                s->key = key;
                s->rank = (int32_t)r;
                s->result = res;
                break;
            }
        }
    }
    free(tmp);
    return 0;
fail:
    free(tmp);
    return -1;
}

void tok_bpe_free(tok_vocab *v) {
    for (int i = 0; i < v->n_re; i++) pcre2_code_free(v->re[i]);
    v->n_re = 0;
    for (int i = 0; i < v->n_arena; i++) free(v->arena[i]);
    free(v->arena);
    v->arena = NULL;
    v->n_arena = 0;
    free(v->merges);
    v->merges = NULL;
}

/* ---- pre-tokenization ---- */

typedef struct {
    size_t off, len;
} span;

typedef struct {
    span *a;
    size_t n, cap;
} spans;

static int spans_push(spans *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span *a = xrealloc(s->a, sizeof(span) * cap);
        if (!a) return -1;
        s->a = a;
        s->cap = cap;
    }
    s->a[s->n].off = off;
    s->a[s->n].len = len;
    s->n++;
    return 0;
}

/* Split every span of `in` with regex re: matches and the gaps between them
 * both become spans (llama.cpp's unicode_regex_split semantics). */
static int split_regex(const pcre2_code *re, pcre2_match_data *md, const char *text,
                       const spans *in, spans *out) {
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        const char *subj = text + in->a[k].off;
        size_t len = in->a[k].len, start = 0, gap = 0;
        while (start < len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subj, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) /* e.g. JIT stack exhausted: retry interpreted */
                rc = pcre2_match(re, (PCRE2_SPTR)subj, len, start,
                                 PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                err_set("tokenizer: regex match failed (%d)", rc);
                return -1;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) { /* empty match: step over one character */
                start = ms + MAX((size_t)1, tok_utf8_len_lead((unsigned char)subj[ms]));
                continue;
            }
            if (ms > gap && spans_push(out, in->a[k].off + gap, ms - gap) != 0) return -1;
            if (spans_push(out, in->a[k].off + ms, me - ms) != 0) return -1;
            gap = start = me;
        }
        if (gap < len && spans_push(out, in->a[k].off + gap, len - gap) != 0) return -1;
    }
    return 0;
}

/* ---- merge loop ---- */

typedef struct {
    int prev, next;
    uint32_t off, n; /* bytes in the encoded word */
    int32_t sid;
} bsym;

typedef struct {
    int32_t rank;
    int left, right;
    int32_t sl, sr, res;
} bbigram;

typedef struct {
    bsym *sym;
    size_t nsym, capsym;
    bbigram *heap;
    size_t nheap, capheap;
    char *enc;
    size_t capenc;
} bpe_work;

static bool bg_before(const bbigram *a, const bbigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(bpe_work *w, bbigram g) {
    if (w->nheap == w->capheap) {
        size_t cap = w->capheap ? w->capheap * 2 : 64;
        bbigram *h = xrealloc(w->heap, sizeof(bbigram) * cap);
        if (!h) return -1;
        w->heap = h;
        w->capheap = cap;
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&g, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = g;
    return 0;
}

static bbigram heap_pop(bpe_work *w) {
    bbigram top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bg_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int add_bigram(const tok_vocab *v, bpe_work *w, int l, int r) {
    if (l < 0 || r < 0) return 0;
    int32_t sl = w->sym[l].sid, sr = w->sym[r].sid, res;
    if (sl < 0 || sr < 0) return 0;
    int32_t rank = tok_lookup_merge(v, sl, sr, &res);
    if (rank < 0) return 0;
    bbigram g = {rank, l, r, sl, sr, res};
    return heap_push(w, g);
}

static int bpe_word(const tok_vocab *v, bpe_work *w, const char *word, size_t len, tok_sink *sink) {
    if (len == 0) return 0;
    /* bytes -> GPT-2 alphabet */
    if (len * 2 > w->capenc) {
        size_t cap = len * 2 + 16;
        char *e = xrealloc(w->enc, cap);
        if (!e) return -1;
        w->enc = e;
        w->capenc = cap;
    }
    if (len > w->capsym) {
        size_t cap = len + 16;
        bsym *s = xrealloc(w->sym, sizeof(bsym) * cap);
        if (!s) return -1;
        w->sym = s;
        w->capsym = cap;
    }
    size_t elen = 0;
    for (size_t i = 0; i < len; i++) {
        size_t k = tok_utf8_encode(tok_byte_to_cp((uint8_t)word[i]), w->enc + elen);
        bsym *s = &w->sym[i];
        s->prev = (int)i - 1;
        s->next = i + 1 < len ? (int)i + 1 : -1;
        s->off = (uint32_t)elen;
        s->n = (uint32_t)k;
        elen += k;
    }
    if (v->ignore_merges) {
        int32_t id = tok_lookup(v, w->enc, elen);
        if (id >= 0 && id < v->n) {
            tok_emit(sink, id);
            return 0;
        }
    }
    w->nsym = len;
    for (size_t i = 0; i < len; i++)
        w->sym[i].sid = tok_lookup(v, w->enc + w->sym[i].off, w->sym[i].n);
    w->nheap = 0;
    for (size_t i = 1; i < len; i++)
        if (add_bigram(v, w, (int)i - 1, (int)i) != 0) return -1;
    while (w->nheap) {
        bbigram g = heap_pop(w);
        bsym *l = &w->sym[g.left], *r = &w->sym[g.right];
        if (l->n == 0 || r->n == 0 || l->sid != g.sl || r->sid != g.sr || l->next != g.right)
            continue; /* stale */
        l->n += r->n;
        l->sid = g.res;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = g.left;
        if (add_bigram(v, w, l->prev, g.left) != 0) return -1;
        if (add_bigram(v, w, g.left, l->next) != 0) return -1;
    }
    for (int i = 0; i >= 0; i = w->sym[i].next) {
        const bsym *s = &w->sym[i];
        if (s->sid >= 0 && s->sid < v->n) {
            tok_emit(sink, s->sid);
            continue;
        }
        /* not a token: llama.cpp emits the single-byte tokens it can find */
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t id = tok_lookup(v, w->enc + s->off + j, 1);
            if (id >= 0 && id < v->n) tok_emit(sink, id);
        }
    }
    return 0;
}

int tok_bpe_fragment(const tok_vocab *v, const char *text, size_t len, tok_sink *sink) {
    int ret = -1;
    char *clean = NULL;
    spans a = {0}, b = {0};
    bpe_work w = {0};
    pcre2_match_data *md = NULL;
    if (!tok_utf8_valid(text, len)) {
        clean = xmalloc(len * 3 + 1);
        if (!clean) goto out;
        len = tok_utf8_sanitize(text, len, clean);
        text = clean;
    }
    if (len == 0) {
        ret = 0;
        goto out;
    }
    md = pcre2_match_data_create(4, NULL);
    if (!md) {
        err_set("tokenizer: out of memory");
        goto out;
    }
    if (spans_push(&a, 0, len) != 0) goto out;
    for (int i = 0; i < v->n_re; i++) {
        if (split_regex(v->re[i], md, text, &a, &b) != 0) goto out;
        spans t = a;
        a = b;
        b = t;
    }
    for (size_t k = 0; k < a.n; k++)
        if (bpe_word(v, &w, text + a.a[k].off, a.a[k].len, sink) != 0) goto out;
    ret = 0;
out:
    pcre2_match_data_free(md);
    free(clean);
    free(a.a);
    free(b.a);
    free(w.sym);
    free(w.heap);
    free(w.enc);
    return ret;
}
