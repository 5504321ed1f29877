/*
 * The training run configuration: a YAML file with Axolotl's key names (libyaml), then
 * `--set key=value` overrides, then cross-key validation. Every error names the key and the line
 * ("config.yaml:7: unknown key 'lora_rr' (did you mean 'lora_r'?)").
 *
 * Defaults (Axolotl where it has one, else HF TrainingArguments / PEFT LoraConfig):
 *
 *   key                          default            from    (a null value, `key:`, is the default)
 *   base_model, datasets         (required)
 *   sequence_len                 512                Axolotl
 *   adapter                      (none: full FT)    Axolotl; `lora` = LoRA
 *   unfrozen_parameters          (none)             Axolotl; set without adapter = freeze
 *   lora_r / lora_alpha          8 / 8              PEFT LoraConfig
 *   lora_dropout                 0.0                PEFT LoraConfig
 *   lora_target_modules          [q_proj, v_proj]   PEFT's default for Llama-family models
 *   lora_target_linear           false              Axolotl (true = all 7 projections)
 *   peft_use_rslora              false              Axolotl / PEFT use_rslora
 *   peft_trainable_token_indices (none)             Axolotl / PEFT trainable_token_indices
 *   micro_batch_size             1                  Axolotl
 *   gradient_accumulation_steps  1                  Axolotl
 *   num_epochs                   1                  Axolotl
 *   max_steps                    -1 (from epochs)   HF
 *   learning_rate                5e-5               HF
 *   lr_scheduler                 cosine             Axolotl
 *   warmup_steps                 0                  HF
 *   optimizer                    adamw_torch        HF
 *   weight_decay                 0.0                HF
 *   adam_beta1/adam_beta2        0.9 / 0.999        HF
 *   adam_epsilon                 1e-8               HF
 *   max_grad_norm                1.0                HF (0 = no clipping)
 *   gradient_checkpointing       false              HF
 *   bf16                         true (auto)        HF/Axolotl: bf16 matmuls with f32 master
 *                                                   weights where the CPU has AVX512-BF16;
 *                                                   false = exact f32; `auto` = the default
 *   seed                         42                 HF
 *   output_dir                   ./model-out        Axolotl
 *   save_steps                   500                HF (< 1: fraction of the run; 0: final only)
 *   save_total_limit             (keep all)         HF
 *   resume_from_checkpoint       (none)             path or `auto` (latest in output_dir)
 *   logging_steps                1                  ftune (HF's 500 suits only long runs)
 *   val_set_size                 0                  Axolotl (< 1: fraction; >= 1: rows)
 *   eval_steps                   (start and end)    HF (< 1: fraction of the run)
 *
 * Some Axolotl keys have no effect here but appear in most Axolotl files (wandb_*, strict, fp16,
 * ...): they are accepted when they ask for nothing ftune lacks and recorded as notes; asking for
 * something ftune does not do (load_in_4bit: true, sample_packing: true) is an error.
 */
#include "ftune/trainer.h"
#include "ftune/instruct.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void ft_train_config_defaults(ft_train_config *c) {
    memset(c, 0, sizeof *c);
    c->sequence_len = 512;
    c->method = FT_METHOD_FULL;
    c->lora = (ft_lora_config){.r = 8, .alpha = 8, .dropout = 0, .use_rslora = 0,
                               .targets = FT_LORA_Q | FT_LORA_V};
    c->micro_batch_size = 1;
    c->gradient_accumulation_steps = 1;
    c->num_epochs = 1;
    c->max_steps = -1;
    c->learning_rate = 5e-5;
    c->lr_scheduler = FT_SCHED_COSINE;
    snprintf(c->optimizer, sizeof c->optimizer, "adamw_torch");
    c->adam = (ft_adamw_hparams){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0};
    c->max_grad_norm = 1.0;
    c->bf16 = 1;
    c->seed = 42;
    c->save_steps = 500;
    c->shuffle_merged_datasets = 1;
    c->logging_steps = 1;
    c->output_dir = ft_strdup("./model-out"); /* NULL only without memory: checked by _finish */
}

static void free_strs(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void free_datasets(ft_train_config *c) {
    for (int i = 0; i < c->n_datasets; i++) {
        free(c->datasets[i].path);
        free(c->datasets[i].type);
        free(c->datasets[i].field);
        free(c->datasets[i].field_system);
        free(c->datasets[i].field_instruction);
        free(c->datasets[i].field_input);
        free(c->datasets[i].field_output);
        free(c->datasets[i].field_messages);
        free(c->datasets[i].message_field_role);
        free(c->datasets[i].message_field_content);
        free(c->datasets[i].field_prompt);
        free(c->datasets[i].field_chosen);
        free(c->datasets[i].field_rejected);
    }
    free(c->datasets);
    c->datasets = NULL;
    c->n_datasets = 0;
}

void ft_train_config_free(ft_train_config *c) {
    if (!c) return;
    free(c->base_model);
    free_datasets(c);
    free_strs(c->unfrozen, c->n_unfrozen);
    free(c->output_dir);
    free(c->chat_template);
    free(c->resume_from_checkpoint);
    free_strs(c->notes, c->n_notes);
    free(c->tok_embed);
    free(c->tok_head);
    free(c->tok_where);
    memset(c, 0, sizeof *c);
}

/* ---- parsing context and error messages ---- */

typedef struct {
    yaml_document_t *doc;
    const char *label;
    int with_lines; /* 0 for --set (one-line documents: the label says it all) */
    ft_train_config *c;
} ctx_t;

static ft_status node_err(const ctx_t *x, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ft_status node_err(const ctx_t *x, const yaml_node_t *n, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->with_lines && n)
        return ft_errorf(FT_ERR_ARG, "%s:%lu: %s", x->label, (unsigned long)n->start_mark.line + 1,
                         msg);
    return ft_errorf(FT_ERR_ARG, "%s: %s", x->label, msg);
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_null(const yaml_node_t *n) {
    if (!n || n->type != YAML_SCALAR_NODE) return 0;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = scalar(n);
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *type_name(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "a scalar";
    }
}

/* YAML 1.1 booleans as PyYAML reads them (plain scalars only). */
static int parse_bool(const yaml_node_t *n, int *out) {
    static const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    const char *s = scalar(n);
    if (!s || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return -1;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcmp(s, yes[i])) return *out = 1, 0;
        if (!strcmp(s, no[i])) return *out = 0, 0;
    }
    return -1;
}

/* A number, also from "2e-4" (a string to PyYAML, coerced by Axolotl's pydantic) or "5". */
static int parse_num(const yaml_node_t *n, double *out) {
    const char *s = scalar(n);
    if (!s || !s[0] || isspace((unsigned char)s[0])) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static ft_status get_num(const ctx_t *x, const char *key, const yaml_node_t *n, double lo,
                         double hi, int integer, double *out) {
    double v;
    if (parse_num(n, &v))
        return node_err(x, n, "key '%s': expected %s, got %s%s%s%s", key,
                        integer ? "an integer" : "a number",
                        scalar(n) ? "'" : type_name(n), scalar(n) ? scalar(n) : "",
                        scalar(n) ? "'" : "", "");
    if (integer && v != floor(v))
        return node_err(x, n, "key '%s': expected an integer, got '%s'", key, scalar(n));
    if (v < lo || v > hi) {
        if (hi >= 1e300)
            return node_err(x, n, "key '%s': %s is out of range (must be >= %g)", key, scalar(n),
                            lo);
        return node_err(x, n, "key '%s': %s is out of range [%g, %g]", key, scalar(n), lo, hi);
    }
    *out = v;
    return FT_OK;
}

static ft_status get_str(const ctx_t *x, const char *key, const yaml_node_t *n, char **out) {
    const char *s = scalar(n);
    if (!s) return node_err(x, n, "key '%s': expected a string, got %s", key, type_name(n));
    if (!s[0]) return node_err(x, n, "key '%s': empty string", key);
    char *d = ft_strdup(s);
    if (!d) return FT_ERR_NOMEM;
    free(*out);
    *out = d;
    return FT_OK;
}

/* A list of strings; a single scalar counts as a one-element list. */
static ft_status get_str_list(const ctx_t *x, const char *key, const yaml_node_t *n, char ***out,
                              int *n_out) {
    int cap = n->type == YAML_SEQUENCE_NODE
                  ? (int)(n->data.sequence.items.top - n->data.sequence.items.start)
                  : 1;
    char **v = calloc((size_t)cap + 1, sizeof(char *));
    if (!v) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    int k = 0;
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            yaml_node_t *e = yaml_document_get_node(x->doc, *it);
            if (!scalar(e) || !scalar(e)[0]) {
                free_strs(v, k);
                return node_err(x, e, "key '%s': item %d: expected a string, got %s", key, k,
                                scalar(e) ? "an empty string" : type_name(e));
            }
            if (!(v[k++] = ft_strdup(scalar(e)))) return free_strs(v, k), FT_ERR_NOMEM;
        }
    } else if (scalar(n)) {
        if (!(v[k++] = ft_strdup(scalar(n)))) return free_strs(v, k), FT_ERR_NOMEM;
    } else {
        free(v);
        return node_err(x, n, "key '%s': expected a list of strings, got %s", key, type_name(n));
    }
    free_strs(*out, *n_out);
    *out = v;
    *n_out = k;
    return FT_OK;
}

static ft_status add_note(ft_train_config *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static ft_status add_note(ft_train_config *c, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **nv = realloc(c->notes, sizeof(char *) * (size_t)(c->n_notes + 1));
    if (!nv) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    c->notes = nv;
    if (!(c->notes[c->n_notes] = ft_strdup(buf))) return FT_ERR_NOMEM;
    c->n_notes++;
    return FT_OK;
}

/* ---- the keys ---- */

static const char *lora_module_names[7] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                           "gate_proj", "up_proj", "down_proj"};

static ft_status key_datasets(const ctx_t *x, const char *key, const yaml_node_t *n) {
    if (n->type != YAML_SEQUENCE_NODE)
        return node_err(x, n, "key '%s': expected a list of {path, type}, got %s", key,
                        type_name(n));
    ft_train_config *c = x->c;
    free_datasets(c);
    int cap = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cap == 0) return node_err(x, n, "key '%s': empty list", key);
    c->datasets = calloc((size_t)cap, sizeof *c->datasets);
    if (!c->datasets) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(x->doc, *it);
        int i = c->n_datasets++;
        ft_dataset_spec *d = &c->datasets[i];
        if (e->type != YAML_MAPPING_NODE)
            return node_err(x, e, "key '%s[%d]': expected a mapping {path, type}, got %s", key, i,
                            type_name(e));
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
            const char *ks = scalar(k);
            char sub[96];
            snprintf(sub, sizeof sub, "%s[%d].%s", key, i, ks ? ks : "?");
            ft_status st = FT_OK; /* skip_invalid parsed into its own field sets none */
            if (ks && !strcmp(ks, "path")) st = get_str(x, sub, v, &d->path);
            else if (ks && !strcmp(ks, "type")) st = get_str(x, sub, v, &d->type);
            else if (ks && !strcmp(ks, "field")) st = get_str(x, sub, v, &d->field);
            else if (ks && !strcmp(ks, "field_system")) st = get_str(x, sub, v, &d->field_system);
            else if (ks && !strcmp(ks, "field_instruction"))
                st = get_str(x, sub, v, &d->field_instruction);
            else if (ks && !strcmp(ks, "field_input")) st = get_str(x, sub, v, &d->field_input);
            else if (ks && !strcmp(ks, "field_output")) st = get_str(x, sub, v, &d->field_output);
            else if (ks && !strcmp(ks, "field_messages"))
                st = get_str(x, sub, v, &d->field_messages);
            else if (ks && !strcmp(ks, "message_field_role"))
                st = get_str(x, sub, v, &d->message_field_role);
            else if (ks && !strcmp(ks, "message_field_content"))
                st = get_str(x, sub, v, &d->message_field_content);
            else if (ks && !strcmp(ks, "field_prompt")) st = get_str(x, sub, v, &d->field_prompt);
            else if (ks && !strcmp(ks, "field_chosen")) st = get_str(x, sub, v, &d->field_chosen);
            else if (ks && !strcmp(ks, "field_rejected"))
                st = get_str(x, sub, v, &d->field_rejected);
            else if (ks && !strcmp(ks, "skip_invalid")) {
                if (parse_bool(v, &d->skip_invalid))
                    st = node_err(x, v, "key '%s': expected true or false", sub);
            }
            else if (ks && (!strcmp(ks, "ds_type") || !strcmp(ks, "split")) && is_null(v)) st = FT_OK;
            else
                return node_err(x, k, "unknown key '%s' in %s[%d] (supported: path, type, field, field_system, "
                                "field_instruction, field_input, field_output, field_messages, "
                                "message_field_role, message_field_content, field_prompt, "
                                "field_chosen, field_rejected, skip_invalid)",
                                ks ? ks : "?", key, i);
            if (st) return st;
        }
        if (!d->path) return node_err(x, e, "key '%s[%d]': missing 'path'", key, i);
        if (!d->type) return node_err(x, e, "key '%s[%d]': missing 'type'", key, i);
        if (!ft_dataset_type_known(d->type))
            return node_err(x, e,
                            "key '%s[%d].type': '%s' is not supported (supported: text, "
                            "completion, alpaca, sharegpt, chat_template, dolly, flan, "
                            "preference)",
                            key, i, d->type);
        if (!d->field && !(d->field = ft_strdup("text"))) return FT_ERR_NOMEM;
    }
    return FT_OK;
}

static ft_status key_adapter(const ctx_t *x, const char *key, const yaml_node_t *n) {
    const char *s = scalar(n);
    if (s && !strcmp(s, "lora")) x->c->method = FT_METHOD_LORA;
    else if (s && !strcmp(s, "qlora"))
        return node_err(x, n, "key '%s': 'qlora' is not supported yet (supported: lora, or omit "
                              "the key for full fine-tuning)", key);
    else
        return node_err(x, n, "key '%s': '%s' is not supported (supported: lora, or omit the key "
                              "for full fine-tuning)", key, s ? s : type_name(n));
    return FT_OK;
}

static ft_status key_targets(const ctx_t *x, const char *key, const yaml_node_t *n) {
    char **v = NULL;
    int nv = 0;
    ft_status st = get_str_list(x, key, n, &v, &nv);
    if (st) return st;
    unsigned bits = 0;
    for (int i = 0; i < nv; i++) {
        int found = -1;
        for (int k = 0; k < 7; k++)
            if (!strcmp(v[i], lora_module_names[k])) found = k;
        if (!strcmp(v[i], "all-linear")) {
            bits |= FT_LORA_ALL_LINEAR;
            continue;
        }
        if (found < 0) {
            const yaml_node_t *e = n;
            if (n->type == YAML_SEQUENCE_NODE)
                e = yaml_document_get_node(x->doc, n->data.sequence.items.start[i]);
            node_err(x, e,
                     "key '%s': unknown module '%s' (supported: q_proj, k_proj, v_proj, o_proj, "
                     "gate_proj, up_proj, down_proj, all-linear)", key, v[i]);
            free_strs(v, nv);
            return FT_ERR_ARG;
        }
        bits |= 1u << found;
    }
    free_strs(v, nv);
    if (!bits) return node_err(x, n, "key '%s': empty list", key);
    x->c->lora.targets = bits;
    return FT_OK;
}

/* A list of distinct token ids (non-negative integers) into *ids (malloc'ed). */
static ft_status get_id_list(const ctx_t *x, const char *key, const yaml_node_t *n, int **ids,
                             int *n_ids) {
    if (n->type != YAML_SEQUENCE_NODE)
        return node_err(x, n, "key '%s': expected a list of token ids, got %s", key,
                        type_name(n));
    int cap = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cap == 0) return node_err(x, n, "key '%s': empty list", key);
    int *v = malloc(sizeof(int) * (size_t)cap), k = 0;
    if (!v) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(x->doc, *it);
        double d;
        char sub[128];
        snprintf(sub, sizeof sub, "%s[%d]", key, k);
        ft_status st = get_num(x, sub, e, 0, 2147483647.0, 1, &d);
        for (int q = 0; !st && q < k; q++)
            if (v[q] == (int)d)
                st = node_err(x, e, "key '%s': token id %d appears twice", key, (int)d);
        if (st) {
            free(v);
            return st;
        }
        v[k++] = (int)d;
    }
    free(*ids);
    *ids = v;
    *n_ids = k;
    return FT_OK;
}

/* peft_trainable_token_indices: [ids] (the input embedding) or {embed_tokens: [ids],
 * lm_head: [ids]}, PEFT's two forms (Axolotl passes it through to LoraConfig). */
static ft_status key_tokens(const ctx_t *x, const char *key, const yaml_node_t *n) {
    ft_train_config *c = x->c;
    free(c->tok_embed), free(c->tok_head), free(c->tok_where);
    c->tok_embed = c->tok_head = NULL;
    c->tok_where = NULL;
    c->n_tok_embed = c->n_tok_head = c->tok_as_dict = 0;
    char where[400];
    if (x->with_lines)
        snprintf(where, sizeof where, "%s:%lu", x->label, (unsigned long)n->start_mark.line + 1);
    else
        snprintf(where, sizeof where, "%s", x->label);
    if (!(c->tok_where = ft_strdup(where))) return FT_ERR_NOMEM;
    if (n->type == YAML_SEQUENCE_NODE) return get_id_list(x, key, n, &c->tok_embed, &c->n_tok_embed);
    if (n->type != YAML_MAPPING_NODE)
        return node_err(x, n, "key '%s': expected a list of token ids or a mapping {embed_tokens: "
                              "[...], lm_head: [...]}, got %s", key, type_name(n));
    c->tok_as_dict = 1;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = scalar(k);
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", key, ks ? ks : "?");
        ft_status st;
        if (ks && !strcmp(ks, "embed_tokens")) {
            if (c->tok_embed) return node_err(x, k, "key '%s' appears twice", sub);
            st = get_id_list(x, sub, v, &c->tok_embed, &c->n_tok_embed);
        } else if (ks && !strcmp(ks, "lm_head")) {
            if (c->tok_head) return node_err(x, k, "key '%s' appears twice", sub);
            st = get_id_list(x, sub, v, &c->tok_head, &c->n_tok_head);
        } else {
            return node_err(x, k, "key '%s': module '%s' is not supported (supported: "
                                  "embed_tokens, lm_head)", key, ks ? ks : type_name(k));
        }
        if (st) return st;
    }
    if (!c->n_tok_embed && !c->n_tok_head) return node_err(x, n, "key '%s': empty mapping", key);
    return FT_OK;
}

static ft_status key_scheduler(const ctx_t *x, const char *key, const yaml_node_t *n) {
    const char *s = scalar(n);
    if (!s || ft_schedule_parse(s, &x->c->lr_scheduler))
        return node_err(x, n, "key '%s': '%s' is not supported (supported: constant, "
                              "constant_with_warmup, linear, cosine)", key, s ? s : type_name(n));
    return FT_OK;
}

static ft_status key_optimizer(const ctx_t *x, const char *key, const yaml_node_t *n) {
    /* Names (HF's `optim`) whose update is torch.optim.AdamW's. adamw_hf (transformers' own
     * AdamW) applies weight decay after the update instead: different numbers, so rejected. */
    static const char *ok[] = {"adamw_torch", "adamw_torch_fused", "adamw_apex_fused",
                               "adamw_torch_xla", "adamw"};
    const char *s = scalar(n);
    for (size_t i = 0; s && i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(s, ok[i])) {
            snprintf(x->c->optimizer, sizeof x->c->optimizer, "%s", s);
            return FT_OK;
        }
    return node_err(x, n,
                    "key '%s': '%s' is not supported: ftune implements torch.optim.AdamW "
                    "(adamw_torch, adamw_torch_fused, adamw_apex_fused, adamw)",
                    key, s ? s : type_name(n));
}

static ft_status key_auto_resume(const ctx_t *x, const char *key, const yaml_node_t *n) {
    int b;
    if (parse_bool(n, &b))
        return node_err(x, n, "key '%s': expected true or false", key);
    if (b) {
        char *a = ft_strdup("auto");
        if (!a) return FT_ERR_NOMEM;
        free(x->c->resume_from_checkpoint);
        x->c->resume_from_checkpoint = a;
    }
    return FT_OK;
}

/* bf16: true | false | auto | null (auto and null: the default, true). */
static ft_status key_bf16(const ctx_t *x, const char *key, const yaml_node_t *n) {
    const char *s = scalar(n);
    int b;
    if (is_null(n) || (s && !strcmp(s, "auto"))) {
        x->c->bf16 = 1;
        return FT_OK;
    }
    if (parse_bool(n, &b)) return node_err(x, n, "key '%s': expected true, false or auto", key);
    x->c->bf16 = b;
    return FT_OK;
}

/* The table. kind: numbers carry [lo, hi]; I=int, L=int64, D=double, B=bool, S=string. */
typedef enum { K_I, K_L, K_D, K_B, K_S, K_FN } kkind;
typedef ft_status (*key_fn)(const ctx_t *, const char *, const yaml_node_t *);
typedef struct {
    const char *name;
    kkind kind;
    size_t off;
    double lo, hi;
    key_fn fn;
} key_def;

#define CF(f) offsetof(ft_train_config, f)
#define BIG 1e300
static ft_status key_truncation(const ctx_t *x, const char *key, const yaml_node_t *n) {
    static const char *names[] = {"error", "drop", "truncate"};
    const char *s = scalar(n);
    for (int i = 0; s && i < 3; i++)
        if (!strcmp(s, names[i])) return x->c->truncation = i, FT_OK;
    return node_err(x, n, "key '%s': '%s' is not supported (supported: error, drop, truncate)",
                    key, s ? s : type_name(n));
}

static const key_def keys[] = {
    {"base_model", K_S, CF(base_model), 0, 0, NULL},
    {"datasets", K_FN, 0, 0, 0, key_datasets},
    {"sequence_len", K_I, CF(sequence_len), 2, 1 << 20, NULL},
    {"adapter", K_FN, 0, 0, 0, key_adapter},
    {"lora_r", K_I, CF(lora.r), 1, 65536, NULL},
    {"lora_alpha", K_D, 0, 1e-30, BIG, NULL}, /* float field: handled below */
    {"lora_dropout", K_D, 0, 0, 0.999999, NULL},
    {"lora_target_modules", K_FN, 0, 0, 0, key_targets},
    {"lora_target_linear", K_B, CF(lora_target_linear), 0, 0, NULL},
    {"peft_use_rslora", K_B, CF(lora.use_rslora), 0, 0, NULL},
    {"peft_trainable_token_indices", K_FN, 0, 0, 0, key_tokens},
    {"unfrozen_parameters", K_FN, 0, 0, 0, NULL},
    {"micro_batch_size", K_I, CF(micro_batch_size), 1, 1 << 20, NULL},
    {"gradient_accumulation_steps", K_I, CF(gradient_accumulation_steps), 1, 1 << 20, NULL},
    {"num_epochs", K_D, CF(num_epochs), 1e-9, 1e9, NULL},
    {"max_steps", K_L, CF(max_steps), -1, 1e15, NULL},
    {"learning_rate", K_D, CF(learning_rate), 0, BIG, NULL},
    {"lr_scheduler", K_FN, 0, 0, 0, key_scheduler},
    {"warmup_steps", K_L, CF(warmup_steps), 0, 1e15, NULL},
    {"optimizer", K_FN, 0, 0, 0, key_optimizer},
    {"weight_decay", K_D, CF(adam.weight_decay), 0, BIG, NULL},
    {"adam_beta1", K_D, CF(adam.beta1), 0, 0.999999999, NULL},
    {"adam_beta2", K_D, CF(adam.beta2), 0, 0.999999999, NULL},
    {"adam_epsilon", K_D, CF(adam.eps), 0, BIG, NULL},
    {"max_grad_norm", K_D, CF(max_grad_norm), 0, BIG, NULL},
    {"gradient_checkpointing", K_B, CF(gradient_checkpointing), 0, 0, NULL},
    {"seed", K_L, CF(seed), 0, 9007199254740992.0, NULL},
    {"output_dir", K_S, CF(output_dir), 0, 0, NULL},
    {"save_steps", K_D, CF(save_steps), 0, 1e15, NULL},
    {"save_total_limit", K_I, CF(save_total_limit), 1, 1 << 30, NULL},
    {"resume_from_checkpoint", K_S, CF(resume_from_checkpoint), 0, 0, NULL},
    {"auto_resume_from_checkpoints", K_FN, 0, 0, 0, key_auto_resume},
    {"bf16", K_FN, 0, 0, 0, key_bf16},
    {"logging_steps", K_D, CF(logging_steps), 1e-9, 1e15, NULL},
    {"val_set_size", K_D, CF(val_set_size), 0, 1e15, NULL},
    {"eval_steps", K_D, CF(eval_steps), 1e-9, 1e15, NULL},
    {"chat_template", K_S, CF(chat_template), 0, 0, NULL},
    {"train_on_inputs", K_B, CF(train_on_inputs), 0, 0, NULL},
    {"sample_packing", K_B, CF(sample_packing), 0, 0, NULL},
    {"shuffle_merged_datasets", K_B, CF(shuffle_merged_datasets), 0, 0, NULL},
    {"truncation", K_FN, 0, 0, 0, key_truncation},
};

/* Axolotl keys that change nothing here when they ask for nothing: accepted with a note when
 * null/false (or any value for the purely cosmetic ones), an error when they ask for a feature. */
static const char *ignored_if_off[] = {
    "load_in_8bit", "load_in_4bit", "eval_sample_packing", "pad_to_sequence_len",
    "flash_attention", "xformers_attention", "sdp_attention", "deepspeed", "fsdp", "fsdp_config",
    "strict", "group_by_length", "lora_fan_in_fan_out", "lora_model_dir",
    "fp16", "tf32", "early_stopping_patience", "local_rank", "special_tokens",
    "debug", "dataset_prepared_path", "hub_model_id"};
static const char *ignored_any[] = {"wandb_project", "wandb_entity", "wandb_watch", "wandb_name",
                                    "wandb_log_model", "wandb_run_id", "base_model_config",
                                    "model_type", "tokenizer_type", "is_llama_derived_model",
                                    "trust_remote_code", "evals_per_epoch", "saves_per_epoch",
                                    "weight_decay_ignore", "logging_dir"};

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t s = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < s) s = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < s) s = d[i][j - 1] + 1;
            d[i][j] = s;
        }
    return d[la][lb];
}

/* Back to the default value (a null value; also how `--set key=null` undoes the file's key). */
static ft_status reset_key(ft_train_config *c, const key_def *d) {
    ft_train_config def;
    ft_train_config_defaults(&def);
    ft_status st = FT_OK;
    const char *k = d->name;
    if (!strcmp(k, "adapter")) c->method = def.method;
    else if (!strcmp(k, "lora_target_modules")) c->lora.targets = def.lora.targets;
    else if (!strcmp(k, "lr_scheduler")) c->lr_scheduler = def.lr_scheduler;
    else if (!strcmp(k, "optimizer")) memcpy(c->optimizer, def.optimizer, sizeof c->optimizer);
    else if (!strcmp(k, "lora_alpha")) c->lora.alpha = def.lora.alpha;
    else if (!strcmp(k, "lora_dropout")) c->lora.dropout = def.lora.dropout;
    else if (!strcmp(k, "seed")) c->seed = def.seed;
    else if (!strcmp(k, "bf16")) c->bf16 = def.bf16;
    else if (!strcmp(k, "datasets")) free_datasets(c);
    else if (!strcmp(k, "peft_trainable_token_indices")) {
        free(c->tok_embed), free(c->tok_head), free(c->tok_where);
        c->tok_embed = c->tok_head = NULL;
        c->tok_where = NULL;
        c->n_tok_embed = c->n_tok_head = c->tok_as_dict = 0;
    }
    else if (!strcmp(k, "unfrozen_parameters")) {
        free_strs(c->unfrozen, c->n_unfrozen);
        c->unfrozen = NULL;
        c->n_unfrozen = 0;
    } else if (d->kind == K_S) {
        char **f = (char **)((char *)c + d->off), *dv = *(char **)((char *)&def + d->off);
        free(*f);
        *f = NULL;
        if (dv && !(*f = ft_strdup(dv))) st = FT_ERR_NOMEM;
    } else if (d->kind == K_I || d->kind == K_B) {
        memcpy((char *)c + d->off, (char *)&def + d->off, sizeof(int));
    } else if (d->kind == K_L) {
        memcpy((char *)c + d->off, (char *)&def + d->off, sizeof(int64_t));
    } else if (d->kind == K_D) {
        memcpy((char *)c + d->off, (char *)&def + d->off, sizeof(double));
    }
    ft_train_config_free(&def);
    return st;
}

static ft_status apply_key(const ctx_t *x, const yaml_node_t *kn, const yaml_node_t *v) {
    const char *key = scalar(kn);
    ft_train_config *c = x->c;
    if (!key) return node_err(x, kn, "keys must be plain names, got %s", type_name(kn));
    const key_def *d = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(keys[i].name, key)) d = &keys[i];
    if (!d) {
        int off;
        for (size_t i = 0; i < sizeof ignored_any / sizeof *ignored_any; i++)
            if (!strcmp(ignored_any[i], key))
                return add_note(c, "%s: key '%s' has no effect in ftune (ignored)", x->label, key);
        for (size_t i = 0; i < sizeof ignored_if_off / sizeof *ignored_if_off; i++)
            if (!strcmp(ignored_if_off[i], key)) {
                const char *s = scalar(v);
                if (is_null(v) || (!parse_bool(v, &off) && !off) ||
                    (!strcmp(key, "fp16") && s && !strcmp(s, "auto")))
                    return add_note(c, "%s: key '%s' has no effect in ftune (ignored)", x->label,
                                    key);
                if (!strcmp(key, "tf32") || !strcmp(key, "fp16"))
                    return add_note(c,
                                    "%s: key '%s': ftune trains with float32 master weights and "
                                    "float32 or bf16 arithmetic (ignored; see bf16)", x->label, key);
                return node_err(x, v, "key '%s': '%s' asks for a feature ftune does not have",
                                key, s ? s : type_name(v));
            }
        const char *best = NULL;
        size_t bd = 99;
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            size_t e = edit_distance(key, keys[i].name);
            if (e < bd) bd = e, best = keys[i].name;
        }
        if (best && bd <= 2)
            return node_err(x, kn, "unknown key '%s' (did you mean '%s'?)", key, best);
        return node_err(x, kn, "unknown key '%s'", key);
    }
    if (is_null(v)) return reset_key(c, d); /* `key:` with no value = the default, as in Axolotl */
    if (!strcmp(key, "unfrozen_parameters")) {
        char **u = c->unfrozen;
        int nu = c->n_unfrozen;
        ft_status st = get_str_list(x, key, v, &u, &nu);
        if (st) return st;
        c->unfrozen = u;
        c->n_unfrozen = nu;
        return FT_OK;
    }
    if (d->kind == K_FN) return d->fn(x, key, v);
    if (d->kind == K_B) {
        int b;
        if (parse_bool(v, &b))
            return node_err(x, v, "key '%s': expected true or false, got %s%s%s", key,
                            scalar(v) ? "'" : type_name(v), scalar(v) ? scalar(v) : "",
                            scalar(v) ? "'" : "");
        *(int *)((char *)c + d->off) = b;
        return FT_OK;
    }
    if (d->kind == K_S) return get_str(x, key, v, (char **)((char *)c + d->off));
    double num = 0;
    ft_status st = get_num(x, key, v, d->lo, d->hi, d->kind != K_D, &num);
    if (st) return st;
    if (!strcmp(key, "lora_alpha")) c->lora.alpha = (float)num;
    else if (!strcmp(key, "lora_dropout")) c->lora.dropout = (float)num;
    else if (!strcmp(key, "seed")) c->seed = (uint64_t)num;
    else if (d->kind == K_I) *(int *)((char *)c + d->off) = (int)num;
    else if (d->kind == K_L) *(int64_t *)((char *)c + d->off) = (int64_t)num;
    else *(double *)((char *)c + d->off) = num;
    return FT_OK;
}

static ft_status apply_doc(const char *label, int with_lines, ft_train_config *c,
                           const char *text, size_t len) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return ft_errorf(FT_ERR_NOMEM, "libyaml: out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        ft_status st = ft_errorf(FT_ERR_FORMAT, "%s:%lu:%lu: YAML syntax error: %s%s%s", label,
                                 (unsigned long)parser.problem_mark.line + 1,
                                 (unsigned long)parser.problem_mark.column + 1,
                                 parser.problem ? parser.problem : "?",
                                 parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return st;
    }
    ctx_t x = {.doc = &doc, .label = label, .with_lines = with_lines, .c = c};
    ft_status st = FT_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null(root)) goto done; /* empty file: defaults only */
    if (root->type != YAML_MAPPING_NODE) {
        st = node_err(&x, root, "the top level must be a mapping of keys, got %s",
                      type_name(root));
        goto done;
    }
    /* one pass for duplicates, then apply in order */
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(&doc, p->key));
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; k && q < p; q++) {
            const char *kq = scalar(yaml_document_get_node(&doc, q->key));
            if (kq && !strcmp(k, kq)) {
                st = node_err(&x, yaml_document_get_node(&doc, p->key),
                              "key '%s' appears twice (first on line %lu)", k,
                              (unsigned long)yaml_document_get_node(&doc, q->key)->start_mark.line +
                                  1);
                goto done;
            }
        }
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        st = apply_key(&x, yaml_document_get_node(&doc, p->key),
                       yaml_document_get_node(&doc, p->value));
        if (st) goto done;
    }
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}

ft_status ft_train_config_apply_yaml(ft_train_config *c, const char *label, const char *text,
                                     size_t len) {
    return apply_doc(label, 1, c, text, len);
}

ft_status ft_train_config_load(ft_train_config *c, const char *path) {
    char *text;
    size_t len;
    ft_status st = ft_read_file(path, &text, &len);
    if (st) return st;
    st = apply_doc(path, 1, c, text, len);
    free(text);
    return st;
}

ft_status ft_train_config_set(ft_train_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return ft_errorf(FT_ERR_ARG, "--set %s: expected key=value", assignment);
    size_t kl = (size_t)(eq - assignment), vl = strlen(eq + 1);
    char *doc = malloc(kl + vl + 8), label[320];
    if (!doc) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    /* "key: value" parsed as YAML, so "[a, b]" is a list and "2e-4" a number */
    memcpy(doc, assignment, kl);
    memcpy(doc + kl, ": ", 2);
    memcpy(doc + kl + 2, eq + 1, vl);
    doc[kl + 2 + vl] = '\n';
    doc[kl + 3 + vl] = 0;
    snprintf(label, sizeof label, "--set %s", assignment);
    ft_status st = apply_doc(label, 0, c, doc, kl + 3 + vl);
    free(doc);
    return st;
}

ft_status ft_train_config_finish(ft_train_config *c) {
    if (!c->output_dir) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    if (!c->base_model) return ft_errorf(FT_ERR_ARG, "config: missing required key 'base_model'");
    if (!c->n_datasets) return ft_errorf(FT_ERR_ARG, "config: missing required key 'datasets'");
    if (c->method == FT_METHOD_LORA && c->n_unfrozen)
        return ft_errorf(FT_ERR_ARG, "config: 'unfrozen_parameters' cannot be combined with "
                                     "'adapter: lora' (the base is frozen under LoRA)");
    if ((c->n_tok_embed || c->n_tok_head) && c->method != FT_METHOD_LORA)
        return ft_errorf(FT_ERR_ARG, "%s: key 'peft_trainable_token_indices' needs 'adapter: lora' "
                         "(PEFT trains the chosen token rows alongside LoRA; without an adapter "
                         "the whole embedding is trained)", c->tok_where ? c->tok_where : "config");
    if (c->n_unfrozen && c->method == FT_METHOD_FULL) c->method = FT_METHOD_FREEZE;
    if (c->lora_target_linear) c->lora.targets = FT_LORA_ALL_LINEAR;
    if (c->max_steps == 0)
        return ft_errorf(FT_ERR_ARG, "config: 'max_steps: 0' trains nothing (use -1 or omit it)");
    return FT_OK;
}

ft_status ft_train_config_check_model(const ft_train_config *c, const ft_config *mc) {
    const char *key = "peft_trainable_token_indices";
    const char *where = c->tok_where ? c->tok_where : "config";
    const int *ids[2] = {c->tok_embed, c->tok_head};
    int n[2] = {c->n_tok_embed, c->n_tok_head};
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < n[e]; k++)
            if (ids[e][k] >= mc->vocab_size)
                return ft_errorf(FT_ERR_ARG, "%s: key '%s%s': token id %d is outside the model's "
                                 "vocabulary [0, %d)", where, key,
                                 !c->tok_as_dict ? "" : e ? ".lm_head" : ".embed_tokens",
                                 ids[e][k], mc->vocab_size);
    if (mc->tie_embeddings && n[1]) {
        int same = n[0] == n[1];
        for (int k = 0; same && k < n[0]; k++)
            same = ids[0][k] == ids[1][k];
        if (!same)
            return ft_errorf(FT_ERR_ARG, "%s: key '%s.lm_head': the model ties lm_head to "
                             "embed_tokens, so it takes embed_tokens' ids (give the same list, or "
                             "embed_tokens only)", where, key);
    }
    return FT_OK;
}

int64_t ft_train_config_steps(double v, int64_t total) {
    if (v <= 0) return 0;
    if (v < 1) return (int64_t)ceil(v * (double)total);
    return (int64_t)v;
}
