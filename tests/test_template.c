/* test_template.c: the Jinja interpreter and chat templates against goldens
 * rendered by Python's jinja2 as HF transformers configures it
 * (tests/data/templates, made by tools/goldens/template_goldens.py):
 * every golden must match byte for byte, every golden error must fail with
 * a message. Plus error paths, resource limits, and random mutations of the
 * golden templates (must never crash; run under ASan/UBSan too). */
#include "template/chat.h"
#include "template/jinja.h"
#include "util/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* ---- files ---- */

static const char *data_dir(void) {
    static const char *const dirs[] = {"data/templates", "tests/data/templates"};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/chat.golden", dirs[i]);
        FILE *f = fopen(p, "rb");
        if (f) {
            fclose(f);
            return dirs[i];
        }
    }
    return NULL;
}

static char *read_file(const char *dir, const char *name, size_t *len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

/* ---- golden records: "<key> <len>\n<bytes>\n" ... "end 0\n\n" ---- */

#define MAX_FIELDS 64

typedef struct {
    char key[32];
    const char *val; /* points into the file buffer, NUL-terminated in place */
    size_t len;
} gfield;

typedef struct {
    gfield f[MAX_FIELDS];
    int n;
} grecord;

/* Parse the next record from *pos; returns 0 at the end, -1 on a format error. */
static int next_record(char *buf, size_t size, size_t *pos, grecord *r) {
    r->n = 0;
    while (*pos < size) {
        char *p = buf + *pos, *sp = memchr(p, ' ', size - *pos);
        if (!sp || sp - p >= 31) return -1;
        char *nl = memchr(sp, '\n', size - (size_t)(sp - buf));
        if (!nl) return -1;
        size_t len = strtoull(sp + 1, NULL, 10);
        size_t start = (size_t)(nl + 1 - buf);
        if (start + len + 1 > size || buf[start + len] != '\n') return -1;
        if (r->n == MAX_FIELDS) return -1;
        gfield *g = &r->f[r->n++];
        memcpy(g->key, p, (size_t)(sp - p));
        g->key[sp - p] = 0;
        buf[start + len] = 0; /* the separator newline becomes the terminator */
        g->val = buf + start;
        g->len = len;
        *pos = start + len + 1;
        if (!strcmp(g->key, "end")) return 1;
    }
    return r->n ? -1 : 0;
}

static const gfield *get(const grecord *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->f[i].key, key)) return &r->f[i];
    return NULL;
}

static void show_diff(const char *name, const char *want, size_t wn, const char *got, size_t gn) {
    size_t i = 0;
    while (i < wn && i < gn && want[i] == got[i]) i++;
    fprintf(stderr, "  %s: first difference at byte %zu (want %zu bytes, got %zu)\n", name, i, wn,
            gn);
    size_t a = i > 30 ? i - 30 : 0;
    fprintf(stderr, "  want: [%.*s]\n  got:  [%.*s]\n", (int)(MIN(wn, i + 40) - a), want + a,
            (int)(MIN(gn, i + 40) - a), got + a);
}

/* ---- snippet goldens ---- */

static int run_snippets(const char *dir) {
    size_t size;
    char *buf = read_file(dir, "snippets.golden", &size);
    CHECK(buf != NULL, "cannot read snippets.golden");
    if (!buf) return 0;
    size_t pos = 0;
    grecord r;
    int n = 0, rc;
    while ((rc = next_record(buf, size, &pos, &r)) == 1) {
        const gfield *name = get(&r, "name"), *opts = get(&r, "opts"), *tmpl = get(&r, "template"),
                     *ctx = get(&r, "context"), *expect = get(&r, "expect"),
                     *error = get(&r, "error");
        CHECK(name && opts && opts->len == 3 && tmpl && ctx && (expect || error), "bad record");
        if (!(name && opts && opts->len == 3 && tmpl && ctx && (expect || error))) break;
        jinja_options o;
        memset(&o, 0, sizeof o);
        o.trim_blocks = opts->val[0] == '1';
        o.lstrip_blocks = opts->val[1] == '1';
        o.keep_trailing_newline = opts->val[2] == '1';
        char *out = NULL;
        size_t olen = 0;
        err_clear();
        int res = jinja_render_string(tmpl->val, &o, ctx->val, &out, &olen);
        if (expect) {
            CHECK(res == 0, "%s: render failed: %s", name->val, err_get());
            if (res == 0) {
                int same = olen == expect->len && !memcmp(out, expect->val, olen);
                CHECK(same, "%s: output differs from jinja2", name->val);
                if (!same) show_diff(name->val, expect->val, expect->len, out, olen);
            }
        } else {
            CHECK(res == -1 && out == NULL, "%s: should fail like jinja2 (%s), got [%s]", name->val,
                  error->val, out ? out : "");
            CHECK(!strncmp(err_get(), "template: ", 10), "%s: error message [%s]", name->val,
                  err_get());
        }
        free(out);
        n++;
    }
    CHECK(rc == 0, "snippets.golden: format error near byte %zu", pos);
    free(buf);
    return n;
}

/* ---- chat goldens ---- */

static int run_chats(const char *dir) {
    size_t size;
    char *buf = read_file(dir, "chat.golden", &size);
    CHECK(buf != NULL, "cannot read chat.golden");
    if (!buf) return 0;
    size_t pos = 0;
    grecord r;
    int n = 0, rc;
    while ((rc = next_record(buf, size, &pos, &r)) == 1) {
        const gfield *name = get(&r, "name"), *tf = get(&r, "template"),
                     *agp = get(&r, "add_generation_prompt"), *bos = get(&r, "bos"),
                     *eos = get(&r, "eos"), *expect = get(&r, "expect"), *error = get(&r, "error");
        CHECK(name && tf && agp && bos && eos && (expect || error), "bad chat record");
        if (!(name && tf && agp && bos && eos && (expect || error))) break;
        chat_msg msgs[MAX_FIELDS];
        int nm = 0;
        for (int i = 0; i < r.n; i++)
            if (!strcmp(r.f[i].key, "role")) {
                msgs[nm].role = r.f[i].val;
                msgs[nm].content = i + 1 < r.n ? r.f[i + 1].val : "";
                nm++;
            }
        char *tmpl = read_file(dir, tf->val, NULL);
        CHECK(tmpl != NULL, "%s: cannot read %s", name->val, tf->val);
        if (!tmpl) break;
        char *out = NULL;
        err_clear();
        int res = chat_render(tmpl, msgs, nm, agp->val[0] == '1', bos->val, eos->val, &out);
        if (expect) {
            CHECK(res == 0, "%s: render failed: %s", name->val, err_get());
            if (res == 0) {
                size_t olen = strlen(out);
                int same = olen == expect->len && !memcmp(out, expect->val, olen);
                CHECK(same, "%s: output differs from transformers", name->val);
                if (!same) show_diff(name->val, expect->val, expect->len, out, olen);
            }
        } else {
            CHECK(res == -1 && out == NULL, "%s: should fail (%s)", name->val, error->val);
            /* raise_exception's message reaches the caller */
            const char *colon = strstr(error->val, ": ");
            CHECK(colon && strstr(err_get(), colon + 2), "%s: message [%s] lacks [%s]", name->val,
                  err_get(), colon ? colon + 2 : "");
        }
        free(out);
        free(tmpl);
        n++;
    }
    CHECK(rc == 0, "chat.golden: format error near byte %zu", pos);
    free(buf);
    return n;
}

static void test_builtins(const char *dir) {
    static const char *const names[] = {"gemma3", "chatml"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char fn[64];
        snprintf(fn, sizeof fn, "%s.jinja", names[i]);
        char *want = read_file(dir, fn, NULL);
        const char *got = chat_builtin(names[i]);
        CHECK(want && got && !strcmp(want, got), "built-in %s differs from %s", names[i], fn);
        free(want);
    }
    CHECK(chat_builtin("no-such-template") == NULL, "unknown built-in");
    CHECK(chat_builtin(NULL) == NULL, "NULL built-in name");
}

/* ---- errors and limits ---- */

static void expect_fail(const char *tmpl, const char *ctx, const jinja_options *o,
                        const char *msg) {
    char *out = (char *)1;
    err_clear();
    int rc = jinja_render_string(tmpl, o, ctx, &out, NULL);
    CHECK(rc == -1 && out == NULL, "should fail: %.60s", tmpl);
    if (rc == 0) free(out);
    CHECK(!strncmp(err_get(), "template: ", 10), "message prefix: [%s]", err_get());
    if (msg) CHECK(strstr(err_get(), msg) != NULL, "message [%s] lacks [%s]", err_get(), msg);
}

static void expect_ok(const char *tmpl, const char *ctx, const char *want) {
    char *out = NULL;
    int rc = jinja_render_string(tmpl, NULL, ctx, &out, NULL);
    CHECK(rc == 0, "should render: %.60s: %s", tmpl, err_get());
    if (rc == 0) CHECK(!strcmp(out, want), "%.60s: got [%s] want [%s]", tmpl, out, want);
    free(out);
}

static void test_errors(void) {
    /* line numbers in messages */
    expect_fail("a\nb\n{{ 1 +\n }}", NULL, NULL, "line 4");
    expect_fail("x\n\n{% if %}", NULL, NULL, "line 3");
    expect_fail("line1\n{{ raise_exception('boom here') }}", NULL, NULL, "line 2: boom here");
    expect_fail("{{ x.y }}", "{}", NULL, "'x' is undefined");
    expect_fail("{{ 'a'|nofilter }}", NULL, NULL, "nofilter");
    /* bad context JSON */
    expect_fail("x", "{\"a\": }", NULL, "context JSON");
    expect_fail("x", "[1, 2]", NULL, "object");
    expect_fail("x", "{\"a\": \"unterminated}", NULL, "context JSON");
    expect_fail("x", "{\"a\": 1} trailing", NULL, "trailing");
    /* API misuse */
    char *out = NULL;
    CHECK(jinja_render(NULL, NULL, &out, NULL) == -1 && !out, "NULL template");
    CHECK(jinja_parse(NULL, NULL) == NULL, "NULL source");
    CHECK(chat_render(NULL, NULL, 0, 0, NULL, NULL, &out) == -1 && !out, "NULL chat template");
    chat_msg bad = {NULL, "x"};
    CHECK(chat_render("x", &bad, 1, 0, NULL, NULL, &out) == -1 && !out, "NULL role");
    /* NULL content reaches the template as none */
    chat_msg none_content = {"user", NULL};
    CHECK(chat_render("{{ messages[0].content is none }}", &none_content, 1, 0, NULL, NULL, &out) ==
                  0 &&
              out && !strcmp(out, "True"),
          "NULL content");
    free(out);
    out = NULL;
    /* bos/eos NULL: undefined */
    CHECK(chat_render("[{{ bos_token }}]{{ eos_token is defined }}", NULL, 0, 1, NULL, NULL,
                      &out) == 0 &&
              !strcmp(out, "[]False"),
          "NULL bos/eos");
    free(out);
    out = NULL;
    /* gemma3 with no messages: messages[0]['role'] on undefined fails */
    CHECK(chat_render(chat_builtin("gemma3"), NULL, 0, 1, "<bos>", "<eos>", &out) == -1 && !out,
          "gemma3 with no messages");
    /* invalid UTF-8 content passes through */
    chat_msg inv = {"user", "a\xff\xfe b\xc3"};
    CHECK(chat_render(chat_builtin("chatml"), &inv, 1, 0, NULL, NULL, &out) == 0 &&
              !strcmp(out, "<|im_start|>user\na\xff\xfe b\xc3<|im_end|>\n"),
          "invalid UTF-8");
    free(out);
    out = NULL;
    CHECK(chat_render("{{ messages[0].content|length }}|{{ messages[0].content|trim }}|", &inv, 1,
                      0, NULL, NULL, &out) == 0 &&
              !strcmp(out, "6|a\xff\xfe b\xc3|"),
          "invalid UTF-8 length/trim: %s", out ? out : err_get());
    free(out);
    out = NULL;
    /* trim walks back over invalid UTF-8 exactly like the forward decoder */
    chat_msg ws = {"user", " \xe2\x82 \xc3\xa9 \xa9\xc3\xa9 \xe3\x80\x80\t\xc2\xa0"};
    CHECK(chat_render("[{{ messages[0].content|trim }}]", &ws, 1, 0, NULL, NULL, &out) == 0 &&
              !strcmp(out, "[\xe2\x82 \xc3\xa9 \xa9\xc3\xa9]"),
          "trim with invalid UTF-8: %s", out ? out : err_get());
    free(out);
}

static void test_limits(void) {
    jinja_options o;
    memset(&o, 0, sizeof o);
    /* output size */
    o.max_output = 1000;
    expect_fail("{% for i in range(100) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}", NULL, &o,
                "too large");
    expect_fail("{{ 'x' * 100000 }}", NULL, &o, NULL);
    /* iterations (nested loops cannot multiply past the cap) */
    memset(&o, 0, sizeof o);
    o.max_iterations = 10000;
    expect_fail("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                NULL, &o, "iterations");
    /* memory */
    memset(&o, 0, sizeof o);
    o.max_memory = 1 << 20;
    expect_fail("{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ "
                "'0123456789' %}{% endfor %}",
                NULL, &o, NULL);
    /* unbounded recursion */
    expect_fail("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, "deep");
    /* deep nesting in the source */
    char deep[4096];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 1000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++) deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    expect_fail(deep, NULL, NULL, "deep");
    k = 0;
    for (int i = 0; i < 300; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{%% if 1 %%}");
    expect_fail(deep, NULL, NULL, "deep");
    k = 0;
    for (int i = 0; i < 500; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "not ");
    snprintf(deep + k, sizeof deep - k, "1");
    char tmpl[4200];
    snprintf(tmpl, sizeof tmpl, "{{ %s }}", deep);
    expect_fail(tmpl, NULL, NULL, "deep");
    /* long left-deep chains are bounded too (every tree walk is recursive) */
    static const char *const chains[] = {" + 1", "|trim", ".a", " or 0", "(1)", " if 1 else 2"};
    for (size_t c = 0; c < ARRAY_LEN(chains); c++) {
        size_t cl = strlen(chains[c]), cap = 20 + cl * 50000;
        char *big = malloc(cap);
        if (!big) continue;
        size_t m = (size_t)snprintf(big, cap, "{{ x");
        for (int i = 0; i < 50000; i++) {
            memcpy(big + m, chains[c], cl);
            m += cl;
        }
        memcpy(big + m, " }}", 4);
        expect_fail(big, "{\"x\": 1}", NULL, "deep");
        free(big);
    }
    /* a slice inside a tuple subscript is a syntax error (was a NULL dereference) */
    expect_fail("{{ x[1:2, 3] }}", NULL, NULL, "syntax");
    /* JSON nesting */
    k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"a\": ");
    for (int i = 0; i < 1000; i++) deep[k++] = '[';
    for (int i = 0; i < 1000; i++) deep[k++] = ']';
    snprintf(deep + k, sizeof deep - k, "}");
    expect_fail("x", deep, NULL, "deep");
    /* integer overflow is an error, not wraparound */
    expect_fail("{{ 9223372036854775807 + 1 }}", NULL, NULL, "overflow");
    expect_fail("{{ 2 ** 64 }}", NULL, NULL, "overflow");
}

/* A template parsed once renders the same for several contexts. */
static void test_reuse(void) {
    jinja_options o = jinja_options_hf();
    jinja_template *t =
        jinja_parse("{% for m in messages %}{{ m }};{% endfor %}{{ n|default(0) }}", &o);
    CHECK(t != NULL, "parse: %s", err_get());
    if (!t) return;
    for (int i = 0; i < 3; i++) {
        char ctx[128], want[128], *out = NULL;
        snprintf(ctx, sizeof ctx, "{\"messages\": [%d, \"x%d\"], \"n\": %d}", i, i, i * 7);
        snprintf(want, sizeof want, "%d;x%d;%d", i, i, i * 7);
        size_t len = 0;
        CHECK(jinja_render(t, ctx, &out, &len) == 0, "render %d: %s", i, err_get());
        CHECK(out && !strcmp(out, want) && len == strlen(want), "render %d: [%s]", i,
              out ? out : "");
        free(out);
    }
    /* a failing render leaves the template usable */
    char *out = NULL;
    CHECK(jinja_render(t, "{\"messages\": 5}", &out, NULL) == -1 && !out, "non-iterable");
    CHECK(jinja_render(t, "{\"messages\": []}", &out, NULL) == 0 && !strcmp(out, "0"),
          "after error");
    free(out);
    jinja_free(t);
    expect_ok("{{ a }}-{{ b.c[1] }}-{{ d }}",
              "{\"a\": \"\\u00e9\\ud83e\\udd99\", \"b\": {\"c\": [1, 2.5]}, \"d\": -0.0}",
              "\xc3\xa9\xf0\x9f\xa6\x99-2.5--0.0");
}

/* ---- random mutations: never crash, always 0 or -1 with a message ---- */

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void fuzz_one(const char *src, size_t len, const char *ctx) {
    static const char *const frags[] = {"{{",
                                        "}}",
                                        "{%",
                                        "%}",
                                        "{#",
                                        "#}",
                                        "-",
                                        "+",
                                        "(",
                                        ")",
                                        "[",
                                        "]",
                                        "'",
                                        "\"",
                                        "|",
                                        " is ",
                                        " in ",
                                        " not ",
                                        "endfor",
                                        "endif",
                                        "loop",
                                        ".",
                                        ",",
                                        "=",
                                        "~",
                                        "*",
                                        "\\",
                                        "\n",
                                        "\xff",
                                        "\xe2\x82",
                                        " if ",
                                        " else ",
                                        "none",
                                        "0",
                                        ":",
                                        "::-1",
                                        "caller()",
                                        "**",
                                        "%s",
                                        " % ",
                                        "{% call m() %}",
                                        "{% endcall %}"};
    char *buf = malloc(len + 64);
    if (!buf) return;
    memcpy(buf, src, len);
    size_t n = len;
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? rnd() % n : 0;
        switch (rnd() % 3) {
        case 0: /* delete a span */
            if (n) {
                size_t k = 1 + rnd() % 8;
                if (at + k > n) k = n - at;
                memmove(buf + at, buf + at + k, n - at - k);
                n -= k;
            }
            break;
        case 1: { /* insert a fragment */
            const char *f = frags[rnd() % ARRAY_LEN(frags)];
            size_t k = strlen(f);
            if (n + k < len + 60) {
                memmove(buf + at + k, buf + at, n - at);
                memcpy(buf + at, f, k);
                n += k;
            }
            break;
        }
        default: /* replace a byte */
            if (n) buf[at] = (char)(rnd() & 0xFF);
        }
    }
    buf[n] = 0;
    jinja_options o = jinja_options_hf();
    o.max_iterations = 20000;
    char *out = NULL;
    err_clear();
    int rc = jinja_render_string(buf, &o, ctx, &out, NULL);
    CHECK(rc == 0 || rc == -1, "fuzz rc %d", rc);
    if (rc == -1) CHECK(out == NULL && err_get()[0], "fuzz: failure without message");
    free(out);
    free(buf);
}

static void test_fuzz(const char *dir) {
    /* fresh inputs each run; TEMPLATE_FUZZ_SEED=<n> reproduces a run */
    const char *env = getenv("TEMPLATE_FUZZ_SEED");
    rng_state = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + 1;
    if (!rng_state) rng_state = 1;
    fprintf(stderr, "fuzz seed %llu (TEMPLATE_FUZZ_SEED)\n", (unsigned long long)rng_state);
    const char *ctx =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", "
        "\"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}], "
        "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"tools\": null}";
    static const char *const files[] = {"gemma3.jinja", "smollm2.jinja", "chatml.jinja"};
    for (size_t f = 0; f < ARRAY_LEN(files); f++) {
        size_t len;
        char *src = read_file(dir, files[f], &len);
        CHECK(src != NULL, "read %s", files[f]);
        if (!src) continue;
        for (int i = 0; i < 400; i++) fuzz_one(src, len, ctx);
        free(src);
    }
    /* snippet templates too */
    size_t size;
    char *buf = read_file(dir, "snippets.golden", &size);
    if (!buf) return;
    size_t pos = 0;
    grecord r;
    while (next_record(buf, size, &pos, &r) == 1) {
        const gfield *t = get(&r, "template"), *c = get(&r, "context");
        if (t && c)
            for (int i = 0; i < 6; i++) fuzz_one(t->val, t->len, c->val);
    }
    free(buf);
}

int main(void) {
    const char *dir = data_dir();
    if (!dir) {
        fprintf(stderr, "test_template: tests/data/templates not found (run from tests/)\n");
        return 1;
    }
    int ns = run_snippets(dir);
    int nc = run_chats(dir);
    test_builtins(dir);
    test_errors();
    test_limits();
    test_reuse();
    test_fuzz(dir);
    fprintf(stderr, "test_template: %d snippet goldens, %d chat goldens, %d checks, %d failures\n",
            ns, nc, checks, failures);
    return failures ? 1 : 0;
}
