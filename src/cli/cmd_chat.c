/*
 * `ftune chat --model DIR [--adapter DIR] [--chat-template NAME] [--system TEXT]
 *             [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]`
 * Interactive chat: each line read from stdin is a user message; the reply streams to stdout and
 * ends at the template's end-of-turn token. "/reset" starts a new conversation; an empty line or
 * end of input quits; a line holding a NUL byte is an error. The prompt is rendered by the same
 * template code as the training samples (src/data/chat_template.c), so training and chatting cannot
 * disagree. Defaults: the model's own template when recognised, 256 new tokens, greedy decoding.
 */
#include "chat.h"
#include "cli.h"
#include "cli_args.h"
#include "ftune/peft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Print the usage to f: stdout when asked for (exit code 0), stderr on a usage error (2). */
static int usage(FILE *f) {
    fprintf(f,
            "usage: ftune chat --model DIR [--adapter DIR] [--chat-template NAME] [--system TEXT]\n"
            "       [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n");
    return f == stdout ? 0 : 2;
}

int cmd_chat(int argc, char **argv) {
    const char *dir = NULL, *adapter = NULL, *tpl = NULL, *sys = NULL;
    cli_sample_opts so = {.max_new = 256,
                          .sp = {.temperature = 0, .top_k = 0, .top_p = 1, .seed = 0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        ft_status st = FT_OK;
        if (cli_is_help(a)) return usage(stdout);
        if (!v) {
            fprintf(stderr, "ftune chat: option '%s' needs a value\n", a);
            return usage(stderr);
        }
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--adapter")) adapter = v;
        else if (!strcmp(a, "--chat-template")) tpl = v;
        else if (!strcmp(a, "--system")) sys = v;
        else if (cli_is_sample_opt(a))
            st = cli_parse_sample_opt(a, v, &so);
        else {
            fprintf(stderr, "ftune chat: unknown option '%s'\n", a);
            return usage(stderr);
        }
        if (st) return cli_fail();
        i++;
    }
    if (!dir) return usage(stderr);
    if (cli_parse_path("--model", dir, &dir) ||
        (adapter && cli_parse_path("--adapter", adapter, &adapter)))
        return cli_fail();
    ft_model m;
    ft_tokenizer *tok = NULL;
    if (ft_model_load(&m, dir)) return cli_fail();
    if ((adapter && ft_adapter_apply(&m, adapter)) || ft_tokenizer_load(&tok, dir)) {
        ft_model_free(&m);
        return cli_fail();
    }
    const int max_new = (int)so.max_new;
    cli_chat c;
    int rc = 0;
    ft_status st = cli_chat_init(&c, &m, tok, dir, tpl, &so.sp);
    if (!st && sys) st = cli_chat_add(&c, FT_ROLE_SYSTEM, sys);
    int tty = isatty(0) && isatty(1);
    if (!st && tty)
        fprintf(stderr, "ftune chat: template %s; empty line to quit, /reset for a new chat\n",
                ft_chat_template_name(c.tpl));
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (!st) {
        if (tty) {
            printf("> ");
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (memchr(line, 0, (size_t)len)) {
            st = ft_errorf(FT_ERR_ARG, "<stdin>:%ld: the line holds a NUL byte", lineno);
            break;
        }
        if (len == 0) break;
        if (!strcmp(line, "/reset")) {
            for (int i = 0; i < c.n_msgs; i++) free(c.msgs[i].content);
            c.n_msgs = 0;
            if (sys) st = cli_chat_add(&c, FT_ROLE_SYSTEM, sys);
            continue;
        }
        const char *reply;
        cli_reply_end end;
        if (!(st = cli_chat_add(&c, FT_ROLE_USER, line)))
            st = cli_chat_reply(&c, max_new, stdout, &reply, &end);
        if (!st) {
            printf("\n");
            if (!cli_stdout_ok()) break; /* main() reports the lost output */
            cli_reply_note("chat", end, max_new, &m);
        }
    }
    if (st) rc = cli_fail();
    free(line);
    cli_chat_free(&c);
    ft_tokenizer_free(tok);
    ft_model_free(&m);
    return rc;
}
