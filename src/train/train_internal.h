/*
 * Private to the gradient engine (src/train/step.c, src/peft/lora.c): the layout of
 * ft_train_model, the per-layer activation slots and the LoRA state. Not a public contract.
 */
#ifndef FTUNE_TRAIN_INTERNAL_H
#define FTUNE_TRAIN_INTERNAL_H

#include "ftune/crossentropy.h"
#include "ftune/kernels.h"
#include "ftune/train.h"

#define FT_LORA_NMOD 7 /* q k v o gate up down, in FT_LORA_* bit order */
#define FT_LORA_NGROUP 4 /* modules reading the same input: {q,k,v} {o} {gate,up} {down} */

/* Saved activations of one layer for one (B,T) micro-batch; BT = B*T rows. */
typedef struct {
    float *ln1, *rstd1;      /* (BT,C) input_layernorm output, (BT) its 1/rms */
    float *qlin, *qrstd, *q; /* (BT,H*D) q_proj out; (BT*H) q_norm 1/rms; q after norm+rope
                                (q == qlin without q/k norm: rope runs in place) */
    float *klin, *krstd, *k; /* same for keys, (BT,KV*D) */
    float *v;                /* (BT,KV*D) */
    float *lse;              /* (B,H,T) attention row logsumexp (flash attention) */
    float *attn;             /* (BT,H*D) attention output (o_proj input); bf16 mode: NULL
                                unless LoRA's f32 branch reads it (attnb is kept instead) */
    /* bf16 mode keeps q, k (after RoPE), v as bf16 only: q, k, v are NULL, and qlin/klin are
     * NULL unless q/k norm (qwen3) needs them. */
    uint16_t *qb, *kb, *vb;  /* (BT,H*D), (BT,KV*D), (BT,KV*D) */
    uint16_t *attnb;         /* bf16 mode: (BT,H*D) the attention output as bf16 (o_proj input;
                                attention's backward reads it widened when attn is NULL) */
    float *xmid;             /* (BT,C) residual after attention (NULL in bf16 full / freeze
                                fine-tuning: xmid32) */
    float *ln2, *rstd2;      /* (BT,C), (BT) post_attention_layernorm */
    float *gate, *up, *hact; /* (BT,F) gate_proj, up_proj outputs, silu(gate)*up (f32 mode;
                                bf16 mode: gate/up NULL, hact only for the f32 LoRA branch) */
    uint16_t *gateb, *upb;   /* bf16 mode: (BT,F) gate/up rounded to bf16 (hact is recomputed
                                from them in backward; NULL in f32 mode) */
    float *lu[FT_LORA_NMOD]; /* (BT,r) LoRA A-projection outputs u = A·drop(x), or NULL */
    float *lug[FT_LORA_NGROUP]; /* bf16 LoRA branch: (BT, n_g r) u of a group's targeted
                                   modules side by side (row m: u_j at columns slot_j r), or NULL */
    /* bf16 mode: three more matmul inputs are not kept as bf16 but made again in backward from
     * what is kept (tm->lnb from the norm input and rstd, tm->hactb from gate/up); their f32
     * twins ln1, ln2, hact are NULL unless LoRA's f32 branch reads them. The bf16 LoRA branch
     * keeps them instead (its memory is far below the budget, and its backward reads all of
     * them for dA): the forward writes them here, the backward reads them. */
    uint16_t *ln1b, *ln2b; /* (BT,C), or NULL */
    uint16_t *hactb;       /* (BT,F), or NULL */
} ft_layer_acts;

struct ft_train_model {
    ft_model *m;
    ft_train_options opt; /* unfrozen pointers not kept */
    int B0, T0;           /* the shape buffers are sized for */

    ft_trainable *tr;
    int n_tr;
    float *params, *grads; /* the two flat buffers (params aliases m->params for full) */
    size_t n_params, n_grads; /* n_grads < n_params with grad_ready (one shared layer) */
    int params_owned;
    float **model_src; /* full/freeze: (n_tr) each trainable's tensor in m->params */

    ft_weights w;  /* weights the step reads (trainable ones point into params) */
    ft_weights dw; /* gradient pointers; NULL = frozen */
    int lo_layer;  /* lowest layer whose backward is needed (n_layers: none) */
    int *tr_layer; /* (n_tr) layer of each trainable, -1 for embed / final norm / lm_head */
    int *ready;    /* (n_tr) grad_ready's list of one call */
    float *layer_grads;  /* grad_ready: the one layer's gradient buffer every layer shares */
    size_t layer_grads_n;
    /* bf16 full / freeze fine-tuning with layer_grads: each linear weight's gradient is written
     * by its one product (matmul_bf16_backward_weight without accumulate), so only the layer's
     * other gradients (norms, biases) are zeroed before its backward */
    int dw_write;

    /* LoRA (method lora): per layer and module, A (r,in) and B (out,r), NULL if untargeted */
    float *lA[FT_MAX_LAYERS][FT_LORA_NMOD], *lB[FT_MAX_LAYERS][FT_LORA_NMOD];
    float *dlA[FT_MAX_LAYERS][FT_LORA_NMOD], *dlB[FT_MAX_LAYERS][FT_LORA_NMOD];
    float lora_scale;
    uint64_t rng;      /* dropout stream state (advanced once per micro-step) */
    uint64_t drop_key; /* this micro-step's dropout key; masks are a pure function of it */
    int dropout_on;    /* forward of the current pass applies dropout */

    /* PEFT trainable tokens (LoRA): per table, 0 embed_tokens, 1 lm_head (untied only) */
    int n_tok[2];
    int *tok_ids[2];       /* (n_tok) the ids, in the user's order */
    int *tok_slot[2];      /* (V) id -> row of the tensor, -1 = the base row */
    ft_trainable *tok_tr[2]; /* the trainables (rows n_tok, cols C), NULL when none */
    ft_head_rows head_rows;  /* the head's replaced rows: the embed ones when tied */

    /* activations: one buffer */
    float *act;
    size_t act_n;
    float *resid;         /* (L+1, BT, C) residual stream; resid[l] = input of layer l */
    ft_layer_acts *slots; /* L slots, or 1 with gradient checkpointing */
    int n_slots;
    float *xf, *rstdf; /* (BT,C), (BT) final norm */
    float *logits;     /* (chunk,V) */
    int chunk;
    int dlog_rows; /* bf16 mode: the rows of dlogb (chunk, or a run of chunks for a trained head) */
    int *pos_default; /* (BT) */
    float *rope_cs;   /* (BT,D) RoPE's cos, sin per row (rope_cos_sin), built by the forward */
    /* backward scratch (same buffer) */
    float *dres, *dxf, *dln;                     /* (BT,C) */
    float *dq, *dqlin, *dk, *dklin, *dv, *dattn; /* (BT,H*D) / (BT,KV*D) */
    float *dgate, *dup, *dhact;                  /* (BT,F) */
    /* bf16 mode forward scratch: f32 matmul outputs before rounding (alias backward scratch of
     * the same shape, which is free during a layer's forward), hact as bf16 (down_proj input) */
    float *gate32, *up32;
    uint16_t *hactb;        /* (BT,F) */
    uint16_t *lnb;          /* (BT,C) a norm's output as bf16 (q/k/v, then gate/up input) */
    float *attn32;          /* (BT,H*D) bf16 mode without a->attn: the attention output in f32
                               before rounding (forward, only where the dp kernel, which writes
                               bf16 itself, does not run), the widened a->attnb (backward) */
    float *xmid32;          /* (BT,C) bf16 full / freeze: the residual after attention, which
                               the slots do not keep: the backward makes it again */
    float *q32, *k32, *v32; /* q, k, v before rounding (alias dq, dk, dv) */
    float *lxd, *ldx;                            /* (BT,maxK) LoRA dropped input, its gradient */
    float *lv, *ldo;                             /* (BT,maxN) LoRA B output, scaled dout */
    float *ldu;                                  /* (BT,r) */

    /* bf16 mixed precision (opt.bf16 and the CPU has AVX512-BF16) */
    int bf16;
    ft_bf16_weight *pw[FT_MAX_LAYERS][FT_LORA_NMOD]; /* packed q k v o gate up down */
    ft_bf16_weight *phead;                           /* packed lm_head / tied embedding */
    /* q, k, v as one (H*D + 2 KV*D, C) weight, adjacent in the params, without bias or q/k
     * norm: transient where all three are trained (adjacent in the gradients too, no LoRA on
     * them), kept where all three are frozen (LoRA on them only on the bf16 branch; pw[l][0..2]
     * are then NULL). One product each way instead of three (their rows side by side: q32
     * forward, doutb backward); else NULL */
    ft_bf16_weight *pqkv[FT_MAX_LAYERS];
    unsigned char pqkv_released[FT_MAX_LAYERS]; /* frozen pqkv detached, as pw_released */
    unsigned char pw_trained[FT_MAX_LAYERS][FT_LORA_NMOD], phead_trained; /* repacked when stale */
    /* frozen weights whose f32 copy in the model was given back after packing (detached);
     * restore_released writes them back */
    unsigned char pw_released[FT_MAX_LAYERS][FT_LORA_NMOD], phead_released;
    int bf16_stale; /* trained weights written since the last packing (zero_grad, params_changed) */
    uint16_t *doutb; /* (BT, max(C,HD,F)) a linear's output gradient as bf16 */
    uint16_t *doutbT;  /* the same transposed, for a trained weight's gradient (full / freeze) */
    ft_bf16_pack *xpk; /* a linear's bf16 input packed for the weight-gradient products */
    int xpk_stale;     /* xpk does not hold the current input group's input */
    uint16_t *xfb;   /* (BT,C) final-norm output as bf16 */
    uint16_t *dlogb; /* (chunk,V) dlogits as bf16 */
    /* bf16 LoRA branch (bf16 mode, LoRA without dropout): per group g, the bf16 concatenation
     * A_g (n_g r, K) of its targeted modules' A in module order, refreshed by bf16_sync; one
     * product x·A_g^T per group forward, one for dA and one for dx backward (step.c). */
    int lora_bf16;
    int lgn[FT_LORA_NGROUP];     /* targeted modules per group */
    int lslot[FT_LORA_NMOD];     /* module j's block in its group (-1: not targeted) */
    uint16_t *lAg[FT_MAX_LAYERS][FT_LORA_NGROUP];
    uint16_t *lAg_buf;           /* owns every lAg */
    float *lws;                  /* lora_up_forward/_backward workspace */
    float *ldug;                 /* (BT, 3r) du of a group */
    uint16_t *ldugb;             /* (BT, 3r) the same as bf16 */
    float *ldAg;                 /* (3r, maxK) dA of a group */
    uint32_t *lAp;               /* a group's A_g as pair words, for the folded dinp term */
};

/* LoRA module geometry: in/out features of module j (0..6) for config c. */
void ft_lora_module_shape(const ft_config *c, int j, int *in, int *out);
/* PEFT module path of module j, e.g. "self_attn.q_proj". */
const char *ft_lora_module_name(int j);

/* Counter-based RNG shared by init and dropout. */
uint64_t ft_rng_next(uint64_t *state); /* splitmix64 step */
uint64_t ft_rng_mix(uint64_t z);       /* splitmix64 finalizer (a bijective hash) */
static inline float ft_rng_uniform(uint64_t h) {
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

#endif
