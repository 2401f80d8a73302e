/*
 * cuda_ops.cu: the fused and element-wise ops of the CUDA backend:
 * embedding, layernorm, GELU, residual, softmax cross-entropy, AdamW,
 * sumsq, scale and to_act. Contracts: kernels/ops.h; invariants:
 * cuda_common.h.
 *
 * Storage: every kernel that touches an [act] argument (kernels/ops.def)
 * is a template over its storage type (float, or __nv_bfloat16 in
 * train.precision = bf16), picked per call by BT_CUDA_ACT; it reads and
 * writes [act] data only through bt_ld / bt_st / bt_ld8 / bt_st8, computes
 * in fp32 and rounds each [act] output once (after any accumulation), as
 * the CPU reference does. fp32 arguments (parameter gradients, mean,
 * rstd, losses, AdamW state) stay float. The element-wise kernels use
 * 16-byte vector accesses where the pointers allow (cuda_common.h BT_VEC).
 *
 * Every reduction here is deterministic (no atomics; fixed decomposition
 * and order):
 *   - row reductions (layernorm, cross-entropy): one warp or one block per
 *     row, butterfly shuffles, fixed tree across warps;
 *   - column reductions (layernorm dw/db, dwpe): per-chunk partial sums in
 *     scratch, then one thread per column adds the chunks in order;
 *   - dwte (embedding backward): (token, position) keys sorted on the
 *     device by a fixed bitonic network (see bt_cuda_embed_bwd), then one
 *     block per distinct token adds its rows in position order;
 *   - sumsq: a fixed 512-block grid in double, then one block in order.
 */
#include "kernels/cuda/cuda_common.h"

#include <stdlib.h>
#include <string.h>

#define GRID_STRIDE(i, n)                                                      \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);     \
       i += (size_t)gridDim.x * blockDim.x)

/* ======================================================================
 * embedding
 * ====================================================================== */

/* out, wte, wpe are [act] (the working copy of the embeddings): the sum
 * is formed in fp32 and stored once, as the CPU reference rounds it. */
template <typename T>
__global__ void bt_k_embed_fwd(T *out, const int32_t *tok, const T *wte,
                               const T *wpe, int nT, int C, size_t total) {
  GRID_STRIDE(i, total) {
    const size_t bt = i / (size_t)C;
    const int c = (int)(i % (size_t)C);
    const int t = (int)(bt % (size_t)nT);
    const int32_t id = tok[bt];
    /* A negative id (a loader bug) gives NaN rather than a wild read; the
     * upper bound is not known here (the backward poisons dwte for it). */
    float v = id >= 0 ? bt_ld(wte + (size_t)id * C + c) : NAN;
    if (wpe) v += bt_ld(wpe + (size_t)t * C + c);
    bt_st(out + i, v);
  }
}

void bt_cuda_embed_fwd(bt_backend *be, float *out, const int32_t *tok,
                       const float *wte, const float *wpe, int B, int T,
                       int C) {
  bt_cuda *cu = bt_cuda_of(be);
  size_t total = (size_t)B * T * C;
  if (total == 0) return;
  /* Token ids are trusted to be < V here (the loader validates them
   * against the vocabulary; the backward turns one that is not into NaN). */
  BT_CUDA_ACT(be, bt_k_embed_fwd<act_t><<<bt_cuda_grid(total, 256), 256, 0,
                                           cu->stream>>>(
                      (act_t *)out, tok, (const act_t *)wte,
                      (const act_t *)wpe, T, C, total));
  BT_CUDA_LAUNCHED(cu);
}

/* dwpe[t, c] += dout[0, t, c] + dout[1, t, c] + ... in b order, starting
 * from the current value (the CPU reference's order). dout is [act],
 * dwpe fp32 (a parameter gradient). */
template <typename T>
__global__ void bt_k_embed_dwpe(float *dwpe, const T *dout, int B, int nT,
                                int C) {
  const size_t total = (size_t)nT * C;
  GRID_STRIDE(i, total) {
    float acc = dwpe[i];
    for (int b = 0; b < B; b++) acc += bt_ld(dout + (size_t)b * total + i);
    dwpe[i] = acc;
  }
}

/* The embedding backward's plan is built on the device, so the step has no
 * host synchronisation here (issue 12 item 4): each position's key is
 * (token << 32 | position); a bitonic sort puts the keys in (token,
 * position) order; one block per sorted slot that starts a token's run
 * adds that run's dout rows. The sort is a fixed network (the same
 * comparisons whatever the data), so the plan and the sums are
 * deterministic. Keys past nTok, up to the power-of-two nPad, are
 * EMBED_KEY_PAD and sort last. */
#define EMBED_KEY_PAD 0xffffffffffffffffull
#define EMBED_TOK_BAD 0xfffffffeu /* a token outside [0, V) */
#define SORT_TILE 1024            /* keys per block in bt_k_sort_local */

__global__ void bt_k_embed_keys(uint64_t *key, const int32_t *tok, int nTok,
                                size_t nPad, int V) {
  GRID_STRIDE(i, nPad) {
    if (i < (size_t)nTok) {
      const int32_t t = tok[i];
      const uint32_t u = (t >= 0 && t < V) ? (uint32_t)t : EMBED_TOK_BAD;
      key[i] = ((uint64_t)u << 32) | (uint32_t)i;
    } else {
      key[i] = EMBED_KEY_PAD;
    }
  }
}

/* One compare-exchange of the bitonic network: thread t owns the pair
 * (i, i + j) of its j-block; k is the size of the sequences being merged
 * (ascending where bit k of i is 0). Each pair has one owner, no race. */
__device__ __forceinline__ void bt_sort_cmpswap(uint64_t *a, size_t t,
                                                size_t iBase, size_t j,
                                                size_t k) {
  const size_t i = 2 * j * (t / j) + (t % j), l = i + j;
  const bool bAsc = ((iBase + i) & k) == 0;
  const uint64_t x = a[i], y = a[l];
  if ((x > y) == bAsc) {
    a[i] = y;
    a[l] = x;
  }
}

/* The stages with j >= SORT_TILE, one launch each, over global memory. */
__global__ void bt_k_sort_step(uint64_t *key, size_t nPad, size_t j,
                               size_t k) {
  GRID_STRIDE(t, nPad / 2) bt_sort_cmpswap(key, t, 0, j, k);
}

/* Every stage with j < SORT_TILE for sequence sizes k0, 2 k0, ..., k1, in
 * shared memory: one block per SORT_TILE keys, SORT_TILE / 2 threads, one
 * pair each per stage (pairs with j < SORT_TILE stay inside a tile). */
__global__ void __launch_bounds__(SORT_TILE / 2)
    bt_k_sort_local(uint64_t *key, size_t k0, size_t k1) {
  __shared__ uint64_t s[SORT_TILE];
  const size_t base = (size_t)blockIdx.x * SORT_TILE;
  const unsigned t = threadIdx.x;
  s[t] = key[base + t];
  s[t + SORT_TILE / 2] = key[base + t + SORT_TILE / 2];
  __syncthreads();
  for (size_t k = k0; k <= k1; k <<= 1) {
    for (size_t j = (k / 2 < SORT_TILE / 2 ? k / 2 : SORT_TILE / 2); j > 0;
         j >>= 1) {
      bt_sort_cmpswap(s, t, base, j, k);
      __syncthreads();
    }
  }
  key[base + t] = s[t];
  key[base + t + SORT_TILE / 2] = s[t + SORT_TILE / 2];
}

/* One block per sorted slot u < nTok; only the first slot of each token's
 * run works (the others return at once: no barrier below). Each thread
 * owns columns c and adds the run's dout rows in increasing position
 * order onto dwte[token, c]. Distinct runs own distinct dwte rows: no
 * race, no atomic. A token outside the vocabulary cannot be checked on
 * the host any more: its run poisons row 0 with NaN, which the step's
 * non-finite gradient check reports (the forward gives NaN for it too). */
template <typename T>
__global__ void bt_k_embed_dwte(float *dwte, const T *dout,
                                const uint64_t *key, int nTok, int C) {
  const int u = blockIdx.x;
  const uint32_t tok = (uint32_t)(key[u] >> 32);
  if (key[u] == EMBED_KEY_PAD) return;
  if (u > 0 && (uint32_t)(key[u - 1] >> 32) == tok) return;
  if (tok == EMBED_TOK_BAD) {
    for (int c = threadIdx.x; c < C; c += blockDim.x) dwte[c] = NAN;
    return;
  }
  const size_t row = (size_t)tok;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = dwte[row * C + c];
    for (int p = u; p < nTok && (uint32_t)(key[p] >> 32) == tok; p++)
      acc += bt_ld(dout + (size_t)(uint32_t)key[p] * C + c);
    dwte[row * C + c] = acc;
  }
}

/* The sort's launches for nPad keys (a power of two >= SORT_TILE): all
 * merges up to SORT_TILE in one shared-memory launch, then per merge size
 * k the global stages j >= SORT_TILE and one shared-memory launch for the
 * rest. 2^14 keys (B = 16, T = 1024): 15 launches. */
static void embed_sort(bt_cuda *cu, uint64_t *key, size_t nPad) {
  const unsigned nTile = (unsigned)(nPad / SORT_TILE);
  bt_k_sort_local<<<nTile, SORT_TILE / 2, 0, cu->stream>>>(key, 2, SORT_TILE);
  BT_CUDA_LAUNCHED(cu);
  for (size_t k = 2 * SORT_TILE; k <= nPad; k <<= 1) {
    for (size_t j = k / 2; j >= SORT_TILE; j >>= 1) {
      bt_k_sort_step<<<bt_cuda_grid(nPad / 2, 256), 256, 0, cu->stream>>>(
          key, nPad, j, k);
      BT_CUDA_LAUNCHED(cu);
    }
    bt_k_sort_local<<<nTile, SORT_TILE / 2, 0, cu->stream>>>(key, k, k);
    BT_CUDA_LAUNCHED(cu);
  }
}

/* dwte without atomics and without a host round trip: keys, sort and sums
 * are queued on the stream. The key buffer (pIdx, nPad 64-bit keys) grows
 * on first use (invariant 3), behind a stream synchronisation, but only
 * when the token count grows, never in a steady step. */
void bt_cuda_embed_bwd(bt_backend *be, float *dwte, float *dwpe,
                       const float *dout, const int32_t *tok, int B, int T,
                       int C, int V) {
  bt_cuda *cu = bt_cuda_of(be);
  const int nTok = B * T;
  if (nTok <= 0 || C <= 0) return;
  if (dwpe) {
    size_t total = (size_t)T * C;
    BT_CUDA_ACT(be, bt_k_embed_dwpe<act_t><<<bt_cuda_grid(total, 256), 256,
                                              0, cu->stream>>>(
                        dwpe, (const act_t *)dout, B, T, C));
    BT_CUDA_LAUNCHED(cu);
  }
  if (!dwte) return;
  BT_ASSERT(nTok < (1 << 30)); /* positions fit the key's low 32 bits */
  size_t nPad = SORT_TILE;
  while (nPad < (size_t)nTok) nPad <<= 1;
  if (2 * nPad > cu->nIdx) {
    /* The previous call's sort may still be queued on the buffer. */
    BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    if (cu->pIdx) BT_CUDA_CHECK(cudaFree(cu->pIdx));
    cu->pIdx = NULL;
    cu->nIdx = 0;
    BT_CUDA_CHECK(cudaMalloc((void **)&cu->pIdx, nPad * sizeof(uint64_t)));
    cu->nIdx = 2 * nPad;
  }
  uint64_t *key = (uint64_t *)cu->pIdx;
  bt_k_embed_keys<<<bt_cuda_grid(nPad, 256), 256, 0, cu->stream>>>(
      key, tok, nTok, nPad, V);
  BT_CUDA_LAUNCHED(cu);
  embed_sort(cu, key, nPad);
  BT_CUDA_ACT(be, bt_k_embed_dwte<act_t><<<nTok, 256, 0, cu->stream>>>(
                      dwte, (const act_t *)dout, key, nTok, C));
  BT_CUDA_LAUNCHED(cu);
}

/* ======================================================================
 * layernorm (eps = 1e-5, biased variance, as GPT-2)
 * ====================================================================== */

#define LN_WARPS 8 /* rows per 256-thread block: one warp per row */

/* Row kernels and 16-byte vectors: the row sums keep their lane-strided
 * order (a vector split would change which lane sums which element, hence
 * the bits); the per-element loops that write the output (and read
 * inputs for it) move 8 elements per lane and step when bVec, i.e. when
 * the row length is a multiple of 8 and every pointer 16-byte aligned
 * (row_vec), with the same per-element arithmetic: same bits. */
static int row_vec(int C, const void *p0, const void *p1, const void *p2,
                   const void *p3) {
  return C % BT_VEC == 0 && bt_cuda_al16(p0) && bt_cuda_al16(p1) &&
         bt_cuda_al16(p2) && bt_cuda_al16(p3);
}

/* out, inp, w, b are [act]; mean, rstd fp32. Statistics in fp32 from the
 * stored (bf16 or fp32) inputs; each output is rounded once. */
template <typename T>
__global__ void bt_k_ln_fwd(T *out, float *mean, float *rstd, const T *inp,
                            const T *w, const T *b, int N, int C, int bVec) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
  if (row >= N) return; /* whole warp: no block barrier below */
  const T *x = inp + (size_t)row * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += bt_ld(x + c);
  const float m = bt_warp_sum(s) / (float)C;
  /* Two passes (mean first) rather than E[x^2] - m^2: no cancellation. */
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = bt_ld(x + c) - m;
    v += d * d;
  }
  const float var = bt_warp_sum(v) / (float)C;
  const float r = 1.0f / sqrtf(var + 1e-5f);
  T *o = out + (size_t)row * C;
  if (bVec) {
    for (int c = BT_VEC * lane; c < C; c += BT_VEC * 32) {
      float xv[BT_VEC], wv[BT_VEC], bv[BT_VEC];
      bt_ld8(x + c, xv), bt_ld8(w + c, wv), bt_ld8(b + c, bv);
      for (int k = 0; k < BT_VEC; k++) xv[k] = (xv[k] - m) * r * wv[k] + bv[k];
      bt_st8(o + c, xv);
    }
  } else {
    for (int c = lane; c < C; c += 32)
      bt_st(o + c, (bt_ld(x + c) - m) * r * bt_ld(w + c) + bt_ld(b + c));
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

void bt_cuda_layernorm_fwd(bt_backend *be, float *out, float *mean,
                           float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0 || C <= 0) return;
  BT_CUDA_ACT(be, bt_k_ln_fwd<act_t><<<(N + LN_WARPS - 1) / LN_WARPS,
                                        32 * LN_WARPS, 0, cu->stream>>>(
                      (act_t *)out, mean, rstd, (const act_t *)inp,
                      (const act_t *)w, (const act_t *)b, N, C,
                      row_vec(C, out, inp, w, b)));
  BT_CUDA_LAUNCHED(cu);
}

/* dinp += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd with
 * dnorm = w * dout; one warp per row. dinp, dout, inp, w [act]. */
template <typename T>
__global__ void bt_k_ln_bwd_dinp(T *dinp, const T *dout, const T *inp,
                                 const T *w, const float *mean,
                                 const float *rstd, int N, int C, int bVec) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
  if (row >= N) return;
  const T *dy = dout + (size_t)row * C;
  const T *x = inp + (size_t)row * C;
  const float m = mean[row], r = rstd[row];
  float s1 = 0.0f, s2 = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float xhat = (bt_ld(x + c) - m) * r;
    const float dn = bt_ld(w + c) * bt_ld(dy + c);
    s1 += dn;
    s2 += dn * xhat;
  }
  s1 = bt_warp_sum(s1) / (float)C;
  s2 = bt_warp_sum(s2) / (float)C;
  T *dx = dinp + (size_t)row * C;
  if (bVec) {
    for (int c = BT_VEC * lane; c < C; c += BT_VEC * 32) {
      float xv[BT_VEC], wv[BT_VEC], yv[BT_VEC], dv[BT_VEC];
      bt_ld8(x + c, xv), bt_ld8(w + c, wv), bt_ld8(dy + c, yv);
      bt_ld8(dx + c, dv);
      for (int k = 0; k < BT_VEC; k++) {
        const float xhat = (xv[k] - m) * r;
        const float dn = wv[k] * yv[k];
        dv[k] = dv[k] + (dn - s1 - xhat * s2) * r;
      }
      bt_st8(dx + c, dv);
    }
    return;
  }
  for (int c = lane; c < C; c += 32) {
    const float xhat = (bt_ld(x + c) - m) * r;
    const float dn = bt_ld(w + c) * bt_ld(dy + c);
    bt_st(dx + c, bt_ld(dx + c) + (dn - s1 - xhat * s2) * r);
  }
}

/* dw, db partial column sums: same decomposition as the bias column sum in
 * cuda_gemm.cu (block (32, 8) per 32 columns x LN_ROWS rows). */
#define LN_ROWS 256
template <typename T>
__global__ void bt_k_ln_dwdb_part(float *partW, float *partB, const T *dout,
                                  const T *inp, const float *mean,
                                  const float *rstd, int N, int C) {
  __shared__ float shW[8][33], shB[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * 32 + tx;
  const int chunk = blockIdx.y;
  const int r0 = chunk * LN_ROWS, r1 = min(N, r0 + LN_ROWS);
  float aw = 0.0f, ab = 0.0f;
  if (c < C) {
    for (int r = r0 + ty; r < r1; r += 8) {
      const float dy = bt_ld(dout + (size_t)r * C + c);
      const float xhat = (bt_ld(inp + (size_t)r * C + c) - mean[r]) * rstd[r];
      aw += dy * xhat;
      ab += dy;
    }
  }
  shW[ty][tx] = aw;
  shB[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && c < C) {
    float sw = 0.0f, sb = 0.0f;
    for (int i = 0; i < 8; i++) {
      sw += shW[i][tx];
      sb += shB[i][tx];
    }
    partW[(size_t)chunk * C + c] = sw;
    partB[(size_t)chunk * C + c] = sb;
  }
}

__global__ void bt_k_ln_dwdb_final(float *dw, float *db, const float *partW,
                                   const float *partB, int nChunk, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sw = 0.0f, sb = 0.0f;
  for (int k = 0; k < nChunk; k++) {
    sw += partW[(size_t)k * C + c];
    sb += partB[(size_t)k * C + c];
  }
  if (dw) dw[c] += sw;
  if (db) db[c] += sb;
}

void bt_cuda_layernorm_bwd(bt_backend *be, float *dinp, float *dw, float *db,
                           const float *dout, const float *inp,
                           const float *w, const float *mean,
                           const float *rstd, int N, int C) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0 || C <= 0) return;
  /* dw/db first: they read dout, which a caller might alias with dinp. */
  if (dw || db) {
    const int nChunk = (N + LN_ROWS - 1) / LN_ROWS;
    BT_ASSERT(nChunk <= 65535);
    float *partW = (float *)bt_cuda_scratch(
        cu, 2 * (size_t)nChunk * C * sizeof(float));
    float *partB = partW + (size_t)nChunk * C;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)nChunk);
    BT_CUDA_ACT(be, bt_k_ln_dwdb_part<act_t><<<grid, dim3(32, 8), 0,
                                                cu->stream>>>(
                        partW, partB, (const act_t *)dout,
                        (const act_t *)inp, mean, rstd, N, C));
    BT_CUDA_LAUNCHED(cu);
    bt_k_ln_dwdb_final<<<(C + 255) / 256, 256, 0, cu->stream>>>(
        dw, db, partW, partB, nChunk, C);
    BT_CUDA_LAUNCHED(cu);
  }
  if (dinp) {
    BT_CUDA_ACT(be, bt_k_ln_bwd_dinp<act_t><<<(N + LN_WARPS - 1) / LN_WARPS,
                                               32 * LN_WARPS, 0, cu->stream>>>(
                        (act_t *)dinp, (const act_t *)dout,
                        (const act_t *)inp, (const act_t *)w, mean, rstd, N,
                        C, row_vec(C, dinp, dout, inp, w)));
    BT_CUDA_LAUNCHED(cu);
  }
}

/* ======================================================================
 * GELU (tanh approximation) and residual
 * ====================================================================== */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

__device__ __forceinline__ float bt_gelu(float x) {
  const float u = GELU_K * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}

/* d/dx = 0.5 (1 + tanh u) + 0.5 x sech^2(u) du/dx; sech^2 = 1 - tanh^2
 * (no cosh overflow for large |u|). */
__device__ __forceinline__ float bt_gelu_grad(float x) {
  const float u = GELU_K * (x + 0.044715f * x * x * x);
  const float th = tanhf(u);
  const float sech2 = 1.0f - th * th;
  return 0.5f * (1.0f + th) +
         0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

/* Vector path for the first nVec groups of BT_VEC, scalar for the rest
 * (the residual kernels below say how the wrapper picks nVec). */
template <typename T>
__global__ void bt_k_gelu_fwd(T *out, const T *inp, size_t n, size_t nVec) {
  GRID_STRIDE(g, nVec) {
    float x[BT_VEC];
    bt_ld8(inp + BT_VEC * g, x);
    for (int k = 0; k < BT_VEC; k++) x[k] = bt_gelu(x[k]);
    bt_st8(out + BT_VEC * g, x);
  }
  const size_t i0 = BT_VEC * nVec;
  GRID_STRIDE(j, n - i0) bt_st(out + i0 + j, bt_gelu(bt_ld(inp + i0 + j)));
}

template <typename T>
__global__ void bt_k_gelu_bwd(T *dinp, const T *inp, const T *dout, size_t n,
                              size_t nVec) {
  GRID_STRIDE(g, nVec) {
    float x[BT_VEC], d[BT_VEC], y[BT_VEC];
    bt_ld8(inp + BT_VEC * g, x);
    bt_ld8(dout + BT_VEC * g, d);
    bt_ld8(dinp + BT_VEC * g, y);
    for (int k = 0; k < BT_VEC; k++) y[k] += bt_gelu_grad(x[k]) * d[k];
    bt_st8(dinp + BT_VEC * g, y);
  }
  const size_t i0 = BT_VEC * nVec;
  GRID_STRIDE(j, n - i0) {
    const size_t i = i0 + j;
    bt_st(dinp + i, bt_ld(dinp + i) + bt_gelu_grad(bt_ld(inp + i)) *
                                          bt_ld(dout + i));
  }
}

/* The element-wise kernels below take the vector path (cuda_common.h,
 * BT_VEC) for the first nVec groups of 8 elements and the scalar loop for
 * elements 8 nVec .. n-1; the wrapper sets nVec = n / 8 when every
 * pointer is 16-byte aligned, else 0. Launch: bt_cuda_grid of the larger
 * of the two loops' counts (ew_grid). All [act]. */
template <typename T>
__global__ void bt_k_residual_fwd(T *out, const T *a, const T *b, size_t n,
                                  size_t nVec) {
  GRID_STRIDE(g, nVec) {
    float x[BT_VEC], y[BT_VEC];
    bt_ld8(a + BT_VEC * g, x);
    bt_ld8(b + BT_VEC * g, y);
    for (int k = 0; k < BT_VEC; k++) x[k] += y[k];
    bt_st8(out + BT_VEC * g, x);
  }
  const size_t i0 = BT_VEC * nVec;
  GRID_STRIDE(j, n - i0) {
    const size_t i = i0 + j;
    bt_st(out + i, bt_ld(a + i) + bt_ld(b + i));
  }
}

/* da and db may be the same buffer: the two updates are sequential in one
 * thread, so it then receives 2 * dout (in bf16: rounded after each add,
 * as the CPU reference does), as the contract implies. */
template <typename T>
__global__ void bt_k_residual_bwd(T *da, T *db, const T *dout, size_t n,
                                  size_t nVec) {
  GRID_STRIDE(g, nVec) {
    float d[BT_VEC], x[BT_VEC];
    bt_ld8(dout + BT_VEC * g, d);
    if (da) {
      bt_ld8(da + BT_VEC * g, x);
      for (int k = 0; k < BT_VEC; k++) x[k] += d[k];
      bt_st8(da + BT_VEC * g, x);
    }
    if (db) {
      bt_ld8(db + BT_VEC * g, x);
      for (int k = 0; k < BT_VEC; k++) x[k] += d[k];
      bt_st8(db + BT_VEC * g, x);
    }
  }
  const size_t i0 = BT_VEC * nVec;
  GRID_STRIDE(j, n - i0) {
    const size_t i = i0 + j;
    const float d = bt_ld(dout + i);
    if (da) bt_st(da + i, bt_ld(da + i) + d);
    if (db) bt_st(db + i, bt_ld(db + i) + d);
  }
}

/* nVec for n elements at these pointers (NULL counts as aligned). */
static size_t ew_nvec(size_t n, const void *p0, const void *p1,
                      const void *p2) {
  return bt_cuda_al16(p0) && bt_cuda_al16(p1) && bt_cuda_al16(p2)
             ? n / BT_VEC
             : 0;
}
static unsigned ew_grid(size_t n, size_t nVec) {
  const size_t nTail = n - BT_VEC * nVec;
  return bt_cuda_grid(nVec > nTail ? nVec : nTail, 256);
}

void bt_cuda_gelu_fwd(bt_backend *be, float *out, const float *inp, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  const size_t nVec = ew_nvec(n, out, inp, NULL);
  BT_CUDA_ACT(be, bt_k_gelu_fwd<act_t><<<ew_grid(n, nVec), 256, 0,
                                          cu->stream>>>(
                      (act_t *)out, (const act_t *)inp, n, nVec));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_gelu_bwd(bt_backend *be, float *dinp, const float *inp,
                      const float *dout, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  const size_t nVec = ew_nvec(n, dinp, inp, dout);
  BT_CUDA_ACT(be, bt_k_gelu_bwd<act_t><<<ew_grid(n, nVec), 256, 0,
                                          cu->stream>>>(
                      (act_t *)dinp, (const act_t *)inp, (const act_t *)dout,
                      n, nVec));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_residual_fwd(bt_backend *be, float *out, const float *a,
                          const float *b, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  const size_t nVec = ew_nvec(n, out, a, b);
  BT_CUDA_ACT(be, bt_k_residual_fwd<act_t><<<ew_grid(n, nVec), 256, 0,
                                              cu->stream>>>(
                      (act_t *)out, (const act_t *)a, (const act_t *)b, n,
                      nVec));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_residual_bwd(bt_backend *be, float *da, float *db,
                          const float *dout, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0 || (!da && !db)) return;
  const size_t nVec = ew_nvec(n, da, db, dout);
  BT_CUDA_ACT(be, bt_k_residual_bwd<act_t><<<ew_grid(n, nVec), 256, 0,
                                              cu->stream>>>(
                      (act_t *)da, (act_t *)db, (const act_t *)dout, n,
                      nVec));
  BT_CUDA_LAUNCHED(cu);
}

/* ======================================================================
 * softmax cross-entropy: one 256-thread block per row
 * ====================================================================== */

#define XENT_THREADS 256

/* logits [act], losses fp32 (the row statistics are fp32 throughout). */
template <typename T>
__global__ void bt_k_xent_fwd(float *losses, const T *logits,
                              const int32_t *targets, int V, int Vp) {
  __shared__ float sh[32];
  const int row = blockIdx.x;
  const int t = targets[row];
  if (t < 0) { /* masked row; t is the same in every thread of the block */
    if (threadIdx.x == 0) losses[row] = 0.0f;
    return;
  }
  const T *x = logits + (size_t)row * Vp;
  float M, S;
  bt_xent_row_stats(x, V, sh, &M, &S);
  if (threadIdx.x == 0) {
    /* -log p_t = log S - (x_t - M); a target >= V is a loader bug: NaN
     * makes it visible in the loss instead of reading padding. */
    losses[row] = (t < V) ? logf(S) - (bt_ld(x + t) - M) : NAN;
  }
}

/* dlogits may alias logits: each element is read and then written by the
 * same thread, after every thread has finished the statistics pass (both
 * have the [act] type, so an element's bytes are its own in either
 * dtype). */
template <typename T>
__global__ void bt_k_xent_bwd(T *dlogits, const T *logits,
                              const int32_t *targets, float scale, int V,
                              int Vp, int bVec) {
  __shared__ float sh[32];
  const int row = blockIdx.x;
  const int t = targets[row];
  const T *x = logits + (size_t)row * Vp;
  T *dx = dlogits + (size_t)row * Vp;
  if (t < 0) {
    for (int v = threadIdx.x; v < Vp; v += blockDim.x) bt_st(dx + v, 0.0f);
    return;
  }
  float M, S;
  bt_xent_row_stats(x, V, sh, &M, &S);
  const float bad = (t < V) ? 0.0f : NAN; /* see the forward */
  if (bVec) { /* row_vec: 8 columns per thread and step, same arithmetic */
    for (int v0 = BT_VEC * threadIdx.x; v0 < Vp; v0 += BT_VEC * blockDim.x) {
      float xv[BT_VEC];
      bt_ld8(x + v0, xv);
      for (int k = 0; k < BT_VEC; k++) {
        const int v = v0 + k;
        const float p = expf(xv[k] - M) / S;
        xv[k] = v < V ? (p - (v == t ? 1.0f : 0.0f)) * scale + bad : 0.0f;
      }
      bt_st8(dx + v0, xv);
    }
    return;
  }
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    if (v < V) {
      const float p = expf(bt_ld(x + v) - M) / S;
      bt_st(dx + v, (p - (v == t ? 1.0f : 0.0f)) * scale + bad);
    } else {
      bt_st(dx + v, 0.0f);
    }
  }
}

void bt_cuda_xent_fwd(bt_backend *be, float *losses, const float *logits,
                      const int32_t *targets, int N, int V, int Vp) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0) return;
  BT_ASSERT(V > 0 && V <= Vp);
  BT_CUDA_ACT(be, bt_k_xent_fwd<act_t><<<N, XENT_THREADS, 0, cu->stream>>>(
                      losses, (const act_t *)logits, targets, V, Vp));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_xent_bwd(bt_backend *be, float *dlogits, const float *logits,
                      const int32_t *targets, float scale, int N, int V,
                      int Vp) {
  bt_cuda *cu = bt_cuda_of(be);
  if (N <= 0) return;
  BT_ASSERT(V > 0 && V <= Vp);
  BT_CUDA_ACT(be, bt_k_xent_bwd<act_t><<<N, XENT_THREADS, 0, cu->stream>>>(
                      (act_t *)dlogits, (const act_t *)logits, targets, scale,
                      V, Vp, row_vec(Vp, dlogits, logits, NULL, NULL)));
  BT_CUDA_LAUNCHED(cu);
}

/* ======================================================================
 * AdamW, sumsq, scale
 * ====================================================================== */

__global__ void bt_k_adamw(float *param, const float *grad, float *m,
                           float *v, size_t n, float lr, float b1, float b2,
                           float eps, float wd, float gs, float bc1,
                           float bc2) {
  GRID_STRIDE(i, n) {
    const float g = grad[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    const float p = param[i];
    param[i] = p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
  }
}

void bt_cuda_adamw(bt_backend *be, float *param, const float *grad, float *m,
                   float *v, size_t n, const bt_adamw_hparams *hp) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  BT_ASSERT(hp->t >= 1);
  /* Bias corrections once on the host, in float like the CPU reference. */
  const float bc1 = 1.0f - powf(hp->beta1, (float)hp->t);
  const float bc2 = 1.0f - powf(hp->beta2, (float)hp->t);
  bt_k_adamw<<<bt_cuda_grid(n, 256), 256, 0, cu->stream>>>(
      param, grad, m, v, n, hp->lr, hp->beta1, hp->beta2, hp->eps,
      hp->weight_decay, hp->grad_scale, bc1, bc2);
  BT_CUDA_LAUNCHED(cu);
}

/* Pass 1: always BT_CUDA_SUMSQ_BLOCKS blocks of BT_CUDA_SUMSQ_THREADS
 * (the grid-stride assignment, hence the result bits, depend on n only). */
__global__ void bt_k_sumsq_part(double *part, const float *x, size_t n) {
  __shared__ double sh[BT_CUDA_SUMSQ_THREADS];
  double acc = 0.0;
  GRID_STRIDE(i, n) {
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

/* Pass 2: one block of BT_CUDA_SUMSQ_BLOCKS threads, fixed tree; the
 * result goes to part[BT_CUDA_SUMSQ_BLOCKS]. */
__global__ void bt_k_sumsq_final(double *part) {
  __shared__ double sh[BT_CUDA_SUMSQ_BLOCKS];
  sh[threadIdx.x] = part[threadIdx.x];
  __syncthreads();
  for (int s = BT_CUDA_SUMSQ_BLOCKS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[BT_CUDA_SUMSQ_BLOCKS] = sh[0];
}

double bt_cuda_sumsq(bt_backend *be, const float *x, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return 0.0;
  bt_k_sumsq_part<<<BT_CUDA_SUMSQ_BLOCKS, BT_CUDA_SUMSQ_THREADS, 0,
                    cu->stream>>>(cu->pSumsqPart, x, n);
  BT_CUDA_LAUNCHED(cu);
  bt_k_sumsq_final<<<1, BT_CUDA_SUMSQ_BLOCKS, 0, cu->stream>>>(cu->pSumsqPart);
  BT_CUDA_LAUNCHED(cu);
  BT_CUDA_CHECK(cudaMemcpyAsync(cu->pHostSumsq,
                                cu->pSumsqPart + BT_CUDA_SUMSQ_BLOCKS,
                                sizeof(double), cudaMemcpyDeviceToHost,
                                cu->stream));
  BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  return *cu->pHostSumsq;
}

__global__ void bt_k_scale(float *x, float s, size_t n) {
  GRID_STRIDE(i, n) x[i] *= s;
}

void bt_cuda_scale(bt_backend *be, float *x, float s, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  bt_k_scale<<<bt_cuda_grid(n, 256), 256, 0, cu->stream>>>(x, s, n);
  BT_CUDA_LAUNCHED(cu);
}

/* out[i] = in[i] rounded to the [act] type (nearest even, as base/bf16.h):
 * the bf16 working copy of the fp32 master weights, or fp32 input data
 * entering a bf16 model. in is fp32 whatever the storage; vector path as
 * the element-wise kernels above. */
template <typename T>
__global__ void bt_k_to_act(T *out, const float *in, size_t n, size_t nVec) {
  GRID_STRIDE(g, nVec) {
    float x[BT_VEC];
    bt_ld8(in + BT_VEC * g, x);
    bt_st8(out + BT_VEC * g, x);
  }
  const size_t i0 = BT_VEC * nVec;
  GRID_STRIDE(j, n - i0) bt_st(out + i0 + j, in[i0 + j]);
}

/* fp32 storage: a device-to-device copy, nothing when out == in. bf16: the
 * conversion kernel; out must be its own buffer there (a bf16 element and
 * the float it comes from do not share their bytes: in place, threads
 * would overwrite floats other threads have yet to read). */
void bt_cuda_to_act(bt_backend *be, float *out, const float *in, size_t n) {
  bt_cuda *cu = bt_cuda_of(be);
  if (n == 0) return;
  if (be->eActDtype == BT_ACT_F32) {
    if (out == in) return;
    BT_CUDA_CHECK(cudaMemcpyAsync(out, in, n * sizeof(float),
                                  cudaMemcpyDeviceToDevice, cu->stream));
    return;
  }
  BT_ASSERT((const void *)out != (const void *)in);
  const size_t nVec = ew_nvec(n, out, in, NULL);
  bt_k_to_act<__nv_bfloat16><<<ew_grid(n, nVec), 256, 0, cu->stream>>>(
      (__nv_bfloat16 *)out, in, n, nVec);
  BT_CUDA_LAUNCHED(cu);
}
