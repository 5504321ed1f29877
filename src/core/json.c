/*
 * Checks on JSON input that cJSON does not make (contract in include/ftune/core.h): a key given
 * twice in one object (cJSON's lookups return the first value, Python's json keeps the last, so
 * ftune and Hugging Face would read different values) and the escape \u0000 (cJSON's strings are
 * NUL-terminated, so the value would be cut there). Not here: parsing itself (cJSON).
 */
#include "ftune/core.h"

#include <cjson/cJSON.h>
#include <string.h>

const char *ft_json_dup_key(const struct cJSON *obj) {
    if (!obj) return NULL;
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string)) return a->string;
    return NULL;
}

long ft_json_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\\') {
            if (i + 5 < n && !memcmp(s + i + 1, "u0000", 5)) return (long)i;
            i++; /* skip the escaped character */
        }
    return -1;
}
