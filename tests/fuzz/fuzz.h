/*
 * fuzz.h: the contract between a libFuzzer target and the replay driver
 * tests/fuzz/replay.c.
 *
 * A target defines LLVMFuzzerTestOneInput (libFuzzer's entry point, which
 * must return 0) and the flag bt_fuzz_last_accepted. The flag is the
 * target's answer to "did the reader accept this input as valid?":
 *   1. the target sets it to 0 on entry and to 1 once the reader accepted
 *      the input, so it always describes the last call;
 *   2. the target defines it (not replay.c), so that the libFuzzer build,
 *      which links the target without replay.c, still links.
 * replay.c counts the accepted inputs of a corpus and fails below a floor,
 * so a reader that starts rejecting valid inputs fails the replay test even
 * though nothing crashed (a reader that rejects everything never crashes).
 */
#ifndef BATON_TEST_FUZZ_H
#define BATON_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *pData, size_t nData);

/* 1 if the reader accepted the last input given to the target, else 0. */
extern int bt_fuzz_last_accepted;

#endif
