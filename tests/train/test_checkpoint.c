/*
 * Checkpoint folders: save/load round trip is bit-exact (params, AdamW moments and step, trainer
 * state incl. 64-bit RNG states and the running loss), the folder appears only complete (no
 * temporary left), latest picks the highest complete N and ignores temporaries and incomplete
 * folders, prune keeps the newest, and a checkpoint of another layout is refused by name.
 */
#include "../test.h"
#include "ftune/trainer.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[512];

static int exists(const char *fmt, const char *a) {
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, fmt, root, a);
    return stat(p, &sb) == 0;
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

    /* latest / prune / clean */
    for (int k = 1; k <= 12; k += 3) { /* 1 4 7 10 */
        snprintf(dir, sizeof dir, "%s/checkpoint-%d", root, k);
        st.step = k;
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
    s = ft_checkpoint_clean(root);
    CHECK("clean_removes_temporaries", s == FT_OK && !exists("%s/%s", "checkpoint-50.tmp.123"),
          "%s", ft_error_message());
    /* re-saving an existing step replaces it */
    snprintf(dir, sizeof dir, "%s/checkpoint-10", root);
    st.step = 10;
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
