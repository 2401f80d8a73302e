/*
 * cuda_speech.cu: the speech model's ops on the GPU (issue 15): conv1d
 * through cuDNN (baton's first use of it), and the CTC loss as kernels of
 * our own. Masked attention lives with the flash kernels
 * (cuda_attention.cu). Contracts in kernels/ops.def.
 *
 * conv1d: our activations are channels last, [B, T, C]. cuDNN's legacy
 * convolution API describes a tensor by (n, c, h, w) dims and arbitrary
 * strides (cudnnSetTensor4dDescriptorEx), so [B, T, C] is the 4-D tensor
 * n = B, c = C, h = 1, w = T with strides (T*C, 1, T*C, C): no transpose.
 * The filter [Cout, Cin, K] is torch's layout, i.e. cuDNN's NCHW filter
 * (k = Cout, c = Cin, h = 1, w = K). Padding and stride apply along w.
 * Algorithms are fixed, not searched, and deterministic ones (cuda_common.h
 * invariant 2): forward IMPLICIT_GEMM, backward data ALGO_1, backward
 * filter ALGO_1 (ALGO_0 and ALGO_3 of the filter use atomics). Math is
 * CUDNN_FMA_MATH: fp32 FMA, never TF32, so the results stay within the
 * fp32 tolerance of the CPU reference. The workspace is the op's scratch
 * (conv1d_scratch_size asks cuDNN). The bias is added, and its gradient
 * summed, by the backend's own deterministic bias kernels.
 *
 * CTC: four kernels, no atomics, every sum in a fixed order:
 *   bt_k_ctc_logsoftmax  one block per (b, t < inLen[b]): log-probs into
 *                        scratch;
 *   bt_k_ctc_alpha       one block per utterance, threads over the 2L+1
 *                        extended states, a barrier per frame (alpha of
 *                        frame t reads frame t-1 from global scratch);
 *                        thread 0 writes the log-likelihood and the loss;
 *   bt_k_ctc_beta        the same backwards;
 *   bt_k_ctc_grad        one block per (b, t): thread per vocabulary entry
 *                        v adds dloss * (p_v - sum of the occupancies of
 *                        the states labelled v, in state order).
 * The recursions sum in double, as the CPU reference does. (No isfinite:
 * the CPU emulator compiles these kernels in a namespace without it.) Utterances
 * are short (a few hundred frames after subsampling, 2L+1 of a few
 * hundred), so one block per utterance is enough parallelism per step.
 */
#include "kernels/cuda/cuda_common.h"

#include <cudnn.h>

#define CTC_THREADS 256

#define BT_CUDNN_CHECK(call)                                                   \
  do {                                                                         \
    cudnnStatus_t s_ = (call);                                                 \
    if (s_ != CUDNN_STATUS_SUCCESS)                                            \
      bt_cuda_fatal(#call, cudnnGetErrorString(s_), __FILE__, __LINE__);       \
  } while (0)

/* ---- conv1d (cuDNN) -------------------------------------------------------- */

void bt_cuda_speech_free(bt_cuda *cu) {
  if (cu->pCudnn) cudnnDestroy((cudnnHandle_t)cu->pCudnn);
  cu->pCudnn = NULL;
}

static cudnnHandle_t conv_handle(bt_cuda *cu) {
  if (!cu->pCudnn) {
    cudnnHandle_t h;
    BT_CUDNN_CHECK(cudnnCreate(&h));
    cu->pCudnn = h;
  }
  BT_CUDNN_CHECK(cudnnSetStream((cudnnHandle_t)cu->pCudnn, cu->stream));
  return (cudnnHandle_t)cu->pCudnn;
}

/* The four descriptors of one conv1d call. */
typedef struct ConvDesc {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  int To;
} ConvDesc;

static void conv_desc_init(ConvDesc *d, int B, int T, int Cin, int Cout,
                           int K, int S, int P) {
  BT_ASSERT(B > 0 && T > 0 && Cin > 0 && Cout > 0 && K > 0 && S > 0 &&
            P >= 0);
  d->To = (T + 2 * P - K) / S + 1;
  BT_ASSERT(d->To >= 1);
  BT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x));
  BT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->y));
  BT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d->w));
  BT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d->conv));
  BT_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d->x, CUDNN_DATA_FLOAT, B, Cin,
                                              1, T, T * Cin, 1, T * Cin, Cin));
  BT_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d->y, CUDNN_DATA_FLOAT, B, Cout,
                                              1, d->To, d->To * Cout, 1,
                                              d->To * Cout, Cout));
  BT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT,
                                            CUDNN_TENSOR_NCHW, Cout, Cin, 1,
                                            K));
  BT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      d->conv, 0, P, 1, S, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  BT_CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv, CUDNN_FMA_MATH));
}

static void conv_desc_free(ConvDesc *d) {
  cudnnDestroyTensorDescriptor(d->x);
  cudnnDestroyTensorDescriptor(d->y);
  cudnnDestroyFilterDescriptor(d->w);
  cudnnDestroyConvolutionDescriptor(d->conv);
}

#define CONV_FWD_ALGO CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM
#define CONV_BWD_DATA_ALGO CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
#define CONV_BWD_FILTER_ALGO CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1

size_t bt_cuda_conv1d_scratch_size(bt_backend *be, int B, int T, int Cin,
                                   int Cout, int K, int S, int P) {
  if (B <= 0 || T <= 0) return 1;
  cudnnHandle_t h = conv_handle(bt_cuda_of(be));
  ConvDesc d;
  conv_desc_init(&d, B, T, Cin, Cout, K, S, P);
  size_t nF = 0, nD = 0, nW = 0;
  BT_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
      h, d.x, d.w, d.conv, d.y, CONV_FWD_ALGO, &nF));
  BT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
      h, d.w, d.y, d.conv, d.x, CONV_BWD_DATA_ALGO, &nD));
  BT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
      h, d.x, d.y, d.conv, d.w, CONV_BWD_FILTER_ALGO, &nW));
  conv_desc_free(&d);
  size_t n = nF > nD ? nF : nD;
  n = n > nW ? n : nW;
  return n / sizeof(float) + 1;
}

void bt_cuda_conv1d_fwd(bt_backend *be, float *out, float *scratch,
                        const float *inp, const float *w, const float *bias,
                        int B, int T, int Cin, int Cout, int K, int S,
                        int P) {
  BT_CUDA_F32_ONLY(be); /* the speech model refuses train.precision = bf16 */
  if (B <= 0 || T <= 0) return;
  bt_cuda *cu = bt_cuda_of(be);
  cudnnHandle_t h = conv_handle(cu);
  ConvDesc d;
  conv_desc_init(&d, B, T, Cin, Cout, K, S, P);
  size_t nWs = 0;
  BT_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
      h, d.x, d.w, d.conv, d.y, CONV_FWD_ALGO, &nWs));
  const float one = 1.0f, zero = 0.0f;
  BT_CUDNN_CHECK(cudnnConvolutionForward(h, &one, d.x, inp, d.w, w, d.conv,
                                         CONV_FWD_ALGO, scratch, nWs, &zero,
                                         d.y, out));
  if (bias) bt_cuda_bias_fwd(be, out, out, bias, B * d.To, Cout);
  conv_desc_free(&d);
}

/* beta = 1: cuDNN adds into dinp and dw, the accumulate convention. */
void bt_cuda_conv1d_bwd(bt_backend *be, float *dinp, float *dw, float *dbias,
                        float *scratch, const float *dout, const float *inp,
                        const float *w, int B, int T, int Cin, int Cout, int K,
                        int S, int P) {
  BT_CUDA_F32_ONLY(be); /* the speech model refuses train.precision = bf16 */
  if (B <= 0 || T <= 0) return;
  bt_cuda *cu = bt_cuda_of(be);
  cudnnHandle_t h = conv_handle(cu);
  ConvDesc d;
  conv_desc_init(&d, B, T, Cin, Cout, K, S, P);
  const float one = 1.0f;
  size_t nWs = 0;
  if (dinp) {
    BT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
        h, d.w, d.y, d.conv, d.x, CONV_BWD_DATA_ALGO, &nWs));
    BT_CUDNN_CHECK(cudnnConvolutionBackwardData(
        h, &one, d.w, w, d.y, dout, d.conv, CONV_BWD_DATA_ALGO, scratch, nWs,
        &one, d.x, dinp));
  }
  if (dw) {
    BT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, d.x, d.y, d.conv, d.w, CONV_BWD_FILTER_ALGO, &nWs));
    BT_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
        h, &one, d.x, inp, d.y, dout, d.conv, CONV_BWD_FILTER_ALGO, scratch,
        nWs, &one, d.w, dw));
  }
  if (dbias) bt_cuda_bias_bwd(be, NULL, dbias, dout, B * d.To, Cout);
  conv_desc_free(&d);
}

/* ---- CTC loss -------------------------------------------------------------- */

__device__ __forceinline__ double ctc_lse2(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  const double m = a > b ? a : b;
  return m + log(exp(a - m) + exp(b - m));
}

__device__ __forceinline__ int ctc_lab_d(const int32_t *tgt, int s) {
  return (s & 1) ? tgt[s >> 1] : 0;
}

__device__ __forceinline__ int ctc_skip_d(const int32_t *tgt, int s) {
  return s >= 2 && (s & 1) && tgt[s >> 1] != tgt[(s >> 1) - 1];
}

/* lp[b,t,:] = log_softmax(logits[b,t,:]) for t < inLen[b]. The sum of
 * exponentials runs in double, like the CPU reference's, so both round
 * the same log-normaliser to the same float log-probs: alpha and beta
 * then follow identical double recursions. (Over hundreds of frames the
 * float alphas reach magnitudes of ~500, where one float ulp is 6e-5;
 * an fp32 normaliser made the two backends differ by 1.5e-5 at T = 300.)
 */
__global__ void bt_k_ctc_logsoftmax(float *lp, const float *logits,
                                    const int32_t *inLen, int T, int V) {
  __shared__ float sh[32];
  __shared__ double shd[32];
  const int b = blockIdx.y, t = blockIdx.x;
  if (t >= inLen[b]) return; /* block-uniform */
  const float *x = logits + ((size_t)b * T + t) * V;
  float mx = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x[v]);
  mx = bt_block_max(mx, sh);
  double s = 0.0;
  for (int v = threadIdx.x; v < V; v += blockDim.x)
    s += exp((double)x[v] - mx);
  s = bt_warp_sum_d(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shd[warp] = s;
  __syncthreads();
  double tot = 0.0;
  for (int w = 0; w < (int)(blockDim.x >> 5); w++) tot += shd[w];
  const double lz = mx + log(tot);
  float *o = lp + ((size_t)b * T + t) * V;
  for (int v = threadIdx.x; v < V; v += blockDim.x)
    o[v] = (float)(x[v] - lz);
}

__global__ void bt_k_ctc_alpha(float *alpha, float *ll, float *losses,
                               const float *lp, const int32_t *inLen,
                               const int32_t *targets, const int32_t *tgtLen,
                               int T, int V, int L) {
  const int b = blockIdx.x, Smax = 2 * L + 1;
  const int n = inLen[b], S = 2 * tgtLen[b] + 1;
  const int32_t *tgt = targets + (size_t)b * L;
  const float *lpb = lp + (size_t)b * T * V;
  float *a = alpha + (size_t)b * T * Smax;
  for (int s = threadIdx.x; s < S; s += blockDim.x)
    a[s] = s == 0 ? lpb[0] : (s == 1 ? lpb[ctc_lab_d(tgt, 1)] : -INFINITY);
  for (int t = 1; t < n; t++) {
    __syncthreads(); /* frame t-1 complete */
    const float *a0 = a + (size_t)(t - 1) * Smax;
    float *a1 = a + (size_t)t * Smax;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
      double x = a0[s];
      if (s >= 1) x = ctc_lse2(x, a0[s - 1]);
      if (ctc_skip_d(tgt, s)) x = ctc_lse2(x, a0[s - 2]);
      a1[s] = (float)(x + lpb[(size_t)t * V + ctc_lab_d(tgt, s)]);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const float *aN = a + (size_t)(n - 1) * Smax;
    double l = aN[S - 1];
    if (S > 1) l = ctc_lse2(l, aN[S - 2]);
    ll[b] = (float)l;
    losses[b] = l > -INFINITY ? (float)-l : 0.0f; /* zero_infinity */
  }
}

__global__ void bt_k_ctc_beta(float *beta, const float *lp,
                              const int32_t *inLen, const int32_t *targets,
                              const int32_t *tgtLen, int T, int V, int L) {
  const int b = blockIdx.x, Smax = 2 * L + 1;
  const int n = inLen[b], S = 2 * tgtLen[b] + 1;
  const int32_t *tgt = targets + (size_t)b * L;
  const float *lpb = lp + (size_t)b * T * V;
  float *be = beta + (size_t)b * T * Smax;
  for (int s = threadIdx.x; s < S; s += blockDim.x)
    be[(size_t)(n - 1) * Smax + s] = (s >= S - 2) ? 0.0f : -INFINITY;
  for (int t = n - 2; t >= 0; t--) {
    __syncthreads(); /* frame t+1 complete */
    const float *b1 = be + (size_t)(t + 1) * Smax;
    const float *lp1 = lpb + (size_t)(t + 1) * V;
    float *b0 = be + (size_t)t * Smax;
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
      double x = (double)b1[s] + lp1[ctc_lab_d(tgt, s)];
      if (s + 1 < S)
        x = ctc_lse2(x, (double)b1[s + 1] + lp1[ctc_lab_d(tgt, s + 1)]);
      if (s + 2 < S && ctc_skip_d(tgt, s + 2))
        x = ctc_lse2(x, (double)b1[s + 2] + lp1[ctc_lab_d(tgt, s + 2)]);
      b0[s] = (float)x;
    }
  }
}

__global__ void bt_k_ctc_grad(float *dlogits, const float *lp,
                              const float *alpha, const float *beta,
                              const float *ll, const float *dloss,
                              const int32_t *inLen, const int32_t *targets,
                              const int32_t *tgtLen, int T, int V, int L) {
  const int b = blockIdx.y, t = blockIdx.x, Smax = 2 * L + 1;
  const double l = ll[b];
  if (t >= inLen[b] || !(l > -INFINITY)) return; /* block-uniform */
  const int S = 2 * tgtLen[b] + 1;
  const int32_t *tgt = targets + (size_t)b * L;
  const size_t row = (size_t)b * T + t;
  const float *a = alpha + row * Smax, *bt = beta + row * Smax;
  const float g = dloss[b];
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    float d = dlogits[row * V + v];
    d += g * expf(lp[row * V + v]);
    /* blank (v = 0) sits at the even states, label v at odd states */
    for (int s = (v == 0) ? 0 : 1; s < S; s += 2) {
      if (v != 0 && tgt[s >> 1] != v) continue;
      const double occ = (double)a[s] + bt[s] - l;
      if (occ > -INFINITY) d -= g * (float)exp(occ);
    }
    dlogits[row * V + v] = d;
  }
}

size_t bt_cuda_ctc_scratch_size(bt_backend *be, int B, int T, int V, int L) {
  (void)be;
  return (size_t)B * T * V + 2 * (size_t)B * T * (2 * L + 1) + (size_t)B;
}

void bt_cuda_ctc_loss_fwd(bt_backend *be, float *losses, float *scratch,
                          const float *logits, const int32_t *inLen,
                          const int32_t *targets, const int32_t *tgtLen,
                          int B, int T, int V, int L) {
  BT_CUDA_F32_ONLY(be); /* the speech model refuses train.precision = bf16 */
  bt_cuda *cu = bt_cuda_of(be);
  if (B <= 0 || T <= 0) return;
  BT_ASSERT(V >= 1 && L >= 0 && B <= 65535);
  float *lp = scratch, *alpha = lp + (size_t)B * T * V;
  float *ll = alpha + 2 * (size_t)B * T * (2 * L + 1);
  dim3 grid((unsigned)T, (unsigned)B);
  bt_k_ctc_logsoftmax<<<grid, CTC_THREADS, 0, cu->stream>>>(lp, logits,
                                                             inLen, T, V);
  BT_CUDA_LAUNCHED(cu);
  bt_k_ctc_alpha<<<(unsigned)B, CTC_THREADS, 0, cu->stream>>>(
      alpha, ll, losses, lp, inLen, targets, tgtLen, T, V, L);
  BT_CUDA_LAUNCHED(cu);
}

void bt_cuda_ctc_loss_bwd(bt_backend *be, float *dlogits, float *scratch,
                          const float *dloss, const int32_t *inLen,
                          const int32_t *targets, const int32_t *tgtLen,
                          int B, int T, int V, int L) {
  BT_CUDA_F32_ONLY(be); /* the speech model refuses train.precision = bf16 */
  bt_cuda *cu = bt_cuda_of(be);
  if (B <= 0 || T <= 0) return;
  BT_ASSERT(V >= 1 && L >= 0 && B <= 65535);
  const size_t nState = (size_t)B * T * (2 * L + 1);
  float *lp = scratch, *alpha = lp + (size_t)B * T * V;
  float *beta = alpha + nState, *ll = beta + nState;
  bt_k_ctc_beta<<<(unsigned)B, CTC_THREADS, 0, cu->stream>>>(
      beta, lp, inLen, targets, tgtLen, T, V, L);
  BT_CUDA_LAUNCHED(cu);
  dim3 grid((unsigned)T, (unsigned)B);
  bt_k_ctc_grad<<<grid, CTC_THREADS, 0, cu->stream>>>(
      dlogits, lp, alpha, beta, ll, dloss, inLen, targets, tgtLen, T, V, L);
  BT_CUDA_LAUNCHED(cu);
}
