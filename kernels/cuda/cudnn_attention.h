/*
 * cudnn_attention.h: causal multi-head self-attention on tensor cores
 * through cuDNN's fused scaled-dot-product attention (SDPA), bf16 storage,
 * driven by NVIDIA's header-only cudnn-frontend (vendored under
 * third_party/cudnn-frontend, version 1.16.0, MIT licence). C interface;
 * the C++ lives in cudnn_attention.cpp, the only file that includes the
 * frontend (llm.c's llmc/cudnn_att.cpp is the pattern).
 *
 * Layouts (the same as kernels/ops.def's attention op, in bf16):
 *   qkv   [B, T, 3C] bf16, q | k | v side by side, head h at channels
 *         h*HS .. h*HS + HS - 1 of each (C = NH * HS);
 *   out   [B, T, C] bf16;
 *   stats [B, NH, T] fp32: the natural log-sum-exp of each query row's
 *         scaled scores, max_j(s_ij) + log(sum_j exp(s_ij - max)),
 *         s = q.k / sqrt(HS) -- the same quantity, and the same layout, as
 *         the flash forward's `att` (bt_cuda_attention_fwd), so the two
 *         saved states are interchangeable;
 *   dout  [B, T, C] bf16, dqkv [B, T, 3C] bf16.
 *
 * Invariants:
 *   1. One operation graph per (device, B, T, NH, HS, direction), built
 *      on first use (cuDNN's plan build takes ~100 ms) and kept until
 *      bt_cudnn_attention_free(); a training loop with fixed shapes
 *      builds two graphs and then only executes.
 *   2. The backward is cuDNN's deterministic algorithm (no atomics in dQ;
 *      set_deterministic_algorithm), so it keeps cuda_common.h invariant 2.
 *   3. The backward takes the forward's output `out` (D = rowsum(dO * O)
 *      is computed from it, never recomputed from Q, K, V).
 *   4. One workspace per device, grown (with a device sync, first step
 *      only) to the largest graph's need and reused (cuda_common.h
 *      invariant 3).
 *   5. Every call is queued on the caller's stream; nothing synchronises
 *      the host except a graph build or workspace growth.
 *   6. Every cuDNN / frontend / CUDA failure returns BT_ERR after
 *      bt_err_set() with the failing step, the shape and cuDNN's message;
 *      nothing here aborts or exits.
 *   7. Not thread safe: one thread drives the backend (as the rest of the
 *      CUDA backend).
 *
 * Supported: sm_80 and newer (cuDNN's fused flash SDPA), cuDNN >= 9,
 * HS a multiple of 8 and <= 128, B * NH * T within int range.
 *
 * Wiring (kernels/cuda/cuda_attention.cu): when the backend's activation
 * dtype is bf16 and bt_cudnn_attention_available(hs) said yes (asked once
 * per device and head size),
 *   bt_cuda_attention_fwd(be, out, att, qkv, B, T, C, NH)
 *     -> bt_cudnn_attention_fwd(out, att, qkv, B, T, C, NH, cu->stream);
 *        `att` stays B*NH*T fp32 floats (attention_att_size unchanged);
 *   bt_cuda_attention_bwd(be, dqkv, scratch, dout, qkv, out, att, ...)
 *     -> bt_cudnn_attention_bwd(dqkv, dout, qkv, out, att, ..., stream);
 *        ops.def's contract WRITES dqkv, as cuDNN does, and passes the
 *        forward output `out`.
 * A BT_ERR from either call is fatal inside an op (cuda_common.h
 * invariant 4): the op passes bt_err_msg() to bt_cuda_fatal(). Available =
 * 0 (no cuDNN >= 9, sm < 80, odd HS): the flash kernels in bf16 storage.
 * The last CUDA backend's destroy calls bt_cudnn_attention_free().
 */
#ifndef BATON_CUDNN_ATTENTION_H
#define BATON_CUDNN_ATTENTION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if the cuDNN path can run attention with head size HS on the current
 * CUDA device: cuDNN >= 9 is loaded, the device is sm_80 or newer, and
 * HS % 8 == 0 and HS <= 128. 0 otherwise, with the reason in
 * bt_err_msg(). Cheap; creates nothing. */
int bt_cudnn_attention_available(int HS);

/* Forward: out = softmax(causal(q k^T / sqrt(HS))) v per head; stats
 * receives the row log-sum-exp (NULL: inference, no stats, a separate
 * graph). Device pointers; qkv and out are bf16 (void *); queued on
 * `stream` (a cudaStream_t). Returns BT_OK or BT_ERR (bt_err_msg). */
int bt_cudnn_attention_fwd(void *out, float *stats, const void *qkv, int B,
                           int T, int C, int NH, void *stream);

/* Backward: dqkv = d(qkv) (written, not accumulated) from dout, the
 * forward's qkv, out and stats. Deterministic. Device pointers; bf16
 * except stats. Returns BT_OK or BT_ERR (bt_err_msg). */
int bt_cudnn_attention_bwd(void *dqkv, const void *dout, const void *qkv,
                           const void *out, const float *stats, int B, int T,
                           int C, int NH, void *stream);

/* Graphs built so far (forward + backward, all devices): lets tests see
 * that a second call of one shape reuses the cached graph. */
int bt_cudnn_attention_graph_count(void);

/* Frees every cached graph, the workspaces and the cuDNN handles. Safe to
 * call when nothing was created. */
void bt_cudnn_attention_free(void);

#ifdef __cplusplus
}
#endif

#endif /* BATON_CUDNN_ATTENTION_H */
