/*
 * tokenizer_default: recognising a model's chat_template by rendering it (ft_chat_template_detect).
 * Each built-in's reference Jinja (tests/data/templates/NAME.jinja as published, and the fixtures'
 * real Llama-3 and Qwen3 tokenizer_config.json through ft_chat_template_resolve) is recognised
 * as itself. Templates that carry the same markers but render differently are NOT recognised,
 * and the message names the closest template, the probe where it differs and the names to pass.
 * The variants are written by hand here from the published templates' behaviour (not copied):
 *   - Llama-3.1/3.2: a system header is always emitted, holding "Cutting Knowledge Date:
 *     December 2023" and "Today Date: <strftime_now('%d %b %Y')>" before the system message;
 *   - Qwen2.5: ChatML, with the default system prompt "You are Qwen, created by Alibaba Cloud.
 *     You are a helpful assistant." when the conversation has none;
 *   - Gemma without the BOS token the published template starts with (BOS handling);
 *   - Llama-3 without `| trim` on the content;
 *   - Llama-3 appending a user header where the quirk tolerates only the assistant one.
 * Run from the repository root (tests/run.sh does).
 */
#include "../test.h"
#include "ftune/instruct.h"

#include <string.h>

static char *read_text(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    if (ft_read_file(path, &buf, &len)) return NULL;
    return buf;
}

static void expect_known(const char *name, const char *jinja, const char *bos, const char *eos) {
    const ft_chat_template *t = NULL;
    char label[96];
    snprintf(label, sizeof label, "detect_%s_reference", name);
    if (!jinja) {
        CHECK(label, 0, "tests/data/templates/%s.jinja is missing", name);
        return;
    }
    ft_status st = ft_chat_template_detect(jinja, bos, eos, &t);
    CHECK(label, !st && !strcmp(ft_chat_template_name(t), name), "got %s: %s",
          st ? "an error" : ft_chat_template_name(t), st ? ft_error_message() : "");
}

static void expect_unknown(const char *label, const char *jinja, const char *bos, const char *eos,
                           const char *closest) {
    const ft_chat_template *t = NULL;
    ft_error_clear();
    ft_status st = ft_chat_template_detect(jinja, bos, eos, &t);
    const char *m = ft_error_message();
    char want[64];
    snprintf(want, sizeof want, "closest is %s", closest);
    CHECK(label,
          st == FT_ERR_UNSUPPORTED && strstr(m, "is not one ftune knows") && strstr(m, want) &&
              strstr(m, "on the probe") && strstr(m, "set chat_template: to one of llama3") &&
              !strchr(m, '\n'),
          "status %d (%s), message '%s'", st, st ? "" : ft_chat_template_name(t), m);
}

int main(void) {
    static const char *published[] = {"llama2", "mistral", "chatml", "zephyr",
                                      "gemma",  "phi3",    "vicuna", "alpaca"};
    char path[256];
    char *src[8];
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "tests/data/templates/%s.jinja", published[i]);
        src[i] = read_text(path);
        expect_known(published[i], src[i], "<s>", "</s>");
    }

    /* the fixtures' real files, the way tokenizer_default reads them */
    static const char *real[][2] = {{"llama3", "fixtures/npm/tok-llama3/package/models"},
                                    {"qwen3", "fixtures/npm/tok-qwen3/package/models"}};
    for (int i = 0; i < 2; i++) {
        const ft_chat_template *t = NULL;
        char label[64];
        snprintf(label, sizeof label, "detect_%s_real_tokenizer_config", real[i][0]);
        ft_status st = ft_chat_template_resolve("tokenizer_default", real[i][1], &t);
        CHECK(label, !st && !strcmp(ft_chat_template_name(t), real[i][0]), "%s",
              st ? ft_error_message() : ft_chat_template_name(t));
    }

    /* Llama-3.1-style date header */
    const char *l31 =
        "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system_message = "
        "messages[0]['content'] | trim %}{%- set messages = messages[1:] %}{%- else %}{%- set "
        "system_message = '' %}{%- endif %}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' "
        "}}{{- 'Cutting Knowledge Date: December 2023\\n' }}{{- 'Today Date: ' + "
        "strftime_now('%d %b %Y') + '\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}{%- for "
        "message in messages %}{{- '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- "
        "if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' "
        "}}{%- endif %}";
    expect_unknown("detect_llama31_date_header_not_llama3", l31, "<|begin_of_text|>", "<|eot_id|>",
                   "llama3");

    /* Qwen2.5-style default system prompt */
    const char *q25 =
        "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen, created "
        "by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for "
        "message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
        "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- "
        "'<|im_start|>assistant\\n' }}{%- endif %}";
    expect_unknown("detect_qwen25_default_system_not_chatml", q25, "", "<|im_end|>", "chatml");

    /* Gemma without its BOS */
    if (src[4]) {
        const char *g = strstr(src[4], "{% if messages[0]");
        expect_unknown("detect_gemma_without_bos_not_gemma", g ? g : "", "<bos>", "<eos>", "gemma");
    }

    /* Llama-3 without trim */
    const char *l3raw =
        "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' %}{% if loop.index0 == 0 "
        "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
        "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% "
        "endif %}";
    expect_unknown("detect_llama3_without_trim_not_llama3", l3raw, "<|begin_of_text|>",
                   "<|end_of_text|>", "llama3");

    const ft_chat_template *t = NULL;
    /* the tolerated quirk is narrow: a template that appends the assistant header also without
     * add_generation_prompt is llama3; one that appends anything else there is not */
    const char *l3body =
        "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 "
        "== 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
        "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% "
        "else %}";
    char quirk[2048];
    snprintf(quirk, sizeof quirk,
             "%s{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%% endif %%}", l3body);
    t = NULL;
    ft_status st = ft_chat_template_detect(quirk, "<|begin_of_text|>", "<|end_of_text|>", &t);
    CHECK("detect_llama3_always_generation_prompt_is_llama3",
          !st && !strcmp(ft_chat_template_name(t), "llama3"), "%s",
          st ? ft_error_message() : ft_chat_template_name(t));
    snprintf(quirk, sizeof quirk,
             "%s{{ '<|start_header_id|>user<|end_header_id|>\\n\\n' }}{%% endif %%}", l3body);
    expect_unknown("detect_llama3_appending_user_header_not_llama3", quirk, "<|begin_of_text|>",
                   "<|end_of_text|>", "llama3");

    /* a template the interpreter cannot read: the error says so and lists the names */
    st = ft_chat_template_detect("{% for m in messages %}{{ m.content }", "", "", &t);
    CHECK("detect_unreadable_template",
          st == FT_ERR_UNSUPPORTED &&
              strstr(ft_error_message(), "cannot be read (template line 1:") &&
              strstr(ft_error_message(), "set chat_template: to one of llama3"),
          "%s", ft_error_message());

    /* no bos_token: undefined in the template, as transformers leaves it, so '+' raises */
    st = ft_chat_template_detect("{% for m in messages %}{{ bos_token + m.content }}{% endfor %}",
                                 "", "</s>", &t);
    CHECK("detect_missing_bos_is_undefined",
          st == FT_ERR_UNSUPPORTED && strstr(ft_error_message(), "every probe") &&
              strstr(ft_error_message(), "undefined"),
          "%s", st ? ft_error_message() : ft_chat_template_name(t));

    for (int i = 0; i < 8; i++)
        free(src[i]);
    return ft_test_failures ? 1 : 0;
}
