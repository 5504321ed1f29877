/*
 * bf16 mixed-precision training tracks the exact f32 path: stories15M (the real pretrained
 * model) trained twice from the same weights on the same batches for STEPS = 200 optimizer steps,
 * once with ft_train_options.bf16 = 0 and once with 1: LoRA r 16, alpha 32 on all seven linear
 * projections. bf16 rounding reaches every base matmul (forward and input gradient on the packed
 * frozen weights, the tied 32000-row head), the f32 LoRA branch, norms, softmax and loss stay f32.
 * LoRA rather than full fine-tuning to keep the test cheap for everyone who runs the suite: full
 * FT's AdamW over 15M floats x 400 steps in the sanitizer build dominated its runtime (~10x);
 * the trained-weight repacking that full FT adds is tested in test_matmul_bf16 (refresh).
 *
 * Data: sequences sampled from a fixed Markov chain over a 256-token slice of the vocabulary
 * (each token has 4 successors with probabilities 0.4/0.3/0.2/0.1), a fresh sequence of T = 16
 * (+1) tokens per step (B = 1), the same sequence in both runs. The model starts near 12.7 nats on
 * it and learns the chain smoothly (no memorisation plateaus, whose exit time would differ between
 * any two runs), so the two curves can be compared step by step. 16 tokens per step keep 2 x 200
 * steps to a bounded runtime on 2 shared cores; the sequence length does not change which kernels
 * run.
 * Optimizer: AdamW's arithmetic (torch.optim.AdamW, lr 3e-4, betas 0.9/0.999, eps 1e-8, no
 * decay) on the flat trainable buffer, identical in both runs.
 *
 * What is checked (tolerances and why):
 *   - both curves fall below 80% of their first loss (a real training run: observed 68%);
 *   - the bf16 curve is not bit-identical to f32 (the bf16 path really ran);
 *   - mean over all steps of |l_bf16 - l_f32| / l_f32 <= 0.5%, and the mean loss of the last 20
 *     steps within 1% relative + 0.02 absolute. bf16 operands carry a relative rounding error of
 *     2^-8 (~0.4%) per product, but the errors have random signs and the LoRA weights, norms,
 *     softmax and loss stay f32, so the two runs differ like two summation orders that drift
 *     apart slowly — observed here (AMD EPYC, 2 threads): a mean relative gap of 0.05% and
 *     last-20 means 8.5697 vs 8.5685; 0.05-0.06% and 8.5694-8.5706 since attention's
 *     products take bf16 probabilities and gradients too (attention_flash_dp.c); 0.05% and
 *     8.5709 since its backward's delta reads the kept bf16 attention output. The bounds
 *     leave ~10x that for other CPUs and thread counts, while a wrong gradient term or layout
 *     makes the bf16 run stall or diverge by O(1) in loss, far outside them.
 * Without AVX512-BF16 (or FTUNE_NO_BF16=1) bf16 = 1 must fall back to the f32 path exactly:
 * the two curves are then checked to be bit-identical instead.
 */
#include "../test.h"

#include "ftune/core.h"
#include "ftune/kernels.h"
#include "ftune/model.h"
#include "ftune/train.h"

#include <math.h>
#include <string.h>

#define STEPS 200
#define SEQ 16
#define NV 256 /* vocabulary slice of the chain */

static void adamw(float *p, const float *g, float *m, float *v, size_t n, int64_t step) {
    const float lr = 3e-4f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}

/* Train a fresh copy of the model; losses[STEPS] = mean NLL of each step. 0 on success. */
static int run(const char *dir, int bf16, const int *seqs, double *losses) {
    ft_model m;
    if (ft_model_load(&m, dir)) {
        CHECK("load stories15M", 0, "%s (run make fixtures)", ft_error_message());
        return 1;
    }
    ft_train_options o;
    memset(&o, 0, sizeof o);
    o.method = FT_METHOD_LORA;
    o.lora.r = 16;
    o.lora.alpha = 32;
    o.lora.targets = FT_LORA_ALL_LINEAR;
    o.B = 1;
    o.T = SEQ;
    o.seed = 7;
    o.bf16 = bf16;
    ft_train_model *tm;
    if (ft_train_model_init(&tm, &m, &o)) {
        CHECK("train init", 0, "%s", ft_error_message());
        ft_model_free(&m);
        return 1;
    }
    size_t n;
    float *p = ft_train_params(tm, &n), *g = ft_train_grads(tm, NULL);
    float *mo = ft_calloc(n, 4), *ve = ft_calloc(n, 4);
    int rc = 0;
    for (int s = 0; s < STEPS && !rc; s++) {
        const int *seq = seqs + s * (SEQ + 1);
        double nll;
        int64_t nt;
        ft_train_zero_grad(tm);
        if (ft_train_micro_step(tm, seq, seq + 1, NULL, NULL, 1, SEQ, 1.0f / SEQ, &nll, &nt)) {
            CHECK("micro step", 0, "%s", ft_error_message());
            rc = 1;
            break;
        }
        adamw(p, g, mo, ve, n, s + 1);
        losses[s] = nll / (double)nt;
    }
    ft_free(mo), ft_free(ve);
    ft_train_model_free(tm);
    ft_model_free(&m);
    return rc;
}

int main(void) {
    const char *dir = "models/stories15M";
    static int seqs[STEPS * (SEQ + 1)];
    int succ[NV][4];
    uint64_t r = 0x5eed;
#define NEXT() (r = r * 6364136223846793005ull + 1442695040888963407ull, (int)(r >> 33))
    for (int i = 0; i < NV; i++)
        for (int j = 0; j < 4; j++) succ[i][j] = NEXT() % NV;
    for (int s = 0; s < STEPS; s++) {
        int tok = NEXT() % NV;
        for (int t = 0; t <= SEQ; t++) {
            seqs[s * (SEQ + 1) + t] = 1000 + tok;
            int u = NEXT() % 10; /* successor 0..3 with probability 4,3,2,1 in 10 */
            tok = succ[tok][u < 4 ? 0 : u < 7 ? 1 : u < 9 ? 2 : 3];
        }
    }
#undef NEXT
    static double l32[STEPS], l16[STEPS];
    double t0 = ft_time_s();
    if (run(dir, 0, seqs, l32) || run(dir, 1, seqs, l16)) return ft_test_exit();
    double mean_rel = 0, tail32 = 0, tail16 = 0;
    int identical = 1;
    for (int s = 0; s < STEPS; s++) {
        mean_rel += fabs(l16[s] - l32[s]) / l32[s] / STEPS;
        if (l16[s] != l32[s]) identical = 0;
        if (s >= STEPS - 20) tail32 += l32[s] / 20, tail16 += l16[s] / 20;
    }
    printf("bf16 vs f32 over %d steps (%.0f s): first %.4f / %.4f, last-20 mean %.4f / %.4f, "
           "mean relative gap %.4f\n",
           STEPS, ft_time_s() - t0, l16[0], l32[0], tail16, tail32, mean_rel);
    for (int s = 0; s < STEPS; s += 20) printf("  step %3d  f32 %.4f  bf16 %.4f\n", s, l32[s], l16[s]);
    CHECK("f32 run learns (last-20 mean < 80% of first loss)", tail32 < 0.8 * l32[0],
          "first %.4f last-20 mean %.4f", l32[0], tail32);
    CHECK("bf16 run learns (last-20 mean < 80% of first loss)", tail16 < 0.8 * l16[0],
          "first %.4f last-20 mean %.4f", l16[0], tail16);
    if (!ft_cpu_has_bf16()) {
        CHECK("no AVX512-BF16: bf16 option falls back to the exact f32 path", identical,
              "curves differ");
        return ft_test_exit();
    }
    CHECK("bf16 path ran (curve not bit-identical to f32)", !identical, "identical curves");
    CHECK("bf16 loss curve tracks f32: mean relative gap <= 0.5%", mean_rel <= 0.005,
          "mean relative gap %.4f", mean_rel);
    CHECK("bf16 final loss within 1% + 0.02 of f32", fabs(tail16 - tail32) <= 0.01 * tail32 + 0.02,
          "last-20 mean bf16 %.4f f32 %.4f", tail16, tail32);
    return ft_test_exit();
}
