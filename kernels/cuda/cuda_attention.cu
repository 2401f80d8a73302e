/*
 * cuda_attention.cu: multi-head self-attention of the CUDA backend:
 * attention_fwd/bwd (the GPT), attention_masked_fwd/bwd (the speech
 * encoder), attention_decode (`baton infer`).
 *
 * Which code runs (the backend's activation dtype, ops.h bt_act_dtype):
 *   fp32  our flash kernels below, in fp32.
 *   bf16  attention_fwd/bwd: cuDNN's fused flash attention on tensor cores
 *         (cudnn_attention.h: bf16 q, k, v, out, dout, dqkv; fp32 stats in
 *         `att`, the same log-sum-exp [B, NH, T] the flash forward saves;
 *         deterministic backward taking the forward output), when
 *         bt_cudnn_attention_available() says yes for this device and head
 *         size (cuDNN >= 9, sm_80+, hs % 8 == 0, hs <= 128); otherwise the
 *         same flash kernels instantiated for bf16 storage (cuda_common.h
 *         BT_CUDA_ACT), with one warning per (device, head size). The
 *         masked ops and the decode step are fp32 only (the speech model
 *         refuses bf16, inference is fp32): in bf16 they stop with a
 *         message (attn_require_fp32).
 *
 * Flash-style kernels (Dao et al., FlashAttention-2, arXiv:2307.08691),
 * written for clarity before speed, templated over the [act] storage type
 * (loads and stores through bt_ld / bt_st, arithmetic in fp32):
 *
 *   forward  (bt_k_flash_fwd)   one block per (query tile of 32 rows, b, h);
 *            K/V tiles of 32 keys through shared memory; online softmax
 *            per row; saves the row's log-sum-exp (att = B*NH*T floats).
 *   backward (two kernels, no atomics anywhere; dqkv is WRITTEN, ops.def):
 *     bt_k_flash_bwd_dq   one block per (query tile, b, h): D_i =
 *                         rowsum(dO_i * O_i) from the forward output the
 *                         op is given (one warp sum per row, stored in
 *                         scratch), then one pass over the key tiles for
 *                         dQ_i.
 *     bt_k_flash_bwd_dkv  one block per (key tile, b, h) looping over the
 *                         query tiles at or after it: dK_j, dV_j (reads D).
 *   Every output row is owned by exactly one warp of one block, and each
 *   sum runs in a fixed order: deterministic (cuda_common.h invariant 2).
 *
 * Work split inside a block: 8 warps; a warp owns 4 query rows (forward,
 * dQ) or 4 keys (dK/dV). For the score of one (row, key) pair the lanes
 * take different keys (or queries): lane l computes the full dot product
 * for element l of the tile, so the tile side that lanes index is stored
 * with a padded stride (hs + 1) in shared memory, which makes those reads
 * bank-conflict free. For the weighted sums over a tile (P V, dS K, ...)
 * lanes take head dimensions d = lane + 32 i (i < 4, so hs <= 128) and the
 * per-element weights are broadcast with __shfl_sync.
 *
 * Decoding (bt_k_attn_decode: one new query per head against a KV cache,
 * `baton infer`) is a separate, simple kernel; see its comment.
 *
 * The reference kernels at the end (materialised scores, one block per
 * row or column) exist only to cross-check these in tests/gpu.
 *
 * Masks (attention_masked_fwd/bwd, the speech encoder): every flash kernel
 * takes keyLen (device int32 [B], NULL = T) and a causal flag. Query row qi
 * of utterance b sees keys 0..kLast, kLast = causal ? qi : keyLen[b] - 1;
 * rows qi >= keyLen[b] are padding: out 0, lse 0, no gradient. With
 * keyLen = NULL and causal = 1 every test below reduces to the unmasked
 * causal kernel's, so attention_fwd/bwd (the GPT) compute the same bits.
 *
 * Layouts (ops.h): qkv[B, T, 3C] with q | k | v; head h uses channels
 * h*hs .. h*hs + hs - 1 of each; out and dout [B, T, C]; the saved
 * log-sum-exp and the scratch D are [B, NH, T].
 */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cudnn_attention.h"

#define FA_BR 32     /* query rows per block (forward, dQ) */
#define FA_BC 32     /* keys per tile = lanes */
#define FA_WARPS 8
#define FA_RPW (FA_BR / FA_WARPS) /* rows (or keys) per warp */
#define FA_DPL 4     /* head dims per lane: hs <= 32 * FA_DPL */
#define FA_HS_MAX (32 * FA_DPL)
#define FULL 0xffffffffu

/* Dynamic shared memory of each kernel, in floats, for head size hs. */
static size_t fa_fwd_smem(int hs) {
  return (size_t)FA_BR * hs + 2 * (size_t)FA_BC * (hs + 1);
}
static size_t fa_dq_smem(int hs) {
  return 2 * (size_t)FA_BR * hs + 2 * (size_t)FA_BC * (hs + 1) + FA_BR;
}
static size_t fa_dkv_smem(int hs) {
  return 2 * (size_t)FA_BC * hs + 2 * (size_t)FA_BR * (hs + 1) + 2 * FA_BR;
}

/* Keys and values of rows [k0, k0 + FA_BC) of one (b, h) into shared
 * memory (row stride ldk), zero past T. Every thread of the block takes
 * part; the caller puts the barriers around it. The forward and the dQ
 * backward stream K/V tiles the same way. */
template <typename Act>
__device__ __forceinline__ void fa_load_kv(float *Ks, float *Vs,
                                           const Act *base, int k0, int T,
                                           int C, int C3, int hs, int ldk) {
  for (int e = threadIdx.x; e < FA_BC * hs; e += blockDim.x) {
    const int j = e / hs, d = e % hs, t = k0 + j;
    Ks[j * ldk + d] = (t < T) ? bt_ld(base + (size_t)t * C3 + C + d) : 0.0f;
    Vs[j * ldk + d] =
        (t < T) ? bt_ld(base + (size_t)t * C3 + 2 * C + d) : 0.0f;
  }
}

/* ---- forward ------------------------------------------------------------- */

template <typename Act>
__global__ void __launch_bounds__(32 * FA_WARPS)
    bt_k_flash_fwd(Act *out, float *lse, const Act *qkv,
                   const int32_t *keyLen, int causal, int T, int C, int NH,
                   int hs, float scale) {
  extern __shared__ float sm[];
  const int ldk = hs + 1;
  float *Qs = sm;                 /* [FA_BR][hs], broadcast reads */
  float *Ks = Qs + FA_BR * hs;    /* [FA_BC][hs + 1], lane = key */
  float *Vs = Ks + FA_BC * ldk;   /* [FA_BC][hs + 1], lane = dim */
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int q0 = blockIdx.x * FA_BR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t C3 = 3 * (size_t)C;
  const Act *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
  const int nValid = keyLen ? keyLen[b] : T;

  for (int e = threadIdx.x; e < FA_BR * hs; e += blockDim.x) {
    const int r = e / hs, d = e % hs, t = q0 + r;
    Qs[e] = (t < T) ? bt_ld(base + (size_t)t * C3 + d) : 0.0f;
  }

  float m[FA_RPW], l[FA_RPW], o[FA_RPW][FA_DPL];
#pragma unroll
  for (int rr = 0; rr < FA_RPW; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) o[rr][i] = 0.0f;
  }

  /* Causal: the block's last row is min(T, q0 + FA_BR) - 1, so keys stop
   * there; the last tile is the diagonal one (FA_BR == FA_BC). Keys at or
   * past nValid are masked for every row. */
  const int kEnd = causal ? min(nValid, q0 + FA_BR) : nValid;
  for (int k0 = 0; k0 < kEnd; k0 += FA_BC) {
    __syncthreads(); /* Q visible / previous tile no longer read */
    fa_load_kv(Ks, Vs, base, k0, T, C, C3, hs, ldk);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < FA_RPW; rr++) {
      const int r = warp * FA_RPW + rr, qi = q0 + r;
      const int kLast = causal ? qi : nValid - 1;
      if (qi >= nValid || k0 > kLast) continue; /* warp-uniform */
      const int kj = k0 + lane;
      const bool ok = kj <= kLast; /* implies kj < nValid <= T */
      float s = -INFINITY;
      if (ok) {
        float acc = 0.0f;
        for (int d = 0; d < hs; d++) acc += Qs[r * hs + d] * Ks[lane * ldk + d];
        s = acc * scale;
      }
      /* Lane 0's key k0 <= qi is always valid, so mt is finite. */
      const float mt = bt_warp_max(s);
      const float mNew = fmaxf(m[rr], mt);
      const float p = ok ? expf(s - mNew) : 0.0f;
      const float alpha = expf(m[rr] - mNew); /* first tile: exp(-inf) = 0 */
      l[rr] = l[rr] * alpha + bt_warp_sum(p);
#pragma unroll
      for (int i = 0; i < FA_DPL; i++) o[rr][i] *= alpha;
#pragma unroll 4
      for (int j = 0; j < FA_BC; j++) {
        const float pj = __shfl_sync(FULL, p, j);
#pragma unroll
        for (int i = 0; i < FA_DPL; i++) {
          const int d = lane + 32 * i;
          if (d < hs) o[rr][i] += pj * Vs[j * ldk + d];
        }
      }
      m[rr] = mNew;
    }
  }

#pragma unroll
  for (int rr = 0; rr < FA_RPW; rr++) {
    const int qi = q0 + warp * FA_RPW + rr;
    if (qi >= T) continue;
    const bool pad = qi >= nValid; /* padded query row: 0, lse 0 */
    const float inv = pad ? 0.0f : 1.0f / l[rr];
    Act *po = out + ((size_t)b * T + qi) * C + (size_t)h * hs;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) {
      const int d = lane + 32 * i;
      if (d < hs) bt_st(po + d, pad ? 0.0f : o[rr][i] * inv);
    }
    if (lane == 0) lse[(size_t)bh * T + qi] = pad ? 0.0f : m[rr] + logf(l[rr]);
  }
}

/* ---- backward: D and dQ ------------------------------------------------- */

template <typename Act>
__global__ void __launch_bounds__(32 * FA_WARPS)
    bt_k_flash_bwd_dq(Act *dqkv, float *Dbuf, const Act *dout,
                      const Act *out, const Act *qkv, const float *lse,
                      const int32_t *keyLen, int causal, int T, int C,
                      int NH, int hs, float scale) {
  extern __shared__ float sm[];
  const int ldk = hs + 1;
  float *Qs = sm;                   /* [FA_BR][hs] */
  float *dOs = Qs + FA_BR * hs;     /* [FA_BR][hs] */
  float *Ks = dOs + FA_BR * hs;     /* [FA_BC][hs + 1] */
  float *Vs = Ks + FA_BC * ldk;     /* [FA_BC][hs + 1] */
  float *Ds = Vs + FA_BC * ldk;     /* [FA_BR] D of the block's rows */
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int q0 = blockIdx.x * FA_BR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t C3 = 3 * (size_t)C;
  const Act *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
  const size_t oOff = (size_t)b * T * C + (size_t)h * hs;
  const int nValid = keyLen ? keyLen[b] : T;

  for (int e = threadIdx.x; e < FA_BR * hs; e += blockDim.x) {
    const int r = e / hs, d = e % hs, t = q0 + r;
    Qs[e] = (t < T) ? bt_ld(base + (size_t)t * C3 + d) : 0.0f;
    dOs[e] = (t < T) ? bt_ld(dout + oOff + (size_t)t * C + d) : 0.0f;
  }
  __syncthreads(); /* dO visible */
  /* D_i = rowsum(dO_i * O_i) (FlashAttention-2, Alg. 2 line 4) from the
   * forward output: equal to sum_j P_ij dP_ij without a pass over the
   * keys. A warp per row, lanes over head dims, one butterfly sum: fixed
   * order. Into shared memory for the dQ loop (registers here spill) and
   * Dbuf for the dK/dV kernel (stream order). A padded row's out is 0. */
#pragma unroll 1
  for (int rr = 0; rr < FA_RPW; rr++) {
    const int r = warp * FA_RPW + rr, qi = q0 + r;
    float part = 0.0f;
    if (qi < T)
      for (int d = lane; d < hs; d += 32)
        part += dOs[r * hs + d] * bt_ld(out + oOff + (size_t)qi * C + d);
    part = bt_warp_sum(part);
    if (lane == 0) {
      Ds[r] = part;
      if (qi < T) Dbuf[(size_t)bh * T + qi] = part;
    }
  }
  float L[FA_RPW], dq[FA_RPW][FA_DPL];
#pragma unroll
  for (int rr = 0; rr < FA_RPW; rr++) {
    const int qi = q0 + warp * FA_RPW + rr;
    L[rr] = (qi < T) ? lse[(size_t)bh * T + qi] : 0.0f;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) dq[rr][i] = 0.0f;
  }
  const int kEnd = causal ? min(nValid, q0 + FA_BR) : nValid;

  for (int k0 = 0; k0 < kEnd; k0 += FA_BC) {
    __syncthreads(); /* Q, D visible / previous tile no longer read */
    fa_load_kv(Ks, Vs, base, k0, T, C, C3, hs, ldk);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < FA_RPW; rr++) {
      const int r = warp * FA_RPW + rr, qi = q0 + r;
      const int kLast = causal ? qi : nValid - 1;
      if (qi >= nValid || k0 > kLast) continue; /* warp-uniform */
      const int kj = k0 + lane;
      float p = 0.0f, dp = 0.0f;
      if (kj <= kLast) {
        float s = 0.0f;
        for (int d = 0; d < hs; d++) {
          s += Qs[r * hs + d] * Ks[lane * ldk + d];
          dp += dOs[r * hs + d] * Vs[lane * ldk + d];
        }
        p = expf(s * scale - L[rr]);
      }
      const float ds = p * (dp - Ds[r]) * scale; /* 0 when masked */
#pragma unroll 4
      for (int j = 0; j < FA_BC; j++) {
        const float dsj = __shfl_sync(FULL, ds, j);
#pragma unroll
        for (int i = 0; i < FA_DPL; i++) {
          const int d = lane + 32 * i;
          if (d < hs) dq[rr][i] += dsj * Ks[j * ldk + d];
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < FA_RPW; rr++) {
    const int qi = q0 + warp * FA_RPW + rr;
    if (qi >= T) continue;
    Act *pd = dqkv + ((size_t)b * T + qi) * C3 + (size_t)h * hs;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) {
      const int d = lane + 32 * i;
      if (d < hs) bt_st(pd + d, dq[rr][i]); /* WRITTEN (ops.def) */
    }
  }
}

/* ---- backward: dK and dV ------------------------------------------------ */

template <typename Act>
__global__ void __launch_bounds__(32 * FA_WARPS)
    bt_k_flash_bwd_dkv(Act *dqkv, const float *Dbuf, const Act *dout,
                       const Act *qkv, const float *lse,
                       const int32_t *keyLen, int causal, int T, int C,
                       int NH, int hs, float scale) {
  extern __shared__ float sm[];
  const int ldq = hs + 1;
  float *Kb = sm;                   /* [FA_BC][hs] this block's keys */
  float *Vb = Kb + FA_BC * hs;      /* [FA_BC][hs] */
  float *Qs = Vb + FA_BC * hs;      /* [FA_BR][hs + 1], lane = query */
  float *dOs = Qs + FA_BR * ldq;    /* [FA_BR][hs + 1] */
  float *Ls = dOs + FA_BR * ldq;    /* [FA_BR] */
  float *Ds = Ls + FA_BR;           /* [FA_BR] */
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int j0 = blockIdx.x * FA_BC;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t C3 = 3 * (size_t)C;
  const Act *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
  const Act *obase = dout + (size_t)b * T * C + (size_t)h * hs;
  const int nValid = keyLen ? keyLen[b] : T;

  for (int e = threadIdx.x; e < FA_BC * hs; e += blockDim.x) {
    const int j = e / hs, d = e % hs, t = j0 + j;
    Kb[e] = (t < T) ? bt_ld(base + (size_t)t * C3 + C + d) : 0.0f;
    Vb[e] = (t < T) ? bt_ld(base + (size_t)t * C3 + 2 * C + d) : 0.0f;
  }
  float dk[FA_RPW][FA_DPL], dv[FA_RPW][FA_DPL];
#pragma unroll
  for (int kk = 0; kk < FA_RPW; kk++)
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) dk[kk][i] = dv[kk][i] = 0.0f;

  /* Causal: queries i >= j only, so start at the diagonal tile (j0 is a
   * multiple of FA_BR as FA_BR == FA_BC). Padded queries (>= nValid) pass
   * no gradient. */
  for (int i0 = causal ? j0 : 0; i0 < nValid; i0 += FA_BR) {
    __syncthreads(); /* K/V block visible / previous tile no longer read */
    for (int e = threadIdx.x; e < FA_BR * hs; e += blockDim.x) {
      const int x = e / hs, d = e % hs, t = i0 + x;
      Qs[x * ldq + d] = (t < T) ? bt_ld(base + (size_t)t * C3 + d) : 0.0f;
      dOs[x * ldq + d] = (t < T) ? bt_ld(obase + (size_t)t * C + d) : 0.0f;
    }
    for (int x = threadIdx.x; x < FA_BR; x += blockDim.x) {
      const int t = i0 + x;
      Ls[x] = (t < T) ? lse[(size_t)bh * T + t] : 0.0f;
      Ds[x] = (t < T) ? Dbuf[(size_t)bh * T + t] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < FA_RPW; kk++) {
      const int jj = warp * FA_RPW + kk, kj = j0 + jj;
      if (kj >= nValid) continue; /* warp-uniform; padded key: dk = dv = 0 */
      const int qi = i0 + lane;
      float p = 0.0f, ds = 0.0f;
      if (qi < nValid && (!causal || qi >= kj)) {
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < hs; d++) {
          s += Qs[lane * ldq + d] * Kb[jj * hs + d];
          dp += dOs[lane * ldq + d] * Vb[jj * hs + d];
        }
        p = expf(s * scale - Ls[lane]);
        ds = p * (dp - Ds[lane]) * scale;
      }
#pragma unroll 4
      for (int x = 0; x < FA_BR; x++) {
        const float px = __shfl_sync(FULL, p, x);
        const float dsx = __shfl_sync(FULL, ds, x);
#pragma unroll
        for (int i = 0; i < FA_DPL; i++) {
          const int d = lane + 32 * i;
          if (d < hs) {
            dv[kk][i] += px * dOs[x * ldq + d];
            dk[kk][i] += dsx * Qs[x * ldq + d];
          }
        }
      }
    }
  }

#pragma unroll
  for (int kk = 0; kk < FA_RPW; kk++) {
    const int kj = j0 + warp * FA_RPW + kk;
    if (kj >= T) continue;
    Act *pd = dqkv + ((size_t)b * T + kj) * C3 + (size_t)h * hs;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) {
      const int d = lane + 32 * i;
      if (d < hs) {
        bt_st(pd + C + d, dk[kk][i]); /* WRITTEN; 0 for a padded key */
        bt_st(pd + 2 * C + d, dv[kk][i]);
      }
    }
  }
}

/* ---- host side ------------------------------------------------------------ */

static int attn_head_size(int C, int NH) {
  BT_ASSERT(NH > 0 && C > 0 && C % NH == 0);
  const int hs = C / NH;
  BT_ASSERT(hs <= FA_HS_MAX); /* GPT-2: 64; the kernels hold 4 dims/lane */
  return hs;
}

/* Backends alive (create calls bt_cuda_attention_init, destroy
 * bt_cuda_attention_release): cuDNN's handles, graphs and workspaces are
 * process-wide (cudnn_attention.cpp) and are freed with the last backend.
 * One thread drives the backends (cuda_common.h). */
static int g_nLive = 0;

/* Raises the dynamic shared-memory limit of one kernel to its largest
 * tile's need. */
template <typename K>
static cudaError_t attn_opt_in(K kernel, size_t nFloat) {
  return cudaFuncSetAttribute(kernel,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              (int)(nFloat * sizeof(float)));
}

cudaError_t bt_cuda_attention_init(void) {
  /* Tiles at hs = 128 need up to ~66 KB (above the 48 KB default); sm_80
   * allows 163 KB and sm_90 227 KB per block once opted in. Both storage
   * types of each kernel. */
  cudaError_t e;
  if ((e = attn_opt_in(bt_k_flash_fwd<float>, fa_fwd_smem(FA_HS_MAX))) ||
      (e = attn_opt_in(bt_k_flash_fwd<__nv_bfloat16>,
                       fa_fwd_smem(FA_HS_MAX))) ||
      (e = attn_opt_in(bt_k_flash_bwd_dq<float>, fa_dq_smem(FA_HS_MAX))) ||
      (e = attn_opt_in(bt_k_flash_bwd_dq<__nv_bfloat16>,
                       fa_dq_smem(FA_HS_MAX))) ||
      (e = attn_opt_in(bt_k_flash_bwd_dkv<float>, fa_dkv_smem(FA_HS_MAX))) ||
      (e = attn_opt_in(bt_k_flash_bwd_dkv<__nv_bfloat16>,
                       fa_dkv_smem(FA_HS_MAX))))
    return e;
  g_nLive++;
  return cudaSuccess;
}

void bt_cuda_attention_release(void) {
  if (g_nLive > 0 && --g_nLive == 0) bt_cudnn_attention_free();
}

size_t bt_cuda_attention_att_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  /* per-row log-sum-exp: the flash forward's, or cuDNN's stats (bf16) */
  return (size_t)B * NH * T;
}

size_t bt_cuda_attention_scratch_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T; /* D = rowsum(dO * O) of the flash backward */
}

/* 1 if attention_fwd/bwd of head size hs run through cuDNN on this
 * backend: bf16 activations and bt_cudnn_attention_available(hs). The
 * answer is fixed per (device, hs), so forward and backward always agree
 * (cuDNN's stats feed only cuDNN's backward); remembered, and a "no" is
 * logged once with cuDNN's reason. */
static int attn_use_cudnn(bt_backend *be, int hs) {
  static signed char aKnown[64][FA_HS_MAX + 1]; /* 0 ?, 1 yes, -1 no */
  if (be->eActDtype != BT_ACT_BF16) return 0;
  const int dev = bt_cuda_of(be)->device;
  BT_ASSERT(dev >= 0 && dev < 64 && hs >= 1 && hs <= FA_HS_MAX);
  signed char *p = &aKnown[dev][hs];
  if (*p == 0) {
    *p = bt_cudnn_attention_available(hs) ? 1 : -1;
    if (*p < 0)
      bt_log_warn("CUDA device %d: bf16 attention with head size %d runs "
                  "the flash kernels (CUDA cores), not cuDNN: %s",
                  dev, hs, bt_err_msg());
  }
  return *p > 0;
}

/* The masked ops and the decode step have fp32 kernels only. */
static void attn_require_fp32(bt_backend *be, const char *zOp) {
  if (be->eActDtype == BT_ACT_F32) return;
  bt_log_error("CUDA backend: %s stores fp32 activations only, and this "
               "backend's activation dtype is %s (the speech model refuses "
               "train.precision = bf16; inference runs fp32)",
               zOp, bt_act_dtype_name(be->eActDtype));
  bt_assert_fail("be->eActDtype == BT_ACT_F32", __FILE__, __LINE__);
}

/* The flash forward of attention_fwd (keyLen NULL, causal 1) and of
 * attention_masked_fwd, in the backend's storage type. */
static void flash_fwd(bt_backend *be, float *out, float *att,
                      const float *qkv, const int32_t *keyLen, int causal,
                      int B, int T, int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  const int hs = attn_head_size(C, NH);
  BT_ASSERT((long)B * NH <= 65535); /* gridDim.y */
  dim3 grid((unsigned)((T + FA_BR - 1) / FA_BR), (unsigned)(B * NH));
  const size_t nSmem = fa_fwd_smem(hs) * sizeof(float);
  BT_CUDA_ACT(be, bt_k_flash_fwd<act_t><<<grid, 32 * FA_WARPS, nSmem,
                                          cu->stream>>>(
                      (act_t *)out, att, (const act_t *)qkv, keyLen, causal,
                      T, C, NH, hs, 1.0f / sqrtf((float)hs)));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_attention_fwd(bt_backend *be, float *out, float *att,
                           const float *qkv, int B, int T, int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  if (B <= 0 || T <= 0) return;
  if (attn_use_cudnn(be, attn_head_size(C, NH))) {
    if (bt_cudnn_attention_fwd(out, att, qkv, B, T, C, NH, cu->stream))
      bt_cuda_fatal("bt_cudnn_attention_fwd", bt_err_msg(), __FILE__,
                    __LINE__);
    if (cu->bSyncCheck) BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return;
  }
  flash_fwd(be, out, att, qkv, NULL, 1, B, T, C, NH);
}

void bt_cuda_attention_masked_fwd(bt_backend *be, float *out, float *att,
                                  const float *qkv, const int32_t *keyLen,
                                  int causal, int B, int T, int C, int NH) {
  attn_require_fp32(be, "attention_masked_fwd");
  if (B <= 0 || T <= 0) return;
  flash_fwd(be, out, att, qkv, keyLen, causal, B, T, C, NH);
}

/* The flash backward: dQ (and D into scratch), then dK/dV, which reads D
 * (stream order). */
static void flash_bwd(bt_backend *be, float *dqkv, float *scratch,
                      const float *dout, const float *qkv, const float *out,
                      const float *att, const int32_t *keyLen, int causal,
                      int B, int T, int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  const int hs = attn_head_size(C, NH);
  BT_ASSERT((long)B * NH <= 65535);
  const float scale = 1.0f / sqrtf((float)hs);
  dim3 gq((unsigned)((T + FA_BR - 1) / FA_BR), (unsigned)(B * NH));
  dim3 gk((unsigned)((T + FA_BC - 1) / FA_BC), (unsigned)(B * NH));
  const size_t nSmemQ = fa_dq_smem(hs) * sizeof(float);
  const size_t nSmemK = fa_dkv_smem(hs) * sizeof(float);
  BT_CUDA_ACT(be, bt_k_flash_bwd_dq<act_t><<<gq, 32 * FA_WARPS, nSmemQ,
                                             cu->stream>>>(
                      (act_t *)dqkv, scratch, (const act_t *)dout,
                      (const act_t *)out, (const act_t *)qkv, att, keyLen,
                      causal, T, C, NH, hs, scale));
  BT_CUDA_LAUNCHED(cu);
  BT_CUDA_ACT(be, bt_k_flash_bwd_dkv<act_t><<<gk, 32 * FA_WARPS, nSmemK,
                                              cu->stream>>>(
                      (act_t *)dqkv, scratch, (const act_t *)dout,
                      (const act_t *)qkv, att, keyLen, causal, T, C, NH, hs,
                      scale));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                           const float *dout, const float *qkv,
                           const float *out, const float *att, int B, int T,
                           int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  if (B <= 0 || T <= 0) return;
  if (attn_use_cudnn(be, attn_head_size(C, NH))) {
    /* cuDNN writes dqkv, as the contract says (ops.def) */
    if (bt_cudnn_attention_bwd(dqkv, dout, qkv, out, att, B, T, C, NH,
                               cu->stream))
      bt_cuda_fatal("bt_cudnn_attention_bwd", bt_err_msg(), __FILE__,
                    __LINE__);
    if (cu->bSyncCheck) BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return;
  }
  flash_bwd(be, dqkv, scratch, dout, qkv, out, att, NULL, 1, B, T, C, NH);
}

void bt_cuda_attention_masked_bwd(bt_backend *be, float *dqkv, float *scratch,
                                  const float *dout, const float *qkv,
                                  const float *out, const float *att,
                                  const int32_t *keyLen, int causal, int B,
                                  int T, int C, int NH) {
  attn_require_fp32(be, "attention_masked_bwd");
  if (B <= 0 || T <= 0) return;
  flash_bwd(be, dqkv, scratch, dout, qkv, out, att, keyLen, causal, B, T, C,
            NH);
}

/* ---- decode: one new query against a key/value cache -------------------
 * One block per head (NH blocks of DEC_THREADS). Three phases, each a loop
 * in a fixed order, so the bits repeat:
 *   1. thread t takes positions t, t + DEC_THREADS, ...: score = q . k in
 *      fp32 over the head dims in order, times scale, into scratch; block
 *      max by butterfly (bt_block_max);
 *   2. the same positions: e = expf(score - max) into scratch; block sum
 *      (bt_block_sum); then scratch *= 1 / sum (the CPU reference also
 *      normalises the probabilities before the weighted sum);
 *   3. thread i takes head dims i, i + DEC_THREADS, ...: out = sum over
 *      positions 0..nPos-1, in order, of p[t] v[t][i].
 * The barriers inside bt_block_max/bt_block_sum also order the scratch
 * writes of one phase before the reads of the next (__syncthreads makes
 * global writes of the block visible to the block). Decoding is latency
 * bound at one query; no tiling. */
#define DEC_THREADS 128

__global__ void __launch_bounds__(DEC_THREADS)
bt_k_attn_decode(float *out, float *scores, const float *q, const float *kc,
                 const float *vc, int nPos, int C, int hs, float scale) {
  __shared__ float sh[32];
  const int h = blockIdx.x;
  const float *qh = q + (size_t)h * hs;
  float *s = scores + (size_t)h * nPos;
  float mx = -INFINITY;
  for (int t = threadIdx.x; t < nPos; t += blockDim.x) {
    const float *k = kc + (size_t)t * C + (size_t)h * hs;
    float d = 0.0f;
    for (int i = 0; i < hs; i++) d += qh[i] * k[i];
    d *= scale;
    s[t] = d;
    mx = fmaxf(mx, d);
  }
  mx = bt_block_max(mx, sh);
  float sum = 0.0f;
  for (int t = threadIdx.x; t < nPos; t += blockDim.x) {
    const float e = expf(s[t] - mx);
    s[t] = e;
    sum += e;
  }
  sum = bt_block_sum(sum, sh);
  const float inv = 1.0f / sum;
  for (int t = threadIdx.x; t < nPos; t += blockDim.x) s[t] *= inv;
  __syncthreads();
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    const float *v = vc + (size_t)h * hs + i;
    float o = 0.0f;
    for (int t = 0; t < nPos; t++) o += s[t] * v[(size_t)t * C];
    out[(size_t)h * hs + i] = o;
  }
}

void bt_cuda_attention_decode(bt_backend *be, float *out, float *scratch,
                              const float *q, const float *kc,
                              const float *vc, int nPos, int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  attn_require_fp32(be, "attention_decode");
  if (C <= 0) return;
  BT_ASSERT(NH > 0 && C % NH == 0 && nPos >= 1);
  const int hs = C / NH;
  bt_k_attn_decode<<<(unsigned)NH, DEC_THREADS, 0, cu->stream>>>(
      out, scratch, q, kc, vc, nPos, C, hs, 1.0f / sqrtf((float)hs));
  BT_CUDA_LAUNCHED(cu);
}

/* ======================================================================
 * reference kernels (tests only): materialised scores, one block per row
 * ====================================================================== */

#define REF_THREADS 128 /* >= FA_HS_MAX: one pass over the head dims */

__global__ void bt_k_ref_fwd(float *out, float *lse, const float *qkv, int T,
                             int C, int NH, int hs, float scale) {
  extern __shared__ float sm[];
  float *sc = sm;      /* [T] scores, then exp(score - max) */
  float *red = sm + T; /* [32] */
  const int i = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const size_t C3 = 3 * (size_t)C;
  const float *q = qkv + ((size_t)b * T + i) * C3 + (size_t)h * hs;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j <= i; j += blockDim.x) {
    const float *k = qkv + ((size_t)b * T + j) * C3 + C + (size_t)h * hs;
    float acc = 0.0f;
    for (int d = 0; d < hs; d++) acc += q[d] * k[d];
    sc[j] = acc * scale;
    mx = fmaxf(mx, sc[j]);
  }
  const float M = bt_block_max(mx, red);
  float sum = 0.0f;
  for (int j = threadIdx.x; j <= i; j += blockDim.x) {
    const float e = expf(sc[j] - M);
    sc[j] = e;
    sum += e;
  }
  const float S = bt_block_sum(sum, red); /* its barriers publish sc[] */
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j <= i; j++)
      acc += sc[j] * qkv[((size_t)b * T + j) * C3 + 2 * C + (size_t)h * hs + d];
    out[((size_t)b * T + i) * C + (size_t)h * hs + d] = acc / S;
  }
  if (threadIdx.x == 0) lse[(size_t)bh * T + i] = M + logf(S);
}

/* Row pass: P and dS of row i into the materialised [B*NH, T, T] arrays
 * (zeros above the diagonal), and dQ_i. */
__global__ void bt_k_ref_bwd_rows(float *dqkv, float *P, float *dS,
                                  const float *dout, const float *qkv,
                                  const float *lse, int T, int C, int NH,
                                  int hs, float scale) {
  extern __shared__ float sm[];
  float *pr = sm;          /* [T] */
  float *dpr = sm + T;     /* [T] dP, then dS */
  float *red = sm + 2 * T; /* [32] */
  const int i = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const size_t C3 = 3 * (size_t)C;
  const float *q = qkv + ((size_t)b * T + i) * C3 + (size_t)h * hs;
  const float *dO = dout + ((size_t)b * T + i) * C + (size_t)h * hs;
  const float L = lse[(size_t)bh * T + i];
  float part = 0.0f;
  for (int j = threadIdx.x; j < T; j += blockDim.x) {
    if (j <= i) {
      const float *k = qkv + ((size_t)b * T + j) * C3 + C + (size_t)h * hs;
      const float *v = k + C;
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < hs; d++) {
        s += q[d] * k[d];
        dp += dO[d] * v[d];
      }
      const float p = expf(s * scale - L);
      pr[j] = p;
      dpr[j] = dp;
      part += p * dp;
    } else {
      pr[j] = 0.0f;
      dpr[j] = 0.0f;
    }
  }
  const float D = bt_block_sum(part, red);
  const size_t rowOff = ((size_t)bh * T + i) * T;
  for (int j = threadIdx.x; j < T; j += blockDim.x) {
    const float p = pr[j], ds = p * (dpr[j] - D);
    P[rowOff + j] = p;
    dS[rowOff + j] = ds;
    dpr[j] = ds; /* same thread, same j: no race */
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j <= i; j++)
      acc += dpr[j] * qkv[((size_t)b * T + j) * C3 + C + (size_t)h * hs + d];
    dqkv[((size_t)b * T + i) * C3 + (size_t)h * hs + d] = acc * scale;
  }
}

/* Column pass: dK_j, dV_j from the materialised P and dS columns. */
__global__ void bt_k_ref_bwd_cols(float *dqkv, const float *P, const float *dS,
                                  const float *dout, const float *qkv, int T,
                                  int C, int NH, int hs, float scale) {
  const int j = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const size_t C3 = 3 * (size_t)C;
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float dk = 0.0f, dv = 0.0f;
    for (int i = j; i < T; i++) {
      const size_t off = ((size_t)bh * T + i) * T + j;
      dv += P[off] * dout[((size_t)b * T + i) * C + (size_t)h * hs + d];
      dk += dS[off] * qkv[((size_t)b * T + i) * C3 + (size_t)h * hs + d];
    }
    float *pd = dqkv + ((size_t)b * T + j) * C3 + (size_t)h * hs;
    pd[C + d] = dk * scale;
    pd[2 * C + d] = dv;
  }
}

/* The scores of a row live in shared memory: 2 T + 32 floats must fit the
 * 48 KB default, so T <= 6000; tests use far less. */
#define REF_T_MAX 4096

void bt_cuda_attention_ref_fwd(bt_backend *be, float *out, float *lse,
                               const float *qkv, int B, int T, int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  const int hs = attn_head_size(C, NH);
  if (B <= 0 || T <= 0) return;
  BT_ASSERT(T <= REF_T_MAX && (long)B * NH <= 65535);
  dim3 grid((unsigned)T, (unsigned)(B * NH));
  bt_k_ref_fwd<<<grid, REF_THREADS, ((size_t)T + 32) * sizeof(float),
                 cu->stream>>>(out, lse, qkv, T, C, NH, hs,
                               1.0f / sqrtf((float)hs));
  BT_CUDA_LAUNCHED(cu);
}

size_t bt_cuda_attention_ref_scratch_size(int B, int T, int NH) {
  return 2 * (size_t)B * NH * T * T;
}

void bt_cuda_attention_ref_bwd(bt_backend *be, float *dqkv, float *scratch,
                               const float *dout, const float *qkv,
                               const float *lse, int B, int T, int C,
                               int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  const int hs = attn_head_size(C, NH);
  if (B <= 0 || T <= 0) return;
  BT_ASSERT(T <= REF_T_MAX && (long)B * NH <= 65535);
  const float scale = 1.0f / sqrtf((float)hs);
  float *P = scratch;
  float *dS = scratch + (size_t)B * NH * T * T;
  dim3 grid((unsigned)T, (unsigned)(B * NH));
  bt_k_ref_bwd_rows<<<grid, REF_THREADS, (2 * (size_t)T + 32) * sizeof(float),
                      cu->stream>>>(dqkv, P, dS, dout, qkv, lse, T, C, NH, hs,
                                    scale);
  BT_CUDA_LAUNCHED(cu);
  bt_k_ref_bwd_cols<<<grid, REF_THREADS, 0, cu->stream>>>(
      dqkv, P, dS, dout, qkv, T, C, NH, hs, scale);
  BT_CUDA_LAUNCHED(cu);
}
