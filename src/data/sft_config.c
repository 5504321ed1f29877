/*
 * The instruction-data view of a training config: which datasets, formats and column mappings,
 * the chat template, train_on_inputs, truncation, shuffling. Shared by `ftune train` and
 * `ftune preview` so that what is previewed is what is trained.
 */
#include "ftune/instruct.h"
#include "ftune/trainer.h"

#include <stdlib.h>
#include <string.h>

int ft_train_config_is_sft(const ft_train_config *c) {
    if (c->sample_packing || c->chat_template) return 1;
    for (int i = 0; i < c->n_datasets; i++)
        if (strcmp(c->datasets[i].type, "text")) return 1;
    return 0;
}

ft_status ft_train_config_sft(const ft_train_config *c, ft_sft_config *out, ft_sft_source **src) {
    ft_sft_source *s = calloc((size_t)(c->n_datasets ? c->n_datasets : 1), sizeof *s);
    if (!s) return ft_errorf(FT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_datasets; i++) {
        const ft_dataset_spec *d = &c->datasets[i];
        s[i].path = d->path;
        s[i].fmt = (ft_dataset_format){.type = d->type,
                                       .field_system = d->field_system,
                                       .field_instruction = d->field_instruction,
                                       .field_input = d->field_input,
                                       .field_output = d->field_output,
                                       .field_messages = d->field_messages,
                                       .message_field_role = d->message_field_role,
                                       .message_field_content = d->message_field_content,
                                       .field = d->field,
                                       .field_prompt = d->field_prompt,
                                       .field_chosen = d->field_chosen,
                                       .field_rejected = d->field_rejected,
                                       .skip_invalid = d->skip_invalid};
    }
    *out = (ft_sft_config){.src = s,
                           .n_src = c->n_datasets,
                           .chat_template = c->chat_template,
                           .tokenizer_dir = c->base_model,
                           .train_on_inputs = c->train_on_inputs,
                           .truncation = (ft_truncation)c->truncation,
                           .T = c->sequence_len,
                           .val_size = c->val_set_size,
                           .shuffle = c->shuffle_merged_datasets,
                           .seed = c->seed};
    *src = s;
    return FT_OK;
}
