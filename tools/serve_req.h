/* serve_req.h — an OpenAI completions / chat completions request body, checked field by
 * field (the part of `spikeq serve` that reads what clients send; fuzzed on its own). */
#ifndef SPQ_SERVE_REQ_H
#define SPQ_SERVE_REQ_H

#include <stddef.h>

#include "include/spikeq.h"

#define SERVE_MAX_STOP 4

typedef struct {
    int chat;                  /* /v1/chat/completions (messages) rather than /v1/completions (prompt) */
    char *prompt;              /* completions: the prompt text, or NULL when given as token ids */
    int *prompt_ids, n_prompt_ids;
    spikeq_chat_message *msgs; /* chat: role and content of each message (owned copies) */
    int n_msgs;
    int max_tokens;            /* -1 when not given */
    spikeq_sampler_params sp;  /* spikeq's defaults where the request is silent */
    char *stop[SERVE_MAX_STOP + 1]; /* the client's, and room for the server's end of turn */
    int n_stop;
    int stream, include_usage;
    int cache_prompt;          /* llama.cpp's field: reuse a slot's cached prefix (default 1) */
    char model[128];           /* the model the client named ("" if none) */
} serve_req;

/* Parse body[0..len) as a request for the chat or completions endpoint of a model of n_vocab
 * tokens. Returns 0, or -1 with a one-line message in err and the offending field's name in
 * param ("" when it is the body as a whole); r needs serve_req_free either way. */
int serve_req_parse(const char *body, size_t len, int chat, int n_vocab, serve_req *r, char *err, size_t errlen,
                    char *param, size_t plen);
void serve_req_free(serve_req *r);

#endif
