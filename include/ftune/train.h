/*
 * The training-step contract shared by the gradient engine (src/train/step.c: training forward
 * with saved activations, hand-written backward, LoRA / freeze) and the trainer (src/train/
 * trainer.c: YAML config, data, AdamW, schedules, accumulation, checkpoints).
 *
 * What is trained is a list of ft_trainable tensors whose values and gradients live in two
 * contiguous buffers (`params`, `grads`) so the optimizer, gradient clipping, checkpoints and
 * (later) the MPI all-reduce each work on one flat array.
 *   full   : every model tensor; params aliases model->params.
 *   freeze : the model tensors whose HF name matches one of the `unfrozen_parameters` regexes,
 *            copied into a buffer of their own (ft_train_sync_model writes them back).
 *   lora   : A (r,in) and B (out,r) for every targeted projection, in a buffer of their own;
 *            the base stays frozen. Names follow PEFT: base_model.model.<hf module>.lora_A.weight.
 *            Optionally PEFT's trainable tokens (LoraConfig.trainable_token_indices): chosen rows
 *            of the embedding (n,C), "base_model.model.model.embed_tokens.token_adapter.
 *            trainable_tokens_delta", and of an untied lm_head, "base_model.model.lm_head.
 *            token_adapter.trainable_tokens_delta"; each holds the rows' new values (not a
 *            difference), initialised to the base rows. A tied head uses the embedding's.
 */
#ifndef FTUNE_TRAIN_H
#define FTUNE_TRAIN_H

#include "ftune/model.h"

typedef enum { FT_METHOD_FULL, FT_METHOD_FREEZE, FT_METHOD_LORA } ft_method;

/* LoRA target modules, as bits; names as PEFT spells them. */
enum {
    FT_LORA_Q = 1 << 0,    /* q_proj */
    FT_LORA_K = 1 << 1,    /* k_proj */
    FT_LORA_V = 1 << 2,    /* v_proj */
    FT_LORA_O = 1 << 3,    /* o_proj */
    FT_LORA_GATE = 1 << 4, /* gate_proj */
    FT_LORA_UP = 1 << 5,   /* up_proj */
    FT_LORA_DOWN = 1 << 6, /* down_proj */
    FT_LORA_ALL_LINEAR = 0x7f,
};

typedef struct {
    int r;
    float alpha;
    float dropout;     /* probability; 0 = off */
    int use_rslora;    /* scale alpha/sqrt(r) instead of alpha/r */
    unsigned targets;  /* FT_LORA_* bits */
} ft_lora_config;

typedef struct {
    char name[192];      /* HF name (full/freeze) or PEFT name (lora) */
    float *param, *grad; /* into the trainable params / grads buffers */
    size_t numel;
    int rows, cols;      /* cols == 0: 1-D */
    int decay;           /* 1 if weight decay applies (not biases, not norms) */
} ft_trainable;

typedef struct ft_train_model ft_train_model; /* opaque: activations, scratch, LoRA state */

typedef struct {
    ft_method method;
    ft_lora_config lora;
    const char *const *unfrozen; /* freeze: regexes (PCRE2) over HF names; n_unfrozen of them */
    int n_unfrozen;
    int B, T;                    /* micro-batch shape: buffers are sized once for it */
    int grad_checkpointing;      /* keep only layer inputs, recompute in backward */
    uint64_t seed;               /* LoRA init and dropout */
    /* LoRA only: PEFT trainable tokens. tok_embed (n_tok_embed distinct ids): embedding rows
     * trained (with tied embeddings also the head's, which is the same tensor); tok_head: rows
     * of an untied lm_head (a tied model accepts only tok_head == tok_embed, PEFT's tying).
     * tok_as_dict: adapter_config.json writes the dict form {"embed_tokens": [...],
     * "lm_head": [...]} instead of the list. Copied at init. */
    const int *tok_embed, *tok_head;
    int n_tok_embed, n_tok_head;
    int tok_as_dict;
    int bf16;                    /* 1: bf16 mixed precision where the CPU has AVX512-BF16 (bf16
                                    matmul operands, f32 accumulation, f32 master weights, norms,
                                    softmax and loss); 0 (or no AVX512-BF16): the exact f32 path.
                                    Callers that compare with a reference (logprobs) pass 0. */
    int bf16_keep_f32;           /* bf16 mode: keep the model's f32 copy of frozen linear
                                    weights. 0 (default): each one whose values are all bf16
                                    values (a bf16 checkpoint) is packed at init and its f32
                                    memory given back to the OS, the f32 values written back
                                    (exactly) by ft_train_sync_model and ft_train_model_free;
                                    until then the model's f32 copy of them reads as zero. */
    /* Fused optimizer (full and freeze; NULL: off). ft_train_micro_step calls
     * grad_ready(grad_ctx, tensors, n) with the trained tensors whose gradients just became
     * complete in the backward (indices in ft_train_tensors order, ascending): once per layer as
     * its backward ends, then once for the rest (embedding, final norm, head) — for an optimizer
     * update in place (PyTorch's optimizer in backward), all of a call's tensors at once (one
     * parallel region: ft_adamw_tensors). A layer's weights are read for the last time in its own
     * backward, so the update changes nothing the step still computes. The gradients of all
     * layers then share one layer's buffer (a tensor's grad is valid only inside its call): no
     * model-size gradient
     * buffer exists. Only for optimizer steps of one micro-step without global gradient clipping
     * (the caller's business); ft_train_grads is then not a whole gradient. The train model
     * marks its bf16 copies stale itself after the calls. */
    void (*grad_ready)(void *grad_ctx, const int *tensors, int n);
    void *grad_ctx;
} ft_train_options;

/* Build the trainable view of `m` (which must outlive it), allocate every buffer the step needs
 * (no allocation happens inside a step) and initialise LoRA (A kaiming-uniform a=sqrt(5), B=0).
 * In bf16 mode, frozen linear weights may be released from m's f32 buffer until sync or free
 * (see bf16_keep_f32): nothing may read m->params in between. */
ft_status ft_train_model_init(ft_train_model **out, ft_model *m, const ft_train_options *opt);
void ft_train_model_free(ft_train_model *tm);

/* The trainable tensors (stable pointers) and the two flat buffers behind them. */
const ft_trainable *ft_train_tensors(const ft_train_model *tm, int *n);
float *ft_train_params(ft_train_model *tm, size_t *n);
float *ft_train_grads(ft_train_model *tm, size_t *n);
/* The grad_ready hook and context the model was built with (NULL, NULL: none). */
void ft_train_grad_hook(const ft_train_model *tm, void (**fn)(void *, const int *, int),
                        void **ctx);

/* Zero the gradients: the start of an optimizer step. In bf16 mode it also marks the bf16 copies
 * of the trained weights stale, so the next micro-step (or eval) repacks them once — the
 * micro-steps of one accumulation cycle then share one packing. */
void ft_train_zero_grad(ft_train_model *tm);
/* Say that the trainable parameters were written (an optimizer update, a checkpoint load, any
 * direct write): the bf16 copies are repacked before the next micro-step or eval. A caller that
 * writes parameters and then runs ft_train_eval or a micro-step without ft_train_zero_grad in
 * between must call it (the f32 path reads the parameters directly and needs nothing). */
void ft_train_params_changed(ft_train_model *tm);

/* One micro-batch: forward, masked cross-entropy (labels == -100 carry no loss; label at
 * position t is the target for the prediction made at t, i.e. already shifted by the caller),
 * backward. The gradient of loss_scale * (sum of target NLL) is ADDED into the grads, so the
 * caller sets loss_scale = 1 / (targets in the whole optimizer step) to get the step's mean.
 * pos (B,T) positions and seg (B,T) packed-sample ids may be NULL (0..T-1, one sample).
 * T may be smaller than the T given at init. Writes the NLL sum and target count. */
ft_status ft_train_micro_step(ft_train_model *tm, const int *inputs, const int *labels,
                              const int *pos, const int *seg, int B, int T, float loss_scale,
                              double *nll_sum, int64_t *n_targets);

/* Evaluation only (no backward, dropout off): NLL sum and target count. */
ft_status ft_train_eval(ft_train_model *tm, const int *inputs, const int *labels, const int *pos,
                        const int *seg, int B, int T, double *nll_sum, int64_t *n_targets);

/* freeze: copy the trained tensors (which live in the trainable buffer) back into
 * model->params, e.g. before ft_model_save. full: no-op (params alias the model); LoRA: no-op.
 * Any method: frozen weights released in bf16 mode (bf16_keep_f32) are written back first. */
void ft_train_sync_model(ft_train_model *tm);

/* LoRA dropout RNG state, saved in checkpoints for bit-identical resume. It advances once per
 * micro-step (whatever the method); the masks of a micro-step are a pure function of it, so
 * setting it back replays the same masks (and gradient checkpointing recomputes them exactly).
 * Not torch's generator: masks are not those PyTorch would draw. */
uint64_t ft_train_rng_state(const ft_train_model *tm);
void ft_train_set_rng_state(ft_train_model *tm, uint64_t s);

/* LoRA only: write adapter_config.json + adapter_model.safetensors (PEFT layout, F32). */
ft_status ft_lora_save(const ft_train_model *tm, const char *dir, const char *base_model);

#endif
