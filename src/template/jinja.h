/* jinja.h: a small Jinja2 interpreter (lexer -> AST -> evaluator) for the
 * chat templates that models carry in GGUF metadata.
 *
 * The aim is byte-identical output with Python's jinja2 as configured by HF
 * transformers for apply_chat_template (sandboxed, default Undefined,
 * loopcontrols, trim_blocks + lstrip_blocks, their own tojson), for the
 * subset of the language real chat templates use. See jinja.c for the
 * covered features and the known differences.
 *
 * Usage: parse once, render many times. The render context is a JSON object
 * whose members become the template's variables; a member that is absent is
 * undefined (so `x is defined` is false), a member set to null is none.
 *
 * Errors: functions return NULL / -1 and set err_get() to
 * "template: line N: message". Hostile templates cannot crash the process:
 * recursion depth, loop iterations, output size and total memory are capped
 * (jinja_options; 0 means the default). */
#ifndef BEAST_JINJA_H
#define BEAST_JINJA_H

#include <stddef.h>

typedef struct jinja_options {
    int trim_blocks;           /* drop the first newline after a block tag */
    int lstrip_blocks;         /* strip spaces/tabs before a block tag on its line */
    int keep_trailing_newline; /* keep one final newline of the source */
    size_t max_output;         /* largest string (and output) in bytes; default 16 MiB */
    size_t max_memory;         /* per-render memory in bytes; default 256 MiB */
    long max_iterations;       /* total for-loop iterations per render; default 10M */
} jinja_options;

/* The options HF transformers uses: trim_blocks and lstrip_blocks on. */
jinja_options jinja_options_hf(void);

typedef struct jinja_template jinja_template;

/* Compile a template (NUL-terminated source). opt may be NULL (all off). */
jinja_template *jinja_parse(const char *src, const jinja_options *opt);
void jinja_free(jinja_template *t);

/* Render with a context given as a JSON object text (NULL or "" = empty).
 * *out is malloc'd and NUL-terminated (the output may contain NULs from
 * data; out_len, if not NULL, gets the byte length). Returns 0 or -1. */
int jinja_render(const jinja_template *t, const char *ctx_json, char **out, size_t *out_len);

/* Parse + render + free in one call. */
int jinja_render_string(const char *src, const jinja_options *opt, const char *ctx_json, char **out,
                        size_t *out_len);

#endif
