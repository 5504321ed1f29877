/*
 * LoRA's input gradient folded into the pass that reads it (bf16 step).
 *
 * A LoRA module's A side adds du·A to its input's gradient dinp (M,K): du (M,R) = s dout·B, A
 * (R,K), R = the group's stacked rank (8-24). As its own product (oneDNN, the `sum` post-op) that
 * is one more read and write of the f32 dinp, memory-bound: 0.46 ms per SmolLM layer for the down
 * projection's dhact (1024 x 1536). The swiglu backward reads dhact next anyway, so it adds the
 * term itself (measured in the step: the group's A side and the swiglu backward 1.36-1.74 ->
 * 1.12-1.34 ms per layer). Folding the q/k/v and gate/up terms into rmsnorm_backward was tried
 * too and was not faster: its double-precision row dot wants the whole row of dout + term first,
 * so the term is made twice or kept, and the (M,576) product it replaces costs only ~0.18 ms.
 *
 *   lowrank_pack      A (R,K) bf16 -> pair words ap[q K + k] = (A[2q][k], A[2q+1][k]) (a zero
 *                     row past an odd R): the VDPBF16PS operand, so 16 columns of the term are
 *                     (R+1)/2 instructions, each broadcasting the pair (du[m][2q], du[m][2q+1])
 *   swiglu_backward_bf16out_lr   swiglu_backward_bf16out (fused_bf16.c) of dout + du·A, with
 *                     dout, gate, up (M,F): the down projection's group
 *   rmsnorm_backward_fast_lr   rmsnorm_backward_fast's input gradient of dout + du·A, the
 *                     row's sum made in a stack buffer and never written back: the q/k/v and
 *                     gate/up groups, whose input gradient goes into an RMSNorm backward next.
 *                     The earlier attempt at this (the double-precision kernel) made the term
 *                     twice per row and was slower; with the row kept it is one pass and one
 *                     parallel region less (timings in bench/RESULTS.md, fifteenth session)
 *   lowrank_add       dinp += du·A as a pass of its own, for the other groups: the same
 *                     arithmetic. In the step (R 8-24, K 576) 0.08-0.11 ms per call, against
 *                     0.13-0.17 for oneDNN's product with the sum post-op
 *
 * The term is the bf16 products summed in f32 (pairs in order, each product rounded as VDPBF16PS
 * does; denormal bf16 inputs read as zero, as in oneDNN's bf16 products), then added to dout:
 * the same operands and the same single add into dout as the separate product, in another order
 * of its R terms. Without AVX512-BF16 a portable loop computes the sum (the bf16 LoRA step does
 * not run there; the loop keeps the kernels defined and testable). Naive twins: the term in
 * double, then the unfused kernel (tests/kernels/test_lowrank.c).
 */
#include "ftune/kernels.h"

#include "ftune/core.h"

#include "grain.h"
#include "vec.h"

#include <string.h>

#define LR_CHUNK 256 /* columns whose term is made before the elementwise loop runs over them */

size_t lowrank_pack_words(int R, int K) {
    return R > 0 && K > 0 ? (size_t)((R + 1) / 2) * (size_t)K : 0;
}

void lowrank_pack(uint32_t *ap, const uint16_t *A, int R, int K) {
    const int Q = (R + 1) / 2;
    for (int q = 0; q < Q; q++) {
        const uint16_t *a0 = A + (size_t)(2 * q) * K;
        const uint16_t *a1 = 2 * q + 1 < R ? a0 + K : NULL;
        uint32_t *o = ap + (size_t)q * K;
        int k = 0;
#if defined(__AVX512BF16__)
        for (; k + 16 <= K; k += 16) /* 16 pair words at a time (a NULL row reads as zeros) */
            _mm512_storeu_si512(o + k, ft_pair16(a0, a1, k, 0xffff, 0));
#endif
        for (; k < K; k++)
            o[k] = (uint32_t)a0[k] | (a1 ? (uint32_t)a1[k] << 16 : 0u);
    }
}

/* A[i][k] (bf16) back out of the pair words */
static inline uint16_t ap_elem(const ft_lowrank *lr, int64_t K, int i, int64_t k) {
    const uint32_t w = lr->ap[(int64_t)(i / 2) * K + k];
    return (uint16_t)(i % 2 ? w >> 16 : w & 0xffffu);
}

void lowrank_naive(double *out, const ft_lowrank *lr, int64_t m, int K) {
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int i = 0; i < lr->R; i++)
            s +=
                (double)ft_bf16_widen(lr->u[m * lr->ldu + i]) * ft_bf16_widen(ap_elem(lr, K, i, k));
        out[k] = s;
    }
}

/* t[0..nc) = sum_i u[i] A[i][k0 + l] for the row u (R bf16) over the columns k0 + [0, nc),
 * nc <= LR_CHUNK (t padded to a multiple of 16, the padding zero). Eight column vectors at a time:
 * each lane's sum is a chain of (R+1)/2 dependent VDPBF16PS, so eight chains keep the unit busy
 * (one chain at a time ran at the instruction's latency). */
#if defined(__AVX512BF16__)
static inline void lowrank_row(float *t, const uint16_t *u, const ft_lowrank *lr, int64_t K,
                               int64_t k0, int nc) {
    const int Q = (lr->R + 1) / 2, odd = lr->R & 1;
    for (int c0 = 0; c0 < nc; c0 += 128) {
        __m512 acc[8];
        __mmask16 msk[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            acc[v] = _mm512_setzero_ps();
            msk[v] = ft_lanes16(nc - c0 - 16 * v);
        }
        for (int q = 0; q < Q; q++) {
            const uint32_t w = odd && q == Q - 1 ? u[2 * q] : ft_ld32(u + 2 * q);
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)w);
            const uint32_t *a = lr->ap + q * K + k0 + c0;
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++)
                acc[v] = _mm512_dpbf16_ps(
                    acc[v], (__m512bh)_mm512_maskz_loadu_epi32(msk[v], a + 16 * v), b);
        }
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++)
            if (c0 + 16 * v < nc) _mm512_storeu_ps(t + c0 + 16 * v, acc[v]);
    }
}
#else
static inline void lowrank_row(float *t, const uint16_t *u, const ft_lowrank *lr, int64_t K,
                               int64_t k0, int nc) {
    for (int l = 0; l < (nc + 15) / 16 * 16; l++) {
        float s = 0.0f;
        for (int i = 0; l < nc && i < lr->R; i++)
            s += ft_bf16_widen(u[i]) * ft_bf16_widen(ap_elem(lr, K, i, k0 + l));
        t[l] = s;
    }
}
#endif

/* Row by row, the term for a chunk of the row first, then one vectorized loop over the chunk:
 * dinp += term (swiglu 0), or swiglu_backward_bf16out of dout + term into dgateb, dupb (swiglu 1;
 * a constant at each call, so each form keeps only its own loop) */
static inline __attribute__((always_inline)) void
lowrank_pass(float *dinp, uint16_t *dgateb, uint16_t *dupb, const float *dout, const ft_lowrank *lr,
             const uint16_t *gateb, const uint16_t *upb, int M, int K, const int swiglu) {
#pragma omp parallel for schedule(static) if ((int64_t)M * K >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *u = lr->u + m * lr->ldu;
        for (int64_t k0 = 0; k0 < K; k0 += LR_CHUNK) {
            const int nc = K - k0 < LR_CHUNK ? (int)(K - k0) : LR_CHUNK;
            const int64_t o = m * K + k0;
            float t[LR_CHUNK];
            lowrank_row(t, u, lr, K, k0, nc);
            if (swiglu) {
                ft_swiglu_grad_bf16_span(dgateb + o, dupb + o, dout + o, t, gateb + o, upb + o,
                                         (size_t)nc);
            } else {
#pragma omp simd
                for (int l = 0; l < nc; l++)
                    dinp[o + l] = dinp[o + l] + t[l];
            }
        }
    }
}

void swiglu_backward_bf16out_lr(uint16_t *dgateb, uint16_t *dupb, const float *dout,
                                const ft_lowrank *lr, const uint16_t *gateb, const uint16_t *upb,
                                int M, int F) {
    lowrank_pass(NULL, dgateb, dupb, dout, lr, gateb, upb, M, F, 1);
}

void lowrank_add(float *dinp, const ft_lowrank *lr, int M, int K) {
    lowrank_pass(dinp, NULL, NULL, NULL, lr, NULL, NULL, M, K, 0);
}

void rmsnorm_backward_fast_lr(float *dinp, const float *dout, const ft_lowrank *lr,
                              const float *inp, const float *weight, const float *rstd, int M,
                              int C) {
    FT_ASSERT(C <= LOWRANK_MAXC);
#pragma omp parallel for schedule(static) if ((int64_t)M * C >= FT_OMP_GRAIN)
    for (int64_t m = 0; m < M; m++) {
        /* y = dout + term, row m (lowrank_row pads its last vector: the row rounded up to 16) */
        float y[LOWRANK_MAXC + 16] __attribute__((aligned(64)));
        const uint16_t *u = lr->u + m * lr->ldu;
        const float *dy = dout + m * C;
        for (int64_t k0 = 0; k0 < C; k0 += LR_CHUNK) {
            const int nc = C - k0 < LR_CHUNK ? (int)(C - k0) : LR_CHUNK;
            lowrank_row(y + k0, u, lr, C, k0, nc);
#pragma omp simd
            for (int l = 0; l < nc; l++)
                y[k0 + l] = dy[k0 + l] + y[k0 + l];
        }
        ft_rmsnorm_dx_row(dinp + m * C, y, inp + m * C, weight, rstd[m], C);
    }
}
