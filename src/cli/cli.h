/* Commands of the ftune CLI: each takes (argc, argv) with argv[0] the command name and returns
 * the process exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef FTUNE_CLI_H
#define FTUNE_CLI_H

#include "ftune/core.h"

int cmd_version(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_logprobs(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_preview(int argc, char **argv);
int cmd_chat(int argc, char **argv);

/* Print "ftune: <current error message>" to stderr and return 1. */
int cli_fail(void);
/* 1 if the argument asks for a command's usage (-h, --help): printed on stdout, exit 0. */
int cli_is_help(const char *a);
/* Flush stdout; 1 if everything written to it so far went out (no write error, e.g. a full disk
 * or a closed pipe), else 0. */
int cli_stdout_ok(void);

#endif
