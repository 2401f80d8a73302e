/*
 * test_gpu_emu.cpp: the CUDA backend's kernels, run on the CPU in the SIMT
 * emulator of emu.h, against the CPU reference backend. Needs no GPU and no
 * CUDA toolkit, so it runs everywhere (label `unit`).
 *
 * kern.inc is generated at build time by extract.py from the .h and .cu
 * files of kernels/cuda: the kernels tested are the kernels nvcc compiles.
 * Each case repeats the launch geometry of the matching host wrapper in
 * kernels/cuda (grid, block, shared memory, scratch layout), so a change
 * there must be mirrored here; the GPU test (test_gpu_ops) covers the
 * wrappers themselves on hardware.
 *
 * Covered: flash attention forward and both backward kernels, the
 * attention decode kernel (one query against a KV cache), the reference
 * attention kernels, layernorm fwd/bwd (dinp, dw/db partials),
 * the column sum behind every bias gradient, the bias kernels,
 * cross-entropy fwd/bwd (also in place), embedding fwd, dwpe and dwte (with
 * the device plan launched as bt_cuda_embed_bwd launches it), GELU, AdamW and the
 * two-pass sumsq, the step statistics (sumsq_acc, loss_sum_acc,
 * clip_grads of cuda_step.cu), residual fwd/bwd (also with da == db), scale, the
 * in-place add behind bias_bwd's dinp, the bf16 conversion (against
 * hand-rounded values: ties to even, overflow to inf, NaN kept); the
 * masked flash attention (key lengths, causal or not) and the CTC kernels
 * (log-softmax, alpha, beta, gradient); the fused kernels (residual +
 * layernorm with and without 16-byte packs, cross-entropy loss and
 * gradient in place), fp32 and bf16; and the GEMM plans of
 * cuda_gemm_plan.h (every matmul
 * product, both weight layouts) executed by a reference column-major GEMM
 * with cuBLASLt's conventions, and by the fallback GEMM kernel. Not
 * covered: cuBLASLt and cuDNN themselves. Every __global__ kernel of
 * kernels/cuda has a case here (test_gpu_emu --list-covered is checked by
 * the gpu_emu_coverage test).
 *
 * The emulator is strict (emu.h): blocks in random order, two resident at
 * once, threads scheduled at random at every barrier and shuffle, shared
 * memory poisoned, barriers and shuffles matched by call site, launch
 * limits enforced. BT_EMU_SEED=<n> picks the schedule (default 1); any
 * failed launch fails the test.
 *
 * Limits: outputs must match the CPU backend to 1e-5 relative, as in
 * test_gpu_ops (measured here: ~1e-7); exact kernels (gathers, element-wise
 * adds) to 1e-6. Unwritten outputs start as NaN and fail.
 *
 * C++ because the kernel source it compiles is CUDA C++ and the emulator
 * needs threads and barriers (C++20 <barrier>).
 */
#include "tests/gpu/emu/emu.h"
extern "C" {
#include "base/util.h"
#include "kernels/ops.h"
}
#include "kernels/cuda/cuda_gemm_plan.h"
/* In a namespace: a CUDA build's baton_lib holds host stubs with the same
 * names. */
namespace emu_k {
#include "kern.inc"
}
using namespace emu_k;

static bt_backend *cpu;
static int nFail = 0, nPass = 0;
static uint64_t salt = 1;

static std::vector<float> rnd(size_t n, float lo, float hi) {
  uint64_t key = bt_rng_key(99, 1, salt++, 0);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * (float)bt_rng_uniform(key, i);
  return v;
}
static double relerr(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  if (a.size() != b.size()) return INFINITY;
  for (size_t i = 0; i < a.size(); i++) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}
static void check(const char *z, const std::vector<float> &g, const std::vector<float> &c, double tol) {
  double e = relerr(g, c);
  bool ok = e <= tol;
  printf("%-5s %-50s relerr %.2e (tol %.0e)\n", ok ? "ok" : "FAIL", z, e, tol);
  ok ? nPass++ : nFail++;
}
static std::vector<float> nanv(size_t n) { return std::vector<float>(n, NAN); }
static unsigned grid_of(size_t n, unsigned t) {
  size_t g = (n + t - 1) / t;
  if (g < 1) g = 1;
  if (g > (1u << 20)) g = 1u << 20;
  return (unsigned)g;
}

/* keyLen empty: the GPT's causal attention (attention_fwd/bwd, keyLen NULL);
 * else the masked ops (attention_masked_fwd/bwd) with these key lengths. */
static void t_attention(int B, int T, int C, int NH, int causal = 1,
                        std::vector<int32_t> keyLen = {}) {
  char z[128];
  int hs = C / NH;
  size_t nOut = (size_t)B * T * C;
  auto qkv = rnd(3 * nOut, -1.5f, 1.5f);
  auto dout = rnd(nOut, -1, 1);
  auto dq0 = rnd(3 * nOut, -1, 1); /* junk: dqkv is WRITTEN (ops.def) */
  // CPU
  std::vector<float> outC(nOut), attC(bt_op_attention_att_size(cpu, B, T, NH)),
      scrC(bt_op_attention_scratch_size(cpu, B, T, NH)), dqC = dq0;
  const int32_t *kl = keyLen.empty() ? nullptr : keyLen.data();
  if (kl || !causal) {
    bt_op_attention_masked_fwd(cpu, outC.data(), attC.data(), qkv.data(), kl, causal, B, T, C, NH);
    bt_op_attention_masked_bwd(cpu, dqC.data(), scrC.data(), dout.data(), qkv.data(), outC.data(),
                               attC.data(), kl, causal, B, T, C, NH);
  } else {
    bt_op_attention_fwd(cpu, outC.data(), attC.data(), qkv.data(), B, T, C, NH);
    bt_op_attention_bwd(cpu, dqC.data(), scrC.data(), dout.data(), qkv.data(), outC.data(), attC.data(), B, T,
                        C, NH);
  }
  // flash (mirrors bt_cuda_attention_fwd/bwd)
  auto outG = nanv(nOut), lse = nanv((size_t)B * NH * T), D = nanv((size_t)B * NH * T);
  auto dqG = dq0;
  float scale = 1.0f / sqrtf((float)hs);
  dim3 grid((T + FA_BR - 1) / FA_BR, B * NH);
  launch(bt_k_flash_fwd<float>, grid, dim3(32 * FA_WARPS), fa_fwd_smem(hs) * 4, outG.data(), lse.data(),
         (const float *)qkv.data(), kl, causal, T, C, NH, hs, scale);
  /* the backward takes the flash forward's own output (D from it) */
  launch(bt_k_flash_bwd_dq<float>, grid, dim3(32 * FA_WARPS), fa_dq_smem(hs) * 4, dqG.data(), D.data(),
         (const float *)dout.data(), (const float *)outG.data(), (const float *)qkv.data(),
         (const float *)lse.data(), kl, causal, T, C, NH, hs, scale);
  dim3 gk((T + FA_BC - 1) / FA_BC, B * NH);
  launch(bt_k_flash_bwd_dkv<float>, gk, dim3(32 * FA_WARPS), fa_dkv_smem(hs) * 4, dqG.data(),
         (const float *)D.data(), (const float *)dout.data(), (const float *)qkv.data(), (const float *)lse.data(),
         kl, causal, T, C, NH, hs, scale);
  const char *zMask = kl ? (causal ? " causal+keyLen" : " keyLen") : (causal ? "" : " full");
  snprintf(z, sizeof z, "flash fwd B=%d T=%d C=%d NH=%d%s", B, T, C, NH, zMask);
  check(z, outG, outC, 1e-5);
  snprintf(z, sizeof z, "flash bwd B=%d T=%d C=%d NH=%d%s", B, T, C, NH, zMask);
  check(z, dqG, dqC, 1e-5);
  if (kl || !causal) return; /* the reference kernels are causal only */
  // reference kernels
  auto outR = nanv(nOut), lseR = nanv((size_t)B * NH * T);
  auto dqR = dq0;
  std::vector<float> scr(2 * (size_t)B * NH * T * T, NAN);
  dim3 gr(T, B * NH);
  launch(bt_k_ref_fwd, gr, dim3(REF_THREADS), ((size_t)T + 32) * 4, outR.data(), lseR.data(),
         (const float *)qkv.data(), T, C, NH, hs, scale);
  float *P = scr.data(), *dS = scr.data() + (size_t)B * NH * T * T;
  launch(bt_k_ref_bwd_rows, gr, dim3(REF_THREADS), (2 * (size_t)T + 32) * 4, dqR.data(), P, dS,
         (const float *)dout.data(), (const float *)qkv.data(), (const float *)lseR.data(), T, C, NH, hs, scale);
  launch(bt_k_ref_bwd_cols, gr, dim3(REF_THREADS), 0, dqR.data(), (const float *)P, (const float *)dS,
         (const float *)dout.data(), (const float *)qkv.data(), T, C, NH, hs, scale);
  snprintf(z, sizeof z, "ref fwd B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check(z, outR, outC, 1e-5);
  snprintf(z, sizeof z, "ref lse vs flash lse");
  check(z, lseR, lse, 1e-5);
  snprintf(z, sizeof z, "ref bwd B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check(z, dqR, dqC, 1e-5);
}

/* What cublasLtMatmul computes for a plan (column-major, element (r, c) of
 * a stored matrix at r + c * ld), in double. */
static double gemm_rd(const float *p, int b16, size_t i) {
  return b16 ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : p[i];
}
/* Element types as the plan says (bAB16: A, B, bias bf16; bD16: D bf16,
 * stored rounded to nearest even). */
static void ref_gemm(const bt_gemm_call &g) {
  for (int j = 0; j < g.n; j++)
    for (int i = 0; i < g.m; i++) {
      double acc = 0;
      for (int l = 0; l < g.k; l++) {
        double a = gemm_rd(g.A, g.bAB16, g.bTransA ? l + (size_t)i * g.lda : i + (size_t)l * g.lda);
        double b = gemm_rd(g.B, g.bAB16, g.bTransB ? j + (size_t)l * g.ldb : l + (size_t)j * g.ldb);
        acc += a * b;
      }
      const size_t iD = i + (size_t)j * g.ldd;
      const float v = (float)(acc + (g.beta != 0.0f ? (double)g.beta * gemm_rd(g.D, g.bD16, iD) : 0.0) +
                              (g.bias ? gemm_rd(g.bias, g.bAB16, i) : 0.0));
      if (g.bD16) ((__nv_bfloat16 *)g.D)[iD] = __float2bfloat16_rn(v);
      else g.D[iD] = v;
    }
}

static void t_gemm_plans(int N, int C, int OC, bt_wlayout L) {
  char z[128];
  const char *zL = L == BT_W_IN_OUT ? "in_out" : "out_in";
  auto inp = rnd((size_t)N * C, -1, 1), w = rnd((size_t)C * OC, -1, 1);
  auto bias = rnd(OC, -1, 1), dout = rnd((size_t)N * OC, -1, 1);
  auto di0 = rnd((size_t)N * C, -1, 1), dw0 = rnd((size_t)C * OC, -1, 1);
  std::vector<float> oC((size_t)N * OC);
  auto oG = nanv((size_t)N * OC);
  bt_op_matmul_fwd(cpu, oC.data(), inp.data(), w.data(), bias.data(), N, C, OC, L);
  ref_gemm(bt_gemm_plan_fwd(oG.data(), inp.data(), w.data(), bias.data(), N, C, OC, L, BT_ACT_F32));
  snprintf(z, sizeof z, "gemm plan fwd %dx%dx%d %s", N, C, OC, zL); check(z, oG, oC, 1e-5);
  auto diC = di0, dwC = dw0, diG = di0, dwG = dw0;
  bt_op_matmul_bwd(cpu, diC.data(), dwC.data(), NULL, dout.data(), inp.data(), w.data(), N, C, OC, L);
  ref_gemm(bt_gemm_plan_dinp(diG.data(), dout.data(), w.data(), N, C, OC, L, BT_ACT_F32));
  ref_gemm(bt_gemm_plan_dw(dwG.data(), dout.data(), inp.data(), N, C, OC, L, BT_ACT_F32));
  snprintf(z, sizeof z, "gemm plan dinp %dx%dx%d %s", N, C, OC, zL); check(z, diG, diC, 1e-5);
  snprintf(z, sizeof z, "gemm plan dw %dx%dx%d %s", N, C, OC, zL); check(z, dwG, dwC, 1e-5);
  /* The same plans through the fallback GEMM kernel (launch as in
   * cuda_gemm). */
  auto run_fb = [](const bt_gemm_call &g) {
    dim3 grid((g.n + BT_FB_TILE - 1) / BT_FB_TILE, (g.m + BT_FB_TILE - 1) / BT_FB_TILE);
    auto *fb = bt_k_gemm_fallback<float, float>;
    launch(fb, grid, dim3(BT_FB_TILE, BT_FB_TILE), 0, g.D, g.A, g.B, g.bias, g.m, g.n,
           g.k, g.lda, g.ldb, g.ldd, g.bTransA, g.bTransB, g.beta);
  };
  auto oF = nanv((size_t)N * OC);
  auto diF = di0, dwF = dw0;
  run_fb(bt_gemm_plan_fwd(oF.data(), inp.data(), w.data(), bias.data(), N, C, OC, L, BT_ACT_F32));
  run_fb(bt_gemm_plan_dinp(diF.data(), dout.data(), w.data(), N, C, OC, L, BT_ACT_F32));
  run_fb(bt_gemm_plan_dw(dwF.data(), dout.data(), inp.data(), N, C, OC, L, BT_ACT_F32));
  snprintf(z, sizeof z, "fallback gemm fwd %dx%dx%d %s", N, C, OC, zL); check(z, oF, oC, 1e-5);
  snprintf(z, sizeof z, "fallback gemm dinp %dx%dx%d %s", N, C, OC, zL); check(z, diF, diC, 1e-5);
  snprintf(z, sizeof z, "fallback gemm dw %dx%dx%d %s", N, C, OC, zL); check(z, dwF, dwC, 1e-5);
}

static void t_layernorm(int N, int C) {
  char z[128];
  auto x = rnd((size_t)N * C, -1.5f, 2.5f), w = rnd(C, 0.5f, 1.5f), b = rnd(C, -.5f, .5f);
  std::vector<float> oC((size_t)N * C), mC(N), rC(N);
  bt_op_layernorm_fwd(cpu, oC.data(), mC.data(), rC.data(), x.data(), w.data(), b.data(), N, C);
  auto oG = nanv((size_t)N * C), mG = nanv(N), rG = nanv(N);
  launch(bt_k_ln_fwd<float>, dim3((N + LN_WARPS - 1) / LN_WARPS), dim3(32 * LN_WARPS), 0, oG.data(), mG.data(), rG.data(),
         (const float *)x.data(), (const float *)w.data(), (const float *)b.data(), N, C, 0);
  snprintf(z, sizeof z, "layernorm fwd out %dx%d", N, C); check(z, oG, oC, 1e-5);
  snprintf(z, sizeof z, "layernorm fwd mean %dx%d", N, C); check(z, mG, mC, 1e-5);
  snprintf(z, sizeof z, "layernorm fwd rstd %dx%d", N, C); check(z, rG, rC, 1e-5);
  auto dout = rnd((size_t)N * C, -1, 1);
  auto di0 = rnd((size_t)N * C, -1, 1), dw0 = rnd(C, -1, 1), db0 = rnd(C, -1, 1);
  auto diC = di0, dwC = dw0, dbC = db0, diG = di0, dwG = dw0, dbG = db0;
  bt_op_layernorm_bwd(cpu, diC.data(), dwC.data(), dbC.data(), dout.data(), x.data(), w.data(), mC.data(), rC.data(), N, C);
  int nChunk = (N + LN_ROWS - 1) / LN_ROWS;
  std::vector<float> part(2 * (size_t)nChunk * C, NAN);
  launch(bt_k_ln_dwdb_part<float>, dim3((C + 31) / 32, nChunk), dim3(32, 8), 0, part.data(), part.data() + (size_t)nChunk * C,
         (const float *)dout.data(), (const float *)x.data(), (const float *)mC.data(), (const float *)rC.data(), N, C);
  launch(bt_k_ln_dwdb_final, dim3((C + 255) / 256), dim3(256), 0, dwG.data(), dbG.data(), (const float *)part.data(),
         (const float *)(part.data() + (size_t)nChunk * C), nChunk, C);
  launch(bt_k_ln_bwd_dinp<float>, dim3((N + LN_WARPS - 1) / LN_WARPS), dim3(32 * LN_WARPS), 0, diG.data(),
         (const float *)dout.data(), (const float *)x.data(), (const float *)w.data(), (const float *)mC.data(),
         (const float *)rC.data(), N, C, 0);
  snprintf(z, sizeof z, "layernorm bwd dinp %dx%d", N, C); check(z, diG, diC, 1e-5);
  snprintf(z, sizeof z, "layernorm bwd dw %dx%d", N, C); check(z, dwG, dwC, 1e-5);
  snprintf(z, sizeof z, "layernorm bwd db %dx%d", N, C); check(z, dbG, dbC, 1e-5);
}

static void t_bias(int N, int C) {
  char z[128];
  auto x = rnd((size_t)N * C, -1, 1), b = rnd(C, -1, 1), db0 = rnd(C, -1, 1);
  std::vector<float> oC((size_t)N * C);
  auto oG = nanv((size_t)N * C);
  bt_op_bias_fwd(cpu, oC.data(), x.data(), b.data(), N, C);
  size_t total = (size_t)N * C;
  launch(bt_k_bias_fwd<float>, dim3(grid_of(total, 256)), dim3(256), 0, oG.data(), (const float *)x.data(),
         (const float *)b.data(), total, C, (size_t)0);
  snprintf(z, sizeof z, "bias fwd %dx%d", N, C); check(z, oG, oC, 1e-6);
  auto dbC = db0, dbG = db0;
  bt_op_bias_bwd(cpu, NULL, dbC.data(), x.data(), N, C);
  int nChunk = (N + BT_CS_ROWS - 1) / BT_CS_ROWS;
  std::vector<float> part((size_t)nChunk * C, NAN);
  launch(bt_k_colsum_part<float>, dim3((C + 31) / 32, nChunk), dim3(32, 8), 0, part.data(), (const float *)x.data(), N, C);
  launch(bt_k_colsum_final, dim3((C + 255) / 256), dim3(256), 0, dbG.data(), (const float *)part.data(), nChunk, C);
  snprintf(z, sizeof z, "colsum dbias %dx%d", N, C); check(z, dbG, dbC, 1e-5);
  // column-major bias add: D (m x n, ld m) += bias[row]  <=> row-major [n, m] + bias
  auto oG2 = x;
  launch(bt_k_add_bias_cm<float>, dim3(grid_of(total, 256)), dim3(256), 0, oG2.data(), (const float *)b.data(), C, N, C);
  snprintf(z, sizeof z, "add_bias_cm %dx%d", N, C); check(z, oG2, oC, 1e-6);
}

/* The CTC kernels (cuda_speech.cu), launched as bt_cuda_ctc_loss_fwd/bwd
 * launch them; lengths as in test_gpu_ops: utterance 0 uses every frame,
 * the last one is impossible (more labels than frames). */
static void t_ctc(int B, int T, int V, int L) {
  char z[128];
  std::vector<int32_t> in(B), tl(B), tg((size_t)B * L);
  for (int b = 0; b < B; b++) {
    in[b] = b == 0 ? T : T / 2 + (b * 7) % (T / 2 + 1);
    tl[b] = (b * 5 + 1) % (L + 1);
    if (b == B - 1) in[b] = 1, tl[b] = L;
    for (int j = 0; j < L; j++) tg[(size_t)b * L + j] = j < tl[b] ? 1 + (b + 3 * j) % (V - 1) : -1;
  }
  size_t n = (size_t)B * T * V, nS = bt_op_ctc_scratch_size(cpu, B, T, V, L);
  auto x = rnd(n, -3, 3), dl = rnd(B, 0.5f, 1.5f), g0 = rnd(n, -1, 1);
  std::vector<float> lC(B), scrC(nS), gC = g0;
  bt_op_ctc_loss_fwd(cpu, lC.data(), scrC.data(), x.data(), in.data(), tg.data(), tl.data(), B, T, V, L);
  bt_op_ctc_loss_bwd(cpu, gC.data(), scrC.data(), dl.data(), in.data(), tg.data(), tl.data(), B, T, V, L);
  auto lG = nanv(B), scr = nanv(nS), gG = g0;
  float *lp = scr.data(), *alpha = lp + n, *beta = alpha + (size_t)B * T * (2 * L + 1);
  float *ll = beta + (size_t)B * T * (2 * L + 1);
  launch(bt_k_ctc_logsoftmax, dim3(T, B), dim3(CTC_THREADS), 0, lp, (const float *)x.data(),
         (const int32_t *)in.data(), T, V);
  launch(bt_k_ctc_alpha, dim3(B), dim3(CTC_THREADS), 0, alpha, ll, lG.data(), (const float *)lp,
         (const int32_t *)in.data(), (const int32_t *)tg.data(), (const int32_t *)tl.data(), T, V, L);
  launch(bt_k_ctc_beta, dim3(B), dim3(CTC_THREADS), 0, beta, (const float *)lp, (const int32_t *)in.data(),
         (const int32_t *)tg.data(), (const int32_t *)tl.data(), T, V, L);
  launch(bt_k_ctc_grad, dim3(T, B), dim3(CTC_THREADS), 0, gG.data(), (const float *)lp, (const float *)alpha,
         (const float *)beta, (const float *)ll, (const float *)dl.data(), (const int32_t *)in.data(),
         (const int32_t *)tg.data(), (const int32_t *)tl.data(), T, V, L);
  snprintf(z, sizeof z, "ctc fwd B=%d T=%d V=%d L=%d", B, T, V, L); check(z, lG, lC, 1e-5);
  snprintf(z, sizeof z, "ctc bwd B=%d T=%d V=%d L=%d", B, T, V, L); check(z, gG, gC, 1e-5);
}

static void t_xent(int N, int V, int Vp) {
  char z[128];
  auto x = rnd((size_t)N * Vp, -4, 4);
  for (int n = 0; n < N; n++) for (int v = V; v < Vp; v++) x[(size_t)n * Vp + v] = 1e4f;
  std::vector<int32_t> t(N);
  for (int n = 0; n < N; n++) t[n] = (n * 7 + 3) % V;
  t[0] = V - 1;
  if (N > 2) t[2] = -1;
  std::vector<float> lC(N);
  bt_op_xent_fwd(cpu, lC.data(), x.data(), t.data(), N, V, Vp);
  auto lG = nanv(N);
  launch(bt_k_xent_fwd<float>, dim3(N), dim3(XENT_THREADS), 0, lG.data(), (const float *)x.data(), (const int32_t *)t.data(), V, Vp);
  snprintf(z, sizeof z, "xent fwd N=%d V=%d Vp=%d", N, V, Vp); check(z, lG, lC, 1e-5);
  std::vector<float> dC((size_t)N * Vp);
  bt_op_xent_bwd(cpu, dC.data(), x.data(), t.data(), 0.5f, N, V, Vp);
  auto dG = nanv((size_t)N * Vp);
  launch(bt_k_xent_bwd<float>, dim3(N), dim3(XENT_THREADS), 0, dG.data(), (const float *)x.data(), (const int32_t *)t.data(), 0.5f, V, Vp, 0);
  snprintf(z, sizeof z, "xent bwd N=%d V=%d Vp=%d", N, V, Vp); check(z, dG, dC, 1e-5);
  auto xi = x;
  launch(bt_k_xent_bwd<float>, dim3(N), dim3(XENT_THREADS), 0, xi.data(), (const float *)xi.data(), (const int32_t *)t.data(), 0.5f, V, Vp, 0);
  snprintf(z, sizeof z, "xent bwd in place N=%d V=%d Vp=%d", N, V, Vp); check(z, xi, dC, 1e-5);
}

/* The embedding backward's device plan, launched as bt_cuda_embed_bwd
 * launches it (keys, then embed_sort's sequence); the key buffer starts
 * as garbage. */
static std::vector<uint64_t> embed_plan(const std::vector<int32_t> &tok, int V) {
  const int nTok = (int)tok.size();
  size_t nPad = SORT_TILE;
  while (nPad < (size_t)nTok) nPad <<= 1;
  std::vector<uint64_t> keys(nPad, 0x5a5a5a5a5a5a5a5aull);
  launch(bt_k_embed_keys, dim3(grid_of(nPad, 256)), dim3(256), 0, keys.data(), (const int32_t *)tok.data(), nTok, nPad, V);
  const unsigned nTile = (unsigned)(nPad / SORT_TILE);
  launch(bt_k_sort_local, dim3(nTile), dim3(SORT_TILE / 2), 0, keys.data(), (size_t)2, (size_t)SORT_TILE);
  for (size_t k = 2 * SORT_TILE; k <= nPad; k <<= 1) {
    for (size_t j = k / 2; j >= SORT_TILE; j >>= 1)
      launch(bt_k_sort_step, dim3(grid_of(nPad / 2, 256)), dim3(256), 0, keys.data(), nPad, j, k);
    launch(bt_k_sort_local, dim3(nTile), dim3(SORT_TILE / 2), 0, keys.data(), k, k);
  }
  return keys;
}

/* A token outside [0, V) cannot be refused on the host any more: it must
 * poison dwte's row 0 with NaN (the step's gradient check then reports
 * it) and leave the other tokens' sums right. */
static void t_embed_bad_token(void) {
  const int B = 1, T = 9, C = 6, V = 5, nTok = B * T;
  std::vector<int32_t> tok = {3, 1, 5, 3, 2, -1, 1, 4, 2}; /* 5, -1 bad */
  auto dout = rnd((size_t)nTok * C, -1, 1);
  std::vector<float> dwteG((size_t)V * C, 0.0f);
  std::vector<uint64_t> keys = embed_plan(tok, V);
  launch(bt_k_embed_dwte<float>, dim3(nTok), dim3(256), 0, dwteG.data(), (const float *)dout.data(), (const uint64_t *)keys.data(), nTok, C);
  bool ok = true;
  for (int c = 0; c < C; c++) ok = ok && std::isnan(dwteG[c]);
  for (int v = 1; v < V; v++)
    for (int c = 0; c < C; c++) {
      float want = 0.0f;
      for (int i = 0; i < nTok; i++) if (tok[i] == v) want += dout[(size_t)i * C + c];
      ok = ok && dwteG[(size_t)v * C + c] == want;
    }
  printf("%-5s embed dwte with tokens 5 and -1 outside V=5: row 0 NaN, rows 1-4 summed\n", ok ? "ok" : "FAIL");
  ok ? nPass++ : nFail++;
}

static void t_embed(int B, int T, int C, int V) {
  char z[128];
  int nTok = B * T;
  std::vector<int32_t> tok(nTok);
  uint64_t key = bt_rng_key(5, 5, salt++, 0);
  for (int i = 0; i < nTok; i++) tok[i] = (int32_t)(bt_rng_u64(key, i) % V);
  auto wte = rnd((size_t)V * C, -1, 1), wpe = rnd((size_t)T * C, -1, 1);
  std::vector<float> oC((size_t)nTok * C);
  bt_op_embed_fwd(cpu, oC.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  auto oG = nanv((size_t)nTok * C);
  size_t total = (size_t)nTok * C;
  launch(bt_k_embed_fwd<float>, dim3(grid_of(total, 256)), dim3(256), 0, oG.data(), (const int32_t *)tok.data(),
         (const float *)wte.data(), (const float *)wpe.data(), T, C, total);
  snprintf(z, sizeof z, "embed fwd"); check(z, oG, oC, 1e-6);
  auto dout = rnd(total, -1, 1);
  auto dwte0 = rnd((size_t)V * C, -1, 1), dwpe0 = rnd((size_t)T * C, -1, 1);
  auto dwteC = dwte0, dwpeC = dwpe0, dwteG = dwte0, dwpeG = dwpe0;
  bt_op_embed_bwd(cpu, dwteC.data(), dwpeC.data(), dout.data(), tok.data(), B, T, C, V);
  launch(bt_k_embed_dwpe<float>, dim3(grid_of((size_t)T * C, 256)), dim3(256), 0, dwpeG.data(), (const float *)dout.data(), B, T, C);
  std::vector<uint64_t> keys = embed_plan(tok, V);
  size_t nPad = keys.size();
  std::vector<uint64_t> want(nPad, 0xffffffffffffffffull);
  for (int i = 0; i < nTok; i++) want[i] = ((uint64_t)(uint32_t)tok[i] << 32) | (uint32_t)i;
  std::sort(want.begin(), want.end());
  snprintf(z, sizeof z, "embed plan (bitonic sort of %zu keys)", nPad);
  printf("%-5s %s\n", keys == want ? "ok" : "FAIL", z);
  keys == want ? nPass++ : nFail++;
  launch(bt_k_embed_dwte<float>, dim3(nTok), dim3(256), 0, dwteG.data(), (const float *)dout.data(), (const uint64_t *)keys.data(), nTok, C);
  snprintf(z, sizeof z, "embed dwte B=%d T=%d C=%d V=%d", B, T, C, V); check(z, dwteG, dwteC, 1e-6);
  snprintf(z, sizeof z, "embed dwpe"); check(z, dwpeG, dwpeC, 1e-6);
}

/* ---- [act] kernels in bf16 storage (cuda_common.h BT_CUDA_ACT) --------
 * Against the CPU backend in bf16 mode (cpu16), which computes in fp32 on
 * the same bf16 inputs and rounds each [act] output to nearest even
 * (ops.def, "ELEMENT TYPES"); the kernel reads bf16, computes in fp32 and
 * stores with __float2bfloat16_rn. Inputs are bf16-rounded first, as they
 * would be in a bf16 run. Limit: one bf16 rounding step (2^-8 relative)
 * per element, for the rare element whose fp32 result lies within an fp32
 * ulp of a rounding boundary, where the two fp32 evaluation orders
 * (host tanhf vs the CPU backend's loop) may round differently; measured
 * relerr is printed (0 when every element is identical). */
static bt_backend *cpu16;
static std::vector<float> round16(std::vector<float> v) {
  for (float &x : v) x = __bfloat162float(__float2bfloat16_rn(x));
  return v;
}
static std::vector<__nv_bfloat16> to16(const std::vector<float> &v) {
  std::vector<__nv_bfloat16> h(v.size());
  for (size_t i = 0; i < v.size(); i++) h[i] = __float2bfloat16_rn(v[i]);
  return h;
}
static std::vector<float> from16(const std::vector<__nv_bfloat16> &h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); i++) v[i] = __bfloat162float(h[i]);
  return v;
}
static std::vector<__nv_bfloat16> nan16(size_t n) {
  return std::vector<__nv_bfloat16>(n, __float2bfloat16_rn(NAN));
}
#define BF16_TOL 3.9e-3 /* 2^-8 */

static void t_gelu_bf16(size_t n) {
  auto a = round16(rnd(n, -4, 4)), b = round16(rnd(n, -1, 1));
  auto d0 = round16(rnd(n, -1, 1));
  std::vector<float> oC(n);
  bt_op_gelu_fwd(cpu16, oC.data(), a.data(), n);
  auto a16 = to16(a), b16 = to16(b), oG = nan16(n);
  launch(bt_k_gelu_fwd<__nv_bfloat16>, dim3(grid_of(n, 256)), dim3(256), 0, oG.data(),
         (const __nv_bfloat16 *)a16.data(), n, (size_t)0);
  check("gelu fwd bf16", from16(oG), oC, BF16_TOL);
  auto dC = d0;
  auto dG = to16(d0);
  bt_op_gelu_bwd(cpu16, dC.data(), a.data(), b.data(), n);
  launch(bt_k_gelu_bwd<__nv_bfloat16>, dim3(grid_of(n, 256)), dim3(256), 0, dG.data(),
         (const __nv_bfloat16 *)a16.data(), (const __nv_bfloat16 *)b16.data(), n, (size_t)0);
  check("gelu bwd bf16", from16(dG), dC, BF16_TOL);
}

/* ---- the other [act] kernels, both storage types ----------------------
 * cpu (fp32) or cpu16 (bf16) as the reference; inputs bf16-rounded in bf16
 * (helpers above). Limits, per output:
 *   exact (tol 0): the kernel does the CPU reference's fp32 arithmetic, in
 *     the same order, on the same inputs and rounds once: embedding fwd
 *     (wte + wpe), dwte and dwpe (fp32 sums in position order), residual,
 *     bias add, the in-place add, to_act, add_bias_cm (in both dtypes);
 *   BF16_TOL (bf16 [act] outputs whose fp32 arithmetic differs from the
 *     CPU's: layernorm (CPU in double), cross-entropy's gradient (CPU's
 *     bt_cpu_expf and double sums), GEMMs (summation order)): derived as
 *     in t_gelu_bf16, one bf16 step for the elements near a boundary;
 *   fp32 outputs (mean, rstd, losses, dw, db, dbias, a GEMM's dw) keep the
 *     fp32 cases' limits: the kernel's arithmetic on them is unchanged.
 * The element-wise kernels run their 16-byte vector path (nVec > 0, as
 * the wrappers choose for aligned pointers) and, on views one element off
 * the allocation's alignment, the scalar path (nVec = 0); both must give
 * the CPU's bits. */
static std::vector<float> ldv(const std::vector<float> &v) { return v; }
static std::vector<float> ldv(const std::vector<__nv_bfloat16> &v) { return from16(v); }
template <typename T> static std::vector<T> stv(const std::vector<float> &v);
template <> std::vector<float> stv<float>(const std::vector<float> &v) { return v; }
template <> std::vector<__nv_bfloat16> stv<__nv_bfloat16>(const std::vector<float> &v) { return to16(v); }
template <typename T> static bool is16() { return sizeof(T) == 2; }
/* The reference backend and the input rounding of storage type T. */
template <typename T> static bt_backend *ref_of() { return is16<T>() ? cpu16 : cpu; }
template <typename T> static std::vector<float> in_of(std::vector<float> v) {
  return is16<T>() ? round16(v) : v;
}
/* nVec as the wrappers compute it (cuda_ops.cu ew_nvec, cuda_gemm.cu
 * gemm_ew_nvec) and their grid. */
static size_t nvec_of(size_t n, std::initializer_list<const void *> ap) {
  for (const void *p : ap)
    if ((uintptr_t)p & 15u) return 0;
  return n / BT_VEC;
}
static unsigned ew_grid_of(size_t n, size_t nVec) {
  const size_t nTail = n - BT_VEC * nVec;
  return grid_of(nVec > nTail ? nVec : nTail, 256);
}
/* Elements [off, off + n) of a GPU buffer, as floats. */
template <typename T> static std::vector<float> view(const std::vector<T> &v, size_t off, size_t n) {
  auto f = ldv(v);
  return std::vector<float>(f.begin() + off, f.begin() + off + n);
}

/* residual fwd/bwd (also da == db), the in-place add of bias_bwd, to_act. */
template <typename T> static void t_ew_act(size_t n, size_t off) {
  char z[128];
  const char *zT = is16<T>() ? "bf16" : "fp32";
  bt_backend *be = ref_of<T>();
  std::vector<float> pad(off, 0.0f);
  auto cat = [&](const std::vector<float> &v) { auto r = pad; r.insert(r.end(), v.begin(), v.end()); return r; };
  auto a = in_of<T>(rnd(n, -1, 1)), b = in_of<T>(rnd(n, -1, 1)), d = in_of<T>(rnd(n, -1, 1));
  auto aG = stv<T>(cat(a)), bG = stv<T>(cat(b)), dG = stv<T>(cat(d));
  std::vector<float> oC(n);
  auto oG = stv<T>(std::vector<float>(n + off, NAN));
  bt_op_residual_fwd(be, oC.data(), a.data(), b.data(), n);
  size_t nVec = nvec_of(n, {oG.data() + off, aG.data() + off, bG.data() + off});
  const char *zPath = nVec ? "vector" : "scalar";
  if ((off == 0) != (nVec > 0)) { /* the path the case means to run */
    printf("FAIL  %s n=%zu off=%zu took the %s path\n", zT, n, off, zPath);
    nFail++;
  }
  launch(bt_k_residual_fwd<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, oG.data() + off,
         (const T *)aG.data() + off, (const T *)bG.data() + off, n, nVec);
  snprintf(z, sizeof z, "residual fwd %s %s n=%zu", zT, zPath, n); check(z, view(oG, off, n), oC, 0.0);
  auto daC = a, dbC = b;
  auto daG = aG, dbG = bG;
  bt_op_residual_bwd(be, daC.data(), dbC.data(), d.data(), n);
  nVec = nvec_of(n, {daG.data() + off, dbG.data() + off, dG.data() + off});
  launch(bt_k_residual_bwd<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, daG.data() + off, dbG.data() + off,
         (const T *)dG.data() + off, n, nVec);
  snprintf(z, sizeof z, "residual bwd da %s %s n=%zu", zT, zPath, n); check(z, view(daG, off, n), daC, 0.0);
  snprintf(z, sizeof z, "residual bwd db %s %s n=%zu", zT, zPath, n); check(z, view(dbG, off, n), dbC, 0.0);
  auto sC = a;
  auto sG = aG; /* da == db: rounded after each of the two adds */
  bt_op_residual_bwd(be, sC.data(), sC.data(), d.data(), n);
  launch(bt_k_residual_bwd<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, sG.data() + off, sG.data() + off,
         (const T *)dG.data() + off, n, nVec);
  snprintf(z, sizeof z, "residual bwd da == db %s %s n=%zu", zT, zPath, n); check(z, view(sG, off, n), sC, 0.0);
  auto iC = a;
  auto iG = aG;
  bt_op_bias_bwd(be, iC.data(), NULL, d.data(), 1, (int)n);
  launch(bt_k_add_inplace<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, iG.data() + off,
         (const T *)dG.data() + off, n, nVec);
  snprintf(z, sizeof z, "add_inplace %s %s n=%zu", zT, zPath, n); check(z, view(iG, off, n), iC, 0.0);
  /* GELU: against the CPU within the limits of t_misc / t_gelu_bf16, and
   * against the kernel's own scalar path (nVec = 0) bit for bit. */
  const double tolG = is16<T>() ? BF16_TOL : 1e-5;
  auto gC = oC, gbC = a;
  bt_op_gelu_fwd(be, gC.data(), a.data(), n);
  bt_op_gelu_bwd(be, gbC.data(), b.data(), d.data(), n);
  auto gG = stv<T>(std::vector<float>(n + off, NAN)), gS = gG;
  auto gbG = aG, gbS = aG;
  nVec = nvec_of(n, {gG.data() + off, aG.data() + off});
  launch(bt_k_gelu_fwd<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, gG.data() + off, (const T *)aG.data() + off,
         n, nVec);
  launch(bt_k_gelu_fwd<T>, dim3(grid_of(n, 256)), dim3(256), 0, gS.data() + off, (const T *)aG.data() + off, n,
         (size_t)0);
  nVec = nvec_of(n, {gbG.data() + off, bG.data() + off, dG.data() + off});
  launch(bt_k_gelu_bwd<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, gbG.data() + off, (const T *)bG.data() + off,
         (const T *)dG.data() + off, n, nVec);
  launch(bt_k_gelu_bwd<T>, dim3(grid_of(n, 256)), dim3(256), 0, gbS.data() + off, (const T *)bG.data() + off,
         (const T *)dG.data() + off, n, (size_t)0);
  snprintf(z, sizeof z, "gelu fwd %s %s n=%zu", zT, zPath, n); check(z, view(gG, off, n), gC, tolG);
  snprintf(z, sizeof z, "gelu bwd %s %s n=%zu", zT, zPath, n); check(z, view(gbG, off, n), gbC, tolG);
  if (nVec) { /* the vector path gives the scalar path's bits */
    snprintf(z, sizeof z, "gelu fwd %s vector == scalar n=%zu", zT, n);
    check(z, view(gG, off, n), view(gS, off, n), 0.0);
    snprintf(z, sizeof z, "gelu bwd %s vector == scalar n=%zu", zT, n);
    check(z, view(gbG, off, n), view(gbS, off, n), 0.0);
  }
  /* to_act: fp32 in (not rounded: the master weights), [act] out */
  auto x = rnd(n, -3, 3);
  x[0] = 1.00390625f; /* 1 + 2^-8: a tie, rounds to even (1.0) in bf16 */
  auto xG = cat(x);
  std::vector<float> tC(n);
  bt_op_to_act(be, tC.data(), x.data(), n);
  auto tG = stv<T>(std::vector<float>(n + off, NAN));
  nVec = nvec_of(n, {tG.data() + off, xG.data() + off});
  launch(bt_k_to_act<T>, dim3(ew_grid_of(n, nVec)), dim3(256), 0, tG.data() + off, (const float *)xG.data() + off,
         n, nVec);
  snprintf(z, sizeof z, "to_act %s %s n=%zu", zT, zPath, n); check(z, view(tG, off, n), tC, 0.0);
}

/* bias_fwd, the column sum of bias_bwd / matmul_bwd, add_bias_cm. */
template <typename T> static void t_bias_act(int N, int C, size_t off) {
  char z[128];
  const char *zT = is16<T>() ? "bf16" : "fp32";
  bt_backend *be = ref_of<T>();
  size_t total = (size_t)N * C;
  auto x = in_of<T>(rnd(total, -1, 1)), b = in_of<T>(rnd(C, -1, 1));
  auto db0 = rnd(C, -1, 1);
  std::vector<float> xp(off, 0.0f);
  xp.insert(xp.end(), x.begin(), x.end());
  auto xG = stv<T>(xp), bG = stv<T>(b);
  std::vector<float> oC(total);
  bt_op_bias_fwd(be, oC.data(), x.data(), b.data(), N, C);
  auto oG = stv<T>(std::vector<float>(total + off, NAN));
  size_t nVec = nvec_of(total, {oG.data() + off, xG.data() + off});
  launch(bt_k_bias_fwd<T>, dim3(ew_grid_of(total, nVec)), dim3(256), 0, oG.data() + off,
         (const T *)xG.data() + off, (const T *)bG.data(), total, C, nVec);
  snprintf(z, sizeof z, "bias fwd %s %s %dx%d", zT, nVec ? "vector" : "scalar", N, C);
  check(z, view(oG, off, total), oC, 0.0);
  auto dbC = db0, dbG = db0;
  bt_op_bias_bwd(be, NULL, dbC.data(), x.data(), N, C);
  int nChunk = (N + BT_CS_ROWS - 1) / BT_CS_ROWS;
  std::vector<float> part((size_t)nChunk * C, NAN);
  launch(bt_k_colsum_part<T>, dim3((C + 31) / 32, nChunk), dim3(32, 8), 0, part.data(), (const T *)xG.data() + off,
         N, C);
  launch(bt_k_colsum_final, dim3((C + 255) / 256), dim3(256), 0, dbG.data(), (const float *)part.data(), nChunk, C);
  snprintf(z, sizeof z, "colsum dbias %s %dx%d", zT, N, C); check(z, dbG, dbC, 1e-5);
  auto cG = stv<T>(x); /* D (C x N column-major) = x, += bias[row] */
  launch(bt_k_add_bias_cm<T>, dim3(grid_of(total, 256)), dim3(256), 0, cG.data(), (const T *)bG.data(), C, N, C);
  snprintf(z, sizeof z, "add_bias_cm %s %dx%d", zT, N, C); check(z, ldv(cG), oC, 0.0);
}

static void t_embed_bf16(int B, int T, int C, int V) {
  char z[128];
  int nTok = B * T;
  size_t total = (size_t)nTok * C;
  std::vector<int32_t> tok(nTok);
  uint64_t key = bt_rng_key(5, 6, salt++, 0);
  for (int i = 0; i < nTok; i++) tok[i] = (int32_t)(bt_rng_u64(key, i) % V);
  auto wte = round16(rnd((size_t)V * C, -1, 1)), wpe = round16(rnd((size_t)T * C, -1, 1));
  std::vector<float> oC(total);
  bt_op_embed_fwd(cpu16, oC.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  auto wteG = to16(wte), wpeG = to16(wpe), oG = nan16(total);
  launch(bt_k_embed_fwd<__nv_bfloat16>, dim3(grid_of(total, 256)), dim3(256), 0, oG.data(),
         (const int32_t *)tok.data(), (const __nv_bfloat16 *)wteG.data(), (const __nv_bfloat16 *)wpeG.data(), T, C,
         total);
  snprintf(z, sizeof z, "embed fwd bf16 B=%d T=%d C=%d V=%d", B, T, C, V); check(z, from16(oG), oC, 0.0);
  auto dout = round16(rnd(total, -1, 1));
  auto dwte0 = rnd((size_t)V * C, -1, 1), dwpe0 = rnd((size_t)T * C, -1, 1);
  auto dwteC = dwte0, dwpeC = dwpe0, dwteG = dwte0, dwpeG = dwpe0;
  bt_op_embed_bwd(cpu16, dwteC.data(), dwpeC.data(), dout.data(), tok.data(), B, T, C, V);
  auto doutG = to16(dout);
  launch(bt_k_embed_dwpe<__nv_bfloat16>, dim3(grid_of((size_t)T * C, 256)), dim3(256), 0, dwpeG.data(),
         (const __nv_bfloat16 *)doutG.data(), B, T, C);
  std::vector<uint64_t> keys = embed_plan(tok, V);
  launch(bt_k_embed_dwte<__nv_bfloat16>, dim3(nTok), dim3(256), 0, dwteG.data(), (const __nv_bfloat16 *)doutG.data(),
         (const uint64_t *)keys.data(), nTok, C);
  snprintf(z, sizeof z, "embed dwte (fp32) from bf16 dout B=%d T=%d", B, T); check(z, dwteG, dwteC, 0.0);
  snprintf(z, sizeof z, "embed dwpe (fp32) from bf16 dout B=%d T=%d", B, T); check(z, dwpeG, dwpeC, 0.0);
}

static void t_layernorm_bf16(int N, int C) {
  char z[128];
  size_t n = (size_t)N * C;
  auto x = round16(rnd(n, -1.5f, 2.5f)), w = round16(rnd(C, 0.5f, 1.5f)), b = round16(rnd(C, -.5f, .5f));
  std::vector<float> oC(n), mC(N), rC(N);
  bt_op_layernorm_fwd(cpu16, oC.data(), mC.data(), rC.data(), x.data(), w.data(), b.data(), N, C);
  auto xG = to16(x), wG = to16(w), bG = to16(b), oG = nan16(n), oS = oG;
  auto mG = nanv(N), rG = nanv(N);
  /* the row kernels' vector path where the wrapper takes it (row_vec) */
  const int bVec = nvec_of((size_t)C, {oG.data(), xG.data(), wG.data(), bG.data()}) > 0 && C % BT_VEC == 0;
  const dim3 gLn((N + LN_WARPS - 1) / LN_WARPS), bLn(32 * LN_WARPS);
  launch(bt_k_ln_fwd<__nv_bfloat16>, gLn, bLn, 0, oG.data(), mG.data(), rG.data(), (const __nv_bfloat16 *)xG.data(),
         (const __nv_bfloat16 *)wG.data(), (const __nv_bfloat16 *)bG.data(), N, C, bVec);
  if (bVec) { /* the vector path gives the scalar path's bits */
    launch(bt_k_ln_fwd<__nv_bfloat16>, gLn, bLn, 0, oS.data(), (float *)NULL, (float *)NULL,
           (const __nv_bfloat16 *)xG.data(), (const __nv_bfloat16 *)wG.data(), (const __nv_bfloat16 *)bG.data(), N, C,
           0);
    snprintf(z, sizeof z, "layernorm fwd bf16 vector == scalar %dx%d", N, C); check(z, from16(oG), from16(oS), 0.0);
  }
  snprintf(z, sizeof z, "layernorm fwd out bf16 %dx%d", N, C); check(z, from16(oG), oC, BF16_TOL);
  snprintf(z, sizeof z, "layernorm fwd mean (fp32) bf16 %dx%d", N, C); check(z, mG, mC, 1e-5);
  snprintf(z, sizeof z, "layernorm fwd rstd (fp32) bf16 %dx%d", N, C); check(z, rG, rC, 1e-5);
  auto dout = round16(rnd(n, -1, 1)), di0 = round16(rnd(n, -1, 1));
  auto dw0 = rnd(C, -1, 1), db0 = rnd(C, -1, 1);
  auto diC = di0, dwC = dw0, dbC = db0, dwG = dw0, dbG = db0;
  bt_op_layernorm_bwd(cpu16, diC.data(), dwC.data(), dbC.data(), dout.data(), x.data(), w.data(), mC.data(),
                      rC.data(), N, C);
  auto doutG = to16(dout), diG = to16(di0), diS = diG;
  int nChunk = (N + LN_ROWS - 1) / LN_ROWS;
  std::vector<float> part(2 * (size_t)nChunk * C, NAN);
  launch(bt_k_ln_dwdb_part<__nv_bfloat16>, dim3((C + 31) / 32, nChunk), dim3(32, 8), 0, part.data(),
         part.data() + (size_t)nChunk * C, (const __nv_bfloat16 *)doutG.data(), (const __nv_bfloat16 *)xG.data(),
         (const float *)mC.data(), (const float *)rC.data(), N, C);
  launch(bt_k_ln_dwdb_final, dim3((C + 255) / 256), dim3(256), 0, dwG.data(), dbG.data(), (const float *)part.data(),
         (const float *)(part.data() + (size_t)nChunk * C), nChunk, C);
  launch(bt_k_ln_bwd_dinp<__nv_bfloat16>, gLn, bLn, 0, diG.data(), (const __nv_bfloat16 *)doutG.data(),
         (const __nv_bfloat16 *)xG.data(), (const __nv_bfloat16 *)wG.data(), (const float *)mC.data(),
         (const float *)rC.data(), N, C, bVec);
  if (bVec) {
    launch(bt_k_ln_bwd_dinp<__nv_bfloat16>, gLn, bLn, 0, diS.data(), (const __nv_bfloat16 *)doutG.data(),
           (const __nv_bfloat16 *)xG.data(), (const __nv_bfloat16 *)wG.data(), (const float *)mC.data(),
           (const float *)rC.data(), N, C, 0);
    snprintf(z, sizeof z, "layernorm bwd bf16 vector == scalar %dx%d", N, C); check(z, from16(diG), from16(diS), 0.0);
  }
  snprintf(z, sizeof z, "layernorm bwd dinp bf16 %dx%d", N, C); check(z, from16(diG), diC, BF16_TOL);
  snprintf(z, sizeof z, "layernorm bwd dw (fp32) bf16 %dx%d", N, C); check(z, dwG, dwC, 1e-5);
  snprintf(z, sizeof z, "layernorm bwd db (fp32) bf16 %dx%d", N, C); check(z, dbG, dbC, 1e-5);
}

static void t_xent_bf16(int N, int V, int Vp) {
  char z[128];
  auto x = rnd((size_t)N * Vp, -4, 4);
  for (int n = 0; n < N; n++) for (int v = V; v < Vp; v++) x[(size_t)n * Vp + v] = 1e4f;
  x = round16(x);
  std::vector<int32_t> t(N);
  for (int n = 0; n < N; n++) t[n] = (n * 7 + 3) % V;
  t[0] = V - 1;
  if (N > 2) t[2] = -1;
  std::vector<float> lC(N);
  bt_op_xent_fwd(cpu16, lC.data(), x.data(), t.data(), N, V, Vp);
  auto xG = to16(x);
  auto lG = nanv(N);
  launch(bt_k_xent_fwd<__nv_bfloat16>, dim3(N), dim3(XENT_THREADS), 0, lG.data(), (const __nv_bfloat16 *)xG.data(),
         (const int32_t *)t.data(), V, Vp);
  snprintf(z, sizeof z, "xent fwd losses (fp32) bf16 N=%d V=%d Vp=%d", N, V, Vp); check(z, lG, lC, 1e-5);
  std::vector<float> dC((size_t)N * Vp);
  bt_op_xent_bwd(cpu16, dC.data(), x.data(), t.data(), 0.5f, N, V, Vp);
  auto dG = nan16((size_t)N * Vp), dS = dG;
  const int bVec = Vp % BT_VEC == 0 && nvec_of(8, {dG.data(), xG.data()}) > 0; /* row_vec */
  launch(bt_k_xent_bwd<__nv_bfloat16>, dim3(N), dim3(XENT_THREADS), 0, dG.data(), (const __nv_bfloat16 *)xG.data(),
         (const int32_t *)t.data(), 0.5f, V, Vp, bVec);
  if (bVec) {
    launch(bt_k_xent_bwd<__nv_bfloat16>, dim3(N), dim3(XENT_THREADS), 0, dS.data(), (const __nv_bfloat16 *)xG.data(),
           (const int32_t *)t.data(), 0.5f, V, Vp, 0);
    snprintf(z, sizeof z, "xent bwd bf16 vector == scalar N=%d Vp=%d", N, Vp); check(z, from16(dG), from16(dS), 0.0);
  }
  snprintf(z, sizeof z, "xent bwd bf16 N=%d V=%d Vp=%d", N, V, Vp); check(z, from16(dG), dC, BF16_TOL);
  auto xi = xG;
  launch(bt_k_xent_bwd<__nv_bfloat16>, dim3(N), dim3(XENT_THREADS), 0, xi.data(), (const __nv_bfloat16 *)xi.data(),
         (const int32_t *)t.data(), 0.5f, V, Vp, bVec);
  snprintf(z, sizeof z, "xent bwd in place bf16 N=%d V=%d Vp=%d", N, V, Vp); check(z, from16(xi), dC, BF16_TOL);
  /* in place must equal out of place bit for bit */
  snprintf(z, sizeof z, "xent bwd in place == out of place bf16 N=%d", N); check(z, from16(xi), from16(dG), 0.0);
}

/* The GEMM plans with bf16 operands (train.precision = bf16): out and dinp
 * bf16, dw fp32, against cpu16; the reference GEMM and the fallback
 * kernel's two bf16 instantiations execute them. */
static void t_gemm_plans_bf16(int N, int C, int OC, bt_wlayout L) {
  char z[128];
  typedef __nv_bfloat16 bf16;
  const char *zL = L == BT_W_IN_OUT ? "in_out" : "out_in";
  auto inp = round16(rnd((size_t)N * C, -1, 1)), w = round16(rnd((size_t)C * OC, -1, 1));
  auto bias = round16(rnd(OC, -1, 1)), dout = round16(rnd((size_t)N * OC, -1, 1));
  auto di0 = round16(rnd((size_t)N * C, -1, 1)), dw0 = rnd((size_t)C * OC, -1, 1);
  std::vector<float> oC((size_t)N * OC);
  bt_op_matmul_fwd(cpu16, oC.data(), inp.data(), w.data(), bias.data(), N, C, OC, L);
  auto diC = di0, dwC = dw0;
  bt_op_matmul_bwd(cpu16, diC.data(), dwC.data(), NULL, dout.data(), inp.data(), w.data(), N, C, OC, L);
  auto inpG = to16(inp), wG = to16(w), biasG = to16(bias), doutG = to16(dout);
  const float *pI = (const float *)inpG.data(), *pW = (const float *)wG.data();
  const float *pB = (const float *)biasG.data(), *pD = (const float *)doutG.data();
  for (int bFb = 0; bFb < 2; bFb++) {
    auto oG = nan16((size_t)N * OC), diG = to16(di0);
    auto dwG = dw0;
    bt_gemm_call gf = bt_gemm_plan_fwd((float *)oG.data(), pI, pW, pB, N, C, OC, L, BT_ACT_BF16);
    bt_gemm_call gi = bt_gemm_plan_dinp((float *)diG.data(), pD, pW, N, C, OC, L, BT_ACT_BF16);
    bt_gemm_call gw = bt_gemm_plan_dw(dwG.data(), pD, pI, N, C, OC, L, BT_ACT_BF16);
    bool bTypes = gf.bAB16 && gf.bD16 && gi.bAB16 && gi.bD16 && gw.bAB16 && !gw.bD16;
    printf("%-5s gemm plan bf16 element types (out, dinp bf16; dw fp32)\n", bTypes ? "ok" : "FAIL");
    bTypes ? nPass++ : nFail++;
    if (!bFb) {
      ref_gemm(gf), ref_gemm(gi), ref_gemm(gw);
    } else { /* launch as cuda_gemm.cu gemm_fallback */
      auto *f16 = bt_k_gemm_fallback<bf16, bf16>;
      auto *f32 = bt_k_gemm_fallback<bf16, float>;
      for (const bt_gemm_call *g : {&gf, &gi, &gw}) {
        dim3 grid((g->n + BT_FB_TILE - 1) / BT_FB_TILE, (g->m + BT_FB_TILE - 1) / BT_FB_TILE);
        if (g->bD16)
          launch(f16, grid, dim3(BT_FB_TILE, BT_FB_TILE), 0, (bf16 *)g->D, (const bf16 *)g->A,
                 (const bf16 *)g->B, (const bf16 *)g->bias, g->m, g->n, g->k, g->lda, g->ldb, g->ldd, g->bTransA,
                 g->bTransB, g->beta);
        else
          launch(f32, grid, dim3(BT_FB_TILE, BT_FB_TILE), 0, g->D, (const bf16 *)g->A, (const bf16 *)g->B,
                 (const bf16 *)g->bias, g->m, g->n, g->k, g->lda, g->ldb, g->ldd, g->bTransA, g->bTransB, g->beta);
      }
    }
    const char *zW = bFb ? "fallback gemm" : "gemm plan";
    snprintf(z, sizeof z, "%s fwd bf16 %dx%dx%d %s", zW, N, C, OC, zL); check(z, from16(oG), oC, BF16_TOL);
    snprintf(z, sizeof z, "%s dinp bf16 %dx%dx%d %s", zW, N, C, OC, zL); check(z, from16(diG), diC, BF16_TOL);
    snprintf(z, sizeof z, "%s dw (fp32) bf16 %dx%dx%d %s", zW, N, C, OC, zL); check(z, dwG, dwC, 1e-5);
  }
}

/* ---- the fused kernels of cuda_fused.cu ------------------------------
 * Launched as bt_cuda_residual_layernorm_fwd / bt_cuda_xent_fwd_bwd launch
 * them. E: 16-byte packs when the wrapper's bt_fz_vec would take them
 * (every pointer 16-byte aligned, C a whole number of packs), else 1; a
 * case asks for E and fails if the vectors it got cannot use it, so both
 * paths are covered. fp32 against the CPU pair residual_fwd +
 * layernorm_fwd (the fused CPU op has the same bits), bf16 against the
 * CPU backend in bf16 mode (its layernorm reads the rounded sum, as the
 * kernel does). */
/* bf16 outputs of the fused kernels vs the CPU in bf16 mode: the kernel
 * and the CPU round the same fp32 formula and differ only where their
 * fp32 values (float vs double statistics) straddle a bf16 rounding
 * boundary, by one bf16 ulp (2^-8 relative) each; a fraction f of such
 * elements gives relerr ~2^-8 sqrt(f), so 5e-4 admits f < 1.6% (measured:
 * 0). A layernorm fed the unrounded sum (a mutation tried) gives 9e-4. */
#define FZ_BF16_TOL 5e-4

static int fz_pack(size_t nElem, int C, std::initializer_list<const void *> ap) {
  int E = (int)(16 / nElem);
  if (C % E) return 1;
  for (const void *p : ap)
    if ((uintptr_t)p % 16) return 1;
  return E;
}

static void t_residual_ln(int N, int C, int bVec) {
  char z[128];
  size_t n = (size_t)N * C;
  auto a = rnd(n, -1, 1), b = rnd(n, -0.5f, 0.5f);
  for (int r = 0; r < N; r++)
    for (int k = 0; k < C; k++) a[(size_t)r * C + k] += 0.25f * (r % 7);
  auto w = rnd(C, 0.5f, 1.5f), bias = rnd(C, -0.5f, 0.5f);
  std::vector<float> rC(n), oC(n), mC(N), sC(N);
  bt_op_residual_fwd(cpu, rC.data(), a.data(), b.data(), n);
  bt_op_layernorm_fwd(cpu, oC.data(), mC.data(), sC.data(), rC.data(), w.data(), bias.data(), N, C);
  auto rG = nanv(n), oG = nanv(n), mG = nanv(N), sG = nanv(N);
  int E = bVec ? fz_pack(sizeof(float), C, {rG.data(), oG.data(), a.data(), b.data(), w.data(), bias.data()}) : 1;
  if (bVec && E == 1) {
    printf("FAIL  residual_ln N=%d C=%d: the buffers do not allow 16-byte packs\n", N, C);
    nFail++;
  }
  launch(bt_k_residual_ln_fwd<float>, dim3((N + FZ_LN_WARPS - 1) / FZ_LN_WARPS), dim3(32 * FZ_LN_WARPS), 0,
         rG.data(), oG.data(), mG.data(), sG.data(), (const float *)a.data(), (const float *)b.data(),
         (const float *)w.data(), (const float *)bias.data(), N, C, E);
  snprintf(z, sizeof z, "residual_ln fwd res N=%d C=%d E=%d", N, C, E); check(z, rG, rC, 1e-6);
  snprintf(z, sizeof z, "residual_ln fwd ln N=%d C=%d E=%d", N, C, E); check(z, oG, oC, 1e-5);
  snprintf(z, sizeof z, "residual_ln fwd mean N=%d C=%d E=%d", N, C, E); check(z, mG, mC, 1e-5);
  snprintf(z, sizeof z, "residual_ln fwd rstd N=%d C=%d E=%d", N, C, E); check(z, sG, sC, 1e-5);
  /* bf16 storage */
  auto a16 = round16(a), b16 = round16(b), w16 = round16(w), bi16 = round16(bias);
  std::vector<float> rC16(n), oC16(n), mC16(N), sC16(N);
  bt_op_residual_layernorm_fwd(cpu16, rC16.data(), oC16.data(), mC16.data(), sC16.data(), a16.data(),
                               b16.data(), w16.data(), bi16.data(), N, C);
  auto ha = to16(a16), hb = to16(b16), hw = to16(w16), hbi = to16(bi16);
  auto rH = nan16(n), oH = nan16(n);
  auto mH = nanv(N), sH = nanv(N);
  int E16 = bVec ? fz_pack(2, C, {rH.data(), oH.data(), ha.data(), hb.data(), hw.data(), hbi.data()}) : 1;
  if (bVec && E16 == 1) {
    printf("FAIL  residual_ln bf16 N=%d C=%d: the buffers do not allow 16-byte packs\n", N, C);
    nFail++;
  }
  launch(bt_k_residual_ln_fwd<__nv_bfloat16>, dim3((N + FZ_LN_WARPS - 1) / FZ_LN_WARPS), dim3(32 * FZ_LN_WARPS), 0,
         rH.data(), oH.data(), mH.data(), sH.data(), (const __nv_bfloat16 *)ha.data(),
         (const __nv_bfloat16 *)hb.data(), (const __nv_bfloat16 *)hw.data(), (const __nv_bfloat16 *)hbi.data(),
         N, C, E16);
  /* the sum is one fp32 add rounded once on both sides: exact */
  snprintf(z, sizeof z, "residual_ln fwd bf16 res N=%d C=%d E=%d", N, C, E16); check(z, from16(rH), rC16, 0.0);
  snprintf(z, sizeof z, "residual_ln fwd bf16 ln N=%d C=%d E=%d", N, C, E16); check(z, from16(oH), oC16, FZ_BF16_TOL);
  snprintf(z, sizeof z, "residual_ln fwd bf16 mean N=%d C=%d", N, C); check(z, mH, mC16, 1e-5);
  snprintf(z, sizeof z, "residual_ln fwd bf16 rstd N=%d C=%d", N, C); check(z, sH, sC16, 1e-5);
}

static void t_xent_fwd_bwd(int N, int V, int Vp) {
  char z[128];
  auto x = rnd((size_t)N * Vp, -4, 4);
  for (int r = 0; r < N; r++) for (int v = V; v < Vp; v++) x[(size_t)r * Vp + v] = 1e4f;
  std::vector<int32_t> t(N);
  for (int r = 0; r < N; r++) t[r] = (r * 7 + 3) % V;
  t[0] = V - 1;
  if (N > 2) t[2] = -1;
  std::vector<float> lC(N), dC((size_t)N * Vp);
  bt_op_xent_fwd(cpu, lC.data(), x.data(), t.data(), N, V, Vp);
  bt_op_xent_bwd(cpu, dC.data(), x.data(), t.data(), 0.5f, N, V, Vp);
  auto lG = nanv(N);
  auto xG = x;
  launch(bt_k_xent_fwd_bwd<float>, dim3(N), dim3(FZ_XENT_THREADS), 0, lG.data(), xG.data(),
         (const int32_t *)t.data(), 0.5f, V, Vp);
  snprintf(z, sizeof z, "xent_fwd_bwd loss N=%d V=%d Vp=%d", N, V, Vp); check(z, lG, lC, 1e-5);
  snprintf(z, sizeof z, "xent_fwd_bwd dlogits N=%d V=%d Vp=%d", N, V, Vp); check(z, xG, dC, 1e-5);
  /* bf16 logits, in place */
  auto x16 = round16(x);
  std::vector<float> lC16(N);
  auto dC16 = x16;
  bt_op_xent_fwd_bwd(cpu16, lC16.data(), dC16.data(), t.data(), 0.5f, N, V, Vp);
  auto h = to16(x16);
  auto lH = nanv(N);
  launch(bt_k_xent_fwd_bwd<__nv_bfloat16>, dim3(N), dim3(FZ_XENT_THREADS), 0, lH.data(), h.data(),
         (const int32_t *)t.data(), 0.5f, V, Vp);
  snprintf(z, sizeof z, "xent_fwd_bwd bf16 loss N=%d V=%d Vp=%d", N, V, Vp); check(z, lH, lC16, 1e-5);
  snprintf(z, sizeof z, "xent_fwd_bwd bf16 dlogits N=%d V=%d Vp=%d", N, V, Vp);
  check(z, from16(h), dC16, FZ_BF16_TOL);
}

/* The flash attention kernels in bf16 storage: the fallback of bf16 mode
 * where cuDNN's fused attention is unavailable (cuda_attention.cu).
 *   - Forward, against the same kernels in fp32 on the same (bf16-exact)
 *     inputs: bt_ld gives the same floats, so everything up to the store
 *     is the same fp32 arithmetic; lse must be bit-identical and out the
 *     bf16 rounding of the fp32 out, bit for bit.
 *   - Forward and backward against the CPU backend in bf16 mode. out: one
 *     bf16 step (BF16_TOL), as for every [act] output. dqkv: the kernel
 *     takes D = rowsum(dO * O) from the bf16-stored O, where the CPU sums
 *     P * dP in fp32; O's rounding (relative <= 2^-9, RMS 2^-9/sqrt(3) =
 *     1.1e-3 per element) moves D by at most that fraction of
 *     sum_d |dO_d O_d|, and dS = P (dP - D) carries it into dQ and dK: an
 *     RMS error of order 1.1e-3 of the gradient where |dP - D| is of the
 *     size of |dO||O|, plus the output rounding (another 1.1e-3): limit
 *     BF16_ATT_TOL = 1e-2 (~6x margin), while a wrong index or a missing
 *     term is O(1). dqkv starts as NaN: every element must be written. */
#define BF16_ATT_TOL 1e-2
static void t_attention_bf16(int B, int T, int C, int NH) {
  char z[128];
  const int hs = C / NH;
  const size_t nOut = (size_t)B * T * C, nLse = (size_t)B * NH * T;
  auto qkv = round16(rnd(3 * nOut, -1.5f, 1.5f));
  auto dout = round16(rnd(nOut, -1, 1));
  auto dq0 = rnd(3 * nOut, -1, 1); /* junk on the CPU side */
  std::vector<float> outC(nOut), attC(bt_op_attention_att_size(cpu16, B, T, NH)),
      scrC(bt_op_attention_scratch_size(cpu16, B, T, NH)), dqC = dq0;
  bt_op_attention_fwd(cpu16, outC.data(), attC.data(), qkv.data(), B, T, C, NH);
  bt_op_attention_bwd(cpu16, dqC.data(), scrC.data(), dout.data(), qkv.data(), outC.data(), attC.data(), B,
                      T, C, NH);
  const float scale = 1.0f / sqrtf((float)hs);
  dim3 grid((T + FA_BR - 1) / FA_BR, B * NH), gk((T + FA_BC - 1) / FA_BC, B * NH);
  /* fp32 kernels on the same values */
  auto outF = nanv(nOut), lseF = nanv(nLse);
  launch(bt_k_flash_fwd<float>, grid, dim3(32 * FA_WARPS), fa_fwd_smem(hs) * 4, outF.data(), lseF.data(),
         (const float *)qkv.data(), (const int32_t *)nullptr, 1, T, C, NH, hs, scale);
  /* bf16 kernels */
  auto qkv16 = to16(qkv), dout16 = to16(dout), out16 = nan16(nOut), dq16 = nan16(3 * nOut);
  auto lse = nanv(nLse), D = nanv(nLse);
  launch(bt_k_flash_fwd<__nv_bfloat16>, grid, dim3(32 * FA_WARPS), fa_fwd_smem(hs) * 4, out16.data(),
         lse.data(), (const __nv_bfloat16 *)qkv16.data(), (const int32_t *)nullptr, 1, T, C, NH, hs, scale);
  launch(bt_k_flash_bwd_dq<__nv_bfloat16>, grid, dim3(32 * FA_WARPS), fa_dq_smem(hs) * 4, dq16.data(),
         D.data(), (const __nv_bfloat16 *)dout16.data(), (const __nv_bfloat16 *)out16.data(),
         (const __nv_bfloat16 *)qkv16.data(), (const float *)lse.data(), (const int32_t *)nullptr, 1, T, C,
         NH, hs, scale);
  launch(bt_k_flash_bwd_dkv<__nv_bfloat16>, gk, dim3(32 * FA_WARPS), fa_dkv_smem(hs) * 4, dq16.data(),
         (const float *)D.data(), (const __nv_bfloat16 *)dout16.data(), (const __nv_bfloat16 *)qkv16.data(),
         (const float *)lse.data(), (const int32_t *)nullptr, 1, T, C, NH, hs, scale);
  const bool bLse = memcmp(lse.data(), lseF.data(), nLse * sizeof(float)) == 0;
  const bool bOut = from16(out16) == round16(outF);
  snprintf(z, sizeof z, "flash bf16 vs fp32 B=%d T=%d C=%d NH=%d", B, T, C, NH);
  printf("%-5s %-50s lse %s, out %s\n", bLse && bOut ? "ok" : "FAIL", z,
         bLse ? "identical" : "DIFFERS", bOut ? "= round(fp32 out)" : "DIFFERS");
  (bLse && bOut) ? nPass++ : nFail++;
  snprintf(z, sizeof z, "flash fwd bf16 B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check(z, from16(out16), outC, BF16_TOL);
  snprintf(z, sizeof z, "flash bwd bf16 B=%d T=%d C=%d NH=%d", B, T, C, NH);
  check(z, from16(dq16), dqC, BF16_ATT_TOL);
}

static void t_misc(size_t n) {
  auto a = rnd(n, -4, 4), b = rnd(n, -1, 1), d0 = rnd(n, -1, 1);
  std::vector<float> oC(n); auto oG = nanv(n);
  bt_op_gelu_fwd(cpu, oC.data(), a.data(), n);
  launch(bt_k_gelu_fwd<float>, dim3(grid_of(n, 256)), dim3(256), 0, oG.data(), (const float *)a.data(), n, (size_t)0);
  check("gelu fwd", oG, oC, 1e-5);
  auto dC = d0, dG = d0;
  bt_op_gelu_bwd(cpu, dC.data(), a.data(), b.data(), n);
  launch(bt_k_gelu_bwd<float>, dim3(grid_of(n, 256)), dim3(256), 0, dG.data(), (const float *)a.data(), (const float *)b.data(), n, (size_t)0);
  check("gelu bwd", dG, dC, 1e-5);
  t_gelu_bf16(n);
  auto p0 = rnd(n, -1, 1), m0 = rnd(n, -.1f, .1f), v0 = rnd(n, 0, .01f);
  auto pC = p0, mC = m0, vC = v0, pG = p0, mG = m0, vG = v0;
  bt_adamw_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3};
  bt_op_adamw(cpu, pC.data(), b.data(), mC.data(), vC.data(), n, &hp);
  float bc1 = 1.0f - powf(hp.beta1, (float)hp.t), bc2 = 1.0f - powf(hp.beta2, (float)hp.t);
  launch(bt_k_adamw, dim3(grid_of(n, 256)), dim3(256), 0, pG.data(), (const float *)b.data(), mG.data(), vG.data(), n,
         hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.grad_scale, bc1, bc2);
  check("adamw p", pG, pC, 1e-6); check("adamw m", mG, mC, 1e-6); check("adamw v", vG, vC, 1e-6);
  double r = bt_op_sumsq(cpu, a.data(), n);
  std::vector<double> part(BT_CUDA_SUMSQ_BLOCKS + 1, NAN);
  launch(bt_k_sumsq_part, dim3(BT_CUDA_SUMSQ_BLOCKS), dim3(BT_CUDA_SUMSQ_THREADS), 0, part.data(), (const float *)a.data(), n);
  launch(bt_k_sumsq_final, dim3(1), dim3(BT_CUDA_SUMSQ_BLOCKS), 0, part.data());
  double g = part[BT_CUDA_SUMSQ_BLOCKS];
  bool ok = fabs(g - r) / r < 1e-10;
  printf("%-5s %-50s %.17g vs %.17g\n", ok ? "ok" : "FAIL", "sumsq", g, r);
  ok ? nPass++ : nFail++;
}

/* residual fwd/bwd, scale and the in-place add, launched as cuda_ops.cu /
 * cuda_gemm.cu launch them (bt_cuda_grid(n, 256) blocks of 256). */
static void t_elementwise(size_t n) {
  char z[128];
  auto a = rnd(n, -1, 1), b = rnd(n, -1, 1), d = rnd(n, -1, 1);
  const dim3 g(grid_of(n, 256)), blk(256);
  std::vector<float> oC(n);
  auto oG = nanv(n);
  bt_op_residual_fwd(cpu, oC.data(), a.data(), b.data(), n);
  launch(bt_k_residual_fwd<float>, g, blk, 0, oG.data(), (const float *)a.data(), (const float *)b.data(), n, (size_t)0);
  snprintf(z, sizeof z, "residual fwd n=%zu", n); check(z, oG, oC, 1e-6);
  auto daC = a, dbC = b, daG = a, dbG = b;
  bt_op_residual_bwd(cpu, daC.data(), dbC.data(), d.data(), n);
  launch(bt_k_residual_bwd<float>, g, blk, 0, daG.data(), dbG.data(), (const float *)d.data(), n, (size_t)0);
  snprintf(z, sizeof z, "residual bwd da n=%zu", n); check(z, daG, daC, 1e-6);
  snprintf(z, sizeof z, "residual bwd db n=%zu", n); check(z, dbG, dbC, 1e-6);
  auto sC = a, sG = a; /* da == db: both updates land, 2 * dout */
  bt_op_residual_bwd(cpu, sC.data(), sC.data(), d.data(), n);
  launch(bt_k_residual_bwd<float>, g, blk, 0, sG.data(), sG.data(), (const float *)d.data(), n, (size_t)0);
  snprintf(z, sizeof z, "residual bwd da == db n=%zu", n); check(z, sG, sC, 1e-6);
  auto xC = a, xG = a;
  bt_op_scale(cpu, xC.data(), 0.37f, n);
  launch(bt_k_scale, g, blk, 0, xG.data(), 0.37f, n);
  snprintf(z, sizeof z, "scale n=%zu", n); check(z, xG, xC, 1e-6);
  /* bias_bwd's dinp += dout: the CPU bias_bwd with dbias = NULL */
  auto iC = a, iG = a;
  bt_op_bias_bwd(cpu, iC.data(), NULL, d.data(), 1, (int)n);
  launch(bt_k_add_inplace<float>, g, blk, 0, iG.data(), (const float *)d.data(), n, (size_t)0);
  snprintf(z, sizeof z, "add_inplace (bias_bwd dinp) n=%zu", n); check(z, iG, iC, 1e-6);
}

/* The step-statistics kernels of cuda_step.cu (issue 12 item 4), launched
 * as their wrappers launch them, against the CPU ops: sumsq_acc and
 * loss_sum_acc add to an accumulator that already holds a value (1.5),
 * so a kernel that overwrites instead of adding fails; clip_grads with a
 * norm above the limit (scaled, bit for bit the CPU product), below it
 * and NaN (untouched). */
static void t_step(size_t n) {
  char z[128];
  auto x = rnd(n, -2, 2), l = rnd(n, 0, 5);
  std::vector<int32_t> tgt(n);
  for (size_t i = 0; i < n; i++) tgt[i] = (i % 7 == 3) ? -1 : (int32_t)(i % 50);
  double accC = 1.5, accG = 1.5;
  bt_op_sumsq_acc(cpu, &accC, x.data(), n);
  std::vector<double> part(BT_CUDA_SUMSQ_BLOCKS + 1, NAN);
  launch(bt_k_sumsq_acc_part, dim3(BT_CUDA_SUMSQ_BLOCKS), dim3(BT_CUDA_SUMSQ_THREADS), 0, part.data(), (const float *)x.data(), n);
  launch(bt_k_sumsq_acc_final, dim3(1), dim3(BT_CUDA_SUMSQ_BLOCKS), 0, &accG, (const double *)part.data());
  bool ok = fabs(accG - accC) / accC < 1e-10;
  snprintf(z, sizeof z, "sumsq_acc n=%zu", n);
  printf("%-5s %-50s %.17g vs %.17g\n", ok ? "ok" : "FAIL", z, accG, accC);
  ok ? nPass++ : nFail++;
  accC = 1.5, accG = 1.5;
  bt_op_loss_sum_acc(cpu, &accC, l.data(), tgt.data(), n);
  launch(bt_k_loss_sum_acc, dim3(1), dim3(STEP_LOSS_THREADS), 0, &accG, (const float *)l.data(), (const int32_t *)tgt.data(), n);
  ok = fabs(accG - accC) / accC < 1e-12;
  snprintf(z, sizeof z, "loss_sum_acc n=%zu (every 7th row ignored)", n);
  printf("%-5s %-50s %.17g vs %.17g\n", ok ? "ok" : "FAIL", z, accG, accC);
  ok ? nPass++ : nFail++;
  const double aSumsq[] = {400.0, 0.25, NAN}; /* norm 20 > 1.5; 0.5 < 1.5 */
  for (double ss : aSumsq) {
    auto gC = x, gG = x;
    bt_op_clip_grads(cpu, gC.data(), n, &ss, 1.5);
    launch(bt_k_clip_grads, dim3(grid_of(n, 256)), dim3(256), 0, gG.data(), n, (const double *)&ss, 1.5);
    int nBad = 0;
    for (size_t i = 0; i < n; i++) nBad += memcmp(&gG[i], &gC[i], sizeof(float)) != 0;
    bool moved = memcmp(gC.data(), x.data(), n * sizeof(float)) != 0;
    ok = nBad == 0 && moved == (ss == 400.0);
    snprintf(z, sizeof z, "clip_grads n=%zu sumsq=%g limit 1.5", n, ss);
    printf("%-5s %-50s %d differ from the CPU, %s\n", ok ? "ok" : "FAIL", z, nBad, moved ? "scaled" : "untouched");
    ok ? nPass++ : nFail++;
  }
}

/* bt_k_to_bf16 against values rounded by hand: bf16 keeps the top 16 bits
 * of the fp32 pattern, rounding the low 16 to nearest, ties to even. */
static void t_bf16() {
  const uint32_t aIn[] = {
      0x3f800000u, /* 1.0 exact */
      0x3f808000u, /* 1 + 2^-8: tie, even below -> 0x3f80 */
      0x3f818000u, /* tie, odd below -> up to 0x3f82 */
      0x3f808001u, /* just above the tie -> 0x3f81 */
      0xbf80ffffu, /* -(1 + ...) rounds up in magnitude -> 0xbf81 */
      0x7f7fffffu, /* FLT_MAX overflows to +inf */
      0x7fc00001u, /* NaN stays NaN */
      0x00000001u, /* smallest denormal rounds to +0 */
  };
  const uint16_t aWant[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xbf81, 0x7f80, 0x7fc0, 0x0000};
  const size_t n = sizeof aIn / sizeof aIn[0];
  std::vector<float> x(n);
  memcpy(x.data(), aIn, sizeof aIn);
  std::vector<__nv_bfloat16> y(n, __nv_bfloat16{0xffff});
  launch(bt_k_to_bf16, dim3(1), dim3(256), 0, y.data(), (const float *)x.data(), n);
  int nBad = 0;
  for (size_t i = 0; i < n; i++)
    if (y[i].bits != aWant[i]) {
      printf("      to_bf16(0x%08x) = 0x%04x, want 0x%04x\n", aIn[i], y[i].bits, aWant[i]);
      nBad++;
    }
  printf("%-5s %-50s %d of %zu wrong\n", nBad ? "FAIL" : "ok", "to_bf16 rounding", nBad, n);
  nBad ? nFail++ : nPass++;
}

/* attention_decode: one block per head, DEC_THREADS threads (as
 * bt_cuda_attention_decode launches it); scratch poisoned with NaN. */
static void t_attention_decode(int nPos, int C, int NH) {
  char z[128];
  int hs = C / NH;
  auto q = rnd(C, -1.5f, 1.5f), k = rnd((size_t)nPos * C, -1.5f, 1.5f), v = rnd((size_t)nPos * C, -1, 1);
  std::vector<float> oC(C), sC((size_t)NH * nPos);
  bt_op_attention_decode(cpu, oC.data(), sC.data(), q.data(), k.data(), v.data(), nPos, C, NH);
  auto oG = nanv(C), sG = nanv((size_t)NH * nPos);
  launch(bt_k_attn_decode, dim3(NH), dim3(DEC_THREADS), 0, oG.data(), sG.data(), (const float *)q.data(),
         (const float *)k.data(), (const float *)v.data(), nPos, C, hs, 1.0f / sqrtf((float)hs));
  snprintf(z, sizeof z, "attention_decode nPos=%d C=%d NH=%d", nPos, C, NH);
  check(z, oG, oC, 1e-5);
}

/* Kernels with a case above; --list-missing compares it with kern.inc's. */
static const char *aCovered[] = {
    "bt_k_flash_fwd", "bt_k_flash_bwd_dq", "bt_k_flash_bwd_dkv",
    "bt_k_attn_decode", "bt_k_ref_fwd", "bt_k_ref_bwd_rows",
    "bt_k_ref_bwd_cols", "bt_k_to_bf16", "bt_k_add_bias_cm",
    "bt_k_gemm_fallback", "bt_k_bias_fwd", "bt_k_add_inplace", "bt_k_to_act",
    "bt_k_colsum_part", "bt_k_colsum_final", "bt_k_embed_fwd",
    "bt_k_embed_dwpe", "bt_k_embed_dwte", "bt_k_embed_keys", "bt_k_sort_step",
    "bt_k_sort_local", "bt_k_ln_fwd", "bt_k_ln_bwd_dinp",
    "bt_k_ln_dwdb_part", "bt_k_ln_dwdb_final", "bt_k_gelu_fwd",
    "bt_k_gelu_bwd", "bt_k_residual_fwd", "bt_k_residual_bwd",
    "bt_k_xent_fwd", "bt_k_xent_bwd", "bt_k_adamw", "bt_k_sumsq_part",
    "bt_k_sumsq_final", "bt_k_scale", "bt_k_ctc_logsoftmax", "bt_k_ctc_alpha",
    "bt_k_ctc_beta", "bt_k_ctc_grad", "bt_k_residual_ln_fwd",
    "bt_k_xent_fwd_bwd", "bt_k_sumsq_acc_part",
    "bt_k_sumsq_acc_final", "bt_k_loss_sum_acc", "bt_k_clip_grads"};

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--list-covered")) {
    for (const char *z : aCovered) printf("%s\n", z);
    return 0;
  }
  const char *zSeed = getenv("BT_EMU_SEED");
  uint64_t seed = zSeed ? strtoull(zSeed, NULL, 10) : 1;
  emu_seed(seed);
  /* As bt_cuda_attention_init: the flash kernels opt in to the shared
   * memory their largest head size needs. */
  emu_func_set_max_dyn_smem(bt_k_flash_fwd<float>, fa_fwd_smem(FA_HS_MAX) * sizeof(float));
  emu_func_set_max_dyn_smem(bt_k_flash_bwd_dq<float>, fa_dq_smem(FA_HS_MAX) * sizeof(float));
  emu_func_set_max_dyn_smem(bt_k_flash_bwd_dkv<float>, fa_dkv_smem(FA_HS_MAX) * sizeof(float));
  emu_func_set_max_dyn_smem(bt_k_flash_fwd<__nv_bfloat16>, fa_fwd_smem(FA_HS_MAX) * sizeof(float));
  emu_func_set_max_dyn_smem(bt_k_flash_bwd_dq<__nv_bfloat16>, fa_dq_smem(FA_HS_MAX) * sizeof(float));
  emu_func_set_max_dyn_smem(bt_k_flash_bwd_dkv<__nv_bfloat16>, fa_dkv_smem(FA_HS_MAX) * sizeof(float));
  cpu = bt_backend_create(BT_BACKEND_CPU, 0, 0);
  cpu16 = bt_backend_create(BT_BACKEND_CPU, 0, 0);
  if (cpu16 && bt_backend_set_act_dtype(cpu16, BT_ACT_BF16) != BT_OK) {
    bt_backend_free(cpu16);
    cpu16 = NULL;
  }
  if (!cpu || !cpu16) {
    fprintf(stderr, "test_gpu_emu: %s\n", bt_err_msg());
    return 1;
  }
  printf("CUDA kernels in the CPU SIMT emulator vs the CPU backend "
         "(BT_EMU_SEED=%llu)\n", (unsigned long long)seed);
  t_attention(1, 7, 6, 3);
  t_attention(1, 1, 8, 2);
  t_attention(2, 40, 128, 2); /* b > 0, two tiles */
  t_attention(1, 70, 64, 1);  /* three tiles, hs = 64 */
  t_attention(1, 45, 96, 2);
  t_attention(1, 33, 256, 2);
  /* the speech encoder's mask: keys past keyLen[b], padded query rows */
  t_attention(2, 40, 64, 2, 0, {40, 23});
  t_attention(3, 70, 64, 2, 0, {1, 70, 37}); /* 1 key; a full row */
  t_attention(2, 45, 32, 1, 1, {45, 17});    /* causal + lengths */
  t_attention(1, 33, 32, 2, 0);              /* no mask at all */
  t_attention_decode(1, 8, 2);    /* one position: out = v[0] */
  t_attention_decode(7, 6, 3);    /* hs = 2 */
  t_attention_decode(300, 128, 2); /* positions > threads: strided */
  t_attention_decode(45, 320, 2); /* hs = 160 > threads: strided dims */
  t_gemm_plans(7, 5, 6, BT_W_IN_OUT);
  t_gemm_plans(7, 5, 6, BT_W_OUT_IN);
  t_gemm_plans(37, 70, 67, BT_W_IN_OUT);
  t_gemm_plans(37, 70, 67, BT_W_OUT_IN);
  t_layernorm(5, 9);
  t_layernorm(300, 100);
  t_bias(5, 7);
  t_bias(300, 70);
  t_xent(7, 5, 8);
  t_ctc(4, 50, 29, 12);
  t_ctc(3, 300, 40, 140); /* 281 states > 256 threads: strided */
  t_xent(9, 300, 320);
  t_embed(2, 7, 5, 4);
  t_embed(3, 17, 40, 29);
  t_embed(3, 700, 4, 50); /* 2100 keys: nPad 4096, the global sort stages */
  t_embed_bad_token();
  t_misc(1003);
  t_elementwise(1003);
  t_elementwise(70000); /* grid-stride: more elements than one pass */
  t_bf16();
  t_ew_act<float>(1003, 0);
  t_ew_act<float>(1003, 1);
  t_ew_act<__nv_bfloat16>(1003, 0);
  t_ew_act<__nv_bfloat16>(1003, 1);
  t_ew_act<__nv_bfloat16>(70000, 0);
  t_bias_act<float>(300, 70, 0);
  t_bias_act<__nv_bfloat16>(300, 70, 0);
  t_bias_act<__nv_bfloat16>(5, 7, 1);
  t_embed_bf16(3, 17, 40, 29);
  t_embed_bf16(3, 700, 4, 50);
  t_layernorm_bf16(5, 9);
  t_layernorm_bf16(300, 100);
  t_layernorm_bf16(37, 264); /* C % 8 == 0: the vector path, 1+ steps */
  t_xent_bf16(7, 5, 8);
  t_xent_bf16(9, 300, 320);
  t_xent_bf16(5, 2051, 2056); /* vector path over > 256 x 8 columns */
  t_gemm_plans_bf16(7, 5, 6, BT_W_IN_OUT);
  t_gemm_plans_bf16(37, 70, 67, BT_W_IN_OUT);
  t_gemm_plans_bf16(37, 70, 67, BT_W_OUT_IN);
  t_residual_ln(5, 9, 0);    /* scalar: C not a whole number of packs */
  t_residual_ln(37, 128, 1); /* 16-byte packs, C = 4 packs per lane step */
  t_residual_ln(9, 96, 0);   /* scalar on aligned rows */
  t_xent_fwd_bwd(7, 5, 8);
  t_xent_fwd_bwd(9, 300, 320); /* columns > threads: strided */
  t_step(1003);
  t_step(300001); /* loss rows > threads, sumsq grid-stride over 2 passes */
  t_attention_bf16(1, 7, 16, 2);   /* one tile, hs = 8 */
  t_attention_bf16(2, 45, 128, 2); /* b > 0, two tiles, hs = 64 */
  bt_backend_free(cpu16);
  bt_backend_free(cpu);
  printf("%d passed, %d failed, %d failed launches\n", nPass, nFail, emu_nFail);
  return (nFail == 0 && emu_nFail == 0 && nPass > 0) ? 0 : 1;
}
