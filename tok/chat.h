/* chat.h — the chat formats of the models spikeq loads: a conversation as the prompt text
 * the model was fine-tuned on. A model's files carry a Jinja template (tokenizer_config.json,
 * GGUF tokenizer.chat_template); spikeq recognises which known format it is by its markers,
 * as llama.cpp does, rather than running Jinja. */
#ifndef SPQ_CHAT_H
#define SPQ_CHAT_H

#include <stddef.h>

enum { SPQ_CHAT_NAME_MAX = 16 }; /* bytes of a format name, NUL included */

/* The known formats: "llama2" ([INST] with <<SYS>>), "llama3" (header ids, <|eot_id|>),
 * "mistral" ([INST] without <<SYS>>), "chatml" (<|im_start|>, SmolLM, Qwen), "zephyr"
 * (<|user|>, TinyLlama-chat); NULL-terminated. */
extern const char *const spq_chat_names[];

typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
} spq_chat_msg;

/* The known format a Jinja chat template writes (len bytes), or NULL. */
const char *spq_chat_detect(const char *tmpl, size_t len);
/* 1 when name is a known format. */
int spq_chat_known(const char *name);
/* The conversation m[0..n) in format name into buf (NUL-terminated when cap allows), ending
 * with the assistant's header when add_assistant. BOS is not written (the tokenizer adds it);
 * later turns' BOS/EOS are, as text to parse as special pieces. Returns the length, or -1
 * for an unknown format or role. */
long spq_chat_format(const char *name, const spq_chat_msg *m, int n, int add_assistant, char *buf, size_t cap);
/* The text that ends an assistant turn in format name ("</s>", "<|eot_id|>", "<|im_end|>"). */
const char *spq_chat_eot(const char *name);

#endif
