/*
 * test_json.c: bt_json_escape (base/json.h), the one escaper behind
 * metrics.jsonl and the Chrome traces.
 *   - the RFC 8259 minimum: '"' and '\' backslashed, bytes < 0x20 as
 *     \u00XX, everything else (UTF-8, DEL) copied;
 *   - nMax bounds the input bytes read; NUL ends the input first;
 *   - a short buffer gets a NUL-terminated prefix that never ends inside
 *     an escape, and the return value is the full length (snprintf-like);
 *   - every byte 1..255 escaped, wrapped in quotes, parses back with cJSON
 *     to the same bytes.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "tests/check.h"

static void expect(const char *zIn, size_t nMax, const char *zWant) {
  char z[256];
  memset(z, 'X', sizeof z);
  size_t n = bt_json_escape(z, sizeof z, zIn, nMax);
  CHECK(n == strlen(zWant) && strcmp(z, zWant) == 0,
        "escape of '%s': got '%s' (%zu), want '%s'", zIn, z, n, zWant);
}

static void test_cases(void) {
  expect("", 100, "");
  expect("loss", 100, "loss");
  expect("a\"b", 100, "a\\\"b");
  expect("back\\slash", 100, "back\\\\slash");
  expect("tab\tnl\ncr\r", 100, "tab\\u0009nl\\u000acr\\u000d");
  expect("\x01\x1f", 100, "\\u0001\\u001f");
  expect("\x7f", 100, "\x7f");                    /* DEL is allowed raw */
  expect("gr\xc3\xbc\xc3\x9f", 100, "gr\xc3\xbc\xc3\x9f"); /* UTF-8 kept */
  expect("abcdef", 3, "abc");                     /* nMax input bytes */
  expect("a\"cdef", 2, "a\\\"");
}

static void test_short_buffer(void) {
  char z[8];
  /* "ab\u0001" needs 8 bytes + NUL: the escape does not fit, so only
   * "ab" is written, never a cut "\u00". */
  size_t n = bt_json_escape(z, sizeof z, "ab\x01" "cd", 100);
  CHECK(n == 10, "full length %zu, want 10", n);
  CHECK(strcmp(z, "ab") == 0, "prefix '%s', want 'ab'", z);
  n = bt_json_escape(z, 3, "a\"b", 100); /* room for "a" + NUL only */
  CHECK(n == 4 && strcmp(z, "a") == 0, "got '%s' (%zu)", z, n);
  n = bt_json_escape(z, 5, "abcd", 100); /* exactly fits */
  CHECK(n == 4 && strcmp(z, "abcd") == 0, "got '%s' (%zu)", z, n);
  n = bt_json_escape(z, 4, "abcd", 100);
  CHECK(n == 4 && strcmp(z, "abc") == 0, "got '%s' (%zu)", z, n);
  z[0] = 'X';
  n = bt_json_escape(z, 0, "abc", 100); /* nothing written at all */
  CHECK(n == 3 && z[0] == 'X', "nOut 0 wrote into the buffer");
}

static void test_round_trip(void) {
  char zIn[256];
  for (int i = 1; i < 256; i++) zIn[i - 1] = (char)i;
  zIn[255] = 0;
  char zOut[BT_JSON_ESCAPE_MAX(255) + 2];
  zOut[0] = '"';
  size_t n = bt_json_escape(zOut + 1, sizeof zOut - 2, zIn, 255);
  CHECK(n < sizeof zOut - 2, "worst case did not fit: %zu", n);
  zOut[n + 1] = '"';
  zOut[n + 2] = 0;
  cJSON *p = cJSON_Parse(zOut);
  CHECK(p && cJSON_IsString(p), "cJSON rejects the escaped bytes: %s",
        zOut);
  if (p && cJSON_IsString(p))
    CHECK(strcmp(p->valuestring, zIn) == 0, "round trip changed the bytes");
  cJSON_Delete(p);
}

int main(void) {
  test_cases();
  test_short_buffer();
  test_round_trip();
  return CHECK_DONE();
}
