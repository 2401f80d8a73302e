/*
 * ops.h: the backend-neutral op interface.
 *
 * Layers and the trainer call only these functions; a backend (CPU reference
 * in kernels/cpu, CUDA in kernels/cuda) implements them behind an opaque
 * bt_backend handle whose function table lives in kernels/backend_impl.h.
 * A model never knows which backend it runs on.
 *
 * The ops are listed ONCE, in kernels/ops.def (name, signature, contract);
 * this header, the function table, the dispatch and each backend's
 * prototypes are generated from that list. Read the contracts there.
 *
 * Conventions shared by every op (tests in tests/kernels/test_ops.c hold each
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

/* AdamW hyperparameters (bt_op_adamw; formula in ops.def). */
typedef struct bt_adamw_hparams {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  int t;
} bt_adamw_hparams;

/* The ops themselves: one prototype per entry of kernels/ops.def, where
 * each op's signature and contract are written, e.g.
 *   void bt_op_matmul_fwd(bt_backend *be, float *out, const float *inp,
 *                         const float *w, const float *bias, int N, int C,
 *                         int OC, bt_wlayout eLayout);
 *   double bt_op_sumsq(bt_backend *be, const float *x, size_t n); */
#define BT_OP_RET(ret, name, params, args) ret bt_op_##name params;
#include "kernels/ops.def"

#endif /* BATON_OPS_H */
