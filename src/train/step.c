/*
 * The gradient engine (contract: include/ftune/train.h): which tensors are trained (full,
 * freeze by regex, LoRA with optional PEFT trainable tokens: chosen embedding/head rows replaced by
 * trained ones in the lookup and in the head's logits, the base tables untouched and the bf16 head
 * pack never repacked), the activation buffer, the training forward that saves what backward
 * needs, and the hand-written backward that calls the kernels' backward twins in exactly the
 * reverse order. Gradient checkpointing keeps only each layer's input (the residual stream) and
 * recomputes the layer just before its backward, with the same kernels, inputs and dropout
 * masks, so its gradients are bit-identical to the stored-activation path.
 *
 * Not here: the optimizer, schedules, accumulation loop, checkpoints (src/train/trainer.c);
 * LoRA's RNG and adapter writer (src/peft/lora.c); the kernels (src/kernels/cpu/).
 *
 * Letters: B batch, T time, BT = B*T rows, C dim, H heads, KV kv heads, D head dim,
 * HD = H*D, KVD = KV*D, F hidden_dim, V vocab, L layers, r LoRA rank.
 */
#include "train_internal.h"

#include "ftune/crossentropy.h"
#include "ftune/kernels.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* small elementwise helpers                                                                   */

#define STEP_GRAIN 32768 /* as FT_OMP_GRAIN (src/kernels/cpu/grain.h): below, one thread */

/* Both threads share large fills and adds (one thread alone does not saturate the bandwidth). */
static void zero(float *p, size_t n) {
    if (n < 8 * STEP_GRAIN) {
        memset(p, 0, n * sizeof(float));
        return;
    }
#pragma omp parallel
    {
        size_t nt = (size_t)omp_get_num_threads(), it = (size_t)omp_get_thread_num();
        size_t lo = n * it / nt, hi = n * (it + 1) / nt;
        memset(p + lo, 0, (hi - lo) * sizeof(float));
    }
}

static void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= STEP_GRAIN)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* y (n) += x (n) * s */
static void add_scaled(float *y, const float *x, float s, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= STEP_GRAIN)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i] * s;
}

/* y (n) = x (n) * s */
static void scale_to(float *y, const float *x, float s, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= STEP_GRAIN)
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * s;
}

/* ------------------------------------------------------------------------------------------ */
/* LoRA dropout: keep element i of module (l,j) iff its uniform draw >= p; kept values are
 * scaled by 1/(1-p) as torch.nn.Dropout does. The draw is a hash of (micro-step key, l, j, i),
 * so a recompute (gradient checkpointing) or the backward regenerates exactly the same mask
 * without storing it. */

static inline uint64_t drop_stream(uint64_t key, int l, int j) {
    return ft_rng_mix(key ^ ft_rng_mix(((uint64_t)l << 8 | (uint64_t)j) + 1));
}

static inline int drop_keep(uint64_t stream, size_t i, float p) {
    return ft_rng_uniform(ft_rng_mix(stream + (uint64_t)i * 0x9E3779B97F4A7C15ull)) >= p;
}

/* out (n) = drop(inp) */
static void dropout_forward(float *out, const float *inp, uint64_t stream, float p, size_t n) {
    float s = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++)
        out[i] = drop_keep(stream, i, p) ? inp[i] * s : 0.0f;
}

/* dinp (n) += dout * keep_i / (1-p)   (d drop(x)_i / d x_i = keep_i * s) */
static void dropout_backward(float *dinp, const float *dout, uint64_t stream, float p, size_t n) {
    float s = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++)
        if (drop_keep(stream, i, p)) dinp[i] += dout[i] * s;
}

/* ------------------------------------------------------------------------------------------ */
/* A linear layer with its optional LoRA branch (module j of layer l):
 *   out (M,N) = inp (M,K) · W^T + bias  +  s * (B · (A · drop(inp)))
 * as PEFT computes it: result + lora_B(lora_A(dropout(x))) * scaling. u = A·drop(x) (M,r) is
 * saved in `lu` for backward. */

static void linear_forward(ft_train_model *tm, float *out, float *lu, const float *inp,
                           const uint16_t *inpb, const float *w, const float *bias, int l, int j,
                           int M, int K, int N) {
    if (inpb) /* bf16 mode: inpb = bf16(inp), the weight packed once per step (or once) */
        matmul_bf16w_forward(out, inpb, tm->pw[l][j], bias, M, 0);
    else
        matmul_forward(out, inp, w, bias, M, K, N);
    const float *A = tm->lA[l][j];
    if (!A || tm->lora_bf16) return; /* bf16 LoRA runs per group: lora_group_forward */
    int r = tm->opt.lora.r;
    const float *xa = inp;
    if (tm->dropout_on) {
        dropout_forward(tm->lxd, inp, drop_stream(tm->drop_key, l, j), tm->opt.lora.dropout,
                        (size_t)M * K);
        xa = tm->lxd;
    }
    matmul_forward(lu, xa, A, NULL, M, K, r);                /* u = A·xd      (M,r) */
    matmul_forward(tm->lv, lu, tm->lB[l][j], NULL, M, r, N); /* v = B·u       (M,N) */
    add_scaled(out, tm->lv, tm->lora_scale, (size_t)M * N);
}

/*
 * Backward of linear_forward. dinp (M,K) ADDED, or in bf16 mode WRITTEN when `write` (the first
 * product into a buffer: no zeroing pass, no read of zeros); dw (N,K), dbias (N) ADDED when
 * non-NULL. `write` also marks the first module of an input group (down; gate of gate/up; o; q of
 * q/k/v), whose inpb is new: the group's first bf16 weight gradient packs it (tm->xpk) and its
 * later ones reuse that pack.
 *   base:  out = inp·W^T + b   =>  dinp += dout·W ; dW += dout^T·inp ; db += sum_m dout
 *   LoRA:  out += s*v, v = B·u, u = A·xd, xd = drop(inp):
 *          dv  = s*dout                       (ldo, M×N)
 *          dB += dv^T · u                     (out,r)
 *          du  = dv · B                       (ldu, M×r)
 *          dA += du^T · xd                    (r,in)
 *          dxd = du · A                       (M×K)
 *          dinp += dxd ⊙ keep / (1-p)         (identity when dropout is off)
 * dA/dB are always live for a targeted module (LoRA trains every A and B it creates).
 */
static void lora_up_backward_j(ft_train_model *tm, uint16_t *doutb, const float *dout,
                               const float *ug, int l, int j, int M, int N);

/* The bf16 products of linear_backward from dout as bf16 (doutb): dinp += doutb·W (packed),
 * dW += doutb^T·inpb (inpb packed once per input group: tm->xpk, by the group's first dW
 * product, not necessarily its first module's, which may be frozen). */
static void bf16_dout_products(ft_train_model *tm, ft_bf16_weight *pw, float *dinp, float *dw,
                               const uint16_t *doutb, const uint16_t *doutbT, const uint16_t *inpb,
                               int M, int K, int N, int write) {
    if (dinp) matmul_bf16w_backward_input(dinp, doutb, pw, M, !write);
    if (dw) {
        const int acc = !tm->dw_write;
        if (doutbT)
            matmul_bf16_backward_weight_t(dw, doutbT, inpb, tm->xpk, tm->xpk_stale, M, K, N, acc);
        else
            matmul_bf16_backward_weight(dw, doutb, inpb, tm->xpk, tm->xpk_stale, M, K, N, acc);
        tm->xpk_stale = 0;
    }
}

/* linear_backward for a dout that exists only as bf16 (doutb, M×N), in bf16 mode with no bias
 * gradient and not on the f32 LoRA branch: the base weight's products. LoRA's B side (bf16
 * branch) reads doutb in its group's pass (lora_group_up_backward), which the caller runs. */
static void linear_backward_bf16(ft_train_model *tm, float *dinp, float *dw, const uint16_t *doutb,
                                 const uint16_t *inpb, int l, int j, int M, int K, int N,
                                 int write) {
    if (write) tm->xpk_stale = 1;
    bf16_dout_products(tm, tm->pw[l][j], dinp, dw, doutb, NULL, inpb, M, K, N, write);
}

/* A weight gradient dW (N,K) reads dout transposed (bf16_from_f32_t, then
 * matmul_bf16_backward_weight_t) when K is at least this. bench_matmul, M 1024, x packed, dW
 * written (the fused step's form): SmolLM's down projection (K 1536) 2.70-2.87 -> 2.56-2.58 ms
 * for 0.09 ms more conversion (0.12 against 0.03 ms for its 1024 x 576 dout); with dW accumulated
 * the product gains only 0.02-0.07 ms. At K 576 (o, q, k, v) the products gain 0.01-0.09 ms and
 * the conversion costs 0.03-0.05 ms more (raw oneDNN probe with the sum post-op: 0.03-0.09 against
 * 0.05-0.13). Accumulated gradients (gradient accumulation, clipping: no dw_write) take it too,
 * at about break-even, so that a step's gradients have the same bits with and without dw_write
 * (tests/train/test_fused_adamw passes with this set to 512, where stories15M's down projection,
 * K 768, takes the transposed form). */
enum { DOUT_T_MIN_K = 1024 };

static void linear_backward(ft_train_model *tm, float *dinp, float *dw, float *dbias,
                            const float *dout, const float *inp, const uint16_t *inpb,
                            const float *w, const float *lu, int l, int j, int M, int K, int N,
                            int write) {
    if (write) tm->xpk_stale = 1;        /* a new input group: its first dW product packs inpb */
    if (tm->lora_bf16 && tm->lA[l][j]) { /* LoRA's B side in the pass that rounds dout */
        lora_up_backward_j(tm, dinp || dw ? tm->doutb : NULL, dout, lu, l, j, M, N);
        bf16_dout_products(tm, tm->pw[l][j], dinp, dw, tm->doutb, NULL, inpb, M, K, N, write);
        if (dbias) matmul_backward(NULL, NULL, dbias, dout, inp, w, M, K, N);
        return;
    }
    if (inpb && (dinp || dw)) { /* bf16 mode: dout rounded to bf16, f32 accumulation; for a
                                 * trained weight with a long input row also transposed, for its
                                 * gradient's product (DOUT_T_MIN_K) */
        const uint16_t *dT = dw && tm->doutbT && K >= DOUT_T_MIN_K ? tm->doutbT : NULL;
        if (dT)
            bf16_from_f32_t(tm->doutb, tm->doutbT, dout, M, N);
        else
            bf16_from_f32(tm->doutb, dout, (size_t)M * N);
        bf16_dout_products(tm, tm->pw[l][j], dinp, dw, tm->doutb, dT, inpb, M, K, N, write);
        if (dbias) matmul_backward(NULL, NULL, dbias, dout, inp, w, M, K, N);
    } else if (dinp || dw || dbias) {
        matmul_backward(dinp, dw, dbias, dout, inp, w, M, K, N);
    }
    const float *A = tm->lA[l][j];
    if (!A || tm->lora_bf16) return; /* bf16 LoRA runs per group: lora_group_backward */
    int r = tm->opt.lora.r;
    scale_to(tm->ldo, dout, tm->lora_scale, (size_t)M * N);
    zero(tm->ldu, (size_t)M * r);
    matmul_backward(tm->ldu, tm->dlB[l][j], NULL, tm->ldo, lu, tm->lB[l][j], M, r, N);
    if (!tm->dropout_on) {
        matmul_backward(dinp, tm->dlA[l][j], NULL, tm->ldu, inp, A, M, K, r);
        return;
    }
    uint64_t stream = drop_stream(tm->drop_key, l, j);
    float p = tm->opt.lora.dropout;
    dropout_forward(tm->lxd, inp, stream, p, (size_t)M * K);
    if (!dinp) {
        matmul_backward(NULL, tm->dlA[l][j], NULL, tm->ldu, tm->lxd, A, M, K, r);
        return;
    }
    zero(tm->ldx, (size_t)M * K);
    matmul_backward(tm->ldx, tm->dlA[l][j], NULL, tm->ldu, tm->lxd, A, M, K, r);
    dropout_backward(dinp, tm->ldx, stream, p, (size_t)M * K);
}

/* ------------------------------------------------------------------------------------------ */
/* bf16 LoRA branch (bf16 mode, no dropout). A group is the modules that read the same input x
 * (M,K): {q,k,v} on n1, {o} on attn, {gate,up} on n2, {down} on hact. With A_g (R,K) = the
 * targeted modules' A stacked (R = n_g r, bf16, tm->lAg) and u_g = x·A_g^T (M,R), the columns
 * [slot_j r, slot_j r + r) of u_g are module j's u_j = x·A_j^T:
 *   forward   u_g = xb·A_g^T                   one bf16 product (f32 accumulation), saved
 *             out_j += (s u_j)·B_j^T            f32, one pass over out_j (lora_up_forward),
 *                                               which also adds the residual (o, down) or
 *                                               writes the bf16 copy (gate, up)
 *   backward  (out_j = ... + s B_j u_j, so with dout_j = dL/dout_j), per module in
 *             linear_backward, in the pass that rounds dout_j to bf16 (lora_up_backward):
 *             dB_j += dout_j^T·(s u_j)          f32
 *             du_j  = s dout_j·B_j              f32, into the columns of du_g (M,R)
 *             then per group (lora_group_backward):
 *             dA_g  = du_g^T·xb  -> dA_j += rows [slot_j r, +r) of dA_g      one bf16 product
 *             dx   += du_g·A_g                  bf16, lowrank_add; for {down}, folded into the
 *                                               pass that reads dx next instead
 *                                               (swiglu_backward_bf16out_lr: one read and write
 *                                               of dhact (M,F) f32 less)
 * The same terms as linear_backward's f32 LoRA branch; du is rounded to bf16 for the two
 * products with x and A (as dout is for the base weights), everything else is f32. */

static const unsigned char lora_group_of[FT_LORA_NMOD] = {0, 0, 0, 1, 2, 2, 3};

/* The targeted modules j of group g, in order: md[i] gets N (module j's output width), B, u (its
 * columns of the group's ug (M,R)) and ldu, the rest zeroed; js[i] = j. Returns how many. */
static int lora_group_modules(const ft_train_model *tm, int l, int g, const float *ug,
                              ft_lora_up md[LORA_UP_MAXN], int js[LORA_UP_MAXN]) {
    const int r = tm->opt.lora.r, R = tm->lgn[g] * r;
    int n = 0;
    for (int j = 0; R && j < FT_LORA_NMOD; j++) {
        if (lora_group_of[j] != g || tm->lslot[j] < 0) continue;
        int in, out;
        ft_lora_module_shape(&tm->m->cfg, j, &in, &out);
        js[n] = j;
        md[n++] =
            (ft_lora_up){.N = out, .B = tm->lB[l][j], .u = ug + (size_t)tm->lslot[j] * r, .ldu = R};
    }
    return n;
}

/* outs[j] (M,N_j; rows ldo apart, 0: N_j) += LoRA_j(x) for the targeted modules j of group g,
 * in one pass (lora_up_forward_n); ug (M,R) saved. lora_group_prep runs the A side (ug) and
 * lists the modules (md; returns how many), for the passes that take them with more work
 * (lora_up_forward_rope). With res (M,N_j), the residual is added too
 * (h = res + out + LoRA, the order of the add it replaces); with outbs[j], the result goes only
 * to outbs[j] as bf16 (see lora_up_forward). With hactb (gate and up both targeted, to outbs),
 * hactb = SwiGLU of the two as bf16 too, in the same pass (lora_up_forward_swiglu). */
static int lora_group_prep(ft_train_model *tm, int l, int g, float *const outs[FT_LORA_NMOD],
                           uint16_t *const outbs[FT_LORA_NMOD], const float *res, int ldo,
                           float *ug, const uint16_t *xb, int M, int K,
                           ft_lora_up md[LORA_UP_MAXN]) {
    int js[LORA_UP_MAXN];
    const int n = lora_group_modules(tm, l, g, ug, md, js);
    if (!n) return 0;
    matmul_bf16_forward(ug, xb, tm->lAg[l][g], NULL, M, K, tm->lgn[g] * tm->opt.lora.r, 0);
    for (int i = 0; i < n; i++) {
        md[i].out = outs[js[i]];
        md[i].outb = outbs ? outbs[js[i]] : NULL;
        md[i].res = res;
        md[i].ldo = ldo ? ldo : md[i].N;
    }
    return n;
}

static void lora_group_forward(ft_train_model *tm, int l, int g, float *const outs[FT_LORA_NMOD],
                               uint16_t *const outbs[FT_LORA_NMOD], const float *res, int ldo,
                               uint16_t *hactb, float *ug, const uint16_t *xb, int M, int K) {
    ft_lora_up md[LORA_UP_MAXN];
    const int n = lora_group_prep(tm, l, g, outs, outbs, res, ldo, ug, xb, M, K, md);
    if (!n) return;
    if (hactb) { /* gate and up both targeted: hact made in the same pass */
        FT_ASSERT(n == 2);
        lora_up_forward_swiglu(md, hactb, tm->lora_scale, M, tm->opt.lora.r, tm->lws);
    } else {
        lora_up_forward_n(md, n, tm->lora_scale, M, tm->opt.lora.r, tm->lws);
    }
}

/* The B sides of group g's targeted modules from their douts as bf16, dins[j] (M,N_j; rows ldd
 * apart, 0: N_j), in one pass (lora_up_backward_n): dB_j added, du_j into tm->ldug's columns */
static void lora_group_up_backward(ft_train_model *tm, int l, int g,
                                   const uint16_t *const dins[FT_LORA_NMOD], int ldd,
                                   const float *ug, int M) {
    if (!tm->lora_bf16) return;
    ft_lora_up md[LORA_UP_MAXN];
    int js[LORA_UP_MAXN];
    const int n = lora_group_modules(tm, l, g, ug, md, js), r = tm->opt.lora.r;
    for (int i = 0; i < n; i++) {
        const int j = js[i];
        md[i].din = dins[j];
        md[i].ldd = ldd ? ldd : md[i].N;
        md[i].dB = tm->dlB[l][j];
        md[i].du = tm->ldug + (size_t)tm->lslot[j] * r;
        md[i].lddu = tm->lgn[g] * r;
    }
    if (n) lora_up_backward_n(md, n, tm->lora_scale, M, r, tm->lws);
}

/* Module j's B side from an f32 dout (M,N): dB_j += dout^T·(s u_j), its du columns of tm->ldug
 * = s dout·B_j, and doutb = bf16(dout) (NULL: not wanted), in one pass over dout (the douts made
 * as bf16 go through their group's pass: lora_group_up_backward). ug: the group's u (M,R). */
static void lora_up_backward_j(ft_train_model *tm, uint16_t *doutb, const float *dout,
                               const float *ug, int l, int j, int M, int N) {
    int r = tm->opt.lora.r, R = tm->lgn[lora_group_of[j]] * r;
    size_t c0 = (size_t)tm->lslot[j] * r;
    lora_up_backward(doutb, tm->dlB[l][j], tm->ldug + c0, R, dout, ug + c0, R, tm->lora_scale,
                     tm->lB[l][j], M, N, r, tm->lws);
}

/* The A side of group g, after linear_backward filled du_g (tm->ldug) for each of its modules:
 * dA_j ADDED; dinp (M,K) ADDED when non-NULL (lowrank_add). With lr non-NULL (and dinp NULL), the
 * dinp term du_g·A_g is handed over instead, for the pass that reads dinp next (lowrank.c). */
static void lora_group_backward(ft_train_model *tm, int l, int g, float *dinp, ft_lowrank *lr,
                                const uint16_t *xb, int M, int K) {
    int r = tm->opt.lora.r, R = tm->lgn[g] * r;
    if (!R) return;
    bf16_from_f32(tm->ldugb, tm->ldug, (size_t)M * R);
    if (tm->lgn[g] == 1) { /* one module: its dA directly */
        for (int j = 0; j < FT_LORA_NMOD; j++)
            if (lora_group_of[j] == g && tm->lslot[j] >= 0)
                matmul_bf16_backward(NULL, tm->dlA[l][j], tm->ldugb, xb, NULL, M, K, R);
    } else {
        zero(tm->ldAg, (size_t)R * K);
        matmul_bf16_backward(NULL, tm->ldAg, tm->ldugb, xb, NULL, M, K, R);
        for (int j = 0; j < FT_LORA_NMOD; j++)
            if (lora_group_of[j] == g && tm->lslot[j] >= 0)
                add_inplace(tm->dlA[l][j], tm->ldAg + (size_t)tm->lslot[j] * r * K,
                            (size_t)r * K);
    }
    if (!dinp && !lr) return;
    lowrank_pack(tm->lAp, tm->lAg[l][g], R, K);
    const ft_lowrank t = {tm->ldugb, R, R, tm->lAp};
    if (dinp) lowrank_add(dinp, &t, M, K);
    if (lr) *lr = t;
}

/* An RMSNorm's backward (dres += its input gradient, dwn += its weight's) from dln (M,C; NULL:
 * not wanted) plus, on the bf16 LoRA branch, the term of group g, whose A side runs here (the
 * group's input x is xb): folded into the norm's row pass where only dres is wanted
 * (rmsnorm_backward_fast_lr: dln + term is not written back, one parallel region less), else
 * added into dln first. The same bits either way. */
static void norm_backward_lora(ft_train_model *tm, int l, int g, float *dres, float *dwn,
                               float *dln, const float *x, const float *wn, const float *rstd,
                               const uint16_t *xb, int M, int C) {
    ft_lowrank lr = {0};
    const int fuse = dln && dres && !dwn && C <= LOWRANK_MAXC;
    if (tm->lora_bf16)
        lora_group_backward(tm, l, g, fuse ? NULL : dln, fuse ? &lr : NULL, xb, M, C);
    if (!dln) return;
    if (lr.R)
        rmsnorm_backward_fast_lr(dres, dln, &lr, x, wn, rstd, M, C);
    else
        (tm->bf16 ? rmsnorm_backward_fast : rmsnorm_backward)(dres, dwn, dln, x, wn, rstd, M, C);
}

/* the saved u linear_backward wants for module j: u_j (M,r) on the f32 branch, the group's u_g
 * (M,R) in bf16 LoRA mode */
static const float *lora_u(const ft_train_model *tm, const ft_layer_acts *a, int j) {
    return tm->lora_bf16 ? a->lug[lora_group_of[j]] : a->lu[j];
}

/* columns of the bf16 dout scratch (tm->doutb, BT rows): the widest product output, or q|k|v
 * side by side (their douts rounded in one pass: rope_round_qkv_bf16) */
static int dout_cols(const ft_config *c) {
    int HD = c->n_heads * c->head_dim, QKV = HD + 2 * c->n_kv_heads * c->head_dim;
    int mx = c->dim > QKV ? c->dim : QKV;
    return c->hidden_dim > mx ? c->hidden_dim : mx;
}

/* ------------------------------------------------------------------------------------------ */
/* one decoder layer                                                                           */

/* xmid (BT,C) = x + o_proj(attn) (+ its LoRA branch): the residual after attention. In bf16 mode
 * a->attnb holds attn as bf16. The forward and, in bf16 full / freeze fine-tuning, the backward
 * (which does not keep xmid there) call it: the same bits both times. */
static void attn_residual(ft_train_model *tm, int l, const ft_layer_acts *a, const float *x,
                          float *xmid, int BT) {
    const ft_config *c = &tm->m->cfg;
    const ft_layer *w = &tm->w.layers[l];
    int C = c->dim, HD = c->n_heads * c->head_dim;
    if (a->attnb && !tm->lA[l][3]) { /* bf16, no LoRA branch: x added in the product's epilogue */
        matmul_bf16w_forward_res(xmid, a->attnb, tm->pw[l][3], w->bo, x, BT);
        return;
    }
    linear_forward(tm, xmid, a->lu[3], a->attn, a->attnb, w->wo, w->bo, l, 3, BT, HD, C);
    if (tm->lora_bf16 && tm->lslot[3] >= 0) { /* the LoRA pass adds the residual too */
        float *const outs[FT_LORA_NMOD] = {NULL, NULL, NULL, xmid, NULL, NULL, NULL};
        lora_group_forward(tm, l, 1, outs, NULL, x, 0, NULL, a->lug[1], a->attnb, BT, HD);
    } else {
        add_inplace(xmid, x, (size_t)BT * C);
    }
}

/* y (BT,C) = layer_l(x (BT,C)), saving activations into `a`. HF order (modeling_llama/qwen2/
 * qwen3): h = x + o_proj(attn(rope(norm_qk(q_proj(n1))), rope(norm_qk(k_proj(n1))), v_proj(n1)))
 * with n1 = rmsnorm(x); y = h + down(silu(gate(n2)) * up(n2)) with n2 = rmsnorm(h). */
static void layer_forward(ft_train_model *tm, int l, ft_layer_acts *a, const float *x, float *y,
                          const int *seg, int B, int T) {
    const ft_config *c = &tm->m->cfg;
    const ft_layer *w = &tm->w.layers[l];
    int BT = B * T, C = c->dim, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim;
    int HD = H * D, KVD = KV * D, F = c->hidden_dim;
    float eps = c->rms_eps;

    /* bf16 mode: the norms' bf16 outputs (the matmul inputs) go to the scratch tm->lnb, which
     * the backward makes again from the saved input and rstd; likewise hact's bf16 copy
     * (tm->hactb). The bf16 LoRA branch keeps these three in the slot instead. attn's bf16 copy
     * is kept in every bf16 slot (a->attnb). */
    uint16_t *lnb = a->ln1b ? a->ln1b : tm->lnb;
    uint16_t *hactb = a->hactb ? a->hactb : tm->hactb;
    ft_bf16_weight *const pqkv = tm->pqkv[l];
    if (tm->bf16) { /* the layer's trained (transient) weights packed in one parallel region */
        static const int fwd[FT_LORA_NMOD] = {1, 1, 1, 1, 1, 1, 1};
        ft_bf16_weight *const *pw = tm->pw[l];
        ft_bf16_weight *const ws[FT_LORA_NMOD] = {pqkv ? pqkv : pw[0],
                                                  pqkv ? NULL : pw[1],
                                                  pqkv ? NULL : pw[2],
                                                  pw[3],
                                                  pw[4],
                                                  pw[5],
                                                  pw[6]};
        bf16_weights_prepack(ws, fwd, FT_LORA_NMOD, BT);
    }
    if (lnb)
        rmsnorm_forward_bf16(a->ln1, lnb, a->rstd1, x, w->attn_norm, BT, C, eps);
    else
        rmsnorm_forward(a->ln1, a->rstd1, x, w->attn_norm, BT, C, eps);
    /* bf16 mode: q, k, v land in f32 scratch (LoRA adds there) and are rounded into the slot as
     * bf16 (q, k after RoPE); gate, up too where a LoRA branch adds to them, else their products
     * round them into the slot themselves. qlin/klin stay f32 in the slot for qwen3's q/k
     * norm backward. Without a LoRA branch, o_proj's and down's products add the residual in
     * their epilogue (matmul_bf16w_forward_res). The attention output is kept as bf16 (o_proj's
     * input, a->attnb), in f32 too only for LoRA's f32 branch (a->attn); the dp kernel writes the
     * bf16 copy itself, the others go through the scratch tm->attn32. */
    const int bf = tm->bf16;
    float *qlin = a->qlin ? a->qlin : tm->q32, *klin = a->klin ? a->klin : tm->k32;
    float *q = bf ? tm->q32 : a->q, *k = bf ? tm->k32 : a->k, *v = bf ? tm->v32 : a->v;
    float *gate = bf ? tm->gate32 : a->gate, *up = bf ? tm->up32 : a->up;
    float *xmid = a->xmid ? a->xmid : tm->xmid32, *attn = a->attn ? a->attn : tm->attn32;
    if (pqkv) { /* one product: rows of q|k|v in the span of the scratch q32, k32, v32 (laid out
                 * for B0 x T0 rows, one after the other; this pass may have fewer rows) */
        const size_t BT0 = (size_t)tm->B0 * tm->T0;
        FT_ASSERT((size_t)BT <= BT0 && tm->k32 == tm->q32 + BT0 * HD &&
                  tm->v32 == tm->k32 + BT0 * KVD);
        matmul_bf16w_forward(tm->q32, lnb, pqkv, NULL, BT, 0);
    } else {
        linear_forward(tm, qlin, a->lu[0], a->ln1, lnb, w->wq, w->bq, l, 0, BT, C, HD);
        linear_forward(tm, klin, a->lu[1], a->ln1, lnb, w->wk, w->bk, l, 1, BT, C, KVD);
        linear_forward(tm, v, a->lu[2], a->ln1, lnb, w->wv, w->bv, l, 2, BT, C, KVD);
    }
    /* with pqkv, LoRA adds to the column windows of q|k|v's rows */
    float *const outs[FT_LORA_NMOD] = {
        qlin, pqkv ? q + HD : klin, pqkv ? q + HD + KVD : v, xmid, gate, up, y};
    /* bf16 LoRA without q/k norm: the group's terms added in the RoPE pass below */
    const int rfold = tm->lora_bf16 && bf && !c->qk_norm;
    if (tm->lora_bf16 && !rfold)
        lora_group_forward(tm, l, 0, outs, NULL, NULL, pqkv ? HD + 2 * KVD : 0, NULL, a->lug[0],
                           lnb, BT, C);
    if (c->qk_norm) { /* qwen3: per-head RMSNorm over D, before RoPE */
        rmsnorm_forward(q, a->qrstd, qlin, w->q_norm, BT * H, D, eps);
        rmsnorm_forward(k, a->krstd, klin, w->k_norm, BT * KV, D, eps);
    }
    if (bf) { /* q, k rotated and all three rounded in one pass (q, k, v are scratch here) */
        const int ldi = pqkv ? HD + 2 * KVD : 0; /* one product: q|k|v side by side in q32 */
        if (rfold) {
            ft_lora_up md[LORA_UP_MAXN];
            const int n =
                lora_group_prep(tm, l, 0, outs, NULL, NULL, ldi, a->lug[0], lnb, BT, C, md);
            lora_up_forward_rope(md, n, tm->lora_scale, BT, tm->opt.lora.r, tm->lws, a->qb, a->kb,
                                 a->vb, q, outs[1], outs[2], ldi, tm->rope_cs, H, KV, D);
        } else {
            rope_round_qkv_bf16(a->qb, a->kb, a->vb, 0, q, pqkv ? q + HD : k,
                                pqkv ? q + HD + KVD : v, ldi, tm->rope_cs, BT, H, KV, D, 0);
        }
        if (attention_flash_dp_ok(D)) { /* bf16 dot products: P rounded as autocast does; the
                                         * output straight to bf16 unless kept in f32 too */
            attention_flash_forward_dp(a->attn, a->attnb, a->lse, a->qb, a->kb, a->vb, seg, B, T, H,
                                       KV, D);
        } else {
            attention_flash_forward_bf16(attn, a->lse, a->qb, a->kb, a->vb, seg, B, T, H, KV, D);
            bf16_from_f32(a->attnb, attn, (size_t)BT * HD);
        }
    } else {
        rope_forward_cs(q, tm->rope_cs, BT, H, D);
        rope_forward_cs(k, tm->rope_cs, BT, KV, D);
        attention_flash_forward(a->attn, a->lse, a->q, a->k, a->v, seg, B, T, H, KV, D);
    }
    attn_residual(tm, l, a, x, xmid, BT);
    if (lnb) lnb = a->ln2b ? a->ln2b : tm->lnb;
    if (lnb)
        rmsnorm_forward_bf16(a->ln2, lnb, a->rstd2, xmid, w->mlp_norm, BT, C, eps);
    else
        rmsnorm_forward(a->ln2, a->rstd2, xmid, w->mlp_norm, BT, C, eps);
    /* bf16 mode: hact from the rounded gate/up, as the backward recomputes it (tm->hactb). The
     * products round gate and up as they store them (without a LoRA branch on either; the same
     * bits as an f32 product rounded after), and a targeted gate/up goes from its bf16 LoRA pass
     * straight to bf16 (the same bits again), so swiglu_forward_bf16in gives _round's hact bit
     * for bit. */
    if (a->gateb && !tm->lA[l][4] && !tm->lA[l][5]) {
        matmul_bf16w_forward_bf16(a->gateb, lnb, tm->pw[l][4], w->b_gate, BT);
        matmul_bf16w_forward_bf16(a->upb, lnb, tm->pw[l][5], w->b_up, BT);
        swiglu_forward_bf16in(a->hact, hactb, a->gateb, a->upb, (size_t)BT * F);
    } else {
        linear_forward(tm, gate, a->lu[4], a->ln2, lnb, w->w_gate, w->b_gate, l, 4, BT, C, F);
        linear_forward(tm, up, a->lu[5], a->ln2, lnb, w->w_up, w->b_up, l, 5, BT, C, F);
        if (tm->lora_bf16 && tm->lgn[2]) {
            uint16_t *const outbs[FT_LORA_NMOD] = {NULL, NULL, NULL, NULL, a->gateb, a->upb, NULL};
            /* both targeted (and no f32 hact kept): hact in the LoRA pass */
            const int hfold = tm->lslot[4] >= 0 && tm->lslot[5] >= 0 && !a->hact;
            lora_group_forward(tm, l, 2, outs, outbs, NULL, 0, hfold ? hactb : NULL, a->lug[2], lnb,
                               BT, C);
            if (tm->lslot[4] < 0) bf16_from_f32(a->gateb, gate, (size_t)BT * F);
            if (tm->lslot[5] < 0) bf16_from_f32(a->upb, up, (size_t)BT * F);
            if (!hfold) swiglu_forward_bf16in(a->hact, hactb, a->gateb, a->upb, (size_t)BT * F);
        } else if (a->gateb) {
            swiglu_forward_bf16_round(a->gateb, a->upb, hactb, a->hact, gate, up, (size_t)BT * F);
        } else {
            swiglu_forward(a->hact, a->gate, a->up, (size_t)BT * F);
        }
    }
    if (hactb && !tm->lA[l][6]) { /* bf16, no LoRA branch: xmid added in the epilogue */
        matmul_bf16w_forward_res(y, hactb, tm->pw[l][6], w->b_down, xmid, BT);
    } else {
        linear_forward(tm, y, a->lu[6], a->hact, hactb, w->w_down, w->b_down, l, 6, BT, F, C);
        if (tm->lora_bf16 && tm->lslot[6] >= 0) /* the LoRA pass adds the residual too */
            lora_group_forward(tm, l, 3, outs, NULL, xmid, 0, NULL, a->lug[3], hactb, BT, F);
        else
            add_inplace(y, xmid, (size_t)BT * C);
    }
    if (tm->bf16) bf16_weights_prepack_drop(); /* prepacked copies live within one layer's pass */
}

/*
 * Backward of layer_forward. On entry tm->dres (BT,C) holds dL/dy; on exit dL/dx.
 *   y = h + down(g)            : dh = dy (kept in dres) ; dg = dy·W_down (+LoRA)
 *   g = silu(gate) * up        : dgate, dup from swiglu_backward
 *   gate = n2·Wg^T, up = n2·Wu^T : dn2 = dgate·Wg + dup·Wu (+LoRA)
 *   n2 = rmsnorm(h)            : dh += rmsnorm_backward(dn2)
 *   h = x + o_proj(att)        : dx = dh (kept in dres) ; datt = dh·Wo (+LoRA)
 *   att = attention(q,k,v)     : dq, dk, dv from attention_backward (GQA sums over groups)
 *   q = rope(qn), k = rope(kn) : rope_backward rotates dq, dk back
 *   qn = rmsnorm_D(qlin) (qwen3): dqlin = rmsnorm_backward(dq) ; else dqlin = dq
 *   q/k/v = n1·W^T + b         : dn1 = dqlin·Wq + dklin·Wk + dv·Wv (+LoRA)
 *   n1 = rmsnorm(x)            : dx += rmsnorm_backward(dn1)
 * Parameter gradients go to tm->dw.layers[l] (NULL = frozen: skipped by the kernels).
 */
static void layer_backward(ft_train_model *tm, int l, const ft_layer_acts *a, const float *x,
                           const int *seg, int B, int T) {
    const ft_config *c = &tm->m->cfg;
    const ft_layer *w = &tm->w.layers[l];
    const ft_layer *dw = &tm->dw.layers[l];
    int BT = B * T, C = c->dim, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim;
    int HD = H * D, KVD = KV * D, F = c->hidden_dim;
    float *dres = tm->dres, *dln = tm->dln;
    /* dL/dx is only needed above the lowest trained layer or for a trained embedding; dn1 only
     * for that or for a trained input_layernorm. NULL skips the work (LoRA dA/dB still run). */
    int need_dx = l > tm->lo_layer || tm->dw.embed != NULL || (l == 0 && tm->tok_tr[0]);
    float *dn1 = need_dx || dw->attn_norm ? dln : NULL;
    if (tm->bf16) { /* the trained (transient) weights' layouts this layer's products read, packed
                     * in one parallel region: o_proj's forward one for xmid below, then the input
                     * gradients' (q/k/v only where dn1 is wanted) */
        ft_bf16_weight *const *pw = tm->pw[l], *pqkv = tm->pqkv[l];
        ft_bf16_weight *const ws[] = {a->xmid ? NULL : pw[3],
                                      dn1 ? (pqkv ? pqkv : pw[0]) : NULL,
                                      dn1 && !pqkv ? pw[1] : NULL,
                                      dn1 && !pqkv ? pw[2] : NULL,
                                      pw[3],
                                      pw[4],
                                      pw[5],
                                      pw[6]};
        static const int fwd[] = {1, 0, 0, 0, 0, 0, 0, 0};
        bf16_weights_prepack(ws, fwd, 8, BT);
    }
    /* bf16 full / freeze: the residual after attention again, as the forward made it (same
     * kernels, inputs and order: the same bits), one o_proj product instead of (BT,C) f32 per
     * layer */
    float *xmid = a->xmid;
    if (!xmid) {
        xmid = tm->xmid32;
        attn_residual(tm, l, a, x, xmid, BT);
    }

    /* MLP; bf16 mode: hact (bf16) recomputed from the saved bf16 gate/up, the same bits as the
     * forward's (an elementwise pass instead of (BT,F) bf16 kept per layer), unless kept */
    const uint16_t *hactb = a->hactb ? a->hactb : tm->hactb;
    if (a->gateb && !a->hactb)
        swiglu_forward_bf16in(NULL, tm->hactb, a->gateb, a->upb, (size_t)BT * F);
    if (!tm->bf16) zero(tm->dhact, (size_t)BT * F); /* bf16: the first product writes it */
    linear_backward(tm, tm->dhact, dw->w_down, dw->b_down, dres, a->hact, hactb, w->w_down,
                    lora_u(tm, a, 6), l, 6, BT, F, C, 1);
    /* bf16 mode: dgate, dup straight to bf16 when every reader takes bf16 (no bias gradient,
     * not the f32 LoRA branch), into the f32 scratch's memory; else f32 (rounded per product) */
    const int dgb =
        a->gateb && !dw->b_gate && !dw->b_up && (tm->lora_bf16 || tm->opt.method != FT_METHOD_LORA);
    uint16_t *dgateb = (uint16_t *)tm->dgate, *dupb = (uint16_t *)tm->dup;
    /* bf16 LoRA: the down group's dhact term goes into that bf16-out swiglu backward's pass */
    ft_lowrank lr3 = {0};
    if (tm->lora_bf16)
        lora_group_backward(tm, l, 3, dgb ? NULL : tm->dhact, dgb ? &lr3 : NULL, hactb, BT, F);
    if (lr3.R)
        swiglu_backward_bf16out_lr(dgateb, dupb, tm->dhact, &lr3, a->gateb, a->upb, BT, F);
    else if (dgb)
        swiglu_backward_bf16out(dgateb, dupb, tm->dhact, a->gateb, a->upb, (size_t)BT * F);
    else if (a->gateb) /* bf16 gate/up, vectorized exp, like the forward */
        swiglu_backward_bf16(tm->dgate, tm->dup, tm->dhact, a->gateb, a->upb, (size_t)BT * F);
    else
        swiglu_backward(tm->dgate, tm->dup, tm->dhact, a->gate, a->up, (size_t)BT * F);
    if (!tm->bf16) zero(dln, (size_t)BT * C);
    /* bf16 mode: n2, then n1, as bf16 again (the forward's bits), unless kept */
    const uint16_t *lnb = a->ln2b ? a->ln2b : tm->lnb;
    if (lnb && !a->ln2b) rmsnorm_apply_bf16(tm->lnb, xmid, a->rstd2, w->mlp_norm, BT, C);
    if (dgb) {
        const uint16_t *const dins[FT_LORA_NMOD] = {[4] = dgateb, [5] = dupb};
        lora_group_up_backward(tm, l, 2, dins, 0, lora_u(tm, a, 4), BT);
        linear_backward_bf16(tm, dln, dw->w_gate, dgateb, lnb, l, 4, BT, C, F, 1);
        linear_backward_bf16(tm, dln, dw->w_up, dupb, lnb, l, 5, BT, C, F, 0);
    } else {
        linear_backward(tm, dln, dw->w_gate, dw->b_gate, tm->dgate, a->ln2, lnb, w->w_gate,
                        lora_u(tm, a, 4), l, 4, BT, C, F, 1);
        linear_backward(tm, dln, dw->w_up, dw->b_up, tm->dup, a->ln2, lnb, w->w_up,
                        lora_u(tm, a, 5), l, 5, BT, C, F, 0);
    }
    norm_backward_lora(tm, l, 2, dres, dw->mlp_norm, dln, xmid, w->mlp_norm, a->rstd2, lnb, BT, C);

    /* attention */
    if (!tm->bf16) zero(tm->dattn, (size_t)BT * HD);
    linear_backward(tm, tm->dattn, dw->wo, dw->bo, dres, a->attn, a->attnb, w->wo, lora_u(tm, a, 3),
                    l, 3, BT, HD, C, 1);
    if (tm->lora_bf16) {
        lora_group_backward(tm, l, 1, tm->dattn, NULL, a->attnb, BT, HD);
    }
    /* bf16 mode without the f32 attn: the output the backward's delta_t = dout_t . out_t reads
     * is the kept bf16 one, widened (exact), as FlashAttention-2 and autocast's attention (whose
     * output is bf16) compute it */
    const float *attn = a->attn;
    const int dp = tm->bf16 && attention_flash_dp_ok(D); /* it widens a->attnb itself */
    if (!attn && tm->bf16 && !dp) {
        bf16_to_f32(tm->attn32, a->attnb, (size_t)BT * HD);
        attn = tm->attn32;
    }
    if (dp)
        attention_flash_backward_dp(tm->dq, tm->dk, tm->dv, tm->dattn, attn, a->attnb, a->qb, a->kb,
                                    a->vb, a->lse, seg, B, T, H, KV, D);
    else if (tm->bf16)
        attention_flash_backward_bf16(tm->dq, tm->dk, tm->dv, tm->dattn, attn, a->qb, a->kb, a->vb,
                                      a->lse, seg, B, T, H, KV, D);
    else
        attention_flash_backward(tm->dq, tm->dk, tm->dv, tm->dattn, a->attn, a->q, a->k, a->v,
                                 a->lse, seg, B, T, H, KV, D);
    /* bf16 mode without q/k norm, q/k/v bias gradients or f32 LoRA branch on q/k/v: dq, dk
     * rotated back and dq, dk, dv rounded for their products in one pass (rope_round_qkv_bf16:
     * the bits of rope_backward_cs, then linear_backward's rounding), side by side in doutb. The
     * bf16 LoRA branch's B sides read them there too, in one pass for the group
     * (lora_group_up_backward, as for gate and up): their dout is bf16, as under autocast, whose
     * lora_B product takes a bf16 gradient. */
    const int lqkv = tm->lA[l][0] || tm->lA[l][1] || tm->lA[l][2];
    const int qkvb = tm->bf16 && !c->qk_norm && !dw->bq && !dw->bk && !dw->bv &&
                     (!lqkv || tm->lora_bf16) && (dn1 || dw->wq || dw->wk || dw->wv || lqkv);
    /* with q/k/v as one product (pqkv) side by side in rows of dq|dk|dv, else one after another */
    const int N3 = HD + 2 * KVD, ldo = tm->pqkv[l] ? N3 : 0;
    uint16_t *dqb = tm->doutb, *dkb = ldo ? dqb + HD : dqb + (size_t)BT * HD,
             *dvb = ldo ? dkb + KVD : dkb + (size_t)BT * KVD;
    if (qkvb) {
        rope_round_qkv_bf16(dqb, dkb, dvb, ldo, tm->dq, tm->dk, tm->dv, 0, tm->rope_cs, BT, H, KV,
                            D, 1);
        const uint16_t *const dins[FT_LORA_NMOD] = {dqb, dkb, dvb};
        if (lqkv) lora_group_up_backward(tm, l, 0, dins, ldo, lora_u(tm, a, 0), BT);
    } else {
        rope_backward_cs(tm->dq, tm->rope_cs, BT, H, D);
        rope_backward_cs(tm->dk, tm->rope_cs, BT, KV, D);
    }
    const float *dqlin = tm->dq, *dklin = tm->dk;
    if (c->qk_norm) {
        zero(tm->dqlin, (size_t)BT * HD);
        zero(tm->dklin, (size_t)BT * KVD);
        rmsnorm_backward(tm->dqlin, dw->q_norm, tm->dq, a->qlin, w->q_norm, a->qrstd, BT * H, D);
        rmsnorm_backward(tm->dklin, dw->k_norm, tm->dk, a->klin, w->k_norm, a->krstd, BT * KV, D);
        dqlin = tm->dqlin;
        dklin = tm->dklin;
    }
    if (dn1 && !tm->bf16) zero(dn1, (size_t)BT * C);
    lnb = a->ln1b ? a->ln1b : tm->lnb;
    if (lnb && !a->ln1b) rmsnorm_apply_bf16(tm->lnb, x, a->rstd1, w->attn_norm, BT, C);
    if (qkvb && tm->pqkv[l]) { /* dW (N3,C) from dw->wq on: dw.wk, dw.wv follow it */
        tm->xpk_stale = 1;
        bf16_dout_products(tm, tm->pqkv[l], dn1, dw->wq, dqb, NULL, lnb, BT, C, N3, 1);
    } else if (qkvb) {
        linear_backward_bf16(tm, dn1, dw->wq, dqb, lnb, l, 0, BT, C, HD, 1);
        linear_backward_bf16(tm, dn1, dw->wk, dkb, lnb, l, 1, BT, C, KVD, 0);
        linear_backward_bf16(tm, dn1, dw->wv, dvb, lnb, l, 2, BT, C, KVD, 0);
    } else {
        linear_backward(tm, dn1, dw->wq, dw->bq, dqlin, a->ln1, lnb, w->wq, lora_u(tm, a, 0), l, 0,
                        BT, C, HD, 1);
        linear_backward(tm, dn1, dw->wk, dw->bk, dklin, a->ln1, lnb, w->wk, lora_u(tm, a, 1), l, 1,
                        BT, C, KVD, 0);
        linear_backward(tm, dn1, dw->wv, dw->bv, tm->dv, a->ln1, lnb, w->wv, lora_u(tm, a, 2), l, 2,
                        BT, C, KVD, 0);
    }
    norm_backward_lora(tm, l, 0, need_dx ? dres : NULL, dw->attn_norm, dn1, x, w->attn_norm,
                       a->rstd1, lnb, BT, C);
    if (tm->bf16) bf16_weights_prepack_drop(); /* before grads_ready changes the weights */
}

/* ------------------------------------------------------------------------------------------ */
/* whole model                                                                                 */

static float *resid_at(ft_train_model *tm, int l) {
    return tm->resid + (size_t)l * tm->B0 * tm->T0 * tm->m->cfg.dim;
}

static ft_layer_acts *slot_of(ft_train_model *tm, int l) {
    return &tm->slots[tm->n_slots == 1 ? 0 : l];
}

/* PEFT trainable tokens, embedding side: PEFT looks ids up in the base table with the trained
 * rows index_copy'd in (TrainableTokensLayer.get_merged_weights), i.e.
 *   resid0[i] = tokens[k] if inputs[i] == ids[k], else embed[inputs[i]]
 * so the gradient of tokens[k] is the sum of dresid0 over the positions holding ids[k]. */
static void tokens_embedding_forward(ft_train_model *tm, float *out, const int *inputs, int BT) {
    const ft_trainable *t = tm->tok_tr[0];
    if (!t) return;
    size_t C = (size_t)t->cols;
    for (int i = 0; i < BT; i++) {
        int k = tm->tok_slot[0][inputs[i]];
        if (k >= 0) memcpy(out + (size_t)i * C, t->param + (size_t)k * C, C * sizeof(float));
    }
}

static void tokens_embedding_backward(ft_train_model *tm, const float *dout, const int *inputs,
                                      int BT) {
    const ft_trainable *t = tm->tok_tr[0];
    if (!t) return;
    size_t C = (size_t)t->cols;
    for (int i = 0; i < BT; i++) {
        int k = tm->tok_slot[0][inputs[i]];
        if (k >= 0) add_inplace(t->grad + (size_t)k * C, dout + (size_t)i * C, C);
    }
}

/* The head's replaced rows for the cross-entropy kernels (NULL when none). */
static const ft_head_rows *head_rows(const ft_train_model *tm) {
    return tm->head_rows.n > 0 ? &tm->head_rows : NULL;
}

/* embedding -> layers -> final norm; leaves the normed hidden states in tm->xf. */
static void model_forward(ft_train_model *tm, const int *inputs, const int *pos, const int *seg,
                          int B, int T) {
    const ft_config *c = &tm->m->cfg;
    int BT = B * T;
    /* RoPE's angles, once for every layer (and the backward) of this micro-step */
    rope_cos_sin(tm->rope_cs, pos, tm->m->rope_inv_freq, BT, c->head_dim);
    embedding_forward(resid_at(tm, 0), inputs, tm->w.embed, BT, c->dim);
    tokens_embedding_forward(tm, resid_at(tm, 0), inputs, BT);
    for (int l = 0; l < c->n_layers; l++)
        layer_forward(tm, l, slot_of(tm, l), resid_at(tm, l), resid_at(tm, l + 1), seg, B, T);
    if (tm->bf16)
        rmsnorm_forward_bf16(tm->xf, tm->xfb, tm->rstdf, resid_at(tm, c->n_layers),
                             tm->w.final_norm, BT, c->dim, c->rms_eps);
    else
        rmsnorm_forward(tm->xf, tm->rstdf, resid_at(tm, c->n_layers), tm->w.final_norm, BT,
                        c->dim, c->rms_eps);
}

/* bf16 mode: repack the bf16 copies of trained weights (and the bf16 LoRA A stacks) when they
 * are stale — once per optimizer step, not per micro-step; frozen ones were packed once. */
static void bf16_sync(ft_train_model *tm) {
    if (!tm->bf16 || !tm->bf16_stale) return;
    tm->bf16_stale = 0;
    for (int l = 0; l < tm->m->cfg.n_layers; l++)
        for (int j = 0; j < FT_LORA_NMOD; j++)
            if (tm->pw_trained[l][j]) bf16_weight_refresh(tm->pw[l][j]);
    if (tm->phead_trained) bf16_weight_refresh(tm->phead);
    if (tm->lora_bf16) { /* A_g = the group's A stacked, as bf16 */
        int r = tm->opt.lora.r;
        for (int l = 0; l < tm->m->cfg.n_layers; l++)
            for (int j = 0; j < FT_LORA_NMOD; j++) {
                if (tm->lslot[j] < 0) continue;
                int in, out;
                ft_lora_module_shape(&tm->m->cfg, j, &in, &out);
                bf16_from_f32(tm->lAg[l][lora_group_of[j]] + (size_t)tm->lslot[j] * r * in,
                              tm->lA[l][j], (size_t)r * in);
            }
    }
}

static const float *head_weight(const ft_train_model *tm) {
    return tm->w.lm_head ? tm->w.lm_head : tm->w.embed;
}

/* Check shapes and token ids; fill default positions. */
static ft_status check_batch(ft_train_model *tm, const int *inputs, const int *labels,
                             const int **pos, int B, int T) {
    const ft_config *c = &tm->m->cfg;
    if (B < 1 || T < 1 || B > tm->B0 || T > tm->T0)
        return ft_errorf(FT_ERR_ARG, "micro-batch %dx%d does not fit the %dx%d it was sized for", B,
                         T, tm->B0, tm->T0);
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= c->vocab_size)
            return ft_errorf(FT_ERR_ARG, "input token %d at row %d, col %d outside [0,%d)",
                             inputs[i], i / T, i % T, c->vocab_size);
        if (labels[i] != FT_IGNORE_INDEX && (labels[i] < 0 || labels[i] >= c->vocab_size))
            return ft_errorf(FT_ERR_ARG, "label %d at row %d, col %d is neither -100 nor in [0,%d)",
                             labels[i], i / T, i % T, c->vocab_size);
    }
    if (!*pos) {
        for (int i = 0; i < B * T; i++)
            tm->pos_default[i] = i % T;
        *pos = tm->pos_default;
    }
    return FT_OK;
}

/* a layer's seven linear weights (or their gradients) in module order j (FT_LORA_NMOD) */
static void layer_linears(const ft_layer *w, const float *out[FT_LORA_NMOD]) {
    const float *all[FT_LORA_NMOD] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    memcpy(out, all, sizeof all);
}

/* Before layer l's backward, with layer_grads: its gradients start at zero — all of them, or
 * with dw_write all but the linear weights', which their products write */
static void zero_layer_grads(ft_train_model *tm, int l) {
    if (!tm->dw_write) {
        zero(tm->layer_grads, tm->layer_grads_n);
        return;
    }
    const float *lin[FT_LORA_NMOD];
    layer_linears(&tm->dw.layers[l], lin);
    for (int k = 0; k < tm->n_tr; k++) {
        if (tm->tr_layer[k] != l) continue;
        int written = 0;
        for (int j = 0; j < FT_LORA_NMOD; j++)
            written |= tm->tr[k].grad == lin[j];
        if (!written) zero(tm->tr[k].grad, tm->tr[k].numel);
    }
}

/* grad_ready with the trained tensors of layer l (-1: the non-layer ones), one call */
static void grads_ready(ft_train_model *tm, int l) {
    int n = 0;
    for (int k = 0; k < tm->n_tr; k++)
        if (tm->tr_layer[k] == l) tm->ready[n++] = k;
    if (n) tm->opt.grad_ready(tm->opt.grad_ctx, tm->ready, n);
}

ft_status ft_train_micro_step(ft_train_model *tm, const int *inputs, const int *labels,
                              const int *pos, const int *seg, int B, int T, float loss_scale,
                              double *nll_sum, int64_t *n_targets) {
    ft_status st = check_batch(tm, inputs, labels, &pos, B, T);
    if (st != FT_OK) return st;
    const ft_config *c = &tm->m->cfg;
    int BT = B * T, C = c->dim, L = c->n_layers;
    /* one dropout key per micro-step; the stream advances even when dropout is off so the
     * state sequence does not depend on the configuration */
    uint64_t key = ft_rng_next(&tm->rng);
    tm->drop_key = key;
    tm->dropout_on = tm->opt.method == FT_METHOD_LORA && tm->opt.lora.dropout > 0;

    bf16_sync(tm);
    model_forward(tm, inputs, pos, seg, B, T);

    /* loss and head: dxf = d(scale*NLL)/dxf, d(head) added to lm_head or the tied embedding */
    float *dhead = tm->w.lm_head ? tm->dw.lm_head : tm->dw.embed;
    int need_dx = tm->lo_layer < L || tm->dw.final_norm;
    if (need_dx) zero(tm->dxf, (size_t)BT * C);
    /* trainable tokens: the head's logits for those ids use the trained rows, whose gradient
     * (head part) is added into their trainable's grad by the kernel */
    const ft_head_rows *hr = head_rows(tm);
    if (tm->bf16) {
        *nll_sum = crossentropy_bf16_rows_forward_backward(
            need_dx ? tm->dxf : NULL, dhead, n_targets, tm->logits, tm->dlogb, tm->xfb, tm->xf,
            tm->phead, tm->xpk, hr, labels, loss_scale, BT, C, c->vocab_size, tm->chunk,
            tm->dlog_rows);
        tm->xpk_stale = 1; /* it held the head's rows */
    } else {
        *nll_sum = crossentropy_rows_forward_backward(
            need_dx ? tm->dxf : NULL, dhead, n_targets, tm->logits, tm->xf, head_weight(tm), hr,
            labels, loss_scale, BT, C, c->vocab_size, tm->chunk);
    }
    if (need_dx) {
        /* xf = rmsnorm(resid[L]) */
        zero(tm->dres, (size_t)BT * C);
        rmsnorm_backward(tm->dres, tm->dw.final_norm, tm->dxf, resid_at(tm, L), tm->w.final_norm,
                         tm->rstdf, BT, C);
        for (int l = L - 1; l >= tm->lo_layer; l--) {
            ft_layer_acts *a = slot_of(tm, l);
            /* checkpointing: recompute this layer's activations from its saved input (the slot
             * still holds the last layer's from the forward) */
            if (tm->n_slots == 1 && l != L - 1)
                layer_forward(tm, l, a, resid_at(tm, l), resid_at(tm, l + 1), seg, B, T);
            if (tm->layer_grads) zero_layer_grads(tm, l);
            layer_backward(tm, l, a, resid_at(tm, l), seg, B, T);
            if (tm->layer_grads) grads_ready(tm, l);
        }
        /* resid[0] = embed[inputs] : dembed[id] += dres (the tied head part was added above) */
        if (tm->dw.embed && tm->lo_layer == 0)
            embedding_backward(tm->dw.embed, tm->dres, inputs, BT, C);
        /* trained token rows: their embedding part (their head part was added above) */
        if (tm->lo_layer == 0) tokens_embedding_backward(tm, tm->dres, inputs, BT);
    }
    if (tm->layer_grads) {
        grads_ready(tm, -1); /* embedding, final norm, head: complete only now */
        tm->bf16_stale = 1;  /* the trained weights were updated */
    }
    tm->dropout_on = 0;
    return FT_OK;
}

ft_status ft_train_eval(ft_train_model *tm, const int *inputs, const int *labels, const int *pos,
                        const int *seg, int B, int T, double *nll_sum, int64_t *n_targets) {
    ft_status st = check_batch(tm, inputs, labels, &pos, B, T);
    if (st != FT_OK) return st;
    const ft_config *c = &tm->m->cfg;
    tm->dropout_on = 0;
    bf16_sync(tm);
    model_forward(tm, inputs, pos, seg, B, T);
    if (tm->bf16)
        *nll_sum = crossentropy_bf16_rows_forward_backward(
            NULL, NULL, n_targets, tm->logits, NULL, tm->xfb, tm->xf, tm->phead, NULL,
            head_rows(tm), labels, 0.f, B * T, c->dim, c->vocab_size, tm->chunk, 0);
    else
        *nll_sum = crossentropy_rows_forward_backward(NULL, NULL, n_targets, tm->logits, tm->xf,
                                                      head_weight(tm), head_rows(tm), labels, 0.f,
                                                      B * T, c->dim, c->vocab_size, tm->chunk);
    return FT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* buffers                                                                                     */

typedef struct {
    float *base; /* NULL while counting */
    size_t n;
} bump;

static float *take(bump *b, size_t n) {
    float *p = b->base ? b->base + b->n : NULL;
    b->n += (n + 15) & ~(size_t)15; /* keep every tensor 64-byte aligned */
    return p;
}

/* n bf16 values from the same buffer */
static uint16_t *take_bf16(bump *b, size_t n) { return (uint16_t *)take(b, (n + 1) / 2); }

/* Lay out (or, with b->base NULL, just count) every activation and scratch tensor. */
static void plan_buffers(ft_train_model *tm, bump *b) {
    const ft_config *c = &tm->m->cfg;
    size_t B = (size_t)tm->B0, T = (size_t)tm->T0, BT = B * T;
    size_t C = (size_t)c->dim, H = (size_t)c->n_heads, KV = (size_t)c->n_kv_heads,
           D = (size_t)c->head_dim, F = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t HD = H * D, KVD = KV * D, r = (size_t)tm->opt.lora.r;
    int lora = tm->opt.method == FT_METHOD_LORA;
    /* bf16 mode keeps the f32 matmul inputs ln1, ln2, hact, attn only for LoRA's f32 branch
     * (the one with dropout). Per layer it saves, besides the residual stream: rstd1/rstd2 and
     * lse, q, k (after RoPE), v, gate, up, attn as bf16, xmid as f32 with LoRA (made again in
     * backward from x and attn otherwise, attn_residual); the other bf16 matmul
     * inputs (norm outputs, hact) are made again in backward, in scratch shared by all layers,
     * except on the bf16 LoRA branch, which keeps them per layer (+165 MB at SmolLM's shape,
     * B 4 x T 256; its peak stays under 0.4 of PyTorch's, and the step is ~2% faster). */
    int keep32 = !tm->bf16 || (lora && !tm->lora_bf16), bf = tm->bf16;

    tm->resid = take(b, (L + 1) * BT * C);
    for (int s = 0; s < tm->n_slots; s++) {
        ft_layer_acts *a = &tm->slots[s];
        a->ln1 = keep32 ? take(b, BT * C) : NULL;
        a->rstd1 = take(b, BT);
        /* bf16 mode: q, k, v only as bf16 (qlin/klin f32 for the q/k norm backward) */
        a->qlin = !bf || c->qk_norm ? take(b, BT * HD) : NULL;
        a->klin = !bf || c->qk_norm ? take(b, BT * KVD) : NULL;
        if (c->qk_norm) {
            a->qrstd = take(b, BT * H);
            a->q = bf ? NULL : take(b, BT * HD);
            a->krstd = take(b, BT * KV);
            a->k = bf ? NULL : take(b, BT * KVD);
        } else {
            a->qrstd = a->krstd = NULL;
            a->q = a->qlin;
            a->k = a->klin;
        }
        a->v = bf ? NULL : take(b, BT * KVD);
        a->qb = bf ? take_bf16(b, BT * HD) : NULL;
        a->kb = bf ? take_bf16(b, BT * KVD) : NULL;
        a->vb = bf ? take_bf16(b, BT * KVD) : NULL;
        a->lse = take(b, B * H * T);
        /* bf16 mode: attn kept as bf16 (o_proj's input), in f32 only for LoRA's f32 branch; the
         * attention backward's delta reads the bf16 copy (see layer_backward): half the memory
         * of f32, and no rounding pass again in backward. Full / freeze fine-tuning makes xmid
         * again in backward (one o_proj product, ~2% of a SmolLM-shape step) to save (BT,C) f32
         * per layer: kept, it took the peak to 0.49-0.50 of PyTorch's; LoRA keeps it (its
         * memory is far below the budget) */
        a->attn = keep32 ? take(b, BT * HD) : NULL;
        a->attnb = bf ? take_bf16(b, BT * HD) : NULL;
        a->xmid = bf && !lora ? NULL : take(b, BT * C);
        a->ln2 = keep32 ? take(b, BT * C) : NULL;
        a->rstd2 = take(b, BT);
        a->gate = bf ? NULL : take(b, BT * F);
        a->up = bf ? NULL : take(b, BT * F);
        a->gateb = bf ? take_bf16(b, BT * F) : NULL;
        a->upb = bf ? take_bf16(b, BT * F) : NULL;
        a->hact = keep32 ? take(b, BT * F) : NULL;
        for (int j = 0; j < FT_LORA_NMOD; j++)
            a->lu[j] = lora && !tm->lora_bf16 && (tm->opt.lora.targets & (1u << j))
                           ? take(b, BT * r)
                           : NULL;
        for (int g = 0; g < FT_LORA_NGROUP; g++)
            a->lug[g] = tm->lora_bf16 && tm->lgn[g] ? take(b, BT * (size_t)tm->lgn[g] * r) : NULL;
        /* the bf16 LoRA branch keeps the other three bf16 matmul inputs (see ft_layer_acts) */
        int kb = tm->lora_bf16;
        a->ln1b = kb ? take_bf16(b, BT * C) : NULL;
        a->ln2b = kb ? take_bf16(b, BT * C) : NULL;
        a->hactb = kb ? take_bf16(b, BT * F) : NULL;
    }
    tm->xf = take(b, BT * C);
    tm->rstdf = take(b, BT);
    tm->rope_cs = take(b, BT * D);
    tm->doutb = tm->doutbT = tm->xfb = tm->dlogb = NULL;
    if (tm->bf16) {
        size_t mx = (size_t)dout_cols(c);
        tm->doutb = take_bf16(b, BT * mx);
        tm->doutbT = lora ? NULL : take_bf16(b, BT * mx);
        tm->xfb = take_bf16(b, BT * C);
        tm->dlogb = take_bf16(b, (size_t)tm->dlog_rows * (size_t)c->vocab_size);
    }
    tm->dres = take(b, BT * C);
    tm->dxf = take(b, BT * C);
    const size_t dln_at = b->n; /* start of the scratch the head's logits may share (below) */
    tm->dln = take(b, BT * C);
    tm->dq = take(b, BT * HD);
    tm->dk = take(b, BT * KVD);
    tm->dv = take(b, BT * KVD);
    tm->dqlin = c->qk_norm ? take(b, BT * HD) : NULL;
    tm->dklin = c->qk_norm ? take(b, BT * KVD) : NULL;
    tm->dattn = take(b, BT * HD);
    tm->dgate = take(b, BT * F);
    tm->dup = take(b, BT * F);
    tm->dhact = take(b, BT * F);
    /* The head's chunk of logits (f32, chunk x V) shares the backward's scratch from dln to
     * dhact when it fits: that scratch (and the forward's, which aliases it) is idle while the
     * head runs, after the forward and before the layers' backward, and the logits are dead once
     * the head is done. 25 MB less at SmolLM's shape (128 x 49152 in 27.6 MB). */
    const size_t logits_n = (size_t)tm->chunk * (size_t)c->vocab_size;
    tm->logits = b->n - dln_at >= logits_n ? tm->dln : take(b, logits_n);
    tm->gate32 = tm->bf16 ? tm->dgate : NULL; /* forward scratch (see train_internal.h) */
    tm->up32 = tm->bf16 ? tm->dup : NULL;
    tm->hactb = tm->bf16 ? take_bf16(b, BT * F) : NULL;
    tm->q32 = bf ? tm->dq : NULL; /* forward scratch (see train_internal.h) */
    tm->k32 = bf ? tm->dk : NULL;
    tm->v32 = bf ? tm->dv : NULL;
    tm->lnb = bf ? take_bf16(b, BT * C) : NULL;
    tm->attn32 = bf && !keep32 ? take(b, BT * HD) : NULL;
    tm->xmid32 = bf && !lora ? take(b, BT * C) : NULL;
    tm->lxd = tm->ldx = tm->lv = tm->ldo = tm->ldu = NULL;
    tm->lws = tm->ldug = tm->ldAg = NULL;
    tm->ldugb = NULL;
    tm->lAp = NULL;
    if (tm->lora_bf16) {
        size_t maxK = C > HD ? C : HD;
        if (F > maxK) maxK = F;
        size_t maxN = C > HD ? C : HD;
        if (F > maxN) maxN = F;
        size_t wsg[FT_LORA_NGROUP] = {0}, ws = 0; /* a group's B sides run in one pass */
        for (int j = 0; j < FT_LORA_NMOD; j++) {
            int in, out;
            ft_lora_module_shape(c, j, &in, &out);
            wsg[lora_group_of[j]] += lora_up_ws_floats((int)BT, out, (int)r);
        }
        for (int g = 0; g < FT_LORA_NGROUP; g++)
            ws = wsg[g] > ws ? wsg[g] : ws;
        tm->lws = take(b, ws);
        tm->ldug = take(b, BT * 3 * r);
        tm->ldugb = take_bf16(b, BT * 3 * r);
        tm->ldAg = take(b, 3 * r * maxK);
        tm->lAp = (uint32_t *)take(b, lowrank_pack_words((int)(3 * r), (int)maxK));
    } else if (lora) {
        size_t maxK = C > HD ? C : HD, maxN = C > HD ? C : HD;
        if (F > maxK) maxK = F;
        if (F > maxN) maxN = F;
        tm->lxd = take(b, BT * maxK);
        tm->ldx = take(b, BT * maxK);
        tm->lv = take(b, BT * maxN);
        tm->ldo = take(b, BT * maxN);
        tm->ldu = take(b, BT * r);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* trainable tensors                                                                           */

/* One model tensor as seen by the selection: HF name, where the step reads it from, and where
 * its gradient pointer lives. */
typedef struct {
    char name[128];
    int layer; /* -1: global */
    int rows, cols;
    float *src;
    float **wslot, **dslot;
} model_tensor;

static int list_model_tensors(ft_train_model *tm, model_tensor *out) {
    ft_model *m = tm->m;
    const ft_config *c = &m->cfg;
    int n = 0;
#define FT_X_GLOBAL(f, hf, r, k, present)                                                          \
    if (present) {                                                                                 \
        model_tensor *t = &out[n++];                                                               \
        snprintf(t->name, sizeof t->name, "%s", hf);                                               \
        t->layer = -1, t->rows = (r), t->cols = (k), t->src = m->w.f;                              \
        t->wslot = &tm->w.f, t->dslot = &tm->dw.f;                                                 \
    }
    FT_GLOBAL_TENSORS(FT_X_GLOBAL)
#undef FT_X_GLOBAL
    for (int l = 0; l < c->n_layers; l++) {
#define FT_X_LAYER(f, hf, r, k, present)                                                           \
    if (present) {                                                                                 \
        model_tensor *t = &out[n++];                                                               \
        snprintf(t->name, sizeof t->name, "model.layers.%d.%s", l, hf);                            \
        t->layer = l, t->rows = (r), t->cols = (k), t->src = m->w.layers[l].f;                     \
        t->wslot = &tm->w.layers[l].f, t->dslot = &tm->dw.layers[l].f;                             \
    }
        FT_LAYER_TENSORS(FT_X_LAYER)
#undef FT_X_LAYER
    }
    return n;
}

/* HF Trainer's get_decay_parameter_names: no decay when the lower-cased name matches one of
 * "bias", "layernorm", "rmsnorm", "(^|\.)norm($|\.)", "_norm($|\.)". */
static int decays(const char *name) {
    char low[192];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof low; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[i] = 0;
    if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm")) return 0;
    for (const char *p = low; (p = strstr(p, "norm")) != NULL; p++) {
        char before = p == low ? '.' : p[-1], after = p[4];
        if ((before == '.' || before == '_') && (after == 0 || after == '.')) return 0;
    }
    return 1;
}

/* Axolotl's unfrozen_parameters semantics: every '.' is a literal period, and the pattern must
 * match at the start of the name (Python re.match). Row ranges ("name[:N]") are not supported. */
static ft_status compile_unfrozen(pcre2_code **out, const char *pat) {
    size_t n = strlen(pat);
    if (n > 0 && pat[n - 1] == ']') {
        const char *lb = strrchr(pat, '[');
        if (lb && strchr(lb, ':'))
            return ft_errorf(FT_ERR_UNSUPPORTED,
                             "unfrozen_parameters: row ranges like '%s' are not supported", pat);
    }
    char *esc = malloc(2 * n + 1);
    if (!esc) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (pat[i] == '.') esc[k++] = '\\';
        esc[k++] = pat[i];
    }
    esc[k] = 0;
    int err;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)esc, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &off, NULL);
    free(esc);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ft_errorf(FT_ERR_ARG, "unfrozen_parameters: bad regex '%s' at offset %zu: %s", pat,
                         (size_t)off, (const char *)msg);
    }
    return FT_OK;
}

/* Mark which model tensors match any of the patterns. */
static ft_status match_unfrozen(const ft_train_options *opt, const model_tensor *mt, int n,
                                int *sel) {
    if (opt->n_unfrozen < 1 || !opt->unfrozen)
        return ft_errorf(FT_ERR_ARG, "unfrozen_parameters: freeze needs at least one pattern");
    ft_status st = FT_OK;
    pcre2_match_data *md = NULL;
    /* a tensor name is a few dozen characters: a pattern that needs more than 100000 steps on one
     * backtracks exponentially, and PCRE2's default limit (10 million) would take seconds per
     * tensor and then read as "no match" */
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!mc || pcre2_set_match_limit(mc, 100000)) {
        pcre2_match_context_free(mc);
        return ft_errorf(FT_ERR_NOMEM, "out of memory");
    }
    for (int p = 0; p < opt->n_unfrozen && st == FT_OK; p++) {
        pcre2_code *re = NULL;
        st = compile_unfrozen(&re, opt->unfrozen[p]);
        if (st != FT_OK) break;
        md = pcre2_match_data_create_from_pattern(re, NULL);
        if (!md) {
            pcre2_code_free(re);
            pcre2_match_context_free(mc);
            return ft_errorf(FT_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < n && st == FT_OK; i++) {
            int rc = pcre2_match(re, (PCRE2_SPTR)mt[i].name, PCRE2_ZERO_TERMINATED, 0, 0, md, mc);
            if (rc >= 0)
                sel[i] = 1;
            else if (rc != PCRE2_ERROR_NOMATCH)
                st = ft_errorf(FT_ERR_ARG,
                               "unfrozen_parameters: '%s' gave up on '%s' (PCRE2's "
                               "match limit)",
                               opt->unfrozen[p], mt[i].name);
        }
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }
    pcre2_match_context_free(mc);
    if (st != FT_OK) return st;
    for (int i = 0; i < n; i++)
        if (sel[i]) return FT_OK;
    char list[512];
    size_t k = 0;
    list[0] = 0;
    for (int p = 0; p < opt->n_unfrozen && k < sizeof list; p++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s'", p ? ", " : "", opt->unfrozen[p]);
    return ft_errorf(FT_ERR_ARG, "unfrozen_parameters: no model tensor matches %s", list);
}

static ft_status setup_full_or_freeze(ft_train_model *tm, const ft_train_options *opt) {
    ft_model *m = tm->m;
    const ft_config *c = &m->cfg;
    int cap = 3 + 32 * c->n_layers;
    model_tensor *mt = calloc((size_t)cap, sizeof *mt);
    int *sel = calloc((size_t)cap, sizeof *sel);
    ft_status st = FT_OK;
    if (!mt || !sel) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    int n = list_model_tensors(tm, mt);
    FT_ASSERT(n <= cap);
    if (tm->opt.method == FT_METHOD_FULL) {
        for (int i = 0; i < n; i++)
            sel[i] = 1;
    } else {
        st = match_unfrozen(opt, mt, n, sel);
        if (st != FT_OK) goto done;
    }
    int n_sel = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (sel[i]) n_sel++, total += (size_t)mt[i].rows * (size_t)(mt[i].cols ? mt[i].cols : 1);
    tm->tr = calloc((size_t)n_sel, sizeof *tm->tr);
    tm->model_src = calloc((size_t)n_sel, sizeof *tm->model_src);
    if (!tm->tr || !tm->model_src) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (tm->opt.method == FT_METHOD_FULL) {
        tm->params = m->params; /* full: the model's own buffer, updated in place */
        tm->n_params = m->n_params;
        tm->params_owned = 0;
    } else {
        tm->params = ft_calloc(total, sizeof(float));
        tm->n_params = total;
        tm->params_owned = 1;
    }
    /* gradients: one buffer laid out as the params, or with grad_ready the non-layer tensors
     * followed by one layer's worth that every layer's tensors share (same offsets in it) */
    size_t n_grads = tm->n_params, g_global = 0, g_layer = 0;
    if (opt->grad_ready) {
        size_t per[FT_MAX_LAYERS] = {0};
        for (int i = 0; i < n; i++) {
            if (!sel[i]) continue;
            size_t numel = (size_t)mt[i].rows * (size_t)(mt[i].cols ? mt[i].cols : 1);
            if (mt[i].layer < 0)
                g_global += numel;
            else if ((per[mt[i].layer] += numel) > g_layer)
                g_layer = per[mt[i].layer];
        }
        n_grads = g_global + g_layer;
    }
    tm->grads = ft_calloc(n_grads, sizeof(float));
    tm->n_grads = n_grads;
    tm->tr_layer = calloc((size_t)n_sel, sizeof *tm->tr_layer);
    tm->ready = calloc((size_t)n_sel + 1, sizeof *tm->ready);
    if (!tm->params || !tm->grads || !tm->tr_layer || !tm->ready) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory for %zu trainable floats", tm->n_params);
        goto done;
    }
    tm->layer_grads = opt->grad_ready ? tm->grads + g_global : NULL;
    tm->layer_grads_n = g_layer;
    size_t off = 0, goff = 0, loff = 0;
    int cur_layer = -1;
    tm->lo_layer = c->n_layers;
    for (int i = 0; i < n; i++) {
        if (!sel[i]) continue;
        tm->model_src[tm->n_tr] = mt[i].src;
        tm->tr_layer[tm->n_tr] = mt[i].layer;
        ft_trainable *t = &tm->tr[tm->n_tr++];
        size_t numel = (size_t)mt[i].rows * (size_t)(mt[i].cols ? mt[i].cols : 1);
        snprintf(t->name, sizeof t->name, "%s", mt[i].name);
        t->rows = mt[i].rows, t->cols = mt[i].cols, t->numel = numel;
        t->decay = decays(t->name);
        if (tm->opt.method == FT_METHOD_FULL) {
            FT_ASSERT(mt[i].src >= m->params && mt[i].src + numel <= m->params + m->n_params);
            t->param = mt[i].src;
            t->grad = tm->grads + (mt[i].src - m->params);
        } else {
            t->param = tm->params + off;
            t->grad = tm->grads + off;
            memcpy(t->param, mt[i].src, numel * sizeof(float));
            *mt[i].wslot = t->param;
            off += numel;
        }
        if (opt->grad_ready) { /* list_model_tensors gives globals first, then layer by layer */
            if (mt[i].layer < 0) {
                t->grad = tm->grads + goff;
                goff += numel;
            } else {
                if (mt[i].layer != cur_layer) cur_layer = mt[i].layer, loff = 0;
                t->grad = tm->layer_grads + loff;
                loff += numel;
            }
        }
        *mt[i].dslot = t->grad;
        if (mt[i].layer >= 0 && mt[i].layer < tm->lo_layer) tm->lo_layer = mt[i].layer;
        if (mt[i].src == m->w.embed) tm->lo_layer = 0; /* embedding grads need every layer */
    }
done:
    free(mt);
    free(sel);
    return st;
}

/* PEFT trainable tokens (LoRA only): check and copy the ids, build the id -> row maps.
 * Tied embeddings: PEFT ties the lm_head adapter to embed_tokens' (other.py, _set_trainable with
 * tied_adapter), so lm_head ids, if given, must equal the embedding's and add no tensor. */
static ft_status setup_tokens(ft_train_model *tm, const ft_train_options *opt) {
    const ft_config *c = &tm->m->cfg;
    const ft_train_options *o = opt;
    const int *ids[2] = {o->tok_embed, o->tok_head};
    int n[2] = {o->n_tok_embed, o->n_tok_head};
    static const char *const what[2] = {"embed_tokens", "lm_head"};
    for (int e = 0; e < 2; e++) {
        if (n[e] < 0 || (n[e] > 0 && !ids[e]))
            return ft_errorf(FT_ERR_ARG, "trainable tokens of %s: bad list", what[e]);
        for (int k = 0; k < n[e]; k++) {
            if (ids[e][k] < 0 || ids[e][k] >= c->vocab_size)
                return ft_errorf(FT_ERR_ARG,
                                 "trainable tokens of %s: id %d is outside the vocabulary [0,%d)",
                                 what[e], ids[e][k], c->vocab_size);
            for (int q = 0; q < k; q++)
                if (ids[e][q] == ids[e][k])
                    return ft_errorf(FT_ERR_ARG, "trainable tokens of %s: id %d appears twice",
                                     what[e], ids[e][k]);
        }
    }
    if (c->tie_embeddings && n[1]) {
        int same = n[0] == n[1];
        for (int k = 0; same && k < n[0]; k++)
            same = ids[0][k] == ids[1][k];
        if (!same)
            return ft_errorf(FT_ERR_UNSUPPORTED,
                             "trainable tokens: the model ties lm_head to embed_tokens, so lm_head "
                             "takes embed_tokens' ids (give the same list, or embed_tokens only)");
        n[1] = 0;
    }
    for (int e = 0; e < 2; e++) {
        if (!n[e]) continue;
        tm->n_tok[e] = n[e];
        tm->tok_ids[e] = malloc(sizeof(int) * (size_t)n[e]);
        tm->tok_slot[e] = malloc(sizeof(int) * (size_t)c->vocab_size);
        if (!tm->tok_ids[e] || !tm->tok_slot[e]) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        memcpy(tm->tok_ids[e], ids[e], sizeof(int) * (size_t)n[e]);
        for (int v = 0; v < c->vocab_size; v++)
            tm->tok_slot[e][v] = -1;
        for (int k = 0; k < n[e]; k++)
            tm->tok_slot[e][ids[e][k]] = k;
    }
    return FT_OK;
}

/* LoRA: A (r,in) and B (out,r) per targeted module in one buffer, in PEFT's parameter order
 * (layer, then q k v o gate up down, A before B). A ~ U(-1/sqrt(in), 1/sqrt(in)) which is
 * kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/in) = 1/sqrt(in); B = 0. */
static ft_status setup_lora(ft_train_model *tm, const ft_train_options *opt) {
    const ft_config *c = &tm->m->cfg;
    const ft_lora_config *lc = &tm->opt.lora;
    if (lc->r < 1) return ft_errorf(FT_ERR_ARG, "lora_r must be >= 1 (got %d)", lc->r);
    if (!(lc->dropout >= 0 && lc->dropout < 1))
        return ft_errorf(FT_ERR_ARG, "lora_dropout must be in [0,1) (got %g)", lc->dropout);
    if (!(lc->targets & FT_LORA_ALL_LINEAR) || (lc->targets & ~(unsigned)FT_LORA_ALL_LINEAR))
        return ft_errorf(FT_ERR_ARG, "lora_target_modules: no valid target module (bits 0x%x)",
                         lc->targets);
    /* PEFT: scaling = lora_alpha / r (or / math.sqrt(r)) in Python floats, applied as f32 */
    tm->lora_scale = (float)(lc->use_rslora ? (double)lc->alpha / sqrt((double)lc->r)
                                            : (double)lc->alpha / (double)lc->r);
    ft_status st = setup_tokens(tm, opt);
    if (st != FT_OK) return st;
    int n = 0;
    size_t total = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < FT_LORA_NMOD; j++)
            if (lc->targets & (1u << j)) {
                int in, out;
                ft_lora_module_shape(c, j, &in, &out);
                n += 2;
                total += (size_t)lc->r * ((size_t)in + (size_t)out);
            }
    for (int e = 0; e < 2; e++)
        if (tm->n_tok[e]) n++, total += (size_t)tm->n_tok[e] * (size_t)c->dim;
    tm->tr = calloc((size_t)n, sizeof *tm->tr);
    tm->params = ft_calloc(total, sizeof(float));
    tm->grads = ft_calloc(total, sizeof(float));
    if (!tm->tr || !tm->params || !tm->grads)
        return ft_errorf(FT_ERR_NOMEM, "out of memory for %zu LoRA floats", total);
    tm->n_params = tm->n_grads = total;
    tm->params_owned = 1;
    uint64_t init_rng = tm->opt.seed ^ 0x4c6f5241496e6974ull; /* "LoRAInit" */
    size_t off = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < FT_LORA_NMOD; j++) {
            if (!(lc->targets & (1u << j))) continue;
            int in, out;
            ft_lora_module_shape(c, j, &in, &out);
            for (int ab = 0; ab < 2; ab++) {
                ft_trainable *t = &tm->tr[tm->n_tr++];
                snprintf(t->name, sizeof t->name,
                         "base_model.model.model.layers.%d.%s.lora_%c.weight", l,
                         ft_lora_module_name(j), ab ? 'B' : 'A');
                t->rows = ab ? out : lc->r;
                t->cols = ab ? lc->r : in;
                t->numel = (size_t)t->rows * (size_t)t->cols;
                t->param = tm->params + off;
                t->grad = tm->grads + off;
                t->decay = decays(t->name);
                off += t->numel;
            }
            ft_trainable *ta = &tm->tr[tm->n_tr - 2], *tb = &tm->tr[tm->n_tr - 1];
            float bound = 1.0f / sqrtf((float)in);
            for (size_t i = 0; i < ta->numel; i++)
                ta->param[i] = (2.0f * ft_rng_uniform(ft_rng_next(&init_rng)) - 1.0f) * bound;
            tm->lA[l][j] = ta->param, tm->dlA[l][j] = ta->grad;
            tm->lB[l][j] = tb->param, tm->dlB[l][j] = tb->grad;
        }
    /* trainable tokens after the LoRA pairs; PEFT's init_weights=True: the base rows */
    static const char *const tok_names[2] = {
        "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
        "base_model.model.lm_head.token_adapter.trainable_tokens_delta"};
    for (int e = 0; e < 2; e++) {
        if (!tm->n_tok[e]) continue;
        ft_trainable *t = &tm->tr[tm->n_tr++];
        snprintf(t->name, sizeof t->name, "%s", tok_names[e]);
        t->rows = tm->n_tok[e];
        t->cols = c->dim;
        t->numel = (size_t)t->rows * (size_t)t->cols;
        t->param = tm->params + off;
        t->grad = tm->grads + off;
        t->decay = decays(t->name);
        off += t->numel;
        const float *base = e ? tm->m->w.lm_head : tm->m->w.embed;
        for (int k = 0; k < t->rows; k++)
            memcpy(t->param + (size_t)k * c->dim, base + (size_t)tm->tok_ids[e][k] * c->dim,
                   (size_t)c->dim * sizeof(float));
        tm->tok_tr[e] = t;
    }
    /* the head's replaced rows: lm_head's own when untied and given, else the tied embedding's */
    int he = c->tie_embeddings ? 0 : 1;
    if (tm->tok_tr[he])
        tm->head_rows = (ft_head_rows){.ids = tm->tok_ids[he],
                                       .rows = tm->tok_tr[he]->param,
                                       .drows = tm->tok_tr[he]->grad,
                                       .n = tm->n_tok[he]};
    tm->lo_layer = 0;
    return FT_OK;
}

/* A frozen weight w (N,K) of the model, packed as pw for products of M rows: when bf16 holds
 * every value exactly (a bf16 checkpoint), pack it now and give its f32 pages back to the OS
 * (they read as zero until restore_released). Returns 1 when released. */
static int release_frozen(ft_train_model *tm, ft_bf16_weight *pw, const float *w, int K, int N,
                          int M) {
    size_t n = (size_t)K * N;
    if (tm->opt.bf16_keep_f32 || !n || !bf16_exact(w, n) || !bf16_weight_detach(pw, M)) return 0;
    ft_drop_pages((void *)(uintptr_t)w, n * sizeof(float));
    return 1;
}

/* Write the released frozen weights back into the model's f32 buffer (exact: they were bf16
 * values), so m->params is whole again. */
static void restore_released(ft_train_model *tm) {
    const ft_config *c = &tm->m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        const float *ws[FT_LORA_NMOD];
        layer_linears(&tm->w.layers[l], ws);
        for (int j = 0; j < FT_LORA_NMOD; j++)
            if (tm->pw_released[l][j]) {
                bf16_weight_unpack(tm->pw[l][j], (float *)(uintptr_t)ws[j]);
                tm->pw_released[l][j] = 0;
            }
        if (tm->pqkv_released[l]) { /* q|k|v adjacent from wq on */
            bf16_weight_unpack(tm->pqkv[l], (float *)(uintptr_t)ws[0]);
            tm->pqkv_released[l] = 0;
        }
    }
    if (tm->phead_released) {
        bf16_weight_unpack(tm->phead, (float *)(uintptr_t)head_weight(tm));
        tm->phead_released = 0;
    }
}

/* bf16 mode (asked for, and the CPU has AVX512-BF16): a packed bf16 handle for every linear
 * weight and the head. Trained linear weights are transient (packed into a shared scratch right
 * before each product: full fine-tuning keeps no bf16 copies of its weights, at the cost of
 * repacking per micro-step rather than per optimizer step); the trained head is repacked when
 * stale (bf16_sync) since each cross-entropy chunk uses both its layouts. Frozen ones held
 * exactly by bf16 are packed here and released from the model (release_frozen); the others are
 * packed on first use, inside the first step. LoRA without dropout also gets the bf16 branch
 * (lora_group_forward): the group stacks of A. */
static ft_status setup_bf16(ft_train_model *tm) {
    const ft_config *c = &tm->m->cfg;
    tm->bf16 = tm->opt.bf16 && ft_cpu_has_bf16();
    tm->bf16_stale = 1;
    if (!tm->bf16) return FT_OK;
    /* LoRA's bf16 branch (the f32 branch keeps dropout: its masks are drawn on the f32 input) */
    tm->lora_bf16 = tm->opt.method == FT_METHOD_LORA && !(tm->opt.lora.dropout > 0);
    for (int l = 0; l < c->n_layers; l++) {
        const float *ws[FT_LORA_NMOD], *ds[FT_LORA_NMOD];
        layer_linears(&tm->w.layers[l], ws);
        layer_linears(&tm->dw.layers[l], ds);
        /* q|k|v as one product (train_internal.h): (HD + 2 KVD, C) from wq on, a trained one's
         * gradient from dw.wq on. In the SmolLM-shape step (B 4 x T 256) the three products ran
         * 950 against 1015 ms per 4 steps as three each (ONEDNN_VERBOSE), and 180 oneDNN calls
         * (a parallel region each) fewer a step. Frozen (LoRA, freeze), it replaces the three
         * kept packs; LoRA's B sides then write and read column windows of its rows. */
        const size_t HD = (size_t)c->n_heads * c->head_dim,
                     KVD = (size_t)c->n_kv_heads * c->head_dim, C = (size_t)c->dim;
        const int N3 = (int)(HD + 2 * KVD);
        const ft_layer *lw = &tm->w.layers[l], *ld = &tm->dw.layers[l];
        const int lq = tm->lA[l][0] || tm->lA[l][1] || tm->lA[l][2];
        const int fuse = !c->qk_norm && !lw->bq && !lw->bk && !lw->bv &&
                         lw->wk == lw->wq + HD * C && lw->wv == lw->wk + KVD * C;
        const int trained3 = fuse && !lq && ds[0] && ds[1] && ds[2] && ld->wk == ld->wq + HD * C &&
                             ld->wv == ld->wk + KVD * C;
        const int frozen3 = fuse && !ds[0] && !ds[1] && !ds[2] && (!lq || tm->lora_bf16);
        if (trained3) tm->pqkv[l] = bf16_weight_create_transient(lw->wq, c->dim, N3);
        if (frozen3) tm->pqkv[l] = bf16_weight_create(lw->wq, c->dim, N3);
        if ((trained3 || frozen3) && !tm->pqkv[l]) return ft_errorf(FT_ERR_NOMEM, "out of memory");
        if (frozen3)
            tm->pqkv_released[l] =
                (unsigned char)release_frozen(tm, tm->pqkv[l], lw->wq, c->dim, N3, tm->B0 * tm->T0);
        for (int j = frozen3 ? 3 : 0; j < FT_LORA_NMOD; j++) {
            int in, out;
            ft_lora_module_shape(c, j, &in, &out);
            /* trained: packed at each use (no kept copies: -2 bytes x 2 per parameter) */
            tm->pw[l][j] = ds[j] ? bf16_weight_create_transient(ws[j], in, out)
                                 : bf16_weight_create(ws[j], in, out);
            if (!tm->pw[l][j]) return ft_errorf(FT_ERR_NOMEM, "out of memory");
            tm->pw_trained[l][j] = ds[j] != NULL;
            if (!tm->pw_trained[l][j])
                tm->pw_released[l][j] =
                    (unsigned char)release_frozen(tm, tm->pw[l][j], ws[j], in, out, tm->B0 * tm->T0);
        }
    }
    tm->phead = bf16_weight_create(head_weight(tm), c->dim, c->vocab_size);
    tm->xpk = bf16_pack_create();
    if (!tm->phead || !tm->xpk) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    tm->phead_trained = (tm->w.lm_head ? tm->dw.lm_head : tm->dw.embed) != NULL;
    /* an untied frozen head (the tied one is also the embedding table, read in f32) */
    if (tm->w.lm_head && !tm->phead_trained)
        tm->phead_released = (unsigned char)release_frozen(tm, tm->phead, tm->w.lm_head, c->dim,
                                                           c->vocab_size, tm->chunk);
    for (int j = 0; j < FT_LORA_NMOD; j++)
        tm->lslot[j] = -1;
    if (!tm->lora_bf16) return FT_OK;
    size_t total = 0;
    int r = tm->opt.lora.r;
    for (int j = 0; j < FT_LORA_NMOD; j++)
        if (tm->opt.lora.targets & (1u << j)) {
            int in, out;
            ft_lora_module_shape(c, j, &in, &out);
            tm->lslot[j] = tm->lgn[lora_group_of[j]]++;
            total += (size_t)r * in;
        }
    tm->lAg_buf = ft_calloc(total * (size_t)c->n_layers, sizeof(uint16_t));
    if (!tm->lAg_buf) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    uint16_t *p = tm->lAg_buf;
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < FT_LORA_NGROUP; g++) {
            int K = 0, out;
            for (int j = 0; j < FT_LORA_NMOD; j++)
                if (lora_group_of[j] == g) ft_lora_module_shape(c, j, &K, &out);
            tm->lAg[l][g] = tm->lgn[g] ? p : NULL;
            p += (size_t)tm->lgn[g] * r * K;
        }
    return FT_OK;
}

ft_status ft_train_model_init(ft_train_model **out, ft_model *m, const ft_train_options *opt) {
    *out = NULL;
    const ft_config *c = &m->cfg;
    if (opt->B < 1 || opt->T < 1)
        return ft_errorf(FT_ERR_ARG, "micro-batch shape %dx%d must be positive", opt->B, opt->T);
    if (c->n_layers > FT_MAX_LAYERS)
        return ft_errorf(FT_ERR_UNSUPPORTED, "%d layers (max %d)", c->n_layers, FT_MAX_LAYERS);
    ft_train_model *tm = calloc(1, sizeof *tm);
    if (!tm) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    tm->m = m;
    tm->opt = *opt;
    tm->opt.unfrozen = NULL;
    tm->opt.n_unfrozen = 0;
    if (opt->method != FT_METHOD_LORA && (opt->n_tok_embed || opt->n_tok_head)) {
        free(tm);
        return ft_errorf(FT_ERR_ARG, "trainable tokens need LoRA (PEFT's trainable_token_indices)");
    }
    /* setup_tokens copies the ids; the counts stay (n_tok_head: the user gave lm_head ids) */
    tm->opt.tok_embed = tm->opt.tok_head = NULL;
    tm->B0 = opt->B;
    tm->T0 = opt->T;
    tm->w = m->w; /* dw stays all-NULL (frozen) until a tensor is selected */
    tm->rng = ft_rng_mix(opt->seed ^ 0x44726f706f757421ull); /* "Dropout!" */
    ft_status st;
    if (opt->grad_ready && opt->method != FT_METHOD_FULL && opt->method != FT_METHOD_FREEZE)
        st = ft_errorf(FT_ERR_ARG, "the fused optimizer (grad_ready) needs full or freeze");
    else if (opt->method == FT_METHOD_LORA)
        st = setup_lora(tm, opt);
    else if (opt->method == FT_METHOD_FULL || opt->method == FT_METHOD_FREEZE) {
        tm->opt.lora.r = 0;
        st = setup_full_or_freeze(tm, opt);
    } else
        st = ft_errorf(FT_ERR_ARG, "unknown training method %d", (int)opt->method);
    if (st != FT_OK) goto fail;

    tm->n_slots = opt->grad_checkpointing ? 1 : (c->n_layers > 0 ? c->n_layers : 1);
    tm->slots = calloc((size_t)tm->n_slots, sizeof *tm->slots);
    tm->pos_default = ft_calloc((size_t)opt->B * (size_t)opt->T, sizeof(int));
    if (!tm->slots || !tm->pos_default) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    tm->chunk = crossentropy_chunk_rows(opt->B * opt->T, c->vocab_size);
    if ((st = setup_bf16(tm)) != FT_OK) goto fail;
    tm->dw_write = tm->bf16 && tm->layer_grads && opt->method != FT_METHOD_LORA;
    if (tm->bf16) {
        /* bf16 mode: 2x the rows (8 Mi logits, 32 MiB f32 + 16 MiB bf16). A trained head's
         * weight gradient dW (V,C) f32 is read and written once per chunk, so that traffic
         * halves; 4x measured no faster on the SmolLM shape (250 vs 244 tokens per CPU-second)
         * for 48 MB more. A frozen head's two products run faster on 170 rows than on 85: the
         * head + cross-entropy of a SmolLM-shape LoRA step 0.207-0.221 -> 0.186-0.190 s (3x,
         * 4x: no faster again) */
        int64_t ch = 2 * (int64_t)tm->chunk, bt = (int64_t)opt->B * opt->T;
        tm->chunk = (int)(ch < bt ? ch : bt);
    }
    tm->dlog_rows = tm->chunk;
    if (tm->bf16 && tm->phead_trained) {
        /* a trained head's weight gradient: one product per run of consecutive chunks, runs of
         * up to 512 rows with dlogb under 24 MiB, all of one size and made of equal chunks (the
         * kernel cuts M rows into equal chunks of at most tm->chunk). SmolLM shape, 1024 rows:
         * two runs of 4 x 128 rows, +34 MB, where 6 x 170 + 4 rows made runs of 510, 510 and 4
         * (a whole dW read and write, and two head weight streams, for the last 4 rows);
         * stories15M: two runs of 2 x 256 */
        int64_t cap = ((int64_t)24 << 20) / c->vocab_size, bt = (int64_t)opt->B * opt->T;
        if (cap > 512) cap = 512;
        if (cap < 1) cap = 1;
        int64_t nrun = (bt + cap - 1) / cap, rrows = (bt + nrun - 1) / nrun;
        int64_t per = (rrows + tm->chunk - 1) / tm->chunk; /* chunks per run */
        tm->chunk = (int)((rrows + per - 1) / per);
        tm->dlog_rows = (int)(per * tm->chunk);
    }
    bump b = {NULL, 0};
    plan_buffers(tm, &b);
    tm->act_n = b.n;
    tm->act = ft_calloc(b.n, sizeof(float));
    if (!tm->act) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory for %zu activation floats (B=%d T=%d)", b.n,
                       opt->B, opt->T);
        goto fail;
    }
    b.base = tm->act;
    b.n = 0;
    plan_buffers(tm, &b);
    *out = tm;
    return FT_OK;
fail:
    ft_train_model_free(tm);
    return st;
}

void ft_train_model_free(ft_train_model *tm) {
    if (!tm) return;
    restore_released(tm);
    free(tm->tr);
    free(tm->tr_layer);
    free(tm->ready);
    free(tm->model_src);
    if (tm->params_owned) ft_free(tm->params);
    ft_free(tm->grads);
    ft_free(tm->act);
    for (int l = 0; l < FT_MAX_LAYERS; l++) {
        for (int j = 0; j < FT_LORA_NMOD; j++)
            bf16_weight_free(tm->pw[l][j]);
        bf16_weight_free(tm->pqkv[l]);
    }
    bf16_weight_free(tm->phead);
    bf16_pack_free(tm->xpk);
    ft_free(tm->lAg_buf);
    free(tm->slots);
    ft_free(tm->pos_default);
    for (int e = 0; e < 2; e++) {
        free(tm->tok_ids[e]);
        free(tm->tok_slot[e]);
    }
    free(tm);
}

const ft_trainable *ft_train_tensors(const ft_train_model *tm, int *n) {
    *n = tm->n_tr;
    return tm->tr;
}

float *ft_train_params(ft_train_model *tm, size_t *n) {
    if (n) *n = tm->n_params;
    return tm->params;
}

float *ft_train_grads(ft_train_model *tm, size_t *n) {
    if (n) *n = tm->n_grads;
    return tm->grads;
}

void ft_train_grad_hook(const ft_train_model *tm, void (**fn)(void *, const int *, int),
                        void **ctx) {
    *fn = tm->opt.grad_ready;
    *ctx = tm->opt.grad_ctx;
}

void ft_train_zero_grad(ft_train_model *tm) {
    zero(tm->grads, tm->n_grads);
    tm->bf16_stale = 1;
}

void ft_train_params_changed(ft_train_model *tm) {
    tm->bf16_stale = 1;
}

uint64_t ft_train_rng_state(const ft_train_model *tm) {
    return tm->rng;
}

void ft_train_set_rng_state(ft_train_model *tm, uint64_t s) {
    tm->rng = s;
}

void ft_train_sync_model(ft_train_model *tm) {
    restore_released(tm);
    if (tm->opt.method != FT_METHOD_FREEZE) return; /* full aliases the model; LoRA is separate */
    for (int i = 0; i < tm->n_tr; i++)
        memcpy(tm->model_src[i], tm->tr[i].param, tm->tr[i].numel * sizeof(float));
}
