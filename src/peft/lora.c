/*
 * LoRA pieces that are not the step itself: module geometry and PEFT names, the seeded RNG used
 * for A's initialisation and for dropout masks, and the adapter writer (adapter_config.json +
 * adapter_model.safetensors in PEFT's layout). The LoRA forward/backward lives in
 * src/train/step.c next to the linears it wraps. The adapter also carries PEFT's trainable tokens
 * when the run trains some (keys ...embed_tokens.token_adapter.trainable_tokens_delta and, untied,
 * ...lm_head.token_adapter.trainable_tokens_delta: the trained rows themselves, as PEFT stores
 * them; config field trainable_token_indices; read in huggingface/peft at 5d602fd:
 * tuners/trainable_tokens/layer.py (values initialised from the base rows, index_copy'd in),
 * utils/other.py (TrainableTokensWrapper: key token_adapter.trainable_tokens_delta, a tied lm_head
 * shares the embedding's adapter and saves nothing), utils/save_and_load.py (adapter name removed
 * from the key)). Not here: DoRA, loading an adapter, merging.
 */
#include "../train/train_internal.h"

#include "ftune/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const module_names[FT_LORA_NMOD] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *ft_lora_module_name(int j) {
    FT_ASSERT(j >= 0 && j < FT_LORA_NMOD);
    return module_names[j];
}

void ft_lora_module_shape(const ft_config *c, int j, int *in, int *out) {
    int C = c->dim, HD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim,
        F = c->hidden_dim;
    switch (j) {
    case 0: *in = C, *out = HD; break;
    case 1:
    case 2: *in = C, *out = KVD; break;
    case 3: *in = HD, *out = C; break;
    case 4:
    case 5: *in = C, *out = F; break;
    case 6: *in = F, *out = C; break;
    default: FT_ASSERT(0);
    }
}

uint64_t ft_rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t ft_rng_next(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ull;
    return ft_rng_mix(*state);
}

/* A float option as the user wrote it (0.05f -> 0.05, not 0.0500000007450581). */
static double short_decimal(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)v);
    return strtod(buf, NULL);
}

/* adapter_config.json as PEFT 0.x writes it for a plain LoRA on a causal LM. */
static ft_status write_config(const ft_train_model *tm, const char *path, const char *base_model) {
    const ft_lora_config *lc = &tm->opt.lora;
    cJSON *o = cJSON_CreateObject();
    if (!o) return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", path);
    cJSON *targets = cJSON_AddArrayToObject(o, "target_modules");
    for (int j = 0; j < FT_LORA_NMOD; j++)
        if (lc->targets & (1u << j)) {
            const char *dot = strchr(module_names[j], '.');
            cJSON_AddItemToArray(targets, cJSON_CreateString(dot + 1));
        }
    cJSON_AddItemToObject(o, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(o, "auto_mapping");
    cJSON_AddStringToObject(o, "base_model_name_or_path", base_model ? base_model : "");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddBoolToObject(o, "init_lora_weights", 1);
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON_AddNullToObject(o, "layers_to_transform");
    cJSON_AddNumberToObject(o, "lora_alpha", short_decimal(lc->alpha));
    cJSON_AddNumberToObject(o, "lora_dropout", short_decimal(lc->dropout));
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", lc->r);
    cJSON_AddItemToObject(o, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(o, "revision");
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    /* PEFT >= 0.15 LoraConfig.trainable_token_indices: a list (the input embedding), or a dict
     * module name -> ids; null without trainable tokens */
    const int *ids_e = tm->tok_ids[0], *ids_h = tm->n_tok[1] ? tm->tok_ids[1] : tm->tok_ids[0];
    int n_e = tm->n_tok[0], n_h = tm->n_tok[1] ? tm->n_tok[1] : tm->n_tok[0];
    if (!tm->n_tok[0] && !tm->n_tok[1]) {
        cJSON_AddNullToObject(o, "trainable_token_indices");
    } else if (!tm->opt.tok_as_dict) {
        cJSON_AddItemToObject(o, "trainable_token_indices", cJSON_CreateIntArray(ids_e, n_e));
    } else {
        cJSON *d = cJSON_AddObjectToObject(o, "trainable_token_indices");
        if (n_e && tm->opt.n_tok_embed)
            cJSON_AddItemToObject(d, "embed_tokens", cJSON_CreateIntArray(ids_e, n_e));
        if (tm->opt.n_tok_head) /* tied: the embedding's ids (checked equal at init) */
            cJSON_AddItemToObject(d, "lm_head", cJSON_CreateIntArray(ids_h, n_h));
    }
    cJSON_AddBoolToObject(o, "use_dora", 0);
    cJSON_AddBoolToObject(o, "use_rslora", lc->use_rslora ? 1 : 0);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", path);
    ft_status st = ft_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

ft_status ft_lora_save(const ft_train_model *tm, const char *dir, const char *base_model) {
    if (tm->opt.method != FT_METHOD_LORA)
        return ft_errorf(FT_ERR_ARG, "%s: ft_lora_save needs a LoRA model", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ft_errorf(FT_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    char path[PATH_MAX];
    ft_st_write_tensor *ts = calloc((size_t)(tm->n_tr > 0 ? tm->n_tr : 1), sizeof *ts);
    if (!ts) return ft_errorf(FT_ERR_NOMEM, "%s: out of memory", dir);
    for (int i = 0; i < tm->n_tr; i++) {
        const ft_trainable *t = &tm->tr[i];
        ts[i].name = t->name;
        ts[i].dtype = FT_DTYPE_F32;
        ts[i].ndim = 2;
        ts[i].shape[0] = t->rows;
        ts[i].shape[1] = t->cols;
        ts[i].data = t->param;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    ft_status st = FT_OK;
    if (snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir) >= (int)sizeof path)
        st = ft_errorf(FT_ERR_ARG, "%s: path too long", dir);
    if (st == FT_OK) st = ft_st_write(path, ts, tm->n_tr, meta);
    free(ts);
    if (st != FT_OK) return st;
    if (snprintf(path, sizeof path, "%s/adapter_config.json", dir) >= (int)sizeof path)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", dir);
    return write_config(tm, path, base_model);
}
