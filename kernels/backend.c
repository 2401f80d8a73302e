/*
 * backend.c: dispatch from the public op interface (ops.h) to a backend's
 * function table. Nothing here knows what a backend does.
 */
#include "base/util.h"
#include "kernels/backend_impl.h"

#include <stdlib.h>

bt_backend *bt_backend_create(bt_backend_kind eKind, int nThread, int device) {
  switch (eKind) {
  case BT_BACKEND_CPU:
    return bt_backend_cpu_create(nThread);
  case BT_BACKEND_CUDA:
#ifdef BATON_HAVE_CUDA
    return bt_backend_cuda_create(device);
#else
    (void)device;
    bt_err_set("the CUDA backend is not compiled into this binary (it was "
               "built without the CUDA toolkit); use backend = cpu");
    return NULL;
#endif
  }
  bt_err_set("unknown backend kind %d", (int)eKind);
  return NULL;
}

int bt_backend_cuda_compiled(void) {
#ifdef BATON_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}

void bt_backend_free(bt_backend *be) {
  if (be) be->pVtab->destroy(be);
}
bt_backend_kind bt_backend_kind_of(const bt_backend *be) { return be->eKind; }
const char *bt_backend_name(const bt_backend *be) { return be->pVtab->zName; }

float *bt_mem_alloc(bt_backend *be, size_t n, const char *zWhat) {
  return be->pVtab->mem_alloc(be, n, zWhat);
}
void bt_mem_free(bt_backend *be, float *p) {
  if (p) be->pVtab->mem_free(be, p);
}
void bt_mem_zero(bt_backend *be, float *p, size_t n) {
  be->pVtab->mem_zero(be, p, n);
}
void bt_mem_to_host(bt_backend *be, float *pHost, const float *pDev, size_t n) {
  be->pVtab->mem_to_host(be, pHost, pDev, n * sizeof(float));
}
void bt_mem_from_host(bt_backend *be, float *pDev, const float *pHost,
                      size_t n) {
  be->pVtab->mem_from_host(be, pDev, pHost, n * sizeof(float));
}
int32_t *bt_mem_alloc_i32(bt_backend *be, size_t n, const char *zWhat) {
  return be->pVtab->mem_alloc_i32(be, n, zWhat);
}
void bt_mem_free_i32(bt_backend *be, int32_t *p) {
  if (p) be->pVtab->mem_free(be, p);
}
void bt_mem_from_host_i32(bt_backend *be, int32_t *pDev, const int32_t *pHost,
                          size_t n) {
  be->pVtab->mem_from_host(be, pDev, pHost, n * sizeof(int32_t));
}
void bt_backend_sync(bt_backend *be) { be->pVtab->sync(be); }

void bt_op_matmul_fwd(bt_backend *be, float *out, const float *inp,
                      const float *w, const float *bias, int N, int C, int OC,
                      bt_wlayout eLayout) {
  be->pVtab->matmul_fwd(be, out, inp, w, bias, N, C, OC, eLayout);
}
void bt_op_matmul_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                      const float *dout, const float *inp, const float *w,
                      int N, int C, int OC, bt_wlayout eLayout) {
  be->pVtab->matmul_bwd(be, dinp, dw, dbias, dout, inp, w, N, C, OC, eLayout);
}
void bt_op_bias_fwd(bt_backend *be, float *out, const float *inp,
                    const float *bias, int N, int C) {
  be->pVtab->bias_fwd(be, out, inp, bias, N, C);
}
void bt_op_bias_bwd(bt_backend *be, float *dinp, float *dbias,
                    const float *dout, int N, int C) {
  be->pVtab->bias_bwd(be, dinp, dbias, dout, N, C);
}
void bt_op_embed_fwd(bt_backend *be, float *out, const int32_t *tok,
                     const float *wte, const float *wpe, int B, int T, int C) {
  be->pVtab->embed_fwd(be, out, tok, wte, wpe, B, T, C);
}
void bt_op_embed_bwd(bt_backend *be, float *dwte, float *dwpe,
                     const float *dout, const int32_t *tok, int B, int T,
                     int C, int V) {
  be->pVtab->embed_bwd(be, dwte, dwpe, dout, tok, B, T, C, V);
}
void bt_op_layernorm_fwd(bt_backend *be, float *out, float *mean, float *rstd,
                         const float *inp, const float *w, const float *b,
                         int N, int C) {
  be->pVtab->layernorm_fwd(be, out, mean, rstd, inp, w, b, N, C);
}
void bt_op_layernorm_bwd(bt_backend *be, float *dinp, float *dw, float *db,
                         const float *dout, const float *inp, const float *w,
                         const float *mean, const float *rstd, int N, int C) {
  be->pVtab->layernorm_bwd(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
void bt_op_gelu_fwd(bt_backend *be, float *out, const float *inp, size_t n) {
  be->pVtab->gelu_fwd(be, out, inp, n);
}
void bt_op_gelu_bwd(bt_backend *be, float *dinp, const float *inp,
                    const float *dout, size_t n) {
  be->pVtab->gelu_bwd(be, dinp, inp, dout, n);
}
void bt_op_residual_fwd(bt_backend *be, float *out, const float *a,
                        const float *b, size_t n) {
  be->pVtab->residual_fwd(be, out, a, b, n);
}
void bt_op_residual_bwd(bt_backend *be, float *da, float *db,
                        const float *dout, size_t n) {
  be->pVtab->residual_bwd(be, da, db, dout, n);
}
void bt_op_attention_fwd(bt_backend *be, float *out, float *att,
                         const float *qkv, int B, int T, int C, int NH) {
  be->pVtab->attention_fwd(be, out, att, qkv, B, T, C, NH);
}
void bt_op_attention_bwd(bt_backend *be, float *dqkv, float *scratch,
                         const float *dout, const float *qkv, const float *att,
                         int B, int T, int C, int NH) {
  be->pVtab->attention_bwd(be, dqkv, scratch, dout, qkv, att, B, T, C, NH);
}
size_t bt_op_attention_att_size(bt_backend *be, int B, int T, int NH) {
  return be->pVtab->attention_att_size(be, B, T, NH);
}
size_t bt_op_attention_scratch_size(bt_backend *be, int B, int T, int NH) {
  return be->pVtab->attention_scratch_size(be, B, T, NH);
}
void bt_op_xent_fwd(bt_backend *be, float *losses, const float *logits,
                    const int32_t *targets, int N, int V, int Vp) {
  be->pVtab->xent_fwd(be, losses, logits, targets, N, V, Vp);
}
void bt_op_xent_bwd(bt_backend *be, float *dlogits, const float *logits,
                    const int32_t *targets, float scale, int N, int V, int Vp) {
  be->pVtab->xent_bwd(be, dlogits, logits, targets, scale, N, V, Vp);
}
void bt_op_adamw(bt_backend *be, float *param, const float *grad, float *m,
                 float *v, size_t n, const bt_adamw_hparams *hp) {
  be->pVtab->adamw(be, param, grad, m, v, n, hp);
}
double bt_op_sumsq(bt_backend *be, const float *x, size_t n) {
  return be->pVtab->sumsq(be, x, n);
}
void bt_op_scale(bt_backend *be, float *x, float s, size_t n) {
  be->pVtab->scale(be, x, s, n);
}
