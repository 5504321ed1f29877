/*
 * config.json parsing per family (HF defaults, biases, q/k norm, llama3 rope, head_dim, eos lists,
 * rejections), ft_config_to_json round trip, the weight layout against ft_weights_bind, and
 * ft_model_save -> ft_model_load round trips (F32: exact; BF16/F16: exactly the rounding of the
 * saved values to that dtype, since storage is the only change), and loading the stories15M
 * fixture. RoPE inverse frequencies are checked against PyTorch's in tests/model/test_rope_ref.
 */
#include "../test.h"
#include "ftune/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static ft_status parse(ft_config *c, const char *json) {
    return ft_config_parse(c, "cfg.json", json, strlen(json));
}

#define TINY                                                                                       \
    "\"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 2, "                   \
    "\"num_attention_heads\": 4, \"vocab_size\": 40"

static void test_configs(void) {
    ft_config c;
    ft_status st = parse(&c, "{\"model_type\": \"llama\", " TINY "}");
    CHECK("llama_defaults",
          st == FT_OK && c.family == FT_FAMILY_LLAMA && c.n_kv_heads == 4 && c.head_dim == 4 &&
              c.max_seq_len == 2048 && c.rms_eps == 1e-6f && c.rope_theta == 10000.0f &&
              !c.tie_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm &&
              c.bos_id == 1 && c.eos_id == 2 && c.torch_dtype == FT_DTYPE_F32 &&
              c.rope_type == FT_ROPE_DEFAULT,
          "st %d: %s", st, ft_error_message());
    st = parse(
        &c,
        "{\"model_type\": \"llama\", " TINY ", \"num_key_value_heads\": 2, \"head_dim\": 8, "
        "\"attention_bias\": true, \"mlp_bias\": true, \"tie_word_embeddings\": true, "
        "\"eos_token_id\": [128001, 128008], \"torch_dtype\": \"bfloat16\", \"rope_theta\": "
        "500000.0, "
        "\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
        "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}}");
    CHECK("llama3_variant",
          st == FT_OK && c.n_kv_heads == 2 && c.head_dim == 8 && c.qkv_bias && c.o_bias &&
              c.mlp_bias && c.tie_embeddings && c.eos_id == 128001 &&
              c.torch_dtype == FT_DTYPE_BF16 && c.rope_type == FT_ROPE_LLAMA3 &&
              c.rope_factor == 32.0f && c.rope_low_freq_factor == 1.0f &&
              c.rope_high_freq_factor == 4.0f && c.rope_original_max_pos == 8192 &&
              c.rope_theta == 500000.0f,
          "st %d: %s", st, ft_error_message());
    st = parse(&c, "{\"model_type\": \"llama\", " TINY
                   ", \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8, "
                   "\"low_freq_factor\": 1, \"high_freq_factor\": 4, "
                   "\"original_max_position_embeddings\": 8192}}");
    CHECK("rope_scaling_type_key", st == FT_OK && c.rope_type == FT_ROPE_LLAMA3, "%s",
          ft_error_message());
    st = parse(&c,
               "{\"model_type\": \"llama\", " TINY ", \"dtype\": \"float16\", \"rope_parameters\": "
               "{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, "
               "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
               "\"original_max_position_embeddings\": 8192}}");
    CHECK("transformers5_rope_parameters",
          st == FT_OK && c.rope_type == FT_ROPE_LLAMA3 && c.rope_theta == 500000.0f &&
              c.rope_factor == 8.0f && c.torch_dtype == FT_DTYPE_F16,
          "st %d: %s", st, ft_error_message());
    st = parse(&c, "{\"model_type\": \"qwen2\", " TINY
                   ", \"tie_word_embeddings\": true, \"eos_token_id\": 7}");
    CHECK("qwen2",
          st == FT_OK && c.family == FT_FAMILY_QWEN2 && c.qkv_bias && !c.o_bias && !c.qk_norm &&
              c.tie_embeddings && c.bos_id == -1 && c.eos_id == 7 && c.max_seq_len == 32768,
          "st %d: %s", st, ft_error_message());
    st = parse(&c, "{\"model_type\": \"qwen3\", " TINY ", \"attention_bias\": false}");
    CHECK("qwen3_head_dim_default_128",
          st == FT_OK && c.qk_norm && !c.qkv_bias && c.head_dim == 128, "st %d: %s", st,
          ft_error_message());
    st = parse(&c, "{\"model_type\": \"mistral\", " TINY ", \"sliding_window\": null}");
    CHECK("mistral_window_null",
          st == FT_OK && c.family == FT_FAMILY_MISTRAL && c.sliding_window == 0, "%s",
          ft_error_message());
    st = parse(&c, "{\"model_type\": \"mistral\", " TINY "}");
    CHECK("mistral_window_default", st == FT_OK && c.sliding_window == 4096, "%s",
          ft_error_message());

    struct {
        const char *name, *json, *want;
        ft_status code;
    } bad[] = {
        {"reject_unknown_model_type", "{\"model_type\": \"gpt2\", " TINY "}", "'model_type'",
         FT_ERR_UNSUPPORTED},
        {"reject_yarn",
         "{\"model_type\": \"llama\", " TINY
         ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}}",
         "yarn", FT_ERR_UNSUPPORTED},
        {"reject_linear",
         "{\"model_type\": \"llama\", " TINY
         ", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2}}",
         "linear", FT_ERR_UNSUPPORTED},
        {"reject_missing_key", "{\"model_type\": \"llama\", \"hidden_size\": 16}",
         "'intermediate_size'", FT_ERR_NOT_FOUND},
        {"reject_wrong_type",
         "{\"model_type\": \"llama\", " TINY ", \"num_key_value_heads\": \"2\"}",
         "'num_key_value_heads'", FT_ERR_FORMAT},
        {"reject_fraction", "{\"model_type\": \"llama\", " TINY ", \"head_dim\": 4.5}",
         "'head_dim'", FT_ERR_FORMAT},
        {"reject_gqa_mismatch", "{\"model_type\": \"llama\", " TINY ", \"num_key_value_heads\": 3}",
         "num_key_value_heads", FT_ERR_FORMAT},
        {"reject_llama3_incomplete",
         "{\"model_type\": \"llama\", " TINY
         ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
         "rope_scaling.low_freq_factor", FT_ERR_NOT_FOUND},
        {"reject_activation", "{\"model_type\": \"llama\", " TINY ", \"hidden_act\": \"gelu\"}",
         "hidden_act", FT_ERR_UNSUPPORTED},
        {"reject_dtype", "{\"model_type\": \"llama\", " TINY ", \"torch_dtype\": \"int8\"}",
         "torch_dtype", FT_ERR_UNSUPPORTED},
        {"reject_syntax_line", "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 16,,\n}",
         "cfg.json:3:", FT_ERR_FORMAT},
        {"reject_not_object", "[1, 2]", "not a JSON object", FT_ERR_FORMAT},
        {"reject_trailing", "{\"model_type\": \"llama\", " TINY "} x",
         "cfg.json:1:", FT_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = parse(&c, bad[i].json);
        const char *m = ft_error_message();
        CHECK(bad[i].name,
              st == bad[i].code && strstr(m, bad[i].want) && strncmp(m, "cfg.json", 8) == 0,
              "status %d, message: %s", st, m);
    }

    /* to_json -> parse gives the same config back */
    const char *variants[] = {
        "{\"model_type\": \"llama\", " TINY
        ", \"num_key_value_heads\": 2, \"head_dim\": 8, \"rms_norm_eps\": 1e-5, "
        "\"attention_bias\": true, \"tie_word_embeddings\": true, \"torch_dtype\": \"float16\", "
        "\"rope_scaling\": "
        "{\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
        "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}}",
        "{\"model_type\": \"mistral\", " TINY ", \"sliding_window\": 64}",
        "{\"model_type\": \"qwen2\", " TINY
        ", \"rope_theta\": 1000000.0, \"use_sliding_window\": true}",
        "{\"model_type\": \"qwen3\", " TINY
        ", \"head_dim\": 6, \"attention_bias\": true, \"bos_token_id\": null}",
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        ft_config a, b;
        char *js = NULL, name[64];
        snprintf(name, sizeof name, "config_to_json_roundtrip_%zu", i);
        st = parse(&a, variants[i]);
        if (st == FT_OK) st = ft_config_to_json(&a, &js);
        if (st == FT_OK) st = ft_config_parse(&b, "out.json", js, strlen(js));
        CHECK(name, st == FT_OK && memcmp(&a, &b, sizeof a) == 0, "st %d: %s\n%s", st,
              ft_error_message(), js ? js : "");
        free(js);
    }
}

/* Layout offsets and ft_weights_bind pointers agree, for every family. */
static void test_layout(void) {
    const char *fams[] = {"llama", "mistral", "qwen2", "qwen3"};
    for (int f = 0; f < 4; f++) {
        char json[512], name[64];
        snprintf(json, sizeof json,
                 "{\"model_type\": \"%s\", " TINY
                 ", \"head_dim\": 6, \"num_key_value_heads\": 2%s}",
                 fams[f], f == 0 ? ", \"attention_bias\": true, \"mlp_bias\": true" : "");
        ft_config c;
        ft_tensor_info *ts = NULL;
        int n = 0;
        size_t total = 0;
        ft_status st = parse(&c, json);
        if (st == FT_OK) st = ft_weights_layout(&c, &ts, &n, &total);
        snprintf(name, sizeof name, "layout_%s", fams[f]);
        if (st != FT_OK) {
            CHECK(name, 0, "%s", ft_error_message());
            continue;
        }
        /* expected counts: globals 3 (untied), per layer 9 base + biases/norms */
        int per = 9 + (c.qkv_bias ? 3 : 0) + (c.o_bias ? 1 : 0) + (c.mlp_bias ? 3 : 0) +
                  (c.qk_norm ? 2 : 0);
        size_t sum = 0;
        for (int i = 0; i < n; i++)
            sum += ts[i].numel;
        float *base = calloc(total, sizeof(float));
        ft_weights w;
        ft_weights_bind(&w, &c, base);
        int ok = n == 3 + per * c.n_layers && sum == total;
        ok &= w.embed == base + ts[0].offset && !strcmp(ts[0].name, "model.embed_tokens.weight");
        /* every layer's wq and w_down sit where the layout says */
        for (int i = 0; i < n; i++) {
            if (strstr(ts[i].name, "q_proj.weight"))
                ok &= w.layers[ts[i].layer].wq == base + ts[i].offset;
            if (strstr(ts[i].name, "down_proj.weight"))
                ok &= w.layers[ts[i].layer].w_down == base + ts[i].offset;
            if (strstr(ts[i].name, "k_norm"))
                ok &= w.layers[ts[i].layer].k_norm == base + ts[i].offset;
            if (strstr(ts[i].name, "k_proj.bias"))
                ok &= w.layers[ts[i].layer].bk == base + ts[i].offset;
            if (!strcmp(ts[i].name, "lm_head.weight")) ok &= w.lm_head == base + ts[i].offset;
        }
        ok &= (w.layers[0].bq != NULL) == (c.qkv_bias != 0) &&
              (w.layers[1].q_norm != NULL) == (c.qk_norm != 0);
        ok &= (w.layers[0].b_up != NULL) == (c.mlp_bias != 0) && w.layers[2].wq == NULL;
        if (f == 3) ok &= ts[n - 1].offset + ts[n - 1].numel == total;
        CHECK(name, ok, "layout and bind disagree (%d tensors, %zu floats)", n, total);
        free(base);
        free(ts);
    }
}

static void test_save_load(const char *tmp) {
    /* k: storage dtype; bf16 and f16 runs use tied embeddings, f32 untied */
    const char *dtypes[] = {"float32", "bfloat16", "float16"};
    for (int k = 0; k < 3; k++) {
        char dir[512], json[768], name[64];
        snprintf(dir, sizeof dir, "%s/model_%s", tmp, dtypes[k]);
        mkdir(dir, 0755);
        snprintf(json, sizeof json,
                 "{\"model_type\": \"qwen3\", " TINY
                 ", \"head_dim\": 6, \"num_key_value_heads\": 2,"
                 " \"tie_word_embeddings\": %s, \"torch_dtype\": \"%s\"}",
                 k ? "true" : "false", dtypes[k]);
        ft_model m = {0}, back = {0};
        ft_status st = parse(&m.cfg, json);
        if (st == FT_OK) st = ft_weights_layout(&m.cfg, &m.tensors, &m.n_tensors, &m.n_params);
        if (st == FT_OK && !(m.params = ft_calloc(m.n_params, sizeof(float)))) st = FT_ERR_NOMEM;
        if (st == FT_OK) {
            uint32_t s = 12345u;
            for (size_t i = 0; i < m.n_params; i++) {
                s = s * 1664525u + 1013904223u;
                m.params[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.2f;
            }
            st = ft_model_save(&m, dir);
        }
        if (st == FT_OK) st = ft_model_load(&back, dir);
        snprintf(name, sizeof name, "save_load_%s", dtypes[k]);
        int ok = st == FT_OK && back.n_params == m.n_params && back.cfg.tie_embeddings == (k != 0);
        size_t badi = 0;
        for (size_t i = 0; ok && i < m.n_params; i++) {
            float want = k == 1   ? ft_bf16_to_f32(ft_f32_to_bf16(m.params[i]))
                         : k == 2 ? ft_f16_to_f32(ft_f32_to_f16(m.params[i]))
                                  : m.params[i];
            if (back.params[i] != want) {
                ok = 0;
                badi = i;
            }
        }
        CHECK(name, ok, "st %d (%s), first difference at %zu", st, ft_error_message(), badi);
        if (k == 0 && st == FT_OK) {
            /* weights that cannot be written (a folder where model.safetensors goes): the save
             * fails and leaves no config.json (it was written first, describing no weights) */
            char bad[600], p[700];
            struct stat sb;
            snprintf(bad, sizeof bad, "%s/model_unwritable", tmp);
            snprintf(p, sizeof p, "%s/model.safetensors", bad);
            mkdir(bad, 0755);
            mkdir(p, 0755);
            st = ft_model_save(&m, bad);
            snprintf(p, sizeof p, "%s/config.json", bad);
            CHECK("save_failed_weights_leave_no_config", st != FT_OK && stat(p, &sb) != 0,
                  "st %d, config.json %s", st, stat(p, &sb) ? "absent" : "written");
        }
        if (st == FT_OK) {
            snprintf(name, sizeof name, "save_load_%s_bound", dtypes[k]);
            CHECK(name,
                  back.w.embed == back.params &&
                      (k ? back.w.lm_head == NULL : back.w.lm_head != NULL) &&
                      back.w.layers[1].k_norm != NULL && back.rope_inv_freq &&
                      back.rope_inv_freq[0] == 1.0f,
                  "weights not bound as expected");
        }
        ft_model_free(&back);
        ft_model_free(&m);
        ft_model_free(&m); /* a freed model frees again safely */
    }
}

/* ft_model_load on the converted stories15M fixture, spot-checked against the raw llama2.c file:
 * embeddings unchanged, q_proj rows permuted (row 1 of head 0 = llama2.c row 2, row D/2 = row 1).
 */
static void test_stories15m(void) {
    const char *dir = "models/stories15M", *raw = "fixtures/npm/llama2c/package/dist/llama2.data";
    ft_model m;
    ft_status st = ft_model_load(&m, dir);
    if (st != FT_OK) {
        CHECK("load_stories15M", 0, "%s (run make fixtures)", ft_error_message());
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    int ok = m.n_params == 15191712 && m.cfg.tie_embeddings && m.w.lm_head == NULL &&
             m.cfg.head_dim == 48;
    CHECK("load_stories15M", ok, "n_params %zu", m.n_params);
    if (ft_read_file(raw, &buf, &len) == FT_OK && len >= 60816028) {
        const size_t C = 288, V = 32000;
        float e[3], q[3];
        memcpy(e, buf + 28 + 4 * (123 * C + 7), 4);      /* embed[123][7] */
        const char *wq = buf + 28 + 4 * (V * C + 6 * C); /* wq[0] */
        memcpy(&q[0], wq + 4 * (0 * C + 5), 4);          /* row 0 */
        memcpy(&q[1], wq + 4 * (2 * C + 5), 4);          /* row 2 -> 1 */
        memcpy(&q[2], wq + 4 * (1 * C + 5), 4);          /* row 1 -> 24 */
        const float *lq = m.w.layers[0].wq;
        CHECK("load_stories15M_values",
              m.w.embed[123 * C + 7] == e[0] && lq[0 * C + 5] == q[0] && lq[1 * C + 5] == q[1] &&
                  lq[24 * C + 5] == q[2],
              "values differ from the llama2.c file");
    } else {
        CHECK("load_stories15M_values", 0, "cannot read %s", raw);
    }
    free(buf);
    ft_model_free(&m);
}

int main(void) {
    test_configs();
    test_stories15m();
    test_layout();
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/modelio.XXXXXX", getenv("FT_TMP") ? getenv("FT_TMP") : "/tmp");
    if (!mkdtemp(tmp)) {
        printf("FAIL setup: mkdtemp\n");
        return 1;
    }
    test_save_load(tmp);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    return ft_test_exit();
}
