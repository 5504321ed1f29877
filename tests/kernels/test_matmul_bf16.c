/*
 * bf16 mixed-precision matmul (src/kernels/cpu/matmul_bf16.c) against the naive f32 twin over
 * awkward shapes (1s, odd sizes, tails), in the three training layouts, plain and packed weights,
 * with and without bias, writing and accumulating; the packed weight reused across row counts
 * and refreshed after the weight changes; the f32->bf16 conversion bit for bit. The weight
 * gradient with a packed input (matmul_bf16_backward_weight): the pack reused, made again after
 * the input changes, and our packing pass equal bit for bit to oneDNN's reorder; weights packed
 * from f32 by our pass give products bit-identical to oneDNN's reorder (pack_rounding); the
 * weight gradient from dout given transposed (matmul_bf16_backward_weight_t, dout converted and
 * transposed by bf16_from_f32_t, itself checked bit for bit in both layouts).
 *
 * Tolerances, per element, with S = sum_k |a_k||b_k| (+ |old out| when accumulating), computed
 * by the reference loop from the same data:
 *   (1) vs the naive loop on the bf16-ROUNDED inputs (double accumulation): bf16 products are
 *       exact in f32 (8+8 significant bits), so only f32 summation error remains, which for any
 *       order is <= gamma_K S, gamma_K ~ K u32 (u32 = 2^-24). Tolerance (K+2) 2^-23 S: 2x that.
 *   (2) vs the naive loop on the f32 inputs (the exact reference): rounding each operand to bf16
 *       (8 significant bits, unit roundoff u = 2^-8) moves each product by <= (2u + u^2)|a||b|,
 *       so |err| <= (2^-7 + 2^-16) S + (1). Tolerance 1.01 * 2^-7 S + (K+2) 2^-23 S.
 * A wrong layout or a dropped term is off by O(S) and fails both.
 *   fused rmsnorm/swiglu with bf16 output: bit-identical to the f32 kernel + bf16_from_f32, and
 *   the norm's bf16 output recomputed from the saved rstd bit-identical to it.
 *   SwiGLU with bf16 gate/up (the bf16 step's saved activations): see swiglu_bf16_acts.
 *   bf16 head + cross-entropy vs the naive f32 twin: each logit moves by <= 2^-7 S_row (above),
 *     so each row's NLL by <= 2 max_j |dz_j|; the NLL sum is checked against that bound. The
 *     gradients (dlogits also rounded to bf16) are checked norm-wise, ||got-ref|| / ||ref|| <=
 * 2^-6: every operand carries relative error <= 2^-8, two roundings per product, and random-sign
 *     errors do not add up coherently; a wrong term is off by O(1).
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/crossentropy.h"
#include "ftune/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) p[i] = ft_test_frand();
    return p;
}
static uint16_t *to_bf16(const float *x, size_t n) {
    uint16_t *p = malloc(n * 2 + 2);
    bf16_from_f32(p, x, n);
    return p;
}
static float *rounded(const float *x, size_t n) { /* bf16-rounded copy, as f32 */
    float *p = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) p[i] = ft_bf16_to_f32(ft_f32_to_bf16(x[i]));
    return p;
}

/* C (m,n) = old + A·B (+bias) in double, A(i,k) = a[i*ars + k*acs], B(k,j) = b[k*brs + j*bcs];
 * S (m,n) = |old| + sum |A||B| (+|bias|). */
static void ref_mm(double *C, double *S, const float *old, const float *a, int64_t ars,
                   int64_t acs, const float *b, int64_t brs, int64_t bcs, const float *bias,
                   int m, int k, int n) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double c = old ? old[i * n + j] : 0, s = old ? fabs(old[i * n + j]) : 0;
            if (bias) c += bias[j], s += fabs(bias[j]);
            for (int64_t q = 0; q < k; q++) {
                double p = (double)a[i * ars + q * acs] * b[q * brs + j * bcs];
                c += p;
                s += fabs(p);
            }
            C[i * n + j] = c;
            S[i * n + j] = s;
        }
}

static void check_bound(const char *name, const float *got, const double *C, const double *S,
                        size_t n, double c) {
    size_t worst = 0;
    double excess = -INFINITY;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - C[i]), lim = c * S[i] + 1e-30;
        if (!(d <= lim)) bad = 1;
        if (d - lim > excess || d != d) excess = d - lim, worst = i;
    }
    CHECK(name, !bad && n > 0, "worst element %zu: got %.9g ref %.9g (bound %.3g = %.3g * S)",
          worst, n ? got[worst] : 0.0, n ? C[worst] : 0.0, n ? c * S[worst] : 0.0, c);
}

#define TOL_ROUNDED(K) (((K) + 2) / 8388608.0)
#define TOL_EXACT(K) (1.01 / 128.0 + TOL_ROUNDED(K))

/* One layout: got vs (1) reference on rounded inputs, (2) reference on f32 inputs. */
static void both(const char *tag, const char *what, const float *got, const float *old,
                 const float *a, const float *ar, int64_t ars, int64_t acs, const float *b,
                 const float *br, int64_t brs, int64_t bcs, const float *bias, int m, int k,
                 int n) {
    char name[192];
    double *C = malloc((size_t)m * n * sizeof(double) + 8),
           *S = malloc((size_t)m * n * sizeof(double) + 8);
    ref_mm(C, S, old, ar, ars, acs, br, brs, bcs, bias, m, k, n);
    snprintf(name, sizeof name, "bf16 %s %s vs rounded-input reference", what, tag);
    check_bound(name, got, C, S, (size_t)m * n, TOL_ROUNDED(k));
    ref_mm(C, S, old, a, ars, acs, b, brs, bcs, bias, m, k, n);
    snprintf(name, sizeof name, "bf16 %s %s vs f32 reference", what, tag);
    check_bound(name, got, C, S, (size_t)m * n, TOL_EXACT(k));
    free(C), free(S);
}

static void shape(int M, int K, int N, int with_bias) {
    char tag[64];
    snprintf(tag, sizeof tag, "M%d K%d N%d bias%d", M, K, N, with_bias);
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    float *x = rand_buf(mk), *w = rand_buf(nk), *dy = rand_buf(mn);
    float *bias = with_bias ? rand_buf(N) : NULL;
    float *xr = rounded(x, mk), *wr = rounded(w, nk), *dyr = rounded(dy, mn);
    uint16_t *xb = to_bf16(x, mk), *wb = to_bf16(w, nk), *dyb = to_bf16(dy, mn);

    /* forward: A = x (M,K) {K,1}; B = w^T (K,N) {1,K} */
    float *out = rand_buf(mn); /* garbage: WRITTEN */
    matmul_bf16_forward(out, xb, wb, bias, M, K, N, 0);
    both(tag, "forward", out, NULL, x, xr, K, 1, w, wr, 1, K, bias, M, K, N);
    float *old = rand_buf(mn), *acc = malloc(mn * 4 + 4);
    memcpy(acc, old, mn * 4);
    matmul_bf16_forward(acc, xb, wb, bias, M, K, N, 1);
    both(tag, "forward accumulate", acc, old, x, xr, K, 1, w, wr, 1, K, bias, M, K, N);

    ft_bf16_weight *pw = bf16_weight_create(w, K, N);
    matmul_bf16w_forward(out, xb, pw, bias, M, 0);
    both(tag, "packed forward", out, NULL, x, xr, K, 1, w, wr, 1, K, bias, M, K, N);

    /* input gradient: A = dy (M,N) {N,1}; B = w (N,K) {K,1}; ADDED into a non-zero buffer */
    float *di0 = rand_buf(mk), *di = malloc(mk * 4 + 4), *dw0 = rand_buf(nk),
          *dw = malloc(nk * 4 + 4);
    memcpy(di, di0, mk * 4);
    memcpy(dw, dw0, nk * 4);
    matmul_bf16_backward(di, dw, dyb, xb, wb, M, K, N);
    both(tag, "dinp", di, di0, dy, dyr, N, 1, w, wr, K, 1, NULL, M, N, K);
    /* weight gradient: A = dy^T (N,M) {1,N}; B = x (M,K) {K,1} */
    both(tag, "dw", dw, dw0, dy, dyr, 1, N, x, xr, K, 1, NULL, N, M, K);
    memcpy(di, di0, mk * 4);
    matmul_bf16w_backward_input(di, dyb, pw, M, 1);
    both(tag, "packed dinp", di, di0, dy, dyr, N, 1, w, wr, K, 1, NULL, M, N, K);
    /* writing instead of adding: whatever dinp held is overwritten (NaN included) */
    for (size_t i = 0; i < mk; i++)
        di[i] = NAN;
    matmul_bf16w_backward_input(di, dyb, pw, M, 0);
    both(tag, "packed dinp written", di, NULL, dy, dyr, N, 1, w, wr, K, 1, NULL, M, N, K);
    /* NULL skips: dw untouched when only dinp is asked for */
    memcpy(dw, dw0, nk * 4);
    matmul_bf16_backward(NULL, dw, dyb, xb, wb, M, K, N);
    matmul_bf16_backward(di, NULL, dyb, xb, wb, M, K, N);
    both(tag, "dw alone", dw, dw0, dy, dyr, 1, N, x, xr, K, 1, NULL, N, M, K);

    /* the weight gradient with x packed; a second product reuses the pack (fresh 0), and after
     * x changes fresh 1 must repack */
    ft_bf16_pack *pk = bf16_pack_create();
    memcpy(dw, dw0, nk * 4);
    matmul_bf16_backward_weight(dw, dyb, xb, pk, 1, M, K, N, 1);
    both(tag, "dw packed", dw, dw0, dy, dyr, 1, N, x, xr, K, 1, NULL, N, M, K);
    float *dw2 = malloc(nk * 4 + 4);
    memcpy(dw2, dw, nk * 4);
    matmul_bf16_backward_weight(dw2, dyb, xb, pk, 0, M, K, N, 1);
    both(tag, "dw packed, pack reused", dw2, dw, dy, dyr, 1, N, x, xr, K, 1, NULL, N, M, K);
    float *x2 = rand_buf(mk), *x2r = rounded(x2, mk);
    bf16_from_f32(xb, x2, mk); /* same buffer, new contents */
    memcpy(dw2, dw0, nk * 4);
    matmul_bf16_backward_weight(dw2, dyb, xb, pk, 1, M, K, N, 1);
    both(tag, "dw packed after the input changed", dw2, dw0, dy, dyr, 1, N, x2, x2r, K, 1, NULL, N,
         M, K);
    /* dout given transposed (bf16_from_f32_t's second output): the same product */
    uint16_t *dyb2 = malloc(mn * 2 + 2), *dybT = malloc(mn * 2 + 2);
    bf16_from_f32_t(dyb2, dybT, dy, M, N);
    float *dw4 = malloc(nk * 4 + 4);
    memcpy(dw4, dw0, nk * 4);
    matmul_bf16_backward_weight_t(dw4, dybT, xb, pk, 1, M, K, N, 1);
    both(tag, "dw packed, dout transposed", dw4, dw0, dy, dyr, 1, N, x2, x2r, K, 1, NULL, N, M, K);
    /* written, not added (accumulate 0): whatever dw held is overwritten, NaN included */
    for (size_t i = 0; i < nk; i++)
        dw4[i] = NAN;
    matmul_bf16_backward_weight(dw4, dyb, xb, pk, 0, M, K, N, 0);
    both(tag, "dw packed written", dw4, NULL, dy, dyr, 1, N, x2, x2r, K, 1, NULL, N, M, K);
    for (size_t i = 0; i < nk; i++)
        dw4[i] = NAN;
    matmul_bf16_backward_weight_t(dw4, dybT, xb, pk, 0, M, K, N, 0);
    both(tag, "dw packed, dout transposed, written", dw4, NULL, dy, dyr, 1, N, x2, x2r, K, 1, NULL,
         N, M, K);
    free(dw4);
    free(dyb2), free(dybT);
    /* the input packed by our pass and by oneDNN's reorder: the same bits */
    float *dw3 = malloc(nk * 4 + 4);
    char name[160];
    memcpy(dw3, dw0, nk * 4);
    setenv("FTUNE_NO_FAST_PACK", "1", 1);
    matmul_bf16_backward_weight(dw3, dyb, xb, pk, 1, M, K, N, 1);
    unsetenv("FTUNE_NO_FAST_PACK");
    snprintf(name, sizeof name, "bf16 dw packed %s: own pack == oneDNN reorder, bit for bit", tag);
    CHECK(name, !memcmp(dw3, dw2, nk * 4), "results differ");
    free(dw3);
    bf16_from_f32(xb, x, mk);
    bf16_pack_free(pk);
    free(dw2), free(x2), free(x2r);

    /* the packed weight after the weight changes: refresh must repack */
    for (size_t i = 0; i < nk; i++) w[i] = -0.5f * w[i] + 0.25f;
    free(wr);
    wr = rounded(w, nk);
    bf16_weight_refresh(pw);
    matmul_bf16w_forward(out, xb, pw, bias, M, 0);
    both(tag, "packed forward after refresh", out, NULL, x, xr, K, 1, w, wr, 1, K, bias, M, K, N);
    memcpy(di, di0, mk * 4);
    matmul_bf16w_backward_input(di, dyb, pw, M, 1);
    both(tag, "packed dinp after refresh", di, di0, dy, dyr, N, 1, w, wr, K, 1, NULL, M, N, K);
    /* a second row count on the same packed weight (a shorter micro-batch) */
    if (M > 1) {
        int M2 = M / 2 + 1;
        matmul_bf16w_forward(out, xb, pw, bias, M2, 0);
        char t2[80];
        snprintf(t2, sizeof t2, "%s M2 %d", tag, M2);
        both(t2, "packed forward", out, NULL, x, xr, K, 1, w, wr, 1, K, bias, M2, K, N);
    }
    bf16_weight_free(pw);
    free(x), free(w), free(dy), free(bias), free(xr), free(wr), free(dyr), free(xb), free(wb);
    free(dyb), free(out), free(old), free(acc), free(di0), free(di), free(dw0), free(dw);
}

/* bf16_from_f32 must equal ft_f32_to_bf16 bit for bit (ties, NaN, inf, subnormals, signs). */
static void conversion(void) {
    uint32_t special[] = {0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00008000, 0x00018000,
                          0x3f808000, 0x3f818000, 0x3f80ffff, 0x7f7fffff, 0x7f800000, 0xff800000,
                          0x7fc00000, 0x7f800001, 0xffffffff, 0x477fe000};
    size_t ns = sizeof special / sizeof special[0], n = ns + 100000;
    float *x = malloc(n * 4);
    memcpy(x, special, sizeof special);
    uint64_t s = 12345;
    for (size_t i = ns; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(s >> 32);
        memcpy(&x[i], &u, 4);
    }
    uint16_t *b = malloc(n * 2);
    bf16_from_f32(b, x, n);
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (b[i] != ft_f32_to_bf16(x[i])) bad = i;
    CHECK("bf16_from_f32 bit-identical to ft_f32_to_bf16", bad == n,
          "element %zu: 0x%04x vs 0x%04x", bad, bad < n ? b[bad] : 0,
          bad < n ? ft_f32_to_bf16(x[bad]) : 0);
    float *y = malloc(n * 4);
    bf16_to_f32(y, b, n);
    bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (memcmp(&y[i], &(float){ft_bf16_to_f32(b[i])}, 4)) bad = i;
    CHECK("bf16_to_f32 bit-identical to ft_bf16_to_f32", bad == n, "element %zu", bad);
    /* bf16_from_f32_t: the same bits in both layouts, over tile edges (32 rows x 16 columns) */
    static const int tsh[][2] = {{1, 1},   {31, 17}, {32, 16}, {33, 15},
                                 {64, 48}, {65, 33}, {97, 577}};
    for (size_t t = 0; t < sizeof tsh / sizeof tsh[0]; t++) {
        int M = tsh[t][0], N = tsh[t][1];
        size_t mn = (size_t)M * N;
        uint16_t *d = malloc(mn * 2), *dT = malloc(mn * 2);
        const float *src = x + (t * 7919) % (n - mn); /* specials at the start of some */
        if (t % 2 == 0) src = x;
        bf16_from_f32_t(d, dT, src, M, N);
        size_t bad_at = mn;
        for (size_t i = 0; i < mn && bad_at == mn; i++) {
            size_t m = i / N, c = i % N;
            if (d[i] != ft_f32_to_bf16(src[i]) || dT[c * M + m] != d[i]) bad_at = i;
        }
        char name[96];
        snprintf(name, sizeof name, "bf16_from_f32_t M%d N%d: ft_f32_to_bf16 in both layouts", M,
                 N);
        CHECK(name, bad_at == mn, "element %zu (row %zu, col %zu)", bad_at, bad_at / N, bad_at % N);
        free(d), free(dT);
    }
    free(x), free(b), free(y);
}

/* Worst errors of a SwiGLU backward (dg, du) against the reference (rg, ru), each as a fraction
 * of 1e-6 of its term's scale: |dy u| (1 + |g|) for dgate, |dy g| for dup. */
static void swiglu_bwd_excess(double *wg, double *wu, const float *dg, const float *du,
                              const float *rg, const float *ru, const float *dy, const float *g,
                              const float *u, size_t N) {
    *wg = *wu = 0;
    for (size_t i = 0; i < N; i++) {
        double eg = fabs((double)dg[i] - rg[i]), eu = fabs((double)du[i] - ru[i]);
        double sg = 1e-6 * (fabs((double)dy[i] * u[i]) * (1 + fabs((double)g[i]))) + 1e-30;
        double su = 1e-6 * fabs((double)dy[i] * g[i]) + 1e-30;
        if (eg / sg > *wg) *wg = eg / sg;
        if (eu / su > *wu) *wu = eu / su;
    }
}

static void fused(void) {
    const int M = 37, C = 75;
    float *x = rand_buf((size_t)M * C), *w = rand_buf(C), *y = malloc(M * C * 4), *r1 = malloc(M * 4),
          *y2 = malloc(M * C * 4), *r2 = malloc(M * 4);
    uint16_t *yb = malloc(M * C * 2), *yb2 = malloc(M * C * 2), *yb3 = malloc(M * C * 2);
    rmsnorm_forward(y, r1, x, w, M, C, 1e-5f);
    bf16_from_f32(yb, y, (size_t)M * C);
    rmsnorm_forward_bf16(y2, yb2, r2, x, w, M, C, 1e-5f);
    rmsnorm_forward_bf16(NULL, yb3, NULL, x, w, M, C, 1e-5f);
    CHECK("rmsnorm_forward_bf16 == rmsnorm_forward + bf16_from_f32",
          !memcmp(y, y2, M * C * 4) && !memcmp(r1, r2, M * 4) && !memcmp(yb, yb2, M * C * 2) &&
              !memcmp(yb, yb3, M * C * 2),
          "outputs differ");
    memset(yb3, 0, M * C * 2);
    rmsnorm_apply_bf16(yb3, x, r2, w, M, C); /* the backward's recompute from the saved rstd */
    CHECK("rmsnorm_apply_bf16 (from the saved rstd) == rmsnorm_forward_bf16's bf16 output",
          !memcmp(yb2, yb3, M * C * 2), "outputs differ");
    size_t N = (size_t)M * C;
    float *g = rand_buf(N), *u = rand_buf(N);
    for (size_t i = 0; i < N; i++) g[i] *= 6; /* exercise silu's tails */
    swiglu_forward(y, g, u, N);
    swiglu_forward_bf16(y2, yb2, g, u, N);
    swiglu_forward_bf16(NULL, yb3, g, u, N);
    bf16_from_f32(yb, y2, N);
    /* vectorized exp: within 1e-6 relative of the libm kernel (+1e-30 for exact zeros), and the
     * bf16 copy is exactly the rounding of the f32 output, with or without it */
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < N; i++) {
        double d = fabs((double)y2[i] - y[i]) / (fabs((double)y[i]) + 1e-30);
        if (d > worst) worst = d, wi = i;
    }
    CHECK("swiglu_forward_bf16 vs swiglu_forward (f32 1e-6 rel, bf16 = round(f32))",
          worst <= 1e-6 && !memcmp(yb, yb2, N * 2) && !memcmp(yb, yb3, N * 2),
          "worst rel %.3g at %zu (g %g)", worst, wi, g[wi]);
    float *dy = rand_buf(N), *dg1 = malloc(N * 4), *du1 = malloc(N * 4), *dg2 = malloc(N * 4),
          *du2 = malloc(N * 4);
    swiglu_backward(dg1, du1, dy, g, u, N);
    swiglu_backward_fast(dg2, du2, dy, g, u, N);
    double wg, wu;
    swiglu_bwd_excess(&wg, &wu, dg2, du2, dg1, du1, dy, g, u, N);
    CHECK("swiglu_backward_fast vs swiglu_backward (1e-6 of the term scale)", wg <= 1 && wu <= 1,
          "dgate %.3g, dup %.3g of the bound", wg, wu);
    free(dy), free(dg1), free(du1), free(dg2), free(du2);
    free(x), free(w), free(y), free(r1), free(y2), free(r2), free(yb), free(yb2), free(yb3);
    free(g), free(u);
}

/* rmsnorm_backward_fast (the bf16 step's norm backward) against rmsnorm_backward, whose row dot
 * sum_c dy_c w_c x_c is a double chain: the f32 dot (each term rounded twice, at most C + 4 adds)
 * is within 2 (C + 4) u S of it (u = 2^-24, S = sum_c |dy_c w_c x_c|), so k = r^2 dot / C is off
 * by r^2 2 (C + 4) u S / C + 3u |k|, and dx_c by r |x_c| times that, plus 4u of the terms' scale
 * for the two f32 evaluations. A skipped block, tail or lane is off by O(S / C) and fails. dweight
 * comes from rmsnorm_backward itself: bit for bit. */
static void rmsnorm_bwd_fast(int M, int C) {
    const double u = ldexp(1.0, -24);
    float *x = rand_buf((size_t)M * C), *w = rand_buf(C), *dy = rand_buf((size_t)M * C);
    float *r = malloc((size_t)M * 4 + 4), *dx0 = rand_buf((size_t)M * C);
    float *d1 = malloc((size_t)M * C * 4), *d2 = malloc((size_t)M * C * 4);
    float *gw1 = rand_buf(C), *gw2 = malloc((size_t)C * 4);
    for (int m = 0; m < M; m++)
        r[m] = 0.5f + fabsf(ft_test_frand());
    memcpy(d1, dx0, (size_t)M * C * 4);
    memcpy(d2, dx0, (size_t)M * C * 4);
    memcpy(gw2, gw1, (size_t)C * 4);
    rmsnorm_backward(d1, gw1, dy, x, w, r, M, C);
    rmsnorm_backward_fast(d2, gw2, dy, x, w, r, M, C);
    double worst = 0;
    for (int64_t m = 0; m < M; m++) {
        double S = 0, dot = 0;
        for (int c = 0; c < C; c++) {
            S += fabs((double)dy[m * C + c] * w[c] * x[m * C + c]);
            dot += (double)dy[m * C + c] * w[c] * x[m * C + c];
        }
        const double rm = r[m], k = rm * rm * dot / C;
        const double dk = rm * rm * 2 * (C + 4) * u * S / C + 3 * u * fabs(k);
        for (int c = 0; c < C; c++) {
            const size_t i = (size_t)m * C + c;
            const double b = rm * fabs(x[i]) * dk +
                             4 * u * (fabs(dx0[i]) + rm * (fabs(dy[i] * w[c]) + fabs(x[i] * k))) +
                             1e-30;
            const double e = fabs((double)d2[i] - d1[i]) / b;
            if (!(e <= worst)) worst = e;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_backward_fast M%d C%d vs rmsnorm_backward", M, C);
    CHECK(name, worst <= 1 && !memcmp(gw1, gw2, (size_t)C * 4), "worst |err| / bound %.3g%s", worst,
          memcmp(gw1, gw2, (size_t)C * 4) ? ", dweight differs" : "");
    free(x), free(w), free(dy), free(r), free(dx0), free(d1), free(d2), free(gw1), free(gw2);
}

/* The bf16-activation SwiGLU of the bf16 step (gate/up stored as bf16, hact recomputed in
 * backward) over awkward lengths (1, vector tails, several threads' chunks):
 *   _round: gateb/upb are exactly ft_f32_to_bf16(gate/up); out is the naive swiglu_forward on the
 *           widened bf16 values within 1e-6 relative (vectorized exp, a few ulp from expf; +1e-30
 *           for exact zeros); outb is exactly the rounding of out; out = NULL gives the same outb.
 *   _bf16in: the recompute from gateb/upb gives the SAME bits as _round (forward and backward
 *           must see one hact).
 *   swiglu_backward_bf16: the naive swiglu_backward on the widened values within 1e-6 of each
 *           term's scale (|dy u| (1+|g|) for dgate, |dy g| for dup), and bit-identical to
 *           swiglu_backward_fast on them (the same formula); _bf16out = bf16_from_f32 of
 *           its results, bit for bit. */
static void swiglu_bf16_acts(size_t N) {
    char name[160];
    float *g = rand_buf(N), *u = rand_buf(N), *dy = rand_buf(N);
    for (size_t i = 0; i < N; i++) g[i] *= 6; /* silu's tails */
    uint16_t *gb = malloc(N * 2 + 2), *ub = malloc(N * 2 + 2), *hb = malloc(N * 2 + 2),
             *hb2 = malloc(N * 2 + 2), *hb3 = malloc(N * 2 + 2), *hb4 = malloc(N * 2 + 2);
    float *h = malloc(N * 4 + 4), *h3 = malloc(N * 4 + 4), *gw = malloc(N * 4 + 4),
          *uw = malloc(N * 4 + 4), *ref = malloc(N * 4 + 4);
    swiglu_forward_bf16_round(gb, ub, hb, h, g, u, N);
    swiglu_forward_bf16_round(gb, ub, hb2, NULL, g, u, N);
    swiglu_forward_bf16in(h3, hb3, gb, ub, N);
    swiglu_forward_bf16in(NULL, hb4, gb, ub, N);
    size_t bad = N;
    for (size_t i = 0; i < N && bad == N; i++)
        if (gb[i] != ft_f32_to_bf16(g[i]) || ub[i] != ft_f32_to_bf16(u[i])) bad = i;
    for (size_t i = 0; i < N; i++) gw[i] = ft_bf16_to_f32(gb[i]), uw[i] = ft_bf16_to_f32(ub[i]);
    swiglu_forward(ref, gw, uw, N);
    double worst = 0;
    size_t wi = 0, badb = N;
    for (size_t i = 0; i < N; i++) {
        double d = fabs((double)h[i] - ref[i]) / (fabs((double)ref[i]) + 1e-30);
        if (d > worst) worst = d, wi = i;
        if (badb == N && hb[i] != ft_f32_to_bf16(h[i])) badb = i;
    }
    snprintf(name, sizeof name, "swiglu_forward_bf16_round N=%zu: gate/up = bf16 round, out vs "
             "swiglu_forward on them 1e-6 rel, outb = round(out)", N);
    CHECK(name, bad == N && worst <= 1e-6 && badb == N && !memcmp(hb, hb2, N * 2),
          "gate/up bad at %zu, worst rel %.3g at %zu, outb bad at %zu", bad, worst, wi, badb);
    snprintf(name, sizeof name, "swiglu_forward_bf16in N=%zu == _round bit for bit", N);
    CHECK(name, !memcmp(h, h3, N * 4) && !memcmp(hb, hb3, N * 2) && !memcmp(hb, hb4, N * 2),
          "recompute differs from the forward");
    float *dg1 = malloc(N * 4 + 4), *du1 = malloc(N * 4 + 4), *dg2 = malloc(N * 4 + 4),
          *du2 = malloc(N * 4 + 4), *dg3 = malloc(N * 4 + 4), *du3 = malloc(N * 4 + 4);
    swiglu_backward(dg1, du1, dy, gw, uw, N);
    swiglu_backward_bf16(dg2, du2, dy, gb, ub, N);
    swiglu_backward_fast(dg3, du3, dy, gw, uw, N);
    double wg, wu;
    swiglu_bwd_excess(&wg, &wu, dg2, du2, dg1, du1, dy, gw, uw, N);
    snprintf(name, sizeof name, "swiglu_backward_bf16 N=%zu vs swiglu_backward (1e-6 of the term "
             "scale), == swiglu_backward_fast on the widened inputs", N);
    CHECK(name, wg <= 1 && wu <= 1 && !memcmp(dg2, dg3, N * 4) && !memcmp(du2, du3, N * 4),
          "dgate %.3g, dup %.3g of the bound", wg, wu);
    uint16_t *dgb = malloc(N * 2 + 2), *dub = malloc(N * 2 + 2), *dgr = malloc(N * 2 + 2),
             *dur = malloc(N * 2 + 2);
    swiglu_backward_bf16out(dgb, dub, dy, gb, ub, N);
    bf16_from_f32(dgr, dg2, N);
    bf16_from_f32(dur, du2, N);
    snprintf(name, sizeof name, "swiglu_backward_bf16out N=%zu == bf16_from_f32 of _bf16's", N);
    CHECK(name, !memcmp(dgb, dgr, N * 2) && !memcmp(dub, dur, N * 2), "bf16 results differ");
    free(dgb), free(dub), free(dgr), free(dur);
    free(g), free(u), free(dy), free(gb), free(ub), free(hb), free(hb2), free(hb3), free(hb4);
    free(h), free(h3), free(gw), free(uw), free(ref);
    free(dg1), free(du1), free(dg2), free(du2), free(dg3), free(du3);
}

/* dlog_rows: dlogb's rows (the weight gradient over runs of chunks); hole: one whole chunk (the
 * second) of ignored labels, which splits a run. The kernel cuts M rows into equal chunks of at
 * most `chunk` (cr rows below). dx must not depend on dlog_rows (bit for bit), nor the NLL; nor
 * on whether the weight gradient's rows of xb are packed first (xpk). */
static void xent_bf16(int M, int C, int V, int chunk, int dlog_rows, int hole) {
    char name[200];
    float *x = rand_buf((size_t)M * C), *w = rand_buf((size_t)V * C);
    int *lab = malloc(M * sizeof(int));
    int nch = (M + chunk - 1) / chunk, cr = (M + nch - 1) / nch;
    for (int m = 0; m < M; m++)
        lab[m] = m % 5 == 3 || (hole && m >= cr && m < 2 * cr) ? FT_IGNORE_INDEX : (m * 7919) % V;
    int rows = dlog_rows > chunk ? dlog_rows : chunk;
    float *dx1 = calloc((size_t)M * C, 4), *dw1 = calloc((size_t)V * C, 4);
    float *dx2 = calloc((size_t)M * C, 4), *dw2 = calloc((size_t)V * C, 4);
    float *dx4 = calloc((size_t)M * C, 4), *dw4 = calloc((size_t)V * C, 4);
    float *logits = malloc((size_t)chunk * V * 4);
    uint16_t *dlogb = malloc((size_t)rows * V * 2), *xb = to_bf16(x, (size_t)M * C);
    ft_bf16_weight *pw = bf16_weight_create(w, C, V);
    ft_bf16_pack *pk = bf16_pack_create();
    int64_t n1 = 0, n2 = 0, n3 = 0, n4 = 0, n5 = 0;
    float scale = 1.0f / 3;
    double nll1 = crossentropy_bf16_forward_backward(dx1, dw1, &n1, logits, dlogb, xb, pw, pk, lab,
                                                     scale, M, C, V, chunk, dlog_rows);
    double nll2 = crossentropy_forward_backward_naive(dx2, dw2, &n2, x, w, lab, scale, M, C, V);
    double nll3 = crossentropy_bf16_forward_backward(NULL, NULL, &n3, logits, NULL, xb, pw, NULL,
                                                     lab, 0, M, C, V, chunk, 0);
    double nll4 = crossentropy_bf16_forward_backward(dx4, dw4, &n4, logits, dlogb, xb, pw, pk, lab,
                                                     scale, M, C, V, chunk, chunk);
    float *dx5 = calloc((size_t)M * C, 4), *dw5 = calloc((size_t)V * C, 4);
    double nll5 = crossentropy_bf16_forward_backward(dx5, dw5, &n5, logits, dlogb, xb, pw, NULL,
                                                     lab, scale, M, C, V, chunk, dlog_rows);
    double smax = 0; /* max over rows and vocab of sum_c |x||w| */
    for (int m = 0; m < M; m++)
        for (int j = 0; j < V; j++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += fabs((double)x[m * C + c] * w[(size_t)j * C + c]);
            if (s > smax) smax = s;
        }
    double bound = n2 * 2 * TOL_EXACT(C) * smax;
    snprintf(name, sizeof name, "bf16 cross-entropy nll M%d C%d V%d chunk%d dlog_rows%d%s", M, C, V,
             chunk, dlog_rows, hole ? " hole" : "");
    CHECK(name,
          n1 == n2 && n3 == n2 && n4 == n2 && fabs(nll1 - nll2) <= bound && nll3 == nll1 &&
              nll4 == nll1,
          "nll %.9g ref %.9g (bound %.3g) targets %lld/%lld/%lld/%lld", nll1, nll2, bound,
          (long long)n1, (long long)n2, (long long)n3, (long long)n4);
    double ex = rel_l2(dx1, dx2, (size_t)M * C), ew = rel_l2(dw1, dw2, (size_t)V * C);
    snprintf(name, sizeof name, "bf16 cross-entropy dx, dw M%d C%d V%d chunk%d dlog_rows%d%s", M, C,
             V, chunk, dlog_rows, hole ? " hole" : "");
    CHECK(name, ex <= 1.0 / 64 && ew <= 1.0 / 64, "rel l2 dx %.3g dw %.3g (tolerance %.3g)", ex, ew,
          1.0 / 64);
    /* grouping changes only dW's f32 summation order: dx the same bits, dW within f32 rounding
     * of the sums (one rounding per product added, relative to the bf16 operands' own error) */
    double e4 = rel_l2(dw1, dw4, (size_t)V * C);
    snprintf(name, sizeof name,
             "bf16 cross-entropy dlog_rows%d vs %d M%d V%d%s: dx bit-identical, "
             "dw rel l2 <= 1e-6",
             dlog_rows, chunk, M, V, hole ? " hole" : "");
    CHECK(name, !memcmp(dx1, dx4, (size_t)M * C * 4) && e4 <= 1e-6, "dx %s, dw rel l2 %.3g",
          memcmp(dx1, dx4, (size_t)M * C * 4) ? "differs" : "same", e4);
    /* xb packed by our pass or reordered by oneDNN inside the product: the same bf16 operands in
     * the same blocked layout, so the same sums; held to the f32 rounding bound above all the
     * same (the two paths may block the reduction differently) */
    double e5 = rel_l2(dw1, dw5, (size_t)V * C);
    snprintf(name, sizeof name,
             "bf16 cross-entropy packed xb vs not M%d V%d dlog_rows%d%s: nll, dx bit-identical, "
             "dw rel l2 <= 1e-6",
             M, V, dlog_rows, hole ? " hole" : "");
    CHECK(name, nll5 == nll1 && n5 == n1 && !memcmp(dx1, dx5, (size_t)M * C * 4) && e5 <= 1e-6,
          "nll %.17g vs %.17g, dx %s, dw rel l2 %.3g", nll5, nll1,
          memcmp(dx1, dx5, (size_t)M * C * 4) ? "differs" : "same", e5);
    free(dx5), free(dw5);
    bf16_pack_free(pk);
    bf16_weight_free(pw);
    free(x), free(w), free(lab), free(dx1), free(dw1), free(dx2), free(dw2), free(dx4), free(dw4);
    free(logits), free(dlogb), free(xb);
}

/* more row counts than a packed weight keeps copies for: it must rebuild, not fail */
static void many_row_counts(void) {
    const int K = 40, N = 24;
    float *w = rand_buf((size_t)N * K), *x = rand_buf((size_t)9 * K), *wr = rounded(w, (size_t)N * K),
          *xr = rounded(x, (size_t)9 * K), *out = malloc(9 * N * 4);
    uint16_t *xb = to_bf16(x, (size_t)9 * K);
    ft_bf16_weight *pw = bf16_weight_create(w, K, N);
    for (int M = 1; M <= 9; M++) {
        matmul_bf16w_forward(out, xb, pw, NULL, M, 0);
        char tag[32];
        snprintf(tag, sizeof tag, "row count %d of 9", M);
        both(tag, "packed forward", out, NULL, x, xr, K, 1, w, wr, 1, K, NULL, M, K, N);
    }
    bf16_weight_free(pw);
    free(w), free(x), free(wr), free(xr), free(out), free(xb);
}

/* A detached weight (bf16_weight_detach: f32 source dropped, one canonical copy, later layouts
 * reordered from it, the input-gradient one through swapped axes) must give the bytes a weight
 * packed from the source gives, for the detach row count and for more row counts than the slots
 * hold (a rebuild from the canonical copy), forward and input gradient alike; unpack must write
 * back the bf16 values exactly. The source is scribbled over after detaching, so any read of it
 * shows. Also bf16_exact on both kinds of buffers. */
static void detached(int K, int N, int M0) {
    char tag[96];
    const int MX = 11;
    size_t nk = (size_t)N * K;
    float *w = rand_buf(nk), *wr = rounded(w, nk), *wcopy = malloc(nk * 4), *back = malloc(nk * 4);
    float *x = rand_buf((size_t)MX * K), *dy = rand_buf((size_t)MX * N);
    uint16_t *xb = to_bf16(x, (size_t)MX * K), *dyb = to_bf16(dy, (size_t)MX * N);
    float *o1 = malloc((size_t)MX * N * 4), *o2 = malloc((size_t)MX * N * 4);
    float *d1 = calloc((size_t)MX * K, 4), *d2 = calloc((size_t)MX * K, 4);
    memcpy(wcopy, wr, nk * 4);
    ft_bf16_weight *ref = bf16_weight_create(wcopy, K, N), *det = bf16_weight_create(wr, K, N);
    snprintf(tag, sizeof tag, "bf16_exact: rounded yes, random no (%dx%d)", N, K);
    CHECK(tag, bf16_exact(wr, nk) && (nk < 4 || !bf16_exact(w, nk)), "wrong answer");
    int ok = bf16_weight_detach(det, M0) == 1;
    for (size_t i = 0; i < nk; i++) wr[i] = 1e30f; /* the source is gone for the handle */
    int bad_m = 0;
    for (int M = 1; M <= MX && ok; M++) {
        int Ms = (M * 5) % MX + 1; /* M0 first is not guaranteed: any order must work */
        matmul_bf16w_forward(o1, xb, ref, NULL, Ms, 0);
        matmul_bf16w_forward(o2, xb, det, NULL, Ms, 0);
        memset(d1, 0, (size_t)MX * K * 4);
        memset(d2, 0, (size_t)MX * K * 4);
        matmul_bf16w_backward_input(d1, dyb, ref, Ms, 1);
        matmul_bf16w_backward_input(d2, dyb, det, Ms, 1);
        if (memcmp(o1, o2, (size_t)Ms * N * 4) || memcmp(d1, d2, (size_t)Ms * K * 4)) {
            ok = 0;
            bad_m = Ms;
        }
    }
    snprintf(tag, sizeof tag, "detached weight %dx%d (detach at M %d): forward, dinp bit-identical",
             N, K, M0);
    CHECK(tag, ok, "differs at row count %d", bad_m);
    bf16_weight_unpack(det, back);
    snprintf(tag, sizeof tag, "detached weight %dx%d: unpack writes the bf16 values back", N, K);
    CHECK(tag, !memcmp(back, wcopy, nk * 4), "values differ");
    bf16_weight_free(ref), bf16_weight_free(det);
    free(w), free(wr), free(wcopy), free(back), free(x), free(dy), free(xb), free(dyb);
    free(o1), free(o2), free(d1), free(d2);
}

/* The step's weights are packed from f32 by matmul_bf16.c's own pass (fast_pack); a detached
 * weight's canonical copy by oneDNN's reorder. On unrounded random values (rounding to nearest
 * even exercised: a truncating or misplaced conversion changes some product bits) the two must
 * give bit-identical forward and input-gradient products, over shapes with tails in both
 * dimensions (K not a multiple of 32, N not of 64). */
static void pack_rounding(int K, int N) {
    const int M = 5;
    size_t nk = (size_t)N * K;
    float *w = rand_buf(nk), *w2 = malloc(nk * 4), *x = rand_buf((size_t)M * K),
          *dy = rand_buf((size_t)M * N);
    memcpy(w2, w, nk * 4);
    uint16_t *xb = to_bf16(x, (size_t)M * K), *dyb = to_bf16(dy, (size_t)M * N);
    float *o1 = malloc((size_t)M * N * 4), *o2 = malloc((size_t)M * N * 4);
    float *d1 = malloc((size_t)M * K * 4), *d2 = malloc((size_t)M * K * 4);
    ft_bf16_weight *own = bf16_weight_create(w, K, N), *dnnl = bf16_weight_create(w2, K, N);
    int ok = bf16_weight_detach(dnnl, M) == 1;
    matmul_bf16w_forward(o1, xb, own, NULL, M, 0);
    matmul_bf16w_forward(o2, xb, dnnl, NULL, M, 0);
    matmul_bf16w_backward_input(d1, dyb, own, M, 0);
    matmul_bf16w_backward_input(d2, dyb, dnnl, M, 0);
    ok = ok && !memcmp(o1, o2, (size_t)M * N * 4) && !memcmp(d1, d2, (size_t)M * K * 4);
    char tag[96];
    snprintf(tag, sizeof tag, "packing %dx%d from f32: own pass == oneDNN reorder (products)", N,
             K);
    CHECK(tag, ok, "products differ");
    bf16_weight_free(own), bf16_weight_free(dnnl);
    free(w), free(w2), free(x), free(dy), free(xb), free(dyb), free(o1), free(o2), free(d1);
    free(d2);
}

/* A transient weight (packed into the shared scratch at each product) gives the bytes a kept
 * pack gives, forward and input gradient, at several row counts, interleaved with another
 * transient weight of another shape (the scratch is shared), and sees a change of its f32
 * source at the next product without any refresh. */
static void transient(void) {
    const int K = 70, N = 45, K2 = 33, N2 = 130, MX = 9;
    float *w = rand_buf((size_t)N * K), *w2 = rand_buf((size_t)N2 * K2);
    float *x = rand_buf((size_t)MX * K2 + (size_t)MX * K), *dy = rand_buf((size_t)MX * N2);
    uint16_t *xb = to_bf16(x, (size_t)MX * K2 + (size_t)MX * K), *dyb = to_bf16(dy, (size_t)MX * N2);
    float *o1 = malloc((size_t)MX * N2 * 4), *o2 = malloc((size_t)MX * N2 * 4);
    float *d1 = malloc((size_t)MX * K * 4), *d2 = malloc((size_t)MX * K * 4);
    ft_bf16_weight *kept = bf16_weight_create(w, K, N), *tr = bf16_weight_create_transient(w, K, N);
    ft_bf16_weight *kept2 = bf16_weight_create(w2, K2, N2),
                   *tr2 = bf16_weight_create_transient(w2, K2, N2);
    int ok = 1, round;
    for (round = 0; round < 2 && ok; round++) {
        for (int M = 1; M <= MX && ok; M += 3) {
            matmul_bf16w_forward(o1, xb, kept, NULL, M, 0);
            matmul_bf16w_forward(o2, xb, tr, NULL, M, 0);
            ok &= !memcmp(o1, o2, (size_t)M * N * 4);
            matmul_bf16w_forward(o1, xb, kept2, NULL, M, 0);
            matmul_bf16w_forward(o2, xb, tr2, NULL, M, 0);
            ok &= !memcmp(o1, o2, (size_t)M * N2 * 4);
            memset(d1, 0, (size_t)M * K * 4);
            memset(d2, 0, (size_t)M * K * 4);
            matmul_bf16w_backward_input(d1, dyb, kept, M, 1);
            matmul_bf16w_backward_input(d2, dyb, tr, M, 1);
            ok &= !memcmp(d1, d2, (size_t)M * K * 4);
        }
        for (size_t i = 0; i < (size_t)N * K; i++) w[i] = 0.75f * w[i] - 0.125f; /* an update */
        bf16_weight_refresh(kept); /* the kept pack needs it; the transient one must not */
    }
    CHECK("transient weight: forward, dinp bit-identical to a kept pack, source changes seen", ok,
          "differs in round %d", round - 1);
    bf16_weight_free(kept), bf16_weight_free(tr), bf16_weight_free(kept2), bf16_weight_free(tr2);
    free(w), free(w2), free(x), free(dy), free(xb), free(dyb), free(o1), free(o2), free(d1);
    free(d2);
}

/* bf16_weights_prepack: several transient weights packed ahead in one parallel region, in both
 * layouts (one weight in both at once), with a kept weight and a NULL among them (skipped). Each
 * product must give a kept pack's bits; a copy serves one product only (the source changed after
 * it: the next product sees the change), and a source changed after a prepack is seen once the
 * copies were dropped, by bf16_weights_prepack_drop or by the next prepack; a product of another
 * row count packs its own. Shapes with tails in both dimensions, their total past the size where
 * the region runs on more than one thread. */
enum { PP_NW = 3, PP_MX = 7 };
static const int pp_kn[PP_NW][2] = {{70, 45}, {288, 576}, {576, 193}};
static float *pp_w[PP_NW], *pp_wk[PP_NW], *pp_o1, *pp_o2;
static uint16_t *pp_xb, *pp_dyb;
static ft_bf16_weight *pp_tr[PP_NW], *pp_kept[PP_NW];

/* 1 when transient weight i's product (forward, or input gradient) at M rows == its kept twin's */
static int pp_same(int i, int fwd, int M) {
    const int K = pp_kn[i][0], N = pp_kn[i][1];
    if (fwd) {
        matmul_bf16w_forward(pp_o1, pp_xb, pp_tr[i], NULL, M, 0);
        matmul_bf16w_forward(pp_o2, pp_xb, pp_kept[i], NULL, M, 0);
    } else {
        matmul_bf16w_backward_input(pp_o1, pp_dyb, pp_tr[i], M, 0);
        matmul_bf16w_backward_input(pp_o2, pp_dyb, pp_kept[i], M, 0);
    }
    return !memcmp(pp_o1, pp_o2, (size_t)M * (fwd ? N : K) * 4);
}

/* an optimizer-like change of weight i's source, mirrored into its kept twin */
static void pp_update(int i) {
    for (size_t e = 0; e < (size_t)pp_kn[i][0] * pp_kn[i][1]; e++)
        pp_wk[i][e] = pp_w[i][e] = 0.75f * pp_w[i][e] - 0.125f;
    bf16_weight_refresh(pp_kept[i]);
}

static void prepacked(void) {
    for (int i = 0; i < PP_NW; i++) {
        size_t nk = (size_t)pp_kn[i][0] * pp_kn[i][1];
        pp_w[i] = rand_buf(nk);
        pp_wk[i] = malloc(nk * 4);
        memcpy(pp_wk[i], pp_w[i], nk * 4);
        pp_tr[i] = bf16_weight_create_transient(pp_w[i], pp_kn[i][0], pp_kn[i][1]);
        pp_kept[i] = bf16_weight_create(pp_wk[i], pp_kn[i][0], pp_kn[i][1]);
    }
    float *x = rand_buf((size_t)PP_MX * 576), *dy = rand_buf((size_t)PP_MX * 576);
    pp_xb = to_bf16(x, (size_t)PP_MX * 576), pp_dyb = to_bf16(dy, (size_t)PP_MX * 576);
    pp_o1 = malloc((size_t)PP_MX * 576 * 4), pp_o2 = malloc((size_t)PP_MX * 576 * 4);
    ft_bf16_weight *const ws[] = {pp_tr[0], pp_kept[1], pp_tr[0], NULL, pp_tr[1], pp_tr[2]};
    static const int fwd[] = {1, 1, 0, 1, 0, 1};
    int stage = 0;
    bf16_weights_prepack(ws, fwd, 6, 5);
    int ok = pp_same(0, 1, 5) & pp_same(0, 0, 5) & pp_same(1, 0, 5) & pp_same(2, 1, 5) &
             pp_same(1, 1, 5);
    if (ok) { /* the copies were used: the next products pack anew */
        stage++;
        pp_update(0), pp_update(2);
        ok = pp_same(0, 1, 5) & pp_same(0, 0, 5) & pp_same(2, 1, 5);
    }
    if (ok) { /* dropped copies */
        stage++;
        bf16_weights_prepack(ws, fwd, 6, 5);
        pp_update(0), pp_update(1);
        bf16_weights_prepack_drop();
        ok = pp_same(0, 1, 5) & pp_same(1, 0, 5);
    }
    if (ok) { /* the next prepack drops the others' copies */
        stage++;
        bf16_weights_prepack(ws, fwd, 6, 5);
        pp_update(2);
        bf16_weights_prepack(ws, fwd, 1, 5);
        ok = pp_same(2, 1, 5) & pp_same(0, 1, 5);
    }
    if (ok) { /* other row counts */
        stage++;
        bf16_weights_prepack(ws, fwd, 6, 5);
        ok = pp_same(1, 0, PP_MX) & pp_same(2, 1, 3);
    }
    CHECK("prepacked transient weights: kept pack's bits, one product per copy, drops", ok,
          "wrong at stage %d", stage);
    for (int i = 0; i < PP_NW; i++) {
        bf16_weight_free(pp_tr[i]), bf16_weight_free(pp_kept[i]);
        free(pp_w[i]), free(pp_wk[i]);
    }
    free(x), free(dy), free(pp_xb), free(pp_dyb), free(pp_o1), free(pp_o2);
}

/* matmul_bf16w_forward_bf16 / _res (oneDNN post-ops) against the plain product followed by the
 * pass they replace — bf16_from_f32 of it, or += res — bit for bit: kept and transient weights, a
 * transient one prepacked ahead (the copy the plain product's layout made), with and without
 * bias, and K = 0 (no product: bias [+ res]). */
static void fused_epilogues(int M, int K, int N, int with_bias) {
    float *w = rand_buf((size_t)N * K + 1), *x = rand_buf((size_t)M * K + 1);
    float *res = rand_buf((size_t)M * N), *bias = with_bias ? rand_buf((size_t)N) : NULL;
    uint16_t *xb = to_bf16(x, (size_t)M * K + 1);
    float *ref = malloc((size_t)M * N * 4), *got = malloc((size_t)M * N * 4);
    uint16_t *refb = malloc((size_t)M * N * 2), *gotb = malloc((size_t)M * N * 2);
    ft_bf16_weight *ws[2] = {bf16_weight_create(w, K, N), bf16_weight_create_transient(w, K, N)};
    int ok = 1, where = 0;
    for (int i = 0; i < 3 && ok; i++) {
        ft_bf16_weight *wt = ws[i ? 1 : 0];
        static const int fwd1 = 1;
        matmul_bf16w_forward(ref, xb, wt, bias, M, 0);
        bf16_from_f32(refb, ref, (size_t)M * N);
        if (i == 2) bf16_weights_prepack(&wt, &fwd1, 1, M);
        matmul_bf16w_forward_bf16(gotb, xb, wt, bias, M);
        ok &= !memcmp(refb, gotb, (size_t)M * N * 2);
        where = 2 * i;
        if (!ok) break;
        for (size_t e = 0; e < (size_t)M * N; e++)
            ref[e] += res[e];
        if (i == 2) bf16_weights_prepack(&wt, &fwd1, 1, M);
        matmul_bf16w_forward_res(got, xb, wt, bias, res, M);
        ok &= !memcmp(ref, got, (size_t)M * N * 4);
        where = 2 * i + 1;
    }
    char name[128];
    snprintf(name, sizeof name, "fused epilogues (bf16 out, residual) M%d K%d N%d%s", M, K, N,
             with_bias ? " bias" : "");
    CHECK(name, ok, "differs from the product + pass (%s, %s weight)",
          where % 2 ? "residual" : "bf16 out",
          where / 2 == 0   ? "kept"
          : where / 2 == 1 ? "transient"
                           : "prepacked");
    bf16_weight_free(ws[0]), bf16_weight_free(ws[1]);
    free(w), free(x), free(res), free(bias), free(xb), free(ref), free(got), free(refb);
    free(gotb);
}

int main(void) {
    conversion();
    /* plain C kernels: they run with or without AVX512-BF16 */
    static const size_t sw[] = {1, 15, 17, 31, 1000, 3 * 65536 + 5};
    for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++) swiglu_bf16_acts(sw[i]);
    static const int rn[][2] = {{1, 1}, {3, 17}, {5, 31}, {7, 32}, {33, 75}, {64, 576}, {9, 1000}};
    for (size_t i = 0; i < sizeof rn / sizeof rn[0]; i++)
        rmsnorm_bwd_fast(rn[i][0], rn[i][1]);
    const char *off = getenv("FTUNE_NO_BF16");
    if (!ft_cpu_has_bf16()) {
        __builtin_cpu_init();
        CHECK("ft_cpu_has_bf16 is 0 only when FTUNE_NO_BF16 is set or the CPU lacks AVX512-BF16",
              (off && *off && *off != '0') || !__builtin_cpu_supports("avx512bf16"),
              "CPU has avx512bf16 but ft_cpu_has_bf16() said no");
        return ft_test_exit();
    }
    static const int sh[][3] = {{1, 1, 1},    {1, 257, 3},  {3, 5, 7},     {17, 33, 9},
                                {64, 130, 67}, {5, 288, 1}, {33, 16, 300}, {130, 576, 97}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        shape(sh[i][0], sh[i][1], sh[i][2], 1);
        shape(sh[i][0], sh[i][1], sh[i][2], 0);
    }
    shape(17, 33, 9, 1); /* cached primitive, same shape again */
    static const int fe[][3] = {{1, 1, 1},     {3, 5, 7},      {17, 33, 9}, {64, 130, 67},
                                {33, 16, 300}, {130, 576, 97}, {5, 0, 11}};
    for (size_t i = 0; i < sizeof fe / sizeof fe[0]; i++) {
        fused_epilogues(fe[i][0], fe[i][1], fe[i][2], 1);
        fused_epilogues(fe[i][0], fe[i][1], fe[i][2], 0);
    }
    fused();
    many_row_counts();
    detached(40, 24, 7);
    transient();
    prepacked();
    detached(576, 192, 9);
    detached(33, 130, 1);
    static const int pr[][2] = {{1, 1},      {130, 97},   {288, 33}, {33, 288},
                                {576, 1536}, {1536, 576}, {1100, 70}};
    for (size_t i = 0; i < sizeof pr / sizeof pr[0]; i++)
        pack_rounding(pr[i][0], pr[i][1]);
    xent_bf16(7, 13, 50, 3, 0, 0);
    xent_bf16(33, 64, 301, 8, 0, 0);
    xent_bf16(20, 96, 1000, 20, 0, 0);
    xent_bf16(33, 64, 301, 8, 16, 0);  /* chunks of 7 (5 rows last), runs of 2 chunks */
    xent_bf16(33, 64, 301, 8, 24, 1);  /* runs of 3, split by an ignored chunk */
    xent_bf16(70, 40, 517, 9, 100, 1); /* runs of 11 (dlog_rows not a multiple), a hole */
    xent_bf16(70, 40, 517, 9, 999, 0); /* one run longer than M */
    xent_bf16(64, 40, 517, 16, 32, 1); /* the step's tiling: equal chunks in equal runs */
    return ft_test_exit();
}
