/*
 * tokenizer.json loading (cJSON) and the encode / decode pipeline of Hugging Face tokenizers:
 *   encode: split out added tokens (unnormalized ones on the raw text) -> normalizer ->
 *           split out normalized added tokens -> pre-tokenizer -> BPE model (bpe.c) ->
 *           post-processor (only when add_special);
 *   decode: ids -> token strings (special tokens dropped on request) -> decoder chain -> join ->
 *           clean_up_tokenization_spaces when tokenizer_config.json asks.
 * Semantics follow the Rust `tokenizers` crate; the supported component list is in
 * include/ftune/tokenizer.h. Every key of every component object is checked: an unknown type,
 * key or unsupported setting is an error naming the file and the JSON path.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "ftune/tokenizer.h"
#include "tok_internal.h"

#define TK_MAX_ID (1 << 22) /* ids are dense in real vocabularies (<= ~260k); bounds the tables */

enum { N_SEQ, N_NFC, N_NFD, N_NFKC, N_NFKD, N_PREPEND, N_REPLACE };
enum { P_SEQ, P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum { B_ISOLATED, B_REMOVED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };
enum { D_SEQ, D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP };

typedef struct tk_norm {
    int kind;
    char *a, *b; /* Prepend: a; Replace: a -> b */
    size_t alen, blen;
    struct tk_norm *sub;
    int nsub;
    tk_buf t1, t2; /* Sequence: scratch reused across calls (the tokenizer is single-threaded) */
} tk_norm;

typedef struct tk_pre {
    int kind;
    pcre2_code *re; /* Split (Regex) or ByteLevel use_regex */
    pcre2_match_data *md;
    int jit;
    char *str; /* Split (String) */
    size_t slen;
    int behavior, invert;
    int add_prefix_space;
    char repl[8]; /* Metaspace replacement character (UTF-8) */
    int repl_len, prepend_scheme, split;
    struct tk_pre *sub;
    int nsub;
} tk_pre;

typedef struct tk_dec {
    int kind;
    char *a, *b; /* Replace: a -> b */
    size_t alen, blen;
    uint32_t content; /* Strip */
    int start, stop;
    char repl[8]; /* Metaspace */
    int repl_len, prepend;
    struct tk_dec *sub;
    int nsub;
} tk_dec;

typedef struct {
    char *content, *ncontent; /* ncontent: normalized form, for normalized tokens */
    size_t len, nlen;
    int id, lstrip, rstrip, single_word, normalized, special;
} tk_added;

/* Added tokens to match on one side (raw or normalized): index lists by first byte, longest first. */
typedef struct {
    int *idx[256];
    int cnt[256];
    int any;
} tk_trie;

struct ft_tokenizer {
    char *name;
    tk_bpe bpe;
    tk_norm *norm;
    tk_pre *pre;
    int has_post;       /* a post-processor adds tokens */
    tk_ivec post_pre, post_post; /* ids before / after the sequence */
    tk_dec *dec;
    tk_added *added;
    int nadded;
    tk_strmap added_map; /* content -> index into added */
    tk_trie raw_trie, norm_trie;
    int vocab_size;
    const char **id_tok; /* id -> string (added token content wins) */
    uint32_t *id_toklen;
    unsigned char *id_special;
    int bos, eos, pad, cleanup;
    /* scratch */
    tk_buf nb1, nb2, pb1, pb2;
    tk_ivec out;
    struct span *sp, *sp2;
    size_t spcap, sp2cap;
    struct piece *pc;
    size_t pccap;
};

/* ---------------------------------------------------------------- errors */

/* A JSON path under construction, for error messages ("pre_tokenizer.pretokenizers[1].type"). */
typedef struct {
    const char *file;
    char path[512];
} jctx;

static ft_status jerr(const jctx *c, ft_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ft_status jerr(const jctx *c, ft_status code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ft_errorf(code, "%s: key '%s': %s", c->file, c->path, msg);
}

/* Descend: child path "<path>.<key>" or "<path>[i]"; restore with jup(). */
static size_t jdown(jctx *c, const char *key, int idx) {
    size_t old = strlen(c->path);
    if (key)
        snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
    else
        snprintf(c->path + old, sizeof c->path - old, "[%d]", idx);
    return old;
}
static void jup(jctx *c, size_t old) { c->path[old] = 0; }

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* Every key of `o` must be in the NULL-terminated list. */
static ft_status check_keys(jctx *c, const cJSON *o, const char *const *allowed) {
    for (const cJSON *it = o->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, it->string)) ok = 1;
        if (!ok) {
            size_t old = jdown(c, it->string, 0);
            ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown key");
            jup(c, old);
            return st;
        }
    }
    return FT_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key given twice in one object, anywhere under `o` except model.vocab (parse_model names a
 * repeated token): cJSON reads the first value, serde (HF) the last, so either would be a silent
 * guess. Keys are sorted in `*scratch` (grown as needed, freed by the caller), so large objects
 * cost n log n. */
static ft_status check_dup_keys(jctx *c, const cJSON *o, const char ***scratch, size_t *cap) {
    if (cJSON_IsObject(o) && strcmp(c->path, "model.vocab")) {
        size_t n = 0;
        for (const cJSON *it = o->child; it; it = it->next)
            n++;
        if (n > *cap) {
            const char **p = realloc(*scratch, n * sizeof *p);
            if (!p) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
            *scratch = p;
            *cap = n;
        }
        n = 0;
        for (const cJSON *it = o->child; it; it = it->next)
            (*scratch)[n++] = it->string;
        if (n > 1) /* an empty object left *scratch NULL, which qsort may not take */
            qsort(*scratch, n, sizeof **scratch, cmp_str);
        for (size_t i = 1; i < n; i++)
            if (!strcmp((*scratch)[i - 1], (*scratch)[i])) {
                size_t old = jdown(c, (*scratch)[i], 0);
                ft_status st =
                    ft_errorf(FT_ERR_FORMAT, "%s: key '%s' appears twice", c->file, c->path);
                jup(c, old);
                return st;
            }
    }
    if (!cJSON_IsObject(o) && !cJSON_IsArray(o)) return FT_OK;
    int i = 0;
    for (const cJSON *it = o->child; it; it = it->next, i++) {
        size_t old = jdown(c, cJSON_IsObject(o) ? it->string : NULL, i);
        ft_status st = check_dup_keys(c, it, scratch, cap);
        jup(c, old);
        if (st) return st;
    }
    return FT_OK;
}

const char *const ft_tokenizer_files[FT_N_TOKENIZER_FILES] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "generation_config.json"};

#define NUL_MARK "\xF4\x8F\xBF\xBF" /* U+10FFFF: stands for U+0000 while naming the key */

/* The path of the first key or string under `o` holding NUL_MARK, into c->path; 1 if found. */
static int find_mark(jctx *c, const cJSON *o, int *in_key) {
    if (cJSON_IsString(o) && strstr(o->valuestring, NUL_MARK)) return 1;
    if (!cJSON_IsObject(o) && !cJSON_IsArray(o)) return 0;
    int i = 0;
    for (const cJSON *it = o->child; it; it = it->next, i++) {
        if (cJSON_IsObject(o) && strstr(it->string, NUL_MARK)) return *in_key = 1;
        size_t old = jdown(c, cJSON_IsObject(o) ? it->string : NULL, i);
        if (find_mark(c, it, in_key)) return 1;
        jup(c, old);
    }
    return 0;
}

/* U+0000 in a JSON string is refused: cJSON's strings end at their first NUL, so "a\u0000b" read
 * as "a" (a Split regex, a Replace content, a vocab token cut short). No supported tokenizer holds
 * one (byte-level BPE spells byte 0 "Ā", byte fallback "<0x00>") and ftune refuses U+0000 in the
 * text it encodes, so a token holding it could never be produced. The error names the key: the
 * text is parsed again with U+10FFFF in place of each \u0000 to find it. */
static ft_status check_nul(const char *file, const char *json, size_t len) {
    long at = ft_json_nul_escape(json, len);
    if (at < 0) return FT_OK;
    char *t = malloc(2 * len + 1);
    if (!t) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        long e = ft_json_nul_escape(json + i, len - i);
        if (e < 0) {
            memcpy(t + n, json + i, len - i);
            n += len - i;
            break;
        }
        memcpy(t + n, json + i, (size_t)e);
        memcpy(t + n + (size_t)e, "\\uDBFF\\uDFFF", 12);
        n += (size_t)e + 12;
        i += (size_t)e + 5;
    }
    cJSON *root = cJSON_ParseWithLength(t, n);
    jctx c = {.file = file};
    int in_key = 0;
    int found = root && find_mark(&c, root, &in_key);
    cJSON_Delete(root);
    free(t);
    if (!found)
        return ft_errorf(
            FT_ERR_FORMAT,
            "%s: byte %ld: a string holds U+0000 (\\u0000), which ftune does not support", file,
            at);
    return jerr(&c, FT_ERR_FORMAT, "%s holds U+0000 (\\u0000), which ftune does not support",
                in_key ? "a key of this object" : "the string");
}

static ft_status need_obj(jctx *c, const cJSON *o) {
    return cJSON_IsObject(o) ? FT_OK : jerr(c, FT_ERR_FORMAT, "expected a JSON object");
}

/* Optional boolean key (absent or null = def). */
static ft_status get_bool(jctx *c, const cJSON *o, const char *k, int def, int *out) {
    const cJSON *v = jget(o, k);
    *out = def;
    if (!v || cJSON_IsNull(v)) return FT_OK;
    if (!cJSON_IsBool(v)) {
        size_t old = jdown(c, k, 0);
        ft_status st = jerr(c, FT_ERR_FORMAT, "expected true or false");
        jup(c, old);
        return st;
    }
    *out = cJSON_IsTrue(v);
    return FT_OK;
}

/* Optional string key: *out points into the JSON (NULL when absent or null). */
static ft_status get_str(jctx *c, const cJSON *o, const char *k, const char **out) {
    const cJSON *v = jget(o, k);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return FT_OK;
    if (!cJSON_IsString(v)) {
        size_t old = jdown(c, k, 0);
        ft_status st = jerr(c, FT_ERR_FORMAT, "expected a string");
        jup(c, old);
        return st;
    }
    *out = v->valuestring;
    return FT_OK;
}

static ft_status req_str(jctx *c, const cJSON *o, const char *k, const char **out) {
    if (get_str(c, o, k, out)) return FT_ERR_FORMAT;
    if (*out) return FT_OK;
    size_t old = jdown(c, k, 0);
    ft_status st = jerr(c, FT_ERR_FORMAT, "missing (a string is required)");
    jup(c, old);
    return st;
}

static ft_status get_int(jctx *c, const cJSON *o, const char *k, int def, int lo, int hi, int *out) {
    const cJSON *v = jget(o, k);
    *out = def;
    if (!v || cJSON_IsNull(v)) return FT_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(int)v->valuedouble) {
        size_t old = jdown(c, k, 0);
        ft_status st = jerr(c, FT_ERR_FORMAT, "expected an integer in [%d, %d]", lo, hi);
        jup(c, old);
        return st;
    }
    *out = (int)v->valuedouble;
    return FT_OK;
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A single Unicode character given as a JSON string (Metaspace replacement, Strip content). */
static ft_status get_char(jctx *c, const cJSON *o, const char *k, const char *def, char *out, int *outlen,
                          uint32_t *cp) {
    const char *s;
    if (get_str(c, o, k, &s)) return FT_ERR_FORMAT;
    if (!s) s = def;
    size_t n = strlen(s), i = 0;
    if (n == 0 || n > 4 || tk_utf8_check(s, n)) goto bad;
    uint32_t u = tk_utf8_next(s, n, &i);
    if (i != n) goto bad;
    memcpy(out, s, n);
    out[n] = 0;
    *outlen = (int)n;
    if (cp) *cp = u;
    return FT_OK;
bad:;
    size_t old = jdown(c, k, 0);
    ft_status st = jerr(c, FT_ERR_FORMAT, "expected a single character");
    jup(c, old);
    return st;
}

/* Replace pattern: {"String": "..."} (a "Regex" pattern is rejected: not needed by any
 * supported model, and we refuse rather than guess). */
static ft_status get_pattern_string(jctx *c, const cJSON *o, char **out, size_t *outlen) {
    const cJSON *p = jget(o, "pattern");
    size_t old = jdown(c, "pattern", 0);
    ft_status st = FT_OK;
    if (!cJSON_IsObject(p)) {
        st = jerr(c, FT_ERR_FORMAT, "missing or not an object");
    } else if (jget(p, "Regex")) {
        st = jerr(c, FT_ERR_UNSUPPORTED, "Regex patterns are not supported here (only String)");
    } else {
        const cJSON *s = jget(p, "String");
        if (!cJSON_IsString(s) || !s->valuestring[0] || p->child->next)
            st = jerr(c, FT_ERR_FORMAT, "expected {\"String\": non-empty string}");
        else if (!(*out = ft_strdup(s->valuestring)))
            st = FT_ERR_NOMEM;
        else
            *outlen = strlen(*out);
    }
    jup(c, old);
    return st;
}

/* ---------------------------------------------------------------- normalizers */

static void norm_free(tk_norm *n) {
    if (!n) return;
    for (int i = 0; i < n->nsub; i++) norm_free(&n->sub[i]);
    free(n->sub);
    tk_buf_free(&n->t1);
    tk_buf_free(&n->t2);
    free(n->a);
    free(n->b);
}

static ft_status parse_norm(jctx *c, const cJSON *o, tk_norm *n) {
    static const char *const k_type[] = {"type", NULL};
    static const char *const k_seq[] = {"type", "normalizers", NULL};
    static const char *const k_prep[] = {"type", "prepend", NULL};
    static const char *const k_repl[] = {"type", "pattern", "content", NULL};
    const char *type;
    memset(n, 0, sizeof *n);
    if (need_obj(c, o) || req_str(c, o, "type", &type)) return FT_ERR_FORMAT;
    if (!strcmp(type, "Sequence")) {
        n->kind = N_SEQ;
        if (check_keys(c, o, k_seq)) return FT_ERR_UNSUPPORTED;
        const cJSON *arr = jget(o, "normalizers");
        size_t old = jdown(c, "normalizers", 0);
        if (!cJSON_IsArray(arr)) {
            ft_status st = jerr(c, FT_ERR_FORMAT, "expected an array");
            jup(c, old);
            return st;
        }
        int cnt = cJSON_GetArraySize(arr);
        n->sub = calloc((size_t)cnt + 1, sizeof *n->sub);
        if (!n->sub) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        int i = 0;
        for (const cJSON *it = arr->child; it; it = it->next, i++) {
            size_t o2 = jdown(c, NULL, i);
            ft_status st = parse_norm(c, it, &n->sub[i]);
            n->nsub = i + 1;
            if (st) return st;
            jup(c, o2);
        }
        jup(c, old);
        return FT_OK;
    }
    if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD")) {
        n->kind = !strcmp(type, "NFC") ? N_NFC : !strcmp(type, "NFD") ? N_NFD : !strcmp(type, "NFKC") ? N_NFKC : N_NFKD;
        return check_keys(c, o, k_type);
    }
    if (!strcmp(type, "Prepend")) {
        const char *s;
        n->kind = N_PREPEND;
        if (check_keys(c, o, k_prep) || req_str(c, o, "prepend", &s)) return FT_ERR_FORMAT;
        n->alen = strlen(s);
        return (n->a = ft_strdup(s)) ? FT_OK : FT_ERR_NOMEM;
    }
    if (!strcmp(type, "Replace")) {
        const char *s;
        n->kind = N_REPLACE;
        if (check_keys(c, o, k_repl) || get_pattern_string(c, o, &n->a, &n->alen) || req_str(c, o, "content", &s))
            return FT_ERR_FORMAT;
        n->blen = strlen(s);
        return (n->b = ft_strdup(s)) ? FT_OK : FT_ERR_NOMEM;
    }
    size_t old = jdown(c, "type", 0);
    ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown normalizer type '%s'", type);
    jup(c, old);
    return st;
}

/* 1 if s[from..n) is certainly unchanged by NFC (so s is, when s[0..from) is below U+0300): no
 * character with a canonical decomposition, a non-zero combining class, a role as the second
 * half of a canonical composition, or a Hangul jamo. Anything else takes the utf8proc path. */
static int nfc_quick_yes(const char *s, size_t n, size_t from) {
    for (size_t i = from; i < n;) {
        uint32_t cp = tk_utf8_next(s, n, &i);
        if (cp < 0x300) continue;
        if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xA960 && cp <= 0xA97F) || (cp >= 0xD7B0 && cp <= 0xD7FF)) return 0;
        const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
        if (p->combining_class || (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000) ||
            (p->decomp_type == 0 && p->decomp_seqindex != UINT16_MAX))
            return 0;
    }
    return 1;
}

/* Apply `n` to in[0..len) into `out` (cleared first). */
static ft_status norm_apply(tk_norm *n, const char *in, size_t len, tk_buf *out) {
    out->n = 0;
    switch (n->kind) {
    case N_SEQ: {
        tk_buf *a = &n->t1, *b = &n->t2;
        a->n = 0;
        ft_status st = tk_buf_put(a, in, len);
        for (int i = 0; !st && i < n->nsub; i++) {
            st = norm_apply(&n->sub[i], a->p, a->n, b);
            tk_buf *t = a;
            a = b;
            b = t;
        }
        if (!st) st = tk_buf_put(out, a->p, a->n);
        return st;
    }
    case N_NFC:
    case N_NFD:
    case N_NFKC:
    case N_NFKD: {
        /* Quick check: code points below U+0300 are NFC already; ASCII is all four forms. */
        unsigned lim = n->kind == N_NFC ? 0xCC : 0x80;
        size_t i = 0;
        while (i < len && (unsigned char)in[i] < lim) i++;
        if (n->kind == N_NFC && i < len && nfc_quick_yes(in, len, i)) i = len;
        if (i == len) return tk_buf_put(out, in, len);
        int opt = UTF8PROC_STABLE | (n->kind == N_NFC || n->kind == N_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                  (n->kind == N_NFKC || n->kind == N_NFKD ? UTF8PROC_COMPAT : 0);
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len, &dst, (utf8proc_option_t)opt);
        if (r < 0) return ft_errorf(FT_ERR_ARG, "tokenizer: normalization failed: %s", utf8proc_errmsg(r));
        ft_status st = tk_buf_put(out, dst, (size_t)r);
        free(dst);
        return st;
    }
    case N_PREPEND:
        if (len && tk_buf_put(out, n->a, n->alen)) return FT_ERR_NOMEM;
        return tk_buf_put(out, in, len);
    case N_REPLACE: {
        size_t i = 0;
        if (tk_buf_reserve(out, len)) return FT_ERR_NOMEM;
        while (i < len) {
            const char *hit = n->alen <= len - i ? memmem(in + i, len - i, n->a, n->alen) : NULL;
            if (!hit) break;
            if (tk_buf_put(out, in + i, (size_t)(hit - (in + i))) || tk_buf_put(out, n->b, n->blen)) return FT_ERR_NOMEM;
            i = (size_t)(hit - in) + n->alen;
        }
        return tk_buf_put(out, in + i, len - i);
    }
    }
    return ft_errorf(FT_ERR_ARG, "tokenizer: bad normalizer");
}

/* ---------------------------------------------------------------- pre-tokenizers */

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static void pre_free(tk_pre *p) {
    if (!p) return;
    for (int i = 0; i < p->nsub; i++) pre_free(&p->sub[i]);
    free(p->sub);
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->re);
    free(p->str);
}

static ft_status compile_regex(jctx *c, tk_pre *p, const char *pat) {
    int err;
    PCRE2_SIZE off;
    p->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!p->re) {
        char msg[256];
        pcre2_get_error_message(err, (PCRE2_UCHAR *)msg, sizeof msg);
        return jerr(c, FT_ERR_UNSUPPORTED, "regex does not compile at offset %zu: %s", (size_t)off, msg);
    }
    p->jit = pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0;
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    if (!p->md) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (regex)");
    return FT_OK;
}

static ft_status parse_pre(jctx *c, const cJSON *o, tk_pre *p, int last) {
    static const char *const k_seq[] = {"type", "pretokenizers", NULL};
    static const char *const k_split[] = {"type", "pattern", "behavior", "invert", NULL};
    static const char *const k_bl[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    static const char *const k_ms[] = {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep", NULL};
    const char *type;
    memset(p, 0, sizeof *p);
    if (need_obj(c, o) || req_str(c, o, "type", &type)) return FT_ERR_FORMAT;
    if (!strcmp(type, "Sequence")) {
        p->kind = P_SEQ;
        if (check_keys(c, o, k_seq)) return FT_ERR_UNSUPPORTED;
        const cJSON *arr = jget(o, "pretokenizers");
        size_t old = jdown(c, "pretokenizers", 0);
        if (!cJSON_IsArray(arr)) {
            ft_status st = jerr(c, FT_ERR_FORMAT, "expected an array");
            jup(c, old);
            return st;
        }
        int cnt = cJSON_GetArraySize(arr), i = 0;
        p->sub = calloc((size_t)cnt + 1, sizeof *p->sub);
        if (!p->sub) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        for (const cJSON *it = arr->child; it; it = it->next, i++) {
            size_t o2 = jdown(c, NULL, i);
            ft_status st = parse_pre(c, it, &p->sub[i], last && i == cnt - 1);
            p->nsub = i + 1;
            if (st) return st;
            jup(c, o2);
        }
        jup(c, old);
        return FT_OK;
    }
    if (!strcmp(type, "Split")) {
        const char *beh;
        p->kind = P_SPLIT;
        if (check_keys(c, o, k_split) || req_str(c, o, "behavior", &beh) || get_bool(c, o, "invert", 0, &p->invert))
            return FT_ERR_FORMAT;
        static const char *const behs[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        p->behavior = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(beh, behs[i])) p->behavior = i;
        if (p->behavior < 0) {
            size_t old = jdown(c, "behavior", 0);
            ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown split behavior '%s'", beh);
            jup(c, old);
            return st;
        }
        const cJSON *pat = jget(o, "pattern");
        size_t old = jdown(c, "pattern", 0);
        ft_status st = FT_OK;
        const cJSON *re = cJSON_IsObject(pat) ? jget(pat, "Regex") : NULL, *s = cJSON_IsObject(pat) ? jget(pat, "String") : NULL;
        if (cJSON_IsString(re) && !s && !pat->child->next) {
            size_t o2 = jdown(c, "Regex", 0);
            st = compile_regex(c, p, re->valuestring);
            jup(c, o2);
        } else if (cJSON_IsString(s) && !re && !pat->child->next && s->valuestring[0]) {
            p->slen = strlen(s->valuestring);
            if (!(p->str = ft_strdup(s->valuestring))) st = FT_ERR_NOMEM;
        } else {
            st = jerr(c, FT_ERR_FORMAT, "expected {\"Regex\": string} or {\"String\": non-empty string}");
        }
        jup(c, old);
        return st;
    }
    if (!strcmp(type, "ByteLevel")) {
        int use_regex, trim;
        p->kind = P_BYTELEVEL;
        if (check_keys(c, o, k_bl) || get_bool(c, o, "add_prefix_space", 1, &p->add_prefix_space) ||
            get_bool(c, o, "use_regex", 1, &use_regex) || get_bool(c, o, "trim_offsets", 1, &trim))
            return FT_ERR_FORMAT;
        if (!last) return jerr(c, FT_ERR_UNSUPPORTED, "a ByteLevel pre-tokenizer must come last in the sequence");
        if (use_regex) return compile_regex(c, p, GPT2_PATTERN);
        return FT_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme;
        int aps;
        p->kind = P_METASPACE;
        if (check_keys(c, o, k_ms) || get_char(c, o, "replacement", "\xE2\x96\x81", p->repl, &p->repl_len, NULL) ||
            get_str(c, o, "prepend_scheme", &scheme) || get_bool(c, o, "split", 1, &p->split) ||
            get_bool(c, o, "add_prefix_space", 1, &aps))
            return FT_ERR_FORMAT;
        p->prepend_scheme = aps ? PS_ALWAYS : PS_NEVER;
        if (scheme) {
            if (!strcmp(scheme, "always")) p->prepend_scheme = PS_ALWAYS;
            else if (!strcmp(scheme, "first")) p->prepend_scheme = PS_FIRST;
            else if (!strcmp(scheme, "never")) p->prepend_scheme = PS_NEVER;
            else {
                size_t old = jdown(c, "prepend_scheme", 0);
                ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown prepend_scheme '%s'", scheme);
                jup(c, old);
                return st;
            }
        }
        return FT_OK;
    }
    size_t old = jdown(c, "type", 0);
    ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown pre_tokenizer type '%s'", type);
    jup(c, old);
    return st;
}

/* Pre-tokenization state: spans over a byte buffer. */
typedef struct span {
    uint32_t off, len;
} span;
typedef struct {
    tk_buf *buf;
    span *sp;
    size_t n, cap;
    int bytelevel;
    span *spare; /* reused output array of the next split */
    size_t spare_cap;
    struct piece *pc; /* reused pieces array */
    size_t pccap;
} pstate;

static ft_status span_push(span **sp, size_t *n, size_t *cap, uint32_t off, uint32_t len) {
    if (!len) return FT_OK;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        span *p = realloc(*sp, c * sizeof *p);
        if (!p) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (pre-tokens)");
        *sp = p;
        *cap = c;
    }
    (*sp)[(*n)++] = (span){off, len};
    return FT_OK;
}

/* Pieces of one span: (offset, length, is_match). */
typedef struct piece {
    uint32_t off, len;
    int m;
} piece;

/* Cut s[0..len) by p's regex or string into matched and unmatched pieces, in order, offsets
 * relative to the buffer (`base` = offset of s). Empty matches are skipped, as HF drops empty
 * splits. pc (capacity pcap) is a reusable array grown here; *np gets the count. */
static ft_status find_pieces(tk_pre *p, const char *s, uint32_t base, uint32_t len, piece **pc, size_t *np, size_t *pcap) {
    size_t pos = 0, prev = 0;
    *np = 0;
#define ADD_PIECE(o, l, mm)                                                                                            \
    do {                                                                                                               \
        if (*np == *pcap) {                                                                                            \
            size_t c_ = *pcap ? *pcap * 2 : 64;                                                                        \
            piece *q_ = realloc(*pc, c_ * sizeof *q_);                                                                 \
            if (!q_) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (pre-tokens)");                         \
            *pc = q_;                                                                                                  \
            *pcap = c_;                                                                                                \
        }                                                                                                              \
        (*pc)[(*np)++] = (piece){(uint32_t)(o), (uint32_t)(l), (mm)};                                                 \
    } while (0)
    while (pos < len) {
        size_t ms, me;
        if (p->re) {
            int rc = p->jit ? pcre2_jit_match(p->re, (PCRE2_SPTR)s, len, pos, 0, p->md, NULL)
                            : pcre2_match(p->re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, p->md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                char msg[256];
                pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
                return ft_errorf(FT_ERR_ARG, "tokenizer: regex match failed: %s", msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
            ms = ov[0];
            me = ov[1];
        } else {
            const char *hit = memmem(s + pos, len - pos, p->str, p->slen);
            if (!hit) break;
            ms = (size_t)(hit - s);
            me = ms + p->slen;
        }
        if (me == ms) { /* empty match: step over one character */
            pos = ms + 1;
            while (pos < len && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > prev) ADD_PIECE(base + prev, ms - prev, 0);
        ADD_PIECE(base + ms, me - ms, 1);
        pos = prev = me;
    }
    if (prev < len) ADD_PIECE(base + prev, len - prev, 0);
#undef ADD_PIECE
    return FT_OK;
}

/* Split every span by `p`'s pattern with its behavior (HF SplitDelimiterBehavior). */
static ft_status pre_split(tk_pre *p, pstate *ps, int behavior, int invert) {
    span *out = ps->spare;
    size_t nout = 0, cap = ps->spare_cap, np = 0, pcap = ps->pccap;
    piece *pc = ps->pc;
    ft_status st = FT_OK;
    for (size_t i = 0; i < ps->n && !st; i++) {
        st = find_pieces(p, ps->buf->p + ps->sp[i].off, ps->sp[i].off, ps->sp[i].len, &pc, &np, &pcap);
        if (st) break;
        size_t first = nout;
        int prevm = 0;
        for (size_t j = 0; j < np && !st; j++) {
            int m = pc[j].m ^ invert;
            span cur = {pc[j].off, pc[j].len};
            switch (behavior) {
            case B_ISOLATED: st = span_push(&out, &nout, &cap, cur.off, cur.len); break;
            case B_REMOVED:
                if (!m) st = span_push(&out, &nout, &cap, cur.off, cur.len);
                break;
            case B_MERGED_PREV:
                if (m && !prevm && nout > first) out[nout - 1].len = cur.off + cur.len - out[nout - 1].off;
                else st = span_push(&out, &nout, &cap, cur.off, cur.len);
                break;
            case B_CONTIGUOUS:
                if (m == prevm && nout > first) out[nout - 1].len = cur.off + cur.len - out[nout - 1].off;
                else st = span_push(&out, &nout, &cap, cur.off, cur.len);
                break;
            case B_MERGED_NEXT: break; /* below */
            }
            prevm = m;
        }
        if (behavior == B_MERGED_NEXT) { /* walk backwards: a match joins the piece after it */
            size_t start = nout;
            prevm = 0;
            for (size_t j = np; j-- > 0 && !st;) {
                int m = pc[j].m ^ invert;
                if (m && !prevm && nout > start) {
                    out[nout - 1].len = out[nout - 1].off + out[nout - 1].len - pc[j].off;
                    out[nout - 1].off = pc[j].off;
                } else {
                    st = span_push(&out, &nout, &cap, pc[j].off, pc[j].len);
                }
                prevm = m;
            }
            for (size_t a = start, b = nout; b > a + 1; a++, b--) { /* restore order */
                span t = out[a];
                out[a] = out[b - 1];
                out[b - 1] = t;
            }
        }
    }
    ps->pc = pc;
    ps->pccap = pcap;
    ps->spare = ps->sp; /* swap: the old array is the next call's output */
    ps->spare_cap = ps->cap;
    ps->sp = out;
    ps->n = nout;
    ps->cap = cap;
    return st;
}

/* Rewrite every span into the buffer `nb`: ByteLevel's prefix space, or Metaspace's replacement
 * of ' ' and its prepended replacement character. */
static ft_status pre_rewrite(const tk_pre *p, pstate *ps, tk_buf *nb, int at_origin) {
    nb->n = 0;
    for (size_t i = 0; i < ps->n; i++) {
        const char *s = ps->buf->p + ps->sp[i].off;
        size_t len = ps->sp[i].len, start = nb->n;
        if (p->kind == P_BYTELEVEL) {
            if (s[0] != ' ' && tk_buf_put(nb, " ", 1)) return FT_ERR_NOMEM;
            if (tk_buf_put(nb, s, len)) return FT_ERR_NOMEM;
        } else { /* Metaspace: ' ' -> replacement, then maybe prepend */
            int starts = len >= (size_t)p->repl_len && !memcmp(s, p->repl, (size_t)p->repl_len);
            if (s[0] == ' ') starts = 1; /* becomes the replacement */
            int pre = p->prepend_scheme == PS_ALWAYS || (p->prepend_scheme == PS_FIRST && at_origin && ps->sp[i].off == 0);
            if (pre && !starts && tk_buf_put(nb, p->repl, (size_t)p->repl_len)) return FT_ERR_NOMEM;
            for (size_t j = 0; j < len; j++)
                if (s[j] == ' ' ? tk_buf_put(nb, p->repl, (size_t)p->repl_len) : tk_buf_put(nb, s + j, 1)) return FT_ERR_NOMEM;
        }
        ps->sp[i].off = (uint32_t)start;
        ps->sp[i].len = (uint32_t)(nb->n - start);
    }
    return FT_OK;
}

static ft_status pre_apply(tk_pre *p, pstate *ps, tk_buf *spare, int at_origin) {
    switch (p->kind) {
    case P_SEQ:
        for (int i = 0; i < p->nsub; i++)
            if (pre_apply(&p->sub[i], ps, spare, at_origin)) return FT_ERR_ARG;
        return FT_OK;
    case P_SPLIT: return pre_split(p, ps, p->behavior, p->invert);
    case P_BYTELEVEL:
        if (p->add_prefix_space) {
            if (pre_rewrite(p, ps, spare, at_origin)) return FT_ERR_NOMEM;
            tk_buf t = *ps->buf;
            *ps->buf = *spare;
            *spare = t;
        }
        if (p->re && pre_split(p, ps, B_ISOLATED, 0)) return FT_ERR_ARG;
        ps->bytelevel = 1;
        return FT_OK;
    case P_METASPACE: {
        if (pre_rewrite(p, ps, spare, at_origin)) return FT_ERR_NOMEM;
        tk_buf t = *ps->buf;
        *ps->buf = *spare;
        *spare = t;
        if (!p->split) return FT_OK;
        tk_pre tmp = {0};
        tmp.str = (char *)p->repl;
        tmp.slen = (size_t)p->repl_len;
        return pre_split(&tmp, ps, B_MERGED_NEXT, 0);
    }
    }
    return ft_errorf(FT_ERR_ARG, "tokenizer: bad pre-tokenizer");
}

/* ---------------------------------------------------------------- decoders */

static void dec_free(tk_dec *d) {
    if (!d) return;
    for (int i = 0; i < d->nsub; i++) dec_free(&d->sub[i]);
    free(d->sub);
    free(d->a);
    free(d->b);
}

static ft_status parse_dec(jctx *c, const cJSON *o, tk_dec *d) {
    static const char *const k_seq[] = {"type", "decoders", NULL};
    static const char *const k_type[] = {"type", NULL};
    static const char *const k_bl[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    static const char *const k_ms[] = {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep", NULL};
    static const char *const k_repl[] = {"type", "pattern", "content", NULL};
    static const char *const k_strip[] = {"type", "content", "start", "stop", NULL};
    const char *type;
    memset(d, 0, sizeof *d);
    if (need_obj(c, o) || req_str(c, o, "type", &type)) return FT_ERR_FORMAT;
    if (!strcmp(type, "Sequence")) {
        d->kind = D_SEQ;
        if (check_keys(c, o, k_seq)) return FT_ERR_UNSUPPORTED;
        const cJSON *arr = jget(o, "decoders");
        size_t old = jdown(c, "decoders", 0);
        if (!cJSON_IsArray(arr)) {
            ft_status st = jerr(c, FT_ERR_FORMAT, "expected an array");
            jup(c, old);
            return st;
        }
        int cnt = cJSON_GetArraySize(arr), i = 0;
        d->sub = calloc((size_t)cnt + 1, sizeof *d->sub);
        if (!d->sub) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        for (const cJSON *it = arr->child; it; it = it->next, i++) {
            size_t o2 = jdown(c, NULL, i);
            ft_status st = parse_dec(c, it, &d->sub[i]);
            d->nsub = i + 1;
            if (st) return st;
            jup(c, o2);
        }
        jup(c, old);
        return FT_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        int x;
        d->kind = D_BYTELEVEL;
        if (check_keys(c, o, k_bl) || get_bool(c, o, "add_prefix_space", 1, &x) || get_bool(c, o, "trim_offsets", 1, &x) ||
            get_bool(c, o, "use_regex", 1, &x))
            return FT_ERR_FORMAT;
        return FT_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme;
        int aps, split;
        d->kind = D_METASPACE;
        if (check_keys(c, o, k_ms) || get_char(c, o, "replacement", "\xE2\x96\x81", d->repl, &d->repl_len, NULL) ||
            get_str(c, o, "prepend_scheme", &scheme) || get_bool(c, o, "add_prefix_space", 1, &aps) ||
            get_bool(c, o, "split", 1, &split))
            return FT_ERR_FORMAT;
        d->prepend = scheme ? strcmp(scheme, "never") != 0 : aps;
        return FT_OK;
    }
    if (!strcmp(type, "Replace")) {
        const char *s;
        d->kind = D_REPLACE;
        if (check_keys(c, o, k_repl) || get_pattern_string(c, o, &d->a, &d->alen) || req_str(c, o, "content", &s))
            return FT_ERR_FORMAT;
        d->blen = strlen(s);
        return (d->b = ft_strdup(s)) ? FT_OK : FT_ERR_NOMEM;
    }
    if (!strcmp(type, "ByteFallback") || !strcmp(type, "Fuse")) {
        d->kind = !strcmp(type, "Fuse") ? D_FUSE : D_BYTEFALLBACK;
        return check_keys(c, o, k_type);
    }
    if (!strcmp(type, "Strip")) {
        char tmp[8];
        int tl;
        d->kind = D_STRIP;
        if (check_keys(c, o, k_strip) || get_char(c, o, "content", " ", tmp, &tl, &d->content) ||
            get_int(c, o, "start", 0, 0, 1 << 20, &d->start) || get_int(c, o, "stop", 0, 0, 1 << 20, &d->stop))
            return FT_ERR_FORMAT;
        return FT_OK;
    }
    size_t old = jdown(c, "type", 0);
    ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown decoder type '%s'", type);
    jup(c, old);
    return st;
}

/* A list of decoded token strings. */
typedef struct {
    tk_buf *s;
    size_t n;
} strlist;

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) tk_buf_free(&l->s[i]);
    free(l->s);
    l->s = NULL;
    l->n = 0;
}

static ft_status strlist_init(strlist *l, size_t n) {
    l->n = n;
    l->s = calloc(n ? n : 1, sizeof *l->s);
    return l->s ? FT_OK : ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (decode)");
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static ft_status dec_apply(const tk_dec *d, strlist *l) {
    strlist o = {0};
    ft_status st = FT_OK;
    switch (d->kind) {
    case D_SEQ:
        for (int i = 0; i < d->nsub; i++)
            if ((st = dec_apply(&d->sub[i], l))) return st;
        return FT_OK;
    case D_BYTELEVEL: { /* all tokens -> bytes (a token with a foreign char stays raw) -> lossy UTF-8 */
        tk_buf bytes = {0};
        for (size_t i = 0; i < l->n && !st; i++) {
            const char *s = l->s[i].p ? l->s[i].p : "";
            size_t n = l->s[i].n, j = 0, mark = bytes.n;
            while (j < n && !st) {
                int b = tk_bytelevel_byte(tk_utf8_next(s, n, &j));
                if (b < 0) break;
                unsigned char ch = (unsigned char)b;
                st = tk_buf_put(&bytes, &ch, 1);
            }
            if (!st && j < n) { /* not all ByteLevel characters: keep the token as is */
                bytes.n = mark;
                st = tk_buf_put(&bytes, s, n);
            }
        }
        if (!st) st = strlist_init(&o, 1);
        if (!st) st = tk_utf8_lossy(&o.s[0], bytes.p ? bytes.p : "", bytes.n);
        if (!st && !o.s[0].p) st = tk_buf_put(&o.s[0], "", 0);
        tk_buf_free(&bytes);
        break;
    }
    case D_BYTEFALLBACK: {
        tk_buf pend = {0};
        if ((st = strlist_init(&o, l->n))) break;
        o.n = 0;
        for (size_t i = 0; i <= l->n && !st; i++) {
            const char *s = i < l->n && l->s[i].p ? l->s[i].p : "";
            int byte = -1;
            if (i < l->n && l->s[i].n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0)
                byte = hexval(s[3]) * 16 + hexval(s[4]);
            if (byte >= 0) {
                unsigned char ch = (unsigned char)byte;
                st = tk_buf_put(&pend, &ch, 1);
                continue;
            }
            if (pend.n) { /* flush: valid UTF-8 as is, else one U+FFFD per byte (HF ByteFallback) */
                tk_buf *t = &o.s[o.n++];
                if (!tk_utf8_check(pend.p, pend.n)) st = tk_buf_put(t, pend.p, pend.n);
                else
                    for (size_t k = 0; k < pend.n && !st; k++) st = tk_buf_put(t, "\xEF\xBF\xBD", 3);
                pend.n = 0;
            }
            if (i < l->n && !st) st = tk_buf_put(&o.s[o.n++], s, l->s[i].n);
        }
        tk_buf_free(&pend);
        break;
    }
    case D_FUSE:
        if ((st = strlist_init(&o, 1))) break;
        st = tk_buf_put(&o.s[0], "", 0);
        for (size_t i = 0; i < l->n && !st; i++) st = tk_buf_put(&o.s[0], l->s[i].p, l->s[i].n);
        break;
    case D_REPLACE:
    case D_METASPACE:
        if ((st = strlist_init(&o, l->n))) break;
        for (size_t i = 0; i < l->n && !st; i++) {
            const char *s = l->s[i].p ? l->s[i].p : "";
            size_t n = l->s[i].n, j = 0;
            const char *pat = d->kind == D_REPLACE ? d->a : d->repl;
            size_t plen = d->kind == D_REPLACE ? d->alen : (size_t)d->repl_len;
            const char *rep = d->kind == D_REPLACE ? d->b : " ";
            size_t rlen = d->kind == D_REPLACE ? d->blen : 1;
            tk_buf *t = &o.s[i];
            st = tk_buf_put(t, "", 0);
            while (j < n && !st) {
                const char *hit = plen <= n - j ? memmem(s + j, n - j, pat, plen) : NULL;
                if (!hit) break;
                st = tk_buf_put(t, s + j, (size_t)(hit - (s + j)));
                if (!st) st = tk_buf_put(t, rep, rlen);
                j = (size_t)(hit - s) + plen;
            }
            if (!st) st = tk_buf_put(t, s + j, n - j);
            if (!st && d->kind == D_METASPACE && i == 0 && d->prepend && t->n && t->p[0] == ' ') {
                memmove(t->p, t->p + 1, t->n - 1);
                t->n--;
                t->p[t->n] = 0;
            }
        }
        break;
    case D_STRIP:
        if ((st = strlist_init(&o, l->n))) break;
        for (size_t i = 0; i < l->n && !st; i++) {
            const char *s = l->s[i].p ? l->s[i].p : "";
            size_t n = l->s[i].n, a = 0, b = n;
            char cbuf[4];
            size_t cl = (size_t)tk_utf8_put(d->content, cbuf);
            for (int k = 0; k < d->start && a + cl <= n && !memcmp(s + a, cbuf, cl); k++) a += cl;
            for (int k = 0; k < d->stop && b >= a + cl && !memcmp(s + b - cl, cbuf, cl); k++) b -= cl;
            st = tk_buf_put(&o.s[i], s + a, b - a);
        }
        break;
    default: st = ft_errorf(FT_ERR_ARG, "tokenizer: bad decoder");
    }
    if (st) {
        strlist_free(&o);
        return st;
    }
    strlist_free(l);
    *l = o;
    return FT_OK;
}

/* ---------------------------------------------------------------- model */

static ft_status parse_model(jctx *c, const cJSON *o, tk_bpe *m) {
    static const char *const k_bpe[] = {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                                        "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges", NULL};
    const char *type, *unk, *pre, *suf;
    size_t old;
    ft_status st;
    if (need_obj(c, o)) return FT_ERR_FORMAT;
    if (get_str(c, o, "type", &type)) return FT_ERR_FORMAT;
    if (type && strcmp(type, "BPE")) {
        old = jdown(c, "type", 0);
        st = jerr(c, FT_ERR_UNSUPPORTED, "unknown model type '%s' (only BPE is supported)", type);
        jup(c, old);
        return st;
    }
    if (check_keys(c, o, k_bpe) || get_str(c, o, "unk_token", &unk) || get_str(c, o, "continuing_subword_prefix", &pre) ||
        get_str(c, o, "end_of_word_suffix", &suf) || get_bool(c, o, "fuse_unk", 0, &m->fuse_unk) ||
        get_bool(c, o, "byte_fallback", 0, &m->byte_fallback) || get_bool(c, o, "ignore_merges", 0, &m->ignore_merges))
        return FT_ERR_FORMAT;
    const cJSON *dr = jget(o, "dropout");
    if (dr && !cJSON_IsNull(dr) && !(cJSON_IsNumber(dr) && dr->valuedouble == 0)) {
        old = jdown(c, "dropout", 0);
        st = jerr(c, FT_ERR_UNSUPPORTED, "BPE dropout is not supported (deterministic encoding only)");
        jup(c, old);
        return st;
    }
    if (pre && pre[0] && !(m->prefix = ft_strdup(pre))) return FT_ERR_NOMEM;
    if (suf && suf[0] && !(m->suffix = ft_strdup(suf))) return FT_ERR_NOMEM;

    /* vocab */
    const cJSON *voc = jget(o, "vocab");
    old = jdown(c, "vocab", 0);
    if (!cJSON_IsObject(voc)) {
        st = jerr(c, FT_ERR_FORMAT, "missing or not an object of token -> id");
        jup(c, old);
        return st;
    }
    int maxid = -1, cnt = 0;
    for (const cJSON *it = voc->child; it; it = it->next, cnt++) {
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble < TK_MAX_ID) ||
            it->valuedouble != (double)(int)it->valuedouble) {
            st = jerr(c, FT_ERR_FORMAT, "token \"%.60s\" has an id that is not an integer in [0, %d)", it->string, TK_MAX_ID);
            jup(c, old);
            return st;
        }
        if ((int)it->valuedouble > maxid) maxid = (int)it->valuedouble;
    }
    m->ntok = maxid + 1;
    m->tok = calloc((size_t)m->ntok + 1, sizeof *m->tok);
    m->toklen = calloc((size_t)m->ntok + 1, sizeof *m->toklen);
    if (!m->tok || !m->toklen) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (vocab of %d)", m->ntok);
    for (const cJSON *it = voc->child; it; it = it->next) {
        int id = (int)it->valuedouble;
        size_t n = strlen(it->string);
        if (tk_strmap_get(&m->vocab, it->string, n) >= 0) { /* serde would keep the last id */
            st = jerr(c, FT_ERR_FORMAT, "token '%.60s' appears twice", it->string);
            jup(c, old);
            return st;
        }
        if (m->tok[id]) {
            st = jerr(c, FT_ERR_FORMAT, "id %d is used by both \"%.60s\" and \"%.60s\"", id, m->tok[id], it->string);
            jup(c, old);
            return st;
        }
        if (!(m->tok[id] = dupn(it->string, n))) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        m->toklen[id] = (uint32_t)n;
        if (tk_strmap_set(&m->vocab, m->tok[id], n, id)) return FT_ERR_NOMEM;
    }
    jup(c, old);
    m->unk_id = -1;
    if (unk) {
        m->unk_id = tk_strmap_get(&m->vocab, unk, strlen(unk));
        if (m->unk_id < 0) {
            old = jdown(c, "unk_token", 0);
            st = jerr(c, FT_ERR_FORMAT, "unk_token \"%.60s\" is not in the vocab", unk);
            jup(c, old);
            return st;
        }
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->byte_fb[b] = tk_strmap_get(&m->vocab, s, 6);
        int l = tk_bytelevel_char((unsigned)b, s);
        m->bl_id[b] = tk_strmap_get(&m->vocab, s, (size_t)l);
    }

    /* merges: "a b" strings or ["a", "b"] pairs; both parts and their concatenation in the vocab */
    const cJSON *mg = jget(o, "merges");
    old = jdown(c, "merges", 0);
    if (mg && !cJSON_IsArray(mg)) {
        st = jerr(c, FT_ERR_FORMAT, "expected an array");
        jup(c, old);
        return st;
    }
    size_t plen = m->prefix ? strlen(m->prefix) : 0;
    tk_buf cat = {0};
    int rank = 0;
    st = FT_OK;
    for (const cJSON *it = mg ? mg->child : NULL; it && !st; it = it->next, rank++) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1]) {
                st = jerr(c, FT_ERR_FORMAT, "merge %d \"%.60s\" is not two tokens separated by one space", rank, s);
                break;
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            a = it->child->valuestring;
            al = strlen(a);
            b = it->child->next->valuestring;
            bl = strlen(b);
        } else {
            st = jerr(c, FT_ERR_FORMAT, "merge %d is neither \"a b\" nor [\"a\", \"b\"]", rank);
            break;
        }
        int ia = tk_strmap_get(&m->vocab, a, al), ib = tk_strmap_get(&m->vocab, b, bl);
        if (ia < 0 || ib < 0) {
            st = jerr(c, FT_ERR_FORMAT, "merge %d: token \"%.*s\" is not in the vocab", rank, ia < 0 ? (int)al : (int)bl,
                      ia < 0 ? a : b);
            break;
        }
        if (bl < plen) {
            st = jerr(c, FT_ERR_FORMAT, "merge %d: \"%.*s\" lacks the continuing_subword_prefix", rank, (int)bl, b);
            break;
        }
        cat.n = 0;
        if (tk_buf_put(&cat, a, al) || tk_buf_put(&cat, b + plen, bl - plen)) {
            st = FT_ERR_NOMEM;
            break;
        }
        int inew = tk_strmap_get(&m->vocab, cat.p, cat.n);
        if (inew < 0) {
            st = jerr(c, FT_ERR_FORMAT, "merge %d: result \"%.60s\" is not in the vocab", rank, cat.p);
            break;
        }
        st = tk_bpe_merge_set(m, ia, ib, rank, inew);
    }
    tk_buf_free(&cat);
    if (!st) jup(c, old);
    return st ? st : tk_bpe_finish(m);
}

/* ---------------------------------------------------------------- post-processor */

static ft_status template_ids(jctx *c, const cJSON *specials, const char *name, tk_ivec *out) {
    const cJSON *sp = cJSON_IsObject(specials) ? jget(specials, name) : NULL;
    const cJSON *ids = cJSON_IsObject(sp) ? jget(sp, "ids") : NULL;
    if (!cJSON_IsArray(ids)) return jerr(c, FT_ERR_FORMAT, "special token \"%.60s\" is not defined in special_tokens", name);
    for (const cJSON *it = ids->child; it; it = it->next) {
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble < TK_MAX_ID) ||
            it->valuedouble != (double)(int)it->valuedouble)
            return jerr(c, FT_ERR_FORMAT,
                        "special token \"%.60s\" has an id that is not an integer in [0, %d)", name,
                        TK_MAX_ID);
        if (tk_ivec_push(out, (int)it->valuedouble)) return FT_ERR_NOMEM;
    }
    return FT_OK;
}

/* A cls/sep pair ["token", id] of BertProcessing / RobertaProcessing. */
static ft_status pair_id(jctx *c, const cJSON *o, const char *k, tk_ivec *out) {
    const cJSON *v = jget(o, k);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(v->child->next) ||
        !(v->child->next->valuedouble >= 0 && v->child->next->valuedouble < TK_MAX_ID) ||
        v->child->next->valuedouble != (double)(int)v->child->next->valuedouble) {
        size_t old = jdown(c, k, 0);
        ft_status st = jerr(c, FT_ERR_FORMAT, "expected [token, id]");
        jup(c, old);
        return st;
    }
    return tk_ivec_push(out, (int)v->child->next->valuedouble);
}

static ft_status parse_post(jctx *c, const cJSON *o, ft_tokenizer *t) {
    static const char *const k_seq[] = {"type", "processors", NULL};
    static const char *const k_bl[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    static const char *const k_tp[] = {"type", "single", "pair", "special_tokens", NULL};
    static const char *const k_bert[] = {"type", "sep", "cls", NULL};
    static const char *const k_rob[] = {"type", "sep", "cls", "trim_offsets", "add_prefix_space", NULL};
    const char *type;
    if (need_obj(c, o) || req_str(c, o, "type", &type)) return FT_ERR_FORMAT;
    if (!strcmp(type, "Sequence")) {
        if (check_keys(c, o, k_seq)) return FT_ERR_UNSUPPORTED;
        const cJSON *arr = jget(o, "processors");
        size_t old = jdown(c, "processors", 0);
        if (!cJSON_IsArray(arr)) {
            ft_status st = jerr(c, FT_ERR_FORMAT, "expected an array");
            jup(c, old);
            return st;
        }
        int i = 0;
        for (const cJSON *it = arr->child; it; it = it->next, i++) {
            size_t o2 = jdown(c, NULL, i);
            if (parse_post(c, it, t)) return FT_ERR_FORMAT;
            jup(c, o2);
        }
        jup(c, old);
        return FT_OK;
    }
    if (!strcmp(type, "ByteLevel")) return check_keys(c, o, k_bl); /* offsets only: ids unchanged */
    if (t->has_post) return jerr(c, FT_ERR_UNSUPPORTED, "more than one post-processor adds special tokens");
    if (!strcmp(type, "TemplateProcessing")) {
        if (check_keys(c, o, k_tp)) return FT_ERR_UNSUPPORTED;
        const cJSON *single = jget(o, "single"), *specials = jget(o, "special_tokens");
        size_t old = jdown(c, "single", 0);
        if (!cJSON_IsArray(single)) {
            ft_status st = jerr(c, FT_ERR_FORMAT, "expected an array");
            jup(c, old);
            return st;
        }
        int seen_a = 0, i = 0;
        for (const cJSON *it = single->child; it; it = it->next, i++) {
            size_t o2 = jdown(c, NULL, i);
            const cJSON *sp = cJSON_IsObject(it) ? jget(it, "SpecialToken") : NULL;
            const cJSON *sq = cJSON_IsObject(it) ? jget(it, "Sequence") : NULL;
            const cJSON *id = jget(sp ? sp : sq, "id");
            if ((!sp && !sq) || !cJSON_IsString(id)) {
                ft_status st = jerr(c, FT_ERR_FORMAT, "expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}");
                jup(c, old);
                return st;
            }
            if (sq) {
                if (strcmp(id->valuestring, "A") || seen_a) {
                    ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "a single-sequence template must use sequence A exactly once");
                    jup(c, old);
                    return st;
                }
                seen_a = 1;
            } else {
                size_t o3 = jdown(c, "SpecialToken", 0);
                if (template_ids(c, specials, id->valuestring, seen_a ? &t->post_post : &t->post_pre)) return FT_ERR_FORMAT;
                jup(c, o3);
            }
            jup(c, o2);
        }
        if (!seen_a) {
            ft_status st = jerr(c, FT_ERR_FORMAT, "the template never uses sequence A");
            jup(c, old);
            return st;
        }
        jup(c, old);
        t->has_post = 1;
        return FT_OK;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        if (check_keys(c, o, !strcmp(type, "BertProcessing") ? k_bert : k_rob) || pair_id(c, o, "cls", &t->post_pre) ||
            pair_id(c, o, "sep", &t->post_post))
            return FT_ERR_FORMAT;
        t->has_post = 1;
        return FT_OK;
    }
    size_t old = jdown(c, "type", 0);
    ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "unknown post_processor type '%s'", type);
    jup(c, old);
    return st;
}

/* ---------------------------------------------------------------- added tokens */

static int cmp_added_len_desc(const void *pa, const void *pb, void *ctx) {
    const tk_added *ad = ctx;
    const tk_added *a = &ad[*(const int *)pa], *b = &ad[*(const int *)pb];
    size_t la = a->ncontent ? a->nlen : a->len, lb = b->ncontent ? b->nlen : b->len;
    return la < lb ? 1 : la > lb ? -1 : 0;
}

static ft_status trie_build(tk_trie *tr, tk_added *ad, int n, int normalized_side) {
    for (int i = 0; i < n; i++) {
        if ((ad[i].ncontent != NULL) != normalized_side) continue;
        const char *s = normalized_side ? ad[i].ncontent : ad[i].content;
        size_t l = normalized_side ? ad[i].nlen : ad[i].len;
        if (!l) continue;
        unsigned char b = (unsigned char)s[0];
        int *p = realloc(tr->idx[b], ((size_t)tr->cnt[b] + 1) * sizeof(int));
        if (!p) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
        tr->idx[b] = p;
        p[tr->cnt[b]++] = i;
        tr->any = 1;
    }
    for (int b = 0; b < 256; b++)
        if (tr->cnt[b] > 1) qsort_r(tr->idx[b], (size_t)tr->cnt[b], sizeof(int), cmp_added_len_desc, ad);
    return FT_OK;
}

static void trie_free(tk_trie *tr) {
    for (int b = 0; b < 256; b++) free(tr->idx[b]);
    memset(tr, 0, sizeof *tr);
}

static int is_white(uint32_t cp) { /* Unicode White_Space (Rust char::is_whitespace) */
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static int is_word_cp(uint32_t cp) {
    if (cp == '_') return 1;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

static uint32_t last_cp(const char *s, size_t n) {
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i > 0) i--;
    return tk_utf8_next(s, n, &i);
}

/* Find the next added-token match in s[from..n) (leftmost, longest; single_word checked as HF
 * does: a rejected match is skipped as a whole). Returns 1 with [*ms, *me) extended by
 * lstrip/rstrip, and *which; 0 if none. `floor` bounds lstrip. */
static int added_find(const ft_tokenizer *t, const tk_trie *tr, int side, const char *s, size_t n, size_t from,
                      size_t *ms, size_t *me, int *which) {
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (!tr->cnt[b]) continue;
        for (int k = 0; k < tr->cnt[b]; k++) {
            const tk_added *a = &t->added[tr->idx[b][k]];
            const char *c = side ? a->ncontent : a->content;
            size_t l = side ? a->nlen : a->len;
            if (l > n - i || memcmp(s + i, c, l)) continue;
            if (a->single_word) {
                int before = i > 0 && is_word_cp(last_cp(s, i));
                size_t j = i + l;
                int after = j < n && is_word_cp(tk_utf8_next(s, n, &j));
                if (before || after) { /* HF skips the whole match and searches after it */
                    i = i + l - 1;
                    break;
                }
            }
            size_t st = i, en = i + l;
            if (a->lstrip)
                while (st > from) {
                    size_t q = st;
                    while (q > from && ((unsigned char)s[q - 1] & 0xC0) == 0x80) q--;
                    if (q > from) q--;
                    size_t q2 = q;
                    if (!is_white(tk_utf8_next(s, n, &q2))) break;
                    st = q;
                }
            if (a->rstrip)
                while (en < n) {
                    size_t q = en;
                    if (!is_white(tk_utf8_next(s, n, &q))) break;
                    en = q;
                }
            *ms = st;
            *me = en;
            *which = tr->idx[b][k];
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- loading */

static ft_status parse_added(jctx *c, const cJSON *arr, ft_tokenizer *t) {
    static const char *const k_add[] = {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special", NULL};
    if (!arr || cJSON_IsNull(arr)) return FT_OK;
    size_t old = jdown(c, "added_tokens", 0);
    if (!cJSON_IsArray(arr)) {
        ft_status st = jerr(c, FT_ERR_FORMAT, "expected an array");
        jup(c, old);
        return st;
    }
    int cnt = cJSON_GetArraySize(arr), i = 0, nvocab = 0, maxid = -1;
    t->added = calloc((size_t)cnt + 1, sizeof *t->added);
    if (!t->added) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
    for (int k = 0; k < t->bpe.ntok; k++)
        nvocab += t->bpe.tok[k] != NULL;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        size_t o2 = jdown(c, NULL, i);
        tk_added *a = &t->added[t->nadded];
        const char *content;
        memset(a, 0, sizeof *a);
        if (need_obj(c, it) || check_keys(c, it, k_add) || req_str(c, it, "content", &content) ||
            get_int(c, it, "id", -1, 0, TK_MAX_ID - 1, &a->id) || get_bool(c, it, "single_word", 0, &a->single_word) ||
            get_bool(c, it, "lstrip", 0, &a->lstrip) || get_bool(c, it, "rstrip", 0, &a->rstrip) ||
            get_bool(c, it, "normalized", 1, &a->normalized) || get_bool(c, it, "special", 0, &a->special))
            return FT_ERR_FORMAT;
        if (a->id < 0) return jerr(c, FT_ERR_FORMAT, "missing id");
        if (!content[0]) return jerr(c, FT_ERR_FORMAT, "empty content");
        /* HF (TokenizerImpl's deserializer -> AddedVocabulary::add_tokens) does not take the
         * serialized id: content already added keeps its id (the repeat is ignored), content in
         * the vocab takes its vocab id, new content the next id (max added id + 1 once past the
         * vocab, else the vocab's entry count); a differing "id" only logs a warning. A file whose
         * ids differ from those is refused: its ids are either wrong or meant something HF
         * would not do, and the model's embedding rows follow the ids. */
        size_t len = strlen(content);
        int prev = tk_strmap_get(&t->added_map, content, len),
            vid = tk_strmap_get(&t->bpe.vocab, content, len);
        int want = prev >= 0                                 ? t->added[prev].id
                   : vid >= 0                                ? vid
                   : maxid < 0 || (maxid < nvocab && nvocab) ? nvocab
                                                             : maxid + 1;
        if (a->id != want) {
            if (prev >= 0)
                return jerr(c, FT_ERR_FORMAT, "'%.60s' was already added with id %d (here id %d)",
                            content, want, a->id);
            if (vid >= 0)
                return jerr(c, FT_ERR_FORMAT, "'%.60s' is id %d in model.vocab, not %d", content,
                            vid, a->id);
            return jerr(c, FT_ERR_FORMAT,
                        "'%.60s' is not in model.vocab, so HF gives it the next free id %d, not %d",
                        content, want, a->id);
        }
        if (vid < 0 && want < t->bpe.ntok && t->bpe.tok[want])
            return jerr(
                c, FT_ERR_FORMAT,
                "'%.60s' would get id %d, which model.vocab gives to \"%.60s\" (ids with gaps)",
                content, want, t->bpe.tok[want]);
        if (want > maxid) maxid = want;
        if (prev >= 0) { /* ignored by HF: the first one's settings hold */
            jup(c, o2);
            continue;
        }
        a->len = len;
        if (!(a->content = dupn(content, a->len))) return FT_ERR_NOMEM;
        t->nadded++;
        if (tk_strmap_set(&t->added_map, a->content, a->len, t->nadded - 1)) return FT_ERR_NOMEM;
        jup(c, o2);
    }
    jup(c, old);
    return FT_OK;
}

/* A special token of tokenizer_config.json (`key` names it in errors): absent or null = none
 * (*id = -1); else a string or {"content": string} naming a token the tokenizer has. One it lacks
 * is refused: transformers would add it as a new token, past the model's embedding rows. */
static ft_status config_token(const char *file, const char *key, const cJSON *v,
                              const ft_tokenizer *t, int *id) {
    *id = -1;
    if (!v || cJSON_IsNull(v)) return FT_OK;
    const cJSON *s = cJSON_IsObject(v) ? jget(v, "content") : v;
    if (!cJSON_IsString(s))
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: key '%s': expected a token string or {\"content\": string}", file,
                         key);
    if ((*id = ft_tokenizer_token_to_id(t, s->valuestring)) < 0)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: key '%s': token '%.60s' is not in the tokenizer's vocab or "
                         "added_tokens (transformers "
                         "would add it as a new token, which the model's embedding does not hold)",
                         file, key, s->valuestring);
    return FT_OK;
}

static ft_status parse_config(const char *file, const cJSON *cfg, ft_tokenizer *t) {
    if (!cJSON_IsObject(cfg)) return ft_errorf(FT_ERR_FORMAT, "%s: expected a JSON object", file);
    jctx c = {.file = file};
    const char **scratch = NULL;
    size_t cap = 0;
    ft_status st = check_dup_keys(&c, cfg, &scratch, &cap);
    free(scratch);
    int bos;
    if (st || (st = config_token(file, "bos_token", jget(cfg, "bos_token"), t, &bos)) ||
        (st = config_token(file, "eos_token", jget(cfg, "eos_token"), t, &t->eos)) ||
        (st = config_token(file, "pad_token", jget(cfg, "pad_token"), t, &t->pad)))
        return st;
    if (bos >= 0) t->bos = bos; /* else keep the post-processor's first special token */
    const cJSON *cu = jget(cfg, "clean_up_tokenization_spaces");
    t->cleanup = cJSON_IsTrue(cu);
    const cJSON *extra = jget(cfg, "additional_special_tokens");
    if (extra && !cJSON_IsNull(extra) && !cJSON_IsArray(extra))
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'additional_special_tokens': expected an array",
                         file);
    int i = 0;
    for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next, i++) {
        char key[48];
        int id;
        snprintf(key, sizeof key, "additional_special_tokens[%d]", i);
        if ((st = config_token(file, key, it, t, &id))) return st;
        if (id >= 0 && id < t->vocab_size) t->id_special[id] = 1;
    }
    /* transformers' LlamaTokenizerFast rebuilds its post-processor from add_bos_token/add_eos_token */
    const cJSON *cls = jget(cfg, "tokenizer_class"), *ab = jget(cfg, "add_bos_token"), *ae = jget(cfg, "add_eos_token");
    if (cJSON_IsString(cls) && (!strcmp(cls->valuestring, "LlamaTokenizer") || !strcmp(cls->valuestring, "LlamaTokenizerFast")) &&
        (cJSON_IsBool(ab) || cJSON_IsBool(ae))) {
        int add_bos = ab ? cJSON_IsTrue(ab) : 1, add_eos = cJSON_IsTrue(ae);
        if ((add_bos && t->bos < 0) || (add_eos && t->eos < 0))
            return ft_errorf(FT_ERR_FORMAT, "%s: key 'add_%s_token': true but the %s token is not defined", file,
                             add_bos && t->bos < 0 ? "bos" : "eos", add_bos && t->bos < 0 ? "bos" : "eos");
        t->post_pre.n = t->post_post.n = 0;
        if ((add_bos && tk_ivec_push(&t->post_pre, t->bos)) || (add_eos && tk_ivec_push(&t->post_post, t->eos)))
            return FT_ERR_NOMEM;
        t->has_post = add_bos || add_eos;
    }
    return FT_OK;
}

void ft_tokenizer_free(ft_tokenizer *t) {
    if (!t) return;
    tk_bpe_free(&t->bpe);
    if (t->norm) {
        norm_free(t->norm);
        free(t->norm);
    }
    if (t->pre) {
        pre_free(t->pre);
        free(t->pre);
    }
    if (t->dec) {
        dec_free(t->dec);
        free(t->dec);
    }
    for (int i = 0; i < t->nadded; i++) {
        free(t->added[i].content);
        free(t->added[i].ncontent);
    }
    free(t->added);
    tk_strmap_free(&t->added_map);
    trie_free(&t->raw_trie);
    trie_free(&t->norm_trie);
    free(t->post_pre.p);
    free(t->post_post.p);
    free(t->id_tok);
    free(t->id_toklen);
    free(t->id_special);
    tk_buf_free(&t->nb1);
    tk_buf_free(&t->nb2);
    tk_buf_free(&t->pb1);
    tk_buf_free(&t->pb2);
    free(t->out.p);
    free(t->sp);
    free(t->sp2);
    free(t->pc);
    free(t->name);
    free(t);
}

static ft_status load_parsed(ft_tokenizer *t, jctx *c, const cJSON *root) {
    static const char *const k_top[] = {"version", "truncation", "padding", "added_tokens", "normalizer",
                                        "pre_tokenizer", "model", "post_processor", "decoder", NULL};
    if (!cJSON_IsObject(root)) return ft_errorf(FT_ERR_FORMAT, "%s: not a JSON object", c->file);
    const char **scratch = NULL;
    size_t cap = 0;
    ft_status dst = check_dup_keys(c, root, &scratch, &cap);
    free(scratch);
    if (dst) return dst;
    if (check_keys(c, root, k_top)) return FT_ERR_UNSUPPORTED;
    const cJSON *ver =
        jget(root, "version"); /* HF refuses any other version, and a missing one is fine */
    if (ver && !(cJSON_IsString(ver) && !strcmp(ver->valuestring, "1.0"))) {
        size_t old = jdown(c, "version", 0);
        ft_status st =
            cJSON_IsString(ver)
                ? jerr(c, FT_ERR_UNSUPPORTED,
                       "unknown tokenizer.json version '%.20s' (only \"1.0\")", ver->valuestring)
                : jerr(c, FT_ERR_FORMAT, "expected the string \"1.0\"");
        jup(c, old);
        return st;
    }
    static const char *const unsupported[] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = jget(root, unsupported[i]);
        if (v && !cJSON_IsNull(v)) {
            size_t old = jdown(c, unsupported[i], 0);
            ft_status st = jerr(c, FT_ERR_UNSUPPORTED, "must be null (ftune does not truncate or pad inside the tokenizer)");
            jup(c, old);
            return st;
        }
    }
    const cJSON *model = jget(root, "model");
    if (!model || cJSON_IsNull(model)) return ft_errorf(FT_ERR_FORMAT, "%s: key 'model': missing", c->file);
    size_t old = jdown(c, "model", 0);
    if (parse_model(c, model, &t->bpe)) return FT_ERR_FORMAT;
    jup(c, old);
    if (parse_added(c, jget(root, "added_tokens"), t)) return FT_ERR_FORMAT;

    const cJSON *v = jget(root, "normalizer");
    if (v && !cJSON_IsNull(v)) {
        old = jdown(c, "normalizer", 0);
        if (!(t->norm = calloc(1, sizeof *t->norm))) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        if (parse_norm(c, v, t->norm)) return FT_ERR_FORMAT;
        jup(c, old);
    }
    v = jget(root, "pre_tokenizer");
    if (v && !cJSON_IsNull(v)) {
        old = jdown(c, "pre_tokenizer", 0);
        if (!(t->pre = calloc(1, sizeof *t->pre))) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        if (parse_pre(c, v, t->pre, 1)) return FT_ERR_FORMAT;
        jup(c, old);
    }
    v = jget(root, "post_processor");
    if (v && !cJSON_IsNull(v)) {
        old = jdown(c, "post_processor", 0);
        if (parse_post(c, v, t)) return FT_ERR_FORMAT;
        jup(c, old);
    }
    v = jget(root, "decoder");
    if (v && !cJSON_IsNull(v)) {
        old = jdown(c, "decoder", 0);
        if (!(t->dec = calloc(1, sizeof *t->dec))) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
        if (parse_dec(c, v, t->dec)) return FT_ERR_FORMAT;
        jup(c, old);
    }

    /* the id table: model vocab, then added tokens over it */
    int vs = t->bpe.ntok;
    for (int i = 0; i < t->nadded; i++)
        if (t->added[i].id + 1 > vs) vs = t->added[i].id + 1;
    t->vocab_size = vs;
    t->id_tok = calloc((size_t)vs + 1, sizeof *t->id_tok);
    t->id_toklen = calloc((size_t)vs + 1, sizeof *t->id_toklen);
    t->id_special = calloc((size_t)vs + 1, 1);
    if (!t->id_tok || !t->id_toklen || !t->id_special) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
    for (int i = 0; i < t->bpe.ntok; i++) {
        t->id_tok[i] = t->bpe.tok[i];
        t->id_toklen[i] = t->bpe.toklen[i];
    }
    for (int i = 0; i < t->nadded; i++) {
        tk_added *a = &t->added[i];
        t->id_tok[a->id] = a->content;
        t->id_toklen[a->id] = (uint32_t)a->len;
        t->id_special[a->id] = (unsigned char)a->special;
        /* normalized added tokens are matched after normalization, on their normalized form */
        if (a->normalized && t->norm) {
            if (norm_apply(t->norm, a->content, a->len, &t->nb1)) return FT_ERR_NOMEM;
            if (t->nb1.n) {
                if (!(a->ncontent = dupn(t->nb1.p, t->nb1.n))) return FT_ERR_NOMEM;
                a->nlen = t->nb1.n;
            }
        }
    }
    for (size_t i = 0; i < t->post_pre.n; i++)
        if (t->post_pre.p[i] < 0 || t->post_pre.p[i] >= vs)
            return ft_errorf(FT_ERR_FORMAT, "%s: key 'post_processor': special token id %d is outside the vocabulary", c->file,
                             t->post_pre.p[i]);
    for (size_t i = 0; i < t->post_post.n; i++)
        if (t->post_post.p[i] < 0 || t->post_post.p[i] >= vs)
            return ft_errorf(FT_ERR_FORMAT, "%s: key 'post_processor': special token id %d is outside the vocabulary", c->file,
                             t->post_post.p[i]);
    if (trie_build(&t->raw_trie, t->added, t->nadded, 0) || trie_build(&t->norm_trie, t->added, t->nadded, 1))
        return FT_ERR_NOMEM;
    t->bos = t->post_pre.n ? t->post_pre.p[0] : -1;
    t->eos = t->pad = -1;
    return FT_OK;
}

ft_status ft_tokenizer_load_json(ft_tokenizer **out, const char *json, size_t len, const char *config, size_t config_len,
                                 const char *name) {
    *out = NULL;
    if (!name) name = "tokenizer.json";
    jctx c = {.file = name};
    ft_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
    t->name = ft_strdup(name);
    ft_status st = check_nul(name, json, len);
    if (st) goto fail;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        size_t off = e && e >= json && e <= json + len ? (size_t)(e - json) : 0;
        st = ft_errorf(FT_ERR_FORMAT, "%s: invalid JSON near byte %zu", name, off);
        goto fail;
    }
    st = load_parsed(t, &c, root);
    cJSON_Delete(root);
    if (st) goto fail;
    if (config) { /* name the config file beside tokenizer.json in its errors */
        char cname[4200];
        size_t nl = strlen(name), tl = strlen("tokenizer.json");
        if (nl >= tl && !strcmp(name + nl - tl, "tokenizer.json"))
            snprintf(cname, sizeof cname, "%.*stokenizer_config.json", (int)(nl - tl), name);
        else
            snprintf(cname, sizeof cname, "%s (tokenizer_config.json)", name);
        if ((st = check_nul(cname, config, config_len))) goto fail;
        cJSON *cfg = cJSON_ParseWithLength(config, config_len);
        if (!cfg) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: invalid JSON", cname);
            goto fail;
        }
        st = parse_config(cname, cfg, t);
        cJSON_Delete(cfg);
        if (st) goto fail;
    }
    *out = t;
    return FT_OK;
fail:
    ft_tokenizer_free(t);
    return st;
}

ft_status ft_tokenizer_load(ft_tokenizer **out, const char *dir_or_file) {
    *out = NULL;
    struct stat sb;
    char tj[4096], tc[4096];
    if (stat(dir_or_file, &sb) != 0) return ft_errorf(FT_ERR_NOT_FOUND, "%s: no such file or directory", dir_or_file);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(tj, sizeof tj, "%s/tokenizer.json", dir_or_file);
        snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir_or_file);
    } else {
        snprintf(tj, sizeof tj, "%s", dir_or_file);
        const char *slash = strrchr(dir_or_file, '/');
        int dl = slash ? (int)(slash - dir_or_file) : 0;
        snprintf(tc, sizeof tc, "%.*s%stokenizer_config.json", dl, dir_or_file, slash ? "/" : "");
    }
    char *json = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    ft_status st = ft_read_file(tj, &json, &jl);
    if (st) return st;
    if (stat(tc, &sb) == 0 && (st = ft_read_file(tc, &cfg, &cl))) {
        free(json);
        return st;
    }
    st = ft_tokenizer_load_json(out, json, jl, cfg, cl, tj);
    free(json);
    free(cfg);
    return st;
}

/* ---------------------------------------------------------------- encode */

/* Pre-tokenize and model one normalized section s[0..n). */
static ft_status encode_section(ft_tokenizer *t, const char *s, size_t n, int at_origin) {
    if (!n) return FT_OK;
    if (!t->pre) return tk_bpe_encode_word(&t->bpe, s, n, 0, &t->out);
    tk_buf *b = &t->pb1;
    b->n = 0;
    if (tk_buf_put(b, s, n)) return FT_ERR_NOMEM;
    pstate ps = {b, t->sp, 0, t->spcap, 0, t->sp2, t->sp2cap, t->pc, t->pccap};
    ft_status st = span_push(&ps.sp, &ps.n, &ps.cap, 0, (uint32_t)n);
    if (!st) st = pre_apply(t->pre, &ps, &t->pb2, at_origin);
    for (size_t i = 0; i < ps.n && !st; i++)
        st = tk_bpe_encode_word(&t->bpe, ps.buf->p + ps.sp[i].off, ps.sp[i].len, ps.bytelevel, &t->out);
    t->sp = ps.sp; /* kept for the next call */
    t->spcap = ps.cap;
    t->sp2 = ps.spare;
    t->sp2cap = ps.spare_cap;
    t->pc = ps.pc;
    t->pccap = ps.pccap;
    return st;
}

/* Normalize a raw section, split out normalized added tokens, encode the rest. */
static ft_status encode_raw(ft_tokenizer *t, const char *s, size_t n, int at_origin) {
    if (!n) return FT_OK;
    const char *ns = s;
    size_t nn = n;
    if (t->norm) {
        if (norm_apply(t->norm, s, n, &t->nb2)) return FT_ERR_ARG;
        ns = t->nb2.p;
        nn = t->nb2.n;
        if (!nn) return FT_OK;
    }
    if (!t->norm_trie.any) return encode_section(t, ns, nn, at_origin);
    /* copy: encode_section reuses buffers */
    char *copy = dupn(ns, nn);
    if (!copy) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory");
    size_t pos = 0, ms, me;
    int w;
    ft_status st = FT_OK;
    while (!st && added_find(t, &t->norm_trie, 1, copy, nn, pos, &ms, &me, &w)) {
        st = encode_section(t, copy + pos, ms - pos, at_origin && pos == 0);
        if (!st) st = tk_ivec_push(&t->out, t->added[w].id);
        pos = me;
    }
    if (!st) st = encode_section(t, copy + pos, nn - pos, at_origin && pos == 0);
    free(copy);
    return st;
}

ft_status ft_tokenizer_encode(ft_tokenizer *t, const char *text, size_t len, int add_special, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    size_t bad = tk_utf8_check(text, len);
    if (bad) return ft_errorf(FT_ERR_ARG, "tokenizer: input is not valid UTF-8 (byte offset %zu)", bad - 1);
    t->out.n = 0;
    ft_status st = FT_OK;
    if (add_special && t->has_post) st = tk_ivec_put(&t->out, t->post_pre.p, t->post_pre.n);
    size_t pos = 0, ms, me;
    int w;
    while (!st && t->raw_trie.any && added_find(t, &t->raw_trie, 0, text, len, pos, &ms, &me, &w)) {
        st = encode_raw(t, text + pos, ms - pos, pos == 0);
        if (!st) st = tk_ivec_push(&t->out, t->added[w].id);
        pos = me;
    }
    if (!st) st = encode_raw(t, text + pos, len - pos, pos == 0);
    if (!st && add_special && t->has_post) st = tk_ivec_put(&t->out, t->post_post.p, t->post_post.n);
    if (st) return st;
    if (t->out.n > (size_t)INT32_MAX) return ft_errorf(FT_ERR_ARG, "tokenizer: too many tokens");
    int *r = malloc((t->out.n ? t->out.n : 1) * sizeof *r);
    if (!r) return ft_errorf(FT_ERR_NOMEM, "tokenizer: out of memory (%zu ids)", t->out.n);
    if (t->out.n) memcpy(r, t->out.p, t->out.n * sizeof *r);
    *ids = r;
    *n = (int)t->out.n;
    return FT_OK;
}

/* ---------------------------------------------------------------- decode */

/* transformers' clean_up_tokenization: " ." -> "." etc. */
static ft_status cleanup(tk_buf *b) {
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (int r = 0; r < 10; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), w = 0;
        for (size_t i = 0; i < b->n;) {
            if (i + fl <= b->n && !memcmp(b->p + i, from[r], fl)) {
                memmove(b->p + w, to[r], tl);
                w += tl;
                i += fl;
            } else
                b->p[w++] = b->p[i++];
        }
        b->n = w;
        b->p[w] = 0;
    }
    return FT_OK;
}

ft_status ft_tokenizer_decode(ft_tokenizer *t, const int *ids, int n, int skip_special, char **out) {
    *out = NULL;
    strlist l = {0};
    size_t k = 0;
    if (strlist_init(&l, (size_t)(n > 0 ? n : 0))) return FT_ERR_NOMEM;
    ft_status st = FT_OK;
    for (int i = 0; i < n && !st; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->id_tok[id]) {
            st = ft_errorf(FT_ERR_ARG, "tokenizer: id %d at position %d is not in the vocabulary (size %d)", id, i, t->vocab_size);
            break;
        }
        if (skip_special && t->id_special[id]) continue;
        st = tk_buf_put(&l.s[k++], t->id_tok[id], t->id_toklen[id]);
    }
    l.n = k;
    tk_buf res = {0};
    if (!st && t->dec) st = dec_apply(t->dec, &l);
    for (size_t i = 0; i < l.n && !st; i++) {
        if (!t->dec && i > 0) st = tk_buf_put(&res, " ", 1); /* HF joins with spaces without a decoder */
        if (!st) st = tk_buf_put(&res, l.s[i].p, l.s[i].n);
    }
    if (!st && !res.p) st = tk_buf_put(&res, "", 0);
    strlist_free(&l);
    if (!st && t->cleanup) st = cleanup(&res);
    if (!st && tk_utf8_check(res.p, res.n)) { /* a decoder left bytes: make it valid UTF-8 */
        tk_buf v = {0};
        st = tk_utf8_lossy(&v, res.p, res.n);
        tk_buf_free(&res);
        res = v;
    }
    if (st) {
        tk_buf_free(&res);
        return st;
    }
    *out = res.p;
    return FT_OK;
}

/* ---------------------------------------------------------------- queries */

int ft_tokenizer_vocab_size(const ft_tokenizer *t) { return t->vocab_size; }

ft_status ft_tokenizer_check_model(const ft_tokenizer *t, const char *model_dir, int vocab_size) {
    if (t->vocab_size <= vocab_size) return FT_OK;
    return ft_errorf(FT_ERR_ARG,
                     "%s/tokenizer.json has %d ids but %s/config.json's vocab_size is %d (its ids "
                     "past that have no embedding)",
                     model_dir, t->vocab_size, model_dir, vocab_size);
}

int ft_tokenizer_token_to_id(const ft_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int a = tk_strmap_get(&t->added_map, token, n);
    if (a >= 0) return t->added[a].id;
    return tk_strmap_get(&t->bpe.vocab, token, n);
}

const char *ft_tokenizer_id_to_token(const ft_tokenizer *t, int id) {
    return id >= 0 && id < t->vocab_size ? t->id_tok[id] : NULL;
}

int ft_tokenizer_bos_id(const ft_tokenizer *t) { return t->bos; }
int ft_tokenizer_eos_id(const ft_tokenizer *t) { return t->eos; }
int ft_tokenizer_pad_id(const ft_tokenizer *t) { return t->pad; }
int ft_tokenizer_is_special(const ft_tokenizer *t, int id) { return id >= 0 && id < t->vocab_size && t->id_special[id]; }
