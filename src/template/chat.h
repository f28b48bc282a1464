/* chat.h: chat-level API over the Jinja interpreter: render a model's chat
 * template for a list of messages exactly like HF transformers'
 * apply_chat_template(tokenize=False), and the built-in templates for
 * models that carry none (e.g. Gemma 3 GGUFs without tokenizer.chat_template).
 *
 * The template sees what transformers passes: messages (a list of
 * {role, content}), add_generation_prompt, bos_token, eos_token, and
 * tools = documents = none. It is rendered with trim_blocks and
 * lstrip_blocks, like transformers does. */
#ifndef BEAST_CHAT_H
#define BEAST_CHAT_H

typedef struct {
    const char *role;
    const char *content; /* NULL is passed to the template as none */
} chat_msg;

/* Render tmpl (Jinja source) for msgs[0..n). bos_token / eos_token may be
 * NULL (then undefined in the template). On success *out is a malloc'd
 * NUL-terminated string and 0 is returned; on failure -1, *out is NULL and
 * err_get() says why ("template: line N: ..."; raise_exception's message
 * for templates that reject the conversation). */
int chat_render(const char *tmpl, const chat_msg *msgs, int n, int add_generation_prompt,
                const char *bos_token, const char *eos_token, char **out);

/* Built-in templates by name ("gemma3", "chatml"); NULL if unknown. */
const char *chat_builtin(const char *name);

#endif
