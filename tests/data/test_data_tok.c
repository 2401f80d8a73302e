/*
 * test_data_tok.c: the BPE tokenizer (data/tokenizer.h) on hand-made
 * files: the ids of a tiny vocabulary, decoding, streamed encoding, and
 * every error message (each must name the file and what is wrong).
 * The comparison with the `tokenizers` package on real text is
 * test_data_bpe.py (label ref).
 *
 * usage: test_data_tok WORKDIR
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "data/tokenizer.h"
#include "tests/check.h"

static char g_zDir[1024];

/* GPT-2's bytes_to_unicode, as the files spell bytes. */
static int byte_cp(int b) {
  int n = 0;
  for (int c = 0; c < 256; c++) {
    int keep = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) ||
               (c >= 0xae && c <= 0xff);
    if (c == b) return keep ? c : 256 + n;
    if (!keep) n++;
  }
  return -1;
}

/* Appends the JSON string body for byte b's byte-level spelling. */
static void put_byte(char **pz, int b) {
  int cp = byte_cp(b);
  if (cp == '"' || cp == '\\') *pz += sprintf(*pz, "\\%c", cp);
  else if (cp < 0x80) *pz += sprintf(*pz, "%c", cp);
  else *pz += sprintf(*pz, "%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
}

static const char *path(const char *zName) {
  static char z[4][1200];
  static int i;
  i = (i + 1) % 4;
  snprintf(z[i], sizeof z[i], "%s/%s", g_zDir, zName);
  return z[i];
}

static void put(const char *zName, const char *zText) {
  CHECK(bt_file_write_atomic(path(zName), zText, strlen(zText)) == BT_OK,
        "write %s", zName);
}

/* Vocabulary: bytes 0..255 at their own ids (minus byte `skip`, -1 for
 * none), then the extra tokens (already byte-level spelled). */
static char *vocab(int skip, const char *zExtra) {
  char *z = malloc(64 * 1024), *p = z;
  p += sprintf(p, "{");
  int first = 1;
  for (int b = 0; b < 256; b++) {
    if (b == skip) continue;
    p += sprintf(p, "%s\"", first ? "" : ", ");
    first = 0;
    put_byte(&p, b);
    p += sprintf(p, "\": %d", b);
  }
  p += sprintf(p, "%s}", zExtra);
  return z;
}

static const char *k_zExtra =
    ", \"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259, "
    "\"\xc4\xa0hello\": 260, \"<|endoftext|>\": 261, \"aa\": 262";
static const char *k_zMerges =
    "\"h e\", \"l l\", \"he ll\", \"hell o\", \"\xc4\xa0 hello\", \"a a\"";

static char *tokenizer_json(const char *zModelType, const char *zVocab,
                            const char *zMerges, const char *zPre) {
  char *z = malloc(128 * 1024);
  snprintf(z, 128 * 1024,
           "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 261, "
           "\"content\": \"<|endoftext|>\", \"single_word\": false, "
           "\"lstrip\": false, \"rstrip\": false, \"normalized\": true, "
           "\"special\": true}], \"normalizer\": null, \"pre_tokenizer\": "
           "%s, \"post_processor\": null, \"decoder\": {\"type\": "
           "\"ByteLevel\"}, \"model\": {\"type\": \"%s\", \"dropout\": null, "
           "\"vocab\": %s, \"merges\": [%s]}}",
           zPre ? zPre
                : "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                  "\"use_regex\": true}",
           zModelType, zVocab, zMerges);
  return z;
}

/* Opening zPath must fail with a message holding every string in azWant. */
static void expect_error(const char *zWhat, const char *zPath,
                         const char *const *azWant) {
  bt_tok *p = NULL;
  bt_err_clear();
  int rc = bt_tok_open(&p, zPath);
  CHECK(rc == BT_ERR && p == NULL, "%s: opening must fail", zWhat);
  for (int i = 0; azWant[i]; i++)
    CHECK(strstr(bt_err_msg(), azWant[i]) != NULL,
          "%s: message '%s' lacks '%s'", zWhat, bt_err_msg(), azWant[i]);
  bt_tok_free(p);
}

static void test_encode(void) {
  char *zV = vocab(-1, k_zExtra);
  char *zJ = tokenizer_json("BPE", zV, k_zMerges, NULL);
  put("tiny.json", zJ);
  bt_tok *p = NULL;
  CHECK(bt_tok_open(&p, path("tiny.json")) == BT_OK, "open: %s",
        bt_err_msg());
  if (!p) return;
  CHECK(bt_tok_vocab_size(p) == 263, "vocab size %d", bt_tok_vocab_size(p));
  const char *zText = "hello hello<|endoftext|>aaa";
  static const uint32_t aWant[] = {259, 260, 261, 262, 'a'};
  bt_tok_ids ids = {0};
  size_t used = 0;
  CHECK(bt_tok_encode(p, zText, strlen(zText), 1, &ids, &used) == BT_OK,
        "encode: %s", bt_err_msg());
  CHECK(used == strlen(zText), "final encode uses all: %zu", used);
  CHECK(ids.n == 5 && !memcmp(ids.a, aWant, sizeof aWant),
        "ids of '%s': got %zu ids [%u %u %u ...]", zText, ids.n,
        ids.n > 0 ? ids.a[0] : 0, ids.n > 1 ? ids.a[1] : 0,
        ids.n > 2 ? ids.a[2] : 0);
  size_t n = 0;
  char *zDec = bt_tok_decode(p, ids.a, ids.n, &n);
  CHECK(zDec && n == strlen(zText) && !memcmp(zDec, zText, n),
        "decode gives '%s'", zDec ? zDec : "(null)");
  free(zDec);

  /* Not final: the text visible to the call ends 12 bytes (the longest
   * added token less one) before its end, so a special token cut by the
   * end of the input is never taken for punctuation; of the visible text,
   * the last piece (which may still grow) is left for the next call. */
  ids.n = 0;
  CHECK(bt_tok_encode(p, "hello hello hello hello", 23, 0, &ids, &used) ==
            BT_OK, "stream");
  CHECK(ids.n == 1 && ids.a[0] == 259 && used == 5,
        "streamed prefix: %zu ids, used %zu", ids.n, used);
  ids.n = 0;
  CHECK(bt_tok_encode(p, "hello hello <|endoftext|", 24, 0, &ids, &used) ==
            BT_OK, "stream");
  CHECK(ids.n == 2 && used == 11, "a cut special token waits: %zu ids, used "
        "%zu", ids.n, used);
  ids.n = 0;
  CHECK(bt_tok_encode(p, "hello", 5, 0, &ids, &used) == BT_OK, "stream");
  CHECK(ids.n == 0 && used == 0, "short input waits: %zu ids, used %zu",
        ids.n, used);
  /* A quote near the visible end may start 'll or 're: it waits. */
  ids.n = 0;
  CHECK(bt_tok_encode(p, "it'llyyyyyyyyyyy", 16, 0, &ids, &used) == BT_OK,
        "stream");
  CHECK(used == 2, "a quote that may begin a contraction waits: used %zu",
        used);
  /* A UTF-8 character cut by the visible end is not classified early:
   * "ab\xc3" could become "ab\xc3\xa9" (abé), one letter piece. */
  ids.n = 0;
  CHECK(bt_tok_encode(p, "x ab\xc3\xa9yyyyyyyyyyy", 17, 0, &ids, &used) ==
            BT_OK, "stream");
  CHECK(used == 1, "a cut character waits: used %zu", used);
  /* Invalid UTF-8 still round-trips (bytes are bytes). */
  ids.n = 0;
  const char zBad[] = "a\xff\xfe b\x80";
  CHECK(bt_tok_encode(p, zBad, sizeof zBad - 1, 1, &ids, NULL) == BT_OK,
        "invalid utf-8");
  zDec = bt_tok_decode(p, ids.a, ids.n, &n);
  CHECK(zDec && n == sizeof zBad - 1 && !memcmp(zDec, zBad, n),
        "invalid UTF-8 round trip");
  free(zDec);
  uint32_t bad = 9999;
  bt_err_clear();
  CHECK(bt_tok_decode(p, &bad, 1, &n) == NULL &&
            strstr(bt_err_msg(), "id 9999") &&
            strstr(bt_err_msg(), "tiny.json"),
        "decoding a bad id: '%s'", bt_err_msg());
  bt_tok_ids_free(&ids);
  bt_tok_free(p);

  /* The same vocabulary as vocab.json + merges.txt. */
  mkdir(path("gpt2"), 0755);
  put("gpt2/vocab.json", zV);
  put("gpt2/merges.txt", "#version: 0.2\nh e\nl l\nhe ll\nhell o\n"
                         "\xc4\xa0 hello\na a\n");
  CHECK(bt_tok_open(&p, path("gpt2")) == BT_OK, "open dir: %s", bt_err_msg());
  if (p) {
    bt_tok_ids ids2 = {0};
    CHECK(bt_tok_encode(p, zText, strlen(zText), 1, &ids2, NULL) == BT_OK &&
              ids2.n == 5 && !memcmp(ids2.a, aWant, sizeof aWant),
          "vocab.json + merges.txt ids (%zu)", ids2.n);
    bt_tok_ids_free(&ids2);
    bt_tok_free(p);
  }
  free(zV);
  free(zJ);
}

static void test_errors(void) {
  char *zV = vocab(-1, k_zExtra);
  expect_error("missing file", path("nope.json"),
               (const char *[]){"nope.json", "No such file", NULL});

  put("bad.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1,,}}");
  expect_error("malformed JSON", path("bad.json"),
               (const char *[]){"bad.json", "malformed JSON", NULL});

  char *z = tokenizer_json("WordPiece", zV, k_zMerges, NULL);
  put("wordpiece.json", z);
  free(z);
  expect_error("model type", path("wordpiece.json"),
               (const char *[]){"wordpiece.json", "WordPiece", "BPE", NULL});

  z = tokenizer_json("BPE", zV, "\"h e\", \"he zz\"", NULL);
  put("unknown_merge.json", z);
  free(z);
  expect_error("merge of an unknown token", path("unknown_merge.json"),
               (const char *[]){"unknown_merge.json", "model.merges[1]",
                                "'zz'", "not in the vocabulary", NULL});

  z = tokenizer_json("BPE", zV, "\"e h\"", NULL);
  put("merge_result.json", z);
  free(z);
  expect_error("merge result not a token", path("merge_result.json"),
               (const char *[]){"merge_result.json", "model.merges[0]", "'eh'",
                                NULL});

  char *zV2 = vocab('A', k_zExtra);
  z = tokenizer_json("BPE", zV2, k_zMerges, NULL);
  put("no_byte.json", z);
  free(z);
  free(zV2);
  expect_error("a byte without a token", path("no_byte.json"),
               (const char *[]){"no_byte.json", "byte 0x41", NULL});

  z = tokenizer_json("BPE", zV, k_zMerges,
                     "{\"type\": \"Whitespace\"}");
  put("whitespace.json", z);
  free(z);
  expect_error("pre-tokenizer", path("whitespace.json"),
               (const char *[]){"whitespace.json", "Whitespace", "ByteLevel",
                                NULL});

  z = tokenizer_json("BPE", zV, k_zMerges,
                     "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}");
  put("prefix.json", z);
  free(z);
  expect_error("add_prefix_space", path("prefix.json"),
               (const char *[]){"prefix.json", "add_prefix_space", NULL});

  z = tokenizer_json("BPE", zV, k_zMerges, NULL);
  char *zPost = strstr(z, "\"post_processor\": null");
  if (zPost) {
    char *zNew = malloc(strlen(z) + 64);
    sprintf(zNew, "%.*s\"post_processor\": {\"type\": \"TemplateProcessing\"}%s",
            (int)(zPost - z), z, zPost + strlen("\"post_processor\": null"));
    put("template.json", zNew);
    free(zNew);
  }
  free(z);
  expect_error("post-processor", path("template.json"),
               (const char *[]){"template.json", "TemplateProcessing", NULL});

  z = tokenizer_json("BPE", "{\"a\": \"x\"}", k_zMerges, NULL);
  put("bad_id.json", z);
  free(z);
  expect_error("a non-numeric id", path("bad_id.json"),
               (const char *[]){"bad_id.json", "model.vocab", "'a'", NULL});

  mkdir(path("lonely"), 0755);
  put("lonely/vocab.json", zV);
  expect_error("vocab.json without merges.txt", path("lonely/vocab.json"),
               (const char *[]){"vocab.json", "merges.txt", "missing", NULL});
  expect_error("a directory without files", path("lonely"),
               (const char *[]){"lonely", "neither tokenizer.json", NULL});

  mkdir(path("badmerges"), 0755);
  put("badmerges/vocab.json", zV);
  put("badmerges/merges.txt", "#version: 0.2\nh e\nhe ll o\n");
  expect_error("a bad merges.txt line", path("badmerges"),
               (const char *[]){"merges.txt:3", "two tokens", "he ll o",
                                NULL});
  put("badmerges/merges.txt", "h e\nq zz\n");
  expect_error("merges.txt naming an unknown token", path("badmerges"),
               (const char *[]){"merges.txt:2", "'zz'", "not in the vocabulary",
                                NULL});
  free(zV);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_data_tok WORKDIR\n");
    return 2;
  }
  snprintf(g_zDir, sizeof g_zDir, "%s", argv[1]);
  if (bt_mkdir_p(g_zDir) != BT_OK) {
    fprintf(stderr, "%s\n", bt_err_msg());
    return 1;
  }
  test_encode();
  test_errors();
  return CHECK_DONE();
}
