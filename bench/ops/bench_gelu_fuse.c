/*
 * bench_gelu_fuse.c: decides BATON_CUDA_GELU_EPILOGUE (docs/gpu.md "Fused
 * kernels") on a GPU. Times matmul_gelu_fwd at the GPT-2 MLP's first layer
 * (N = B*T rows, C -> 4C, IN_OUT weights, bias) on two CUDA backends, one
 * with cuBLASLt's GELU_AUX_BIAS epilogue (=1) and one with the unfused pair
 * matmul_fwd + our GELU kernel (=0), in fp32 and bf16 storage, and prints
 * the time per call of each and the ratio pair / fused (> 1: the epilogue
 * is faster). If cuBLASLt offers no fused algorithm for a shape, "=1" runs
 * the pair too and the ratio is ~1.
 *
 * GPU only: exits 77 (nothing measured) without a usable CUDA device.
 * Not a test: it checks no numbers (tests/gpu/test_gpu_ops.c does).
 *
 * Build (bench/ is not part of the top-level build; bench/ops/CMakeLists.txt
 * has the target for when it is), after `cmake --build build` with CUDA:
 *   gcc -O2 -fopenmp -D_GNU_SOURCE -I. bench/ops/bench_gelu_fuse.c \
 *     build/libbaton_kernels.a build/libbaton_base.a \
 *     $(pkg-config --libs openblas libxxhash) -L/usr/local/cuda/lib64 \
 *     -lcudart -lcublasLt -lcublas -lcudnn -lstdc++ -lm \
 *     -o build/bench_gelu_fuse
 * Usage: bench_gelu_fuse [B] [T] [C] [nIter]   (default 8 1024 768 50)
 *
 * Timing: one warm-up call per backend (it fills the heuristic cache),
 * then nIter back-to-back calls between two bt_backend_sync, best of 5
 * such runs (the least disturbed one).
 */
#include "base/util.h"
#include "kernels/ops.h"

#include <stdio.h>
#include <stdlib.h>

static float *alloc_rand(bt_backend *be, size_t n, float scale,
                         uint64_t salt) {
  float *h = malloc(n * sizeof(float));
  uint64_t key = bt_rng_key(7, 8, salt, 0);
  for (size_t i = 0; i < n; i++)
    h[i] = (float)(scale * (2.0 * bt_rng_uniform(key, i) - 1.0));
  /* [act] buffers: in bf16 storage to_act writes the working copy */
  float *f = bt_mem_alloc(be, n, "bench fp32");
  float *d = bt_mem_alloc_act(be, n, "bench act");
  if (!f || !d) {
    fprintf(stderr, "bench_gelu_fuse: %s\n", bt_err_msg());
    exit(1);
  }
  bt_mem_from_host(be, f, h, n);
  bt_op_to_act(be, d, f, n);
  bt_mem_free(be, f);
  free(h);
  return d;
}

/* Seconds per call of the fused op (bPair = 0) or of the pair. */
static double time_op(bt_backend *be, int bPair, int N, int C, int nIter) {
  const int OC = 4 * C;
  float *x = alloc_rand(be, (size_t)N * C, 1.0f, 1);
  float *w = alloc_rand(be, (size_t)C * OC, 0.05f, 2);
  float *b = alloc_rand(be, (size_t)OC, 0.1f, 3);
  float *pre = bt_mem_alloc_act(be, (size_t)N * OC, "pre");
  float *out = bt_mem_alloc_act(be, (size_t)N * OC, "out");
  double best = 1e30;
  for (int rep = 0; rep < 6; rep++) {
    bt_backend_sync(be);
    double t0 = bt_time_now();
    for (int i = 0; i < (rep ? nIter : 1); i++) {
      if (bPair) {
        bt_op_matmul_fwd(be, pre, x, w, b, N, C, OC, BT_W_IN_OUT);
        bt_op_gelu_fwd(be, out, pre, (size_t)N * OC);
      } else {
        bt_op_matmul_gelu_fwd(be, out, pre, x, w, b, N, C, OC, BT_W_IN_OUT);
      }
    }
    bt_backend_sync(be);
    double t = (bt_time_now() - t0) / nIter;
    if (rep && t < best) best = t; /* rep 0: warm-up */
  }
  bt_mem_free(be, x), bt_mem_free(be, w), bt_mem_free(be, b);
  bt_mem_free(be, pre), bt_mem_free(be, out);
  return best;
}

static bt_backend *cuda_backend(const char *zEpi, int b16) {
  setenv("BATON_CUDA_GELU_EPILOGUE", zEpi, 1);
  bt_backend *be = bt_backend_create(BT_BACKEND_CUDA, 0, 0);
  unsetenv("BATON_CUDA_GELU_EPILOGUE");
  if (be && b16 && bt_backend_set_act_dtype(be, BT_ACT_BF16) != BT_OK) {
    bt_backend_free(be);
    be = NULL;
  }
  return be;
}

int main(int argc, char **argv) {
  const int B = argc > 1 ? atoi(argv[1]) : 8;
  const int T = argc > 2 ? atoi(argv[2]) : 1024;
  const int C = argc > 3 ? atoi(argv[3]) : 768;
  const int nIter = argc > 4 ? atoi(argv[4]) : 50;
  if (B <= 0 || T <= 0 || C <= 0 || nIter <= 0) {
    fprintf(stderr, "usage: bench_gelu_fuse [B] [T] [C] [nIter] "
                    "(positive integers)\n");
    return 2;
  }
  if (!bt_backend_cuda_compiled()) {
    printf("SKIPPED: the CUDA backend is not compiled in\n");
    return 77;
  }
  const int N = B * T;
  for (int b16 = 0; b16 < 2; b16++) {
    bt_backend *bePair = cuda_backend("0", b16);
    bt_backend *beEpi = cuda_backend("1", b16);
    if (!bePair || !beEpi) {
      printf("SKIPPED: no usable CUDA device (%s)\n", bt_err_msg());
      return 77;
    }
    if (!b16) {
      printf("matmul_gelu_fwd N=%d C=%d OC=%d bias, IN_OUT, best of 5 x %d "
             "calls\n", N, C, 4 * C, nIter);
      printf("%-6s %12s %12s %8s\n", "dtype", "pair ms", "epilogue ms",
             "ratio");
    }
    double tPair = time_op(bePair, 1, N, C, nIter);
    double tEpi = time_op(beEpi, 0, N, C, nIter);
    printf("%-6s %12.4f %12.4f %8.3f\n", b16 ? "bf16" : "fp32", 1e3 * tPair,
           1e3 * tEpi, tPair / tEpi);
    bt_backend_free(bePair);
    bt_backend_free(beEpi);
  }
  return 0;
}
