/*
 * cuda_gemm.cu: matmul forward/backward through cuBLASLt, the standalone
 * bias ops, and the deterministic column sum that computes every bias
 * gradient.
 *
 * Row-major in a column-major library. cuBLASLt is column-major; a
 * row-major [R, K] matrix is, byte for byte, the column-major K x R matrix
 * with leading dimension K (its transpose). So each row-major product
 * Y = X W is computed as the column-major product Y^T = W^T X^T with the
 * stored buffers as they are; the per-op comments below derive each case.
 *
 * Precision (docs/gpu.md):
 *   fp32 (default): A, B, C, D all CUDA_R_32F, compute CUBLAS_COMPUTE_32F.
 *     That is true IEEE fp32 FMA: TF32 tensor cores are used only with
 *     CUBLAS_COMPUTE_32F_FAST_TF32, which we never request, and we set no
 *     emulation descriptor.
 *   bf16 (BATON_CUDA_GEMM=bf16): A and B are rounded (nearest-even) to bf16
 *     into scratch just before the call; accumulation, C, D and the bias
 *     stay fp32 (CUBLAS_COMPUTE_32F with bf16 inputs = tensor cores with
 *     fp32 accumulate).
 *
 * Bias: fused with CUBLASLT_EPILOGUE_BIAS when the heuristic offers an
 * algorithm for it; otherwise a plain GEMM followed by a bias kernel. The
 * bias gradient is always our column-sum kernel (two passes, fixed order),
 * not the BGRADB epilogue, so that it is deterministic and identical for
 * both weight layouts and both precisions.
 */
#include "cuda_common.h"

#include <cuda_bf16.h>

#include <string.h>

/* ---- small kernels ----------------------------------------------------- */

__global__ void bt_k_to_bf16(__nv_bfloat16 *y, const float *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]); /* round to nearest even */
}

/* D (column-major m x n, leading dimension ldd) += bias[row]: the fallback
 * when no fused-bias algorithm exists. */
__global__ void bt_k_add_bias_cm(float *d, const float *bias, int m, int n,
                                 int ldd) {
  size_t total = (size_t)m * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t col = i / (size_t)m, row = i % (size_t)m;
    d[col * (size_t)ldd + row] += bias[row];
  }
}

/* out[N, C] = inp + bias[c]; out may alias inp (read, then write, same
 * element, same thread). */
__global__ void bt_k_bias_fwd(float *out, const float *inp, const float *bias,
                              size_t total, int C) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = inp[i] + bias[i % (size_t)C];
}

__global__ void bt_k_add_inplace(float *y, const float *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    y[i] += x[i];
}

/* Column sums of x[N, C] (row-major), pass 1: block (32, 8) owns 32
 * columns of one chunk of BT_CS_ROWS rows. Thread (tx, ty) sums rows
 * r0+ty, r0+ty+8, ... in order; the 8 partial sums of a column are then
 * added in ty order. part[chunk, c] receives the chunk's sum. The
 * decomposition depends only on (N, C): deterministic (invariant 2). */
#define BT_CS_ROWS 256
__global__ void bt_k_colsum_part(float *part, const float *x, int N, int C) {
  __shared__ float sh[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * 32 + tx;
  const int chunk = blockIdx.y;
  const int r0 = chunk * BT_CS_ROWS;
  const int r1 = min(N, r0 + BT_CS_ROWS);
  float acc = 0.0f;
  if (c < C)
    for (int r = r0 + ty; r < r1; r += 8) acc += x[(size_t)r * C + c];
  sh[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < C) {
    float s = 0.0f;
    for (int i = 0; i < 8; i++) s += sh[i][tx];
    part[(size_t)chunk * C + c] = s;
  }
}

/* Pass 2: out[c] += sum over chunks, in chunk order. */
__global__ void bt_k_colsum_final(float *out, const float *part, int nChunk,
                                  int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int k = 0; k < nChunk; k++) s += part[(size_t)k * C + c];
  out[c] += s;
}

/* out[c] += sum_n x[n, c], deterministic. Uses scratch. */
static void cuda_colsum_acc(bt_cuda *cu, float *out, const float *x, int N,
                            int C) {
  if (N <= 0 || C <= 0) return;
  const int nChunk = (N + BT_CS_ROWS - 1) / BT_CS_ROWS;
  BT_ASSERT(nChunk <= 65535); /* gridDim.y limit: N <= 16.7M rows */
  float *part = (float *)bt_cuda_scratch(cu, (size_t)nChunk * C * sizeof(float));
  dim3 grid((unsigned)((C + 31) / 32), (unsigned)nChunk);
  bt_k_colsum_part<<<grid, dim3(32, 8), 0, cu->stream>>>(part, x, N, C);
  BT_CUDA_LAUNCHED(cu);
  bt_k_colsum_final<<<(C + 255) / 256, 256, 0, cu->stream>>>(out, part, nChunk,
                                                             C);
  BT_CUDA_LAUNCHED(cu);
}

/* ---- the GEMM wrapper -------------------------------------------------- */

/* Column-major D = op(A) op(B) + beta D (+ bias[row] if bias), D m x n with
 * leading dimension ldd. A is stored as (opA == N ? m x k : k x m) with
 * leading dimension lda, B as (opB == N ? k x n : n x k) with ldb; both
 * contiguous (lda, ldb equal to the stored row count). */
typedef struct gemm_call {
  cublasOperation_t opA, opB;
  int m, n, k;
  const float *A;
  int lda;
  const float *B;
  int ldb;
  float *D;
  int ldd;
  float beta;
  const float *bias; /* length m, or NULL */
} gemm_call;

/* Largest power of two (<= 256) that divides the address: tells the
 * heuristic what alignment it may assume. The trainer passes views at any
 * float offset into its flat buffers, while the heuristic's default
 * assumption is 256-byte alignment. */
static uint32_t ptr_align(const void *p) {
  uintptr_t a = (uintptr_t)p;
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

/* Returns 1 and fills *pHeur if cuBLASLt offers an algorithm. */
static int lt_pick(bt_cuda *cu, cublasLtMatmulDesc_t desc,
                   cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                   cublasLtMatrixLayout_t ld, const void *A, const void *B,
                   const void *D, cublasLtMatmulHeuristicResult_t *pHeur) {
  cublasLtMatmulPreference_t pref;
  int nFound = 0;
  uint32_t alA = ptr_align(A), alB = ptr_align(B), alD = ptr_align(D);
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &cu->nWorkspace,
      sizeof cu->nWorkspace));
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alA, sizeof alA));
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alB, sizeof alB));
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alD, sizeof alD));
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alD, sizeof alD));
  /* NOT_SUPPORTED and "0 results" both mean: no algorithm for this
   * combination (typically the fused bias); the caller falls back. */
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(cu->lt, desc, la, lb, ld,
                                                    ld, pref, 1, pHeur,
                                                    &nFound);
  BT_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) return 0;
  BT_CUBLAS_CHECK(s);
  return nFound > 0 && pHeur->state == CUBLAS_STATUS_SUCCESS;
}

/* The heuristic costs tens of microseconds of host time per call, and a
 * training step repeats the same few GEMM shapes, so its answers are kept
 * per key (replaced round-robin when the table is full). The heuristic is
 * deterministic, so caching does not change which algorithm runs. */
static const bt_cuda_lt_entry *lt_cache_find(const bt_cuda *cu,
                                             const bt_cuda_lt_key *key) {
  for (int i = 0; i < cu->nLt; i++)
    if (memcmp(&cu->aLt[i].key, key, sizeof *key) == 0) return &cu->aLt[i];
  return NULL;
}

static void lt_cache_put(bt_cuda *cu, const bt_cuda_lt_key *key, int bFused,
                         const cublasLtMatmulAlgo_t *algo) {
  bt_cuda_lt_entry *e;
  if (cu->nLt < BT_CUDA_LT_CACHE) {
    e = &cu->aLt[cu->nLt++];
  } else {
    e = &cu->aLt[cu->iLtNext];
    cu->iLtNext = (cu->iLtNext + 1) % BT_CUDA_LT_CACHE;
  }
  e->key = *key;
  e->bFused = bFused;
  e->algo = *algo;
}

static void cuda_gemm(bt_cuda *cu, const gemm_call *g) {
  if (g->m <= 0 || g->n <= 0) return;
  const size_t aRows = g->opA == CUBLAS_OP_N ? g->m : g->k;
  const size_t aCols = g->opA == CUBLAS_OP_N ? g->k : g->m;
  const size_t bRows = g->opB == CUBLAS_OP_N ? g->k : g->n;
  const size_t bCols = g->opB == CUBLAS_OP_N ? g->n : g->k;
  BT_ASSERT((size_t)g->lda == aRows && (size_t)g->ldb == bRows);
  const void *A = g->A, *B = g->B;
  cudaDataType_t abType = CUDA_R_32F;

  if (g->k <= 0) {
    /* Empty sum: D = beta D (+ bias). Only reachable with N = 0 rows in a
     * backward (dW over zero samples): nothing to add. */
    BT_ASSERT(g->beta == 1.0f && g->bias == NULL);
    return;
  }

  if (cu->bGemmBf16) {
    /* Both operands in one scratch request (invariant 3), B at a 256-byte
     * boundary after A. */
    const size_t nA = aRows * aCols, nB = bRows * bCols;
    const size_t offB = (nA * sizeof(__nv_bfloat16) + 255) & ~(size_t)255;
    char *s = (char *)bt_cuda_scratch(cu, offB + nB * sizeof(__nv_bfloat16));
    __nv_bfloat16 *A16 = (__nv_bfloat16 *)s;
    __nv_bfloat16 *B16 = (__nv_bfloat16 *)(s + offB);
    bt_k_to_bf16<<<bt_cuda_grid(nA, 256), 256, 0, cu->stream>>>(A16, g->A, nA);
    BT_CUDA_LAUNCHED(cu);
    bt_k_to_bf16<<<bt_cuda_grid(nB, 256), 256, 0, cu->stream>>>(B16, g->B, nB);
    BT_CUDA_LAUNCHED(cu);
    A = A16;
    B = B16;
    abType = CUDA_R_16BF;
  }

  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, ld;
  BT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_TRANSA, &g->opA, sizeof g->opA));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_TRANSB, &g->opB, sizeof g->opB));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, abType, aRows, aCols, g->lda));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, abType, bRows, bCols, g->ldb));
  BT_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, g->m, g->n, g->ldd));

  if (g->bias) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias));
  }
  bt_cuda_lt_key key;
  memset(&key, 0, sizeof key); /* padding too: keys are compared bytewise */
  key.m = g->m;
  key.n = g->n;
  key.k = g->k;
  key.opA = (int)g->opA;
  key.opB = (int)g->opB;
  key.lda = g->lda;
  key.ldb = g->ldb;
  key.ldd = g->ldd;
  key.bBf16 = cu->bGemmBf16;
  key.bBias = g->bias != NULL;
  key.alA = ptr_align(A);
  key.alB = ptr_align(B);
  key.alD = ptr_align(g->D);
  key.alBias = g->bias ? ptr_align(g->bias) : 0;

  int bFusedBias = 0;
  cublasLtMatmulAlgo_t algo;
  const bt_cuda_lt_entry *hit = lt_cache_find(cu, &key);
  if (hit) {
    bFusedBias = hit->bFused;
    algo = hit->algo;
  } else {
    cublasLtMatmulHeuristicResult_t heur;
    if (g->bias) bFusedBias = lt_pick(cu, desc, la, lb, ld, A, B, g->D, &heur);
    if (!bFusedBias) {
      if (g->bias) {
        /* Fallback: plain GEMM, then bt_k_add_bias_cm. */
        cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
        BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &none, sizeof none));
      }
      if (!lt_pick(cu, desc, la, lb, ld, A, B, g->D, &heur)) {
        bt_log_error("CUDA backend: cuBLASLt offers no algorithm for "
                     "m=%d n=%d k=%d opA=%d opB=%d (%s)",
                     g->m, g->n, g->k, (int)g->opA, (int)g->opB,
                     cu->bGemmBf16 ? "bf16" : "fp32");
        bt_cuda_fatal("cublasLtMatmulAlgoGetHeuristic", "no algorithm",
                      __FILE__, __LINE__);
      }
    }
    algo = heur.algo;
    lt_cache_put(cu, &key, bFusedBias, &algo);
  }
  if (g->bias && !bFusedBias) {
    /* The cached answer says "not fused": same fallback. */
    cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
    BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &none, sizeof none));
  }

  const float alpha = 1.0f;
  BT_CUBLAS_CHECK(cublasLtMatmul(cu->lt, desc, &alpha, A, la, B, lb, &g->beta,
                                 g->D, ld, g->D, ld, &algo,
                                 cu->pWorkspace, cu->nWorkspace, cu->stream));
  if (cu->bSyncCheck) BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ld));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
  BT_CUBLAS_CHECK(cublasLtMatmulDescDestroy(desc));

  if (g->bias && !bFusedBias) {
    size_t total = (size_t)g->m * g->n;
    bt_k_add_bias_cm<<<bt_cuda_grid(total, 256), 256, 0, cu->stream>>>(
        g->D, g->bias, g->m, g->n, g->ldd);
    BT_CUDA_LAUNCHED(cu);
  }
}

/* ---- ops ----------------------------------------------------------------- */

/* out[N,OC] = inp[N,C] Wm (+ bias), Wm = W (IN_OUT) or W^T (OUT_IN).
 * Column-major: out^T (OC x N) = Wm^T (OC x C) * inp^T (C x N).
 *   inp row-major [N,C]   = column-major C x N, ld C  -> B, op N
 *   W IN_OUT  [C,OC]      = column-major OC x C, ld OC = Wm^T -> A, op N
 *   W OUT_IN  [OC,C]      = column-major C x OC, ld C = Wm    -> A, op T
 * The bias (length OC = m) is per row of the column-major D: exactly the
 * CUBLASLT_EPILOGUE_BIAS broadcast. */
void bt_cuda_matmul_fwd(bt_backend *be, float *out, const float *inp,
                        const float *w, const float *bias, int N, int C,
                        int OC, bt_wlayout eLayout) {
  bt_cuda *cu = bt_cuda_of(be);
  gemm_call g;
  g.m = OC;
  g.n = N;
  g.k = C;
  g.A = w;
  if (eLayout == BT_W_IN_OUT) {
    g.opA = CUBLAS_OP_N;
    g.lda = OC;
  } else {
    g.opA = CUBLAS_OP_T;
    g.lda = C;
  }
  g.opB = CUBLAS_OP_N;
  g.B = inp;
  g.ldb = C;
  g.D = out;
  g.ldd = OC;
  g.beta = 0.0f;
  g.bias = bias;
  if (C == 0) {
    /* out = bias (or 0): no product to compute. */
    BT_CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)N * OC * sizeof(float),
                                  cu->stream));
    if (bias) bt_cuda_bias_fwd(be, out, out, bias, N, OC);
    return;
  }
  cuda_gemm(cu, &g);
}

/* dinp[N,C] += dout[N,OC] Wm^T; column-major dinp^T (C x N) =
 *   Wm (C x OC) * dout^T (OC x N):
 *   IN_OUT: W stored column-major OC x C (= Wm^T), ld OC -> A, op T
 *   OUT_IN: W stored column-major C x OC (= Wm),   ld C  -> A, op N
 *   dout row-major [N,OC] = column-major OC x N, ld OC   -> B, op N
 * dW += inp^T dout in W's own layout:
 *   IN_OUT dW [C,OC] = column-major OC x C: dW^T = dout^T (OC x N) inp (N x C)
 *     A = dout (stored OC x N, op N), B = inp (stored C x N, op T)
 *   OUT_IN dW [OC,C] = column-major C x OC: = inp^T (C x N) dout (N x OC)
 *     A = inp (stored C x N, op N), B = dout (stored OC x N, op T)
 * beta = 1 gives the accumulate contract of ops.h. */
void bt_cuda_matmul_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                        const float *dout, const float *inp, const float *w,
                        int N, int C, int OC, bt_wlayout eLayout) {
  bt_cuda *cu = bt_cuda_of(be);
  if (dinp && OC > 0) {
    gemm_call g;
    g.m = C;
    g.n = N;
    g.k = OC;
    g.A = w;
    if (eLayout == BT_W_IN_OUT) {
      g.opA = CUBLAS_OP_T;
      g.lda = OC;
    } else {
      g.opA = CUBLAS_OP_N;
      g.lda = C;
    }
    g.opB = CUBLAS_OP_N;
    g.B = dout;
    g.ldb = OC;
    g.D = dinp;
    g.ldd = C;
    g.beta = 1.0f;
    g.bias = NULL;
    cuda_gemm(cu, &g);
  }
  if (dw && N > 0) {
    gemm_call g;
    if (eLayout == BT_W_IN_OUT) {
      g.m = OC;
      g.n = C;
      g.k = N;
      g.opA = CUBLAS_OP_N;
      g.A = dout;
      g.lda = OC;
      g.opB = CUBLAS_OP_T;
      g.B = inp;
      g.ldb = C;
      g.ldd = OC;
    } else {
      g.m = C;
      g.n = OC;
      g.k = N;
      g.opA = CUBLAS_OP_N;
      g.A = inp;
      g.lda = C;
      g.opB = CUBLAS_OP_T;
      g.B = dout;
      g.ldb = OC;
      g.ldd = C;
    }
    g.D = dw;
    g.beta = 1.0f;
    g.bias = NULL;
    cuda_gemm(cu, &g);
  }
  if (dbias) cuda_colsum_acc(cu, dbias, dout, N, OC);
}

void bt_cuda_bias_fwd(bt_backend *be, float *out, const float *inp,
                      const float *bias, int N, int C) {
  bt_cuda *cu = bt_cuda_of(be);
  size_t total = (size_t)N * C;
  if (total == 0) return;
  bt_k_bias_fwd<<<bt_cuda_grid(total, 256), 256, 0, cu->stream>>>(out, inp,
                                                                  bias, total, C);
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_bias_bwd(bt_backend *be, float *dinp, float *dbias,
                      const float *dout, int N, int C) {
  bt_cuda *cu = bt_cuda_of(be);
  size_t total = (size_t)N * C;
  if (total == 0) return;
  if (dbias) cuda_colsum_acc(cu, dbias, dout, N, C);
  /* After the column sum: if dinp aliases dout, the sum must read the
   * incoming gradient, not the accumulated one. */
  if (dinp) {
    bt_k_add_inplace<<<bt_cuda_grid(total, 256), 256, 0, cu->stream>>>(
        dinp, dout, total);
    BT_CUDA_LAUNCHED(cu);
  }
}
