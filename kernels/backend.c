/*
 * backend.c: dispatch from the public op interface (ops.h) to a backend's
 * function table. Nothing here knows what a backend does. It keeps the
 * one piece of state every backend shares, the activation dtype (ops.h
 * bt_act_dtype): set once, through the backend's set_act_dtype hook,
 * and fixed from then on, or fixed at fp32 by the first activation
 * buffer; element counts become bytes here (overflow checked once).
 */
#include "base/util.h"
#include "kernels/backend_impl.h"
#include "base/bf16.h"

#include <stdint.h>
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

const char *bt_act_dtype_name(bt_act_dtype eDtype) {
  return eDtype == BT_ACT_BF16 ? "bf16" : "fp32";
}

int bt_backend_set_act_dtype(bt_backend *be, bt_act_dtype eDtype) {
  if (eDtype != BT_ACT_F32 && eDtype != BT_ACT_BF16)
    return bt_err_set("unknown activation dtype %d", (int)eDtype);
  if (be->bActFixed) {
    if (eDtype == be->eActDtype) return BT_OK;
    return bt_err_set("train.precision: the %s backend's activation dtype "
                      "is already %s (fixed when the first model was "
                      "built on it); cannot change it to %s",
                      bt_backend_name(be), bt_act_dtype_name(be->eActDtype),
                      bt_act_dtype_name(eDtype));
  }
  size_t nByte = 0;
  if (be->pVtab->set_act_dtype(be, eDtype, &nByte) != BT_OK) return BT_ERR;
  BT_ASSERT(nByte == 2 || nByte == 4);
  be->eActDtype = eDtype;
  be->nActByte = nByte;
  be->bActFixed = 1;
  return BT_OK;
}
bt_act_dtype bt_backend_act_dtype(const bt_backend *be) {
  return be->eActDtype;
}
size_t bt_backend_act_bytes(const bt_backend *be) { return be->nActByte; }
const char *bt_backend_name(const bt_backend *be) { return be->pVtab->zName; }

/* Element counts are checked here, once for every backend: n elements of
 * nSize bytes must not overflow size_t. */
static void *mem_alloc_n(bt_backend *be, size_t n, size_t nSize,
                         const char *zWhat) {
  if (n > SIZE_MAX / nSize) {
    bt_err_set("allocation of %zu elements of %zu bytes for %s overflows", n,
               nSize, zWhat ? zWhat : "buffer");
    return NULL;
  }
  return be->pVtab->mem_alloc(be, n * nSize, zWhat);
}

float *bt_mem_alloc(bt_backend *be, size_t n, const char *zWhat) {
  return (float *)mem_alloc_n(be, n, sizeof(float), zWhat);
}
void *bt_mem_alloc_bytes(bt_backend *be, size_t nByte, const char *zWhat) {
  return be->pVtab->mem_alloc(be, nByte, zWhat);
}
float *bt_mem_alloc_act(bt_backend *be, size_t n, const char *zWhat) {
  be->bActFixed = 1; /* the buffer's size depends on the dtype from now on */
  return (float *)mem_alloc_n(be, n, be->nActByte, zWhat);
}
void bt_mem_free(bt_backend *be, float *p) {
  if (p) be->pVtab->mem_free(be, p);
}
void bt_mem_zero(bt_backend *be, float *p, size_t n) {
  if (n) be->pVtab->mem_zero(be, p, n * sizeof(float));
}
void bt_mem_zero_bytes(bt_backend *be, void *p, size_t nByte) {
  if (nByte) be->pVtab->mem_zero(be, p, nByte);
}
void bt_mem_zero_act(bt_backend *be, float *p, size_t n) {
  if (n) be->pVtab->mem_zero(be, p, n * be->nActByte);
}
float *bt_act_at(const bt_backend *be, const float *p, size_t n) {
  return (float *)((char *)(uintptr_t)p + n * be->nActByte);
}
void bt_mem_to_host(bt_backend *be, float *pHost, const float *pDev, size_t n) {
  be->pVtab->mem_to_host(be, pHost, pDev, n * sizeof(float));
}
void bt_act_to_host(bt_backend *be, float *pHost, const float *pDevAct,
                    size_t n) {
  if (!n) return;
  if (be->nActByte == sizeof(float)) {
    be->pVtab->mem_to_host(be, pHost, pDevAct, n * sizeof(float));
    return;
  }
  BT_ASSERT(be->nActByte == sizeof(uint16_t));
  /* The 2-byte values land in the upper half of pHost (bytes 2n..4n) and
   * widen front to back: float i (bytes 4i..4i+3) never reaches a value not
   * yet read (half j > i, from byte 2n + 2j >= 2n + 2i + 2 > 4i + 3 for
   * i < n), so no scratch is needed, in any order the compiler picks. */
  uint16_t *pHalf = (uint16_t *)(void *)pHost + n;
  be->pVtab->mem_to_host(be, pHalf, pDevAct, n * sizeof(uint16_t));
  for (size_t i = 0; i < n; i++) pHost[i] = bt_bf16_to_f32(pHalf[i]);
}
void bt_mem_from_host(bt_backend *be, float *pDev, const float *pHost,
                      size_t n) {
  be->pVtab->mem_from_host(be, pDev, pHost, n * sizeof(float));
}
int32_t *bt_mem_alloc_i32(bt_backend *be, size_t n, const char *zWhat) {
  return (int32_t *)mem_alloc_n(be, n, sizeof(int32_t), zWhat);
}
void bt_mem_free_i32(bt_backend *be, int32_t *p) {
  if (p) be->pVtab->mem_free(be, p);
}
void bt_mem_from_host_i32(bt_backend *be, int32_t *pDev, const int32_t *pHost,
                          size_t n) {
  be->pVtab->mem_from_host(be, pDev, pHost, n * sizeof(int32_t));
}
void bt_backend_sync(bt_backend *be) { be->pVtab->sync(be); }
void bt_backend_upload_async(bt_backend *be, void *pDev, const void *pHost,
                             size_t nByte) {
  if (nByte) be->pVtab->upload_async(be, pDev, pHost, nByte);
}
void bt_backend_upload_release(bt_backend *be, const void *pDev) {
  if (pDev && be->pVtab->upload_release) be->pVtab->upload_release(be, pDev);
}

/* One wrapper per op of kernels/ops.def: forwards its arguments to the
 * backend's table. Two macros because C forbids `return f();` in a void
 * function. */
#define BT_OP(name, params, args)                                              \
  void bt_op_##name params { be->pVtab->name args; }
#define BT_OP_RET(ret, name, params, args)                                     \
  ret bt_op_##name params { return be->pVtab->name args; }
#include "kernels/ops.def"
