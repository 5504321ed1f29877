/*
 * The Jinja interpreter (src/data/jinja.c) on its own.
 *
 * Without arguments: malformed and hostile templates give one-line errors naming the construct and
 * the template line (never a crash, a hang or unbounded memory), raise_exception and strftime_now
 * behave, and a few outputs whose right answer is known by hand.
 *
 * With `--render CASES.jsonl OUT.jsonl`: renders every case {"name", "template", "context",
 * "now"} and writes {"name", "out"} or {"name", "error"} per line, for tests/data/test_jinja.sh
 * to compare byte for byte with @huggingface/jinja (tests/data/ref_jinja.mjs).
 */
#include "../test.h"
#include "ftune/jinja.h"

#include <cjson/cJSON.h>
#include <string.h>

/* render `src` with the JSON context `ctx`; returns the status, output or error in *out */
static ft_status render(const char *src, const char *ctx, int64_t now, char **out) {
    ft_jinja *t = NULL;
    ft_error_clear();
    ft_status st = ft_jinja_parse(src, strlen(src), &t);
    *out = NULL;
    if (!st) {
        cJSON *c = ctx ? cJSON_Parse(ctx) : NULL;
        st = ft_jinja_render(t, c, now, out, NULL);
        cJSON_Delete(c);
    }
    ft_jinja_free(t);
    if (st) *out = strdup(ft_error_message());
    return st;
}

static void expect_out(const char *name, const char *src, const char *ctx, const char *want) {
    char *out;
    ft_status st = render(src, ctx, 0, &out);
    CHECK(name, !st && !strcmp(out, want), "status %d, got '%s', want '%s'", st, out, want);
    free(out);
}

static void expect_err(const char *name, const char *src, const char *want) {
    char *out;
    ft_status st =
        render(src, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", 0, &out);
    CHECK(name, st && strstr(out, want) && !strchr(out, '\n'),
          "status %d, got '%s', want an error with '%s'", st, out, want);
    free(out);
}

/* `head`, then `mid` n times, then `tail`: a malloc'd template */
static char *repeat(const char *head, const char *mid, int n, const char *tail) {
    size_t h = strlen(head), m = strlen(mid), t = strlen(tail);
    char *s = malloc(h + m * (size_t)n + t + 1);
    if (!s) abort();
    memcpy(s, head, h);
    for (int i = 0; i < n; i++)
        memcpy(s + h + m * (size_t)i, mid, m);
    memcpy(s + h + m * (size_t)n, tail, t + 1);
    return s;
}

static int run_cases(const char *in, const char *outp) {
    char *buf = NULL;
    size_t len = 0;
    if (ft_read_file(in, &buf, &len)) return fprintf(stderr, "%s\n", ft_error_message()), 1;
    FILE *f = fopen(outp, "w");
    if (!f) return perror(outp), free(buf), 1;
    int n = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        const cJSON *nm = cJSON_GetObjectItem(c, "name"), *tp = cJSON_GetObjectItem(c, "template");
        const cJSON *now = cJSON_GetObjectItem(c, "now");
        if (!cJSON_IsString(nm) || !cJSON_IsString(tp)) {
            fprintf(stderr, "%s: bad case line %d\n", in, n + 1);
            return cJSON_Delete(c), fclose(f), free(buf), 1;
        }
        ft_jinja *t = NULL;
        char *out = NULL;
        ft_error_clear();
        ft_status st = ft_jinja_parse(tp->valuestring, strlen(tp->valuestring), &t);
        if (!st)
            st = ft_jinja_render(t, cJSON_GetObjectItem(c, "context"),
                                 cJSON_IsNumber(now) ? (int64_t)now->valuedouble : 0, &out, NULL);
        ft_jinja_free(t);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", nm->valuestring);
        if (st)
            cJSON_AddStringToObject(o, "error", ft_error_message());
        else
            cJSON_AddStringToObject(o, "out", out);
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        free(s), free(out);
        cJSON_Delete(o), cJSON_Delete(c);
        n++;
    }
    free(buf);
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--render")) return run_cases(argv[2], argv[3]);

    /* known answers (the node comparison covers the constructs broadly) */
    expect_out("jinja_text_only", "plain {text}\n", NULL, "plain {text}");
    expect_out("jinja_trim_blocks", "{% if true %}\nA\n{% endif %}\nB", NULL, "A\nB");
    expect_out("jinja_lstrip_blocks", "x\n    {% if true %}y{% endif %}", NULL, "x\ny");
    expect_out("jinja_whitespace_control", "a  {{- 'b' -}}  \n c", NULL, "abc");
    expect_out("jinja_loop_vars",
               "{% for m in messages %}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ m.role "
               "}}{% endfor %}",
               "{\"messages\": [{\"role\": \"u\"}, {\"role\": \"a\"}]}", "0TrueFalseu1FalseTruea");
    expect_out("jinja_namespace",
               "{% set ns = namespace(n=0) %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% "
               "endfor %}{{ ns.n }}",
               NULL, "6");
    expect_out("jinja_slice_reverse", "{{ [1,2,3,4][::-1] }}|{{ 'héllo'[1:3] }}|{{ 'abc'[-1] }}",
               NULL, "[4, 3, 2, 1]|él|c");
    expect_out("jinja_python_modulo", "{{ -7 % 3 }} {{ -7 // 2 }} {{ 7 / 2 }}", NULL, "2 -4 3.5");
    expect_out("jinja_unicode_trim", "[{{ '\xe3\x80\x80 x \xc2\xa0' | trim }}]", NULL, "[x]");
    expect_out("jinja_strftime_now", "{{ strftime_now('%d %b %Y') }}", NULL, "01 Jan 1970");
    /* where @huggingface/jinja departs from Python's str methods, ftune follows Python (what
     * transformers renders with) */
    expect_out(
        "jinja_python_strip_chars",
        "[{{ 'xxhixx'.strip('x') }}][{{ '\t a\n'.lstrip('\n') }}][{{ 'ab\n\n'.rstrip('\n') }}]",
        NULL, "[hi][\t a\n][ab]");
    expect_out("jinja_python_capitalize_length",
               "{{ 'hELLO' | capitalize }} {{ '\xf0\x9f\x98\x80x' | length }}", NULL, "Hello 2");
    /* Python's string escapes (Jinja decodes literals with unicode-escape), undefined iterates
     * as empty (Phi-4-mini's template loops over message.tool_calls unguarded) */
    expect_out("jinja_python_escapes", "{{ '\\q\\x41\\u00e9\\101 a\\\nb' }}", NULL,
               "\\qA\xc3\xa9"
               "A ab");
    expect_out("jinja_loop_over_undefined", "{% for x in nothing %}x{% else %}empty{% endfor %}",
               NULL, "empty");
    char *out;
    ft_status st = render("{{ strftime_now('%Y-%m-%d') }}", NULL, 1721952000, &out);
    CHECK("jinja_strftime_now_given_date", !st && !strcmp(out, "2024-07-26"), "got '%s'", out);
    free(out);

    /* errors: one line, with the template line and the construct */
    expect_err("jinja_err_raise_exception", "a\n{{ raise_exception('Roles must alternate') }}",
               "template line 2: raise_exception: Roles must alternate");
    expect_err("jinja_err_unclosed_if", "{% if x %}\nabc",
               "template line 1: {% if %} is never closed");
    expect_err("jinja_err_unclosed_for", "\n\n{% for m in messages %}",
               "template line 3: {% for %} is never closed");
    expect_err("jinja_err_unclosed_expr", "line1\n{{ messages", "tag {{ is never closed");
    expect_err("jinja_err_unclosed_string", "{{ 'abc }}", "string literal is never closed");
    expect_err("jinja_err_unclosed_comment", "{# abc", "comment {# is never closed");
    expect_err("jinja_err_stray_endfor", "x\n{% endfor %}",
               "template line 2: unexpected {% endfor %}");
    expect_err("jinja_err_unknown_statement", "{% include 'x.jinja' %}",
               "{% include %} is not supported");
    expect_err("jinja_err_unknown_filter", "\n{{ 'a' | frobnicate }}",
               "template line 2: filter frobnicate on string is not supported");
    expect_err("jinja_err_unknown_test", "{{ 1 is prime }}", "test 'prime' is not supported");
    expect_err("jinja_err_unknown_function", "{{ cycler(1) }}", "unknown function cycler()");
    expect_err("jinja_err_unknown_method", "{{ 'a'.zfill(3) }}",
               "method zfill of string is not supported");
    expect_err("jinja_err_bad_char", "{{ a ; b }}", "unexpected character ';'");
    expect_err("jinja_err_truncated_escape", "{{ '\\x4' }}", "truncated \\x escape");
    expect_err("jinja_err_missing_operand", "{{ 1 + }}", "unexpected '}}' in an expression");
    expect_err("jinja_err_attr_of_undefined", "{{ nothing.content }}",
               "attribute 'content' of an undefined value");
    expect_err("jinja_err_add_undefined", "{{ 'a' + nothing }}", "'+' of string and undefined");
    /* Python's ints have no bound: past int64 an error, not a float or a wrapped value */
    expect_err("jinja_err_pow_overflow", "{{ 2 ** 64 }}", "integer overflow in **");
    expect_err("jinja_err_pow_overflow_square", "{{ 3 ** 41 }}", "integer overflow in **");
    expect_err("jinja_err_neg_overflow", "{{ -((-2) ** 63) }}", "integer overflow in unary -");
    expect_err("jinja_err_abs_overflow", "{{ ((-2) ** 63) | abs }}", "integer overflow in abs");
    expect_err("jinja_err_int_overflow", "{{ '9223372036854775808' | int }}",
               "integer overflow in int");
    expect_err("jinja_err_int_float_overflow", "{{ (10.0 ** 19) | int }}",
               "integer overflow in int");
    expect_err("jinja_err_int_inf", "{{ 'inf' | int }}", "integer overflow in int");
    expect_err("jinja_err_int_grouping", "{{ '1_000' | int }}", "int of '1_000' is not supported");
    /* Python renders these (transformers' tojson takes them); ftune refuses, not ignores, them */
    expect_err("jinja_err_tojson_separators", "{{ [1, 2] | tojson(separators=(',', ':')) }}",
               "tojson's ensure_ascii and separators are not supported");
    expect_err("jinja_err_tojson_ascii", "{{ 'x' | tojson(true) }}",
               "tojson's ensure_ascii and separators are not supported");
    expect_err("jinja_err_tojson_indent0", "{{ [1] | tojson(indent=0) }}", "tojson indent 0");
    /* Python renders a complex number ((1.7e-16+2.8j)); ftune has none and refuses it */
    expect_err("jinja_err_pow_complex", "{{ (-8) ** 0.5 }}",
               "** of a negative number to a fractional power (a complex number) is not supported");
    expect_err("jinja_err_division_by_zero", "{{ 1 // 0 }}", "division by zero");
    expect_err("jinja_err_set_non_namespace", "{% set x = 1 %}{% set x.a = 2 %}",
               "x is not a namespace");
    expect_err("jinja_err_break_outside_loop",
               "{% for x in [1] %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}",
               "{% break %} outside a for loop");
    expect_out("jinja_strip_whole_code_points",
               "[{{ '\xc3\xa9"
               "a\xc3\xa8'.strip('\xc3\xa8') }}]",
               NULL,
               "[\xc3\xa9"
               "a]");
    expect_err("jinja_err_call_block", "{% call m() %}x{% endcall %}",
               "{% call %} is not supported");
    expect_err("jinja_err_loop_over_none", "{% for x in none %}{% endfor %}", "for loop over none");

    /* hostile input: bounded depth, work and memory */
    char deep[4096];
    memset(deep, '(', 3000);
    memcpy(deep, "{{ ", 3);
    strcpy(deep + 3000, "1 }}");
    expect_err("jinja_err_deep_nesting", deep, "nested too deeply");
    expect_err("jinja_err_endless_work",
               "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
               "more than");
    expect_err("jinja_err_huge_string", "{{ 'abcdefgh' * 1000000000 }}",
               "string repetition too large");
    /* chains the parser builds with loops (left-nested: eval recursed over them) or with
     * uncounted recursion (not, unary minus): each overflowed the stack before, at ~40 KB */
    static const struct {
        const char *name, *head, *mid, *tail;
        int n;
    } chains[] = {
        {"jinja_err_attribute_chain", "\n{{ x", ".a", " }}", 20000},
        {"jinja_err_not_chain", "\n{{ ", "not ", "1 }}", 5000},
        {"jinja_err_unary_minus_chain", "\n{{ ", "- ", "1 }}", 5000},
        {"jinja_err_plus_chain", "\n{{ 1", "+1", " }}", 5000},
        {"jinja_err_filter_chain", "\n{{ x", "|trim", " }}", 5000},
    };
    for (size_t i = 0; i < sizeof chains / sizeof chains[0]; i++) {
        char *src = repeat(chains[i].head, chains[i].mid, chains[i].n, chains[i].tail);
        expect_err(chains[i].name, src, "template line 2: expression nested too deeply");
        free(src);
    }
    char *src = repeat("{{ 0", "+1", 199, " }}"); /* the tree's height is 200: the limit */
    expect_out("jinja_deep_chain_allowed", src, NULL, "199");
    free(src);
    /* an elif chain is walked, not recursed into (it overflowed the sanitizer build's stack) */
    src = repeat("{% if 0 %}", "{% elif 0 %}", 20000, "{% else %}E{% endif %}");
    expect_out("jinja_long_elif_chain", src, NULL, "E");
    free(src);
    /* a macro calling itself multiplies its body's nesting: 100 calls deep render, 190 calls
     * each 190 filters high stop with an error (they overflowed the stack before) */
    char *want = repeat("", ".", 100, "");
    expect_out("jinja_recursive_macro_allowed",
               "{% macro m(n) %}{% if n > 0 %}.{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(100) }}",
               NULL, want);
    free(want);
    src = repeat("{% macro m(n) %}{% if n > 0 %}{{ m(n - 1)", "|trim", 190,
                 " }}{% endif %}{% endmacro %}{{ m(190) }}");
    expect_err("jinja_err_recursive_macro_nesting", src,
               "template line 1: rendering nests deeper than 600 levels");
    free(src);
    /* values nested by a loop: compared, and mapped by map('map', 'map', ...) */
#define NEST_40000                                                                                 \
    "{% set ns = namespace(x=[]) %}{% for i in range(40000) %}{% set ns.x = [ns.x] %}"             \
    "{% endfor %}\n"
    expect_err("jinja_err_compare_deep_values", NEST_40000 "{{ ns.x == ns.x }}",
               "template line 2: values nested too deeply to compare");
    src = repeat(NEST_40000 "{{ [ns.x] | map(", "'map', ", 5000, "'length') }}");
    expect_err("jinja_err_map_deep_values", src,
               "template line 2: rendering nests deeper than 600 levels");
    free(src);
#undef NEST_40000

    ft_jinja *t = NULL;
    st = ft_jinja_parse("a\0b", 3, &t);
    CHECK("jinja_err_nul_byte", st && !t && strstr(ft_error_message(), "NUL byte"),
          "status %d '%s'", st, ft_error_message());

    return ft_test_failures ? 1 : 0;
}
