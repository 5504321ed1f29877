/*
 * `ftune preview CONFIG.yaml [--n N] [--jsonl] [--generation-prompt] [--set key=value ...]`
 * Shows the first N processed training samples exactly as `ftune train` would build them from the
 * same config (datasets, chat_template, train_on_inputs, sequence_len, truncation, shuffle):
 *   default   the decoded text of each sample with the trained tokens marked: green on a
 *             terminal, between [[ and ]] otherwise, plus token counts and the notes (template
 *             recognised, skipped/truncated samples, pad == eos);
 *   --jsonl   one JSON object per sample {"input_ids": [...], "labels": [...]}, labels unshifted
 *             as in Hugging Face (-100 where there is no loss): the ground truth tests compare;
 *   --generation-prompt  (with --jsonl) the prompt ids `ftune chat` would feed for each of the
 *             first N conversations without their last reply: {"input_ids": [...]}.
 * Only the tokenizer of base_model is loaded, not the weights.
 */
#include "cli.h"
#include "cli_args.h"
#include "ftune/instruct.h"
#include "ftune/tokenizer.h"
#include "ftune/trainer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int usage(FILE *f) {
    fprintf(f, "usage: ftune preview CONFIG.yaml [--n N] [--jsonl] [--generation-prompt] "
               "[--set key=value ...]\n");
    return f == stdout ? 0 : 2;
}

static void print_ids(const char *key, const int *v, int n, int last) {
    printf("\"%s\": [", key);
    for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", v[i]);
    printf(last ? "]" : "], ");
}

/* Human view: decode runs of equally-labelled tokens, mark the trained ones. */
static ft_status show(ft_tokenizer *tok, const ft_records *r, const ft_sft_sample *s, int idx,
                      int color) {
    int trained = 0;
    for (int t = 0; t < s->n; t++) trained += s->labels[t] != FT_IGNORE_INDEX;
    printf("%s── sample %d (%s:%d) · %d tokens, %d trained ──%s\n", color ? "\x1b[2m" : "", idx,
           r->files[s->src], s->line, s->n, trained, color ? "\x1b[0m" : "");
    for (int a = 0; a < s->n;) {
        int tr = s->labels[a] != FT_IGNORE_INDEX, b = a;
        while (b < s->n && (s->labels[b] != FT_IGNORE_INDEX) == tr) b++;
        char *text = NULL;
        ft_status st = ft_tokenizer_decode(tok, s->ids + a, b - a, 0, &text);
        if (st) return st;
        if (tr) printf(color ? "\x1b[1;32m%s\x1b[0m" : "[[%s]]", text);
        else printf("%s", text);
        free(text);
        a = b;
    }
    printf("\n");
    return FT_OK;
}

int cmd_preview(int argc, char **argv) {
    const char *path = NULL;
    long long n_show = 5;
    int jsonl = 0, genp = 0;
    ft_train_config cfg;
    ft_train_config_defaults(&cfg);
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            rc = usage(stdout);
            goto out;
        }
        if (!strcmp(a, "--jsonl")) jsonl = 1;
        else if (!strcmp(a, "--generation-prompt")) genp = 1;
        else if (!strcmp(a, "--n") && i + 1 < argc) {
            if (cli_parse_int(a, argv[++i], 0, LLONG_MAX, &n_show)) goto fail;
        } else if (!strcmp(a, "--set") && i + 1 < argc) {
            if (!path) {
                fprintf(stderr, "ftune preview: --set comes after CONFIG.yaml\n");
                goto out;
            }
            if (ft_train_config_set(&cfg, argv[++i])) goto fail;
        } else if (a[0] != '-' && !path) {
            if (cli_parse_path("CONFIG.yaml", a, &path) || ft_train_config_load(&cfg, path))
                goto fail;
        } else {
            fprintf(stderr, "ftune preview: unknown argument '%s'\n", a);
            usage(stderr);
            goto out;
        }
    }
    if (!path) {
        usage(stderr);
        goto out;
    }
    if (ft_train_config_finish(&cfg)) goto fail;
    ft_tokenizer *tok = NULL;
    if (ft_tokenizer_load(&tok, cfg.base_model)) goto fail;
    ft_sft_config sc;
    ft_sft_source *src = NULL;
    ft_records recs;
    ft_sft_dataset ds;
    const ft_chat_template *tpl = NULL;
    char notes[4096];
    ft_status st = ft_train_config_sft(&cfg, &sc, &src);
    if (!st) st = ft_sft_load(&sc, tok, &recs, &ds, &tpl, notes, sizeof notes);
    free(src);
    if (st) {
        ft_tokenizer_free(tok);
        goto fail;
    }
    int color = !jsonl && isatty(1);
    if (genp) {
        /* the prompts `ftune chat` would build: same render code, generation prompt on */
        long long shown = 0;
        for (size_t i = 0; !st && i < recs.n && shown < n_show; i++) {
            const ft_record *rec = &recs.recs[i];
            if (rec->kind != FT_REC_CHAT || rec->n_msgs < 2) continue;
            ft_rendered rd = {0};
            int *ids = NULL, n = 0;
            int bos = ft_tokenizer_bos_id(tok), eos = ft_tokenizer_eos_id(tok);
            const char *bs = bos >= 0 ? ft_tokenizer_id_to_token(tok, bos) : "";
            const char *es = eos >= 0 ? ft_tokenizer_id_to_token(tok, eos) : "";
            st = ft_chat_render(tpl, rec->msgs, rec->n_msgs - 1, 1, bs ? bs : "", es ? es : "", &rd);
            if (!st) st = ft_tokenizer_encode(tok, rd.text, rd.len, 0, &ids, &n);
            if (!st) {
                printf("{");
                print_ids("input_ids", ids, n, 1);
                printf("}\n");
                shown++;
            }
            free(ids);
            ft_rendered_free(&rd);
        }
    } else {
        for (int64_t i = 0; !st && i < ds.n && i < n_show; i++) {
            const ft_sft_sample *s = &ds.samples[i];
            if (jsonl) {
                printf("{");
                print_ids("input_ids", s->ids, s->n, 0);
                print_ids("labels", s->labels, s->n, 1);
                printf("}\n");
            } else {
                st = show(tok, &recs, s, (int)i, color);
            }
        }
    }
    if (!st && !jsonl) {
        fprintf(stderr,
                "ftune preview: %zu records -> %lld samples (%lld train, %lld validation), %lld "
                "tokens, %lld trained targets; template %s; train_on_inputs %s\n",
                recs.n, (long long)ds.n, (long long)ds.n_train, (long long)ds.n_val,
                (long long)ds.n_tokens, (long long)ds.n_target_tokens,
                tpl ? ft_chat_template_name(tpl) : "(none: text)",
                sc.train_on_inputs ? "true" : "false");
    }
    if (!st && notes[0] && !jsonl) {
        for (char *p = notes, *e; *p; p = e + 1) {
            e = strchr(p, '\n');
            if (!e) break;
            fprintf(stderr, "ftune preview: %.*s\n", (int)(e - p), p);
        }
    }
    ft_sft_dataset_free(&ds);
    ft_records_free(&recs);
    ft_tokenizer_free(tok);
    if (st) goto fail;
    rc = 0;
    goto out;
fail:
    rc = cli_fail();
out:
    ft_train_config_free(&cfg);
    return rc;
}
