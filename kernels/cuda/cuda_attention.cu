/*
 * cuda_attention.cu: causal multi-head self-attention, fp32.
 *
 * Flash-style kernels (Dao et al., FlashAttention-2, arXiv:2307.08691),
 * written for clarity before speed:
 *
 *   forward  (bt_k_flash_fwd)   one block per (query tile of 32 rows, b, h);
 *            K/V tiles of 32 keys through shared memory; online softmax
 *            per row; saves the row's log-sum-exp (att = B*NH*T floats).
 *   backward (two kernels, no atomics anywhere):
 *     bt_k_flash_bwd_dq   one block per (query tile, b, h): pass 1 over the
 *                         key tiles computes D_i = sum_j P_ij dP_ij (which
 *                         equals rowsum(dO_i * O_i); ops.h gives the
 *                         backward no O, so we compute it this way) and
 *                         stores it in scratch; pass 2 accumulates dQ_i.
 *     bt_k_flash_bwd_dkv  one block per (key tile, b, h) looping over the
 *                         query tiles at or after it: dK_j, dV_j.
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
  return 2 * (size_t)FA_BR * hs + 2 * (size_t)FA_BC * (hs + 1);
}
static size_t fa_dkv_smem(int hs) {
  return 2 * (size_t)FA_BC * hs + 2 * (size_t)FA_BR * (hs + 1) + 2 * FA_BR;
}

/* Keys and values of rows [k0, k0 + FA_BC) of one (b, h) into shared
 * memory (row stride ldk), zero past T. Every thread of the block takes
 * part; the caller puts the barriers around it. The forward and the dQ
 * backward stream K/V tiles the same way. */
__device__ __forceinline__ void fa_load_kv(float *Ks, float *Vs,
                                           const float *base, int k0, int T,
                                           int C, int C3, int hs, int ldk) {
  for (int e = threadIdx.x; e < FA_BC * hs; e += blockDim.x) {
    const int j = e / hs, d = e % hs, t = k0 + j;
    Ks[j * ldk + d] = (t < T) ? base[(size_t)t * C3 + C + d] : 0.0f;
    Vs[j * ldk + d] = (t < T) ? base[(size_t)t * C3 + 2 * C + d] : 0.0f;
  }
}

/* ---- forward ------------------------------------------------------------- */

__global__ void __launch_bounds__(32 * FA_WARPS)
    bt_k_flash_fwd(float *out, float *lse, const float *qkv,
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
  const float *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
  const int nValid = keyLen ? keyLen[b] : T;

  for (int e = threadIdx.x; e < FA_BR * hs; e += blockDim.x) {
    const int r = e / hs, d = e % hs, t = q0 + r;
    Qs[e] = (t < T) ? base[(size_t)t * C3 + d] : 0.0f;
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
    float *po = out + ((size_t)b * T + qi) * C + (size_t)h * hs;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) {
      const int d = lane + 32 * i;
      if (d < hs) po[d] = pad ? 0.0f : o[rr][i] * inv;
    }
    if (lane == 0) lse[(size_t)bh * T + qi] = pad ? 0.0f : m[rr] + logf(l[rr]);
  }
}

/* ---- backward: D and dQ ------------------------------------------------- */

__global__ void __launch_bounds__(32 * FA_WARPS)
    bt_k_flash_bwd_dq(float *dqkv, float *Dbuf, const float *dout,
                      const float *qkv, const float *lse,
                      const int32_t *keyLen, int causal, int T, int C,
                      int NH, int hs, float scale) {
  extern __shared__ float sm[];
  const int ldk = hs + 1;
  float *Qs = sm;                   /* [FA_BR][hs] */
  float *dOs = Qs + FA_BR * hs;     /* [FA_BR][hs] */
  float *Ks = dOs + FA_BR * hs;     /* [FA_BC][hs + 1] */
  float *Vs = Ks + FA_BC * ldk;     /* [FA_BC][hs + 1] */
  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int q0 = blockIdx.x * FA_BR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t C3 = 3 * (size_t)C;
  const float *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
  const float *obase = dout + (size_t)b * T * C + (size_t)h * hs;
  const int nValid = keyLen ? keyLen[b] : T;

  for (int e = threadIdx.x; e < FA_BR * hs; e += blockDim.x) {
    const int r = e / hs, d = e % hs, t = q0 + r;
    Qs[e] = (t < T) ? base[(size_t)t * C3 + d] : 0.0f;
    dOs[e] = (t < T) ? obase[(size_t)t * C + d] : 0.0f;
  }
  float L[FA_RPW], Dacc[FA_RPW], dq[FA_RPW][FA_DPL];
#pragma unroll
  for (int rr = 0; rr < FA_RPW; rr++) {
    const int qi = q0 + warp * FA_RPW + rr;
    L[rr] = (qi < T) ? lse[(size_t)bh * T + qi] : 0.0f;
    Dacc[rr] = 0.0f;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) dq[rr][i] = 0.0f;
  }
  const int kEnd = causal ? min(nValid, q0 + FA_BR) : nValid;

  /* pass 0 computes D, pass 1 accumulates dQ with the complete D */
  for (int pass = 0; pass < 2; pass++) {
    for (int k0 = 0; k0 < kEnd; k0 += FA_BC) {
      __syncthreads();
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
        if (pass == 0) {
          Dacc[rr] += bt_warp_sum(p * dp);
        } else {
          const float ds = p * (dp - Dacc[rr]) * scale; /* 0 when masked */
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
    }
    if (pass == 0) {
#pragma unroll
      for (int rr = 0; rr < FA_RPW; rr++) {
        const int qi = q0 + warp * FA_RPW + rr;
        if (qi < T && lane == 0) Dbuf[(size_t)bh * T + qi] = Dacc[rr];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < FA_RPW; rr++) {
    const int qi = q0 + warp * FA_RPW + rr;
    if (qi >= T) continue;
    float *pd = dqkv + ((size_t)b * T + qi) * C3 + (size_t)h * hs;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) {
      const int d = lane + 32 * i;
      if (d < hs) pd[d] = dq[rr][i]; /* WRITTEN (ops.def) */
    }
  }
}

/* ---- backward: dK and dV ------------------------------------------------ */

__global__ void __launch_bounds__(32 * FA_WARPS)
    bt_k_flash_bwd_dkv(float *dqkv, const float *Dbuf, const float *dout,
                       const float *qkv, const float *lse,
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
  const float *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
  const float *obase = dout + (size_t)b * T * C + (size_t)h * hs;
  const int nValid = keyLen ? keyLen[b] : T;

  for (int e = threadIdx.x; e < FA_BC * hs; e += blockDim.x) {
    const int j = e / hs, d = e % hs, t = j0 + j;
    Kb[e] = (t < T) ? base[(size_t)t * C3 + C + d] : 0.0f;
    Vb[e] = (t < T) ? base[(size_t)t * C3 + 2 * C + d] : 0.0f;
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
      Qs[x * ldq + d] = (t < T) ? base[(size_t)t * C3 + d] : 0.0f;
      dOs[x * ldq + d] = (t < T) ? obase[(size_t)t * C + d] : 0.0f;
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
    float *pd = dqkv + ((size_t)b * T + kj) * C3 + (size_t)h * hs;
#pragma unroll
    for (int i = 0; i < FA_DPL; i++) {
      const int d = lane + 32 * i;
      if (d < hs) {
        pd[C + d] = dk[kk][i]; /* WRITTEN; 0 for a padded key */
        pd[2 * C + d] = dv[kk][i];
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

cudaError_t bt_cuda_attention_init(void) {
  /* Tiles at hs = 128 need up to ~66 KB (above the 48 KB default); sm_80
   * allows 163 KB and sm_90 227 KB per block once opted in. */
  cudaError_t e;
  e = cudaFuncSetAttribute(bt_k_flash_fwd,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           (int)(fa_fwd_smem(FA_HS_MAX) * sizeof(float)));
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(bt_k_flash_bwd_dq,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           (int)(fa_dq_smem(FA_HS_MAX) * sizeof(float)));
  if (e != cudaSuccess) return e;
  return cudaFuncSetAttribute(bt_k_flash_bwd_dkv,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              (int)(fa_dkv_smem(FA_HS_MAX) * sizeof(float)));
}

size_t bt_cuda_attention_att_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T; /* per-row log-sum-exp */
}

size_t bt_cuda_attention_scratch_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T; /* D = rowsum(dO * O) */
}

/* The forward of attention_fwd (keyLen NULL, causal 1) and of
 * attention_masked_fwd. */
static void flash_fwd(bt_backend *be, float *out, float *att,
                      const float *qkv, const int32_t *keyLen, int causal,
                      int B, int T, int C, int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  const int hs = attn_head_size(C, NH);
  if (B <= 0 || T <= 0) return;
  BT_ASSERT((long)B * NH <= 65535); /* gridDim.y */
  dim3 grid((unsigned)((T + FA_BR - 1) / FA_BR), (unsigned)(B * NH));
  bt_k_flash_fwd<<<grid, 32 * FA_WARPS, fa_fwd_smem(hs) * sizeof(float),
                   cu->stream>>>(out, att, qkv, keyLen, causal, T, C, NH, hs,
                                 1.0f / sqrtf((float)hs));
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_attention_fwd(bt_backend *be, float *out, float *att,
                           const float *qkv, int B, int T, int C, int NH) {
  flash_fwd(be, out, att, qkv, NULL, 1, B, T, C, NH);
}

void bt_cuda_attention_masked_fwd(bt_backend *be, float *out, float *att,
                                  const float *qkv, const int32_t *keyLen,
                                  int causal, int B, int T, int C, int NH) {
  flash_fwd(be, out, att, qkv, keyLen, causal, B, T, C, NH);
}

static void flash_bwd(bt_backend *be, float *dqkv, float *scratch,
                      const float *dout, const float *qkv, const float *att,
                      const int32_t *keyLen, int causal, int B, int T, int C,
                      int NH) {
  bt_cuda *cu = bt_cuda_of(be);
  const int hs = attn_head_size(C, NH);
  if (B <= 0 || T <= 0) return;
  BT_ASSERT((long)B * NH <= 65535);
  const float scale = 1.0f / sqrtf((float)hs);
  dim3 gq((unsigned)((T + FA_BR - 1) / FA_BR), (unsigned)(B * NH));
  bt_k_flash_bwd_dq<<<gq, 32 * FA_WARPS, fa_dq_smem(hs) * sizeof(float),
                      cu->stream>>>(dqkv, scratch, dout, qkv, att, keyLen,
                                    causal, T, C, NH, hs, scale);
  BT_CUDA_LAUNCHED(cu);
  /* Stream order: the dK/dV kernel starts after D is complete. */
  dim3 gk((unsigned)((T + FA_BC - 1) / FA_BC), (unsigned)(B * NH));
  bt_k_flash_bwd_dkv<<<gk, 32 * FA_WARPS, fa_dkv_smem(hs) * sizeof(float),
                       cu->stream>>>(dqkv, scratch, dout, qkv, att, keyLen,
                                     causal, T, C, NH, hs, scale);
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                           const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH) {
  flash_bwd(be, dqkv, scratch, dout, qkv, att, NULL, 1, B, T, C, NH);
}

void bt_cuda_attention_masked_bwd(bt_backend *be, float *dqkv, float *scratch,
                                  const float *dout, const float *qkv,
                                  const float *att, const int32_t *keyLen,
                                  int causal, int B, int T, int C, int NH) {
  flash_bwd(be, dqkv, scratch, dout, qkv, att, keyLen, causal, B, T, C, NH);
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
