/* cli.h: what the beast subcommands share: option parsing for the model,
 * context and sampling settings, default-model lookup, and the generation
 * loop that streams text to a FILE. */
#ifndef BEAST_CLI_H
#define BEAST_CLI_H

#include "beast.h"
#include "sampler/sampler.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#define CLI_MAX_STOPS 16
#define CLI_MAX_BIAS  64

typedef struct {
    const char *model; /* NULL: the default model */
    int n_threads, n_ctx, n_batch, n_predict;
    int n_gpu_layers; /* beast_model_params.n_gpu_layers (default -1 = all) */
    bool verbose;
    sampler_params sp;
    sampler_bias bias[CLI_MAX_BIAS];
    const char *stops[CLI_MAX_STOPS];
    int n_stops;
} cli_common;

/* Long options shared by run/chat/bench-like commands; each command adds its
 * own. cli_common_parse returns 1 if it consumed the option, 0 if not, -1 on
 * a bad value (message printed). (-ngl N reaches commands as --gpu-layers N:
 * main.c.) */
void cli_common_init(cli_common *o);
int cli_common_parse(cli_common *o, int opt, const char *arg);
extern const char CLI_COMMON_HELP[];
#define CLI_COMMON_LONGOPTS                                                                        \
    {"model", required_argument, 0, 'm'}, {"threads", required_argument, 0, 't'},                  \
        {"ctx-size", required_argument, 0, 'c'}, {"n-predict", required_argument, 0, 'n'},         \
        {"batch-size", required_argument, 0, 'b'}, {"temp", required_argument, 0, 1001},           \
        {"top-k", required_argument, 0, 1002}, {"top-p", required_argument, 0, 1003},              \
        {"min-p", required_argument, 0, 1004}, {"repeat-penalty", required_argument, 0, 1005},     \
        {"repeat-last-n", required_argument, 0, 1006},                                             \
        {"presence-penalty", required_argument, 0, 1007},                                          \
        {"frequency-penalty", required_argument, 0, 1008}, {"seed", required_argument, 0, 's'},    \
        {"stop", required_argument, 0, 1009}, {"logit-bias", required_argument, 0, 1010},          \
        {"verbose", no_argument, 0, 'v'}, {"greedy", no_argument, 0, 1011},                        \
        {"gpu-layers", required_argument, 0, 1012}, {                                              \
        "n-gpu-layers", required_argument, 0, 1012                                                 \
    }
#define CLI_COMMON_SHORTOPTS "m:t:c:n:b:s:v"

/* The model path to use: o->model, $BEAST_MODEL, or the default model in
 * $BEAST_MODELS_DIR, ./models or <executable>/../models. NULL + message if
 * none exists. */
const char *cli_model_path(const cli_common *o, const char *argv0);
beast_model *cli_load_model(const cli_common *o, const char *argv0, double *load_ms);
/* Where the model runs, for -v: "cpu", "cpu (no GPU: why)", "cuda: 16/16
 * layers" or, split, "cuda: 8/16 layers, the first 8 on the CPU". */
void cli_backend_desc(const beast_model_info *in, char *buf, size_t n);

/* Set while a reply should stop (Ctrl-C during generation). */
extern volatile sig_atomic_t cli_interrupted;
void cli_install_sigint(void);

typedef struct {
    int n_prompt, n_gen;
    double prompt_s, gen_s;
    const char *finish; /* "stop", "length", "interrupted", "error" */
} cli_gen_stats;

/* Feed prompt tokens to sequence 0 after the first n_keep tokens already in
 * the context, then generate up to n_predict tokens, streaming text to out.
 * Generated tokens are appended to *hist (capacity *hist_cap, grown). */
int cli_generate(beast_ctx *c, const beast_model *m, sampler *s, const cli_common *o,
                 const int32_t *prompt, int n_prompt, FILE *out, cli_gen_stats *st, int32_t **gen,
                 int *n_gen_cap);

void cli_print_stats(FILE *f, double load_ms, const cli_gen_stats *st);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
#ifdef BEAST_HAVE_SERVER
int cmd_serve(int argc, char **argv);
#endif

#endif
