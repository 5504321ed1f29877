/* Small argument helpers shared by the CLI commands. */
#ifndef FTUNE_CLI_ARGS_H
#define FTUNE_CLI_ARGS_H

#include "ftune/core.h"

/* Parse "1,2,3" (ids >= 0, no empty items) into a malloc'ed array; errors name `opt`. */
ft_status cli_parse_ids(const char *opt, const char *s, int **out, int *n);
/* Parse a whole-string number; errors name `opt`. */
ft_status cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
ft_status cli_parse_float(const char *opt, const char *s, double *out);
/* A file or folder argument: an empty one is an error naming `opt` (joined with "/name" it would
 * become a path at the filesystem root). */
ft_status cli_parse_path(const char *opt, const char *s, const char **out);

#endif
