/*
 * `ftune generate --model DIR [--adapter DIR] (--prompt-ids 1,2,3 | --prompt TEXT)
 *                 [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]`
 * --adapter merges a PEFT LoRA adapter into the loaded weights first (ft_adapter_apply).
 * Defaults: 64 new tokens, temperature 0 (greedy), top-k 0 (off), top-p 1 (off), seed 0.
 * With --prompt-ids the new ids are printed space-separated on one line as they are produced.
 * Generation stops at EOS, after --max-new-tokens, or when the model's context is full (said on
 * stderr: the last id is the one predicted at the last position).
 * With --prompt TEXT the model folder's tokenizer.json encodes the text (with the tokenizer's
 * special tokens, e.g. BOS) and the prompt followed by the continuation is printed as text,
 * streamed: after each token, prompt+generated ids are decoded again and the new suffix is printed
 * (decoding the new ids alone would lose SentencePiece's leading space); a text ending in U+FFFD,
 * which may be a UTF-8 sequence the next byte token completes, holds that end back until the next
 * token, and whatever is held back when generation ends is printed then.
 * --chat [--chat-template NAME] [--system TEXT]: TEXT is a user message; the prompt is rendered by
 * the chat template (the model's own when recognised) exactly as training renders it, and only the
 * reply is printed, up to the template's end-of-turn token (src/cli/chat.c, shared with `chat`).
 */
#include "chat.h"
#include "cli.h"
#include "cli_args.h"
#include "ftune/model.h"
#include "ftune/peft.h"
#include "ftune/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int usage(FILE *f) {
    fprintf(f, "usage: ftune generate --model DIR [--adapter DIR] (--prompt-ids ID,ID,... | "
               "--prompt TEXT)\n"
               "       [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
               "       [--chat [--chat-template NAME] [--system TEXT]]\n");
    return f == stdout ? 0 : 2;
}

static void print_id(int id, void *user) {
    int *count = user;
    printf((*count)++ ? " %d" : "%d", id);
    fflush(stdout);
}

typedef struct {
    ft_tokenizer *tok;
    int *ids; /* (n_prompt + max_new) prompt then generated ids */
    int n;
    size_t printed; /* bytes of the decoded text already printed */
    ft_status st;   /* the first decode error (printing stops there; reported at the end) */
} text_stream;

/* Decode prompt+generated ids and print what is new; `final` = 0 holds back a U+FFFD at the end
 * (an unfinished UTF-8 sequence), as cli_chat_reply does. */
static void print_new_text(text_stream *ts, int final) {
    char *text = NULL;
    if (ts->st || (ts->st = ft_tokenizer_decode(ts->tok, ts->ids, ts->n, 1, &text))) return;
    size_t len = strlen(text);
    int partial = !final && len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3);
    if (!partial && len > ts->printed) {
        fwrite(text + ts->printed, 1, len - ts->printed, stdout);
        fflush(stdout);
        ts->printed = len;
    }
    free(text);
}

static void print_text(int id, void *user) {
    text_stream *ts = user;
    ts->ids[ts->n++] = id;
    print_new_text(ts, 0);
}

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *prompt = NULL, *adapter = NULL, *tpl = NULL,
               *sys = NULL;
    int chat = 0;
    cli_sample_opts so = {.max_new = 64,
                          .sp = {.temperature = 0, .top_k = 0, .top_p = 1, .seed = 0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        ft_status st = FT_OK;
        if (cli_is_help(a)) return usage(stdout);
        if (!strcmp(a, "--chat")) {
            chat = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ftune generate: option '%s' needs a value\n", a);
            return usage(stderr);
        }
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--adapter")) adapter = v;
        else if (!strcmp(a, "--prompt-ids")) ids_s = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--chat-template")) tpl = v;
        else if (!strcmp(a, "--system")) sys = v;
        else if (cli_is_sample_opt(a))
            st = cli_parse_sample_opt(a, v, &so);
        else {
            fprintf(stderr, "ftune generate: unknown option '%s'\n", a);
            return usage(stderr);
        }
        if (st) return cli_fail();
        i++;
    }
    if (!dir || (!ids_s == !prompt) || (chat && !prompt) || (!chat && (tpl || sys)))
        return usage(stderr);
    if (cli_parse_path("--model", dir, &dir) ||
        (adapter && cli_parse_path("--adapter", adapter, &adapter)))
        return cli_fail();
    int *ids = NULL, n = 0, *out = NULL, n_out = 0, count = 0;
    text_stream ts = {0};
    ft_model m = {0};
    ft_status st;
    if (chat) {
        cli_reply_end end;
        if (!(st = ft_model_load(&m, dir)) && !(adapter && (st = ft_adapter_apply(&m, adapter))) &&
            !(st = ft_tokenizer_load(&ts.tok, dir))) {
            st = cli_chat_once(&m, ts.tok, dir, tpl, sys, prompt, (int)so.max_new, &so.sp, stdout,
                               &end);
            printf("\n");
            if (!st && cli_stdout_ok()) cli_reply_note("generate", end, (int)so.max_new, &m);
        }
        goto done;
    }
    if (prompt) {
        if ((st = ft_tokenizer_load(&ts.tok, dir))) goto done;
        if ((st = ft_tokenizer_encode(ts.tok, prompt, strlen(prompt), 1, &ids, &n))) goto done;
        if (n == 0) {
            st = ft_errorf(FT_ERR_ARG, "--prompt: the text encodes to no tokens");
            goto done;
        }
    } else if ((st = cli_parse_ids("--prompt-ids", ids_s, &ids, &n))) {
        goto done;
    }
    if ((st = ft_model_load(&m, dir))) goto done;
    if (ts.tok && (st = ft_tokenizer_check_model(ts.tok, dir, m.cfg.vocab_size))) goto done;
    if (adapter && (st = ft_adapter_apply(&m, adapter))) goto done;
    /* the context ends generation after ctx - n + 1 ids (the last one predicted at its last
     * position): no more room is needed */
    const int ctx = ft_config_context(&m.cfg);
    int max_new = (int)so.max_new;
    if (ctx > 0 && max_new > ctx - n + 1) max_new = ctx - n + 1 > 0 ? ctx - n + 1 : 0;
    out = malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof(int));
    if (prompt) {
        ts.ids = malloc(((size_t)n + (size_t)max_new) * sizeof(int));
        if (!out || !ts.ids) {
            st = ft_errorf(FT_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(ts.ids, ids, (size_t)n * sizeof(int));
        ts.n = n;
        char *text = NULL; /* the prompt as the tokenizer decodes it: what is already "printed" */
        if ((st = ft_tokenizer_decode(ts.tok, ids, n, 1, &text))) goto done;
        ts.printed = strlen(text);
        fputs(prompt, stdout);
        free(text);
        st = ft_generate(&m, ids, n, max_new, &so.sp, out, &n_out, print_text, &ts);
        print_new_text(&ts, 1);
        if (!st && ts.st)
            st = ft_error_wrap(ts.st, "%s/tokenizer.json: decoding the generated ids", dir);
    } else {
        st = out ? ft_generate(&m, ids, n, max_new, &so.sp, out, &n_out, print_id, &count)
                 : ft_errorf(FT_ERR_NOMEM, "out of memory");
    }
    printf("\n");
    if (!st && n_out < so.max_new && ctx > 0 && n + n_out > ctx && cli_stdout_ok())
        fprintf(stderr, "ftune generate: (stopped: the model's context of %d positions is full)\n",
                ctx);
done:
    free(out);
    free(ids);
    free(ts.ids);
    ft_tokenizer_free(ts.tok);
    ft_model_free(&m);
    return st ? cli_fail() : 0;
}
