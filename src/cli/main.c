/*
 * ftune command-line entry: dispatches `ftune <command> ...` to the cmd_* functions.
 * Each command returns a process exit code; errors are printed as one line "ftune: <message>".
 * Standard output is flushed here: a command whose output could not be written (a full disk, a
 * closed pipe) fails with "ftune: writing standard output failed" however it returned.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, "show a model's family, shapes, parameters and memory per method"},
    {"convert", cmd_convert, "convert a llama2.c checkpoint into a Hugging Face folder"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"logprobs", cmd_logprobs, "mean NLL of ids[1:] and the argmax next id"},
    {"tokenize", cmd_tokenize, "encode JSON-lines strings to ids (or --decode)"},
    {"train", cmd_train, "fine-tune from a YAML config"},
    {"merge", cmd_merge, "merge a LoRA adapter into its base model"},
    {"preview", cmd_preview, "show processed training samples with the trained tokens marked"},
    {"chat", cmd_chat, "chat with a model through its chat template (interactive)"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ftune <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

/* The exit code once standard output is flushed: 1 (with the error line) if any of it was lost. */
static int finish(int rc) {
    if (!cli_stdout_ok() && rc == 0) {
        fprintf(stderr, "ftune: writing standard output failed\n");
        rc = 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return finish(argc < 2 ? 2 : 0);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return finish(commands[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "ftune: unknown command '%s' (see ftune --help)\n", argv[1]);
    return 2;
}
