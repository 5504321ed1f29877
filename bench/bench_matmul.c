/*
 * Matmul lab: the three training products (forward x·W^T, input gradient dy·W, weight gradient
 * dy^T·x) on SmolLM-135M's shapes at M = 4×256 rows, in the variants we have:
 *   f32        oneDNN f32 (matmul_forward / matmul_backward)
 *   bf16       oneDNN bf16 operands, plain strided weights (matmul_bf16_*)
 *   bf16-pack  oneDNN bf16 with the weight converted + reordered once (matmul_bf16w_*)
 *   dw: bf16-packx (x packed by our pass, matmul_bf16_backward_weight) and packx-doutT (dout
 *       also given transposed, matmul_bf16_backward_weight_t; its conversion timed apart)
 *   fwd: pack+res / pack->bf16 (the fused epilogues, matmul_bf16w_forward_res / _bf16) against
 *       the product followed by the pass they replace (checked bit for bit)
 * Each variant is first checked: on a small awkward shape against the naive double-accumulated
 * loop, and at the timed shape against the f32 result with the bf16 bound (see test_matmul_bf16).
 * Prints GFLOP/s and the fraction of the measured FMA / BF16 peaks, and the time to repack a
 * trained weight into both layouts (matmul_bf16.c's own pass against oneDNN's reorder).
 *   bench_matmul [REPS=5]
 */
#include "lab.h"

#include "ftune/kernels.h"

#include <string.h>

static double peak32, peak16;

static void report(const char *shape, const char *layout, const char *var, double flops, double t,
                   double peak) {
    double gf = flops / t / 1e9;
    printf("  %-16s %-6s %-10s %8.3f ms %7.1f GFLOP/s  %5.1f%% of %s peak\n", shape, layout, var,
           t * 1e3, gf, 100 * gf / peak, peak == peak16 ? "bf16" : "f32");
}

/* bf16 bound: each operand rounded with relative error <= u = 2^-8, so each product is off by
 * <= (2u + u^2)|a||b|; f32 accumulation adds <= K 2^-24 sum|ab|. Checked against sum|a||b| for
 * the whole row: |got - ref| <= (2^-7 + K 2^-23) * max_k-sum. */
static void check_bf16(const char *what, const float *got, const float *ref, size_t n, double absum,
                       int K) {
    lab_check(what, got, ref, n, (1.0 / 128 + K / 8388608.0) * absum, 0);
}

/* the passes the fused epilogues replace, after the product: out += res; outb = bf16(out) */
static void fwd_then_add(float *out, const uint16_t *xb, ft_bf16_weight *pw, const float *res,
                         int M, int N) {
    matmul_bf16w_forward(out, xb, pw, NULL, M, 0);
#pragma omp parallel for schedule(static)
    for (size_t e = 0; e < (size_t)M * N; e++)
        out[e] += res[e];
}

static void fwd_then_round(uint16_t *outb, float *out, const uint16_t *xb, ft_bf16_weight *pw,
                           int M, int N) {
    matmul_bf16w_forward(out, xb, pw, NULL, M, 0);
    bf16_from_f32(outb, out, (size_t)M * N);
}

static void shape(int M, int K, int N, int reps) {
    char name[64];
    snprintf(name, sizeof name, "%dx%dx%d", M, K, N);
    double fl = 2.0 * M * K * N, t;
    float *x = lab_rand((size_t)M * K, 1), *w = lab_rand((size_t)N * K, 1),
          *dy = lab_rand((size_t)M * N, 1);
    float *o32 = ft_calloc((size_t)M * N, 4), *o16 = ft_calloc((size_t)M * N, 4);
    float *di32 = ft_calloc((size_t)M * K, 4), *di16 = ft_calloc((size_t)M * K, 4);
    float *dw32 = ft_calloc((size_t)N * K, 4), *dw16 = ft_calloc((size_t)N * K, 4);
    uint16_t *xb = ft_calloc((size_t)M * K, 2), *wb = ft_calloc((size_t)N * K, 2),
             *dyb = ft_calloc((size_t)M * N, 2);
    bf16_from_f32(xb, x, (size_t)M * K);
    bf16_from_f32(wb, w, (size_t)N * K);
    bf16_from_f32(dyb, dy, (size_t)M * N);
    ft_bf16_weight *pw = bf16_weight_create(w, K, N);

    /* uniform[-1,1) data: sum_k |a||b| ~ K/4; use the worst case K as the scale */
    matmul_forward(o32, x, w, NULL, M, K, N);
    if (peak16 > 0) {
        matmul_bf16_forward(o16, xb, wb, NULL, M, K, N, 0);
        check_bf16("fwd bf16 vs f32", o16, o32, (size_t)M * N, K, K);
        matmul_bf16w_forward(o16, xb, pw, NULL, M, 0);
        check_bf16("fwd bf16-pack vs f32", o16, o32, (size_t)M * N, K, K);
        matmul_bf16_backward(di16, dw16, dyb, xb, wb, M, K, N);
        matmul_backward(di32, dw32, NULL, dy, x, w, M, K, N);
        check_bf16("dinp bf16 vs f32", di16, di32, (size_t)M * K, N, N);
        check_bf16("dw bf16 vs f32", dw16, dw32, (size_t)N * K, M, M);
        memset(di16, 0, (size_t)M * K * 4);
        memset(di32, 0, (size_t)M * K * 4);
        matmul_bf16w_backward_input(di16, dyb, pw, M, 0);
        matmul_backward(di32, NULL, NULL, dy, x, w, M, K, N);
        check_bf16("dinp bf16-pack vs f32", di16, di32, (size_t)M * K, N, N);
    }
    LAB_TIME(t, reps, matmul_forward(o32, x, w, NULL, M, K, N));
    report(name, "fwd", "f32", fl, t, peak32);
    if (peak16 > 0) {
        LAB_TIME(t, reps, matmul_bf16_forward(o16, xb, wb, NULL, M, K, N, 0));
        report(name, "fwd", "bf16", fl, t, peak16);
        LAB_TIME(t, reps, matmul_bf16w_forward(o16, xb, pw, NULL, M, 0));
        report(name, "fwd", "bf16-pack", fl, t, peak16);
        /* the step's fused epilogues (oneDNN post-ops) against the product and the pass they
         * replace: a residual added (o_proj, down), the output stored as bf16 (gate, up) */
        float *res = lab_rand((size_t)M * N, 2), *o2 = ft_calloc((size_t)M * N, 4);
        uint16_t *ob = ft_calloc((size_t)M * N, 2), *ob2 = ft_calloc((size_t)M * N, 2);
        LAB_TIME(t, reps, fwd_then_add(o2, xb, pw, res, M, N));
        report(name, "fwd", "pack, +res", fl, t, peak16);
        LAB_TIME(t, reps, matmul_bf16w_forward_res(o16, xb, pw, NULL, res, M));
        report(name, "fwd", "pack+res", fl, t, peak16);
        lab_check("fwd residual post-op == product + pass", o16, o2, (size_t)M * N, 0, 0);
        LAB_TIME(t, reps, fwd_then_round(ob2, o2, xb, pw, M, N));
        report(name, "fwd", "pack, ->bf", fl, t, peak16);
        LAB_TIME(t, reps, matmul_bf16w_forward_bf16(ob, xb, pw, NULL, M));
        report(name, "fwd", "pack->bf16", fl, t, peak16);
        if (memcmp(ob, ob2, (size_t)M * N * 2)) {
            printf("  MISMATCH fwd bf16 out != product rounded\n");
            lab_failures++;
        }
        ft_free(res), ft_free(o2), ft_free(ob), ft_free(ob2);
    }
    LAB_TIME(t, reps, matmul_backward(di32, NULL, NULL, dy, x, w, M, K, N));
    report(name, "dinp", "f32", fl, t, peak32);
    if (peak16 > 0) {
        LAB_TIME(t, reps, matmul_bf16_backward(di16, NULL, dyb, xb, wb, M, K, N));
        report(name, "dinp", "bf16", fl, t, peak16);
        LAB_TIME(t, reps, matmul_bf16w_backward_input(di16, dyb, pw, M, 0));
        report(name, "dinp", "bf16-pack", fl, t, peak16);
    }
    LAB_TIME(t, reps, matmul_backward(NULL, dw32, NULL, dy, x, w, M, K, N));
    report(name, "dw", "f32", fl, t, peak32);
    if (peak16 > 0) {
        LAB_TIME(t, reps, matmul_bf16_backward(NULL, dw16, dyb, xb, wb, M, K, N));
        report(name, "dw", "bf16", fl, t, peak16);
        /* the step's forms: x packed by our pass (fresh: the pack is timed too), written; dout
         * also given transposed (bf16_from_f32_t, timed apart against the plain rounding) */
        ft_bf16_pack *pk = bf16_pack_create();
        LAB_TIME(t, reps, matmul_bf16_backward_weight(dw16, dyb, xb, pk, 1, M, K, N, 0));
        report(name, "dw", "bf16-packx", fl, t, peak16);
        uint16_t *dyb2 = ft_calloc((size_t)M * N, 2), *dybT = ft_calloc((size_t)M * N, 2);
        LAB_TIME(t, reps, bf16_from_f32(dyb2, dy, (size_t)M * N));
        double t_round = t;
        LAB_TIME(t, reps, bf16_from_f32_t(dyb2, dybT, dy, M, N));
        double t_both = t;
        LAB_TIME(t, reps, matmul_bf16_backward_weight_t(dw16, dybT, xb, pk, 1, M, K, N, 0));
        report(name, "dw", "packx-doutT", fl, t, peak16);
        printf("  %-16s %-6s dout rounded %7.3f ms, rounded and transposed %7.3f ms\n", name,
               "cvt", t_round * 1e3, t_both * 1e3);
        memset(dw32, 0, (size_t)N * K * 4);
        matmul_backward(NULL, dw32, NULL, dy, x, w, M, K, N);
        check_bf16("dw packx-doutT vs f32", dw16, dw32, (size_t)N * K, M, M);
        bf16_pack_free(pk);
        ft_free(dyb2), ft_free(dybT);
    }
    if (peak16 > 0) { /* the per-step repack of a trained weight, both layouts */
        LAB_TIME(t, reps, bf16_weight_refresh(pw));
        double t_own = t;
        setenv("FTUNE_NO_FAST_PACK", "1", 1);
        LAB_TIME(t, reps, bf16_weight_refresh(pw));
        unsetenv("FTUNE_NO_FAST_PACK");
        printf("  %-16s %-6s own pack %7.3f ms, oneDNN reorder %7.3f ms  %.2fx  (%.1f GB/s own)\n",
               name, "pack", t_own * 1e3, t * 1e3, t / t_own,
               (double)N * K * (2 * 4 + 2 * 2) / t_own / 1e9);
    }
    bf16_weight_free(pw);
    ft_free(x), ft_free(w), ft_free(dy), ft_free(o32), ft_free(o16), ft_free(di32);
    ft_free(di16), ft_free(dw32), ft_free(dw16), ft_free(xb), ft_free(wb), ft_free(dyb);
}

/* small awkward shape: every variant against the naive loop */
static void check_small(void) {
    const int M = 67, K = 129, N = 75;
    float *x = lab_rand((size_t)M * K, 1), *w = lab_rand((size_t)N * K, 1);
    float *ref = ft_calloc((size_t)M * N, 4), *got = ft_calloc((size_t)M * N, 4);
    matmul_forward_naive(ref, x, w, NULL, M, K, N);
    matmul_forward(got, x, w, NULL, M, K, N);
    lab_check("small fwd f32 vs naive", got, ref, (size_t)M * N, 1e-4, 1e-5);
    if (peak16 > 0) {
        uint16_t *xb = ft_calloc((size_t)M * K, 2), *wb = ft_calloc((size_t)N * K, 2);
        bf16_from_f32(xb, x, (size_t)M * K);
        bf16_from_f32(wb, w, (size_t)N * K);
        matmul_bf16_forward(got, xb, wb, NULL, M, K, N, 0);
        check_bf16("small fwd bf16 vs naive", got, ref, (size_t)M * N, K, K);
        ft_bf16_weight *pw = bf16_weight_create(w, K, N);
        matmul_bf16w_forward(got, xb, pw, NULL, M, 0);
        check_bf16("small fwd bf16-pack vs naive", got, ref, (size_t)M * N, K, K);
        bf16_weight_free(pw);
        ft_free(xb), ft_free(wb);
    }
    ft_free(x), ft_free(w), ft_free(ref), ft_free(got);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    peak32 = lab_peak_f32();
    peak16 = ft_cpu_has_bf16() ? lab_peak_bf16() : 0;
    printf("matmul lab: %d threads, measured peak f32 FMA %.0f GFLOP/s, bf16 dot %.0f GFLOP/s\n",
           omp_get_max_threads(), peak32, peak16);
    check_small();
    /* SmolLM-135M at B*T = 1024: q/o (576->576), k/v (576->192), q/k/v as one product
     * (576->960), gate/up (576->1536), down (1536->576), and a 4096-wide slice of the tied head
     * (576->4096). */
    static const int shapes[][3] = {{1024, 576, 576},  {1024, 576, 192},  {1024, 576, 960},
                                    {1024, 576, 1536}, {1024, 1536, 576}, {1024, 576, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        shape(shapes[i][0], shapes[i][1], shapes[i][2], reps);
    if (lab_failures) printf("matmul lab: %d MISMATCH(ES)\n", lab_failures);
    return lab_failures ? 1 : 0;
}
