/*
 * Flash-style causal grouped-query attention, f32: the same function as attention_forward /
 * attention_backward (attention.c) without the (B,H,T,T) probability buffer. Forward keeps, per
 * query row, a running max m, running sum l and an unnormalised output o over blocks of FA_BLOCK
 * keys (online softmax), and saves only the row logsumexp lse = m + log(l). Backward recomputes
 * each probability from lse blockwise. Query head h reads KV head h / (H/KV): K/V are never
 * repeated. seg (B,T), when non-NULL, restricts key s to seg[s] == seg[t] (packed samples).
 *
 * Forward, per (b, h, t), scale c = 1/sqrt(D), keys s <= t visible:
 *   for each block: x_s = c q_t·k_s ; m' = max(m, max_s x_s) ; l = l e^(m-m') + sum_s e^(x_s-m')
 *                   o = o e^(m-m') + sum_s e^(x_s-m') v_s ; m = m'
 *   out_t = o / l ; lse_t = m + log l            (so P_ts = exp(x_s - lse_t))
 * Backward (FlashAttention-2's), per (b, kv-head) task, which owns dk, dv of that KV head and dq
 * of the G query heads that read it (no two threads write the same row):
 *   delta_t = dout_t · out_t   (= sum_s P_ts dP_ts, since out_t = sum_s P_ts v_s)
 *   P_ts = exp(c q_t·k_s - lse_t) ; dP_ts = dout_t · v_s ; dS_ts = P_ts (dP_ts - delta_t)
 *   dv_s += P_ts dout_t ; dq_t += c dS_ts k_s ; dk_s += c dS_ts q_t
 * Work is O(T^2 D) like the exact kernel; memory beyond inputs/outputs is O(B H T) (lse).
 * Parallelism: forward over (b, h, t); backward over (b, kv-head) — B*KV tasks. Inner products
 * (scores, P·V, the dk/dv/dq updates) keep their outputs in 16-lane registers (ft_v16f) for head
 * dims 32, 48, 64, 96, 128; other D take the plain loops (same arithmetic, same order).
 *
 * bf16 forms (the mixed-precision step keeps q, k, v as bf16, as autocast does):
 * attention_flash_forward_bf16 / _backward_bf16 read q, k, v as bf16 and widen each element to
 * f32 as it is loaded (tiles read many times are widened once into a local tile); everything
 * else — scores, softmax, the running sums, the output, every gradient — is the f32 arithmetic
 * above, in the same order, so they equal the f32 kernels run on the widened inputs bit for bit.
 * The output stays f32: delta_t = dout_t · out_t then equals sum_s P_ts dP_ts (to f32 rounding),
 * so each row of dS sums to zero as softmax's gradient does (as in eager PyTorch, whose softmax
 * backward uses the f32 probabilities); from a bf16-rounded output it would be off by ~2^-9
 * |dout||out| per row, a bias common to the row. One body serves both: a compile-time `bf` flag.
 *
 * Not here: the KV-cache inference form (attention_forward_cached).
 */
#include "ftune/kernels.h"

#include "ftune/core.h"

#include "vec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FA_BLOCK 64 /* keys per block */
#define FA_ROWS 16  /* query rows per block */
#define FA_MAXD 256 /* largest head dim the tiles hold */

/* element i of x as f32, x being f32 (bf = 0) or bf16 bits (bf = 1; widening is exact) */
static inline __attribute__((always_inline)) float ld1(const void *x, int64_t i, const int bf) {
    if (!bf) return ((const float *)x)[i];
    uint32_t u = (uint32_t)((const uint16_t *)x)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* dst (n, D) = the n rows of x (stride ld) as f32, for a bf16 tile read many times */
static inline __attribute__((always_inline)) void widen_rows(float *dst, const void *x, int64_t ld,
                                                             int n, int D) {
    for (int r = 0; r < n; r++)
#pragma omp simd
        for (int d = 0; d < D; d++) dst[r * D + d] = ld1(x, r * ld + d, 1);
}

static inline int seen(const int *seg, int64_t b, int64_t T, int64_t s, int64_t t) {
    return !seg || seg[b * T + s] == seg[b * T + t];
}

static inline float dotf(const float *a, const float *b, int D) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* kt (D, n) = transpose of the n rows x_s (D each, row stride ld) */
static inline __attribute__((always_inline)) void transpose_block(float *kt, const void *x,
                                                                  int64_t ld, int n, int D,
                                                                  const int bf) {
    for (int s = 0; s < n; s++)
        for (int d = 0; d < D; d++) kt[d * FA_BLOCK + s] = ld1(x, s * ld + d, bf);
}

/* S (nr, FA_BLOCK) = A (nr rows of D, stride lda) · kt (D, FA_BLOCK). Four rows at a time share
 * each loaded kt row (16 accumulators in registers); every S element is the sum over d in
 * ascending order from 0, as a plain loop computes it. */
#define FA_NV (FA_BLOCK / 16)
static inline __attribute__((always_inline)) void scores_rows(float *S, const float *A, int64_t lda,
                                                              const float *kt, int D,
                                                              const int nrow) {
    ft_v16f acc[4][FA_NV], kv[FA_NV];
#pragma GCC unroll 4
    for (int q = 0; q < nrow; q++)
#pragma GCC unroll 4
        for (int c = 0; c < FA_NV; c++) acc[q][c] = (ft_v16f){0};
    for (int d = 0; d < D; d++) {
#pragma GCC unroll 4
        for (int c = 0; c < FA_NV; c++) memcpy(&kv[c], kt + d * FA_BLOCK + 16 * c, sizeof kv[c]);
#pragma GCC unroll 4
        for (int q = 0; q < nrow; q++) {
            const float a = A[q * lda + d];
#pragma GCC unroll 4
            for (int c = 0; c < FA_NV; c++) acc[q][c] += a * kv[c];
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < nrow; q++)
#pragma GCC unroll 4
        for (int c = 0; c < FA_NV; c++)
            memcpy(S + q * FA_BLOCK + 16 * c, &acc[q][c], sizeof acc[q][c]);
}

static inline void tile_scores(float *S, const float *A, int64_t lda, const float *kt, int nr,
                               int D) {
    int r = 0;
    for (; r + 4 <= nr; r += 4) scores_rows(S + r * FA_BLOCK, A + r * lda, lda, kt, D, 4);
    for (; r < nr; r++) scores_rows(S + r * FA_BLOCK, A + r * lda, lda, kt, D, 1);
}

/* Register-blocked row updates for head dims D = 16 nd (nd <= FA_VMAX): the D outputs stay in
 * nd 16-lane registers across the loop over keys (the plain loops kept them in memory: a load
 * and a store per multiply-add). Same arithmetic in the same order as the plain loops, so the
 * results are bit-identical; callers fall back to the plain loops for other D. */
#define FA_VMAX 8

/* o (D) = o * corr + sum_i p[i] v_i   (v_i = v + i ldv) */
static inline __attribute__((always_inline)) void pv_row(float *o, float corr, const float *p,
                                                         const float *v, int64_t ldv, int n,
                                                         const int nd) {
    ft_v16f acc[FA_VMAX], t;
#pragma GCC unroll 8
    for (int c = 0; c < nd; c++) {
        memcpy(&acc[c], o + 16 * c, sizeof t);
        acc[c] *= corr;
    }
    for (int i = 0; i < n; i++) {
        const float pi = p[i], *vi = v + i * ldv;
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&t, vi + 16 * c, sizeof t);
            acc[c] += pi * t;
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < nd; c++) memcpy(o + 16 * c, &acc[c], sizeof t);
}

/* gv (D) += sum_r P[r] go_r ; gk (D) += sum_r dS[r] q_r over rows with P[r] != 0 (P, dS with
 * stride FA_BLOCK; go_r with stride ldo, q_r with stride ld) */
static inline __attribute__((always_inline)) void dkv_row(float *gv, float *gk, const float *P,
                                                          const float *dS, const float *go,
                                                          int64_t ldo, const float *q, int64_t ld,
                                                          int nr, const int nd) {
    ft_v16f av[FA_VMAX], ak[FA_VMAX], t;
#pragma GCC unroll 8
    for (int c = 0; c < nd; c++) {
        memcpy(&av[c], gv + 16 * c, sizeof t);
        memcpy(&ak[c], gk + 16 * c, sizeof t);
    }
    for (int r = 0; r < nr; r++) {
        const float p = P[r * FA_BLOCK], g = dS[r * FA_BLOCK];
        if (p == 0.0f) continue;
        const float *gr = go + r * ldo, *qr = q + r * ld;
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&t, gr + 16 * c, sizeof t);
            av[c] += p * t;
            memcpy(&t, qr + 16 * c, sizeof t);
            ak[c] += g * t;
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < nd; c++) {
        memcpy(gv + 16 * c, &av[c], sizeof t);
        memcpy(gk + 16 * c, &ak[c], sizeof t);
    }
}

/* gq (D) += sum_i dS[i] k_i over keys with P[i] != 0 */
static inline __attribute__((always_inline)) void dq_row(float *gq, const float *P, const float *dS,
                                                         const float *k, int64_t ldk, int n,
                                                         const int nd) {
    ft_v16f acc[FA_VMAX], t;
#pragma GCC unroll 8
    for (int c = 0; c < nd; c++) memcpy(&acc[c], gq + 16 * c, sizeof t);
    for (int i = 0; i < n; i++) {
        if (P[i] == 0.0f) continue;
        const float g = dS[i], *ki = k + i * ldk;
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&t, ki + 16 * c, sizeof t);
            acc[c] += g * t;
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < nd; c++) memcpy(gq + 16 * c, &acc[c], sizeof t);
}

/* dispatch on the head dim with nd a compile-time constant (so acc[] lives in registers);
 * returns 0 when D has no blocked form */
#define FA_DISPATCH(D, call)                                                                       \
    ((D) == 48 ? (call(3), 1) : (D) == 64 ? (call(4), 1) : (D) == 128 ? (call(8), 1)               \
               : (D) == 32 ? (call(2), 1) : (D) == 96 ? (call(6), 1) : 0)

/* The forward, q/k/v f32 (bf = 0) or bf16 (bf = 1; element pointers offset with the element
 * size es); out and lse f32. */
static inline __attribute__((always_inline)) void
flash_forward(float *out, float *lse, const void *q, const void *k, const void *v, const int *seg,
              int B, int T, int H, int KV, int D, const int bf) {
    FT_ASSERT(H % KV == 0 && D <= FA_MAXD);
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t nqb = (T + FA_ROWS - 1) / FA_ROWS;
    const int64_t ldq = (int64_t)H * D, ldk = (int64_t)KV * D, es = bf ? 2 : 4;
    const char *qc = q, *kc = k, *vc = v;
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t qb = 0; qb < nqb; qb++) {
                const int64_t kh = h / G, t0 = (nqb - 1 - qb) * FA_ROWS; /* long rows first */
                const int nr = (int)(T - t0 < FA_ROWS ? T - t0 : FA_ROWS);
                const float *qt = (const float *)(qc + ((b * T + t0) * H + h) * D * es);
                int64_t lq = ldq; // qt: (nr, D) stride lq
                float kt[FA_MAXD * FA_BLOCK], S[FA_ROWS * FA_BLOCK], o[FA_ROWS * FA_MAXD];
                float m[FA_ROWS], l[FA_ROWS], qf[FA_ROWS * FA_MAXD],
                    vf[FA_BLOCK * FA_MAXD];
                if (bf) { /* bf16: the tiles read many times are widened once */
                    widen_rows(qf, qt, ldq, nr, D);
                    qt = qf, lq = D;
                }
                for (int r = 0; r < nr; r++) m[r] = -INFINITY, l[r] = 0.0f;
                memset(o, 0, sizeof(float) * (size_t)nr * D);
                for (int64_t s0 = 0; s0 < t0 + nr; s0 += FA_BLOCK) {
                    int ns = (int)(t0 + nr - s0 < FA_BLOCK ? t0 + nr - s0 : FA_BLOCK);
                    const void *ks = kc + ((b * T + s0) * KV + kh) * D * es;
                    const float *vs = (const float *)(vc + ((b * T + s0) * KV + kh) * D * es);
                    int64_t lv = ldk;
                    if (bf) {
                        widen_rows(vf, vs, ldk, ns, D);
                        vs = vf, lv = D;
                    }
                    transpose_block(kt, ks, ldk, ns, D, bf);
                    tile_scores(S, qt, lq, kt, nr, D);
                    for (int r = 0; r < nr; r++) {
                        const int64_t t = t0 + r;
                        float *x = S + r * FA_BLOCK, bm = -INFINITY;
                        for (int i = 0; i < ns; i++) {
                            int64_t s = s0 + i;
                            x[i] = (s <= t && seen(seg, b, T, s, t)) ? x[i] * scale : -INFINITY;
                            if (x[i] > bm) bm = x[i];
                        }
                        if (bm == -INFINITY) continue; /* row sees nothing in this block */
                        float mn = bm > m[r] ? bm : m[r];
                        float corr = expf(m[r] - mn); /* 0 on the row's first block */
                        float *orow = o + r * D, sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                        for (int i = 0; i < ns; i++) {
                            x[i] = x[i] == -INFINITY ? 0.0f : ft_exp_simd(x[i] - mn);
                            sum += x[i];
                        }
                        l[r] = l[r] * corr + sum;
                        m[r] = mn;
#define FA_PV(nd) pv_row(orow, corr, x, vs, lv, ns, nd)
                        if (FA_DISPATCH(D, FA_PV)) continue;
#undef FA_PV
#pragma omp simd
                        for (int d = 0; d < D; d++) orow[d] *= corr;
                        for (int i = 0; i < ns; i++) {
                            float p = x[i];
                            if (p == 0.0f) continue;
                            const float *vr = vs + i * lv;
#pragma omp simd
                            for (int d = 0; d < D; d++) orow[d] += p * vr[d];
                        }
                    }
                }
                for (int r = 0; r < nr; r++) {
                    float inv = 1.0f / l[r], *dst = out + ((b * T + t0 + r) * H + h) * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) dst[d] = o[r * D + d] * inv;
                    if (lse) lse[(b * H + h) * T + t0 + r] = m[r] + logf(l[r]);
                }
            }
}

void attention_flash_forward(float *out, float *lse, const float *q, const float *k,
                             const float *v, const int *seg, int B, int T, int H, int KV, int D) {
    flash_forward(out, lse, q, k, v, seg, B, T, H, KV, D, 0);
}

void attention_flash_forward_bf16(float *out, float *lse, const uint16_t *q, const uint16_t *k,
                                  const uint16_t *v, const int *seg, int B, int T, int H, int KV,
                                  int D) {
    flash_forward(out, lse, q, k, v, seg, B, T, H, KV, D, 1);
}

/* The backward, q/k/v f32 (bf = 0) or bf16 (bf = 1); dout, out and the gradients f32. */
static inline __attribute__((always_inline)) void
flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const void *q,
               const void *k, const void *v, const float *lse, const int *seg, int B, int T, int H,
               int KV, int D, const int bf) {
    FT_ASSERT(H % KV == 0 && D <= FA_MAXD);
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t ldq = (int64_t)H * D, ldk = (int64_t)KV * D, es = bf ? 2 : 4;
    const char *qc = q, *kc = k, *vc = v;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < KV; kh++) {
            if (dq)
                for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                    for (int64_t t = 0; t < T; t++)
                        memset(dq + ((b * T + t) * H + h) * D, 0, (size_t)D * sizeof(float));
            for (int64_t s0 = 0; s0 < T; s0 += FA_BLOCK) {
                const int ns = (int)(T - s0 < FA_BLOCK ? T - s0 : FA_BLOCK);
                const void *ks0 = kc + ((b * T + s0) * KV + kh) * D * es; // (ns, D) stride ldk
                const void *vs = vc + ((b * T + s0) * KV + kh) * D * es;
                float kt[FA_MAXD * FA_BLOCK], vt[FA_MAXD * FA_BLOCK];
                float gk[FA_BLOCK * FA_MAXD], gv[FA_BLOCK * FA_MAXD];
                float P[FA_ROWS * FA_BLOCK], dS[FA_ROWS * FA_BLOCK];
                float kf[FA_BLOCK * FA_MAXD], qf[FA_ROWS * FA_MAXD];
                transpose_block(kt, ks0, ldk, ns, D, bf);
                transpose_block(vt, vs, ldk, ns, D, bf);
                const float *ks = ks0; // (ns, D) stride lk
                int64_t lk = ldk;
                if (bf) { /* bf16: the tiles read many times are widened once */
                    widen_rows(kf, ks0, ldk, ns, D);
                    ks = kf, lk = D;
                }
                memset(gk, 0, sizeof(float) * (size_t)ns * D);
                memset(gv, 0, sizeof(float) * (size_t)ns * D);
                for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                    for (int64_t t0 = s0 / FA_ROWS * FA_ROWS; t0 < T; t0 += FA_ROWS) {
                        const int nr = (int)(T - t0 < FA_ROWS ? T - t0 : FA_ROWS);
                        const float *qt = (const float *)(qc + ((b * T + t0) * H + h) * D * es);
                        const float *go = dout + ((b * T + t0) * H + h) * D; // (nr, D) stride ldq
                        int64_t lq = ldq;                                     // qt: (nr, D)
                        if (bf) {
                            widen_rows(qf, qt, ldq, nr, D);
                            qt = qf, lq = D;
                        }
                        tile_scores(P, qt, lq, kt, nr, D);
                        tile_scores(dS, go, ldq, vt, nr, D); /* dP */
                        for (int r = 0; r < nr; r++) {
                            const int64_t t = t0 + r;
                            const float L = lse[(b * H + h) * T + t];
                            const float delta = dotf(go + r * ldq, out + ((b * T + t) * H + h) * D, D);
                            float *pr = P + r * FA_BLOCK, *dr = dS + r * FA_BLOCK;
                            int lim = (int)(t - s0 + 1 < ns ? t - s0 + 1 : ns); /* causal */
#pragma omp simd
                            for (int i = 0; i < ns; i++) {
                                float p = i < lim ? ft_exp_simd(pr[i] * scale - L) : 0.0f;
                                pr[i] = p;
                                dr[i] = p * (dr[i] - delta) * scale;
                            }
                            if (seg)
                                for (int i = 0; i < lim; i++)
                                    if (!seen(seg, b, T, s0 + i, t)) pr[i] = dr[i] = 0.0f;
                        }
                        /* dv_s += sum_r P_rs dout_r ; dk_s += sum_r dS_rs q_r */
                        int blocked = 1;
                        for (int i = 0; i < ns && blocked; i++) {
#define FA_DKV(nd) dkv_row(gv + i * D, gk + i * D, P + i, dS + i, go, ldq, qt, lq, nr, nd)
                            blocked = FA_DISPATCH(D, FA_DKV);
#undef FA_DKV
                        }
                        if (!blocked)
                            for (int r = 0; r < nr; r++) {
                                const float *gor = go + r * ldq, *qr = qt + r * lq;
                                for (int i = 0; i < ns; i++) {
                                    float p = P[r * FA_BLOCK + i], c = dS[r * FA_BLOCK + i];
                                    if (p == 0.0f) continue;
                                    float *gvs = gv + i * D, *gks = gk + i * D;
#pragma omp simd
                                    for (int d = 0; d < D; d++) {
                                        gvs[d] += p * gor[d];
                                        gks[d] += c * qr[d];
                                    }
                                }
                            }
                        /* dq_r += sum_s dS_rs k_s */
                        if (dq)
                            for (int r = 0; r < nr; r++) {
                                float *gq = dq + ((b * T + t0 + r) * H + h) * D;
#define FA_DQ(nd) dq_row(gq, P + r * FA_BLOCK, dS + r * FA_BLOCK, ks, lk, ns, nd)
                                if (FA_DISPATCH(D, FA_DQ)) continue;
#undef FA_DQ
                                for (int i = 0; i < ns; i++) {
                                    float c = dS[r * FA_BLOCK + i];
                                    if (P[r * FA_BLOCK + i] == 0.0f) continue;
                                    const float *kr = ks + i * lk;
#pragma omp simd
                                    for (int d = 0; d < D; d++) gq[d] += c * kr[d];
                                }
                            }
                    }
                for (int i = 0; i < ns; i++) {
                    if (dk) memcpy(dk + ((b * T + s0 + i) * KV + kh) * D, gk + i * D, (size_t)D * 4);
                    if (dv) memcpy(dv + ((b * T + s0 + i) * KV + kh) * D, gv + i * D, (size_t)D * 4);
                }
            }
        }
}

void attention_flash_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *out, const float *q, const float *k, const float *v,
                              const float *lse, const int *seg, int B, int T, int H, int KV,
                              int D) {
    flash_backward(dq, dk, dv, dout, out, q, k, v, lse, seg, B, T, H, KV, D, 0);
}

void attention_flash_backward_bf16(float *dq, float *dk, float *dv, const float *dout,
                                   const float *out, const uint16_t *q, const uint16_t *k,
                                   const uint16_t *v, const float *lse, const int *seg, int B,
                                   int T, int H, int KV, int D) {
    flash_backward(dq, dk, dv, dout, out, q, k, v, lse, seg, B, T, H, KV, D, 1);
}
