/*
 * The machine's measured peaks on all OpenMP threads (see lab.h): f32 FMA and AVX512-BF16
 * dot-product throughput. Prints one line "peak GFLOP/s: f32 X bf16 Y" (bf16 0 without
 * AVX512-BF16) that bench/train.sh parses.
 */
#include "lab.h"

int main(void) {
    printf("peak GFLOP/s: f32 %.0f bf16 %.0f\n", lab_peak_f32(), lab_peak_bf16());
    return 0;
}
