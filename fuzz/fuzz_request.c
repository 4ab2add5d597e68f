/* fuzz_request.c — the server's request reader (tools/serve_req.c) on arbitrary bodies: the
 * first byte picks the endpoint (chat or completions). A refusal must say why and name a
 * field; an accepted request must hold what its endpoint needs, in range. */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "tools/serve_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1) return 0;
    int chat = d[0] & 1;
    serve_req r;
    char err[512], param[64];
    if (serve_req_parse((const char *)d + 1, n - 1, chat, 32000, &r, err, sizeof err, param, sizeof param)) {
        if (!err[0]) abort();
    } else {
        if (chat ? !r.msgs || r.n_msgs < 1 : !r.prompt && !r.prompt_ids) abort();
        for (int i = 0; i < r.n_prompt_ids; i++)
            if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= 32000) abort();
        for (int i = 0; i < r.n_msgs; i++)
            if (!r.msgs[i].content || strlen(r.msgs[i].role) < 4) abort();
        if (r.n_stop > SERVE_MAX_STOP || !(r.sp.temp >= 0 && r.sp.temp <= 2) || !(r.sp.top_p > 0 && r.sp.top_p <= 1)) abort();
    }
    serve_req_free(&r);
    return 0;
}
