/* Small argument helpers shared by the CLI commands. */
#ifndef FTUNE_CLI_ARGS_H
#define FTUNE_CLI_ARGS_H

#include "ftune/core.h"
#include "ftune/model.h"

/* Parse "1,2,3" (ids >= 0, no empty items) into a malloc'ed array; errors name `opt`. */
ft_status cli_parse_ids(const char *opt, const char *s, int **out, int *n);
/* Parse a whole-string decimal number; errors name `opt`. A float must be finite as a float (the
 * type the value is kept in: 1e300 would become inf); hexadecimal forms are refused. */
ft_status cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
ft_status cli_parse_float(const char *opt, const char *s, double *out);
/* A file or folder argument: an empty one is an error naming `opt` (joined with "/name" it would
 * become a path at the filesystem root). */
ft_status cli_parse_path(const char *opt, const char *s, const char **out);

/* The sampling options `generate` and `chat` share, parsed alike: --max-new-tokens N in [0, 2^30],
 * --temperature T >= 0, --top-k K in [0, 2^30], --top-p P in (0, 1], --seed S in [0, 2^63 - 1]. */
typedef struct {
    long long max_new;
    ft_sample_params sp;
} cli_sample_opts;

/* 1 if `opt` is one of the sampling options. */
int cli_is_sample_opt(const char *opt);
/* Parse the value `v` of sampling option `opt` into *o; errors name the option. */
ft_status cli_parse_sample_opt(const char *opt, const char *v, cli_sample_opts *o);

#endif
