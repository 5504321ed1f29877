/*
 * The YAML run configuration: Axolotl keys parse into the right fields, defaults hold, --set
 * overrides (lists too), and every bad input is an error naming the key and the YAML line.
 */
#include "../test.h"
#include "ftune/trainer.h"

#include <string.h>

static ft_status parse(ft_train_config *c, const char *yaml) {
    ft_train_config_defaults(c);
    ft_status st = ft_train_config_apply_yaml(c, "config.yaml", yaml, strlen(yaml));
    if (!st) st = ft_train_config_finish(c);
    return st;
}

/* The config must fail with a message containing `want`. */
static void expect_error(const char *name, const char *yaml, const char *want) {
    ft_train_config c;
    ft_error_clear();
    ft_status st = parse(&c, yaml);
    CHECK(name, st != FT_OK && strstr(ft_error_message(), want), "status %d, message '%s', want '%s'",
          st, ft_error_message(), want);
    ft_train_config_free(&c);
}

static const char *good =
    "base_model: models/stories15M\n"
    "datasets:\n"
    "  - path: data/moby.jsonl\n"
    "    type: completion\n"
    "  - path: extra.txt\n"
    "    type: text\n"
    "sequence_len: 256\n"
    "adapter: lora\n"
    "lora_r: 16\n"
    "lora_alpha: 32\n"
    "lora_dropout: 0.05\n"
    "lora_target_modules:\n"
    "  - q_proj\n"
    "  - v_proj\n"
    "  - down_proj\n"
    "peft_use_rslora: true\n"
    "micro_batch_size: 2\n"
    "gradient_accumulation_steps: 4\n"
    "num_epochs: 3\n"
    "learning_rate: 2e-4\n"        /* a string to YAML 1.1, a number to Axolotl */
    "lr_scheduler: linear\n"
    "warmup_steps: 10\n"
    "optimizer: adamw_torch_fused\n"
    "weight_decay: 0.01\n"
    "adam_beta2: 0.95\n"
    "max_grad_norm: 0.5\n"
    "gradient_checkpointing: true\n"
    "seed: 7\n"
    "output_dir: ./out\n"
    "save_steps: 50\n"
    "save_total_limit: 2\n"
    "resume_from_checkpoint: auto\n"
    "logging_steps: 5\n"
    "val_set_size: 0.05\n"
    "eval_steps: 20\n"
    "wandb_project:\n"
    "load_in_8bit: false\n"
    "bf16: auto\n";

int main(void) {
    ft_train_config c;
    ft_status st = parse(&c, good);
    CHECK("config_parses", st == FT_OK, "%s", ft_error_message());
    CHECK("config_strings", !strcmp(c.base_model, "models/stories15M") && c.n_datasets == 2 &&
                                !strcmp(c.datasets[0].path, "data/moby.jsonl") &&
                                !strcmp(c.datasets[0].type, "completion") &&
                                !strcmp(c.datasets[0].field, "text") &&
                                !strcmp(c.datasets[1].type, "text") && !strcmp(c.output_dir, "./out") &&
                                !strcmp(c.resume_from_checkpoint, "auto") &&
                                !strcmp(c.optimizer, "adamw_torch_fused"),
          "string fields wrong");
    CHECK("config_lora", c.method == FT_METHOD_LORA && c.lora.r == 16 && c.lora.alpha == 32.0f &&
                             c.lora.dropout == 0.05f && c.lora.use_rslora == 1 &&
                             c.lora.targets == (FT_LORA_Q | FT_LORA_V | FT_LORA_DOWN),
          "method %d r %d alpha %g dropout %g rs %d targets %x", c.method, c.lora.r,
          c.lora.alpha, c.lora.dropout, c.lora.use_rslora, c.lora.targets);
    CHECK("config_numbers",
          c.sequence_len == 256 && c.micro_batch_size == 2 && c.gradient_accumulation_steps == 4 &&
              c.num_epochs == 3 && c.learning_rate == 2e-4 && c.lr_scheduler == FT_SCHED_LINEAR &&
              c.warmup_steps == 10 && c.adam.weight_decay == 0.01 && c.adam.beta1 == 0.9 &&
              c.adam.beta2 == 0.95 && c.adam.eps == 1e-8 && c.max_grad_norm == 0.5 &&
              c.gradient_checkpointing == 1 && c.seed == 7 && c.save_steps == 50 &&
              c.save_total_limit == 2 && c.logging_steps == 5 && c.val_set_size == 0.05 &&
              c.eval_steps == 20 && c.max_steps == -1,
          "numeric fields wrong (lr %g)", c.learning_rate);
    CHECK("config_notes_for_ignored_keys", c.n_notes == 2, "%d notes", c.n_notes);
    CHECK("config_bf16_auto_is_on", c.bf16 == 1, "bf16 %d", c.bf16);

    /* --set overrides, including a list in YAML flow syntax */
    st = ft_train_config_set(&c, "lora_target_modules=[q_proj, k_proj]");
    if (!st) st = ft_train_config_set(&c, "learning_rate=1e-3");
    if (!st) st = ft_train_config_set(&c, "max_steps=12");
    CHECK("config_set", st == FT_OK && c.lora.targets == (FT_LORA_Q | FT_LORA_K) &&
                            c.learning_rate == 1e-3 && c.max_steps == 12,
          "%s", ft_error_message());
    st = ft_train_config_set(&c, "adapter=null");
    if (!st) st = ft_train_config_set(&c, "resume_from_checkpoint=");
    if (!st) st = ft_train_config_set(&c, "lora_r=~");
    CHECK("config_set_null_restores_default", st == FT_OK && c.method == FT_METHOD_FULL &&
                                                  c.resume_from_checkpoint == NULL && c.lora.r == 8,
          "%s", ft_error_message());
    ft_error_clear();
    st = ft_train_config_set(&c, "lora_rr=3");
    CHECK("config_set_unknown", st != FT_OK && strstr(ft_error_message(), "--set lora_rr=3") &&
                                    strstr(ft_error_message(), "'lora_rr'"),
          "%s", ft_error_message());
    st = ft_train_config_set(&c, "noequals");
    CHECK("config_set_syntax", st != FT_OK, "accepted");
    st = ft_train_config_set(&c, "bf16=false");
    int off = c.bf16;
    if (!st) st = ft_train_config_set(&c, "bf16=null");
    CHECK("config_bf16_false_then_null", st == FT_OK && off == 0 && c.bf16 == 1, "%s (bf16 %d/%d)",
          ft_error_message(), off, c.bf16);
    ft_error_clear();
    st = ft_train_config_set(&c, "bf16=maybe");
    CHECK("config_bf16_bad_value", st != FT_OK && strstr(ft_error_message(), "true, false or auto"),
          "%s", ft_error_message());
    ft_train_config_free(&c);

    /* defaults */
    st = parse(&c, "base_model: m\ndatasets: [{path: a.txt, type: text}]\n");
    CHECK("config_defaults",
          st == FT_OK && c.method == FT_METHOD_FULL && c.sequence_len == 512 &&
              c.micro_batch_size == 1 && c.gradient_accumulation_steps == 1 && c.num_epochs == 1 &&
              c.learning_rate == 5e-5 && c.lr_scheduler == FT_SCHED_COSINE &&
              c.adam.beta2 == 0.999 && c.max_grad_norm == 1.0 && c.seed == 42 &&
              !strcmp(c.output_dir, "./model-out") && c.lora.r == 8 &&
              c.lora.targets == (FT_LORA_Q | FT_LORA_V),
          "%s", ft_error_message());
    ft_train_config_free(&c);
    st = parse(&c, "base_model: m\ndatasets: [{path: a.txt, type: text}]\n"
                   "unfrozen_parameters:\n  - ^lm_head.weight$\n  - model.layers.1.*\n"
                   "lora_target_linear: true\n");
    CHECK("config_freeze_method", st == FT_OK && c.method == FT_METHOD_FREEZE &&
                                      c.n_unfrozen == 2 && !strcmp(c.unfrozen[1], "model.layers.1.*") &&
                                      c.lora.targets == FT_LORA_ALL_LINEAR,
          "%s", ft_error_message());
    ft_train_config_free(&c);
    CHECK("config_steps_fraction", ft_train_config_steps(0.25, 10) == 3 &&
                                       ft_train_config_steps(20, 10) == 20 &&
                                       ft_train_config_steps(0, 10) == 0, "ratio resolution");

    /* errors: key and line */
    expect_error("err_unknown_key", "base_model: m\nlora_rr: 8\n",
                 "config.yaml:2: unknown key 'lora_rr' (did you mean 'lora_r'?)");
    expect_error("err_wrong_type_int", "base_model: m\n\n\nlora_r: abc\n",
                 "config.yaml:4: key 'lora_r': expected an integer, got 'abc'");
    expect_error("err_not_integer", "micro_batch_size: 1.5\n", "config.yaml:1: key 'micro_batch_size'");
    expect_error("err_bool", "gradient_checkpointing: maybe\n",
                 "config.yaml:1: key 'gradient_checkpointing': expected true or false");
    expect_error("err_range", "base_model: m\nlearning_rate: -1\n",
                 "config.yaml:2: key 'learning_rate': -1 is out of range");
    expect_error("err_range_dropout", "lora_dropout: 1.5\n", "config.yaml:1: key 'lora_dropout'");
    expect_error("err_list_for_scalar", "sequence_len: [1, 2]\n",
                 "config.yaml:1: key 'sequence_len': expected an integer, got a list");
    expect_error("err_scheduler", "lr_scheduler: polynomial\n",
                 "config.yaml:1: key 'lr_scheduler': 'polynomial' is not supported");
    expect_error("err_optimizer", "\noptimizer: sgd\n", "config.yaml:2: key 'optimizer': 'sgd'");
    expect_error("err_optimizer_8bit", "optimizer: adamw_bnb_8bit\n", "'adamw_bnb_8bit' is not supported");
    expect_error("err_adapter", "adapter: ia3\n", "config.yaml:1: key 'adapter': 'ia3'");
    expect_error("err_target", "lora_target_modules:\n  - q_proj\n  - qq_proj\n",
                 "config.yaml:3: key 'lora_target_modules': unknown module 'qq_proj'");
    expect_error("err_dataset_type", "datasets:\n  - path: a.jsonl\n    type: alpacca\n",
                 "config.yaml:2: key 'datasets[0].type': 'alpacca' is not supported");
    expect_error("err_dataset_key", "datasets:\n  - path: a.jsonl\n    type: text\n    pth: x\n",
                 "config.yaml:4: unknown key 'pth' in datasets[0]");
    expect_error("err_dataset_missing_path", "datasets:\n  - type: text\n",
                 "config.yaml:2: key 'datasets[0]': missing 'path'");
    expect_error("err_duplicate", "lora_r: 8\nseed: 1\nlora_r: 16\n",
                 "config.yaml:3: key 'lora_r' appears twice (first on line 1)");
    expect_error("err_yaml_syntax", "base_model: m\ndatasets: [a, b\n", "config.yaml:");
    expect_error("err_top_level", "- a\n- b\n", "config.yaml:1: the top level must be a mapping");
    expect_error("err_feature_off_only", "load_in_4bit: true\n",
                 "config.yaml:1: key 'load_in_4bit': 'true' asks for a feature");
    expect_error("err_truncation", "truncation: cut\n",
                 "config.yaml:1: key 'truncation': 'cut' is not supported (supported: error, drop, "
                 "truncate)");
    expect_error("err_missing_base", "datasets: [{path: a.txt, type: text}]\n",
                 "missing required key 'base_model'");
    expect_error("err_missing_datasets", "base_model: m\n", "missing required key 'datasets'");
    expect_error("err_lora_and_unfrozen",
                 "base_model: m\ndatasets: [{path: a.txt, type: text}]\nadapter: lora\n"
                 "unfrozen_parameters: [lm_head]\n",
                 "'unfrozen_parameters' cannot be combined with 'adapter: lora'");
    /* peft_trainable_token_indices (Axolotl; PEFT trainable_token_indices): both forms, errors */
    static const char *base_lora = "base_model: m\ndatasets: [{path: a.txt, type: text}]\n"
                                   "adapter: lora\n";
    char y[512];
    snprintf(y, sizeof y, "%speft_trainable_token_indices: [2, 32000]\n", base_lora);
    st = parse(&c, y);
    if (st == FT_OK) st = ft_train_config_finish(&c);
    CHECK("config_tokens_list", st == FT_OK && c.n_tok_embed == 2 && c.tok_embed[1] == 32000 &&
          !c.n_tok_head && !c.tok_as_dict && c.tok_where && strstr(c.tok_where, "config.yaml:4"),
          "%s", ft_error_message());
    ft_config mc = {.vocab_size = 32000, .tie_embeddings = 1};
    st = st ? st : ft_train_config_check_model(&c, &mc);
    CHECK("config_tokens_outside_vocab",
          st != FT_OK && strstr(ft_error_message(), "config.yaml:4: key 'peft_trainable_token_"
                                "indices': token id 32000 is outside the model's vocabulary"),
          "%s", ft_error_message());
    ft_train_config_free(&c);
    snprintf(y, sizeof y, "%speft_trainable_token_indices:\n  embed_tokens: [5, 2]\n"
             "  lm_head: [2]\n", base_lora);
    st = parse(&c, y);
    if (st == FT_OK) st = ft_train_config_finish(&c);
    CHECK("config_tokens_dict", st == FT_OK && c.tok_as_dict && c.n_tok_embed == 2 &&
          c.tok_embed[0] == 5 && c.n_tok_head == 1 && c.tok_head[0] == 2, "%s", ft_error_message());
    mc.vocab_size = 100;
    st = st ? st : ft_train_config_check_model(&c, &mc);
    CHECK("config_tokens_tied_head_differs",
          st != FT_OK && strstr(ft_error_message(), "config.yaml:5: key 'peft_trainable_token_"
                                "indices.lm_head': the model ties lm_head"),
          "%s", ft_error_message());
    mc.tie_embeddings = 0;
    CHECK("config_tokens_untied_head_ok", ft_train_config_check_model(&c, &mc) == FT_OK, "%s",
          ft_error_message());
    ft_train_config_free(&c);
    expect_error("err_tokens_negative", "peft_trainable_token_indices: [2, -1]\n",
                 "config.yaml:1: key 'peft_trainable_token_indices[1]': -1 is out of range");
    expect_error("err_tokens_duplicate", "\npeft_trainable_token_indices: [2, 7, 2]\n",
                 "config.yaml:2: key 'peft_trainable_token_indices': token id 2 appears twice");
    expect_error("err_tokens_not_int", "peft_trainable_token_indices: [eos]\n",
                 "key 'peft_trainable_token_indices[0]': expected an integer");
    expect_error("err_tokens_scalar", "peft_trainable_token_indices: 2\n",
                 "config.yaml:1: key 'peft_trainable_token_indices': expected a list of token ids");
    expect_error("err_tokens_module", "peft_trainable_token_indices: {wte: [2]}\n",
                 "config.yaml:1: key 'peft_trainable_token_indices': module 'wte' is not supported");
    expect_error("err_tokens_empty", "peft_trainable_token_indices: []\n",
                 "key 'peft_trainable_token_indices': empty list");
    snprintf(y, sizeof y, "base_model: m\ndatasets: [{path: a.txt, type: text}]\n"
             "peft_trainable_token_indices: [2]\n");
    st = parse(&c, y);
    if (st == FT_OK) st = ft_train_config_finish(&c);
    CHECK("err_tokens_without_lora",
          st != FT_OK && strstr(ft_error_message(), "config.yaml:3: key 'peft_trainable_token_"
                                "indices' needs 'adapter: lora'"),
          "%s", ft_error_message());
    ft_train_config_free(&c);
    /* instruction data keys (src/data): the config and its SFT view */
    st = parse(&c, "base_model: m\ndatasets:\n  - path: q.jsonl\n    type: alpaca\n"
                   "    field_instruction: q\n    field_output: a\n    skip_invalid: true\n"
                   "  - path: c.jsonl\n    type: sharegpt\n    message_field_role: speaker\n"
                   "chat_template: llama3\ntrain_on_inputs: true\nsample_packing: true\n"
                   "truncation: drop\nshuffle_merged_datasets: false\nsequence_len: 256\n");
    ft_sft_config sc;
    ft_sft_source *src = NULL;
    if (st == FT_OK) st = ft_train_config_finish(&c);
    if (st == FT_OK) st = ft_train_config_sft(&c, &sc, &src);
    CHECK("config_instruction_keys",
          st == FT_OK && ft_train_config_is_sft(&c) && sc.n_src == 2 &&
              !strcmp(src[0].fmt.field_instruction, "q") && !strcmp(src[0].fmt.field_output, "a") &&
              src[0].fmt.skip_invalid == 1 && src[1].fmt.skip_invalid == 0 &&
              !strcmp(src[1].fmt.message_field_role, "speaker") &&
              !strcmp(sc.chat_template, "llama3") && sc.train_on_inputs == 1 &&
              c.sample_packing == 1 && sc.truncation == FT_TRUNC_DROP && sc.shuffle == 0 &&
              sc.T == 256 && !strcmp(sc.tokenizer_dir, "m"),
          "status %d %s", st, ft_error_message());
    free(src);
    ft_train_config_free(&c);
    return ft_test_exit();
}
