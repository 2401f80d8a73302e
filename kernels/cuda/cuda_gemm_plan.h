/*
 * cuda_gemm_plan.h: how each product of the matmul op maps onto one
 * column-major GEMM (cuBLASLt's convention). Pure arithmetic on shapes and
 * pointers, no CUDA: cuda_gemm.cu executes the plans with cuBLASLt, and the
 * CPU emulator test (tests/gpu/emu) executes them with a reference
 * column-major GEMM, so the transposition bookkeeping below is checked by
 * running it, not only by reading it.
 *
 * The plan means (column-major, as cuBLASLt):
 *   D[m x n] = op(A) op(B) + beta D (+ bias[row] if bias)
 *   A stored (bTransA ? k x m : m x k) with leading dimension lda,
 *   B stored (bTransB ? n x k : k x n) with leading dimension ldb,
 *   element (r, c) of a stored matrix X is X[r + c * ld].
 *
 * Element types (kernels/ops.def "ELEMENT TYPES"): with the backend's
 * activation dtype eAct = BT_ACT_BF16 the operands A and B and the bias
 * are [act], stored as bf16, and so is D for the forward output and the
 * accumulated dinp (bAB16 = bD16 = 1); the weight gradient dw is a
 * parameter gradient, fp32 (bAB16 = 1, bD16 = 0). With BT_ACT_F32 every
 * matrix is fp32. The pointers stay typed float * (as in the op table);
 * bAB16 / bD16 say what they point at, and no plan does arithmetic on
 * them.
 *
 * The identity used throughout: a row-major [R, K] buffer is, byte for
 * byte, the column-major K x R matrix with leading dimension K (its
 * transpose). So a row-major product Y = X W is computed as the
 * column-major Y^T = W^T X^T on the unchanged buffers.
 */
#ifndef BATON_CUDA_GEMM_PLAN_H
#define BATON_CUDA_GEMM_PLAN_H

#include <stddef.h>

#include "kernels/ops.h"

typedef struct bt_gemm_call {
  int bTransA, bTransB; /* op(A) = A^T, op(B) = B^T */
  int m, n, k;
  const float *A;
  int lda;
  const float *B;
  int ldb;
  float *D;
  int ldd;
  float beta;
  const float *bias; /* length m, or NULL; the type of A and B */
  int bAB16;         /* A, B (and bias) are bf16 */
  int bD16;          /* D (C) is bf16; else fp32 */
} bt_gemm_call;

/* out[N,OC] = inp[N,C] Wm (+ bias), Wm = W (IN_OUT) or W^T (OUT_IN).
 * Column-major: out^T (OC x N) = Wm^T (OC x C) * inp^T (C x N):
 *   inp row-major [N,C] = column-major C x N, ld C          -> B, no trans
 *   W IN_OUT  [C,OC]    = column-major OC x C, ld OC = Wm^T -> A, no trans
 *   W OUT_IN  [OC,C]    = column-major C x OC, ld C  = Wm   -> A, trans
 * The bias (length OC = m) is per row of the column-major D: exactly the
 * CUBLASLT_EPILOGUE_BIAS broadcast. matmul_gelu_fwd runs this plan with
 * D = out and the GELU_AUX epilogue's aux = pre, which has D's type and
 * layout (column-major OC x N, ld OC). */
static inline bt_gemm_call bt_gemm_plan_fwd(float *out, const float *inp,
                                            const float *w, const float *bias,
                                            int N, int C, int OC,
                                            bt_wlayout eLayout,
                                            bt_act_dtype eAct) {
  bt_gemm_call g;
  g.bAB16 = g.bD16 = eAct == BT_ACT_BF16; /* out is [act] */
  g.m = OC;
  g.n = N;
  g.k = C;
  g.A = w;
  g.bTransA = eLayout == BT_W_OUT_IN;
  g.lda = eLayout == BT_W_OUT_IN ? C : OC;
  g.B = inp;
  g.bTransB = 0;
  g.ldb = C;
  g.D = out;
  g.ldd = OC;
  g.beta = 0.0f;
  g.bias = bias;
  return g;
}

/* dinp[N,C] += dout[N,OC] Wm^T. Column-major dinp^T (C x N) =
 * Wm (C x OC) * dout^T (OC x N):
 *   IN_OUT: W stored column-major OC x C (= Wm^T), ld OC -> A, trans
 *   OUT_IN: W stored column-major C x OC (= Wm),   ld C  -> A, no trans
 *   dout row-major [N,OC] = column-major OC x N, ld OC   -> B, no trans */
static inline bt_gemm_call bt_gemm_plan_dinp(float *dinp, const float *dout,
                                             const float *w, int N, int C,
                                             int OC, bt_wlayout eLayout,
                                             bt_act_dtype eAct) {
  bt_gemm_call g;
  g.bAB16 = g.bD16 = eAct == BT_ACT_BF16; /* dinp is [act] */
  g.m = C;
  g.n = N;
  g.k = OC;
  g.A = w;
  g.bTransA = eLayout == BT_W_IN_OUT;
  g.lda = eLayout == BT_W_IN_OUT ? OC : C;
  g.B = dout;
  g.bTransB = 0;
  g.ldb = OC;
  g.D = dinp;
  g.ldd = C;
  g.beta = 1.0f; /* ops.h: backward ops accumulate */
  g.bias = NULL;
  return g;
}

/* dW += inp^T dout, in W's own layout:
 *   IN_OUT dW [C,OC] = column-major OC x C: dW^T = dout^T (OC x N) inp (N x C)
 *     A = dout (stored OC x N, no trans), B = inp (stored C x N, trans)
 *   OUT_IN dW [OC,C] = column-major C x OC: inp^T (C x N) dout (N x OC)
 *     A = inp (stored C x N, no trans), B = dout (stored OC x N, trans) */
static inline bt_gemm_call bt_gemm_plan_dw(float *dw, const float *dout,
                                           const float *inp, int N, int C,
                                           int OC, bt_wlayout eLayout,
                                           bt_act_dtype eAct) {
  bt_gemm_call g;
  g.bAB16 = eAct == BT_ACT_BF16;
  g.bD16 = 0; /* dw is a parameter gradient: fp32 */
  g.k = N;
  g.bTransA = 0;
  g.bTransB = 1;
  if (eLayout == BT_W_IN_OUT) {
    g.m = OC;
    g.n = C;
    g.A = dout;
    g.lda = OC;
    g.B = inp;
    g.ldb = C;
    g.ldd = OC;
  } else {
    g.m = C;
    g.n = OC;
    g.A = inp;
    g.lda = C;
    g.B = dout;
    g.ldb = OC;
    g.ldd = C;
  }
  g.D = dw;
  g.beta = 1.0f;
  g.bias = NULL;
  return g;
}

#endif /* BATON_CUDA_GEMM_PLAN_H */
