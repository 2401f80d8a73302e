/*
 * emu.h: a strict CPU emulation of the CUDA execution model, just large
 * enough to run the CUDA backend's own kernels (tests/gpu/emu/
 * test_gpu_emu.cpp) and to make their synchronisation mistakes fail.
 *
 * Why: the development machines have no GPU. Running the real kernel
 * source (extracted by extract.py, compiled by the host C++ compiler) on
 * the CPU checks its indexing, masking, tiling and warp/block
 * synchronisation against the CPU reference backend before any GPU sees
 * it. It does not check cuBLASLt, cuDNN, the GPU memory model, timing, or
 * device-specific float behaviour (FMA contraction, expf ulps): that is
 * test_gpu_ops's job on a GPU.
 *
 * Model (one OS thread; every CUDA thread is a fiber, ucontext):
 *   1. Blocks run in a random order (a permutation drawn per launch from
 *      BT_EMU_SEED, default 1, printed by the test), EMU_RESIDENT of them
 *      resident at once; the fibers of all resident blocks are
 *      interleaved, so two blocks are genuinely "in flight" together.
 *   2. Scheduling points are __syncthreads, every warp shuffle and thread
 *      exit. At each one the scheduler resumes the READY fiber of highest
 *      priority, which runs until its next scheduling point. Priorities
 *      are redrawn for a block at its start and at every barrier release:
 *      a random order of its warps, and of the lanes inside each warp. So
 *      in each barrier interval the warps run one after another, each as
 *      far as it can get, in a fresh random order (a PCT-style schedule):
 *      a missing barrier between a shared-memory write and another warp's
 *      read lets the reader run first (it sees the poison or a stale
 *      value) about every other interval, and a missing trailing barrier
 *      lets one warp run ahead into the next phase and overwrite what a
 *      later warp has yet to read. Uniformly random picking (tried first)
 *      missed the second kind: the writer needs ~10 warp rendezvous before
 *      the reader's one read. Runs repeat bit for bit for one seed.
 *   3. Barriers and shuffles are matched by call site (file:line of the
 *      kernel source: extract.py keeps #line markers). A __syncthreads is
 *      released when every live thread of the block waits at it, all from
 *      ONE site; a shuffle when all 32 lanes of the warp wait at one site.
 *      Anything else fails the launch with the kernel name and the sites:
 *      a barrier reached from two lines, a shuffle by part of a warp (the
 *      other lanes exited, at a barrier, or absent in a partial warp), a
 *      mask other than 0xffffffff. Threads that returned early do not hold
 *      a barrier (the Volta+ rule the kernels rely on in their bounds
 *      checks) but do fail a shuffle.
 *   4. Shared memory is poisoned at every block start: dynamic shared
 *      memory and floating-point __shared__ arrays with NaN, other
 *      __shared__ arrays with 0xA5 bytes. extract.py rewrites each
 *      __shared__ declaration into a per-block buffer (emu_static_smem), so
 *      resident blocks do not share it.
 *   5. Launch limits of sm_80/sm_90 fail the launch: threads per block
 *      1..1024 and above the kernel's __launch_bounds__, block dims
 *      (1024, 1024, 64), grid dims (2^31-1, 65535, 65535), static shared
 *      memory 48 KiB, dynamic + static 48 KiB unless the kernel opted in
 *      (emu_func_set_max_dyn_smem, as cudaFuncSetAttribute with
 *      cudaFuncAttributeMaxDynamicSharedMemorySize), and the opt-in itself
 *      at most sm_80's 163 KiB (the kernels must run on both).
 * A failed launch prints "EMU FAIL <kernel> (<test file>:<line>): <why>",
 * counts in emu_nFail and leaves the rest of the grid unrun (its outputs
 * stay NaN, so the test's comparison fails too).
 */
#pragma once
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <queue>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif
using std::max;
using std::min;

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
/* Set by the scheduler before it resumes a fiber (one OS thread). */
inline dim3 threadIdx, blockIdx, blockDim, gridDim;
inline float *g_dyn_smem;

/* CUDA's 16-byte vector type, for kernels that move 16-byte packs
 * (cuda_fused.cu); the same size and alignment as on the device. */
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__

/* bf16 as the GPU stores it (the conversion kernel of cuda_gemm.cu):
 * round to nearest even, NaN kept quiet. */
struct __nv_bfloat16 {
  uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(uint16_t)(u >> 16)};
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t u = (uint32_t)h.bits << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

#define EMU_RESIDENT 2                      /* blocks in flight at once */
#define EMU_STACK ((size_t)64 << 10)        /* bytes per fiber stack */
#define EMU_SMEM_DEFAULT (48u << 10)        /* without opt-in */
#define EMU_SMEM_OPTIN_MAX (163u << 10)     /* sm_80's per-block maximum */

enum EmuState { EMU_READY, EMU_WAIT_BAR, EMU_WAIT_SHFL, EMU_EXITED };

struct EmuSite {
  const char *zFile = nullptr;
  int line = 0;
  bool operator==(const EmuSite &o) const {
    return line == o.line && (zFile == o.zFile || !strcmp(zFile, o.zFile));
  }
};

struct EmuSlot;
struct EmuFiber {
  ucontext_t ctx;
  void *pStack = nullptr;
  void *pFake = nullptr; /* ASan's fake stack while switched out */
  EmuSlot *slot = nullptr;
  int tid = 0;
  EmuState state = EMU_EXITED;
  EmuSite site;
  double shflVal = 0; /* value offered at a shuffle, then the result */
  int shflSrc = 0;
  uint64_t prio = 0;  /* scheduling priority (model point 2) */
};
/* READY fibers, highest priority first (model point 2). */
struct EmuPrioLess {
  bool operator()(const EmuFiber *a, const EmuFiber *b) const {
    return a->prio < b->prio;
  }
};

/* One resident block. */
struct EmuSlot {
  bool bActive = false;
  dim3 idx;
  std::vector<EmuFiber> aFiber;
  std::vector<float> dynSmem;
  std::map<int, std::unique_ptr<max_align_t[]>> statics;
  size_t nStaticByte = 0;
  int nLive = 0, nBar = 0;
  std::vector<int> warpLive, warpShfl, warpBar;
};

struct EmuLaunch {
  const char *zKern = nullptr, *zFile = nullptr;
  int line = 0;
  size_t nDynByte = 0, nSmemLimit = 0;
  void (*fn)(void *) = nullptr; /* runs the kernel with its arguments */
  void *pArgs = nullptr;
  std::string zErr;
};

inline EmuLaunch *g_emu;
inline EmuFiber *g_cur;
inline ucontext_t g_schedCtx;
inline std::priority_queue<EmuFiber *, std::vector<EmuFiber *>, EmuPrioLess>
    g_ready;
inline std::mt19937_64 g_rng(1);
inline int emu_nFail = 0;
inline std::string emu_lastErr;
inline std::map<const void *, size_t> g_optIn;      /* kernel -> bytes */
inline std::map<const void *, int> g_launchBounds;  /* kernel -> threads */
#ifdef EMU_ASAN
inline const void *g_schedBottom;
inline size_t g_schedSize;
#endif

/* First error of the launch wins; the scheduler stops at it. */
inline void emu_fail(const char *zFmt, ...) __attribute__((format(printf, 1, 2)));
inline void emu_fail(const char *zFmt, ...) {
  if (!g_emu->zErr.empty()) return;
  char z[1024];
  va_list ap;
  va_start(ap, zFmt);
  vsnprintf(z, sizeof z, zFmt, ap);
  va_end(ap);
  g_emu->zErr = z;
}

inline void emu_seed(uint64_t s) { g_rng.seed(s); }

/* cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, n) */
template <class F> bool emu_func_set_max_dyn_smem(F *kern, size_t nByte) {
  if (nByte > EMU_SMEM_OPTIN_MAX) {
    fprintf(stderr, "EMU FAIL opt-in of %zu bytes of shared memory > %u\n",
            nByte, EMU_SMEM_OPTIN_MAX);
    emu_nFail++;
    return false;
  }
  g_optIn[(const void *)kern] = nByte;
  return true;
}

/* extract.py registers each kernel's __launch_bounds__ through this. */
struct EmuBoundsReg {
  template <class F> EmuBoundsReg(F *kern, int n) {
    g_launchBounds[(const void *)kern] = n;
  }
};

/* ---- fibers ---------------------------------------------------------- */

inline void emu_switch_to_sched(bool bExit) {
  EmuFiber *f = g_cur;
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(bExit ? nullptr : &f->pFake, g_schedBottom,
                                 g_schedSize);
#else
  (void)bExit;
#endif
  swapcontext(&f->ctx, &g_schedCtx);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(f->pFake, &g_schedBottom, &g_schedSize);
#endif
}

inline void emu_fiber_entry() {
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_schedBottom, &g_schedSize);
#endif
  g_emu->fn(g_emu->pArgs);
  g_cur->state = EMU_EXITED;
  emu_switch_to_sched(true);
}

inline void emu_resume(EmuFiber *f) {
  g_cur = f;
  EmuSlot *s = f->slot;
  const int t = f->tid;
  threadIdx = dim3(t % blockDim.x, (t / blockDim.x) % blockDim.y,
                   t / (blockDim.x * blockDim.y));
  blockIdx = s->idx;
  g_dyn_smem = s->dynSmem.data();
#ifdef EMU_ASAN
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f->pStack, EMU_STACK);
#endif
  swapcontext(&g_schedCtx, &f->ctx);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

/* Stacks are kept for the process (mapped lazily, NORESERVE), each above
 * a PROT_NONE guard page, so an overflow faults instead of corrupting the
 * neighbouring fiber. 64 KiB: the kernels' frames are small, and ASan's
 * swapcontext interceptor clears the shadow of the whole target stack at
 * every switch (256 KiB stacks doubled gpu_emu's time under ASan). */
inline void *emu_stack(size_t i) {
  static std::vector<void *> aStack;
  while (aStack.size() <= i) {
    const size_t nGuard = 4096;
    char *p = (char *)mmap(nullptr, EMU_STACK + nGuard, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED || mprotect(p, nGuard, PROT_NONE) != 0) {
      perror("emu: mmap of a fiber stack");
      abort();
    }
    aStack.push_back(p + nGuard);
  }
  return aStack[i];
}

/* ---- scheduling points -------------------------------------------------- */

inline std::string emu_block_name(const EmuSlot *s) {
  char z[64];
  snprintf(z, sizeof z, "block (%u,%u,%u)", s->idx.x, s->idx.y, s->idx.z);
  return z;
}

/* "file:line (threads a b c d ...)" for the fibers of [i0, i1) in state
 * st, one group per site. */
inline std::string emu_sites(EmuSlot *s, int i0, int i1, EmuState st) {
  std::string z;
  std::vector<bool> done(i1 - i0, false);
  for (int i = i0; i < i1; i++) {
    if (done[i - i0] || s->aFiber[i].state != st) continue;
    EmuSite site = s->aFiber[i].site;
    char zs[256];
    snprintf(zs, sizeof zs, "%s%s:%d (threads", z.empty() ? "" : "; ",
             site.zFile, site.line);
    z.append(zs);
    int nShown = 0;
    for (int j = i; j < i1; j++)
      if (!done[j - i0] && s->aFiber[j].state == st && s->aFiber[j].site == site) {
        done[j - i0] = true;
        snprintf(zs, sizeof zs, " %d", j);
        if (nShown++ < 4) z.append(zs);
      }
    z.append(nShown > 4 ? " ...)" : ")");
  }
  return z;
}

inline void emu_release(EmuFiber *f) {
  f->state = EMU_READY;
  g_ready.push(f);
}

/* New priorities for every thread of a block: a random order of its warps
 * (high 32 bits) and of the lanes inside each warp (low 32 bits). Drawn at
 * block start and at every barrier release, so each barrier interval runs
 * its warps one after another in a fresh random order. */
inline void emu_draw_prio(EmuSlot *s) {
  std::vector<uint64_t> aWarp(s->warpLive.size());
  for (auto &w : aWarp) w = g_rng() >> 32;
  for (auto &f : s->aFiber)
    f.prio = (aWarp[f.tid / 32] << 32) | (g_rng() >> 32);
}

/* Warp w of slot s: every live lane waits (none READY); resolve its
 * shuffle or fail. */
inline void emu_try_warp(EmuSlot *s, int w) {
  const int nT = (int)s->aFiber.size(), i0 = 32 * w, i1 = min(nT, i0 + 32);
  if (s->warpShfl[w] == 0 || s->warpShfl[w] + s->warpBar[w] < s->warpLive[w])
    return;
  if (s->warpShfl[w] < 32) {
    std::string zWhy = "the others exited or do not exist";
    if (s->warpBar[w])
      zWhy = "others wait at __syncthreads " +
             emu_sites(s, i0, i1, EMU_WAIT_BAR);
    emu_fail("%s warp %d: shuffle at %s reached by %d of 32 lanes (%s)",
             emu_block_name(s).c_str(), w,
             emu_sites(s, i0, i1, EMU_WAIT_SHFL).c_str(), s->warpShfl[w],
             zWhy.c_str());
    return;
  }
  for (int i = i0 + 1; i < i1; i++)
    if (!(s->aFiber[i].site == s->aFiber[i0].site)) {
      emu_fail("%s warp %d: lanes shuffle at different sites: %s",
               emu_block_name(s).c_str(), w,
               emu_sites(s, i0, i1, EMU_WAIT_SHFL).c_str());
      return;
    }
  double v[32];
  for (int i = 0; i < 32; i++) v[i] = s->aFiber[i0 + i].shflVal;
  for (int i = 0; i < 32; i++) {
    EmuFiber *f = &s->aFiber[i0 + i];
    f->shflVal = v[f->shflSrc & 31];
    emu_release(f);
  }
  s->warpShfl[w] = 0;
}

/* Every live thread of the block waits at __syncthreads: release them if
 * they all came from one site. */
inline void emu_try_barrier(EmuSlot *s) {
  if (s->nBar == 0 || s->nBar < s->nLive) return;
  const int nT = (int)s->aFiber.size();
  const EmuSite *first = nullptr;
  for (auto &f : s->aFiber)
    if (f.state == EMU_WAIT_BAR) {
      if (!first) first = &f.site;
      else if (!(f.site == *first)) {
        emu_fail("%s: __syncthreads reached from different lines: %s",
                 emu_block_name(s).c_str(),
                 emu_sites(s, 0, nT, EMU_WAIT_BAR).c_str());
        return;
      }
    }
  emu_draw_prio(s);
  for (auto &f : s->aFiber)
    if (f.state == EMU_WAIT_BAR) emu_release(&f);
  std::fill(s->warpBar.begin(), s->warpBar.end(), 0);
  s->nBar = 0;
}

inline void emu_syncthreads(const char *zFile, int line) {
  EmuFiber *f = g_cur;
  f->site = {zFile, line};
  f->state = EMU_WAIT_BAR;
  f->slot->nBar++;
  f->slot->warpBar[f->tid / 32]++;
  emu_switch_to_sched(false);
}

template <class T>
T emu_shfl(unsigned mask, T v, int src, const char *zFile, int line) {
  EmuFiber *f = g_cur;
  if (mask != 0xffffffffu)
    emu_fail("shuffle at %s:%d with mask 0x%08x: the emulator (and the "
             "kernels) use full-warp shuffles only",
             zFile, line, mask);
  f->site = {zFile, line};
  f->shflVal = (double)v;
  f->shflSrc = src;
  f->state = EMU_WAIT_SHFL;
  f->slot->warpShfl[f->tid / 32]++;
  emu_switch_to_sched(false);
  return (T)f->shflVal;
}
#define __syncthreads() emu_syncthreads(__FILE__, __LINE__)
#define __shfl_sync(m, v, s) emu_shfl((m), (v), (s), __FILE__, __LINE__)
#define __shfl_xor_sync(m, v, o)                                               \
  emu_shfl((m), (v), (int)(threadIdx.x + threadIdx.y * blockDim.x +          \
                           threadIdx.z * blockDim.x * blockDim.y) % 32 ^ (o),  \
           __FILE__, __LINE__)

/* A __shared__ array (extract.py rewrites `__shared__ T x[N]...;` into a
 * reference to this): one poisoned buffer per resident block and
 * declaration id. */
template <class A> A &emu_static_smem(int id) {
  using E = std::remove_all_extents_t<A>;
  EmuSlot *s = g_cur->slot;
  auto &p = s->statics[id];
  if (!p) {
    const size_t n = (sizeof(A) + sizeof(max_align_t) - 1) /
                     sizeof(max_align_t);
    p.reset(new max_align_t[n]);
    if constexpr (std::is_floating_point_v<E>) {
      E *e = reinterpret_cast<E *>(p.get());
      for (size_t i = 0; i < sizeof(A) / sizeof(E); i++) e[i] = NAN;
    } else {
      memset(p.get(), 0xA5, sizeof(A));
    }
    s->nStaticByte += sizeof(A);
    if (s->nStaticByte > EMU_SMEM_DEFAULT ||
        s->nStaticByte + g_emu->nDynByte > g_emu->nSmemLimit)
      emu_fail("shared memory: %zu bytes static + %zu dynamic > the limit "
               "of %zu (48 KiB static; dynamic above 48 KiB needs the "
               "opt-in)",
               s->nStaticByte, g_emu->nDynByte, g_emu->nSmemLimit);
  }
  return *reinterpret_cast<A *>(p.get());
}

/* ---- the launch --------------------------------------------------------- */

/* A fresh context at the kernel's entry on f's stack. Out of line:
 * getcontext returns twice, which would put the caller's locals at risk
 * (-Wclobbered). */
__attribute__((noinline)) inline void emu_fiber_make(EmuFiber *f) {
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->pStack;
  f->ctx.uc_stack.ss_size = EMU_STACK;
  f->ctx.uc_link = nullptr;
  makecontext(&f->ctx, emu_fiber_entry, 0);
}

/* Starts block number bi of the grid in slot s: fresh fibers, poisoned
 * shared memory (model points 1, 4). */
inline void emu_slot_start(EmuSlot *s, unsigned bi, size_t iStack0) {
  s->bActive = true;
  s->idx = dim3(bi % gridDim.x, (bi / gridDim.x) % gridDim.y,
                bi / (gridDim.x * gridDim.y));
  std::fill(s->dynSmem.begin(), s->dynSmem.end(), NAN);
  s->statics.clear();
  s->nStaticByte = 0;
  const int nT = (int)s->aFiber.size();
  s->nLive = nT;
  s->nBar = 0;
  for (int w = 0; w < (int)s->warpLive.size(); w++) {
    s->warpLive[w] = min(32, nT - 32 * w);
    s->warpShfl[w] = s->warpBar[w] = 0;
  }
  emu_draw_prio(s);
  for (int t = 0; t < nT; t++) {
    EmuFiber *f = &s->aFiber[t];
    f->slot = s;
    f->tid = t;
    f->pStack = emu_stack(iStack0 + t);
    emu_fiber_make(f);
    emu_release(f);
  }
}

/* Launch limits (model point 5); "" when the launch is legal. */
inline std::string emu_check_limits(const void *kern, dim3 g, dim3 b,
                                    size_t smem, size_t *pLimit) {
  char z[256];
  const unsigned long nT = (unsigned long)b.x * b.y * b.z;
  auto lb = g_launchBounds.find(kern);
  auto oi = g_optIn.find(kern);
  *pLimit = oi != g_optIn.end() ? max<size_t>(oi->second, EMU_SMEM_DEFAULT)
                                : EMU_SMEM_DEFAULT;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    snprintf(z, sizeof z, "a zero grid or block dimension");
  else if (b.x > 1024 || b.y > 1024 || b.z > 64 || nT > 1024)
    snprintf(z, sizeof z, "block (%u,%u,%u) beyond the limits (1024, 1024, "
             "64; 1024 threads)", b.x, b.y, b.z);
  else if (lb != g_launchBounds.end() && nT > (unsigned long)lb->second)
    snprintf(z, sizeof z, "%lu threads per block > __launch_bounds__(%d)",
             nT, lb->second);
  else if (g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    snprintf(z, sizeof z, "grid (%u,%u,%u) beyond the limits (2^31-1, "
             "65535, 65535)", g.x, g.y, g.z);
  else if (smem > *pLimit)
    snprintf(z, sizeof z, "%zu bytes of dynamic shared memory > %zu (%s)",
             smem, *pLimit, oi != g_optIn.end() ? "the kernel's opt-in"
             : "48 KiB without cudaFuncAttributeMaxDynamicSharedMemorySize");
  else if ((uint64_t)g.x * g.y * g.z > (1u << 24))
    snprintf(z, sizeof z, "grid (%u,%u,%u): more blocks than the emulator "
             "runs (2^24; legal on a GPU, too slow here)", g.x, g.y, g.z);
  else
    return "";
  return z;
}

/* Runs the grid (model points 1-3). Returns false, with the message in
 * emu_lastErr, if the launch is illegal or a synchronisation fails. */
inline bool emu_run(EmuLaunch &L, const void *kern, dim3 grid, dim3 block,
                    size_t smem) {
  L.zErr = emu_check_limits(kern, grid, block, smem, &L.nSmemLimit);
  L.nDynByte = smem;
  gridDim = grid;
  blockDim = block;
  g_emu = &L;
  const int nT = block.x * block.y * block.z;
  const unsigned nBlock = L.zErr.empty() ? grid.x * grid.y * grid.z : 0;
  std::vector<unsigned> order(nBlock);
  for (unsigned i = 0; i < nBlock; i++) order[i] = i;
  std::shuffle(order.begin(), order.end(), g_rng);
  const int nSlot = (int)min<unsigned>(EMU_RESIDENT, nBlock);
  std::vector<EmuSlot> aSlot(nSlot);
  unsigned iNext = 0;
  for (int k = 0; k < nSlot; k++) {
    EmuSlot *s = &aSlot[k];
    s->aFiber.resize(nT);
    s->dynSmem.assign(smem / sizeof(float) + 1, NAN);
    s->warpLive.resize((nT + 31) / 32);
    s->warpShfl.resize(s->warpLive.size());
    s->warpBar.resize(s->warpLive.size());
    emu_slot_start(s, order[iNext++], (size_t)k * nT);
  }
  while (!g_ready.empty() && L.zErr.empty()) {
    EmuFiber *f = g_ready.top();
    g_ready.pop();
    emu_resume(f);
    EmuSlot *s = f->slot;
    if (f->state == EMU_EXITED) {
      s->nLive--;
      s->warpLive[f->tid / 32]--;
    }
    emu_try_warp(s, f->tid / 32);
    emu_try_barrier(s);
    if (s->nLive == 0 && iNext < nBlock)
      emu_slot_start(s, order[iNext++], (size_t)(s - aSlot.data()) * nT);
  }
  g_ready = decltype(g_ready)();
  if (L.zErr.empty())
    for (auto &s : aSlot)
      if (s.nLive > 0)
        emu_fail("%s: %d threads never finished (deadlock)",
                 emu_block_name(&s).c_str(), s.nLive);
  if (L.zErr.empty()) return true;
  fprintf(stderr, "EMU FAIL %s (%s:%d): %s\n", L.zKern, L.zFile, L.line,
          L.zErr.c_str());
  emu_lastErr = L.zErr;
  emu_nFail++;
  return false;
}

template <class... P, class... A>
bool emu_launch(const char *zKern, const char *zFile, int line,
                void (*kern)(P...), dim3 grid, dim3 block, size_t smem,
                A... args) {
  EmuLaunch L;
  L.zKern = zKern;
  L.zFile = zFile;
  L.line = line;
  /* The kernel and its arguments, as the GPU copies them at launch. */
  struct Call {
    void (*k)(P...);
    std::tuple<A...> a;
  } call{kern, std::tuple<A...>(args...)};
  L.pArgs = &call;
  L.fn = [](void *p) {
    Call *c = (Call *)p;
    std::apply(c->k, c->a);
  };
  return emu_run(L, (const void *)kern, grid, block, smem);
}
#define launch(kern, ...) emu_launch(#kern, __FILE__, __LINE__, kern, __VA_ARGS__)
