/* tools/gen/main.c: the beast-gen program: command-line front end of the
 * model generator (src/model/gen.h). Writes a GGUF of a preset shape with
 * seeded random weights; --list shows the presets. */
#include "model/gen.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: beast-gen --preset NAME --type TYPE [options] -o OUT.gguf\n"
               "       beast-gen --list | --help\n"
               "Write a model of a real architecture and shape with seeded random weights.\n"
               "  --preset NAME       shape preset (see --list)\n"
               "  --type TYPE         weight type: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0\n"
               "                      Q2_K Q3_K Q4_K Q5_K Q6_K, or a mix: Q3_K_M Q4_K_M Q5_K_M\n"
               "  --embd-type TYPE    token embedding / output type (default: by --type)\n"
               "  --seed N            weight seed (default 1)\n"
               "  --vocab-from PATH   copy the tokenizer (and chat template) of this GGUF\n"
               "                      (default: a synthetic byte-level gpt2 vocab)\n"
               "  --untied            write a separate output.weight (default: tied)\n"
               "  --exact             quantize every row from its own random floats\n"
               "                      (default for models up to 2^25 weights; slow for\n"
               "                      K-quants: about 1 us per weight and thread)\n"
               "  --bank              build rows from a bank of pre-quantized units\n"
               "                      (default above 2^25 weights; runs at disk speed)\n"
               "  --threads N         threads (default: all cores); the file does not\n"
               "                      depend on it\n"
               "  -q, --quiet         no progress output\n"
               "  -o, --output PATH   output file\n");
}

static void list(void) {
    printf("%-14s %-7s %6s %6s %6s %5s %4s %5s %6s %9s %7s\n", "preset", "arch", "layers", "embd",
           "ff", "heads", "kv", "hdim", "window", "rope", "vocab");
    for (int i = 0; gen_shape_at(i); i++) {
        const gen_shape *s = gen_shape_at(i);
        printf("%-14s %-7s %6d %6d %6d %5d %4d %5d %6d %9g %7d\n", s->name, s->arch, s->n_layer,
               s->n_embd, s->n_ff, s->n_head, s->n_head_kv, s->head_dim, s->sliding_window,
               (double)s->rope_base, s->n_vocab);
    }
    printf("(vocab: padded size of the synthetic vocab; 0 = bare, about 360 tokens)\n");
}

static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

typedef struct {
    int last;
    double t0;
} prog;

static void on_progress(void *user, double frac) {
    prog *pr = user;
    int pct = (int)(frac * 100.0);
    if (pct / 5 != pr->last / 5 || frac >= 1.0) {
        fprintf(stderr, "\rbeast-gen: %3d%%  %.1f s", pct, time_now() - pr->t0);
        fflush(stderr);
        pr->last = pct;
    }
}

int main(int argc, char **argv) {
    const char *preset = NULL, *type = NULL, *embd = NULL, *out = NULL;
    gen_params p = {0};
    p.seed = 1;
    p.embd_type = -1;
    long long threads = 0;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list")) {
            list();
            return 0;
        } else if (!strcmp(a, "--untied")) {
            p.untied_output = 1;
        } else if (!strcmp(a, "--exact")) {
            p.fill = GEN_FILL_EXACT;
        } else if (!strcmp(a, "--bank")) {
            p.fill = GEN_FILL_BANK;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (has && !strcmp(a, "--preset")) {
            preset = argv[++i];
        } else if (has && !strcmp(a, "--type")) {
            type = argv[++i];
        } else if (has && !strcmp(a, "--embd-type")) {
            embd = argv[++i];
        } else if (has && !strcmp(a, "--vocab-from")) {
            p.vocab_from = argv[++i];
        } else if (has && (!strcmp(a, "-o") || !strcmp(a, "--output"))) {
            out = argv[++i];
        } else if (has && !strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            const char *s = argv[++i];
            unsigned long long v = strtoull(s, &end, 0);
            if (errno || end == s || *end || *s == '-') {
                fprintf(stderr, "beast-gen: bad --seed '%s'\n", s);
                usage(stderr);
                return 2;
            }
            p.seed = v;
        } else if (has && !strcmp(a, "--threads")) {
            if (parse_int(argv[++i], 1, 1024, &threads)) {
                fprintf(stderr, "beast-gen: bad --threads '%s'\n", argv[i]);
                usage(stderr);
                return 2;
            }
        } else {
            fprintf(stderr, "beast-gen: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!preset || !type || !out) {
        fprintf(stderr, "beast-gen: --preset, --type and -o are required\n");
        usage(stderr);
        return 2;
    }
    if (!(p.shape = gen_shape_preset(preset)) || (p.wtype = gen_type_from_name(type)) < 0 ||
        (embd && (p.embd_type = gen_type_from_name(embd)) < 0)) {
        fprintf(stderr, "beast-gen: %s\n", err_get());
        usage(stderr);
        return 2;
    }
    if (embd && p.embd_type >= GEN_MIX_Q4_K_M) {
        fprintf(stderr, "beast-gen: --embd-type needs a plain type, not a mix\n");
        usage(stderr);
        return 2;
    }
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? n : 1;
    }
    p.n_threads = (int)threads;
    prog pr = {-100, time_now()};
    if (!quiet) {
        p.progress = on_progress;
        p.progress_user = &pr;
    }
    if (gen_write(out, &p) != 0) {
        if (!quiet) fputc('\n', stderr);
        fprintf(stderr, "beast-gen: %s\n", err_get());
        return 1;
    }
    if (!quiet) {
        struct stat st;
        long long sz = stat(out, &st) == 0 ? (long long)st.st_size : -1;
        fprintf(stderr, "\rbeast-gen: wrote %s (%lld bytes) in %.1f s\n", out, sz,
                time_now() - pr.t0);
    }
    return 0;
}
