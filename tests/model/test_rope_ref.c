/*
 * ft_rope_inv_freq against PyTorch (tests/ref/gen_rope.py transcribes HF's default and llama3 rope
 * parameter functions in float32 torch ops). Tolerance: |diff| <= 2^-23 * |ref| (1 ulp relative),
 * because torch's vectorised pow (Sleef, documented 1.0-ulp) and our once-rounded exact power may
 * differ in the last bit; everything after the power is the same float32 op sequence.
 * Missing reference output is a FAIL, not a skip.
 */
#include "../test.h"
#include "ftune/model.h"
#include "ftune/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *ref = getenv("FT_REF");
    char path[1024];
    snprintf(path, sizeof path, "%s/rope/inv_freq.safetensors", ref ? ref : "build/ref");
    ft_st_set set;
    if (ft_st_open(&set, path) != FT_OK) {
        printf("FAIL rope_reference_present: %s (run tests/ref/gen_rope.py)\n", ft_error_message());
        return 1;
    }
    for (int i = 0; i < set.n_tensors; i++) {
        const ft_st_tensor *t = &set.tensors[i];
        char cpath[1024], name[160];
        snprintf(cpath, sizeof cpath, "%s/rope/%s.json", ref ? ref : "build/ref", t->name);
        snprintf(name, sizeof name, "rope_inv_freq_%s", t->name);
        char *text = NULL;
        size_t len = 0;
        ft_config c;
        ft_status st = ft_read_file(cpath, &text, &len);
        if (st == FT_OK) st = ft_config_parse(&c, cpath, text, len);
        free(text);
        if (st != FT_OK || t->dtype != FT_DTYPE_F32 || t->ndim != 1 ||
            t->shape[0] != c.head_dim / 2) {
            CHECK(name, 0, "bad reference case: %s", ft_error_message());
            continue;
        }
        size_t n = (size_t)t->shape[0];
        float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
        memcpy(want, t->data, n * sizeof *want);
        ft_rope_inv_freq(&c, got);
        check_close(name, got, want, n, 0.0, 1.1920929e-07);
        free(got);
        free(want);
    }
    ft_st_close(&set);
    return ft_test_exit();
}
