/*
 * `ftune logprobs --model DIR [--adapter DIR] --ids 1,2,3,...`
 * --adapter merges a PEFT LoRA adapter into the loaded weights first (ft_adapter_apply).
 * Prints exactly two lines:
 *   loss <mean over t=1..n-1 of -log p(ids[t] | ids[0..t-1])>   (%.6f; log-softmax in double;
 *                                                                 "nan" for a single id)
 *   next <argmax of the logits after the last id>                (lowest id on ties)
 * The forward is exact f32 and runs through the KV cache in chunks, so only (chunk, V) logits exist
 * at once.
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/model.h"
#include "ftune/peft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int usage(FILE *f) {
    fprintf(f, "usage: ftune logprobs --model DIR [--adapter DIR] --ids ID,ID,...\n");
    return f == stdout ? 0 : 2;
}

int cmd_logprobs(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *adapter = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) return usage(stdout);
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_s = argv[++i];
        else if (!strcmp(argv[i], "--adapter") && i + 1 < argc) adapter = argv[++i];
        else {
            fprintf(stderr, "ftune logprobs: unknown or incomplete option '%s'\n", argv[i]);
            return usage(stderr);
        }
    }
    if (!dir || !ids_s) return usage(stderr);
    if (cli_parse_path("--model", dir, &dir) ||
        (adapter && cli_parse_path("--adapter", adapter, &adapter)))
        return cli_fail();
    int *ids = NULL, n = 0;
    if (cli_parse_ids("--ids", ids_s, &ids, &n)) return cli_fail();
    ft_model m;
    if (ft_model_load(&m, dir)) {
        free(ids);
        return cli_fail();
    }
    const int V = m.cfg.vocab_size;
    ft_kv_cache kc = {0};
    float *logits = NULL;
    int rc = 1;
    if (adapter && ft_adapter_apply(&m, adapter)) goto out;
    const int ctx = ft_config_context(&m.cfg);
    if (ctx > 0 && n > ctx) {
        ft_errorf(FT_ERR_ARG, "--ids: %d ids exceed the model's %d positions%s", n, ctx,
                  ctx == m.cfg.sliding_window ? " (its sliding window)" : "");
        goto out;
    }
    if (ft_kv_cache_init(&kc, &m.cfg, n)) goto out;
    logits = ft_calloc((size_t)kc.chunk * V, sizeof(float));
    if (!logits) goto out;
    double nll = 0;
    int next = 0;
    for (int done = 0; done < n; done += kc.chunk) {
        int len = n - done < kc.chunk ? n - done : kc.chunk;
        if (ft_model_forward(&m, &kc, ids + done, len, done, logits, 1)) goto out;
        for (int i = 0; i < len; i++) {
            const float *lg = logits + (size_t)i * V;
            int t = done + i; /* lg predicts ids[t + 1] */
            if (t + 1 < n) {
                double mx = lg[0], sum = 0;
                for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
                for (int v = 0; v < V; v++) sum += exp((double)lg[v] - mx);
                nll += -((double)lg[ids[t + 1]] - mx - log(sum));
            } else {
                for (int v = 1; v < V; v++)
                    if (lg[v] > lg[next]) next = v;
            }
        }
    }
    /* one id: no target, the mean over nothing is NaN (as torch's mean of an empty tensor) */
    printf("loss %.6f\nnext %d\n", n > 1 ? nll / (n - 1) : (double)NAN, next);
    rc = 0;
out:
    if (rc) cli_fail();
    ft_free(logits);
    ft_kv_cache_free(&kc);
    ft_model_free(&m);
    free(ids);
    return rc;
}
