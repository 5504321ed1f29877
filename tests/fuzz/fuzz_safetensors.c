/*
 * libFuzzer target for the parsers of untrusted model files: the same bytes go to the safetensors
 * parser (ft_st_parse: header length, JSON header, offsets) and to the config.json parser
 * (ft_config_parse). When a config parses, its weight layout and RoPE table are built too, and
 * when a safetensors file parses, every tensor's bytes are read, so ASan sees any bad pointer.
 * Bad input must come back as an ft_status, never a crash, leak or UB.
 */
#include "ftune/model.h"
#include "ftune/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ft_st_set set;
    if (ft_st_parse(&set, "fuzz.safetensors", data, size) == FT_OK) {
        volatile unsigned char sink = 0;
        for (int i = 0; i < set.n_tensors; i++) {
            const unsigned char *p = set.tensors[i].data;
            if (set.tensors[i].nbytes) sink ^= p[0] ^ p[set.tensors[i].nbytes - 1];
        }
        (void)sink;
        (void)ft_st_find(&set, "model.embed_tokens.weight");
    }
    ft_st_close(&set);

    ft_config cfg;
    if (ft_config_parse(&cfg, "fuzz.json", (const char *)data, size) == FT_OK) {
        char *json = NULL;
        if (ft_config_to_json(&cfg, &json) == FT_OK) free(json);
        if (cfg.head_dim <= 4096) {
            float inv[2048];
            ft_rope_inv_freq(&cfg, inv);
        }
        if ((int64_t)cfg.n_layers * 24 < 100000) {
            ft_tensor_info *ts = NULL;
            int n = 0;
            size_t total = 0;
            if (ft_weights_layout(&cfg, &ts, &n, &total) == FT_OK) free(ts);
        }
    }
    return 0;
}
