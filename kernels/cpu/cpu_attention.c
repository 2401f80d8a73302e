/*
 * cpu_attention.c: causal multi-head self-attention, CPU reference.
 *
 * Layout (GPT-2 / llm.c): qkv[B,T,3C] holds q in columns [0,C), k in
 * [C,2C), v in [2C,3C); head h owns the slice [h*hs, (h+1)*hs) of each,
 * hs = C/NH. att[B,NH,T,T] keeps the softmax probabilities (row t has
 * zeros for t2 > t) for the backward.
 *
 * Why it is written this way:
 *   - One (b, h) pair is one independent problem: its outputs (out slice,
 *     att block, and in the backward its dq/dk/dv slices) are touched by no
 *     other pair. So we parallelise over (b, h) with a static schedule and
 *     no thread ever adds into memory another thread writes: deterministic
 *     for any thread count, and no atomics.
 *   - Only the causal triangle is computed (t2 <= t): half the work of a
 *     masked full T x T product.
 *   - The inner loops run over the head dimension, contiguous in memory, so
 *     they vectorise. Dot products use `omp simd reduction`, whose order is
 *     fixed at compile time (still deterministic).
 *   - The backward needs dL/datt for one row at a time; it lives in the
 *     caller's scratch (B*NH*T*T floats, one T*T block per (b,h), of which
 *     one row is used), so the op never allocates.
 */
#include "cpu_internal.h"
#include "../../trainer/util.h"

#include <math.h>
#include <string.h>

size_t bt_cpu_attention_att_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T * T;
}

size_t bt_cpu_attention_scratch_size(bt_backend *be, int B, int T, int NH) {
  (void)be;
  return (size_t)B * NH * T * T;
}

/* Work in multiply-adds of one call, to decide whether to go parallel. */
static size_t cpu_att_work(int B, int T, int C) {
  return (size_t)B * T * T * C;
}

/* For each query row t: s = q.k * scale for t2 <= t, softmax with the row
 * max subtracted (stable), out = sum_t2 p[t2] v[t2]. */
void bt_cpu_attention_fwd(bt_backend *be, float *out, float *att,
                          const float *qkv, int B, int T, int C, int NH) {
  (void)be;
  BT_ASSERT(NH > 0 && C % NH == 0);
  const int hs = C / NH;
  const size_t C3 = (size_t)3 * C;
  const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) if (cpu_att_work(B, T, C) >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const float *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
      for (int t = 0; t < T; t++) {
        const float *q = base + (size_t)t * C3;
        float *p = att + (((size_t)b * NH + h) * T + t) * T;
        float mx = -INFINITY;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *k = base + (size_t)t2 * C3 + C;
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int i = 0; i < hs; i++) dot += q[i] * k[i];
          dot *= scale;
          p[t2] = dot;
          mx = dot > mx ? dot : mx;
        }
        double sum = 0.0;
        for (int t2 = 0; t2 <= t; t2++) {
          float e = expf(p[t2] - mx);
          p[t2] = e;
          sum += e;
        }
        float inv = (float)(1.0 / sum);
        for (int t2 = 0; t2 <= t; t2++) p[t2] *= inv;
        for (int t2 = t + 1; t2 < T; t2++) p[t2] = 0.0f;

        float *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
        for (int i = 0; i < hs; i++) o[i] = 0.0f;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *v = base + (size_t)t2 * C3 + 2 * (size_t)C;
          float a = p[t2];
          for (int i = 0; i < hs; i++) o[i] += a * v[i];
        }
      }
    }
  }
}

/* Per row t, with p = att row and g = dout row:
 *   dp[t2]  = g . v[t2]                      dv[t2] += p[t2] g
 *   ds[t2]  = p[t2] (dp[t2] - sum_j p[j] dp[j])   (softmax backward)
 *   dq     += scale sum_t2 ds[t2] k[t2]      dk[t2] += scale ds[t2] q
 * All accumulate (+=) into dqkv, as ops.h requires. */
void bt_cpu_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                          const float *dout, const float *qkv,
                          const float *att, int B, int T, int C, int NH) {
  (void)be;
  BT_ASSERT(NH > 0 && C % NH == 0);
  const int hs = C / NH;
  const size_t C3 = (size_t)3 * C;
  const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) if (cpu_att_work(B, T, C) >= BT_CPU_PAR_MIN)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
      const float *base = qkv + off;
      float *dbase = dqkv + off;
      float *dp = scratch + ((size_t)b * NH + h) * T * T; /* one row used */
      for (int t = 0; t < T; t++) {
        const float *p = att + (((size_t)b * NH + h) * T + t) * T;
        const float *g = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
        const float *q = base + (size_t)t * C3;
        float *dq = dbase + (size_t)t * C3;

        double sdp = 0.0;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *v = base + (size_t)t2 * C3 + 2 * (size_t)C;
          float *dv = dbase + (size_t)t2 * C3 + 2 * (size_t)C;
          float a = p[t2];
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int i = 0; i < hs; i++) dot += g[i] * v[i];
          for (int i = 0; i < hs; i++) dv[i] += a * g[i];
          dp[t2] = dot;
          sdp += (double)a * dot;
        }
        const float fsdp = (float)sdp;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *k = base + (size_t)t2 * C3 + C;
          float *dk = dbase + (size_t)t2 * C3 + C;
          float ds = p[t2] * (dp[t2] - fsdp) * scale;
          for (int i = 0; i < hs; i++) {
            dq[i] += ds * k[i];
            dk[i] += ds * q[i];
          }
        }
      }
    }
  }
}
