/*
 * The training loop (contract in include/ftune/trainer.h): model + tokenizer + text data, then
 * optimizer steps of gradient_accumulation_steps micro-batches each, with
 *   loss_scale = 1 / (target tokens of the whole step)
 * so every step minimises the mean NLL over all its targets and 4 micro-batches of 1 row equal
 * 1 micro-batch of 4 rows; then clip_grad_norm_, the LR schedule and AdamW.
 *
 * Data order: the train rows of epoch e are ft_data_epoch_order(seed, e); micro-batches take
 * consecutive rows of the endless sequence epoch 0, epoch 1, ... (a step may straddle two
 * epochs), so the data position is one counter and resume is exact. The run has
 * max_steps, or ceil(num_epochs * train_rows / (micro_batch_size * gradient_accumulation_steps))
 * optimizer steps.
 *
 * Side effects in output_dir: metrics.jsonl (one JSON object per logged or evaluated step),
 * checkpoint-N/ every save_steps (pruned to save_total_limit), and at the end the adapter
 * (LoRA) or a Hugging Face model folder with the tokenizer files (full / freeze).
 * Instruction data (any dataset type but text/completion, see ft_train_config_is_sft): the samples of
 * src/data (chat template, loss on the replies) are laid once into fixed rows of T tokens (packed
 * with restarting positions and a seg id per sample when sample_packing, else one per row and
 * padded); those rows then play the part of text rows above, with pos/seg going to the step.
 * Not here: the forward/backward (src/train/step.c), multi-process data parallelism.
 */
#include "ftune/data.h"
#include "ftune/instruct.h"
#include "ftune/model.h"
#include "ftune/tokenizer.h"
#include "ftune/trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ft_status mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ft_errorf(FT_ERR_ARG, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return ft_errorf(FT_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return ft_errorf(FT_ERR_IO, "%s: cannot create: %s", buf, strerror(errno));
    return FT_OK;
}

static ft_status tok_encode(void *ctx, const char *text, size_t len, int **ids, size_t *n) {
    int k = 0;
    ft_status st = ft_tokenizer_encode(ctx, text, len, 1, ids, &k);
    *n = (size_t)(k > 0 ? k : 0);
    return st;
}

/* Copy the tokenizer files a HF folder carries (those that exist) from `src` to `dst`. */
static ft_status copy_tokenizer_files(const char *src, const char *dst) {
    const char *const *files = ft_tokenizer_files;
    for (size_t i = 0; i < FT_N_TOKENIZER_FILES; i++) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        if (access(a, R_OK)) continue;
        char *data;
        size_t len;
        ft_status st = ft_read_file(a, &data, &len);
        if (!st) st = ft_write_file_atomic(b, data, len);
        free(data);
        if (st) return st;
    }
    return FT_OK;
}

/* Keep only the metrics lines of steps <= `step` (a resumed run rewrites what follows). */
static ft_status metrics_truncate(const char *path, int64_t step) {
    if (access(path, F_OK)) return FT_OK;
    char *text;
    size_t len;
    ft_status st = ft_read_file(path, &text, &len);
    if (st) return st;
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out) {
        free(text);
        return ft_errorf(FT_ERR_NOMEM, "out of memory");
    }
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        cJSON *j = cJSON_ParseWithLength(p, l);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (nl && cJSON_IsNumber(s) && s->valuedouble <= (double)step) { /* whole lines only */
            memcpy(out + o, p, l + 1);
            o += l + 1;
        }
        cJSON_Delete(j);
        p = nl ? nl + 1 : p + l;
    }
    st = ft_write_file_atomic(path, out, o);
    free(out);
    free(text);
    return st;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

typedef struct {
    const ft_train_config *cfg;
    ft_model model;
    ft_tokenizer *tok;
    ft_text_dataset ds;
    int sft;                   /* instruction data: the rows below instead of ds */
    ft_records recs;
    ft_sft_dataset sds;
    ft_sft_rowset sft_train, sft_val;
    int64_t n_train, n_val;    /* rows */
    int *pos, *seg;            /* (GA * B, T) SFT only */
    ft_train_model *tm;
    ft_adamw opt;
    int B, T;
    int *inputs, *labels;  /* (GA * B, T): one optimizer step's rows */
    int64_t *order;        /* (n_train) order of the epoch in `order_epoch` */
    int64_t order_epoch;
    FILE *metrics;
    char metrics_path[4096];
    int tty;
    ft_run_id id;          /* recorded in checkpoints, checked on resume */
    ft_fused_adamw fused;  /* the fused AdamW's context (full/freeze, GA 1, no clipping) */
    uint64_t model_fp;     /* model_fingerprint, taken before the train model may release
                              frozen weights from the f32 buffer (bf16_keep_f32) */
} run_t;

/* Global row g of the endless epoch sequence → dataset row index. */
static int64_t row_at(run_t *r, int64_t g) {
    int64_t n = r->n_train, e = g / n;
    if (e != r->order_epoch) {
        ft_data_epoch_order(r->order, n, r->cfg->seed, e);
        r->order_epoch = e;
    }
    return r->sft ? r->order[g % n] : r->ds.train[r->order[g % n]];
}

/* Fill slot j of the step buffers with train row `row` (val: validation row). */
static void fill_row(run_t *r, int val, int64_t row, size_t j) {
    int *in = r->inputs + j * (size_t)r->T, *lab = r->labels + j * (size_t)r->T;
    if (!r->sft) {
        ft_text_row(&r->ds, row, in, lab);
        return;
    }
    ft_sft_rowset_fill(val ? &r->sft_val : &r->sft_train, &r->sds, row, in, lab,
                       r->pos + j * (size_t)r->T, r->seg + j * (size_t)r->T);
}

/* Fingerprint of the rows a run sees (train, then validation), as the step receives them. */
static uint64_t data_fingerprint(run_t *r) {
    uint64_t h = FT_FNV_SEED;
    const size_t T = (size_t)r->T;
    for (int val = 0; val < 2; val++) {
        int64_t n = val ? r->n_val : r->n_train;
        for (int64_t i = 0; i < n; i++) {
            fill_row(r, val, r->sft ? i : (val ? r->ds.val : r->ds.train)[i], 0);
            h = ft_fnv1a(h, r->inputs, T * sizeof(int));
            h = ft_fnv1a(h, r->labels, T * sizeof(int));
            if (r->sft) {
                h = ft_fnv1a(h, r->pos, T * sizeof(int));
                h = ft_fnv1a(h, r->seg, T * sizeof(int));
            }
        }
        h = ft_fnv1a(h, &n, sizeof n);
    }
    return h;
}

/* Fingerprint of the base model: its shape and every 509th weight (a different checkpoint of the
 * same architecture, fine-tuned or not, differs in nearly every weight), cheap even for 8B. */
static uint64_t model_fingerprint(const ft_model *m) {
    const ft_config *c = &m->cfg;
    int dims[] = {c->vocab_size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                  c->head_dim};
    uint64_t h = ft_fnv1a(FT_FNV_SEED, dims, sizeof dims);
    h = ft_fnv1a(h, &m->n_params, sizeof m->n_params);
    for (size_t i = 0; i < m->n_params; i += 509) h = ft_fnv1a(h, &m->params[i], sizeof(float));
    return h;
}

/* Everything besides the checkpointed state that decides what the run computes (ft_run_id).
 * The run's length (max_steps / num_epochs) is not in it: a run may be extended (the schedule then
 * follows the new length from the checkpoint on, as in HF's Trainer). */
static void run_identity(run_t *r) {
    const ft_train_config *c = r->cfg;
    ft_run_id *id = &r->id;
    static const char *const methods[] = {"full", "freeze", "lora"};
    ft_run_id_set(id, "method", "%s", methods[c->method]);
    if (c->method == FT_METHOD_LORA) {
        ft_run_id_set(id, "lora_r", "%d", c->lora.r);
        ft_run_id_set(id, "lora_alpha", "%g", (double)c->lora.alpha);
        ft_run_id_set(id, "lora_dropout", "%g", (double)c->lora.dropout);
        ft_run_id_set(id, "peft_use_rslora", "%s", c->lora.use_rslora ? "true" : "false");
        ft_run_id_set(id, "lora_target_modules", "0x%02x", c->lora.targets);
        if (c->n_tok_embed || c->n_tok_head) { /* the rows trained: a resume must train the same */
            uint64_t h = FT_FNV_SEED;
            h = ft_fnv1a(h, c->tok_embed, sizeof(int) * (size_t)c->n_tok_embed);
            h = ft_fnv1a(h, "|", 1);
            h = ft_fnv1a(h, c->tok_head, sizeof(int) * (size_t)c->n_tok_head);
            ft_run_id_set(id, "peft_trainable_token_indices", "%d + %d ids, %016" PRIx64,
                          c->n_tok_embed, c->n_tok_head, h);
        }
    }
    if (c->method == FT_METHOD_FREEZE) {
        uint64_t h = FT_FNV_SEED;
        for (int i = 0; i < c->n_unfrozen; i++) h = ft_fnv1a(h, c->unfrozen[i], strlen(c->unfrozen[i]) + 1);
        ft_run_id_set(id, "unfrozen_parameters", "%d patterns, %016" PRIx64, c->n_unfrozen, h);
    }
    ft_run_id_set(id, "sequence_len", "%d", r->T);
    ft_run_id_set(id, "micro_batch_size", "%d", r->B);
    ft_run_id_set(id, "gradient_accumulation_steps", "%d", c->gradient_accumulation_steps);
    ft_run_id_set(id, "learning_rate", "%.9g", c->learning_rate);
    ft_run_id_set(id, "lr_scheduler", "%s", ft_schedule_name(c->lr_scheduler));
    ft_run_id_set(id, "warmup_steps", "%" PRId64, c->warmup_steps);
    ft_run_id_set(id, "optimizer", "%s", c->optimizer);
    ft_run_id_set(id, "adam_beta1", "%.9g", c->adam.beta1);
    ft_run_id_set(id, "adam_beta2", "%.9g", c->adam.beta2);
    ft_run_id_set(id, "adam_epsilon", "%.9g", c->adam.eps);
    ft_run_id_set(id, "weight_decay", "%.9g", c->adam.weight_decay);
    ft_run_id_set(id, "max_grad_norm", "%.9g", c->max_grad_norm);
    ft_run_id_set(id, "seed", "%" PRIu64, c->seed);
    ft_run_id_set(id, "bf16", "%s", c->bf16 ? "true" : "false");
    ft_run_id_set(id, "base model", "%016" PRIx64 " (shape and sampled weights)",
                  r->model_fp);
    ft_run_id_set(id, "data", "%016" PRIx64 " (%" PRId64 " train + %" PRId64 " validation rows)",
                  data_fingerprint(r), r->n_train, r->n_val);
}

static ft_status evaluate(run_t *r, double *loss) {
    double nll = 0;
    int64_t nt = 0;
    for (int64_t i = 0; i < r->n_val; i += r->B) {
        int b = (int)(r->n_val - i < r->B ? r->n_val - i : r->B);
        for (int j = 0; j < b; j++) fill_row(r, 1, r->sft ? i + j : r->ds.val[i + j], (size_t)j);
        double s;
        int64_t c;
        ft_status st = ft_train_eval(r->tm, r->inputs, r->labels, r->pos, r->seg, b, r->T, &s, &c);
        if (st) return ft_error_wrap(st, "evaluation");
        nll += s;
        nt += c;
    }
    *loss = nt ? nll / (double)nt : NAN;
    return FT_OK;
}

/* Append one line to metrics.jsonl and flush it; a short write (disk full, file size limit)
 * fails the run naming the file rather than leaving a truncated log behind. */
static ft_status metrics_line(run_t *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errno = 0;
    int n = vfprintf(r->metrics, fmt, ap);
    va_end(ap);
    if (n < 0 || fflush(r->metrics) || ferror(r->metrics))
        return ft_errorf(FT_ERR_IO, "%s: write failed: %s", r->metrics_path,
                         strerror(errno ? errno : EIO));
    return FT_OK;
}

static ft_status log_eval(run_t *r, int64_t step, double loss) {
    if (r->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "eval step %" PRId64 ": eval_loss %.4f, perplexity %.3f (%" PRId64 " rows)\n",
            step, loss, exp(loss), r->n_val);
    return metrics_line(r, "{\"step\": %" PRId64 ", \"eval_loss\": %.9g, \"eval_ppl\": %.9g}\n",
                        step, loss, exp(loss));
}

ft_status ft_train_step(ft_train_model *tm, ft_adamw *opt, const int *inputs, const int *labels,
                        int B, int GA, int T, double lr, double max_grad_norm, double *loss,
                        double *grad_norm) {
    return ft_train_step_packed(tm, opt, inputs, labels, NULL, NULL, B, GA, T, lr, max_grad_norm,
                                loss, grad_norm);
}

void ft_fused_adamw_ready(void *ctx, const int *ks, int n) {
    ft_fused_adamw *f = ctx;
    for (int i = 0; i < n; i++) { /* the step's norm: each tensor's, squared, summed in order */
        const ft_trainable *t = &f->t[ks[i]];
        const double s = ft_grad_norm(t->grad, t->numel);
        f->sumsq += s * s;
    }
    ft_adamw_tensors(f->opt, f->params, f->t, ks, n, f->lr);
}

ft_status ft_train_step_packed(ft_train_model *tm, ft_adamw *opt, const int *inputs,
                               const int *labels, const int *pos, const int *seg, int B, int GA,
                               int T, double lr, double max_grad_norm, double *loss,
                               double *grad_norm) {
    int n_t;
    size_t n_params, n_grads;
    const ft_trainable *tens = ft_train_tensors(tm, &n_t);
    float *params = ft_train_params(tm, &n_params);
    float *grads = ft_train_grads(tm, &n_grads);
    const size_t rows = (size_t)B * (size_t)GA;
    /* the step's target count first: loss_scale makes the step's loss a mean over them */
    int64_t targets = 0;
    for (size_t i = 0; i < rows * (size_t)T; i++) targets += labels[i] != FT_IGNORE_INDEX;
    if (!targets) return ft_errorf(FT_ERR_ARG, "the step has no target tokens");
    const float scale = (float)(1.0 / (double)targets);
    void (*hook)(void *, const int *, int);
    void *hctx;
    ft_train_grad_hook(tm, &hook, &hctx);
    ft_fused_adamw *fused = hook == ft_fused_adamw_ready ? hctx : NULL;
    if (hook && !fused)
        return ft_errorf(FT_ERR_ARG, "the model was built with another grad_ready hook");
    if (fused && (GA != 1 || max_grad_norm > 0))
        return ft_errorf(FT_ERR_ARG,
                         "the fused AdamW needs gradient_accumulation_steps 1 and no clipping "
                         "(got %d, max_grad_norm %g)", GA, max_grad_norm);
    if (fused) {
        *fused = (ft_fused_adamw){opt, params, tens, lr, 0.0};
        opt->step++; /* as ft_adamw_step does first */
    }
    ft_train_zero_grad(tm);
    double nll = 0;
    for (int m = 0; m < GA; m++) {
        const size_t off = (size_t)m * (size_t)B * (size_t)T;
        double ms;
        int64_t mt;
        ft_status st = ft_train_micro_step(tm, inputs + off, labels + off, pos ? pos + off : NULL,
                                           seg ? seg + off : NULL, B, T, scale, &ms, &mt);
        if (st) return st;
        nll += ms;
    }
    *loss = nll / (double)targets;
    if (!isfinite(*loss))
        return ft_errorf(FT_ERR_ARG, "loss is %g (diverged; lower learning_rate?)", *loss);
    if (fused) { /* updated in the backward */
        *grad_norm = sqrt(fused->sumsq);
        return FT_OK;
    }
    /* clip_grad_norm_ then AdamW, the clipping's factor applied as AdamW reads each gradient
     * (the same values as scaling the buffer first, one pass over it fewer) */
    *grad_norm = ft_grad_norm(grads, n_grads);
    ft_adamw_step_scaled(opt, params, grads, tens, n_t, lr,
                         ft_clip_coef(*grad_norm, max_grad_norm));
    ft_train_params_changed(tm);
    return FT_OK;
}

static ft_status train_loop(run_t *r) {
    const ft_train_config *c = r->cfg;
    ft_status st;
    int n_t;
    size_t n_params;
    const ft_trainable *tens = ft_train_tensors(r->tm, &n_t);
    float *params = ft_train_params(r->tm, &n_params);
    const int GA = c->gradient_accumulation_steps;
    const int64_t rows_per_step = (int64_t)r->B * GA;
    int64_t total = c->max_steps > 0
                        ? c->max_steps
                        : (int64_t)ceil(c->num_epochs * (double)r->n_train / (double)rows_per_step);
    if (total < 1) total = 1;
    const int64_t log_every = ft_train_config_steps(c->logging_steps, total);
    const int64_t save_every = ft_train_config_steps(c->save_steps, total);
    const int64_t eval_every = ft_train_config_steps(c->eval_steps, total);

    if ((st = ft_adamw_init(&r->opt, n_params, &c->adam))) return st;
    run_identity(r);
    ft_train_state s = {0};
    s.model_rng = ft_train_rng_state(r->tm);
    const char *metrics_path = r->metrics_path;
    int resumed = 0;
    if (c->resume_from_checkpoint) {
        char *dir = NULL;
        if (!strcmp(c->resume_from_checkpoint, "auto")) {
            if ((st = ft_checkpoint_latest(c->output_dir, &dir))) return st;
        } else if (!(dir = ft_strdup(c->resume_from_checkpoint))) {
            return FT_ERR_NOMEM;
        }
        if (dir) {
            st = ft_checkpoint_load(dir, &s, &r->id, tens, n_t, params, &r->opt);
            ft_train_params_changed(r->tm);
            if (st) {
                free(dir);
                return ft_error_wrap(st, "resume_from_checkpoint");
            }
            /* what the checkpoint alone cannot check: its position against this run's shape */
            if (s.row / rows_per_step != s.step || s.row % rows_per_step ||
                s.epoch != (r->n_train ? s.row / r->n_train : 0))
                st = ft_errorf(FT_ERR_FORMAT,
                               "%s/trainer_state.json: row %" PRId64 " and epoch %" PRId64
                               " do not match global_step %" PRId64 " (%" PRId64
                               " rows per step, %" PRId64 " train rows)",
                               dir, s.row, s.epoch, s.step, rows_per_step, r->n_train);
            else if (s.step > total)
                st = ft_errorf(FT_ERR_ARG,
                               "%s: the checkpoint is at step %" PRId64 ", past this run's %" PRId64
                               " steps: set max_steps (or num_epochs) to at least %" PRId64
                               " to extend the run",
                               dir, s.step, total, s.step);
            if (st) {
                free(dir);
                return ft_error_wrap(st, "resume_from_checkpoint");
            }
            ft_train_set_rng_state(r->tm, s.model_rng);
            fprintf(stderr, "ftune: resumed from %s (step %" PRId64 ")\n", dir, s.step);
            free(dir);
            resumed = 1;
            if ((st = metrics_truncate(metrics_path, s.step))) return st;
        } else {
            fprintf(stderr, "ftune: no checkpoint in %s, starting from scratch\n", c->output_dir);
        }
    }
    if (!resumed && !access(metrics_path, F_OK) && unlink(metrics_path))
        return ft_errorf(FT_ERR_IO, "%s: cannot remove: %s", metrics_path, strerror(errno));
    r->metrics = fopen(metrics_path, "a");
    if (!r->metrics) return ft_errorf(FT_ERR_IO, "%s: cannot open: %s", metrics_path, strerror(errno));

    fprintf(stderr,
            "ftune: %" PRId64 " train rows, %" PRId64 " validation rows of %d tokens; %" PRId64
            " steps of %d micro-batch(es) x %d rows; %d trainable tensors, %zu parameters\n",
            r->n_train, r->n_val, r->T, total, GA, r->B, n_t, n_params);
    double eval_loss;
    if (!resumed && r->n_val) {
        if ((st = evaluate(r, &eval_loss))) return st;
        if ((st = log_eval(r, 0, eval_loss))) return st;
    }
    double t_start = ft_time_s(), t_window = t_start;
    int64_t first_step = s.step, window_tokens = 0;
    while (s.step < total) {
        for (int64_t i = 0; i < rows_per_step; i++) fill_row(r, 0, row_at(r, s.row + i), (size_t)i);
        double lr = c->learning_rate *
                    ft_schedule_factor(c->lr_scheduler, s.step, c->warmup_steps, total);
        double loss, norm;
        st = ft_train_step_packed(r->tm, &r->opt, r->inputs, r->labels, r->pos, r->seg, r->B, GA,
                                  r->T, lr, c->max_grad_norm, &loss, &norm);
        if (st) return ft_error_wrap(st, "step %" PRId64, s.step + 1);
        s.step++;
        s.row += rows_per_step;
        s.epoch = s.row / r->n_train;
        s.loss_sum += loss;
        s.loss_count++;
        window_tokens += rows_per_step * r->T;

        double now = ft_time_s();
        double per_step = (now - t_start) / (double)(s.step - first_step);
        char eta[32];
        fmt_duration(eta, sizeof eta, per_step * (double)(total - s.step));
        if (r->tty)
            fprintf(stderr, "\r\033[Kstep %" PRId64 "/%" PRId64 " | loss %.4f | lr %.3g | %.0f tok/s | ETA %s",
                    s.step, total, loss, lr, (double)rows_per_step * r->T / per_step, eta);
        if (s.step % log_every == 0 || s.step == total) {
            double tps = window_tokens / (now - t_window > 1e-9 ? now - t_window : 1e-9);
            double mean = s.loss_sum / (double)s.loss_count;
            double epoch = (double)s.row / (double)r->n_train;
            st = metrics_line(r,
                              "{\"step\": %" PRId64
                              ", \"epoch\": %.4f, \"loss\": %.9g, \"lr\": %.9g, "
                              "\"grad_norm\": %.9g, \"tokens_per_s\": %.1f}\n",
                              s.step, epoch, mean, lr, norm, tps);
            if (st) return st;
            if (!r->tty)
                fprintf(stderr,
                        "step %" PRId64 "/%" PRId64 " loss %.4f lr %.4g grad_norm %.4f %.0f tok/s "
                        "ETA %s\n", s.step, total, mean, lr, norm, tps, eta);
            s.loss_sum = 0;
            s.loss_count = 0;
            window_tokens = 0;
            t_window = now;
        }
        if (r->n_val && ((eval_every && s.step % eval_every == 0) || s.step == total)) {
            if ((st = evaluate(r, &eval_loss))) return st;
            if ((st = log_eval(r, s.step, eval_loss))) return st;
        }
        if (save_every && s.step % save_every == 0 && s.step < total) {
            char dir[4200]; /* fits: check_output_dir bounds output_dir */
            snprintf(dir, sizeof dir, "%s/checkpoint-%" PRId64, c->output_dir, s.step);
            s.model_rng = ft_train_rng_state(r->tm);
            if ((st = ft_checkpoint_save(dir, &s, &r->id, tens, n_t, params, &r->opt))) return st;
            if ((st = ft_checkpoint_prune(c->output_dir, c->save_total_limit))) return st;
        }
    }
    if (r->tty) fprintf(stderr, "\n");
    return FT_OK;
}

/* out = "a, b, ..." : ids[0..n), then the ids flagged in bad (V) that are not among them */
static void ids_union(char *out, size_t cap, const int *ids, int n, const unsigned char *bad,
                      int V) {
    size_t k = 0;
    int first = 1;
    out[0] = 0;
    for (int i = 0; i < n && k + 16 < cap; i++, first = 0)
        k += (size_t)snprintf(out + k, cap - k, "%s%d", first ? "" : ", ", ids[i]);
    for (int v = 0; v < V && k + 16 < cap; v++) {
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= ids[i] == v;
        if (bad[v] == 2 && !dup) {
            k += (size_t)snprintf(out + k, cap - k, "%s%d", first ? "" : ", ", v);
            first = 0;
        }
    }
}

/* LoRA cannot move an embedding or head row. A trained target token whose head row (the tied
 * embedding's) is a near-copy of many other rows, typically a token the base model never saw in
 * pretraining (stories15M's EOS shares its direction with ~18000 unused rows), can then never win
 * the softmax. Warn once, naming such ids and the key that trains them (as Unsloth warns about
 * untrained tokens). A row counts as degenerate when it points along the mean row (cos > 0.99,
 * which a vocabulary of trained rows never does) and, of up to 4096 rows sampled at a fixed stride,
 * at least 4 (~100 in the whole vocabulary of 32000) lie within cos > 0.9999 of it. Cost: one pass
 * over the head for the mean, then per distinct trained id one dot product, and the sampled count
 * only for the few ids that pass the first test. */
static void warn_untrainable_tokens(const ft_train_config *c, const ft_model *m,
                                    const ft_sft_dataset *ds) {
    const ft_config *mc = &m->cfg;
    const int V = mc->vocab_size, C = mc->dim, tied = !m->w.lm_head;
    const float *W = tied ? m->w.embed : m->w.lm_head; /* (V, C) */
    unsigned char *seen = calloc((size_t)V, 1);
    double *mu = calloc((size_t)C, sizeof(double));
    if (!seen || !mu) goto done;
    for (int64_t i = 0; i < ds->n_train; i++) {
        const ft_sft_sample *smp = &ds->samples[ds->train[i]];
        for (int t = 0; t < smp->n; t++)
            if (smp->labels[t] >= 0 && smp->labels[t] < V) seen[smp->labels[t]] = 1;
    }
    const int *have = tied ? c->tok_embed : c->tok_head;
    int n_have = tied ? c->n_tok_embed : c->n_tok_head;
    for (int k = 0; k < n_have; k++)
        if (have[k] < V) seen[have[k]] = 0; /* already trained as tokens */
    for (int v = 0; v < V; v++)
        for (int j = 0; j < C; j++)
            mu[j] += W[(size_t)v * C + j];
    double mn = 0;
    for (int j = 0; j < C; j++)
        mn += mu[j] * mu[j];
    mn = sqrt(mn);
    int stride = V > 4096 ? (V + 4095) / 4096 : 1;
    char list[512];
    size_t len = 0;
    int n_bad = 0;
    list[0] = 0;
    for (int v = 0; v < V && mn > 0; v++) {
        if (!seen[v]) continue;
        const float *r = W + (size_t)v * C;
        double d = 0, rn = 0;
        for (int j = 0; j < C; j++)
            d += r[j] * mu[j], rn += (double)r[j] * r[j];
        if (!(rn > 0) || d / (sqrt(rn) * mn) <= 0.99) continue;
        int near = 0;
        for (int u = 0; u < V && near < 4; u += stride) {
            const float *q = W + (size_t)u * C;
            double e = 0, qn = 0;
            for (int j = 0; j < C; j++)
                e += (double)r[j] * q[j], qn += (double)q[j] * q[j];
            near += u != v && qn > 0 && e / sqrt(rn * qn) > 0.9999;
        }
        if (near < 4) continue;
        if (len + 16 < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", n_bad ? ", " : "", v);
        seen[v] = 2; /* flagged */
        n_bad++;
    }
    if (n_bad) {
        /* the suggested value: the ids the config already trains, then the new ones */
        char sug_e[640], sug_h[640];
        ids_union(sug_e, sizeof sug_e, c->tok_embed, c->n_tok_embed, seen, V);
        ids_union(sug_h, sizeof sug_h, c->tok_head, c->n_tok_head, seen, V);
        if (tied)
            fprintf(stderr,
                    "ftune: warning: trained token id(s) %s: the tied embedding row is a near-copy "
                    "of many others (untrained in the base model?), which LoRA cannot change; "
                    "set peft_trainable_token_indices: [%s]\n", list, sug_e);
        else
            fprintf(stderr,
                    "ftune: warning: trained token id(s) %s: the lm_head row is a near-copy of "
                    "many others (untrained in the base model?), which LoRA cannot change; set "
                    "peft_trainable_token_indices: {embed_tokens: [%s], lm_head: [%s]}\n", list,
                    sug_e, sug_h);
    }
done:
    free(seen);
    free(mu);
}

/* Refuse an output_dir the run would damage: the base model's own folder (its model.safetensors
 * and config.json would be overwritten; a folder inside it is fine), or, for a fresh run, a folder
 * holding another run's checkpoints (the new ones would be pruned by number against them, and a
 * later resume would pick whichever N is larger). */
static ft_status check_output_dir(const ft_train_config *c) {
    /* the longest path under it, "checkpoint-<19 digits>.tmp.<pid>/trainable.safetensors.tmp.<pid>"
     * and the like, must fit PATH_MAX (4096): checked here, not at the first checkpoint save */
    const size_t max_len = 4096 - 128;
    if (strlen(c->output_dir) > max_len)
        return ft_errorf(FT_ERR_ARG,
                         "output_dir is %zu characters long, more than the %zu that leave room for "
                         "the paths of its files (PATH_MAX 4096): %s",
                         strlen(c->output_dir), max_len, c->output_dir);
    struct stat o, b;
    if (!stat(c->output_dir, &o) && !stat(c->base_model, &b) && o.st_dev == b.st_dev &&
        o.st_ino == b.st_ino)
        return ft_errorf(FT_ERR_ARG,
                         "output_dir %s is the base model's folder (%s): the run would overwrite "
                         "it; choose another output_dir",
                         c->output_dir, c->base_model);
    if (c->resume_from_checkpoint) return FT_OK;
    char *latest = NULL;
    ft_status st = ft_checkpoint_latest(c->output_dir, &latest);
    if (!st && latest)
        st = ft_errorf(FT_ERR_ARG,
                       "output_dir %s already holds checkpoints of a run (%s): continue it with "
                       "resume_from_checkpoint: auto, or choose another output_dir",
                       c->output_dir, latest);
    free(latest);
    return st;
}

ft_status ft_train_run(const ft_train_config *c) {
    run_t r;
    memset(&r, 0, sizeof r);
    r.cfg = c;
    r.order_epoch = -1;
    r.tty = isatty(2);
    ft_text_docs docs = {0};
    ft_status st;
    if ((st = check_output_dir(c))) return st;
    FT_ASSERT((size_t)snprintf(r.metrics_path, sizeof r.metrics_path, "%s/metrics.jsonl",
                               c->output_dir) < sizeof r.metrics_path);
    if ((st = mkdir_p(c->output_dir))) return st;
    if ((st = ft_checkpoint_clean(c->output_dir))) return st;
    r.sft = ft_train_config_is_sft(c);
    /* the data first: its errors (file:line) should not wait for a large model to load */
    for (int i = 0; !r.sft && i < c->n_datasets; i++)
        if ((st = ft_text_docs_read(&docs, c->datasets[i].path, c->datasets[i].field)))
            goto done;
    if ((st = ft_model_load(&r.model, c->base_model))) goto done;
    if ((st = ft_tokenizer_load(&r.tok, c->base_model))) goto done;
    if ((st = ft_tokenizer_check_model(r.tok, c->base_model, r.model.cfg.vocab_size))) goto done;
    if ((st = ft_train_config_check_model(c, &r.model.cfg))) goto done;
    int eos = ft_tokenizer_eos_id(r.tok);
    if (eos < 0) eos = r.model.cfg.eos_id;
    if (eos < 0) {
        st = ft_errorf(FT_ERR_ARG, "%s: the tokenizer defines no EOS token to join documents",
                       c->base_model);
        goto done;
    }
    r.T = c->sequence_len;
    r.B = c->micro_batch_size;
    if (r.T > ft_config_context(&r.model.cfg)) {
        st = r.T > r.model.cfg.max_seq_len
                 ? ft_errorf(FT_ERR_ARG, "sequence_len %d exceeds the model's max_position_embeddings %d",
                             r.T, r.model.cfg.max_seq_len)
                 : ft_errorf(FT_ERR_ARG,
                             "sequence_len %d exceeds the model's sliding_window %d (windowed "
                             "attention is not implemented: use sequence_len <= %d)",
                             r.T, r.model.cfg.sliding_window, r.model.cfg.sliding_window);
        goto done;
    }
    if (r.sft) {
        ft_sft_config sc;
        ft_sft_source *src = NULL;
        const ft_chat_template *tpl = NULL;
        char notes[4096];
        st = ft_train_config_sft(c, &sc, &src);
        if (!st) st = ft_sft_load(&sc, r.tok, &r.recs, &r.sds, &tpl, notes, sizeof notes);
        free(src);
        if (st) goto done;
        for (char *p = notes, *e; (e = strchr(p, '\n')); p = e + 1)
            fprintf(stderr, "ftune: %.*s\n", (int)(e - p), p);
        int pad = ft_tokenizer_pad_id(r.tok);
        if (pad < 0) pad = eos;
        if ((st = ft_sft_rowset_build(&r.sft_train, &r.sds, r.sds.train, r.sds.n_train, r.T,
                                      c->sample_packing, pad)) ||
            (st = ft_sft_rowset_build(&r.sft_val, &r.sds, r.sds.val, r.sds.n_val, r.T,
                                      c->sample_packing, pad)))
            goto done;
        r.n_train = r.sft_train.n;
        r.n_val = r.sft_val.n;
        if (c->method == FT_METHOD_LORA) warn_untrainable_tokens(c, &r.model, &r.sds);
        fprintf(stderr,
                "ftune: %lld samples (%lld train, %lld validation) -> %lld + %lld rows of %d "
                "tokens%s; template %s; %lld trained target tokens\n",
                (long long)r.sds.n, (long long)r.sds.n_train, (long long)r.sds.n_val,
                (long long)r.n_train, (long long)r.n_val, r.T,
                c->sample_packing ? " (packed)" : "", tpl ? ft_chat_template_name(tpl) : "none",
                (long long)r.sds.n_target_tokens);
    } else {
        st = ft_text_dataset_build(&r.ds, &docs, tok_encode, r.tok, eos, r.T, c->val_set_size,
                                   c->seed);
        ft_text_docs_free(&docs);
        if (st) goto done;
        r.n_train = r.ds.n_train;
        r.n_val = r.ds.n_val;
    }
    ft_train_options o = {.method = c->method,
                          .lora = c->lora,
                          .unfrozen = (const char *const *)c->unfrozen,
                          .n_unfrozen = c->n_unfrozen,
                          .B = r.B,
                          .T = r.T,
                          .grad_checkpointing = c->gradient_checkpointing,
                          .bf16 = c->bf16,
                          .tok_embed = c->tok_embed,
                          .n_tok_embed = c->n_tok_embed,
                          .tok_head = c->tok_head,
                          .n_tok_head = c->n_tok_head,
                          .tok_as_dict = c->tok_as_dict,
                          .seed = c->seed};
    /* no global clipping and one micro-batch per step: AdamW can run inside the backward, layer
     * by layer, and full fine-tuning then needs no model-size gradient buffer (same numbers) */
    if (c->method != FT_METHOD_LORA && c->gradient_accumulation_steps == 1 &&
        c->max_grad_norm <= 0) {
        o.grad_ready = ft_fused_adamw_ready;
        o.grad_ctx = &r.fused;
        fprintf(stderr, "ftune: AdamW runs inside the backward (max_grad_norm 0, "
                        "gradient_accumulation_steps 1): no gradient buffer\n");
    }
    r.model_fp = model_fingerprint(&r.model);
    if ((st = ft_train_model_init(&r.tm, &r.model, &o))) goto done;
    const size_t step_tokens = (size_t)r.B * (size_t)c->gradient_accumulation_steps * (size_t)r.T;
    r.inputs = malloc(sizeof(int) * step_tokens);
    r.labels = malloc(sizeof(int) * step_tokens);
    r.order = malloc(sizeof(int64_t) * (size_t)(r.n_train ? r.n_train : 1));
    if (r.sft) {
        r.pos = malloc(sizeof(int) * step_tokens);
        r.seg = malloc(sizeof(int) * step_tokens);
    }
    if (!r.inputs || !r.labels || !r.order || (r.sft && (!r.pos || !r.seg))) {
        st = ft_errorf(FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = train_loop(&r))) goto done;
    if (c->method == FT_METHOD_LORA) {
        st = ft_lora_save(r.tm, c->output_dir, c->base_model);
    } else {
        ft_train_sync_model(r.tm);
        st = ft_model_save(&r.model, c->output_dir);
        if (!st) st = copy_tokenizer_files(c->base_model, c->output_dir);
    }
    if (!st) fprintf(stderr, "ftune: wrote %s to %s\n",
                     c->method == FT_METHOD_LORA ? "the adapter" : "the model", c->output_dir);
done:
    if (r.metrics && fclose(r.metrics) && !st)
        st = ft_errorf(FT_ERR_IO, "%s: write failed: %s", r.metrics_path, strerror(errno));
    ft_text_docs_free(&docs);
    free(r.inputs);
    free(r.labels);
    free(r.order);
    ft_adamw_free(&r.opt);
    ft_train_model_free(r.tm);
    ft_text_dataset_free(&r.ds);
    free(r.pos);
    free(r.seg);
    ft_sft_rowset_free(&r.sft_train);
    ft_sft_rowset_free(&r.sft_val);
    ft_sft_dataset_free(&r.sds);
    ft_records_free(&r.recs);
    ft_tokenizer_free(r.tok);
    ft_model_free(&r.model);
    return st;
}
