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

  /* Memory by bytes: zeroed, 64-byte aligned (bt_mem_alloc_bytes). */
  void *(*mem_alloc)(bt_backend *be, size_t nByte, const char *zWhat);
  void (*mem_free)(bt_backend *be, void *p);
  void (*mem_zero)(bt_backend *be, void *p, size_t nByte);
  void (*mem_to_host)(bt_backend *be, void *pHost, const void *pDev,
                      size_t nByte);
  void (*mem_from_host)(bt_backend *be, void *pDev, const void *pHost,
                        size_t nByte);
  void (*sync)(bt_backend *be);
  /* bt_backend_upload_async (ops.h). */
  void (*upload_async)(bt_backend *be, void *pDev, const void *pHost,
                       size_t nByte);
  /* bt_backend_upload_release (ops.h); NULL: nothing to do. */
  void (*upload_release)(bt_backend *be, const void *pDev);
  /* Accepts activation dtype e (BT_OK, *pnByte = bytes of storage per
   * element) or refuses it (BT_ERR + bt_err_set naming train.precision).
   * backend.c keeps the result in bt_backend; ops read be->eActDtype. */
  int (*set_act_dtype)(bt_backend *be, bt_act_dtype e, size_t *pnByte);

  /* One member per op of kernels/ops.def, with the op's signature. */
#define BT_OP_RET(ret, name, params, args) ret(*name) params;
#include "kernels/ops.def"
} bt_backend_vtab;

struct bt_backend {
  const bt_backend_vtab *pVtab;
  bt_backend_kind eKind;
  void *pImpl; /* backend-private state */
  /* Activation dtype (ops.h bt_act_dtype): BT_ACT_F32 and 4 bytes until
   * bt_backend_set_act_dtype; bActFixed once set or once an activation
   * buffer was allocated, after which it never changes. Backends create
   * the handle zeroed and set nActByte = 4. */
  bt_act_dtype eActDtype;
  size_t nActByte;
  int bActFixed;
};

/* Constructors, one per backend; NULL + bt_err_msg() on failure. */
bt_backend *bt_backend_cpu_create(int nThread);
bt_backend *bt_backend_cuda_create(int device);

#endif /* BATON_BACKEND_IMPL_H */
