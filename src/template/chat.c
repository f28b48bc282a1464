/* chat.c: chat templates: builds the render context HF transformers passes
 * to a chat template and renders it with the Jinja interpreter; holds the
 * built-in templates (the official Gemma 3 template, which Gemma 3 GGUFs may
 * lack, and plain ChatML). */
#include "template/chat.h"
#include "template/jinja.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The Gemma 3 chat template from google/gemma-3-*-it tokenizer_config.json,
 * byte for byte (a format specification: the model was trained on it). */
static const char GEMMA3_TEMPLATE[] =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate "
    "user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n";

/* ChatML: <|im_start|>role\ncontent<|im_end|>\n per message. */
static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

const char *chat_builtin(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "gemma3")) return GEMMA3_TEMPLATE;
    if (!strcmp(name, "chatml")) return CHATML_TEMPLATE;
    return NULL;
}

/* A growable malloc'd string for the JSON context. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* A JSON string literal (bytes >= 0x80 pass through unchanged). */
static void sb_json(sbuf *b, const char *s) {
    if (!s) {
        sb_puts(b, "null");
        return;
    }
    sb_puts(b, "\"");
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        const unsigned char *q = p; /* copy the run that needs no escaping at once */
        while (*q >= 0x20 && *q != '"' && *q != '\\') q++;
        sb_put(b, (const char *)p, (size_t)(q - p));
        if (!*q) break;
        char esc[8];
        if (*q == '"' || *q == '\\')
            snprintf(esc, sizeof esc, "\\%c", *q);
        else
            snprintf(esc, sizeof esc, "\\u%04x", *q);
        sb_puts(b, esc);
        p = q + 1;
    }
    sb_puts(b, "\"");
}

int chat_render(const char *tmpl, const chat_msg *msgs, int n, int add_generation_prompt,
                const char *bos_token, const char *eos_token, char **out) {
    if (out) *out = NULL;
    if (!tmpl || !out || n < 0 || (n > 0 && !msgs)) {
        err_set("chat_render: bad arguments");
        return -1;
    }
    sbuf b = {0};
    sb_puts(&b, "{\"messages\": [");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role) {
            free(b.p);
            err_set("chat_render: message %d has no role", i);
            return -1;
        }
        sb_puts(&b, i ? ", {\"role\": " : "{\"role\": ");
        sb_json(&b, msgs[i].role);
        sb_puts(&b, ", \"content\": ");
        sb_json(&b, msgs[i].content);
        sb_puts(&b, "}");
    }
    sb_puts(&b, "], \"tools\": null, \"documents\": null, \"add_generation_prompt\": ");
    sb_puts(&b, add_generation_prompt ? "true" : "false");
    if (bos_token) {
        sb_puts(&b, ", \"bos_token\": ");
        sb_json(&b, bos_token);
    }
    if (eos_token) {
        sb_puts(&b, ", \"eos_token\": ");
        sb_json(&b, eos_token);
    }
    sb_puts(&b, "}");
    if (b.oom) {
        free(b.p);
        err_set("chat_render: out of memory");
        return -1;
    }
    jinja_options o = jinja_options_hf();
    int rc = jinja_render_string(tmpl, &o, b.p, out, NULL);
    free(b.p);
    return rc;
}
