/*
 * `ftune train CONFIG.yaml [--set key=value ...]`: read the YAML run configuration, apply the
 * overrides in order, validate, print the notes about ignored keys, and run the trainer.
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/trainer.h"

#include <stdio.h>
#include <string.h>

static void train_usage(FILE *f) {
    fprintf(f, "usage: ftune train CONFIG.yaml [--set key=value ...]\n"
               "  CONFIG.yaml uses Axolotl's key names (base_model, datasets, adapter, lora_r, ...);\n"
               "  --set overrides one key (the value is YAML: --set lora_target_modules=[q_proj,v_proj])\n");
}

int cmd_train(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            train_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--set")) {
            if (++i >= argc) {
                fprintf(stderr, "ftune train: --set needs key=value\n");
                return 2;
            }
        } else if (!strncmp(argv[i], "--set=", 6)) {
            continue;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "ftune train: unknown option '%s'\n", argv[i]);
            train_usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "ftune train: one config file only ('%s' and '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        train_usage(stderr);
        return 2;
    }
    if (cli_parse_path("CONFIG.yaml", path, &path)) return cli_fail();
    ft_train_config cfg;
    ft_train_config_defaults(&cfg);
    ft_status st = ft_train_config_load(&cfg, path);
    for (int i = 1; !st && i < argc; i++) {
        if (!strcmp(argv[i], "--set")) st = ft_train_config_set(&cfg, argv[++i]);
        else if (!strncmp(argv[i], "--set=", 6)) st = ft_train_config_set(&cfg, argv[i] + 6);
    }
    if (!st) st = ft_train_config_finish(&cfg);
    if (st) {
        ft_train_config_free(&cfg);
        return cli_fail();
    }
    for (int i = 0; i < cfg.n_notes; i++) fprintf(stderr, "ftune: note: %s\n", cfg.notes[i]);
    st = ft_train_run(&cfg);
    ft_train_config_free(&cfg);
    return st ? cli_fail() : 0;
}
