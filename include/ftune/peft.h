/*
 * PEFT adapters on disk: read a Hugging Face PEFT LoRA folder (adapter_config.json +
 * adapter_model.safetensors, keys "base_model.model.<module>.lora_A.weight" (r, in) and
 * ".lora_B.weight" (out, r)) and merge it into a loaded model: W += scale * B @ A with
 * scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
 * With PEFT's trainable tokens (trainable_token_indices; keys "base_model.model.model.embed_tokens.
 * token_adapter.trainable_tokens_delta" and, untied, "base_model.model.lm_head.token_adapter.
 * trainable_tokens_delta", each (n, C) holding the new rows) the merge index_copies those rows into
 * the embedding / head as PEFT's TrainableTokensLayer.merge does.
 * Only the modules PEFT would wrap get their pair: target_modules minus exclude_modules, matched
 * as PEFT's check_target_module_exists does (a regex string for the whole key, "all-linear", a
 * list of names or key suffixes, null for q_proj/v_proj); a pair of another module is refused.
 * Refused with a clear error: other peft_types, DoRA, fan_in_fan_out, bias training,
 * modules_to_save, rank/alpha patterns, targets outside the 7 Llama projections.
 * Writing adapters is ft_lora_save (include/ftune/train.h).
 */
#ifndef FTUNE_PEFT_H
#define FTUNE_PEFT_H

#include "ftune/model.h"

typedef struct {
    char module[192];  /* HF weight name it modifies, e.g. model.layers.0.self_attn.q_proj.weight */
    int out, in;
    float *A;          /* (r, in) */
    float *B;          /* (out, r) */
} ft_lora_pair;

typedef struct {
    int r;
    float alpha;
    int use_rslora;
    float scale;       /* alpha/r or alpha/sqrt(r), as PEFT computes it */
    ft_lora_pair *pairs;
    int n_pairs;
    /* PEFT trainable tokens (LoraConfig.trainable_token_indices): [0] embed_tokens, [1] an untied
     * lm_head (a tied head shares [0], as PEFT ties it). The rows' new values, not differences. */
    int n_tok[2];
    int *tok_ids[2];     /* (n_tok) */
    float *tok_rows[2];  /* (n_tok, C) */
} ft_adapter;

/* Read `dir` and check every pair against the model's config (shapes, layer range). Errors name
 * the file and the key or tensor. */
ft_status ft_adapter_load(ft_adapter *a, const char *dir, const ft_model *m);
void ft_adapter_free(ft_adapter *a);
/* W += scale * (B @ A) for every pair, in f32 (B @ A accumulated in double per element); then
 * the trainable-token rows replace the base rows. */
ft_status ft_adapter_merge(ft_model *m, const ft_adapter *a);
/* Load `dir` into `m` and merge it (what `--adapter DIR` does). */
ft_status ft_adapter_apply(ft_model *m, const char *dir);

#endif
