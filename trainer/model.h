/*
 * model.h: GPT-2-style decoder and MLP classifier over flat buffers.
 *
 * Memory (docs/design.md, decision 1: flat buffers): every parameter lives in ONE contiguous
 * buffer `params`, gradients in `grads` of the same layout; optimizer
 * moments are owned by the optimizer (trainer/optim.h) with the same
 * layout. A named tensor is a view (offset, shape) into them. The buffers
 * hold nParam real elements followed by padding up to nFlat, so that ZeRO
 * shards and buckets never need a tensor size to divide by anything.
 *
 * GPT tensor names and shapes follow the Hugging Face GPT-2 state dict
 * (GPT2Model naming, Conv1D [in, out] weights): wte.weight [Vp, C],
 * wpe.weight [T, C], h.N.ln_1.{weight,bias}, h.N.attn.c_attn.{weight
 * [C,3C], bias}, h.N.attn.c_proj, h.N.ln_2, h.N.mlp.c_fc [C,4C],
 * h.N.mlp.c_proj [4C,C], ln_f. The output projection is tied to wte. Only
 * wte's first vocab_size rows are real; padded rows stay zero.
 * MLP names: layers.N.weight [out, in] (torch Linear layout), layers.N.bias.
 *
 * Layout order is the forward order, so backward finishes gradients from
 * the END of the flat buffer towards the start: after each block's
 * backward, grads[lo, nFlat) are final for a lo that only decreases. The
 * grad-ready hook reports lo, which is what bucketed, overlapped reduction
 * needs (trainer/grad_sync.c).
 *
 * All activation memory is allocated once by bt_model_build for at most
 * maxB samples; forward/backward allocate nothing.
 */
#ifndef BATON_MODEL_H
#define BATON_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "trainer/config.h"

#define BT_TENSOR_NAME_MAX 64

typedef struct bt_tensor {
  char zName[BT_TENSOR_NAME_MAX];
  size_t offset; /* elements from the start of the flat buffer */
  size_t numel;
  int ndim;
  int shape[4];
  int decay;     /* 1: weight decay applies (matrices, embeddings) */
} bt_tensor;

/* Called during backward: grads[lo, nFlat) are final. */
typedef void (*bt_grad_ready_fn)(void *ctx, size_t lo);

typedef struct bt_model_acts bt_model_acts; /* private */

typedef struct bt_model {
  bt_model_kind eKind;
  bt_backend *be;
  /* GPT shape */
  int L, NH, C, T, V, Vp;
  /* MLP shape: widths[0] = inputs, widths[nLayer] = classes */
  int nLayer;
  int aWidth[17];
  /* speech (speech_model.h): T above is the longest encoder sequence, V
   * = Vp the characters with blank 0 */
  int nMel, nConv, maxFrames;
  struct bt_speech_state *pSpeech; /* private to speech_model.c */

  int nTensor;
  bt_tensor *aTensor;
  size_t nParam; /* real elements */
  size_t nFlat;  /* padded length of params/grads */
  float *params; /* backend memory: the fp32 master weights */
  float *grads;  /* backend memory: fp32 gradients */
  /* The weights forward and backward read ([act], kernels/ops.def): the
   * same pointer as params in fp32 mode; in bf16 mode a working copy in
   * the activation dtype, to_act(params), refreshed by
   * bt_model_refresh_work after every change of params. */
  float *work;

  int inferOnly; /* built by bt_model_build_infer: forward only */
  int maxB;      /* activations sized for this many samples */
  int curB;      /* samples of the last forward */
  bt_model_acts *pActs;
  /* Training (issue 12 item 4): when set, a GPT or MLP forward with
   * targets adds its loss sum to pLossAcc[0] (one double in backend
   * memory, bt_op_loss_sum_acc) instead of reading the losses back, and
   * *pLossSum is 0; the count still comes from the host's targets. The
   * speech model reads its losses back either way. */
  double *pLossAcc;
} bt_model;

/* Builds the model described by pCfg (shape only; weights zero). nFlat is
 * nParam rounded up to a multiple of padMultiple. Fixes be's activation
 * dtype to train.precision first (BT_ERR, naming the key, if the backend
 * cannot store it or already holds another). */
int bt_model_build(bt_model *m, const bt_config *pCfg, bt_backend *be,
                   int maxB, size_t padMultiple);
/* The same model for inference (export, `baton infer`): no gradient
 * buffer, no backward scratch, and every block's activations share one
 * slice (a block consumes its input before it overwrites the shared
 * buffers), so activation memory does not grow with the depth. The
 * forward computes the same bits as a training build's; backward is not
 * available. */
int bt_model_build_infer(bt_model *m, const bt_config *pCfg, bt_backend *be,
                         int maxB);
void bt_model_free(bt_model *m);

/* Seeded GPT-2 initialisation from a counter-based generator keyed by
 * (seed, tensor index, element): identical on every rank and backend.
 * Refreshes the working copy. */
int bt_model_init_weights(bt_model *m, uint64_t seed);

/* work = to_act(params) over the whole flat buffer; nothing in fp32 mode
 * (work == params). Whoever writes params (initialisation, a checkpoint
 * or init_from load, the optimizer step and its ZeRO all-gather) calls it
 * before the next forward. */
void bt_model_refresh_work(bt_model *m);

const bt_tensor *bt_model_find(const bt_model *m, const char *zName);

/* Forward over n <= maxB samples. GPT: inputs [n,T] token ids; MLP: x [n,D].
 * targets (GPT [n,T], MLP [n]; host memory, < 0 = masked) may be NULL for
 * inference. With targets, *pLossSum receives the sum of per-token losses
 * (double, summed in a fixed order) and *pnCount the unmasked count. */
int bt_model_forward(bt_model *m, int n, const int32_t *inputs, const float *x,
                     const int32_t *targets, double *pLossSum,
                     int64_t *pnCount);
/* bt_model_forward with targets whose backward follows (training): the
 * GPT also runs the loss's backward through the classifier here, chunk
 * by chunk (model.loss_chunk_rows; model.c, "GPT loss in chunks"), so
 * that no chunk's logits are computed twice; bt_model_backward must then
 * be called with the same scale. Other models: bt_model_forward. Not on
 * an inference build. */
int bt_model_forward_train(bt_model *m, int n, const int32_t *inputs,
                           const float *x, const int32_t *targets,
                           float scale, double *pLossSum, int64_t *pnCount);
/* Backward of the last forward (which must have had targets). The loss
 * being differentiated is scale * sum of losses, so scale = 1 / (global
 * token count) gives the mean over the global batch when rank gradients are
 * summed. Gradients are ACCUMULATED into m->grads. fnReady (may be NULL) is
 * called as ranges become final, the last call with lo = 0. */
void bt_model_backward(bt_model *m, float scale, bt_grad_ready_fn fnReady,
                       void *ctx);

/* Logits of the last forward in backend memory: GPT [n, T, Vp], MLP
 * [n, classes]. Activation-typed: float on the CPU backend in either
 * precision (bf16-rounded values in bf16 mode). GPT: the buffer holds one
 * loss chunk of rows (model.loss_chunk_rows; an inference build at least
 * one sequence), so it has the logits of every row after a forward
 * without targets (which refuses more rows than that) or a
 * bt_model_forward whose rows fit in one chunk; after
 * bt_model_forward_train or bt_model_backward it holds gradients. */
const float *bt_model_logits(const bt_model *m);
int bt_model_logits_stride(const bt_model *m); /* Vp or classes */

/* FLOPs per token (GPT: 6N + 6 L C T) or per sample (MLP: 6N), for MFU. */
double bt_model_flops_per_item(const bt_model *m);

/* ---- the transformer stack shared by the GPT and the speech encoder ----
 * For model files of trainer/ only (model.c, speech_model.c).
 * The stack is L pre-LN blocks (GPT-2 tensors h.N.*) and ln_f over
 * x[B, T, C], B <= maxB, T <= m->T. causal = 1 with keyLen = NULL runs
 * the GPT's attention_fwd/bwd; otherwise attention_masked_fwd/bwd with
 * keyLen (backend memory, [B]). */
int bt_model_tensor_add(bt_model *m, int cap, const char *zName, int decay,
                        int ndim, int d0, int d1);
/* Appends the stack's 12 L + 2 tensors; cap = capacity of m->aTensor. */
int bt_model_stack_tensors(bt_model *m, int cap);
/* Allocates the stack's activations and the logits: [maxB*T, Vp] for the
 * speech model, one loss chunk of rows for the GPT. */
int bt_model_stack_alloc(bt_model *m);
/* Forward; returns ln_f's output [B*T, C]. */
const float *bt_model_stack_fwd(bt_model *m, const float *x, int B, int T,
                                const int32_t *keyLen, int causal);
/* Backward from d(ln_f output) in bt_model_stack_dbuf() (the caller fills
 * it); reports each block's gradients ready; returns d(x) (stack memory,
 * valid until the next call). */
const float *bt_model_stack_bwd(bt_model *m, const float *x, int B, int T,
                                const int32_t *keyLen, int causal,
                                bt_grad_ready_fn fn, void *ctx);
float *bt_model_stack_lnf(bt_model *m);
float *bt_model_stack_logits(bt_model *m);
float *bt_model_stack_dbuf(bt_model *m); /* [maxB*T, C] */

#endif /* BATON_MODEL_H */
