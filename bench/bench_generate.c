/*
 * Inference benchmark of ftune (a lab, not a test): prompt processing and generation tokens/s.
 *   bench_generate MODEL_DIR [PROMPT_LEN=128] [GEN_LEN=128] [REPS=3]
 * Prompt: one batched ft_model_forward over PROMPT_LEN ids (last logits only, as generate needs).
 * Generation: GEN_LEN greedy steps of one token through the KV cache after that prompt.
 * Reports the best of REPS runs of each (the machine is shared; the best run is the least disturbed).
 * Output: one line "ftune prompt_tok_s <x> gen_tok_s <y> ids <first 16 generated ids>" that
 * bench/run.sh parses (the ids let it check that both sides computed the same thing).
 */
#include "ftune/model.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_generate MODEL_DIR [PROMPT_LEN] [GEN_LEN] [REPS]\n");
        return 2;
    }
    int P = argc > 2 ? atoi(argv[2]) : 128, G = argc > 3 ? atoi(argv[3]) : 128;
    int R = argc > 4 ? atoi(argv[4]) : 3;
    ft_model m;
    if (ft_model_load(&m, argv[1])) {
        fprintf(stderr, "bench_generate: %s\n", ft_error_message());
        return 1;
    }
    const int V = m.cfg.vocab_size;
    int *ids = malloc((size_t)P * sizeof(int));
    for (int i = 0; i < P; i++) ids[i] = i == 0 ? 1 : (int)((i * 7919L) % (V - 3)) + 3;
    float *logits = malloc((size_t)V * sizeof(float));
    ft_kv_cache kc;
    if (ft_kv_cache_init(&kc, &m.cfg, P + G)) {
        fprintf(stderr, "bench_generate: %s\n", ft_error_message());
        return 1;
    }
    double best_p = 1e30, best_g = 1e30;
    int gen[16], n_gen = 0;
    for (int r = 0; r < R; r++) {
        double t0 = ft_time_s();
        if (ft_model_forward(&m, &kc, ids, P, 0, logits, 0)) return 1;
        double t1 = ft_time_s();
        for (int i = 0; i < G; i++) {
            int id = 0;
            for (int v = 1; v < V; v++)
                if (logits[v] > logits[id]) id = v;
            if (r == 0 && n_gen < 16) gen[n_gen++] = id;
            if (ft_model_forward(&m, &kc, &id, 1, P + i, logits, 0)) return 1;
        }
        double t2 = ft_time_s();
        if (t1 - t0 < best_p) best_p = t1 - t0;
        if (t2 - t1 < best_g) best_g = t2 - t1;
    }
    printf("ftune prompt_tok_s %.1f gen_tok_s %.1f ids ", P / best_p, G / best_g);
    for (int i = 0; i < n_gen; i++) printf(i ? ",%d" : "%d", gen[i]);
    printf("\n");
    ft_kv_cache_free(&kc);
    free(logits);
    free(ids);
    ft_model_free(&m);
    return 0;
}
