/*
 * cudnn_attention.cpp: cuDNN fused SDPA (flash attention on tensor cores)
 * for bf16 activations, forward and deterministic backward, behind the C
 * interface of cudnn_attention.h (which states the layouts, the
 * invariants and the hook into the backend).
 *
 * C++17 because cudnn-frontend is header-only C++; this is the only file
 * that includes it, so its ~2.5 MB of templates compile once. Compiled by
 * the host C++ compiler (no device code here) and only when the CUDA
 * backend is (CMakeLists.txt globs kernels/cuda/ *.cpp under BATON_HAVE_CUDA).
 *
 * Why the frontend and not the cuDNN backend API directly: the SDPA
 * operation graph (two matmuls, scale, causal mask, softmax with stats,
 * and the backward's seven nodes) takes ~60 lines of frontend and
 * ~1000 lines of backend descriptors; llm.c made the same choice.
 *
 * State (process-wide, one thread, invariant 7 of the header):
 *   g_aDev[device]  cuDNN handle and workspace of each device used;
 *   g_cache         built graphs keyed by (device, B, T, NH, HS, kind).
 * A graph, once in the cache, is never rebuilt or removed until
 * bt_cudnn_attention_free().
 */
#include "kernels/cuda/cudnn_attention.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include <cudnn_frontend.h>

extern "C" {
#include "base/util.h"
}

namespace fe = cudnn_frontend;

namespace {

/* Tensor ids of the graphs' variant packs. */
enum AttnUid : int64_t {
  UID_Q = 1, UID_K, UID_V, UID_SCALE, UID_O, UID_STATS, UID_DO, UID_DQ,
  UID_DK, UID_DV
};

/* Graph kinds: the inference forward has no stats output, so it is a
 * different graph from the training forward. */
enum AttnKind { KIND_FWD_TRAIN = 0, KIND_FWD_INFER = 1, KIND_BWD = 2 };

struct AttnKey {
  int device, B, T, NH, HS, kind;
  bool operator==(const AttnKey &o) const {
    return device == o.device && B == o.B && T == o.T && NH == o.NH &&
           HS == o.HS && kind == o.kind;
  }
};
struct AttnKeyHash {
  size_t operator()(const AttnKey &k) const {
    /* FNV-1a over the six ints: shapes are few, any spread will do. */
    const int a[6] = {k.device, k.B, k.T, k.NH, k.HS, k.kind};
    uint64_t h = 1469598103934665603ull;
    for (int v : a) {
      h ^= (uint32_t)v;
      h *= 1099511628211ull;
    }
    return (size_t)h;
  }
};

#define BT_CUDNN_MAX_DEV 64
struct DevState {
  cudnnHandle_t handle = nullptr;
  void *pWorkspace = nullptr;
  size_t nWorkspace = 0;
};
DevState g_aDev[BT_CUDNN_MAX_DEV];
std::unordered_map<AttnKey, std::shared_ptr<fe::graph::Graph>, AttnKeyHash>
    g_cache;
int g_nBuilt = 0;

/* Turns a frontend error into bt_err_set; returns BT_ERR or BT_OK. */
int fe_check(const fe::error_t &e, const char *zStep, const AttnKey &k) {
  if (e.is_good()) return BT_OK;
  return bt_err_set("cudnn_attention: %s failed for B=%d T=%d NH=%d HS=%d "
                    "(%s) on device %d: %s",
                    zStep, k.B, k.T, k.NH, k.HS,
                    k.kind == KIND_BWD ? "backward" : "forward", k.device,
                    e.err_msg.c_str());
}

int cudnn_check(cudnnStatus_t s, const char *zCall) {
  if (s == CUDNN_STATUS_SUCCESS) return BT_OK;
  return bt_err_set("cudnn_attention: %s: %s", zCall, cudnnGetErrorString(s));
}

int cuda_check(cudaError_t e, const char *zCall) {
  if (e == cudaSuccess) return BT_OK;
  return bt_err_set("cudnn_attention: %s: %s", zCall, cudaGetErrorString(e));
}

/* The device's state, creating its handle on first use. */
DevState *dev_state(int *pDevice) {
  int d = 0;
  if (cuda_check(cudaGetDevice(&d), "cudaGetDevice")) return nullptr;
  if (d < 0 || d >= BT_CUDNN_MAX_DEV) {
    bt_err_set("cudnn_attention: device %d beyond the %d supported", d,
               BT_CUDNN_MAX_DEV);
    return nullptr;
  }
  DevState *s = &g_aDev[d];
  if (!s->handle && cudnn_check(cudnnCreate(&s->handle), "cudnnCreate"))
    return nullptr;
  *pDevice = d;
  return s;
}

/* [B, NH, T, HS] view of one third of the packed qkv [B, T, 3, NH, HS] (or
 * of out / dout [B, T, NH, HS] when nPack = 1): element (b, h, t, d) at
 * b*T*nPack*C + t*nPack*C + h*HS + d. */
std::vector<int64_t> bhtd_stride(const AttnKey &k, int nPack) {
  const int64_t C = (int64_t)k.NH * k.HS;
  return {(int64_t)k.T * nPack * C, k.HS, nPack * C, 1};
}

std::shared_ptr<fe::graph::Tensor_attributes>
graph_tensor(fe::graph::Graph &g, const char *zName, int64_t uid,
             const AttnKey &k, int nPack) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(zName)
                      .set_uid(uid)
                      .set_dim({k.B, k.NH, k.T, k.HS})
                      .set_stride(bhtd_stride(k, nPack)));
}

std::shared_ptr<fe::graph::Tensor_attributes>
graph_scale(fe::graph::Graph &g) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name("attn_scale")
                      .set_uid(UID_SCALE)
                      .set_dim({1, 1, 1, 1})
                      .set_stride({1, 1, 1, 1})
                      .set_is_pass_by_value(true)
                      .set_data_type(fe::DataType_t::FLOAT));
}

std::vector<int64_t> stats_dim(const AttnKey &k) {
  return {k.B, k.NH, k.T, 1};
}
std::vector<int64_t> stats_stride(const AttnKey &k) {
  return {(int64_t)k.NH * k.T, k.T, 1, 1};
}

/* The forward graph: Q, K, V strided views of qkv, O [B, T, C], stats
 * [B, NH, T] fp32 unless inference. */
void define_fwd(fe::graph::Graph &g, const AttnKey &k) {
  auto Q = graph_tensor(g, "Q", UID_Q, k, 3);
  auto K = graph_tensor(g, "K", UID_K, k, 3);
  auto V = graph_tensor(g, "V", UID_V, k, 3);
  auto opt = fe::graph::SDPA_attributes()
                 .set_name("bt_sdpa_fwd")
                 .set_generate_stats(k.kind == KIND_FWD_TRAIN)
                 .set_causal_mask(true)
                 .set_attn_scale(graph_scale(g));
  auto [O, stats] = g.sdpa(Q, K, V, opt);
  O->set_output(true)
      .set_dim({k.B, k.NH, k.T, k.HS})
      .set_stride(bhtd_stride(k, 1))
      .set_uid(UID_O);
  if (k.kind == KIND_FWD_TRAIN)
    stats->set_output(true)
        .set_data_type(fe::DataType_t::FLOAT)
        .set_dim(stats_dim(k))
        .set_stride(stats_stride(k))
        .set_uid(UID_STATS);
}

/* The backward graph: dQ, dK, dV written into the packed dqkv; O is the
 * forward's output (header invariant 3); deterministic (invariant 2). */
void define_bwd(fe::graph::Graph &g, const AttnKey &k) {
  auto Q = graph_tensor(g, "Q", UID_Q, k, 3);
  auto K = graph_tensor(g, "K", UID_K, k, 3);
  auto V = graph_tensor(g, "V", UID_V, k, 3);
  auto O = graph_tensor(g, "O", UID_O, k, 1);
  auto dO = graph_tensor(g, "dO", UID_DO, k, 1);
  auto stats = g.tensor(fe::graph::Tensor_attributes()
                            .set_name("stats")
                            .set_uid(UID_STATS)
                            .set_dim(stats_dim(k))
                            .set_stride(stats_stride(k))
                            .set_data_type(fe::DataType_t::FLOAT));
  auto opt = fe::graph::SDPA_backward_attributes()
                 .set_name("bt_sdpa_bwd")
                 .set_causal_mask(true)
                 .set_deterministic_algorithm(true)
                 .set_attn_scale(graph_scale(g));
  auto [dQ, dK, dV] = g.sdpa_backward(Q, K, V, O, dO, stats, opt);
  const int64_t aUid[3] = {UID_DQ, UID_DK, UID_DV};
  auto aOut = {dQ, dK, dV};
  int i = 0;
  for (auto &t : aOut)
    t->set_output(true)
        .set_dim({k.B, k.NH, k.T, k.HS})
        .set_stride(bhtd_stride(k, 3))
        .set_uid(aUid[i++]);
}

/* Grows the device's workspace to nByte. The old buffer may still be in
 * use by queued work, hence the device sync (first steps only,
 * invariant 4 of the header). */
int workspace_reserve(DevState *s, size_t nByte) {
  if (nByte <= s->nWorkspace) return BT_OK;
  if (s->pWorkspace) {
    if (cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"))
      return BT_ERR;
    cudaFree(s->pWorkspace);
    s->pWorkspace = nullptr;
    s->nWorkspace = 0;
  }
  if (cudaMalloc(&s->pWorkspace, nByte) != cudaSuccess) {
    s->pWorkspace = nullptr;
    return bt_err_set("cudnn_attention: cudaMalloc of a %zu-byte workspace "
                      "failed",
                      nByte);
  }
  s->nWorkspace = nByte;
  return BT_OK;
}

/* The cached graph of key k, built on first use (invariant 1). */
fe::graph::Graph *graph_get(DevState *s, const AttnKey &k) {
  auto it = g_cache.find(k);
  if (it != g_cache.end()) return it->second.get();
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  if (k.kind == KIND_BWD)
    define_bwd(*g, k);
  else
    define_fwd(*g, k);
  if (fe_check(g->validate(), "validate", k) ||
      fe_check(g->build_operation_graph(s->handle), "build_operation_graph",
               k) ||
      fe_check(g->create_execution_plans({fe::HeurMode_t::A}),
               "create_execution_plans", k) ||
      fe_check(g->check_support(s->handle), "check_support", k) ||
      fe_check(g->build_plans(s->handle), "build_plans", k))
    return nullptr;
  int64_t nWs = 0;
  if (fe_check(g->get_workspace_size(nWs), "get_workspace_size", k) ||
      workspace_reserve(s, (size_t)nWs))
    return nullptr;
  g_cache.emplace(k, g);
  g_nBuilt++;
  return g.get();
}

/* Shape checks shared by forward and backward; fills the key. */
int attn_key(AttnKey *k, int device, int B, int T, int C, int NH, int kind) {
  if (B <= 0 || T <= 0 || NH <= 0 || C <= 0 || C % NH != 0)
    return bt_err_set("cudnn_attention: bad shape B=%d T=%d C=%d NH=%d "
                      "(need positive sizes and C %% NH == 0)",
                      B, T, C, NH);
  const int HS = C / NH;
  if (HS % 8 != 0 || HS > 128)
    return bt_err_set("cudnn_attention: head size %d (C=%d, NH=%d) not "
                      "supported: cuDNN SDPA needs HS %% 8 == 0 and "
                      "HS <= 128",
                      HS, C, NH);
  if ((int64_t)B * T * 3 * C > INT32_MAX)
    return bt_err_set("cudnn_attention: B*T*3C = %lld elements beyond "
                      "int32",
                      (long long)B * T * 3 * C);
  *k = AttnKey{device, B, T, NH, HS, kind};
  return BT_OK;
}

int attn_run(const AttnKey &k, DevState *s,
             std::unordered_map<int64_t, void *> &pack, void *stream) {
  if (cudnn_check(cudnnSetStream(s->handle, (cudaStream_t)stream),
                  "cudnnSetStream"))
    return BT_ERR;
  fe::graph::Graph *g = graph_get(s, k);
  if (!g) return BT_ERR;
  if (fe_check(g->execute(s->handle, pack, s->pWorkspace), "execute", k))
    return BT_ERR;
  return cuda_check(cudaGetLastError(), "launch after execute");
}

} // namespace

extern "C" int bt_cudnn_attention_available(int HS) {
  size_t v = cudnnGetVersion();
  if (v < 90000) {
    bt_err_set("cudnn_attention: cuDNN %zu loaded, need >= 9.0", v);
    return 0;
  }
  int d = 0, major = 0;
  if (cuda_check(cudaGetDevice(&d), "cudaGetDevice") ||
      cuda_check(cudaDeviceGetAttribute(&major,
                                        cudaDevAttrComputeCapabilityMajor, d),
                 "cudaDeviceGetAttribute"))
    return 0;
  if (major < 8) {
    bt_err_set("cudnn_attention: device %d is sm_%d0; fused SDPA needs "
               "sm_80 or newer",
               d, major);
    return 0;
  }
  if (HS % 8 != 0 || HS <= 0 || HS > 128) {
    bt_err_set("cudnn_attention: head size %d not supported (need "
               "HS %% 8 == 0, 8 <= HS <= 128)",
               HS);
    return 0;
  }
  return 1;
}

extern "C" int bt_cudnn_attention_fwd(void *out, float *stats,
                                      const void *qkv, int B, int T, int C,
                                      int NH, void *stream) {
  int device = 0;
  AttnKey k;
  if (attn_key(&k, 0, B, T, C, NH, stats ? KIND_FWD_TRAIN : KIND_FWD_INFER))
    return BT_ERR; /* shape first: its message names the shape */
  DevState *s = dev_state(&device);
  if (!s) return BT_ERR;
  k.device = device;
  /* The frontend wants non-const pointers; nothing writes q, k, v. */
  char *p = (char *)const_cast<void *>(qkv);
  const size_t nRow = (size_t)C * 2; /* bytes of C bf16 values */
  float scale = 1.0f / sqrtf((float)k.HS);
  std::unordered_map<int64_t, void *> pack = {
      {UID_Q, p}, {UID_K, p + nRow}, {UID_V, p + 2 * nRow},
      {UID_O, out}, {UID_SCALE, &scale}};
  if (stats) pack[UID_STATS] = stats;
  return attn_run(k, s, pack, stream);
}

extern "C" int bt_cudnn_attention_bwd(void *dqkv, const void *dout,
                                      const void *qkv, const void *out,
                                      const float *stats, int B, int T,
                                      int C, int NH, void *stream) {
  int device = 0;
  AttnKey k;
  if (attn_key(&k, 0, B, T, C, NH, KIND_BWD)) return BT_ERR;
  DevState *s = dev_state(&device);
  if (!s) return BT_ERR;
  k.device = device;
  if (!stats)
    return bt_err_set("cudnn_attention: backward needs the forward's stats "
                      "(B=%d T=%d C=%d NH=%d)",
                      B, T, C, NH);
  char *p = (char *)const_cast<void *>(qkv), *dp = (char *)dqkv;
  const size_t nRow = (size_t)C * 2;
  float scale = 1.0f / sqrtf((float)k.HS);
  std::unordered_map<int64_t, void *> pack = {
      {UID_Q, p},
      {UID_K, p + nRow},
      {UID_V, p + 2 * nRow},
      {UID_O, const_cast<void *>(out)},
      {UID_DO, const_cast<void *>(dout)},
      {UID_STATS, const_cast<float *>(stats)},
      {UID_DQ, dp},
      {UID_DK, dp + nRow},
      {UID_DV, dp + 2 * nRow},
      {UID_SCALE, &scale}};
  return attn_run(k, s, pack, stream);
}

extern "C" int bt_cudnn_attention_graph_count(void) { return g_nBuilt; }

extern "C" void bt_cudnn_attention_free(void) {
  g_cache.clear();
  g_nBuilt = 0;
  for (DevState &s : g_aDev) {
    if (s.pWorkspace) cudaFree(s.pWorkspace);
    if (s.handle) cudnnDestroy(s.handle);
    s = DevState();
  }
}
