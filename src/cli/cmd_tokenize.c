/*
 * `ftune tokenize --tokenizer DIR [--no-special]`: standard input is JSON Lines, one JSON string
 * per line; prints one line per input with the ids separated by single spaces (special tokens
 * added as the tokenizer's post-processor says unless --no-special).
 * `ftune tokenize --decode --tokenizer DIR [--skip-special]`: lines of space-separated ids in,
 * one JSON string per line out.
 * `ftune tokenize --convert-llama2c FILE [--offset N] [--length N] [--vocab-size 32000] --out DIR`:
 * writes DIR/tokenizer.json and DIR/tokenizer_config.json from llama2.c's tokenizer.bin (bytes
 * [N, N+LEN) of FILE); `ftune convert llama2c --tokenizer-offset/--tokenizer-length` does the same
 * next to the converted model.
 * Errors name the input line ("<stdin>:LINE: ..."); the first error stops the run with status 1.
 * A JSON string that decodes to invalid UTF-8 (a lone surrogate escape, raw invalid bytes) is an
 * error naming the line: the reference tokenizers only take Unicode strings. So is U+0000 ("\u0000"
 * or a NUL byte), which a C string cannot carry, and anything but whitespace after the string.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_args.h"
#include "ftune/tokenizer.h"

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int usage(FILE *f) {
    fprintf(f,
            "usage: ftune tokenize --tokenizer DIR [--no-special]   (JSON-lines strings on stdin)\n"
            "       ftune tokenize --decode --tokenizer DIR [--skip-special]   (lines of ids on "
            "stdin)\n"
            "       ftune tokenize --convert-llama2c FILE [--offset N] [--length N] [--vocab-size "
            "V] --out DIR\n");
    return f == stdout ? 0 : 2;
}

static int encode_line(ft_tokenizer *tok, const char *line, size_t len, long lineno, int add_special) {
    if (memchr(line, 0, len) || ft_json_nul_escape(line, len) >= 0) {
        ft_errorf(FT_ERR_FORMAT, "<stdin>:%ld: the string holds U+0000, which ftune tokenize does not accept", lineno);
        return cli_fail();
    }
    const char *end = line;
    cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    while (j && end < line + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!j || !cJSON_IsString(j) || end != line + len) {
        cJSON_Delete(j);
        ft_errorf(FT_ERR_FORMAT, "<stdin>:%ld: expected one JSON string per line", lineno);
        return cli_fail();
    }
    int *ids = NULL, n = 0;
    const char *s = j->valuestring;
    ft_status st = ft_tokenizer_encode(tok, s, strlen(s), add_special, &ids, &n);
    cJSON_Delete(j);
    if (st) {
        ft_error_wrap(st, "<stdin>:%ld", lineno);
        return cli_fail();
    }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return 0;
}

static int decode_line(ft_tokenizer *tok, char *line, long lineno, int skip_special) {
    size_t cap = 64, n = 0;
    int *ids = malloc(cap * sizeof *ids);
    char *p = line, *end;
    if (!ids) {
        ft_errorf(FT_ERR_NOMEM, "out of memory");
        return cli_fail();
    }
    for (;;) {
        while (*p == ' ') p++;
        if (!*p || *p == '\n' || *p == '\r') break;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffff || (*end && *end != ' ' && *end != '\n' && *end != '\r')) {
            free(ids);
            ft_errorf(FT_ERR_FORMAT, "<stdin>:%ld: expected space-separated non-negative integer ids", lineno);
            return cli_fail();
        }
        if (n == cap) {
            int *q = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!q) {
                free(ids);
                ft_errorf(FT_ERR_NOMEM, "out of memory");
                return cli_fail();
            }
            ids = q;
        }
        ids[n++] = (int)v;
        p = end;
    }
    char *text = NULL;
    ft_status st = ft_tokenizer_decode(tok, ids, (int)n, skip_special, &text);
    free(ids);
    if (st) {
        ft_error_wrap(st, "<stdin>:%ld", lineno);
        return cli_fail();
    }
    cJSON *js = cJSON_CreateString(text);
    char *out = js ? cJSON_PrintUnformatted(js) : NULL;
    free(text);
    cJSON_Delete(js);
    if (!out) {
        ft_errorf(FT_ERR_NOMEM, "out of memory");
        return cli_fail();
    }
    puts(out);
    free(out);
    return 0;
}

static int convert_llama2c(const char *file, long long offset, long long length, int vocab, const char *dir) {
    char *data = NULL;
    size_t n = 0;
    if (ft_read_file(file, &data, &n)) return cli_fail();
    if (length < 0) length = (long long)n - offset;
    if (offset < 0 || length < 0 || (unsigned long long)offset > n || (unsigned long long)length > n - (size_t)offset) {
        free(data);
        ft_errorf(FT_ERR_ARG, "%s: offset %lld + length %lld is outside the file (%zu bytes)", file, offset, length, n);
        return cli_fail();
    }
    ft_status st = ft_tokenizer_convert_llama2c_dir(data + offset, (size_t)length, vocab, dir);
    free(data);
    if (st) {
        ft_error_wrap(st, "%s", file);
        return cli_fail();
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *l2c = NULL, *out = NULL, *offset_s = NULL, *length_s = NULL,
               *vocab_s = NULL;
    int add_special = 1, decode = 0, skip_special = 0;
    long long offset = 0, length = -1, vocab = 32000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) return usage(stdout);
        if (!strcmp(a, "--no-special"))
            add_special = 0;
        else if (!strcmp(a, "--decode"))
            decode = 1;
        else if (!strcmp(a, "--skip-special"))
            skip_special = 1;
        else {
            const char **slot = !strcmp(a, "--tokenizer")         ? &dir
                                : !strcmp(a, "--convert-llama2c") ? &l2c
                                : !strcmp(a, "--out")             ? &out
                                : !strcmp(a, "--offset")          ? &offset_s
                                : !strcmp(a, "--length")          ? &length_s
                                : !strcmp(a, "--vocab-size")      ? &vocab_s
                                                                  : NULL;
            if (!slot || i + 1 >= argc) {
                fprintf(stderr,
                        slot ? "ftune tokenize: option '%s' needs a value\n"
                             : "ftune tokenize: unknown option '%s'\n",
                        a);
                return usage(stderr);
            }
            *slot = argv[++i];
        }
    }
    if (l2c) {
        if (!out) return usage(stderr);
        if (cli_parse_path("--convert-llama2c", l2c, &l2c) || cli_parse_path("--out", out, &out) ||
            (offset_s && cli_parse_int("--offset", offset_s, 0, LLONG_MAX, &offset)) ||
            (length_s && cli_parse_int("--length", length_s, 0, LLONG_MAX, &length)) ||
            (vocab_s && cli_parse_int("--vocab-size", vocab_s, 1, 1 << 24, &vocab)))
            return cli_fail();
        return convert_llama2c(l2c, offset, length, (int)vocab, out);
    }
    if (!dir) return usage(stderr);
    if (cli_parse_path("--tokenizer", dir, &dir)) return cli_fail();
    ft_tokenizer *tok;
    if (ft_tokenizer_load(&tok, dir)) return cli_fail();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (decode) rc = decode_line(tok, line, lineno, skip_special);
        else rc = encode_line(tok, line, (size_t)len, lineno, add_special);
    }
    free(line);
    ft_tokenizer_free(tok);
    return rc; /* main() reports a failed write to stdout */
}
