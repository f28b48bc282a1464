/* tok_encode.c: tok_encode(): special-token partitioning of the input (the
 * llama.cpp order: longest special texts first), BOS/EOS, and the
 * SentencePiece-style score-driven BPE ("llama" tokenizer model) for one
 * text fragment, with <0xXX> byte fallback. */
#include "tokenizer/tok_internal.h"
#include "util/heap.h"
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

static bool sb_before(const void *pa, const void *pb) {
    const sbigram *a = pa, *b = pb;
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}
HEAP_DEFINE(bigram_heap, sbigram, sb_before)

static int spm_try(const tok_vocab *v, const char *esc, const ssym *sym, heap *h, int l, int r) {
    if (l < 0 || r < 0) return 0;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = tok_lookup(v, esc + sym[l].off, size);
    if (id < 0 || id >= v->n) return 0;
    sbigram g = {v->score[id], l, r, size};
    return bigram_heap_push(h, &g);
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
    heap h = {0};
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
        sbigram g;
        bigram_heap_pop(&h, &g);
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
    heap_free(&h);
    return ret;
}

/* ---- special-token partition ----
 *
 * llama.cpp splits special texts out in order of decreasing length (equal
 * lengths: here by increasing id), each text at its leftmost occurrences in
 * what is still plain text. Equivalently: candidate matches (pos, len, id)
 * are accepted in the order (len desc, id asc, pos asc) unless they overlap
 * an accepted one. A heap holds, per position, only its best remaining
 * candidate; a rejected candidate is replaced by the next shorter special
 * text at the same position (an ancestor in the trie), so memory stays O(n)
 * even for nested families like Gemma's runs of 1..31 newlines.
 *
 * Overlap test: every accepted span is at least as long as the candidate, so
 * it overlaps the candidate iff it covers one of the candidate's end bytes. */

typedef struct {
    uint32_t pos, len;
    int32_t id, node;
} cand;

typedef struct {
    cand *a;
    size_t n, cap;
} cands;

static bool cand_before(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len;
    if (a->id != b->id) return a->id < b->id;
    return a->pos < b->pos;
}
HEAP_DEFINE(cand_heap, cand, cand_before)

static bool allowed(const tok_vocab *v, int32_t id, bool parse_special) {
    return id >= 0 && (parse_special || !(v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)));
}

/* Deepest node at or above `node` that ends an allowed special text, or -1. */
static int32_t allowed_ancestor(const tok_vocab *v, int32_t node, bool parse_special) {
    while (node > 0 && !allowed(v, v->trie[node].id, parse_special)) node = v->trie[node].parent;
    return node > 0 ? node : -1;
}

static int cand_pos_order(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Accepted special tokens, ordered by position, into *out. */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                     cands *out) {
    heap h = {0};
    uint8_t *covered = NULL;
    int ret = -1;
    out->n = 0;
    if (v->n_trie <= 1 || len == 0) return 0;
    const uint8_t *t = (const uint8_t *)text;
    for (size_t i = 0; i < len; i++) {
        if (!v->first_byte[t[i]]) continue;
        int32_t node = 0, best = -1;
        for (size_t j = i; j < len; j++) {
            int32_t c = v->trie[node].child;
            while (c >= 0 && v->trie[c].byte != t[j]) c = v->trie[c].sibling;
            if (c < 0) break;
            node = c;
            if (allowed(v, v->trie[c].id, parse_special)) best = c;
        }
        if (best < 0) continue;
        cand c = {(uint32_t)i, v->trie[best].depth, v->trie[best].id, best};
        if (cand_heap_push(&h, &c) != 0) goto done;
    }
    if (h.n == 0) {
        ret = 0;
        goto done;
    }
    covered = xcalloc(len, 1);
    if (!covered) goto done;
    while (h.n) {
        cand c;
        cand_heap_pop(&h, &c);
        if (covered[c.pos]) continue; /* every shorter text here overlaps too */
        if (covered[c.pos + c.len - 1]) {
            int32_t up = allowed_ancestor(v, v->trie[c.node].parent, parse_special);
            if (up >= 0) {
                cand s = {c.pos, v->trie[up].depth, v->trie[up].id, up};
                if (cand_heap_push(&h, &s) != 0) goto done;
            }
            continue;
        }
        memset(covered + c.pos, 1, c.len);
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            cand *a = xrealloc(out->a, sizeof(cand) * cap);
            if (!a) goto done;
            out->a = a;
            out->cap = cap;
        }
        out->a[out->n++] = c;
    }
    qsort(out->a, out->n, sizeof(cand), cand_pos_order);
    ret = 0;
done:
    heap_free(&h);
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
    if (len > (size_t)INT_MAX / 4 || len >= UINT32_MAX) {
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
