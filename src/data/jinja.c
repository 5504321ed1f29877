/*
 * A small, strict Jinja2 interpreter for chat templates (include/ftune/jinja.h).
 *
 * Pipeline: preprocess (\r\n and \r read as \n, drop one trailing newline, lstrip_blocks and
 * trim_blocks as @huggingface/jinja applies them, with a map back to source lines) -> tokens ->
 * recursive-descent parser -> a small AST -> a tree-walking evaluator over a tagged value type. All
 * nodes and values live in arenas; errors unwind by longjmp to the entry point, which frees the
 * arena, so no path leaks. Work (steps), nesting and memory are bounded: the input is an untrusted
 * file.
 *
 * Supported: {{ }}, {% %}, {# #}, whitespace control, if/elif/else, for/else (with loop.index,
 * index0, revindex, revindex0, first, last, length, previtem, nextitem; unpacking of pairs; break,
 * continue), set (name, ns.attr, block form), macro and calls to macros, literals, lists, tuples,
 * dicts, attribute/subscript access, slicing, in / not in, is [not] tests, and/or/not, comparisons,
 * + - * / // % ** ~, a if c else b, the filters, tests and methods of filter(), test() and
 * method() below,
 * raise_exception, strftime_now, namespace, range, and transformers' {% generation %} marker
 * (its body is rendered).
 * Output follows Python's Jinja2 (what transformers renders with) and, where it agrees,
 * @huggingface/jinja (the tests' other reference). Where they differ ftune follows Python: values
 * print as Python's str() (None, True, False; floats as repr, 1e+16; lists, tuples, dicts and
 * dict views as repr, strings in them quoted and escaped as Python does; undefined as "" alone
 * and Undefined inside a container), str.strip(chars), % and // on negatives, `+` of a string and
 * a non-string an error, capitalize, lengths in code points, chained comparisons, \r\n read as
 * \n, loop-local `set`, Python string escapes, undefined iterating as empty. One exception:
 * tojson writes JSON as @huggingface/jinja does (keeps non-ASCII, writes 2.0 as 2). Not supported
 * (a clear error): call blocks, filter blocks, include/extends/import, `loop.cycle`, string
 * formatting with %, exponent literals (1e3). String indexing, slicing and length count Unicode
 * code points; upper, lower, title, capitalize and swapcase are Python's, with full case mappings
 * and Final_Sigma (src/data/pyunicode.c).
 */
#include "ftune/jinja.h"

#include "pyunicode.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SRC (1 << 20)    /* template bytes */
#define MAX_MEM (128u << 20) /* arena bytes per render */
#define MAX_STEPS 5000000    /* evaluation steps per render */
#define MAX_DEPTH 200        /* parser recursion, expression height, macro calls, values */
#define MAX_NEST (3 * MAX_DEPTH) /* eval and exec calls nested while rendering */

/* The parser and the evaluator recurse over untrusted input, so every recursion is bounded for
 * an 8 MiB main-thread stack, whatever the template (up to MAX_SRC):
 * - MAX_DEPTH bounds the parser's recursion (expr, not, unary -/+ and statements: J.depth), the
 *   height of each expression's tree (child(): a chain the parser builds with a loop, a.b.c,
 *   x|f|g, 1+1+1, is as high as it is long, and eval recurses down it), nested macro calls, and
 *   the depth of values compared or converted (eq, to_json, py_repr, from_json).
 * - MAX_NEST bounds eval and exec nested together while rendering (enter()). Statements nest 2
 *   exec frames a level and an expression 1 eval frame a level of its height, within 3 *
 *   MAX_DEPTH; only macro calls, each adding its body's nesting to its caller's, go further. A
 *   level is one eval or exec frame plus at most one helper frame (eval_args, call_macro,
 *   filter): eval's is the largest, 1 KB in the optimized build and 4.4 KB in the sanitizer build
 *   (gcc 12), whose frames hold redzones. The worst cases of tests/data/test_jinja.c reach
 *   MAX_NEST within a 1 MiB stack optimized and a 3 MiB stack sanitized.
 * An elif chain is walked, not recursed into; the AST lives in an arena, freed without recursion.
 */

/* ---------------------------------------------------------------- arena, errors ---- */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    max_align_t data[];
} blk;

typedef struct {
    blk *head;
    size_t total;
    jmp_buf jb;
    ft_status code;
    char msg[320];
    long steps;
    int depth;
} J;

static void fail(J *j, ft_status code, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void fail(J *j, ft_status code, int line, const char *fmt, ...) {
    int k = line > 0 ? snprintf(j->msg, sizeof j->msg, "template line %d: ", line) : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg + k, sizeof j->msg - (size_t)k, fmt, ap);
    va_end(ap);
    for (char *p = j->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' '; /* one line */
    j->code = code;
    longjmp(j->jb, 1);
}

static void *alloc(J *j, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!j->head || j->head->cap - j->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (j->total + cap > MAX_MEM)
            fail(j, FT_ERR_NOMEM, 0, "template needs more than %u MiB", MAX_MEM >> 20);
        blk *b = malloc(sizeof *b + cap);
        if (!b) fail(j, FT_ERR_NOMEM, 0, "out of memory");
        b->next = j->head, b->used = 0, b->cap = cap;
        j->head = b;
        j->total += cap;
    }
    void *p = (char *)j->head->data + j->head->used;
    j->head->used += n;
    return p;
}

static void arena_free(blk *b) {
    while (b) {
        blk *n = b->next;
        free(b);
        b = n;
    }
}

static char *sdup(J *j, const char *s, size_t n) {
    char *p = alloc(j, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* a growable array in the arena: doubles by copying */
static void *grow(J *j, void *p, int n, int *cap, size_t el) {
    if (n < *cap) return p;
    int nc = *cap ? *cap * 2 : 8;
    void *q = alloc(j, el * (size_t)nc);
    if (n) memcpy(q, p, el * (size_t)n);
    *cap = nc;
    return q;
}

/* ---------------------------------------------------------------- values ---- */

enum { T_UNDEF, T_NONE, T_BOOL, T_INT, T_FLOAT, T_STR, T_LIST, T_DICT, T_NS, T_MACRO };
static const char *tname[] = {"undefined", "none", "boolean", "integer",   "float",
                              "string",    "list", "dict",    "namespace", "macro"};

typedef struct val {
    int t;
    int64_t i; /* bool, int; string length */
    double f;
    const char *s; /* string bytes (NUL-terminated) */
    void *p;       /* list, dict (T_DICT and T_NS), macro */
} val;

/* what a T_LIST is in Python: each prints as its own kind; a tuple compares unequal to a list */
enum { LK_LIST, LK_TUPLE, LK_KEYS, LK_VALUES, LK_ITEMS };
static const char *lkname[] = {"list", "tuple", "dict_keys", "dict_values", "dict_items"};

typedef struct {
    val *it;
    int n, cap;
    int kind; /* LK_* */
} list;

typedef struct {
    const char **k;
    val *v;
    int n, cap;
} dict;

static const val UNDEF = {.t = T_UNDEF};
static val v_none(void) {
    return (val){.t = T_NONE};
}
static val v_bool(int b) {
    return (val){.t = T_BOOL, .i = !!b};
}
static val v_int(int64_t i) {
    return (val){.t = T_INT, .i = i};
}
static val v_float(double f) {
    return (val){.t = T_FLOAT, .f = f};
}
static val v_str(const char *s, size_t n) {
    return (val){.t = T_STR, .s = s, .i = (int64_t)n};
}
static val v_cstr(J *j, const char *s) {
    size_t n = strlen(s);
    return v_str(sdup(j, s, n), n);
}

static val v_list(J *j) {
    list *l = alloc(j, sizeof *l);
    memset(l, 0, sizeof *l);
    return (val){.t = T_LIST, .p = l};
}
static val v_list_of(J *j, int kind) {
    val l = v_list(j);
    ((list *)l.p)->kind = kind;
    return l;
}
static void l_push(J *j, val l, val x) {
    list *L = l.p;
    L->it = grow(j, L->it, L->n, &L->cap, sizeof *L->it);
    L->it[L->n++] = x;
}
static val v_dict(J *j, int t) {
    dict *d = alloc(j, sizeof *d);
    memset(d, 0, sizeof *d);
    return (val){.t = t, .p = d};
}
static val *d_find(val d, const char *k) {
    dict *D = d.p;
    for (int i = 0; i < D->n; i++)
        if (!strcmp(D->k[i], k)) return &D->v[i];
    return NULL;
}
static void d_set(J *j, val d, const char *k, val x) {
    val *e = d_find(d, k);
    if (e) {
        *e = x;
        return;
    }
    dict *D = d.p;
    int cap = D->cap;
    D->k = grow(j, D->k, D->n, &cap, sizeof *D->k);
    D->v = grow(j, D->v, D->n, &D->cap, sizeof *D->v);
    D->k[D->n] = k;
    D->v[D->n++] = x;
}

static int truthy(val v) {
    switch (v.t) {
    case T_BOOL:
    case T_INT:
    case T_STR: return v.i != 0;
    case T_FLOAT: return v.f != 0;
    case T_LIST: return ((list *)v.p)->n > 0;
    case T_DICT: return ((dict *)v.p)->n > 0;
    case T_NS:
    case T_MACRO: return 1;
    default: return 0;
    }
}

/* output / string builder (in the arena) */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_add(J *j, sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *q = alloc(j, nc);
        if (b->n) memcpy(q, b->p, b->n);
        b->p = q, b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_cs(J *j, sbuf *b, const char *s) {
    sb_add(j, b, s, strlen(s));
}
static val sb_val(J *j, sbuf *b) {
    return b->n ? v_str(b->p, b->n) : v_str(sdup(j, "", 0), 0);
}

/* JavaScript's Number#toString for finite doubles: the shortest digits that round-trip */
static void fmt_num(char *o, size_t cap, double f) {
    if (isnan(f)) {
        snprintf(o, cap, "NaN");
        return;
    }
    if (isinf(f)) {
        snprintf(o, cap, f > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(o, cap, "%.*g", p, f);
        if (strtod(o, NULL) == f) break;
    }
    char *e = strchr(o, 'e');
    if (e) { /* 1e+21 -> 1e+21 (JS); 1e-07 -> 1e-7 */
        char *d = e + 2;
        while (*d == '0' && d[1])
            memmove(d, d + 1, strlen(d));
    }
}

static void json_str(J *j, sbuf *b, const char *s, size_t n) {
    sb_add(j, b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        const char *r = NULL;
        switch (c) {
        case '"': r = "\\\""; break;
        case '\\': r = "\\\\"; break;
        case '\n': r = "\\n"; break;
        case '\r': r = "\\r"; break;
        case '\t': r = "\\t"; break;
        case '\b': r = "\\b"; break;
        case '\f': r = "\\f"; break;
        default:
            if (c < 0x20) snprintf(e, sizeof e, "\\u%04x", c), r = e;
        }
        if (r)
            sb_cs(j, b, r);
        else
            sb_add(j, b, (const char *)&s[i], 1);
    }
    sb_add(j, b, "\"", 1);
}

typedef struct {
    const char *k;
    int i;
} keyidx;
static int keyidx_cmp(const void *a, const void *b) {
    return strcmp(((const keyidx *)a)->k, ((const keyidx *)b)->k);
}

/* JSON as @huggingface/jinja writes it (separators ", " ": "; "," with indent) */
static void to_json(J *j, sbuf *b, val v, int indent, int sort, int depth, int undef_null) {
    if (depth > MAX_DEPTH) fail(j, FT_ERR_UNSUPPORTED, 0, "value nested too deeply for tojson");
    char num[40];
    switch (v.t) {
    case T_UNDEF: sb_cs(j, b, undef_null ? "null" : "undefined"); return;
    case T_NONE: sb_cs(j, b, "null"); return;
    case T_BOOL: sb_cs(j, b, v.i ? "true" : "false"); return;
    case T_INT:
        snprintf(num, sizeof num, "%lld", (long long)v.i);
        sb_cs(j, b, num);
        return;
    case T_FLOAT:
        fmt_num(num, sizeof num, v.f);
        sb_cs(j, b, isfinite(v.f) ? num : "null");
        return;
    case T_STR: json_str(j, b, v.s, (size_t)v.i); return;
    case T_MACRO: fail(j, FT_ERR_UNSUPPORTED, 0, "cannot convert a macro to JSON");
    default: break;
    }
    int is_list = v.t == T_LIST;
    int n = is_list ? ((list *)v.p)->n : ((dict *)v.p)->n;
    keyidx *order = NULL; /* sort_keys: the entries by key (byte order = code point order) */
    if (sort && !is_list && n > 1) {
        order = alloc(j, sizeof *order * (size_t)n);
        for (int i = 0; i < n; i++)
            order[i] = (keyidx){((dict *)v.p)->k[i], i};
        qsort(order, (size_t)n, sizeof *order, keyidx_cmp);
    }
    sb_cs(j, b, is_list ? "[" : "{");
    for (int i = 0; i < n; i++) {
        if (i) sb_cs(j, b, indent ? "," : ", ");
        if (indent) {
            sb_cs(j, b, "\n");
            for (int k = 0; k < indent * (depth + 1); k++)
                sb_cs(j, b, " ");
        }
        if (is_list) {
            to_json(j, b, ((list *)v.p)->it[i], indent, sort, depth + 1, undef_null);
        } else {
            dict *d = v.p;
            int e = order ? order[i].i : i;
            json_str(j, b, d->k[e], strlen(d->k[e]));
            sb_cs(j, b, ": ");
            to_json(j, b, d->v[e], indent, sort, depth + 1, undef_null);
        }
    }
    if (indent && n) {
        sb_cs(j, b, "\n");
        for (int k = 0; k < indent * depth; k++)
            sb_cs(j, b, " ");
    }
    sb_cs(j, b, is_list ? "]" : "}");
}

static val from_json(J *j, const cJSON *c, int depth) {
    if (depth > MAX_DEPTH) fail(j, FT_ERR_UNSUPPORTED, 0, "context nested too deeply");
    if (cJSON_IsString(c)) return v_cstr(j, c->valuestring);
    if (cJSON_IsBool(c)) return v_bool(cJSON_IsTrue(c));
    if (cJSON_IsNull(c)) return v_none();
    if (cJSON_IsNumber(c)) {
        double f = c->valuedouble;
        return f == floor(f) && fabs(f) < 9e15 ? v_int((int64_t)f) : v_float(f);
    }
    if (cJSON_IsArray(c)) {
        val l = v_list(j);
        const cJSON *e;
        cJSON_ArrayForEach(e, c) l_push(j, l, from_json(j, e, depth + 1));
        return l;
    }
    if (cJSON_IsObject(c)) {
        val d = v_dict(j, T_DICT);
        const cJSON *e;
        cJSON_ArrayForEach(e, c)
            d_set(j, d, sdup(j, e->string, strlen(e->string)), from_json(j, e, depth + 1));
        return d;
    }
    return UNDEF;
}

/* ---------------------------------------------------------------- lexer ---- */

/* clang-format off */
enum {
    K_EOF, K_TEXT, K_OEXPR, K_CEXPR, K_OSTMT, K_CSTMT, K_NAME, K_STR, K_INT, K_FLOAT, K_OP,
    K_COMMENT
};
/* clang-format on */

typedef struct {
    int k, line;
    const char *s; /* text, name, string value, operator */
    size_t n;
} tok;

typedef struct {
    J *j;
    tok *t;
    int n, cap, pos;
} lex;

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
static int is_digit(char c) {
    return c >= '0' && c <= '9';
}
static int is_word(char c) {
    return is_digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void push_tok(lex *L, int k, int line, const char *s, size_t n) {
    L->t = grow(L->j, L->t, L->n, &L->cap, sizeof *L->t);
    L->t[L->n++] = (tok){k, line, s, n};
}

/* lstrip_blocks, trim_blocks and the trailing newline as @huggingface/jinja applies them to the
 * whole source; line[i] is the source line of output byte i */
static char *preprocess(J *j, const char *src, size_t n, size_t *on, int **line_of) {
    char *o = alloc(j, n + 1);
    int *ln = alloc(j, sizeof(int) * (n + 1));
    size_t k = 0;
    int line = 1, at_bol = 1;
    char *nl = alloc(j, n + 1); /* \r\n and \r become \n, as Python Jinja reads them */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        nl[m++] = src[i] == '\r' ? '\n' : src[i];
        if (src[i] == '\r' && i + 1 < n && src[i + 1] == '\n') i++;
    }
    src = nl, n = m;
    if (n && src[n - 1] == '\n') n--;
    for (size_t i = 0; i < n; i++) {
        if (at_bol) { /* ^[ \t]*({[#%-]) -> $1 */
            size_t e = i;
            while (e < n && (src[e] == ' ' || src[e] == '\t'))
                e++;
            if (e + 1 < n && src[e] == '{' &&
                (src[e + 1] == '#' || src[e + 1] == '%' || src[e + 1] == '-'))
                i = e;
            at_bol = 0;
        }
        o[k] = src[i], ln[k++] = line;
        if (src[i] == '\n') line++, at_bol = 1;
        /* ([#%-]})\n -> $1 */
        if (src[i] == '}' && i > 0 &&
            (src[i - 1] == '#' || src[i - 1] == '%' || src[i - 1] == '-') && i + 1 < n &&
            src[i + 1] == '\n')
            i++, line++, at_bol = 1;
    }
    o[k] = 0, ln[k] = line;
    *on = k, *line_of = ln;
    return o;
}

static void put_utf8(J *j, sbuf *b, unsigned long c, int line) {
    char u[4];
    int n = 0;
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        fail(j, FT_ERR_FORMAT, line, "string escape of an invalid code point U+%lX", c);
    if (c < 0x80)
        u[n++] = (char)c;
    else if (c < 0x800)
        u[n++] = (char)(0xC0 | c >> 6), u[n++] = (char)(0x80 | (c & 0x3F));
    else if (c < 0x10000)
        u[n++] = (char)(0xE0 | c >> 12), u[n++] = (char)(0x80 | (c >> 6 & 0x3F)),
        u[n++] = (char)(0x80 | (c & 0x3F));
    else
        u[n++] = (char)(0xF0 | c >> 18), u[n++] = (char)(0x80 | (c >> 12 & 0x3F)),
        u[n++] = (char)(0x80 | (c >> 6 & 0x3F)), u[n++] = (char)(0x80 | (c & 0x3F));
    sb_add(j, b, u, (size_t)n);
}

/* The escape at s[i] == '\\' in a string literal, decoded as Python's unicode-escape does (what
 * Jinja applies to string literals): \\ \' \" \a \b \f \n \r \t \v, \<newline> (dropped),
 * \ooo, \xhh, \uhhhh, \Uhhhhhhhh; any other keeps its backslash. Returns the index after it. */
static size_t unescape(J *j, sbuf *b, const char *s, size_t len, size_t i, int line) {
    char e = i + 1 < len ? s[i + 1] : 0;
    static const char from[] = "\\'\"abfnrtv", to[] = "\\'\"\a\b\f\n\r\t\v";
    const char *simple = e ? strchr(from, e) : NULL;
    if (simple) {
        sb_add(j, b, to + (simple - from), 1);
        return i + 2;
    }
    if (e == '\n') return i + 2;
    if (e >= '0' && e <= '7') {
        unsigned long c = 0;
        size_t k = i + 1;
        while (k < len && k < i + 4 && s[k] >= '0' && s[k] <= '7')
            c = c * 8 + (unsigned long)(s[k++] - '0');
        put_utf8(j, b, c, line);
        return k;
    }
    int nhex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (nhex) {
        unsigned long c = 0;
        for (int k = 0; k < nhex; k++) {
            char h = i + 2 + (size_t)k < len ? s[i + 2 + (size_t)k] : 0;
            int d = h >= '0' && h <= '9'   ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                           : -1;
            if (d < 0) fail(j, FT_ERR_FORMAT, line, "truncated \\%c escape in a string", e);
            c = c * 16 + (unsigned long)d;
        }
        put_utf8(j, b, c, line);
        return i + 2 + (size_t)nhex;
    }
    if (e == 'N') fail(j, FT_ERR_UNSUPPORTED, line, "string escape \\N{...} is not supported");
    sb_add(j, b, "\\", 1); /* unknown: kept, as Python does */
    return i + 1;
}

static void tokenize(lex *L, const char *src, size_t n) {
    J *j = L->j;
    int *ln;
    size_t len;
    const char *s = preprocess(j, src, n, &len, &ln);
    size_t i = 0;
    int depth = 0, inside = 0; /* curly depth inside {{ }}; inside a tag */
#define AT(p) ((p) < len ? s[p] : 0)
    while (i < len) {
        if (!inside) {
            size_t a = i;
            while (i < len &&
                   !(s[i] == '{' && (AT(i + 1) == '%' || AT(i + 1) == '{' || AT(i + 1) == '#')))
                i++;
            if (i > a) {
                push_tok(L, K_TEXT, ln[a], s + a, i - a);
                continue;
            }
        }
        int line = ln[i];
        int strip_before = 0;
        if (!inside) {
            char c = s[i + 1];
            if (c == '#') {
                i += 2;
                if (AT(i) == '-') strip_before = 1, i++;
                size_t a = i;
                while (i + 1 < len && !(s[i] == '#' && s[i + 1] == '}'))
                    i++;
                if (i + 1 >= len) fail(j, FT_ERR_FORMAT, line, "comment {# is never closed");
                int strip_after = i > a && s[i - 1] == '-';
                if (strip_before && L->n && L->t[L->n - 1].k == K_TEXT) {
                    tok *t = &L->t[L->n - 1];
                    while (t->n && is_ws(t->s[t->n - 1]))
                        t->n--;
                    if (!t->n) L->n--;
                }
                push_tok(L, K_COMMENT, line, NULL, 0);
                i += 2;
                if (strip_after)
                    while (i < len && is_ws(s[i]))
                        i++;
                continue;
            }
            push_tok(L, c == '%' ? K_OSTMT : K_OEXPR, line, NULL, 0);
            i += 2, inside = c == '%' ? 1 : 2, depth = 0;
            if (AT(i) == '-') {
                i++;
                int at = L->n - 2;
                if (at >= 0 && L->t[at].k == K_TEXT) {
                    tok *t = &L->t[at];
                    while (t->n && is_ws(t->s[t->n - 1]))
                        t->n--;
                    if (!t->n) L->t[at] = L->t[at + 1], L->n--;
                }
            }
            continue;
        }
        while (i < len && is_ws(s[i]))
            i++;
        if (i >= len) break;
        line = ln[i];
        char c = s[i];
        if (c == '-' && AT(i + 1) == (inside == 1 ? '%' : '}') && AT(i + 2) == '}') {
            push_tok(L, inside == 1 ? K_CSTMT : K_CEXPR, line, NULL, 0);
            i += 3, inside = 0;
            while (i < len && is_ws(s[i]))
                i++;
            continue;
        }
        if ((inside == 1 && c == '%' && AT(i + 1) == '}') ||
            (inside == 2 && depth == 0 && c == '}' && AT(i + 1) == '}')) {
            push_tok(L, inside == 1 ? K_CSTMT : K_CEXPR, line, NULL, 0);
            i += 2, inside = 0;
            continue;
        }
        if (c == '\'' || c == '"') {
            sbuf b = {0};
            i++;
            while (i < len && s[i] != c) {
                if (s[i] == '\\') {
                    i = unescape(j, &b, s, len, i, ln[i]);
                } else {
                    sb_add(j, &b, s + i, 1);
                    i++;
                }
            }
            if (i >= len) fail(j, FT_ERR_FORMAT, line, "string literal is never closed");
            i++;
            val v = sb_val(j, &b);
            push_tok(L, K_STR, line, v.s, (size_t)v.i);
            continue;
        }
        if (is_digit(c)) {
            size_t a = i;
            while (i < len && is_digit(s[i]))
                i++;
            int fl = 0;
            if (!(L->n && L->t[L->n - 1].k == K_OP && L->t[L->n - 1].s[0] == '.') && AT(i) == '.' &&
                is_digit(AT(i + 1))) {
                fl = 1, i++;
                while (i < len && is_digit(s[i]))
                    i++;
            }
            push_tok(L, fl ? K_FLOAT : K_INT, line, sdup(j, s + a, i - a), i - a);
            continue;
        }
        if (is_word(c)) {
            size_t a = i;
            while (i < len && is_word(s[i]))
                i++;
            push_tok(L, K_NAME, line, sdup(j, s + a, i - a), i - a);
            continue;
        }
        static const char *ops[] = {"//", "**", "==", "!=", "<=", ">=", "(", ")", "[",
                                    "]",  "{",  "}",  ",",  ".",  ":",  "|", "<", ">",
                                    "+",  "-",  "~",  "*",  "/",  "%",  "=", NULL};
        int k = 0;
        for (; ops[k]; k++)
            if (!strncmp(s + i, ops[k], strlen(ops[k]))) break;
        if (!ops[k] && c > 0x20 && c < 0x7f)
            fail(j, FT_ERR_FORMAT, line, "unexpected character '%c' inside a tag", c);
        if (!ops[k])
            fail(j, FT_ERR_FORMAT, line, "unexpected byte 0x%02x inside a tag", (unsigned char)c);
        if (ops[k][0] == '{') depth++;
        if (ops[k][0] == '}') depth--;
        push_tok(L, K_OP, line, ops[k], strlen(ops[k]));
        i += strlen(ops[k]);
    }
    if (inside)
        fail(j, FT_ERR_FORMAT, L->n ? L->t[L->n - 1].line : 1, "tag %s is never closed",
             inside == 1 ? "{%" : "{{");
    push_tok(L, K_EOF, ln[len], NULL, 0);
#undef AT
}

/* ---------------------------------------------------------------- AST ---- */

/* clang-format off */
enum {
    N_BLOCK, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE, /* statements */
    N_LIT, N_NAME, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NOT, N_NEG, N_BIN, N_AND,
    N_OR, N_COND, N_LIST, N_DICT /* expressions */
};
/* clang-format on */

typedef struct node node;
struct node {
    int k, line, flag;
    int h;              /* an expression's height: 1 for a leaf, 1 + its highest child's */
    const char *s, *s2; /* name, operator, second loop variable */
    size_t n;           /* text length */
    val lit;
    node *a, *b, *c, *d;
    node **v; /* body, elements, args (dict: key, value, key, ...) */
    int nv, cap;
    const char **kn; /* keyword argument names */
    node **kv;
    int nk, kcap;
};

typedef struct {
    J *j;
    lex *L;
    int loops; /* for bodies being parsed (break/continue need one), reset inside macros */
} P;

static tok *peek(P *p) {
    return &p->L->t[p->L->pos];
}
static tok *next(P *p) {
    tok *t = peek(p);
    if (t->k != K_EOF) p->L->pos++;
    return t;
}
static int is_op(P *p, const char *op) {
    tok *t = peek(p);
    return t->k == K_OP && !strcmp(t->s, op);
}
static int is_name(P *p, const char *nm) {
    tok *t = peek(p);
    return t->k == K_NAME && !strcmp(t->s, nm);
}

static const char *tok_desc(tok *t) {
    switch (t->k) {
    case K_EOF: return "end of template";
    case K_TEXT: return "text";
    case K_OEXPR: return "{{";
    case K_CEXPR: return "}}";
    case K_OSTMT: return "{%";
    case K_CSTMT: return "%}";
    case K_STR: return "a string";
    case K_INT:
    case K_FLOAT: return "a number";
    default: return t->s;
    }
}

static void expect_op(P *p, const char *op) {
    if (!is_op(p, op))
        fail(p->j, FT_ERR_FORMAT, peek(p)->line, "expected '%s', found '%s'", op,
             tok_desc(peek(p)));
    next(p);
}
static const char *expect_name(P *p) {
    tok *t = peek(p);
    if (t->k != K_NAME)
        fail(p->j, FT_ERR_FORMAT, t->line, "expected a name, found '%s'", tok_desc(t));
    return next(p)->s;
}
static void expect_k(P *p, int k, const char *what) {
    if (peek(p)->k != k)
        fail(p->j, FT_ERR_FORMAT, peek(p)->line, "expected '%s', found '%s'", what,
             tok_desc(peek(p)));
    next(p);
}

static node *mk(P *p, int k, int line) {
    node *n = alloc(p->j, sizeof *n);
    memset(n, 0, sizeof *n);
    n->k = k, n->line = line, n->h = 1;
    return n;
}
static void add(P *p, node *parent, node *child) {
    parent->v = grow(p->j, parent->v, parent->nv, &parent->cap, sizeof *parent->v);
    parent->v[parent->nv++] = child;
}

static node *expr(P *p);

/* one more level of the parser's recursion (expr, not, unary -/+); the caller undoes it */
static void deeper(P *p) {
    if (++p->j->depth > MAX_DEPTH)
        fail(p->j, FT_ERR_UNSUPPORTED, peek(p)->line, "expression nested too deeply");
}

/* `c` as a child of the expression node `m`, returned: m's height grows to c's + 1. Chains the
 * parser builds with loops (a.b.c, x|f|g, 1+1+1, a and b and c) nest to the left without the
 * parser recursing, so their height, not deeper(), is what bounds eval's recursion over them */
static node *child(P *p, node *m, node *c) {
    if (c->h >= m->h) m->h = c->h + 1;
    if (m->h > MAX_DEPTH) fail(p->j, FT_ERR_UNSUPPORTED, m->line, "expression nested too deeply");
    return c;
}

/* (args) after a callee or a filter name: positional and keyword arguments */
static void call_args(P *p, node *n) {
    expect_op(p, "(");
    while (!is_op(p, ")")) {
        tok *t = peek(p);
        if (t->k == K_NAME && p->L->t[p->L->pos + 1].k == K_OP &&
            !strcmp(p->L->t[p->L->pos + 1].s, "=")) {
            next(p), next(p);
            int cap = n->kcap;
            n->kn = grow(p->j, n->kn, n->nk, &cap, sizeof *n->kn);
            n->kv = grow(p->j, n->kv, n->nk, &n->kcap, sizeof *n->kv);
            n->kn[n->nk] = t->s;
            n->kv[n->nk++] = child(p, n, expr(p));
        } else {
            if (n->nk)
                fail(p->j, FT_ERR_FORMAT, t->line, "positional argument after a keyword argument");
            add(p, n, child(p, n, expr(p)));
        }
        if (!is_op(p, ",")) break;
        next(p);
    }
    expect_op(p, ")");
}

static node *primary(P *p) {
    tok *t = next(p);
    node *n;
    switch (t->k) {
    case K_STR: /* adjacent string literals concatenate */
        n = mk(p, N_LIT, t->line);
        n->lit = v_str(t->s, t->n);
        while (peek(p)->k == K_STR) {
            sbuf b = {0};
            sb_add(p->j, &b, n->lit.s, (size_t)n->lit.i);
            tok *u = next(p);
            sb_add(p->j, &b, u->s, u->n);
            n->lit = sb_val(p->j, &b);
        }
        return n;
    case K_INT:
        n = mk(p, N_LIT, t->line);
        n->lit = v_int(strtoll(t->s, NULL, 10));
        if (t->n > 18)
            fail(p->j, FT_ERR_UNSUPPORTED, t->line, "integer literal %s is too large", t->s);
        return n;
    case K_FLOAT:
        n = mk(p, N_LIT, t->line);
        n->lit = v_float(strtod(t->s, NULL));
        return n;
    case K_NAME:
        n = mk(p, N_LIT, t->line);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True"))
            n->lit = v_bool(1);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False"))
            n->lit = v_bool(0);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None"))
            n->lit = v_none();
        else
            n->k = N_NAME, n->s = t->s;
        return n;
    case K_OP:
        if (!strcmp(t->s, "(")) {
            if (is_op(p, ")")) { /* () */
                next(p);
                n = mk(p, N_LIST, t->line);
                n->flag = 1;
                return n;
            }
            n = expr(p);
            if (is_op(p, ",")) { /* tuple: (a,) (a, b) */
                node *l = mk(p, N_LIST, t->line);
                l->flag = 1;
                add(p, l, child(p, l, n));
                while (is_op(p, ",")) {
                    next(p);
                    if (is_op(p, ")")) break;
                    add(p, l, child(p, l, expr(p)));
                }
                n = l;
            }
            expect_op(p, ")");
            return n;
        }
        if (!strcmp(t->s, "[")) {
            n = mk(p, N_LIST, t->line);
            while (!is_op(p, "]")) {
                add(p, n, child(p, n, expr(p)));
                if (!is_op(p, ",")) break;
                next(p);
            }
            expect_op(p, "]");
            return n;
        }
        if (!strcmp(t->s, "{")) {
            n = mk(p, N_DICT, t->line);
            while (!is_op(p, "}")) {
                add(p, n, child(p, n, expr(p)));
                expect_op(p, ":");
                add(p, n, child(p, n, expr(p)));
                if (!is_op(p, ",")) break;
                next(p);
            }
            expect_op(p, "}");
            return n;
        }
        break;
    default: break;
    }
    fail(p->j, FT_ERR_FORMAT, t->line, "unexpected '%s' in an expression", tok_desc(t));
}

static node *postfix(P *p) {
    node *n = primary(p);
    for (;;) {
        int line = peek(p)->line;
        if (is_op(p, ".")) {
            next(p);
            node *m = mk(p, N_ATTR, line);
            m->a = child(p, m, n);
            tok *t = next(p);
            if (t->k == K_NAME)
                m->s = t->s;
            else if (t->k == K_INT)
                m->k = N_INDEX, m->b = mk(p, N_LIT, line), m->b->lit = v_int(atoll(t->s));
            else
                fail(p->j, FT_ERR_FORMAT, line, "expected an attribute name after '.', found '%s'",
                     tok_desc(t));
            n = m;
        } else if (is_op(p, "[")) {
            next(p);
            node *e[3] = {0};
            int colons = 0;
            for (;;) {
                if (is_op(p, ":")) {
                    if (++colons > 2)
                        fail(p->j, FT_ERR_FORMAT, line, "a slice has at most two ':'");
                    next(p);
                    continue;
                }
                if (is_op(p, "]")) break;
                if (e[colons])
                    fail(p->j, FT_ERR_FORMAT, line, "expected ':' or ']' in a subscript");
                e[colons] = expr(p);
            }
            next(p);
            node *m = mk(p, colons ? N_SLICE : N_INDEX, line);
            m->a = child(p, m, n), m->b = e[0], m->c = e[1], m->d = e[2];
            for (int k = 0; k < 3; k++)
                if (e[k]) child(p, m, e[k]);
            if (!colons && !e[0]) fail(p->j, FT_ERR_FORMAT, line, "empty subscript []");
            n = m;
        } else if (is_op(p, "(")) {
            node *m = mk(p, N_CALL, line);
            m->a = child(p, m, n);
            call_args(p, m);
            n = m;
        } else {
            return n;
        }
    }
}

/* the filters and tests after `n`: n | f(a) | g, n is [not] t(a) */
static node *filtered(P *p, node *n) {
    for (;;) {
        int line = peek(p)->line;
        if (is_op(p, "|")) {
            next(p);
            node *m = mk(p, N_FILTER, line);
            m->a = child(p, m, n), m->s = expect_name(p);
            if (is_op(p, "(")) call_args(p, m);
            n = m;
        } else if (is_name(p, "is")) {
            next(p);
            node *m = mk(p, N_TEST, line);
            m->a = child(p, m, n);
            if (is_name(p, "not")) next(p), m->flag = 1;
            tok *t = next(p);
            if (t->k == K_NAME)
                m->s = t->s;
            else if (t->k == K_OP && (!strcmp(t->s, "==") || !strcmp(t->s, "!=") ||
                                      !strcmp(t->s, "<") || !strcmp(t->s, ">")))
                m->s = t->s;
            else
                fail(p->j, FT_ERR_FORMAT, line, "expected a test name after 'is'");
            if (is_op(p, "("))
                call_args(p, m);
            else if (peek(p)->k == K_STR || peek(p)->k == K_INT || peek(p)->k == K_FLOAT ||
                     (peek(p)->k == K_NAME && strcmp(peek(p)->s, "and") &&
                      strcmp(peek(p)->s, "or") && strcmp(peek(p)->s, "else") &&
                      strcmp(peek(p)->s, "if") && strcmp(peek(p)->s, "in") &&
                      strcmp(peek(p)->s, "is")))
                add(p, m, child(p, m, postfix(p))); /* `x is divisibleby 3`, `x is sameas none` */
            n = m;
        } else {
            return n;
        }
    }
}

/* Filters and tests bind tighter than any binary operator but looser than unary -/+, whose
 * operand takes none, as Jinja2 parses them: -3|abs is abs(-3), - -x|f is f(--x). */
static node *unary(P *p, int with_filter) {
    node *n;
    if (is_op(p, "-") || is_op(p, "+")) {
        tok *t = next(p);
        n = mk(p, N_NEG, t->line);
        deeper(p);
        n->a = child(p, n, unary(p, 0));
        p->j->depth--;
        n->flag = t->s[0] == '+';
    } else {
        n = postfix(p);
    }
    return with_filter ? filtered(p, n) : n;
}

static node *bin(P *p, int line, const char *op, node *a, node *b) {
    node *n = mk(p, N_BIN, line);
    n->s = op, n->a = child(p, n, a), n->b = child(p, n, b);
    return n;
}

static node *power(P *p) {
    node *n = unary(p, 1);
    while (is_op(p, "**")) {
        int l = next(p)->line;
        n = bin(p, l, "**", n, unary(p, 1));
    }
    return n;
}
static node *mul(P *p) {
    node *n = power(p);
    while (is_op(p, "*") || is_op(p, "/") || is_op(p, "//") || is_op(p, "%")) {
        tok *t = next(p);
        n = bin(p, t->line, t->s, n, power(p));
    }
    return n;
}
static node *concat(P *p) {
    node *n = mul(p);
    while (is_op(p, "~")) {
        int l = next(p)->line;
        n = bin(p, l, "~", n, mul(p));
    }
    return n;
}
static node *add_(P *p) {
    node *n = concat(p);
    while (is_op(p, "+") || is_op(p, "-")) {
        tok *t = next(p);
        n = bin(p, t->line, t->s, n, concat(p));
    }
    return n;
}
/* comparisons chain as in Python: a < b < c is (a < b) and (b < c) */
static node *compare(P *p) {
    node *left = add_(p), *chain = NULL;
    for (;;) {
        tok *t = peek(p);
        const char *op = NULL;
        if (t->k == K_OP && (!strcmp(t->s, "==") || !strcmp(t->s, "!=") || !strcmp(t->s, "<") ||
                             !strcmp(t->s, ">") || !strcmp(t->s, "<=") || !strcmp(t->s, ">=")))
            op = t->s, next(p);
        else if (is_name(p, "in"))
            op = "in", next(p);
        else if (is_name(p, "not") && p->L->t[p->L->pos + 1].k == K_NAME &&
                 !strcmp(p->L->t[p->L->pos + 1].s, "in"))
            op = "not in", next(p), next(p);
        if (!op) return chain ? chain : left;
        node *right = add_(p), *c = bin(p, t->line, op, left, right);
        if (chain) {
            node *a = mk(p, N_AND, t->line);
            a->a = child(p, a, chain), a->b = child(p, a, c), c = a;
        }
        chain = c, left = right;
    }
}
static node *not_(P *p) {
    if (is_name(p, "not")) {
        int l = next(p)->line;
        node *n = mk(p, N_NOT, l);
        deeper(p);
        n->a = child(p, n, not_(p));
        p->j->depth--;
        return n;
    }
    return compare(p);
}
static node *and_(P *p) {
    node *n = not_(p);
    while (is_name(p, "and")) {
        node *m = mk(p, N_AND, next(p)->line);
        m->a = child(p, m, n), m->b = child(p, m, not_(p));
        n = m;
    }
    return n;
}
static node *or_(P *p) {
    node *n = and_(p);
    while (is_name(p, "or")) {
        node *m = mk(p, N_OR, next(p)->line);
        m->a = child(p, m, n), m->b = child(p, m, and_(p));
        n = m;
    }
    return n;
}
static node *expr(P *p) {
    deeper(p);
    node *n = or_(p);
    if (is_name(p, "if")) { /* a if cond [else b] */
        node *m = mk(p, N_COND, next(p)->line);
        m->a = child(p, m, n), m->b = child(p, m, or_(p));
        if (is_name(p, "else")) next(p), m->c = child(p, m, expr(p));
        n = m;
    }
    p->j->depth--;
    return n;
}

/* statements up to {% <one of stop> ...; returns the stop word met (the tag's '{%' and name
 * consumed) or NULL at the end of the template */
static const char *block(P *p, node *into, const char *const *stop);

static int one_of(const char *s, const char *const *set) {
    for (; set && *set; set++)
        if (!strcmp(s, *set)) return 1;
    return 0;
}

static node *stmt(P *p, tok *open) {
    J *j = p->j;
    tok *t = peek(p);
    if (t->k != K_NAME) fail(j, FT_ERR_FORMAT, t->line, "expected a statement name after {%%");
    const char *w = next(p)->s;
    int line = t->line;
    if (++j->depth > MAX_DEPTH) fail(j, FT_ERR_UNSUPPORTED, line, "blocks nested too deeply");
    node *n;
    if (!strcmp(w, "if")) {
        n = mk(p, N_IF, line);
        node *cur = n;
        cur->a = expr(p);
        expect_k(p, K_CSTMT, "%}");
        for (;;) {
            cur->b = mk(p, N_BLOCK, line);
            static const char *const st[] = {"elif", "else", "endif", NULL};
            const char *e = block(p, cur->b, st);
            if (!e) fail(j, FT_ERR_FORMAT, line, "{%% if %%} is never closed by {%% endif %%}");
            if (!strcmp(e, "endif")) break;
            if (!strcmp(e, "elif")) {
                node *m = mk(p, N_IF, peek(p)->line);
                m->a = expr(p);
                cur->c = m, cur = m;
                expect_k(p, K_CSTMT, "%}");
                continue;
            }
            expect_k(p, K_CSTMT, "%}");
            cur->c = mk(p, N_BLOCK, line);
            static const char *const st2[] = {"endif", NULL};
            if (!block(p, cur->c, st2))
                fail(j, FT_ERR_FORMAT, line, "{%% if %%} is never closed by {%% endif %%}");
            break;
        }
    } else if (!strcmp(w, "for")) {
        n = mk(p, N_FOR, line);
        n->s = expect_name(p);
        if (is_op(p, ",")) next(p), n->s2 = expect_name(p);
        if (!is_name(p, "in")) fail(j, FT_ERR_FORMAT, line, "expected 'in' in {%% for %%}");
        next(p);
        n->a = or_(p); /* not expr(): `if` here filters the loop */
        if (is_name(p, "if")) next(p), n->d = expr(p);
        if (is_name(p, "recursive"))
            fail(j, FT_ERR_UNSUPPORTED, line, "recursive for loops are not supported");
        expect_k(p, K_CSTMT, "%}");
        n->b = mk(p, N_BLOCK, line);
        static const char *const st[] = {"else", "endfor", NULL};
        p->loops++;
        const char *e = block(p, n->b, st);
        p->loops--;
        if (!e) fail(j, FT_ERR_FORMAT, line, "{%% for %%} is never closed by {%% endfor %%}");
        if (!strcmp(e, "else")) {
            expect_k(p, K_CSTMT, "%}");
            n->c = mk(p, N_BLOCK, line);
            static const char *const st2[] = {"endfor", NULL};
            if (!block(p, n->c, st2))
                fail(j, FT_ERR_FORMAT, line, "{%% for %%} is never closed by {%% endfor %%}");
        }
    } else if (!strcmp(w, "set")) {
        n = mk(p, N_SET, line);
        n->a = postfix(p);
        if (n->a->k != N_NAME && !(n->a->k == N_ATTR && n->a->a->k == N_NAME))
            fail(j, FT_ERR_UNSUPPORTED, line, "{%% set %%} assigns a name or name.attribute only");
        if (is_op(p, "=")) {
            next(p);
            n->b = expr(p);
            if (is_op(p, ","))
                fail(j, FT_ERR_UNSUPPORTED, line,
                     "tuple assignment in {%% set %%} is not supported");
        } else {
            expect_k(p, K_CSTMT, "%}");
            n->c = mk(p, N_BLOCK, line);
            static const char *const st[] = {"endset", NULL};
            if (!block(p, n->c, st))
                fail(j, FT_ERR_FORMAT, line, "{%% set %%} block is never closed by {%% endset %%}");
        }
    } else if (!strcmp(w, "macro")) {
        n = mk(p, N_MACRO, line);
        n->s = expect_name(p);
        expect_op(p, "(");
        node *params = mk(p, N_LIST, line);
        while (!is_op(p, ")")) {
            node *a = mk(p, N_NAME, peek(p)->line);
            a->s = expect_name(p);
            if (is_op(p, "=")) next(p), a->a = expr(p);
            add(p, params, a);
            if (!is_op(p, ",")) break;
            next(p);
        }
        expect_op(p, ")");
        n->a = params;
        expect_k(p, K_CSTMT, "%}");
        n->b = mk(p, N_BLOCK, line);
        static const char *const st[] = {"endmacro", NULL};
        int loops = p->loops;
        p->loops = 0;
        const char *e = block(p, n->b, st);
        p->loops = loops;
        if (!e) fail(j, FT_ERR_FORMAT, line, "{%% macro %%} is never closed by {%% endmacro %%}");
    } else if (!strcmp(w,
                       "generation")) { /* transformers' assistant-mask marker: renders its body */
        n = mk(p, N_BLOCK, line);
        expect_k(p, K_CSTMT, "%}");
        static const char *const st[] = {"endgeneration", NULL};
        if (!block(p, n, st))
            fail(j, FT_ERR_FORMAT, line,
                 "{%% generation %%} is never closed by {%% endgeneration %%}");
    } else if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        n = mk(p, w[0] == 'b' ? N_BREAK : N_CONTINUE, line);
        if (!p->loops) fail(j, FT_ERR_FORMAT, line, "{%% %s %%} outside a for loop", w);
    } else {
        fail(j, FT_ERR_UNSUPPORTED, line, "{%% %s %%} is not supported", w);
    }
    (void)open;
    expect_k(p, K_CSTMT, "%}");
    j->depth--;
    return n;
}

static const char *block(P *p, node *into, const char *const *stop) {
    for (;;) {
        tok *t = next(p);
        switch (t->k) {
        case K_EOF: return NULL;
        case K_COMMENT: break;
        case K_TEXT: {
            node *n = mk(p, N_TEXT, t->line);
            n->s = t->s, n->n = t->n;
            add(p, into, n);
            break;
        }
        case K_OEXPR: {
            node *n = mk(p, N_OUT, t->line);
            n->a = expr(p);
            expect_k(p, K_CEXPR, "}}");
            add(p, into, n);
            break;
        }
        case K_OSTMT: {
            tok *w = peek(p);
            if (w->k == K_NAME && one_of(w->s, stop)) return next(p)->s;
            if (w->k == K_NAME &&
                (!strncmp(w->s, "end", 3) || !strcmp(w->s, "elif") || !strcmp(w->s, "else")))
                fail(p->j, FT_ERR_FORMAT, w->line, "unexpected {%% %s %%}", w->s);
            add(p, into, stmt(p, t));
            break;
        }
        default: fail(p->j, FT_ERR_FORMAT, t->line, "unexpected '%s'", tok_desc(t));
        }
    }
}

struct ft_jinja {
    blk *arena;
    node *root;
};

ft_status ft_jinja_parse(const char *src, size_t len, ft_jinja **out) {
    *out = NULL;
    J *j = calloc(1, sizeof *j);
    if (!j) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    if (setjmp(j->jb)) {
        ft_status st = ft_errorf(j->code, "%s", j->msg);
        arena_free(j->head);
        free(j);
        return st;
    }
    if (len > MAX_SRC) fail(j, FT_ERR_UNSUPPORTED, 0, "template is larger than %d bytes", MAX_SRC);
    if (memchr(src, 0, len)) fail(j, FT_ERR_FORMAT, 0, "template holds a NUL byte");
    lex L = {.j = j};
    tokenize(&L, src, len);
    P p = {j, &L, 0};
    node *root = mk(&p, N_BLOCK, 1);
    block(&p, root, NULL);
    ft_jinja *t = malloc(sizeof *t);
    if (!t) fail(j, FT_ERR_NOMEM, 0, "out of memory");
    t->arena = j->head, t->root = root;
    free(j);
    *out = t;
    return FT_OK;
}

void ft_jinja_free(ft_jinja *t) {
    if (!t) return;
    arena_free(t->arena);
    free(t);
}

/* ---------------------------------------------------------------- evaluator ---- */

typedef struct env {
    struct env *up;
    val vars; /* T_DICT */
} env;

typedef struct {
    J *j;
    sbuf *out;
    int64_t now;
    int brk;  /* 1 break, 2 continue pending */
    int nest; /* eval and exec frames on the stack */
} R;

typedef struct {
    node *def;
    env *scope;
} macro;

/* ---------------------------------------------------------------- printing ---- */

/* UTF-8 decoding for Python's per-code-point string functions: the code point at s[*i] (n bytes),
 * *i moved past it; a byte that does not start a valid sequence (overlong, surrogate, past
 * U+10FFFF, truncated) comes back as 0x110000 + the byte, which no property holds and put_cp
 * writes back as that byte */
static uint32_t u8dec(const char *s, int64_t n, int64_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    int64_t left = n - *i;
    int w = u[0] < 0x80                   ? 1
            : u[0] >= 0xC2 && u[0] < 0xE0 ? 2
            : u[0] >= 0xE0 && u[0] < 0xF0 ? 3
            : u[0] >= 0xF0 && u[0] < 0xF5 ? 4
                                          : 0;
    uint32_t c = w == 1 ? u[0] : w == 2 ? u[0] & 0x1Fu : w == 3 ? u[0] & 0x0Fu : u[0] & 0x07u;
    int ok = w > 0 && w <= left;
    for (int k = 1; ok && k < w; k++) {
        ok = (u[k] & 0xC0) == 0x80;
        c = c << 6 | (u[k] & 0x3Fu);
    }
    if (ok && w == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ok = 0;
    if (ok && w == 4 && (c < 0x10000 || c > 0x10FFFF)) ok = 0;
    if (!ok) {
        (*i)++;
        return 0x110000u + u[0];
    }
    *i += w;
    return c;
}
static void put_cp(J *j, sbuf *b, uint32_t c) {
    if (c > 0x10FFFF) {
        char byte = (char)(c - 0x110000u);
        sb_add(j, b, &byte, 1);
    } else {
        put_utf8(j, b, c, 0);
    }
}
/* the code points of string s into an arena array, their count in *n */
static uint32_t *u8decode(J *j, val s, int64_t *n) {
    uint32_t *c = alloc(j, sizeof *c * (size_t)(s.i + 1));
    *n = 0;
    for (int64_t i = 0; i < s.i;)
        c[(*n)++] = u8dec(s.s, s.i, &i);
    return c;
}

/* Python's repr of a finite or not float (float_repr_style 'short'): the shortest digits that
 * read back as f, positional with at least one decimal for 1e-4 <= |f| < 1e16, else d.ddde+XX
 * (two exponent digits at least); inf, -inf, nan, -0.0 */
static void py_float(char *o, size_t cap, double f) {
    if (isnan(f) || isinf(f) || f == 0) {
        snprintf(o, cap, "%s",
                 isnan(f)     ? "nan"
                 : isinf(f)   ? (f > 0 ? "inf" : "-inf")
                 : signbit(f) ? "-0.0"
                              : "0.0");
        return;
    }
    char d[40], e[48]; /* the digits of fabs(f) = 0.d[0]d[1]... * 10^decpt */
    int nd = 0, decpt = 0;
    double x = fabs(f);
    for (int p = 1; p <= 17 && !nd; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x); /* x rounded to p digits */
        int k = 0;
        for (const char *c = e; *c != 'e'; c++)
            if (*c != '.') d[k++] = *c;
        decpt = atoi(strchr(e, 'e') + 1) + 1;
        if (strtod(e, NULL) == x) {
            nd = p;
            break;
        }
        /* the nearest p digits miss x: the neighbour on x's other side may not (x next to a
         * power of two, whose gap below is half the one above) */
        int up = strtod(e, NULL) < x, dp = decpt, i = p - 1;
        if (up) {
            while (i >= 0 && d[i] == '9')
                d[i--] = '0';
            if (i >= 0)
                d[i]++;
            else
                d[0] = '1', dp++;
        } else {
            while (i >= 0 && d[i] == '0')
                d[i--] = '9';
            d[i]--;
            if (d[0] == '0') {
                memset(d, '9', (size_t)p);
                dp--;
            }
        }
        snprintf(e, sizeof e, "%c.%.*se%d", d[0], p - 1, d + 1, dp - 1);
        if (strtod(e, NULL) == x) nd = p, decpt = dp;
    }
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    char *w = o; /* at most 25 bytes: -0.000ddddddddddddddddd, -d.dddddddddddddddde-308 */
    FT_ASSERT(cap >= 32);
    if (f < 0) *w++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *w++ = '0', *w++ = '.';
            for (int i = 0; i < -decpt; i++)
                *w++ = '0';
            memcpy(w, d, (size_t)nd), w += nd;
        } else {
            for (int i = 0; i < decpt; i++)
                *w++ = i < nd ? d[i] : '0';
            *w++ = '.';
            if (decpt >= nd)
                *w++ = '0';
            else
                memcpy(w, d + decpt, (size_t)(nd - decpt)), w += nd - decpt;
        }
        *w = 0;
    } else {
        snprintf(w, cap - (size_t)(w - o), "%c%s%.*se%c%02d", d[0], nd > 1 ? "." : "", nd - 1,
                 d + 1, decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
    }
}

/* Python's repr of a string: in single quotes unless it holds ' and no ", with \\ \t \n \r and
 * the quote escaped, other code points below U+0020, U+007F and the ones str.isprintable()
 * refuses as \xhh, \uhhhh or \Uhhhhhhhh (a byte that is not UTF-8, which Python never holds,
 * as surrogateescape would show it: \udcXX) */
static void py_repr_str(J *j, sbuf *b, const char *s, int64_t n) {
    int sq = memchr(s, '\'', (size_t)n) != NULL, dq = memchr(s, '"', (size_t)n) != NULL;
    char q = sq && !dq ? '"' : '\'', e[16];
    sb_add(j, b, &q, 1);
    for (int64_t i = 0; i < n;) {
        int64_t at = i;
        uint32_t c = u8dec(s, n, &i);
        const char *r = c == '\t' ? "\\t" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : NULL;
        if (r) {
            sb_cs(j, b, r);
        } else if (c == (uint32_t)q || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            sb_add(j, b, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(e, sizeof e, "\\x%02x", c);
            sb_cs(j, b, e);
        } else if (c < 0x7F || (c <= 0x10FFFF && pyu_is_printable(c))) {
            sb_add(j, b, s + at, (size_t)(i - at));
        } else {
            snprintf(e, sizeof e,
                     c > 0x10FFFF  ? "\\udc%02x"
                     : c <= 0xFF   ? "\\x%02x"
                     : c <= 0xFFFF ? "\\u%04x"
                                   : "\\U%08x",
                     c > 0x10FFFF ? c - 0x110000u : c);
            sb_cs(j, b, e);
        }
    }
    sb_add(j, b, &q, 1);
}

static void py_repr(J *j, sbuf *b, val v, int depth);

/* Python's str() of a value, what {{ v }}, ~, join and the string filters print: None, True,
 * False, ints, floats as repr, strings as they are, undefined as nothing, containers as repr */
static void to_text(J *j, sbuf *b, val v) {
    char num[48];
    switch (v.t) {
    case T_UNDEF: return;
    case T_NONE: sb_cs(j, b, "None"); return;
    case T_BOOL: sb_cs(j, b, v.i ? "True" : "False"); return;
    case T_INT:
        snprintf(num, sizeof num, "%lld", (long long)v.i);
        sb_cs(j, b, num);
        return;
    case T_FLOAT:
        py_float(num, sizeof num, v.f);
        sb_cs(j, b, num);
        return;
    case T_STR: sb_add(j, b, v.s, (size_t)v.i); return;
    default: py_repr(j, b, v, 0);
    }
}

/* Python's repr(): lists [a, b], tuples (a, b) and (a,), dict views dict_keys([...]), dicts
 * {'k': v} in insertion order, Jinja2's Undefined, Namespace and Macro as they print */
static void py_repr(J *j, sbuf *b, val v, int depth) {
    if (depth > MAX_DEPTH) fail(j, FT_ERR_UNSUPPORTED, 0, "value nested too deeply to print");
    switch (v.t) {
    case T_UNDEF: sb_cs(j, b, "Undefined"); return;
    case T_STR: py_repr_str(j, b, v.s, v.i); return;
    case T_MACRO:
        sb_cs(j, b, "<Macro ");
        py_repr_str(j, b, ((macro *)v.p)->def->s, (int64_t)strlen(((macro *)v.p)->def->s));
        sb_cs(j, b, ">");
        return;
    case T_LIST: {
        static const char *open[] = {"[", "(", "dict_keys([", "dict_values([", "dict_items(["},
                          *close[] = {"]", ")", "])", "])", "])"};
        list *l = v.p;
        sb_cs(j, b, open[l->kind]);
        for (int i = 0; i < l->n; i++) {
            if (i) sb_cs(j, b, ", ");
            py_repr(j, b, l->it[i], depth + 1);
        }
        if (l->kind == LK_TUPLE && l->n == 1) sb_cs(j, b, ",");
        sb_cs(j, b, close[l->kind]);
        return;
    }
    case T_DICT:
    case T_NS: {
        dict *d = v.p;
        sb_cs(j, b, v.t == T_NS ? "<Namespace {" : "{");
        for (int i = 0; i < d->n; i++) {
            if (i) sb_cs(j, b, ", ");
            py_repr_str(j, b, d->k[i], (int64_t)strlen(d->k[i]));
            sb_cs(j, b, ": ");
            py_repr(j, b, d->v[i], depth + 1);
        }
        sb_cs(j, b, v.t == T_NS ? "}>" : "}");
        return;
    }
    default: to_text(j, b, v);
    }
}

static val str_of(J *j, val v) {
    if (v.t == T_STR) return v;
    sbuf b = {0};
    to_text(j, &b, v);
    return sb_val(j, &b);
}

static val eval(R *r, env *e, node *n);
static void exec(R *r, env *e, node *n);

static env *env_new(R *r, env *up) {
    env *e = alloc(r->j, sizeof *e);
    e->up = up, e->vars = v_dict(r->j, T_DICT);
    return e;
}
static val lookup(env *e, const char *k) {
    for (; e; e = e->up) {
        val *v = d_find(e->vars, k);
        if (v) return *v;
    }
    return UNDEF;
}

static void step(R *r, int line) {
    if (++r->j->steps > MAX_STEPS)
        fail(r->j, FT_ERR_UNSUPPORTED, line, "template takes more than %d steps", MAX_STEPS);
}

/* one more eval or exec frame (or filter, for map's); the caller undoes it with r->nest-- */
static void enter(R *r, int line) {
    if (++r->nest > MAX_NEST)
        fail(r->j, FT_ERR_UNSUPPORTED, line, "rendering nests deeper than %d levels", MAX_NEST);
}

/* UTF-8 code point count and byte offset of code point `cp` */
static int64_t u8len(val s) {
    int64_t n = 0;
    for (int64_t i = 0; i < s.i; i++)
        n += ((unsigned char)s.s[i] & 0xC0) != 0x80;
    return n;
}
static int64_t u8off(val s, int64_t cp) {
    int64_t i = 0;
    for (; i < s.i; i++)
        if (((unsigned char)s.s[i] & 0xC0) != 0x80 && cp-- == 0) return i;
    return s.i;
}

/* a == b, for the expression at `line`; `depth` is how deep in a and b this compares */
static int eq(J *j, val a, val b, int line, int depth) {
    if (depth > MAX_DEPTH) fail(j, FT_ERR_UNSUPPORTED, line, "values nested too deeply to compare");
    if ((a.t == T_INT || a.t == T_FLOAT) && (b.t == T_INT || b.t == T_FLOAT))
        return (a.t == T_INT ? (double)a.i : a.f) == (b.t == T_INT ? (double)b.i : b.f);
    if (a.t != b.t) return 0;
    switch (a.t) {
    case T_UNDEF:
    case T_NONE: return 1;
    case T_BOOL: return a.i == b.i;
    case T_STR: return a.i == b.i && !memcmp(a.s, b.s, (size_t)a.i);
    case T_LIST: {
        list *x = a.p, *y = b.p;
        if (x->n != y->n || x->kind != y->kind) return 0;
        for (int i = 0; i < x->n; i++)
            if (!eq(j, x->it[i], y->it[i], line, depth + 1)) return 0;
        return 1;
    }
    case T_DICT: {
        dict *x = a.p, *y = b.p;
        if (x->n != y->n) return 0;
        for (int i = 0; i < x->n; i++) {
            val *w = d_find(b, x->k[i]);
            if (!w || !eq(j, x->v[i], *w, line, depth + 1)) return 0;
        }
        return 1;
    }
    default: return a.p == b.p;
    }
}

static const char *key_of(R *r, val k, int line) {
    if (k.t != T_STR)
        fail(r->j, FT_ERR_UNSUPPORTED, line, "dict keys must be strings, not %s", tname[k.t]);
    return k.s;
}

static int contains(R *r, val hay, val x, int line) {
    if (hay.t == T_STR) {
        if (x.t != T_STR)
            fail(r->j, FT_ERR_FORMAT, line, "'in <string>' needs a string on the left, not %s",
                 tname[x.t]);
        if (!x.i) return 1;
        for (int64_t i = 0; i + x.i <= hay.i; i++)
            if (!memcmp(hay.s + i, x.s, (size_t)x.i)) return 1;
        return 0;
    }
    if (hay.t == T_LIST) {
        list *l = hay.p;
        for (int i = 0; i < l->n; i++)
            if (eq(r->j, l->it[i], x, line, 0)) return 1;
        return 0;
    }
    if (hay.t == T_DICT) return x.t == T_STR && d_find(hay, x.s) != NULL;
    if (hay.t == T_UNDEF) return 0;
    fail(r->j, FT_ERR_FORMAT, line, "'in' needs a string, list or dict on the right, not %s",
         tname[hay.t]);
}

static double num(R *r, val v, const char *op, int line) {
    if (v.t == T_INT || v.t == T_BOOL) return (double)v.i;
    if (v.t == T_FLOAT) return v.f;
    fail(r->j, FT_ERR_FORMAT, line, "operator %s needs numbers, not %s", op, tname[v.t]);
}

static val binop(R *r, const char *op, val a, val b, int line) {
    J *j = r->j;
    if (!strcmp(op, "==")) return v_bool(eq(j, a, b, line, 0));
    if (!strcmp(op, "!=")) return v_bool(!eq(j, a, b, line, 0));
    if (!strcmp(op, "in")) return v_bool(contains(r, b, a, line));
    if (!strcmp(op, "not in")) return v_bool(!contains(r, b, a, line));
    if (!strcmp(op, "~")) {
        sbuf s = {0};
        to_text(j, &s, a), to_text(j, &s, b);
        return sb_val(j, &s);
    }
    if (op[0] == '<' || op[0] == '>') {
        int c;
        if (a.t == T_STR && b.t == T_STR) {
            size_t m = (size_t)(a.i < b.i ? a.i : b.i);
            c = memcmp(a.s, b.s, m);
            if (!c) c = (a.i > b.i) - (a.i < b.i);
        } else {
            double x = num(r, a, op, line), y = num(r, b, op, line);
            c = (x > y) - (x < y);
        }
        if (!strcmp(op, "<")) return v_bool(c < 0);
        if (!strcmp(op, ">")) return v_bool(c > 0);
        if (!strcmp(op, "<=")) return v_bool(c <= 0);
        return v_bool(c >= 0);
    }
    if (!strcmp(op, "+")) {
        if (a.t == T_LIST && b.t == T_LIST) {
            int ka = ((list *)a.p)->kind, kb = ((list *)b.p)->kind;
            if (ka != kb || ka > LK_TUPLE) /* Python's TypeError */
                fail(j, FT_ERR_FORMAT, line, "'+' of a %s and a %s", lkname[ka], lkname[kb]);
            val l = v_list_of(j, ka);
            for (int i = 0; i < ((list *)a.p)->n; i++)
                l_push(j, l, ((list *)a.p)->it[i]);
            for (int i = 0; i < ((list *)b.p)->n; i++)
                l_push(j, l, ((list *)b.p)->it[i]);
            return l;
        }
        if (a.t == T_STR && b.t == T_STR) {
            sbuf s = {0};
            sb_add(j, &s, a.s, (size_t)a.i), sb_add(j, &s, b.s, (size_t)b.i);
            return sb_val(j, &s);
        }
        if (a.t == T_STR || b.t == T_STR) /* Python's TypeError; ~ converts */
            fail(j, FT_ERR_FORMAT, line, "'+' of %s and %s (use ~ to concatenate as text)",
                 tname[a.t], tname[b.t]);
    }
    if (!strcmp(op, "*") && ((a.t == T_STR && b.t == T_INT) || (a.t == T_INT && b.t == T_STR))) {
        val s = a.t == T_STR ? a : b;
        int64_t k = a.t == T_INT ? a.i : b.i;
        if (k > 0 && s.i * k > (int64_t)(MAX_MEM / 4))
            fail(j, FT_ERR_NOMEM, line, "string repetition too large");
        sbuf o = {0};
        for (int64_t i = 0; i < k; i++)
            sb_add(j, &o, s.s, (size_t)s.i);
        return sb_val(j, &o);
    }
    int ints = (a.t == T_INT || a.t == T_BOOL) && (b.t == T_INT || b.t == T_BOOL);
    double x = num(r, a, op, line), y = num(r, b, op, line);
    if (!strcmp(op, "/")) {
        if (y == 0) fail(j, FT_ERR_FORMAT, line, "division by zero");
        return v_float(x / y);
    }
    if (!strcmp(op, "//") || !strcmp(op, "%")) {
        if (y == 0) fail(j, FT_ERR_FORMAT, line, "division by zero");
        if (ints) {
            int64_t q = a.i / b.i, m = a.i % b.i;
            if (m && ((m < 0) != (b.i < 0))) q--, m += b.i;
            return v_int(op[0] == '%' ? m : q);
        }
        double q = floor(x / y);
        return v_float(op[0] == '%' ? x - q * y : q);
    }
    if (ints) {
        int64_t o;
        int ovf = op[0] == '+'       ? __builtin_add_overflow(a.i, b.i, &o)
                  : op[0] == '-'     ? __builtin_sub_overflow(a.i, b.i, &o)
                  : !strcmp(op, "*") ? __builtin_mul_overflow(a.i, b.i, &o)
                                     : -1;
        if (ovf == 0) return v_int(o);
        if (ovf == 1) fail(j, FT_ERR_UNSUPPORTED, line, "integer overflow in %s", op);
    }
    if (ints && !strcmp(op, "**") &&
        b.i >= 0) { /* exact, by squaring; Python's ints have no bound */
        int64_t o = 1, base = a.i;
        int ovf = 0;
        for (int64_t k = b.i; k; k >>= 1) {
            if (k & 1) ovf |= __builtin_mul_overflow(o, base, &o);
            if (k > 1) ovf |= __builtin_mul_overflow(base, base, &base);
        }
        if (ovf) fail(j, FT_ERR_UNSUPPORTED, line, "integer overflow in **");
        return v_int(o);
    }
    if (op[0] == '+') return v_float(x + y);
    if (op[0] == '-') return v_float(x - y);
    if (!strcmp(op, "*")) return v_float(x * y);
    /* ** as Python's float_pow (also an int to a negative power): its ZeroDivisionError and
     * OverflowError are errors, not inf; a negative number to a fractional power is complex */
    if (x == 0 && y < 0) fail(j, FT_ERR_FORMAT, line, "0.0 cannot be raised to a negative power");
    if (x < 0 && isfinite(x) && isfinite(y) && y != floor(y))
        fail(j, FT_ERR_UNSUPPORTED, line,
             "** of a negative number to a fractional power (a complex number) is not supported");
    double p = pow(x, y);
    if (isinf(p) && isfinite(x) && isfinite(y))
        fail(j, FT_ERR_FORMAT, line, "numerical result out of range in **");
    return v_float(p);
}

static int64_t as_int(R *r, val v, const char *what, int line) {
    if (v.t == T_INT || v.t == T_BOOL) return v.i;
    fail(r->j, FT_ERR_FORMAT, line, "%s must be an integer, not %s", what, tname[v.t]);
}

static val subscript(R *r, val o, val k, int line) {
    if (o.t == T_LIST && ((list *)o.p)->kind > LK_TUPLE)
        fail(r->j, FT_ERR_FORMAT, line, "'%s' object is not subscriptable",
             lkname[((list *)o.p)->kind]);
    if (o.t == T_LIST || o.t == T_STR) {
        if (k.t != T_INT) return UNDEF;
        int64_t n = o.t == T_LIST ? ((list *)o.p)->n : u8len(o), i = k.i < 0 ? k.i + n : k.i;
        if (i < 0 || i >= n) return UNDEF;
        if (o.t == T_LIST) return ((list *)o.p)->it[i];
        int64_t a = u8off(o, i), b = u8off(o, i + 1);
        return v_str(sdup(r->j, o.s + a, (size_t)(b - a)), (size_t)(b - a));
    }
    if (o.t == T_DICT || o.t == T_NS) {
        if (k.t != T_STR) return UNDEF;
        val *v = d_find(o, k.s);
        return v ? *v : UNDEF;
    }
    if (o.t == T_UNDEF) fail(r->j, FT_ERR_FORMAT, line, "subscript of an undefined value");
    if (o.t == T_NONE) fail(r->j, FT_ERR_FORMAT, line, "subscript of none");
    return UNDEF;
}

static val slice(R *r, val o, node *n, env *e) {
    int line = n->line;
    if (o.t != T_LIST && o.t != T_STR)
        fail(r->j, FT_ERR_FORMAT, line, "cannot slice %s", tname[o.t]);
    int kind = o.t == T_LIST ? ((list *)o.p)->kind : LK_LIST;
    if (kind > LK_TUPLE)
        fail(r->j, FT_ERR_FORMAT, line, "'%s' object is not subscriptable", lkname[kind]);
    int64_t len = o.t == T_LIST ? ((list *)o.p)->n : u8len(o);
    int64_t st = n->d ? as_int(r, eval(r, e, n->d), "slice step", line) : 1;
    if (st == 0) fail(r->j, FT_ERR_FORMAT, line, "slice step cannot be zero");
    int64_t a, b;
    val va = n->b ? eval(r, e, n->b) : v_none(), vb = n->c ? eval(r, e, n->c) : v_none();
    if (va.t == T_NONE)
        a = st > 0 ? 0 : len - 1;
    else {
        a = as_int(r, va, "slice start", line);
        if (a < 0) a += len;
        if (st > 0)
            a = a < 0 ? 0 : a > len ? len : a;
        else
            a = a < -1 ? -1 : a > len - 1 ? len - 1 : a;
    }
    if (vb.t == T_NONE)
        b = st > 0 ? len : -1;
    else {
        b = as_int(r, vb, "slice stop", line);
        if (b < 0) b += len;
        if (st > 0)
            b = b < 0 ? 0 : b > len ? len : b;
        else
            b = b < -1 ? -1 : b > len - 1 ? len - 1 : b;
    }
    val l = v_list_of(r->j, kind);
    sbuf s = {0};
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st) {
        step(r, line);
        if (o.t == T_LIST) {
            l_push(r->j, l, ((list *)o.p)->it[i]);
        } else {
            int64_t x = u8off(o, i), y = u8off(o, i + 1);
            sb_add(r->j, &s, o.s + x, (size_t)(y - x));
        }
    }
    return o.t == T_LIST ? l : sb_val(r->j, &s);
}

/* evaluated arguments of a call / filter / test */
typedef struct {
    val *v;
    int n;
    const char **kn;
    val *kv;
    int nk;
} args;

static args eval_args(R *r, env *e, node *n) {
    args a = {alloc(r->j, sizeof(val) * (size_t)(n->nv + 1)), n->nv, n->kn,
              alloc(r->j, sizeof(val) * (size_t)(n->nk + 1)), n->nk};
    for (int i = 0; i < n->nv; i++)
        a.v[i] = eval(r, e, n->v[i]);
    for (int i = 0; i < n->nk; i++)
        a.kv[i] = eval(r, e, n->kv[i]);
    return a;
}
/* argument `i` or keyword `kw`, else `def` */
static val arg(args *a, int i, const char *kw, val def) {
    if (i < a->n) return a->v[i];
    for (int k = 0; k < a->nk; k++)
        if (kw && !strcmp(a->kn[k], kw)) return a->kv[k];
    return def;
}

/* Python's TypeError for a call to `what` with more than `npos` positional arguments or a keyword
 * not among the space-separated `kws` */
static void takes(R *r, args *a, int line, const char *what, int npos, const char *kws) {
    if (a->n > npos)
        fail(r->j, FT_ERR_FORMAT, line, "%s takes at most %d positional arguments, got %d", what,
             npos, a->n);
    for (int k = 0; k < a->nk; k++) {
        size_t n = strlen(a->kn[k]);
        const char *p = kws;
        while ((p = strstr(p, a->kn[k])) && !((p == kws || p[-1] == ' ') && (!p[n] || p[n] == ' ')))
            p += n;
        if (!p)
            fail(r->j, FT_ERR_FORMAT, line, "%s got an unexpected keyword argument '%s'", what,
                 a->kn[k]);
    }
}

/* Unicode whitespace as JavaScript's trim() sees it */
static int ws_at(const char *s, int64_t n, int64_t i, int back) {
    const unsigned char *u = (const unsigned char *)s;
    if (back) { /* length of the whitespace char ending at i (exclusive) */
        if (i >= 1 && is_ws((char)u[i - 1])) return 1;
        for (int l = 2; l <= 3; l++) {
            if (i - l < 0) continue;
            int w = ws_at(s, n, i - l, 0);
            if (w == l) return l;
        }
        return 0;
    }
    if (i >= n) return 0;
    if (is_ws((char)u[i])) return 1;
    if (u[i] == 0xC2 && i + 1 < n && u[i + 1] == 0xA0) return 2;
    if (i + 2 >= n) return 0;
    unsigned c = (unsigned)u[i] << 16 | (unsigned)u[i + 1] << 8 | u[i + 2];
    if (c == 0xE19A80 || (c >= 0xE28080 && c <= 0xE2808A) || c == 0xE280A8 || c == 0xE280A9 ||
        c == 0xE280AF || c == 0xE2819F || c == 0xE38080 || c == 0xEFBBBF)
        return 3;
    return 0;
}

/* the byte length of the code point at p (n bytes left) if `chars` holds it, else 0 */
static int64_t cp_in(val chars, const char *p, int64_t n) {
    unsigned char c = (unsigned char)p[0];
    int64_t w = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (w > n) w = n;
    for (int64_t i = 0; i + w <= chars.i; i++)
        if (!memcmp(chars.s + i, p, (size_t)w) &&
            (i == 0 || ((unsigned char)chars.s[i] & 0xC0) != 0x80))
            return w;
    return 0;
}

static val strip(R *r, val s, val chars, int left, int right) {
    int64_t a = 0, b = s.i;
    if (chars.t == T_STR) { /* whole code points of `chars` */
        int64_t w;
        while (left && a < b && (w = cp_in(chars, s.s + a, b - a)))
            a += w;
        while (right && b > a) {
            int64_t c = b - 1;
            while (c > a && ((unsigned char)s.s[c] & 0xC0) == 0x80)
                c--;
            if (!cp_in(chars, s.s + c, b - c)) break;
            b = c;
        }
    } else {
        int w;
        while (left && a < b && (w = ws_at(s.s, s.i, a, 0)))
            a += w;
        while (right && b > a && (w = ws_at(s.s, b, b, 1)))
            b -= w;
    }
    return v_str(sdup(r->j, s.s + a, (size_t)(b - a)), (size_t)(b - a));
}

static val split(R *r, val s, val sep, int64_t maxsplit, int line) {
    val l = v_list(r->j);
    int64_t i = 0, start = 0;
    if (sep.t == T_STR) {
        if (!sep.i) fail(r->j, FT_ERR_FORMAT, line, "split: empty separator");
        while (i + sep.i <= s.i && maxsplit != 0) {
            if (!memcmp(s.s + i, sep.s, (size_t)sep.i)) {
                l_push(r->j, l,
                       v_str(sdup(r->j, s.s + start, (size_t)(i - start)), (size_t)(i - start)));
                i += sep.i, start = i, maxsplit--;
            } else {
                i++;
            }
        }
        l_push(r->j, l,
               v_str(sdup(r->j, s.s + start, (size_t)(s.i - start)), (size_t)(s.i - start)));
        return l;
    }
    for (;;) { /* runs of whitespace */
        while (i < s.i && is_ws(s.s[i]))
            i++;
        if (i >= s.i) break;
        start = i;
        if (maxsplit == 0)
            i = s.i;
        else
            while (i < s.i && !is_ws(s.s[i]))
                i++;
        int64_t e = i;
        if (maxsplit == 0)
            while (e > start && is_ws(s.s[e - 1]))
                e--;
        l_push(r->j, l, v_str(sdup(r->j, s.s + start, (size_t)(e - start)), (size_t)(e - start)));
        maxsplit--;
    }
    return l;
}

static val replace(R *r, val s, val a, val b, int64_t count, int line) {
    if (a.t != T_STR || b.t != T_STR) fail(r->j, FT_ERR_FORMAT, line, "replace needs strings");
    sbuf o = {0};
    int64_t i = 0;
    if (!a.i) fail(r->j, FT_ERR_UNSUPPORTED, line, "replace of an empty string is not supported");
    while (i < s.i) {
        if (count != 0 && i + a.i <= s.i && !memcmp(s.s + i, a.s, (size_t)a.i)) {
            sb_add(r->j, &o, b.s, (size_t)b.i);
            i += a.i, count--;
        } else {
            sb_add(r->j, &o, s.s + i, 1), i++;
        }
    }
    return sb_val(r->j, &o);
}

/* Python's lowercase of c[i] in the string c[0..n) (CPython's lower_ucs4): U+03A3 is final
 * sigma U+03C2 after a cased code point and case-ignorables, not before case-ignorables and a
 * cased one; everything else maps by itself. Returns the mapping's length. */
static int lower_at(const uint32_t *c, int64_t n, int64_t i, uint32_t out[3]) {
    if (c[i] != 0x3A3) return pyu_case(c[i], PYU_LOWER, out);
    int64_t k = i - 1;
    while (k >= 0 && pyu_is_case_ignorable(c[k]))
        k--;
    int final = k >= 0 && pyu_is_cased(c[k]);
    if (final) {
        for (k = i + 1; k < n && pyu_is_case_ignorable(c[k]); k++)
            ;
        final = k == n || !pyu_is_cased(c[k]);
    }
    out[0] = final ? 0x3C2 : 0x3C3;
    return 1;
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_SWAPCASE, CASE_TITLE_FILTER };

/* the title filter's word separators: Jinja2's ([-\s({\[<]+), \s being str.isspace */
static int title_sep(uint32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || pyu_is_space(c);
}

/* Python's str.upper(), lower(), title(), capitalize(), swapcase() with full case mappings and
 * Final_Sigma, as CPython's do_upper ... do_swapcase; and Jinja2's title filter, which is not
 * str.title(): each run between separators is its first code point upper()ed and the rest, a
 * string of its own, lower()ed ('they\'re' -> "They're", where str.title() gives "They'Re") */
static val py_case(R *r, val s, int mode) {
    J *j = r->j;
    int64_t n;
    uint32_t *c = u8decode(j, s, &n), m[3];
    sbuf b = {0};
    int prev_cased = 0;
    for (int64_t i = 0, word = -1, wend = 0; i < n; i++) {
        int k = 1;
        m[0] = c[i];
        switch (mode) {
        case CASE_UPPER: k = pyu_case(c[i], PYU_UPPER, m); break;
        case CASE_LOWER: k = lower_at(c, n, i, m); break;
        case CASE_TITLE:
            k = prev_cased ? lower_at(c, n, i, m) : pyu_case(c[i], PYU_TITLE, m);
            prev_cased = pyu_is_cased(c[i]);
            break;
        case CASE_CAPITALIZE: k = i ? lower_at(c, n, i, m) : pyu_case(c[i], PYU_TITLE, m); break;
        case CASE_SWAPCASE:
            if (pyu_is_upper(c[i]))
                k = lower_at(c, n, i, m);
            else if (pyu_is_lower(c[i]))
                k = pyu_case(c[i], PYU_UPPER, m);
            break;
        default: /* CASE_TITLE_FILTER; the current word's rest is c[word..wend) */
            if (title_sep(c[i])) {
                word = -1;
            } else if (word < 0) {
                k = pyu_case(c[i], PYU_UPPER, m);
                for (word = wend = i + 1; wend < n && !title_sep(c[wend]); wend++)
                    ;
            } else {
                k = lower_at(c + word, wend - word, i - word, m);
            }
        }
        for (int q = 0; q < k; q++)
            put_cp(j, &b, m[q]);
    }
    return sb_val(j, &b);
}

/* Jinja2's int filter: int(s) of a string, else int(float(s)) (truncated), else `dflt`; an
 * integer past int64 (Python's has no bound) and Python's OverflowError (inf) are errors, as is
 * a string with '_' or non-ASCII bytes (Python's digit grouping and Unicode digits) */
static val to_int(R *r, val v, val dflt, int line) {
    double x;
    if (v.t == T_INT || v.t == T_BOOL) return v_int(v.i);
    if (v.t == T_FLOAT) {
        x = v.f;
    } else if (v.t == T_STR) {
        const char *s = v.s, *end = v.s + v.i;
        for (const char *c = s; c < end; c++)
            if (*c == '_' || (unsigned char)*c >= 0x80 || !*c)
                fail(r->j, FT_ERR_UNSUPPORTED, line, "int of '%s' is not supported", v.s);
        while (s < end && (*s == ' ' || (*s >= '\t' && *s <= '\r') || (*s >= 0x1c && *s <= 0x1f)))
            s++;
        while (end > s && (end[-1] == ' ' || (end[-1] >= '\t' && end[-1] <= '\r') ||
                           (end[-1] >= 0x1c && end[-1] <= 0x1f)))
            end--;
        if (s == end || strpbrk(s, "xXpP(")) return dflt; /* strtod's hex floats, nan(...) */
        char *e;
        errno = 0;
        long long i = strtoll(s, &e, 10);
        if (e == end && is_digit(end[-1])) {
            if (errno == ERANGE) fail(r->j, FT_ERR_UNSUPPORTED, line, "integer overflow in int");
            return v_int(i);
        }
        x = strtod(s, &e);
        if (e != end) return dflt;
    } else {
        return dflt;
    }
    if (isnan(x)) return dflt;
    if (!(fabs(x) < 9223372036854775808.0))
        fail(r->j, FT_ERR_UNSUPPORTED, line, "integer overflow in int");
    return v_int((int64_t)x);
}

/* the (key, value) tuples of dict d, in a list of `kind` (d.items() is a dict_items view) */
static val items(R *r, val d, int kind, int line) {
    if (d.t != T_DICT) fail(r->j, FT_ERR_FORMAT, line, "items needs a dict, not %s", tname[d.t]);
    val l = v_list_of(r->j, kind);
    dict *D = d.p;
    for (int i = 0; i < D->n; i++) {
        val p = v_list_of(r->j, LK_TUPLE);
        l_push(r->j, p, v_cstr(r->j, D->k[i]));
        l_push(r->j, p, D->v[i]);
        l_push(r->j, l, p);
    }
    return l;
}

/* the methods templates call on strings and dicts */
static val method(R *r, val o, const char *m, args *a, int line) {
    J *j = r->j;
    if (o.t == T_STR || o.t == T_DICT) { /* Python's str and dict methods: positional only */
        int split = o.t == T_STR && !strcmp(m, "split"),
            repl = o.t == T_STR && !strcmp(m, "replace"),
            nullary = o.t == T_STR &&
                      (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") ||
                       !strcmp(m, "capitalize") || !strcmp(m, "swapcase"));
        takes(r, a, line, m,
              split || o.t == T_DICT ? 2
              : repl                 ? 3
              : nullary              ? 0
                                     : 1,
              split  ? "sep maxsplit"
              : repl ? "count"
                     : "");
    }
    if (o.t == T_STR) {
        if (!strcmp(m, "strip")) return strip(r, o, arg(a, 0, NULL, v_none()), 1, 1);
        if (!strcmp(m, "lstrip")) return strip(r, o, arg(a, 0, NULL, v_none()), 1, 0);
        if (!strcmp(m, "rstrip")) return strip(r, o, arg(a, 0, NULL, v_none()), 0, 1);
        if (!strcmp(m, "upper")) return py_case(r, o, CASE_UPPER);
        if (!strcmp(m, "lower")) return py_case(r, o, CASE_LOWER);
        if (!strcmp(m, "title")) return py_case(r, o, CASE_TITLE);
        if (!strcmp(m, "capitalize")) return py_case(r, o, CASE_CAPITALIZE);
        if (!strcmp(m, "swapcase")) return py_case(r, o, CASE_SWAPCASE);
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            val x = arg(a, 0, NULL, UNDEF);
            if (x.t != T_STR) fail(j, FT_ERR_FORMAT, line, "%s needs a string", m);
            if (x.i > o.i) return v_bool(0);
            return v_bool(!memcmp(m[0] == 's' ? o.s : o.s + o.i - x.i, x.s, (size_t)x.i));
        }
        if (!strcmp(m, "split")) {
            val mx = arg(a, 1, "maxsplit", v_int(-1));
            return split(r, o, arg(a, 0, "sep", v_none()), as_int(r, mx, "maxsplit", line), line);
        }
        if (!strcmp(m, "replace"))
            return replace(r, o, arg(a, 0, NULL, UNDEF), arg(a, 1, NULL, UNDEF),
                           as_int(r, arg(a, 2, "count", v_int(-1)), "count", line), line);
    } else if (o.t == T_DICT) {
        if (!strcmp(m, "items")) return items(r, o, LK_ITEMS, line);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            val l = v_list_of(j, m[0] == 'k' ? LK_KEYS : LK_VALUES);
            dict *D = o.p;
            for (int i = 0; i < D->n; i++)
                l_push(j, l, m[0] == 'k' ? v_cstr(j, D->k[i]) : D->v[i]);
            return l;
        }
        if (!strcmp(m, "get")) {
            val k = arg(a, 0, NULL, UNDEF);
            val *v = k.t == T_STR ? d_find(o, k.s) : NULL;
            return v ? *v : arg(a, 1, NULL, v_none());
        }
    } else if (o.t == T_UNDEF) {
        fail(j, FT_ERR_FORMAT, line, "method %s called on an undefined value", m);
    }
    fail(j, FT_ERR_UNSUPPORTED, line, "method %s of %s is not supported", m, tname[o.t]);
}

static val call_macro(R *r, val mv, args *a, int line) {
    macro *m = mv.p;
    node *params = m->def->a;
    if (a->n > params->nv)
        fail(r->j, FT_ERR_FORMAT, line, "macro %s takes %d arguments, got %d", m->def->s,
             params->nv, a->n);
    for (int k = 0; k < a->nk; k++) {
        int i = 0;
        while (i < params->nv && strcmp(params->v[i]->s, a->kn[k]))
            i++;
        if (i == params->nv)
            fail(r->j, FT_ERR_FORMAT, line, "macro %s takes no keyword argument '%s'", m->def->s,
                 a->kn[k]);
        if (i < a->n)
            fail(r->j, FT_ERR_FORMAT, line, "macro %s got multiple values for argument '%s'",
                 m->def->s, a->kn[k]);
    }
    if (++r->j->depth > MAX_DEPTH)
        fail(r->j, FT_ERR_UNSUPPORTED, line, "macro calls nested too deeply");
    env *e = env_new(r, m->scope);
    for (int i = 0; i < params->nv; i++) {
        node *pn = params->v[i];
        val v = arg(a, i, pn->s, UNDEF);
        if (v.t == T_UNDEF && pn->a) v = eval(r, e, pn->a);
        d_set(r->j, e->vars, pn->s, v);
    }
    sbuf *saved = r->out, b = {0};
    r->out = &b;
    exec(r, e, m->def->b);
    r->out = saved;
    r->j->depth--;
    return sb_val(r->j, &b);
}

static val call(R *r, env *e, node *n) {
    J *j = r->j;
    node *f = n->a;
    args a = eval_args(r, e, n);
    if (f->k == N_ATTR) {
        val o = eval(r, e, f->a);
        if (o.t == T_DICT || o.t == T_NS) {
            val *v = d_find(o, f->s);
            if (v && v->t == T_MACRO) return call_macro(r, *v, &a, n->line);
        }
        return method(r, o, f->s, &a, n->line);
    }
    if (f->k == N_NAME) {
        val v = lookup(e, f->s);
        if (v.t == T_MACRO) return call_macro(r, v, &a, n->line);
        if (v.t != T_UNDEF)
            fail(j, FT_ERR_FORMAT, n->line, "'%s' is a %s, not callable", f->s, tname[v.t]);
        if (strcmp(f->s, "namespace"))
            takes(r, &a, n->line, f->s, !strcmp(f->s, "range") ? 3 : 1, "");
        if (!strcmp(f->s, "raise_exception")) {
            val m = str_of(j, arg(&a, 0, NULL, v_cstr(j, "")));
            fail(j, FT_ERR_ARG, n->line, "raise_exception: %s", m.s);
        }
        if (!strcmp(f->s, "strftime_now")) {
            val fmt = arg(&a, 0, NULL, UNDEF);
            if (fmt.t != T_STR)
                fail(j, FT_ERR_FORMAT, n->line, "strftime_now needs a format string");
            time_t t = (time_t)r->now;
            struct tm tm;
            gmtime_r(&t, &tm);
            char buf[256];
            size_t k = strftime(buf, sizeof buf, fmt.s, &tm);
            if (!k && fmt.i)
                fail(j, FT_ERR_FORMAT, n->line, "strftime_now: format gives nothing or too much");
            return v_cstr(j, buf);
        }
        if (!strcmp(f->s, "namespace")) {
            val ns = v_dict(j, T_NS);
            if (a.n)
                fail(j, FT_ERR_UNSUPPORTED, n->line, "namespace() takes keyword arguments only");
            for (int i = 0; i < a.nk; i++)
                d_set(j, ns, a.kn[i], a.kv[i]);
            return ns;
        }
        if (!strcmp(f->s, "range")) {
            int64_t lo = 0, hi, st = 1;
            if (a.n == 1)
                hi = as_int(r, a.v[0], "range", n->line);
            else if (a.n >= 2)
                lo = as_int(r, a.v[0], "range", n->line), hi = as_int(r, a.v[1], "range", n->line);
            else
                fail(j, FT_ERR_FORMAT, n->line, "range needs 1 to 3 arguments");
            if (a.n == 3) st = as_int(r, a.v[2], "range step", n->line);
            if (st == 0) fail(j, FT_ERR_FORMAT, n->line, "range step cannot be zero");
            val l = v_list(j);
            for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st)
                step(r, n->line), l_push(j, l, v_int(i));
            return l;
        }
        fail(j, FT_ERR_UNSUPPORTED, n->line, "unknown function %s()", f->s);
    }
    fail(j, FT_ERR_UNSUPPORTED, n->line, "only names, macros and methods can be called");
}

static int test(R *r, val v, const char *t, args *a, int line);

/* the positional and keyword parameters of each filter after its value, as Jinja2 (and
 * transformers' tojson) declare them */
static const struct {
    const char *name;
    int npos;
    const char *kws;
} filter_sig[] = {
    {"default", 2, "default_value boolean"},
    {"d", 2, "default_value boolean"},
    {"tojson", 4, "ensure_ascii indent separators sort_keys"},
    {"int", 2, "default base"},
    {"trim", 1, "chars"},
    {"replace", 3, "old new count"},
    {"join", 2, "d attribute"},
    {"selectattr", 1 << 30, ""},
    {"rejectattr", 1 << 30, ""},
    {"map", 1 << 30, "attribute default"},
};

static val filter(R *r, val v, const char *f, args *a, int line) {
    J *j = r->j;
    int sig = 0, nsig = (int)(sizeof filter_sig / sizeof *filter_sig);
    while (sig < nsig && strcmp(filter_sig[sig].name, f))
        sig++;
    /* a NULL a: an internal call with no arguments (the for loop's list of a string) */
    if (a && (strcmp(f, "map") || !a->n)) /* map('f', ...) passes the rest to filter f */
        takes(r, a, line, f, sig < nsig ? filter_sig[sig].npos : 0,
              sig < nsig ? filter_sig[sig].kws : "");
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (v.t == T_STR) return v_int(u8len(v));
        if (v.t == T_LIST) return v_int(((list *)v.p)->n);
        if (v.t == T_DICT) return v_int(((dict *)v.p)->n);
        fail(j, FT_ERR_FORMAT, line, "length of %s", tname[v.t]);
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        int boolean = truthy(arg(a, 1, "boolean", v_bool(0)));
        return (v.t == T_UNDEF || (boolean && !truthy(v)))
                   ? arg(a, 0, "default_value", v_cstr(j, ""))
                   : v;
    }
    if (!strcmp(f, "tojson")) {
        sbuf b = {0};
        if (truthy(arg(a, 0, "ensure_ascii", v_bool(0))) ||
            arg(a, 2, "separators", v_none()).t != T_NONE)
            fail(j, FT_ERR_UNSUPPORTED, line,
                 "tojson's ensure_ascii and separators are not supported");
        val in = arg(a, 1, "indent", v_none());
        int indent = in.t == T_NONE ? 0 : (int)as_int(r, in, "indent", line);
        if (in.t != T_NONE && (indent < 1 || indent > 64))
            fail(j, FT_ERR_UNSUPPORTED, line, "tojson indent %d", indent);
        to_json(j, &b, v, indent, truthy(arg(a, 3, "sort_keys", v_bool(0))), 0, 1);
        return sb_val(j, &b);
    }
    if (!strcmp(f, "string")) return str_of(j, v);
    if (!strcmp(f, "list")) {
        if (v.t == T_LIST && ((list *)v.p)->kind == LK_LIST) return v;
        if (v.t == T_LIST) { /* list() of a tuple or a dict view */
            val l = v_list(j);
            for (int i = 0; i < ((list *)v.p)->n; i++)
                l_push(j, l, ((list *)v.p)->it[i]);
            return l;
        }
        if (v.t == T_DICT) {
            val l = v_list(j);
            for (int i = 0; i < ((dict *)v.p)->n; i++)
                l_push(j, l, v_cstr(j, ((dict *)v.p)->k[i]));
            return l;
        }
        if (v.t == T_STR) { /* code points */
            val l = v_list(j);
            for (int64_t i = 0, n = u8len(v); i < n; i++)
                l_push(j, l, subscript(r, v, v_int(i), line));
            return l;
        }
    }
    if (!strcmp(f, "items")) return items(r, v, LK_LIST, line);
    if (!strcmp(f, "int")) return to_int(r, v, arg(a, 0, "default", v_int(0)), line);
    if (!strcmp(f, "abs") && (v.t == T_INT || v.t == T_FLOAT)) {
        if (v.i == INT64_MIN && v.t == T_INT)
            fail(j, FT_ERR_UNSUPPORTED, line, "integer overflow in abs");
        return v.t == T_INT ? v_int(v.i < 0 ? -v.i : v.i) : v_float(fabs(v.f));
    }
    /* Jinja2's string filters take str() of any value ({{ 5 | upper }}, {{ none | trim }}) */
    if (!strcmp(f, "trim") || !strcmp(f, "upper") || !strcmp(f, "lower") || !strcmp(f, "title") ||
        !strcmp(f, "capitalize") || !strcmp(f, "replace"))
        v = str_of(j, v);
    if (v.t == T_STR) {
        if (!strcmp(f, "trim")) return strip(r, v, arg(a, 0, "chars", v_none()), 1, 1);
        if (!strcmp(f, "upper")) return py_case(r, v, CASE_UPPER);
        if (!strcmp(f, "lower")) return py_case(r, v, CASE_LOWER);
        if (!strcmp(f, "title")) return py_case(r, v, CASE_TITLE_FILTER);
        if (!strcmp(f, "capitalize")) return py_case(r, v, CASE_CAPITALIZE);
        if (!strcmp(f, "replace")) /* str(s).replace(str(old), str(new), count) */
            return replace(r, v, str_of(j, arg(a, 0, "old", UNDEF)),
                           str_of(j, arg(a, 1, "new", UNDEF)),
                           as_int(r, arg(a, 2, "count", v_int(-1)), "count", line), line);
    }
    if (v.t == T_LIST) {
        list *l = v.p;
        if (!strcmp(f, "first")) return l->n ? l->it[0] : UNDEF;
        if (!strcmp(f, "last")) return l->n ? l->it[l->n - 1] : UNDEF;
        if (!strcmp(f, "reverse")) {
            val o = v_list(j);
            for (int i = l->n - 1; i >= 0; i--)
                l_push(j, o, l->it[i]);
            return o;
        }
        if (!strcmp(f, "join")) {
            val sep = arg(a, 0, "d", v_cstr(j, "")), at = arg(a, 1, "attribute", UNDEF);
            sbuf b = {0};
            for (int i = 0; i < l->n; i++) {
                if (i) to_text(j, &b, sep);
                to_text(j, &b, at.t == T_UNDEF ? l->it[i] : subscript(r, l->it[i], at, line));
            }
            return sb_val(j, &b);
        }
        if (!strcmp(f, "selectattr") || !strcmp(f, "rejectattr")) {
            val at = arg(a, 0, NULL, UNDEF);
            if (at.t != T_STR) fail(j, FT_ERR_FORMAT, line, "%s needs an attribute name", f);
            val o = v_list(j);
            args ta = {a->n > 2 ? a->v + 2 : a->v, a->n > 2 ? a->n - 2 : 0, NULL, NULL, 0};
            for (int i = 0; i < l->n; i++) {
                val x = l->it[i].t == T_DICT ? subscript(r, l->it[i], at, line) : UNDEF;
                int ok = a->n > 1 ? test(r, x, key_of(r, a->v[1], line), &ta, line) : truthy(x);
                if (ok == (f[0] == 's')) l_push(j, o, l->it[i]);
            }
            return o;
        }
        if (!strcmp(f, "map")) {
            val at = a->n ? UNDEF : arg(a, 0, "attribute", UNDEF), o = v_list(j);
            val dflt = a->n ? UNDEF : arg(a, 1, "default", UNDEF);
            for (int i = 0; i < l->n; i++) {
                if (at.t != T_UNDEF) {
                    val x = subscript(r, l->it[i], at, line);
                    l_push(j, o, x.t == T_UNDEF && dflt.t != T_NONE ? dflt : x);
                } else if (a->n >= 1) { /* map('map', 'map', ...) recurses into nested lists */
                    enter(r, line);
                    l_push(j, o,
                           filter(r, l->it[i], key_of(r, a->v[0], line),
                                  &(args){a->v + 1, a->n - 1, a->kn, a->kv, a->nk}, line));
                    r->nest--;
                } else
                    fail(j, FT_ERR_FORMAT, line, "map needs a filter name or attribute=");
            }
            return o;
        }
    }
    if (v.t == T_UNDEF) fail(j, FT_ERR_FORMAT, line, "filter %s applied to an undefined value", f);
    fail(j, FT_ERR_UNSUPPORTED, line, "filter %s on %s is not supported", f, tname[v.t]);
}

static int test(R *r, val v, const char *t, args *a, int line) {
    takes(r, a, line, t, 1, "");
    if (!strcmp(t, "defined")) return v.t != T_UNDEF;
    if (!strcmp(t, "undefined")) return v.t == T_UNDEF;
    if (!strcmp(t, "none")) return v.t == T_NONE;
    if (!strcmp(t, "string")) return v.t == T_STR;
    if (!strcmp(t, "number")) return v.t == T_INT || v.t == T_FLOAT;
    if (!strcmp(t, "integer")) return v.t == T_INT;
    if (!strcmp(t, "float")) return v.t == T_FLOAT;
    if (!strcmp(t, "boolean")) return v.t == T_BOOL;
    if (!strcmp(t, "true")) return v.t == T_BOOL && v.i;
    if (!strcmp(t, "false")) return v.t == T_BOOL && !v.i;
    if (!strcmp(t, "mapping")) return v.t == T_DICT;
    if (!strcmp(t, "iterable")) return v.t == T_LIST || v.t == T_DICT || v.t == T_STR;
    if (!strcmp(t, "sequence")) return v.t == T_LIST || v.t == T_STR || v.t == T_DICT;
    if (!strcmp(t, "callable")) return v.t == T_MACRO;
    if (!strcmp(t, "odd") || !strcmp(t, "even"))
        return (as_int(r, v, t, line) & 1) == (t[0] == 'o');
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) { /* str(v).islower(), isupper() */
        val s = str_of(r->j, v);
        int cased = 0;
        for (int64_t i = 0; i < s.i;) {
            uint32_t c = u8dec(s.s, s.i, &i);
            int up = pyu_is_upper(c), low = pyu_is_lower(c);
            if ((t[0] == 'l' ? up : low) || pyu_is_title(c)) return 0;
            cased |= t[0] == 'l' ? low : up;
        }
        return cased;
    }
    if (a->n < 1)
        fail(r->j, FT_ERR_UNSUPPORTED, line, "test '%s' is not supported (or needs an argument)",
             t);
    val x = a->v[0];
    if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==") || !strcmp(t, "sameas"))
        return eq(r->j, v, x, line, 0);
    if (!strcmp(t, "ne") || !strcmp(t, "!=")) return !eq(r->j, v, x, line, 0);
    if (!strcmp(t, "in")) return contains(r, x, v, line);
    if (!strcmp(t, "lt") || !strcmp(t, "<")) return truthy(binop(r, "<", v, x, line));
    if (!strcmp(t, "gt") || !strcmp(t, ">")) return truthy(binop(r, ">", v, x, line));
    if (!strcmp(t, "divisibleby")) {
        int64_t d = as_int(r, x, "divisibleby", line);
        return d && as_int(r, v, "divisibleby", line) % d == 0;
    }
    fail(r->j, FT_ERR_UNSUPPORTED, line, "test '%s' is not supported", t);
}

static val eval_node(R *r, env *e, node *n) {
    J *j = r->j;
    step(r, n->line);
    switch (n->k) {
    case N_LIT: return n->lit;
    case N_NAME: return lookup(e, n->s);
    case N_ATTR: {
        val o = eval(r, e, n->a);
        if (o.t == T_DICT || o.t == T_NS) {
            val *v = d_find(o, n->s);
            return v ? *v : UNDEF;
        }
        if (o.t == T_UNDEF)
            fail(j, FT_ERR_FORMAT, n->line, "attribute '%s' of an undefined value", n->s);
        if (o.t == T_NONE) fail(j, FT_ERR_FORMAT, n->line, "attribute '%s' of none", n->s);
        return UNDEF;
    }
    case N_INDEX: return subscript(r, eval(r, e, n->a), eval(r, e, n->b), n->line);
    case N_SLICE: return slice(r, eval(r, e, n->a), n, e);
    case N_CALL: return call(r, e, n);
    case N_FILTER: {
        val v = eval(r, e, n->a);
        args a = eval_args(r, e, n);
        return filter(r, v, n->s, &a, n->line);
    }
    case N_TEST: {
        val v = eval(r, e, n->a);
        args a = eval_args(r, e, n);
        return v_bool(test(r, v, n->s, &a, n->line) != n->flag);
    }
    case N_NOT: return v_bool(!truthy(eval(r, e, n->a)));
    case N_NEG: {
        val v = eval(r, e, n->a);
        if (v.t == T_INT) {
            if (!n->flag && v.i == INT64_MIN)
                fail(j, FT_ERR_UNSUPPORTED, n->line, "integer overflow in unary -");
            return n->flag ? v : v_int(-v.i);
        }
        if (v.t == T_FLOAT) return n->flag ? v : v_float(-v.f);
        fail(j, FT_ERR_FORMAT, n->line, "unary %c needs a number, not %s", n->flag ? '+' : '-',
             tname[v.t]);
    }
    case N_AND: {
        val a = eval(r, e, n->a);
        return truthy(a) ? eval(r, e, n->b) : a;
    }
    case N_OR: {
        val a = eval(r, e, n->a);
        return truthy(a) ? a : eval(r, e, n->b);
    }
    case N_BIN: return binop(r, n->s, eval(r, e, n->a), eval(r, e, n->b), n->line);
    case N_COND:
        return truthy(eval(r, e, n->b)) ? eval(r, e, n->a) : n->c ? eval(r, e, n->c) : UNDEF;
    case N_LIST: {
        val l = v_list_of(j, n->flag ? LK_TUPLE : LK_LIST);
        for (int i = 0; i < n->nv; i++)
            l_push(j, l, eval(r, e, n->v[i]));
        return l;
    }
    case N_DICT: {
        val d = v_dict(j, T_DICT);
        for (int i = 0; i + 1 < n->nv; i += 2)
            d_set(j, d, key_of(r, eval(r, e, n->v[i]), n->line), eval(r, e, n->v[i + 1]));
        return d;
    }
    default: fail(j, FT_ERR_FORMAT, n->line, "statement used as an expression");
    }
}

/* the value of expression `n` in `e`; its recursion is counted by enter() */
static val eval(R *r, env *e, node *n) {
    enter(r, n->line);
    val v = eval_node(r, e, n);
    r->nest--;
    return v;
}

/* the loop variable(s) of `n` in scope `s`: x, or the pair x unpacked into two names */
static void bind_loop_vars(R *r, env *s, node *n, val x) {
    if (!n->s2) {
        d_set(r->j, s->vars, n->s, x);
        return;
    }
    if (x.t != T_LIST || ((list *)x.p)->n != 2)
        fail(r->j, FT_ERR_FORMAT, n->line, "cannot unpack %s into %s, %s", tname[x.t], n->s, n->s2);
    d_set(r->j, s->vars, n->s, ((list *)x.p)->it[0]);
    d_set(r->j, s->vars, n->s2, ((list *)x.p)->it[1]);
}

static void exec_for(R *r, env *e, node *n) {
    J *j = r->j;
    val it = eval(r, e, n->a);
    if (it.t == T_DICT) {
        val l = v_list(j);
        for (int i = 0; i < ((dict *)it.p)->n; i++)
            l_push(j, l, v_cstr(j, ((dict *)it.p)->k[i]));
        it = l;
    } else if (it.t == T_STR) {
        it = filter(r, it, "list", NULL, n->line);
    } else if (it.t == T_UNDEF) { /* Python Jinja's Undefined iterates as empty */
        it = v_list(j);
    } else if (it.t == T_NONE) {
        fail(j, FT_ERR_FORMAT, n->line, "for loop over none");
    } else if (it.t != T_LIST) {
        fail(j, FT_ERR_FORMAT, n->line, "cannot iterate over %s", tname[it.t]);
    }
    list *src = it.p;
    val items_l = v_list(j);
    for (int i = 0; i < src->n; i++) { /* the loop filter picks items before loop.length is known */
        if (n->d) {
            env *f = env_new(r, e);
            bind_loop_vars(r, f, n, src->it[i]);
            if (!truthy(eval(r, f, n->d))) continue;
        }
        l_push(j, items_l, src->it[i]);
    }
    list *l = items_l.p;
    for (int i = 0; i < l->n; i++) {
        env *s = env_new(r, e);
        bind_loop_vars(r, s, n, l->it[i]);
        val loop = v_dict(j, T_DICT);
        d_set(j, loop, "index", v_int(i + 1));
        d_set(j, loop, "index0", v_int(i));
        d_set(j, loop, "revindex", v_int(l->n - i));
        d_set(j, loop, "revindex0", v_int(l->n - i - 1));
        d_set(j, loop, "first", v_bool(i == 0));
        d_set(j, loop, "last", v_bool(i == l->n - 1));
        d_set(j, loop, "length", v_int(l->n));
        d_set(j, loop, "previtem", i > 0 ? l->it[i - 1] : UNDEF);
        d_set(j, loop, "nextitem", i + 1 < l->n ? l->it[i + 1] : UNDEF);
        d_set(j, s->vars, "loop", loop);
        exec(r, s, n->b);
        if (r->brk == 1) {
            r->brk = 0;
            break;
        }
        r->brk = 0;
    }
    if (!l->n && n->c) exec(r, e, n->c);
}

static void exec_node(R *r, env *e, node *n) {
    J *j = r->j;
    step(r, n->line);
    switch (n->k) {
    case N_BLOCK:
        for (int i = 0; i < n->nv && !r->brk; i++)
            exec(r, e, n->v[i]);
        return;
    case N_TEXT: sb_add(j, r->out, n->s, n->n); return;
    case N_OUT: to_text(j, r->out, eval(r, e, n->a)); return;
    case N_IF: /* an elif is an N_IF in ->c: the chain is walked, not recursed into */
        while (!truthy(eval(r, e, n->a))) {
            n = n->c;
            if (!n) return;
            if (n->k != N_IF) {
                exec(r, e, n);
                return;
            }
            step(r, n->line);
        }
        exec(r, e, n->b);
        return;
    case N_FOR: exec_for(r, e, n); return;
    case N_BREAK:
    case N_CONTINUE: r->brk = n->k == N_BREAK ? 1 : 2; return;
    case N_MACRO: {
        macro *m = alloc(j, sizeof *m);
        m->def = n, m->scope = e;
        d_set(j, e->vars, n->s, (val){.t = T_MACRO, .p = m});
        return;
    }
    case N_SET: {
        val v;
        if (n->b) {
            v = eval(r, e, n->b);
        } else {
            sbuf *saved = r->out, b = {0};
            r->out = &b;
            exec(r, e, n->c);
            r->out = saved;
            v = sb_val(j, &b);
        }
        if (n->a->k == N_NAME) {
            d_set(j, e->vars, n->a->s, v);
            return;
        }
        val ns = lookup(e, n->a->a->s);
        if (ns.t != T_NS)
            fail(j, FT_ERR_FORMAT, n->line, "{%% set %s.%s %%}: %s is not a namespace", n->a->a->s,
                 n->a->s, n->a->a->s);
        d_set(j, ns, n->a->s, v);
        return;
    }
    default: to_text(j, r->out, eval(r, e, n));
    }
}

/* render statement `n` in `e` into r->out; its recursion is counted by enter() */
static void exec(R *r, env *e, node *n) {
    enter(r, n->line);
    exec_node(r, e, n);
    r->nest--;
}

ft_status ft_jinja_render(const ft_jinja *t, const cJSON *ctx, int64_t now, char **out,
                          size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    J *j = calloc(1, sizeof *j);
    if (!j) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    if (setjmp(j->jb)) {
        ft_status st = ft_errorf(j->code, "%s", j->msg);
        arena_free(j->head);
        free(j);
        return st;
    }
    sbuf b = {0};
    R r = {.j = j, .out = &b, .now = now};
    env *g = env_new(&r, NULL);
    if (ctx && !cJSON_IsObject(ctx))
        fail(j, FT_ERR_ARG, 0, "the template context must be a JSON object");
    const cJSON *c;
    if (ctx)
        cJSON_ArrayForEach(c, ctx)
            d_set(j, g->vars, sdup(j, c->string, strlen(c->string)), from_json(j, c, 0));
    exec(&r, env_new(&r, g), t->root);
    char *s = malloc(b.n + 1);
    if (!s) fail(j, FT_ERR_NOMEM, 0, "out of memory");
    if (b.n) memcpy(s, b.p, b.n);
    s[b.n] = 0;
    *out = s;
    if (len) *len = b.n;
    arena_free(j->head);
    free(j);
    return FT_OK;
}
