/*
 * backend_impl.h: private function table behind bt_backend. Only backends
 * (kernels/cpu, kernels/cuda) and kernels/backend.c include this file.
 * Each function pointer has the contract of the matching bt_op_* / bt_mem_*
 * function in ops.h, with the backend handle first.
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

  void (*matmul_fwd)(bt_backend *, float *, const float *, const float *,
                     const float *, int, int, int, bt_wlayout);
  void (*matmul_bwd)(bt_backend *, float *, float *, float *, const float *,
                     const float *, const float *, int, int, int, bt_wlayout);
  void (*bias_fwd)(bt_backend *, float *, const float *, const float *, int,
                   int);
  void (*bias_bwd)(bt_backend *, float *, float *, const float *, int, int);
  void (*embed_fwd)(bt_backend *, float *, const int32_t *, const float *,
                    const float *, int, int, int);
  void (*embed_bwd)(bt_backend *, float *, float *, const float *,
                    const int32_t *, int, int, int, int);
  void (*layernorm_fwd)(bt_backend *, float *, float *, float *, const float *,
                        const float *, const float *, int, int);
  void (*layernorm_bwd)(bt_backend *, float *, float *, float *, const float *,
                        const float *, const float *, const float *,
                        const float *, int, int);
  void (*gelu_fwd)(bt_backend *, float *, const float *, size_t);
  void (*gelu_bwd)(bt_backend *, float *, const float *, const float *, size_t);
  void (*residual_fwd)(bt_backend *, float *, const float *, const float *,
                       size_t);
  void (*residual_bwd)(bt_backend *, float *, float *, const float *, size_t);
  void (*attention_fwd)(bt_backend *, float *, float *, const float *, int, int,
                        int, int);
  void (*attention_bwd)(bt_backend *, float *, float *, const float *,
                        const float *, const float *, int, int, int, int);
  size_t (*attention_att_size)(bt_backend *, int, int, int);
  size_t (*attention_scratch_size)(bt_backend *, int, int, int);
  void (*xent_fwd)(bt_backend *, float *, const float *, const int32_t *, int,
                   int, int);
  void (*xent_bwd)(bt_backend *, float *, const float *, const int32_t *, float,
                   int, int, int);
  void (*adamw)(bt_backend *, float *, const float *, float *, float *, size_t,
                const bt_adamw_hparams *);
  double (*sumsq)(bt_backend *, const float *, size_t);
  void (*scale)(bt_backend *, float *, float, size_t);
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
