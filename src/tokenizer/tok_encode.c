/* tok_encode.c: tok_encode(): special-token partitioning of the input (the
 * llama.cpp order: longest special texts first), BOS/EOS, and the
 * SentencePiece-style score-driven BPE ("llama" tokenizer model) for one
 * text fragment, with <0xXX> byte fallback. */
#include "tokenizer/tok_internal.h"
#include "util/util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- SPM ---- */

typedef struct {
    int prev, next;
    uint32_t off, n;
} ssym;

typedef struct {
    float score;
    int left, right;
    uint32_t size;
} sbigram;

typedef struct {
    sbigram *a;
    size_t n, cap;
} sheap;

static bool sb_before(const sbigram *a, const sbigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int sheap_push(sheap *h, sbigram g) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        sbigram *a = xrealloc(h->a, sizeof(sbigram) * cap);
        if (!a) return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!sb_before(&g, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = g;
    return 0;
}

static sbigram sheap_pop(sheap *h) {
    sbigram top = h->a[0], last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && sb_before(&h->a[c + 1], &h->a[c])) c++;
        if (!sb_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n) h->a[i] = last;
    return top;
}

static int spm_try(const tok_vocab *v, const char *esc, const ssym *sym, sheap *h, int l, int r) {
    if (l < 0 || r < 0) return 0;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = tok_lookup(v, esc + sym[l].off, size);
    if (id < 0 || id >= v->n) return 0;
    sbigram g = {v->score[id], l, r, size};
    return sheap_push(h, g);
}

static void spm_bytes(const tok_vocab *v, const char *p, size_t n, tok_sink *sink) {
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)p[i];
        int32_t id = v->byte_tok[c];
        if (id < 0) {
            id = tok_lookup(v, p + i, 1);
            if (id >= v->n) id = -1;
        }
        if (id < 0) id = v->unk;
        if (id >= 0) tok_emit(sink, id);
    }
}

int tok_spm_fragment(const tok_vocab *v, const char *text, size_t len, bool prefix_space,
                     tok_sink *sink) {
    char *esc = xmalloc(len * 3 + 4);
    ssym *sym = xmalloc(sizeof(ssym) * (len + 2));
    sheap h = {0};
    int ret = -1;
    if (!esc || !sym) goto out;
    size_t e = 0;
    if (prefix_space) {
        memcpy(esc, "\xe2\x96\x81", 3);
        e = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + e, "\xe2\x96\x81", 3);
            e += 3;
        } else {
            esc[e++] = text[i];
        }
    }
    if (e == 0) {
        ret = 0;
        goto out;
    }
    /* one symbol per UTF-8 character (by lead byte, like llama.cpp) */
    int ns = 0;
    for (size_t off = 0; off < e;) {
        size_t k = MIN(tok_utf8_len_lead((unsigned char)esc[off]), e - off);
        sym[ns].off = (uint32_t)off;
        sym[ns].n = (uint32_t)k;
        sym[ns].prev = ns - 1;
        off += k;
        sym[ns].next = off == e ? -1 : ns + 1;
        ns++;
    }
    for (int i = 1; i < ns; i++)
        if (spm_try(v, esc, sym, &h, i - 1, i) != 0) goto out;
    while (h.n) {
        sbigram g = sheap_pop(&h);
        ssym *l = &sym[g.left], *r = &sym[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = g.left;
        if (spm_try(v, esc, sym, &h, l->prev, g.left) != 0) goto out;
        if (spm_try(v, esc, sym, &h, g.left, l->next) != 0) goto out;
    }
    for (int i = 0; i >= 0; i = sym[i].next) {
        int32_t id = tok_lookup(v, esc + sym[i].off, sym[i].n);
        if (id >= 0 && id < v->n)
            tok_emit(sink, id);
        else
            spm_bytes(v, esc + sym[i].off, sym[i].n, sink);
    }
    ret = 0;
out:
    free(esc);
    free(sym);
    free(h.a);
    return ret;
}

/* ---- special-token partition ---- */

typedef struct {
    size_t pos;
    uint32_t len;
    int32_t id;
} cand;

typedef struct {
    cand *a;
    size_t n, cap;
} cands;

static int cands_push(cands *c, size_t pos, uint32_t len, int32_t id) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        cand *a = xrealloc(c->a, sizeof(cand) * cap);
        if (!a) return -1;
        c->a = a;
        c->cap = cap;
    }
    c->a[c->n].pos = pos;
    c->a[c->n].len = len;
    c->a[c->n].id = id;
    c->n++;
    return 0;
}

/* llama.cpp processes special texts longest first (ties: here by id), each
 * one's occurrences left to right. */
static int cand_order(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int cand_pos(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Accepted special tokens, ordered by position, into *out. */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                     cands *out) {
    cands all = {0};
    uint8_t *covered = NULL;
    int ret = -1;
    out->n = 0;
    if (v->n_trie <= 1 || len == 0) return 0;
    const uint8_t *t = (const uint8_t *)text;
    for (size_t i = 0; i < len; i++) {
        if (!v->first_byte[t[i]]) continue;
        int32_t node = 0;
        for (size_t j = i; j < len; j++) {
            int32_t c = v->trie[node].child;
            while (c >= 0 && v->trie[c].byte != t[j]) c = v->trie[c].sibling;
            if (c < 0) break;
            node = c;
            int32_t id = v->trie[c].id;
            if (id < 0) continue;
            if (!parse_special && (v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
            if (cands_push(&all, i, (uint32_t)(j - i + 1), id) != 0) goto done;
        }
    }
    if (all.n == 0) {
        ret = 0;
        goto done;
    }
    qsort(all.a, all.n, sizeof(cand), cand_order);
    covered = xcalloc(len, 1);
    if (!covered) goto done;
    for (size_t k = 0; k < all.n; k++) {
        const cand *c = &all.a[k];
        if (covered[c->pos] || covered[c->pos + c->len - 1]) continue;
        bool free_span = true;
        for (uint32_t q = 1; q + 1 < c->len; q++) {
            if (covered[c->pos + q]) {
                free_span = false;
                break;
            }
        }
        if (!free_span) continue;
        memset(covered + c->pos, 1, c->len);
        if (cands_push(out, c->pos, c->len, c->id) != 0) goto done;
    }
    qsort(out->a, out->n, sizeof(cand), cand_pos);
    ret = 0;
done:
    free(all.a);
    free(covered);
    return ret;
}

/* ---- entry point ---- */

static int encode_text(const tok_vocab *v, const char *p, size_t n, bool *prev_special,
                       tok_sink *sink) {
    int rc;
    if (v->model == TOK_MODEL_SPM)
        rc = tok_spm_fragment(v, p, n, v->add_space_prefix && *prev_special, sink);
    else
        rc = tok_bpe_fragment(v, p, n, sink);
    *prev_special = false;
    return rc;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, int flags, int32_t *out,
               int max_out) {
    if (!v || (!text && len > 0) || max_out < 0 || (!out && max_out > 0)) {
        err_set("tok_encode: invalid arguments");
        return -1;
    }
    if (len > (size_t)INT_MAX / 4) {
        err_set("tok_encode: text too long (%zu bytes)", len);
        return -1;
    }
    tok_sink sink = {out, max_out, 0};
    bool add_special = flags & TOK_ADD_SPECIAL;
    cands sp = {0};
    int ret = -1;
    if (add_special && v->add_bos) tok_emit(&sink, v->bos);
    if (partition(v, text, len, (flags & TOK_PARSE_SPECIAL) != 0, &sp) != 0) goto out;
    bool prev_special = true; /* SPM: a space prefix goes before the first text */
    size_t at = 0;
    for (size_t k = 0; k < sp.n; k++) {
        if (sp.a[k].pos > at && encode_text(v, text + at, sp.a[k].pos - at, &prev_special, &sink))
            goto out;
        tok_emit(&sink, sp.a[k].id);
        prev_special = true;
        at = sp.a[k].pos + sp.a[k].len;
    }
    if (len > at && encode_text(v, text + at, len - at, &prev_special, &sink)) goto out;
    if (add_special && v->add_eos) tok_emit(&sink, v->eos);
    ret = sink.n;
out:
    free(sp.a);
    return ret;
}
