/*
 * safetensors: read (mmap, zero copy, every length and offset checked against the file before use)
 * and write (temp file + rename). A "set" is one file or a sharded folder described by
 * model.safetensors.index.json; lookups are by tensor name across all shards.
 *
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[a,b]},
 * "__metadata__": {str: str}}, then the data block; offsets are relative to the data block.
 *
 * Rules enforced on read (as the reference implementation does): header <= 100 MB, a JSON object;
 * known dtype; non-negative integer dims (<= 8), numel * dtype size == end - begin; offsets inside
 * the data block; the tensors cover the data block exactly (no overlap, hole or trailing bytes);
 * unique names (also across shards); for an index, weight_map and the shards agree both ways.
 */
#ifndef FTUNE_SAFETENSORS_H
#define FTUNE_SAFETENSORS_H

#include "ftune/core.h"

#define FT_ST_MAX_DIMS 8

typedef struct {
    char *name;
    ft_dtype dtype;
    int ndim;
    int64_t shape[FT_ST_MAX_DIMS];
    const void *data; /* into the mmap; may be unaligned for its dtype */
    size_t nbytes;
    int file;         /* index of the shard it lives in */
} ft_st_tensor;

typedef struct {
    int n_files;
    char **paths;     /* (n_files) */
    void **maps;      /* (n_files) mmap base addresses; NULL after ft_st_parse (caller's bytes) */
    size_t *map_sizes;
    int n_tensors;
    ft_st_tensor *tensors; /* sorted by name */
} ft_st_set;

/* Open `path`: a .safetensors file, or a folder holding model.safetensors or
 * model.safetensors.index.json (+ shards). On failure the error names the file and the problem
 * (header length past EOF, overlapping offsets, unknown dtype, ...) and *set is left empty. */
ft_status ft_st_open(ft_st_set *set, const char *path);
/* Parse a whole file held in memory (the fuzzer uses it). `buf` is the whole file; tensor data
 * points into it, so it must outlive the set. `label` names it in errors. */
ft_status ft_st_parse(ft_st_set *set, const char *label, const void *buf, size_t len);
void ft_st_close(ft_st_set *set); /* NULL-safe, idempotent */
/* Binary search by exact name; NULL if absent. */
const ft_st_tensor *ft_st_find(const ft_st_set *set, const char *name);

typedef struct {
    const char *name;
    ft_dtype dtype;
    int ndim;
    int64_t shape[FT_ST_MAX_DIMS];
    const void *data; /* nbytes = numel * dtype size */
} ft_st_write_tensor;

/* Write tensors (in the given order; the header lists them sorted as HF does) to `path`
 * atomically. `metadata` is an optional NULL-terminated list of key, value, key, value... */
ft_status ft_st_write(const char *path, const ft_st_write_tensor *tensors, int n,
                      const char *const *metadata);

#endif
