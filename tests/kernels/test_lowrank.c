/*
 * The folded LoRA input-gradient term (src/kernels/cpu/lowrank.c) against naive twins: the term
 * u·A in double (lowrank_naive), added to dout in double and rounded once, then the unfused
 * kernel (swiglu_backward_bf16out) on that; lowrank_add against dinp + the exact term. Shapes: one
 * row, odd rows, K not a multiple of 16 (and below 16), odd R (the zero pair row), R 8 / 16 / 24 as
 * the step's groups, u as a window of wider rows (ldu > R).
 *
 * Tolerances, per element, with u = 2^-24, S_m,k = sum_i |u_i A_ik| (the term's magnitude) and
 * the kernel's dy = dout + term within delta = (R + 2) u (S + |dout|) of the exact value (an f32
 * sum of R products in some order, then the add into dout):
 *   add     |err| <= delta + u |ref| (the final rounding)
 *   swiglu  dgate = dy f_g, dup = dy f_u: |err| <= 2^-7 |ref| (the two sides may round to
 *           neighbouring bf16 values) + 2 delta |f| (f_g = up s (1 + g (1 - s)), f_u = g s)
 * The term is drawn as large as dout, so a missing, misplaced or mis-paired term fails by far.
 * rmsnorm_backward_fast_lr is checked bit for bit against lowrank_add then rmsnorm_backward_fast.
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint16_t *rand_bf16(size_t n) {
    uint16_t *p = malloc(n * 2 + 4);
    for (size_t i = 0; i < n; i++)
        p[i] = ft_f32_to_bf16(ft_test_frand());
    return p;
}

static float *rand_f32(size_t n) {
    float *p = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++)
        p[i] = ft_test_frand();
    return p;
}

/* the exact term (double) per element, its magnitude S, and dy_ref = f32(dout + term) */
static void make_ref(double *term, double *S, float *dyref, const float *dout, const ft_lowrank *lr,
                     const uint16_t *A, int M, int K) {
    for (int64_t m = 0; m < M; m++) {
        lowrank_naive(term + m * K, lr, m, K);
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int i = 0; i < lr->R; i++)
                s += fabs((double)ft_bf16_to_f32(lr->u[m * lr->ldu + i]) *
                          ft_bf16_to_f32(A[(size_t)i * K + k]));
            S[m * K + k] = s;
            dyref[m * K + k] = (float)((double)dout[m * K + k] + term[m * K + k]);
        }
    }
}

static void check_shape(int M, int K, int R, int ldu) {
    const double u = ldexp(1.0, -24);
    const size_t MK = (size_t)M * K;
    uint16_t *U = rand_bf16((size_t)M * ldu), *A = rand_bf16((size_t)R * K);
    uint32_t *ap = malloc(lowrank_pack_words(R, K) * 4 + 4);
    lowrank_pack(ap, A, R, K);
    ft_lowrank lr = {U, ldu, R, ap};
    float *dout = rand_f32(MK), *dyref = malloc(MK * 4);
    double *term = malloc(MK * 8), *S = malloc(MK * 8), *delta = malloc(MK * 8);
    make_ref(term, S, dyref, dout, &lr, A, M, K);
    for (size_t i = 0; i < MK; i++)
        delta[i] = (R + 2) * u * (S[i] + fabs(dout[i])) + 1e-30;
    char name[160];

    /* swiglu */
    uint16_t *gb = rand_bf16(MK), *ub = rand_bf16(MK);
    uint16_t *dg = malloc(MK * 2 + 4), *du = malloc(MK * 2 + 4);
    uint16_t *dgr = malloc(MK * 2 + 4), *dur = malloc(MK * 2 + 4);
    swiglu_backward_bf16out_lr(dg, du, dout, &lr, gb, ub, M, K);
    swiglu_backward_bf16out(dgr, dur, dyref, gb, ub, MK);
    double worst = 0;
    for (size_t i = 0; i < MK; i++) {
        double g = ft_bf16_to_f32(gb[i]), up = ft_bf16_to_f32(ub[i]);
        double s = 1 / (1 + exp(-g));
        double fg = up * s * (1 + g * (1 - s)), fu = g * s;
        double rg = ft_bf16_to_f32(dgr[i]), ru = ft_bf16_to_f32(dur[i]);
        double eg = fabs(ft_bf16_to_f32(dg[i]) - rg) /
                    (ldexp(fabs(rg), -7) + 2 * delta[i] * fabs(fg) + 1e-30);
        double eu = fabs(ft_bf16_to_f32(du[i]) - ru) /
                    (ldexp(fabs(ru), -7) + 2 * delta[i] * fabs(fu) + 1e-30);
        if (!(eg <= worst)) worst = eg;
        if (!(eu <= worst)) worst = eu;
    }
    snprintf(name, sizeof name, "swiglu_backward_bf16out_lr M%d F%d R%d ldu%d vs unfused", M, K, R,
             ldu);
    CHECK(name, worst <= 1, "worst |err| / bound %.3g", worst);

    /* lowrank_add: dinp + term, one f32 sum of R products then the add */
    float *d0 = rand_f32(MK), *d = malloc(MK * 4);
    memcpy(d, d0, MK * 4);
    lowrank_add(d, &lr, M, K);
    worst = 0;
    for (size_t i = 0; i < MK; i++) {
        double ref = (double)d0[i] + term[i];
        double e = fabs(d[i] - ref) / ((R + 2) * u * (S[i] + fabs(d0[i])) + u * fabs(ref) + 1e-30);
        if (!(e <= worst)) worst = e;
    }
    snprintf(name, sizeof name, "lowrank_add M%d K%d R%d ldu%d vs naive", M, K, R, ldu);
    CHECK(name, worst <= 1, "worst |err| / bound %.3g", worst);

    /* rmsnorm_backward_fast_lr: the bits of lowrank_add into a copy of dout followed by
     * rmsnorm_backward_fast (lowrank_add is checked against the naive term above, and
     * rmsnorm_backward_fast against rmsnorm_backward in test_matmul_bf16), dout left as it was;
     * dinp is accumulated into (a non-zero start) */
    if (K <= LOWRANK_MAXC) {
        float *x = rand_f32(MK), *w = rand_f32((size_t)K), *rstd = rand_f32((size_t)M);
        float *g1 = malloc(MK * 4), *g2 = malloc(MK * 4), *dy = malloc(MK * 4);
        float *keep = malloc(MK * 4);
        for (int64_t m = 0; m < M; m++)
            rstd[m] = 0.5f + fabsf(rstd[m]);
        memcpy(g1, d0, MK * 4), memcpy(g2, d0, MK * 4);
        memcpy(dy, dout, MK * 4), memcpy(keep, dout, MK * 4);
        lowrank_add(dy, &lr, M, K);
        rmsnorm_backward_fast(g2, NULL, dy, x, w, rstd, M, K);
        rmsnorm_backward_fast_lr(g1, dout, &lr, x, w, rstd, M, K);
        snprintf(name, sizeof name, "rmsnorm_backward_fast_lr M%d C%d R%d ldu%d == unfused", M, K,
                 R, ldu);
        CHECK(name, !memcmp(g1, g2, MK * 4) && !memcmp(dout, keep, MK * 4), "%s",
              memcmp(g1, g2, MK * 4) ? "dinp differs" : "dout written");
        free(x), free(w), free(rstd), free(g1), free(g2), free(dy), free(keep);
    }
    free(d0), free(d);

    free(U), free(A), free(ap), free(dout), free(dyref), free(term), free(S), free(delta);
    free(gb), free(ub), free(dg), free(du), free(dgr), free(dur);
}

int main(void) {
    check_shape(1, 16, 8, 8);
    check_shape(1, 7, 1, 1);
    check_shape(5, 17, 3, 4);
    check_shape(7, 1536, 8, 8);
    check_shape(64, 576, 24, 24);
    check_shape(33, 100, 16, 20);
    check_shape(4, 300, 7, 9);
    check_shape(9, 260, 24, 30);
    check_shape(6, 8192, 9, 9); /* the fused RMSNorm form's largest row */
    /* the pair layout itself: odd R gets a zero high half */
    uint16_t A[3 * 2] = {1, 2, 3, 4, 5, 6};
    uint32_t ap[4];
    lowrank_pack(ap, A, 3, 2);
    CHECK("lowrank_pack R3 K2 pair words",
          ap[0] == (1u | 3u << 16) && ap[1] == (2u | 4u << 16) && ap[2] == 5u && ap[3] == 6u,
          "%08x %08x %08x %08x", ap[0], ap[1], ap[2], ap[3]);
    return ft_test_exit();
}
