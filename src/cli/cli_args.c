/* Argument helpers for the CLI: whole-string integer/float parsing and id lists. */
#include "cli_args.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

ft_status cli_parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return ft_errorf(FT_ERR_ARG, "%s: '%s' is not an integer in [%lld, %lld]", opt, s, lo, hi);
    *out = v;
    return FT_OK;
}

ft_status cli_parse_float(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || strpbrk(s, "xX") || !(fabs(v) <= FLT_MAX))
        return ft_errorf(FT_ERR_ARG, "%s: '%s' is not a decimal number within float range", opt, s);
    *out = v;
    return FT_OK;
}

ft_status cli_parse_path(const char *opt, const char *s, const char **out) {
    if (!*s) return ft_errorf(FT_ERR_ARG, "%s: empty path", opt);
    *out = s;
    return FT_OK;
}

ft_status cli_parse_ids(const char *opt, const char *s, int **out, int *n) {
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *ids = malloc(cap * sizeof(int));
    if (!ids) return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", opt);
    const char *p = s;
    int k = 0;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT_MAX || (*end && *end != ',')) {
            free(ids);
            return ft_errorf(FT_ERR_ARG, "%s: item %d of '%s' is not a token id", opt, k + 1, s);
        }
        ids[k++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    *out = ids;
    *n = k;
    return FT_OK;
}

int cli_is_sample_opt(const char *opt) {
    return !strcmp(opt, "--max-new-tokens") || !strcmp(opt, "--temperature") ||
           !strcmp(opt, "--top-k") || !strcmp(opt, "--top-p") || !strcmp(opt, "--seed");
}

ft_status cli_parse_sample_opt(const char *opt, const char *v, cli_sample_opts *o) {
    long long n;
    double d;
    ft_status st;
    if (!strcmp(opt, "--max-new-tokens")) return cli_parse_int(opt, v, 0, 1 << 30, &o->max_new);
    if (!strcmp(opt, "--top-k")) {
        if (!(st = cli_parse_int(opt, v, 0, 1 << 30, &n))) o->sp.top_k = (int)n;
        return st;
    }
    if (!strcmp(opt, "--seed")) {
        if (!(st = cli_parse_int(opt, v, 0, LLONG_MAX, &n))) o->sp.seed = (uint64_t)n;
        return st;
    }
    FT_ASSERT(!strcmp(opt, "--temperature") || !strcmp(opt, "--top-p"));
    if ((st = cli_parse_float(opt, v, &d))) return st;
    if (!strcmp(opt, "--temperature")) {
        if (d < 0) return ft_errorf(FT_ERR_ARG, "%s: '%s' is below 0", opt, v);
        o->sp.temperature = (float)d;
    } else {
        if (!((float)d > 0 && d <= 1))
            return ft_errorf(FT_ERR_ARG, "%s: '%s' is not in (0, 1]", opt, v);
        o->sp.top_p = (float)d;
    }
    return FT_OK;
}
