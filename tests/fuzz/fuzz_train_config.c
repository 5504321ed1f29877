/* libFuzzer target: the training config parser (YAML via libyaml, key table, --set overrides). Any
 * input must give FT_OK or an error message, never a crash, leak or UB; a config that parses must
 * also survive the cross-key checks. */
#include "ftune/trainer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ft_train_config c;
    ft_train_config_defaults(&c);
    ft_status st = ft_train_config_apply_yaml(&c, "fuzz.yaml", (const char *)data, size);
    if (st == FT_OK) ft_train_config_finish(&c);
    /* the same bytes as one --set assignment (NUL-terminated copy, first line only) */
    char buf[512];
    size_t n = size < sizeof buf - 1 ? size : sizeof buf - 1;
    memcpy(buf, data, n);
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    ft_train_config_set(&c, buf);
    ft_train_config_free(&c);
    return 0;
}
