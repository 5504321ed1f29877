/*
 * What the f32 and bf16 matmul files share about oneDNN: the status check (a oneDNN failure on
 * shapes we built ourselves is a programmer error, so it trips the always-on assert) and building
 * one matmul primitive from its memory descriptors.
 */
#ifndef FTUNE_DNNL_UTIL_H
#define FTUNE_DNNL_UTIL_H

#include "ftune/core.h"

#include <oneapi/dnnl/dnnl.h>

#define DNNL_CHECK(call)                                                                           \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) ft_assert_fail(#call, __FILE__, __LINE__);                        \
    } while (0)

/* Create the matmul primitive C [+]= A·B (+ bias) on `engine`. bias_md may be NULL; accumulate
 * adds a `sum` post-op (C += instead of C =). When *b_md has format `any`, it is replaced by the
 * layout oneDNN chose, so the caller can reorder weights into it once. */
dnnl_primitive_t ft_dnnl_matmul_create(dnnl_engine_t engine, const dnnl_memory_desc_t *a_md,
                                       dnnl_memory_desc_t *b_md, const dnnl_memory_desc_t *bias_md,
                                       const dnnl_memory_desc_t *c_md, int accumulate);

#endif
