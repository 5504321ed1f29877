/* Exhaustive checks of the f16/bf16 conversions against their definitions. */
#include "../test.h"
#include "ftune/core.h"

#include <string.h>

int main(void) {
    /* every f16 bit pattern survives f16 -> f32 -> f16 (NaNs stay NaN) */
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        float f = ft_f16_to_f32((uint16_t)h);
        uint16_t back = ft_f32_to_f16(f);
        if (f != f) {
            if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff)) bad++;
        } else if (back != h) bad++;
    }
    CHECK("f16_roundtrip_all_65536", bad == 0, "%d patterns changed", bad);
    bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        float f = ft_bf16_to_f32((uint16_t)h);
        uint16_t back = ft_f32_to_bf16(f);
        if (f == f && back != h) bad++;
    }
    CHECK("bf16_roundtrip_all_65536", bad == 0, "%d patterns changed", bad);
    /* round-to-nearest-even at the halfway point */
    CHECK("bf16_round_half_even", ft_f32_to_bf16(1.00390625f) == 0x3f80 &&
                                      ft_f32_to_bf16(1.01171875f) == 0x3f82,
          "got %04x %04x", ft_f32_to_bf16(1.00390625f), ft_f32_to_bf16(1.01171875f));
    CHECK("f16_overflow_inf", ft_f32_to_f16(70000.f) == 0x7c00 && ft_f32_to_f16(65504.f) == 0x7bff,
          "got %04x", ft_f32_to_f16(70000.f));
    CHECK("f16_subnormal", ft_f32_to_f16(5.9604644775390625e-8f) == 1 &&
                               ft_f16_to_f32(1) == 5.9604644775390625e-8f,
          "got %04x", ft_f32_to_f16(5.9604644775390625e-8f));
    ft_dtype t;
    CHECK("dtype_parse", ft_dtype_parse("BF16", &t) == 0 && t == FT_DTYPE_BF16 &&
                             ft_dtype_parse("Q4", &t) == -1, "parse mismatch");
    return ft_test_exit();
}
