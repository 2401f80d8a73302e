/*
 * emu.h: a CPU emulation of the CUDA execution model, just large enough to
 * run the CUDA backend's own kernels (tests/gpu/emu/test_gpu_emu.cpp).
 *
 * Why: the development machines have no GPU. Running the real kernel
 * source (extracted by extract.py, compiled by the host C++ compiler) on
 * the CPU checks its indexing, masking, tiling and warp/block
 * synchronisation against the CPU reference backend before any GPU sees
 * it. It does not check cuBLASLt, the GPU memory model, timing, or
 * device-specific float behaviour (FMA contraction, expf ulps): that is
 * test_gpu_ops's job on a GPU.
 *
 * Model:
 *   - one host thread per CUDA thread of a block; blocks of a grid run one
 *     after another, reusing those threads;
 *   - __syncthreads is a std::barrier over the block; a thread that returns
 *     early drops out of it (the Volta+ rule that exited threads do not
 *     block a barrier);
 *   - lanes are linear thread index % 32; __shfl_sync / __shfl_xor_sync go
 *     through a per-warp exchange buffer between two warp barriers, so a
 *     shuffle that not all 32 lanes reach deadlocks here (the test's
 *     timeout catches it) as it would be undefined on the GPU;
 *   - dynamic shared memory is one buffer per launch, filled with NaN
 *     before every block, so reading an element no thread wrote poisons the
 *     result; __shared__ arrays become function-local statics.
 */
#pragma once
#include <algorithm>
#include <array>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
using std::max;
using std::min;

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline float *g_dyn_smem;

struct BlockCtx {
  std::unique_ptr<std::barrier<>> bar;
  std::vector<std::unique_ptr<std::barrier<>>> warpBar;
  std::vector<std::array<double, 32>> xbuf;
};
inline BlockCtx *g_blk;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__

inline int emu_tid() {
  return threadIdx.x + threadIdx.y * blockDim.x +
         threadIdx.z * blockDim.x * blockDim.y;
}
inline void __syncthreads() { g_blk->bar->arrive_and_wait(); }
template <class T> T emu_shfl(T v, int src) {
  int tid = emu_tid(), w = tid / 32, lane = tid % 32;
  g_blk->warpBar[w]->arrive_and_wait();
  g_blk->xbuf[w][lane] = (double)v;
  g_blk->warpBar[w]->arrive_and_wait();
  return (T)g_blk->xbuf[w][src & 31];
}
template <class T> T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src); }
template <class T> T __shfl_xor_sync(unsigned, T v, int o) {
  return emu_shfl(v, (emu_tid() % 32) ^ o);
}

template <class... P, class... A>
void launch(void (*kern)(P...), dim3 grid, dim3 block, size_t smem, A... args) {
  gridDim = grid;
  blockDim = block;
  const int nT = block.x * block.y * block.z;
  const int nW = (nT + 31) / 32;
  std::vector<float> smemBuf(smem / sizeof(float) + 1);
  BlockCtx ctx;
  g_dyn_smem = smemBuf.data();
  g_blk = &ctx;
  // One host thread per CUDA thread of a block, reused for every block:
  // `outer` (never dropped) separates blocks; the per-block barriers are
  // rebuilt by thread 0 between two outer waits, so threads that returned
  // early from one block (arrive_and_drop) take part in the next again.
  std::barrier<> outer(nT);
  const unsigned nBlock = grid.x * grid.y * grid.z;
  auto body = [&](int t) {
    threadIdx = dim3(t % block.x, (t / block.x) % block.y,
                     t / (block.x * block.y));
    for (unsigned bi = 0; bi < nBlock; bi++) {
      if (t == 0) {
        ctx.bar = std::make_unique<std::barrier<>>(nT);
        ctx.warpBar.clear();
        for (int w = 0; w < nW; w++)
          ctx.warpBar.push_back(
              std::make_unique<std::barrier<>>(std::min(32, nT - 32 * w)));
        ctx.xbuf.assign(nW, {});
        for (auto &f : smemBuf) f = NAN; // unwritten shared memory is NaN
      }
      outer.arrive_and_wait();
      blockIdx = dim3(bi % grid.x, (bi / grid.x) % grid.y, bi / (grid.x * grid.y));
      kern(args...);
      ctx.bar->arrive_and_drop();
      ctx.warpBar[t / 32]->arrive_and_drop();
      outer.arrive_and_wait();
    }
  };
  std::vector<std::thread> th;
  for (int t = 0; t < nT; t++) th.emplace_back(body, t);
  for (auto &x : th) x.join();
}
