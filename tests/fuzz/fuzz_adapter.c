/*
 * libFuzzer target for PEFT adapter folders: the input becomes adapter_config.json in a private
 * temporary folder whose adapter_model.safetensors holds valid LoRA pairs (r 2) for q_proj and
 * v_proj of both layers of a tiny model (dim 8, 2 layers, vocab 12) and a trainable-tokens row
 * tensor, then ft_adapter_load reads it against that model (the config's keys, target_modules /
 * exclude_modules as regexes or lists, trainable_token_indices) and ft_adapter_merge applies
 * what loaded. Any outcome but a status is a bug; a loaded adapter must be whole.
 */
#include "ftune/peft.h"
#include "ftune/safetensors.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], cfg_path[300], st_path[300];
static ft_model model;

static const char model_json[] =
    "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"vocab_size\":12,\"tie_word_embeddings\":true}";

static void cleanup(void) {
    unlink(cfg_path);
    unlink(st_path);
    rmdir(dir);
    free(model.tensors);
    free(model.params);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_adapter.XXXXXX", tmp);
    if (!mkdtemp(dir)) abort();
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", dir);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
    if (ft_config_parse(&model.cfg, "model.json", model_json, strlen(model_json)) != FT_OK ||
        ft_weights_layout(&model.cfg, &model.tensors, &model.n_tensors, &model.n_params) != FT_OK)
        abort();
    if (!(model.params = calloc(model.n_params, sizeof(float)))) abort();
    ft_weights_bind(&model.w, &model.cfg, model.params);
    /* q_proj (8 x 8) and v_proj (4 x 8: one KV head of dim 4) of layers 0 and 1, r 2 */
    static float v[64];
    for (int i = 0; i < 64; i++) v[i] = (float)(i % 7) * 0.125f - 0.25f;
    static char names[8][96];
    ft_st_write_tensor t[9];
    int n = 0;
    for (int l = 0; l < 2; l++)
        for (int q = 0; q < 2; q++) {
            int out = q ? 4 : 8;
            snprintf(names[n], sizeof names[n],
                     "base_model.model.model.layers.%d.self_attn.%s_proj.lora_A.weight", l,
                     q ? "v" : "q");
            t[n] = (ft_st_write_tensor){names[n], FT_DTYPE_F32, 2, {2, 8}, v};
            n++;
            snprintf(names[n], sizeof names[n],
                     "base_model.model.model.layers.%d.self_attn.%s_proj.lora_B.weight", l,
                     q ? "v" : "q");
            t[n] = (ft_st_write_tensor){names[n], FT_DTYPE_F32, 2, {out, 2}, v};
            n++;
        }
    t[n++] = (ft_st_write_tensor){
        "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta", FT_DTYPE_F32,
        2, {2, 8}, v};
    if (ft_st_write(st_path, t, n, NULL) != FT_OK) abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = open(cfg_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    close(fd);
    ft_adapter a;
    if (ft_adapter_load(&a, dir, &model) == FT_OK) {
        if (a.r != 2 || !(a.n_pairs > 0 || a.n_tok[0] > 0 || a.n_tok[1] > 0)) abort();
        for (int p = 0; p < a.n_pairs; p++)
            if (!a.pairs[p].A || !a.pairs[p].B) abort();
        (void)ft_adapter_merge(&model, &a);
        ft_adapter_free(&a);
    }
    return 0;
}
