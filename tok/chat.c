/* chat.c — conversations in the formats of LLaMA-2, LLaMA-3, Mistral, ChatML and Zephyr. */
#include "tok/chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const spq_chat_names[] = {"llama2", "llama3", "mistral", "chatml", "zephyr", NULL};

static int has(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return 1;
    return 0;
}

const char *spq_chat_detect(const char *t, size_t n)
{
    /* the most specific markers first: LLaMA-2 and Mistral both write [INST] */
    if (has(t, n, "<|start_header_id|>")) return "llama3";
    if (has(t, n, "<|im_start|>")) return "chatml";
    if (has(t, n, "<|user|>")) return "zephyr";
    if (has(t, n, "[INST]")) return has(t, n, "<<SYS>>") ? "llama2" : "mistral";
    return NULL;
}

int spq_chat_known(const char *name)
{
    for (int i = 0; name && spq_chat_names[i]; i++)
        if (!strcmp(name, spq_chat_names[i])) return 1;
    return 0;
}

const char *spq_chat_eot(const char *name)
{
    return !strcmp(name, "llama3") ? "<|eot_id|>" : !strcmp(name, "chatml") ? "<|im_end|>" : "</s>";
}

typedef struct {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int k = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) o->len += (size_t)k;
}

/* [INST] formats as their tokenizer_config.json templates write them: a system message joins
 * the first user turn (LLaMA-2 in <<SYS>>, Mistral before the text); LLaMA-2 closes an
 * assistant turn with " </s>" and opens the next user turn with <s>, Mistral with "</s>" alone. */
static int inst(out *o, const spq_chat_msg *m, int n, int llama2)
{
    const char *sys = NULL;
    int first = 1;
    for (int i = 0; i < n; i++) {
        const char *r = m[i].role, *c = m[i].content;
        if (!strcmp(r, "system")) { sys = c; continue; }
        if (!strcmp(r, "user")) {
            put(o, "%s[INST] ", first || !llama2 ? "" : "<s>");
            if (sys && llama2) put(o, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
            else if (sys) put(o, "%s\n\n", sys);
            put(o, "%s [/INST]", c);
            sys = NULL;
            first = 0;
        } else if (!strcmp(r, "assistant")) {
            put(o, llama2 ? " %s </s>" : "%s</s>", c);
        } else {
            return -1;
        }
    }
    return 0;
}

long spq_chat_format(const char *name, const spq_chat_msg *m, int n, int add_assistant, char *buf, size_t cap)
{
    out o = {buf, cap, 0};
    if (cap) buf[0] = 0;
    for (int i = 0; i < n; i++)
        if (!m[i].role || !m[i].content ||
            (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") && strcmp(m[i].role, "assistant")))
            return -1;
    if (!name) return -1;
    if (!strcmp(name, "llama2") || !strcmp(name, "mistral")) {
        if (inst(&o, m, n, !strcmp(name, "llama2"))) return -1; /* the [/INST] already asks for the answer */
    } else if (!strcmp(name, "llama3")) {
        for (int i = 0; i < n; i++) put(&o, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", m[i].role, m[i].content);
        if (add_assistant) put(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else if (!strcmp(name, "chatml")) {
        for (int i = 0; i < n; i++) put(&o, "<|im_start|>%s\n%s<|im_end|>\n", m[i].role, m[i].content);
        if (add_assistant) put(&o, "<|im_start|>assistant\n");
    } else if (!strcmp(name, "zephyr")) {
        for (int i = 0; i < n; i++) put(&o, "<|%s|>\n%s</s>\n", m[i].role, m[i].content);
        if (add_assistant) put(&o, "<|assistant|>\n");
    } else {
        return -1;
    }
    return (long)o.len;
}
