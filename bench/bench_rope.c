/*
 * RoPE lab at the training shapes (B*T = 1024 rows; stories15M: H 6, KV 6, D 48; SmolLM-135M:
 * H 9, KV 3, D 64), the bf16 step's q/k/v pass forward and backward, variants:
 *   angles       rope_forward / rope_backward on f32 copies of q and k (cos/sin per row, double)
 *   table        rope_forward_cs / rope_backward_cs (the step's cos/sin table), then
 *                bf16_from_f32 of q, k and v (two passes: what the step did before the fused
 *                pass)
 *   fused        rope_round_qkv_bf16 (rotate and round in one pass over q|k|v rows as the fused
 *                q/k/v product leaves them)
 * The fused pass is checked bit for bit against the angles form followed by bf16_from_f32 (its
 * contract; lab_check with tolerance 0 on the widened values), forward and backward. Prints time
 * and effective bandwidth (f32 q|k|v read, bf16 written: 6 bytes an element).
 *   bench_rope [REPS=20]
 */
#include "lab.h"

#include "ftune/kernels.h"

#include <string.h>

static void run(const char *name, int H, int KV, int D, int reps) {
    const int M = 1024, HD = H * D, KVD = KV * D, W = HD + 2 * KVD;
    const size_t nw = (size_t)M * W, nq = (size_t)M * HD, nk = (size_t)M * KVD;
    float *x = lab_rand(nw, 1), *q = ft_calloc(nq, 4), *k = ft_calloc(nk, 4);
    float *v = ft_calloc(nk, 4), *cs = ft_calloc((size_t)M * D, 4);
    float *inv_freq = ft_calloc((size_t)D / 2, 4), *got = ft_calloc(nw, 4), *ref = ft_calloc(nw, 4);
    uint16_t *qb = ft_calloc(nq, 2), *kb = ft_calloc(nk, 2), *vb = ft_calloc(nk, 2);
    uint16_t *rb = ft_calloc(nw, 2);
    int *pos = ft_calloc((size_t)M, sizeof(int));
    for (int m = 0; m < M; m++)
        pos[m] = m % 256;
    for (int i = 0; i < D / 2; i++)
        inv_freq[i] = (float)pow(10000.0, -2.0 * i / D);
    rope_cos_sin(cs, pos, inv_freq, M, D);
    printf(" %s: M %d, H %d, KV %d, D %d\n", name, M, H, KV, D);
    /* q, k, v: column windows of the fused product's rows (M, W) */
    const float *xq = x, *xk = x + HD, *xv = x + HD + KVD;
    for (int back = 0; back < 2; back++) {
        for (int64_t m = 0; m < M; m++) {
            memcpy(q + m * HD, xq + m * W, (size_t)HD * 4);
            memcpy(k + m * KVD, xk + m * W, (size_t)KVD * 4);
            memcpy(v + m * KVD, xv + m * W, (size_t)KVD * 4);
        }
        (back ? rope_backward : rope_forward)(q, pos, inv_freq, M, H, D);
        (back ? rope_backward : rope_forward)(k, pos, inv_freq, M, KV, D);
        bf16_from_f32(rb, q, nq);
        bf16_from_f32(rb + nq, k, nk);
        bf16_from_f32(rb + nq + nk, v, nk);
        bf16_to_f32(ref, rb, nw);
        rope_round_qkv_bf16(qb, kb, vb, 0, xq, xk, xv, W, cs, M, H, KV, D, back);
        bf16_to_f32(got, qb, nq);
        bf16_to_f32(got + nq, kb, nk);
        bf16_to_f32(got + nq + nk, vb, nk);
        lab_check(back ? "fused backward == angles + convert" : "fused forward == angles + convert",
                  got, ref, nw, 0, 0);
    }
    double t, mb = (double)nw / 1e6;
    for (int back = 0; back < 2; back++) {
        const char *dir = back ? "backward" : "forward";
        LAB_TIME(
            t, reps, do {
                (back ? rope_backward : rope_forward)(q, pos, inv_freq, M, H, D);
                (back ? rope_backward : rope_forward)(k, pos, inv_freq, M, KV, D);
            } while (0));
        printf("  %-8s %-7s %8.3f ms (q, k only, f32 in place)\n", dir, "angles", t * 1e3);
        LAB_TIME(
            t, reps, do {
                (back ? rope_backward_cs : rope_forward_cs)(q, cs, M, H, D);
                (back ? rope_backward_cs : rope_forward_cs)(k, cs, M, KV, D);
                bf16_from_f32(qb, q, nq);
                bf16_from_f32(kb, k, nk);
                bf16_from_f32(vb, v, nk);
            } while (0));
        double t2 = t;
        printf("  %-8s %-7s %8.3f ms %6.1f GB/s\n", dir, "table", t * 1e3, 6 * mb / t / 1e3);
        LAB_TIME(t, reps, rope_round_qkv_bf16(qb, kb, vb, 0, xq, xk, xv, W, cs, M, H, KV, D, back));
        printf("  %-8s %-7s %8.3f ms %6.1f GB/s  %.2fx table\n", dir, "fused", t * 1e3,
               6 * mb / t / 1e3, t2 / t);
    }
    ft_free(x), ft_free(q), ft_free(k), ft_free(v), ft_free(cs), ft_free(inv_freq), ft_free(got);
    ft_free(ref), ft_free(qb), ft_free(kb), ft_free(vb), ft_free(rb), ft_free(pos);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    printf("rope lab: %d threads\n", omp_get_max_threads());
    run("stories15M", 6, 6, 48, reps);
    run("SmolLM-135M", 9, 3, 64, reps);
    return lab_failures ? 1 : 0;
}
