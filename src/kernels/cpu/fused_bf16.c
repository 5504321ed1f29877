/*
 * Fused kernels of the bf16 mixed-precision step: an f32 kernel whose output is also written as
 * bf16 in the same pass (the bf16 copy feeds the next matmul), so the activation is not read a
 * second time just to convert it.
 *
 *   rmsnorm_forward_bf16   out (M,C) f32 (may be NULL) and outb (M,C) bf16 of rmsnorm; rstd (M).
 *                          Bit-identical to rmsnorm_forward + bf16_from_f32 (the same arithmetic
 *                          per element, then the same round-to-nearest-even).
 *   rmsnorm_apply_bf16     outb of rmsnorm_forward_bf16 again from the saved rstd, bit for bit (the
 *                          same (x * r) * w, rounded): the backward recomputes it
 *   swiglu_forward_bf16    out (N) f32 (may be NULL) and outb (N) bf16 of silu(gate) * up
 *   swiglu_backward_fast   swiglu_backward's dgate, dup
 *   swiglu_forward_bf16_round  the bf16 step's MLP gate: gate and up (f32 matmul outputs)
 *                          rounded to bf16 and stored (they are the saved activations), and hact
 *                          computed from the ROUNDED values (as autocast, whose gate/up are bf16)
 *   swiglu_forward_bf16in  hact recomputed from the stored bf16 gate/up (backward): the same bits
 *                          as _round's, since both evaluate ft_swiglu1 on the same f32 values
 *   swiglu_backward_bf16   swiglu_backward reading bf16 gate/up (f32 arithmetic)
 *   rmsnorm_backward_fast  rmsnorm_backward with its row dot in f32 vectors instead of a double
 *                          chain per row (the dinp pass was ~2x its memory floor)
 * The swiglu kernels evaluate e^-g with ft_exp_simd (vec.h, within 1 ulp of expf) so the
 * loops vectorize; libm's expf kept them scalar. swiglu_forward_bf16in and swiglu_backward_bf16out
 * (the step's per-layer passes) are written on 16 lanes by hand with AVX512-BF16 (ft_swiglu16,
 * ft_swiglu_grad16, ft_bf16_round16: the scalar forms' bits, checked in test_vec). Their naive
 * twins are swiglu_forward / swiglu_backward (on the widened bf16 inputs for the bf16-input forms),
 * which the tests compare with (relative 1e-6; bf16 outputs within one bf16 step). The f32 training
 * path keeps the exact kernels.
 */
#include "ftune/kernels.h"

#include "grain.h"
#include "rmsnorm.h"
#include "vec.h"

#include <math.h>
#include <string.h>

void rmsnorm_forward_bf16(float *out, uint16_t *outb, float *rstd, const float *inp,
                          const float *weight, int M, int C, float eps) {
    const int64_t ng = ((int64_t)M + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < ng; g++) {
        const int nr = M - 4 * g < 4 ? (int)(M - 4 * g) : 4;
        double ss[4];
        ft_sumsq_rows(ss, inp + 4 * g * C, C, C, nr); /* as rmsnorm_forward */
        for (int j = 0; j < nr; j++) {
            const int64_t m = 4 * g + j;
            const float *x = inp + m * C; // (C)
            float ms = (float)(ss[j] / C);
            float r = 1.0f / sqrtf(ms + eps);
            uint16_t *yb = outb + m * C;
            if (out) {
                float *y = out + m * C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    y[c] = (x[c] * r) * weight[c];
                    yb[c] = ft_bf16_round(y[c]);
                }
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++) yb[c] = ft_bf16_round((x[c] * r) * weight[c]);
            }
            if (rstd) rstd[m] = r;
        }
    }
}

void rmsnorm_apply_bf16(uint16_t *outb, const float *inp, const float *rstd, const float *weight,
                        int M, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C; // (C)
        const float r = rstd[m];
        uint16_t *yb = outb + m * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yb[c] = ft_bf16_round((x[c] * r) * weight[c]);
    }
}

void swiglu_forward_bf16(float *out, uint16_t *outb, const float *gate, const float *up,
                         size_t N) {
    if (out) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < N; i++) {
            float g = gate[i];
            float y = ft_swiglu1(g, up[i]);
            out[i] = y;
            outb[i] = ft_bf16_round(y);
        }
        return;
    }
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i];
        outb[i] = ft_bf16_round(ft_swiglu1(g, up[i]));
    }
}

/* swiglu_backward's derivation (swiglu.c), s = sigmoid(g) = 1 / (1 + e^-g):
 *   dup = dout * g s ; dgate = dout * up * s (1 + g (1 - s)). Both WRITTEN. */
void swiglu_backward_fast(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, size_t N) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + ft_exp_simd(-g));
        dup[i] = dout[i] * (g * s);
        dgate[i] = dout[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
    }
}

void swiglu_forward_bf16_round(uint16_t *gateb, uint16_t *upb, uint16_t *outb, float *out,
                               const float *gate, const float *up, size_t N) {
    if (out) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < N; i++) {
            uint16_t gb = ft_bf16_round(gate[i]), ub = ft_bf16_round(up[i]);
            float y = ft_swiglu1(ft_bf16_widen(gb), ft_bf16_widen(ub));
            gateb[i] = gb;
            upb[i] = ub;
            out[i] = y;
            outb[i] = ft_bf16_round(y);
        }
        return;
    }
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) {
        uint16_t gb = ft_bf16_round(gate[i]), ub = ft_bf16_round(up[i]);
        gateb[i] = gb;
        upb[i] = ub;
        outb[i] = ft_bf16_round(ft_swiglu1(ft_bf16_widen(gb), ft_bf16_widen(ub)));
    }
}

void swiglu_forward_bf16in(float *out, uint16_t *outb, const uint16_t *gateb, const uint16_t *upb,
                           size_t N) {
    enum { SPAN = 4096 }; /* elements per task (a multiple of 16: only the last has a tail) */
    const size_t nt = (N + SPAN - 1) / SPAN;
#pragma omp parallel for schedule(static) if (N >= FT_OMP_GRAIN)
    for (size_t t = 0; t < nt; t++) {
        const size_t i = t * SPAN, n = N - i < SPAN ? N - i : SPAN;
        ft_swiglu_bf16_span(out ? out + i : NULL, outb + i, gateb + i, upb + i, n);
    }
}

void swiglu_backward_bf16(float *dgate, float *dup, const float *dout, const uint16_t *gateb,
                          const uint16_t *upb, size_t N) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++)
        ft_swiglu_grad1(&dgate[i], &dup[i], dout[i], gateb[i], upb[i]);
}

void swiglu_backward_bf16out(uint16_t *dgateb, uint16_t *dupb, const float *dout,
                             const uint16_t *gateb, const uint16_t *upb, size_t N) {
    enum { SPAN = 4096 }; /* elements per task, as swiglu_forward_bf16in */
    const size_t nt = (N + SPAN - 1) / SPAN;
#pragma omp parallel for schedule(static) if (N >= FT_OMP_GRAIN)
    for (size_t t = 0; t < nt; t++) {
        const size_t i = t * SPAN, n = N - i < SPAN ? N - i : SPAN;
        ft_swiglu_grad_bf16_span(dgateb + i, dupb + i, dout + i, NULL, gateb + i, upb + i, n);
    }
}

void rmsnorm_backward_fast(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int M, int C) {
    /* dweight as rmsnorm_backward's, in the same parallel region as dinp, no barrier between */
#pragma omp parallel if ((int64_t)M * C >= FT_OMP_GRAIN)
    {
        if (dweight) rmsnorm_dweight_part(dweight, dout, inp, rstd, M, C);
        if (dinp) {
#pragma omp for schedule(static) nowait
            for (int64_t m = 0; m < M; m++)
                ft_rmsnorm_dx_row(dinp + m * C, dout + m * C, inp + m * C, weight, rstd[m], C);
        }
    }
}
