/*
 * Encode throughput of ftune's tokenizer, one thread: reads a JSON Lines corpus (one JSON string
 * per line, parsed before timing), encodes every line without special tokens `passes` times and
 * prints one JSON object: bytes, tokens, CPU seconds and MB/s of the first (cold word cache) pass
 * and of the best pass. CPU time, not wall time: the machine is shared and wall time is noise. usage: tokenizer_bench TOKENIZER_DIR CORPUS.jsonl [passes]
 * A lab tool for bench/tokenizer.sh, not a test.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftune/tokenizer.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tokenizer_bench TOKENIZER_DIR CORPUS.jsonl [passes]\n");
        return 2;
    }
    int passes = argc > 3 ? atoi(argv[3]) : 3;
    ft_tokenizer *tok;
    if (ft_tokenizer_load(&tok, argv[1])) {
        fprintf(stderr, "tokenizer_bench: %s\n", ft_error_message());
        return 1;
    }
    char *data;
    size_t n;
    if (ft_read_file(argv[2], &data, &n)) {
        fprintf(stderr, "tokenizer_bench: %s\n", ft_error_message());
        return 1;
    }
    size_t cap = 1024, cnt = 0, bytes = 0;
    char **lines = malloc(cap * sizeof *lines);
    for (char *p = data, *e; p < data + n; p = e + 1) {
        e = memchr(p, '\n', (size_t)(data + n - p));
        if (!e) e = data + n;
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(e - p));
        if (cJSON_IsString(j)) {
            if (cnt == cap) lines = realloc(lines, (cap *= 2) * sizeof *lines);
            lines[cnt++] = ft_strdup(j->valuestring);
            bytes += strlen(j->valuestring);
        }
        cJSON_Delete(j);
    }
    double first = 0, best = 1e30;
    long long tokens = 0;
    for (int pass = 0; pass < passes; pass++) {
        double t0 = cpu_s();
        tokens = 0;
        for (size_t i = 0; i < cnt; i++) {
            int *ids, m;
            if (ft_tokenizer_encode(tok, lines[i], strlen(lines[i]), 0, &ids, &m)) {
                fprintf(stderr, "tokenizer_bench: line %zu: %s\n", i + 1, ft_error_message());
                return 1;
            }
            tokens += m;
            free(ids);
        }
        double dt = cpu_s() - t0;
        if (pass == 0) first = dt;
        if (dt < best) best = dt;
    }
    printf("{\"impl\":\"ftune\",\"lines\":%zu,\"bytes\":%zu,\"tokens\":%lld,\"cold_s\":%.4f,\"best_s\":%.4f,"
           "\"cold_MBps\":%.2f,\"best_MBps\":%.2f}\n",
           cnt, bytes, tokens, first, best, bytes / first / 1e6, bytes / best / 1e6);
    for (size_t i = 0; i < cnt; i++) free(lines[i]);
    free(lines);
    free(data);
    ft_tokenizer_free(tok);
    return 0;
}
