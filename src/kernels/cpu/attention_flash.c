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
 * Parallelism: forward over (b, h, blocks of FA_QROWS query rows: their FA_ROWS-row tiles share
 * each transposed key block); backward over (b, kv-head) — B*KV tasks. Inner products (scores,
 * P·V, the dk/dv/dq updates) keep their outputs in 16-lane registers (ft_v16f) with fused
 * multiply-adds (ft_fma16: ISO C mode does not contract a*b+c), each loaded vector feeding up to
 * four rows or keys, for head dims 32, 48, 64, 96, 128; other D take the plain loops.
 *
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

#include "attention_flash.h"
#include "vec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FA_BLOCK 64 /* keys per block */
#define FA_ROWS 16  /* query rows per block */
#define FA_QROWS 64 /* query rows per forward task (FA_ROWS-row tiles sharing a key block) */
#define FA_MAXD 256 /* largest head dim the tiles hold */
#define FA_DELTA 8192 /* backward: rows x heads-per-KV-head whose delta is computed up front */
_Static_assert(FA_ROWS <= FA_MAX_ROWS, "a tile's rows go through fa_softmax_rows at once");

/* element i of x as f32, x being f32 (bf = 0) or bf16 bits (bf = 1; widening is exact) */
static inline __attribute__((always_inline)) float ld1(const void *x, int64_t i, const int bf) {
    return bf ? ft_bf16_widen(((const uint16_t *)x)[i]) : ((const float *)x)[i];
}

/* dst (n, D) = the n rows of x (stride ld) as f32, for a bf16 tile read many times */
static inline __attribute__((always_inline)) void widen_rows(float *dst, const void *x, int64_t ld,
                                                             int n, int D) {
    for (int r = 0; r < n; r++)
#pragma omp simd
        for (int d = 0; d < D; d++) dst[r * D + d] = ld1(x, r * ld + d, 1);
}

/* kt (D, n) = transpose of the n rows x_s (D each, row stride ld; f32, or bf16 widened when bf):
 * in 16x16 tiles in registers where the target has AVX-512 (bf16 rows widened 16 at a time into
 * an f32 tile first: exact, so the same values), the ragged edges element by element */
static inline __attribute__((always_inline)) void transpose_block(float *kt, const void *x,
                                                                  int64_t ld, int n, int D,
                                                                  const int bf) {
    int s0 = 0;
#if defined(__AVX512F__)
    if (bf) {
        float tile[16 * FA_MAXD];
        const int d16 = D / 16 * 16;
        for (; s0 + 16 <= n; s0 += 16) {
            widen_rows(tile, (const uint16_t *)x + s0 * ld, ld, 16, D);
            for (int d = 0; d < d16; d += 16)
                ft_transpose16(kt + d * FA_BLOCK + s0, FA_BLOCK, tile + d, D);
            for (int s = 0; s < 16; s++)
                for (int d = d16; d < D; d++) kt[d * FA_BLOCK + s0 + s] = tile[s * D + d];
        }
    } else {
        const float *xf = x;
        const int d16 = D / 16 * 16;
        for (; s0 + 16 <= n; s0 += 16)
            for (int d = 0; d < d16; d += 16)
                ft_transpose16(kt + d * FA_BLOCK + s0, FA_BLOCK, xf + s0 * ld + d, ld);
        for (int s = 0; s < s0; s++) /* columns past the last full 16 */
            for (int d = d16; d < D; d++) kt[d * FA_BLOCK + s] = xf[s * ld + d];
    }
#endif
    for (int s = s0; s < n; s++)
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
            for (int c = 0; c < FA_NV; c++) acc[q][c] = ft_fma16(ft_splat16(a), kv[c], acc[q][c]);
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

/* Register blocking across rows or keys (the forms above load one vector of V, dout, q or K per
 * multiply-add): a vector loaded once feeds FA_RB(nd) rows' (or keys') accumulators, so a block
 * holds FA_RB(nd) x nd <= 16 accumulators. Each output element still sums its terms in ascending
 * order; the difference from the one-row forms is only that zero weights (masked or causal
 * entries inside the block) are added as 0 * x instead of skipped. */
#define FA_RB(nd) ((nd) <= 4 ? 4 : 2)

/* rows r < nr of o (D each, contiguous): o_r = o_r * corr[r] + sum_{i<n} x[r][i] v_i  (x rows
 * with stride FA_BLOCK, v_i = v + i ldv) */
static inline __attribute__((always_inline)) void pv_rows(float *o, const float *corr,
                                                          const float *x, const float *v,
                                                          int64_t ldv, int n, const int nr,
                                                          const int nd) {
    ft_v16f acc[4][FA_VMAX], t;
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&acc[r][c], o + r * 16 * nd + 16 * c, sizeof t);
            acc[r][c] *= corr[r];
        }
    for (int i = 0; i < n; i++) {
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&t, v + i * ldv + 16 * c, sizeof t);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++)
                acc[r][c] = ft_fma16(ft_splat16(x[r * FA_BLOCK + i]), t, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) memcpy(o + r * 16 * nd + 16 * c, &acc[r][c], sizeof t);
}

/* the PV update of a (nr rows, ns keys) tile whose first row is t0 and first key s0: row groups
 * stop at the last key their last row may see */
static inline __attribute__((always_inline)) void pv_tile(float *o, const float *corr,
                                                          const float *x, const float *v,
                                                          int64_t ldv, int nr, int ns, int64_t t0,
                                                          int64_t s0, const int nd) {
    const int rb = FA_RB(nd);
    int r = 0;
    for (; r + rb <= nr; r += rb) {
        int64_t n = t0 + r + rb - s0; /* keys s <= t of the group's last row */
        pv_rows(o + r * 16 * nd, corr + r, x + r * FA_BLOCK, v, ldv,
                (int)(n < ns ? (n > 0 ? n : 0) : ns), rb, nd);
    }
    for (; r < nr; r++) {
        int64_t n = t0 + r + 1 - s0;
        pv_rows(o + r * 16 * nd, corr + r, x + r * FA_BLOCK, v, ldv,
                (int)(n < ns ? (n > 0 ? n : 0) : ns), 1, nd);
    }
}

/* keys k < nk: g_k (D, rows of a (ns, D) tile) += sum_{r0 <= r < nr} w[r][k] x_r  (w rows with
 * stride FA_BLOCK, x_r = x + r ld): dv's (w = P, x = dout) and dk's (w = dS, x = q) update */
static inline __attribute__((always_inline)) void wx_keys(float *g, const float *w, const float *x,
                                                          int64_t ld, int r0, int nr, const int nk,
                                                          const int nd) {
    ft_v16f acc[4][FA_VMAX], t;
#pragma GCC unroll 4
    for (int k = 0; k < nk; k++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) memcpy(&acc[k][c], g + k * 16 * nd + 16 * c, sizeof t);
    for (int r = r0; r < nr; r++) {
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&t, x + r * ld + 16 * c, sizeof t);
#pragma GCC unroll 4
            for (int k = 0; k < nk; k++)
                acc[k][c] = ft_fma16(ft_splat16(w[r * FA_BLOCK + k]), t, acc[k][c]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < nk; k++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) memcpy(g + k * 16 * nd + 16 * c, &acc[k][c], sizeof t);
}

/* gv, gk (ns, D) += the (nr rows from t0) x (ns keys from s0) tile's P^T dout and dS^T q (dout
 * rows with stride ldo, q rows with stride ld); key groups start at the first row that may see their first key */
static inline __attribute__((always_inline)) void dkv_tile(float *gv, float *gk, const float *P,
                                                           const float *dS, const float *go,
                                                           int64_t ldo, const float *q, int64_t ld,
                                                           int nr, int ns, int64_t t0, int64_t s0,
                                                           const int nd) {
    const int kb = FA_RB(nd), D = 16 * nd;
    int i = 0;
    for (; i + kb <= ns; i += kb) {
        int64_t r0 = s0 + i - t0; /* rows t < s0 + i see none of these keys */
        int r0i = (int)(r0 > 0 ? (r0 < nr ? r0 : nr) : 0);
        wx_keys(gv + i * D, P + i, go, ldo, r0i, nr, kb, nd);
        wx_keys(gk + i * D, dS + i, q, ld, r0i, nr, kb, nd);
    }
    for (; i < ns; i++) {
        int64_t r0 = s0 + i - t0;
        int r0i = (int)(r0 > 0 ? (r0 < nr ? r0 : nr) : 0);
        wx_keys(gv + i * D, P + i, go, ldo, r0i, nr, 1, nd);
        wx_keys(gk + i * D, dS + i, q, ld, r0i, nr, 1, nd);
    }
}

/* rows r < nr: dq_r (stride ldq) += sum_{i<n} dS[r][i] k_i  (k_i = k + i ldk) */
static inline __attribute__((always_inline)) void dq_rows(float *dq, int64_t ldq, const float *dS,
                                                          const float *k, int64_t ldk, int n,
                                                          const int nr, const int nd) {
    ft_v16f acc[4][FA_VMAX], t;
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) memcpy(&acc[r][c], dq + r * ldq + 16 * c, sizeof t);
    for (int i = 0; i < n; i++) {
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            memcpy(&t, k + i * ldk + 16 * c, sizeof t);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++)
                acc[r][c] = ft_fma16(ft_splat16(dS[r * FA_BLOCK + i]), t, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) memcpy(dq + r * ldq + 16 * c, &acc[r][c], sizeof t);
}

static inline __attribute__((always_inline)) void dq_tile(float *dq, int64_t ldq, const float *dS,
                                                          const float *k, int64_t ldk, int nr,
                                                          int ns, int64_t t0, int64_t s0,
                                                          const int nd) {
    const int rb = FA_RB(nd);
    int r = 0;
    for (; r + rb <= nr; r += rb) {
        int64_t n = t0 + r + rb - s0;
        dq_rows(dq + r * ldq, ldq, dS + r * FA_BLOCK, k, ldk, (int)(n < ns ? (n > 0 ? n : 0) : ns),
                rb, nd);
    }
    for (; r < nr; r++) {
        int64_t n = t0 + r + 1 - s0;
        dq_rows(dq + r * ldq, ldq, dS + r * FA_BLOCK, k, ldk, (int)(n < ns ? (n > 0 ? n : 0) : ns),
                1, nd);
    }
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
    const int64_t nqg = (T + FA_QROWS - 1) / FA_QROWS;
    const int64_t ldq = (int64_t)H * D, ldk = (int64_t)KV * D, es = bf ? 2 : 4;
    const char *qc = q, *kc = k, *vc = v;
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t qg = 0; qg < nqg; qg++) {
                /* rows [tg, tg + ng): FA_QROWS / FA_ROWS tiles of FA_ROWS rows share each
                 * transposed key block; long rows first */
                const int64_t kh = h / G, tg = (nqg - 1 - qg) * FA_QROWS;
                const int ng = (int)(T - tg < FA_QROWS ? T - tg : FA_QROWS);
                float kt[FA_MAXD * FA_BLOCK], S[FA_ROWS * FA_BLOCK], o[FA_QROWS * FA_MAXD];
                float m[FA_QROWS], l[FA_QROWS], corr[FA_ROWS];
                float qf[FA_QROWS * FA_MAXD], vf[FA_BLOCK * FA_MAXD];
                if (bf) /* bf16: the tiles read many times are widened once */
                    widen_rows(qf, qc + ((b * T + tg) * H + h) * D * es, ldq, ng, D);
                for (int r = 0; r < ng; r++) m[r] = -INFINITY, l[r] = 0.0f;
                memset(o, 0, sizeof(float) * (size_t)ng * D);
                for (int64_t s0 = 0; s0 < tg + ng; s0 += FA_BLOCK) {
                    int ns = (int)(tg + ng - s0 < FA_BLOCK ? tg + ng - s0 : FA_BLOCK);
                    const void *ks = kc + ((b * T + s0) * KV + kh) * D * es;
                    const float *vs = (const float *)(vc + ((b * T + s0) * KV + kh) * D * es);
                    int64_t lv = ldk; // vs: (ns, D) stride lv
                    if (bf) {
                        widen_rows(vf, vs, ldk, ns, D);
                        vs = vf, lv = D;
                    }
                    transpose_block(kt, ks, ldk, ns, D, bf);
                    for (int r0 = 0; r0 < ng; r0 += FA_ROWS) {
                        const int64_t t0 = tg + r0;
                        const int nr = ng - r0 < FA_ROWS ? ng - r0 : FA_ROWS;
                        if (t0 + nr <= s0) continue; /* no row of this tile sees the block */
                        const float *qt = bf ? qf + (int64_t)r0 * D
                                             : (const float *)(qc + ((b * T + t0) * H + h) * D * es);
                        const int64_t lq = bf ? D : ldq; // qt: (nr, D) stride lq
                        float *ot = o + (int64_t)r0 * D, *mt = m + r0, *lt = l + r0;
                        tile_scores(S, qt, lq, kt, nr, D);
                        fa_softmax_rows(S, FA_BLOCK, nr, ns, t0, s0, seg, b, T, scale, mt, lt,
                                        corr);
#define FA_PV(nd) pv_tile(ot, corr, S, vs, lv, nr, ns, t0, s0, nd)
                        if (FA_DISPATCH(D, FA_PV)) continue;
#undef FA_PV
                        for (int r = 0; r < nr; r++) {
                            const float *x = S + r * FA_BLOCK;
                            float *orow = ot + r * D;
#pragma omp simd
                            for (int d = 0; d < D; d++) orow[d] *= corr[r];
                            for (int i = 0; i < ns; i++) {
                                float p = x[i];
                                if (p == 0.0f) continue;
                                const float *vr = vs + i * lv;
#pragma omp simd
                                for (int d = 0; d < D; d++) orow[d] += p * vr[d];
                            }
                        }
                    }
                }
                for (int r = 0; r < ng; r++) {
                    float inv = 1.0f / l[r], *dst = out + ((b * T + tg + r) * H + h) * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) dst[d] = o[r * D + d] * inv;
                    if (lse) lse[(b * H + h) * T + tg + r] = m[r] + logf(l[r]);
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
            float dl[FA_DELTA]; /* delta_t of the task's G heads */
            const int pre =
                fa_backward_prologue(dl, FA_DELTA, dq, dout, out, NULL, b, kh, G, T, H, D);
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
                            const float delta =
                                pre ? dl[(h - kh * G) * T + t]
                                    : fa_delta(dout, out, NULL, ((b * T + t) * H + h) * D, D);
                            float *pr = P + r * FA_BLOCK, *dr = dS + r * FA_BLOCK;
                            fa_grad_row(pr, dr, ns, ns, t, s0, seg, b, T, L, delta, scale);
                        }
                        /* dv_s += sum_r P_rs dout_r ; dk_s += sum_r dS_rs q_r */
#define FA_DKV(nd) dkv_tile(gv, gk, P, dS, go, ldq, qt, lq, nr, ns, t0, s0, nd)
                        if (!FA_DISPATCH(D, FA_DKV))
#undef FA_DKV
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
                        if (dq) {
                            float *gq0 = dq + ((b * T + t0) * H + h) * D; // (nr, D) stride ldq
#define FA_DQ(nd) dq_tile(gq0, ldq, dS, ks, lk, nr, ns, t0, s0, nd)
                            if (FA_DISPATCH(D, FA_DQ)) continue;
#undef FA_DQ
                            for (int r = 0; r < nr; r++) {
                                float *gq = gq0 + r * ldq;
                                for (int i = 0; i < ns; i++) {
                                    float c = dS[r * FA_BLOCK + i];
                                    if (P[r * FA_BLOCK + i] == 0.0f) continue;
                                    const float *kr = ks + i * lk;
#pragma omp simd
                                    for (int d = 0; d < D; d++) gq[d] += c * kr[d];
                                }
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
