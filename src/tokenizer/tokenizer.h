/* tokenizer.h: text <-> token ids for the vocabularies a GGUF file describes
 * (tokenizer.ggml.* metadata), plus streaming-safe UTF-8 output.
 *
 * Two tokenizer models are supported:
 *   "llama" - SentencePiece-style BPE driven by token scores, with <0xXX> byte
 *             fallback and '▁' (U+2581) standing for a space (Llama 2, Gemma).
 *   "gpt2"  - byte-level BPE: a pre-tokenizer regex (chosen by
 *             tokenizer.ggml.pre) splits the text, bytes are mapped to the
 *             GPT-2 printable alphabet, then ranked merges apply (SmolLM,
 *             Llama 3, Qwen 2).
 * The target behaviour is llama.cpp's tokenizer (same ids for the same text
 * and flags); docs in tok_internal.h list the cases where that differs from
 * Hugging Face tokenizers.
 *
 * Pre-tokenizer ids understood for "gpt2" (aliases as llama.cpp groups them):
 *   gpt-2 (phi-2, mpt, olmo), smollm (starcoder, refact, command-r, codeshell,
 *   exaone, minerva-7b), llama3 (llama-v3, llama-bpe, falcon3, pixtral, dbrx,
 *   smaug-bpe), qwen2 (deepseek-r1-qwen, stablelm2, megrez), default.
 * A missing or unknown id uses the "default" split (what llama.cpp does for
 * files without the key) silently.
 *
 * A tok_vocab keeps pointers into the GGUF mapping: the gguf_file must stay
 * open for the vocabulary's lifetime. A loaded vocabulary is read-only and
 * may be used from several threads at once. */
#ifndef BEAST_TOKENIZER_H
#define BEAST_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

typedef struct tok_vocab tok_vocab;

typedef enum { TOK_MODEL_SPM = 1, TOK_MODEL_BPE = 2 } tok_model;

/* Token attributes (bit set). TYPE_* mirror tokenizer.ggml.token_type. */
#define TOK_ATTR_NORMAL       0x01
#define TOK_ATTR_UNKNOWN      0x02
#define TOK_ATTR_CONTROL      0x04
#define TOK_ATTR_USER_DEFINED 0x08
#define TOK_ATTR_UNUSED       0x10
#define TOK_ATTR_BYTE         0x20
#define TOK_ATTR_EOG          0x40 /* ends generation */

/* Load from metadata. NULL + err_set() on bad or missing metadata. */
tok_vocab *tok_load(const gguf_file *f);
void tok_free(tok_vocab *v);

int tok_n_vocab(const tok_vocab *v);
tok_model tok_model_type(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v); /* -1 when the model has none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v); /* end of turn (<|im_end|>, <end_of_turn>...), -1 if none */
int32_t tok_unk(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
bool tok_add_bos(const tok_vocab *v); /* what TOK_ADD_SPECIAL does */
bool tok_add_eos(const tok_vocab *v);
bool tok_is_eog(const tok_vocab *v, int32_t id);
bool tok_is_control(const tok_vocab *v, int32_t id);
unsigned tok_attr(const tok_vocab *v, int32_t id); /* TOK_ATTR_* bits; 0 for a bad id */
/* The token's stored text (not NUL-terminated), NULL for a bad id. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
/* All end-of-generation ids, ascending; returns the count (may exceed cap). */
int tok_eog_ids(const tok_vocab *v, int32_t *out, int cap);

/* Exact token text -> id, or -1. */
int32_t tok_find(const tok_vocab *v, const char *text);

#define TOK_ADD_SPECIAL   1 /* add BOS/EOS as the metadata says */
#define TOK_PARSE_SPECIAL 2 /* recognise control token text (e.g. "<|im_start|>") in the input */

/* Tokenize len bytes of text (any bytes; need not be NUL-terminated or valid
 * UTF-8). Writes at most max_out ids and returns the total count, which may
 * be larger than max_out (call again with a bigger buffer); -1 + err_set() on
 * error. User-defined tokens (token_type 4) are always matched whole, as
 * llama.cpp does; control tokens only with TOK_PARSE_SPECIAL. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, int flags, int32_t *out,
               int max_out);

/* The raw bytes a token stands for: byte tokens -> 1 byte, SPM '▁' -> ' ',
 * GPT-2 byte-level characters -> their bytes, user-defined tokens verbatim.
 * Control/unknown tokens give nothing unless render_special (then their text).
 * Returns the full length; writes min(length, cap) bytes. -1 for a bad id. */
int tok_piece(const tok_vocab *v, int32_t id, char *buf, int cap, bool render_special);

/* Concatenated pieces of n ids; same return convention as tok_piece. */
int tok_decode(const tok_vocab *v, const int32_t *ids, int n, char *buf, int cap,
               bool render_special);

/* Streaming UTF-8 repair for token pieces: emits only complete, well-formed
 * UTF-8; holds back an incomplete tail (at most 3 bytes) until more bytes
 * come; each ill-formed sequence (maximal subpart, Unicode 3.9) becomes
 * U+FFFD. Zero-initialise the state before use.
 *
 * Output capacity: an ill-formed byte expands to 3 bytes, so `out` must hold
 * TOK_UTF8_OUT_CAP(n) bytes (3n + 12); tok_utf8_flush needs 8. Valid input
 * never produces more than n + 3 bytes. */
typedef struct {
    unsigned char pend[8];
    int n;
} tok_utf8;

#define TOK_UTF8_OUT_CAP(n) (3 * (size_t)(n) + 12)

size_t tok_utf8_push(tok_utf8 *s, const char *bytes, size_t n, char *out);
size_t tok_utf8_flush(tok_utf8 *s, char *out);

#endif
