/*
 * Checkpoint folders: save/load round trip is bit-exact (params, AdamW moments and step, trainer
 * state incl. 64-bit RNG states and the running loss), the folder appears only complete (no
 * temporary left), latest picks the highest complete N and ignores temporaries and incomplete
 * folders, prune keeps the newest, and a checkpoint of another layout is refused by name.
 */
#include "../test.h"
#include "ftune/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[512];

static int exists(const char *fmt, const char *a) {
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, fmt, root, a);
    return stat(p, &sb) == 0;
}

/* Rewrite <dir>/trainer_state.json with `key` set to the JSON `value` (NULL: removed). */
static void set_state_field(const char *dir, const char *key, const char *value) {
    char p[1200], *text = NULL;
    snprintf(p, sizeof p, "%s/trainer_state.json", dir);
    if (ft_read_file(p, &text, NULL)) return;
    cJSON *js = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObjectCaseSensitive(js, key);
    if (value) cJSON_AddItemToObject(js, key, cJSON_Parse(value));
    text = cJSON_Print(js);
    ft_write_file_atomic(p, text, strlen(text));
    free(text);
    cJSON_Delete(js);
}

int main(void) {
    const char *base = getenv("FT_TMP");
    snprintf(root, sizeof root, "%s/ckpt.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(root)) return 1;

    /* two tensors (one 2-D, one 1-D) in one flat buffer */
    float params[12 + 5];
    for (int i = 0; i < 17; i++) params[i] = 0.1f * (float)i - 0.7f;
    ft_trainable t[2];
    memset(t, 0, sizeof t);
    snprintf(t[0].name, sizeof t[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    t[0].param = params;
    t[0].numel = 12;
    t[0].rows = 3;
    t[0].cols = 4;
    snprintf(t[1].name, sizeof t[1].name, "model.norm.weight");
    t[1].param = params + 12;
    t[1].numel = 5;
    ft_adamw opt;
    ft_adamw_hparams h = {0.9, 0.999, 1e-8, 0.0};
    ft_adamw_init(&opt, 17, &h);
    for (int i = 0; i < 17; i++) {
        opt.m[i] = 1e-3f * (float)i;
        opt.v[i] = 1e-7f * (float)(i * i) + 1e-30f;
    }
    opt.step = 7;
    ft_train_state st = {.step = 7, .epoch = 1, .row = 123, .data_rng = 0xfedcba9876543210ull,
                         .model_rng = 0x8000000000000001ull, .loss_sum = 1.0 / 3.0, .loss_count = 2};
    ft_run_id id = {0};
    ft_run_id_set(&id, "learning_rate", "%.9g", 2e-4);
    ft_run_id_set(&id, "data", "%016llx", 0x0123456789abcdefull);
    ft_run_id_set(&id, "learning_rate", "%.9g", 1e-4); /* replaces, does not add */
    CHECK("run_id_set_replaces", id.n == 2 && !strcmp(id.value[0], "0.0001"), "n %d value %s",
          id.n, id.value[0]);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/checkpoint-7", root);
    ft_status s = ft_checkpoint_save(dir, &st, &id, t, 2, params, &opt);
    CHECK("save", s == FT_OK, "%s", ft_error_message());
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, "checkpoint-7.tmp.%ld", (long)getpid());
    CHECK("save_leaves_no_temporary", !exists("%s/%s", tmpname) &&
                                          exists("%s/%s/trainer_state.json", "checkpoint-7") &&
                                          exists("%s/%s/trainable.safetensors", "checkpoint-7"),
          "temporary or files wrong");

    float p2[17] = {0};
    ft_trainable t2[2];
    memcpy(t2, t, sizeof t);
    t2[0].param = p2;
    t2[1].param = p2 + 12;
    ft_adamw o2;
    ft_adamw_init(&o2, 17, &h);
    ft_train_state st2;
    s = ft_checkpoint_load(dir, &st2, &id, t2, 2, p2, &o2);
    CHECK("load", s == FT_OK, "%s", ft_error_message());
    CHECK("roundtrip_params_bits", !memcmp(p2, params, sizeof params), "params differ");
    CHECK("roundtrip_moments_bits", !memcmp(o2.m, opt.m, 17 * 4) && !memcmp(o2.v, opt.v, 17 * 4) &&
                                        o2.step == 7, "moments or step differ (step %lld)",
          (long long)o2.step);
    CHECK("roundtrip_state", st2.step == 7 && st2.epoch == 1 && st2.row == 123 &&
                                 st2.data_rng == st.data_rng && st2.model_rng == st.model_rng &&
                                 st2.loss_sum == st.loss_sum && st2.loss_count == 2,
          "state differs (rng %llx loss %.17g)", (unsigned long long)st2.model_rng, st2.loss_sum);

    /* another learning rate, or data: refused naming the key and both values, nothing loaded */
    ft_run_id other = id;
    ft_run_id_set(&other, "learning_rate", "%.9g", 3e-4);
    memset(p2, 0, sizeof p2);
    s = ft_checkpoint_load(dir, &st2, &other, t2, 2, p2, &o2);
    CHECK("load_refuses_other_settings",
          s != FT_OK && strstr(ft_error_message(), "learning_rate 0.0001, this run has 0.0003") &&
              p2[1] == 0.0f,
          "%s", ft_error_message());
    ft_run_id more = id;
    ft_run_id_set(&more, "seed", "%d", 42); /* a key the checkpoint does not record */
    s = ft_checkpoint_load(dir, &st2, &more, t2, 2, p2, &o2);
    CHECK("load_refuses_unrecorded_key",
          s != FT_OK && strstr(ft_error_message(), "seed (not recorded)"), "%s",
          ft_error_message());
    s = ft_checkpoint_load(dir, &st2, NULL, t2, 2, p2, &o2);
    CHECK("load_without_expectation", s == FT_OK && !memcmp(p2, params, sizeof params), "%s",
          ft_error_message());

    /* a run with another layout: refused naming the tensor */
    snprintf(t2[1].name, sizeof t2[1].name, "lm_head.weight");
    s = ft_checkpoint_load(dir, &st2, &id, t2, 2, p2, &o2);
    CHECK("load_refuses_other_layout", s != FT_OK && strstr(ft_error_message(), "lm_head.weight"),
          "%s", ft_error_message());
    s = ft_checkpoint_load(dir, &st2, &id, t2, 1, p2, &o2);
    CHECK("load_refuses_other_count", s != FT_OK && strstr(ft_error_message(), "holds 6 tensors"),
          "%s", ft_error_message());

    /* trainer_state.json values out of range or inconsistent: refused naming the file, the key
     * and the value, nothing loaded (a row of -5 overflowed a buffer, 9e18 hung the epoch shuffle,
     * 1e300 was an undefined cast, a negative adam_step gave NaN, "abc" became 0) */
    static const struct {
        const char *key, *value, *want;
    } bad[] = {
        {"row", "-5", "field 'row': -5 is not an integer"},
        {"row", "9e18", "field 'row': 9e+18 is not an integer"},
        {"global_step", "1e300", "field 'global_step': 1e+300 is not an integer"},
        {"global_step", "1.5", "field 'global_step': 1.5 is not an integer"},
        {"global_step", "\"7\"", "field 'global_step'"},
        {"adam_step", "-5", "field 'adam_step': -5"},
        {"adam_step", "6", "field 'adam_step': 6 differs from global_step 7"},
        {"epoch", "-1", "field 'epoch': -1"},
        {"loss_count", "-1", "field 'loss_count': -1"},
        {"loss_count", "8", "field 'loss_count': 8 does not fit global_step 7"},
        {"loss_sum", "\"abc\"", "field 'loss_sum': 'abc' is not a finite number"},
        {"loss_sum", "\"inf\"", "field 'loss_sum': 'inf'"},
        {"loss_sum", "\"-1\"", "field 'loss_sum': '-1'"},
        {"model_rng", "\"-1\"", "field 'model_rng': '-1' is not a decimal"},
        {"data_rng", "\" 1\"", "field 'data_rng': ' 1'"},
        {"data_rng", "\"18446744073709551616\"", "field 'data_rng'"},
        {"loss_count", NULL, "missing field 'loss_count'"},
        {"version", "2", "not an ftune checkpoint (format/version)"},
    };
    snprintf(t2[1].name, sizeof t2[1].name, "model.norm.weight");
    char bdir[1024], cmd[2200];
    snprintf(bdir, sizeof bdir, "%s/bad", root);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ft_checkpoint_save(bdir, &st, &id, t, 2, params, &opt);
        set_state_field(bdir, bad[i].key, bad[i].value);
        memset(p2, 0, sizeof p2);
        o2.step = 0;
        s = ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2);
        char name[64];
        snprintf(name, sizeof name, "state_refuses_%s_%zu", bad[i].key, i);
        CHECK(name,
              s != FT_OK && strstr(ft_error_message(), "bad/trainer_state.json: ") &&
                  strstr(ft_error_message(), bad[i].want) && p2[1] == 0.0f && o2.step == 0,
              "%s", ft_error_message());
    }
    ft_checkpoint_save(bdir, &st, &id, t, 2, params, &opt);
    snprintf(cmd, sizeof cmd, "truncate -s 100 '%s/trainer_state.json'", bdir);
    CHECK("state_truncated_says_invalid_json",
          !system(cmd) && ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2) != FT_OK &&
              strstr(ft_error_message(), "trainer_state.json: invalid JSON"),
          "%s", ft_error_message());

    /* non-finite values or a negative second moment: refused naming the tensor and element */
    params[3] = NAN;
    ft_checkpoint_save(bdir, &st, &id, t, 2, params, &opt);
    params[3] = 0.1f * 3 - 0.7f;
    memset(p2, 0, sizeof p2);
    s = ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2);
    CHECK("tensor_refuses_nan",
          s != FT_OK && strstr(ft_error_message(), "q_proj.lora_A.weight' element 3 is nan") &&
              p2[1] == 0.0f,
          "%s", ft_error_message());
    opt.m[13] = INFINITY;
    ft_checkpoint_save(bdir, &st, &id, t, 2, params, &opt);
    opt.m[13] = 1e-3f * 13;
    s = ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2);
    CHECK("tensor_refuses_inf_moment",
          s != FT_OK && strstr(ft_error_message(), "'model.norm.weight.exp_avg' element 1 is inf"),
          "%s", ft_error_message());
    float v13 = opt.v[13];
    opt.v[13] = -1e-8f;
    ft_checkpoint_save(bdir, &st, &id, t, 2, params, &opt);
    opt.v[13] = v13;
    s = ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2);
    CHECK("tensor_refuses_negative_second_moment",
          s != FT_OK && strstr(ft_error_message(), "'model.norm.weight.exp_avg_sq' element 1") &&
              strstr(ft_error_message(), ">= 0"),
          "%s", ft_error_message());

    /* the same element count in another shape: swapped (4, 3) or flattened (12) is refused */
    ft_checkpoint_save(bdir, &st, &id, t, 2, params, &opt);
    t2[0].rows = 4;
    t2[0].cols = 3;
    s = ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2);
    CHECK("tensor_refuses_swapped_shape",
          s != FT_OK && strstr(ft_error_message(), "lora_A.weight' has another dtype or shape"),
          "%s", ft_error_message());
    t2[0].rows = 0;
    t2[0].cols = 0;
    s = ft_checkpoint_load(bdir, &st2, &id, t2, 2, p2, &o2);
    CHECK("tensor_refuses_flattened_shape",
          s != FT_OK && strstr(ft_error_message(), "lora_A.weight' has another dtype or shape"),
          "%s", ft_error_message());
    t2[0].rows = 3;
    t2[0].cols = 4;

    /* latest / prune / clean */
    for (int k = 1; k <= 12; k += 3) { /* 1 4 7 10 */
        snprintf(dir, sizeof dir, "%s/checkpoint-%d", root, k);
        st.step = k;
        opt.step = k;
        ft_checkpoint_save(dir, &st, &id, t, 2, params, &opt);
    }
    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoint-99", root); /* incomplete: no trainer_state.json */
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/checkpoint-50.tmp.123", root); /* an interrupted save */
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/checkpoint-50.tmp.123/trainable.safetensors", root);
    FILE *f = fopen(p, "w");
    fputs("partial", f);
    fclose(f);
    char *latest = NULL;
    s = ft_checkpoint_latest(root, &latest);
    CHECK("latest_ignores_incomplete", s == FT_OK && latest && strstr(latest, "/checkpoint-10") &&
                                           !strstr(latest, "checkpoint-100"),
          "latest %s", latest ? latest : "(none)");
    free(latest);
    s = ft_checkpoint_prune(root, 2);
    CHECK("prune_keeps_newest", s == FT_OK && !exists("%s/%s", "checkpoint-1") &&
                                    !exists("%s/%s", "checkpoint-4") && exists("%s/%s", "checkpoint-7") &&
                                    exists("%s/%s", "checkpoint-10"),
          "%s", ft_error_message());
    /* final outputs' temporaries: a dead writer's are removed; a live one's (this process) and
     * files that are not a run's outputs stay */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char dead_tmp[64], live_tmp[64];
    snprintf(dead_tmp, sizeof dead_tmp, "adapter_config.json.tmp.%ld", (long)dead);
    snprintf(live_tmp, sizeof live_tmp, "model.safetensors.tmp.%ld", (long)getpid());
    const char *planted[] = {dead_tmp, live_tmp, "notes.txt.tmp.1", "config.json.tmp.12x"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", root, planted[i]);
        FILE *pf = fopen(p, "w");
        fputs("partial", pf);
        fclose(pf);
    }
    s = ft_checkpoint_clean(root);
    CHECK("clean_removes_temporaries", s == FT_OK && !exists("%s/%s", "checkpoint-50.tmp.123"),
          "%s", ft_error_message());
    CHECK("clean_removes_dead_output_temporary",
          !exists("%s/%s", dead_tmp) && exists("%s/%s", live_tmp) &&
              exists("%s/%s", "notes.txt.tmp.1") && exists("%s/%s", "config.json.tmp.12x"),
          "dead %d live %d other %d %d", exists("%s/%s", dead_tmp), exists("%s/%s", live_tmp),
          exists("%s/%s", "notes.txt.tmp.1"), exists("%s/%s", "config.json.tmp.12x"));
    for (int i = 1; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", root, planted[i]);
        unlink(p);
    }
    /* re-saving an existing step replaces it */
    snprintf(dir, sizeof dir, "%s/checkpoint-10", root);
    st.step = 10;
    opt.step = 10;
    params[0] = 42.0f;
    snprintf(t2[1].name, sizeof t2[1].name, "model.norm.weight");
    s = ft_checkpoint_save(dir, &st, &id, t, 2, params, &opt);
    s = s ? s : ft_checkpoint_load(dir, &st2, &id, t2, 2, p2, &o2);
    CHECK("resave_replaces", s == FT_OK && p2[0] == 42.0f, "%s (p[0] = %g)", ft_error_message(),
          p2[0]);
    latest = NULL;
    ft_checkpoint_latest("/nonexistent/dir", &latest);
    CHECK("latest_of_missing_dir_is_none", latest == NULL, "got %s", latest);
    ft_adamw_free(&opt);
    ft_adamw_free(&o2);
    return ft_test_exit();
}
