/*
 * The trainer: the YAML run configuration (Axolotl key names), checkpoints, and the training
 * loop that drives the step API of include/ftune/train.h with AdamW, clipping, schedules and
 * gradient accumulation, writing metrics.jsonl, checkpoint-N/ folders and the final outputs.
 *
 * Not here: the forward/backward (src/train/step.c), data readers (include/ftune/data.h),
 * adapter loading and merging (include/ftune/peft.h).
 */
#ifndef FTUNE_TRAINER_H
#define FTUNE_TRAINER_H

#include "ftune/instruct.h"
#include "ftune/optim.h"
#include "ftune/train.h"

/* ---------------------------------------------------------------- configuration ---- */

typedef struct {
    char *path;   /* .txt, .jsonl or .json */
    char *type;   /* "text" | "completion" */
    char *field;  /* JSON field holding the text (Axolotl's `field`), default "text" */
    /* instruction data (include/ftune/instruct.h): Axolotl's column mapping, NULL = the type's
     * default names */
    char *field_system, *field_instruction, *field_input, *field_output;
    char *field_messages, *message_field_role, *message_field_content;
    char *field_prompt, *field_chosen, *field_rejected;
    int skip_invalid; /* count and drop invalid records instead of failing */
} ft_dataset_spec;

/* Every supported key. Numbers that HF accepts as "a fraction of the run" (< 1) are kept as
 * double and resolved by ft_train_config_steps(). Strings are malloc'ed (ft_train_config_free). */
typedef struct {
    char *base_model;
    ft_dataset_spec *datasets;
    int n_datasets;
    int sequence_len;
    ft_method method;            /* adapter: (none) full | lora; unfrozen_parameters → freeze */
    ft_lora_config lora;         /* lora_r, lora_alpha, lora_dropout, peft_use_rslora, targets */
    int lora_target_linear;
    char **unfrozen;             /* unfrozen_parameters regexes */
    int n_unfrozen;
    int micro_batch_size;
    int gradient_accumulation_steps;
    double num_epochs;
    int64_t max_steps;           /* -1: from num_epochs */
    double learning_rate;
    ft_schedule lr_scheduler;
    int64_t warmup_steps;
    char optimizer[32];
    ft_adamw_hparams adam;       /* adam_beta1, adam_beta2, adam_epsilon, weight_decay */
    double max_grad_norm;        /* 0: no clipping */
    int gradient_checkpointing;
    int bf16;                    /* bf16 mixed precision where the CPU has AVX512-BF16 (default) */
    uint64_t seed;
    char *output_dir;
    double save_steps;           /* 0: only the final output; < 1: fraction of the run */
    int save_total_limit;        /* 0: keep all */
    char *resume_from_checkpoint; /* NULL, a path, or "auto" */
    double logging_steps;
    double val_set_size;         /* < 1: fraction of rows; >= 1: count of rows */
    double eval_steps;           /* 0: evaluate at the start and the end only */
    char *chat_template;         /* template name or tokenizer_default (NULL: by dataset type) */
    int train_on_inputs;         /* 0: loss on assistant turns only */
    int sample_packing;          /* pack samples into rows, attention blocked between them */
    int truncation;              /* ft_truncation: error | drop | truncate */
    int shuffle_merged_datasets; /* shuffle the mixed records with seed (Axolotl default true) */
    /* peft_trainable_token_indices (Axolotl; PEFT LoraConfig.trainable_token_indices): a list
     * (embedding rows) or a dict {embed_tokens: [...], lm_head: [...]}; ids are checked against
     * the vocabulary once the model is loaded (ft_train_config_check_model) */
    int *tok_embed, *tok_head;
    int n_tok_embed, n_tok_head;
    int tok_as_dict;
    char *tok_where;             /* "file:line" of the key, for those later errors */
    char **notes;                /* keys accepted but ignored, one line each, for the CLI */
    int n_notes;
} ft_train_config;

/* The defaults (the table in src/train/config.c and the README). */
void ft_train_config_defaults(ft_train_config *c);
void ft_train_config_free(ft_train_config *c);
/* Apply a YAML document (a mapping at the top). `label` names it in errors: "label:LINE: ...".
 * Keys already set by an earlier document are overridden; a key twice in one document is an
 * error. */
ft_status ft_train_config_apply_yaml(ft_train_config *c, const char *label, const char *text,
                                     size_t len);
/* Read and apply a YAML file. */
ft_status ft_train_config_load(ft_train_config *c, const char *path);
/* Apply one "--set key=value" override; value is YAML (so lists work: key=[a, b]). */
ft_status ft_train_config_set(ft_train_config *c, const char *assignment);
/* After everything is applied: required keys, cross-key checks, and the derived values
 * (unfrozen_parameters without an adapter → freeze; lora_target_linear → all 7 projections). */
ft_status ft_train_config_finish(ft_train_config *c);

/* Checks that need the model's config: trainable-token ids inside the vocabulary, lm_head ids on
 * a tied model equal to embed_tokens'. Errors name the key and its line. */
ft_status ft_train_config_check_model(const ft_train_config *c, const ft_config *mc);

/* 1 if the run uses the instruction-data pipeline (any dataset type other than text/completion, or
 * sample_packing / a chat template asked for), 0 for plain-text continued pre-training. */
int ft_train_config_is_sft(const ft_train_config *c);
/* The instruction-data view of the config; *src is malloc'ed (n_datasets entries) and points into
 * `c`, which must outlive it. */
ft_status ft_train_config_sft(const ft_train_config *c, ft_sft_config *out, ft_sft_source **src);

/* Resolve a possibly fractional step count (HF: ratio < 1 → ceil(ratio * total)); 0 stays 0. */
int64_t ft_train_config_steps(double v, int64_t total);

/* ------------------------------------------------------------------ checkpoints ---- */

/* The trainer state a checkpoint holds besides the trainable tensors and AdamW moments. */
typedef struct {
    int64_t step;          /* optimizer steps done */
    int64_t epoch;         /* epoch of the next micro-batch */
    int64_t row;           /* rows consumed: step * micro_batch_size * grad. accum. steps */
    uint64_t data_rng;     /* shuffle RNG state */
    uint64_t model_rng;    /* ft_train_rng_state (LoRA dropout) */
    double loss_sum;       /* running loss since the last log line, kept for identical logs */
    int64_t loss_count;
} ft_train_state;

/* What a run's result depends on besides the state above: the settings that shape the trajectory
 * (learning rate and schedule, batch shape, method, seed, precision, ...; not the run's length, so
 * a run can be extended), the base
 * model and the training rows, as key -> printable value (model and data as 64-bit fingerprints).
 * Every checkpoint records it and a resume compares it, so a run is never continued by mistake with
 * another learning rate, dataset or base model (that would not give "the same result").
 * gradient_checkpointing is not in it: it gives the same gradients either way. */
#define FT_RUN_ID_MAX 48
typedef struct {
    int n;
    char key[FT_RUN_ID_MAX][40];
    char value[FT_RUN_ID_MAX][160];
} ft_run_id;
/* Set key to the printf-formatted value (replacing an earlier value of the same key). */
void ft_run_id_set(ft_run_id *id, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 64-bit FNV-1a over n bytes, continuing from h (start with FT_FNV_SEED). */
#define FT_FNV_SEED 0xcbf29ce484222325ull
uint64_t ft_fnv1a(uint64_t h, const void *data, size_t n);

/* Write `dir` atomically: everything goes into "<dir>.tmp.<pid>", each file fsynced, then the
 * folder is renamed to `dir` and the parent fsynced. Holds trainer_state.json (step, epoch, row,
 * RNG states, tensor names, the run identity `id` if not NULL) and trainable.safetensors (params,
 * adam_m, adam_v per tensor). */
ft_status ft_checkpoint_save(const char *dir, const ft_train_state *st, const ft_run_id *id,
                             const ft_trainable *t, int n_t, const float *params,
                             const ft_adamw *opt);
/* Load a checkpoint written by ft_checkpoint_save into the same trainable layout (every name and
 * shape must match); fills *st and restores params, opt->m, opt->v and opt->step. With `expect`,
 * every key of it must be recorded in the checkpoint with the same value, else the error names
 * the first key that differs and both values (nothing is loaded then). */
ft_status ft_checkpoint_load(const char *dir, ft_train_state *st, const ft_run_id *expect,
                             const ft_trainable *t, int n_t, float *params, ft_adamw *opt);
/* The complete checkpoint-N folder with the largest N in output_dir, malloc'ed into *out (NULL
 * if none). Temporary folders are ignored. */
ft_status ft_checkpoint_latest(const char *output_dir, char **out);
/* Remove what an interrupted save or prune left behind: checkpoint-N.tmp.* / .del.* folders, and
 * final outputs' temporaries (adapter_model.safetensors.tmp.PID, config.json.tmp.PID, ...) whose
 * process no longer runs. */
ft_status ft_checkpoint_clean(const char *output_dir);
/* Delete the oldest checkpoint-N folders so that at most `keep` remain (keep <= 0: keep all). */
ft_status ft_checkpoint_prune(const char *output_dir, int keep);

/* ------------------------------------------------------------------------ run ---- */

/* One optimizer step over GA micro-batches of B rows (inputs, labels: (GA*B, T), labels already
 * shifted, -100 = no target): zero the grads, run the micro steps with loss_scale = 1 / (targets
 * of the whole step), clip the global grad norm to max_grad_norm (0 = off), AdamW with `lr`.
 * *loss is the step's mean NLL, *grad_norm the norm before clipping. */
ft_status ft_train_step(ft_train_model *tm, ft_adamw *opt, const int *inputs, const int *labels,
                        int B, int GA, int T, double lr, double max_grad_norm, double *loss,
                        double *grad_norm);

/* The fused AdamW: a model built with grad_ready = ft_fused_adamw_ready and grad_ctx = a
 * ft_fused_adamw gets each layer's tensors updated inside the backward, as soon as the layer's
 * gradients are complete (ft_train_options.grad_ready), in one parallel region (ft_adamw_tensors)
 * — the same numbers as ft_train_step's AdamW, bit for bit,
 * without a model-size gradient buffer. ft_train_step then needs GA 1 and max_grad_norm 0 (no
 * global norm exists before the updates), fills the context itself and reports the gradient norm
 * from the per-tensor sums. The trainer uses it for full and freeze runs that allow it. */
typedef struct {
    ft_adamw *opt;
    float *params;
    const ft_trainable *t;
    double lr;
    double sumsq; /* squared gradient norm of the step so far */
} ft_fused_adamw;
void ft_fused_adamw_ready(void *ctx, const int *tensors, int n);

/* ft_train_step with packed rows: pos and seg (GA*B, T) give each token its position and sample
 * id (attention stays inside a sample); NULL = positions 0..T-1, one sample per row. */
ft_status ft_train_step_packed(ft_train_model *tm, ft_adamw *opt, const int *inputs,
                               const int *labels, const int *pos, const int *seg, int B, int GA,
                               int T, double lr, double max_grad_norm, double *loss,
                               double *grad_norm);

/* Run training as configured: load model and data, train, write checkpoints, metrics.jsonl and
 * the final outputs into cfg->output_dir. Progress goes to stderr (a live line on a TTY). */
ft_status ft_train_run(const ft_train_config *cfg);

#endif
