/* oneDNN helpers shared by matmul.c (f32) and matmul_bf16.c (bf16): see dnnl_util.h. */
#include "dnnl_util.h"

dnnl_primitive_t ft_dnnl_matmul_create(dnnl_engine_t engine, const dnnl_memory_desc_t *a_md,
                                       dnnl_memory_desc_t *b_md, const dnnl_memory_desc_t *bias_md,
                                       const dnnl_memory_desc_t *c_md, int accumulate) {
    int b_any = b_md->format_kind == dnnl_format_kind_any;
    dnnl_matmul_desc_t desc;
    DNNL_CHECK(dnnl_matmul_desc_init(&desc, a_md, b_md, bias_md, c_md));
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    if (accumulate) {
        DNNL_CHECK(dnnl_primitive_attr_create(&attr));
        DNNL_CHECK(dnnl_post_ops_create(&ops));
        DNNL_CHECK(dnnl_post_ops_append_sum(ops, 1.0f));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    if (b_any) *b_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_t prim;
    DNNL_CHECK(dnnl_primitive_create(&prim, pd));
    dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return prim;
}
