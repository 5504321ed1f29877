/*
 * The Llama-family model: config.json, the weight table, the forward pass (training-style over a
 * (B,T) batch with saved activations, and incremental with a KV cache for generation), sampling.
 *
 * Families: llama (1/2/3/3.x, llama3 rope scaling, explicit head_dim, tied or untied head, GQA),
 * mistral, qwen2 (q/k/v biases), qwen3 (per-head q_norm/k_norm). Everything else is rejected.
 *
 * Weights live in one contiguous f32 buffer (`params`) laid out by the table below; gradients,
 * AdamW moments and LoRA use the same table so offsets agree everywhere.
 */
#ifndef FTUNE_MODEL_H
#define FTUNE_MODEL_H

#include "ftune/core.h"
#include "ftune/safetensors.h"

#define FT_MAX_LAYERS 256

typedef enum { FT_FAMILY_LLAMA, FT_FAMILY_MISTRAL, FT_FAMILY_QWEN2, FT_FAMILY_QWEN3 } ft_family;
typedef enum { FT_ROPE_DEFAULT, FT_ROPE_LLAMA3 } ft_rope_type;

typedef struct {
    ft_family family;
    char model_type[32];   /* as in config.json */
    int dim;               /* C: hidden_size */
    int hidden_dim;        /* intermediate_size */
    int n_layers;          /* L */
    int n_heads;           /* H */
    int n_kv_heads;        /* KV */
    int head_dim;          /* D (config head_dim, else dim / n_heads) */
    int vocab_size;        /* V */
    int max_seq_len;       /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    ft_rope_type rope_type;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int tie_embeddings;
    int qkv_bias;          /* qwen2: q/k/v projections have biases */
    int o_bias, mlp_bias;  /* llama attention_bias / mlp_bias */
    int qk_norm;           /* qwen3 */
    ft_dtype torch_dtype;  /* storage dtype to write full models back in */
    int bos_id, eos_id;    /* -1 if absent; a list of eos ids keeps only the first */
    int sliding_window;    /* mistral/qwen2/qwen3 window, 0 = none. Not applied: attention is full
                              causal, which equals windowed attention for T <= window, so the usable
                              context is capped there (ft_config_context). */
} ft_config;

/* Positions the model can be run over here: max_position_embeddings, capped at sliding_window
 * (windowed attention is not implemented; within the window full causal attention is exact).
 * Training, generate and chat refuse to go beyond it. */
int ft_config_context(const ft_config *c);

/* Parse config.json text. `path` is only used in error messages ("path: key 'x' ..."). */
ft_status ft_config_parse(ft_config *cfg, const char *path, const char *json, size_t len);
ft_status ft_config_load(ft_config *cfg, const char *model_dir);
/* Serialize back to HF config.json text (malloc'ed). */
ft_status ft_config_to_json(const ft_config *cfg, char **out);
/* RoPE inverse frequencies (D/2 floats) exactly as HF computes them in float32, incl. llama3 scaling. */
void ft_rope_inv_freq(const ft_config *cfg, float *out);

/*
 * The weight table: X(field, hf_name_suffix, rows, cols, present)
 *   rows/cols are expressions of `c` (const ft_config *); cols == 0 means a 1-D tensor.
 *   Per-layer HF name is "model.layers.<l>." suffix. Fields become float * in ft_layer.
 */
#define FT_LAYER_TENSORS(X)                                                                        \
    X(attn_norm, "input_layernorm.weight", c->dim, 0, 1)                                           \
    X(wq, "self_attn.q_proj.weight", c->n_heads * c->head_dim, c->dim, 1)                          \
    X(bq, "self_attn.q_proj.bias", c->n_heads * c->head_dim, 0, c->qkv_bias)                       \
    X(wk, "self_attn.k_proj.weight", c->n_kv_heads * c->head_dim, c->dim, 1)                       \
    X(bk, "self_attn.k_proj.bias", c->n_kv_heads * c->head_dim, 0, c->qkv_bias)                    \
    X(wv, "self_attn.v_proj.weight", c->n_kv_heads * c->head_dim, c->dim, 1)                       \
    X(bv, "self_attn.v_proj.bias", c->n_kv_heads * c->head_dim, 0, c->qkv_bias)                    \
    X(q_norm, "self_attn.q_norm.weight", c->head_dim, 0, c->qk_norm)                               \
    X(k_norm, "self_attn.k_norm.weight", c->head_dim, 0, c->qk_norm)                               \
    X(wo, "self_attn.o_proj.weight", c->dim, c->n_heads * c->head_dim, 1)                          \
    X(bo, "self_attn.o_proj.bias", c->dim, 0, c->o_bias)                                           \
    X(mlp_norm, "post_attention_layernorm.weight", c->dim, 0, 1)                                   \
    X(w_gate, "mlp.gate_proj.weight", c->hidden_dim, c->dim, 1)                                    \
    X(b_gate, "mlp.gate_proj.bias", c->hidden_dim, 0, c->mlp_bias)                                 \
    X(w_up, "mlp.up_proj.weight", c->hidden_dim, c->dim, 1)                                        \
    X(b_up, "mlp.up_proj.bias", c->hidden_dim, 0, c->mlp_bias)                                     \
    X(w_down, "mlp.down_proj.weight", c->dim, c->hidden_dim, 1)                                    \
    X(b_down, "mlp.down_proj.bias", c->dim, 0, c->mlp_bias)

/* Global tensors: X(field, hf_name, rows, cols, present) */
#define FT_GLOBAL_TENSORS(X)                                                                       \
    X(embed, "model.embed_tokens.weight", c->vocab_size, c->dim, 1)                                \
    X(final_norm, "model.norm.weight", c->dim, 0, 1)                                               \
    X(lm_head, "lm_head.weight", c->vocab_size, c->dim, !c->tie_embeddings)

typedef struct {
#define FT_X_FIELD(f, name, r, k, present) float *f; /* NULL when absent */
    FT_LAYER_TENSORS(FT_X_FIELD)
} ft_layer;

typedef struct {
    FT_GLOBAL_TENSORS(FT_X_FIELD)
#undef FT_X_FIELD
    ft_layer layers[FT_MAX_LAYERS];
} ft_weights;

/* One entry per present tensor, in table order (globals first, then layer 0, 1, ...). */
typedef struct {
    char name[128];     /* HF name, e.g. "model.layers.3.self_attn.q_proj.weight" */
    int layer;          /* -1 for globals */
    int rows, cols;     /* cols == 0: 1-D */
    size_t offset;      /* in floats, into the params buffer */
    size_t numel;
} ft_tensor_info;

/* Build the tensor list for a config. *out is malloc'ed; returns the total float count. */
ft_status ft_weights_layout(const ft_config *c, ft_tensor_info **out, int *n_out, size_t *total);
/* Point every field of `w` at its place in `base` (a buffer of `total` floats). Also used for
 * gradient buffers, so grads have the same struct shape. */
void ft_weights_bind(ft_weights *w, const ft_config *c, float *base);
/* Check a safetensors set against the layout: every tensor present, float dtype (F32/F16/BF16),
 * shape as the config says; no unexpected tensors (rotary_emb.inv_freq buffers and, when tied,
 * lm_head.weight are ignored). Errors name the tensor and its file. */
ft_status ft_weights_check(const ft_config *c, const ft_tensor_info *ts, int n, const ft_st_set *set);

typedef struct {
    ft_config cfg;
    ft_tensor_info *tensors;
    int n_tensors;
    size_t n_params;
    float *params;   /* (n_params) f32 copy of all weights */
    ft_weights w;
    float *rope_inv_freq; /* (D/2), llama3 scaling applied */
} ft_model;

/* Load config.json + safetensors from a HF folder: checks every tensor's presence, dtype and
 * shape against the config (error names the tensor), converts F16/BF16 to f32. */
ft_status ft_model_load(ft_model *m, const char *dir);
void ft_model_free(ft_model *m);
/* Write the model (config.json + model.safetensors in cfg.torch_dtype) to a folder. */
ft_status ft_model_save(const ft_model *m, const char *dir);

/* ---- inference: KV cache and forward (src/model/forward.c) ---- */

/* Keys and values of every layer for positions 0..max_seq-1, plus the activation scratch of one
 * chunk of tokens (prompts longer than a chunk are processed chunk by chunk), all allocated once
 * in _init: ft_model_forward never allocates. */
typedef struct {
    int max_seq;  /* positions the cache can hold */
    int chunk;    /* tokens processed per batched pass */
    int n_layers;
    int kv_dim;   /* KV * D */
    float *k, *v; /* (L, max_seq, KV*D) */
    float *x, *xb, *q, *att, *hb, *hb2; /* (chunk, C) (chunk, C) (chunk, H*D) x2 (chunk, hidden) x2 */
    int *pos;     /* (chunk) */
    float *scores; /* (threads, max_seq) attention scratch */
} ft_kv_cache;

/* Allocate a cache for `max_seq` positions of model config `cfg`. *cache is zeroed on failure.
 * `chunk` may be lowered (never raised) after init, e.g. by tests of the chunked path. */
ft_status ft_kv_cache_init(ft_kv_cache *cache, const ft_config *cfg, int max_seq);
void ft_kv_cache_free(ft_kv_cache *cache); /* NULL-safe; leaves *cache zeroed */

/* Run tokens ids[0..n) at positions pos0..pos0+n-1, reading the cache for positions < pos0 and
 * writing it for the new ones (exact f32, the same arithmetic as HF's eager forward). logits:
 * (n, V) when all_logits, else (V) for the last token only. Returns FT_ERR_ARG if an id is out of
 * range or pos0 + n exceeds the cache. */
ft_status ft_model_forward(const ft_model *m, ft_kv_cache *cache, const int *ids, int n, int pos0,
                           float *logits, int all_logits);

/* ---- sampling and generation (src/model/sample.c) ---- */

typedef struct {
    float temperature; /* 0 = greedy (argmax, lowest id on ties) */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} ft_sample_params;

/* A sampler owns its scratch (V candidates) and its RNG state (see sample.c for the RNG). */
typedef struct {
    ft_sample_params p;
    int vocab;
    uint64_t rng;
    float *prob; /* (V) */
    int *idx;    /* (V) */
} ft_sampler;

ft_status ft_sampler_init(ft_sampler *s, int vocab, const ft_sample_params *p);
void ft_sampler_free(ft_sampler *s); /* NULL-safe */
/* Pick the next id from logits (V) (not modified). */
int ft_sampler_next(ft_sampler *s, const float *logits);

/* Generate up to max_new tokens after prompt[0..n_prompt) (n_prompt >= 1), stopping after the
 * model's EOS (which is not emitted) or when the context (ft_config_context) is full: the id
 * predicted at its last position is the last one out, so n_prompt + *n_out = context + 1 then.
 * out (max_new) receives the new ids, *n_out their count; on_token (may be NULL) is called with
 * each id as it is produced. */
ft_status ft_generate(const ft_model *m, const int *prompt, int n_prompt, int max_new,
                      const ft_sample_params *p, int *out, int *n_out,
                      void (*on_token)(int id, void *user), void *user);

#endif
