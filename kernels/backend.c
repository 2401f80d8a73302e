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

/* One wrapper per op of kernels/ops.def: forwards its arguments to the
 * backend's table. Two macros because C forbids `return f();` in a void
 * function. */
#define BT_OP(name, params, args)                                              \
  void bt_op_##name params { be->pVtab->name args; }
#define BT_OP_RET(ret, name, params, args)                                     \
  ret bt_op_##name params { return be->pVtab->name args; }
#include "kernels/ops.def"
