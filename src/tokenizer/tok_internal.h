/* tok_internal.h: the tokenizer's private data structures, shared by the
 * files of src/tokenizer/ (not for use elsewhere).
 *
 * Behaviour notes (target: llama.cpp's tokenizer; HF = Hugging Face tokenizers):
 * - Special tokens: control/unknown/user-defined texts are split out of the
 *   input before anything else, the longest texts first (each text's
 *   occurrences leftmost-first, never overlapping an earlier split). That is
 *   llama.cpp's order; HF matches leftmost-longest, which can differ only when
 *   two special texts overlap. Without TOK_PARSE_SPECIAL only user-defined
 *   tokens are split out.
 * - Token types are adjusted the way llama.cpp adjusts them: tokens whose
 *   text marks end of generation/turn or FIM (<|im_end|>, <end_of_turn>,
 *   <|endoftext|>, </s>, <reponame>, ...) become control + EOG. So Gemma 3's
 *   user-defined "</s>" (an HTML strike-through tag there) is control and
 *   EOG, exactly as in llama.cpp.
 * - SPM: every token (any type) can be the result of a merge, as in
 *   llama.cpp; HF excludes added tokens from merges.
 * - BPE input that is not valid UTF-8 is decoded the way llama.cpp decodes it
 *   (each undecodable byte -> U+FFFD); SPM input bytes are kept as they are
 *   (byte fallback makes that lossless).
 * - LSTRIP/RSTRIP attributes that llama.cpp derives from model names (phi-3,
 *   jina, modern-bert) are not applied. */
#ifndef BEAST_TOK_INTERNAL_H
#define BEAST_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef struct {
    const char *p;
    uint32_t len;
} tok_str;

/* Open-addressing hash: string -> sid (index into vocab->str). */
typedef struct {
    uint32_t hash;
    int32_t sid; /* -1 = empty */
} tok_slot;

typedef struct {
    tok_slot *slots;
    uint32_t mask;
} tok_strmap;

/* Merge table: (left sid, right sid) -> (rank, result sid). */
typedef struct {
    uint64_t key; /* UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} tok_merge_slot;

/* Byte trie over the special token texts. */
typedef struct {
    int32_t child;   /* first child node, -1 none */
    int32_t sibling; /* next sibling, -1 none */
    int32_t parent;  /* -1 for the root */
    int32_t id;      /* token ending here, -1 none */
    uint32_t depth;  /* bytes from the root */
    uint8_t byte;
} tok_trie_node;

#define TOK_MAX_REGEX 4

typedef enum {
    TOK_PRE_DEFAULT = 0,
    TOK_PRE_GPT2,
    TOK_PRE_SMOLLM,
    TOK_PRE_LLAMA3,
    TOK_PRE_QWEN2,
} tok_pre;

struct tok_vocab {
    tok_model model;
    int n;        /* tokens */
    tok_str *str; /* n_str strings: the n tokens, then BPE extras (merge parts) */
    int n_str, cap_str;
    float *score;  /* n */
    uint8_t *attr; /* n, TOK_ATTR_* */
    tok_strmap map;
    int map_used;
    uint32_t max_len; /* longest token text */

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;

    int32_t byte_tok[256]; /* SPM: id of <0xXX>, -1 if absent */

    /* special-token matching */
    tok_trie_node *trie;
    int n_trie, cap_trie;
    uint8_t first_byte[256]; /* 1 if some special text starts with this byte */

    /* BPE */
    tok_pre pre;
    bool ignore_merges;
    int n_re;
    pcre2_code *re[TOK_MAX_REGEX];
    tok_merge_slot *merges;
    uint32_t merge_mask;
    char **arena; /* blocks holding extra strings */
    int n_arena;
    size_t arena_used; /* in the last block */
};

/* hashing / lookup (tok_vocab.c) */
uint32_t tok_hash(const char *p, size_t len);
int32_t tok_lookup(const tok_vocab *v, const char *p, size_t len); /* sid or -1 */
/* Append a string (memory owned elsewhere, stable) as a new sid and index it. */
int32_t tok_add_string(tok_vocab *v, const char *p, uint32_t len);
int32_t tok_lookup_merge(const tok_vocab *v, int32_t l, int32_t r, int32_t *result);

/* output sink: counts everything, stores what fits */
typedef struct {
    int32_t *out;
    int max;
    int n;
} tok_sink;

static inline void tok_emit(tok_sink *s, int32_t id) {
    if (s->n < s->max) s->out[s->n] = id;
    s->n++;
}

/* encoders for one text fragment (no special tokens inside) */
int tok_spm_fragment(const tok_vocab *v, const char *text, size_t len, bool prefix_space,
                     tok_sink *sink);
int tok_bpe_fragment(const tok_vocab *v, const char *text, size_t len, tok_sink *sink);

/* BPE set-up (tok_bpe.c): regexes for v->pre and the merge table */
int tok_bpe_init(tok_vocab *v, const gguf_value *merges);
void tok_bpe_free(tok_vocab *v);

/* UTF-8 helpers (tok_utf8.c) */
size_t tok_utf8_len_lead(unsigned char c); /* 1..4 from the lead byte alone */
/* Decode like llama.cpp (lenient; undecodable bytes -> U+FFFD, one byte each)
 * and re-encode as well-formed UTF-8 (surrogates and > U+10FFFF -> U+FFFD).
 * dst needs 3 * len bytes. Returns the new length. */
size_t tok_utf8_sanitize(const char *src, size_t len, char *dst);
bool tok_utf8_valid(const char *s, size_t len);
size_t tok_utf8_encode(uint32_t cp, char *out);

/* GPT-2 byte <-> code point mapping */
static inline uint32_t tok_byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 67u; /* 0xAD */
}

static inline int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(0x7F + cp - 289);
    if (cp == 323) return 0xAD;
    return -1;
}

#endif
