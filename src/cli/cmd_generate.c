/*
 * `ftune generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) [--max-new-tokens N]
 *                 [--temperature T] [--top-k K] [--top-p P] [--seed S]`
 * Defaults: 64 new tokens, temperature 0 (greedy), top-k 0 (off), top-p 1 (off), seed 0.
 * With --prompt-ids the new ids are printed space-separated on one line as they are produced.
 * --prompt TEXT needs the tokenizer module, which this build does not have yet: a clear error.
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: ftune generate --model DIR (--prompt-ids ID,ID,... | --prompt TEXT)\n"
                    "       [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n");
    return 2;
}

static void print_id(int id, void *user) {
    int *count = user;
    printf((*count)++ ? " %d" : "%d", id);
    fflush(stdout);
}

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *prompt = NULL;
    long long max_new = 64, top_k = 0, seed = 0;
    double temp = 0, top_p = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        ft_status st = FT_OK;
        if (!v) {
            fprintf(stderr, "ftune generate: option '%s' needs a value\n", a);
            return usage();
        }
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--prompt-ids")) ids_s = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--max-new-tokens")) st = cli_parse_int(a, v, 0, 1 << 30, &max_new);
        else if (!strcmp(a, "--temperature")) st = cli_parse_float(a, v, &temp);
        else if (!strcmp(a, "--top-k")) st = cli_parse_int(a, v, 0, 1 << 30, &top_k);
        else if (!strcmp(a, "--top-p")) st = cli_parse_float(a, v, &top_p);
        else if (!strcmp(a, "--seed")) st = cli_parse_int(a, v, 0, (long long)(~0ull >> 1), &seed);
        else {
            fprintf(stderr, "ftune generate: unknown option '%s'\n", a);
            return usage();
        }
        if (st) return cli_fail();
        i++;
    }
    if (!dir || (!ids_s == !prompt)) return usage();
    if (prompt) {
        ft_errorf(FT_ERR_UNSUPPORTED,
                  "--prompt needs the tokenizer, which is not in this build yet; use --prompt-ids");
        return cli_fail();
    }
    int *ids = NULL, n = 0;
    if (cli_parse_ids("--prompt-ids", ids_s, &ids, &n)) return cli_fail();
    ft_model m;
    if (ft_model_load(&m, dir)) {
        free(ids);
        return cli_fail();
    }
    ft_sample_params sp = {(float)temp, (int)top_k, (float)top_p, (uint64_t)seed};
    int *out = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof(int)), n_out = 0, count = 0;
    ft_status st = out ? ft_generate(&m, ids, n, (int)max_new, &sp, out, &n_out, print_id, &count)
                       : ft_errorf(FT_ERR_NOMEM, "out of memory");
    printf("\n");
    free(out);
    free(ids);
    ft_model_free(&m);
    return st ? cli_fail() : 0;
}
