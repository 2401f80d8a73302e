/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors reader.
 *
 * Any byte string goes through bt_st_parse(); if it is accepted, every
 * tensor is decoded to fp32 and the metadata looked up, so the bounds the
 * parser promised are exercised by real reads (ASan catches a lie).
 * An input counts as accepted (bt_fuzz_last_accepted, tests/fuzz/fuzz.h)
 * when bt_st_parse() takes it.
 * Built by tests/export/fuzz.sh (clang -fsanitize=fuzzer,address); the
 * seed corpus tests/export/corpus is replayed on every build by
 * tests/fuzz/replay.c (ctest export_fuzz_replay).
 */
#include "base/util.h"
#include "checkpoints/safetensors.h"
#include "tests/fuzz/fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int bt_fuzz_last_accepted = 0;

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData) {
  bt_fuzz_last_accepted = 0;
  bt_st_file f;
  if (bt_st_parse(&f, pData, nData, "fuzz.safetensors") == BT_OK) {
    bt_fuzz_last_accepted = 1;
    for (int i = 0; i < f.nTensor; i++) {
      const bt_st_tensor *t = &f.aTensor[i];
      size_t n = (size_t)(t->end - t->begin) / bt_st_dtype_size(t->eType);
      float *dst = malloc((n ? n : 1) * sizeof(float));
      if (!dst) continue;
      if (bt_st_read_f32(&f, t->zName, t->ndim, t->shape, dst) != BT_OK)
        abort(); /* parse accepted it: reading must work */
      free(dst);
    }
    (void)bt_st_meta(&f, "format");
  }
  bt_st_close(&f);
  return 0;
}
