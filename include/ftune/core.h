/*
 * ftune core: status codes, the error message that travels with them, an always-on assert,
 * aligned allocation, and the small numeric helpers (dtype conversions) every module needs.
 *
 * Library code never prints or exits: it returns an ft_status and records one human-readable
 * line with context (file, line, tensor, key) through ft_errorf(). Only the CLI prints it.
 * The message is thread-local, so OpenMP workers cannot clobber each other's context.
 */
#ifndef FTUNE_CORE_H
#define FTUNE_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    FT_OK = 0,
    FT_ERR_IO,          /* open/read/write/rename failed, disk full */
    FT_ERR_FORMAT,      /* malformed or lying input file */
    FT_ERR_UNSUPPORTED, /* well-formed input we deliberately do not handle */
    FT_ERR_ARG,         /* bad argument / config value */
    FT_ERR_NOMEM,
    FT_ERR_NOT_FOUND,   /* missing tensor, file or key */
} ft_status;

/* Record a formatted message (printf-style) and return `code`. Always returns `code`,
 * so callers write `return ft_errorf(FT_ERR_FORMAT, "%s: ...", path);`. */
ft_status ft_errorf(ft_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "context: " (e.g. the file being parsed); returns `code`. */
ft_status ft_error_wrap(ft_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last recorded message of this thread ("" if none). Valid until the next ft_errorf. */
const char *ft_error_message(void);
void ft_error_clear(void);
const char *ft_status_name(ft_status s);

/* Programmer errors (never bad input): abort with file:line. Always on, even with NDEBUG. */
void ft_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define FT_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) ft_assert_fail(#cond, __FILE__, __LINE__);                                    \
    } while (0)

/* 64-byte aligned, zero-filled allocation; NULL on failure (and an error recorded). Blocks of
 * 4 MiB and more are 2 MiB aligned, whole 2 MiB pages, advised as transparent huge pages.
 * ft_free(NULL) is a no-op. */
void *ft_calloc(size_t n, size_t size);
void ft_free(void *p);
/* Give the whole pages inside [p, p+n) of private anonymous memory (an ft_calloc block) back to
 * the OS: they read as zero afterwards and count no longer in RSS until written. Returns the
 * bytes given back (0 when the range holds no whole page or madvise fails). */
size_t ft_drop_pages(void *p, size_t n);
/* Duplicate a string (NULL on failure). */
char *ft_strdup(const char *s);

/* ---- dtypes ---- */
typedef enum {
    FT_DTYPE_F32 = 0,
    FT_DTYPE_F16,
    FT_DTYPE_BF16,
    FT_DTYPE_F64,
    FT_DTYPE_I64,
    FT_DTYPE_I32,
    FT_DTYPE_I16,
    FT_DTYPE_I8,
    FT_DTYPE_U8,
    FT_DTYPE_BOOL,
    FT_DTYPE_COUNT
} ft_dtype;

/* Size in bytes of one element; name as safetensors spells it ("F32", "BF16", ...). */
size_t ft_dtype_size(ft_dtype t);
const char *ft_dtype_name(ft_dtype t);
/* Parse a safetensors dtype name; returns 0 and sets *out, or -1 if unknown. */
int ft_dtype_parse(const char *name, ft_dtype *out);

float ft_bf16_to_f32(uint16_t h);
uint16_t ft_f32_to_bf16(float f); /* round to nearest even, NaN preserved */
float ft_f16_to_f32(uint16_t h);
uint16_t ft_f32_to_f16(float f); /* round to nearest even, overflow to inf */
/* Convert n elements of `src` (dtype t, possibly unaligned) to f32 in dst.
 * Returns FT_ERR_UNSUPPORTED for non-float dtypes. */
ft_status ft_convert_to_f32(float *dst, const void *src, ft_dtype t, size_t n);
/* Convert n f32 values into dtype t (F32, F16 or BF16). */
ft_status ft_convert_from_f32(void *dst, const float *src, ft_dtype t, size_t n);

/* ---- small helpers ---- */
/* Copy untrusted text into out[cap] for a one-line error message: printable ASCII kept, anything
 * else shown as '?', cut at cap-4 characters with "..." appended. Returns out. */
const char *ft_printable(char *out, size_t cap, const char *s);
/* JSON input checks (cJSON's parse accepts both silently). The first key of `obj` that appears
 * twice in it, or NULL (NULL obj: NULL); Python's json keeps the last value, cJSON's lookups the
 * first, so callers refuse it. The offset of the first escape \u0000 in the JSON text s[0..n)
 * (cJSON cuts a string there), or -1; a backslash skips the character after it, so "\\u0000" is
 * not one. */
struct cJSON;
const char *ft_json_dup_key(const struct cJSON *obj);
long ft_json_nul_escape(const char *s, size_t n);
/* Wall clock in seconds (monotonic). */
double ft_time_s(void);
/* Peak resident set size of this process in bytes (from getrusage). */
size_t ft_peak_rss_bytes(void);

/* Write `n` bytes to `path` atomically: `path.tmp.<pid>` then fsync + rename.
 * A failure (disk full...) removes the temporary file and names `path` in the error. */
ft_status ft_write_file_atomic(const char *path, const void *data, size_t n);
/* Read a whole file into a NUL-terminated malloc'ed buffer; *len gets its size (may be NULL). */
ft_status ft_read_file(const char *path, char **out, size_t *len);

#endif
