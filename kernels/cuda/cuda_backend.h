/*
 * cuda_backend.h: the few CUDA-backend entry points that are not in the
 * backend-neutral op interface (kernels/ops.h). C-compatible: the GPU tests
 * (tests/gpu, plain C) and the NCCL communicator include it.
 *
 * Nothing in a model or layer may call these: they exist for integration
 * (stream ordering with NCCL) and for cross-checking kernels in tests.
 */
#ifndef BATON_CUDA_BACKEND_H
#define BATON_CUDA_BACKEND_H

#include <stddef.h>

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backend's compute stream (a cudaStream_t, returned as void * so that
 * C callers need no CUDA header). Every op of this backend is queued on it
 * in call order; a communicator that enqueues on it is ordered with them. */
void *bt_cuda_stream(bt_backend *be);

/* 1 if the GEMMs convert their operands to bf16 (BATON_CUDA_GEMM=bf16 at
 * create time), 0 for pure fp32 GEMMs (the default). */
int bt_cuda_gemm_bf16(bt_backend *be);

/* Simple reference attention (materialised scores, one thread block per
 * query row), kept to cross-check the flash kernels in tests/gpu. Same
 * tensor layouts as bt_op_attention_fwd/bwd; lse[B*NH*T] receives the
 * per-row log-sum-exp exactly like the flash forward's `att` output, so
 * the two forwards' saved states are comparable and interchangeable.
 * The backward needs bt_cuda_attention_ref_scratch_size() floats of
 * scratch (2*B*NH*T*T: P and dS materialised). Slow; tests only. */
void bt_cuda_attention_ref_fwd(bt_backend *be, float *out, float *lse,
                               const float *qkv, int B, int T, int C, int NH);
size_t bt_cuda_attention_ref_scratch_size(int B, int T, int NH);
void bt_cuda_attention_ref_bwd(bt_backend *be, float *dqkv, float *scratch,
                               const float *dout, const float *qkv,
                               const float *lse, int B, int T, int C, int NH);

#ifdef __cplusplus
}
#endif

#endif /* BATON_CUDA_BACKEND_H */
