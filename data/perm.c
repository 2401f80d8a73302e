/*
 * perm.c: the two pure functions that define who reads what (loader.h).
 *
 * bt_split(n, k, i): part i of n items over k contiguous parts,
 *   lo = floor(n*i/k), hi = floor(n*(i+1)/k). Sizes differ by at most 1,
 *   parts tile [0, n) in order. The product is taken in 128 bits so any
 *   n < 2^63 is exact.
 *
 * bt_perm_index(seed, e, n, p): a seeded bijection on [0, n) that is never
 *   materialised, so it costs O(1) memory for a billion-sample dataset.
 *   Construction: a balanced 6-round Feistel network over 2h bits
 *   (2^(2h) >= n, so the domain is < 4n) keyed by
 *   bt_rng_key(seed, BT_PURPOSE_PERM, e, 0); values >= n are walked
 *   through the network again ("cycle walking"), which keeps the map a
 *   bijection on [0, n) because the network is a bijection on [0, 2^(2h)).
 *   Expected walk length < 4 rounds of the network.
 *
 * Both are pure functions of their arguments: thread-safe, rank-free.
 */
#include "base/util.h"
#include "data/loader.h"
#include "data/loader_impl.h"

void bt_split(int64_t n, int k, int i, int64_t *pLo, int64_t *pHi) {
  BT_ASSERT(n >= 0 && k > 0 && i >= 0 && i < k);
  unsigned __int128 N = (unsigned __int128)(uint64_t)n;
  *pLo = (int64_t)(N * (unsigned)i / (unsigned)k);
  *pHi = (int64_t)(N * (unsigned)(i + 1) / (unsigned)k);
}

static uint64_t feistel(uint64_t x, uint64_t key, int h) {
  uint64_t mask = (h >= 64) ? ~0ULL : ((1ULL << h) - 1);
  uint64_t l = x >> h, r = x & mask;
  for (uint64_t round = 0; round < 6; round++) {
    uint64_t f = bt_rng_u64(key, (round << 58) ^ r) & mask;
    uint64_t t = l ^ f;
    l = r;
    r = t;
  }
  return (l << h) | r;
}

int64_t bt_perm_index(uint64_t seed, int64_t epoch, int64_t n, int64_t p) {
  BT_ASSERT(n > 0 && p >= 0 && p < n);
  if (n <= 2) {
    /* Too small for a Feistel network: a seeded swap is the whole family. */
    if (n == 1) return 0;
    uint64_t key = bt_rng_key(seed, BT_PURPOSE_PERM, (uint64_t)epoch, 0);
    return (bt_rng_u64(key, 0) & 1) ? 1 - p : p;
  }
  int b = 64 - __builtin_clzll((uint64_t)(n - 1)); /* 2^b >= n */
  int h = (b + 1) / 2;
  uint64_t key = bt_rng_key(seed, BT_PURPOSE_PERM, (uint64_t)epoch, 0);
  uint64_t x = (uint64_t)p;
  do {
    x = feistel(x, key, h);
  } while (x >= (uint64_t)n);
  return (int64_t)x;
}
