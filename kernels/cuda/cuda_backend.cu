/*
 * cuda_backend.cu: lifetime, memory, scratch and the function table of the
 * CUDA backend. The ops themselves live in cuda_gemm.cu, cuda_ops.cu and
 * cuda_attention.cu; cuda_common.h states the invariants they keep.
 *
 * Device and threads: create() makes `device` current on the calling
 * thread. Memory calls and sync make it current again on whatever thread
 * calls them; ops assume the calling thread's current device is `device`
 * (the trainer runs one process per GPU and calls ops from its main
 * thread).
 *
 * Copies: mem_to_host / mem_from_host are synchronous (queued on the
 * compute stream, then waited for), so a host buffer may be reused as soon
 * as they return and a D2H result is complete. They are for checkpoints
 * and metrics; a training step's batch goes through upload_async (pinned
 * staging, a copy stream, events: the host never waits for the compute
 * stream), and its statistics come back in one small read.
 *
 * Environment (read once, at create):
 *   BATON_CUDA_GEMM=fp32|bf16  GEMM operand precision (default fp32)
 *   BATON_CUDA_SYNC=1          wait after every kernel: pinpoints the op
 *                              behind an asynchronous error (debugging)
 */
#include "kernels/cuda/cuda_common.h"

#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------ */

void bt_cuda_fatal(const char *zCall, const char *zErr, const char *zFile,
                   int line) {
  bt_log_error("CUDA backend: %s failed: %s (%s:%d)", zCall, zErr, zFile,
               line);
  bt_assert_fail(zCall, zFile, line);
}

/* ---- scratch ----------------------------------------------------------- */

void *bt_cuda_scratch(bt_cuda *cu, size_t nByte) {
  if (nByte <= cu->nScratch) return cu->pScratch;
  /* Round up to 1 MiB so that slightly different shapes do not each cause
   * a reallocation. */
  size_t nNew = (nByte + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
  /* Kernels already queued may still read the old buffer. */
  BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  if (cu->pScratch) BT_CUDA_CHECK(cudaFree(cu->pScratch));
  cu->pScratch = NULL;
  cu->nScratch = 0;
  cudaError_t e = cudaMalloc(&cu->pScratch, nNew);
  if (e != cudaSuccess) {
    char zBuf[32];
    bt_log_error("CUDA backend: cannot grow op scratch to %s",
                 bt_fmt_bytes((double)nNew, zBuf, sizeof zBuf));
    bt_cuda_fatal("cudaMalloc(scratch)", cudaGetErrorString(e), __FILE__,
                  __LINE__);
  }
  cu->nScratch = nNew;
  {
    char zBuf[32];
    bt_log_debug("CUDA backend: op scratch grown to %s (first use of this "
                 "shape; steady-state steps do not allocate)",
                 bt_fmt_bytes((double)nNew, zBuf, sizeof zBuf));
  }
  return cu->pScratch;
}

/* ---- lifetime ---------------------------------------------------------- */

/* Frees whatever part of the state exists (create's failure path uses it
 * too, so every field may still be NULL). */
static void cuda_state_free(bt_cuda *cu) {
  if (!cu) return;
  if (cu->stream) cudaStreamSynchronize(cu->stream);
  if (cu->pScratch) cudaFree(cu->pScratch);
  if (cu->pIdx) cudaFree(cu->pIdx);
  if (cu->pWorkspace) cudaFree(cu->pWorkspace);
  if (cu->pSumsqPart) cudaFree(cu->pSumsqPart);
  if (cu->pHostSumsq) cudaFreeHost(cu->pHostSumsq);
  if (cu->copyStream) cudaStreamSynchronize(cu->copyStream);
  for (int i = 0; i < BT_CUDA_UPLOAD_SLOTS; i++) {
    if (cu->aUp[i].p) cudaFreeHost(cu->aUp[i].p);
    if (cu->aUp[i].ev) cudaEventDestroy(cu->aUp[i].ev);
  }
  for (int i = 0; i < BT_CUDA_UPLOAD_DSTS; i++)
    if (cu->aRel[i].ev) cudaEventDestroy(cu->aRel[i].ev);
  if (cu->evCompute) cudaEventDestroy(cu->evCompute);
  if (cu->copyStream) cudaStreamDestroy(cu->copyStream);
  if (cu->lt) cublasLtDestroy(cu->lt);
  bt_cuda_speech_free(cu);
  if (cu->stream) cudaStreamDestroy(cu->stream);
  free(cu);
}

static void cuda_destroy(bt_backend *be) {
  (void)cudaSetDevice(bt_cuda_of(be)->device);
  bt_cuda_attention_release();
  cuda_state_free(bt_cuda_of(be));
  free(be);
}

/* ---- memory ------------------------------------------------------------ */

/* Memory calls and sync may come from a thread other than the one that
 * created the backend (checkpoint staging, tests): make our device current
 * on the calling thread first. cudaSetDevice on the already-current device
 * costs well under a microsecond. Ops assume the creating thread. */
static void cuda_bind(const bt_cuda *cu) {
  BT_CUDA_CHECK(cudaSetDevice(cu->device));
}

static void *cuda_alloc_bytes(bt_backend *be, size_t nByte, const char *zWhat) {
  bt_cuda *cu = bt_cuda_of(be);
  void *p = NULL;
  if (nByte == 0) nByte = sizeof(float); /* a valid, freeable pointer */
  cuda_bind(cu);
  cudaError_t e = cudaMalloc(&p, nByte);
  if (e != cudaSuccess) {
    char zBuf[32];
    (void)cudaGetLastError(); /* out-of-memory is not sticky: clear it */
    bt_err_set("CUDA device %d: cannot allocate %s for %s: %s", cu->device,
               bt_fmt_bytes((double)nByte, zBuf, sizeof zBuf),
               zWhat ? zWhat : "(unnamed)", cudaGetErrorString(e));
    return NULL;
  }
  /* The contract says zeroed; wait so that the memory is usable from the
   * host side (copies) at once as well. */
  BT_CUDA_CHECK(cudaMemsetAsync(p, 0, nByte, cu->stream));
  BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  return p;
}


static void cuda_mem_free(bt_backend *be, void *p) {
  /* cudaFree synchronises the device itself, but queued kernels on our
   * stream may use p: say so explicitly rather than rely on it. */
  cuda_bind(bt_cuda_of(be));
  BT_CUDA_CHECK(cudaStreamSynchronize(bt_cuda_of(be)->stream));
  BT_CUDA_CHECK(cudaFree(p));
  /* a later allocation at the same address starts without a release */
  bt_cuda *cu = bt_cuda_of(be);
  for (int i = 0; i < BT_CUDA_UPLOAD_DSTS; i++)
    if (cu->aRel[i].p == p) {
      cu->aRel[i].p = NULL;
      cu->aRel[i].bValid = 0;
    }
}

static void cuda_mem_zero(bt_backend *be, void *p, size_t nByte) {
  if (nByte == 0) return;
  cuda_bind(bt_cuda_of(be));
  BT_CUDA_CHECK(cudaMemsetAsync(p, 0, nByte, bt_cuda_of(be)->stream));
}

static void cuda_mem_to_host(bt_backend *be, void *pHost, const void *pDev,
                             size_t nByte) {
  bt_cuda *cu = bt_cuda_of(be);
  if (nByte == 0) return;
  cuda_bind(cu);
  BT_CUDA_CHECK(cudaMemcpyAsync(pHost, pDev, nByte, cudaMemcpyDeviceToHost,
                                cu->stream));
  BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
}

static void cuda_mem_from_host(bt_backend *be, void *pDev, const void *pHost,
                               size_t nByte) {
  bt_cuda *cu = bt_cuda_of(be);
  if (nByte == 0) return;
  cuda_bind(cu);
  BT_CUDA_CHECK(cudaMemcpyAsync(pDev, pHost, nByte, cudaMemcpyHostToDevice,
                                cu->stream));
  BT_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
}

/* The release entry of pDev, or -1. */
static int cuda_release_find(const bt_cuda *cu, const void *pDev) {
  for (int i = 0; i < BT_CUDA_UPLOAD_DSTS; i++)
    if (cu->aRel[i].p == pDev) return i;
  return -1;
}

/* ops.h bt_backend_upload_release: an event on the compute stream after
 * the last reader of pDev queued so far. */
static void cuda_upload_release(bt_backend *be, const void *pDev) {
  bt_cuda *cu = bt_cuda_of(be);
  cuda_bind(cu);
  int i = cuda_release_find(cu, pDev);
  if (i < 0) i = cuda_release_find(cu, NULL);
  if (i < 0) return; /* table full: the upload waits for everything */
  if (!cu->aRel[i].ev)
    BT_CUDA_CHECK(cudaEventCreateWithFlags(&cu->aRel[i].ev,
                                           cudaEventDisableTiming));
  cu->aRel[i].p = pDev;
  BT_CUDA_CHECK(cudaEventRecord(cu->aRel[i].ev, cu->stream));
  cu->aRel[i].bValid = 1;
}

/* ops.h bt_backend_upload_async. Order of events: the host waits for the
 * slot's previous copy (normally long done), fills the slot, the copy
 * stream waits for the last readers of pDev (its release event, which
 * with two batch buffers in turn is a micro-step older than the compute
 * queued now) or, without a release, for all compute work queued so far;
 * it copies, and the compute stream waits for the copy. Neither stream's
 * queue is waited for by the host. */
static void cuda_upload_async(bt_backend *be, void *pDev, const void *pHost,
                              size_t nByte) {
  bt_cuda *cu = bt_cuda_of(be);
  cuda_bind(cu);
  if (!cu->copyStream) {
    BT_CUDA_CHECK(cudaStreamCreateWithFlags(&cu->copyStream,
                                            cudaStreamNonBlocking));
    BT_CUDA_CHECK(cudaEventCreateWithFlags(&cu->evCompute,
                                           cudaEventDisableTiming));
    for (int i = 0; i < BT_CUDA_UPLOAD_SLOTS; i++)
      BT_CUDA_CHECK(cudaEventCreateWithFlags(&cu->aUp[i].ev,
                                             cudaEventDisableTiming));
  }
  int i = cu->iUp;
  cu->iUp = (i + 1) % BT_CUDA_UPLOAD_SLOTS;
  if (cu->aUp[i].bUsed) BT_CUDA_CHECK(cudaEventSynchronize(cu->aUp[i].ev));
  if (cu->aUp[i].n < nByte) {
    if (cu->aUp[i].p) BT_CUDA_CHECK(cudaFreeHost(cu->aUp[i].p));
    cu->aUp[i].p = NULL;
    cu->aUp[i].n = 0;
    BT_CUDA_CHECK(cudaMallocHost(&cu->aUp[i].p, nByte));
    cu->aUp[i].n = nByte;
  }
  memcpy(cu->aUp[i].p, pHost, nByte);
  int r = cuda_release_find(cu, pDev);
  if (r >= 0 && cu->aRel[r].bValid) {
    BT_CUDA_CHECK(cudaStreamWaitEvent(cu->copyStream, cu->aRel[r].ev, 0));
    cu->aRel[r].bValid = 0; /* the ops queued after this upload read it */
  } else {
    BT_CUDA_CHECK(cudaEventRecord(cu->evCompute, cu->stream));
    BT_CUDA_CHECK(cudaStreamWaitEvent(cu->copyStream, cu->evCompute, 0));
  }
  BT_CUDA_CHECK(cudaMemcpyAsync(pDev, cu->aUp[i].p, nByte,
                                cudaMemcpyHostToDevice, cu->copyStream));
  BT_CUDA_CHECK(cudaEventRecord(cu->aUp[i].ev, cu->copyStream));
  cu->aUp[i].bUsed = 1;
  BT_CUDA_CHECK(cudaStreamWaitEvent(cu->stream, cu->aUp[i].ev, 0));
}

static void cuda_sync(bt_backend *be) {
  cuda_bind(bt_cuda_of(be));
  BT_CUDA_CHECK(cudaStreamSynchronize(bt_cuda_of(be)->stream));
}

/* Both dtypes. bf16 is stored as __nv_bfloat16, 2 bytes per [act]
 * element (kernels/ops.def "ELEMENT TYPES"): every kernel with an [act]
 * argument is instantiated for both types and picks one with BT_CUDA_ACT
 * (cuda_common.h), the GEMMs take bf16 operands as they are (cuda_gemm.cu),
 * and buffers are sized by bytes (backend.c). Logged once, as the second
 * half of create's start-up line, because create runs before the model
 * has chosen. BATON_CUDA_GEMM=bf16 (converting fp32 operands per GEMM
 * call) only matters with fp32 storage. */
static int cuda_set_act_dtype(bt_backend *be, bt_act_dtype e, size_t *pnByte) {
  bt_cuda *cu = bt_cuda_of(be);
  *pnByte = e == BT_ACT_BF16 ? sizeof(__nv_bfloat16) : sizeof(float);
  bt_log_debug("CUDA backend: device %d stores activations as %s (%zu "
               "bytes each)%s",
               cu->device, bt_act_dtype_name(e), *pnByte,
               e == BT_ACT_BF16 && cu->bGemmBf16
                   ? "; BATON_CUDA_GEMM=bf16 has no effect (the GEMM "
                     "operands are bf16 already)"
                   : "");
  return BT_OK;
}

/* ---- extra entry points (cuda_backend.h) ------------------------------- */

void *bt_cuda_stream(bt_backend *be) { return (void *)bt_cuda_of(be)->stream; }
int bt_cuda_gemm_bf16(bt_backend *be) { return bt_cuda_of(be)->bGemmBf16; }

/* ---- the function table ------------------------------------------------ */

/* Filled field by field (not positionally) so that two members with the
 * same signature can never be swapped by accident. */
static bt_backend_vtab cuda_vtab_make(void) {
  bt_backend_vtab v;
  memset(&v, 0, sizeof v);
  v.zName = "cuda";
  v.destroy = cuda_destroy;
  v.mem_alloc = cuda_alloc_bytes;
  v.mem_free = cuda_mem_free;
  v.mem_zero = cuda_mem_zero;
  v.mem_to_host = cuda_mem_to_host;
  v.mem_from_host = cuda_mem_from_host;
  v.sync = cuda_sync;
  v.upload_async = cuda_upload_async;
  v.upload_release = cuda_upload_release;
  v.set_act_dtype = cuda_set_act_dtype;
  /* v.<op> = bt_cuda_<op> for every op of kernels/ops.def */
#define BT_OP_RET(ret, name, params, args) v.name = bt_cuda_##name;
#include "kernels/ops.def"
  return v;
}
static const bt_backend_vtab g_cuda_vtab = cuda_vtab_make();

/* ---- create ------------------------------------------------------------ */

/* Records an expected failure of create with the failing call named. */
#define CREATE_TRY(call)                                                       \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      bt_err_set("CUDA backend on device %d: %s failed: %s", device, #call,    \
                 cudaGetErrorString(e_));                                      \
      goto fail;                                                               \
    }                                                                          \
  } while (0)

bt_backend *bt_backend_cuda_create(int device) {
  bt_backend *be = NULL;
  bt_cuda *cu = NULL;
  int nDev = 0;
  int bBf16 = 0;
  const char *zGemm = getenv("BATON_CUDA_GEMM");
  const char *zSync = getenv("BATON_CUDA_SYNC");
  const char *zGelu = getenv("BATON_CUDA_GELU_EPILOGUE");
  cudaError_t e;
  cublasStatus_t s;

  if (zGemm && zGemm[0] && strcmp(zGemm, "fp32") != 0) {
    if (strcmp(zGemm, "bf16") == 0) {
      bBf16 = 1;
    } else {
      bt_err_set("BATON_CUDA_GEMM=%s: expected fp32 or bf16", zGemm);
      return NULL;
    }
  }
  if (zGelu && zGelu[0] && strcmp(zGelu, "0") != 0 &&
      strcmp(zGelu, "1") != 0) {
    bt_err_set("BATON_CUDA_GELU_EPILOGUE=%s: expected 0 or 1", zGelu);
    return NULL;
  }
  e = cudaGetDeviceCount(&nDev);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    bt_err_set("CUDA backend: no usable CUDA device (cudaGetDeviceCount: %s)",
               cudaGetErrorString(e));
    return NULL;
  }
  if (device < 0 || device >= nDev) {
    bt_err_set("CUDA backend: device %d does not exist (%d device%s visible)",
               device, nDev, nDev == 1 ? "" : "s");
    return NULL;
  }

  be = (bt_backend *)bt_calloc(1, sizeof *be, "CUDA backend handle");
  cu = (bt_cuda *)bt_calloc(1, sizeof *cu, "CUDA backend state");
  if (!be || !cu) goto fail;
  cu->device = device;
  cu->bGemmBf16 = bBf16;
  cu->bGeluEpi = zGelu && strcmp(zGelu, "1") == 0; /* default off: gpu.md */
  cu->bSyncCheck = zSync && zSync[0] == '1';

  CREATE_TRY(cudaSetDevice(device));
  /* A blocking stream (not cudaStreamNonBlocking): work that other modules
   * put on the legacy default stream is then ordered with our ops, which
   * is the safe default while the communicator is being integrated. */
  CREATE_TRY(cudaStreamCreate(&cu->stream));
  s = cublasLtCreate(&cu->lt);
  if (s != CUBLAS_STATUS_SUCCESS) {
    cu->lt = NULL;
    bt_err_set("CUDA backend on device %d: cublasLtCreate failed: %s", device,
               cublasLtGetStatusString(s));
    goto fail;
  }
  cu->nWorkspace = BT_CUDA_LT_WORKSPACE;
  CREATE_TRY(cudaMalloc(&cu->pWorkspace, cu->nWorkspace));
  CREATE_TRY(cudaMalloc((void **)&cu->pSumsqPart,
                        (BT_CUDA_SUMSQ_BLOCKS + 1) * sizeof(double)));
  CREATE_TRY(cudaMallocHost((void **)&cu->pHostSumsq, sizeof(double)));
  CREATE_TRY(bt_cuda_attention_init());

  be->pVtab = &g_cuda_vtab;
  be->eKind = BT_BACKEND_CUDA;
  be->pImpl = cu;
  be->eActDtype = BT_ACT_F32;
  be->nActByte = sizeof(float);
  {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) == cudaSuccess)
      bt_log_debug("CUDA backend: device %d (%s, sm_%d%d, %d SMs), GEMM %s, "
                   "activations fp32 until train.precision sets them",
                   device, prop.name, prop.major, prop.minor,
                   prop.multiProcessorCount, bBf16 ? "bf16" : "fp32");
  }
  return be;

fail:
  (void)cudaGetLastError();
  cuda_state_free(cu);
  free(be);
  return NULL;
}
