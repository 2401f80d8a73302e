/*
 * test_ctc_decode.c: greedy CTC decoding and the CER / WER of
 * trainer/ctc_decode.h on cases worked out by hand.
 */
#include "base/util.h"
#include "tests/check.h"
#include "trainer/ctc_decode.h"

#include <math.h>
#include <string.h>

/* logits whose per-frame argmax is aPath[t] (V = 4). */
static void greedy_case(const int *aPath, int T, const int32_t *aWant,
                        int nWant, const char *zWhat) {
  float x[16 * 4];
  for (int t = 0; t < T; t++)
    for (int v = 0; v < 4; v++) x[t * 4 + v] = v == aPath[t] ? 2.0f : -1.0f;
  int32_t out[16];
  int n = bt_ctc_greedy(x, T, 4, out);
  int ok = n == nWant &&
           (n == 0 || !memcmp(out, aWant, sizeof(int32_t) * (size_t)n));
  CHECK(ok, "greedy %s: got %d symbols", zWhat, n);
}

static void rate_case(const char *zRef, const char *zHyp, int64_t nCharEdit,
                      int64_t nChar, int64_t nWordEdit, int64_t nWord) {
  bt_error_count c = {0, 0}, w = {0, 0};
  CHECK(bt_error_add(zRef, zHyp, &c, &w) == BT_OK, "'%s' vs '%s': %s", zRef,
        zHyp, bt_err_msg());
  CHECK(c.nEdit == nCharEdit && c.nRef == nChar,
        "'%s' vs '%s': chars %lld/%lld, want %lld/%lld", zRef, zHyp,
        (long long)c.nEdit, (long long)c.nRef, (long long)nCharEdit,
        (long long)nChar);
  CHECK(w.nEdit == nWordEdit && w.nRef == nWord,
        "'%s' vs '%s': words %lld/%lld, want %lld/%lld", zRef, zHyp,
        (long long)w.nEdit, (long long)w.nRef, (long long)nWordEdit,
        (long long)nWord);
}

int main(void) {
  /* blanks dropped, repeats merged, a blank between repeats keeps both */
  static const int p1[] = {0, 1, 1, 0, 1, 2, 2, 0};
  static const int32_t w1[] = {1, 1, 2};
  greedy_case(p1, 8, w1, 3, "a a b");
  static const int p2[] = {0, 0, 0};
  greedy_case(p2, 3, NULL, 0, "all blank");
  static const int p3[] = {3, 3, 3, 1};
  static const int32_t w3[] = {3, 1};
  greedy_case(p3, 4, w3, 2, "c a");

  int32_t a[] = {1, 2, 3}, b[] = {1, 3};
  CHECK(bt_edit_distance(a, 3, b, 2) == 1, "one deletion");
  CHECK(bt_edit_distance(a, 3, a, 0) == 3, "against empty");
  CHECK(bt_edit_distance(a, 0, b, 2) == 2, "empty against two");

  /* kitten -> sitting: 3 edits over 6 characters; 1 word substituted */
  rate_case("kitten", "sitting", 3, 6, 1, 1);
  rate_case("the cat sat", "the cat sat", 0, 11, 0, 3);
  /* one word dropped: 4 characters ("sat" and a space), 1 word */
  rate_case("the cat sat", "the cat", 4, 11, 1, 3);
  /* extra spaces do not make words; a word inserted */
  rate_case("a b", "a  x  b", 4, 3, 1, 2); /* 4 characters inserted */
  /* UTF-8: 'é' is one character */
  rate_case("café", "cafe", 1, 4, 1, 1);
  rate_case("", "abc", 3, 0, 1, 0);

  bt_error_count c = {0, 0}, w = {0, 0};
  bt_error_add("kitten", "sitting", &c, &w);
  bt_error_add("the cat sat", "the cat", &c, &w);
  CHECK(fabs(bt_error_rate(&c) - 7.0 / 17.0) < 1e-12,
        "CER over two pairs is sum(edits)/sum(length): %g",
        bt_error_rate(&c));
  CHECK(fabs(bt_error_rate(&w) - 2.0 / 4.0) < 1e-12, "WER over two pairs");
  bt_error_count z = {0, 0};
  CHECK(bt_error_rate(&z) == 0.0, "empty set");

  CHECK(bt_error_add("ok", "\xff", &c, NULL) == BT_ERR &&
            strstr(bt_err_msg(), "hypothesis text: invalid UTF-8 at byte 0"),
        "invalid UTF-8 names the side and the byte: '%s'", bt_err_msg());
  return CHECK_DONE();
}
