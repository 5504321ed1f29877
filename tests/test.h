/*
 * Minimal test support for ftune's C tests: each check prints "PASS name" or "FAIL name: why"
 * (the runner counts these lines) and the binary exits non-zero if any check failed.
 * Closeness is |a - ref| <= atol + rtol*|ref|, reporting the worst element and its index.
 * Header-only on purpose: every test binary is one .c file.
 */
#ifndef FTUNE_TEST_H
#define FTUNE_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int ft_test_failures = 0;

static inline void ft_test_result(int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void ft_test_result(int ok, const char *name, const char *fmt, ...) {
    if (ok) {
        printf("PASS %s\n", name);
    } else {
        ft_test_failures++;
        printf("FAIL %s: ", name);
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
    }
    fflush(stdout);
}

#define CHECK(name, cond, ...) ft_test_result((cond), (name), __VA_ARGS__)

/* Test data: xorshift64*, uniform in [-1, 1), one fixed-seed stream per test binary (each is one
 * translation unit), so every run draws the same values. */
static uint64_t ft_test_rng = 0x9E3779B97F4A7C15ull;
static inline float ft_test_frand(void) {
    ft_test_rng ^= ft_test_rng >> 12;
    ft_test_rng ^= ft_test_rng << 25;
    ft_test_rng ^= ft_test_rng >> 27;
    uint64_t r = ft_test_rng * 0x2545F4914F6CDD1Dull;
    return (float)((r >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Compare n floats; prints one PASS/FAIL line with the worst element. Returns 1 if close. */
static inline int check_close(const char *name, const float *got, const float *ref, size_t n,
                              double atol, double rtol) {
    size_t worst = 0;
    double worst_excess = -INFINITY, max_abs = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        double lim = atol + rtol * fabs((double)ref[i]);
        if (!(d <= lim)) bad = 1; /* NaN fails */
        if (d > max_abs || d != d) max_abs = d;
        if (d - lim > worst_excess || d != d) {
            worst_excess = d - lim;
            worst = i;
        }
    }
    if (n == 0) bad = 1;
    ft_test_result(!bad, name, "worst element %zu: got %.9g ref %.9g (max |diff| %.3g, atol %.1g rtol %.1g)",
                   worst, n ? got[worst] : 0.0, n ? ref[worst] : 0.0, max_abs, atol, rtol);
    return !bad;
}

/* Relative error of whole vectors: ||got - ref|| / max(||ref||, tiny). */
static inline double rel_l2(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

static inline int ft_test_exit(void) { return ft_test_failures ? 1 : 0; }

#endif
