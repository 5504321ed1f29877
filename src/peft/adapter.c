/*
 * Reading PEFT LoRA adapter folders and merging them into a model (contract in
 * include/ftune/peft.h). PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with
 * use_rslora (computed in double as Python does, applied as float). The merge follows PEFT's
 * merge(): W += (B @ A) * scaling.
 */
#include "ftune/peft.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *modules[7][2] = {
    {"q_proj", "self_attn"}, {"k_proj", "self_attn"}, {"v_proj", "self_attn"},
    {"o_proj", "self_attn"}, {"gate_proj", "mlp"},    {"up_proj", "mlp"},
    {"down_proj", "mlp"}};

static const ft_tensor_info *find_tensor(const ft_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

void ft_adapter_free(ft_adapter *a) {
    if (!a) return;
    for (int i = 0; i < a->n_pairs; i++) {
        free(a->pairs[i].A);
        free(a->pairs[i].B);
    }
    free(a->pairs);
    for (int e = 0; e < 2; e++) {
        free(a->tok_ids[e]);
        free(a->tok_rows[e]);
    }
    memset(a, 0, sizeof *a);
}

/* An adapter_config.json key that must be absent, null, false, empty or equal to `ok`. */
static int is_off(const cJSON *v, const char *ok) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 1;
    if (cJSON_IsString(v)) return ok && !strcmp(v->valuestring, ok);
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return cJSON_GetArraySize(v) == 0;
    return 0;
}

static const char *const tok_keys[2] = {
    "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
    "base_model.model.lm_head.token_adapter.trainable_tokens_delta"};

/* A JSON list of token ids (non-negative integers) into a malloc'ed array. */
static ft_status parse_ids(const char *path, const char *what, const cJSON *v, int **ids, int *n) {
    int cnt = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (cnt < 1)
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'trainable_token_indices'%s must be a non-empty "
                         "list of token ids", path, what);
    *ids = malloc(sizeof(int) * (size_t)cnt);
    if (!*ids) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    *n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 2147483647.0 ||
            x->valuedouble != floor(x->valuedouble))
            return ft_errorf(FT_ERR_FORMAT, "%s: key 'trainable_token_indices'%s: item %d is "
                             "not a token id", path, what, *n);
        (*ids)[(*n)++] = (int)x->valuedouble;
    }
    return FT_OK;
}

/* trainable_token_indices: null/absent, a list (the input embedding), or a dict whose keys name
 * the module by its last part as PEFT matches them (…embed_tokens, …lm_head). PEFT:
 * src/peft/utils/other.py (_set_trainable with TrainableTokensWrapper) and
 * src/peft/tuners/trainable_tokens/layer.py. */
static ft_status parse_tokens(ft_adapter *a, const char *path, const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return FT_OK;
    if (cJSON_IsArray(v)) return parse_ids(path, "", v, &a->tok_ids[0], &a->n_tok[0]);
    if (!cJSON_IsObject(v))
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'trainable_token_indices' must be a list or a "
                         "dict", path);
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        size_t l = strlen(x->string);
        int e = -1;
        if (l >= 12 && !strcmp(x->string + l - 12, "embed_tokens")) e = 0;
        else if (l >= 7 && !strcmp(x->string + l - 7, "lm_head")) e = 1;
        if (e < 0)
            return ft_errorf(FT_ERR_UNSUPPORTED, "%s: key 'trainable_token_indices': module '%s' "
                             "(supported: embed_tokens, lm_head)", path, x->string);
        if (a->tok_ids[e])
            return ft_errorf(FT_ERR_FORMAT, "%s: key 'trainable_token_indices': two entries for "
                             "%s", path, e ? "lm_head" : "embed_tokens");
        char what[160];
        snprintf(what, sizeof what, "['%s']", x->string);
        ft_status st = parse_ids(path, what, x, &a->tok_ids[e], &a->n_tok[e]);
        if (st) return st;
    }
    return FT_OK;
}

static ft_status parse_config(ft_adapter *a, const char *path, const char *text) {
    cJSON *j = cJSON_Parse(text);
    ft_status st = FT_OK;
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ft_errorf(FT_ERR_FORMAT, "%s: invalid JSON", path);
    }
    /* a key given twice: PEFT (Python's json) reads the last value, cJSON the first */
    const char *dup = ft_json_dup_key(j);
    if (!dup) dup = ft_json_dup_key(cJSON_GetObjectItemCaseSensitive(j, "trainable_token_indices"));
    if (dup) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: key '%s' appears twice", path, dup);
        goto done;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    static const char *refused[][2] = {{"use_dora", NULL},        {"fan_in_fan_out", NULL},
                                       {"modules_to_save", NULL}, {"rank_pattern", NULL},
                                       {"alpha_pattern", NULL},   {"bias", "none"},
                                       {"layers_to_transform", NULL}};
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA")) {
        st = ft_errorf(FT_ERR_UNSUPPORTED, "%s: peft_type %s is not supported (LORA only)", path,
                       cJSON_IsString(pt) ? pt->valuestring : "missing");
        goto done;
    }
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble) ||
        r->valuedouble > 65536) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: key 'r' must be a positive integer", path);
        goto done;
    }
    if (!cJSON_IsNumber(al) || !(al->valuedouble > 0)) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: key 'lora_alpha' must be a positive number", path);
        goto done;
    }
    static const char *const bools[] = {"use_rslora", "use_dora", "fan_in_fan_out"};
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) { /* "true" (a string) is not true */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, bools[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsBool(v)) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: key '%s' must be true or false", path, bools[i]);
            goto done;
        }
    }
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (!is_off(cJSON_GetObjectItemCaseSensitive(j, refused[i][0]), refused[i][1])) {
            st = ft_errorf(FT_ERR_UNSUPPORTED,
                           "%s: key '%s' asks for something ftune does not merge", path,
                           refused[i][0]);
            goto done;
        }
    if ((st = parse_tokens(a, path, cJSON_GetObjectItemCaseSensitive(j, "trainable_token_indices"))))
        goto done;
    a->r = r->valueint;
    a->alpha = (float)al->valuedouble;
    a->use_rslora = cJSON_IsTrue(rs);
    /* PEFT: self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r */
    a->scale = (float)(a->use_rslora ? al->valuedouble / sqrt((double)a->r)
                                     : al->valuedouble / (double)a->r);
done:
    cJSON_Delete(j);
    return st;
}

/* 1 if `nm` is "base_model.model.<module without .weight>.lora_{A,B}.weight" of a loaded pair */
static int is_known(const ft_adapter *a, const char *nm) {
    for (int e = 0; e < 2; e++)
        if (a->tok_rows[e] && !strcmp(nm, tok_keys[e])) return 1;
    if (strncmp(nm, "base_model.model.", 17)) return 0;
    for (int p = 0; p < a->n_pairs; p++) {
        size_t ml = strlen(a->pairs[p].module) - strlen(".weight");
        if (!strncmp(nm + 17, a->pairs[p].module, ml) &&
            (!strcmp(nm + 17 + ml, ".lora_A.weight") || !strcmp(nm + 17 + ml, ".lora_B.weight")))
            return 1;
    }
    return 0;
}

static ft_status check_shape(const char *path, const char *key, const ft_st_tensor *t, int rows,
                             int cols) {
    if (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols) return FT_OK;
    char dims[160] = "";
    size_t k = 0;
    for (int i = 0; i < t->ndim && k < sizeof dims; i++) /* every dimension, however many */
        k += (size_t)snprintf(dims + k, sizeof dims - k, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    return ft_errorf(FT_ERR_FORMAT, "%s: '%s' has shape [%s], expected [%d, %d]", path, key, dims,
                     rows, cols);
}

ft_status ft_adapter_load(ft_adapter *a, const char *dir, const ft_model *m) {
    memset(a, 0, sizeof *a);
    char path[4096];
    char *text;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    ft_status st = ft_read_file(path, &text, NULL);
    if (st) return st;
    st = parse_config(a, path, text);
    free(text);
    ft_st_set set = {0};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st || (st = ft_st_open(&set, path))) {
        ft_adapter_free(a); /* parse_config may have read trainable_token_indices */
        return st;
    }
    a->pairs = calloc((size_t)7 * (size_t)m->cfg.n_layers + 1, sizeof *a->pairs);
    int used = 0;
    if (!a->pairs) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < 7; k++) {
            char mod[160], ka[224], kb[224], wname[192];
            snprintf(mod, sizeof mod, "model.layers.%d.%s.%s", l, modules[k][1], modules[k][0]);
            snprintf(ka, sizeof ka, "base_model.model.%s.lora_A.weight", mod);
            snprintf(kb, sizeof kb, "base_model.model.%s.lora_B.weight", mod);
            const ft_st_tensor *A = ft_st_find(&set, ka), *B = ft_st_find(&set, kb);
            if (!A && !B) continue;
            if (!A || !B) {
                st = ft_errorf(FT_ERR_FORMAT, "%s: '%s' without its %s", path, A ? ka : kb,
                               A ? "lora_B" : "lora_A");
                goto fail;
            }
            snprintf(wname, sizeof wname, "%s.weight", mod);
            const ft_tensor_info *w = find_tensor(m, wname);
            FT_ASSERT(w && w->cols);
            if ((st = check_shape(path, ka, A, a->r, w->cols)) ||
                (st = check_shape(path, kb, B, w->rows, a->r)))
                goto fail;
            ft_lora_pair *p = &a->pairs[a->n_pairs++];
            snprintf(p->module, sizeof p->module, "%s", wname);
            p->out = w->rows;
            p->in = w->cols;
            p->A = malloc(sizeof(float) * (size_t)a->r * (size_t)p->in);
            p->B = malloc(sizeof(float) * (size_t)p->out * (size_t)a->r);
            if (!p->A || !p->B) {
                st = ft_errorf(FT_ERR_NOMEM, "out of memory");
                goto fail;
            }
            if ((st = ft_convert_to_f32(p->A, A->data, A->dtype, (size_t)a->r * (size_t)p->in)) ||
                (st = ft_convert_to_f32(p->B, B->data, B->dtype, (size_t)p->out * (size_t)a->r))) {
                st = ft_error_wrap(st, "%s: '%s'", path, mod);
                goto fail;
            }
            used += 2;
        }
    /* trainable tokens: ids in the vocabulary, distinct; a tied head shares the embedding's */
    const ft_config *c = &m->cfg;
    if (c->tie_embeddings && a->n_tok[1]) {
        int same = a->n_tok[0] == a->n_tok[1];
        for (int k = 0; same && k < a->n_tok[0]; k++)
            same = a->tok_ids[0][k] == a->tok_ids[1][k];
        if (!same) {
            st = ft_errorf(FT_ERR_UNSUPPORTED, "%s: trainable_token_indices: lm_head ids differ "
                           "from embed_tokens' but the model ties them", path);
            goto fail;
        }
        free(a->tok_ids[1]);
        a->tok_ids[1] = NULL;
        a->n_tok[1] = 0;
    }
    for (int e = 0; e < 2; e++) {
        if (!a->n_tok[e]) continue;
        for (int k = 0; k < a->n_tok[e]; k++) {
            int id = a->tok_ids[e][k];
            int dup = 0;
            for (int q = 0; q < k; q++)
                dup |= a->tok_ids[e][q] == id;
            if (id >= c->vocab_size || dup) {
                st = ft_errorf(FT_ERR_FORMAT, "%s: trainable_token_indices: id %d %s", path, id,
                               dup ? "appears twice" : "is outside the vocabulary");
                goto fail;
            }
        }
        const ft_st_tensor *t = ft_st_find(&set, tok_keys[e]);
        if (!t) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: trainable_token_indices given but '%s' is missing",
                           path, tok_keys[e]);
            goto fail;
        }
        if ((st = check_shape(path, tok_keys[e], t, a->n_tok[e], c->dim))) goto fail;
        size_t n = (size_t)a->n_tok[e] * (size_t)c->dim;
        if (!(a->tok_rows[e] = malloc(sizeof(float) * n))) {
            st = ft_errorf(FT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if ((st = ft_convert_to_f32(a->tok_rows[e], t->data, t->dtype, n))) {
            st = ft_error_wrap(st, "%s: '%s'", path, tok_keys[e]);
            goto fail;
        }
        used++;
    }
    for (int i = 0; used != set.n_tensors && i < set.n_tensors; i++)
        if (!is_known(a, set.tensors[i].name)) {
            st = ft_errorf(FT_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is not a LoRA A/B of this model's projections nor a "
                           "trainable-tokens tensor of its config", path,
                           set.tensors[i].name);
            goto fail;
        }
    if (!a->n_pairs && !a->n_tok[0] && !a->n_tok[1]) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: no LoRA tensors", path);
        goto fail;
    }
    ft_st_close(&set);
    return FT_OK;
fail:
    ft_st_close(&set);
    ft_adapter_free(a);
    return st;
}

ft_status ft_adapter_merge(ft_model *m, const ft_adapter *a) {
    for (int p = 0; p < a->n_pairs; p++) {
        const ft_lora_pair *lp = &a->pairs[p];
        const ft_tensor_info *w = find_tensor(m, lp->module);
        if (!w) return ft_errorf(FT_ERR_NOT_FOUND, "merge: model has no tensor '%s'", lp->module);
        float *W = m->params + w->offset; /* (out, in) */
        const int r = a->r, in = lp->in;
#pragma omp parallel for schedule(static)
        for (int o = 0; o < lp->out; o++)
            for (int i = 0; i < in; i++) {
                double d = 0;
                for (int k = 0; k < r; k++)
                    d += (double)lp->B[(size_t)o * r + k] * lp->A[(size_t)k * in + i];
                W[(size_t)o * in + i] += (float)d * a->scale;
            }
    }
    /* trainable tokens: W.index_copy(0, ids, rows) (TrainableTokensLayer.merge) */
    for (int e = 0; e < 2; e++) {
        float *W = e ? m->w.lm_head : m->w.embed; /* (V, C) */
        if (!a->n_tok[e]) continue;
        if (!W) return ft_errorf(FT_ERR_ARG, "merge: the model has no untied lm_head");
        size_t C = (size_t)m->cfg.dim;
        for (int k = 0; k < a->n_tok[e]; k++) {
            FT_ASSERT(a->tok_ids[e][k] >= 0 && a->tok_ids[e][k] < m->cfg.vocab_size);
            memcpy(W + (size_t)a->tok_ids[e][k] * C, a->tok_rows[e] + (size_t)k * C,
                   C * sizeof(float));
        }
    }
    return FT_OK;
}

ft_status ft_adapter_apply(ft_model *m, const char *dir) {
    ft_adapter a;
    ft_status st = ft_adapter_load(&a, dir, m);
    if (st) return st;
    st = ft_adapter_merge(m, &a);
    ft_adapter_free(&a);
    return st;
}
