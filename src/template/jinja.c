/* jinja.c: a small Jinja2 interpreter for chat templates: lexer -> AST ->
 * tree-walking evaluator. Written by hand because Debian packages no C
 * library that renders Jinja2; the behaviour follows the Jinja2 language
 * reference and was checked against Python's jinja2 (as configured by HF
 * transformers) with goldens (tests/data/templates/, made by
 * tools/goldens/template_goldens.py).
 *
 * Covered: {{ }}, {% %}, {# #}, {% raw %}, whitespace control (-/+ on both
 * sides), trim_blocks, lstrip_blocks, keep_trailing_newline; if/elif/else,
 * for (else, `if` filter, tuple unpacking, loop.index/index0/revindex/
 * revindex0/first/last/length/previtem/nextitem/depth/cycle), break and
 * continue, set (names, tuples, namespace attributes, block form with
 * filters), macros (defaults, keyword arguments, varargs/kwargs, caller),
 * call blocks, filter blocks, with, HF's generation block; Python-like
 * operators and literals (including str % args), star-args and double-star-kwargs in calls,
 * subscripts and slices, attribute access, a sandboxed set of str/dict/list
 * methods, the common filters and tests, and the globals range, namespace,
 * dict, raise_exception, strftime_now. Unknown filters/tests fail at parse
 * time, or only when evaluated inside if-statements and inline ifs (jinja2's
 * "soft frame" rule).
 *
 * Values follow Python semantics: none, bool, int (64-bit; overflow is an
 * error), float (printed like Python's repr), str (UTF-8; lengths, indexes
 * and slices count code points), list, tuple, dict (insertion ordered),
 * namespace, plus jinja's default Undefined (prints as "", errors on
 * attribute access, arithmetic and calls).
 *
 * Known differences from jinja2: generators (map/select/...), dict views
 * and range() are plain lists (so they print as lists); case mapping uses
 * utf8proc's simple mappings plus a few special cases (no context-sensitive
 * final sigma); integers are 64-bit; Markup (escape, safe) is a plain
 * string; recursive for-loops, includes/imports/extends/blocks, the `do`
 * tag and str.format() are not supported (they fail with an error).
 *
 * Implementation notes: all memory of a parse or a render comes from one
 * arena that is freed at the end; errors unwind with longjmp to the entry
 * point after err_set(), so no partial state leaks. Recursion depth, AST
 * depth, loop iterations, string size and arena size are all capped. */
#include "template/jinja.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <utf8proc.h>

#define DEF_MAX_OUTPUT  ((size_t)16 << 20)
#define DEF_MAX_MEMORY  ((size_t)256 << 20)
#define DEF_MAX_ITER    10000000L
#define MAX_DEPTH       1000 /* evaluator recursion (expressions + statements + calls) */
#define MAX_PARSE_DEPTH 200  /* AST depth: nesting of brackets, blocks, operator chains */
#define MAX_MACRO_DEPTH 64
#define MAX_RANGE       100000 /* same as jinja2's sandbox */
#define MAX_JSON_DEPTH  200
#define ARENA_BLOCK     (64 * 1024)

/* ------------------------------------------------------------------------ */
/* Arena + error unwinding                                                  */

typedef struct ablk {
    struct ablk *next;
    size_t used, cap;
    max_align_t data[];
} ablk;

typedef struct jx {
    ablk *blocks;
    size_t total, limit; /* bytes allocated / allowed */
    size_t max_str;      /* longest string that may be built */
    int line;            /* source line for error messages */
    jmp_buf jb;
} jx;

static _Noreturn void jx_fail(jx *x, const char *fmt, ...) BEAST_PRINTF(2, 3);
static _Noreturn void jx_fail(jx *x, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->line > 0)
        err_set("template: line %d: %s", x->line, msg);
    else
        err_set("template: %s", msg);
    longjmp(x->jb, 1);
}

static void *jx_alloc(jx *x, size_t n) {
    n = (n + 15) & ~(size_t)15;
    ablk *b = x->blocks;
    if (b && b->cap - b->used >= n) {
        void *p = (char *)b->data + b->used;
        b->used += n;
        return p;
    }
    size_t cap = n > ARENA_BLOCK / 2 ? n : ARENA_BLOCK;
    if (x->total + cap + sizeof(ablk) > x->limit) jx_fail(x, "memory limit exceeded");
    ablk *nb = malloc(sizeof(ablk) + cap);
    if (!nb) jx_fail(x, "out of memory");
    x->total += cap + sizeof(ablk);
    nb->cap = cap;
    nb->used = n;
    if (b && cap == n) { /* a big one-off: keep the current block for small allocations */
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        x->blocks = nb;
    }
    return nb->data;
}

static void *jx_zalloc(jx *x, size_t n) {
    void *p = jx_alloc(x, n);
    memset(p, 0, n);
    return p;
}

static void arena_free(ablk *b) {
    while (b) {
        ablk *n = b->next;
        free(b);
        b = n;
    }
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */

enum {
    J_UNDEF,
    J_NONE,
    J_BOOL,
    J_INT,
    J_FLOAT,
    J_STR,
    J_LIST, /* list or tuple (jlist.tuple) */
    J_DICT,
    J_NS,     /* namespace(): a dict with attribute access */
    J_LOOP,   /* the `loop` variable */
    J_MACRO,  /* a macro defined in the template */
    J_FUNC,   /* a builtin function or a bound method */
    J_MISSING /* internal: an argument that was not passed */
};

typedef struct jstr {
    size_t len;
    char s[]; /* NUL-terminated */
} jstr;

typedef struct jv jv;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct jmacro jmacro;
typedef struct jfunc jfunc;

struct jv {
    int t;
    union {
        int b;
        int64_t i;
        double f;
        const jstr *s;
        jlist *l;
        jdict *d;
        jloop *lp;
        jmacro *m;
        jfunc *fn;
        const char *name; /* J_UNDEF: what was undefined (may be NULL) */
    } u;
};

struct jlist {
    size_t n, cap;
    jv *v;
    int tuple;
};

struct jdict {
    size_t n, cap;
    jv *k, *v;
};

static jv mk_undef(const char *name) {
    jv v;
    v.t = J_UNDEF;
    v.u.name = name;
    return v;
}
static jv mk_none(void) {
    jv v;
    v.t = J_NONE;
    v.u.i = 0;
    return v;
}
static jv mk_missing(void) {
    jv v;
    v.t = J_MISSING;
    v.u.i = 0;
    return v;
}
static jv mk_bool(int b) {
    jv v;
    v.t = J_BOOL;
    v.u.b = b != 0;
    return v;
}
static jv mk_int(int64_t i) {
    jv v;
    v.t = J_INT;
    v.u.i = i;
    return v;
}
static jv mk_float(double f) {
    jv v;
    v.t = J_FLOAT;
    v.u.f = f;
    return v;
}
static jv mk_strv(const jstr *s) {
    jv v;
    v.t = J_STR;
    v.u.s = s;
    return v;
}
static jv mk_listv(jlist *l) {
    jv v;
    v.t = J_LIST;
    v.u.l = l;
    return v;
}
static jv mk_dictv(jdict *d, int t) {
    jv v;
    v.t = t;
    v.u.d = d;
    return v;
}

static const jstr *jstr_new(jx *x, const char *s, size_t n) {
    if (n > x->max_str) jx_fail(x, "string too long (limit %zu bytes)", x->max_str);
    jstr *r = jx_alloc(x, sizeof(jstr) + n + 1);
    r->len = n;
    if (n) memcpy(r->s, s, n);
    r->s[n] = 0;
    return r;
}

static jv mk_str(jx *x, const char *s, size_t n) {
    return mk_strv(jstr_new(x, s, n));
}
static jv mk_strz(jx *x, const char *s) {
    return mk_str(x, s, strlen(s));
}

static jlist *list_new(jx *x, size_t cap) {
    jlist *l = jx_zalloc(x, sizeof *l);
    if (cap) {
        l->v = jx_alloc(x, cap * sizeof(jv));
        l->cap = cap;
    }
    return l;
}

static void list_push(jx *x, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jv *nv = jx_alloc(x, nc * sizeof(jv));
        if (l->n) memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = v;
}

static jdict *dict_new(jx *x) {
    return jx_zalloc(x, sizeof(jdict));
}

/* ------------------------------------------------------------------------ */
/* String builder (arena backed)                                            */

typedef struct jbuf {
    char *p;
    size_t n, cap;
} jbuf;

static void jb_reserve(jx *x, jbuf *b, size_t extra) {
    if (extra > x->max_str || b->n + extra > x->max_str)
        jx_fail(x, "output too large (limit %zu bytes)", x->max_str);
    if (b->n + extra + 1 <= b->cap) return;
    size_t nc = b->cap ? b->cap * 2 : 64;
    while (nc < b->n + extra + 1) nc *= 2;
    char *np = jx_alloc(x, nc);
    if (b->n) memcpy(np, b->p, b->n);
    b->p = np;
    b->cap = nc;
}

static void jb_put(jx *x, jbuf *b, const char *s, size_t n) {
    if (!n) return;
    jb_reserve(x, b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void jb_puts(jx *x, jbuf *b, const char *s) {
    jb_put(x, b, s, strlen(s));
}
static void jb_putc(jx *x, jbuf *b, char c) {
    jb_put(x, b, &c, 1);
}

static void jb_printf(jx *x, jbuf *b, const char *fmt, ...) BEAST_PRINTF(3, 4);
static void jb_printf(jx *x, jbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) jb_put(x, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static jv jb_value(jx *x, jbuf *b) {
    return mk_str(x, b->p ? b->p : "", b->n);
}

/* ------------------------------------------------------------------------ */
/* UTF-8 and Python character classes                                       */

/* Decode one code point; an invalid byte decodes as 0xDC00+byte with length
 * 1 (like Python's surrogateescape), so every byte sequence round-trips. */
static uint32_t u8_dec(const char *s, size_t n, size_t *adv) {
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c = p[0];
    if (c < 0x80) {
        *adv = 1;
        return c;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (c > 0xF4 || len == 0 || (size_t)len > n) goto bad;
    uint32_t cp = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) goto bad;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) goto bad;
    if (cp >= 0xD800 && cp <= 0xDFFF) goto bad;
    *adv = (size_t)len;
    return cp;
bad:
    *adv = 1;
    return 0xDC00 | c;
}

static int u8_enc(uint32_t cp, char *o) {
    if (cp >= 0xDC80 && cp <= 0xDCFF) { /* an escaped raw byte */
        o[0] = (char)(cp & 0xFF);
        return 1;
    }
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static void jb_putcp(jx *x, jbuf *b, uint32_t cp) {
    char t[4];
    jb_put(x, b, t, (size_t)u8_enc(cp, t));
}

/* The code point that ends at `end` (not before `start`): its first byte,
 * and the code point in *cp. Consistent with forward decoding by u8_dec: a
 * valid sequence is found from its lead byte; anything else is one raw byte. */
static size_t u8_prev(const char *s, size_t start, size_t end, uint32_t *cp) {
    size_t lim = end - start < 4 ? end - start : 4;
    for (size_t back = 1; back <= lim; back++) {
        size_t st = end - back;
        if (((unsigned char)s[st] & 0xC0) != 0x80) {
            size_t adv;
            uint32_t v = u8_dec(s + st, end - st, &adv);
            if (st + adv == end) {
                *cp = v;
                return st;
            }
            break;
        }
    }
    *cp = 0xDC00 | (unsigned char)s[end - 1];
    return end - 1;
}

/* Number of code points. */
static size_t u8_len(const char *s, size_t n) {
    size_t k = 0, i = 0, a;
    while (i < n) {
        u8_dec(s + i, n - i, &a);
        i += a;
        k++;
    }
    return k;
}

/* Python's str.isspace(). */
static int py_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static int cp_valid(uint32_t c) {
    return c < 0xD800 || (c > 0xDFFF && c <= 0x10FFFF);
}

static int py_isprintable(uint32_t c) {
    if (c == ' ') return 1;
    if (!cp_valid(c)) return 0;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
        return 0;
    default:
        return 1;
    }
}

static int cp_cat(uint32_t c) {
    return cp_valid(c) ? utf8proc_category((utf8proc_int32_t)c) : 0;
}
static int py_iscased(uint32_t c) {
    int k = cp_cat(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
static int py_isalpha(uint32_t c) {
    int k = cp_cat(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static int py_isdigit(uint32_t c) {
    return cp_cat(c) == UTF8PROC_CATEGORY_ND;
}
static int py_isalnum(uint32_t c) {
    int k = cp_cat(c);
    return py_isalpha(c) || k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
           k == UTF8PROC_CATEGORY_NO;
}

/* Case mapping of one code point into b; `mode` 'u' upper, 'l' lower, 't'
 * title. A few multi-character mappings of Python's full case mapping are
 * special-cased; the rest use utf8proc's simple mappings. */
static void jb_case(jx *x, jbuf *b, uint32_t c, int mode) {
    if (!cp_valid(c)) {
        jb_putcp(x, b, c);
        return;
    }
    if (c == 0xDF && mode != 'l') { /* sharp s */
        jb_puts(x, b, mode == 'u' ? "SS" : "Ss");
        return;
    }
    if (c == 0x130 && mode == 'l') { /* capital I with dot above */
        jb_puts(x, b, "i\xcc\x87");
        return;
    }
    utf8proc_int32_t m = mode == 'u'   ? utf8proc_toupper((utf8proc_int32_t)c)
                         : mode == 'l' ? utf8proc_tolower((utf8proc_int32_t)c)
                                       : utf8proc_totitle((utf8proc_int32_t)c);
    jb_putcp(x, b, (uint32_t)m);
}

/* ------------------------------------------------------------------------ */
/* Lexer                                                                    */

enum {
    TK_EOF,
    TK_DATA,
    TK_VBEGIN,
    TK_VEND,
    TK_BBEGIN,
    TK_BEND,
    TK_NAME,
    TK_STR,
    TK_INT,
    TK_FLOAT,
    TK_OP
};

enum {
    OP_NONE,
    OP_ADD,
    OP_SUB,
    OP_DIV,
    OP_FLOORDIV,
    OP_MUL,
    OP_MOD,
    OP_POW,
    OP_TILDE,
    OP_LBRACKET,
    OP_RBRACKET,
    OP_LPAREN,
    OP_RPAREN,
    OP_LBRACE,
    OP_RBRACE,
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTEQ,
    OP_LT,
    OP_LTEQ,
    OP_ASSIGN,
    OP_DOT,
    OP_COLON,
    OP_PIPE,
    OP_COMMA,
    OP_SEMICOLON,
    /* not lexer tokens: compare operators and boolean ops */
    OP_IN,
    OP_NOTIN,
    OP_AND,
    OP_OR
};

static const struct {
    const char *s;
    int op;
} OPS[] = {
    {"**", OP_POW},     {"//", OP_FLOORDIV}, {"==", OP_EQ},    {"!=", OP_NE},
    {">=", OP_GTEQ},    {"<=", OP_LTEQ},     {"+", OP_ADD},    {"-", OP_SUB},
    {"/", OP_DIV},      {"*", OP_MUL},       {"%", OP_MOD},    {"~", OP_TILDE},
    {"[", OP_LBRACKET}, {"]", OP_RBRACKET},  {"(", OP_LPAREN}, {")", OP_RPAREN},
    {"{", OP_LBRACE},   {"}", OP_RBRACE},    {">", OP_GT},     {"<", OP_LT},
    {"=", OP_ASSIGN},   {".", OP_DOT},       {":", OP_COLON},  {"|", OP_PIPE},
    {",", OP_COMMA},    {";", OP_SEMICOLON},
};

static const char *op_text(int op) {
    for (size_t i = 0; i < ARRAY_LEN(OPS); i++)
        if (OPS[i].op == op) return OPS[i].s;
    return "?";
}

typedef struct tok {
    int type, line, op;
    const jstr *s; /* DATA, NAME, STR */
    int64_t i;
    double f;
} tok;

typedef struct lexer {
    jx *x;
    const jinja_options *o;
    const char *src;
    size_t n, pos;
    int line;
    tok *toks;
    size_t ntok, cap;
} lexer;

static tok *lx_push(lexer *L, int type, int line) {
    if (L->ntok == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 256;
        tok *nt = jx_alloc(L->x, nc * sizeof(tok));
        if (L->ntok) memcpy(nt, L->toks, L->ntok * sizeof(tok));
        L->toks = nt;
        L->cap = nc;
    }
    tok *t = &L->toks[L->ntok++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = line;
    return t;
}

static int count_nl(const char *s, size_t a, size_t b) {
    int k = 0;
    for (size_t i = a; i < b; i++) k += s[i] == '\n';
    return k;
}

/* Length of the Python whitespace run at s[i..n). */
static size_t ws_run(const char *s, size_t i, size_t n) {
    size_t j = i, a;
    while (j < n) {
        uint32_t c = u8_dec(s + j, n - j, &a);
        if (!py_isspace(c)) break;
        j += a;
    }
    return j - i;
}

/* End of s[a..b) with trailing Python whitespace removed. */
static size_t rstrip_end(const char *s, size_t a, size_t b) {
    while (b > a) {
        uint32_t c;
        size_t st = u8_prev(s, a, b, &c);
        if (!py_isspace(c)) break;
        b = st;
    }
    return b;
}

static int starts(const lexer *L, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i + k <= L->n && memcmp(L->src + i, lit, k) == 0;
}

/* Emit template data src[a..b) (possibly empty: then nothing). */
static void lx_data(lexer *L, size_t a, size_t b, int line) {
    if (b <= a) return;
    tok *t = lx_push(L, TK_DATA, line);
    t->s = jstr_new(L->x, L->src + a, b - a);
}

/* The whitespace control applied to the text before a tag: `-` strips all
 * trailing whitespace; otherwise lstrip_blocks removes spaces that are
 * alone on the tag's line (block and comment tags only). Returns the new
 * end of the text. */
static size_t lx_strip_before(lexer *L, size_t a, size_t b, char sign, int is_var,
                              int line_starting) {
    if (sign == '-') return rstrip_end(L->src, a, b);
    if (sign != '+' && L->o->lstrip_blocks && !is_var) {
        size_t lp = a;
        for (size_t i = b; i > a; i--)
            if (L->src[i - 1] == '\n') {
                lp = i;
                break;
            }
        if ((lp > a || line_starting) && lp < b && ws_run(L->src, lp, b) == b - lp) return lp;
    }
    return b;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode a string literal body the way Python's unicode-escape codec does. */
static const jstr *lx_unescape(lexer *L, const char *s, size_t n) {
    jbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\' || i + 1 >= n) {
            jb_putc(L->x, &b, c);
            continue;
        }
        char e = s[++i];
        switch (e) {
        case '\n':
            break;
        case '\\':
            jb_putc(L->x, &b, '\\');
            break;
        case '\'':
            jb_putc(L->x, &b, '\'');
            break;
        case '"':
            jb_putc(L->x, &b, '"');
            break;
        case 'a':
            jb_putc(L->x, &b, 7);
            break;
        case 'b':
            jb_putc(L->x, &b, 8);
            break;
        case 'f':
            jb_putc(L->x, &b, 12);
            break;
        case 'n':
            jb_putc(L->x, &b, '\n');
            break;
        case 'r':
            jb_putc(L->x, &b, '\r');
            break;
        case 't':
            jb_putc(L->x, &b, '\t');
            break;
        case 'v':
            jb_putc(L->x, &b, 11);
            break;
        case 'x':
        case 'u':
        case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < nd; k++) {
                int h = i + 1 + (size_t)k < n ? hexval((unsigned char)s[i + 1 + k]) : -1;
                if (h < 0) jx_fail(L->x, "truncated \\%cXX escape in string literal", e);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF) jx_fail(L->x, "illegal Unicode character in string literal");
            i += (size_t)nd;
            jb_putcp(L->x, &b, cp);
            break;
        }
        case 'N':
            jx_fail(L->x, "\\N{...} escapes are not supported");
            break;
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(s[++i] - '0');
                jb_putcp(L->x, &b, cp);
            } else {
                jb_putc(L->x, &b, '\\');
                jb_putc(L->x, &b, e);
            }
        }
    }
    return jstr_new(L->x, b.p ? b.p : "", b.n);
}

static int is_dig(char c) {
    return c >= '0' && c <= '9';
}

/* Match `(\d+_)*\d+` at i; returns the end or i if none. */
static size_t digits_us(const lexer *L, size_t i) {
    size_t j = i;
    if (j >= L->n || !is_dig(L->src[j])) return i;
    while (j < L->n) {
        while (j < L->n && is_dig(L->src[j])) j++;
        if (j + 1 < L->n && L->src[j] == '_' && is_dig(L->src[j + 1])) {
            j++;
            continue;
        }
        break;
    }
    return j;
}

static void lx_number(lexer *L) {
    const char *s = L->src;
    size_t i = L->pos, n = L->n;
    /* float: digits ((. digits)? e[+-]?digits | . digits), not right after a '.' */
    if (!(i > 0 && s[i - 1] == '.')) {
        size_t a = digits_us(L, i), e = 0;
        if (a > i) {
            size_t f = a;
            if (f < n && s[f] == '.') {
                size_t g = digits_us(L, f + 1);
                if (g > f + 1) f = g;
            }
            if (f < n && (s[f] == 'e' || s[f] == 'E')) {
                size_t g = f + 1;
                if (g < n && (s[g] == '+' || s[g] == '-')) g++;
                size_t h = digits_us(L, g);
                if (h > g) e = h;
            }
            if (!e && f > a) e = f; /* required fraction, no exponent */
        }
        if (e) {
            char tmp[128];
            size_t k = 0;
            for (size_t j = i; j < e && k < sizeof tmp - 1; j++)
                if (s[j] != '_') tmp[k++] = s[j];
            tmp[k] = 0;
            tok *t = lx_push(L, TK_FLOAT, L->line);
            t->f = strtod(tmp, NULL);
            L->pos = e;
            return;
        }
    }
    /* integer: 0b / 0o / 0x prefixes, [1-9](_?\d)*, 0(_?0)* */
    int base = 10;
    size_t j = i;
    if (s[i] == '0' && i + 1 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        char p = (char)(s[i + 1] | 0x20);
        base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
        j = i + 2;
    }
    uint64_t v = 0;
    int nd = 0, overflow = 0;
    if (base != 10) {
        while (j < n) {
            size_t k = j;
            if (s[k] == '_') k++;
            int h = k < n ? hexval((unsigned char)s[k]) : -1;
            if (h < 0 || h >= base) break;
            if (v > (UINT64_MAX - (uint64_t)h) / (uint64_t)base) overflow = 1;
            v = v * (uint64_t)base + (uint64_t)h;
            nd++;
            j = k + 1;
        }
        if (!nd) { /* just "0", the prefix letter lexes as a name */
            base = 10;
            j = i;
        }
    }
    if (base == 10) {
        if (s[i] == '0') {
            j = i + 1;
            while (j < n && (s[j] == '0' || (s[j] == '_' && j + 1 < n && s[j + 1] == '0')))
                j += s[j] == '_' ? 2 : 1;
            v = 0;
        } else {
            j = i;
            v = 0;
            while (j < n) {
                size_t k = j;
                if (s[k] == '_' && k > i) k++;
                if (k >= n || !is_dig(s[k])) break;
                uint64_t d = (uint64_t)(s[k] - '0');
                if (v > (UINT64_MAX - d) / 10) overflow = 1;
                v = v * 10 + d;
                j = k + 1;
            }
        }
    }
    if (overflow || v > (uint64_t)INT64_MAX) jx_fail(L->x, "integer literal too large");
    tok *t = lx_push(L, TK_INT, L->line);
    t->i = (int64_t)v;
    L->pos = j;
}

/* Lex the inside of a {{ }} or {% %} tag up to and including its end. */
static int lx_tag(lexer *L, int is_block) {
    char bal[MAX_PARSE_DEPTH];
    int nbal = 0;
    const char *s = L->src;
    for (;;) {
        L->x->line = L->line;
        if (L->pos >= L->n) jx_fail(L->x, "unexpected end of template inside a tag");
        size_t i = L->pos;
        if (nbal == 0) {
            const char *end = is_block ? "%}" : "}}";
            size_t e = 0;
            int ws = 0;
            if (is_block && s[i] == '+' && starts(L, i + 1, end))
                e = i + 3;
            else if (s[i] == '-' && starts(L, i + 1, end)) {
                e = i + 3;
                ws = 1;
            } else if (starts(L, i, end)) {
                e = i + 2;
                if (is_block && L->o->trim_blocks && e < L->n && s[e] == '\n') e++;
            }
            if (e) {
                if (ws) e += ws_run(s, e, L->n);
                lx_push(L, is_block ? TK_BEND : TK_VEND, L->line);
                L->line += count_nl(s, i, e);
                L->pos = e;
                return e > 0 && s[e - 1] == '\n';
            }
        }
        size_t a;
        uint32_t c = u8_dec(s + i, L->n - i, &a);
        if (py_isspace(c)) {
            size_t w = ws_run(s, i, L->n);
            L->line += count_nl(s, i, i + w);
            L->pos = i + w;
            continue;
        }
        if (is_dig(s[i])) {
            lx_number(L);
            continue;
        }
        if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_') {
            size_t j = i + 1;
            while (j < L->n && (is_dig(s[j]) || (s[j] >= 'a' && s[j] <= 'z') ||
                                (s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_'))
                j++;
            tok *t = lx_push(L, TK_NAME, L->line);
            t->s = jstr_new(L->x, s + i, j - i);
            L->pos = j;
            continue;
        }
        if (s[i] == '\'' || s[i] == '"') {
            char q = s[i];
            size_t j = i + 1;
            while (j < L->n && s[j] != q) j += (s[j] == '\\' && j + 1 < L->n) ? 2 : 1;
            if (j >= L->n)
                jx_fail(L->x, "unexpected char %s (unterminated string)",
                        q == '"' ? "'\"'" : "\"'\"");
            tok *t = lx_push(L, TK_STR, L->line);
            t->s = lx_unescape(L, s + i + 1, j - i - 1);
            L->line += count_nl(s, i, j);
            L->pos = j + 1;
            continue;
        }
        int op = 0;
        size_t ol = 0;
        for (size_t k = 0; k < ARRAY_LEN(OPS); k++)
            if (starts(L, i, OPS[k].s)) {
                op = OPS[k].op;
                ol = strlen(OPS[k].s);
                break;
            }
        if (!op) {
            if (c < 0x80 && c >= 0x20) jx_fail(L->x, "unexpected char '%c'", (char)c);
            jx_fail(L->x, "unexpected char U+%04X", (unsigned)c);
        }
        if (op == OP_LBRACE || op == OP_LPAREN || op == OP_LBRACKET) {
            if (nbal >= MAX_PARSE_DEPTH) jx_fail(L->x, "brackets nested too deeply");
            bal[nbal++] = op == OP_LBRACE ? '}' : op == OP_LPAREN ? ')' : ']';
        } else if (op == OP_RBRACE || op == OP_RPAREN || op == OP_RBRACKET) {
            char ch = s[i];
            if (!nbal) jx_fail(L->x, "unexpected '%c'", ch);
            char want = bal[--nbal];
            if (want != ch) jx_fail(L->x, "unexpected '%c', expected '%c'", ch, want);
        }
        tok *t = lx_push(L, TK_OP, L->line);
        t->op = op;
        L->pos = i + ol;
    }
}

/* Is there `{%[-+]?\s*NAME\s*` at i? Returns the end of that or 0. */
static size_t lx_tagname(const lexer *L, size_t i, const char *name, char *sign) {
    if (!starts(L, i, "{%")) return 0;
    i += 2;
    *sign = 0;
    if (i < L->n && (L->src[i] == '-' || L->src[i] == '+')) *sign = L->src[i++];
    i += ws_run(L->src, i, L->n);
    if (!starts(L, i, name)) return 0;
    i += strlen(name);
    return i + ws_run(L->src, i, L->n);
}

static void lex(lexer *L) {
    const char *s = L->src;
    int line_starting = 1;
    L->line = 1;
    while (L->pos < L->n) {
        size_t pos = L->pos, k = pos;
        while (k + 1 < L->n &&
               !(s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#')))
            k++;
        if (k + 1 >= L->n) {
            lx_data(L, pos, L->n, L->line);
            L->line += count_nl(s, pos, L->n);
            L->pos = L->n;
            break;
        }
        char kind = s[k + 1];
        char sign = (k + 2 < L->n && (s[k + 2] == '-' || s[k + 2] == '+')) ? s[k + 2] : 0;
        /* {% raw %} ... {% endraw %} */
        size_t raw_body = 0;
        if (kind == '%') {
            char sg;
            size_t r = lx_tagname(L, k, "raw", &sg);
            if (r) {
                if (starts(L, r, "-%}"))
                    raw_body = r + 3 + ws_run(s, r + 3, L->n);
                else if (starts(L, r, "%}"))
                    raw_body = r + 2;
            }
        }
        size_t text_end = lx_strip_before(L, pos, k, sign, kind == '{', line_starting);
        lx_data(L, pos, text_end, L->line);
        L->line += count_nl(s, pos, k);
        L->x->line = L->line;
        if (raw_body == L->n) { /* jinja's lexer stops quietly at the end of input */
            L->pos = L->n;
            break;
        }
        if (raw_body) {
            int body_line = L->line + count_nl(s, k, raw_body);
            int raw_ls = s[raw_body - 1] == '\n';
            size_t j = raw_body, tag_end = 0;
            char esign = 0;
            for (; j + 1 < L->n; j++) {
                if (s[j] != '{' || s[j + 1] != '%') continue;
                size_t r = lx_tagname(L, j, "endraw", &esign);
                if (!r) continue;
                if (starts(L, r, "+%}"))
                    tag_end = r + 3;
                else if (starts(L, r, "-%}"))
                    tag_end = r + 3 + ws_run(s, r + 3, L->n);
                else if (starts(L, r, "%}")) {
                    tag_end = r + 2;
                    if (L->o->trim_blocks && tag_end < L->n && s[tag_end] == '\n') tag_end++;
                }
                if (tag_end) break;
            }
            if (!tag_end) jx_fail(L->x, "Missing end of raw directive");
            size_t be = lx_strip_before(L, raw_body, j, esign, 0, raw_ls);
            lx_data(L, raw_body, be, body_line);
            L->line += count_nl(s, k, tag_end);
            L->pos = tag_end;
            line_starting = s[tag_end - 1] == '\n';
            continue;
        }
        size_t body = k + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t j = body, e = 0;
            if (body >= L->n) { /* "{#" at the very end: jinja's lexer stops quietly */
                L->pos = L->n;
                break;
            }
            for (; j < L->n; j++) {
                if (s[j] == '+' && starts(L, j + 1, "#}")) {
                    e = j + 3;
                    break;
                }
                if (s[j] == '-' && starts(L, j + 1, "#}")) {
                    e = j + 3 + ws_run(s, j + 3, L->n);
                    break;
                }
                if (starts(L, j, "#}")) {
                    e = j + 2;
                    if (L->o->trim_blocks && e < L->n && s[e] == '\n') e++;
                    break;
                }
            }
            if (!e) jx_fail(L->x, "Missing end of comment tag");
            L->line += count_nl(s, k, e);
            L->pos = e;
            line_starting = s[e - 1] == '\n';
            continue;
        }
        lx_push(L, kind == '{' ? TK_VBEGIN : TK_BBEGIN, L->line);
        L->pos = body;
        line_starting = lx_tag(L, kind == '%');
    }
    lx_push(L, TK_EOF, L->line);
}

/* ------------------------------------------------------------------------ */
/* AST                                                                      */

enum {
    /* expressions */
    E_CONST,  /* val */
    E_NAME,   /* name */
    E_LIST,   /* v: items; op=1 for a tuple */
    E_DICT,   /* v: keys, w: values */
    E_ATTR,   /* a.name */
    E_ITEM,   /* a[b] */
    E_SLICE,  /* a[b:c:d], any of b c d may be NULL */
    E_CALL,   /* a(v..., names=w..., *c, **d) */
    E_FILTER, /* a|name(v..., names=w..., *c, **d); a NULL = the filter block's input */
    E_TEST,   /* a is [not: op=1] name(v..., names=w..., *c, **d) */
    E_NEG,
    E_POS,
    E_NOT,
    E_BIN, /* a op b (arithmetic) */
    E_AND,
    E_OR,
    E_CONCAT, /* v[0] ~ v[1] ~ ... */
    E_CMP,    /* a ops[0] v[0] ops[1] v[1] ... */
    E_COND,   /* b if a else c */
    /* statements */
    S_BODY,        /* v: statements */
    S_DATA,        /* val: text */
    S_PRINT,       /* a */
    S_IF,          /* v: tests, w: bodies, c: else body */
    S_FOR,         /* names: targets (op=1 unpack), a: iterable, b: filter, c: body, d: else */
    S_SET,         /* names: targets (op=1 unpack), a: value */
    S_SETATTR,     /* name.names[0] = a */
    S_SETBLOCK,    /* name (or name.names[0] when nnames) = b(c rendered) */
    S_MACRO,       /* name(names = w defaults), c: body; op bits: uses varargs/kwargs */
    S_FILTERBLOCK, /* b: filter chain, c: body */
    S_WITH,        /* names = w, c: body */
    S_CALLBLOCK,   /* b(..., caller=<macro "caller"(names = w) with body c>) */
    S_BREAK,
    S_CONTINUE
};

#define MAC_VARARGS 1
#define MAC_KWARGS  2
#define MAC_CALLER  4

typedef struct jnode jnode;
struct jnode {
    int kind, line, op;
    const jstr *name;
    jv val;
    jnode *a, *b, *c, *d;
    jnode **v, **w;
    int nv, nw;
    const jstr **names;
    int nnames;
    int *ops;
    const void *def; /* resolved filter / test */
};

struct jinja_template {
    ablk *arena;
    jinja_options opt;
    jnode *root;
};

/* Builtin filter and test tables are defined with the evaluator. */
typedef struct fdef fdef;
typedef struct tdef tdef;
static const fdef *find_filter(const char *name);
static const tdef *find_test(const char *name);

/* ------------------------------------------------------------------------ */
/* Parser (follows the structure of jinja2's recursive-descent parser)      */

typedef struct P {
    jx *x;
    tok *t;
    size_t pos, ntok;
    int depth, loop_depth;
} P;

typedef struct nvec {
    jnode **v;
    int n, cap;
} nvec;

typedef struct svec {
    const jstr **v;
    int n, cap;
} svec;

static void nv_push(P *p, nvec *a, jnode *n) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 4;
        jnode **nn = jx_alloc(p->x, (size_t)nc * sizeof *nn);
        if (a->n) memcpy(nn, a->v, (size_t)a->n * sizeof *nn);
        a->v = nn;
        a->cap = nc;
    }
    a->v[a->n++] = n;
}

static void sv_push(P *p, svec *a, const jstr *s) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 4;
        const jstr **nn = jx_alloc(p->x, (size_t)nc * sizeof *nn);
        if (a->n) memcpy(nn, a->v, (size_t)a->n * sizeof *nn);
        a->v = nn;
        a->cap = nc;
    }
    a->v[a->n++] = s;
}

static tok *cur(P *p) {
    return &p->t[p->pos];
}
static tok *peek(P *p, size_t k) {
    return &p->t[p->pos + k < p->ntok ? p->pos + k : p->ntok - 1];
}
static tok *advance(P *p) {
    tok *t = cur(p);
    if (p->pos + 1 < p->ntok) p->pos++;
    p->x->line = cur(p)->line;
    return t;
}
static int is_op(const tok *t, int op) {
    return t->type == TK_OP && t->op == op;
}
static int is_name(const tok *t, const char *s) {
    return t->type == TK_NAME && !strcmp(t->s->s, s);
}

static const char *describe(const tok *t, char *buf, size_t n) {
    switch (t->type) {
    case TK_EOF:
        return "end of template";
    case TK_DATA:
        return "template data / text";
    case TK_VBEGIN:
        return "begin of print statement";
    case TK_VEND:
        return "end of print statement";
    case TK_BBEGIN:
        return "begin of statement block";
    case TK_BEND:
        return "end of statement block";
    case TK_NAME:
        snprintf(buf, n, "%s", t->s->s);
        return buf;
    case TK_STR:
        return "string";
    case TK_INT:
        return "integer";
    case TK_FLOAT:
        return "float";
    default:
        return op_text(t->op);
    }
}

static void p_fail_tok(P *p, const char *what) {
    char b[64];
    p->x->line = cur(p)->line;
    jx_fail(p->x, "expected %s, got '%s'", what, describe(cur(p), b, sizeof b));
}

static void expect_op(P *p, int op) {
    if (!is_op(cur(p), op)) {
        char w[32];
        snprintf(w, sizeof w, "token '%s'", op_text(op));
        p_fail_tok(p, w);
    }
    advance(p);
}

static void expect_type(P *p, int type) {
    static const char *const names[] = {"end of template",
                                        "template data",
                                        "begin of print statement",
                                        "end of print statement",
                                        "begin of statement block",
                                        "end of statement block",
                                        "name",
                                        "string",
                                        "integer",
                                        "float",
                                        "operator"};
    if (cur(p)->type != type) {
        char w[64];
        snprintf(w, sizeof w, "token '%s'", names[type]);
        p_fail_tok(p, w);
    }
    advance(p);
}

static const jstr *expect_name(P *p) {
    if (cur(p)->type != TK_NAME) p_fail_tok(p, "name");
    return advance(p)->s;
}

static void expect_kw(P *p, const char *kw) {
    if (!is_name(cur(p), kw)) {
        char w[48];
        snprintf(w, sizeof w, "token '%s'", kw);
        p_fail_tok(p, w);
    }
    advance(p);
}

static jnode *mk_node(P *p, int kind, int line) {
    jnode *n = jx_zalloc(p->x, sizeof *n);
    n->kind = kind;
    n->line = line;
    return n;
}

/* Count one level of AST depth: nesting, and also each link of a left-deep
 * operator chain (a + b + c, x|f|g, a.b.c), so that every recursive walk of
 * the tree is bounded. Callers restore p->depth when they return. */
static void p_enter(P *p) {
    if (++p->depth > MAX_PARSE_DEPTH) jx_fail(p->x, "template nested too deeply");
}

static jnode *parse_expression(P *p, int with_condexpr);
static jnode *parse_unary(P *p, int with_filter);
static jnode *parse_primary(P *p);
static jnode *parse_postfix(P *p, jnode *n);
static jnode *parse_filter(P *p, jnode *n, int start_inline);
static jnode *parse_body(P *p, const char *const *ends);

static int is_tuple_end(P *p, const char *extra) {
    tok *t = cur(p);
    if (t->type == TK_VEND || t->type == TK_BEND || is_op(t, OP_RPAREN)) return 1;
    return extra && is_name(t, extra);
}

/* mode 0: full expressions, 1: no inline if, 2: primaries only (targets) */
static jnode *parse_tuple(P *p, int mode, const char *extra, int explicit_parens) {
    int line = cur(p)->line, is_tuple = 0;
    nvec args = {0};
    for (;;) {
        if (args.n) expect_op(p, OP_COMMA);
        if (is_tuple_end(p, extra)) break;
        nv_push(p, &args, mode == 2 ? parse_primary(p) : parse_expression(p, mode == 0));
        if (is_op(cur(p), OP_COMMA))
            is_tuple = 1;
        else
            break;
    }
    if (!is_tuple) {
        if (args.n) return args.v[0];
        if (!explicit_parens) p_fail_tok(p, "an expression");
    }
    jnode *n = mk_node(p, E_LIST, line);
    n->op = 1;
    n->v = args.v;
    n->nv = args.n;
    return n;
}

static jnode *parse_or(P *p);

static jnode *parse_condexpr(P *p) {
    int d0 = p->depth;
    p_enter(p);
    jnode *e1 = parse_or(p);
    while (is_name(cur(p), "if")) {
        p_enter(p);
        int line = advance(p)->line;
        jnode *n = mk_node(p, E_COND, line);
        n->a = parse_or(p);
        n->b = e1;
        if (is_name(cur(p), "else")) {
            advance(p);
            n->c = parse_condexpr(p);
        }
        e1 = n;
    }
    p->depth = d0;
    return e1;
}

static jnode *parse_expression(P *p, int with_condexpr) {
    return with_condexpr ? parse_condexpr(p) : parse_or(p);
}

static jnode *parse_not(P *p);
static jnode *parse_and(P *p) {
    int d0 = p->depth;
    jnode *l = parse_not(p);
    while (is_name(cur(p), "and")) {
        p_enter(p);
        jnode *n = mk_node(p, E_AND, advance(p)->line);
        n->a = l;
        n->b = parse_not(p);
        l = n;
    }
    p->depth = d0;
    return l;
}

static jnode *parse_or(P *p) {
    int d0 = p->depth;
    jnode *l = parse_and(p);
    while (is_name(cur(p), "or")) {
        p_enter(p);
        jnode *n = mk_node(p, E_OR, advance(p)->line);
        n->a = l;
        n->b = parse_and(p);
        l = n;
    }
    p->depth = d0;
    return l;
}

static jnode *parse_math1(P *p);

static jnode *parse_compare(P *p) {
    int line = cur(p)->line;
    jnode *e = parse_math1(p);
    nvec operands = {0};
    int ops[64], nops = 0;
    for (;;) {
        tok *t = cur(p);
        int op = 0;
        if (t->type == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT ||
                                 t->op == OP_LTEQ || t->op == OP_GT || t->op == OP_GTEQ)) {
            op = t->op;
            advance(p);
        } else if (is_name(t, "in")) {
            op = OP_IN;
            advance(p);
        } else if (is_name(t, "not") && is_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            advance(p);
            advance(p);
        } else
            break;
        if (nops >= (int)ARRAY_LEN(ops)) jx_fail(p->x, "comparison chain too long");
        ops[nops++] = op;
        nv_push(p, &operands, parse_math1(p));
    }
    if (!nops) return e;
    jnode *n = mk_node(p, E_CMP, line);
    n->a = e;
    n->v = operands.v;
    n->nv = operands.n;
    n->ops = jx_alloc(p->x, (size_t)nops * sizeof(int));
    memcpy(n->ops, ops, (size_t)nops * sizeof(int));
    return n;
}

static jnode *parse_not(P *p) {
    if (is_name(cur(p), "not")) {
        jnode *n = mk_node(p, E_NOT, advance(p)->line);
        p_enter(p);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static jnode *bin(P *p, int op, int line, jnode *a, jnode *b) {
    jnode *n = mk_node(p, E_BIN, line);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_concat(P *p);
static jnode *parse_math1(P *p) {
    int d0 = p->depth;
    jnode *l = parse_concat(p);
    while (is_op(cur(p), OP_ADD) || is_op(cur(p), OP_SUB)) {
        p_enter(p);
        tok *t = advance(p);
        l = bin(p, t->op, t->line, l, parse_concat(p));
    }
    p->depth = d0;
    return l;
}

static jnode *parse_math2(P *p);
static jnode *parse_concat(P *p) {
    int line = cur(p)->line;
    jnode *first = parse_math2(p);
    if (!is_op(cur(p), OP_TILDE)) return first;
    nvec args = {0};
    nv_push(p, &args, first);
    while (is_op(cur(p), OP_TILDE)) {
        advance(p);
        nv_push(p, &args, parse_math2(p));
    }
    jnode *n = mk_node(p, E_CONCAT, line);
    n->v = args.v;
    n->nv = args.n;
    return n;
}

static jnode *parse_pow(P *p);
static jnode *parse_math2(P *p) {
    int d0 = p->depth;
    jnode *l = parse_pow(p);
    while (is_op(cur(p), OP_MUL) || is_op(cur(p), OP_DIV) || is_op(cur(p), OP_FLOORDIV) ||
           is_op(cur(p), OP_MOD)) {
        p_enter(p);
        tok *t = advance(p);
        l = bin(p, t->op, t->line, l, parse_pow(p));
    }
    p->depth = d0;
    return l;
}

static jnode *parse_pow(P *p) {
    int d0 = p->depth;
    jnode *l = parse_unary(p, 1);
    while (is_op(cur(p), OP_POW)) {
        p_enter(p);
        tok *t = advance(p);
        l = bin(p, OP_POW, t->line, l, parse_unary(p, 1));
    }
    p->depth = d0;
    return l;
}

static void parse_call_args(P *p, jnode *n) {
    int line = cur(p)->line;
    expect_op(p, OP_LPAREN);
    nvec args = {0}, kwv = {0};
    svec kwn = {0};
    jnode *dyn_args = NULL, *dyn_kwargs = NULL;
    int require_comma = 0, bad = 0;
    while (!is_op(cur(p), OP_RPAREN)) {
        if (require_comma) {
            expect_op(p, OP_COMMA);
            if (is_op(cur(p), OP_RPAREN)) break;
        }
        if (is_op(cur(p), OP_MUL)) {
            bad |= dyn_args || dyn_kwargs;
            advance(p);
            dyn_args = parse_expression(p, 1);
        } else if (is_op(cur(p), OP_POW)) {
            bad |= dyn_kwargs != NULL;
            advance(p);
            dyn_kwargs = parse_expression(p, 1);
        } else if (cur(p)->type == TK_NAME && is_op(peek(p, 1), OP_ASSIGN)) {
            bad |= dyn_kwargs != NULL;
            sv_push(p, &kwn, advance(p)->s);
            advance(p);
            nv_push(p, &kwv, parse_expression(p, 1));
        } else {
            bad |= dyn_args || dyn_kwargs || kwn.n;
            nv_push(p, &args, parse_expression(p, 1));
        }
        if (bad) {
            p->x->line = line;
            jx_fail(p->x, "invalid syntax for function call expression");
        }
        require_comma = 1;
    }
    expect_op(p, OP_RPAREN);
    n->v = args.v;
    n->nv = args.n;
    n->w = kwv.v;
    n->nw = kwv.n;
    n->names = kwn.v;
    n->nnames = kwn.n;
    n->c = dyn_args;
    n->d = dyn_kwargs;
}

static const jstr *dotted_name(P *p) {
    const jstr *name = expect_name(p);
    while (is_op(cur(p), OP_DOT)) {
        advance(p);
        const jstr *more = expect_name(p);
        char buf[256];
        snprintf(buf, sizeof buf, "%s.%s", name->s, more->s);
        name = jstr_new(p->x, buf, strlen(buf));
    }
    return name;
}

static jnode *parse_filter(P *p, jnode *n, int start_inline) {
    int d0 = p->depth;
    while (is_op(cur(p), OP_PIPE) || start_inline) {
        p_enter(p);
        if (!start_inline) advance(p);
        int line = cur(p)->line;
        const jstr *name = dotted_name(p);
        jnode *f = mk_node(p, E_FILTER, line);
        f->a = n;
        f->name = name;
        f->def = find_filter(name->s); /* unknown: checked by validate() */
        if (is_op(cur(p), OP_LPAREN)) parse_call_args(p, f);
        n = f;
        start_inline = 0;
    }
    p->depth = d0;
    return n;
}

static jnode *parse_test(P *p, jnode *n) {
    int line = advance(p)->line; /* 'is' */
    int negated = 0;
    if (is_name(cur(p), "not")) {
        advance(p);
        negated = 1;
    }
    const jstr *name = dotted_name(p);
    jnode *t = mk_node(p, E_TEST, line);
    t->a = n;
    t->name = name;
    t->op = negated;
    t->def = find_test(name->s); /* unknown: checked by validate() */
    tok *c = cur(p);
    if (is_op(c, OP_LPAREN)) {
        parse_call_args(p, t);
    } else if ((c->type == TK_NAME || c->type == TK_STR || c->type == TK_INT ||
                c->type == TK_FLOAT || is_op(c, OP_LPAREN) || is_op(c, OP_LBRACKET) ||
                is_op(c, OP_LBRACE)) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) jx_fail(p->x, "You cannot chain multiple tests with is");
        jnode *arg = parse_postfix(p, parse_primary(p));
        t->v = jx_alloc(p->x, sizeof(jnode *));
        t->v[0] = arg;
        t->nv = 1;
    }
    return t;
}

static jnode *parse_filter_expr(P *p, jnode *n) {
    int d0 = p->depth;
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, OP_PIPE) || is_name(t, "is") || is_op(t, OP_LPAREN)) p_enter(p);
        if (is_op(t, OP_PIPE))
            n = parse_filter(p, n, 0);
        else if (is_name(t, "is"))
            n = parse_test(p, n);
        else if (is_op(t, OP_LPAREN)) {
            jnode *c = mk_node(p, E_CALL, t->line);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else
            break;
    }
    p->depth = d0;
    return n;
}

static jnode *parse_unary(P *p, int with_filter) {
    tok *t = cur(p);
    jnode *n;
    if (is_op(t, OP_SUB) || is_op(t, OP_ADD)) {
        advance(p);
        n = mk_node(p, t->op == OP_SUB ? E_NEG : E_POS, t->line);
        p_enter(p);
        n->a = parse_unary(p, 0);
        p->depth--;
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    return n;
}

static jnode *parse_subscribed(P *p) {
    int line = cur(p)->line;
    jnode *args[3] = {0};
    if (is_op(cur(p), OP_COLON)) {
        advance(p);
    } else {
        jnode *e = parse_expression(p, 1);
        if (!is_op(cur(p), OP_COLON)) return e;
        advance(p);
        args[0] = e;
    }
    if (!is_op(cur(p), OP_COLON) && !is_op(cur(p), OP_RBRACKET) && !is_op(cur(p), OP_COMMA))
        args[1] = parse_expression(p, 1);
    if (is_op(cur(p), OP_COLON)) {
        advance(p);
        if (!is_op(cur(p), OP_RBRACKET) && !is_op(cur(p), OP_COMMA))
            args[2] = parse_expression(p, 1);
    }
    jnode *n = mk_node(p, E_SLICE, line);
    n->b = args[0];
    n->c = args[1];
    n->d = args[2];
    return n;
}

static jnode *parse_postfix(P *p, jnode *n) {
    int d0 = p->depth;
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, OP_DOT) || is_op(t, OP_LBRACKET) || is_op(t, OP_LPAREN)) p_enter(p);
        if (is_op(t, OP_DOT)) {
            advance(p);
            tok *a = cur(p);
            if (a->type == TK_NAME) {
                advance(p);
                jnode *g = mk_node(p, E_ATTR, t->line);
                g->a = n;
                g->name = a->s;
                n = g;
            } else if (a->type == TK_INT) {
                advance(p);
                jnode *k = mk_node(p, E_CONST, a->line);
                k->val = mk_int(a->i);
                jnode *g = mk_node(p, E_ITEM, t->line);
                g->a = n;
                g->b = k;
                n = g;
            } else {
                jx_fail(p->x, "expected name or number");
            }
        } else if (is_op(t, OP_LBRACKET)) {
            advance(p);
            p_enter(p);
            nvec args = {0};
            while (!is_op(cur(p), OP_RBRACKET)) {
                if (args.n) expect_op(p, OP_COMMA);
                nv_push(p, &args, parse_subscribed(p));
            }
            expect_op(p, OP_RBRACKET);
            p->depth--;
            if (args.n == 0) jx_fail(p->x, "expected an expression, got ']'");
            jnode *key;
            if (args.n == 1) {
                key = args.v[0];
            } else {
                for (int i = 0; i < args.n; i++) /* jinja2 compiles this to invalid Python */
                    if (args.v[i]->kind == E_SLICE)
                        jx_fail(p->x, "invalid syntax (slice in a tuple)");
                key = mk_node(p, E_LIST, t->line);
                key->op = 1;
                key->v = args.v;
                key->nv = args.n;
            }
            if (key->kind == E_SLICE) {
                key->a = n;
                n = key;
            } else {
                jnode *g = mk_node(p, E_ITEM, t->line);
                g->a = n;
                g->b = key;
                n = g;
            }
        } else if (is_op(t, OP_LPAREN)) {
            jnode *c = mk_node(p, E_CALL, t->line);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else {
            break;
        }
    }
    p->depth = d0;
    return n;
}

static jnode *parse_primary(P *p) {
    tok *t = cur(p);
    jnode *n;
    char b[64];
    switch (t->type) {
    case TK_NAME:
        advance(p);
        n = mk_node(p, E_CONST, t->line);
        if (!strcmp(t->s->s, "true") || !strcmp(t->s->s, "True"))
            n->val = mk_bool(1);
        else if (!strcmp(t->s->s, "false") || !strcmp(t->s->s, "False"))
            n->val = mk_bool(0);
        else if (!strcmp(t->s->s, "none") || !strcmp(t->s->s, "None"))
            n->val = mk_none();
        else {
            n->kind = E_NAME;
            n->name = t->s;
        }
        return n;
    case TK_STR: {
        advance(p);
        n = mk_node(p, E_CONST, t->line);
        if (cur(p)->type != TK_STR) {
            n->val = mk_strv(t->s);
            return n;
        }
        jbuf sb = {0};
        jb_put(p->x, &sb, t->s->s, t->s->len);
        while (cur(p)->type == TK_STR) {
            tok *u = advance(p);
            jb_put(p->x, &sb, u->s->s, u->s->len);
        }
        n->val = jb_value(p->x, &sb);
        return n;
    }
    case TK_INT:
    case TK_FLOAT:
        advance(p);
        n = mk_node(p, E_CONST, t->line);
        n->val = t->type == TK_INT ? mk_int(t->i) : mk_float(t->f);
        return n;
    case TK_OP:
        if (t->op == OP_LPAREN) {
            advance(p);
            p_enter(p);
            n = parse_tuple(p, 0, NULL, 1);
            p->depth--;
            expect_op(p, OP_RPAREN);
            return n;
        }
        if (t->op == OP_LBRACKET || t->op == OP_LBRACE) {
            int dict = t->op == OP_LBRACE, close = dict ? OP_RBRACE : OP_RBRACKET;
            advance(p);
            p_enter(p);
            nvec items = {0}, vals = {0};
            while (!is_op(cur(p), close)) {
                if (items.n) expect_op(p, OP_COMMA);
                if (is_op(cur(p), close)) break;
                nv_push(p, &items, parse_expression(p, 1));
                if (dict) {
                    expect_op(p, OP_COLON);
                    nv_push(p, &vals, parse_expression(p, 1));
                }
            }
            expect_op(p, close);
            p->depth--;
            n = mk_node(p, dict ? E_DICT : E_LIST, t->line);
            n->v = items.v;
            n->nv = items.n;
            n->w = vals.v;
            n->nw = vals.n;
            return n;
        }
        break;
    default:
        break;
    }
    p->x->line = t->line;
    jx_fail(p->x, "unexpected '%s'", describe(t, b, sizeof b));
    return NULL;
}

/* ---- statements ---- */

static int name_in(const tok *t, const char *const *names) {
    if (t->type != TK_NAME) return 0;
    for (; *names; names++)
        if (!strcmp(t->s->s, *names)) return 1;
    return 0;
}

/* Optional ':' then the end of the block tag. */
static void block_end(P *p) {
    if (is_op(cur(p), OP_COLON)) advance(p);
    expect_type(p, TK_BEND);
}

/* Assignment targets: a name or a tuple of names. */
static void parse_targets(P *p, const char *extra, svec *out, int *unpack) {
    int line = cur(p)->line;
    jnode *t = parse_tuple(p, 2, extra, 0);
    *unpack = 0;
    if (t->kind == E_NAME) {
        sv_push(p, out, t->name);
        return;
    }
    if (t->kind == E_LIST && t->op == 1) {
        *unpack = 1;
        for (int i = 0; i < t->nv; i++) {
            if (t->v[i]->kind != E_NAME) {
                p->x->line = line;
                jx_fail(p->x, "can't assign to this target");
            }
            sv_push(p, out, t->v[i]->name);
        }
        return;
    }
    p->x->line = line;
    jx_fail(p->x, "can't assign to '%s'", t->kind == E_CONST ? "const" : "expression");
}

static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_FOR2[] = {"endfor", NULL};
static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_IF2[] = {"endif", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};
static const char *const END_WITH[] = {"endwith", NULL};
static const char *const END_GEN[] = {"endgeneration", NULL};

static jnode *parse_for(P *p, int line) {
    jnode *n = mk_node(p, S_FOR, line);
    svec tg = {0};
    parse_targets(p, "in", &tg, &n->op);
    n->names = tg.v;
    n->nnames = tg.n;
    expect_kw(p, "in");
    n->a = parse_tuple(p, 1, "recursive", 0);
    if (is_name(cur(p), "if")) {
        advance(p);
        n->b = parse_expression(p, 1);
    }
    if (is_name(cur(p), "recursive")) jx_fail(p->x, "recursive for-loops are not supported");
    block_end(p);
    p->loop_depth++;
    n->c = parse_body(p, END_FOR);
    p->loop_depth--;
    if (is_name(cur(p), "else")) {
        advance(p);
        block_end(p);
        n->d = parse_body(p, END_FOR2);
    }
    advance(p); /* endfor */
    return n;
}

static jnode *parse_if(P *p, int line) {
    jnode *n = mk_node(p, S_IF, line);
    nvec tests = {0}, bodies = {0};
    for (;;) {
        nv_push(p, &tests, parse_tuple(p, 1, NULL, 0));
        block_end(p);
        nv_push(p, &bodies, parse_body(p, END_IF));
        tok *t = advance(p);
        if (is_name(t, "elif")) continue;
        if (is_name(t, "else")) {
            block_end(p);
            n->c = parse_body(p, END_IF2);
            advance(p);
        }
        break;
    }
    n->v = tests.v;
    n->nv = tests.n;
    n->w = bodies.v;
    n->nw = bodies.n;
    return n;
}

static jnode *parse_set(P *p, int line) {
    jnode *n = mk_node(p, S_SET, line);
    svec tg = {0};
    if (cur(p)->type == TK_NAME && is_op(peek(p, 1), OP_DOT)) {
        n->kind = S_SETATTR;
        n->name = advance(p)->s;
        advance(p);
        sv_push(p, &tg, expect_name(p));
    } else {
        parse_targets(p, NULL, &tg, &n->op);
    }
    n->names = tg.v;
    n->nnames = tg.n;
    if (is_op(cur(p), OP_ASSIGN)) {
        advance(p);
        n->a = parse_tuple(p, 0, NULL, 0);
        return n;
    }
    if (n->op) jx_fail(p->x, "a block set needs a single target");
    if (n->kind == S_SETATTR) {
        n->kind = S_SETBLOCK; /* name.names[0] */
    } else {
        n->kind = S_SETBLOCK;
        n->name = tg.v[0];
        n->nnames = 0;
    }
    n->b = parse_filter(p, NULL, 0);
    block_end(p);
    int ld = p->loop_depth;
    p->loop_depth = 0;
    n->c = parse_body(p, END_SET);
    p->loop_depth = ld;
    advance(p);
    return n;
}

static int ast_uses(const jnode *n, const char *name) {
    if (!n) return 0;
    if (n->kind == E_NAME && !strcmp(n->name->s, name)) return 1;
    if (ast_uses(n->a, name) || ast_uses(n->b, name) || ast_uses(n->c, name) ||
        ast_uses(n->d, name))
        return 1;
    for (int i = 0; i < n->nv; i++)
        if (ast_uses(n->v[i], name)) return 1;
    for (int i = 0; i < n->nw; i++)
        if (ast_uses(n->w[i], name)) return 1;
    return 0;
}

/* "(a, b=default, ...)" into n->names / n->w. */
static void parse_signature(P *p, jnode *n) {
    expect_op(p, OP_LPAREN);
    svec params = {0};
    nvec defs = {0};
    int have_default = 0;
    while (!is_op(cur(p), OP_RPAREN)) {
        if (params.n) expect_op(p, OP_COMMA);
        sv_push(p, &params, expect_name(p));
        if (is_op(cur(p), OP_ASSIGN)) {
            advance(p);
            nv_push(p, &defs, parse_expression(p, 1));
            have_default = 1;
        } else {
            if (have_default) jx_fail(p->x, "non-default argument follows default argument");
            nv_push(p, &defs, NULL);
        }
    }
    expect_op(p, OP_RPAREN);
    n->names = params.v;
    n->nnames = params.n;
    n->w = defs.v;
    n->nw = defs.n;
}

/* The body of a macro or call block, up to and including the end tag. */
static void parse_macro_body(P *p, jnode *n, const char *const *ends) {
    block_end(p);
    int ld = p->loop_depth;
    p->loop_depth = 0;
    n->c = parse_body(p, ends);
    p->loop_depth = ld;
    advance(p);
    if (ast_uses(n->c, "varargs")) n->op |= MAC_VARARGS;
    if (ast_uses(n->c, "kwargs")) n->op |= MAC_KWARGS;
    if (ast_uses(n->c, "caller")) n->op |= MAC_CALLER;
}

static jnode *parse_macro(P *p, int line) {
    jnode *n = mk_node(p, S_MACRO, line);
    n->name = expect_name(p);
    parse_signature(p, n);
    parse_macro_body(p, n, END_MACRO);
    return n;
}

static const char *const END_CALL[] = {"endcall", NULL};

/* {% call [(params)] macro(args) %}body{% endcall %}: body becomes `caller`. */
static jnode *parse_call_block(P *p, int line) {
    jnode *n = mk_node(p, S_CALLBLOCK, line);
    n->name = jstr_new(p->x, "caller", 6);
    if (is_op(cur(p), OP_LPAREN)) parse_signature(p, n);
    n->b = parse_expression(p, 1);
    if (n->b->kind != E_CALL) {
        p->x->line = line;
        jx_fail(p->x, "expected call");
    }
    parse_macro_body(p, n, END_CALL);
    return n;
}

static jnode *parse_statement(P *p) {
    tok *t = cur(p);
    if (t->type != TK_NAME) p_fail_tok(p, "tag name");
    int line = t->line;
    const char *w = t->s->s;
    advance(p);
    if (!strcmp(w, "for")) return parse_for(p, line);
    if (!strcmp(w, "if")) return parse_if(p, line);
    if (!strcmp(w, "set")) return parse_set(p, line);
    if (!strcmp(w, "macro")) return parse_macro(p, line);
    if (!strcmp(w, "call")) return parse_call_block(p, line);
    if (!strcmp(w, "filter")) {
        jnode *n = mk_node(p, S_FILTERBLOCK, line);
        n->b = parse_filter(p, NULL, 1);
        block_end(p);
        int ld = p->loop_depth;
        p->loop_depth = 0;
        n->c = parse_body(p, END_FILTER);
        p->loop_depth = ld;
        advance(p);
        return n;
    }
    if (!strcmp(w, "with")) {
        jnode *n = mk_node(p, S_WITH, line);
        svec tg = {0};
        nvec vals = {0};
        while (cur(p)->type != TK_BEND) {
            if (tg.n) expect_op(p, OP_COMMA);
            sv_push(p, &tg, expect_name(p));
            expect_op(p, OP_ASSIGN);
            nv_push(p, &vals, parse_expression(p, 1));
        }
        block_end(p);
        n->c = parse_body(p, END_WITH);
        advance(p);
        n->names = tg.v;
        n->nnames = tg.n;
        n->w = vals.v;
        n->nw = vals.n;
        return n;
    }
    if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        if (!p->loop_depth) {
            p->x->line = line;
            jx_fail(p->x, "'%s' outside loop", w);
        }
        return mk_node(p, w[0] == 'b' ? S_BREAK : S_CONTINUE, line);
    }
    if (!strcmp(w, "generation")) { /* HF's assistant-mask extension: renders its body */
        block_end(p);
        jnode *body = parse_body(p, END_GEN);
        advance(p);
        return body;
    }
    p->x->line = line;
    static const char *const unsupported[] = {"block",      "extends", "include", "import", "from",
                                              "autoescape", "do",      "trans",   NULL};
    for (const char *const *u = unsupported; *u; u++)
        if (!strcmp(w, *u)) jx_fail(p->x, "tag '%s' is not supported", w);
    jx_fail(p->x, "Encountered unknown tag '%s'.", w);
    return NULL;
}

static jnode *parse_body(P *p, const char *const *ends) {
    p_enter(p);
    jnode *body = mk_node(p, S_BODY, cur(p)->line);
    nvec v = {0};
    for (;;) {
        tok *t = cur(p);
        p->x->line = t->line;
        if (t->type == TK_EOF) {
            if (ends) {
                char want[128] = "";
                for (const char *const *e = ends; *e; e++) {
                    size_t l = strlen(want);
                    snprintf(want + l, sizeof want - l, "%s'%s'", l ? " or " : "", *e);
                }
                jx_fail(p->x, "Unexpected end of template, expected %s.", want);
            }
            break;
        }
        if (t->type == TK_DATA) {
            jnode *n = mk_node(p, S_DATA, t->line);
            n->val = mk_strv(t->s);
            nv_push(p, &v, n);
            advance(p);
        } else if (t->type == TK_VBEGIN) {
            advance(p);
            jnode *n = mk_node(p, S_PRINT, t->line);
            n->a = parse_tuple(p, 0, NULL, 0);
            expect_type(p, TK_VEND);
            nv_push(p, &v, n);
        } else if (t->type == TK_BBEGIN) {
            advance(p);
            if (ends && name_in(cur(p), ends)) break;
            jnode *n = parse_statement(p);
            expect_type(p, TK_BEND);
            nv_push(p, &v, n);
        } else {
            char b[64];
            jx_fail(p->x, "unexpected '%s'", describe(t, b, sizeof b));
        }
    }
    body->v = v.v;
    body->nv = v.n;
    p->depth--;
    return body;
}

/* Unknown filters and tests are compile-time errors in jinja2, except in
 * "soft" frames (the tests and bodies of if statements and inline if
 * expressions), where they fail only when evaluated. Inner frames (loop
 * bodies, macros, with, filter and set blocks) are strict again. */
static void validate(P *p, const jnode *n, int soft) {
    if (!n) return;
    switch (n->kind) {
    case E_FILTER:
    case E_TEST:
        if (!n->def && !soft) {
            p->x->line = n->line;
            jx_fail(p->x, "No %s named '%s'.", n->kind == E_FILTER ? "filter" : "test", n->name->s);
        }
        break;
    case E_COND:
        soft = 1;
        break;
    case S_IF:
        soft = 1;
        break;
    case S_FOR:
        validate(p, n->a, soft);
        validate(p, n->b, 0);
        validate(p, n->c, 0);
        validate(p, n->d, 0);
        return;
    case S_CALLBLOCK:
        validate(p, n->b, soft);
        validate(p, n->c, 0);
        for (int i = 0; i < n->nw; i++) validate(p, n->w[i], 0);
        return;
    case S_MACRO:
    case S_WITH:
    case S_FILTERBLOCK:
    case S_SETBLOCK:
        soft = 0;
        break;
    default:
        break;
    }
    validate(p, n->a, soft);
    validate(p, n->b, soft);
    validate(p, n->c, soft);
    validate(p, n->d, soft);
    for (int i = 0; i < n->nv; i++) validate(p, n->v[i], soft);
    for (int i = 0; i < n->nw; i++) validate(p, n->w[i], soft);
}

/* ------------------------------------------------------------------------ */
/* Evaluator state                                                          */

typedef struct scope {
    struct scope *parent;
    jdict vars;
} scope;

struct jloop {
    int64_t i, n;
    jlist *items;
};

struct jmacro {
    const jnode *def;
    scope *closure;
};

typedef struct jargs {
    int n, nk;
    jv *pos;
    const jstr **kn;
    jv *kv;
} jargs;

typedef struct R R;
typedef jv (*method_fn)(R *r, jv self, jargs *a);

typedef struct mdef {
    const char *name;
    method_fn fn; /* NULL: exists in Python but not supported here */
} mdef;

struct jfunc {
    const mdef *def;
    jv self;
};

struct R {
    jx x;
    const jinja_template *t;
    jbuf *out;
    jdict *ctx;
    scope *root;
    long iters, max_iter;
    int depth, macro_depth;
    jv hole; /* input of a filter block */
};

#define X (&r->x)

static jv eval(R *r, scope *sc, const jnode *n);

static void enter(R *r) {
    if (++r->depth > MAX_DEPTH) jx_fail(X, "recursion too deep");
}

/* ------------------------------------------------------------------------ */
/* Python semantics                                                         */

static const char *type_name(jv v) {
    switch (v.t) {
    case J_UNDEF:
        return "Undefined";
    case J_NONE:
        return "NoneType";
    case J_BOOL:
        return "bool";
    case J_INT:
        return "int";
    case J_FLOAT:
        return "float";
    case J_STR:
        return "str";
    case J_LIST:
        return v.u.l->tuple ? "tuple" : "list";
    case J_DICT:
        return "dict";
    case J_NS:
        return "Namespace";
    case J_LOOP:
        return "LoopContext";
    case J_MACRO:
        return "Macro";
    default:
        return "builtin_function_or_method";
    }
}

static void fail_undef(R *r, jv v) {
    if (v.u.name) jx_fail(X, "'%s' is undefined", v.u.name);
    jx_fail(X, "undefined value");
}

static int truthy(jv v) {
    switch (v.t) {
    case J_UNDEF:
    case J_NONE:
    case J_MISSING:
        return 0;
    case J_BOOL:
        return v.u.b;
    case J_INT:
        return v.u.i != 0;
    case J_FLOAT:
        return v.u.f != 0.0;
    case J_STR:
        return v.u.s->len != 0;
    case J_LIST:
        return v.u.l->n != 0;
    case J_DICT:
        return v.u.d->n != 0;
    default:
        return 1;
    }
}

static int is_num(jv v) {
    return v.t == J_BOOL || v.t == J_INT || v.t == J_FLOAT;
}
static int is_intlike(jv v) {
    return v.t == J_BOOL || v.t == J_INT;
}
static int64_t as_i(jv v) {
    return v.t == J_BOOL ? v.u.b : v.u.i;
}
static double as_f(jv v) {
    return v.t == J_FLOAT ? v.u.f : (double)as_i(v);
}

static int str_eq(const jstr *a, const char *s, size_t n) {
    return a->len == n && memcmp(a->s, s, n) == 0;
}

static long dict_find(const jdict *d, jv k);

static int py_eq(jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return as_i(a) == as_i(b);
        return as_f(a) == as_f(b);
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case J_UNDEF:
    case J_NONE:
        return 1;
    case J_STR:
        return str_eq(a.u.s, b.u.s->s, b.u.s->len);
    case J_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!py_eq(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case J_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            long j = dict_find(b.u.d, a.u.d->k[i]);
            if (j < 0 || !py_eq(a.u.d->v[i], b.u.d->v[j])) return 0;
        }
        return 1;
    case J_NS:
    case J_LOOP:
        return a.u.d == b.u.d;
    case J_MACRO:
        return a.u.m == b.u.m;
    case J_FUNC:
        return a.u.fn == b.u.fn;
    default:
        return 0;
    }
}

static long dict_find(const jdict *d, jv k) {
    if (k.t == J_STR) {
        for (size_t i = 0; i < d->n; i++)
            if (d->k[i].t == J_STR && str_eq(d->k[i].u.s, k.u.s->s, k.u.s->len)) return (long)i;
        return -1;
    }
    for (size_t i = 0; i < d->n; i++)
        if (py_eq(d->k[i], k)) return (long)i;
    return -1;
}

static long dict_find_s(const jdict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == J_STR && str_eq(d->k[i].u.s, s, n)) return (long)i;
    return -1;
}

static void dict_set(jx *x, jdict *d, jv k, jv v) {
    long i = dict_find(d, k);
    if (i >= 0) {
        d->v[i] = v;
        return;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        jv *nk = jx_alloc(x, nc * sizeof(jv)), *nv = jx_alloc(x, nc * sizeof(jv));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
}

static void check_hashable(R *r, jv k) {
    if ((k.t == J_LIST && !k.u.l->tuple) || k.t == J_DICT || k.t == J_NS)
        jx_fail(X, "unhashable type: '%s'", type_name(k));
    if (k.t == J_UNDEF) fail_undef(r, k);
}

/* Python's float repr: the shortest string that round-trips. */
static void fmt_float(double f, char *out, size_t outn) {
    if (isnan(f)) {
        snprintf(out, outn, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, outn, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(out, outn, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf: [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = buf[0] == '-';
    const char *q = buf + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int decpt = atoi(q + 1) + 1;
    char *o = out;
    size_t left = outn;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int k_ = snprintf(o, left, __VA_ARGS__);                                                   \
        if (k_ > 0 && (size_t)k_ < left) {                                                         \
            o += k_;                                                                               \
            left -= (size_t)k_;                                                                    \
        }                                                                                          \
    } while (0)
    if (neg) PUT("-");
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            PUT("0.");
            for (int i = 0; i < -decpt; i++) PUT("0");
            PUT("%s", digits);
        } else if (decpt >= nd) {
            PUT("%s", digits);
            for (int i = nd; i < decpt; i++) PUT("0");
            PUT(".0");
        } else {
            PUT("%.*s.%s", decpt, digits, digits + decpt);
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        int e = decpt - 1;
        PUT("e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
#undef PUT
}

static void py_repr(R *r, jbuf *b, jv v, int depth);

static void repr_str(R *r, jbuf *b, const jstr *s) {
    int has_sq = memchr(s->s, '\'', s->len) != NULL, has_dq = memchr(s->s, '"', s->len) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    jb_putc(X, b, q);
    size_t i = 0, a;
    while (i < s->len) {
        uint32_t c = u8_dec(s->s + i, s->len - i, &a);
        if (c == (uint32_t)q || c == '\\') {
            jb_putc(X, b, '\\');
            jb_putc(X, b, (char)c);
        } else if (c == '\n')
            jb_puts(X, b, "\\n");
        else if (c == '\r')
            jb_puts(X, b, "\\r");
        else if (c == '\t')
            jb_puts(X, b, "\\t");
        else if (c >= 0xDC80 && c <= 0xDCFF && a == 1)
            jb_printf(X, b, "\\udc%02x", c & 0xFF);
        else if (c < 0x7F && c >= 0x20)
            jb_putc(X, b, (char)c);
        else if (py_isprintable(c))
            jb_put(X, b, s->s + i, a);
        else if (c < 0x100)
            jb_printf(X, b, "\\x%02x", c);
        else if (c < 0x10000)
            jb_printf(X, b, "\\u%04x", c);
        else
            jb_printf(X, b, "\\U%08x", c);
        i += a;
    }
    jb_putc(X, b, q);
}

/* str(v) as Python prints it. */
static void py_str(R *r, jbuf *b, jv v) {
    char tmp[48];
    switch (v.t) {
    case J_UNDEF:
    case J_MISSING:
        return;
    case J_NONE:
        jb_puts(X, b, "None");
        return;
    case J_BOOL:
        jb_puts(X, b, v.u.b ? "True" : "False");
        return;
    case J_INT:
        jb_printf(X, b, "%" PRId64, v.u.i);
        return;
    case J_FLOAT:
        fmt_float(v.u.f, tmp, sizeof tmp);
        jb_puts(X, b, tmp);
        return;
    case J_STR:
        jb_put(X, b, v.u.s->s, v.u.s->len);
        return;
    default:
        py_repr(r, b, v, 0);
    }
}

static void py_repr(R *r, jbuf *b, jv v, int depth) {
    if (depth > 100) jx_fail(X, "value nested too deeply");
    switch (v.t) {
    case J_UNDEF:
        jb_puts(X, b, "Undefined");
        return;
    case J_STR:
        repr_str(r, b, v.u.s);
        return;
    case J_LIST: {
        jlist *l = v.u.l;
        jb_putc(X, b, l->tuple ? '(' : '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_puts(X, b, ", ");
            py_repr(r, b, l->v[i], depth + 1);
        }
        if (l->tuple && l->n == 1) jb_putc(X, b, ',');
        jb_putc(X, b, l->tuple ? ')' : ']');
        return;
    }
    case J_DICT:
    case J_NS: {
        jdict *d = v.u.d;
        if (v.t == J_NS) jb_puts(X, b, "<Namespace ");
        jb_putc(X, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            if (i) jb_puts(X, b, ", ");
            py_repr(r, b, d->k[i], depth + 1);
            jb_puts(X, b, ": ");
            py_repr(r, b, d->v[i], depth + 1);
        }
        jb_putc(X, b, '}');
        if (v.t == J_NS) jb_putc(X, b, '>');
        return;
    }
    case J_LOOP:
        jb_printf(X, b, "<LoopContext %" PRId64 "/%" PRId64 ">", v.u.lp->i + 1, v.u.lp->n);
        return;
    case J_MACRO:
        jb_printf(X, b, "<Macro '%s'>", v.u.m->def->name->s);
        return;
    case J_FUNC:
        jb_printf(X, b, "<built-in method %s>", v.u.fn->def->name);
        return;
    default:
        py_str(r, b, v);
    }
}

/* str(v) as a string value. */
static const jstr *to_s(R *r, jv v) {
    if (v.t == J_STR) return v.u.s;
    jbuf b = {0};
    py_str(r, &b, v);
    return jb_value(X, &b).u.s;
}

static int64_t py_len(R *r, jv v) {
    switch (v.t) {
    case J_UNDEF:
        return 0;
    case J_STR:
        return (int64_t)u8_len(v.u.s->s, v.u.s->len);
    case J_LIST:
        return (int64_t)v.u.l->n;
    case J_DICT:
        return (int64_t)v.u.d->n;
    default:
        jx_fail(X, "object of type '%s' has no len()", type_name(v));
    }
    return 0;
}

/* The items of an iterable (do not modify the result). */
static jlist *iterate(R *r, jv v) {
    switch (v.t) {
    case J_UNDEF:
        return list_new(X, 0);
    case J_LIST:
        return v.u.l;
    case J_DICT: {
        jlist *l = list_new(X, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) list_push(X, l, v.u.d->k[i]);
        return l;
    }
    case J_STR: {
        const jstr *s = v.u.s;
        jlist *l = list_new(X, s->len);
        size_t i = 0, a;
        while (i < s->len) {
            u8_dec(s->s + i, s->len - i, &a);
            list_push(X, l, mk_str(X, s->s + i, a));
            i += a;
        }
        return l;
    }
    default:
        jx_fail(X, "'%s' object is not iterable", type_name(v));
    }
    return NULL;
}

/* a < b, a <= b, ... for orderable values (Python rules). */
static int py_order(R *r, int op, jv a, jv b) {
    int c;
    if (a.t == J_UNDEF) fail_undef(r, a);
    if (b.t == J_UNDEF) fail_undef(r, b);
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) {
            int64_t x = as_i(a), y = as_i(b);
            c = x < y ? -1 : x > y;
        } else {
            double x = as_f(a), y = as_f(b);
            if (isnan(x) || isnan(y)) return 0;
            c = x < y ? -1 : x > y;
        }
    } else if (a.t == J_STR && b.t == J_STR) {
        size_t n = MIN(a.u.s->len, b.u.s->len);
        c = memcmp(a.u.s->s, b.u.s->s, n);
        if (!c) c = a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    } else if (a.t == J_LIST && b.t == J_LIST && a.u.l->tuple == b.u.l->tuple) {
        jlist *x = a.u.l, *y = b.u.l;
        size_t n = MIN(x->n, y->n);
        for (size_t i = 0; i < n; i++)
            if (!py_eq(x->v[i], y->v[i])) return py_order(r, op, x->v[i], y->v[i]);
        c = x->n < y->n ? -1 : x->n > y->n;
    } else {
        jx_fail(X, "'%s' not supported between instances of '%s' and '%s'", op_text(op),
                type_name(a), type_name(b));
    }
    switch (op) {
    case OP_LT:
        return c < 0;
    case OP_LTEQ:
        return c <= 0;
    case OP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

static int py_contains(R *r, jv container, jv item) {
    switch (container.t) {
    case J_STR:
        if (item.t == J_UNDEF) fail_undef(r, item);
        if (item.t != J_STR)
            jx_fail(X, "'in <string>' requires string as left operand, not %s", type_name(item));
        if (!item.u.s->len) return 1;
        return memmem(container.u.s->s, container.u.s->len, item.u.s->s, item.u.s->len) != NULL;
    case J_LIST:
        for (size_t i = 0; i < container.u.l->n; i++)
            if (py_eq(container.u.l->v[i], item)) return 1;
        return 0;
    case J_DICT:
        check_hashable(r, item);
        return dict_find(container.u.d, item) >= 0;
    case J_UNDEF:
        return 0;
    default:
        jx_fail(X, "argument of type '%s' is not iterable", type_name(container));
    }
    return 0;
}

/* ---- arithmetic ---- */

static jv py_percent(R *r, const jstr *f, jv args);

static void fail_binop(R *r, int op, jv a, jv b) {
    if (a.t == J_UNDEF) fail_undef(r, a);
    if (b.t == J_UNDEF) fail_undef(r, b);
    jx_fail(X, "unsupported operand type(s) for %s: '%s' and '%s'", op_text(op), type_name(a),
            type_name(b));
}

static jv repeat(R *r, jv seq, int64_t k) {
    if (k < 0) k = 0;
    if (seq.t == J_STR) {
        const jstr *s = seq.u.s;
        if (s->len && (uint64_t)k > X->max_str / s->len) jx_fail(X, "string too long");
        jbuf b = {0};
        for (int64_t i = 0; i < k; i++) jb_put(X, &b, s->s, s->len);
        return jb_value(X, &b);
    }
    jlist *l = seq.u.l, *o = list_new(X, 0);
    if (l->n && (uint64_t)k > (X->max_str / 16) / l->n) jx_fail(X, "list too long");
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < l->n; j++) list_push(X, o, l->v[j]);
    o->tuple = l->tuple;
    return mk_listv(o);
}

static double py_fmod(R *r, double x, double y, double *floordiv) {
    if (y == 0) jx_fail(X, "float modulo by zero");
    double mod = fmod(x, y), div = (x - mod) / y;
    if (mod != 0) {
        if ((y < 0) != (mod < 0)) {
            mod += y;
            div -= 1.0;
        }
    } else {
        mod = copysign(0.0, y);
    }
    double fd;
    if (div != 0) {
        fd = floor(div);
        if (div - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, x / y);
    }
    if (floordiv) *floordiv = fd;
    return mod;
}

static jv arith(R *r, int op, jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b) && op != OP_DIV) {
            int64_t x = as_i(a), y = as_i(b), z = 0;
            switch (op) {
            case OP_ADD:
                if (__builtin_add_overflow(x, y, &z)) goto overflow;
                return mk_int(z);
            case OP_SUB:
                if (__builtin_sub_overflow(x, y, &z)) goto overflow;
                return mk_int(z);
            case OP_MUL:
                if (__builtin_mul_overflow(x, y, &z)) goto overflow;
                return mk_int(z);
            case OP_FLOORDIV:
            case OP_MOD: {
                if (y == 0) jx_fail(X, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) {
                    if (op == OP_MOD) return mk_int(0);
                    goto overflow;
                }
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                return mk_int(op == OP_MOD ? m : q);
            }
            case OP_POW: {
                if (y < 0) {
                    if (x == 0) jx_fail(X, "0.0 cannot be raised to a negative power");
                    return mk_float(pow((double)x, (double)y));
                }
                int64_t res = 1, base = x;
                while (y) {
                    if (y & 1)
                        if (__builtin_mul_overflow(res, base, &res)) goto overflow;
                    y >>= 1;
                    if (y && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                return mk_int(res);
            }
            }
        }
        double x = as_f(a), y = as_f(b), fd;
        switch (op) {
        case OP_ADD:
            return mk_float(x + y);
        case OP_SUB:
            return mk_float(x - y);
        case OP_MUL:
            return mk_float(x * y);
        case OP_DIV:
            if (y == 0) jx_fail(X, "division by zero");
            return mk_float(x / y);
        case OP_FLOORDIV:
            py_fmod(r, x, y, &fd);
            return mk_float(fd);
        case OP_MOD:
            return mk_float(py_fmod(r, x, y, NULL));
        case OP_POW:
            if (x == 0 && y < 0) jx_fail(X, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y)) jx_fail(X, "complex results are not supported");
            return mk_float(pow(x, y));
        }
    }
    if (op == OP_ADD) {
        if (a.t == J_STR && b.t == J_STR) {
            jbuf s = {0};
            jb_put(X, &s, a.u.s->s, a.u.s->len);
            jb_put(X, &s, b.u.s->s, b.u.s->len);
            return jb_value(X, &s);
        }
        if (a.t == J_LIST && b.t == J_LIST && a.u.l->tuple == b.u.l->tuple) {
            jlist *o = list_new(X, a.u.l->n + b.u.l->n);
            for (size_t i = 0; i < a.u.l->n; i++) list_push(X, o, a.u.l->v[i]);
            for (size_t i = 0; i < b.u.l->n; i++) list_push(X, o, b.u.l->v[i]);
            o->tuple = a.u.l->tuple;
            return mk_listv(o);
        }
    }
    if (op == OP_MUL) {
        if ((a.t == J_STR || a.t == J_LIST) && is_intlike(b)) return repeat(r, a, as_i(b));
        if ((b.t == J_STR || b.t == J_LIST) && is_intlike(a)) return repeat(r, b, as_i(a));
    }
    if (op == OP_MOD && a.t == J_STR) return py_percent(r, a.u.s, b);
    fail_binop(r, op, a, b);
overflow:
    jx_fail(X, "integer overflow");
    return mk_none();
}

/* ---- attribute and item access ---- */

static const mdef *find_method(jv obj, const char *name, int *unsafe);

static jv mk_func(R *r, const mdef *def, jv self) {
    jfunc *f = jx_alloc(X, sizeof *f);
    f->def = def;
    f->self = self;
    jv v;
    v.t = J_FUNC;
    v.u.fn = f;
    return v;
}

static jv loop_attr(R *r, jloop *lp, const char *name, jv self);

/* obj.name; item_fallback: also try obj[name] (jinja's getattr does). */
static jv get_attr(R *r, jv obj, const jstr *name, int item_fallback) {
    if (obj.t == J_UNDEF) fail_undef(r, obj);
    int unsafe = 0;
    const mdef *m = find_method(obj, name->s, &unsafe);
    if (m) return mk_func(r, m, obj);
    if (unsafe) return mk_undef(name->s);
    if (obj.t == J_LOOP) return loop_attr(r, obj.u.lp, name->s, obj);
    if (obj.t == J_NS || (item_fallback && obj.t == J_DICT)) {
        long i = dict_find_s(obj.u.d, name->s, name->len);
        if (i >= 0) return obj.u.d->v[i];
    }
    return mk_undef(name->s);
}

static int64_t norm_index(int64_t i, int64_t n) {
    return i < 0 ? i + n : i;
}

/* Code point i of s (0-based, in range). */
static jv str_char(R *r, const jstr *s, int64_t idx) {
    size_t i = 0, a = 0;
    for (int64_t k = 0; i < s->len; k++) {
        u8_dec(s->s + i, s->len - i, &a);
        if (k == idx) return mk_str(X, s->s + i, a);
        i += a;
    }
    return mk_undef(NULL);
}

static jv get_item(R *r, jv obj, jv key) {
    if (obj.t == J_UNDEF) fail_undef(r, obj);
    switch (obj.t) {
    case J_DICT: {
        long i = dict_find(obj.u.d, key);
        if (i >= 0) return obj.u.d->v[i];
        break;
    }
    case J_LIST:
        if (is_intlike(key)) {
            int64_t i = norm_index(as_i(key), (int64_t)obj.u.l->n);
            if (i >= 0 && i < (int64_t)obj.u.l->n) return obj.u.l->v[i];
            return mk_undef(NULL);
        }
        break;
    case J_STR:
        if (is_intlike(key)) {
            int64_t n = py_len(r, obj), i = norm_index(as_i(key), n);
            if (i >= 0 && i < n) return str_char(r, obj.u.s, i);
            return mk_undef(NULL);
        }
        break;
    default:
        break;
    }
    if (key.t == J_STR) return get_attr(r, obj, key.u.s, 0);
    return mk_undef(NULL);
}

/* Python slice index normalisation. */
static void slice_indices(R *r, int64_t len, jv vs, jv ve, jv vst, int64_t *start, int64_t *step,
                          int64_t *count) {
    int64_t st = 1;
    if (vst.t != J_NONE) st = as_i(vst);
    if (st == 0) jx_fail(X, "slice step cannot be zero");
    int64_t lo = st > 0 ? 0 : -1, hi = st > 0 ? len : len - 1;
    int64_t s = st > 0 ? lo : hi, e = st > 0 ? hi : lo;
    if (vs.t != J_NONE) {
        s = as_i(vs);
        if (s < 0) s += len;
        s = s < lo ? lo : s > hi ? hi : s;
    }
    if (ve.t != J_NONE) {
        e = as_i(ve);
        if (e < 0) e += len;
        e = e < lo ? lo : e > hi ? hi : e;
    }
    int64_t c = 0;
    if (st > 0 && s < e) c = (e - s - 1) / st + 1;
    if (st < 0 && e < s) c = (s - e - 1) / (-st) + 1;
    *start = s;
    *step = st;
    *count = c;
}

static jv get_slice(R *r, jv obj, jv vs, jv ve, jv vst) {
    if (obj.t == J_UNDEF) fail_undef(r, obj);
    jv bounds[3] = {vs, ve, vst};
    for (int i = 0; i < 3; i++) {
        if (bounds[i].t == J_UNDEF) fail_undef(r, bounds[i]);
        if (bounds[i].t != J_NONE && !is_intlike(bounds[i])) return mk_undef(NULL);
    }
    if (obj.t != J_LIST && obj.t != J_STR) return mk_undef(NULL);
    int64_t len = py_len(r, obj), s, st, c;
    slice_indices(r, len, vs, ve, vst, &s, &st, &c);
    if (obj.t == J_LIST) {
        jlist *o = list_new(X, (size_t)c);
        for (int64_t k = 0; k < c; k++) list_push(X, o, obj.u.l->v[s + k * st]);
        o->tuple = obj.u.l->tuple;
        return mk_listv(o);
    }
    /* strings: index the code points */
    const jstr *str = obj.u.s;
    size_t i = 0, a;
    if (st == 1) { /* a plain substring: walk to its two ends */
        size_t from = 0, to = 0;
        for (int64_t k = 0; k <= s + c; k++) {
            if (k == s) from = i;
            if (k == s + c) {
                to = i;
                break;
            }
            u8_dec(str->s + i, str->len - i, &a);
            i += a;
        }
        if (from == 0 && to == str->len) return obj;
        return mk_str(X, str->s + from, to - from);
    }
    size_t *off = jx_alloc(X, (size_t)(len + 1) * sizeof(size_t));
    i = 0;
    for (int64_t k = 0; k < len; k++) {
        off[k] = i;
        u8_dec(str->s + i, str->len - i, &a);
        i += a;
    }
    off[len] = str->len;
    jbuf b = {0};
    for (int64_t k = 0; k < c; k++) {
        int64_t j = s + k * st;
        jb_put(X, &b, str->s + off[j], off[j + 1] - off[j]);
    }
    return jb_value(X, &b);
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */

/* Bind positional and keyword arguments to the parameter names; a parameter
 * not passed is J_MISSING. */
static void bind_args(R *r, const jargs *a, const char *fname, const char *const *params, int np,
                      jv *out) {
    for (int i = 0; i < np; i++) out[i] = mk_missing();
    if (a->n > np)
        jx_fail(X, "%s() takes at most %d argument%s (%d given)", fname, np, np == 1 ? "" : "s",
                a->n);
    for (int i = 0; i < a->n; i++) out[i] = a->pos[i];
    for (int k = 0; k < a->nk; k++) {
        int j = 0;
        while (j < np && strcmp(params[j], a->kn[k]->s)) j++;
        if (j == np) jx_fail(X, "%s() got an unexpected keyword argument '%s'", fname, a->kn[k]->s);
        if (out[j].t != J_MISSING)
            jx_fail(X, "%s() got multiple values for argument '%s'", fname, a->kn[k]->s);
        out[j] = a->kv[k];
    }
}

static jv arg_or(jv v, jv dflt) {
    return v.t == J_MISSING ? dflt : v;
}

static const jstr *arg_str(R *r, jv v, const char *fname) {
    if (v.t == J_UNDEF) fail_undef(r, v);
    if (v.t != J_STR) jx_fail(X, "%s() argument must be str, not %s", fname, type_name(v));
    return v.u.s;
}

static int64_t arg_int(R *r, jv v, const char *fname) {
    if (v.t == J_UNDEF) fail_undef(r, v);
    if (!is_intlike(v))
        jx_fail(X, "%s(): '%s' object cannot be interpreted as an integer", fname, type_name(v));
    return as_i(v);
}

static void no_args(R *r, const jargs *a, const char *fname) {
    if (a->n || a->nk) jx_fail(X, "%s() takes no arguments", fname);
}

/* ---- printf-style formatting: str % args ---- */

/* Pad `body` (code points counted) to width; zero-pads after a sign/prefix
 * of `head` bytes when zero is set. */
static void fmt_pad(R *r, jbuf *o, const char *body, size_t n, size_t head, int64_t width, int left,
                    int zero) {
    int64_t len = (int64_t)u8_len(body, n), pad = width > len ? width - len : 0;
    if (pad > (int64_t)X->max_str) jx_fail(X, "string too long");
    if (left) {
        jb_put(X, o, body, n);
        for (int64_t i = 0; i < pad; i++) jb_putc(X, o, ' ');
    } else if (zero) {
        jb_put(X, o, body, head);
        for (int64_t i = 0; i < pad; i++) jb_putc(X, o, '0');
        jb_put(X, o, body + head, n - head);
    } else {
        for (int64_t i = 0; i < pad; i++) jb_putc(X, o, ' ');
        jb_put(X, o, body, n);
    }
}

static void fmt_one(R *r, jbuf *o, char conv, jv v, const char *flags, int64_t width,
                    int64_t prec) {
    int left = strchr(flags, '-') != NULL, zero = strchr(flags, '0') != NULL && !left;
    int plus = strchr(flags, '+') != NULL, space = strchr(flags, ' ') != NULL;
    int alt = strchr(flags, '#') != NULL;
    char tmp[512];
    if (v.t == J_UNDEF && conv != 's') fail_undef(r, v);
    switch (conv) {
    case 's':
    case 'r':
    case 'a': {
        jbuf b = {0};
        if (conv == 's')
            py_str(r, &b, v);
        else
            py_repr(r, &b, v, 0);
        size_t n = b.n;
        if (prec >= 0) { /* precision truncates to code points */
            size_t i = 0, a;
            for (int64_t k = 0; k < prec && i < b.n; k++) {
                u8_dec(b.p + i, b.n - i, &a);
                i += a;
            }
            n = i;
        }
        fmt_pad(r, o, b.p ? b.p : "", n, 0, width, left, 0);
        return;
    }
    case 'c': {
        char c8[4];
        int k;
        if (v.t == J_STR && u8_len(v.u.s->s, v.u.s->len) == 1) {
            fmt_pad(r, o, v.u.s->s, v.u.s->len, 0, width, left, 0);
            return;
        }
        if (!is_intlike(v)) jx_fail(X, "%%c requires int or char");
        int64_t cp = as_i(v);
        if (cp < 0 || cp > 0x10FFFF) jx_fail(X, "%%c arg not in range(0x110000)");
        k = u8_enc((uint32_t)cp, c8);
        fmt_pad(r, o, c8, (size_t)k, 0, width, left, 0);
        return;
    }
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o': {
        int64_t iv;
        int base = conv == 'x' || conv == 'X' ? 16 : conv == 'o' ? 8 : 10;
        if (is_intlike(v))
            iv = as_i(v);
        else if (v.t == J_FLOAT && base == 10) {
            if (!isfinite(v.u.f))
                jx_fail(X, "cannot convert float %s to integer", isnan(v.u.f) ? "NaN" : "infinity");
            if (fabs(v.u.f) >=
                9.2233720368547758e18) { /* beyond int64: exact digits of the integral float */
                char big[400];
                int n = snprintf(big, sizeof big, "%s%.0f",
                                 v.u.f < 0 ? "-"
                                 : plus    ? "+"
                                 : space   ? " "
                                           : "",
                                 fabs(trunc(v.u.f)));
                size_t head = (big[0] == '-' || big[0] == '+' || big[0] == ' ') ? 1 : 0;
                fmt_pad(r, o, big, (size_t)n, head, width, left, zero);
                return;
            }
            iv = (int64_t)v.u.f;
        } else
            jx_fail(X, "%%%c format: %s is required, not %s", conv,
                    base == 10 ? "a real number" : "an integer", type_name(v));
        uint64_t mag = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
        char digits[80];
        int nd = 0;
        do {
            int d = (int)(mag % (uint64_t)base);
            digits[nd++] = (char)(d < 10 ? '0' + d : (conv == 'X' ? 'A' : 'a') + d - 10);
            mag /= (uint64_t)base;
        } while (mag);
        while (prec > nd && nd < 64) digits[nd++] = '0';
        size_t k = 0;
        if (iv < 0)
            tmp[k++] = '-';
        else if (plus)
            tmp[k++] = '+';
        else if (space)
            tmp[k++] = ' ';
        if (alt && base != 10) {
            tmp[k++] = '0';
            tmp[k++] = conv == 'o' ? 'o' : conv;
        }
        size_t head = k;
        while (nd) tmp[k++] = digits[--nd];
        fmt_pad(r, o, tmp, k, head, width, left, zero);
        return;
    }
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G': {
        double f;
        if (is_num(v))
            f = as_f(v);
        else
            jx_fail(X, "must be real number, not %s", type_name(v));
        char cf[16];
        snprintf(cf, sizeof cf, "%%%s%s%s.*%c", plus ? "+" : "", space ? " " : "", alt ? "#" : "",
                 conv);
        int n = snprintf(tmp, sizeof tmp, cf, (int)(prec < 0 ? 6 : prec > 300 ? 300 : prec), f);
        if (n < 0 || (size_t)n >= sizeof tmp) jx_fail(X, "formatted number too long");
        size_t head = (tmp[0] == '-' || tmp[0] == '+' || tmp[0] == ' ') ? 1 : 0;
        fmt_pad(r, o, tmp, (size_t)n, head, width, left, zero && isfinite(f));
        return;
    }
    default:
        jx_fail(X, "unsupported format character '%c'", conv);
    }
}

static int64_t fmt_num(const jstr *f, size_t *i) {
    int64_t v = 0;
    while (*i < f->len && is_dig(f->s[*i])) {
        if (v < 100000000) v = v * 10 + (f->s[*i] - '0');
        (*i)++;
    }
    return v;
}

static jv py_percent(R *r, const jstr *f, jv args) {
    jv *argv = &args;
    size_t argc = 1, ai = 0;
    int tuple = args.t == J_LIST && args.u.l->tuple;
    /* like CPython: anything with __getitem__ but str/tuple skips the
     * "not all arguments converted" check */
    int mapping_like = !tuple && (args.t == J_DICT || args.t == J_LIST || args.t == J_UNDEF);
    if (tuple) {
        argv = args.u.l->v;
        argc = args.u.l->n;
    }
    jbuf o = {0};
    size_t i = 0;
    while (i < f->len) {
        const char *pc = memchr(f->s + i, '%', f->len - i);
        size_t e = pc ? (size_t)(pc - f->s) : f->len;
        jb_put(X, &o, f->s + i, e - i);
        if (!pc) break;
        i = e + 1;
        if (i >= f->len) jx_fail(X, "incomplete format");
        jv v = mk_missing();
        if (f->s[i] == '(') {
            if (args.t != J_DICT) jx_fail(X, "format requires a mapping");
            size_t st = ++i;
            int depth = 1;
            while (i < f->len && depth) {
                if (f->s[i] == '(') depth++;
                if (f->s[i] == ')') depth--;
                i++;
            }
            if (depth) jx_fail(X, "incomplete format key");
            long k = dict_find_s(args.u.d, f->s + st, i - 1 - st);
            if (k < 0) jx_fail(X, "KeyError: '%.*s'", (int)(i - 1 - st), f->s + st);
            v = args.u.d->v[k];
        }
        char flags[8] = "";
        int nf = 0;
        while (i < f->len && strchr("-+ #0", f->s[i]) && f->s[i]) {
            if (nf < 7) flags[nf++] = f->s[i];
            flags[nf] = 0;
            i++;
        }
        int64_t width = 0, prec = -1;
        if (i < f->len && f->s[i] == '*') {
            if (ai >= argc) jx_fail(X, "not enough arguments for format string");
            width = arg_int(r, argv[ai++], "format");
            if (width < 0) {
                width = -width;
                if (nf < 7) flags[nf++] = '-';
                flags[nf] = 0;
            }
            i++;
        } else
            width = fmt_num(f, &i);
        if (i < f->len && f->s[i] == '.') {
            i++;
            if (i < f->len && f->s[i] == '*') {
                if (ai >= argc) jx_fail(X, "not enough arguments for format string");
                prec = arg_int(r, argv[ai++], "format");
                i++;
            } else
                prec = fmt_num(f, &i);
        }
        while (i < f->len && (f->s[i] == 'h' || f->s[i] == 'l' || f->s[i] == 'L')) i++;
        if (i >= f->len) jx_fail(X, "incomplete format");
        char conv = f->s[i++];
        if (conv == '%') {
            jb_putc(X, &o, '%');
            continue;
        }
        if (v.t == J_MISSING) {
            if (ai >= argc) jx_fail(X, "not enough arguments for format string");
            v = argv[ai++];
        }
        fmt_one(r, &o, conv, v, flags, width, prec);
    }
    if (ai < argc && !mapping_like)
        jx_fail(X, "not all arguments converted during string formatting");
    return jb_value(X, &o);
}

/* ------------------------------------------------------------------------ */
/* str methods                                                              */

/* Code points of a string with their byte offsets (off has n+1 entries). */
typedef struct cps {
    uint32_t *c;
    size_t *off;
    size_t n;
} cps;

static cps to_cps(R *r, const jstr *s) {
    cps v;
    v.c = jx_alloc(X, (s->len + 1) * sizeof(uint32_t));
    v.off = jx_alloc(X, (s->len + 1) * sizeof(size_t));
    v.n = 0;
    size_t i = 0, a;
    while (i < s->len) {
        v.off[v.n] = i;
        v.c[v.n++] = u8_dec(s->s + i, s->len - i, &a);
        i += a;
    }
    v.off[v.n] = s->len;
    return v;
}

static int in_chars(uint32_t c, const cps *set) {
    if (!set) return py_isspace(c);
    for (size_t i = 0; i < set->n; i++)
        if (set->c[i] == c) return 1;
    return 0;
}

static jv strip_impl(R *r, const jstr *s, jv chars, int left, int right) {
    cps set, *sp = NULL;
    if (chars.t == J_STR) {
        set = to_cps(r, chars.u.s);
        sp = &set;
    } else if (chars.t != J_MISSING && chars.t != J_NONE) {
        if (chars.t == J_UNDEF) fail_undef(r, chars);
        jx_fail(X, "strip arg must be None or str");
    }
    size_t start = 0, end = s->len, adv;
    if (left)
        while (start < s->len) {
            uint32_t c = u8_dec(s->s + start, s->len - start, &adv);
            if (!in_chars(c, sp)) break;
            start += adv;
        }
    if (right)
        while (end > start) {
            uint32_t c;
            size_t st = u8_prev(s->s, start, end, &c);
            if (!in_chars(c, sp)) break;
            end = st;
        }
    if (start == 0 && end == s->len) return mk_strv(s);
    return mk_str(X, s->s + start, end - start);
}

static const char *const P_CHARS[] = {"chars"};
static jv m_strip(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "strip", P_CHARS, 1, p);
    return strip_impl(r, self.u.s, p[0], 1, 1);
}
static jv m_lstrip(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "lstrip", P_CHARS, 1, p);
    return strip_impl(r, self.u.s, p[0], 1, 0);
}
static jv m_rstrip(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "rstrip", P_CHARS, 1, p);
    return strip_impl(r, self.u.s, p[0], 0, 1);
}

static jv str_case(R *r, const jstr *s, int mode) {
    jbuf b = {0};
    int prev_cased = 0;
    size_t adv;
    for (size_t i = 0, pos = 0; pos < s->len; i++, pos += adv) {
        uint32_t c = u8_dec(s->s + pos, s->len - pos, &adv);
        int m = mode;
        if (mode == 'T') { /* str.title() */
            m = prev_cased ? 'l' : 't';
            prev_cased = py_iscased(c);
        } else if (mode == 'C') { /* str.capitalize() */
            m = i == 0 ? 't' : 'l';
        } else if (mode == 's') { /* swapcase */
            int k = cp_cat(c);
            m = k == UTF8PROC_CATEGORY_LU ? 'l' : k == UTF8PROC_CATEGORY_LL ? 'u' : 0;
        }
        if (m)
            jb_case(X, &b, c, m);
        else
            jb_putcp(X, &b, c);
    }
    return jb_value(X, &b);
}

static jv m_upper(R *r, jv self, jargs *a) {
    no_args(r, a, "upper");
    return str_case(r, self.u.s, 'u');
}
static jv m_lower(R *r, jv self, jargs *a) {
    no_args(r, a, "lower");
    return str_case(r, self.u.s, 'l');
}
static jv m_title(R *r, jv self, jargs *a) {
    no_args(r, a, "title");
    return str_case(r, self.u.s, 'T');
}
static jv m_capitalize(R *r, jv self, jargs *a) {
    no_args(r, a, "capitalize");
    return str_case(r, self.u.s, 'C');
}
static jv m_swapcase(R *r, jv self, jargs *a) {
    no_args(r, a, "swapcase");
    return str_case(r, self.u.s, 's');
}

static jv split_impl(R *r, const jstr *s, jv sep, jv maxsplit, int from_right) {
    int64_t maxc = maxsplit.t == J_MISSING ? -1 : arg_int(r, maxsplit, "split");
    if (maxc < 0) maxc = INT64_MAX;
    jlist *out = list_new(X, 0);
    if (sep.t == J_MISSING || sep.t == J_NONE) {
        cps v = to_cps(r, s);
        if (!from_right) {
            size_t i = 0;
            while (maxc-- > 0) {
                while (i < v.n && py_isspace(v.c[i])) i++;
                if (i == v.n) break;
                size_t j = i++;
                while (i < v.n && !py_isspace(v.c[i])) i++;
                list_push(X, out, mk_str(X, s->s + v.off[j], v.off[i] - v.off[j]));
            }
            if (i < v.n) {
                while (i < v.n && py_isspace(v.c[i])) i++;
                if (i != v.n) list_push(X, out, mk_str(X, s->s + v.off[i], s->len - v.off[i]));
            }
        } else {
            int64_t i = (int64_t)v.n - 1;
            while (maxc-- > 0) {
                while (i >= 0 && py_isspace(v.c[i])) i--;
                if (i < 0) break;
                int64_t j = i--;
                while (i >= 0 && !py_isspace(v.c[i])) i--;
                list_push(X, out, mk_str(X, s->s + v.off[i + 1], v.off[j + 1] - v.off[i + 1]));
            }
            if (i >= 0) {
                while (i >= 0 && py_isspace(v.c[i])) i--;
                if (i >= 0) list_push(X, out, mk_str(X, s->s, v.off[i + 1]));
            }
            for (size_t k = 0; k < out->n / 2; k++) {
                jv t = out->v[k];
                out->v[k] = out->v[out->n - 1 - k];
                out->v[out->n - 1 - k] = t;
            }
        }
        return mk_listv(out);
    }
    const jstr *p = arg_str(r, sep, "split");
    if (!p->len) jx_fail(X, "empty separator");
    if (!from_right) {
        size_t i = 0;
        while (maxc-- > 0) {
            const char *f = memmem(s->s + i, s->len - i, p->s, p->len);
            if (!f) break;
            size_t k = (size_t)(f - s->s);
            list_push(X, out, mk_str(X, s->s + i, k - i));
            i = k + p->len;
        }
        list_push(X, out, mk_str(X, s->s + i, s->len - i));
    } else {
        size_t end = s->len;
        while (maxc-- > 0 && end >= p->len) {
            size_t k = end - p->len;
            int found = 0;
            for (;;) {
                if (!memcmp(s->s + k, p->s, p->len)) {
                    found = 1;
                    break;
                }
                if (k == 0) break;
                k--;
            }
            if (!found) break;
            list_push(X, out, mk_str(X, s->s + k + p->len, end - k - p->len));
            end = k;
        }
        list_push(X, out, mk_str(X, s->s, end));
        for (size_t k = 0; k < out->n / 2; k++) {
            jv t = out->v[k];
            out->v[k] = out->v[out->n - 1 - k];
            out->v[out->n - 1 - k] = t;
        }
    }
    return mk_listv(out);
}

static const char *const P_SPLIT[] = {"sep", "maxsplit"};
static jv m_split(R *r, jv self, jargs *a) {
    jv p[2];
    bind_args(r, a, "split", P_SPLIT, 2, p);
    return split_impl(r, self.u.s, p[0], p[1], 0);
}
static jv m_rsplit(R *r, jv self, jargs *a) {
    jv p[2];
    bind_args(r, a, "rsplit", P_SPLIT, 2, p);
    return split_impl(r, self.u.s, p[0], p[1], 1);
}

static int is_linebreak(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
           c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
}

static jlist *splitlines_impl(R *r, const jstr *s, int keepends) {
    cps v = to_cps(r, s);
    jlist *out = list_new(X, 0);
    size_t i = 0;
    while (i < v.n) {
        size_t j = i;
        while (j < v.n && !is_linebreak(v.c[j])) j++;
        size_t eol = j;
        if (j < v.n) {
            if (v.c[j] == '\r' && j + 1 < v.n && v.c[j + 1] == '\n')
                j += 2;
            else
                j++;
            if (keepends) eol = j;
        }
        list_push(X, out, mk_str(X, s->s + v.off[i], v.off[eol] - v.off[i]));
        i = j;
    }
    return out;
}

static const char *const P_KEEPENDS[] = {"keepends"};
static jv m_splitlines(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "splitlines", P_KEEPENDS, 1, p);
    return mk_listv(splitlines_impl(r, self.u.s, truthy(p[0])));
}

static int affix_match(R *r, const jstr *s, jv pre, int end, const char *fname) {
    if (pre.t == J_LIST && pre.u.l->tuple) {
        for (size_t i = 0; i < pre.u.l->n; i++)
            if (affix_match(r, s, pre.u.l->v[i], end, fname)) return 1;
        return 0;
    }
    if (pre.t == J_UNDEF) fail_undef(r, pre);
    if (pre.t != J_STR)
        jx_fail(X, "%s first arg must be str or a tuple of str, not %s", fname, type_name(pre));
    const jstr *p = pre.u.s;
    if (p->len > s->len) return 0;
    return !memcmp(s->s + (end ? s->len - p->len : 0), p->s, p->len);
}

static const char *const P_PREFIX[] = {"prefix"};
static jv m_startswith(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "startswith", P_PREFIX, 1, p);
    if (p[0].t == J_MISSING) jx_fail(X, "startswith() takes at least 1 argument");
    return mk_bool(affix_match(r, self.u.s, p[0], 0, "startswith"));
}
static jv m_endswith(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "endswith", P_PREFIX, 1, p);
    if (p[0].t == J_MISSING) jx_fail(X, "endswith() takes at least 1 argument");
    return mk_bool(affix_match(r, self.u.s, p[0], 1, "endswith"));
}

static jv replace_impl(R *r, const jstr *s, const jstr *old, const jstr *new, int64_t count) {
    if (count < 0) count = INT64_MAX;
    jbuf b = {0};
    if (!old->len) {
        cps v = to_cps(r, s);
        for (size_t i = 0; i <= v.n; i++) {
            if (count > 0) {
                jb_put(X, &b, new->s, new->len);
                count--;
            }
            if (i < v.n) jb_put(X, &b, s->s + v.off[i], v.off[i + 1] - v.off[i]);
        }
        return jb_value(X, &b);
    }
    size_t i = 0;
    while (count > 0) {
        const char *f = memmem(s->s + i, s->len - i, old->s, old->len);
        if (!f) break;
        size_t k = (size_t)(f - s->s);
        jb_put(X, &b, s->s + i, k - i);
        jb_put(X, &b, new->s, new->len);
        i = k + old->len;
        count--;
    }
    jb_put(X, &b, s->s + i, s->len - i);
    return jb_value(X, &b);
}

static const char *const P_REPLACE[] = {"old", "new", "count"};
static jv m_replace(R *r, jv self, jargs *a) {
    jv p[3];
    bind_args(r, a, "replace", P_REPLACE, 3, p);
    if (p[1].t == J_MISSING) jx_fail(X, "replace() takes at least 2 arguments");
    int64_t count = p[2].t == J_MISSING ? -1 : arg_int(r, p[2], "replace");
    return replace_impl(r, self.u.s, arg_str(r, p[0], "replace"), arg_str(r, p[1], "replace"),
                        count);
}

/* Byte offset of the first (or last) occurrence of sub, or -1. */
static int64_t find_impl(const jstr *s, const jstr *sub, int last) {
    if (!last) {
        if (!sub->len) return 0;
        const char *f = memmem(s->s, s->len, sub->s, sub->len);
        return f ? f - s->s : -1;
    }
    if (sub->len > s->len) return -1;
    for (size_t k = s->len - sub->len + 1; k-- > 0;)
        if (!memcmp(s->s + k, sub->s, sub->len)) return (int64_t)k;
    return -1;
}

static const char *const P_SUB[] = {"sub"};
static jv find_common(R *r, jv self, jargs *a, const char *fname, int last, int raise) {
    jv p[1];
    bind_args(r, a, fname, P_SUB, 1, p);
    const jstr *sub = arg_str(r, p[0], fname);
    int64_t off = find_impl(self.u.s, sub, last);
    if (off < 0) {
        if (raise) jx_fail(X, "substring not found");
        return mk_int(-1);
    }
    return mk_int((int64_t)u8_len(self.u.s->s, (size_t)off));
}
static jv m_find(R *r, jv self, jargs *a) {
    return find_common(r, self, a, "find", 0, 0);
}
static jv m_rfind(R *r, jv self, jargs *a) {
    return find_common(r, self, a, "rfind", 1, 0);
}
static jv m_index(R *r, jv self, jargs *a) {
    return find_common(r, self, a, "index", 0, 1);
}
static jv m_rindex(R *r, jv self, jargs *a) {
    return find_common(r, self, a, "rindex", 1, 1);
}

static jv m_count(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "count", P_SUB, 1, p);
    const jstr *s = self.u.s, *sub = arg_str(r, p[0], "count");
    if (!sub->len) return mk_int((int64_t)u8_len(s->s, s->len) + 1);
    int64_t k = 0;
    size_t i = 0;
    for (;;) {
        const char *f = memmem(s->s + i, s->len - i, sub->s, sub->len);
        if (!f) break;
        k++;
        i = (size_t)(f - s->s) + sub->len;
    }
    return mk_int(k);
}

static jv str_pred(R *r, jv self, jargs *a, const char *fname, int kind) {
    no_args(r, a, fname);
    cps v = to_cps(r, self.u.s);
    if (!v.n) return mk_bool(0);
    int cased = 0;
    for (size_t i = 0; i < v.n; i++) {
        uint32_t c = v.c[i];
        int k = cp_cat(c);
        switch (kind) {
        case 'a':
            if (!py_isalpha(c)) return mk_bool(0);
            break;
        case 'n':
            if (!py_isalnum(c)) return mk_bool(0);
            break;
        case 'd':
            if (!py_isdigit(c)) return mk_bool(0);
            break;
        case 's':
            if (!py_isspace(c)) return mk_bool(0);
            break;
        case 'A':
            if (c >= 0x80) return mk_bool(0);
            break;
        case 'l':
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) return mk_bool(0);
            if (k == UTF8PROC_CATEGORY_LL) cased = 1;
            break;
        case 'u':
            if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return mk_bool(0);
            if (k == UTF8PROC_CATEGORY_LU) cased = 1;
            break;
        }
    }
    return mk_bool((kind == 'l' || kind == 'u') ? cased : 1);
}
static jv m_isalpha(R *r, jv s, jargs *a) {
    return str_pred(r, s, a, "isalpha", 'a');
}
static jv m_isalnum(R *r, jv s, jargs *a) {
    return str_pred(r, s, a, "isalnum", 'n');
}
static jv m_isdigit(R *r, jv s, jargs *a) {
    return str_pred(r, s, a, "isdigit", 'd');
}
static jv m_isspace(R *r, jv s, jargs *a) {
    return str_pred(r, s, a, "isspace", 's');
}
static jv m_islower(R *r, jv s, jargs *a) {
    return str_pred(r, s, a, "islower", 'l');
}
static jv m_isupper(R *r, jv s, jargs *a) {
    return str_pred(r, s, a, "isupper", 'u');
}
static jv m_isascii(R *r, jv s, jargs *a) {
    no_args(r, a, "isascii");
    for (size_t i = 0; i < s.u.s->len; i++)
        if ((unsigned char)s.u.s->s[i] >= 0x80) return mk_bool(0);
    return mk_bool(1);
}

static jv pad_impl(R *r, jv self, jargs *a, const char *fname, int mode) {
    static const char *const P[] = {"width", "fillchar"};
    jv p[2];
    bind_args(r, a, fname, P, 2, p);
    int64_t width = arg_int(r, p[0], fname);
    const jstr *fill = p[1].t == J_MISSING ? NULL : arg_str(r, p[1], fname);
    if (fill && u8_len(fill->s, fill->len) != 1)
        jx_fail(X, "The fill character must be exactly one character long");
    const jstr *s = self.u.s;
    int64_t len = (int64_t)u8_len(s->s, s->len);
    if (width <= len) return self;
    if (width > (int64_t)X->max_str) jx_fail(X, "string too long");
    int64_t marg = width - len, left;
    if (mode == 'c')
        left = marg / 2 + (marg & width & 1);
    else
        left = mode == 'r' ? marg : 0;
    jbuf b = {0};
    for (int64_t i = 0; i < left; i++) jb_put(X, &b, fill ? fill->s : " ", fill ? fill->len : 1);
    jb_put(X, &b, s->s, s->len);
    for (int64_t i = left; i < marg; i++) jb_put(X, &b, fill ? fill->s : " ", fill ? fill->len : 1);
    return jb_value(X, &b);
}
static jv m_center(R *r, jv s, jargs *a) {
    return pad_impl(r, s, a, "center", 'c');
}
static jv m_ljust(R *r, jv s, jargs *a) {
    return pad_impl(r, s, a, "ljust", 'l');
}
static jv m_rjust(R *r, jv s, jargs *a) {
    return pad_impl(r, s, a, "rjust", 'r');
}

static jv m_zfill(R *r, jv self, jargs *a) {
    static const char *const P[] = {"width"};
    jv p[1];
    bind_args(r, a, "zfill", P, 1, p);
    int64_t width = arg_int(r, p[0], "zfill");
    const jstr *s = self.u.s;
    int64_t len = (int64_t)u8_len(s->s, s->len);
    if (width <= len) return self;
    if (width > (int64_t)X->max_str) jx_fail(X, "string too long");
    jbuf b = {0};
    size_t i = 0;
    if (s->len && (s->s[0] == '+' || s->s[0] == '-')) jb_putc(X, &b, s->s[i++]);
    for (int64_t k = 0; k < width - len; k++) jb_putc(X, &b, '0');
    jb_put(X, &b, s->s + i, s->len - i);
    return jb_value(X, &b);
}

static jv partition_impl(R *r, jv self, jargs *a, const char *fname, int last) {
    static const char *const P[] = {"sep"};
    jv p[1];
    bind_args(r, a, fname, P, 1, p);
    const jstr *s = self.u.s, *sep = arg_str(r, p[0], fname);
    if (!sep->len) jx_fail(X, "empty separator");
    int64_t off = find_impl(s, sep, last);
    jlist *l = list_new(X, 3);
    l->tuple = 1;
    jv empty = mk_str(X, "", 0);
    if (off < 0) {
        list_push(X, l, last ? empty : self);
        list_push(X, l, empty);
        list_push(X, l, last ? self : empty);
    } else {
        list_push(X, l, mk_str(X, s->s, (size_t)off));
        list_push(X, l, mk_strv(sep));
        list_push(X, l, mk_str(X, s->s + off + sep->len, s->len - (size_t)off - sep->len));
    }
    return mk_listv(l);
}
static jv m_partition(R *r, jv s, jargs *a) {
    return partition_impl(r, s, a, "partition", 0);
}
static jv m_rpartition(R *r, jv s, jargs *a) {
    return partition_impl(r, s, a, "rpartition", 1);
}

static jv m_casefold(R *r, jv self, jargs *a) {
    no_args(r, a, "casefold");
    cps v = to_cps(r, self.u.s);
    jbuf b = {0};
    for (size_t i = 0; i < v.n; i++) {
        if (v.c[i] == 0xDF)
            jb_puts(X, &b, "ss");
        else
            jb_case(X, &b, v.c[i], 'l');
    }
    return jb_value(X, &b);
}

static jv m_expandtabs(R *r, jv self, jargs *a) {
    static const char *const P[] = {"tabsize"};
    jv p[1];
    bind_args(r, a, "expandtabs", P, 1, p);
    int64_t ts = p[0].t == J_MISSING ? 8 : arg_int(r, p[0], "expandtabs");
    cps v = to_cps(r, self.u.s);
    jbuf b = {0};
    int64_t col = 0;
    for (size_t i = 0; i < v.n; i++) {
        uint32_t c = v.c[i];
        if (c == '\t') {
            if (ts > 0) {
                int64_t k = ts - col % ts;
                if (k > (int64_t)X->max_str) jx_fail(X, "string too long");
                for (int64_t j = 0; j < k; j++) jb_putc(X, &b, ' ');
                col += k;
            }
        } else {
            jb_putcp(X, &b, c);
            col = (c == '\n' || c == '\r') ? 0 : col + 1;
        }
    }
    return jb_value(X, &b);
}

static jv m_istitle(R *r, jv self, jargs *a) {
    no_args(r, a, "istitle");
    cps v = to_cps(r, self.u.s);
    int prev_cased = 0, cased = 0;
    for (size_t i = 0; i < v.n; i++) {
        int k = cp_cat(v.c[i]);
        if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
            if (prev_cased) return mk_bool(0);
            prev_cased = cased = 1;
        } else if (k == UTF8PROC_CATEGORY_LL) {
            if (!prev_cased) return mk_bool(0);
            prev_cased = cased = 1;
        } else
            prev_cased = 0;
    }
    return mk_bool(cased);
}

static jv m_isprintable(R *r, jv self, jargs *a) {
    no_args(r, a, "isprintable");
    cps v = to_cps(r, self.u.s);
    for (size_t i = 0; i < v.n; i++)
        if (!py_isprintable(v.c[i])) return mk_bool(0);
    return mk_bool(1);
}

static jv m_isidentifier(R *r, jv self, jargs *a) {
    no_args(r, a, "isidentifier");
    cps v = to_cps(r, self.u.s);
    if (!v.n) return mk_bool(0);
    for (size_t i = 0; i < v.n; i++) {
        uint32_t c = v.c[i];
        int ok =
            c == '_' || py_isalpha(c) ||
            (i > 0 && (py_isdigit(c) || cp_cat(c) == UTF8PROC_CATEGORY_MN ||
                       cp_cat(c) == UTF8PROC_CATEGORY_MC || cp_cat(c) == UTF8PROC_CATEGORY_PC));
        if (!ok) return mk_bool(0);
    }
    return mk_bool(1);
}

static jv affix_remove(R *r, jv self, jargs *a, const char *fname, int end) {
    jv p[1];
    bind_args(r, a, fname, P_PREFIX, 1, p);
    const jstr *s = self.u.s, *x = arg_str(r, p[0], fname);
    if (x->len > s->len || memcmp(s->s + (end ? s->len - x->len : 0), x->s, x->len)) return self;
    return mk_str(X, s->s + (end ? 0 : x->len), s->len - x->len);
}
static jv m_removeprefix(R *r, jv s, jargs *a) {
    return affix_remove(r, s, a, "removeprefix", 0);
}
static jv m_removesuffix(R *r, jv s, jargs *a) {
    return affix_remove(r, s, a, "removesuffix", 1);
}

static jv m_join(R *r, jv self, jargs *a) {
    static const char *const P[] = {"iterable"};
    jv p[1];
    bind_args(r, a, "join", P, 1, p);
    if (p[0].t == J_MISSING) jx_fail(X, "join() takes exactly one argument");
    jlist *l = iterate(r, p[0]);
    jbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].t != J_STR)
            jx_fail(X, "sequence item %zu: expected str instance, %s found", i, type_name(l->v[i]));
        if (i) jb_put(X, &b, self.u.s->s, self.u.s->len);
        jb_put(X, &b, l->v[i].u.s->s, l->v[i].u.s->len);
    }
    return jb_value(X, &b);
}

/* ------------------------------------------------------------------------ */
/* dict, list, loop methods                                                 */

static jv m_get(R *r, jv self, jargs *a) {
    static const char *const P[] = {"key", "default"};
    jv p[2];
    bind_args(r, a, "get", P, 2, p);
    if (p[0].t == J_MISSING) jx_fail(X, "get expected at least 1 argument, got 0");
    long i = dict_find(self.u.d, p[0]);
    return i >= 0 ? self.u.d->v[i] : arg_or(p[1], mk_none());
}

static jlist *dict_items(R *r, jdict *d) {
    jlist *l = list_new(X, d->n);
    for (size_t i = 0; i < d->n; i++) {
        jlist *pair = list_new(X, 2);
        pair->tuple = 1;
        list_push(X, pair, d->k[i]);
        list_push(X, pair, d->v[i]);
        list_push(X, l, mk_listv(pair));
    }
    return l;
}

static jv m_items(R *r, jv self, jargs *a) {
    no_args(r, a, "items");
    return mk_listv(dict_items(r, self.u.d));
}
static jv m_keys(R *r, jv self, jargs *a) {
    no_args(r, a, "keys");
    return mk_listv(iterate(r, self));
}
static jv m_values(R *r, jv self, jargs *a) {
    no_args(r, a, "values");
    jlist *l = list_new(X, self.u.d->n);
    for (size_t i = 0; i < self.u.d->n; i++) list_push(X, l, self.u.d->v[i]);
    return mk_listv(l);
}
static jv m_copy(R *r, jv self, jargs *a) {
    no_args(r, a, "copy");
    if (self.t == J_DICT) {
        jdict *d = dict_new(X);
        for (size_t i = 0; i < self.u.d->n; i++) dict_set(X, d, self.u.d->k[i], self.u.d->v[i]);
        return mk_dictv(d, J_DICT);
    }
    jlist *l = list_new(X, self.u.l->n);
    for (size_t i = 0; i < self.u.l->n; i++) list_push(X, l, self.u.l->v[i]);
    return mk_listv(l);
}

static const char *const P_VALUE[] = {"value"};
static jv m_lcount(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "count", P_VALUE, 1, p);
    int64_t k = 0;
    for (size_t i = 0; i < self.u.l->n; i++) k += py_eq(self.u.l->v[i], p[0]);
    return mk_int(k);
}
static jv m_lindex(R *r, jv self, jargs *a) {
    jv p[1];
    bind_args(r, a, "index", P_VALUE, 1, p);
    for (size_t i = 0; i < self.u.l->n; i++)
        if (py_eq(self.u.l->v[i], p[0])) return mk_int((int64_t)i);
    jx_fail(X, "value is not in list");
    return mk_none();
}

static jv m_cycle(R *r, jv self, jargs *a) {
    if (a->nk) jx_fail(X, "cycle() takes no keyword arguments");
    if (!a->n) jx_fail(X, "no items for cycling given");
    return a->pos[self.u.lp->i % a->n];
}

static const mdef STR_METHODS[] = {
    {"capitalize", m_capitalize},
    {"casefold", m_casefold},
    {"center", m_center},
    {"count", m_count},
    {"encode", NULL},
    {"endswith", m_endswith},
    {"expandtabs", m_expandtabs},
    {"find", m_find},
    {"format", NULL},
    {"format_map", NULL},
    {"index", m_index},
    {"isalnum", m_isalnum},
    {"isalpha", m_isalpha},
    {"isascii", m_isascii},
    {"isdecimal", m_isdigit},
    {"isdigit", m_isdigit},
    {"isidentifier", m_isidentifier},
    {"islower", m_islower},
    {"isnumeric", m_isdigit},
    {"isprintable", m_isprintable},
    {"isspace", m_isspace},
    {"istitle", m_istitle},
    {"isupper", m_isupper},
    {"join", m_join},
    {"ljust", m_ljust},
    {"lower", m_lower},
    {"lstrip", m_lstrip},
    {"maketrans", NULL},
    {"partition", m_partition},
    {"removeprefix", m_removeprefix},
    {"removesuffix", m_removesuffix},
    {"replace", m_replace},
    {"rfind", m_rfind},
    {"rindex", m_rindex},
    {"rjust", m_rjust},
    {"rpartition", m_rpartition},
    {"rsplit", m_rsplit},
    {"rstrip", m_rstrip},
    {"split", m_split},
    {"splitlines", m_splitlines},
    {"startswith", m_startswith},
    {"strip", m_strip},
    {"swapcase", m_swapcase},
    {"title", m_title},
    {"translate", NULL},
    {"upper", m_upper},
    {"zfill", m_zfill},
    {NULL, NULL},
};

static const mdef DICT_METHODS[] = {
    {"copy", m_copy}, {"fromkeys", NULL},   {"get", m_get}, {"items", m_items},
    {"keys", m_keys}, {"values", m_values}, {NULL, NULL},
};

static const mdef LIST_METHODS[] = {
    {"copy", m_copy},
    {"count", m_lcount},
    {"index", m_lindex},
    {NULL, NULL},
};

static const mdef TUPLE_METHODS[] = {
    {"count", m_lcount},
    {"index", m_lindex},
    {NULL, NULL},
};

static const mdef LOOP_CYCLE = {"cycle", m_cycle};

/* Attributes the sandbox hides because they mutate (they read as undefined). */
static const char *const UNSAFE_LIST[] = {"append", "clear",   "extend", "insert", "pop",
                                          "remove", "reverse", "sort",   NULL};
static const char *const UNSAFE_DICT[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};

static const mdef *mfind(const mdef *t, const char *name) {
    for (; t->name; t++)
        if (!strcmp(t->name, name)) return t;
    return NULL;
}

static int sfind(const char *const *t, const char *name) {
    for (; *t; t++)
        if (!strcmp(*t, name)) return 1;
    return 0;
}

static const mdef *find_method(jv obj, const char *name, int *unsafe) {
    const mdef *m = NULL;
    *unsafe = 0;
    switch (obj.t) {
    case J_STR:
        m = mfind(STR_METHODS, name);
        break;
    case J_DICT:
        m = mfind(DICT_METHODS, name);
        *unsafe = !m && sfind(UNSAFE_DICT, name);
        break;
    case J_LIST:
        m = mfind(obj.u.l->tuple ? TUPLE_METHODS : LIST_METHODS, name);
        *unsafe = !m && !obj.u.l->tuple && sfind(UNSAFE_LIST, name);
        break;
    case J_LOOP:
        if (!strcmp(name, "cycle")) return &LOOP_CYCLE;
        break;
    default:
        break;
    }
    return m;
}

static jv loop_attr(R *r, jloop *lp, const char *name, jv self) {
    (void)self;
    int64_t i = lp->i, n = lp->n;
    if (!strcmp(name, "index")) return mk_int(i + 1);
    if (!strcmp(name, "index0")) return mk_int(i);
    if (!strcmp(name, "revindex")) return mk_int(n - i);
    if (!strcmp(name, "revindex0")) return mk_int(n - i - 1);
    if (!strcmp(name, "first")) return mk_bool(i == 0);
    if (!strcmp(name, "last")) return mk_bool(i == n - 1);
    if (!strcmp(name, "length")) return mk_int(n);
    if (!strcmp(name, "depth")) return mk_int(1);
    if (!strcmp(name, "depth0")) return mk_int(0);
    if (!strcmp(name, "previtem"))
        return i > 0 ? lp->items->v[i - 1] : mk_undef("there is no previous item");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? lp->items->v[i + 1] : mk_undef("there is no next item");
    (void)r;
    return mk_undef(name);
}

/* ------------------------------------------------------------------------ */
/* Global functions                                                         */

static jv g_range(R *r, jv self, jargs *a) {
    (void)self;
    if (a->nk) jx_fail(X, "range() takes no keyword arguments");
    if (a->n < 1 || a->n > 3) jx_fail(X, "range expected 1 to 3 arguments, got %d", a->n);
    int64_t start = 0, stop, step = 1;
    if (a->n == 1)
        stop = arg_int(r, a->pos[0], "range");
    else {
        start = arg_int(r, a->pos[0], "range");
        stop = arg_int(r, a->pos[1], "range");
        if (a->n == 3) step = arg_int(r, a->pos[2], "range");
    }
    if (step == 0) jx_fail(X, "range() arg 3 must not be zero");
    int64_t cnt = 0;
    if (step > 0 && start < stop)
        cnt = (int64_t)(((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)step) + 1;
    if (step < 0 && start > stop)
        cnt =
            (int64_t)(((uint64_t)start - (uint64_t)stop - 1) / ((uint64_t)0 - (uint64_t)step)) + 1;
    if (cnt > MAX_RANGE)
        jx_fail(X, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
                MAX_RANGE);
    jlist *l = list_new(X, (size_t)cnt);
    for (int64_t k = 0; k < cnt; k++) list_push(X, l, mk_int(start + k * step));
    return mk_listv(l);
}

/* dict(*args, **kwargs) into d. */
static void dict_from_args(R *r, jdict *d, jargs *a, const char *fname) {
    if (a->n > 1) jx_fail(X, "%s expected at most 1 argument, got %d", fname, a->n);
    if (a->n == 1) {
        jv src = a->pos[0];
        if (src.t == J_DICT || src.t == J_NS) {
            for (size_t i = 0; i < src.u.d->n; i++) dict_set(X, d, src.u.d->k[i], src.u.d->v[i]);
        } else {
            jlist *l = iterate(r, src);
            for (size_t i = 0; i < l->n; i++) {
                jlist *pair = iterate(r, l->v[i]);
                if (pair->n != 2)
                    jx_fail(X,
                            "dictionary update sequence element #%zu has length %zu; 2 is required",
                            i, pair->n);
                check_hashable(r, pair->v[0]);
                dict_set(X, d, pair->v[0], pair->v[1]);
            }
        }
    }
    for (int k = 0; k < a->nk; k++) dict_set(X, d, mk_strv(a->kn[k]), a->kv[k]);
}

static jv g_dict(R *r, jv self, jargs *a) {
    (void)self;
    jdict *d = dict_new(X);
    dict_from_args(r, d, a, "dict");
    return mk_dictv(d, J_DICT);
}

static void check_ns_name(R *r, jv k) {
    if (k.t == J_STR && k.u.s->len && k.u.s->s[0] == '_')
        jx_fail(X,
                "Chat templates cannot store underscore-prefixed attributes on a namespace, but "
                "got '%s'. Please rename the attribute.",
                k.u.s->s);
}

static jv g_namespace(R *r, jv self, jargs *a) {
    (void)self;
    jdict *d = dict_new(X);
    dict_from_args(r, d, a, "namespace");
    for (size_t i = 0; i < d->n; i++) check_ns_name(r, d->k[i]);
    return mk_dictv(d, J_NS);
}

static jv g_raise(R *r, jv self, jargs *a) {
    (void)self;
    static const char *const P[] = {"message"};
    jv p[1];
    bind_args(r, a, "raise_exception", P, 1, p);
    jx_fail(X, "%s", to_s(r, arg_or(p[0], mk_strz(X, "")))->s);
    return mk_none();
}

static jv g_strftime_now(R *r, jv self, jargs *a) {
    (void)self;
    static const char *const P[] = {"format"};
    jv p[1];
    bind_args(r, a, "strftime_now", P, 1, p);
    const jstr *fmt = arg_str(r, p[0], "strftime_now");
    time_t now = time(NULL);
    struct tm tmv;
    if (!localtime_r(&now, &tmv)) jx_fail(X, "localtime failed");
    char buf[512];
    size_t n = fmt->len ? strftime(buf, sizeof buf, fmt->s, &tmv) : 0;
    if (fmt->len && n == 0) buf[0] = 0;
    return mk_str(X, buf, n);
}

static const mdef GLOBALS[] = {
    {"range", g_range},
    {"dict", g_dict},
    {"namespace", g_namespace},
    {"raise_exception", g_raise},
    {"strftime_now", g_strftime_now},
    {NULL, NULL},
};

/* ------------------------------------------------------------------------ */
/* JSON output (HF's tojson: json.dumps with ensure_ascii=False)            */

typedef struct jdump {
    const jstr *indent; /* NULL: compact */
    const char *item_sep, *key_sep;
    int ensure_ascii, sort_keys;
} jdump;

static void json_str(R *r, jbuf *b, const char *s, size_t n, int ensure_ascii) {
    jb_putc(X, b, '"');
    size_t i = 0, a;
    while (i < n) {
        uint32_t c = u8_dec(s + i, n - i, &a);
        switch (c) {
        case '"':
            jb_puts(X, b, "\\\"");
            break;
        case '\\':
            jb_puts(X, b, "\\\\");
            break;
        case '\n':
            jb_puts(X, b, "\\n");
            break;
        case '\r':
            jb_puts(X, b, "\\r");
            break;
        case '\t':
            jb_puts(X, b, "\\t");
            break;
        case '\b':
            jb_puts(X, b, "\\b");
            break;
        case '\f':
            jb_puts(X, b, "\\f");
            break;
        default:
            if (c < 0x20)
                jb_printf(X, b, "\\u%04x", c);
            else if (ensure_ascii && c >= 0x80) {
                if (c >= 0x10000) {
                    uint32_t v = c - 0x10000;
                    jb_printf(X, b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else
                    jb_printf(X, b, "\\u%04x", c);
            } else
                jb_put(X, b, s + i, a);
        }
        i += a;
    }
    jb_putc(X, b, '"');
}

static void json_float(R *r, jbuf *b, double f) {
    char tmp[48];
    if (isnan(f))
        jb_puts(X, b, "NaN");
    else if (isinf(f))
        jb_puts(X, b, f < 0 ? "-Infinity" : "Infinity");
    else {
        fmt_float(f, tmp, sizeof tmp);
        jb_puts(X, b, tmp);
    }
}

static void json_nl(R *r, jbuf *b, const jdump *o, int level) {
    if (!o->indent) return;
    jb_putc(X, b, '\n');
    for (int i = 0; i < level; i++) jb_put(X, b, o->indent->s, o->indent->len);
}

static void sort_values(R *r, jv *keys, jv *vals, size_t n, int reverse);

static void json_dump(R *r, jbuf *b, jv v, const jdump *o, int level) {
    if (level > 100) jx_fail(X, "Circular reference detected");
    switch (v.t) {
    case J_NONE:
        jb_puts(X, b, "null");
        return;
    case J_BOOL:
        jb_puts(X, b, v.u.b ? "true" : "false");
        return;
    case J_INT:
        jb_printf(X, b, "%" PRId64, v.u.i);
        return;
    case J_FLOAT:
        json_float(r, b, v.u.f);
        return;
    case J_STR:
        json_str(r, b, v.u.s->s, v.u.s->len, o->ensure_ascii);
        return;
    case J_LIST: {
        jlist *l = v.u.l;
        if (!l->n) {
            jb_puts(X, b, "[]");
            return;
        }
        jb_putc(X, b, '[');
        json_nl(r, b, o, level + 1);
        for (size_t i = 0; i < l->n; i++) {
            if (i) {
                jb_puts(X, b, o->item_sep);
                json_nl(r, b, o, level + 1);
            }
            json_dump(r, b, l->v[i], o, level + 1);
        }
        json_nl(r, b, o, level);
        jb_putc(X, b, ']');
        return;
    }
    case J_DICT: {
        jdict *d = v.u.d;
        if (!d->n) {
            jb_puts(X, b, "{}");
            return;
        }
        jv *keys = d->k, *vals = d->v;
        if (o->sort_keys) {
            keys = jx_alloc(X, d->n * sizeof(jv));
            vals = jx_alloc(X, d->n * sizeof(jv));
            memcpy(keys, d->k, d->n * sizeof(jv));
            memcpy(vals, d->v, d->n * sizeof(jv));
            sort_values(r, keys, vals, d->n, 0);
        }
        jb_putc(X, b, '{');
        json_nl(r, b, o, level + 1);
        for (size_t i = 0; i < d->n; i++) {
            if (i) {
                jb_puts(X, b, o->item_sep);
                json_nl(r, b, o, level + 1);
            }
            jv k = keys[i];
            switch (k.t) {
            case J_STR:
                json_str(r, b, k.u.s->s, k.u.s->len, o->ensure_ascii);
                break;
            case J_NONE:
                jb_puts(X, b, "\"null\"");
                break;
            case J_BOOL:
                jb_puts(X, b, k.u.b ? "\"true\"" : "\"false\"");
                break;
            case J_INT:
                jb_printf(X, b, "\"%" PRId64 "\"", k.u.i);
                break;
            case J_FLOAT:
                jb_putc(X, b, '"');
                json_float(r, b, k.u.f);
                jb_putc(X, b, '"');
                break;
            default:
                jx_fail(X, "keys must be str, int, float, bool or None, not %s", type_name(k));
            }
            jb_puts(X, b, o->key_sep);
            json_dump(r, b, vals[i], o, level + 1);
        }
        json_nl(r, b, o, level);
        jb_putc(X, b, '}');
        return;
    }
    default:
        jx_fail(X, "Object of type %s is not JSON serializable", type_name(v));
    }
}

/* ------------------------------------------------------------------------ */
/* Sorting (stable merge sort with Python's `<`)                            */

static int key_lt(R *r, jv a, jv b) {
    return py_order(r, OP_LT, a, b);
}

static void merge_sort(R *r, jv *k, jv *v, jv *tk, jv *tv, size_t n, int reverse) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(r, k, v, tk, tv, h, reverse);
    merge_sort(r, k + h, v + h, tk, tv, n - h, reverse);
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        /* take from the right only when strictly before the left element */
        int right_first = reverse ? key_lt(r, k[i], k[j]) : key_lt(r, k[j], k[i]);
        if (right_first) {
            tk[o] = k[j];
            tv[o++] = v[j++];
        } else {
            tk[o] = k[i];
            tv[o++] = v[i++];
        }
    }
    while (i < h) {
        tk[o] = k[i];
        tv[o++] = v[i++];
    }
    while (j < n) {
        tk[o] = k[j];
        tv[o++] = v[j++];
    }
    memcpy(k, tk, n * sizeof(jv));
    memcpy(v, tv, n * sizeof(jv));
}

/* Sort vals by keys (both permuted together). */
static void sort_values(R *r, jv *keys, jv *vals, size_t n, int reverse) {
    if (n < 2) return;
    jv *tk = jx_alloc(X, n * sizeof(jv)), *tv = jx_alloc(X, n * sizeof(jv));
    merge_sort(r, keys, vals, tk, tv, n, reverse);
}

/* ------------------------------------------------------------------------ */
/* Filters                                                                  */

typedef jv (*filter_fn)(R *r, jv v, jargs *a);
typedef int (*test_fn)(R *r, jv v, jargs *a);
struct fdef {
    const char *name;
    filter_fn fn; /* NULL: a jinja2 filter that is not supported */
};
struct tdef {
    const char *name;
    test_fn fn;
};

static jv lower_if_str(R *r, jv v) {
    return v.t == J_STR ? str_case(r, v.u.s, 'l') : v;
}

/* jinja's make_attrgetter: "a.b.0" looked up item by item. */
static jv attr_path(R *r, jv item, jv attr, jv dflt) {
    if (attr.t == J_MISSING || attr.t == J_NONE) return item;
    if (attr.t != J_STR) {
        item = get_item(r, item, attr);
        if (dflt.t != J_MISSING && dflt.t != J_NONE && item.t == J_UNDEF) item = dflt;
        return item;
    }
    const jstr *s = attr.u.s;
    size_t i = 0;
    for (;;) {
        const char *dot = memchr(s->s + i, '.', s->len - i);
        size_t e = dot ? (size_t)(dot - s->s) : s->len;
        jv key = mk_str(X, s->s + i, e - i);
        int digits = e > i;
        for (size_t k = i; k < e; k++) digits &= is_dig(s->s[k]);
        if (digits && e - i < 18) key = mk_int(strtoll(key.u.s->s, NULL, 10));
        item = get_item(r, item, key);
        if (dflt.t != J_MISSING && dflt.t != J_NONE && item.t == J_UNDEF) item = dflt;
        if (!dot) break;
        i = e + 1;
    }
    return item;
}

static jv sort_key(R *r, jv item, jv attr, int case_sensitive) {
    jv k = attr_path(r, item, attr, mk_missing());
    return case_sensitive ? k : lower_if_str(r, k);
}

static jv f_abs(R *r, jv v, jargs *a) {
    no_args(r, a, "abs");
    if (v.t == J_FLOAT) return mk_float(fabs(v.u.f));
    if (is_intlike(v)) {
        int64_t i = as_i(v);
        if (i == INT64_MIN) jx_fail(X, "integer overflow");
        return mk_int(i < 0 ? -i : i);
    }
    if (v.t == J_UNDEF) fail_undef(r, v);
    jx_fail(X, "bad operand type for abs(): '%s'", type_name(v));
    return v;
}

static jv f_attr(R *r, jv v, jargs *a) {
    static const char *const P[] = {"name"};
    jv p[1];
    bind_args(r, a, "attr", P, 1, p);
    return get_attr(r, v, to_s(r, p[0]), 0);
}

static jv f_capitalize(R *r, jv v, jargs *a) {
    no_args(r, a, "capitalize");
    return str_case(r, to_s(r, v), 'C');
}

static jv f_center(R *r, jv v, jargs *a) {
    static const char *const P[] = {"width"};
    jv p[1];
    bind_args(r, a, "center", P, 1, p);
    jv w = arg_or(p[0], mk_int(80));
    jargs b = {1, 0, &w, NULL, NULL};
    return pad_impl(r, mk_strv(to_s(r, v)), &b, "center", 'c');
}

static jv f_length(R *r, jv v, jargs *a) {
    no_args(r, a, "length");
    return mk_int(py_len(r, v));
}

static jv f_default(R *r, jv v, jargs *a) {
    static const char *const P[] = {"default_value", "boolean"};
    jv p[2];
    bind_args(r, a, "default", P, 2, p);
    if (v.t == J_UNDEF || (truthy(arg_or(p[1], mk_bool(0))) && !truthy(v)))
        return arg_or(p[0], mk_strz(X, ""));
    return v;
}

static jv f_dictsort(R *r, jv v, jargs *a) {
    static const char *const P[] = {"case_sensitive", "by", "reverse"};
    jv p[3];
    bind_args(r, a, "dictsort", P, 3, p);
    if (v.t != J_DICT) jx_fail(X, "dictsort needs a mapping, not %s", type_name(v));
    int pos = 0;
    if (p[1].t != J_MISSING) {
        const jstr *by = arg_str(r, p[1], "dictsort");
        if (!strcmp(by->s, "value"))
            pos = 1;
        else if (strcmp(by->s, "key"))
            jx_fail(X, "You can only sort by either \"key\" or \"value\"");
    }
    jlist *items = dict_items(r, v.u.d);
    jv *keys = jx_alloc(X, (items->n + 1) * sizeof(jv));
    for (size_t i = 0; i < items->n; i++) {
        jv k = items->v[i].u.l->v[pos];
        keys[i] = truthy(p[0]) ? k : lower_if_str(r, k);
    }
    sort_values(r, keys, items->v, items->n, truthy(p[2]));
    return mk_listv(items);
}

static jv f_escape(R *r, jv v, jargs *a) {
    no_args(r, a, "escape");
    const jstr *s = to_s(r, v);
    jbuf b = {0};
    for (size_t i = 0; i < s->len; i++) {
        switch (s->s[i]) {
        case '&':
            jb_puts(X, &b, "&amp;");
            break;
        case '<':
            jb_puts(X, &b, "&lt;");
            break;
        case '>':
            jb_puts(X, &b, "&gt;");
            break;
        case '"':
            jb_puts(X, &b, "&#34;");
            break;
        case '\'':
            jb_puts(X, &b, "&#39;");
            break;
        default:
            jb_putc(X, &b, s->s[i]);
        }
    }
    return jb_value(X, &b);
}

static jv f_first(R *r, jv v, jargs *a) {
    no_args(r, a, "first");
    jlist *l = iterate(r, v);
    return l->n ? l->v[0] : mk_undef("No first item, sequence was empty.");
}

static jv f_last(R *r, jv v, jargs *a) {
    no_args(r, a, "last");
    if (v.t != J_UNDEF && v.t != J_LIST && v.t != J_STR && v.t != J_DICT)
        jx_fail(X, "'%s' object is not reversible", type_name(v));
    jlist *l = iterate(r, v);
    return l->n ? l->v[l->n - 1] : mk_undef("No last item, sequence was empty.");
}

/* Python's float(str): optional whitespace, sign, digits with single
 * underscores, inf/nan. Returns 0 if the text is not a float. */
static int parse_py_float(const jstr *s, double *out) {
    size_t i = 0, n = s->len;
    while (i < n && py_isspace((unsigned char)s->s[i])) i++;
    while (n > i && py_isspace((unsigned char)s->s[n - 1])) n--;
    if (i == n || n - i > 400) return 0;
    char buf[410];
    size_t k = 0, j = i;
    if (s->s[j] == '+' || s->s[j] == '-') buf[k++] = s->s[j++];
    const char *rest = s->s + j;
    size_t rl = n - j;
    static const char *const words[] = {"inf", "infinity", "nan"};
    for (int w = 0; w < 3; w++)
        if (rl == strlen(words[w]) && !strncasecmp(rest, words[w], rl)) {
            memcpy(buf + k, rest, rl);
            buf[k + rl] = 0;
            *out = strtod(buf, NULL);
            return 1;
        }
    int digits = 0, seen_e = 0, seen_dot = 0;
    for (; j < n; j++) {
        char c = s->s[j];
        if (is_dig(c)) {
            digits++;
            buf[k++] = c;
        } else if (c == '_') {
            if (j == i || !is_dig(s->s[j - 1]) || j + 1 >= n || !is_dig(s->s[j + 1])) return 0;
        } else if (c == '.' && !seen_dot && !seen_e) {
            seen_dot = 1;
            buf[k++] = c;
        } else if ((c == 'e' || c == 'E') && !seen_e && digits) {
            seen_e = 1;
            buf[k++] = c;
            if (j + 1 < n && (s->s[j + 1] == '+' || s->s[j + 1] == '-')) buf[k++] = s->s[++j];
            if (j + 1 >= n || !is_dig(s->s[j + 1])) return 0;
        } else
            return 0;
    }
    if (!digits) return 0;
    buf[k] = 0;
    *out = strtod(buf, NULL);
    return 1;
}

/* Python's int(str, base). */
static int parse_py_int(const jstr *s, int64_t base, int64_t *out) {
    size_t i = 0, n = s->len;
    while (i < n && py_isspace((unsigned char)s->s[i])) i++;
    while (n > i && py_isspace((unsigned char)s->s[n - 1])) n--;
    int neg = 0;
    if (i < n && (s->s[i] == '+' || s->s[i] == '-')) neg = s->s[i++] == '-';
    if (base < 0 || base == 1 || base > 36) return 0;
    if (i + 1 < n && s->s[i] == '0') {
        char p = (char)(s->s[i + 1] | 0x20);
        int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
        if (pb && (base == 0 || base == pb)) {
            base = pb;
            i += 2;
            if (i < n && s->s[i] == '_') i++;
        }
    }
    if (base == 0) base = 10;
    if (i == n) return 0;
    uint64_t v = 0;
    for (size_t j = i; j < n; j++) {
        char c = s->s[j];
        if (c == '_') {
            if (j == i || j + 1 >= n || s->s[j + 1] == '_') return 0;
            continue;
        }
        int d = is_dig(c)                                ? c - '0'
                : (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? (c | 0x20) - 'a' + 10
                                                         : 99;
        if (d >= base) return 0;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return -1;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

static jv f_float(R *r, jv v, jargs *a) {
    static const char *const P[] = {"default"};
    jv p[1];
    bind_args(r, a, "float", P, 1, p);
    double f;
    if (v.t == J_UNDEF) fail_undef(r, v);
    if (is_num(v)) return mk_float(as_f(v));
    if (v.t == J_STR && parse_py_float(v.u.s, &f)) return mk_float(f);
    return arg_or(p[0], mk_float(0.0));
}

static jv f_int(R *r, jv v, jargs *a) {
    static const char *const P[] = {"default", "base"};
    jv p[2];
    bind_args(r, a, "int", P, 2, p);
    jv dflt = arg_or(p[0], mk_int(0));
    if (v.t == J_UNDEF) fail_undef(r, v);
    if (is_intlike(v)) return mk_int(as_i(v));
    double f;
    if (v.t == J_FLOAT) {
        f = v.u.f;
        goto from_float;
    }
    if (v.t == J_STR) {
        int64_t base = p[1].t == J_MISSING ? 10 : arg_int(r, p[1], "int"), i;
        int rc = parse_py_int(v.u.s, base, &i);
        if (rc > 0) return mk_int(i);
        if (rc < 0) jx_fail(X, "integer too large");
        if (parse_py_float(v.u.s, &f)) goto from_float;
    }
    return dflt;
from_float:
    if (isnan(f)) return dflt;
    if (isinf(f) || fabs(f) >= 9.2233720368547758e18) jx_fail(X, "cannot convert float to integer");
    return mk_int((int64_t)f);
}

static jv f_format(R *r, jv v, jargs *a) {
    if (a->n && a->nk) jx_fail(X, "can't handle positional and keyword arguments at the same time");
    if (a->nk) {
        jdict *d = dict_new(X);
        for (int k = 0; k < a->nk; k++) dict_set(X, d, mk_strv(a->kn[k]), a->kv[k]);
        return py_percent(r, to_s(r, v), mk_dictv(d, J_DICT));
    }
    jlist *t = list_new(X, (size_t)a->n);
    t->tuple = 1;
    for (int k = 0; k < a->n; k++) list_push(X, t, a->pos[k]);
    return py_percent(r, to_s(r, v), mk_listv(t));
}

static jv f_indent(R *r, jv v, jargs *a) {
    static const char *const P[] = {"width", "first", "blank"};
    jv p[3];
    bind_args(r, a, "indent", P, 3, p);
    if (v.t == J_UNDEF) fail_undef(r, v);
    if (v.t != J_STR) jx_fail(X, "indent needs a string, not %s", type_name(v));
    jv w = arg_or(p[0], mk_int(4));
    jbuf ind = {0};
    if (w.t == J_STR)
        jb_put(X, &ind, w.u.s->s, w.u.s->len);
    else {
        int64_t k = arg_int(r, w, "indent");
        for (int64_t i = 0; i < k; i++) jb_putc(X, &ind, ' ');
    }
    jbuf s = {0};
    jb_put(X, &s, v.u.s->s, v.u.s->len);
    jb_putc(X, &s, '\n');
    jlist *lines = splitlines_impl(r, jb_value(X, &s).u.s, 0);
    jbuf o = {0};
    if (truthy(p[2])) {
        for (size_t i = 0; i < lines->n; i++) {
            if (i) {
                jb_putc(X, &o, '\n');
                jb_put(X, &o, ind.p, ind.n);
            }
            jb_put(X, &o, lines->v[i].u.s->s, lines->v[i].u.s->len);
        }
    } else {
        for (size_t i = 0; i < lines->n; i++) {
            const jstr *ln = lines->v[i].u.s;
            if (i) {
                jb_putc(X, &o, '\n');
                if (ln->len) jb_put(X, &o, ind.p, ind.n);
            }
            jb_put(X, &o, ln->s, ln->len);
        }
    }
    if (truthy(p[1])) {
        jbuf f = {0};
        jb_put(X, &f, ind.p, ind.n);
        jb_put(X, &f, o.p, o.n);
        return jb_value(X, &f);
    }
    return jb_value(X, &o);
}

static jv f_items(R *r, jv v, jargs *a) {
    no_args(r, a, "items");
    if (v.t == J_UNDEF) return mk_listv(list_new(X, 0));
    if (v.t != J_DICT) jx_fail(X, "Can only get item pairs from a mapping.");
    return mk_listv(dict_items(r, v.u.d));
}

static jv f_join(R *r, jv v, jargs *a) {
    static const char *const P[] = {"d", "attribute"};
    jv p[2];
    bind_args(r, a, "join", P, 2, p);
    const jstr *d = to_s(r, arg_or(p[0], mk_strz(X, "")));
    jlist *l = iterate(r, v);
    jbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i) jb_put(X, &b, d->s, d->len);
        py_str(r, &b, attr_path(r, l->v[i], p[1], mk_missing()));
    }
    return jb_value(X, &b);
}

static jv f_list(R *r, jv v, jargs *a) {
    no_args(r, a, "list");
    jlist *l = iterate(r, v), *o = list_new(X, l->n);
    for (size_t i = 0; i < l->n; i++) list_push(X, o, l->v[i]);
    return mk_listv(o);
}

static jv f_lower(R *r, jv v, jargs *a) {
    no_args(r, a, "lower");
    return str_case(r, to_s(r, v), 'l');
}
static jv f_upper(R *r, jv v, jargs *a) {
    no_args(r, a, "upper");
    return str_case(r, to_s(r, v), 'u');
}

static jv apply_filter(R *r, const fdef *f, jv v, jargs *a);
static int apply_test(R *r, const tdef *t, jv v, jargs *a);

/* The arguments after the first k positional ones. */
static jargs args_rest(const jargs *a, int k) {
    jargs b = *a;
    b.n = a->n > k ? a->n - k : 0;
    b.pos = a->pos + (a->n > k ? k : a->n);
    return b;
}

static const jstr *arg_name(R *r, const jargs *a, int i, const char *what) {
    if (a->n <= i) jx_fail(X, "%s", what);
    return to_s(r, a->pos[i]);
}

static jv f_map(R *r, jv v, jargs *a) {
    jlist *out = list_new(X, 0);
    if (!truthy(v)) return mk_listv(out);
    jlist *l = iterate(r, v);
    if (a->n == 0 && a->nk) {
        static const char *const P[] = {"attribute", "default"};
        jv p[2];
        bind_args(r, a, "map", P, 2, p);
        if (p[0].t == J_MISSING) jx_fail(X, "map requires a filter argument");
        for (size_t i = 0; i < l->n; i++) list_push(X, out, attr_path(r, l->v[i], p[0], p[1]));
        return mk_listv(out);
    }
    const jstr *name = arg_name(r, a, 0, "map requires a filter argument");
    const fdef *f = find_filter(name->s);
    if (!f) jx_fail(X, "No filter named '%s'.", name->s);
    jargs rest = args_rest(a, 1);
    for (size_t i = 0; i < l->n; i++) list_push(X, out, apply_filter(r, f, l->v[i], &rest));
    return mk_listv(out);
}

static jv select_impl(R *r, jv v, jargs *a, int lookup_attr, int reject) {
    jlist *out = list_new(X, 0);
    if (!truthy(v)) return mk_listv(out);
    jlist *l = iterate(r, v);
    jv attr = mk_missing();
    int off = 0;
    if (lookup_attr) {
        if (a->n < 1) jx_fail(X, "Missing parameter for attribute name");
        attr = a->pos[0];
        off = 1;
    }
    const tdef *t = NULL;
    jargs rest = args_rest(a, off + 1);
    if (a->n > off) {
        const jstr *name = to_s(r, a->pos[off]);
        t = find_test(name->s);
        if (!t) jx_fail(X, "No test named '%s'.", name->s);
    }
    for (size_t i = 0; i < l->n; i++) {
        jv x = lookup_attr ? attr_path(r, l->v[i], attr, mk_missing()) : l->v[i];
        int ok = t ? apply_test(r, t, x, &rest) : truthy(x);
        if (ok != reject) list_push(X, out, l->v[i]);
    }
    return mk_listv(out);
}
static jv f_select(R *r, jv v, jargs *a) {
    return select_impl(r, v, a, 0, 0);
}
static jv f_reject(R *r, jv v, jargs *a) {
    return select_impl(r, v, a, 0, 1);
}
static jv f_selectattr(R *r, jv v, jargs *a) {
    return select_impl(r, v, a, 1, 0);
}
static jv f_rejectattr(R *r, jv v, jargs *a) {
    return select_impl(r, v, a, 1, 1);
}

static const char *const P_CS_ATTR[] = {"case_sensitive", "attribute"};

static jv minmax(R *r, jv v, jargs *a, int want_max) {
    jv p[2];
    bind_args(r, a, want_max ? "max" : "min", P_CS_ATTR, 2, p);
    jlist *l = iterate(r, v);
    if (!l->n) return mk_undef("No aggregated item, sequence was empty.");
    int cs = truthy(p[0]);
    jv best = l->v[0], bk = sort_key(r, best, p[1], cs);
    for (size_t i = 1; i < l->n; i++) {
        jv k = sort_key(r, l->v[i], p[1], cs);
        if (want_max ? py_order(r, OP_GT, k, bk) : py_order(r, OP_LT, k, bk)) {
            best = l->v[i];
            bk = k;
        }
    }
    return best;
}
static jv f_max(R *r, jv v, jargs *a) {
    return minmax(r, v, a, 1);
}
static jv f_min(R *r, jv v, jargs *a) {
    return minmax(r, v, a, 0);
}

static jv f_replace(R *r, jv v, jargs *a) {
    jv p[3];
    bind_args(r, a, "replace", P_REPLACE, 3, p);
    if (p[1].t == J_MISSING) jx_fail(X, "replace() needs 2 arguments");
    int64_t count = (p[2].t == J_MISSING || p[2].t == J_NONE) ? -1 : arg_int(r, p[2], "replace");
    return replace_impl(r, to_s(r, v), to_s(r, p[0]), to_s(r, p[1]), count);
}

static jv f_reverse(R *r, jv v, jargs *a) {
    no_args(r, a, "reverse");
    if (v.t == J_STR) return get_slice(r, v, mk_none(), mk_none(), mk_int(-1));
    jlist *l = iterate(r, v), *o = list_new(X, l->n);
    for (size_t i = l->n; i-- > 0;) list_push(X, o, l->v[i]);
    return mk_listv(o);
}

static jv f_round(R *r, jv v, jargs *a) {
    static const char *const P[] = {"precision", "method"};
    jv p[2];
    bind_args(r, a, "round", P, 2, p);
    int64_t prec = p[0].t == J_MISSING ? 0 : arg_int(r, p[0], "round");
    const char *method = p[1].t == J_MISSING ? "common" : arg_str(r, p[1], "round")->s;
    int m = !strcmp(method, "common")  ? 0
            : !strcmp(method, "ceil")  ? 1
            : !strcmp(method, "floor") ? 2
                                       : -1;
    if (m < 0) jx_fail(X, "method must be common, ceil or floor");
    if (v.t == J_UNDEF) fail_undef(r, v);
    if (!is_num(v)) jx_fail(X, "type %s doesn't define __round__ method", type_name(v));
    if (m == 0 && is_intlike(v)) {
        if (prec >= 0) return mk_int(as_i(v));
        jx_fail(X, "round() of an integer with negative precision is not supported");
    }
    double x = as_f(v);
    if (m) {
        double pw = pow(10.0, (double)prec);
        double y = m == 1 ? ceil(x * pw) : floor(x * pw);
        return mk_float(y / pw);
    }
    if (!isfinite(x)) return mk_float(x);
    if (prec > 300) return mk_float(x);
    if (prec >= 0) {
        char buf[512];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
        return mk_float(strtod(buf, NULL));
    }
    double pw = pow(10.0, (double)-prec);
    return mk_float(nearbyint(x / pw) * pw);
}

static jv f_safe(R *r, jv v, jargs *a) {
    no_args(r, a, "safe");
    return mk_strv(to_s(r, v));
}

static jv f_sort(R *r, jv v, jargs *a) {
    static const char *const P[] = {"reverse", "case_sensitive", "attribute"};
    jv p[3];
    bind_args(r, a, "sort", P, 3, p);
    jlist *l = iterate(r, v), *o = list_new(X, l->n);
    jv *keys = jx_alloc(X, (l->n + 1) * sizeof(jv));
    int cs = truthy(p[1]);
    for (size_t i = 0; i < l->n; i++) {
        list_push(X, o, l->v[i]);
        /* jinja's key is a list of attributes ("a,b"), so equal keys never
         * reach `<` (two undefined keys compare equal) */
        jv attr = p[2];
        jlist *k = list_new(X, 1);
        if (attr.t == J_STR) {
            jlist *parts = split_impl(r, attr.u.s, mk_strz(X, ","), mk_missing(), 0).u.l;
            for (size_t j = 0; j < parts->n; j++)
                list_push(X, k, sort_key(r, l->v[i], parts->v[j], cs));
        } else {
            list_push(X, k, sort_key(r, l->v[i], attr, cs));
        }
        keys[i] = mk_listv(k);
    }
    sort_values(r, keys, o->v, o->n, truthy(p[0]));
    return mk_listv(o);
}

static jv f_string(R *r, jv v, jargs *a) {
    no_args(r, a, "string");
    return mk_strv(to_s(r, v));
}

static jv f_sum(R *r, jv v, jargs *a) {
    static const char *const P[] = {"attribute", "start"};
    jv p[2];
    bind_args(r, a, "sum", P, 2, p);
    jv acc = arg_or(p[1], mk_int(0));
    if (acc.t == J_STR) jx_fail(X, "sum() can't sum strings [use ''.join(seq) instead]");
    jlist *l = iterate(r, v);
    for (size_t i = 0; i < l->n; i++)
        acc = arith(r, OP_ADD, acc, attr_path(r, l->v[i], p[0], mk_missing()));
    return acc;
}

static int title_sep(uint32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
}

static jv f_title(R *r, jv v, jargs *a) {
    no_args(r, a, "title");
    const jstr *s = to_s(r, v);
    cps c = to_cps(r, s);
    jbuf b = {0};
    int start = 1;
    for (size_t i = 0; i < c.n; i++) {
        if (title_sep(c.c[i])) {
            jb_putcp(X, &b, c.c[i]);
            start = 1;
        } else {
            jb_case(X, &b, c.c[i], start ? 'u' : 'l');
            start = 0;
        }
    }
    return jb_value(X, &b);
}

static jv f_tojson(R *r, jv v, jargs *a) {
    static const char *const P[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    jv p[4];
    bind_args(r, a, "tojson", P, 4, p);
    jdump o = {NULL, ", ", ": ", truthy(p[0]), truthy(p[3])};
    jv ind = p[1];
    if (ind.t == J_STR)
        o.indent = ind.u.s;
    else if (is_intlike(ind)) {
        jbuf b = {0};
        for (int64_t i = 0; i < as_i(ind) && i < 1000; i++) jb_putc(X, &b, ' ');
        o.indent = jb_value(X, &b).u.s;
    } else if (ind.t != J_MISSING && ind.t != J_NONE)
        jx_fail(X, "tojson: bad indent");
    if (o.indent) o.item_sep = ",";
    jv sep = p[2];
    if (sep.t == J_LIST) {
        if (sep.u.l->n != 2 || sep.u.l->v[0].t != J_STR || sep.u.l->v[1].t != J_STR)
            jx_fail(X, "tojson: separators must be a pair of strings");
        o.item_sep = sep.u.l->v[0].u.s->s;
        o.key_sep = sep.u.l->v[1].u.s->s;
    } else if (sep.t != J_MISSING && sep.t != J_NONE)
        jx_fail(X, "tojson: separators must be a pair of strings");
    jbuf b = {0};
    json_dump(r, &b, v, &o, 0);
    return jb_value(X, &b);
}

static jv f_trim(R *r, jv v, jargs *a) {
    jv p[1];
    bind_args(r, a, "trim", P_CHARS, 1, p);
    return strip_impl(r, to_s(r, v), p[0], 1, 1);
}

static jv f_unique(R *r, jv v, jargs *a) {
    jv p[2];
    bind_args(r, a, "unique", P_CS_ATTR, 2, p);
    jlist *l = iterate(r, v), *o = list_new(X, 0), *seen = list_new(X, 0);
    for (size_t i = 0; i < l->n; i++) {
        jv k = sort_key(r, l->v[i], p[1], truthy(p[0]));
        check_hashable(r, k);
        if (py_contains(r, mk_listv(seen), k)) continue;
        list_push(X, seen, k);
        list_push(X, o, l->v[i]);
    }
    return mk_listv(o);
}

static jv f_wordcount(R *r, jv v, jargs *a) {
    no_args(r, a, "wordcount");
    cps c = to_cps(r, to_s(r, v));
    int64_t n = 0;
    int in = 0;
    for (size_t i = 0; i < c.n; i++) {
        int w = py_isalnum(c.c[i]) || c.c[i] == '_';
        if (w && !in) n++;
        in = w;
    }
    return mk_int(n);
}

static const fdef FILTERS[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"batch", NULL},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"filesizeformat", NULL},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_escape},
    {"format", f_format},
    {"groupby", NULL},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"pprint", NULL},
    {"random", NULL},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"slice", NULL},
    {"sort", f_sort},
    {"string", f_string},
    {"striptags", NULL},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"truncate", NULL},
    {"unique", f_unique},
    {"upper", f_upper},
    {"urlencode", NULL},
    {"urlize", NULL},
    {"wordcount", f_wordcount},
    {"wordwrap", NULL},
    {"xmlattr", NULL},
    {NULL, NULL},
};

static const fdef *find_filter(const char *name) {
    for (const fdef *f = FILTERS; f->name; f++)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

static jv apply_filter(R *r, const fdef *f, jv v, jargs *a) {
    if (!f->fn) jx_fail(X, "filter '%s' is not supported", f->name);
    return f->fn(r, v, a);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */

static jv test_arg(R *r, jargs *a, const char *name) {
    static const char *const P[] = {"other"};
    jv p[1];
    bind_args(r, a, name, P, 1, p);
    if (p[0].t == J_MISSING) jx_fail(X, "test '%s' needs an argument", name);
    return p[0];
}

static int t_defined(R *r, jv v, jargs *a) {
    no_args(r, a, "defined");
    return v.t != J_UNDEF;
}
static int t_undefined(R *r, jv v, jargs *a) {
    return !t_defined(r, v, a);
}
static int t_none(R *r, jv v, jargs *a) {
    no_args(r, a, "none");
    return v.t == J_NONE;
}
static int t_boolean(R *r, jv v, jargs *a) {
    no_args(r, a, "boolean");
    return v.t == J_BOOL;
}
static int t_true(R *r, jv v, jargs *a) {
    no_args(r, a, "true");
    return v.t == J_BOOL && v.u.b;
}
static int t_false(R *r, jv v, jargs *a) {
    no_args(r, a, "false");
    return v.t == J_BOOL && !v.u.b;
}
static int t_integer(R *r, jv v, jargs *a) {
    no_args(r, a, "integer");
    return v.t == J_INT;
}
static int t_float(R *r, jv v, jargs *a) {
    no_args(r, a, "float");
    return v.t == J_FLOAT;
}
static int t_number(R *r, jv v, jargs *a) {
    no_args(r, a, "number");
    return is_num(v);
}
static int t_string(R *r, jv v, jargs *a) {
    no_args(r, a, "string");
    return v.t == J_STR;
}
static int t_mapping(R *r, jv v, jargs *a) {
    no_args(r, a, "mapping");
    return v.t == J_DICT;
}
static int t_iterable(R *r, jv v, jargs *a) {
    no_args(r, a, "iterable");
    return v.t == J_UNDEF || v.t == J_STR || v.t == J_LIST || v.t == J_DICT || v.t == J_LOOP;
}
static int t_sequence(R *r, jv v, jargs *a) {
    no_args(r, a, "sequence");
    return v.t == J_UNDEF || v.t == J_STR || v.t == J_LIST || v.t == J_DICT;
}
static int t_callable(R *r, jv v, jargs *a) {
    no_args(r, a, "callable");
    return v.t == J_FUNC || v.t == J_MACRO || v.t == J_LOOP || v.t == J_UNDEF;
}
static int t_odd(R *r, jv v, jargs *a) {
    no_args(r, a, "odd");
    return py_eq(arith(r, OP_MOD, v, mk_int(2)), mk_int(1));
}
static int t_even(R *r, jv v, jargs *a) {
    no_args(r, a, "even");
    return py_eq(arith(r, OP_MOD, v, mk_int(2)), mk_int(0));
}
static int t_divisibleby(R *r, jv v, jargs *a) {
    static const char *const P[] = {"num"};
    jv p[1];
    bind_args(r, a, "divisibleby", P, 1, p);
    if (p[0].t == J_MISSING) jx_fail(X, "divisibleby needs an argument");
    return py_eq(arith(r, OP_MOD, v, p[0]), mk_int(0));
}
static int t_eq(R *r, jv v, jargs *a) {
    return py_eq(v, test_arg(r, a, "eq"));
}
static int t_ne(R *r, jv v, jargs *a) {
    return !py_eq(v, test_arg(r, a, "ne"));
}
static int t_lt(R *r, jv v, jargs *a) {
    return py_order(r, OP_LT, v, test_arg(r, a, "lt"));
}
static int t_le(R *r, jv v, jargs *a) {
    return py_order(r, OP_LTEQ, v, test_arg(r, a, "le"));
}
static int t_gt(R *r, jv v, jargs *a) {
    return py_order(r, OP_GT, v, test_arg(r, a, "gt"));
}
static int t_ge(R *r, jv v, jargs *a) {
    return py_order(r, OP_GTEQ, v, test_arg(r, a, "ge"));
}
static int t_in(R *r, jv v, jargs *a) {
    return py_contains(r, test_arg(r, a, "in"), v);
}
static int t_sameas(R *r, jv v, jargs *a) {
    jv o = test_arg(r, a, "sameas");
    if (v.t != o.t) return 0;
    switch (v.t) {
    case J_NONE:
        return 1;
    case J_BOOL:
        return v.u.b == o.u.b;
    case J_INT:
        return v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256;
    case J_LIST:
    case J_DICT:
    case J_NS:
        return v.u.d == o.u.d;
    default:
        return 0;
    }
}
static int t_lower(R *r, jv v, jargs *a) {
    no_args(r, a, "lower");
    jargs none = {0};
    return m_islower(r, mk_strv(to_s(r, v)), &none).u.b;
}
static int t_upper(R *r, jv v, jargs *a) {
    no_args(r, a, "upper");
    jargs none = {0};
    return m_isupper(r, mk_strv(to_s(r, v)), &none).u.b;
}
static int t_escaped(R *r, jv v, jargs *a) {
    (void)v;
    no_args(r, a, "escaped");
    return 0;
}
static int t_filter(R *r, jv v, jargs *a) {
    no_args(r, a, "filter");
    return v.t == J_STR && find_filter(v.u.s->s);
}
static int t_test(R *r, jv v, jargs *a) {
    no_args(r, a, "test");
    return v.t == J_STR && find_test(v.u.s->s);
}

static const tdef TESTS[] = {
    {"!=", t_ne},
    {"<", t_lt},
    {"<=", t_le},
    {"==", t_eq},
    {">", t_gt},
    {">=", t_ge},
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {"greaterthan", t_gt},
    {"gt", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"lessthan", t_lt},
    {"lower", t_lower},
    {"lt", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
    {NULL, NULL},
};

static const tdef *find_test(const char *name) {
    for (const tdef *t = TESTS; t->name; t++)
        if (!strcmp(t->name, name)) return t;
    return NULL;
}

static int apply_test(R *r, const tdef *t, jv v, jargs *a) {
    return t->fn(r, v, a);
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */

enum { CTL_OK, CTL_BREAK, CTL_CONTINUE };

static scope *new_scope(R *r, scope *parent) {
    scope *s = jx_zalloc(X, sizeof *s);
    s->parent = parent;
    return s;
}

static void scope_set(R *r, scope *sc, const jstr *name, jv v) {
    dict_set(X, &sc->vars, mk_strv(name), v);
}

static jv lookup(R *r, scope *sc, const jstr *name) {
    for (scope *s = sc; s; s = s->parent) {
        long i = dict_find_s(&s->vars, name->s, name->len);
        if (i >= 0) return s->vars.v[i];
    }
    long i = dict_find_s(r->ctx, name->s, name->len);
    if (i >= 0) return r->ctx->v[i];
    const mdef *g = mfind(GLOBALS, name->s);
    if (g) return mk_func(r, g, mk_undef(NULL));
    return mk_undef(name->s);
}

static void eval_args(R *r, scope *sc, const jnode *n, jargs *a) {
    jlist *extra = NULL;
    jdict *kextra = NULL;
    jv *pos = n->nv ? jx_alloc(X, (size_t)n->nv * sizeof(jv)) : NULL;
    jv *kv = n->nw ? jx_alloc(X, (size_t)n->nw * sizeof(jv)) : NULL;
    for (int i = 0; i < n->nv; i++) pos[i] = eval(r, sc, n->v[i]);
    if (n->c) extra = iterate(r, eval(r, sc, n->c));
    for (int i = 0; i < n->nw; i++) kv[i] = eval(r, sc, n->w[i]);
    if (n->d) {
        jv d = eval(r, sc, n->d);
        if (d.t != J_DICT && d.t != J_UNDEF)
            jx_fail(X, "argument after ** must be a mapping, not %s", type_name(d));
        kextra = d.t == J_DICT ? d.u.d : NULL;
    }
    X->line = n->line;
    a->n = n->nv;
    a->nk = n->nw;
    a->pos = pos;
    a->kv = kv;
    a->kn = n->names;
    if (extra && extra->n) {
        a->pos = jx_alloc(X, ((size_t)n->nv + extra->n) * sizeof(jv));
        if (n->nv) memcpy(a->pos, pos, (size_t)n->nv * sizeof(jv));
        memcpy(a->pos + n->nv, extra->v, extra->n * sizeof(jv));
        a->n = n->nv + (int)extra->n;
    }
    if (kextra && kextra->n) {
        size_t nk = (size_t)n->nw + kextra->n;
        a->kn = jx_alloc(X, nk * sizeof(const jstr *));
        a->kv = jx_alloc(X, nk * sizeof(jv));
        for (int i = 0; i < n->nw; i++) {
            a->kn[i] = n->names[i];
            a->kv[i] = kv[i];
        }
        for (size_t i = 0; i < kextra->n; i++) {
            jv k = kextra->k[i];
            if (k.t != J_STR) jx_fail(X, "keywords must be strings");
            for (int j = 0; j < a->nk; j++)
                if (str_eq(a->kn[j], k.u.s->s, k.u.s->len))
                    jx_fail(X, "got multiple values for keyword argument '%s'", k.u.s->s);
            a->kn[a->nk] = k.u.s;
            a->kv[a->nk++] = kextra->v[i];
        }
    }
}

static int exec_body(R *r, scope *sc, const jnode *b);

static jv capture(R *r, scope *sc, const jnode *body, int *ctl) {
    jbuf b = {0}, *saved = r->out;
    r->out = &b;
    int c = exec_body(r, sc, body);
    if (ctl) *ctl = c;
    r->out = saved;
    return jb_value(X, &b);
}

static jv call_macro(R *r, jmacro *m, jargs *a) {
    const jnode *d = m->def;
    const char *mname = d->name->s;
    if (++r->macro_depth > MAX_MACRO_DEPTH) jx_fail(X, "macro calls nested too deeply");
    int np = d->nnames;
    if (a->n > np && !(d->op & MAC_VARARGS))
        jx_fail(X, "macro '%s' takes not more than %d argument(s)", mname, np);
    scope *ms = new_scope(r, m->closure);
    jv *vals = jx_alloc(X, ((size_t)np + 1) * sizeof(jv));
    for (int i = 0; i < np; i++) vals[i] = i < a->n ? a->pos[i] : mk_missing();
    jdict *kw = dict_new(X);
    jv caller = mk_undef("caller");
    for (int k = 0; k < a->nk; k++) {
        if ((d->op & MAC_CALLER) && !strcmp(a->kn[k]->s, "caller")) {
            caller = a->kv[k];
            continue;
        }
        int j = 0;
        while (j < np && strcmp(d->names[j]->s, a->kn[k]->s)) j++;
        if (j < np) {
            if (vals[j].t != J_MISSING)
                jx_fail(X, "macro '%s' got multiple values for argument '%s'", mname, a->kn[k]->s);
            vals[j] = a->kv[k];
        } else if (d->op & MAC_KWARGS) {
            dict_set(X, kw, mk_strv(a->kn[k]), a->kv[k]);
        } else {
            jx_fail(X, "macro '%s' takes no keyword argument '%s'", mname, a->kn[k]->s);
        }
    }
    for (int i = 0; i < np; i++) {
        jv v = vals[i];
        if (v.t == J_MISSING) v = d->w[i] ? eval(r, ms, d->w[i]) : mk_undef(d->names[i]->s);
        scope_set(r, ms, d->names[i], v);
    }
    if (d->op & MAC_VARARGS) {
        jlist *va = list_new(X, 0);
        va->tuple = 1;
        for (int i = np; i < a->n; i++) list_push(X, va, a->pos[i]);
        scope_set(r, ms, jstr_new(X, "varargs", 7), mk_listv(va));
    }
    if (d->op & MAC_KWARGS) scope_set(r, ms, jstr_new(X, "kwargs", 6), mk_dictv(kw, J_DICT));
    if (d->op & MAC_CALLER) scope_set(r, ms, jstr_new(X, "caller", 6), caller);
    jv out = capture(r, ms, d->c, NULL);
    r->macro_depth--;
    return out;
}

static jv call_value(R *r, jv f, jargs *a) {
    switch (f.t) {
    case J_FUNC:
        if (!f.u.fn->def->fn) jx_fail(X, "method '%s' is not supported", f.u.fn->def->name);
        return f.u.fn->def->fn(r, f.u.fn->self, a);
    case J_MACRO:
        return call_macro(r, f.u.m, a);
    case J_UNDEF:
        fail_undef(r, f);
        break;
    default:
        break;
    }
    jx_fail(X, "'%s' object is not callable", type_name(f));
    return mk_none();
}

static int compare(R *r, int op, jv a, jv b) {
    switch (op) {
    case OP_EQ:
        return py_eq(a, b);
    case OP_NE:
        return !py_eq(a, b);
    case OP_IN:
        return py_contains(r, b, a);
    case OP_NOTIN:
        return !py_contains(r, b, a);
    default:
        return py_order(r, op, a, b);
    }
}

static jv eval(R *r, scope *sc, const jnode *n) {
    enter(r);
    X->line = n->line;
    jv res, a, b;
    switch (n->kind) {
    case E_CONST:
        res = n->val;
        break;
    case E_NAME:
        res = lookup(r, sc, n->name);
        break;
    case E_LIST: {
        jlist *l = list_new(X, (size_t)n->nv);
        for (int i = 0; i < n->nv; i++) list_push(X, l, eval(r, sc, n->v[i]));
        l->tuple = n->op;
        res = mk_listv(l);
        break;
    }
    case E_DICT: {
        jdict *d = dict_new(X);
        for (int i = 0; i < n->nv; i++) {
            jv k = eval(r, sc, n->v[i]);
            check_hashable(r, k);
            dict_set(X, d, k, eval(r, sc, n->w[i]));
        }
        res = mk_dictv(d, J_DICT);
        break;
    }
    case E_ATTR:
        a = eval(r, sc, n->a);
        X->line = n->line;
        res = get_attr(r, a, n->name, 1);
        break;
    case E_ITEM:
        a = eval(r, sc, n->a);
        b = eval(r, sc, n->b);
        X->line = n->line;
        res = get_item(r, a, b);
        break;
    case E_SLICE: {
        a = eval(r, sc, n->a);
        jv s = n->b ? eval(r, sc, n->b) : mk_none();
        jv e = n->c ? eval(r, sc, n->c) : mk_none();
        jv st = n->d ? eval(r, sc, n->d) : mk_none();
        X->line = n->line;
        res = get_slice(r, a, s, e, st);
        break;
    }
    case E_CALL: {
        jargs args;
        a = eval(r, sc, n->a);
        eval_args(r, sc, n, &args);
        res = call_value(r, a, &args);
        break;
    }
    case E_FILTER: {
        jargs args;
        if (!n->def) jx_fail(X, "No filter named '%s' found.", n->name->s);
        a = n->a ? eval(r, sc, n->a) : r->hole;
        eval_args(r, sc, n, &args);
        res = apply_filter(r, n->def, a, &args);
        break;
    }
    case E_TEST: {
        jargs args;
        if (!n->def) jx_fail(X, "No test named '%s' found.", n->name->s);
        a = eval(r, sc, n->a);
        eval_args(r, sc, n, &args);
        res = mk_bool(apply_test(r, n->def, a, &args) != n->op);
        break;
    }
    case E_NEG:
    case E_POS:
        a = eval(r, sc, n->a);
        X->line = n->line;
        if (a.t == J_FLOAT)
            res = mk_float(n->kind == E_NEG ? -a.u.f : a.u.f);
        else if (is_intlike(a)) {
            int64_t i = as_i(a);
            if (n->kind == E_NEG && i == INT64_MIN) jx_fail(X, "integer overflow");
            res = mk_int(n->kind == E_NEG ? -i : i);
        } else {
            if (a.t == J_UNDEF) fail_undef(r, a);
            jx_fail(X, "bad operand type for unary %c: '%s'", n->kind == E_NEG ? '-' : '+',
                    type_name(a));
        }
        break;
    case E_NOT:
        res = mk_bool(!truthy(eval(r, sc, n->a)));
        break;
    case E_BIN:
        a = eval(r, sc, n->a);
        b = eval(r, sc, n->b);
        X->line = n->line;
        res = arith(r, n->op, a, b);
        break;
    case E_AND:
        a = eval(r, sc, n->a);
        res = truthy(a) ? eval(r, sc, n->b) : a;
        break;
    case E_OR:
        a = eval(r, sc, n->a);
        res = truthy(a) ? a : eval(r, sc, n->b);
        break;
    case E_CONCAT: {
        jbuf sb = {0};
        for (int i = 0; i < n->nv; i++) py_str(r, &sb, eval(r, sc, n->v[i]));
        res = jb_value(X, &sb);
        break;
    }
    case E_CMP:
        a = eval(r, sc, n->a);
        res = mk_bool(1);
        for (int i = 0; i < n->nv; i++) {
            b = eval(r, sc, n->v[i]);
            X->line = n->line;
            if (!compare(r, n->ops[i], a, b)) {
                res = mk_bool(0);
                break;
            }
            a = b;
        }
        break;
    case E_COND:
        if (truthy(eval(r, sc, n->a)))
            res = eval(r, sc, n->b);
        else
            res = n->c ? eval(r, sc, n->c) : mk_undef(NULL);
        break;
    default:
        jx_fail(X, "internal error: bad expression node %d", n->kind);
    }
    r->depth--;
    return res;
}

static void bind_targets(R *r, scope *sc, const jnode *n, jv v) {
    if (!n->op) {
        scope_set(r, sc, n->names[0], v);
        return;
    }
    jlist *l = iterate(r, v);
    if (l->n < (size_t)n->nnames)
        jx_fail(X, "not enough values to unpack (expected %d, got %zu)", n->nnames, l->n);
    if (l->n > (size_t)n->nnames) jx_fail(X, "too many values to unpack (expected %d)", n->nnames);
    for (int i = 0; i < n->nnames; i++) scope_set(r, sc, n->names[i], l->v[i]);
}

static int exec_for(R *r, scope *sc, const jnode *n) {
    jlist *items = iterate(r, eval(r, sc, n->a));
    scope *ls = new_scope(r, sc);
    if (n->b) {
        jlist *kept = list_new(X, items->n);
        for (size_t i = 0; i < items->n; i++) {
            ls->vars.n = 0;
            bind_targets(r, ls, n, items->v[i]);
            if (!truthy(eval(r, ls, n->b))) continue;
            if (!n->op) {
                list_push(X, kept, items->v[i]);
                continue;
            }
            /* jinja's loop filter yields the unpacked target re-packed as a tuple */
            jlist *t = list_new(X, (size_t)n->nnames);
            t->tuple = 1;
            for (int k = 0; k < n->nnames; k++) list_push(X, t, lookup(r, ls, n->names[k]));
            list_push(X, kept, mk_listv(t));
        }
        items = kept;
    }
    jloop *lp = jx_zalloc(X, sizeof *lp);
    lp->n = (int64_t)items->n;
    lp->items = items;
    jv loopv;
    loopv.t = J_LOOP;
    loopv.u.lp = lp;
    const jstr *loopname = jstr_new(X, "loop", 4);
    for (size_t i = 0; i < items->n; i++) {
        if (++r->iters > r->max_iter)
            jx_fail(X, "too many loop iterations (limit %ld)", r->max_iter);
        lp->i = (int64_t)i;
        ls->vars.n = 0;
        bind_targets(r, ls, n, items->v[i]);
        scope_set(r, ls, loopname, loopv);
        int ctl = exec_body(r, ls, n->c);
        if (ctl == CTL_BREAK) break;
    }
    if (!items->n && n->d) return exec_body(r, new_scope(r, sc), n->d);
    return CTL_OK;
}

static int exec_stmt(R *r, scope *sc, const jnode *n) {
    enter(r);
    X->line = n->line;
    int ctl = CTL_OK;
    switch (n->kind) {
    case S_BODY:
        ctl = exec_body(r, sc, n);
        break;
    case S_DATA:
        jb_put(X, r->out, n->val.u.s->s, n->val.u.s->len);
        break;
    case S_PRINT: {
        jv v = eval(r, sc, n->a);
        py_str(r, r->out, v);
        break;
    }
    case S_IF: {
        int done = 0;
        for (int i = 0; i < n->nv && !done; i++)
            if (truthy(eval(r, sc, n->v[i]))) {
                ctl = exec_body(r, sc, n->w[i]);
                done = 1;
            }
        if (!done && n->c) ctl = exec_body(r, sc, n->c);
        break;
    }
    case S_FOR:
        ctl = exec_for(r, sc, n);
        break;
    case S_SET:
        bind_targets(r, sc, n, eval(r, sc, n->a));
        break;
    case S_SETATTR:
    case S_SETBLOCK: {
        jv v;
        if (n->kind == S_SETATTR) {
            v = eval(r, sc, n->a);
        } else {
            v = capture(r, sc, n->c, NULL);
            if (n->b) {
                jv saved = r->hole;
                r->hole = v;
                v = eval(r, sc, n->b);
                r->hole = saved;
            }
        }
        X->line = n->line;
        if (n->kind == S_SETBLOCK && !n->nnames) {
            scope_set(r, sc, n->name, v);
            break;
        }
        jv ns = lookup(r, sc, n->name);
        if (ns.t != J_NS) jx_fail(X, "cannot assign attribute on non-namespace object");
        check_ns_name(r, mk_strv(n->names[0]));
        dict_set(X, ns.u.d, mk_strv(n->names[0]), v);
        break;
    }
    case S_MACRO: {
        jmacro *m = jx_alloc(X, sizeof *m);
        m->def = n;
        m->closure = sc;
        jv v;
        v.t = J_MACRO;
        v.u.m = m;
        scope_set(r, sc, n->name, v);
        break;
    }
    case S_FILTERBLOCK: {
        jv v = capture(r, sc, n->c, NULL), saved = r->hole;
        r->hole = v;
        v = eval(r, sc, n->b);
        r->hole = saved;
        py_str(r, r->out, v);
        break;
    }
    case S_CALLBLOCK: {
        const jnode *call = n->b;
        jv f = eval(r, sc, call->a);
        jargs args;
        eval_args(r, sc, call, &args);
        jmacro *cm = jx_alloc(X, sizeof *cm);
        cm->def = n;
        cm->closure = sc;
        const jstr **kn = jx_alloc(X, ((size_t)args.nk + 1) * sizeof(const jstr *));
        jv *kv = jx_alloc(X, ((size_t)args.nk + 1) * sizeof(jv));
        for (int i = 0; i < args.nk; i++) {
            kn[i] = args.kn[i];
            kv[i] = args.kv[i];
        }
        kn[args.nk] = n->name;
        kv[args.nk].t = J_MACRO;
        kv[args.nk].u.m = cm;
        args.kn = kn;
        args.kv = kv;
        args.nk++;
        X->line = n->line;
        py_str(r, r->out, call_value(r, f, &args));
        break;
    }
    case S_WITH: {
        scope *ws = new_scope(r, sc);
        for (int i = 0; i < n->nw; i++) scope_set(r, ws, n->names[i], eval(r, sc, n->w[i]));
        ctl = exec_body(r, ws, n->c);
        break;
    }
    case S_BREAK:
        ctl = CTL_BREAK;
        break;
    case S_CONTINUE:
        ctl = CTL_CONTINUE;
        break;
    default:
        jx_fail(X, "internal error: bad statement node %d", n->kind);
    }
    r->depth--;
    return ctl;
}

static int exec_body(R *r, scope *sc, const jnode *b) {
    for (int i = 0; i < b->nv; i++) {
        int ctl = exec_stmt(r, sc, b->v[i]);
        if (ctl) return ctl;
    }
    return CTL_OK;
}

/* ------------------------------------------------------------------------ */
/* JSON context                                                             */

typedef struct jp {
    R *r;
    const char *s;
    size_t n, i;
    int depth;
} jp;

static void jp_fail(jp *p, const char *what) {
    jx_fail(&p->r->x, "context JSON: %s at offset %zu", what, p->i);
}

static void jp_ws(jp *p) {
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jp_lit(jp *p, const char *w) {
    size_t k = strlen(w);
    if (p->i + k <= p->n && !memcmp(p->s + p->i, w, k)) {
        p->i += k;
        return 1;
    }
    return 0;
}

static uint32_t jp_hex4(jp *p) {
    if (p->i + 4 > p->n) jp_fail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval((unsigned char)p->s[p->i + k]);
        if (h < 0) jp_fail(p, "bad \\u escape");
        v = v * 16 + (uint32_t)h;
    }
    p->i += 4;
    return v;
}

static jv jp_string(jp *p) {
    R *r = p->r;
    jbuf b = {0};
    p->i++; /* opening quote */
    for (;;) {
        size_t run = p->i; /* copy the run without quotes or escapes at once */
        while (run < p->n && p->s[run] != '"' && p->s[run] != '\\') run++;
        jb_put(X, &b, p->s + p->i, run - p->i);
        p->i = run;
        if (p->i >= p->n) jp_fail(p, "unterminated string");
        char c = p->s[p->i++];
        if (c == '"') break;
        if (p->i >= p->n) jp_fail(p, "unterminated string");
        char e = p->s[p->i++];
        switch (e) {
        case '"':
            jb_putc(X, &b, '"');
            break;
        case '\\':
            jb_putc(X, &b, '\\');
            break;
        case '/':
            jb_putc(X, &b, '/');
            break;
        case 'b':
            jb_putc(X, &b, '\b');
            break;
        case 'f':
            jb_putc(X, &b, '\f');
            break;
        case 'n':
            jb_putc(X, &b, '\n');
            break;
        case 'r':
            jb_putc(X, &b, '\r');
            break;
        case 't':
            jb_putc(X, &b, '\t');
            break;
        case 'u': {
            uint32_t cp = jp_hex4(p);
            if (cp >= 0xD800 && cp < 0xDC00 && p->i + 6 <= p->n && p->s[p->i] == '\\' &&
                p->s[p->i + 1] == 'u') {
                size_t save = p->i;
                p->i += 2;
                uint32_t lo = jp_hex4(p);
                if (lo >= 0xDC00 && lo <= 0xDFFF)
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else
                    p->i = save;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) jp_fail(p, "lone surrogate in string");
            jb_putcp(X, &b, cp);
            break;
        }
        default:
            jp_fail(p, "bad escape");
        }
    }
    return jb_value(X, &b);
}

static jv jp_value(jp *p) {
    R *r = p->r;
    jp_ws(p);
    if (p->i >= p->n) jp_fail(p, "unexpected end");
    char c = p->s[p->i];
    if (c == '"') return jp_string(p);
    if (c == '{' || c == '[') {
        if (++p->depth > MAX_JSON_DEPTH) jp_fail(p, "nested too deeply");
        p->i++;
        int obj = c == '{';
        jdict *d = obj ? dict_new(X) : NULL;
        jlist *l = obj ? NULL : list_new(X, 0);
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
            p->i++;
        } else {
            for (;;) {
                if (obj) {
                    jp_ws(p);
                    if (p->i >= p->n || p->s[p->i] != '"') jp_fail(p, "expected a string key");
                    jv k = jp_string(p);
                    jp_ws(p);
                    if (p->i >= p->n || p->s[p->i] != ':') jp_fail(p, "expected ':'");
                    p->i++;
                    dict_set(X, d, k, jp_value(p));
                } else {
                    list_push(X, l, jp_value(p));
                }
                jp_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
                    p->i++;
                    break;
                }
                jp_fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
            }
        }
        p->depth--;
        return obj ? mk_dictv(d, J_DICT) : mk_listv(l);
    }
    if (jp_lit(p, "true")) return mk_bool(1);
    if (jp_lit(p, "false")) return mk_bool(0);
    if (jp_lit(p, "null")) return mk_none();
    size_t st = p->i;
    int is_float = 0;
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    size_t d0 = p->i;
    while (p->i < p->n && is_dig(p->s[p->i])) p->i++;
    if (p->i == d0) jp_fail(p, "unexpected character");
    if (p->i < p->n && p->s[p->i] == '.') {
        is_float = 1;
        p->i++;
        while (p->i < p->n && is_dig(p->s[p->i])) p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        is_float = 1;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        while (p->i < p->n && is_dig(p->s[p->i])) p->i++;
    }
    char tmp[512];
    size_t len = p->i - st;
    if (len >= sizeof tmp) jp_fail(p, "number too long");
    memcpy(tmp, p->s + st, len);
    tmp[len] = 0;
    if (!is_float) {
        errno = 0;
        char *end;
        long long v = strtoll(tmp, &end, 10);
        if (errno == 0 && *end == 0) return mk_int(v);
    }
    return mk_float(strtod(tmp, NULL));
}

static jdict *parse_context(R *r, const char *json) {
    if (!json) return dict_new(X);
    jp p = {r, json, strlen(json), 0, 0};
    jp_ws(&p);
    if (p.i == p.n) return dict_new(X);
    jv v = jp_value(&p);
    jp_ws(&p);
    if (p.i != p.n) jp_fail(&p, "trailing characters");
    if (v.t != J_DICT) jp_fail(&p, "the context must be an object");
    return v.u.d;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */

jinja_options jinja_options_hf(void) {
    jinja_options o;
    memset(&o, 0, sizeof o);
    o.trim_blocks = 1;
    o.lstrip_blocks = 1;
    return o;
}

static void fill_defaults(jinja_options *o) {
    if (!o->max_output) o->max_output = DEF_MAX_OUTPUT;
    if (!o->max_memory) o->max_memory = DEF_MAX_MEMORY;
    if (o->max_iterations <= 0) o->max_iterations = DEF_MAX_ITER;
}

jinja_template *jinja_parse(const char *src, const jinja_options *opt) {
    if (!src) {
        err_set("template: no source");
        return NULL;
    }
    jinja_options o;
    if (opt)
        o = *opt;
    else
        memset(&o, 0, sizeof o);
    fill_defaults(&o);
    jx *x = calloc(1, sizeof *x);
    if (!x) {
        err_set("template: out of memory");
        return NULL;
    }
    x->limit = o.max_memory;
    x->max_str = o.max_output;
    x->line = 1;
    if (setjmp(x->jb)) {
        arena_free(x->blocks);
        free(x);
        return NULL;
    }
    size_t n = strlen(src);
    if (n > o.max_output) jx_fail(x, "template too large");
    /* Normalise newlines; drop one trailing newline like jinja2 does. */
    char *buf = jx_alloc(x, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            buf[k++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else {
            buf[k++] = src[i];
        }
    }
    if (!o.keep_trailing_newline && k > 0 && buf[k - 1] == '\n') k--;
    buf[k] = 0;
    lexer L;
    memset(&L, 0, sizeof L);
    L.x = x;
    L.o = &o;
    L.src = buf;
    L.n = k;
    lex(&L);
    P p;
    memset(&p, 0, sizeof p);
    p.x = x;
    p.t = L.toks;
    p.ntok = L.ntok;
    x->line = 1;
    jnode *root = parse_body(&p, NULL);
    validate(&p, root, 0);
    jinja_template *t = malloc(sizeof *t);
    if (!t) jx_fail(x, "out of memory");
    t->arena = x->blocks;
    t->opt = o;
    t->root = root;
    free(x);
    return t;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    arena_free(t->arena);
    free(t);
}

int jinja_render(const jinja_template *t, const char *ctx_json, char **out, size_t *out_len) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out) {
        err_set("template: bad arguments");
        return -1;
    }
    R *r = calloc(1, sizeof *r);
    if (!r) {
        err_set("template: out of memory");
        return -1;
    }
    r->x.limit = t->opt.max_memory;
    r->x.max_str = t->opt.max_output;
    r->t = t;
    r->max_iter = t->opt.max_iterations;
    if (setjmp(r->x.jb)) {
        arena_free(r->x.blocks);
        free(r);
        return -1;
    }
    r->ctx = parse_context(r, ctx_json);
    r->root = new_scope(r, NULL);
    r->hole = mk_undef(NULL);
    jbuf ob = {0};
    r->out = &ob;
    exec_body(r, r->root, t->root);
    char *res = malloc(ob.n + 1);
    if (!res) jx_fail(X, "out of memory");
    if (ob.n) memcpy(res, ob.p, ob.n);
    res[ob.n] = 0;
    *out = res;
    if (out_len) *out_len = ob.n;
    arena_free(r->x.blocks);
    free(r);
    return 0;
}

int jinja_render_string(const char *src, const jinja_options *opt, const char *ctx_json, char **out,
                        size_t *out_len) {
    if (out) *out = NULL;
    jinja_template *t = jinja_parse(src, opt);
    if (!t) return -1;
    int rc = jinja_render(t, ctx_json, out, out_len);
    jinja_free(t);
    return rc;
}
