/* gen.h: the model generator: writes GGUF files of real architectures and
 * shapes (llama, gemma3) with seeded random weights in any weight type or a
 * llama.cpp-style mix (Q4_K_M, ...), for tests (tiny shapes) and benchmarks
 * (1B/3B/8B shapes). The files load with beast_model_load().
 *
 * Weights are a pure function of (seed, fill mode, tensor name, row): the
 * same parameters give a byte-identical file whatever the thread count, and
 * files that differ only in weight type hold quantizations of the same
 * float weights. Tensors are generated, quantized and written a slice of
 * rows at a time, so memory stays at about 100 MB even for an 8B model.
 * docs/GENERATOR.md describes the presets, the weight distribution, the fill
 * modes and the type rules. */
#ifndef BEAST_GEN_H
#define BEAST_GEN_H

#include <stdint.h>

typedef struct {
    const char *name; /* preset name ("llama-1b"); NULL for a custom shape */
    const char *arch; /* "llama" | "gemma3" */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_ctx;
    float rope_base;
    int sliding_window; /* gemma3 only; 0 = none */
    /* Token count of the synthetic vocabulary: it is padded with unreachable
     * filler tokens up to this (the real model's vocab size, so the output
     * matmul has its real cost). 0 = the bare synthetic vocab. Ignored with
     * gen_params.vocab_from. */
    int n_vocab;
} gen_shape;

/* A preset by name, or NULL (+ err_set) when unknown. Names: tiny-llama,
 * tiny-gemma3, smollm2-135m, llama-1b, llama-3b, llama-8b, gemma3-270m. */
const gen_shape *gen_shape_preset(const char *name);
/* Preset i (0-based) for listing, NULL past the end. */
const gen_shape *gen_shape_at(int i);

/* Weight type selections beyond the plain tensor types (quant_type ids).
 * A mix picks per tensor like llama.cpp's quantize does (see GENERATOR.md). */
enum {
    GEN_MIX_Q4_K_M = 1000,
    GEN_MIX_Q5_K_M,
    GEN_MIX_Q3_K_M,
};

/* Parse "Q4_K", "q8_0", "F16", "Q4_K_M", ... into a plain quant type id or a
 * GEN_MIX_* value. -1 (+ err_set) when unknown or not usable for weights. */
int gen_type_from_name(const char *name);
/* The name of a plain type id or a GEN_MIX_* value ("?" when unknown). */
const char *gen_type_name(int type);

/* How 2D weights are filled. EXACT: every row is its own Gaussian draw,
 * quantized with the reference quantizer (about 1 us per element for the
 * K-quants: minutes for a 1B model). BANK: rows are sequences of 256-element
 * units drawn at random from a bank of 4096 Gaussian units, each quantized
 * once per (type, scale), so a file is written at about disk speed. AUTO:
 * EXACT for models of at most 2^25 weight elements, else BANK. */
enum { GEN_FILL_AUTO = 0, GEN_FILL_EXACT, GEN_FILL_BANK };

typedef struct {
    const gen_shape *shape;
    int wtype;     /* quant type id or GEN_MIX_* for the 2D weights */
    int embd_type; /* token embedding (and output) type; -1 = by wtype's rule */
    uint64_t seed;
    /* Path of a GGUF whose tokenizer.* metadata (chat template included) is
     * copied; n_vocab becomes its token count. NULL = the synthetic
     * byte-level gpt2 vocab. */
    const char *vocab_from;
    int n_threads;     /* <= 0: 1 */
    int untied_output; /* nonzero: write a separate output.weight */
    int fill;          /* GEN_FILL_* */
    /* Optional: called after each slice of tensor data with the fraction
     * written so far (0..1]. */
    void (*progress)(void *user, double frac);
    void *progress_user;
} gen_params;

/* Write the model file. 0 ok, -1 + err_set() (a partial file is removed). */
int gen_write(const char *path, const gen_params *p);

/* The type gen_write gives a 2D weight of the model: name is the tensor
 * name ("blk.3.ffn_down.weight", "token_embd.weight", "output.weight"),
 * cols its row length. Exposed for tests and for `beast-gen --list`. */
int gen_tensor_type(const gen_params *p, const char *name, int64_t cols);

#endif
