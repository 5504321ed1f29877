/*
 * Python's str semantics for single code points, shared inside the data module (jinja.c renders
 * chat templates as Python's Jinja2 does): full case mappings (SpecialCasing's unconditional
 * ones: U+00DF upper is "SS"), the Lowercase, Uppercase, Cased and Case_Ignorable properties
 * that str.lower's Final_Sigma rule, str.title, str.capitalize and str.swapcase read,
 * str.isprintable as repr() reads it, and str.isspace. Simple mappings and general categories come
 * from utf8proc, the rest from src/data/pyunicode_table.h (tools/gen_pyunicode.py). The conditional
 * mappings (Final_Sigma) are the caller's: they need the string around the code point. Not a
 * public contract.
 */
#ifndef FTUNE_PYUNICODE_H
#define FTUNE_PYUNICODE_H

#include <stdint.h>

enum { PYU_UPPER, PYU_LOWER, PYU_TITLE };

/* The full `which` mapping of `cp` (any value; past U+10FFFF it maps to itself) into out[0..n),
 * n = 1..3, returned. */
int pyu_case(uint32_t cp, int which, uint32_t out[3]);

int pyu_is_lower(uint32_t cp);          /* Python's str.islower() of one code point */
int pyu_is_upper(uint32_t cp);          /* str.isupper() */
int pyu_is_title(uint32_t cp);          /* general category Lt */
int pyu_is_cased(uint32_t cp);          /* Lowercase, Uppercase or Lt */
int pyu_is_case_ignorable(uint32_t cp); /* Unicode's Case_Ignorable */
int pyu_is_printable(uint32_t cp);      /* str.isprintable(): not C* or Z*, except U+0020 */
int pyu_is_space(uint32_t cp);          /* str.isspace(), what re's \s matches */

#endif
