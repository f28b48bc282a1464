/* tok_vocab.c: loading a vocabulary from GGUF tokenizer.ggml.* metadata
 * (tokens, scores, types, special ids, flags), the string -> id hash table,
 * token-type adjustments and end-of-generation detection (llama.cpp rules),
 * the special-token trie, and id -> text (tok_piece, tok_decode). */
#include "tokenizer/tok_internal.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing ---- */

uint32_t tok_hash(const char *p, size_t len) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return (uint32_t)h;
}

int32_t tok_lookup(const tok_vocab *v, const char *p, size_t len) {
    if (len > v->max_len || !v->map.slots) return -1;
    uint32_t h = tok_hash(p, len);
    for (uint32_t i = h & v->map.mask;; i = (i + 1) & v->map.mask) {
        const tok_slot *s = &v->map.slots[i];
        if (s->sid < 0) return -1;
        if (s->hash == h) {
            const tok_str *t = &v->str[s->sid];
            if (t->len == len && memcmp(t->p, p, len) == 0) return s->sid;
        }
    }
}

static int map_grow(tok_vocab *v, uint32_t cap) {
    tok_slot *slots = xmalloc(sizeof(tok_slot) * cap);
    if (!slots) return -1;
    for (uint32_t i = 0; i < cap; i++) slots[i].sid = -1;
    uint32_t mask = cap - 1;
    if (v->map.slots) {
        for (uint32_t i = 0; i <= v->map.mask; i++) {
            tok_slot s = v->map.slots[i];
            if (s.sid < 0) continue;
            uint32_t j = s.hash & mask;
            while (slots[j].sid >= 0) j = (j + 1) & mask;
            slots[j] = s;
        }
        free(v->map.slots);
    }
    v->map.slots = slots;
    v->map.mask = mask;
    return 0;
}

/* Insert string sid (already in v->str); an equal string already present is
 * replaced (the later sid wins, like llama.cpp's token_to_id). */
static int map_insert_h(tok_vocab *v, int32_t sid, uint32_t h) {
    const tok_str *t = &v->str[sid];
    if ((uint64_t)(v->map_used + 1) * 3 > ((uint64_t)v->map.mask + 1) * 2) {
        if (map_grow(v, (v->map.mask + 1) * 2) != 0) return -1;
    }
    if (t->len > v->max_len) v->max_len = t->len;
    for (uint32_t i = h & v->map.mask;; i = (i + 1) & v->map.mask) {
        tok_slot *s = &v->map.slots[i];
        if (s->sid < 0) {
            s->hash = h;
            s->sid = sid;
            v->map_used++;
            return 0;
        }
        if (s->hash == h) {
            const tok_str *o = &v->str[s->sid];
            if (o->len == t->len && memcmp(o->p, t->p, t->len) == 0) {
                s->sid = sid;
                return 0;
            }
        }
    }
}

static int map_insert(tok_vocab *v, int32_t sid) {
    return map_insert_h(v, sid, tok_hash(v->str[sid].p, v->str[sid].len));
}

int32_t tok_add_string(tok_vocab *v, const char *p, uint32_t len) {
    if (v->n_str == v->cap_str) {
        int cap = v->cap_str ? v->cap_str * 2 : 64;
        tok_str *s = xrealloc(v->str, sizeof(tok_str) * (size_t)cap);
        if (!s) return -1;
        v->str = s;
        v->cap_str = cap;
    }
    int32_t sid = v->n_str++;
    v->str[sid].p = p;
    v->str[sid].len = len;
    if (map_insert(v, sid) != 0) return -1;
    return sid;
}

int32_t tok_find(const tok_vocab *v, const char *text) {
    if (!v || !text) return -1;
    int32_t sid = tok_lookup(v, text, strlen(text));
    return sid >= 0 && sid < v->n ? sid : -1;
}

/* ---- metadata ---- */

static bool key_id(const gguf_file *f, const char *key, int n, int32_t *id) {
    int64_t x;
    if (!gguf_get_int(f, key, &x)) return false;
    if (x < 0 || x >= n) return false; /* out of range: keep the default (llama.cpp warns) */
    *id = (int32_t)x;
    return true;
}

static int32_t find_text(const tok_vocab *v, const char *t) {
    int32_t sid = tok_lookup(v, t, strlen(t));
    return sid >= 0 && sid < v->n ? sid : -1;
}

/* First text of the list present in the vocabulary. */
static int32_t find_any(const tok_vocab *v, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int32_t id = find_text(v, list[i]);
        if (id >= 0) return id;
    }
    return -1;
}

static void make_control(tok_vocab *v, int32_t id) {
    if (id >= 0) v->attr[id] |= TOK_ATTR_CONTROL;
}

/* llama.cpp's token-type fix-ups and end-of-generation set, by token text. */
static void detect_special(tok_vocab *v, const gguf_file *f) {
    static const char *const eot_texts[] = {"<|eot_id|>",
                                            "<|im_end|>",
                                            "<|end|>",
                                            "<end_of_turn>",
                                            "<|endoftext|>",
                                            "<|end_of_text|>",
                                            "<EOT>",
                                            "_<EOT>",
                                            "[EOT]",
                                            ("<\xef\xbd\x9c"
                                             "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"),
                                            "<end_of_utterance>"};
    static const char *const fim_pre[] = {"<|fim_prefix|>",
                                          "<fim-prefix>",
                                          "<fim_prefix>",
                                          ("<\xef\xbd\x9c"
                                           "fim\xe2\x96\x81"
                                           "begin\xef\xbd\x9c>"),
                                          "<PRE>",
                                          "\xe2\x96\x81<PRE>",
                                          "<|code_prefix|>",
                                          "<|prefix|>"};
    static const char *const fim_suf[] = {"<|fim_suffix|>",
                                          "<fim-suffix>",
                                          "<fim_suffix>",
                                          ("<\xef\xbd\x9c"
                                           "fim\xe2\x96\x81hole\xef\xbd\x9c>"),
                                          "<SUF>",
                                          "\xe2\x96\x81<SUF>",
                                          "<|code_suffix|>",
                                          "<|suffix|>"};
    static const char *const fim_mid[] = {"<|fim_middle|>",
                                          "<fim-middle>",
                                          "<fim_middle>",
                                          "<\xef\xbd\x9c"
                                          "fim\xe2\x96\x81"
                                          "end\xef\xbd\x9c>",
                                          "<MID>",
                                          "\xe2\x96\x81<MID>",
                                          "<|code_middle|>",
                                          "<|middle|>"};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                          "[PAD]"};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                          "<reponame>"};
    static const char *const fim_sep[] = {"<|file_sep|>"};
    static const char *const eog_texts[] = {"<|eot_id|>",
                                            "<|im_end|>",
                                            "<|end|>",
                                            "<|return|>",
                                            "<|call|>",
                                            "<|flush|>",
                                            "<|calls|>",
                                            "<end_of_turn>",
                                            "<|endoftext|>",
                                            "</s>",
                                            "<|eom_id|>",
                                            "<EOT>",
                                            "_<EOT>",
                                            "[EOT]",
                                            "[EOS]",
                                            "<|end_of_text|>",
                                            "<end_of_utterance>",
                                            "<eos>",
                                            "<turn|>",
                                            "<|tool_response>",
                                            ("<\xef\xbd\x9c"
                                             "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"),
                                            "[e~["};

    int n = v->n;
    int32_t id;
    if (v->eot < 0) {
        v->eot = find_any(v, eot_texts, ARRAY_LEN(eot_texts));
        make_control(v, v->eot);
    }
    if (v->eom < 0) {
        v->eom = find_text(v, "<|eom_id|>");
        make_control(v, v->eom);
    }
    struct {
        const char *key, *key_old;
        const char *const *list;
        size_t n;
        bool eog;
    } fim[] = {
        {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id", fim_pre,
         ARRAY_LEN(fim_pre), false},
        {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id", fim_suf,
         ARRAY_LEN(fim_suf), false},
        {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id", fim_mid,
         ARRAY_LEN(fim_mid), false},
        {"tokenizer.ggml.fim_pad_token_id", NULL, fim_pad, ARRAY_LEN(fim_pad), true},
        {"tokenizer.ggml.fim_rep_token_id", NULL, fim_rep, ARRAY_LEN(fim_rep), true},
        {"tokenizer.ggml.fim_sep_token_id", NULL, fim_sep, ARRAY_LEN(fim_sep), true},
    };
    for (size_t k = 0; k < ARRAY_LEN(fim); k++) {
        id = -1;
        if (!key_id(f, fim[k].key, n, &id) && fim[k].key_old) key_id(f, fim[k].key_old, n, &id);
        if (id < 0) {
            id = find_any(v, fim[k].list, fim[k].n);
            make_control(v, id);
        }
        if (id >= 0 && fim[k].eog) v->attr[id] |= TOK_ATTR_EOG;
    }
    /* control tokens named "unused..." */
    for (int i = 0; i < n; i++) {
        if (!(v->attr[i] & TOK_ATTR_CONTROL)) continue;
        const tok_str *t = &v->str[i];
        if (t->len >= 6 && memmem(t->p, t->len, "unused", 6)) v->attr[i] |= TOK_ATTR_UNUSED;
    }
    for (size_t k = 0; k < ARRAY_LEN(eog_texts); k++) {
        id = find_text(v, eog_texts[k]);
        if (id >= 0) v->attr[id] |= TOK_ATTR_EOG | TOK_ATTR_CONTROL;
    }
    static const char *const always_user[] = {"<|channel|>", "<|message|>", "<|start|>",
                                              "<|constrain|>"};
    for (size_t k = 0; k < ARRAY_LEN(always_user); k++) {
        id = find_text(v, always_user[k]);
        if (id >= 0) v->attr[id] = TOK_ATTR_USER_DEFINED | (v->attr[id] & TOK_ATTR_EOG);
    }
    if (v->eos >= 0) v->attr[v->eos] |= TOK_ATTR_EOG;
    if (v->eot >= 0) v->attr[v->eot] |= TOK_ATTR_EOG;
    if (v->eom >= 0) v->attr[v->eom] |= TOK_ATTR_EOG;
    /* harmony-style vocabularies: <|end|> is not end of generation there */
    int32_t ret = find_text(v, "<|return|>"), call = find_text(v, "<|call|>"),
            calls = find_text(v, "<|calls|>"), flush = find_text(v, "<|flush|>"),
            end = find_text(v, "<|end|>");
    bool has_call = (call >= 0 && (v->attr[call] & TOK_ATTR_EOG)) ||
                    (calls >= 0 && (v->attr[calls] & TOK_ATTR_EOG));
    bool has_ret = ret >= 0 && (v->attr[ret] & TOK_ATTR_EOG);
    bool has_flush = flush >= 0 && (v->attr[flush] & TOK_ATTR_EOG);
    if (end >= 0 && (v->attr[end] & TOK_ATTR_EOG) &&
        ((has_ret && has_call) || (has_call && has_flush)))
        v->attr[end] = TOK_ATTR_USER_DEFINED;
    /* vocabularies where </s> is an ordinary token */
    int32_t s_end = find_text(v, "</s>"), tr = find_text(v, "<|tool_response>"),
            pe = find_text(v, "<|plamo:eos|>");
    if (s_end >= 0 && (v->attr[s_end] & TOK_ATTR_EOG) &&
        ((tr >= 0 && (v->attr[tr] & TOK_ATTR_EOG)) || (pe >= 0 && (v->attr[pe] & TOK_ATTR_EOG))))
        v->attr[s_end] = TOK_ATTR_NORMAL;
}

/* ---- special-token trie ---- */

static int32_t trie_node(tok_vocab *v, uint8_t byte) {
    if (v->n_trie == v->cap_trie) {
        int cap = v->cap_trie ? v->cap_trie * 2 : 256;
        tok_trie_node *t = xrealloc(v->trie, sizeof(tok_trie_node) * (size_t)cap);
        if (!t) return -1;
        v->trie = t;
        v->cap_trie = cap;
    }
    tok_trie_node *nd = &v->trie[v->n_trie];
    nd->child = nd->sibling = nd->parent = nd->id = -1;
    nd->depth = 0;
    nd->byte = byte;
    return v->n_trie++;
}

static int build_trie(tok_vocab *v) {
    if (trie_node(v, 0) < 0) return -1; /* root */
    for (int32_t id = 0; id < v->n; id++) {
        if (!(v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)))
            continue;
        const tok_str *t = &v->str[id];
        if (t->len == 0) continue;
        int32_t node = 0;
        for (uint32_t k = 0; k < t->len; k++) {
            uint8_t b = (uint8_t)t->p[k];
            int32_t c = v->trie[node].child;
            while (c >= 0 && v->trie[c].byte != b) c = v->trie[c].sibling;
            if (c < 0) {
                c = trie_node(v, b);
                if (c < 0) return -1;
                v->trie[c].sibling = v->trie[node].child;
                v->trie[c].parent = node;
                v->trie[c].depth = v->trie[node].depth + 1;
                v->trie[node].child = c;
            }
            node = c;
        }
        v->trie[node].id = id;
        v->first_byte[(uint8_t)t->p[0]] = 1;
    }
    return 0;
}

/* ---- load ---- */

tok_vocab *tok_load(const gguf_file *f) {
    if (!f) {
        err_set("tokenizer: no GGUF file");
        return NULL;
    }
    gguf_str model;
    if (!gguf_get_str(f, "tokenizer.ggml.model", &model)) {
        err_set("tokenizer: missing tokenizer.ggml.model");
        return NULL;
    }
    tok_vocab *v = xcalloc(1, sizeof(tok_vocab));
    if (!v) return NULL;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = -1;
    if (gguf_str_eq(model, "llama")) {
        v->model = TOK_MODEL_SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_bos = true;
        v->add_space_prefix = true;
    } else if (gguf_str_eq(model, "gpt2")) {
        v->model = TOK_MODEL_BPE;
        v->pre = TOK_PRE_DEFAULT;
        gguf_str pre;
        if (gguf_get_str(f, "tokenizer.ggml.pre", &pre)) {
            static const struct {
                const char *name;
                tok_pre pre;
            } pres[] = {
                {"gpt-2", TOK_PRE_GPT2},        {"phi-2", TOK_PRE_GPT2},
                {"mpt", TOK_PRE_GPT2},          {"olmo", TOK_PRE_GPT2},
                {"smollm", TOK_PRE_SMOLLM},     {"starcoder", TOK_PRE_SMOLLM},
                {"refact", TOK_PRE_SMOLLM},     {"command-r", TOK_PRE_SMOLLM},
                {"codeshell", TOK_PRE_SMOLLM},  {"exaone", TOK_PRE_SMOLLM},
                {"minerva-7b", TOK_PRE_SMOLLM}, {"llama3", TOK_PRE_LLAMA3},
                {"llama-v3", TOK_PRE_LLAMA3},   {"llama-bpe", TOK_PRE_LLAMA3},
                {"falcon3", TOK_PRE_LLAMA3},    {"pixtral", TOK_PRE_LLAMA3},
                {"dbrx", TOK_PRE_LLAMA3},       {"smaug-bpe", TOK_PRE_LLAMA3},
                {"qwen2", TOK_PRE_QWEN2},       {"deepseek-r1-qwen", TOK_PRE_QWEN2},
                {"stablelm2", TOK_PRE_QWEN2},   {"megrez", TOK_PRE_QWEN2},
                {"default", TOK_PRE_DEFAULT},
            };
            for (size_t i = 0; i < ARRAY_LEN(pres); i++) {
                if (gguf_str_eq(pre, pres[i].name)) {
                    v->pre = pres[i].pre;
                    /* llama.cpp: the llama3 family matches whole words first and adds BOS */
                    if (pres[i].pre == TOK_PRE_LLAMA3 && !gguf_str_eq(pre, "dbrx") &&
                        !gguf_str_eq(pre, "smaug-bpe")) {
                        v->ignore_merges = true;
                        v->add_bos = true;
                    }
                    break;
                }
            }
        }
    } else {
        err_set("tokenizer: unsupported tokenizer.ggml.model '%.*s'", (int)MIN(model.len, 64),
                model.ptr);
        free(v);
        return NULL;
    }
    bool b;
    if (gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b)) v->add_space_prefix = b;

    const gguf_value *toks = gguf_get_arr(f, "tokenizer.ggml.tokens");
    if (!toks || toks->arr.type != GGUF_STRING) {
        err_set("tokenizer: missing or invalid tokenizer.ggml.tokens");
        goto fail;
    }
    if (toks->arr.n == 0 || toks->arr.n > (1u << 30)) {
        err_set("tokenizer: bad token count %llu", (unsigned long long)toks->arr.n);
        goto fail;
    }
    int n = (int)toks->arr.n;
    v->n = n;
    const gguf_value *scores = gguf_get_arr(f, "tokenizer.ggml.scores");
    if (scores && ((scores->arr.type != GGUF_F32 && scores->arr.type != GGUF_I32) ||
                   scores->arr.n < (uint64_t)n)) {
        err_set("tokenizer: invalid tokenizer.ggml.scores");
        goto fail;
    }
    const gguf_value *types = gguf_get_arr(f, "tokenizer.ggml.token_type");
    if (types && (types->arr.type != GGUF_I32 || types->arr.n < (uint64_t)n)) {
        err_set("tokenizer: invalid tokenizer.ggml.token_type");
        goto fail;
    }
    v->cap_str = n + 64;
    v->str = xmalloc(sizeof(tok_str) * (size_t)v->cap_str);
    v->score = xmalloc(sizeof(float) * (size_t)n);
    v->attr = xmalloc((size_t)n);
    if (!v->str || !v->score || !v->attr) goto fail;
    uint32_t cap = 1024;
    while (cap < (uint32_t)n + (uint32_t)n / 2u + 64u) cap *= 2; /* load <= 2/3 */
    if (map_grow(v, cap) != 0) goto fail;
    for (int i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(toks, (uint64_t)i);
        if (s.len > UINT32_MAX / 2) {
            err_set("tokenizer: token %d too long", i);
            goto fail;
        }
        v->str[i].p = s.ptr;
        v->str[i].len = (uint32_t)s.len;
        float sc = scores ? (float)gguf_arr_float(scores, (uint64_t)i) : 0.0f;
        v->score[i] = isnan(sc) ? -INFINITY : sc;
        int64_t ty = types ? gguf_arr_int(types, (uint64_t)i) : 1;
        uint8_t a;
        switch (ty) {
        case 1:
            a = TOK_ATTR_NORMAL;
            break;
        case 2:
            a = TOK_ATTR_UNKNOWN;
            break;
        case 3:
            a = TOK_ATTR_CONTROL;
            break;
        case 4:
            a = TOK_ATTR_USER_DEFINED;
            break;
        case 5:
            a = TOK_ATTR_UNUSED;
            break;
        case 6:
            a = TOK_ATTR_BYTE;
            break;
        default:
            a = 0;
            break;
        }
        v->attr[i] = a;
    }
    v->n_str = n;
    /* insert in batches: hash and prefetch the home slots first, so the
     * random accesses into the table overlap instead of stalling one by one */
    for (int i0 = 0; i0 < n; i0 += 16) {
        int i1 = MIN(n, i0 + 16);
        uint32_t hs[16];
        for (int i = i0; i < i1; i++) {
            hs[i - i0] = tok_hash(v->str[i].p, v->str[i].len);
            __builtin_prefetch(&v->map.slots[hs[i - i0] & v->map.mask]);
        }
        for (int i = i0; i < i1; i++) {
            if (v->str[i].len == 0) continue; /* an empty text can never match */
            if (map_insert_h(v, i, hs[i - i0]) != 0) goto fail;
        }
    }

    /* special ids: defaults out of range are dropped */
    int32_t *ids[] = {&v->bos, &v->eos, &v->unk};
    for (size_t k = 0; k < ARRAY_LEN(ids); k++)
        if (*ids[k] >= n) *ids[k] = -1;
    key_id(f, "tokenizer.ggml.bos_token_id", n, &v->bos);
    key_id(f, "tokenizer.ggml.eos_token_id", n, &v->eos);
    key_id(f, "tokenizer.ggml.eot_token_id", n, &v->eot);
    key_id(f, "tokenizer.ggml.eom_token_id", n, &v->eom);
    key_id(f, "tokenizer.ggml.unknown_token_id", n, &v->unk);
    key_id(f, "tokenizer.ggml.padding_token_id", n, &v->pad);
    if (gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b)) v->add_bos = b;
    if (gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b)) v->add_eos = b;
    if (v->add_bos && v->bos < 0) {
        err_set("tokenizer: add_bos_token is set but there is no valid bos_token_id");
        goto fail;
    }
    if (v->add_eos && v->eos < 0) {
        err_set("tokenizer: add_eos_token is set but there is no valid eos_token_id");
        goto fail;
    }
    detect_special(v, f);
    if (build_trie(v) != 0) goto fail;

    for (int c = 0; c < 256; c++) {
        char buf[8];
        static const char hex[] = "0123456789ABCDEF";
        buf[0] = '<', buf[1] = '0', buf[2] = 'x', buf[3] = hex[c >> 4], buf[4] = hex[c & 15];
        buf[5] = '>';
        int32_t id = tok_lookup(v, buf, 6);
        v->byte_tok[c] = id >= 0 && id < n ? id : -1;
    }
    if (v->model == TOK_MODEL_BPE) {
        const gguf_value *merges = gguf_get_arr(f, "tokenizer.ggml.merges");
        if (!merges || merges->arr.type != GGUF_STRING) {
            err_set("tokenizer: missing or invalid tokenizer.ggml.merges");
            goto fail;
        }
        if (tok_bpe_init(v, merges) != 0) goto fail;
    }
    return v;
fail:
    tok_free(v);
    return NULL;
}

void tok_free(tok_vocab *v) {
    if (!v) return;
    tok_bpe_free(v);
    free(v->str);
    free(v->score);
    free(v->attr);
    free(v->map.slots);
    free(v->trie);
    free(v);
}

/* ---- accessors ---- */

int tok_n_vocab(const tok_vocab *v) {
    return v ? v->n : 0;
}
tok_model tok_model_type(const tok_vocab *v) {
    return v ? v->model : 0;
}
int32_t tok_bos(const tok_vocab *v) {
    return v ? v->bos : -1;
}
int32_t tok_eos(const tok_vocab *v) {
    return v ? v->eos : -1;
}
int32_t tok_eot(const tok_vocab *v) {
    return v ? v->eot : -1;
}
int32_t tok_unk(const tok_vocab *v) {
    return v ? v->unk : -1;
}
int32_t tok_pad(const tok_vocab *v) {
    return v ? v->pad : -1;
}
bool tok_add_bos(const tok_vocab *v) {
    return v && v->add_bos;
}
bool tok_add_eos(const tok_vocab *v) {
    return v && v->add_eos;
}

unsigned tok_attr(const tok_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n ? v->attr[id] : 0;
}
bool tok_is_eog(const tok_vocab *v, int32_t id) {
    return tok_attr(v, id) & TOK_ATTR_EOG;
}
bool tok_is_control(const tok_vocab *v, int32_t id) {
    return tok_attr(v, id) & TOK_ATTR_CONTROL;
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len) {
    if (!v || id < 0 || id >= v->n) return NULL;
    if (len) *len = v->str[id].len;
    return v->str[id].p;
}

int tok_eog_ids(const tok_vocab *v, int32_t *out, int cap) {
    int k = 0;
    if (!v) return 0;
    for (int32_t i = 0; i < v->n; i++) {
        if (!(v->attr[i] & TOK_ATTR_EOG)) continue;
        if (k < cap) out[k] = i;
        k++;
    }
    return k;
}

/* ---- id -> text ---- */

static void put(char *buf, int cap, int *len, const char *p, size_t n) {
    if (*len < cap) memcpy(buf + *len, p, MIN((size_t)(cap - *len), n));
    *len += (int)n;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int piece_into(const tok_vocab *v, int32_t id, char *buf, int cap, int len,
                      bool render_special) {
    uint8_t a = v->attr[id];
    const tok_str *t = &v->str[id];
    if (!render_special && (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return len;
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        put(buf, cap, &len, t->p, t->len);
    } else if (a & TOK_ATTR_NORMAL) {
        if (v->model == TOK_MODEL_SPM) {
            size_t i = 0, run = 0;
            while (i < t->len) {
                if (i + 3 <= t->len && memcmp(t->p + i, "\xe2\x96\x81", 3) == 0) {
                    put(buf, cap, &len, t->p + run, i - run);
                    put(buf, cap, &len, " ", 1);
                    i += 3;
                    run = i;
                } else {
                    i++;
                }
            }
            put(buf, cap, &len, t->p + run, t->len - run);
        } else {
            const unsigned char *s = (const unsigned char *)t->p;
            size_t i = 0;
            while (i < t->len) {
                uint32_t cp;
                size_t k;
                if (s[i] < 0x80) {
                    cp = s[i];
                    k = 1;
                } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < t->len) {
                    cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
                    k = 2;
                } else {
                    k = MIN(tok_utf8_len_lead(s[i]), t->len - i);
                    cp = UINT32_MAX;
                }
                int byte = cp == UINT32_MAX ? -1 : tok_cp_to_byte(cp);
                if (byte >= 0) {
                    char c = (char)byte;
                    put(buf, cap, &len, &c, 1);
                } else {
                    put(buf, cap, &len, t->p + i, k);
                }
                i += k;
            }
        }
    } else if (a & TOK_ATTR_BYTE) {
        int hi = t->len == 6 ? hexval(t->p[3]) : -1, lo = t->len == 6 ? hexval(t->p[4]) : -1;
        if (hi >= 0 && lo >= 0) {
            char c = (char)(hi * 16 + lo);
            put(buf, cap, &len, &c, 1);
        } else {
            put(buf, cap, &len, t->p, t->len);
        }
    }
    return len;
}

int tok_piece(const tok_vocab *v, int32_t id, char *buf, int cap, bool render_special) {
    if (!v || id < 0 || id >= v->n || cap < 0 || (!buf && cap > 0)) return -1;
    return piece_into(v, id, buf, cap, 0, render_special);
}

int tok_decode(const tok_vocab *v, const int32_t *ids, int n, char *buf, int cap,
               bool render_special) {
    if (!v || n < 0 || (!ids && n > 0) || cap < 0 || (!buf && cap > 0)) return -1;
    int len = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n) return -1;
        len = piece_into(v, ids[i], buf, cap, len, render_special);
        if (len < 0 || len > INT32_MAX / 2) return -1;
    }
    return len;
}
