/*
 * The internal vector helpers (src/kernels/cpu/vec.h) that kernels rely on for bit-identical
 * results between forms: ft_exp16 (16 lanes, intrinsics) gives ft_exp_simd's bits on every input
 * of a dense sweep, the clamps and the infinities; ft_exp_simd stays within 2 ulp of libm's expf
 * where it is not clamped (its header claims 1 against the exact value; glibc's expf is itself
 * within ~0.5 ulp of it); ft_pair16v gives ft_pair16's f32 form and the
 * rounded halves it exposes are bf16_from_f32's bits; ft_bf16_round16 gives ft_bf16_round's bits
 * on every class of input (the SwiGLU kernels' vector forms are checked bit for bit against
 * their scalar twins in test_matmul_bf16). Bit-identical checks: the dp attention's
 * fused softmax and gradient steps (attention_flash_dp.c) depend on them.
 */
#include "../test.h"

#include "../../src/kernels/cpu/vec.h"
#include "ftune/kernels.h"

#include <math.h>
#include <string.h>

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

int main(void) {
    /* inputs: a sweep of [-100, 100] in steps of 2^-10, plus edges */
    enum { NS = 200 * 1024 + 1 };
    static float xs[NS + 16];
    int n = 0;
    for (int i = 0; i < NS; i++) xs[n++] = -100.0f + (float)i / 1024.0f;
    const float edges[] = {-INFINITY, INFINITY, -87.3f, -87.29f, -87.31f, 88.0f, 88.01f, 0.0f,
                           -0.0f,     1e-30f,   -1e-30f, 0.6931472f, -0.6931472f, 1.5f};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) xs[n++] = edges[i];
    while (n % 16) xs[n++] = 0.5f;

    long worst_ulp = 0;
    float worst_x = 0;
    for (int i = 0; i < n; i++) {
        float x = xs[i];
        if (x > -87.3f && x < 88.0f) {
            long d = (long)bits(ft_exp_simd(x)) - (long)bits(expf(x));
            if (labs(d) > worst_ulp) worst_ulp = labs(d), worst_x = x;
        }
    }
    CHECK("ft_exp_simd within 2 ulp of expf on (-87.3, 88)", worst_ulp <= 2, "%ld ulp at x = %.9g",
          worst_ulp, worst_x);
    /* a NaN passes the clamps: it must come out NaN (a diverged loss is caught by that), and
     * without undefined behaviour on the way (the exponent bits were a shift of a negative int) */
    volatile float qnan = NAN;
    CHECK("ft_exp_simd(NaN) is NaN", isnan(ft_exp_simd(qnan)), "got %g", ft_exp_simd(qnan));
#if defined(__AVX512F__)
    float e16[16];
    _mm512_storeu_ps(e16, ft_exp16(_mm512_set1_ps(qnan)));
    CHECK("ft_exp16(NaN) is NaN", isnan(e16[0]) && isnan(e16[15]), "got %g", e16[0]);
#endif

#if defined(__AVX512F__)
    int diff = 0;
    float dx = 0;
    for (int i = 0; i < n; i += 16) {
        float got[16];
        _mm512_storeu_ps(got, ft_exp16(_mm512_loadu_ps(xs + i)));
        for (int j = 0; j < 16; j++)
            if (bits(got[j]) != bits(ft_exp_simd(xs[i + j]))) diff++, dx = xs[i + j];
    }
    CHECK("ft_exp16 == ft_exp_simd bit for bit", diff == 0, "%d lanes differ (e.g. x = %.9g)", diff,
          dx);
#endif
#if defined(__AVX512BF16__)
    int bad = 0;
    for (int i = 0; i + 32 <= n; i += 32) {
        const float *a = xs + i, *b = xs + i + 16;
        float sa[16], sb[16];
        for (int j = 0; j < 16; j++) sa[j] = a[j] * 1e-3f, sb[j] = b[j] * -7e-2f;
        __m512i ab, w1 = ft_pair16v(_mm512_loadu_ps(sa), _mm512_loadu_ps(sb), &ab);
        __m512i w0 = ft_pair16(sa, sb, 0, 0xffff, 1);
        uint16_t ra[16], rb[16], halves[32];
        bf16_from_f32(ra, sa, 16), bf16_from_f32(rb, sb, 16);
        _mm512_storeu_si512(halves, ab);
        bad += memcmp(&w0, &w1, 64) != 0 || memcmp(halves, ra, 32) || memcmp(halves + 16, rb, 32);
    }
    CHECK("ft_pair16v == ft_pair16 (f32), its halves == bf16_from_f32", bad == 0,
          "%d groups differ", bad);

    /* ft_bf16_round16 against ft_bf16_round: random bit patterns (every class: normals,
     * denormals, zeros, infinities, NaNs), with ties (low half 0x8000) and denormals forced into
     * a quarter of the lanes each, so most vectors mix them with normal lanes */
    enum { NB = 1 << 20 };
    static uint32_t pat[NB];
    uint32_t st = 12345u;
    for (int i = 0; i < NB; i++) {
        st = st * 1664525u + 1013904223u;
        uint32_t u = st;
        if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u; /* a tie */
        if (i % 4 == 2) u &= 0x807fffffu;                /* denormal (or zero) */
        pat[i] = u;
    }
    pat[0] = 0x7fc00001u, pat[1] = 0xff800000u, pat[2] = 0x7f800001u, pat[3] = 0x00000001u;
    long rdiff = 0, nden = 0;
    uint32_t rx = 0;
    for (int i = 0; i < NB; i += 16) {
        uint16_t got[16];
        __m512 v;
        memcpy(&v, pat + i, 64);
        _mm256_storeu_si256((__m256i *)got, ft_bf16_round16(v));
        for (int j = 0; j < 16; j++) {
            float f;
            memcpy(&f, pat + i + j, 4);
            nden += fpclassify(f) == FP_SUBNORMAL;
            if (got[j] != ft_bf16_round(f)) rdiff++, rx = pat[i + j];
        }
    }
    CHECK("ft_bf16_round16 == ft_bf16_round bit for bit (1 Mi patterns)",
          rdiff == 0 && nden > NB / 8, "%ld lanes differ (e.g. bits 0x%08x), %ld denormals", rdiff,
          rx, nden);

    /* the SwiGLU forms on 16 lanes against the scalar ones, f32 bits (before any rounding to
     * bf16, which would hide a one-ulp change): gate/up bf16 patterns of every finite class
     * (denormals, zeros, the largest; the exp's integer scaling is undefined for a NaN) and dy
     * over the f32 range */
    long sdiff = 0, gdiff = 0;
    for (int i = 0; i + 48 <= NB; i += 48) {
        uint16_t gb[16], ub[16];
        float dy[16], y[16], dg[16], du[16];
        for (int j = 0; j < 16; j++) {
            gb[j] = (uint16_t)(pat[i + j] >> 16), ub[j] = (uint16_t)pat[i + 16 + j];
            if ((gb[j] & 0x7f80) == 0x7f80) gb[j] ^= 0x0100; /* no Inf / NaN */
            if ((ub[j] & 0x7f80) == 0x7f80) ub[j] ^= 0x0100;
            memcpy(&dy[j], pat + i + 32 + j, 4);
        }
        const __m512 g = ft_widen16v(gb), u = ft_widen16v(ub);
        __m512 vdg, vdu;
        _mm512_storeu_ps(y, ft_swiglu16(g, u));
        ft_swiglu_grad16(&vdg, &vdu, _mm512_loadu_ps(dy), g, u);
        _mm512_storeu_ps(dg, vdg), _mm512_storeu_ps(du, vdu);
        for (int j = 0; j < 16; j++) {
            float sdg, sdu;
            ft_swiglu_grad1(&sdg, &sdu, dy[j], gb[j], ub[j]);
            sdiff += bits(y[j]) != bits(ft_swiglu1(ft_bf16_widen(gb[j]), ft_bf16_widen(ub[j])));
            gdiff += bits(dg[j]) != bits(sdg) || bits(du[j]) != bits(sdu);
        }
    }
    CHECK("ft_swiglu16 / ft_swiglu_grad16 == ft_swiglu1 / ft_swiglu_grad1 bit for bit (f32)",
          sdiff == 0 && gdiff == 0, "forward %ld, backward %ld lanes differ", sdiff, gdiff);
#endif
    return ft_test_exit();
}
