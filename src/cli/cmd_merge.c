/*
 * `ftune merge --model DIR --adapter DIR --out DIR`: merge a PEFT LoRA adapter into its base
 * model and write a Hugging Face folder (config.json, model.safetensors in the base's dtype,
 * tokenizer files), as PEFT's merge_and_unload() + save_pretrained() would. --out may not be the
 * --model or --adapter folder (the merged weights would replace the base model's).
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/model.h"
#include "ftune/peft.h"
#include "ftune/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ft_status copy_if_present(const char *src_dir, const char *dst_dir, const char *name) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    if (access(a, R_OK)) return FT_OK;
    char *data;
    size_t len;
    ft_status st = ft_read_file(a, &data, &len);
    if (!st) st = ft_write_file_atomic(b, data, len);
    free(data);
    return st;
}

/* 1 if paths a and b name the same existing file or folder. */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int usage(FILE *f) {
    fprintf(f, "usage: ftune merge --model DIR --adapter DIR --out DIR\n");
    return f == stdout ? 0 : 2;
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char **slot = !strcmp(argv[i], "--model")     ? &model
                            : !strcmp(argv[i], "--adapter") ? &adapter
                            : !strcmp(argv[i], "--out")     ? &out
                                                            : NULL;
        if (cli_is_help(argv[i])) return usage(stdout);
        if (!slot || i + 1 >= argc) {
            fprintf(stderr,
                    slot ? "ftune merge: option '%s' needs a value\n"
                         : "ftune merge: unknown option '%s'\n",
                    argv[i]);
            return usage(stderr);
        }
        *slot = argv[++i];
    }
    if (!model || !adapter || !out) return usage(stderr);
    if (cli_parse_path("--model", model, &model) ||
        cli_parse_path("--adapter", adapter, &adapter) || cli_parse_path("--out", out, &out))
        return cli_fail();
    if (same_file(out, model) || same_file(out, adapter)) {
        ft_errorf(FT_ERR_ARG, "--out: %s is the %s folder (merging would overwrite it)", out,
                  same_file(out, model) ? "--model" : "--adapter");
        return cli_fail();
    }
    ft_model m;
    ft_status st = ft_model_load(&m, model);
    if (st) return cli_fail();
    st = ft_adapter_apply(&m, adapter);
    if (!st && mkdir(out, 0755) && errno != EEXIST)
        st = ft_errorf(FT_ERR_IO, "%s: cannot create: %s", out, strerror(errno));
    if (!st) st = ft_model_save(&m, out);
    for (size_t i = 0; !st && i < FT_N_TOKENIZER_FILES; i++)
        st = copy_if_present(model, out, ft_tokenizer_files[i]);
    ft_model_free(&m);
    if (st) return cli_fail();
    fprintf(stderr, "ftune: merged %s into %s -> %s\n", adapter, model, out);
    return 0;
}
