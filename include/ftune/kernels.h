/*
 * CPU kernels: forward/backward pairs in llm.c's argument order (outputs, inputs, saved
 * activations, sizes). Backward functions ADD into parameter gradients (the caller zeroes them
 * once per step) and WRITE input gradients unless stated otherwise. A NULL gradient pointer
 * means "frozen / not needed: skip that work". Every optimized kernel keeps a *_naive twin,
 * the plain-loop reference the tests compare it with.
 *
 * Letters: M rows (= B*T tokens), K in-features, N out-features, C channels, H heads,
 * KV key/value heads, D head dim, T sequence length, V vocabulary.
 */
#ifndef FTUNE_KERNELS_H
#define FTUNE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out (M,N) = inp (M,K) · w (N,K)^T + bias (N)   [torch.nn.Linear]; bias may be NULL.
 * Uses oneDNN (primitives cached per shape); matmul_forward_naive is the reference. */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int M, int K,
                    int N);
/* out (M,N) += inp (M,K) · w (N,K)^T (no bias): the forward with oneDNN's sum post-op, so an
 * addend (a LoRA branch) lands in out without a temporary. */
void matmul_forward_acc(float *out, const float *inp, const float *w, int M, int K, int N);
void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M,
                          int K, int N);
/* dinp (M,K) += dout (M,N) · w (N,K)  (ADDS, so residual branches can share a buffer)
 * dw (N,K) += dout^T · inp ; dbias (N) += sum_m dout. Any of dinp/dw/dbias may be NULL. */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int M, int K, int N);
void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int M, int K, int N);

/* ---- bf16 mixed precision: bf16 operands, f32 accumulation and f32 output (matmul_bf16.c) ----
 * bf16 values are uint16_t bit patterns (the top half of an f32). */
/* 1 when the CPU has AVX512-BF16 (run-time check; FTUNE_NO_BF16=1 forces 0). Callers use the f32
 * kernels when it is 0. */
int ft_cpu_has_bf16(void);
/* dst (n) = bf16(src), round to nearest even (bit-identical to ft_f32_to_bf16); and back. */
void bf16_from_f32(uint16_t *dst, const float *src, size_t n);
void bf16_to_f32(float *dst, const uint16_t *src, size_t n);
/* bf16_from_f32 of src (M,N) into dst (M,N), and its transpose into dstT (N,M): the dout of a
 * weight gradient in both layouts its two products read best (matmul_bf16_backward_weight_t) */
void bf16_from_f32_t(uint16_t *dst, uint16_t *dstT, const float *src, int M, int N);
/* out (M,N) = inp (M,K) · w (N,K)^T + bias (N), or out += ... when accumulate. bias may be NULL. */
void matmul_bf16_forward(float *out, const uint16_t *inp, const uint16_t *w, const float *bias,
                         int M, int K, int N, int accumulate);
/* dinp (M,K) += dout (M,N) · w (N,K) ; dw (N,K) += dout^T · inp. Either may be NULL. */
void matmul_bf16_backward(float *dinp, float *dw, const uint16_t *dout, const uint16_t *inp,
                          const uint16_t *w, int M, int K, int N);
/* The weight gradient with inp in the blocked layout oneDNN asks for (10-25% faster than
 * matmul_bf16_backward's dw on SmolLM shapes): dw (N,K) += dout (M,N)^T · inp (M,K) (or =, without
 * accumulate: no zeroing pass before, no read of dw in the product), inp packed
 * into *pk (matmul_bf16.c's row-pair pass, or oneDNN's reorder for another layout) and kept there
 * for the next product on the same inp (the modules that read one input share it). The caller
 * passes fresh = 1 whenever inp's contents changed since pk last saw them (a changed pointer, shape
 * or layout repacks anyway). A pack is created empty; free(NULL) is a no-op. */
typedef struct ft_bf16_pack ft_bf16_pack;
ft_bf16_pack *bf16_pack_create(void);
void bf16_pack_free(ft_bf16_pack *pk);
void matmul_bf16_backward_weight(float *dw, const uint16_t *dout, const uint16_t *inp,
                                 ft_bf16_pack *pk, int fresh, int M, int K, int N, int accumulate);
/* The same with dout given transposed, doutT (N,M) row-major: oneDNN then reads it in place
 * instead of transposing it inside the product (bench_matmul, SmolLM's down projection, M 1024,
 * dw written: 2.70-2.87 -> 2.56-2.58 ms; 576 x 576: 0.99 -> 0.96). */
void matmul_bf16_backward_weight_t(float *dw, const uint16_t *doutT, const uint16_t *inp,
                                   ft_bf16_pack *pk, int fresh, int M, int K, int N,
                                   int accumulate);
/* A weight w (N,K) f32 converted to bf16 and reordered into oneDNN's preferred blocked layouts
 * (one for the forward product, one for the input gradient), packed on first use per row count
 * M and cached. `w` must outlive the handle; after w changes (an optimizer step) call
 * bf16_weight_refresh. create returns NULL when out of memory; free(NULL) is a no-op. */
typedef struct ft_bf16_weight ft_bf16_weight;
ft_bf16_weight *bf16_weight_create(const float *w, int K, int N);
/* The same, transient: packed into a shared scratch at each product, never kept (no memory per
 * weight, one reorder per product; refresh is a no-op). For trained weights. */
ft_bf16_weight *bf16_weight_create_transient(const float *w, int K, int N);
void bf16_weight_free(ft_bf16_weight *w);
void bf16_weight_refresh(ft_bf16_weight *w);
/* Stop reading w's f32 source: pack it now for row count M into one canonical bf16 copy (and the
 * slots of M) from which every later layout is reordered, bf16 to bf16. The caller may then free
 * or drop the source; refresh is no longer allowed. Returns 0 (nothing done) for an empty shape.
 * unpack writes the packed values to dst (N,K) f32 — the source itself when bf16_exact(source). */
int bf16_weight_detach(ft_bf16_weight *w, int M);
void bf16_weight_unpack(const ft_bf16_weight *w, float *dst);
/* 1 when every x[i] is a bf16 value (its low 16 bits are zero): bf16 loses nothing of it. */
int bf16_exact(const float *x, size_t n);
/* out (M,N) [=|+=] inp (M,K) · w^T + bias ; dinp (M,K) [=|+=] dout (M,N) · w (+= when
 * accumulate). */
void matmul_bf16w_forward(float *out, const uint16_t *inp, ft_bf16_weight *w, const float *bias,
                          int M, int accumulate);
/* Fused forms of matmul_bf16w_forward (oneDNN post-ops: no pass over out afterwards), the same bits
 * as the product followed by that pass. _res: out = inp · w^T + bias + res, res (M,N) f32 not
 * overlapping out (a residual add: out = product, then out += res). _bf16: out (M,N) bf16 =
 * the product rounded to nearest even (then bf16_from_f32 of it). */
void matmul_bf16w_forward_res(float *out, const uint16_t *inp, ft_bf16_weight *w, const float *bias,
                              const float *res, int M);
void matmul_bf16w_forward_bf16(uint16_t *out, const uint16_t *inp, ft_bf16_weight *w,
                               const float *bias, int M);
void matmul_bf16w_backward_input(float *dinp, const uint16_t *dout, ft_bf16_weight *w, int M,
                                 int accumulate);
/* Pack the transient weights among ws[0..n) (others and NULL are skipped) ahead, for their next
 * product of M rows — matmul_bf16w_forward's layout (fwd[i]) or matmul_bf16w_backward_input's
 * (without bias, any accumulate) — all in one parallel region, where each product would pack its
 * own in one (with passive waiting a region costs ~40 us: bench_regions). Each copy serves one
 * product with the same bytes its own pack gives; all are dropped by the next prepack or by
 * bf16_weights_prepack_drop, which the caller calls before it changes a source whose copy may be
 * unused. */
void bf16_weights_prepack(ft_bf16_weight *const *ws, const int *fwd, int n, int M);
void bf16_weights_prepack_drop(void);

/* Fused forms for the bf16 step (fused_bf16.c): the f32 kernel's result also written as bf16 in
 * the same pass. rmsnorm_forward_bf16 is bit-identical to rmsnorm_forward followed by
 * bf16_from_f32; the swiglu forms evaluate exp vectorized (within a few ulp of expf), so they
 * match swiglu_forward / swiglu_backward to ~1e-6 relative, not bit for bit (the f32 path keeps
 * the exact kernels). out may be NULL (only the bf16 copy is wanted). */
void rmsnorm_forward_bf16(float *out, uint16_t *outb, float *rstd, const float *inp,
                          const float *weight, int M, int C, float eps);
void swiglu_forward_bf16(float *out, uint16_t *outb, const float *gate, const float *up,
                         size_t N);
/* outb (M,C) = rmsnorm_forward_bf16's outb for the same inp, weight and its saved rstd (M), bit
 * for bit: the bf16 step recomputes a norm's bf16 output in backward instead of keeping it. */
void rmsnorm_apply_bf16(uint16_t *outb, const float *inp, const float *rstd, const float *weight,
                        int M, int C);
void swiglu_backward_fast(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, size_t N);
/* rmsnorm_backward with the row dot sum_c dout_c w_c x_c summed in f32 (16-lane partials, a
 * fixed order) instead of double: within ~C 2^-24 of the sum's magnitude, deterministic, for the
 * bf16 step (the f32 path keeps the exact kernel). dinp ADDED; dweight as rmsnorm_backward. */
void rmsnorm_backward_fast(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int M, int C);
/* The bf16 step's SwiGLU with bf16 gate/up as the saved activations (fused_bf16.c):
 * _round writes gateb/upb = bf16(gate/up) and outb = bf16(y), out = y (out may be NULL) with
 * y = silu(gateb) * upb computed in f32 from the ROUNDED values; _bf16in recomputes out/outb from
 * gateb/upb with bit-identical results (the backward recomputes hact instead of storing it);
 * swiglu_backward_bf16 = swiglu_backward_fast on the widened gateb/upb (dgate, dup WRITTEN);
 * _bf16out writes the same values rounded to bf16 (the same bits as swiglu_backward_bf16 then
 * bf16_from_f32), for a step whose consumers of dgate/dup all read bf16. */
void swiglu_forward_bf16_round(uint16_t *gateb, uint16_t *upb, uint16_t *outb, float *out,
                               const float *gate, const float *up, size_t N);
void swiglu_forward_bf16in(float *out, uint16_t *outb, const uint16_t *gateb, const uint16_t *upb,
                           size_t N);
void swiglu_backward_bf16(float *dgate, float *dup, const float *dout, const uint16_t *gateb,
                          const uint16_t *upb, size_t N);
void swiglu_backward_bf16out(uint16_t *dgateb, uint16_t *dupb, const float *dout,
                             const uint16_t *gateb, const uint16_t *upb, size_t N);

/* LoRA's B side in the bf16 step (lora_up.c), B (N,r) f32, u (M,r) with row stride ldu (a
 * column window of the group's u), s the LoRA scaling. The forward in f32 arithmetic; the
 * backward, where the CPU has AVX512-BF16 (lora_up_backward_bf16ops() == 1), on bf16 operands as
 * under PyTorch's bf16 autocast (dout, B and s u rounded to bf16; products exact, sums in f32),
 * else in f32 arithmetic:
 *   lora_up_forward   y = out + (s u)·B^T, + res (M,N) when non-NULL; y is written to out, or,
 *                     when outb is non-NULL, only to outb as bf16 (out is then left as it was).
 *                     out, outb and res share the row stride ldo.
 *   lora_up_backward  in one pass over dout (M,N): doutb = bf16(dout) (may be NULL; the same
 *                     bits as bf16_from_f32), dB (N,r) += dout^T·(s u), du (M,r; row stride lddu)
 *                     = s dout·B (WRITTEN). dB does not depend on the thread count.
 *   lora_up_backward_bf16in  the same dB and du from dout given as bf16 (M,N) (read, widened
 *                     exactly; nothing written back), when dout was made as bf16 already.
 * ws: lora_up_ws_floats(M, N, r) floats. The _naive twins accumulate in double.
 * The _n forms run n modules (a group: LoRA targets reading one input) in one parallel region,
 * each module with the bits of its own call above. A module: B (N,r), u (M,r) rows ldu apart;
 * forward: out, outb, res rows ldo apart; backward: dout (f32) or, when dout is NULL, din
 * (bf16; nothing written back), and doutb (may be NULL) rows ldd apart, dB added, du rows lddu
 * apart written. ws: the sum of lora_up_ws_floats(M, N_i, r). */
size_t lora_up_ws_floats(int M, int N, int r);
enum { LORA_UP_MAXN = 4 };
typedef struct {
    int N;
    const float *B, *u;
    int ldu;
    float *out;
    uint16_t *outb;
    const float *res;
    int ldo;
    const float *dout;
    const uint16_t *din;
    uint16_t *doutb;
    int ldd;
    float *dB, *du;
    int lddu;
} ft_lora_up;
void lora_up_forward_n(const ft_lora_up *md, int n, float s, int M, int r, float *ws);
void lora_up_backward_n(const ft_lora_up *md, int n, float s, int M, int r, float *ws);
/* lora_up_forward_n of the gate/up pair (md[0] gate, md[1] up, both to outb only, rows of F =
 * their N) followed by swiglu_forward_bf16in(NULL, hactb, gate outb, up outb, M F), in one pass:
 * the bits of the two calls */
void lora_up_forward_swiglu(const ft_lora_up md[2], uint16_t *hactb, float s, int M, int r,
                            float *ws);
/* lora_up_forward_n of the q/k/v group, whose outs are rows of the f32 q, k, v (rows ldi apart,
 * 0: packed), followed by the forward's rope_round_qkv_bf16 into qb, kb, vb (packed rows), in one
 * pass: each row block rotated and rounded right after its LoRA terms are added; the bits of the
 * two calls */
void lora_up_forward_rope(const ft_lora_up *md, int n, float s, int M, int r, float *ws,
                          uint16_t *qb, uint16_t *kb, uint16_t *vb, const float *q, const float *k,
                          const float *v, int64_t ldi, const float *cs, int H, int KV, int D);
void lora_up_forward(float *out, uint16_t *outb, const float *res, int ldo, const float *u,
                     int ldu, float s, const float *B, int M, int N, int r, float *ws);
void lora_up_backward(uint16_t *doutb, float *dB, float *du, int lddu, const float *dout,
                      const float *u, int ldu, float s, const float *B, int M, int N, int r,
                      float *ws);
void lora_up_backward_bf16in(float *dB, float *du, int lddu, const uint16_t *doutb, const float *u,
                             int ldu, float s, const float *B, int M, int N, int r, float *ws);
void lora_up_forward_naive(float *out, uint16_t *outb, const float *res, int ldo, const float *u,
                           int ldu, float s, const float *B, int M, int N, int r);
/* bf16ops: round dout, B and s u to bf16 first (the operands of lora_up_backward when
 * lora_up_backward_bf16ops()), then du = s (dout·B) and dB += dout^T·(s u) in double */
void lora_up_backward_naive(float *dB, float *du, int lddu, const float *dout, const float *u,
                            int ldu, float s, const float *B, int M, int N, int r, int bf16ops);
int lora_up_backward_bf16ops(void);

/* LoRA's input-gradient term du·A folded into the pass that consumes the gradient (lowrank.c):
 * row m, column k of the term is sum_i u[m][i] A[i][k] for u (M,R) bf16 with row stride ldu and
 * A (R,K) bf16 given as pair words (lowrank_pack: ap[q K + k] = (A[2q][k], A[2q+1][k]), a zero row
 * past an odd R; lowrank_pack_words(R, K) words), summed in f32.
 *   swiglu_backward_bf16out_lr  swiglu_backward_bf16out of dout + u·A (dout, gate, up (M,F)).
 *   rmsnorm_backward_fast_lr    rmsnorm_backward_fast's dinp (no dweight) for dout + u·A (dout,
 *                               inp (M,C), C <= LOWRANK_MAXC): the bits of lowrank_add into dout
 *                               followed by rmsnorm_backward_fast, dout left as it is.
 *   lowrank_add                 dinp (M,K) += u·A, where no pass reads dinp next to fold it in.
 * lowrank_naive: row m of the term in double (the tests' twin). */
typedef struct {
    const uint16_t *u;
    int ldu, R;
    const uint32_t *ap;
} ft_lowrank;
size_t lowrank_pack_words(int R, int K);
void lowrank_pack(uint32_t *ap, const uint16_t *A, int R, int K);
void lowrank_naive(double *out, const ft_lowrank *lr, int64_t m, int K);
void swiglu_backward_bf16out_lr(uint16_t *dgateb, uint16_t *dupb, const float *dout,
                                const ft_lowrank *lr, const uint16_t *gateb, const uint16_t *upb,
                                int M, int F);
void lowrank_add(float *dinp, const ft_lowrank *lr, int M, int K);
enum { LOWRANK_MAXC = 8192 };
void rmsnorm_backward_fast_lr(float *dinp, const float *dout, const ft_lowrank *lr,
                              const float *inp, const float *weight, const float *rstd, int M,
                              int C);

/* out (M,C) = inp / sqrt(mean(inp^2) + eps) * weight ; rstd (M) saved (may be NULL). */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int M, int C,
                     float eps);
/* dinp (M,C) += ..., dweight (C) += ... (either may be NULL; dinp must not overlap dout or inp:
 * the two run side by side) */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int M, int C);

/* Rotary embedding in HF "rotate half" layout, in place on x (M, nh, D) where row m sits at
 * position pos[m]: for i < D/2, (x_i, x_{i+D/2}) is rotated by angle pos*inv_freq[i]. */
void rope_forward(float *x, const int *pos, const float *inv_freq, int M, int nh, int D);
/* In place on dx: rotate by the negative angle (the transpose of the forward rotation). */
void rope_backward(float *dx, const int *pos, const float *inv_freq, int M, int nh, int D);
/* The same rotations from a table of the angles' cosines and sines, cs (M, D): row m holds
 * cos(pos[m] inv_freq[i]) at i and the sine at D/2 + i (i < D/2), built once by rope_cos_sin for
 * every layer of a step. Bit-identical to rope_forward / rope_backward. */
void rope_cos_sin(float *cs, const int *pos, const float *inv_freq, int M, int D);
void rope_forward_cs(float *x, const float *cs, int M, int nh, int D);
void rope_backward_cs(float *dx, const float *cs, int M, int nh, int D);
/* The bf16 step's attention inputs (back 0) or their gradients before the q/k/v products (back
 * 1) in one pass over the rows: qb (M,H*D) and kb (M,KV*D) = q and k rotated as rope_forward_cs
 * (rope_backward_cs) and rounded as bf16_from_f32, vb = v rounded; the bits of those steps,
 * without rotating q and k in place first (q, k, v are only read). Rows of q, k, v are ldi apart
 * and rows of qb, kb, vb ldo apart; 0: packed (H*D for q, KV*D for k and v). The step's fused
 * q/k/v product writes q|k|v side by side in rows of H*D + 2 KV*D (forward: ldi), and its input
 * gradient reads dq|dk|dv so (backward: ldo). */
void rope_round_qkv_bf16(uint16_t *qb, uint16_t *kb, uint16_t *vb, int64_t ldo, const float *q,
                         const float *k, const float *v, int64_t ldi, const float *cs, int M, int H,
                         int KV, int D, int back);
/* its rows [m0, m1) on the calling thread (for passes that make those rows first) */
void rope_round_qkv_bf16_rows(uint16_t *qb, uint16_t *kb, uint16_t *vb, int64_t ldo, const float *q,
                              const float *k, const float *v, int64_t ldi, const float *cs, int H,
                              int KV, int D, int back, int64_t m0, int64_t m1);

/* out (N) = silu(gate) * up. */
void swiglu_forward(float *out, const float *gate, const float *up, size_t N);
/* dgate, dup (N) are WRITTEN. */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t N);

/* Causal grouped-query attention over a batch.
 *   q (B,T,H,D), k, v (B,T,KV,D) -> out (B,T,H,D); att (B,H,T,T) softmax probabilities saved
 *   for backward (may be NULL at inference). Scale 1/sqrt(D). seg (B,T) optional: when non-NULL,
 *   token t attends to s <= t only if seg[b,s] == seg[b,t] (packed samples). */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int *seg, int B, int T, int H, int KV, int D);
/* dq WRITTEN, dk/dv WRITTEN (B,T,KV,D): each KV head sums the gradients of its H/KV query heads. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *att, int B, int T, int H,
                        int KV, int D);
/* Flash-style (no T×T buffer) forms of the two above, f32 (attention_flash.c): online softmax
 * over key blocks; forward saves only lse (B,H,T), the row logsumexp of the scaled scores, which
 * may be NULL at inference. Backward recomputes probabilities blockwise from lse and needs the
 * forward's out; dq, dk, dv (any may be NULL) are WRITTEN. seg as in attention_forward. */
void attention_flash_forward(float *out, float *lse, const float *q, const float *k,
                             const float *v, const int *seg, int B, int T, int H, int KV, int D);
void attention_flash_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *out, const float *q, const float *k, const float *v,
                              const float *lse, const int *seg, int B, int T, int H, int KV,
                              int D);
/* bf16 forms for the mixed-precision step: q, k, v as bf16; equal, bit for bit, to the f32 forms
 * run on the widened inputs. out, lse, dout and the gradients are f32 (delta = dout·out must be
 * consistent with the probabilities: see attention_flash.c). */
void attention_flash_forward_bf16(float *out, float *lse, const uint16_t *q, const uint16_t *k,
                                  const uint16_t *v, const int *seg, int B, int T, int H, int KV,
                                  int D);
void attention_flash_backward_bf16(float *dq, float *dk, float *dv, const float *dout,
                                   const float *out, const uint16_t *q, const uint16_t *k,
                                   const uint16_t *v, const float *lse, const int *seg, int B,
                                   int T, int H, int KV, int D);
/* The same on AVX512-BF16 dot products (attention_flash_dp.c): P, dS and dout rounded to bf16
 * as the products' operands (FlashAttention-2's and autocast's rounding points), f32 softmax and
 * accumulation; within the stated bound of the exact forms, not bit-identical. Only for head dims
 * where attention_flash_dp_ok(D) (D a multiple of 16 up to 128, on CPUs built with AVX512-BF16);
 * elsewhere they run the _bf16 forms. Arguments as above; the forward's output goes to out (f32)
 * and/or outb (bf16, those values rounded to nearest even: the bits of bf16_from_f32 of out),
 * either may be NULL (out not, without AVX512-BF16). */
int attention_flash_dp_ok(int D);
void attention_flash_forward_dp(float *out, uint16_t *outb, float *lse, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, const int *seg, int B, int T,
                                int H, int KV, int D);
/* The backward reads the forward's output for delta_t = dout_t · out_t from out (f32) or, when
 * out is NULL, from outb (bf16, widened as read: the same bits as passing its f32 widening). */
void attention_flash_backward_dp(float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const uint16_t *outb, const uint16_t *q,
                                 const uint16_t *k, const uint16_t *v, const float *lse,
                                 const int *seg, int B, int T, int H, int KV, int D);
/* Plain-loop references of attention_forward/_backward (double accumulation, whole score rows). */
void attention_forward_naive(float *out, float *att, const float *q, const float *k,
                             const float *v, const int *seg, int B, int T, int H, int KV, int D);
void attention_backward_naive(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *att, int B, int T,
                              int H, int KV, int D);
/* Inference form with a KV cache: q (n,H,D) holds the queries of positions pos0..pos0+n-1;
 * kcache, vcache (pos0+n, KV, D) hold keys/values of positions 0..pos0+n-1 (the new ones already
 * written). Query at position t attends to positions 0..t. out (n,H,D).
 * scratch: omp_get_max_threads() * (pos0+n) floats (the KV cache owns one), or NULL to allocate. */
void attention_forward_cached(float *out, float *scratch, const float *q, const float *kcache,
                              const float *vcache, int n, int pos0, int H, int KV, int D);

/* out (M,C) = table[ids[m]] ; backward: dtable[ids[m]] += dout[m]. */
void embedding_forward(float *out, const int *ids, const float *table, int M, int C);
void embedding_backward(float *dtable, const float *dout, const int *ids, int M, int C);

#endif
