/*
 * cuda_step.cu: the step-statistics ops on the GPU (kernels/ops.def:
 * sumsq_acc, loss_sum_acc, clip_grads; issue 12 item 4). They write their
 * results to device memory, so a training step queues its loss, gradient
 * norm and clipping without the host waiting; the trainer reads the step's
 * statistics back once, after the update is queued (trainer/train.c).
 *
 * Invariants (cuda_common.h's, restated for these kernels):
 *   1. Deterministic: no atomics; every sum has a fixed shape that depends
 *      on n only (sumsq_acc: BT_CUDA_SUMSQ_BLOCKS blocks of
 *      BT_CUDA_SUMSQ_THREADS, then one block in a fixed tree, as sumsq;
 *      loss_sum_acc: one block of STEP_LOSS_THREADS, strided, fixed tree).
 *   2. Everything on the backend's one compute stream; the partial sums of
 *      sumsq_acc reuse sumsq's device buffer (pSumsqPart), which stream
 *      order makes safe.
 *   3. clip_grads reads the norm from device memory in every thread; when
 *      it does not clip, no element is written.
 * Own file so that the kernels of cuda_ops.cu can change storage type
 * (bf16, another part of issue 12) without touching these fp32 ones.
 */
#include "kernels/cuda/cuda_common.h"

#define STEP_LOSS_THREADS 256

/* Pass 1 of sumsq_acc: sumsq's first pass (cuda_ops.cu) in this file. */
__global__ void bt_k_sumsq_acc_part(double *part, const float *x, size_t n) {
  __shared__ double sh[BT_CUDA_SUMSQ_THREADS];
  double acc = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const double v = (double)x[i];
    acc += v * v;
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = BT_CUDA_SUMSQ_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

/* Pass 2: one block of BT_CUDA_SUMSQ_BLOCKS threads, fixed tree, added to
 * acc[0] by thread 0. */
__global__ void bt_k_sumsq_acc_final(double *acc, const double *part) {
  __shared__ double sh[BT_CUDA_SUMSQ_BLOCKS];
  sh[threadIdx.x] = part[threadIdx.x];
  __syncthreads();
  for (int s = BT_CUDA_SUMSQ_BLOCKS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) acc[0] += sh[0];
}

void bt_cuda_sumsq_acc(bt_backend *be, double *acc, const float *x,
                       size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  bt_k_sumsq_acc_part<<<BT_CUDA_SUMSQ_BLOCKS, BT_CUDA_SUMSQ_THREADS, 0,
                        cu->stream>>>(cu->pSumsqPart, x, n);
  BT_CUDA_LAUNCHED(cu);
  bt_k_sumsq_acc_final<<<1, BT_CUDA_SUMSQ_BLOCKS, 0, cu->stream>>>(
      acc, cu->pSumsqPart);
  BT_CUDA_LAUNCHED(cu);
}

/* One block: a micro-batch has thousands of rows, one block's strided sum
 * costs microseconds and keeps the order fixed without a second pass. */
__global__ void bt_k_loss_sum_acc(double *acc, const float *losses,
                                  const int32_t *targets, size_t n) {
  __shared__ double sh[STEP_LOSS_THREADS];
  double s = 0.0;
  for (size_t i = threadIdx.x; i < n; i += STEP_LOSS_THREADS)
    if (targets[i] >= 0) s += (double)losses[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int k = STEP_LOSS_THREADS / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) acc[0] += sh[0];
}

void bt_cuda_loss_sum_acc(bt_backend *be, double *acc, const float *losses,
                          const int32_t *targets, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  bt_k_loss_sum_acc<<<1, STEP_LOSS_THREADS, 0, cu->stream>>>(acc, losses,
                                                             targets, n);
  BT_CUDA_LAUNCHED(cu);
}

/* Invariant 3. The factor is formed in double and rounded to float, and
 * the product is a float product: AdamW's g * grad_scale, bit for bit. */
__global__ void bt_k_clip_grads(float *x, size_t n, const double *sumsq,
                                double clip) {
  const double norm = sqrt(sumsq[0]);
  if (!(clip > 0 && norm > clip)) return;
  const float s = (float)(clip / norm);
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    x[i] *= s;
}

void bt_cuda_clip_grads(bt_backend *be, float *x, size_t n,
                        const double *sumsq, double clip) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0 || !(clip > 0)) return;
  bt_k_clip_grads<<<bt_cuda_grid(n, 256), 256, 0, cu->stream>>>(x, n, sumsq,
                                                                clip);
  BT_CUDA_LAUNCHED(cu);
}
