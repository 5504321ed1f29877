/* Small argument helpers shared by the generate and logprobs commands. */
#ifndef FTUNE_CLI_ARGS_H
#define FTUNE_CLI_ARGS_H

#include "ftune/core.h"

/* Parse "1,2,3" (ids >= 0, no empty items) into a malloc'ed array; errors name `opt`. */
ft_status cli_parse_ids(const char *opt, const char *s, int **out, int *n);
/* Parse a whole-string number; errors name `opt`. */
ft_status cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
ft_status cli_parse_float(const char *opt, const char *s, double *out);

#endif
