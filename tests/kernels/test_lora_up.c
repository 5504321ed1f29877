/*
 * LoRA's B-side passes (src/kernels/cpu/lora_up.c) against their naive twins (double
 * accumulation) over awkward shapes: one row, odd row counts, N below / not a multiple of 16, r
 * below, at and above the register block of 8 and above the forward's slice of 64, u and du as
 * column windows of wider arrays (ldu, lddu > r).
 *
 * Tolerances, per element, with S = the sum of the terms' magnitudes (computed in double from the
 * same data) and u = 2^-24: every f32 sum of n terms, in any order and with FMAs, is within
 * n u S of the exact sum (plus u |result| for the final rounding / the add into out).
 *   forward  out += sum_i (s u_i) B_i   n = r (+1 for the add)     -> 2 (r + 2) u S + 2u |out|
 *   dB       sum over M rows             n = M (blocks of 128 + the block sums) -> 2 (M + 2) u S
 *   du       s * sum over N columns      n = N (+1 for the scale)  -> 2 (N + 2) u S
 * The backward on AVX512-BF16 (lora_up_backward_bf16ops()) takes dout, B and s u rounded to bf16,
 * as PyTorch's autocast does: the naive twin rounds them alike, S is summed over the rounded
 * operands, and the bound is the same (each bf16 product is exact in f32; VDPBF16PS adds two of
 * them to its lane with two f32 roundings, as two adds). Without the rounding in the reference
 * the error is ~2^-9 S / sqrt(terms) and fails.
 * A skipped row, block, column tail or r slice is off by O(S / terms) and fails. The forward's
 * residual and bf16-output forms are also checked bit for bit against the plain form followed by
 * the add / by bf16_from_f32 (what the step did before folding them in).
 * doutb is bit-identical to bf16_from_f32 (also on inf, NaN, denormals, ties); dB is
 * bit-identical with 1 and 2 threads (fixed row blocks). The group forms (n modules in one
 * parallel region) give each module the bits of its own call (check_group).
 */
#include "../test.h"

#include "ftune/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++)
        p[i] = ft_test_frand();
    return p;
}

/* x as the backward's operand: rounded to bf16 when lora_up_backward_bf16ops() */
static float op(float x, int bf16ops) {
    uint16_t h;
    float y;
    bf16_from_f32(&h, &x, 1);
    bf16_to_f32(&y, &h, 1);
    return bf16ops ? y : x;
}

/* max over elements of |got - ref| / bound (<= 1 passes; NaN counts as a failure) */
static double worst_ratio(const float *got, const double *ref, const double *bound, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]) / bound[i];
        if (!(e <= w)) w = e; /* NaN propagates */
    }
    return w;
}

static void check_shape(int M, int N, int r, int ldu, int lddu) {
    const double u = ldexp(1.0, -24);
    const float s = 1.75f;
    float *U = rand_buf((size_t)M * ldu), *B = rand_buf((size_t)N * r);
    float *out0 = rand_buf((size_t)M * N), *dout = rand_buf((size_t)M * N);
    float *ws = malloc(lora_up_ws_floats(M, N, r) * sizeof(float));
    char name[160];

    /* forward */
    float *out = malloc((size_t)M * N * 4), *ref = malloc((size_t)M * N * 4);
    double *bound = malloc((size_t)M * N * sizeof(double)), *refd = malloc((size_t)M * N * 8);
    memcpy(out, out0, (size_t)M * N * 4);
    memcpy(ref, out0, (size_t)M * N * 4);
    lora_up_forward(out, NULL, NULL, N, U, ldu, s, B, M, N, r, ws);
    lora_up_forward_naive(ref, NULL, NULL, N, U, ldu, s, B, M, N, r);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double S = 0;
            for (int i = 0; i < r; i++)
                S += fabs((double)(s * U[m * ldu + i]) * B[n * r + i]);
            refd[m * N + n] = ref[m * N + n];
            bound[m * N + n] = 2 * (r + 2) * u * S + 2 * u * fabs(refd[m * N + n]) + 1e-30;
        }
    double wf = worst_ratio(out, refd, bound, (size_t)M * N);
    snprintf(name, sizeof name, "lora_up_forward M%d N%d r%d ldu%d vs naive", M, N, r, ldu);
    CHECK(name, wf <= 1, "worst |err| / bound %.3g", wf);
    /* with the residual: y = (out + lora) + res, the same bits as the plain form followed by the
     * add; vs naive one more f32 rounding of each side (2u (|out| + |res| + |y|) on top) */
    float *res = rand_buf((size_t)M * N), *outr = malloc((size_t)M * N * 4);
    float *refr = malloc((size_t)M * N * 4), *plus = malloc((size_t)M * N * 4);
    memcpy(outr, out0, (size_t)M * N * 4);
    memcpy(refr, out0, (size_t)M * N * 4);
    lora_up_forward(outr, NULL, res, N, U, ldu, s, B, M, N, r, ws);
    lora_up_forward_naive(refr, NULL, res, N, U, ldu, s, B, M, N, r);
    for (size_t i = 0; i < (size_t)M * N; i++) {
        plus[i] = out[i] + res[i];
        refd[i] = refr[i];
        bound[i] += 2 * u * (fabs(out0[i]) + fabs(res[i]) + fabs(refd[i]));
    }
    double wr = worst_ratio(outr, refd, bound, (size_t)M * N);
    snprintf(name, sizeof name, "lora_up_forward M%d N%d r%d + residual: vs naive, == add after", M,
             N, r);
    CHECK(name, wr <= 1 && !memcmp(outr, plus, (size_t)M * N * 4), "worst |err| / bound %.3g%s", wr,
          memcmp(outr, plus, (size_t)M * N * 4) ? ", differs from the add after" : "");
    /* bf16 output only: bf16 of the plain form's result bit for bit, out left untouched; vs naive
     * within the f32 bound plus one bf16 step (<= 2^-7 |y|: the two f32 values may round to
     * neighbouring bf16 values) */
    uint16_t *ob = malloc((size_t)M * N * 2 + 2), *obr = malloc((size_t)M * N * 2 + 2);
    uint16_t *ob2 = malloc((size_t)M * N * 2 + 2);
    float *outc = malloc((size_t)M * N * 4), *obw = malloc((size_t)M * N * 4);
    memcpy(outc, out0, (size_t)M * N * 4);
    lora_up_forward(outc, ob, NULL, N, U, ldu, s, B, M, N, r, ws);
    bf16_from_f32(ob2, out, (size_t)M * N);
    memcpy(refr, out0, (size_t)M * N * 4);
    lora_up_forward_naive(refr, obr, NULL, N, U, ldu, s, B, M, N, r);
    bf16_to_f32(obw, ob, (size_t)M * N);
    bf16_to_f32(refr, obr, (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * N; i++) {
        refd[i] = refr[i];
        bound[i] += ldexp(fabs(refd[i]), -7);
    }
    double wb = worst_ratio(obw, refd, bound, (size_t)M * N);
    int same = !memcmp(ob, ob2, (size_t)M * N * 2), kept = !memcmp(outc, out0, (size_t)M * N * 4);
    snprintf(name, sizeof name, "lora_up_forward M%d N%d r%d bf16 out: vs naive, == rounding after",
             M, N, r);
    CHECK(name, wb <= 1 && same && kept, "worst |err| / bound %.3g%s%s", wb,
          same ? "" : ", differs from bf16_from_f32 of the f32 form", kept ? "" : ", out written");
    free(res), free(outr), free(refr), free(plus), free(ob), free(obr), free(ob2), free(outc);
    free(obw);

    /* backward */
    float *dB0 = rand_buf((size_t)N * r), *dB = malloc((size_t)N * r * 4);
    float *dBr = malloc((size_t)N * r * 4), *du = malloc((size_t)M * lddu * 4);
    float *dur = malloc((size_t)M * lddu * 4);
    uint16_t *db = malloc((size_t)M * N * 2 + 2), *dbr = malloc((size_t)M * N * 2 + 2);
    memcpy(dB, dB0, (size_t)N * r * 4);
    memcpy(dBr, dB0, (size_t)N * r * 4);
    for (size_t i = 0; i < (size_t)M * lddu; i++)
        du[i] = dur[i] = 42.0f; /* outside: kept */
    lora_up_backward(db, dB, du, lddu, dout, U, ldu, s, B, M, N, r, ws);
    const int bo = lora_up_backward_bf16ops();
    lora_up_backward_naive(dBr, dur, lddu, dout, U, ldu, s, B, M, N, r, bo);
    bf16_from_f32(dbr, dout, (size_t)M * N);
    double *bB = malloc((size_t)N * r * 8), *rB = malloc((size_t)N * r * 8);
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < r; i++) {
            double S = fabs(dB0[n * r + i]);
            for (int64_t m = 0; m < M; m++)
                S += fabs((double)op(dout[m * N + n], bo) * op(s * U[m * ldu + i], bo));
            rB[n * r + i] = dBr[n * r + i];
            bB[n * r + i] = 2 * (M + 2) * u * S + 1e-30;
        }
    double wB = worst_ratio(dB, rB, bB, (size_t)N * r);
    double *bu = malloc((size_t)M * lddu * 8), *ru = malloc((size_t)M * lddu * 8);
    for (int64_t m = 0; m < M; m++)
        for (int i = 0; i < lddu; i++) {
            double S = 0;
            if (i < r)
                for (int64_t n = 0; n < N; n++)
                    S += fabs((double)op(dout[m * N + n], bo) * op(B[n * r + i], bo));
            ru[m * lddu + i] = dur[m * lddu + i];
            bu[m * lddu + i] = i < r ? 2 * (N + 2) * u * fabs(s) * S + 1e-30 : 1e-30;
        }
    double wu = worst_ratio(du, ru, bu, (size_t)M * lddu);
    snprintf(name, sizeof name, "lora_up_backward M%d N%d r%d ldu%d lddu%d: dB, du vs naive", M, N,
             r, ldu, lddu);
    CHECK(name, wB <= 1 && wu <= 1, "worst |err| / bound: dB %.3g du %.3g", wB, wu);
    snprintf(name, sizeof name, "lora_up_backward M%d N%d r%d: doutb == bf16_from_f32", M, N, r);
    CHECK(name, !memcmp(db, dbr, (size_t)M * N * 2), "bf16 copy differs");

    /* dout given as bf16 (db): the same bits as the f32 form on db's widened values (which the
     * naive comparison above covers) */
    {
        float *dw = malloc((size_t)M * N * 4), *dB2 = malloc((size_t)N * r * 4);
        float *dB3 = malloc((size_t)N * r * 4), *du2 = malloc((size_t)M * lddu * 4);
        float *du3 = malloc((size_t)M * lddu * 4);
        bf16_to_f32(dw, db, (size_t)M * N);
        memcpy(dB2, dB0, (size_t)N * r * 4);
        memcpy(dB3, dB0, (size_t)N * r * 4);
        for (size_t i = 0; i < (size_t)M * lddu; i++)
            du2[i] = du3[i] = 42.0f;
        lora_up_backward(NULL, dB2, du2, lddu, dw, U, ldu, s, B, M, N, r, ws);
        lora_up_backward_bf16in(dB3, du3, lddu, db, U, ldu, s, B, M, N, r, ws);
        snprintf(name, sizeof name, "lora_up_backward_bf16in M%d N%d r%d == f32 form on widened", M,
                 N, r);
        CHECK(name, !memcmp(dB2, dB3, (size_t)N * r * 4) && !memcmp(du2, du3, (size_t)M * lddu * 4),
              "results differ");
        free(dw), free(dB2), free(dB3), free(du2), free(du3);
    }

    /* thread-count independence of dB (and du, doutb) */
    if (omp_get_max_threads() > 1) {
        float *dB1 = malloc((size_t)N * r * 4), *du1 = malloc((size_t)M * lddu * 4);
        memcpy(dB1, dB0, (size_t)N * r * 4);
        memcpy(du1, du, (size_t)M * lddu * 4);
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        lora_up_backward(NULL, dB1, du1, lddu, dout, U, ldu, s, B, M, N, r, ws);
        omp_set_num_threads(nt);
        snprintf(name, sizeof name, "lora_up_backward M%d N%d r%d: 1 thread == %d threads", M, N, r,
                 nt);
        CHECK(name, !memcmp(dB1, dB, (size_t)N * r * 4) && !memcmp(du1, du, (size_t)M * lddu * 4),
              "results differ");
        free(dB1), free(du1);
    }
    free(U), free(B), free(out0), free(dout), free(ws), free(out), free(ref), free(bound);
    free(refd), free(dB0), free(dB), free(dBr), free(du), free(dur), free(db), free(dbr), free(bB);
    free(rB), free(bu), free(ru);
}

/* doutb on special values: inf, NaN, denormals, round-to-even ties, through both the vector body
 * and the column tail */
static void check_special(void) {
    const int M = 3, N = 37, r = 8;
    float *dout = rand_buf((size_t)M * N), *U = rand_buf((size_t)M * r),
          *B = rand_buf((size_t)N * r);
    uint32_t bits[] = {0x7f800000u, 0xff800000u, 0x7fc00001u, 0xffa00000u, 0x00000001u,
                       0x807fffffu, 0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        memcpy(&dout[i * 7 % (M * N)], &bits[i], 4);
        memcpy(&dout[M * N - 1 - i], &bits[i], 4);
    }
    float *dB = calloc((size_t)N * r, 4), *du = malloc((size_t)M * r * 4);
    float *ws = malloc(lora_up_ws_floats(M, N, r) * sizeof(float));
    uint16_t *db = malloc((size_t)M * N * 2), *dbr = malloc((size_t)M * N * 2);
    lora_up_backward(db, dB, du, r, dout, U, r, 1.0f, B, M, N, r, ws);
    bf16_from_f32(dbr, dout, (size_t)M * N);
    CHECK("lora_up_backward doutb == bf16_from_f32 on inf, NaN, denormals, ties",
          !memcmp(db, dbr, (size_t)M * N * 2), "bf16 copy differs");
    free(dout), free(U), free(B), free(dB), free(du), free(ws), free(db), free(dbr);
}

/* The group forms (lora_up_forward_n / lora_up_backward_n: n modules in one parallel region)
 * against one call per module, bit for bit, in the step's layouts: u_i the column windows of one
 * u (M, n r); the forward's outputs column windows of one wide (M, sum N) array (the fused q|k|v
 * product's rows), the last module to bf16 only; the backward's douts as bf16 windows of one wide
 * array (din), except module 0 read as f32 from its own array with its bf16 copy written (doutb);
 * du_i the column windows of one du (M, n r). Also 1 thread == 2 threads. A module's pass run on
 * another's arrays, a block or tile of one module skipped or run twice, or a stride mixed up
 * breaks the equality. */
static void check_group(int M, int r, int n, const int *Ns) {
    const float s = 0.625f;
    const int R = n * r;
    int W = 0, off[LORA_UP_MAXN + 1] = {0};
    size_t wsn = 0, ws1 = 0;
    for (int i = 0; i < n; i++) {
        off[i + 1] = off[i] + Ns[i];
        W += Ns[i];
        wsn += lora_up_ws_floats(M, Ns[i], r);
        if (lora_up_ws_floats(M, Ns[i], r) > ws1) ws1 = lora_up_ws_floats(M, Ns[i], r);
    }
    float *U = rand_buf((size_t)M * R), *out0 = rand_buf((size_t)M * W);
    float *ws = malloc(wsn * sizeof(float)), *w1 = malloc(ws1 * sizeof(float));
    float *Bs[LORA_UP_MAXN];
    for (int i = 0; i < n; i++)
        Bs[i] = rand_buf((size_t)Ns[i] * r);
    char name[160];
    int Nl = Ns[n - 1];

    /* forward */
    float *out = malloc((size_t)M * W * 4), *ref = malloc((size_t)M * W * 4);
    uint16_t *ob = calloc((size_t)M * W, 2), *obr = calloc((size_t)M * W, 2);
    memcpy(out, out0, (size_t)M * W * 4);
    memcpy(ref, out0, (size_t)M * W * 4);
    ft_lora_up md[LORA_UP_MAXN];
    for (int i = 0; i < n; i++) {
        md[i] = (ft_lora_up){.N = Ns[i],
                             .B = Bs[i],
                             .u = U + i * r,
                             .ldu = R,
                             .out = out + off[i],
                             .outb = i == n - 1 ? ob + off[i] : NULL,
                             .ldo = W};
        lora_up_forward(ref + off[i], i == n - 1 ? obr + off[i] : NULL, NULL, W, U + i * r, R, s,
                        Bs[i], M, Ns[i], r, w1);
    }
    lora_up_forward_n(md, n, s, M, r, ws);
    snprintf(name, sizeof name, "lora_up_forward_n M%d r%d n%d (N %d..%d) == one call per module",
             M, r, n, Ns[0], Nl);
    CHECK(name, !memcmp(out, ref, (size_t)M * W * 4) && !memcmp(ob, obr, (size_t)M * W * 2),
          "results differ");

    /* backward */
    float *dout0 = rand_buf((size_t)M * Ns[0]), *dwide = rand_buf((size_t)M * W);
    uint16_t *din = malloc((size_t)M * W * 2);
    bf16_from_f32(din, dwide, (size_t)M * W);
    float *dB = rand_buf((size_t)W * r), *dBr = malloc((size_t)W * r * 4);
    float *du = malloc((size_t)M * R * 4), *dur = malloc((size_t)M * R * 4);
    uint16_t *db = malloc((size_t)M * Ns[0] * 2), *dbr = malloc((size_t)M * Ns[0] * 2);
    uint16_t *dcol = malloc((size_t)M * W * 2);
    memcpy(dBr, dB, (size_t)W * r * 4);
    float *dB1 = malloc((size_t)W * r * 4), *du1 = malloc((size_t)M * R * 4);
    memcpy(dB1, dB, (size_t)W * r * 4);
    for (int i = 0; i < n; i++) {
        md[i] = (ft_lora_up){.N = Ns[i],
                             .B = Bs[i],
                             .u = U + i * r,
                             .ldu = R,
                             .dout = i ? NULL : dout0,
                             .din = i ? din + off[i] : NULL,
                             .doutb = i ? NULL : db,
                             .ldd = i ? W : Ns[0],
                             .dB = dB + off[i] * r,
                             .du = du + i * r,
                             .lddu = R};
        if (i == 0) {
            lora_up_backward(dbr, dBr, dur, R, dout0, U, R, s, Bs[0], M, Ns[0], r, w1);
            continue;
        }
        for (int64_t m = 0; m < M; m++) /* module i's dout, contiguous */
            memcpy(dcol + m * Ns[i], din + m * W + off[i], (size_t)Ns[i] * 2);
        lora_up_backward_bf16in(dBr + off[i] * r, dur + i * r, R, dcol, U + i * r, R, s, Bs[i], M,
                                Ns[i], r, w1);
    }
    lora_up_backward_n(md, n, s, M, r, ws);
    snprintf(name, sizeof name, "lora_up_backward_n M%d r%d n%d (N %d..%d) == one call per module",
             M, r, n, Ns[0], Nl);
    CHECK(name,
          !memcmp(dB, dBr, (size_t)W * r * 4) && !memcmp(du, dur, (size_t)M * R * 4) &&
              !memcmp(db, dbr, (size_t)M * Ns[0] * 2),
          "results differ");
    if (omp_get_max_threads() > 1) {
        for (int i = 0; i < n; i++)
            md[i].dB = dB1 + off[i] * r, md[i].du = du1 + i * r, md[i].doutb = NULL;
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        lora_up_backward_n(md, n, s, M, r, ws);
        omp_set_num_threads(nt);
        snprintf(name, sizeof name, "lora_up_backward_n M%d r%d n%d: 1 thread == %d threads", M, r,
                 n, nt);
        CHECK(name, !memcmp(dB1, dB, (size_t)W * r * 4) && !memcmp(du1, du, (size_t)M * R * 4),
              "results differ");
    }
    for (int i = 0; i < n; i++)
        free(Bs[i]);
    free(U), free(out0), free(ws), free(w1), free(out), free(ref), free(ob), free(obr);
    free(dout0), free(dwide), free(din), free(dB), free(dBr), free(du), free(dur), free(db);
    free(dbr), free(dcol), free(dB1), free(du1);
}

/* lora_up_forward_swiglu == lora_up_forward_n of the pair then swiglu_forward_bf16in, bit for
 * bit (gate, up and hact), with u as windows of one (M, 2r) u as the step keeps it; M not a
 * multiple of the 4-row block, F with and without a 16-lane tail per block */
static void check_swiglu(int M, int F, int r) {
    const float s = 1.25f;
    float *U = rand_buf((size_t)M * 2 * r), *Bg = rand_buf((size_t)F * r),
          *Bu = rand_buf((size_t)F * r);
    float *g0 = rand_buf((size_t)M * F), *u0 = rand_buf((size_t)M * F);
    size_t wsn = 2 * lora_up_ws_floats(M, F, r), n = (size_t)M * F;
    float *ws = malloc(wsn * sizeof(float)), *g = malloc(n * 4), *u = malloc(n * 4);
    uint16_t *gb1 = malloc(n * 2 + 2), *ub1 = malloc(n * 2 + 2), *h1 = malloc(n * 2 + 2);
    uint16_t *gb2 = malloc(n * 2 + 2), *ub2 = malloc(n * 2 + 2), *h2 = malloc(n * 2 + 2);
    ft_lora_up md[2] = {
        {.N = F, .B = Bg, .u = U, .ldu = 2 * r, .out = g, .outb = gb1, .ldo = F},
        {.N = F, .B = Bu, .u = U + r, .ldu = 2 * r, .out = u, .outb = ub1, .ldo = F}};
    memcpy(g, g0, n * 4), memcpy(u, u0, n * 4);
    lora_up_forward_swiglu(md, h1, s, M, r, ws);
    md[0].outb = gb2, md[1].outb = ub2;
    memcpy(g, g0, n * 4), memcpy(u, u0, n * 4);
    lora_up_forward_n(md, 2, s, M, r, ws);
    swiglu_forward_bf16in(NULL, h2, gb2, ub2, n);
    char name[128];
    snprintf(name, sizeof name,
             "lora_up_forward_swiglu M%d F%d r%d == _n then swiglu_forward_bf16in", M, F, r);
    CHECK(name, !memcmp(gb1, gb2, n * 2) && !memcmp(ub1, ub2, n * 2) && !memcmp(h1, h2, n * 2),
          "results differ");
    free(U), free(Bg), free(Bu), free(g0), free(u0), free(ws), free(g), free(u), free(gb1);
    free(ub1), free(h1), free(gb2), free(ub2), free(h2);
}

/* lora_up_forward_rope == lora_up_forward_n of the q/k/v group then rope_round_qkv_bf16 (the
 * forward), bit for bit: q|k|v side by side in rows of HD + 2 KVD (the fused product's layout,
 * sided) or as three arrays (side 0); with all three targeted, or q and v only (k straight from
 * the product); M not a multiple of the 4-row block */
static void check_rope(int M, int H, int KV, int D, int r, int side, int all3) {
    const float s = 0.5f;
    const int HD = H * D, KVD = KV * D, W = HD + 2 * KVD, n = all3 ? 3 : 2;
    const int ldi = side ? W : 0, Ns[3] = {HD, KVD, KVD};
    float *U = rand_buf((size_t)M * n * r), *x0 = rand_buf((size_t)M * W);
    float *x1 = malloc((size_t)M * W * 4), *x2 = malloc((size_t)M * W * 4);
    float *Bs[3], *cs = malloc((size_t)M * D * 4), *invf = malloc((size_t)D / 2 * 4);
    int *pos = malloc((size_t)M * sizeof(int));
    for (int i = 0; i < D / 2; i++)
        invf[i] = powf(10000.0f, -2.0f * i / D);
    for (int m = 0; m < M; m++)
        pos[m] = (m * 7) % 97;
    rope_cos_sin(cs, pos, invf, M, D);
    size_t ws_n = 0;
    for (int j = 0; j < 3; j++) {
        Bs[j] = rand_buf((size_t)Ns[j] * r);
        ws_n += lora_up_ws_floats(M, Ns[j], r);
    }
    float *ws = malloc(ws_n * sizeof(float));
    uint16_t *b1 = malloc((size_t)M * W * 2), *b2 = malloc((size_t)M * W * 2);
    memcpy(x1, x0, (size_t)M * W * 4), memcpy(x2, x0, (size_t)M * W * 4);
    /* q, k, v: windows of one row (side) or three packed arrays one after the other */
    const size_t off[3] = {0, side ? (size_t)HD : (size_t)M * HD,
                           side ? (size_t)(HD + KVD) : (size_t)M * (HD + KVD)};
    ft_lora_up md[3];
    int k = 0;
    for (int j = 0; j < 3; j++) {
        if (!all3 && j == 1) continue;
        md[k] = (ft_lora_up){.N = Ns[j],
                             .B = Bs[j],
                             .u = U + k * r,
                             .ldu = n * r,
                             .out = x1 + off[j],
                             .ldo = side ? W : Ns[j]};
        k++;
    }
    uint16_t *qb1 = b1, *kb1 = b1 + (size_t)M * HD, *vb1 = kb1 + (size_t)M * KVD;
    uint16_t *qb2 = b2, *kb2 = b2 + (size_t)M * HD, *vb2 = kb2 + (size_t)M * KVD;
    lora_up_forward_rope(md, n, s, M, r, ws, qb1, kb1, vb1, x1 + off[0], x1 + off[1], x1 + off[2],
                         ldi, cs, H, KV, D);
    for (int i = 0; i < n; i++)
        md[i].out = x2 + (md[i].out - x1);
    lora_up_forward_n(md, n, s, M, r, ws);
    rope_round_qkv_bf16(qb2, kb2, vb2, 0, x2 + off[0], x2 + off[1], x2 + off[2], ldi, cs, M, H, KV,
                        D, 0);
    char name[160];
    snprintf(name, sizeof name,
             "lora_up_forward_rope M%d H%d KV%d D%d r%d %s%s == _n then rope_round_qkv_bf16", M, H,
             KV, D, r, side ? "q|k|v rows" : "three arrays", all3 ? "" : ", q v only");
    CHECK(name, !memcmp(b1, b2, (size_t)M * W * 2) && !memcmp(x1, x2, (size_t)M * W * 4),
          "results differ");
    for (int j = 0; j < 3; j++)
        free(Bs[j]);
    free(U), free(x0), free(x1), free(x2), free(cs), free(invf), free(pos), free(ws), free(b1);
    free(b2);
}

int main(void) {
    static const int shapes[][5] = {
        /* M, N, r, ldu, lddu */
        {1, 1, 1, 1, 1},       {1, 16, 8, 8, 8},     {3, 37, 4, 7, 5},      {5, 16, 8, 24, 24},
        {130, 53, 8, 24, 24},  {257, 192, 8, 8, 8},  {129, 70, 12, 20, 16}, {64, 33, 16, 48, 48},
        {300, 576, 8, 24, 24}, {33, 17, 70, 72, 75}, {2, 200, 9, 9, 9},     {7, 100, 8, 8, 8},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4]);
    check_special();
    static const int g1[] = {37, 16, 100}, g2[] = {576, 192, 192}, g3[] = {768, 768}, g4[] = {5};
    check_group(130, 8, 3, g1);
    check_group(257, 16, 3, g2);
    check_group(1024, 8, 2, g3);
    check_group(3, 12, 1, g4);
    check_swiglu(130, 100, 8);
    check_swiglu(257, 1536, 16);
    check_swiglu(5, 37, 8);
    check_rope(130, 9, 3, 64, 8, 1, 1);
    check_rope(130, 9, 3, 64, 8, 0, 0);
    check_rope(7, 6, 6, 48, 16, 1, 0);
    check_rope(257, 4, 2, 16, 8, 0, 1);
    return ft_test_failures ? 1 : 0;
}
