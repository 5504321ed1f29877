/*
 * libFuzzer target for sharded folders: the input becomes model.safetensors.index.json in a
 * private temporary folder that also holds two valid shards (a.safetensors: x, y; b.safetensors:
 * z), then ft_st_open reads the folder: index JSON, shard names (no path may leave the folder),
 * the weight_map cross-check both ways. Any outcome but a status is a bug.
 */
#include "ftune/safetensors.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], index_path[300];

static void cleanup(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    unlink(p);
    unlink(index_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_st_index.XXXXXX", tmp);
    if (!mkdtemp(dir)) abort();
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    static const float v[6] = {1, 2, 3, 4, 5, 6};
    ft_st_write_tensor a[2] = {{"x", FT_DTYPE_F32, 1, {2}, v},
                               {"y", FT_DTYPE_F32, 2, {2, 1}, v + 2}};
    ft_st_write_tensor b[1] = {{"z", FT_DTYPE_F32, 1, {2}, v + 4}};
    char p[300];
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    if (ft_st_write(p, a, 2, NULL) != FT_OK) abort();
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    if (ft_st_write(p, b, 1, NULL) != FT_OK) abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = open(index_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    close(fd);
    ft_st_set set;
    if (ft_st_open(&set, dir) == FT_OK) {
        for (int i = 0; i < set.n_tensors; i++)
            if (!ft_st_find(&set, set.tensors[i].name)) abort();
    }
    ft_st_close(&set);
    return 0;
}
