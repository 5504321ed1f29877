/* OpenMP grain size shared by the CPU kernels (internal). A parallel region costs a fork/join and,
 * on a busy machine, a wait for the slowest thread to be scheduled; below about this many
 * elementary operations one thread is faster. PyTorch uses the same threshold (at::internal::
 * GRAIN_SIZE = 32768). Loops say `#pragma omp parallel for if (work >= FT_OMP_GRAIN)`. */
#ifndef FTUNE_KERNELS_CPU_GRAIN_H
#define FTUNE_KERNELS_CPU_GRAIN_H
#define FT_OMP_GRAIN 32768
#endif
