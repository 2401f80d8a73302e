/*
 * cuda_common.h: private state and helpers shared by the files of the CUDA
 * backend (compiled as CUDA C++ by nvcc; nothing outside kernels/cuda
 * includes this file).
 *
 *   cuda_backend.cu    lifetime, memory, scratch, the function table
 *   cuda_gemm.cu       matmul fwd/bwd (cuBLASLt), bias fwd/bwd, column sums
 *   cuda_ops.cu        embedding, layernorm, GELU, residual, cross-entropy,
 *                      AdamW, sumsq, scale, to_act
 *   cuda_attention.cu  flash attention fwd/bwd, the one-query decode step,
 *                      and the reference kernels
 *   cuda_fused.cu      residual + layernorm, cross-entropy loss and
 *                      gradient in place (the fused ops)
 *
 * Invariants every op of this backend keeps:
 *   1. Stream order. Every kernel, cuBLASLt call and async copy goes on the
 *      backend's one compute stream (cu->stream), so ops run in call order
 *      and any scratch can be reused by the next op without a sync.
 *   2. Determinism. No floating-point atomics anywhere. Every reduction has
 *      a decomposition that depends only on the problem shape (never on
 *      timing or on the number of SMs), and a fixed combination order.
 *      cuBLASLt is deterministic run to run on one GPU model with one
 *      toolkit version (we use one handle on one stream).
 *   3. No allocation in steady state. Scratch (bt_cuda_scratch) grows on
 *      first use of a larger shape and is then reused; a training loop with
 *      fixed shapes allocates only during its first step.
 *   4. Fatal API errors inside ops print the failing call, the CUDA /
 *      cuBLAS error string, file:line, rank and host, and abort (ops return
 *      void, and a failed kernel leaves the context unusable anyway).
 *      Failures in create and mem_alloc are expected errors: bt_err_set +
 *      NULL.
 */
#ifndef BATON_CUDA_COMMON_H
#define BATON_CUDA_COMMON_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "base/util.h"
#include "kernels/backend_impl.h"
#include "kernels/cuda/cuda_backend.h"
}

/* One remembered cuBLASLt heuristic answer (cuda_gemm.cu). The key holds
 * everything the heuristic sees: shapes, transposes, leading dimensions,
 * operand type, the requested epilogue (eEpi, a cublasLtEpilogue_t: BIAS,
 * DEFAULT, GELU_AUX or GELU_AUX_BIAS) and the pointer alignments (alAux:
 * the GELU_AUX pre-activation buffer, 0 without it). */
typedef struct bt_cuda_lt_key {
  int m, n, k, opA, opB, lda, ldb, ldd, bBf16, bD16, bBias, eEpi;
  uint32_t alA, alB, alD, alBias, alAux;
} bt_cuda_lt_key;
typedef struct bt_cuda_lt_entry {
  bt_cuda_lt_key key;
  int bFound;                   /* 0: cuBLASLt has no algorithm (cached) */
  int bFused;                   /* bias fused in the epilogue */
  cublasLtMatmulAlgo_t algo;
} bt_cuda_lt_entry;
#define BT_CUDA_LT_CACHE 64

/* Pinned staging buffers of bt_backend_upload_async, used in turn: a
 * micro-step uploads its tokens and targets, so 4 let the host run two
 * micro-steps ahead before it waits for a copy. */
#define BT_CUDA_UPLOAD_SLOTS 4
/* Destination buffers whose readers bt_backend_upload_release can record
 * (the model's two token, two target or two input buffers: 4 used). A
 * release past that is dropped, and the upload then waits for all compute
 * work queued before it: slower, never wrong. */
#define BT_CUDA_UPLOAD_DSTS 8

/* Private state behind bt_backend.pImpl. */
typedef struct bt_cuda {
  int device;
  cudaStream_t stream;          /* the one compute stream (invariant 1) */
  cublasLtHandle_t lt;          /* used only on `stream` */
  void *pWorkspace;             /* cuBLASLt workspace */
  size_t nWorkspace;            /* bytes (BT_CUDA_LT_WORKSPACE) */
  int bGemmBf16;                /* BATON_CUDA_GEMM=bf16 */
  int bSyncCheck;               /* BATON_CUDA_SYNC=1: sync after each launch */
  int bGeluEpi;                 /* BATON_CUDA_GELU_EPILOGUE=1: matmul_gelu_fwd
                                   tries cuBLASLt's GELU_AUX(_BIAS) epilogue */
  int bWarnedBf16;              /* warned once about a bf16 -> fp32 fallback */
  int bWarnedFallback;          /* warned once about the fallback GEMM kernel */
  void *pScratch;               /* general scratch, grown lazily */
  size_t nScratch;              /* bytes */
  int32_t *pIdx;                /* device scratch of the embedding backward:
                                   its 64-bit sort keys */
  size_t nIdx;                  /* int32 elements (2 per key) */
  double *pSumsqPart;           /* device: BT_CUDA_SUMSQ_BLOCKS + 1 doubles */
  double *pHostSumsq;           /* pinned host double for the result */
  void *pCudnn;                 /* cudnnHandle_t, created by the first conv1d
                                   (cuda_speech.cu), NULL until then */
  /* bt_backend_upload_async: created by the first upload. */
  cudaStream_t copyStream;      /* non-blocking; H2D copies only */
  cudaEvent_t evCompute;        /* the compute work a copy waits for */
  struct {
    void *p;                    /* pinned staging (cudaMallocHost) */
    size_t n;                   /* its bytes */
    cudaEvent_t ev;             /* the last copy out of it */
    int bUsed;                  /* ev has been recorded */
  } aUp[BT_CUDA_UPLOAD_SLOTS];
  int iUp;                      /* next staging slot */
  struct {
    const void *p;              /* destination buffer, NULL = free entry */
    cudaEvent_t ev;             /* on `stream`, after its last reader */
    int bValid;                 /* released since its last upload */
  } aRel[BT_CUDA_UPLOAD_DSTS];
  bt_cuda_lt_entry aLt[BT_CUDA_LT_CACHE]; /* heuristic answers, */
  int nLt;                      /*   entries in use */
  int iLtNext;                  /*   next slot to replace when full */
} bt_cuda;

#define BT_CUDA_LT_WORKSPACE ((size_t)32 << 20)
/* sumsq's first pass always uses this many blocks (invariant 2: the
 * decomposition must not depend on the device). */
#define BT_CUDA_SUMSQ_BLOCKS 512
#define BT_CUDA_SUMSQ_THREADS 256

static inline bt_cuda *bt_cuda_of(bt_backend *be) {
  return (bt_cuda *)be->pImpl;
}

/* ---- error checks (invariant 4) ---------------------------------------- */

void bt_cuda_fatal(const char *zCall, const char *zErr, const char *zFile,
                   int line) __attribute__((noreturn));

#define BT_CUDA_CHECK(call)                                                    \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess)                                                     \
      bt_cuda_fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__);        \
  } while (0)

#define BT_CUBLAS_CHECK(call)                                                  \
  do {                                                                         \
    cublasStatus_t s_ = (call);                                                \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                           \
      bt_cuda_fatal(#call, cublasLtGetStatusString(s_), __FILE__, __LINE__);   \
  } while (0)

/* After every kernel launch: catches bad launch configurations at once;
 * with BATON_CUDA_SYNC=1 also waits for the kernel so that an illegal
 * address is reported at the op that caused it, not at a later sync. */
#define BT_CUDA_LAUNCHED(cu)                                                   \
  do {                                                                         \
    BT_CUDA_CHECK(cudaGetLastError());                                         \
    if ((cu)->bSyncCheck) BT_CUDA_CHECK(cudaStreamSynchronize((cu)->stream));  \
  } while (0)

/* ---- launch geometry --------------------------------------------------- */

/* Blocks for a grid-stride loop over n elements. Element-wise kernels give
 * the same bits for any grid, so the cap only bounds launch size. */
static inline unsigned bt_cuda_grid(size_t n, unsigned nThread) {
  size_t g = (n + nThread - 1) / nThread;
  if (g < 1) g = 1;
  if (g > (1u << 20)) g = 1u << 20;
  return (unsigned)g;
}

/* ---- scratch (invariant 3) --------------------------------------------- */

/* Returns device scratch of at least nByte bytes (256-byte aligned). Grows
 * the buffer when needed: waits for the stream (queued kernels may still
 * read the old buffer), frees it, allocates the larger one. Its contents
 * are undefined; each op owns all of it from call to return. */
void *bt_cuda_scratch(bt_cuda *cu, size_t nByte);

/* ---- shared device helpers --------------------------------------------- */

/* Butterfly (xor) warp reductions: every lane ends with the same, bitwise
 * identical value, because each step adds a pair in both lanes and float
 * addition is commutative (a+b == b+a exactly). */
__device__ __forceinline__ float bt_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float bt_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double bt_warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread
 * gets the result. sh must hold 32 floats. Fixed order: warps reduce by
 * butterfly, then warp 0 reduces the per-warp sums by butterfly. The
 * trailing barrier lets the caller reuse sh immediately. */
__device__ __forceinline__ float bt_block_sum(float v, float *sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nWarp = blockDim.x >> 5;
  v = bt_warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float t = (lane < nWarp) ? sh[lane] : 0.0f;
  t = bt_warp_sum(t);
  __syncthreads();
  return t;
}
__device__ __forceinline__ float bt_block_max(float v, float *sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nWarp = blockDim.x >> 5;
  v = bt_warp_max(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float t = (lane < nWarp) ? sh[lane] : -INFINITY;
  t = bt_warp_max(t);
  __syncthreads();
  return t;
}

/* ---- activation storage: [act] arguments (kernels/ops.def) ------------- */

/* The backend stores every [act] tensor in one dtype, fixed when the model
 * is built (be->eActDtype): float, or __nv_bfloat16 in train.precision =
 * bf16. The op table's pointers are typed float * either way; a kernel that
 * touches an [act] argument is a template over its storage type T (float or
 * __nv_bfloat16, one instantiation each) and reads and writes it only
 * through bt_ld / bt_st, so that all arithmetic is fp32 and a bf16 store
 * rounds to nearest even exactly like the CPU reference (base/bf16.h).
 * The host wrapper picks the instantiation with BT_CUDA_ACT. fp32
 * arguments (parameter gradients, statistics, losses) stay float *.
 *
 * Convention for extraction into the CPU emulator (tests/gpu/emu/
 * extract.py): `template <typename T>` on its own line, directly above the
 * line that starts with __global__ or __device__. */
__device__ __forceinline__ float bt_ld(const float *p) { return *p; }
__device__ __forceinline__ float bt_ld(const __nv_bfloat16 *p) {
  return __bfloat162float(*p);
}
__device__ __forceinline__ void bt_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void bt_st(__nv_bfloat16 *p, float v) {
  *p = __float2bfloat16_rn(v);
}

/* Runs the statements with `act_t` naming the backend's [act] storage type:
 *   BT_CUDA_ACT(be, bt_k_gelu_fwd<act_t><<<g, 256, 0, s>>>(
 *                       (act_t *)out, (const act_t *)inp, n));
 * Both branches compile, so every kernel exists in both dtypes. */
#define BT_CUDA_ACT(be, ...)                                                   \
  do {                                                                         \
    if ((be)->eActDtype == BT_ACT_BF16) {                                      \
      typedef __nv_bfloat16 act_t;                                             \
      __VA_ARGS__;                                                             \
    } else {                                                                   \
      typedef float act_t;                                                     \
      __VA_ARGS__;                                                             \
    }                                                                          \
  } while (0)

/* First line of a wrapper whose kernels are fp32 only so far (conv1d, CTC,
 * masked attention: the speech model refuses train.precision = bf16, so a
 * bf16 call is a bug, caught here rather than read as garbage). */
#define BT_CUDA_F32_ONLY(be)                                                   \
  BT_ASSERT((be)->eActDtype == BT_ACT_F32 &&                                   \
            "fp32 [act] storage only: this op has no bf16 kernel yet")

/* ---- 16-byte vector access (issue 12 item 3) -------------------------- */

/* Element-wise kernels move BT_VEC = 8 elements per thread and step where
 * every pointer they touch is 16-byte aligned: two float4 in fp32, one
 * uint4 holding 8 bf16 in bf16 (one 16-byte transaction per thread instead
 * of eight 2-byte ones). Per element the arithmetic is the scalar loop's,
 * so the vector path gives the same bits; the n % 8 tail, and views at an
 * unaligned offset (the trainer's flat buffers), take the scalar path.
 * The host wrapper decides (bt_cuda_al16) and passes the kernel the number
 * of 8-element groups to do vectorised, nVec (0: all scalar). */
#define BT_VEC 8
__device__ __forceinline__ void bt_unpack2(uint32_t u, float *v) {
  v[0] = __uint_as_float(u << 16); /* bf16 -> fp32 is exact: the top half */
  v[1] = __uint_as_float(u & 0xffff0000u);
}
__device__ __forceinline__ uint32_t bt_pack2(float a, float b) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
         ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}
__device__ __forceinline__ void bt_ld8(const float *p, float *v) {
  const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void bt_ld8(const __nv_bfloat16 *p, float *v) {
  const uint4 q = *(const uint4 *)p;
  bt_unpack2(q.x, v), bt_unpack2(q.y, v + 2);
  bt_unpack2(q.z, v + 4), bt_unpack2(q.w, v + 6);
}
__device__ __forceinline__ void bt_st8(float *p, const float *v) {
  ((float4 *)p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  ((float4 *)p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void bt_st8(__nv_bfloat16 *p, const float *v) {
  *(uint4 *)p = make_uint4(bt_pack2(v[0], v[1]), bt_pack2(v[2], v[3]),
                           bt_pack2(v[4], v[5]), bt_pack2(v[6], v[7]));
}

/* 1 if p is NULL or 16-byte aligned (host side: may the vector path be
 * used for this pointer?). */
static inline int bt_cuda_al16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

/* Row max M and S = sum_v exp(x[v] - M) over the first V columns. Each
 * thread keeps an online (max, sum) pair over its strided columns, the
 * pairs are combined with a block max then a block sum of rescaled sums.
 * NaN logits propagate into S. Every thread returns the same M and S, and
 * every thread has finished reading x when this returns (the reductions
 * end in barriers), which is what lets the backward overwrite x. Used by the
 * cross-entropy kernels of cuda_ops.cu and cuda_fused.cu. */
template <typename T>
__device__ void bt_xent_row_stats(const T *x, int V, float *sh, float *pM,
                                  float *pS) {
  float m = -INFINITY, s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float xv = bt_ld(x + v);
    if (xv > m) {
      s = s * expf(m - xv) + 1.0f; /* first value: s = 0 * 0 + 1 */
      m = xv;
    } else if (!(xv == -INFINITY)) {
      s += expf(xv - m); /* a NaN xv lands here and poisons s */
    }
  }
  const float M = bt_block_max(m, sh);
  /* s == 0 means "no finite values" (m may be -inf): contributes 0. */
  const float sScaled = (s == 0.0f) ? 0.0f : s * expf(m - M);
  *pS = bt_block_sum(sScaled, sh);
  *pM = M;
}

/* ---- functions shared between the backend's files ---------------------- */

/* bt_cuda_<name> for every op of kernels/ops.def, with its signature
 * (C++ linkage: only this backend's table refers to them):
 *   cuda_gemm.cu       matmul_fwd/bwd, bias_fwd/bwd
 *   cuda_ops.cu        embed, layernorm, gelu, residual, xent, adamw,
 *                      sumsq, scale
 *   cuda_attention.cu  attention_fwd/bwd/att_size/scratch_size/decode,
 *                      attention_masked_fwd/bwd
 *   cuda_speech.cu     conv1d (cuDNN), ctc_loss
 *   cuda_fused.cu      residual_layernorm_fwd, xent_fwd_bwd
 *   cuda_step.cu       sumsq_acc, loss_sum_acc, clip_grads (issue 12)
 * (tests/gpu/emu/extract.py leaves this op-list macro out of the
 * emulator's copy.) */
#define BT_OP_RET(ret, name, params, args) ret bt_cuda_##name params;
#include "kernels/ops.def"

/* cuda_attention.cu */
/* Called once by create: raises the dynamic shared-memory limit of the
 * attention kernels (their tiles need up to ~66 KB at head size 128).
 * Returns cudaSuccess or the failing call's error. */
cudaError_t bt_cuda_attention_init(void);
/* Called by destroy: frees cuDNN attention's handles, graphs and
 * workspaces (cudnn_attention.h) when the last backend goes. */
void bt_cuda_attention_release(void);

/* cuda_speech.cu: releases the cuDNN handle (state free calls it). */
void bt_cuda_speech_free(bt_cuda *cu);

#endif /* BATON_CUDA_COMMON_H */
