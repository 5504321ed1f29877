/*
 * Shared helpers of the kernel lab (bench/bench_*.c; a lab, not tests): the machine's measured
 * peaks (f32 FMA and AVX512-BF16 dot-product throughput on all OpenMP threads), a best-of-R
 * timer, random buffers, and a closeness check against a naive reference that prints
 * "ok"/"MISMATCH" (a lab program exits non-zero on a mismatch, so a broken variant is never timed
 * silently). Header-only: every lab program is one .c file.
 */
#ifndef FTUNE_BENCH_LAB_H
#define FTUNE_BENCH_LAB_H

#include "ftune/core.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int lab_failures;

/* Peak f32 FMA GFLOP/s: each thread runs 16 independent 512-bit FMA chains (enough to cover the
 * FMA latency on any AVX-512 core). 2 flops per lane per FMA. The inner loop must be unrolled so
 * the 16 accumulators live in registers: left as a loop over an array (GCC -O2 does not unroll
 * it), every FMA loads and stores its accumulator and the chain runs at store-forwarding
 * latency, which measured a quarter to a third of the real peak. */
__attribute__((target("avx512f"), unused)) static double lab_peak_f32(void) {
    const long iters = 160000000;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = ft_time_s();
        float sink = 0;
#pragma omp parallel reduction(+ : sink)
        {
            __m512 acc[16];
            __m512 a = _mm512_set1_ps(1.0000001f), b = _mm512_set1_ps(0.9999999f);
            for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i);
            for (long it = 0; it < iters / 16; it++)
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
            for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
            sink += _mm512_reduce_add_ps(acc[0]);
        }
        double dt = ft_time_s() - t0;
        double gf = (double)omp_get_max_threads() * (iters / 16) * 16 * 16 * 2 / dt / 1e9;
        if (gf > best) best = gf;
        if (sink == 12345.0f) printf(" ");
    }
    return best;
}

/* Peak bf16 GFLOP/s with vdpbf16ps (16 lanes x 2 products x 2 flops per instruction);
 * 0 when the CPU lacks AVX512-BF16. */
__attribute__((target("avx512f,avx512bf16"))) static double lab_peak_bf16_impl(void) {
    const long iters = 160000000;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = ft_time_s();
        float sink = 0;
#pragma omp parallel reduction(+ : sink)
        {
            __m512 acc[16];
            __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f7f);
            for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i);
            for (long it = 0; it < iters / 16; it++)
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
            for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
            sink += _mm512_reduce_add_ps(acc[0]);
        }
        double dt = ft_time_s() - t0;
        double gf = (double)omp_get_max_threads() * (iters / 16) * 16 * 16 * 4 / dt / 1e9;
        if (gf > best) best = gf;
        if (sink == 12345.0f) printf(" ");
    }
    return best;
}

__attribute__((unused)) static double lab_peak_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") ? lab_peak_bf16_impl() : 0.0;
}

static uint64_t lab_rng = 0x243F6A8885A308D3ull;
__attribute__((unused)) static float lab_frand(void) { /* uniform in [-1, 1) */
    lab_rng ^= lab_rng >> 12;
    lab_rng ^= lab_rng << 25;
    lab_rng ^= lab_rng >> 27;
    return (float)(((lab_rng * 0x2545F4914F6CDD1Dull) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
__attribute__((unused)) static float *lab_rand(size_t n, float scale) {
    float *p = ft_calloc(n + 16, sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = lab_frand() * scale;
    return p;
}

/* |got - ref| <= atol + rtol |ref| over n elements; prints one line, counts failures. */
__attribute__((unused)) static int lab_check(const char *what, const float *got, const float *ref, size_t n, double atol,
                     double rtol) {
    double worst = 0;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= atol + rtol * fabs((double)ref[i]))) bad = 1;
        if (d > worst || d != d) worst = d, wi = i;
    }
    printf("  check %-40s %s (max |diff| %.3g at %zu, atol %.1g rtol %.1g)\n", what,
           bad ? "MISMATCH" : "ok", worst, wi, atol, rtol);
    lab_failures += bad;
    return !bad;
}

/* Best wall time of `reps` runs of the statement (after one warm-up run). */
#define LAB_TIME(best, reps, stmt)                                                                 \
    do {                                                                                           \
        stmt;                                                                                      \
        (best) = 1e30;                                                                             \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            double t0_ = ft_time_s();                                                              \
            stmt;                                                                                  \
            double dt_ = ft_time_s() - t0_;                                                        \
            if (dt_ < (best)) (best) = dt_;                                                        \
        }                                                                                          \
    } while (0)

#endif
