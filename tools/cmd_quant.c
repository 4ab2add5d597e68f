/* cmd_quant.c — spikeq profile and quantize: calibration statistics, the spike plan, and
 * writing a W8A8 (+ FP16/FP8 spike fallback) checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ggml_quants.h"
#include "quant/cmpq_fit.h"
#include "quant/quantize.h"
#include "tools/cli.h"

typedef struct {
    const char *calib;
    int samples, seq, ids_file, sample_rows;
} calib_opts;

/* Calibration ids: the file's text tokenised (BOS once), or its whitespace-separated ids. */
static int *calib_ids(const spq_ckpt *c, const calib_opts *o, long *n, uint64_t *hash)
{
    size_t len;
    char *text = read_text(o->calib, &len);
    *hash = spq_hash64(text, len);
    int *ids;
    if (o->ids_file) {
        ids = parse_ids(text, o->calib, c->cfg.vocab_size, n);
    } else {
        if (!c->tok.n_vocab) die("%s: the model has no tokenizer: pass token ids with --ids", o->calib);
        ids = encode_text(&c->tok, text, len, 1, 0, n);
    }
    free(text);
    if (*n < 2) die("%s: calibration text is too short", o->calib);
    return ids;
}

static void run_profile(const spq_ckpt *c, const calib_opts *o, spq_profile *prof, uint64_t *hash)
{
    spq_model m;
    spq_err e;
    long n;
    int *ids = calib_ids(c, o, &n, hash);
    int seq = o->seq < c->cfg.max_seq ? o->seq : c->cfg.max_seq;
    if (spq_model_init(&m, c, seq, &e)) die_err(&e);
    double t0 = spq_now();
    if (spq_profile_run(&m, ids, n, o->samples, seq, o->sample_rows, prof, &e)) die_err(&e);
    fprintf(stderr, "spikeq: profiled %d tokens of %s in %.2f s\n", prof->tokens_seen, o->calib, spq_now() - t0);
    spq_model_free(&m);
    free(ids);
}

static int parse_calib_flag(calib_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--calib") && v) { o->calib = v; (*i)++; }
    else if (!strcmp(a, "--samples") && v) { o->samples = (int)arg_int(a, v, 1, 1 << 20); (*i)++; }
    else if (!strcmp(a, "--seq") && v) { o->seq = (int)arg_int(a, v, 2, 1 << 20); (*i)++; }
    else if (!strcmp(a, "--ids")) o->ids_file = 1;
    else return 0;
    return 1;
}

/* The spike rule's flags, shared by profile and quantize; *thr_given: --spike-threshold seen. */
static int parse_rule_flag(spq_quant_opts *o, int argc, char **argv, int *i, int *thr_given)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!v) return 0;
    if (!strcmp(a, "--spike-rule")) {
        o->rule = -1;
        for (int r = 0; r < SPQ_RULE_RANDOM; r++)
            if (!strcmp(v, spq_rule_names[r])) o->rule = r;
        if (o->rule < 0) die("--spike-rule: median, ratio, top or abs, not '%s' (the random control is --keep-random K)", v);
    } else if (!strcmp(a, "--spike-threshold")) {
        o->threshold = (float)arg_float(a, v);
        if (!(o->threshold > 0)) die("--spike-threshold: a positive number, not '%s'", v);
        *thr_given = 1;
    } else if (!strcmp(a, "--spike-top")) o->top = (int)arg_int(a, v, 1, 1 << 20);
    else return 0;
    (*i)++;
    return 1;
}

/* Defaults and checks of the rule's numbers once the flags are read. */
static void finish_rule(spq_quant_opts *o, int thr_given)
{
    if (!thr_given) o->threshold = spq_rule_threshold(o->rule);
    if (o->rule == SPQ_RULE_ABS && !thr_given) die("--spike-rule abs needs --spike-threshold (an input absmax)");
    if (o->rule == SPQ_RULE_TOP && o->top <= 0) die("--spike-rule top needs --spike-top K");
    if (thr_given && (o->rule == SPQ_RULE_TOP || o->rule == SPQ_RULE_RANDOM)) die("--spike-threshold: the %s rule has no threshold", spq_rule_names[o->rule]);
}

/* heat map of log10 absmax, layers down, input sites across */
static void write_svg(const char *path, const spq_profile *p)
{
    FILE *f = fopen(path, "w");
    if (!f) die("%s: cannot write", path);
    int L = p->n_layers, cw = 110, ch = 28, x0 = 70, y0 = 40;
    float lo = 1e30f, hi = 0;
    for (int i = 0; i < L * SPQ_NSITES; i++) {
        float a = p->s[i].absmax > 1e-6f ? log10f(p->s[i].absmax) : -6;
        lo = a < lo ? a : lo;
        hi = a > hi ? a : hi;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n",
            x0 + cw * SPQ_NSITES + 20, y0 + ch * L + 40);
    fprintf(f, "<text x=\"%d\" y=\"20\">input absmax by layer and linear input (log colour scale)</text>\n", x0);
    for (int s = 0; s < SPQ_NSITES; s++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x0 + cw * s + cw / 2, y0 - 6, spq_site_names[s]);
    for (int l = 0; l < L; l++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", x0 - 6, y0 + ch * l + 18, l);
        for (int s = 0; s < SPQ_NSITES; s++) {
            float a = p->s[l * SPQ_NSITES + s].absmax;
            float t = hi > lo ? ((a > 1e-6f ? log10f(a) : -6) - lo) / (hi - lo) : 0;
            int r = (int)(255 * t), b = (int)(255 * (1 - t));
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,60,%d)\"/>", x0 + cw * s, y0 + ch * l, cw - 2, ch - 2, r, b);
            fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"white\" text-anchor=\"middle\">%.3g</text>\n", x0 + cw * s + cw / 2, y0 + ch * l + 18, a);
        }
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

int cmd_profile(int argc, char **argv)
{
    const char *path = NULL, *csv = NULL, *json = NULL, *svg = NULL;
    calib_opts co = {NULL, 16, 512, 0, 0};
    spq_quant_opts qo = spq_quant_defaults();
    qo.spike = SPQ_F16;
    int threads = 0, thr_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            puts("usage: spikeq profile MODEL --calib FILE [--ids] [--samples 16] [--seq 512] [-t N]\n"
                 "       [--spike-rule median|ratio|top|abs] [--spike-threshold T] [--spike-top K]\n"
                 "       [--csv F] [--json F] [--svg F]\n"
                 "Statistics of every linear layer's input over calibration text; '*' marks the\n"
                 "projections the chosen spike rule (default median, threshold 3) keeps in high precision,\n"
                 "and 'rules:' lists every rule that would pick the projection (median 3, ratio 50, top K\n"
                 "with --spike-top, abs with --spike-rule abs --spike-threshold T).");
            return 0;
        }
        if (parse_calib_flag(&co, argc, argv, &i) || parse_rule_flag(&qo, argc, argv, &i, &thr_given)) continue;
        if (!strcmp(a, "--csv") && v) csv = argv[++i];
        else if (!strcmp(a, "--json") && v) json = argv[++i];
        else if (!strcmp(a, "--svg") && v) svg = argv[++i];
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "-m") && v) path = argv[++i];
        else if (a[0] == '-') die("profile: unknown option %s", a);
        else path = a;
    }
    if (!co.calib) die("profile: --calib FILE is required");
    finish_rule(&qo, thr_given);
    set_threads(threads);
    spq_ckpt c;
    open_ckpt(path, &c);
    spq_profile prof;
    uint64_t h;
    spq_err e;
    run_profile(&c, &co, &prof, &h);
    int L = c.cfg.n_layers;
    unsigned char *fb = malloc((size_t)L * SPQ_NPROJ), *by[SPQ_RULE_RANDOM] = {0};
    if (!fb || spq_plan(&prof, &qo, L, fb, &e) < 0) die("profile: out of memory");
    for (int r = 0; r < SPQ_RULE_RANDOM; r++) { /* what each rule would pick, at its default or given numbers */
        spq_quant_opts ro = qo;
        ro.rule = r;
        if (r != qo.rule) ro.threshold = spq_rule_threshold(r);
        if ((r == SPQ_RULE_TOP && ro.top <= 0) || (r == SPQ_RULE_ABS && qo.rule != SPQ_RULE_ABS)) continue;
        if (!(by[r] = malloc((size_t)L * SPQ_NPROJ)) || spq_plan(&prof, &ro, L, by[r], &e) < 0) die("profile: out of memory");
    }
    FILE *fc = csv ? fopen(csv, "w") : NULL;
    if (csv && !fc) die("%s: cannot write", csv);
    if (fc) fprintf(fc, "layer,site,absmax,p99.9,p99.99,median,max_over_median,kurtosis,max_pos,max_channel,max_token\n");
    printf("%5s %-10s %10s %9s %9s %9s %9s %9s %6s %6s %6s\n", "layer", "input", "absmax", "p99.9", "p99.99", "median",
           "max/med", "kurtosis", "pos", "chan", "token");
    for (int l = 0; l < L; l++)
        for (int s = 0; s < SPQ_NSITES; s++) {
            const spq_site_stats *st = &prof.s[l * SPQ_NSITES + s];
            double med = spq_site_quantile(st, 0.5), p9 = spq_site_quantile(st, 0.999), p99 = spq_site_quantile(st, 0.9999);
            int j = s == SPQ_SITE_DOWN ? SPQ_DOWN : s == SPQ_SITE_O ? SPQ_O : -1;
            int spike = j >= 0 && fb[l * SPQ_NPROJ + j];
            char rules[64] = "";
            for (int r = 0; r < SPQ_RULE_RANDOM && j >= 0; r++)
                if (by[r] && by[r][l * SPQ_NPROJ + j])
                    snprintf(rules + strlen(rules), sizeof rules - strlen(rules), "%s%s", rules[0] ? "," : "  rules: ", spq_rule_names[r]);
            printf("%5d %-10s %10.4g %9.4g %9.4g %9.4g %9.1f %9.1f %6d %6d %6d%s%s\n", l, spq_site_names[s], st->absmax, p9, p99,
                   med, med > 0 ? st->absmax / med : 0, spq_site_kurtosis(st), st->max_pos, st->max_chan, st->max_tok,
                   spike ? "  * spike" : "", rules);
            if (fc)
                fprintf(fc, "%d,%s,%g,%g,%g,%g,%g,%g,%d,%d,%d\n", l, spq_site_names[s], st->absmax, p9, p99, med,
                        med > 0 ? st->absmax / med : 0, spq_site_kurtosis(st), st->max_pos, st->max_chan, st->max_tok);
        }
    if (fc) fclose(fc);
    if (json) {
        spq_ckpt q;
        if (spq_quantize(&c, &prof, fb, &qo, h, &q, &e)) die_err(&e);
        FILE *fj = fopen(json, "w");
        if (!fj) die("%s: cannot write", json);
        fprintf(fj, "%s\n", q.plan_json);
        fclose(fj);
        spq_quantized_free(&q);
    }
    if (svg) write_svg(svg, &prof);
    free(fb);
    for (int r = 0; r < SPQ_RULE_RANDOM; r++) free(by[r]);
    spq_profile_free(&prof);
    close_ckpt(&c);
    return 0;
}

static int dtype_arg(const char *flag, const char *v)
{
    if (!strcmp(v, "f16") || !strcmp(v, "fp16")) return SPQ_F16;
    if (!strcmp(v, "f32") || !strcmp(v, "fp32")) return SPQ_F32;
    if (!strcmp(v, "i8") || !strcmp(v, "int8")) return SPQ_I8;
    if (!strcmp(v, "fp8") || !strcmp(v, "e4m3")) return SPQ_E4M3;
    if (!strcmp(v, "fp8-e5m2") || !strcmp(v, "e5m2")) return SPQ_E5M2;
    if (!strcmp(v, "none")) return -1; /* distinct from SPQ_F32, which is 0 */
    die("%s: unknown format '%s'", flag, v);
}

int cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *scheme = "w8a8";
    calib_opts co = {NULL, 16, 512, 0, 0};
    spq_quant_opts qo = spq_quant_defaults();
    int threads = 0, spike_given = 0, thr_given = 0, rule_given = 0, bits_given = 0;
    double smooth = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            puts("usage: spikeq quantize MODEL -o OUT.spq [--scheme w8a8] [--act dynamic|static]\n"
                 "       [--act-bits 8] [--act-scale tensor|token] [--weight-bits 8] [--weight-scale tensor|channel]\n"
                 "       [--smooth ALPHA] [--spike fp16|fp8|fp8-e5m2|none] [--spike-act fp8|fp16]\n"
                 "       [--calib FILE [--ids] --samples 16 --seq 512]\n"
                 "       [--spike-rule median|ratio|top|abs] [--spike-threshold T] [--spike-top K] [--max-fallback K]\n"
                 "       [--keep 5.down,9.o|paper] [--keep-random K --seed S] [--embed f16|f32|i8] [--head i8|f16]\n"
                 "       [--clip] [-t N]\n"
                 "       spikeq quantize MODEL -o OUT.spq --scheme cmpq --bits 3.5 --calib FILE [--outliers 0.2]\n"
                 "       [--tables auto|column|shared]\n"
                 "       spikeq quantize MODEL -o OUT.spq --scheme rtn --bits 4\n"
                 "       spikeq quantize MODEL -o OUT.spq --scheme q4_0|q4_1|q5_0|q5_1|q8_0\n"
                 "Every linear layer becomes INT8 x INT8 with one scale per tensor; the spike projections\n"
                 "the profiler picks on --calib text (default rule: down/o inputs whose absmax is >= 3x the\n"
                 "median absmax of all linear inputs) stay FP16 or FP8 E4M3. Default --spike fp16 with --calib,\n"
                 "none without. Embeddings and the LM head stay FP16 unless --embed/--head say otherwise.\n"
                 "--act-bits/--weight-bits 4..8 restrict the INT8 codes to +-(2^(b-1)-1); --act-scale token gives\n"
                 "each token its own dynamic scale; --weight-scale channel one scale per output row. --smooth ALPHA\n"
                 "folds SmoothQuant's per-channel factors (max|x|^a / max|w|^(1-a)) into the weights (needs --calib).\n"
                 "--spike fp8-e5m2: weights and activations rounded to E5M2 without a scale. Rules: median\n"
                 "(absmax >= T x median absmax of all inputs, T 3), ratio (absmax >= T x the input's own median |x|,\n"
                 "T 50), top (the K largest), abs (absmax >= T); --keep paper: the paper's layers for LLaMA-2-7B,\n"
                 "LLaMA-3-8B, Mistral-7B; --keep-random K: K random down/o projections (the control, --seed S).\n"
                 "--clip searches each INT8 weight scale (a x absmax/127, a in [0.45, 1]) for the least output\n"
                 "error on 128 calibration input rows per layer (needs --calib).\n"
                 "cmpq: weight-only, channel-wise mixed precision (2/3/4/5/6/8 bits per input channel from the\n"
                 "activation energy on --calib text, Lloyd-fitted levels, --outliers percent of weights kept\n"
                 "as FP16 residuals); --bits is the average bits per weight of every linear, all bytes counted.\n"
                 "rtn: the uniform baseline (per output row, min-max, --bits 2..8), stored dequantised in FP16.\n"
                 "q4_0 ... q8_0: llama.cpp's block formats by ggml's reference quantiser, stored dequantised in\n"
                 "FP32 (to compare accuracy at equal size; they run at FP32 speed).");
            return 0;
        }
        if (parse_calib_flag(&co, argc, argv, &i)) continue;
        if (parse_rule_flag(&qo, argc, argv, &i, &thr_given)) { rule_given = 1; continue; }
        if (!strcmp(a, "-o") && v) out = argv[++i];
        else if (!strcmp(a, "--act-bits") && v) qo.act_bits = (int)arg_int(a, argv[++i], 4, 8);
        else if (!strcmp(a, "--weight-bits") && v) qo.weight_bits = (int)arg_int(a, argv[++i], 4, 8);
        else if (!strcmp(a, "--act-scale") && v) {
            v = argv[++i];
            if (strcmp(v, "tensor") && strcmp(v, "token")) die("--act-scale: tensor or token, not '%s'", v);
            qo.act_token = !strcmp(v, "token");
        } else if (!strcmp(a, "--weight-scale") && v) {
            v = argv[++i];
            if (strcmp(v, "tensor") && strcmp(v, "channel")) die("--weight-scale: tensor or channel, not '%s'", v);
            qo.weight_channel = !strcmp(v, "channel");
        } else if (!strcmp(a, "--smooth") && v) {
            smooth = arg_float(a, argv[++i]);
            if (!(smooth >= 0 && smooth <= 1)) die("--smooth: alpha between 0 and 1, not '%s'", argv[i]);
        } else if (!strcmp(a, "--keep-random") && v) {
            qo.rule = SPQ_RULE_RANDOM;
            qo.top = (int)arg_int(a, argv[++i], 1, 1 << 20);
        } else if (!strcmp(a, "--seed") && v) qo.seed = (uint64_t)arg_int(a, argv[++i], 0, 1ll << 62);
        else if (!strcmp(a, "--scheme") && v) scheme = argv[++i];
        else if (!strcmp(a, "--act") && v) {
            v = argv[++i];
            if (strcmp(v, "static") && strcmp(v, "dynamic")) die("--act: dynamic or static, not '%s'", v);
            qo.act_static = !strcmp(v, "static");
        } else if (!strcmp(a, "--spike") && v) {
            int d = dtype_arg(a, argv[++i]);
            if (d != -1 && d != SPQ_F16 && d != SPQ_E4M3 && d != SPQ_E5M2) die("--spike: fp16, fp8, fp8-e5m2 or none");
            qo.spike = d == -1 ? 0 : d;
            spike_given = 1;
        }
        else if (!strcmp(a, "--spike-act") && v) qo.spike_act = dtype_arg(a, argv[++i]);
        else if (!strcmp(a, "--max-fallback") && v) qo.max_fallback = (int)arg_int(a, argv[++i], 0, 1 << 20);
        else if (!strcmp(a, "--keep") && v) { qo.keep = argv[++i]; if (!spike_given) qo.spike = SPQ_F16; }
        else if (!strcmp(a, "--embed") && v) qo.embed = dtype_arg(a, argv[++i]);
        else if (!strcmp(a, "--head") && v) qo.head_i8 = dtype_arg(a, argv[++i]) == SPQ_I8;
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "--clip")) { qo.clip = 1; co.sample_rows = 128; }
        else if (!strcmp(a, "--bits") && v) { qo.bits = arg_float(a, argv[++i]); bits_given = 1; }
        else if (!strcmp(a, "--outliers") && v) qo.outliers = arg_float(a, argv[++i]) / 100.0;
        else if (!strcmp(a, "--tables") && v) {
            v = argv[++i];
            qo.cmpq_mode = !strcmp(v, "auto") ? -1 : !strcmp(v, "column") ? 0 : !strcmp(v, "shared") ? 1 : -2;
            if (qo.cmpq_mode == -2) die("--tables: auto, column or shared, not '%s'", v);
        }
        else if (a[0] == '-') die("quantize: unknown option %s", a);
        else in = a;
    }
    if (!in || !out) die("quantize: usage: spikeq quantize MODEL -o OUT.spq [options]");
    qo.scheme = !strcmp(scheme, "w8a8") ? SPQ_SCHEME_W8A8 : !strcmp(scheme, "cmpq") ? SPQ_SCHEME_CMPQ
              : !strcmp(scheme, "rtn") ? SPQ_SCHEME_RTN : -1;
    static const struct { const char *name; int type; } blocks[] = {
        {"q4_0", GGML_Q4_0}, {"q4_1", GGML_Q4_1}, {"q5_0", GGML_Q5_0}, {"q5_1", GGML_Q5_1}, {"q8_0", GGML_Q8_0}};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
        if (!strcmp(scheme, blocks[b].name)) { qo.scheme = SPQ_SCHEME_GGML; qo.ggml_type = blocks[b].type; }
    if (qo.scheme < 0) die("quantize: unknown --scheme '%s' (w8a8, cmpq, rtn, q4_0, q4_1, q5_0, q5_1, q8_0)", scheme);
    if (qo.scheme == SPQ_SCHEME_GGML && (bits_given || co.calib || rule_given || smooth >= 0 || qo.rule == SPQ_RULE_RANDOM))
        die("quantize: --scheme %s takes no --bits, --calib or W8A8 options", scheme);
    if (qo.scheme == SPQ_SCHEME_CMPQ) {
        if (!co.calib) die("quantize: --scheme cmpq needs --calib FILE (bits follow the activation distribution)");
        if (!(qo.bits >= 2.0 && qo.bits <= 64.0)) die("--bits: between 2 and 64 for cmpq (all bytes counted), not %g", qo.bits);
        if (!(qo.outliers >= 0 && qo.outliers <= 0.1)) die("--outliers: a percentage between 0 and 10");
        if (spike_given || qo.keep || qo.act_static || qo.clip || rule_given || qo.rule == SPQ_RULE_RANDOM || smooth >= 0 ||
            qo.act_bits != 8 || qo.weight_bits != 8 || qo.act_token || qo.weight_channel)
            die("quantize: --spike/--keep/--act/--clip/--smooth, the spike rules and the bit and scale options are W8A8 options");
    }
    if (qo.scheme == SPQ_SCHEME_RTN && (qo.bits != (int)qo.bits || qo.bits < 2 || qo.bits > 8))
        die("--bits: an integer from 2 to 8 for rtn, not %g", qo.bits);
    if (qo.scheme == SPQ_SCHEME_RTN && (rule_given || smooth >= 0 || qo.rule == SPQ_RULE_RANDOM)) die("quantize: rtn takes --bits only");
    if (qo.rule == SPQ_RULE_RANDOM && (qo.keep || rule_given)) die("quantize: --keep-random is its own rule: no --keep or --spike-rule with it");
    if (qo.keep && rule_given) die("quantize: --keep lists the projections: no --spike-rule/--spike-threshold/--spike-top with it");
    finish_rule(&qo, thr_given);
    if (qo.rule == SPQ_RULE_RANDOM && !spike_given) qo.spike = SPQ_F16;
    if (qo.act_token && qo.act_static) die("quantize: --act-scale token is for dynamic scales (static scales are per tensor)");
    if (smooth >= 0 && !co.calib) die("quantize: --smooth needs --calib FILE (the activations' channel ranges)");
    if (qo.clip && (qo.weight_bits != 8 || qo.weight_channel)) die("quantize: --clip searches one 8-bit scale per tensor: not with --weight-bits/--weight-scale channel");
    if (!spike_given && co.calib && !qo.keep && qo.scheme == SPQ_SCHEME_W8A8) qo.spike = SPQ_F16;
    if (qo.spike_act != SPQ_E4M3 && qo.spike_act != SPQ_F16) die("--spike-act: fp8 or fp16");
    if (qo.embed != SPQ_F16 && qo.embed != SPQ_F32 && qo.embed != SPQ_I8) die("--embed: f16, f32 or i8");
    if (qo.spike && !qo.keep && qo.rule != SPQ_RULE_RANDOM && !co.calib) die("quantize: --spike %s needs --calib FILE to find the spikes", qo.spike == SPQ_F16 ? "fp16" : "fp8");
    if (qo.act_static && !co.calib) die("quantize: --act static needs --calib FILE");
    if (qo.clip && !co.calib) die("quantize: --clip needs --calib FILE");
    set_threads(threads);
    spq_ckpt c, q;
    spq_err e;
    open_ckpt(in, &c);
    verify_ckpt(&c); /* before hours of profiling, and before writing anything made from it */
    if (spq_ckpt_validate(&c, &e)) die_err(&e);
    if (qo.scheme == SPQ_SCHEME_CMPQ) /* refuse an impossible budget before profiling */
        for (int i = 0; i < c.n; i++) {
            const spq_tensor *t = &c.t[i];
            if (!strstr(t->name, "_proj.weight") || t->ndim != 2) continue;
            double mb = spq_cmpq_min_bits((int)t->shape[0], (int)t->shape[1], qo.outliers);
            if (qo.bits < mb)
                die("%s: --bits %g is below the minimum of %s [%lld x %lld]: %.3g bits (every channel at 2 bits, tables, outliers)",
                    in, qo.bits, t->name, (long long)t->shape[0], (long long)t->shape[1], mb);
        }
    if (qo.keep && !strcmp(qo.keep, "paper") && !(qo.keep = spq_paper_keep(&c.cfg, &e))) die("%s: %s", in, e.msg);
    spq_profile prof;
    spq_smooth sm;
    int have_prof = 0;
    uint64_t h = 0;
    if (co.calib) { run_profile(&c, &co, &prof, &h); have_prof = 1; }
    int L = c.cfg.n_layers;
    unsigned char *fb = malloc((size_t)L * SPQ_NPROJ);
    int nfb = spq_plan(have_prof ? &prof : NULL, &qo, L, fb, &e);
    if (nfb < 0) die_err(&e);
    /* after the plan (the rule picks the layers whose inputs spike in the model as it is, the
     * same layers with or without smoothing), before quantising: static scales and clipping
     * see the smoothed inputs */
    if (smooth >= 0) {
        if (spq_smooth_init(&sm, &c, &prof, (float)smooth, &e)) die_err(&e);
        qo.smooth = &sm;
    }
    if (spq_quantize(&c, have_prof ? &prof : NULL, fb, &qo, h, &q, &e)) die_err(&e);
    if (spq_write(out, &q, &e)) die_err(&e);
    if (qo.scheme != SPQ_SCHEME_W8A8) {
        /* bits per weight of the linears: CMPQ blobs as stored; RTN as its codes + FP16 scale
         * and zero per row would take; a ggml block format as its blocks */
        double bits = 0, nw = 0, mib = 0;
        for (int i = 0; i < q.n; i++)
            if (strstr(q.t[i].name, "_proj.weight")) {
                double n = (double)spq_tensor_numel(&q.t[i]);
                nw += n;
                int el = 32;
                size_t bb = 0;
                if (qo.scheme == SPQ_SCHEME_GGML) spq_ggml_block(qo.ggml_type, &el, &bb);
                bits += qo.scheme == SPQ_SCHEME_CMPQ ? 8.0 * (double)q.t[i].nbytes
                      : qo.scheme == SPQ_SCHEME_GGML ? n / el * 8.0 * (double)bb
                                                     : n * qo.bits + 32.0 * (double)q.t[i].shape[0];
            }
        mib = bits / 8 / 1048576.0;
        char what[64];
        snprintf(what, sizeof what, "%s", qo.scheme == SPQ_SCHEME_CMPQ ? "CMPQ" : qo.scheme == SPQ_SCHEME_RTN ? "RTN (dequantised to FP16)" : "");
        if (qo.scheme == SPQ_SCHEME_GGML) snprintf(what, sizeof what, "%s (dequantised to FP32)", spq_ggml_type_name(qo.ggml_type));
        fprintf(stderr, "spikeq: wrote %s: %s, linear weights %.4f bits per weight (%.2f MiB%s)\n", out, what, bits / nw, mib,
                qo.scheme != SPQ_SCHEME_CMPQ ? " if packed" : "");
    } else {
        fprintf(stderr, "spikeq: wrote %s: W%dA%d (%s activations per %s, weights per %s%s), %d spike projection(s) in %s:", out,
                qo.weight_bits, qo.act_bits, qo.act_static ? "static" : "dynamic", qo.act_token ? "token" : "tensor",
                qo.weight_channel ? "channel" : "tensor", qo.smooth ? ", SmoothQuant" : "", nfb,
                qo.spike == SPQ_E4M3 ? "FP8 E4M3" : qo.spike == SPQ_E5M2 ? "FP8 E5M2" : "FP16");
        for (int l = 0; l < L; l++)
            for (int j = 0; j < SPQ_NPROJ; j++)
                if (fb[l * SPQ_NPROJ + j]) fprintf(stderr, " %d.%s", l, j == SPQ_DOWN ? "down" : "o");
        fprintf(stderr, "\n");
    }
    spq_quantized_free(&q);
    free(fb);
    if (qo.smooth) spq_smooth_free(&sm);
    if (have_prof) spq_profile_free(&prof);
    close_ckpt(&c);
    return 0;
}
