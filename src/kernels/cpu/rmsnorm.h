/*
 * Shared between rmsnorm.c and fused_bf16.c (not public): the RMSNorm weight gradient as a share
 * of a parallel region, so a backward that makes dinp too runs both in one region.
 */
#ifndef FTUNE_KERNELS_CPU_RMSNORM_H
#define FTUNE_KERNELS_CPU_RMSNORM_H

/* dweight (C) += sum over rows m of dout[m][c] inp[m][c] rstd[m], each channel's sum in double in
 * row order: the calling thread's share of the 16-channel groups (an orphaned omp for without a
 * barrier; outside a parallel region, all of them). */
void rmsnorm_dweight_part(float *dweight, const float *dout, const float *inp, const float *rstd,
                          int M, int C);

#endif
