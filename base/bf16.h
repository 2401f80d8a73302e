/*
 * bf16.h: bfloat16 rounding and conversion, the one definition every layer
 * shares: the CPU backend's bf16 mode (kernels/cpu), the safetensors
 * writer and reader (checkpoints/safetensors.c: `baton export --dtype
 * bf16`, bf16 inputs of train.init_from) and the op tests. In base/ so
 * that every layer can include it.
 *
 * bfloat16 is the top 16 bits of an IEEE float32: same sign and 8-bit
 * exponent, 7 stored mantissa bits, so its relative rounding error is at
 * most 2^-8 (half an ulp of a 7-bit mantissa) and its range is float's.
 * Converting float -> bf16 rounds to nearest, ties to even, exactly as
 * CUDA's __float2bfloat16_rn and torch's .to(torch.bfloat16) do:
 *
 *   bits += 0x7FFF + ((bits >> 16) & 1);  keep bits >> 16
 *
 * Invariants (tests/kernels/test_ops.c, case bf16_round, checks each):
 *   1. bt_round_bf16(x) == bt_bf16_to_f32(bt_f32_to_bf16(x)) for every x.
 *   2. Rounding is idempotent: a value already representable in bf16 is
 *      returned unchanged (so rounding a stored bf16 value again is free of
 *      error, which is what lets the CPU reference round after every op).
 *   3. NaN stays NaN (quiet, sign kept), +-inf stays +-inf; finite values
 *      above the largest bf16 (about 3.39e38) round to inf, as on a GPU.
 *   4. Subnormals round like any other value (no flush to zero).
 *
 * Header-only and static inline: one compare and three integer operations,
 * inlined into the rounding loops, which the compiler vectorises.
 */
#ifndef BATON_BF16_H
#define BATON_BF16_H

#include <stdint.h>
#include <string.h>

/* The bf16 bit pattern nearest to x (ties to even). */
static inline uint16_t bt_f32_to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: keep it quiet, no rounding */
    return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* The float whose value the bf16 pattern h holds (exact). */
static inline float bt_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* x rounded to the nearest bf16 value, kept as a float: what a GPU would
 * read back after storing x in a bf16 buffer. */
static inline float bt_round_bf16(float x) {
  return bt_bf16_to_f32(bt_f32_to_bf16(x));
}

#endif /* BATON_BF16_H */
