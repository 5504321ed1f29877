/*
 * libFuzzer target for the Jinja interpreter (src/data/jinja.c): the bytes are a chat template,
 * parsed and rendered against a fixed conversation (system/user/assistant, bos/eos,
 * add_generation_prompt, a tools list); one input in eight also goes through tokenizer_default's
 * recognition by rendering (ft_chat_template_detect). Untrusted templates must give FT_OK or a
 * one-line error, never a crash, leak, UB, hang or unbounded memory.
 */
#include "ftune/instruct.h"
#include "ftune/jinja.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ctx_json[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
    "\"content\": \" Hi {{ x }} \\u00e9\\n\"}, {\"role\": \"assistant\", \"content\": "
    "\"<think>\\nr\\n</think>\\n\\nok\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
    "\"arguments\": {\"a\": 1}}}]}, {\"role\": \"user\", \"content\": \"\"}], \"bos_token\": "
    "\"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true, \"tools\": [{\"type\": "
    "\"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *ctx;
    if (!ctx) ctx = cJSON_Parse(ctx_json);
    ft_jinja *t = NULL;
    if (ft_jinja_parse((const char *)data, size, &t) == FT_OK) {
        char *out = NULL;
        size_t len = 0;
        if (ft_jinja_render(t, ctx, 1721952000, &out, &len) == FT_OK && strlen(out) > len) abort();
        free(out);
    }
    ft_jinja_free(t);
    if (size && data[0] % 8 == 0 && !memchr(data, 0, size)) {
        char *src = malloc(size + 1);
        if (!src) return 0;
        memcpy(src, data, size);
        src[size] = 0;
        const ft_chat_template *tpl = NULL;
        ft_chat_template_detect(src, "<s>", "</s>", &tpl);
        free(src);
    }
    return 0;
}
