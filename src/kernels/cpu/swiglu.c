/*
 * SwiGLU gate of the Llama MLP: out = silu(gate) * up, silu(g) = g * sigmoid(g) = g / (1 + e^-g)
 * (torch computes silu as x / (1 + exp(-x)) in f32; so do we). Elementwise, OpenMP over elements.
 */
#include "ftune/kernels.h"

#include "grain.h"

#include <math.h>

void swiglu_forward(float *out, const float *gate, const float *up, size_t N) {
#pragma omp parallel for schedule(static) if (N >= FT_OMP_GRAIN)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/*
 * Backward. With s = sigmoid(g), silu(g) = g s and d silu/dg = s + g s (1 - s) = s (1 + g (1 - s)):
 *   dup   = dout * silu(g)
 *   dgate = dout * up * s (1 + g (1 - s))
 * Both are WRITTEN (each is the only consumer of its gradient). Either may be NULL.
 */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t N) {
#pragma omp parallel for schedule(static) if (N >= FT_OMP_GRAIN)
    for (size_t i = 0; i < N; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + expf(-g));
        if (dup) dup[i] = dout[i] * (g * s);
        if (dgate) dgate[i] = dout[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
    }
}
