/*
 * Reading PEFT LoRA adapter folders and merging them into a model (contract in
 * include/ftune/peft.h). PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with
 * use_rslora (computed in double as Python does, applied as float). The merge follows PEFT's
 * merge(): W += (B @ A) * scaling.
 */
#include "ftune/peft.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* Which modules PEFT wraps with a LoRA layer (peft/tuners/tuners_utils.py,
 * check_target_module_exists, for a module key like "model.layers.3.mlp.up_proj"):
 *  - exclude_modules first: a string is a regex that must match the whole key (re.fullmatch), a
 *    list names keys exactly or by their last dotted parts (key == x or key ends with "." x);
 *  - then target_modules the same way, except that the string "all-linear" (any case) means
 *    every linear layer but the output head (_maybe_include_all_linear_layers: here the seven
 *    projections), and null or absent means the model type's default, q_proj and v_proj for
 *    every family ftune reads (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
 * PEFT loads no tensor of a module it did not wrap (an "unexpected key"), so such a tensor is
 * refused here rather than merged. Regexes go to PCRE2, whose syntax is Python's for what module
 * patterns use (classes, groups, alternation, repeats). */
typedef struct {
    const cJSON *names; /* a list of names, or NULL */
    pcre2_code *re;     /* a regex, or NULL */
    int all;            /* "all-linear", or the default pair when `dflt` */
    int dflt;
} mod_sel;

static const char *const default_targets[2] = {"q_proj", "v_proj"};

static int name_hit(const char *key, const char *x) {
    size_t kl = strlen(key), xl = strlen(x);
    return !strcmp(key, x) || (kl > xl && key[kl - xl - 1] == '.' && !strcmp(key + kl - xl, x));
}

static ft_status sel_parse(mod_sel *s, const char *path, const char *what, const cJSON *v,
                           int target) {
    memset(s, 0, sizeof *s);
    if (!v || cJSON_IsNull(v)) {
        s->dflt = target;
        return FT_OK;
    }
    if (cJSON_IsString(v)) {
        /* PEFT compares target_modules.lower(): no non-ASCII letter lowers into this one */
        if (target && !strcasecmp(v->valuestring, "all-linear")) {
            s->all = 1;
            return FT_OK;
        }
        int err;
        PCRE2_SIZE off;
        s->re = pcre2_compile((PCRE2_SPTR)v->valuestring, PCRE2_ZERO_TERMINATED,
                              PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &err, &off, NULL);
        if (!s->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            return ft_errorf(FT_ERR_FORMAT, "%s: key '%s': bad regex at offset %zu: %s", path, what,
                             (size_t)off, (const char *)msg);
        }
        return FT_OK;
    }
    if (!cJSON_IsArray(v))
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: key '%s' must be a list of module names, a regex "
                         "string or null",
                         path, what);
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        if (!cJSON_IsString(x))
            return ft_errorf(FT_ERR_FORMAT, "%s: key '%s': item %d is not a module name", path,
                             what, i);
        i++;
    }
    s->names = v;
    return FT_OK;
}

/* 1 if the selection holds `key` (an empty one holds nothing), 0 if not, -1 if its regex gave up
 * (PCRE2's match limit, set low in `mc`: a module key is a few dozen characters, which no sane
 * pattern needs 100000 steps for, and a pattern that backtracks exponentially would otherwise take
 * seconds per module) */
static int sel_hit(const mod_sel *s, const char *key, pcre2_match_data *md,
                   pcre2_match_context *mc) {
    if (s->all) return 1;
    if (s->dflt) return name_hit(key, default_targets[0]) || name_hit(key, default_targets[1]);
    if (s->re) {
        int rc = pcre2_match(s->re, (PCRE2_SPTR)key, PCRE2_ZERO_TERMINATED, 0, 0, md, mc);
        return rc >= 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, s->names) {
        if (name_hit(key, x->valuestring)) return 1;
    }
    return 0;
}

static void sel_free(mod_sel *s) {
    pcre2_code_free(s->re);
    memset(s, 0, sizeof *s);
}

/* The config into `a`, and the module selection into tgt / exc, which may point into *keep: the
 * parsed JSON, left to the caller (to cJSON_Delete, whatever the status). */
static ft_status parse_config(ft_adapter *a, const char *path, const char *text, cJSON **keep,
                              mod_sel *tgt, mod_sel *exc) {
    cJSON *j = *keep = cJSON_Parse(text);
    ft_status st = FT_OK;
    if (!j || !cJSON_IsObject(j)) return ft_errorf(FT_ERR_FORMAT, "%s: invalid JSON", path);
    /* a key given twice: PEFT (Python's json) reads the last value, cJSON the first */
    const char *dup = ft_json_dup_key(j);
    if (!dup) dup = ft_json_dup_key(cJSON_GetObjectItemCaseSensitive(j, "trainable_token_indices"));
    if (dup) return ft_errorf(FT_ERR_FORMAT, "%s: key '%s' appears twice", path, dup);
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    static const char *refused[][2] = {{"use_dora", NULL},        {"fan_in_fan_out", NULL},
                                       {"modules_to_save", NULL}, {"rank_pattern", NULL},
                                       {"alpha_pattern", NULL},   {"bias", "none"},
                                       {"layers_to_transform", NULL}};
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        return ft_errorf(FT_ERR_UNSUPPORTED, "%s: peft_type %s is not supported (LORA only)", path,
                         cJSON_IsString(pt) ? pt->valuestring : "missing");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble) ||
        r->valuedouble > 65536)
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'r' must be a positive integer", path);
    if (!cJSON_IsNumber(al) || !(al->valuedouble > 0))
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'lora_alpha' must be a positive number", path);
    static const char *const bools[] = {"use_rslora", "use_dora", "fan_in_fan_out"};
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) { /* "true" (a string) is not true */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, bools[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsBool(v))
            return ft_errorf(FT_ERR_FORMAT, "%s: key '%s' must be true or false", path, bools[i]);
    }
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (!is_off(cJSON_GetObjectItemCaseSensitive(j, refused[i][0]), refused[i][1]))
            return ft_errorf(FT_ERR_UNSUPPORTED,
                             "%s: key '%s' asks for something ftune does not merge", path,
                             refused[i][0]);
    if ((st = parse_tokens(a, path,
                           cJSON_GetObjectItemCaseSensitive(j, "trainable_token_indices"))) ||
        (st = sel_parse(tgt, path, "target_modules",
                        cJSON_GetObjectItemCaseSensitive(j, "target_modules"), 1)) ||
        (st = sel_parse(exc, path, "exclude_modules",
                        cJSON_GetObjectItemCaseSensitive(j, "exclude_modules"), 0)))
        return st;
    a->r = r->valueint;
    a->alpha = (float)al->valuedouble;
    a->use_rslora = cJSON_IsTrue(rs);
    /* PEFT: self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r */
    a->scale = (float)(a->use_rslora ? al->valuedouble / sqrt((double)a->r)
                                     : al->valuedouble / (double)a->r);
    return FT_OK;
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
    char cfg_path[4096], path[4096];
    char *text;
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", dir);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    ft_status st = ft_read_file(cfg_path, &text, NULL);
    if (st) return st;
    cJSON *j = NULL;
    mod_sel tgt = {0}, exc = {0};
    st = parse_config(a, cfg_path, text, &j, &tgt, &exc);
    free(text);
    ft_st_set set = {0};
    pcre2_match_data *md = NULL;
    pcre2_match_context *mc = NULL;
    if (st || (st = ft_st_open(&set, path))) goto done;
    a->pairs = calloc((size_t)7 * (size_t)m->cfg.n_layers + 1, sizeof *a->pairs);
    int used = 0;
    md = pcre2_match_data_create(1, NULL);
    mc = pcre2_match_context_create(NULL);
    if (!a->pairs || !md || !mc || pcre2_set_match_limit(mc, 100000)) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
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
                goto done;
            }
            int excluded = sel_hit(&exc, mod, md, mc);
            int selected = excluded ? 0 : sel_hit(&tgt, mod, md, mc);
            if (excluded < 0 || selected < 0) {
                st = ft_errorf(FT_ERR_FORMAT,
                               "%s: key '%s': the regex gave up on '%s' (PCRE2's "
                               "match limit)",
                               cfg_path, excluded < 0 ? "exclude_modules" : "target_modules", mod);
                goto done;
            }
            if (excluded || !selected) {
                st = ft_errorf(FT_ERR_FORMAT,
                               "%s: '%s' is for module '%s', which adapter_config.json's "
                               "%s (PEFT would not load it)",
                               path, ka, mod,
                               excluded ? "exclude_modules excludes"
                                        : "target_modules does not select");
                goto done;
            }
            snprintf(wname, sizeof wname, "%s.weight", mod);
            const ft_tensor_info *w = find_tensor(m, wname);
            FT_ASSERT(w && w->cols);
            if ((st = check_shape(path, ka, A, a->r, w->cols)) ||
                (st = check_shape(path, kb, B, w->rows, a->r)))
                goto done;
            ft_lora_pair *p = &a->pairs[a->n_pairs++];
            snprintf(p->module, sizeof p->module, "%s", wname);
            p->out = w->rows;
            p->in = w->cols;
            p->A = malloc(sizeof(float) * (size_t)a->r * (size_t)p->in);
            p->B = malloc(sizeof(float) * (size_t)p->out * (size_t)a->r);
            if (!p->A || !p->B) {
                st = ft_errorf(FT_ERR_NOMEM, "out of memory");
                goto done;
            }
            if ((st = ft_convert_to_f32(p->A, A->data, A->dtype, (size_t)a->r * (size_t)p->in)) ||
                (st = ft_convert_to_f32(p->B, B->data, B->dtype, (size_t)p->out * (size_t)a->r))) {
                st = ft_error_wrap(st, "%s: '%s'", path, mod);
                goto done;
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
            goto done;
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
                goto done;
            }
        }
        const ft_st_tensor *t = ft_st_find(&set, tok_keys[e]);
        if (!t) {
            st = ft_errorf(FT_ERR_FORMAT, "%s: trainable_token_indices given but '%s' is missing",
                           path, tok_keys[e]);
            goto done;
        }
        if ((st = check_shape(path, tok_keys[e], t, a->n_tok[e], c->dim))) goto done;
        size_t n = (size_t)a->n_tok[e] * (size_t)c->dim;
        if (!(a->tok_rows[e] = malloc(sizeof(float) * n))) {
            st = ft_errorf(FT_ERR_NOMEM, "out of memory");
            goto done;
        }
        if ((st = ft_convert_to_f32(a->tok_rows[e], t->data, t->dtype, n))) {
            st = ft_error_wrap(st, "%s: '%s'", path, tok_keys[e]);
            goto done;
        }
        used++;
    }
    for (int i = 0; used != set.n_tensors && i < set.n_tensors; i++)
        if (!is_known(a, set.tensors[i].name)) {
            st = ft_errorf(FT_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is not a LoRA A/B of this model's projections nor a "
                           "trainable-tokens tensor of its config", path,
                           set.tensors[i].name);
            goto done;
        }
    if (!a->n_pairs && !a->n_tok[0] && !a->n_tok[1]) {
        st = ft_errorf(FT_ERR_FORMAT, "%s: no LoRA tensors", path);
        goto done;
    }
    st = FT_OK;
done:
    ft_st_close(&set);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    sel_free(&tgt);
    sel_free(&exc);
    cJSON_Delete(j);
    if (st) ft_adapter_free(a); /* parse_config may have read trainable_token_indices */
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
