/*
 * test_safetensors.c: the safetensors writer and the hardened reader.
 *
 *  1. Round trip fp32 (bit exact), bf16 and fp16 (round to nearest even,
 *     checked against hand-computed values and exhaustively against the
 *     decoded neighbours), metadata.
 *  2. Every malformed-file case the reader must reject, each with a clear
 *     message naming the file (and the tensor where there is one):
 *     header length beyond the file, overlapping offsets, out-of-range
 *     offsets, a hole, shape/size mismatch, unknown dtype, non-UTF-8
 *     header, unterminated JSON, truncated file, duplicate names, a
 *     non-object header, a huge header length.
 *  3. With argv[1] = the baton binary: the same files dropped into an
 *     export directory make `baton infer` exit 1 (not crash) with the
 *     reader's message on stderr.
 * Also used as the corpus writer: with argv[2] = a directory it writes
 * every case there as a fuzz seed (tests/export/corpus is made this way).
 */
#include "base/util.h"
#include "checkpoints/safetensors.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_zBaton = NULL;
static const char *g_zCorpus = NULL;
static char g_zTmp[256];

/* A file image: 8-byte length + header text + data bytes. */
static unsigned char *image(const char *zHdr, size_t nData, size_t *pn) {
  size_t nh = strlen(zHdr);
  unsigned char *p = calloc(8 + nh + nData + 1, 1);
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)((uint64_t)nh >> (8 * i));
  memcpy(p + 8, zHdr, nh);
  for (size_t i = 0; i < nData; i++) p[8 + nh + i] = (unsigned char)i;
  *pn = 8 + nh + nData;
  return p;
}

static void save(const char *zPath, const unsigned char *p, size_t n) {
  FILE *f = fopen(zPath, "wb");
  if (!f) return;
  fwrite(p, 1, n, f);
  fclose(f);
}

/* Runs `baton infer DIR` on an export dir holding this model.safetensors
 * and a config.json for a 1-layer GPT; expects exit 1 and zWant on
 * stderr. */
static void infer_rejects(const char *zCase, const unsigned char *p, size_t n,
                          const char *zWant) {
  if (!g_zBaton) return;
  char zDir[512], zPath[600], zCmd[2048], zErr[600];
  snprintf(zDir, sizeof zDir, "%s/%s", g_zTmp, zCase);
  bt_mkdir_p(zDir);
  snprintf(zPath, sizeof zPath, "%s/model.safetensors", zDir);
  save(zPath, p, n);
  snprintf(zPath, sizeof zPath, "%s/config.json", zDir);
  const char *zCfg = "{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":1,"
                     "\"n_embd\":2,\"n_positions\":4,\"vocab_size\":2}";
  save(zPath, (const unsigned char *)zCfg, strlen(zCfg));
  snprintf(zErr, sizeof zErr, "%s/stderr", zDir);
  snprintf(zCmd, sizeof zCmd, "%s infer %s --prompt-ids 0 >/dev/null 2>%s",
           g_zBaton, zDir, zErr);
  int st = system(zCmd);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  CHECK(code == 1, "%s: baton infer exit status %d (want 1; >=128 or -1 "
                   "means a crash)", zCase, code);
  size_t ne = 0;
  char *zOut = bt_file_read_all(zErr, &ne);
  CHECK(zOut && strstr(zOut, zWant) && strstr(zOut, "model.safetensors"),
        "%s: baton infer said '%s', want '%s' and the file name", zCase,
        zOut ? zOut : "(nothing)", zWant);
  free(zOut);
}

/* Expects the reader to reject the image with a message holding zWant. */
static void reject(const char *zCase, const unsigned char *p, size_t n,
                   const char *zWant) {
  bt_st_file f;
  char zName[300];
  snprintf(zName, sizeof zName, "%s/model.safetensors", zCase);
  int rc = bt_st_parse(&f, p, n, zName);
  CHECK(rc == BT_ERR, "%s: accepted", zCase);
  CHECK(strstr(bt_err_msg(), zWant) != NULL, "%s: message '%s' lacks '%s'",
        zCase, bt_err_msg(), zWant);
  CHECK(strstr(bt_err_msg(), zName) != NULL, "%s: message '%s' lacks the "
        "file name", zCase, bt_err_msg());
  printf("  %-22s -> %s\n", zCase, bt_err_msg());
  bt_st_close(&f);
  infer_rejects(zCase, p, n, zWant);
  if (g_zCorpus) {
    char zPath[600];
    snprintf(zPath, sizeof zPath, "%s/%s.safetensors", g_zCorpus, zCase);
    save(zPath, p, n);
  }
}

static void reject_hdr(const char *zCase, const char *zHdr, size_t nData,
                       const char *zWant) {
  size_t n;
  unsigned char *p = image(zHdr, nData, &n);
  reject(zCase, p, n, zWant);
  free(p);
}

static void test_roundtrip(void) {
  float a[6] = {1.0f, -2.5f, 3.14159265f, 1e-8f, 65504.0f, -0.0f};
  float b[3] = {0.1f, 0.2f, 0.3f};
  bt_st_wtensor aT[2] = {{"a.weight", 2, {2, 3}, a}, {"b", 1, {3}, b}};
  const char *azMeta[] = {"format", "pt", "step", "42"};
  char zPath[512];
  for (int e = 0; e < 3; e++) {
    snprintf(zPath, sizeof zPath, "%s/rt%d.safetensors", g_zTmp, e);
    CHECK(bt_st_write(zPath, aT, 2, (bt_st_dtype)e, azMeta, 2) == BT_OK, "%s",
          bt_err_msg());
    if (g_zCorpus) {
      char zSeed[600];
      snprintf(zSeed, sizeof zSeed, "%s/roundtrip_%s.safetensors", g_zCorpus,
               bt_st_dtype_name((bt_st_dtype)e));
      bt_st_write(zSeed, aT, 2, (bt_st_dtype)e, azMeta, 2);
    }
    bt_st_file f;
    CHECK(bt_st_open(&f, zPath) == BT_OK, "%s", bt_err_msg());
    CHECK(f.nTensor == 2, "%d tensors", f.nTensor);
    CHECK(f.dataStart % 8 == 0, "data section at %zu", f.dataStart);
    CHECK(bt_st_meta(&f, "step") && !strcmp(bt_st_meta(&f, "step"), "42"),
          "metadata");
    float ra[6], rb[3];
    int64_t sa[2] = {2, 3}, sb[1] = {3}, bad[2] = {3, 2};
    CHECK(bt_st_read_f32(&f, "a.weight", 2, sa, ra) == BT_OK, "%s",
          bt_err_msg());
    CHECK(bt_st_read_f32(&f, "b", 1, sb, rb) == BT_OK, "%s", bt_err_msg());
    CHECK(bt_st_read_f32(&f, "a.weight", 2, bad, ra) == BT_ERR &&
              strstr(bt_err_msg(), "'a.weight' has shape [2, 3], expected "
                                   "[3, 2]"),
          "shape check: %s", bt_err_msg());
    CHECK(bt_st_read_f32(&f, "missing", 1, sb, rb) == BT_ERR &&
              strstr(bt_err_msg(), "'missing' is missing"),
          "missing tensor: %s", bt_err_msg());
    for (int i = 0; i < 6; i++) {
      float want = e == 0   ? a[i]
                   : e == 2 ? bt_bf16_to_f32(bt_f32_to_bf16(a[i]))
                            : bt_f16_to_f32(bt_f32_to_f16(a[i]));
      CHECK(memcmp(&ra[i], &want, 4) == 0, "dtype %d elem %d: %g vs %g", e, i,
            ra[i], want);
    }
    bt_st_close(&f);
  }
}

static void test_rounding(void) {
  /* bf16: 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even -> 1. */
  CHECK(bt_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 tie to even");
  CHECK(bt_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 tie to even (up)");
  CHECK(bt_f32_to_bf16(1.0040f) == 0x3f81, "bf16 above tie rounds up");
  CHECK(isnan(bt_bf16_to_f32(bt_f32_to_bf16(NAN))), "bf16 NaN");
  CHECK(bt_f32_to_f16(1.0f) == 0x3c00 && bt_f32_to_f16(-2.0f) == 0xc000,
        "f16 basics");
  CHECK(bt_f32_to_f16(65504.0f) == 0x7bff, "f16 max");
  CHECK(bt_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow tie -> inf");
  CHECK(bt_f32_to_f16(5.9604645e-8f) == 0x0001, "f16 smallest subnormal");
  CHECK(bt_f32_to_f16(2.9802322e-8f) == 0x0000, "f16 2^-25 tie -> 0");
  CHECK(bt_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "f16 tie to even");
  CHECK(isnan(bt_f16_to_f32(bt_f32_to_f16(NAN))), "f16 NaN");
  /* Exhaustive over every half: decode, then check that nudging the float
   * by less than half an ulp still rounds back (nearest). */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue; /* inf/NaN */
    float x = bt_f16_to_f32((uint16_t)h);
    if (bt_f32_to_f16(x) != h) bad++;
    uint16_t hb = bt_f32_to_bf16(x);
    if (fabsf(bt_bf16_to_f32(hb) - x) > fabsf(x) * (1.0f / 256)) bad++;
  }
  CHECK(bad == 0, "%d halves do not round-trip", bad);
}

static void test_malformed(void) {
  const char *zOk = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                    "\"data_offsets\":[0,8]}}";
  size_t n;
  unsigned char *p = image(zOk, 8, &n);
  bt_st_file f;
  CHECK(bt_st_parse(&f, p, n, "ok") == BT_OK, "valid file: %s", bt_err_msg());
  bt_st_close(&f);
  if (g_zCorpus) {
    char zPath[600];
    snprintf(zPath, sizeof zPath, "%s/valid.safetensors", g_zCorpus);
    save(zPath, p, n);
  }
  /* header length beyond the file */
  unsigned char *q = malloc(n);
  memcpy(q, p, n);
  q[0] = 0xff;
  q[1] = 0x7f;
  reject("hdr_beyond_file", q, n, "runs beyond the end of the file");
  /* absurd header length (would overflow a naive 8 + N) */
  memset(q, 0xff, 8);
  reject("hdr_len_huge", q, n, "runs beyond the end of the file");
  free(q);
  /* truncated: a valid file cut short */
  reject("truncated", p, n - 3, "lie beyond the data section");
  reject("truncated_in_len", p, 5, "too short");
  free(p);
  reject_hdr("overlap",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12, "overlap");
  reject_hdr("out_of_range",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
             "\"data_offsets\":[100,108]}}",
             8, "beyond the data section");
  reject_hdr("hole",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8, "hole");
  reject_hdr("shape_mismatch",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
             8, "shape and dtype need 12 bytes but data_offsets span 8");
  reject_hdr("unknown_dtype",
             "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
             8, "unsupported dtype 'I64'");
  reject_hdr("negative_shape",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],"
             "\"data_offsets\":[0,8]}}",
             8, "shape[0] is not a non-negative integer");
  reject_hdr("shape_overflow",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,"
             "4294967296],\"data_offsets\":[0,8]}}",
             8, "overflows");
  reject_hdr("offsets_reversed",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}",
             8, "before begin");
  reject_hdr("non_utf8",
             "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],"
             "\"data_offsets\":[0,8]}}",
             8, "not valid UTF-8");
  reject_hdr("overlong_utf8",
             "{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],"
             "\"data_offsets\":[0,8]}}",
             8, "not valid UTF-8");
  reject_hdr("unterminated_json",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]",
             8, "not valid JSON");
  reject_hdr("not_object", "[1,2,3]", 0, "not an object");
  reject_hdr("duplicate",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8, "appears twice");
  reject_hdr("trailing_data",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             8, "trailing bytes");
  reject_hdr("bad_metadata",
             "{\"__metadata__\":{\"k\":1},\"a\":{\"dtype\":\"F32\","
             "\"shape\":[1],\"data_offsets\":[0,4]}}",
             4, "not a string");
  reject_hdr("missing_offsets",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
}

int main(int argc, char **argv) {
  if (argc > 1 && argv[1][0]) g_zBaton = argv[1];
  if (argc > 2) g_zCorpus = argv[2];
  snprintf(g_zTmp, sizeof g_zTmp, "/tmp/baton-st-test.XXXXXX");
  if (!mkdtemp(g_zTmp)) return 1;
  test_roundtrip();
  test_rounding();
  test_malformed();
  char zCmd[600];
  snprintf(zCmd, sizeof zCmd, "rm -rf %s", g_zTmp);
  if (system(zCmd) != 0) fprintf(stderr, "could not remove %s\n", g_zTmp);
  return CHECK_DONE();
}
