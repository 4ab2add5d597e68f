// api_cxx.cpp — spikeq.h from C++: the header compiles with -pedantic, links, and runs.
#include <spikeq.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char **argv)
{
    if (argc < 2) return 1;
    char err[512];
    spikeq_model *model = spikeq_model_load(argv[1], err, sizeof err);
    if (!model) { std::fprintf(stderr, "%s\n", err); return 1; }
    std::vector<char> desc(256);
    spikeq_model_desc(model, desc.data(), desc.size());
    std::string text = "int main";
    std::vector<spikeq_token> ids(64);
    int n = spikeq_tokenize(model, text.c_str(), (int32_t)text.size(), ids.data(), (int32_t)ids.size(), 1, 0);
    spikeq_context_params p = spikeq_context_default_params();
    p.n_threads = 1;
    spikeq_context *ctx = spikeq_context_new(model, &p, err, sizeof err);
    if (!ctx || n < 1) return 1;
    spikeq_batch b = spikeq_batch_init(n);
    for (int i = 0; i < n; i++) spikeq_batch_add(&b, ids[i], i, 0, i == n - 1);
    int rc = spikeq_decode(ctx, &b);
    std::printf("%s\n%d tokens, decode %d, logits %s\n", desc.data(), n, rc, spikeq_get_logits(ctx, n - 1) ? "yes" : "no");
    spikeq_batch_free(&b);
    spikeq_context_free(ctx);
    spikeq_model_free(model);
    return rc;
}
