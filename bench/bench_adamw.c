/*
 * AdamW lab: the optimizer's element-wise update (ft_adamw_update: p, m, v read and written, g
 * read; 28 bytes an element) over N elements too large for the caches, against
 *   stream   a pass with the same loads and stores and no arithmetic to speak of (p += g,
 *            m += g, v += g): what the memory moves for this access pattern, the update's floor
 *   naive    the update in double, one element at a time, for the check
 * The update is checked against the naive twin (relative 1e-5: f32 against double over one
 * step's few operations). Prints time, GB/s and the update's share of the stream pass's rate.
 * Default N: one SmolLM-135M decoder layer's weights x 8 (28.3 M, 0.8 GB over the four arrays).
 *   bench_adamw [REPS=5 [N]]
 */
#include "lab.h"

#include "ftune/optim.h"

#include <string.h>

static void stream_pass(float *p, const float *g, float *m, float *v, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        p[i] += gi;
        m[i] += gi;
        v[i] += gi;
    }
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    size_t n = argc > 2 ? (size_t)atoll(argv[2]) : (size_t)8 * 3538944;
    const ft_adamw_hparams h = {0.9, 0.999, 1e-8, 0.01};
    const double lr = 1e-3;
    const int64_t step = 3;
    float *p = lab_rand(n, 1), *g = lab_rand(n, 0.01f), *m = lab_rand(n, 0.001f);
    float *v = lab_rand(n, 1e-5f);
    for (size_t i = 0; i < n; i++)
        v[i] = v[i] * v[i]; /* second moments are non-negative */
    printf("adamw lab: %d threads, N %zu (%.2f GB over p, g, m, v)\n", omp_get_max_threads(), n,
           16.0 * n / 1e9);

    /* check on a prefix: naive in double */
    const size_t nc = n < 100000 ? n : 100000;
    float *pc = ft_calloc(nc, 4), *mc = ft_calloc(nc, 4), *vc = ft_calloc(nc, 4);
    float *pr = ft_calloc(nc, 4), *mr = ft_calloc(nc, 4), *vr = ft_calloc(nc, 4);
    memcpy(pc, p, nc * 4), memcpy(mc, m, nc * 4), memcpy(vc, v, nc * 4);
    ft_adamw_update(pc, g, mc, vc, nc, &h, step, lr, 1);
    const double bc1 = 1.0 - pow(h.beta1, (double)step), bc2 = 1.0 - pow(h.beta2, (double)step);
    for (size_t i = 0; i < nc; i++) {
        double pi = p[i] * (1.0 - lr * h.weight_decay), gi = g[i];
        double mi = h.beta1 * m[i] + (1.0 - h.beta1) * gi;
        double vi = h.beta2 * v[i] + (1.0 - h.beta2) * gi * gi;
        pi -= lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + h.eps);
        pr[i] = (float)pi, mr[i] = (float)mi, vr[i] = (float)vi;
    }
    lab_check("update p vs naive", pc, pr, nc, 1e-6, 1e-5);
    lab_check("update m vs naive", mc, mr, nc, 1e-9, 1e-5);
    lab_check("update v vs naive", vc, vr, nc, 1e-30, 1e-5);

    double t, gb = 28.0 * n / 1e9;
    LAB_TIME(t, reps, stream_pass(p, g, m, v, n));
    const double ts = t;
    printf("  %-8s %8.2f ms %6.1f GB/s\n", "stream", t * 1e3, gb / t);
    LAB_TIME(t, reps, ft_adamw_update(p, g, m, v, n, &h, step, lr, 1));
    printf("  %-8s %8.2f ms %6.1f GB/s  %.0f%% of the stream pass's rate\n", "update", t * 1e3,
           gb / t, 100 * ts / t);
    ft_free(p), ft_free(g), ft_free(m), ft_free(v), ft_free(pc), ft_free(mc), ft_free(vc);
    ft_free(pr), ft_free(mr), ft_free(vr);
    return lab_failures ? 1 : 0;
}
