/*
 * Flash attention on AVX512-BF16 dot products (VDPBF16PS): the bf16 training step's forms.
 * Same function, algorithm and task split as attention_flash.c (read its header first): online
 * softmax forward saving only lse, FlashAttention-2 backward per (b, kv-head) task, GQA without
 * repeating K/V, seg masks. What differs is the five inner products, each a product of bf16
 * operands summed in f32, two terms per lane per instruction (twice the f32 FMA's work):
 *   S  = q k^T               q, k as given (bf16)
 *   o += P v                 P rounded to bf16 (the unnormalised probabilities, <= 1)
 *   dP = dout v^T            dout rounded to bf16
 *   dv += P^T dout, dk += dS^T q     P, dS, dout rounded to bf16
 *   dq += dS k               dS rounded to bf16
 * These are the rounding points of FlashAttention-2 on GPUs and of PyTorch's bf16 autocast (its
 * matmuls take bf16 operands, the probabilities and incoming gradients included). Everything
 * else stays f32 as in attention_flash.c: the softmax (max, exp, running sum over the f32
 * probabilities), lse, delta_t = dout_t · out_t (f32 dout and out; the training step passes the
 * output it keeps as bf16, widened), dS = P (dP - delta) before its
 * rounding, every accumulator and every output. So each result differs from the exact f32 kernel
 * on the same bf16 q, k, v by the rounding of P, dS and dout: relative 2^-9 per product term,
 * bounded in tests/kernels/test_attention_flash.c by the sum of the absolute terms.
 *
 * VDPBF16PS, lane i: acc += a[2i+1] b[2i+1] + a[2i] b[2i] — both products exact in f32, the odd
 * term added first, denormal inputs and results flushed to zero. One operand is a 32-bit
 * "pair word" (two bf16, the lower-indexed one in the low half) broadcast to all lanes; the other
 * holds 16 lanes of pair words, so each product needs its lane dimension in one layout:
 *   S, dP  lanes over 16 keys, pairs over d: K (V) block as pair words transposed, kt2[d/2][s]
 *          (a 32-bit transpose of the bf16 rows); q (dout) pair words broadcast from their rows.
 *   o, dq  lanes over 16 d, pairs over keys: V (K) rows interleaved two by two, vi[s/2][d];
 *          P (dS) rows as bf16, their pair words broadcast.
 *   dv, dk lanes over 16 d, pairs over query rows: dout (q) rows interleaved two by two,
 *          oi[t/2][d]; the pair (P_ts, P_t+1,s) (dS) broadcast from P2[t/2][s].
 * Odd counts are padded with zero rows (a zero bf16 times a finite value adds nothing); entries
 * past the causal edge are already exact zeros in P and dS, as in attention_flash.c.
 *
 * Head dims D = 16 nd, nd <= 8 (attention_flash_dp_ok); targets without AVX512-BF16 have no dp
 * forms (attention_flash_dp_ok is 0 and the step uses attention_flash_*_bf16).
 */
#include "ftune/kernels.h"

#include "ftune/core.h"

#include "attention_flash.h"
#include "vec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512BF16__)

#define DP_BLOCK 64   /* keys per block */
#define DP_ROWS 16    /* query rows per tile */
#define DP_QROWS 64   /* query rows per forward task */
#define DP_HEADS 4    /* query heads per forward task (sharing one KV head's blocks) */
#define DP_MAXD 128   /* largest head dim (8 lanes of 16) */
#define DP_DELTA 8192 /* backward: rows x heads-per-KV-head whose delta is computed up front */
#define DP_NV (DP_BLOCK / 16)
#define DP_RB(nd) ((nd) <= 4 ? 4 : 2) /* rows (keys) per register block: RB x nd <= 16 accs */
#define AI static inline __attribute__((always_inline))
_Static_assert(DP_ROWS <= FA_MAX_ROWS, "a tile's rows go through fa_softmax_rows at once");

int attention_flash_dp_ok(int D) {
    return D % 16 == 0 && D >= 16 && D <= DP_MAXD;
}

#define BCAST(w) ((__m512bh)_mm512_set1_epi32((int)(w)))
#define LDPW(p) ((__m512bh)_mm512_loadu_si512(p))

static const uint16_t zero_row[DP_MAXD];

/* dst[i] (16 pair words) = (a[i], b[i]): two bf16 rows interleaved */
AI void pair_bf(uint32_t *dst, const uint16_t *a, const uint16_t *b) {
    _mm512_storeu_si512(dst, ft_pair16(a, b, 0, 0xffff, 0));
}

/* dst[j DP_BLOCK + s] = pair word j (elements 2j, 2j+1) of row s of x (n rows of D bf16, stride
 * ld), rows s in [n, DP_BLOCK) zero: the kt2 layout */
static void pairs_transposed(uint32_t *dst, const uint16_t *x, int64_t ld, int n, int D) {
    const int D2 = D / 2, j16 = D2 / 16 * 16;
    int s0 = 0;
    for (; s0 + 16 <= n; s0 += 16)
        for (int j = 0; j < j16; j += 16)
            ft_transpose16((float *)(dst + j * DP_BLOCK + s0), DP_BLOCK,
                           (const float *)(x + s0 * ld + 2 * j), ld / 2);
    for (int s = 0; s < s0; s++)
        for (int j = j16; j < D2; j++)
            dst[j * DP_BLOCK + s] = ft_ld32(x + s * ld + 2 * j);
    for (int s = s0; s < n; s++)
        for (int j = 0; j < D2; j++)
            dst[j * DP_BLOCK + s] = ft_ld32(x + s * ld + 2 * j);
    for (int j = 0; j < D2; j++)
        for (int s = n; s < DP_BLOCK; s++)
            dst[j * DP_BLOCK + s] = 0;
}

/* dst[p D + d] = (x_2p[d], x_2p+1[d]) for p < (n + 1) / 2, x_s = x + s ld (bf16 rows), a zero row
 * past n: the vi / ki / qi layout */
static void pairs_rows_bf(uint32_t *dst, const uint16_t *x, int64_t ld, int n, int D) {
    for (int p = 0; 2 * p < n; p++) {
        const uint16_t *a = x + 2 * p * ld, *b = 2 * p + 1 < n ? a + ld : zero_row;
        for (int d = 0; d < D; d += 16)
            pair_bf(dst + p * D + d, a + d, b + d);
    }
}

/* S (nrow, 16 nc of DP_BLOCK columns) = A (nrow bf16 rows of D, stride lda) · the first 16 nc
 * keys of the block kt2: nrow <= 4 rows share each loaded kt2 row (up to 16 accumulators) */
AI void scores_rows(float *S, const uint16_t *A, int64_t lda, const uint32_t *kt2, int D2,
                    const int nrow, const int nc) {
    __m512 acc[4][DP_NV];
#pragma GCC unroll 4
    for (int q = 0; q < nrow; q++)
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            acc[q][c] = _mm512_setzero_ps();
    for (int j = 0; j < D2; j++) {
        __m512bh kv[DP_NV];
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            kv[c] = LDPW(kt2 + j * DP_BLOCK + 16 * c);
#pragma GCC unroll 4
        for (int q = 0; q < nrow; q++) {
            const __m512bh a = BCAST(ft_ld32(A + q * lda + 2 * j));
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++)
                acc[q][c] = _mm512_dpbf16_ps(acc[q][c], a, kv[c]);
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < nrow; q++)
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++)
            _mm512_storeu_ps(S + q * DP_BLOCK + 16 * c, acc[q][c]);
}

AI void tile_scores_nc(float *S, const uint16_t *A, int64_t lda, const uint32_t *kt2, int nr, int D,
                       const int nc) {
    int r = 0;
    for (; r + 4 <= nr; r += 4)
        scores_rows(S + r * DP_BLOCK, A + r * lda, lda, kt2, D / 2, 4, nc);
    for (; r < nr; r++)
        scores_rows(S + r * DP_BLOCK, A + r * lda, lda, kt2, D / 2, 1, nc);
}

/* S (nr, DP_BLOCK) = scores of the tile's rows (first t0) against keys [s0, s0 + nk) of the
 * block, nk = what the tile's last row may see rounded up to 16; columns past nk are set to 0 */
static void tile_scores(float *S, const uint16_t *A, int64_t lda, const uint32_t *kt2, int nr,
                        int D, int ns, int64_t t0, int64_t s0) {
    int64_t see = t0 + nr - s0;
    const int nc = (int)(((see < ns ? see : ns) + 15) / 16);
    switch (nc) {
    case 1: tile_scores_nc(S, A, lda, kt2, nr, D, 1); break;
    case 2: tile_scores_nc(S, A, lda, kt2, nr, D, 2); break;
    case 3: tile_scores_nc(S, A, lda, kt2, nr, D, 3); break;
    default: tile_scores_nc(S, A, lda, kt2, nr, D, 4); break;
    }
    if (nc < DP_NV)
        for (int r = 0; r < nr; r++)
            memset(S + r * DP_BLOCK + 16 * nc, 0, sizeof(float) * (size_t)(DP_BLOCK - 16 * nc));
}

/* keys [s0, s0 + 16 c + 16) of the block that row t sees: causal (and below ns), and with seg in
 * its own sample */
AI __mmask16 dp_seen16(int c, int ns, int64_t t, int64_t s0, const int *seg, int64_t b, int64_t T) {
    const int64_t lim = t - s0 + 1 < ns ? t - s0 + 1 : ns;
    __mmask16 v = ft_lanes16(lim - 16 * c);
    if (seg)
        for (int i = 0; i < 16; i++)
            if ((v >> i & 1) && !fa_seen(seg, b, T, s0 + 16 * c + i, t))
                v &= (__mmask16) ~(1u << i);
    return v;
}

/* The forward's softmax step on a tile's scores S (nr rows of DP_BLOCK, keys [s0, s0 + ns)) with
 * the rounding of P fused in: Pb (nr rows of DP_BLOCK bf16) = bf16 of the unnormalised
 * probabilities (0 past ns), m, l, corr updated as fa_softmax_rows does. Each row's four vectors
 * stay in registers from the scores to Pb (fa_softmax_rows stores the row after masking and
 * after exp and reads it back for max, sum and rounding: five passes). The same bits: the same
 * mask, max and exp (ft_exp16 = ft_exp_simd), and the sum in fa_row_reduce's order, lane i % 16
 * then fa_fold16 (lanes past ns add +0). */
static void dp_softmax_round(const float *S, uint16_t *Pb, int nr, int ns, int64_t t0, int64_t s0,
                             const int *seg, int64_t b, int64_t T, float scale, float *m, float *l,
                             float *corr) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(scale);
    for (int r = 0; r < nr; r++) {
        const float *x = S + r * DP_BLOCK;
        uint16_t *pb = Pb + r * DP_BLOCK;
        const int64_t t = t0 + r;
        __m512 v[DP_NV], mx = ninf;
        for (int c = 0; c < DP_NV; c++) {
            const __mmask16 vis = dp_seen16(c, ns, t, s0, seg, b, T);
            v[c] = _mm512_mask_mul_ps(ninf, vis, _mm512_loadu_ps(x + 16 * c), sc);
            mx = _mm512_max_ps(v[c], mx);
        }
        const ft_v16f mxv = (ft_v16f)mx;
        const float bm = fa_fold16(&mxv, 1);
        if (bm == -INFINITY) { /* the row sees nothing in this block */
            memset(pb, 0, sizeof(uint16_t) * DP_BLOCK);
            corr[r] = 1.0f;
            continue;
        }
        const float mn = bm > m[r] ? bm : m[r];
        corr[r] = expf(m[r] - mn);
        const __m512 mv = _mm512_set1_ps(mn);
        __m512 sum = _mm512_setzero_ps();
        for (int c = 0; c < DP_NV; c++) {
            const __mmask16 fin = _mm512_cmp_ps_mask(v[c], ninf, _CMP_NEQ_OQ);
            const __m512 e = _mm512_maskz_mov_ps(fin, ft_exp16(_mm512_sub_ps(v[c], mv)));
            sum = _mm512_add_ps(sum, e);
            _mm256_storeu_si256((void *)(pb + 16 * c), (__m256i)_mm512_cvtneps_pbh(e));
        }
        const ft_v16f sumv = (ft_v16f)sum;
        l[r] = l[r] * corr[r] + fa_fold16(&sumv, 0);
        m[r] = mn;
    }
}

/* The backward's elementwise step on a tile (nr rows from t0, keys [s0, s0 + ns)), two rows at a
 * time in registers: from the raw scores S and dP (rows of DP_BLOCK), P = e^(c S - L_t) and
 * dS = c P (dP - delta_t) (0 where t does not see the key), written only as the products read
 * them: the pair words P2 and dS2 (rows 2p, 2p + 1; a zero row past nr) and, for dq, dS's bf16
 * rows dSb. fa_grad_row per row, then rounding the rows and pairing them, stored P and dS and read
 * them back three times; the same bits (ft_exp16 = ft_exp_simd, the same products in the same
 * order). */
static void dp_grad_pairs(const float *S, const float *dP, uint32_t *P2, uint32_t *dS2,
                          uint16_t *dSb, int nr, int ns, int64_t t0, int64_t s0, const int *seg,
                          int64_t b, int64_t T, const float *L, const float *delta, float scale) {
    const __m512 sc = _mm512_set1_ps(scale);
    for (int p = 0; 2 * p < nr; p++) {
        for (int c = 0; c < DP_NV; c++) {
            __m512 pv[2], dv[2];
            for (int j = 0; j < 2; j++) {
                const int r = 2 * p + j;
                pv[j] = dv[j] = _mm512_setzero_ps();
                if (r >= nr) continue;
                const __mmask16 vis = dp_seen16(c, ns, t0 + r, s0, seg, b, T);
                if (!vis) continue;
                const __m512 s = _mm512_loadu_ps(S + r * DP_BLOCK + 16 * c);
                const __m512 e =
                    ft_exp16(_mm512_sub_ps(_mm512_mul_ps(s, sc), _mm512_set1_ps(L[r])));
                const __m512 d = _mm512_loadu_ps(dP + r * DP_BLOCK + 16 * c);
                pv[j] = _mm512_maskz_mov_ps(vis, e);
                dv[j] = _mm512_maskz_mul_ps(
                    vis, _mm512_mul_ps(pv[j], _mm512_sub_ps(d, _mm512_set1_ps(delta[r]))), sc);
            }
            __m512i ab;
            _mm512_storeu_si512(P2 + p * DP_BLOCK + 16 * c, ft_pair16v(pv[0], pv[1], NULL));
            _mm512_storeu_si512(dS2 + p * DP_BLOCK + 16 * c, ft_pair16v(dv[0], dv[1], &ab));
            if (dSb) {
                _mm256_storeu_si256((void *)(dSb + 2 * p * DP_BLOCK + 16 * c),
                                    _mm512_castsi512_si256(ab));
                if (2 * p + 1 < nr)
                    _mm256_storeu_si256((void *)(dSb + (2 * p + 1) * DP_BLOCK + 16 * c),
                                        _mm512_extracti64x4_epi64(ab, 1));
            }
        }
    }
}

/* rows r < nr of y (D = 16 nd f32 each, row stride ldy): y_r = y_r * corr[r] (corr NULL: 1) +
 * sum_{p0 <= p < np} (w(r,p) pair) · (x pair row p), w(r,p) = w[r wr + p wp] a pair word, x the
 * interleaved pair rows (D words each). The forward's o += P v and dq += dS k (rows of y are
 * query rows, w = the bf16 P or dS rows: wr = DP_BLOCK / 2, wp = 1) and dv += P^T dout,
 * dk += dS^T q (rows of y are keys, w = P2 or dS2: wr = 1, wp = DP_BLOCK) */
AI void wrows(float *y, int64_t ldy, const float *corr, const uint32_t *w, int wr, int wp,
              const uint32_t *x, int p0, int np, const int nr, const int nd) {
    __m512 acc[4][8];
    const int D = 16 * nd;
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            acc[r][c] = _mm512_loadu_ps(y + r * ldy + 16 * c);
            if (corr) acc[r][c] = _mm512_mul_ps(acc[r][c], _mm512_set1_ps(corr[r]));
        }
    for (int p = p0; p < np; p++) {
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++) {
            const __m512bh t = LDPW(x + p * D + 16 * c);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++)
                acc[r][c] = _mm512_dpbf16_ps(acc[r][c], BCAST(w[r * wr + p * wp]), t);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int c = 0; c < nd; c++)
            _mm512_storeu_ps(y + r * ldy + 16 * c, acc[r][c]);
}

/* the rows of an (nr rows from t0) x (ns keys from s0) tile: row groups stop at the last key pair
 * their last row may see */
AI void wrows_tile(float *y, int64_t ldy, const float *corr, const uint32_t *w, int wstride,
                   const uint32_t *x, int nr, int ns, int64_t t0, int64_t s0, const int nd) {
    const int rb = DP_RB(nd);
    int r = 0;
    for (; r + rb <= nr; r += rb) {
        int64_t n = t0 + r + rb - s0;
        n = n < ns ? (n > 0 ? n : 0) : ns;
        wrows(y + r * ldy, ldy, corr ? corr + r : NULL, w + r * wstride, wstride, 1, x, 0,
              (int)(n + 1) / 2, rb, nd);
    }
    for (; r < nr; r++) {
        int64_t n = t0 + r + 1 - s0;
        n = n < ns ? (n > 0 ? n : 0) : ns;
        wrows(y + r * ldy, ldy, corr ? corr + r : NULL, w + r * wstride, wstride, 1, x, 0,
              (int)(n + 1) / 2, 1, nd);
    }
}

/* gv, gk (ns, D) += the tile's P^T dout and dS^T q; key groups start at the row pair holding
 * the first row that may see their first key */
AI void dkv_tile(float *gv, float *gk, const uint32_t *P2, const uint32_t *dS2, const uint32_t *oi,
                 const uint32_t *qi, int nr, int ns, int64_t t0, int64_t s0, const int nd) {
    const int kb = DP_RB(nd), D = 16 * nd, np = (nr + 1) / 2;
    int i = 0;
    for (; i < ns; i += kb) {
        int64_t r0 = s0 + i - t0;
        const int p0 = (int)(r0 > 0 ? (r0 < nr ? r0 : nr) : 0) / 2;
        if (i + kb <= ns) {
            wrows(gv + i * D, D, NULL, P2 + i, 1, DP_BLOCK, oi, p0, np, kb, nd);
            wrows(gk + i * D, D, NULL, dS2 + i, 1, DP_BLOCK, qi, p0, np, kb, nd);
        } else
            for (int k = i; k < ns; k++) {
                wrows(gv + k * D, D, NULL, P2 + k, 1, DP_BLOCK, oi, p0, np, 1, nd);
                wrows(gk + k * D, D, NULL, dS2 + k, 1, DP_BLOCK, qi, p0, np, 1, nd);
            }
    }
}

#define DP_DISPATCH(D, call)                                                                       \
    switch ((D) / 16) {                                                                            \
    case 1: call(1); break;                                                                        \
    case 2: call(2); break;                                                                        \
    case 3: call(3); break;                                                                        \
    case 4: call(4); break;                                                                        \
    case 5: call(5); break;                                                                        \
    case 6: call(6); break;                                                                        \
    case 7: call(7); break;                                                                        \
    default: call(8); break;                                                                       \
    }

void attention_flash_forward_dp(float *out, uint16_t *outb, float *lse, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, const int *seg, int B, int T,
                                int H, int KV, int D) {
    FT_ASSERT(H % KV == 0 && attention_flash_dp_ok(D));
    const int G = H / KV, ngh = (G + DP_HEADS - 1) / DP_HEADS; /* head chunks per KV head */
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t nqg = (T + DP_QROWS - 1) / DP_QROWS;
    const int64_t ldq = (int64_t)H * D, ldk = (int64_t)KV * D;
    /* a task: rows [tg, tg + ng) of up to DP_HEADS query heads reading one KV head, so each K/V
     * block is laid out once for all of them; long rows first */
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t qg = 0; qg < nqg; qg++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t hg = 0; hg < (int64_t)KV * ngh; hg++) {
                const int64_t kh = hg / ngh, h0 = kh * G + hg % ngh * DP_HEADS;
                const int nh = (int)(kh * G + G - h0 < DP_HEADS ? kh * G + G - h0 : DP_HEADS);
                const int64_t tg = (nqg - 1 - qg) * DP_QROWS;
                const int ng = (int)(T - tg < DP_QROWS ? T - tg : DP_QROWS);
                uint32_t kt2[DP_MAXD / 2 * DP_BLOCK], vi[DP_BLOCK / 2 * DP_MAXD];
                uint16_t Pb[DP_ROWS * DP_BLOCK];
                float S[DP_ROWS * DP_BLOCK], o[DP_HEADS][DP_QROWS * DP_MAXD];
                float m[DP_HEADS][DP_QROWS], l[DP_HEADS][DP_QROWS], corr[DP_ROWS];
                for (int j = 0; j < nh; j++) {
                    for (int r = 0; r < ng; r++)
                        m[j][r] = -INFINITY, l[j][r] = 0.0f;
                    memset(o[j], 0, sizeof(float) * (size_t)ng * D);
                }
                for (int64_t s0 = 0; s0 < tg + ng; s0 += DP_BLOCK) {
                    const int ns = (int)(tg + ng - s0 < DP_BLOCK ? tg + ng - s0 : DP_BLOCK);
                    pairs_transposed(kt2, k + ((b * T + s0) * KV + kh) * D, ldk, ns, D);
                    pairs_rows_bf(vi, v + ((b * T + s0) * KV + kh) * D, ldk, ns, D);
                    for (int j = 0; j < nh; j++)
                        for (int r0 = 0; r0 < ng; r0 += DP_ROWS) {
                            const int64_t t0 = tg + r0, h = h0 + j;
                            const int nr = ng - r0 < DP_ROWS ? ng - r0 : DP_ROWS;
                            if (t0 + nr <= s0) continue; /* no row of this tile sees the block */
                            float *mt = m[j] + r0, *lt = l[j] + r0, *ot = o[j] + (int64_t)r0 * D;
                            tile_scores(S, q + ((b * T + t0) * H + h) * D, ldq, kt2, nr, D, ns, t0,
                                        s0);
                            dp_softmax_round(S, Pb, nr, ns, t0, s0, seg, b, T, scale, mt, lt, corr);
#define DP_PV(nd)                                                                                  \
    wrows_tile(ot, D, corr, (const uint32_t *)Pb, DP_BLOCK / 2, vi, nr, ns, t0, s0, nd)
                            DP_DISPATCH(D, DP_PV)
#undef DP_PV
                        }
                }
                for (int j = 0; j < nh; j++)
                    for (int r = 0; r < ng; r++) {
                        const int64_t h = h0 + j;
                        const int64_t od = ((b * T + tg + r) * H + h) * D;
                        const float inv = 1.0f / l[j][r];
                        if (out) {
#pragma omp simd
                            for (int d = 0; d < D; d++)
                                out[od + d] = o[j][r * D + d] * inv;
                        }
                        if (outb) { /* the same values rounded: bf16_from_f32 of out's bits */
#pragma omp simd
                            for (int d = 0; d < D; d++)
                                outb[od + d] = ft_bf16_round(o[j][r * D + d] * inv);
                        }
                        if (lse) lse[(b * H + h) * T + tg + r] = m[j][r] + logf(l[j][r]);
                    }
            }
}

void attention_flash_backward_dp(float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const uint16_t *outb, const uint16_t *q,
                                 const uint16_t *k, const uint16_t *v, const float *lse,
                                 const int *seg, int B, int T, int H, int KV, int D) {
    FT_ASSERT(H % KV == 0 && attention_flash_dp_ok(D) && (out || outb));
    const int G = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t ldq = (int64_t)H * D, ldk = (int64_t)KV * D;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < KV; kh++) {
            float dl[DP_DELTA]; /* delta_t of the task's G heads */
            const int pre =
                fa_backward_prologue(dl, DP_DELTA, dq, dout, out, outb, b, kh, G, T, H, D);
            for (int64_t s0 = 0; s0 < T; s0 += DP_BLOCK) {
                const int ns = (int)(T - s0 < DP_BLOCK ? T - s0 : DP_BLOCK);
                const uint16_t *ks = k + ((b * T + s0) * KV + kh) * D; // (ns, D) stride ldk
                const uint16_t *vs = v + ((b * T + s0) * KV + kh) * D;
                uint32_t kt2[DP_MAXD / 2 * DP_BLOCK], vt2[DP_MAXD / 2 * DP_BLOCK];
                uint32_t ki[DP_BLOCK / 2 * DP_MAXD];
                uint32_t qi[DP_ROWS / 2 * DP_MAXD], oi[DP_ROWS / 2 * DP_MAXD];
                uint32_t P2[DP_ROWS / 2 * DP_BLOCK], dS2[DP_ROWS / 2 * DP_BLOCK];
                uint16_t ob[DP_ROWS * DP_MAXD], dSb[DP_ROWS * DP_BLOCK];
                float gk[DP_BLOCK * DP_MAXD], gv[DP_BLOCK * DP_MAXD];
                float P[DP_ROWS * DP_BLOCK], dS[DP_ROWS * DP_BLOCK];
                pairs_transposed(kt2, ks, ldk, ns, D);
                pairs_transposed(vt2, vs, ldk, ns, D);
                if (dq) pairs_rows_bf(ki, ks, ldk, ns, D);
                memset(gk, 0, sizeof(float) * (size_t)ns * D);
                memset(gv, 0, sizeof(float) * (size_t)ns * D);
                for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                    for (int64_t t0 = s0 / DP_ROWS * DP_ROWS; t0 < T; t0 += DP_ROWS) {
                        const int nr = (int)(T - t0 < DP_ROWS ? T - t0 : DP_ROWS);
                        const uint16_t *qt = q + ((b * T + t0) * H + h) * D; // (nr, D) stride ldq
                        const float *go = dout + ((b * T + t0) * H + h) * D; // (nr, D) stride ldq
                        for (int r = 0; r < nr; r++)
                            for (int d = 0; d < D; d += 16)
                                _mm256_storeu_si256(
                                    (void *)(ob + r * D + d),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(go + r * ldq + d)));
                        pairs_rows_bf(qi, qt, ldq, nr, D);
                        pairs_rows_bf(oi, ob, D, nr, D);
                        tile_scores(P, qt, ldq, kt2, nr, D, ns, t0, s0);
                        tile_scores(dS, ob, D, vt2, nr, D, ns, t0, s0); /* dP */
                        float L[DP_ROWS], delta[DP_ROWS];
                        for (int r = 0; r < nr; r++) {
                            const int64_t t = t0 + r;
                            L[r] = lse[(b * H + h) * T + t];
                            delta[r] =
                                pre ? dl[(h - kh * G) * T + t]
                                    : fa_delta(dout, out, outb, ((b * T + t) * H + h) * D, D);
                        }
                        dp_grad_pairs(P, dS, P2, dS2, dq ? dSb : NULL, nr, ns, t0, s0, seg, b, T, L,
                                      delta, scale);
                        /* dv_s += sum_t P_ts dout_t ; dk_s += sum_t dS_ts q_t ;
                         * dq_t += sum_s dS_ts k_s */
#define DP_DKV(nd) dkv_tile(gv, gk, P2, dS2, oi, qi, nr, ns, t0, s0, nd)
                        DP_DISPATCH(D, DP_DKV)
#undef DP_DKV
                        if (dq) {
#define DP_DQ(nd)                                                                                  \
    wrows_tile(dq + ((b * T + t0) * H + h) * D, ldq, NULL, (const uint32_t *)dSb, DP_BLOCK / 2,    \
               ki, nr, ns, t0, s0, nd)
                            DP_DISPATCH(D, DP_DQ)
#undef DP_DQ
                        }
                    }
                for (int i = 0; i < ns; i++) {
                    if (dk)
                        memcpy(dk + ((b * T + s0 + i) * KV + kh) * D, gk + i * D, (size_t)D * 4);
                    if (dv)
                        memcpy(dv + ((b * T + s0 + i) * KV + kh) * D, gv + i * D, (size_t)D * 4);
                }
            }
        }
}

#else /* no AVX512-BF16: no dp forms */

int attention_flash_dp_ok(int D) {
    (void)D;
    return 0;
}

void attention_flash_forward_dp(float *out, uint16_t *outb, float *lse, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, const int *seg, int B, int T,
                                int H, int KV, int D) {
    FT_ASSERT(out != NULL); /* callers check attention_flash_dp_ok first; this form takes f32 */
    attention_flash_forward_bf16(out, lse, q, k, v, seg, B, T, H, KV, D);
    if (outb) bf16_from_f32(outb, out, (size_t)B * T * H * D);
}

void attention_flash_backward_dp(float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const uint16_t *outb, const uint16_t *q,
                                 const uint16_t *k, const uint16_t *v, const float *lse,
                                 const int *seg, int B, int T, int H, int KV, int D) {
    FT_ASSERT(out != NULL); /* callers check attention_flash_dp_ok first; this form takes f32 */
    (void)outb;
    attention_flash_backward_bf16(dq, dk, dv, dout, out, q, k, v, lse, seg, B, T, H, KV, D);
}

#endif
