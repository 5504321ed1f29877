/*
 * libFuzzer target for the instruction-data reader (src/data/instruct.c): the bytes are read as a
 * JSON Lines file or a JSON array in every format, with and without skip_invalid; each record that
 * parses is rendered by every chat template and tokenized with a byte-level toy encoder, so ASan
 * sees the renderer and the segment->token mapping too. Bad input must come back as an ft_status,
 * never a crash, leak or UB.
 */
#include "ftune/instruct.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ft_status byte_encode(void *ctx, const char *s, size_t n, int add_special, int **ids,
                           int *nout) {
    (void)ctx, (void)add_special;
    int *v = malloc(sizeof(int) * (n + 1));
    if (!v) return FT_ERR_NOMEM;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        /* merge "\n\n" so that some tokens straddle segment borders */
        if (s[i] == '\n' && i + 1 < n && s[i + 1] == '\n') v[k++] = 256, i++;
        else v[k++] = (unsigned char)s[i];
    }
    *ids = v;
    *nout = k;
    return FT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *types[] = {"alpaca", "sharegpt", "chat_template", "dolly",
                                  "flan",   "completion", "preference"};
    if (size < 1) return 0;
    const char *type = types[data[0] % 7];
    int skip = (data[0] >> 3) & 1;
    ft_dataset_format f = {.type = type, .skip_invalid = skip};
    if ((data[0] >> 4) & 1) {
        f.field_instruction = "q";
        f.field_output = "a";
        f.field_messages = "m";
        f.message_field_role = "r";
        f.message_field_content = "c";
    }
    ft_records r = {0};
    if (ft_records_parse(&r, (const char *)data + 1, size - 1, "fuzz.jsonl", &f) == FT_OK) {
        const char *const *names = ft_chat_template_names();
        for (int t = 0; names[t]; t++) {
            const ft_chat_template *tpl;
            if (ft_chat_template_get(names[t], &tpl)) abort();
            ft_sft_options o = {.tpl = tpl, .bos = "<s>", .eos = "</s>", .eos_id = 2,
                                .train_on_inputs = t & 1, .T = 64,
                                .truncation = (ft_truncation)(t % 3), .enc = byte_encode};
            ft_sft_dataset ds;
            if (ft_sft_dataset_build(&ds, &r, &o, 0.25, 1) == FT_OK) {
                int64_t *rs = NULL, nr = 0;
                if (ft_sft_pack(&ds, ds.train, ds.n_train, 64, 1, &rs, &nr) == FT_OK) {
                    int in[64], lab[64], pos[64], seg[64];
                    for (int64_t i = 0; i < nr; i++)
                        ft_sft_row(&ds, ds.train + rs[i], (int)(rs[i + 1] - rs[i]), 64, 0, in,
                                   lab, pos, seg);
                    free(rs);
                }
                ft_sft_dataset_free(&ds);
            }
            for (size_t i = 0; i < r.n && i < 4; i++) {
                if (r.recs[i].kind != FT_REC_CHAT) continue;
                ft_rendered rd = {0};
                int n = r.recs[i].n_msgs;
                if (r.recs[i].msgs[n - 1].role == FT_ROLE_ASSISTANT) n--;
                if (n > 0) ft_chat_render(tpl, r.recs[i].msgs, n, 1, "<s>", "</s>", &rd);
                ft_rendered_free(&rd);
            }
        }
    }
    ft_records_free(&r);
    return 0;
}
