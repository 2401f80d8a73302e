/*
 * speech_plan.c: prints the batches `baton train` takes on one rank, so
 * that the PyTorch peer of the speech benchmark (torch_speech.py) trains
 * on exactly the same utterances, in the same batches, in the same order.
 *
 * It opens the audio loader with the options setup_audio (trainer/
 * train.c) passes it for a 1-rank run without gradient accumulation
 * (data.max_frames, data.sort_window, train.seed, data.shuffle) and prints
 * one line per micro-step: the dataset indices of its utterances, longest
 * first, as the loader hands them out. Invariant: for the same file and
 * options these are the batches of steps 1, 2, ... of that run (the loader
 * is a pure function of them, data/audio_loader.h), which run.sh relies on
 * to pair baton's step times with the frames each step trained on.
 *
 * usage: speech_plan FILE.h5 MAX_FRAMES SORT_WINDOW SEED SHUFFLE NBATCH
 * output: NBATCH lines "frames padded_frames idx idx ..." (frames = the
 *         sum of the utterances' own frames, padded = B x T).
 */
#include "base/util.h"
#include "data/audio_loader.h"

#include <stdio.h>
#include <stdlib.h>

static int plan_print(bt_audio_loader *pL, long nBatch) {
  for (long i = 0; i < nBatch; i++) {
    bt_speech_batch b;
    if (bt_audio_loader_next(pL, &b) != BT_OK) return BT_ERR;
    long long nFrame = 0;
    for (int j = 0; j < b.B; j++) nFrame += b.aFrames[j];
    printf("%lld %lld", nFrame, (long long)b.B * b.T);
    for (int j = 0; j < b.B; j++) printf(" %lld", (long long)b.aIndex[j]);
    printf("\n");
  }
  return BT_OK;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s FILE.h5 MAX_FRAMES SORT_WINDOW SEED SHUFFLE "
                    "NBATCH\n", argv[0]);
    return BT_EXIT_USAGE;
  }
  bt_audio_loader_config ac = {
      .zPath = argv[1],
      .maxFrames = atoll(argv[2]),
      .window = atoll(argv[3]),
      .accum = 1,
      .rank = 0,
      .world = 1,
      .seed = (uint64_t)strtoull(argv[4], NULL, 10),
      .shuffle = atoi(argv[5]),
  };
  bt_audio_loader *pL = NULL;
  int rc = bt_audio_loader_open(&pL, &ac);
  if (rc == BT_OK) rc = plan_print(pL, atol(argv[6]));
  if (rc != BT_OK) fprintf(stderr, "speech_plan: %s\n", bt_err_msg());
  bt_audio_loader_free(pL);
  return rc == BT_OK ? 0 : BT_EXIT_ERROR;
}
