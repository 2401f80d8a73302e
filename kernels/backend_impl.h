/*
 * backend_impl.h: private function table behind bt_backend. Only backends
 * (kernels/cpu, kernels/cuda) and kernels/backend.c include this file.
 * Each function pointer has the contract of the matching bt_op_* / bt_mem_*
 * function in ops.h, with the backend handle first. The op members are
 * generated from kernels/ops.def; a backend fills them with
 *   #define BT_OP_RET(ret, name, params, args) .name = bt_<backend>_##name,
 *   #include "kernels/ops.def"
 * inside its table's initialiser.
 */
#ifndef BATON_BACKEND_IMPL_H
#define BATON_BACKEND_IMPL_H

#include "kernels/ops.h"

typedef struct bt_backend_vtab {
  const char *zName;
  void (*destroy)(bt_backend *be);

  float *(*mem_alloc)(bt_backend *be, size_t n, const char *zWhat);
  void (*mem_free)(bt_backend *be, void *p);
  void (*mem_zero)(bt_backend *be, float *p, size_t n);
  void (*mem_to_host)(bt_backend *be, void *pHost, const void *pDev,
                      size_t nByte);
  void (*mem_from_host)(bt_backend *be, void *pDev, const void *pHost,
                        size_t nByte);
  int32_t *(*mem_alloc_i32)(bt_backend *be, size_t n, const char *zWhat);
  void (*sync)(bt_backend *be);

  /* One member per op of kernels/ops.def, with the op's signature. */
#define BT_OP_RET(ret, name, params, args) ret(*name) params;
#include "kernels/ops.def"
} bt_backend_vtab;

struct bt_backend {
  const bt_backend_vtab *pVtab;
  bt_backend_kind eKind;
  void *pImpl; /* backend-private state */
};

/* Constructors, one per backend; NULL + bt_err_msg() on failure. */
bt_backend *bt_backend_cpu_create(int nThread);
bt_backend *bt_backend_cuda_create(int device);

#endif /* BATON_BACKEND_IMPL_H */
