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
 *   - Tensors are row-major, contiguous, in the backend's memory (host
 *     memory for the CPU backend, device memory for CUDA). Shapes are
 *     given as counts; B = batch, T = time, C = channels, OC = output
 *     channels, NH = heads, V = vocabulary (Vp = padded row stride).
 *   - Element types: each op argument is either ACTIVATION-TYPED (stored in
 *     the backend's activation dtype, bt_act_dtype below) or FP32 always.
 *     ops.def's header lists which is which and every contract marks its
 *     activation-typed arguments [act]. In BT_ACT_F32 (the default) every
 *     tensor is float32 and nothing differs from an fp32-only interface.
 *   - Forward ops overwrite their outputs.
 *   - Backward ops ACCUMULATE (+=) into every gradient they produce, so a
 *     tensor used twice (tied embeddings, residual branches) and several
 *     micro-batches of gradient accumulation need no extra buffers. Callers
 *     zero gradients once per optimizer step. Exceptions, marked WRITTEN in
 *     their contracts: gradients of activations used exactly once, which
 *     the op overwrites (xent_bwd's dlogits, the attention backwards'
 *     dqkv), so nobody zeroes a buffer only to add into it once.
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

/* The activation dtype: how activation-typed op arguments (ops.def) are
 * stored. ONE per backend handle, chosen before the first activation-typed
 * buffer is allocated (bt_backend_set_act_dtype; bt_model_build does it
 * from train.precision) and fixed from then on.
 *
 * Why per handle and not a parameter of every op: a model never mixes
 * dtypes (one precision per run), every caller builds one model per
 * handle (the trainer: one backend per rank; export, infer and eval their
 * own), and it leaves every op signature as it was, so op lists edited in
 * parallel merge line by line. Why not bt_dtype: comm/comm.h's bt_dtype
 * names the element types of collectives (BT_F32, BT_F64, ...), and the
 * trainer includes both headers.
 *
 * BT_ACT_BF16 on the CPU reference: storage stays float, and each op
 * ROUNDS to bf16 (base/bf16.h, round to nearest even) exactly where a
 * GPU would store bf16: its activation-typed outputs, after any
 * accumulation (a += b stores round(a + b)). Values inside an op stay
 * fp32 (a GPU kernel that rounds internally, e.g. attention's P before
 * P V, carries that in its per-op error limit). So bf16 training runs on
 * CPU ranks, and a GPU bf16 path is compared op by op with the CPU. */
typedef enum bt_act_dtype {
  BT_ACT_F32 = 0,
  BT_ACT_BF16 = 1,
} bt_act_dtype;

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

/* Sets the activation dtype (see bt_act_dtype). Call before allocating any
 * activation-typed buffer: once set, or once bt_mem_alloc_act has run
 * (which fixes the default, fp32), only the same dtype may be set again. BT_ERR + bt_err_msg() when the backend cannot
 * store it (CUDA: bf16 storage is not implemented yet; the message names
 * train.precision) or when a different dtype was already fixed. */
int bt_backend_set_act_dtype(bt_backend *be, bt_act_dtype eDtype);
bt_act_dtype bt_backend_act_dtype(const bt_backend *be);
/* Bytes of storage per activation element on this backend: 4, or 2 where
 * bf16 is stored as bf16 (the CPU reference always stores float). Offsets
 * into activation-typed buffers are in these units (bt_act_at). */
size_t bt_backend_act_bytes(const bt_backend *be);
/* "fp32" or "bf16": the words of train.precision. */
const char *bt_act_dtype_name(bt_act_dtype eDtype);

/* ---- memory ----------------------------------------------------------- */

/* Allocates n floats of backend memory (zeroed). NULL + bt_err_msg on
 * failure. */
float *bt_mem_alloc(bt_backend *be, size_t n, const char *zWhat);
void bt_mem_free(bt_backend *be, float *p);
void bt_mem_zero(bt_backend *be, float *p, size_t n);
/* Allocation and zeroing by bytes: what dtype-aware callers use. The
 * pointer is 64-byte aligned, zeroed, and freed with bt_mem_free. */
void *bt_mem_alloc_bytes(bt_backend *be, size_t nByte, const char *zWhat);
void bt_mem_zero_bytes(bt_backend *be, void *p, size_t nByte);
/* n activation elements (n * bt_backend_act_bytes bytes): an
 * activation-typed buffer, and its zeroing. */
float *bt_mem_alloc_act(bt_backend *be, size_t n, const char *zWhat);
void bt_mem_zero_act(bt_backend *be, float *p, size_t n);
/* p + n activation elements: the slice of an activation-typed buffer.
 * Activation-typed arguments keep the type float * in the op signatures;
 * where the storage is 2 bytes they point at bf16 data, so their offsets
 * must go through this function, never through float arithmetic. */
float *bt_act_at(const bt_backend *be, const float *p, size_t n);
void bt_mem_to_host(bt_backend *be, float *pHost, const float *pDev, size_t n);
/* n elements of an activation-typed buffer to n host floats: a plain copy
 * where the storage is float, bf16 widened exactly where it is 2 bytes
 * (read-backs of logits on a bf16 CUDA backend: eval, infer). */
void bt_act_to_host(bt_backend *be, float *pHost, const float *pDevAct,
                    size_t n);
void bt_mem_from_host(bt_backend *be, float *pDev, const float *pHost,
                      size_t n);
/* Integer buffers for token ids / targets (int32). */
int32_t *bt_mem_alloc_i32(bt_backend *be, size_t n, const char *zWhat);
void bt_mem_free_i32(bt_backend *be, int32_t *p);
void bt_mem_from_host_i32(bt_backend *be, int32_t *pDev, const int32_t *pHost,
                          size_t n);
/* Waits until all queued work on the backend has finished. */
void bt_backend_sync(bt_backend *be);
/* Host -> device copy that does not make the host wait for the device
 * (issue 12 item 4): the bytes are copied into one of the backend's
 * pinned staging buffers, then on a second (copy) stream to pDev, after
 * the compute work queued so far (which may still read pDev); the compute
 * stream waits for the copy (an event) before any op queued after this
 * call. pHost may be reused when it returns. The host waits only for the
 * copy that used the same staging buffer (BT_CUDA_UPLOAD_SLOTS uploads
 * ago). CPU backend: memcpy. */
void bt_backend_upload_async(bt_backend *be, void *pDev, const void *pHost,
                             size_t nByte);
/* Says that every op reading pDev's uploaded bytes has been queued (the
 * model calls it after a micro-step's backward). The next
 * bt_backend_upload_async into pDev then waits (on the copy stream) only
 * for the compute work queued up to this call, not for all work queued
 * before the upload: with two batch buffers used in turn, the copy of
 * micro-step k+1's batch overlaps micro-step k's forward and backward.
 * Without a release (e.g. an evaluation forward) the next upload waits for
 * everything queued so far, as before. An upload consumes the release.
 * CPU backend: nothing to do (its upload is a memcpy). */
void bt_backend_upload_release(bt_backend *be, const void *pDev);

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
