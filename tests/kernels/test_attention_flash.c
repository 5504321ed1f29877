/*
 * Flash-style attention (src/kernels/cpu/attention_flash.c) against the naive twin
 * (attention_forward_naive / attention_backward_naive: double accumulation, whole score rows)
 * over awkward shapes: T below, at, just above and far from a multiple of the 64-key block,
 * GQA ratios H/KV = 1, 2, 3, head dims 1, 7, 16, 32, 48, 64, 80, 96, 128 (every register-blocked
 * width and plain ones), packed-sample segment masks; and the
 * saved logsumexp against a double-precision one. Gradient buffers start as garbage (WRITTEN).
 * The bf16 forms (q, k, v as bf16) on the same shapes: bit-identical to the f32 kernels run
 * on the widened inputs (bf16_forms), so the tolerances below cover them too, plus the bf16
 * rounding of their inputs (relative 2^-9 per element), which is the mixed-precision recipe's.
 * The dp forms (AVX512-BF16 dot products, head dims a multiple of 16) round more (P, dS, dout):
 * they get a per-element bound derived from the absolute terms (dp_forms below).
 *
 * Tolerances (|got - ref| <= atol + rtol |ref|):
 *   out, lse: f32 dot products over D <= 80 terms and softmax sums over T <= 200 terms, in a
 *     different order (blockwise rescaling) from the double reference: a few ulp of the O(1..10)
 *     partial sums -> atol 2e-5, rtol 1e-4.
 *   dq, dk, dv: two chained reductions (dP then sums over up to G*T rows of dS terms), scores
 *     recomputed from lse in f32 (exp amplifies lse's few-ulp error) -> atol 5e-5, rtol 2e-4.
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/kernels.h"

#include <math.h>
#include <string.h>

#define OUT_ATOL 2e-5
#define OUT_RTOL 1e-4
#define GRAD_ATOL 5e-5
#define GRAD_RTOL 2e-4

static float *rand_buf(size_t n, float s) {
    float *p = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++)
        p[i] = ft_test_frand() * s;
    return p;
}

/* The bf16 forms equal the f32 kernels on the widened bf16 q, k, v, bit for bit: they widen each
 * element on load and otherwise run the same arithmetic in the same order. Outputs and gradient
 * buffers start as garbage (WRITTEN). */
/* dq (nq), dk and dv (nk) of two runs bit for bit the same */
static int same_grads(float *const g1[3], float *const g2[3], size_t nq, size_t nk) {
    return !memcmp(g1[0], g2[0], nq * 4) && !memcmp(g1[1], g2[1], nk * 4) &&
           !memcmp(g1[2], g2[2], nk * 4);
}

static void bf16_forms(int B, int T, int H, int KV, int D, const int *seg, const float *q,
                       const float *k, const float *v, const float *dout, const char *tag) {
    char name[200];
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D, nl = (size_t)B * H * T;
    uint16_t *qb = malloc(nq * 2 + 2), *kb = malloc(nk * 2 + 2), *vb = malloc(nk * 2 + 2);
    float *qw = malloc(nq * 4 + 4), *kw = malloc(nk * 4 + 4), *vw = malloc(nk * 4 + 4),
          *ow = rand_buf(nq, 1), *ob = rand_buf(nq, 1);
    float *lw = malloc(nl * 4 + 4), *lb = rand_buf(nl, 1);
    bf16_from_f32(qb, q, nq), bf16_from_f32(kb, k, nk), bf16_from_f32(vb, v, nk);
    bf16_to_f32(qw, qb, nq), bf16_to_f32(kw, kb, nk), bf16_to_f32(vw, vb, nk);
    attention_flash_forward(ow, lw, qw, kw, vw, seg, B, T, H, KV, D);
    attention_flash_forward_bf16(ob, lb, qb, kb, vb, seg, B, T, H, KV, D);
    snprintf(name, sizeof name, "flash bf16 forward == f32 on widened inputs %s", tag);
    CHECK(name, !memcmp(ob, ow, nq * 4) && !memcmp(lb, lw, nl * 4), "out or lse differ");
    float *g1[3] = {rand_buf(nq, 9), rand_buf(nk, 9), rand_buf(nk, 9)};
    float *g2[3] = {rand_buf(nq, 9), rand_buf(nk, 9), rand_buf(nk, 9)};
    attention_flash_backward(g1[0], g1[1], g1[2], dout, ow, qw, kw, vw, lw, seg, B, T, H, KV, D);
    attention_flash_backward_bf16(g2[0], g2[1], g2[2], dout, ob, qb, kb, vb, lb, seg, B, T, H, KV,
                                  D);
    snprintf(name, sizeof name, "flash bf16 backward == f32 on widened inputs %s", tag);
    CHECK(name, same_grads(g1, g2, nq, nk), "dq, dk or dv differ");
    for (int i = 0; i < 3; i++)
        free(g1[i]), free(g2[i]);
    free(qb), free(kb), free(vb), free(ob), free(qw), free(kw), free(vw), free(ow), free(lw);
    free(lb);
}

/* |got - ref| <= atol + rtol |ref| + 2^-7 budget, element by element; reports the worst */
static void check_budget(const char *name, const float *got, const double *ref,
                         const double *budget, size_t n, double atol, double rtol) {
    size_t worst = 0;
    double excess = -INFINITY;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]),
               lim = atol + rtol * fabs(ref[i]) + budget[i] / 128;
        if (!(d <= lim)) bad = 1; /* NaN fails */
        if (d - lim > excess || d != d) excess = d - lim, worst = i;
    }
    CHECK(name, !bad, "element %zu: got %.9g ref %.9g, |diff| %.3g > bound %.3g (budget %.3g)",
          worst, got[worst], ref[worst], fabs(got[worst] - ref[worst]),
          atol + rtol * fabs(ref[worst]) + budget[worst] / 128, budget[worst]);
}

/* The dp forms (AVX512-BF16 dot products) round P, dS and dout to bf16 as operands, so they are
 * checked against a double reference on the same bf16 q, k, v with a bound derived per element:
 * the f32 tolerances above plus 2^-7 times the sum of the absolute product terms behind the
 * element (the "budget"). Each term carries at most two bf16 roundings (relative 2^-9 each) of
 * its operands or of what they were computed from, so 2^-8 of the budget bounds the error; 2^-7
 * leaves a factor 2. Budgets, per (b, h, t), P the probabilities, c = 1/sqrt(D):
 *   out_td: sum_s P_ts |v_sd|                     dv_sd: sum_t P_ts |dout_td|
 *   dS_ts:  c P_ts (sum_d |dout_td v_sd| + sum_d |dout_td| bout_td) + |dS_ts|
 *           (dP's dout rounding; delta = dout·out from the dp forward's out; dS's own rounding)
 *   dq_td:  sum_s bdS_ts |k_sd|                  dk_sd: sum_t bdS_ts |q_td|
 * Outputs start as garbage (WRITTEN); a NULL dq leaves dv bit for bit as it was. */
/* The dp backward reading the forward's output as bf16 (outb, widened as read) gives the bits it
 * gives on the widened copy as f32 (out), all three gradients. */
static void dp_outb_same(int B, int T, int H, int KV, int D, const int *seg, const uint16_t *qb,
                         const uint16_t *kb, const uint16_t *vb, const float *dout, const float *o,
                         const float *lse, const char *tag) {
    char name[200];
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D;
    uint16_t *ob = malloc(nq * 2 + 2);
    float *ow = malloc(nq * 4 + 4), *g1[3], *g2[3];
    bf16_from_f32(ob, o, nq), bf16_to_f32(ow, ob, nq);
    for (int i = 0; i < 3; i++)
        g1[i] = rand_buf(i ? nk : nq, 9), g2[i] = rand_buf(i ? nk : nq, 9);
    attention_flash_backward_dp(g1[0], g1[1], g1[2], dout, ow, NULL, qb, kb, vb, lse, seg, B, T, H,
                                KV, D);
    attention_flash_backward_dp(g2[0], g2[1], g2[2], dout, NULL, ob, qb, kb, vb, lse, seg, B, T, H,
                                KV, D);
    snprintf(name, sizeof name, "flash dp backward, bf16 out == its f32 widening %s", tag);
    CHECK(name, same_grads(g1, g2, nq, nk), "gradients differ");
    for (int i = 0; i < 3; i++)
        free(g1[i]), free(g2[i]);
    free(ob), free(ow);
}

static void dp_forms(int B, int T, int H, int KV, int D, const int *seg, const float *q,
                     const float *k, const float *v, const float *dout, const char *tag) {
    char name[200];
    const int G = H / KV;
    const double c = 1.0 / sqrt((double)D);
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D, nl = (size_t)B * H * T;
    uint16_t *qb = malloc(nq * 2 + 2), *kb = malloc(nk * 2 + 2), *vb = malloc(nk * 2 + 2);
    float *qw = malloc(nq * 4 + 4), *kw = malloc(nk * 4 + 4), *vw = malloc(nk * 4 + 4);
    bf16_from_f32(qb, q, nq), bf16_from_f32(kb, k, nk), bf16_from_f32(vb, v, nk);
    bf16_to_f32(qw, qb, nq), bf16_to_f32(kw, kb, nk), bf16_to_f32(vw, vb, nk);
    double *ro = calloc(nq, 8), *bo = calloc(nq, 8), *rq = calloc(nq, 8), *bq = calloc(nq, 8);
    double *rk = calloc(nk, 8), *bk = calloc(nk, 8), *rv = calloc(nk, 8), *bv = calloc(nk, 8);
    double *P = malloc((size_t)T * 8), *dS = malloc((size_t)T * 8), *bS = malloc((size_t)T * 8);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                const float *qt = qw + ((b * T + t) * H + h) * D,
                            *go = dout + ((b * T + t) * H + h) * D;
                double mx = -INFINITY, sum = 0, delta = 0, bdelta = 0;
                for (int64_t s = 0; s <= t; s++) {
                    P[s] = -INFINITY;
                    if (seg && seg[b * T + s] != seg[b * T + t]) continue;
                    double a = 0;
                    for (int d = 0; d < D; d++)
                        a += (double)qt[d] * kw[((b * T + s) * KV + h / G) * D + d];
                    P[s] = a * c;
                    if (P[s] > mx) mx = P[s];
                }
                for (int64_t s = 0; s <= t; s++)
                    sum += P[s] == -INFINITY ? 0 : exp(P[s] - mx);
                for (int64_t s = 0; s <= t; s++)
                    P[s] = P[s] == -INFINITY ? 0 : exp(P[s] - mx) / sum;
                double *o = ro + ((b * T + t) * H + h) * D, *ob = bo + ((b * T + t) * H + h) * D;
                for (int64_t s = 0; s <= t; s++)
                    for (int d = 0; d < D; d++) {
                        const double x = vw[((b * T + s) * KV + h / G) * D + d];
                        o[d] += P[s] * x, ob[d] += P[s] * fabs(x);
                    }
                for (int d = 0; d < D; d++)
                    delta += go[d] * o[d], bdelta += fabs(go[d]) * ob[d];
                for (int64_t s = 0; s <= t; s++) {
                    const float *vs = vw + ((b * T + s) * KV + h / G) * D;
                    double dp = 0, bdp = 0;
                    for (int d = 0; d < D; d++)
                        dp += (double)go[d] * vs[d], bdp += fabs((double)go[d] * vs[d]);
                    dS[s] = c * P[s] * (dp - delta);
                    bS[s] = c * P[s] * (bdp + bdelta) + fabs(dS[s]);
                }
                for (int64_t s = 0; s <= t; s++) {
                    const size_t kr = ((b * T + s) * KV + h / G) * D,
                                 qr = ((b * T + t) * H + h) * D;
                    for (int d = 0; d < D; d++) {
                        rq[qr + d] += dS[s] * kw[kr + d], bq[qr + d] += bS[s] * fabs(kw[kr + d]);
                        rk[kr + d] += dS[s] * qw[qr + d], bk[kr + d] += bS[s] * fabs(qw[qr + d]);
                        rv[kr + d] += P[s] * go[d], bv[kr + d] += P[s] * fabs(go[d]);
                    }
                }
            }
    float *o1 = rand_buf(nq, 1), *l1 = rand_buf(nl, 1);
    float *g[3] = {rand_buf(nq, 9), rand_buf(nk, 9), rand_buf(nk, 9)}, *gv = rand_buf(nk, 9);
    attention_flash_forward_dp(o1, NULL, l1, qb, kb, vb, seg, B, T, H, KV, D);
    snprintf(name, sizeof name, "flash dp forward within bf16 bound %s", tag);
    check_budget(name, o1, ro, bo, nq, OUT_ATOL, OUT_RTOL);
    { /* the bf16 output: bf16_from_f32 of the f32 one bit for bit, with and without out */
        uint16_t *ob = malloc(nq * 2 + 2), *ob2 = malloc(nq * 2 + 2), *ref = malloc(nq * 2 + 2);
        float *o2 = malloc(nq * 4), *l2 = malloc(nl * 4);
        bf16_from_f32(ref, o1, nq);
        attention_flash_forward_dp(o2, ob, l2, qb, kb, vb, seg, B, T, H, KV, D);
        attention_flash_forward_dp(NULL, ob2, l2, qb, kb, vb, seg, B, T, H, KV, D);
        snprintf(name, sizeof name, "flash dp forward bf16 out == rounded f32 out %s", tag);
        CHECK(name,
              !memcmp(ob, ref, nq * 2) && !memcmp(ob2, ref, nq * 2) && !memcmp(o2, o1, nq * 4) &&
                  !memcmp(l2, l1, nl * 4),
              "differs");
        free(ob), free(ob2), free(ref), free(o2), free(l2);
    }
    attention_flash_backward_dp(g[0], g[1], g[2], dout, o1, NULL, qb, kb, vb, l1, seg, B, T, H, KV,
                                D);
    snprintf(name, sizeof name, "flash dp dq within bf16 bound %s", tag);
    check_budget(name, g[0], rq, bq, nq, GRAD_ATOL, GRAD_RTOL);
    snprintf(name, sizeof name, "flash dp dk within bf16 bound %s", tag);
    check_budget(name, g[1], rk, bk, nk, GRAD_ATOL, GRAD_RTOL);
    snprintf(name, sizeof name, "flash dp dv within bf16 bound %s", tag);
    check_budget(name, g[2], rv, bv, nk, GRAD_ATOL, GRAD_RTOL);
    attention_flash_backward_dp(NULL, NULL, gv, dout, o1, NULL, qb, kb, vb, l1, seg, B, T, H, KV,
                                D);
    snprintf(name, sizeof name, "flash dp dv alone %s", tag);
    CHECK(name, !memcmp(gv, g[2], nk * 4), "dv differs without dq, dk");
    dp_outb_same(B, T, H, KV, D, seg, qb, kb, vb, dout, o1, l1, tag);
    for (int i = 0; i < 3; i++)
        free(g[i]);
    free(gv), free(o1), free(l1), free(P), free(dS), free(bS), free(ro), free(bo), free(rq);
    free(bq), free(rk), free(bk), free(rv), free(bv), free(qb), free(kb), free(vb), free(qw);
    free(kw), free(vw);
}

static void one(int B, int T, int H, int KV, int D, int with_seg) {
    char tag[96], name[160];
    snprintf(tag, sizeof tag, "B%d T%d H%d KV%d D%d seg%d", B, T, H, KV, D, with_seg);
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D, na = (size_t)B * H * T * T;
    /* q scaled so scores reach ~+-10: a peaky softmax, where a wrong max/rescale shows */
    float *q = rand_buf(nq, 3.0f * sqrtf((float)D) / 4), *k = rand_buf(nk, 1), *v = rand_buf(nk, 1),
          *dout = rand_buf(nq, 1);
    int *seg = NULL;
    if (with_seg) {
        seg = malloc((size_t)B * T * sizeof(int));
        for (int b = 0; b < B; b++)
            for (int t = 0, s = 0; t < T; t++) {
                if (t > 0 && (t * 7 + b) % 23 == 0) s++;
                seg[b * T + t] = s;
            }
    }
    float *o1 = rand_buf(nq, 1), *o2 = calloc(nq + 1, 4), *att = calloc(na + 1, 4);
    float *lse = rand_buf((size_t)B * H * T, 1), *lse_ref = malloc(((size_t)B * H * T + 1) * 4);
    attention_flash_forward(o1, lse, q, k, v, seg, B, T, H, KV, D);
    attention_forward_naive(o2, att, q, k, v, seg, B, T, H, KV, D);
    snprintf(name, sizeof name, "flash forward %s", tag);
    check_close(name, o1, o2, nq, OUT_ATOL, OUT_RTOL);
    /* lse in double from the same scores */
    const int G = H / KV;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                double mx = -INFINITY, sc[T];
                for (int64_t s = 0; s <= t; s++) {
                    sc[s] = -INFINITY;
                    if (seg && seg[b * T + s] != seg[b * T + t]) continue;
                    double a = 0;
                    for (int d = 0; d < D; d++)
                        a += (double)q[((b * T + t) * H + h) * D + d] *
                             k[((b * T + s) * KV + h / G) * D + d];
                    sc[s] = a / sqrt((double)D);
                    if (sc[s] > mx) mx = sc[s];
                }
                double sum = 0;
                for (int64_t s = 0; s <= t; s++)
                    if (sc[s] != -INFINITY) sum += exp(sc[s] - mx);
                lse_ref[(b * H + h) * T + t] = (float)(mx + log(sum));
            }
    snprintf(name, sizeof name, "flash lse %s", tag);
    check_close(name, lse, lse_ref, (size_t)B * H * T, OUT_ATOL, OUT_RTOL);
    /* no-lse inference call gives the same output bit for bit */
    float *o3 = calloc(nq + 1, 4);
    attention_flash_forward(o3, NULL, q, k, v, seg, B, T, H, KV, D);
    snprintf(name, sizeof name, "flash forward without lse %s", tag);
    check_close(name, o3, o1, nq, 0, 0);

    float *gq1 = rand_buf(nq, 9), *gk1 = rand_buf(nk, 9), *gv1 = rand_buf(nk, 9);
    float *gq2 = calloc(nq + 1, 4), *gk2 = calloc(nk + 1, 4), *gv2 = calloc(nk + 1, 4);
    attention_flash_backward(gq1, gk1, gv1, dout, o1, q, k, v, lse, seg, B, T, H, KV, D);
    attention_backward_naive(gq2, gk2, gv2, dout, q, k, v, att, B, T, H, KV, D);
    snprintf(name, sizeof name, "flash dq %s", tag);
    check_close(name, gq1, gq2, nq, GRAD_ATOL, GRAD_RTOL);
    snprintf(name, sizeof name, "flash dk %s", tag);
    check_close(name, gk1, gk2, nk, GRAD_ATOL, GRAD_RTOL);
    snprintf(name, sizeof name, "flash dv %s", tag);
    check_close(name, gv1, gv2, nk, GRAD_ATOL, GRAD_RTOL);
    /* NULL gradients: the others are unchanged */
    float *gv3 = rand_buf(nk, 9);
    attention_flash_backward(NULL, NULL, gv3, dout, o1, q, k, v, lse, seg, B, T, H, KV, D);
    snprintf(name, sizeof name, "flash dv alone %s", tag);
    check_close(name, gv3, gv1, nk, 0, 0);
    bf16_forms(B, T, H, KV, D, seg, q, k, v, dout, tag);
    if (attention_flash_dp_ok(D)) dp_forms(B, T, H, KV, D, seg, q, k, v, dout, tag);
    free(q), free(k), free(v), free(dout), free(seg), free(o1), free(o2), free(o3), free(att);
    free(lse), free(lse_ref), free(gq1), free(gk1), free(gv1), free(gq2), free(gk2), free(gv2);
    free(gv3);
}

int main(void) {
    static const int sh[][6] = {
        {1, 1, 1, 1, 1, 0},   {1, 5, 2, 2, 7, 0},    {2, 63, 4, 4, 48, 0},  {1, 64, 4, 2, 64, 1},
        {2, 65, 6, 2, 80, 0}, {1, 130, 6, 3, 48, 1}, {2, 200, 3, 1, 64, 1}, {1, 129, 9, 3, 64, 0},
        {3, 17, 6, 2, 16, 1}, {1, 77, 4, 2, 32, 0},  {1, 70, 2, 1, 96, 1},  {1, 100, 2, 2, 128, 0},
    };
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
        one(sh[i][0], sh[i][1], sh[i][2], sh[i][3], sh[i][4], sh[i][5]);
    if (attention_flash_dp_ok(16)) { /* G T > 8192: the dp backward's delta row by row, not up
                                      * front (its DP_DELTA), both ways of reading out */
        const int B = 1, T = 1100, H = 8, KV = 1, D = 16;
        size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D;
        float *q = rand_buf(nq, 3), *k = rand_buf(nk, 1), *v = rand_buf(nk, 1),
              *dout = rand_buf(nq, 1), *o = malloc(nq * 4), *lse = malloc((size_t)B * H * T * 4);
        uint16_t *qb = malloc(nq * 2), *kb = malloc(nk * 2), *vb = malloc(nk * 2);
        bf16_from_f32(qb, q, nq), bf16_from_f32(kb, k, nk), bf16_from_f32(vb, v, nk);
        attention_flash_forward_dp(o, NULL, lse, qb, kb, vb, NULL, B, T, H, KV, D);
        dp_outb_same(B, T, H, KV, D, NULL, qb, kb, vb, dout, o, lse, "B1 T1100 H8 KV1 D16");
        free(q), free(k), free(v), free(dout), free(o), free(lse), free(qb), free(kb), free(vb);
    }
    return ft_test_exit();
}
