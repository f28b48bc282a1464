/* cmd_info.c: `beast info MODEL`: what a GGUF model is and what it needs. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>

static const char INFO_HELP[] =
    "usage: beast info [options] MODEL\n"
    "\n"
    "Print a model's architecture, hyperparameters, tensor types, parameter count,\n"
    "file size and the memory it needs at a given context length.\n"
    "\n"
    "  -c, --ctx-size N   context length for the memory estimate (default: the model's)\n"
    "  -h, --help         this help\n";

static void human(char *buf, size_t n, double bytes) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) bytes /= 1024, i++;
    snprintf(buf, n, "%.2f %s", bytes, u[i]);
}

int cmd_info(int argc, char **argv) {
    int n_ctx = 0;
    static const struct option longopts[] = {
        {"ctx-size", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > (1 << 24)) {
                fprintf(stderr, "beast info: bad --ctx-size '%s'\n", optarg);
                return 2;
            }
            n_ctx = (int)v;
            break;
        }
        case 'h':
            printf("%s", INFO_HELP);
            return 0;
        default:
            fprintf(stderr, "%s", INFO_HELP);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "beast info: expected one MODEL path\n%s", INFO_HELP);
        return 2;
    }
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 1;
    beast_model *m = beast_model_load(argv[optind], &mp);
    if (!m) {
        fprintf(stderr, "beast: %s\n", beast_error());
        return 1;
    }
    beast_model_info in;
    beast_model_get_info(m, &in);
    if (n_ctx <= 0) n_ctx = in.n_ctx_train;
    char a[32], b[32], k[32], t[32];
    human(a, sizeof a, (double)in.file_size);
    human(b, sizeof b, (double)in.weight_bytes);
    printf("file           %s (%s)\n", argv[optind], a);
    printf("name           %s\n", in.name);
    printf("architecture   %s\n", in.arch);
    printf("parameters     %.1f M (%.3f B)\n", in.n_params / 1e6, in.n_params / 1e9);
    printf("weights        %s, %.2f bits per weight\n", b,
           8.0 * (double)in.weight_bytes / (double)in.n_params);
    printf("layers         %d\n", in.n_layer);
    printf("embedding      %d\n", in.n_embd);
    printf("feed-forward   %d\n", in.n_ff);
    printf("heads          %d query, %d key/value, %d dims each\n", in.n_head, in.n_head_kv,
           in.head_dim);
    printf("vocabulary     %d tokens\n", in.n_vocab);
    printf("context        %d trained\n", in.n_ctx_train);
    printf("rope base      %g\n", in.rope_base);
    if (in.sliding_window) printf("sliding window %d tokens (local layers)\n", in.sliding_window);
    printf("tensor types  ");
    for (int i = 0; i < in.n_types; i++) printf(" %s x%d", in.type_names[i], in.type_counts[i]);
    printf("\n");
    double kv = (double)in.kv_bytes_per_token * n_ctx;
    human(k, sizeof k, kv);
    human(t, sizeof t, (double)in.weight_bytes + kv);
    printf("memory         %s KV cache (f16) at context %d, %s with weights\n", k, n_ctx, t);
    beast_model_free(m);
    return 0;
}
