/* Helpers shared by the CLI commands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define FTUNE_VERSION "0.1.0"

/* Prints the recorded error as one line: messages can echo input (a role "user\nX"), so line
 * breaks and other control characters are written as escapes (\n, \r, \t, \xNN). */
int cli_fail(void) {
    const char *m = ft_error_message();
    fputs("ftune: ", stderr);
    for (const unsigned char *p = (const unsigned char *)(m[0] ? m : "unknown error"); *p; p++) {
        if (*p == '\n')
            fputs("\\n", stderr);
        else if (*p == '\r')
            fputs("\\r", stderr);
        else if (*p == '\t')
            fputs("\\t", stderr);
        else if (*p < 32 || *p == 127)
            fprintf(stderr, "\\x%02x", *p);
        else
            fputc(*p, stderr);
    }
    fputc('\n', stderr);
    return 1;
}

int cli_is_help(const char *a) {
    return !strcmp(a, "-h") || !strcmp(a, "--help");
}

int cli_stdout_ok(void) {
    return fflush(stdout) == 0 && !ferror(stdout);
}

int cmd_version(int argc, char **argv) {
    if (argc > 1) {
        if (argc == 2 && cli_is_help(argv[1])) {
            printf("usage: ftune version\n");
            return 0;
        }
        fprintf(stderr, "ftune version: unexpected argument '%s'\nusage: ftune version\n", argv[1]);
        return 2;
    }
    printf("ftune %s\n", FTUNE_VERSION);
    return 0;
}
