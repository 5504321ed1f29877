/* Helpers shared by the CLI commands. */
#include "cli.h"

#include <stdio.h>

#define FTUNE_VERSION "0.1.0"

int cli_fail(void) {
    const char *m = ft_error_message();
    fprintf(stderr, "ftune: %s\n", m[0] ? m : "unknown error");
    return 1;
}

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("ftune %s\n", FTUNE_VERSION);
    return 0;
}
