/*
 * cuda_gemm.cu: matmul forward/backward through cuBLASLt, the standalone
 * bias ops, and the deterministic column sum that computes every bias
 * gradient.
 *
 * Row-major in a column-major library: cuda_gemm_plan.h maps each product
 * onto one column-major GEMM (and documents the derivation); this file
 * executes those plans with cuBLASLt.
 *
 * Precision (docs/gpu.md):
 *   fp32 storage (train.precision = fp32, the default): A, B, C, D all
 *     CUDA_R_32F, compute CUBLAS_COMPUTE_32F. That is true IEEE fp32 FMA:
 *     TF32 tensor cores are used only with CUBLAS_COMPUTE_32F_FAST_TF32,
 *     which we never request, and we set no emulation descriptor.
 *   fp32 storage with BATON_CUDA_GEMM=bf16: A and B are rounded
 *     (nearest-even) to bf16 into scratch just before the call;
 *     accumulation, C, D and the bias stay fp32 (CUBLAS_COMPUTE_32F with
 *     bf16 inputs = tensor cores with fp32 accumulate).
 *   bf16 storage (train.precision = bf16, be->eActDtype): the operands are
 *     already bf16 ([act] inputs and the bf16 working copy of the
 *     weights), so nothing is converted: A, B CUDA_R_16BF, compute
 *     CUBLAS_COMPUTE_32F, scale type fp32; C = D CUDA_R_16BF for the
 *     [act] outputs (out; dinp, accumulated with beta = 1 on the bf16 C,
 *     so each element is rounded once, after the add), CUDA_R_32F for the
 *     fp32 weight gradient dw. The bias (bf16) follows D's type, the
 *     epilogue's default. BATON_CUDA_GEMM has no effect then.
 *
 * Bias: fused with CUBLASLT_EPILOGUE_BIAS when the heuristic offers an
 * algorithm for it; otherwise a plain GEMM followed by a bias kernel. The
 * bias gradient is always our column-sum kernel (two passes, fixed order),
 * not the BGRADB epilogue, so that it is deterministic and identical for
 * both weight layouts and both precisions.
 *
 * GELU (matmul_gelu_fwd): with BATON_CUDA_GELU_EPILOGUE=1, one GEMM with
 * CUBLASLT_EPILOGUE_GELU_AUX_BIAS (GELU_AUX without a bias) writes
 * out = GELU(pre) as D and pre into the epilogue's aux buffer; otherwise,
 * or when cuBLASLt offers no algorithm for it, matmul_fwd then our GELU
 * kernel, exactly the unfused pair. The aux has D's type and layout, and
 * its leading dimension must be a multiple of 8 (cublasLt.h,
 * CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD): OC % 8 != 0 takes the pair.
 */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_gemm_plan.h"

#include <cuda_bf16.h>

#include <string.h>

/* ---- small kernels ----------------------------------------------------- */

__global__ void bt_k_to_bf16(__nv_bfloat16 *y, const float *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]); /* round to nearest even */
}

/* D (column-major m x n, leading dimension ldd) += bias[row]: the fallback
 * when no fused-bias algorithm exists. D and bias have one type (fp32, or
 * bf16 in bf16 storage: then the GEMM's output is rounded, the sum
 * rounded again). */
template <typename T>
__global__ void bt_k_add_bias_cm(T *d, const T *bias, int m, int n,
                                 int ldd) {
  size_t total = (size_t)m * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t col = i / (size_t)m, row = i % (size_t)m;
    T *p = d + col * (size_t)ldd + row;
    bt_st(p, bt_ld(p) + bt_ld(bias + row));
  }
}

/* Last-resort GEMM for a plan cuBLASLt has no algorithm for (never
 * expected; it keeps an unusual shape or alignment from aborting a run).
 * Plain shared-memory tiling, 16 x 16 outputs per block, one output per
 * thread, k summed in increasing order in fp32: slow but simple,
 * deterministic, and checked against a reference GEMM in the CPU
 * emulator. Semantics of cuda_gemm_plan.h; with beta = 0 the old D is not
 * read (it may be NaN). T: the type of A, B and bias; TD: of D (the three
 * instantiations: fp32/fp32, bf16/bf16, and bf16 operands with the fp32
 * dw). */
#define BT_FB_TILE 16
template <typename T, typename TD>
__global__ void bt_k_gemm_fallback(TD *D, const T *A, const T *B,
                                   const T *bias, int m, int n, int k,
                                   int lda, int ldb, int ldd, int bTransA,
                                   int bTransB, float beta) {
  __shared__ float As[BT_FB_TILE][BT_FB_TILE + 1]; /* op(A)[i0+ty][l0+tx] */
  __shared__ float Bs[BT_FB_TILE][BT_FB_TILE + 1]; /* op(B)[l0+ty][j0+tx] */
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int i0 = blockIdx.y * BT_FB_TILE, j0 = blockIdx.x * BT_FB_TILE;
  float acc = 0.0f;
  for (int l0 = 0; l0 < k; l0 += BT_FB_TILE) {
    const int ai = i0 + ty, al = l0 + tx;
    As[ty][tx] = (ai < m && al < k)
                     ? bt_ld(bTransA ? A + al + (size_t)ai * lda
                                     : A + ai + (size_t)al * lda)
                     : 0.0f;
    const int bl = l0 + ty, bj = j0 + tx;
    Bs[ty][tx] = (bl < k && bj < n)
                     ? bt_ld(bTransB ? B + bj + (size_t)bl * ldb
                                     : B + bl + (size_t)bj * ldb)
                     : 0.0f;
    __syncthreads();
    for (int l = 0; l < BT_FB_TILE; l++) acc += As[ty][l] * Bs[l][tx];
    __syncthreads();
  }
  const int i = i0 + ty, j = j0 + tx;
  if (i < m && j < n) {
    TD *d = D + i + (size_t)j * ldd;
    float v = acc;
    if (beta != 0.0f) v += beta * bt_ld(d);
    if (bias) v += bt_ld(bias + i);
    bt_st(d, v);
  }
}

/* The two element-wise kernels take the 16-byte vector path for the
 * first nVec groups of BT_VEC elements (cuda_common.h; the wrapper sets
 * nVec = total / 8 when the pointers are 16-byte aligned, else 0), the
 * scalar loop for the rest. All arguments [act]. */
#define BT_EW_LOOP(i, n)                                                      \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);     \
       i += (size_t)gridDim.x * blockDim.x)

/* out[N, C] = inp + bias[c]; out may alias inp (read, then write, same
 * element, same thread). */
template <typename T>
__global__ void bt_k_bias_fwd(T *out, const T *inp, const T *bias,
                              size_t total, int C, size_t nVec) {
  BT_EW_LOOP(g, nVec) {
    float x[BT_VEC];
    bt_ld8(inp + BT_VEC * g, x);
    for (int k = 0; k < BT_VEC; k++)
      x[k] += bt_ld(bias + (BT_VEC * g + k) % (size_t)C);
    bt_st8(out + BT_VEC * g, x);
  }
  const size_t i0 = BT_VEC * nVec;
  BT_EW_LOOP(j, total - i0) {
    const size_t i = i0 + j;
    bt_st(out + i, bt_ld(inp + i) + bt_ld(bias + i % (size_t)C));
  }
}

template <typename T>
__global__ void bt_k_add_inplace(T *y, const T *x, size_t n, size_t nVec) {
  BT_EW_LOOP(g, nVec) {
    float a[BT_VEC], b[BT_VEC];
    bt_ld8(y + BT_VEC * g, a);
    bt_ld8(x + BT_VEC * g, b);
    for (int k = 0; k < BT_VEC; k++) a[k] += b[k];
    bt_st8(y + BT_VEC * g, a);
  }
  const size_t i0 = BT_VEC * nVec;
  BT_EW_LOOP(j, n - i0) bt_st(y + i0 + j, bt_ld(y + i0 + j) + bt_ld(x + i0 + j));
}

/* nVec and the grid of the two kernels above (as cuda_ops.cu's). */
static size_t gemm_ew_nvec(size_t n, const void *p0, const void *p1) {
  return bt_cuda_al16(p0) && bt_cuda_al16(p1) ? n / BT_VEC : 0;
}
static unsigned gemm_ew_grid(size_t n, size_t nVec) {
  const size_t nTail = n - BT_VEC * nVec;
  return bt_cuda_grid(nVec > nTail ? nVec : nTail, 256);
}

/* Column sums of x[N, C] (row-major), pass 1: block (32, 8) owns 32
 * columns of one chunk of BT_CS_ROWS rows. Thread (tx, ty) sums rows
 * r0+ty, r0+ty+8, ... in order; the 8 partial sums of a column are then
 * added in ty order. part[chunk, c] receives the chunk's sum. The
 * decomposition depends only on (N, C): deterministic (invariant 2). */
#define BT_CS_ROWS 256
template <typename T>
__global__ void bt_k_colsum_part(float *part, const T *x, int N, int C) {
  __shared__ float sh[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * 32 + tx;
  const int chunk = blockIdx.y;
  const int r0 = chunk * BT_CS_ROWS;
  const int r1 = min(N, r0 + BT_CS_ROWS);
  float acc = 0.0f;
  if (c < C)
    for (int r = r0 + ty; r < r1; r += 8) acc += bt_ld(x + (size_t)r * C + c);
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

/* out[c] += sum_n x[n, c], deterministic. x is [act] (a dout), out fp32
 * (a bias gradient). Uses scratch. */
static void cuda_colsum_acc(bt_backend *be, float *out, const float *x, int N,
                            int C) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0 || C <= 0) return;
  const int nChunk = (N + BT_CS_ROWS - 1) / BT_CS_ROWS;
  BT_ASSERT(nChunk <= 65535); /* gridDim.y limit: N <= 16.7M rows */
  float *part = (float *)bt_cuda_scratch(cu, (size_t)nChunk * C * sizeof(float));
  dim3 grid((unsigned)((C + 31) / 32), (unsigned)nChunk);
  BT_CUDA_ACT(be, bt_k_colsum_part<act_t><<<grid, dim3(32, 8), 0,
                                             cu->stream>>>(
                      part, (const act_t *)x, N, C));
  BT_CUDA_LAUNCHED(cu);
  bt_k_colsum_final<<<(C + 255) / 256, 256, 0, cu->stream>>>(out, part, nChunk,
                                                             C);
  BT_CUDA_LAUNCHED(cu);
}

/* ---- the GEMM wrapper -------------------------------------------------- */


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

static void lt_cache_put(bt_cuda *cu, const bt_cuda_lt_key *key, int bFound,
                         int bFused, const cublasLtMatmulAlgo_t *algo) {
  bt_cuda_lt_entry *e;
  if (cu->nLt < BT_CUDA_LT_CACHE) {
    e = &cu->aLt[cu->nLt++];
  } else {
    e = &cu->aLt[cu->iLtNext];
    cu->iLtNext = (cu->iLtNext + 1) % BT_CUDA_LT_CACHE;
  }
  e->key = *key;
  e->bFound = bFound;
  e->bFused = bFused;
  e->algo = *algo;
}

/* The bias of a plan whose GEMM ran without the epilogue, in D's type. */
static void gemm_add_bias(bt_cuda *cu, const bt_gemm_call *g) {
  const size_t total = (size_t)g->m * g->n;
  if (g->bD16)
    bt_k_add_bias_cm<__nv_bfloat16>
        <<<bt_cuda_grid(total, 256), 256, 0, cu->stream>>>(
            (__nv_bfloat16 *)g->D, (const __nv_bfloat16 *)g->bias, g->m,
            g->n, g->ldd);
  else
    bt_k_add_bias_cm<float><<<bt_cuda_grid(total, 256), 256, 0,
                               cu->stream>>>(g->D, g->bias, g->m, g->n,
                                             g->ldd);
  BT_CUDA_LAUNCHED(cu);
}

/* One attempt at a plan with operands A, B of type abType (the originals,
 * or their bf16 copies) and C = D of type dType (g->bD16). Returns 0
 * without queuing anything if cuBLASLt has no algorithm for it; otherwise
 * queues the GEMM (and the bias kernel when the bias could not be fused)
 * and returns 1. */
static int gemm_try(bt_cuda *cu, const bt_gemm_call *g, const void *A,
                    const void *B, cudaDataType_t abType) {
  const cudaDataType_t dType = g->bD16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasOperation_t opA = g->bTransA ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opB = g->bTransB ? CUBLAS_OP_T : CUBLAS_OP_N;
  const uint64_t aRows = g->bTransA ? g->k : g->m;
  const uint64_t aCols = g->bTransA ? g->m : g->k;
  const uint64_t bRows = g->bTransB ? g->n : g->k;
  const uint64_t bCols = g->bTransB ? g->k : g->n;

  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, ld;
  BT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, abType, aRows, aCols, g->lda));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, abType, bRows, bCols, g->ldb));
  BT_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&ld, dType, g->m, g->n, g->ldd));
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
  key.opA = (int)opA;
  key.opB = (int)opB;
  key.lda = g->lda;
  key.ldb = g->ldb;
  key.ldd = g->ldd;
  key.bBf16 = abType == CUDA_R_16BF;
  key.bD16 = g->bD16;
  key.bBias = g->bias != NULL;
  key.eEpi = g->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  key.alA = ptr_align(A);
  key.alB = ptr_align(B);
  key.alD = ptr_align(g->D);
  key.alBias = g->bias ? ptr_align(g->bias) : 0;

  int bFound = 0, bFused = 0;
  cublasLtMatmulAlgo_t algo;
  memset(&algo, 0, sizeof algo);
  const bt_cuda_lt_entry *hit = lt_cache_find(cu, &key);
  if (hit) {
    bFound = hit->bFound;
    bFused = hit->bFused;
    algo = hit->algo;
  } else {
    cublasLtMatmulHeuristicResult_t heur;
    if (g->bias && lt_pick(cu, desc, la, lb, ld, A, B, g->D, &heur)) {
      bFound = bFused = 1;
    } else {
      if (g->bias) {
        /* Fallback: plain GEMM, then bt_k_add_bias_cm. */
        cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
        BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &none, sizeof none));
      }
      bFound = lt_pick(cu, desc, la, lb, ld, A, B, g->D, &heur);
    }
    if (bFound) algo = heur.algo;
    lt_cache_put(cu, &key, bFound, bFused, &algo); /* misses are cached too */
  }
  if (bFound && g->bias && !bFused) {
    /* (again, for a cached "not fused" answer) */
    cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
    BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &none, sizeof none));
  }
  if (bFound) {
    const float alpha = 1.0f;
    BT_CUBLAS_CHECK(cublasLtMatmul(cu->lt, desc, &alpha, A, la, B, lb,
                                   &g->beta, g->D, ld, g->D, ld, &algo,
                                   cu->pWorkspace, cu->nWorkspace, cu->stream));
    if (cu->bSyncCheck) BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  }
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ld));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
  BT_CUBLAS_CHECK(cublasLtMatmulDescDestroy(desc));

  if (bFound && g->bias && !bFused) gemm_add_bias(cu, g);
  return bFound;
}

/* One attempt at the forward plan g (D = out) with the GELU epilogue,
 * writing the pre-activation (+ bias) to pre (D's type and layout, ld =
 * g->ldd) and GELU of it to D. Operands as they are (abType: fp32, or bf16
 * in bf16 storage). Returns 0 without queuing anything when cuBLASLt has
 * no algorithm for it (the answer is cached like gemm_try's). */
static int gemm_try_gelu(bt_cuda *cu, const bt_gemm_call *g, float *pre,
                         cudaDataType_t abType) {
  const cudaDataType_t dType = g->bD16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasOperation_t opA = g->bTransA ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opB = CUBLAS_OP_N;
  const cublasLtEpilogue_t epi =
      g->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  const int64_t auxLd = g->ldd;
  BT_ASSERT(!g->bTransB && g->beta == 0.0f && g->ldd % 8 == 0);

  bt_cuda_lt_key key;
  memset(&key, 0, sizeof key); /* padding too: keys are compared bytewise */
  key.m = g->m, key.n = g->n, key.k = g->k;
  key.opA = (int)opA, key.opB = (int)opB;
  key.lda = g->lda, key.ldb = g->ldb, key.ldd = g->ldd;
  key.bBf16 = abType == CUDA_R_16BF;
  key.bD16 = g->bD16;
  key.bBias = g->bias != NULL;
  key.eEpi = (int)epi;
  key.alA = ptr_align(g->A), key.alB = ptr_align(g->B);
  key.alD = ptr_align(g->D);
  key.alBias = g->bias ? ptr_align(g->bias) : 0;
  key.alAux = ptr_align(pre);
  const bt_cuda_lt_entry *hit = lt_cache_find(cu, &key);
  if (hit && !hit->bFound) return 0; /* known: no fused algorithm */

  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, ld;
  BT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  if (g->bias)
    BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias));
  /* set before the heuristic: it reads the aux pointer's alignment */
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &pre, sizeof pre));
  BT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &auxLd, sizeof auxLd));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(
      &la, abType, g->bTransA ? g->k : g->m, g->bTransA ? g->m : g->k, g->lda));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, abType, g->k, g->n, g->ldb));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, dType, g->m, g->n, g->ldd));

  int bFound = hit != NULL;
  cublasLtMatmulAlgo_t algo;
  memset(&algo, 0, sizeof algo);
  if (hit) {
    algo = hit->algo;
  } else {
    cublasLtMatmulHeuristicResult_t heur;
    bFound = lt_pick(cu, desc, la, lb, ld, g->A, g->B, g->D, &heur);
    if (bFound) algo = heur.algo;
    lt_cache_put(cu, &key, bFound, bFound, &algo);
  }
  if (bFound) {
    const float alpha = 1.0f;
    BT_CUBLAS_CHECK(cublasLtMatmul(cu->lt, desc, &alpha, g->A, la, g->B, lb,
                                   &g->beta, g->D, ld, g->D, ld, &algo,
                                   cu->pWorkspace, cu->nWorkspace, cu->stream));
    if (cu->bSyncCheck) BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  }
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ld));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
  BT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
  BT_CUBLAS_CHECK(cublasLtMatmulDescDestroy(desc));
  return bFound;
}

/* The last resort: bt_k_gemm_fallback in the plan's types. */
static void gemm_fallback(bt_cuda *cu, const bt_gemm_call *g) {
  typedef __nv_bfloat16 bf16;
  BT_ASSERT((g->m + BT_FB_TILE - 1) / BT_FB_TILE <= 65535); /* gridDim.y */
  BT_ASSERT(g->bAB16 || !g->bD16);
  dim3 grid((unsigned)((g->n + BT_FB_TILE - 1) / BT_FB_TILE),
            (unsigned)((g->m + BT_FB_TILE - 1) / BT_FB_TILE));
  dim3 block(BT_FB_TILE, BT_FB_TILE);
  if (!g->bAB16)
    bt_k_gemm_fallback<float, float><<<grid, block, 0, cu->stream>>>(
        g->D, g->A, g->B, g->bias, g->m, g->n, g->k, g->lda, g->ldb, g->ldd,
        g->bTransA, g->bTransB, g->beta);
  else if (g->bD16)
    bt_k_gemm_fallback<bf16, bf16><<<grid, block, 0, cu->stream>>>(
        (bf16 *)g->D, (const bf16 *)g->A, (const bf16 *)g->B,
        (const bf16 *)g->bias, g->m, g->n, g->k, g->lda, g->ldb, g->ldd,
        g->bTransA, g->bTransB, g->beta);
  else
    bt_k_gemm_fallback<bf16, float><<<grid, block, 0, cu->stream>>>(
        g->D, (const bf16 *)g->A, (const bf16 *)g->B, (const bf16 *)g->bias,
        g->m, g->n, g->k, g->lda, g->ldb, g->ldd, g->bTransA, g->bTransB,
        g->beta);
  BT_CUDA_LAUNCHED(cu);
}

/* Executes one plan (cuda_gemm_plan.h) on the compute stream. bf16
 * storage (g->bAB16): on the bf16 operands as they are, else with
 * bt_k_gemm_fallback. fp32 storage with BATON_CUDA_GEMM=bf16: with bf16
 * copies of both operands, falling back to fp32 for a shape cuBLASLt has
 * no bf16 algorithm for; if cuBLASLt has no fp32 algorithm either, with
 * bt_k_gemm_fallback. Each fallback is warned once per backend. */
static void cuda_gemm(bt_cuda *cu, const bt_gemm_call *g) {
  if (g->m <= 0 || g->n <= 0) return;
  const size_t aRows = g->bTransA ? g->k : g->m;
  const size_t aCols = g->bTransA ? g->m : g->k;
  const size_t bRows = g->bTransB ? g->n : g->k;
  const size_t bCols = g->bTransB ? g->k : g->n;
  BT_ASSERT((size_t)g->lda == aRows && (size_t)g->ldb == bRows);
  if (g->k <= 0) {
    /* Empty sum: D = beta D (+ bias). Only reachable with N = 0 rows in a
     * backward (dW over zero samples): nothing to add. */
    BT_ASSERT(g->beta == 1.0f && g->bias == NULL);
    return;
  }

  if (g->bAB16) {
    if (gemm_try(cu, g, g->A, g->B, CUDA_R_16BF)) return;
  } else if (cu->bGemmBf16) {
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
    if (gemm_try(cu, g, A16, B16, CUDA_R_16BF)) return;
    if (!cu->bWarnedBf16) {
      cu->bWarnedBf16 = 1;
      bt_log_warn("CUDA backend: cuBLASLt has no bf16 algorithm for m=%d "
                  "n=%d k=%d (lda=%d ldb=%d); running such GEMMs in fp32",
                  g->m, g->n, g->k, g->lda, g->ldb);
    }
  }
  if (!g->bAB16 && gemm_try(cu, g, g->A, g->B, CUDA_R_32F)) return;
  if (!cu->bWarnedFallback) {
    cu->bWarnedFallback = 1;
    bt_log_warn("CUDA backend: cuBLASLt offers no %s algorithm for m=%d "
                "n=%d k=%d transA=%d transB=%d lda=%d ldb=%d ldd=%d; using "
                "the (slow) fallback GEMM kernel for such shapes",
                g->bAB16 ? (g->bD16 ? "bf16" : "bf16 -> fp32") : "fp32",
                g->m, g->n, g->k, g->bTransA, g->bTransB, g->lda, g->ldb,
                g->ldd);
  }
  gemm_fallback(cu, g);
}

/* ---- ops ----------------------------------------------------------------- */

void bt_cuda_matmul_fwd(bt_backend *be, float *out, const float *inp,
                        const float *w, const float *bias, int N, int C,
                        int OC, bt_wlayout eLayout) {
  bt_cuda *cu = bt_cuda_of(be);
  if (C == 0) {
    /* out = bias (or 0): no product to compute. */
    BT_CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)N * OC * be->nActByte,
                                  cu->stream));
    if (bias) bt_cuda_bias_fwd(be, out, out, bias, N, OC);
    return;
  }
  const bt_gemm_call g =
      bt_gemm_plan_fwd(out, inp, w, bias, N, C, OC, eLayout, be->eActDtype);
  cuda_gemm(cu, &g);
}

/* The fused epilogue only where it is requested (bGeluEpi, gpu.md: off by
 * default until a GPU run measures it), the aux rule holds (OC % 8) and
 * the operands need no conversion (not BATON_CUDA_GEMM=bf16 on fp32
 * storage, whose per-call bf16 copies the pair handles); everything else,
 * and a shape cuBLASLt has no fused algorithm for, runs the pair. */
void bt_cuda_matmul_gelu_fwd(bt_backend *be, float *out, float *pre,
                             const float *inp, const float *w,
                             const float *bias, int N, int C, int OC,
                             bt_wlayout eLayout) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0 || OC <= 0) return;
  const int b16 = be->eActDtype == BT_ACT_BF16;
  if (cu->bGeluEpi && C > 0 && OC % 8 == 0 && (b16 || !cu->bGemmBf16)) {
    const bt_gemm_call g =
        bt_gemm_plan_fwd(out, inp, w, bias, N, C, OC, eLayout, be->eActDtype);
    if (gemm_try_gelu(cu, &g, pre, b16 ? CUDA_R_16BF : CUDA_R_32F)) return;
  }
  bt_cuda_matmul_fwd(be, pre, inp, w, bias, N, C, OC, eLayout);
  bt_cuda_gelu_fwd(be, out, pre, (size_t)N * OC);
}

void bt_cuda_matmul_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                        const float *dout, const float *inp, const float *w,
                        int N, int C, int OC, bt_wlayout eLayout) {
  bt_cuda *cu = bt_cuda_of(be);
  if (dinp && OC > 0) {
    const bt_gemm_call g =
        bt_gemm_plan_dinp(dinp, dout, w, N, C, OC, eLayout, be->eActDtype);
    cuda_gemm(cu, &g);
  }
  if (dw && N > 0) {
    const bt_gemm_call g =
        bt_gemm_plan_dw(dw, dout, inp, N, C, OC, eLayout, be->eActDtype);
    cuda_gemm(cu, &g);
  }
  if (dbias) cuda_colsum_acc(be, dbias, dout, N, OC);
}

void bt_cuda_bias_fwd(bt_backend *be, float *out, const float *inp,
                      const float *bias, int N, int C) {
  bt_cuda *cu = bt_cuda_of(be);
  size_t total = (size_t)N * C;
  if (total == 0) return;
  const size_t nVec = gemm_ew_nvec(total, out, inp);
  BT_CUDA_ACT(be, bt_k_bias_fwd<act_t><<<gemm_ew_grid(total, nVec), 256, 0,
                                          cu->stream>>>(
                      (act_t *)out, (const act_t *)inp, (const act_t *)bias,
                      total, C, nVec));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_bias_bwd(bt_backend *be, float *dinp, float *dbias,
                      const float *dout, int N, int C) {
  bt_cuda *cu = bt_cuda_of(be);
  size_t total = (size_t)N * C;
  if (total == 0) return;
  if (dbias) cuda_colsum_acc(be, dbias, dout, N, C);
  /* After the column sum: if dinp aliases dout, the sum must read the
   * incoming gradient, not the accumulated one. */
  if (dinp) {
    const size_t nVec = gemm_ew_nvec(total, dinp, dout);
    BT_CUDA_ACT(be, bt_k_add_inplace<act_t><<<gemm_ew_grid(total, nVec), 256,
                                               0, cu->stream>>>(
                        (act_t *)dinp, (const act_t *)dout, total, nVec));
    BT_CUDA_LAUNCHED(cu);
  }
}
