/*
 * LoRA B-side lab: one layer's worth of SmolLM-135M's LoRA up-projections (r 8, all linear
 * modules: N = 576, 192, 192, 576, 1536, 1536, 576) at M = 4x256 rows, in two variants:
 *   onednn  what the bf16 step did before lora_up.c: forward out += (s u)·B^T as an f32 oneDNN
 *           product with the sum post-op (u gathered and scaled first); backward dB and du as two
 *           f32 oneDNN products, du scattered, and dout rounded to bf16 in its own pass
 *   fused   lora_up_forward; lora_up_backward (dB, du and the bf16 copy in one pass over dout)
 * both checked against the naive double loops (relative 1e-4 of the term scale: far looser than
 * the f32 bound in tests/kernels/test_lora_up.c, tight enough to catch any wrong term), with
 * the operands rounded to bf16 for the fused backward where it rounds them
 * (lora_up_backward_bf16ops()), as the f32 onednn products do not.
 *   bench_lora [REPS=20]
 */
#include "lab.h"

#include "ftune/kernels.h"

#include <string.h>

enum { NMOD = 7, R = 8 };
static const int Ns[NMOD] = {576, 192, 192, 576, 1536, 1536, 576};

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    const int M = 1024, maxN = 1536;
    const float s = 2.0f;
    float *u = lab_rand((size_t)M * R, 1), *out = lab_rand((size_t)M * maxN, 1);
    float *ref = ft_calloc((size_t)M * maxN, 4), *dout = lab_rand((size_t)M * maxN, 1);
    float *B[NMOD], *dB = ft_calloc((size_t)maxN * R, 4), *dBr = ft_calloc((size_t)maxN * R, 4);
    float *du = ft_calloc((size_t)M * R, 4), *dur = ft_calloc((size_t)M * R, 4);
    float *us = ft_calloc((size_t)M * R, 4), *dut = ft_calloc((size_t)M * R, 4);
    uint16_t *doutb = ft_calloc((size_t)M * maxN, 2);
    float *ws = ft_calloc(lora_up_ws_floats(M, maxN, R), 4);
    for (int j = 0; j < NMOD; j++)
        B[j] = lab_rand((size_t)Ns[j] * R, 0.1f);
    printf("lora lab: %d threads, M %d, r %d, one SmolLM layer (7 modules, N sum 5184)\n",
           omp_get_max_threads(), M, R);

    /* checks on the largest module */
    const int N = maxN;
    memcpy(ref, out, (size_t)M * N * 4);
    lora_up_forward_naive(ref, NULL, NULL, N, u, R, s, B[4], M, N, R);
    float *got = ft_calloc((size_t)M * N, 4);
    memcpy(got, out, (size_t)M * N * 4);
    lora_up_forward(got, NULL, NULL, N, u, R, s, B[4], M, N, R, ws);
    lab_check("fused forward vs naive", got, ref, (size_t)M * N, 1e-4, 0);
    for (size_t i = 0; i < (size_t)M * R; i++)
        us[i] = s * u[i];
    memcpy(got, out, (size_t)M * N * 4);
    matmul_forward_acc(got, us, B[4], M, R, N);
    lab_check("onednn forward vs naive", got, ref, (size_t)M * N, 1e-4, 0);
    lora_up_backward_naive(dBr, dur, R, dout, u, R, s, B[4], M, N, R, lora_up_backward_bf16ops());
    lora_up_backward(doutb, dB, du, R, dout, u, R, s, B[4], M, N, R, ws);
    lab_check("fused backward dB vs naive", dB, dBr, (size_t)N * R, 1e-4 * M, 0);
    lab_check("fused backward du vs naive", du, dur, (size_t)M * R, 1e-4 * N, 0);
    memset(dB, 0, (size_t)N * R * 4);
    memset(dBr, 0, (size_t)N * R * 4);
    memset(dut, 0, (size_t)M * R * 4);
    lora_up_backward_naive(dBr, dur, R, dout, u, R, s, B[4], M, N, R, 0); /* f32 operands */
    matmul_backward(NULL, dB, NULL, dout, us, NULL, M, R, N);
    matmul_backward(dut, NULL, NULL, dout, NULL, B[4], M, R, N);
    for (size_t i = 0; i < (size_t)M * R; i++)
        du[i] = s * dut[i];
    lab_check("onednn backward dB vs naive", dB, dBr, (size_t)N * R, 1e-4 * M, 0);
    lab_check("onednn backward du vs naive", du, dur, (size_t)M * R, 1e-4 * N, 0);

    double t;
    LAB_TIME(
        t, reps, for (int j = 0; j < NMOD; j++) {
            for (size_t i = 0; i < (size_t)M * R; i++)
                us[i] = s * u[i];
            matmul_forward_acc(out, us, B[j], M, R, Ns[j]);
        });
    double tf0 = t;
    LAB_TIME(t, reps,
             for (int j = 0; j < NMOD; j++)
                 lora_up_forward(out, NULL, NULL, Ns[j], u, R, s, B[j], M, Ns[j], R, ws));
    double tf1 = t;
    LAB_TIME(
        t, reps, for (int j = 0; j < NMOD; j++) {
            for (size_t i = 0; i < (size_t)M * R; i++)
                us[i] = s * u[i];
            matmul_backward(NULL, dB, NULL, dout, us, NULL, M, R, Ns[j]);
            memset(dut, 0, (size_t)M * R * 4);
            matmul_backward(dut, NULL, NULL, dout, NULL, B[j], M, R, Ns[j]);
            for (size_t i = 0; i < (size_t)M * R; i++)
                du[i] = s * dut[i];
            bf16_from_f32(doutb, dout, (size_t)M * Ns[j]);
        });
    double tb0 = t;
    LAB_TIME(t, reps,
             for (int j = 0; j < NMOD; j++)
                 lora_up_backward(doutb, dB, du, R, dout, u, R, s, B[j], M, Ns[j], R, ws));
    double tb1 = t;
    double mb = (double)M * 5184 * 4 / 1e6; /* one pass over the layer's (M,N) f32 arrays */
    printf("  %-22s %8.3f ms  %6.1f GB/s (out read + written)\n", "forward onednn", tf0 * 1e3,
           2 * mb / tf0 / 1e3);
    printf("  %-22s %8.3f ms  %6.1f GB/s  %.2fx\n", "forward fused", tf1 * 1e3, 2 * mb / tf1 / 1e3,
           tf0 / tf1);
    printf("  %-22s %8.3f ms  (dout read twice + once for bf16)\n", "backward onednn", tb0 * 1e3);
    printf("  %-22s %8.3f ms  %6.1f GB/s (dout read once, bf16 written)  %.2fx\n", "backward fused",
           tb1 * 1e3, 1.5 * mb / tb1 / 1e3, tb0 / tb1);
    ft_free(u), ft_free(out), ft_free(ref), ft_free(dout), ft_free(dB), ft_free(dBr);
    ft_free(du), ft_free(dur), ft_free(us), ft_free(dut), ft_free(doutb), ft_free(ws), ft_free(got);
    for (int j = 0; j < NMOD; j++)
        ft_free(B[j]);
    return lab_failures ? 1 : 0;
}
