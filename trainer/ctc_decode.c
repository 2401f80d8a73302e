/*
 * ctc_decode.c: greedy CTC decoding, Levenshtein distance, CER and WER
 * (contracts in ctc_decode.h).
 *
 * The distance keeps one row of the dynamic-programming table (O(nb)
 * memory, O(na nb) time): utterances are at most a few hundred
 * characters. Words are compared by interning: each distinct word of the
 * pair gets a small integer id, then the same integer distance runs.
 */
#include "base/util.h"
#include "trainer/ctc_decode.h"

#include <stdlib.h>
#include <string.h>

int bt_ctc_greedy(const float *logits, int T, int V, int32_t *aOut) {
  int n = 0, prev = 0;
  for (int t = 0; t < T; t++) {
    const float *x = logits + (size_t)t * V;
    int best = 0;
    for (int v = 1; v < V; v++)
      if (x[v] > x[best]) best = v;
    if (best != 0 && best != prev) aOut[n++] = best;
    prev = best;
  }
  return n;
}

int64_t bt_edit_distance(const int32_t *a, int na, const int32_t *b, int nb) {
  int64_t *row = malloc(sizeof(int64_t) * ((size_t)nb + 1));
  if (!row) {
    bt_err_set("edit distance: out of memory for %d symbols", nb);
    return -1;
  }
  for (int j = 0; j <= nb; j++) row[j] = j;
  for (int i = 1; i <= na; i++) {
    int64_t diag = row[0]; /* D[i-1][j-1] */
    row[0] = i;
    for (int j = 1; j <= nb; j++) {
      int64_t up = row[j]; /* D[i-1][j] */
      int64_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  int64_t d = row[nb];
  free(row);
  return d;
}

/* UTF-8 to code points; returns the count or -1 (error set). */
static int utf8_decode(const char *z, int32_t *aOut) {
  const unsigned char *s = (const unsigned char *)z;
  int n = 0;
  for (size_t i = 0; s[i];) {
    unsigned c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
              : (c >> 3) == 30 ? 4 : 0;
    if (!len) return bt_err_set("invalid UTF-8 at byte %zu", i), -1;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (int k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return bt_err_set("invalid UTF-8 at byte %zu", i + k), -1;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    aOut[n++] = (int32_t)cp;
    i += (size_t)len;
  }
  return n;
}

/* Word ids of z (split on spaces) into aId, words interned in azWord
 * (shared by both sides of a pair). Returns the word count. */
static int words_intern(const char *z, int32_t *aId, const char **azWord,
                        int *anLen, int *pnWord) {
  int n = 0;
  for (const char *p = z; *p;) {
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    if (!*p) break;
    int len = (int)strcspn(p, " \t\n");
    int id = 0;
    while (id < *pnWord &&
           !(anLen[id] == len && !memcmp(azWord[id], p, (size_t)len)))
      id++;
    if (id == *pnWord) azWord[id] = p, anLen[id] = len, (*pnWord)++;
    aId[n++] = id;
    p += len;
  }
  return n;
}

static int add_words(const char *zRef, const char *zHyp, bt_error_count *p) {
  size_t nMax = strlen(zRef) + strlen(zHyp) + 2;
  int32_t *aR = malloc(sizeof(int32_t) * nMax);
  int32_t *aH = malloc(sizeof(int32_t) * nMax);
  const char **az = malloc(sizeof(char *) * nMax);
  int *an = malloc(sizeof(int) * nMax);
  int rc = BT_ERR, nWord = 0;
  if (aR && aH && az && an) {
    int nR = words_intern(zRef, aR, az, an, &nWord);
    int nH = words_intern(zHyp, aH, az, an, &nWord);
    int64_t d = bt_edit_distance(aR, nR, aH, nH);
    if (d >= 0) p->nEdit += d, p->nRef += nR, rc = BT_OK;
  } else {
    bt_err_set("word error rate: out of memory");
  }
  free(aR), free(aH), free(az), free(an);
  return rc;
}

static int add_chars(const char *zRef, const char *zHyp, bt_error_count *p) {
  int32_t *aR = malloc(sizeof(int32_t) * (strlen(zRef) + 1));
  int32_t *aH = malloc(sizeof(int32_t) * (strlen(zHyp) + 1));
  int rc = BT_ERR;
  if (!aR || !aH) {
    bt_err_set("character error rate: out of memory");
  } else {
    int nR = utf8_decode(zRef, aR);
    int nH = nR < 0 ? -1 : utf8_decode(zHyp, aH);
    if (nR < 0 || nH < 0) {
      bt_err_prefix("%s text: ", nR < 0 ? "reference" : "hypothesis");
    } else {
      int64_t d = bt_edit_distance(aR, nR, aH, nH);
      if (d >= 0) p->nEdit += d, p->nRef += nR, rc = BT_OK;
    }
  }
  free(aR), free(aH);
  return rc;
}

int bt_error_add(const char *zRef, const char *zHyp, bt_error_count *pChar,
                 bt_error_count *pWord) {
  if (pChar && add_chars(zRef, zHyp, pChar) != BT_OK) return BT_ERR;
  if (pWord && add_words(zRef, zHyp, pWord) != BT_OK) return BT_ERR;
  return BT_OK;
}

double bt_error_rate(const bt_error_count *p) {
  return p->nRef > 0 ? (double)p->nEdit / (double)p->nRef : 0.0;
}
