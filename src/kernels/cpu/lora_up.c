/*
 * LoRA's up-projection B (N,r) in the bf16 step, as hand-written passes: the forward in f32
 * arithmetic, the backward on AVX512-BF16 dot products where the CPU has them (dout, B and s u
 * rounded to bf16 as under PyTorch's autocast, sums in f32; the f32 form otherwise).
 *
 * With u (M,r) = x·A^T already computed (one bf16 product per input group, src/train/step.c) the
 * B side is three thin products, each a full pass over an (M,N) f32 array for r (8, 16) FMAs per
 * element: out += (s u)·B^T in the forward, dB += dout^T·(s u) and du = s dout·B in the backward.
 * oneDNN runs them as separate f32 matmuls with K or N = r, memory-bound and at a few percent of
 * the FMA peak (15% of a SmolLM-shape LoRA step, measured). Here:
 *
 *   lora_up_forward   y = out + (s u)·B^T (+ res), one pass over out. Each element adds the f32
 *                     sum_i (s u_i) B_i (summed in ascending i) to out, as PEFT's result +
 *                     lora_B(lora_A(x)) * scaling adds one LoRA term; then the residual res when
 *                     given (the o_proj and down_proj outputs' h = x + ...: the step's
 *                     add_inplace folded in, same order, same bits). y goes back to out, or only
 *                     to outb as bf16 (gate, up: the step keeps them as bf16 only, so their f32
 *                     values are never written back and read again).
 *   lora_up_backward  ONE read of dout for all three of: doutb (M,N) = bf16(dout) (the base
 *                     weight's input-gradient product needs it; bit-identical to bf16_from_f32),
 *                     dB (N,r) += dout^T·(s u), du (M,r) = s (dout·B) WRITTEN.
 *   lora_up_backward_bf16in  dB and du alike from a dout that the step made as bf16 already
 *                     (gate, up: swiglu_backward_bf16out; q, k, v: rope_round_qkv_bf16), widened
 *                     exactly: the same arithmetic as lora_up_backward on the widened values,
 *                     bit for bit.
 *
 * The _n forms take a group of modules (the LoRA targets that read one input: q/k/v, gate/up)
 * and run all their row blocks in one parallel region: with passive OpenMP waiting each region
 * costs ~40-50 us of wake-up (bench_regions), and a stories15M LoRA step ran 84 of these regions
 * for 15 ms of work. Each module's arithmetic and order are those of its own call, so the bits
 * are too (tests/kernels/test_lora_up.c checks it). The douts may be column windows of wider
 * rows (ldd: q|k|v side by side for the fused q/k/v product). lora_up_forward_swiglu is the
 * gate/up pair's form that also makes hact = SwiGLU(gate, up) as bf16 in the same pass, each row
 * block's hact while its gate and up rows are still in cache (the bits of swiglu_forward_bf16in
 * on them afterwards: one read of both (M,F) bf16 arrays and one parallel region less);
 * lora_up_forward_rope likewise for the q/k/v group and the forward's RoPE and rounding.
 *
 * B^T is transposed into the workspace once per call (the dp backward: as bf16 pair words): r
 * rows of N, padded with zero rows to a multiple of 8 so the register blocks stay whole (the
 * forward also keeps s u there, zero padded alike). dB's sum over rows runs in fixed blocks of
 * LORA_ROWS rows, each into its own partial, and the partials are added in block order: the result
 * does not depend on the thread count. u and du may be column windows of wider arrays (row strides
 * ldu, lddu), as the step keeps one u (M,R) per input group. The naive twins (double accumulation)
 * are what tests/kernels/test_lora_up.c compares against.
 */
#include "ftune/kernels.h"

#include "ftune/core.h"

#include "grain.h"
#include "vec.h"

#include <string.h>

#define LORA_ROWS 128 /* rows per dB partial */
#define RB 8          /* register block over r */

typedef uint32_t ft_v16u __attribute__((vector_size(64)));
typedef uint16_t ft_v16h __attribute__((vector_size(32)));

static inline int pad8(int r) {
    return (r + RB - 1) / RB * RB;
}

/* Row stride of the workspace's (rp, N) arrays: N rounded up to 16, plus 16 floats. Rows of
 * exactly N = 1536 floats (6 KiB) would put every other row at the same address modulo 4 KiB,
 * and the loads of one row then wait on the stores to another (4K aliasing). */
static inline int64_t ws_ld(int N) {
    return ((int64_t)N + 15) / 16 * 16 + 16;
}

size_t lora_up_ws_floats(int M, int N, int r) {
    size_t rp = (size_t)pad8(r), nblk = ((size_t)M + LORA_ROWS - 1) / LORA_ROWS;
    return rp * (size_t)ws_ld(N) * (1 + nblk) + rp * (size_t)M;
}

/* bt (rp,N) = B^T, rows r..rp-1 zero */
static void transpose_b(float *bt, int64_t ld, const float *B, int N, int r, int rp) {
    for (int i = 0; i < rp; i++)
        for (int n = 0; n < N; n++)
            bt[i * ld + n] = i < r ? B[(size_t)n * r + i] : 0.0f;
}

/* Vectors pass by pointer or through a macro: a function taking or returning a 64-byte vector
 * changes the ABI on targets without AVX-512 (see vec.h). */
#define LOAD16(v, p) memcpy(&(v), (p), sizeof(v))

/* 16 f32 -> bf16, round to nearest even, NaN kept quiet: ft_bf16_round per lane */
static inline void store_bf16x16(uint16_t *dst, const ft_v16f *x) {
    ft_v16u u = (ft_v16u)*x;
    ft_v16u r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    ft_v16u nan = (u >> 16) | 0x40u;
    ft_v16u isnan = (ft_v16u)((u & 0x7fffffffu) > 0x7f800000u);
    ft_v16h h = __builtin_convertvector((nan & isnan) | (r & ~isnan), ft_v16h);
    memcpy(dst, &h, sizeof h);
}

/* 16 columns of lora_up_forward's result at out + o: y = out + acc (+ res), to out or to outb */
static inline void up_forward_store(float *out, uint16_t *outb, const float *res, int64_t o,
                                    const ft_v16f *acc) {
    ft_v16f y, x;
    LOAD16(y, out + o);
    y += *acc;
    if (res) {
        LOAD16(x, res + o);
        y += x;
    }
    if (outb)
        store_bf16x16(outb + o, &y);
    else
        memcpy(out + o, &y, sizeof y);
}

/* Row block b (rows 4b .. 4b + 3) of module md's forward: bt (rp, ld) = B^T, su (M, rp) = s u,
 * both zero padded */
static inline void up_forward_rows(const ft_lora_up *md, const float *bt, const float *su,
                                   int64_t ld, int rp, int M, int64_t b) {
    float *out = md->out;
    uint16_t *outb = md->outb;
    const float *res = md->res;
    const int64_t ldo = md->ldo, N = md->N, N16 = N / 16 * 16;
    const int64_t m0 = 4 * b;
    const int nr = M - m0 < 4 ? (int)(M - m0) : 4;
    /* rows beyond nr alias row m0 for the loads; their sums are never stored */
    const float *s4[4];
    for (int j = 0; j < 4; j++)
        s4[j] = su + (m0 + (j < nr ? j : 0)) * rp;
    /* 4 rows x 64 columns: 16 accumulators, each B^T load feeding 4 FMAs and each s u
     * broadcast 4; then 4 x 16 columns for the rest */
    const int64_t N64 = N16 / 64 * 64;
    for (int64_t n = 0; n < N64; n += 64) {
        ft_v16f a[4][4];
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++)
            a[k / 4][k % 4] = (ft_v16f){0};
        for (int i = 0; i < rp; i++) {
            ft_v16f w[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                LOAD16(w[c], bt + i * ld + n + 16 * c);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const ft_v16f sj = ft_splat16(s4[j][i]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    a[j][c] = ft_fma16(sj, w[c], a[j][c]);
            }
        }
        /* constant indices (unrolled, j < nr tested inside): indexed by a run-time j, the
         * accumulators had to live in memory, and GCC spilled four of the sixteen inside
         * the FMA loop */
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                if (j < nr) {
                    ft_v16f y = a[j][c];
                    up_forward_store(out, outb, res, (m0 + j) * ldo + n + 16 * c, &y);
                }
    }
    for (int64_t n = N64; n < N16; n += 16) {
        ft_v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int i = 0; i < rp; i++) {
            ft_v16f w;
            LOAD16(w, bt + i * ld + n);
            a0 = ft_fma16(ft_splat16(s4[0][i]), w, a0);
            a1 = ft_fma16(ft_splat16(s4[1][i]), w, a1);
            a2 = ft_fma16(ft_splat16(s4[2][i]), w, a2);
            a3 = ft_fma16(ft_splat16(s4[3][i]), w, a3);
        }
        ft_v16f acc[4] = {a0, a1, a2, a3};
        for (int j = 0; j < nr; j++)
            up_forward_store(out, outb, res, (m0 + j) * ldo + n, &acc[j]);
    }
    for (int64_t n = N16; n < N; n++)
        for (int j = 0; j < nr; j++) {
            const int64_t o = (m0 + j) * ldo + n;
            float a = 0.0f;
            for (int i = 0; i < rp; i++)
                a = fmaf(s4[j][i], bt[i * ld + n], a);
            float y = out[o] + a;
            if (res) y += res[o];
            if (outb)
                outb[o] = ft_bf16_round(y);
            else
                out[o] = y;
        }
}

/* The forward's set-up, serial: module i's slice of ws gets bt (rp, ld) = B^T and su (M, rp) =
 * s u, both zero padded; returns the group's work (M N r summed) */
static int64_t up_forward_prep(const ft_lora_up *md, int n, float s, int M, int r, float *ws,
                               const float *bt[], const float *su[]) {
    const int rp = pad8(r);
    int64_t work = 0;
    for (int i = 0; i < n; i++) {
        const int N = md[i].N;
        const int64_t ld = ws_ld(N);
        float *b = ws, *sui = ws + rp * ld;
        transpose_b(b, ld, md[i].B, N, r, rp);
        for (int64_t m = 0; m < M; m++)
            for (int k = 0; k < rp; k++)
                sui[m * rp + k] = k < r ? s * md[i].u[m * md[i].ldu + k] : 0.0f;
        bt[i] = b, su[i] = sui;
        ws += lora_up_ws_floats(M, N, r);
        work += (int64_t)M * (N > 0 ? N : 0) * r;
    }
    return work;
}

void lora_up_forward_n(const ft_lora_up *md, int n, float s, int M, int r, float *ws) {
    FT_ASSERT(n >= 0 && n <= LORA_UP_MAXN);
    if (M <= 0 || r <= 0) return;
    const int rp = pad8(r);
    const float *bt[LORA_UP_MAXN], *su[LORA_UP_MAXN];
    const int64_t work = up_forward_prep(md, n, s, M, r, ws, bt, su);
    const int64_t nb = ((int64_t)M + 3) / 4;
    /* one region for the group: each module's rows split between the threads, no barrier
     * between the modules (they write different arrays) */
#pragma omp parallel if (work >= FT_OMP_GRAIN)
    for (int i = 0; i < n; i++) {
        if (md[i].N <= 0) continue;
#pragma omp for schedule(static) nowait
        for (int64_t b = 0; b < nb; b++)
            up_forward_rows(&md[i], bt[i], su[i], ws_ld(md[i].N), rp, M, b);
    }
}

void lora_up_forward_swiglu(const ft_lora_up md[2], uint16_t *hactb, float s, int M, int r,
                            float *ws) {
    const int64_t F = md[0].N;
    FT_ASSERT(md[0].outb && md[1].outb && md[1].N == F && md[0].ldo == F && md[1].ldo == F);
    if (M <= 0 || r <= 0 || F <= 0) return;
    const int rp = pad8(r);
    const float *bt[2], *su[2];
    const int64_t work = up_forward_prep(md, 2, s, M, r, ws, bt, su), ld = ws_ld((int)F);
    const int64_t nb = ((int64_t)M + 3) / 4;
    /* a row block's gate and up rows, then its hact from them while they are in cache */
#pragma omp parallel for schedule(static) if (work >= FT_OMP_GRAIN)
    for (int64_t b = 0; b < nb; b++) {
        up_forward_rows(&md[0], bt[0], su[0], ld, rp, M, b);
        up_forward_rows(&md[1], bt[1], su[1], ld, rp, M, b);
        const int64_t m0 = 4 * b, nr = M - m0 < 4 ? M - m0 : 4;
        ft_swiglu_bf16_span(NULL, hactb + m0 * F, md[0].outb + m0 * F, md[1].outb + m0 * F,
                            (size_t)(nr * F));
    }
}

void lora_up_forward_rope(const ft_lora_up *md, int n, float s, int M, int r, float *ws,
                          uint16_t *qb, uint16_t *kb, uint16_t *vb, const float *q, const float *k,
                          const float *v, int64_t ldi, const float *cs, int H, int KV, int D) {
    FT_ASSERT(n >= 0 && n <= LORA_UP_MAXN);
    if (M <= 0) return;
    const int rp = pad8(r);
    const float *bt[LORA_UP_MAXN], *su[LORA_UP_MAXN];
    const int64_t work = up_forward_prep(md, n, s, M, r, ws, bt, su) + (int64_t)M * (H + KV) * D;
    const int64_t nb = ((int64_t)M + 3) / 4;
#pragma omp parallel for schedule(static) if (work >= FT_OMP_GRAIN)
    for (int64_t b = 0; b < nb; b++) {
        for (int i = 0; i < n; i++)
            if (md[i].N > 0) up_forward_rows(&md[i], bt[i], su[i], ws_ld(md[i].N), rp, M, b);
        const int64_t m0 = 4 * b, m1 = m0 + 4 < M ? m0 + 4 : M;
        rope_round_qkv_bf16_rows(qb, kb, vb, 0, q, k, v, ldi, cs, H, KV, D, 0, m0, m1);
    }
}

void lora_up_forward(float *out, uint16_t *outb, const float *res, int ldo, const float *u, int ldu,
                     float s, const float *B, int M, int N, int r, float *ws) {
    const ft_lora_up md = {
        .N = N, .B = B, .u = u, .ldu = ldu, .out = out, .outb = outb, .res = res, .ldo = ldo};
    lora_up_forward_n(&md, 1, s, M, r, ws);
}

/* The 16 horizontal sums of a[0..15] in one vector, by a tree of 15 adds (each level halves
 * the partial sums per accumulator and doubles the accumulators per vector): lane 2p holds
 * sum(a[TREE_ORDER[p]]), lane 2p + 1 sum(a[8 + TREE_ORDER[p]]). The order of the adds is fixed. */
static const int TREE_ORDER[8] = {0, 4, 2, 6, 1, 5, 3, 7};
typedef int32_t ft_v16i __attribute__((vector_size(64)));
#if defined(__clang__)
#define SHUF2(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#else
#define SHUF2(a, b, ...) __builtin_shuffle((a), (b), (ft_v16i){__VA_ARGS__})
#endif
static inline void hsum16x16(ft_v16f *out, const ft_v16f a[16]) {
    ft_v16f x[8], y[4], z[2];
    for (int k = 0; k < 8; k++)
        x[k] =
            SHUF2(a[2 * k], a[2 * k + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
            SHUF2(a[2 * k], a[2 * k + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                  31);
    for (int k = 0; k < 4; k++)
        y[k] = SHUF2(x[2 * k], x[2 * k + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26,
                     27) +
               SHUF2(x[2 * k], x[2 * k + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30,
                     31);
    for (int k = 0; k < 2; k++)
        z[k] = SHUF2(y[2 * k], y[2 * k + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28,
                     29) +
               SHUF2(y[2 * k], y[2 * k + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30,
                     31);
    *out = SHUF2(z[0], z[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
           SHUF2(z[0], z[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
}

/* 16 bf16 at p widened to f32 (exact) */
static inline void load_bf16x16(ft_v16f *v, const uint16_t *p) {
    ft_v16h h;
    memcpy(&h, p, sizeof h);
    ft_v16u u = __builtin_convertvector(h, ft_v16u) << 16;
    memcpy(v, &u, sizeof *v);
}

/* One row pair (or a lone row: y1p == y0p, su1 zero, its sums discarded) of lora_up_backward
 * over the columns [n0, n1) (a multiple of 16 wide), for an r slice of RB: the du partial sums
 * returned in *sums (hsum16x16's lanes: a[i] row 0, a[8 + i] row 1), the dB^T partial (RB, N)
 * updated, the bf16 copies written when b0/b1 are given. ld: the row stride of bt and part.
 * bfin: the rows are bf16 (h0p, h1p) instead of f32 (y0p, y1p). */
static inline __attribute__((always_inline)) void
up_backward_tile(ft_v16f *sums, float *part, const float *bt, const float *y0p, const float *y1p,
                 const uint16_t *h0p, const uint16_t *h1p, const float su0[RB], const float su1[RB],
                 uint16_t *b0, uint16_t *b1, int64_t ld, int64_t n0, int64_t n1, const int bfin) {
/* the pair's 16 columns at n, widened when bf16 */
#define LOAD_ROWS(y0, y1, n)                                                                       \
    do {                                                                                           \
        if (bfin) {                                                                                \
            load_bf16x16(&(y0), h0p + (n));                                                        \
            load_bf16x16(&(y1), h1p + (n));                                                        \
        } else {                                                                                   \
            LOAD16(y0, y0p + (n));                                                                 \
            LOAD16(y1, y1p + (n));                                                                 \
        }                                                                                          \
    } while (0)
    /* two sweeps over the tile (its rows are in L1 for the second): du's 16 accumulators, then
     * dB^T's partial rows with the 2 RB splats of s u held. In one sweep the accumulators, the
     * splats and the rows did not fit the 32 registers, and GCC spilled inside the loop. */
    ft_v16f a[2 * RB];
#pragma GCC unroll 16
    for (int i = 0; i < 2 * RB; i++)
        a[i] = (ft_v16f){0};
    for (int64_t n = n0; n < n1; n += 16) {
        ft_v16f y0, y1;
        LOAD_ROWS(y0, y1, n);
        if (!bfin && b0) store_bf16x16(b0 + n, &y0);
        if (!bfin && b1) store_bf16x16(b1 + n, &y1);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            ft_v16f w;
            LOAD16(w, bt + i * ld + n);
            a[i] = ft_fma16(y0, w, a[i]);
            a[RB + i] = ft_fma16(y1, w, a[RB + i]);
        }
    }
    hsum16x16(sums, a);
    ft_v16f s0[RB], s1[RB];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) {
        s0[i] = ft_splat16(su0[i]);
        s1[i] = ft_splat16(su1[i]);
    }
    for (int64_t n = n0; n < n1; n += 16) {
        ft_v16f y0, y1;
        LOAD_ROWS(y0, y1, n);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            ft_v16f p;
            LOAD16(p, part + i * ld + n);
            p = ft_fma16(y0, s0[i], p);
            p = ft_fma16(y1, s1[i], p);
            memcpy(part + i * ld + n, &p, sizeof p);
        }
    }
#undef LOAD_ROWS
}

/* columns per tile: the tile's B^T and dB^T partial rows (2 x RB x NT floats, 16 KiB) stay in L1
 * while a block's rows stream through */
#define NT 256

/* Row block blk of module md's backward (loop 1 of lora_up_backward_n) in f32 arithmetic, the
 * form of targets without AVX512-BF16 (up_backward_block_dp below otherwise; there the bf16 step
 * itself never runs, ft_cpu_has_bf16, but the kernel tests do): its dB^T partial (parts + blk rp
 * ld), its rows of du, and of doutb in the first slice. bfin: dout is read as bf16 from md->din.
 * bt (rp, ld) = B^T zero padded. */
static inline __attribute__((always_inline)) void
up_backward_block(const ft_lora_up *md, float s, const float *bt, float *parts, int64_t ld, int rp,
                  int M, int r, int64_t blk, const int bfin) {
    const int64_t N = md->N, N16 = N / 16 * 16, ldd = md->ldd, lddu = md->lddu, ldu = md->ldu;
    const float *dout = md->dout, *u = md->u;
    const uint16_t *din = md->din;
    uint16_t *doutb = md->doutb;
    float *du = md->du;
    float *part = parts + blk * rp * ld;
    memset(part, 0, (size_t)(rp * ld) * sizeof(float));
    const int64_t mbeg = blk * LORA_ROWS, mend = mbeg + LORA_ROWS < M ? mbeg + LORA_ROWS : M;
    for (int64_t m = mbeg; m < mend; m++)
        for (int i = 0; i < r; i++)
            du[m * lddu + i] = 0.0f;
    for (int i0 = 0; i0 < rp; i0 += RB) {
        const int ni = r - i0 < RB ? r - i0 : RB; /* du columns of this slice */
        /* column tiles, each over all the block's rows; the tail columns (N % 16) last */
        for (int64_t n0 = 0; n0 < N16; n0 += NT) {
            const int64_t n1 = n0 + NT < N16 ? n0 + NT : N16;
            for (int64_t m = mbeg; m < mend; m += 2) {
                const int pair = m + 1 < mend;
                const int64_t m1 = pair ? m + 1 : m;
                float su0[RB], su1[RB];
                for (int i = 0; i < RB; i++) {
                    su0[i] = i0 + i < r ? s * u[m * ldu + i0 + i] : 0.0f;
                    su1[i] = pair && i0 + i < r ? s * u[m1 * ldu + i0 + i] : 0.0f;
                }
                /* the bf16 copy once, in the first slice; a lone row converts only itself */
                uint16_t *b0 = !bfin && doutb && i0 == 0 ? doutb + m * ldd : NULL;
                uint16_t *b1 = !bfin && doutb && i0 == 0 && pair ? doutb + m1 * ldd : NULL;
                ft_v16f sums;
                if (bfin)
                    up_backward_tile(&sums, part + i0 * ld, bt + i0 * ld, NULL, NULL, din + m * ldd,
                                     din + m1 * ldd, su0, su1, NULL, NULL, ld, n0, n1, 1);
                else
                    up_backward_tile(&sums, part + i0 * ld, bt + i0 * ld, dout + m * ldd,
                                     dout + m1 * ldd, NULL, NULL, su0, su1, b0, b1, ld, n0, n1, 0);
                for (int p = 0; p < RB; p++) {
                    const int i = TREE_ORDER[p];
                    if (i >= ni) continue;
                    du[m * lddu + i0 + i] += sums[2 * p];
                    if (pair) du[m1 * lddu + i0 + i] += sums[2 * p + 1];
                }
            }
        }
        for (int64_t m = mbeg; m < mend; m++) {
            for (int64_t n = N16; n < N; n++) {
                const float y = bfin ? ft_bf16_widen(din[m * ldd + n]) : dout[m * ldd + n];
                if (!bfin && doutb && i0 == 0) doutb[m * ldd + n] = ft_bf16_round(y);
                for (int i = 0; i < ni; i++) {
                    du[m * lddu + i0 + i] = fmaf(y, bt[(i0 + i) * ld + n], du[m * lddu + i0 + i]);
                    float *pp = part + (i0 + i) * ld + n;
                    *pp = fmaf(y, s * u[m * ldu + i0 + i], *pp);
                }
            }
        }
    }
    for (int64_t m = mbeg; m < mend; m++)
        for (int i = 0; i < r; i++)
            du[m * lddu + i] *= s;
}

/* Tile t of loop 2: dB[n][i] += the sum over the nblk partials, in block order, for 16 columns
 * x RB rows of dB^T, summed as vectors and added into dB (N,r) through a small transpose */
static inline void up_backward_reduce(const ft_lora_up *md, const float *parts, int64_t ld, int rp,
                                      int r, int64_t nblk, int64_t t) {
    const int N = md->N;
    const int64_t nv = (N + 15) / 16, n0 = (t % nv) * 16, i0 = (t / nv) * RB;
    const int nn = N - n0 < 16 ? (int)(N - n0) : 16, ni = r - i0 < RB ? (int)(r - i0) : RB;
    float sum[RB][16];
    for (int i = 0; i < ni; i++) {
        ft_v16f acc = {0}, p;
        for (int64_t blk = 0; blk < nblk; blk++) {
            LOAD16(p, parts + (blk * rp + i0 + i) * ld + n0);
            acc += p;
        }
        memcpy(sum[i], &acc, sizeof acc);
    }
    for (int l = 0; l < nn; l++)
        for (int i = 0; i < ni; i++)
            md->dB[(n0 + l) * r + i0 + i] += sum[i][l];
}

#if defined(__AVX512BF16__)
/* The backward on AVX512-BF16 dot products (VDPBF16PS: two bf16 products summed into each f32
 * lane, both exact; see attention_flash_dp.c), with the operands of PyTorch's bf16 autocast:
 * dout, B and s u rounded to bf16, every sum in f32. Twice the f32 FMA's terms per instruction,
 * and dB's accumulators stay in registers over a block's rows (the f32 form above adds each row
 * pair into its dB^T partial in memory). lab, one thread, M 1024, r 8, bf16 dout: N 288
 * 174 -> 68 us, 768 390 -> 185, 1536 786 -> 478. */
#define AI static inline __attribute__((always_inline))

int lora_up_backward_bf16ops(void) {
    return 1;
}

/* bt2 (rp rows of ld words): bt2[i ld + p] = (bf16 B[2p][i], bf16 B[2p + 1][i]), B^T's rows as
 * pair words, zero past N (up to the row's N32 / 2 words, N32 = N rounded up to 32) and for
 * i >= r */
static void pair_bt(uint32_t *bt2, int64_t ld, const float *B, int N, int r, int rp) {
    const int64_t np = ((int64_t)N + 31) / 32 * 16;
    for (int i = 0; i < rp; i++)
        for (int64_t p = 0; p < np; p++) {
            const uint32_t lo = i < r && 2 * p < N ? ft_bf16_round(B[2 * p * r + i]) : 0;
            const uint32_t hi = i < r && 2 * p + 1 < N ? ft_bf16_round(B[(2 * p + 1) * r + i]) : 0;
            bt2[i * ld + p] = lo | hi << 16;
        }
}

static inline __mmask32 lanes32(int64_t k) {
    return k >= 32 ? ~(__mmask32)0 : k <= 0 ? 0 : (__mmask32)((1u << k) - 1);
}

/* 32 elements of a row from column n as bf16, k = N - n of them (the rest zero): read as bf16
 * (h), or read as f32 (y) and rounded (ft_bf16_round16: ft_bf16_round's bits) */
AI __m512i row32(const float *y, const uint16_t *h, int64_t n, int64_t k, const int f32) {
    if (!f32) return _mm512_maskz_loadu_epi16(lanes32(k), h + n);
    const __m256i lo = ft_bf16_round16(_mm512_maskz_loadu_ps(ft_lanes16(k), y + n));
    const __m256i hi = ft_bf16_round16(_mm512_maskz_loadu_ps(ft_lanes16(k - 16), y + n + 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* du's sums for a row pair (or a lone row: row 1 aliases row 0, its sums discarded) over all N
 * columns, for the RB ranks of bt2: *sums as hsum16x16's lanes. f32: the rows are f32 (y0, y1),
 * rounded here, and their bf16 copies go to b0, b1 when given; else bf16 (h0, h1). */
AI void dp_du_pair(ft_v16f *sums, const float *y0, const float *y1, const uint16_t *h0,
                   const uint16_t *h1, uint16_t *b0, uint16_t *b1, const uint32_t *bt2, int64_t ld,
                   int64_t N, const int f32) {
    __m512 a[2 * RB];
#pragma GCC unroll 16
    for (int i = 0; i < 2 * RB; i++)
        a[i] = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; n += 32) {
        const __m512i v0 = row32(y0, h0, n, N - n, f32), v1 = row32(y1, h1, n, N - n, f32);
        if (f32 && b0) _mm512_mask_storeu_epi16(b0 + n, lanes32(N - n), v0);
        if (f32 && b1) _mm512_mask_storeu_epi16(b1 + n, lanes32(N - n), v1);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            const __m512bh w = (__m512bh)_mm512_loadu_si512(bt2 + i * ld + n / 2);
            a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)v0, w);
            a[RB + i] = _mm512_dpbf16_ps(a[RB + i], (__m512bh)v1, w);
        }
    }
    ft_v16f t[2 * RB];
    memcpy(t, a, sizeof t);
    hsum16x16(sums, t);
}

/* dB^T's partial for the block's rows [m0, m1) and the RB ranks of su2 (the row pairs' pair
 * words (bf16 s u_m,i, bf16 s u_m+1,i), zero past m1), 32 columns at a time with their 2 RB
 * accumulators in registers: part (RB rows of ld) columns [0, N32) WRITTEN. Rows as row32 reads
 * them (f32: y rounded; else h). */
AI void dp_db_block(float *part, int64_t ld, const float *y, const uint16_t *h, int64_t ldd,
                    int64_t m0, int64_t m1, const uint32_t *su2, int64_t N, const int f32) {
    const __m512i ilo = _mm512_loadu_si512(ft_ilv_ab);
    const __m512i ihi = _mm512_add_epi16(ilo, _mm512_set1_epi16(16));
    for (int64_t n = 0; n < N; n += 32) {
        __m512 a[2 * RB];
#pragma GCC unroll 16
        for (int i = 0; i < 2 * RB; i++)
            a[i] = _mm512_setzero_ps();
        for (int64_t m = m0; m < m1; m += 2) {
            const __m512i va = row32(y + m * ldd, h + m * ldd, n, N - n, f32);
            const __m512i vb = m + 1 < m1
                                   ? row32(y + (m + 1) * ldd, h + (m + 1) * ldd, n, N - n, f32)
                                   : _mm512_setzero_si512();
            /* pair words (row m, row m + 1) of columns n + j: j < 16 in lo, the rest in hi */
            const __m512bh lo = (__m512bh)_mm512_permutex2var_epi16(va, ilo, vb);
            const __m512bh hi = (__m512bh)_mm512_permutex2var_epi16(va, ihi, vb);
            const uint32_t *w = su2 + (m - m0) / 2 * RB;
#pragma GCC unroll 8
            for (int i = 0; i < RB; i++) {
                const __m512bh wi = (__m512bh)_mm512_set1_epi32((int)w[i]);
                a[i] = _mm512_dpbf16_ps(a[i], lo, wi);
                a[RB + i] = _mm512_dpbf16_ps(a[RB + i], hi, wi);
            }
        }
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) {
            _mm512_storeu_ps(part + i * ld + n, a[i]);
            _mm512_storeu_ps(part + i * ld + n + 16, a[RB + i]);
        }
    }
}

/* Row block blk of module md's backward: du's rows (WRITTEN), doutb's rows (f32 dout), the dB^T
 * partial (parts + blk rp ld, columns [0, N32) written). bfin: dout is read as bf16 from md->din.
 * bt2 (rp, ld) = pair_bt. With f32 dout the dB sweep reads the bf16 rows back from doutb when
 * they were written, else rounds them again. */
AI void up_backward_block_dp(const ft_lora_up *md, float s, const uint32_t *bt2, float *parts,
                             int64_t ld, int rp, int M, int r, int64_t blk, const int bfin) {
    const int64_t N = md->N, ldd = md->ldd, lddu = md->lddu, ldu = md->ldu;
    const float *dout = md->dout, *u = md->u;
    const uint16_t *h = bfin ? md->din : md->doutb;
    uint16_t *doutb = bfin ? NULL : md->doutb;
    float *du = md->du, *part = parts + blk * rp * ld;
    const int64_t mbeg = blk * LORA_ROWS, mend = mbeg + LORA_ROWS < M ? mbeg + LORA_ROWS : M;
    uint32_t su2[LORA_ROWS / 2 * RB];
    for (int i0 = 0; i0 < rp; i0 += RB) {
        const int ni = r - i0 < RB ? r - i0 : RB; /* du columns of this slice */
        for (int64_t m = mbeg; m < mend; m += 2) {
            const int pair = m + 1 < mend;
            const int64_t m1 = pair ? m + 1 : m;
            /* the bf16 copy once, in the first slice; a lone row converts only itself */
            uint16_t *b0 = doutb && i0 == 0 ? doutb + m * ldd : NULL;
            uint16_t *b1 = doutb && i0 == 0 && pair ? doutb + m1 * ldd : NULL;
            ft_v16f sums;
            if (bfin)
                dp_du_pair(&sums, NULL, NULL, h + m * ldd, h + m1 * ldd, NULL, NULL, bt2 + i0 * ld,
                           ld, N, 0);
            else
                dp_du_pair(&sums, dout + m * ldd, dout + m1 * ldd, NULL, NULL, b0, b1,
                           bt2 + i0 * ld, ld, N, 1);
            for (int p = 0; p < RB; p++) {
                const int i = TREE_ORDER[p];
                if (i >= ni) continue;
                du[m * lddu + i0 + i] = s * sums[2 * p];
                if (pair) du[m1 * lddu + i0 + i] = s * sums[2 * p + 1];
            }
        }
        for (int64_t m = mbeg; m < mend; m += 2)
            for (int i = 0; i < RB; i++) {
                const int64_t k = (m - mbeg) / 2 * RB + i;
                const uint32_t lo = i < ni ? ft_bf16_round(s * u[m * ldu + i0 + i]) : 0;
                const uint32_t hi =
                    i < ni && m + 1 < mend ? ft_bf16_round(s * u[(m + 1) * ldu + i0 + i]) : 0;
                su2[k] = lo | hi << 16;
            }
        if (bfin || doutb)
            dp_db_block(part + i0 * ld, ld, NULL, h, ldd, mbeg, mend, su2, N, 0);
        else
            dp_db_block(part + i0 * ld, ld, dout, NULL, ldd, mbeg, mend, su2, N, 1);
    }
}
#else
int lora_up_backward_bf16ops(void) {
    return 0;
}
#endif

void lora_up_backward_n(const ft_lora_up *md, int n, float s, int M, int r, float *ws) {
    FT_ASSERT(n >= 0 && n <= LORA_UP_MAXN);
    if (M <= 0 || r <= 0) return;
    const int rp = pad8(r);
    const int64_t nblk = ((int64_t)M + LORA_ROWS - 1) / LORA_ROWS;
    float *bt[LORA_UP_MAXN];
    int64_t t0[LORA_UP_MAXN + 1] = {0}, work = 0;
    for (int i = 0; i < n; i++) { /* module i's slice of ws: bt (rp, ld), then nblk partials */
        const int N = md[i].N > 0 ? md[i].N : 0;
        bt[i] = ws;
#if defined(__AVX512BF16__)
        pair_bt((uint32_t *)bt[i], ws_ld(N), md[i].B, N, r, rp);
#else
        transpose_b(bt[i], ws_ld(N), md[i].B, N, r, rp);
#endif
        ws += lora_up_ws_floats(M, N, r);
        t0[i + 1] = t0[i] + (N + 15) / 16 * (rp / RB);
        work += (int64_t)M * N * r;
    }
    /* one parallel region for both loops and all the modules: with passive waiting a region
     * costs ~40 us (its start's wake-up and its end's barrier), the barrier between the loops
     * ~20 (bench_regions). Loop 1 runs block-major (t = blk n + i), so each module's blocks are
     * split between the threads whatever the modules' widths. */
#pragma omp parallel if (work >= FT_OMP_GRAIN)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < nblk * n; t++) {
            const int i = (int)(t % n);
            const int64_t blk = t / n, ld = ws_ld(md[i].N);
            if (md[i].N <= 0) continue;
#if defined(__AVX512BF16__)
            const uint32_t *b2 = (const uint32_t *)bt[i];
            if (md[i].dout)
                up_backward_block_dp(&md[i], s, b2, bt[i] + rp * ld, ld, rp, M, r, blk, 0);
            else
                up_backward_block_dp(&md[i], s, b2, bt[i] + rp * ld, ld, rp, M, r, blk, 1);
#else
            if (md[i].dout)
                up_backward_block(&md[i], s, bt[i], bt[i] + rp * ld, ld, rp, M, r, blk, 0);
            else
                up_backward_block(&md[i], s, bt[i], bt[i] + rp * ld, ld, rp, M, r, blk, 1);
#endif
        }
        /* (after the loop's barrier: every block's partial is written) */
#pragma omp for schedule(static)
        for (int64_t t = 0; t < t0[n]; t++) {
            int i = 0;
            while (t >= t0[i + 1])
                i++;
            const int64_t ld = ws_ld(md[i].N);
            up_backward_reduce(&md[i], bt[i] + rp * ld, ld, rp, r, nblk, t - t0[i]);
        }
    }
}

/* one module, dout as f32 (din NULL) or as bf16 (dout NULL), rows of N */
static void up_backward_one(uint16_t *doutb, float *dB, float *du, int lddu, const float *dout,
                            const uint16_t *din, const float *u, int ldu, float s, const float *B,
                            int M, int N, int r, float *ws) {
    const ft_lora_up md = {.N = N,
                           .B = B,
                           .u = u,
                           .ldu = ldu,
                           .dout = dout,
                           .din = din,
                           .doutb = doutb,
                           .ldd = N,
                           .dB = dB,
                           .du = du,
                           .lddu = lddu};
    lora_up_backward_n(&md, 1, s, M, r, ws);
}

void lora_up_backward(uint16_t *doutb, float *dB, float *du, int lddu, const float *dout,
                      const float *u, int ldu, float s, const float *B, int M, int N, int r,
                      float *ws) {
    up_backward_one(doutb, dB, du, lddu, dout, NULL, u, ldu, s, B, M, N, r, ws);
}

void lora_up_backward_bf16in(float *dB, float *du, int lddu, const uint16_t *doutb, const float *u,
                             int ldu, float s, const float *B, int M, int N, int r, float *ws) {
    up_backward_one(NULL, dB, du, lddu, NULL, doutb, u, ldu, s, B, M, N, r, ws);
}

void lora_up_forward_naive(float *out, uint16_t *outb, const float *res, int ldo, const float *u,
                           int ldu, float s, const float *B, int M, int N, int r) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double a = 0;
            for (int i = 0; i < r; i++)
                a += (double)(s * u[m * ldu + i]) * B[n * r + i];
            float y = out[m * ldo + n] + (float)a;
            if (res) y += res[m * ldo + n];
            if (outb)
                outb[m * ldo + n] = ft_bf16_round(y);
            else
                out[m * ldo + n] = y;
        }
}

static inline float naive_op(float x, int bf16ops) {
    return bf16ops ? ft_bf16_widen(ft_bf16_round(x)) : x;
}

void lora_up_backward_naive(float *dB, float *du, int lddu, const float *dout, const float *u,
                            int ldu, float s, const float *B, int M, int N, int r, int bf16ops) {
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < r; i++) {
            double a = 0;
            for (int64_t m = 0; m < M; m++)
                a += (double)naive_op(dout[m * N + n], bf16ops) *
                     naive_op(s * u[m * ldu + i], bf16ops);
            dB[n * r + i] += (float)a;
        }
    for (int64_t m = 0; m < M; m++)
        for (int i = 0; i < r; i++) {
            double a = 0;
            for (int64_t n = 0; n < N; n++)
                a += (double)naive_op(dout[m * N + n], bf16ops) * naive_op(B[n * r + i], bf16ops);
            du[m * lddu + i] = (float)(s * a);
        }
}
