/*
 * ops.h: the backend-neutral op interface.
 *
 * Layers and the trainer call only these functions; a backend (CPU reference
 * in kernels/cpu, CUDA in kernels/cuda) implements them behind an opaque
 * bt_backend handle whose function table lives in kernels/backend_impl.h.
 * A model never knows which backend it runs on.
 *
 * Conventions shared by every op (tests in tests/unit/test_ops.c hold each
 * backend to them):
 *   - All tensors are float32, row-major, contiguous, in the backend's memory
 *     (host memory for the CPU backend, device memory for CUDA). Shapes are
 *     given as counts; B = batch, T = time, C = channels, OC = output
 *     channels, NH = heads, V = vocabulary (Vp = padded row stride).
 *   - Forward ops overwrite their outputs.
 *   - Backward ops ACCUMULATE (+=) into every gradient they produce, so a
 *     tensor used twice (tied embeddings, residual branches) and several
 *     micro-batches of gradient accumulation need no extra buffers. Callers
 *     zero gradients once per optimizer step.
 *   - Every op is deterministic: the same inputs give the same bits.
 *   - Weight layout: BT_W_IN_OUT is [C, OC] with y = x W (Hugging Face GPT-2
 *     Conv1D layout); BT_W_OUT_IN is [OC, C] with y = x W^T (torch Linear and
 *     the tied GPT-2 output projection that reuses wte [V, C]).
 */
#ifndef BATON_OPS_H
#define BATON_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bt_backend bt_backend;

typedef enum bt_backend_kind {
  BT_BACKEND_CPU = 0,
  BT_BACKEND_CUDA = 1,
} bt_backend_kind;

typedef enum bt_wlayout {
  BT_W_IN_OUT = 0, /* [C, OC] */
  BT_W_OUT_IN = 1, /* [OC, C] */
} bt_wlayout;

/* ---- lifetime --------------------------------------------------------- */

/* Creates a backend. nThread <= 0 keeps the library default (OMP_NUM_THREADS).
 * device is the CUDA device index (ignored by the CPU backend). Returns NULL
 * with bt_err_msg() set if the backend is not compiled in or fails. */
bt_backend *bt_backend_create(bt_backend_kind eKind, int nThread, int device);
void bt_backend_free(bt_backend *be);
bt_backend_kind bt_backend_kind_of(const bt_backend *be);
const char *bt_backend_name(const bt_backend *be);
/* 1 if the CUDA backend was compiled into this binary. */
int bt_backend_cuda_compiled(void);

/* ---- memory ----------------------------------------------------------- */

/* Allocates n floats of backend memory (zeroed). NULL + bt_err_msg on
 * failure. */
float *bt_mem_alloc(bt_backend *be, size_t n, const char *zWhat);
void bt_mem_free(bt_backend *be, float *p);
void bt_mem_zero(bt_backend *be, float *p, size_t n);
void bt_mem_to_host(bt_backend *be, float *pHost, const float *pDev, size_t n);
void bt_mem_from_host(bt_backend *be, float *pDev, const float *pHost,
                      size_t n);
/* Integer buffers for token ids / targets (int32). */
int32_t *bt_mem_alloc_i32(bt_backend *be, size_t n, const char *zWhat);
void bt_mem_free_i32(bt_backend *be, int32_t *p);
void bt_mem_from_host_i32(bt_backend *be, int32_t *pDev, const int32_t *pHost,
                          size_t n);
/* Waits until all queued work on the backend has finished. */
void bt_backend_sync(bt_backend *be);

/* ---- ops -------------------------------------------------------------- */

/* out[N,OC] = inp[N,C] * W (+ bias[OC] if bias != NULL). */
void bt_op_matmul_fwd(bt_backend *be, float *out, const float *inp,
                      const float *w, const float *bias, int N, int C, int OC,
                      bt_wlayout eLayout);
/* dinp += dout W^T; dw += inp^T dout (in W's layout); dbias += sum_n dout.
 * Any of dinp, dw, dbias may be NULL to skip it. */
void bt_op_matmul_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                      const float *dout, const float *inp, const float *w,
                      int N, int C, int OC, bt_wlayout eLayout);

/* out[N,C] = inp[N,C] + bias[C] (standalone bias add). */
void bt_op_bias_fwd(bt_backend *be, float *out, const float *inp,
                    const float *bias, int N, int C);
/* dinp += dout; dbias += sum_n dout. */
void bt_op_bias_bwd(bt_backend *be, float *dinp, float *dbias,
                    const float *dout, int N, int C);

/* out[B,T,C] = wte[tok[b,t]] + wpe[t] (wpe may be NULL: token only). */
void bt_op_embed_fwd(bt_backend *be, float *out, const int32_t *tok,
                     const float *wte, const float *wpe, int B, int T, int C);
/* dwte[tok] += dout; dwpe[t] += sum_b dout. Deterministic (no atomics). */
void bt_op_embed_bwd(bt_backend *be, float *dwte, float *dwpe,
                     const float *dout, const int32_t *tok, int B, int T,
                     int C, int V);

/* out = (x - mean) * rstd * w + b over the last dim C; saves mean[N],
 * rstd[N] for the backward. eps = 1e-5 (GPT-2). */
void bt_op_layernorm_fwd(bt_backend *be, float *out, float *mean, float *rstd,
                         const float *inp, const float *w, const float *b,
                         int N, int C);
void bt_op_layernorm_bwd(bt_backend *be, float *dinp, float *dw, float *db,
                         const float *dout, const float *inp, const float *w,
                         const float *mean, const float *rstd, int N, int C);

/* GELU, tanh approximation (GPT-2's "gelu_new"). */
void bt_op_gelu_fwd(bt_backend *be, float *out, const float *inp, size_t n);
void bt_op_gelu_bwd(bt_backend *be, float *dinp, const float *inp,
                    const float *dout, size_t n);

/* out = a + b. Its backward is an accumulate into both inputs' grads. */
void bt_op_residual_fwd(bt_backend *be, float *out, const float *a,
                        const float *b, size_t n);
/* da += dout; db += dout (either may be NULL). */
void bt_op_residual_bwd(bt_backend *be, float *da, float *db,
                        const float *dout, size_t n);

/* Causal multi-head self-attention.
 * qkv[B,T,3C] holds q, k, v side by side (GPT-2 c_attn output).
 * out[B,T,C]; att[B,NH,T,T] saves the softmax probabilities for the
 * backward (the CPU reference keeps them; a fused GPU kernel may instead
 * save per-row log-sum-exp there, and needs only B*NH*T floats). */
void bt_op_attention_fwd(bt_backend *be, float *out, float *att,
                         const float *qkv, int B, int T, int C, int NH);
/* dqkv += d(qkv). scratch must hold B*NH*T*T floats (CPU) or what
 * bt_op_attention_scratch() says. */
void bt_op_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                         const float *dout, const float *qkv, const float *att,
                         int B, int T, int C, int NH);
/* Floats needed for att (fwd save) and scratch (bwd) on this backend. */
size_t bt_op_attention_att_size(bt_backend *be, int B, int T, int NH);
size_t bt_op_attention_scratch_size(bt_backend *be, int B, int T, int NH);

/* Softmax cross-entropy over rows of logits[N, Vp] using the first V columns
 * (columns V..Vp-1 are padding and ignored). losses[n] = -log p[target[n]];
 * rows with target < 0 are masked: loss 0 and zero gradient. */
void bt_op_xent_fwd(bt_backend *be, float *losses, const float *logits,
                    const int32_t *targets, int N, int V, int Vp);
/* dlogits = (softmax(logits) - onehot(target)) * scale, written (not
 * accumulated: the logits buffer is dead after this) for columns < V and
 * 0 for padding columns. dlogits may alias logits, so the probability matrix
 * is never stored beside the logits. */
void bt_op_xent_bwd(bt_backend *be, float *dlogits, const float *logits,
                    const int32_t *targets, float scale, int N, int V, int Vp);

/* AdamW (decoupled weight decay, Loshchilov & Hutter) on n elements:
 *   g = grad * grad_scale
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd p )
 * t is the 1-based optimizer step. */
typedef struct bt_adamw_hparams {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  int t;
} bt_adamw_hparams;
void bt_op_adamw(bt_backend *be, float *param, const float *grad, float *m,
                 float *v, size_t n, const bt_adamw_hparams *hp);

/* Sum of squares of x[0..n) accumulated in double, returned on the host.
 * The trainer sums over its range and all-reduces for the global norm. */
double bt_op_sumsq(bt_backend *be, const float *x, size_t n);

/* x *= s on n elements (gradient clipping and averaging helpers). */
void bt_op_scale(bt_backend *be, float *x, float s, size_t n);

#endif /* BATON_OPS_H */
