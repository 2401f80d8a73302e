/*
 * speech_model.h: the speech recogniser (model.type = speech, issue 15)
 * over the flat buffers of model.h: a convolutional front end, a
 * transformer encoder and a CTC loss over characters.
 *
 *   feats [B, T, n_mel]                      (data/speech_batch.h)
 *   conv.0: conv1d n_mel -> conv_channels, K 3, stride 2, pad 1; GELU;
 *           rows t >= len1 zeroed (so a padded frame never leaks into a
 *           valid one through conv.1's window)
 *   conv.1: conv1d conv_channels -> n_embd, K 3, stride 2, pad 1; GELU
 *   + sinusoidal positions (Whisper's: sin over the first n_embd/2
 *     channels, cos over the rest; not a parameter)
 *   h.0 .. h.L-1, ln_f: the GPT-2 block stack of model.c, non-causal,
 *           keys masked past each utterance's length
 *   head:   linear n_embd -> vocab_size (torch Linear layout [V, C]),
 *           column 0 = CTC blank
 *   CTC loss (ctc_loss_fwd/bwd) over the valid frames.
 * Frame lengths: len1 = (len - 1) / 2 + 1, len2 = (len1 - 1) / 2 + 1
 * (each convolution's output length for K 3, stride 2, pad 1).
 *
 * Tensor names (torch-like; the block names are the GPT's): conv.0.weight
 * [conv_channels, n_mel, 3], conv.0.bias, conv.1.weight [n_embd,
 * conv_channels, 3], conv.1.bias, h.N.*, ln_f.*, head.weight [V, n_embd],
 * head.bias [V]. Layout order = forward order (model.h).
 *
 * Invariant: an utterance's loss and gradients do not depend on the
 * padding around it (its batch mates, T): padded frames are zeroed where
 * a valid frame could read them, and attention never looks at them.
 * The loss: bt_speech_forward's *pLossSum = sum_b loss_b / max(1,
 * labels_b) and *pnCount = B, so scale = 1 / (global utterances) in the
 * backward gives torch's F.ctc_loss(reduction='mean', zero_infinity=True).
 */
#ifndef BATON_SPEECH_MODEL_H
#define BATON_SPEECH_MODEL_H

#include "data/speech_batch.h"
#include "trainer/model.h"

/* Called by bt_model_build (model.c): shape and tensor table. */
int bt_speech_build(bt_model *m, const bt_config *c);
/* Called by bt_model_build after the flat buffers: activations for maxB
 * utterances of up to model.max_frames frames. */
int bt_speech_alloc(bt_model *m);
/* Called by bt_model_free; a no-op for other models. */
void bt_speech_free(bt_model *m);
/* Called by bt_model_init_weights: seeded, identical on every rank. */
int bt_speech_init_weights(bt_model *m, uint64_t seed);

/* Forward over one batch with its CTC loss. Errors (BT_ERR, message
 * naming the utterance): more utterances than maxB, a longer one than
 * model.max_frames, n_mel differing from the model's, a label outside
 * 1..V-1, more labels than encoder frames allow for. */
int bt_speech_forward(bt_model *m, const bt_speech_batch *pb,
                      double *pLossSum, int64_t *pnCount);
/* Backward of the last forward (bt_model_backward dispatches here). */
void bt_speech_backward(bt_model *m, float scale, bt_grad_ready_fn fn,
                        void *ctx);

/* Encoder frames of the last forward: T2 (padded) and per-utterance
 * valid counts (host memory, [B]); the logits are bt_model_logits(m),
 * [B, T2, V], for decoding (trainer/ctc_decode.h). */
int bt_speech_frames(const bt_model *m, const int32_t **paLen);

#endif /* BATON_SPEECH_MODEL_H */
