/*
 * Python's per-code-point Unicode properties (src/data/pyunicode.h): utf8proc's simple case
 * mappings and general categories, and the generated table of what goes past them. utf8proc
 * 2.8 has Unicode 15.0 and the table was generated with Unicode 14.0 (Python 3.11): they agree
 * on every simple mapping; code points first assigned in 15.0 are printable here where Python
 * 3.11 escapes them (as Python 3.12 does not).
 */
#include "pyunicode.h"

#include <stdlib.h>
#include <utf8proc.h>

#include "pyunicode_table.h"

static int special_cmp(const void *key, const void *e) {
    uint32_t a = *(const uint32_t *)key, b = ((const struct pyu_special *)e)->cp;
    return (a > b) - (a < b);
}

/* cp in one of the sorted [lo, hi] ranges */
static int in_ranges(uint32_t cp, const uint32_t (*r)[2], size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (cp < r[m][0])
            hi = m;
        else if (cp > r[m][1])
            lo = m + 1;
        else
            return 1;
    }
    return 0;
}
#define IN_RANGES(cp, table) in_ranges(cp, table, sizeof table / sizeof *table)

int pyu_case(uint32_t cp, int which, uint32_t out[3]) {
    const struct pyu_special *s =
        bsearch(&cp, pyu_special, sizeof pyu_special / sizeof *pyu_special, sizeof *pyu_special,
                special_cmp);
    if (s) {
        int n = 0;
        while (n < 3 && s->map[which][n])
            out[n] = s->map[which][n], n++;
        return n;
    }
    if (cp > 0x10FFFF) {
        out[0] = cp;
        return 1;
    }
    utf8proc_int32_t c = (utf8proc_int32_t)cp;
    out[0] = (uint32_t)(which == PYU_UPPER   ? utf8proc_toupper(c)
                        : which == PYU_LOWER ? utf8proc_tolower(c)
                                             : utf8proc_totitle(c));
    return 1;
}

static utf8proc_category_t category(uint32_t cp) {
    return cp > 0x10FFFF ? UTF8PROC_CATEGORY_CN : utf8proc_category((utf8proc_int32_t)cp);
}

int pyu_is_lower(uint32_t cp) {
    return category(cp) == UTF8PROC_CATEGORY_LL || IN_RANGES(cp, pyu_other_lower);
}

int pyu_is_upper(uint32_t cp) {
    return category(cp) == UTF8PROC_CATEGORY_LU || IN_RANGES(cp, pyu_other_upper);
}

int pyu_is_title(uint32_t cp) {
    return category(cp) == UTF8PROC_CATEGORY_LT;
}

int pyu_is_cased(uint32_t cp) {
    return pyu_is_title(cp) || pyu_is_lower(cp) || pyu_is_upper(cp);
}

int pyu_is_case_ignorable(uint32_t cp) {
    switch (category(cp)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK: return 1;
    default: return IN_RANGES(cp, pyu_ignorable_extra);
    }
}

int pyu_is_printable(uint32_t cp) {
    switch (category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return 0;
    case UTF8PROC_CATEGORY_ZS: return cp == ' ';
    default: return 1;
    }
}

int pyu_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
