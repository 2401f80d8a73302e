/*
 * cpu_internal.h: private declarations shared by the files of the CPU
 * reference backend (cpu_backend.c: lifetime, memory and the function table;
 * cpu_ops.c: dense and element-wise ops; cpu_attention.c: attention).
 *
 * Each bt_cpu_* function has exactly the contract of the matching bt_op_*
 * function in kernels/ops.h. Nothing outside kernels/cpu includes this file.
 *
 * Rules every op here keeps (they are what makes this backend the reference
 * the CUDA backend is tested against):
 *   1. Deterministic, independent of the thread count: a value that is a sum
 *      over rows (dbias, dw of layernorm, dwpe, dwte) is computed by ONE
 *      thread in a fixed row order. We parallelise over the independent
 *      index (columns, channels, (b, h) pairs), never over the summed one.
 *   2. No allocation inside an op; temporaries live on the stack or in the
 *      caller's scratch argument.
 *   3. OpenMP only where there is enough work to pay for the fork/join
 *      (BT_CPU_PAR_MIN); the `if` clause keeps small calls serial.
 */
#ifndef BATON_CPU_INTERNAL_H
#define BATON_CPU_INTERNAL_H

#include "../backend_impl.h"

/* Below this many floats of work a parallel region costs more than it
 * saves (a fork/join is a few microseconds; 32K floats of simple work is
 * about that). */
#define BT_CPU_PAR_MIN 32768

void bt_cpu_matmul_fwd(bt_backend *be, float *out, const float *inp,
                       const float *w, const float *bias, int N, int C, int OC,
                       bt_wlayout eLayout);
void bt_cpu_matmul_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                       const float *dout, const float *inp, const float *w,
                       int N, int C, int OC, bt_wlayout eLayout);
void bt_cpu_bias_fwd(bt_backend *be, float *out, const float *inp,
                     const float *bias, int N, int C);
void bt_cpu_bias_bwd(bt_backend *be, float *dinp, float *dbias,
                     const float *dout, int N, int C);
void bt_cpu_embed_fwd(bt_backend *be, float *out, const int32_t *tok,
                      const float *wte, const float *wpe, int B, int T, int C);
void bt_cpu_embed_bwd(bt_backend *be, float *dwte, float *dwpe,
                      const float *dout, const int32_t *tok, int B, int T,
                      int C, int V);
void bt_cpu_layernorm_fwd(bt_backend *be, float *out, float *mean, float *rstd,
                          const float *inp, const float *w, const float *b,
                          int N, int C);
void bt_cpu_layernorm_bwd(bt_backend *be, float *dinp, float *dw, float *db,
                          const float *dout, const float *inp, const float *w,
                          const float *mean, const float *rstd, int N, int C);
void bt_cpu_gelu_fwd(bt_backend *be, float *out, const float *inp, size_t n);
void bt_cpu_gelu_bwd(bt_backend *be, float *dinp, const float *inp,
                     const float *dout, size_t n);
void bt_cpu_residual_fwd(bt_backend *be, float *out, const float *a,
                         const float *b, size_t n);
void bt_cpu_residual_bwd(bt_backend *be, float *da, float *db,
                         const float *dout, size_t n);
void bt_cpu_attention_fwd(bt_backend *be, float *out, float *att,
                          const float *qkv, int B, int T, int C, int NH);
void bt_cpu_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                          const float *dout, const float *qkv,
                          const float *att, int B, int T, int C, int NH);
size_t bt_cpu_attention_att_size(bt_backend *be, int B, int T, int NH);
size_t bt_cpu_attention_scratch_size(bt_backend *be, int B, int T, int NH);
void bt_cpu_xent_fwd(bt_backend *be, float *losses, const float *logits,
                     const int32_t *targets, int N, int V, int Vp);
void bt_cpu_xent_bwd(bt_backend *be, float *dlogits, const float *logits,
                     const int32_t *targets, float scale, int N, int V, int Vp);
void bt_cpu_adamw(bt_backend *be, float *param, const float *grad, float *m,
                  float *v, size_t n, const bt_adamw_hparams *hp);
double bt_cpu_sumsq(bt_backend *be, const float *x, size_t n);
void bt_cpu_scale(bt_backend *be, float *x, float s, size_t n);

#endif /* BATON_CPU_INTERNAL_H */
