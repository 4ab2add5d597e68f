/* cmd_bench.c — spikeq bench: llama-bench-style prompt-processing (ppN) and generation
 * (tgN) tokens/s, mean +- stddev over repetitions after a warm-up, with the fraction of
 * this machine's limit beside each figure (probes from bench/, measured in the same run):
 *   tg: weight bytes per token x tok/s / read bandwidth;
 *   pp: int8 multiply-adds per token x tok/s / int8 dot-product peak.
 * The limits in the table are probed between the runs: a read pass of 256 MiB after every
 * timed token, an int8 peak pass after every timed prefill, so that a test is compared with
 * what the machine gave in the same seconds; on a shared machine the bandwidth swings by 2x
 * in minutes, and a mean over the test against the best of a few probes taken before and
 * after it reads low whenever the test met a busy spell. Those best probes are still taken
 * and their fractions printed beside (stderr, and the _best fields of json/csv). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "probe/probes.h"
#include "kernels/kernels.h"
#include "format/cmpq_blob.h"
#include "format/ggml_quants.h"
#include "tools/cli.h"

static uint64_t rng = 0x853c49e6748fea9bull;
static uint8_t rbyte(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint8_t)(rng >> 24);
}

/* a random tensor of dtype: INT8 codes in [-127,127], FP16 ~ N(0, 0.02)-ish, norms = 1 */
static void add_random(spq_ckpt *c, const char *name, int64_t r, int64_t k, int dtype)
{
    spq_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = dtype; t.ndim = k ? 2 : 1; t.shape[0] = r; t.shape[1] = k;
    size_t n = (size_t)r * (size_t)(k ? k : 1);
    t.nbytes = n * spq_dtype_size(dtype);
    t.owned = malloc(t.nbytes);
    if (!t.owned) die("out of memory building the synthetic model (use --layers)");
    t.scale = 1.0f;
    if (dtype == SPQ_I8) {
        int8_t *q = t.owned;
        for (size_t i = 0; i < n; i++) { int v = (int)rbyte() - 128; q[i] = (int8_t)(v < -127 ? -127 : v); }
        t.scale = 0.02f / 64.0f;
    } else if (dtype == SPQ_E4M3) {
        uint8_t *q = t.owned;
        for (size_t i = 0; i < n; i++) q[i] = (uint8_t)(rbyte() & 0xbf); /* finite codes, |v| < 2 */
        t.scale = 0.01f;
    } else if (dtype == SPQ_F16) {
        uint16_t *h = t.owned;
        for (size_t i = 0; i < n; i++) h[i] = spq_f32_to_f16(((float)rbyte() - 127.5f) * (k ? 0.02f / 64 : 1.0f / 127.5f) + (k ? 0 : 1.0f));
    } else {
        float *f = t.owned;
        for (size_t i = 0; i < n; i++) f[i] = ((float)rbyte() - 127.5f) * (k ? 0.02f / 64 : 0) + (k ? 0 : 1.0f);
    }
    t.data = t.owned;
    spq_ckpt_add(c, &t);
}

/* A random CMPQ tensor of the size a real one at `bits` would have: channels split between
 * the two bit-widths around the budget (shared levels, 0.2% outliers, spq_cmpq_synthetic). */
static void add_cmpq(spq_ckpt *c, const char *name, int N, int K, double bits)
{
    spq_cmpq_hdr h = {(uint32_t)N, (uint32_t)K, {0}, (uint32_t)(0.002 * N * K), SPQ_CMPQ_SHARED};
    spq_cmpq_layout L;
    size_t budget = (size_t)(bits * N * K / 8);
    int lo = 0;
    while (lo < SPQ_CMPQ_NCLS - 2 && spq_cmpq_bits[lo + 1] < bits) lo++;
    for (int hi = K; hi >= 0; hi--) { /* the most channels at the wider width that fit */
        memset(h.kc, 0, sizeof h.kc);
        h.kc[lo] = (uint32_t)(K - hi);
        h.kc[lo + 1] = (uint32_t)hi;
        spq_cmpq_layout_of(&h, &L);
        if (L.size <= budget) break;
    }
    if (L.size > budget) die("--bits %g: below the smallest CMPQ tensor [%d x %d]", bits, N, K);
    size_t nb;
    uint8_t *p = spq_cmpq_synthetic(N, K, h.kc, h.n_out, rbyte(), &nb);
    if (!p) die("out of memory building the synthetic model (use --layers)");
    spq_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = SPQ_CMPQ; t.ndim = 2; t.shape[0] = N; t.shape[1] = K; t.scale = 1.0f;
    t.owned = p; t.data = p; t.nbytes = nb;
    spq_ckpt_add(c, &t);
}

/* A random tensor of ggml block type gtype: random codes and scales, every half finite and
 * small (the d/dmin/m fields at their place in each block). */
static void add_ggml(spq_ckpt *c, const char *name, int64_t r, int64_t k, int gtype)
{
    static const struct { int type, at[2]; } halves[] = {
        {GGML_Q4_0, {0, -1}}, {GGML_Q8_0, {0, -1}}, {GGML_Q4_K, {0, 2}}, {GGML_Q5_K, {0, 2}},
        {GGML_Q6_K, {208, -1}}, {GGML_IQ4_XS, {0, -1}},
    };
    int el, hi = 0;
    size_t bb;
    spq_ggml_block(gtype, &el, &bb);
    while (halves[hi].type != gtype) hi++;
    spq_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = SPQ_GGML; t.gtype = gtype; t.ndim = 2; t.shape[0] = r; t.shape[1] = k; t.scale = 1.0f;
    t.nbytes = (size_t)r * (size_t)(k / el) * bb;
    uint8_t *b = t.owned = malloc(t.nbytes);
    if (!b) die("out of memory building the synthetic model (use --layers)");
    for (size_t i = 0; i < t.nbytes; i++) b[i] = rbyte();
    for (size_t i = 0; i < t.nbytes / bb; i++)
        for (int j = 0; j < 2; j++)
            if (halves[hi].at[j] >= 0) {
                uint16_t h = spq_f32_to_f16(0.0002f * (float)(rbyte() + 1));
                memcpy(b + i * bb + halves[hi].at[j], &h, 2);
            }
    t.data = b;
    spq_ckpt_add(c, &t);
}

/* The ggml schemes: a pure file of one block type, or q4_k_m (llama.cpp's Q4_K_M: Q4_K, with
 * Q6_K for v_proj and down_proj in the first and last eighth of the layers and every third
 * between, and for the head). */
static const struct { const char *name; int type; } GGML_SCHEMES[] = {
    {"q4_0", GGML_Q4_0}, {"q8_0", GGML_Q8_0}, {"q4_k", GGML_Q4_K}, {"q5_k", GGML_Q5_K},
    {"q6_k", GGML_Q6_K}, {"iq4_xs", GGML_IQ4_XS}, {"q4_k_m", GGML_Q4_K},
};
static int ggml_scheme(const char *s)
{
    for (size_t i = 0; i < sizeof GGML_SCHEMES / sizeof GGML_SCHEMES[0]; i++)
        if (!strcmp(s, GGML_SCHEMES[i].name)) return GGML_SCHEMES[i].type;
    return 0;
}
static int q4_k_m_more_bits(int l, int n) { return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2; }

/* scheme: f32, f16, w8a8, cmpq (at bits), a ggml scheme; spike_layers down_proj layers in FP16 (or FP8 with spike_fp8) */
static void synthetic(spq_ckpt *c, const model_shape *s, int layers, const char *scheme, double bits, int spike_layers,
                      int spike_fp8)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "synthetic:%s", s->name);
    spq_config *p = &c->cfg;
    p->dim = s->dim; p->hidden_dim = s->hidden; p->n_layers = layers; p->n_heads = s->heads; p->n_kv_heads = s->kv;
    p->head_dim = s->dim / s->heads; p->vocab_size = s->vocab; p->max_seq = s->ctx; p->bos_id = 1; p->eos_id = 2;
    p->norm_eps = 1e-5f; p->rope_theta = s->theta;
    p->rope_type = s->rope_llama3; p->rope_factor = 8.0f; p->rope_low_freq = 1.0f; p->rope_high_freq = 4.0f;
    p->rope_orig_ctx = 8192;
    int lin = !strcmp(scheme, "w8a8") || !strcmp(scheme, "cmpq") ? SPQ_I8 : !strcmp(scheme, "f16") ? SPQ_F16 : SPQ_F32;
    int gg = ggml_scheme(scheme), kmix = !strcmp(scheme, "q4_k_m");
    int kv = s->kv * p->head_dim;
    char nm[96];
    if (gg) add_ggml(c, "model.embed_tokens.weight", s->vocab, s->dim, gg);
    else add_random(c, "model.embed_tokens.weight", s->vocab, s->dim, lin == SPQ_F32 ? SPQ_F32 : SPQ_F16);
    for (int l = 0; l < layers; l++) {
        static const char *pn[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        int64_t rows[7] = {s->dim, kv, kv, s->dim, s->hidden, s->hidden, s->dim};
        int64_t cols[7] = {s->dim, s->dim, s->dim, s->dim, s->dim, s->dim, s->hidden};
        for (int j = 0; j < 7; j++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, pn[j]);
            int dt = lin;
            if (j == 6 && l < spike_layers && lin == SPQ_I8) dt = spike_fp8 ? SPQ_E4M3 : SPQ_F16;
            if (!strcmp(scheme, "cmpq")) add_cmpq(c, nm, (int)rows[j], (int)cols[j], bits);
            else if (gg) add_ggml(c, nm, rows[j], cols[j], kmix && (j == 2 || j == 6) && q4_k_m_more_bits(l, layers) ? GGML_Q6_K : gg);
            else add_random(c, nm, rows[j], cols[j], dt);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        add_random(c, nm, s->dim, 0, SPQ_F32);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        add_random(c, nm, s->dim, 0, SPQ_F32);
    }
    add_random(c, "model.norm.weight", s->dim, 0, SPQ_F32);
    if (gg) add_ggml(c, "lm_head.weight", s->vocab, s->dim, kmix ? GGML_Q6_K : gg);
    else add_random(c, "lm_head.weight", s->vocab, s->dim, lin); /* cmpq: weight-only linears, INT8 head */
}

/* A comma list of integers in [lo, hi] (at most 64) for flag. */
static int *parse_list(const char *flag, const char *s, int lo, int hi, int *n)
{
    int *v = malloc(sizeof(int) * 64);
    *n = 0;
    char *dup = strdup(s), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t && *n < 64; t = strtok_r(NULL, ",", &save)) v[(*n)++] = (int)arg_int(flag, t, lo, hi);
    free(dup);
    return v;
}

static void stats(const double *x, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

/* Decode steps of B independent sequences in one batch (spq_forward_batch): row j is
 * sequence j at the step's position, so the weights are read once per step for all B.
 * For each thread count and B: the aggregate and per-sequence tokens/s (mean ± sd of the
 * repetitions) and the fraction of the read bandwidth probed between the steps that the
 * weights' bytes per step make. */
static void bench_batch(const spq_model *m, const spq_ckpt *c, const char *model_name, const char *plan, int *ts,
                        int nt, const int *bs, int nb, int tg, int reps, int roofline, const char *fmt, int kv, int timings)
{
    int bmax = 0;
    for (int i = 0; i < nb; i++) bmax = bs[i] > bmax ? bs[i] : bmax;
    int *tok = malloc(sizeof(int) * (size_t)bmax), *pos = malloc(sizeof(int) * (size_t)bmax), *seq = malloc(sizeof(int) * (size_t)bmax);
    double *tps = malloc(sizeof(double) * (size_t)reps);
    if (!tok || !pos || !seq || !tps) die("out of memory");
    if (!strcmp(fmt, "md"))
        printf("| model | plan | isa | threads | sequences | test | aggregate t/s | per sequence t/s | %s |\n"
               "|---|---|---|---:|---:|---|---:|---:|---:|\n", roofline ? "of roofline" : "");
    else if (!strcmp(fmt, "csv"))
        printf("model,plan,isa,threads,sequences,test,tps_mean,tps_sd,tps_per_seq,roofline_fraction,read_bw\n");
    else
        printf("[\n");
    int first = 1;
    for (int ti = 0; ti < nt; ti++) {
        ts[ti] = set_threads(ts[ti]);
        spq_bwprobe bp = {0};
        if (roofline && spq_bwprobe_init(&bp, (size_t)256 << 20)) die("out of memory for the bandwidth probe's 256 MiB (--no-roofline skips it)");
        for (int bi = 0; bi < nb; bi++) {
            int B = bs[bi];
            spq_state s;
            check_mem(c->path, m, B, B, 0, kv, 0);
            if (spq_state_init_seq(&s, m, B, B, 0, 0, kv)) die("out of memory for %d sequences' caches (lower --batch or -n)", B);
            double pass_bytes = 0, pass_sec = 0, step[SPQ_NSTEPS] = {0};
            for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
                spq_err ce;
                if (spq_ckpt_check(c, &ce)) die_err(&ce);
                double sec = 0;
                s.step_sec = timings && r >= 0 ? step : NULL;
                for (int k = 0; k < tg; k++) {
                    for (int j = 0; j < B; j++) { tok[j] = (k * 7919 + j * 104729 + 13) % c->cfg.vocab_size; pos[j] = k; seq[j] = j; }
                    double t0 = spq_now();
                    if (spq_forward_batch(m, &s, tok, pos, seq, NULL, B) < 0) die("bench: a batched decode step failed; no figure printed");
                    sec += spq_now() - t0;
                    if (roofline) {
                        double ps = spq_bwprobe_pass(&bp);
                        if (r >= 0) { pass_bytes += (double)bp.n * sizeof *bp.buf; pass_sec += ps; }
                    }
                }
                if (r >= 0) tps[r] = (double)B * tg / sec;
            }
            s.step_sec = NULL;
            spq_state_free(&s);
            if (timings) { /* stderr, as the single-sequence --timings: ms per step of B rows */
                double tot = 0, per = 1e3 / ((double)reps * tg);
                for (int k = 0; k < SPQ_NSTEPS; k++) tot += step[k];
                fprintf(stderr, "spikeq: %d thread(s) %d sequences, ms per step:", ts[ti], B);
                for (int k = 0; k < SPQ_NSTEPS; k++)
                    fprintf(stderr, " %s %.3f (%.1f%%)%s", spq_step_names[k], step[k] * per, tot > 0 ? 100 * step[k] / tot : 0.0,
                            k + 1 < SPQ_NSTEPS ? "," : "");
                fprintf(stderr, "; total %.3f\n", tot * per);
            }
            double mean, sd;
            stats(tps, reps, &mean, &sd);
            double bw = pass_sec > 0 ? pass_bytes / pass_sec : 0, frac = bw > 0 ? (double)m->linear_bytes * mean / B / bw : 0;
            char tname[32];
            snprintf(tname, sizeof tname, "tg%d", tg);
            if (!strcmp(fmt, "md")) {
                printf("| %s | %s | %s | %d | %d | %s | %.2f ± %.2f | %.2f |", model_name, plan, spq_kern()->name, ts[ti], B, tname, mean, sd, mean / B);
                if (roofline) printf(" %.0f%% of %.1f GB/s |\n", 100 * frac, bw / 1e9);
                else printf(" |\n");
            } else if (!strcmp(fmt, "csv")) {
                printf("\"%s\",\"%s\",%s,%d,%d,%s,%.3f,%.3f,%.3f,%.4f,%.0f\n", model_name, plan, spq_kern()->name, ts[ti], B, tname, mean, sd,
                       mean / B, frac, bw);
            } else {
                printf("%s  {\"model\": \"%s\", \"plan\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"sequences\": %d, \"test\": \"%s\", "
                       "\"tps_mean\": %.3f, \"tps_sd\": %.3f, \"tps_per_seq\": %.3f, \"roofline_fraction\": %.4f, \"read_bw\": %.0f}",
                       first ? "" : ",\n", model_name, plan, spq_kern()->name, ts[ti], B, tname, mean, sd, mean / B, frac, bw);
                first = 0;
            }
            fflush(stdout);
        }
        spq_bwprobe_free(&bp);
    }
    if (!strcmp(fmt, "json")) printf("\n]\n");
    free(tok); free(pos); free(seq); free(tps);
}

/* One model of a run: its checkpoint, runtime model and state, named in the table by name
 * and plan; bytes and params of its checkpoint, int8 MACs per token through its linears. */
typedef struct {
    spq_ckpt c;
    spq_model m;
    spq_state s;
    char name[128], plan[64];
    size_t bytes, params;
    double macs;
} bench_model;

/* What one run of the pp/tg tests needs (spikeq bench without --batch): nm models and npf
 * prefetch values, nm * npf variants (model-major) taking turns. */
typedef struct {
    bench_model *bm;
    int nm;
    const char *fmt;
    const int *ids, *pfs;
    int pp, tg, reps, npf, roofline, timings;
    size_t pf_default;
    int *first; /* json: no comma before the first row */
} bench_cfg;

#define MAX_VARIANTS 64

/* The median over the reps of t/s ratio[r] = tps_v[r] / tps_0[r], and the lowest and
 * highest ratio: a repetition's variants ran in the same seconds, so their ratio holds
 * still while the machine's bandwidth moves between repetitions. */
static void ratio_stats(const double *tv, const double *t0, int reps, double *med, double *lo, double *hi)
{
    double r[1000];
    for (int i = 0; i < reps; i++) r[i] = t0[i] > 0 ? tv[i] / t0[i] : 0;
    qsort(r, (size_t)reps, sizeof *r, cmp_double);
    *med = reps % 2 ? r[reps / 2] : 0.5 * (r[reps / 2 - 1] + r[reps / 2]);
    *lo = r[0];
    *hi = r[reps - 1];
}

/* The pp and tg tests at one thread count, with the limits probed before, between and
 * after them; one row per test and variant (model x --prefetch value). The variants take
 * turns: in tg, each token position runs on every model in turn (a --prefetch list shares
 * each model's positions out), in pp, each prompt run does; a probe pass follows every
 * forward pass. */
static void bench_threads(const bench_cfg *g, int threads)
{
    const char *fmt = g->fmt;
    const int *ids = g->ids, *pfs = g->pfs;
    int pp = g->pp, tg = g->tg, reps = g->reps, npf = g->npf, nm = g->nm, roofline = g->roofline, timings = g->timings;
    int nv = nm * npf;
    spq_bwprobe bp = {0};
    if (roofline && tg > 0 && spq_bwprobe_init(&bp, (size_t)256 << 20))
        die("out of memory for the bandwidth probe's 256 MiB (--no-roofline skips it)");
    /* [test]: work (pp: int8 MACs, tg: bytes) and seconds of the passes between the runs */
    double pass_work[2] = {0, 0}, pass_sec[2] = {0, 0};
    /* the limits are probed before and after the runs and the higher kept: a busy
     * neighbour on a shared machine during one probe would otherwise inflate the fractions */
    double bw = roofline ? spq_probe_read_bw((size_t)1 << 30) : 0, peak = roofline ? spq_probe_int8_macs(spq_kern()) : 0;
    double means[MAX_VARIANTS][2], sds[MAX_VARIANTS][2], rmed[MAX_VARIANTS][2], rlo[MAX_VARIANTS][2], rhi[MAX_VARIANTS][2];
    for (int test = 0; test < 2; test++) {
        int n = test ? tg : pp;
        if (n <= 0) continue;
        /* per variant: seconds and tokens of each repetition, step times */
        double (*sec)[MAX_VARIANTS] = calloc((size_t)reps, sizeof *sec), (*step)[SPQ_NSTEPS] = calloc((size_t)nv, sizeof *step);
        int (*cnt)[MAX_VARIANTS] = calloc((size_t)reps, sizeof *cnt);
        double *tps = malloc(sizeof(double) * (size_t)reps * (size_t)nv);
        if (!sec || !step || !cnt || !tps) die("out of memory");
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            spq_err ce;
            for (int mi = 0; mi < nm; mi++)
                if (spq_ckpt_check(&g->bm[mi].c, &ce)) die_err(&ce);
            /* tg: the prefetch values take turns token by token; pp: run by run */
            for (int k = 0; k < (test ? tg : npf); k++)
                for (int mi = 0; mi < nm; mi++) {
                    bench_model *b = &g->bm[mi];
                    int v = mi * npf + k % npf;
                    b->s.prefetch = pfs ? (size_t)pfs[k % npf] << 10 : g->pf_default;
                    b->s.step_sec = timings && r >= 0 ? step[v] : NULL;
                    double t0 = spq_now();
                    int rc = test == 0 ? spq_forward(&b->m, &b->s, ids, pp, 0, 0) : spq_forward(&b->m, &b->s, ids + k, 1, k, 0);
                    if (rc) die("bench: %s: a forward pass failed (%s%d at position %d); no figure printed", b->name, test ? "tg" : "pp",
                                test ? tg : pp, test ? k : 0);
                    if (r >= 0) { sec[r][v] += spq_now() - t0; cnt[r][v] += test ? 1 : pp; }
                    b->s.step_sec = NULL;
                    /* passes in the warm-up too, uncounted: the first pass over the buffer
                     * after the 1 GiB probe's allocation can read far slower than the rest
                     * with no page fault in the process (docs/benchmarks.md, Method) */
                    if (roofline) {
                        double ps = 0, w = test ? (double)bp.n * sizeof *bp.buf : 0;
                        if (test) ps = spq_bwprobe_pass(&bp);
                        else w = spq_probe_int8_pass(spq_kern(), &ps);
                        if (r >= 0) { pass_work[test] += w; pass_sec[test] += ps; }
                    }
                }
        }
        for (int v = 0; v < nv; v++) {
            double *tv = tps + (size_t)v * reps;
            for (int r = 0; r < reps; r++) tv[r] = cnt[r][v] / sec[r][v];
            stats(tv, reps, &means[v][test], &sds[v][test]);
            ratio_stats(tv, tps, reps, &rmed[v][test], &rlo[v][test], &rhi[v][test]);
            if (timings) { /* stderr: the tables on stdout stay machine-readable */
                double tot = 0, per = 1e3 / ((double)reps * (test ? cnt[0][v] : n));
                for (int k = 0; k < SPQ_NSTEPS; k++) tot += step[v][k];
                fprintf(stderr, "spikeq: %d thread(s) %s%d", threads, test ? "tg" : "pp", n);
                if (nm > 1) fprintf(stderr, " %s", g->bm[v / npf].plan);
                if (pfs) fprintf(stderr, " prefetch %d KiB", pfs[v % npf]);
                fprintf(stderr, ", ms per token:");
                for (int k = 0; k < SPQ_NSTEPS; k++)
                    fprintf(stderr, " %s %.3f (%.1f%%)%s", spq_step_names[k], step[v][k] * per,
                            tot > 0 ? 100 * step[v][k] / tot : 0.0, k + 1 < SPQ_NSTEPS ? "," : "");
                fprintf(stderr, "; total %.3f\n", tot * per);
            }
        }
        free(tps); free(sec); free(cnt); free(step);
    }
    spq_bwprobe_free(&bp);
    if (roofline) {
        double bw2 = spq_probe_read_bw((size_t)1 << 30), peak2 = spq_probe_int8_macs(spq_kern());
        bw = bw2 > bw ? bw2 : bw;
        peak = peak2 > peak ? peak2 : peak;
    }
    /* the limits between the runs (0 for a test not run) */
    double peak_btw = pass_sec[0] > 0 ? pass_work[0] / pass_sec[0] : 0, bw_btw = pass_sec[1] > 0 ? pass_work[1] / pass_sec[1] : 0;
    char best_note[16384] = "", vplans[MAX_VARIANTS][96];
    for (int v = 0; v < nv; v++) {
        const char *plan = g->bm[v / npf].plan;
        if (pfs) snprintf(vplans[v], sizeof vplans[v], "%s, prefetch %d KiB", plan, pfs[v % npf]);
        else snprintf(vplans[v], sizeof vplans[v], "%s", plan);
    }
    for (int v = 0; v < nv; v++)
    for (int test = 0; test < 2; test++) {
        int n = test ? tg : pp;
        if (n <= 0) continue;
        const bench_model *b = &g->bm[v / npf];
        double mean = means[v][test], sd = sds[v][test];
        const char *vplan = vplans[v];
        double done = test ? (double)b->m.linear_bytes * mean : b->macs * mean; /* bytes/s or MACs/s */
        double frac = !roofline ? 0 : done / (test ? bw_btw : peak_btw);
        double frac_best = !roofline ? 0 : done / (test ? bw : peak);
        char tname[32];
        snprintf(tname, sizeof tname, "%s%d", test ? "tg" : "pp", n);
        size_t bl = strlen(best_note);
        if (nv > 1) /* (a note cut short at 16 KiB) */
            snprintf(best_note + bl, sizeof best_note - bl, "%s%s (%s) %.0f%%", bl ? ", " : "", tname, vplan, 100 * frac_best);
        else snprintf(best_note + bl, sizeof best_note - bl, "%s%s %.0f%%", bl ? ", " : "", tname, 100 * frac_best);
        if (!strcmp(fmt, "md")) {
            printf("| %s | %.2f GiB | %.2f B | %s | %s | %d | %s | %.2f ± %.2f |", b->name, b->bytes / 1073741824.0,
                   b->params / 1e9, vplan, spq_kern()->name, threads, tname, mean, sd);
            if (roofline) printf(" %.0f%% of %s |\n", 100 * frac, test ? "read BW" : "int8 peak");
            else printf(" |\n");
        } else if (!strcmp(fmt, "csv")) {
            printf("\"%s\",%zu,%zu,\"%s\",%s,%d,%s,%.3f,%.3f,%.4f,%s,%.0f,%.0f,%.4f,%.4f\n", b->name, b->bytes, b->params, vplan,
                   spq_kern()->name, threads, tname, mean, sd, frac, test ? "read_bw" : "int8_peak", test ? bw_btw : peak_btw,
                   test ? bw : peak, frac_best, rmed[v][test]);
        } else {
            printf("%s  {\"model\": \"%s\", \"size_bytes\": %zu, \"params\": %zu, \"plan\": \"%s\", \"isa\": \"%s\", \"threads\": %d, "
                   "\"test\": \"%s\", \"tps_mean\": %.3f, \"tps_sd\": %.3f, \"roofline_fraction\": %.4f, \"read_bw\": %.0f, \"int8_macs\": %.0f, "
                   "\"roofline_fraction_best\": %.4f, \"read_bw_best\": %.0f, \"int8_macs_best\": %.0f, \"vs_first\": %.4f}",
                   *g->first ? "" : ",\n", b->name, b->bytes, b->params, vplan, spq_kern()->name, threads, tname, mean, sd, frac, bw_btw,
                   peak_btw, frac_best, bw, peak, rmed[v][test]);
            *g->first = 0;
        }
        fflush(stdout);
    }
    if (roofline && !strcmp(fmt, "md")) {
        char btw[128] = "";
        if (bw_btw > 0) snprintf(btw, sizeof btw, "read bandwidth %.1f GB/s%s", bw_btw / 1e9, peak_btw > 0 ? ", " : "");
        if (peak_btw > 0) snprintf(btw + strlen(btw), sizeof btw - strlen(btw), "int8 peak %.0f G MAC/s", peak_btw / 1e9);
        fprintf(stderr, "spikeq: %d thread(s): between the runs %s; best of the probes before and after %.1f GB/s, %.0f G MAC/s, "
                "against which %s", threads, btw, bw / 1e9, peak / 1e9, best_note);
        if (nm == 1) fprintf(stderr, "; %.3f GB of weights and %.2f G MAC per token", g->bm[0].m.linear_bytes / 1e9, g->bm[0].macs / 1e9);
        for (int mi = 0; nm > 1 && mi < nm; mi++)
            fprintf(stderr, "%s %s %.3f GB", mi ? "," : "; weights per token:", g->bm[mi].plan, g->bm[mi].m.linear_bytes / 1e9);
        fprintf(stderr, "\n");
    }
    if (nv > 1 && strcmp(fmt, "json") && strcmp(fmt, "csv"))
        for (int test = 0; test < 2; test++) {
            int n = test ? tg : pp;
            if (n <= 0) continue;
            fprintf(stderr, "spikeq: %d thread(s) %s%d against %s, median of the %d repetitions' ratios (lowest-highest):", threads,
                    test ? "tg" : "pp", n, vplans[0], reps);
            for (int v = 1; v < nv; v++)
                fprintf(stderr, " %s %.2fx (%.2f-%.2f)%s", vplans[v], rmed[v][test], rlo[v][test], rhi[v][test], v + 1 < nv ? "," : "\n");
        }
}

#define MAX_MODELS 8

/* Split a comma list into at most max items (a copy in *dup, freed by the caller). */
static int split_list(const char *flag, const char *s, char **dup, char **items, int max)
{
    int n = 0;
    char *save = NULL;
    *dup = strdup(s);
    if (!*dup) die("out of memory");
    for (char *t = strtok_r(*dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max) die("%s: at most %d entries", flag, max);
        items[n++] = t;
    }
    if (!n) die("%s: an empty list", flag);
    return n;
}

/* The synthetic models that --scheme and --bits name: each scheme of the list, a cmpq entry
 * once per bit-width of the --bits list. */
static int synthetic_plans(const char *schemes, const char *bitlist, char **sch, double *bits)
{
    char *sd, *bd, *ss[MAX_MODELS], *bs[MAX_MODELS];
    int ns = split_list("--scheme", schemes, &sd, ss, MAX_MODELS), nb = split_list("--bits", bitlist, &bd, bs, MAX_MODELS), n = 0;
    double bv[MAX_MODELS];
    for (int j = 0; j < nb; j++) {
        bv[j] = arg_float("--bits", bs[j]);
        if (!(bv[j] >= 2 && bv[j] <= 8)) die("--bits: between 2 and 8, not '%s'", bs[j]);
    }
    for (int i = 0; i < ns; i++) {
        if (strcmp(ss[i], "w8a8") && strcmp(ss[i], "f16") && strcmp(ss[i], "f32") && strcmp(ss[i], "cmpq") && !ggml_scheme(ss[i]))
            die("--scheme: w8a8, f16, f32, cmpq, q4_0, q8_0, q4_k, q5_k, q6_k, iq4_xs or q4_k_m, not '%s'", ss[i]);
        for (int j = 0; j < (strcmp(ss[i], "cmpq") ? 1 : nb); j++) {
            if (n == MAX_MODELS) die("--scheme, --bits: at most %d models in one run", MAX_MODELS);
            sch[n] = strdup(ss[i]);
            bits[n++] = bv[j];
        }
    }
    free(sd); free(bd);
    return n;
}

int cmd_bench(int argc, char **argv)
{
    const char *paths[MAX_MODELS], *syn = NULL, *schemes = "w8a8", *bitlist = "4", *tlist = "1,2", *fmt = "md";
    int npath = 0;
    int kv = SPQ_F16, pp = 512, tg = 128, reps = 5, layers = 0, roofline = 1, spike_layers = 0, spike_fp8 = 0, timings = 0;
    const char *pflist = NULL, *blist = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            puts("usage: spikeq bench (-m MODEL [-m MODEL2 ...] | --synthetic tinyllama-1.1b|llama2-7b|llama3-8b|mistral-7b)\n"
                 "       [-p 512] [-n 128] [-t 1,2] [-r 5] [--scheme w8a8|f16|f32|cmpq|q4_k_m|q4_k|q5_k|q6_k|q8_0|q4_0|iq4_xs[,...] [--bits 3.5[,...]]]\n"
                 "       [--spike-layers K [--spike-fp8]]\n"
                 "       [--layers L] [--no-roofline] [--timings] [--prefetch KIB[,KIB...]] [--batch B[,B...]]\n"
                 "       [--kv f16|f32] [-o md|json|csv]\n"
                 "--synthetic builds random weights with a real model's shapes (--layers to fit memory);\n"
                 "--spike-layers K keeps the first K down_proj in FP16 (FP8 with --spike-fp8); --scheme cmpq makes\n"
                 "random CMPQ linears of the size --bits gives (INT8 head); q4_k_m ... iq4_xs make random ggml blocks\n"
                 "of that type (q4_k_m: Q6_K v/down in llama.cpp's layers, Q6_K head); --timings prints, on stderr, the\n"
                 "milliseconds per token (per step with --batch) of each step of the forward pass in each test;\n"
                 "--prefetch sets the KiB of its next weights a thread fetches while it waits at a barrier\n"
                 "(default 256, 0: off). Several models (-m repeated, or lists in --scheme and --bits: each cmpq\n"
                 "entry at each width) and a --prefetch list take turns, each token position on every model\n"
                 "(prefetch values token by token) in tg and run by run in pp, one row each: they compare under\n"
                 "the same load on a shared machine; stderr (md) and the vs_first field (json, csv) give each\n"
                 "row's t/s over the first row's, the median of the repetitions' ratios. The roofline fraction\n"
                 "is against limits probed between the runs (a 256 MiB read pass after every token, an int8\n"
                 "peak pass after every prefill); stderr (md) and the _best fields (json, csv) give it against\n"
                 "the best of the probes before and after the tests too; --no-roofline skips all probes.\n"
                 "--batch 1,4,8,16: instead, -n decode steps of B independent sequences in one batch (each its own\n"
                 "KV cache): aggregate and per-sequence tokens/s, and the fraction of the read bandwidth that the\n"
                 "weights read once per step make.");
            return 0;
        }
        if (!strcmp(a, "-m") && v) {
            if (npath == MAX_MODELS) die("-m: at most %d models in one run", MAX_MODELS);
            paths[npath++] = argv[++i];
        }
        else if (!strcmp(a, "--synthetic") && v) syn = argv[++i];
        else if (!strcmp(a, "--scheme") && v) schemes = argv[++i];
        else if (!strcmp(a, "--bits") && v) bitlist = argv[++i];
        else if (!strcmp(a, "-p") && v) pp = (int)arg_int(a, argv[++i], 0, 1 << 20);
        else if (!strcmp(a, "-n") && v) tg = (int)arg_int(a, argv[++i], 0, 1 << 20);
        else if (!strcmp(a, "-r") && v) reps = (int)arg_int(a, argv[++i], 1, 1000);
        else if (!strcmp(a, "-t") && v) tlist = argv[++i];
        else if (!strcmp(a, "--layers") && v) layers = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "--spike-layers") && v) spike_layers = (int)arg_int(a, argv[++i], 0, 1024);
        else if (!strcmp(a, "--spike-fp8")) spike_fp8 = 1;
        else if (!strcmp(a, "--no-roofline")) roofline = 0;
        else if (!strcmp(a, "--timings")) timings = 1;
        else if (!strcmp(a, "--prefetch") && v) pflist = argv[++i];
        else if (!strcmp(a, "--batch") && v) blist = argv[++i];
        else if (!strcmp(a, "--kv") && v) kv = kv_arg(argv[++i]);
        else if (!strcmp(a, "-o") && v) fmt = argv[++i];
        else die("bench: unknown option %s", a);
    }
    if (strcmp(fmt, "md") && strcmp(fmt, "json") && strcmp(fmt, "csv")) die("-o: md, json or csv");
    if (!npath == !syn) die("bench: give -m MODEL or --synthetic SHAPE");
    char *sch[MAX_MODELS];
    double bits[MAX_MODELS];
    int nm = syn ? synthetic_plans(schemes, bitlist, sch, bits) : npath;
    if (blist && nm > 1) die("--batch: one model at a time (one -m, one --scheme entry)");
    int npf = 1, *pfs = pflist ? parse_list("--prefetch", pflist, 0, 1 << 20, &npf) : NULL;
    if (pfs && tg > 0 && tg < npf) die("--prefetch: %d values take turns over -n %d tokens: give -n >= %d", npf, tg, npf);
    if (nm * npf > MAX_VARIANTS) die("--prefetch: at most %d models x prefetch values", MAX_VARIANTS);
    int nt;
    int *ts = parse_list("-t", tlist, 1, 1024, &nt);
    int tmax = 0;
    for (int i = 0; i < nt; i++) tmax = ts[i] > tmax ? ts[i] : tmax;
    tmax = set_threads(tmax); /* the states' per-thread scratch is sized for the largest count */
    for (int i = 0; i < nt; i++) ts[i] = ts[i] < tmax ? ts[i] : tmax; /* capped (and said) once */
    bench_model *bm = calloc((size_t)nm, sizeof *bm);
    if (!bm) die("out of memory");
    int vocab = 0;
    const model_shape *shape = syn ? find_shape("--synthetic", syn) : NULL;
    for (int mi = 0; mi < nm; mi++) { /* every model and state before any timing */
        bench_model *b = &bm[mi];
        if (syn) {
            const model_shape *s = shape;
            int L = layers && layers < s->layers ? layers : s->layers, cm = !strcmp(sch[mi], "cmpq");
            synthetic(&b->c, s, L, sch[mi], bits[mi], cm ? 0 : spike_layers, spike_fp8);
            if (L < s->layers) snprintf(b->name, sizeof b->name, "%s (random, %d of %d layers)", s->name, L, s->layers);
            else snprintf(b->name, sizeof b->name, "%s (random)", s->name);
            if (cm) snprintf(b->plan, sizeof b->plan, "cmpq %.2f bits", bits[mi]);
            else if (spike_layers) snprintf(b->plan, sizeof b->plan, "%s + %s down x%d", sch[mi], spike_fp8 ? "FP8" : "FP16", spike_layers);
            else snprintf(b->plan, sizeof b->plan, "%s", sch[mi]);
            free(sch[mi]);
        } else {
            open_ckpt(paths[mi], &b->c);
            verify_ckpt(&b->c); /* before timing: the check would share the cores and the memory bus */
            snprintf(b->name, sizeof b->name, "%s", paths[mi]);
            snprintf(b->plan, sizeof b->plan, "%s", b->c.plan_json ? "w8a8 (+plan)" : "as stored");
        }
        spq_err e;
        /* the context the tests need, as llama-bench sizes it (past the trained context RoPE
         * extrapolates: the work per token is what is measured) */
        int ctx = pp + tg + 1;
        if (spq_model_init(&b->m, &b->c, ctx, &e)) die_err(&e);
        for (int i = 0; i < b->c.n; i++) { b->params += spq_tensor_numel(&b->c.t[i]); b->bytes += b->c.t[i].nbytes; }
        /* int8 MACs per token through the linears (what the int8 peak bounds) */
        for (int l = 0; l < b->c.cfg.n_layers; l++)
            for (int j = 0; j < SPQ_NPROJ; j++) b->macs += (double)b->m.layers[l].p[j].N * b->m.layers[l].p[j].K;
        b->macs += (double)b->m.head.N * b->m.head.K;
        vocab = !mi || b->c.cfg.vocab_size < vocab ? b->c.cfg.vocab_size : vocab;
        if (blist) break;
        check_mem(b->c.path, &b->m, pp > 0 ? pp : 1, 1, 0, kv, 1);
        if (spq_state_init_seq(&b->s, &b->m, pp > 0 ? pp : 1, 1, 0, 0, kv)) die("out of memory");
    }
    if (blist) {
        int nb, *bs = parse_list("--batch", blist, 1, 4096, &nb);
        if (tg < 1) die("--batch: give -n >= 1 decode steps");
        bench_batch(&bm[0].m, &bm[0].c, bm[0].name, bm[0].plan, ts, nt, bs, nb, tg, reps, roofline, fmt, kv, timings);
        free(bs); free(ts); free(pfs);
        spq_model_free(&bm[0].m);
        close_ckpt(&bm[0].c);
        free(bm);
        return 0;
    }
    size_t pf_default = bm[0].s.prefetch;
    int nids = (pp > tg ? pp : tg) + 1; /* token ids for both tests (-p 0 or -n 0 allowed) */
    int *ids = malloc(sizeof(int) * (size_t)nids);
    if (!ids) die("out of memory");
    for (int i = 0; i < nids; i++) ids[i] = (i * 7919 + 13) % vocab;
    if (!strcmp(fmt, "md"))
        printf("| model | size | params | plan | isa | threads | test | t/s | %s |\n|---|---:|---:|---|---|---:|---|---:|---:|\n",
               roofline ? "of roofline" : "");
    else if (!strcmp(fmt, "csv"))
        printf("model,size_bytes,params,plan,isa,threads,test,tps_mean,tps_sd,roofline_fraction,limit,limit_between,limit_best,"
               "roofline_fraction_best,vs_first\n");
    else
        printf("[\n");
    int first = 1;
    bench_cfg g = {bm, nm, fmt, ids, pfs, pp, tg, reps, npf, roofline, timings, pf_default, &first};
    for (int ti = 0; ti < nt; ti++) bench_threads(&g, set_threads(ts[ti]));
    if (!strcmp(fmt, "json")) printf("\n]\n");
    free(ids); free(ts); free(pfs);
    for (int mi = 0; mi < nm; mi++) {
        spq_state_free(&bm[mi].s);
        spq_model_free(&bm[mi].m);
        close_ckpt(&bm[mi].c);
    }
    free(bm);
    return 0;
}
