/*
 * speech_batch.h - one batch of utterances, as the audio loader hands it
 * to the speech model (issue 15). The contract between data/ (which
 * fills it from the ragged HDF5 layout written by `baton prepare audio`)
 * and the trainer's speech model (which reads it); neither side owns the
 * other's code.
 *
 * Invariants:
 *   1. Host memory, owned by whoever filled it (the loader reuses its
 *      buffers between batches).
 *   2. Padded to the longest utterance of the batch: feats rows t >=
 *      aFrames[b] are zero, labels beyond aLabelLen[b] are -1.
 *   3. 0 < aFrames[b] <= T, 0 <= aLabelLen[b] <= L, and every label is a
 *      vocabulary index in 1..V-1 (0 is the CTC blank, never a label).
 *   4. The sum of aFrames is at most the frame budget the batch was
 *      filled against (data.max_frames); nPadFrame = B*T - sum(aFrames)
 *      is the padding the progress line reports as waste.
 */
#ifndef BATON_SPEECH_BATCH_H
#define BATON_SPEECH_BATCH_H

#include <stdint.h>

typedef struct bt_speech_batch {
  int B;              /* utterances in the batch (may be 0 at a rank's end) */
  int T;              /* padded frames: max of aFrames */
  int nMel;           /* feature bins per frame (80) */
  int L;              /* padded label length: max of aLabelLen */
  float *feats;       /* [B, T, nMel] log-mel features, zero padded */
  int32_t *aFrames;   /* [B] true frame counts */
  int32_t *labels;    /* [B, L] character ids (1..V-1), -1 padded */
  int32_t *aLabelLen; /* [B] true label lengths */
  int64_t *aIndex;    /* [B] utterance index in the dataset (for tests) */
  int64_t nPadFrame;  /* B*T - sum(aFrames) */
  /* Added by the audio loader (data/audio_loader.h), for averaging by the
   * global count (docs/design.md, decision 4) without a collective: */
  int64_t global_B;      /* utterances in this micro-step, all ranks */
  int64_t step_global_B; /* utterances in this optimizer step, all ranks */
  int64_t epoch;         /* epoch these utterances come from */
} bt_speech_batch;

#endif /* BATON_SPEECH_BATCH_H */
