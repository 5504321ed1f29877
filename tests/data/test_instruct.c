/*
 * Instruction data without a real tokenizer: every reader format and the column mapping, line
 * numbers in JSON arrays and JSON Lines, the malformed-input errors (bad JSON line, missing field,
 * empty conversation, unknown role, too long) and skip_invalid counts, template rendering of a
 * fixed conversation (hand-derived from each model's published Jinja; the Jinja engine itself is
 * compared in tests/data/test_templates.sh), template detection, the segment->token mapping when a
 * token straddles a segment border, truncation, validation split, rows and packing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "ftune/instruct.h"

static ft_status parse(ft_records *r, const char *text, const char *type, int skip) {
    ft_dataset_format f = {.type = type, .skip_invalid = skip};
    return ft_records_parse(r, text, strlen(text), "d.jsonl", &f);
}

static int msg_is(const ft_record *rec, int i, ft_role role, const char *content) {
    return i < rec->n_msgs && rec->msgs[i].role == role && !strcmp(rec->msgs[i].content, content);
}

static void test_formats(void) {
    ft_records r = {0};
    ft_status st = parse(&r,
                         "{\"instruction\":\"Add\",\"input\":\"2 2\",\"output\":\"4\"}\n"
                         "\n"
                         "{\"instruction\":\"Hi\",\"input\":\"\",\"output\":\"Hello\",\"system\":\"S\"}\n",
                         "alpaca", 0);
    CHECK("alpaca", !st && r.n == 2 && r.recs[0].n_msgs == 2 &&
                        msg_is(&r.recs[0], 0, FT_ROLE_USER, "Add\n\n2 2") &&
                        msg_is(&r.recs[0], 1, FT_ROLE_ASSISTANT, "4") && r.recs[1].line == 3 &&
                        msg_is(&r.recs[1], 0, FT_ROLE_SYSTEM, "S") &&
                        msg_is(&r.recs[1], 1, FT_ROLE_USER, "Hi"),
          "st=%d n=%zu %s", st, r.n, ft_error_message());
    ft_records_free(&r);

    st = parse(&r, "{\"instruction\":\"Q\",\"context\":\"C\",\"response\":\"A\",\"category\":\"x\"}",
               "dolly", 0);
    CHECK("dolly", !st && r.n == 1 && msg_is(&r.recs[0], 0, FT_ROLE_USER, "Q\n\nC") &&
                       msg_is(&r.recs[0], 1, FT_ROLE_ASSISTANT, "A"),
          "%s", ft_error_message());
    ft_records_free(&r);

    st = parse(&r, "{\"inputs\":\"Q\",\"targets\":\"A\"}", "flan", 0);
    CHECK("flan", !st && r.n == 1 && msg_is(&r.recs[0], 0, FT_ROLE_USER, "Q") &&
                      msg_is(&r.recs[0], 1, FT_ROLE_ASSISTANT, "A"),
          "%s", ft_error_message());
    ft_records_free(&r);

    st = parse(&r,
               "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\","
               "\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"A\"}]}",
               "sharegpt", 0);
    CHECK("sharegpt", !st && r.n == 1 && r.recs[0].n_msgs == 3 &&
                          msg_is(&r.recs[0], 0, FT_ROLE_SYSTEM, "S") &&
                          msg_is(&r.recs[0], 2, FT_ROLE_ASSISTANT, "A"),
          "%s", ft_error_message());
    ft_records_free(&r);

    st = parse(&r,
               "{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\","
               "\"content\":\"A\"}]}\n"
               "{\"conversations\":[{\"role\":\"user\",\"content\":\"Q2\"},{\"role\":\"assistant\","
               "\"content\":\"A2\"}]}",
               "chat_template", 0);
    CHECK("chat_template messages and conversations",
          !st && r.n == 2 && msg_is(&r.recs[1], 0, FT_ROLE_USER, "Q2") &&
              msg_is(&r.recs[1], 1, FT_ROLE_ASSISTANT, "A2"),
          "%s", ft_error_message());
    ft_records_free(&r);

    st = parse(&r, "{\"text\":\"Once upon a time\"}", "completion", 0);
    CHECK("completion", !st && r.n == 1 && r.recs[0].kind == FT_REC_TEXT &&
                            !strcmp(r.recs[0].text, "Once upon a time"),
          "%s", ft_error_message());
    ft_records_free(&r);

    st = parse(&r,
               "{\"prompt\":\"Q\",\"chosen\":\"good\",\"rejected\":\"bad\"}\n"
               "{\"prompt\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\","
               "\"content\":\"Q\"}],\"chosen\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":"
               "\"assistant\",\"content\":\"good\"}],\"rejected\":[{\"role\":\"assistant\","
               "\"content\":\"bad\"}]}",
               "preference", 0);
    CHECK("preference strings and message lists",
          !st && r.n == 2 && r.recs[0].kind == FT_REC_PREF && !strcmp(r.recs[0].chosen, "good") &&
              !strcmp(r.recs[1].rejected, "bad") && !strcmp(r.recs[1].chosen, "good") &&
              r.recs[1].n_msgs == 2 && msg_is(&r.recs[1], 1, FT_ROLE_USER, "Q"),
          "%s", ft_error_message());
    ft_records_free(&r);

    /* column mapping, Axolotl names */
    ft_dataset_format f = {.type = "alpaca",
                           .field_instruction = "question",
                           .field_output = "answer",
                           .field_input = "ctx"};
    const char *t = "{\"question\":\"Q\",\"ctx\":\"C\",\"answer\":\"A\"}";
    st = ft_records_parse(&r, t, strlen(t), "m.jsonl", &f);
    CHECK("column mapping alpaca", !st && r.n == 1 && msg_is(&r.recs[0], 0, FT_ROLE_USER, "Q\n\nC") &&
                                       msg_is(&r.recs[0], 1, FT_ROLE_ASSISTANT, "A"),
          "%s", ft_error_message());
    ft_records_free(&r);
    ft_dataset_format g = {.type = "sharegpt",
                           .field_messages = "chat",
                           .message_field_role = "speaker",
                           .message_field_content = "text"};
    t = "{\"chat\":[{\"speaker\":\"user\",\"text\":\"Q\"},{\"speaker\":\"assistant\",\"text\":\"A\"}]}";
    st = ft_records_parse(&r, t, strlen(t), "m.jsonl", &g);
    CHECK("column mapping messages", !st && r.n == 1 && msg_is(&r.recs[0], 1, FT_ROLE_ASSISTANT, "A"),
          "%s", ft_error_message());
    ft_records_free(&r);

    /* JSON array with line numbers */
    st = parse(&r,
               "[\n  {\"inputs\": \"Q1\", \"targets\": \"A1\"},\n  {\"inputs\": \"Q2\",\n"
               "   \"targets\": \"A2 ]} \\\" x\"}\n]\n",
               "flan", 0);
    CHECK("json array", !st && r.n == 2 && r.recs[0].line == 2 && r.recs[1].line == 3 &&
                            msg_is(&r.recs[1], 1, FT_ROLE_ASSISTANT, "A2 ]} \" x"),
          "st=%d n=%zu %s", st, r.n, ft_error_message());
    ft_records_free(&r);
}

/* The error for `text` must contain `want`. */
static void expect_error(const char *name, const char *text, const char *type, const char *want) {
    ft_records r = {0};
    ft_status st = parse(&r, text, type, 0);
    CHECK(name, st != FT_OK && strstr(ft_error_message(), want), "st=%d message '%s' (want '%s')",
          st, ft_error_message(), want);
    ft_records_free(&r);
}

static void test_errors(void) {
    const char *ok = "{\"instruction\":\"Q\",\"input\":\"\",\"output\":\"A\"}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s{\"instruction\": \"Q\", \"output\": }\n", ok, ok);
    expect_error("bad JSON line", buf, "alpaca", "d.jsonl:3: invalid JSON");
    snprintf(buf, sizeof buf, "%s{\"instruction\":\"Q\",\"input\":\"\"}\n", ok);
    expect_error("missing field", buf, "alpaca", "d.jsonl:2: missing field 'output'");
    expect_error("empty conversation", "{\"messages\":[]}", "chat_template",
                 "d.jsonl:1: empty conversation");
    expect_error("unknown role",
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":"
                 "\"assistant\",\"content\":\"A\"}]}\n"
                 "{\"messages\":[{\"role\":\"robot\",\"content\":\"Q\"}]}",
                 "chat_template", "d.jsonl:2: messages[0]: unknown role 'robot'");
    expect_error("no assistant turn", "{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"}]}",
                 "chat_template", "d.jsonl:1: conversation has no assistant turn");
    expect_error("not a string", "{\"inputs\":\"Q\",\"targets\":3}", "flan",
                 "field 'targets' is not a string");
    expect_error("empty file", "\n\n", "alpaca", "d.jsonl: no records");
    expect_error("unknown type", ok, "alpacha", "dataset type 'alpacha' is not supported");
    expect_error("array not closed", "[{\"inputs\":\"Q\",\"targets\":\"A\"},\n", "flan",
                 "the array is not closed");
    expect_error("array of scalars", "[1, 2]", "flan", "d.jsonl:1: a record must be a JSON object");
    expect_error("trailing text", "{\"inputs\":\"Q\",\"targets\":\"A\"} x", "flan",
                 "d.jsonl:1: invalid JSON");
    /* a UTF-8 byte order mark before a JSON array, as before JSON Lines */
    ft_records rb = {0};
    ft_status sb = parse(&rb, "\xEF\xBB\xBF[\n{\"inputs\":\"Q\",\"targets\":\"A\"}]", "flan", 0);
    CHECK("BOM before a JSON array", !sb && rb.n == 1 && rb.recs[0].line == 2, "%s",
          ft_error_message());
    ft_records_free(&rb);
    sb = parse(&rb, "\xEF\xBB\xBF{\"inputs\":\"Q\",\"targets\":\"A\"}\n", "flan", 0);
    CHECK("BOM before JSON Lines", !sb && rb.n == 1, "%s", ft_error_message());
    ft_records_free(&rb);
    /* a key given twice: Python's json (so HF datasets) keeps the last value, cJSON the first */
    expect_error("duplicate key",
                 "{\"instruction\":\"Say A\",\"input\":\"\",\"output\":\"first\","
                 "\"output\":\"second\"}",
                 "alpaca", "d.jsonl:1: key 'output' appears twice");
    expect_error("duplicate key in a message",
                 "[\n{\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":"
                 "\"assistant\",\"content\":\"A\",\"content\":\"B\"}]}]",
                 "chat_template", "d.jsonl:2: messages[1]: key 'content' appears twice");
    expect_error("duplicate key sharegpt",
                 "{\"conversations\":[{\"from\":\"human\",\"from\":\"gpt\",\"value\":\"Q\"}]}",
                 "sharegpt", "d.jsonl:1: conversations[0]: key 'from' appears twice");
    /* \u0000: cJSON's strings end there ("visible" would be trained, the tail lost) */
    expect_error("U+0000 in a string",
                 "{\"instruction\":\"Q\",\"output\":\"A\"}\n"
                 "{\"instruction\":\"Q\",\"output\":\"visible\\u0000hidden tail\"}",
                 "alpaca", "d.jsonl:2: a string holds U+0000");
    expect_error("U+0000 in a message",
                 "[{\"messages\":[{\"role\":\"user\",\"content\":\"Q\\u0000\"},{\"role\":"
                 "\"assistant\",\"content\":\"A\"}]}]",
                 "chat_template", "d.jsonl:1: a string holds U+0000");
    expect_error("duplicate key dolly",
                 "{\"instruction\":\"Q\",\"response\":\"A\",\"response\":\"B\"}", "dolly",
                 "d.jsonl:1: key 'response' appears twice");

    ft_records r = {0};
    snprintf(buf, sizeof buf, "%s{bad\n%s{\"messages\":1}\n{\"instruction\":\"Q\"}\n", ok, ok);
    ft_status st = parse(&r, buf, "alpaca", 1);
    CHECK("skip_invalid counts", !st && r.n == 2 && r.n_skipped == 3 && r.recs[1].line == 3 &&
                                     strstr(r.first_skip, "d.jsonl:2: invalid JSON"),
          "st=%d n=%zu skipped=%lld first='%s'", st, r.n, (long long)r.n_skipped, r.first_skip);
    ft_records_free(&r);
    st = parse(&r, "{bad\n{\"x\":1}\n", "alpaca", 1);
    CHECK("skip_invalid never a silent empty dataset",
          st && strstr(ft_error_message(), "all 2 records are invalid"), "%s", ft_error_message());
    ft_records_free(&r);
}

/* Render a fixed conversation; expected strings follow each model's Jinja by hand. */
static void check_render(const char *name, const ft_msg *m, int n, int gen, const char *bos,
                         const char *eos, const char *want, const char *want_trained) {
    const ft_chat_template *t;
    ft_rendered rd = {0};
    char label[64];
    snprintf(label, sizeof label, "render %s%s", name, gen ? " (generation prompt)" : "");
    ft_status st = ft_chat_template_get(name, &t);
    if (!st) st = ft_chat_render(t, m, n, gen, bos, eos, &rd);
    char trained[512] = "";
    size_t k = 0, start = 0;
    for (int s = 0; !st && s < rd.n_seg; s++) {
        if (rd.seg_train[s] && k + (rd.seg_end[s] - start) + 2 < sizeof trained) {
            memcpy(trained + k, rd.text + start, rd.seg_end[s] - start);
            k += rd.seg_end[s] - start;
            trained[k++] = '|';
            trained[k] = 0;
        }
        start = rd.seg_end[s];
    }
    CHECK(label, !st && !strcmp(rd.text, want) && (!want_trained || !strcmp(trained, want_trained)),
          "st=%d %s\n got: [%s]\nwant: [%s]\n trained: [%s] want [%s]", st, ft_error_message(),
          rd.text ? rd.text : "", want, trained, want_trained ? want_trained : "");
    ft_rendered_free(&rd);
}

static void test_templates(void) {
    ft_msg conv[] = {{FT_ROLE_USER, "Hi "}, {FT_ROLE_ASSISTANT, "Hello"},
                     {FT_ROLE_USER, "Sum?"}, {FT_ROLE_ASSISTANT, "4"}};
    ft_msg sys[] = {{FT_ROLE_SYSTEM, "Be brief."}, {FT_ROLE_USER, "Hi"},
                    {FT_ROLE_ASSISTANT, "Hello"}};
    check_render("llama3", conv, 4, 0, "<|begin_of_text|>", "<|end_of_text|>",
                 "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nSum?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>",
                 "Hello<|eot_id|>|4<|eot_id|>|");
    check_render("llama3", conv, 3, 1, "<|begin_of_text|>", "<|end_of_text|>",
                 "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nSum?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n",
                 NULL);
    check_render("llama2", sys, 3, 0, "<s>", "</s>",
                 "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s>", "Hello </s>|");
    check_render("llama2", conv, 4, 0, "<s>", "</s>",
                 "<s>[INST] Hi [/INST] Hello </s><s>[INST] Sum? [/INST] 4 </s>",
                 "Hello </s>|4 </s>|");
    check_render("mistral", conv, 4, 0, "<s>", "</s>",
                 "<s>[INST] Hi  [/INST]Hello</s>[INST] Sum? [/INST]4</s>", "Hello</s>|4</s>|");
    check_render("chatml", sys, 3, 0, "", "<|im_end|>",
                 "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                 "<|im_start|>assistant\nHello<|im_end|>\n",
                 "Hello<|im_end|>|");
    check_render("qwen3", conv, 4, 0, "", "<|im_end|>",
                 "<|im_start|>user\nHi <|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
                 "<|im_start|>user\nSum?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                 "4<|im_end|>\n",
                 "Hello<|im_end|>|4<|im_end|>|");
    check_render("alpaca", sys + 1, 2, 0, "<s>", "</s>",
                 "<s>Below is an instruction that describes a task. Write a response that "
                 "appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\n"
                 "Hello</s>\n\n",
                 "Hello</s>|");
    check_render("vicuna", sys, 3, 0, "<s>", "</s>",
                 "<s>Be brief. USER: Hi ASSISTANT: Hello</s>", "Hello</s>|");
    check_render("vicuna", sys, 2, 1, "<s>", "</s>", "<s>Be brief. USER: Hi ASSISTANT:", NULL);
    check_render("zephyr", sys, 3, 0, "<s>", "</s>",
                 "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n",
                 "Hello</s>|");
    check_render("gemma", conv, 2, 0, "<bos>", "<eos>",
                 "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello"
                 "<end_of_turn>\n",
                 "Hello<end_of_turn>|");
    check_render("phi3", sys, 3, 0, "<s>", "<|endoftext|>",
                 "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n"
                 "<|endoftext|>",
                 "Hello<|end|>|");

    /* refusals */
    const ft_chat_template *t;
    ft_rendered rd = {0};
    ft_chat_template_get("gemma", &t);
    ft_status st = ft_chat_render(t, sys, 3, 0, "", "", &rd);
    CHECK("gemma refuses a system message", st && strstr(ft_error_message(), "no system role"),
          "%s", ft_error_message());
    ft_chat_template_get("mistral", &t);
    ft_msg bad[] = {{FT_ROLE_USER, "a"}, {FT_ROLE_USER, "b"}, {FT_ROLE_ASSISTANT, "c"}};
    st = ft_chat_render(t, bad, 3, 0, "", "", &rd);
    CHECK("mistral needs alternation", st && strstr(ft_error_message(), "must alternate"), "%s",
          ft_error_message());
    ft_rendered_free(&rd);
    st = ft_chat_template_get("llama4", &t);
    CHECK("unknown template named", st && strstr(ft_error_message(), "unknown chat_template 'llama4'"),
          "%s", ft_error_message());

    /* detection renders the Jinja source (tests/data/test_detect.c covers every template) */
    const char *l3 = "{% for message in messages %}{% set content = '<|start_header_id|>' + "
                     "message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + "
                     "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
                     "%}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
                     "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    st = ft_chat_template_detect(l3, "<|begin_of_text|>", "<|end_of_text|>", &t);
    CHECK("detect llama3", !st && !strcmp(ft_chat_template_name(t), "llama3"), "%s",
          ft_error_message());
    /* has ChatML's markers but renders nothing like it: markers alone no longer decide */
    st = ft_chat_template_detect("{{'<|im_start|>' + m + '<|im_end|>'}}", "", "", &t);
    CHECK("detect markers are not enough",
          st == FT_ERR_UNSUPPORTED && strstr(ft_error_message(), "is not one ftune knows"), "%s",
          ft_error_message());
    st = ft_chat_template_detect("{{ '<|turn|>' + content }}", "", "", &t);
    CHECK("detect unknown asks for a name",
          st == FT_ERR_UNSUPPORTED && strstr(ft_error_message(), "set chat_template: to one of"),
          "%s", ft_error_message());
}

/* A toy tokenizer: one token per byte, except the pairs "ab" (id 1000) and "]b" (id 1001), which
 * are one token each: "]b" straddles mistral's "[/INST]" + a reply starting with 'b'. */
static ft_status toy_encode(void *ctx, const char *s, size_t n, int add_special, int **ids,
                           int *nout) {
    (void)ctx, (void)add_special;
    int *v = malloc(sizeof(int) * (n + 1));
    if (!v) return FT_ERR_NOMEM;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] == 'a' || s[i] == ']') && i + 1 < n && s[i + 1] == 'b') {
            v[k++] = s[i] == 'a' ? 1000 : 1001;
            i++;
        } else {
            v[k++] = (unsigned char)s[i];
        }
    }
    *ids = v;
    *nout = k;
    return FT_OK;
}

/* Tokenize one conversation {user: q, assistant: reply} with mistral, eos "E"; check that exactly
 * the tokens from index `first_trained` on carry labels and that there are n tokens. */
static void check_tokenize(const char *name, const char *reply, int n, int first_trained) {
    ft_records r = {0};
    char t[256];
    snprintf(t, sizeof t,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
             "\"content\":\"%s\"}]}",
             reply);
    ft_dataset_format f = {.type = "chat_template"};
    ft_status st = ft_records_parse(&r, t, strlen(t), "t.jsonl", &f);
    const ft_chat_template *tpl;
    ft_chat_template_get("mistral", &tpl);
    ft_sft_options o = {.tpl = tpl, .bos = "", .eos = "E", .eos_id = -1, .T = 64,
                        .enc = toy_encode};
    ft_sft_sample s = {0};
    if (!st) st = ft_sft_tokenize(&r, &r.recs[0], &o, &s);
    int ok = !st && s.n == n;
    for (int i = 0; ok && i < s.n; i++)
        ok = s.labels[i] == (i < first_trained ? FT_IGNORE_INDEX : s.ids[i]);
    CHECK(name, ok, "st=%d n=%d (want %d) %s", st, s.n, n, ft_error_message());
    ft_sft_sample_free(&s);
    ft_records_free(&r);
}

static void test_tokenize(void) {
    /* "[INST] q [/INST]" = 16 untrained bytes, then "c" "ab" "E" trained */
    check_tokenize("tokenize: reply and end of turn trained, merge inside", "cab", 16 + 3, 16);
    /* "[INST] q [/INST" 15 bytes, then "]b" straddles the border: it goes to the reply */
    check_tokenize("tokenize: a token straddling the border belongs to the reply", "bc", 15 + 3, 15);
}

static void test_dataset(void) {
    ft_records r = {0};
    const char *t =
        "{\"inputs\":\"q\",\"targets\":\"aaaa\"}\n"
        "{\"inputs\":\"q\",\"targets\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n"
        "{\"inputs\":\"q\",\"targets\":\"bb\"}\n"
        "{\"inputs\":\"q\",\"targets\":\"cc\"}\n";
    ft_dataset_format f = {.type = "flan"};
    ft_status st = ft_records_parse(&r, t, strlen(t), "ds.jsonl", &f);
    const ft_chat_template *tpl;
    ft_chat_template_get("mistral", &tpl);
    ft_sft_options o = {.tpl = tpl, .bos = "", .eos = "E", .eos_id = -1, .T = 40,
                        .enc = toy_encode};
    ft_sft_dataset ds;
    st = st ? st : ft_sft_dataset_build(&ds, &r, &o, 0, 1);
    CHECK("too long is an error naming file and line",
          st && strstr(ft_error_message(), "ds.jsonl:2: sample has") &&
              strstr(ft_error_message(), "longer than sequence_len 40"),
          "%s", ft_error_message());
    o.truncation = FT_TRUNC_DROP;
    st = ft_sft_dataset_build(&ds, &r, &o, 1, 7);
    CHECK("truncation: drop", !st && ds.n == 3 && ds.n_dropped == 1 && ds.n_val == 1 &&
                                  ds.n_train == 2,
          "st=%d %s", st, ft_error_message());
    if (!st) ft_sft_dataset_free(&ds);
    o.truncation = FT_TRUNC_TRUNCATE;
    st = ft_sft_dataset_build(&ds, &r, &o, 0.5, 7);
    CHECK("truncation: truncate", !st && ds.n == 4 && ds.n_truncated == 1 &&
                                      ds.samples[1].n == 40 && ds.n_val == 2,
          "st=%d %s", st, ft_error_message());
    if (!st) {
        /* rows: samples 0 and 2 packed into one row of 40 */
        int64_t idx[2] = {0, 2};
        int in[40], lab[40], pos[40], seg[40];
        int n0 = ds.samples[0].n, n2 = ds.samples[2].n;
        ft_sft_row(&ds, idx, 2, 40, 0, in, lab, pos, seg);
        int ok = n0 + n2 <= 40;
        for (int i = 0; ok && i < 40; i++) {
            if (i < n0)
                ok = in[i] == ds.samples[0].ids[i] && pos[i] == i && seg[i] == 0 &&
                     lab[i] == (i + 1 < n0 ? ds.samples[0].labels[i + 1] : FT_IGNORE_INDEX);
            else if (i < n0 + n2)
                ok = in[i] == ds.samples[2].ids[i - n0] && pos[i] == i - n0 && seg[i] == 1 &&
                     lab[i] == (i + 1 < n0 + n2 ? ds.samples[2].labels[i - n0 + 1]
                                                : FT_IGNORE_INDEX);
            else
                ok = in[i] == 0 && lab[i] == FT_IGNORE_INDEX && seg[i] == 2;
        }
        CHECK("packed row: positions restart, seg per sample, shifted labels", ok, "n0=%d n2=%d",
              n0, n2);
        int64_t order[4] = {0, 1, 2, 3}, *rs = NULL, nr = 0;
        ft_sft_pack(&ds, order, 4, 40, 1, &rs, &nr);
        CHECK("pack in order, new row when full", nr == 3 && rs[0] == 0 && rs[1] == 1 &&
                                                      rs[2] == 2 && rs[3] == 4,
              "rows=%lld", (long long)nr);
        free(rs);
        ft_sft_pack(&ds, order, 4, 40, 0, &rs, &nr);
        CHECK("no packing: one sample per row", nr == 4 && rs[4] == 4, "rows=%lld", (long long)nr);
        free(rs);
        ft_sft_dataset_free(&ds);
    }
    o.train_on_inputs = 1;
    st = ft_sft_dataset_build(&ds, &r, &o, 0, 7);
    CHECK("train_on_inputs labels every token",
          !st && !memcmp(ds.samples[0].labels, ds.samples[0].ids, sizeof(int) * (size_t)ds.samples[0].n),
          "st=%d %s", st, ft_error_message());
    if (!st) ft_sft_dataset_free(&ds);
    st = ft_sft_dataset_build(&ds, &r, &o, 4, 7);
    CHECK("val_set_size leaving nothing is an error", st && strstr(ft_error_message(), "val_set_size"),
          "%s", ft_error_message());
    ft_records_free(&r);
}

int main(void) {
    test_formats();
    test_errors();
    test_templates();
    test_tokenize();
    test_dataset();
    return ft_test_exit();
}
