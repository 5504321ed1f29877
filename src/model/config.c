/*
 * config.json for the Llama family: parse (with HF's per-family defaults), load from a folder,
 * serialize back.
 *
 * Families: llama, mistral, qwen2 (q/k/v biases), qwen3 (q_norm/k_norm, head_dim default 128).
 * rope_scaling: absent/null, "default", or "llama3" (also read from transformers-5 style
 * "rope_parameters"). Everything else (yarn, dynamic, linear, longrope, other model_types, other
 * activations than silu) is rejected with an error naming the file and key, never guessed.
 *
 * Structural keys (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * vocab_size) are required: HF's defaults for them describe some 7B model, not the file at hand.
 * Other keys take HF's defaults for the family; a JSON null counts as absent.
 * eos_token_id may be a list (Llama 3 instruct): we keep the first id.
 * sliding_window is recorded, not applied: it caps the usable context (ft_config_context).
 */
#include "ftune/model.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    ft_family family;
    int max_pos;
    int bos, eos;
    int head_dim; /* 0: hidden_size / num_attention_heads */
    int sliding_window;
    const char *arch;
} family_info;

/* HF defaults per family (LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config). */
static const family_info families[] = {
    {"llama", FT_FAMILY_LLAMA, 2048, 1, 2, 0, 0, "LlamaForCausalLM"},
    {"mistral", FT_FAMILY_MISTRAL, 4096 * 32, 1, 2, 0, 4096, "MistralForCausalLM"},
    {"qwen2", FT_FAMILY_QWEN2, 32768, -1, -1, 0, 0, "Qwen2ForCausalLM"},
    {"qwen3", FT_FAMILY_QWEN3, 32768, -1, -1, 128, 0, "Qwen3ForCausalLM"},
};

typedef struct {
    const char *path;
    const cJSON *root;
} ctx;

static const char *type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

/* The value of `key` in `obj`, NULL if absent or null. */
static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* Integer >= min. Absent: *out = def, or an error when required. `where` prefixes the key name. */
static ft_status get_int(const ctx *c, const cJSON *obj, const char *where, const char *key,
                         int required, int def, int min, int *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (required)
            return ft_errorf(FT_ERR_NOT_FOUND, "%s: required key '%s%s' is missing", c->path, where,
                             key);
        *out = def;
        return FT_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%s%s' must be an integer, got %s", c->path, where,
                         key, type_name(v));
    if (v->valuedouble < min || v->valuedouble > INT_MAX)
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%s%s' = %.17g is out of range (>= %d)", c->path,
                         where, key, v->valuedouble, min);
    *out = (int)v->valuedouble;
    return FT_OK;
}

static ft_status get_num(const ctx *c, const cJSON *obj, const char *where, const char *key,
                         int required, double def, double *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (required)
            return ft_errorf(FT_ERR_NOT_FOUND, "%s: required key '%s%s' is missing", c->path, where,
                             key);
        *out = def;
        return FT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%s%s' must be a number, got %s", c->path, where,
                         key, type_name(v));
    *out = v->valuedouble;
    return FT_OK;
}

static ft_status get_bool(const ctx *c, const char *key, int def, int *out) {
    const cJSON *v = item(c->root, key);
    if (!v) {
        *out = def;
        return FT_OK;
    }
    if (!cJSON_IsBool(v))
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%s' must be true or false, got %s", c->path, key,
                         type_name(v));
    *out = cJSON_IsTrue(v);
    return FT_OK;
}

/* A token id: integer, or a list of integers (first kept), or absent/null (def). */
static ft_status get_token(const ctx *c, const char *key, int def, int *out) {
    const cJSON *v = item(c->root, key);
    if (v && cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) == 0) {
            *out = -1;
            return FT_OK;
        }
        const cJSON *f = v->child;
        if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || f->valuedouble < 0 ||
            f->valuedouble > INT_MAX)
            return ft_errorf(FT_ERR_FORMAT, "%s: key '%s' must hold non-negative integers", c->path,
                             key);
        *out = (int)f->valuedouble;
        return FT_OK;
    }
    return get_int(c, c->root, "", key, 0, def, 0, out);
}

/* Line and column (1-based) of byte offset `at` in `text`. */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static ft_status parse_rope(const ctx *c, ft_config *cfg) {
    const cJSON *rs = item(c->root, "rope_scaling");
    const char *where = "rope_scaling.";
    const cJSON *rp = item(c->root, "rope_parameters"); /* transformers >= 5 */
    if (!rs && rp) {
        rs = rp;
        where = "rope_parameters.";
    }
    cfg->rope_type = FT_ROPE_DEFAULT;
    cfg->rope_factor = 1.0f;
    cfg->rope_low_freq_factor = cfg->rope_high_freq_factor = 0.0f;
    cfg->rope_original_max_pos = 0;
    if (rp) {
        if (!cJSON_IsObject(rp))
            return ft_errorf(FT_ERR_FORMAT, "%s: key 'rope_parameters' must be an object, got %s",
                             c->path, type_name(rp));
        double theta;
        ft_status st = get_num(c, rp, "rope_parameters.", "rope_theta", 0, cfg->rope_theta, &theta);
        if (st != FT_OK) return st;
        cfg->rope_theta = (float)theta;
    }
    if (!rs) return FT_OK;
    if (!cJSON_IsObject(rs))
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%.*s' must be an object or null, got %s", c->path,
                         (int)strlen(where) - 1, where, type_name(rs));
    const cJSON *t = item(rs, "rope_type");
    const char *tkey = "rope_type";
    const char *dup = ft_json_dup_key(rs);
    if (dup) return ft_errorf(FT_ERR_FORMAT, "%s: key '%s%s' appears twice", c->path, where, dup);
    if (!t) {
        t = item(rs, "type");
        tkey = "type";
    }
    if (!t) {
        if (rs == rp) return FT_OK; /* rope_parameters with only rope_theta */
        return ft_errorf(FT_ERR_NOT_FOUND, "%s: key '%srope_type' is missing", c->path, where);
    }
    if (!cJSON_IsString(t))
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%s%s' must be a string, got %s", c->path, where,
                         tkey, type_name(t));
    if (!strcmp(t->valuestring, "default")) return FT_OK;
    char pr[48];
    if (strcmp(t->valuestring, "llama3"))
        return ft_errorf(
            FT_ERR_UNSUPPORTED,
            "%s: key '%s%s': rope scaling '%s' is not supported (supported: default, llama3)",
            c->path, where, tkey, ft_printable(pr, sizeof pr, t->valuestring));
    double f, lo, hi;
    int omp;
    ft_status st;
    if ((st = get_num(c, rs, where, "factor", 1, 0, &f)) != FT_OK) return st;
    if ((st = get_num(c, rs, where, "low_freq_factor", 1, 0, &lo)) != FT_OK) return st;
    if ((st = get_num(c, rs, where, "high_freq_factor", 1, 0, &hi)) != FT_OK) return st;
    if ((st = get_int(c, rs, where, "original_max_position_embeddings", 1, 0, 1, &omp)) != FT_OK)
        return st;
    /* checked as the floats they are stored in: 1e-50 becomes 0, 1e39 inf, 1 + 1e-8 equals 1 */
    if (!((float)f >= FLT_MIN && f <= FLT_MAX) || !((float)lo >= FLT_MIN) ||
        !(hi <= FLT_MAX && (float)hi > (float)lo))
        return ft_errorf(
            FT_ERR_FORMAT,
            "%s: key '%.*s': llama3 needs factor > 0 and 0 < low_freq_factor < high_freq_factor",
            c->path, (int)strlen(where) - 1, where);
    cfg->rope_type = FT_ROPE_LLAMA3;
    cfg->rope_factor = (float)f;
    cfg->rope_low_freq_factor = (float)lo;
    cfg->rope_high_freq_factor = (float)hi;
    cfg->rope_original_max_pos = omp;
    return FT_OK;
}

static ft_status parse_dtype(const ctx *c, ft_config *cfg) {
    const char *key = "torch_dtype";
    const cJSON *v = item(c->root, key);
    if (!v) {
        key = "dtype"; /* transformers >= 5 */
        v = item(c->root, key);
    }
    cfg->torch_dtype = FT_DTYPE_F32;
    if (!v) return FT_OK;
    if (!cJSON_IsString(v))
        return ft_errorf(FT_ERR_FORMAT, "%s: key '%s' must be a string, got %s", c->path, key,
                         type_name(v));
    const char *s = v->valuestring;
    char pr[48];
    if (!strcmp(s, "float32"))
        cfg->torch_dtype = FT_DTYPE_F32;
    else if (!strcmp(s, "float16"))
        cfg->torch_dtype = FT_DTYPE_F16;
    else if (!strcmp(s, "bfloat16"))
        cfg->torch_dtype = FT_DTYPE_BF16;
    else
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "%s: key '%s' = '%s' is not supported (float32, float16, bfloat16)",
                         c->path, key, ft_printable(pr, sizeof pr, s));
    return FT_OK;
}

static ft_status parse_root(ft_config *cfg, const ctx *c) {
    const cJSON *root = c->root;
    ft_status st;
    if (!cJSON_IsObject(root)) return ft_errorf(FT_ERR_FORMAT, "%s: not a JSON object", c->path);
    const char *dup = ft_json_dup_key(root);
    if (dup) return ft_errorf(FT_ERR_FORMAT, "%s: key '%s' appears twice", c->path, dup);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!mt)
        return ft_errorf(FT_ERR_NOT_FOUND, "%s: required key 'model_type' is missing", c->path);
    if (!cJSON_IsString(mt))
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'model_type' must be a string, got %s", c->path,
                         type_name(mt));
    const family_info *fam = NULL;
    char pr[48];
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strcmp(mt->valuestring, families[i].name)) fam = &families[i];
    if (!fam)
        return ft_errorf(
            FT_ERR_UNSUPPORTED,
            "%s: key 'model_type': '%s' is not supported (llama, mistral, qwen2, qwen3)", c->path,
            ft_printable(pr, sizeof pr, mt->valuestring));
    cfg->family = fam->family;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", fam->name);

    const cJSON *act = item(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return ft_errorf(FT_ERR_UNSUPPORTED, "%s: key 'hidden_act': only \"silu\" is supported",
                         c->path);

    if ((st = get_int(c, root, "", "hidden_size", 1, 0, 1, &cfg->dim)) != FT_OK) return st;
    if ((st = get_int(c, root, "", "intermediate_size", 1, 0, 1, &cfg->hidden_dim)) != FT_OK)
        return st;
    if ((st = get_int(c, root, "", "num_hidden_layers", 1, 0, 1, &cfg->n_layers)) != FT_OK)
        return st;
    if ((st = get_int(c, root, "", "num_attention_heads", 1, 0, 1, &cfg->n_heads)) != FT_OK)
        return st;
    if ((st = get_int(c, root, "", "vocab_size", 1, 0, 1, &cfg->vocab_size)) != FT_OK) return st;
    if ((st = get_int(c, root, "", "num_key_value_heads", 0, cfg->n_heads, 1, &cfg->n_kv_heads)) !=
        FT_OK)
        return st;
    int hd_def = fam->head_dim;
    if (!hd_def) {
        if (!item(root, "head_dim") && cfg->dim % cfg->n_heads)
            return ft_errorf(FT_ERR_FORMAT,
                             "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                             c->path, cfg->dim, cfg->n_heads);
        hd_def = cfg->dim / cfg->n_heads;
    }
    if ((st = get_int(c, root, "", "head_dim", 0, hd_def, 1, &cfg->head_dim)) != FT_OK) return st;
    if ((st = get_int(c, root, "", "max_position_embeddings", 0, fam->max_pos, 1,
                      &cfg->max_seq_len)) != FT_OK)
        return st;
    if (cfg->n_layers > FT_MAX_LAYERS)
        return ft_errorf(FT_ERR_UNSUPPORTED,
                         "%s: key 'num_hidden_layers' = %d exceeds the limit of %d", c->path,
                         cfg->n_layers, FT_MAX_LAYERS);
    if (cfg->n_heads % cfg->n_kv_heads)
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         c->path, cfg->n_heads, cfg->n_kv_heads);
    if (cfg->head_dim % 2)
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'head_dim' = %d must be even for RoPE", c->path,
                         cfg->head_dim);
    /* keep every tensor size within what int rows/cols and size_t offsets hold */
    if ((int64_t)cfg->n_heads * cfg->head_dim > INT_MAX / 2)
        return ft_errorf(FT_ERR_FORMAT, "%s: num_attention_heads x head_dim is too large", c->path);

    double eps, theta;
    if ((st = get_num(c, root, "", "rms_norm_eps", 0, 1e-6, &eps)) != FT_OK) return st;
    if ((st = get_num(c, root, "", "rope_theta", 0, 10000.0, &theta)) != FT_OK) return st;
    if (!(eps >= FLT_MIN && eps <= FLT_MAX)) /* > 0 as the float it is stored in */
        return ft_errorf(FT_ERR_FORMAT,
                         "%s: key 'rms_norm_eps' = %g must be > 0 and within float range", c->path,
                         eps);
    cfg->rms_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    if ((st = parse_rope(c, cfg)) != FT_OK) return st;
    /* a normal float: >= FLT_MIN keeps 1 / theta^(2i/D) finite, <= FLT_MAX keeps theta finite */
    if (!(cfg->rope_theta >= FLT_MIN) || isinf(cfg->rope_theta))
        return ft_errorf(FT_ERR_FORMAT, "%s: key 'rope_theta' must be > 0 and within float range",
                         c->path);

    if ((st = get_bool(c, "tie_word_embeddings", 0, &cfg->tie_embeddings)) != FT_OK) return st;
    int attn_bias = 0;
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = cfg->qk_norm = 0;
    switch (cfg->family) {
    case FT_FAMILY_LLAMA:
        if ((st = get_bool(c, "attention_bias", 0, &attn_bias)) != FT_OK) return st;
        if ((st = get_bool(c, "mlp_bias", 0, &cfg->mlp_bias)) != FT_OK) return st;
        cfg->qkv_bias = cfg->o_bias = attn_bias;
        break;
    case FT_FAMILY_MISTRAL: break;
    case FT_FAMILY_QWEN2: cfg->qkv_bias = 1; break;
    case FT_FAMILY_QWEN3:
        if ((st = get_bool(c, "attention_bias", 0, &attn_bias)) != FT_OK) return st;
        cfg->qkv_bias = cfg->o_bias = attn_bias;
        cfg->qk_norm = 1;
        break;
    }
    if ((st = parse_dtype(c, cfg)) != FT_OK) return st;
    if ((st = get_token(c, "bos_token_id", fam->bos, &cfg->bos_id)) != FT_OK) return st;
    if ((st = get_token(c, "eos_token_id", fam->eos, &cfg->eos_id)) != FT_OK) return st;

    cfg->sliding_window = 0;
    if (cfg->family == FT_FAMILY_MISTRAL) {
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
        if (sw && cJSON_IsNull(sw))
            cfg->sliding_window = 0;
        else if ((st = get_int(c, root, "", "sliding_window", 0, fam->sliding_window, 0,
                               &cfg->sliding_window)) != FT_OK)
            return st;
    } else if (cfg->family == FT_FAMILY_QWEN2 || cfg->family == FT_FAMILY_QWEN3) {
        int use = 0;
        if ((st = get_bool(c, "use_sliding_window", 0, &use)) != FT_OK) return st;
        if (use && (st = get_int(c, root, "", "sliding_window", 0, 4096, 0,
                                 &cfg->sliding_window)) != FT_OK)
            return st;
    }
    return FT_OK;
}

int ft_config_context(const ft_config *c) {
    if (c->sliding_window > 0 && (c->max_seq_len <= 0 || c->sliding_window < c->max_seq_len))
        return c->sliding_window;
    return c->max_seq_len;
}

ft_status ft_config_parse(ft_config *cfg, const char *path, const char *json, size_t len) {
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        int line, col;
        size_t at = (end && end >= json && end <= json + len) ? (size_t)(end - json) : 0;
        line_col(json, at, &line, &col);
        return ft_errorf(FT_ERR_FORMAT, "%s:%d:%d: JSON syntax error", path, line, col);
    }
    for (const char *q = end; q && q < json + len; q++)
        if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t') {
            int line, col;
            line_col(json, (size_t)(q - json), &line, &col);
            cJSON_Delete(root);
            return ft_errorf(FT_ERR_FORMAT,
                             "%s:%d:%d: JSON syntax error: text after the end of the object", path,
                             line, col);
        }
    ctx c = {path, root};
    ft_status st = parse_root(cfg, &c);
    cJSON_Delete(root);
    return st;
}

ft_status ft_config_load(ft_config *cfg, const char *model_dir) {
    char path[4096];
    size_t n = strlen(model_dir);
    const char *sep = (n > 0 && model_dir[n - 1] == '/') ? "" : "/";
    if ((size_t)snprintf(path, sizeof path, "%s%sconfig.json", model_dir, sep) >= sizeof path)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", model_dir);
    char *text = NULL;
    size_t len = 0;
    ft_status st = ft_read_file(path, &text, &len);
    if (st != FT_OK) return st;
    st = ft_config_parse(cfg, path, text, len);
    free(text);
    return st;
}

/* The shortest decimal that reads back as the same float ("1e-05", not "9.99999975e-06");
 * integral values as HF writes them ("10000.0"). */
static void fmt_float(char out[32], float f) {
    if (f == floorf(f) && fabsf(f) < 1e15f) {
        snprintf(out, 32, "%.1f", (double)f);
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(out, 32, "%.*g", prec, (double)f);
        if (strtof(out, NULL) == f) break;
    }
}

ft_status ft_config_to_json(const ft_config *cfg, char **out) {
    const family_info *fam = NULL;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].family == cfg->family) fam = &families[i];
    FT_ASSERT(fam);
    char eps[32], theta[32], f[32], lo[32], hi[32];
    fmt_float(eps, cfg->rms_eps);
    fmt_float(theta, cfg->rope_theta);
    char rope[256] = "null";
    if (cfg->rope_type == FT_ROPE_LLAMA3) {
        fmt_float(f, cfg->rope_factor);
        fmt_float(lo, cfg->rope_low_freq_factor);
        fmt_float(hi, cfg->rope_high_freq_factor);
        snprintf(
            rope, sizeof rope,
            "{\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n    \"low_freq_factor\": %s,\n"
            "    \"original_max_position_embeddings\": %d,\n    \"rope_type\": \"llama3\"\n  }",
            f, hi, lo, cfg->rope_original_max_pos);
    }
    char bos[16] = "null", eos[16] = "null", sw[16] = "null";
    if (cfg->bos_id >= 0) snprintf(bos, sizeof bos, "%d", cfg->bos_id);
    if (cfg->eos_id >= 0) snprintf(eos, sizeof eos, "%d", cfg->eos_id);
    if (cfg->sliding_window > 0) snprintf(sw, sizeof sw, "%d", cfg->sliding_window);
    const char *dt = cfg->torch_dtype == FT_DTYPE_BF16  ? "bfloat16"
                     : cfg->torch_dtype == FT_DTYPE_F16 ? "float16"
                                                        : "float32";
    char extra[256] = "";
    switch (cfg->family) {
    case FT_FAMILY_LLAMA:
        snprintf(extra, sizeof extra, "  \"attention_bias\": %s,\n  \"mlp_bias\": %s,\n",
                 cfg->qkv_bias ? "true" : "false", cfg->mlp_bias ? "true" : "false");
        break;
    case FT_FAMILY_MISTRAL: snprintf(extra, sizeof extra, "  \"sliding_window\": %s,\n", sw); break;
    case FT_FAMILY_QWEN2:
    case FT_FAMILY_QWEN3:
        snprintf(extra, sizeof extra,
                 "%s  \"use_sliding_window\": %s,\n  \"sliding_window\": %s,\n",
                 cfg->family == FT_FAMILY_QWEN3 ? (cfg->qkv_bias ? "  \"attention_bias\": true,\n"
                                                                 : "  \"attention_bias\": false,\n")
                                                : "",
                 cfg->sliding_window > 0 ? "true" : "false", sw);
        break;
    }
    size_t cap = 2048;
    char *s = malloc(cap);
    if (!s) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    int n = snprintf(s, cap,
                     "{\n"
                     "  \"architectures\": [\"%s\"],\n"
                     "  \"model_type\": \"%s\",\n"
                     "  \"hidden_act\": \"silu\",\n"
                     "  \"hidden_size\": %d,\n"
                     "  \"intermediate_size\": %d,\n"
                     "  \"num_hidden_layers\": %d,\n"
                     "  \"num_attention_heads\": %d,\n"
                     "  \"num_key_value_heads\": %d,\n"
                     "  \"head_dim\": %d,\n"
                     "  \"vocab_size\": %d,\n"
                     "  \"max_position_embeddings\": %d,\n"
                     "  \"rms_norm_eps\": %s,\n"
                     "  \"rope_theta\": %s,\n"
                     "  \"rope_scaling\": %s,\n"
                     "  \"tie_word_embeddings\": %s,\n"
                     "%s"
                     "  \"bos_token_id\": %s,\n"
                     "  \"eos_token_id\": %s,\n"
                     "  \"torch_dtype\": \"%s\"\n"
                     "}\n",
                     fam->arch, fam->name, cfg->dim, cfg->hidden_dim, cfg->n_layers, cfg->n_heads,
                     cfg->n_kv_heads, cfg->head_dim, cfg->vocab_size, cfg->max_seq_len, eps, theta,
                     rope, cfg->tie_embeddings ? "true" : "false", extra, bos, eos, dt);
    FT_ASSERT(n > 0 && (size_t)n < cap);
    *out = s;
    return FT_OK;
}

void ft_rope_inv_freq(const ft_config *cfg, float *out) {
    int D = cfg->head_dim;
    for (int i = 0; i < D / 2; i++) {
        /* HF: 1.0 / (base ** (arange(0, D, 2).float() / D)), all float32 tensor ops; torch's pow is
         * within 1 ulp of the exact value, we round the exact (double) power once. */
        float e = (float)(2 * i) / (float)D;
        float p = (float)pow((double)cfg->rope_theta, (double)e);
        out[i] = 1.0f / p;
    }
    if (cfg->rope_type != FT_ROPE_LLAMA3) return;
    /* HF _compute_llama3_parameters, op by op in float32 (python scalars become float32 operands;
     * `scalar / tensor` is reciprocal(tensor) * scalar in torch). */
    float factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor,
          hi = cfg->rope_high_freq_factor;
    float old = (float)cfg->rope_original_max_pos;
    float low_wavelen = (float)((double)cfg->rope_original_max_pos / (double)lo);
    float high_wavelen = (float)((double)cfg->rope_original_max_pos / (double)hi);
    float two_pi = (float)(2.0 * 3.14159265358979323846);
    float span = (float)((double)hi - (double)lo);
    for (int i = 0; i < D / 2; i++) {
        float inv = out[i];
        float wavelen = (1.0f / inv) * two_pi;
        float llama = wavelen > low_wavelen ? inv / factor : inv;
        float smooth = ((1.0f / wavelen) * old - lo) / span;
        float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
        int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        out[i] = medium ? smoothed : llama;
    }
}
