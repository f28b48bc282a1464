/* tok_utf8.c: UTF-8 for the tokenizer: lead-byte lengths, the llama.cpp-
 * compatible lenient decode used before BPE pre-tokenization, validation, and
 * the streaming repairer (tok_utf8_push/flush) that keeps a character split
 * across byte tokens from reaching the user broken. */
#include "tokenizer/tok_internal.h"

#include <string.h>

size_t tok_utf8_len_lead(unsigned char c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

size_t tok_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Allowed range of the second byte after lead byte c (Unicode table 3-7);
 * lo > hi when c cannot start a sequence of 2+ bytes. */
static void second_range(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c == 0xE0)
        *lo = 0xA0;
    else if (c == 0xED)
        *hi = 0x9F;
    else if (c == 0xF0)
        *lo = 0x90;
    else if (c == 0xF4)
        *hi = 0x8F;
    else if (c < 0xC2 || c > 0xF4) {
        *lo = 1;
        *hi = 0;
    }
}

/* Length of a well-formed sequence at s (0 if ill-formed or truncated). */
static size_t wf_len(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    unsigned char lo, hi;
    second_range(c, &lo, &hi);
    if (lo > hi) return 0;
    size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (avail < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return need;
}

bool tok_utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = wf_len(u + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

size_t tok_utf8_sanitize(const char *src, size_t len, char *dst) {
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < len) {
        unsigned char c = s[i];
        uint32_t cp;
        size_t k;
        /* lead-byte rules of llama.cpp's decoder: the continuation bytes must
         * be 10xxxxxx; overlong forms are accepted (and re-encoded). */
        if (c < 0x80) {
            cp = c;
            k = 1;
        } else if (!(c & 0x40)) {
            cp = 0xFFFD;
            k = 1;
        } else if (!(c & 0x20)) {
            if (i + 1 < len && (s[i + 1] & 0xC0) == 0x80) {
                cp = ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
                k = 2;
            } else {
                cp = 0xFFFD;
                k = 1;
            }
        } else if (!(c & 0x10)) {
            if (i + 2 < len && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80) {
                cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) |
                     (s[i + 2] & 0x3F);
                k = 3;
            } else {
                cp = 0xFFFD;
                k = 1;
            }
        } else if (!(c & 0x08)) {
            if (i + 3 < len && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80 &&
                (s[i + 3] & 0xC0) == 0x80) {
                cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
                     ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
                k = 4;
            } else {
                cp = 0xFFFD;
                k = 1;
            }
        } else {
            cp = 0xFFFD;
            k = 1;
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
        o += tok_utf8_encode(cp, dst + o);
        i += k;
    }
    return o;
}

/* ---- streaming ---- */

static const char k_fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

size_t tok_utf8_push(tok_utf8 *s, const char *bytes, size_t n, char *out) {
    size_t o = 0;
    if (s->n < 0 || s->n > 3) s->n = 0; /* corrupt state: start over */
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)bytes[i];
        for (;;) {
            if (s->n == 0) {
                if (b < 0x80) {
                    out[o++] = (char)b;
                } else {
                    unsigned char lo, hi;
                    second_range(b, &lo, &hi);
                    if (lo > hi) {
                        memcpy(out + o, k_fffd, 3);
                        o += 3;
                    } else {
                        s->pend[s->n++] = b;
                    }
                }
                break;
            }
            unsigned char lead = s->pend[0], lo = 0x80, hi = 0xBF;
            if (s->n == 1) second_range(lead, &lo, &hi);
            if (b < lo || b > hi) {
                /* the pending prefix is a maximal ill-formed subpart */
                memcpy(out + o, k_fffd, 3);
                o += 3;
                s->n = 0;
                continue; /* reprocess b as a new start */
            }
            s->pend[s->n++] = b;
            size_t need = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
            if ((size_t)s->n == need) {
                memcpy(out + o, s->pend, need);
                o += need;
                s->n = 0;
            }
            break;
        }
    }
    return o;
}

size_t tok_utf8_flush(tok_utf8 *s, char *out) {
    if (s->n <= 0 || s->n > 3) {
        s->n = 0;
        return 0;
    }
    s->n = 0;
    memcpy(out, k_fffd, 3);
    return 3;
}
